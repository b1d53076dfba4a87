/* net/uv_link.h: one replication link (docs/PROTOCOL.md §2) as libuv sees it: a
 * TCP connection wrapped in a mutual TLS 1.3 session (net/tls.h) and a frame
 * reader (net/proto.h). Frames in, frames out; nothing about roles or epochs.
 *
 * Two ways to get a link:
 * - tdm_uv_link_dial(): connect to a peer whose certificate must name the
 *   expected node id. callbacks.on_open runs once our side of the handshake is
 *   complete. In TLS 1.3 the acceptor checks our certificate after that: a
 *   refusal arrives later as on_close(-EACCES, "peer refused our certificate
 *   (...)"), before any frame (PROTOCOL.md §2.1).
 * - tdm_uv_link_listen(): accept connections; each one whose peer authenticates
 *   (a name in the allowed list, or a client if allowed) is handed to on_accept
 *   with status 0. A connection that fails before that (refused certificate,
 *   not TLS, handshake timeout) is reported to on_accept with a negative status
 *   and link NULL, and is closed by the listener: no frame of it is read.
 *
 * Policy stays with the caller: PROTOCOL.md §2 has the node whose id sorts
 * first dial, so a node lists as allowed only the ids that sort before its own,
 * and keeps one link per peer (closing the older on a second accept).
 *
 * Once a link is handed out, every complete frame is decoded and passed to
 * on_frame in stream order, and on_close runs exactly once: after the link's
 * handles are closed, with the reason. The link's memory is freed when on_close
 * returns. Codes seen by on_close:
 * - TANDEM_ECANCELED: tdm_uv_link_close() was called (diag "closed by us").
 * - -EPIPE: the peer closed the link cleanly (close_notify at a frame boundary).
 * - -EACCES: authentication refused, by us or by the peer (dial side only: an
 *   accept-side refusal never reaches a link).
 * - -EPROTO: the TLS stream broke (not TLS, bad record, cut without
 *   close_notify).
 * - TANDEM_ECORRUPT: a frame that does not decode, is oversize, or a stream
 *   that ended inside a frame.
 * - -ETIMEDOUT: the dial (connect and handshake) took longer than its timeout.
 * - other negative errno values from the socket (-ECONNREFUSED, -ECONNRESET).
 * Every close that is not TANDEM_ECANCELED writes one trace line.
 *
 * Backpressure, sending: tdm_uv_link_send() encodes, encrypts and queues a
 * frame for uv_write. It refuses with TANDEM_EBUSY while the bytes queued for
 * the socket would exceed TDM_UV_LINK_QUEUE_SIZE_MAX; on_drain then runs once
 * the queue has fallen to half of that, and the caller sends again.
 * Receiving: tdm_uv_link_pause() and tdm_uv_link_resume().
 *
 * Memory: the receive buffer starts at TDM_UV_LINK_BUFFER_SIZE_INITIAL bytes
 * on the first byte of plaintext and grows (never shrinks) to fit the largest
 * frame seen, up to frame_size_max + 4. Frames up to
 * TDM_UV_LINK_BUFFER_SIZE_INITIAL bytes are encoded in a link-owned buffer,
 * larger ones in a buffer freed once encrypted; each write to the socket is
 * one allocation, freed when written.
 *
 * Thread: everything here runs on the loop's thread, callbacks included. Names
 * handed to callbacks and messages are valid during the callback only. */
#ifndef TDM_NET_UV_LINK_H
#define TDM_NET_UV_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "engine/base/error.h"
#include "net/proto.h"
#include "net/tls.h"

/* Ciphertext bytes queued for the socket before send refuses (TANDEM_EBUSY).
 * Two whole maximum frames, so that one always fits an empty queue. */
#define TDM_UV_LINK_QUEUE_SIZE_MAX ((size_t)2 * TDM_PROTO_BUFFER_SIZE)
/* First size of a link's receive buffer and of its encode buffer. */
#define TDM_UV_LINK_BUFFER_SIZE_INITIAL (64u << 10)
/* Default time allowed for connect plus handshake (dial) or handshake (accept). */
#define TDM_UV_LINK_TIMEOUT_MS_DEFAULT 10000u
/* After a close starts: time allowed to deliver the alert or close_notify and
 * to see the peer's end of stream, before the socket is closed regardless. */
