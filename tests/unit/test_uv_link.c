/* tests/unit/test_uv_link.c: one replication link (net/uv_link.c) on a real
 * loop over 127.0.0.1: handshake and frames both ways, refusals, garbage, a
 * peer that stops mid-frame, backpressure.
 *
 * Method: the group setup creates two CAs in a tmpdir ("c1", the cluster, and
 * "c2", a stranger) and issues node1 and node2 from c1 and node1 again from c2.
 * Each test runs one loop: a listener as node2 (accepting node1) on port 0,
 * and a dialer or a raw client. Callbacks record what happened and, once the
 * scenario is complete, close the links and the listener, so that uv_run()
 * returns; teardown asserts uv_loop_close() == 0 (no handle leaked). A raw TCP
 * client sends garbage; a raw TLS client (a tdm_tls session over a uv_tcp_t)
 * sends bytes that our link would never send. A watchdog timer (unreferenced,
 * so it never keeps the loop alive) fails a test that hangs. The library's heap
 * is cmocka's, so every test also checks for leaks. */
#include "tdm_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "engine/base/alloc.h"
#include "net/proto.h"
#include "net/tls.h"
#include "net/uv_link.h"

#define PATH_SIZE        1200
#define SMALL_COUNT      10000u             /* Small frames each way. */
#define LARGE_BATCH_SIZE ((16u << 20) - 28) /* Fills a frame to TDM_PROTO_FRAME_SIZE_MAX. */
#define BULK_BATCH_SIZE  (1u << 20)         /* Backpressure frames. */
#define BULK_SENDS_MAX   200u               /* Sends tried before EBUSY must come. */
#define BULK_AFTER_BUSY  8u                 /* Frames sent after the first EBUSY. */
#define WATCHDOG_MS      60000u
#define RAW_FRAMES       2000u /* ACKs a raw TLS client sends in one TLS write. */
#define ACK_FRAME_SIZE   40u   /* Encoded ACK: 16-byte header + 3 x u64. */

enum scenario {
    SCENARIO_EXCHANGE = 1,
    SCENARIO_REFUSED,
    SCENARIO_GARBAGE,
    SCENARIO_RAW_TLS,
    SCENARIO_BACKPRESSURE,
    SCENARIO_CONNECT_FAILS,
    SCENARIO_TIMEOUT,
    SCENARIO_PAUSE,
};

struct fixture;

/* One end of a link as the test sees it. */
struct end {
    struct fixture *f;
    struct tdm_uv_link *link; /* NULL until opened/accepted, and after close. */
    bool opened;
    bool closed;
    int close_status;
    char close_message[TDM_DIAG_SIZE];
    uint64_t frames; /* Received. */
    uint64_t sent;   /* Frames sent (backpressure). */
    bool busy_seen;  /* A send returned TANDEM_EBUSY. */
    uint64_t drains; /* on_drain calls. */
    uint64_t target; /* Backpressure: frames to send in all; 0 until known. */
};

/* A client that speaks TLS (or nothing) with bytes of the test's choosing. */
struct raw {
    struct fixture *f;
    uv_tcp_t tcp;
    uv_connect_t connect;
    bool tls_on;                    /* False: send garbage in plain TCP. */
    bool silent;                    /* Plain TCP: send nothing at all. */
    struct tdm_tls_session session; /* As node1, expecting node2. */
    const uint8_t *payload;         /* Plaintext to send once established. */
    size_t payload_size;
    bool close_notify; /* Follow the payload with a close_notify. */
    bool sent;
    bool closed;
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t watchdog;
    enum scenario scenario;
    struct tdm_tls_config node1, node2, stranger;
    struct tdm_uv_listener *listener;
    struct sockaddr_storage address; /* The listener's, port included. */
    bool listener_closed;
    uint64_t accepts;         /* on_accept with status 0. */
    uint64_t accept_failures; /* on_accept with status < 0. */
    int accept_status;        /* Last failure. */
    char accept_message[TDM_DIAG_SIZE];
    struct end dialer;
    struct end acceptor;
    struct raw raw;
    const char *expected;    /* The dialer's expected peer name. */
    const char *allowed;     /* The one node id the listener accepts. */
    uint32_t timeout_ms;     /* For dial and listen; 0: the default. */
    uint32_t frame_size_max; /* For listen; 0: the protocol's. */
    uv_tcp_t mute;           /* A listening socket that never answers. */
    bool mute_open;
    uv_timer_t resume_timer; /* Pause scenario: resumes the acceptor. */
    bool resume_timer_open;
    bool paused; /* The acceptor is paused. */
    uint64_t pauses;
    uint64_t pause_every;    /* Acceptor: pause after every this many frames; 0: never. */
    uint64_t pause_close_at; /* Acceptor: close instead of resuming at this frame; 0: never. */
};

