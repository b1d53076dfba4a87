/* engine/commit.c: group commit, the only multi-threaded part of the engine.
 *
 * Happy path:
 *   1. A writer encodes its records (outside any lock) into a request and
 *      queues it (tdm_commit_submit()); a blocking writer then waits.
 *   2. The commit thread takes every queued request that fits one batch
 *      (TDM_BATCH_RECORDS_MAX records, TDM_BATCH_RAW_SIZE_MAX bytes), joins
 *      their entries and appends one batch: one pwrite, one fdatasync.
 *      Requests that arrive meanwhile form the next batch: that is the group.
 *      With a written callback (tdm_commit_set_written(), a replicated
 *      primary), the batch is written, handed to the callback, and only then
 *      fdatasync'd (tdm_log_append_unsynced(), tdm_log_sync()).
 *   3. Once the fdatasync returned, the records are durable: each request
 *      gets its LSNs, blocking writers wake, asynchronous callbacks run on the
 *      commit thread.
 *   4. The batch's body goes to the index thread. It keeps one LMDB write
 *      transaction open inside tdm_index_apply_stream() and applies the
 *      batches queued into it in chunks, at most every
 *      TDM_COMMIT_INDEX_CHUNK_MS (100 ms), and commits it once
 *      TDM_COMMIT_INDEX_INTERVAL_MS (5 s) have passed since its first chunk,
 *      a group was applied (TDM_COMMIT_INDEX_GROUP_SIZE_MAX bytes, 48 MiB, or
 *      TDM_COMMIT_INDEX_GROUP_BATCHES_MAX batches), someone waits for it, the
 *      node closes, or a rebuild is next (commit_index_next): each LMDB
 *      commit costs an fdatasync that competes with the log's and rewrites
 *      every page it touched. Only a commit moves indexed_lsn. It runs at
 *      nice 19 unless someone waits for it ("The index thread's priority"
 *      below).
 * On a backup (engine/node.h tdm_node_append_received, tdm_node_cut_after):
 *   5. A received batch is a request of its own in the same queue: the commit
 *      thread appends it as received (tdm_log_append_batch), completes it and
 *      hands its body to the index thread exactly as in 3-4. Local and
 *      received batches thus never interleave inside the log, whatever the
 *      node's role, and the index sees them in LSN order.
 *   6. A cut is a request too: the commit thread lets the index thread go
 *      idle, cuts the log, and queues a rebuild marker; the index thread
 *      empties the index and fills it from the cut log (the index cannot be
 *      rolled back in place: a customer record replaced its predecessor), then
 *      applies what was appended after the cut. Cuts are rare (a backup's
 *      divergent tail after its primary restarted), so the cost of a rebuild,
 *      one pass over the log, is paid rarely; queries wait for it.
 *
 * Failure modes:
 *   - The append fails: every request of the batch completes with the error;
 *     the log is now failed (sticky), so later batches fail at once with
 *     TANDEM_EFAILED. Nothing is retried.
 *   - The index fails (a rebuild after a cut included): the index thread
 *     stops and records why; queries report it; the log is unaffected and the
 *     next open rebuilds what is missing.
 *   - A received batch fails a check: its request completes with the code
 *     (TANDEM_ECORRUPT, TANDEM_EINVALID, TANDEM_ESTALEEPOCH) and nothing is
 *     written. A failed write, fdatasync or cut makes the log failed (sticky).
 *   - Too many queued requests: TANDEM_EBUSY to the submitter (backpressure).
 *   - The index falls behind by TDM_COMMIT_INDEX_QUEUE_SIZE_MAX bytes (128
 *     MiB, the group being applied included): the commit thread waits for it
 *     (backpressure). Requests queued meanwhile then go into full batches
 *     (step 2's bounds), so a batch written after a wait can be up to
 *     TDM_BATCH_RAW_SIZE_MAX before compression.
 *
 * Close (tdm_commit_stop()): refuse new requests, let the commit thread finish
 * what is queued, then let the index thread drain, then join both. */
#include "commit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/trace.h"
#include "base/wake.h"
#include "codec.h"

/* A durable batch waiting for the index thread, or a rebuild marker. */
struct commit_indexable {
    struct tdm_queue link;
    bool rebuild;         /* Empty the index and fill it from the log up to rebuild_lsn. */
    uint64_t rebuild_lsn; /* The log's end right after a cut. */
    struct tdm_batch_header header;
    struct tdm_log_location location;
    uint8_t *raw; /* Owned; NULL for a rebuild marker. */
};

int tdm_commit_decode(const uint8_t *raw, const struct tdm_batch_header *header,
                      struct tandem_record **records, struct tdm_diag *diag)
{
    struct tandem_record *out = tdm_calloc(header->record_count, sizeof(*out));
    if (out == NULL) {
        return -ENOMEM;
    }
    size_t offset = 0;
    for (uint32_t i = 0; i < header->record_count; i++) {
        const uint8_t *record;
        size_t size;
        int more = tdm_batch_next(raw, header->raw_size, &offset, &record, &size);
        tdm_assert(more == 1); /* tdm_batch_body_decode() counted the entries. */
        int rv = tdm_codec_decode(record, size, &out[i], diag);
        if (rv != 0) {
            tdm_diag_wrapf(diag, "LSN %llu", (unsigned long long)(header->lsn_first + i));
            tdm_free(out);
            return rv;
        }
    }
    *records = out;
    return 0;
}

/* ---- filling the index from the log (open, verify, rebuild after a cut) ------ */

#define COMMIT_FILL_SIZE_MAX (32u << 20) /* Decoded bytes held before applying a group. */

/* Collects scanned batches and applies them to the index in groups. */
struct commit_fill {
    struct tdm_index *index;
    struct tdm_index_batch batches[TDM_COMMIT_INDEX_BATCHES_MAX];
    struct tandem_record *records[TDM_COMMIT_INDEX_BATCHES_MAX];
    uint8_t *raws[TDM_COMMIT_INDEX_BATCHES_MAX];
    size_t count;
    size_t size;
    uint64_t lsn_first;
    uint64_t lsn_last;
    const atomic_bool *stop; /* NULL: none. */
    struct tdm_diag *diag;
};

