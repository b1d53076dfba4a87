/* net/uv_node.c: the replication adapter of one node. See net/uv_node.h for
 * the order of actions and what each becomes; docs/PROTOCOL.md §2-§6 for the
 * protocol; docs/FORMAT.md "Epoch history" for DIR/epochs.
 *
 * Happy path, primary: a client write is encoded and SUBMITted; the replica
 * hands it back as a LOCAL write once its epoch is persisted; group commit
 * appends it. The commit thread calls written_cb once the batch is written,
 * before its fdatasync: it queues a copy of the batch and wakes the loop
 * (uv_async), which reports APPENDED and keeps the copy in the ship cache;
 * the replica asks for APPEND sends at once, which go out on the backup's
 * link from the cache while the local fdatasync runs (PROTOCOL.md §5.4; in
 * the epoch's first batch the replica waits for it). After the fdatasync the
 * commit thread's callback queues each write's completion (with the log's end
 * after the batch); the loop reports PERSISTED(LOG) and PERSISTED(WRITE). An
 * APPEND range the cache does not hold (catch-up, resends) is read from the
 * log on the threadpool (located by LSN with tdm_log_locate(), read with one
 * pread per run of batches). ACKs come back; the replica's results call the
 * write's callback.
 * Backup: HELLO, START (maybe a cut and a history to persist), READY, then
 * APPENDs whose batches are verified and decoded on the loop and handed
 * straight to the engine's commit thread (tdm_node_append_received_async),
 * which appends them, with one fdatasync for all those handed over while it
 * ran the last, calls back (uv_async) and hands them to the index thread:
 * queries on the backup see them. The loop reports PERSISTED(LOG), and the
 * replica ACKs. While a disk job (an epoch history, a cut) is queued or
 * running, APPENDs queue behind it as disk jobs on the threadpool, one at a
 * time, so that no batch is durable before what the replica asked first.
 *
 * Failure modes: a frame that does not convert closes its link; a HELLO whose
 * node is not the TLS peer closes the link; a failed disk job is reported with
 * its status (the replica then stops: role FAILED). */
#include "net/uv_node.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/path.h"
#include "engine/base/bytes.h"
#include "engine/base/trace.h"
#include "engine/batch.h"
#include "engine/codec.h"
#include "engine/log.h"
#include "engine/node.h"
#include "net/uv_link.h"
#include "net/uv_verify.h"

#define NODE_EPOCHS_NAME     "epochs"
#define NODE_EPOCHS_MAGIC    "tandem-epochs 2" /* Written; version 1 is still read. */
#define NODE_EPOCHS_MAGIC_V1 "tandem-epochs 1"
#define NODE_APPEND_SIZE_MAX ((16u << 20) - 4096u) /* Batch bytes in one APPEND frame. */

/* The planted bug "backup_ack_before_fdatasync" (meson_options.txt): the
 * backup reports received batches durable before they are (see
 * write_received). Never set in a release build. */
#ifndef TDM_PLANTED_BACKUP_ACK_BEFORE_FDATASYNC
#define TDM_PLANTED_BACKUP_ACK_BEFORE_FDATASYNC 0
#endif

struct tdm_uv_node;

/* A client write the adapter holds (SUBMIT), until its result. */
struct node_write {
    struct node_write *next;
    uint64_t write_id;
    uint8_t *raw; /* (u32 size, record) entries. */
    size_t raw_size;
    uint32_t record_count;
    tdm_uv_node_write_cb cb;
    void *data;
};

/* A LOCAL write handed to group commit; completed on the commit thread. Or
 * (written) a local batch just written, not yet durable (written_cb). */
struct node_commit {
    struct node_commit *next;
    struct tdm_uv_node *node;
    uint64_t write_id;
    uint32_t record_count;
    int status;
    uint64_t lsn_first;
    struct tandem_status log; /* The log right after the batch. */
    bool written;             /* A written batch, not a write's completion: */
    struct tdm_batch_header header;
    uint8_t *bytes; /* its bytes as written (header and compressed body), owned; */
    uint32_t size;  /* bytes of it. */
    /* Or (received) a backup's received batches handed straight to the
     * commit thread (write_received): bytes holds their copy, status and the
     * fields below the result. */
    bool received;
    uint64_t lsn_last; /* Of the last appended; 0 if none. */
    struct tdm_frame_chain_hash chain_hash;
    char message[TDM_DIAG_SIZE];
};

/* A local batch kept after it was written, so that an APPEND of it goes out
 * without reading the log (the ship cache). */
struct node_cached {
    struct tdm_batch_header header;
    uint8_t *bytes; /* Owned. */
    uint32_t size;
};

#define NODE_CACHE_BATCHES  256u        /* Newest local batches kept for shipping... */
#define NODE_CACHE_SIZE_MAX (16u << 20) /* ...and at most this many bytes of them. */
tdm_static_assert(NODE_CACHE_SIZE_MAX >= 2 * (size_t)TDM_BATCH_RAW_SIZE_MAX);

enum node_job_kind {
    NODE_JOB_EPOCHS = 1,
    NODE_JOB_CUT,
    NODE_JOB_APPEND,
};

/* One disk action, run on the threadpool; jobs run one at a time, in order. */
struct node_job {
    uv_work_t work;
    struct node_job *next;
    struct tdm_uv_node *node;
    enum node_job_kind kind;
    struct tdm_epoch_history history; /* EPOCHS. */
    uint64_t cut_after_lsn;           /* CUT. */
    uint32_t batch_count;             /* APPEND: copies of the batches. */
    uint8_t *bytes;
    uint32_t sizes[TDM_FRAME_BATCHES_MAX];
    /* APPEND jobs queued behind this one and run with it: their batches are
     * appended after its own, with one fdatasync for all (group commit). */
    struct node_job *merged;
    /* Result. */
    int status;
    struct tdm_diag diag;
    uint64_t lsn_last;
    uint64_t last_epoch;
    struct tdm_frame_chain_hash chain_hash;
};

/* One APPEND send: read the range from the log on the threadpool, then send. */
struct node_read {
    uv_work_t work;
    struct tdm_uv_node *node;
    uint32_t node_index;
    uint64_t link_generation;
    uint64_t epoch;
    uint64_t lsn_first;
    uint64_t lsn_last;
    uint64_t commit_lsn;
    int status;
    struct tdm_diag diag;
    uint32_t batch_count;
    uint32_t batch_capacity;
    struct tdm_log_batch *batches;    /* batches[0 .. batch_count): located in the log... */
    struct tdm_batch_header *headers; /* ...their headers as read... */
    uint8_t *bytes;                   /* ...and their bytes, back to back. */
    bool done;                        /* The read finished; sent when it is the oldest. */
    struct node_read *next;           /* In the peer's queue of reads, oldest first. */
};

struct node_peer {
    struct tdm_uv_node *node;
    uint32_t index;
    struct tdm_uv_link *link; /* Up (authenticated) link, or NULL. */
    struct tdm_uv_link *dialing;
    uint64_t generation; /* Bumped whenever link changes. */
    bool has_address;
    bool held;
    bool unreachable; /* A dial failed and none has succeeded since (traced once). */
    struct sockaddr_storage address;
    /* APPEND reads in flight on the threadpool, in the order the replica sent
     * them: they complete in any order and are sent in this one, or the backup
     * would see a gap and wait for the retransmit timer. */
    struct node_read *reads_head;
    struct node_read *reads_tail;
};

struct tdm_uv_node {
    uv_loop_t *loop;
    struct tandem *t;
    struct tdm_log *log;
    struct tdm_fs *fs;
    struct tdm_tls_config *tls;
    char dir[TDM_PATH_SIZE];
    struct tdm_frame_cluster cluster;
    uint32_t reconnect_ms;
    bool (*config_on_client)(void *data, struct tdm_uv_link *link); /* May be NULL. */
    void *config_client_data;
    void (*config_on_repair)(void *data, uint32_t index, const struct tdm_proto_msg *msg);
    void *config_repair_data; /* Both from the config; on_repair may be NULL. */
    struct tdm_uv_listener *listener;
    uv_timer_t deadline_timer;
    uv_timer_t reconnect_timer;
    uv_timer_t schedule_timer; /* switchover_interval (runs only when it is set). */
    uint64_t switchover_interval_ms;
    bool schedule_primary;        /* Acting primary at the last step: the interval restarts
                                     when a node begins to act, so each primary holds the
                                     role a whole interval (not the rest of another's). */
    uint64_t schedule_request_id; /* The schedule's next request id. */
    tdm_uv_node_report_cb on_report;
    void *report_data;
    uv_async_t async;
    uint32_t handles_open;
    struct node_peer peers[TDM_REPLICA_NODES_MAX];
    struct tdm_replica replica;
    struct tdm_actions actions;
    struct tdm_frame frame; /* Scratch: received or to send. */
    struct tdm_proto_msg msg;
    struct tdm_uv_node_traffic traffic; /* Frames sent to other nodes. */
    bool stepping;
    bool closing;
    bool failed;
    tdm_uv_node_close_cb close_cb;
    void *close_data;
    uint64_t write_id_next;
    struct node_write *writes;
    uint32_t write_count;
    /* SUBMIT events that arrived during a step. */
    uint64_t deferred_ids[TDM_REPLICA_WRITES_MAX];
    uint32_t deferred_count;
    /* Disk jobs. */
    struct node_job *jobs_head;
    struct node_job *jobs_tail;
    bool job_running;
    uint32_t reads_running;
    uint32_t links_open; /* Links (dialing or up) whose on_close has not run. */
    /* Group commit completions (commit thread -> loop). */
    pthread_mutex_t mutex;
    struct node_commit *done_head;
    struct node_commit *done_tail;
    uint32_t commits_running;
    uint32_t receives_running; /* Received batches handed to the commit thread. */
    uint64_t appended_lsn;
    uint64_t appended_bytes;
    uint64_t persisted_lsn; /* Of the last PERSISTED(LOG) of local batches. */
    uint32_t sealed_count;  /* Sealed segments as of the last APPENDED. */
    /* The ship cache: the newest local batches, consecutive, oldest at
     * cache_head (a ring). Emptied by a cut and by received batches. */
    struct node_cached cache[NODE_CACHE_BATCHES];
    uint32_t cache_head;
    uint32_t cache_count;
    size_t cache_size;
    struct tdm_uv_verify verify; /* Reads of chain hashes, DIR/verified (PROTOCOL.md §9). */
    /* Planted bug only: PERSISTED(LOG) to report right after this step. */
    uint64_t planted_lsn; /* 0: none. */
    struct tdm_frame_chain_hash planted_chain_hash;
};

