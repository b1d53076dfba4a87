/* tests/lib/fault_fs.c: an in-memory struct tdm_fs that loses, tears and
 * corrupts data on demand (RELIABILITY 3.1 "sim"; STYLE B1.4).
 *
 * Purpose: let fault and power-loss tests drive the engine against a disk
 * whose every promise is explicit, deterministic for a seed, and no stronger
 * than POSIX makes on Linux: a write is durable only after fdatasync() of its
 * file, a name only after sync_dir() of its directory.
 *
 * Model:
 *
 *   fs->root ("/", a directory inode; always present)
 *     current entries  name -> inode   what lookups, open(), list() see
 *     durable entries  name -> inode   what a power loss leaves
 *   file inode
 *     data     bytes                   what pread() sees
 *     durable  bytes                   what a power loss leaves
 *     pending  [offset, offset+length) written since the last fdatasync
 *     truncated_size                   lowest size set by truncate since then
 *
 * - Directories are inodes, not path prefixes: renaming a directory moves its
 *   whole subtree, and a directory's durable entries travel with it. mkdir()
 *   adds an entry to the parent's current table only, so a new directory (and
 *   everything in it) survives a power loss only once its parent is synced, as
 *   on ext4 without a journal commit. tdm_fault_fs_mkdirs() creates durable
 *   directories for test setup.
 * - Paths are absolute or relative to "/"; empty components and "." are
 *   skipped; ".." is rejected with -EINVAL (the engine never uses it).
 * - open() of a directory fails with -EISDIR (the engine never reads one).
 * - pwrite() or truncate() through a descriptor opened without TDM_FS_WRITE
 *   fails with -EBADF.
 * - Descriptor numbers start at 3 and are never reused, so a descriptor from
 *   before a crash can never reach a file opened after it.
 * - lock() locks the inode (flock(2) semantics), opened for writing and created
 *   if missing (its entry is not durable until its directory is synced). The
 *   lock is released when that descriptor is closed or at a crash.
 * - list() reports names in byte order, from a copy taken under the mutex; the
 *   callback runs without the mutex, so it may call back into the fs.
 * - Inodes that no name reaches are freed at a crash and at deinit only.
 *
 * Happy path of a call:
 * 1. Take fs->mutex and count the call in op_counts[op] and op_counts[0].
 * 2. For a descriptor call, find the descriptor (-EBADF if unknown or dead).
 * 3. Let the armed fault rules see the call; a tripped rule fails it now with
 *    its error, after the failure effect documented in fault_fs.h
 *    (tdm_fault_fs_fail_after()).
 * 4. Resolve the path through the current entries and apply the operation.
 * 5. Release the mutex; results go to out-parameters only on success.
 *
 * Happy path of a crash (tdm_fault_fs_crash()):
 * 1. Per file, compute the durable bytes the mode leaves (DROP: as they are;
 *    TORN: per 512-byte sector of the pending writes, at random; KEEP: data).
 * 2. Per file, data := durable; forget pending writes and truncations.
 * 3. Per directory, current entries := durable entries (KEEP: the reverse).
 * 4. Drop every descriptor and lock; disarm every rule.
 * 5. Mark what "/" reaches and free the rest. A directory reached by two
 *    names (possible when a rename between two directories was synced in one
 *    only) keeps its first name in depth-first byte order; a file reached by
 *    two names keeps both, as a hard link.
 *
 * Failure modes:
 * - Errors of the POSIX calls modelled (-ENOENT, -ENOTDIR, -EISDIR, -EEXIST,
 *   -ENOTEMPTY, -EBADF, -EWOULDBLOCK, -EFBIG, -ENAMETOOLONG, -EINVAL) come
 *   back as they would from fs_posix.c.
 * - Injected errors come back exactly as armed.
 * - The fake's own memory comes from the C library and is not under test: an
 *   allocation failure inside the fake aborts the test (tdm_assert). Only the
 *   buffers handed to the caller come from tdm_malloc() and may fail with
 *   -ENOMEM.
 *
 * Close: tdm_fault_fs_deinit() frees every inode and descriptor, open or not,
 * so a test may abandon an engine without closing it. */
#include "fault_fs.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"

#define FAULT_FS_FD_FIRST         3
#define FAULT_FS_BUF_CAPACITY_MIN 4096
#define FAULT_FS_DEPTH_MAX        (TDM_PATH_SIZE / 2) /* Components in a path. */
#define FAULT_FS_FNV_OFFSET       0xcbf29ce484222325ULL
#define FAULT_FS_FNV_PRIME        0x100000001b3ULL

/* A growable byte string. */
struct fault_buf {
    uint8_t *bytes;    /* NULL while capacity is 0. */
    uint64_t size;     /* Bytes in use. */
    uint64_t capacity; /* Bytes allocated; >= size. */
};

/* A byte range [offset, offset + length). */
struct fault_extent {
    uint64_t offset;
    uint64_t length; /* > 0. */
};

struct fault_entry {
    char *name;                    /* Owned; one component, no '/'. */
    struct tdm_fault_inode *inode; /* Borrowed from fs->inodes. */
};

/* Directory entries, sorted by name (strcmp). */
struct fault_table {
    struct fault_entry *entries;
    size_t count;
    size_t capacity;
};

/* A file or a directory. Owned by fs->inodes. Guarded by fs->mutex. */
struct tdm_fault_inode {
    struct tdm_fault_inode *next; /* Next in fs->inodes. */
    bool is_dir;
    bool marked; /* Reached from "/" (crash sweep only). */
    int lock_fd; /* Descriptor holding the lock; 0 if none. */
    /* Files only. */
    struct fault_buf data;        /* Current contents. */
    struct fault_buf durable;     /* Contents after a power loss. */
    struct fault_extent *pending; /* Writes since the last fdatasync. */
    size_t pending_count;
    size_t pending_capacity;
    uint64_t truncated_size; /* Lowest truncate() size since then; UINT64_MAX if none. */
    uint64_t stale_offset;   /* The next pread overlapping [stale_offset, */
    size_t stale_size;       /* + stale_size) sees zeros there; 0: none. */
    /* Directories only. */
    struct fault_table current;         /* Entries lookups see. */
    struct fault_table durable_entries; /* Entries after a power loss. */
};

/* An open descriptor. Guarded by fs->mutex. */
struct tdm_fault_file {
    int fd;                        /* >= FAULT_FS_FD_FIRST. */
    unsigned flags;                /* TDM_FS_* open flags. */
    struct tdm_fault_inode *inode; /* A file inode. */
};

/* ------------------------------------------------------------------------
 * Memory and byte strings.
 * ------------------------------------------------------------------------ */

