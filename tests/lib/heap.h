/* tests/lib/heap.h: the library's allocator routed to cmocka's test_malloc and
 * test_free (STYLE B8), so that cmocka's leak check covers library code, with a
 * switch that makes every allocation fail; and libc's heap with allocations
 * failed on demand (the Nth of all, or of one thread). */
#ifndef TDM_TESTS_LIB_HEAP_H
#define TDM_TESTS_LIB_HEAP_H

#include <stdbool.h>

/* Install the cmocka heap with tdm_heap_set(); uninstall restores libc's. */
void tdm_test_heap_install(void);
void tdm_test_heap_uninstall(void);

/* While on, every allocation of the library returns NULL. */
void tdm_test_heap_fail(bool on);

/* libc's heap, with every allocation failed for which fails() (called before
 * it, on the allocating thread) returns true. Install it before any handle
 * opens (tdm_heap_set() is not thread-safe); uninstall as above. */
void tdm_test_heap_libc_install(bool (*fails)(void));

/* libc's heap with failures aimed at one thread: the engine's own
 * threads keep allocating while the test thread's next allocation fails.
 * Install it before any handle opens (tdm_heap_set() is not thread-safe),
 * e.g. in main(); it behaves as libc's until armed. */
void tdm_test_heap_thread_install(void);

/* Make the calling thread's allocation number skip + 1 from now fail (skip 0:
 * the next one), once; a negative skip disarms. Other threads are never
 * failed. */
void tdm_test_heap_thread_fail_after(long skip);

#endif
