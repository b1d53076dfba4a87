/* engine/base/alloc.h: the one allocator of the library (raft's raft_heap), which
 * tests replace to inject failures and to count leaks. */
#ifndef TDM_ENGINE_BASE_ALLOC_H
#define TDM_ENGINE_BASE_ALLOC_H

#include <stddef.h>

struct tdm_heap {
    void *(*malloc)(void *data, size_t size);
    void *(*calloc)(void *data, size_t count, size_t size);
    void *(*realloc)(void *data, void *ptr, size_t size);
    void (*free)(void *data, void *ptr);
    void *data;
};

void *tdm_malloc(size_t size);
void *tdm_calloc(size_t count, size_t size);
void *tdm_realloc(void *ptr, size_t size);
void tdm_free(void *ptr);

/* Install heap (NULL restores the C library's). Not thread-safe: call before
 * any handle is opened. */
void tdm_heap_set(const struct tdm_heap *heap);

#endif
