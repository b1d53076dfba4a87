/* engine/commit.c: group commit, the only multi-threaded part of the engine.
 *
 * Happy path:
 *   1. A writer encodes its records (outside any lock) into a request and
 *      queues it (tdm_commit_submit()); a blocking writer then waits.
 *   2. The commit thread takes every queued request that fits one batch
 *      (TDM_BATCH_RECORDS_MAX records, TDM_BATCH_RAW_SIZE_MAX bytes), joins
 *      their entries and appends one batch: one pwrite, one fdatasync.
 *      Requests that arrive meanwhile form the next batch: that is the group.
 *   3. Once tdm_log_append() returns, the records are durable: each request
 *      gets its LSNs, blocking writers wake, asynchronous callbacks run on the
 *      commit thread.
 *   4. The batch's body goes to the index thread, which applies up to
 *      TDM_COMMIT_INDEX_BATCHES_MAX batches per LMDB transaction, at most one
 *      transaction per TDM_COMMIT_INDEX_INTERVAL_MS unless a query waits (each
 *      LMDB commit costs an fdatasync that competes with the log's).
 *
 * Failure modes:
 *   - The append fails: every request of the batch completes with the error;
 *     the log is now failed (sticky), so later batches fail at once with
 *     TANDEM_EFAILED. Nothing is retried.
 *   - The index fails: the index thread stops and records why; queries report
 *     it; the log is unaffected and the next open rebuilds what is missing.
 *   - Too many queued requests: TANDEM_EBUSY to the submitter (backpressure).
 *   - The index falls behind by TDM_COMMIT_INDEX_QUEUE_SIZE_MAX bytes: the
 *     commit thread waits for it (backpressure).
 *
 * Close (tdm_commit_stop()): refuse new requests, let the commit thread finish
 * what is queued, then let the index thread drain, then join both. */
#include "commit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/trace.h"
#include "codec.h"

/* A durable batch waiting for the index thread. */
struct commit_indexable {
    struct tdm_queue link;
    struct tdm_batch_header header;
    struct tdm_log_location location;
    uint8_t *raw; /* Owned. */
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

/* Complete every request of the batch with status; run callbacks. */
static void commit_complete(struct tdm_commit *commit, struct tdm_queue *batch, int status,
                            uint64_t lsn_first, const char *message)
{
    struct tdm_queue callbacks;
    tdm_queue_init(&callbacks);
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
        if (r->cb != NULL) {
            tdm_queue_insert_tail(&callbacks, e);
        } else {
            r->done = true;
        }
    }
    if (status == 0) {
        commit->durable_lsn = lsn - 1;
    }
    pthread_cond_broadcast(&commit->done_cond);
    pthread_mutex_unlock(&commit->mutex);
    while (!tdm_queue_empty(&callbacks)) {
        struct tdm_queue *e = tdm_queue_head(&callbacks);
        struct tdm_commit_request *r = TDM_QUEUE_DATA(e, struct tdm_commit_request, link);
        tdm_queue_remove(e);
        r->cb(r->data, r->status, r->lsn_first);
        tdm_free(r);
    }
}

/* Hand a durable batch to the index thread, waiting while it is far behind. */
static void commit_to_index(struct tdm_commit *commit, const struct tdm_batch_header *header,
                            const struct tdm_log_location *location, uint8_t *raw)
{
    struct commit_indexable *item = tdm_malloc(sizeof(*item));
    pthread_mutex_lock(&commit->mutex);
    if (item == NULL || commit->index == NULL || commit->index_failed != 0) {
        if (item == NULL && commit->index_failed == 0) {
            commit->index_failed = -ENOMEM;
            snprintf(commit->index_message, sizeof(commit->index_message), "out of memory");
        }
        pthread_mutex_unlock(&commit->mutex);
        tdm_free(item);
        tdm_free(raw);
        return;
    }
    while (commit->index_queue_size > TDM_COMMIT_INDEX_QUEUE_SIZE_MAX &&
           commit->index_failed == 0) {
        pthread_cond_wait(&commit->index_cond, &commit->mutex);
    }
    item->header = *header;
    item->location = *location;
    item->raw = raw;
    tdm_queue_insert_tail(&commit->index_queue, &item->link);
    commit->index_queue_size += header->raw_size;
    commit->index_queue_count++;
    pthread_cond_broadcast(&commit->index_cond);
    pthread_mutex_unlock(&commit->mutex);
}

