/* engine/node.h: struct tandem, the public API's handle, for tests that open a
 * node over a fault-injecting file system. */
#ifndef TDM_ENGINE_NODE_H
#define TDM_ENGINE_NODE_H

#include "base/error.h"
#include "fs.h"

/* tandem_open() with the file-system table fs (borrowed until close). */
int tdm_node_open(const char *dir, const struct tandem_options *options, struct tdm_fs *fs,
                  struct tandem **out, struct tdm_diag *diag);

/* tandem_reindex() over fs. */
int tdm_node_reindex(const char *dir, struct tdm_fs *fs, struct tdm_diag *diag);

/* tandem_verify() over fs, scrubbing with scrub_options (NULL: unthrottled,
 * the real clock). */
struct tdm_scrub_options;
int tdm_node_verify(const char *dir, unsigned flags, struct tdm_fs *fs,
                    const struct tdm_scrub_options *scrub_options,
                    struct tandem_verify_report *report, struct tdm_diag *diag);

/* --- Replication accessors (net/uv_node.c). Internal; not in tandem.h. --- */

/* The handle's log and file-system table, for the replication adapter: it
 * reads batches (tdm_log_scan, any thread) and, on a backup, appends received
 * batches (tdm_log_append_batch, tdm_log_cut_after) on one thread at a time
 * while no local write is in flight (a backup submits none). Borrowed until
 * tandem_close(). Note: batches appended this way reach the index on the next
 * open (index catch-up), not at once. */
struct tdm_log;
struct tdm_log *tdm_node_log(struct tandem *t);
struct tdm_fs *tdm_node_fs(struct tandem *t);

/* tandem_append_async() for records already encoded as a batch body (raw:
 * record_count (u32 size, record) entries, e.g. a FORWARD frame's), copied.
 * If epoch is above the log's epoch, the log's epoch is raised first, so the
 * new batch is stamped with it (a primary acting in a new epoch). The caller
 * must not raise the epoch while another write is in flight. Returns as
 * tandem_append_async(); cb runs on the commit thread. */
int tdm_node_append_raw_async(struct tandem *t, const uint8_t *raw, size_t raw_size,
                              uint32_t record_count, uint64_t epoch, tandem_append_cb cb,
                              void *data, struct tdm_diag *diag);

/* Abandon the handle as a crash would: stop the threads without closing the
 * log or the index cleanly, release memory. For power-loss tests only. */
void tdm_node_abandon(struct tandem *t);

#endif
