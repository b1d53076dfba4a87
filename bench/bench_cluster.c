/* bench/bench_cluster.c: the load generator of bench/bench_replication.sh.
 * How many records per second does a running tandem node acknowledge, and at
 * what latency, when N concurrent appenders write message records to it through
 * the public client API (tandem_client_*, include/tandem.h)? The node may be a
 * replicated primary at HOST:PORT (mutual TLS with a client certificate from
 * `tandem ca CADIR --client NAME`) or a node directory served by tandemd; a
 * write returns once it is durable on min_copies nodes.
 *
 * Happy path:
 * 1. Parse the options; ask the node for its status once (tandem_client_status)
 *    and print it as a context line, which proves the address and credentials.
 * 2. Open one client per appender (each thread its own connection, as each
 *    mail frontend has its own), and give each thread its own seeded record
 *    generator (tools/gen.h: seed + thread index) and, for --batch K > 1, an
 *    arena to deep-copy K records into.
 * 3. Release the threads together. Each one loops: generate its next K records
 *    (untimed), tandem_client_append() them (timed with CLOCK_MONOTONIC), until
 *    the end of --warmup + --seconds. A call that returns inside the measured
 *    window (after the warm-up) counts: its records and its latency.
 *    With --async there are no appender threads: each appender is a chain of
 *    tandem_client_append_async() calls, one in flight at a time, that main
 *    starts and each call's callback continues (on its client's thread:
 *    generate, time, call), the way pgbench drives 64 clients from a few
 *    threads; main waits until every chain has ended.
 *    With --status-file, a thread samples the node's status every
 *    --status-every ms meanwhile, over a client of its own opened once, and
 *    appends each document as a line to the file (the replication lag under
 *    load: bench/bench_replication.sh).
 * 4. Join; print
 *      tandem appenders=N batch=K records_per_s=X p50_ms=Y p99_ms=Z records=R calls=C
 *    records_per_s is the counted records over the window's length; p50/p99
 *    are the nearest-rank percentiles of the counted calls' latencies.
 *
 * Record generation runs on the appenders' threads, outside the timed call but
 * inside the wall time; it costs about 0.5 us per record, a few per cent of
 * the machine at 100k records/s.
 *
 * Failure modes: a client that cannot connect or a failed append (for example
 * TANDEM_ECOPIES when too few backups hold the write before the deadline)
 * prints one line on stderr naming the appender, the code and the diag; the
 * other appenders stop at their next call and the program exits with status 1.
 * A bad option exits with status 2.
 *
 * Close: every client is closed after the threads have been joined. */
#include <errno.h>
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
#include <time.h>

#include "engine/base/assert.h"
#include "tandem.h"
#include "tools/gen.h"

#define CLUSTER_APPENDERS_MAX           1024u
#define CLUSTER_SECONDS_DEFAULT         10.0
#define CLUSTER_WARMUP_DEFAULT          1.0
#define CLUSTER_STATUS_EVERY_MS_DEFAULT 100u
#define CLUSTER_SECONDS_MAX             86400.0
#define CLUSTER_CUSTOMERS_DEFAULT       1000u
#define CLUSTER_SEED_DEFAULT            1u
/* The strings of one generated message record, at most. */
#define CLUSTER_RECORD_BYTES_MAX                                                                   \
    (TANDEM_THREAT_SIZE_MAX + TANDEM_ADDRESS_SIZE_MAX + TANDEM_MESSAGE_ID_SIZE_MAX +               \
     TANDEM_ADDRESS_SIZE_MAX + TANDEM_SUBJECT_SIZE_MAX)
#define CLUSTER_LATENCIES_INITIAL 4096u

