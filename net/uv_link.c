/* net/uv_link.c: one replication link over libuv: TCP, then mutual TLS 1.3
 * (net/tls.h, docs/PROTOCOL.md §2.1), then frames (net/proto.h, §3).
 *
 * Happy path:
 * 1. Dial: uv_tcp_connect(); on connect, start reading and drive the TLS
 *    handshake. Accept: the listener accepts, makes a link in state HANDSHAKE
 *    and keeps it in its pending list. One timer per link bounds connect plus
 *    handshake.
 * 2. Every read is fed to the TLS session; after every TLS call, the
 *    ciphertext it wants to send is taken into one write request and handed to
 *    uv_write() (link_flush).
 * 3. Handshake done: dial calls on_open; accept leaves the pending list and
 *    calls the listener's on_accept. State OPEN.
 * 4. Plaintext goes into the frame reader; each complete frame is decoded into
 *    link->msg and passed to on_frame. The reader's buffer starts small and
 *    grows when a frame's size field says the frame will not fit (link_reserve).
 * 5. Pause (tdm_uv_link_pause, usually from on_frame): delivery stops after
 *    the current frame; the plaintext and ciphertext not yet taken stay in
 *    link->plaintext and link->read_buffer (offsets kept), and reading stops
 *    (link_hold). Resume arms the timer for 0 ms; its callback delivers what
 *    was held back and reads again (link_resume_cb), never from inside the
 *    caller's call.
 * 6. Send: encode, tdm_tls_write(); the flush waits for the loop's prepare
 *    phase (link->prepare, just before the loop polls), so that every frame
 *    sent in one turn of the loop (a group of answers to a client, APPENDs and
 *    HEARTBEATs to a backup) leaves in one uv_write(), one syscall. The bytes
 *    encrypted or handed to uv_write and not yet written are the queue; past
 *    TDM_UV_LINK_QUEUE_SIZE_MAX send refuses with TANDEM_EBUSY and on_drain
 *    runs when the queue is down to half.
 *
 * Link states (link_moves_allowed):
 *
 *   CONNECTING --> HANDSHAKE --> OPEN --> CLOSING
 *        \______________\__________________^
 *
 * Failure modes: every failure (connect, TLS, a frame that does not decode, an
 * oversize frame, a read or write error, the timer) goes through link_fail():
 * one trace line, the first status and diag kept, then the close below. Nothing
 * a peer sends is asserted on.
 *
 * Close (link_close_start): state CLOSING. If the socket is connected, queue a
 * close_notify (or the alert a TLS failure left), flush, uv_shutdown() after
 * the queued writes, keep reading and discard until the peer's end of stream
 * (so that our alert is not lost to a reset), bounded by
 * TDM_UV_LINK_CLOSE_TIMEOUT_MS. Then uv_close() the socket, the timer and the
 * prepare handle; when all three are closed, on_close (or, for an accepted connection never handed
 * out, the listener's on_accept with the failure) and free. */
#include "net/uv_link.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/queue.h"
#include "engine/base/trace.h"

#define LINK_READ_SIZE      ((size_t)64 * 1024) /* Ciphertext bytes asked of one read. */
#define LINK_PLAINTEXT_SIZE ((size_t)16 * 1024) /* One TLS record of plaintext. */
#define LINK_BACKLOG        128
#define LINK_LABEL_SIZE     160 /* "node2 at [ipv6]:port". */
#define LINK_ADDRESS_SIZE   80  /* "[ipv6]:port". */
#define BIT(n)              (1u << (n))

enum link_state {
    LINK_CONNECTING = 1, /* Dial: uv_tcp_connect() in flight. */
    LINK_HANDSHAKE,      /* Reading; TLS handshake in progress. */
    LINK_OPEN,           /* Authenticated; frames flow. */
    LINK_CLOSING,        /* link_close_start() ran; waiting for the handles. */
    LINK__COUNT,
};

static const uint32_t link_moves_allowed[LINK__COUNT] = {
    [LINK_CONNECTING] = BIT(LINK_HANDSHAKE) | BIT(LINK_CLOSING),
    [LINK_HANDSHAKE] = BIT(LINK_OPEN) | BIT(LINK_CLOSING),
    [LINK_OPEN] = BIT(LINK_CLOSING),
    [LINK_CLOSING] = 0,
};

tdm_static_assert(TDM_UV_LINK_QUEUE_SIZE_MAX >= TDM_PROTO_BUFFER_SIZE);
tdm_static_assert(TDM_UV_LINK_BUFFER_SIZE_INITIAL >= TDM_PROTO_FRAME_HEADER_SIZE);
tdm_static_assert(LINK_READ_SIZE <= TDM_TLS_INBOX_SIZE_MAX);

/* One uv_write(): ciphertext taken from the TLS outbox. */
struct link_write {
    uv_write_t req;
    struct tdm_uv_link *link;
    size_t size; /* Bytes in data. */
    uint8_t data[];
};

