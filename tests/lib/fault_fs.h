/* tests/lib/fault_fs.h: an in-memory struct tdm_fs for fault and power-loss
 * tests (RELIABILITY 3.1 "sim"; STYLE B8).
 *
 * The model, in brief (tests/lib/fault_fs.c has the details):
 * - A file is an inode with two byte strings: data (what reads see) and durable
 *   (what survives a power loss). fdatasync(fd) makes durable equal to data.
 *   The byte ranges written since the last fdatasync are kept as the inode's
 *   pending writes.
 * - A directory is an inode with two tables of entries (name -> inode):
 *   current (what lookups see) and durable. sync_dir(dir) copies the current
 *   table of dir to its durable table. mkdir() adds an entry to the parent's
 *   current table only: a new directory is durable once its parent is synced.
 *   "/" always exists; tests create the directory a node lives in with
 *   tdm_fault_fs_mkdirs(), which is durable at once.
 * - tdm_fault_fs_crash() is a power loss (or, in KEEP mode, a process crash):
 *   every descriptor dies, every directory table becomes its durable table and
 *   every file's data becomes its durable bytes, torn or not per the mode.
 * - Fault rules fail the Nth call of an operation with a chosen error.
 *
 * Thread-safe: every function takes fs->mutex, except init and deinit. */
#ifndef TDM_TESTS_LIB_FAULT_FS_H
#define TDM_TESTS_LIB_FAULT_FS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/prng.h"
#include "engine/fs.h"

#define TDM_FAULT_FS_SECTOR_SIZE   512          /* Unit of a torn write. */
#define TDM_FAULT_FS_RULES_MAX     8            /* Fault rules armed at once. */
#define TDM_FAULT_FS_FILE_SIZE_MAX (1ULL << 30) /* Larger files: -EFBIG. */
#define TDM_FAULT_FS_NAME_SIZE_MAX 255          /* One path component. */

enum tdm_fault_crash_mode {
    TDM_FAULT_CRASH_DROP = 1, /* Power loss: every write not fdatasync'd is lost. */
    TDM_FAULT_CRASH_TORN,     /* Power loss: each 512-byte sector of pending writes
                               * reached the disk or not, at random. */
    TDM_FAULT_CRASH_KEEP,     /* Process crash: the page cache survives; all stays. */
};

/* One armed fault. Owned by struct tdm_fault_fs; tests use the functions. */
struct tdm_fault_rule {
    bool armed;          /* False once a one-shot rule has fired. */
    unsigned op;         /* enum tdm_fs_op, or 0 for any operation. */
    uint64_t skip_count; /* Matching calls still to let through before failing. */
    int error;           /* Negative errno returned by the failing call. */
    bool persistent;     /* Keep failing every matching call after the first. */
};

struct tdm_fault_inode;
struct tdm_fault_file;

/* The fake file system. Tests allocate it (usually inside a fixture), call
 * tdm_fault_fs_init() and pass &fs->base to the engine. All fields are
 * private to fault_fs.c. Thread-safe: guarded by mutex. */
struct tdm_fault_fs {
    struct tdm_fs base;                   /* MUST stay first: the engine sees this. */
    pthread_mutex_t mutex;                /* Guards everything below. */
    struct tdm_fault_inode *root;         /* "/": always present. */
    struct tdm_fault_inode *inodes;       /* Every inode, linked by inode->next. */
    struct tdm_fault_file *files;         /* Open descriptors, unordered. */
    size_t file_count;                    /* Used entries of files. */
    size_t file_capacity;                 /* Allocated entries of files. */
    int fd_next;                          /* Next descriptor number; never reused. */
    uint64_t op_counts[TDM_FS_OP__COUNT]; /* Calls per op since init; [0] = all. */
    uint64_t fired_count;                 /* Calls failed by a rule since init. */
    struct tdm_fault_rule rules[TDM_FAULT_FS_RULES_MAX];
    bool pwrite_fail_torn; /* A failed pwrite applies a random prefix. */
    struct tdm_prng prng;  /* For torn failed pwrites. */
};

