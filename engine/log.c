/* engine/log.c: appending to, sealing and reading the log.
 *
 * The log is a sequence of segment files DIR/log/<lsn_first>.seg
 * (engine/segment.c), each a header, batches (engine/batch.c) and, once
 * sealed, a footer. Beside them, DIR/log/progress holds two alternating
 * records of durable progress (docs/FORMAT.md "Progress record"), written
 * after each fdatasync, so that recovery can tell a torn tail (bytes never
 * durable) from damage to bytes that were durable.
 *
 * Happy path of an append (writer thread only):
 *   1. If the open segment is full, seal it: footer, fdatasync, close.
 *   2. If no segment is open, create one: header, fdatasync, then fsync the
 *      directory so that the new name survives a crash.
 *   3. Build the batch (compress, checksums, chain hash) after lsn_last.
 *   4. pwrite it at the end of the open segment and fdatasync.
 *   5. Publish the new lsn_last under the mutex, list the batch in the open
 *      segment's batch table; write a progress record.
 *
 * Locating a batch by LSN (tdm_log_locate(), for the replication adapter that
 * ships ranges to backups): the batch tables (struct tdm_log_table, log.h)
 * list where each batch of the open segment is, and of a few more segments
 * (the most recently used: those sealed just before and those walked), so a
 * range is found with a binary search. A segment without a table is walked
 * header by header, bodies skipped, and a sealed segment's walk is kept as its
 * table. A table only ever lists a prefix of its segment's batches: recovery
 * lists the open segment's batches as it verifies them (so a torn tail it cuts
 * was never listed), a cut lists the batches it kept, and a table that runs
 * out of memory stops growing (locating walks on from its end). The bytes are
 * read back with tdm_log_read_located(): one pread per run of batches.
 *
 * Failure modes: any failed pwrite, fdatasync or file creation on the write
 * path makes the log failed (sticky, LMDB's poisoning): the error is reported
 * once with its cause and every later append returns TANDEM_EFAILED. Nothing is
 * retried (DESIGN: never retry a failed fsync). What was written but not made
 * durable is a torn tail that recovery cuts into quarantine on the next open.
 * A failed progress write is harmless: progress is only a hint for recovery.
 *
 * Close: seal nothing (an open segment stays open); fdatasync the progress
 * file; release descriptors and buffers. */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/bytes.h"
#include "base/trace.h"

#define PROGRESS_MAGIC 0x474f5250u /* "PROG" */
#define PROGRESS_NAME  "progress"

static void log_path(const struct tdm_log *log, uint64_t segment_lsn, char *path)
{
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), segment_lsn);
    /* The directory length was checked at open; the name is short. */
    int rv = tdm_fs_path(path, TDM_PATH_SIZE, log->log_dir, name);
    tdm_assert(rv == 0);
}

void tdm_log_fail(struct tdm_log *log, int code, const char *message)
{
    tdm_assert(code < 0);
    pthread_mutex_lock(&log->mutex);
    if (log->failed_code == 0) {
        log->failed_code = code;
        snprintf(log->failed_message, sizeof(log->failed_message), "%s", message);
        tdm_tracef("log failed: %s", message);
    }
    pthread_mutex_unlock(&log->mutex);
}

int tdm_log_failed(struct tdm_log *log, struct tdm_diag *diag)
{
    pthread_mutex_lock(&log->mutex);
    int failed = log->failed_code;
    if (failed != 0) {
        tdm_diag_printf(diag, "%s", log->failed_message);
    }
    pthread_mutex_unlock(&log->mutex);
    return failed;
}

void tdm_log_damage_add(struct tdm_log *log, const struct tandem_damage *damage)
{
    pthread_mutex_lock(&log->mutex);
    if (log->damaged_count < TDM_LOG_DAMAGED_MAX) {
        log->damaged[log->damaged_count] = *damage;
    }
    log->damaged_count++;
    pthread_mutex_unlock(&log->mutex);
    tdm_tracef("damage: segment %" PRIu64 " offset %" PRIu64 " lsn %" PRIu64 "..%" PRIu64 "%s",
               damage->segment_lsn, damage->offset, damage->lsn_first, damage->lsn_last,
               damage->sealed ? " (sealed)" : "");
}

int tdm_log_segment_push(struct tdm_log *log, const struct tdm_log_segment *segment)
{
    pthread_mutex_lock(&log->mutex);
    if (log->segment_count == log->segment_capacity) {
        uint32_t capacity = log->segment_capacity == 0 ? 64 : log->segment_capacity * 2;
        if (capacity > TDM_LOG_SEGMENTS_MAX) {
            pthread_mutex_unlock(&log->mutex);
            return -EMFILE;
        }
        void *p = tdm_realloc(log->segments, capacity * sizeof(*log->segments));
        if (p == NULL) {
            pthread_mutex_unlock(&log->mutex);
            return -ENOMEM;
        }
        log->segments = p;
        log->segment_capacity = capacity;
    }
    log->segments[log->segment_count++] = *segment;
    log->log_bytes += segment->size;
    pthread_mutex_unlock(&log->mutex);
    return 0;
}

/* ---- progress record ------------------------------------------------------ */

static void progress_encode(uint64_t seq, uint64_t lsn, const struct tdm_chain_hash *chain,
                            uint8_t *out)
{
    struct tdm_writer w;
    tdm_writer_init(&w, out, TDM_PROGRESS_SLOT_SIZE);
    tdm_put_u32(&w, PROGRESS_MAGIC);
    tdm_put_u32(&w, 1);
    tdm_put_u64(&w, seq);
    tdm_put_u64(&w, lsn);
    tdm_put_bytes(&w, chain->bytes, TDM_CHAIN_HASH_SIZE);
    tdm_put_u64(&w, 0);
    tdm_put_u64(&w, 0);
    tdm_put_u64(&w, XXH3_64bits(out, 56));
    tdm_assert(!w.overflow);
    tdm_assert(w.offset == TDM_PROGRESS_SLOT_SIZE);
}

static bool progress_decode(const uint8_t *buf, uint64_t *seq, uint64_t *lsn)
{
    struct tdm_reader r;
    tdm_reader_init(&r, buf, TDM_PROGRESS_SLOT_SIZE);
    uint32_t magic = tdm_get_u32(&r);
    uint32_t version = tdm_get_u32(&r);
    *seq = tdm_get_u64(&r);
    *lsn = tdm_get_u64(&r);
    (void)tdm_reader_take(&r, TDM_CHAIN_HASH_SIZE + 16);
    uint64_t checksum = tdm_get_u64(&r);
    tdm_assert(!r.overflow);
    return magic == PROGRESS_MAGIC && version == 1 && checksum == XXH3_64bits(buf, 56);
}

/* Read the newest valid progress record into log->progress_lsn/seq. A missing
 * or unreadable file means "no claim", which recovery treats conservatively. */
int tdm_progress_read(struct tdm_log *log)
{
    char path[TDM_PATH_SIZE];
    int rv = tdm_fs_path(path, sizeof(path), log->log_dir, PROGRESS_NAME);
    tdm_assert(rv == 0);
    int fd;
    rv = log->fs->open(log->fs, path, TDM_FS_READ, &fd);
    if (rv != 0) {
        return rv == -ENOENT ? 0 : rv;
    }
    uint8_t buf[2 * TDM_PROGRESS_SLOT_SIZE];
    size_t read_size = 0;
    rv = log->fs->pread(log->fs, fd, buf, sizeof(buf), 0, &read_size);
    log->fs->close(log->fs, fd);
    if (rv != 0) {
        return rv;
    }
    for (size_t slot = 0; slot < 2; slot++) {
        if (read_size < (slot + 1) * TDM_PROGRESS_SLOT_SIZE) {
            break;
        }
        uint64_t seq;
        uint64_t lsn;
        if (progress_decode(buf + slot * TDM_PROGRESS_SLOT_SIZE, &seq, &lsn) &&
            seq >= log->progress_seq) {
            log->progress_seq = seq;
            log->progress_lsn = lsn;
        }
    }
    return 0;
}

