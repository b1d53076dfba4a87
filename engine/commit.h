/* engine/commit.h: group commit. Many writer threads hand in records; a commit
 * thread gathers them into one batch with one fdatasync; an index thread brings
 * the LMDB index up to date behind it. On a backup the same commit thread also
 * appends the batches received from the primary and cuts a divergent tail, so
 * the commit thread is the log's only writer whatever the node's role. This is
 * the only multi-threaded module of the engine. */
#ifndef TDM_ENGINE_COMMIT_H
#define TDM_ENGINE_COMMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "base/queue.h"
#include "index.h"
#include "log.h"

/* Most bytes of decoded batches waiting for the index before writers wait; a
 * group being applied counts until it is committed, so this bounds the
 * queue's memory (plus one batch: the check comes before the push). It is
 * 128 MiB (was 64) so that behind a full live group (below, 48 MiB) 80 MiB
 * are left for writers, more than the 48 MiB left behind the 16 MiB groups
 * before: in a 64 MiB queue a 48 MiB group left 16 MiB, and under a slow
 * index (CI's AddressSanitizer build) writers waited for it, most likely
 * while their appends piled up into batches of several MB
 * (docs/BENCHMARKS.md). */
#define TDM_COMMIT_INDEX_QUEUE_SIZE_MAX (128u << 20)
/* Most batches indexed in one LMDB transaction when filling the index from
 * the log (open, rebuild). */
#define TDM_COMMIT_INDEX_BATCHES_MAX 256
/* The index thread commits at most once per this interval unless a query
 * waits for it or a full group (below) was applied: each LMDB commit costs an
 * fdatasync that competes with the log's on the same disk, and rewrites every
 * page it touched. Random keys (Message-ID, recipient, sender) touch about
 * one page each per record, so fewer, larger commits write each page once for
 * many records: at 1000 ms (was 100) the index threads' CPU per record fell
 * by about 30% on an index of 2 million records; at 5000 ms (was 1000, the
 * batches now applied in chunks inside the open transaction, below) the disk
 * wrote half as much or less during sustained ingest on an index of 500 MB
 * and the p99 of a replicated write no longer grew with it
 * (docs/BENCHMARKS.md, replication). A read-only process that opens the index
 * itself sees records up to this much later than the node's queries do. */
#define TDM_COMMIT_INDEX_INTERVAL_MS 5000
/* Within that transaction the index thread applies what was queued at most
 * this often, so that its work is spread out, not one burst per commit, and
 * a waiting query has at most one chunk left to apply before the commit. */
#define TDM_COMMIT_INDEX_CHUNK_MS 100
/* A live group (one LMDB transaction of the index thread) ends at this many
 * bytes of decoded batches or this many batches, whichever comes first (a
 * chunk may pass them by less than one chunk). The
 * queue holds a group being applied (which may pass the byte bound by less
 * than one batch) and a whole next group, so writers do not wait while the
 * next group is still gathering (static asserts in engine/commit.c). At 48
 * MiB (was 16) a node ingesting batches of 256 records commits its index
 * about 1.4 times a second instead of 4: with 2 million records indexed, the
 * index threads' CPU per record fell from 14 to 9-10 us and the p99 of a
 * 256-record append from 15-18 ms to 9-15 (docs/BENCHMARKS.md). */
#define TDM_COMMIT_INDEX_GROUP_SIZE_MAX    (48u << 20)
#define TDM_COMMIT_INDEX_GROUP_BATCHES_MAX 16384
/* Most requests waiting for the commit thread before submitters get TANDEM_EBUSY. */
#define TDM_COMMIT_PENDING_MAX 65536

/* What a request asks of the commit thread. Requests run in the order they
 * were submitted; consecutive LOCAL requests share one batch, consecutive
 * RECEIVED ones one fdatasync, and a cut runs alone, so a received batch or a
 * cut never interleaves with a local batch. */
enum tdm_commit_kind {
    TDM_COMMIT_LOCAL = 1, /* Records to gather into a new batch (group commit). */
    TDM_COMMIT_RECEIVED,  /* One whole batch built by the primary, appended as received. */
    TDM_COMMIT_CUT,       /* Cut the log after cut_after_lsn; the index is rebuilt behind. */
};

