/* bench/bench_ingest.c: how many durable records per second, and at what
 * latency, does tandem ingest with 1, 16 and 64 concurrent appenders and with
 * the batch and async APIs, compared with the same records made durable by
 * SQLite and by plain LMDB? And how fast is a customer's one-hour query beside
 * the equivalent SQLite SELECT? (STYLE B2: one program per question.)
 *
 * The peers, each given the same pre-generated records (tools/gen.h):
 * - tandem: tandem_append() per call (blocking; group commit across threads),
 *   or tandem_append_async() from one thread with a bounded window in flight.
 * - sqlite: WAL mode, synchronous=FULL, one connection per thread,
 *   busy_timeout; a table with the record's columns and indexes on
 *   message_id, (customer_id, time_ns), recipient and sender; one autocommit
 *   INSERT per call, or BEGIN IMMEDIATE ... COMMIT around a batch.
 * - lmdb: one write transaction per call, default (durable) sync; the record
 *   is stored under its LSN plus tandem's secondary keys (message_id,
 *   customer+time+lsn, customer+recipient, customer+sender; see
 *   engine/index.c).
 *
 * Happy path:
 * 1. Parse the options, make a fresh directory under --dir (default $TMPDIR or
 *    /tmp), and describe the machine: cores, the directory's file system
 *    (statfs) and device, the cost of one fdatasync there.
 * 2. Generate --records message records into memory (deep copies), untimed.
 * 3. For each configuration (threads1, threads16, threads64, batch, async):
 *    create each peer's store in its own subdirectory and open one
 *    connection per thread; then, in --rounds turns whose order rotates (so
 *    that a burst of noise on the shared machine falls on every peer), release
 *    each peer's threads together for its share of --seconds. The threads take
 *    the next records from the shared pool and append them, timing every call
 *    with CLOCK_MONOTONIC; the pool running out ends the peer's runs early
 *    (a fixed count). Print the records per second, the p50/p99 latency of a
 *    call, the growth of the resident set, and tandem's ratio to each peer.
 *    Remove the stores.
 * 4. Query: load the first --query-records records into a fresh tandem node
 *    (calls of --query-load-batch records, so batches look like those that
 *    that many concurrent appenders make) and into SQLite, then run
 *    --queries one-hour windows of one customer on both, interleaved, each
 *    timed; check that both return the same records; print p50/p99 and ratios.
 *
 * Every figure is printed as "RESULT <name> <measure> <value>" beside the same
 * measure of a peer from the same run, and as a ratio (the machines are shared
 * and noisy; docs/BENCHMARKS.md). Lines starting with "#" are context.
 *
 * Failure modes: any error of a peer, a file-system call or a disagreement of
 * the query results prints one line on stderr and exits with status 1; the
 * benchmark directory is then left behind for inspection. A bad option exits
 * with status 2.
 *
 * Close: every store is closed and removed after its run, and the benchmark
 * directory at the end (unless --keep). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
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
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sqlite3.h>

#include "engine/base/assert.h"
#include "engine/base/prng.h"
#include "bench_util.h"
#include "tandem.h"
#include "tools/gen.h"

#define BENCH_SECONDS_DEFAULT          3.0
#define BENCH_SECONDS_QUICK            0.3
#define BENCH_RECORDS_DEFAULT          1500000u
#define BENCH_RECORDS_QUICK            60000u
#define BENCH_CUSTOMERS_DEFAULT        1000u
#define BENCH_SEED_DEFAULT             1u
#define BENCH_ROUNDS_DEFAULT           3u
#define BENCH_ROUNDS_QUICK             1u
#define BENCH_BATCH_DEFAULT            256u
#define BENCH_ASYNC_WINDOW_DEFAULT     1024u
#define BENCH_QUERIES_DEFAULT          1000u
#define BENCH_QUERIES_QUICK            300u
#define BENCH_QUERY_RECORDS_DEFAULT    200000u
#define BENCH_QUERY_RECORDS_QUICK      30000u
#define BENCH_QUERY_LOAD_BATCH_DEFAULT 64u
#define BENCH_QUERY_WARMUP_COUNT       20u
#define BENCH_QUERY_WINDOW_NS          (3600LL * 1000000000LL) /* One hour. */
#define BENCH_SQLITE_LOAD_TXN_RECORDS  10000u
#define BENCH_THREADS_MAX              256u
#define BENCH_CONFIG_COUNT             5u
#define BENCH_PEER_COUNT               3u
#define BENCH_SQLITE_BUSY_TIMEOUT_MS   60000
/* LMDB's map is address space only: the file grows as it is written. */
#define BENCH_LMDB_MAP_SIZE       (64ULL << 30)
#define BENCH_LMDB_FIELD_SIZE_MAX 400u /* As tandem's index: keys below LMDB's 511. */
#define BENCH_LMDB_VALUE_SIZE_MAX 4096u
#define BENCH_FDATASYNC_COUNT     200u
#define BENCH_CHUNK_SIZE          (16u << 20)
#define BENCH_PATH_SIZE           4096u

/* ---- small helpers ------------------------------------------------------------- */

__attribute__((format(printf, 1, 2))) _Noreturn static void bench_fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, "bench_ingest: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

static int64_t bench_now_ns(void)
{
    struct timespec ts;
    int rv = clock_gettime(CLOCK_MONOTONIC, &ts);
    tdm_assert(rv == 0);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void bench_path(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, BENCH_PATH_SIZE, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= BENCH_PATH_SIZE) {
        bench_fail("path too long: %s/%s", dir, name);
    }
}

static int bench_remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "bench_ingest: remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

static void bench_remove_tree(const char *dir)
{
    (void)nftw(dir, bench_remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void bench_syncfs(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        bench_fail("open %s: %s", dir, strerror(errno));
    }
    if (syncfs(fd) != 0) {
        bench_fail("syncfs %s: %s", dir, strerror(errno));
    }
    close(fd);
}

/* Print one figure. Ratios keep three significant digits or more. */
static void bench_result(const char *name, const char *measure, double value)
{
    tdm_assert(name != NULL);
    tdm_assert(measure != NULL);
    int decimals = value >= 100.0 ? 0 : value >= 10.0 ? 1 : value >= 1.0 ? 2 : 3;
    printf("RESULT %s %s %.*f\n", name, measure, decimals, value);
}

static double bench_ratio(double a, double b)
{
    return b > 0.0 ? a / b : 0.0;
}

/* ---- resident memory ------------------------------------------------------------- */

/* One phase's memory: the resident set when it began, its own peak (Linux
 * VmHWM after resetting it through /proc/self/clear_refs) and the process's
 * peak so far (getrusage, which cannot be reset). The resident set counts the
 * pages of mapped files too (LMDB maps its data file), so the growth of the
 * anonymous part (heap, stacks) is kept apart. */
struct bench_rss {
    long start_kb;        /* VmRSS when the phase began. */
    long anon_start_kb;   /* RssAnon when the phase began. */
    long anon_end_kb;     /* RssAnon when it ended. */
    long phase_peak_kb;   /* VmHWM at the end; the process peak if no reset. */
    long process_peak_kb; /* getrusage ru_maxrss at the end. */
    bool reset;           /* The peak was reset when the phase began. */
};

static long bench_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    long value = -1;
    size_t field_size = strlen(field);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, field_size) == 0 && line[field_size] == ':') {
            value = strtol(line + field_size + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return value;
}

static void bench_rss_begin(struct bench_rss *rss)
{
    memset(rss, 0, sizeof(*rss));
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        rss->reset = write(fd, "5", 1) == 1; /* "5": reset the peak resident set. */
        close(fd);
    }
    rss->start_kb = bench_status_kb("VmRSS");
    rss->anon_start_kb = bench_status_kb("RssAnon");
}

static void bench_rss_end(struct bench_rss *rss)
{
    struct rusage usage;
    int rv = getrusage(RUSAGE_SELF, &usage);
    tdm_assert(rv == 0);
    rss->process_peak_kb = usage.ru_maxrss;
    rss->phase_peak_kb = rss->reset ? bench_status_kb("VmHWM") : usage.ru_maxrss;
    rss->anon_end_kb = bench_status_kb("RssAnon");
}

static double bench_rss_growth_kb(const struct bench_rss *rss)
{
    long growth = rss->phase_peak_kb - rss->start_kb;
    return growth > 0 ? (double)growth : 0.0;
}

static double bench_rss_anon_growth_kb(const struct bench_rss *rss)
{
    long growth = rss->anon_end_kb - rss->anon_start_kb;
    return growth > 0 ? (double)growth : 0.0;
}

