/* tests/unit/test_client.c: the client of a node (net/client.c and the public
 * tandem_client_* API of net/client_api.c) against a real server
 * (net/uv_server.c) over TCP + mutual TLS 1.3 and over the local socket.
 *
 * Method: the group setup creates two CAs in a tmpdir ("c1", the cluster, and
 * "c2", a stranger), issues node2 (the server's certificate), node1 and
 * client:alice from c1 and client:mallory from c2, and creates a node
 * directory. Each test starts, on a loop of its own run by a second thread, a
 * tdm_uv_server for the node (its local socket) and a uv_link listener on
 * 127.0.0.1:0 that allows clients and node1 (as a node's listener allows its
 * peers), whose on_accept adopts every authenticated link into the server and
 * closes those the server refuses, as net/uv_daemon.c does. The test thread is
 * the client and makes blocking calls. Teardown stops the loop through a
 * uv_async, joins the thread and asserts uv_loop_close() == 0 (no handle
 * leaked, STYLE B8). The library heap stays libc's: cmocka's test_malloc is
 * not thread-safe, and three threads allocate (test, loop, commit). */
#include "tdm_test.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "engine/base/alloc.h"
#include "net/client.h"
#include "net/proto.h"
#include "net/tls.h"
#include "net/uv.h"
#include "net/uv_link.h"
#include "tools/jsonl.h"

#define PATH_SIZE   1200
#define WAIT_MS_MAX 10000 /* Bound on waiting for the loop thread to notice something. */
/* Backpressure: records of BULK_SUBJECT_SIZE-byte subjects, so that each query
 * answer is about 26 MB of JSON Lines, BULK_QUERIES of them at once. */
#define BULK_RECORDS      24000u
#define BULK_PER_APPEND   4000u
#define BULK_SUBJECT_SIZE 900u
#define BULK_QUERIES      3u
#define BULK_CUSTOMER     77u

struct fixture {
    uv_loop_t loop;
    uv_async_t stop; /* Test thread -> loop thread: close everything. */
    pthread_t thread;
    int run_rv;                /* uv_run()'s return on the loop thread. */
    struct tdm_tls_config tls; /* node2: the server's credentials. */
    struct tdm_uv_server *server;
    struct tdm_uv_listener *listener;
    char socket_path[PATH_SIZE + 32];
    char address[64]; /* "127.0.0.1:PORT" of the listener. */
    bool server_closed;
    _Atomic int accepts;         /* Authenticated links handed to on_accept. */
    _Atomic int accept_failures; /* Connections that failed before authentication. */
    _Atomic int refusals;        /* Links tdm_uv_server_adopt() refused. */
    _Atomic int refusal_code;    /* Its last code. */
};

static char tmp_dir[256];
static char node_dir[PATH_SIZE];
static struct tandem *node;

static void path_make(char *out, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", tmp_dir, name);
    assert_true(n > 0 && n < PATH_SIZE);
}

/* ---- Group fixture: CAs, certificates, the node ------------------------------- */

static void issue(const char *ca, const char *name, const char *dir)
{
    char ca_path[PATH_SIZE];
    char out[PATH_SIZE];
    struct tdm_diag diag = {{0}};
    path_make(ca_path, ca);
    path_make(out, dir);
    assert_int_equal(tdm_pki_issue(ca_path, name, out, &diag), 0);
}

/* Copy tmp_dir/from to tmp_dir/to. */
static void file_copy(const char *from, const char *to)
{
    char from_path[PATH_SIZE];
    char to_path[PATH_SIZE];
    path_make(from_path, from);
    path_make(to_path, to);
    FILE *in = fopen(from_path, "rb");
    FILE *out = fopen(to_path, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), in)) > 0) {
        assert_int_equal(fwrite(buffer, 1, n, out), n);
    }
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static int group_setup(void **state)
{
    (void)state;
    assert_int_equal(tdm_test_tmpdir_create(tmp_dir, sizeof(tmp_dir)), 0);
    struct tdm_diag diag = {{0}};
    char path[PATH_SIZE];
    path_make(path, "c1");
    assert_int_equal(tdm_pki_ca_create(path, "c1", &diag), 0);
    path_make(path, "c2");
    assert_int_equal(tdm_pki_ca_create(path, "c2", &diag), 0);
    issue("c1", "node2", "node2");
    issue("c1", "node1", "node1");
    issue("c1", "client:alice", "alice");
    issue("c2", "client:mallory", "mallory");
    /* mixed: mallory's key and certificate beside the cluster's ca.crt. */
    issue("c2", "client:mallory", "mixed");
    file_copy("alice/ca.crt", "mixed/ca.crt");
    path_make(node_dir, "node");
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    assert_int_equal(tandem_open(node_dir, &options, &node, NULL), 0);
    unsetenv("TANDEM_CERT");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tandem_close(node);
    tdm_test_tmpdir_remove(tmp_dir);
    return 0;
}

/* ---- Per test: the server on a loop thread ------------------------------------ */

/* tdm_uv_status_cb: a small document with the node's last LSN. */
static int status_cb(void *data, struct tandem *t, const void *snapshot, char **out, size_t *size)
{
    (void)data;
    (void)snapshot;
    struct tandem_status status;
    int rv = tandem_status(t, &status);
    if (rv != 0) {
        return rv;
    }
    char *text = tdm_malloc(64);
    if (text == NULL) {
        return -ENOMEM;
    }
    int n = snprintf(text, 64, "{\"schema\": 1, \"lsn_last\": %llu}",
                     (unsigned long long)status.lsn_last);
    *out = text;
    *size = (size_t)n;
    return 0;
}

/* The listener's on_accept: adopt every authenticated link; close refusals. */
static void accept_cb(struct tdm_uv_listener *listener, struct tdm_uv_link *link, int status,
                      const struct tdm_diag *diag, void *data)
{
    struct fixture *f = data;
    (void)listener;
    (void)diag;
    if (status != 0) {
        atomic_fetch_add(&f->accept_failures, 1);
        return;
    }
    atomic_fetch_add(&f->accepts, 1);
    struct tdm_diag why = {{0}};
    int rv = tdm_uv_server_adopt(f->server, link, &why);
    if (rv != 0) {
        atomic_store(&f->refusal_code, rv);
        atomic_fetch_add(&f->refusals, 1);
        tdm_uv_link_close(link);
    }
}

/* The listener's link callbacks: only links the server refused keep them, and
 * those are closed before any frame is delivered. */
static void link_frame_cb(struct tdm_uv_link *link, const struct tdm_proto_msg *msg, void *data)
{
    (void)link;
    (void)msg;
    (void)data;
}

static void link_close_cb(struct tdm_uv_link *link, int status, const struct tdm_diag *diag,
                          void *data)
{
    (void)link;
    (void)status;
    (void)diag;
    (void)data;
}

static void server_closed_cb(void *data)
{
    struct fixture *f = data;
    f->server_closed = true;
}

static void stop_cb(uv_async_t *async)
{
    struct fixture *f = async->data;
    uv_close((uv_handle_t *)async, NULL);
    tdm_uv_listener_close(f->listener, NULL, NULL);
    tdm_uv_server_close(f->server, server_closed_cb, f);
}

