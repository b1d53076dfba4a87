/* tests/crash/test_crash.c: a real process appending from 16 threads is
 * killed with SIGKILL at random moments, 50 times or more; after each restart
 * every LSN it reported as durable is present, byte for byte, and the chain of
 * the whole log verifies.
 *
 * Method: the test (argv[1] names the crash_child executable) runs the child
 * on one real temporary directory, over and over, so that the log grows
 * across runs and every run starts with recovery of the run before:
 *   1. fork and exec crash_child DIR 262144 RUN with stdout piped to us; the
 *      small (256 KiB) segments make the child seal and create segments;
 *   2. read its lines "lsn writer seq count" for a random 20-300 ms (a seeded
 *      PRNG; the seed is printed and TANDEM_CRASH_SEED replays it), then
 *      SIGKILL it, read what is left in the pipe (a line received whole was
 *      written after its append was durable; a partial last line is
 *      dropped), and reap it: it must have died of the SIGKILL;
 *   3. open DIR in this process with tandem_open(): no damage, no failure,
 *      lsn_last at least the largest reported LSN, and every LSN the killed
 *      child reported reads back equal to the record regenerated from
 *      (writer, seq), as do a random sample of earlier runs' (all of them
 *      after the last run); close;
 *   4. walk every segment file independently of the engine: headers,
 *      footers, LSN continuity, every batch's checksums and its chain hash
 *      folded from the one before, up to the log's last LSN.
 * TANDEM_CRASH_ITERATIONS overrides the number of runs (default 50). */
#include "tdm_test.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "crash_records.h"
#include "engine/base/alloc.h"
#include "engine/base/prng.h"
#include "engine/batch.h"
#include "engine/codec.h"
#include "engine/fs.h"
#include "engine/segment.h"

#define CRASH_ITERATIONS_DEFAULT 50
#define CRASH_SEGMENT_SIZE       (256u << 10)
#define CRASH_KILL_MS_MIN        20
#define CRASH_KILL_MS_MAX        300
#define CRASH_LINE_SIZE_MAX      512
#define CRASH_SEGMENTS_MAX       4096
#define CRASH_EARLIER_SAMPLE     512 /* Earlier runs' reports read back after each run. */

static const char *crash_child_path;

/* One append the child reported durable. */
struct report {
    uint64_t lsn;
    uint64_t writer;
    uint64_t seq;
    uint32_t count;
};

struct crash {
    char dir[256];
    struct report *reports; /* Every run's, in arrival order. */
    size_t report_count;
    size_t report_capacity;
    uint64_t lsn_max; /* Largest LSN reported. */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the child ------------------------------------------------------------------ */

static pid_t child_start(const struct crash *c, uint64_t run, int *out_fd)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    char segment_size[32];
    char run_text[32];
    snprintf(segment_size, sizeof(segment_size), "%u", CRASH_SEGMENT_SIZE);
    snprintf(run_text, sizeof(run_text), "%" PRIu64, run);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (dup2(fds[1], STDOUT_FILENO) < 0) {
            _exit(126);
        }
        execl(crash_child_path, crash_child_path, c->dir, segment_size, run_text, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    *out_fd = fds[0];
    return pid;
}

static void report_add(struct crash *c, const struct report *r)
{
    if (c->report_count == c->report_capacity) {
        c->report_capacity = c->report_capacity == 0 ? 4096 : c->report_capacity * 2;
        c->reports = realloc(c->reports, c->report_capacity * sizeof(*c->reports));
        assert_non_null(c->reports);
    }
    c->reports[c->report_count++] = *r;
    if (r->lsn + r->count - 1 > c->lsn_max) {
        c->lsn_max = r->lsn + r->count - 1;
    }
}

/* Parse one whole line from the child. */
static void line_parse(struct crash *c, const char *line)
{
    if (line[0] == 'E') {
        fprintf(stderr, "child failed: %s\n", line);
        fail();
    }
    struct report r;
    char *end = NULL;
    r.lsn = strtoull(line, &end, 10);
    r.writer = strtoull(end, &end, 10);
    r.seq = strtoull(end, &end, 10);
    r.count = (uint32_t)strtoul(end, &end, 10);
    if (*end != '\0' || r.lsn == 0 || r.count == 0 || r.count > CRASH_RECORDS_MAX) {
        fprintf(stderr, "bad line from the child: \"%s\"\n", line);
        fail();
    }
    report_add(c, &r);
}

/* Lines arriving on a pipe, parsed as they complete. */
struct line_reader {
    char buf[CRASH_LINE_SIZE_MAX];
    size_t size;
    size_t line_count;
};

/* Read what is available; returns false at end of file. */
static bool lines_read(struct crash *c, struct line_reader *lr, int fd)
{
    ssize_t n = read(fd, lr->buf + lr->size, sizeof(lr->buf) - 1 - lr->size);
    if (n < 0 && errno == EINTR) {
        return true;
    }
    assert_true(n >= 0);
    if (n == 0) {
        return false;
    }
    lr->size += (size_t)n;
    lr->buf[lr->size] = '\0';
    char *start = lr->buf;
    char *newline;
    while ((newline = strchr(start, '\n')) != NULL) {
        *newline = '\0';
        line_parse(c, start);
        lr->line_count++;
        start = newline + 1;
    }
    lr->size -= (size_t)(start - lr->buf);
    memmove(lr->buf, start, lr->size);
    assert_true(lr->size < sizeof(lr->buf) - 1); /* No line is this long. */
    return true;
}

/* Run the child for kill_ms, kill it, collect every whole line. */
static size_t child_run(struct crash *c, uint64_t run, uint64_t kill_ms)
{
    int fd;
    pid_t pid = child_start(c, run, &fd);
    struct line_reader lr = {.size = 0};
    uint64_t deadline = now_ms() + kill_ms;
    bool open = true;
    for (uint64_t now = now_ms(); open && now < deadline; now = now_ms()) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, (int)(deadline - now));
        if (ready > 0) {
            open = lines_read(c, &lr, fd);
        }
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    while (open) {
        open = lines_read(c, &lr, fd); /* Lines already in the pipe were durable. */
    }
    close(fd);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        fprintf(stderr, "run %" PRIu64 ": the child ended by itself (status 0x%x)\n", run, status);
        fail();
    }
    return lr.line_count;
}

