/* engine/log.h: the log: segments in LSN order under DIR/log/, append with
 * fdatasync, seal, read, and recovery on open (engine/recover.c).
 * Format: docs/FORMAT.md.
 *
 * Thread: one writer thread (the commit thread, engine/commit.c) calls
 * tdm_log_append(), tdm_log_append_batch() and tdm_log_cut_after(); any thread
 * may call tdm_log_status(), tdm_log_read_batch(), tdm_log_scan(),
 * tdm_log_locate() and tdm_log_read_located(); log->mutex guards what they
 * share. */
#ifndef TDM_ENGINE_LOG_H
#define TDM_ENGINE_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <xxhash.h>
#include <zstd.h>

#include "base/error.h"
#include "batch.h"
#include "fs.h"
#include "segment.h"

#define TDM_LOG_SEGMENTS_MAX   (1u << 20)
#define TDM_LOG_DAMAGED_MAX    TANDEM_STATUS_DAMAGED_MAX
#define TDM_PROGRESS_SLOT_SIZE 64
#define TDM_LOG_TABLES_MAX     4 /* Batch tables kept: the open segment's and 3 others. */
/* A prepared segment file (options.prepare) holds segment_size plus this many
 * zero bytes, so that the batch that crosses segment_size mostly fits too. */
#define TDM_LOG_PREPARE_SLACK (1u << 20)      /* At most; segment_size / 16 for small segments. */
#define TDM_LOG_PREPARE_NAME  "next.prepared" /* In DIR/log/; not a segment name. */

/* One segment file as recovery found it. */
struct tdm_log_segment {
    uint64_t lsn_first;               /* From the file name. */
    uint64_t lsn_last;                /* Last LSN of a verified batch; lsn_first - 1 if none. */
    uint64_t size;                    /* Bytes in the file. */
    bool sealed;                      /* Has a valid footer. */
    bool damaged;                     /* Some of its bytes failed a check. */
    struct tdm_chain_hash chain_last; /* Chain hash at lsn_last. */
};

/* One batch in a batch table: 16 bytes (the memory bound of struct
 * tdm_log_table counts on it). */
struct tdm_log_entry {
    uint64_t lsn_first; /* Its last LSN is the next entry's lsn_first - 1. */
    uint32_t offset;    /* Of its header; a segment stays below 4 GiB (log.c). */
    uint32_t size;      /* Header plus body bytes. */
};

/* Where the batches of one segment are, so that tdm_log_locate() finds a batch
 * by LSN with a binary search instead of a walk. A table lists a prefix of its
 * segment: the batches back to back from the segment header up to end, in LSN
 * order; LSNs from lsn_next on are found by walking the headers from end.
 * Kept for the open segment (filled as batches are written, and by recovery
 * on open) and for up to TDM_LOG_TABLES_MAX - 1 other segments: the most
 * recently used of those sealed before it and of those a locate walked.
 * Memory: 16 bytes per batch, and a batch takes at least
 * TDM_BATCH_HEADER_SIZE + 1 bytes on disk, so a table takes at most a sixth of
 * the bytes of its segment (at most segment_size plus one batch; capacity is
 * capped there too): the tables of a log hold at most TDM_LOG_TABLES_MAX *
 * (segment_size + 9 MiB) / 6 bytes, plus one such table per locate walking a
 * sealed segment at that moment. That is 49 MiB for 64 MiB segments in
 * theory; one-record batches of ~300 bytes take ~13 MiB, group commit's larger
 * batches far less. Guarded by log->mutex. */
struct tdm_log_table {
    uint64_t segment_lsn;          /* First LSN of the segment; 0: the slot is free. */
    uint64_t lsn_next;             /* LSN after the last entry (segment_lsn if none). */
    uint64_t end;                  /* Offset after the last entry. */
    uint64_t used;                 /* log->table_clock at the last use (LRU). */
    bool frozen;                   /* Out of memory once: no more entries are added. */
    struct tdm_log_entry *entries; /* entries[0 .. count), tdm_malloc'd. */
    uint32_t count;
    uint32_t capacity;
};

/* Where one batch is: its segment file and bytes. */
struct tdm_log_location {
    uint64_t segment_lsn; /* First LSN of the segment file. */
    uint64_t offset;      /* Byte offset of the batch header. */
    uint32_t size;        /* Header plus body bytes. */
};