static void *fault_fs_realloc(void *ptr, size_t size)
{
    tdm_assert(size > 0);
    void *p = realloc(ptr, size);
    tdm_assert(p != NULL); /* The fake's memory is not under test. */
    return p;
}

static char *fault_fs_strndup(const char *s, size_t size)
{
    char *p = fault_fs_realloc(NULL, size + 1);
    memcpy(p, s, size);
    p[size] = '\0';
    return p;
}

static void buf_reserve(struct fault_buf *buf, uint64_t size)
{
    tdm_assert(size <= TDM_FAULT_FS_FILE_SIZE_MAX);
    if (size <= buf->capacity) {
        return;
    }
    uint64_t capacity =
        buf->capacity < FAULT_FS_BUF_CAPACITY_MIN ? FAULT_FS_BUF_CAPACITY_MIN : buf->capacity;
    while (capacity < size) {
        capacity *= 2;
    }
    buf->bytes = fault_fs_realloc(buf->bytes, (size_t)capacity);
    buf->capacity = capacity;
}

/* Set the size; bytes that appear read as zero. */
static void buf_resize(struct fault_buf *buf, uint64_t size)
{
    if (size > buf->size) {
        buf_reserve(buf, size);
        memset(buf->bytes + buf->size, 0, (size_t)(size - buf->size));
    }
    buf->size = size;
    tdm_assert(buf->size <= buf->capacity || buf->size == 0);
}

/* Write length bytes at offset, growing (with zeros before offset) as needed. */
static void buf_write(struct fault_buf *buf, uint64_t offset, const void *src, uint64_t length)
{
    if (length == 0) {
        return;
    }
    if (offset + length > buf->size) {
        buf_resize(buf, offset + length);
    }
    memcpy(buf->bytes + offset, src, (size_t)length);
}

static void buf_copy(struct fault_buf *dst, const struct fault_buf *src)
{
    buf_resize(dst, src->size);
    if (src->size > 0) {
        memcpy(dst->bytes, src->bytes, (size_t)src->size);
    }
}

static void buf_free(struct fault_buf *buf)
{
    free(buf->bytes);
    *buf = (struct fault_buf){0};
}

/* ------------------------------------------------------------------------
 * Directory tables.
 * ------------------------------------------------------------------------ */

