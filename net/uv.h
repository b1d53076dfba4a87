/* net/uv.h: the libuv adapter. The server of a node's client frames
 * (docs/PROTOCOL.md §7): on its local socket (DIR/tandemd.sock), and on the
 * client links that the node's TLS listener authenticates and hands over
 * (tdm_uv_server_adopt, §7.4).
 *
 * This is the only layer that knows libuv (STYLE B1.3). tools/server.c (the
 * public tandem_server_* API, which tandemd runs) calls tdm_uv_serve(), which
 * owns the loop, on a thread of its own, stopped through a struct
 * tdm_uv_serve_control; without one, tdm_uv_serve() stops on SIGTERM and
 * SIGINT. Tests and later adapters that own a loop use tdm_uv_server_start()
 * and tdm_uv_server_close().
 *
 * The server does not know JSON: what turns a record into a JSON Lines object
 * and what builds the status document are callbacks of the embedding program
 * (tools/jsonl.c and tools/status_doc.c in tandemd), run on the threadpool. */
#ifndef TDM_NET_UV_H
#define TDM_NET_UV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/error.h"
#include "net/uv_repair.h"
#include "net/uv_scrub.h"

/* libuv's loop, declared and not included: callers outside net/uv* (tandemd)
 * never see libuv (STYLE B1.3). */
struct uv_loop_s;
struct tdm_uv_server;
/* One authenticated TLS link (net/uv_link.h), declared and not included. */
struct tdm_uv_link;

#define TDM_UV_CLIENTS_MAX        256        /* Default: connections served at once. */
#define TDM_UV_REQUESTS_MAX       128        /* Default: requests in flight per connection. */
#define TDM_UV_FRAME_SIZE_DEFAULT (8u << 20) /* Default: bytes of one client frame. */

/* Format record (at lsn) as one JSON object without a newline into a
 * tdm_malloc'd string (*out, *size bytes). Returns 0 or -ENOMEM. Runs on a
 * threadpool thread; must be thread-safe. */
typedef int (*tdm_uv_format_cb)(const struct tandem_record *record, uint64_t lsn, char **out,
                                size_t *size);

/* Build the status document (one JSON object, no newline) of the node open as t
 * into a tdm_malloc'd string. Returns 0 or a negative code. Runs on a threadpool
 * thread. data is config->data. */
typedef int (*tdm_uv_status_cb)(void *data, struct tandem *t, const void *snapshot, char **out,
                                size_t *size);

/* A replicated node's write path (net/uv_node): the outcome of one submitted
 * append, on the loop thread, exactly once: status 0 and lsn_first once the
 * records are acknowledged, else the code and a message naming the cause. */
typedef void (*tdm_uv_submit_done_cb)(void *done_data, int status, uint64_t lsn_first,
                                      const char *message);

/* Submit count records (borrowed during the call only). Returns 0, after which
 * done runs later (never from this call), or a negative code with diag (then
 * done never runs). Loop thread. data is config->data. */
typedef int (*tdm_uv_submit_cb)(void *data, const struct tandem_record *records, size_t count,
                                tdm_uv_submit_done_cb done, void *done_data, struct tdm_diag *diag);

/* A SWITCHOVER or FAILOVER's answer (PROTOCOL.md §7.5), on the loop thread,
 * exactly once: status 0 and text, a JSON object (NUL-terminated, borrowed
 * for the call) saying what happened; or a negative code and text a one-line
 * message. */
typedef void (*tdm_uv_command_done_cb)(void *done_data, int status, const char *text);

/* Run an operator command: failover false: a switchover to target ("" for the
 * next of the rotation); failover true: promote target (this node) with flags
 * TDM_PROTO_FAILOVER_*. Returns 0, after which done runs later (never from
 * this call), or a negative code with diag (then done never runs). Loop
 * thread. data is config->data. */
typedef int (*tdm_uv_command_cb)(void *data, bool failover, const char *target, uint32_t flags,
                                 tdm_uv_command_done_cb done, void *done_data,
                                 struct tdm_diag *diag);

/* Add one line of an inspection answer (text: size bytes, no newline; borrowed
 * for the call). Returns 0, or a negative code (-E2BIG: the answer is over the
 * server's bound; -ENOMEM) that the inspect callback must return. */
typedef int (*tdm_uv_line_cb)(void *line_data, const char *text, size_t size);