static void bench_rss_print(const char *name, const struct bench_rss *rss)
{
    bench_result(name, "rss_growth_kb", bench_rss_growth_kb(rss));
    bench_result(name, "rss_anon_growth_kb", bench_rss_anon_growth_kb(rss));
    bench_result(name, "phase_peak_rss_kb", (double)rss->phase_peak_kb);
    bench_result(name, "process_peak_rss_kb", (double)rss->process_peak_kb);
}

/* ---- latency ---------------------------------------------------------------------- */

static int bench_compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sort values[0 .. count) and return the p-th percentile in microseconds. */
static double bench_percentile_us(int64_t *values, size_t count, unsigned p)
{
    tdm_assert(p <= 100);
    if (count == 0) {
        return 0.0;
    }
    qsort(values, count, sizeof(values[0]), bench_compare_i64);
    size_t index = (size_t)((double)(count - 1) * p / 100.0 + 0.5);
    tdm_assert(index < count);
    return (double)values[index] / 1000.0;
}

/* ---- options ------------------------------------------------------------------------ */

struct bench_options {
    const char *dir_parent;    /* --dir; default $TMPDIR or /tmp. */
    double seconds;            /* --seconds per configuration and peer. */
    bool quick;                /* --quick: about 10 s in all. */
    bool keep;                 /* --keep: leave the benchmark directory. */
    size_t record_count;       /* --records in the pool (the count limit). */
    uint32_t customer_count;   /* --customers. */
    uint64_t seed;             /* --seed. */
    uint32_t batch_size;       /* --batch: records per call in "batch". */
    uint32_t async_window;     /* --async-window: calls in flight in "async". */
    uint32_t query_count;      /* --queries. */
    size_t query_record_count; /* --query-records loaded for the queries. */
    uint32_t query_load_batch; /* --query-load-batch: records per tandem call. */
    uint32_t rounds;           /* --rounds: turns that share --seconds per peer. */
    const char *configs;       /* --configs: comma-separated names; NULL: all. */
    const char *peers;         /* --peers: comma-separated names; NULL: all. */
    bool query;                /* false with --no-query. */
};

static void bench_usage(void)
{
    fprintf(stderr, "usage: bench_ingest [--dir DIR] [--seconds S] [--quick] [--keep]\n"
                    "                    [--records N] [--customers N] [--seed N] [--batch N]\n"
                    "                    [--async-window N] [--queries N] [--query-records N]\n"
                    "                    [--query-load-batch N] [--rounds N] [--no-query]\n"
                    "                    [--configs threads1,threads16,threads64,batch,async]\n"
                    "                    [--peers tandem,sqlite,lmdb]\n");
    exit(2);
}

static uint64_t bench_parse_u64(const char *text, uint64_t min, uint64_t max)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "bench_ingest: '%s': not a number from %" PRIu64 " to %" PRIu64 "\n", text,
                min, max);
        bench_usage();
    }
    return value;
}

static void bench_options_default(struct bench_options *o)
{
    const char *tmpdir = getenv("TMPDIR");
    o->dir_parent = tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp";
    o->seconds = BENCH_SECONDS_DEFAULT;
    o->quick = false;
    o->keep = false;
    o->record_count = 0; /* Chosen after parsing: depends on --quick. */
    o->customer_count = BENCH_CUSTOMERS_DEFAULT;
    o->seed = BENCH_SEED_DEFAULT;
    o->batch_size = BENCH_BATCH_DEFAULT;
    o->async_window = BENCH_ASYNC_WINDOW_DEFAULT;
    o->query_count = 0;
    o->query_record_count = 0;
    o->query_load_batch = BENCH_QUERY_LOAD_BATCH_DEFAULT;
    o->rounds = 0;
    o->configs = NULL;
    o->peers = NULL;
    o->query = true;
}

/* Apply the option at argv[*i] (and its value); return false if unknown. */
static bool bench_option_apply(struct bench_options *o, int argc, char **argv, int *i,
                               bool *seconds_given)
{
    const char *name = argv[*i];
    if (strcmp(name, "--quick") == 0 || strcmp(name, "--keep") == 0) {
        *(strcmp(name, "--quick") == 0 ? &o->quick : &o->keep) = true;
        return true;
    }
    if (strcmp(name, "--no-query") == 0) {
        o->query = false;
        return true;
    }
    if (*i + 1 >= argc) {
        return false;
    }
    const char *value = argv[++*i];
    if (strcmp(name, "--dir") == 0) {
        o->dir_parent = value;
    } else if (strcmp(name, "--seconds") == 0) {
        o->seconds = strtod(value, NULL);
        *seconds_given = true;
        if (!(o->seconds > 0.0 && o->seconds <= 3600.0)) {
            return false;
        }
    } else if (strcmp(name, "--records") == 0) {
        o->record_count = bench_parse_u64(value, 1000, 100000000);
    } else if (strcmp(name, "--customers") == 0) {
        o->customer_count = (uint32_t)bench_parse_u64(value, 1, 10000000);
    } else if (strcmp(name, "--seed") == 0) {
        o->seed = bench_parse_u64(value, 0, UINT64_MAX);
    } else if (strcmp(name, "--batch") == 0) {
        o->batch_size = (uint32_t)bench_parse_u64(value, 1, TANDEM_APPEND_RECORDS_MAX);
    } else if (strcmp(name, "--async-window") == 0) {
        o->async_window = (uint32_t)bench_parse_u64(value, 1, 60000);
    } else if (strcmp(name, "--queries") == 0) {
        o->query_count = (uint32_t)bench_parse_u64(value, 1, 10000000);
    } else if (strcmp(name, "--query-records") == 0) {
        o->query_record_count = bench_parse_u64(value, 1000, 100000000);
    } else if (strcmp(name, "--configs") == 0) {
        o->configs = value;
    } else if (strcmp(name, "--peers") == 0) {
        o->peers = value;
    } else if (strcmp(name, "--rounds") == 0) {
        o->rounds = (uint32_t)bench_parse_u64(value, 1, 100);
    } else if (strcmp(name, "--query-load-batch") == 0) {
        o->query_load_batch = (uint32_t)bench_parse_u64(value, 1, TANDEM_APPEND_RECORDS_MAX);
    } else {
        return false;
    }
    return true;
}

static void bench_options_parse(struct bench_options *o, int argc, char **argv)
{
    bench_options_default(o);
    bool seconds_given = false;
    for (int i = 1; i < argc; i++) {
        if (!bench_option_apply(o, argc, argv, &i, &seconds_given)) {
            bench_usage();
        }
    }
    if (o->quick && !seconds_given) {
        o->seconds = BENCH_SECONDS_QUICK;
    }
    if (o->record_count == 0) {
        o->record_count = o->quick ? BENCH_RECORDS_QUICK : BENCH_RECORDS_DEFAULT;
    }
    if (o->rounds == 0) {
        o->rounds = o->quick ? BENCH_ROUNDS_QUICK : BENCH_ROUNDS_DEFAULT;
    }
    if (o->query_count == 0) {
        o->query_count = o->quick ? BENCH_QUERIES_QUICK : BENCH_QUERIES_DEFAULT;
    }
    if (o->query_record_count == 0) {
        o->query_record_count = o->quick ? BENCH_QUERY_RECORDS_QUICK : BENCH_QUERY_RECORDS_DEFAULT;
    }
    if (o->query_record_count > o->record_count) {
        o->query_record_count = o->record_count;
    }
    tdm_assert(o->seconds > 0.0);
    tdm_assert(o->record_count > 0);
}

/* Whether the comma-separated list names name; a NULL list names everything. */
static bool bench_listed(const char *list, const char *name)
{
    if (list == NULL) {
        return true;
    }
    size_t size = strlen(name);
    for (const char *p = list; p != NULL; p = strchr(p, ',')) {
        p += *p == ',' ? 1 : 0;
        if (strncmp(p, name, size) == 0 && (p[size] == ',' || p[size] == '\0')) {
            return true;
        }
    }
    return false;
}

/* ---- runs, workers and peers ----------------------------------------------------- */

/* One configuration: how many threads append, and how. */
struct bench_config {
    const char *name;      /* In metric names: "threads16". */
    uint32_t thread_count; /* Concurrent appenders. */
    uint32_t batch_size;   /* Records per call. */
    bool async;            /* tandem_append_async() with a window (tandem only). */
};

struct bench_run;
struct bench_async;

/* The data of one tandem_append_async() call's callback. */
struct bench_async_call {
    struct bench_async *async;
    size_t index; /* Of the record in the pool, and of the call. */
};

/* One appending thread and its connection. Thread: its own thread only. */
struct bench_worker {
    struct bench_run *run;
    pthread_t thread;
    size_t record_count;  /* Records this thread made durable. */
    size_t call_count;    /* Calls it made. */
    sqlite3 *db;          /* sqlite only: this thread's connection. */
    sqlite3_stmt *insert; /* sqlite only. */
    sqlite3_stmt *begin;  /* sqlite only: BEGIN IMMEDIATE. */
    sqlite3_stmt *commit; /* sqlite only: COMMIT. */
};