static char ca_dir[PATH_SIZE];
static char tmp_dir[1024];
static uint8_t *large_batch; /* LARGE_BATCH_SIZE bytes of a pattern. */

static void *heap_malloc(void *data, size_t size)
{
    (void)data;
    return test_malloc(size);
}

static void *heap_calloc(void *data, size_t count, size_t size)
{
    (void)data;
    return test_calloc(count, size);
}

static void *heap_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return test_realloc(ptr, size);
}

static void heap_free(void *data, void *ptr)
{
    (void)data;
    test_free(ptr);
}

static const struct tdm_heap test_heap = {heap_malloc, heap_calloc, heap_realloc, heap_free, NULL};

static void path_make(char *out, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", tmp_dir, name);
    assert_true(n > 0 && n < PATH_SIZE);
}

static int group_setup(void **state)
{
    (void)state;
    assert_int_equal(tdm_test_tmpdir_create(tmp_dir, sizeof(tmp_dir)), 0);
    struct tdm_diag diag = {{0}};
    char path[PATH_SIZE];
    path_make(ca_dir, "c1");
    assert_int_equal(tdm_pki_ca_create(ca_dir, "c1", &diag), 0);
    path_make(path, "c2");
    assert_int_equal(tdm_pki_ca_create(path, "c2", &diag), 0);
    char out[PATH_SIZE];
    path_make(out, "node1");
    assert_int_equal(tdm_pki_issue(ca_dir, "node1", out, &diag), 0);
    path_make(out, "node2");
    assert_int_equal(tdm_pki_issue(ca_dir, "node2", out, &diag), 0);
    path_make(out, "stranger");
    assert_int_equal(tdm_pki_issue(path, "node1", out, &diag), 0);
    large_batch = malloc(LARGE_BATCH_SIZE);
    assert_non_null(large_batch);
    for (size_t i = 0; i < LARGE_BATCH_SIZE; i++) {
        large_batch[i] = (uint8_t)(i * 31 + 7);
    }
    tdm_heap_set(&test_heap);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tdm_heap_set(NULL);
    free(large_batch);
    tdm_test_tmpdir_remove(tmp_dir);
    return 0;
}

static void config_load(struct tdm_tls_config *config, const char *name)
{
    char path[PATH_SIZE];
    struct tdm_diag diag = {{0}};
    path_make(path, name);
    assert_int_equal(tdm_tls_config_init_dir(config, path, &diag), 0);
}

static void watchdog_cb(uv_timer_t *timer)
{
    (void)timer;
    fail_msg("test did not finish within %u ms", WATCHDOG_MS);
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
    assert_int_equal(uv_timer_start(&f->watchdog, watchdog_cb, WATCHDOG_MS, 0), 0);
    uv_unref((uv_handle_t *)&f->watchdog);
    config_load(&f->node1, "node1");
    config_load(&f->node2, "node2");
    config_load(&f->stranger, "stranger");
    f->dialer.f = f;
    f->acceptor.f = f;
    f->raw.f = f;
    f->expected = "node2";
    f->allowed = "node1";
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tdm_tls_config_close(&f->node1);
    tdm_tls_config_close(&f->node2);
    tdm_tls_config_close(&f->stranger);
    test_free(f);
    return 0;
}

/* --- Sending and checking frames ------------------------------------------ */

static void send_ack(struct end *end, uint64_t i)
{
    struct tdm_proto_msg msg = {.type = TDM_PROTO_ACK, .epoch = 1};
    msg.ack.durable_lsn = i;
    msg.ack.received_lsn = i + 1;
    msg.ack.echo_ms = 7 * i;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_link_send(end->link, &msg, &diag), 0);
}

static int send_append(struct end *end, uint64_t epoch, const uint8_t *batch, size_t size)
{
    static struct tdm_proto_msg msg; /* Large: not on the stack. */
    memset(&msg, 0, sizeof(msg));
    msg.type = TDM_PROTO_APPEND;
    msg.epoch = epoch;
    msg.append.commit_lsn = epoch;
    msg.append.batch_count = 1;
    msg.append.batches[0].data = batch;
    msg.append.batches[0].size = size;
    struct tdm_diag diag = {{0}};
    return tdm_uv_link_send(end->link, &msg, &diag);
}

/* Exchange: one frame as large as the protocol allows, then SMALL_COUNT ACKs. */
static void exchange_send_all(struct end *end)
{
    /* A frame that does not encode is refused; the link stays usable. */
    struct tdm_proto_msg bad = {.type = TDM_PROTO_ACK, .epoch = 1};
    bad.ack.durable_lsn = 2; /* > received_lsn. */
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_link_send(end->link, &bad, &diag), TANDEM_EINVALID);
    assert_int_equal(send_append(end, 1, large_batch, LARGE_BATCH_SIZE), 0);
    for (uint64_t i = 0; i < SMALL_COUNT; i++) {
        send_ack(end, i);
    }
}