static void *commit_thread_main(void *arg)
{
    struct tdm_commit *commit = arg;
    pthread_mutex_lock(&commit->mutex);
    for (;;) {
        while (tdm_queue_empty(&commit->pending) && !commit->closing) {
            pthread_cond_wait(&commit->work_cond, &commit->mutex);
        }
        if (tdm_queue_empty(&commit->pending)) {
            break;
        }
        struct tdm_queue batch;
        tdm_queue_init(&batch);
        uint32_t count;
        size_t size;
        commit_take(commit, &batch, &count, &size);
        pthread_mutex_unlock(&commit->mutex);

        struct tdm_diag diag = {{0}};
        struct tdm_batch_header header;
        struct tdm_log_location location;
        uint8_t *raw = commit_join(&batch, size);
        int rv = raw == NULL ? -ENOMEM : 0;
        if (rv == 0) {
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
    }
    pthread_mutex_unlock(&commit->mutex);
    return NULL;
}

/* ---- index thread ---------------------------------------------------------------- */

static int commit_index_apply(struct tdm_commit *commit, struct tdm_queue *items, size_t count,
                              struct tdm_diag *diag)
{
    struct tdm_index_batch *batches = tdm_calloc(count, sizeof(*batches));
    struct tandem_record **owned = tdm_calloc(count, sizeof(*owned));
    if (batches == NULL || owned == NULL) {
        tdm_free(batches);
        tdm_free(owned);
        return -ENOMEM;
    }
    size_t i = 0;
    int rv = 0;
    for (struct tdm_queue *e = items->next; e != items && rv == 0; e = e->next, i++) {
        struct commit_indexable *item = TDM_QUEUE_DATA(e, struct commit_indexable, link);
        struct tandem_record *records = NULL;
        rv = tdm_commit_decode(item->raw, &item->header, &records, diag);
        batches[i].location = (struct tdm_index_location){
            .lsn_first = item->header.lsn_first,
            .record_count = item->header.record_count,
            .segment_lsn = item->location.segment_lsn,
            .offset = item->location.offset,
            .size = item->location.size,
        };
        batches[i].chain_hash = item->header.chain_hash;
        batches[i].records = records;
        owned[i] = records;
    }
    if (rv == 0) {
        rv = tdm_index_apply(commit->index, batches, count, diag);
    }
    for (size_t j = 0; j < count; j++) {
        tdm_free(owned[j]);
    }
    tdm_free(owned);
    tdm_free(batches);
    return rv;
}

/* Let more batches gather for one LMDB commit (under the mutex): wait until
 * TDM_COMMIT_INDEX_INTERVAL_MS after the first arrived, unless closing, a
 * query waits, or a full group is queued. */
static void commit_index_gather(struct tdm_commit *commit)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += TDM_COMMIT_INDEX_INTERVAL_MS * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    while (!commit->index_closing && !commit->index_urgent &&
           commit->index_queue_count < TDM_COMMIT_INDEX_BATCHES_MAX) {
        if (pthread_cond_timedwait(&commit->index_cond, &commit->mutex, &deadline) != 0) {
            break; /* The interval is over. */
        }
    }
    commit->index_urgent = false;
}

