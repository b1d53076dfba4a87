/* net/client.c: blocking client of a node's client links (net/client.h,
 * docs/PROTOCOL.md §2.1 and §7).
 *
 * Happy path:
 * 1. Local socket: connect(2) to DIR/tandemd.sock (AF_UNIX stream).
 *    TCP: getaddrinfo(HOST, PORT); a non-blocking connect(2) to each address
 *    in turn, poll(2) bounded by the deadline; then the TLS handshake
 *    (net/tls.h, TDM_TLS_DIAL with no expected name: any node of the cluster
 *    CA, never a client) over the socket, each step bounded by the same
 *    deadline. TCP_NODELAY (frames are written whole) and keepalive are set.
 * 2. Send: encode the frame; with TLS, encrypt it into the session's outbox
 *    and send what the outbox holds; send(2) with poll(2) until every byte is
 *    handed to the kernel.
 * 3. Receive: feed plaintext to the frame reader of net/proto.h, which hands
 *    out one frame at a time. Plaintext comes from recv(2) (local) or from
 *    tdm_tls_read() over ciphertext from recv(2) (TCP).
 *
 * Failure modes: every failure is a negative code and a one-line diag naming
 * the peer ("connect 10.0.0.5:7400: connection refused", "TLS with
 * 10.0.0.5:7400: peer certificate not issued by the cluster CA", "node2 at
 * 10.0.0.5:7400 closed the connection"). Failures of TLS are sticky in the
 * session; a broken stream is not retried: the caller closes and reconnects.
 * For a directory, tdm_client_connect() turns "no tandemd there" (no socket
 * file, a stale one, a socket this user may not use) into 1, so the CLI
 * opens the directory itself.
 *
 * Close: a close_notify is sent if it fits the socket buffer right now (no
 * wait), the socket is closed, the session, owned credentials and buffers are
 * released. */
#include "net/client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "net/uv.h"

#define CLIENT_FOREVER   (-1) /* A deadline that never comes. */
#define CLIENT_PORT_SIZE 6    /* "65535" and a NUL. */

tdm_static_assert(TDM_CLIENT_FRAME_SIZE_MAX == TDM_UV_FRAME_SIZE_DEFAULT);
tdm_static_assert(TDM_CLIENT_FRAME_SIZE_MAX <= TDM_PROTO_FRAME_SIZE_MAX);
tdm_static_assert(TDM_CLIENT_READ_SIZE <= TDM_TLS_INBOX_SIZE_MAX);

/* ---- Time and waiting ------------------------------------------------------------ */

