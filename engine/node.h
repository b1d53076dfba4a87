/* engine/node.h: struct tandem, the public API's handle, for tests that open a
 * node over a fault-injecting file system. */
#ifndef TDM_ENGINE_NODE_H
#define TDM_ENGINE_NODE_H

#include "base/error.h"
#include "fs.h"

/* tdm_node_open() flag: prepare the next segment file in the writer's thread
 * (TDM_LOG_PREPARE_INLINE), deterministically, instead of in the tdm-prepare
 * thread; for fault tests that count file operations. */
#define TDM_OPEN_PREPARE_INLINE (1u << 31)

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
 * reads batches (tdm_log_scan, tdm_log_status, any thread). It never writes
 * the log itself: the commit thread is the log's only writer, and a backup
 * hands it received batches and cuts through tdm_node_append_received() and
 * tdm_node_cut_after(). Borrowed until tandem_close(). */
struct tdm_log;
struct tdm_log *tdm_node_log(struct tandem *t);
struct tdm_fs *tdm_node_fs(struct tandem *t);

/* Append one batch built by the primary, exactly as received (a backup's
 * RECEIVED write, docs/PROTOCOL.md §5.5), and index it like a local batch.
 * bytes (size bytes: header and compressed body, as on disk) are borrowed
 * during the call. The header, body and every record are checked on the
 * calling thread; then the commit thread appends the batch with
 * tdm_log_append_batch() (LSN, epoch and chain hash checked against the log),
 * in turn with local group commit, so that the two never interleave (a node
 * may change role while open), and hands the body to the index thread: the
 * same LMDB groups, watermark LSN and chain hash as local batches, so
 * tandem_query()/tandem_get() on this handle see the batch without a reopen.
 * Blocks until the batch is written and, if sync, it and every batch
 * appended before it without sync are durable (one fdatasync: a backup syncs
 * once per group of received batches), or refused; on success
 * header receives its header. Returns 0, or TANDEM_ECORRUPT (bad bytes or a
 * chain hash that does not follow: nothing written), TANDEM_EINVALID (the
 * batch does not start right after the log's last LSN), TANDEM_ESTALEEPOCH,
 * TANDEM_EFAILED (the log is failed: sticky), TANDEM_EDAMAGED,
 * TANDEM_EREADONLY, TANDEM_ECANCELED (closing), TANDEM_EBUSY, -ENOMEM; with
 * diag. Thread: any thread but the commit thread (it blocks: the adapter's
 * threadpool). */
struct tdm_batch_header;
int tdm_node_append_received(struct tandem *t, const uint8_t *bytes, size_t size, bool sync,
                             struct tdm_batch_header *header, struct tdm_diag *diag);

/* tdm_node_append_received() for count batches in a row (bytes[i], sizes[i]
 * bytes each), with one fdatasync after the last: all are checked, then
 * handed to the commit thread together, so that it appends them back to back
 * (group commit on the backup side), and the call waits for the last. At the
 * first batch that fails a check or the append, the ones after it are not
 * written. *appended receives how many were appended from the first on (their
 * headers in headers[0 .. *appended)); they are durable only if the call
 * returns 0. Returns 0, or the first failure's code as
 * tdm_node_append_received(), with diag. Thread: as tdm_node_append_received(). */
int tdm_node_append_received_many(struct tandem *t, uint32_t count, const uint8_t *const *bytes,
                                  const size_t *sizes, struct tdm_batch_header *headers,
                                  uint32_t *appended, struct tdm_diag *diag);

/* tdm_node_append_received_many() without waiting, for a thread that must not
 * block on the disk (the adapter's loop thread). The batches are checked and
 * decoded on the calling thread; if the first fails, or the commit thread
 * refuses them (TANDEM_ECANCELED, TANDEM_EBUSY), the call returns that code
 * with diag, nothing is queued and cb never runs. Otherwise it returns 0
 * and cb runs once on the commit thread when the commit thread is done with
 * every batch that passed: status 0 when all count batches are written and
 * durable (one fdatasync after the last; received batches queued one after
 * another share it), else the first failure's code and message (a check of
 * a later batch, an append, the fdatasync), as tdm_node_append_received()'s.
 * appended counts the batches appended from the first on, last is the
 * header of the last of them (NULL if none); they are durable only if status
 * is 0. bytes must stay valid until cb runs; cb must not block. */
typedef void (*tdm_node_received_cb)(void *data, int status, uint32_t appended,
                                     const struct tdm_batch_header *last, const char *message);
int tdm_node_append_received_async(struct tandem *t, uint32_t count, const uint8_t *const *bytes,
                                   const size_t *sizes, tdm_node_received_cb cb, void *data,
                                   struct tdm_diag *diag);

