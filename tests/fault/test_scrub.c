/* tests/fault/test_scrub.c: the scrubber (engine/scrub.c) and tandem_verify():
 * bit rot that appears after open is found by a pass and named exactly as
 * recovery names it; every segment is re-read from the medium (the pass asks
 * the file system to drop its cached pages); the throttle sleeps as long as
 * bytes / rate says; a cancel stops a pass; tandem_verify --deep finds an index
 * that differs from a rebuild and rebuilds it.
 *
 * Method: on the in-memory fault file system, a node with 8 KiB segments
 * appends generated records (many sealed segments and one open) and closes.
 * The test parses the segment files itself to know where every batch lies.
 * Time in the scrubber comes from a fake clock whose sleep advances it and
 * counts the call: no test waits or measures wall time. The index (LMDB) lives
 * in a real temporary directory; a test plants a stale entry in it with LMDB
 * directly. Built with -Dplanted_bug=scrub_via_page_cache, the pass skips the
 * request to drop cached pages and test_scrub_pass__reads_the_medium fails
 * (tests/meson.build registers that run as planted.scrub, should_fail). */
#include "tdm_test.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "engine/base/alloc.h"
#include "engine/base/prng.h"
#include "engine/batch.h"
#include "engine/node.h"
#include "engine/scrub.h"
#include "engine/segment.h"
#include "fault_fs.h"
#include "records.h"
#include "tmpdir.h"
#include "tools/gen.h"

#define SEGMENT_SIZE       8192
#define RECORD_COUNT       1500
#define RECORD_COUNT_SMALL 300 /* For the fault loop: a few segments, fewer calls. */
#define CUSTOMERS          9
#define SEGMENTS_MAX       512
#define BATCHES_MAX        256
#define SEED               777
#define RATE               (1000u * 1000u) /* Bytes per second for the throttle test. */

struct batch_info {
    uint64_t offset; /* Of the batch header. */
    uint64_t size;   /* Header plus body. */
    uint64_t lsn_first;
    uint64_t lsn_last;
};

struct segment_info {
    uint64_t lsn_first;
    char path[TDM_PATH_SIZE];
    uint64_t size;
    uint32_t batch_count;
    struct batch_info batches[BATCHES_MAX];
};

/* A fake clock: sleeping advances it. */
struct fake_clock {
    int64_t now_ns;
    uint64_t sleep_count;
    uint64_t slept_ns;
    bool cancel_at_sleep;    /* Cancel scrub at the first sleep. */
    struct tdm_scrub *scrub; /* The pass under way. */
};

struct fixture {
    struct tdm_fault_fs fs;
    char dir[256]; /* Real temporary directory: the index lives there. */
    char log_dir[TDM_PATH_SIZE];
    uint64_t lsn_last;
    struct segment_info *segments;
    uint32_t segment_count;
    struct fake_clock clock;
};

static int64_t fake_now_ns(void *data)
{
    struct fake_clock *c = data;
    return c->now_ns;
}

static void fake_sleep_ns(void *data, uint64_t ns)
{
    struct fake_clock *c = data;
    assert_true(ns > 0);
    assert_true(ns <= TDM_SCRUB_SLEEP_NS_MAX);
    c->now_ns += (int64_t)ns;
    c->sleep_count++;
    c->slept_ns += ns;
    if (c->cancel_at_sleep) {
        tdm_scrub_cancel(c->scrub);
    }
}

static void scrub_options_fake(struct fixture *f, struct tdm_scrub_options *options, uint64_t rate)
{
    tdm_scrub_options_init(options);
    options->rate_bytes_per_second = rate;
    options->clock.now_ns = fake_now_ns;
    options->clock.wall_ns = fake_now_ns;
    options->clock.sleep_ns = fake_sleep_ns;
    options->clock.data = &f->clock;
}

static struct tandem *node_open(struct fixture *f, uint32_t flags)
{
    return tdm_test_node_open(&f->fs.base, f->dir, flags, SEGMENT_SIZE);
}

static void fill(struct fixture *f, struct tandem *t, uint64_t record_count)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, SEED, CUSTOMERS);
    struct tdm_prng prng;
    tdm_prng_init(&prng, SEED);
    uint64_t next = 1;
    while (next <= record_count) {
        struct tandem_record records[4];
        uint32_t count = 1 + (uint32_t)tdm_prng_below(&prng, 4);
        for (uint32_t i = 0; i < count; i++) {
            uint64_t lsn = next + i;
            if (lsn <= CUSTOMERS) {
                tdm_gen_customer(&gen, (uint32_t)lsn, &records[i]);
            } else {
                tdm_gen_message(&gen, &records[i]);
            }
        }
        uint64_t lsn = 0;
        assert_int_equal(tandem_append(t, records, count, &lsn, NULL), 0);
        assert_int_equal(lsn, next);
        next += count;
    }
    f->lsn_last = next - 1;
}