static void *loop_thread(void *data)
{
    struct fixture *f = data;
    f->run_rv = uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void listen_start(struct fixture *f)
{
    struct sockaddr_in address;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &address), 0);
    const char *allowed[] = {"node1"};
    struct tdm_uv_listen_config config = {
        .address = (const struct sockaddr *)&address,
        .tls = &f->tls,
        .allowed = allowed,
        .allowed_count = 1,
        .clients = true,
        .timeout_ms = 2000,
        .on_accept = accept_cb,
        .callbacks = {.on_frame = link_frame_cb, .on_close = link_close_cb, .data = f},
    };
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_link_listen(&f->loop, &config, &f->listener, &diag), 0);
    struct sockaddr_storage bound;
    assert_int_equal(tdm_uv_listener_address(f->listener, &bound), 0);
    unsigned port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    snprintf(f->address, sizeof(f->address), "127.0.0.1:%u", port);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    char path[PATH_SIZE];
    struct tdm_diag diag = {{0}};
    path_make(path, "node2");
    assert_int_equal(tdm_tls_config_init_dir(&f->tls, path, &diag), 0);
    snprintf(f->socket_path, sizeof(f->socket_path), "%s/tandemd.sock", node_dir);
    struct tdm_uv_server_config config = {
        .socket_path = f->socket_path,
        .t = node,
        .format = tdm_jsonl_format,
        .status = status_cb,
    };
    assert_int_equal(tdm_uv_server_start(&f->loop, &config, &f->server, &diag), 0);
    listen_start(f);
    assert_int_equal(uv_async_init(&f->loop, &f->stop, stop_cb), 0);
    f->stop.data = f;
    /* From here on only the loop thread touches the loop. */
    assert_int_equal(pthread_create(&f->thread, NULL, loop_thread, f), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_async_send(&f->stop), 0);
    assert_int_equal(pthread_join(f->thread, NULL), 0);
    assert_int_equal(f->run_rv, 0);
    assert_true(f->server_closed);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tdm_tls_config_close(&f->tls);
    free(f);
    return 0;
}

/* ---- Helpers -------------------------------------------------------------------- */

static void cert_path(char *out, const char *name)
{
    path_make(out, name);
}

static void record_make(struct tandem_record *record, uint32_t customer_id, int64_t time_ns,
                        const char *subject, size_t subject_size)
{
    memset(record, 0, sizeof(*record));
    record->type = TANDEM_RECORD_MESSAGE;
    struct tandem_message *m = &record->message;
    m->customer_id = customer_id;
    m->time_ns = time_ns;
    m->size = 2048;
    m->destination = TANDEM_DESTINATION_DELIVERED;
    m->classification = TANDEM_CLASSIFICATION_CLEAN;
    m->recipient = (struct tandem_bytes){"rcpt@example.net", 16};
    m->sender = (struct tandem_bytes){"from@example.org", 16};
    m->message_id = (struct tandem_bytes){"<id@example.org>", 16};
    m->relay_ip.family = 4;
    m->relay_ip.bytes[0] = 192;
    m->relay_ip.bytes[3] = 2;
    m->subject = (struct tandem_bytes){subject, subject_size};
}

static uint64_t node_lsn_last(void)
{
    struct tandem_status status;
    assert_int_equal(tandem_status(node, &status), 0);
    return status.lsn_last;
}

/* Wait (bounded) until *counter reaches at least want. */
static void wait_for(_Atomic int *counter, int want)
{
    for (int ms = 0; ms < WAIT_MS_MAX && atomic_load(counter) < want; ms++) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
    assert_true(atomic_load(counter) >= want);
}

/* Append three records and check status through an open client. */
static void append_and_status(struct tandem_client *client)
{
    struct tandem_record records[3];
    for (int i = 0; i < 3; i++) {
        record_make(&records[i], 5, 1000 + i, "hello", 5);
    }
    uint64_t before = node_lsn_last();
    uint64_t lsn_first = 0;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_append(client, records, 3, &lsn_first, &diag), 0);
    assert_int_equal(lsn_first, before + 1);
    assert_int_equal(tandem_client_append(client, records, 1, &lsn_first, &diag), 0);
    assert_int_equal(lsn_first, before + 4);
    char *json = NULL;
    assert_int_equal(tandem_client_status(client, &json, &diag), 0);
    char want[64];
    snprintf(want, sizeof(want), "\"lsn_last\": %llu}", (unsigned long long)(before + 4));
    assert_non_null(strstr(json, want));
    free(json);
}

/* A client of f's listener with alice's client certificate. */
static struct tandem_client *client_open_alice(const struct fixture *f)
{
    char alice[PATH_SIZE];
    cert_path(alice, "alice");
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(f->address, alice, &client, &diag), 0);
    return client;
}

/* ---- Tests ---------------------------------------------------------------------- */

/* Over TCP + TLS with a client certificate, appends are acknowledged with
 * consecutive LSNs and status returns the node's document; a record that
 * breaks a limit is refused before sending, naming its index and field, and
 * the client stays usable. */
static void test_tandem_client__tcp_append_status(void **state)
{
    struct fixture *f = *state;
    struct tandem_client *client = client_open_alice(f);
    struct tandem_diag diag = {{0}};
    append_and_status(client);

    struct tandem_record records[2];
    record_make(&records[0], 5, 1, "ok", 2);
    record_make(&records[1], 5, 1, "ok", 2);
    records[1].message.recipient.size = 0;
    uint64_t lsn_first = 0;
    assert_int_equal(tandem_client_append(client, records, 2, &lsn_first, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "record 1: recipient"));
    assert_int_equal(tandem_client_append(client, records, 0, &lsn_first, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "record count 0 out of range"));
    assert_int_equal(tandem_client_append(client, records, 2, NULL, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "lsn_first"));

    /* Records each valid but together more than one request can carry. */
    static char subject[TANDEM_SUBJECT_SIZE_MAX];
    static char id[TANDEM_MESSAGE_ID_SIZE_MAX];
    memset(subject, 's', sizeof(subject));
    memset(id, 'm', sizeof(id));
    struct tandem_record *many = calloc(TANDEM_APPEND_RECORDS_MAX, sizeof(*many));
    assert_non_null(many);
    for (size_t i = 0; i < TANDEM_APPEND_RECORDS_MAX; i++) {
        record_make(&many[i], 5, 1, subject, sizeof(subject));
        many[i].message.message_id = (struct tandem_bytes){id, sizeof(id)};
    }
    assert_int_equal(
        tandem_client_append(client, many, TANDEM_APPEND_RECORDS_MAX, &lsn_first, &diag),
        TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "append them in several calls"));
    free(many);
    append_and_status(client);
    tandem_client_close(client);
    assert_true(atomic_load(&f->accepts) >= 1);
    assert_int_equal(atomic_load(&f->refusals), 0);
}

/* ---- One client shared by threads (include/tandem.h) --------------------------------- */

#define SHARED_THREADS 72 /* More than a client admits at once (64): some wait for room. */
#define SHARED_CALLS   8

struct shared_thread {
    pthread_t thread;
    struct tandem_client *client;
    uint32_t index;
    uint64_t lsn_first[SHARED_CALLS]; /* Of each call, in call order. */
    uint32_t count[SHARED_CALLS];
    int rv; /* First failure; 0 if none. */
    char message[TANDEM_DIAG_SIZE];
};