/* Answer HISTORY or QUARANTINE (type, with its flags: PROTOCOL.md §7.6) by
 * reading the node directory: call line for each line of the answer (one JSON
 * document, or JSON Lines). Returns 0, or a negative code with diag (sent to
 * the client as the answer's error). Runs on a threadpool thread. data is
 * config->inspect_data. */
typedef int (*tdm_uv_inspect_cb)(void *data, uint16_t type, uint8_t flags, tdm_uv_line_cb line,
                                 void *line_data, struct tdm_diag *diag);

/* Copy what the status callback needs of loop-thread state (a replica's view
 * of the cluster) into snapshot, config->snapshot_size bytes. Loop thread. */
typedef void (*tdm_uv_snapshot_cb)(void *data, void *snapshot);

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
    void *data;              /* Passed to status, submit and snapshot. */
    /* NULL: appends go to tandem_append_async() (a standalone node). Else every
     * append is submitted through it (a replicated node). */
    tdm_uv_submit_cb submit;
    /* NULL: status gets snapshot NULL. Else run before each status request. */
    tdm_uv_snapshot_cb snapshot;
    size_t snapshot_size;
    /* NULL: SWITCHOVER and FAILOVER are answered TANDEM_EINVALID (a standalone
     * node). Else they are handed to it. */
    tdm_uv_command_cb command;
    /* NULL: HISTORY and QUARANTINE are answered TANDEM_EINVALID. Else run on
     * the threadpool with inspect_data (not data: it reads files only). */
    tdm_uv_inspect_cb inspect;
    void *inspect_data;
};

/* What tdm_uv_serve() runs beside the server on its loop (a replicated node's
 * links), all on the loop thread. Any may be NULL. */
struct tdm_uv_serve_hooks {
    /* After the server started: start the rest. A non-zero return closes the
     * server and makes tdm_uv_serve() return it (diag says why). */
    int (*start)(void *data, struct uv_loop_s *loop, struct tdm_uv_server *server,
                 struct tdm_diag *diag);
    /* After SIGTERM or SIGINT, once the server has closed (every request in
     * flight answered): close the rest. The loop ends when every handle is
     * closed. */
    void (*stop)(void *data);
    void *data;
};

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
 * be written, close every handle (adopted links included, waiting for their
 * on_close), remove the socket file, free the server and call cb(data). Loop
 * thread only; at most once. */
void tdm_uv_server_close(struct tdm_uv_server *server, tdm_uv_server_close_cb cb, void *data);

/* Serve the client frames of docs/PROTOCOL.md §7 on link, an authenticated TLS
 * link from the node's listener (same port as its peers, PROTOCOL.md §7.4),
 * exactly as on the local socket: same requests, answers, limits
 * (clients_max counts both kinds; requests_max per connection) and traces.
 * Frames larger than the listener's frame_size_max close the link there.
 *
 * The rule: only a peer whose certificate names a client ("client:<name>",
 * tdm_uv_link_peer_name()) gets client service. A node certificate is refused
 * here even when the listener let it in: its holder is that node, and belongs
 * on a replication link.
 *
 * Call sequence (net/uv_node.c, net/uv_daemon.c): a listener with clients true;
 * its on_accept(status 0) with a peer name starting "client:" calls
 * tdm_uv_server_adopt(server, link, &diag) at once, from the callback, before
 * any frame of the link is delivered. On 0 the server owns the link: it
 * replaces the link's callbacks and data (tdm_uv_link_set_callbacks), and the
 * caller receives no callback of it again, not even on_close (so a caller
 * that counts its links counts this one as gone). On failure nothing changed:
 * the link is still the caller's, which closes it (tdm_uv_link_close) and
 * sees its on_close. Returns 0, or with diag:
 * - TANDEM_EINVALID: the peer is not a client (the rule above);
 * - TANDEM_EBUSY: clients_max connections are open;
 * - TANDEM_ECANCELED: tdm_uv_server_close() was called;
 * - -ENOMEM.
 * Loop thread only; link and server on the same loop. */
int tdm_uv_server_adopt(struct tdm_uv_server *server, struct tdm_uv_link *link,
                        struct tdm_diag *diag);