/* A peer: how to make a store, connect a thread, and append durably. */
struct bench_peer {
    const char *name;
    void (*open)(struct bench_run *run);
    void (*worker_open)(struct bench_worker *worker);
    void (*append)(struct bench_worker *worker, const struct tandem_record *records, size_t count);
    void (*worker_close)(struct bench_worker *worker);
    void (*close)(struct bench_run *run);
};

/* The LMDB peer's environment. Thread: lsn_last only inside a write txn. */
struct bench_lmdb {
    MDB_env *env;
    MDB_dbi record;        /* u64 lsn -> packed record. */
    MDB_dbi message_id;    /* DUPSORT message_id -> u64 lsn. */
    MDB_dbi customer_time; /* u32 customer, u64 time, u64 lsn -> empty. */
    MDB_dbi recipient;     /* DUPSORT u32 customer, recipient -> u64 time, u64 lsn. */
    MDB_dbi sender;        /* DUPSORT u32 customer, sender -> u64 time, u64 lsn. */
    uint64_t lsn_last;     /* Guarded by LMDB's writer lock. */
};

/* One peer under one configuration: its store, its threads' connections and
 * what they measured, kept across the rounds of the configuration. */
struct bench_run {
    const struct bench_peer *peer;
    const struct bench_config *config;
    const struct bench_pool *pool;
    char dir[BENCH_PATH_SIZE]; /* The store's own directory. */
    char sqlite_path[BENCH_PATH_SIZE];
    struct tandem *tandem;          /* tandem only. */
    struct bench_lmdb lmdb;         /* lmdb only. */
    struct bench_async_call *calls; /* async only: one per pool record. Owned. */
    struct bench_worker *workers;   /* workers[0 .. config->thread_count) */
    atomic_size_t next_index;       /* Next pool record to claim; grows across rounds. */
    int64_t deadline_ns;            /* Stop claiming after this. */
    int64_t *latency_ns;            /* Per call, indexed by first record / batch size. Owned. */
    pthread_barrier_t start;        /* Threads and main begin together. */
};

/* What one peer measured under one configuration, over every round. */
struct bench_result {
    size_t record_count; /* Records made durable. */
    size_t call_count;
    double seconds; /* Sum over rounds: from the start to the last durable record. */
    double records_per_s;
    double p50_us; /* Per call. */
    double p99_us;
    double catch_up_ms;           /* tandem: index caught up this long after the calls (sum). */
    double indexed_records_per_s; /* Records / (seconds + catch-up). */
    double rss_growth_kb;         /* Sum over rounds of the growth of the resident set. */
    double rss_anon_growth_kb;    /* The same for its anonymous part, at the end of a round. */
    long phase_peak_kb;           /* Highest resident set during this peer's rounds. */
    long process_peak_kb;         /* Process peak (getrusage) after its last round. */
};

/* ---- tandem ------------------------------------------------------------------------ */

static void tandem_peer_open(struct bench_run *run)
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    struct tandem_diag diag = {{0}};
    int rv = tandem_open(run->dir, &options, &run->tandem, &diag);
    if (rv != 0) {
        bench_fail("tandem_open %s: %s: %s", run->dir, tandem_strerror(rv), diag.message);
    }
    tdm_assert(run->tandem != NULL);
}

static void tandem_peer_append(struct bench_worker *worker, const struct tandem_record *records,
                               size_t count)
{
    struct tandem_diag diag = {{0}};
    uint64_t lsn_first = 0;
    int rv = tandem_append(worker->run->tandem, records, count, &lsn_first, &diag);
    if (rv != 0) {
        bench_fail("tandem_append: %s: %s", tandem_strerror(rv), diag.message);
    }
    tdm_assert(lsn_first > 0);
}

static int tandem_peer_ignore_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)data;
    (void)lsn;
    (void)record;
    return 0;
}

/* Wait until the index has caught up with every durable record: a query
 * waits for that before it reads. The window is empty, so it reads nothing. */
static void tandem_peer_wait_indexed(struct tandem *t)
{
    struct tandem_query query;
    tandem_query_init(&query, 1);
    query.since_ns = 0;
    query.until_ns = 1;
    struct tandem_diag diag = {{0}};
    int rv = tandem_query(t, &query, tandem_peer_ignore_cb, NULL, &diag);
    if (rv != 0) {
        bench_fail("tandem_query: %s: %s", tandem_strerror(rv), diag.message);
    }
}

static void tandem_peer_close(struct bench_run *run)
{
    tandem_close(run->tandem);
    run->tandem = NULL;
}

static const struct bench_peer bench_peer_tandem = {
    .name = "tandem",
    .open = tandem_peer_open,
    .worker_open = NULL,
    .append = tandem_peer_append,
    .worker_close = NULL,
    .close = tandem_peer_close,
};

/* ---- sqlite ------------------------------------------------------------------------ */

static const char sqlite_schema[] =
    "CREATE TABLE message ("
    " lsn INTEGER PRIMARY KEY,"
    " customer_id INTEGER NOT NULL,"
    " time_ns INTEGER NOT NULL,"
    " size INTEGER NOT NULL,"
    " destination INTEGER NOT NULL,"
    " classification INTEGER NOT NULL,"
    " threat BLOB NOT NULL,"
    " recipient BLOB NOT NULL,"
    " spam_score_milli INTEGER NOT NULL,"
    " message_id BLOB NOT NULL,"
    " sender BLOB NOT NULL,"
    " relay_ip BLOB NOT NULL,"
    " subject BLOB NOT NULL);"
    "CREATE INDEX message_message_id ON message (message_id);"
    "CREATE INDEX message_customer_time ON message (customer_id, time_ns);"
    "CREATE INDEX message_recipient ON message (recipient);"
    "CREATE INDEX message_sender ON message (sender);";

static const char sqlite_insert_sql[] =
    "INSERT INTO message (customer_id, time_ns, size, destination, classification, threat,"
    " recipient, spam_score_milli, message_id, sender, relay_ip, subject)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

static void sqlite_check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        bench_fail("sqlite %s: %s (%d)", what, db != NULL ? sqlite3_errmsg(db) : "", rc);
    }
}

static sqlite3 *sqlite_connect(const char *path, int flags)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    sqlite_check(db, rc, "open");
    sqlite_check(db, sqlite3_busy_timeout(db, BENCH_SQLITE_BUSY_TIMEOUT_MS), "busy_timeout");
    sqlite_check(db, sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL),
                 "synchronous=FULL");
    tdm_assert(db != NULL);
    return db;
}

static void sqlite_peer_open(struct bench_run *run)
{
    if (mkdir(run->dir, 0755) != 0) {
        bench_fail("mkdir %s: %s", run->dir, strerror(errno));
    }
    bench_path(run->sqlite_path, run->dir, "bench.sqlite");
    sqlite3 *db = sqlite_connect(run->sqlite_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite_check(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), "WAL");
    sqlite_check(db, sqlite3_exec(db, sqlite_schema, NULL, NULL, NULL), "schema");
    sqlite_check(db, sqlite3_close(db), "close");
}

static void sqlite_peer_worker_open(struct bench_worker *worker)
{
    worker->db = sqlite_connect(worker->run->sqlite_path, SQLITE_OPEN_READWRITE);
    sqlite3 *db = worker->db;
    sqlite_check(db, sqlite3_prepare_v2(db, sqlite_insert_sql, -1, &worker->insert, NULL),
                 "prepare insert");
    sqlite_check(db, sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &worker->begin, NULL),
                 "prepare begin");
    sqlite_check(db, sqlite3_prepare_v2(db, "COMMIT", -1, &worker->commit, NULL), "prepare commit");
}

static void sqlite_bind_bytes(sqlite3_stmt *stmt, int index, const struct tandem_bytes *bytes)
{
    tdm_assert(bytes->data != NULL); /* The pool copied every string. */
    int rc = sqlite3_bind_blob(stmt, index, bytes->data, (int)bytes->size, SQLITE_STATIC);
    tdm_assert(rc == SQLITE_OK);
}

static void sqlite_insert(sqlite3 *db, sqlite3_stmt *insert, const struct tandem_message *m)
{
    uint8_t ip[17];
    ip[0] = m->relay_ip.family;
    memcpy(ip + 1, m->relay_ip.bytes, 16);
    size_t ip_size = m->relay_ip.family == 4 ? 5 : 17;
    sqlite3_bind_int64(insert, 1, m->customer_id);
    sqlite3_bind_int64(insert, 2, m->time_ns);
    sqlite3_bind_int64(insert, 3, (sqlite3_int64)m->size);
    sqlite3_bind_int64(insert, 4, m->destination);
    sqlite3_bind_int64(insert, 5, m->classification);
    sqlite_bind_bytes(insert, 6, &m->threat);
    sqlite_bind_bytes(insert, 7, &m->recipient);
    sqlite3_bind_int64(insert, 8, m->spam_score_milli);
    sqlite_bind_bytes(insert, 9, &m->message_id);
    sqlite_bind_bytes(insert, 10, &m->sender);
    sqlite3_bind_blob(insert, 11, ip, (int)ip_size, SQLITE_TRANSIENT);
    sqlite_bind_bytes(insert, 12, &m->subject);
    sqlite_check(db, sqlite3_step(insert), "insert");
    sqlite_check(db, sqlite3_reset(insert), "reset insert");
}