struct cluster_options {
    const char *node;         /* --node ADDR: HOST:PORT or a node directory. */
    const char *cert_dir;     /* --cert DIR, else $TANDEM_CERT, else NULL. */
    uint32_t appenders;       /* --appenders: threads. */
    uint32_t connections;     /* --connections: clients they share (0: one each). */
    uint32_t batch;           /* --batch: records per call, 1..TANDEM_APPEND_RECORDS_MAX. */
    double seconds;           /* --seconds: the measured window. */
    double warmup_seconds;    /* --warmup: before the window, not counted. */
    uint32_t customer_count;  /* --customers of the generator. */
    uint64_t seed;            /* --seed of the generator (thread i uses seed + i). */
    bool async;               /* --async: no appender threads; callbacks drive them. */
    const char *status_file;  /* --status-file: the node's status documents, one a line. */
    uint32_t status_every_ms; /* --status-every: sampling period (default 100). */
};

/* What every appender shares. */
struct cluster_run {
    const struct cluster_options *options; /* Borrowed from main. */
    pthread_barrier_t start;               /* Appenders and main begin together. */
    int64_t window_start_ns;               /* CLOCK_MONOTONIC; set by main before the barrier. */
    int64_t window_end_ns;                 /* Likewise; no call starts after it. */
    atomic_bool failed;                    /* An appender failed: the others stop. */
    /* --async: appenders with a call in flight; main waits for none. */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    uint32_t active;
};

/* One appender thread and its results. */
struct cluster_appender {
    struct cluster_run *run;       /* Shared by every appender; borrowed. */
    uint32_t index;                /* 0 .. appenders-1. */
    struct tandem_client *client;  /* Owned; opened and closed by main. */
    struct tdm_gen gen;            /* Its own record stream. */
    struct tandem_record *records; /* The next call's records (owned). */
    char *arena;                   /* Strings of those records when batch > 1 (owned). */
    int64_t *latencies_ns;         /* Counted calls' latencies (owned, grows). */
    size_t latency_count;          /* Entries used. */
    size_t latency_capacity;       /* Entries allocated. */
    uint64_t record_count;         /* Records of counted calls. */
    uint64_t record_count_all;     /* Records of every acknowledged call, warm-up included. */
    pthread_t thread;              /* Joined by main. */
    int64_t start_ns;              /* --async: when the call in flight began. */
};

__attribute__((format(printf, 1, 2))) _Noreturn static void cluster_fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, "bench_cluster: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

static int64_t cluster_now_ns(void)
{
    struct timespec ts;
    int rv = clock_gettime(CLOCK_MONOTONIC, &ts);
    tdm_assert(rv == 0);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *cluster_alloc(size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (p == NULL) {
        cluster_fail("out of memory (%zu x %zu bytes)", count, size);
    }
    return p;
}

/* ---- options --------------------------------------------------------------------------- */

static void cluster_usage(FILE *out)
{
    fprintf(out,
            "usage: bench_cluster --node ADDR [--cert DIR] --appenders N [--connections C]\n"
            "                     [--batch K] [--seconds S] [--warmup S] [--customers N]\n"
            "                     [--seed N] [--async] [--status-file FILE [--status-every MS]]\n"
            "\n"
            "N threads append generated message records (tools/gen.h) to the node at ADDR\n"
            "(HOST:PORT with TLS, or a node directory) for S seconds (default 10) after a\n"
            "warm-up (default 1), K records per call (default 1). Each thread has its own\n"
            "tandem client, or with --connections C the threads share C clients (thread i\n"
            "uses client i mod C; concurrent calls on one client are pipelined).\n"
            "--async: no appender threads; each appender is a chain of calls of\n"
            "tandem_client_append_async(), one in flight at a time, whose callback (on\n"
            "the client's thread) issues the next, as pgbench drives its clients from a\n"
            "few threads (C defaults to 1 then).\n"
            "--status-file FILE: meanwhile, every --status-every MS (default 100) ms,\n"
            "append the node's status document (tandem_client_status, one line) to FILE,\n"
            "over a client of its own kept open: the replication lag under load, sampled\n"
            "without a process and a TLS handshake per sample.\n"
            "--cert defaults to $TANDEM_CERT. Prints\n"
            "  tandem appenders=N connections=C batch=K records_per_s=X p50_ms=Y p99_ms=Z\n"
            "  records=R calls=C\n");
}

static _Noreturn void cluster_bad_usage(const char *message, const char *value)
{
    fprintf(stderr, "bench_cluster: %s%s%s\n", message, value != NULL ? ": " : "",
            value != NULL ? value : "");
    cluster_usage(stderr);
    exit(2);
}

static uint64_t cluster_parse_u64(const char *name, const char *value, uint64_t min, uint64_t max)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v < min || v > max) {
        cluster_bad_usage(name, value);
    }
    return (uint64_t)v;
}

