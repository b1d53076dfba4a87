/* net/tls.h: mutual TLS 1.3 on the links, over memory BIOs, sans I/O
 * (docs/PROTOCOL.md §2; RELIABILITY.md 2.10).
 *
 * A struct tdm_tls_session never touches a socket: the adapter feeds it the
 * ciphertext it received (tdm_tls_feed), takes the ciphertext to send
 * (tdm_tls_take), and moves plaintext with tdm_tls_write / tdm_tls_read. The
 * same code runs in unit tests with two sessions wired back to back.
 *
 * Happy path of one link:
 * 1. Once per process: tdm_tls_config_init_dir(&config, "DIR/tls") loads the
 *    node's (or client's) key and certificate and the cluster CA, the only
 *    trust anchor.
 * 2. Per link: tdm_tls_session_init(&session, &config, TDM_TLS_DIAL or
 *    TDM_TLS_ACCEPT, &peers): the dialer names the node it expects, the
 *    acceptor lists the node ids it accepts and whether clients may connect.
 * 3. Loop: feed received bytes; tdm_tls_handshake() until it returns 0; after
 *    every call, take and send what tdm_tls_pending() reports. Certificates are
 *    checked during the handshake: the chain must end at the cluster CA and the
 *    subject CN must be the expected (dialer) or an allowed (acceptor) name;
 *    client certificates have CN "client:<name>".
 * 4. Established: tdm_tls_peer_name() is the authenticated name; move frames
 *    with tdm_tls_write() / tdm_tls_read().
 * 5. tdm_tls_close_notify(), send what is pending, close the socket, and
 *    tdm_tls_session_close().
 *
 * Failure modes (sticky: every later call returns the same code):
 * - -EACCES: authentication refused, by us or by the peer (diag: "peer
 *   certificate not issued by the cluster CA", "peer name node3, expected
 *   node2", "peer sent no certificate", "client certificate client:x refused:
 *   this port accepts nodes only", "peer refused our certificate (...)").
 * - -EPROTO: not TLS, not TLS 1.3, a record that fails authentication (a
 *   flipped, replayed or reordered byte), a stream cut short.
 * - -EPIPE: the peer closed the stream cleanly (close_notify).
 * - -ENOMEM, and -ENOENT / TANDEM_EINVALID for unreadable key files.
 * Every failure writes one trace line naming the peer and the cause. After a
 * failure the outbox may still hold an alert for the peer: take and send it.
 *
 * Settings: TLS 1.3 only (min = max), no session tickets or resumption (so no
 * 0-RTT early data), no compression, no renegotiation (TLS 1.3 has none),
 * certificate chains of depth 1 (leaf issued by the cluster CA).
 *
 * Thread: a config may be shared by the sessions of one thread; a session
 * belongs to one thread and must not move in memory after init. */
#ifndef TDM_NET_TLS_H
#define TDM_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/error.h"

struct ssl_ctx_st;
struct ssl_st;
struct bio_st;

#define TDM_TLS_CLIENT_PREFIX "client:" /* CN prefix of client certificates. */
#define TDM_TLS_NAME_SIZE_MAX 70        /* "client:" + a 63-byte name. */
#define TDM_TLS_ALLOWED_MAX   8         /* Names an acceptor lists (TDM_PROTO_PEERS_MAX). */
/* Ciphertext fed and not yet processed; tdm_tls_feed() takes no more. */
#define TDM_TLS_INBOX_SIZE_MAX (256u << 10)

/* File names inside a credential directory (tdm_pki_issue writes them). */
#define TDM_TLS_KEY_FILE  "node.key"
#define TDM_TLS_CERT_FILE "node.crt"
#define TDM_TLS_CA_FILE   "ca.crt"

/* Credentials and policy shared by sessions. Thread: one thread. */
struct tdm_tls_config {
    struct ssl_ctx_st *ctx;               /* Owned. */
    char name[TDM_TLS_NAME_SIZE_MAX + 1]; /* Our own certificate's CN. */
};