/* One call of tandem_append(), tandem_append_async(), or of the replication
 * calls of engine/node.h. RECEIVED and CUT requests have no cb: they are
 * waited for, or RECEIVED ones call received_cb. Consecutive RECEIVED
 * requests are appended back to back with one fdatasync after the run if any
 * asks for it (sync); each completes after that fdatasync. */
struct tdm_commit_request;
/* Runs on the commit thread once a RECEIVED request is complete (status,
 * header, message final); it may free the request. */
typedef void (*tdm_commit_received_cb)(struct tdm_commit_request *request);
struct tdm_commit_request {
    struct tdm_queue link; /* In commit->pending. */
    enum tdm_commit_kind kind;
    uint8_t *raw; /* Owned. LOCAL: record_count (u32 size, record) entries. RECEIVED:
                     the batch's verified, decompressed body, which goes to the index. */
    size_t raw_size;
    uint32_t record_count;              /* LOCAL, RECEIVED: >= 1. */
    const uint8_t *batch;               /* RECEIVED: the batch as received; borrowed until done. */
    size_t batch_size;                  /* RECEIVED: bytes of batch. */
    bool sync;                          /* RECEIVED: fdatasync after it (and what came before). */
    uint64_t cut_after_lsn;             /* CUT. */
    bool reindex;                       /* CUT: cut nothing; rebuild the index from the log. */
    tandem_append_cb cb;                /* NULL: a blocking caller waits on done... */
    tdm_commit_received_cb received_cb; /* ...unless RECEIVED with this set. */
    void *data;                         /* For cb or received_cb. */
    _Atomic uint32_t done;              /* 1 once status is final (engine/base/wake.h). */
    int status;                         /* 0 or an error code. */
    uint64_t lsn_first;                 /* LOCAL, RECEIVED: valid when status is 0. */
    struct tdm_batch_header header;     /* RECEIVED: the appended batch, when status is 0. */
    char message[TDM_DIAG_SIZE];        /* Why, when status is not 0. */
};

/* Called on the commit thread once a local batch is written, before its
 * fdatasync (tdm_commit_set_written()): bytes (size bytes, the batch as
 * written: header and compressed body) are valid only during the call. The
 * batch is not durable yet: its requests complete after the fdatasync. */
typedef void (*tdm_commit_written_cb)(void *data, const struct tdm_batch_header *header,
                                      const uint8_t *bytes, size_t size);

/* Thread-safe: yes; every field below mutex is guarded by it. */
struct tdm_commit {
    struct tdm_log *log;     /* Borrowed; appended to by the commit thread only. */
    struct tdm_index *index; /* Borrowed; written by the index thread only; may be NULL. */
    pthread_mutex_t mutex;
    pthread_cond_t work_cond;  /* Commit thread: pending work or closing. */
    pthread_cond_t done_cond;  /* tdm_commit_set_written(): the callback returned. */
    pthread_cond_t index_cond; /* Index thread, queries and backpressure. */
    struct tdm_queue pending;  /* Requests not yet in a batch. */
    uint32_t pending_count;
    struct tdm_queue index_queue; /* Durable batches not yet indexed. */
    size_t index_queue_size;      /* Bytes held in index_queue. */
    uint64_t durable_lsn; /* Last LSN made durable by the commit thread (lowered by a cut). */
    uint64_t indexed_lsn; /* Last LSN the index holds (lowered by a rebuild). */
    uint32_t index_rebuild_count; /* Rebuilds queued after cuts, not yet done. */
    int index_failed;             /* 0, or the error that stopped the index thread. */
    char index_message[TDM_DIAG_SIZE];
    bool closing; /* No new requests; drain and stop. */
    bool index_closing;
    bool index_urgent; /* A query waits for the index: commit now. */
    /* The index thread's CPU priority: background while nobody waits for it
     * (engine/commit.c "The index thread's priority"). */
    pid_t index_tid;            /* 0 until the index thread runs, and once it ended. */
    int index_nice;             /* Its nice value now. */
    int index_nice_normal;      /* The process's, restored while someone waits. */
    bool index_nice_traced;     /* A failed change was traced (once). */
    bool index_background;      /* It may come back to normal, so it runs in the background. */
    uint32_t index_queue_count; /* Batches in index_queue. */
    tdm_commit_written_cb written_cb; /* May be NULL: local batches are then written */
    void *written_data;               /* and fdatasync'd in one call. */
    bool written_running;             /* The commit thread may be calling written_cb. */
    pthread_t commit_thread;
    pthread_t index_thread;
};