/* ---- checks --------------------------------------------------------------------- */

struct expect {
    const struct tandem_record *want;
    int count;
};

static int expect_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    struct expect *e = data;
    e->count++;
    if (!tdm_codec_equal(record, e->want)) {
        fprintf(stderr, "LSN %" PRIu64 " differs from the record the child appended\n", lsn);
        fail();
    }
    return 0;
}

/* Read back the records of one report. */
static void check_report(struct tandem *t, const struct report *r, uint64_t run)
{
    struct tdm_gen gens[CRASH_RECORDS_MAX];
    struct tandem_record records[CRASH_RECORDS_MAX];
    uint32_t count = 0;
    crash_records(r->writer, r->seq, gens, records, &count);
    assert_int_equal(count, r->count);
    for (uint32_t j = 0; j < count; j++) {
        struct expect e = {&records[j], 0};
        struct tandem_diag diag = {{0}};
        int rv = tandem_read(t, r->lsn + j, expect_cb, &e, &diag);
        if (rv != 0) {
            fprintf(stderr, "run %" PRIu64 ": read LSN %" PRIu64 ": %s: %s\n", run, r->lsn + j,
                    tandem_strerror(rv), diag.message);
        }
        assert_int_equal(rv, 0);
        assert_int_equal(e.count, 1);
    }
}

/* Open the directory after the kill: clean, and every record the killed
 * child reported there (reports[run_first ..]); of earlier runs, a sample
 * (all of them when all is set). */
static uint64_t check_node(struct crash *c, uint64_t run, size_t run_first, bool all,
                           struct tdm_prng *prng)
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.segment_size = CRASH_SEGMENT_SIZE;
    struct tandem *t = NULL;
    struct tandem_diag diag = {{0}};
    int rv = tandem_open(c->dir, &options, &t, &diag);
    if (rv != 0) {
        fprintf(stderr, "run %" PRIu64 ": open: %s: %s\n", run, tandem_strerror(rv), diag.message);
    }
    assert_int_equal(rv, 0);
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    if (status.damaged_count != 0 || status.failed_code != 0) {
        fprintf(stderr, "run %" PRIu64 ": %u damaged ranges, failed %d (%s)\n", run,
                status.damaged_count, status.failed_code, status.failed_message);
    }
    assert_int_equal(status.damaged_count, 0);
    assert_int_equal(status.failed_code, 0);
    if (status.lsn_last < c->lsn_max) {
        fprintf(stderr,
                "run %" PRIu64 ": LSN %" PRIu64 " was reported durable, the log ends at %" PRIu64
                "\n",
                run, c->lsn_max, status.lsn_last);
        fail();
    }
    assert_int_equal(status.index_lsn, status.lsn_last);
    for (size_t i = all ? 0 : run_first; i < c->report_count; i++) {
        check_report(t, &c->reports[i], run);
    }
    for (size_t i = 0; !all && run_first > 0 && i < CRASH_EARLIER_SAMPLE; i++) {
        check_report(t, &c->reports[tdm_prng_below(prng, run_first)], run);
    }
    tandem_close(t);
    return status.lsn_last;
}

