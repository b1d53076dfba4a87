/* tests/unit/test_fault_fs.c: the in-memory fault file system (tests/lib/fault_fs.c).
 *
 * Method: the fake is checked against a much simpler, independent model in
 * the style of Jepsen's local-fs tests. Seeded random sequences of open,
 * close, pwrite, pread, fdatasync, size, truncate, rename, unlink, sync_dir,
 * list and crash (DROP) run on both; every return code, every byte read and,
 * after each crash and at the end, the whole visible and durable state must
 * agree. The model keeps full copies (durable := data on fdatasync) where the
 * fake tracks pending ranges, so the two compute durability differently.
 * Targeted tests then cover each fault knob, torn crashes, locks and the
 * documented corner cases. */
#include "tdm_test.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/prng.h"
#include "engine/fs.h"
#include "fault_fs.h"

struct fixture {
    struct tdm_fault_fs fs;
    struct tdm_fs *base; /* &fs.base: what the engine would get. */
};

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    assert_non_null(f);
    tdm_fault_fs_init(&f->fs);
    f->base = &f->fs.base;
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/n"), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tdm_fault_fs_deinit(&f->fs);
    test_free(f);
    return 0;
}

/* Small helpers over the vtable, as the engine would call it. */

static int open_file(struct fixture *f, const char *path, unsigned flags)
{
    int fd = -1;
    int rv = f->base->open(f->base, path, flags, &fd);
    assert_int_equal(rv, 0);
    assert_true(fd >= 0);
    return fd;
}

static void write_at(struct fixture *f, int fd, const void *buf, size_t size, uint64_t offset)
{
    assert_int_equal(f->base->pwrite(f->base, fd, buf, size, offset), 0);
}

static void write_string(struct fixture *f, int fd, const char *text, uint64_t offset)
{
    write_at(f, fd, text, strlen(text), offset);
}

/* Assert that the current (or durable) bytes of path equal text. */
static void assert_contents(struct fixture *f, const char *path, bool durable, const char *text)
{
    void *data = NULL;
    size_t size = 0;
    int rv = durable ? tdm_fault_fs_read_durable(&f->fs, path, &data, &size)
                     : tdm_fault_fs_read_all(&f->fs, path, &data, &size);
    assert_int_equal(rv, 0);
    assert_int_equal(size, strlen(text));
    if (size > 0) {
        assert_memory_equal(data, text, size);
    }
    tdm_free(data);
}

/* ------------------------------------------------------------------------
 * The model.
 * ------------------------------------------------------------------------ */

#define MODEL_DIR_COUNT     2
#define MODEL_NAME_COUNT    4
#define MODEL_FILES_MAX     128
#define MODEL_FILE_SIZE_MAX 6000
#define MODEL_FDS_MAX       8
#define MODEL_SEED_COUNT    500
#define MODEL_STEP_COUNT    400

static const char *const model_dirs[MODEL_DIR_COUNT] = {"/n/a", "/n/b"};
static const char *const model_names[MODEL_NAME_COUNT] = {"f0", "f1", "f2", "f3"};

struct model_file {
    uint8_t data[MODEL_FILE_SIZE_MAX];
    size_t size;
    uint8_t durable[MODEL_FILE_SIZE_MAX];
    size_t durable_size;
};

struct model_fd {
    int fd;         /* The fake's descriptor. */
    int file_index; /* Into model.files. */
    bool writable;
};

struct model {
    uint64_t seed;
    int step_index;
    struct model_file *files;
    int file_count;
    int current[MODEL_DIR_COUNT][MODEL_NAME_COUNT]; /* File index or -1. */
    int durable[MODEL_DIR_COUNT][MODEL_NAME_COUNT];
    struct model_fd fds[MODEL_FDS_MAX];
    int fd_count;
};

#define MODEL_CHECK(model, a, b)                                                                   \
    do {                                                                                           \
        long long a_ = (long long)(a);                                                             \
        long long b_ = (long long)(b);                                                             \
        if (a_ != b_) {                                                                            \
            fail_msg("seed %" PRIu64 " step %d: %s = %lld but %s = %lld", (model)->seed,           \
                     (model)->step_index, #a, a_, #b, b_);                                         \
        }                                                                                          \
    } while (0)

static void model_path(char *path, size_t size, int dir_index, int name_index)
{
    snprintf(path, size, "%s/%s", model_dirs[dir_index], model_names[name_index]);
}

static int model_file_new(struct model *model)
{
    assert_true(model->file_count < MODEL_FILES_MAX);
    struct model_file *file = &model->files[model->file_count];
    file->size = 0;
    file->durable_size = 0;
    return model->file_count++;
}

static void model_fill(struct tdm_prng *prng, uint8_t *buf, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        buf[i] = (uint8_t)tdm_prng_next(prng);
    }
}

static void model_step_open(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    if (model->fd_count == MODEL_FDS_MAX) {
        return;
    }
    int d = (int)tdm_prng_below(prng, MODEL_DIR_COUNT);
    int n = (int)tdm_prng_below(prng, MODEL_NAME_COUNT);
    bool create = tdm_prng_below(prng, 3) != 0;
    bool exclusive = create && tdm_prng_below(prng, 4) == 0;
    bool writable = tdm_prng_below(prng, 5) != 0;
    unsigned flags = (writable ? TDM_FS_WRITE : TDM_FS_READ) | (create ? TDM_FS_CREATE : 0) |
                     (exclusive ? TDM_FS_EXCLUSIVE : 0);

    int expected = 0;
    int file_index = model->current[d][n];
    if (file_index >= 0 && exclusive) {
        expected = -EEXIST;
    } else if (file_index < 0 && !create) {
        expected = -ENOENT;
    }

    char path[64];
    model_path(path, sizeof(path), d, n);
    int fd = -1;
    int rv = f->base->open(f->base, path, flags, &fd);
    MODEL_CHECK(model, rv, expected);
    if (rv != 0) {
        return;
    }
    if (file_index < 0) {
        file_index = model_file_new(model);
        model->current[d][n] = file_index;
    }
    model->fds[model->fd_count++] = (struct model_fd){fd, file_index, writable};
}

static void model_step_close(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    if (model->fd_count == 0) {
        return;
    }
    int i = (int)tdm_prng_below(prng, (uint64_t)model->fd_count);
    MODEL_CHECK(model, f->base->close(f->base, model->fds[i].fd), 0);
    model->fds[i] = model->fds[--model->fd_count];
}

static void model_step_pwrite(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    if (model->fd_count == 0) {
        return;
    }
    struct model_fd *mfd = &model->fds[tdm_prng_below(prng, (uint64_t)model->fd_count)];
    struct model_file *file = &model->files[mfd->file_index];
    uint8_t buf[1000];
    size_t offset = (size_t)tdm_prng_below(prng, 5000);
    size_t size = 1 + (size_t)tdm_prng_below(prng, sizeof(buf));
    model_fill(prng, buf, size);
    int rv = f->base->pwrite(f->base, mfd->fd, buf, size, offset);
    MODEL_CHECK(model, rv, mfd->writable ? 0 : -EBADF);
    if (!mfd->writable) {
        return;
    }
    if (offset > file->size) {
        memset(file->data + file->size, 0, offset - file->size);
    }
    memcpy(file->data + offset, buf, size);
    if (offset + size > file->size) {
        file->size = offset + size;
    }
}

