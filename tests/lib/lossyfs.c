/* tests/lib/lossyfs.c: a FUSE file system that loses unsynced writes on a
 * simulated power cut (RELIABILITY 2.5 and 3.2 "lazy": LazyFS's idea, our
 * code). SIGKILL of a process proves nothing about power loss, because the
 * kernel page cache survives it; a cut of lossyfs does not.
 *
 *   lossyfs BACKING_DIR MOUNTPOINT [CONTROL_SOCKET]   serve, in the foreground
 *   lossyfs --send CONTROL_SOCKET COMMAND              one command; prints the answer
 *
 * Happy path: empty BACKING_DIR/.lossyfs-trash (left by a lossyfs that was
 * killed), listen on CONTROL_SOCKET, mount MOUNTPOINT and serve it until a
 * "cut", a signal or an unmount. Exit status: 0 after a cut or an orderly
 * shutdown; 1 when the backing directory, the socket or the mount fails (or
 * the sync at shutdown does); 2 for bad usage. --send exits 0 on an "ok".
 *
 * What it models. BACKING_DIR is the disk: what reached it survives every cut.
 * - File data: a write stays in memory, in dirty pages of LOSSY_PAGE_SIZE per
 *   file (the page cache). Reads see the dirty pages over the backing file;
 *   stat shows the size they make; truncate is dirty state too. fsync or
 *   fdatasync of a file (through any of its descriptors; O_SYNC and O_DSYNC
 *   descriptors after every write) copies that file's pages, truncations and
 *   size to the backing file in one step. A cut loses every dirty page.
 *   Nothing unsynced reaches the disk early, and a flush is never torn.
 * - Names: create, mkdir, unlink, rmdir and rename are applied to BACKING_DIR
 *   at once (the unlinked or replaced file is kept as a hard link in
 *   BACKING_DIR/.lossyfs-trash) and journaled. An operation becomes durable
 *   when its parent directory is fsync'd (for a rename: the destination's
 *   parent); a cut undoes every operation that is not, newest first. A file's
 *   own fsync does not make its name durable (POSIX; stricter than ext4).
 *   Names are journaled as paths: a rename of a directory over pending
 *   operations beneath it is undone correctly only in journal order.
 * - Not modelled: attributes (chmod, chown, utimens: applied at once, always
 *   durable), torn or reordered writes. mknod makes sockets and FIFOs only
 *   (journaled like a create); hard links, symlinks, devices and fallocate
 *   are not implemented (ENOSYS, EPERM, EOPNOTSUPP).
 * - The kernel side: direct_io and writeback_cache off, so that mmap works
 *   (LMDB's lock file is a shared writable map; its data file a read map) and
 *   every write() and every mmap write-back arrives here at once. flock and
 *   POSIX locks are not implemented, so the kernel keeps them itself (right
 *   for processes on one host).
 *
 * Control: one line in, one line out ("ok ..." or "error REASON"):
 *   cut     the power cut: drop every dirty page, undo every name operation
 *           that is not durable, answer "ok", fail every later operation with
 *           EIO and exit 0, detaching the mount (lazily: processes that still
 *           hold files on it get ENOTCONN).
 *   sync    make everything durable, like sync(1).
 *   stats   "ok files N dirty_bytes N pending N" (pending name operations).
 *
 * Cut and reboot, as tests/loopback/test_lossyfs.sh does it:
 *   lossyfs --send SOCK cut              # "ok"; lossyfs detaches the mount, exits 0
 *   kill -KILL <every process that used MOUNT>; wait for lossyfs to exit
 *   umount -l MOUNT 2>/dev/null          # a no-op unless lossyfs was SIGKILLed
 *   lossyfs BACKING MOUNT SOCK &         # reboot; wait for `mountpoint -q MOUNT`
 * SIGKILL of lossyfs instead of "cut" loses the dirty pages too but keeps
 * every name operation (they are on BACKING_DIR already); its mount stays,
 * dead (ENOTCONN; mountpoint(1) then says "not a mountpoint"), until the
 * umount -l. SIGTERM, SIGINT or an unmount is an orderly shutdown: everything
 * is made durable first.
 *
 * Failure modes: an error of the backing file system is returned to the
 * caller as its -errno (a flush that fails part-way keeps its dirty pages);
 * undoing an operation at a cut that fails (say, rmdir of a directory that
 * holds durable files) is reported on stderr and skipped. Bounds: at most
 * LOSSY_DIRTY_BYTES_MAX dirty bytes in all and LOSSY_JOURNAL_MAX pending name
 * operations (beyond either an operation fails with ENOSPC, nothing applied);
 * one control line is at most LOSSY_LINE_SIZE bytes. Every operation takes one
 * mutex: correctness over speed. */
#define FUSE_USE_VERSION 31

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#define LOSSY_PAGE_SIZE       4096u
#define LOSSY_DIRTY_BYTES_MAX ((uint64_t)1 << 30)
#define LOSSY_JOURNAL_MAX     65536u
#define LOSSY_LINE_SIZE       128u
#define LOSSY_TRASH           ".lossyfs-trash"
#define LOSSY_TRASH_NAME_SIZE 64u

/* One dirty page: the whole page as reads see it. Bytes past the file size are zero. */
struct lossy_page {
    uint64_t index;
    uint8_t *bytes; /* LOSSY_PAGE_SIZE, owned. */
};