static void commit_fill_release(struct commit_fill *c)
{
    for (size_t i = 0; i < c->count; i++) {
        tdm_free(c->records[i]);
        tdm_free(c->raws[i]);
    }
    c->count = 0;
    c->size = 0;
}

static int commit_fill_flush(struct commit_fill *c)
{
    int rv = c->count > 0 ? tdm_index_apply(c->index, c->batches, c->count, c->diag) : 0;
    commit_fill_release(c);
    return rv;
}

#define COMMIT_FILL_STOP 1 /* The scan passed lsn_last: not an error. */

static int commit_fill_cb(void *data, const struct tdm_batch_header *header,
                          const struct tdm_log_location *location, const uint8_t *raw)
{
    struct commit_fill *c = data;
    if (header->lsn_first < c->lsn_first) {
        return 0; /* Partly indexed already: cannot happen with whole batches. */
    }
    if (header->lsn_first > c->lsn_last) {
        return COMMIT_FILL_STOP;
    }
    if (c->stop != NULL && atomic_load(c->stop)) {
        tdm_diag_printf(c->diag, "index fill stopped before lsn %" PRIu64, header->lsn_first);
        return TANDEM_ECANCELED;
    }
    uint8_t *copy = tdm_malloc(header->raw_size + 1u);
    if (copy == NULL) {
        return -ENOMEM;
    }
    memcpy(copy, raw, header->raw_size);
    struct tandem_record *records;
    int rv = tdm_commit_decode(copy, header, &records, c->diag);
    if (rv != 0) {
        tdm_free(copy);
        return rv;
    }
    tdm_assert(c->count < TDM_COMMIT_INDEX_BATCHES_MAX);
    size_t i = c->count++;
    c->raws[i] = copy;
    c->records[i] = records;
    c->batches[i] = (struct tdm_index_batch){
        .location = {header->lsn_first, header->record_count, location->segment_lsn,
                     location->offset, location->size},
        .chain_hash = header->chain_hash,
        .records = records,
    };
    c->size += header->raw_size;
    if (c->count == TDM_COMMIT_INDEX_BATCHES_MAX || c->size >= COMMIT_FILL_SIZE_MAX) {
        return commit_fill_flush(c);
    }
    return 0;
}

int tdm_commit_index_fill(struct tdm_log *log, struct tdm_index *index, uint64_t lsn_first,
                          uint64_t lsn_last, const atomic_bool *stop, struct tdm_diag *diag)
{
    tdm_assert(lsn_first >= 1);
    tdm_assert(lsn_first <= lsn_last);
    struct commit_fill *c = tdm_calloc(1, sizeof(*c));
    if (c == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    c->index = index;
    c->lsn_first = lsn_first;
    c->lsn_last = lsn_last;
    c->stop = stop;
    c->diag = diag;
    int rv = tdm_log_scan(log, lsn_first, commit_fill_cb, c, diag);
    if (rv == COMMIT_FILL_STOP) {
        rv = 0;
    }
    if (rv == 0) {
        rv = commit_fill_flush(c);
    }
    commit_fill_release(c);
    tdm_free(c);
    tdm_assert(rv <= 0);
    return rv;
}

/* ---- the commit thread ------------------------------------------------------------ */

static int64_t commit_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Take the requests that fit one batch into batch (under the mutex). */
static void commit_take(struct tdm_commit *commit, struct tdm_queue *batch, uint32_t *count,
                        size_t *size)
{
    *count = 0;
    *size = 0;
    while (!tdm_queue_empty(&commit->pending)) {
        struct tdm_queue *head = tdm_queue_head(&commit->pending);
        struct tdm_commit_request *r = TDM_QUEUE_DATA(head, struct tdm_commit_request, link);
        if (r->kind != TDM_COMMIT_LOCAL) {
            break; /* It runs alone, after this batch. */
        }
        if (*count > 0 && (*count + r->record_count > TDM_BATCH_RECORDS_MAX ||
                           *size + r->raw_size > TDM_BATCH_RAW_SIZE_MAX)) {
            break;
        }
        tdm_queue_remove(head);
        commit->pending_count--;
        tdm_queue_insert_tail(batch, head);
        *count += r->record_count;
        *size += r->raw_size;
    }
    tdm_assert(*count <= TDM_BATCH_RECORDS_MAX);
    tdm_assert(*count > 0 || tdm_queue_empty(batch));
}

/* Join the entries of the batch's requests into one buffer. */
static uint8_t *commit_join(struct tdm_queue *batch, size_t size)
{
    uint8_t *raw = tdm_malloc(size > 0 ? size : 1);
    if (raw == NULL) {
        return NULL;
    }
    size_t offset = 0;
    for (struct tdm_queue *e = batch->next; e != batch; e = e->next) {
        struct tdm_commit_request *r = TDM_QUEUE_DATA(e, struct tdm_commit_request, link);
        memcpy(raw + offset, r->raw, r->raw_size);
        offset += r->raw_size;
    }
    tdm_assert(offset == size);
    return raw;
}

/* Wake the blocking writers of woken (under no lock). Each may return and
 * free its request as soon as its done word is set: it leaves woken first. */
static void commit_wake(struct tdm_queue *woken)
{
    while (!tdm_queue_empty(woken)) {
        struct tdm_queue *e = tdm_queue_head(woken);
        tdm_queue_remove(e);
        struct tdm_commit_request *r = TDM_QUEUE_DATA(e, struct tdm_commit_request, link);
        tdm_wake_set(&r->done, 1);
    }
}

/* Complete every request of the batch with status; wake the blocking
 * writers and run the callbacks once the lock is dropped. */
static void commit_complete(struct tdm_commit *commit, struct tdm_queue *batch, int status,
                            uint64_t lsn_first, const char *message)
{
    struct tdm_queue callbacks;
    struct tdm_queue woken;
    tdm_queue_init(&callbacks);
    tdm_queue_init(&woken);
    pthread_mutex_lock(&commit->mutex);
    uint64_t lsn = lsn_first;
    while (!tdm_queue_empty(batch)) {
        struct tdm_queue *e = tdm_queue_head(batch);
        struct tdm_commit_request *r = TDM_QUEUE_DATA(e, struct tdm_commit_request, link);
        tdm_queue_remove(e);
        tdm_free(r->raw);
        r->raw = NULL;
        r->status = status;
        r->lsn_first = status == 0 ? lsn : 0;
        snprintf(r->message, sizeof(r->message), "%s", status == 0 ? "" : message);
        lsn += r->record_count;
        tdm_queue_insert_tail(r->cb != NULL ? &callbacks : &woken, e);
    }
    if (status == 0) {
        commit->durable_lsn = lsn - 1;
    }
    pthread_mutex_unlock(&commit->mutex);
    commit_wake(&woken);
    while (!tdm_queue_empty(&callbacks)) {
        struct tdm_queue *e = tdm_queue_head(&callbacks);
        struct tdm_commit_request *r = TDM_QUEUE_DATA(e, struct tdm_commit_request, link);
        tdm_queue_remove(e);
        r->cb(r->data, r->status, r->lsn_first);
        tdm_free(r);
    }
}

/* Whether the index queue holds a full live group (under the mutex). */
static bool commit_index_group_full(const struct tdm_commit *commit)
{
    return commit->index_queue_count >= TDM_COMMIT_INDEX_GROUP_BATCHES_MAX ||
           commit->index_queue_size >= TDM_COMMIT_INDEX_GROUP_SIZE_MAX;
}

/* The index thread's priority. Under load, the index thread applying a
 * group is a CPU-bound thread among latency-bound ones (loop, commit and
 * client threads that each run for microseconds per wake): at equal
 * priority a thread woken for the next step of a write can wait for the
 * scheduler to preempt it, several times per write. Measured (backup1,
 * async64, fresh nodes, 3 alternating rounds), write latency p99 was
 * 5.7-7.0 ms at equal priority and 3.2-4.7 ms with the index threads at
 * nice 19, while almost every write made during an index group took 2.5 to
 * 9 ms. So the index thread runs at nice COMMIT_INDEX_NICE while nobody waits
 * for it, and at the process's own priority while someone does: a query, a
 * cut, or writes held back by a full index queue (commit_index_hurry_locked),
 * so that they do not wait behind every other thread. Raising the priority
 * back needs RLIMIT_NICE (tandemd raises it before it leaves root, where root may) or
 * CAP_SYS_NICE; without either the thread stays at the process's priority
 * (commit_index_may_restore), traced once: a query under heavy ingest
 * would otherwise wait for a thread that every other one preempts. */
#define COMMIT_INDEX_NICE 19

/* Whether the calling thread may go from nice 19 back to normal (nice). */
static bool commit_index_may_restore(int normal)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NICE, &limit) == 0 &&
        (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= (rlim_t)(20 - normal))) {
        return true;
    }
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &header, data) != 0) {
        return false;
    }
    return (data[CAP_TO_INDEX(CAP_SYS_NICE)].effective & CAP_TO_MASK(CAP_SYS_NICE)) != 0;
}