static void model_step_pread(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    if (model->fd_count == 0) {
        return;
    }
    struct model_fd *mfd = &model->fds[tdm_prng_below(prng, (uint64_t)model->fd_count)];
    struct model_file *file = &model->files[mfd->file_index];
    uint8_t buf[1500];
    size_t offset = (size_t)tdm_prng_below(prng, MODEL_FILE_SIZE_MAX + 1);
    size_t size = (size_t)tdm_prng_below(prng, sizeof(buf) + 1);
    size_t read_size = SIZE_MAX;
    int rv = f->base->pread(f->base, mfd->fd, buf, size, offset, &read_size);
    MODEL_CHECK(model, rv, 0);
    size_t expected = offset >= file->size ? 0 : file->size - offset;
    if (expected > size) {
        expected = size;
    }
    MODEL_CHECK(model, read_size, expected);
    MODEL_CHECK(model, memcmp(buf, file->data + offset, expected), 0);
}

static void model_step_fdatasync(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    if (model->fd_count == 0) {
        return;
    }
    struct model_fd *mfd = &model->fds[tdm_prng_below(prng, (uint64_t)model->fd_count)];
    struct model_file *file = &model->files[mfd->file_index];
    MODEL_CHECK(model, f->base->fdatasync(f->base, mfd->fd), 0);
    memcpy(file->durable, file->data, file->size);
    file->durable_size = file->size;
}

static void model_step_size(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    if (model->fd_count == 0) {
        return;
    }
    struct model_fd *mfd = &model->fds[tdm_prng_below(prng, (uint64_t)model->fd_count)];
    uint64_t size = UINT64_MAX;
    MODEL_CHECK(model, f->base->size(f->base, mfd->fd, &size), 0);
    MODEL_CHECK(model, size, model->files[mfd->file_index].size);
}

static void model_step_truncate(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    if (model->fd_count == 0) {
        return;
    }
    struct model_fd *mfd = &model->fds[tdm_prng_below(prng, (uint64_t)model->fd_count)];
    struct model_file *file = &model->files[mfd->file_index];
    size_t size = (size_t)tdm_prng_below(prng, MODEL_FILE_SIZE_MAX + 1);
    int rv = f->base->truncate(f->base, mfd->fd, size);
    MODEL_CHECK(model, rv, mfd->writable ? 0 : -EBADF);
    if (!mfd->writable) {
        return;
    }
    if (size > file->size) {
        memset(file->data + file->size, 0, size - file->size);
    }
    file->size = size;
}

static void model_step_rename(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    int d1 = (int)tdm_prng_below(prng, MODEL_DIR_COUNT);
    int n1 = (int)tdm_prng_below(prng, MODEL_NAME_COUNT);
    int d2 = (int)tdm_prng_below(prng, MODEL_DIR_COUNT);
    int n2 = (int)tdm_prng_below(prng, MODEL_NAME_COUNT);
    char from[64];
    char to[64];
    model_path(from, sizeof(from), d1, n1);
    model_path(to, sizeof(to), d2, n2);
    int source = model->current[d1][n1];
    int expected = source < 0 ? -ENOENT : 0;
    MODEL_CHECK(model, f->base->rename(f->base, from, to), expected);
    if (source < 0 || model->current[d2][n2] == source) {
        return; /* Missing, or the same file under both names: nothing changes. */
    }
    model->current[d2][n2] = source;
    model->current[d1][n1] = -1;
}

static void model_step_unlink(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    int d = (int)tdm_prng_below(prng, MODEL_DIR_COUNT);
    int n = (int)tdm_prng_below(prng, MODEL_NAME_COUNT);
    char path[64];
    model_path(path, sizeof(path), d, n);
    int expected = model->current[d][n] < 0 ? -ENOENT : 0;
    MODEL_CHECK(model, f->base->unlink(f->base, path), expected);
    model->current[d][n] = -1;
}

static void model_step_sync_dir(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    int d = (int)tdm_prng_below(prng, MODEL_DIR_COUNT);
    MODEL_CHECK(model, f->base->sync_dir(f->base, model_dirs[d]), 0);
    memcpy(model->durable[d], model->current[d], sizeof(model->current[d]));
}

struct list_names {
    char names[MODEL_NAME_COUNT + 1][16];
    int count;
};

static int list_collect_cb(void *data, const char *name)
{
    struct list_names *list = data;
    if (list->count > MODEL_NAME_COUNT) {
        return -E2BIG;
    }
    snprintf(list->names[list->count++], sizeof(list->names[0]), "%s", name);
    return 0;
}

static void model_step_list(struct fixture *f, struct model *model, struct tdm_prng *prng)
{
    int d = (int)tdm_prng_below(prng, MODEL_DIR_COUNT);
    struct list_names list = {0};
    MODEL_CHECK(model, f->base->list(f->base, model_dirs[d], list_collect_cb, &list), 0);
    int count = 0;
    for (int n = 0; n < MODEL_NAME_COUNT; n++) {
        if (model->current[d][n] < 0) {
            continue;
        }
        /* model_names are in byte order, as list() reports them. */
        MODEL_CHECK(model, strcmp(list.names[count], model_names[n]), 0);
        count++;
    }
    MODEL_CHECK(model, list.count, count);
}

/* Check every name and byte, visible and durable, against the model. */
static void model_check_all(struct fixture *f, struct model *model)
{
    for (int d = 0; d < MODEL_DIR_COUNT; d++) {
        for (int n = 0; n < MODEL_NAME_COUNT; n++) {
            char path[64];
            model_path(path, sizeof(path), d, n);
            int current = model->current[d][n];
            MODEL_CHECK(model, tdm_fault_fs_exists(&f->fs, path), current >= 0);
            void *data = NULL;
            size_t size = 0;
            int rv = tdm_fault_fs_read_all(&f->fs, path, &data, &size);
            MODEL_CHECK(model, rv, current >= 0 ? 0 : -ENOENT);
            if (rv == 0) {
                const struct model_file *file = &model->files[current];
                MODEL_CHECK(model, size, file->size);
                MODEL_CHECK(model, size == 0 || memcmp(data, file->data, size) == 0, 1);
                tdm_free(data);
            }
            int durable = model->durable[d][n];
            data = NULL;
            rv = tdm_fault_fs_read_durable(&f->fs, path, &data, &size);
            MODEL_CHECK(model, rv, durable >= 0 ? 0 : -ENOENT);
            if (rv == 0) {
                const struct model_file *file = &model->files[durable];
                MODEL_CHECK(model, size, file->durable_size);
                MODEL_CHECK(model, size == 0 || memcmp(data, file->durable, size) == 0, 1);
                tdm_free(data);
            }
        }
    }
}

