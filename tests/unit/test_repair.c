/* tests/unit/test_repair.c: restoring a damaged sealed segment from fetched
 * batches (engine/repair.c; docs/FORMAT.md "Repair").
 *
 * Method: a node with 8 KiB segments on the real file system appends
 * generated records (several sealed segments) and stays open; the test keeps
 * the first sealed segment's bytes and the offsets of its batches, flips
 * bytes in the file, and hands tdm_repair_plan()/tdm_repair_apply() batches
 * cut from the kept bytes (a good copy) or made bad on purpose: damaged, of
 * other LSNs, the right LSNs from another history (valid checksums, another
 * chain hash), one that chains but differs (another time stamp: the batch
 * after it, or the footer, does not follow), too many bytes. Every bad copy must be refused with
 * nothing changed: no byte of the segment, no file in quarantine. Built with
 * -Dplanted_bug=repair_takes_first_copy, repair writes whatever it is given
 * and test_repair__refuses_bad_copies fails (tests/meson.build registers that
 * run as planted.repair, should_fail). */
#include "tdm_test.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "engine/base/alloc.h"
#include "engine/base/prng.h"
#include "engine/batch.h"
#include "engine/fs.h"
#include "engine/log.h"
#include "engine/node.h"
#include "engine/repair.h"
#include "engine/segment.h"
#include "records.h"
#include "tmpdir.h"
#include "tools/gen.h"

#define SEGMENT_SIZE 8192
#define RECORDS      600
#define BATCHES_MAX  256

struct batch_info {
    uint64_t offset;
    uint64_t size;
    struct tdm_batch_header header;
};

struct fixture {
    char dir[256];
    char path[TDM_PATH_SIZE];       /* log/00000000000000000001.seg */
    char quarantine[TDM_PATH_SIZE]; /* DIR/quarantine */
    struct tandem *t;
    struct tdm_log *log;
    uint8_t *orig; /* The sealed segment as written. */
    size_t size;
    struct batch_info batches[BATCHES_MAX];
    uint32_t batch_count;
};

static struct fixture f;

static void read_all(const char *path, uint8_t **out, size_t *size)
{
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fseek(file, 0, SEEK_END), 0);
    long n = ftell(file);
    assert_true(n > 0);
    rewind(file);
    *out = malloc((size_t)n);
    assert_non_null(*out);
    assert_int_equal(fread(*out, 1, (size_t)n, file), (size_t)n);
    fclose(file);
    *size = (size_t)n;
}

static void write_at(const char *path, size_t offset, const uint8_t *bytes, size_t size)
{
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    assert_int_equal(fseek(file, (long)offset, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, size, file), size);
    fclose(file);
}

static void flip(size_t offset)
{
    uint8_t b = f.orig[offset] ^ 0x10;
    write_at(f.path, offset, &b, 1);
}

static void restore(void)
{
    write_at(f.path, 0, f.orig, f.size);
}

/* The file equals want[0 .. f.size). */
static void assert_file(const uint8_t *want)
{
    uint8_t *now;
    size_t size;
    read_all(f.path, &now, &size);
    assert_int_equal(size, f.size);
    assert_memory_equal(now, want, size);
    free(now);
}

static int quarantine_count_cb(void *data, const char *name)
{
    (void)name;
    (*(uint32_t *)data)++;
    return 0;
}

static uint32_t quarantine_files(void)
{
    uint32_t count = 0;
    struct tdm_fs *fs = tdm_fs_posix();
    (void)fs->list(fs, f.quarantine, quarantine_count_cb, &count);
    return count;
}