static void exchange_check(struct end *end, const struct tdm_proto_msg *msg)
{
    if (end->frames == 0) {
        assert_int_equal(msg->type, TDM_PROTO_APPEND);
        assert_int_equal(msg->append.batch_count, 1);
        assert_int_equal(msg->append.batches[0].size, LARGE_BATCH_SIZE);
        assert_memory_equal(msg->append.batches[0].data, large_batch, LARGE_BATCH_SIZE);
        return;
    }
    uint64_t i = end->frames - 1; /* Order: the i-th ACK carries i. */
    assert_int_equal(msg->type, TDM_PROTO_ACK);
    assert_int_equal(msg->epoch, 1);
    assert_int_equal(msg->ack.durable_lsn, i);
    assert_int_equal(msg->ack.received_lsn, i + 1);
    assert_int_equal(msg->ack.echo_ms, 7 * i);
}

static void close_all(struct fixture *f)
{
    if (f->resume_timer_open) {
        uv_close((uv_handle_t *)&f->resume_timer, NULL);
        f->resume_timer_open = false;
    }
    if (f->dialer.link != NULL) {
        tdm_uv_link_close(f->dialer.link);
    }
    if (f->acceptor.link != NULL) {
        tdm_uv_link_close(f->acceptor.link);
    }
    if (f->listener != NULL) {
        tdm_uv_listener_close(f->listener, NULL, NULL);
        f->listener = NULL;
    }
}

/* Backpressure: send 1 MiB frames until the queue refuses, then a few more. */
static void bulk_send(struct end *end)
{
    while (end->target == 0 || end->sent < end->target) {
        assert_true(end->sent < BULK_SENDS_MAX);
        int rv = send_append(end, end->sent + 1, large_batch, BULK_BATCH_SIZE);
        if (rv == TANDEM_EBUSY) {
            assert_true(tdm_uv_link_queue_size(end->link) > TDM_UV_LINK_QUEUE_SIZE_MAX / 2);
            if (!end->busy_seen) {
                end->busy_seen = true;
                end->target = end->sent + BULK_AFTER_BUSY;
            }
            return; /* on_drain resumes. */
        }
        assert_int_equal(rv, 0);
        end->sent++;
    }
}

static void resume_cb(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    assert_true(f->paused);
    f->paused = false;
    tdm_uv_link_resume(f->acceptor.link);
}

static void pause_close_cb(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    assert_true(f->paused);
    close_all(f); /* Paused and not reading: the close must still complete. */
}

/* ACKs arrive in order and none while paused; pause every pause_every frames,
 * then resume (or close) from a timer, that is from a later loop turn. */
static void pause_check(struct end *end, const struct tdm_proto_msg *msg)
{
    struct fixture *f = end->f;
    assert_ptr_equal(end, &f->acceptor);
    assert_false(f->paused);
    assert_int_equal(msg->type, TDM_PROTO_ACK);
    assert_int_equal(msg->ack.durable_lsn, end->frames);
    end->frames++;
    if (end->frames % f->pause_every != 0) {
        return;
    }
    tdm_uv_link_pause(end->link);
    f->paused = true;
    f->pauses++;
    uv_timer_cb cb = end->frames == f->pause_close_at ? pause_close_cb : resume_cb;
    assert_int_equal(uv_timer_start(&f->resume_timer, cb, 1, 0), 0);
}

static void resume_timer_init(struct fixture *f)
{
    assert_int_equal(uv_timer_init(&f->loop, &f->resume_timer), 0);
    f->resume_timer.data = f;
    f->resume_timer_open = true;
}

/* --- Link callbacks ------------------------------------------------------- */

static void on_frame(struct tdm_uv_link *link, const struct tdm_proto_msg *msg, void *data)
{
    struct end *end = data;
    struct fixture *f = end->f;
    assert_ptr_equal(link, end->link);
    if (f->pause_every != 0) {
        pause_check(end, msg);
        return;
    }
    switch (f->scenario) {
    case SCENARIO_EXCHANGE:
        exchange_check(end, msg);
        end->frames++;
        if (f->dialer.frames == SMALL_COUNT + 1 && f->acceptor.frames == SMALL_COUNT + 1) {
            close_all(f);
            /* Until on_close, the link refuses sends. */
            struct tdm_diag diag = {{0}};
            assert_int_equal(tdm_uv_link_send(link, msg, &diag), TANDEM_ECANCELED);
        }
        return;
    case SCENARIO_BACKPRESSURE:
        assert_ptr_equal(end, &f->acceptor);
        assert_int_equal(msg->type, TDM_PROTO_APPEND);
        assert_int_equal(msg->epoch, end->frames + 1); /* In order, none lost. */
        assert_memory_equal(msg->append.batches[0].data, large_batch, BULK_BATCH_SIZE);
        end->frames++;
        if (f->dialer.target != 0 && end->frames == f->dialer.target) {
            close_all(f);
        }
        return;
    case SCENARIO_PAUSE:
        break;
    case SCENARIO_GARBAGE:
        /* The real dialer that came after the garbage got through. */
        assert_int_equal(msg->type, TDM_PROTO_ACK);
        end->frames++;
        close_all(f);
        return;
    case SCENARIO_REFUSED:
    case SCENARIO_RAW_TLS:
    case SCENARIO_CONNECT_FAILS:
    case SCENARIO_TIMEOUT:
        break;
    }
    fail_msg("unexpected frame %s", tdm_proto_type_name(msg->type));
}

