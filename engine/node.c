/* engine/node.c: struct tandem and the public API of include/tandem.h.
 *
 * Happy path of open:
 *   1. With TANDEM_OPEN_CREATE, make DIR, DIR/log and DIR/quarantine durable.
 *   2. A writer takes DIR/lock (a second writer gets TANDEM_ELOCKED).
 *   3. Open the log: recovery checks the tail, cuts a torn tail into
 *      quarantine, records damage (engine/recover.c).
 *   4. Open the index; a writer brings it up to date with the log: if its
 *      watermark is past the log's end or its chain hash differs from the
 *      log's at that LSN, it is rebuilt from scratch; otherwise the batches
 *      after the watermark are applied.
 *   5. A writer starts group commit (engine/commit.c).
 * Queries: find LSNs in the index, read their batches from the log (verifying
 * every checksum), decode the records, filter out false candidates, call back.
 *
 * Failure modes: an open that fails releases everything it took; a query that
 * meets a damaged batch returns TANDEM_ECORRUPT naming where; a writer whose
 * log failed returns TANDEM_EFAILED until reopened.
 *
 * Close: stop group commit (finishing queued writes), sync and close the index,
 * close the log, release the lock. */
#include "node.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/bytes.h"
#include "base/trace.h"
#include "batch.h"
#include "codec.h"
#include "commit.h"
#include "index.h"
#include "log.h"
#include "scrub.h"

#define NODE_SCAN_CHUNK        256
#define NODE_VERIFY_INDEX_NAME "index.verify" /* Scratch rebuild of tandem_verify(). */

/* What a writer's open does with the index. */
enum node_index_mode {
    NODE_INDEX_CATCH_UP = 1, /* Apply the log after a trusted watermark, else rebuild. */
    NODE_INDEX_REBUILD,      /* Rebuild from scratch (tandem_reindex). */
    NODE_INDEX_VERIFY,       /* Leave it as found, start no commit thread (tandem_verify). */
};

struct tandem {
    struct tdm_fs *fs; /* Borrowed. */
    char dir[TDM_PATH_SIZE];
    bool read_only;
    int lock_fd; /* -1 for readers. */
    struct tdm_log log;
    struct tdm_index *index;         /* NULL only for a verify whose index did not open: */
    char index_error[TDM_DIAG_SIZE]; /* why (tdm_node_verify). */
    bool commit_started;
    struct tdm_commit commit;
    atomic_bool verify_running; /* tdm_node_verify_running() under way. */
    atomic_bool verify_stop;    /* tdm_node_verify_stop(): verifies end, none starts. */
};

void tandem_options_init(struct tandem_options *options)
{
    memset(options, 0, sizeof(*options));
    options->segment_size = TDM_SEGMENT_SIZE_DEFAULT;
}

static void node_diag_copy(struct tandem_diag *out, const struct tdm_diag *in)
{
    if (out != NULL) {
        tdm_static_assert(sizeof(out->message) == sizeof(in->message));
        memcpy(out->message, in->message, sizeof(out->message));
    }
}

/* ---- open -------------------------------------------------------------------- */

static int node_create_dirs(struct tdm_fs *fs, const char *dir, struct tdm_diag *diag)
{
    static const char *const names[] = {"log", "quarantine"};
    int rv = fs->mkdir(fs, dir);
    if (rv != 0) {
        tdm_diag_printf(diag, "mkdir %s: %s", dir, tandem_strerror(rv));
        return rv;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[TDM_PATH_SIZE];
        rv = tdm_fs_path(path, sizeof(path), dir, names[i]);
        rv = rv != 0 ? rv : fs->mkdir(fs, path);
        if (rv != 0) {
            tdm_diag_printf(diag, "mkdir %s/%s: %s", dir, names[i], tandem_strerror(rv));
            return rv;
        }
    }
    rv = fs->sync_dir(fs, dir);
    if (rv != 0) {
        tdm_diag_printf(diag, "sync %s: %s", dir, tandem_strerror(rv));
        return rv;
    }
    /* DIR's own entry must survive a crash too. */
    char parent[TDM_PATH_SIZE];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent) {
        slash[1] = '\0';
    } else if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(parent, sizeof(parent), ".");
    }
    rv = fs->sync_dir(fs, parent);
    if (rv != 0) {
        tdm_diag_printf(diag, "sync %s: %s", parent, tandem_strerror(rv));
    }
    return rv;
}

static int node_lock(struct tandem *t, struct tdm_diag *diag)
{
    char path[TDM_PATH_SIZE];
    int rv = tdm_fs_path(path, sizeof(path), t->dir, "lock");
    if (rv == 0) {
        rv = t->fs->lock(t->fs, path, &t->lock_fd);
    }
    if (rv == -EWOULDBLOCK || rv == -EAGAIN) {
        tdm_diag_printf(diag, "%s is locked by another process (one writer per directory)", t->dir);
        return TANDEM_ELOCKED;
    }
    if (rv == -ENOENT) {
        tdm_diag_printf(diag, "%s: not a tandem directory", t->dir);
        return TANDEM_EFORMAT;
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "lock %s: %s", path, tandem_strerror(rv));
    }
    return rv;
}

/* Apply every batch of t's log after lsn_from - 1 to index. */
static int node_index_fill(struct tandem *t, struct tdm_index *index, uint64_t lsn_from,
                           struct tdm_diag *diag)
{
    return tdm_commit_index_fill(&t->log, index, lsn_from, UINT64_MAX, NULL, diag);
}

/* Set *trusted if the index's watermark names a batch of this log with the
 * same chain hash. Returns 0, or an I/O error (or -ENOMEM) met while reading
 * that batch: bytes that fail their checksum or a batch the index does not
 * hold just mean "not trusted". */
static int node_index_check(struct tandem *t, uint64_t watermark,
                            const struct tdm_chain_hash *chain, bool *trusted,
                            struct tdm_diag *diag)
{
    *trusted = watermark == 0;
    if (watermark == 0 || watermark > t->log.lsn_last) {
        return 0;
    }
    struct tdm_index_location location;
    int rv = tdm_index_locate(t->index, watermark, &location);
    if (rv != 0) {
        return rv == TANDEM_ENOTFOUND || rv == TANDEM_ECORRUPT ? 0 : rv;
    }
    struct tdm_log_location where = {location.segment_lsn, location.offset, location.size};
    struct tdm_batch_header header;
    uint8_t *raw = NULL;
    struct tdm_diag why = {{0}};
    rv = tdm_log_read_batch(t->fs, t->log.log_dir, &where, &header, &raw, &why);
    if (rv == TANDEM_ECORRUPT || rv == -ENOENT) {
        return 0;
    }
    if (rv != 0) {
        tdm_diag_printf(diag, "%s", why.message);
        return rv;
    }
    tdm_free(raw);
    *trusted = tdm_batch_lsn_last(&header) == watermark &&
               memcmp(header.chain_hash.bytes, chain->bytes, TDM_CHAIN_HASH_SIZE) == 0;
    return 0;
}

/* True if the index's watermark names a batch of this log with the same chain
 * hash. On open, any doubt (an I/O error included) means a rebuild. */
static bool node_index_trusted(struct tandem *t, uint64_t watermark,
                               const struct tdm_chain_hash *chain)
{
    bool trusted = false;
    return node_index_check(t, watermark, chain, &trusted, NULL) == 0 && trusted;
}

static int node_index_catch_up(struct tandem *t, bool rebuild, struct tdm_diag *diag)
{
    uint64_t watermark;
    struct tdm_chain_hash chain;
    int rv = tdm_index_watermark(t->index, &watermark, &chain);
    if (rv != 0) {
        tdm_diag_printf(diag, "index watermark: %s", tandem_strerror(rv));
        return rv;
    }
    if (rebuild || !node_index_trusted(t, watermark, &chain)) {
        if (!rebuild) {
            tdm_tracef("index at LSN %" PRIu64 " does not match the log: rebuilding", watermark);
        }
        rv = tdm_index_clear(t->index, diag);
        if (rv != 0) {
            return rv;
        }
        watermark = 0;
    }
    if (watermark < t->log.lsn_last) {
        rv = node_index_fill(t, t->index, watermark + 1, diag);
        if (rv != 0) {
            tdm_diag_wrapf(diag, "index catch-up");
            return rv;
        }
    }
    return tdm_index_sync(t->index);
}

