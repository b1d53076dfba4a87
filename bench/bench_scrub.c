/* bench/bench_scrub.c: the scrubber's cost (issue 5; docs/BENCHMARKS.md
 * "Scrub").
 *
 * Questions:
 * 1. How fast does an unthrottled scrub pass (engine/scrub.c: what `tandem
 *    verify` and net/uv_scrub.c run) read and verify sealed segments from the
 *    medium, beside the disk's sequential read rate over the same files in the
 *    same run? Target: at least 80% of it.
 * 2. How much slower is acknowledged ingest while the scrubber runs at its
 *    default rate (TDM_SCRUB_RATE_DEFAULT) than without it? Target: at most 5%.
 *
 * Happy path:
 * 1. Print the machine: cores, load average, the file system of --dir (tmpfs
 *    would measure memory, not a disk: the program says so).
 * 2. Build a store of --size-mb MB of segments in a fresh node directory
 *    under --dir: batches of 1024 records from tools/gen.h (a pool of
 *    generated message records, reused), tandem_append() until the log's
 *    bytes reach the size; close it.
 * 3. Question 1, --rounds times, in alternating order: read every segment
 *    file sequentially with O_DIRECT in 1 MiB reads (what `dd iflag=direct
 *    bs=1M` does: the disk's rate, no page cache), read them again buffered
 *    after POSIX_FADV_DONTNEED (the way the scrubber reaches the medium:
 *    readahead, no verification), and run one unthrottled scrub pass
 *    (tdm_scrub_pass, rate 0: it drops each file's cached pages first and
 *    verifies every checksum, the chain hash and every footer). Print MB/s
 *    (10^6 bytes) of each and the ratio scrub / O_DIRECT, per round and
 *    the median.
 * 4. Question 2: reopen the store for writing; --appenders threads call
 *    tandem_append() with one record each (a call returns once its record is
 *    durable: acknowledged on a node with min_copies 1) for --seconds, in
 *    rounds alternating "without scrub" and "with scrub", where a thread of
 *    this program runs scrub passes back to back at TDM_SCRUB_RATE_DEFAULT
 *    (as net/uv_scrub.c's thread does, without its pause between passes:
 *    the scrubber is busy the whole window). Print records/s, p50/p99
 *    latency and the ratio with / without.
 * Output: `RESULT <name> <measure> <value>` lines (docs/BENCHMARKS.md), and
 * `#` lines of context.
 *
 * Failure modes: bad usage exits 2; any failing call prints
 * "bench_scrub: <cause>" and exits 1 (the store is kept for a look, as with
 * --keep). Damage found by a pass is a failure: the store was just written.
 *
 * Close: the store is removed unless --keep. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "engine/base/assert.h"
#include "engine/fs.h"
#include "engine/scrub.h"
#include "bench_util.h"
#include "tandem.h"
#include "tools/gen.h"

#define BENCH_POOL_RECORDS  65536
#define BENCH_CHUNK_SIZE    (1u << 20)
#define BENCH_BATCH_RECORDS 1024
#define BENCH_READ_SIZE     (1u << 20) /* Sequential reads: 1 MiB, as dd bs=1M. */
#define BENCH_ALIGN         4096
#define BENCH_SEGMENTS_MAX  4096
#define BENCH_ROUNDS_MAX    15
#define BENCH_LATENCIES_MAX (1u << 20) /* Per appender thread and run. */
#define BENCH_THREADS_MAX   256

struct bench_options {
    const char *dir;
    uint64_t size_mb;
    uint32_t rounds;
    uint32_t appenders;
    double seconds;
    bool keep;
    bool skip_ingest;
};

static char bench_store[4096]; /* The node directory; "" until made. */

static void bench_fail(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));