/* ------------------------------------------------------------------------
 * Lifecycle.
 * ------------------------------------------------------------------------ */

/* Initialise an empty file system holding only "/". Cannot fail (aborts if
 * the C library cannot allocate the root). The fake's own state uses the C
 * library's allocator, so a test heap installed with tdm_heap_set() fails only
 * the engine's allocations, never the fake's. */
void tdm_fault_fs_init(struct tdm_fault_fs *fs);

/* Free every inode and descriptor. Descriptors still open (an abandoned engine)
 * are simply dropped. No call may run during or after, except init again. */
void tdm_fault_fs_deinit(struct tdm_fault_fs *fs);

/* ------------------------------------------------------------------------
 * Power loss.
 * ------------------------------------------------------------------------ */

/* Simulate a crash. Afterwards:
 * - every open descriptor is invalid: calls on it return -EBADF, and its
 *   number is never handed out again; every lock is released;
 * - every directory's entries are its durable entries (KEEP: its current
 *   ones); whatever is no longer reachable from "/" is freed;
 * - every file's data is its durable bytes, which are, per mode:
 *   DROP: unchanged (all unsynced writes and truncations are lost);
 *   TORN: the durable bytes with, for each 512-byte sector touched by a
 *     pending write, the data bytes of the pending writes in that sector
 *     copied over them or not, with probability 1/2 each (prng), so each
 *     sector ends wholly old or wholly new; the size grows to the end of the
 *     last piece applied (a gap reads as zeros) and never shrinks (unsynced
 *     truncations are lost);
 *   KEEP: the data bytes (everything written stays);
 * - every fault rule is disarmed (counters are kept), so that recovery runs on
 *   a healthy disk unless the test arms a new rule.
 * prng is used by TORN only and may be NULL for the other modes. */
void tdm_fault_fs_crash(struct tdm_fault_fs *fs, enum tdm_fault_crash_mode mode,
                        struct tdm_prng *prng);

/* ------------------------------------------------------------------------
 * Fault injection.
 * ------------------------------------------------------------------------ */

/* Arm a rule: let skip_count matching calls succeed, fail the next one with
 * error (a negative errno such as -EIO or -ENOSPC) and, if persistent, every
 * matching call after it. op is an enum tdm_fs_op, or 0 to match any
 * operation. Counting starts now. Calls on an invalid descriptor return -EBADF
 * without reaching the rules. Returns 0, or -ENOSPC when
 * TDM_FAULT_FS_RULES_MAX rules are armed.
 *
 * What a failed call leaves behind:
 * - pwrite: nothing, unless tdm_fault_fs_set_pwrite_torn() is on, in which
 *   case a random prefix (0 .. size-1 bytes) is written first;
 * - fdatasync: durable bytes unchanged, and the pending writes are forgotten
 *   while their data stays visible (Linux after fsyncgate marks the pages
 *   clean): a later successful fdatasync does not make them durable;
 * - close: the descriptor is released anyway (Linux close(2));
 * - every other operation: nothing. */
int tdm_fault_fs_fail_after(struct tdm_fault_fs *fs, unsigned op, uint64_t skip_count, int error,
                            bool persistent);

/* Fail the next call of op (0: of any operation) once with error. */
int tdm_fault_fs_fail_next(struct tdm_fault_fs *fs, unsigned op, int error);

/* Disarm every rule. */
void tdm_fault_fs_clear(struct tdm_fault_fs *fs);

/* When on, a pwrite failed by a rule first writes a random prefix of its
 * buffer (from the fs's own PRNG; see tdm_fault_fs_seed()). Off after init. */
void tdm_fault_fs_set_pwrite_torn(struct tdm_fault_fs *fs, bool on);

/* Seed the fs's own PRNG (used for torn failed pwrites). Seed 0 after init. */
void tdm_fault_fs_seed(struct tdm_fault_fs *fs, uint64_t seed);