static int setup(void **state)
{
    (void)state;
    memset(&f, 0, sizeof(f));
    assert_int_equal(tdm_test_tmpdir_create(f.dir, sizeof(f.dir)), 0);
    f.t = tdm_test_node_open(tdm_fs_posix(), f.dir, TANDEM_OPEN_CREATE, SEGMENT_SIZE);
    f.log = tdm_node_log(f.t);
    struct tdm_gen gen;
    tdm_gen_init(&gen, 41, 5);
    struct tdm_prng prng;
    tdm_prng_init(&prng, 41);
    for (uint64_t n = 0; n < RECORDS;) {
        struct tandem_record records[3];
        uint32_t count = 1 + (uint32_t)tdm_prng_below(&prng, 3);
        for (uint32_t i = 0; i < count; i++) {
            tdm_gen_message(&gen, &records[i]);
        }
        uint64_t lsn = 0;
        assert_int_equal(tandem_append(f.t, records, count, &lsn, NULL), 0);
        n += count;
    }
    snprintf(f.path, sizeof(f.path), "%s/log/00000000000000000001.seg", f.dir);
    snprintf(f.quarantine, sizeof(f.quarantine), "%s/quarantine", f.dir);
    read_all(f.path, &f.orig, &f.size);
    struct tdm_segment_footer footer;
    assert_int_equal(
        tdm_segment_footer_decode(f.orig + f.size - TDM_SEGMENT_FOOTER_SIZE, &footer, NULL), 0);
    for (uint64_t offset = TDM_SEGMENT_HEADER_SIZE; offset < footer.data_size;) {
        struct batch_info *b = &f.batches[f.batch_count++];
        assert_true(f.batch_count < BATCHES_MAX);
        assert_int_equal(
            tdm_batch_header_decode(f.orig + offset, TDM_BATCH_HEADER_SIZE, &b->header, NULL), 0);
        b->offset = offset;
        b->size = TDM_BATCH_HEADER_SIZE + b->header.body_size;
        offset += b->size;
    }
    assert_true(f.batch_count >= 5);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tandem_close(f.t);
    free(f.orig);
    tdm_test_tmpdir_remove(f.dir);
    return 0;
}

/* The plan for damage inside batch i: exactly that batch's span. */
static void assert_plan_is_batch(const struct tdm_repair_plan *plan, uint32_t i)
{
    const struct batch_info *b = &f.batches[i];
    assert_int_equal(plan->segment_lsn, 1);
    assert_int_equal(plan->offset, b->offset);
    assert_int_equal(plan->size, b->size);
    assert_int_equal(plan->lsn_first, b->header.lsn_first);
    assert_int_equal(plan->lsn_last, tdm_batch_lsn_last(&b->header));
    const struct tdm_chain_hash *prev = i == 0 ? NULL : &f.batches[i - 1].header.chain_hash;
    if (prev != NULL) {
        assert_memory_equal(plan->chain_prev.bytes, prev->bytes, TDM_CHAIN_HASH_SIZE);
    }
}

/* A byte flipped in a batch body, then in a batch header: each plan names that
 * batch; the good copy's batch restores the file byte for byte, the damaged
 * file lands in quarantine, and the segment verifies (the next plan finds
 * nothing). Damage in the last batch spans up to the footer. */
static void test_repair__restores_the_bytes(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    struct tdm_repair_plan plan;
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), TANDEM_ENOTFOUND);
    uint32_t cases[3][2] = {
        {2, TDM_BATCH_HEADER_SIZE + 5},             /* Body. */
        {3, 20},                                    /* Header: resync to the next. */
        {f.batch_count - 1, TDM_BATCH_HEADER_SIZE}, /* The last batch: up to the footer. */
    };
    for (uint32_t c = 0; c < 3; c++) {
        uint32_t i = cases[c][0];
        const struct batch_info *b = &f.batches[i];
        flip(b->offset + cases[c][1]);
        uint8_t *damaged;
        size_t size;
        read_all(f.path, &damaged, &size);
        assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), 0);
        assert_plan_is_batch(&plan, i);
        uint32_t before = quarantine_files();
        assert_int_equal(tdm_repair_apply(f.log, &plan, f.orig + b->offset, b->size, &diag), 0);
        assert_file(f.orig);
        assert_int_equal(quarantine_files(), before + 1);
        char quarantined[TDM_PATH_SIZE + 64];
        snprintf(quarantined, sizeof(quarantined),
                 "%s/00000000000000000001.seg.%" PRIu64 ".damaged", f.quarantine, b->offset);
        uint8_t *kept;
        size_t kept_size;
        read_all(quarantined, &kept, &kept_size);
        assert_int_equal(kept_size, size);
        assert_memory_equal(kept, damaged, size);
        free(kept);
        free(damaged);
        assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), TANDEM_ENOTFOUND);
    }
    /* The segment is whole again for the log: its batches read. */
    struct tandem_status status;
    tdm_log_status(f.log, &status);
    assert_int_equal(status.damaged_count, 0);
}