static int segment_names_cb(void *data, const char *name)
{
    struct fixture *f = data;
    uint64_t lsn;
    if (tdm_segment_name_parse(name, &lsn)) {
        assert_true(f->segment_count < SEGMENTS_MAX);
        struct segment_info *s = &f->segments[f->segment_count++];
        s->lsn_first = lsn;
        assert_int_equal(tdm_fs_path(s->path, sizeof(s->path), f->log_dir, name), 0);
    }
    return 0;
}

static int segment_compare(const void *a, const void *b)
{
    const struct segment_info *x = a;
    const struct segment_info *y = b;
    return x->lsn_first < y->lsn_first ? -1 : (x->lsn_first > y->lsn_first ? 1 : 0);
}

/* Parse the batches of one segment file (the footer, if sealed, is skipped). */
static void segment_parse(struct fixture *f, struct segment_info *s, bool sealed)
{
    void *data = NULL;
    size_t size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, s->path, &data, &size), 0);
    const uint8_t *bytes = data;
    s->size = size;
    uint64_t end = sealed ? size - TDM_SEGMENT_FOOTER_SIZE : size;
    uint64_t offset = TDM_SEGMENT_HEADER_SIZE;
    while (offset < end && !tdm_test_zero_rest(bytes, offset, end)) {
        struct tdm_batch_header h;
        assert_int_equal(tdm_batch_header_decode(bytes + offset, TDM_BATCH_HEADER_SIZE, &h, NULL),
                         0);
        assert_true(s->batch_count < BATCHES_MAX);
        s->batches[s->batch_count++] = (struct batch_info){
            offset, TDM_BATCH_HEADER_SIZE + h.body_size, h.lsn_first, tdm_batch_lsn_last(&h)};
        offset += TDM_BATCH_HEADER_SIZE + h.body_size;
    }
    assert_true(offset == end || tdm_test_zero_rest(bytes, offset, end));
    if (!sealed) {
        s->size = offset; /* A prepared segment's zeros are not its bytes. */
    }
    tdm_free(data);
}

static int setup_records(void **state, uint64_t record_count)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->segments = calloc(SEGMENTS_MAX, sizeof(*f->segments));
    assert_non_null(f->segments);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    assert_int_equal(tdm_fs_path(f->log_dir, sizeof(f->log_dir), f->dir, "log"), 0);
    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, f->dir), 0);
    struct tandem *t = node_open(f, TANDEM_OPEN_CREATE);
    fill(f, t, record_count);
    tandem_close(t);
    assert_int_equal(f->fs.base.list(&f->fs.base, f->log_dir, segment_names_cb, f), 0);
    qsort(f->segments, f->segment_count, sizeof(*f->segments), segment_compare);
    assert_true(f->segment_count >= 4); /* Several sealed segments and the open one. */
    for (uint32_t i = 0; i < f->segment_count; i++) {
        segment_parse(f, &f->segments[i], i + 1 < f->segment_count);
    }
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_records(state, RECORD_COUNT);
}

static int setup_small(void **state)
{
    return setup_records(state, RECORD_COUNT_SMALL);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0); /* Every descriptor closed. */
    tdm_fault_fs_deinit(&f->fs);
    tdm_test_tmpdir_remove(f->dir);
    free(f->segments);
    free(f);
    return 0;
}

/* Run one pass over the fixture's directory; returns its code. */
static int scrub_run(struct fixture *f, uint64_t rate, struct tdm_scrub_report *report,
                     struct tdm_scrub_progress *progress)
{
    struct tdm_scrub *scrub = calloc(1, sizeof(*scrub));
    assert_non_null(scrub);
    struct tdm_scrub_options options;
    scrub_options_fake(f, &options, rate);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_scrub_open(scrub, &f->fs.base, f->dir, &options, &diag), 0);
    f->clock.scrub = scrub;
    int rv = tdm_scrub_pass(scrub, report, &diag);
    if (progress != NULL) {
        tdm_scrub_progress(scrub, progress);
    }
    tdm_scrub_close(scrub);
    free(scrub);
    return rv;
}

/* ---- tests ---------------------------------------------------------------------- */

