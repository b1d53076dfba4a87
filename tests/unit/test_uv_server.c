/* tests/unit/test_uv_server.c: the local client socket server (net/uv_server.c)
 * on a real loop and a real Unix socket in a tmpdir: socket mode, stale-file
 * removal, refusal of a live path, a STATUS round trip, a malformed frame that
 * closes only its connection, the connection limit, backpressure under
 * requests_max, a clean close after which uv_loop_close()
 * returns 0 (no handle leaked; STYLE B8), tdm_uv_serve() stopped by its
 * control rather than by a signal, and a VERIFY answer streamed line by line
 * while its callback runs. */
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

/* ---- VERIFY streams its lines (PROTOCOL.md §7.7) ------------------------------ */

/* The inspect callback of the streaming test: one line, then wait until the
 * test has received it (it must be sent while the callback still runs),
 * then a second line. */
struct stream_inspect {
    uv_mutex_t mutex;
    uv_cond_t cond;
    bool first_received;
};

#define STREAM_WAIT_NS (60ull * 1000 * 1000 * 1000) /* Deadline, not a timing check. */

static int stream_inspect_cb(void *data, uint16_t type, uint8_t flags, tdm_uv_line_cb line,
                             void *line_data, struct tdm_diag *diag)
{
    struct stream_inspect *s = data;
    if (type != TDM_PROTO_VERIFY || flags != TDM_PROTO_VERIFY_DEEP) {
        tdm_diag_printf(diag, "unexpected type %u flags %u", type, flags);
        return TANDEM_EINVALID;
    }
    int rv = line(line_data, "one", 3);
    if (rv != 0) {
        return rv;
    }
    uv_mutex_lock(&s->mutex);
    while (!s->first_received) {
        if (uv_cond_timedwait(&s->cond, &s->mutex, STREAM_WAIT_NS) != 0) {
            break;
        }
    }
    bool received = s->first_received;
    uv_mutex_unlock(&s->mutex);
    if (!received) {
        tdm_diag_printf(diag, "the first line was not sent while the pass ran");
        return TANDEM_EBUSY;
    }
    return line(line_data, "two", 3);
}

/* Read the next whole frame from fd, running the loop meanwhile. */
static void stream_next(struct fixture *f, int fd, struct tdm_proto_reader *reader,
                        struct tdm_proto_msg *msg)
{
    static uint8_t bytes[4096];
    static size_t have;
    static size_t used;
    for (;;) {
        struct tdm_proto_frame frame;
        struct tdm_diag diag = {{0}};
        int rv = tdm_proto_reader_next(reader, &frame, &diag);
        if (rv == 0) {
            assert_int_equal(tdm_proto_decode(&frame, msg, &diag), 0);
            return;
        }
        assert_int_equal(rv, -EAGAIN);
        if (used == have) {
            ssize_t n = run_until_readable(f, fd, bytes, sizeof(bytes));
            assert_true(n > 0);
            have = (size_t)n;
            used = 0;
        }
        size_t consumed = 0;
        assert_int_equal(tdm_proto_reader_feed(reader, bytes + used, have - used, &consumed, &diag),
                         0);
        used += consumed;
    }
}

/* A VERIFY answer's first line reaches the client while the callback still
 * runs (each line its own frame flagged MORE), then the second, then an
 * empty closing frame; the request id pairs them all. */
static void test_uv_server_verify__streams_lines(void **state)
{
    struct fixture *f = *state;
    struct stream_inspect s = {.first_received = false};
    assert_int_equal(uv_mutex_init(&s.mutex), 0);
    assert_int_equal(uv_cond_init(&s.cond), 0);
    struct tdm_uv_server_config config = config_of(f);
    config.inspect = stream_inspect_cb;
    config.inspect_data = &s;
    struct tdm_uv_server *server = NULL;
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &server, NULL), 0);
    int fd = connect_to(f->socket_path);
    struct tdm_proto_msg msg = {.type = TDM_PROTO_VERIFY};
    msg.inspect.request_id = 7;
    msg.inspect.flags = TDM_PROTO_VERIFY_DEEP;
    uint8_t frame[64];
    size_t written = 0;
    assert_int_equal(tdm_proto_encode(&msg, frame, sizeof(frame), &written, NULL), 0);
    assert_int_equal(send(fd, frame, written, 0), (ssize_t)written);
    uint8_t *buffer = tdm_malloc(TDM_PROTO_BUFFER_SIZE);
    struct tdm_proto_reader reader;
    tdm_proto_reader_init(&reader, buffer, TDM_PROTO_BUFFER_SIZE);
    static const char *const want[] = {"one\n", "two\n", ""};
    for (size_t i = 0; i < 3; i++) {
        struct tdm_proto_msg result;
        stream_next(f, fd, &reader, &result);
        assert_int_equal(result.type, TDM_PROTO_VERIFY_RESULT);
        assert_int_equal(result.inspect_result.request_id, 7);
        assert_int_equal(result.inspect_result.status, 0);
        assert_int_equal(result.inspect_result.flags, i < 2 ? TDM_PROTO_RESULT_MORE : 0);
        assert_int_equal(result.inspect_result.text.size, strlen(want[i]));
        assert_memory_equal(result.inspect_result.text.data, want[i], strlen(want[i]));
        if (i == 0) {
            uv_mutex_lock(&s.mutex);
            s.first_received = true;
            uv_cond_signal(&s.cond);
            uv_mutex_unlock(&s.mutex);
        }
    }
    tdm_free(buffer);
    close(fd);
    close_server(f, server);
    uv_cond_destroy(&s.cond);
    uv_mutex_destroy(&s.mutex);
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
        cmocka_unit_test_setup_teardown(test_uv_server_verify__streams_lines, setup, teardown),
    };
    return cmocka_run_group_tests_name("uv_server", tests, NULL, NULL);
}