static void bench_fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, "bench_scrub: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    if (bench_store[0] != '\0') {
        fprintf(stderr, "bench_scrub: kept %s\n", bench_store);
    }
    exit(1);
}

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_double_compare(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static double bench_median(const double *values, uint32_t count)
{
    double sorted[BENCH_ROUNDS_MAX * 2];
    tdm_assert(count > 0 && count <= BENCH_ROUNDS_MAX * 2);
    memcpy(sorted, values, count * sizeof(values[0]));
    qsort(sorted, count, sizeof(sorted[0]), bench_double_compare);
    return count % 2 == 1 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2;
}

/* ---- the machine -------------------------------------------------------------------- */

static void bench_machine(const char *dir)
{
    struct statfs sfs;
    if (statfs(dir, &sfs) != 0) {
        bench_fail("statfs %s: %s", dir, strerror(errno));
    }
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) != 3) {
        load[0] = load[1] = load[2] = -1;
    }
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    printf("# bench_scrub: %s, %ld cores, load average %.2f %.2f %.2f\n", when,
           sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
    printf("# dir %s on %s (statfs f_type 0x%lx)\n", dir, bench_fs_name((unsigned long)sfs.f_type),
           (unsigned long)sfs.f_type);
    if ((unsigned long)sfs.f_type == 0x01021994UL) {
        printf("# WARNING: tmpfs is memory: these figures say nothing of a disk (use --dir)\n");
    }
}

/* ---- the store -------------------------------------------------------------------------- */

static struct tandem *bench_open(void)
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    struct tandem *t = NULL;
    struct tandem_diag diag;
    memset(&diag, 0, sizeof(diag));
    int rv = tandem_open(bench_store, &options, &t, &diag);
    if (rv != 0) {
        bench_fail("open %s: %s: %s", bench_store, tandem_strerror(rv), diag.message);
    }
    return t;
}

static uint64_t bench_log_bytes(struct tandem *t, uint32_t *sealed)
{
    struct tandem_status status;
    int rv = tandem_status(t, &status);
    if (rv != 0) {
        bench_fail("status: %s", tandem_strerror(rv));
    }
    if (sealed != NULL) {
        *sealed = status.sealed_count;
    }
    return status.log_bytes;
}

static void bench_fill(const struct bench_pool *pool, uint64_t size)
{
    struct tandem *t = bench_open();
    double began = bench_now();
    size_t next = 0;
    uint64_t calls = 0;
    uint64_t bytes = 0;
    while ((bytes = bench_log_bytes(t, NULL)) < size) {
        for (int i = 0; i < 32; i++) {
            if (next + BENCH_BATCH_RECORDS > pool->count) {
                next = 0;
            }
            uint64_t lsn = 0;
            struct tandem_diag diag;
            memset(&diag, 0, sizeof(diag));
            int rv = tandem_append(t, pool->records + next, BENCH_BATCH_RECORDS, &lsn, &diag);
            if (rv != 0) {
                bench_fail("append: %s: %s", tandem_strerror(rv), diag.message);
            }
            next += BENCH_BATCH_RECORDS;
            calls++;
        }
    }
    uint32_t sealed = 0;
    bytes = bench_log_bytes(t, &sealed);
    tandem_close(t);
    printf("# store %s: %" PRIu64 " MB of segments (%u sealed), %" PRIu64
           " records, written in %.1f s\n",
           bench_store, bytes / 1000000, sealed, calls * BENCH_BATCH_RECORDS, bench_now() - began);
}

/* ---- question 1: scrub beside sequential reads ------------------------------------------ */

struct bench_segments {
    uint32_t count;
    char *paths[BENCH_SEGMENTS_MAX];
};

static int bench_string_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void bench_segments_list(struct bench_segments *segments)
{
    char log[4200];
    snprintf(log, sizeof(log), "%s/log", bench_store);
    DIR *d = opendir(log);
    if (d == NULL) {
        bench_fail("opendir %s: %s", log, strerror(errno));
    }
    segments->count = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 4 || strcmp(entry->d_name + length - 4, ".seg") != 0) {
            continue;
        }
        if (segments->count == BENCH_SEGMENTS_MAX) {
            bench_fail("more than %u segments", BENCH_SEGMENTS_MAX);
        }
        char path[4500];
        snprintf(path, sizeof(path), "%s/%s", log, entry->d_name);
        segments->paths[segments->count] = strdup(path);
        if (segments->paths[segments->count] == NULL) {
            bench_fail("out of memory");
        }
        segments->count++;
    }
    closedir(d);
    qsort(segments->paths, segments->count, sizeof(char *), bench_string_compare);
}