static int lsn_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

static int segment_list_cb(void *data, const char *name)
{
    uint64_t *lsns = data;
    uint64_t lsn;
    if (tdm_segment_name_parse(name, &lsn)) {
        assert_true(lsns[0] < CRASH_SEGMENTS_MAX);
        lsns[++lsns[0]] = lsn;
    }
    return 0;
}

/* Whether bytes[offset, end) are all zero: a prepared segment's space after
 * its last batch (docs/FORMAT.md "Prepared segments"). */
static bool zero_rest(const uint8_t *bytes, uint64_t offset, uint64_t end)
{
    while (offset < end && bytes[offset] == 0) {
        offset++;
    }
    return offset == end;
}

/* Walk one segment file's batches; *expected and *chain follow the log. */
static void verify_segment(const char *log_dir, uint64_t segment_lsn, bool last, uint64_t *expected,
                           struct tdm_chain_hash *chain, uint8_t *raw)
{
    struct tdm_fs *fs = tdm_fs_posix();
    char name[TDM_SEGMENT_NAME_SIZE];
    char path[TDM_PATH_SIZE];
    tdm_segment_name(name, sizeof(name), segment_lsn);
    assert_int_equal(tdm_fs_path(path, sizeof(path), log_dir, name), 0);
    int fd;
    uint64_t size = 0;
    assert_int_equal(fs->open(fs, path, TDM_FS_READ, &fd), 0);
    assert_int_equal(fs->size(fs, fd, &size), 0);
    uint8_t *bytes = malloc(size > 0 ? size : 1);
    assert_non_null(bytes);
    assert_int_equal(tdm_fs_read_exact(fs, fd, bytes, size, 0), 0);
    fs->close(fs, fd);

    struct tdm_segment_header sh;
    assert_true(size >= TDM_SEGMENT_HEADER_SIZE);
    assert_int_equal(tdm_segment_header_decode(bytes, &sh, NULL), 0);
    assert_int_equal(sh.lsn_first, segment_lsn);
    assert_int_equal(sh.lsn_first, *expected);
    assert_memory_equal(sh.chain_prev.bytes, chain->bytes, TDM_CHAIN_HASH_SIZE);
    uint64_t end = size;
    struct tdm_segment_footer footer;
    bool sealed =
        size >= TDM_SEGMENT_HEADER_SIZE + TDM_SEGMENT_FOOTER_SIZE &&
        tdm_segment_footer_decode(bytes + size - TDM_SEGMENT_FOOTER_SIZE, &footer, NULL) == 0;
    if (!last) {
        assert_true(sealed); /* Only the last segment may be open. */
    }
    if (sealed) {
        end = size - TDM_SEGMENT_FOOTER_SIZE;
        assert_int_equal(footer.data_size, end);
        assert_int_equal(footer.checksum, XXH3_64bits(bytes, end));
    }
    uint64_t offset = TDM_SEGMENT_HEADER_SIZE;
    uint32_t batch_count = 0;
    bool prepared = (sh.flags & TDM_SEGMENT_PREPARED) != 0;
    while (offset < end && !(last && !sealed && prepared && zero_rest(bytes, offset, end))) {
        struct tdm_batch_header h;
        assert_true(end - offset >= TDM_BATCH_HEADER_SIZE);
        assert_int_equal(tdm_batch_header_decode(bytes + offset, TDM_BATCH_HEADER_SIZE, &h, NULL),
                         0);
        assert_int_equal(h.lsn_first, *expected);
        assert_true(tdm_batch_chain_follows(&h, chain));
        assert_true(end - offset - TDM_BATCH_HEADER_SIZE >= h.body_size);
        assert_int_equal(tdm_batch_body_decode(&h, bytes + offset + TDM_BATCH_HEADER_SIZE, raw,
                                               TDM_BATCH_RAW_SIZE_MAX, NULL),
                         0);
        offset += TDM_BATCH_HEADER_SIZE + h.body_size;
        *expected = tdm_batch_lsn_last(&h) + 1;
        *chain = h.chain_hash;
        batch_count++;
    }
    assert_true(offset == end || zero_rest(bytes, offset, end));
    if (sealed) {
        assert_int_equal(footer.lsn_first, segment_lsn);
        assert_int_equal(footer.lsn_last, *expected - 1);
        assert_int_equal(footer.batch_count, batch_count);
        assert_memory_equal(footer.chain_last.bytes, chain->bytes, TDM_CHAIN_HASH_SIZE);
    }
    free(bytes);
}

