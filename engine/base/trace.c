/* engine/base/trace.c: diagnostic lines on stderr.
 *
 * 1. The first call reads TANDEM_TRACE once.
 * 2. Each line is formatted into one buffer and written with one write(2), so
 *    lines from threads do not interleave.
 * Failure modes: a failed write of a trace line is ignored (nothing to do). */
#include "trace.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_int trace_state; /* 0 unknown, 1 off, 2 on. */

void tdm_trace_enable(int on)
{
    atomic_store(&trace_state, on ? 2 : 1);
}

void tdm_tracef(const char *format, ...)
{
    int state = atomic_load(&trace_state);
    if (state == 0) {
        const char *env = getenv("TANDEM_TRACE");
        state = (env != NULL && env[0] != '\0' && env[0] != '0') ? 2 : 1;
        atomic_store(&trace_state, state);
    }
    if (state != 2) {
        return;
    }
    char line[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line + 8, sizeof(line) - 9, format, args);
    va_end(args);
    if (n < 0) {
        return;
    }
    size_t size = (size_t)n < sizeof(line) - 9 ? (size_t)n : sizeof(line) - 10;
    __builtin_memcpy(line, "tandem: ", 8);
    line[8 + size] = '\n';
    ssize_t written = write(STDERR_FILENO, line, 8 + size + 1);
    (void)written;
}
