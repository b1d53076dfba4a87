/* engine/fs_posix.c: struct tdm_fs over the real POSIX file system.
 *
 * 1. Each call maps to one system call (or a loop for short reads and writes)
 *    and captures errno right at the call site.
 * 2. EINTR is retried for reads and writes; nothing else is. fdatasync is never
 *    retried (DESIGN "The log": an fsync error is never retried).
 * Failure modes: every error is returned as -errno to the caller, which decides.
 * Close: stateless; nothing to release. */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/assert.h"

static int posix_open(struct tdm_fs *fs, const char *path, unsigned flags, int *fd)
{
    (void)fs;
    int oflags = O_CLOEXEC;
    oflags |= (flags & TDM_FS_WRITE) ? O_RDWR : O_RDONLY;
    if (flags & TDM_FS_CREATE) {
        oflags |= O_CREAT;
        if (flags & TDM_FS_EXCLUSIVE) {
            oflags |= O_EXCL;
        }
    }
    int rv = open(path, oflags, 0600);
    if (rv < 0) {
        return -errno;
    }
    *fd = rv;
    return 0;
}

static int posix_close(struct tdm_fs *fs, int fd)
{
    (void)fs;
    /* Linux releases the descriptor even when close() fails; never retry. */
    if (close(fd) != 0) {
        return -errno;
    }
    return 0;
}

static int posix_pread(struct tdm_fs *fs, int fd, void *buf, size_t size, uint64_t offset,
                       size_t *read_size)
{
    (void)fs;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (char *)buf + done, size - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    *read_size = done;
    return 0;
}

static int posix_pwrite(struct tdm_fs *fs, int fd, const void *buf, size_t size, uint64_t offset)
{
    (void)fs;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, (const char *)buf + done, size - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        tdm_assert(n > 0);
        done += (size_t)n;
    }
    return 0;
}

static int posix_fdatasync(struct tdm_fs *fs, int fd)
{
    (void)fs;
    if (fdatasync(fd) != 0) {
        return -errno;
    }
    return 0;
}

static int posix_size(struct tdm_fs *fs, int fd, uint64_t *size)
{
    (void)fs;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return -errno;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

static int posix_truncate(struct tdm_fs *fs, int fd, uint64_t size)
{
    (void)fs;
    if (ftruncate(fd, (off_t)size) != 0) {
        return -errno;
    }
    return 0;
}

static int posix_rename(struct tdm_fs *fs, const char *from, const char *to)
{
    (void)fs;
    if (rename(from, to) != 0) {
        return -errno;
    }
    return 0;
}

static int posix_unlink(struct tdm_fs *fs, const char *path)
{
    (void)fs;
    if (unlink(path) != 0) {
        return -errno;
    }
    return 0;
}

static int posix_mkdir(struct tdm_fs *fs, const char *path)
{
    (void)fs;
    if (mkdir(path, 0700) != 0) {
        int rv = -errno;
        struct stat st;
        if (rv == -EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            return 0;
        }
        return rv;
    }
    return 0;
}

static int posix_sync_dir(struct tdm_fs *fs, const char *path)
{
    (void)fs;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rv = 0;
    if (fsync(fd) != 0) {
        rv = -errno;
    }
    close(fd);
    return rv;
}

static int posix_list(struct tdm_fs *fs, const char *dir, tdm_fs_list_cb cb, void *data)
{
    (void)fs;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -errno;
    }
    int rv = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            rv = -errno;
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        rv = cb(data, e->d_name);
        if (rv != 0) {
            break;
        }
    }
    closedir(d);
    return rv;
}

static int posix_lock(struct tdm_fs *fs, const char *path, int *fd)
{
    (void)fs;
    int lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
        return -errno;
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int rv = -errno;
        close(lock_fd);
        return rv;
    }
    *fd = lock_fd;
    return 0;
}

static int posix_advise_dontneed(struct tdm_fs *fs, int fd)
{
    (void)fs;
    tdm_assert(fd >= 0);
    /* posix_fadvise returns the error number instead of setting errno. */
    int rv = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    tdm_assert(rv >= 0);
    return -rv;
}

static struct tdm_fs fs_posix = {
    .open = posix_open,
    .close = posix_close,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .fdatasync = posix_fdatasync,
    .size = posix_size,
    .truncate = posix_truncate,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .mkdir = posix_mkdir,
    .sync_dir = posix_sync_dir,
    .list = posix_list,
    .lock = posix_lock,
    .advise_dontneed = posix_advise_dontneed,
};

struct tdm_fs *tdm_fs_posix(void)
{
    return &fs_posix;
}

int tdm_fs_path(char *out, size_t size, const char *dir, const char *name)
{
    tdm_assert(out != NULL);
    tdm_assert(size > 0);
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        return -ENAMETOOLONG;
    }
    return 0;
}

int tdm_fs_read_exact(struct tdm_fs *fs, int fd, void *buf, size_t size, uint64_t offset)
{
    size_t read_size = 0;
    int rv = fs->pread(fs, fd, buf, size, offset, &read_size);
    if (rv != 0) {
        return rv;
    }
    if (read_size != size) {
        return -ENODATA;
    }
    return 0;
}