static void sqlite_step_once(sqlite3 *db, sqlite3_stmt *stmt, const char *what)
{
    sqlite_check(db, sqlite3_step(stmt), what);
    sqlite_check(db, sqlite3_reset(stmt), what);
}

static void sqlite_peer_append(struct bench_worker *worker, const struct tandem_record *records,
                               size_t count)
{
    tdm_assert(count > 0);
    tdm_assert(worker->db != NULL);
    if (count > 1) {
        sqlite_step_once(worker->db, worker->begin, "BEGIN IMMEDIATE");
    }
    for (size_t i = 0; i < count; i++) {
        sqlite_insert(worker->db, worker->insert, &records[i].message);
    }
    if (count > 1) {
        sqlite_step_once(worker->db, worker->commit, "COMMIT");
    }
}

static void sqlite_peer_worker_close(struct bench_worker *worker)
{
    sqlite3_finalize(worker->insert);
    sqlite3_finalize(worker->begin);
    sqlite3_finalize(worker->commit);
    sqlite_check(worker->db, sqlite3_close(worker->db), "close");
    worker->db = NULL;
}

static void sqlite_peer_close(struct bench_run *run)
{
    (void)run;
}

static const struct bench_peer bench_peer_sqlite = {
    .name = "sqlite",
    .open = sqlite_peer_open,
    .worker_open = sqlite_peer_worker_open,
    .append = sqlite_peer_append,
    .worker_close = sqlite_peer_worker_close,
    .close = sqlite_peer_close,
};

/* ---- lmdb -------------------------------------------------------------------------- */

static void lmdb_check(int rc, const char *what)
{
    if (rc != MDB_SUCCESS) {
        bench_fail("lmdb %s: %s", what, mdb_strerror(rc));
    }
}

static void lmdb_peer_open(struct bench_run *run)
{
    struct bench_lmdb *l = &run->lmdb;
    memset(l, 0, sizeof(*l));
    if (mkdir(run->dir, 0755) != 0) {
        bench_fail("mkdir %s: %s", run->dir, strerror(errno));
    }
    lmdb_check(mdb_env_create(&l->env), "mdb_env_create");
    lmdb_check(mdb_env_set_maxdbs(l->env, 8), "mdb_env_set_maxdbs");
    lmdb_check(mdb_env_set_mapsize(l->env, BENCH_LMDB_MAP_SIZE), "mdb_env_set_mapsize");
    lmdb_check(mdb_env_open(l->env, run->dir, 0, 0644), "mdb_env_open"); /* Durable sync. */
    MDB_txn *txn = NULL;
    lmdb_check(mdb_txn_begin(l->env, NULL, 0, &txn), "mdb_txn_begin");
    lmdb_check(mdb_dbi_open(txn, "record", MDB_CREATE, &l->record), "open record");
    lmdb_check(mdb_dbi_open(txn, "message_id", MDB_CREATE | MDB_DUPSORT, &l->message_id),
               "open message_id");
    lmdb_check(mdb_dbi_open(txn, "customer_time", MDB_CREATE, &l->customer_time),
               "open customer_time");
    lmdb_check(mdb_dbi_open(txn, "recipient", MDB_CREATE | MDB_DUPSORT, &l->recipient),
               "open recipient");
    lmdb_check(mdb_dbi_open(txn, "sender", MDB_CREATE | MDB_DUPSORT, &l->sender), "open sender");
    lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
}

static size_t lmdb_put_u32(uint8_t *out, uint32_t value)
{
    for (int i = 0; i < 4; i++) {
        out[i] = (uint8_t)(value >> (24 - 8 * i));
    }
    return 4;
}

static size_t lmdb_put_u64(uint8_t *out, uint64_t value)
{
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(value >> (56 - 8 * i));
    }
    return 8;
}

static size_t lmdb_put_bytes(uint8_t *out, const struct tandem_bytes *bytes)
{
    tdm_assert(bytes->size <= UINT16_MAX);
    out[0] = (uint8_t)(bytes->size >> 8);
    out[1] = (uint8_t)bytes->size;
    if (bytes->size > 0) {
        memcpy(out + 2, bytes->data, bytes->size);
    }
    return 2 + bytes->size;
}

/* Pack a message record (big-endian integers, length-prefixed strings). */
static size_t lmdb_pack(uint8_t *out, const struct tandem_message *m)
{
    size_t n = 0;
    n += lmdb_put_u32(out + n, m->customer_id);
    n += lmdb_put_u64(out + n, (uint64_t)m->time_ns);
    n += lmdb_put_u64(out + n, m->size);
    out[n++] = (uint8_t)m->destination;
    out[n++] = (uint8_t)m->classification;
    n += lmdb_put_u32(out + n, (uint32_t)m->spam_score_milli);
    out[n++] = m->relay_ip.family;
    memcpy(out + n, m->relay_ip.bytes, 16);
    n += 16;
    n += lmdb_put_bytes(out + n, &m->threat);
    n += lmdb_put_bytes(out + n, &m->recipient);
    n += lmdb_put_bytes(out + n, &m->message_id);
    n += lmdb_put_bytes(out + n, &m->sender);
    n += lmdb_put_bytes(out + n, &m->subject);
    tdm_assert(n <= BENCH_LMDB_VALUE_SIZE_MAX);
    return n;
}

static void lmdb_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size, const void *value,
                     size_t value_size, unsigned flags)
{
    MDB_val k = {.mv_size = key_size, .mv_data = (void *)(uintptr_t)key};
    MDB_val v = {.mv_size = value_size, .mv_data = (void *)(uintptr_t)value};
    lmdb_check(mdb_put(txn, dbi, &k, &v, flags), "mdb_put");
}

/* A key of the customer and one address, as tandem's index makes it. */
static size_t lmdb_address_key(uint8_t *out, uint32_t customer_id,
                               const struct tandem_bytes *address)
{
    tdm_assert(address->size <= TANDEM_ADDRESS_SIZE_MAX);
    size_t n = lmdb_put_u32(out, customer_id);
    if (address->size > 0) {
        memcpy(out + n, address->data, address->size);
    }
    return n + address->size;
}

static void lmdb_store(struct bench_lmdb *l, MDB_txn *txn, const struct tandem_message *m)
{
    uint64_t lsn = ++l->lsn_last;
    uint8_t key[4 + TANDEM_ADDRESS_SIZE_MAX];
    uint8_t value[BENCH_LMDB_VALUE_SIZE_MAX];
    uint8_t lsn_key[8];
    lmdb_put_u64(lsn_key, lsn);
    size_t value_size = lmdb_pack(value, m);
    lmdb_put(txn, l->record, lsn_key, 8, value, value_size, MDB_APPEND);
    if (m->message_id.size > 0) {
        size_t size = m->message_id.size < BENCH_LMDB_FIELD_SIZE_MAX ? m->message_id.size
                                                                     : BENCH_LMDB_FIELD_SIZE_MAX;
        lmdb_put(txn, l->message_id, m->message_id.data, size, lsn_key, 8, 0);
    }
    uint8_t time_lsn[16];
    lmdb_put_u64(time_lsn, (uint64_t)m->time_ns);
    lmdb_put_u64(time_lsn + 8, lsn);
    size_t n = lmdb_put_u32(key, m->customer_id);
    memcpy(key + n, time_lsn, 16);
    lmdb_put(txn, l->customer_time, key, n + 16, "", 0, 0);
    n = lmdb_address_key(key, m->customer_id, &m->recipient);
    lmdb_put(txn, l->recipient, key, n, time_lsn, 16, 0);
    n = lmdb_address_key(key, m->customer_id, &m->sender);
    lmdb_put(txn, l->sender, key, n, time_lsn, 16, 0);
}

static void lmdb_peer_append(struct bench_worker *worker, const struct tandem_record *records,
                             size_t count)
{
    struct bench_lmdb *l = &worker->run->lmdb;
    tdm_assert(count > 0);
    MDB_txn *txn = NULL;
    lmdb_check(mdb_txn_begin(l->env, NULL, 0, &txn), "mdb_txn_begin");
    for (size_t i = 0; i < count; i++) {
        lmdb_store(l, txn, &records[i].message);
    }
    lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
}