/* An index that does not open is discarded and rebuilt by a writer's open:
 * one whose files are damaged (TANDEM_ECORRUPT) always, one of another format
 * version (TANDEM_EFORMAT) only when asked to rebuild (tandem reindex). */
static bool node_index_discardable(const struct tandem *t, enum node_index_mode mode, int rv)
{
    if (t->read_only || mode == NODE_INDEX_VERIFY) {
        return false;
    }
    return rv == TANDEM_ECORRUPT || (rv == TANDEM_EFORMAT && mode == NODE_INDEX_REBUILD);
}

/* Replace t's index, whose files did not open, with an empty one. */
static int node_index_reopen_empty(struct tandem *t, struct tdm_diag *diag)
{
    int rv = tdm_index_discard(t->dir, diag);
    return rv != 0 ? rv : tdm_index_open(t->dir, false, &t->index, diag);
}

static int node_open(const char *dir, const struct tandem_options *options, struct tdm_fs *fs,
                     enum node_index_mode mode, struct tandem **out, struct tdm_diag *diag)
{
    struct tandem_options defaults;
    tandem_options_init(&defaults);
    uint64_t segment_size =
        options->segment_size != 0 ? options->segment_size : defaults.segment_size;
    if (segment_size < TDM_SEGMENT_SIZE_MIN || segment_size > TDM_SEGMENT_SIZE_MAX) {
        tdm_diag_printf(diag, "segment_size %" PRIu64 " out of range [%llu, %llu]", segment_size,
                        TDM_SEGMENT_SIZE_MIN, TDM_SEGMENT_SIZE_MAX);
        return TANDEM_EINVALID;
    }
    struct tandem *t = tdm_calloc(1, sizeof(*t));
    if (t == NULL) {
        tdm_diag_printf(diag, "open %s: out of memory", dir);
        return -ENOMEM;
    }
    t->fs = fs;
    t->lock_fd = -1;
    t->read_only = (options->flags & TANDEM_OPEN_READONLY) != 0;
    int rv = 0;
    if (snprintf(t->dir, sizeof(t->dir), "%s", dir) >= (int)sizeof(t->dir) - 64) {
        tdm_diag_printf(diag, "%s: path too long", dir);
        rv = -ENAMETOOLONG;
        goto err_after_alloc;
    }
    if ((options->flags & TANDEM_OPEN_CREATE) && !t->read_only) {
        rv = node_create_dirs(fs, dir, diag);
        if (rv != 0) {
            goto err_after_alloc;
        }
    }
    if (!t->read_only) {
        rv = node_lock(t, diag);
        if (rv != 0) {
            goto err_after_alloc;
        }
    }
    struct tdm_log_options log_options = {
        .segment_size = segment_size, .read_only = t->read_only, .prepare = TDM_LOG_PREPARE_THREAD};
    if ((options->flags & TDM_OPEN_PREPARE_INLINE) != 0) {
        log_options.prepare = TDM_LOG_PREPARE_INLINE;
    }
    rv = tdm_log_open(&t->log, fs, dir, &log_options, diag);
    if (rv != 0) {
        goto err_after_lock;
    }
    bool rebuild = mode == NODE_INDEX_REBUILD;
    rv = tdm_index_open(dir, t->read_only, &t->index, diag);
    if (node_index_discardable(t, mode, rv)) {
        /* The index is derived from the log: a damaged one is rebuilt, not fatal. */
        tdm_tracef("open %s: %s: discarding the index, rebuilding it from the log", dir,
                   diag != NULL ? diag->message : tandem_strerror(rv));
        if (diag != NULL) {
            diag->message[0] = '\0';
        }
        rv = node_index_reopen_empty(t, diag);
        rebuild = true;
    } else if (rv == TANDEM_ECORRUPT && mode == NODE_INDEX_VERIFY) {
        /* The log is checked without it; --deep rebuilds it (tdm_node_verify). */
        snprintf(t->index_error, sizeof(t->index_error), "%s",
                 diag != NULL ? diag->message : tandem_strerror(rv));
        if (diag != NULL) {
            diag->message[0] = '\0';
        }
        t->index = NULL;
        rv = 0;
    } else if (rv == TANDEM_ECORRUPT && t->read_only && diag != NULL) {
        char why[sizeof(diag->message)];
        memcpy(why, diag->message, sizeof(why));
        tdm_diag_printf(
            diag, "damaged index (tandemd or tandem reindex rebuilds it from the log): %s", why);
    }
    if (rv != 0) {
        goto err_after_log;
    }
    if (!t->read_only && mode != NODE_INDEX_VERIFY) {
        rv = node_index_catch_up(t, rebuild, diag);
        if (rv != 0) {
            goto err_after_index;
        }
        rv = tdm_commit_start(&t->commit, &t->log, t->index, t->log.lsn_last);
        if (rv != 0) {
            tdm_diag_printf(diag, "start commit threads: %s", tandem_strerror(rv));
            goto err_after_index;
        }
        t->commit_started = true;
    }
    *out = t;
    return 0;

err_after_index:
    tdm_index_close(t->index);
err_after_log:
    tdm_log_close(&t->log);
err_after_lock:
    if (t->lock_fd >= 0) {
        fs->close(fs, t->lock_fd);
    }
err_after_alloc:
    tdm_free(t);
    tdm_assert(rv < 0);
    if (diag != NULL && diag->message[0] == '\0') {
        tdm_diag_printf(diag, "open %s: %s", dir, tandem_strerror(rv));
    }
    return rv;
}

int tdm_node_open(const char *dir, const struct tandem_options *options, struct tdm_fs *fs,
                  struct tandem **out, struct tdm_diag *diag)
{
    return node_open(dir, options, fs, NODE_INDEX_CATCH_UP, out, diag);
}

int tandem_open(const char *dir, const struct tandem_options *options, struct tandem **out,
                struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    struct tandem_options defaults;
    tandem_options_init(&defaults);
    if (dir == NULL || out == NULL) {
        tdm_diag_printf(&d, "dir and out must not be NULL");
        node_diag_copy(diag, &d);
        return TANDEM_EINVALID;
    }
    if (options != NULL) {
        defaults = *options;
        defaults.flags &= ~TDM_OPEN_PREPARE_INLINE; /* Internal: tdm_node_open() only. */
    }
    int rv = node_open(dir, &defaults, tdm_fs_posix(), NODE_INDEX_CATCH_UP, out, &d);
    node_diag_copy(diag, &d);
    return rv;
}

void tandem_close(struct tandem *t)
{
    if (t == NULL) {
        return;
    }
    if (t->commit_started) {
        tdm_commit_stop(&t->commit);
    }
    if (!t->read_only && t->index != NULL) {
        (void)tdm_index_sync(t->index);
    }
    tdm_index_close(t->index);
    tdm_log_close(&t->log);
    if (t->lock_fd >= 0) {
        t->fs->close(t->fs, t->lock_fd);
    }
    tdm_free(t);
}

void tdm_node_abandon(struct tandem *t)
{
    /* The threads are stopped (a process that died has none), then memory is
     * released without any final write that a crash would not have made. */
    if (t->commit_started) {
        tdm_commit_stop(&t->commit);
    }
    tdm_index_close(t->index);
    if (t->log.progress_fd >= 0) {
        t->fs->close(t->fs, t->log.progress_fd); /* Without close's fdatasync. */
        t->log.progress_fd = -1;
    }
    tdm_log_close(&t->log);
    if (t->lock_fd >= 0) {
        t->fs->close(t->fs, t->lock_fd); /* A dead process holds no lock. */
    }
    tdm_free(t);
}

int tdm_node_reindex(const char *dir, struct tdm_fs *fs, struct tdm_diag *diag)
{
    struct tandem_options options;
    tandem_options_init(&options);
    struct tandem *t;
    int rv = node_open(dir, &options, fs, NODE_INDEX_REBUILD, &t, diag);
    if (rv != 0) {
        return rv;
    }
    tandem_close(t);
    return 0;
}