/* Thread: loop thread only. Heap-allocated; must not move (libuv handles). */
struct tdm_uv_link {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;     /* Connect + handshake deadline, then the close deadline. */
    uv_prepare_t prepare; /* Active while a send's flush is deferred (step 6). */
    bool flush_deferred;  /* prepare is started. */
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    enum link_state state;
    enum tdm_tls_side side;
    struct tdm_tls_session tls;
    struct tdm_uv_link_callbacks callbacks;
    struct tdm_uv_listener *listener; /* Accept side until handed out; else NULL. */
    struct tdm_queue pending_entry;   /* In listener->pending while listener is set. */
    char label[LINK_LABEL_SIZE];      /* Who, for trace lines: the peer's name once open. */
    bool quiet_dial_failure;          /* No trace line for a dial that never opened. */
    uint32_t timeout_ms;              /* Connect + handshake. */
    bool handed;                      /* on_open or on_accept ran with this link. */
    bool reading;                     /* uv_read_start() succeeded once. */
    bool read_stopped;                /* uv_read_stop() while paused. */
    bool paused;                      /* tdm_uv_link_pause(): deliver no frame. */
    bool writable;                    /* Connected and no shutdown requested. */
    bool shutdown_done;               /* The shutdown request completed. */
    bool eof_seen;                    /* The peer's end of stream, or a read error. */
    bool handles_closing;             /* uv_close() called on both handles. */
    unsigned handles_open;            /* 3 until the close callbacks run. */
    int close_status;                 /* First failure; 0 until link_fail(). */
    struct tdm_diag close_diag;       /* Its diag. */
    size_t queue_size;                /* Ciphertext bytes in uv_write, not yet written. */
    bool blocked;                     /* Send refused with TANDEM_EBUSY; on_drain owed. */
    size_t buffer_size_max;           /* frame_size_max + 4. */
    uint8_t *buffer;                  /* The reader's; NULL until the first plaintext. */
    struct tdm_proto_reader reader;   /* Over buffer. */
    uint8_t *encode_buffer;           /* TDM_UV_LINK_BUFFER_SIZE_INITIAL bytes, lazily. */
    struct tdm_proto_msg msg;         /* The frame being delivered (large: not on stack). */
    size_t plaintext_offset;          /* plaintext[offset..size) is not yet fed to the reader. */
    size_t plaintext_size;
    size_t read_offset; /* read_buffer[offset..size) is not yet fed to TLS. */
    size_t read_size;
    uint8_t plaintext[LINK_PLAINTEXT_SIZE];
    uint8_t read_buffer[LINK_READ_SIZE];
};

/* Thread: loop thread only. */
struct tdm_uv_listener {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    struct tdm_uv_listen_config config; /* allowed points at allowed_names. */
    char allowed[TDM_TLS_ALLOWED_MAX][TDM_TLS_NAME_SIZE_MAX + 1];
    const char *allowed_names[TDM_TLS_ALLOWED_MAX];
    struct tdm_queue pending; /* Links still in their handshake. */
    uint32_t pending_count;   /* <= TDM_UV_LINK_HANDSHAKES_MAX. */
    bool closing;             /* Close requested (or listen failed). */
    bool tcp_closed;          /* The listening handle's close callback ran. */
    tdm_uv_listener_close_cb close_cb;
    void *close_data;
};

static void link_fail(struct tdm_uv_link *link, int status, const char *message);
static void link_pump(struct tdm_uv_link *link);
static void link_resume_cb(struct tdm_uv_link *link);
static void link_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void link_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void listener_maybe_finish(struct tdm_uv_listener *listener);

/* --- State, labels, close ------------------------------------------------ */

static void link_move(struct tdm_uv_link *link, enum link_state next)
{
    tdm_assert(next > 0);
    tdm_assert(next < LINK__COUNT);
    tdm_assert((link_moves_allowed[link->state] & BIT(next)) != 0);
    link->state = next;
}

static void address_format(const struct sockaddr *address, char *out, size_t size)
{
    char host[64] = "?";
    unsigned port = 0;
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)address;
        (void)uv_ip4_name(in, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, size, "%s:%u", host, port);
    } else if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)address;
        (void)uv_ip6_name(in6, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, size, "[%s]:%u", host, port);
    } else {
        snprintf(out, size, "unknown address");
    }
}

static void link_finish(struct tdm_uv_link *link)
{
    tdm_assert(link->state == LINK_CLOSING);
    tdm_assert(link->handles_open == 0);
    tdm_assert(link->queue_size == 0); /* Every write callback ran before close. */
    tdm_tls_session_close(&link->tls);
    struct tdm_uv_listener *listener = link->listener;
    if (listener != NULL) {
        /* Accepted, never handed out: the failure goes to the listener. */
        tdm_assert(!link->handed);
        tdm_queue_remove(&link->pending_entry);
        tdm_assert(listener->pending_count > 0);
        listener->pending_count--;
        if (!listener->closing) {
            listener->config.on_accept(listener, NULL, link->close_status, &link->close_diag,
                                       listener->config.callbacks.data);
        }
    } else {
        tdm_assert(link->handed || link->side == TDM_TLS_DIAL);
        link->callbacks.on_close(link, link->close_status, &link->close_diag, link->callbacks.data);
    }
    tdm_free(link->buffer);
    tdm_free(link->encode_buffer);
    tdm_free(link);
    if (listener != NULL) {
        listener_maybe_finish(listener);
    }
}

static void link_handle_close_cb(uv_handle_t *handle)
{
    struct tdm_uv_link *link = handle->data;
    tdm_assert(link->handles_open > 0);
    link->handles_open--;
    if (link->handles_open == 0) {
        link_finish(link);
    }
}

static void link_close_handles(struct tdm_uv_link *link)
{
    tdm_assert(link->state == LINK_CLOSING);
    if (link->handles_closing) {
        return;
    }
    link->handles_closing = true;
    link->writable = false;
    uv_close((uv_handle_t *)&link->tcp, link_handle_close_cb);
    uv_close((uv_handle_t *)&link->timer, link_handle_close_cb);
    uv_close((uv_handle_t *)&link->prepare, link_handle_close_cb);
}

