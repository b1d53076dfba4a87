/* tests/unit/test_log.c: the log's replication primitives: appending a batch
 * built elsewhere exactly as received (tdm_log_append_batch) and cutting a
 * divergent tail into quarantine (tdm_log_cut_after), including a power loss
 * at every file operation of a cut. */
#include "tdm_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/bytes.h"
#include "engine/codec.h"
#include "engine/log.h"
#include "fault_fs.h"
#include "tools/gen.h"

#define BATCHES 30

struct fixture {
    struct tdm_fault_fs fs;
    char dir_a[256];
    char dir_b[300];
    /* What the primary log A wrote, batch by batch. */
    struct tdm_batch_header headers[BATCHES];
    struct tdm_log_location locations[BATCHES];
};

static void node_dirs(struct fixture *f, const char *dir)
{
    char path[300];
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, dir), 0);
    snprintf(path, sizeof(path), "%s/log", dir);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, path), 0);
    snprintf(path, sizeof(path), "%s/quarantine", dir);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, path), 0);
}

static void log_open(struct fixture *f, struct tdm_log *log, const char *dir)
{
    struct tdm_log_options options = {.segment_size = 4096, .read_only = false};
    struct tdm_diag diag = {{0}};
    int rv = tdm_log_open(log, &f->fs.base, dir, &options, &diag);
    if (rv != 0) {
        fprintf(stderr, "open %s: %s\n", dir, diag.message);
    }
    assert_int_equal(rv, 0);
}

/* Append BATCHES batches of 1-5 generated records to log, recording each. */
static void fill(struct fixture *f, struct tdm_log *log, uint64_t seed)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, seed, 4);
    for (int b = 0; b < BATCHES; b++) {
        uint8_t raw[5 * (TDM_RECORD_SIZE_MAX + 4)];
        size_t size = 0;
        uint32_t count = 1 + (uint32_t)(b % 5);
        for (uint32_t i = 0; i < count; i++) {
            struct tandem_record r;
            tdm_gen_message(&gen, &r);
            size_t n = tdm_codec_encode(&r, raw + size + 4, sizeof(raw) - size - 4);
            struct tdm_writer w;
            tdm_writer_init(&w, raw + size, 4);
            tdm_put_u32(&w, (uint32_t)n);
            size += 4 + n;
        }
        assert_int_equal(
            tdm_log_append(log, raw, size, count, 1, &f->headers[b], &f->locations[b], NULL), 0);
    }
}

/* The on-disk bytes of batch b of log A. */
static uint8_t *batch_bytes(struct fixture *f, int b, size_t *size)
{
    char path[400];
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), f->locations[b].segment_lsn);
    snprintf(path, sizeof(path), "%s/log/%s", f->dir_a, name);
    void *file = NULL;
    size_t file_size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &file, &file_size), 0);
    assert_true(f->locations[b].offset + f->locations[b].size <= file_size);
    uint8_t *out = malloc(f->locations[b].size);
    memcpy(out, (uint8_t *)file + f->locations[b].offset, f->locations[b].size);
    tdm_free(file);
    *size = f->locations[b].size;
    return out;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_test_tmpdir_create(f->dir_a, sizeof(f->dir_a)), 0);
    snprintf(f->dir_b, sizeof(f->dir_b), "%s/b", f->dir_a);
    node_dirs(f, f->dir_a);
    node_dirs(f, f->dir_b);
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    fill(f, &a, 7);
    tdm_log_close(&a);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tdm_fault_fs_deinit(&f->fs);
    tdm_test_tmpdir_remove(f->dir_a);
    free(f);
    return 0;
}

/* A backup that appends the primary's batches byte for byte has the same
 * chain hash at every LSN, sealed segments included, and reopens clean. */