/* Load key_path (PEM private key), cert_path (PEM certificate) and ca_path (the
 * cluster CA certificate, the only trust anchor) into config. Returns 0, -errno
 * (-ENOENT: a file is missing) or TANDEM_EINVALID (diag: "node.crt was not
 * issued by ca.crt", "key does not match certificate", a bad PEM file). */
int tdm_tls_config_init(struct tdm_tls_config *config, const char *key_path, const char *cert_path,
                        const char *ca_path, struct tdm_diag *diag);

/* tdm_tls_config_init() on dir/node.key, dir/node.crt and dir/ca.crt. */
int tdm_tls_config_init_dir(struct tdm_tls_config *config, const char *dir, struct tdm_diag *diag);

/* Release config. Sessions made from it must be closed first. */
void tdm_tls_config_close(struct tdm_tls_config *config);

enum tdm_tls_side {
    TDM_TLS_DIAL = 1,   /* We opened the connection (TLS client). */
    TDM_TLS_ACCEPT = 2, /* We accepted it (TLS server). */
};

/* Whom a session accepts. Borrowed during tdm_tls_session_init() only. */
struct tdm_tls_peers {
    /* DIAL: the node id the peer's certificate must name; NULL accepts any
     * node of the cluster (a client dialing HOST:PORT). Client certificates
     * are always refused when dialing. */
    const char *expected;
    /* ACCEPT: node ids that may connect (0..TDM_TLS_ALLOWED_MAX). */
    const char *const *allowed;
    size_t allowed_count;
    bool clients; /* ACCEPT: also accept "client:<name>" certificates. */
};

enum tdm_tls_state {
    TDM_TLS_HANDSHAKE = 1, /* Exchanging handshake messages. */
    TDM_TLS_ESTABLISHED,   /* Peer authenticated; data may flow. */
    TDM_TLS_CLOSED,        /* The peer sent close_notify. */
    TDM_TLS_FAILED,        /* Refused or broken; see error. */
};

/* One link's TLS state. Thread: one thread; must not move after init. */
struct tdm_tls_session {
    struct ssl_st *ssl;    /* Owned. */
    struct bio_st *inbox;  /* Ciphertext from the peer (owned by ssl). */
    struct bio_st *outbox; /* Ciphertext for the peer (owned by ssl). */
    enum tdm_tls_side side;
    enum tdm_tls_state state;
    char expected[TDM_TLS_NAME_SIZE_MAX + 1];                     /* DIAL; "" for any node. */
    char allowed[TDM_TLS_ALLOWED_MAX][TDM_TLS_NAME_SIZE_MAX + 1]; /* ACCEPT. */
    size_t allowed_count;
    bool clients;                              /* ACCEPT: clients allowed. */
    char peer_name[TDM_TLS_NAME_SIZE_MAX + 1]; /* CN, once verified; else "". */
    char refusal[TDM_DIAG_SIZE];               /* Why our certificate check refused; "" if not. */
    int error;                                 /* Sticky failure code; 0 if none. */
    char error_message[TDM_DIAG_SIZE];
};

/* Start a session in state TDM_TLS_HANDSHAKE. config is retained until
 * tdm_tls_session_close(); peers is copied. Returns 0, -ENOMEM, or
 * TANDEM_EINVALID (a name too long, too many allowed names). On failure there
 * is nothing to close. */
int tdm_tls_session_init(struct tdm_tls_session *session, struct tdm_tls_config *config,
                         enum tdm_tls_side side, const struct tdm_tls_peers *peers,
                         struct tdm_diag *diag);

/* Release the session (without sending anything). */
void tdm_tls_session_close(struct tdm_tls_session *session);

/* Give the session ciphertext received from the peer: copies up to the inbox
 * limit and sets *consumed. Returns 0, the sticky error, or -ENOMEM. */
int tdm_tls_feed(struct tdm_tls_session *session, const void *data, size_t size, size_t *consumed);