/* Read every segment file start to end in BENCH_READ_SIZE reads: with
 * O_DIRECT (direct: the device's rate), or buffered after dropping the
 * file's cached pages (the medium through readahead); hash: XXH3 every byte
 * read (the checksums' share of a scrub's work, without the walk and the
 * decompression). Returns bytes read. */
static uint64_t bench_read_all(const struct bench_segments *segments, uint8_t *buffer, bool direct,
                               bool hash)
{
    uint64_t digest = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < segments->count; i++) {
        int fd = open(segments->paths[i], O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
        if (fd < 0) {
            bench_fail("open %s%s: %s", segments->paths[i], direct ? " (O_DIRECT)" : "",
                       strerror(errno));
        }
        if (!direct) {
            int rv = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            if (rv != 0) {
                bench_fail("posix_fadvise %s: %s", segments->paths[i], strerror(rv));
            }
        }
        for (;;) {
            ssize_t n = read(fd, buffer, BENCH_READ_SIZE);
            if (n < 0) {
                bench_fail("read %s: %s", segments->paths[i], strerror(errno));
            }
            if (n == 0) {
                break;
            }
            total += (uint64_t)n;
            if (hash) {
                digest ^= XXH3_64bits(buffer, (size_t)n);
            }
        }
        if (!direct) {
            (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        }
        close(fd);
    }
    if (hash && digest == 1) {
        printf("# (digest %" PRIu64 ")\n",
               digest); /* Keeps the hashing from being optimised out. */
    }
    return total;
}

static void bench_scrub_once(uint64_t rate, struct tdm_scrub_report *report, double *seconds)
{
    struct tdm_scrub *scrub = malloc(sizeof(*scrub));
    if (scrub == NULL) {
        bench_fail("out of memory");
    }
    struct tdm_scrub_options options;
    tdm_scrub_options_init(&options);
    options.rate_bytes_per_second = rate;
    struct tdm_diag diag;
    memset(&diag, 0, sizeof(diag));
    int rv = tdm_scrub_open(scrub, tdm_fs_posix(), bench_store, &options, &diag);
    if (rv != 0) {
        bench_fail("scrub open: %s", diag.message);
    }
    double began = bench_now();
    rv = tdm_scrub_pass(scrub, report, &diag);
    *seconds = bench_now() - began;
    tdm_scrub_close(scrub);
    free(scrub);
    if (rv != 0) {
        bench_fail("scrub pass: %s: %s", tandem_strerror(rv), diag.message);
    }
    if (report->damaged_count != 0) {
        bench_fail("scrub pass: %u damaged ranges in a store just written", report->damaged_count);
    }
}

static void bench_question_scrub(const struct bench_options *o)
{
    struct bench_segments segments;
    bench_segments_list(&segments);
    uint8_t *buffer = aligned_alloc(BENCH_ALIGN, BENCH_READ_SIZE);
    if (buffer == NULL) {
        bench_fail("out of memory");
    }
    double direct_rate[BENCH_ROUNDS_MAX];
    double buffered_rate[BENCH_ROUNDS_MAX];
    double scrub_rate[BENCH_ROUNDS_MAX];
    double hash_rate[BENCH_ROUNDS_MAX];
    double ratio[BENCH_ROUNDS_MAX];
    printf("# question 1: %u segment files; per round: O_DIRECT read, buffered read after "
           "POSIX_FADV_DONTNEED, unthrottled scrub pass, O_DIRECT read + XXH3 of every byte "
           "(order alternates)\n",
           segments.count);
    for (uint32_t r = 0; r < o->rounds; r++) {
        double scrub_seconds = 0;
        double direct_seconds = 0;
        double buffered_seconds = 0;
        double hash_seconds = 0;
        uint64_t direct_bytes = 0;
        uint64_t buffered_bytes = 0;
        uint64_t hash_bytes = 0;
        struct tdm_scrub_report report;
        for (int step = 0; step < 4; step++) {
            int which = r % 2 == 0 ? step : 3 - step;
            double began = bench_now();
            if (which == 0) {
                direct_bytes = bench_read_all(&segments, buffer, true, false);
                direct_seconds = bench_now() - began;
            } else if (which == 1) {
                buffered_bytes = bench_read_all(&segments, buffer, false, false);
                buffered_seconds = bench_now() - began;
            } else if (which == 3) {
                hash_bytes = bench_read_all(&segments, buffer, true, true);
                hash_seconds = bench_now() - began;
            } else {
                bench_scrub_once(0, &report, &scrub_seconds);
            }
        }
        direct_rate[r] = (double)direct_bytes / direct_seconds / 1e6;
        buffered_rate[r] = (double)buffered_bytes / buffered_seconds / 1e6;
        scrub_rate[r] = (double)report.read_bytes / scrub_seconds / 1e6;
        hash_rate[r] = (double)hash_bytes / hash_seconds / 1e6;
        ratio[r] = scrub_rate[r] / direct_rate[r];
        printf("# round %u: O_DIRECT %.0f MB/s (%" PRIu64 " MB), buffered %.0f MB/s, scrub %.0f "
               "MB/s (%" PRIu64 " MB read, %u segments, %u sealed), O_DIRECT+XXH3 %.0f MB/s: "
               "scrub/O_DIRECT %.2f\n",
               r + 1, direct_rate[r], direct_bytes / 1000000, buffered_rate[r], scrub_rate[r],
               report.read_bytes / 1000000, report.segment_count, report.sealed_count, hash_rate[r],
               ratio[r]);
    }
    double scrub_median = bench_median(scrub_rate, o->rounds);
    double direct_median = bench_median(direct_rate, o->rounds);
    double ratio_median = bench_median(ratio, o->rounds);
    printf("RESULT scrub.unthrottled mb_per_s %.1f\n", scrub_median);
    printf("RESULT scrub.seq_read_direct mb_per_s %.1f\n", direct_median);
    printf("RESULT scrub.seq_read_fadvise mb_per_s %.1f\n", bench_median(buffered_rate, o->rounds));
    printf("RESULT scrub.seq_read_direct_xxh3 mb_per_s %.1f\n", bench_median(hash_rate, o->rounds));
    printf("RESULT scrub.unthrottled scrub_over_seq_read %.3f\n", ratio_median);
    printf("# target: scrub at least 0.80 of the sequential read rate: %s\n",
           ratio_median >= 0.80 ? "met" : "NOT met");
    free(buffer);
    for (uint32_t i = 0; i < segments.count; i++) {
        free(segments.paths[i]);
    }
}

/* ---- question 2: acknowledged ingest with and without the scrubber --------------------- */

struct bench_run {
    struct tandem *t;
    const struct bench_pool *pool;
    atomic_bool stop;
    atomic_bool measuring;
    atomic_size_t next;
};

struct bench_appender {
    pthread_t thread;
    struct bench_run *run;
    uint64_t records;
    uint32_t latency_count;
    double *latencies; /* Seconds, of the calls that ended while measuring. */
};

static void *bench_appender_main(void *data)
{
    struct bench_appender *a = data;
    struct bench_run *run = a->run;
    while (!atomic_load(&run->stop)) {
        size_t index = atomic_fetch_add(&run->next, 1) % run->pool->count;
        uint64_t lsn = 0;
        struct tandem_diag diag;
        memset(&diag, 0, sizeof(diag));
        double began = bench_now();
        int rv = tandem_append(run->t, &run->pool->records[index], 1, &lsn, &diag);
        double took = bench_now() - began;
        if (rv != 0) {
            bench_fail("append: %s: %s", tandem_strerror(rv), diag.message);
        }
        if (atomic_load(&run->measuring)) {
            a->records++;
            if (a->latency_count < BENCH_LATENCIES_MAX) {
                a->latencies[a->latency_count++] = took;
            }
        }
    }
    return NULL;
}

struct bench_scrubber {
    pthread_t thread;
    struct tdm_scrub scrub;
    atomic_bool stop;
    uint64_t passes;
    uint64_t bytes;     /* Read by complete passes. */
    double cpu_seconds; /* The thread's user + system time. */
    int error;
    char message[256];
};

/* Passes back to back at the default rate until stopped (net/uv_scrub.c's
 * loop without its pause between passes). */
static void *bench_scrubber_main(void *data)
{
    struct bench_scrubber *s = data;
    while (!atomic_load(&s->stop)) {
        struct tdm_scrub_report report;
        struct tdm_diag diag;
        memset(&diag, 0, sizeof(diag));
        int rv = tdm_scrub_pass(&s->scrub, &report, &diag);
        if (rv == TANDEM_ECANCELED) {
            break;
        }
        if (rv != 0) {
            s->error = rv;
            snprintf(s->message, sizeof(s->message), "%s", diag.message);
            break;
        }
        s->passes++;
        s->bytes += report.read_bytes;
    }
    struct rusage usage;
    if (getrusage(RUSAGE_THREAD, &usage) == 0) {
        s->cpu_seconds = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                         (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
    }
    return NULL;
}

/* One window of --seconds: records/s, p50 and p99 latency (ms). */
static void bench_ingest_window(const struct bench_options *o, struct tandem *t,
                                const struct bench_pool *pool, bool with_scrub, double *rate,
                                double *p50, double *p99, double *scrub_rate, double *scrub_cpu)
{
    double window_began = bench_now();
    static struct bench_appender appenders[BENCH_THREADS_MAX];
    struct bench_run run = {.t = t, .pool = pool};
    atomic_init(&run.stop, false);
    atomic_init(&run.measuring, false);
    atomic_init(&run.next, 0);
    struct bench_scrubber *scrubber = NULL;
    uint64_t scrub_before = 0;
    if (with_scrub) {
        scrubber = calloc(1, sizeof(*scrubber));
        if (scrubber == NULL) {
            bench_fail("out of memory");
        }
        struct tdm_scrub_options options;
        tdm_scrub_options_init(&options); /* TDM_SCRUB_RATE_DEFAULT. */
        struct tdm_diag diag;
        memset(&diag, 0, sizeof(diag));
        if (tdm_scrub_open(&scrubber->scrub, tdm_fs_posix(), bench_store, &options, &diag) != 0) {
            bench_fail("scrub open: %s", diag.message);
        }
        atomic_init(&scrubber->stop, false);
        if (pthread_create(&scrubber->thread, NULL, bench_scrubber_main, scrubber) != 0) {
            bench_fail("pthread_create failed");
        }
    }
    for (uint32_t i = 0; i < o->appenders; i++) {
        struct bench_appender *a = &appenders[i];
        a->run = &run;
        a->records = 0;
        a->latency_count = 0;
        if (a->latencies == NULL) {
            a->latencies = malloc(BENCH_LATENCIES_MAX * sizeof(double));
            if (a->latencies == NULL) {
                bench_fail("out of memory");
            }
        }
        if (pthread_create(&a->thread, NULL, bench_appender_main, a) != 0) {
            bench_fail("pthread_create failed");
        }
    }
    struct timespec warm = {.tv_sec = 0, .tv_nsec = 500 * 1000 * 1000};
    nanosleep(&warm, NULL);
    struct tdm_scrub_progress before;
    if (scrubber != NULL) {
        tdm_scrub_progress(&scrubber->scrub, &before);
        scrub_before = before.pass_bytes;
    }
    double began = bench_now();
    atomic_store(&run.measuring, true);
    struct timespec window = {.tv_sec = (time_t)o->seconds,
                              .tv_nsec = (long)((o->seconds - (double)(time_t)o->seconds) * 1e9)};
    nanosleep(&window, NULL);
    atomic_store(&run.measuring, false);
    double elapsed = bench_now() - began;
    *scrub_rate = 0;
    if (scrubber != NULL) {
        struct tdm_scrub_progress after;
        tdm_scrub_progress(&scrubber->scrub, &after);
        /* Bytes of the pass under way; a pass that ended in the window adds its total. */
        uint64_t read = after.pass_count == before.pass_count
                            ? after.pass_bytes - scrub_before
                            : after.last_pass_bytes - scrub_before + after.pass_bytes;
        *scrub_rate = (double)read / elapsed / 1e6;
    }
    atomic_store(&run.stop, true);
    uint64_t records = 0;
    uint32_t count = 0;
    for (uint32_t i = 0; i < o->appenders; i++) {
        pthread_join(appenders[i].thread, NULL);
        records += appenders[i].records;
        count += appenders[i].latency_count;
    }
    if (scrubber != NULL) {
        atomic_store(&scrubber->stop, true);
        tdm_scrub_cancel(&scrubber->scrub);
        pthread_join(scrubber->thread, NULL);
        if (scrubber->error != 0) {
            bench_fail("scrub pass: %s: %s", tandem_strerror(scrubber->error), scrubber->message);
        }
        *scrub_cpu = scrubber->cpu_seconds / (bench_now() - window_began);
        tdm_scrub_close(&scrubber->scrub);
        free(scrubber);
    }
    double *all = malloc((count > 0 ? count : 1) * sizeof(double));
    if (all == NULL) {
        bench_fail("out of memory");
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < o->appenders; i++) {
        memcpy(all + k, appenders[i].latencies, appenders[i].latency_count * sizeof(double));
        k += appenders[i].latency_count;
    }
    qsort(all, count, sizeof(double), bench_double_compare);
    *rate = (double)records / elapsed;
    *p50 = count > 0 ? all[(size_t)((count - 1) * 0.50 + 0.5)] * 1e3 : 0;
    *p99 = count > 0 ? all[(size_t)((count - 1) * 0.99 + 0.5)] * 1e3 : 0;
    free(all);
}

static void bench_question_ingest(const struct bench_options *o, const struct bench_pool *pool)
{
    struct tandem *t = bench_open();
    printf("# question 2: %u appenders, one record per tandem_append() (durable on return), "
           "%.1f s windows after 0.5 s warm-up; scrub at %llu MB/s (TDM_SCRUB_RATE_DEFAULT), "
           "passes back to back\n",
           o->appenders, o->seconds, TDM_SCRUB_RATE_DEFAULT / 1000000);
    double without[BENCH_ROUNDS_MAX];
    double with[BENCH_ROUNDS_MAX];
    double ratio[BENCH_ROUNDS_MAX];
    double p99_without[BENCH_ROUNDS_MAX];
    double p99_with[BENCH_ROUNDS_MAX];
    double cpu[BENCH_ROUNDS_MAX];
    for (uint32_t r = 0; r < o->rounds; r++) {
        for (int step = 0; step < 2; step++) {
            bool scrub = (r % 2 == 0) == (step == 1); /* Alternate which goes first. */
            double rate = 0;
            double p50 = 0;
            double p99 = 0;
            double scrub_rate = 0;
            double scrub_cpu = 0;
            bench_ingest_window(o, t, pool, scrub, &rate, &p50, &p99, &scrub_rate, &scrub_cpu);
            if (scrub) {
                with[r] = rate;
                p99_with[r] = p99;
                cpu[r] = scrub_cpu;
            } else {
                without[r] = rate;
                p99_without[r] = p99;
            }
            printf("# round %u %s scrub: %.0f records/s, p50 %.2f ms, p99 %.2f ms", r + 1,
                   scrub ? "with" : "without", rate, p50, p99);
            if (scrub) {
                printf(", scrub read %.1f MB/s using %.1f%% of a core", scrub_rate,
                       100 * scrub_cpu);
            }
            printf("\n");
        }
        ratio[r] = with[r] / without[r];
    }
    tandem_close(t);
    double ratio_median = bench_median(ratio, o->rounds);
    printf("RESULT ingest.without_scrub records_per_s %.0f\n", bench_median(without, o->rounds));
    printf("RESULT ingest.with_scrub records_per_s %.0f\n", bench_median(with, o->rounds));
    printf("RESULT ingest.without_scrub latency_p99_ms %.2f\n",
           bench_median(p99_without, o->rounds));
    printf("RESULT ingest.with_scrub latency_p99_ms %.2f\n", bench_median(p99_with, o->rounds));
    printf("RESULT ingest.with_scrub with_over_without %.3f\n", ratio_median);
    printf("RESULT ingest.with_scrub scrub_cpu_cores %.3f\n", bench_median(cpu, o->rounds));
    printf("# target: with scrub at least 0.95 of the rate without: %s\n",
           ratio_median >= 0.95 ? "met" : "NOT met");
}

/* ---- main --------------------------------------------------------------------------- */

static int bench_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int bench_usage(void)
{
    fprintf(stderr, "usage: bench_scrub [--dir DIR] [--size-mb N] [--rounds N] [--appenders N]\n"
                    "                   [--seconds S] [--skip-ingest] [--keep]\n");
    return 2;
}

static bool bench_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        return false;
    }
    *out = value;
    return true;
}

