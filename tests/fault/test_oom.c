/* tests/fault/test_oom.c: the Nth allocation of the library failing, for every N
 * reached while a node opens (recovery, index catch-up) and appends, ends in
 * success or a clean error, never a crash or a leak, and the store reopens
 * intact with every acknowledged record (RELIABILITY S4 (g); SQLite's OOM loop).
 *
 * Method: a heap installed with tdm_test_heap_libc_install() counts the library's
 * allocations and fails number N; the file system is the in-memory fault fs,
 * whose own memory does not come from that heap. The loop ends at the first N
 * that the run never reached. */
#include "tdm_test.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/node.h"
#include "fault_fs.h"
#include "heap.h"
#include "records.h"
#include "tools/gen.h"

#define LSN_MAX 512

/* Fails the allocation numbered fail_at (0-based) after arming. The
 * engine's threads allocate too: the counters are atomic. */
struct oom_heap {
    atomic_long count;
    long fail_at; /* -1: never. Set while no engine thread runs. */
    atomic_long failed;
};

static struct oom_heap oom;

static bool oom_fail(void)
{
    bool fail = oom.fail_at >= 0 && atomic_fetch_add(&oom.count, 1) == oom.fail_at;
    if (fail) {
        atomic_fetch_add(&oom.failed, 1);
    }
    return fail;
}

struct fixture {
    struct tdm_fault_fs fs;
    char dir[256];
    struct tdm_kept acked[LSN_MAX];
    uint64_t acked_max;
};

static struct tandem *node_open(struct fixture *f, uint32_t flags, int *rv, struct tdm_diag *diag)
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = flags | TDM_OPEN_PREPARE_INLINE; /* Deterministic file operations. */
    options.segment_size = 4096;
    struct tandem *t = NULL;
    *rv = tdm_node_open(f->dir, &options, &f->fs.base, &t, diag);
    return *rv == 0 ? t : NULL;
}

/* Append 1-3 records per call; a failure is a clean error with a message. */
static void append_some(struct fixture *f, struct tandem *t, uint64_t seed, int calls)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, seed, 3);
    for (int i = 0; i < calls; i++) {
        struct tdm_kept kept[3];
        struct tandem_record records[3];
        uint32_t n = 1 + (uint32_t)(i % 3);
        tdm_kept_generate(&gen, n, kept, records);
        uint64_t lsn = 0;
        struct tandem_diag diag = {{0}};
        int rv = tandem_append(t, records, n, &lsn, &diag);
        if (rv != 0) {
            assert_true(rv < 0);
            if (strlen(diag.message) == 0) {
                fprintf(stderr, "append failed (%s) without a message\n", tandem_strerror(rv));
                fail();
            }
            continue;
        }
        assert_true(lsn + n < LSN_MAX);
        for (uint32_t j = 0; j < n; j++) {
            f->acked[lsn + j] = kept[j];
        }
        f->acked_max = lsn + n - 1;
    }
}

/* One run with allocation number n failing; true if it was reached. */
static bool oom_at(long n)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, f->dir), 0);
    int rv;
    struct tdm_diag diag = {{0}};
    struct tandem *t = node_open(f, TANDEM_OPEN_CREATE, &rv, &diag);
    assert_non_null(t);
    append_some(f, t, 1, 9);
    tandem_close(t);

    atomic_store(&oom.count, 0);
    atomic_store(&oom.failed, 0);
    oom.fail_at = n;
    tdm_test_heap_libc_install(oom_fail);
    t = node_open(f, 0, &rv, &diag);
    if (t == NULL) {
        assert_true(rv < 0);
        if (strlen(diag.message) == 0) {
            fprintf(stderr, "allocation %ld: open failed (%s) without a message\n", n,
                    tandem_strerror(rv));
            fail();
        }
    } else {
        append_some(f, t, 2, 12);
        tandem_close(t);
    }
    tdm_test_heap_uninstall();
    bool reached = atomic_load(&oom.failed) > 0;

    t = node_open(f, 0, &rv, &diag);
    if (t == NULL) {
        fprintf(stderr, "allocation %ld: reopen failed: %s\n", n, diag.message);
        fail();
    }
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    assert_int_equal(status.damaged_count, 0);
    assert_int_equal(status.failed_code, 0);
    for (uint64_t lsn = 1; lsn <= f->acked_max; lsn++) {
        if (f->acked[lsn].size > 0) {
            assert_int_equal(tandem_read(t, lsn, tdm_kept_equal_cb, &f->acked[lsn], NULL), 0);
        }
    }
    tandem_close(t);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
    tdm_fault_fs_deinit(&f->fs);
    tdm_test_tmpdir_remove(f->dir);
    free(f);
    return reached;
}

/* Every allocation of open, catch-up and append failing in turn. */
static void test_oom__every_allocation(void **state)
{
    (void)state;
    long n = 0;
    while (oom_at(n)) {
        n++;
        assert_true(n < 100000);
    }
    assert_true(n > 20); /* The loop really crossed the library's allocations. */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom__every_allocation),
    };
    return cmocka_run_group_tests_name("oom", tests, NULL, NULL);
}