static void test_log_append_batch__replica_matches_primary(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    for (int i = 0; i < BATCHES; i++) {
        size_t size;
        uint8_t *bytes = batch_bytes(f, i, &size);
        struct tdm_batch_header h;
        struct tdm_log_location location;
        assert_int_equal(tdm_log_append_batch(&b, bytes, size, &h, &location, NULL), 0);
        free(bytes);
        assert_int_equal(b.lsn_last, tdm_batch_lsn_last(&f->headers[i]));
        assert_memory_equal(b.chain_last.bytes, f->headers[i].chain_hash.bytes,
                            TDM_CHAIN_HASH_SIZE);
    }
    assert_true(b.segment_count > 2);
    tdm_log_close(&b);
    log_open(f, &b, f->dir_b);
    assert_int_equal(b.damaged_count, 0);
    assert_memory_equal(b.chain_last.bytes, f->headers[BATCHES - 1].chain_hash.bytes,
                        TDM_CHAIN_HASH_SIZE);
    tdm_log_close(&b);
}

/* A gap, a repeat, a flipped bit, a foreign history and an older epoch are
 * each refused with their own code, and nothing is written. */
static void test_log_append_batch__rejects_and_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    size_t size;
    uint8_t *first = batch_bytes(f, 0, &size);
    struct tdm_batch_header h;
    struct tdm_log_location location;
    struct tdm_diag diag;
    assert_int_equal(tdm_log_append_batch(&b, first, size, &h, &location, NULL), 0);
    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_b);

    size_t size2;
    uint8_t *third = batch_bytes(f, 2, &size2);
    assert_int_equal(tdm_log_append_batch(&b, third, size2, &h, &location, &diag),
                     TANDEM_EINVALID); /* A gap. */
    assert_non_null(strstr(diag.message, "ends at"));
    assert_int_equal(tdm_log_append_batch(&b, first, size, &h, &location, &diag),
                     TANDEM_EINVALID); /* A repeat. */
    free(third);

    uint8_t *second = batch_bytes(f, 1, &size2);
    for (size_t bit = 0; bit < size2 * 8; bit += 7) {
        second[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(tdm_log_append_batch(&b, second, size2, &h, &location, NULL),
                         TANDEM_ECORRUPT);
        second[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(tdm_log_append_batch(&b, second, size2 - 1, &h, &location, NULL),
                     TANDEM_ECORRUPT); /* Truncated. */

    b.epoch = 9; /* As if this node had moved to a later epoch. */
    assert_int_equal(tdm_log_append_batch(&b, second, size2, &h, &location, &diag),
                     TANDEM_ESTALEEPOCH);
    b.epoch = 1;
    /* A batch from another history: same LSN, different chain. */
    struct tdm_log c;
    char dir_c[256];
    assert_true(strlen(f->dir_a) + 2 < sizeof(dir_c));
    memcpy(dir_c, f->dir_a, strlen(f->dir_a));
    memcpy(dir_c + strlen(f->dir_a), "/c", 3);
    node_dirs(f, dir_c);
    log_open(f, &c, dir_c);
    struct tdm_fixture_swap {
        struct tdm_batch_header headers[BATCHES];
        struct tdm_log_location locations[BATCHES];
    } *saved = malloc(sizeof(*saved));
    memcpy(saved->headers, f->headers, sizeof(f->headers));
    memcpy(saved->locations, f->locations, sizeof(f->locations));
    fill(f, &c, 99);
    tdm_log_close(&c);
    char dir_a[256];
    memcpy(dir_a, f->dir_a, sizeof(dir_a));
    memcpy(f->dir_a, dir_c, sizeof(dir_c));
    size_t size3;
    uint8_t *foreign = batch_bytes(f, 1, &size3);
    memcpy(f->dir_a, dir_a, sizeof(dir_a));
    memcpy(f->headers, saved->headers, sizeof(f->headers));
    memcpy(f->locations, saved->locations, sizeof(f->locations));
    free(saved);
    assert_int_equal(tdm_log_append_batch(&b, foreign, size3, &h, &location, &diag),
                     TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "chain"));
    free(foreign);

    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_b), before);
    assert_int_equal(tdm_log_append_batch(&b, second, size2, &h, &location, NULL), 0);
    free(first);
    free(second);
    tdm_log_close(&b);
}

/* Cutting after an LSN in an older, sealed segment moves every later byte to
 * quarantine, leaves the log's chain hash at that LSN, reopens clean, and the
 * log grows again from there; a cut inside a batch is refused. */