/* A pass over an intact store finds nothing and covers every segment and byte. */
static void test_scrub_pass__intact(void **state)
{
    struct fixture *f = *state;
    struct tdm_scrub_report report;
    struct tdm_scrub_progress progress;
    f->clock.now_ns = 1000;
    assert_int_equal(scrub_run(f, 0, &report, &progress), 0);
    assert_int_equal(report.damaged_count, 0);
    assert_int_equal(report.segment_count, f->segment_count);
    assert_int_equal(report.sealed_count, f->segment_count - 1);
    assert_int_equal(report.lsn_first, 1);
    assert_int_equal(report.lsn_last, f->lsn_last);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < f->segment_count; i++) {
        bytes += f->segments[i].size;
    }
    assert_int_equal(report.segment_bytes, bytes);
    assert_true(report.read_bytes >= bytes); /* Every byte of every segment was read. */
    assert_int_equal(report.sleep_count, 0); /* Unthrottled. */
    assert_int_equal(progress.pass_count, 1);
    assert_false(progress.running);
    assert_int_equal(progress.last_pass_bytes, report.read_bytes);
    assert_int_equal(progress.pass_start_ns, 1000);
    assert_int_equal(progress.last_pass_end_ns, 1000);
}

/* Bit rot that appears in a sealed segment after the node opened (recovery
 * saw a clean log) is found by a pass and named as recovery names it: the
 * segment, the batch's offset, and exactly that batch's LSN range. */
static void test_scrub_pass__finds_flip_after_open(void **state)
{
    struct fixture *f = *state;
    struct tandem *t = node_open(f, 0);
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    assert_int_equal(status.damaged_count, 0);
    const struct segment_info *s = &f->segments[1];
    const struct batch_info *b = &s->batches[s->batch_count / 2];
    uint64_t offset = b->offset + TDM_BATCH_HEADER_SIZE + (b->size - TDM_BATCH_HEADER_SIZE) / 2;
    assert_int_equal(tdm_fault_fs_flip(&f->fs, s->path, offset, 3), 0);

    struct tdm_scrub_report report;
    assert_int_equal(scrub_run(f, 0, &report, NULL), 0);
    assert_int_equal(report.damaged_count, 1);
    const struct tandem_damage *d = &report.damaged[0];
    assert_int_equal(d->segment_lsn, s->lsn_first);
    assert_int_equal(d->offset, b->offset);
    assert_int_equal(d->lsn_first, b->lsn_first);
    assert_int_equal(d->lsn_last, b->lsn_last);
    assert_true(d->sealed);
    tandem_close(t);

    /* Recovery on the next open reports the very same record. */
    t = node_open(f, TANDEM_OPEN_READONLY);
    assert_int_equal(tandem_status(t, &status), 0);
    tandem_close(t);
    t = node_open(f, 0);
    assert_int_equal(tandem_status(t, &status), 0);
    tandem_close(t);
    assert_int_equal(status.damaged_count, 1);
    assert_int_equal(status.damaged[0].segment_lsn, d->segment_lsn);
    assert_int_equal(status.damaged[0].offset, d->offset);
    assert_int_equal(status.damaged[0].lsn_first, d->lsn_first);
    assert_int_equal(status.damaged[0].lsn_last, d->lsn_last);
    assert_int_equal(status.damaged[0].sealed, d->sealed);
}

/* A flip in a sealed segment's footer (the data still verifies) is found too. */
static void test_scrub_pass__finds_footer_flip(void **state)
{
    struct fixture *f = *state;
    const struct segment_info *s = &f->segments[0];
    assert_int_equal(tdm_fault_fs_flip(&f->fs, s->path, s->size - 20, 1), 0);
    struct tdm_scrub_report report;
    assert_int_equal(scrub_run(f, 0, &report, NULL), 0);
    assert_true(report.damaged_count >= 1);
    assert_int_equal(report.damaged[0].segment_lsn, s->lsn_first);
    assert_true(report.damaged[0].sealed);
}

/* Every segment a pass reads is first dropped from the page cache: the pass
 * asks the file system for it at least once per segment (the planted bug
 * scrub_via_page_cache fails here). */
static void test_scrub_pass__reads_the_medium(void **state)
{
    struct fixture *f = *state;
    uint64_t before = tdm_fault_fs_count(&f->fs, TDM_FS_OP_ADVISE);
    struct tdm_scrub_report report;
    assert_int_equal(scrub_run(f, 0, &report, NULL), 0);
    uint64_t advised = tdm_fault_fs_count(&f->fs, TDM_FS_OP_ADVISE) - before;
    assert_true(report.segment_count > 0);
    if (advised < report.segment_count) {
        fprintf(stderr, "scrub asked to drop cached pages %" PRIu64 " times for %u segments\n",
                advised, report.segment_count);
    }
    assert_true(advised >= report.segment_count);
}