/* Binary search: true and *index if found; else false and the insert index. */
static bool table_find(const struct fault_table *table, const char *name, size_t *index)
{
    size_t low = 0;
    size_t high = table->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int cmp = strcmp(table->entries[middle].name, name);
        if (cmp == 0) {
            *index = middle;
            return true;
        }
        if (cmp < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    *index = low;
    return false;
}

static struct tdm_fault_inode *table_get(const struct fault_table *table, const char *name)
{
    size_t index;
    return table_find(table, name, &index) ? table->entries[index].inode : NULL;
}

/* Point name at inode, inserting the entry if missing. */
static void table_set(struct fault_table *table, const char *name, struct tdm_fault_inode *inode)
{
    tdm_assert(inode != NULL);
    size_t index;
    if (table_find(table, name, &index)) {
        table->entries[index].inode = inode;
        return;
    }
    if (table->count == table->capacity) {
        table->capacity = table->capacity == 0 ? 8 : table->capacity * 2;
        table->entries =
            fault_fs_realloc(table->entries, table->capacity * sizeof(*table->entries));
    }
    memmove(&table->entries[index + 1], &table->entries[index],
            (table->count - index) * sizeof(*table->entries));
    table->entries[index].name = fault_fs_strndup(name, strlen(name));
    table->entries[index].inode = inode;
    table->count++;
}

static void table_remove_at(struct fault_table *table, size_t index)
{
    tdm_assert(index < table->count);
    free(table->entries[index].name);
    memmove(&table->entries[index], &table->entries[index + 1],
            (table->count - index - 1) * sizeof(*table->entries));
    table->count--;
}

static void table_remove(struct fault_table *table, const char *name)
{
    size_t index;
    if (table_find(table, name, &index)) {
        table_remove_at(table, index);
    }
}

static void table_clear(struct fault_table *table)
{
    for (size_t i = 0; i < table->count; i++) {
        free(table->entries[i].name);
    }
    table->count = 0;
}

static void table_copy(struct fault_table *dst, const struct fault_table *src)
{
    tdm_assert(dst != src);
    table_clear(dst);
    if (src->count > dst->capacity) {
        dst->capacity = src->count;
        dst->entries = fault_fs_realloc(dst->entries, dst->capacity * sizeof(*dst->entries));
    }
    for (size_t i = 0; i < src->count; i++) {
        dst->entries[i].name = fault_fs_strndup(src->entries[i].name, strlen(src->entries[i].name));
        dst->entries[i].inode = src->entries[i].inode;
    }
    dst->count = src->count;
}

static void table_free(struct fault_table *table)
{
    table_clear(table);
    free(table->entries);
    *table = (struct fault_table){0};
}

/* ------------------------------------------------------------------------
 * Inodes.
 * ------------------------------------------------------------------------ */

static struct tdm_fault_inode *inode_new(struct tdm_fault_fs *fs, bool is_dir)
{
    struct tdm_fault_inode *inode = fault_fs_realloc(NULL, sizeof(*inode));
    *inode = (struct tdm_fault_inode){0};
    inode->is_dir = is_dir;
    inode->truncated_size = UINT64_MAX;
    inode->next = fs->inodes;
    fs->inodes = inode;
    return inode;
}

static void inode_free(struct tdm_fault_inode *inode)
{
    buf_free(&inode->data);
    buf_free(&inode->durable);
    free(inode->pending);
    table_free(&inode->current);
    table_free(&inode->durable_entries);
    free(inode);
}

/* Remember that [offset, offset + length) was written since the last
 * fdatasync, merging with the previous write when they touch (appends). */
static void inode_pending_add(struct tdm_fault_inode *inode, uint64_t offset, uint64_t length)
{
    tdm_assert(!inode->is_dir);
    if (length == 0) {
        return;
    }
    if (inode->pending_count > 0) {
        struct fault_extent *last = &inode->pending[inode->pending_count - 1];
        uint64_t last_end = last->offset + last->length;
        if (offset <= last_end && offset + length >= last->offset) {
            uint64_t start = offset < last->offset ? offset : last->offset;
            uint64_t end = offset + length > last_end ? offset + length : last_end;
            last->offset = start;
            last->length = end - start;
            return;
        }
    }
    if (inode->pending_count == inode->pending_capacity) {
        inode->pending_capacity = inode->pending_capacity == 0 ? 8 : inode->pending_capacity * 2;
        inode->pending =
            fault_fs_realloc(inode->pending, inode->pending_capacity * sizeof(*inode->pending));
    }
    inode->pending[inode->pending_count++] = (struct fault_extent){offset, length};
}

/* Cut pending writes at size (after a truncate that shrank the file). */
static void inode_pending_clip(struct tdm_fault_inode *inode, uint64_t size)
{
    size_t kept = 0;
    for (size_t i = 0; i < inode->pending_count; i++) {
        struct fault_extent extent = inode->pending[i];
        if (extent.offset >= size) {
            continue;
        }
        if (extent.offset + extent.length > size) {
            extent.length = size - extent.offset;
        }
        inode->pending[kept++] = extent;
    }
    inode->pending_count = kept;
}

static int extent_compare(const void *a, const void *b)
{
    const struct fault_extent *x = a;
    const struct fault_extent *y = b;
    return x->offset < y->offset ? -1 : (x->offset > y->offset ? 1 : 0);
}

/* Sort the pending writes and merge the ones that touch: a disjoint union. */
static void inode_pending_normalize(struct tdm_fault_inode *inode)
{
    if (inode->pending_count < 2) {
        return;
    }
    qsort(inode->pending, inode->pending_count, sizeof(*inode->pending), extent_compare);
    size_t kept = 1;
    for (size_t i = 1; i < inode->pending_count; i++) {
        struct fault_extent *last = &inode->pending[kept - 1];
        struct fault_extent extent = inode->pending[i];
        uint64_t last_end = last->offset + last->length;
        if (extent.offset <= last_end) {
            uint64_t end = extent.offset + extent.length;
            if (end > last_end) {
                last->length = end - last->offset;
            }
        } else {
            inode->pending[kept++] = extent;
        }
    }
    inode->pending_count = kept;
}

/* A successful fdatasync: durable := data, touching only what changed. Bytes
 * whose pending record was dropped by a failed fdatasync stay as they were on
 * the disk (zero where the file grew). */
static void inode_sync(struct tdm_fault_inode *inode)
{
    tdm_assert(!inode->is_dir);
    uint64_t cut = inode->durable.size;
    if (inode->truncated_size < cut) {
        cut = inode->truncated_size;
    }
    buf_resize(&inode->durable, cut);
    buf_resize(&inode->durable, inode->data.size);
    for (size_t i = 0; i < inode->pending_count; i++) {
        const struct fault_extent *extent = &inode->pending[i];
        if (extent->offset >= inode->data.size) {
            continue;
        }
        uint64_t end = extent->offset + extent->length;
        if (end > inode->data.size) {
            end = inode->data.size;
        }
        memcpy(inode->durable.bytes + extent->offset, inode->data.bytes + extent->offset,
               (size_t)(end - extent->offset));
    }
    inode->pending_count = 0;
    inode->truncated_size = UINT64_MAX;
    tdm_assert(inode->durable.size == inode->data.size);
}

/* TORN: per 512-byte sector touched by a pending write, copy the pending
 * bytes of that sector from data to durable, or not, at random. Sectors are
 * visited in offset order, so the outcome is a function of the prng alone. */
static void inode_tear(struct tdm_fault_inode *inode, struct tdm_prng *prng)
{
    tdm_assert(!inode->is_dir);
    tdm_assert(prng != NULL);
    inode_pending_normalize(inode);
    uint64_t sector_last = UINT64_MAX; /* Sector decided last; its decision below. */
    bool sector_applied = false;
    for (size_t i = 0; i < inode->pending_count; i++) {
        uint64_t start = inode->pending[i].offset;
        uint64_t end = start + inode->pending[i].length;
        if (end > inode->data.size) {
            end = inode->data.size;
        }
        while (start < end) {
            uint64_t sector = start / TDM_FAULT_FS_SECTOR_SIZE;
            uint64_t piece_end = (sector + 1) * TDM_FAULT_FS_SECTOR_SIZE;
            if (piece_end > end) {
                piece_end = end;
            }
            if (sector != sector_last) {
                sector_last = sector;
                sector_applied = (tdm_prng_next(prng) & 1) != 0;
            }
            if (sector_applied) {
                buf_write(&inode->durable, start, inode->data.bytes + start, piece_end - start);
            }
            start = piece_end;
        }
    }
}

/* ------------------------------------------------------------------------
 * Paths.
 * ------------------------------------------------------------------------ */

/* Resolve path up to its last component. On success *parent is the directory
 * that holds the last component, copied into name (NUL-terminated), or NULL
 * with name empty when path names "/" itself. durable: walk the durable
 * entries instead of the current ones. */
static int path_resolve_parent(struct tdm_fault_fs *fs, const char *path, bool durable,
                               struct tdm_fault_inode **parent,
                               char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1])
{
    tdm_assert(path != NULL);
    size_t path_size = strnlen(path, TDM_PATH_SIZE);
    if (path_size == TDM_PATH_SIZE) {
        return -ENAMETOOLONG;
    }
    if (path_size == 0) {
        return -ENOENT;
    }
    struct tdm_fault_inode *dir = fs->root;
    struct tdm_fault_inode *holder = NULL;
    name[0] = '\0';
    const char *p = path;
    for (;;) {
        while (*p == '/') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        const char *component = p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        size_t component_size = (size_t)(p - component);
        if (component_size > TDM_FAULT_FS_NAME_SIZE_MAX) {
            return -ENAMETOOLONG;
        }
        if (component_size == 1 && component[0] == '.') {
            continue;
        }
        if (component_size == 2 && component[0] == '.' && component[1] == '.') {
            return -EINVAL;
        }
        if (name[0] != '\0') {
            /* The previous component must be a directory to go on. */
            struct tdm_fault_inode *next =
                table_get(durable ? &dir->durable_entries : &dir->current, name);
            if (next == NULL) {
                return -ENOENT;
            }
            if (!next->is_dir) {
                return -ENOTDIR;
            }
            dir = next;
        }
        memcpy(name, component, component_size);
        name[component_size] = '\0';
        holder = dir;
    }
    *parent = holder;
    return 0;
}

/* Resolve the whole path to an inode (the root for "/"). */
static int path_lookup(struct tdm_fault_fs *fs, const char *path, bool durable,
                       struct tdm_fault_inode **inode)
{
    struct tdm_fault_inode *parent;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    int rv = path_resolve_parent(fs, path, durable, &parent, name);
    if (rv != 0) {
        return rv;
    }
    if (parent == NULL) {
        *inode = fs->root;
        return 0;
    }
    struct tdm_fault_inode *found =
        table_get(durable ? &parent->durable_entries : &parent->current, name);
    if (found == NULL) {
        return -ENOENT;
    }
    *inode = found;
    return 0;
}

