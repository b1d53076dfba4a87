/* net/client.h: the client side of a node's client links (docs/PROTOCOL.md §7),
 * with plain blocking sockets and no event loop: the CLI (tools/) and the
 * public client API of libtandem (tandem_client_*, net/client_api.c) use it.
 * STYLE B1.3 keeps libuv in net/uv*; the frames are net/proto.h's.
 *
 * Two transports, one frame interface:
 * - the local socket DIR/tandemd.sock of a node directory (§7.1): no TLS, the
 *   file's permissions are the guard;
 * - TCP to a node's listen address HOST:PORT (the port its peers use) with
 *   mutual TLS 1.3 (net/tls.h, §2.1): our client certificate (CN
 *   "client:<name>") from a credential directory, and a server certificate
 *   that must come from the cluster CA and name a node (any node id: a
 *   client does not know which node answers at an address; never a client).
 *
 * Happy path:
 * 1. tdm_client_connect() (a directory, the CLI's rule: 1 means "no tandemd,
 *    open the directory yourself"), tdm_client_connect_local() (a directory,
 *    every failure an error) or tdm_client_connect_cert() (HOST:PORT with a
 *    credential directory; connect and handshake within timeout_ms).
 * 2. tdm_client_send() writes one whole frame; tdm_client_receive() returns
 *    the next frame decoded (blocking, or -EAGAIN at once when asked not to
 *    wait). Decoded slices stay valid until the next receive.
 * 3. tdm_client_close().
 *
 * Polling: client->fd may be handed to poll(2) for POLLIN. That is sound with
 * TLS too, because tdm_client_receive(wait false) returns -EAGAIN only once
 * every byte already received (ciphertext, plaintext and frames) is used up.
 *
 * Thread: a client belongs to one thread and must not move in memory between
 * connect and close (the TLS session points into it). */
#ifndef TDM_NET_CLIENT_H
#define TDM_NET_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/error.h"
#include "net/proto.h"
#include "net/tls.h"

#define TDM_CLIENT_SOCKET_NAME "tandemd.sock"
#define TDM_CLIENT_READ_SIZE   ((size_t)64 * 1024) /* Bytes asked of one recv(2). */
/* Default bound on connect plus TLS handshake. */
#define TDM_CLIENT_TIMEOUT_MS 10000u
/* Bytes after a request frame's size field that every node accepts on every
 * client link (== TDM_UV_FRAME_SIZE_DEFAULT, net/uv.h). */
#define TDM_CLIENT_FRAME_SIZE_MAX (8u << 20)
/* Longest HOST:PORT: a 253-byte DNS name, or "[" IPv6 "]", then ":65535". */
#define TDM_CLIENT_ADDRESS_SIZE_MAX 263
/* Longest peer label in diags: "node id at HOST:PORT". */
#define TDM_CLIENT_LABEL_SIZE (TDM_TLS_NAME_SIZE_MAX + TDM_CLIENT_ADDRESS_SIZE_MAX + 8)
/* TCP keepalive: a node that vanished (power, network) is noticed after about
 * IDLE + INTERVAL x COUNT seconds of silence instead of never. */
#define TDM_CLIENT_KEEPALIVE_IDLE_S     30
#define TDM_CLIENT_KEEPALIVE_INTERVAL_S 10
#define TDM_CLIENT_KEEPALIVE_COUNT      3

/* One connection. Thread: one thread; must not move after connect. */
struct tdm_client {
    int fd;                           /* Connected, non-blocking; -1 when closed. */
    bool tls_on;                      /* TCP + TLS; false: the local socket. */
    bool tls_config_owned;            /* tls_config is ours to close. */
    struct tdm_tls_config tls_config; /* Owned credentials (connect_cert). */
    struct tdm_tls_session tls;       /* With tls_on. */
    uint8_t *frame_buffer;            /* TDM_PROTO_BUFFER_SIZE bytes, owned. */
    struct tdm_proto_reader reader;   /* Over frame_buffer. */
    uint8_t *in;                      /* TDM_CLIENT_READ_SIZE bytes of plaintext, owned. */
    size_t in_start;                  /* in[in_start, in_end) not yet fed to the reader. */
    size_t in_end;
    uint8_t *wire;     /* With tls_on: TDM_CLIENT_READ_SIZE bytes of received ciphertext. */
    size_t wire_start; /* wire[wire_start, wire_end) not yet fed to TLS. */
    size_t wire_end;
    uint8_t *out;                                  /* With tls_on: ciphertext to send, scratch. */
    char label[TDM_CLIENT_LABEL_SIZE];             /* "tandemd", or "node2 at HOST:PORT". */
    char address[TDM_CLIENT_ADDRESS_SIZE_MAX + 1]; /* HOST:PORT; "" for the local socket. */
    uint64_t request_id_next;                      /* The next request's id (from 1). */
};