static int64_t client_now_ms(void)
{
    struct timespec now;
    int rv = clock_gettime(CLOCK_MONOTONIC, &now);
    tdm_assert(rv == 0);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* poll(2)'s timeout until deadline_ms: -1 for CLIENT_FOREVER, 0 once passed. */
static int client_poll_timeout(int64_t deadline_ms)
{
    if (deadline_ms == CLIENT_FOREVER) {
        return -1;
    }
    int64_t left = deadline_ms - client_now_ms();
    if (left <= 0) {
        return 0;
    }
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Wait until fd is ready for events (or has an error to report). Returns 0,
 * -ETIMEDOUT at the deadline, or -errno. */
static int client_wait(int fd, short events, int64_t deadline_ms)
{
    tdm_assert(fd >= 0);
    tdm_assert(events != 0);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, client_poll_timeout(deadline_ms));
        if (n > 0) {
            return 0; /* POLLERR and POLLHUP too: the next call reports them. */
        }
        if (n == 0) {
            return -ETIMEDOUT;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

/* ---- Setup and teardown ---------------------------------------------------------- */

static void client_reset(struct tdm_client *client)
{
    memset(client, 0, sizeof(*client));
    client->fd = -1;
}

/* Allocate the buffers; the TLS ones only with tls. Returns 0 or -ENOMEM. */
static int client_buffers(struct tdm_client *client, bool tls)
{
    tdm_assert(client->frame_buffer == NULL);
    client->frame_buffer = tdm_malloc(TDM_PROTO_BUFFER_SIZE);
    client->in = tdm_malloc(TDM_CLIENT_READ_SIZE);
    if (tls) {
        client->wire = tdm_malloc(TDM_CLIENT_READ_SIZE);
        client->out = tdm_malloc(TDM_CLIENT_READ_SIZE);
    }
    if (client->frame_buffer == NULL || client->in == NULL ||
        (tls && (client->wire == NULL || client->out == NULL))) {
        return -ENOMEM;
    }
    tdm_proto_reader_init(&client->reader, client->frame_buffer, TDM_PROTO_BUFFER_SIZE);
    client->request_id_next = 1;
    return 0;
}

static int client_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return -errno;
    }
    return 0;
}

/* ---- Sending ------------------------------------------------------------------- */

/* Hand data[0..size) to the kernel, waiting for room until deadline_ms. */
static int client_send_all(struct tdm_client *client, const uint8_t *data, size_t size,
                           int64_t deadline_ms, struct tdm_diag *diag)
{
    tdm_assert(client->fd >= 0);
    size_t done = 0;
    while (done < size) {
        ssize_t n = send(client->fd, data + done, size - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        int rv = n < 0 ? -errno : -EPIPE;
        if (rv == -EINTR) {
            continue;
        }
        if (rv == -EAGAIN || rv == -EWOULDBLOCK) {
            rv = client_wait(client->fd, POLLOUT, deadline_ms);
            if (rv == 0) {
                continue;
            }
        }
        tdm_diag_printf(diag, "send to %s: %s", client->label, strerror(-rv));
        return rv;
    }
    tdm_assert(done == size);
    return 0;
}

/* Send every byte the TLS session wants to send. */
static int client_tls_flush(struct tdm_client *client, int64_t deadline_ms, struct tdm_diag *diag)
{
    tdm_assert(client->tls_on);
    while (tdm_tls_pending(&client->tls) > 0) {
        size_t n = tdm_tls_take(&client->tls, client->out, TDM_CLIENT_READ_SIZE);
        tdm_assert(n > 0);
        int rv = client_send_all(client, client->out, n, deadline_ms, diag);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int tdm_client_send_bytes(struct tdm_client *client, const uint8_t *data, size_t size,
                          struct tdm_diag *diag)
{
    tdm_assert(client->fd >= 0);
    tdm_assert(data != NULL || size == 0);
    if (!client->tls_on) {
        return client_send_all(client, data, size, CLIENT_FOREVER, diag);
    }
    int rv = tdm_tls_write(&client->tls, data, size, diag);
    if (rv != 0) {
        tdm_diag_wrapf(diag, "TLS with %s", client->label);
        return rv;
    }
    return client_tls_flush(client, CLIENT_FOREVER, diag);
}

int tdm_client_encode(const struct tdm_proto_msg *msg, uint8_t **frame, size_t *size,
                      struct tdm_diag *diag)
{
    tdm_assert(tdm_proto_type_is_client(msg->type));
    size_t need = tdm_proto_encoded_size(msg);
    uint8_t *data = tdm_malloc(need);
    if (data == NULL) {
        return -ENOMEM;
    }
    size_t written = 0;
    int rv = tdm_proto_encode(msg, data, need, &written, diag);
    if (rv != 0) {
        tdm_free(data);
        return rv;
    }
    tdm_assert(written == need);
    *frame = data;
    *size = written;
    return 0;
}

int tdm_client_send(struct tdm_client *client, const struct tdm_proto_msg *msg,
                    struct tdm_diag *diag)
{
    tdm_assert(client->fd >= 0);
    uint8_t *data = NULL;
    size_t size = 0;
    int rv = tdm_client_encode(msg, &data, &size, diag);
    if (rv == 0) {
        rv = tdm_client_send_bytes(client, data, size, diag);
        tdm_free(data);
    }
    return rv;
}

/* ---- Receiving ------------------------------------------------------------------- */

/* recv(2) into buffer. Returns 0 and *got (0: end of stream), -EAGAIN when
 * wait is false and nothing is there, -ETIMEDOUT at deadline_ms, or -errno. */
static int client_recv(struct tdm_client *client, uint8_t *buffer, bool wait, int64_t deadline_ms,
                       size_t *got, struct tdm_diag *diag)
{
    tdm_assert(client->fd >= 0);
    for (;;) {
        ssize_t n = recv(client->fd, buffer, TDM_CLIENT_READ_SIZE, 0);
        if (n >= 0) {
            *got = (size_t)n;
            return 0;
        }
        int rv = -errno;
        if (rv == -EINTR) {
            continue;
        }
        if (rv == -EAGAIN || rv == -EWOULDBLOCK) {
            if (!wait) {
                return -EAGAIN;
            }
            rv = client_wait(client->fd, POLLIN, deadline_ms);
            if (rv == 0) {
                continue;
            }
            if (rv == -ETIMEDOUT) {
                return rv; /* The caller says what it waited for. */
            }
        }
        tdm_diag_printf(diag, "read from %s: %s", client->label, strerror(-rv));
        return rv;
    }
}

/* Give TLS the ciphertext received and not yet fed. */
static int client_tls_feed(struct tdm_client *client, struct tdm_diag *diag)
{
    tdm_assert(client->wire_start < client->wire_end);
    size_t consumed = 0;
    int rv = tdm_tls_feed(&client->tls, client->wire + client->wire_start,
                          client->wire_end - client->wire_start, &consumed);
    if (rv == 0 && consumed == 0) {
        rv = -EPROTO; /* Reads drain the inbox: a full one means TLS stopped reading. */
        tdm_diag_printf(diag, "TLS with %s: receive buffer full", client->label);
    } else if (rv != 0) {
        tdm_diag_printf(diag, "TLS with %s: %s", client->label,
                        client->tls.error_message[0] != '\0' ? client->tls.error_message
                                                             : tandem_strerror(rv));
    }
    client->wire_start += consumed;
    return rv;
}

/* Receive ciphertext into wire (which must be used up). Returns 0, -EAGAIN,
 * or an error; end of stream is *eof. */
static int client_wire_fill(struct tdm_client *client, bool wait, int64_t deadline_ms, bool *eof,
                            struct tdm_diag *diag)
{
    tdm_assert(client->wire_start == client->wire_end);
    size_t got = 0;
    int rv = client_recv(client, client->wire, wait, deadline_ms, &got, diag);
    if (rv != 0) {
        return rv;
    }
    *eof = got == 0;
    client->wire_start = 0;
    client->wire_end = got;
    return 0;
}

/* The peer's end of stream reached TLS: clean after a close_notify, else a
 * truncated stream. Either way the connection is gone. */
static int client_tls_closed(struct tdm_client *client, struct tdm_diag *diag)
{
    struct tdm_diag why = {{0}};
    int rv = tdm_tls_eof(&client->tls, &why);
    if (rv == 0) {
        tdm_diag_printf(diag, "%s closed the connection", client->label);
    } else {
        tdm_diag_printf(diag, "%s closed the connection (%s)", client->label, why.message);
    }
    return -ECONNRESET;
}

/* Decrypt the next plaintext into client->in. */
static int client_tls_fill(struct tdm_client *client, bool wait, struct tdm_diag *diag)
{
    for (;;) {
        size_t n = 0;
        int rv = tdm_tls_read(&client->tls, client->in, TDM_CLIENT_READ_SIZE, &n, diag);
        /* An alert or a key update answer, if TLS has one: small, sent now. */
        (void)client_tls_flush(client, CLIENT_FOREVER, NULL);
        if (rv == 0) {
            tdm_assert(n > 0);
            client->in_start = 0;
            client->in_end = n;
            return 0;
        }
        if (rv == -EPIPE) {
            tdm_diag_printf(diag, "%s closed the connection", client->label);
            return -ECONNRESET;
        }
        if (rv != -EAGAIN) {
            tdm_diag_wrapf(diag, "TLS with %s", client->label);
            return rv;
        }
        if (client->wire_start == client->wire_end) {
            bool eof = false;
            rv = client_wire_fill(client, wait, CLIENT_FOREVER, &eof, diag);
            if (rv != 0) {
                return rv;
            }
            if (eof) {
                return client_tls_closed(client, diag);
            }
        }
        rv = client_tls_feed(client, diag);
        if (rv != 0) {
            return rv;
        }
    }
}

/* Read more plaintext into client->in. Returns 0, -EAGAIN (wait false and
 * nothing there), -ECONNRESET at end of stream, or another negative code. */
static int client_fill(struct tdm_client *client, bool wait, struct tdm_diag *diag)
{
    tdm_assert(client->in_start == client->in_end);
    if (client->tls_on) {
        return client_tls_fill(client, wait, diag);
    }
    size_t got = 0;
    int rv = client_recv(client, client->in, wait, CLIENT_FOREVER, &got, diag);
    if (rv != 0) {
        return rv;
    }
    if (got == 0) {
        tdm_diag_printf(diag, "%s closed the connection", client->label);
        return -ECONNRESET;
    }
    client->in_start = 0;
    client->in_end = got;
    return 0;
}

int tdm_client_receive(struct tdm_client *client, struct tdm_proto_msg *msg, bool wait,
                       struct tdm_diag *diag)
{
    tdm_assert(client->fd >= 0);
    tdm_assert(msg != NULL);
    for (;;) {
        struct tdm_proto_frame frame;
        int rv = tdm_proto_reader_next(&client->reader, &frame, diag);
        if (rv == 0) {
            return tdm_proto_decode(&frame, msg, diag);
        }
        if (rv != -EAGAIN) {
            return rv;
        }
        if (client->in_start == client->in_end) {
            rv = client_fill(client, wait, diag);
            if (rv != 0) {
                return rv;
            }
        }
        size_t consumed = 0;
        rv = tdm_proto_reader_feed(&client->reader, client->in + client->in_start,
                                   client->in_end - client->in_start, &consumed, diag);
        if (rv != 0) {
            return rv;
        }
        client->in_start += consumed;
    }
}

/* ---- The local socket -------------------------------------------------------------- */

int tdm_client_connect_local(const char *dir, struct tdm_client *client, struct tdm_diag *diag)
{
    tdm_assert(dir != NULL);
    client_reset(client);
    snprintf(client->label, sizeof(client->label), "tandemd");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", dir, TDM_CLIENT_SOCKET_NAME);
    if (n < 0 || (size_t)n >= sizeof(addr.sun_path)) {
        tdm_diag_printf(diag, "%s/%s: path too long for a socket", dir, TDM_CLIENT_SOCKET_NAME);
        return -ENAMETOOLONG;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int rv = -errno;
        tdm_diag_printf(diag, "socket: %s", strerror(-rv));
        return rv;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int rv = -errno;
        close(fd);
        tdm_diag_printf(diag, "connect %s: %s%s", addr.sun_path, strerror(-rv),
                        rv == -ENOENT || rv == -ECONNREFUSED ? " (no tandemd runs there)" : "");
        return rv;
    }
    client->fd = fd;
    int rv = client_nonblocking(fd);
    if (rv == 0) {
        rv = client_buffers(client, false);
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "connect %s: %s", addr.sun_path, strerror(-rv));
        tdm_client_close(client);
    }
    return rv;
}

int tdm_client_connect(const char *dir, struct tdm_client *client, struct tdm_diag *diag)
{
    struct tdm_diag local = {{0}};
    int rv = tdm_client_connect_local(dir, client, &local);
    switch (rv) {
    case 0:
        return 0;
    case -ENOENT:       /* No socket file: no tandemd. */
    case -ECONNREFUSED: /* A stale socket file. */
    case -ENOTDIR:
    case -ENAMETOOLONG: /* A path this long cannot be a socket: use the directory. */
    case -EACCES:
    case -EPERM:
        /* The socket is the owner's (0600). Another user with read access to
         * the directory may still query it directly (DESIGN "One process owns
         * a node's data directory"); a write then meets the lock, whose error
         * names tandemd. */
        return 1;
    default:
        tdm_diag_printf(diag, "%s", local.message);
        return rv;
    }
}

/* ---- TCP and TLS ------------------------------------------------------------------ */

/* Split address into host and port (a number 1..65535). Returns 0, or
 * TANDEM_EINVALID with diag. */
static int client_address_split(const char *address, char *host, size_t host_size, char *port,
                                struct tdm_diag *diag)
{
    size_t size = strlen(address);
    const char *colon = strrchr(address, ':');
    if (size == 0 || size > TDM_CLIENT_ADDRESS_SIZE_MAX || colon == NULL) {
        tdm_diag_printf(diag, "address '%s': not HOST:PORT", address);
        return TANDEM_EINVALID;
    }
    const char *host_begin = address;
    size_t host_length = (size_t)(colon - address);
    if (address[0] == '[') {
        if (host_length < 3 || colon[-1] != ']') {
            tdm_diag_printf(diag, "address '%s': not [IPv6]:PORT", address);
            return TANDEM_EINVALID;
        }
        host_begin++;
        host_length -= 2;
    } else if (memchr(address, ':', host_length) != NULL) {
        tdm_diag_printf(diag, "address '%s': an IPv6 host goes in brackets: [::1]:7400", address);
        return TANDEM_EINVALID;
    }
    size_t digits = strlen(colon + 1);
    unsigned long value = 0;
    if (digits >= 1 && digits <= 5 && strspn(colon + 1, "0123456789") == digits) {
        value = strtoul(colon + 1, NULL, 10);
    }
    if (host_length == 0 || host_length >= host_size || value == 0 || value > 65535) {
        tdm_diag_printf(diag, "address '%s': not HOST:PORT (port 1-65535)", address);
        return TANDEM_EINVALID;
    }
    memcpy(host, host_begin, host_length);
    host[host_length] = '\0';
    snprintf(port, CLIENT_PORT_SIZE, "%lu", value);
    return 0;
}

int tdm_client_address_check(const char *address, struct tdm_diag *diag)
{
    tdm_assert(address != NULL);
    char host[TDM_CLIENT_ADDRESS_SIZE_MAX + 1];
    char port[CLIENT_PORT_SIZE];
    return client_address_split(address, host, sizeof(host), port, diag);
}

bool tdm_client_address_is_tcp(const char *addr)
{
    tdm_assert(addr != NULL);
    struct stat st;
    if (addr[0] == '\0' || strchr(addr, '/') != NULL || stat(addr, &st) == 0) {
        return false;
    }
    return tdm_client_address_check(addr, NULL) == 0;
}

/* Connect one socket to ai before deadline_ms. Returns 0 and *out, or -errno. */
static int client_tcp_open(const struct addrinfo *ai, int64_t deadline_ms, int *out)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
        return -errno;
    }
    int rv = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        rv = errno == EINPROGRESS ? client_wait(fd, POLLOUT, deadline_ms) : -errno;
        if (rv == 0) {
            int err = 0;
            socklen_t length = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) != 0) {
                err = errno;
            }
            rv = -err;
        }
    }
    if (rv != 0) {
        close(fd);
        return rv;
    }
    *out = fd;
    return 0;
}

