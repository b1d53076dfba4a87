/* engine/base/path.c: mkdir -p.
 *
 * 1. Walk the path component by component, creating what is missing.
 * 2. Check that the whole path is a directory.
 * Failure modes: the first mkdir(2) error other than EEXIST is returned as
 * -errno; nothing created before it is removed (mkdir -p does the same). */
#include "path.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define PATH_SIZE_MAX 4096

int tdm_mkdir_parents(const char *path, mode_t mode)
{
    char buf[PATH_SIZE_MAX];
    size_t size = strlen(path);
    if (size == 0 || size >= sizeof(buf)) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, path, size + 1);
    for (size_t i = 1; i <= size; i++) {
        if (buf[i] != '/' && buf[i] != '\0') {
            continue;
        }
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, i == size ? mode : 0755) != 0 && errno != EEXIST) {
            return -errno;
        }
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        return -errno;
    }
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}