/* Cut the log after lsn into DIR/quarantine/ (tdm_log_cut_after(): a backup's
 * divergent tail beyond the fork point) on the commit thread, in turn with
 * every append, and keep the index consistent: the index thread first catches
 * up, then, if LSNs were cut, the index is emptied and filled again from the
 * cut log (engine/commit.c step 6), and queries on this handle wait for that
 * rebuild, so no query returns a cut record once this returns. lsn at or past
 * the log's end changes nothing. Blocks until done. Returns 0, or
 * tdm_log_cut_after()'s codes (TANDEM_EINVALID, TANDEM_EFAILED, ...),
 * TANDEM_EREADONLY, TANDEM_ECANCELED (closing), TANDEM_EBUSY; with diag. A
 * failed rebuild does not fail the cut: it stops the index (queries report it)
 * and the next open rebuilds. Thread: any but the commit thread; blocking. */
int tdm_node_cut_after(struct tandem *t, uint64_t lsn, struct tdm_diag *diag);

/* tandem_append_async() for records already encoded as a batch body (raw:
 * record_count (u32 size, record) entries, e.g. a FORWARD frame's), copied.
 * If epoch is above the log's epoch, the log's epoch is raised first, so the
 * new batch is stamped with it (a primary acting in a new epoch). The caller
 * must not raise the epoch while another write is in flight. Returns as
 * tandem_append_async(); cb runs on the commit thread. */
int tdm_node_append_raw_async(struct tandem *t, const uint8_t *raw, size_t raw_size,
                              uint32_t record_count, uint64_t epoch, tandem_append_cb cb,
                              void *data, struct tdm_diag *diag);

/* Have cb called on the commit thread with every local batch once it is
 * written, before its fdatasync (engine/commit.h tdm_commit_set_written(); NULL:
 * never). A replicated primary ships from there (docs/PROTOCOL.md §5.4). Set it
 * before the first append, or after the last. No effect on a read-only
 * handle. */
void tdm_node_set_written(struct tandem *t,
                          void (*cb)(void *data, const struct tdm_batch_header *header,
                                     const uint8_t *bytes, size_t size),
                          void *data);

/* Rebuild the index of a writer's handle from its log while it runs: on the
 * commit thread, between batches, the index thread empties the index and
 * fills it again up to the log's end, then goes on with the batches appended
 * after (engine/commit.c, as after a cut). Queries on this handle wait for the
 * rebuild. Blocks until the index holds every durable LSN. Returns 0, or
 * TANDEM_EREADONLY, TANDEM_ECANCELED (closing), or the index thread's error;
 * with diag. Thread: any but the commit and index threads. */
int tdm_node_reindex_running(struct tandem *t, struct tdm_diag *diag);

/* Progress of tdm_node_verify_running(): phase "log" (bytes_done of about
 * bytes_total segment bytes re-read; segment_lsn names the segment being read,
 * 0 if none) or "index" (the index comparison began; the counts are 0). */
typedef void (*tdm_node_verify_progress_cb)(void *data, const char *phase, uint64_t bytes_done,
                                            uint64_t bytes_total, uint64_t segment_lsn);

/* tandem_verify() of a node that a writer's handle t holds open (a tandemd):
 * one scrub pass over its directory now, unthrottled, beside the writer (the
 * open segment is checked up to its durable end; a torn tail is not damage),
 * progress (if not NULL) called on this thread at the start and on another
 * one about every second between (not at the end: the report says it). With
 * TANDEM_VERIFY_DEEP and no damage, the index thread is first made to hold
 * every LSN durable now; then the live index is compared with a rebuild of
 * the log into the scratch environment DIR/index.verify-live at a consistent
 * point: one LMDB read snapshot of the index whose watermark is the LSN the
 * rebuild reached (tdm_index_compare_at(); tried again while the index thread
 * moves on). An index that differs is rebuilt with tdm_node_reindex_running()
 * and the report says so. Returns 0 and *report (damage and a rebuilt index
 * are results), or TANDEM_EBUSY (another verify of t runs; or the index moved
 * on at every attempt), TANDEM_EINVALID (unknown flags; t read-only), I/O and
 * index errors, or TANDEM_ECANCELED (tdm_node_verify_stop()), with diag.
 * Thread: any but t's commit and index threads; it
 * blocks for the whole pass. */
int tdm_node_verify_running(struct tandem *t, unsigned flags, tdm_node_verify_progress_cb progress,
                            void *data, struct tandem_verify_report *report, struct tdm_diag *diag);

/* Make the verify under way (if any) end soon with TANDEM_ECANCELED ("verify
 * stopped: the node is shutting down"), at its next read, batch or few
 * thousand index entries, and every later one at once: a tandemd that is
 * stopping does not wait for a verify's whole pass. Thread-safe; for good. */
void tdm_node_verify_stop(struct tandem *t);

/* Abandon the handle as a crash would: stop the threads without closing the
 * log or the index cleanly, release memory. For power-loss tests only. */
void tdm_node_abandon(struct tandem *t);

#endif