/* Best effort: a refused option only costs latency or slower failure detection. */
static void client_tcp_options(int fd)
{
    int on = 1;
    int idle = TDM_CLIENT_KEEPALIVE_IDLE_S;
    int interval = TDM_CLIENT_KEEPALIVE_INTERVAL_S;
    int count = TDM_CLIENT_KEEPALIVE_COUNT;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

/* Resolve host and connect to the first of its addresses that answers. */
static int client_tcp_connect(struct tdm_client *client, const char *host, const char *port,
                              int64_t deadline_ms, uint32_t timeout_ms, struct tdm_diag *diag)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    struct addrinfo *list = NULL;
    int gai = getaddrinfo(host, port, &hints, &list);
    if (gai != 0) {
        tdm_diag_printf(diag, "resolve %s: %s", host,
                        gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        return -EHOSTUNREACH;
    }
    int rv = -EHOSTUNREACH;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        rv = client_tcp_open(ai, deadline_ms, &client->fd);
        if (rv == 0 || rv == -ETIMEDOUT) {
            break;
        }
    }
    freeaddrinfo(list);
    if (rv == -ETIMEDOUT) {
        tdm_diag_printf(diag, "connect %s: no answer within %u ms", client->address, timeout_ms);
    } else if (rv == -ECONNREFUSED) {
        tdm_diag_printf(diag, "connect %s: connection refused (no node listens there)",
                        client->address);
    } else if (rv != 0) {
        tdm_diag_printf(diag, "connect %s: %s", client->address, strerror(-rv));
    } else {
        client_tcp_options(client->fd);
    }
    return rv;
}

