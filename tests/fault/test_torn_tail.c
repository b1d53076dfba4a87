/* tests/fault/test_torn_tail.c: a torn tail at every byte offset of the last
 * batch is cut into quarantine and the node carries on; the same bytes, once
 * a progress record claims them durable, are damage that nothing touches.
 *
 * Method: on the in-memory fault file system, a node appends a few hundred
 * records over many calls (many batches) into one segment. Before the last
 * call the test notes the segment's size (where the last batch will start)
 * and the progress file's bytes; the last call appends one batch of several
 * records; the node closes cleanly. Each case then rebuilds the file system
 * from scratch with a planted segment and a planted progress file and opens
 * the node on it:
 * - torn: the segment cut at every offset from the last batch's start to its
 *   end - 1, with the progress file as it was before the last append (a torn
 *   write is one whose fdatasync never returned, so no progress record claims
 *   it);
 * - torn sectors: the same with the bytes after the cut replaced by random
 *   bytes or zeros instead of missing, at a sample of offsets;
 * - durable: the same cuts with the progress file claiming the last batch.
 * The LMDB index lives on the real disk beside the fault fs and is ahead of
 * the planted log every time: each open must notice and rebuild it. */
#include "tdm_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/prng.h"
#include "engine/batch.h"
#include "engine/node.h"
#include "engine/segment.h"
#include "fault_fs.h"
#include "records.h"
#include "tools/gen.h"

#define APPEND_CALLS         64 /* Calls before the last one: one batch each. */
#define RECORDS_PER_CALL_MAX 8
#define LAST_BATCH_RECORDS   6 /* Records of the last call: one batch. */
#define LSN_MAX              1024
#define GARBAGE_SAMPLES      96 /* Cut offsets tried with garbage after the cut. */
#define SEED                 20261128

/* The bytes of one file. */
struct image {
    uint8_t *data; /* tdm_malloc'd. */
    size_t size;
};

struct fixture {
    struct tdm_fault_fs fs;
    char dir[256]; /* A real temporary directory (the index lives here). */
    char log_dir[TDM_PATH_SIZE];
    char quarantine_dir[TDM_PATH_SIZE];
    char segment_path[TDM_PATH_SIZE];
    char progress_path[TDM_PATH_SIZE];
    struct tdm_kept *kept;        /* kept[1 .. lsn_full]: what was appended. */
    uint64_t lsn_before;          /* Last LSN before the last batch. */
    uint64_t lsn_full;            /* Last LSN of the last batch. */
    uint64_t batch_start;         /* Offset of the last batch in the segment. */
    struct image segment;         /* The whole segment after the clean close. */
    struct image progress_before; /* The progress file before the last append. */
    struct image progress_after;  /* The progress file after the clean close. */
};

static void path_join(char *out, const char *dir, const char *name)
{
    assert_int_equal(tdm_fs_path(out, TDM_PATH_SIZE, dir, name), 0);
}

static struct tandem *node_open(struct fixture *f, uint32_t flags)
{
    return tdm_test_node_open(&f->fs.base, f->dir, flags, 0);
}

static void image_read(struct fixture *f, const char *path, struct image *image)
{
    void *data = NULL;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &data, &image->size), 0);
    image->data = data;
}