static void test_log_cut_after__quarantines_tail(void **state)
{
    struct fixture *f = *state;
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    uint64_t inside = f->headers[12].lsn_first + 1;
    struct tdm_diag diag;
    if (f->headers[12].record_count > 1) {
        assert_int_equal(tdm_log_cut_after(&a, inside, &diag), TANDEM_EINVALID);
        assert_non_null(strstr(diag.message, "inside"));
    }
    uint64_t lsn = tdm_batch_lsn_last(&f->headers[9]);
    uint32_t segments_before = a.segment_count;
    assert_int_equal(tdm_log_cut_after(&a, lsn, &diag), 0);
    assert_int_equal(a.lsn_last, lsn);
    assert_memory_equal(a.chain_last.bytes, f->headers[9].chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
    assert_true(a.segment_count < segments_before);
    assert_true(a.quarantine_count >= 1);
    tdm_log_close(&a);
    log_open(f, &a, f->dir_a);
    assert_int_equal(a.damaged_count, 0);
    assert_int_equal(a.lsn_last, lsn);
    assert_true(a.quarantine_count >= 1);
    assert_true(a.quarantine_bytes > 0);
    fill(f, &a, 8); /* The log grows again after the cut. */
    tdm_log_close(&a);
    log_open(f, &a, f->dir_a);
    assert_int_equal(a.damaged_count, 0);
    assert_int_equal(a.lsn_last, tdm_batch_lsn_last(&f->headers[BATCHES - 1]));
    tdm_log_close(&a);
}

/* A power loss at any file operation of a cut leaves a log that opens without
 * damage and holds a prefix of the original history no shorter than the cut. */
static void test_log_cut_after__power_loss_at_every_step(void **state)
{
    struct fixture *f = *state;
    uint64_t lsn = tdm_batch_lsn_last(&f->headers[6]);
    uint64_t original = tdm_batch_lsn_last(&f->headers[BATCHES - 1]);
    int runs = 0;
    for (uint64_t n = 0;; n++) {
        struct tdm_fault_fs *fs = &f->fs;
        struct tdm_log a;
        log_open(f, &a, f->dir_a);
        uint64_t fired = tdm_fault_fs_fired(fs);
        assert_int_equal(tdm_fault_fs_fail_after(fs, 0, n, -EIO, true), 0);
        int rv = tdm_log_cut_after(&a, lsn, NULL);
        bool hit = tdm_fault_fs_fired(fs) > fired;
        tdm_fault_fs_crash(fs, TDM_FAULT_CRASH_DROP, NULL);
        a.tail_fd = -1;
        a.progress_fd = -1;
        tdm_log_close(&a);
        log_open(f, &a, f->dir_a);
        assert_int_equal(a.damaged_count, 0);
        assert_true(a.lsn_last >= lsn);
        assert_true(a.lsn_last <= original);
        bool prefix = false;
        for (int b = 0; b < BATCHES; b++) {
            if (tdm_batch_lsn_last(&f->headers[b]) == a.lsn_last) {
                prefix = memcmp(a.chain_last.bytes, f->headers[b].chain_hash.bytes,
                                TDM_CHAIN_HASH_SIZE) == 0;
            }
        }
        assert_true(prefix);
        if (!hit) {
            assert_int_equal(rv, 0);
            assert_int_equal(a.lsn_last, lsn);
            tdm_log_close(&a);
            break;
        }
        /* Put the original back for the next run: append the cut batches. */
        tdm_log_close(&a);
        tdm_fault_fs_deinit(fs);
        tdm_fault_fs_init(fs);
        node_dirs(f, f->dir_a);
        log_open(f, &a, f->dir_a);
        fill(f, &a, 7);
        tdm_log_close(&a);
        runs++;
    }
    assert_true(runs >= 5); /* The sweep crossed the cut's operations. */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_append_batch__replica_matches_primary, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_append_batch__rejects_and_writes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_cut_after__quarantines_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_cut_after__power_loss_at_every_step, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