/* True if the current path to directory target passes through inode dir (or
 * is it): renaming dir there would make it its own ancestor. */
static bool path_passes_through(struct tdm_fault_fs *fs, const char *target,
                                const struct tdm_fault_inode *dir)
{
    struct tdm_fault_inode *inode = fs->root;
    const char *p = target;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    for (;;) {
        if (inode == dir) {
            return true;
        }
        while (*p == '/') {
            p++;
        }
        if (*p == '\0') {
            return false;
        }
        const char *component = p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        size_t component_size = (size_t)(p - component);
        tdm_assert(component_size <= TDM_FAULT_FS_NAME_SIZE_MAX); /* Resolved before. */
        if (component_size == 1 && component[0] == '.') {
            continue;
        }
        memcpy(name, component, component_size);
        name[component_size] = '\0';
        inode = table_get(&inode->current, name);
        if (inode == NULL || !inode->is_dir) {
            return false;
        }
    }
}

/* ------------------------------------------------------------------------
 * Calls, descriptors and rules.
 * ------------------------------------------------------------------------ */

static void fault_fs_mutex_lock(struct tdm_fault_fs *fs)
{
    int rv = pthread_mutex_lock(&fs->mutex);
    tdm_assert(rv == 0);
}

static void fault_fs_mutex_unlock(struct tdm_fault_fs *fs)
{
    int rv = pthread_mutex_unlock(&fs->mutex);
    tdm_assert(rv == 0);
}

static struct tdm_fault_fs *fault_fs_of(struct tdm_fs *base)
{
    tdm_assert(base != NULL);
    return (struct tdm_fault_fs *)(void *)base; /* base is the first member. */
}

/* Step 1: take the mutex and count the call. */
static void fault_fs_enter(struct tdm_fault_fs *fs, enum tdm_fs_op op)
{
    tdm_assert(op > 0);
    tdm_assert(op < TDM_FS_OP__COUNT);
    fault_fs_mutex_lock(fs);
    fs->op_counts[op]++;
    fs->op_counts[0]++;
}

static int fault_fs_leave(struct tdm_fault_fs *fs, int rv)
{
    tdm_assert(rv <= 0);
    fault_fs_mutex_unlock(fs);
    return rv;
}

/* Step 3: the error of the rule this call trips, or 0. Every armed rule that
 * matches counts the call; the earliest armed one that fires decides. */
static int fault_fs_trip(struct tdm_fault_fs *fs, enum tdm_fs_op op)
{
    int error = 0;
    for (size_t i = 0; i < TDM_FAULT_FS_RULES_MAX; i++) {
        struct tdm_fault_rule *rule = &fs->rules[i];
        if (!rule->armed || (rule->op != 0 && rule->op != (unsigned)op)) {
            continue;
        }
        if (rule->skip_count > 0) {
            rule->skip_count--;
            continue;
        }
        if (error == 0) {
            error = rule->error;
        }
        if (!rule->persistent) {
            rule->armed = false;
        }
    }
    if (error != 0) {
        fs->fired_count++;
    }
    tdm_assert(error <= 0);
    return error;
}

/* Step 2: the live descriptor fd, or NULL. */
static struct tdm_fault_file *fault_fs_file(struct tdm_fault_fs *fs, int fd)
{
    for (size_t i = 0; i < fs->file_count; i++) {
        if (fs->files[i].fd == fd) {
            return &fs->files[i];
        }
    }
    return NULL;
}

static int fault_fs_file_add(struct tdm_fault_fs *fs, struct tdm_fault_inode *inode, unsigned flags)
{
    tdm_assert(!inode->is_dir);
    tdm_assert(fs->fd_next < INT_MAX);
    if (fs->file_count == fs->file_capacity) {
        fs->file_capacity = fs->file_capacity == 0 ? 16 : fs->file_capacity * 2;
        fs->files = fault_fs_realloc(fs->files, fs->file_capacity * sizeof(*fs->files));
    }
    int fd = fs->fd_next++;
    fs->files[fs->file_count++] = (struct tdm_fault_file){fd, flags, inode};
    return fd;
}

static void fault_fs_file_remove(struct tdm_fault_fs *fs, struct tdm_fault_file *file)
{
    size_t index = (size_t)(file - fs->files);
    tdm_assert(index < fs->file_count);
    if (file->inode->lock_fd == file->fd) {
        file->inode->lock_fd = 0;
    }
    fs->files[index] = fs->files[fs->file_count - 1];
    fs->file_count--;
}

/* ------------------------------------------------------------------------
 * The struct tdm_fs table.
 * ------------------------------------------------------------------------ */

static int fault_fs_open(struct tdm_fs *base, const char *path, unsigned flags, int *fd)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    tdm_assert(fd != NULL);
    fault_fs_enter(fs, TDM_FS_OP_OPEN);
    int rv = fault_fs_trip(fs, TDM_FS_OP_OPEN);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    struct tdm_fault_inode *parent;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    rv = path_resolve_parent(fs, path, false, &parent, name);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (parent == NULL) {
        return fault_fs_leave(fs, -EISDIR);
    }
    struct tdm_fault_inode *inode = table_get(&parent->current, name);
    if (inode != NULL) {
        if ((flags & TDM_FS_CREATE) && (flags & TDM_FS_EXCLUSIVE)) {
            return fault_fs_leave(fs, -EEXIST);
        }
        if (inode->is_dir) {
            return fault_fs_leave(fs, -EISDIR);
        }
    } else {
        if (!(flags & TDM_FS_CREATE)) {
            return fault_fs_leave(fs, -ENOENT);
        }
        inode = inode_new(fs, false);
        table_set(&parent->current, name, inode);
    }
    *fd = fault_fs_file_add(fs, inode, flags);
    return fault_fs_leave(fs, 0);
}

static int fault_fs_close(struct tdm_fs *base, int fd)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_CLOSE);
    struct tdm_fault_file *file = fault_fs_file(fs, fd);
    if (file == NULL) {
        return fault_fs_leave(fs, -EBADF);
    }
    /* Linux releases the descriptor even when close() fails. */
    int rv = fault_fs_trip(fs, TDM_FS_OP_CLOSE);
    fault_fs_file_remove(fs, file);
    return fault_fs_leave(fs, rv);
}

