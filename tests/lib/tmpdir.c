/* tests/lib/tmpdir.c: temporary directories for tests (mkdtemp, nftw removal). */
#define _XOPEN_SOURCE 700
#include "tmpdir.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int tdm_test_tmpdir_create(char *dir, size_t size)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    int n = snprintf(dir, size, "%s/tandem-test-XXXXXX", base);
    if (n < 0 || (size_t)n >= size) {
        return -ENAMETOOLONG;
    }
    if (mkdtemp(dir) == NULL) {
        return -errno;
    }
    return 0;
}

static int tmpdir_remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tdm_test_tmpdir_remove(const char *dir)
{
    nftw(dir, tmpdir_remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

bool tdm_test_file_exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}