static void link_maybe_close_handles(struct tdm_uv_link *link)
{
    if (link->shutdown_done && link->eof_seen) {
        link_close_handles(link);
    }
}

/* --- Writing --------------------------------------------------------------- */

static void link_write_cb(uv_write_t *req, int status)
{
    struct link_write *write = (struct link_write *)(void *)req;
    struct tdm_uv_link *link = write->link;
    tdm_assert(link->queue_size >= write->size);
    link->queue_size -= write->size;
    tdm_free(write);
    if (status < 0) {
        if (link->state != LINK_CLOSING) {
            char message[TDM_DIAG_SIZE];
            snprintf(message, sizeof(message), "write: %s", uv_strerror(status));
            link_fail(link, status, message);
        }
        return;
    }
    if (link->blocked && link->state == LINK_OPEN &&
        link->queue_size <= TDM_UV_LINK_QUEUE_SIZE_MAX / 2) {
        link->blocked = false;
        if (link->callbacks.on_drain != NULL) {
            link->callbacks.on_drain(link, link->callbacks.data);
        }
    }
}

/* Hand every byte the TLS session wants to send to uv_write(). Returns 0,
 * -ENOMEM, or the error of uv_write(). */
static int link_flush(struct tdm_uv_link *link)
{
    if (!link->writable) {
        return 0;
    }
    size_t pending = tdm_tls_pending(&link->tls);
    if (pending == 0) {
        return 0;
    }
    tdm_assert(pending <= UINT_MAX);
    struct link_write *write = tdm_malloc(sizeof(*write) + pending);
    if (write == NULL) {
        return -ENOMEM;
    }
    size_t taken = 0;
    while (taken < pending) {
        size_t n = tdm_tls_take(&link->tls, write->data + taken, pending - taken);
        if (n == 0) {
            break;
        }
        taken += n;
    }
    tdm_assert(taken == pending);
    write->link = link;
    write->size = taken;
    uv_buf_t buf = uv_buf_init((char *)write->data, (unsigned)taken);
    int rv = uv_write(&write->req, (uv_stream_t *)&link->tcp, &buf, 1, link_write_cb);
    if (rv != 0) {
        tdm_free(write);
        return rv;
    }
    link->queue_size += taken;
    return 0;
}

/* Flush; on failure, fail the link. Returns false if the link is closing. */
static bool link_flush_or_fail(struct tdm_uv_link *link)
{
    int rv = link_flush(link);
    if (rv != 0) {
        char message[TDM_DIAG_SIZE];
        snprintf(message, sizeof(message), "write: %s", tandem_strerror(rv));
        link_fail(link, rv, message);
    }
    return link->state != LINK_CLOSING;
}

/* The loop is about to poll: hand what this turn's sends encrypted to one
 * uv_write() (step 6). */
static void link_prepare_cb(uv_prepare_t *prepare)
{
    struct tdm_uv_link *link = prepare->data;
    tdm_assert(link->flush_deferred);
    link->flush_deferred = false;
    int rv = uv_prepare_stop(prepare);
    tdm_assert(rv == 0);
    if (link->state == LINK_OPEN) {
        (void)link_flush_or_fail(link);
    }
}

static void link_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct tdm_uv_link *link = req->data;
    tdm_assert(link->state == LINK_CLOSING);
    link->shutdown_done = true;
    if (status < 0) {
        link->eof_seen = true; /* The socket is broken: nothing more to wait for. */
    }
    link_maybe_close_handles(link);
}

static void link_timer_cb(uv_timer_t *timer)
{
    struct tdm_uv_link *link = timer->data;
    if (link->state == LINK_CLOSING) {
        link_close_handles(link); /* The peer did not finish the close in time. */
        return;
    }
    if (link->state == LINK_OPEN) {
        link_resume_cb(link); /* The only use of the timer while open. */
        return;
    }
    char message[TDM_DIAG_SIZE];
    snprintf(message, sizeof(message), "no authenticated link within %" PRIu32 " ms",
             link->timeout_ms);
    link_fail(link, -ETIMEDOUT, message);
}

static void link_close_start(struct tdm_uv_link *link)
{
    link_move(link, LINK_CLOSING);
    (void)uv_timer_stop(&link->timer);
    if (!link->writable) {
        link_close_handles(link);
        return;
    }
    /* After a TLS failure this queues nothing: the alert is already there. */
    (void)tdm_tls_close_notify(&link->tls);
    (void)link_flush(link);
    link->writable = false;
    link->shutdown.data = link;
    int rv = uv_shutdown(&link->shutdown, (uv_stream_t *)&link->tcp, link_shutdown_cb);
    if (rv == 0 && link->read_stopped) {
        /* Paused: read again, to discard until the peer's end of stream. */
        rv = uv_read_start((uv_stream_t *)&link->tcp, link_alloc_cb, link_read_cb);
        link->read_stopped = rv != 0;
    }
    if (rv != 0 || !link->reading) {
        link_close_handles(link);
        return;
    }
    rv = uv_timer_start(&link->timer, link_timer_cb, TDM_UV_LINK_CLOSE_TIMEOUT_MS, 0);
    tdm_assert(rv == 0);
}