static void lmdb_peer_close(struct bench_run *run)
{
    mdb_env_close(run->lmdb.env);
    run->lmdb.env = NULL;
}

static const struct bench_peer bench_peer_lmdb = {
    .name = "lmdb",
    .open = lmdb_peer_open,
    .worker_open = NULL,
    .append = lmdb_peer_append,
    .worker_close = NULL,
    .close = lmdb_peer_close,
};

/* ---- one peer under one configuration ------------------------------------------------ */

static void *bench_worker_main(void *arg)
{
    struct bench_worker *worker = arg;
    struct bench_run *run = worker->run;
    size_t batch = run->config->batch_size;
    size_t limit = run->pool->count;
    pthread_barrier_wait(&run->start);
    for (;;) {
        int64_t begin_ns = bench_now_ns();
        if (begin_ns >= run->deadline_ns) {
            break;
        }
        size_t first = atomic_fetch_add(&run->next_index, batch);
        if (first >= limit) {
            break;
        }
        size_t count = limit - first < batch ? limit - first : batch;
        run->peer->append(worker, &run->pool->records[first], count);
        run->latency_ns[first / batch] = bench_now_ns() - begin_ns;
        worker->record_count += count;
        worker->call_count++;
    }
    return NULL;
}

/* Make the peer's store in a fresh directory and connect every thread. */
static struct bench_run *bench_run_open(const struct bench_peer *peer,
                                        const struct bench_config *config,
                                        const struct bench_pool *pool, const char *root)
{
    tdm_assert(config->thread_count >= 1);
    tdm_assert(config->thread_count <= BENCH_THREADS_MAX);
    struct bench_run *run = calloc(1, sizeof(*run));
    if (run == NULL) {
        bench_fail("out of memory");
    }
    run->peer = peer;
    run->config = config;
    run->pool = pool;
    atomic_init(&run->next_index, 0);
    run->latency_ns = calloc(pool->count, sizeof(run->latency_ns[0]));
    run->workers = calloc(config->thread_count, sizeof(run->workers[0]));
    run->calls = config->async ? calloc(pool->count, sizeof(run->calls[0])) : NULL;
    if (run->latency_ns == NULL || run->workers == NULL || (config->async && run->calls == NULL)) {
        bench_fail("out of memory for %zu latencies", pool->count);
    }
    char name[128];
    snprintf(name, sizeof(name), "%s-%s", peer->name, config->name);
    bench_path(run->dir, root, name);
    peer->open(run);
    for (uint32_t i = 0; i < config->thread_count; i++) {
        run->workers[i].run = run;
        if (peer->worker_open != NULL) {
            peer->worker_open(&run->workers[i]);
        }
    }
    return run;
}

/* Disconnect, close the store, remove its directory and free the run. */
static void bench_run_close(struct bench_run *run)
{
    for (uint32_t i = 0; i < run->config->thread_count; i++) {
        if (run->peer->worker_close != NULL) {
            run->peer->worker_close(&run->workers[i]);
        }
    }
    run->peer->close(run);
    bench_remove_tree(run->dir);
    free(run->calls);
    free(run->workers);
    free(run->latency_ns);
    free(run);
}

/* Start the threads together, let them append for seconds, join them. */
static void bench_slice_threads(struct bench_run *run, double seconds, struct bench_result *result)
{
    uint32_t thread_count = run->config->thread_count;
    int rv = pthread_barrier_init(&run->start, NULL, thread_count + 1);
    tdm_assert(rv == 0);
    run->deadline_ns = INT64_MAX; /* Set below, once every thread exists. */
    for (uint32_t i = 0; i < thread_count; i++) {
        run->workers[i].record_count = 0;
        run->workers[i].call_count = 0;
        rv = pthread_create(&run->workers[i].thread, NULL, bench_worker_main, &run->workers[i]);
        if (rv != 0) {
            bench_fail("pthread_create: %s", strerror(rv));
        }
    }
    int64_t start_ns = bench_now_ns();
    run->deadline_ns = start_ns + (int64_t)(seconds * 1e9);
    pthread_barrier_wait(&run->start); /* Publishes the deadline to every thread. */
    for (uint32_t i = 0; i < thread_count; i++) {
        pthread_join(run->workers[i].thread, NULL);
        result->record_count += run->workers[i].record_count;
        result->call_count += run->workers[i].call_count;
    }
    result->seconds += (double)(bench_now_ns() - start_ns) / 1e9;
    pthread_barrier_destroy(&run->start);
}

/* ---- async ------------------------------------------------------------------------- */

/* The window of tandem_append_async() calls in flight. Thread-safe: mutex. */
struct bench_async {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    size_t in_flight;     /* Calls whose callback has not run. */
    size_t done_count;    /* Records whose callback ran. */
    int status;           /* First failure, or 0. */
    int64_t last_done_ns; /* When the last callback ran. */
    int64_t *latency_ns;  /* Submit time, then latency, per call. */
};

static void bench_async_cb(void *data, int status, uint64_t lsn_first)
{
    struct bench_async_call *call = data;
    struct bench_async *a = call->async;
    int64_t now_ns = bench_now_ns();
    tdm_assert(status != 0 || lsn_first > 0);
    a->latency_ns[call->index] = now_ns - a->latency_ns[call->index];
    pthread_mutex_lock(&a->mutex);
    tdm_assert(a->in_flight > 0);
    a->in_flight--;
    a->done_count++;
    if (status != 0 && a->status == 0) {
        a->status = status;
    }
    a->last_done_ns = now_ns;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mutex);
}

static void bench_async_submit(struct bench_run *run, struct bench_async *a, size_t index,
                               uint32_t window)
{
    pthread_mutex_lock(&a->mutex);
    while (a->in_flight >= window) {
        pthread_cond_wait(&a->cond, &a->mutex);
    }
    a->in_flight++;
    pthread_mutex_unlock(&a->mutex);
    struct bench_async_call *call = &run->calls[index];
    call->async = a;
    call->index = index;
    a->latency_ns[index] = bench_now_ns();
    struct tandem_diag diag = {{0}};
    int rv = tandem_append_async(run->tandem, &run->pool->records[index], 1, bench_async_cb, call,
                                 &diag);
    if (rv != 0) {
        bench_fail("tandem_append_async: %s: %s", tandem_strerror(rv), diag.message);
    }
}

/* One thread keeps up to window single-record calls in flight for seconds. */
static void bench_slice_async(struct bench_run *run, double seconds, uint32_t window,
                              struct bench_result *result)
{
    tdm_assert(run->tandem != NULL);
    tdm_assert(run->config->batch_size == 1);
    struct bench_async a = {.latency_ns = run->latency_ns};
    pthread_mutex_init(&a.mutex, NULL);
    pthread_cond_init(&a.cond, NULL);
    size_t first = atomic_load(&run->next_index);
    size_t index = first;
    int64_t start_ns = bench_now_ns();
    int64_t deadline_ns = start_ns + (int64_t)(seconds * 1e9);
    while (index < run->pool->count && bench_now_ns() < deadline_ns) {
        bench_async_submit(run, &a, index, window);
        index++;
    }
    pthread_mutex_lock(&a.mutex);
    while (a.in_flight > 0) {
        pthread_cond_wait(&a.cond, &a.mutex);
    }
    pthread_mutex_unlock(&a.mutex);
    if (a.status != 0) {
        bench_fail("tandem_append_async callback: %s", tandem_strerror(a.status));
    }
    tdm_assert(a.done_count == index - first);
    atomic_store(&run->next_index, index);
    result->record_count += index - first;
    result->call_count += index - first;
    result->seconds += (double)((index > first ? a.last_done_ns : start_ns) - start_ns) / 1e9;
    pthread_cond_destroy(&a.cond);
    pthread_mutex_destroy(&a.mutex);
}

/* ---- rounds and results ------------------------------------------------------------ */

/* One round of one peer: append for seconds, then (tandem) wait for the index. */
static void bench_run_slice(struct bench_run *run, const struct bench_options *o, double seconds,
                            struct bench_result *result)
{
    bench_syncfs(run->dir); /* Leave no dirty pages of other peers behind. */
    struct bench_rss rss;
    bench_rss_begin(&rss);
    if (run->config->async) {
        bench_slice_async(run, seconds, o->async_window, result);
    } else {
        bench_slice_threads(run, seconds, result);
    }
    if (run->tandem != NULL) {
        int64_t wait_ns = bench_now_ns();
        tandem_peer_wait_indexed(run->tandem);
        result->catch_up_ms += (double)(bench_now_ns() - wait_ns) / 1e6;
    }
    bench_rss_end(&rss);
    result->rss_growth_kb += bench_rss_growth_kb(&rss);
    result->rss_anon_growth_kb += bench_rss_anon_growth_kb(&rss);
    result->phase_peak_kb =
        rss.phase_peak_kb > result->phase_peak_kb ? rss.phase_peak_kb : result->phase_peak_kb;
    result->process_peak_kb = rss.process_peak_kb;
}

