/* engine/recover.c: opening the log: find every segment, verify it, cut a torn
 * tail into quarantine, record damage; and walking the batches of a segment
 * (tdm_log_scan()).
 *
 * Happy path of recovery (tdm_log_recover()):
 *   1. Read the progress record; list the segment files of DIR/log and sort by first LSN.
 *   2. For each segment: check its header, its place in the chain (first LSN
 *      follows the previous segment's last; chain hash at lsn_first - 1 equals
 *      the previous segment's last chain hash).
 *   3. A segment with a valid footer is sealed: one XXH3 pass over its bytes
 *      proves it intact. Otherwise it must be the last (open) segment: walk it
 *      batch by batch (header checksum, LSN, chain hash, body checksum,
 *      decompression) to its end.
 *   4. The open segment becomes the tail that appends continue.
 *
 * Scrub mode (options.scrub; engine/scrub.c, docs/FORMAT.md "Scrub"): step 3
 * does more for a sealed segment, read-only or not: every batch is walked
 * (recover_sealed_damage) while its bytes feed a fresh XXH3 state, and the
 * footer must agree with the walk (checksum, last LSN, last chain hash).
 *
 * Decision table for the first bad batch at offset P of the open (last)
 * segment (docs/FORMAT.md "Recovery"), applied in order:
 *
 *   | a valid batch header after P | progress says >= that LSN durable | verdict        |
 *   |------------------------------|-----------------------------------|----------------|
 *   | yes                          | any                               | damage         |
 *   | no                           | yes                               | damage         |
 *   | no                           | no                                | torn tail: cut |
 *
 * The log's end counts as such an offset P: a last segment that ends cleanly
 * below the progress claim lost durable records (damage, never a torn tail).
 * Batches that verify after damage in the open segment are durable and are
 * served; only appends stop.
 *
 * A torn tail was never durable, so never acknowledged; its bytes still go to
 * DIR/quarantine/ (never destroyed) before the segment is truncated at P.
 * Damage is never cut: it is recorded (tandem_status), reads of its range fail
 * with TANDEM_ECORRUPT, the rest is served, no file is modified, and appends are
 * refused while the open segment is damaged (its chain cannot be continued).
 * Damage inside a sealed segment does not stop appends.
 *
 * Failure modes: an I/O error while reading makes open fail with the error
 * (nothing was modified before it, or the modification is idempotent: the
 * quarantine copy is made durable before the truncation, and redoing both
 * gives the same result). A read-only open performs no modification: a torn
 * tail is simply ignored. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/trace.h"
#include "log.h"

#define RECOVER_CHUNK_SIZE        (1u << 20)
#define RECOVER_AHEAD_SIZE        (4u << 20) /* Scrub's read-ahead window (struct walk). */
#define RECOVER_SEGMENT_NAMES_MAX TDM_LOG_SEGMENTS_MAX

/* Times a read-only open reads the first bad batch of the open segment
 * again while a writer appends beside it (recover_walk_open). */
#define RECOVER_READ_ONLY_REREADS 16

/* Reading the batches of one segment file. */
struct walk {
    struct tdm_fs *fs;
    int fd;
    uint64_t segment_lsn;
    uint64_t end;           /* Bytes that may hold batches (before a footer). */
    XXH3_state_t *checksum; /* Fed with every verified byte, or NULL. */
    uint8_t *body;          /* Scratch for a batch body. */
    uint8_t *raw;           /* Scratch for its decompressed records. */
    /* Scrub mode only (walk_init): bodies are proven by their checksum
     * without decompressing them, and reads go through a read-ahead window
     * of RECOVER_AHEAD_SIZE bytes instead of two preads per batch. */
    bool checksum_only;
    uint8_t *ahead;        /* The window (NULL: read each range directly). */
    uint64_t ahead_offset; /* File offset of ahead[0]. */
    size_t ahead_size;     /* Valid bytes in ahead. */
};

/* scrub: checksum-only walks through the read-ahead window (struct walk);
 * without memory for the window the walk reads each range directly. */
static int walk_init(struct walk *w, struct tdm_fs *fs, int fd, uint64_t segment_lsn, uint64_t end,
                     bool scrub)
{
    memset(w, 0, sizeof(*w));
    w->fs = fs;
    w->fd = fd;
    w->segment_lsn = segment_lsn;
    w->end = end;
    w->body = tdm_malloc(TDM_BATCH_BODY_SIZE_MAX);
    w->raw = tdm_malloc(TDM_BATCH_RAW_SIZE_MAX);
    if (w->body == NULL || w->raw == NULL) {
        tdm_free(w->body);
        tdm_free(w->raw);
        return -ENOMEM;
    }
    if (scrub) {
        /* Every byte is proven by the checksums and the chain; the records
         * were checked when the batch was built or received, and every read
         * decodes them again. Without decompression and with the window a
         * pass runs at about the medium's sequential rate (bench_scrub). */
        w->checksum_only = true;
        w->ahead = tdm_malloc(RECOVER_AHEAD_SIZE);
    }
    return 0;
}

static void walk_deinit(struct walk *w)
{
    tdm_free(w->body);
    tdm_free(w->raw);
    if (w->ahead != NULL) {
        tdm_free(w->ahead);
    }
}

/* Bytes [offset, offset + size) of the walk's file, within w->end: *out
 * points into the read-ahead window when there is one (refilled from offset
 * when the range is not in it), else into scratch (read directly). A window
 * that cannot be filled falls back to the direct read, so errors and short
 * reads are those of the range itself. */
static int walk_view(struct walk *w, uint8_t *scratch, size_t size, uint64_t offset,
                     const uint8_t **out)
{
    *out = scratch;
    if (w->ahead == NULL || size > RECOVER_AHEAD_SIZE || offset > w->end ||
        w->end - offset < size) {
        return tdm_fs_read_exact(w->fs, w->fd, scratch, size, offset);
    }
    if (offset < w->ahead_offset || offset + size > w->ahead_offset + w->ahead_size) {
        size_t want = RECOVER_AHEAD_SIZE;
        if (w->end - offset < want) {
            want = (size_t)(w->end - offset);
        }
        w->ahead_size = 0;
        if (tdm_fs_read_exact(w->fs, w->fd, w->ahead, want, offset) != 0) {
            return tdm_fs_read_exact(w->fs, w->fd, scratch, size, offset);
        }
        w->ahead_offset = offset;
        w->ahead_size = want;
    }
    *out = w->ahead + (offset - w->ahead_offset);
    return 0;
}

/* Read and verify the batch at offset. expected_lsn (0: any) and prev (NULL:
 * unknown) are checked when given. Returns 0, TANDEM_ECORRUPT, or an I/O error. */
