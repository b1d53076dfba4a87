/* tests/crash/crash_child.c: the process tests/crash/test_crash.c kills.
 *
 * Usage: crash_child DIR SEGMENT_SIZE RUN
 *
 * Happy path:
 *   1. Open DIR with tandem_open() on the real file system (creating it).
 *   2. Start CRASH_THREADS writer threads. Thread t of run RUN is writer
 *      RUN * CRASH_THREADS + t; its append number seq stores the records
 *      crash_records() makes for (writer, seq).
 *   3. After each successful tandem_append() (the records are durable), write
 *      one line "lsn writer seq count\n" to stdout with a single write(2),
 *      under a mutex, unbuffered. A line the parent received whole was
 *      therefore reported after durability.
 *   4. Run until killed: the parent sends SIGKILL at a random moment.
 *
 * Failure modes: a failed open or append writes "E <code> <message>\n" to
 * stdout and exits with status 3, which the parent reports; bad arguments exit
 * with status 2. The child dies with its parent (PR_SET_PDEATHSIG) and after
 * 120 s at the latest (alarm), so that it never outlives a broken test. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "crash_records.h"

#define CHILD_LINE_SIZE      128
#define CHILD_LIFETIME_S_MAX 120

static struct tandem *child_node;
static uint64_t child_run;
static pthread_mutex_t child_stdout_mutex = PTHREAD_MUTEX_INITIALIZER;

/* One line to stdout with one write(2) (a pipe write of at most PIPE_BUF
 * bytes is atomic); the mutex keeps lines whole if a write is ever split. */
static void child_say(const char *line, size_t size)
{
    pthread_mutex_lock(&child_stdout_mutex);
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(STDOUT_FILENO, line + done, size - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(4); /* The parent is gone. */
        }
        done += (size_t)n;
    }
    pthread_mutex_unlock(&child_stdout_mutex);
}

static _Noreturn void child_fail(int code, const char *what, const char *message)
{
    char line[CHILD_LINE_SIZE + TANDEM_DIAG_SIZE];
    int n = snprintf(line, sizeof(line), "E %d %s: %s\n", code, what, message);
    child_say(line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : strlen(line));
    _exit(3);
}

static void *child_writer_main(void *arg)
{
    uint64_t writer = child_run * CRASH_THREADS + (uint64_t)(uintptr_t)arg;
    for (uint64_t seq = 0; seq < CRASH_SEQ_MAX; seq++) {
        struct tdm_gen gens[CRASH_RECORDS_MAX];
        struct tandem_record records[CRASH_RECORDS_MAX];
        uint32_t count = 0;
        crash_records(writer, seq, gens, records, &count);
        uint64_t lsn = 0;
        struct tandem_diag diag = {{0}};
        int rv = tandem_append(child_node, records, count, &lsn, &diag);
        if (rv != 0) {
            child_fail(rv, "append", diag.message);
        }
        char line[CHILD_LINE_SIZE];
        int n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu32 "\n",
                         lsn, writer, seq, count);
        if (n <= 0 || (size_t)n >= sizeof(line)) {
            child_fail(-EOVERFLOW, "format", "line too long");
        }
        child_say(line, (size_t)n);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR SEGMENT_SIZE RUN\n", argv[0]);
        return 2;
    }
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(CHILD_LIFETIME_S_MAX);
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    options.segment_size = strtoull(argv[2], NULL, 10);
    child_run = strtoull(argv[3], NULL, 10);
    struct tandem_diag diag = {{0}};
    int rv = tandem_open(argv[1], &options, &child_node, &diag);
    if (rv != 0) {
        child_fail(rv, "open", diag.message);
    }
    pthread_t threads[CRASH_THREADS];
    for (uintptr_t i = 0; i < CRASH_THREADS; i++) {
        rv = pthread_create(&threads[i], NULL, child_writer_main, (void *)i);
        if (rv != 0) {
            child_fail(-rv, "pthread_create", strerror(rv));
        }
    }
    for (int i = 0; i < CRASH_THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    tandem_close(child_node);
    return 0;
}