static void on_drain(struct tdm_uv_link *link, void *data)
{
    struct end *end = data;
    assert_ptr_equal(link, end->link);
    assert_int_equal(end->f->scenario, SCENARIO_BACKPRESSURE);
    assert_true(tdm_uv_link_queue_size(link) <= TDM_UV_LINK_QUEUE_SIZE_MAX / 2);
    end->drains++;
    bulk_send(end);
}

static void maybe_close_listener(struct fixture *f)
{
    bool done = false;
    switch (f->scenario) {
    case SCENARIO_REFUSED:
        done = f->dialer.closed && f->accept_failures == 1;
        break;
    case SCENARIO_RAW_TLS:
        done = f->acceptor.closed && f->raw.closed;
        if (done && f->resume_timer_open) {
            uv_close((uv_handle_t *)&f->resume_timer, NULL);
            f->resume_timer_open = false;
        }
        break;
    case SCENARIO_CONNECT_FAILS:
        done = f->dialer.closed;
        if (done && f->mute_open) {
            uv_close((uv_handle_t *)&f->mute, NULL);
            f->mute_open = false;
        }
        break;
    case SCENARIO_TIMEOUT:
        done = f->accept_failures == 1 && f->raw.closed;
        break;
    case SCENARIO_PAUSE:
    case SCENARIO_EXCHANGE:
    case SCENARIO_GARBAGE:
    case SCENARIO_BACKPRESSURE:
        break;
    }
    if (done && f->listener != NULL) {
        tdm_uv_listener_close(f->listener, NULL, NULL);
        f->listener = NULL;
    }
}

static void on_close(struct tdm_uv_link *link, int status, const struct tdm_diag *diag, void *data)
{
    struct end *end = data;
    assert_ptr_equal(link, end->link);
    assert_false(end->closed); /* Exactly once. */
    end->closed = true;
    end->close_status = status;
    snprintf(end->close_message, sizeof(end->close_message), "%s", diag->message);
    end->link = NULL;
    maybe_close_listener(end->f);
}

static void dialer_on_open(struct tdm_uv_link *link, void *data)
{
    struct end *end = data;
    struct fixture *f = end->f;
    assert_ptr_equal(link, end->link);
    assert_false(end->opened);
    end->opened = true;
    assert_string_equal(tdm_uv_link_peer_name(link), f->expected);
    switch (f->scenario) {
    case SCENARIO_EXCHANGE:
        exchange_send_all(end);
        return;
    case SCENARIO_PAUSE:
        for (uint64_t i = 0; i < SMALL_COUNT; i++) {
            send_ack(end, i);
        }
        return;
    case SCENARIO_BACKPRESSURE:
        bulk_send(end);
        assert_true(end->busy_seen);
        return;
    case SCENARIO_GARBAGE:
    case SCENARIO_REFUSED:
        send_ack(end, 0); /* Refused: the acceptor must never deliver it. */
        return;
    case SCENARIO_RAW_TLS:
    case SCENARIO_CONNECT_FAILS:
    case SCENARIO_TIMEOUT:
        break;
    }
    fail_msg("unexpected open");
}

static void dial(struct fixture *f, struct tdm_tls_config *tls)
{
    struct tdm_uv_link_dial_config config = {
        .address = (const struct sockaddr *)&f->address,
        .tls = tls,
        .expected = f->expected,
        .timeout_ms = f->timeout_ms,
        .callbacks = {dialer_on_open, on_frame, on_drain, on_close, &f->dialer},
    };
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_link_dial(&f->loop, &config, &f->dialer.link, &diag), 0);
}

static void on_accept(struct tdm_uv_listener *listener, struct tdm_uv_link *link, int status,
                      const struct tdm_diag *diag, void *data)
{
    struct end *end = data;
    struct fixture *f = end->f;
    assert_ptr_equal(listener, f->listener);
    if (status != 0) {
        assert_null(link);
        assert_true(diag->message[0] != '\0');
        f->accept_failures++;
        f->accept_status = status;
        snprintf(f->accept_message, sizeof(f->accept_message), "%s", diag->message);
        if (f->scenario == SCENARIO_GARBAGE) {
            dial(f, &f->node1); /* The listener still serves. */
        }
        maybe_close_listener(f);
        return;
    }
    assert_non_null(link);
    assert_string_equal(tdm_uv_link_peer_name(link), "node1");
    f->accepts++;
    end->link = link;
    end->opened = true;
    if (f->scenario == SCENARIO_EXCHANGE) {
        exchange_send_all(end);
    }
}