static double cluster_parse_seconds(const char *name, const char *value, double min)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || !(v >= min) || v > CLUSTER_SECONDS_MAX) {
        cluster_bad_usage(name, value);
    }
    return v;
}

static void cluster_parse(int argc, char **argv, struct cluster_options *options)
{
    *options = (struct cluster_options){
        .cert_dir = getenv("TANDEM_CERT"),
        .batch = 1,
        .seconds = CLUSTER_SECONDS_DEFAULT,
        .warmup_seconds = CLUSTER_WARMUP_DEFAULT,
        .customer_count = CLUSTER_CUSTOMERS_DEFAULT,
        .seed = CLUSTER_SEED_DEFAULT,
        .status_every_ms = CLUSTER_STATUS_EVERY_MS_DEFAULT,
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cluster_usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--async") == 0) {
            options->async = true;
            continue;
        }
        if (i + 1 >= argc) {
            cluster_bad_usage("unknown option or missing value", arg);
        }
        const char *value = argv[++i];
        if (strcmp(arg, "--node") == 0) {
            options->node = value;
        } else if (strcmp(arg, "--cert") == 0) {
            options->cert_dir = value;
        } else if (strcmp(arg, "--appenders") == 0) {
            options->appenders = (uint32_t)cluster_parse_u64(arg, value, 1, CLUSTER_APPENDERS_MAX);
        } else if (strcmp(arg, "--connections") == 0) {
            options->connections =
                (uint32_t)cluster_parse_u64(arg, value, 1, CLUSTER_APPENDERS_MAX);
        } else if (strcmp(arg, "--batch") == 0) {
            options->batch = (uint32_t)cluster_parse_u64(arg, value, 1, TANDEM_APPEND_RECORDS_MAX);
        } else if (strcmp(arg, "--seconds") == 0) {
            options->seconds = cluster_parse_seconds(arg, value, 0.01);
        } else if (strcmp(arg, "--warmup") == 0) {
            options->warmup_seconds = cluster_parse_seconds(arg, value, 0.0);
        } else if (strcmp(arg, "--customers") == 0) {
            options->customer_count = (uint32_t)cluster_parse_u64(arg, value, 1, UINT32_MAX);
        } else if (strcmp(arg, "--seed") == 0) {
            options->seed = cluster_parse_u64(arg, value, 0, UINT64_MAX);
        } else if (strcmp(arg, "--status-file") == 0) {
            options->status_file = value;
        } else if (strcmp(arg, "--status-every") == 0) {
            options->status_every_ms = (uint32_t)cluster_parse_u64(arg, value, 1, 60000);
        } else {
            cluster_bad_usage("unknown option", arg);
        }
    }
    if (options->node == NULL) {
        cluster_bad_usage("--node is required", NULL);
    }
    if (options->appenders == 0) {
        cluster_bad_usage("--appenders is required", NULL);
    }
    if (options->connections == 0 && options->async) {
        options->connections = 1;
    }
    if (options->connections == 0 || options->connections > options->appenders) {
        options->connections = options->appenders;
    }
}

/* ---- records ----------------------------------------------------------------------------- */