/* Give the index thread nice value nice (under the mutex). */
static void commit_index_nice_locked(struct tdm_commit *commit, int nice)
{
    if (commit->index_tid == 0 || commit->index_nice == nice) {
        return;
    }
    if (setpriority(PRIO_PROCESS, (id_t)commit->index_tid, nice) == 0) {
        commit->index_nice = nice;
    } else if (!commit->index_nice_traced) {
        commit->index_nice_traced = true;
        tdm_tracef("index thread: nice %d: %s; queries may wait longer for the index under "
                   "heavy ingest (docs/OPERATIONS.md \"The index thread's priority\")",
                   nice, strerror(errno));
    }
}

/* Someone waits for the index thread (under the mutex): wake it, no
 * interval, at normal priority. */
static void commit_index_hurry_locked(struct tdm_commit *commit)
{
    commit->index_urgent = true;
    commit_index_nice_locked(commit, commit->index_nice_normal);
    pthread_cond_broadcast(&commit->index_cond);
}

/* Queue item (taken) for the index thread, waiting while it is far behind.
 * Without an index, or once it failed, the item is dropped. */
static void commit_index_push(struct tdm_commit *commit, struct commit_indexable *item)
{
    pthread_mutex_lock(&commit->mutex);
    if (item == NULL || commit->index == NULL || commit->index_failed != 0) {
        if (item == NULL && commit->index_failed == 0) {
            commit->index_failed = -ENOMEM;
            snprintf(commit->index_message, sizeof(commit->index_message), "out of memory");
        }
        pthread_mutex_unlock(&commit->mutex);
        if (item != NULL) {
            tdm_free(item->raw);
            tdm_free(item);
        }
        return;
    }
    while (commit->index_queue_size > TDM_COMMIT_INDEX_QUEUE_SIZE_MAX &&
           commit->index_failed == 0) {
        commit_index_hurry_locked(commit); /* Writes wait for it now. */
        pthread_cond_wait(&commit->index_cond, &commit->mutex);
    }
    bool was_empty = tdm_queue_empty(&commit->index_queue);
    tdm_queue_insert_tail(&commit->index_queue, &item->link);
    commit->index_queue_size += item->header.raw_size;
    commit->index_queue_count++;
    /* The index thread waits for a first batch, or gathers until the
     * interval ends or a group is full: a batch in between wakes no one (a
     * thousand needless wakes a second under load). */
    if (was_empty || commit_index_group_full(commit)) {
        pthread_cond_broadcast(&commit->index_cond);
    }
    pthread_mutex_unlock(&commit->mutex);
}

