/* net/uv_scrub.h: the background scrubber of a running node (DESIGN
 * "Verification"; docs/OPERATIONS.md "Scrub"): a thread of its own that runs
 * engine/scrub.c passes over the node directory one after another, at the
 * throttled rate (TDM_SCRUB_RATE_DEFAULT: a full pass over 1.7 TB a day), and
 * keeps what they found for tandem status.
 *
 * Happy path:
 * 1. tdm_uv_scrub_start() opens a struct tdm_scrub over the node's file system
 *    (the shim drops each segment's cached pages: the medium is read, not the
 *    page cache) and starts the thread.
 * 2. The thread runs a pass (a read-only recovery in scrub mode: every batch
 *    and footer of every sealed segment recomputed), records its damage,
 *    waits TDM_UV_SCRUB_PAUSE_MS, and starts the next.
 * 3. tdm_uv_scrub_view() copies the progress (any thread).
 * Failure modes:
 * - a pass that fails (I/O error, out of memory) is traced and retried after
 *   the pause; its error stays in the view until a pass completes;
 * - only damage in sealed segments counts: the open segment is the writer's
 *   (a batch half written while the pass reads it is a torn tail to a
 *   read-only open, never damage), and a pass during which the log was cut
 *   (its quarantine grew: a backup's cut reopens a sealed segment) is not
 *   trusted: its damage is dropped and the next pass judges;
 * - damage found is reported (trace, view: the node is degraded) and
 *   repaired from a verified copy by net/uv_repair.c, which reads the view
 *   and, once a segment verifies again, drops its ranges from the view
 *   (tdm_uv_scrub_forget) without waiting for the next pass.
 * Close: tdm_uv_scrub_stop() cancels the pass under way (within
 * TDM_SCRUB_SLEEP_NS_MAX plus one read), joins the thread and frees it.
 *
 * Thread: start and stop from one thread; view from any. */
#ifndef TDM_NET_UV_SCRUB_H
#define TDM_NET_UV_SCRUB_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/base/error.h"

#define TDM_UV_SCRUB_PAUSE_MS    10000 /* Between two passes. */
#define TDM_UV_SCRUB_DAMAGED_MAX 4     /* Damaged ranges the view lists (all are counted). */
#define TDM_UV_SCRUB_ERROR_SIZE  160

struct tandem;
struct tdm_uv_scrub;

/* What the background scrubber has done (tandem status "scrub"). */
struct tdm_uv_scrub_view {
    bool enabled;              /* A background scrubber runs on this node. */
    bool running;              /* A pass is under way. */
    uint64_t bytes_done;       /* Segment bytes the pass under way (or the last) read. */
    uint64_t segment_lsn;      /* First LSN of the segment it reads; 0: none. */
    int64_t pass_started_ns;   /* UTC start of that pass; 0: none yet. */
    int64_t last_full_pass_ns; /* UTC end of the last complete pass; 0: none yet. */
    uint64_t last_pass_bytes;  /* Bytes that pass read. */
    uint64_t passes;           /* Complete passes since start. */
    uint32_t damaged_count;    /* Damaged ranges in sealed segments, last complete pass. */
    struct tandem_damage damaged[TDM_UV_SCRUB_DAMAGED_MAX];
    char error[TDM_UV_SCRUB_ERROR_SIZE]; /* Why the last pass failed; "" if it did not. */
};

/* Start scrubbing the node directory dir of t (both borrowed until stop) at
 * rate bytes/s (0: TDM_SCRUB_RATE_DEFAULT), pause_ms between passes (0:
 * TDM_UV_SCRUB_PAUSE_MS). Returns 0 and *out, or a negative code with diag
 * (TANDEM_EINVALID: a rate above TDM_SCRUB_RATE_MAX). */
int tdm_uv_scrub_start(struct tandem *t, const char *dir, uint64_t rate, uint64_t pause_ms,
                       struct tdm_uv_scrub **out, struct tdm_diag *diag);

/* Drop the damaged ranges of segment segment_lsn from the view (it was
 * repaired and verifies). NULL scrub is allowed. Any thread. */
void tdm_uv_scrub_forget(struct tdm_uv_scrub *scrub, uint64_t segment_lsn);

/* Cancel, join and free. NULL is allowed. */
void tdm_uv_scrub_stop(struct tdm_uv_scrub *scrub);

/* Copy the progress into view. NULL scrub: a view with enabled false. */
void tdm_uv_scrub_view(struct tdm_uv_scrub *scrub, struct tdm_uv_scrub_view *view);

#endif