/* A failed request to drop cached pages fails the pass with its error: the
 * pass never claims to have read the medium when it may not have. */
static void test_scrub_pass__advise_fails(void **state)
{
    struct fixture *f = *state;
    if (TDM_PLANTED_SCRUB_VIA_PAGE_CACHE) {
        skip(); /* The planted bug never asks. */
    }
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_ADVISE, -EIO), 0);
    struct tdm_scrub_report report;
    struct tdm_scrub_progress progress;
    assert_int_equal(scrub_run(f, 0, &report, &progress), -EIO);
    assert_int_equal(progress.pass_count, 0);
    assert_false(progress.running);
}

/* The throttle holds a pass to its rate: with a fake clock that only sleeping
 * advances, the pass sleeps exactly bytes read / rate in total (in slices of
 * at most TDM_SCRUB_SLEEP_NS_MAX), and reports what it slept. */
static void test_scrub_pass__throttled(void **state)
{
    struct fixture *f = *state;
    struct tdm_scrub_report report;
    assert_int_equal(scrub_run(f, RATE, &report, NULL), 0);
    assert_int_equal(report.damaged_count, 0);
    uint64_t want_ns = report.read_bytes * 1000u; /* 1e9 ns/s over 1e6 B/s. */
    assert_true(want_ns > TDM_SCRUB_SLEEP_NS_MAX);
    assert_int_equal(report.sleep_ns, want_ns);
    assert_int_equal(f->clock.slept_ns, want_ns);
    assert_int_equal(report.sleep_count, f->clock.sleep_count);
    assert_true(f->clock.sleep_count >= want_ns / TDM_SCRUB_SLEEP_NS_MAX);
}

/* A cancel stops a pass at its next sleep with TANDEM_ECANCELED; progress
 * keeps no complete pass, and every descriptor is closed (teardown). */
static void test_scrub_pass__cancel(void **state)
{
    struct fixture *f = *state;
    f->clock.cancel_at_sleep = true;
    struct tdm_scrub_report report;
    struct tdm_scrub_progress progress;
    assert_int_equal(scrub_run(f, RATE, &report, &progress), TANDEM_ECANCELED);
    assert_int_equal(f->clock.sleep_count, 1);
    assert_int_equal(progress.pass_count, 0);
    assert_true(progress.pass_bytes > 0);
}

/* tandem_verify over an intact store: every segment checked, index equal. */
static void test_verify__intact_deep(void **state)
{
    struct fixture *f = *state;
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    int rv = tdm_node_verify(f->dir, TANDEM_VERIFY_DEEP, &f->fs.base, NULL, &report, &diag);
    if (rv != 0) {
        fprintf(stderr, "verify: %s: %s\n", tandem_strerror(rv), diag.message);
    }
    assert_int_equal(rv, 0);
    assert_int_equal(report.damaged_count, 0);
    assert_int_equal(report.segment_count, f->segment_count);
    assert_int_equal(report.lsn_last, f->lsn_last);
    assert_true(report.index_checked);
    assert_true(report.index_equal);
    assert_false(report.index_rebuilt);
    assert_false(tdm_test_file_exists(f->dir, "index.verify")); /* Scratch removed. */
}

/* Plant one entry the log does not imply in the message_id database, leaving
 * the watermark as it is (so an open would trust the index). */
static void index_plant_stale_entry(struct fixture *f)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/index", f->dir);
    MDB_env *env = NULL;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOTLS, 0600), 0);
    MDB_txn *txn = NULL;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(txn, "message_id", MDB_DUPSORT, &dbi), 0);
    char key[] = "<planted@stale.example>";
    uint8_t lsn[8] = {0, 0, 0, 0, 0, 0, 0, 7};
    MDB_val k = {sizeof(key) - 1, (void *)key};
    MDB_val v = {sizeof(lsn), lsn};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* tandem_verify --deep finds an index that differs from a rebuild although
 * its watermark agrees with the log, names the database, rebuilds the index,
 * and a second verify finds it equal. */
static void test_verify__deep_rebuilds_stale_index(void **state)
{
    struct fixture *f = *state;
    index_plant_stale_entry(f);
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_node_verify(f->dir, TANDEM_VERIFY_DEEP, &f->fs.base, NULL, &report, &diag),
                     0);
    assert_int_equal(report.damaged_count, 0);
    assert_true(report.index_checked);
    assert_false(report.index_equal);
    assert_true(report.index_rebuilt);
    assert_non_null(strstr(report.index_difference, "message_id"));
    assert_false(tdm_test_file_exists(f->dir, "index.verify"));

    assert_int_equal(tdm_node_verify(f->dir, TANDEM_VERIFY_DEEP, &f->fs.base, NULL, &report, &diag),
                     0);
    assert_true(report.index_equal);
    assert_false(report.index_rebuilt);
}