/* Bytes of ciphertext waiting to be sent to the peer. */
size_t tdm_tls_pending(const struct tdm_tls_session *session);

/* Move up to size bytes of ciphertext for the peer into buffer; returns the
 * count. Works after a failure too (to deliver the alert). */
size_t tdm_tls_take(struct tdm_tls_session *session, void *buffer, size_t size);

/* Advance the handshake with what was fed. Returns 0 once the peer is
 * authenticated (and on every later call), -EAGAIN if more ciphertext is
 * needed (send what is pending first), or a failure code (-EACCES, -EPROTO)
 * with diag naming the cause. */
int tdm_tls_handshake(struct tdm_tls_session *session, struct tdm_diag *diag);

/* Encrypt data[0..size) into the outbox. Returns 0, -EAGAIN during the
 * handshake, or the sticky error. */
int tdm_tls_write(struct tdm_tls_session *session, const void *data, size_t size,
                  struct tdm_diag *diag);

/* Decrypt up to size bytes of plaintext into buffer and set *read_size.
 * Returns 0 with *read_size >= 1, -EAGAIN if nothing is ready yet (the
 * handshake is advanced as needed), -EPIPE after the peer's close_notify, or a
 * failure code (-EACCES if the peer refused our certificate, -EPROTO). */
int tdm_tls_read(struct tdm_tls_session *session, void *buffer, size_t size, size_t *read_size,
                 struct tdm_diag *diag);

/* Queue a close_notify for the peer. Returns 0 or the sticky error. */
int tdm_tls_close_notify(struct tdm_tls_session *session);

/* The transport reached end of stream. Returns 0 after the peer's
 * close_notify, else -EPROTO ("connection closed during the handshake",
 * "stream truncated: closed without close_notify") and the session fails. */
int tdm_tls_eof(struct tdm_tls_session *session, struct tdm_diag *diag);

/* True once the peer is authenticated and until a failure or close. */
bool tdm_tls_established(const struct tdm_tls_session *session);

/* The peer's authenticated name (a node id, or "client:<name>"); "" before. */
const char *tdm_tls_peer_name(const struct tdm_tls_session *session);

/* True if the authenticated peer holds a client certificate. */
bool tdm_tls_peer_is_client(const struct tdm_tls_session *session);

/* --- Cluster CA and certificates (net/pki.c) ------------------------------ */

/* Create a cluster CA in cadir (created with its parents, mode 0700):
 * cadir/ca.key (EC P-256, mode 0600) and cadir/ca.crt (self-signed, CN
 * "tandem CA <cluster>", valid 10 years, random serial). Refuses a cadir that
 * already has a ca.key or ca.crt (-EEXIST). Returns 0, -errno, or
 * TANDEM_EINVALID (bad cluster name), with diag. */
int tdm_pki_ca_create(const char *cadir, const char *cluster, struct tdm_diag *diag);

/* Issue a certificate for name with the CA in cadir into outdir (created with
 * its parents, mode 0700): outdir/node.key (EC P-256, 0600), outdir/node.crt
 * (CN name, valid 10 years, random serial) and outdir/ca.crt (a copy of the CA
 * certificate). name is a node id, whose certificate serves both ends of a
 * link, or "client:<name>", a client certificate (TLS client only). Refuses
 * an outdir that already holds node.key (-EEXIST). Returns 0, -errno (-ENOENT:
 * no CA in cadir), or TANDEM_EINVALID (bad name), with diag. */
int tdm_pki_issue(const char *cadir, const char *name, const char *outdir, struct tdm_diag *diag);

/* Read the cluster name from cadir/ca.crt into cluster[0..size). Returns 0,
 * -ENOENT (no CA there) or TANDEM_EINVALID (not a tandem CA), with diag. */
int tdm_pki_ca_cluster(const char *cadir, char *cluster, size_t size, struct tdm_diag *diag);

#endif
