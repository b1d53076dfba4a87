/* tests/fault/test_io_errors.c: every file operation failing in turn, with EIO
 * and with ENOSPC, once or for good, during open (recovery), append, segment
 * creation and seal, ends either in success or in a clean error, and the store
 * reopens intact with every acknowledged record.
 *
 * Method (SQLite's I/O-error loop): a node holds a base of records; then for
 * N = 0, 1, 2, ... the Nth file operation after arming fails while the node is
 * opened and a workload appends. Every failure must come back as a negative
 * code with a message; after the first failed write or fdatasync every later
 * append must fail with TANDEM_EFAILED (the node never retries and carries
 * on); a failed open changes nothing that a second open cannot recover. Then
 * the faults are cleared and the store reopens: no failure, no damage, every
 * acknowledged record byte for byte. The loop ends at the first N that the run
 * never reached. */
#include "tdm_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/node.h"
#include "fault_fs.h"
#include "records.h"
#include "tools/gen.h"

#define LSN_MAX 2048

struct fixture {
    struct tdm_fault_fs fs;
    char dir[256];
    struct tdm_kept *acked;
    uint64_t acked_max;
};

static struct tandem *node_open(struct fixture *f, uint32_t flags, int *rv_out,
                                struct tdm_diag *diag)
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = flags | TDM_OPEN_PREPARE_INLINE; /* Deterministic file operations. */
    options.segment_size = 4096;
    struct tandem *t = NULL;
    int rv = tdm_node_open(f->dir, &options, &f->fs.base, &t, diag);
    if (rv_out != NULL) {
        *rv_out = rv;
    }
    return rv == 0 ? t : NULL;
}

/* Append count calls of 1-3 records; record what was acknowledged. Returns
 * the number of failed calls; checks that failures are sticky. */
static int append_some(struct fixture *f, struct tandem *t, uint64_t seed, int count)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, seed, 4);
    int failed = 0;
    for (int i = 0; i < count; i++) {
        struct tdm_kept kept[3];
        struct tandem_record records[3];
        uint32_t n = 1 + (uint32_t)(i % 3);
        tdm_kept_generate(&gen, n, kept, records);
        uint64_t lsn = 0;
        struct tandem_diag diag = {{0}};
        int rv = tandem_append(t, records, n, &lsn, &diag);
        if (rv == 0) {
            assert_int_equal(failed, 0); /* Never a success after a failure. */
            assert_true(lsn + n < LSN_MAX);
            for (uint32_t j = 0; j < n; j++) {
                f->acked[lsn + j] = kept[j];
            }
            f->acked_max = lsn + n - 1;
        } else {
            assert_true(rv < 0);
            assert_true(strlen(diag.message) > 0);
            if (failed > 0) {
                assert_int_equal(rv, TANDEM_EFAILED);
            }
            failed++;
        }
    }
    return failed;
}

static void check_intact(struct fixture *f, const char *what, uint64_t n)
{
    struct tdm_diag diag = {{0}};
    int rv;
    struct tandem *t = node_open(f, 0, &rv, &diag);
    if (t == NULL) {
        fprintf(stderr, "%s %llu: reopen failed: %s\n", what, (unsigned long long)n, diag.message);
        fail();
    }
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    assert_int_equal(status.failed_code, 0);
    assert_int_equal(status.damaged_count, 0);
    assert_true(status.lsn_last >= f->acked_max);
    for (uint64_t lsn = 1; lsn <= f->acked_max; lsn++) {
        if (f->acked[lsn].size > 0) {
            assert_int_equal(tandem_read(t, lsn, tdm_kept_equal_cb, &f->acked[lsn], NULL), 0);
        }
    }
    tandem_close(t);
    if (tdm_fault_fs_open_count(&f->fs) != 0) {
        fprintf(stderr, "%s %llu: %zu descriptors left open\n", what, (unsigned long long)n,
                tdm_fault_fs_open_count(&f->fs));
        fail();
    }
}

/* One run: the (n+1)th operation after arming fails with error. Returns true
 * if the fault fired. */
static bool io_error_at(uint64_t n, int error, bool persistent, bool torn)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->acked = calloc(LSN_MAX, sizeof(*f->acked));
    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, f->dir), 0);
    struct tdm_diag diag = {{0}};
    struct tandem *t = node_open(f, TANDEM_OPEN_CREATE, NULL, &diag);
    assert_non_null(t);
    assert_int_equal(append_some(f, t, 1, 12), 0);
    tandem_close(t);

    tdm_fault_fs_seed(&f->fs, n);
    tdm_fault_fs_set_pwrite_torn(&f->fs, torn);
    uint64_t fired_before = tdm_fault_fs_fired(&f->fs);
    assert_int_equal(tdm_fault_fs_fail_after(&f->fs, 0, n, error, persistent), 0);
    int rv = 0;
    t = node_open(f, 0, &rv, &diag);
    if (t == NULL) {
        assert_true(rv < 0);
        if (strlen(diag.message) == 0) {
            fprintf(stderr, "fault at %llu: open failed with %s and no message\n",
                    (unsigned long long)n, tandem_strerror(rv));
            fail();
        }
    } else {
        (void)append_some(f, t, n + 2, 24);
        tandem_close(t);
    }
    bool fired = tdm_fault_fs_fired(&f->fs) > fired_before;
    tdm_fault_fs_clear(&f->fs);
    check_intact(f, error == -EIO ? "EIO at" : "ENOSPC at", n);
    tdm_fault_fs_deinit(&f->fs);
    tdm_test_tmpdir_remove(f->dir);
    free(f->acked);
    free(f);
    return fired;
}

static void io_error_sweep(int error, bool persistent, bool torn)
{
    uint64_t n = 0;
    while (io_error_at(n, error, persistent, torn)) {
        n++;
        assert_true(n < 5000);
    }
    assert_true(n > 50); /* The sweep crossed open, appends, creations and seals. */
}

/* EIO once, at every operation in turn. */
static void test_io_error__eio_once(void **state)
{
    (void)state;
    io_error_sweep(-EIO, false, false);
}

/* EIO for good from every operation on (a dead disk). */
static void test_io_error__eio_persistent(void **state)
{
    (void)state;
    io_error_sweep(-EIO, true, false);
}

/* ENOSPC once, with a failed write leaving a random prefix behind. */
static void test_io_error__enospc_torn(void **state)
{
    (void)state;
    io_error_sweep(-ENOSPC, false, true);
}

/* ENOSPC for good (a full disk). */
static void test_io_error__enospc_persistent(void **state)
{
    (void)state;
    io_error_sweep(-ENOSPC, true, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_error__eio_once),
        cmocka_unit_test(test_io_error__eio_persistent),
        cmocka_unit_test(test_io_error__enospc_torn),
        cmocka_unit_test(test_io_error__enospc_persistent),
    };
    return cmocka_run_group_tests_name("io_errors", tests, NULL, NULL);
}