static void *shared_thread_main(void *arg)
{
    struct shared_thread *t = arg;
    struct tandem_record records[3];
    for (uint32_t call = 0; call < SHARED_CALLS && t->rv == 0; call++) {
        uint32_t count = 1 + (t->index + call) % 3;
        for (uint32_t i = 0; i < count; i++) {
            /* Customers 1000+: no other test queries them. */
            record_make(&records[i], 1000 + t->index, (int64_t)(call * 3 + i), "shared", 6);
        }
        struct tandem_diag diag = {{0}};
        t->count[call] = count;
        t->rv = tandem_client_append(t->client, records, count, &t->lsn_first[call], &diag);
        if (t->rv == 0 && call == SHARED_CALLS / 2) {
            char *json = NULL;
            t->rv = tandem_client_status(t->client, &json, &diag);
            if (t->rv == 0 && strstr(json, "\"lsn_last\"") == NULL) {
                t->rv = -EPROTO;
            }
            free(json);
        }
        snprintf(t->message, sizeof(t->message), "%s", diag.message);
    }
    return NULL;
}

static void shared_run(struct shared_thread *threads, struct tandem_client *client)
{
    for (uint32_t i = 0; i < SHARED_THREADS; i++) {
        memset(&threads[i], 0, sizeof(threads[i]));
        threads[i].client = client;
        threads[i].index = i;
        assert_int_equal(pthread_create(&threads[i].thread, NULL, shared_thread_main, &threads[i]),
                         0);
    }
    for (uint32_t i = 0; i < SHARED_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i].thread, NULL), 0);
    }
}

static int range_compare(const void *a, const void *b)
{
    const uint64_t *x = a;
    const uint64_t *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* The calls' LSN ranges ({lsn_first, count}) tile before + 1 .. the node's
 * last LSN exactly: none lost, none doubled. */
static void ranges_check_tile(uint64_t (*ranges)[2], uint32_t range_count, uint64_t before)
{
    qsort(ranges, range_count, sizeof(ranges[0]), range_compare);
    uint64_t next = before + 1;
    for (uint32_t r = 0; r < range_count; r++) {
        assert_int_equal(ranges[r][0], next);
        next += ranges[r][1];
    }
    assert_int_equal(node_lsn_last(), next - 1);
}

/* 72 threads share one client over TCP + TLS, each appending 8 times
 * (1-3 records a call) and asking for status once, all at once: every call
 * gets its own answer (at most 64 calls are in flight at once: the others
 * wait for room). Each thread's LSNs grow call by call, and the calls'
 * LSN ranges tile exactly the LSNs the node wrote: none lost, none doubled,
 * no answer given to the wrong caller. */
static void test_tandem_client__shared_by_threads(void **state)
{
    struct fixture *f = *state;
    struct tandem_client *client = client_open_alice(f);
    uint64_t before = node_lsn_last();
    static struct shared_thread threads[SHARED_THREADS];
    shared_run(threads, client);
    static uint64_t ranges[SHARED_THREADS * SHARED_CALLS][2];
    uint32_t range_count = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < SHARED_THREADS; i++) {
        if (threads[i].rv != 0) {
            fail_msg("thread %u: %s: %s", i, tandem_strerror(threads[i].rv), threads[i].message);
        }
        for (uint32_t call = 0; call < SHARED_CALLS; call++) {
            if (call > 0) {
                assert_true(threads[i].lsn_first[call] >
                            threads[i].lsn_first[call - 1] + threads[i].count[call - 1] - 1);
            }
            ranges[range_count][0] = threads[i].lsn_first[call];
            ranges[range_count][1] = threads[i].count[call];
            range_count++;
            total += threads[i].count[call];
        }
    }
    ranges_check_tile(ranges, range_count, before);
    assert_int_equal(node_lsn_last(), before + total);
    tandem_client_close(client);
}

/* Make the node directory tmp_dir/name with a listening DIR/tandemd.sock, as
 * a fake tandemd would; dir receives its path. Returns the listening fd. */
static int fake_node_listen(const char *name, char *dir)
{
    path_make(dir, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/tandemd.sock", dir);
    assert_true(n > 0 && (size_t)n < sizeof(addr.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

/* A fake tandemd on a node directory's local socket: it accepts one
 * connection, reads what comes for a while, then either closes it or answers
 * a request nobody made. */
struct fake_server {
    pthread_t thread;
    int listen_fd;
    bool answer_unknown; /* Else: close without answering. */
    size_t received;     /* Bytes read before acting. */
};

static void *fake_server_main(void *arg)
{
    struct fake_server *s = arg;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    uint8_t buffer[65536];
    /* Wait until every thread's request is in (or 2 s). */
    for (int i = 0; i < 200 && s->received < SHARED_THREADS * 20; i++) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 10000000};
        nanosleep(&pause, NULL);
        ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            s->received += (size_t)n;
        }
    }
    if (s->answer_unknown) {
        struct tdm_proto_msg *msg = calloc(1, sizeof(*msg));
        msg->type = TDM_PROTO_APPEND_RESULT;
        msg->append_result.request_id = 999999;
        msg->append_result.lsn_first = 1;
        msg->append_result.record_count = 1;
        size_t written = 0;
        struct tdm_diag diag = {{0}};
        if (tdm_proto_encode(msg, buffer, sizeof(buffer), &written, &diag) == 0) {
            (void)send(fd, buffer, written, MSG_NOSIGNAL);
        }
        free(msg);
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 200000000};
        nanosleep(&pause, NULL);
    }
    close(fd);
    return NULL;
}

static void fake_server_check(bool answer_unknown, int want, const char *want_message)
{
    char dir[PATH_SIZE];
    struct fake_server server = {.answer_unknown = answer_unknown};
    server.listen_fd = fake_node_listen(answer_unknown ? "fake-unknown" : "fake-close", dir);
    assert_int_equal(pthread_create(&server.thread, NULL, fake_server_main, &server), 0);
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(dir, NULL, &client, &diag), 0);
    static struct shared_thread threads[SHARED_THREADS];
    shared_run(threads, client);
    for (uint32_t i = 0; i < SHARED_THREADS; i++) {
        assert_int_equal(threads[i].rv, want);
        assert_non_null(strstr(threads[i].message, want_message));
    }
    /* Sticky: a later call gets the same failure at once. */
    struct tandem_record record;
    record_make(&record, 5, 1, "x", 1);
    uint64_t lsn_first = 0;
    assert_int_equal(tandem_client_append(client, &record, 1, &lsn_first, &diag), want);
    assert_non_null(strstr(diag.message, want_message));
    tandem_client_close(client);
    assert_int_equal(pthread_join(server.thread, NULL), 0);
    close(server.listen_fd);
}

struct combine_caller {
    pthread_t thread;
    struct tandem_client *client;
    uint64_t lsn;
    int rv;
};

/* One one-record append on the shared client. */
static void *combine_caller_main(void *arg)
{
    struct combine_caller *caller = arg;
    struct tandem_record record;
    record_make(&record, 2000, 1, "combined", 8);
    struct tandem_diag diag = {{0}};
    caller->rv = tandem_client_append(caller->client, &record, 1, &caller->lsn, &diag);
    return NULL;
}

/* A fake node on a local socket that answers APPEND_REQUESTs slowly: it
 * reads for 300 ms before answering anything, then answers every request it
 * has, oldest first (LSNs from 1), and keeps doing so until calls_total
 * records are answered. It counts the requests and the most it saw unanswered
 * at once. */