static void *commit_index_main(void *arg)
{
    struct tdm_commit *commit = arg;
    pthread_mutex_lock(&commit->mutex);
    for (;;) {
        while (tdm_queue_empty(&commit->index_queue) && !commit->index_closing) {
            pthread_cond_wait(&commit->index_cond, &commit->mutex);
        }
        if (tdm_queue_empty(&commit->index_queue)) {
            break;
        }
        commit_index_gather(commit);
        struct tdm_queue items;
        tdm_queue_init(&items);
        size_t count = 0;
        size_t size = 0;
        uint64_t lsn_last = 0;
        while (!tdm_queue_empty(&commit->index_queue) && count < TDM_COMMIT_INDEX_BATCHES_MAX) {
            struct tdm_queue *e = tdm_queue_head(&commit->index_queue);
            struct commit_indexable *item = TDM_QUEUE_DATA(e, struct commit_indexable, link);
            tdm_queue_remove(e);
            tdm_queue_insert_tail(&items, e);
            commit->index_queue_count--;
            size += item->header.raw_size;
            lsn_last = tdm_batch_lsn_last(&item->header);
            count++;
        }
        pthread_mutex_unlock(&commit->mutex);
        struct tdm_diag diag = {{0}};
        int rv = commit->index_failed == 0 ? commit_index_apply(commit, &items, count, &diag) : 0;
        while (!tdm_queue_empty(&items)) {
            struct tdm_queue *e = tdm_queue_head(&items);
            struct commit_indexable *item = TDM_QUEUE_DATA(e, struct commit_indexable, link);
            tdm_queue_remove(e);
            tdm_free(item->raw);
            tdm_free(item);
        }
        pthread_mutex_lock(&commit->mutex);
        commit->index_queue_size -= size;
        if (rv != 0 && commit->index_failed == 0) {
            commit->index_failed = rv;
            snprintf(commit->index_message, sizeof(commit->index_message), "index: %s",
                     diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
            tdm_tracef("%s", commit->index_message);
        } else if (rv == 0) {
            commit->indexed_lsn = lsn_last;
        }
        pthread_cond_broadcast(&commit->index_cond);
    }
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
    pthread_cond_broadcast(&commit->index_cond);
    pthread_mutex_unlock(&commit->mutex);
    pthread_join(commit->index_thread, NULL);
    tdm_assert(tdm_queue_empty(&commit->pending));
    tdm_assert(tdm_queue_empty(&commit->index_queue));
    pthread_cond_destroy(&commit->index_cond);
    pthread_cond_destroy(&commit->done_cond);
    pthread_cond_destroy(&commit->work_cond);
    pthread_mutex_destroy(&commit->mutex);
}

int tdm_commit_submit(struct tdm_commit *commit, struct tdm_commit_request *request)
{
    tdm_assert(request->record_count > 0);
    request->done = false;
    pthread_mutex_lock(&commit->mutex);
    int rv = 0;
    if (commit->closing) {
        rv = TANDEM_ECANCELED;
    } else if (commit->pending_count >= TDM_COMMIT_PENDING_MAX) {
        rv = TANDEM_EBUSY;
    } else {
        tdm_queue_insert_tail(&commit->pending, &request->link);
        commit->pending_count++;
        pthread_cond_signal(&commit->work_cond);
    }
    pthread_mutex_unlock(&commit->mutex);
    return rv;
}

void tdm_commit_wait(struct tdm_commit *commit, struct tdm_commit_request *request)
{
    tdm_assert(request->cb == NULL);
    pthread_mutex_lock(&commit->mutex);
    while (!request->done) {
        pthread_cond_wait(&commit->done_cond, &commit->mutex);
    }
    pthread_mutex_unlock(&commit->mutex);
}

int tdm_commit_wait_indexed(struct tdm_commit *commit, struct tdm_diag *diag)
{
    pthread_mutex_lock(&commit->mutex);
    uint64_t target = commit->durable_lsn;
    while (commit->indexed_lsn < target && commit->index_failed == 0) {
        commit->index_urgent = true; /* Do not make a query wait for the interval. */
        pthread_cond_broadcast(&commit->index_cond);
        pthread_cond_wait(&commit->index_cond, &commit->mutex);
    }
    int rv = commit->index_failed;
    if (rv != 0) {
        tdm_diag_printf(diag, "%s", commit->index_message);
    }
    pthread_mutex_unlock(&commit->mutex);
    return rv;
}
