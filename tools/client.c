/* tools/client.c: blocking client of DIR/tandemd.sock (tools/client.h).
 *
 * Happy path: connect (AF_UNIX stream), send whole frames with write(2) in a
 * loop, read with read(2) into a small buffer and feed the frame reader of
 * net/proto.h, which hands out one frame at a time.
 * Failure modes: no socket file, nobody listening, or a socket this user may
 * not use is "no tandemd" (1), so the CLI opens the directory itself; a connection closed by
 * tandemd is -ECONNRESET; a frame that does not decode is TANDEM_ECORRUPT. Close:
 * tdm_client_close() closes the socket and frees the buffers. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"

int tdm_client_connect(const char *dir, struct tdm_client *client, struct tdm_diag *diag)
{
    tdm_assert(dir != NULL);
    memset(client, 0, sizeof(*client));
    client->fd = -1;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", dir, TDM_CLIENT_SOCKET_NAME);
    if (n < 0 || (size_t)n >= sizeof(addr.sun_path)) {
        return 1; /* A path this long cannot be a socket: use the directory. */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tdm_diag_printf(diag, "socket: %s", strerror(errno));
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int err = errno;
        close(fd);
        if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
            return 1;
        }
        if (err == EACCES || err == EPERM) {
            /* The socket is the owner's (0600). Another user with read access
             * to the directory may still query it directly (DESIGN "One
             * process owns a node's data directory"); a write then meets the
             * lock, whose error names tandemd. */
            return 1;
        }
        tdm_diag_printf(diag, "connect %s: %s", addr.sun_path, strerror(err));
        return -err;
    }
    client->fd = fd;
    client->frame_buffer = tdm_malloc(TDM_PROTO_BUFFER_SIZE);
    client->in = tdm_malloc(TDM_CLIENT_READ_SIZE);
    if (client->frame_buffer == NULL || client->in == NULL) {
        tdm_client_close(client);
        return -ENOMEM;
    }
    tdm_proto_reader_init(&client->reader, client->frame_buffer, TDM_PROTO_BUFFER_SIZE);
    client->request_id_next = 1;
    return 0;
}

int tdm_client_send(struct tdm_client *client, const struct tdm_proto_msg *msg,
                    struct tdm_diag *diag)
{
    tdm_assert(client->fd >= 0);
    tdm_assert(tdm_proto_type_is_client(msg->type));
    size_t size = tdm_proto_encoded_size(msg);
    uint8_t *data = tdm_malloc(size);
    if (data == NULL) {
        return -ENOMEM;
    }
    size_t written = 0;
    int rv = tdm_proto_encode(msg, data, size, &written, diag);
    for (size_t done = 0; rv == 0 && done < written;) {
        ssize_t n = send(client->fd, data + done, written - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            rv = -errno;
            tdm_diag_printf(diag, "send to tandemd: %s", strerror(errno));
        }
    }
    tdm_free(data);
    return rv;
}

/* Read more bytes into client->in. Returns 0, -EAGAIN (wait false and nothing
 * there), -ECONNRESET at end of stream, or -errno. */
static int client_read(struct tdm_client *client, bool wait, struct tdm_diag *diag)
{
    tdm_assert(client->in_start == client->in_end);
    for (;;) {
        ssize_t n = recv(client->fd, client->in, TDM_CLIENT_READ_SIZE, wait ? 0 : MSG_DONTWAIT);
        if (n > 0) {
            client->in_start = 0;
            client->in_end = (size_t)n;
            return 0;
        }
        if (n == 0) {
            tdm_diag_printf(diag, "tandemd closed the connection");
            return -ECONNRESET;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return -EAGAIN;
        }
        if (errno != EINTR) {
            tdm_diag_printf(diag, "read from tandemd: %s", strerror(errno));
            return -errno;
        }
    }
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
            rv = client_read(client, wait, diag);
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

void tdm_client_close(struct tdm_client *client)
{
    if (client->fd >= 0) {
        close(client->fd);
        client->fd = -1;
    }
    tdm_free(client->frame_buffer);
    tdm_free(client->in);
    client->frame_buffer = NULL;
    client->in = NULL;
}