static void node_step(struct tdm_uv_node *node, struct tdm_event *event);
static void node_maybe_finish(struct tdm_uv_node *node);
static void cache_clear(struct tdm_uv_node *node);
static void schedule_cb(uv_timer_t *timer);

static uint64_t node_now(struct tdm_uv_node *node)
{
    uv_update_time(node->loop);
    return uv_now(node->loop) + 1; /* Never 0. */
}

/* Unix ms for the epoch history's times (never for timing). */
static uint64_t node_wall_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return 0; /* Unknown: the entry gets no time. */
    }
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- DIR/epochs (docs/FORMAT.md "Epoch history") ----------------------------- */

static int epochs_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

/* One line of DIR/epochs (docs/FORMAT.md "Epoch history"): version 2 has
 * eight fields, version 1 the first three (the rest read as init, 0). */
static bool epochs_entry_parse(const char *line, bool v1, const struct tdm_frame_cluster *cluster,
                               struct tdm_epoch_entry *entry)
{
    unsigned long long epoch = 0;
    unsigned long long lsn_first = 0;
    unsigned long long time_ms = 0;
    unsigned long long pause_ms = 0;
    unsigned long long risk_first = 0;
    unsigned long long risk_last = 0;
    char id[TDM_PROTO_NAME_SIZE_MAX + 1];
    char cause_name[16] = "init";
    char rest[2];
    int n = sscanf(line, "%llu %63s %llu %15s %llu %llu %llu %llu %1s", &epoch, id, &lsn_first,
                   cause_name, &time_ms, &pause_ms, &risk_first, &risk_last, rest);
    uint32_t index = 0;
    uint32_t cause = 0;
    if (n != (v1 ? 3 : 8) || !tdm_frame_cluster_index(cluster, id, &index) ||
        !tdm_replica_cause_parse(cause_name, &cause)) {
        return false;
    }
    *entry = (struct tdm_epoch_entry){
        .epoch = epoch,
        .lsn_first = lsn_first,
        .primary_index = index,
        .cause = (enum tdm_epoch_cause)cause,
        .time_ms = time_ms,
        .pause_ms = pause_ms,
        .risk_lsn_first = risk_first,
        .risk_lsn_last = risk_last,
    };
    return (risk_first == 0) == (risk_last == 0) && risk_first <= risk_last;
}

/* Load DIR/epochs into history. Returns 0, -ENOENT (no file) or
 * TANDEM_ECORRUPT / errno with diag. */
static int epochs_load(const char *dir, const struct tdm_frame_cluster *cluster,
                       struct tdm_epoch_history *history, struct tdm_diag *diag)
{
    char path[TDM_PATH_SIZE];
    int rv = epochs_path(path, sizeof(path), dir, NODE_EPOCHS_NAME);
    if (rv != 0) {
        return rv;
    }
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        rv = -errno;
        if (rv != -ENOENT) {
            tdm_diag_printf(diag, "open %s: %s", path, strerror(-rv));
        }
        return rv;
    }
    char line[256];
    memset(history, 0, sizeof(*history));
    rv = 0;
    bool v1 = false;
    if (fgets(line, sizeof(line), file) == NULL ||
        (strcmp(line, NODE_EPOCHS_MAGIC "\n") != 0 &&
         !(v1 = strcmp(line, NODE_EPOCHS_MAGIC_V1 "\n") == 0))) {
        tdm_diag_printf(diag, "%s: bad first line", path);
        rv = TANDEM_ECORRUPT;
    }
    while (rv == 0 && fgets(line, sizeof(line), file) != NULL) {
        if (history->count == TDM_REPLICA_EPOCHS_MAX ||
            !epochs_entry_parse(line, v1, cluster, &history->entries[history->count])) {
            tdm_diag_printf(diag, "%s: bad entry %" PRIu32, path, history->count + 1);
            rv = TANDEM_ECORRUPT;
            break;
        }
        history->count++;
    }
    fclose(file);
    if (rv == 0 && !tdm_replica_history_valid(history, cluster->node_count)) {
        tdm_diag_printf(diag, "%s: not a valid history", path);
        rv = TANDEM_ECORRUPT;
    }
    return rv;
}

/* Write history to DIR/epochs durably: DIR/epochs.tmp, fdatasync, rename,
 * fsync DIR. Runs on the threadpool. */