int main(int argc, char **argv)
{
    struct bench_options o = {
        .dir = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/var/tmp",
        .size_mb = 300,
        .rounds = 3,
        .appenders = 16,
        .seconds = 5,
    };
    setvbuf(stdout, NULL, _IOLBF, 0); /* Progress shows as it comes, also into a file. */
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        uint64_t value = 0;
        if (strcmp(argv[i], "--dir") == 0 && has_value) {
            o.dir = argv[++i];
        } else if (strcmp(argv[i], "--size-mb") == 0 && has_value &&
                   bench_parse_u64(argv[i + 1], 1, 1000000, &value)) {
            o.size_mb = value;
            i++;
        } else if (strcmp(argv[i], "--rounds") == 0 && has_value &&
                   bench_parse_u64(argv[i + 1], 1, BENCH_ROUNDS_MAX, &value)) {
            o.rounds = (uint32_t)value;
            i++;
        } else if (strcmp(argv[i], "--appenders") == 0 && has_value &&
                   bench_parse_u64(argv[i + 1], 1, BENCH_THREADS_MAX, &value)) {
            o.appenders = (uint32_t)value;
            i++;
        } else if (strcmp(argv[i], "--seconds") == 0 && has_value &&
                   bench_parse_u64(argv[i + 1], 1, 3600, &value)) {
            o.seconds = (double)value;
            i++;
        } else if (strcmp(argv[i], "--skip-ingest") == 0) {
            o.skip_ingest = true;
        } else if (strcmp(argv[i], "--keep") == 0) {
            o.keep = true;
        } else {
            return bench_usage();
        }
    }
    bench_machine(o.dir);
    int n = snprintf(bench_store, sizeof(bench_store), "%s/bench_scrub-%ld", o.dir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(bench_store)) {
        bench_store[0] = '\0';
        bench_fail("--dir: path too long");
    }
    if (mkdir(bench_store, 0755) != 0) {
        char path[sizeof(bench_store)];
        memcpy(path, bench_store, sizeof(path));
        bench_store[0] = '\0';
        bench_fail("mkdir %s: %s", path, strerror(errno));
    }
    struct bench_pool pool;
    bench_pool_build(&pool, BENCH_POOL_RECORDS, 1, 1000, BENCH_CHUNK_SIZE, bench_fail);
    bench_fill(&pool, o.size_mb * 1000000);
    bench_question_scrub(&o);
    if (!o.skip_ingest) {
        bench_question_ingest(&o, &pool);
    }
    bench_pool_free(&pool);
    if (o.keep) {
        printf("# kept %s\n", bench_store);
    } else if (nftw(bench_store, bench_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        fprintf(stderr, "bench_scrub: could not remove %s\n", bench_store);
    }
    return 0;
}
