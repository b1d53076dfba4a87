/* engine/base/assert.c: the assertion failure path.
 *
 * 1. tdm_assert() evaluates its expression; on false it calls tdm_assert_fail().
 * 2. tdm_assert_fail() calls the installed hook (tests: mock_assert(), which
 *    longjmps back into the test), else prints one line and aborts.
 * Failure modes: none; this is the end of the process. */
#include "assert.h"

#include <stdio.h>
#include <stdlib.h>

static tdm_assert_hook assert_hook;

void tdm_assert_hook_set(tdm_assert_hook hook)
{
    assert_hook = hook;
}

_Noreturn void tdm_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    if (assert_hook != NULL) {
        assert_hook(expr, file, line);
    }
    fprintf(stderr, "tandem: assertion failed: %s (%s:%d %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
