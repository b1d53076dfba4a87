/* tools/client.h: the CLI's side of a node's local socket (DIR/tandemd.sock),
 * with plain blocking sockets: the CLI is no event loop (STYLE B1.3 keeps
 * libuv in net/uv*; the frames are net/proto.h's, docs/PROTOCOL.md §7).
 *
 * 1. tdm_client_connect(DIR): 0 when a tandemd answers, 1 when none runs there
 *    (no socket file, or a stale one): the caller then opens DIR itself.
 * 2. tdm_client_send() writes one whole frame; tdm_client_receive() returns
 *    the next frame decoded (blocking, or -EAGAIN at once when asked not to
 *    wait). Decoded slices stay valid until the next receive.
 * 3. tdm_client_close(). */
#ifndef TDM_TOOLS_CLIENT_H
#define TDM_TOOLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/proto.h"

#define TDM_CLIENT_SOCKET_NAME "tandemd.sock"
#define TDM_CLIENT_READ_SIZE   ((size_t)64 * 1024)

struct tdm_client {
    int fd;                         /* Connected socket; -1 when closed. */
    uint8_t *frame_buffer;          /* TDM_PROTO_BUFFER_SIZE bytes, owned. */
    struct tdm_proto_reader reader; /* Over frame_buffer. */
    uint8_t *in;                    /* TDM_CLIENT_READ_SIZE bytes read, owned. */
    size_t in_start;                /* in[in_start, in_end) not yet fed. */
    size_t in_end;
    uint64_t request_id_next; /* The next request's id (from 1). */
};

/* Connect to dir/tandemd.sock. Returns 0 (client ready), 1 when no tandemd runs
 * in dir or this user may not use its socket (use the directory directly), or
 * a negative code with diag (-ENOMEM, ...). */
int tdm_client_connect(const char *dir, struct tdm_client *client, struct tdm_diag *diag);

/* Encode and write msg. Returns 0, or a negative code with diag (-EPIPE when
 * tandemd went away). */
int tdm_client_send(struct tdm_client *client, const struct tdm_proto_msg *msg,
                    struct tdm_diag *diag);

/* Read the next frame into *msg. With wait false, returns -EAGAIN when no whole
 * frame is there yet. Returns 0, -ECONNRESET when tandemd closed the
 * connection, TANDEM_ECORRUPT for a frame that does not decode, or -errno. */
int tdm_client_receive(struct tdm_client *client, struct tdm_proto_msg *msg, bool wait,
                       struct tdm_diag *diag);

void tdm_client_close(struct tdm_client *client);

#endif