static void listen_start(struct fixture *f)
{
    struct sockaddr_in any;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &any), 0);
    const char *allowed[] = {f->allowed};
    struct tdm_uv_listen_config config = {
        .address = (const struct sockaddr *)&any,
        .tls = &f->node2,
        .allowed = allowed,
        .allowed_count = 1,
        .timeout_ms = f->timeout_ms,
        .frame_size_max = f->frame_size_max,
        .on_accept = on_accept,
        .callbacks = {NULL, on_frame, on_drain, on_close, &f->acceptor},
    };
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_link_listen(&f->loop, &config, &f->listener, &diag), 0);
    assert_int_equal(tdm_uv_listener_address(f->listener, &f->address), 0);
    assert_int_not_equal(((struct sockaddr_in *)&f->address)->sin_port, 0);
}

static void run(struct fixture *f)
{
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_null(f->listener);
}

/* --- The raw client -------------------------------------------------------- */

struct raw_write {
    uv_write_t req;
    uint8_t data[];
};

static void raw_write_cb(uv_write_t *req, int status)
{
    (void)status; /* The acceptor may reset a connection it refused. */
    test_free(req);
}

static void raw_write(struct raw *raw, const void *data, size_t size)
{
    struct raw_write *write = test_malloc(sizeof(*write) + size);
    assert_non_null(write);
    memcpy(write->data, data, size);
    uv_buf_t buf = uv_buf_init((char *)write->data, (unsigned)size);
    assert_int_equal(uv_write(&write->req, (uv_stream_t *)&raw->tcp, &buf, 1, raw_write_cb), 0);
}

static void raw_flush(struct raw *raw)
{
    uint8_t buffer[16384];
    size_t n;
    while ((n = tdm_tls_take(&raw->session, buffer, sizeof(buffer))) > 0) {
        raw_write(raw, buffer, n);
    }
}

static void raw_close_cb(uv_handle_t *handle)
{
    struct raw *raw = handle->data;
    raw->closed = true;
    if (raw->tls_on) {
        tdm_tls_session_close(&raw->session);
    }
    maybe_close_listener(raw->f);
}

static void raw_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    static char buffer[65536];
    (void)suggested;
    *buf = uv_buf_init(buffer, sizeof(buffer));
}

/* Once our handshake is done: the payload, maybe a close_notify, then our FIN. */
static void raw_send_payload(struct raw *raw)
{
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_tls_write(&raw->session, raw->payload, raw->payload_size, &diag), 0);
    if (raw->close_notify) {
        assert_int_equal(tdm_tls_close_notify(&raw->session), 0);
    }
    raw_flush(raw);
    raw->sent = true;
    static uv_shutdown_t shutdown;
    assert_int_equal(uv_shutdown(&shutdown, (uv_stream_t *)&raw->tcp, NULL), 0);
}

static void raw_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *raw = stream->data;
    if (nread < 0) {
        /* The acceptor closed: now close ours (it waits for our end of stream). */
        uv_close((uv_handle_t *)&raw->tcp, raw_close_cb);
        return;
    }
    if (nread == 0 || !raw->tls_on || raw->sent) {
        return;
    }
    size_t consumed = 0;
    assert_int_equal(tdm_tls_feed(&raw->session, buf->base, (size_t)nread, &consumed), 0);
    assert_int_equal(consumed, (size_t)nread);
    struct tdm_diag diag = {{0}};
    int rv = tdm_tls_handshake(&raw->session, &diag);
    raw_flush(raw);
    if (rv == 0) {
        raw_send_payload(raw);
    } else {
        assert_int_equal(rv, -EAGAIN);
    }
}

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw *raw = req->data;
    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&raw->tcp, raw_alloc_cb, raw_read_cb), 0);
    if (raw->silent) {
        return;
    }
    if (!raw->tls_on) {
        static const char garbage[] = "GET / HTTP/1.0\r\nHost: tandem\r\n\r\n";
        raw_write(raw, garbage, sizeof(garbage) - 1);
        return;
    }
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_tls_handshake(&raw->session, &diag), -EAGAIN);
    raw_flush(raw);
}

