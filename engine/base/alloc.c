/* engine/base/alloc.c: tdm_malloc() and friends, forwarding to a replaceable heap.
 *
 * 1. Every allocation of the library goes through these functions.
 * 2. Tests install a heap that fails the Nth call or counts live blocks.
 * Failure modes: a NULL return, which every caller turns into -ENOMEM. */
#include "alloc.h"

#include <stdlib.h>

static struct tdm_heap alloc_heap;
static int alloc_heap_set;

void tdm_heap_set(const struct tdm_heap *heap)
{
    if (heap == NULL) {
        alloc_heap_set = 0;
        return;
    }
    alloc_heap = *heap;
    alloc_heap_set = 1;
}

void *tdm_malloc(size_t size)
{
    return alloc_heap_set ? alloc_heap.malloc(alloc_heap.data, size) : malloc(size);
}

void *tdm_calloc(size_t count, size_t size)
{
    return alloc_heap_set ? alloc_heap.calloc(alloc_heap.data, count, size) : calloc(count, size);
}

void *tdm_realloc(void *ptr, size_t size)
{
    return alloc_heap_set ? alloc_heap.realloc(alloc_heap.data, ptr, size) : realloc(ptr, size);
}

void tdm_free(void *ptr)
{
    if (alloc_heap_set) {
        alloc_heap.free(alloc_heap.data, ptr);
    } else {
        free(ptr);
    }
}