/* One batch as tdm_log_locate() finds it: its LSNs and where it is. */
struct tdm_log_batch {
    uint64_t lsn_first;
    uint64_t lsn_last;
    struct tdm_log_location location;
};

enum tdm_log_prepare {
    TDM_LOG_PREPARE_OFF = 0, /* Segments are created empty. */
    TDM_LOG_PREPARE_THREAD,  /* The tdm-prepare thread keeps the next one ready. */
    TDM_LOG_PREPARE_INLINE,  /* The writer prepares it itself (tests). */
};

struct tdm_log_options {
    uint64_t segment_size; /* Seal a segment once it holds this many bytes. */
    bool read_only;        /* Modify no file: a torn tail is ignored, not cut. */
    bool scrub; /* Prove every sealed segment whole even read-only: every batch (checksums,
                 * LSNs, chain hash) and the footer (engine/scrub.c). */
    /* Keep the next segment file prepared: a thread (tdm-prepare) writes
     * DIR/log/next.prepared full of zeros and fdatasyncs it once the open
     * segment is half full (a new log's thread at open: for the first
     * segment), and the writer renames it into place when it
     * needs a segment. Appends into written zeros change no file metadata
     * (size, block allocation), so their fdatasync needs no journal commit
     * (PostgreSQL's WAL segments; docs/FORMAT.md "Prepared segments").
     * TDM_LOG_PREPARE_INLINE does the same in the writer's thread, at the
     * same moment: deterministic, for fault tests. Ignored read-only. */
    enum tdm_log_prepare prepare;
};

struct tdm_log {
    struct tdm_fs *fs;                  /* Borrowed until close. */
    char log_dir[TDM_PATH_SIZE];        /* DIR/log */
    char quarantine_dir[TDM_PATH_SIZE]; /* DIR/quarantine */
    struct tdm_log_options options;
    /* Held by tdm_log_cut_after() and by a repair's check and swap
     * (engine/repair.c) for their whole run, so that a repair never renames a
     * segment over one a cut has just truncated. Taken before mutex. */
    pthread_mutex_t swap_mutex;
    pthread_mutex_t mutex; /* Guards everything below that readers see. */

    struct tdm_log_segment *segments; /* segments[0 .. segment_count), in LSN order. */
    uint32_t segment_count;
    uint32_t segment_capacity;
    uint64_t log_bytes; /* Sum of segment sizes. */

    uint64_t lsn_first;               /* First LSN in the log; 0 if empty. */
    uint64_t lsn_last;                /* Last durable LSN; 0 if empty. */
    struct tdm_chain_hash chain_last; /* Chain hash at lsn_last. */
    uint64_t epoch;                   /* Epoch of the last batch (1 on a new log). */

    int tail_fd;               /* Open segment being appended to, or -1. */
    bool tail_unsynced;        /* Batches written to tail_fd since its last fdatasync (backups). */
    uint64_t tail_offset;      /* Bytes written to it. */
    uint32_t tail_batch_count; /* Batches in it. */
    XXH3_state_t *tail_checksum; /* Running XXH3-64 of its bytes, for the footer. */
    bool tail_allocated;         /* Its file goes on past tail_offset with zeros (prepared). */
    bool tail_prepare_asked;     /* The next segment was asked of the prepare thread. */

    /* The prepare thread (options.prepare); prepare_mutex guards the flags. */
    pthread_mutex_t prepare_mutex;
    pthread_cond_t prepare_cond;
    pthread_t prepare_thread;
    bool prepare_started; /* The thread runs (joined by close). */
    bool prepare_stop;    /* Close asks it to end. */
    bool prepare_wanted;  /* The writer asks for a prepared file. */
    bool prepare_ready;   /* DIR/log/next.prepared is whole, zero and durable. */

    int progress_fd;       /* DIR/log/progress, or -1. */
    uint64_t progress_seq; /* Sequence of the last progress record. */
    uint64_t progress_lsn; /* Durable LSN recorded there when opened. */