static int fault_fs_pread(struct tdm_fs *base, int fd, void *buf, size_t size, uint64_t offset,
                          size_t *read_size)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    tdm_assert(buf != NULL || size == 0);
    tdm_assert(read_size != NULL);
    fault_fs_enter(fs, TDM_FS_OP_PREAD);
    struct tdm_fault_file *file = fault_fs_file(fs, fd);
    if (file == NULL) {
        return fault_fs_leave(fs, -EBADF);
    }
    int rv = fault_fs_trip(fs, TDM_FS_OP_PREAD);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    const struct fault_buf *data = &file->inode->data;
    size_t done = 0;
    if (offset < data->size) {
        uint64_t available = data->size - offset;
        done = available < size ? (size_t)available : size;
        memcpy(buf, data->bytes + offset, done);
    }
    struct tdm_fault_inode *inode = file->inode;
    if (inode->stale_size > 0 && offset < inode->stale_offset + inode->stale_size &&
        inode->stale_offset < offset + done) {
        uint64_t from = inode->stale_offset > offset ? inode->stale_offset : offset;
        uint64_t to = inode->stale_offset + inode->stale_size < offset + done
                          ? inode->stale_offset + inode->stale_size
                          : offset + done;
        memset((uint8_t *)buf + (from - offset), 0, (size_t)(to - from));
        inode->stale_size = 0;
    }
    *read_size = done;
    return fault_fs_leave(fs, 0);
}

static int fault_fs_pwrite(struct tdm_fs *base, int fd, const void *buf, size_t size,
                           uint64_t offset)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    tdm_assert(buf != NULL || size == 0);
    fault_fs_enter(fs, TDM_FS_OP_PWRITE);
    struct tdm_fault_file *file = fault_fs_file(fs, fd);
    if (file == NULL || !(file->flags & TDM_FS_WRITE)) {
        return fault_fs_leave(fs, -EBADF);
    }
    struct tdm_fault_inode *inode = file->inode;
    int rv = fault_fs_trip(fs, TDM_FS_OP_PWRITE);
    if (rv != 0) {
        if (fs->pwrite_fail_torn && size > 0 && offset < TDM_FAULT_FS_FILE_SIZE_MAX) {
            uint64_t prefix = tdm_prng_below(&fs->prng, size);
            if (prefix > TDM_FAULT_FS_FILE_SIZE_MAX - offset) {
                prefix = TDM_FAULT_FS_FILE_SIZE_MAX - offset;
            }
            buf_write(&inode->data, offset, buf, prefix);
            inode_pending_add(inode, offset, prefix);
        }
        return fault_fs_leave(fs, rv);
    }
    if (offset > TDM_FAULT_FS_FILE_SIZE_MAX || size > TDM_FAULT_FS_FILE_SIZE_MAX - offset) {
        return fault_fs_leave(fs, -EFBIG);
    }
    buf_write(&inode->data, offset, buf, size);
    inode_pending_add(inode, offset, size);
    return fault_fs_leave(fs, 0);
}

static int fault_fs_fdatasync(struct tdm_fs *base, int fd)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_FDATASYNC);
    struct tdm_fault_file *file = fault_fs_file(fs, fd);
    if (file == NULL) {
        return fault_fs_leave(fs, -EBADF);
    }
    int rv = fault_fs_trip(fs, TDM_FS_OP_FDATASYNC);
    if (rv != 0) {
        /* fsyncgate: the pages are marked clean, the data stays visible, the
         * disk keeps what it had. A later fdatasync will not write them. */
        file->inode->pending_count = 0;
        return fault_fs_leave(fs, rv);
    }
    inode_sync(file->inode);
    return fault_fs_leave(fs, 0);
}

static int fault_fs_size(struct tdm_fs *base, int fd, uint64_t *size)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    tdm_assert(size != NULL);
    fault_fs_enter(fs, TDM_FS_OP_SIZE);
    struct tdm_fault_file *file = fault_fs_file(fs, fd);
    if (file == NULL) {
        return fault_fs_leave(fs, -EBADF);
    }
    int rv = fault_fs_trip(fs, TDM_FS_OP_SIZE);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    *size = file->inode->data.size;
    return fault_fs_leave(fs, 0);
}

static int fault_fs_truncate(struct tdm_fs *base, int fd, uint64_t size)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_TRUNCATE);
    struct tdm_fault_file *file = fault_fs_file(fs, fd);
    if (file == NULL || !(file->flags & TDM_FS_WRITE)) {
        return fault_fs_leave(fs, -EBADF);
    }
    int rv = fault_fs_trip(fs, TDM_FS_OP_TRUNCATE);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (size > TDM_FAULT_FS_FILE_SIZE_MAX) {
        return fault_fs_leave(fs, -EFBIG);
    }
    struct tdm_fault_inode *inode = file->inode;
    buf_resize(&inode->data, size);
    inode_pending_clip(inode, size);
    if (size < inode->truncated_size) {
        inode->truncated_size = size;
    }
    return fault_fs_leave(fs, 0);
}

static int fault_fs_rename(struct tdm_fs *base, const char *from, const char *to)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_RENAME);
    int rv = fault_fs_trip(fs, TDM_FS_OP_RENAME);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    struct tdm_fault_inode *from_parent;
    struct tdm_fault_inode *to_parent;
    char from_name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    char to_name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    rv = path_resolve_parent(fs, from, false, &from_parent, from_name);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    rv = path_resolve_parent(fs, to, false, &to_parent, to_name);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (from_parent == NULL || to_parent == NULL) {
        return fault_fs_leave(fs, -EBUSY); /* "/" itself. */
    }
    struct tdm_fault_inode *source = table_get(&from_parent->current, from_name);
    if (source == NULL) {
        return fault_fs_leave(fs, -ENOENT);
    }
    struct tdm_fault_inode *target = table_get(&to_parent->current, to_name);
    if (target == source) {
        return fault_fs_leave(fs, 0); /* POSIX: the same file; nothing to do. */
    }
    if (target != NULL) {
        if (source->is_dir && !target->is_dir) {
            return fault_fs_leave(fs, -ENOTDIR);
        }
        if (!source->is_dir && target->is_dir) {
            return fault_fs_leave(fs, -EISDIR);
        }
        if (target->is_dir && target->current.count > 0) {
            return fault_fs_leave(fs, -ENOTEMPTY);
        }
    }
    if (source->is_dir && path_passes_through(fs, to, source)) {
        return fault_fs_leave(fs, -EINVAL);
    }
    table_remove(&from_parent->current, from_name);
    table_set(&to_parent->current, to_name, source);
    return fault_fs_leave(fs, 0);
}