/* Turn the sums of every round into rates and percentiles. */
static void bench_run_finish(struct bench_run *run, struct bench_result *result)
{
    /* The calls are numbered 0 .. call_count - 1 across rounds: every claim
     * below the limit was carried out. */
    tdm_assert(result->call_count <= run->pool->count);
    result->p50_us = bench_percentile_us(run->latency_ns, result->call_count, 50);
    result->p99_us = bench_percentile_us(run->latency_ns, result->call_count, 99);
    result->records_per_s = bench_ratio((double)result->record_count, result->seconds);
    result->indexed_records_per_s =
        bench_ratio((double)result->record_count, result->seconds + result->catch_up_ms / 1000.0);
}

static void bench_result_print(const char *peer, const char *config, const struct bench_result *r)
{
    char name[128];
    snprintf(name, sizeof(name), "ingest.%s.%s", peer, config);
    bench_result(name, "records_per_s", r->records_per_s);
    bench_result(name, "latency_p50_us", r->p50_us);
    bench_result(name, "latency_p99_us", r->p99_us);
    bench_result(name, "records", (double)r->record_count);
    if (strcmp(peer, "tandem") == 0) {
        bench_result(name, "index_catch_up_ms", r->catch_up_ms);
        bench_result(name, "indexed_records_per_s", r->indexed_records_per_s);
    }
    bench_result(name, "rss_growth_kb", r->rss_growth_kb);
    bench_result(name, "rss_anon_growth_kb", r->rss_anon_growth_kb);
    bench_result(name, "phase_peak_rss_kb", (double)r->phase_peak_kb);
    bench_result(name, "process_peak_rss_kb", (double)r->process_peak_kb);
    fflush(stdout);
}

/* Print tandem's figures over those of one peer. */
static void bench_ratio_print(const char *config, const char *peer, const char *suffix,
                              const struct bench_result *tandem, const struct bench_result *other)
{
    static const char *const measures[] = {
        "tandem_over_",     "indexed_tandem_over_",    "p50_tandem_over_",
        "p99_tandem_over_", "rss_growth_tandem_over_", "rss_anon_growth_tandem_over_"};
    const double values[] = {
        bench_ratio(tandem->records_per_s, other->records_per_s),
        bench_ratio(tandem->indexed_records_per_s, other->records_per_s),
        bench_ratio(tandem->p50_us, other->p50_us),
        bench_ratio(tandem->p99_us, other->p99_us),
        bench_ratio(tandem->rss_growth_kb, other->rss_growth_kb),
        bench_ratio(tandem->rss_anon_growth_kb, other->rss_anon_growth_kb),
    };
    tdm_static_assert(sizeof(measures) / sizeof(measures[0]) == sizeof(values) / sizeof(values[0]));
    if (tandem->record_count == 0 || other->record_count == 0) {
        return; /* One of them did not run (--configs). */
    }
    char name[128];
    snprintf(name, sizeof(name), "ingest.%s", config);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char measure[128];
        snprintf(measure, sizeof(measure), "%s%s%s", measures[i], peer, suffix);
        bench_result(name, measure, values[i]);
    }
    fflush(stdout);
}

/* ---- the query benchmark ------------------------------------------------------------- */

/* What a query returned, to compare tandem's answer with SQLite's. */
struct bench_tally {
    size_t row_count;
    uint64_t lsn_sum;
    uint64_t byte_sum; /* Bytes of the strings read. */
};

/* One query: a customer's one-hour window. */
struct bench_query_spec {
    uint32_t customer_id;
    int64_t since_ns;
};

static int bench_tally_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    struct bench_tally *tally = data;
    tdm_assert(record->type == TANDEM_RECORD_MESSAGE);
    const struct tandem_message *m = &record->message;
    tally->row_count++;
    tally->lsn_sum += lsn;
    tally->byte_sum +=
        m->threat.size + m->recipient.size + m->message_id.size + m->sender.size + m->subject.size;
    return 0;
}

static struct tandem *bench_query_load_tandem(const char *dir, const struct bench_pool *pool,
                                              size_t count, uint32_t batch)
{
    struct bench_run run;
    memset(&run, 0, sizeof(run));
    snprintf(run.dir, sizeof(run.dir), "%s", dir);
    tandem_peer_open(&run);
    for (size_t first = 0; first < count; first += batch) {
        size_t n = count - first < batch ? count - first : batch;
        struct tandem_diag diag = {{0}};
        uint64_t lsn_first = 0;
        int rv = tandem_append(run.tandem, &pool->records[first], n, &lsn_first, &diag);
        if (rv != 0) {
            bench_fail("tandem_append: %s: %s", tandem_strerror(rv), diag.message);
        }
        tdm_assert(lsn_first == first + 1); /* One writer: LSNs follow the pool. */
    }
    tandem_peer_wait_indexed(run.tandem);
    return run.tandem;
}

static sqlite3 *bench_query_load_sqlite(const char *dir, const struct bench_pool *pool,
                                        size_t count)
{
    struct bench_run run;
    memset(&run, 0, sizeof(run));
    snprintf(run.dir, sizeof(run.dir), "%s", dir);
    sqlite_peer_open(&run);
    struct bench_worker worker = {.run = &run};
    sqlite_peer_worker_open(&worker);
    for (size_t first = 0; first < count; first += BENCH_SQLITE_LOAD_TXN_RECORDS) {
        size_t n = count - first < BENCH_SQLITE_LOAD_TXN_RECORDS ? count - first
                                                                 : BENCH_SQLITE_LOAD_TXN_RECORDS;
        /* Rows get rowids 1, 2, ... in pool order: the same LSNs as tandem's. */
        sqlite_peer_append(&worker, &pool->records[first], n);
    }
    sqlite3 *db = worker.db;
    sqlite3_finalize(worker.insert);
    sqlite3_finalize(worker.begin);
    sqlite3_finalize(worker.commit);
    return db;
}

static const char sqlite_query_sql[] =
    "SELECT lsn, customer_id, time_ns, size, destination, classification, threat, recipient,"
    " spam_score_milli, message_id, sender, relay_ip, subject FROM message"
    " WHERE customer_id = ?1 AND time_ns >= ?2 AND time_ns < ?3 ORDER BY time_ns, lsn";

static void bench_query_sqlite(sqlite3 *db, sqlite3_stmt *select,
                               const struct bench_query_spec *spec, struct bench_tally *tally)
{
    sqlite3_bind_int64(select, 1, spec->customer_id);
    sqlite3_bind_int64(select, 2, spec->since_ns);
    sqlite3_bind_int64(select, 3, spec->since_ns + BENCH_QUERY_WINDOW_NS);
    int rc;
    while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
        tally->row_count++;
        tally->lsn_sum += (uint64_t)sqlite3_column_int64(select, 0);
        for (int column = 1; column <= 5; column++) {
            (void)sqlite3_column_int64(select, column);
        }
        (void)sqlite3_column_int64(select, 8);
        (void)sqlite3_column_blob(select, 11);
        static const int strings[] = {6, 7, 9, 10, 12};
        for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
            (void)sqlite3_column_blob(select, strings[i]);
            tally->byte_sum += (uint64_t)sqlite3_column_bytes(select, strings[i]);
        }
    }
    sqlite_check(db, rc, "select");
    sqlite_check(db, sqlite3_reset(select), "reset select");
}

static void bench_query_tandem(struct tandem *t, const struct bench_query_spec *spec,
                               struct bench_tally *tally)
{
    struct tandem_query query;
    tandem_query_init(&query, spec->customer_id);
    query.since_ns = spec->since_ns;
    query.until_ns = spec->since_ns + BENCH_QUERY_WINDOW_NS;
    struct tandem_diag diag = {{0}};
    int rv = tandem_query(t, &query, bench_tally_cb, tally, &diag);
    if (rv != 0) {
        bench_fail("tandem_query: %s: %s", tandem_strerror(rv), diag.message);
    }
}

static struct bench_query_spec *bench_query_specs(const struct bench_pool *pool, size_t count,
                                                  const struct bench_options *o)
{
    struct bench_query_spec *specs = calloc(o->query_count, sizeof(*specs));
    if (specs == NULL) {
        bench_fail("out of memory for %u queries", o->query_count);
    }
    struct tdm_prng prng;
    tdm_prng_init(&prng, o->seed ^ 0x5155455259ULL);
    for (uint32_t i = 0; i < o->query_count; i++) {
        /* A window that holds at least one of the customer's records. */
        const struct tandem_message *m = &pool->records[tdm_prng_below(&prng, count)].message;
        specs[i].customer_id = m->customer_id;
        specs[i].since_ns =
            m->time_ns - (int64_t)tdm_prng_below(&prng, (uint64_t)BENCH_QUERY_WINDOW_NS);
    }
    return specs;
}