static int walk_batch(struct walk *w, uint64_t offset, uint64_t expected_lsn,
                      const struct tdm_chain_hash *prev, struct tdm_batch_header *h,
                      struct tdm_diag *diag)
{
    uint8_t head[TDM_BATCH_HEADER_SIZE];
    if (w->end - offset < TDM_BATCH_HEADER_SIZE) {
        return TDM_CORRUPT(diag, "partial batch header at offset %" PRIu64, offset);
    }
    const uint8_t *head_bytes = NULL;
    int rv = walk_view(w, head, sizeof(head), offset, &head_bytes);
    if (rv != 0) {
        return rv == -ENODATA ? TDM_CORRUPT(diag, "short read") : rv;
    }
    if (head_bytes != head) {
        memcpy(head, head_bytes, sizeof(head));
    }
    rv = tdm_batch_header_decode(head, sizeof(head), h, diag);
    if (rv != 0) {
        return rv;
    }
    if (expected_lsn != 0 && h->lsn_first != expected_lsn) {
        return TDM_CORRUPT(diag, "batch at offset %" PRIu64 " has LSN %" PRIu64 ", want %" PRIu64,
                           offset, h->lsn_first, expected_lsn);
    }
    if (prev != NULL && !tdm_batch_chain_follows(h, prev)) {
        return TDM_CORRUPT(diag, "batch %" PRIu64 ": chain hash does not follow", h->lsn_first);
    }
    if (w->end - offset - TDM_BATCH_HEADER_SIZE < h->body_size) {
        return TDM_CORRUPT(diag, "batch %" PRIu64 ": body runs past the end", h->lsn_first);
    }
    const uint8_t *body = NULL;
    rv = walk_view(w, w->body, h->body_size, offset + TDM_BATCH_HEADER_SIZE, &body);
    if (rv != 0) {
        return rv == -ENODATA ? TDM_CORRUPT(diag, "short read") : rv;
    }
    if (w->checksum_only) {
        rv = tdm_batch_body_check(h, body, diag);
    } else {
        rv = tdm_batch_body_decode(h, body, w->raw, TDM_BATCH_RAW_SIZE_MAX, diag);
    }
    if (rv != 0) {
        return rv;
    }
    if (w->checksum != NULL) {
        XXH3_64bits_update(w->checksum, head, sizeof(head));
        XXH3_64bits_update(w->checksum, body, h->body_size);
    }
    return 0;
}

/* Find the first offset in [from, end) where a batch header decodes. */
static int walk_resync(struct walk *w, uint64_t from, uint64_t *found, struct tdm_batch_header *h)
{
    uint8_t *chunk = w->body; /* Reused: resync happens between batches. */
    uint64_t offset = from;
    while (offset + TDM_BATCH_HEADER_SIZE <= w->end) {
        size_t want = RECOVER_CHUNK_SIZE;
        if (w->end - offset < want) {
            want = (size_t)(w->end - offset);
        }
        size_t got = 0;
        int rv = w->fs->pread(w->fs, w->fd, chunk, want, offset, &got);
        if (rv != 0) {
            return rv;
        }
        if (got < TDM_BATCH_HEADER_SIZE) {
            return 0;
        }
        for (size_t i = 0; i + TDM_BATCH_HEADER_SIZE <= got; i++) {
            if (chunk[i] != (uint8_t)TDM_BATCH_MAGIC) {
                continue;
            }
            if (tdm_batch_header_decode(chunk + i, TDM_BATCH_HEADER_SIZE, h, NULL) == 0) {
                *found = offset + i;
                return 1;
            }
        }
        offset += got - TDM_BATCH_HEADER_SIZE + 1;
    }
    return 0;
}

/* The end of the last non-zero byte in [from, w->end), or from if all are
 * zero: a prepared segment's space after its last batch (log.h
 * options.prepare) was written as zeros before any batch. */
static int walk_used_end(struct walk *w, uint64_t from, uint64_t *used_end)
{
    uint8_t *chunk = w->body; /* Reused: this happens after the last batch. */
    *used_end = from;
    for (uint64_t offset = from; offset < w->end;) {
        size_t want =
            w->end - offset < RECOVER_CHUNK_SIZE ? (size_t)(w->end - offset) : RECOVER_CHUNK_SIZE;
        size_t got = 0;
        int rv = w->fs->pread(w->fs, w->fd, chunk, want, offset, &got);
        if (rv != 0) {
            return rv;
        }
        if (got == 0) {
            break;
        }
        for (size_t i = got; i > 0; i--) {
            if (chunk[i - 1] != 0) {
                *used_end = offset + i;
                break;
            }
        }
        offset += got;
    }
    return 0;
}

/* ---- quarantine ------------------------------------------------------------ */

static int recover_copy(struct tdm_fs *fs, int from_fd, uint64_t offset, uint64_t size, int to_fd)
{
    uint8_t *buf = tdm_malloc(RECOVER_CHUNK_SIZE);
    if (buf == NULL) {
        return -ENOMEM;
    }
    int rv = 0;
    for (uint64_t done = 0; done < size && rv == 0;) {
        size_t n = size - done < RECOVER_CHUNK_SIZE ? (size_t)(size - done) : RECOVER_CHUNK_SIZE;
        rv = tdm_fs_read_exact(fs, from_fd, buf, n, offset + done);
        if (rv == 0) {
            rv = fs->pwrite(fs, to_fd, buf, n, done);
        }
        done += n;
    }
    tdm_free(buf);
    return rv;
}

/* Copy bytes [offset, size) of segment fd into quarantine/<segment>.<offset>.<suffix>
 * (or a free variant of that name: tdm_log_quarantine_path), durably (file
 * fdatasync'd, directory fsync'd). Redoing it after a crash gives a second copy
 * of the same bytes, never fewer. */
static int quarantine_copy(struct tdm_log *log, int fd, uint64_t segment_lsn, uint64_t offset,
                           uint64_t size, const char *suffix)
{
    struct tdm_fs *fs = log->fs;
    char segment_name[TDM_SEGMENT_NAME_SIZE];
    char name[TDM_SEGMENT_NAME_SIZE + 32];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(segment_name, sizeof(segment_name), segment_lsn);
    snprintf(name, sizeof(name), "%s.%" PRIu64 ".%s", segment_name, offset, suffix);
    int rv = fs->mkdir(fs, log->quarantine_dir);
    rv = rv != 0 ? rv : tdm_log_quarantine_path(log, name, path);
    int qfd = -1;
    rv = rv != 0 ? rv : fs->open(fs, path, TDM_FS_WRITE | TDM_FS_CREATE, &qfd);
    if (rv == 0) {
        rv = fs->truncate(fs, qfd, 0);
        rv = rv != 0 ? rv : recover_copy(fs, fd, offset, size - offset, qfd);
        rv = rv != 0 ? rv : fs->fdatasync(fs, qfd);
        fs->close(fs, qfd);
    }
    rv = rv != 0 ? rv : fs->sync_dir(fs, log->quarantine_dir);
    if (rv == 0) {
        log->quarantine_bytes += size - offset;
        log->quarantine_count++;
    }
    return rv;
}

