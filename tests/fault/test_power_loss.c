/* tests/fault/test_power_loss.c: a power loss at many points never loses an
 * acknowledged record and leaves nothing else corrupt.
 *
 * Method: on the in-memory fault file system, a workload appends records and
 * remembers every LSN tandem_append() acknowledged. At point N (the Nth file
 * operation) the machine "dies": every later operation fails, then
 * tdm_fault_fs_crash() drops (or tears) everything not fdatasync'd, and the
 * node is abandoned without a clean close. The node is reopened on what
 * survived, and must: open without error; report no damage and no failure;
 * hold every acknowledged record, byte for byte, at its LSN; read every LSN it
 * claims; accept a new append after them. N runs over every operation of the
 * workload, single-threaded (deterministic) and with concurrent writers (group
 * commit).
 *
 * This test is the canary for TDM_PLANTED_ACK_BEFORE_FDATASYNC (meson option
 * planted_bug=ack_before_fdatasync): acknowledging before the fdatasync must
 * make it fail, and CI runs that build expecting the failure. */
#include "tdm_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/node.h"
#include "fault_fs.h"
#include "records.h"
#include "tools/gen.h"

#define LSN_MAX 4096
#define APPENDS 48
#define WRITERS 4

struct run {
    struct tdm_fault_fs fs;
    char dir[256];
    pthread_mutex_t mutex;
    struct tdm_kept *acked; /* acked[lsn].size != 0: acknowledged. */
    uint64_t acked_max;
    int failed_appends;
};

static struct tandem *run_open(struct run *r, uint32_t flags, struct tandem_diag *out)
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = flags | TDM_OPEN_PREPARE_INLINE; /* Deterministic file operations. */
    options.segment_size = 8192; /* Seals and new segments inside the workload. */
    struct tandem *t = NULL;
    struct tdm_diag diag = {{0}};
    int rv = tdm_node_open(r->dir, &options, &r->fs.base, &t, &diag);
    if (out != NULL) {
        memcpy(out->message, diag.message, sizeof(out->message));
    }
    return rv == 0 ? t : NULL;
}

static void run_init(struct run *r)
{
    memset(r, 0, sizeof(*r));
    tdm_fault_fs_init(&r->fs);
    assert_int_equal(tdm_test_tmpdir_create(r->dir, sizeof(r->dir)), 0);
    assert_int_equal(tdm_fault_fs_mkdirs(&r->fs, r->dir), 0);
    pthread_mutex_init(&r->mutex, NULL);
    r->acked = calloc(LSN_MAX, sizeof(*r->acked));
    assert_non_null(r->acked);
}

static void run_deinit(struct run *r)
{
    free(r->acked);
    pthread_mutex_destroy(&r->mutex);
    tdm_fault_fs_deinit(&r->fs);
    tdm_test_tmpdir_remove(r->dir);
}

struct writer {
    struct run *run;
    struct tandem *t;
    uint64_t seed;
    int appends;
};

/* Append, remembering exactly what was acknowledged. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct tdm_gen gen;
    tdm_gen_init(&gen, w->seed, 8);
    for (int i = 0; i < w->appends; i++) {
        struct tdm_kept kept[3];
        struct tandem_record records[3];
        uint32_t n = 1 + (uint32_t)((w->seed + (uint64_t)i) % 3);
        tdm_kept_generate(&gen, n, kept, records);
        uint64_t lsn = 0;
        struct tandem_diag diag;
        int rv = tandem_append(w->t, records, n, &lsn, &diag);
        pthread_mutex_lock(&w->run->mutex);
        if (rv == 0) {
            assert_true(lsn + n < LSN_MAX);
            for (uint32_t j = 0; j < n; j++) {
                w->run->acked[lsn + j] = kept[j];
            }
            if (lsn + n - 1 > w->run->acked_max) {
                w->run->acked_max = lsn + n - 1;
            }
        } else {
            /* A failed write is reported with a cause, and stays failed. */
            assert_true(rv < 0);
            assert_true(strlen(diag.message) > 0);
            w->run->failed_appends++;
        }
        pthread_mutex_unlock(&w->run->mutex);
    }
    return NULL;
}

