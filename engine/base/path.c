/* engine/base/path.c: mkdir -p, and the durable replacement of a small file.
 *
 * 1. Walk the path component by component, creating what is missing.
 * 2. Check that the whole path is a directory.
 * Failure modes: the first mkdir(2) error other than EEXIST is returned as
 * -errno; nothing created before it is removed (mkdir -p does the same). */
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

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

int tdm_file_replace(const char *dir, const char *name, const void *data, size_t size, mode_t mode,
                     struct tdm_diag *diag)
{
    char path[PATH_SIZE_MAX];
    char tmp[PATH_SIZE_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    int m = snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name);
    if (n <= 0 || (size_t)n >= sizeof(path) || m <= 0 || (size_t)m >= sizeof(tmp)) {
        tdm_diag_printf(diag, "path too long");
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        int rv = -errno;
        tdm_diag_printf(diag, "open %s: %s", tmp, strerror(-rv));
        return rv;
    }
    int rv = 0;
    size_t done = 0;
    while (rv == 0 && done < size) {
        ssize_t w = write(fd, (const char *)data + done, size - done);
        if (w < 0 && errno != EINTR) {
            rv = -errno;
        } else if (w > 0) {
            done += (size_t)w;
        }
    }
    if (rv == 0 && fdatasync(fd) != 0) {
        rv = -errno;
    }
    if (close(fd) != 0 && rv == 0) {
        rv = -errno;
    }
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = -errno;
    }
    if (rv == 0) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            rv = -errno;
        } else {
            if (fsync(dfd) != 0) {
                rv = -errno;
            }
            close(dfd);
        }
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "persist %s: %s", path, strerror(-rv));
    }
    return rv;
}