/* How a caller that runs tdm_uv_serve() on a thread of its own (an application
 * that embeds the node: tools/server.c) stops it from another thread, instead
 * of by a signal. Opaque; thread-safe where stated. */
struct tdm_uv_serve_control;

/* Runs once, on the loop thread, when tdm_uv_serve() serves: its socket
 * listens and hooks->start (if any) has succeeded. Never when the start
 * failed. data is the one given to tdm_uv_serve_control_new(). */
typedef void (*tdm_uv_serve_serving_cb)(void *data);

/* Allocate a control for one run of tdm_uv_serve(). serving may be NULL; data
 * is borrowed until tdm_uv_serve_control_free(). Returns 0 and *out, or
 * -ENOMEM. Any thread. */
int tdm_uv_serve_control_new(tdm_uv_serve_serving_cb serving, void *data,
                             struct tdm_uv_serve_control **out);

/* Stop the tdm_uv_serve() that runs with control, as SIGTERM stops one that
 * runs without: it wakes the loop (a uv_async_t), which then closes the server
 * cleanly (hooks->stop included). Thread-safe; any number of times; any moment
 * between tdm_uv_serve_control_new() and tdm_uv_serve_control_free(): asked
 * before the loop serves, the loop stops as soon as it serves; asked after
 * tdm_uv_serve() returned, it does nothing. Returns at once. */
void tdm_uv_serve_stop(struct tdm_uv_serve_control *control);

/* Free control once no tdm_uv_serve() runs with it (it returned, or was never
 * called) and no thread calls tdm_uv_serve_stop() on it. NULL is allowed. */
void tdm_uv_serve_control_free(struct tdm_uv_serve_control *control);

/* Run a server on a loop of its own until stopped, then close it cleanly and
 * close the loop. Blocks the calling thread. Logs "listening", "stopping" and
 * "stopped" lines through tdm_tracef.
 *
 * control NULL (tandemd's old way): stop on SIGTERM or SIGINT (uv_signal).
 * Once its handlers are installed it unblocks SIGTERM and SIGINT in the
 * calling thread: a caller that blocked them before opening the node (and
 * starting the engine's threads, which inherit the mask) loses no signal sent
 * during startup. SIGPIPE is ignored.
 *
 * control set: stop on tdm_uv_serve_stop(control) from any thread. No signal
 * handler is installed and no disposition or mask is changed: the caller runs
 * this on a thread that blocks SIGPIPE (best, every signal), so that a write
 * to a client that went away fails with EPIPE instead of killing the process.
 * control->serving runs once the server serves.
 *
 * Returns 0 after a clean stop, or the error of tdm_uv_server_start() or of
 * hooks->start (diag says why; then every handle is closed already). */
int tdm_uv_serve(const struct tdm_uv_server_config *config, const struct tdm_uv_serve_hooks *hooks,
                 struct tdm_uv_serve_control *control, struct tdm_diag *diag);

/* ---- A replicated node (net/uv_daemon.c) ---------------------------------------- */

#define TDM_UV_NAME_SIZE_MAX 63  /* Cluster names and node ids, bytes. */
#define TDM_UV_ADDR_SIZE_MAX 263 /* "HOST:PORT", "[IPv6]:PORT". */
#define TDM_UV_PATH_SIZE     4096
#define TDM_UV_NODES_MAX     8 /* Nodes in a cluster, self included (PROTOCOL.md §2). */

/* One node of the cluster as tandem.conf names it. */
struct tdm_uv_cluster_node {
    char id[TDM_UV_NAME_SIZE_MAX + 1];
    char addr[TDM_UV_ADDR_SIZE_MAX + 1]; /* HOST:PORT; this node's: its listen address. */
};