/* A file with open handles or dirty state, found by its backing inode. */
struct lossy_file {
    dev_t dev;
    ino_t ino;
    int fd;         /* The backing file, O_RDWR; pins the inode. */
    unsigned opens; /* Open handles. */
    uint64_t size;  /* What stat and read see. */
    uint64_t keep;  /* Backing bytes below keep are visible; above it read as zero. */
    uint64_t backing_size;
    struct lossy_page *pages; /* Sorted by index. */
    size_t page_count;
    size_t page_capacity;
    struct lossy_file *next;
};

/* An open handle (fi->fh) is its file's address, plus LOSSY_HANDLE_SYNC when
 * it was opened O_SYNC or O_DSYNC (every write is flushed). No allocation: a
 * cut leaves handles that are never released. */
#define LOSSY_HANDLE_SYNC ((uint64_t)1)

enum lossy_op_kind {
    LOSSY_CREATE = 1,
    LOSSY_MKDIR,
    LOSSY_UNLINK,
    LOSSY_RMDIR,
    LOSSY_RENAME,
};

/* A name operation applied to the backing directory but not yet durable. */
struct lossy_op {
    enum lossy_op_kind kind;
    char *path;     /* The name; RENAME: the source. Owned. */
    char *to;       /* RENAME: the destination. Owned, or NULL. */
    char *parent;   /* Durable once this directory is fsync'd. Owned. */
    uint64_t trash; /* 0, or the trash entry of the unlinked or replaced file. */
    bool dir;       /* RMDIR, or a RENAME that replaced an empty directory. */
    mode_t mode;    /* Of that directory, to recreate it. */
};

static struct lossy {
    pthread_mutex_t mutex; /* Guards everything below. */
    int backing_fd;
    int control_fd;
    bool cut;
    bool synced_at_exit; /* lossy_destroy made everything durable. */
    struct lossy_file *files;
    uint64_t dirty_bytes;
    struct lossy_op *ops; /* Oldest first. */
    size_t op_count;
    size_t op_capacity;
    uint64_t trash_last;
} lossy = {.mutex = PTHREAD_MUTEX_INITIALIZER, .backing_fd = -1, .control_fd = -1};

/* ---- paths ------------------------------------------------------------------ */

/* FUSE's "/a/b" as a path relative to lossy.backing_fd. */
static const char *lossy_rel(const char *path)
{
    assert(path != NULL && path[0] == '/');
    return path[1] == '\0' ? "." : path + 1;
}

static bool lossy_hidden(const char *path)
{
    size_t n = strlen(LOSSY_TRASH);
    return strncmp(path + 1, LOSSY_TRASH, n) == 0 && (path[n + 1] == '\0' || path[n + 1] == '/');
}

static void lossy_trash_name(uint64_t trash, char *name)
{
    assert(trash > 0);
    snprintf(name, LOSSY_TRASH_NAME_SIZE, "%s/%llu", LOSSY_TRASH, (unsigned long long)trash);
}

/* Every operation starts here, with the mutex held, and leaves through lossy_leave. */
static int lossy_enter(const char *path)
{
    pthread_mutex_lock(&lossy.mutex);
    if (lossy.cut) {
        return -EIO;
    }
    if (path != NULL && lossy_hidden(path)) {
        return -ENOENT;
    }
    return 0;
}

static int lossy_leave(int rv)
{
    pthread_mutex_unlock(&lossy.mutex);
    return rv;
}

/* ---- file data -------------------------------------------------------------- */

static bool file_dirty(const struct lossy_file *f)
{
    return f->page_count > 0 || f->keep < f->backing_size || f->size != f->backing_size;
}

static void file_drop_pages(struct lossy_file *f, size_t from)
{
    assert(from <= f->page_count);
    for (size_t i = from; i < f->page_count; i++) {
        free(f->pages[i].bytes);
    }
    assert(lossy.dirty_bytes >= (uint64_t)(f->page_count - from) * LOSSY_PAGE_SIZE);
    lossy.dirty_bytes -= (uint64_t)(f->page_count - from) * LOSSY_PAGE_SIZE;
    f->page_count = from;
}