int tandem_reindex(const char *dir, struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = tdm_node_reindex(dir, tdm_fs_posix(), &d);
    node_diag_copy(diag, &d);
    return rv;
}

/* ---- verify -------------------------------------------------------------------- */

/* The log part of a verify report: what a scrub pass found. */
static void node_verify_report_scrub(struct tandem_verify_report *report,
                                     const struct tdm_scrub_report *found)
{
    report->segment_count = found->segment_count;
    report->sealed_count = found->sealed_count;
    report->segment_bytes = found->segment_bytes;
    report->read_bytes = found->read_bytes;
    report->lsn_first = found->lsn_first;
    report->lsn_last = found->lsn_last;
    tdm_static_assert(sizeof(report->chain_hash) == sizeof(found->chain_hash));
    memcpy(report->chain_hash, found->chain_hash, sizeof(report->chain_hash));
    report->damaged_count = found->damaged_count;
    tdm_static_assert(sizeof(report->damaged) == sizeof(found->damaged));
    memcpy(report->damaged, found->damaged, sizeof(report->damaged));
}

/* Re-read every segment of t's directory from the medium (engine/scrub.c). */
static int node_verify_scrub(struct tandem *t, const struct tdm_scrub_options *options,
                             struct tandem_verify_report *report, struct tdm_diag *diag)
{
    struct tdm_scrub *scrub = tdm_malloc(sizeof(*scrub));
    struct tdm_scrub_report *found = tdm_malloc(sizeof(*found));
    int rv = scrub != NULL && found != NULL ? 0 : -ENOMEM;
    if (rv != 0) {
        tdm_diag_printf(diag, "verify: out of memory");
    }
    if (rv == 0) {
        rv = tdm_scrub_open(scrub, t->fs, t->dir, options, diag);
        if (rv == 0) {
            rv = tdm_scrub_pass(scrub, found, diag);
            tdm_scrub_close(scrub);
        }
    }
    if (rv == 0) {
        node_verify_report_scrub(report, found);
    }
    tdm_free(found);
    tdm_free(scrub);
    return rv;
}

/* Rebuild t's log into the scratch index DIR/index.verify and compare every
 * named database of t's index with it. The scratch index is removed after. */
static int node_verify_compare(struct tandem *t, bool *equal, char *difference,
                               size_t difference_size, struct tdm_diag *diag)
{
    /* A verify that died left its scratch index: start from nothing. */
    int rv = tdm_index_remove_at(t->dir, NODE_VERIFY_INDEX_NAME, diag);
    struct tdm_index *scratch = NULL;
    if (rv == 0) {
        rv = tdm_index_open_at(t->dir, NODE_VERIFY_INDEX_NAME, false, &scratch, diag);
    }
    if (rv != 0) {
        return rv;
    }
    rv = node_index_fill(t, scratch, 1, diag);
    if (rv == 0) {
        rv = tdm_index_compare(t->index, scratch, equal, difference, difference_size, diag);
    }
    tdm_index_close(scratch);
    struct tdm_diag ignored = {{0}};
    int removed = tdm_index_remove_at(t->dir, NODE_VERIFY_INDEX_NAME, rv == 0 ? diag : &ignored);
    return rv != 0 ? rv : removed;
}

/* Prove t's index equal to a rebuild from its log; rebuild it if not. */
static int node_verify_index(struct tandem *t, struct tandem_verify_report *report,
                             struct tdm_diag *diag)
{
    uint64_t watermark = 0;
    struct tdm_chain_hash chain;
    int rv = tdm_index_watermark(t->index, &watermark, &chain);
    if (rv != 0) {
        tdm_diag_printf(diag, "index watermark: %s", tandem_strerror(rv));
        return rv;
    }
    bool trusted = false;
    rv = node_index_check(t, watermark, &chain, &trusted, diag);
    if (rv != 0) {
        tdm_diag_wrapf(diag, "index watermark LSN %" PRIu64, watermark);
        return rv;
    }
    report->index_checked = true;
    report->index_lsn = watermark;
    bool equal = false;
    if (!trusted) {
        snprintf(report->index_difference, sizeof(report->index_difference),
                 "the index is current to LSN %" PRIu64
                 ", whose batch and chain hash are not the log's",
                 watermark);
    } else {
        /* Behind but in agreement: what any open does first. */
        rv = watermark < t->log.lsn_last ? node_index_fill(t, t->index, watermark + 1, diag) : 0;
        if (rv == 0) {
            rv = node_verify_compare(t, &equal, report->index_difference,
                                     sizeof(report->index_difference), diag);
        }
        if (rv != 0) {
            return rv;
        }
    }
    if (equal) {
        report->index_equal = true;
        report->index_difference[0] = '\0';
        return tdm_index_sync(t->index);
    }
    tdm_tracef("verify %s: %s: rebuilding the index", t->dir, report->index_difference);
    rv = node_index_catch_up(t, true, diag);
    if (rv == 0) {
        report->index_rebuilt = true;
    }
    return rv;
}

/* --deep on a node whose index files did not open (t->index_error): the
 * index differs from a rebuild by definition; discard it and rebuild. */
static int node_verify_discarded_index(struct tandem *t, struct tandem_verify_report *report,
                                       struct tdm_diag *diag)
{
    report->index_checked = true;
    snprintf(report->index_difference, sizeof(report->index_difference),
             "the index files do not open (%.200s)", t->index_error);
    tdm_tracef("verify %s: %s: rebuilding the index", t->dir, report->index_difference);
    int rv = node_index_reopen_empty(t, diag);
    rv = rv != 0 ? rv : node_index_catch_up(t, true, diag);
    if (rv == 0) {
        report->index_lsn = t->log.lsn_last;
        report->index_rebuilt = true;
    }
    return rv;
}

int tdm_node_verify(const char *dir, unsigned flags, struct tdm_fs *fs,
                    const struct tdm_scrub_options *scrub_options,
                    struct tandem_verify_report *report, struct tdm_diag *diag)
{
    tdm_assert(dir != NULL);
    tdm_assert(report != NULL);
    if ((flags & ~TANDEM_VERIFY_DEEP) != 0) {
        tdm_diag_printf(diag, "verify: unknown flags 0x%x", flags);
        return TANDEM_EINVALID;
    }
    struct tdm_scrub_options unthrottled;
    if (scrub_options == NULL) {
        tdm_scrub_options_init(&unthrottled);
        unthrottled.rate_bytes_per_second = 0; /* The operator asked for it now. */
        scrub_options = &unthrottled;
    }
    struct tandem_options options;
    tandem_options_init(&options);
    struct tandem *t = NULL;
    int rv = node_open(dir, &options, fs, NODE_INDEX_VERIFY, &t, diag);
    if (rv != 0) {
        return rv;
    }
    struct tandem_verify_report found;
    memset(&found, 0, sizeof(found));
    rv = node_verify_scrub(t, scrub_options, &found, diag);
    bool deep = rv == 0 && (flags & TANDEM_VERIFY_DEEP) != 0 && found.damaged_count == 0;
    if (deep && t->index == NULL) {
        rv = node_verify_discarded_index(t, &found, diag);
    } else if (deep) {
        rv = node_verify_index(t, &found, diag);
    }
    tandem_close(t);
    if (rv == 0) {
        *report = found;
    }
    return rv;
}

int tandem_verify(const char *dir, unsigned flags, struct tandem_verify_report *report,
                  struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = TANDEM_EINVALID;
    if (dir == NULL || report == NULL) {
        tdm_diag_printf(&d, "dir and report must not be NULL");
    } else {
        rv = tdm_node_verify(dir, flags, tdm_fs_posix(), NULL, report, &d);
    }
    node_diag_copy(diag, &d);
    return rv;
}

/* ---- verify a running node (tdm_node_verify_running) ------------------------------ */

static int node_commit_blocking(struct tandem *t, struct tdm_commit_request *request,
                                struct tdm_diag *diag);