static void run_workload(struct run *r, struct tandem *t, int writers, uint64_t seed)
{
    struct writer w[WRITERS];
    pthread_t threads[WRITERS];
    assert_true(writers <= WRITERS);
    for (int i = 0; i < writers; i++) {
        w[i] = (struct writer){r, t, seed + (uint64_t)i * 7919, APPENDS / writers};
        assert_int_equal(pthread_create(&threads[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < writers; i++) {
        pthread_join(threads[i], NULL);
    }
}

static int ignore_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)data;
    (void)lsn;
    (void)record;
    return 0;
}

/* Reopen what survived and check everything the test promises. */
static void run_check(struct run *r, uint64_t point)
{
    struct tandem_diag diag;
    struct tandem *t = run_open(r, 0, &diag);
    if (t == NULL) {
        fprintf(stderr, "point %llu: reopen failed: %s\n", (unsigned long long)point, diag.message);
        fail();
    }
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    assert_int_equal(status.failed_code, 0);
    assert_int_equal(status.damaged_count, 0);
    if (status.lsn_last < r->acked_max) {
        fprintf(stderr, "point %llu: acknowledged LSN %llu lost (log ends at %llu)\n",
                (unsigned long long)point, (unsigned long long)r->acked_max,
                (unsigned long long)status.lsn_last);
        fail();
    }
    for (uint64_t lsn = 1; lsn <= status.lsn_last; lsn++) {
        if (r->acked[lsn].size > 0) {
            assert_int_equal(tandem_read(t, lsn, tdm_kept_equal_cb, &r->acked[lsn], NULL), 0);
        } else {
            /* Not acknowledged but durable: it must still read cleanly. */
            assert_int_equal(tandem_read(t, lsn, ignore_cb, NULL, NULL), 0);
        }
    }
    struct tdm_gen gen;
    tdm_gen_init(&gen, point, 1);
    struct tandem_record record;
    tdm_gen_message(&gen, &record);
    uint64_t lsn = 0;
    assert_int_equal(tandem_append(t, &record, 1, &lsn, &diag), 0);
    assert_int_equal(lsn, status.lsn_last + 1);
    tandem_close(t);
    assert_int_equal(tdm_fault_fs_open_count(&r->fs), 0);
}

/* One run: power lost after `point` file operations. Returns true if the
 * loss happened inside the workload (false: the workload finished first). */
static bool power_loss_at(uint64_t point, int writers, enum tdm_fault_crash_mode mode)
{
    struct run r;
    run_init(&r);
    struct tandem *t = run_open(&r, TANDEM_OPEN_CREATE, NULL);
    assert_non_null(t);
    uint64_t fired_before = tdm_fault_fs_fired(&r.fs);
    assert_int_equal(tdm_fault_fs_fail_after(&r.fs, 0, point, -EIO, true), 0);
    run_workload(&r, t, writers, point * 31 + (uint64_t)writers);
    bool hit = tdm_fault_fs_fired(&r.fs) > fired_before;
    struct tdm_prng prng;
    tdm_prng_init(&prng, point);
    tdm_fault_fs_crash(&r.fs, mode, &prng);
    tdm_node_abandon(t);
    run_check(&r, point);
    run_deinit(&r);
    return hit;
}

static void power_loss_sweep(int writers, enum tdm_fault_crash_mode mode, uint64_t step)
{
    uint64_t point = 0;
    int runs = 0;
    while (power_loss_at(point, writers, mode)) {
        point += step;
        runs++;
        assert_true(runs < 5000);
    }
    assert_true(runs >= 10); /* The sweep really crossed the workload. */
}

/* Power lost at every operation of a single writer's workload, with every
 * unsynced write dropped. */
static void test_power_loss__single_writer_drop(void **state)
{
    (void)state;
    power_loss_sweep(1, TDM_FAULT_CRASH_DROP, 1);
}

/* The same with unsynced writes torn per 512-byte sector. */
static void test_power_loss__single_writer_torn(void **state)
{
    (void)state;
    power_loss_sweep(1, TDM_FAULT_CRASH_TORN, 1);
}

/* Power lost during group commit with four concurrent writers. */
static void test_power_loss__group_commit_drop(void **state)
{
    (void)state;
    power_loss_sweep(WRITERS, TDM_FAULT_CRASH_DROP, 2);
}

/* Group commit, torn writes. */
static void test_power_loss__group_commit_torn(void **state)
{
    (void)state;
    power_loss_sweep(WRITERS, TDM_FAULT_CRASH_TORN, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_power_loss__single_writer_drop),
        cmocka_unit_test(test_power_loss__single_writer_torn),
        cmocka_unit_test(test_power_loss__group_commit_drop),
        cmocka_unit_test(test_power_loss__group_commit_torn),
    };
    return cmocka_run_group_tests_name("power_loss", tests, NULL, NULL);
}