static void model_step_crash(struct fixture *f, struct model *model)
{
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    for (int i = 0; i < model->fd_count; i++) {
        size_t read_size;
        uint8_t byte = 0;
        int fd = model->fds[i].fd;
        MODEL_CHECK(model, f->base->pread(f->base, fd, &byte, 1, 0, &read_size), -EBADF);
        MODEL_CHECK(model, f->base->pwrite(f->base, fd, &byte, 1, 0), -EBADF);
        MODEL_CHECK(model, f->base->close(f->base, fd), -EBADF);
    }
    model->fd_count = 0;
    MODEL_CHECK(model, tdm_fault_fs_open_count(&f->fs), 0);
    memcpy(model->current, model->durable, sizeof(model->current));
    for (int i = 0; i < model->file_count; i++) {
        struct model_file *file = &model->files[i];
        memcpy(file->data, file->durable, file->durable_size);
        file->size = file->durable_size;
    }
    model_check_all(f, model);
}

static void model_run(struct fixture *f, struct model *model, uint64_t seed)
{
    struct tdm_prng prng;
    tdm_prng_init(&prng, seed);
    model->seed = seed;
    model->file_count = 0;
    model->fd_count = 0;
    memset(model->current, 0xff, sizeof(model->current));
    memset(model->durable, 0xff, sizeof(model->durable));
    for (model->step_index = 0; model->step_index < MODEL_STEP_COUNT; model->step_index++) {
        uint64_t pick = tdm_prng_below(&prng, 100);
        if (pick < 12) {
            model_step_open(f, model, &prng);
        } else if (pick < 18) {
            model_step_close(f, model, &prng);
        } else if (pick < 38) {
            model_step_pwrite(f, model, &prng);
        } else if (pick < 48) {
            model_step_pread(f, model, &prng);
        } else if (pick < 58) {
            model_step_fdatasync(f, model, &prng);
        } else if (pick < 62) {
            model_step_size(f, model, &prng);
        } else if (pick < 67) {
            model_step_truncate(f, model, &prng);
        } else if (pick < 74) {
            model_step_rename(f, model, &prng);
        } else if (pick < 79) {
            model_step_unlink(f, model, &prng);
        } else if (pick < 89) {
            model_step_sync_dir(f, model, &prng);
        } else if (pick < 96) {
            model_step_list(f, model, &prng);
        } else {
            model_step_crash(f, model);
        }
    }
    model_check_all(f, model);
}

/* Random sequences of every operation and DROP crashes leave the fake in the
 * same visible and durable state as an independent full-copy model, seed by
 * seed. */
static void test_fault_fs__matches_model(void **state)
{
    (void)state;
    static struct model_file files[MODEL_FILES_MAX]; /* Static: a failure leaks nothing. */
    struct model model = {.files = files};
    for (uint64_t seed = 1; seed <= MODEL_SEED_COUNT; seed++) {
        struct fixture f;
        tdm_fault_fs_init(&f.fs);
        f.base = &f.fs.base;
        assert_int_equal(tdm_fault_fs_mkdirs(&f.fs, model_dirs[0]), 0);
        assert_int_equal(tdm_fault_fs_mkdirs(&f.fs, model_dirs[1]), 0);
        model_run(&f, &model, seed);
        tdm_fault_fs_deinit(&f.fs);
    }
}

/* ------------------------------------------------------------------------
 * Namespace and durability.
 * ------------------------------------------------------------------------ */

/* open() reports missing files, existing ones under EXCLUSIVE, directories
 * and broken paths with the errno POSIX gives. */
static void test_open__errors(void **state)
{
    struct fixture *f = *state;
    int fd = -1;
    assert_int_equal(f->base->open(f->base, "/n/x", TDM_FS_WRITE, &fd), -ENOENT);
    fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE | TDM_FS_EXCLUSIVE);
    assert_int_equal(
        f->base->open(f->base, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE | TDM_FS_EXCLUSIVE, &fd),
        -EEXIST);
    assert_int_equal(f->base->open(f->base, "/n", TDM_FS_READ, &fd), -EISDIR);
    assert_int_equal(f->base->open(f->base, "/", TDM_FS_READ, &fd), -EISDIR);
    assert_int_equal(f->base->open(f->base, "/missing/x", TDM_FS_CREATE, &fd), -ENOENT);
    assert_int_equal(f->base->open(f->base, "/n/x/y", TDM_FS_CREATE, &fd), -ENOTDIR);
    assert_int_equal(f->base->open(f->base, "/n/../x", TDM_FS_CREATE, &fd), -EINVAL);
    assert_int_equal(f->base->open(f->base, "", TDM_FS_CREATE, &fd), -ENOENT);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 1);
}

/* A descriptor opened read-only cannot write nor truncate. */
static void test_pwrite__read_only_fd_fails(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_READ | TDM_FS_CREATE);
    assert_int_equal(f->base->pwrite(f->base, fd, "a", 1, 0), -EBADF);
    assert_int_equal(f->base->truncate(f->base, fd, 10), -EBADF);
    assert_int_equal(f->base->close(f->base, fd), 0);
}

/* A write that would grow a file past TDM_FAULT_FS_FILE_SIZE_MAX fails with
 * -EFBIG and changes nothing. */
static void test_pwrite__too_large_fails(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->pwrite(f->base, fd, "ab", 2, TDM_FAULT_FS_FILE_SIZE_MAX - 1), -EFBIG);
    assert_int_equal(f->base->pwrite(f->base, fd, "a", 1, UINT64_MAX), -EFBIG);
    assert_int_equal(f->base->truncate(f->base, fd, TDM_FAULT_FS_FILE_SIZE_MAX + 1), -EFBIG);
    uint64_t size = 1;
    assert_int_equal(f->base->size(f->base, fd, &size), 0);
    assert_int_equal(size, 0);
}

/* fdatasync makes a file's data durable, and only that file's. */
static void test_fdatasync__makes_data_durable(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    int other = open_file(f, "/n/y", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    write_string(f, fd, "hello", 0);
    write_string(f, other, "world", 0);
    assert_contents(f, "/n/x", true, "");
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_contents(f, "/n/x", true, "hello");
    assert_contents(f, "/n/y", true, "");
    assert_contents(f, "/n/y", false, "world");
}

/* A created file survives a power loss only if its directory was synced;
 * its data only if the file was. */
static void test_sync_dir__makes_entries_durable(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/kept", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "data", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    int empty = open_file(f, "/n/empty", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    write_string(f, empty, "unsynced", 0);
    fd = open_file(f, "/n/lost", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "data", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);

    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/lost"));
    assert_contents(f, "/n/kept", false, "data");
    assert_contents(f, "/n/empty", false, "");
}

/* sync_dir of a missing path or of a file fails. */
static void test_sync_dir__errors(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->base->sync_dir(f->base, "/n/missing"), -ENOENT);
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    (void)fd;
    assert_int_equal(f->base->sync_dir(f->base, "/n/x"), -ENOTDIR);
    assert_int_equal(f->base->sync_dir(f->base, "/"), 0);
}

/* A new directory, and everything in it, survives a power loss only once
 * its parent directory is synced. */