/* The position of the first page with an index >= index. */
static size_t file_page_search(const struct lossy_file *f, uint64_t index)
{
    size_t lo = 0;
    size_t hi = f->page_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->pages[mid].index < index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct lossy_page *file_page_find(struct lossy_file *f, uint64_t index)
{
    size_t i = file_page_search(f, index);
    return i < f->page_count && f->pages[i].index == index ? &f->pages[i] : NULL;
}

/* Read size bytes at offset from the backing file as it is visible (below
 * keep), zeros elsewhere. */
static int file_backing_read(struct lossy_file *f, uint8_t *buf, size_t size, uint64_t offset)
{
    uint64_t visible = f->keep < f->backing_size ? f->keep : f->backing_size;
    size_t done = 0;
    while (done < size && offset + done < visible) {
        uint64_t left = visible - (offset + done);
        size_t want = size - done < left ? size - done : (size_t)left;
        ssize_t n = pread(f->fd, buf + done, want, (off_t)(offset + done));
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    memset(buf + done, 0, size - done);
    return 0;
}

/* The dirty page index, created from the visible contents if absent. */
static int file_page_get(struct lossy_file *f, uint64_t index, struct lossy_page **page)
{
    size_t i = file_page_search(f, index);
    if (i < f->page_count && f->pages[i].index == index) {
        *page = &f->pages[i];
        return 0;
    }
    if (f->page_count == f->page_capacity) {
        size_t capacity = f->page_capacity == 0 ? 16 : f->page_capacity * 2;
        struct lossy_page *pages = realloc(f->pages, capacity * sizeof(*pages));
        if (pages == NULL) {
            return -ENOMEM;
        }
        f->pages = pages;
        f->page_capacity = capacity;
    }
    uint8_t *bytes = malloc(LOSSY_PAGE_SIZE);
    if (bytes == NULL) {
        return -ENOMEM;
    }
    int rv = file_backing_read(f, bytes, LOSSY_PAGE_SIZE, index * LOSSY_PAGE_SIZE);
    if (rv != 0) {
        free(bytes);
        return rv;
    }
    memmove(&f->pages[i + 1], &f->pages[i], (f->page_count - i) * sizeof(*f->pages));
    f->pages[i] = (struct lossy_page){.index = index, .bytes = bytes};
    f->page_count++;
    lossy.dirty_bytes += LOSSY_PAGE_SIZE;
    *page = &f->pages[i];
    return 0;
}

static int file_read(struct lossy_file *f, char *buf, size_t size, uint64_t offset)
{
    if (offset >= f->size) {
        return 0;
    }
    size = f->size - offset < size ? (size_t)(f->size - offset) : size;
    size_t done = 0;
    while (done < size) {
        uint64_t at = offset + done;
        size_t in = (size_t)(at % LOSSY_PAGE_SIZE);
        size_t n = LOSSY_PAGE_SIZE - in < size - done ? LOSSY_PAGE_SIZE - in : size - done;
        struct lossy_page *page = file_page_find(f, at / LOSSY_PAGE_SIZE);
        if (page != NULL) {
            memcpy(buf + done, page->bytes + in, n);
        } else {
            int rv = file_backing_read(f, (uint8_t *)buf + done, n, at);
            if (rv != 0) {
                return rv;
            }
        }
        done += n;
    }
    assert(done <= INT32_MAX);
    return (int)done;
}

static int file_write(struct lossy_file *f, const char *buf, size_t size, uint64_t offset)
{
    if (size == 0) {
        return 0;
    }
    uint64_t first = offset / LOSSY_PAGE_SIZE;
    uint64_t last = (offset + size - 1) / LOSSY_PAGE_SIZE;
    uint64_t missing = 0;
    for (uint64_t index = first; index <= last; index++) {
        missing += file_page_find(f, index) == NULL ? 1 : 0;
    }
    if (lossy.dirty_bytes + missing * LOSSY_PAGE_SIZE > LOSSY_DIRTY_BYTES_MAX) {
        return -ENOSPC;
    }
    size_t done = 0;
    while (done < size) {
        uint64_t at = offset + done;
        size_t in = (size_t)(at % LOSSY_PAGE_SIZE);
        size_t n = LOSSY_PAGE_SIZE - in < size - done ? LOSSY_PAGE_SIZE - in : size - done;
        struct lossy_page *page = NULL;
        int rv = file_page_get(f, at / LOSSY_PAGE_SIZE, &page);
        if (rv == 0) {
            memcpy(page->bytes + in, buf + done, n);
            done += n;
        }
        if (offset + done > f->size) {
            f->size = offset + done; /* Bytes past the size stay zero. */
        }
        if (rv != 0) {
            return rv; /* ENOMEM or a backing read error: what was copied stays. */
        }
    }
    assert(size <= INT32_MAX);
    return (int)size;
}

static void file_truncate(struct lossy_file *f, uint64_t size)
{
    if (size < f->size) {
        uint64_t index = size / LOSSY_PAGE_SIZE;
        size_t in = (size_t)(size % LOSSY_PAGE_SIZE);
        file_drop_pages(f, file_page_search(f, in == 0 ? index : index + 1));
        struct lossy_page *page = in == 0 ? NULL : file_page_find(f, index);
        if (page != NULL) {
            memset(page->bytes + in, 0, LOSSY_PAGE_SIZE - in);
        }
        if (size < f->keep) {
            f->keep = size;
        }
    }
    f->size = size;
    assert(f->keep <= f->size);
}

/* Make the file's dirty state durable: the one path from memory to the disk. */
static int file_flush(struct lossy_file *f)
{
    uint64_t length = f->backing_size;
    if (f->keep < length) {
        if (ftruncate(f->fd, (off_t)f->keep) != 0) {
            return -errno;
        }
        length = f->keep;
    }
    for (size_t i = 0; i < f->page_count; i++) {
        uint64_t at = f->pages[i].index * LOSSY_PAGE_SIZE;
        assert(at < f->size);
        size_t n = f->size - at < LOSSY_PAGE_SIZE ? (size_t)(f->size - at) : LOSSY_PAGE_SIZE;
        ssize_t written = pwrite(f->fd, f->pages[i].bytes, n, (off_t)at);
        if (written < 0 || (size_t)written != n) {
            return written < 0 ? -errno : -EIO;
        }
        length = at + n > length ? at + n : length;
    }
    if (length != f->size && ftruncate(f->fd, (off_t)f->size) != 0) {
        return -errno;
    }
    /* No fdatasync: the backing file system's own page cache is never cut. */
    file_drop_pages(f, 0);
    f->backing_size = f->size;
    f->keep = f->size;
    assert(!file_dirty(f));
    return 0;
}

/* Forget the file: at a cut (its dirty state is lost) or once it is clean and
 * closed, or closed and unlinked for good. */
static void file_free(struct lossy_file *f)
{
    file_drop_pages(f, 0);
    free(f->pages);
    close(f->fd);
    free(f);
}

/* Forget every file nobody can reach any more: no handle and clean, or no
 * handle and no name. */
static void files_collect(void)
{
    struct lossy_file **link = &lossy.files;
    while (*link != NULL) {
        struct lossy_file *f = *link;
        struct stat st;
        bool gone = fstat(f->fd, &st) == 0 && st.st_nlink == 0;
        if (f->opens == 0 && (!file_dirty(f) || gone)) {
            *link = f->next;
            file_free(f);
        } else {
            link = &f->next;
        }
    }
}

/* The file of a backing descriptor, which it takes over. */
static int file_adopt(int fd, struct lossy_file **file)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rv = -errno;
        close(fd);
        return rv;
    }
    for (struct lossy_file *f = lossy.files; f != NULL; f = f->next) {
        if (f->dev == st.st_dev && f->ino == st.st_ino) {
            close(fd);
            *file = f;
            return 0;
        }
    }
    struct lossy_file *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        close(fd);
        return -ENOMEM;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->fd = fd;
    f->size = f->keep = f->backing_size = (uint64_t)st.st_size;
    f->next = lossy.files;
    lossy.files = f;
    *file = f;
    return 0;
}