/* Move the whole segment file into quarantine/<segment>.<suffix> (or a free
 * variant of that name): rename, then fsync both directories. */
static int quarantine_move(struct tdm_log *log, uint64_t segment_lsn, uint64_t size,
                           const char *suffix)
{
    struct tdm_fs *fs = log->fs;
    char segment_name[TDM_SEGMENT_NAME_SIZE];
    char name[TDM_SEGMENT_NAME_SIZE + 16];
    char from[TDM_PATH_SIZE];
    char to[TDM_PATH_SIZE];
    tdm_segment_name(segment_name, sizeof(segment_name), segment_lsn);
    snprintf(name, sizeof(name), "%s.%s", segment_name, suffix);
    int rv = fs->mkdir(fs, log->quarantine_dir);
    rv = rv != 0 ? rv : tdm_fs_path(from, sizeof(from), log->log_dir, segment_name);
    rv = rv != 0 ? rv : tdm_log_quarantine_path(log, name, to);
    rv = rv != 0 ? rv : fs->rename(fs, from, to);
    rv = rv != 0 ? rv : fs->sync_dir(fs, log->quarantine_dir);
    rv = rv != 0 ? rv : fs->sync_dir(fs, log->log_dir);
    if (rv == 0) {
        log->quarantine_bytes += size;
        log->quarantine_count++;
    }
    return rv;
}

/* Copy bytes [offset, size) of the segment into quarantine, durably, then cut
 * the segment at offset. Redoing it after a crash gives the same result. */
static int recover_cut_tail(struct tdm_log *log, int fd, uint64_t segment_lsn, uint64_t offset,
                            uint64_t size, struct tdm_diag *diag)
{
    struct tdm_fs *fs = log->fs;
    char segment_name[TDM_SEGMENT_NAME_SIZE];
    char segment_path[TDM_PATH_SIZE];
    tdm_segment_name(segment_name, sizeof(segment_name), segment_lsn);
    int rv = quarantine_copy(log, fd, segment_lsn, offset, size, "torn");
    if (rv != 0) {
        tdm_diag_printf(diag, "quarantine torn tail of %s: %s", segment_name, tandem_strerror(rv));
        return rv;
    }
    rv = tdm_fs_path(segment_path, sizeof(segment_path), log->log_dir, segment_name);
    int wfd = -1;
    rv = rv != 0 ? rv : fs->open(fs, segment_path, TDM_FS_WRITE, &wfd);
    if (rv == 0) {
        rv = fs->truncate(fs, wfd, offset);
        rv = rv != 0 ? rv : fs->fdatasync(fs, wfd);
        fs->close(fs, wfd);
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "cut torn tail of %s: %s", segment_name, tandem_strerror(rv));
        return rv;
    }
    tdm_tracef("cut torn tail of %s at offset %" PRIu64 ": %" PRIu64 " bytes to quarantine",
               segment_name, offset, size - offset);
    return 0;
}

/* Move a whole segment file whose header never became durable into quarantine. */
static int recover_quarantine_file(struct tdm_log *log, uint64_t segment_lsn, uint64_t size,
                                   struct tdm_diag *diag)
{
    int rv = quarantine_move(log, segment_lsn, size, "torn");
    if (rv != 0) {
        tdm_diag_printf(diag, "quarantine segment %" PRIu64 ": %s", segment_lsn,
                        tandem_strerror(rv));
        return rv;
    }
    tdm_tracef("moved torn segment %" PRIu64 " (%" PRIu64 " bytes) to quarantine", segment_lsn,
               size);
    return 0;
}

/* ---- recovery ------------------------------------------------------------------ */

/* What recovery knows between segments. */
struct recover_state {
    uint64_t expected_lsn;       /* Next LSN the log should hold. */
    struct tdm_chain_hash chain; /* Chain hash at expected_lsn - 1. */
    bool chain_known;            /* False after damage hid the chain. */
    uint64_t epoch;              /* Epoch of the last batch seen. */
};

static void recover_damage(struct tdm_log *log, struct tdm_log_segment *segment, uint64_t offset,
                           uint64_t lsn_first, uint64_t lsn_last, const char *why)
{
    struct tandem_damage damage = {
        .lsn_first = lsn_first,
        .lsn_last = lsn_last,
        .segment_lsn = segment->lsn_first,
        .offset = offset,
        .sealed = segment->sealed,
    };
    tdm_tracef("segment %" PRIu64 ": %s", segment->lsn_first, why);
    segment->damaged = true;
    tdm_log_damage_add(log, &damage);
}

static int recover_checksum_range(struct tdm_fs *fs, int fd, uint64_t size, uint8_t *chunk,
                                  uint64_t *checksum)
{
    XXH3_state_t *state = XXH3_createState();
    if (state == NULL) {
        return -ENOMEM;
    }
    XXH3_64bits_reset(state);
    int rv = 0;
    for (uint64_t done = 0; done < size && rv == 0;) {
        size_t n = size - done < RECOVER_CHUNK_SIZE ? (size_t)(size - done) : RECOVER_CHUNK_SIZE;
        rv = tdm_fs_read_exact(fs, fd, chunk, n, done);
        XXH3_64bits_update(state, chunk, n);
        done += n;
    }
    *checksum = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return rv;
}

/* Where a walk of a sealed segment ended: for the footer's checks. */
struct recover_sealed_end {
    uint64_t expected;           /* LSN after the last batch that verified. */
    struct tdm_chain_hash chain; /* Chain hash of that batch. */
};

/* Walk a sealed segment batch by batch, to name each damaged range. */
static int recover_sealed_damage(struct tdm_log *log, struct walk *w,
                                 struct tdm_log_segment *segment,
                                 const struct tdm_segment_header *sh,
                                 const struct tdm_segment_footer *footer,
                                 struct recover_sealed_end *end)
{
    uint64_t offset = TDM_SEGMENT_HEADER_SIZE;
    uint64_t expected = segment->lsn_first;
    struct tdm_chain_hash prev = sh->chain_prev;
    bool prev_known = true;
    end->expected = expected;
    end->chain = prev;
    while (offset < w->end) {
        struct tdm_batch_header h;
        struct tdm_diag diag = {{0}};
        int rv = walk_batch(w, offset, expected, prev_known ? &prev : NULL, &h, &diag);
        if (rv == 0) {
            offset += TDM_BATCH_HEADER_SIZE + h.body_size;
            expected = tdm_batch_lsn_last(&h) + 1;
            prev = h.chain_hash;
            prev_known = true;
            end->expected = expected;
            end->chain = prev;
            continue;
        }
        if (rv != TANDEM_ECORRUPT) {
            return rv;
        }
        uint64_t next = 0;
        struct tdm_batch_header nh;
        rv = walk_resync(w, offset + 1, &next, &nh);
        if (rv < 0) {
            return rv;
        }
        uint64_t last = rv == 1 && nh.lsn_first > expected ? nh.lsn_first - 1 : footer->lsn_last;
        recover_damage(log, segment, offset, expected, last, diag.message);
        if (rv == 0) {
            break;
        }
        offset = next;
        expected = 0;
        prev_known = false;
    }
    return 0;
}