static void test_mkdir__durable_after_parent_sync(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->base->mkdir(f->base, "/n/log"), 0);
    assert_int_equal(f->base->mkdir(f->base, "/n/log"), 0); /* Exists: 0. */
    int fd = open_file(f, "/n/log/seg", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "batch", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n/log"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/log"));

    assert_int_equal(f->base->mkdir(f->base, "/n/log"), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    fd = open_file(f, "/n/log/seg", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "batch", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n/log"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/log/seg", false, "batch");
}

/* mkdir fails when the parent is missing or the name is a file. */
static void test_mkdir__errors(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->base->mkdir(f->base, "/missing/log"), -ENOENT);
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    (void)fd;
    assert_int_equal(f->base->mkdir(f->base, "/n/x"), -EEXIST);
    assert_int_equal(f->base->mkdir(f->base, "/n/x/y"), -ENOTDIR);
    assert_int_equal(f->base->mkdir(f->base, "/"), 0);
}

/* tdm_fault_fs_mkdirs creates every missing ancestor durably, and refuses to
 * go through a file. */
static void test_mkdirs__creates_durable_ancestors(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/tmp/tandem-1/node/"), 0);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/tmp/tandem-1"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_true(tdm_fault_fs_exists(&f->fs, "/tmp/tandem-1/node"));
    int fd = open_file(f, "/tmp/f", TDM_FS_WRITE | TDM_FS_CREATE);
    (void)fd;
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/tmp/f/g"), -ENOTDIR);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/tmp/../g"), -EINVAL);
}

/* A rename is durable only after its directory is synced; before, a power
 * loss brings back the old name. */
static void test_rename__durable_after_sync_dir(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/tmp", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "epoch 2", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    assert_int_equal(f->base->rename(f->base, "/n/tmp", "/n/final"), 0);
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/tmp"));
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/tmp", false, "epoch 2");
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/final"));

    assert_int_equal(f->base->rename(f->base, "/n/tmp", "/n/final"), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/final", false, "epoch 2");
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/tmp"));
}

/* Renaming a directory moves its subtree; a directory cannot move into
 * itself, onto a file, or onto a non-empty directory. */
static void test_rename__directories(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->base->mkdir(f->base, "/n/d"), 0);
    assert_int_equal(f->base->mkdir(f->base, "/n/d/sub"), 0);
    int fd = open_file(f, "/n/d/sub/x", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "x", 0);
    assert_int_equal(f->base->rename(f->base, "/n/d", "/n/e"), 0);
    assert_contents(f, "/n/e/sub/x", false, "x");
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/d"));
    assert_int_equal(f->base->rename(f->base, "/n/e", "/n/e/sub/inside"), -EINVAL);
    assert_int_equal(f->base->rename(f->base, "/n/e", "/n/e/sub/x"), -ENOTDIR);
    assert_int_equal(f->base->rename(f->base, "/n/e/sub/x", "/n/e/sub"), -EISDIR);
    assert_int_equal(f->base->mkdir(f->base, "/n/other"), 0);
    assert_int_equal(f->base->rename(f->base, "/n/other", "/n/e"), -ENOTEMPTY);
    assert_int_equal(f->base->rename(f->base, "/n/e/sub/x", "/n/e/sub/x"), 0);
    assert_int_equal(f->base->rename(f->base, "/n/nothing", "/n/e/y"), -ENOENT);
    assert_int_equal(f->base->rename(f->base, "/", "/n/root"), -EBUSY);
    /* Onto an empty directory: allowed. */
    assert_int_equal(f->base->rename(f->base, "/n/e/sub", "/n/other"), 0);
    assert_contents(f, "/n/other/x", false, "x");
}

/* A rename between two directories synced in the target only leaves the
 * file under both names after a power loss (a hard link), as documented. */
static void test_crash__rename_synced_in_target_only_links(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/n/a"), 0);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/n/b"), 0);
    int fd = open_file(f, "/n/a/x", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "x", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n/a"), 0);
    assert_int_equal(f->base->rename(f->base, "/n/a/x", "/n/b/x"), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n/b"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/a/x", false, "x");
    assert_contents(f, "/n/b/x", false, "x");
    fd = open_file(f, "/n/a/x", TDM_FS_WRITE);
    write_string(f, fd, "y", 0);
    assert_contents(f, "/n/b/x", false, "y");
}

/* A directory moved between two directories and synced in the target only
 * keeps its first name in byte order after a power loss: the tree stays a
 * tree. */
static void test_crash__directory_reached_twice_keeps_first(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/n/a/d"), 0);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/n/b"), 0);
    assert_int_equal(f->base->rename(f->base, "/n/a/d", "/n/b/d"), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n/b"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_true(tdm_fault_fs_exists(&f->fs, "/n/a/d"));
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/b/d"));
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/b/d"));
}

/* An unlinked file stays readable and writable through a descriptor opened
 * before, and unlink refuses directories and missing names. */
static void test_unlink__open_fd_keeps_working(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "abc", 0);
    assert_int_equal(f->base->unlink(f->base, "/n/x"), 0);
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/x"));
    write_string(f, fd, "d", 3);
    char buf[8];
    size_t read_size = 0;
    assert_int_equal(f->base->pread(f->base, fd, buf, sizeof(buf), 0, &read_size), 0);
    assert_int_equal(read_size, 4);
    assert_memory_equal(buf, "abcd", 4);
    assert_int_equal(f->base->unlink(f->base, "/n/x"), -ENOENT);
    assert_int_equal(f->base->unlink(f->base, "/n"), -EISDIR);
}

static int list_stop_cb(void *data, const char *name)
{
    (void)name;
    int *count = data;
    (*count)++;
    return 42;
}

/* list() reports the names directly in a directory, in byte order, stops
 * when the callback asks, and fails on files and missing directories. */
static void test_list__names_directly_in_dir(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/n/d/sub"), 0);
    int fd = open_file(f, "/n/d/b", TDM_FS_WRITE | TDM_FS_CREATE);
    fd = open_file(f, "/n/d/a", TDM_FS_WRITE | TDM_FS_CREATE);
    fd = open_file(f, "/n/d/sub/c", TDM_FS_WRITE | TDM_FS_CREATE);
    (void)fd;
    struct list_names list = {0};
    assert_int_equal(f->base->list(f->base, "/n/d", list_collect_cb, &list), 0);
    assert_int_equal(list.count, 3);
    assert_string_equal(list.names[0], "a");
    assert_string_equal(list.names[1], "b");
    assert_string_equal(list.names[2], "sub");
    int count = 0;
    assert_int_equal(f->base->list(f->base, "/n/d", list_stop_cb, &count), 42);
    assert_int_equal(count, 1);
    assert_int_equal(f->base->list(f->base, "/n/d/a", list_collect_cb, &list), -ENOTDIR);
    assert_int_equal(f->base->list(f->base, "/n/none", list_collect_cb, &list), -ENOENT);
}

/* ------------------------------------------------------------------------
 * Crashes.
 * ------------------------------------------------------------------------ */

/* After a crash every call on an old descriptor fails with -EBADF, and new
 * descriptors never reuse old numbers. */