/* The chain of the whole log, from LSN 1 to lsn_last, without the engine. */
static uint32_t verify_chain(const struct crash *c, uint64_t lsn_last)
{
    char log_dir[TDM_PATH_SIZE];
    assert_int_equal(tdm_fs_path(log_dir, sizeof(log_dir), c->dir, "log"), 0);
    uint64_t *lsns = calloc(CRASH_SEGMENTS_MAX + 1, sizeof(*lsns)); /* [0]: count. */
    uint8_t *raw = malloc(TDM_BATCH_RAW_SIZE_MAX);
    assert_non_null(lsns);
    assert_non_null(raw);
    struct tdm_fs *fs = tdm_fs_posix();
    assert_int_equal(fs->list(fs, log_dir, segment_list_cb, lsns), 0);
    uint32_t count = (uint32_t)lsns[0];
    qsort(lsns + 1, count, sizeof(*lsns), lsn_compare);
    uint64_t expected = 1;
    struct tdm_chain_hash chain;
    memset(&chain, 0, sizeof(chain));
    for (uint32_t i = 1; i <= count; i++) {
        verify_segment(log_dir, lsns[i], i == count, &expected, &chain, raw);
    }
    assert_int_equal(expected - 1, lsn_last);
    free(raw);
    free(lsns);
    return count;
}

/* ---- the test ------------------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? strtoull(value, NULL, 10) : fallback;
}

/* A process appending from 16 threads, killed with SIGKILL at random moments
 * (50 runs on one directory), never loses a record it reported durable: after
 * each kill the directory opens without damage, every reported LSN reads back
 * equal, and the chain of the whole log verifies segment by segment. */
static void test_append__sigkill_keeps_durable(void **state)
{
    (void)state;
    assert_non_null(crash_child_path);
    uint64_t seed = env_u64("TANDEM_CRASH_SEED", (uint64_t)time(NULL) ^ (uint64_t)getpid());
    uint64_t iterations = env_u64("TANDEM_CRASH_ITERATIONS", CRASH_ITERATIONS_DEFAULT);
    printf("crash seed %" PRIu64 " (replay: TANDEM_CRASH_SEED=%" PRIu64 "), %" PRIu64 " runs\n",
           seed, seed, iterations);
    struct tdm_prng prng;
    tdm_prng_init(&prng, seed);
    struct crash *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    assert_int_equal(tdm_test_tmpdir_create(c->dir, sizeof(c->dir)), 0);
    uint64_t started = now_ms();
    for (uint64_t run = 0; run < iterations; run++) {
        uint64_t kill_ms =
            CRASH_KILL_MS_MIN + tdm_prng_below(&prng, CRASH_KILL_MS_MAX - CRASH_KILL_MS_MIN + 1);
        size_t run_first = c->report_count;
        size_t lines = child_run(c, run, kill_ms);
        uint64_t lsn_last = check_node(c, run, run_first, run + 1 == iterations, &prng);
        uint32_t segments = verify_chain(c, lsn_last);
        printf("run %2" PRIu64 ": killed after %3" PRIu64 " ms, %5zu appends reported, log ends at"
               " LSN %7" PRIu64 " in %u segments\n",
               run, kill_ms, lines, lsn_last, segments);
    }
    printf("%zu appends reported in %" PRIu64 " runs, %" PRIu64 " ms\n", c->report_count,
           iterations, now_ms() - started);
    assert_true(c->report_count > 0);
    tdm_test_tmpdir_remove(c->dir);
    free(c->reports);
    free(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH_OF_CRASH_CHILD\n", argv[0]);
        return 2;
    }
    crash_child_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append__sigkill_keeps_durable),
    };
    return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