/* Scrub (log->options.scrub): prove a sealed segment whole however it looks.
 * Walk every batch (header and body checksums, LSNs, chain hash from the
 * segment header), feeding the verified bytes to a fresh XXH3 state, then
 * check the footer against the walk: data checksum, last LSN, last chain hash.
 * The first failed check is recorded like any damage recovery finds. */
static int recover_sealed_scrub(struct tdm_log *log, struct walk *w, struct tdm_log_segment *seg,
                                const struct tdm_segment_header *sh,
                                const struct tdm_segment_footer *f)
{
    tdm_assert(log->options.scrub);
    tdm_assert(w->checksum == NULL);
    uint8_t hb[TDM_SEGMENT_HEADER_SIZE];
    int rv = tdm_fs_read_exact(w->fs, w->fd, hb, sizeof(hb), 0);
    if (rv != 0) {
        return rv == -ENODATA ? 0 : rv;
    }
    XXH3_state_t *state = XXH3_createState();
    if (state == NULL) {
        return -ENOMEM;
    }
    XXH3_64bits_reset(state);
    XXH3_64bits_update(state, hb, sizeof(hb));
    w->checksum = state;
    w->end = f->data_size;
    struct recover_sealed_end end;
    rv = recover_sealed_damage(log, w, seg, sh, f, &end);
    w->checksum = NULL;
    uint64_t checksum = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    if (rv != 0 || seg->damaged) {
        return rv;
    }
    if (checksum != f->checksum) {
        recover_damage(log, seg, 0, seg->lsn_first, f->lsn_last, "segment checksum mismatch");
    } else if (end.expected != f->lsn_last + 1 ||
               memcmp(end.chain.bytes, f->chain_last.bytes, TDM_CHAIN_HASH_SIZE) != 0) {
        recover_damage(log, seg, f->data_size, seg->lsn_first, f->lsn_last,
                       "footer does not match the segment's batches");
    }
    return 0;
}

/* Try the footer; returns 1 if the segment is sealed (and handled), 0 if not. */
static int recover_try_sealed(struct tdm_log *log, struct walk *w, struct tdm_log_segment *seg,
                              const struct tdm_segment_header *sh, struct recover_state *st)
{
    if (seg->size < TDM_SEGMENT_HEADER_SIZE + TDM_SEGMENT_FOOTER_SIZE) {
        return 0;
    }
    uint8_t buf[TDM_SEGMENT_FOOTER_SIZE];
    struct tdm_segment_footer f;
    int rv = tdm_fs_read_exact(w->fs, w->fd, buf, sizeof(buf), seg->size - sizeof(buf));
    if (rv != 0) {
        return rv == -ENODATA ? 0 : rv;
    }
    if (tdm_segment_footer_decode(buf, &f, NULL) != 0 || f.lsn_first != seg->lsn_first ||
        f.data_size != seg->size - TDM_SEGMENT_FOOTER_SIZE) {
        return 0;
    }
    seg->sealed = true;
    seg->lsn_last = f.lsn_last;
    seg->chain_last = f.chain_last;
    if (log->options.scrub) {
        rv = recover_sealed_scrub(log, w, seg, sh, &f);
        if (rv != 0) {
            return rv;
        }
        st->expected_lsn = f.lsn_last + 1;
        st->chain = f.chain_last;
        st->chain_known = true;
        return 1;
    }
    /* A reader trusts the footer: reads verify every batch they touch, and
     * the writer's open (or the scrubber) proves whole segments. */
    uint64_t checksum = f.checksum;
    if (!log->options.read_only) {
        rv = recover_checksum_range(w->fs, w->fd, f.data_size, w->body, &checksum);
        if (rv != 0) {
            return rv;
        }
    }
    if (checksum != f.checksum) {
        w->end = f.data_size;
        struct recover_sealed_end end;
        rv = recover_sealed_damage(log, w, seg, sh, &f, &end);
        if (rv != 0) {
            return rv;
        }
        if (!seg->damaged) {
            recover_damage(log, seg, 0, seg->lsn_first, f.lsn_last, "segment checksum mismatch");
        }
    }
    st->expected_lsn = f.lsn_last + 1;
    st->chain = f.chain_last;
    st->chain_known = true;
    return 1;
}

/* The first bad batch at offset of the last segment: torn tail or damage
 * (the decision table at the top of this file). *resume receives the offset
 * of the valid batch header after the damage, or 0 if there is none. */
static int recover_tail_verdict(struct tdm_log *log, struct walk *w, struct tdm_log_segment *seg,
                                uint64_t offset, uint64_t expected, const char *why,
                                uint64_t *resume, struct tdm_diag *diag)
{
    uint64_t next = 0;
    struct tdm_batch_header nh;
    *resume = 0;
    int found = walk_resync(w, offset + 1, &next, &nh);
    if (found < 0) {
        return found;
    }
    if (found == 1 || log->progress_lsn >= expected) {
        recover_damage(log, seg, offset, expected,
                       found == 1 ? nh.lsn_first - 1 : log->progress_lsn, why);
        log->tail_damaged = true;
        if (found == 1 && nh.lsn_first > expected) {
            *resume = next;
        }
        return 0;
    }
    if (!log->options.read_only) {
        int rv = recover_cut_tail(log, w->fd, seg->lsn_first, offset, seg->size, diag);
        if (rv != 0) {
            return rv;
        }
        log->tail_allocated = false; /* Truncated at offset. */
    }
    seg->size = offset;
    return 0;
}

/* Damage in the open segment followed by a batch that verifies (row 1 of the
 * decision table): the batches from offset on are durable and are served, so
 * walk them to the end, recording any further bad bytes as damage too.
 * *expected and *prev advance past every batch that verifies. */
static int recover_walk_after_damage(struct tdm_log *log, struct walk *w,
                                     struct tdm_log_segment *seg, uint64_t offset,
                                     uint64_t *expected, struct tdm_chain_hash *prev)
{
    tdm_assert(log->tail_damaged);
    bool chain_known = false; /* The damage hides the chain into the batch at offset. */
    while (offset < seg->size) {
        struct tdm_batch_header h;
        struct tdm_diag why = {{0}};
        int rv =
            walk_batch(w, offset, chain_known ? *expected : 0, chain_known ? prev : NULL, &h, &why);
        if (rv == 0 && h.lsn_first >= *expected) {
            offset += TDM_BATCH_HEADER_SIZE + h.body_size;
            *expected = tdm_batch_lsn_last(&h) + 1;
            *prev = h.chain_hash;
            chain_known = true;
            continue;
        }
        if (rv != 0 && rv != TANDEM_ECORRUPT) {
            return rv;
        }
        uint64_t next = 0;
        struct tdm_batch_header nh;
        int found = walk_resync(w, offset + 1, &next, &nh);
        if (found < 0) {
            return found;
        }
        bool ahead = found == 1 && nh.lsn_first > *expected;
        uint64_t durable = log->progress_lsn >= *expected ? log->progress_lsn : 0;
        recover_damage(log, seg, offset, *expected, ahead ? nh.lsn_first - 1 : durable,
                       why.message[0] != '\0' ? why.message : "batch out of order");
        if (!ahead) {
            break;
        }
        offset = next;
        chain_known = false;
    }
    return 0;
}