static void test_crash__old_fd_ebadf(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    int lock_fd = -1;
    assert_int_equal(f->base->lock(f->base, "/n/LOCK", &lock_fd), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);

    char buf[4];
    size_t read_size;
    uint64_t size;
    assert_int_equal(f->base->pread(f->base, fd, buf, 4, 0, &read_size), -EBADF);
    assert_int_equal(f->base->pwrite(f->base, fd, "a", 1, 0), -EBADF);
    assert_int_equal(f->base->fdatasync(f->base, fd), -EBADF);
    assert_int_equal(f->base->size(f->base, fd, &size), -EBADF);
    assert_int_equal(f->base->truncate(f->base, fd, 0), -EBADF);
    assert_int_equal(f->base->close(f->base, fd), -EBADF);
    assert_int_equal(f->base->close(f->base, lock_fd), -EBADF);

    int fresh = open_file(f, "/n/x", TDM_FS_WRITE);
    assert_int_not_equal(fresh, fd);
    assert_int_not_equal(fresh, lock_fd);
    assert_int_equal(f->base->pwrite(f->base, fd, "a", 1, 0), -EBADF);
}

/* DROP loses every unsynced write and truncation, keeping the last synced
 * contents. */
static void test_crash__drop_loses_unsynced(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    write_string(f, fd, "synced", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    write_string(f, fd, "-unsynced", 6);
    write_string(f, fd, "S", 0);
    assert_int_equal(f->base->truncate(f->base, fd, 3), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/x", false, "synced");
}

/* A synced truncation that shrinks then regrows a file leaves zeros, not the
 * old bytes, in the durable copy. */
static void test_fdatasync__after_truncate_regrow(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    write_string(f, fd, "abcdef", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_int_equal(f->base->truncate(f->base, fd, 2), 0);
    assert_int_equal(f->base->truncate(f->base, fd, 4), 0);
    write_string(f, fd, "Z", 5);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    void *data = NULL;
    size_t size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, "/n/x", &data, &size), 0);
    assert_int_equal(size, 6);
    assert_memory_equal(data, "ab\0\0\0Z", 6);
    tdm_free(data);
}

/* KEEP (a process crash) keeps every write, create and rename, synced or not. */
static void test_crash__keep_keeps_everything(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->base->mkdir(f->base, "/n/log"), 0);
    int fd = open_file(f, "/n/log/x", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "unsynced", 0);
    assert_int_equal(f->base->rename(f->base, "/n/log/x", "/n/log/y"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_KEEP, NULL);
    assert_contents(f, "/n/log/y", false, "unsynced");
    assert_contents(f, "/n/log/y", true, "unsynced");
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/log/x"));
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
}

#define TORN_OLD_SIZE   4096
#define TORN_NEW_SIZE   5300
#define TORN_SEED_COUNT 64

/* Run one TORN crash over a synced file of 0xAA bytes with unaligned pending
 * writes; return in result the bytes it left and in expected_new the data
 * the file had before the crash. */
static void torn_run(uint64_t seed, uint8_t *result, size_t *result_size, uint8_t *expected_new)
{
    struct tdm_fault_fs fs;
    tdm_fault_fs_init(&fs);
    struct tdm_fs *base = &fs.base;
    assert_int_equal(tdm_fault_fs_mkdirs(&fs, "/n"), 0);
    int fd = -1;
    assert_int_equal(base->open(base, "/n/seg", TDM_FS_WRITE | TDM_FS_CREATE, &fd), 0);
    assert_int_equal(base->sync_dir(base, "/n"), 0);
    uint8_t old[TORN_OLD_SIZE];
    memset(old, 0xaa, sizeof(old));
    assert_int_equal(base->pwrite(base, fd, old, sizeof(old), 0), 0);
    assert_int_equal(base->fdatasync(base, fd), 0);

    /* Pending: an unaligned overwrite, a second one in the same sectors,
     * and an append past the old end. */
    struct tdm_prng prng;
    tdm_prng_init(&prng, 7);
    uint8_t buf[2000];
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(tdm_prng_next(&prng) | 1); /* Odd: never 0xaa nor 0. */
    }
    assert_int_equal(base->pwrite(base, fd, buf, 700, 100), 0);
    assert_int_equal(base->pwrite(base, fd, buf + 700, 300, 1500), 0);
    assert_int_equal(base->pwrite(base, fd, buf + 1000, 1000, TORN_NEW_SIZE - 1000), 0);
    size_t read_size = 0;
    assert_int_equal(base->pread(base, fd, expected_new, TORN_NEW_SIZE, 0, &read_size), 0);
    assert_int_equal(read_size, TORN_NEW_SIZE);

    tdm_prng_init(&prng, seed);
    tdm_fault_fs_crash(&fs, TDM_FAULT_CRASH_TORN, &prng);
    void *data = NULL;
    assert_int_equal(tdm_fault_fs_read_all(&fs, "/n/seg", &data, result_size), 0);
    assert_true(*result_size <= TORN_NEW_SIZE);
    memcpy(result, data, *result_size);
    tdm_free(data);
    tdm_fault_fs_deinit(&fs);
}

/* TORN leaves each 512-byte sector wholly old or wholly new, never a byte
 * from elsewhere; the size grows only to cover applied sectors; different
 * seeds give different mixes and the same seed the same one. */
static void test_crash__torn_is_sector_granular(void **state)
{
    (void)state;
    static uint8_t result[TORN_NEW_SIZE];
    static uint8_t again[TORN_NEW_SIZE];
    static uint8_t expected_new[TORN_NEW_SIZE];
    uint8_t old[TORN_NEW_SIZE];
    memset(old, 0xaa, TORN_OLD_SIZE);
    memset(old + TORN_OLD_SIZE, 0, TORN_NEW_SIZE - TORN_OLD_SIZE); /* Gap reads as 0. */
    bool seen_mix = false;
    for (uint64_t seed = 1; seed <= TORN_SEED_COUNT; seed++) {
        size_t size = 0;
        torn_run(seed, result, &size, expected_new);
        assert_true(size >= TORN_OLD_SIZE);
        size_t new_count = 0;
        size_t old_count = 0;
        for (size_t start = 0; start < size; start += TDM_FAULT_FS_SECTOR_SIZE) {
            size_t length =
                size - start < TDM_FAULT_FS_SECTOR_SIZE ? size - start : TDM_FAULT_FS_SECTOR_SIZE;
            bool is_old = memcmp(result + start, old + start, length) == 0;
            bool is_new = memcmp(result + start, expected_new + start, length) == 0;
            if (!is_old && !is_new) {
                fail_msg("seed %" PRIu64 ": sector at %zu is neither old nor new", seed, start);
            }
            if (!is_old) {
                new_count++;
            }
            if (!is_new) {
                old_count++;
            }
        }
        if (size > TORN_OLD_SIZE) {
            /* The last sector written past the old end was applied. */
            assert_memory_equal(result + size - 1, expected_new + size - 1, 1);
        }
        seen_mix |= new_count > 0 && old_count > 0;

        size_t again_size = 0;
        torn_run(seed, again, &again_size, expected_new);
        assert_int_equal(again_size, size);
        assert_memory_equal(again, result, size);
    }
    assert_true(seen_mix);
}

