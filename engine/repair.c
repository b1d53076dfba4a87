/* engine/repair.c: restoring a damaged sealed segment in place (engine/repair.h
 * for the happy path, the failure modes and the thread; docs/FORMAT.md
 * "Repair" for the files).
 *
 * The whole segment is read into memory (at most TDM_SEGMENT_SIZE_MAX plus one
 * batch) and judged there: a plan is a walk of that image, and a repair is a
 * new image checked as a whole before a byte of it reaches the disk. */
#include "repair.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/trace.h"
#include "batch.h"
#include "log.h"
#include "segment.h"

/* The planted bug "repair_takes_first_copy" (meson_options.txt): the bytes a
 * copy sent are written in without a check (tests/unit/test_repair.c catches
 * it). Never set in a release build. */
#ifndef TDM_PLANTED_REPAIR_TAKES_FIRST_COPY
#define TDM_PLANTED_REPAIR_TAKES_FIRST_COPY 0
#endif

/* A segment file read whole. */
struct image {
    uint8_t *bytes;
    uint64_t size;
    struct tdm_segment_header header;
    struct tdm_segment_footer footer;
};

#define REPAIR_NAME_SIZE (TDM_SEGMENT_NAME_SIZE + 48)

/* <segment>.seg, or <segment>.seg.<suffix> (suffix not NULL), into name. */
static void repair_name(uint64_t segment_lsn, const char *suffix, char name[REPAIR_NAME_SIZE])
{
    tdm_segment_name(name, REPAIR_NAME_SIZE, segment_lsn);
    if (suffix != NULL) {
        size_t n = strlen(name);
        snprintf(name + n, REPAIR_NAME_SIZE - n, ".%s", suffix);
    }
}

static void repair_path(const char *dir, uint64_t segment_lsn, const char *suffix, char *path)
{
    char name[REPAIR_NAME_SIZE];
    repair_name(segment_lsn, suffix, name);
    int rv = tdm_fs_path(path, TDM_PATH_SIZE, dir, name);
    tdm_assert(rv == 0); /* The directories' lengths were checked at open. */
}

/* Read the sealed segment whole, decoding nothing. */
static int image_load(struct tdm_log *log, uint64_t segment_lsn, struct image *image,
                      struct tdm_diag *diag)
{
    memset(image, 0, sizeof(*image));
    char path[TDM_PATH_SIZE];
    repair_path(log->log_dir, segment_lsn, NULL, path);
    int fd;
    int rv = log->fs->open(log->fs, path, TDM_FS_READ, &fd);
    if (rv != 0) {
        tdm_diag_printf(diag, "open segment %" PRIu64 ": %s", segment_lsn, tandem_strerror(rv));
        return rv;
    }
    rv = log->fs->size(log->fs, fd, &image->size);
    if (rv == 0 && (image->size < TDM_SEGMENT_HEADER_SIZE + TDM_SEGMENT_FOOTER_SIZE ||
                    image->size > TDM_SEGMENT_SIZE_MAX + TDM_BATCH_HEADER_SIZE +
                                      TDM_BATCH_BODY_SIZE_MAX + TDM_SEGMENT_FOOTER_SIZE)) {
        log->fs->close(log->fs, fd);
        return TDM_CORRUPT(diag, "segment %" PRIu64 ": size %" PRIu64 " is not a sealed segment's",
                           segment_lsn, image->size);
    }
    if (rv == 0) {
        image->bytes = tdm_malloc(image->size);
        rv = image->bytes == NULL ? -ENOMEM : 0;
    }
    if (rv == 0) {
        rv = tdm_fs_read_exact(log->fs, fd, image->bytes, image->size, 0);
    }
    log->fs->close(log->fs, fd);
    if (rv != 0) {
        tdm_free(image->bytes);
        image->bytes = NULL;
        tdm_diag_printf(diag, "read segment %" PRIu64 ": %s", segment_lsn, tandem_strerror(rv));
        return rv;
    }
    return 0;
}

/* Whether image's header decodes and names segment_lsn (into image->header). */
static bool image_header_ok(struct image *image, uint64_t segment_lsn, struct tdm_diag *diag)
{
    return tdm_segment_header_decode(image->bytes, &image->header, diag) == 0 &&
           image->header.lsn_first == segment_lsn;
}