/* The same batch body built again with another previous chain hash or time
 * stamp: valid checksums, the right LSNs and size. */
static uint8_t *rebuild(const struct batch_info *b, const struct tdm_chain_hash *prev,
                        int64_t time_ns, size_t *size)
{
    uint8_t *raw = malloc(b->header.raw_size + 1);
    assert_non_null(raw);
    assert_int_equal(tdm_batch_body_decode(&b->header, f.orig + b->offset + TDM_BATCH_HEADER_SIZE,
                                           raw, b->header.raw_size + 1, NULL),
                     0);
    size_t bound = tdm_batch_bound(b->header.raw_size);
    uint8_t *out = malloc(bound);
    assert_non_null(out);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    struct tdm_batch_header h;
    int n =
        tdm_batch_build(cctx, raw, b->header.raw_size, b->header.record_count, b->header.epoch,
                        b->header.lsn_first, b->header.lsn_durable, time_ns, prev, out, bound, &h);
    ZSTD_freeCCtx(cctx);
    free(raw);
    assert_true(n > 0);
    *size = (size_t)n;
    return out;
}

/* Refused, nothing changed: not the segment, not the quarantine. */
static void assert_refused(const struct tdm_repair_plan *plan, const uint8_t *bytes, size_t size,
                           const uint8_t *damaged, const char *why)
{
    struct tdm_diag diag = {{0}};
    uint32_t before = quarantine_files();
    assert_int_equal(tdm_repair_apply(f.log, plan, bytes, size, &diag), TANDEM_ECORRUPT);
    if (strstr(diag.message, why) == NULL) {
        fail_msg("diag [%s] does not say [%s]", diag.message, why);
    }
    assert_file(damaged);
    assert_int_equal(quarantine_files(), before);
}

/* Damage in batch 2; the copies offered: its batch with a flipped byte, the
 * batch after it, the right batch with bytes over, the right records chained
 * from another history, the right records with another time stamp (chains
 * from ours, but the batch after it no longer follows and the footer
 * disagrees). Each is refused and nothing changes; the good copy then works. */
static void test_repair__refuses_bad_copies(void **state)
{
    (void)state;
    const struct batch_info *b = &f.batches[2];
    flip(b->offset + TDM_BATCH_HEADER_SIZE + 7);
    uint8_t *damaged;
    size_t size;
    read_all(f.path, &damaged, &size);
    struct tdm_diag diag = {{0}};
    struct tdm_repair_plan plan;
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), 0);

    uint8_t *bad = malloc(b->size + 16);
    assert_non_null(bad);
    memcpy(bad, damaged + b->offset, b->size); /* The same damage on the other copy. */
    assert_refused(&plan, bad, b->size, damaged, "does not verify");
    const struct batch_info *next = &f.batches[3];
    assert_refused(&plan, f.orig + next->offset, next->size, damaged,
                   next->size == b->size ? "does not verify" : "bytes");
    memcpy(bad, f.orig + b->offset, b->size);
    memset(bad + b->size, 0, 16);
    assert_refused(&plan, bad, b->size + 16, damaged, "bytes");
    free(bad);

    struct tdm_chain_hash other = {{0}};
    memset(other.bytes, 0x5a, sizeof(other.bytes));
    size_t other_size;
    uint8_t *forked = rebuild(b, &other, b->header.time_ns, &other_size);
    assert_int_equal(other_size, b->size);
    assert_refused(&plan, forked, other_size, damaged, "does not verify or does not follow");
    free(forked);
    uint8_t *later =
        rebuild(b, &f.batches[1].header.chain_hash, b->header.time_ns + 1, &other_size);
    assert_int_equal(other_size, b->size);
    assert_refused(&plan, later, other_size, damaged, "batch after the damaged span");
    free(later);

    assert_int_equal(tdm_repair_apply(f.log, &plan, f.orig + b->offset, b->size, &diag), 0);
    assert_file(f.orig);
    free(damaged);

    /* The last batch: one that chains from ours but differs does not end with
     * the footer's chain hash. */
    b = &f.batches[f.batch_count - 1];
    flip(b->offset + TDM_BATCH_HEADER_SIZE + 3);
    read_all(f.path, &damaged, &size);
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), 0);
    later = rebuild(b, &f.batches[f.batch_count - 2].header.chain_hash, b->header.time_ns + 1,
                    &other_size);
    assert_int_equal(other_size, b->size);
    assert_refused(&plan, later, other_size, damaged, "footer's chain hash");
    free(later);
    free(damaged);
}