/* Inodes that a crash leaves unreachable are freed, and the fs stays usable
 * crash after crash (ASan checks the frees). */
static void test_crash__repeated(void **state)
{
    struct fixture *f = *state;
    struct tdm_prng prng;
    tdm_prng_init(&prng, 1);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(f->base->mkdir(f->base, "/n/log"), 0);
        int fd = open_file(f, "/n/log/x", TDM_FS_WRITE | TDM_FS_CREATE);
        write_string(f, fd, "x", 0);
        if (i % 2 == 0) {
            assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
            assert_int_equal(f->base->sync_dir(f->base, "/n/log"), 0);
        }
        tdm_fault_fs_crash(&f->fs, (enum tdm_fault_crash_mode)(1 + i % 3), &prng);
    }
    assert_true(tdm_fault_fs_exists(&f->fs, "/n/log/x"));
}

/* ------------------------------------------------------------------------
 * Fault knobs.
 * ------------------------------------------------------------------------ */

/* fail_after lets n matching calls through, fails the next one once, and
 * counts it as fired. */
static void test_fail_after__fails_nth_call_once(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(tdm_fault_fs_fail_after(&f->fs, TDM_FS_OP_PWRITE, 2, -ENOSPC, false), 0);
    assert_int_equal(f->base->pwrite(f->base, fd, "a", 1, 0), 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0); /* Another op: not counted. */
    assert_int_equal(f->base->pwrite(f->base, fd, "b", 1, 1), 0);
    assert_int_equal(f->base->pwrite(f->base, fd, "c", 1, 2), -ENOSPC);
    assert_int_equal(f->base->pwrite(f->base, fd, "d", 1, 2), 0);
    assert_int_equal(tdm_fault_fs_fired(&f->fs), 1);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_PWRITE), 4);
    assert_contents(f, "/n/x", false, "abd");
}

/* advise_dontneed is a counted no-op (there is no page cache to drop): the
 * data stays, a rule can fail it, and an unknown descriptor is -EBADF. */
static void test_advise_dontneed__counted(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->pwrite(f->base, fd, "abc", 3, 0), 0);
    assert_int_equal(f->base->advise_dontneed(f->base, fd), 0);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_ADVISE, -EIO), 0);
    assert_int_equal(f->base->advise_dontneed(f->base, fd), -EIO);
    assert_int_equal(f->base->advise_dontneed(f->base, 9999), -EBADF);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_ADVISE), 3);
    assert_contents(f, "/n/x", false, "abc");
    assert_int_equal(f->base->close(f->base, fd), 0);
}

/* A persistent rule keeps failing every matching call until cleared. */
static void test_fail_after__persistent(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(tdm_fault_fs_fail_after(&f->fs, TDM_FS_OP_FDATASYNC, 1, -EIO, true), 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(f->base->fdatasync(f->base, fd), -EIO);
    }
    assert_int_equal(tdm_fault_fs_fired(&f->fs), 5);
    tdm_fault_fs_clear(&f->fs);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
}

/* A rule for op 0 counts and fails calls of any operation. */
static void test_fail_after__any_op(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_fail_after(&f->fs, 0, 1, -EIO, false), 0);
    assert_int_equal(f->base->mkdir(f->base, "/n/d"), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), -EIO);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
}

/* A call on an invalid descriptor fails with -EBADF without consuming a rule. */
static void test_fail_after__bad_fd_does_not_trip(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_PWRITE, -EIO), 0);
    assert_int_equal(f->base->pwrite(f->base, 12345, "a", 1, 0), -EBADF);
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->pwrite(f->base, fd, "a", 1, 0), -EIO);
    assert_int_equal(tdm_fault_fs_fired(&f->fs), 1);
}

/* At most TDM_FAULT_FS_RULES_MAX rules are armed at once. */
static void test_fail_after__rules_max(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < TDM_FAULT_FS_RULES_MAX; i++) {
        assert_int_equal(tdm_fault_fs_fail_after(&f->fs, TDM_FS_OP_OPEN, 100, -EIO, false), 0);
    }
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_OPEN, -EIO), -ENOSPC);
    tdm_fault_fs_clear(&f->fs);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_OPEN, -EIO), 0);
}

/* A failed pwrite applies nothing by default. */
static void test_fail_next__pwrite_applies_nothing(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "old", 0);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_PWRITE, -EIO), 0);
    assert_int_equal(f->base->pwrite(f->base, fd, "newer", 5, 0), -EIO);
    assert_contents(f, "/n/x", false, "old");
}

/* With torn failures on, a failed pwrite leaves a strict prefix of its buffer,
 * and over several seeds some prefix is not empty. */
static void test_set_pwrite_torn__failed_pwrite_writes_prefix(void **state)
{
    struct fixture *f = *state;
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i * 7 + 1);
    }
    tdm_fault_fs_set_pwrite_torn(&f->fs, true);
    bool seen_prefix = false;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        tdm_fault_fs_seed(&f->fs, seed);
        char path[32];
        snprintf(path, sizeof(path), "/n/x%" PRIu64, seed);
        int fd = open_file(f, path, TDM_FS_WRITE | TDM_FS_CREATE);
        assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_PWRITE, -EIO), 0);
        assert_int_equal(f->base->pwrite(f->base, fd, buf, sizeof(buf), 0), -EIO);
        void *data = NULL;
        size_t size = 0;
        assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &data, &size), 0);
        assert_true(size < sizeof(buf));
        if (size > 0) {
            assert_memory_equal(data, buf, size);
            seen_prefix = true;
        }
        tdm_free(data);
    }
    assert_true(seen_prefix);
}

/* A failed fdatasync leaves the durable bytes as they were and forgets the
 * pending writes (fsyncgate): the data stays visible, but a later successful
 * fdatasync does not save it and a power loss loses it. */
static void test_fdatasync__failure_forgets_pending(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    write_string(f, fd, "old", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    write_string(f, fd, "NEW", 0);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_FDATASYNC, -EIO), 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), -EIO);
    assert_contents(f, "/n/x", false, "NEW");
    assert_contents(f, "/n/x", true, "old");
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_contents(f, "/n/x", true, "old");
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/x", false, "old");
}

/* A failed close still releases the descriptor, as Linux does. */
static void test_close__failure_releases_fd(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_CLOSE, -EIO), 0);
    assert_int_equal(f->base->close(f->base, fd), -EIO);
    assert_int_equal(f->base->close(f->base, fd), -EBADF);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
}

/* A failed open, rename, unlink, mkdir or sync_dir changes nothing. */
static void test_fail_next__path_ops_change_nothing(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->close(f->base, fd), 0);
    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, "/");
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_OPEN, -EIO), 0);
    assert_int_equal(f->base->open(f->base, "/n/y", TDM_FS_WRITE | TDM_FS_CREATE, &fd), -EIO);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_RENAME, -EIO), 0);
    assert_int_equal(f->base->rename(f->base, "/n/x", "/n/y"), -EIO);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_UNLINK, -EIO), 0);
    assert_int_equal(f->base->unlink(f->base, "/n/x"), -EIO);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_MKDIR, -ENOSPC), 0);
    assert_int_equal(f->base->mkdir(f->base, "/n/d"), -ENOSPC);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_SYNC_DIR, -EIO), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), -EIO);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, "/"), before);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/x")); /* Its sync_dir failed. */
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
}