/* Append records [lsn, lsn + count) of a seeded stream in one call. */
static void append_call(struct fixture *f, struct tandem *t, struct tdm_gen *gen,
                        struct tdm_prng *prng, uint32_t count)
{
    struct tdm_kept kept[RECORDS_PER_CALL_MAX];
    struct tandem_record records[RECORDS_PER_CALL_MAX];
    assert_true(count <= RECORDS_PER_CALL_MAX);
    for (uint32_t i = 0; i < count; i++) {
        struct tandem_record r;
        if (tdm_prng_below(prng, 16) == 0) {
            tdm_gen_customer(gen, 1 + (uint32_t)tdm_prng_below(prng, 7), &r);
        } else {
            tdm_gen_message(gen, &r);
        }
        tdm_kept_set(&kept[i], &r);
    }
    for (uint32_t i = 0; i < count; i++) {
        tdm_kept_get(&kept[i], &records[i]);
    }
    uint64_t lsn = 0;
    struct tandem_diag diag;
    assert_int_equal(tandem_append(t, records, count, &lsn, &diag), 0);
    assert_true(lsn + count < LSN_MAX);
    for (uint32_t i = 0; i < count; i++) {
        f->kept[lsn + i] = kept[i];
    }
}

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->kept = calloc(LSN_MAX, sizeof(*f->kept));
    assert_non_null(f->kept);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    path_join(f->log_dir, f->dir, "log");
    path_join(f->quarantine_dir, f->dir, "quarantine");
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), 1);
    path_join(f->segment_path, f->log_dir, name);
    path_join(f->progress_path, f->log_dir, "progress");

    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, f->dir), 0);
    struct tandem *t = node_open(f, TANDEM_OPEN_CREATE);
    struct tdm_gen gen;
    tdm_gen_init(&gen, SEED, 7);
    struct tdm_prng prng;
    tdm_prng_init(&prng, SEED);
    for (int i = 0; i < APPEND_CALLS; i++) {
        uint32_t count = 1 + (uint32_t)tdm_prng_below(&prng, RECORDS_PER_CALL_MAX);
        append_call(f, t, &gen, &prng, count);
    }
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    f->lsn_before = status.lsn_last;
    assert_int_equal(tdm_fault_fs_file_size(&f->fs, f->segment_path, &f->batch_start), 0);
    image_read(f, f->progress_path, &f->progress_before);
    append_call(f, t, &gen, &prng, LAST_BATCH_RECORDS);
    tandem_close(t);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
    f->lsn_full = f->lsn_before + LAST_BATCH_RECORDS;
    image_read(f, f->segment_path, &f->segment);
    image_read(f, f->progress_path, &f->progress_after);

    /* The last batch is exactly [batch_start, end) and holds the last call. */
    struct tdm_batch_header h;
    assert_true(f->segment.size > f->batch_start + TDM_BATCH_HEADER_SIZE);
    assert_int_equal(
        tdm_batch_header_decode(f->segment.data + f->batch_start, TDM_BATCH_HEADER_SIZE, &h, NULL),
        0);
    assert_int_equal(h.lsn_first, f->lsn_before + 1);
    assert_int_equal(h.record_count, LAST_BATCH_RECORDS);
    assert_int_equal(f->batch_start + TDM_BATCH_HEADER_SIZE + h.body_size, f->segment.size);
    assert_true(f->lsn_before >= APPEND_CALLS);
    printf("last batch: LSNs %" PRIu64 "..%" PRIu64 ", bytes [%" PRIu64 ", %zu) of the segment\n",
           f->lsn_before + 1, f->lsn_full, f->batch_start, f->segment.size);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    tdm_fault_fs_deinit(&f->fs);
    tdm_free(f->segment.data);
    tdm_free(f->progress_before.data);
    tdm_free(f->progress_after.data);
    tdm_test_tmpdir_remove(f->dir);
    free(f->kept);
    free(f);
    return 0;
}

/* Start over with an empty file system holding only the node's directories,
 * the segment bytes given and a progress file. */
static void plant(struct fixture *f, const uint8_t *segment, size_t segment_size,
                  const struct image *progress)
{
    tdm_fault_fs_deinit(&f->fs);
    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, f->log_dir), 0);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, f->quarantine_dir), 0);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, f->segment_path, segment, segment_size), 0);
    assert_int_equal(
        tdm_fault_fs_write_file(&f->fs, f->progress_path, progress->data, progress->size), 0);
}

static void check_read_equal(struct tandem *t, const struct tdm_kept *want, uint64_t lsn)
{
    struct tdm_delivery d = {want, 0};
    struct tandem_diag diag;
    int rv = tandem_read(t, lsn, tdm_delivery_cb, &d, &diag);
    if (rv != 0) {
        fprintf(stderr, "read LSN %" PRIu64 ": %s: %s\n", lsn, tandem_strerror(rv), diag.message);
    }
    assert_int_equal(rv, 0);
    assert_int_equal(d.count, 1);
}

static void check_earlier_records(struct fixture *f, struct tandem *t)
{
    for (uint64_t lsn = 1; lsn <= f->lsn_before; lsn++) {
        check_read_equal(t, &f->kept[lsn], lsn);
    }
}

/* The checks shared by the torn cases: the segment planted (planted_size
 * bytes, cut at offset cut) opens with the last batch cut off into
 * quarantine, and the node carries on. */