static void progress_write(struct tdm_log *log)
{
    if (log->progress_fd < 0) {
        return;
    }
    uint8_t buf[TDM_PROGRESS_SLOT_SIZE];
    log->progress_seq++;
    progress_encode(log->progress_seq, log->lsn_last, &log->chain_last, buf);
    uint64_t offset = (log->progress_seq % 2) * TDM_PROGRESS_SLOT_SIZE;
    int rv = log->fs->pwrite(log->fs, log->progress_fd, buf, sizeof(buf), offset);
    if (rv != 0) {
        tdm_tracef("progress write: %s (ignored: progress is a hint)", tandem_strerror(rv));
    }
}

int tdm_log_progress_sync(struct tdm_log *log, uint64_t lsn, const struct tdm_chain_hash *chain)
{
    tdm_assert(log->progress_fd >= 0);
    uint8_t buf[TDM_PROGRESS_SLOT_SIZE];
    /* Both slots: an older slot must not keep claiming more than lsn. */
    int rv = 0;
    for (int i = 0; i < 2 && rv == 0; i++) {
        log->progress_seq++;
        progress_encode(log->progress_seq, lsn, chain, buf);
        uint64_t offset = (log->progress_seq % 2) * TDM_PROGRESS_SLOT_SIZE;
        rv = log->fs->pwrite(log->fs, log->progress_fd, buf, sizeof(buf), offset);
    }
    if (rv == 0) {
        rv = log->fs->fdatasync(log->fs, log->progress_fd);
    }
    return rv;
}

/* ---- prepared segments ---------------------------------------------------------- */

#define PREPARE_CHUNK_SIZE (1u << 20)
#define PREPARE_SYNC_EVERY (8u << 20) /* fdatasync as it goes: no 64 MiB flush at once. */

static bool log_prepare_stopping(struct tdm_log *log)
{
    pthread_mutex_lock(&log->prepare_mutex);
    bool stop = log->prepare_stop;
    pthread_mutex_unlock(&log->prepare_mutex);
    return stop;
}

/* Write zeros over [from, to) of fd, fdatasync'ing every PREPARE_SYNC_EVERY. */
static int log_prepare_zero(struct tdm_log *log, int fd, const uint8_t *zeros, uint64_t from,
                            uint64_t to)
{
    uint64_t unsynced = 0;
    for (uint64_t at = from; at < to;) {
        if (log_prepare_stopping(log)) {
            return -ECANCELED;
        }
        size_t n = to - at < PREPARE_CHUNK_SIZE ? (size_t)(to - at) : PREPARE_CHUNK_SIZE;
        int rv = log->fs->pwrite(log->fs, fd, zeros, n, at);
        if (rv == 0 && (unsynced += n) >= PREPARE_SYNC_EVERY) {
            unsynced = 0;
            rv = log->fs->fdatasync(log->fs, fd);
        }
        if (rv != 0) {
            return rv;
        }
        at += n;
    }
    return log->fs->fdatasync(log->fs, fd);
}

int tdm_log_prepare_file(struct tdm_log *log)
{
    char path[TDM_PATH_SIZE];
    int rv = tdm_fs_path(path, sizeof(path), log->log_dir, TDM_LOG_PREPARE_NAME);
    tdm_assert(rv == 0);
    uint64_t slack = log->options.segment_size / 16;
    uint64_t size =
        log->options.segment_size + (slack < TDM_LOG_PREPARE_SLACK ? slack : TDM_LOG_PREPARE_SLACK);
    uint8_t *zeros = tdm_calloc(1, PREPARE_CHUNK_SIZE);
    if (zeros == NULL) {
        return -ENOMEM;
    }
    int fd = -1;
    uint64_t have = 0;
    rv = log->fs->open(log->fs, path, TDM_FS_WRITE | TDM_FS_CREATE, &fd);
    rv = rv != 0 ? rv : log->fs->size(log->fs, fd, &have);
    if (rv == 0 && have > size) { /* segment_size changed: start over. */
        have = 0;
        rv = log->fs->truncate(log->fs, fd, 0);
    }
    if (rv == 0 && have > 0) {
        /* A segment header a crash left before the rename became durable: no
         * batch is ever written before that, so the rest is zeros. */
        uint64_t head = have < TDM_SEGMENT_HEADER_SIZE ? have : TDM_SEGMENT_HEADER_SIZE;
        rv = log->fs->pwrite(log->fs, fd, zeros, (size_t)head, 0);
    }
    rv = rv != 0 ? rv : log_prepare_zero(log, fd, zeros, have, size);
    tdm_free(zeros);
    if (fd >= 0) {
        log->fs->close(log->fs, fd);
    }
    if (rv != 0 && rv != -ECANCELED) {
        (void)log->fs->unlink(log->fs, path); /* Zeros only: frees the space. */
        return rv;
    }
    if (rv == 0) {
        pthread_mutex_lock(&log->prepare_mutex);
        log->prepare_ready = true;
        pthread_mutex_unlock(&log->prepare_mutex);
    }
    return rv;
}

/* Prepare, or say in one trace line why segments are created empty for now. */
static void log_prepare_run(struct tdm_log *log)
{
    int rv = tdm_log_prepare_file(log);
    if (rv != 0 && rv != -ECANCELED) {
        tdm_tracef("prepare %s/%s: %s; the next segment is created empty", log->log_dir,
                   TDM_LOG_PREPARE_NAME, tandem_strerror(rv));
    }
}

static void *log_prepare_main(void *arg)
{
    struct tdm_log *log = arg;
    (void)pthread_setname_np(pthread_self(), "tdm-prepare"); /* For top -H; best effort. */
    pthread_mutex_lock(&log->prepare_mutex);
    for (;;) {
        while (!log->prepare_stop && (!log->prepare_wanted || log->prepare_ready)) {
            pthread_cond_wait(&log->prepare_cond, &log->prepare_mutex);
        }
        if (log->prepare_stop) {
            break;
        }
        log->prepare_wanted = false;
        pthread_mutex_unlock(&log->prepare_mutex);
        log_prepare_run(log);
        pthread_mutex_lock(&log->prepare_mutex);
    }
    pthread_mutex_unlock(&log->prepare_mutex);
    return NULL;
}

/* The open segment is half full: ask for the next segment file. */
static void log_prepare_ask(struct tdm_log *log)
{
    if (log->options.prepare == TDM_LOG_PREPARE_OFF || log->tail_prepare_asked ||
        log->tail_offset < log->options.segment_size / 2) {
        return;
    }
    log->tail_prepare_asked = true;
    if (log->options.prepare == TDM_LOG_PREPARE_INLINE) {
        log_prepare_run(log);
        return;
    }
    if (!log->prepare_started) {
        return;
    }
    pthread_mutex_lock(&log->prepare_mutex);
    log->prepare_wanted = true;
    pthread_cond_signal(&log->prepare_cond);
    pthread_mutex_unlock(&log->prepare_mutex);
}