/* Walk the open segment batch by batch from its header to its end. */
static int recover_walk_open(struct tdm_log *log, struct walk *w, struct tdm_log_segment *seg,
                             const struct tdm_segment_header *sh, bool is_last,
                             struct recover_state *st, struct tdm_diag *diag)
{
    uint64_t offset = TDM_SEGMENT_HEADER_SIZE;
    uint64_t expected = seg->lsn_first;
    struct tdm_chain_hash prev = sh->chain_prev;
    uint32_t batch_count = 0;
    struct tdm_diag why = {{0}};
    uint32_t rereads = 0;
walk:
    while (offset < seg->size) {
        struct tdm_batch_header h;
        int rv = walk_batch(w, offset, expected, &prev, &h, &why);
        if (rv == TANDEM_ECORRUPT) {
            break;
        }
        if (rv != 0) {
            tdm_diag_printf(diag, "read segment %" PRIu64 ": %s", seg->lsn_first,
                            tandem_strerror(rv));
            return rv;
        }
        uint32_t size = TDM_BATCH_HEADER_SIZE + h.body_size;
        if (is_last) {
            tdm_log_table_note(log, seg->lsn_first, h.lsn_first, tdm_batch_lsn_last(&h), offset,
                               size);
        }
        offset += size;
        expected = tdm_batch_lsn_last(&h) + 1;
        prev = h.chain_hash;
        st->epoch = h.epoch;
        batch_count++;
    }
    if (offset < seg->size && is_last && (sh->flags & TDM_SEGMENT_PREPARED) != 0) {
        /* Zeros after the last batch are a prepared segment's unwritten
         * space: the log ends at offset (a durable LSN beyond it is damage:
         * recover_check_progress). The judgement below sees only the bytes
         * up to the last non-zero one. */
        uint64_t used_end = offset;
        int rv = walk_used_end(w, offset, &used_end);
        if (rv != 0) {
            tdm_diag_printf(diag, "read segment %" PRIu64 ": %s", seg->lsn_first,
                            tandem_strerror(rv));
            return rv;
        }
        if (used_end < seg->size) {
            log->tail_allocated = !log->options.read_only;
            seg->size = used_end;
            w->end = used_end;
        }
    }
    if (offset < seg->size && is_last && log->options.read_only &&
        rereads < RECOVER_READ_ONLY_REREADS) {
        /* A writer may append beside this read-only open: the batch at
         * offset may have been zeros or half written when it was read, and
         * whole by the time the bytes after it were. Batches are written in
         * order, so read it again before judging: if it verifies now, walk
         * on from it (a damaged batch fails again). */
        struct tdm_batch_header h;
        struct tdm_diag again = {{0}};
        if (walk_batch(w, offset, expected, &prev, &h, &again) == 0) {
            rereads++;
            goto walk;
        }
    }
    if (offset < seg->size && is_last) {
        uint64_t resume = 0;
        int rv = recover_tail_verdict(log, w, seg, offset, expected, why.message, &resume, diag);
        if (rv == 0 && resume != 0) {
            rv = recover_walk_after_damage(log, w, seg, resume, &expected, &prev);
        }
        if (rv != 0) {
            return rv;
        }
    } else if (offset < seg->size) {
        recover_damage(log, seg, offset, expected, 0, why.message);
    } else if (!is_last) {
        recover_damage(log, seg, offset, 0, 0, "segment is not sealed but is not the last");
    }
    seg->lsn_last = expected - 1;
    seg->chain_last = prev;
    if (is_last) {
        log->tail_offset = seg->size;
        log->tail_batch_count = batch_count;
    }
    st->expected_lsn = expected;
    st->chain = prev;
    st->chain_known = true;
    return 0;
}

/* A segment whose header does not verify: a torn creation if it is the last
 * and holds no batch, else damage. Returns 1 if the segment was dropped. */
static int recover_bad_header(struct tdm_log *log, struct walk *w, struct tdm_log_segment *seg,
                              bool is_last, struct recover_state *st, struct tdm_diag *diag)
{
    if (is_last) {
        uint64_t next;
        struct tdm_batch_header nh;
        int found = walk_resync(w, 0, &next, &nh);
        if (found < 0) {
            return found;
        }
        if (found == 0 && log->progress_lsn < st->expected_lsn) {
            if (!log->options.read_only) {
                int rv = recover_quarantine_file(log, seg->lsn_first, seg->size, diag);
                if (rv != 0) {
                    return rv;
                }
            }
            return 1;
        }
        log->tail_damaged = true;
    } else if (st->chain_known && st->expected_lsn == seg->lsn_first) {
        /* Not the last, so sealed: its footer still names its LSN range and
         * chain hash, and its batches verify on their own, so the damage stays
         * inside this segment and the next one is checked as usual. */
        struct tdm_segment_header sh = {.lsn_first = seg->lsn_first, .chain_prev = st->chain};
        int sealed = recover_try_sealed(log, w, seg, &sh, st);
        if (sealed < 0) {
            return sealed;
        }
        if (sealed == 1) {
            if (!seg->damaged) {
                recover_damage(log, seg, 0, seg->lsn_first, seg->lsn_last,
                               "segment header does not verify");
            }
            return 0;
        }
    }
    recover_damage(log, seg, 0, st->expected_lsn, 0, "segment header does not verify");
    st->chain_known = false;
    return 0;
}

