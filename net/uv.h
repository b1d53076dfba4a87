/* net/uv.h: the libuv adapter. Today: the server of a node's local client socket
 * (DIR/tandemd.sock), which serves the client frames of docs/PROTOCOL.md §7 on a
 * standalone node. Replication plugs in here later.
 *
 * This is the only layer that knows libuv (STYLE B1.3). tools/tandemd.c calls
 * tdm_uv_serve(), which owns the loop and the signal handlers; tests and later
 * adapters that own a loop use tdm_uv_server_start() and tdm_uv_server_close().
 *
 * The server does not know JSON: what turns a record into a JSON Lines object
 * and what builds the status document are callbacks of the embedding program
 * (tools/jsonl.c and tools/status_doc.c in tandemd), run on the threadpool. */
#ifndef TDM_NET_UV_H
#define TDM_NET_UV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/error.h"

/* libuv's loop, declared and not included: callers outside net/uv* (tandemd)
 * never see libuv (STYLE B1.3). */
struct uv_loop_s;

#define TDM_UV_CLIENTS_MAX        64         /* Default: connections served at once. */
#define TDM_UV_REQUESTS_MAX       16         /* Default: requests in flight per connection. */
#define TDM_UV_FRAME_SIZE_DEFAULT (8u << 20) /* Default: bytes of one client frame. */

/* Format record (at lsn) as one JSON object without a newline into a
 * tdm_malloc'd string (*out, *size bytes). Returns 0 or -ENOMEM. Runs on a
 * threadpool thread; must be thread-safe. */
typedef int (*tdm_uv_format_cb)(const struct tandem_record *record, uint64_t lsn, char **out,
                                size_t *size);

/* Build the status document (one JSON object, no newline) of the node open as t
 * into a tdm_malloc'd string. Returns 0 or a negative code. Runs on a threadpool
 * thread. data is config->data. */
typedef int (*tdm_uv_status_cb)(void *data, struct tandem *t, char **out, size_t *size);

/* What the server serves. Every pointer is borrowed until the server's close
 * callback has run. */
struct tdm_uv_server_config {
    const char *socket_path; /* DIR/tandemd.sock; < sizeof(sun_path) bytes. */
    struct tandem *t;        /* Open for writing; closed by the caller after close. */
    uint32_t clients_max;    /* 0: TDM_UV_CLIENTS_MAX. */
    uint32_t requests_max;   /* Per client; 0: TDM_UV_REQUESTS_MAX. */
    uint32_t frame_size_max; /* Bytes; 0: TDM_UV_FRAME_SIZE_DEFAULT. */
    tdm_uv_format_cb format; /* Required. */
    tdm_uv_status_cb status; /* Required. */
    void *data;              /* Passed to status. */
};

struct tdm_uv_server;

/* Called once on the loop thread when every handle of the server is closed, its
 * socket file removed and the server freed. */
typedef void (*tdm_uv_server_close_cb)(void *data);

/* Bind config->socket_path (mode 0600; a stale file is removed only if nothing
 * answers a connect() on it), listen, and serve on loop. Returns 0 and *out, or:
 * -EADDRINUSE (a live server answers on the path; diag says so), -ENAMETOOLONG,
 * -ENOMEM, or another negative errno from bind/listen. Loop thread only. */
int tdm_uv_server_start(struct uv_loop_s *loop, const struct tdm_uv_server_config *config,
                        struct tdm_uv_server **out, struct tdm_diag *diag);

/* Stop accepting and reading, let every request in flight finish and its answer
 * be written, close every handle, remove the socket file, free the server and
 * call cb(data). Loop thread only; at most once. */
void tdm_uv_server_close(struct tdm_uv_server *server, tdm_uv_server_close_cb cb, void *data);

/* Run a server on a loop of its own until SIGTERM or SIGINT (uv_signal), then
 * close it cleanly and close the loop. Once its handlers are installed it
 * unblocks SIGTERM and SIGINT in the calling thread: a caller that blocked them
 * before opening the node (and starting the engine's threads, which inherit the
 * mask) loses no signal sent during startup. SIGPIPE is ignored. Logs "listening", "stopping" and
 * "stopped" lines through tdm_tracef. Returns 0 after a clean stop, or the
 * error of tdm_uv_server_start() (diag says why). Blocks the calling thread. */
int tdm_uv_serve(const struct tdm_uv_server_config *config, struct tdm_diag *diag);

#endif
