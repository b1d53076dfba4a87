/* net/uv_repair.h: repair of damaged sealed segments on a running node from a
 * copy that verifies (DESIGN "Verification"; docs/PROTOCOL.md §9.4;
 * docs/OPERATIONS.md "Damage"). net/uv_daemon.c owns one beside the scrubber
 * (net/uv_scrub.c) and the replication adapter (net/uv_node.c).
 *
 * Happy path (one range at a time, on the loop thread; disk work on the
 * threadpool):
 * 1. Every TDM_UV_REPAIR_TICK_MS, take the damaged sealed segments the
 *    scrubber's last pass found; plan the first one not yet handled
 *    (tdm_repair_plan: the damaged span, its LSNs and the chain hash before it).
 * 2. Choose the copy to fetch from (tdm_repair_choose, net/replica_repair.h:
 *    a node whose copy is verified through the span's last LSN, link LIVE)
 *    and send FETCH; FETCHED brings whole batches, each verified by the
 *    sender as it read them; more FETCHes follow until the span is covered.
 * 3. tdm_repair_apply(): the batches and the rebuilt segment are checked
 *    against this node's own chain hashes and footer, written aside, the
 *    damaged file is copied into DIR/quarantine/, the rebuilt one renamed
 *    over it. The scrubber forgets the range; the count of repairs grows.
 * 4. Peers' FETCHes are served likewise: the batches are located and read
 *    with every checksum verified (tdm_log_locate, tdm_log_read_located); a
 *    range this node cannot read intact is answered with the error, never
 *    with bytes.
 * Failure modes: a copy that answers with an error or with bytes that do not
 * verify is not asked again for that range; when no node that could hold a
 * verified copy is left, the range is LOST (listed in the view; the node
 * stays degraded; nothing is changed), and tried again every
 * TDM_UV_REPAIR_LOST_RETRY_MS (a verified copy may have come back: another
 * backup repaired the primary, a node returned). No answer within
 * TDM_UV_REPAIR_FETCH_MS: asked again. Damage that batches cannot restore
 * (a segment's header or footer) is listed the same way, with its reason.
 * Meanwhile reads of the range fail with TANDEM_ECORRUPT (their checksums)
 * and shipping waits at it (PROTOCOL.md §5).
 * Close: tdm_uv_repair_stop() drops what is in flight; the struct is freed
 * once its timer is closed and its threadpool jobs have ended.
 *
 * Thread: the loop thread; view from the loop thread. */
#ifndef TDM_NET_UV_REPAIR_H
#define TDM_NET_UV_REPAIR_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/base/error.h"

#define TDM_UV_REPAIR_TICK_MS       200u   /* How often the scrubber's findings are looked at. */
#define TDM_UV_REPAIR_FETCH_MS      5000u  /* A FETCH unanswered this long is sent again. */
#define TDM_UV_REPAIR_LOST_MAX      4      /* Lost ranges the view lists (all are counted). */
#define TDM_UV_REPAIR_LOST_RETRY_MS 60000u /* A lost range is tried again this often. */
#define TDM_UV_REPAIR_REASON_MAX    160
/* Batches in one FETCHED (the wire allows 64): a longer span takes more FETCHes. */
#define TDM_UV_REPAIR_FETCH_BATCHES_MAX 16
#define TDM_UV_REPAIR_SERVING_MAX       2 /* Peers' FETCHes read at once; more get TANDEM_EBUSY. */

struct tandem;
struct tdm_frame_cluster;
struct tdm_proto_msg;
struct tdm_uv_node;
struct tdm_uv_repair;
struct tdm_uv_scrub;
struct uv_loop_s;

/* A range no verified copy could restore. */
struct tdm_uv_repair_lost {
    uint64_t segment_lsn;
    uint64_t lsn_first;
    uint64_t lsn_last;
    char reason[TDM_UV_REPAIR_REASON_MAX];
};

/* What repair has done since the node started (tandem status "repair"). */
struct tdm_uv_repair_view {
    bool enabled;
    uint64_t repaired;       /* Ranges restored from a verified copy. */
    uint64_t fetches_served; /* FETCHes answered with batches for peers. */
    bool active;             /* A range is being repaired. */
    uint64_t active_segment;
    uint64_t active_lsn_first;
    uint64_t active_lsn_last;
    bool waiting;        /* It waits for a verified copy to be reachable. */
    uint32_t lost_count; /* Lost ranges (all are counted). */
    struct tdm_uv_repair_lost lost[TDM_UV_REPAIR_LOST_MAX];
};

/* Start repairing what scrub finds on node (all borrowed until stop); t is
 * the node's engine handle, cluster names the nodes (trace lines). Returns 0
 * and *out, or -ENOMEM with diag. */
int tdm_uv_repair_start(struct uv_loop_s *loop, struct tandem *t, struct tdm_uv_node *node,
                        struct tdm_uv_scrub *scrub, const struct tdm_frame_cluster *cluster,
                        struct tdm_uv_repair **out, struct tdm_diag *diag);

/* A FETCH or FETCHED from node index (the adapter's on_repair hook). */
void tdm_uv_repair_receive(struct tdm_uv_repair *repair, uint32_t index,
                           const struct tdm_proto_msg *msg);

/* Stop: nothing more is sent or written; frees itself when its work ended.
 * NULL is allowed. */
void tdm_uv_repair_stop(struct tdm_uv_repair *repair);

/* Copy the counts. NULL repair: enabled false. */
void tdm_uv_repair_view(const struct tdm_uv_repair *repair, struct tdm_uv_repair_view *view);

#endif