static int recover_segment(struct tdm_log *log, uint64_t segment_lsn, bool is_last,
                           struct recover_state *st, struct tdm_diag *diag)
{
    char name[TDM_SEGMENT_NAME_SIZE];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(name, sizeof(name), segment_lsn);
    int rv = tdm_fs_path(path, sizeof(path), log->log_dir, name);
    tdm_assert(rv == 0);
    int fd;
    rv = log->fs->open(log->fs, path, TDM_FS_READ, &fd);
    if (rv != 0) {
        tdm_diag_printf(diag, "open segment %s: %s", name, tandem_strerror(rv));
        return rv;
    }
    struct tdm_log_segment seg = {.lsn_first = segment_lsn, .lsn_last = segment_lsn - 1};
    rv = log->fs->size(log->fs, fd, &seg.size);
    if (rv != 0) {
        tdm_diag_printf(diag, "size of segment %s: %s", name, tandem_strerror(rv));
        log->fs->close(log->fs, fd);
        return rv;
    }
    struct walk w;
    rv = walk_init(&w, log->fs, fd, segment_lsn, seg.size, log->options.scrub);
    if (rv != 0) {
        tdm_diag_printf(diag, "recover segment %s: out of memory", name);
        log->fs->close(log->fs, fd);
        return rv;
    }
    uint8_t hb[TDM_SEGMENT_HEADER_SIZE];
    struct tdm_segment_header sh;
    rv = tdm_fs_read_exact(log->fs, fd, hb, sizeof(hb), 0);
    bool header_ok =
        rv == 0 && tdm_segment_header_decode(hb, &sh, NULL) == 0 && sh.lsn_first == segment_lsn;
    if (rv == -ENODATA) {
        rv = 0;
    }
    if (rv == 0 && !header_ok) {
        rv = recover_bad_header(log, &w, &seg, is_last, st, diag);
        if (rv == 1) {
            goto out; /* Dropped into quarantine: not a segment any more. */
        }
    } else if (rv == 0) {
        if (st->expected_lsn != segment_lsn) {
            recover_damage(log, &seg, 0, st->expected_lsn, segment_lsn - 1, "missing LSNs");
        } else if (st->chain_known &&
                   memcmp(st->chain.bytes, sh.chain_prev.bytes, TDM_CHAIN_HASH_SIZE) != 0) {
            recover_damage(log, &seg, 0, segment_lsn, segment_lsn, "chain hash break");
        }
        if (st->epoch == 0) {
            st->epoch = sh.epoch;
        }
        if (is_last && !log->options.read_only) {
            w.checksum = log->tail_checksum;
            XXH3_64bits_reset(w.checksum);
            XXH3_64bits_update(w.checksum, hb, sizeof(hb));
        }
        rv = recover_try_sealed(log, &w, &seg, &sh, st);
        if (rv == 0) {
            rv = recover_walk_open(log, &w, &seg, &sh, is_last, st, diag);
        } else if (rv == 1) {
            rv = 0;
        }
    }
    if (rv == 0) {
        rv = tdm_log_segment_push(log, &seg);
    }
    if (rv == 0 && is_last && !seg.sealed && !log->tail_damaged && !log->options.read_only) {
        rv = log->fs->open(log->fs, path, TDM_FS_WRITE, &log->tail_fd);
    }
out:
    walk_deinit(&w);
    log->fs->close(log->fs, fd);
    if (rv < 0 && diag != NULL && diag->message[0] == '\0') {
        tdm_diag_printf(diag, "recover segment %s: %s", name, tandem_strerror(rv));
    }
    return rv < 0 ? rv : 0;
}

/* ---- listing ------------------------------------------------------------------ */

struct recover_names {
    uint64_t *lsns;
    uint32_t count;
    uint32_t capacity;
};

static int recover_names_cb(void *data, const char *name)
{
    struct recover_names *names = data;
    uint64_t lsn;
    if (!tdm_segment_name_parse(name, &lsn)) {
        return 0;
    }
    if (names->count == names->capacity) {
        uint32_t capacity = names->capacity == 0 ? 64 : names->capacity * 2;
        if (capacity > RECOVER_SEGMENT_NAMES_MAX) {
            return -EMFILE;
        }
        uint64_t *p = tdm_realloc(names->lsns, capacity * sizeof(*p));
        if (p == NULL) {
            return -ENOMEM;
        }
        names->lsns = p;
        names->capacity = capacity;
    }
    names->lsns[names->count++] = lsn;
    return 0;
}

static int recover_lsn_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

static int recover_quarantine_cb(void *data, const char *name)
{
    struct tdm_log *log = data;
    char path[TDM_PATH_SIZE];
    if (tdm_fs_path(path, sizeof(path), log->quarantine_dir, name) != 0) {
        return 0;
    }
    int fd;
    uint64_t size = 0;
    if (log->fs->open(log->fs, path, TDM_FS_READ, &fd) == 0) {
        (void)log->fs->size(log->fs, fd, &size);
        log->fs->close(log->fs, fd);
    }
    log->quarantine_count++;
    log->quarantine_bytes += size;
    return 0;
}

/* The log ends cleanly before the LSN the progress record says is durable:
 * those records were lost, not torn (row 2 of the decision table, at the very
 * end of the log). It is damage: appends are refused, as they would reuse LSNs
 * that were acknowledged. */
static void recover_check_progress(struct tdm_log *log, const struct recover_state *st)
{
    if (log->tail_damaged || log->progress_lsn < st->expected_lsn) {
        return;
    }
    struct tandem_damage damage = {
        .lsn_first = st->expected_lsn,
        .lsn_last = log->progress_lsn,
        .segment_lsn = st->expected_lsn,
    };
    if (log->segment_count > 0) {
        struct tdm_log_segment *last = &log->segments[log->segment_count - 1];
        last->damaged = true;
        damage.segment_lsn = last->lsn_first;
        damage.offset = last->size;
        damage.sealed = last->sealed;
    }
    tdm_tracef("log ends at LSN %" PRIu64 " but LSN %" PRIu64 " was durable", st->expected_lsn - 1,
               log->progress_lsn);
    tdm_log_damage_add(log, &damage);
    log->tail_damaged = true;
}

/* Every segment but the last was sealed before the next one was created, so
 * damage there is inside a sealed segment even where its footer is the part
 * that no longer verifies. */
static void recover_mark_sealed(struct tdm_log *log)
{
    if (log->segment_count == 0) {
        return;
    }
    uint64_t last_lsn = log->segments[log->segment_count - 1].lsn_first;
    uint32_t n =
        log->damaged_count < TDM_LOG_DAMAGED_MAX ? log->damaged_count : TDM_LOG_DAMAGED_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (log->damaged[i].segment_lsn < last_lsn) {
            log->damaged[i].sealed = true;
        }
    }
}

int tdm_log_recover(struct tdm_log *log, struct tdm_diag *diag)
{
    /* Progress first: whatever it claims was durable, so named, before the
     * listing, even while a writer appends beside a read-only open. */
    int rv = tdm_progress_read(log);
    if (rv != 0) {
        tdm_diag_printf(diag, "read progress: %s", tandem_strerror(rv));
        return rv;
    }
    struct recover_names names = {0};
    rv = log->fs->list(log->fs, log->log_dir, recover_names_cb, &names);
    if (rv != 0) {
        tdm_free(names.lsns);
        if (rv == -ENOENT) {
            tdm_diag_printf(diag, "%s: no log directory", log->log_dir);
            return TANDEM_EFORMAT;
        }
        tdm_diag_printf(diag, "list %s: %s", log->log_dir, tandem_strerror(rv));
        return rv;
    }
    if (names.count > 1) {
        qsort(names.lsns, names.count, sizeof(*names.lsns), recover_lsn_compare); /* NULL if 0. */
    }
    (void)log->fs->list(log->fs, log->quarantine_dir, recover_quarantine_cb, log);
    struct recover_state st = {.expected_lsn = names.count > 0 ? names.lsns[0] : 1};
    st.chain_known = names.count == 0 || names.lsns[0] == 1;
    for (uint32_t i = 0; i < names.count && rv == 0; i++) {
        rv = recover_segment(log, names.lsns[i], i + 1 == names.count, &st, diag);
    }
    tdm_free(names.lsns);
    if (rv != 0) {
        return rv;
    }
    log->lsn_last = st.expected_lsn - 1;
    log->chain_last = st.chain;
    log->epoch = st.epoch != 0 ? st.epoch : 1;
    recover_check_progress(log, &st);
    recover_mark_sealed(log);
    if (log->segment_count > 0 && log->lsn_last >= log->segments[0].lsn_first) {
        log->lsn_first = log->segments[0].lsn_first;
    }
    return 0;
}