/* Whether image's footer decodes and fits the file (into image->footer). */
static bool image_footer_ok(struct image *image, uint64_t segment_lsn, struct tdm_diag *diag)
{
    return tdm_segment_footer_decode(image->bytes + image->size - TDM_SEGMENT_FOOTER_SIZE,
                                     &image->footer, diag) == 0 &&
           image->footer.lsn_first == segment_lsn &&
           image->footer.data_size == image->size - TDM_SEGMENT_FOOTER_SIZE;
}

/* Read the sealed segment whole; its header and footer must decode. */
static int image_read(struct tdm_log *log, uint64_t segment_lsn, struct image *image,
                      struct tdm_diag *diag)
{
    int rv = image_load(log, segment_lsn, image, diag);
    if (rv != 0) {
        return rv;
    }
    struct tdm_diag inner = {{0}};
    if (!image_header_ok(image, segment_lsn, &inner)) {
        tdm_free(image->bytes);
        image->bytes = NULL;
        return TDM_CORRUPT(diag, "segment %" PRIu64 ": its header is damaged: %s", segment_lsn,
                           inner.message);
    }
    if (!image_footer_ok(image, segment_lsn, &inner)) {
        tdm_free(image->bytes);
        image->bytes = NULL;
        return TDM_CORRUPT(diag, "segment %" PRIu64 ": its footer is damaged: %s", segment_lsn,
                           inner.message);
    }
    return 0;
}

/* The whole batch at offset of bytes[0 .. end) that verifies (checksums,
 * decompression) and continues lsn and chain. Returns its size, or 0. */
static size_t batch_at(const uint8_t *bytes, uint64_t end, uint64_t offset, uint64_t lsn,
                       const struct tdm_chain_hash *chain, struct tdm_batch_header *h)
{
    struct tdm_diag diag = {{0}};
    if (end - offset < TDM_BATCH_HEADER_SIZE ||
        tdm_batch_header_decode(bytes + offset, TDM_BATCH_HEADER_SIZE, h, &diag) != 0) {
        return 0;
    }
    uint64_t size = TDM_BATCH_HEADER_SIZE + (uint64_t)h->body_size;
    if (end - offset < size || h->lsn_first != lsn || !tdm_batch_chain_follows(h, chain) ||
        tdm_batch_verify(bytes + offset, (size_t)size, h, &diag) != 0) {
        return 0;
    }
    return (size_t)size;
}

/* Walk the batches of image from the header; *offset, *lsn and *chain end
 * after the last batch that verifies, *count batches. */
static void image_walk(const struct image *image, uint64_t *offset, uint64_t *lsn,
                       struct tdm_chain_hash *chain, uint32_t *count)
{
    *offset = TDM_SEGMENT_HEADER_SIZE;
    *lsn = image->header.lsn_first;
    *chain = image->header.chain_prev;
    *count = 0;
    uint64_t end = image->footer.data_size;
    while (*offset < end) {
        struct tdm_batch_header h;
        size_t size = batch_at(image->bytes, end, *offset, *lsn, chain, &h);
        if (size == 0) {
            return;
        }
        *offset += size;
        *lsn = tdm_batch_lsn_last(&h) + 1;
        *chain = h.chain_hash;
        (*count)++;
    }
}

/* True if the image verifies whole: batches to the footer, and the footer. */
static bool image_intact(const struct image *image)
{
    uint64_t offset;
    uint64_t lsn;
    struct tdm_chain_hash chain;
    uint32_t count;
    image_walk(image, &offset, &lsn, &chain, &count);
    const struct tdm_segment_footer *f = &image->footer;
    return offset == f->data_size && lsn == f->lsn_last + 1 && count == f->batch_count &&
           tdm_chain_hash_equal(&chain, &f->chain_last) &&
           XXH3_64bits(image->bytes, (size_t)f->data_size) == f->checksum;
}

/* The span from offset P (the first batch that does not verify): up to the
 * next batch header that decodes with a later LSN, or the footer. */