/* Take the prepared file if one is ready: 1 and *fd open for writing, or 0. */
static int log_prepare_take(struct tdm_log *log, const char *segment_path, int *fd)
{
    pthread_mutex_lock(&log->prepare_mutex);
    bool ready = log->prepare_ready;
    log->prepare_ready = false;
    pthread_mutex_unlock(&log->prepare_mutex);
    if (!ready) {
        return 0;
    }
    char path[TDM_PATH_SIZE];
    int rv = tdm_fs_path(path, sizeof(path), log->log_dir, TDM_LOG_PREPARE_NAME);
    tdm_assert(rv == 0);
    int probe;
    rv = log->fs->open(log->fs, segment_path, TDM_FS_READ, &probe);
    if (rv == 0) { /* A rename must never replace a segment: create it as usual. */
        log->fs->close(log->fs, probe);
        return 0;
    }
    rv = log->fs->open(log->fs, path, TDM_FS_WRITE, fd);
    return rv == 0 ? 1 : 0;
}

/* ---- open and close --------------------------------------------------------- */

int tdm_log_open(struct tdm_log *log, struct tdm_fs *fs, const char *dir,
                 const struct tdm_log_options *options, struct tdm_diag *diag)
{
    tdm_assert(options->segment_size >= TDM_SEGMENT_SIZE_MIN);
    tdm_assert(options->segment_size <= TDM_SEGMENT_SIZE_MAX);
    memset(log, 0, sizeof(*log));
    log->fs = fs;
    log->options = *options;
    log->tail_fd = -1;
    log->progress_fd = -1;
    log->epoch = 1;
    if (tdm_fs_path(log->log_dir, sizeof(log->log_dir), dir, "log") != 0 ||
        tdm_fs_path(log->quarantine_dir, sizeof(log->quarantine_dir), dir, "quarantine") != 0 ||
        strlen(log->log_dir) > TDM_PATH_SIZE - 64) {
        tdm_diag_printf(diag, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    pthread_mutex_init(&log->mutex, NULL);
    pthread_mutex_init(&log->swap_mutex, NULL);
    pthread_mutex_init(&log->prepare_mutex, NULL);
    pthread_cond_init(&log->prepare_cond, NULL);
    int rv = -ENOMEM;
    log->tail_checksum = XXH3_createState();
    if (log->tail_checksum == NULL) {
        tdm_diag_printf(diag, "out of memory");
        goto err;
    }
    if (!options->read_only) {
        log->cctx = ZSTD_createCCtx();
        if (log->cctx == NULL) {
            tdm_diag_printf(diag, "out of memory");
            goto err;
        }
    }
    rv = tdm_log_recover(log, diag);
    if (rv != 0) {
        goto err;
    }
    if (!options->read_only) {
        char path[TDM_PATH_SIZE];
        rv = tdm_fs_path(path, sizeof(path), log->log_dir, PROGRESS_NAME);
        tdm_assert(rv == 0);
        rv = fs->open(fs, path, TDM_FS_WRITE | TDM_FS_CREATE, &log->progress_fd);
        if (rv != 0) {
            tdm_diag_printf(diag, "open %s: %s", path, tandem_strerror(rv));
            goto err;
        }
    }
    if (options->prepare == TDM_LOG_PREPARE_THREAD && !options->read_only) {
        /* Without the thread, segments are created empty: slower, not wrong. */
        if (log->segment_count == 0) {
            /* A new log: prepare its first segment now, before the first
             * batch. Appends that extend a file make every fdatasync write
             * the inode too (docs/FORMAT.md "Prepared segments"). */
            log->prepare_wanted = true;
            log->tail_prepare_asked = true;
        }
        log->prepare_started =
            pthread_create(&log->prepare_thread, NULL, log_prepare_main, log) == 0;
    }
    return 0;

err:
    tdm_assert(rv < 0);
    tdm_log_close(log);
    return rv;
}

void tdm_log_close(struct tdm_log *log)
{
    if (log->prepare_started) {
        pthread_mutex_lock(&log->prepare_mutex);
        log->prepare_stop = true;
        pthread_cond_signal(&log->prepare_cond);
        pthread_mutex_unlock(&log->prepare_mutex);
        pthread_join(log->prepare_thread, NULL);
        log->prepare_started = false;
    }
    if (log->tail_fd >= 0) {
        log->fs->close(log->fs, log->tail_fd);
        log->tail_fd = -1;
    }
    log->tail_unsynced = false; /* Never acknowledged: recovery treats it as a torn tail. */
    if (log->progress_fd >= 0) {
        /* Best effort: progress is a hint, and the log itself is durable. */
        (void)log->fs->fdatasync(log->fs, log->progress_fd);
        log->fs->close(log->fs, log->progress_fd);
        log->progress_fd = -1;
    }
    if (log->tail_checksum != NULL) {
        XXH3_freeState(log->tail_checksum);
        log->tail_checksum = NULL;
    }
    ZSTD_freeCCtx(log->cctx);
    log->cctx = NULL;
    tdm_free(log->buffer);
    log->buffer = NULL;
    tdm_free(log->segments);
    log->segments = NULL;
    log->segment_count = 0;
    for (uint32_t i = 0; i < TDM_LOG_TABLES_MAX; i++) {
        tdm_free(log->tables[i].entries);
        log->tables[i] = (struct tdm_log_table){0};
    }
    pthread_mutex_destroy(&log->mutex);
    pthread_mutex_destroy(&log->swap_mutex);
    pthread_cond_destroy(&log->prepare_cond);
    pthread_mutex_destroy(&log->prepare_mutex);
}

/* ---- append ------------------------------------------------------------------- */

static int log_fail_io(struct tdm_log *log, int rv, struct tdm_diag *diag, const char *what,
                       uint64_t segment_lsn)
{
    char message[TDM_DIAG_SIZE];
    snprintf(message, sizeof(message), "%s segment %" PRIu64 ": %s", what, segment_lsn,
             tandem_strerror(rv));
    tdm_log_fail(log, rv, message);
    tdm_diag_printf(diag, "%s", message);
    return TANDEM_EFAILED;
}

static int log_segment_create(struct tdm_log *log, struct tdm_diag *diag)
{
    tdm_assert(log->tail_fd < 0);
    uint64_t lsn_first = log->lsn_last + 1;
    char path[TDM_PATH_SIZE];
    log_path(log, lsn_first, path);
    int fd;
    int prepared = log_prepare_take(log, path, &fd);
    int rv = 0;
    if (!prepared) {
        rv = log->fs->open(log->fs, path, TDM_FS_WRITE | TDM_FS_CREATE | TDM_FS_EXCLUSIVE, &fd);
    }
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "create", lsn_first);
    }
    struct tdm_segment_header header = {
        .flags = prepared ? TDM_SEGMENT_PREPARED : 0,
        .lsn_first = lsn_first,
        .epoch = log->epoch,
        .chain_prev = log->chain_last,
        .time_ns = 0,
    };
    uint8_t buf[TDM_SEGMENT_HEADER_SIZE];
    tdm_segment_header_encode(&header, buf);
    const char *what = "write header of";
    rv = log->fs->pwrite(log->fs, fd, buf, sizeof(buf), 0);
    if (rv == 0) {
        what = "fdatasync";
        rv = log->fs->fdatasync(log->fs, fd);
    }
    char prepared_path[TDM_PATH_SIZE];
    if (rv == 0 && prepared) {
        /* The header is durable under the prepared name first, so the
         * segment's name never shows a file without one. */
        what = "rename the prepared file to";
        rv = tdm_fs_path(prepared_path, sizeof(prepared_path), log->log_dir, TDM_LOG_PREPARE_NAME);
        rv = rv != 0 ? rv : log->fs->rename(log->fs, prepared_path, path);
    }
    if (rv == 0) {
        /* The new name must survive a crash before any batch is written into it. */
        what = "sync directory for";
        rv = log->fs->sync_dir(log->fs, log->log_dir);
    }
    if (rv != 0) {
        log->fs->close(log->fs, fd);
        (void)log->fs->unlink(log->fs, path); /* Best effort: recovery handles leftovers. */
        return log_fail_io(log, rv, diag, what, lsn_first);
    }
    struct tdm_log_segment segment = {
        .lsn_first = lsn_first,
        .lsn_last = lsn_first - 1,
        .size = TDM_SEGMENT_HEADER_SIZE,
        .chain_last = log->chain_last,
    };
    rv = tdm_log_segment_push(log, &segment);
    if (rv != 0) {
        log->fs->close(log->fs, fd);
        return log_fail_io(log, rv, diag, "track", lsn_first);
    }
    XXH3_64bits_reset(log->tail_checksum);
    XXH3_64bits_update(log->tail_checksum, buf, sizeof(buf));
    log->tail_fd = fd;
    log->tail_offset = TDM_SEGMENT_HEADER_SIZE;
    log->tail_batch_count = 0;
    log->tail_allocated = prepared;
    log->tail_prepare_asked = false;
    return 0;
}