/* Check that address has the form HOST:PORT (a host name, an IPv4 address or
 * [IPv6], a colon, a port 1..65535). Returns 0, or TANDEM_EINVALID with diag
 * saying what is wrong. Resolves nothing. */
int tdm_client_address_check(const char *address, struct tdm_diag *diag);

/* True if addr is to be reached over TCP: no file or directory of that name
 * exists and it has the form HOST:PORT (a host, a colon, 1-5 digits; IPv6 in
 * brackets). Everything else is a node directory. */
bool tdm_client_address_is_tcp(const char *addr);

/* Connect to dir/tandemd.sock. Returns 0, or a negative code with diag:
 * -ENOENT (no socket file: no tandemd), -ECONNREFUSED (a stale socket file),
 * -EACCES (this user may not use the socket), -ENAMETOOLONG, -ENOMEM, ... */
int tdm_client_connect_local(const char *dir, struct tdm_client *client, struct tdm_diag *diag);

/* The CLI's rule for a directory: tdm_client_connect_local(), but 1 when no
 * tandemd runs in dir or this user may not use its socket (the caller then
 * uses the directory directly). Returns 0, 1, or a negative code with diag. */
int tdm_client_connect(const char *dir, struct tdm_client *client, struct tdm_diag *diag);

/* Connect to address (HOST:PORT: an IPv4 address, a DNS name or [IPv6]; every
 * address the name resolves to is tried in turn) and run the TLS handshake
 * with config (borrowed until tdm_client_close()), all within timeout_ms (0:
 * TDM_CLIENT_TIMEOUT_MS; name resolution itself is bounded by the resolver's
 * own timeouts). The server must present a certificate of config's CA naming
 * a node. Returns 0, or a negative code with a one-line diag naming address:
 * - TANDEM_EINVALID: address is not HOST:PORT;
 * - -EHOSTUNREACH: the name does not resolve, or no route to it;
 * - -ECONNREFUSED: nothing listens there; -ENETUNREACH, ...: from connect;
 * - -ETIMEDOUT: no connection or no completed handshake within timeout_ms;
 * - -EACCES: we refused the server's certificate (not from the cluster CA, a
 *   client certificate), or it refused ours during the handshake;
 * - -EPROTO: the peer does not speak TLS 1.3, or closed during the handshake.
 * In TLS 1.3 the server checks our certificate after our side is done: its
 * refusal may arrive only with the first answer, as -EACCES from
 * tdm_client_receive() ("peer refused our certificate (...)"). */
int tdm_client_connect_tcp(const char *address, struct tdm_tls_config *config, uint32_t timeout_ms,
                           struct tdm_client *client, struct tdm_diag *diag);

/* tdm_client_connect_tcp() with the credentials in cert_dir (node.key,
 * node.crt, ca.crt, as `tandem ca CADIR --client NAME` writes them), which
 * must be a client certificate: a node's own certificate is refused here
 * (TANDEM_EINVALID), since a node would take its holder for that node. Also
 * returns the codes of tdm_tls_config_init_dir() (-ENOENT: a missing file). */
int tdm_client_connect_cert(const char *address, const char *cert_dir, uint32_t timeout_ms,
                            struct tdm_client *client, struct tdm_diag *diag);

/* Encode msg (a client frame) into a new buffer, *frame (release with
 * tdm_free), of *size bytes. Returns 0, -ENOMEM, or TANDEM_EINVALID with diag
 * when msg does not encode. */
int tdm_client_encode(const struct tdm_proto_msg *msg, uint8_t **frame, size_t *size,
                      struct tdm_diag *diag);

/* Encode and write msg (a client frame). Returns 0, or a negative code with
 * diag (-EPIPE or -ECONNRESET when the node went away; TANDEM_EINVALID when
 * msg does not encode). Blocks until every byte is handed to the kernel. */
int tdm_client_send(struct tdm_client *client, const struct tdm_proto_msg *msg,
                    struct tdm_diag *diag);

/* Write size bytes of already encoded frames (tests use it to send what
 * tdm_client_send() refuses to build). Returns 0 or a negative code. */
int tdm_client_send_bytes(struct tdm_client *client, const uint8_t *data, size_t size,
                          struct tdm_diag *diag);

/* Read the next frame into *msg. With wait false, returns -EAGAIN when no whole
 * frame is there yet. Returns 0, -ECONNRESET when the node closed the
 * connection, TANDEM_ECORRUPT for a frame that does not decode, -EACCES /
 * -EPROTO from TLS (diag names the cause), or -errno. */
int tdm_client_receive(struct tdm_client *client, struct tdm_proto_msg *msg, bool wait,
                       struct tdm_diag *diag);

/* Close the connection (a TLS close_notify first, best effort) and free the
 * buffers. Safe on a client whose connect failed, and twice. */
void tdm_client_close(struct tdm_client *client);

#endif