static int image_plan(const struct image *image, uint64_t segment_lsn, struct tdm_repair_plan *plan,
                      struct tdm_diag *diag)
{
    uint64_t offset;
    uint64_t lsn;
    struct tdm_chain_hash chain;
    uint32_t count;
    image_walk(image, &offset, &lsn, &chain, &count);
    const struct tdm_segment_footer *f = &image->footer;
    if (offset == f->data_size) {
        if (image_intact(image)) {
            tdm_diag_printf(diag, "segment %" PRIu64 " verifies whole", segment_lsn);
            return TANDEM_ENOTFOUND;
        }
        return TDM_CORRUPT(diag,
                           "segment %" PRIu64 ": its batches verify and its footer disagrees: "
                           "batches cannot restore it",
                           segment_lsn);
    }
    if (lsn > f->lsn_last) {
        return TDM_CORRUPT(diag, "segment %" PRIu64 ": bytes after its last LSN", segment_lsn);
    }
    uint64_t end = f->data_size;
    uint64_t lsn_last = f->lsn_last;
    for (uint64_t q = offset + 1; q + TDM_BATCH_HEADER_SIZE <= f->data_size; q++) {
        struct tdm_batch_header h;
        struct tdm_diag ignored = {{0}};
        if (image->bytes[q] != (uint8_t)(TDM_BATCH_MAGIC & 0xff) ||
            tdm_batch_header_decode(image->bytes + q, TDM_BATCH_HEADER_SIZE, &h, &ignored) != 0) {
            continue;
        }
        if (h.lsn_first > lsn && h.lsn_first <= f->lsn_last) {
            end = q;
            lsn_last = h.lsn_first - 1;
            break;
        }
    }
    *plan = (struct tdm_repair_plan){
        .segment_lsn = segment_lsn,
        .offset = offset,
        .size = end - offset,
        .lsn_first = lsn,
        .lsn_last = lsn_last,
        .chain_prev = chain,
    };
    return 0;
}

int tdm_repair_plan(struct tdm_log *log, uint64_t segment_lsn, struct tdm_repair_plan *plan,
                    struct tdm_diag *diag)
{
    tdm_assert(log != NULL && plan != NULL);
    struct image image;
    int rv = image_read(log, segment_lsn, &image, diag);
    if (rv != 0) {
        return rv;
    }
    rv = image_plan(&image, segment_lsn, plan, diag);
    tdm_free(image.bytes);
    return rv;
}

/* The fetched batches: each verifies, they hold exactly the plan's LSNs,
 * chain from its chain hash and fill exactly its span; *chain_last receives
 * the chain hash of the last. */
static int fetched_check(const struct tdm_repair_plan *plan, const uint8_t *bytes, size_t size,
                         struct tdm_chain_hash *chain_last, struct tdm_diag *diag)
{
    if (size != plan->size) {
        return TDM_CORRUPT(diag, "the copy's batches take %zu bytes, the damaged span %" PRIu64,
                           size, plan->size);
    }
    uint64_t offset = 0;
    uint64_t lsn = plan->lsn_first;
    struct tdm_chain_hash chain = plan->chain_prev;
    while (offset < size) {
        struct tdm_batch_header h;
        size_t n = batch_at(bytes, size, offset, lsn, &chain, &h);
        if (n == 0) {
            return TDM_CORRUPT(diag,
                               "the copy's batch at lsn %" PRIu64
                               " does not verify or does not follow the chain hash before it",
                               lsn);
        }
        offset += n;
        lsn = tdm_batch_lsn_last(&h) + 1;
        chain = h.chain_hash;
    }
    if (lsn != plan->lsn_last + 1) {
        return TDM_CORRUPT(diag, "the copy's batches end at lsn %" PRIu64 ", the span at %" PRIu64,
                           lsn - 1, plan->lsn_last);
    }
    *chain_last = chain;
    return 0;
}

/* The rebuilt image links up after the span: the batch header at its end
 * follows the last fetched chain hash, or the span ends at the footer, whose
 * last LSN and chain hash are the fetched ones. The bytes of that header need
 * not verify further (another damaged span may follow: its own repair comes
 * next); when the whole image verifies, the footer's checksum must match. */