int tdm_log_seal(struct tdm_log *log, struct tdm_diag *diag)
{
    if (log->tail_fd < 0 || log->tail_batch_count == 0) {
        return 0;
    }
    tdm_assert(log->segment_count > 0);
    struct tdm_log_segment *segment = &log->segments[log->segment_count - 1];
    tdm_assert(!segment->sealed);
    struct tdm_segment_footer footer = {
        .lsn_first = segment->lsn_first,
        .lsn_last = log->lsn_last,
        .batch_count = log->tail_batch_count,
        .data_size = log->tail_offset,
        .checksum = XXH3_64bits_digest(log->tail_checksum),
        .chain_last = log->chain_last,
    };
    uint8_t buf[TDM_SEGMENT_FOOTER_SIZE];
    tdm_segment_footer_encode(&footer, buf);
    int rv = 0;
    if (log->tail_allocated) {
        /* The footer ends the file: drop the zeros after it first. A crash
         * before the fdatasync leaves either zeros (still open) or the
         * footer before zeros, a torn tail that recovery cuts. */
        rv = log->fs->truncate(log->fs, log->tail_fd, log->tail_offset + sizeof(buf));
        if (rv != 0) {
            return log_fail_io(log, rv, diag, "truncate", segment->lsn_first);
        }
    }
    rv = log->fs->pwrite(log->fs, log->tail_fd, buf, sizeof(buf), log->tail_offset);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "write footer of", segment->lsn_first);
    }
    rv = log->fs->fdatasync(log->fs, log->tail_fd);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "fdatasync footer of", segment->lsn_first);
    }
    log->fs->close(log->fs, log->tail_fd);
    log->tail_fd = -1;
    log->tail_allocated = false;
    if (log->tail_unsynced) { /* The footer's fdatasync covered the batches. */
        log->tail_unsynced = false;
        progress_write(log);
    }
    pthread_mutex_lock(&log->mutex);
    segment->sealed = true;
    segment->size += TDM_SEGMENT_FOOTER_SIZE;
    log->log_bytes += TDM_SEGMENT_FOOTER_SIZE;
    pthread_mutex_unlock(&log->mutex);
    return 0;
}

static int log_append_check(struct tdm_log *log, struct tdm_diag *diag)
{
    if (log->options.read_only) {
        tdm_diag_printf(diag, "the log is open read-only");
        return TANDEM_EREADONLY;
    }
    if (tdm_log_failed(log, diag) != 0) {
        return TANDEM_EFAILED;
    }
    if (log->tail_damaged) {
        tdm_diag_printf(diag, "the open segment is damaged; repair it from a replica");
        return TANDEM_EDAMAGED;
    }
    return 0;
}

static int log_buffer_reserve(struct tdm_log *log, size_t size)
{
    if (log->buffer_size >= size) {
        return 0;
    }
    uint8_t *p = tdm_malloc(size);
    if (p == NULL) {
        return -ENOMEM;
    }
    tdm_free(log->buffer);
    log->buffer = p;
    log->buffer_size = size;
    return 0;
}

/* Seal a full open segment and open a new one if none is open. */
static int log_tail_prepare(struct tdm_log *log, struct tdm_diag *diag)
{
    int rv = log_append_check(log, diag);
    if (rv != 0) {
        return rv;
    }
    if (log->tail_fd >= 0 && log->tail_offset >= log->options.segment_size) {
        rv = tdm_log_seal(log, diag);
        if (rv != 0) {
            return rv;
        }
    }
    if (log->tail_fd < 0) {
        rv = log_segment_create(log, diag);
    }
    return rv;
}

static void log_table_note_locked(struct tdm_log *log, uint64_t segment_lsn, uint64_t lsn_first,
                                  uint64_t lsn_last, uint64_t offset, uint32_t size);

/* Write one built and verified batch at the end of the open segment, make it
 * durable, publish it, and list it in the segment's batch table. */
static int log_write_batch(struct tdm_log *log, const uint8_t *bytes, size_t size,
                           const struct tdm_batch_header *h, struct tdm_log_location *location,
                           bool sync, struct tdm_diag *diag)
{
    tdm_assert(log->tail_fd >= 0);
    tdm_assert(h->lsn_first == log->lsn_last + 1);
    tdm_assert(size == TDM_BATCH_HEADER_SIZE + (size_t)h->body_size);
    struct tdm_log_segment *segment = &log->segments[log->segment_count - 1];
    int rv = log->fs->pwrite(log->fs, log->tail_fd, bytes, size, log->tail_offset);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "write batch to", segment->lsn_first);
    }
#if !TDM_PLANTED_ACK_BEFORE_FDATASYNC
    if (sync) {
        rv = log->fs->fdatasync(log->fs, log->tail_fd);
        if (rv != 0) {
            return log_fail_io(log, rv, diag, "fdatasync", segment->lsn_first);
        }
    }
#endif
    XXH3_64bits_update(log->tail_checksum, bytes, size);
    location->segment_lsn = segment->lsn_first;
    location->offset = log->tail_offset;
    location->size = (uint32_t)size;
    pthread_mutex_lock(&log->mutex);
    if (log->lsn_first == 0) {
        log->lsn_first = h->lsn_first;
    }
    log->lsn_last = tdm_batch_lsn_last(h);
    log->chain_last = h->chain_hash;
    log->epoch = h->epoch;
    log_table_note_locked(log, segment->lsn_first, h->lsn_first, log->lsn_last, log->tail_offset,
                          (uint32_t)size);
    log->tail_offset += (uint64_t)size;
    log->tail_batch_count++;
    segment->lsn_last = log->lsn_last;
    segment->size = log->tail_offset;
    segment->chain_last = h->chain_hash;
    log->log_bytes += (uint64_t)size;
    pthread_mutex_unlock(&log->mutex);
    log_prepare_ask(log);
    if (sync) {
        progress_write(log);
    } else {
        log->tail_unsynced = true; /* Progress is written once tdm_log_sync() made it durable. */
    }
    return 0;
}

int tdm_log_sync(struct tdm_log *log, struct tdm_diag *diag)
{
    int rv = tdm_log_failed(log, diag);
    if (rv != 0 || !log->tail_unsynced) {
        return rv;
    }
    tdm_assert(log->tail_fd >= 0);
#if !TDM_PLANTED_ACK_BEFORE_FDATASYNC /* The planted bug skips every fdatasync of the log. */
    rv = log->fs->fdatasync(log->fs, log->tail_fd);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "fdatasync",
                           log->segments[log->segment_count - 1].lsn_first);
    }
#endif
    log->tail_unsynced = false;
    progress_write(log);
    return 0;
}

/* Build and write one local batch; with sync, fdatasync it too. *bytes (may be
 * NULL) receives the batch as written, in log->buffer. */