static void raw_start(struct fixture *f, bool tls_on)
{
    struct raw *raw = &f->raw;
    raw->tls_on = tls_on;
    if (tls_on) {
        struct tdm_tls_peers peers = {.expected = "node2"};
        struct tdm_diag diag = {{0}};
        assert_int_equal(
            tdm_tls_session_init(&raw->session, &f->node1, TDM_TLS_DIAL, &peers, &diag), 0);
    }
    assert_int_equal(uv_tcp_init(&f->loop, &raw->tcp), 0);
    raw->tcp.data = raw;
    raw->connect.data = raw;
    assert_int_equal(uv_tcp_connect(&raw->connect, &raw->tcp, (const struct sockaddr *)&f->address,
                                    raw_connect_cb),
                     0);
}

/* --- Tests ------------------------------------------------------------------ */

/* A dialer and an acceptor authenticate each other and exchange, each way, a
 * frame of the largest size the protocol allows and 10,000 small frames: all
 * arrive complete and in order; a local close reports TANDEM_ECANCELED. */
static void test_uv_link__exchange(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_EXCHANGE;
    listen_start(f);
    dial(f, &f->node1);
    run(f);
    assert_true(f->dialer.opened);
    assert_int_equal(f->accepts, 1);
    assert_int_equal(f->accept_failures, 0);
    assert_int_equal(f->dialer.frames, SMALL_COUNT + 1);
    assert_int_equal(f->acceptor.frames, SMALL_COUNT + 1);
    assert_true(f->dialer.closed);
    assert_true(f->acceptor.closed);
    assert_int_equal(f->dialer.close_status, TANDEM_ECANCELED);
    assert_int_equal(f->acceptor.close_status, TANDEM_ECANCELED);
}

/* A dialer whose certificate comes from another CA is refused: both sides
 * report -EACCES, the listener never hands out a link, no frame is delivered. */
static void test_uv_link__stranger_refused(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_REFUSED;
    listen_start(f);
    dial(f, &f->stranger);
    run(f);
    assert_int_equal(f->accepts, 0);
    assert_int_equal(f->accept_failures, 1);
    assert_int_equal(f->accept_status, -EACCES);
    assert_true(f->dialer.closed);
    assert_int_equal(f->dialer.close_status, -EACCES);
    assert_int_equal(f->dialer.frames, 0);
    assert_int_equal(f->acceptor.frames, 0);
}

/* A dialer that expects another node refuses the acceptor's certificate: the
 * dialer never opens and reports -EACCES naming both names; the acceptor
 * reports a refusal too. */
static void test_uv_link__wrong_name_refused(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_REFUSED;
    f->expected = "node3";
    listen_start(f);
    dial(f, &f->node1);
    run(f);
    assert_false(f->dialer.opened);
    assert_true(f->dialer.closed);
    assert_int_equal(f->dialer.close_status, -EACCES);
    assert_non_null(strstr(f->dialer.close_message, "node3"));
    assert_int_equal(f->accepts, 0);
    assert_int_equal(f->accept_failures, 1);
    assert_int_equal(f->accept_status, -EACCES);
}

/* An acceptor that does not list the dialer refuses it. In TLS 1.3 the dialer
 * has finished its handshake by then: it opens, and its link then closes with
 * -EACCES from the acceptor's alert; the frame it sent is never delivered. */
static void test_uv_link__unlisted_dialer_refused(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_REFUSED;
    f->allowed = "node3";
    listen_start(f);
    dial(f, &f->node1);
    run(f);
    assert_int_equal(f->accepts, 0);
    assert_int_equal(f->accept_failures, 1);
    assert_int_equal(f->accept_status, -EACCES);
    assert_non_null(strstr(f->accept_message, "node1"));
    assert_true(f->dialer.opened);
    assert_int_equal(f->dialer.close_status, -EACCES);
    assert_non_null(strstr(f->dialer.close_message, "refused our certificate"));
    assert_int_equal(f->acceptor.frames, 0);
}

/* Bytes that are not TLS close that connection with a diag (-EPROTO); the
 * listener keeps serving: a real dialer then gets through and sends a frame. */
static void test_uv_link__garbage_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_GARBAGE;
    listen_start(f);
    raw_start(f, false);
    run(f);
    assert_true(f->raw.closed);
    assert_int_equal(f->accept_failures, 1);
    assert_int_equal(f->accept_status, -EPROTO);
    assert_int_equal(f->accepts, 1);
    assert_int_equal(f->acceptor.frames, 1);
    assert_true(f->acceptor.closed);
    assert_true(f->dialer.closed);
}

/* An authenticated peer that sends a frame of an unknown type loses its link:
 * on_close reports TANDEM_ECORRUPT with the reader's diag; nothing is delivered. */
static void test_uv_link__malformed_frame_closes_link(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_RAW_TLS;
    /* size 12, type 99, reserved 0, epoch 0. */
    static const uint8_t frame[16] = {12, 0, 0, 0, 99, 0};
    f->raw.payload = frame;
    f->raw.payload_size = sizeof(frame);
    listen_start(f);
    raw_start(f, true);
    run(f);
    assert_int_equal(f->accepts, 1);
    assert_true(f->acceptor.closed);
    assert_int_equal(f->acceptor.close_status, TANDEM_ECORRUPT);
    assert_non_null(strstr(f->acceptor.close_message, "type"));
    assert_int_equal(f->acceptor.frames, 0);
}

