/* engine/index.h: the LMDB index under DIR/index/, derived state rebuilt from the
 * log. Format: docs/FORMAT.md "Index".
 *
 * Named databases:
 *   meta          "watermark" -> (u64 lsn, 16-byte chain hash at lsn), "version" -> u32
 *   batch         u64be lsn_first -> (u64 segment_lsn, u64 offset, u32 size, u32 record_count)
 *   message_id    key(message_id) -> dup u64be lsn
 *   customer_time u32be customer, u64be time_ns, u64be lsn -> empty
 *   recipient     u32be customer, address -> dup (u64be time_ns, u64be lsn)
 *   sender        u32be customer, address -> dup (u64be time_ns, u64be lsn)
 *   customer      u32be customer -> u64be lsn of the current customer record
 *   username      key(username) -> dup u32be customer
 *   email         key(email) -> dup u32be customer
 * Keys longer than LMDB's 511-byte limit are a prefix plus an XXH3-128 hash, so
 * a lookup may return false candidates: callers compare the record's field.
 *
 * Thread-safety: one writer thread at a time calls tdm_index_apply() /
 * tdm_index_clear(); any thread may query at any time. Every LMDB transaction
 * begins and ends inside one call (STYLE B1.5). Read-only handles open the
 * environment with MDB_RDONLY and may live in another process. */
#ifndef TDM_ENGINE_INDEX_H
#define TDM_ENGINE_INDEX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "batch.h"

struct tdm_index;

/* Where a batch lives in the log. */
struct tdm_index_location {
    uint64_t lsn_first;    /* First LSN of the batch. */
    uint32_t record_count; /* Records in the batch. */
    uint64_t segment_lsn;  /* First LSN of the segment file holding it. */
    uint64_t offset;       /* Byte offset of the batch header in that file. */
    uint32_t size;         /* Header plus body bytes. */
};

/* One durable batch to index: its location and its decoded records, which
 * hold LSNs location.lsn_first .. + record_count - 1 in order. */
struct tdm_index_batch {
    struct tdm_index_location location;
    struct tdm_chain_hash chain_hash;    /* Chain hash at the batch's last LSN. */
    const struct tandem_record *records; /* record_count records, borrowed. */
};

/* Open (creating if needed and not read_only) the index in node_dir/index.
 * Returns 0, TANDEM_EFORMAT (version too new), or an LMDB/errno failure with
 * diag. A read-only open of a missing index returns -ENOENT. */
int tdm_index_open(const char *node_dir, bool read_only, struct tdm_index **out,
                   struct tdm_diag *diag);
void tdm_index_close(struct tdm_index *index);

/* tdm_index_open() of the environment in node_dir/name instead of
 * node_dir/index: a scratch index (tandem_verify() rebuilds one in
 * DIR/index.verify to compare with DIR/index). */
int tdm_index_open_at(const char *node_dir, const char *name, bool read_only,
                      struct tdm_index **out, struct tdm_diag *diag);

/* Remove the environment node_dir/name (its two LMDB files and the
 * directory); a missing one is not an error. No handle on it may be open in
 * this process. Returns 0 or a negative errno with diag. */
int tdm_index_remove_at(const char *node_dir, const char *name, struct tdm_diag *diag);

/* Unlink the files of the node's own index, DIR/index/ (through the link of
 * an index kept elsewhere, which stays, as does the directory), so that the
 * next tdm_index_open() creates an empty one. Only for an index that cannot
 * be opened: it is derived state, rebuilt from the log. Returns 0 or -errno
 * with diag. */
int tdm_index_discard(const char *node_dir, struct tdm_diag *diag);

/* Compare every named database of index with those of reference, entry by
 * entry, duplicates included, each in one read transaction. Returns 0 and
 * *equal; when they differ, difference (if not NULL) receives the first
 * database that does and the entry's position. Or an LMDB failure as
 * tdm_index_open() maps them. The two must be different environments. */
int tdm_index_compare(struct tdm_index *index, struct tdm_index *reference, bool *equal,
                      char *difference, size_t difference_size, struct tdm_diag *diag);

/* tdm_index_compare() at a consistent point of an index that another thread
 * writes: the comparison reads index in one LMDB read snapshot and runs only
 * if that snapshot's watermark is lsn (*at set); otherwise it returns 0 with
 * *at false and *equal untouched (the writer moved on: fill reference up to
 * the new watermark and try again). Once *stop (if not NULL) is true, the
 * walk ends within TDM_INDEX_COMPARE_STOP_ENTRIES entries with TANDEM_ECANCELED. */