/* Run the TLS handshake until it completes, fails, or deadline_ms. */
static int client_handshake(struct tdm_client *client, int64_t deadline_ms, uint32_t timeout_ms,
                            struct tdm_diag *diag)
{
    for (;;) {
        struct tdm_diag why = {{0}};
        int rv = tdm_tls_handshake(&client->tls, &why);
        /* Our next flight, or the alert that tells the server why we refused. */
        int sent = client_tls_flush(client, deadline_ms, rv == 0 || rv == -EAGAIN ? diag : NULL);
        if (rv != 0 && rv != -EAGAIN) {
            tdm_diag_printf(diag, "TLS with %s: %s", client->address, why.message);
            return rv;
        }
        if (sent != 0 || rv == 0) {
            return sent;
        }
        if (client->wire_start == client->wire_end) {
            bool eof = false;
            rv = client_wire_fill(client, true, deadline_ms, &eof, diag);
            if (rv == -ETIMEDOUT) {
                tdm_diag_printf(diag, "TLS with %s: no completed handshake within %u ms",
                                client->address, timeout_ms);
            }
            if (rv != 0) {
                return rv;
            }
            if (eof) {
                (void)tdm_tls_eof(&client->tls, &why);
                tdm_diag_printf(diag, "TLS with %s: %s", client->address, why.message);
                return -EPROTO;
            }
        }
        rv = client_tls_feed(client, diag);
        if (rv != 0) {
            return rv;
        }
    }
}