static int image_links(const struct image *image, const struct tdm_repair_plan *plan,
                       const struct tdm_chain_hash *chain_last, struct tdm_diag *diag)
{
    uint64_t end = plan->offset + plan->size;
    const struct tdm_segment_footer *f = &image->footer;
    if (end == f->data_size) {
        if (plan->lsn_last != f->lsn_last || !tdm_chain_hash_equal(chain_last, &f->chain_last)) {
            return TDM_CORRUPT(diag,
                               "segment %" PRIu64
                               ": the copy's batches do not end with its footer's chain hash",
                               plan->segment_lsn);
        }
    } else {
        struct tdm_batch_header h;
        struct tdm_diag ignored = {{0}};
        if (tdm_batch_header_decode(image->bytes + end, TDM_BATCH_HEADER_SIZE, &h, &ignored) != 0 ||
            h.lsn_first != plan->lsn_last + 1 || !tdm_batch_chain_follows(&h, chain_last)) {
            return TDM_CORRUPT(diag,
                               "segment %" PRIu64
                               ": the batch after the damaged span does not follow the "
                               "copy's batches",
                               plan->segment_lsn);
        }
    }
    uint64_t offset;
    uint64_t lsn;
    struct tdm_chain_hash chain;
    uint32_t count;
    image_walk(image, &offset, &lsn, &chain, &count);
    if (offset == f->data_size && !image_intact(image)) {
        return TDM_CORRUPT(diag,
                           "segment %" PRIu64 " rebuilt with the copy's batches does not match its "
                           "footer",
                           plan->segment_lsn);
    }
    return 0;
}

/* Write bytes to path (created or emptied) and fdatasync it. */
static int file_write(struct tdm_fs *fs, const char *path, const uint8_t *bytes, uint64_t size)
{
    int fd;
    int rv = fs->open(fs, path, TDM_FS_WRITE | TDM_FS_CREATE, &fd);
    if (rv != 0) {
        return rv;
    }
    rv = fs->truncate(fs, fd, 0);
    rv = rv != 0 ? rv : fs->pwrite(fs, fd, bytes, (size_t)size, 0);
    rv = rv != 0 ? rv : fs->fdatasync(fs, fd);
    fs->close(fs, fd);
    return rv;
}

/* The log forgets the damage it recorded in the segment (it verifies now). */
static void repair_forget(struct tdm_log *log, uint64_t segment_lsn, uint64_t quarantined)
{
    pthread_mutex_lock(&log->mutex);
    uint32_t listed =
        log->damaged_count < TDM_LOG_DAMAGED_MAX ? log->damaged_count : TDM_LOG_DAMAGED_MAX;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < listed; i++) {
        if (log->damaged[i].segment_lsn != segment_lsn) {
            log->damaged[kept++] = log->damaged[i];
        }
    }
    log->damaged_count -= listed - kept;
    for (uint32_t i = 0; i < log->segment_count; i++) {
        if (log->segments[i].lsn_first == segment_lsn) {
            log->segments[i].damaged = false;
        }
    }
    log->quarantine_count++;
    log->quarantine_bytes += quarantined;
    pthread_mutex_unlock(&log->mutex);
}

/* Put the rebuilt image in place of segment segment_lsn: write it aside and
 * fdatasync, keep the damaged bytes in quarantine as <segment>.seg.<at>.damaged,
 * rename, fsync DIR/log (a failure there fails the log), and let the log forget
 * the segment's damage. Under log->swap_mutex. */