struct combine_server {
    pthread_t thread;
    int listen_fd;
    uint32_t calls_total;
    uint32_t requests;         /* APPEND_REQUESTs received. */
    uint32_t unanswered_max;   /* Most requests waiting for an answer at once. */
    uint32_t first_wait_count; /* Requests received in the first 300 ms. */
    int failed;                /* A frame that did not decode. */
    bool answer_one;           /* Answer only the oldest request per round (1 ms). */
    uint32_t small_requests;   /* After the first 4 requests: those of fewer than 8 records. */
};

static void *combine_server_main(void *arg)
{
    struct combine_server *s = arg;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) {
        s->failed = 1;
        return NULL;
    }
    uint8_t *buffer = malloc(TDM_PROTO_BUFFER_SIZE);
    struct tdm_proto_msg *msg = calloc(1, sizeof(*msg));
    struct tdm_proto_reader reader;
    tdm_proto_reader_init(&reader, buffer, TDM_PROTO_BUFFER_SIZE);
    uint64_t ids[SHARED_THREADS];
    uint32_t counts[SHARED_THREADS];
    uint32_t unanswered = 0;
    uint32_t answered_records = 0;
    uint64_t lsn_next = 1;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (answered_records < s->calls_total && s->failed == 0) {
        uint8_t in[65536];
        ssize_t n = recv(fd, in, sizeof(in), MSG_DONTWAIT);
        if (n == 0) {
            break;
        }
        size_t used = 0;
        struct tdm_diag diag = {{0}};
        while (n > 0 && used < (size_t)n) {
            size_t consumed = 0;
            if (tdm_proto_reader_feed(&reader, in + used, (size_t)n - used, &consumed, &diag) !=
                0) {
                s->failed = 2;
                break;
            }
            used += consumed;
            struct tdm_proto_frame frame;
            while (tdm_proto_reader_next(&reader, &frame, &diag) == 0) {
                if (tdm_proto_decode(&frame, msg, &diag) != 0 ||
                    msg->type != TDM_PROTO_APPEND_REQUEST || unanswered == SHARED_THREADS) {
                    s->failed = 3;
                    break;
                }
                ids[unanswered] = msg->append_request.request_id;
                counts[unanswered] = msg->append_request.record_count;
                unanswered++;
                s->requests++;
                if (s->requests > 4 && msg->append_request.record_count < 8) {
                    s->small_requests++;
                }
            }
        }
        s->unanswered_max = unanswered > s->unanswered_max ? unanswered : s->unanswered_max;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms < 300) {
            s->first_wait_count = s->requests;
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
            nanosleep(&pause, NULL);
            continue;
        }
        uint32_t answering = s->answer_one && unanswered > 0 ? 1 : unanswered;
        for (uint32_t i = 0; i < answering; i++) {
            memset(msg, 0, sizeof(*msg));
            msg->type = TDM_PROTO_APPEND_RESULT;
            msg->append_result.request_id = ids[i];
            msg->append_result.lsn_first = lsn_next;
            msg->append_result.record_count = counts[i];
            lsn_next += counts[i];
            answered_records += counts[i];
            size_t written = 0;
            if (tdm_proto_encode(msg, in, sizeof(in), &written, &diag) != 0 ||
                send(fd, in, written, MSG_NOSIGNAL) != (ssize_t)written) {
                s->failed = 4;
            }
        }
        memmove(ids, ids + answering, (unanswered - answering) * sizeof(ids[0]));
        memmove(counts, counts + answering, (unanswered - answering) * sizeof(counts[0]));
        unanswered -= answering;
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
    free(msg);
    free(buffer);
    close(fd);
    return NULL;
}

/* Start server (a combine_server on node directory tmp_dir/name that
 * answers calls_total records, one request per round if answer_one) and
 * return a client of it. */
static struct tandem_client *combine_server_start(struct combine_server *server, const char *name,
                                                  uint32_t calls_total, bool answer_one)
{
    char dir[PATH_SIZE];
    memset(server, 0, sizeof(*server));
    server->calls_total = calls_total;
    server->answer_one = answer_one;
    server->listen_fd = fake_node_listen(name, dir);
    assert_int_equal(pthread_create(&server->thread, NULL, combine_server_main, server), 0);
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(dir, NULL, &client, &diag), 0);
    return client;
}

/* Appends of many threads on one client travel combined: while two requests
 * wait for answers, nothing more is sent; once they are answered, every call
 * that waited leaves in one request. All SHARED_THREADS one-record calls get
 * their own LSN, the LSNs tile 1..SHARED_THREADS, and the node saw fewer
 * requests than calls. */
static void test_tandem_client__shared_appends_combined(void **state)
{
    (void)state;
    static struct combine_server server;
    struct tandem_client *client =
        combine_server_start(&server, "fake-combine", SHARED_THREADS, false);
    static struct combine_caller callers[SHARED_THREADS];
    for (uint32_t i = 0; i < SHARED_THREADS; i++) {
        callers[i].client = client;
        assert_int_equal(pthread_create(&callers[i].thread, NULL, combine_caller_main, &callers[i]),
                         0);
    }
    static bool seen[SHARED_THREADS + 1];
    memset(seen, 0, sizeof(seen));
    for (uint32_t i = 0; i < SHARED_THREADS; i++) {
        assert_int_equal(pthread_join(callers[i].thread, NULL), 0);
        assert_int_equal(callers[i].rv, 0);
        assert_true(callers[i].lsn >= 1 && callers[i].lsn <= SHARED_THREADS);
        assert_false(seen[callers[i].lsn]);
        seen[callers[i].lsn] = true;
    }
    tandem_client_close(client);
    assert_int_equal(pthread_join(server.thread, NULL), 0);
    close(server.listen_fd);
    assert_int_equal(server.failed, 0);
    assert_true(server.first_wait_count <= 2); /* Two in flight, the rest held back. */
    assert_true(server.unanswered_max <= 2);
    assert_true(server.requests < SHARED_THREADS);
}

/* Threads waiting on a shared client when the node closes the connection all
 * fail with -ECONNRESET, naming it; so does every later call. An answer to a
 * request nobody made breaks the stream for every caller (TANDEM_ECORRUPT). */
static void test_tandem_client__shared_failures(void **state)
{
    (void)state;
    fake_server_check(false, -ECONNRESET, "closed the connection");
    fake_server_check(true, TANDEM_ECORRUPT, "which no call waits for");
}

/* ---- Asynchronous appends (tandem_client_append_async) ------------------------------ */

#define ASYNC_CHAINS 16 /* Chains of calls, each one call in flight at a time. */
#define ASYNC_CALLS  12 /* Calls per chain: each callback makes the next. */

struct async_chain {
    struct tandem_client *client;
    uint32_t index;
    uint32_t calls;                  /* Made so far. */
    uint64_t lsn_first[ASYNC_CALLS]; /* Of each call, in call order. */
    uint32_t count[ASYNC_CALLS];     /* Records of each call. */
    int status;                      /* First failure; 0 if none. */
    char message[TANDEM_DIAG_SIZE];  /* Its diag. */
    int blocking_rv;                 /* A blocking call from the last callback. */
    char blocking_message[TANDEM_DIAG_SIZE];
    _Atomic int *ended; /* Chains whose last callback ran. */
};