/* A crash disarms every rule, so that recovery runs on a healthy disk. */
static void test_crash__disarms_rules(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_fail_after(&f->fs, TDM_FS_OP_MKDIR, 0, -EIO, true), 0);
    assert_int_equal(f->base->mkdir(f->base, "/n/d"), -EIO);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_int_equal(f->base->mkdir(f->base, "/n/d"), 0);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_MKDIR), 2);
}

/* Every call is counted under its op and in the total, failed or not. */
static void test_count__counts_each_op(void **state)
{
    struct fixture *f = *state;
    uint64_t total = tdm_fault_fs_count(&f->fs, 0);
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "a", 0);
    write_string(f, fd, "b", 1);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_int_equal(f->base->close(f->base, fd), 0);
    assert_int_equal(f->base->unlink(f->base, "/n/missing"), -ENOENT);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_OPEN), 1);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_PWRITE), 2);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_FDATASYNC), 1);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_CLOSE), 1);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_UNLINK), 1);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_PREAD), 0);
    assert_int_equal(tdm_fault_fs_count(&f->fs, 0), total + 6);
}

/* flip changes one bit in both the data and the durable bytes, and rejects
 * bits, offsets and paths that do not exist. */
static void test_flip__flips_data_and_durable(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    write_string(f, fd, "abc", 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    write_string(f, fd, "d", 3);
    assert_int_equal(tdm_fault_fs_flip(&f->fs, "/n/x", 1, 0), 0); /* 'b' ^ 1 = 'c'. */
    assert_contents(f, "/n/x", false, "accd");
    assert_contents(f, "/n/x", true, "acc");
    assert_int_equal(tdm_fault_fs_flip(&f->fs, "/n/x", 3, 5), 0); /* Data only. */
    assert_contents(f, "/n/x", false, "accD");
    assert_int_equal(tdm_fault_fs_flip(&f->fs, "/n/x", 4, 0), -EINVAL);
    assert_int_equal(tdm_fault_fs_flip(&f->fs, "/n/x", 0, 8), -EINVAL);
    assert_int_equal(tdm_fault_fs_flip(&f->fs, "/n/y", 0, 0), -ENOENT);
    assert_int_equal(tdm_fault_fs_flip(&f->fs, "/n", 0, 0), -EISDIR);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/x", false, "acc");
}

/* A stale read zeroes the armed range in the next pread that overlaps it,
 * and in that one only; a pread beside the range is untouched and leaves it
 * armed; the file's bytes never change. */
static void test_stale_read_once__zeroes_one_read(void **state)
{
    struct fixture *f = *state;
    int fd = open_file(f, "/n/x", TDM_FS_WRITE | TDM_FS_CREATE);
    write_string(f, fd, "abcdefgh", 0);
    assert_int_equal(tdm_fault_fs_stale_read_once(&f->fs, "/n/x", 2, 3), 0);
    char buf[8];
    size_t got = 0;
    assert_int_equal(f->base->pread(f->base, fd, buf, 2, 0, &got), 0); /* Beside it. */
    assert_int_equal(got, 2);
    assert_memory_equal(buf, "ab", 2);
    assert_int_equal(f->base->pread(f->base, fd, buf, 4, 3, &got), 0); /* Overlaps 3..4. */
    assert_int_equal(got, 4);
    assert_memory_equal(buf, "\0\0fg", 4);
    assert_int_equal(f->base->pread(f->base, fd, buf, 8, 0, &got), 0); /* Once only. */
    assert_memory_equal(buf, "abcdefgh", 8);
    assert_contents(f, "/n/x", false, "abcdefgh");
    assert_int_equal(tdm_fault_fs_stale_read_once(&f->fs, "/n/x", 0, 8), 0);
    assert_int_equal(f->base->fdatasync(f->base, fd), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL); /* Disarms it. */
    fd = open_file(f, "/n/x", TDM_FS_READ);
    assert_int_equal(f->base->pread(f->base, fd, buf, 8, 0, &got), 0);
    assert_memory_equal(buf, "abcdefgh", 8);
    assert_int_equal(tdm_fault_fs_stale_read_once(&f->fs, "/n/y", 0, 1), -ENOENT);
    assert_int_equal(tdm_fault_fs_stale_read_once(&f->fs, "/n", 0, 1), -EISDIR);
}

/* ------------------------------------------------------------------------
 * Locks.
 * ------------------------------------------------------------------------ */

/* A second lock on the same file fails with -EWOULDBLOCK until the holder
 * closes its descriptor. */
static void test_lock__second_lock_would_block(void **state)
{
    struct fixture *f = *state;
    int fd = -1;
    int other = -1;
    assert_int_equal(f->base->lock(f->base, "/n/LOCK", &fd), 0);
    assert_true(tdm_fault_fs_exists(&f->fs, "/n/LOCK"));
    assert_int_equal(f->base->lock(f->base, "/n/LOCK", &other), -EWOULDBLOCK);
    assert_int_equal(f->base->lock(f->base, "/n/OTHER", &other), 0);
    assert_int_equal(f->base->close(f->base, other), 0);
    /* Another descriptor on the file does not release the lock. */
    int plain = open_file(f, "/n/LOCK", TDM_FS_READ);
    assert_int_equal(f->base->close(f->base, plain), 0);
    assert_int_equal(f->base->lock(f->base, "/n/LOCK", &other), -EWOULDBLOCK);
    assert_int_equal(f->base->close(f->base, fd), 0);
    assert_int_equal(f->base->lock(f->base, "/n/LOCK", &other), 0);
    assert_int_equal(f->base->lock(f->base, "/n", &fd), -EISDIR);
    assert_int_equal(f->base->lock(f->base, "/none/LOCK", &fd), -ENOENT);
}

/* A crash releases every lock (the holding process is gone). */
static void test_lock__released_by_crash(void **state)
{
    struct fixture *f = *state;
    int fd = -1;
    assert_int_equal(f->base->lock(f->base, "/n/LOCK", &fd), 0);
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    int again = -1;
    assert_int_equal(f->base->lock(f->base, "/n/LOCK", &again), 0);
    assert_int_not_equal(again, fd);
}

/* ------------------------------------------------------------------------
 * Helpers.
 * ------------------------------------------------------------------------ */

/* checksum_all changes with any name, content or size under the directory,
 * not with reads, and not with changes elsewhere. */
static void test_checksum_all__detects_changes(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/n/log"), 0);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, "/n/log/a", "abc", 3), 0);
    uint64_t empty = tdm_fault_fs_checksum_all(&f->fs, "/missing");
    uint64_t h0 = tdm_fault_fs_checksum_all(&f->fs, "/n");
    assert_int_not_equal(h0, empty);

    int fd = open_file(f, "/n/log/a", TDM_FS_WRITE);
    char buf[3];
    size_t read_size;
    assert_int_equal(f->base->pread(f->base, fd, buf, 3, 0, &read_size), 0);
    struct list_names list = {0};
    assert_int_equal(f->base->list(f->base, "/n/log", list_collect_cb, &list), 0);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, "/n"), h0);

    write_string(f, fd, "b", 0); /* "bbc" */
    uint64_t h1 = tdm_fault_fs_checksum_all(&f->fs, "/n");
    assert_int_not_equal(h1, h0);
    write_string(f, fd, "a", 0);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, "/n"), h0);
    assert_int_equal(f->base->rename(f->base, "/n/log/a", "/n/log/b"), 0);
    assert_int_not_equal(tdm_fault_fs_checksum_all(&f->fs, "/n"), h0);
    assert_int_equal(f->base->rename(f->base, "/n/log/b", "/n/log/a"), 0);
    assert_int_equal(f->base->truncate(f->base, fd, 4), 0);
    assert_int_not_equal(tdm_fault_fs_checksum_all(&f->fs, "/n"), h0);
    assert_int_equal(f->base->truncate(f->base, fd, 3), 0);
    assert_int_equal(f->base->mkdir(f->base, "/n/quarantine"), 0);
    assert_int_not_equal(tdm_fault_fs_checksum_all(&f->fs, "/n"), h0);
    uint64_t h2 = tdm_fault_fs_checksum_all(&f->fs, "/n");
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, "/elsewhere"), 0);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, "/n"), h2);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, "/n/log/a"),
                     tdm_fault_fs_checksum_all(&f->fs, "/n/log/a"));
}