static int image_swap(struct tdm_log *log, uint64_t segment_lsn, uint64_t at,
                      const struct image *image, const uint8_t *damaged, struct tdm_diag *diag)
{
    struct tdm_fs *fs = log->fs;
    char aside[TDM_PATH_SIZE];
    char target[TDM_PATH_SIZE];
    char quarantine[TDM_PATH_SIZE];
    char suffix[48];
    snprintf(suffix, sizeof(suffix), "%" PRIu64 ".damaged", at);
    repair_path(log->log_dir, segment_lsn, TDM_REPAIR_SUFFIX, aside);
    repair_path(log->log_dir, segment_lsn, NULL, target);
    char name[REPAIR_NAME_SIZE];
    repair_name(segment_lsn, suffix, name);
    const char *what = "write the rebuilt segment";
    int rv = file_write(fs, aside, image->bytes, image->size);
    if (rv == 0) {
        what = "quarantine the damaged segment";
        rv = fs->mkdir(fs, log->quarantine_dir);
        rv = rv != 0 ? rv : tdm_log_quarantine_path(log, name, quarantine);
        rv = rv != 0 ? rv : file_write(fs, quarantine, damaged, image->size);
        rv = rv != 0 ? rv : fs->sync_dir(fs, log->quarantine_dir);
    }
    if (rv == 0) {
        what = "rename the rebuilt segment";
        rv = fs->rename(fs, aside, target);
    }
    if (rv != 0) {
        (void)fs->unlink(fs, aside); /* Best effort: recovery ignores the name. */
        tdm_diag_printf(diag, "repair segment %" PRIu64 ": %s: %s", segment_lsn, what,
                        tandem_strerror(rv));
        return rv;
    }
    rv = fs->sync_dir(fs, log->log_dir);
    if (rv != 0) {
        char message[TDM_DIAG_SIZE];
        snprintf(message, sizeof(message), "sync directory after repairing segment %" PRIu64 ": %s",
                 segment_lsn, tandem_strerror(rv));
        tdm_log_fail(log, rv, message);
        tdm_diag_printf(diag, "%s", message);
        return TANDEM_EFAILED;
    }
    repair_forget(log, segment_lsn, image->size);
    return 0;
}

int tdm_repair_apply(struct tdm_log *log, const struct tdm_repair_plan *plan, const uint8_t *bytes,
                     size_t size, struct tdm_diag *diag)
{
    tdm_assert(log != NULL && plan != NULL);
    pthread_mutex_lock(&log->swap_mutex); /* No cut truncates a segment meanwhile. */
    struct image image;
    int rv = image_read(log, plan->segment_lsn, &image, diag);
    if (rv != 0) {
        pthread_mutex_unlock(&log->swap_mutex);
        return rv;
    }
    uint8_t *damaged = NULL;
    struct tdm_chain_hash chain_last = {{0}};
    if (!TDM_PLANTED_REPAIR_TAKES_FIRST_COPY) {
        struct tdm_repair_plan now;
        struct tdm_diag ignored = {{0}};
        rv = image_plan(&image, plan->segment_lsn, &now, &ignored);
        if (rv != 0 || memcmp(&now, plan, sizeof(now)) != 0) {
            tdm_diag_printf(diag, "segment %" PRIu64 " changed since its repair was planned",
                            plan->segment_lsn);
            rv = -EAGAIN;
            goto out;
        }
        rv = fetched_check(plan, bytes, size, &chain_last, diag);
        if (rv != 0) {
            goto out;
        }
    } else if (plan->offset + size > image.size) {
        rv = TDM_CORRUPT(diag, "the copy's batches run past the segment");
        goto out;
    }
    /* The damaged original, kept for quarantine; the image becomes the repair. */
    damaged = tdm_malloc(image.size);
    if (damaged == NULL) {
        tdm_diag_printf(diag, "repair segment %" PRIu64 ": out of memory", plan->segment_lsn);
        rv = -ENOMEM;
        goto out;
    }
    memcpy(damaged, image.bytes, image.size);
    memcpy(image.bytes + plan->offset, bytes, size);
    if (!TDM_PLANTED_REPAIR_TAKES_FIRST_COPY) {
        rv = image_links(&image, plan, &chain_last, diag);
        if (rv != 0) {
            goto out;
        }
    }
    rv = image_swap(log, plan->segment_lsn, plan->offset, &image, damaged, diag);
    if (rv != 0) {
        goto out;
    }
    tdm_tracef("repair: segment %" PRIu64 " offset %" PRIu64 ": lsn %" PRIu64 "..%" PRIu64
               " restored; the damaged file is in quarantine",
               plan->segment_lsn, plan->offset, plan->lsn_first, plan->lsn_last);
out:
    pthread_mutex_unlock(&log->swap_mutex);
    tdm_free(damaged);
    tdm_free(image.bytes);
    return rv;
}