static int log_append_local(struct tdm_log *log, const uint8_t *raw, size_t raw_size,
                            uint32_t record_count, int64_t time_ns, bool sync,
                            struct tdm_batch_header *header, struct tdm_log_location *location,
                            const uint8_t **bytes, struct tdm_diag *diag)
{
    tdm_assert(record_count > 0);
    tdm_assert(raw_size <= TDM_BATCH_RAW_SIZE_MAX);
    int rv = log_tail_prepare(log, diag);
    if (rv != 0) {
        return rv;
    }
    rv = log_buffer_reserve(log, tdm_batch_bound(raw_size));
    if (rv != 0) {
        tdm_diag_printf(diag, "out of memory for a batch of %zu bytes", raw_size);
        return rv;
    }
    struct tdm_batch_header h;
    int size = tdm_batch_build(log->cctx, raw, raw_size, record_count, log->epoch,
                               log->lsn_last + 1, log->lsn_last, time_ns, &log->chain_last,
                               log->buffer, log->buffer_size, &h);
    if (size < 0) {
        tdm_diag_printf(diag, "compress batch: %s", tandem_strerror(size));
        return size;
    }
    rv = log_write_batch(log, log->buffer, (size_t)size, &h, location, sync, diag);
    if (rv == 0) {
        *header = h;
        if (bytes != NULL) {
            *bytes = log->buffer;
        }
    }
    return rv;
}

int tdm_log_append(struct tdm_log *log, const uint8_t *raw, size_t raw_size, uint32_t record_count,
                   int64_t time_ns, struct tdm_batch_header *header,
                   struct tdm_log_location *location, struct tdm_diag *diag)
{
    return log_append_local(log, raw, raw_size, record_count, time_ns, true, header, location, NULL,
                            diag);
}

int tdm_log_append_unsynced(struct tdm_log *log, const uint8_t *raw, size_t raw_size,
                            uint32_t record_count, int64_t time_ns, struct tdm_batch_header *header,
                            struct tdm_log_location *location, const uint8_t **bytes,
                            struct tdm_diag *diag)
{
    tdm_assert(bytes != NULL);
    return log_append_local(log, raw, raw_size, record_count, time_ns, false, header, location,
                            bytes, diag);
}

int tdm_log_append_batch(struct tdm_log *log, const uint8_t *bytes, size_t size,
                         struct tdm_batch_header *header, struct tdm_log_location *location,
                         struct tdm_diag *diag)
{
    int rv = tdm_log_append_batch_unsynced(log, bytes, size, header, location, diag);
    if (rv == 0) {
        rv = tdm_log_sync(log, diag);
    }
    return rv;
}

/* Append a batch built elsewhere, unsynced; with body_proven, the caller ran
 * tdm_batch_body_decode() on these bytes already. */
static int log_append_batch_unsynced(struct tdm_log *log, const uint8_t *bytes, size_t size,
                                     bool body_proven, struct tdm_batch_header *header,
                                     struct tdm_log_location *location, struct tdm_diag *diag)
{
    /* Untrusted bytes from a peer: every check is a return code. */
    struct tdm_batch_header h;
    int rv = body_proven ? tdm_batch_whole_header_decode(bytes, size, &h, diag)
                         : tdm_batch_verify(bytes, size, &h, diag);
    if (rv != 0) {
        return rv;
    }
    if (h.lsn_first != log->lsn_last + 1) {
        tdm_diag_printf(diag, "batch starts at LSN %" PRIu64 ", the log ends at %" PRIu64,
                        h.lsn_first, log->lsn_last);
        return TANDEM_EINVALID;
    }
    if (h.epoch < log->epoch) {
        tdm_diag_printf(diag, "batch %" PRIu64 " from epoch %" PRIu64 " < %" PRIu64, h.lsn_first,
                        h.epoch, log->epoch);
        return TANDEM_ESTALEEPOCH;
    }
    if (!tdm_batch_chain_follows(&h, &log->chain_last)) {
        return TDM_CORRUPT(diag, "batch %" PRIu64 ": chain hash does not follow LSN %" PRIu64,
                           h.lsn_first, log->lsn_last);
    }
    rv = log_tail_prepare(log, diag);
    if (rv == 0) {
        rv = log_write_batch(log, bytes, size, &h, location, false, diag);
    }
    if (rv == 0) {
        *header = h;
    }
    return rv;
}

int tdm_log_append_batch_unsynced(struct tdm_log *log, const uint8_t *bytes, size_t size,
                                  struct tdm_batch_header *header,
                                  struct tdm_log_location *location, struct tdm_diag *diag)
{
    return log_append_batch_unsynced(log, bytes, size, false, header, location, diag);
}

int tdm_log_append_batch_proven_unsynced(struct tdm_log *log, const uint8_t *bytes, size_t size,
                                         struct tdm_batch_header *header,
                                         struct tdm_log_location *location, struct tdm_diag *diag)
{
    return log_append_batch_unsynced(log, bytes, size, true, header, location, diag);
}

/* ---- quarantine names ---------------------------------------------------------- */

int tdm_log_quarantine_path(struct tdm_log *log, const char *name, char *path)
{
    char candidate[TDM_PATH_SIZE];
    for (unsigned n = 1; n <= TDM_LOG_QUARANTINE_TRIES; n++) {
        int rv = n == 1 ? snprintf(candidate, sizeof(candidate), "%s", name)
                        : snprintf(candidate, sizeof(candidate), "%s.%u", name, n);
        if (rv < 0 || (size_t)rv >= sizeof(candidate)) {
            return -ENAMETOOLONG;
        }
        rv = tdm_fs_path(path, TDM_PATH_SIZE, log->quarantine_dir, candidate);
        if (rv != 0) {
            return rv;
        }
        int fd;
        rv = log->fs->open(log->fs, path, TDM_FS_READ, &fd);
        if (rv == -ENOENT) {
            return 0;
        }
        if (rv != 0) {
            return rv;
        }
        log->fs->close(log->fs, fd);
    }
    return -EEXIST;
}

/* ---- reading ---------------------------------------------------------------- */

int tdm_log_segment_open(struct tdm_fs *fs, const char *log_dir, uint64_t segment_lsn, int *fd,
                         struct tdm_diag *diag)
{
    char name[TDM_SEGMENT_NAME_SIZE];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(name, sizeof(name), segment_lsn);
    int rv = tdm_fs_path(path, sizeof(path), log_dir, name);
    if (rv == 0) {
        rv = fs->open(fs, path, TDM_FS_READ, fd);
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "open segment %s: %s", name, tandem_strerror(rv));
    }
    return rv;
}

int tdm_log_read_batch_at(struct tdm_fs *fs, int fd, const struct tdm_log_location *location,
                          struct tdm_batch_header *header, uint8_t **raw, struct tdm_diag *diag)
{
    uint8_t *bytes = NULL;
    uint8_t *out = NULL;
    struct tdm_batch_header h;
    int rv = 0;
    /* The location comes from the index, derived state: bound it before
     * reading header and body in one read. */
    if (location->size < TDM_BATCH_HEADER_SIZE ||
        location->size > TDM_BATCH_HEADER_SIZE + (uint64_t)TDM_BATCH_BODY_SIZE_MAX) {
        rv = TDM_CORRUPT(diag, "batch size differs from the index");
    }
    if (rv == 0) {
        bytes = tdm_malloc(location->size);
        rv = bytes == NULL ? -ENOMEM : 0;
    }
    if (rv == 0) {
        rv = tdm_fs_read_exact(fs, fd, bytes, location->size, location->offset);
        if (rv == -ENODATA) {
            rv = TDM_CORRUPT(diag, "batch past the end of the file");
        }
    }
    if (rv == 0) {
        rv = tdm_batch_header_decode(bytes, TDM_BATCH_HEADER_SIZE, &h, diag);
    }
    if (rv == 0 && TDM_BATCH_HEADER_SIZE + (uint64_t)h.body_size != location->size) {
        rv = TDM_CORRUPT(diag, "batch size differs from the index");
    }
    if (rv == 0) {
        out = tdm_malloc(h.raw_size + 1);
        rv = out == NULL ? -ENOMEM : 0;
    }
    if (rv == 0) {
        rv = tdm_batch_body_decode(&h, bytes + TDM_BATCH_HEADER_SIZE, out, h.raw_size, diag);
    }
    tdm_free(bytes);
    if (rv != 0) {
        char name[TDM_SEGMENT_NAME_SIZE];
        tdm_segment_name(name, sizeof(name), location->segment_lsn);
        tdm_diag_wrapf(diag, "segment %s offset %" PRIu64, name, location->offset);
        tdm_free(out);
        return rv;
    }
    *header = h;
    *raw = out;
    return 0;
}