/* Without --deep the index is not looked at; with damage in the log the deep
 * comparison is skipped (a rebuild would drop the damaged records' entries). */
static void test_verify__damage_skips_index(void **state)
{
    struct fixture *f = *state;
    struct tandem_verify_report report;
    assert_int_equal(tdm_node_verify(f->dir, 0, &f->fs.base, NULL, &report, NULL), 0);
    assert_false(report.index_checked);
    const struct segment_info *s = &f->segments[2];
    const struct batch_info *b = &s->batches[0];
    assert_int_equal(tdm_fault_fs_flip(&f->fs, s->path, b->offset + TDM_BATCH_HEADER_SIZE, 0), 0);
    uint64_t log_hash = tdm_fault_fs_checksum_all(&f->fs, f->log_dir);
    assert_int_equal(tdm_node_verify(f->dir, TANDEM_VERIFY_DEEP, &f->fs.base, NULL, &report, NULL),
                     0);
    assert_int_equal(report.damaged_count, 1);
    assert_int_equal(report.damaged[0].lsn_first, b->lsn_first);
    assert_int_equal(report.damaged[0].lsn_last, b->lsn_last);
    assert_false(report.index_checked);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->log_dir), log_hash); /* No change. */
}

/* A verify while a writer holds the directory is refused with TANDEM_ELOCKED. */
static void test_verify__locked(void **state)
{
    struct fixture *f = *state;
    struct tandem *t = node_open(f, 0);
    struct tandem_verify_report report;
    assert_int_equal(tdm_node_verify(f->dir, 0, &f->fs.base, NULL, &report, NULL), TANDEM_ELOCKED);
    assert_int_equal(tdm_node_verify(f->dir, 0x80, &f->fs.base, NULL, &report, NULL),
                     TANDEM_EINVALID);
    tandem_close(t);
}

/* An I/O error at any file-system call of a deep verify (the 1st, 2nd, ...
 * until a run completes with no fault fired) fails it cleanly (an error code
 * with a diag) or, where the call was best effort, leaves the result true (no
 * damage invented); every descriptor is closed, no scratch index is left
 * behind, and a verify after it finds the store intact and its index equal. */
static void test_verify__io_error_loop(void **state)
{
    struct fixture *f = *state;
    for (uint64_t n = 0;; n++) {
        assert_int_equal(tdm_fault_fs_fail_after(&f->fs, 0, n, -EIO, false), 0);
        uint64_t fired = tdm_fault_fs_fired(&f->fs);
        struct tandem_verify_report report;
        struct tdm_diag diag = {{0}};
        int rv = tdm_node_verify(f->dir, TANDEM_VERIFY_DEEP, &f->fs.base, NULL, &report, &diag);
        tdm_fault_fs_clear(&f->fs);
        assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
        if (tdm_fault_fs_fired(&f->fs) == fired) {
            assert_int_equal(rv, 0);
            break;
        }
        if (rv == 0) {
            /* The fault hit a best-effort call (a close, the progress
             * fdatasync on close): the result must still be the truth. */
            if (report.damaged_count != 0 || !report.index_equal) {
                fprintf(stderr, "fault at call %" PRIu64 ": %u damaged, index %s%s: %s\n", n,
                        report.damaged_count, report.index_checked ? "checked" : "unchecked",
                        report.index_rebuilt ? ", rebuilt" : "", report.index_difference);
            }
            assert_int_equal(report.damaged_count, 0);
            assert_true(report.index_equal);
        } else {
            assert_true(rv < 0);
            assert_true(diag.message[0] != '\0');
        }
        assert_false(tdm_test_file_exists(f->dir, "index.verify"));
    }
    struct tandem_verify_report report;
    assert_int_equal(tdm_node_verify(f->dir, TANDEM_VERIFY_DEEP, &f->fs.base, NULL, &report, NULL),
                     0);
    assert_int_equal(report.damaged_count, 0);
    assert_true(report.index_equal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scrub_pass__intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub_pass__finds_flip_after_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub_pass__finds_footer_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub_pass__reads_the_medium, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub_pass__advise_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub_pass__throttled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub_pass__cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify__intact_deep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify__deep_rebuilds_stale_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify__damage_skips_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify__locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify__io_error_loop, setup_small, teardown),
    };
    return cmocka_run_group_tests_name("scrub", tests, NULL, NULL);
}