/* Record the first failure, trace it, and start the close. */
static void link_fail(struct tdm_uv_link *link, int status, const char *message)
{
    tdm_assert(status < 0);
    tdm_assert(message != NULL);
    if (link->state == LINK_CLOSING) {
        return;
    }
    link->close_status = status;
    tdm_diag_printf(&link->close_diag, "%s", message);
    bool quiet = link->quiet_dial_failure && link->state == LINK_CONNECTING;
    if (status != TANDEM_ECANCELED && !quiet) {
        tdm_tracef("link %s: closing: %s: %s", link->label, tandem_strerror(status), message);
    }
    link_close_start(link);
}

/* --- Reading --------------------------------------------------------------- */

/* Make the reader's buffer large enough for the frame whose size field is now
 * complete, before the reader checks that field against its capacity. Frames
 * over buffer_size_max are left for the reader to refuse. The reader's buffer
 * and capacity are replaced in place: proto.h keeps them as plain fields and
 * the reader never holds a pointer into the buffer elsewhere. */
static int link_reserve(struct tdm_uv_link *link, const uint8_t *data, size_t size)
{
    struct tdm_proto_reader *reader = &link->reader;
    if (link->buffer == NULL) {
        size_t initial = TDM_UV_LINK_BUFFER_SIZE_INITIAL;
        initial = initial < link->buffer_size_max ? initial : link->buffer_size_max;
        link->buffer = tdm_malloc(initial);
        if (link->buffer == NULL) {
            return -ENOMEM;
        }
        tdm_proto_reader_init(reader, link->buffer, initial);
    }
    if (reader->want != 0 || reader->have >= 4 || reader->have + size < 4) {
        return 0;
    }
    uint8_t field[4];
    memcpy(field, reader->buffer, reader->have);
    memcpy(field + reader->have, data, 4 - reader->have);
    size_t need = 4 + ((size_t)field[0] | (size_t)field[1] << 8 | (size_t)field[2] << 16 |
                       (size_t)field[3] << 24);
    if (need <= reader->capacity || need > link->buffer_size_max) {
        return 0;
    }
    size_t grown = reader->capacity;
    while (grown < need) {
        grown *= 2;
    }
    grown = grown < link->buffer_size_max ? grown : link->buffer_size_max;
    uint8_t *buffer = tdm_realloc(link->buffer, grown);
    if (buffer == NULL) {
        return -ENOMEM;
    }
    link->buffer = buffer;
    reader->buffer = buffer;
    reader->capacity = grown;
    tdm_assert(reader->capacity >= need);
    return 0;
}

/* Feed the plaintext not yet taken to the reader and deliver every complete
 * frame, until a pause or the end of the plaintext. */
static void link_deliver(struct tdm_uv_link *link)
{
    const uint8_t *data = link->plaintext;
    size_t size = link->plaintext_size;
    while (link->plaintext_offset < size && link->state == LINK_OPEN && !link->paused) {
        size_t offset = link->plaintext_offset;
        struct tdm_diag diag = {{0}};
        int rv = link_reserve(link, data + offset, size - offset);
        if (rv != 0) {
            link_fail(link, rv, "frame buffer: out of memory");
            return;
        }
        size_t consumed = 0;
        rv = tdm_proto_reader_feed(&link->reader, data + offset, size - offset, &consumed, &diag);
        if (rv != 0) {
            link_fail(link, rv, diag.message);
            return;
        }
        link->plaintext_offset += consumed;
        struct tdm_proto_frame frame;
        rv = tdm_proto_reader_next(&link->reader, &frame, &diag);
        if (rv == -EAGAIN) {
            tdm_assert(link->plaintext_offset == size);
            return;
        }
        if (rv == 0) {
            rv = tdm_proto_decode(&frame, &link->msg, &diag);
        }
        if (rv != 0) {
            link_fail(link, rv, diag.message);
            return;
        }
        link->callbacks.on_frame(link, &link->msg, link->callbacks.data);
    }
}

/* The peer's close_notify: clean only at a frame boundary. */
static void link_on_close_notify(struct tdm_uv_link *link)
{
    struct tdm_diag diag = {{0}};
    int rv = 0;
    if (link->buffer != NULL) {
        rv = tdm_proto_reader_eof(&link->reader, &diag);
    }
    if (rv != 0) {
        link_fail(link, rv, diag.message);
        return;
    }
    link_fail(link, -EPIPE, "peer closed the link");
}

static void link_established(struct tdm_uv_link *link)
{
    link_move(link, LINK_OPEN);
    (void)uv_timer_stop(&link->timer);
    link->handed = true;
    /* Kept: the session forgets the name once it fails. */
    snprintf(link->label, sizeof(link->label), "%s", tdm_tls_peer_name(&link->tls));
    tdm_assert(link->label[0] != '\0');
    if (link->side == TDM_TLS_DIAL) {
        link->callbacks.on_open(link, link->callbacks.data);
        return;
    }
    struct tdm_uv_listener *listener = link->listener;
    tdm_assert(listener != NULL);
    tdm_assert(!listener->closing); /* Its close moved every pending link to CLOSING. */
    tdm_queue_remove(&link->pending_entry);
    tdm_assert(listener->pending_count > 0);
    listener->pending_count--;
    link->listener = NULL;
    listener->config.on_accept(listener, link, 0, NULL, listener->config.callbacks.data);
}