    struct tandem_damage damaged[TDM_LOG_DAMAGED_MAX];
    uint32_t damaged_count; /* May exceed the array. */
    bool tail_damaged;      /* Damage in the open segment: no appends. */
    uint64_t quarantine_bytes;
    uint32_t quarantine_count;

    int failed_code; /* Sticky: 0 or the error that stopped writes. */
    char failed_message[TDM_DIAG_SIZE];

    /* Batch tables (struct tdm_log_table); guarded by mutex. */
    struct tdm_log_table tables[TDM_LOG_TABLES_MAX];
    uint64_t table_clock; /* Counts table uses (LRU). */
    uint64_t cut_count;   /* Cuts so far: a table walked across a cut is not kept. */

    ZSTD_CCtx *cctx; /* Writer's compression context. */
    uint8_t *buffer; /* Writer's batch buffer. */
    size_t buffer_size;
};

/* Open the log of node directory dir and recover it (engine/recover.c): check
 * the tail batch by batch, cut a torn tail into quarantine (unless read-only),
 * record damage. Returns 0, or TANDEM_EFORMAT (no log directory), or a
 * negative errno / TANDEM_ECORRUPT with diag when recovery cannot proceed
 * safely. */
int tdm_log_open(struct tdm_log *log, struct tdm_fs *fs, const char *dir,
                 const struct tdm_log_options *options, struct tdm_diag *diag);
void tdm_log_close(struct tdm_log *log);

/* Append one batch of record_count entries (raw: (u32 size, record) pairs),
 * write it and fdatasync it. On success header receives the batch's header and
 * location its place. Returns 0, TANDEM_EFAILED (sticky failure: this or an
 * earlier write or fdatasync failed), TANDEM_EDAMAGED (the open segment is
 * damaged) or TANDEM_EREADONLY. A failed write or fdatasync makes the log failed
 * and is never retried. Thread: writer only. */
int tdm_log_append(struct tdm_log *log, const uint8_t *raw, size_t raw_size, uint32_t record_count,
                   int64_t time_ns, struct tdm_batch_header *header,
                   struct tdm_log_location *location, struct tdm_diag *diag);

/* tdm_log_append() without the fdatasync, for a primary that ships a batch to
 * its backups while its own fdatasync runs (docs/PROTOCOL.md §5.4): the batch
 * is written and readable, not durable, until tdm_log_sync(); nothing may
 * report it durable before that returned 0. *bytes receives the batch as
 * written (location->size bytes: header and compressed body), valid until the
 * writer's next append. Thread: writer only. */
int tdm_log_append_unsynced(struct tdm_log *log, const uint8_t *raw, size_t raw_size,
                            uint32_t record_count, int64_t time_ns, struct tdm_batch_header *header,
                            struct tdm_log_location *location, const uint8_t **bytes,
                            struct tdm_diag *diag);

/* Append a batch built elsewhere (by the primary), exactly as received:
 * bytes are untrusted, so the header, the body checksum, the decompression,
 * the LSN (must follow lsn_last), the epoch (not older than the log's) and the
 * chain hash (must follow chain_last) are all checked before a byte is
 * written. Returns 0, TANDEM_ECORRUPT, TANDEM_EINVALID (a gap or overlap),
 * TANDEM_ESTALEEPOCH, or tdm_log_append()'s codes. Thread: writer only. */
int tdm_log_append_batch(struct tdm_log *log, const uint8_t *bytes, size_t size,
                         struct tdm_batch_header *header, struct tdm_log_location *location,
                         struct tdm_diag *diag);

/* tdm_log_append_batch() without the fdatasync: the batch is written and
 * readable, not durable, until tdm_log_sync(). A backup appends every batch of
 * what it received this way and syncs once (group commit on the backup side):
 * it must not report any of them durable before tdm_log_sync() returned 0. */
int tdm_log_append_batch_unsynced(struct tdm_log *log, const uint8_t *bytes, size_t size,
                                  struct tdm_batch_header *header,
                                  struct tdm_log_location *location, struct tdm_diag *diag);

/* tdm_log_append_batch_unsynced() for bytes whose body this process has
 * already proven: tdm_batch_body_decode() (checksum, decompression) ran on
 * these same bytes, as the node does for every received batch before it
 * queues it for the commit thread (engine/node.c node_received_decode). The
 * header and every other check are made again; the body's checksum and
 * decompression, which cost more than the write, are not. Thread: writer only. */