/* A frame whose header is valid but whose payload does not decode (an ACK
 * 16 bytes short) closes the link with TANDEM_ECORRUPT naming the frame type. */
static void test_uv_link__undecodable_frame_closes_link(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_RAW_TLS;
    /* size 20, type ACK, reserved 0, epoch 1, then one u64 of three. */
    static const uint8_t frame[24] = {20, 0, 0, 0, TDM_PROTO_ACK, 0, 0, 0, 1};
    f->raw.payload = frame;
    f->raw.payload_size = sizeof(frame);
    listen_start(f);
    raw_start(f, true);
    run(f);
    assert_true(f->acceptor.closed);
    assert_int_equal(f->acceptor.close_status, TANDEM_ECORRUPT);
    assert_non_null(strstr(f->acceptor.close_message, "ACK"));
    assert_int_equal(f->acceptor.frames, 0);
}

/* Half of an encoded ACK frame into `out`; returns its size. */
static size_t half_frame(uint8_t *out, size_t size)
{
    struct tdm_proto_msg msg = {.type = TDM_PROTO_ACK, .epoch = 1};
    msg.ack.received_lsn = 1;
    size_t written = 0;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_proto_encode(&msg, out, size, &written, &diag), 0);
    return written / 2;
}

/* A peer that sends half a frame and then closes cleanly (close_notify)
 * reports TANDEM_ECORRUPT "stream ended inside a frame", not a clean close. */
static void test_uv_link__peer_closes_mid_frame(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_RAW_TLS;
    static uint8_t frame[64];
    f->raw.payload = frame;
    f->raw.payload_size = half_frame(frame, sizeof(frame));
    f->raw.close_notify = true;
    listen_start(f);
    raw_start(f, true);
    run(f);
    assert_true(f->acceptor.closed);
    assert_int_equal(f->acceptor.close_status, TANDEM_ECORRUPT);
    assert_non_null(strstr(f->acceptor.close_message, "inside a frame"));
    assert_int_equal(f->acceptor.frames, 0);
}

/* A peer that sends half a frame and cuts the stream without close_notify
 * reports -EPROTO (a truncated TLS stream). */
static void test_uv_link__peer_cuts_mid_frame(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_RAW_TLS;
    static uint8_t frame[64];
    f->raw.payload = frame;
    f->raw.payload_size = half_frame(frame, sizeof(frame));
    listen_start(f);
    raw_start(f, true);
    run(f);
    assert_true(f->acceptor.closed);
    assert_int_equal(f->acceptor.close_status, -EPROTO);
    assert_non_null(strstr(f->acceptor.close_message, "truncated"));
    assert_int_equal(f->acceptor.frames, 0);
}

/* Sending faster than the peer reads fills the queue: send returns
 * TANDEM_EBUSY, on_drain runs once the queue is down to half, and sending
 * resumes; the acceptor receives every accepted frame once, in order. */
static void test_uv_link__backpressure(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_BACKPRESSURE;
    listen_start(f);
    dial(f, &f->node1);
    run(f);
    assert_true(f->dialer.busy_seen);
    assert_true(f->dialer.drains >= 1);
    assert_int_equal(f->dialer.sent, f->dialer.target);
    assert_int_equal(f->acceptor.frames, f->dialer.target);
    assert_int_equal(f->dialer.close_status, TANDEM_ECANCELED);
}

/* A dial to a port where nobody listens reports the connect error through
 * on_close, without on_open. */
static void test_uv_link__connect_refused(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_CONNECT_FAILS;
    struct sockaddr_in nobody;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 1, &nobody), 0);
    memcpy(&f->address, &nobody, sizeof(nobody));
    dial(f, &f->node1);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_false(f->dialer.opened);
    assert_true(f->dialer.closed);
    assert_int_equal(f->dialer.close_status, -ECONNREFUSED);
}

/* Closing a dial before it connects reports TANDEM_ECANCELED and leaks no
 * handle. */
static void test_uv_link__close_while_connecting(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_CONNECT_FAILS;
    listen_start(f);
    dial(f, &f->node1);
    tdm_uv_link_close(f->dialer.link);
    run(f);
    assert_false(f->dialer.opened);
    assert_int_equal(f->dialer.close_status, TANDEM_ECANCELED);
    assert_int_equal(f->accepts, 0);
}

/* An authenticated peer that announces a frame larger than the link's limit
 * loses the link as soon as the size field arrives (TANDEM_ECORRUPT): the
 * receive buffer does not grow for it. */