static int fault_fs_unlink(struct tdm_fs *base, const char *path)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_UNLINK);
    int rv = fault_fs_trip(fs, TDM_FS_OP_UNLINK);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    struct tdm_fault_inode *parent;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    rv = path_resolve_parent(fs, path, false, &parent, name);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (parent == NULL) {
        return fault_fs_leave(fs, -EISDIR);
    }
    struct tdm_fault_inode *inode = table_get(&parent->current, name);
    if (inode == NULL) {
        return fault_fs_leave(fs, -ENOENT);
    }
    if (inode->is_dir) {
        return fault_fs_leave(fs, -EISDIR);
    }
    table_remove(&parent->current, name);
    return fault_fs_leave(fs, 0);
}

static int fault_fs_mkdir(struct tdm_fs *base, const char *path)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_MKDIR);
    int rv = fault_fs_trip(fs, TDM_FS_OP_MKDIR);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    struct tdm_fault_inode *parent;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    rv = path_resolve_parent(fs, path, false, &parent, name);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (parent == NULL) {
        return fault_fs_leave(fs, 0); /* "/" exists. */
    }
    struct tdm_fault_inode *inode = table_get(&parent->current, name);
    if (inode != NULL) {
        return fault_fs_leave(fs, inode->is_dir ? 0 : -EEXIST);
    }
    table_set(&parent->current, name, inode_new(fs, true));
    return fault_fs_leave(fs, 0);
}

static int fault_fs_sync_dir(struct tdm_fs *base, const char *path)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_SYNC_DIR);
    int rv = fault_fs_trip(fs, TDM_FS_OP_SYNC_DIR);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    struct tdm_fault_inode *dir;
    rv = path_lookup(fs, path, false, &dir);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (!dir->is_dir) {
        return fault_fs_leave(fs, -ENOTDIR);
    }
    table_copy(&dir->durable_entries, &dir->current);
    return fault_fs_leave(fs, 0);
}

static int fault_fs_list(struct tdm_fs *base, const char *path, tdm_fs_list_cb cb, void *data)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    tdm_assert(cb != NULL);
    fault_fs_enter(fs, TDM_FS_OP_LIST);
    int rv = fault_fs_trip(fs, TDM_FS_OP_LIST);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    struct tdm_fault_inode *dir;
    rv = path_lookup(fs, path, false, &dir);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (!dir->is_dir) {
        return fault_fs_leave(fs, -ENOTDIR);
    }
    /* Copy the names, so that cb runs without the mutex. */
    struct fault_table names = {0};
    table_copy(&names, &dir->current);
    fault_fs_leave(fs, 0);
    for (size_t i = 0; i < names.count && rv == 0; i++) {
        rv = cb(data, names.entries[i].name);
    }
    table_free(&names);
    return rv;
}

static int fault_fs_lock(struct tdm_fs *base, const char *path, int *fd)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    tdm_assert(fd != NULL);
    fault_fs_enter(fs, TDM_FS_OP_LOCK);
    int rv = fault_fs_trip(fs, TDM_FS_OP_LOCK);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    struct tdm_fault_inode *parent;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    rv = path_resolve_parent(fs, path, false, &parent, name);
    if (rv != 0) {
        return fault_fs_leave(fs, rv);
    }
    if (parent == NULL) {
        return fault_fs_leave(fs, -EISDIR);
    }
    struct tdm_fault_inode *inode = table_get(&parent->current, name);
    if (inode == NULL) {
        inode = inode_new(fs, false);
        table_set(&parent->current, name, inode);
    }
    if (inode->is_dir) {
        return fault_fs_leave(fs, -EISDIR);
    }
    if (inode->lock_fd != 0) {
        return fault_fs_leave(fs, -EWOULDBLOCK);
    }
    int lock_fd = fault_fs_file_add(fs, inode, TDM_FS_READ | TDM_FS_WRITE);
    inode->lock_fd = lock_fd;
    *fd = lock_fd;
    return fault_fs_leave(fs, 0);
}

/* The fake has no page cache: dropping it is a no-op, but the call is counted
 * (op_counts[TDM_FS_OP_ADVISE]) so that a test can prove the scrubber asked
 * for reads from the medium, and a rule can fail it. */
static int fault_fs_advise_dontneed(struct tdm_fs *base, int fd)
{
    struct tdm_fault_fs *fs = fault_fs_of(base);
    fault_fs_enter(fs, TDM_FS_OP_ADVISE);
    struct tdm_fault_file *file = fault_fs_file(fs, fd);
    if (file == NULL) {
        return fault_fs_leave(fs, -EBADF);
    }
    int rv = fault_fs_trip(fs, TDM_FS_OP_ADVISE);
    return fault_fs_leave(fs, rv);
}

/* ------------------------------------------------------------------------
 * Lifecycle and crash.
 * ------------------------------------------------------------------------ */

void tdm_fault_fs_init(struct tdm_fault_fs *fs)
{
    tdm_assert(fs != NULL);
    *fs = (struct tdm_fault_fs){
        .base =
            {
                .open = fault_fs_open,
                .close = fault_fs_close,
                .pread = fault_fs_pread,
                .pwrite = fault_fs_pwrite,
                .fdatasync = fault_fs_fdatasync,
                .size = fault_fs_size,
                .truncate = fault_fs_truncate,
                .rename = fault_fs_rename,
                .unlink = fault_fs_unlink,
                .mkdir = fault_fs_mkdir,
                .sync_dir = fault_fs_sync_dir,
                .list = fault_fs_list,
                .lock = fault_fs_lock,
                .advise_dontneed = fault_fs_advise_dontneed,
            },
        .fd_next = FAULT_FS_FD_FIRST,
    };
    tdm_assert(pthread_mutex_init(&fs->mutex, NULL) == 0);
    fs->root = inode_new(fs, true);
    tdm_prng_init(&fs->prng, 0);
    tdm_assert((void *)&fs->base == (void *)fs);
}

void tdm_fault_fs_deinit(struct tdm_fault_fs *fs)
{
    tdm_assert(fs != NULL);
    tdm_assert(fs->root != NULL);
    struct tdm_fault_inode *inode = fs->inodes;
    while (inode != NULL) {
        struct tdm_fault_inode *next = inode->next;
        inode_free(inode);
        inode = next;
    }
    free(fs->files);
    pthread_mutex_destroy(&fs->mutex);
    *fs = (struct tdm_fault_fs){0};
}

/* Mark what dir reaches. A directory reached a second time loses that entry,
 * so that the namespace stays a tree (see step 5 of a crash). */