/* tdm_client_connect_tcp() on a reset client (credentials may be loaded). */
static int client_connect_tcp(const char *address, struct tdm_tls_config *config,
                              uint32_t timeout_ms, struct tdm_client *client, struct tdm_diag *diag)
{
    tdm_assert(client->fd == -1);
    tdm_assert(config != NULL);
    timeout_ms = timeout_ms != 0 ? timeout_ms : TDM_CLIENT_TIMEOUT_MS;
    int64_t deadline_ms = client_now_ms() + timeout_ms;
    char host[TDM_CLIENT_ADDRESS_SIZE_MAX + 1];
    char port[CLIENT_PORT_SIZE];
    int rv = client_address_split(address, host, sizeof(host), port, diag);
    if (rv != 0) {
        return rv;
    }
    snprintf(client->address, sizeof(client->address), "%s", address);
    snprintf(client->label, sizeof(client->label), "node at %s", address);
    rv = client_buffers(client, true);
    if (rv == 0) {
        rv = client_tcp_connect(client, host, port, deadline_ms, timeout_ms, diag);
    }
    if (rv == 0) {
        /* Any node of the cluster CA, never a client (net/tls.h, expected NULL). */
        struct tdm_tls_peers peers = {.expected = NULL};
        rv = tdm_tls_session_init(&client->tls, config, TDM_TLS_DIAL, &peers, diag);
        client->tls_on = rv == 0;
    }
    if (rv == 0) {
        rv = client_handshake(client, deadline_ms, timeout_ms, diag);
    }
    if (rv != 0) {
        tdm_assert(rv < 0);
        return rv;
    }
    tdm_assert(tdm_tls_established(&client->tls));
    snprintf(client->label, sizeof(client->label), "%s at %s", tdm_tls_peer_name(&client->tls),
             address);
    return 0;
}

