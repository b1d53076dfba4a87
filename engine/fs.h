/* engine/fs.h: the file-system table (STYLE B1.4; SQLite's VFS).
 *
 * Every file operation of the engine goes through a struct tdm_fs, so that tests
 * can inject EIO, ENOSPC, failed fdatasync, torn writes, lost unsynced writes
 * and bit flips (tests/lib/fault_fs.c). LMDB does its own I/O and is outside
 * this seam: the index is derived state, rebuilt from the log when it cannot be
 * trusted.
 *
 * Paths are full paths. Every function returns 0 or a negative errno; results
 * go to out-parameters only on success. Thread-safe: an implementation must
 * allow calls on different descriptors from different threads at once. */
#ifndef TDM_ENGINE_FS_H
#define TDM_ENGINE_FS_H

#include <stddef.h>
#include <stdint.h>

#define TDM_PATH_SIZE 4096

enum tdm_fs_op {
    TDM_FS_OP_OPEN = 1,
    TDM_FS_OP_CLOSE,
    TDM_FS_OP_PREAD,
    TDM_FS_OP_PWRITE,
    TDM_FS_OP_FDATASYNC,
    TDM_FS_OP_SIZE,
    TDM_FS_OP_TRUNCATE,
    TDM_FS_OP_RENAME,
    TDM_FS_OP_UNLINK,
    TDM_FS_OP_MKDIR,
    TDM_FS_OP_SYNC_DIR,
    TDM_FS_OP_LIST,
    TDM_FS_OP_LOCK,
    TDM_FS_OP_ADVISE,
    TDM_FS_OP__COUNT,
};

/* open() flags. */
#define TDM_FS_READ      0x1u /* Open for reading only. */
#define TDM_FS_WRITE     0x2u /* Open for reading and writing. */
#define TDM_FS_CREATE    0x4u /* Create if missing. */
#define TDM_FS_EXCLUSIVE 0x8u /* With CREATE: fail with -EEXIST if present. */

/* Called once per directory entry name (not "." nor ".."); a non-zero return
 * stops the listing and is returned by list(). */
typedef int (*tdm_fs_list_cb)(void *data, const char *name);

struct tdm_fs {
    int (*open)(struct tdm_fs *fs, const char *path, unsigned flags, int *fd);
    int (*close)(struct tdm_fs *fs, int fd);
    /* Reads up to size bytes at offset; *read_size < size only at end of file. */
    int (*pread)(struct tdm_fs *fs, int fd, void *buf, size_t size, uint64_t offset,
                 size_t *read_size);
    /* Writes all size bytes at offset, or fails. */
    int (*pwrite)(struct tdm_fs *fs, int fd, const void *buf, size_t size, uint64_t offset);
    int (*fdatasync)(struct tdm_fs *fs, int fd);
    int (*size)(struct tdm_fs *fs, int fd, uint64_t *size);
    int (*truncate)(struct tdm_fs *fs, int fd, uint64_t size);
    int (*rename)(struct tdm_fs *fs, const char *from, const char *to);
    int (*unlink)(struct tdm_fs *fs, const char *path);
    /* Creates the directory; 0 if it already exists. */
    int (*mkdir)(struct tdm_fs *fs, const char *path);
    /* Makes the directory's entries (creates, renames, unlinks) durable. */
    int (*sync_dir)(struct tdm_fs *fs, const char *path);
    int (*list)(struct tdm_fs *fs, const char *dir, tdm_fs_list_cb cb, void *data);
    /* Takes an exclusive, non-blocking lock on path (created if missing);
     * -EWOULDBLOCK when another process holds it. Released by close(fd). */
    int (*lock)(struct tdm_fs *fs, const char *path, int *fd);
    /* Drops the file's cached clean pages (posix_fadvise POSIX_FADV_DONTNEED),
     * so that the next reads come from the device, not the page cache: the
     * scrubber (engine/scrub.c) calls it before it re-reads a segment. Only
     * pages already written back are dropped: call it on durable files. */
    int (*advise_dontneed)(struct tdm_fs *fs, int fd);
};

/* The real file system. Stateless: one shared instance. */
struct tdm_fs *tdm_fs_posix(void);

/* Join dir and name into out (TDM_PATH_SIZE); -ENAMETOOLONG if it does not fit. */
int tdm_fs_path(char *out, size_t size, const char *dir, const char *name);

/* Read exactly size bytes at offset: -ENODATA (short file) if fewer exist. */
int tdm_fs_read_exact(struct tdm_fs *fs, int fd, void *buf, size_t size, uint64_t offset);

#endif