static int file_open(const char *path, struct lossy_file **file)
{
    int fd = openat(lossy.backing_fd, lossy_rel(path), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return -errno;
    }
    return file_adopt(fd, file);
}

/* ---- name journal ----------------------------------------------------------- */

static void op_free(struct lossy_op *op)
{
    free(op->path);
    free(op->to);
    free(op->parent);
}

/* Prepare an operation: copies of its names and room in the journal, so that
 * once the backing directory has it, journal_push cannot fail. */
static int op_init(struct lossy_op *op, enum lossy_op_kind kind, const char *path, const char *to)
{
    *op = (struct lossy_op){.kind = kind};
    if (lossy.op_count == LOSSY_JOURNAL_MAX) {
        return -ENOSPC;
    }
    if (lossy.op_count == lossy.op_capacity) {
        size_t capacity = lossy.op_capacity == 0 ? 64 : lossy.op_capacity * 2;
        struct lossy_op *ops = realloc(lossy.ops, capacity * sizeof(*ops));
        if (ops == NULL) {
            return -ENOMEM;
        }
        lossy.ops = ops;
        lossy.op_capacity = capacity;
    }
    op->path = strdup(path);
    op->to = to == NULL ? NULL : strdup(to);
    op->parent = strdup(to == NULL ? path : to);
    if (op->path == NULL || (to != NULL && op->to == NULL) || op->parent == NULL) {
        op_free(op);
        return -ENOMEM;
    }
    char *slash = strrchr(op->parent, '/');
    assert(slash != NULL);
    slash[slash == op->parent ? 1 : 0] = '\0';
    return 0;
}

static void journal_push(const struct lossy_op *op)
{
    assert(lossy.op_count < lossy.op_capacity);
    lossy.ops[lossy.op_count++] = *op;
}

/* The op's unlinked or replaced file moves to a new trash entry, keeping its
 * inode for an undo. */
static int op_trash(struct lossy_op *op, const char *path, bool keep_name)
{
    char name[LOSSY_TRASH_NAME_SIZE];
    op->trash = ++lossy.trash_last;
    lossy_trash_name(op->trash, name);
    int rv = keep_name ? linkat(lossy.backing_fd, lossy_rel(path), lossy.backing_fd, name, 0)
                       : renameat(lossy.backing_fd, lossy_rel(path), lossy.backing_fd, name);
    if (rv != 0) {
        op->trash = 0;
        return -errno;
    }
    return 0;
}

static void op_undo_report(const struct lossy_op *op, const char *what)
{
    fprintf(stderr, "lossyfs: cut: cannot undo %s of %s: %s\n", what, op->path, strerror(errno));
}

/* Put the backing directory back as it was before op (a cut, newest first). */
static void op_undo(const struct lossy_op *op)
{
    int dir = lossy.backing_fd;
    char name[LOSSY_TRASH_NAME_SIZE];
    if (op->trash != 0) {
        lossy_trash_name(op->trash, name);
    }
    switch (op->kind) {
    case LOSSY_CREATE:
        if (unlinkat(dir, lossy_rel(op->path), 0) != 0 && errno != ENOENT) {
            op_undo_report(op, "create");
        }
        break;
    case LOSSY_MKDIR:
        if (unlinkat(dir, lossy_rel(op->path), AT_REMOVEDIR) != 0 && errno != ENOENT) {
            op_undo_report(op, "mkdir");
        }
        break;
    case LOSSY_UNLINK:
        if (renameat(dir, name, dir, lossy_rel(op->path)) != 0) {
            op_undo_report(op, "unlink");
        }
        break;
    case LOSSY_RMDIR:
        if (mkdirat(dir, lossy_rel(op->path), op->mode) != 0 && errno != EEXIST) {
            op_undo_report(op, "rmdir");
        }
        break;
    case LOSSY_RENAME:
        if (renameat(dir, lossy_rel(op->to), dir, lossy_rel(op->path)) != 0) {
            op_undo_report(op, "rename");
        } else if (op->trash != 0 && renameat(dir, name, dir, lossy_rel(op->to)) != 0) {
            op_undo_report(op, "rename (replaced file)");
        } else if (op->dir && mkdirat(dir, lossy_rel(op->to), op->mode) != 0) {
            op_undo_report(op, "rename (replaced directory)");
        }
        break;
    }
}

