/* net/uv_node.h: the replication adapter of one node (docs/PROTOCOL.md §1, §2,
 * STYLE B1.3): it owns a struct tdm_replica, the links to the other nodes, a
 * timer for the replica's deadline and the engine calls, and carries out the
 * replica's actions in the documented order (net/replica.h):
 *   1. epoch history -> DIR/epochs (tmp + fdatasync + rename + dir fsync,
 *      docs/FORMAT.md "Epoch history"), then PERSISTED(EPOCHS);
 *   2. cut -> tdm_node_cut_after() (the commit thread cuts; the index is
 *      rebuilt behind it), then PERSISTED(CUT);
 *   3. writes: LOCAL -> group commit (tdm_node_append_raw_async), then
 *      APPENDED, PERSISTED(LOG) and PERSISTED(WRITE); RECEIVED -> every batch
 *      checked with tdm_batch_verify() first (a bad one closes the link to the
 *      primary and nothing of the step's write is appended), then
 *      tdm_node_append_received_async() (decoded on the loop; the commit
 *      thread appends, one fdatasync for every batch queued while it ran
 *      the last, the index thread indexes: queries on a backup see the
 *      batch), then PERSISTED(LOG);
 *   4. sends: converted with net/frame_proto; an APPEND range is read from the
 *      log first (whole batches, as on disk) and sent in frames of at most
 *      TDM_FRAME_BATCHES_MAX batches;
 *   5. results: the write's callback;
 *   6. a TICK at the deadline;
 *   7. reports of switchovers and failovers (PROTOCOL.md §8.0): one trace line
 *      each (tdm_uv_node_report_line), then config.on_report;
 *   then the verification actions (docs/PROTOCOL.md §9, net/uv_verify.h): reads
 *   of chain hashes on the threadpool (CHAIN_READ), verified claims into
 *   DIR/verified.
 * Disk actions 1-2 run one at a time, in order, on the threadpool
 * (uv_queue_work); a RECEIVED write queued behind one of them waits its turn
 * there too (tdm_node_append_received_many), else it goes to the commit
 * thread at once, and a disk action waits for those in flight. Log reads for
 * APPEND run on the threadpool too.
 *
 * Links (PROTOCOL.md §2): the node whose id sorts first dials, so this node
 * dials every node of a higher index (retrying every reconnect_ms) and accepts
 * only nodes of a lower index; one link per peer (a newer accepted link
 * replaces the older).
 *
 * Deviation from STYLE B1.3, on purpose for now: a callback steps the replica
 * at once with its event instead of batching a loop turn's events. Events that
 * arrive while a step's actions are being carried out (a write submitted from a
 * result callback) are queued and stepped right after.
 *
 * Thread: everything runs on the loop's thread, callbacks included. */
#ifndef TDM_NET_UV_NODE_H
#define TDM_NET_UV_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "engine/base/error.h"
#include "net/frame_proto.h"
#include "net/replica.h"
#include "net/tls.h"

#define TDM_UV_NODE_RECONNECT_MS_DEFAULT 200u

struct tdm_uv_node;
struct tdm_uv_link;

/* A switchover or failover report (net/replica_switch.h struct tdm_report;
 * PROTOCOL.md §8.0), with the request_id the command was stepped with. Runs on
 * the loop thread, possibly from tdm_uv_node_switchover()/_failover() itself
 * (a refusal comes at once). The report is borrowed for the call. */
typedef void (*tdm_uv_node_report_cb)(void *data, const struct tdm_report *report);

/* Request ids of the node's own schedule (switchover_interval): at or above
 * this, so a caller's ids (below it) never collide with them. */
#define TDM_UV_NODE_SCHEDULE_REQUEST_ID (UINT64_C(1) << 62)

struct tdm_uv_node_config {
    const char *dir;                  /* The node directory (DIR/epochs); copied. */
    struct tandem *t;                 /* Open for writing; borrowed until the close callback. */
    struct tdm_tls_config *tls;       /* This node's credentials; borrowed likewise. */
    struct tdm_frame_cluster cluster; /* Name, sorted node ids, self_index. */
    const struct sockaddr *listen_address; /* Copied; port 0 picks a free port. */
    uint32_t initial_primary_index;        /* History (1, it, 1) if DIR/epochs is missing. */
    uint32_t min_copies;
    uint64_t write_deadline_ms;
    uint64_t heartbeat_ms;
    uint64_t retransmit_ms;
    uint64_t handshake_ms;
    uint32_t reconnect_ms; /* 0: TDM_UV_NODE_RECONNECT_MS_DEFAULT. */
    /* A checkpoint per backup this often (PROTOCOL.md §9); 0:
     * TDM_VERIFY_INTERVAL_MS_DEFAULT. */
    uint64_t verify_interval_ms;
    /* NULL: client certificates are refused. Else the listener also accepts
     * "client:<name>" certificates of the cluster CA and hands each such link,
     * authenticated, to on_client, which returns true if it took the link
     * (installed its own callbacks: tdm_uv_server_adopt()), or false, and the
     * node closes it. */
    bool (*on_client)(void *data, struct tdm_uv_link *link);
    void *client_data;
    /* Switchover and failover (PROTOCOL.md §8). rotation[0 .. rotation_count):
     * node indexes, each once, the order "next" follows (0: index order). */
    uint32_t rotation_count;
    uint32_t rotation[TDM_REPLICA_NODES_MAX];
    /* 0: no periodic switchover. Else, on the acting primary, a SWITCHOVER to
     * the next of the rotation this often (command false: cause scheduled). */
    uint64_t switchover_interval_ms;
    /* Every report of a switchover or failover (after its trace line); NULL:
     * traced only. */
    tdm_uv_node_report_cb on_report;
    void *report_data;
    /* NULL: repair frames are dropped. Else FETCH and FETCHED frames
     * (PROTOCOL.md §9.4), decoded, go to on_repair with the sender's node
     * index instead of the replica (net/uv_repair.c); msg's slices are valid
     * during the call only. */
    void (*on_repair)(void *data, uint32_t index, const struct tdm_proto_msg *msg);
    void *repair_data;
};