int tdm_log_read_batch(struct tdm_fs *fs, const char *log_dir,
                       const struct tdm_log_location *location, struct tdm_batch_header *header,
                       uint8_t **raw, struct tdm_diag *diag)
{
    int fd;
    int rv = tdm_log_segment_open(fs, log_dir, location->segment_lsn, &fd, diag);
    if (rv != 0) {
        return rv;
    }
    rv = tdm_log_read_batch_at(fs, fd, location, header, raw, diag);
    fs->close(fs, fd);
    return rv;
}

void tdm_log_status(struct tdm_log *log, struct tandem_status *status)
{
    pthread_mutex_lock(&log->mutex);
    status->lsn_first = log->lsn_first;
    status->lsn_last = log->lsn_last;
    status->epoch = log->epoch;
    memcpy(status->chain_hash, log->chain_last.bytes, TDM_CHAIN_HASH_SIZE);
    status->segment_count = log->segment_count;
    status->sealed_count = 0;
    for (uint32_t i = 0; i < log->segment_count; i++) {
        status->sealed_count += log->segments[i].sealed ? 1u : 0u;
    }
    status->log_bytes = log->log_bytes;
    status->quarantine_bytes = log->quarantine_bytes;
    status->quarantine_count = log->quarantine_count;
    status->failed_code = log->failed_code;
    snprintf(status->failed_message, sizeof(status->failed_message), "%s", log->failed_message);
    status->damaged_count = log->damaged_count;
    uint32_t n = log->damaged_count < TANDEM_STATUS_DAMAGED_MAX ? log->damaged_count
                                                                : TANDEM_STATUS_DAMAGED_MAX;
    memcpy(status->damaged, log->damaged, n * sizeof(status->damaged[0]));
    pthread_mutex_unlock(&log->mutex);
}

/* ---- batch tables and locating batches -------------------------------------- */

#define LOG_TABLE_GROWTH_MIN 256u        /* Entries of a table's first allocation. */
#define LOG_WALK_BUFFER_SIZE (64u << 10) /* Read ahead of a header walk. */

tdm_static_assert(TDM_SEGMENT_SIZE_MAX + TDM_BATCH_HEADER_SIZE + TDM_BATCH_BODY_SIZE_MAX <
                  UINT32_MAX); /* struct tdm_log_entry's u32 offset. */

/* Batches a segment can hold: it grows to segment_size plus one batch, and a
 * batch takes at least a header and one body byte. */
static uint32_t log_table_entries_max(const struct tdm_log *log)
{
    uint64_t bytes = log->options.segment_size + TDM_BATCH_HEADER_SIZE + TDM_BATCH_BODY_SIZE_MAX;
    return (uint32_t)(bytes / (TDM_BATCH_HEADER_SIZE + 1) + 1);
}

static void log_table_reset(struct tdm_log_table *t, uint64_t segment_lsn)
{
    t->segment_lsn = segment_lsn;
    t->lsn_next = segment_lsn;
    t->end = TDM_SEGMENT_HEADER_SIZE;
    t->frozen = false;
    t->count = 0; /* The entries stay allocated for the next segment. */
}

void tdm_log_table_add(struct tdm_log *log, struct tdm_log_table *table, uint64_t lsn_first,
                       uint64_t lsn_last, uint64_t offset, uint32_t size)
{
    tdm_assert(lsn_first <= lsn_last);
    tdm_assert(size >= TDM_BATCH_HEADER_SIZE);
    if (table->frozen || table->end != offset || table->lsn_next != lsn_first ||
        offset + size > UINT32_MAX) {
        table->frozen = true; /* The prefix listed so far stays true. */
        return;
    }
    if (table->count == table->capacity) {
        uint32_t max = log_table_entries_max(log);
        uint32_t capacity = table->capacity == 0 ? LOG_TABLE_GROWTH_MIN : table->capacity * 2;
        capacity = capacity > max ? max : capacity;
        void *p = capacity > table->count
                      ? tdm_realloc(table->entries, capacity * sizeof(*table->entries))
                      : NULL;
        if (p == NULL) {
            table->frozen = true;
            return;
        }
        table->entries = p;
        table->capacity = capacity;
    }
    table->entries[table->count++] =
        (struct tdm_log_entry){.lsn_first = lsn_first, .offset = (uint32_t)offset, .size = size};
    table->end = offset + size;
    table->lsn_next = lsn_last + 1;
}

static struct tdm_log_table *log_table_find_locked(struct tdm_log *log, uint64_t segment_lsn)
{
    tdm_assert(segment_lsn != 0);
    for (uint32_t i = 0; i < TDM_LOG_TABLES_MAX; i++) {
        if (log->tables[i].segment_lsn == segment_lsn) {
            return &log->tables[i];
        }
    }
    return NULL;
}

/* The slot to reuse: free, else the least recently used one, never the open
 * segment's (it is kept for as long as the segment is open). */
static struct tdm_log_table *log_table_slot_locked(struct tdm_log *log)
{
    uint64_t open_lsn = 0;
    if (log->segment_count > 0 && !log->segments[log->segment_count - 1].sealed) {
        open_lsn = log->segments[log->segment_count - 1].lsn_first;
    }
    struct tdm_log_table *slot = NULL;
    for (uint32_t i = 0; i < TDM_LOG_TABLES_MAX; i++) {
        struct tdm_log_table *t = &log->tables[i];
        if (t->segment_lsn == 0) {
            return t;
        }
        if (t->segment_lsn != open_lsn && (slot == NULL || t->used < slot->used)) {
            slot = t;
        }
    }
    tdm_assert(slot != NULL); /* TDM_LOG_TABLES_MAX >= 2. */
    return slot;
}

static void log_table_note_locked(struct tdm_log *log, uint64_t segment_lsn, uint64_t lsn_first,
                                  uint64_t lsn_last, uint64_t offset, uint32_t size)
{
    struct tdm_log_table *t = log_table_find_locked(log, segment_lsn);
    if (t == NULL) {
        if (offset != TDM_SEGMENT_HEADER_SIZE) {
            return; /* Its table was dropped: locating walks its headers. */
        }
        t = log_table_slot_locked(log);
        log_table_reset(t, segment_lsn);
    }
    tdm_log_table_add(log, t, lsn_first, lsn_last, offset, size);
    t->used = ++log->table_clock;
}

void tdm_log_table_note(struct tdm_log *log, uint64_t segment_lsn, uint64_t lsn_first,
                        uint64_t lsn_last, uint64_t offset, uint32_t size)
{
    pthread_mutex_lock(&log->mutex);
    log_table_note_locked(log, segment_lsn, lsn_first, lsn_last, offset, size);
    pthread_mutex_unlock(&log->mutex);
}