/* write_file plants a durable file that survives a crash; read helpers,
 * file_size and exists report what is there. */
static void test_write_file__plants_durable_file(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, "/n/planted", "bytes", 5), 0);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, "/n/empty", NULL, 0), 0);
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    assert_contents(f, "/n/planted", false, "bytes");
    uint64_t size = 0;
    assert_int_equal(tdm_fault_fs_file_size(&f->fs, "/n/planted", &size), 0);
    assert_int_equal(size, 5);
    void *data = (void *)1;
    size_t data_size = 1;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, "/n/empty", &data, &data_size), 0);
    assert_null(data);
    assert_int_equal(data_size, 0);
    assert_int_equal(tdm_fault_fs_file_size(&f->fs, "/n", &size), -EISDIR);
    assert_int_equal(tdm_fault_fs_file_size(&f->fs, "/n/none", &size), -ENOENT);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, "/n", "x", 1), -EISDIR);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, "/none/x", "x", 1), -ENOENT);
    assert_true(tdm_fault_fs_exists(&f->fs, "/"));
    assert_false(tdm_fault_fs_exists(&f->fs, "/n/none"));
}

/* ------------------------------------------------------------------------
 * Threads.
 * ------------------------------------------------------------------------ */

#define THREAD_COUNT       4
#define THREAD_WRITE_COUNT 300
#define THREAD_RECORD_SIZE 64

struct thread_arg {
    struct tdm_fs *base;
    int fd;
    int id;
};

static void *thread_writer(void *data)
{
    struct thread_arg *arg = data;
    uint8_t record[THREAD_RECORD_SIZE];
    memset(record, 'a' + arg->id, sizeof(record));
    for (int i = 0; i < THREAD_WRITE_COUNT; i++) {
        uint64_t offset = (uint64_t)i * THREAD_RECORD_SIZE;
        if (arg->base->pwrite(arg->base, arg->fd, record, sizeof(record), offset) != 0) {
            return (void *)1;
        }
        if (i % 10 == 0 && arg->base->fdatasync(arg->base, arg->fd) != 0) {
            return (void *)1;
        }
    }
    return arg->base->fdatasync(arg->base, arg->fd) == 0 ? NULL : (void *)1;
}

/* Writers on several threads, each with its own file, all end with their
 * full, durable contents (group commit calls the fs from several threads). */
static void test_threads__concurrent_writers(void **state)
{
    struct fixture *f = *state;
    pthread_t threads[THREAD_COUNT];
    struct thread_arg args[THREAD_COUNT];
    for (int i = 0; i < THREAD_COUNT; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/n/t%d", i);
        args[i] = (struct thread_arg){f->base, open_file(f, path, TDM_FS_WRITE | TDM_FS_CREATE), i};
    }
    assert_int_equal(f->base->sync_dir(f->base, "/n"), 0);
    for (int i = 0; i < THREAD_COUNT; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, thread_writer, &args[i]), 0);
    }
    for (int i = 0; i < THREAD_COUNT; i++) {
        void *result = NULL;
        assert_int_equal(pthread_join(threads[i], &result), 0);
        assert_null(result);
    }
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    for (int i = 0; i < THREAD_COUNT; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/n/t%d", i);
        void *data = NULL;
        size_t size = 0;
        assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &data, &size), 0);
        assert_int_equal(size, THREAD_WRITE_COUNT * THREAD_RECORD_SIZE);
        const uint8_t *bytes = data;
        for (size_t j = 0; j < size; j++) {
            assert_int_equal(bytes[j], 'a' + i);
        }
        tdm_free(data);
    }
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fault_fs__matches_model),
        T(test_open__errors),
        T(test_pwrite__read_only_fd_fails),
        T(test_pwrite__too_large_fails),
        T(test_fdatasync__makes_data_durable),
        T(test_sync_dir__makes_entries_durable),
        T(test_sync_dir__errors),
        T(test_mkdir__durable_after_parent_sync),
        T(test_mkdir__errors),
        T(test_mkdirs__creates_durable_ancestors),
        T(test_rename__durable_after_sync_dir),
        T(test_rename__directories),
        T(test_crash__rename_synced_in_target_only_links),
        T(test_crash__directory_reached_twice_keeps_first),
        T(test_unlink__open_fd_keeps_working),
        T(test_list__names_directly_in_dir),
        T(test_crash__old_fd_ebadf),
        T(test_crash__drop_loses_unsynced),
        T(test_fdatasync__after_truncate_regrow),
        T(test_crash__keep_keeps_everything),
        T(test_crash__torn_is_sector_granular),
        T(test_crash__repeated),
        T(test_fail_after__fails_nth_call_once),
        T(test_advise_dontneed__counted),
        T(test_fail_after__persistent),
        T(test_fail_after__any_op),
        T(test_fail_after__bad_fd_does_not_trip),
        T(test_fail_after__rules_max),
        T(test_fail_next__pwrite_applies_nothing),
        T(test_set_pwrite_torn__failed_pwrite_writes_prefix),
        T(test_fdatasync__failure_forgets_pending),
        T(test_close__failure_releases_fd),
        T(test_fail_next__path_ops_change_nothing),
        T(test_crash__disarms_rules),
        T(test_count__counts_each_op),
        T(test_flip__flips_data_and_durable),
        T(test_stale_read_once__zeroes_one_read),
        T(test_lock__second_lock_would_block),
        T(test_lock__released_by_crash),
        T(test_checksum_all__detects_changes),
        T(test_write_file__plants_durable_file),
        T(test_threads__concurrent_writers),
    };
#undef T
    return cmocka_run_group_tests_name("fault_fs", tests, NULL, NULL);
}