static int node_cut(struct tandem *t, uint64_t cut_after_lsn, bool reindex, struct tdm_diag *diag);

#define NODE_VERIFY_LIVE_INDEX_NAME "index.verify-live" /* Scratch rebuild beside a tandemd. */
#define NODE_VERIFY_LIVE_ATTEMPTS   100 /* Comparisons tried while the index moves on. */
#define NODE_VERIFY_PROGRESS_S      1   /* Seconds between progress calls. */

/* Calls progress now and then while a scrub pass runs on another thread. */
struct node_verify_watch {
    struct tdm_scrub *scrub;
    uint64_t bytes_total;
    tdm_node_verify_progress_cb progress;
    void *data;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool done;
};

static void *node_verify_watch_main(void *arg)
{
    struct node_verify_watch *w = arg;
    pthread_mutex_lock(&w->mutex);
    while (!w->done) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += NODE_VERIFY_PROGRESS_S;
        while (!w->done && pthread_cond_timedwait(&w->cond, &w->mutex, &until) == 0) {
        }
        if (w->done) {
            break;
        }
        pthread_mutex_unlock(&w->mutex);
        struct tdm_scrub_progress p;
        tdm_scrub_progress(w->scrub, &p);
        if (p.running) {
            w->progress(w->data, "log", p.pass_bytes, w->bytes_total, p.segment_lsn);
        }
        pthread_mutex_lock(&w->mutex);
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

/* One scrub pass over t's directory beside the writer, unthrottled, with a
 * progress call about every NODE_VERIFY_PROGRESS_S seconds. */
static int node_verify_live_scrub(struct tandem *t, tdm_node_verify_progress_cb progress,
                                  void *data, struct tandem_verify_report *report,
                                  struct tdm_diag *diag)
{
    struct tandem_status *status = tdm_malloc(sizeof(*status));
    struct node_verify_watch *w = tdm_calloc(1, sizeof(*w));
    struct tdm_scrub_options options;
    tdm_scrub_options_init(&options);
    options.rate_bytes_per_second = 0; /* The operator asked for it now. */
    options.stop = &t->verify_stop;
    int rv = status != NULL && w != NULL ? tandem_status(t, status) : -ENOMEM;
    if (rv == -ENOMEM) {
        tdm_diag_printf(diag, "verify: out of memory");
    }
    if (rv != 0) {
        tdm_free(status);
        tdm_free(w);
        return rv;
    }
    if (progress == NULL) {
        rv = node_verify_scrub(t, &options, report, diag);
        tdm_free(status);
        tdm_free(w);
        return rv;
    }
    progress(data, "log", 0, status->log_bytes, 0);
    /* node_verify_scrub() with the watcher: the scrubber's progress is the
     * only state the two threads share, and it is locked. */
    struct tdm_scrub *scrub = tdm_malloc(sizeof(*scrub));
    struct tdm_scrub_report *found = tdm_malloc(sizeof(*found));
    rv = scrub != NULL && found != NULL ? 0 : -ENOMEM;
    if (rv != 0) {
        tdm_diag_printf(diag, "verify: out of memory");
    } else {
        rv = tdm_scrub_open(scrub, t->fs, t->dir, &options, diag);
    }
    if (rv == 0) {
        w->scrub = scrub;
        w->bytes_total = status->log_bytes;
        w->progress = progress;
        w->data = data;
        pthread_mutex_init(&w->mutex, NULL);
        pthread_cond_init(&w->cond, NULL);
        pthread_t thread;
        bool watching = pthread_create(&thread, NULL, node_verify_watch_main, w) == 0;
        rv = tdm_scrub_pass(scrub, found, diag);
        if (watching) {
            pthread_mutex_lock(&w->mutex);
            w->done = true;
            pthread_cond_signal(&w->cond);
            pthread_mutex_unlock(&w->mutex);
            pthread_join(thread, NULL);
        }
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mutex);
        tdm_scrub_close(scrub);
    }
    if (rv == 0) {
        node_verify_report_scrub(report, found);
    }
    tdm_free(found);
    tdm_free(scrub);
    tdm_free(status);
    tdm_free(w);
    return rv;
}

/* Fill scratch from t's log up to the live index's watermark and compare the
 * two in one read snapshot of the live index taken at that watermark; the
 * index thread moves on meanwhile, so try again from where scratch stands. */
static int node_verify_live_compare(struct tandem *t, struct tdm_index *scratch,
                                    struct tandem_verify_report *report, bool *equal,
                                    struct tdm_diag *diag)
{
    uint64_t filled = 0;
    for (int attempt = 0; attempt < NODE_VERIFY_LIVE_ATTEMPTS; attempt++) {
        uint64_t watermark = 0;
        struct tdm_chain_hash chain;
        int rv = tdm_index_watermark(t->index, &watermark, &chain);
        if (rv != 0) {
            tdm_diag_printf(diag, "index watermark: %s", tandem_strerror(rv));
            return rv;
        }
        struct tandem_status status;
        tdm_log_status(&t->log, &status);
        bool trusted = false;
        if (watermark <= status.lsn_last) {
            rv = node_index_check(t, watermark, &chain, &trusted, diag);
            if (rv != 0) {
                tdm_diag_wrapf(diag, "index watermark LSN %" PRIu64, watermark);
                return rv;
            }
        }
        report->index_lsn = watermark;
        if (!trusted) {
            snprintf(report->index_difference, sizeof(report->index_difference),
                     "the index is current to LSN %" PRIu64
                     ", whose batch and chain hash are not the log's",
                     watermark);
            *equal = false;
            return 0;
        }
        if (watermark < filled) { /* Rebuilt after a cut meanwhile: start over. */
            rv = tdm_index_clear(scratch, diag);
            filled = 0;
        }
        if (rv == 0 && watermark > filled) {
            rv = tdm_commit_index_fill(&t->log, scratch, filled + 1, watermark, &t->verify_stop,
                                       diag);
        }
        if (rv != 0) {
            return rv;
        }
        filled = watermark;
        bool at = false;
        rv = tdm_index_compare_at(t->index, scratch, watermark, &t->verify_stop, &at, equal,
                                  report->index_difference, sizeof(report->index_difference), diag);
        if (rv != 0 || at) {
            return rv;
        }
    }
    tdm_diag_printf(diag,
                    "the index moved on during each of %d comparisons: run verify again when "
                    "the node writes less",
                    NODE_VERIFY_LIVE_ATTEMPTS);
    return TANDEM_EBUSY;
}

int tdm_node_reindex_running(struct tandem *t, struct tdm_diag *diag)
{
    int rv = node_cut(t, 0, true, diag);
    if (rv == 0) {
        rv = tdm_commit_wait_indexed(&t->commit, diag);
    }
    return rv;
}

/* Prove t's live index equal to a rebuild from its log; rebuild it if not. */
static int node_verify_live_index(struct tandem *t, struct tandem_verify_report *report,
                                  struct tdm_diag *diag)
{
    /* The index thread commits at intervals: first have it hold every LSN
     * durable now, so that the comparison covers the whole log verified. */
    int rv = tdm_commit_wait_indexed(&t->commit, diag);
    if (rv != 0) {
        return rv;
    }
    rv = tdm_index_remove_at(t->dir, NODE_VERIFY_LIVE_INDEX_NAME, diag);
    struct tdm_index *scratch = NULL;
    if (rv == 0) {
        rv = tdm_index_open_at(t->dir, NODE_VERIFY_LIVE_INDEX_NAME, false, &scratch, diag);
    }
    if (rv != 0) {
        return rv;
    }
    bool equal = false;
    rv = node_verify_live_compare(t, scratch, report, &equal, diag);
    tdm_index_close(scratch);
    struct tdm_diag ignored = {{0}};
    int removed =
        tdm_index_remove_at(t->dir, NODE_VERIFY_LIVE_INDEX_NAME, rv == 0 ? diag : &ignored);
    rv = rv != 0 ? rv : removed;
    if (rv != 0) {
        return rv;
    }
    report->index_checked = true;
    if (equal) {
        report->index_equal = true;
        report->index_difference[0] = '\0';
        return 0;
    }
    tdm_tracef("verify %s: %s: rebuilding the index", t->dir, report->index_difference);
    rv = tdm_node_reindex_running(t, diag);
    if (rv == 0) {
        report->index_rebuilt = true;
    }
    return rv;
}