/* Advance the handshake, then read and deliver plaintext until TLS needs more. */
static void link_pump(struct tdm_uv_link *link)
{
    struct tdm_diag diag = {{0}};
    if (link->state == LINK_HANDSHAKE) {
        int rv = tdm_tls_handshake(&link->tls, &diag);
        if (!link_flush_or_fail(link)) {
            return;
        }
        if (rv == -EAGAIN) {
            return;
        }
        if (rv != 0) {
            link_fail(link, rv, diag.message);
            return;
        }
        link_established(link);
    }
    while (link->state == LINK_OPEN && !link->paused) {
        if (link->plaintext_offset < link->plaintext_size) {
            link_deliver(link);
            continue;
        }
        size_t n = 0;
        int rv = tdm_tls_read(&link->tls, link->plaintext, sizeof(link->plaintext), &n, &diag);
        if (!link_flush_or_fail(link)) {
            return;
        }
        if (rv == -EAGAIN) {
            return;
        }
        if (rv == -EPIPE) {
            link_on_close_notify(link);
            return;
        }
        if (rv != 0) {
            link_fail(link, rv, diag.message);
            return;
        }
        link->plaintext_offset = 0;
        link->plaintext_size = n;
        link_deliver(link);
    }
}

/* Feed the received bytes not yet taken to TLS, pumping after each feed,
 * until a pause, a close or the end of the bytes. */
static void link_on_ciphertext(struct tdm_uv_link *link)
{
    while (link->read_offset < link->read_size && link->state != LINK_CLOSING && !link->paused) {
        size_t consumed = 0;
        int rv = tdm_tls_feed(&link->tls, link->read_buffer + link->read_offset,
                              link->read_size - link->read_offset, &consumed);
        if (rv != 0) {
            link_fail(link, rv, "TLS: cannot take received bytes");
            return;
        }
        if (consumed == 0) {
            /* The pump drains the inbox; a full one means TLS stopped reading. */
            link_fail(link, -EPROTO, "TLS: receive buffer full");
            return;
        }
        link->read_offset += consumed;
        link_pump(link);
    }
}

/* Paused: keep what was received for later and stop reading the socket, so
 * that TCP flow control pushes back on the peer. */
static void link_hold(struct tdm_uv_link *link)
{
    if (link->paused && link->state == LINK_OPEN && !link->read_stopped) {
        int rv = uv_read_stop((uv_stream_t *)&link->tcp);
        tdm_assert(rv == 0);
        link->read_stopped = true;
    }
}

/* After tdm_uv_link_resume(), from the loop: deliver what was held back, then
 * read the socket again. */
static void link_resume_cb(struct tdm_uv_link *link)
{
    tdm_assert(link->state == LINK_OPEN);
    if (link->paused) {
        return; /* Paused again before the timer fired. */
    }
    link_pump(link); /* Plaintext held back, then what TLS still holds. */
    link_on_ciphertext(link);
    if (link->state != LINK_OPEN) {
        return;
    }
    if (link->paused) {
        link_hold(link);
        return;
    }
    tdm_assert(link->read_offset == link->read_size);
    if (link->read_stopped) {
        int rv = uv_read_start((uv_stream_t *)&link->tcp, link_alloc_cb, link_read_cb);
        if (rv != 0) {
            char message[TDM_DIAG_SIZE];
            snprintf(message, sizeof(message), "read: %s", uv_strerror(rv));
            link_fail(link, rv, message);
            return;
        }
        link->read_stopped = false;
    }
}

static void link_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct tdm_uv_link *link = handle->data;
    *buf = uv_buf_init((char *)link->read_buffer, (unsigned)sizeof(link->read_buffer));
}

static void link_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tdm_uv_link *link = stream->data;
    tdm_assert(buf->base == (char *)link->read_buffer || nread <= 0);
    if (nread == 0) {
        return;
    }
    if (link->state == LINK_CLOSING) {
        /* Discard: we only wait for the peer's end of stream. */
        if (nread < 0) {
            link->eof_seen = true;
            (void)uv_read_stop(stream);
            link_maybe_close_handles(link);
        }
        return;
    }
    tdm_assert(link->state != LINK_CONNECTING);
    if (nread < 0) {
        link->eof_seen = true;
        (void)uv_read_stop(stream);
        struct tdm_diag diag = {{0}};
        int rv = (int)nread;
        if (nread == UV_EOF) {
            rv = tdm_tls_eof(&link->tls, &diag);
            if (rv == 0) {
                link_on_close_notify(link); /* Normally handled when it was read. */
                return;
            }
        } else {
            tdm_diag_printf(&diag, "read: %s", uv_strerror(rv));
        }
        link_fail(link, rv, diag.message);
        return;
    }
    tdm_assert(link->read_offset == link->read_size); /* Nothing held back. */
    link->read_offset = 0;
    link->read_size = (size_t)nread;
    link_on_ciphertext(link);
    link_hold(link);
}

/* Start reading and the handshake. */
static void link_start(struct tdm_uv_link *link)
{
    tdm_assert(link->state == LINK_HANDSHAKE);
    tdm_assert(!link->reading);
    int rv = uv_read_start((uv_stream_t *)&link->tcp, link_alloc_cb, link_read_cb);
    if (rv != 0) {
        char message[TDM_DIAG_SIZE];
        snprintf(message, sizeof(message), "read: %s", uv_strerror(rv));
        link_fail(link, rv, message);
        return;
    }
    link->reading = true;
    link->writable = true;
    /* Frames are written whole: Nagle would only delay the small ones (ACK). */
    rv = uv_tcp_nodelay(&link->tcp, 1);
    if (rv != 0) {
        tdm_tracef("link %s: TCP_NODELAY: %s", link->label, uv_strerror(rv));
    }
    link_pump(link);
}