#define TDM_UV_LINK_CLOSE_TIMEOUT_MS 2000u
/* Connections of one listener still in their handshake; more are closed at once. */
#define TDM_UV_LINK_HANDSHAKES_MAX 64u

struct tdm_uv_link;
struct tdm_uv_listener;

/* Dial side: our handshake is complete and tdm_uv_link_peer_name() is the
 * authenticated peer. The link may be used (send, close) from here on. */
typedef void (*tdm_uv_link_open_cb)(struct tdm_uv_link *link, void *data);

/* One decoded frame. msg and every slice in it are valid during the call only.
 * The callback may send on the link or close it. */
typedef void (*tdm_uv_link_frame_cb)(struct tdm_uv_link *link, const struct tdm_proto_msg *msg,
                                     void *data);

/* After tdm_uv_link_send() refused with TANDEM_EBUSY: the queue has drained to
 * TDM_UV_LINK_QUEUE_SIZE_MAX / 2 bytes or fewer. Runs once per refusal streak. */
typedef void (*tdm_uv_link_drain_cb)(struct tdm_uv_link *link, void *data);

/* The link is closed (status and diag: see the file comment) and its handles
 * are gone. Runs exactly once; the link is freed when it returns. */
typedef void (*tdm_uv_link_close_cb)(struct tdm_uv_link *link, int status,
                                     const struct tdm_diag *diag, void *data);

/* A connection finished its handshake (status 0, diag NULL: link is
 * authenticated and now the caller's, with the listener's callbacks installed)
 * or failed before (status < 0, link NULL, diag says why; the listener has
 * closed it). data is the listen config's callbacks.data. */
typedef void (*tdm_uv_link_accept_cb)(struct tdm_uv_listener *listener, struct tdm_uv_link *link,
                                      int status, const struct tdm_diag *diag, void *data);

/* The listener's handles are closed and it is freed. */
typedef void (*tdm_uv_listener_close_cb)(void *data);

/* What a link reports, and to whom. data is passed to every callback. */
struct tdm_uv_link_callbacks {
    tdm_uv_link_open_cb on_open;   /* Dial: required. Accept: unused (on_accept). */
    tdm_uv_link_frame_cb on_frame; /* Required. */
    tdm_uv_link_drain_cb on_drain; /* Optional (NULL). */
    tdm_uv_link_close_cb on_close; /* Required. */
    void *data;                    /* Borrowed; the link never reads it. */
};

struct tdm_uv_link_dial_config {
    const struct sockaddr *address; /* Copied. IPv4 or IPv6. */
    struct tdm_tls_config *tls;     /* Retained until on_close has run. */
    const char *expected;           /* Node id the peer must prove; copied. */
    uint32_t timeout_ms;            /* Connect + handshake; 0: the default. */
    uint32_t frame_size_max;        /* Bytes of one received frame; 0: the protocol's. */
    /* No trace line when the TCP connect itself fails (the caller retries and
     * traces once); a failure after the connect is traced as always. */
    bool quiet_connect_failure;
    struct tdm_uv_link_callbacks callbacks;
};

struct tdm_uv_listen_config {
    const struct sockaddr *address;         /* Copied; port 0 picks a free port. */
    struct tdm_tls_config *tls;             /* Retained until the listener and its links close. */
    const char *const *allowed;             /* Node ids that may connect; copied. */
    size_t allowed_count;                   /* 0..TDM_TLS_ALLOWED_MAX. */
    bool clients;                           /* Also accept "client:<name>" certificates. */
    uint32_t timeout_ms;                    /* Handshake; 0: the default. */
    uint32_t frame_size_max;                /* As for dial; for every accepted link. */
    tdm_uv_link_accept_cb on_accept;        /* Required. */
    struct tdm_uv_link_callbacks callbacks; /* Installed on each accepted link. */
};