/* Copy bytes into the arena at *used and point bytes at the copy. */
static void cluster_copy(char *arena, size_t *used, struct tandem_bytes *bytes)
{
    char *copy = arena + *used;
    if (bytes->size > 0) {
        memcpy(copy, bytes->data, bytes->size);
    }
    bytes->data = copy;
    *used += bytes->size;
}

/* The appender's next batch: for one record, the generator's own buffers;
 * for more, deep copies in the arena (the generator reuses its buffers). */
static void cluster_next_records(struct cluster_appender *appender, uint32_t count)
{
    size_t used = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct tandem_record *r = &appender->records[i];
        tdm_gen_message(&appender->gen, r);
        if (count == 1) {
            return;
        }
        cluster_copy(appender->arena, &used, &r->message.threat);
        cluster_copy(appender->arena, &used, &r->message.recipient);
        cluster_copy(appender->arena, &used, &r->message.message_id);
        cluster_copy(appender->arena, &used, &r->message.sender);
        cluster_copy(appender->arena, &used, &r->message.subject);
        tdm_assert(used <= (size_t)(i + 1) * CLUSTER_RECORD_BYTES_MAX);
    }
}

/* ---- appenders --------------------------------------------------------------------------- */

static void cluster_latency_push(struct cluster_appender *appender, int64_t latency_ns)
{
    if (appender->latency_count == appender->latency_capacity) {
        size_t capacity = appender->latency_capacity * 2;
        int64_t *grown = realloc(appender->latencies_ns, capacity * sizeof(grown[0]));
        if (grown == NULL) {
            cluster_fail("out of memory for %zu latencies", capacity);
        }
        appender->latencies_ns = grown;
        appender->latency_capacity = capacity;
    }
    appender->latencies_ns[appender->latency_count++] = latency_ns;
}

static void *cluster_appender_main(void *data)
{
    struct cluster_appender *appender = data;
    struct cluster_run *run = appender->run;
    uint32_t batch = run->options->batch;
    pthread_barrier_wait(&run->start);
    while (!atomic_load_explicit(&run->failed, memory_order_relaxed)) {
        cluster_next_records(appender, batch);
        int64_t start_ns = cluster_now_ns();
        if (start_ns >= run->window_end_ns) {
            break;
        }
        struct tandem_diag diag = {{0}};
        uint64_t lsn_first = 0;
        int rv =
            tandem_client_append(appender->client, appender->records, batch, &lsn_first, &diag);
        int64_t end_ns = cluster_now_ns();
        if (rv != 0) {
            fprintf(stderr, "bench_cluster: appender %" PRIu32 ": tandem_client_append: %s: %s\n",
                    appender->index, tandem_strerror(rv), diag.message);
            atomic_store(&run->failed, true);
            break;
        }
        if (end_ns >= run->window_start_ns && end_ns <= run->window_end_ns) {
            cluster_latency_push(appender, end_ns - start_ns);
            appender->record_count += batch;
        }
        appender->record_count_all += batch;
    }
    return NULL;
}

/* ---- --async: appenders as chains of callbacks ---------------------------------------- */

/* An appender's chain ended (any thread). */
static void cluster_async_end(struct cluster_run *run)
{
    pthread_mutex_lock(&run->lock);
    tdm_assert(run->active > 0);
    if (--run->active == 0) {
        pthread_cond_signal(&run->idle);
    }
    pthread_mutex_unlock(&run->lock);
}

static void cluster_async_done(void *data, int status, uint64_t lsn_first,
                               const struct tandem_diag *diag);

/* The appender's next call, unless the window is over or another failed. */
static void cluster_async_next(struct cluster_appender *appender)
{
    struct cluster_run *run = appender->run;
    uint32_t batch = run->options->batch;
    if (atomic_load_explicit(&run->failed, memory_order_relaxed)) {
        cluster_async_end(run);
        return;
    }
    cluster_next_records(appender, batch);
    appender->start_ns = cluster_now_ns();
    if (appender->start_ns >= run->window_end_ns) {
        cluster_async_end(run);
        return;
    }
    struct tandem_diag diag = {{0}};
    int rv = tandem_client_append_async(appender->client, appender->records, batch,
                                        cluster_async_done, appender, &diag);
    if (rv != 0) {
        fprintf(stderr, "bench_cluster: appender %" PRIu32 ": tandem_client_append_async: %s: %s\n",
                appender->index, tandem_strerror(rv), diag.message);
        atomic_store(&run->failed, true);
        cluster_async_end(run);
    }
}