/* ---- a damaged header or footer, rebuilt from the segment itself ---------------- */

/* What the log knows around segment_lsn: the chain hash before it (the
 * previous segment's last; zero at LSN 1), and the next segment's first LSN
 * (0: none). Returns false if segment_lsn is not a segment of the log. */
static bool frame_neighbours(struct tdm_log *log, uint64_t segment_lsn,
                             struct tdm_chain_hash *chain_prev, uint64_t *next_lsn)
{
    bool found = false;
    memset(chain_prev, 0, sizeof(*chain_prev));
    *next_lsn = 0;
    pthread_mutex_lock(&log->mutex);
    for (uint32_t i = 0; i < log->segment_count; i++) {
        if (log->segments[i].lsn_first != segment_lsn) {
            continue;
        }
        found = true;
        if (i > 0) {
            *chain_prev = log->segments[i - 1].chain_last;
        }
        if (i + 1 < log->segment_count) {
            *next_lsn = log->segments[i + 1].lsn_first;
        }
    }
    pthread_mutex_unlock(&log->mutex);
    return found;
}

/* The epoch of the batch holding lsn, read from the log; 0 if it cannot be. */
static uint64_t frame_epoch_at(struct tdm_log *log, uint64_t lsn)
{
    struct tdm_log_batch batch;
    uint32_t count = 0;
    struct tdm_diag ignored = {{0}};
    if (lsn == 0 || tdm_log_locate(log, lsn, lsn, &batch, 1, &count, &ignored) != 0) {
        return 0;
    }
    uint8_t *bytes = tdm_malloc(batch.location.size);
    struct tdm_batch_header h = {0};
    int rv = bytes == NULL ? -ENOMEM : tdm_log_read_located(log, &batch, 1, bytes, &h, &ignored);
    tdm_free(bytes);
    return rv == 0 ? h.epoch : 0;
}

/* Rebuild the header: what it held is known but for its epoch at creation
 * (the last batch's before it, or its own first batch's) and its flags, and the
 * footer's XXH3-64 of bytes [0, data_size) proves which candidate it was. */
static int frame_header(struct tdm_log *log, struct image *image, uint64_t segment_lsn,
                        const struct tdm_chain_hash *chain_prev, struct tdm_diag *diag)
{
    struct tdm_segment_header h = {.lsn_first = segment_lsn, .chain_prev = *chain_prev};
    uint64_t epochs[2] = {frame_epoch_at(log, segment_lsn - 1), 0};
    struct tdm_batch_header first;
    if (image->footer.data_size >= TDM_SEGMENT_HEADER_SIZE + TDM_BATCH_HEADER_SIZE &&
        tdm_batch_header_decode(image->bytes + TDM_SEGMENT_HEADER_SIZE, TDM_BATCH_HEADER_SIZE,
                                &first, NULL) == 0) {
        epochs[1] = first.epoch;
    }
    for (uint16_t flags = 0; flags <= TDM_SEGMENT_PREPARED; flags++) {
        for (int e = 0; e < 2; e++) {
            if (epochs[e] == 0) {
                continue;
            }
            h.flags = flags;
            h.epoch = epochs[e];
            tdm_segment_header_encode(&h, image->bytes);
            image->header = h;
            if (image_intact(image)) {
                return 0;
            }
        }
    }
    return TDM_CORRUPT(diag,
                       "segment %" PRIu64 ": no header rebuilt from the log matches its footer's "
                       "checksum",
                       segment_lsn);
}

/* Rebuild the footer: every batch from the header must verify up to where the
 * footer begins, and the next segment must begin right after the last of them
 * with that chain hash; the footer is then a function of those bytes. */