static void async_chain_next(struct async_chain *chain);

static void async_chain_cb(void *data, int status, uint64_t lsn_first,
                           const struct tandem_diag *diag)
{
    struct async_chain *chain = data;
    if (status != 0) {
        chain->status = status;
        snprintf(chain->message, sizeof(chain->message), "%s", diag->message);
        atomic_fetch_add(chain->ended, 1);
        return;
    }
    assert_null(diag);
    chain->lsn_first[chain->calls - 1] = lsn_first;
    if (chain->calls < ASYNC_CALLS) {
        async_chain_next(chain);
        return;
    }
    /* A blocking call here would wait for this very thread: refused. */
    struct tandem_diag why = {{0}};
    uint64_t lsn = 0;
    struct tandem_record record;
    record_make(&record, 3000, 1, "blocking", 8);
    chain->blocking_rv = tandem_client_append(chain->client, &record, 1, &lsn, &why);
    snprintf(chain->blocking_message, sizeof(chain->blocking_message), "%s", why.message);
    atomic_fetch_add(chain->ended, 1);
}

/* The chain's next call (from the test's thread first, then from callbacks). */
static void async_chain_next(struct async_chain *chain)
{
    struct tandem_record records[3];
    uint32_t count = 1 + (chain->index + chain->calls) % 3;
    for (uint32_t i = 0; i < count; i++) {
        /* Customers 3000+: no other test queries them. */
        record_make(&records[i], 3000 + chain->index, (int64_t)(chain->calls * 3 + i), "async", 5);
    }
    chain->count[chain->calls] = count;
    chain->calls++;
    struct tandem_diag diag = {{0}};
    int rv =
        tandem_client_append_async(chain->client, records, count, async_chain_cb, chain, &diag);
    if (rv != 0) {
        chain->status = rv;
        snprintf(chain->message, sizeof(chain->message), "%s", diag.message);
        atomic_fetch_add(chain->ended, 1);
    }
}

/* Over TCP + TLS, 16 chains of asynchronous appends (each callback makes
 * its chain's next call) run beside blocking appends on the same client:
 * every call gets its own answer, each chain's LSNs grow, and all the calls'
 * LSN ranges tile exactly the LSNs the node wrote. A blocking call from a
 * callback is refused (it would wait for the thread that runs it); bad
 * arguments are refused at once and their callback never runs. */
static void test_tandem_client__async_appends(void **state)
{
    struct fixture *f = *state;
    struct tandem_client *client = client_open_alice(f);
    uint64_t before = node_lsn_last();
    _Atomic int ended = 0;
    static struct async_chain chains[ASYNC_CHAINS];
    for (uint32_t i = 0; i < ASYNC_CHAINS; i++) {
        memset(&chains[i], 0, sizeof(chains[i]));
        chains[i].client = client;
        chains[i].index = i;
        chains[i].ended = &ended;
        async_chain_next(&chains[i]);
    }
    /* Blocking appends meanwhile, on the same client. */
    uint64_t sync_lsn[4];
    for (int i = 0; i < 4; i++) {
        struct tandem_record record;
        record_make(&record, 3999, i, "sync", 4);
        struct tandem_diag diag = {{0}};
        assert_int_equal(tandem_client_append(client, &record, 1, &sync_lsn[i], &diag), 0);
    }
    wait_for(&ended, ASYNC_CHAINS);

    static uint64_t ranges[ASYNC_CHAINS * ASYNC_CALLS + 4][2];
    uint32_t range_count = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < ASYNC_CHAINS; i++) {
        struct async_chain *chain = &chains[i];
        if (chain->status != 0) {
            fail_msg("chain %u: %s: %s", i, tandem_strerror(chain->status), chain->message);
        }
        assert_int_equal(chain->calls, ASYNC_CALLS);
        assert_int_equal(chain->blocking_rv, TANDEM_EINVALID);
        assert_non_null(strstr(chain->blocking_message, "would wait for itself"));
        for (uint32_t call = 0; call < ASYNC_CALLS; call++) {
            if (call > 0) {
                assert_true(chain->lsn_first[call] >
                            chain->lsn_first[call - 1] + chain->count[call - 1] - 1);
            }
            ranges[range_count][0] = chain->lsn_first[call];
            ranges[range_count][1] = chain->count[call];
            range_count++;
            total += chain->count[call];
        }
    }
    for (int i = 0; i < 4; i++) {
        ranges[range_count][0] = sync_lsn[i];
        ranges[range_count][1] = 1;
        range_count++;
        total++;
    }
    ranges_check_tile(ranges, range_count, before);
    assert_int_equal(node_lsn_last(), before + total);

    /* Refused at once: no callback, nothing sent. */
    struct tandem_record bad;
    record_make(&bad, 3000, 1, "bad", 3);
    bad.message.recipient.size = 0;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_append_async(client, &bad, 1, async_chain_cb, &chains[0], &diag),
                     TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "record 0: recipient"));
    record_make(&bad, 3000, 1, "ok", 2);
    assert_int_equal(tandem_client_append_async(client, &bad, 1, NULL, NULL, &diag),
                     TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "cb must not be NULL"));
    assert_int_equal(atomic_load(&ended), ASYNC_CHAINS);
    assert_int_equal(node_lsn_last(), before + total);
    tandem_client_close(client);
}

/* Records the outcome of one asynchronous append. */
struct async_outcome {
    _Atomic int called;
    int status;
    char message[TANDEM_DIAG_SIZE];
};

static void async_outcome_cb(void *data, int status, uint64_t lsn_first,
                             const struct tandem_diag *diag)
{
    struct async_outcome *outcome = data;
    (void)lsn_first;
    outcome->status = status;
    if (diag != NULL) {
        snprintf(outcome->message, sizeof(outcome->message), "%s", diag->message);
    }
    atomic_fetch_add(&outcome->called, 1);
}

/* n asynchronous one-record appends on client, each reporting to its own
 * outcome. */
static void async_outcomes_start(struct tandem_client *client, struct async_outcome *outcomes,
                                 uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        memset(&outcomes[i], 0, sizeof(outcomes[i]));
        struct tandem_record record;
        record_make(&record, 5, i, "x", 1);
        struct tandem_diag diag = {{0}};
        assert_int_equal(
            tandem_client_append_async(client, &record, 1, async_outcome_cb, &outcomes[i], &diag),
            0);
    }
}

/* A node that closes the connection: every asynchronous append in flight
 * ends with -ECONNRESET, naming it, exactly once; later calls fail at once
 * with the same code and never call back. A client closed before its
 * answers came ends each call with TANDEM_ECANCELED before close returns. */