static void crash_mark(struct tdm_fault_inode *dir, size_t depth)
{
    tdm_assert(dir->is_dir);
    tdm_assert(depth < FAULT_FS_DEPTH_MAX);
    size_t i = 0;
    while (i < dir->current.count) {
        struct tdm_fault_inode *inode = dir->current.entries[i].inode;
        if (inode->is_dir && inode->marked) {
            table_remove(&dir->durable_entries, dir->current.entries[i].name);
            table_remove_at(&dir->current, i);
            continue;
        }
        if (!inode->marked) {
            inode->marked = true;
            if (inode->is_dir) {
                crash_mark(inode, depth + 1);
            }
        }
        i++;
    }
}

void tdm_fault_fs_crash(struct tdm_fault_fs *fs, enum tdm_fault_crash_mode mode,
                        struct tdm_prng *prng)
{
    tdm_assert(mode >= TDM_FAULT_CRASH_DROP);
    tdm_assert(mode <= TDM_FAULT_CRASH_KEEP);
    tdm_assert(mode != TDM_FAULT_CRASH_TORN || prng != NULL);
    fault_fs_mutex_lock(fs);

    /* Steps 1-3. */
    for (struct tdm_fault_inode *inode = fs->inodes; inode != NULL; inode = inode->next) {
        inode->lock_fd = 0;
        inode->marked = false;
        if (inode->is_dir) {
            if (mode == TDM_FAULT_CRASH_KEEP) {
                table_copy(&inode->durable_entries, &inode->current);
            } else {
                table_copy(&inode->current, &inode->durable_entries);
            }
            continue;
        }
        switch (mode) {
        case TDM_FAULT_CRASH_DROP:
            break;
        case TDM_FAULT_CRASH_TORN:
            inode_tear(inode, prng);
            break;
        case TDM_FAULT_CRASH_KEEP:
            buf_copy(&inode->durable, &inode->data);
            break;
        default:
            tdm_unreachable();
        }
        buf_copy(&inode->data, &inode->durable);
        inode->pending_count = 0;
        inode->truncated_size = UINT64_MAX;
        inode->stale_size = 0; /* A stale read is a reader's race: none survives. */
    }

    /* Step 4. */
    fs->file_count = 0;
    for (size_t i = 0; i < TDM_FAULT_FS_RULES_MAX; i++) {
        fs->rules[i].armed = false;
    }

    /* Step 5. */
    fs->root->marked = true;
    crash_mark(fs->root, 0);
    struct tdm_fault_inode **link = &fs->inodes;
    while (*link != NULL) {
        struct tdm_fault_inode *inode = *link;
        if (inode->marked) {
            link = &inode->next;
            continue;
        }
        *link = inode->next;
        inode_free(inode);
    }
    fault_fs_mutex_unlock(fs);
}

/* ------------------------------------------------------------------------
 * Fault knobs.
 * ------------------------------------------------------------------------ */

int tdm_fault_fs_fail_after(struct tdm_fault_fs *fs, unsigned op, uint64_t skip_count, int error,
                            bool persistent)
{
    tdm_assert(op < TDM_FS_OP__COUNT);
    tdm_assert(error < 0);
    fault_fs_mutex_lock(fs);
    int rv = -ENOSPC;
    for (size_t i = 0; i < TDM_FAULT_FS_RULES_MAX; i++) {
        if (!fs->rules[i].armed) {
            fs->rules[i] = (struct tdm_fault_rule){
                .armed = true,
                .op = op,
                .skip_count = skip_count,
                .error = error,
                .persistent = persistent,
            };
            rv = 0;
            break;
        }
    }
    fault_fs_mutex_unlock(fs);
    return rv;
}

int tdm_fault_fs_fail_next(struct tdm_fault_fs *fs, unsigned op, int error)
{
    return tdm_fault_fs_fail_after(fs, op, 0, error, false);
}

void tdm_fault_fs_clear(struct tdm_fault_fs *fs)
{
    fault_fs_mutex_lock(fs);
    for (size_t i = 0; i < TDM_FAULT_FS_RULES_MAX; i++) {
        fs->rules[i].armed = false;
    }
    fault_fs_mutex_unlock(fs);
}

void tdm_fault_fs_set_pwrite_torn(struct tdm_fault_fs *fs, bool on)
{
    fault_fs_mutex_lock(fs);
    fs->pwrite_fail_torn = on;
    fault_fs_mutex_unlock(fs);
}

void tdm_fault_fs_seed(struct tdm_fault_fs *fs, uint64_t seed)
{
    fault_fs_mutex_lock(fs);
    tdm_prng_init(&fs->prng, seed);
    fault_fs_mutex_unlock(fs);
}

uint64_t tdm_fault_fs_count(struct tdm_fault_fs *fs, unsigned op)
{
    tdm_assert(op < TDM_FS_OP__COUNT);
    fault_fs_mutex_lock(fs);
    uint64_t count = fs->op_counts[op];
    fault_fs_mutex_unlock(fs);
    return count;
}

uint64_t tdm_fault_fs_fired(struct tdm_fault_fs *fs)
{
    fault_fs_mutex_lock(fs);
    uint64_t count = fs->fired_count;
    fault_fs_mutex_unlock(fs);
    return count;
}

/* Look up the file at path (current entries) for a helper. */
static int helper_file(struct tdm_fault_fs *fs, const char *path, bool durable,
                       struct tdm_fault_inode **inode)
{
    int rv = path_lookup(fs, path, durable, inode);
    if (rv != 0) {
        return rv;
    }
    return (*inode)->is_dir ? -EISDIR : 0;
}

int tdm_fault_fs_flip(struct tdm_fault_fs *fs, const char *path, uint64_t offset, unsigned bit)
{
    if (bit > 7) {
        return -EINVAL;
    }
    fault_fs_mutex_lock(fs);
    struct tdm_fault_inode *inode;
    int rv = helper_file(fs, path, false, &inode);
    if (rv == 0) {
        uint8_t mask = (uint8_t)(1u << bit);
        rv = -EINVAL;
        if (offset < inode->data.size) {
            inode->data.bytes[offset] ^= mask;
            rv = 0;
        }
        if (offset < inode->durable.size) {
            inode->durable.bytes[offset] ^= mask;
            rv = 0;
        }
    }
    fault_fs_mutex_unlock(fs);
    return rv;
}

int tdm_fault_fs_stale_read_once(struct tdm_fault_fs *fs, const char *path, uint64_t offset,
                                 size_t size)
{
    fault_fs_mutex_lock(fs);
    struct tdm_fault_inode *inode;
    int rv = helper_file(fs, path, false, &inode);
    if (rv == 0) {
        inode->stale_offset = offset;
        inode->stale_size = size;
    }
    fault_fs_mutex_unlock(fs);
    return rv;
}

/* ------------------------------------------------------------------------
 * Helpers for tests.
 * ------------------------------------------------------------------------ */