int tdm_index_compare_at(struct tdm_index *index, struct tdm_index *reference, uint64_t lsn,
                         const atomic_bool *stop, bool *at, bool *equal, char *difference,
                         size_t difference_size, struct tdm_diag *diag);

#define TDM_INDEX_COMPARE_STOP_ENTRIES 4096 /* Entries walked between looks at *stop. */

/* The LSN the index is current to (0 when empty) and the chain hash there. */
int tdm_index_watermark(struct tdm_index *index, uint64_t *lsn, struct tdm_chain_hash *chain);

/* Index count batches in one transaction and move the watermark to the last
 * one's last LSN. Batches must follow the watermark in LSN order (a gap is
 * allowed only where the log is damaged; the caller passes batches in order).
 * Applying a customer record replaces the customer's previous record and its
 * username and email entries. */
int tdm_index_apply(struct tdm_index *index, const struct tdm_index_batch *batches, size_t count,
                    struct tdm_diag *diag);

/* Supplies tdm_index_apply_stream() with its next chunk: returns how many
 * batches *batches holds (valid until the next call), each following the
 * last one supplied, or 0 to end the transaction there. It may block. */
typedef size_t (*tdm_index_next_cb)(void *data, const struct tdm_index_batch **batches);

/* tdm_index_apply() over chunks supplied by next, all in one transaction
 * that this call begins and commits (none if the first call returns 0):
 * the index thread applies batches as they come and commits once per
 * interval, so that each page a commit rewrites takes many records. On
 * success *lsn_last receives the watermark committed (0 if nothing was
 * applied). On failure nothing of the call is committed. */
int tdm_index_apply_stream(struct tdm_index *index, tdm_index_next_cb next, void *data,
                           uint64_t *lsn_last, struct tdm_diag *diag);

/* Empty every database and reset the watermark to 0 (for a rebuild). */
int tdm_index_clear(struct tdm_index *index, struct tdm_diag *diag);

/* Flush the environment to disk (mdb_env_sync). */
int tdm_index_sync(struct tdm_index *index);

/* The batch holding lsn. Returns TANDEM_ENOTFOUND if no indexed batch does. */
int tdm_index_locate(struct tdm_index *index, uint64_t lsn, struct tdm_index_location *location);

/* A resumable scan: fill lsns with up to lsn_max LSNs and set *lsn_count; a
 * count below lsn_max means the scan is done. The scan struct carries the
 * position between calls, so no transaction is held between them. */
enum tdm_index_scan_kind {
    TDM_INDEX_SCAN_MESSAGE_ID = 1, /* key: message_id bytes; LSN order */
    TDM_INDEX_SCAN_CUSTOMER_TIME,  /* customer_id, [since, until); time order */
    TDM_INDEX_SCAN_RECIPIENT,      /* customer_id, key: address, [since, until); time order */
    TDM_INDEX_SCAN_SENDER,         /* customer_id, key: address, [since, until); time order */
    TDM_INDEX_SCAN_USERNAME,       /* key: username; yields customer records' LSNs */
    TDM_INDEX_SCAN_EMAIL,          /* key: email; yields customer records' LSNs */
};

#define TDM_INDEX_KEY_SIZE_MAX 1024

struct tdm_index_scan {
    enum tdm_index_scan_kind kind;
    uint32_t customer_id;
    int64_t since_ns;
    int64_t until_ns;
    const char *key; /* Borrowed for the scan's life. */
    size_t key_size;
    /* Position: internal. */
    bool started;
    bool done;
    uint8_t resume[TDM_INDEX_KEY_SIZE_MAX];
    size_t resume_size;
};

void tdm_index_scan_init(struct tdm_index_scan *scan, enum tdm_index_scan_kind kind);
int tdm_index_scan_next(struct tdm_index *index, struct tdm_index_scan *scan, uint64_t *lsns,
                        size_t lsn_max, size_t *lsn_count);

/* The LSN of customer_id's current record, or TANDEM_ENOTFOUND. */
int tdm_index_customer(struct tdm_index *index, uint32_t customer_id, uint64_t *lsn);

#endif