/* A call's callback, on its client's thread: count it, and make the next. */
static void cluster_async_done(void *data, int status, uint64_t lsn_first,
                               const struct tandem_diag *diag)
{
    struct cluster_appender *appender = data;
    struct cluster_run *run = appender->run;
    uint32_t batch = run->options->batch;
    int64_t end_ns = cluster_now_ns();
    (void)lsn_first;
    if (status != 0) {
        fprintf(stderr, "bench_cluster: appender %" PRIu32 ": append callback: %s: %s\n",
                appender->index, tandem_strerror(status), diag != NULL ? diag->message : "");
        atomic_store(&run->failed, true);
        cluster_async_end(run);
        return;
    }
    if (end_ns >= run->window_start_ns && end_ns <= run->window_end_ns) {
        cluster_latency_push(appender, end_ns - appender->start_ns);
        appender->record_count += batch;
    }
    appender->record_count_all += batch;
    cluster_async_next(appender);
}

/* Start every appender's chain and wait until each has ended. */
static void cluster_async_run(struct cluster_run *run, struct cluster_appender *appenders)
{
    uint32_t count = run->options->appenders;
    pthread_mutex_lock(&run->lock);
    run->active = count;
    pthread_mutex_unlock(&run->lock);
    for (uint32_t i = 0; i < count; i++) {
        cluster_async_next(&appenders[i]);
    }
    pthread_mutex_lock(&run->lock);
    while (run->active > 0) {
        pthread_cond_wait(&run->idle, &run->lock);
    }
    pthread_mutex_unlock(&run->lock);
}

static void cluster_appender_init(struct cluster_appender *appender, struct cluster_run *run,
                                  uint32_t index)
{
    const struct cluster_options *options = run->options;
    appender->run = run;
    appender->index = index;
    tdm_gen_init(&appender->gen, options->seed + index, options->customer_count);
    appender->records = cluster_alloc(options->batch, sizeof(appender->records[0]));
    appender->arena = cluster_alloc(options->batch, CLUSTER_RECORD_BYTES_MAX);
    appender->latency_capacity = CLUSTER_LATENCIES_INITIAL;
    appender->latencies_ns = cluster_alloc(appender->latency_capacity, sizeof(int64_t));
    if (index < options->connections) {
        struct tandem_diag diag = {{0}};
        int rv = tandem_client_open(options->node, options->cert_dir, &appender->client, &diag);
        if (rv != 0) {
            cluster_fail("appender %" PRIu32 ": tandem_client_open %s: %s: %s", index,
                         options->node, tandem_strerror(rv), diag.message);
        }
    } else {
        appender->client = appender[-(ptrdiff_t)(index - index % options->connections)].client;
    }
}

static void cluster_appender_deinit(struct cluster_appender *appender)
{
    if (appender->index < appender->run->options->connections) {
        tandem_client_close(appender->client);
    }
    free(appender->records);
    free(appender->arena);
    free(appender->latencies_ns);
}

/* ---- results ----------------------------------------------------------------------------- */

static int cluster_compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The p-th nearest-rank percentile of sorted values, in milliseconds. */
static double cluster_percentile_ms(const int64_t *sorted, size_t count, unsigned p)
{
    tdm_assert(p <= 100);
    if (count == 0) {
        return 0.0;
    }
    size_t index = (size_t)((double)(count - 1) * p / 100.0 + 0.5);
    tdm_assert(index < count);
    return (double)sorted[index] / 1e6;
}