/* A replicated node's settings (tandem.conf [node] and [replication]). */
struct tdm_uv_cluster_config {
    char cluster[TDM_UV_NAME_SIZE_MAX + 1];
    char self_id[TDM_UV_NAME_SIZE_MAX + 1];
    char primary[TDM_UV_NAME_SIZE_MAX + 1]; /* Of epoch 1. */
    uint32_t node_count;                    /* Self included; any order. */
    struct tdm_uv_cluster_node nodes[TDM_UV_NODES_MAX];
    uint32_t min_copies;        /* 1..node_count. */
    uint64_t write_deadline_ms; /* 1..60000. */
    char tls_key[TDM_UV_PATH_SIZE];
    char tls_cert[TDM_UV_PATH_SIZE];
    char tls_ca[TDM_UV_PATH_SIZE];
    const char *dir; /* The node directory (DIR/epochs). */
    /* [verification] (docs/OPERATIONS.md "Verification"); 0: the default each. */
    uint32_t unverified_bound_s;     /* Degraded once a copy is unverified this long. */
    uint64_t verify_interval_ms;     /* A checkpoint per backup this often. */
    uint64_t scrub_bytes_per_second; /* The background scrubber's rate. */
    uint64_t scrub_pause_ms;         /* Between two scrub passes. */
    bool repair_off;                 /* [verification] repair = off: damage is only reported. */
    /* Switchover (docs/PROTOCOL.md §8, docs/OPERATIONS.md "Switchover"). */
    uint64_t switchover_interval_ms;                           /* 0: no periodic switchover. */
    uint32_t rotation_count;                                   /* 0: every node in id order. */
    char rotation[TDM_UV_NODES_MAX][TDM_UV_NAME_SIZE_MAX + 1]; /* Node ids, each once. */
};

#define TDM_UV_UNVERIFIED_BOUND_S_DEFAULT 60

/* One node as this node sees it: the snapshot handed to the status callback
 * of a replicated node (tdm_uv_status_cb's snapshot). */
struct tdm_uv_node_view {
    char id[TDM_UV_NAME_SIZE_MAX + 1];
    bool self;
    char role[16]; /* "primary", "backup", "recovering", "holding", "failed". */
    uint64_t epoch;
    uint64_t last_lsn;
    uint64_t durable_lsn;
    uint64_t lag_records;
    uint64_t lag_bytes;
    uint64_t lag_ms;
    bool link_up;
    char link[16]; /* "up" (self), "down", "handshake", "syncing", "live". */
    /* Verification (docs/PROTOCOL.md §9): what this node knows of that copy. */
    bool verify_known;         /* False: this node does not compare it (another backup). */
    uint64_t verified_lsn;     /* Proven equal to the primary's through here. */
    int64_t verified_at_ns;    /* UTC of that proof; 0: never. */
    uint64_t mismatches_found; /* Since this node started. */
    uint64_t divergent_first;  /* The first divergent batch; 0, 0: none known. */
    uint64_t divergent_last;
    bool bisecting;
};

struct tdm_uv_cluster_view {
    char role[16]; /* This node's. */
    uint64_t epoch;
    char primary[TDM_UV_NAME_SIZE_MAX + 1]; /* Of the current epoch. */
    uint64_t commit_lsn;
    uint32_t min_copies;
    uint32_t writes_in_flight;
    uint32_t node_count;
    struct tdm_uv_node_view nodes[TDM_UV_NODES_MAX]; /* Sorted by id. */
    int64_t now_ns;                                  /* UTC when the view was taken. */
    int64_t started_ns;                              /* UTC when this node's adapter started. */
    uint32_t unverified_bound_s;      /* A copy unverified this long makes the node degraded. */
    struct tdm_uv_scrub_view scrub;   /* This node's background scrubber. */
    struct tdm_uv_repair_view repair; /* Its repairs from verified copies. */
};

/* Check cluster (ids, addresses, primary, min_copies, deadline); on failure a
 * one-line diag naming the setting. Returns 0 or TANDEM_EINVALID. */
int tdm_uv_cluster_check(const struct tdm_uv_cluster_config *cluster, struct tdm_diag *diag);

/* tdm_uv_serve() for a replicated node: the local socket of server_config
 * (whose submit and snapshot are set here: every append is replicated, and
 * status gets a struct tdm_uv_cluster_view), plus the node's links and its
 * listener at its address, which also serves clients with certificates of the
 * cluster CA. Blocks until stopped (SIGTERM or SIGINT when control is NULL,
 * else tdm_uv_serve_stop(control); see tdm_uv_serve()); then answers what is
 * in flight, closes the links and returns 0. A bad setting, unreadable
 * credentials, an address that does not resolve or is in use fail the start:
 * a negative code with diag naming it, nothing left open. */
int tdm_uv_serve_replicated(const struct tdm_uv_server_config *server_config,
                            const struct tdm_uv_cluster_config *cluster,
                            struct tdm_uv_serve_control *control, struct tdm_diag *diag);

#endif