/* Hand a durable batch (and raw, taken) to the index thread. */
static void commit_to_index(struct tdm_commit *commit, const struct tdm_batch_header *header,
                            const struct tdm_log_location *location, uint8_t *raw)
{
    tdm_assert(raw != NULL);
    tdm_assert(header->record_count > 0);
    struct commit_indexable *item = tdm_calloc(1, sizeof(*item));
    if (item == NULL) {
        tdm_free(raw);
    } else {
        item->header = *header;
        item->location = *location;
        item->raw = raw;
    }
    commit_index_push(commit, item);
}

/* Complete a RECEIVED or CUT request (under no lock): run its received_cb,
 * or wake its blocking waiter. Either may free request at once: nothing
 * touches it after. */
static void commit_complete_one(struct tdm_commit *commit, struct tdm_commit_request *request,
                                int status, const char *message)
{
    (void)commit;
    tdm_assert(request->cb == NULL);
    tdm_assert(request->kind != TDM_COMMIT_LOCAL);
    request->status = status;
    snprintf(request->message, sizeof(request->message), "%s", status == 0 ? "" : message);
    if (request->received_cb != NULL) {
        request->received_cb(request);
    } else {
        tdm_wake_set(&request->done, 1);
    }
}

/* Most RECEIVED requests appended back to back before one fdatasync. */
#define COMMIT_RECEIVED_RUN_MAX 64

/* RECEIVED: append a run of batches as received (count requests, taken off
 * the queue in order), with one fdatasync after the last if any asks for it,
 * then complete each and index it like a local batch. A request whose append
 * failed, or whose fdatasync failed, completes with that error. */