/* Calls of op (enum tdm_fs_op) since init, including failed ones; op 0 gives
 * the calls of every operation. advise_dontneed (TDM_FS_OP_ADVISE) is a no-op
 * here (there is no page cache), counted so that a test can prove the
 * scrubber asked for reads from the medium. */
uint64_t tdm_fault_fs_count(struct tdm_fault_fs *fs, unsigned op);

/* Calls failed by a rule since init. A test that loops "fail the 1st, 2nd,
 * ... call" stops when a run ends without a rule firing. */
uint64_t tdm_fault_fs_fired(struct tdm_fault_fs *fs);

/* Flip bit (0..7) of the byte at offset of the file at path, in both its data
 * and its durable bytes (where each is long enough): bit rot on the medium.
 * Returns 0, -ENOENT, -EISDIR, or -EINVAL when bit > 7 or offset lies beyond
 * both. */
int tdm_fault_fs_flip(struct tdm_fault_fs *fs, const char *path, uint64_t offset, unsigned bit);

/* The next pread of the file at path that overlaps [offset, offset + size)
 * sees zeros there, once; the bytes stay as they are. This is what a reader
 * beside a writer may see: a batch still being written over a prepared
 * segment's zeros. A crash disarms it. Returns 0, -ENOENT, -ENOTDIR or
 * -EISDIR. */
int tdm_fault_fs_stale_read_once(struct tdm_fault_fs *fs, const char *path, uint64_t offset,
                                 size_t size);

/* ------------------------------------------------------------------------
 * Inspection and setup helpers for tests. Paths resolve through the current
 * entries unless the name says durable.
 * ------------------------------------------------------------------------ */

/* Create path and every missing ancestor as durable directories (as if they
 * existed before the test); existing ones are made durable too. Returns 0,
 * -ENOTDIR, -ENAMETOOLONG or -EINVAL (a ".." component). */
int tdm_fault_fs_mkdirs(struct tdm_fault_fs *fs, const char *path);

/* Create or replace the file at path with size bytes of data, durably (entry
 * and contents), as a file planted before the test. The parent must exist.
 * Returns 0, -ENOENT, -ENOTDIR, -EISDIR or -EFBIG. */
int tdm_fault_fs_write_file(struct tdm_fault_fs *fs, const char *path, const void *data,
                            size_t size);

/* Copy the current bytes of the file at path into a tdm_malloc'd buffer
 * (*data, released with tdm_free(); NULL when *size is 0). Returns 0,
 * -ENOENT, -ENOTDIR, -EISDIR or -ENOMEM. */
int tdm_fault_fs_read_all(struct tdm_fault_fs *fs, const char *path, void **data, size_t *size);

/* Like tdm_fault_fs_read_all(), for what a power loss now would leave: the
 * path resolves through the durable entries and the durable bytes are read. */
int tdm_fault_fs_read_durable(struct tdm_fault_fs *fs, const char *path, void **data, size_t *size);

/* Current size of the file at path. Returns 0, -ENOENT, -ENOTDIR or -EISDIR. */
int tdm_fault_fs_file_size(struct tdm_fault_fs *fs, const char *path, uint64_t *size);

/* True if path names a file or directory. */
bool tdm_fault_fs_exists(struct tdm_fault_fs *fs, const char *path);

/* A 64-bit hash (FNV-1a) of every name (relative to dir, in name order), type,
 * size and content under dir, recursively. Equal hashes before and after a run
 * prove that no file under dir was created, removed, renamed or altered. A
 * missing dir hashes as an empty tree; a file hashes as itself. */
uint64_t tdm_fault_fs_checksum_all(struct tdm_fault_fs *fs, const char *dir);

/* Descriptors open now (locks included): 0 after an engine closed cleanly. */
size_t tdm_fault_fs_open_count(struct tdm_fault_fs *fs);

#endif
