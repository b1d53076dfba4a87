/* tests/lib/heap.c: the library's allocator over cmocka's test_malloc family. */
#include "heap.h"

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