/* Two damaged spans in one segment: repaired one after the other, each
 * checked against the batch after it; then the segment is whole. */
static void test_repair__two_spans(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    struct tdm_repair_plan plan;
    flip(f.batches[1].offset + TDM_BATCH_HEADER_SIZE + 2);
    flip(f.batches[4].offset + TDM_BATCH_HEADER_SIZE + 2);
    for (uint32_t i = 1; i <= 4; i += 3) {
        const struct batch_info *b = &f.batches[i];
        assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), 0);
        assert_plan_is_batch(&plan, i);
        assert_int_equal(tdm_repair_apply(f.log, &plan, f.orig + b->offset, b->size, &diag), 0);
    }
    assert_file(f.orig);
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), TANDEM_ENOTFOUND);
}

/* A segment that changed since its plan is not touched; damage in a
 * segment's header or footer is not repairable from batches; an intact
 * segment has nothing to repair; a missing one is an I/O error. */
static void test_repair__plan_limits(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    struct tdm_repair_plan plan;
    const struct batch_info *b = &f.batches[1];
    flip(b->offset + TDM_BATCH_HEADER_SIZE + 1);
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), 0);
    restore(); /* Repaired meanwhile (another pass, another repair). */
    assert_int_equal(tdm_repair_apply(f.log, &plan, f.orig + b->offset, b->size, &diag), -EAGAIN);
    assert_non_null(strstr(diag.message, "changed since"));
    assert_file(f.orig);

    flip(30); /* The segment header's chain hash. */
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "its header is damaged"));
    restore();
    flip(f.size - 20); /* The footer's chain hash. */
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "its footer is damaged"));
    restore();
    assert_int_equal(tdm_repair_plan(f.log, 1, &plan, &diag), TANDEM_ENOTFOUND);
    assert_int_not_equal(tdm_repair_plan(f.log, 7777777, &plan, &diag), 0);
    assert_non_null(strstr(diag.message, "open segment 7777777"));
}

/* A segment's damaged header or footer is rebuilt from the segment itself
 * (tdm_repair_frame): byte for byte, the damaged file kept in quarantine;
 * segment 1 was created empty (flags 0), segment 2 from a prepared file
 * (flags 0x1), so both header candidates are needed. */