static void test_tandem_client__async_failures(void **state)
{
    (void)state;
    enum { N = 48 };
    static struct async_outcome outcomes[N];
    char dir[PATH_SIZE];
    struct tandem_diag diag = {{0}};

    struct fake_server server = {.answer_unknown = false};
    server.listen_fd = fake_node_listen("fake-async-close", dir);
    assert_int_equal(pthread_create(&server.thread, NULL, fake_server_main, &server), 0);
    struct tandem_client *client = NULL;
    assert_int_equal(tandem_client_open(dir, NULL, &client, &diag), 0);
    async_outcomes_start(client, outcomes, N);
    for (uint32_t i = 0; i < N; i++) {
        wait_for(&outcomes[i].called, 1);
    }
    assert_int_equal(pthread_join(server.thread, NULL), 0);
    close(server.listen_fd);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&outcomes[i].called), 1);
        assert_int_equal(outcomes[i].status, -ECONNRESET);
        assert_non_null(strstr(outcomes[i].message, "closed the connection"));
    }
    struct async_outcome later = {0};
    struct tandem_record record;
    record_make(&record, 5, 1, "x", 1);
    assert_int_equal(
        tandem_client_append_async(client, &record, 1, async_outcome_cb, &later, &diag),
        -ECONNRESET);
    assert_non_null(strstr(diag.message, "closed the connection"));
    tandem_client_close(client);
    assert_int_equal(atomic_load(&later.called), 0);

    /* Closed while the node (which reads, then closes after 2 s) has not
     * answered. */
    struct fake_server silent = {.answer_unknown = false};
    silent.listen_fd = fake_node_listen("fake-async-cancel", dir);
    assert_int_equal(pthread_create(&silent.thread, NULL, fake_server_main, &silent), 0);
    assert_int_equal(tandem_client_open(dir, NULL, &client, &diag), 0);
    async_outcomes_start(client, outcomes, N);
    tandem_client_close(client);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&outcomes[i].called), 1);
        assert_int_equal(outcomes[i].status, TANDEM_ECANCELED);
        assert_non_null(strstr(outcomes[i].message, "closed before the answer came"));
    }
    assert_int_equal(pthread_join(silent.thread, NULL), 0);
    close(silent.listen_fd);
}

/* What the callback of the first answered call does on a full client. */
struct async_fill {
    struct tandem_client *client;
    _Atomic int called; /* Callbacks run. */
    _Atomic int first;  /* The first callback claimed the fill. */
    int added;          /* Calls it made before the client was full. */
    int busy_rv;        /* Its call on the full client. */
    char busy_message[TANDEM_DIAG_SIZE];
    int failed; /* A callback saw a failure. */
};

static void async_fill_cb(void *data, int status, uint64_t lsn_first,
                          const struct tandem_diag *diag)
{
    struct async_fill *fill = data;
    (void)lsn_first;
    (void)diag;
    if (status != 0) {
        fill->failed = status;
    }
    if (atomic_exchange(&fill->first, 1) == 0) {
        /* Nothing ends while a callback runs on the client's thread: the
         * client fills up, and the next call cannot wait for room. */
        for (int i = 0; i < 100; i++) {
            struct tandem_record record;
            record_make(&record, 5, i, "fill", 4);
            struct tandem_diag why = {{0}};
            int rv =
                tandem_client_append_async(fill->client, &record, 1, async_fill_cb, fill, &why);
            if (rv != 0) {
                fill->busy_rv = rv;
                snprintf(fill->busy_message, sizeof(fill->busy_message), "%s", why.message);
                break;
            }
            fill->added++;
        }
    }
    atomic_fetch_add(&fill->called, 1);
}

/* 64 asynchronous appends fill a client (the fake node holds its answers for
 * 300 ms); the first callback then adds calls until the client is full
 * again, and the next one is TANDEM_EBUSY instead of a wait for room that
 * only its own thread could make. Every call made is answered. */
static void test_tandem_client__async_busy_in_callback(void **state)
{
    (void)state;
    static struct combine_server server;
    /* More records than come: it stops when the client closes. */
    struct tandem_client *client = combine_server_start(&server, "fake-async-busy", 1000, false);
    struct tandem_diag diag = {{0}};
    static struct async_fill fill;
    memset(&fill, 0, sizeof(fill));
    fill.client = client;
    for (int i = 0; i < 64; i++) {
        struct tandem_record record;
        record_make(&record, 5, i, "x", 1);
        assert_int_equal(
            tandem_client_append_async(client, &record, 1, async_fill_cb, &fill, &diag), 0);
    }
    wait_for(&fill.called, 1);
    assert_int_equal(fill.busy_rv, TANDEM_EBUSY);
    assert_non_null(strstr(fill.busy_message, "a callback cannot wait for room"));
    assert_true(fill.added >= 1 && fill.added < 64);
    wait_for(&fill.called, 64 + fill.added);
    assert_int_equal(fill.failed, 0);
    tandem_client_close(client);
    assert_int_equal(pthread_join(server.thread, NULL), 0);
    close(server.listen_fd);
    assert_int_equal(server.failed, 0);
    assert_int_equal(atomic_load(&fill.called), 64 + fill.added);
}

#define BALANCE_CHAINS 64
#define BALANCE_CALLS  12

struct balance_chain {
    struct tandem_client *client;
    uint32_t calls;
    int status;
    _Atomic int *ended;
};

static void balance_cb(void *data, int status, uint64_t lsn_first, const struct tandem_diag *diag)
{
    struct balance_chain *chain = data;
    (void)lsn_first;
    (void)diag;
    if (status != 0 || chain->calls == BALANCE_CALLS) {
        chain->status = status;
        atomic_fetch_add(chain->ended, 1);
        return;
    }
    chain->calls++;
    struct tandem_record record;
    record_make(&record, 5, chain->calls, "x", 1);
    struct tandem_diag why = {{0}};
    /* The callback may run before the call returns: touch the chain only on
     * failure. */
    int rv = tandem_client_append_async(chain->client, &record, 1, balance_cb, chain, &why);
    if (rv != 0) {
        chain->status = rv;
        atomic_fetch_add(chain->ended, 1);
    }
}

/* 64 chains of one-record asynchronous calls against a node that answers
 * one request at a time: the two requests in flight stay about the same
 * size. Before, the first call left alone, and its chain's calls kept
 * leaving alone while the other 63 shared the other request: a whole round
 * for one record. */
static void test_tandem_client__requests_balanced(void **state)
{
    (void)state;
    static struct combine_server server;
    struct tandem_client *client =
        combine_server_start(&server, "fake-balance", BALANCE_CHAINS * BALANCE_CALLS, true);
    _Atomic int ended = 0;
    static struct balance_chain chains[BALANCE_CHAINS];
    for (uint32_t i = 0; i < BALANCE_CHAINS; i++) {
        chains[i] = (struct balance_chain){.client = client, .calls = 0, .ended = &ended};
        balance_cb(&chains[i], 0, 0, NULL);
    }
    wait_for(&ended, BALANCE_CHAINS);
    for (uint32_t i = 0; i < BALANCE_CHAINS; i++) {
        assert_int_equal(chains[i].status, 0);
        assert_int_equal(chains[i].calls, BALANCE_CALLS);
    }
    tandem_client_close(client);
    assert_int_equal(pthread_join(server.thread, NULL), 0);
    close(server.listen_fd);
    assert_int_equal(server.failed, 0);
    assert_true(server.unanswered_max <= 2);
    assert_true(server.requests < BALANCE_CHAINS * BALANCE_CALLS / 8);
    assert_true(server.small_requests <= 2);
}

/* cert_dir NULL falls back to TANDEM_CERT; with neither, HOST:PORT is refused
 * with a diag naming both; a malformed address is refused as an address. */