/* Start a dial: returns 0 and *out, after which callbacks.on_close runs exactly
 * once (on_open before it if the handshake completes). Returns -ENOMEM or
 * TANDEM_EINVALID (expected is not a valid node id, an address family other
 * than IPv4/IPv6; diag says which); then no callback runs. A connect failure is
 * reported by on_close. Loop thread only. */
int tdm_uv_link_dial(uv_loop_t *loop, const struct tdm_uv_link_dial_config *config,
                     struct tdm_uv_link **out, struct tdm_diag *diag);

/* Bind and listen. Returns 0 and *out, or -ENOMEM, TANDEM_EINVALID (an allowed
 * name, too many names) or a negative errno from bind/listen (-EADDRINUSE),
 * with diag; after a bind/listen failure the caller runs the loop once more to
 * release the handle. Loop thread only. */
int tdm_uv_link_listen(uv_loop_t *loop, const struct tdm_uv_listen_config *config,
                       struct tdm_uv_listener **out, struct tdm_diag *diag);

/* The address the listener is bound to (the port the kernel chose for port 0).
 * Returns 0 or a negative errno. */
int tdm_uv_listener_address(const struct tdm_uv_listener *listener,
                            struct sockaddr_storage *address);

/* Stop accepting, close every connection still in its handshake (not
 * reported), then call cb(data) (cb may be NULL) once every handle of the
 * listener is closed and it is freed. Links already handed out are not
 * touched. At most once. */
void tdm_uv_listener_close(struct tdm_uv_listener *listener, tdm_uv_listener_close_cb cb,
                           void *data);

/* Encode msg (read during the call only) and queue it for the peer. Returns 0;
 * TANDEM_EBUSY if the queue is full (nothing queued: wait for on_drain, then
 * send again); TANDEM_ECANCELED if the link is closing (on_close will run);
 * TANDEM_EINVALID if msg does not encode (diag names the field; the link stays
 * open); -ENOMEM. Any other code means the link failed while sending and
 * on_close follows. Precondition: on_open or on_accept has handed the link out. */
int tdm_uv_link_send(struct tdm_uv_link *link, const struct tdm_proto_msg *msg,
                     struct tdm_diag *diag);

/* Stop delivering frames (receive-side backpressure): on_frame is not called
 * again until tdm_uv_link_resume(); bytes already received wait in the link
 * and the socket is not read, so TCP flow control slows the peer. May be
 * called from on_frame (the current frame is the last one delivered). A
 * paused link does not notice that its peer closed until it resumes. */
void tdm_uv_link_pause(struct tdm_uv_link *link);

/* Deliver again. Frames held back are delivered from a later loop turn, never
 * from inside this call. Does nothing if the link is not paused. */
void tdm_uv_link_resume(struct tdm_uv_link *link);

/* Close the link: what is queued is still sent, followed by a close_notify;
 * on_close then runs with TANDEM_ECANCELED. Does nothing if a close already
 * started (on_close then reports the first reason). */
void tdm_uv_link_close(struct tdm_uv_link *link);

/* The peer's authenticated name (node id or "client:<name>"); "" before. */
const char *tdm_uv_link_peer_name(const struct tdm_uv_link *link);

/* Ciphertext bytes encrypted and not yet written (a deferred flush, then uv_write). */
size_t tdm_uv_link_queue_size(const struct tdm_uv_link *link);

/* Replace the data pointer passed to the link's callbacks. */
void tdm_uv_link_set_data(struct tdm_uv_link *link, void *data);

/* Hand the link to another owner: replace every callback and data (copied;
 * on_frame and on_close required, on_open unused). The next frame, drain and
 * the close are reported to the new callbacks only. Precondition: the link
 * was handed out (on_open or on_accept ran) and on_close has not run. */
void tdm_uv_link_set_callbacks(struct tdm_uv_link *link,
                               const struct tdm_uv_link_callbacks *callbacks);

#endif
