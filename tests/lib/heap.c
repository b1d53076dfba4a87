/* tests/lib/heap.c: the library's allocator over cmocka's test_malloc family, and over
 * libc's malloc with failures chosen by a predicate (the Nth allocation, or one
 * thread's). */
#include "heap.h"

#include <stdlib.h>

#include "engine/base/alloc.h"
#include "tdm_test.h"

static bool heap_failing; /* Every allocation of the library fails. */

static void *heap_malloc(void *data, size_t size)
{
    (void)data;
    return heap_failing ? NULL : test_malloc(size);
}

static void *heap_calloc(void *data, size_t count, size_t size)
{
    (void)data;
    return heap_failing ? NULL : test_calloc(count, size);
}

static void *heap_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return heap_failing ? NULL : test_realloc(ptr, size);
}

static void heap_free(void *data, void *ptr)
{
    (void)data;
    test_free(ptr);
}

static const struct tdm_heap heap_cmocka = {heap_malloc, heap_calloc, heap_realloc, heap_free,
                                            NULL};

void tdm_test_heap_install(void)
{
    heap_failing = false;
    tdm_heap_set(&heap_cmocka);
}

void tdm_test_heap_uninstall(void)
{
    tdm_heap_set(NULL);
}

void tdm_test_heap_fail(bool on)
{
    heap_failing = on;
}

/* ---- libc's heap, failing when a predicate says so --------------------------- */

static bool (*heap_libc_fails)(void); /* Set while no engine thread runs. */

static void *heap_libc_malloc(void *data, size_t size)
{
    (void)data;
    return heap_libc_fails() ? NULL : malloc(size);
}

static void *heap_libc_calloc(void *data, size_t count, size_t size)
{
    (void)data;
    return heap_libc_fails() ? NULL : calloc(count, size);
}

static void *heap_libc_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return heap_libc_fails() ? NULL : realloc(ptr, size);
}

static void heap_libc_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static const struct tdm_heap heap_libc = {heap_libc_malloc, heap_libc_calloc, heap_libc_realloc,
                                          heap_libc_free, NULL};

void tdm_test_heap_libc_install(bool (*fails)(void))
{
    heap_libc_fails = fails;
    tdm_heap_set(&heap_libc);
}

/* ---- failing on one thread ------------------------------------------------------ */

static _Thread_local long heap_thread_skip = -1; /* Allocations to pass; -1: none fails. */

static bool heap_thread_fails(void)
{
    if (heap_thread_skip < 0) {
        return false;
    }
    if (heap_thread_skip == 0) {
        heap_thread_skip = -1;
        return true;
    }
    heap_thread_skip--;
    return false;
}

void tdm_test_heap_thread_install(void)
{
    heap_thread_skip = -1;
    tdm_test_heap_libc_install(heap_thread_fails);
}

void tdm_test_heap_thread_fail_after(long skip)
{
    heap_thread_skip = skip;
}