static int frame_footer(struct tdm_log *log, struct image *image, uint64_t segment_lsn,
                        uint64_t next_lsn, struct tdm_diag *diag)
{
    uint64_t data_size = image->size - TDM_SEGMENT_FOOTER_SIZE;
    image->footer = (struct tdm_segment_footer){.data_size = data_size};
    uint64_t offset;
    uint64_t lsn;
    struct tdm_chain_hash chain;
    uint32_t count;
    image_walk(image, &offset, &lsn, &chain, &count);
    if (offset != data_size || count == 0) {
        return TDM_CORRUPT(diag, "segment %" PRIu64 ": its batches do not verify up to its footer",
                           segment_lsn);
    }
    struct image next = {0};
    struct tdm_diag ignored = {{0}};
    int rv = next_lsn == 0 ? TANDEM_ENOTFOUND : image_load(log, next_lsn, &next, &ignored);
    bool follows = rv == 0 && next_lsn == lsn && image_header_ok(&next, next_lsn, &ignored) &&
                   tdm_chain_hash_equal(&next.header.chain_prev, &chain);
    tdm_free(next.bytes);
    if (!follows) {
        return TDM_CORRUPT(diag,
                           "segment %" PRIu64 ": the next segment does not begin where its "
                           "batches end: no footer can be proven",
                           segment_lsn);
    }
    image->footer = (struct tdm_segment_footer){
        .lsn_first = segment_lsn,
        .lsn_last = lsn - 1,
        .batch_count = count,
        .data_size = data_size,
        .checksum = XXH3_64bits(image->bytes, (size_t)data_size),
        .chain_last = chain,
    };
    tdm_segment_footer_encode(&image->footer, image->bytes + data_size);
    return 0;
}

int tdm_repair_frame(struct tdm_log *log, uint64_t segment_lsn, struct tdm_diag *diag)
{
    tdm_assert(log != NULL);
    pthread_mutex_lock(&log->swap_mutex); /* No cut truncates a segment meanwhile. */
    struct image image;
    uint8_t *damaged = NULL;
    int rv = image_load(log, segment_lsn, &image, diag);
    if (rv != 0) {
        pthread_mutex_unlock(&log->swap_mutex);
        return rv;
    }
    struct tdm_diag ignored = {{0}};
    bool header_ok = image_header_ok(&image, segment_lsn, &ignored);
    bool footer_ok = image_footer_ok(&image, segment_lsn, &ignored);
    struct tdm_chain_hash chain_prev;
    uint64_t next_lsn;
    if (header_ok && footer_ok) {
        tdm_diag_printf(diag, "segment %" PRIu64 ": its header and footer verify", segment_lsn);
        rv = TANDEM_ENOTFOUND;
    } else if (!header_ok && !footer_ok) {
        rv = TDM_CORRUPT(diag,
                         "segment %" PRIu64 ": its header and its footer are both damaged: "
                         "nothing proves a rebuilt one",
                         segment_lsn);
    } else if (!frame_neighbours(log, segment_lsn, &chain_prev, &next_lsn)) {
        rv = TDM_CORRUPT(diag, "segment %" PRIu64 " is not a segment of the log", segment_lsn);
    } else {
        damaged = tdm_malloc(image.size);
        rv = damaged == NULL ? -ENOMEM : 0;
    }
    if (rv == 0) {
        memcpy(damaged, image.bytes, image.size);
        rv = header_ok ? frame_footer(log, &image, segment_lsn, next_lsn, diag)
                       : frame_header(log, &image, segment_lsn, &chain_prev, diag);
    }
    uint64_t at = header_ok ? image.size - TDM_SEGMENT_FOOTER_SIZE : 0;
    if (rv == 0) {
        rv = image_swap(log, segment_lsn, at, &image, damaged, diag);
    }
    if (rv == 0) {
        pthread_mutex_lock(&log->mutex);
        for (uint32_t i = 0; i < log->segment_count; i++) {
            if (log->segments[i].lsn_first == segment_lsn) {
                log->segments[i].sealed = true; /* A damaged footer left it unsealed. */
                log->segments[i].lsn_last = image.footer.lsn_last;
                log->segments[i].chain_last = image.footer.chain_last;
            }
        }
        pthread_mutex_unlock(&log->mutex);
        tdm_tracef("repair: segment %" PRIu64 ": its %s rebuilt from its own bytes and proven; the "
                   "damaged file is in quarantine",
                   segment_lsn, header_ok ? "footer" : "header");
    }
    pthread_mutex_unlock(&log->swap_mutex);
    tdm_free(damaged);
    tdm_free(image.bytes);
    return rv;
}