void tdm_log_tables_cut_locked(struct tdm_log *log, struct tdm_log_table *built)
{
    tdm_assert(built->segment_lsn != 0);
    log->cut_count++;
    struct tdm_log_table *slot = NULL;
    for (uint32_t i = 0; i < TDM_LOG_TABLES_MAX; i++) {
        struct tdm_log_table *t = &log->tables[i];
        if (t->segment_lsn >= built->segment_lsn) {
            log_table_reset(t, 0); /* Cut, or moved to quarantine. */
            slot = slot == NULL ? t : slot;
        }
    }
    slot = slot != NULL ? slot : log_table_slot_locked(log);
    struct tdm_log_entry *entries = slot->entries;
    uint32_t capacity = slot->capacity;
    *slot = *built;
    slot->used = ++log->table_clock;
    built->entries = entries; /* The caller frees what the slot held. */
    built->capacity = capacity;
    built->count = 0;
}

/* ---- locating ---- */

/* What a tdm_log_locate() call still wants, and what it found so far. */
struct locate_want {
    uint64_t lsn;      /* Next LSN to locate. */
    uint64_t lsn_last; /* Last LSN wanted (within the log). */
    struct tdm_log_batch *out;
    uint32_t capacity;
    uint32_t count;
};

static bool locate_done(const struct locate_want *want)
{
    return want->count == want->capacity || want->lsn > want->lsn_last;
}

static void locate_found(struct locate_want *want, uint64_t segment_lsn, uint64_t lsn_first,
                         uint64_t lsn_last, uint64_t offset, uint32_t size)
{
    tdm_assert(!locate_done(want));
    tdm_assert(lsn_first <= want->lsn && want->lsn <= lsn_last);
    want->out[want->count++] = (struct tdm_log_batch){
        .lsn_first = lsn_first,
        .lsn_last = lsn_last,
        .location = {.segment_lsn = segment_lsn, .offset = offset, .size = size},
    };
    want->lsn = lsn_last + 1;
}

/* Copy from table t what want asks for, from the entry holding want->lsn on.
 * Returns false if t does not list want->lsn. */
static bool locate_from_table_locked(struct tdm_log *log, struct tdm_log_table *t,
                                     struct locate_want *want)
{
    if (t->count == 0 || want->lsn >= t->lsn_next || want->lsn < t->entries[0].lsn_first) {
        return false;
    }
    uint32_t low = 0; /* Binary search: the last entry with lsn_first <= want->lsn. */
    uint32_t high = t->count;
    while (high - low > 1) {
        uint32_t middle = low + (high - low) / 2;
        if (t->entries[middle].lsn_first <= want->lsn) {
            low = middle;
        } else {
            high = middle;
        }
    }
    for (uint32_t i = low; i < t->count && !locate_done(want); i++) {
        const struct tdm_log_entry *e = &t->entries[i];
        uint64_t next = i + 1 < t->count ? t->entries[i + 1].lsn_first : t->lsn_next;
        locate_found(want, t->segment_lsn, e->lsn_first, next - 1, e->offset, e->size);
    }
    t->used = ++log->table_clock;
    return true;
}

/* Reading the batch headers of one segment, bodies skipped. */
struct locate_walk {
    struct tdm_fs *fs;
    int fd;
    struct tdm_log_segment seg; /* As published when the walk began. */
    uint64_t end;               /* Bytes that may hold batches. */
    uint8_t *buffer;            /* LOG_WALK_BUFFER_SIZE bytes read ahead... */
    uint64_t buffer_offset;     /* ...from this offset of the file... */
    size_t buffer_size;         /* ...of which this many are valid. */
};

/* Decode the batch header at offset, reading ahead when it is not buffered. */
static int locate_walk_header(struct locate_walk *w, uint64_t offset, struct tdm_batch_header *h,
                              struct tdm_diag *diag)
{
    tdm_assert(offset < w->end);
    if (w->end - offset < TDM_BATCH_HEADER_SIZE) {
        return TDM_CORRUPT(diag, "partial batch header");
    }
    if (offset < w->buffer_offset ||
        offset + TDM_BATCH_HEADER_SIZE > w->buffer_offset + w->buffer_size) {
        uint64_t want = w->end - offset;
        size_t size = want < LOG_WALK_BUFFER_SIZE ? (size_t)want : LOG_WALK_BUFFER_SIZE;
        w->buffer_offset = offset;
        w->buffer_size = 0;
        int rv = w->fs->pread(w->fs, w->fd, w->buffer, size, offset, &w->buffer_size);
        if (rv != 0) {
            tdm_diag_printf(diag, "read: %s", tandem_strerror(rv));
            return rv;
        }
        if (w->buffer_size < TDM_BATCH_HEADER_SIZE) {
            return TDM_CORRUPT(diag, "short read");
        }
    }
    const uint8_t *head = w->buffer + (offset - w->buffer_offset);
    return tdm_batch_header_decode(head, TDM_BATCH_HEADER_SIZE, h, diag);
}

/* Walk the headers of w's segment from offset (where LSN lsn starts), giving
 * want what it asks for. keep (or NULL) is a table of the whole segment being
 * built: the walk then goes on to the segment's end. A header that does not
 * verify ends the walk; it is an error only if want still wanted it. */
static int locate_walk_run(struct tdm_log *log, struct locate_walk *w, uint64_t offset,
                           uint64_t lsn, struct tdm_log_table *keep, struct locate_want *want,
                           struct tdm_diag *diag)
{
    int rv = 0;
    while (offset < w->end && lsn <= w->seg.lsn_last) {
        if (keep == NULL && locate_done(want)) {
            break;
        }
        struct tdm_batch_header h;
        rv = locate_walk_header(w, offset, &h, diag);
        if (rv == 0 && h.lsn_first != lsn) {
            rv = TDM_CORRUPT(diag, "batch has LSN %" PRIu64 ", want %" PRIu64, h.lsn_first, lsn);
        }
        if (rv == 0 && w->end - offset - TDM_BATCH_HEADER_SIZE < h.body_size) {
            rv = TDM_CORRUPT(diag, "batch %" PRIu64 ": body runs past the end", h.lsn_first);
        }
        if (rv != 0) {
            tdm_diag_wrapf(diag, "segment %" PRIu64 " offset %" PRIu64, w->seg.lsn_first, offset);
            break;
        }
        uint32_t size = TDM_BATCH_HEADER_SIZE + h.body_size;
        uint64_t lsn_last = tdm_batch_lsn_last(&h);
        if (!locate_done(want) && lsn_last >= want->lsn) {
            locate_found(want, w->seg.lsn_first, h.lsn_first, lsn_last, offset, size);
        }
        if (keep != NULL) {
            tdm_log_table_add(log, keep, h.lsn_first, lsn_last, offset, size);
        }
        offset += size;
        lsn = lsn_last + 1;
    }
    if (rv != 0 && locate_done(want)) {
        rv = 0; /* Past what was wanted: recovery or a scrub reports damage. */
    }
    return rv;
}

/* Keep the table a walk built, unless a cut came in between or another
 * locate kept one first. */
static void locate_keep(struct tdm_log *log, struct tdm_log_table *built, uint64_t cut_count)
{
    pthread_mutex_lock(&log->mutex);
    if (log->cut_count == cut_count && log_table_find_locked(log, built->segment_lsn) == NULL) {
        struct tdm_log_table *slot = log_table_slot_locked(log);
        struct tdm_log_entry *entries = slot->entries;
        *slot = *built;
        slot->used = ++log->table_clock;
        built->entries = entries; /* Freed below, outside the mutex. */
    }
    pthread_mutex_unlock(&log->mutex);
    tdm_free(built->entries);
    built->entries = NULL;
}