static void test_repair__frame(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    struct tdm_segment_footer footer;
    assert_int_equal(
        tdm_segment_footer_decode(f.orig + f.size - TDM_SEGMENT_FOOTER_SIZE, &footer, NULL), 0);
    assert_int_equal(tdm_repair_frame(f.log, 1, &diag), TANDEM_ENOTFOUND);
    uint64_t second = footer.lsn_last + 1;
    char second_path[TDM_PATH_SIZE];
    snprintf(second_path, sizeof(second_path), "%s/log/%020" PRIu64 ".seg", f.dir, second);
    uint8_t *second_orig;
    size_t second_size;
    read_all(second_path, &second_orig, &second_size);
    struct tdm_segment_header sh;
    assert_int_equal(tdm_segment_header_decode(second_orig, &sh, NULL), 0);
    assert_int_equal(sh.flags, TDM_SEGMENT_PREPARED);

    struct {
        const char *path;
        uint64_t segment_lsn;
        const uint8_t *orig;
        size_t size;
        size_t offset; /* The flipped byte. */
        uint64_t at;   /* The quarantine name's offset. */
    } cases[] = {
        {f.path, 1, f.orig, f.size, 30, 0},                         /* Header chain hash. */
        {f.path, 1, f.orig, f.size, 17, 0},                         /* Header epoch. */
        {second_path, second, second_orig, second_size, 6, 0},      /* Header flags. */
        {f.path, 1, f.orig, f.size, f.size - 20, footer.data_size}, /* Footer chain hash. */
        {second_path, second, second_orig, second_size, second_size - 50,
         second_size - TDM_SEGMENT_FOOTER_SIZE}, /* Footer checksum. */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint8_t b = cases[c].orig[cases[c].offset] ^ 0x10;
        write_at(cases[c].path, cases[c].offset, &b, 1);
        uint32_t before = quarantine_files();
        struct tdm_repair_plan plan;
        assert_int_equal(tdm_repair_plan(f.log, cases[c].segment_lsn, &plan, &diag),
                         TANDEM_ECORRUPT);
        diag = (struct tdm_diag){{0}};
        int rv = tdm_repair_frame(f.log, cases[c].segment_lsn, &diag);
        if (rv != 0) {
            fail_msg("case %zu: %s: %s", c, tandem_strerror(rv), diag.message);
        }
        uint8_t *now;
        size_t size;
        read_all(cases[c].path, &now, &size);
        assert_int_equal(size, cases[c].size);
        assert_memory_equal(now, cases[c].orig, size);
        free(now);
        char quarantined[TDM_PATH_SIZE + 64];
        snprintf(quarantined, sizeof(quarantined), "%s/%020" PRIu64 ".seg.%" PRIu64 ".damaged%s",
                 f.quarantine, cases[c].segment_lsn, cases[c].at,
                 c == 1 ? ".2" : ""); /* Case 1: case 0's name is taken, and kept. */
        assert_int_equal(quarantine_files(), before + 1);
        uint8_t *kept;
        size_t kept_size;
        read_all(quarantined, &kept, &kept_size);
        assert_int_equal(kept_size, size);
        assert_int_equal(kept[cases[c].offset], b);
        free(kept);
        assert_int_equal(tdm_repair_plan(f.log, cases[c].segment_lsn, &plan, &diag),
                         TANDEM_ENOTFOUND);
    }
    free(second_orig);
}

/* What nothing proves is refused, with nothing changed: header and footer
 * both damaged; a damaged header beside a damaged batch (no candidate
 * matches the footer's checksum); a damaged footer after a damaged batch
 * (the batches do not verify up to it). */
static void test_repair__frame_refused(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    size_t flips[][2] = {
        {30, f.size - 20},
        {30, f.batches[2].offset + TDM_BATCH_HEADER_SIZE + 3},
        {f.size - 20, f.batches[f.batch_count - 1].offset + TDM_BATCH_HEADER_SIZE + 3},
    };
    const char *why[] = {"both damaged", "no header rebuilt", "do not verify up to its footer"};
    for (size_t c = 0; c < 3; c++) {
        flip(flips[c][0]);
        flip(flips[c][1]);
        uint8_t *damaged;
        size_t size;
        read_all(f.path, &damaged, &size);
        uint32_t before = quarantine_files();
        assert_int_equal(tdm_repair_frame(f.log, 1, &diag), TANDEM_ECORRUPT);
        assert_non_null(strstr(diag.message, why[c]));
        assert_file(damaged);
        assert_int_equal(quarantine_files(), before);
        free(damaged);
        restore();
    }
    assert_int_not_equal(tdm_repair_frame(f.log, 7777777, &diag), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repair__restores_the_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair__refuses_bad_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair__plan_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair__two_spans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair__frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair__frame_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
