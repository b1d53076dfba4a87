/* tests/unit/test_uv_server.c: the local client socket server (net/uv_server.c)
 * on a real loop and a real Unix socket in a tmpdir: socket mode, stale-file
 * removal, refusal of a live path, a STATUS round trip, a malformed frame that
 * closes only its connection, the connection limit, backpressure under
 * requests_max, a clean close after which uv_loop_close()
 * returns 0 (no handle leaked; STYLE B8), and tdm_uv_serve() stopped by its
 * control rather than by a signal. */
#include "tdm_test.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "engine/base/alloc.h"
#include "net/proto.h"
#include "net/uv.h"

#define RUN_ONCE_MAX 1000 /* Loop iterations a test waits for an event. */

struct fixture {
    char dir[64]; /* Short: socket paths hold at most 107 bytes. */
    char socket_path[100];
    struct tandem *t;
    uv_loop_t loop;
    bool closed; /* The server's close callback ran. */
};

static int format_stub(const struct tandem_record *record, uint64_t lsn, char **out, size_t *size)
{
    (void)record;
    (void)lsn;
    *out = tdm_malloc(2);
    memcpy(*out, "{}", 2);
    *size = 2;
    return 0;
}

static int status_stub(void *data, struct tandem *t, const void *snapshot, char **out, size_t *size)
{
    (void)data;
    (void)t;
    (void)snapshot;
    static const char doc[] = "{\"schema\": 1}";
    *out = tdm_malloc(sizeof(doc));
    memcpy(*out, doc, sizeof(doc));
    *size = sizeof(doc) - 1;
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    snprintf(f->socket_path, sizeof(f->socket_path), "%s/tandemd.sock", f->dir);
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    assert_int_equal(tandem_open(f->dir, &options, &f->t, NULL), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tandem_close(f->t);
    tdm_test_tmpdir_remove(f->dir);
    test_free(f);
    return 0;
}

static struct tdm_uv_server_config config_of(struct fixture *f)
{
    struct tdm_uv_server_config config = {
        .socket_path = f->socket_path,
        .t = f->t,
        .format = format_stub,
        .status = status_stub,
    };
    return config;
}

static void closed_cb(void *data)
{
    struct fixture *f = data;
    f->closed = true;
}

static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

/* Run the loop until fd has bytes (or EOF); return what recv() returned. */
static ssize_t run_until_readable(struct fixture *f, int fd, uint8_t *buf, size_t size)
{
    for (int i = 0; i < RUN_ONCE_MAX; i++) {
        ssize_t n = recv(fd, buf, size, MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            return n;
        }
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    fail_msg("no answer from the server");
    return -1;
}

static void close_server(struct fixture *f, struct tdm_uv_server *server)
{
    tdm_uv_server_close(server, closed_cb, f);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(f->closed);
    assert_false(tdm_test_file_exists(f->dir, "tandemd.sock"));
}

/* The socket is created with mode 0600 and removed by close. */
static void test_uv_server_start__socket_mode(void **state)
{
    struct fixture *f = *state;
    struct tdm_uv_server_config config = config_of(f);
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    struct stat st;
    assert_int_equal(stat(f->socket_path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    close_server(f, server);
}

/* A socket file nobody listens on (a dead daemon's) is removed; a live
 * server's path is refused with -EADDRINUSE and left alone. */
static void test_uv_server_start__stale_and_live(void **state)
{
    struct fixture *f = *state;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->socket_path);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    close(fd);
    struct tdm_uv_server_config config = config_of(f);
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    struct tdm_uv_server *second = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &second, &diag), -EADDRINUSE);
    assert_non_null(strstr(diag.message, "already answers"));
    assert_true(tdm_test_file_exists(f->dir, "tandemd.sock"));
    close_server(f, server);
}

/* STATUS is answered with STATUS_RESULT carrying the status document. */
static void test_uv_server_status__round_trip(void **state)
{
    struct fixture *f = *state;
    struct tdm_uv_server_config config = config_of(f);
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    int fd = connect_to(f->socket_path);
    struct tdm_proto_msg msg = {.type = TDM_PROTO_STATUS};
    msg.status.request_id = 42;
    uint8_t frame[64];
    size_t written = 0;
    assert_int_equal(tdm_proto_encode(&msg, frame, sizeof(frame), &written, NULL), 0);
    assert_int_equal(send(fd, frame, written, 0), (ssize_t)written);
    uint8_t answer[256];
    ssize_t n = run_until_readable(f, fd, answer, sizeof(answer));
    assert_true(n > 0);
    struct tdm_proto_frame parsed;
    assert_int_equal(tdm_proto_frame_parse(answer, (size_t)n, &parsed, NULL), 0);
    struct tdm_proto_msg result;
    assert_int_equal(tdm_proto_decode(&parsed, &result, NULL), 0);
    assert_int_equal(result.type, TDM_PROTO_STATUS_RESULT);
    assert_int_equal(result.status_result.request_id, 42);
    assert_int_equal(result.status_result.status, 0);
    assert_int_equal(result.status_result.text.size, strlen("{\"schema\": 1}"));
    close(fd);
    close_server(f, server);
}

/* A malformed frame closes that connection only: another one is still served. */
static void test_uv_server_read__malformed_frame(void **state)
{
    struct fixture *f = *state;
    struct tdm_uv_server_config config = config_of(f);
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    int bad = connect_to(f->socket_path);
    int good = connect_to(f->socket_path);
    static const uint8_t garbage[] = {5, 0, 0, 0, 'g', 'a', 'r', 'b', 'a', 'g', 'e', '!'};
    assert_int_equal(send(bad, garbage, sizeof(garbage), 0), (ssize_t)sizeof(garbage));
    uint8_t answer[256];
    assert_int_equal(run_until_readable(f, bad, answer, sizeof(answer)), 0); /* EOF. */
    struct tdm_proto_msg msg = {.type = TDM_PROTO_STATUS};
    uint8_t frame[64];
    size_t written = 0;
    assert_int_equal(tdm_proto_encode(&msg, frame, sizeof(frame), &written, NULL), 0);
    assert_int_equal(send(good, frame, written, 0), (ssize_t)written);
    assert_true(run_until_readable(f, good, answer, sizeof(answer)) > 0);
    close(bad);
    close(good);
    close_server(f, server);
}

/* Beyond clients_max, a connection is accepted and closed at once; the ones
 * already open are still served. */
static void test_uv_server_accept__clients_max(void **state)
{
    struct fixture *f = *state;
    struct tdm_uv_server_config config = config_of(f);
    config.clients_max = 1;
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    int first = connect_to(f->socket_path);
    int second = connect_to(f->socket_path);
    uint8_t answer[256];
    assert_int_equal(run_until_readable(f, second, answer, sizeof(answer)), 0); /* EOF. */
    struct tdm_proto_msg msg = {.type = TDM_PROTO_STATUS};
    uint8_t frame[64];
    size_t written = 0;
    assert_int_equal(tdm_proto_encode(&msg, frame, sizeof(frame), &written, NULL), 0);
    assert_int_equal(send(first, frame, written, 0), (ssize_t)written);
    assert_true(run_until_readable(f, first, answer, sizeof(answer)) > 0);
    close(first);
    close(second);
    close_server(f, server);
}

/* With requests_max 1, eight requests sent at once are read one at a time
 * (backpressure) and every one is answered, in order of request_id. */
static void test_uv_server_read__backpressure(void **state)
{
    struct fixture *f = *state;
    struct tdm_uv_server_config config = config_of(f);
    config.requests_max = 1;
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    int fd = connect_to(f->socket_path);
    uint8_t frames[8 * 32];
    size_t size = 0;
    for (uint64_t id = 1; id <= 8; id++) {
        struct tdm_proto_msg msg = {.type = TDM_PROTO_STATUS};
        msg.status.request_id = id;
        size_t written = 0;
        assert_int_equal(
            tdm_proto_encode(&msg, frames + size, sizeof(frames) - size, &written, NULL), 0);
        size += written;
    }
    assert_int_equal(send(fd, frames, size, 0), (ssize_t)size);
    static uint8_t buffer[TDM_PROTO_FRAME_HEADER_SIZE + 4096];
    struct tdm_proto_reader reader;
    tdm_proto_reader_init(&reader, buffer, sizeof(buffer));
    uint64_t next_id = 1;
    while (next_id <= 8) {
        uint8_t answer[1024];
        ssize_t n = run_until_readable(f, fd, answer, sizeof(answer));
        assert_true(n > 0);
        size_t offset = 0;
        while (offset < (size_t)n) {
            size_t consumed = 0;
            assert_int_equal(tdm_proto_reader_feed(&reader, answer + offset, (size_t)n - offset,
                                                   &consumed, NULL),
                             0);
            offset += consumed;
            struct tdm_proto_frame frame;
            while (tdm_proto_reader_next(&reader, &frame, NULL) == 0) {
                struct tdm_proto_msg result;
                assert_int_equal(tdm_proto_decode(&frame, &result, NULL), 0);
                assert_int_equal(result.type, TDM_PROTO_STATUS_RESULT);
                assert_int_equal(result.status_result.request_id, next_id);
                next_id++;
                size_t more = 0;
                assert_int_equal(tdm_proto_reader_feed(&reader, answer + offset, (size_t)n - offset,
                                                       &more, NULL),
                                 0);
                offset += more;
            }
        }
    }
    close(fd);
    close_server(f, server);
}

static void serving_count_cb(void *data)
{
    (*(int *)data)++;
}

static bool sigpipe_ignored(void)
{
    struct sigaction action;
    assert_int_equal(sigaction(SIGPIPE, NULL, &action), 0);
    return action.sa_handler == SIG_IGN;
}

/* tdm_uv_serve() with a control (an embedding application's server thread):
 * a stop asked before the loop runs stops it as soon as it serves (after the
 * serving callback ran once), cleanly (socket removed, every handle closed:
 * it returns 0); it installs nothing for signals (SIGPIPE keeps its
 * disposition); a stop after it returned does nothing. */
static void test_uv_serve__control_stop_before_serving(void **state)
{
    struct fixture *f = *state;
    struct tdm_uv_server_config config = config_of(f);
    int serving_count = 0;
    struct tdm_uv_serve_control *control = NULL;
    assert_int_equal(tdm_uv_serve_control_new(serving_count_cb, &serving_count, &control), 0);
    bool ignored = sigpipe_ignored();
    tdm_uv_serve_stop(control);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_serve(&config, NULL, control, &diag), 0);
    assert_int_equal(serving_count, 1);
    assert_false(tdm_test_file_exists(f->dir, "tandemd.sock"));
    assert_int_equal(sigpipe_ignored(), ignored);
    tdm_uv_serve_stop(control);
    tdm_uv_serve_control_free(control);
}

/* A tdm_uv_serve() with a control that cannot start (a live server answers on
 * its path) returns the error without calling serving, and leaves the control
 * free to be freed. */
static void test_uv_serve__control_start_fails(void **state)
{
    struct fixture *f = *state;
    struct tdm_uv_server_config config = config_of(f);
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    int serving_count = 0;
    struct tdm_uv_serve_control *control = NULL;
    assert_int_equal(tdm_uv_serve_control_new(serving_count_cb, &serving_count, &control), 0);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_serve(&config, NULL, control, &diag), -EADDRINUSE);
    assert_int_equal(serving_count, 0);
    tdm_uv_serve_stop(control);
    tdm_uv_serve_control_free(control);
    close_server(f, server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uv_server_start__socket_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_server_start__stale_and_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_server_status__round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_server_read__malformed_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_server_accept__clients_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_server_read__backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_serve__control_stop_before_serving, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uv_serve__control_start_fails, setup, teardown),
    };
    return cmocka_run_group_tests_name("uv_server", tests, NULL, NULL);
}