static void commit_received(struct tdm_commit *commit, struct tdm_commit_request **run,
                            uint32_t count)
{
    struct tdm_batch_header headers[COMMIT_RECEIVED_RUN_MAX];
    struct tdm_log_location locations[COMMIT_RECEIVED_RUN_MAX];
    uint8_t *raws[COMMIT_RECEIVED_RUN_MAX];
    int status[COMMIT_RECEIVED_RUN_MAX];
    struct tdm_diag diags[COMMIT_RECEIVED_RUN_MAX];
    tdm_assert(count >= 1 && count <= COMMIT_RECEIVED_RUN_MAX);
    bool sync = false;
    uint32_t last_ok = count; /* count: none appended. */
    for (uint32_t i = 0; i < count; i++) {
        struct tdm_commit_request *request = run[i];
        tdm_assert(request->kind == TDM_COMMIT_RECEIVED);
        tdm_assert(request->raw != NULL);
        diags[i] = (struct tdm_diag){{0}};
        /* Its body was proven where it was decoded (node_received_decode). */
        status[i] =
            tdm_log_append_batch_proven_unsynced(commit->log, request->batch, request->batch_size,
                                                 &headers[i], &locations[i], &diags[i]);
        raws[i] = request->raw;
        request->raw = NULL;
        sync = sync || request->sync;
        if (status[i] == 0) {
            /* raw was decoded from the same bytes (tdm_node_append_received). */
            tdm_assert(headers[i].raw_size == request->raw_size);
            tdm_assert(headers[i].record_count == request->record_count);
            last_ok = i;
        }
    }
    if (sync && last_ok < count) {
        struct tdm_diag diag = {{0}};
        int rv = tdm_log_sync(commit->log, &diag); /* Also what was appended unsynced before. */
        if (rv != 0) {
            for (uint32_t i = 0; i < count; i++) {
                if (status[i] == 0) {
                    status[i] = rv;
                    diags[i] = diag;
                }
            }
        } else {
            pthread_mutex_lock(&commit->mutex);
            commit->durable_lsn = tdm_batch_lsn_last(&headers[last_ok]);
            pthread_mutex_unlock(&commit->mutex);
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        struct tdm_commit_request *request = run[i];
        if (status[i] == 0) {
            request->header = headers[i];
            request->lsn_first = headers[i].lsn_first;
        }
        commit_complete_one(commit, request, status[i], diags[i].message);
    }
    for (uint32_t i = 0; i < count; i++) {
        if (status[i] != 0) {
            tdm_free(raws[i]);
            continue;
        }
        /* Indexed at once, durable or not yet: an index ahead of the log after
         * a crash fails its watermark check on open and is rebuilt. */
        commit_to_index(commit, &headers[i], &locations[i], raws[i]);
    }
}

/* Wait (under the mutex) until the index thread holds every durable LSN and
 * has no rebuild pending, or has failed (then it touches neither the index nor
 * the log any more). */
static void commit_index_drain(struct tdm_commit *commit)
{
    while (commit->index != NULL && commit->index_failed == 0 &&
           (commit->indexed_lsn < commit->durable_lsn || commit->index_rebuild_count > 0)) {
        commit_index_hurry_locked(commit);
        pthread_cond_wait(&commit->index_cond, &commit->mutex);
    }
}

/* CUT: let the index thread go idle (a rebuild reads the log, which the cut
 * truncates), cut, then queue a rebuild if the log lost LSNs. The rebuild is
 * counted from before the cut, so that no query that starts after the cut
 * began uses the index until it is rebuilt. */
static void commit_cut(struct tdm_commit *commit, struct tdm_commit_request *request)
{
    tdm_assert(request->kind == TDM_COMMIT_CUT);
    pthread_mutex_lock(&commit->mutex);
    commit_index_drain(commit);
    commit->index_rebuild_count++;
    pthread_mutex_unlock(&commit->mutex);

    uint64_t lsn_before = commit->log->lsn_last; /* The commit thread is the writer. */
    struct tdm_diag diag = {{0}};
    /* A reindex (tdm_node_reindex_running()) is a cut of nothing whose rebuild runs anyway. */
    int rv = request->reindex ? 0 : tdm_log_cut_after(commit->log, request->cut_after_lsn, &diag);
    uint64_t lsn_after = commit->log->lsn_last;
    tdm_assert(rv != 0 || lsn_after <= lsn_before);
    bool cut = rv == 0 && (lsn_after < lsn_before || (request->reindex && lsn_after > 0));
    struct commit_indexable *marker = cut ? tdm_calloc(1, sizeof(*marker)) : NULL;

    pthread_mutex_lock(&commit->mutex);
    if (cut && !request->reindex) {
        tdm_assert(lsn_after == request->cut_after_lsn);
        commit->durable_lsn = lsn_after;
    }
    if (marker != NULL && commit->index != NULL && commit->index_failed == 0) {
        /* The queue is empty (drained above, and only this thread fills it). */
        tdm_assert(tdm_queue_empty(&commit->index_queue));
        marker->rebuild = true;
        marker->rebuild_lsn = lsn_after;
        tdm_queue_insert_tail(&commit->index_queue, &marker->link);
        commit->index_queue_count++;
        marker = NULL;
        tdm_tracef("%s LSN %" PRIu64 ": rebuilding the index from the log",
                   request->reindex ? "reindex up to" : "cut after", lsn_after);
    } else {
        commit->index_rebuild_count--;
        if (cut && commit->index != NULL && commit->index_failed == 0) {
            commit->index_failed = -ENOMEM; /* The marker's allocation failed. */
            snprintf(commit->index_message, sizeof(commit->index_message),
                     "rebuild after a cut: out of memory");
        }
    }
    pthread_cond_broadcast(&commit->index_cond);
    pthread_mutex_unlock(&commit->mutex);
    tdm_free(marker);
    commit_complete_one(commit, request, rv, diag.message);
}

static void *commit_thread_main(void *arg)
{
    struct tdm_commit *commit = arg;
    (void)pthread_setname_np(pthread_self(), "tdm-commit"); /* For top -H, perf; best effort. */
    pthread_mutex_lock(&commit->mutex);
    for (;;) {
        while (tdm_queue_empty(&commit->pending) && !commit->closing) {
            pthread_cond_wait(&commit->work_cond, &commit->mutex);
        }
        if (tdm_queue_empty(&commit->pending)) {
            break;
        }
        struct tdm_commit_request *head =
            TDM_QUEUE_DATA(tdm_queue_head(&commit->pending), struct tdm_commit_request, link);
        if (head->kind == TDM_COMMIT_RECEIVED) {
            struct tdm_commit_request *run[COMMIT_RECEIVED_RUN_MAX];
            uint32_t count = 0;
            while (count < COMMIT_RECEIVED_RUN_MAX && !tdm_queue_empty(&commit->pending)) {
                struct tdm_commit_request *r = TDM_QUEUE_DATA(tdm_queue_head(&commit->pending),
                                                              struct tdm_commit_request, link);
                if (r->kind != TDM_COMMIT_RECEIVED) {
                    break;
                }
                tdm_queue_remove(&r->link);
                commit->pending_count--;
                run[count++] = r;
            }
            pthread_mutex_unlock(&commit->mutex);
            commit_received(commit, run, count);
            pthread_mutex_lock(&commit->mutex);
            continue;
        }
        if (head->kind == TDM_COMMIT_CUT) {
            tdm_queue_remove(&head->link);
            commit->pending_count--;
            pthread_mutex_unlock(&commit->mutex);
            commit_cut(commit, head);
            pthread_mutex_lock(&commit->mutex);
            continue;
        }
        struct tdm_queue batch;
        tdm_queue_init(&batch);
        uint32_t count;
        size_t size;
        commit_take(commit, &batch, &count, &size);
        tdm_commit_written_cb written = commit->written_cb;
        void *written_data = commit->written_data;
        commit->written_running = written != NULL;
        pthread_mutex_unlock(&commit->mutex);

        struct tdm_diag diag = {{0}};
        struct tdm_batch_header header;
        struct tdm_log_location location;
        uint8_t *raw = commit_join(&batch, size);
        int rv = raw == NULL ? -ENOMEM : 0;
        if (rv == 0 && written != NULL) {
            const uint8_t *bytes = NULL;
            rv = tdm_log_append_unsynced(commit->log, raw, size, count, commit_now_ns(), &header,
                                         &location, &bytes, &diag);
            if (rv == 0) {
                written(written_data, &header, bytes, location.size);
                rv = tdm_log_sync(commit->log, &diag);
            }
        } else if (rv == 0) {
            rv = tdm_log_append(commit->log, raw, size, count, commit_now_ns(), &header, &location,
                                &diag);
        }
        if (rv != 0) {
            if (rv == -ENOMEM) {
                tdm_diag_printf(&diag, "out of memory");
            }
            commit_complete(commit, &batch, rv, 0, diag.message);
            tdm_free(raw);
        } else {
            commit_complete(commit, &batch, 0, header.lsn_first, NULL);
            commit_to_index(commit, &header, &location, raw);
        }
        pthread_mutex_lock(&commit->mutex);
        if (commit->written_running) {
            commit->written_running = false;
            pthread_cond_broadcast(&commit->done_cond); /* tdm_commit_set_written() waits. */
        }
    }
    pthread_mutex_unlock(&commit->mutex);
    return NULL;
}

/* ---- index thread ---------------------------------------------------------------- */

/* The queue holds a group being applied (its last batch may cross the byte
 * bound) and a whole next group gathering behind it: writers wait only once
 * more than a whole group is queued behind the one being applied. */
tdm_static_assert((uint64_t)TDM_COMMIT_INDEX_GROUP_SIZE_MAX + TDM_BATCH_RAW_SIZE_MAX +
                      TDM_COMMIT_INDEX_GROUP_SIZE_MAX <=
                  TDM_COMMIT_INDEX_QUEUE_SIZE_MAX);
/* Behind a full group writers keep at least the 48 MiB they had with 16 MiB
 * groups in a 64 MiB queue. 48 MiB groups in that queue left them 16 MiB, and
 * under a slow index (CI's AddressSanitizer build) they waited for it
 * (docs/BENCHMARKS.md). */
tdm_static_assert(TDM_COMMIT_INDEX_QUEUE_SIZE_MAX - TDM_COMMIT_INDEX_GROUP_SIZE_MAX >= (48u << 20));

/* Take (under the mutex) the next group from the index queue into items: up
 * to TDM_COMMIT_INDEX_GROUP_BATCHES_MAX batches, until their decoded size
 * reaches TDM_COMMIT_INDEX_GROUP_SIZE_MAX, or one rebuild marker alone. Sets
 * *rebuild, *count, *size and *lsn_last (the LSN the index holds once the
 * group is applied). */
static void commit_index_take(struct tdm_commit *commit, struct tdm_queue *items, bool *rebuild,
                              size_t *count, size_t *size, uint64_t *lsn_last)
{
    *rebuild = false;
    *count = 0;
    *size = 0;
    *lsn_last = 0;
    while (!tdm_queue_empty(&commit->index_queue) && *count < TDM_COMMIT_INDEX_GROUP_BATCHES_MAX &&
           *size < TDM_COMMIT_INDEX_GROUP_SIZE_MAX) {
        struct tdm_queue *e = tdm_queue_head(&commit->index_queue);
        struct commit_indexable *item = TDM_QUEUE_DATA(e, struct commit_indexable, link);
        if (item->rebuild && *count > 0) {
            break; /* A marker runs alone, after the batches before it. */
        }
        tdm_queue_remove(e);
        tdm_queue_insert_tail(items, e);
        commit->index_queue_count--;
        (*count)++;
        if (item->rebuild) {
            *rebuild = true;
            *lsn_last = item->rebuild_lsn;
            break;
        }
        *size += item->header.raw_size;
        *lsn_last = tdm_batch_lsn_last(&item->header);
    }
    tdm_assert(*count > 0);
    tdm_assert(!*rebuild || *count == 1);
}

/* Empty the index and fill it from the log up to lsn_last (after a cut). */
static int commit_index_rebuild(struct tdm_commit *commit, uint64_t lsn_last, struct tdm_diag *diag)
{
    int rv = tdm_index_clear(commit->index, diag);
    if (rv == 0 && lsn_last > 0) {
        rv = tdm_commit_index_fill(commit->log, commit->index, 1, lsn_last, NULL, diag);
    }
    if (rv != 0) {
        tdm_diag_wrapf(diag, "rebuild after a cut");
    }
    return rv;
}

/* Back to the background (under the mutex) unless someone waits. */
static void commit_index_background_locked(struct tdm_commit *commit)
{
    if (commit->index_background && !commit->index_urgent && commit->index_rebuild_count == 0 &&
        !commit->index_closing) {
        commit_index_nice_locked(commit, COMMIT_INDEX_NICE);
    }
}

/* CLOCK_MONOTONIC ms from now, for pthread_cond_timedwait (the conds are
 * made with that clock, tdm_commit_start). */
static struct timespec commit_after_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static bool commit_past(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* One LMDB transaction of the index thread (tdm_index_apply_stream()): what
 * it was handed so far and the chunk in hand. Index thread only. */
struct commit_stream {
    struct tdm_commit *commit;
    bool started;                    /* A chunk was handed over. */
    struct timespec deadline;        /* Commit by then: TDM_COMMIT_INDEX_INTERVAL_MS after start. */
    size_t size;                     /* Decoded bytes handed over so far. */
    size_t count;                    /* Batches handed over so far. */
    struct tdm_queue items;          /* The chunk in hand, taken off the index queue, */
    size_t chunk_size;               /* its decoded bytes, */
    size_t chunk_count;              /* its batches, */
    struct tdm_index_batch *batches; /* and their decoded records, */
    struct tandem_record **records;  /* owned here. */
    int rv;                          /* Why a chunk could not be handed over; or 0. */
    struct tdm_diag diag;
};

/* Free the chunk in hand and give its bytes back to the queue's bound. */
static void commit_stream_release(struct commit_stream *st)
{
    struct tdm_commit *commit = st->commit;
    for (size_t i = 0; st->records != NULL && i < st->chunk_count; i++) {
        tdm_free(st->records[i]);
    }
    tdm_free(st->records);
    tdm_free(st->batches);
    st->records = NULL;
    st->batches = NULL;
    while (!tdm_queue_empty(&st->items)) {
        struct tdm_queue *e = tdm_queue_head(&st->items);
        struct commit_indexable *item = TDM_QUEUE_DATA(e, struct commit_indexable, link);
        tdm_queue_remove(e);
        tdm_free(item->raw);
        tdm_free(item);
    }
    if (st->chunk_count > 0) {
        pthread_mutex_lock(&commit->mutex);
        commit->index_queue_size -= st->chunk_size;
        pthread_cond_broadcast(&commit->index_cond); /* Writers held back by the bound. */
        pthread_mutex_unlock(&commit->mutex);
    }
    st->chunk_size = 0;
    st->chunk_count = 0;
}

/* Decode the chunk in hand into st->batches. */
static int commit_stream_decode(struct commit_stream *st)
{
    st->batches = tdm_calloc(st->chunk_count, sizeof(*st->batches));
    st->records = tdm_calloc(st->chunk_count, sizeof(*st->records));
    if (st->batches == NULL || st->records == NULL) {
        tdm_diag_printf(&st->diag, "out of memory");
        return -ENOMEM;
    }
    size_t i = 0;
    for (struct tdm_queue *e = st->items.next; e != &st->items; e = e->next, i++) {
        struct commit_indexable *item = TDM_QUEUE_DATA(e, struct commit_indexable, link);
        struct tdm_index_batch *b = &st->batches[i];
        int rv = tdm_commit_decode(item->raw, &item->header, &st->records[i], &st->diag);
        if (rv != 0) {
            return rv;
        }
        b->records = st->records[i];
        b->location = (struct tdm_index_location){
            .lsn_first = item->header.lsn_first,
            .record_count = item->header.record_count,
            .segment_lsn = item->location.segment_lsn,
            .offset = item->location.offset,
            .size = item->location.size,
        };
        b->chain_hash = item->header.chain_hash;
    }
    return 0;
}

/* The index thread's tdm_index_next_cb: hand over the batches queued since
 * the last chunk, at most every TDM_COMMIT_INDEX_CHUNK_MS (at once when a
 * whole group is queued, when someone waits, or when closing), or end the
 * transaction: once TDM_COMMIT_INDEX_INTERVAL_MS have passed since its first
 * chunk, a group's worth was applied, someone waits, the node closes, or a
 * rebuild marker is next. */
static size_t commit_index_next(void *data, const struct tdm_index_batch **batches)
{
    struct commit_stream *st = data;
    struct tdm_commit *commit = st->commit;
    commit_stream_release(st);
    if (st->rv != 0) {
        return 0;
    }
    pthread_mutex_lock(&commit->mutex);
    /* A waiter that hurried again before the last commit may have gone. */
    commit_index_background_locked(commit);
    if (!st->started) {
        st->deadline = commit_after_ms(TDM_COMMIT_INDEX_INTERVAL_MS);
    }
    struct timespec chunk_end = commit_after_ms(TDM_COMMIT_INDEX_CHUNK_MS);
    bool take = false;
    for (;;) {
        if (commit->index_failed != 0) {
            break; /* Failed by a cut (commit_cut): touch the index no more. */
        }
        bool hurry = commit->index_closing || commit->index_urgent;
        bool empty = tdm_queue_empty(&commit->index_queue);
        bool marker = !empty && TDM_QUEUE_DATA(tdm_queue_head(&commit->index_queue),
                                               struct commit_indexable, link)
                                    ->rebuild;
        if (st->started && (hurry || marker || commit_past(&st->deadline) ||
                            st->size >= TDM_COMMIT_INDEX_GROUP_SIZE_MAX ||
                            st->count >= TDM_COMMIT_INDEX_GROUP_BATCHES_MAX)) {
            if (hurry) {
                commit->index_urgent = false; /* Served by this commit. */
            }
            break;
        }
        if (empty || marker) {
            if (!st->started) {
                break; /* Nothing to begin with. */
            }
        } else if (hurry || commit_index_group_full(commit) || commit_past(&chunk_end)) {
            take = true;
            break;
        }
        /* Wait for the chunk's end, or with an empty queue for the deadline. */
        const struct timespec *until = empty && st->started ? &st->deadline : &chunk_end;
        (void)pthread_cond_timedwait(&commit->index_cond, &commit->mutex, until);
    }
    if (!take) {
        pthread_mutex_unlock(&commit->mutex);
        return 0;
    }
    bool rebuild;
    uint64_t lsn_last;
    commit_index_take(commit, &st->items, &rebuild, &st->chunk_count, &st->chunk_size, &lsn_last);
    tdm_assert(!rebuild); /* A marker ends the transaction before it. */
    pthread_mutex_unlock(&commit->mutex);
    st->rv = commit_stream_decode(st);
    if (st->rv != 0) {
        return 0; /* What was applied is committed; the thread then fails the index. */
    }
    st->started = true;
    st->size += st->chunk_size;
    st->count += st->chunk_count;
    *batches = st->batches;
    return st->chunk_count;
}

static void *commit_index_main(void *arg)
{
    struct tdm_commit *commit = arg;
    (void)pthread_setname_np(pthread_self(), "tdm-index"); /* For top -H, perf; best effort. */
    pthread_mutex_lock(&commit->mutex);
    commit->index_tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)commit->index_tid);
    commit->index_nice = errno == 0 ? nice : 0;
    commit->index_nice_normal = commit->index_nice;
    if (!commit_index_may_restore(commit->index_nice_normal)) {
        commit->index_nice_traced = true;
        tdm_tracef("index thread: stays at nice %d, not in the background: it could not come "
                   "back while a query waits (RLIMIT_NICE below %d, no CAP_SYS_NICE; "
                   "docs/OPERATIONS.md \"The index thread's priority\")",
                   commit->index_nice_normal, 20 - commit->index_nice_normal);
    } else {
        commit->index_background = true;
        if (!commit->index_closing) {
            commit_index_nice_locked(commit, COMMIT_INDEX_NICE);
        }
    }
    for (;;) {
        while (tdm_queue_empty(&commit->index_queue) && !commit->index_closing) {
            pthread_cond_wait(&commit->index_cond, &commit->mutex);
        }
        if (tdm_queue_empty(&commit->index_queue)) {
            break;
        }
        struct commit_indexable *head =
            TDM_QUEUE_DATA(tdm_queue_head(&commit->index_queue), struct commit_indexable, link);
        bool failed = commit->index_failed != 0;
        struct tdm_diag diag = {{0}};
        int rv = 0;
        if (head->rebuild || failed) {
            /* A rebuild marker alone; or, once the index failed, a group
             * dropped unapplied. */
            struct tdm_queue items;
            tdm_queue_init(&items);
            bool rebuild;
            size_t count;
            size_t size;
            uint64_t lsn_last;
            commit_index_take(commit, &items, &rebuild, &count, &size, &lsn_last);
            pthread_mutex_unlock(&commit->mutex);
            if (rebuild && !failed) {
                rv = commit_index_rebuild(commit, lsn_last, &diag);
            }
            while (!tdm_queue_empty(&items)) {
                struct tdm_queue *e = tdm_queue_head(&items);
                struct commit_indexable *item = TDM_QUEUE_DATA(e, struct commit_indexable, link);
                tdm_queue_remove(e);
                tdm_free(item->raw);
                tdm_free(item);
            }
            pthread_mutex_lock(&commit->mutex);
            commit->index_queue_size -= size;
            if (rebuild) {
                tdm_assert(commit->index_rebuild_count > 0);
                commit->index_rebuild_count--;
            }
            if (rebuild && rv == 0 && !failed) {
                commit->indexed_lsn = lsn_last; /* Lower than before. */
            }
        } else {
            struct commit_stream st = {.commit = commit};
            tdm_queue_init(&st.items);
            pthread_mutex_unlock(&commit->mutex);
            uint64_t lsn_last = 0;
            rv = tdm_index_apply_stream(commit->index, commit_index_next, &st, &lsn_last, &diag);
            commit_stream_release(&st);
            if (rv == 0 && st.rv != 0) {
                rv = st.rv;
                diag = st.diag;
            }
            pthread_mutex_lock(&commit->mutex);
            if (lsn_last > 0) {
                commit->indexed_lsn = lsn_last; /* Committed, even if a chunk then failed. */
            }
        }
        if (rv != 0 && commit->index_failed == 0) {
            commit->index_failed = rv;
            snprintf(commit->index_message, sizeof(commit->index_message), "index: %s",
                     diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
            tdm_tracef("%s", commit->index_message);
        }
        /* Served: a waiter that still waits wakes below and hurries again. */
        commit->index_urgent = false;
        commit_index_background_locked(commit);
        pthread_cond_broadcast(&commit->index_cond);
    }
    commit->index_tid = 0;
    pthread_mutex_unlock(&commit->mutex);
    return NULL;
}

/* ---- lifecycle and requests ------------------------------------------------------- */

int tdm_commit_start(struct tdm_commit *commit, struct tdm_log *log, struct tdm_index *index,
                     uint64_t indexed_lsn)
{
    memset(commit, 0, sizeof(*commit));
    commit->log = log;
    commit->index = index;
    commit->durable_lsn = log->lsn_last;
    commit->indexed_lsn = indexed_lsn;
    tdm_queue_init(&commit->pending);
    tdm_queue_init(&commit->index_queue);
    pthread_mutex_init(&commit->mutex, NULL);
    pthread_cond_init(&commit->work_cond, NULL);
    pthread_cond_init(&commit->done_cond, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&commit->index_cond, &attr);
    pthread_condattr_destroy(&attr);
    int rv = pthread_create(&commit->index_thread, NULL, commit_index_main, commit);
    if (rv != 0) {
        return -rv;
    }
    rv = pthread_create(&commit->commit_thread, NULL, commit_thread_main, commit);
    if (rv != 0) {
        pthread_mutex_lock(&commit->mutex);
        commit->index_closing = true;
        pthread_cond_broadcast(&commit->index_cond);
        pthread_mutex_unlock(&commit->mutex);
        pthread_join(commit->index_thread, NULL);
        return -rv;
    }
    return 0;
}

void tdm_commit_stop(struct tdm_commit *commit)
{
    pthread_mutex_lock(&commit->mutex);
    commit->closing = true;
    pthread_cond_broadcast(&commit->work_cond);
    pthread_mutex_unlock(&commit->mutex);
    pthread_join(commit->commit_thread, NULL);
    pthread_mutex_lock(&commit->mutex);
    commit->index_closing = true;
    commit_index_hurry_locked(commit); /* The close waits for it. */
    pthread_mutex_unlock(&commit->mutex);
    pthread_join(commit->index_thread, NULL);
    tdm_assert(tdm_queue_empty(&commit->pending));
    tdm_assert(tdm_queue_empty(&commit->index_queue));
    pthread_cond_destroy(&commit->index_cond);
    pthread_cond_destroy(&commit->done_cond);
    pthread_cond_destroy(&commit->work_cond);
    pthread_mutex_destroy(&commit->mutex);
}

void tdm_commit_set_written(struct tdm_commit *commit, tdm_commit_written_cb cb, void *data)
{
    pthread_mutex_lock(&commit->mutex);
    while (commit->written_running) {
        pthread_cond_wait(&commit->done_cond, &commit->mutex);
    }
    commit->written_cb = cb;
    commit->written_data = data;
    pthread_mutex_unlock(&commit->mutex);
}

static void commit_check_request(struct tdm_commit_request *request)
{
    tdm_assert(request->kind >= TDM_COMMIT_LOCAL);
    tdm_assert(request->kind <= TDM_COMMIT_CUT);
    if (request->kind != TDM_COMMIT_CUT) {
        tdm_assert(request->record_count > 0);
        tdm_assert(request->raw != NULL);
    }
    if (request->kind == TDM_COMMIT_RECEIVED) {
        tdm_assert(request->batch != NULL);
        tdm_assert(request->batch_size >= TDM_BATCH_HEADER_SIZE);
    }
    tdm_assert(request->kind == TDM_COMMIT_LOCAL || request->cb == NULL);
    tdm_assert(request->kind == TDM_COMMIT_RECEIVED || request->received_cb == NULL);
    atomic_store_explicit(&request->done, 0, memory_order_relaxed); /* The mutex publishes it. */
}

int tdm_commit_submit_many(struct tdm_commit *commit, struct tdm_commit_request *requests,
                           uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        commit_check_request(&requests[i]);
    }
    pthread_mutex_lock(&commit->mutex);
    int rv = 0;
    if (commit->closing) {
        rv = TANDEM_ECANCELED;
    } else if (count > TDM_COMMIT_PENDING_MAX - commit->pending_count) {
        rv = TANDEM_EBUSY;
    } else {
        for (uint32_t i = 0; i < count; i++) {
            tdm_queue_insert_tail(&commit->pending, &requests[i].link);
        }
        commit->pending_count += count;
        pthread_cond_signal(&commit->work_cond);
    }
    pthread_mutex_unlock(&commit->mutex);
    return rv;
}

int tdm_commit_submit(struct tdm_commit *commit, struct tdm_commit_request *request)
{
    return tdm_commit_submit_many(commit, request, 1);
}

void tdm_commit_wait(struct tdm_commit *commit, struct tdm_commit_request *request)
{
    (void)commit;
    tdm_assert(request->cb == NULL);
    (void)tdm_wake_sleep(&request->done);
}

int tdm_commit_wait_indexed(struct tdm_commit *commit, struct tdm_diag *diag)
{
    pthread_mutex_lock(&commit->mutex);
    uint64_t target = commit->durable_lsn;
    while ((commit->indexed_lsn < target || commit->index_rebuild_count > 0) &&
           commit->index_failed == 0) {
        commit_index_hurry_locked(commit);
        pthread_cond_wait(&commit->index_cond, &commit->mutex);
    }
    int rv = commit->index_failed;
    if (rv != 0) {
        tdm_diag_printf(diag, "%s", commit->index_message);
    }
    pthread_mutex_unlock(&commit->mutex);
    return rv;
}