static void check_torn(struct fixture *f, const uint8_t *planted, size_t planted_size, uint64_t cut)
{
    uint64_t torn_size = planted_size - f->batch_start;
    struct tandem *t = node_open(f, 0);
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    if (status.lsn_last != f->lsn_before || status.damaged_count != 0) {
        fprintf(stderr, "cut at %" PRIu64 ": lsn_last %" PRIu64 " damaged %u\n", cut,
                status.lsn_last, status.damaged_count);
    }
    assert_int_equal(status.lsn_last, f->lsn_before);
    assert_int_equal(status.damaged_count, 0);
    assert_int_equal(status.failed_code, 0);
    assert_int_equal(status.index_lsn, f->lsn_before);
    assert_int_equal(status.quarantine_count, torn_size > 0 ? 1 : 0);
    assert_int_equal(status.quarantine_bytes, torn_size);

    /* The segment ends where the last batch began, and the torn bytes are kept. */
    uint64_t size = 0;
    assert_int_equal(tdm_fault_fs_file_size(&f->fs, f->segment_path, &size), 0);
    assert_int_equal(size, f->batch_start);
    if (torn_size > 0) {
        char segment_name[TDM_SEGMENT_NAME_SIZE];
        char name[TDM_SEGMENT_NAME_SIZE + 32];
        char path[TDM_PATH_SIZE];
        tdm_segment_name(segment_name, sizeof(segment_name), 1);
        snprintf(name, sizeof(name), "%s.%" PRIu64 ".torn", segment_name, f->batch_start);
        path_join(path, f->quarantine_dir, name);
        struct image torn;
        image_read(f, path, &torn);
        assert_int_equal(torn.size, torn_size);
        assert_memory_equal(torn.data, planted + f->batch_start, torn_size);
        tdm_free(torn.data);
    }

    check_earlier_records(f, t);
    struct tdm_delivery d = {NULL, 0};
    assert_int_equal(tandem_read(t, f->lsn_before + 1, tdm_delivery_cb, &d, NULL),
                     TANDEM_ENOTFOUND);
    assert_int_equal(d.count, 0);

    /* A new append continues the log right after the cut. */
    struct tdm_gen gen;
    tdm_gen_init(&gen, cut + 1, 3);
    struct tandem_record record;
    tdm_gen_message(&gen, &record);
    struct tdm_kept fresh;
    tdm_kept_set(&fresh, &record);
    uint64_t lsn = 0;
    struct tandem_diag diag;
    assert_int_equal(tandem_append(t, &record, 1, &lsn, &diag), 0);
    assert_int_equal(lsn, f->lsn_before + 1);
    tandem_close(t);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);

    /* Reopening finds a clean log: nothing more cut, nothing damaged. */
    t = node_open(f, 0);
    assert_int_equal(tandem_status(t, &status), 0);
    assert_int_equal(status.lsn_last, f->lsn_before + 1);
    assert_int_equal(status.damaged_count, 0);
    assert_int_equal(status.quarantine_count, torn_size > 0 ? 1 : 0);
    assert_int_equal(status.quarantine_bytes, torn_size);
    check_read_equal(t, &fresh, f->lsn_before + 1);
    check_read_equal(t, &f->kept[1], 1);
    check_read_equal(t, &f->kept[f->lsn_before], f->lsn_before);
    tandem_close(t);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
}

/* A crash while the last batch was being written leaves the segment cut at
 * any byte of that batch, and no progress record claims it: at every such
 * offset, open cuts the partial batch into quarantine (byte for byte), serves
 * every earlier record, continues the log at the next LSN and reopens clean. */
static void test_open__torn_tail_every_offset(void **state)
{
    struct fixture *f = *state;
    for (uint64_t cut = f->batch_start; cut < f->segment.size; cut++) {
        plant(f, f->segment.data, (size_t)cut, &f->progress_before);
        check_torn(f, f->segment.data, (size_t)cut, cut);
    }
}

/* Torn sectors: the file kept its full length but the bytes after the cut
 * are random (or zeros, as after an extending write that never landed).
 * Open cuts the whole unverifiable tail, from the last batch's start, into
 * quarantine and carries on, at a sample of cut offsets. */