/* Start the threads. indexed_lsn is where the index stands (caught up). */
int tdm_commit_start(struct tdm_commit *commit, struct tdm_log *log, struct tdm_index *index,
                     uint64_t indexed_lsn);
/* Finish every queued request (callbacks run), index what is durable, stop. */
void tdm_commit_stop(struct tdm_commit *commit);

/* Queue request (whose raw the commit now owns). Returns 0, or
 * TANDEM_ECANCELED (closing), TANDEM_EBUSY (too many pending); on error the
 * caller still owns raw.
 * RECEIVED: the commit thread appends request->batch with
 * tdm_log_append_batch_proven_unsynced() (every check of it first but the
 * body's checksum and decompression: whoever queued it decoded raw from these
 * same bytes), then fdatasyncs, completes the request with
 * the batch's header and hands raw to the index thread, as for a local batch.
 * CUT: the commit thread waits until the index thread is idle (it reads the
 * log while rebuilding), cuts with tdm_log_cut_after() and, if the log lost
 * LSNs, queues a rebuild of the index from the cut log: the index thread
 * empties the index and fills it again up to the cut point, then goes on with
 * the batches appended after the cut. Queries wait for that rebuild
 * (tdm_commit_wait_indexed()), so they never see a cut LSN. A crash before the
 * rebuild is finished leaves an index whose watermark the next open does not
 * trust (past the log's end, or another chain hash): open rebuilds it.
 * CUT with reindex set (tdm_node_reindex_running()): nothing is cut; the
 * rebuild up to the log's end is queued all the same. */
int tdm_commit_submit(struct tdm_commit *commit, struct tdm_commit_request *request);
/* tdm_commit_submit() for requests[0 .. count), all or none: they run in
 * this order, with nothing between them. */
int tdm_commit_submit_many(struct tdm_commit *commit, struct tdm_commit_request *requests,
                           uint32_t count);
/* Have cb called with every local batch once it is written, before its
 * fdatasync (NULL: never). The replication adapter ships a primary's batches
 * from there, so that the backups' fdatasyncs run beside the primary's. Waits
 * while the commit thread may be calling the previous callback: once this
 * returns, the previous one is never called again. Thread: any but the
 * commit thread. */
void tdm_commit_set_written(struct tdm_commit *commit, tdm_commit_written_cb cb, void *data);

/* Wait until a blocking request is done. */
void tdm_commit_wait(struct tdm_commit *commit, struct tdm_commit_request *request);

/* Wait until the index holds every LSN durable now and no rebuild is
 * pending. Returns 0, or the index thread's error. */
int tdm_commit_wait_indexed(struct tdm_commit *commit, struct tdm_diag *diag);

/* Decode the records of a verified raw body into a tdm_malloc'd array whose
 * strings point into raw. Returns 0, TANDEM_ECORRUPT or -ENOMEM. */
int tdm_commit_decode(const uint8_t *raw, const struct tdm_batch_header *header,
                      struct tandem_record **records, struct tdm_diag *diag);

/* Apply to index every verified batch of log whose LSNs lie in lsn_first ..
 * lsn_last (whole batches: none may straddle either bound), in groups of up to
 * TDM_COMMIT_INDEX_BATCHES_MAX per LMDB transaction. Used by open (catch-up,
 * rebuild), by tandem_verify() and by the index thread after a cut. Once *stop
 * (if not NULL) is true, the fill ends before its next batch with
 * TANDEM_ECANCELED (the groups applied stay applied). Returns 0, or the first
 * error of the scan, the decoding or the index, with diag.
 * Thread: the index's writer. */
int tdm_commit_index_fill(struct tdm_log *log, struct tdm_index *index, uint64_t lsn_first,
                          uint64_t lsn_last, const atomic_bool *stop, struct tdm_diag *diag);

#endif