static int epochs_store(const char *dir, const struct tdm_frame_cluster *cluster,
                        const struct tdm_epoch_history *history, struct tdm_diag *diag)
{
    int rv;
    size_t capacity = 32 + (size_t)history->count * (TDM_PROTO_NAME_SIZE_MAX + 140);
    char *text = tdm_malloc(capacity);
    if (text == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    size_t size = (size_t)snprintf(text, capacity, "%s\n", NODE_EPOCHS_MAGIC);
    for (uint32_t i = 0; i < history->count; i++) {
        const struct tdm_epoch_entry *e = &history->entries[i];
        size += (size_t)snprintf(text + size, capacity - size,
                                 "%" PRIu64 " %s %" PRIu64 " %s %" PRIu64 " %" PRIu64 " %" PRIu64
                                 " %" PRIu64 "\n",
                                 e->epoch, cluster->node_ids[e->primary_index], e->lsn_first,
                                 tdm_replica_cause_name(e->cause), e->time_ms, e->pause_ms,
                                 e->risk_lsn_first, e->risk_lsn_last);
    }
    tdm_assert(size < capacity);
    rv = tdm_file_replace(dir, NODE_EPOCHS_NAME, text, size, 0644, diag);
    tdm_free(text);
    return rv;
}

/* ---- disk jobs ----------------------------------------------------------------- */

static void hash_from_log(struct tdm_frame_chain_hash *out, const uint8_t bytes[16])
{
    tdm_static_assert(sizeof(out->bytes) == 16);
    memcpy(out->bytes, bytes, sizeof(out->bytes));
}

static void job_work(uv_work_t *work)
{
    struct node_job *job = work->data;
    struct tdm_uv_node *node = job->node;
    switch (job->kind) {
    case NODE_JOB_EPOCHS:
        job->status = epochs_store(node->dir, &node->cluster, &job->history, &job->diag);
        break;
    case NODE_JOB_CUT: {
        /* On the commit thread; the index is rebuilt behind it (engine/node.h). */
        job->status = tdm_node_cut_after(node->t, job->cut_after_lsn, &job->diag);
        struct tandem_status st;
        tdm_log_status(node->log, &st);
        job->lsn_last = st.lsn_last;
        job->last_epoch = st.lsn_last == 0 ? 0 : st.epoch;
        hash_from_log(&job->chain_hash, st.chain_hash);
        break;
    }
    case NODE_JOB_APPEND: {
        /* Through the commit thread, which also hands them to the index
         * thread: queries on this backup see them (engine/node.h). Every
         * batch of every part in one call: appended back to back, one
         * fdatasync after the last (group commit). */
        uint32_t count = 0;
        for (const struct node_job *part = job; part != NULL; part = part->merged) {
            count += part->batch_count;
        }
        const uint8_t **bytes = tdm_malloc(count * sizeof(*bytes));
        size_t *sizes = tdm_malloc(count * sizeof(*sizes));
        struct tdm_batch_header *headers = tdm_malloc(count * sizeof(*headers));
        uint32_t appended = 0;
        if (bytes == NULL || sizes == NULL || headers == NULL) {
            tdm_diag_printf(&job->diag, "out of memory for %" PRIu32 " batches", count);
            job->status = -ENOMEM;
        } else {
            uint32_t n = 0;
            for (const struct node_job *part = job; part != NULL; part = part->merged) {
                size_t offset = 0;
                for (uint32_t i = 0; i < part->batch_count; i++, n++) {
                    bytes[n] = part->bytes + offset;
                    sizes[n] = part->sizes[i];
                    offset += part->sizes[i];
                }
            }
            job->status = tdm_node_append_received_many(node->t, count, bytes, sizes, headers,
                                                        &appended, &job->diag);
        }
        if (appended > 0) {
            const struct tdm_batch_header *last = &headers[appended - 1];
            job->lsn_last = tdm_batch_lsn_last(last);
            job->last_epoch = last->epoch;
            memcpy(job->chain_hash.bytes, last->chain_hash.bytes, sizeof(job->chain_hash.bytes));
        }
        tdm_free(bytes);
        tdm_free(sizes);
        tdm_free(headers);
        break;
    }
    }
}

static void job_start_next(struct tdm_uv_node *node);

static void job_done(uv_work_t *work, int status)
{
    struct node_job *job = work->data;
    struct tdm_uv_node *node = job->node;
    node->job_running = false;
    if (status != 0 && job->status == 0) {
        job->status = status;
    }
    if (job->status != 0) {
        tdm_tracef("node %s: disk job %d failed: %s",
                   node->cluster.node_ids[node->cluster.self_index], (int)job->kind,
                   job->diag.message);
    }
    struct tdm_event event = {.type = TDM_EVENT_PERSISTED};
    event.persisted.status = job->status;
    switch (job->kind) {
    case NODE_JOB_EPOCHS:
        event.persisted.kind = TDM_PERSISTED_EPOCHS;
        break;
    case NODE_JOB_CUT:
        /* The log may be shorter now: what local batches report starts here. */
        cache_clear(node);
        node->appended_lsn = job->lsn_last;
        node->persisted_lsn = job->lsn_last;
        event.persisted.kind = TDM_PERSISTED_CUT;
        event.persisted.lsn_last = job->lsn_last;
        event.persisted.last_epoch = job->last_epoch;
        event.persisted.chain_hash = job->chain_hash;
        break;
    case NODE_JOB_APPEND:
        event.persisted.kind = TDM_PERSISTED_LOG;
        event.persisted.lsn_last = job->lsn_last;
        event.persisted.chain_hash = job->chain_hash;
        break;
    }
    bool report = job->kind != NODE_JOB_APPEND || job->status != 0 || job->lsn_last != 0;
    while (job != NULL) {
        struct node_job *next = job->merged;
        tdm_free(job->bytes);
        tdm_free(job);
        job = next;
    }
    if (report && !node->closing) {
        node_step(node, &event);
    }
    job_start_next(node);
    node_maybe_finish(node);
}

static void job_start_next(struct tdm_uv_node *node)
{
    if (node->job_running || node->jobs_head == NULL || node->receives_running > 0) {
        return; /* One at a time, after the received batches before it. */
    }
    struct node_job *job = node->jobs_head;
    node->jobs_head = job->next;
    struct node_job *tail = job;
    while (job->kind == NODE_JOB_APPEND && node->jobs_head != NULL &&
           node->jobs_head->kind == NODE_JOB_APPEND) {
        tail->merged = node->jobs_head; /* Received while the last job ran. */
        tail = tail->merged;
        node->jobs_head = tail->next;
    }
    if (node->jobs_head == NULL) {
        node->jobs_tail = NULL;
    }
    job->work.data = job;
    int rv = uv_queue_work(node->loop, &job->work, job_work, job_done);
    tdm_assert(rv == 0);
    node->job_running = true;
}

static struct node_job *job_new(struct tdm_uv_node *node, enum node_job_kind kind)
{
    struct node_job *job = tdm_calloc(1, sizeof(*job));
    tdm_assert(job != NULL); /* Small and bounded; out of memory here is fatal. */
    job->node = node;
    job->kind = kind;
    return job;
}

static void job_push(struct tdm_uv_node *node, struct node_job *job)
{
    if (node->jobs_tail == NULL) {
        node->jobs_head = job;
    } else {
        node->jobs_tail->next = job;
    }
    node->jobs_tail = job;
    job_start_next(node);
}

/* ---- the ship cache ------------------------------------------------------------- */

static struct node_cached *cache_at(struct tdm_uv_node *node, uint32_t position)
{
    tdm_assert(position < node->cache_count);
    return &node->cache[(node->cache_head + position) % NODE_CACHE_BATCHES];
}

static void cache_drop_oldest(struct tdm_uv_node *node)
{
    tdm_assert(node->cache_count > 0);
    struct node_cached *oldest = cache_at(node, 0);
    tdm_assert(node->cache_size >= oldest->size);
    node->cache_size -= oldest->size;
    tdm_free(oldest->bytes);
    oldest->bytes = NULL;
    node->cache_head = (node->cache_head + 1) % NODE_CACHE_BATCHES;
    node->cache_count--;
}

static void cache_clear(struct tdm_uv_node *node)
{
    while (node->cache_count > 0) {
        cache_drop_oldest(node);
    }
    tdm_assert(node->cache_size == 0);
}

/* Keep a written local batch (bytes taken); a batch that does not follow the
 * newest kept one starts the cache afresh. */
static void cache_put(struct tdm_uv_node *node, const struct tdm_batch_header *header,
                      uint8_t *bytes, uint32_t size)
{
    if (node->cache_count > 0 &&
        tdm_batch_lsn_last(&cache_at(node, node->cache_count - 1)->header) + 1 !=
            header->lsn_first) {
        cache_clear(node);
    }
    while (node->cache_count > 0 && (node->cache_count == NODE_CACHE_BATCHES ||
                                     node->cache_size + size > NODE_CACHE_SIZE_MAX)) {
        cache_drop_oldest(node);
    }
    tdm_assert(size <= NODE_CACHE_SIZE_MAX); /* A batch holds at most 8 MiB of records. */
    struct node_cached *entry =
        &node->cache[(node->cache_head + node->cache_count) % NODE_CACHE_BATCHES];
    entry->header = *header;
    entry->bytes = bytes;
    entry->size = size;
    node->cache_count++;
    node->cache_size += size;
}

/* The position of the kept batch that starts at lsn, or cache_count. */
static uint32_t cache_find(struct tdm_uv_node *node, uint64_t lsn)
{
    uint32_t low = 0;
    uint32_t high = node->cache_count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        if (tdm_batch_lsn_last(&cache_at(node, middle)->header) < lsn) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low < node->cache_count && cache_at(node, low)->header.lsn_first == lsn
               ? low
               : node->cache_count;
}

/* ---- group commit (primary LOCAL writes) ---------------------------------------- */

/* Any thread: c to the loop thread's done list. */
static void done_push(struct tdm_uv_node *node, struct node_commit *c)
{
    pthread_mutex_lock(&node->mutex);
    if (node->done_tail == NULL) {
        node->done_head = c;
    } else {
        node->done_tail->next = c;
    }
    node->done_tail = c;
    pthread_mutex_unlock(&node->mutex);
    uv_async_send(&node->async);
}

/* Commit thread: c, with the log's status now, to the loop thread's done list. */
static void commit_done(struct tdm_uv_node *node, struct node_commit *c)
{
    tdm_log_status(node->log, &c->log);
    done_push(node, c);
}

/* Commit thread: a local batch is written, not yet fdatasync'd. Queue a copy
 * for the loop, which reports APPENDED and ships it (PROTOCOL.md §5.4). */
static void written_cb(void *data, const struct tdm_batch_header *header, const uint8_t *bytes,
                       size_t size)
{
    struct tdm_uv_node *node = data;
    struct node_commit *c = tdm_calloc(1, sizeof(*c));
    tdm_assert(c != NULL); /* Small and bounded; out of memory here is fatal (job_new). */
    uint8_t *copy = tdm_malloc(size);
    tdm_assert(copy != NULL); /* At most one batch, as write_received's copy. */
    memcpy(copy, bytes, size);
    c->node = node;
    c->written = true;
    c->header = *header;
    c->bytes = copy;
    c->size = (uint32_t)size;
    commit_done(node, c);
}

/* Commit thread. */
static void commit_cb(void *data, int status, uint64_t lsn_first)
{
    struct node_commit *c = data;
    struct tdm_uv_node *node = c->node;
    c->status = status;
    c->lsn_first = lsn_first;
    commit_done(node, c);
}

/* Commit thread: received batches handed over by write_received are done. */
static void received_cb(void *data, int status, uint32_t appended,
                        const struct tdm_batch_header *last, const char *message)
{
    struct node_commit *c = data;
    (void)appended;
    c->status = status;
    if (last != NULL) {
        c->lsn_last = tdm_batch_lsn_last(last);
        memcpy(c->chain_hash.bytes, last->chain_hash.bytes, sizeof(c->chain_hash.bytes));
    }
    snprintf(c->message, sizeof(c->message), "%s", message);
    done_push(c->node, c);
}

/* Loop: report received batches that were handed straight to the commit
 * thread as a disk job's are (job_done), then start a job queued behind them. */
static void received_done(struct tdm_uv_node *node, const struct node_commit *c)
{
    tdm_assert(node->receives_running > 0);
    node->receives_running--;
    if (c->status != 0) {
        tdm_tracef("node %s: appending received batches failed: %s",
                   node->cluster.node_ids[node->cluster.self_index], c->message);
    }
    if (!node->closing && (c->status != 0 || c->lsn_last != 0)) {
        struct tdm_event event = {.type = TDM_EVENT_PERSISTED};
        event.persisted.kind = TDM_PERSISTED_LOG;
        event.persisted.status = c->status;
        event.persisted.lsn_last = c->lsn_last;
        event.persisted.chain_hash = c->chain_hash;
        node_step(node, &event);
    }
    job_start_next(node);
}

static void async_cb(uv_async_t *async)
{
    struct tdm_uv_node *node = async->data;
    pthread_mutex_lock(&node->mutex);
    struct node_commit *c = node->done_head;
    node->done_head = NULL;
    node->done_tail = NULL;
    pthread_mutex_unlock(&node->mutex);
    while (c != NULL) {
        struct node_commit *next = c->next;
        if (c->received) {
            received_done(node, c);
            tdm_free(c->bytes);
            tdm_free(c);
            c = next;
            continue;
        }
        if (c->written) {
            if (!node->closing) {
                struct tdm_event event = {.type = TDM_EVENT_APPENDED};
                event.appended.lsn_last = tdm_batch_lsn_last(&c->header);
                event.appended.size = c->size;
                event.appended.epoch = c->header.epoch;
                hash_from_log(&event.appended.chain_hash, c->header.chain_hash.bytes);
                /* A segment is sealed right before the batch that starts the next. */
                event.appended.sealed = c->log.sealed_count > node->sealed_count;
                node->sealed_count = c->log.sealed_count;
                node->appended_lsn = event.appended.lsn_last;
                node->appended_bytes = c->log.log_bytes;
                cache_put(node, &c->header, c->bytes, c->size);
                c->bytes = NULL;
                node_step(node, &event);
            }
            tdm_free(c->bytes);
            tdm_free(c);
            c = next;
            continue;
        }
        node->commits_running--;
        if (!node->closing) {
            if (c->status == 0 && c->log.lsn_last > node->appended_lsn) {
                /* Not reported by written_cb (not set: nothing else appends). */
                struct tdm_event event = {.type = TDM_EVENT_APPENDED};
                event.appended.lsn_last = c->log.lsn_last;
                event.appended.size = c->log.log_bytes > node->appended_bytes
                                          ? c->log.log_bytes - node->appended_bytes
                                          : 1;
                event.appended.epoch = c->log.epoch;
                hash_from_log(&event.appended.chain_hash, c->log.chain_hash);
                /* A segment is sealed right after the batch that fills it. */
                event.appended.sealed = c->log.sealed_count > node->sealed_count;
                node->sealed_count = c->log.sealed_count;
                node->appended_lsn = c->log.lsn_last;
                node->appended_bytes = c->log.log_bytes;
                node_step(node, &event);
            }
            if (c->status == 0 && c->log.lsn_last > node->persisted_lsn) {
                /* Durable: the commit thread calls back after the fdatasync. */
                node->persisted_lsn = c->log.lsn_last;
                struct tdm_event log = {.type = TDM_EVENT_PERSISTED};
                log.persisted.kind = TDM_PERSISTED_LOG;
                log.persisted.lsn_last = c->log.lsn_last;
                hash_from_log(&log.persisted.chain_hash, c->log.chain_hash);
                node_step(node, &log);
            }
            struct tdm_event event = {.type = TDM_EVENT_PERSISTED};
            event.persisted.kind = TDM_PERSISTED_WRITE;
            event.persisted.status = c->status;
            event.persisted.write_id = c->write_id;
            if (c->status == 0) {
                event.persisted.lsn_first = c->lsn_first;
                event.persisted.lsn_last = c->lsn_first + c->record_count - 1;
            }
            node_step(node, &event);
        }
        tdm_free(c);
        c = next;
    }
    node_maybe_finish(node);
}

/* ---- held writes ------------------------------------------------------------------ */

static struct node_write *write_find(struct tdm_uv_node *node, uint64_t write_id)
{
    for (struct node_write *w = node->writes; w != NULL; w = w->next) {
        if (w->write_id == write_id) {
            return w;
        }
    }
    return NULL;
}

static void write_complete(struct tdm_uv_node *node, uint64_t write_id, int status,
                           uint64_t lsn_first, uint64_t lsn_last)
{
    struct node_write **p = &node->writes;
    while (*p != NULL && (*p)->write_id != write_id) {
        p = &(*p)->next;
    }
    if (*p == NULL) {
        return; /* A forwarded write of another node: its result went as a send. */
    }
    struct node_write *w = *p;
    *p = w->next;
    node->write_count--;
    w->cb(w->data, status, lsn_first, lsn_last);
    tdm_free(w->raw);
    tdm_free(w);
}

/* ---- sends ------------------------------------------------------------------------- */

static void link_send_frame(struct tdm_uv_node *node, uint32_t index, const struct tdm_frame *frame)
{
    struct node_peer *peer = &node->peers[index];
    if (peer->link == NULL) {
        return; /* Down: dropped (net/replica.h, 4). */
    }
    struct tdm_diag diag = {{0}};
    int rv = tdm_frame_to_proto(frame, &node->cluster, &node->msg, &diag);
    if (rv == 0) {
        rv = tdm_uv_link_send(peer->link, &node->msg, &diag);
    }
    if (rv == 0 && frame->type < TDM_UV_NODE_TRAFFIC_TYPES) {
        node->traffic.frames[frame->type]++;
        node->traffic.bytes[frame->type] += tdm_proto_encoded_size(&node->msg);
    }
    if (rv != 0 && rv != TANDEM_EBUSY && rv != TANDEM_ECANCELED) {
        tdm_tracef("node %s: send type %u to %s: %s",
                   node->cluster.node_ids[node->cluster.self_index], (unsigned)frame->type,
                   node->cluster.node_ids[index], diag.message);
    }
    /* TANDEM_EBUSY: dropped; the replica retransmits (go-back-N, PROTOCOL.md §5.4). */
}

/* Locate the batches of r's range (tdm_log_locate: a binary search in the
 * log's batch tables, not a walk of the segment). */
static int read_locate(struct tdm_uv_node *node, struct node_read *r)
{
    uint64_t lsn = r->lsn_first;
    while (lsn <= r->lsn_last) {
        if (r->batch_count == r->batch_capacity) {
            uint32_t capacity = r->batch_capacity == 0 ? 64 : r->batch_capacity * 2;
            struct tdm_log_batch *p = tdm_realloc(r->batches, capacity * sizeof(*p));
            if (p == NULL) {
                tdm_diag_printf(&r->diag, "out of memory");
                return -ENOMEM;
            }
            r->batches = p;
            r->batch_capacity = capacity;
        }
        uint32_t count = 0;
        int rv = tdm_log_locate(node->log, lsn, r->lsn_last, r->batches + r->batch_count,
                                r->batch_capacity - r->batch_count, &count, &r->diag);
        if (rv == TANDEM_ENOTFOUND && r->batch_count > 0) {
            return 0; /* The range ends past the log: send what it holds. */
        }
        if (rv != 0) {
            return rv;
        }
        r->batch_count += count;
        lsn = r->batches[r->batch_count - 1].lsn_last + 1;
    }
    return 0;
}

/* Threadpool: locate the range, then read its bytes with one pread per run of
 * batches back to back in a segment, checking each batch's header and body
 * checksum (tdm_log_read_located; the backup verifies everything again). */
static void read_work_real(uv_work_t *work)
{
    struct node_read *r = work->data;
    struct tdm_uv_node *node = r->node;
    int rv = read_locate(node, r);
    size_t total = 0;
    for (uint32_t i = 0; rv == 0 && i < r->batch_count; i++) {
        total += r->batches[i].location.size;
    }
    if (rv == 0 && r->batch_count > 0) {
        r->headers = tdm_malloc(r->batch_count * sizeof(*r->headers));
        r->bytes = tdm_malloc(total);
        if (r->headers == NULL || r->bytes == NULL) {
            tdm_diag_printf(&r->diag, "out of memory for %zu bytes", total);
            rv = -ENOMEM;
        }
    }
    if (rv == 0) {
        rv = tdm_log_read_located(node->log, r->batches, r->batch_count, r->bytes, r->headers,
                                  &r->diag);
    }
    r->status = rv;
}

static void read_free(struct node_read *r)
{
    tdm_free(r->bytes);
    tdm_free(r->batches);
    tdm_free(r->headers);
    tdm_free(r);
}

/* Send (or drop) a finished read: status is the threadpool's. */
static void read_send(struct tdm_uv_node *node, struct node_read *r, int status)
{
    struct node_peer *peer = &node->peers[r->node_index];
    if (status == 0 && r->status != 0) {
        tdm_tracef("node %s: APPEND %" PRIu64 "..%" PRIu64 ": %s",
                   node->cluster.node_ids[node->cluster.self_index], r->lsn_first, r->lsn_last,
                   r->diag.message);
    }
    if (status == 0 && r->status == 0 && !node->closing && peer->link != NULL &&
        peer->generation == r->link_generation) {
        uint32_t i = 0;
        size_t offset = 0; /* Of batch i in r->bytes. */
        while (i < r->batch_count) {
            struct tdm_frame *frame = &node->frame;
            memset(frame, 0, sizeof(*frame));
            frame->type = TDM_FRAME_APPEND;
            frame->epoch = r->epoch;
            frame->append.commit_lsn = r->commit_lsn;
            size_t size = 0;
            while (i < r->batch_count && frame->append.batch_count < TDM_FRAME_BATCHES_MAX &&
                   (frame->append.batch_count == 0 ||
                    size + r->batches[i].location.size <= NODE_APPEND_SIZE_MAX)) {
                const struct tdm_batch_header *h = &r->headers[i];
                struct tdm_frame_batch *b = &frame->append.batches[frame->append.batch_count++];
                b->lsn_first = h->lsn_first;
                b->lsn_last = tdm_batch_lsn_last(h);
                b->epoch = h->epoch;
                b->size = r->batches[i].location.size;
                memcpy(b->chain_hash.bytes, h->chain_hash.bytes, sizeof(b->chain_hash.bytes));
                b->bytes = r->bytes + offset;
                size += b->size;
                offset += b->size;
                i++;
            }
            link_send_frame(node, r->node_index, frame);
        }
    }
}

static void read_done(uv_work_t *work, int status)
{
    struct node_read *r = work->data;
    struct tdm_uv_node *node = r->node;
    struct node_peer *peer = &node->peers[r->node_index];
    node->reads_running--;
    r->done = true;
    if (status != 0 && r->status == 0) {
        r->status = status;
    }
    while (peer->reads_head != NULL && peer->reads_head->done) {
        struct node_read *head = peer->reads_head;
        peer->reads_head = head->next;
        if (peer->reads_head == NULL) {
            peer->reads_tail = NULL;
        }
        /* A read that failed (a batch failed its checksum, I/O) sent nothing:
         * the replica hears of it (SHIP_FAILED, PROTOCOL.md §9.5). */
        struct tdm_event failed = {.type = TDM_EVENT_SHIP_FAILED};
        bool report = head->status != 0 && !node->closing && peer->link != NULL &&
                      peer->generation == head->link_generation;
        failed.ship_failed.node_index = head->node_index;
        failed.ship_failed.lsn_first = head->lsn_first;
        failed.ship_failed.lsn_last = head->lsn_last;
        failed.ship_failed.status = head->status;
        read_send(node, head, 0);
        read_free(head);
        if (report) {
            node_step(node, &failed);
        }
    }
    node_maybe_finish(node);
}

/* Fill r from the ship cache if it holds every batch of r's range. */
static bool read_from_cache(struct tdm_uv_node *node, struct node_read *r)
{
    uint32_t first = cache_find(node, r->lsn_first);
    uint32_t count = 0;
    size_t total = 0;
    uint64_t lsn = r->lsn_first;
    while (first + count < node->cache_count && lsn <= r->lsn_last) {
        const struct node_cached *entry = cache_at(node, first + count);
        tdm_assert(entry->header.lsn_first == lsn); /* The cache is consecutive. */
        lsn = tdm_batch_lsn_last(&entry->header) + 1;
        total += entry->size;
        count++;
    }
    if (count == 0 || lsn != r->lsn_last + 1) {
        return false; /* Not (all) there: read the log. */
    }
    r->batches = tdm_malloc(count * sizeof(*r->batches));
    r->headers = tdm_malloc(count * sizeof(*r->headers));
    r->bytes = tdm_malloc(total);
    if (r->batches == NULL || r->headers == NULL || r->bytes == NULL) {
        tdm_free(r->batches);
        tdm_free(r->headers);
        tdm_free(r->bytes);
        r->batches = NULL;
        r->headers = NULL;
        r->bytes = NULL;
        return false;
    }
    size_t offset = 0;
    for (uint32_t i = 0; i < count; i++) {
        const struct node_cached *entry = cache_at(node, first + i);
        r->headers[i] = entry->header;
        r->batches[i].lsn_first = entry->header.lsn_first;
        r->batches[i].lsn_last = tdm_batch_lsn_last(&entry->header);
        r->batches[i].location.size = entry->size;
        memcpy(r->bytes + offset, entry->bytes, entry->size);
        offset += entry->size;
    }
    r->batch_count = count;
    r->batch_capacity = count;
    r->status = 0;
    return true;
}

static void send_append(struct tdm_uv_node *node, const struct tdm_send *send)
{
    struct node_read *r = tdm_calloc(1, sizeof(*r));
    tdm_assert(r != NULL);
    r->node = node;
    r->node_index = send->node_index;
    r->link_generation = node->peers[send->node_index].generation;
    r->epoch = send->epoch;
    r->lsn_first = send->append.lsn_first;
    r->lsn_last = send->append.lsn_last;
    r->commit_lsn = send->append.commit_lsn;
    struct node_peer *cached_peer = &node->peers[send->node_index];
    if (read_from_cache(node, r)) {
        if (cached_peer->reads_head == NULL) {
            read_send(node, r, 0); /* Nothing older in flight to this backup. */
            read_free(r);
            return;
        }
        r->done = true; /* Sent once the reads before it are (read_done). */
        cached_peer->reads_tail->next = r;
        cached_peer->reads_tail = r;
        return;
    }
    r->work.data = r;
    int rv = uv_queue_work(node->loop, &r->work, read_work_real, read_done);
    tdm_assert(rv == 0);
    node->reads_running++;
    struct node_peer *peer = &node->peers[send->node_index];
    if (peer->reads_tail == NULL) {
        peer->reads_head = r;
    } else {
        peer->reads_tail->next = r;
    }
    peer->reads_tail = r;
}

static void send_one(struct tdm_uv_node *node, const struct tdm_actions *actions,
                     const struct tdm_send *send)
{
    if (send->type == TDM_FRAME_APPEND) {
        send_append(node, send);
        return;
    }
    struct tdm_frame *frame = &node->frame;
    memset(frame, 0, offsetof(struct tdm_frame, hello));
    tdm_replica_frame_from_send(actions, send, frame);
    if (send->type == TDM_FRAME_FORWARD) {
        struct node_write *w = write_find(node, send->forward.request_id);
        if (w == NULL) {
            return;
        }
        frame->forward.record_count = w->record_count;
        frame->forward.size = (uint32_t)w->raw_size;
        frame->forward.records = w->raw;
    }
    link_send_frame(node, send->node_index, frame);
}

/* ---- carrying out actions -------------------------------------------------------- */

/* Backup: verify every batch of a RECEIVED write, copy them into a disk job.
 * A bad batch closes the link to the primary (PROTOCOL.md §3.4). */
/* A copy of write's batches (total bytes), back to back: the frame's buffer
 * is reused once the step returns. */
static uint8_t *received_copy(const struct tdm_action_write *write, size_t total)
{
    uint8_t *copy = tdm_malloc(total == 0 ? 1 : total);
    tdm_assert(copy != NULL); /* At most one frame's batches; out of memory here is fatal. */
    size_t offset = 0;
    for (uint32_t i = 0; i < write->batch_count; i++) {
        memcpy(copy + offset, write->batches[i].bytes, write->batches[i].size);
        offset += write->batches[i].size;
    }
    return copy;
}

/* Hand verified received batches (total bytes) straight to the commit
 * thread: decoded here, appended and fdatasync'd there (with those handed
 * over while it ran the last fdatasync), reported by received_done. */
static void write_received_now(struct tdm_uv_node *node, const struct tdm_action_write *write,
                               size_t total)
{
    struct node_commit *c = tdm_calloc(1, sizeof(*c));
    tdm_assert(c != NULL); /* Small and bounded; out of memory here is fatal (job_new). */
    c->node = node;
    c->received = true;
    c->bytes = received_copy(write, total);
    const uint8_t *bytes[TDM_FRAME_BATCHES_MAX];
    size_t sizes[TDM_FRAME_BATCHES_MAX];
    size_t offset = 0;
    for (uint32_t i = 0; i < write->batch_count; i++) {
        bytes[i] = c->bytes + offset;
        sizes[i] = write->batches[i].size;
        offset += write->batches[i].size;
    }
    node->receives_running++;
    struct tdm_diag diag = {{0}};
    int rv = tdm_node_append_received_async(node->t, write->batch_count, bytes, sizes, received_cb,
                                            c, &diag);
    if (rv != 0) {
        /* Reported from the loop, as a failed disk job (never re-enter the step). */
        c->status = rv;
        snprintf(c->message, sizeof(c->message), "%s", diag.message);
        done_push(node, c);
    }
}

static void write_received(struct tdm_uv_node *node, const struct tdm_action_write *write)
{
    cache_clear(node); /* The log now grows by the primary's batches, not ours. */
    size_t total = 0;
    for (uint32_t i = 0; i < write->batch_count; i++) {
        struct tdm_batch_header header;
        struct tdm_diag diag = {{0}};
        const struct tdm_frame_batch *b = &write->batches[i];
        int rv = tdm_batch_verify(b->bytes, b->size, &header, &diag);
        if (rv != 0) {
            uint32_t primary = node->replica.primary_index;
            tdm_tracef("node %s: batch %" PRIu64 " from %s refused: %s",
                       node->cluster.node_ids[node->cluster.self_index], b->lsn_first,
                       node->cluster.node_ids[primary], diag.message);
            if (node->peers[primary].link != NULL) {
                tdm_uv_link_close(node->peers[primary].link);
            }
            return;
        }
        total += b->size;
    }
    if (!node->job_running && node->jobs_head == NULL) {
        write_received_now(node, write, total);
    } else {
        /* Behind a disk job: in turn, so that no batch is durable before
         * an epoch history or a cut queued before it. */
        struct node_job *job = job_new(node, NODE_JOB_APPEND);
        job->bytes = received_copy(write, total);
        for (uint32_t i = 0; i < write->batch_count; i++) {
            job->sizes[i] = write->batches[i].size;
        }
        job->batch_count = write->batch_count;
        job_push(node, job);
    }
    if (TDM_PLANTED_BACKUP_ACK_BEFORE_FDATASYNC) {
        /* The planted bug: report the batches durable as soon as they are
         * queued, before the disk job has written, let alone fdatasync'd,
         * them; the replica then ACKs them (node_step). */
        const struct tdm_frame_batch *last = &write->batches[write->batch_count - 1];
        node->planted_lsn = last->lsn_last;
        node->planted_chain_hash = last->chain_hash;
    }
}

static void write_local(struct tdm_uv_node *node, const struct tdm_action_write *write)
{
    const uint8_t *raw = write->records;
    size_t raw_size = write->size;
    if (raw == NULL) {
        struct node_write *w = write_find(node, write->write_id);
        tdm_assert(w != NULL);
        raw = w->raw;
        raw_size = w->raw_size;
    }
    struct node_commit *c = tdm_calloc(1, sizeof(*c));
    tdm_assert(c != NULL);
    c->node = node;
    c->write_id = write->write_id;
    c->record_count = write->record_count;
    struct tdm_diag diag = {{0}};
    int rv = tdm_node_append_raw_async(node->t, raw, raw_size, write->record_count, write->epoch,
                                       commit_cb, c, &diag);
    if (rv == 0) {
        node->commits_running++;
        return;
    }
    /* Report the failure as a completion, from the loop (never re-enter the step). */
    c->status = rv;
    node->commits_running++;
    done_push(node, c);
}

/* A chain hash read finished (net/uv_verify.c): step it, or, closing, see
 * whether the node can finish. */
static void verify_cb(void *data, struct tdm_event *event)
{
    struct tdm_uv_node *node = data;
    if (event != NULL && !node->closing) {
        node_step(node, event);
    }
    node_maybe_finish(node);
}

static void deadline_cb(uv_timer_t *timer)
{
    struct tdm_uv_node *node = timer->data;
    struct tdm_event event = {.type = TDM_EVENT_TICK};
    node_step(node, &event);
}

static void node_apply(struct tdm_uv_node *node)
{
    const struct tdm_actions *a = &node->actions;
    if (a->history_to_persist != NULL) { /* 1 */
        struct node_job *job = job_new(node, NODE_JOB_EPOCHS);
        job->history = *a->history_to_persist;
        job_push(node, job);
    }
    if (a->cut) { /* 2 */
        struct node_job *job = job_new(node, NODE_JOB_CUT);
        job->cut_after_lsn = a->cut_after_lsn;
        job_push(node, job);
    }
    for (uint32_t i = 0; i < a->write_count; i++) { /* 3 */
        if (a->writes[i].kind == TDM_WRITE_LOCAL) {
            write_local(node, &a->writes[i]);
        } else {
            write_received(node, &a->writes[i]);
        }
    }
    for (uint32_t i = 0; i < a->send_count; i++) { /* 4 */
        send_one(node, a, &a->sends[i]);
    }
    for (uint32_t i = 0; i < a->result_count; i++) { /* 5 */
        const struct tdm_action_result *r = &a->results[i];
        write_complete(node, r->write_id, r->status, r->lsn_first, r->lsn_last);
    }
    tdm_uv_verify_apply(&node->verify, a); /* Reads and claims (PROTOCOL.md §9). */
    if (!node->closing) {                  /* 6 */
        uint64_t now = node_now(node);
        uint64_t timeout = a->deadline_ms > now ? a->deadline_ms - now : 0;
        uv_timer_start(&node->deadline_timer, deadline_cb, timeout, 0);
    }
    for (uint32_t i = 0; i < a->report_count; i++) { /* Last: reports (PROTOCOL.md §8.0). */
        char line[512];
        tdm_uv_node_report_line(node, &a->reports[i], line, sizeof(line));
        tdm_tracef("node %s: %s", node->cluster.node_ids[node->cluster.self_index], line);
        if (node->on_report != NULL) {
            node->on_report(node->report_data, &a->reports[i]);
        }
    }
}

static void node_step(struct tdm_uv_node *node, struct tdm_event *event)
{
    tdm_assert(!node->stepping);
    event->now_ms = node_now(node);
    event->wall_ms = node_wall_ms();
    if (event->now_ms < node->replica.now_ms) {
        event->now_ms = node->replica.now_ms;
    }
    node->stepping = true;
    tdm_replica_step(&node->replica, event, &node->actions);
    node_apply(node);
    node->stepping = false;
    bool primary = node->replica.role == TDM_ROLE_PRIMARY;
    if (primary && !node->schedule_primary && node->switchover_interval_ms != 0 && !node->closing) {
        uv_timer_start(&node->schedule_timer, schedule_cb, node->switchover_interval_ms,
                       node->switchover_interval_ms);
    }
    node->schedule_primary = primary;
    if (TDM_PLANTED_BACKUP_ACK_BEFORE_FDATASYNC && node->planted_lsn != 0 && !node->closing) {
        struct tdm_event early = {.type = TDM_EVENT_PERSISTED};
        early.persisted.kind = TDM_PERSISTED_LOG;
        early.persisted.lsn_last = node->planted_lsn;
        early.persisted.chain_hash = node->planted_chain_hash;
        node->planted_lsn = 0;
        node_step(node, &early); /* The disk job reports it again when done. */
    }
    while (node->deferred_count > 0 && !node->stepping) {
        uint64_t id = node->deferred_ids[0];
        node->deferred_count--;
        memmove(node->deferred_ids, node->deferred_ids + 1,
                node->deferred_count * sizeof(node->deferred_ids[0]));
        struct node_write *w = write_find(node, id);
        if (w != NULL) {
            struct tdm_event submit = {.type = TDM_EVENT_SUBMIT};
            submit.submit.write_id = id;
            submit.submit.record_count = w->record_count;
            submit.submit.size = (uint32_t)w->raw_size;
            node_step(node, &submit);
        }
    }
}

/* ---- links ------------------------------------------------------------------------- */

static void peer_up(struct node_peer *peer, struct tdm_uv_link *link)
{
    struct tdm_uv_node *node = peer->node;
    if (peer->unreachable) {
        peer->unreachable = false;
        tdm_tracef("node %s: peer %s reachable again",
                   node->cluster.node_ids[node->cluster.self_index],
                   node->cluster.node_ids[peer->index]);
    }
    if (peer->link != NULL) {
        struct tdm_uv_link *old = peer->link;
        peer->link = NULL;
        peer->generation++;
        tdm_uv_link_close(old);
        struct tdm_event down = {.type = TDM_EVENT_PEER_DOWN};
        down.peer.node_index = peer->index;
        node_step(node, &down);
    }
    peer->link = link;
    peer->generation++;
    tdm_uv_link_set_data(link, peer);
    struct tdm_event up = {.type = TDM_EVENT_PEER_UP};
    up.peer.node_index = peer->index;
    node_step(node, &up);
}

static void on_frame(struct tdm_uv_link *link, const struct tdm_proto_msg *msg, void *data)
{
    struct node_peer *peer = data;
    struct tdm_uv_node *node = peer->node;
    if (peer->link != link || node->closing) {
        return;
    }
    if (msg->type == TDM_PROTO_FETCH || msg->type == TDM_PROTO_FETCHED) {
        if (node->config_on_repair != NULL) { /* Repair (PROTOCOL.md §9.4): not the replica's. */
            node->config_on_repair(node->config_repair_data, peer->index, msg);
        }
        return;
    }
    struct tdm_diag diag = {{0}};
    int rv = tdm_frame_from_proto(msg, &node->cluster, &node->frame, &diag);
    if (rv == 0 && msg->type == TDM_FRAME_HELLO &&
        strcmp(msg->hello.node, node->cluster.node_ids[peer->index]) != 0) {
        tdm_diag_printf(&diag, "HELLO frame: node %s, link to %s", msg->hello.node,
                        node->cluster.node_ids[peer->index]);
        rv = TANDEM_ECORRUPT;
    }
    if (rv != 0) {
        tdm_tracef("node %s: closing link to %s: %s",
                   node->cluster.node_ids[node->cluster.self_index],
                   node->cluster.node_ids[peer->index], diag.message);
        tdm_uv_link_close(link);
        return;
    }
    struct tdm_event event = {.type = TDM_EVENT_RECEIVE};
    event.receive.node_index = peer->index;
    event.receive.frame = &node->frame;
    node_step(node, &event);
}

static void on_close(struct tdm_uv_link *link, int status, const struct tdm_diag *diag, void *data)
{
    struct node_peer *peer = data;
    struct tdm_uv_node *node = peer->node;
    node->links_open--;
    if (peer->dialing == link) {
        peer->dialing = NULL;
        if (status != TANDEM_ECANCELED && !peer->unreachable && !node->closing) {
            /* Once per outage: the dial is retried every reconnect_ms. */
            peer->unreachable = true;
            tdm_tracef("node %s: peer %s unreachable: %s: %s; retrying every %u ms",
                       node->cluster.node_ids[node->cluster.self_index],
                       node->cluster.node_ids[peer->index], tandem_strerror(status),
                       diag != NULL ? diag->message : "", (unsigned)node->reconnect_ms);
        }
    }
    if (peer->link == link) {
        peer->link = NULL;
        peer->generation++;
        if (!node->closing) {
            struct tdm_event event = {.type = TDM_EVENT_PEER_DOWN};
            event.peer.node_index = peer->index;
            node_step(node, &event);
        }
    }
    node_maybe_finish(node);
}

static void on_open(struct tdm_uv_link *link, void *data)
{
    struct node_peer *peer = data;
    if (peer->dialing == link) {
        peer->dialing = NULL;
    }
    if (peer->node->closing || peer->held) {
        tdm_uv_link_close(link);
        return;
    }
    peer_up(peer, link);
}

static void on_accept(struct tdm_uv_listener *listener, struct tdm_uv_link *link, int status,
                      const struct tdm_diag *diag, void *data)
{
    (void)listener;
    (void)diag;
    struct tdm_uv_node *node = ((struct node_peer *)data)->node;
    if (status != 0) {
        return;
    }
    const char *name = tdm_uv_link_peer_name(link);
    if (strncmp(name, TDM_TLS_CLIENT_PREFIX, strlen(TDM_TLS_CLIENT_PREFIX)) == 0) {
        /* Only a listener with on_client accepts client certificates. */
        tdm_assert(node->config_on_client != NULL);
        if (node->closing) {
            tdm_uv_link_close(link); /* on_close: data is peers[self_index]. */
            node->links_open++;
            return;
        }
        if (!node->config_on_client(node->config_client_data, link)) {
            tdm_uv_link_close(link); /* Not taken: on_close comes to us. */
            node->links_open++;
        }
        return;
    }
    node->links_open++;
    uint32_t index;
    if (node->closing ||
        !tdm_frame_cluster_index(&node->cluster, tdm_uv_link_peer_name(link), &index) ||
        index >= node->cluster.self_index || node->peers[index].held) {
        tdm_uv_link_close(link);
        return; /* Data stays peers[self_index], which never holds a link. */
    }
    peer_up(&node->peers[index], link);
}

static void reconnect_cb(uv_timer_t *timer)
{
    struct tdm_uv_node *node = timer->data;
    if (node->closing) {
        return;
    }
    for (uint32_t i = node->cluster.self_index + 1; i < node->cluster.node_count; i++) {
        struct node_peer *peer = &node->peers[i];
        if (peer->link != NULL || peer->dialing != NULL || !peer->has_address || peer->held) {
            continue;
        }
        struct tdm_uv_link_dial_config config = {
            .address = (const struct sockaddr *)&peer->address,
            .tls = node->tls,
            .expected = node->cluster.node_ids[i],
            .quiet_connect_failure = true, /* on_close traces the first one. */
            .callbacks = {.on_open = on_open,
                          .on_frame = on_frame,
                          .on_close = on_close,
                          .data = peer},
        };
        struct tdm_diag diag = {{0}};
        if (tdm_uv_link_dial(node->loop, &config, &peer->dialing, &diag) == 0) {
            node->links_open++;
        } else {
            peer->dialing = NULL;
        }
    }
}

static void replica_trace(void *data, const char *line)
{
    const struct tdm_uv_node *node = data;
    /* The replica names nodes by index ("#2"): name them by id here. */
    char named[2 * TDM_REPLICA_TRACE_SIZE];
    size_t used = 0;
    for (const char *c = line; *c != '\0' && used + 1 < sizeof(named); c++) {
        if (*c == '#' && c[1] >= '0' && c[1] <= '9') {
            unsigned index = 0;
            const char *digit = c + 1;
            while (*digit >= '0' && *digit <= '9' && index < 1000) {
                index = index * 10 + (unsigned)(*digit - '0');
                digit++;
            }
            if (index < node->cluster.node_count) {
                int n = snprintf(named + used, sizeof(named) - used, "%s",
                                 node->cluster.node_ids[index]);
                used += n > 0 ? (size_t)n : 0;
                used = used < sizeof(named) ? used : sizeof(named) - 1;
                c = digit - 1;
                continue;
            }
        }
        named[used++] = *c;
    }
    named[used] = '\0';
    tdm_tracef("node %s: %s", node->cluster.node_ids[node->cluster.self_index], named);
}

/* ---- switchover and failover (PROTOCOL.md §8.0) ------------------------------------ */

/* switchover_interval: the acting primary hands over to the next of the
 * rotation (a backup's timer does nothing: it may be the primary later). */
static void schedule_cb(uv_timer_t *timer)
{
    struct tdm_uv_node *node = timer->data;
    if (node->closing || node->stepping || node->replica.role != TDM_ROLE_PRIMARY) {
        return;
    }
    tdm_tracef("node %s: switchover_interval: scheduled switchover",
               node->cluster.node_ids[node->cluster.self_index]);
    struct tdm_event event = {.type = TDM_EVENT_SWITCHOVER};
    event.switchover.request_id = node->schedule_request_id++;
    event.switchover.target_index = TDM_SWITCHOVER_NEXT;
    event.switchover.command = false;
    node_step(node, &event);
}

const char *tdm_uv_node_id(const struct tdm_uv_node *node, uint32_t index)
{
    return index < node->cluster.node_count ? node->cluster.node_ids[index] : "?";
}

void tdm_uv_node_report_line(const struct tdm_uv_node *node, const struct tdm_report *report,
                             char *out, size_t size)
{
    size_t used = 0;
#define LINE_ADD(...)                                                                              \
    do {                                                                                           \
        int n_ = snprintf(out + used, size - used, __VA_ARGS__);                                   \
        used += n_ > 0 ? (size_t)n_ : 0;                                                           \
        used = used < size ? used : size - 1;                                                      \
    } while (0)
    tdm_assert(size > 0);
    out[0] = '\0';
    bool switchover = report->kind == TDM_REPORT_SWITCHOVER;
    if (switchover) {
        LINE_ADD("switchover %s%s",
                 report->request_id >= TDM_UV_NODE_SCHEDULE_REQUEST_ID ? "(scheduled) " : "",
                 "to ");
        LINE_ADD("%s", report->target_index == TDM_SWITCHOVER_NEXT
                           ? "next"
                           : tdm_uv_node_id(node, report->target_index));
    } else {
        LINE_ADD("failover to %s", tdm_uv_node_id(node, report->target_index));
    }
    LINE_ADD(": %s", tdm_replica_outcome_name(report->outcome));
    if (report->refusal != 0) {
        LINE_ADD(": %s", tdm_replica_refusal_name(report->refusal));
        if (report->node_index < node->cluster.node_count) {
            LINE_ADD(" (node %s)", tdm_uv_node_id(node, report->node_index));
        }
    }
    switch (report->outcome) {
    case TDM_OUTCOME_STARTED:
        LINE_ADD(switchover ? ", writes held" : ", probing every node");
        break;
    case TDM_OUTCOME_DONE:
    case TDM_OUTCOME_ABANDONED:
    case TDM_OUTCOME_DRY_RUN:
        LINE_ADD(", %sepoch %" PRIu64,
                 report->outcome == TDM_OUTCOME_DRY_RUN     ? "would open "
                 : report->outcome == TDM_OUTCOME_ABANDONED ? "now in "
                                                            : "",
                 report->epoch);
        LINE_ADD(", %s LSN %" PRIu64, switchover ? "handover at" : "durable", report->lsn);
        if (switchover) {
            LINE_ADD(", writes held %" PRIu64 " ms", report->pause_ms);
        } else if (report->risk_lsn_first != 0) {
            LINE_ADD(", at risk LSN %" PRIu64 "..%" PRIu64, report->risk_lsn_first,
                     report->risk_lsn_last);
        } else {
            LINE_ADD(", nothing at risk");
        }
        break;
    case TDM_OUTCOME_REFUSED:
        LINE_ADD(", nothing changed");
        break;
    }
#undef LINE_ADD
}

static int node_command_check(const struct tdm_uv_node *node)
{
    if (node->closing) {
        return TANDEM_ECANCELED;
    }
    return node->stepping ? TANDEM_EBUSY : 0;
}

int tdm_uv_node_switchover(struct tdm_uv_node *node, uint64_t request_id, uint32_t target_index,
                           bool command)
{
    int rv = node_command_check(node);
    if (rv != 0) {
        return rv;
    }
    struct tdm_event event = {.type = TDM_EVENT_SWITCHOVER};
    event.switchover.request_id = request_id;
    event.switchover.target_index = target_index;
    event.switchover.command = command;
    node_step(node, &event);
    return 0;
}

int tdm_uv_node_failover(struct tdm_uv_node *node, uint64_t request_id, bool force, bool dry_run)
{
    int rv = node_command_check(node);
    if (rv != 0) {
        return rv;
    }
    struct tdm_event event = {.type = TDM_EVENT_FAILOVER};
    event.failover.request_id = request_id;
    event.failover.force = force;
    event.failover.dry_run = dry_run;
    node_step(node, &event);
    return 0;
}

/* ---- public ------------------------------------------------------------------------ */

int tdm_uv_node_start(uv_loop_t *loop, const struct tdm_uv_node_config *config,
                      struct tdm_uv_node **out, struct tdm_diag *diag)
{
    if (!tdm_frame_cluster_valid(&config->cluster) ||
        config->initial_primary_index >= config->cluster.node_count) {
        tdm_diag_printf(diag, "bad cluster configuration");
        return TANDEM_EINVALID;
    }
    struct tdm_uv_node *node = tdm_calloc(1, sizeof(*node));
    if (node == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    node->loop = loop;
    node->t = config->t;
    node->log = tdm_node_log(config->t);
    node->fs = tdm_node_fs(config->t);
    node->tls = config->tls;
    node->cluster = config->cluster;
    node->reconnect_ms =
        config->reconnect_ms != 0 ? config->reconnect_ms : TDM_UV_NODE_RECONNECT_MS_DEFAULT;
    node->config_on_client = config->on_client;
    node->config_client_data = config->client_data;
    node->config_on_repair = config->on_repair;
    node->config_repair_data = config->repair_data;
    node->switchover_interval_ms = config->switchover_interval_ms;
    node->schedule_request_id = TDM_UV_NODE_SCHEDULE_REQUEST_ID;
    node->on_report = config->on_report;
    node->report_data = config->report_data;
    snprintf(node->dir, sizeof(node->dir), "%s", config->dir);
    for (uint32_t i = 0; i < TDM_REPLICA_NODES_MAX; i++) {
        node->peers[i].node = node;
        node->peers[i].index = i;
    }
    static struct tdm_epoch_history history; /* Loop thread; copied by init. */
    int rv = epochs_load(node->dir, &node->cluster, &history, diag);
    if (rv == -ENOENT) {
        memset(&history, 0, sizeof(history));
        history.count = 1;
        history.entries[0] =
            (struct tdm_epoch_entry){.epoch = 1,
                                     .lsn_first = 1,
                                     .primary_index = config->initial_primary_index,
                                     .cause = TDM_EPOCH_CAUSE_INIT};
        rv = 0;
    }
    if (rv != 0) {
        tdm_free(node);
        return rv;
    }
    struct tdm_uv_verify_entry verified[TDM_REPLICA_NODES_MAX];
    struct tdm_diag verified_diag = {{0}};
    if (tdm_uv_verify_load(node->dir, &node->cluster, verified, &verified_diag) != 0) {
        tdm_tracef("node %s: verify: %s: ignored, nothing counts as verified",
                   node->cluster.node_ids[node->cluster.self_index], verified_diag.message);
    }
    struct tandem_status st;
    tdm_log_status(node->log, &st);
    struct tdm_replica_config rc = {
        .node_count = node->cluster.node_count,
        .self_index = node->cluster.self_index,
        .min_copies = config->min_copies,
        .write_deadline_ms = config->write_deadline_ms,
        .heartbeat_ms = config->heartbeat_ms,
        .retransmit_ms = config->retransmit_ms,
        .handshake_ms = config->handshake_ms,
        .pipeline_batches_max = TDM_PIPELINE_BATCHES_MAX,
        .pipeline_size_max = TDM_PIPELINE_BYTES_MAX,
        .history = &history,
        .last_lsn = st.lsn_last,
        .last_epoch = st.lsn_last == 0 ? 0 : st.epoch,
        .trace = replica_trace,
        .trace_data = node,
        .verify_interval_ms = config->verify_interval_ms != 0 ? config->verify_interval_ms
                                                              : TDM_VERIFY_INTERVAL_MS_DEFAULT,
        .rotation_count = config->rotation_count,
    };
    for (uint32_t i = 0; i < config->rotation_count && i < TDM_REPLICA_NODES_MAX; i++) {
        rc.rotation[i] = config->rotation[i];
    }
    for (uint32_t i = 0; i < node->cluster.node_count; i++) {
        rc.verified_lsn[i] = verified[i].lsn;
    }
    hash_from_log(&rc.chain_hash, st.chain_hash);
    tdm_replica_init(&node->replica, &rc);
    node->sealed_count = st.sealed_count;
    tdm_uv_verify_init(&node->verify, loop, node->log, node->dir, &node->cluster, verified,
                       verify_cb, node);
    node->appended_lsn = st.lsn_last;
    node->appended_bytes = st.log_bytes;
    node->persisted_lsn = st.lsn_last;
    node->write_id_next = 1;
    pthread_mutex_init(&node->mutex, NULL);

    const char *allowed[TDM_REPLICA_NODES_MAX];
    for (uint32_t i = 0; i < node->cluster.self_index; i++) {
        allowed[i] = node->cluster.node_ids[i];
    }
    struct tdm_uv_listen_config listen = {
        .address = config->listen_address,
        .tls = node->tls,
        .allowed = allowed,
        .allowed_count = node->cluster.self_index,
        .clients = config->on_client != NULL,
        .on_accept = on_accept,
        .callbacks = {.on_frame = on_frame,
                      .on_close = on_close,
                      .data = &node->peers[node->cluster.self_index]},
    };
    rv = tdm_uv_link_listen(loop, &listen, &node->listener, diag);
    if (rv != 0) {
        pthread_mutex_destroy(&node->mutex);
        tdm_free(node);
        return rv;
    }
    uv_timer_init(loop, &node->deadline_timer);
    node->deadline_timer.data = node;
    uv_timer_init(loop, &node->reconnect_timer);
    node->reconnect_timer.data = node;
    uv_timer_init(loop, &node->schedule_timer);
    node->schedule_timer.data = node;
    uv_async_init(loop, &node->async, async_cb);
    node->async.data = node;
    tdm_node_set_written(node->t, written_cb, node); /* Ship before the local fdatasync. */
    node->handles_open = 4;
    uv_timer_start(&node->reconnect_timer, reconnect_cb, 0, node->reconnect_ms);
    if (node->switchover_interval_ms != 0) {
        uv_timer_start(&node->schedule_timer, schedule_cb, node->switchover_interval_ms,
                       node->switchover_interval_ms);
    }
    struct tdm_event first = {.type = TDM_EVENT_TICK};
    node_step(node, &first);
    *out = node;
    return 0;
}

int tdm_uv_node_address(const struct tdm_uv_node *node, struct sockaddr_storage *address)
{
    return tdm_uv_listener_address(node->listener, address);
}

void tdm_uv_node_peer_address(struct tdm_uv_node *node, uint32_t index,
                              const struct sockaddr *address)
{
    tdm_assert(index < node->cluster.node_count && index != node->cluster.self_index);
    struct node_peer *peer = &node->peers[index];
    memset(&peer->address, 0, sizeof(peer->address));
    memcpy(&peer->address, address,
           address->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                          : sizeof(struct sockaddr_in));
    peer->has_address = true;
}

void tdm_uv_node_peer_drop(struct tdm_uv_node *node, uint32_t index, bool hold)
{
    struct node_peer *peer = &node->peers[index];
    peer->held = hold;
    if (peer->link != NULL) {
        tdm_uv_link_close(peer->link); /* on_close reports PEER_DOWN. */
    }
    if (peer->dialing != NULL) {
        tdm_uv_link_close(peer->dialing);
    }
}

void tdm_uv_node_peer_release(struct tdm_uv_node *node, uint32_t index)
{
    node->peers[index].held = false;
}

int tdm_uv_node_submit(struct tdm_uv_node *node, const struct tandem_record *records, size_t count,
                       tdm_uv_node_write_cb cb, void *data, struct tdm_diag *diag)
{
    if (node->closing) {
        tdm_diag_printf(diag, "closing");
        return TANDEM_ECANCELED;
    }
    if (cb == NULL) {
        tdm_diag_printf(diag, "cb must not be NULL");
        return TANDEM_EINVALID;
    }
    if (node->write_count >= TDM_REPLICA_WRITES_MAX) {
        tdm_diag_printf(diag, "%u writes in flight", (unsigned)node->write_count);
        return TANDEM_EBUSY;
    }
    uint8_t *raw = NULL;
    size_t size = 0;
    int rv = tdm_batch_raw_encode(records, count, TANDEM_APPEND_SIZE_MAX, &raw, &size, diag);
    if (rv != 0) {
        return rv;
    }
    struct node_write *w = tdm_calloc(1, sizeof(*w));
    if (w == NULL) {
        tdm_free(raw);
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    w->write_id = node->write_id_next++;
    w->raw = raw;
    w->raw_size = size;
    w->record_count = (uint32_t)count;
    w->cb = cb;
    w->data = data;
    w->next = node->writes;
    node->writes = w;
    node->write_count++;
    if (node->stepping) {
        node->deferred_ids[node->deferred_count++] = w->write_id;
        return 0;
    }
    struct tdm_event event = {.type = TDM_EVENT_SUBMIT};
    event.submit.write_id = w->write_id;
    event.submit.record_count = w->record_count;
    event.submit.size = (uint32_t)size;
    node_step(node, &event);
    return 0;
}

void tdm_uv_node_status(const struct tdm_uv_node *node, struct tdm_replica_status *status)
{
    tdm_replica_status(&node->replica, status);
}

int tdm_uv_node_send(struct tdm_uv_node *node, uint32_t index, const struct tdm_proto_msg *msg,
                     struct tdm_diag *diag)
{
    tdm_assert(index < node->cluster.node_count);
    struct node_peer *peer = &node->peers[index];
    if (peer->link == NULL || node->closing) {
        tdm_diag_printf(diag, "no link to %s", node->cluster.node_ids[index]);
        return TANDEM_ENOTFOUND;
    }
    return tdm_uv_link_send(peer->link, msg, diag);
}

void tdm_uv_node_verified(const struct tdm_uv_node *node, uint32_t index, uint64_t *lsn,
                          int64_t *at_ns)
{
    struct tdm_uv_verify_entry entry = tdm_uv_verify_claim(&node->verify, index);
    *lsn = entry.lsn;
    *at_ns = entry.at_ns;
}

static void handle_closed(uv_handle_t *handle)
{
    struct tdm_uv_node *node = handle->data;
    node->handles_open--;
    node_maybe_finish(node);
}

static void listener_closed(void *data)
{
    struct tdm_uv_node *node = data;
    node->listener = NULL;
    node_maybe_finish(node);
}

static void node_maybe_finish(struct tdm_uv_node *node)
{
    if (!node->closing || node->listener != NULL || node->links_open > 0 || node->job_running ||
        node->jobs_head != NULL || node->reads_running > 0 || node->commits_running > 0 ||
        node->receives_running > 0 || tdm_uv_verify_busy(&node->verify)) {
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&node->async)) {
        /* No more written_cb (it waits for one running); what it queued is
         * freed below, unreported: the node is closing. */
        tdm_node_set_written(node->t, NULL, NULL);
        uv_close((uv_handle_t *)&node->async, handle_closed);
        return;
    }
    if (node->handles_open > 0) {
        return;
    }
    while (node->writes != NULL) {
        write_complete(node, node->writes->write_id, TANDEM_ECANCELED, 0, 0);
    }
    while (node->done_head != NULL) {
        struct node_commit *c = node->done_head;
        node->done_head = c->next;
        tdm_assert(c->written); /* Completions are all in: commits_running is 0. */
        tdm_free(c->bytes);
        tdm_free(c);
    }
    node->done_tail = NULL;
    cache_clear(node);
    pthread_mutex_destroy(&node->mutex);
    tdm_uv_node_close_cb cb = node->close_cb;
    void *data = node->close_data;
    tdm_free(node);
    if (cb != NULL) {
        cb(data);
    }
}

void tdm_uv_node_traffic(const struct tdm_uv_node *node, struct tdm_uv_node_traffic *traffic)
{
    *traffic = node->traffic;
}

void tdm_uv_node_close(struct tdm_uv_node *node, tdm_uv_node_close_cb cb, void *data)
{
    tdm_assert(!node->closing);
    uint64_t bytes = 0;
    uint64_t frames = 0;
    for (uint32_t i = 0; i < TDM_UV_NODE_TRAFFIC_TYPES; i++) {
        bytes += node->traffic.bytes[i];
        frames += node->traffic.frames[i];
    }
    /* One line for bench/bench_verify_traffic.sh (docs/BENCHMARKS.md). */
    tdm_tracef("node %s: sent %" PRIu64 " bytes in %" PRIu64 " frames to other nodes; "
               "verification (CHECK, CHECK_RESULT) %" PRIu64 " bytes in %" PRIu64 " frames",
               node->cluster.node_ids[node->cluster.self_index], bytes, frames,
               node->traffic.bytes[TDM_FRAME_CHECK] + node->traffic.bytes[TDM_FRAME_CHECK_RESULT],
               node->traffic.frames[TDM_FRAME_CHECK] +
                   node->traffic.frames[TDM_FRAME_CHECK_RESULT]);
    node->closing = true;
    node->close_cb = cb;
    node->close_data = data;
    uv_close((uv_handle_t *)&node->deadline_timer, handle_closed);
    uv_close((uv_handle_t *)&node->reconnect_timer, handle_closed);
    uv_close((uv_handle_t *)&node->schedule_timer, handle_closed);
    for (uint32_t i = 0; i < node->cluster.node_count; i++) {
        if (node->peers[i].link != NULL) {
            tdm_uv_link_close(node->peers[i].link);
        }
        if (node->peers[i].dialing != NULL) {
            tdm_uv_link_close(node->peers[i].dialing);
        }
    }
    /* Queued disk jobs that have not started are dropped: the node is closing. */
    while (node->jobs_head != NULL) {
        struct node_job *job = node->jobs_head;
        node->jobs_head = job->next;
        tdm_free(job->bytes);
        tdm_free(job);
    }
    node->jobs_tail = NULL;
    tdm_uv_verify_close(&node->verify);
    tdm_uv_listener_close(node->listener, listener_closed, node);
}