static void test_open__torn_sectors_garbage(void **state)
{
    struct fixture *f = *state;
    struct tdm_prng prng;
    tdm_prng_init(&prng, SEED + 1);
    size_t size = f->segment.size;
    uint8_t *planted = malloc(size);
    assert_non_null(planted);
    uint64_t span = size - f->batch_start;
    for (int i = 0; i < GARBAGE_SAMPLES; i++) {
        uint64_t cut = f->batch_start + (i < 4 ? (uint64_t)i : tdm_prng_below(&prng, span));
        if (i == GARBAGE_SAMPLES - 1) {
            cut = size - 1;
        }
        memcpy(planted, f->segment.data, (size_t)cut);
        bool zeros = i % 4 == 3;
        for (size_t b = (size_t)cut; b < size; b++) {
            planted[b] = zeros ? 0 : (uint8_t)tdm_prng_next(&prng);
        }
        if (memcmp(planted + cut, f->segment.data + cut, size - cut) == 0) {
            continue; /* The "garbage" equals the real bytes: not torn. */
        }
        plant(f, planted, size, &f->progress_before);
        check_torn(f, planted, size, cut);
    }
    free(planted);
}

/* Once the progress record says the last batch was durable, the same cut is
 * not a torn write but damage: open reports it (one range naming the lost
 * LSNs), modifies no file (the segment, the progress file and quarantine
 * stay byte for byte), refuses appends with TANDEM_EDAMAGED, fails reads of
 * the range and still serves every earlier record. */
static void test_open__durable_tail_cut_is_damage(void **state)
{
    struct fixture *f = *state;
    for (uint64_t cut = f->batch_start; cut < f->segment.size; cut++) {
        plant(f, f->segment.data, (size_t)cut, &f->progress_after);
        uint64_t log_before = tdm_fault_fs_checksum_all(&f->fs, f->log_dir);
        uint64_t quarantine_before = tdm_fault_fs_checksum_all(&f->fs, f->quarantine_dir);
        struct tandem *t = node_open(f, 0);
        assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->log_dir), log_before);

        struct tandem_status status;
        assert_int_equal(tandem_status(t, &status), 0);
        if (status.damaged_count != 1) {
            fprintf(stderr, "cut at %" PRIu64 " (batch at %" PRIu64 "): %u damaged ranges\n", cut,
                    f->batch_start, status.damaged_count);
        }
        assert_int_equal(status.damaged_count, 1);
        assert_int_equal(status.damaged[0].lsn_first, f->lsn_before + 1);
        assert_int_equal(status.damaged[0].lsn_last, f->lsn_full);
        assert_int_equal(status.damaged[0].segment_lsn, 1);
        assert_int_equal(status.damaged[0].offset, f->batch_start);
        assert_false(status.damaged[0].sealed);
        assert_int_equal(status.lsn_last, f->lsn_before);
        assert_int_equal(status.quarantine_count, 0);
        assert_int_equal(status.failed_code, 0);

        struct tdm_gen gen;
        tdm_gen_init(&gen, cut, 3);
        struct tandem_record record;
        tdm_gen_message(&gen, &record);
        uint64_t lsn = 0;
        struct tandem_diag diag = {{0}};
        assert_int_equal(tandem_append(t, &record, 1, &lsn, &diag), TANDEM_EDAMAGED);
        assert_true(strlen(diag.message) > 0);

        check_earlier_records(f, t);
        for (uint64_t l = f->lsn_before + 1; l <= f->lsn_full; l++) {
            struct tdm_delivery d = {&f->kept[l], 0};
            int rv = tandem_read(t, l, tdm_delivery_cb, &d, &diag);
            if (rv != TANDEM_ECORRUPT && rv != TANDEM_EDAMAGED) {
                fprintf(stderr, "cut at %" PRIu64 ": read of damaged LSN %" PRIu64 ": %s\n", cut, l,
                        tandem_strerror(rv));
            }
            assert_true(rv == TANDEM_ECORRUPT || rv == TANDEM_EDAMAGED);
            assert_int_equal(d.count, 0);
        }
        tandem_close(t);
        assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
        assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->log_dir), log_before);
        assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->quarantine_dir), quarantine_before);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open__torn_tail_every_offset),
        cmocka_unit_test(test_open__torn_sectors_garbage),
        cmocka_unit_test(test_open__durable_tail_cut_is_damage),
    };
    return cmocka_run_group_tests_name("torn_tail", tests, group_setup, group_teardown);
}