int tdm_node_verify_running(struct tandem *t, unsigned flags, tdm_node_verify_progress_cb progress,
                            void *data, struct tandem_verify_report *report, struct tdm_diag *diag)
{
    tdm_assert(t != NULL);
    tdm_assert(report != NULL);
    if ((flags & ~TANDEM_VERIFY_DEEP) != 0) {
        tdm_diag_printf(diag, "verify: unknown flags 0x%x", flags);
        return TANDEM_EINVALID;
    }
    if (t->read_only || !t->commit_started) {
        tdm_diag_printf(diag, "verify: the node is not open for writing");
        return TANDEM_EINVALID;
    }
    bool running = false;
    if (!atomic_compare_exchange_strong(&t->verify_running, &running, true)) {
        tdm_diag_printf(diag, "another verify of this node is under way: wait for it");
        return TANDEM_EBUSY;
    }
    if (atomic_load(&t->verify_stop)) {
        atomic_store(&t->verify_running, false);
        tdm_diag_printf(diag, "verify stopped: the node is shutting down");
        return TANDEM_ECANCELED;
    }
    struct tandem_verify_report *found = tdm_calloc(1, sizeof(*found));
    int rv = found != NULL ? 0 : -ENOMEM;
    if (rv == 0) {
        rv = node_verify_live_scrub(t, progress, data, found, diag);
    }
    if (rv == 0 && (flags & TANDEM_VERIFY_DEEP) != 0 && found->damaged_count == 0) {
        if (progress != NULL) {
            progress(data, "index", 0, 0, 0);
        }
        rv = node_verify_live_index(t, found, diag);
    }
    if (rv == 0) {
        *report = *found;
    }
    if (rv == TANDEM_ECANCELED && atomic_load(&t->verify_stop)) {
        tdm_diag_wrapf(diag, "verify stopped: the node is shutting down");
    }
    tdm_free(found);
    atomic_store(&t->verify_running, false);
    return rv;
}

void tdm_node_verify_stop(struct tandem *t)
{
    tdm_assert(t != NULL);
    atomic_store(&t->verify_stop, true);
}

/* ---- append -------------------------------------------------------------------- */

tdm_static_assert(TANDEM_APPEND_SIZE_MAX == TDM_BATCH_RAW_SIZE_MAX); /* One call, one batch. */

/* 0 if t may write (not opened read-only), else TANDEM_EREADONLY with diag. */
static int node_writable(const struct tandem *t, struct tdm_diag *diag)
{
    if (t->read_only) {
        tdm_diag_printf(diag, "the node directory is open read-only");
        return TANDEM_EREADONLY;
    }
    return 0;
}

/* Validate and encode records into a new request (all or nothing). */
static int node_request_make(struct tandem *t, const struct tandem_record *records, size_t count,
                             struct tdm_commit_request *request, struct tdm_diag *diag)
{
    int writable = node_writable(t, diag);
    if (writable != 0) {
        return writable;
    }
    uint8_t *raw = NULL;
    size_t size = 0;
    int rv = tdm_batch_raw_encode(records, count, TANDEM_APPEND_SIZE_MAX, &raw, &size, diag);
    if (rv != 0) {
        return rv;
    }
    request->kind = TDM_COMMIT_LOCAL;
    request->raw = raw;
    request->raw_size = size;
    request->record_count = (uint32_t)count;
    return 0;
}

int tandem_append(struct tandem *t, const struct tandem_record *records, size_t count,
                  uint64_t *lsn_first, struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    struct tdm_commit_request request;
    memset(&request, 0, sizeof(request));
    int rv = node_request_make(t, records, count, &request, &d);
    if (rv == 0) {
        rv = tdm_commit_submit(&t->commit, &request);
        if (rv != 0) {
            tdm_free(request.raw);
            tdm_diag_printf(&d, "%s", tandem_strerror(rv));
        }
    }
    if (rv == 0) {
        tdm_commit_wait(&t->commit, &request);
        rv = request.status;
        if (rv == 0) {
            *lsn_first = request.lsn_first;
        } else {
            tdm_diag_printf(&d, "%s", request.message);
        }
    }
    node_diag_copy(diag, &d);
    return rv;
}

int tandem_append_async(struct tandem *t, const struct tandem_record *records, size_t count,
                        tandem_append_cb cb, void *data, struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    if (cb == NULL) {
        tdm_diag_printf(&d, "cb must not be NULL");
        node_diag_copy(diag, &d);
        return TANDEM_EINVALID;
    }
    struct tdm_commit_request *request = tdm_calloc(1, sizeof(*request));
    if (request == NULL) {
        tdm_diag_printf(&d, "out of memory");
        node_diag_copy(diag, &d);
        return -ENOMEM;
    }
    int rv = node_request_make(t, records, count, request, &d);
    if (rv == 0 && tdm_log_failed(&t->log, &d) != 0) {
        tdm_free(request->raw);
        rv = TANDEM_EFAILED;
    }
    if (rv == 0) {
        request->cb = cb;
        request->data = data;
        rv = tdm_commit_submit(&t->commit, request);
        if (rv != 0) {
            tdm_free(request->raw);
            tdm_diag_printf(&d, "%s", tandem_strerror(rv));
        }
    }
    if (rv != 0) {
        tdm_free(request);
    }
    node_diag_copy(diag, &d);
    return rv;
}

/* ---- replication accessors (engine/node.h) ------------------------------------ */

struct tdm_log *tdm_node_log(struct tandem *t)
{
    return &t->log;
}

struct tdm_fs *tdm_node_fs(struct tandem *t)
{
    return t->fs;
}