int tdm_fault_fs_mkdirs(struct tdm_fault_fs *fs, const char *path)
{
    tdm_assert(path != NULL);
    if (strnlen(path, TDM_PATH_SIZE) == TDM_PATH_SIZE) {
        return -ENAMETOOLONG;
    }
    fault_fs_mutex_lock(fs);
    struct tdm_fault_inode *dir = fs->root;
    const char *p = path;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    int rv = 0;
    for (;;) {
        while (*p == '/') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        const char *component = p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        size_t component_size = (size_t)(p - component);
        if (component_size > TDM_FAULT_FS_NAME_SIZE_MAX) {
            rv = -ENAMETOOLONG;
            break;
        }
        if (component_size == 1 && component[0] == '.') {
            continue;
        }
        if (component_size == 2 && component[0] == '.' && component[1] == '.') {
            rv = -EINVAL;
            break;
        }
        memcpy(name, component, component_size);
        name[component_size] = '\0';
        struct tdm_fault_inode *next = table_get(&dir->current, name);
        if (next == NULL) {
            next = inode_new(fs, true);
            table_set(&dir->current, name, next);
        }
        if (!next->is_dir) {
            rv = -ENOTDIR;
            break;
        }
        table_set(&dir->durable_entries, name, next);
        dir = next;
    }
    fault_fs_mutex_unlock(fs);
    return rv;
}

int tdm_fault_fs_write_file(struct tdm_fault_fs *fs, const char *path, const void *data,
                            size_t size)
{
    tdm_assert(data != NULL || size == 0);
    if (size > TDM_FAULT_FS_FILE_SIZE_MAX) {
        return -EFBIG;
    }
    fault_fs_mutex_lock(fs);
    struct tdm_fault_inode *parent;
    char name[TDM_FAULT_FS_NAME_SIZE_MAX + 1];
    int rv = path_resolve_parent(fs, path, false, &parent, name);
    if (rv == 0 && parent == NULL) {
        rv = -EISDIR;
    }
    if (rv == 0) {
        struct tdm_fault_inode *old = table_get(&parent->current, name);
        if (old != NULL && old->is_dir) {
            rv = -EISDIR;
        }
    }
    if (rv == 0) {
        struct tdm_fault_inode *inode = inode_new(fs, false);
        buf_write(&inode->data, 0, data, size);
        buf_copy(&inode->durable, &inode->data);
        table_set(&parent->current, name, inode);
        table_set(&parent->durable_entries, name, inode);
    }
    fault_fs_mutex_unlock(fs);
    return rv;
}

static int helper_read(struct tdm_fault_fs *fs, const char *path, bool durable, void **data,
                       size_t *size)
{
    tdm_assert(data != NULL);
    tdm_assert(size != NULL);
    fault_fs_mutex_lock(fs);
    struct tdm_fault_inode *inode;
    int rv = helper_file(fs, path, durable, &inode);
    if (rv == 0) {
        const struct fault_buf *buf = durable ? &inode->durable : &inode->data;
        void *copy = NULL;
        if (buf->size > 0) {
            copy = tdm_malloc((size_t)buf->size);
            if (copy == NULL) {
                rv = -ENOMEM;
            } else {
                memcpy(copy, buf->bytes, (size_t)buf->size);
            }
        }
        if (rv == 0) {
            *data = copy;
            *size = (size_t)buf->size;
        }
    }
    fault_fs_mutex_unlock(fs);
    return rv;
}

int tdm_fault_fs_read_all(struct tdm_fault_fs *fs, const char *path, void **data, size_t *size)
{
    return helper_read(fs, path, false, data, size);
}

int tdm_fault_fs_read_durable(struct tdm_fault_fs *fs, const char *path, void **data, size_t *size)
{
    return helper_read(fs, path, true, data, size);
}

int tdm_fault_fs_file_size(struct tdm_fault_fs *fs, const char *path, uint64_t *size)
{
    tdm_assert(size != NULL);
    fault_fs_mutex_lock(fs);
    struct tdm_fault_inode *inode;
    int rv = helper_file(fs, path, false, &inode);
    if (rv == 0) {
        *size = inode->data.size;
    }
    fault_fs_mutex_unlock(fs);
    return rv;
}

bool tdm_fault_fs_exists(struct tdm_fault_fs *fs, const char *path)
{
    fault_fs_mutex_lock(fs);
    struct tdm_fault_inode *inode;
    bool exists = path_lookup(fs, path, false, &inode) == 0;
    fault_fs_mutex_unlock(fs);
    return exists;
}

static uint64_t checksum_bytes(uint64_t hash, const void *bytes, size_t size)
{
    const uint8_t *p = bytes;
    for (size_t i = 0; i < size; i++) {
        hash ^= p[i];
        hash *= FAULT_FS_FNV_PRIME;
    }
    return hash;
}

/* Hash inode as a tree: type, size, then contents (a file) or each entry's
 * name, NUL-terminated, followed by its inode (a directory). */
static uint64_t checksum_inode(uint64_t hash, const struct tdm_fault_inode *inode, size_t depth)
{
    tdm_assert(depth < FAULT_FS_DEPTH_MAX); /* The namespace is a tree. */
    uint8_t header[9];
    uint64_t size = inode->is_dir ? inode->current.count : inode->data.size;
    header[0] = inode->is_dir ? 'd' : 'f';
    for (int i = 0; i < 8; i++) {
        header[1 + i] = (uint8_t)(size >> (8 * i));
    }
    hash = checksum_bytes(hash, header, sizeof(header));
    if (!inode->is_dir) {
        return checksum_bytes(hash, inode->data.bytes, (size_t)inode->data.size);
    }
    for (size_t i = 0; i < inode->current.count; i++) {
        const struct fault_entry *entry = &inode->current.entries[i];
        hash = checksum_bytes(hash, entry->name, strlen(entry->name) + 1);
        hash = checksum_inode(hash, entry->inode, depth + 1);
    }
    return hash;
}

uint64_t tdm_fault_fs_checksum_all(struct tdm_fault_fs *fs, const char *dir)
{
    fault_fs_mutex_lock(fs);
    uint64_t hash = FAULT_FS_FNV_OFFSET;
    struct tdm_fault_inode *inode;
    if (path_lookup(fs, dir, false, &inode) == 0) {
        hash = checksum_inode(hash, inode, 0);
    }
    fault_fs_mutex_unlock(fs);
    return hash;
}

size_t tdm_fault_fs_open_count(struct tdm_fault_fs *fs)
{
    fault_fs_mutex_lock(fs);
    size_t count = fs->file_count;
    fault_fs_mutex_unlock(fs);
    return count;
}