/* Walk segment seg (as published) from offset, where LSN lsn starts. */
static int locate_walk(struct tdm_log *log, const struct tdm_log_segment *seg, uint64_t offset,
                       uint64_t lsn, bool keep, uint64_t cut_count, struct locate_want *want,
                       struct tdm_diag *diag)
{
    struct locate_walk w = {.fs = log->fs, .fd = -1, .seg = *seg};
    w.end = seg->sealed ? seg->size - TDM_SEGMENT_FOOTER_SIZE : seg->size;
    char path[TDM_PATH_SIZE];
    log_path(log, seg->lsn_first, path);
    int rv = log->fs->open(log->fs, path, TDM_FS_READ, &w.fd);
    if (rv != 0) {
        tdm_diag_printf(diag, "open segment %" PRIu64 ": %s", seg->lsn_first, tandem_strerror(rv));
        return rv;
    }
    w.buffer = tdm_malloc(LOG_WALK_BUFFER_SIZE);
    if (w.buffer == NULL) {
        log->fs->close(log->fs, w.fd);
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    struct tdm_log_table built = {0};
    log_table_reset(&built, seg->lsn_first);
    uint32_t count = want->count;
    rv = locate_walk_run(log, &w, offset, lsn, keep ? &built : NULL, want, diag);
    log->fs->close(log->fs, w.fd);
    tdm_free(w.buffer);
    if (keep && !built.frozen) {
        locate_keep(log, &built, cut_count);
    }
    tdm_free(built.entries);
    if (rv == 0 && want->count == count) {
        rv = TDM_CORRUPT(diag, "LSN %" PRIu64 " not found in segment %" PRIu64, want->lsn,
                         seg->lsn_first);
    }
    return rv;
}

/* Locate from want->lsn on within the segment that holds it. */
static int locate_step(struct tdm_log *log, struct locate_want *want, struct tdm_diag *diag)
{
    pthread_mutex_lock(&log->mutex);
    uint32_t low = 0; /* Binary search: the last segment with lsn_first <= want->lsn. */
    uint32_t high = log->segment_count;
    while (high - low > 1) {
        uint32_t middle = low + (high - low) / 2;
        if (log->segments[middle].lsn_first <= want->lsn) {
            low = middle;
        } else {
            high = middle;
        }
    }
    if (log->segment_count == 0 || log->segments[low].lsn_first > want->lsn ||
        log->segments[low].lsn_last < want->lsn) {
        pthread_mutex_unlock(&log->mutex);
        return TDM_CORRUPT(diag, "LSN %" PRIu64 " is in no segment that verifies", want->lsn);
    }
    struct tdm_log_segment seg = log->segments[low];
    uint64_t cut_count = log->cut_count;
    struct tdm_log_table *t = log_table_find_locked(log, seg.lsn_first);
    bool found = t != NULL && locate_from_table_locked(log, t, want);
    uint64_t offset = t != NULL ? t->end : TDM_SEGMENT_HEADER_SIZE;
    uint64_t lsn = t != NULL ? t->lsn_next : seg.lsn_first;
    pthread_mutex_unlock(&log->mutex);
    if (found) {
        return 0;
    }
    /* Not listed: walk the headers past the table, keeping a whole sealed one. */
    return locate_walk(log, &seg, offset, lsn, t == NULL && seg.sealed, cut_count, want, diag);
}

int tdm_log_locate(struct tdm_log *log, uint64_t lsn_first, uint64_t lsn_last,
                   struct tdm_log_batch *out, uint32_t capacity, uint32_t *count,
                   struct tdm_diag *diag)
{
    tdm_assert(capacity >= 1);
    tdm_assert(lsn_first <= lsn_last);
    struct locate_want want = {
        .lsn = lsn_first, .lsn_last = lsn_last, .out = out, .capacity = capacity};
    pthread_mutex_lock(&log->mutex);
    uint64_t log_first = log->lsn_first;
    uint64_t log_last = log->lsn_last;
    pthread_mutex_unlock(&log->mutex);
    *count = 0;
    if (log_first == 0 || lsn_first < log_first || lsn_first > log_last) {
        tdm_diag_printf(diag, "LSN %" PRIu64 " is not in the log (%" PRIu64 "..%" PRIu64 ")",
                        lsn_first, log_first, log_last);
        return TANDEM_ENOTFOUND;
    }
    want.lsn_last = lsn_last < log_last ? lsn_last : log_last;
    int rv = 0;
    while (rv == 0 && !locate_done(&want)) {
        rv = locate_step(log, &want, diag);
    }
    *count = want.count;
    tdm_assert(rv != 0 || *count >= 1);
    return rv;
}

/* Check one batch read back from a located place: header, LSNs, size, body
 * checksum. */
static int read_located_check(const struct tdm_log_batch *b, const uint8_t *bytes,
                              struct tdm_batch_header *h, struct tdm_diag *diag)
{
    int rv = tdm_batch_header_decode(bytes, b->location.size, h, diag);
    if (rv != 0) {
        return rv;
    }
    if (h->lsn_first != b->lsn_first || tdm_batch_lsn_last(h) != b->lsn_last) {
        return TDM_CORRUPT(
            diag, "batch %" PRIu64 "..%" PRIu64 " found where %" PRIu64 "..%" PRIu64 " was",
            h->lsn_first, tdm_batch_lsn_last(h), b->lsn_first, b->lsn_last);
    }
    if (TDM_BATCH_HEADER_SIZE + (uint64_t)h->body_size != b->location.size) {
        return TDM_CORRUPT(diag, "batch %" PRIu64 ": size differs", h->lsn_first);
    }
    if (XXH3_64bits(bytes + TDM_BATCH_HEADER_SIZE, h->body_size) != h->body_checksum) {
        return TDM_CORRUPT(diag, "batch %" PRIu64 ": body checksum mismatch", h->lsn_first);
    }
    return 0;
}

/* Read batches[0 .. count), back to back in one segment, with one pread. */
static int read_located_run(struct tdm_log *log, const struct tdm_log_batch *batches,
                            uint32_t count, uint8_t *buffer, struct tdm_diag *diag)
{
    tdm_assert(count >= 1);
    const struct tdm_log_location *first = &batches[0].location;
    const struct tdm_log_location *last = &batches[count - 1].location;
    tdm_assert(last->offset >= first->offset);
    size_t size = (size_t)(last->offset - first->offset) + last->size;
    char path[TDM_PATH_SIZE];
    log_path(log, first->segment_lsn, path);
    int fd;
    int rv = log->fs->open(log->fs, path, TDM_FS_READ, &fd);
    if (rv == 0) {
        rv = tdm_fs_read_exact(log->fs, fd, buffer, size, first->offset);
        log->fs->close(log->fs, fd);
    }
    if (rv == -ENODATA) {
        return TDM_CORRUPT(diag, "segment %" PRIu64 ": batches past the end of the file",
                           first->segment_lsn);
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "read segment %" PRIu64 " at %" PRIu64 ": %s", first->segment_lsn,
                        first->offset, tandem_strerror(rv));
    }
    return rv;
}

int tdm_log_read_located(struct tdm_log *log, const struct tdm_log_batch *batches, uint32_t count,
                         uint8_t *buffer, struct tdm_batch_header *headers, struct tdm_diag *diag)
{
    size_t done = 0;
    uint32_t i = 0;
    while (i < count) {
        uint32_t n = 1; /* The run: batches back to back in one segment. */
        while (i + n < count &&
               batches[i + n].location.segment_lsn == batches[i].location.segment_lsn &&
               batches[i + n].location.offset ==
                   batches[i + n - 1].location.offset + batches[i + n - 1].location.size) {
            n++;
        }
        int rv = read_located_run(log, batches + i, n, buffer + done, diag);
        for (uint32_t j = i; rv == 0 && j < i + n; j++) {
            rv = read_located_check(&batches[j], buffer + done, &headers[j], diag);
            done += batches[j].location.size;
        }
        if (rv != 0) {
            return rv;
        }
        i += n;
    }
    return 0;
}