int tdm_client_connect_tcp(const char *address, struct tdm_tls_config *config, uint32_t timeout_ms,
                           struct tdm_client *client, struct tdm_diag *diag)
{
    tdm_assert(address != NULL);
    client_reset(client);
    int rv = client_connect_tcp(address, config, timeout_ms, client, diag);
    if (rv != 0) {
        tdm_client_close(client);
    }
    return rv;
}

int tdm_client_connect_cert(const char *address, const char *cert_dir, uint32_t timeout_ms,
                            struct tdm_client *client, struct tdm_diag *diag)
{
    tdm_assert(address != NULL);
    tdm_assert(cert_dir != NULL);
    client_reset(client);
    int rv = tdm_tls_config_init_dir(&client->tls_config, cert_dir, diag);
    if (rv != 0) {
        tdm_diag_wrapf(diag, "client certificate");
        return rv;
    }
    client->tls_config_owned = true;
    const char *name = client->tls_config.name;
    if (strncmp(name, TDM_TLS_CLIENT_PREFIX, strlen(TDM_TLS_CLIENT_PREFIX)) != 0) {
        tdm_diag_printf(diag,
                        "%s/%s is the certificate of node %s, not of a client: issue one "
                        "with 'tandem ca CADIR --client NAME'",
                        cert_dir, TDM_TLS_CERT_FILE, name);
        rv = TANDEM_EINVALID;
    } else {
        rv = client_connect_tcp(address, &client->tls_config, timeout_ms, client, diag);
    }
    if (rv != 0) {
        tdm_client_close(client);
    }
    return rv;
}

void tdm_client_close(struct tdm_client *client)
{
    if (client->tls_on) {
        if (client->fd >= 0 && tdm_tls_established(&client->tls) &&
            tdm_tls_close_notify(&client->tls) == 0) {
            /* No wait: a node that does not read gets a truncated stream. */
            (void)client_tls_flush(client, client_now_ms(), NULL);
        }
        tdm_tls_session_close(&client->tls);
        client->tls_on = false;
    }
    if (client->tls_config_owned) {
        tdm_tls_config_close(&client->tls_config);
        client->tls_config_owned = false;
    }
    if (client->fd >= 0) {
        close(client->fd);
        client->fd = -1;
    }
    tdm_free(client->frame_buffer);
    tdm_free(client->in);
    tdm_free(client->wire);
    tdm_free(client->out);
    client->frame_buffer = NULL;
    client->in = NULL;
    client->wire = NULL;
    client->out = NULL;
}