/* ---- scanning ------------------------------------------------------------------ */

static int scan_segment(struct tdm_log *log, const struct tdm_log_segment *seg, uint64_t lsn_from,
                        tdm_log_scan_cb cb, void *data, struct tdm_diag *diag)
{
    char name[TDM_SEGMENT_NAME_SIZE];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(name, sizeof(name), seg->lsn_first);
    int rv = tdm_fs_path(path, sizeof(path), log->log_dir, name);
    tdm_assert(rv == 0);
    int fd;
    rv = log->fs->open(log->fs, path, TDM_FS_READ, &fd);
    if (rv != 0) {
        tdm_diag_printf(diag, "open segment %s: %s", name, tandem_strerror(rv));
        return rv;
    }
    struct walk w;
    rv = walk_init(&w, log->fs, fd, seg->lsn_first,
                   seg->sealed ? seg->size - TDM_SEGMENT_FOOTER_SIZE : seg->size, false);
    uint64_t offset = TDM_SEGMENT_HEADER_SIZE;
    while (rv == 0 && offset < w.end) {
        struct tdm_batch_header h;
        rv = walk_batch(&w, offset, 0, NULL, &h, NULL);
        if (rv == 0) {
            if (h.lsn_first > seg->lsn_last) {
                break; /* Written after the scan began. */
            }
            struct tdm_log_location location = {seg->lsn_first, offset,
                                                TDM_BATCH_HEADER_SIZE + h.body_size};
            offset += location.size;
            if (tdm_batch_lsn_last(&h) >= lsn_from) {
                rv = cb(data, &h, &location, w.raw);
            }
            continue;
        }
        if (rv != TANDEM_ECORRUPT) {
            tdm_diag_printf(diag, "read segment %s: %s", name, tandem_strerror(rv));
            break;
        }
        /* Damage that recovery reported: skip to the next batch that verifies. */
        uint64_t next = 0;
        int found = walk_resync(&w, offset + 1, &next, &h);
        rv = found < 0 ? found : 0;
        if (found != 1) {
            break;
        }
        offset = next;
    }
    walk_deinit(&w);
    log->fs->close(log->fs, fd);
    return rv;
}

int tdm_log_scan(struct tdm_log *log, uint64_t lsn_from, tdm_log_scan_cb cb, void *data,
                 struct tdm_diag *diag)
{
    int rv = 0;
    for (uint32_t i = 0; rv == 0; i++) {
        pthread_mutex_lock(&log->mutex);
        bool more = i < log->segment_count;
        struct tdm_log_segment seg;
        if (more) {
            seg = log->segments[i];
        }
        pthread_mutex_unlock(&log->mutex);
        if (!more) {
            break;
        }
        if (seg.lsn_last < seg.lsn_first || seg.lsn_last < lsn_from) {
            continue;
        }
        rv = scan_segment(log, &seg, lsn_from, cb, data, diag);
    }
    return rv;
}

/* ---- cutting a divergent tail (tdm_log_cut_after) ------------------------------- */

/* In segment seg (open as fd), find the offset of the batch that starts at
 * lsn + 1, with the chain hash and epoch at lsn and the batches before it,
 * which are listed in table (the segment's batch table after the cut). */
static int cut_find(struct tdm_log *log, const struct tdm_log_segment *seg, int fd, uint64_t lsn,
                    uint64_t *offset, struct tdm_chain_hash *chain, uint32_t *batch_count,
                    uint64_t *epoch, struct tdm_log_table *table, struct tdm_diag *diag)
{
    uint8_t hb[TDM_SEGMENT_HEADER_SIZE];
    struct tdm_segment_header sh;
    int rv = tdm_fs_read_exact(log->fs, fd, hb, sizeof(hb), 0);
    if (rv == 0) {
        rv = tdm_segment_header_decode(hb, &sh, diag);
    }
    if (rv != 0) {
        tdm_diag_wrapf(diag, "cut: segment %" PRIu64, seg->lsn_first);
        return rv;
    }
    *chain = sh.chain_prev;
    *epoch = sh.epoch;
    *batch_count = 0;
    uint64_t at = TDM_SEGMENT_HEADER_SIZE;
    uint64_t end = seg->sealed ? seg->size - TDM_SEGMENT_FOOTER_SIZE : seg->size;
    while (at < end) {
        if (seg->lsn_first == lsn + 1) {
            break;
        }
        uint8_t head[TDM_BATCH_HEADER_SIZE];
        struct tdm_batch_header h;
        rv = tdm_fs_read_exact(log->fs, fd, head, sizeof(head), at);
        if (rv == 0) {
            rv = tdm_batch_header_decode(head, sizeof(head), &h, diag);
        }
        if (rv != 0) {
            tdm_diag_wrapf(diag, "cut: segment %" PRIu64 " offset %" PRIu64, seg->lsn_first, at);
            return rv;
        }
        if (h.lsn_first == lsn + 1) {
            break;
        }
        if (tdm_batch_lsn_last(&h) > lsn) {
            tdm_diag_printf(diag, "cut: LSN %" PRIu64 " is inside batch %" PRIu64 "..%" PRIu64, lsn,
                            h.lsn_first, tdm_batch_lsn_last(&h));
            return TANDEM_EINVALID;
        }
        *chain = h.chain_hash;
        *epoch = h.epoch;
        (*batch_count)++;
        tdm_log_table_add(log, table, h.lsn_first, tdm_batch_lsn_last(&h), at,
                          TDM_BATCH_HEADER_SIZE + h.body_size);
        at += TDM_BATCH_HEADER_SIZE + h.body_size;
    }
    if (at >= end) {
        tdm_diag_printf(diag, "cut: no batch starts at LSN %" PRIu64, lsn + 1);
        return TANDEM_EINVALID;
    }
    *offset = at;
    return 0;
}

/* Move whole segments [from, segment_count) into quarantine, last first, so
 * that a crash leaves the log a contiguous prefix. */
static int cut_quarantine_segments(struct tdm_log *log, uint32_t from)
{
    int rv = 0;
    for (uint32_t i = log->segment_count; rv == 0 && i > from; i--) {
        rv = quarantine_move(log, log->segments[i - 1].lsn_first, log->segments[i - 1].size, "cut");
    }
    return rv;
}

