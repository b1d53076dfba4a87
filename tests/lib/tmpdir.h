/* tests/lib/tmpdir.h: temporary directories for tests. */
#ifndef TDM_TESTS_LIB_TMPDIR_H
#define TDM_TESTS_LIB_TMPDIR_H

#include <stdbool.h>
#include <stddef.h>

/* Create a fresh directory under $TMPDIR (or /tmp) into dir. Returns 0 or -errno. */
int tdm_test_tmpdir_create(char *dir, size_t size);
/* Remove dir and everything under it. */
void tdm_test_tmpdir_remove(const char *dir);
/* True if dir/name exists. */
bool tdm_test_file_exists(const char *dir, const char *name);

#endif