/* The operations under directory path become durable (all of them when path
 * is NULL): their trash entries go for good. */
static void journal_durable(const char *path)
{
    size_t kept = 0;
    for (size_t i = 0; i < lossy.op_count; i++) {
        struct lossy_op *op = &lossy.ops[i];
        if (path != NULL && strcmp(op->parent, path) != 0) {
            lossy.ops[kept++] = *op;
            continue;
        }
        if (op->trash != 0) {
            char name[LOSSY_TRASH_NAME_SIZE];
            lossy_trash_name(op->trash, name);
            (void)unlinkat(lossy.backing_fd, name, 0);
        }
        op_free(op);
    }
    lossy.op_count = kept;
    files_collect();
}

/* ---- power ------------------------------------------------------------------ */

static void lossy_cut_locked(void)
{
    for (struct lossy_file *f = lossy.files; f != NULL; f = f->next) {
        file_drop_pages(f, 0);
        f->size = f->keep = f->backing_size;
    }
    assert(lossy.dirty_bytes == 0);
    while (lossy.op_count > 0) {
        struct lossy_op *op = &lossy.ops[--lossy.op_count];
        op_undo(op);
        if (op->trash != 0) {
            char name[LOSSY_TRASH_NAME_SIZE];
            lossy_trash_name(op->trash, name);
            (void)unlinkat(lossy.backing_fd, name, 0); /* Only left if the undo failed. */
        }
        op_free(op);
    }
    lossy.cut = true;
}

static int lossy_sync_locked(void)
{
    int rv = 0;
    for (struct lossy_file *f = lossy.files; f != NULL; f = f->next) {
        int frv = file_flush(f);
        rv = rv != 0 ? rv : frv;
    }
    journal_durable(NULL);
    return rv;
}

/* Empty the trash left by a lossyfs that was killed: its name operations stay. */
static int lossy_trash_init(void)
{
    if (mkdirat(lossy.backing_fd, LOSSY_TRASH, 0700) != 0 && errno != EEXIST) {
        return -errno;
    }
    int fd = openat(lossy.backing_fd, LOSSY_TRASH, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        int rv = -errno;
        if (fd >= 0) {
            close(fd);
        }
        return rv;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            (void)unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
    return 0;
}

/* ---- FUSE operations: files ------------------------------------------------- */

static struct lossy_file *lossy_handle_file(const struct fuse_file_info *fi)
{
    struct lossy_file *f = (struct lossy_file *)(uintptr_t)(fi->fh & ~LOSSY_HANDLE_SYNC);
    assert(f != NULL);
    assert(f->opens > 0);
    return f;
}

static int lossy_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    int rv = lossy_enter(path);
    if (rv != 0) {
        return lossy_leave(rv);
    }
    struct lossy_file *f = NULL;
    if (fi != NULL) {
        f = lossy_handle_file(fi);
        rv = fstat(f->fd, st) != 0 ? -errno : 0;
    } else if (path == NULL) {
        rv = -ENOENT; /* Unlinked, and no handle to reach it by. */
    } else {
        rv = fstatat(lossy.backing_fd, lossy_rel(path), st, AT_SYMLINK_NOFOLLOW) != 0 ? -errno : 0;
        for (f = lossy.files; rv == 0 && f != NULL; f = f->next) {
            if (f->dev == st->st_dev && f->ino == st->st_ino) {
                break;
            }
        }
    }
    if (rv == 0 && f != NULL) {
        st->st_size = (off_t)f->size;
        st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
    }
    return lossy_leave(rv);
}

/* A new handle on file, which the handle keeps open. */
static int lossy_handle_new(struct lossy_file *f, struct fuse_file_info *fi)
{
    assert(((uintptr_t)f & LOSSY_HANDLE_SYNC) == 0);
    bool sync = (fi->flags & (O_SYNC | O_DSYNC)) != 0;
    f->opens++;
    fi->fh = (uint64_t)(uintptr_t)f | (sync ? LOSSY_HANDLE_SYNC : 0);
    if ((fi->flags & O_TRUNC) != 0) {
        file_truncate(f, 0);
    }
    return 0;
}

static int lossy_open(const char *path, struct fuse_file_info *fi)
{
    int rv = lossy_enter(path);
    struct lossy_file *f = NULL;
    if (rv == 0) {
        rv = file_open(path, &f);
    }
    if (rv == 0) {
        rv = lossy_handle_new(f, fi);
    }
    return lossy_leave(rv);
}

static int lossy_create_locked(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct lossy_op op;
    int rv = op_init(&op, LOSSY_CREATE, path, NULL);
    if (rv != 0) {
        return rv;
    }
    int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
    int fd = openat(lossy.backing_fd, lossy_rel(path), flags | O_CREAT | O_EXCL, mode);
    bool created = fd >= 0;
    if (fd < 0 && errno == EEXIST && (fi->flags & O_EXCL) == 0) {
        fd = openat(lossy.backing_fd, lossy_rel(path), flags);
    }
    if (fd < 0) {
        rv = -errno;
        op_free(&op);
        return rv;
    }
    if (created) {
        journal_push(&op);
    } else {
        op_free(&op);
    }
    struct lossy_file *f = NULL;
    rv = file_adopt(fd, &f);
    return rv != 0 ? rv : lossy_handle_new(f, fi);
}