int tdm_log_append_batch_proven_unsynced(struct tdm_log *log, const uint8_t *bytes, size_t size,
                                         struct tdm_batch_header *header,
                                         struct tdm_log_location *location, struct tdm_diag *diag);

/* Make every batch written unsynced durable: one fdatasync of the open segment,
 * then the progress record. Returns 0 at once if there is nothing to sync, or
 * the log's sticky failure; a failed fdatasync fails the log for good. */
int tdm_log_sync(struct tdm_log *log, struct tdm_diag *diag);

/* Seal the open segment (footer, fdatasync). Called by append when the
 * segment is full and by close. Thread: writer only. */
int tdm_log_seal(struct tdm_log *log, struct tdm_diag *diag);

/* Read and verify the batch at location of the log in log_dir, decompressing
 * its body into *raw (tdm_malloc'd; the caller frees). Works without a
 * struct tdm_log, for read-only handles. Returns 0 or TANDEM_ECORRUPT / errno
 * with diag. */
int tdm_log_read_batch(struct tdm_fs *fs, const char *log_dir,
                       const struct tdm_log_location *location, struct tdm_batch_header *header,
                       uint8_t **raw, struct tdm_diag *diag);

/* The same in two steps, for a reader of many batches: open segment
 * segment_lsn of the log in log_dir for reading (*fd; the caller closes it
 * with fs->close), then read batches from it (location->segment_lsn names
 * it). Same returns. */
int tdm_log_segment_open(struct tdm_fs *fs, const char *log_dir, uint64_t segment_lsn, int *fd,
                         struct tdm_diag *diag);
int tdm_log_read_batch_at(struct tdm_fs *fs, int fd, const struct tdm_log_location *location,
                          struct tdm_batch_header *header, uint8_t **raw, struct tdm_diag *diag);

/* Call cb for every verified batch with lsn_last >= lsn_from, in LSN order;
 * damaged batches are skipped (recovery reported them). raw is valid during
 * the call only. A non-zero return of cb stops the scan and is returned. */
typedef int (*tdm_log_scan_cb)(void *data, const struct tdm_batch_header *header,
                               const struct tdm_log_location *location, const uint8_t *raw);
int tdm_log_scan(struct tdm_log *log, uint64_t lsn_from, tdm_log_scan_cb cb, void *data,
                 struct tdm_diag *diag);

/* Locate the whole batches that hold LSNs lsn_first .. lsn_last (lsn_last is
 * clamped to the log's end), in LSN order, into out[0 .. *count): out[0] holds
 * lsn_first and each batch follows the one before; batches of one segment are
 * back to back in it. At most capacity (>= 1) batches: call again from
 * out[*count - 1].lsn_last + 1 for the rest. Cost: a binary search in the
 * segment's batch table (struct tdm_log_table) when it has one, else one walk
 * of the segment's batch headers (each header's checksum is verified; bodies
 * are skipped: not read, not checksummed, not decompressed), whose table is
 * then kept if the segment is sealed. So a batch's body is not proven: read
 * it with tdm_log_read_located(). No I/O happens under log->mutex.
 * Returns 0 (*count >= 1), TANDEM_ENOTFOUND (lsn_first is not in the log),
 * TANDEM_ECORRUPT (a header on the way does not verify, or the LSN lies in a
 * damaged range), or an I/O error, with diag. Thread-safe. */
int tdm_log_locate(struct tdm_log *log, uint64_t lsn_first, uint64_t lsn_last,
                   struct tdm_log_batch *out, uint32_t capacity, uint32_t *count,
                   struct tdm_diag *diag);

/* Read the bytes of located batches batches[0 .. count) (tdm_log_locate())
 * into buffer, back to back (the caller sizes it: the sum of their sizes), with
 * one pread per run of batches that are back to back in one segment, and check
 * each: header checksum, its LSNs and size as located, body checksum (the body
 * is not decompressed). headers[0 .. count) receives the decoded headers.
 * Returns 0, TANDEM_ECORRUPT, or an I/O error, with diag. Thread-safe. */