/* Measured query latencies of both peers, in ns, and their total rows. */
struct bench_query_times {
    int64_t *tandem_ns;
    int64_t *sqlite_ns;
    size_t tandem_rows;
    size_t sqlite_rows;
    double tandem_seconds;
    double sqlite_seconds;
};

/* Run every query on both peers, interleaved, and check the answers agree. */
static void bench_query_run(struct tandem *t, sqlite3 *db, sqlite3_stmt *select,
                            const struct bench_query_spec *specs, uint32_t count,
                            struct bench_query_times *times)
{
    for (uint32_t i = 0; i < count; i++) {
        struct bench_tally a = {0};
        struct bench_tally b = {0};
        int64_t t0 = bench_now_ns();
        bench_query_tandem(t, &specs[i], &a);
        int64_t t1 = bench_now_ns();
        bench_query_sqlite(db, select, &specs[i], &b);
        int64_t t2 = bench_now_ns();
        if (a.row_count != b.row_count || a.lsn_sum != b.lsn_sum || a.byte_sum != b.byte_sum) {
            bench_fail("query %u (customer %u, since %" PRId64 "): tandem returned %zu rows, "
                       "sqlite %zu (LSN sums %" PRIu64 " and %" PRIu64 ")",
                       i, specs[i].customer_id, specs[i].since_ns, a.row_count, b.row_count,
                       a.lsn_sum, b.lsn_sum);
        }
        if (times != NULL) {
            times->tandem_ns[i] = t1 - t0;
            times->sqlite_ns[i] = t2 - t1;
            times->tandem_seconds += (double)(t1 - t0) / 1e9;
            times->sqlite_seconds += (double)(t2 - t1) / 1e9;
            times->tandem_rows += a.row_count;
            times->sqlite_rows += b.row_count;
        }
    }
}

static void bench_query_print(const struct bench_query_times *times, uint32_t count)
{
    double rows = (double)times->tandem_rows / count;
    double tandem_rate = bench_ratio(count, times->tandem_seconds);
    double sqlite_rate = bench_ratio(count, times->sqlite_seconds);
    double tandem_p50 = bench_percentile_us(times->tandem_ns, count, 50);
    double tandem_p99 = bench_percentile_us(times->tandem_ns, count, 99);
    double sqlite_p50 = bench_percentile_us(times->sqlite_ns, count, 50);
    double sqlite_p99 = bench_percentile_us(times->sqlite_ns, count, 99);
    bench_result("query.tandem", "queries_per_s", tandem_rate);
    bench_result("query.tandem", "latency_p50_us", tandem_p50);
    bench_result("query.tandem", "latency_p99_us", tandem_p99);
    bench_result("query.tandem", "rows_per_query", rows);
    bench_result("query.sqlite", "queries_per_s", sqlite_rate);
    bench_result("query.sqlite", "latency_p50_us", sqlite_p50);
    bench_result("query.sqlite", "latency_p99_us", sqlite_p99);
    bench_result("query.sqlite", "rows_per_query", (double)times->sqlite_rows / count);
    bench_result("query", "tandem_over_sqlite", bench_ratio(tandem_rate, sqlite_rate));
    bench_result("query", "p50_tandem_over_sqlite", bench_ratio(tandem_p50, sqlite_p50));
    bench_result("query", "p99_tandem_over_sqlite", bench_ratio(tandem_p99, sqlite_p99));
    fflush(stdout);
}

/* Load both stores (each its own memory phase), then time the queries. */
static void bench_query(const struct bench_pool *pool, const struct bench_options *o,
                        const char *root)
{
    size_t count = o->query_record_count;
    char tandem_dir[BENCH_PATH_SIZE];
    char sqlite_dir[BENCH_PATH_SIZE];
    bench_path(tandem_dir, root, "query-tandem");
    bench_path(sqlite_dir, root, "query-sqlite");
    struct bench_rss tandem_rss;
    struct bench_rss sqlite_rss;
    bench_rss_begin(&tandem_rss);
    int64_t t0 = bench_now_ns();
    struct tandem *t = bench_query_load_tandem(tandem_dir, pool, count, o->query_load_batch);
    int64_t t1 = bench_now_ns();
    bench_rss_end(&tandem_rss);
    bench_rss_begin(&sqlite_rss);
    sqlite3 *db = bench_query_load_sqlite(sqlite_dir, pool, count);
    int64_t t2 = bench_now_ns();
    bench_rss_end(&sqlite_rss);
    printf("# query: loaded %zu records into tandem (calls of %u records) in %.2f s and into "
           "sqlite (transactions of %u) in %.2f s\n",
           count, o->query_load_batch, (double)(t1 - t0) / 1e9, BENCH_SQLITE_LOAD_TXN_RECORDS,
           (double)(t2 - t1) / 1e9);
    bench_rss_print("query.load.tandem", &tandem_rss);
    bench_rss_print("query.load.sqlite", &sqlite_rss);
    bench_result("query.load", "rss_growth_tandem_over_sqlite",
                 bench_ratio(bench_rss_growth_kb(&tandem_rss), bench_rss_growth_kb(&sqlite_rss)));
    bench_result(
        "query.load", "rss_anon_growth_tandem_over_sqlite",
        bench_ratio(bench_rss_anon_growth_kb(&tandem_rss), bench_rss_anon_growth_kb(&sqlite_rss)));

    sqlite3_stmt *select = NULL;
    sqlite_check(db, sqlite3_prepare_v2(db, sqlite_query_sql, -1, &select, NULL), "prepare");
    struct bench_query_spec *specs = bench_query_specs(pool, count, o);
    struct bench_query_times times = {
        .tandem_ns = calloc(o->query_count, sizeof(int64_t)),
        .sqlite_ns = calloc(o->query_count, sizeof(int64_t)),
    };
    if (times.tandem_ns == NULL || times.sqlite_ns == NULL) {
        bench_fail("out of memory for %u latencies", o->query_count);
    }
    struct bench_rss query_rss;
    bench_rss_begin(&query_rss);
    uint32_t warmup =
        o->query_count < BENCH_QUERY_WARMUP_COUNT ? o->query_count : BENCH_QUERY_WARMUP_COUNT;
    bench_query_run(t, db, select, specs, warmup, NULL);
    bench_query_run(t, db, select, specs, o->query_count, &times);
    bench_rss_end(&query_rss);
    bench_query_print(&times, o->query_count);
    bench_rss_print("query.run", &query_rss);
    free(times.tandem_ns);
    free(times.sqlite_ns);
    free(specs);
    sqlite3_finalize(select);
    sqlite_check(db, sqlite3_close(db), "close");
    tandem_close(t);
    bench_remove_tree(tandem_dir);
    bench_remove_tree(sqlite_dir);
}

/* ---- the machine ------------------------------------------------------------------------ */

/* Print the block device under dir and whether the kernel calls it rotational. */
static void bench_describe_device(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        bench_fail("stat %s: %s", dir, strerror(errno));
    }
    unsigned major_id = major(st.st_dev);
    unsigned minor_id = minor(st.st_dev);
    char link[BENCH_PATH_SIZE];
    char target[BENCH_PATH_SIZE];
    snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major_id, minor_id);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    const char *device = "none (not a block device)";
    if (n > 0) {
        target[n] = '\0';
        device = strrchr(target, '/') != NULL ? strrchr(target, '/') + 1 : target;
    }
    int rotational = -1;
    static const char *const suffixes[] = {"queue/rotational", "../queue/rotational"};
    for (size_t i = 0; i < 2 && rotational < 0 && n > 0; i++) {
        char path[BENCH_PATH_SIZE + 64];
        snprintf(path, sizeof(path), "%s/%s", link, suffixes[i]);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            if (fscanf(f, "%d", &rotational) != 1) {
                rotational = -1;
            }
            fclose(f);
        }
    }
    printf("# device %s (%u:%u), rotational %s (as the kernel reports it)\n", device, major_id,
           minor_id,
           rotational < 0 ? "unknown"
           : rotational   ? "1 (disk)"
                          : "0 (ssd or virtual)");
}