static int lossy_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    int rv = lossy_enter(path);
    if (rv == 0) {
        rv = lossy_create_locked(path, mode, fi);
    }
    return lossy_leave(rv);
}

static int lossy_read(const char *path, char *buf, size_t size, off_t offset,
                      struct fuse_file_info *fi)
{
    (void)path; /* NULL once unlinked: the handle is the file. */
    int rv = lossy_enter(NULL);
    if (rv == 0) {
        assert(offset >= 0);
        rv = file_read(lossy_handle_file(fi), buf, size, (uint64_t)offset);
    }
    return lossy_leave(rv);
}

static int lossy_write(const char *path, const char *buf, size_t size, off_t offset,
                       struct fuse_file_info *fi)
{
    (void)path;
    int rv = lossy_enter(NULL);
    if (rv == 0) {
        assert(offset >= 0);
        struct lossy_file *f = lossy_handle_file(fi);
        rv = file_write(f, buf, size, (uint64_t)offset);
        if (rv >= 0 && (fi->fh & LOSSY_HANDLE_SYNC) != 0) {
            int frv = file_flush(f);
            rv = frv != 0 ? frv : rv;
        }
    }
    return lossy_leave(rv);
}

static int lossy_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    int rv = lossy_enter(path);
    struct lossy_file *f = NULL;
    if (rv == 0 && fi != NULL) {
        f = lossy_handle_file(fi);
    } else if (rv == 0) {
        rv = path == NULL ? -ENOENT : file_open(path, &f);
    }
    if (rv == 0) {
        assert(size >= 0);
        file_truncate(f, (uint64_t)size);
        files_collect(); /* A file opened here that is still clean. */
    }
    return lossy_leave(rv);
}

static int lossy_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    (void)datasync; /* The size is flushed either way, as fdatasync must for an append. */
    int rv = lossy_enter(NULL);
    if (rv == 0) {
        rv = file_flush(lossy_handle_file(fi));
    }
    return lossy_leave(rv);
}

static int lossy_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    pthread_mutex_lock(&lossy.mutex); /* Also after a cut. */
    lossy_handle_file(fi)->opens--;
    files_collect();
    return lossy_leave(0);
}

/* ---- FUSE operations: names ------------------------------------------------- */

static int lossy_mkdir(const char *path, mode_t mode)
{
    int rv = lossy_enter(path);
    struct lossy_op op;
    if (rv == 0) {
        rv = op_init(&op, LOSSY_MKDIR, path, NULL);
    }
    if (rv == 0) {
        if (mkdirat(lossy.backing_fd, lossy_rel(path), mode) != 0) {
            rv = -errno;
            op_free(&op);
        } else {
            journal_push(&op);
        }
    }
    return lossy_leave(rv);
}

/* Sockets (tandemd.sock) and FIFOs: journaled like a create. */
static int lossy_mknod(const char *path, mode_t mode, dev_t rdev)
{
    int rv = lossy_enter(path);
    struct lossy_op op;
    if (rv == 0 && !S_ISSOCK(mode) && !S_ISFIFO(mode)) {
        rv = -EPERM;
    }
    if (rv == 0) {
        rv = op_init(&op, LOSSY_CREATE, path, NULL);
    }
    if (rv == 0) {
        if (mknodat(lossy.backing_fd, lossy_rel(path), mode, rdev) != 0) {
            rv = -errno;
            op_free(&op);
        } else {
            journal_push(&op);
        }
    }
    return lossy_leave(rv);
}

static int lossy_rmdir(const char *path)
{
    int rv = lossy_enter(path);
    struct lossy_op op;
    struct stat st;
    if (rv == 0) {
        rv = op_init(&op, LOSSY_RMDIR, path, NULL);
    }
    if (rv == 0) {
        if (fstatat(lossy.backing_fd, lossy_rel(path), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            unlinkat(lossy.backing_fd, lossy_rel(path), AT_REMOVEDIR) != 0) {
            rv = -errno;
            op_free(&op);
        } else {
            op.dir = true;
            op.mode = st.st_mode & 07777;
            journal_push(&op);
        }
    }
    return lossy_leave(rv);
}

static int lossy_unlink(const char *path)
{
    int rv = lossy_enter(path);
    struct lossy_op op;
    struct stat st;
    if (rv == 0) {
        rv = op_init(&op, LOSSY_UNLINK, path, NULL);
    }
    if (rv == 0) {
        if (fstatat(lossy.backing_fd, lossy_rel(path), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rv = -errno;
        } else if (S_ISDIR(st.st_mode)) {
            rv = -EISDIR;
        } else {
            rv = op_trash(&op, path, false);
        }
        if (rv == 0) {
            journal_push(&op);
        } else {
            op_free(&op);
        }
    }
    return lossy_leave(rv);
}

/* Rename, keeping a replaced file in the trash (or a replaced empty
 * directory's mode) for an undo. */
static int lossy_rename_locked(const char *from, const char *to, unsigned int flags)
{
    if ((flags & ~(unsigned)RENAME_NOREPLACE) != 0) {
        return -EINVAL;
    }
    struct stat st_from;
    struct stat st_to;
    if (fstatat(lossy.backing_fd, lossy_rel(from), &st_from, AT_SYMLINK_NOFOLLOW) != 0) {
        return -errno;
    }
    bool replaces = fstatat(lossy.backing_fd, lossy_rel(to), &st_to, AT_SYMLINK_NOFOLLOW) == 0;
    if (replaces && (flags & RENAME_NOREPLACE) != 0) {
        return -EEXIST;
    }
    if (replaces && st_from.st_dev == st_to.st_dev && st_from.st_ino == st_to.st_ino) {
        return 0; /* The same file: rename(2) does nothing. */
    }
    struct lossy_op op;
    int rv = op_init(&op, LOSSY_RENAME, from, to);
    if (rv != 0) {
        return rv;
    }
    op.dir = replaces && S_ISDIR(st_to.st_mode);
    op.mode = st_to.st_mode & 07777;
    if (replaces && !op.dir) {
        rv = op_trash(&op, to, true);
    }
    if (rv == 0 &&
        renameat(lossy.backing_fd, lossy_rel(from), lossy.backing_fd, lossy_rel(to)) != 0) {
        rv = -errno;
    }
    if (rv == 0) {
        journal_push(&op);
        return 0;
    }
    if (op.trash != 0) {
        char name[LOSSY_TRASH_NAME_SIZE];
        lossy_trash_name(op.trash, name);
        (void)unlinkat(lossy.backing_fd, name, 0);
    }
    op_free(&op);
    return rv;
}

static int lossy_rename(const char *from, const char *to, unsigned int flags)
{
    int rv = lossy_enter(from);
    if (rv == 0 && lossy_hidden(to)) {
        rv = -EPERM;
    }
    if (rv == 0) {
        rv = lossy_rename_locked(from, to, flags);
    }
    return lossy_leave(rv);
}

static int lossy_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)datasync;
    (void)fi;
    int rv = lossy_enter(path);
    if (rv == 0 && path != NULL) {
        journal_durable(path);
    }
    return lossy_leave(rv);
}

