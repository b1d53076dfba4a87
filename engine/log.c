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
 *   5. Publish the new lsn_last under the mutex; write a progress record.
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
    return 0;

err:
    tdm_assert(rv < 0);
    tdm_log_close(log);
    return rv;
}

void tdm_log_close(struct tdm_log *log)
{
    if (log->tail_fd >= 0) {
        log->fs->close(log->fs, log->tail_fd);
        log->tail_fd = -1;
    }
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
    pthread_mutex_destroy(&log->mutex);
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
    int rv = log->fs->open(log->fs, path, TDM_FS_WRITE | TDM_FS_CREATE | TDM_FS_EXCLUSIVE, &fd);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "create", lsn_first);
    }
    struct tdm_segment_header header = {
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
    int rv = log->fs->pwrite(log->fs, log->tail_fd, buf, sizeof(buf), log->tail_offset);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "write footer of", segment->lsn_first);
    }
    rv = log->fs->fdatasync(log->fs, log->tail_fd);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "fdatasync footer of", segment->lsn_first);
    }
    log->fs->close(log->fs, log->tail_fd);
    log->tail_fd = -1;
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

/* Write one built and verified batch at the end of the open segment, make it
 * durable, and publish it. */
static int log_write_batch(struct tdm_log *log, const uint8_t *bytes, size_t size,
                           const struct tdm_batch_header *h, struct tdm_log_location *location,
                           struct tdm_diag *diag)
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
    rv = log->fs->fdatasync(log->fs, log->tail_fd);
    if (rv != 0) {
        return log_fail_io(log, rv, diag, "fdatasync", segment->lsn_first);
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
    log->tail_offset += (uint64_t)size;
    log->tail_batch_count++;
    segment->lsn_last = log->lsn_last;
    segment->size = log->tail_offset;
    segment->chain_last = h->chain_hash;
    log->log_bytes += (uint64_t)size;
    pthread_mutex_unlock(&log->mutex);
    progress_write(log);
    return 0;
}

int tdm_log_append(struct tdm_log *log, const uint8_t *raw, size_t raw_size, uint32_t record_count,
                   int64_t time_ns, struct tdm_batch_header *header,
                   struct tdm_log_location *location, struct tdm_diag *diag)
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
    rv = log_write_batch(log, log->buffer, (size_t)size, &h, location, diag);
    if (rv == 0) {
        *header = h;
    }
    return rv;
}

int tdm_log_append_batch(struct tdm_log *log, const uint8_t *bytes, size_t size,
                         struct tdm_batch_header *header, struct tdm_log_location *location,
                         struct tdm_diag *diag)
{
    /* Untrusted bytes from a peer: every check is a return code. */
    struct tdm_batch_header h;
    int rv = tdm_batch_verify(bytes, size, &h, diag);
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
        rv = log_write_batch(log, bytes, size, &h, location, diag);
    }
    if (rv == 0) {
        *header = h;
    }
    return rv;
}

/* ---- reading ---------------------------------------------------------------- */

int tdm_log_read_batch(struct tdm_fs *fs, const char *log_dir,
                       const struct tdm_log_location *location, struct tdm_batch_header *header,
                       uint8_t **raw, struct tdm_diag *diag)
{
    char name[TDM_SEGMENT_NAME_SIZE];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(name, sizeof(name), location->segment_lsn);
    int rv = tdm_fs_path(path, sizeof(path), log_dir, name);
    if (rv != 0) {
        return rv;
    }
    int fd;
    rv = fs->open(fs, path, TDM_FS_READ, &fd);
    if (rv != 0) {
        tdm_diag_printf(diag, "open segment %s: %s", name, tandem_strerror(rv));
        return rv;
    }
    uint8_t *body = NULL;
    uint8_t *out = NULL;
    uint8_t head[TDM_BATCH_HEADER_SIZE];
    struct tdm_batch_header h;
    rv = tdm_fs_read_exact(fs, fd, head, sizeof(head), location->offset);
    if (rv == -ENODATA) {
        rv = TDM_CORRUPT(diag, "batch header past the end of the file");
    }
    if (rv == 0) {
        rv = tdm_batch_header_decode(head, sizeof(head), &h, diag);
    }
    if (rv == 0 && TDM_BATCH_HEADER_SIZE + (uint64_t)h.body_size != location->size) {
        rv = TDM_CORRUPT(diag, "batch size differs from the index");
    }
    if (rv == 0) {
        body = tdm_malloc(h.body_size + 1);
        out = tdm_malloc(h.raw_size + 1);
        rv = (body == NULL || out == NULL) ? -ENOMEM : 0;
    }
    if (rv == 0) {
        rv = tdm_fs_read_exact(fs, fd, body, h.body_size, location->offset + TDM_BATCH_HEADER_SIZE);
        if (rv == -ENODATA) {
            rv = TDM_CORRUPT(diag, "batch body past the end of the file");
        }
    }
    if (rv == 0) {
        rv = tdm_batch_body_decode(&h, body, out, h.raw_size, diag);
    }
    fs->close(fs, fd);
    tdm_free(body);
    if (rv != 0) {
        tdm_diag_wrapf(diag, "segment %s offset %" PRIu64, name, location->offset);
        tdm_free(out);
        return rv;
    }
    *header = h;
    *raw = out;
    return 0;
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