static void test_uv_link__frame_over_link_limit(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_RAW_TLS;
    f->frame_size_max = 1024;
    /* size 2000, type ACK: only the header is ever sent. */
    static const uint8_t header[16] = {0xd0, 0x07, 0, 0, TDM_PROTO_ACK, 0};
    f->raw.payload = header;
    f->raw.payload_size = sizeof(header);
    listen_start(f);
    raw_start(f, true);
    run(f);
    assert_true(f->acceptor.closed);
    assert_int_equal(f->acceptor.close_status, TANDEM_ECORRUPT);
    assert_int_equal(f->acceptor.frames, 0);
}

/* A connection that never starts its handshake is dropped after the
 * listener's timeout (-ETIMEDOUT), and reported. */
static void test_uv_link__accept_handshake_timeout(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_TIMEOUT;
    f->timeout_ms = 50;
    f->raw.silent = true;
    listen_start(f);
    raw_start(f, false);
    run(f);
    assert_int_equal(f->accept_failures, 1);
    assert_int_equal(f->accept_status, -ETIMEDOUT);
    assert_int_equal(f->accepts, 0);
}

static void mute_connection_cb(uv_stream_t *server, int status)
{
    (void)server;
    (void)status; /* Never accepted: the dialer's handshake gets no answer. */
}

/* A dial whose peer accepts the TCP connection but never answers the
 * handshake fails with -ETIMEDOUT after its timeout, without on_open. */
static void test_uv_link__dial_timeout(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_CONNECT_FAILS;
    f->timeout_ms = 50;
    struct sockaddr_in any;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &any), 0);
    assert_int_equal(uv_tcp_init(&f->loop, &f->mute), 0);
    f->mute_open = true;
    assert_int_equal(uv_tcp_bind(&f->mute, (const struct sockaddr *)&any, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->mute, 8, mute_connection_cb), 0);
    int size = (int)sizeof(f->address);
    assert_int_equal(uv_tcp_getsockname(&f->mute, (struct sockaddr *)&f->address, &size), 0);
    dial(f, &f->node1);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_false(f->dialer.opened);
    assert_true(f->dialer.closed);
    assert_int_equal(f->dialer.close_status, -ETIMEDOUT);
}

/* A receiver that pauses gets no frame until it resumes, then every frame
 * held back, in order. Method: the raw TLS client sends RAW_FRAMES ACKs in one
 * TLS write (many frames per TLS record, so a pause leaves plaintext behind)
 * and a close_notify; the acceptor pauses every 7 frames. The peer's
 * close_notify at a frame boundary closes the link with -EPIPE. */
static void test_uv_link__pause_and_resume(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_RAW_TLS;
    f->pause_every = 7;
    static uint8_t frames[RAW_FRAMES * ACK_FRAME_SIZE];
    for (uint64_t i = 0; i < RAW_FRAMES; i++) {
        struct tdm_proto_msg msg = {.type = TDM_PROTO_ACK, .epoch = 1};
        msg.ack.durable_lsn = i;
        msg.ack.received_lsn = i + 1;
        size_t written = 0;
        struct tdm_diag diag = {{0}};
        assert_int_equal(
            tdm_proto_encode(&msg, frames + i * ACK_FRAME_SIZE, ACK_FRAME_SIZE, &written, &diag),
            0);
        assert_int_equal(written, ACK_FRAME_SIZE);
    }
    f->raw.payload = frames;
    f->raw.payload_size = sizeof(frames);
    f->raw.close_notify = true;
    resume_timer_init(f);
    listen_start(f);
    raw_start(f, true);
    run(f);
    assert_int_equal(f->acceptor.frames, RAW_FRAMES);
    assert_int_equal(f->pauses, RAW_FRAMES / 7);
    assert_int_equal(f->acceptor.close_status, -EPIPE);
}

/* Closing a link that is paused (and so not reading) still completes on both
 * sides; no frame is delivered after the pause. */
static void test_uv_link__close_while_paused(void **state)
{
    struct fixture *f = *state;
    f->scenario = SCENARIO_PAUSE;
    f->pause_every = 1000;
    f->pause_close_at = 5000;
    resume_timer_init(f);
    listen_start(f);
    dial(f, &f->node1);
    run(f);
    assert_int_equal(f->acceptor.frames, 5000);
    assert_int_equal(f->pauses, 5);
    assert_int_equal(f->acceptor.close_status, TANDEM_ECANCELED);
    assert_int_equal(f->dialer.close_status, TANDEM_ECANCELED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uv_link__exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__stranger_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__wrong_name_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__unlisted_dialer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__garbage_closes_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__malformed_frame_closes_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__undecodable_frame_closes_link, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__peer_closes_mid_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__peer_cuts_mid_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__close_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__frame_over_link_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__accept_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__dial_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__pause_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_link__close_while_paused, setup, teardown),
    };
    return cmocka_run_group_tests_name("uv_link", tests, group_setup, group_teardown);
}