static int lossy_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset,
                         struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)offset;
    (void)fi;
    (void)flags;
    int rv = lossy_enter(path);
    int fd = -1;
    DIR *d = NULL;
    if (rv == 0) {
        fd = openat(lossy.backing_fd, lossy_rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        d = fd < 0 ? NULL : fdopendir(fd);
        rv = d == NULL ? -errno : 0;
    }
    if (rv == 0) {
        bool root = strcmp(path, "/") == 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (root && strcmp(e->d_name, LOSSY_TRASH) == 0) {
                continue;
            }
            if (fill(buf, e->d_name, NULL, 0, 0) != 0) {
                break;
            }
        }
        closedir(d);
    } else if (fd >= 0) {
        close(fd);
    }
    return lossy_leave(rv);
}

/* ---- FUSE operations: attributes (applied at once, always durable) ---------- */

static int lossy_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)fi;
    int rv = lossy_enter(path);
    if (rv == 0 && fchmodat(lossy.backing_fd, lossy_rel(path), mode, 0) != 0) {
        rv = -errno;
    }
    return lossy_leave(rv);
}

static int lossy_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    (void)fi;
    int rv = lossy_enter(path);
    int at = AT_SYMLINK_NOFOLLOW;
    if (rv == 0 && fchownat(lossy.backing_fd, lossy_rel(path), uid, gid, at) != 0) {
        rv = -errno;
    }
    return lossy_leave(rv);
}

static int lossy_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    (void)fi;
    int rv = lossy_enter(path);
    int at = AT_SYMLINK_NOFOLLOW;
    if (rv == 0 && utimensat(lossy.backing_fd, lossy_rel(path), tv, at) != 0) {
        rv = -errno;
    }
    return lossy_leave(rv);
}

static int lossy_statfs(const char *path, struct statvfs *st)
{
    int rv = lossy_enter(path);
    if (rv == 0 && fstatvfs(lossy.backing_fd, st) != 0) {
        rv = -errno;
    }
    return lossy_leave(rv);
}

static void *lossy_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    cfg->use_ino = 1;
    cfg->hard_remove = 1; /* No .fuse_hidden files: an unlinked open file keeps its handle. */
    cfg->nullpath_ok = 0; /* fsyncdir needs the path. */
    cfg->direct_io = 0;   /* The kernel page cache stays above us: mmap works. */
    cfg->kernel_cache = 0;
    cfg->auto_cache = 0;
    return NULL;
}

/* An orderly shutdown (SIGTERM, unmount) makes everything durable; after a
 * cut there is nothing left to make durable. */
static void lossy_destroy(void *data)
{
    (void)data;
    pthread_mutex_lock(&lossy.mutex);
    if (!lossy.cut) {
        lossy.synced_at_exit = lossy_sync_locked() == 0;
        if (!lossy.synced_at_exit) {
            fprintf(stderr, "lossyfs: sync at shutdown failed\n");
        }
    }
    pthread_mutex_unlock(&lossy.mutex);
}

static const struct fuse_operations lossy_operations = {
    .getattr = lossy_getattr,
    .mknod = lossy_mknod,
    .mkdir = lossy_mkdir,
    .unlink = lossy_unlink,
    .rmdir = lossy_rmdir,
    .rename = lossy_rename,
    .chmod = lossy_chmod,
    .chown = lossy_chown,
    .truncate = lossy_truncate,
    .open = lossy_open,
    .read = lossy_read,
    .write = lossy_write,
    .statfs = lossy_statfs,
    .release = lossy_release,
    .fsync = lossy_fsync,
    .readdir = lossy_readdir,
    .fsyncdir = lossy_fsyncdir,
    .init = lossy_init,
    .destroy = lossy_destroy,
    .create = lossy_create,
    .utimens = lossy_utimens,
};