/* A submitted write's outcome (net/replica.h struct tdm_action_result). */
typedef void (*tdm_uv_node_write_cb)(void *data, int status, uint64_t lsn_first, uint64_t lsn_last);

/* Load DIR/epochs, read the log's end from the engine, init the replica,
 * listen, and step the replica once. Returns 0 and *out, or a negative code
 * with diag (then no callback runs; the caller runs the loop once more to
 * release handles after a listen failure). */
int tdm_uv_node_start(uv_loop_t *loop, const struct tdm_uv_node_config *config,
                      struct tdm_uv_node **out, struct tdm_diag *diag);

/* The bound listen address. */
int tdm_uv_node_address(const struct tdm_uv_node *node, struct sockaddr_storage *address);

/* Set (or change) the address of node index (> self_index: dialed). */
void tdm_uv_node_peer_address(struct tdm_uv_node *node, uint32_t index,
                              const struct sockaddr *address);

/* Cut the link to node index (either side) and, if hold, do not dial it again
 * (and refuse its connections) until tdm_uv_node_peer_release(). For tests and
 * operators. */
void tdm_uv_node_peer_drop(struct tdm_uv_node *node, uint32_t index, bool hold);
void tdm_uv_node_peer_release(struct tdm_uv_node *node, uint32_t index);

/* Submit count records (validated and encoded here). cb runs exactly once
 * (later, never from this call) if this returns 0. Returns 0, TANDEM_EINVALID,
 * TANDEM_EBUSY (too many in flight), TANDEM_ECANCELED (closing), -ENOMEM. */
int tdm_uv_node_submit(struct tdm_uv_node *node, const struct tandem_record *records, size_t count,
                       tdm_uv_node_write_cb cb, void *data, struct tdm_diag *diag);

/* Step SWITCHOVER (PROTOCOL.md §8.1) into the replica: target_index a node
 * index or TDM_SWITCHOVER_NEXT; command true for an operator's request (else
 * the history records cause scheduled). request_id (below
 * TDM_UV_NODE_SCHEDULE_REQUEST_ID) comes back in every report: REFUSED at
 * once (maybe from this call), or STARTED and later DONE or ABANDONED.
 * Returns 0, or TANDEM_ECANCELED (closing), TANDEM_EBUSY (called from inside
 * a step: from a write or report callback). Loop thread. */
int tdm_uv_node_switchover(struct tdm_uv_node *node, uint64_t request_id, uint32_t target_index,
                           bool command);

/* Step FAILOVER (PROTOCOL.md §8.2) into the replica: promote this node.
 * Reports as for tdm_uv_node_switchover(), DRY_RUN instead of STARTED for a
 * dry run. Same returns. */
int tdm_uv_node_failover(struct tdm_uv_node *node, uint64_t request_id, bool force, bool dry_run);

/* One readable line for report (no newline) into out: "switchover to c: done:
 * epoch 7, handover at LSN 812, writes held 4 ms", "failover: refused: primary
 * alive (node b still hears it)", ... Nodes are named by their ids. */
void tdm_uv_node_report_line(const struct tdm_uv_node *node, const struct tdm_report *report,
                             char *out, size_t size);

/* Node id of index (for reports), "?" if out of range. */
const char *tdm_uv_node_id(const struct tdm_uv_node *node, uint32_t index);

/* Snapshot of the replica's status. */
void tdm_uv_node_status(const struct tdm_uv_node *node, struct tdm_replica_status *status);

/* Send msg (a repair frame, PROTOCOL.md §9.4) on the link to node index.
 * Returns 0, TANDEM_ENOTFOUND (no link: dropped), TANDEM_EBUSY (the link's
 * queue is full: dropped), or another code of tdm_uv_link_send, with diag. */
int tdm_uv_node_send(struct tdm_uv_node *node, uint32_t index, const struct tdm_proto_msg *msg,
                     struct tdm_diag *diag);

/* The claim DIR/verified keeps for node index (docs/FORMAT.md "Verified
 * state"): its copy equal to the primary's through *lsn as of *at_ns (UTC ns;
 * 0: never). Loop thread. */
void tdm_uv_node_verified(const struct tdm_uv_node *node, uint32_t index, uint64_t *lsn,
                          int64_t *at_ns);

/* Frames this node sent to other nodes since start, by frame type (enum
 * tdm_frame_type): how many, and their encoded bytes (size field included;
 * TLS records add about 22 bytes per write, not counted). Loop thread. */
#define TDM_UV_NODE_TRAFFIC_TYPES 32
struct tdm_uv_node_traffic {
    uint64_t frames[TDM_UV_NODE_TRAFFIC_TYPES];
    uint64_t bytes[TDM_UV_NODE_TRAFFIC_TYPES];
};
void tdm_uv_node_traffic(const struct tdm_uv_node *node, struct tdm_uv_node_traffic *traffic);

typedef void (*tdm_uv_node_close_cb)(void *data);

/* Close links, listener and timer; wait for disk work, reads and local writes
 * in flight; fail writes still waiting with TANDEM_ECANCELED; free the node;
 * then cb(data). The caller closes the tandem handle afterwards. At most once. */
void tdm_uv_node_close(struct tdm_uv_node *node, tdm_uv_node_close_cb cb, void *data);

#endif