int tdm_log_read_located(struct tdm_log *log, const struct tdm_log_batch *batches, uint32_t count,
                         uint8_t *buffer, struct tdm_batch_header *headers, struct tdm_diag *diag);

/* Copy the log's part of a status. Thread-safe. */
void tdm_log_status(struct tdm_log *log, struct tandem_status *status);

/* The sticky failure code (0 if none), with its message in diag. Thread-safe. */
int tdm_log_failed(struct tdm_log *log, struct tdm_diag *diag);

/* Make the log failed (sticky) with code and a message. Thread: writer. */
void tdm_log_fail(struct tdm_log *log, int code, const char *message);

/* Move every batch after lsn into DIR/quarantine/ (the divergent tail a
 * backup cuts at the fork point). lsn must end a batch (else TANDEM_EINVALID)
 * and not lie before the log's first LSN - 1. Order, so that a crash at any
 * point leaves a log that recovery accepts: 1. copy the bytes after the cut
 * into quarantine, durably; 2. lower the progress record to lsn, durably;
 * 3. truncate the segment holding lsn + 1 and move later segments whole into
 * quarantine; 4. fsync the directories. A segment that was sealed is open again
 * afterwards. On success log->lsn_last, log->epoch (of the last batch kept) and
 * log->chain_last describe the log after the cut. Returns 0, TANDEM_EINVALID,
 * TANDEM_EREADONLY, TANDEM_EFAILED, or an I/O error, which also makes the log
 * failed. Thread: writer only. */
int tdm_log_cut_after(struct tdm_log *log, uint64_t lsn, struct tdm_diag *diag);

/* Prepare DIR/log/next.prepared now, in the calling thread: create it or
 * take over what a stopped run left, zero its header bytes, write zeros up to
 * segment_size + TDM_LOG_PREPARE_SLACK and fdatasync; then it is ready for
 * the writer's next segment (prepare_ready). The prepare thread calls it;
 * tests call it directly. Between writes of 1 MiB it returns -ECANCELED once
 * close asked the thread to stop. On failure the file is removed (it only ever held zeros and a
 * header that no batch followed) and segments are created empty, as without options.prepare.
 * Returns 0 or a negative errno. */
int tdm_log_prepare_file(struct tdm_log *log);

/* Write the progress record (both slots) for lsn and fdatasync it. */
int tdm_log_progress_sync(struct tdm_log *log, uint64_t lsn, const struct tdm_chain_hash *chain);

/* The path in DIR/quarantine/ for a file to be named name: name itself, or,
 * if that is taken, name.2, name.3, ... (TDM_LOG_QUARANTINE_TRIES at most):
 * quarantine files are never overwritten. Returns 0, -EEXIST (every name
 * taken), or an error of fs->open(). Internal to recover.c and repair.c. */
#define TDM_LOG_QUARANTINE_TRIES 1000
int tdm_log_quarantine_path(struct tdm_log *log, const char *name, char *path);

/* Internal to log.c and recover.c. */
int tdm_log_recover(struct tdm_log *log, struct tdm_diag *diag);
void tdm_log_damage_add(struct tdm_log *log, const struct tandem_damage *damage);
int tdm_log_segment_push(struct tdm_log *log, const struct tdm_log_segment *segment);
int tdm_progress_read(struct tdm_log *log);
/* Batch tables (log.c). tdm_log_table_note: batch lsn_first .. lsn_last at
 * offset of segment segment_lsn was written or verified (recovery); takes the
 * mutex. tdm_log_table_add: append to a table nobody else sees yet (or under
 * the mutex); freezes it instead when out of memory or out of order.
 * tdm_log_tables_cut_locked: after a cut that kept segments up to
 * segment_lsn, whose batches are now exactly those of built (taken over),
 * drop the tables of later segments; under the mutex. */
void tdm_log_table_note(struct tdm_log *log, uint64_t segment_lsn, uint64_t lsn_first,
                        uint64_t lsn_last, uint64_t offset, uint32_t size);
void tdm_log_table_add(struct tdm_log *log, struct tdm_log_table *table, uint64_t lsn_first,
                       uint64_t lsn_last, uint64_t offset, uint32_t size);
void tdm_log_tables_cut_locked(struct tdm_log *log, struct tdm_log_table *built);

#endif