/* ---- control socket --------------------------------------------------------- */

/* Run one command; true if it was the cut. */
static bool lossy_command(const char *line, char *reply, size_t reply_size)
{
    pthread_mutex_lock(&lossy.mutex);
    bool cut = false;
    snprintf(reply, reply_size, "ok");
    if (lossy.cut) {
        snprintf(reply, reply_size, "error power is cut");
    } else if (strcmp(line, "cut") == 0) {
        lossy_cut_locked();
        cut = true;
    } else if (strcmp(line, "sync") == 0) {
        int rv = lossy_sync_locked();
        if (rv != 0) {
            snprintf(reply, reply_size, "error sync: %s", strerror(-rv));
        }
    } else if (strcmp(line, "stats") == 0) {
        size_t files = 0;
        for (struct lossy_file *f = lossy.files; f != NULL; f = f->next) {
            files++;
        }
        snprintf(reply, reply_size, "ok files %zu dirty_bytes %llu pending %zu", files,
                 (unsigned long long)lossy.dirty_bytes, lossy.op_count);
    } else {
        snprintf(reply, reply_size, "error unknown command");
    }
    pthread_mutex_unlock(&lossy.mutex);
    return cut;
}

/* Serve one control connection, line by line; true once it cut the power. */
static bool lossy_control_serve(int c)
{
    char line[LOSSY_LINE_SIZE];
    size_t size = 0;
    char ch;
    while (read(c, &ch, 1) == 1) {
        if (ch != '\n') {
            if (size + 1 < sizeof(line)) {
                line[size++] = ch; /* A longer line is cut short, then refused. */
            }
            continue;
        }
        line[size] = '\0';
        size = 0;
        char reply[LOSSY_LINE_SIZE];
        bool cut = lossy_command(line, reply, sizeof(reply));
        size_t n = strlen(reply);
        reply[n] = '\n';
        if (write(c, reply, n + 1) != (ssize_t)(n + 1) || cut) {
            return cut;
        }
    }
    return false;
}

static void *lossy_control_main(void *data)
{
    (void)data;
    for (;;) {
        int c = accept4(lossy.control_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            fprintf(stderr, "lossyfs: control accept: %s\n", strerror(errno));
            return NULL;
        }
        bool cut = lossy_control_serve(c);
        close(c);
        if (cut) {
            /* fuse_main's handler ends the session; the signal reaches a FUSE
             * thread, since this one blocks it, and wakes the loop. */
            kill(getpid(), SIGTERM);
            return NULL;
        }
    }
}

static int lossy_control_listen(const char *path, struct sockaddr_un *addr)
{
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr->sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(addr->sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    (void)unlink(path);
    if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(fd, 8) != 0) {
        int rv = -errno;
        close(fd);
        return rv;
    }
    return fd;
}

static int lossy_control_start(const char *path)
{
    struct sockaddr_un addr;
    int fd = lossy_control_listen(path, &addr);
    if (fd < 0) {
        return fd;
    }
    lossy.control_fd = fd;
    sigset_t block;
    sigset_t old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old); /* Inherited by the control thread only. */
    pthread_t thread;
    int rv = pthread_create(&thread, NULL, lossy_control_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        return -rv;
    }
    pthread_detach(thread);
    return 0;
}

/* lossyfs --send SOCKET COMMAND: print the answer; exit 0 if it is "ok". */
static int lossy_send(const char *path, const char *command)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "lossyfs: %s: cannot make a socket\n", path);
        return 1;
    }
    strcpy(addr.sun_path, path);
    char reply[LOSSY_LINE_SIZE + 1];
    size_t size = 0;
    if (connect(fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        dprintf(fd, "%s\n", command) < 0) {
        fprintf(stderr, "lossyfs: %s: %s\n", path, strerror(errno));
        close(fd);
        return 1;
    }
    while (size < LOSSY_LINE_SIZE && read(fd, &reply[size], 1) == 1 && reply[size] != '\n') {
        size++;
    }
    reply[size] = '\0';
    close(fd);
    printf("%s\n", reply);
    return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--send") == 0) {
        return lossy_send(argv[2], argv[3]);
    }
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: lossyfs BACKING_DIR MOUNTPOINT [CONTROL_SOCKET]\n"
                        "       lossyfs --send CONTROL_SOCKET cut|sync|stats\n");
        return 2;
    }
    lossy.backing_fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rv = lossy.backing_fd < 0 ? -errno : lossy_trash_init();
    if (rv != 0) {
        fprintf(stderr, "lossyfs: %s: %s\n", argv[1], strerror(-rv));
        return 1;
    }
    if (argc == 4 && (rv = lossy_control_start(argv[3])) != 0) {
        fprintf(stderr, "lossyfs: control %s: %s\n", argv[3], strerror(-rv));
        return 1;
    }
    char *fuse_argv[] = {argv[0], "-f", "-o", "fsname=lossyfs,subtype=lossyfs", argv[2], NULL};
    rv = fuse_main(5, fuse_argv, &lossy_operations, NULL);
    if (argc == 4) {
        (void)unlink(argv[3]);
    }
    /* fuse_main's own status is 8 whenever a signal ended the loop. */
    pthread_mutex_lock(&lossy.mutex);
    bool stopped = lossy.cut || lossy.synced_at_exit;
    pthread_mutex_unlock(&lossy.mutex);
    return stopped ? 0 : 1;
}
