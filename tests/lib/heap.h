/* tests/lib/heap.h: the library's allocator routed to cmocka's test_malloc and
 * test_free (STYLE B8), so that cmocka's leak check covers library code, with a
 * switch that makes every allocation fail. */
#ifndef TDM_TESTS_LIB_HEAP_H
#define TDM_TESTS_LIB_HEAP_H

#include <stdbool.h>

/* Install the cmocka heap with tdm_heap_set(); uninstall restores libc's. */
void tdm_test_heap_install(void);
void tdm_test_heap_uninstall(void);

/* While on, every allocation of the library returns NULL. */
void tdm_test_heap_fail(bool on);

#endif