/* Reopen segment index as the open tail at offset, recomputing its checksum. */
static int cut_reopen_tail(struct tdm_log *log, uint32_t index, uint64_t offset,
                           uint32_t batch_count)
{
    struct tdm_fs *fs = log->fs;
    char name[TDM_SEGMENT_NAME_SIZE];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(name, sizeof(name), log->segments[index].lsn_first);
    int rv = tdm_fs_path(path, sizeof(path), log->log_dir, name);
    int fd = -1;
    rv = rv != 0 ? rv : fs->open(fs, path, TDM_FS_WRITE, &fd);
    if (rv != 0) {
        return rv;
    }
    rv = fs->truncate(fs, fd, offset);
    rv = rv != 0 ? rv : fs->fdatasync(fs, fd);
    uint8_t *chunk = rv == 0 ? tdm_malloc(RECOVER_CHUNK_SIZE) : NULL;
    if (rv == 0 && chunk == NULL) {
        rv = -ENOMEM;
    }
    XXH3_64bits_reset(log->tail_checksum);
    for (uint64_t done = 0; rv == 0 && done < offset;) {
        size_t n =
            offset - done < RECOVER_CHUNK_SIZE ? (size_t)(offset - done) : RECOVER_CHUNK_SIZE;
        rv = tdm_fs_read_exact(fs, fd, chunk, n, done);
        XXH3_64bits_update(log->tail_checksum, chunk, n);
        done += n;
    }
    tdm_free(chunk);
    if (rv != 0) {
        fs->close(fs, fd);
        return rv;
    }
    log->tail_fd = fd;
    log->tail_offset = offset;
    log->tail_batch_count = batch_count;
    log->tail_allocated = false;
    log->tail_prepare_asked = false;
    return 0;
}

/* A cut failed after it began to modify files: make the log failed, and let
 * the batch tables list nothing from the cut segment on (which batches are
 * where is for recovery to judge). Returns TANDEM_EFAILED. */
static int cut_fail(struct tdm_log *log, uint64_t lsn, const char *what, int rv,
                    struct tdm_log_table *table, struct tdm_diag *diag)
{
    tdm_assert(rv < 0);
    table->count = 0;
    table->lsn_next = table->segment_lsn;
    table->end = TDM_SEGMENT_HEADER_SIZE;
    table->frozen = true;
    pthread_mutex_lock(&log->mutex);
    tdm_log_tables_cut_locked(log, table);
    pthread_mutex_unlock(&log->mutex);
    tdm_free(table->entries);
    table->entries = NULL;
    char message[TDM_DIAG_SIZE];
    snprintf(message, sizeof(message), "cut after LSN %" PRIu64 ": %s: %s", lsn, what,
             tandem_strerror(rv));
    tdm_log_fail(log, rv, message);
    tdm_diag_printf(diag, "%s", message);
    return TANDEM_EFAILED;
}

static int cut_after(struct tdm_log *log, uint64_t lsn, struct tdm_diag *diag)
{
    if (log->options.read_only) {
        tdm_diag_printf(diag, "the log is open read-only");
        return TANDEM_EREADONLY;
    }
    if (tdm_log_failed(log, diag) != 0) {
        return TANDEM_EFAILED;
    }
    if (lsn >= log->lsn_last) {
        return 0;
    }
    uint32_t index = 0;
    while (index + 1 < log->segment_count && log->segments[index + 1].lsn_first <= lsn + 1) {
        index++;
    }
    if (log->segment_count == 0 || log->segments[index].lsn_first > lsn + 1) {
        tdm_diag_printf(diag, "cut: LSN %" PRIu64 " is before the log", lsn);
        return TANDEM_EINVALID;
    }
    struct tdm_log_segment *seg = &log->segments[index];
    char name[TDM_SEGMENT_NAME_SIZE];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(name, sizeof(name), seg->lsn_first);
    int rv = tdm_fs_path(path, sizeof(path), log->log_dir, name);
    int fd = -1;
    rv = rv != 0 ? rv : log->fs->open(log->fs, path, TDM_FS_READ, &fd);
    if (rv != 0) {
        tdm_diag_printf(diag, "cut: open %s: %s", name, tandem_strerror(rv));
        return rv;
    }
    uint64_t offset = 0;
    struct tdm_chain_hash chain;
    uint32_t batch_count = 0;
    uint64_t epoch = 0;
    struct tdm_log_table table = {
        .segment_lsn = seg->lsn_first, .lsn_next = seg->lsn_first, .end = TDM_SEGMENT_HEADER_SIZE};
    rv = cut_find(log, seg, fd, lsn, &offset, &chain, &batch_count, &epoch, &table, diag);
    if (rv != 0) {
        log->fs->close(log->fs, fd);
        tdm_free(table.entries);
        return rv;
    }
    /* From here on a failure leaves the log in a state only recovery may judge. */
    const char *what = "copy to quarantine";
    rv = quarantine_copy(log, fd, seg->lsn_first, offset, seg->size, "cut");
    log->fs->close(log->fs, fd);
    if (rv == 0) {
        what = "lower progress record";
        rv = tdm_log_progress_sync(log, lsn, &chain);
    }
    if (rv == 0) {
        what = "move segments to quarantine";
        rv = cut_quarantine_segments(log, index + 1);
    }
    if (log->tail_fd >= 0) {
        log->fs->close(log->fs, log->tail_fd);
        log->tail_fd = -1;
    }
    log->tail_unsynced = false;
    if (rv == 0) {
        what = "truncate";
        rv = cut_reopen_tail(log, index, offset, batch_count);
    }
    if (rv != 0) {
        return cut_fail(log, lsn, what, rv, &table, diag);
    }
    tdm_tracef("cut the log after LSN %" PRIu64 " into quarantine", lsn);
    pthread_mutex_lock(&log->mutex);
    log->segment_count = index + 1;
    seg->lsn_last = lsn;
    seg->size = offset;
    seg->sealed = false;
    seg->chain_last = chain;
    log->log_bytes = 0;
    for (uint32_t i = 0; i < log->segment_count; i++) {
        log->log_bytes += log->segments[i].size;
    }
    log->lsn_last = lsn;
    log->chain_last = chain;
    log->epoch = epoch != 0 ? epoch : log->epoch;
    if (lsn < log->lsn_first) {
        log->lsn_first = 0;
    }
    tdm_log_tables_cut_locked(log, &table);
    pthread_mutex_unlock(&log->mutex);
    tdm_free(table.entries);
    return 0;
}

int tdm_log_cut_after(struct tdm_log *log, uint64_t lsn, struct tdm_diag *diag)
{
    pthread_mutex_lock(&log->swap_mutex); /* No repair swaps a segment meanwhile. */
    int rv = cut_after(log, lsn, diag);
    pthread_mutex_unlock(&log->swap_mutex);
    return rv;
}