/* --- Creation ---------------------------------------------------------------- */

static struct tdm_uv_link *link_new(uv_loop_t *loop, struct tdm_tls_config *tls,
                                    enum tdm_tls_side side, const struct tdm_tls_peers *peers,
                                    const struct tdm_uv_link_callbacks *callbacks,
                                    uint32_t timeout_ms, uint32_t frame_size_max, int *rv,
                                    struct tdm_diag *diag)
{
    tdm_assert(callbacks->on_frame != NULL);
    tdm_assert(callbacks->on_close != NULL);
    struct tdm_uv_link *link = tdm_calloc(1, sizeof(*link));
    if (link == NULL) {
        *rv = -ENOMEM;
        return NULL;
    }
    *rv = tdm_tls_session_init(&link->tls, tls, side, peers, diag);
    if (*rv != 0) {
        tdm_free(link);
        return NULL;
    }
    if (frame_size_max == 0 || frame_size_max > TDM_PROTO_FRAME_SIZE_MAX) {
        frame_size_max = TDM_PROTO_FRAME_SIZE_MAX;
    }
    if (frame_size_max < TDM_PROTO_FRAME_SIZE_MIN) {
        frame_size_max = TDM_PROTO_FRAME_SIZE_MIN;
    }
    link->loop = loop;
    link->side = side;
    link->callbacks = *callbacks;
    link->timeout_ms = timeout_ms != 0 ? timeout_ms : TDM_UV_LINK_TIMEOUT_MS_DEFAULT;
    link->buffer_size_max = (size_t)frame_size_max + 4;
    link->state = side == TDM_TLS_DIAL ? LINK_CONNECTING : LINK_HANDSHAKE;
    tdm_queue_init(&link->pending_entry);
    int init = uv_tcp_init(loop, &link->tcp);
    tdm_assert(init == 0); /* AF_UNSPEC: no socket is created yet. */
    init = uv_timer_init(loop, &link->timer);
    tdm_assert(init == 0);
    init = uv_prepare_init(loop, &link->prepare);
    tdm_assert(init == 0);
    link->tcp.data = link;
    link->timer.data = link;
    link->prepare.data = link;
    link->connect.data = link;
    link->handles_open = 3;
    return link;
}

static void link_connect_cb(uv_connect_t *req, int status)
{
    struct tdm_uv_link *link = req->data;
    if (link->state == LINK_CLOSING) {
        return; /* Closed while connecting (status is UV_ECANCELED). */
    }
    tdm_assert(link->state == LINK_CONNECTING);
    if (status < 0) {
        char message[TDM_DIAG_SIZE];
        snprintf(message, sizeof(message), "connect: %s", uv_strerror(status));
        link_fail(link, status, message);
        return;
    }
    link_move(link, LINK_HANDSHAKE);
    link_start(link);
}

static bool address_valid(const struct sockaddr *address)
{
    return address != NULL && (address->sa_family == AF_INET || address->sa_family == AF_INET6);
}

int tdm_uv_link_dial(uv_loop_t *loop, const struct tdm_uv_link_dial_config *config,
                     struct tdm_uv_link **out, struct tdm_diag *diag)
{
    tdm_assert(loop != NULL);
    tdm_assert(config->tls != NULL);
    tdm_assert(config->callbacks.on_open != NULL);
    if (!address_valid(config->address)) {
        tdm_diag_printf(diag, "dial: address is not IPv4 or IPv6");
        return TANDEM_EINVALID;
    }
    if (config->expected == NULL ||
        !tdm_proto_name_valid(config->expected, strlen(config->expected))) {
        tdm_diag_printf(diag, "dial: expected peer is not a valid node id");
        return TANDEM_EINVALID;
    }
    struct tdm_tls_peers peers = {.expected = config->expected};
    int rv = 0;
    struct tdm_uv_link *link = link_new(loop, config->tls, TDM_TLS_DIAL, &peers, &config->callbacks,
                                        config->timeout_ms, config->frame_size_max, &rv, diag);
    if (link == NULL) {
        tdm_assert(rv < 0);
        return rv;
    }
    char where[LINK_ADDRESS_SIZE];
    address_format(config->address, where, sizeof(where));
    snprintf(link->label, sizeof(link->label), "%s at %s", config->expected, where);
    link->quiet_dial_failure = config->quiet_connect_failure;
    rv = uv_timer_start(&link->timer, link_timer_cb, link->timeout_ms, 0);
    tdm_assert(rv == 0);
    *out = link;
    rv = uv_tcp_connect(&link->connect, &link->tcp, config->address, link_connect_cb);
    if (rv != 0) {
        /* The handles exist now: report through on_close, as for any failure. */
        char message[TDM_DIAG_SIZE];
        snprintf(message, sizeof(message), "connect %s: %s", where, uv_strerror(rv));
        link_fail(link, rv, message);
    }
    return 0;
}