static void test_tandem_client_open__cert_from_environment(void **state)
{
    struct fixture *f = *state;
    char alice[PATH_SIZE];
    cert_path(alice, "alice");
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(f->address, NULL, &client, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "TANDEM_CERT"));
    assert_non_null(strstr(diag.message, "cert_dir"));
    assert_int_equal(setenv("TANDEM_CERT", alice, 1), 0);
    assert_int_equal(tandem_client_open(f->address, NULL, &client, &diag), 0);
    append_and_status(client);
    tandem_client_close(client);
    assert_int_equal(unsetenv("TANDEM_CERT"), 0);
    assert_int_equal(tandem_client_open("127.0.0.1:99999", alice, &client, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "port"));
    assert_int_equal(tandem_client_open("::1:7400", alice, &client, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "brackets"));
}

/* The public API over the node directory's local socket: the same appends
 * and status; a directory where no tandemd runs is refused with -ENOENT. */
static void test_tandem_client__local_socket(void **state)
{
    (void)state;
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(node_dir, NULL, &client, &diag), 0);
    append_and_status(client);
    tandem_client_close(client);
    char empty[PATH_SIZE];
    path_make(empty, "alice"); /* A directory without a tandemd.sock. */
    assert_int_equal(tandem_client_open(empty, NULL, &client, &diag), -ENOENT);
    assert_non_null(strstr(diag.message, "no tandemd runs there"));
    tandem_client_close(NULL);
}

/* A client whose credentials come from another CA refuses the node's
 * certificate (not from its CA) with a clear diag; credentials whose
 * certificate was not issued by their own ca.crt are refused before any
 * connection. Neither reaches the server. */
static void test_tandem_client_open__other_ca(void **state)
{
    struct fixture *f = *state;
    char path[PATH_SIZE];
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    cert_path(path, "mallory");
    assert_int_equal(tandem_client_open(f->address, path, &client, &diag), -EACCES);
    assert_non_null(strstr(diag.message, "not issued by the cluster CA"));
    assert_non_null(strstr(diag.message, f->address));
    cert_path(path, "mixed");
    assert_int_equal(tandem_client_open(f->address, path, &client, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "was not issued by"));
    /* Mallory's own side failed the handshake; the server saw no client. */
    wait_for(&f->accept_failures, 1);
    assert_int_equal(atomic_load(&f->accepts), 0);
}

/* A TCP socket on 127.0.0.1 bound to a free port (listening if backlog > 0);
 * its "127.0.0.1:PORT" goes to addr. */
static int tcp_bound(char *addr, size_t size, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in address;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &address), 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    if (backlog > 0) {
        assert_int_equal(listen(fd, backlog), 0);
    }
    socklen_t length = sizeof(address);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    snprintf(addr, size, "127.0.0.1:%u", ntohs(address.sin_port));
    return fd;
}

/* A server that is not TLS: it answers the ClientHello with an HTTP error. */
static void *http_server(void *data)
{
    int fd = accept(*(int *)data, NULL, NULL);
    if (fd >= 0) {
        char buffer[512];
        (void)recv(fd, buffer, sizeof(buffer), 0);
        static const char answer[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
        (void)send(fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL);
        close(fd);
    }
    return NULL;
}

/* Connection failures name the cause in one line: nothing listening
 * (refused), a peer that never answers the handshake (timeout), a peer that
 * does not speak TLS, and a missing credential directory. */
static void test_tandem_client_open__failures(void **state)
{
    (void)state;
    char alice[PATH_SIZE];
    cert_path(alice, "alice");
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    char addr[64];
    int fd = tcp_bound(addr, sizeof(addr), 0);
    assert_int_equal(tandem_client_open(addr, alice, &client, &diag), -ECONNREFUSED);
    assert_non_null(strstr(diag.message, "connection refused"));
    char missing[PATH_SIZE];
    path_make(missing, "nobody");
    assert_int_equal(tandem_client_open(addr, missing, &client, &diag), -ENOENT);
    assert_non_null(strstr(diag.message, "client certificate"));
    close(fd);

    /* The kernel completes the TCP handshake; nobody ever answers TLS. */
    fd = tcp_bound(addr, sizeof(addr), 4);
    struct tdm_client raw;
    struct tdm_diag why = {{0}};
    assert_int_equal(tdm_client_connect_cert(addr, alice, 200, &raw, &why), -ETIMEDOUT);
    assert_non_null(strstr(why.message, "no completed handshake within 200 ms"));
    close(fd);

    fd = tcp_bound(addr, sizeof(addr), 4);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, http_server, &fd), 0);
    assert_int_equal(tandem_client_open(addr, alice, &client, &diag), -EPROTO);
    assert_non_null(strstr(diag.message, "TLS with"));
    assert_int_equal(pthread_join(thread, NULL), 0);
    close(fd);
}

/* The rule of tdm_uv_server_adopt(): only client certificates get client
 * service. node1's certificate passes the listener (node1 is an allowed
 * peer) but the server refuses to adopt it (TANDEM_EINVALID) and the link is
 * closed before any request is answered. The public API refuses to present a
 * node certificate at all. */
static void test_tdm_uv_server_adopt__node_certificate(void **state)
{
    struct fixture *f = *state;
    char path[PATH_SIZE];
    cert_path(path, "node1");
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(f->address, path, &client, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "certificate of node node1"));

    struct tdm_tls_config node1;
    struct tdm_diag why = {{0}};
    assert_int_equal(tdm_tls_config_init_dir(&node1, path, &why), 0);
    struct tdm_client raw;
    assert_int_equal(tdm_client_connect_tcp(f->address, &node1, 0, &raw, &why), 0);
    struct tdm_proto_msg *msg = calloc(1, sizeof(*msg));
    assert_non_null(msg);
    msg->type = TDM_PROTO_STATUS;
    msg->status.request_id = 1;
    int rv = tdm_client_send(&raw, msg, &why);
    if (rv == 0) {
        rv = tdm_client_receive(&raw, msg, true, &why);
    }
    assert_int_equal(rv, -ECONNRESET);
    assert_non_null(strstr(why.message, "closed the connection"));
    tdm_client_close(&raw);
    tdm_tls_config_close(&node1);
    free(msg);
    wait_for(&f->refusals, 1);
    assert_int_equal(atomic_load(&f->refusal_code), TANDEM_EINVALID);
}

