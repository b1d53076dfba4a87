/* engine/repair.h: restoring a damaged sealed segment in place from batches
 * that a verified copy sent (DESIGN "Verification"; docs/FORMAT.md "Repair";
 * docs/PROTOCOL.md §9.4 for how the batches are fetched).
 *
 * Happy path:
 * 1. tdm_repair_plan(): read the sealed segment, walk its batches from the
 *    header's chain hash; the first batch that does not verify starts the
 *    damaged span at offset P; the next batch header after P that decodes and
 *    continues the LSNs (or the footer) ends it at Q. The plan names the LSNs
 *    the span held (lsn_first .. lsn_last) and the chain hash before it.
 * 2. The caller fetches whole batches holding exactly those LSNs from a copy
 *    that verifies (net/uv_repair.c).
 * 3. tdm_repair_apply(): the segment must still match the plan; the fetched
 *    batches must each verify (header and body checksums), hold exactly the
 *    plan's LSNs, chain from the plan's chain hash and fill exactly Q - P
 *    bytes, and the batch header at Q (or the footer's last chain hash) must
 *    follow the last of them; the segment rebuilt with them, when no other
 *    damage is left in it, must verify whole: every batch and chain hash, and
 *    the footer (last LSN, batch count, last chain hash and the XXH3-64 of
 *    every byte before it, computed when it was sealed). So the result is byte
 *    for byte what the segment held when it was sealed. A segment with two
 *    damaged spans is repaired one span at a time.
 *    Then: the rebuilt file is written aside (DIR/log/<segment>.seg.repair)
 *    and fdatasync'd, the damaged file is copied to
 *    DIR/quarantine/<segment>.seg.<P>.damaged (fdatasync, fsync of the
 *    directory), the rebuilt file is renamed over the damaged one and DIR/log
 *    fsync'd. The log forgets the damage it recorded for the segment.
 * Failure modes: bytes that do not verify: TANDEM_ECORRUPT, nothing changed
 * (the caller tries another copy, or reports the range lost); a segment that
 * changed since the plan: -EAGAIN, nothing changed; an I/O error before
 * the rename: nothing changed (a leftover .repair file is ignored by recovery
 * and overwritten by the next repair); a failed fsync of DIR/log after the
 * rename fails the log (never retried: DESIGN).
 *
 * Thread: any thread (the libuv adapter's threadpool). The log's writer
 * never appends to a sealed segment; a cut (tdm_log_cut_after), which may
 * truncate one, and a repair's check and swap exclude each other
 * (log->swap_mutex), so a repair never renames a segment over a cut. */
#ifndef TDM_ENGINE_REPAIR_H
#define TDM_ENGINE_REPAIR_H

#include <stddef.h>
#include <stdint.h>

#include "base/chain.h"
#include "base/error.h"

#define TDM_REPAIR_SUFFIX "repair" /* DIR/log/<segment>.seg.repair while being written. */

struct tdm_log;

/* The damaged span of one sealed segment and what it must hold. */
struct tdm_repair_plan {
    uint64_t segment_lsn;             /* The segment file's first LSN (its name). */
    uint64_t offset;                  /* P: first byte of the span. */
    uint64_t size;                    /* Q - P: bytes the fetched batches must fill. */
    uint64_t lsn_first;               /* LSNs the span held. */
    uint64_t lsn_last;                /* */
    struct tdm_chain_hash chain_prev; /* Chain hash at lsn_first - 1. */
};

/* Plan the repair of sealed segment segment_lsn of log. Returns 0 and *plan;
 * TANDEM_ENOTFOUND when the segment verifies whole (nothing to repair);
 * TANDEM_ECORRUPT with diag when the damage is not in its batches (header or
 * footer) and batches cannot restore it; or an I/O error. Thread-safe. */
int tdm_repair_plan(struct tdm_log *log, uint64_t segment_lsn, struct tdm_repair_plan *plan,
                    struct tdm_diag *diag);

/* Check bytes (fetched batches back to back) against plan and swap them in
 * (see above). Returns 0 (repaired), TANDEM_ECORRUPT (the bytes do not
 * restore the segment: nothing changed), -EAGAIN (the segment changed
 * since the plan: nothing changed), TANDEM_EFAILED (DIR/log could not be
 * fsync'd after the rename: the log is failed), or another I/O error (nothing
 * changed), with diag. */
int tdm_repair_apply(struct tdm_log *log, const struct tdm_repair_plan *plan, const uint8_t *bytes,
                     size_t size, struct tdm_diag *diag);

/* Restore a damaged header or footer of sealed segment segment_lsn from the
 * segment itself (docs/FORMAT.md "Repair"), where batches from another copy
 * cannot (segment boundaries are each node's own):
 * - a header: every field is known (the file name, the previous segment's
 *   last chain hash, time 0) but its epoch at creation (the batch's before
 *   it, or its own first batch's) and its flags; the candidate whose bytes
 *   make the XXH3-64 of [0, data_size) equal the footer's checksum is the one
 *   written at creation, byte for byte;
 * - a footer: every batch from the header must verify up to where the footer
 *   begins, and the next segment must begin at the LSN after the last with
 *   its chain hash; the footer is a function of those bytes.
 * Then it is swapped in as tdm_repair_apply() does (the damaged file goes to
 * quarantine as <segment>.seg.<0 or data_size>.damaged). Returns 0
 * (restored), TANDEM_ENOTFOUND (both verify), TANDEM_ECORRUPT (both are
 * damaged, or nothing proves a rebuilt one: nothing changed), TANDEM_EFAILED
 * or another I/O error as tdm_repair_apply(), with diag. Thread-safe. */
int tdm_repair_frame(struct tdm_log *log, uint64_t segment_lsn, struct tdm_diag *diag);

#endif