/* Time fdatasync after a 4 KiB append in dir: the floor of a durable commit. */
static void bench_describe_fdatasync(const char *dir)
{
    char path[BENCH_PATH_SIZE];
    bench_path(path, dir, "fdatasync-probe");
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        bench_fail("open %s: %s", path, strerror(errno));
    }
    static char block[4096];
    int64_t samples[BENCH_FDATASYNC_COUNT];
    for (unsigned i = 0; i < BENCH_FDATASYNC_COUNT; i++) {
        memset(block, (int)i, sizeof(block));
        if (pwrite(fd, block, sizeof(block), (off_t)i * (off_t)sizeof(block)) != sizeof(block)) {
            bench_fail("pwrite %s: %s", path, strerror(errno));
        }
        int64_t begin_ns = bench_now_ns();
        if (fdatasync(fd) != 0) {
            bench_fail("fdatasync %s: %s", path, strerror(errno));
        }
        samples[i] = bench_now_ns() - begin_ns;
    }
    close(fd);
    unlink(path);
    double p50 = bench_percentile_us(samples, BENCH_FDATASYNC_COUNT, 50);
    double p99 = bench_percentile_us(samples, BENCH_FDATASYNC_COUNT, 99);
    printf("# fdatasync after a 4 KiB append: p50 %.1f us, p99 %.1f us (%u calls)\n", p50, p99,
           BENCH_FDATASYNC_COUNT);
}

/* Print the load average: other work on a shared machine skews every figure. */
static void bench_describe_load(const char *when)
{
    char line[128] = "unknown";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(line, sizeof(line), f) == NULL) {
            snprintf(line, sizeof(line), "unknown");
        }
        fclose(f);
    }
    line[strcspn(line, "\n")] = '\0';
    printf("# load average %s: %s\n", when, line);
}

static void bench_describe(const char *root, const struct bench_options *o)
{
    struct statfs sfs;
    if (statfs(root, &sfs) != 0) {
        bench_fail("statfs %s: %s", root, strerror(errno));
    }
    printf("# bench_ingest: tandem %d.%d, sqlite %s, %s\n", TANDEM_VERSION_MAJOR,
           TANDEM_VERSION_MINOR, sqlite3_libversion(), mdb_version(NULL, NULL, NULL));
    printf("# cores %ld, memory %ld MiB\n", sysconf(_SC_NPROCESSORS_ONLN),
           sysconf(_SC_PHYS_PAGES) / 1024 * sysconf(_SC_PAGESIZE) / 1024);
    printf("# dir %s on %s (statfs f_type 0x%lx)\n", root, bench_fs_name((unsigned long)sfs.f_type),
           (unsigned long)sfs.f_type);
    bench_describe_device(root);
    bench_describe_load("at start");
    bench_describe_fdatasync(root);
    printf("# %.1f s per configuration and peer in %u rounds, at most %zu records; batch %u "
           "records per call; async window %u calls; seed %" PRIu64 ", %u customers\n",
           o->seconds, o->rounds, o->record_count, o->batch_size, o->async_window, o->seed,
           o->customer_count);
    fflush(stdout);
}

/* ---- main ------------------------------------------------------------------------------- */

static const struct bench_peer *const bench_peers[BENCH_PEER_COUNT] = {
    &bench_peer_tandem,
    &bench_peer_sqlite,
    &bench_peer_lmdb,
};

/* One line of the summary table, in Markdown. */
static void bench_summary_row(const struct bench_config *config,
                              const struct bench_result results[BENCH_PEER_COUNT],
                              const struct bench_result batch[BENCH_PEER_COUNT])
{
    const struct bench_result *peers = config->async ? batch : results;
    printf("# | %s | %.0f | %.0f / %.0f |", config->name, results[0].records_per_s,
           results[0].p50_us, results[0].p99_us);
    for (unsigned p = 1; p < BENCH_PEER_COUNT; p++) {
        printf(" %.0f | %.0f / %.0f |", peers[p].records_per_s, peers[p].p50_us, peers[p].p99_us);
    }
    printf(" %.2f | %.2f |\n", bench_ratio(results[0].records_per_s, peers[1].records_per_s),
           bench_ratio(results[0].records_per_s, peers[2].records_per_s));
}

static void bench_summary(const struct bench_config *configs,
                          struct bench_result results[][BENCH_PEER_COUNT], unsigned batch_index)
{
    printf("#\n# | config | tandem rec/s | p50 / p99 us | sqlite rec/s | p50 / p99 us |"
           " lmdb rec/s | p50 / p99 us | tandem/sqlite | tandem/lmdb |\n");
    printf("# | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (unsigned c = 0; c < BENCH_CONFIG_COUNT; c++) {
        if (results[c][0].record_count > 0) {
            bench_summary_row(&configs[c], results[c], results[batch_index]);
        }
    }
    printf("# (async is compared with the peers' batch figures: they have no async API)\n");
}

/* Run every peer under one configuration: open all stores, then give each
 * peer its share of the time in o->rounds turns, rotating the order every
 * round, so that a burst of noise from the shared machine falls on all. */
static void bench_config_run(const struct bench_config *config, const struct bench_pool *pool,
                             const struct bench_options *o, const char *root,
                             struct bench_result results[BENCH_PEER_COUNT])
{
    struct bench_run *runs[BENCH_PEER_COUNT] = {NULL};
    for (unsigned p = 0; p < BENCH_PEER_COUNT; p++) {
        memset(&results[p], 0, sizeof(results[p]));
        if (!bench_listed(o->peers, bench_peers[p]->name)) {
            continue;
        }
        if (!config->async || bench_peers[p] == &bench_peer_tandem) {
            runs[p] = bench_run_open(bench_peers[p], config, pool, root);
        }
    }
    double seconds = o->seconds / o->rounds;
    for (unsigned round = 0; round < o->rounds; round++) {
        for (unsigned i = 0; i < BENCH_PEER_COUNT; i++) {
            unsigned p = (i + round) % BENCH_PEER_COUNT;
            if (runs[p] != NULL) {
                bench_run_slice(runs[p], o, seconds, &results[p]);
            }
        }
    }
    for (unsigned p = 0; p < BENCH_PEER_COUNT; p++) {
        if (runs[p] != NULL) {
            bench_run_finish(runs[p], &results[p]);
            bench_result_print(bench_peers[p]->name, config->name, &results[p]);
            bench_run_close(runs[p]);
        }
    }
}

static void bench_ingest(const struct bench_config *configs, const struct bench_pool *pool,
                         const struct bench_options *o, const char *root,
                         struct bench_result results[][BENCH_PEER_COUNT], unsigned batch_index)
{
    for (unsigned c = 0; c < BENCH_CONFIG_COUNT; c++) {
        if (!bench_listed(o->configs, configs[c].name)) {
            continue;
        }
        bench_config_run(&configs[c], pool, o, root, results[c]);
        /* The peers have no async API: async is set beside their batch figures. */
        const struct bench_result *peers = configs[c].async ? results[batch_index] : results[c];
        const char *suffix = configs[c].async ? "_batch" : "";
        bench_ratio_print(configs[c].name, "sqlite", suffix, &results[c][0], &peers[1]);
        bench_ratio_print(configs[c].name, "lmdb", suffix, &results[c][0], &peers[2]);
    }
}

int main(int argc, char **argv)
{
    struct bench_options o;
    bench_options_parse(&o, argc, argv);
    char root[BENCH_PATH_SIZE];
    bench_path(root, o.dir_parent, "tandem-bench-XXXXXX");
    if (mkdtemp(root) == NULL) {
        bench_fail("mkdtemp %s: %s", root, strerror(errno));
    }
    bench_describe(root, &o);

    struct bench_pool pool;
    struct bench_rss pool_rss;
    bench_rss_begin(&pool_rss);
    int64_t t0 = bench_now_ns();
    bench_pool_build(&pool, o.record_count, o.seed, o.customer_count, BENCH_CHUNK_SIZE, bench_fail);
    bench_rss_end(&pool_rss);
    printf("# generated %zu records (%.1f MiB of strings) in %.2f s\n", pool.count,
           (double)pool.string_size / (1 << 20), (double)(bench_now_ns() - t0) / 1e9);
    bench_rss_print("generate", &pool_rss);

    const unsigned batch_index = 3;
    const struct bench_config configs[BENCH_CONFIG_COUNT] = {
        {.name = "threads1", .thread_count = 1, .batch_size = 1, .async = false},
        {.name = "threads16", .thread_count = 16, .batch_size = 1, .async = false},
        {.name = "threads64", .thread_count = 64, .batch_size = 1, .async = false},
        {.name = "batch", .thread_count = 1, .batch_size = o.batch_size, .async = false},
        {.name = "async", .thread_count = 1, .batch_size = 1, .async = true},
    };
    tdm_assert(configs[batch_index].batch_size == o.batch_size);
    static struct bench_result results[BENCH_CONFIG_COUNT][BENCH_PEER_COUNT];
    bench_ingest(configs, &pool, &o, root, results, batch_index);
    if (o.query) {
        bench_query(&pool, &o, root);
    }
    bench_summary(configs, results, batch_index);
    bench_describe_load("at end");

    bench_pool_free(&pool);
    if (!o.keep) {
        bench_remove_tree(root);
    }
    return 0;
}