/* Open a plain TCP connection to the listener. */
static int tcp_connect(const struct fixture *f)
{
    const char *colon = strrchr(f->address, ':');
    struct sockaddr_in address;
    assert_int_equal(uv_ip4_addr("127.0.0.1", atoi(colon + 1), &address), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    return fd;
}

/* Garbage bytes instead of a TLS handshake, and a TCP connection that sends
 * nothing, affect nobody else: meanwhile a client is served as usual; the
 * garbage connection is closed by the listener, never handed to the server. */
static void test_tdm_uv_server_adopt__garbage_and_silence(void **state)
{
    struct fixture *f = *state;
    int silent = tcp_connect(f);
    int garbage = tcp_connect(f);
    static const char junk[] = "GET / HTTP/1.0\r\n\r\n\x16\x03\x01\xff\xff garbage";
    assert_int_equal(send(garbage, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));

    char alice[PATH_SIZE];
    cert_path(alice, "alice");
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(f->address, alice, &client, &diag), 0);
    append_and_status(client);

    /* The listener closes the garbage connection (after its alert, if any)
     * and, once we close ours, reports the failure to on_accept. */
    struct timeval timeout = {.tv_sec = WAIT_MS_MAX / 1000, .tv_usec = 0};
    assert_int_equal(setsockopt(garbage, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
    char buffer[256];
    ssize_t n;
    while ((n = recv(garbage, buffer, sizeof(buffer), 0)) > 0) {
    }
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(garbage);
    wait_for(&f->accept_failures, 1);
    append_and_status(client); /* Still served, the silent one still open. */
    tandem_client_close(client);
    close(silent);
    assert_int_equal(atomic_load(&f->refusals), 0);
}

/* Send raw frame bytes on a fresh client link and expect the server to close it. */
static void expect_closed_after(const struct fixture *f, const struct tdm_proto_msg *frame)
{
    char alice[PATH_SIZE];
    cert_path(alice, "alice");
    struct tdm_client raw;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_client_connect_cert(f->address, alice, 0, &raw, &diag), 0);
    uint8_t bytes[8192];
    size_t written = 0;
    assert_int_equal(tdm_proto_encode(frame, bytes, sizeof(bytes), &written, &diag), 0);
    assert_int_equal(tdm_client_send_bytes(&raw, bytes, written, &diag), 0);
    struct tdm_proto_msg *msg = calloc(1, sizeof(*msg));
    assert_non_null(msg);
    assert_int_equal(tdm_client_receive(&raw, msg, true, &diag), -ECONNRESET);
    assert_non_null(strstr(diag.message, "closed the connection"));
    free(msg);
    tdm_client_close(&raw);
}

/* A node frame (HELLO) on a client link, and a client frame that only a node
 * sends (APPEND_RESULT), each close that link (with a trace line) and nothing
 * else: a client is served afterwards. */
static void test_tdm_uv_server_adopt__non_client_frame(void **state)
{
    struct fixture *f = *state;
    struct tdm_proto_msg *msg = calloc(1, sizeof(*msg));
    assert_non_null(msg);
    msg->type = TDM_PROTO_HELLO;
    msg->hello.version = TDM_PROTO_VERSION;
    msg->hello.role = TDM_PROTO_ROLE_BACKUP;
    snprintf(msg->hello.cluster, sizeof(msg->hello.cluster), "c1");
    snprintf(msg->hello.node, sizeof(msg->hello.node), "node1");
    expect_closed_after(f, msg);
    memset(msg, 0, sizeof(*msg));
    msg->type = TDM_PROTO_APPEND_RESULT;
    msg->append_result.request_id = 1;
    expect_closed_after(f, msg);
    free(msg);

    char alice[PATH_SIZE];
    cert_path(alice, "alice");
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(f->address, alice, &client, &diag), 0);
    append_and_status(client);
    tandem_client_close(client);
}

/* Bytes the kernel holds for fd to read. */
static int socket_pending(int fd)
{
    int pending = 0;
    assert_int_equal(ioctl(fd, FIONREAD, &pending), 0);
    return pending;
}

/* Send BULK_QUERIES queries whose answers (about 26 MB each) together exceed
 * the link's send queue (TDM_UV_LINK_QUEUE_SIZE_MAX, 32 MiB) plus what the
 * kernel buffers hold, and read nothing until the server can hand out no
 * more: the link refuses with TANDEM_EBUSY and the server keeps the rest in
 * its answer queue, sent on drain. Every answer then arrives whole, in order
 * of its frames, each query with all its records. */
static void test_tdm_uv_server_adopt__answer_backpressure(void **state)
{
    struct fixture *f = *state;
    char alice[PATH_SIZE];
    cert_path(alice, "alice");
    static char subject[BULK_SUBJECT_SIZE];
    memset(subject, 's', sizeof(subject));
    struct tandem_record *records = calloc(BULK_PER_APPEND, sizeof(*records));
    assert_non_null(records);
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(f->address, alice, &client, &diag), 0);
    for (uint32_t done = 0; done < BULK_RECORDS; done += BULK_PER_APPEND) {
        for (uint32_t i = 0; i < BULK_PER_APPEND; i++) {
            record_make(&records[i], BULK_CUSTOMER, (int64_t)(done + i), subject, sizeof(subject));
        }
        uint64_t lsn_first = 0;
        assert_int_equal(tandem_client_append(client, records, BULK_PER_APPEND, &lsn_first, &diag),
                         0);
    }
    tandem_client_close(client);
    free(records);

    struct tdm_client raw;
    struct tdm_diag why = {{0}};
    assert_int_equal(tdm_client_connect_cert(f->address, alice, 0, &raw, &why), 0);
    struct tdm_proto_msg *msg = calloc(1, sizeof(*msg));
    assert_non_null(msg);
    for (uint64_t id = 1; id <= BULK_QUERIES; id++) {
        memset(msg, 0, sizeof(*msg));
        msg->type = TDM_PROTO_QUERY;
        msg->query.request_id = id;
        msg->query.kind = TDM_PROTO_QUERY_CUSTOMER_MESSAGES;
        msg->query.customer_id = BULK_CUSTOMER;
        msg->query.until_ns = INT64_MAX;
        assert_int_equal(tdm_client_send(&raw, msg, &why), 0);
    }
    /* Let the server produce all it can: until our receive buffer stops growing. */
    int pending = -1;
    for (int quiet = 0, ms = 0; quiet < 1000 && ms < 30000; ms += 10) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 10000000};
        nanosleep(&pause, NULL);
        int now = socket_pending(raw.fd);
        quiet = now == pending && now > 0 ? quiet + 10 : 0;
        pending = now;
    }
    assert_true(pending > 0);
    uint64_t lines[BULK_QUERIES + 1] = {0};
    uint32_t finished = 0;
    while (finished < BULK_QUERIES) {
        assert_int_equal(tdm_client_receive(&raw, msg, true, &why), 0);
        assert_int_equal(msg->type, TDM_PROTO_QUERY_RESULT);
        const struct tdm_proto_text_result *result = &msg->query_result;
        assert_int_equal(result->status, 0);
        assert_true(result->request_id >= 1 && result->request_id <= BULK_QUERIES);
        for (size_t i = 0; i < result->text.size; i++) {
            lines[result->request_id] += result->text.data[i] == '\n';
        }
        if ((result->flags & TDM_PROTO_RESULT_MORE) == 0) {
            finished++;
            assert_int_equal(lines[result->request_id], BULK_RECORDS);
        }
    }
    free(msg);
    tdm_client_close(&raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tandem_client__tcp_append_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tandem_client_open__cert_from_environment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tandem_client__local_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tandem_client__shared_by_threads, setup, teardown),
        cmocka_unit_test(test_tandem_client__shared_failures),
        cmocka_unit_test(test_tandem_client__shared_appends_combined),
        cmocka_unit_test_setup_teardown(test_tandem_client__async_appends, setup, teardown),
        cmocka_unit_test(test_tandem_client__async_failures),
        cmocka_unit_test(test_tandem_client__async_busy_in_callback),
        cmocka_unit_test(test_tandem_client__requests_balanced),
        cmocka_unit_test_setup_teardown(test_tandem_client_open__other_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tandem_client_open__failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tdm_uv_server_adopt__node_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tdm_uv_server_adopt__garbage_and_silence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tdm_uv_server_adopt__non_client_frame, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tdm_uv_server_adopt__answer_backpressure, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("client", tests, group_setup, group_teardown);
}