int tdm_node_append_raw_async(struct tandem *t, const uint8_t *raw, size_t raw_size,
                              uint32_t record_count, uint64_t epoch, tandem_append_cb cb,
                              void *data, struct tdm_diag *diag)
{
    int writable = node_writable(t, diag);
    if (writable != 0) {
        return writable;
    }
    if (cb == NULL || raw_size == 0 || raw_size > TDM_BATCH_RAW_SIZE_MAX || record_count == 0 ||
        record_count > TANDEM_APPEND_RECORDS_MAX) {
        tdm_diag_printf(diag, "bad raw append: %zu bytes, %" PRIu32 " records", raw_size,
                        record_count);
        return TANDEM_EINVALID;
    }
    int rv = tdm_log_failed(&t->log, diag);
    if (rv != 0) {
        return TANDEM_EFAILED;
    }
    struct tdm_commit_request *request = tdm_calloc(1, sizeof(*request));
    uint8_t *copy = tdm_malloc(raw_size);
    if (request == NULL || copy == NULL) {
        tdm_free(request);
        tdm_free(copy);
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    memcpy(copy, raw, raw_size);
    pthread_mutex_lock(&t->log.mutex);
    if (epoch > t->log.epoch) {
        t->log.epoch = epoch;
    }
    pthread_mutex_unlock(&t->log.mutex);
    request->kind = TDM_COMMIT_LOCAL;
    request->raw = copy;
    request->raw_size = raw_size;
    request->record_count = record_count;
    request->cb = cb;
    request->data = data;
    rv = tdm_commit_submit(&t->commit, request);
    if (rv != 0) {
        tdm_free(copy);
        tdm_free(request);
        tdm_diag_printf(diag, "%s", tandem_strerror(rv));
    }
    return rv;
}

void tdm_node_set_written(struct tandem *t,
                          void (*cb)(void *data, const struct tdm_batch_header *header,
                                     const uint8_t *bytes, size_t size),
                          void *data)
{
    tdm_assert(t != NULL);
    if (t->commit_started) {
        tdm_commit_set_written(&t->commit, cb, data);
    }
}

/* Check a received batch before it reaches the commit thread: its header, its
 * body (decompressed into *raw, tdm_malloc'd) and every record in it, so that
 * nothing the index could not take is ever written. Untrusted bytes: codes,
 * never assertions. */
static int node_received_decode(const uint8_t *bytes, size_t size, struct tdm_batch_header *header,
                                uint8_t **raw, struct tdm_diag *diag)
{
    int rv = tdm_batch_whole_header_decode(bytes, size, header, diag);
    if (rv != 0) {
        return rv;
    }
    uint8_t *body = tdm_malloc((size_t)header->raw_size + 1u);
    if (body == NULL) {
        tdm_diag_printf(diag, "out of memory for a batch of %" PRIu32 " bytes", header->raw_size);
        return -ENOMEM;
    }
    rv = tdm_batch_body_decode(header, bytes + TDM_BATCH_HEADER_SIZE, body, header->raw_size, diag);
    struct tandem_record *records = NULL;
    if (rv == 0) {
        rv = tdm_commit_decode(body, header, &records, diag);
    }
    tdm_free(records);
    if (rv != 0) {
        tdm_free(body);
        tdm_diag_wrapf(diag, "batch %" PRIu64, header->lsn_first);
        return rv;
    }
    *raw = body;
    return 0;
}

/* Hand a blocking RECEIVED or CUT request to the commit thread and wait. */
static int node_commit_blocking(struct tandem *t, struct tdm_commit_request *request,
                                struct tdm_diag *diag)
{
    tdm_assert(request->cb == NULL);
    tdm_assert(request->kind != TDM_COMMIT_LOCAL);
    tdm_assert(t->commit_started); /* A writer's handle (not read-only). */
    int rv = tdm_commit_submit(&t->commit, request);
    if (rv != 0) {
        tdm_free(request->raw);
        request->raw = NULL;
        tdm_diag_printf(diag, "%s", tandem_strerror(rv));
        return rv;
    }
    tdm_commit_wait(&t->commit, request);
    tdm_assert(request->raw == NULL); /* The commit thread took it. */
    if (request->status != 0) {
        tdm_diag_printf(diag, "%s", request->message);
    }
    return request->status;
}

/* A CUT request, waited for: the log cut after cut_after_lsn, or (reindex)
 * the index rebuilt from the log. */
static int node_cut(struct tandem *t, uint64_t cut_after_lsn, bool reindex, struct tdm_diag *diag)
{
    tdm_assert(t != NULL);
    int writable = node_writable(t, diag);
    if (writable != 0) {
        return writable;
    }
    struct tdm_commit_request request;
    memset(&request, 0, sizeof(request));
    request.kind = TDM_COMMIT_CUT;
    request.cut_after_lsn = cut_after_lsn;
    request.reindex = reindex;
    return node_commit_blocking(t, &request, diag);
}

int tdm_node_append_received(struct tandem *t, const uint8_t *bytes, size_t size, bool sync,
                             struct tdm_batch_header *header, struct tdm_diag *diag)
{
    tdm_assert(t != NULL);
    tdm_assert(bytes != NULL);
    int writable = node_writable(t, diag);
    if (writable != 0) {
        return writable;
    }
    struct tdm_commit_request request;
    memset(&request, 0, sizeof(request));
    int rv = node_received_decode(bytes, size, &request.header, &request.raw, diag);
    if (rv != 0) {
        return rv;
    }
    request.kind = TDM_COMMIT_RECEIVED;
    request.raw_size = request.header.raw_size;
    request.record_count = request.header.record_count;
    request.batch = bytes;
    request.batch_size = size;
    request.sync = sync;
    rv = node_commit_blocking(t, &request, diag);
    if (rv == 0) {
        tdm_assert(request.lsn_first == request.header.lsn_first);
        *header = request.header;
    }
    return rv;
}

/* Check and decode batches bytes[0 .. count) into requests (zeroed) until
 * the first that fails: *ready receives how many passed. Returns 0 or that
 * failure's code, with diag. */
static int node_received_prepare(uint32_t count, const uint8_t *const *bytes, const size_t *sizes,
                                 struct tdm_commit_request *requests, uint32_t *ready,
                                 struct tdm_diag *diag)
{
    int rv = 0;
    *ready = 0;
    while (*ready < count && rv == 0) {
        struct tdm_commit_request *r = &requests[*ready];
        rv = node_received_decode(bytes[*ready], sizes[*ready], &r->header, &r->raw, diag);
        if (rv == 0) {
            r->kind = TDM_COMMIT_RECEIVED;
            r->raw_size = r->header.raw_size;
            r->record_count = r->header.record_count;
            r->batch = bytes[*ready];
            r->batch_size = sizes[*ready];
            (*ready)++;
        }
    }
    if (*ready > 0) {
        requests[*ready - 1].sync = true; /* One fdatasync, after the last. */
    }
    return rv;
}

/* Hand requests[0 .. ready) to the commit thread, all or none (their raw
 * freed then). Returns 0 or the refusal's code. */
static int node_received_submit(struct tandem *t, struct tdm_commit_request *requests,
                                uint32_t ready)
{
    int rv = ready > 0 ? tdm_commit_submit_many(&t->commit, requests, ready) : 0;
    for (uint32_t i = 0; rv != 0 && i < ready; i++) {
        tdm_free(requests[i].raw); /* Never handed over. */
        requests[i].raw = NULL;
    }
    return rv;
}

int tdm_node_append_received_many(struct tandem *t, uint32_t count, const uint8_t *const *bytes,
                                  const size_t *sizes, struct tdm_batch_header *headers,
                                  uint32_t *appended, struct tdm_diag *diag)
{
    tdm_assert(count >= 1);
    *appended = 0;
    tdm_assert(t != NULL);
    int rv = node_writable(t, diag);
    if (rv != 0) {
        return rv;
    }
    tdm_assert(t->commit_started); /* A writer's handle (not read-only). */
    struct tdm_commit_request *requests = tdm_calloc(count, sizeof(*requests));
    if (requests == NULL) {
        tdm_diag_printf(diag, "out of memory for %" PRIu32 " batches", count);
        return -ENOMEM;
    }
    /* Check every batch first: only those before the first bad one go. */
    uint32_t ready;
    rv = node_received_prepare(count, bytes, sizes, requests, &ready, diag);
    int sv = node_received_submit(t, requests, ready);
    uint32_t submitted = sv == 0 ? ready : 0;
    if (sv != 0 && rv == 0) {
        rv = sv;
        tdm_diag_printf(diag, "%s", tandem_strerror(sv));
    }
    /* Wait for each in order: a failed one fails those after it (a gap). */
    bool ok = true;
    for (uint32_t i = 0; i < submitted; i++) {
        struct tdm_commit_request *r = &requests[i];
        tdm_commit_wait(&t->commit, r);
        tdm_assert(r->raw == NULL); /* The commit thread took it. */
        if (ok && r->status == 0) {
            tdm_assert(r->lsn_first == r->header.lsn_first);
            headers[i] = r->header;
            (*appended)++;
        } else if (ok) {
            ok = false;
            rv = r->status;
            tdm_diag_printf(diag, "%s", r->message);
        }
    }
    tdm_free(requests);
    return rv;
}

/* tdm_node_append_received_async(): the batches of one call, in flight. */
struct node_received_async {
    tdm_node_received_cb cb;
    void *data;
    uint32_t submitted; /* Requests handed to the commit thread. */
    uint32_t remaining; /* Of them, not complete yet (commit thread only). */
    int status;         /* Why the batches after those submitted did not go; or 0. */
    char message[TDM_DIAG_SIZE];
    struct tdm_commit_request requests[];
};

/* Commit thread: one request of a call is complete; the call's last runs cb. */
static void node_received_async_done(struct tdm_commit_request *request)
{
    struct node_received_async *a = request->data;
    tdm_assert(a->remaining > 0);
    if (--a->remaining > 0) {
        return;
    }
    uint32_t appended = 0;
    int status = 0;
    const char *message = "";
    for (uint32_t i = 0; i < a->submitted; i++) {
        const struct tdm_commit_request *r = &a->requests[i];
        tdm_assert(r->raw == NULL); /* The commit thread took it. */
        if (r->status != 0) {
            status = r->status; /* A failed one fails those after it (a gap). */
            message = r->message;
            break;
        }
        tdm_assert(r->lsn_first == r->header.lsn_first);
        appended++;
    }
    if (status == 0 && a->status != 0) {
        status = a->status;
        message = a->message;
    }
    a->cb(a->data, status, appended, appended > 0 ? &a->requests[appended - 1].header : NULL,
          message);
    tdm_free(a);
}

int tdm_node_append_received_async(struct tandem *t, uint32_t count, const uint8_t *const *bytes,
                                   const size_t *sizes, tdm_node_received_cb cb, void *data,
                                   struct tdm_diag *diag)
{
    tdm_assert(count >= 1);
    tdm_assert(cb != NULL);
    tdm_assert(t != NULL);
    int rv = node_writable(t, diag);
    if (rv != 0) {
        return rv;
    }
    tdm_assert(t->commit_started); /* A writer's handle (not read-only). */
    struct node_received_async *a =
        tdm_calloc(1, sizeof(*a) + (size_t)count * sizeof(a->requests[0]));
    if (a == NULL) {
        tdm_diag_printf(diag, "out of memory for %" PRIu32 " batches", count);
        return -ENOMEM;
    }
    a->cb = cb;
    a->data = data;
    uint32_t ready;
    rv = node_received_prepare(count, bytes, sizes, a->requests, &ready, diag);
    if (rv != 0) {
        a->status = rv;
        snprintf(a->message, sizeof(a->message), "%s", diag->message);
    }
    if (ready == 0) {
        tdm_free(a);
        return rv;
    }
    for (uint32_t i = 0; i < ready; i++) {
        a->requests[i].received_cb = node_received_async_done;
        a->requests[i].data = a;
    }
    /* Set before they go: the commit thread may complete them at once. */
    a->remaining = ready;
    a->submitted = ready;
    int sv = node_received_submit(t, a->requests, ready);
    if (sv != 0) {
        tdm_free(a);
        tdm_diag_printf(diag, "%s", tandem_strerror(sv));
        return sv;
    }
    return 0;
}

int tdm_node_cut_after(struct tandem *t, uint64_t lsn, struct tdm_diag *diag)
{
    return node_cut(t, lsn, false, diag);
}

/* ---- queries --------------------------------------------------------------------- */

/* Reads records by LSN, keeping the last batch read and its segment file
 * open (a customer's rows lie in successive batches of one segment, mostly). */
struct node_reader {
    struct tandem *t;
    struct tdm_batch_header header; /* Of the cached batch. */
    uint8_t *raw;                   /* Cached batch body, or NULL. */
    int fd;                         /* Segment fd_segment_lsn open for reading, or -1. */
    uint64_t fd_segment_lsn;
};

static void node_reader_init(struct node_reader *r, struct tandem *t)
{
    *r = (struct node_reader){.t = t, .fd = -1};
}

/* Forget the cached batch. */
static void node_reader_drop(struct node_reader *r)
{
    tdm_free(r->raw);
    r->raw = NULL;
}

static void node_reader_deinit(struct node_reader *r)
{
    node_reader_drop(r);
    if (r->fd >= 0) {
        r->t->fs->close(r->t->fs, r->fd);
        r->fd = -1;
    }
}

/* An LSN the index does not hold may lie in a range that recovery reported
 * damaged (past the log's verified end): its read fails with TANDEM_ECORRUPT
 * like any read of a damaged range (docs/FORMAT.md "Recovery"), not with
 * TANDEM_ENOTFOUND. */
static int node_read_missing(struct tandem *t, uint64_t lsn, int rv, struct tdm_diag *diag)
{
    tdm_assert(rv < 0);
    struct tandem_status status;
    tdm_log_status(&t->log, &status);
    uint32_t n = status.damaged_count < TANDEM_STATUS_DAMAGED_MAX ? status.damaged_count
                                                                  : TANDEM_STATUS_DAMAGED_MAX;
    for (uint32_t i = 0; rv == TANDEM_ENOTFOUND && i < n; i++) {
        const struct tandem_damage *d = &status.damaged[i];
        if (d->lsn_first != 0 && lsn >= d->lsn_first && lsn <= d->lsn_last) {
            return TDM_CORRUPT(diag,
                               "LSN %" PRIu64 " lies in a damaged range (segment %020" PRIu64
                               " offset %" PRIu64 "): repair it from a replica",
                               lsn, d->segment_lsn, d->offset);
        }
    }
    tdm_diag_printf(diag, "LSN %" PRIu64 ": %s", lsn, tandem_strerror(rv));
    return rv;
}

static int node_read_record(struct node_reader *r, uint64_t lsn, struct tandem_record *record,
                            struct tdm_diag *diag)
{
    if (r->raw == NULL || lsn < r->header.lsn_first || lsn > tdm_batch_lsn_last(&r->header)) {
        node_reader_drop(r);
        struct tdm_index_location location;
        int rv = tdm_index_locate(r->t->index, lsn, &location);
        if (rv != 0) {
            return node_read_missing(r->t, lsn, rv, diag);
        }
        struct tdm_log_location where = {location.segment_lsn, location.offset, location.size};
        if (r->fd >= 0 && r->fd_segment_lsn != location.segment_lsn) {
            r->t->fs->close(r->t->fs, r->fd);
            r->fd = -1;
        }
        if (r->fd < 0) {
            rv = tdm_log_segment_open(r->t->fs, r->t->log.log_dir, location.segment_lsn, &r->fd,
                                      diag);
            if (rv != 0) {
                r->fd = -1;
                tdm_diag_wrapf(diag, "read LSN %" PRIu64, lsn);
                return rv;
            }
            r->fd_segment_lsn = location.segment_lsn;
        }
        rv = tdm_log_read_batch_at(r->t->fs, r->fd, &where, &r->header, &r->raw, diag);
        if (rv != 0) {
            tdm_diag_wrapf(diag, "read LSN %" PRIu64, lsn);
            return rv;
        }
        if (r->header.lsn_first != location.lsn_first ||
            r->header.record_count != location.record_count) {
            node_reader_drop(r);
            return TDM_CORRUPT(diag, "LSN %" PRIu64 ": batch differs from the index", lsn);
        }
    }
    size_t offset = 0;
    const uint8_t *bytes = NULL;
    size_t size = 0;
    for (uint64_t i = r->header.lsn_first; i <= lsn; i++) {
        int more = tdm_batch_next(r->raw, r->header.raw_size, &offset, &bytes, &size);
        tdm_assert(more == 1);
    }
    int rv = tdm_codec_decode(bytes, size, record, diag);
    if (rv != 0) {
        tdm_diag_wrapf(diag, "LSN %" PRIu64, lsn);
    }
    return rv;
}

typedef bool (*node_filter)(const void *arg, const struct tandem_record *record);

static bool node_bytes_equal(const struct tandem_bytes *a, const char *data, size_t size)
{
    return a->size == size && (size == 0 || memcmp(a->data, data, size) == 0);
}

static int node_wait_indexed(struct tandem *t, struct tdm_diag *diag)
{
    return t->commit_started ? tdm_commit_wait_indexed(&t->commit, diag) : 0;
}

static int node_scan(struct tandem *t, struct tdm_index_scan *scan, node_filter filter,
                     const void *arg, tandem_record_cb cb, void *data, struct tdm_diag *diag)
{
    int rv = node_wait_indexed(t, diag);
    if (rv != 0) {
        return rv;
    }
    struct node_reader reader;
    node_reader_init(&reader, t);
    uint64_t lsns[NODE_SCAN_CHUNK];
    bool stop = false;
    while (!stop && rv == 0) {
        size_t count = 0;
        rv = tdm_index_scan_next(t->index, scan, lsns, NODE_SCAN_CHUNK, &count);
        for (size_t i = 0; rv == 0 && !stop && i < count; i++) {
            struct tandem_record record;
            rv = node_read_record(&reader, lsns[i], &record, diag);
            if (rv == 0 && filter(arg, &record)) {
                stop = cb(data, lsns[i], &record) != 0;
            }
        }
        if (count < NODE_SCAN_CHUNK) {
            break;
        }
    }
    node_reader_deinit(&reader);
    return rv;
}

struct node_key {
    const char *data;
    size_t size;
};

static bool node_filter_message_id(const void *arg, const struct tandem_record *record)
{
    const struct node_key *key = arg;
    return record->type == TANDEM_RECORD_MESSAGE &&
           node_bytes_equal(&record->message.message_id, key->data, key->size);
}

int tandem_get(struct tandem *t, const char *message_id, size_t message_id_size,
               tandem_record_cb cb, void *data, struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = 0;
    if (cb == NULL || message_id == NULL || message_id_size == 0 ||
        message_id_size > TANDEM_MESSAGE_ID_SIZE_MAX) {
        /* Records without a Message-ID are not indexed by it. */
        tdm_diag_printf(&d, "message_id: %zu bytes, must be 1 to %d", message_id_size,
                        TANDEM_MESSAGE_ID_SIZE_MAX);
        rv = TANDEM_EINVALID;
    } else {
        struct tdm_index_scan scan;
        tdm_index_scan_init(&scan, TDM_INDEX_SCAN_MESSAGE_ID);
        scan.key = message_id;
        scan.key_size = message_id_size;
        struct node_key key = {message_id, message_id_size};
        rv = node_scan(t, &scan, node_filter_message_id, &key, cb, data, &d);
    }
    node_diag_copy(diag, &d);
    return rv;
}

void tandem_query_init(struct tandem_query *query, uint32_t customer_id)
{
    memset(query, 0, sizeof(*query));
    query->customer_id = customer_id;
    query->since_ns = 0;
    query->until_ns = INT64_MAX;
}

static bool node_filter_query(const void *arg, const struct tandem_record *record)
{
    const struct tandem_query *q = arg;
    if (record->type != TANDEM_RECORD_MESSAGE) {
        return false;
    }
    const struct tandem_message *m = &record->message;
    if (m->customer_id != q->customer_id || m->time_ns < q->since_ns || m->time_ns >= q->until_ns) {
        return false;
    }
    if (q->recipient.size > 0 &&
        !node_bytes_equal(&m->recipient, q->recipient.data, q->recipient.size)) {
        return false;
    }
    if (q->sender_empty && m->sender.size != 0) {
        return false;
    }
    if (q->sender.size > 0 && !node_bytes_equal(&m->sender, q->sender.data, q->sender.size)) {
        return false;
    }
    return true;
}

int tandem_query(struct tandem *t, const struct tandem_query *query, tandem_record_cb cb,
                 void *data, struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = 0;
    if (cb == NULL || query == NULL || query->since_ns < 0 ||
        query->recipient.size > TANDEM_ADDRESS_SIZE_MAX ||
        query->sender.size > TANDEM_ADDRESS_SIZE_MAX ||
        (query->sender_empty && query->sender.size > 0)) {
        tdm_diag_printf(&d, "bad query: since must be >= 0, addresses at most %d bytes",
                        TANDEM_ADDRESS_SIZE_MAX);
        rv = TANDEM_EINVALID;
    } else if (query->until_ns > query->since_ns) {
        struct tdm_index_scan scan;
        tdm_index_scan_init(&scan, TDM_INDEX_SCAN_CUSTOMER_TIME);
        if (query->recipient.size > 0) {
            tdm_index_scan_init(&scan, TDM_INDEX_SCAN_RECIPIENT);
            scan.key = query->recipient.data;
            scan.key_size = query->recipient.size;
        } else if (query->sender.size > 0 || query->sender_empty) {
            tdm_index_scan_init(&scan, TDM_INDEX_SCAN_SENDER);
            scan.key = query->sender.size > 0 ? query->sender.data : "";
            scan.key_size = query->sender.size;
        }
        scan.customer_id = query->customer_id;
        scan.since_ns = query->since_ns;
        scan.until_ns = query->until_ns;
        rv = node_scan(t, &scan, node_filter_query, query, cb, data, &d);
    }
    node_diag_copy(diag, &d);
    return rv;
}

static bool node_filter_customer(const void *arg, const struct tandem_record *record)
{
    const uint32_t *customer_id = arg;
    return record->type == TANDEM_RECORD_CUSTOMER && record->customer.customer_id == *customer_id;
}

struct node_customer_key {
    enum tandem_customer_key kind;
    const char *data;
    size_t size;
};

static bool node_filter_customer_key(const void *arg, const struct tandem_record *record)
{
    const struct node_customer_key *key = arg;
    if (record->type != TANDEM_RECORD_CUSTOMER) {
        return false;
    }
    const struct tandem_bytes *field = key->kind == TANDEM_CUSTOMER_KEY_USERNAME
                                           ? &record->customer.username
                                           : &record->customer.email;
    return node_bytes_equal(field, key->data, key->size);
}

/* Deliver the one record at lsn through filter and cb. */
static int node_deliver(struct tandem *t, uint64_t lsn, node_filter filter, const void *arg,
                        tandem_record_cb cb, void *data, struct tdm_diag *diag)
{
    struct node_reader reader;
    node_reader_init(&reader, t);
    struct tandem_record record;
    int rv = node_read_record(&reader, lsn, &record, diag);
    if (rv == 0 && (filter == NULL || filter(arg, &record))) {
        (void)cb(data, lsn, &record);
    }
    node_reader_deinit(&reader);
    return rv;
}

int tandem_customer_get(struct tandem *t, uint32_t customer_id, tandem_record_cb cb, void *data,
                        struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = TANDEM_EINVALID;
    if (cb == NULL) {
        tdm_diag_printf(&d, "cb must not be NULL");
    } else {
        rv = node_wait_indexed(t, &d);
        uint64_t lsn = 0;
        if (rv == 0) {
            rv = tdm_index_customer(t->index, customer_id, &lsn);
        }
        if (rv == 0) {
            rv = node_deliver(t, lsn, node_filter_customer, &customer_id, cb, data, &d);
        } else if (rv == TANDEM_ENOTFOUND) {
            rv = 0;
        }
    }
    node_diag_copy(diag, &d);
    return rv;
}

int tandem_customer_find(struct tandem *t, enum tandem_customer_key key, const char *value,
                         size_t value_size, tandem_record_cb cb, void *data,
                         struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = 0;
    size_t limit =
        key == TANDEM_CUSTOMER_KEY_USERNAME ? TANDEM_USERNAME_SIZE_MAX : TANDEM_ADDRESS_SIZE_MAX;
    if (cb == NULL || (value == NULL && value_size > 0) || value_size > limit ||
        (key != TANDEM_CUSTOMER_KEY_USERNAME && key != TANDEM_CUSTOMER_KEY_EMAIL)) {
        tdm_diag_printf(&d, "bad customer key or value (%zu bytes, limit %zu)", value_size, limit);
        rv = TANDEM_EINVALID;
    } else {
        struct tdm_index_scan scan;
        tdm_index_scan_init(&scan, key == TANDEM_CUSTOMER_KEY_USERNAME ? TDM_INDEX_SCAN_USERNAME
                                                                       : TDM_INDEX_SCAN_EMAIL);
        scan.key = value;
        scan.key_size = value_size;
        struct node_customer_key k = {key, value, value_size};
        rv = node_scan(t, &scan, node_filter_customer_key, &k, cb, data, &d);
    }
    node_diag_copy(diag, &d);
    return rv;
}

int tandem_read(struct tandem *t, uint64_t lsn, tandem_record_cb cb, void *data,
                struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = cb == NULL ? TANDEM_EINVALID : node_wait_indexed(t, &d);
    if (rv == 0) {
        rv = node_deliver(t, lsn, NULL, NULL, cb, data, &d);
    }
    node_diag_copy(diag, &d);
    return rv;
}

int tandem_status(struct tandem *t, struct tandem_status *status)
{
    memset(status, 0, sizeof(*status));
    tdm_log_status(&t->log, status);
    status->read_only = t->read_only;
    struct tdm_chain_hash chain;
    int rv = tdm_index_watermark(t->index, &status->index_lsn, &chain);
    return rv;
}