int tdm_uv_link_send(struct tdm_uv_link *link, const struct tdm_proto_msg *msg,
                     struct tdm_diag *diag)
{
    tdm_assert(link->handed);
    tdm_assert(msg != NULL);
    if (link->state != LINK_OPEN) {
        tdm_diag_printf(diag, "link to %s is closing", link->label);
        return TANDEM_ECANCELED;
    }
    size_t size = tdm_proto_encoded_size(msg);
    if (size > TDM_PROTO_BUFFER_SIZE) {
        tdm_diag_printf(diag, "%s frame: %zu bytes, limit %u", tdm_proto_type_name(msg->type), size,
                        TDM_PROTO_BUFFER_SIZE);
        return TANDEM_EINVALID;
    }
    size_t queued = link->queue_size + tdm_tls_pending(&link->tls);
    if (queued + size > TDM_UV_LINK_QUEUE_SIZE_MAX) {
        link->blocked = true;
        tdm_diag_printf(diag, "link to %s: %zu bytes queued", link->label, queued);
        return TANDEM_EBUSY;
    }
    if (link->encode_buffer == NULL) {
        link->encode_buffer = tdm_malloc(TDM_UV_LINK_BUFFER_SIZE_INITIAL);
        if (link->encode_buffer == NULL) {
            return -ENOMEM;
        }
    }
    uint8_t *buffer = link->encode_buffer;
    if (size > TDM_UV_LINK_BUFFER_SIZE_INITIAL) {
        buffer = tdm_malloc(size);
        if (buffer == NULL) {
            return -ENOMEM;
        }
    }
    size_t written = 0;
    int rv = tdm_proto_encode(msg, buffer, size, &written, diag);
    if (rv == 0) {
        tdm_assert(written == size);
        rv = tdm_tls_write(&link->tls, buffer, written, diag);
        tdm_assert(rv != -EAGAIN); /* OPEN: the handshake is done. */
        if (rv != 0) {
            link_fail(link, rv, diag != NULL ? diag->message : "TLS write failed");
        }
    }
    if (buffer != link->encode_buffer) {
        tdm_free(buffer);
    }
    if (rv != 0) {
        return rv;
    }
    if (!link->flush_deferred) {
        link->flush_deferred = true;
        rv = uv_prepare_start(&link->prepare, link_prepare_cb);
        tdm_assert(rv == 0);
    }
    return 0;
}

void tdm_uv_link_pause(struct tdm_uv_link *link)
{
    tdm_assert(link->handed);
    link->paused = true;
}

void tdm_uv_link_resume(struct tdm_uv_link *link)
{
    tdm_assert(link->handed);
    if (!link->paused) {
        return;
    }
    link->paused = false;
    if (link->state == LINK_OPEN) {
        int rv = uv_timer_start(&link->timer, link_timer_cb, 0, 0);
        tdm_assert(rv == 0);
    }
}

void tdm_uv_link_close(struct tdm_uv_link *link)
{
    tdm_assert(link != NULL);
    tdm_assert(link->handles_open > 0);
    link_fail(link, TANDEM_ECANCELED, "closed by us");
}

const char *tdm_uv_link_peer_name(const struct tdm_uv_link *link)
{
    return link->handed ? link->label : "";
}

size_t tdm_uv_link_queue_size(const struct tdm_uv_link *link)
{
    return link->queue_size + tdm_tls_pending(&link->tls);
}

void tdm_uv_link_set_data(struct tdm_uv_link *link, void *data)
{
    link->callbacks.data = data;
}

void tdm_uv_link_set_callbacks(struct tdm_uv_link *link,
                               const struct tdm_uv_link_callbacks *callbacks)
{
    tdm_assert(link->handed);
    tdm_assert(link->handles_open > 0);
    tdm_assert(callbacks->on_frame != NULL);
    tdm_assert(callbacks->on_close != NULL);
    link->callbacks = *callbacks;
}

/* --- Listener -------------------------------------------------------------- */

static void listener_maybe_finish(struct tdm_uv_listener *listener)
{
    if (!listener->closing || !listener->tcp_closed || listener->pending_count > 0) {
        return;
    }
    tdm_assert(tdm_queue_empty(&listener->pending));
    tdm_uv_listener_close_cb cb = listener->close_cb;
    void *data = listener->close_data;
    tdm_free(listener);
    if (cb != NULL) {
        cb(data);
    }
}

static void listener_tcp_close_cb(uv_handle_t *handle)
{
    struct tdm_uv_listener *listener = handle->data;
    listener->tcp_closed = true;
    listener_maybe_finish(listener);
}

static void listener_reject_close_cb(uv_handle_t *handle)
{
    tdm_free(handle);
}

/* Accept and close at once: a connection over the limit must not sit in the
 * backlog waiting for a handshake that will never be read. */
static void listener_reject(struct tdm_uv_listener *listener, const char *why)
{
    tdm_tracef("link listener: connection refused: %s", why);
    uv_tcp_t *tcp = tdm_malloc(sizeof(*tcp));
    if (tcp == NULL) {
        return; /* It waits in the backlog; the next connection retries. */
    }
    int rv = uv_tcp_init(listener->loop, tcp);
    tdm_assert(rv == 0);
    (void)uv_accept((uv_stream_t *)&listener->tcp, (uv_stream_t *)tcp);
    uv_close((uv_handle_t *)tcp, listener_reject_close_cb);
}

