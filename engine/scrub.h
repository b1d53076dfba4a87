/* engine/scrub.h: the scrubber: re-read every segment of a node directory from
 * the medium (not the page cache), at a throttled rate, and recompute every
 * checksum, the chain hash and every footer (DESIGN "Verification"). Damage is
 * reported as recovery reports it (struct tandem_damage), because a pass IS
 * recovery: a read-only tdm_log_open() in scrub mode (engine/recover.c) over a
 * file-system shim that drops cached pages and throttles reads.
 *
 * One pass at a time per struct tdm_scrub. tandem_verify() runs one pass now,
 * unthrottled; a future background thread would run passes in a loop at
 * options.rate_bytes_per_second, read tdm_scrub_progress() for tandem_status,
 * and stop with tdm_scrub_cancel().
 *
 * Thread: tdm_scrub_pass() on one thread at a time; tdm_scrub_progress() and
 * tdm_scrub_cancel() from any thread. */
#ifndef TDM_ENGINE_SCRUB_H
#define TDM_ENGINE_SCRUB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "fs.h"

/* 20 MB/s: 1.7 TB a day, so a full pass over any store of that size or less
 * completes at least daily (issue 5), while it costs a disk a small share of
 * its sequential rate. */
#define TDM_SCRUB_RATE_DEFAULT (20ull * 1000 * 1000)
/* Bytes/s; the throttle's arithmetic stays within u64 below it. */
#define TDM_SCRUB_RATE_MAX        (10ull * 1000 * 1000 * 1000)
#define TDM_SCRUB_SLEEP_NS_MAX    (100ull * 1000 * 1000) /* A cancel waits no longer. */
#define TDM_SCRUB_SEGMENT_FDS_MAX 4                      /* Segments open at once in a pass. */

/* Time, injectable so that tests count sleeps instead of timing them. */
struct tdm_scrub_clock {
    int64_t (*now_ns)(void *data);             /* Monotonic: for the throttle. */
    int64_t (*wall_ns)(void *data);            /* UTC since 1970: for progress. */
    void (*sleep_ns)(void *data, uint64_t ns); /* Sleep about ns (<= TDM_SCRUB_SLEEP_NS_MAX). */
    void *data;                                /* Passed to each; borrowed. */
};

struct tdm_scrub_options {
    uint64_t rate_bytes_per_second; /* 0: unthrottled; else <= TDM_SCRUB_RATE_MAX. */
    struct tdm_scrub_clock clock;   /* Defaults: clock_gettime and nanosleep. */
    const atomic_bool *stop; /* Borrowed; once true, a pass ends as on a cancel. NULL: none. */
};

/* Progress of the pass under way and of the last complete one. */
struct tdm_scrub_progress {
    bool running;                /* A pass is under way. */
    uint64_t pass_bytes;         /* Segment bytes read by the pass under way (or the last). */
    int64_t pass_start_ns;       /* UTC start of that pass; 0 before the first. */
    int64_t last_pass_end_ns;    /* UTC end of the last complete pass; 0 if none. */
    uint64_t last_pass_bytes;    /* Segment bytes read by that pass. */
    uint64_t pass_count;         /* Complete passes since open. */
    uint32_t last_damaged_count; /* Damaged ranges the last complete pass found. */
    uint64_t segment_lsn;        /* First LSN of the segment being read; 0: none. */
};

/* What one pass found. */
struct tdm_scrub_report {
    uint32_t segment_count; /* Segment files checked, sealed and open. */
    uint32_t sealed_count;  /* Of which sealed. */
    uint64_t segment_bytes; /* Bytes in those files. */
    uint64_t read_bytes;    /* Segment bytes read from the medium. */
    uint64_t lsn_first;     /* LSN range the log holds; 0 if empty. */
    uint64_t lsn_last;
    uint8_t chain_hash[16]; /* Chain hash at lsn_last (zeros if empty). */
    uint64_t sleep_count;   /* Throttle sleeps. */
    uint64_t sleep_ns;      /* Their total. */
    uint32_t damaged_count; /* Damaged ranges (may exceed the array). */
    struct tandem_damage damaged[TANDEM_STATUS_DAMAGED_MAX];
};

/* The scrubber of one node directory. The caller owns the storage; it must
 * not move while a pass runs. Fields are private to scrub.c. */
struct tdm_scrub {
    struct tdm_fs base; /* MUST stay first: the shim a pass reads through. */
    struct tdm_fs *fs;  /* Borrowed until close. */
    char dir[TDM_PATH_SIZE];
    struct tdm_scrub_options options;
    atomic_bool cancel;    /* Set by tdm_scrub_cancel(); cleared when a pass starts. */
    pthread_mutex_t mutex; /* Guards progress. */
    struct tdm_scrub_progress progress;
    /* Pass thread only: */
    int segment_fds[TDM_SCRUB_SEGMENT_FDS_MAX]; /* -1: free. */
    int64_t throttle_start_ns;
    uint64_t read_bytes;
    uint64_t sleep_count;
    uint64_t sleep_ns;
};

/* Defaults: TDM_SCRUB_RATE_DEFAULT and the real clock. */
void tdm_scrub_options_init(struct tdm_scrub_options *options);

/* Prepare scrub for the node directory dir over fs (borrowed until close).
 * Reads nothing yet. Returns 0, or TANDEM_EINVALID (rate above
 * TDM_SCRUB_RATE_MAX, a clock without all its functions) or -ENAMETOOLONG
 * with diag. */
int tdm_scrub_open(struct tdm_scrub *scrub, struct tdm_fs *fs, const char *dir,
                   const struct tdm_scrub_options *options, struct tdm_diag *diag);
void tdm_scrub_close(struct tdm_scrub *scrub);

/* Run one full pass: every segment file of dir/log, sealed and open, is
 * re-read after its cached pages were dropped (fs->advise_dontneed), at most
 * at the configured rate, and verified: segment header, every batch (header
 * and body checksums, LSN order, chain hash across batches and segments,
 * decompression), the footer (data checksum, last LSN, last chain hash). A
 * torn tail of the open segment is not damage (recovery's rule) and nothing
 * is modified. Returns 0 and report (damage is a result, not an error), or
 * TANDEM_ECANCELED (tdm_scrub_cancel()), TANDEM_EFORMAT (no log), or an I/O
 * error, with diag. */
int tdm_scrub_pass(struct tdm_scrub *scrub, struct tdm_scrub_report *report, struct tdm_diag *diag);

/* Ask the pass under way (if any) to stop at its next read or sleep. Thread-safe. */
void tdm_scrub_cancel(struct tdm_scrub *scrub);

/* Copy the progress. Thread-safe. */
void tdm_scrub_progress(struct tdm_scrub *scrub, struct tdm_scrub_progress *progress);

#endif