static void cluster_report(const struct cluster_options *options,
                           const struct cluster_appender *appenders)
{
    size_t call_count = 0;
    uint64_t record_count = 0;
    uint64_t record_count_all = 0;
    for (uint32_t i = 0; i < options->appenders; i++) {
        record_count_all += appenders[i].record_count_all;
        call_count += appenders[i].latency_count;
        record_count += appenders[i].record_count;
    }
    int64_t *all = cluster_alloc(call_count > 0 ? call_count : 1, sizeof(int64_t));
    size_t used = 0;
    for (uint32_t i = 0; i < options->appenders; i++) {
        memcpy(all + used, appenders[i].latencies_ns, appenders[i].latency_count * sizeof(int64_t));
        used += appenders[i].latency_count;
    }
    qsort(all, call_count, sizeof(all[0]), cluster_compare_i64);
    printf("tandem appenders=%" PRIu32 " connections=%" PRIu32 " batch=%" PRIu32
           " records_per_s=%.0f p50_ms=%.3f p99_ms=%.3f records=%" PRIu64 " calls=%zu\n",
           options->appenders, options->connections, options->batch,
           (double)record_count / options->seconds, cluster_percentile_ms(all, call_count, 50),
           cluster_percentile_ms(all, call_count, 99), record_count, call_count);
    /* CPU of this load generator over the whole run (connects and warm-up
     * included), with the records acknowledged over the same span: the
     * harness adds the daemons' CPU to cost each record. */
    struct rusage usage;
    int rv = getrusage(RUSAGE_SELF, &usage);
    tdm_assert(rv == 0);
    double cpu_s = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                   (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
    printf("cpu client_cpu_s=%.2f records_all=%" PRIu64 "\n", cpu_s, record_count_all);
    free(all);
}

/* One line of context: the node's status document as it answers now. */
static void cluster_print_status(const struct cluster_options *options)
{
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    int rv = tandem_client_open(options->node, options->cert_dir, &client, &diag);
    if (rv != 0) {
        cluster_fail("tandem_client_open %s: %s: %s", options->node, tandem_strerror(rv),
                     diag.message);
    }
    char *json = NULL;
    rv = tandem_client_status(client, &json, &diag);
    if (rv != 0) {
        cluster_fail("tandem_client_status %s: %s: %s", options->node, tandem_strerror(rv),
                     diag.message);
    }
    printf("# status of %s: %s\n", options->node, json);
    free(json);
    tandem_client_close(client);
}

/* --status-file: a thread that samples the node's status until told to stop. */
struct cluster_sampler {
    const struct cluster_options *options;
    struct tandem_client *client;
    FILE *out;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    uint32_t samples;
};

static void *cluster_sampler_main(void *arg)
{
    struct cluster_sampler *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        pthread_mutex_unlock(&s->lock);
        char *json = NULL;
        struct tandem_diag diag = {{0}};
        int rv = tandem_client_status(s->client, &json, &diag);
        if (rv != 0) {
            /* The run goes on; the lag figures then have fewer samples. */
            fprintf(stderr, "bench_cluster: status sample: %s: %s\n", tandem_strerror(rv),
                    diag.message);
        } else {
            fprintf(s->out, "%s\n", json);
            s->samples++;
        }
        free(json);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = until.tv_nsec + (int64_t)s->options->status_every_ms * 1000000;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        pthread_mutex_lock(&s->lock);
        while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void cluster_sampler_start(struct cluster_sampler *s, const struct cluster_options *options)
{
    *s = (struct cluster_sampler){.options = options};
    s->out = fopen(options->status_file, "a");
    if (s->out == NULL) {
        cluster_fail("--status-file %s: %s", options->status_file, strerror(errno));
    }
    struct tandem_diag diag = {{0}};
    int rv = tandem_client_open(options->node, options->cert_dir, &s->client, &diag);
    if (rv != 0) {
        cluster_fail("tandem_client_open %s: %s: %s", options->node, tandem_strerror(rv),
                     diag.message);
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rv = pthread_cond_init(&s->wake, &attr);
    tdm_assert(rv == 0);
    pthread_condattr_destroy(&attr);
    rv = pthread_mutex_init(&s->lock, NULL);
    tdm_assert(rv == 0);
    rv = pthread_create(&s->thread, NULL, cluster_sampler_main, s);
    if (rv != 0) {
        cluster_fail("pthread_create: %s", strerror(rv));
    }
}

static void cluster_sampler_stop(struct cluster_sampler *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    int rv = pthread_join(s->thread, NULL);
    tdm_assert(rv == 0);
    tandem_client_close(s->client);
    if (fclose(s->out) != 0) {
        cluster_fail("--status-file %s: %s", s->options->status_file, strerror(errno));
    }
    printf("# status samples: %" PRIu32 " in %s\n", s->samples, s->options->status_file);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
}

int main(int argc, char **argv)
{
    struct cluster_options options;
    cluster_parse(argc, argv, &options);
    printf("# bench_cluster: node %s, %" PRIu32 " appenders%s on %" PRIu32 " connections, %" PRIu32
           " records per call, %.1f s after a %.1f s warm-up; tools/gen.h seed %" PRIu64
           " (+ appender), %" PRIu32 " customers\n",
           options.node, options.appenders, options.async ? " (async callbacks)" : "",
           options.connections, options.batch, options.seconds, options.warmup_seconds,
           options.seed, options.customer_count);
    cluster_print_status(&options);
    fflush(stdout);

    struct cluster_sampler sampler;
    if (options.status_file != NULL) {
        cluster_sampler_start(&sampler, &options);
    }
    struct cluster_run run = {.options = &options};
    atomic_init(&run.failed, false);
    int rv = pthread_mutex_init(&run.lock, NULL);
    tdm_assert(rv == 0);
    rv = pthread_cond_init(&run.idle, NULL);
    tdm_assert(rv == 0);
    struct cluster_appender *appenders = cluster_alloc(options.appenders, sizeof(appenders[0]));
    for (uint32_t i = 0; i < options.appenders; i++) {
        cluster_appender_init(&appenders[i], &run, i);
    }
    if (options.async) {
        int64_t now_ns = cluster_now_ns();
        run.window_start_ns = now_ns + (int64_t)(options.warmup_seconds * 1e9);
        run.window_end_ns = run.window_start_ns + (int64_t)(options.seconds * 1e9);
        cluster_async_run(&run, appenders);
    } else {
        rv = pthread_barrier_init(&run.start, NULL, options.appenders + 1);
        tdm_assert(rv == 0);
        for (uint32_t i = 0; i < options.appenders; i++) {
            rv = pthread_create(&appenders[i].thread, NULL, cluster_appender_main, &appenders[i]);
            if (rv != 0) {
                cluster_fail("pthread_create: %s", strerror(rv));
            }
        }
        int64_t now_ns = cluster_now_ns();
        run.window_start_ns = now_ns + (int64_t)(options.warmup_seconds * 1e9);
        run.window_end_ns = run.window_start_ns + (int64_t)(options.seconds * 1e9);
        pthread_barrier_wait(&run.start); /* Publishes the window to every appender. */
        for (uint32_t i = 0; i < options.appenders; i++) {
            rv = pthread_join(appenders[i].thread, NULL);
            tdm_assert(rv == 0);
        }
        pthread_barrier_destroy(&run.start);
    }
    if (options.status_file != NULL) {
        cluster_sampler_stop(&sampler);
    }
    bool failed = atomic_load(&run.failed);
    if (!failed) {
        cluster_report(&options, appenders);
    }
    for (uint32_t i = 0; i < options.appenders; i++) {
        cluster_appender_deinit(&appenders[i]);
    }
    free(appenders);
    pthread_cond_destroy(&run.idle);
    pthread_mutex_destroy(&run.lock);
    return failed ? 1 : 0;
}