static void listener_connection_cb(uv_stream_t *server, int status)
{
    struct tdm_uv_listener *listener = server->data;
    tdm_assert(!listener->tcp_closed);
    if (status < 0) {
        tdm_tracef("link listener: accept: %s", uv_strerror(status));
        return;
    }
    if (listener->pending_count >= TDM_UV_LINK_HANDSHAKES_MAX) {
        listener_reject(listener, "too many handshakes in progress");
        return;
    }
    struct tdm_tls_peers peers = {
        .allowed = listener->config.allowed,
        .allowed_count = listener->config.allowed_count,
        .clients = listener->config.clients,
    };
    struct tdm_diag diag = {{0}};
    int rv = 0;
    struct tdm_uv_link *link = link_new(
        listener->loop, listener->config.tls, TDM_TLS_ACCEPT, &peers, &listener->config.callbacks,
        listener->config.timeout_ms, listener->config.frame_size_max, &rv, &diag);
    if (link == NULL) {
        listener_reject(listener, diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        return;
    }
    link->listener = listener;
    tdm_queue_insert_tail(&listener->pending, &link->pending_entry);
    listener->pending_count++;
    snprintf(link->label, sizeof(link->label), "unauthenticated peer");
    rv = uv_accept(server, (uv_stream_t *)&link->tcp);
    if (rv != 0) {
        char message[TDM_DIAG_SIZE];
        snprintf(message, sizeof(message), "accept: %s", uv_strerror(rv));
        link_fail(link, rv, message);
        return;
    }
    struct sockaddr_storage peer;
    int peer_size = (int)sizeof(peer);
    if (uv_tcp_getpeername(&link->tcp, (struct sockaddr *)&peer, &peer_size) == 0) {
        char where[LINK_ADDRESS_SIZE];
        address_format((struct sockaddr *)&peer, where, sizeof(where));
        snprintf(link->label, sizeof(link->label), "peer at %s", where);
    }
    rv = uv_timer_start(&link->timer, link_timer_cb, link->timeout_ms, 0);
    tdm_assert(rv == 0);
    link_start(link);
}

static int listener_config_copy(struct tdm_uv_listener *listener,
                                const struct tdm_uv_listen_config *config, struct tdm_diag *diag)
{
    if (config->allowed_count > TDM_TLS_ALLOWED_MAX) {
        tdm_diag_printf(diag, "listen: %zu allowed peers, limit %d", config->allowed_count,
                        TDM_TLS_ALLOWED_MAX);
        return TANDEM_EINVALID;
    }
    listener->config = *config;
    for (size_t i = 0; i < config->allowed_count; i++) {
        const char *name = config->allowed[i];
        if (name == NULL || !tdm_proto_name_valid(name, strlen(name))) {
            tdm_diag_printf(diag, "listen: allowed peer %zu is not a valid node id", i);
            return TANDEM_EINVALID;
        }
        snprintf(listener->allowed[i], sizeof(listener->allowed[i]), "%s", name);
        listener->allowed_names[i] = listener->allowed[i];
    }
    listener->config.allowed = listener->allowed_names;
    listener->config.address = NULL; /* Not kept: the socket knows it. */
    return 0;
}

int tdm_uv_link_listen(uv_loop_t *loop, const struct tdm_uv_listen_config *config,
                       struct tdm_uv_listener **out, struct tdm_diag *diag)
{
    tdm_assert(loop != NULL);
    tdm_assert(config->tls != NULL);
    tdm_assert(config->on_accept != NULL);
    tdm_assert(config->callbacks.on_frame != NULL);
    tdm_assert(config->callbacks.on_close != NULL);
    if (!address_valid(config->address)) {
        tdm_diag_printf(diag, "listen: address is not IPv4 or IPv6");
        return TANDEM_EINVALID;
    }
    struct tdm_uv_listener *listener = tdm_calloc(1, sizeof(*listener));
    if (listener == NULL) {
        return -ENOMEM;
    }
    int rv = listener_config_copy(listener, config, diag);
    if (rv != 0) {
        tdm_free(listener);
        return rv;
    }
    listener->loop = loop;
    tdm_queue_init(&listener->pending);
    rv = uv_tcp_init(loop, &listener->tcp);
    tdm_assert(rv == 0);
    listener->tcp.data = listener;
    char where[LINK_ADDRESS_SIZE];
    address_format(config->address, where, sizeof(where));
    rv = uv_tcp_bind(&listener->tcp, config->address, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&listener->tcp, LINK_BACKLOG, listener_connection_cb);
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "listen on %s: %s", where, uv_strerror(rv));
        /* The caller runs the loop once more to release the handle. */
        listener->closing = true;
        uv_close((uv_handle_t *)&listener->tcp, listener_tcp_close_cb);
        return rv;
    }
    *out = listener;
    return 0;
}

int tdm_uv_listener_address(const struct tdm_uv_listener *listener,
                            struct sockaddr_storage *address)
{
    tdm_assert(!listener->tcp_closed);
    tdm_assert(address != NULL);
    int size = (int)sizeof(*address);
    return uv_tcp_getsockname(&listener->tcp, (struct sockaddr *)address, &size);
}

void tdm_uv_listener_close(struct tdm_uv_listener *listener, tdm_uv_listener_close_cb cb,
                           void *data)
{
    tdm_assert(!listener->closing);
    tdm_assert(!listener->tcp_closed);
    listener->closing = true;
    listener->close_cb = cb;
    listener->close_data = data;
    uv_close((uv_handle_t *)&listener->tcp, listener_tcp_close_cb);
    struct tdm_queue *entry = tdm_queue_head(&listener->pending);
    while (entry != &listener->pending) {
        struct tdm_uv_link *link = TDM_QUEUE_DATA(entry, struct tdm_uv_link, pending_entry);
        entry = entry->next; /* link_fail() leaves the link in the list. */
        link_fail(link, TANDEM_ECANCELED, "listener closed");
    }
}
