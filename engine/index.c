/* engine/index.c: the LMDB index under DIR/index/, derived state that a full
 * rebuild from the log must reproduce exactly (DESIGN "The log").
 *
 * Format (docs/FORMAT.md "Index"). Every integer is big-endian, so that keys
 * and duplicate values sort by number under LMDB's default memcmp order.
 *
 *   database       flags     key                                 value
 *   meta           -         "version"                           u32 version (2)
 *                            "watermark"                         u64 lsn, 16-byte chain hash
 *   batch          -         u64 lsn_first                       u64 segment_lsn, u64 offset,
 *                                                                u32 size, u32 record_count
 *   message_id     DUPSORT   field(message_id)                   u64 lsn
 *   customer_time  -         u32 customer, u64 time_ns, u64 lsn  empty
 *   recipient      DUPSORT   u32 customer, field(recipient)      u64 time_ns, u64 lsn
 *   sender         DUPSORT   u32 customer, field(sender)         u64 time_ns, u64 lsn
 *   customer       -         u32 customer                        u64 lsn, u16 n, n bytes of
 *                                                                field(username), u16 m,
 *                                                                m bytes of field(email)
 *   username       DUPSORT   field(username)                     u32 customer
 *   email          DUPSORT   field(email)                        u32 customer
 *
 * field(x) is x itself when x is at most 16 bytes, else the 16-byte canonical
 * (big-endian) XXH3-128 of x: short keys keep the B-trees small (version 1 kept
 * up to 400 bytes of each field, and took a third more pages). Two fields may
 * share a key (a 16-byte field may even equal the hash of a longer one), so a
 * lookup may return false candidates and callers compare the record's field.
 * A writer that opens an index of version 1 empties it and rebuilds it from
 * the log; a reader refuses it (TANDEM_EFORMAT).
 * An empty message_id, username or email is not indexed: LMDB keys cannot be
 * empty, and nobody looks a record up by nothing. An empty sender (a bounce) is
 * indexed under the 4-byte key of its customer alone.
 * The customer value keeps the username and email keys of the customer's
 * current record, so that a newer record can delete their entries without
 * reading the log.
 * time_ns is stored as its u64 bit pattern: valid records have time_ns >= 0,
 * so the order is numeric; a negative time (an invalid record) sorts after
 * every valid one, where no [since, until) window reaches it.
 *
 * Happy path:
 * 1. tdm_index_open() creates DIR/index/ (writer only), opens the environment
 *    (writer: MDB_NOTLS | MDB_NOMETASYNC; reader: MDB_RDONLY | MDB_NOTLS) with
 *    a 4 TiB map (address space, not disk: the file grows with its pages),
 *    opens every named database in one transaction, and checks the version
 *    (the writer stores 2 in a new index).
 * 2. tdm_index_apply() checks that the batches follow the watermark, then in
 *    one write transaction stores each batch's location and each customer
 *    record's entries in LSN order (a customer record first deletes the
 *    username and email entries of the record it replaces), the message
 *    records' entries sorted by database and key prefix (index_entries_sort), and
 *    the new watermark.
 * 3. Every query (watermark, locate, customer, scan) runs in its own read
 *    transaction, begun and ended inside the call (STYLE B1.5).
 * 4. tdm_index_scan_next() positions after the last entry it returned (kept
 *    in scan->resume: the duplicate value, or the key for customer_time),
 *    collects up to lsn_max LSNs, remembers the new position and ends the
 *    transaction. It peeks one entry further, so a scan that ends exactly at
 *    lsn_max is marked done at once.
 *
 * Failure modes:
 * - An LMDB call fails: a positive errno becomes -errno; MDB_CORRUPTED,
 *   MDB_PAGE_NOTFOUND, MDB_INVALID and MDB_VERSION_MISMATCH become
 *   TANDEM_ECORRUPT; MDB_INCOMPATIBLE becomes TANDEM_EFORMAT; MDB_MAP_FULL
 *   becomes -ENOSPC; MDB_READERS_FULL becomes TANDEM_EBUSY; any other LMDB
 *   code becomes -EIO. The diag (or a trace line, for calls without one) names
 *   the database, the LMDB function and mdb_strerror(). A failed write
 *   transaction is aborted whole, so the index stays at its old watermark.
 * - A value of the wrong shape is TANDEM_ECORRUPT: the index is derived
 *   state, so the cure is a rebuild from the log (tandem_reindex).
 * - A version above 2 (or 1, for a reader), or a database with the wrong
 *   flags: TANDEM_EFORMAT.
 * - A read-only open of an index that does not exist (no data file, or no
 *   named databases yet): -ENOENT, having created nothing.
 * - mmap refuses the 4 TiB map (ulimit -v, valgrind): the open retries with
 *   half the map, down to 1 GiB. The index then holds less before mdb_put
 *   fails with -ENOSPC; a reader whose map is smaller than a writer's data
 *   gets -EIO (MDB_MAP_RESIZED) and must reopen.
 * - A crash: with MDB_NOMETASYNC the last committed transactions may be lost,
 *   never half of one; the watermark goes back with them, and recovery applies
 *   the log again from there.
 *
 * Close: tdm_index_close() drops its reference to the shared environment,
 * closing it with the last one (no transaction is ever open between calls),
 * and frees the handle.
 *
 * One environment per index per process (LMDB's caveat against opening an
 * environment twice in a process: a second open resets the reader table, and
 * closing either copy drops the process's locks on lock.mdb). tdm_index_open()
 * therefore shares one environment among every handle on the same DIR/index
 * in a process, found by (device, inode) in a reference-counted registry; a
 * writer handle cannot join an environment that readers opened read-only
 * (TANDEM_EBUSY).
 *
 * Thread-safety: struct tdm_index is immutable after open; LMDB serialises
 * writers and gives each read transaction its own snapshot. MDB_NOTLS lets any
 * thread begin a read transaction without binding a reader slot to itself. */
#include "index.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>
#include <xxhash.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/bytes.h"
#include "base/trace.h"

#define INDEX_VERSION 2u
#define INDEX_DBS_MAX 16
#if SIZE_MAX > UINT32_MAX
/* Address space only (the file grows with its pages): room for about ten
 * billion message records at 300-450 bytes each (docs/OPERATIONS.md). */
#define INDEX_MAP_SIZE ((size_t)4 << 40)
#else
#define INDEX_MAP_SIZE ((size_t)1 << 30)
#endif
#define INDEX_MAP_SIZE_MIN         ((size_t)1 << 30) /* Smallest map tried if mmap refuses. */
#define INDEX_PATH_SIZE            4096
#define INDEX_FIELD_SIZE_MAX       16 /* A longer field is hashed: XXH3-128, canonical form. */
#define INDEX_CUSTOMER_KEY_SIZE    4
#define INDEX_ADDRESS_KEY_SIZE_MAX (INDEX_CUSTOMER_KEY_SIZE + INDEX_FIELD_SIZE_MAX)
#define INDEX_LMDB_KEY_SIZE_MAX    511 /* LMDB's default MDB_MAXKEYSIZE. */
#define INDEX_LSN_SIZE             8
#define INDEX_TIME_KEY_SIZE        20 /* u32 customer, u64 time_ns, u64 lsn. */
#define INDEX_TIME_VALUE_SIZE      16 /* u64 time_ns, u64 lsn. */
#define INDEX_LOCATION_SIZE        24
#define INDEX_WATERMARK_SIZE       (INDEX_LSN_SIZE + TDM_CHAIN_HASH_SIZE)
#define INDEX_CUSTOMER_VALUE_SIZE_MAX                                                              \
    (INDEX_LSN_SIZE + 2 + INDEX_FIELD_SIZE_MAX + 2 + INDEX_FIELD_SIZE_MAX)
#define INDEX_SCAN_FIRST_SIZE_MAX INDEX_TIME_KEY_SIZE

tdm_static_assert(INDEX_ADDRESS_KEY_SIZE_MAX <= INDEX_LMDB_KEY_SIZE_MAX);
tdm_static_assert(INDEX_TIME_KEY_SIZE <= TDM_INDEX_KEY_SIZE_MAX);
tdm_static_assert(INDEX_TIME_VALUE_SIZE <= TDM_INDEX_KEY_SIZE_MAX);
tdm_static_assert(INDEX_FIELD_SIZE_MAX <= UINT16_MAX);

static const char index_key_version[] = "version";
static const char index_key_watermark[] = "watermark";

enum index_db {
    INDEX_DB_META = 1,
    INDEX_DB_BATCH,
    INDEX_DB_MESSAGE_ID,
    INDEX_DB_CUSTOMER_TIME,
    INDEX_DB_RECIPIENT,
    INDEX_DB_SENDER,
    INDEX_DB_CUSTOMER,
    INDEX_DB_USERNAME,
    INDEX_DB_EMAIL,
    INDEX_DB__COUNT,
};

struct index_db_spec {
    const char *name;   /* Name of the LMDB named database. */
    unsigned int flags; /* MDB_DUPSORT or 0. */
};

static const struct index_db_spec index_db_specs[INDEX_DB__COUNT] = {
    [INDEX_DB_META] = {"meta", 0},
    [INDEX_DB_BATCH] = {"batch", 0},
    [INDEX_DB_MESSAGE_ID] = {"message_id", MDB_DUPSORT},
    [INDEX_DB_CUSTOMER_TIME] = {"customer_time", 0},
    [INDEX_DB_RECIPIENT] = {"recipient", MDB_DUPSORT},
    [INDEX_DB_SENDER] = {"sender", MDB_DUPSORT},
    [INDEX_DB_CUSTOMER] = {"customer", 0},
    [INDEX_DB_USERNAME] = {"username", MDB_DUPSORT},
    [INDEX_DB_EMAIL] = {"email", MDB_DUPSORT},
};

/* Thread-safe: immutable after tdm_index_open(). */
/* LMDB forbids opening one environment twice in a process: closing either
 * copy drops the other's flock() locks and its reader table. So environments
 * are shared, one per index directory (device, inode), counted by reference.
 * This registry is the library's one piece of process-wide state; LMDB's rule
 * forces it. Thread-safe: guarded by index_envs_mutex. */
struct index_env_entry {
    dev_t dev; /* Of DIR/index. */
    ino_t ino;
    MDB_env *env;   /* Owned by the entry. */
    bool read_only; /* Opened with MDB_RDONLY. */
    unsigned refs;  /* struct tdm_index handles sharing env. */
    struct index_env_entry *next;
};

static pthread_mutex_t index_envs_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct index_env_entry *index_envs;

struct tdm_index {
    MDB_env *env;                  /* Shared through entry; closed with its last handle. */
    struct index_env_entry *entry; /* In index_envs. */
    bool read_only;                /* Opened with MDB_RDONLY. */
    MDB_dbi dbis[INDEX_DB__COUNT]; /* dbis[0] is unused: enum values start at 1. */
};

/* A customer value, decoded and copied out of LMDB's pages. */
struct index_customer_value {
    uint64_t lsn; /* LSN of the customer's current record. */
    uint8_t username_key[INDEX_FIELD_SIZE_MAX];
    size_t username_key_size; /* 0: the username is empty and not indexed. */
    uint8_t email_key[INDEX_FIELD_SIZE_MAX];
    size_t email_key_size; /* 0: the email is empty and not indexed. */
};

/* What one call of tdm_index_scan_next() walks: the duplicates of one key
 * from a first value (dup), or the keys from a first key. */
struct index_scan_plan {
    enum index_db db;
    bool dup;
    bool empty; /* Nothing can match: the scan is done at once. */
    uint8_t key[INDEX_ADDRESS_KEY_SIZE_MAX];
    size_t key_size;
    uint8_t first[INDEX_SCAN_FIRST_SIZE_MAX]; /* First value (dup) or key. */
    size_t first_size;
    uint64_t until; /* Exclusive end of the time window, as stored. */
};

static MDB_val index_val(const void *data, size_t size)
{
    /* LMDB's MDB_val is not const-correct; LMDB never writes through it on
     * the calls that take our keys and values. */
    MDB_val val = {.mv_size = size, .mv_data = (void *)(uintptr_t)data};
    return val;
}

static void index_store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t index_load_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* Translate an LMDB return code (rc != 0) into a tandem code, and say why in
 * diag, or in a trace line when the caller has no diag. */
static int index_error(int rc, const char *subject, const char *operation, struct tdm_diag *diag)
{
    tdm_assert(rc != MDB_SUCCESS);
    tdm_assert(operation != NULL);
    const char *what = mdb_strerror(rc);
    int rv;
    if (rc > 0) {
        rv = -rc;
    } else if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
               rc == MDB_VERSION_MISMATCH) {
        rv = TDM_CORRUPT(diag, "index: %s: %s: %s", subject, operation, what);
        tdm_assert(rv == TANDEM_ECORRUPT);
        return rv;
    } else if (rc == MDB_INCOMPATIBLE) {
        rv = TANDEM_EFORMAT;
    } else if (rc == MDB_MAP_FULL) {
        rv = -ENOSPC;
    } else if (rc == MDB_READERS_FULL) {
        rv = TANDEM_EBUSY;
    } else {
        rv = -EIO;
    }
    if (diag != NULL) {
        tdm_diag_printf(diag, "index: %s: %s: %s", subject, operation, what);
    } else {
        tdm_tracef("index: %s: %s: %s", subject, operation, what);
    }
    tdm_assert(rv < 0);
    return rv;
}

/* Write the key form of a field into out (INDEX_FIELD_SIZE_MAX bytes) and
 * return its size: the field itself when at most 16 bytes, else its 16-byte
 * canonical XXH3-128. */
static size_t index_field_key(uint8_t *out, const char *data, size_t size)
{
    tdm_assert(out != NULL);
    tdm_assert(data != NULL || size == 0);
    if (size <= INDEX_FIELD_SIZE_MAX) {
        if (size > 0) {
            memcpy(out, data, size);
        }
        return size;
    }
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits(data, size));
    memcpy(out, canonical.digest, INDEX_FIELD_SIZE_MAX);
    return INDEX_FIELD_SIZE_MAX;
}

/* Write the recipient or sender key (u32 customer, field(address)) into out
 * (INDEX_ADDRESS_KEY_SIZE_MAX bytes) and return its size. */
static size_t index_address_key(uint8_t *out, uint32_t customer_id, const char *data, size_t size)
{
    tdm_store_be32(out, customer_id);
    size_t key_size = INDEX_CUSTOMER_KEY_SIZE + index_field_key(out + 4, data, size);
    tdm_assert(key_size >= INDEX_CUSTOMER_KEY_SIZE);
    tdm_assert(key_size <= INDEX_ADDRESS_KEY_SIZE_MAX);
    return key_size;
}

static int index_put(struct tdm_index *index, MDB_txn *txn, enum index_db db, const void *key,
                     size_t key_size, const void *value, size_t value_size, struct tdm_diag *diag)
{
    tdm_assert(key_size > 0);
    tdm_assert(key_size <= INDEX_LMDB_KEY_SIZE_MAX);
    MDB_val k = index_val(key, key_size);
    MDB_val v = index_val(value, value_size);
    int rc = mdb_put(txn, index->dbis[db], &k, &v, 0);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, index_db_specs[db].name, "mdb_put", diag);
    }
    return 0;
}

/* Delete one key/value pair; a pair that is already gone is not an error. */
static int index_delete(struct tdm_index *index, MDB_txn *txn, enum index_db db, const void *key,
                        size_t key_size, const void *value, size_t value_size,
                        struct tdm_diag *diag)
{
    tdm_assert(key_size > 0);
    tdm_assert(index_db_specs[db].flags & MDB_DUPSORT);
    MDB_val k = index_val(key, key_size);
    MDB_val v = index_val(value, value_size);
    int rc = mdb_del(txn, index->dbis[db], &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return index_error(rc, index_db_specs[db].name, "mdb_del", diag);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Opening and closing.
 * ------------------------------------------------------------------------ */

/* env_dir/name, or env_dir itself when name is NULL. */
static int index_path(char *path, const char *env_dir, const char *name, struct tdm_diag *diag)
{
    int n = name != NULL ? snprintf(path, INDEX_PATH_SIZE, "%s/%s", env_dir, name)
                         : snprintf(path, INDEX_PATH_SIZE, "%s", env_dir);
    if (n < 0 || n >= INDEX_PATH_SIZE) {
        tdm_diag_printf(diag, "index: path under %s too long", env_dir);
        return -ENAMETOOLONG;
    }
    return 0;
}

#define INDEX_OWNER_NAME "node-dir" /* In a linked index: the node directory it is of. */

/* The check of an index that DIR/index links to (tandem init --index-dir),
 * before anything is opened or created through the link:
 * - a link to nothing (its file system not mounted) fails the open, naming
 *   the link and its target;
 * - copies of DIR (cp -a, rsync -a) copy the link, and two node directories
 *   must never share one index. The target holds node-dir, the real path of
 *   the directory whose index it is. Another directory whose index still
 *   resolves to the same target owns it: refused (writers and readers),
 *   naming it. Otherwise (first open, or the directory was moved) a writer
 *   (claim) takes it over; the file is a guard, not data, so it is not
 *   fsync'd. */
static int index_link_check(const char *node_dir, const char *env_dir, bool claim,
                            struct tdm_diag *diag)
{
    struct stat st;
    if (lstat(env_dir, &st) != 0 || !S_ISLNK(st.st_mode)) {
        return 0;
    }
    char self[INDEX_PATH_SIZE];
    char target[INDEX_PATH_SIZE];
    if (stat(env_dir, &st) != 0) {
        ssize_t n = readlink(env_dir, target, sizeof(target) - 1);
        target[n >= 0 ? n : 0] = '\0';
        tdm_diag_printf(diag,
                        "index: %s is a link to %s, which does not exist (mount its file system; "
                        "or remove the link, and tandemd or tandem reindex rebuilds the index "
                        "there from the log)",
                        env_dir, target);
        return -ENOENT;
    }
    if (realpath(node_dir, self) == NULL || realpath(env_dir, target) == NULL) {
        int rv = -errno;
        tdm_diag_printf(diag, "index: resolve %s and its link: %s", env_dir, tandem_strerror(rv));
        return rv;
    }
    char owner_path[INDEX_PATH_SIZE];
    char tmp_path[INDEX_PATH_SIZE];
    int rv = index_path(owner_path, target, INDEX_OWNER_NAME, diag);
    if (rv == 0) {
        rv = index_path(tmp_path, target, INDEX_OWNER_NAME ".tmp", diag);
    }
    if (rv != 0) {
        return rv;
    }
    char owner[INDEX_PATH_SIZE] = "";
    FILE *f = fopen(owner_path, "re");
    if (f != NULL) {
        if (fgets(owner, sizeof(owner), f) == NULL) {
            owner[0] = '\0';
        }
        fclose(f);
        owner[strcspn(owner, "\n")] = '\0';
    }
    if (strcmp(owner, self) == 0) {
        return 0;
    }
    if (owner[0] != '\0') {
        char other[INDEX_PATH_SIZE];
        char other_target[INDEX_PATH_SIZE];
        if (index_path(other, owner, "index", diag) == 0 && realpath(other, other_target) != NULL &&
            strcmp(other_target, target) == 0) {
            tdm_diag_printf(diag,
                            "index: %s links to %s, the index of node directory %s (a copy of "
                            "it?): remove the link, and tandemd or tandem reindex rebuilds the "
                            "index here from the log",
                            env_dir, target, owner);
            return TANDEM_EBUSY;
        }
    }
    if (!claim) {
        return 0;
    }
    f = fopen(tmp_path, "we");
    bool written = f != NULL && fprintf(f, "%s\n", self) > 0;
    if (f != NULL && fclose(f) != 0) {
        written = false;
    }
    if (!written || rename(tmp_path, owner_path) != 0) {
        rv = -errno;
        tdm_diag_printf(diag, "index: write %s: %s", owner_path, tandem_strerror(rv));
        return rv != 0 ? rv : -EIO;
    }
    return 0;
}

/* Writer: create DIR/index/ unless it exists. Reader: require its data file,
 * so that a missing index is reported before LMDB creates a lock file. */
static int index_directory_prepare(const char *env_dir, bool read_only, struct tdm_diag *diag)
{
    char path[INDEX_PATH_SIZE];
    int rv = index_path(path, env_dir, read_only ? "data.mdb" : NULL, diag);
    if (rv != 0) {
        return rv;
    }
    if (read_only) {
        struct stat st;
        if (stat(path, &st) != 0) {
            rv = -errno;
            tdm_diag_printf(diag, "index: stat %s: %s", path, tandem_strerror(rv));
            return rv;
        }
        return 0;
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        rv = -errno;
        tdm_diag_printf(diag, "index: mkdir %s: %s", path, tandem_strerror(rv));
        return rv;
    }
    return 0;
}

/* Create and open the environment with one map size. Returns an LMDB code
 * and the failed LMDB function in *operation; on failure nothing is left. */
static int index_env_try(struct tdm_index *index, const char *path, size_t map_size,
                         const char **operation)
{
    *operation = "mdb_env_create";
    int rc = mdb_env_create(&index->env);
    if (rc != MDB_SUCCESS) {
        index->env = NULL;
        return rc;
    }
    *operation = "mdb_env_set_maxdbs";
    rc = mdb_env_set_maxdbs(index->env, INDEX_DBS_MAX);
    if (rc == MDB_SUCCESS) {
        *operation = "mdb_env_set_mapsize";
        rc = mdb_env_set_mapsize(index->env, map_size);
    }
    if (rc == MDB_SUCCESS) {
        /* The index is rebuilt from the log, so the writer skips the metapage
         * fsync: LMDB stays consistent after a crash and loses at most the
         * last transactions, which recovery applies again. */
        unsigned int flags = index->read_only ? MDB_RDONLY | MDB_NOTLS : MDB_NOTLS | MDB_NOMETASYNC;
        *operation = "mdb_env_open";
        rc = mdb_env_open(index->env, path, flags, 0600);
    }
    if (rc != MDB_SUCCESS) {
        mdb_env_close(index->env); /* LMDB requires it after a failed open. */
        index->env = NULL;
    }
    return rc;
}

/* Open the environment with the largest map size the address space allows:
 * INDEX_MAP_SIZE, halved while mmap refuses it (ENOMEM under a ulimit -v,
 * EINVAL under valgrind), down to INDEX_MAP_SIZE_MIN. */
static int index_env_open(struct tdm_index *index, const char *env_dir, struct tdm_diag *diag)
{
    char path[INDEX_PATH_SIZE];
    int rv = index_path(path, env_dir, NULL, diag);
    if (rv != 0) {
        return rv;
    }
    const char *operation = NULL;
    size_t map_size = INDEX_MAP_SIZE;
    int rc = index_env_try(index, path, map_size, &operation);
    while ((rc == ENOMEM || rc == EINVAL) && map_size > INDEX_MAP_SIZE_MIN) {
        map_size /= 2;
        tdm_tracef("index: %s: %s; retrying with a map of %zu MiB", operation, mdb_strerror(rc),
                   map_size >> 20);
        rc = index_env_try(index, path, map_size, &operation);
    }
    if (rc != MDB_SUCCESS) {
        tdm_assert(index->env == NULL);
        return index_error(rc, path, operation, diag);
    }
    tdm_assert(index->env != NULL);
    tdm_assert(mdb_env_get_maxkeysize(index->env) >= INDEX_ADDRESS_KEY_SIZE_MAX);
    if (!index->read_only) {
        /* LMDB may just have created data.mdb and lock.mdb: make their names
         * durable, or a power cut could leave a directory without them. */
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
            int err = errno;
            if (fd >= 0) {
                close(fd);
            }
            mdb_env_close(index->env);
            index->env = NULL;
            tdm_diag_printf(diag, "fsync %s: %s", path, strerror(err));
            return -err;
        }
        close(fd);
    }
    return 0;
}

static int index_db_open(struct tdm_index *index, MDB_txn *txn, enum index_db db,
                         struct tdm_diag *diag)
{
    const struct index_db_spec *spec = &index_db_specs[db];
    unsigned int flags = spec->flags | (index->read_only ? 0u : (unsigned int)MDB_CREATE);
    int rc = mdb_dbi_open(txn, spec->name, flags, &index->dbis[db]);
    if (rc == MDB_NOTFOUND) {
        tdm_assert(index->read_only);
        tdm_diag_printf(diag, "index: database %s missing", spec->name);
        return -ENOENT;
    }
    if (rc != MDB_SUCCESS) {
        return index_error(rc, spec->name, "mdb_dbi_open", diag);
    }
    unsigned int stored = 0;
    rc = mdb_dbi_flags(txn, index->dbis[db], &stored);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, spec->name, "mdb_dbi_flags", diag);
    }
    if ((stored & MDB_DUPSORT) != (spec->flags & MDB_DUPSORT)) {
        tdm_diag_printf(diag, "index: database %s has flags 0x%x", spec->name, stored);
        return TANDEM_EFORMAT;
    }
    return 0;
}

static int index_version_write(struct tdm_index *index, MDB_txn *txn, struct tdm_diag *diag)
{
    tdm_assert(!index->read_only);
    uint8_t value[4];
    tdm_store_be32(value, INDEX_VERSION);
    return index_put(index, txn, INDEX_DB_META, index_key_version, sizeof(index_key_version) - 1,
                     value, sizeof(value), diag);
}

/* Empty every database in txn and store this build's version: the
 * watermark goes with meta, so the next catch-up fills from LSN 1. */
static int index_clear_in(struct tdm_index *index, MDB_txn *txn, struct tdm_diag *diag)
{
    int rv = 0;
    for (int db = INDEX_DB_META; db < INDEX_DB__COUNT && rv == 0; db++) {
        int rc = mdb_drop(txn, index->dbis[db], 0);
        if (rc != MDB_SUCCESS) {
            rv = index_error(rc, index_db_specs[db].name, "mdb_drop", diag);
        }
    }
    return rv == 0 ? index_version_write(index, txn, diag) : rv;
}

/* Check the stored version; a new writer's index gets this build's. A
 * writer empties an index of an older version (the format of its keys
 * changed; it is rebuilt from the log); a reader refuses it. */
static int index_version_check(struct tdm_index *index, MDB_txn *txn, struct tdm_diag *diag)
{
    MDB_val k = index_val(index_key_version, sizeof(index_key_version) - 1);
    MDB_val v;
    int rc = mdb_get(txn, index->dbis[INDEX_DB_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        if (index->read_only) {
            tdm_diag_printf(diag, "index: no version");
            return TANDEM_EFORMAT;
        }
        return index_version_write(index, txn, diag);
    }
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "meta", "mdb_get version", diag);
    }
    if (v.mv_size != 4) {
        tdm_diag_printf(diag, "index: version is %zu bytes, want 4", v.mv_size);
        return TANDEM_EFORMAT;
    }
    uint32_t version = tdm_load_be32(v.mv_data);
    if (version > 0 && version < INDEX_VERSION && !index->read_only) {
        tdm_tracef("index: version %" PRIu32 ", this build writes version %u: rebuilding it",
                   version, INDEX_VERSION);
        return index_clear_in(index, txn, diag);
    }
    if (version != INDEX_VERSION) {
        tdm_diag_printf(diag, "index: version %" PRIu32 ", this build reads version %u%s", version,
                        INDEX_VERSION,
                        version < INDEX_VERSION ? " (tandemd or tandem reindex rebuilds it)" : "");
        return TANDEM_EFORMAT;
    }
    return 0;
}

/* Open every named database (and check the version) in one transaction:
 * the handles become usable by every later transaction once it commits. */
static int index_dbs_open(struct tdm_index *index, struct tdm_diag *diag)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(index->env, NULL, index->read_only ? MDB_RDONLY : 0, &txn);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "open", "mdb_txn_begin", diag);
    }
    int rv = 0;
    for (int db = INDEX_DB_META; db < INDEX_DB__COUNT && rv == 0; db++) {
        rv = index_db_open(index, txn, (enum index_db)db, diag);
    }
    if (rv == 0) {
        rv = index_version_check(index, txn, diag);
    }
    if (rv != 0) {
        mdb_txn_abort(txn);
        return rv;
    }
    rc = mdb_txn_commit(txn);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "open", "mdb_txn_commit", diag);
    }
    return 0;
}

/* Find the shared environment of DIR/index, or open one (under the registry
 * mutex). A writer cannot share an environment that readers opened read-only. */
static int index_env_acquire(struct tdm_index *index, const char *env_dir, struct tdm_diag *diag)
{
    char path[INDEX_PATH_SIZE];
    int rv = index_path(path, env_dir, NULL, diag);
    if (rv != 0) {
        return rv;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        rv = -errno;
        tdm_diag_printf(diag, "index: stat %s: %s", path, tandem_strerror(rv));
        return rv;
    }
    for (struct index_env_entry *e = index_envs; e != NULL; e = e->next) {
        if (e->dev != st.st_dev || e->ino != st.st_ino) {
            continue;
        }
        if (e->read_only && !index->read_only) {
            tdm_diag_printf(diag,
                            "index: %s is open read-only in this process; close the "
                            "read-only handles first",
                            path);
            return TANDEM_EBUSY;
        }
        e->refs++;
        index->env = e->env;
        index->entry = e;
        return 0;
    }
    struct index_env_entry *e = tdm_calloc(1, sizeof(*e));
    if (e == NULL) {
        tdm_diag_printf(diag, "index: out of memory");
        return -ENOMEM;
    }
    rv = index_env_open(index, env_dir, diag);
    if (rv != 0) {
        tdm_free(e);
        return rv;
    }
    *e =
        (struct index_env_entry){st.st_dev, st.st_ino, index->env, index->read_only, 1, index_envs};
    index_envs = e;
    index->entry = e;
    return 0;
}

/* Drop one reference; close the environment with the last (registry mutex held). */
static void index_env_release(struct tdm_index *index)
{
    struct index_env_entry *e = index->entry;
    tdm_assert(e != NULL);
    tdm_assert(e->refs > 0);
    if (--e->refs > 0) {
        return;
    }
    struct index_env_entry **p = &index_envs;
    while (*p != e) {
        tdm_assert(*p != NULL);
        p = &(*p)->next;
    }
    *p = e->next;
    mdb_env_close(e->env);
    tdm_free(e);
}

int tdm_index_open(const char *node_dir, bool read_only, struct tdm_index **out,
                   struct tdm_diag *diag)
{
    return tdm_index_open_at(node_dir, "index", read_only, out, diag);
}

int tdm_index_open_at(const char *node_dir, const char *name, bool read_only,
                      struct tdm_index **out, struct tdm_diag *diag)
{
    tdm_assert(node_dir != NULL);
    tdm_assert(name != NULL);
    tdm_assert(out != NULL);
    char env_dir[INDEX_PATH_SIZE];
    int rv = index_path(env_dir, node_dir, name, diag);
    if (rv != 0) {
        return rv;
    }
    if (strcmp(name, "index") == 0) {
        rv = index_link_check(node_dir, env_dir, !read_only, diag);
    }
    if (rv == 0) {
        rv = index_directory_prepare(env_dir, read_only, diag);
    }
    if (rv != 0) {
        goto err;
    }
    struct tdm_index *index = tdm_calloc(1, sizeof(*index));
    if (index == NULL) {
        rv = -ENOMEM;
        tdm_diag_printf(diag, "index: out of memory");
        goto err;
    }
    index->read_only = read_only;
    pthread_mutex_lock(&index_envs_mutex);
    rv = index_env_acquire(index, env_dir, diag);
    if (rv != 0) {
        pthread_mutex_unlock(&index_envs_mutex);
        goto err_after_alloc;
    }
    rv = index_dbs_open(index, diag);
    if (rv != 0) {
        index_env_release(index);
        pthread_mutex_unlock(&index_envs_mutex);
        goto err_after_alloc;
    }
    pthread_mutex_unlock(&index_envs_mutex);
    *out = index;
    return 0;

err_after_alloc:
    tdm_free(index);
err:
    tdm_assert(rv < 0);
    return rv;
}

void tdm_index_close(struct tdm_index *index)
{
    if (index == NULL) {
        return;
    }
    tdm_assert(index->env != NULL);
    pthread_mutex_lock(&index_envs_mutex);
    index_env_release(index);
    pthread_mutex_unlock(&index_envs_mutex);
    tdm_free(index);
}

int tdm_index_sync(struct tdm_index *index)
{
    tdm_assert(index != NULL);
    tdm_assert(index->env != NULL);
    if (index->read_only) {
        return 0; /* A reader wrote nothing. */
    }
    int rc = mdb_env_sync(index->env, 1);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "env", "mdb_env_sync", NULL);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Small lookups shared by readers and the writer.
 * ------------------------------------------------------------------------ */

static int index_read_begin(struct tdm_index *index, MDB_txn **txn, struct tdm_diag *diag)
{
    tdm_assert(index != NULL);
    tdm_assert(index->env != NULL);
    int rc = mdb_txn_begin(index->env, NULL, MDB_RDONLY, txn);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "read", "mdb_txn_begin", diag);
    }
    return 0;
}

static int index_watermark_get(struct tdm_index *index, MDB_txn *txn, uint64_t *lsn,
                               struct tdm_chain_hash *chain, struct tdm_diag *diag)
{
    MDB_val k = index_val(index_key_watermark, sizeof(index_key_watermark) - 1);
    MDB_val v;
    int rc = mdb_get(txn, index->dbis[INDEX_DB_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        *lsn = 0;
        memset(chain, 0, sizeof(*chain));
        return 0;
    }
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "meta", "mdb_get watermark", diag);
    }
    if (v.mv_size != INDEX_WATERMARK_SIZE) {
        return TDM_CORRUPT(diag, "index: watermark is %zu bytes", v.mv_size);
    }
    const uint8_t *p = v.mv_data;
    *lsn = tdm_load_be64(p);
    memcpy(chain->bytes, p + INDEX_LSN_SIZE, TDM_CHAIN_HASH_SIZE);
    return 0;
}

static int index_watermark_read(struct tdm_index *index, uint64_t *lsn,
                                struct tdm_chain_hash *chain, struct tdm_diag *diag)
{
    MDB_txn *txn = NULL;
    int rv = index_read_begin(index, &txn, diag);
    if (rv != 0) {
        return rv;
    }
    rv = index_watermark_get(index, txn, lsn, chain, diag);
    mdb_txn_abort(txn);
    return rv;
}

int tdm_index_watermark(struct tdm_index *index, uint64_t *lsn, struct tdm_chain_hash *chain)
{
    tdm_assert(index != NULL);
    tdm_assert(lsn != NULL);
    uint64_t found_lsn = 0;
    struct tdm_chain_hash found_chain;
    int rv = index_watermark_read(index, &found_lsn, &found_chain, NULL);
    if (rv != 0) {
        return rv;
    }
    *lsn = found_lsn;
    if (chain != NULL) {
        *chain = found_chain;
    }
    return 0;
}

static int index_customer_decode(const MDB_val *value, struct index_customer_value *out,
                                 struct tdm_diag *diag)
{
    struct tdm_reader r;
    tdm_reader_init(&r, value->mv_data, value->mv_size);
    const uint8_t *lsn = tdm_reader_take(&r, INDEX_LSN_SIZE);
    const uint8_t *size = tdm_reader_take(&r, 2);
    out->username_key_size = size != NULL ? index_load_be16(size) : 0;
    const uint8_t *username = NULL;
    if (out->username_key_size <= INDEX_FIELD_SIZE_MAX) {
        username = tdm_reader_take(&r, out->username_key_size);
    }
    size = tdm_reader_take(&r, 2);
    out->email_key_size = size != NULL ? index_load_be16(size) : 0;
    const uint8_t *email = NULL;
    if (out->email_key_size <= INDEX_FIELD_SIZE_MAX) {
        email = tdm_reader_take(&r, out->email_key_size);
    }
    if (lsn == NULL || username == NULL || email == NULL || r.overflow || r.offset != r.size) {
        return TDM_CORRUPT(diag, "index: customer value of %zu bytes is malformed", value->mv_size);
    }
    out->lsn = tdm_load_be64(lsn);
    memcpy(out->username_key, username, out->username_key_size);
    memcpy(out->email_key, email, out->email_key_size);
    return 0;
}

/* The customer value of customer_id (copied out), or TANDEM_ENOTFOUND. */
static int index_customer_get(struct tdm_index *index, MDB_txn *txn, uint32_t customer_id,
                              struct index_customer_value *out, struct tdm_diag *diag)
{
    uint8_t key[INDEX_CUSTOMER_KEY_SIZE];
    tdm_store_be32(key, customer_id);
    MDB_val k = index_val(key, sizeof(key));
    MDB_val v;
    int rc = mdb_get(txn, index->dbis[INDEX_DB_CUSTOMER], &k, &v);
    if (rc == MDB_NOTFOUND) {
        return TANDEM_ENOTFOUND;
    }
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "customer", "mdb_get", diag);
    }
    return index_customer_decode(&v, out, diag);
}

int tdm_index_customer(struct tdm_index *index, uint32_t customer_id, uint64_t *lsn)
{
    tdm_assert(index != NULL);
    tdm_assert(lsn != NULL);
    MDB_txn *txn = NULL;
    int rv = index_read_begin(index, &txn, NULL);
    if (rv != 0) {
        return rv;
    }
    struct index_customer_value value = {0};
    rv = index_customer_get(index, txn, customer_id, &value, NULL);
    mdb_txn_abort(txn);
    if (rv != 0) {
        return rv;
    }
    *lsn = value.lsn;
    return 0;
}

static int index_location_decode(const MDB_val *key, const MDB_val *value,
                                 struct tdm_index_location *location)
{
    if (key->mv_size != INDEX_LSN_SIZE || value->mv_size != INDEX_LOCATION_SIZE) {
        return TDM_CORRUPT(NULL, "index: batch entry of %zu/%zu bytes", key->mv_size,
                           value->mv_size);
    }
    const uint8_t *p = value->mv_data;
    location->lsn_first = tdm_load_be64(key->mv_data);
    location->segment_lsn = tdm_load_be64(p);
    location->offset = tdm_load_be64(p + 8);
    location->size = tdm_load_be32(p + 16);
    location->record_count = tdm_load_be32(p + 20);
    return 0;
}

/* Find the batch with the greatest lsn_first <= lsn. */
static int index_locate_cursor(MDB_cursor *cursor, uint64_t lsn,
                               struct tdm_index_location *location)
{
    uint8_t key_bytes[INDEX_LSN_SIZE];
    tdm_store_be64(key_bytes, lsn);
    MDB_val k = index_val(key_bytes, sizeof(key_bytes));
    MDB_val v;
    int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
    } else if (rc == MDB_SUCCESS) {
        if (k.mv_size != INDEX_LSN_SIZE || tdm_load_be64(k.mv_data) != lsn) {
            rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV);
        }
    }
    if (rc == MDB_NOTFOUND) {
        return TANDEM_ENOTFOUND;
    }
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "batch", "mdb_cursor_get", NULL);
    }
    return index_location_decode(&k, &v, location);
}

int tdm_index_locate(struct tdm_index *index, uint64_t lsn, struct tdm_index_location *location)
{
    tdm_assert(index != NULL);
    tdm_assert(location != NULL);
    MDB_txn *txn = NULL;
    int rv = index_read_begin(index, &txn, NULL);
    if (rv != 0) {
        return rv;
    }
    MDB_cursor *cursor = NULL;
    int rc = mdb_cursor_open(txn, index->dbis[INDEX_DB_BATCH], &cursor);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return index_error(rc, "batch", "mdb_cursor_open", NULL);
    }
    struct tdm_index_location found = {0};
    rv = index_locate_cursor(cursor, lsn, &found);
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    if (rv != 0) {
        return rv;
    }
    /* The batch before lsn may end before it: a gap where the log is damaged. */
    if (lsn < found.lsn_first || lsn - found.lsn_first >= found.record_count) {
        return TANDEM_ENOTFOUND;
    }
    *location = found;
    return 0;
}

/* ------------------------------------------------------------------------
 * Applying batches.
 * ------------------------------------------------------------------------ */

/* The entries of a group's message records, collected first and stored in
 * key order. Stored one by one in LSN order, every entry of message_id,
 * recipient and sender lands on another page of a large index: LMDB then
 * descends from the root for each one and looks every page on the way up in
 * its dirty list. In key order, one cursor per database mostly stays on the
 * leaf it is on (mdb_cursor_set checks the current page first), and the
 * pages are touched once each in order. The entries and their order do not
 * change what the index holds: these databases hold sets of key/value pairs,
 * and no pair of a message record depends on another. */
struct index_entry {
    const uint8_t *key; /* In the arena, followed by the value; set once the arena is full. */
    size_t offset;      /* Of the key in the arena. */
    uint16_t key_size;
    uint8_t value_size;
    uint8_t db; /* enum index_db. */
};

struct index_entries {
    struct index_entry *entries;
    size_t count;
    size_t capacity;
    uint8_t *arena;
    size_t used;
    size_t size;
};

static void index_entries_free(struct index_entries *e)
{
    tdm_free(e->entries);
    tdm_free(e->arena);
    memset(e, 0, sizeof(*e));
}

static int index_entries_add(struct index_entries *e, enum index_db db, const void *key,
                             size_t key_size, const void *value, size_t value_size,
                             struct tdm_diag *diag)
{
    tdm_assert(key_size > 0);
    tdm_assert(key_size <= INDEX_LMDB_KEY_SIZE_MAX);
    tdm_assert(value_size <= UINT8_MAX);
    if (e->count == e->capacity) {
        size_t capacity = e->capacity > 0 ? e->capacity * 2 : 1024;
        struct index_entry *entries = tdm_realloc(e->entries, capacity * sizeof(*entries));
        if (entries == NULL) {
            tdm_diag_printf(diag, "index: apply: out of memory for %zu entries", capacity);
            return -ENOMEM;
        }
        e->entries = entries;
        e->capacity = capacity;
    }
    size_t need = key_size + value_size;
    if (e->size - e->used < need) {
        size_t size = e->size > 0 ? e->size : 64 * 1024;
        while (size - e->used < need) {
            size *= 2;
        }
        uint8_t *arena = tdm_realloc(e->arena, size);
        if (arena == NULL) {
            tdm_diag_printf(diag, "index: apply: out of memory for %zu bytes of entries", size);
            return -ENOMEM;
        }
        e->arena = arena;
        e->size = size;
    }
    memcpy(e->arena + e->used, key, key_size);
    if (value_size > 0) {
        memcpy(e->arena + e->used + key_size, value, value_size);
    }
    e->entries[e->count++] = (struct index_entry){
        .offset = e->used,
        .key_size = (uint16_t)key_size,
        .value_size = (uint8_t)value_size,
        .db = (uint8_t)db,
    };
    e->used += need;
    return 0;
}

/* An entry's place in the order of index_entries_sort(): its database and
 * the first 15 bytes of its key, zero-padded, as one 16-byte big-endian
 * number (hi, lo). */
struct index_sort_item {
    uint64_t hi;
    uint64_t lo;
    size_t entry;
};

#define INDEX_SORT_KEY_BYTES 16

static uint8_t index_sort_byte(const struct index_sort_item *item, unsigned position)
{
    uint64_t word = position < 8 ? item->hi : item->lo;
    return (uint8_t)(word >> (56 - 8 * (position % 8)));
}

/* Put e's entries in order of database and key prefix (struct
 * index_sort_item) with a least-significant-digit radix sort: one byte per
 * pass, skipping the bytes every entry shares (the database, a customer's
 * high bytes). The order only has to bring neighbouring keys together (the
 * comment above struct index_entry): entries whose first 15 bytes agree stay
 * in the order they came. A comparison sort (qsort, with memcmp per
 * comparison) took half the index thread's time under load.
 * Returns 0, or -ENOMEM with diag (nothing changed). */
static int index_entries_sort(struct index_entries *e, struct tdm_diag *diag)
{
    size_t n = e->count;
    struct index_sort_item *items = tdm_malloc(2 * n * sizeof(*items));
    struct index_entry *sorted = tdm_malloc(n * sizeof(*sorted));
    size_t(*count)[256] = tdm_calloc(INDEX_SORT_KEY_BYTES, sizeof(*count));
    if (items == NULL || sorted == NULL || count == NULL) {
        tdm_free(items);
        tdm_free(sorted);
        tdm_free(count);
        tdm_diag_printf(diag, "index: apply: out of memory to sort %zu entries", n);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct index_entry *entry = &e->entries[i];
        uint8_t prefix[INDEX_SORT_KEY_BYTES] = {entry->db};
        size_t take =
            entry->key_size < INDEX_SORT_KEY_BYTES - 1 ? entry->key_size : INDEX_SORT_KEY_BYTES - 1;
        memcpy(prefix + 1, entry->key, take);
        struct index_sort_item *item = &items[i];
        item->hi = tdm_load_be64(prefix);
        item->lo = tdm_load_be64(prefix + 8);
        item->entry = i;
        for (unsigned position = 0; position < INDEX_SORT_KEY_BYTES; position++) {
            count[position][index_sort_byte(item, position)]++;
        }
    }
    struct index_sort_item *from = items;
    struct index_sort_item *to = items + n;
    for (unsigned position = INDEX_SORT_KEY_BYTES; position-- > 0;) {
        size_t *c = count[position];
        if (c[index_sort_byte(&from[0], position)] == n) {
            continue; /* Every entry has this byte. */
        }
        size_t at = 0;
        for (unsigned b = 0; b < 256; b++) {
            size_t k = c[b];
            c[b] = at;
            at += k;
        }
        for (size_t i = 0; i < n; i++) {
            to[c[index_sort_byte(&from[i], position)]++] = from[i];
        }
        struct index_sort_item *swap = from;
        from = to;
        to = swap;
    }
    for (size_t i = 0; i < n; i++) {
        sorted[i] = e->entries[from[i].entry];
    }
    tdm_free(count);
    tdm_free(items);
    tdm_free(e->entries);
    e->entries = sorted;
    e->capacity = n;
    return 0;
}

/* Store the collected entries, in order, with one cursor per database. */
static int index_entries_store(struct tdm_index *index, MDB_txn *txn, struct index_entries *e,
                               struct tdm_diag *diag)
{
    for (size_t i = 0; i < e->count; i++) {
        e->entries[i].key = e->arena + e->entries[i].offset;
    }
    if (e->count > 1) {
        int rv = index_entries_sort(e, diag);
        if (rv != 0) {
            return rv;
        }
    }
    size_t i = 0;
    while (i < e->count) {
        enum index_db db = (enum index_db)e->entries[i].db;
        MDB_cursor *cursor = NULL;
        int rc = mdb_cursor_open(txn, index->dbis[db], &cursor);
        if (rc != MDB_SUCCESS) {
            return index_error(rc, index_db_specs[db].name, "mdb_cursor_open", diag);
        }
        for (; i < e->count && e->entries[i].db == db; i++) {
            const struct index_entry *entry = &e->entries[i];
            MDB_val k = index_val(entry->key, entry->key_size);
            MDB_val v = index_val(entry->key + entry->key_size, entry->value_size);
            rc = mdb_cursor_put(cursor, &k, &v, 0);
            if (rc != MDB_SUCCESS) {
                mdb_cursor_close(cursor);
                return index_error(rc, index_db_specs[db].name, "mdb_cursor_put", diag);
            }
        }
        mdb_cursor_close(cursor);
    }
    return 0;
}

static int index_apply_message(struct index_entries *entries, uint64_t lsn,
                               const struct tandem_message *message, struct tdm_diag *diag)
{
    uint8_t key[INDEX_ADDRESS_KEY_SIZE_MAX];
    uint8_t value[INDEX_TIME_VALUE_SIZE];
    uint64_t time = (uint64_t)message->time_ns; /* See the header: valid times are >= 0. */
    int rv = 0;
    if (message->message_id.size > 0) {
        size_t key_size = index_field_key(key, message->message_id.data, message->message_id.size);
        tdm_store_be64(value, lsn);
        rv = index_entries_add(entries, INDEX_DB_MESSAGE_ID, key, key_size, value, INDEX_LSN_SIZE,
                               diag);
        if (rv != 0) {
            return rv;
        }
    }
    tdm_store_be32(key, message->customer_id);
    tdm_store_be64(key + 4, time);
    tdm_store_be64(key + 12, lsn);
    rv = index_entries_add(entries, INDEX_DB_CUSTOMER_TIME, key, INDEX_TIME_KEY_SIZE, value, 0,
                           diag);
    if (rv != 0) {
        return rv;
    }
    tdm_store_be64(value, time);
    tdm_store_be64(value + 8, lsn);
    size_t key_size = index_address_key(key, message->customer_id, message->recipient.data,
                                        message->recipient.size);
    rv = index_entries_add(entries, INDEX_DB_RECIPIENT, key, key_size, value, sizeof(value), diag);
    if (rv != 0) {
        return rv;
    }
    key_size =
        index_address_key(key, message->customer_id, message->sender.data, message->sender.size);
    return index_entries_add(entries, INDEX_DB_SENDER, key, key_size, value, sizeof(value), diag);
}

/* Delete the username and email entries of customer_id's current record. */
static int index_customer_unlink(struct tdm_index *index, MDB_txn *txn, uint32_t customer_id,
                                 struct tdm_diag *diag)
{
    struct index_customer_value old = {0};
    int rv = index_customer_get(index, txn, customer_id, &old, diag);
    if (rv == TANDEM_ENOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    uint8_t id[INDEX_CUSTOMER_KEY_SIZE];
    tdm_store_be32(id, customer_id);
    if (old.username_key_size > 0) {
        rv = index_delete(index, txn, INDEX_DB_USERNAME, old.username_key, old.username_key_size,
                          id, sizeof(id), diag);
        if (rv != 0) {
            return rv;
        }
    }
    if (old.email_key_size > 0) {
        rv = index_delete(index, txn, INDEX_DB_EMAIL, old.email_key, old.email_key_size, id,
                          sizeof(id), diag);
    }
    return rv;
}

static int index_apply_customer(struct tdm_index *index, MDB_txn *txn, uint64_t lsn,
                                const struct tandem_customer *customer, struct tdm_diag *diag)
{
    int rv = index_customer_unlink(index, txn, customer->customer_id, diag);
    if (rv != 0) {
        return rv;
    }
    uint8_t value[INDEX_CUSTOMER_VALUE_SIZE_MAX];
    tdm_store_be64(value, lsn);
    uint8_t *username_key = value + INDEX_LSN_SIZE + 2;
    size_t username_key_size =
        index_field_key(username_key, customer->username.data, customer->username.size);
    index_store_be16(value + INDEX_LSN_SIZE, (uint16_t)username_key_size);
    uint8_t *email_size = username_key + username_key_size;
    uint8_t *email_key = email_size + 2;
    size_t email_key_size = index_field_key(email_key, customer->email.data, customer->email.size);
    index_store_be16(email_size, (uint16_t)email_key_size);
    size_t value_size = (size_t)(email_key + email_key_size - value);
    tdm_assert(value_size <= sizeof(value));

    uint8_t id[INDEX_CUSTOMER_KEY_SIZE];
    tdm_store_be32(id, customer->customer_id);
    rv = index_put(index, txn, INDEX_DB_CUSTOMER, id, sizeof(id), value, value_size, diag);
    if (rv == 0 && username_key_size > 0) {
        rv = index_put(index, txn, INDEX_DB_USERNAME, username_key, username_key_size, id,
                       sizeof(id), diag);
    }
    if (rv == 0 && email_key_size > 0) {
        rv = index_put(index, txn, INDEX_DB_EMAIL, email_key, email_key_size, id, sizeof(id), diag);
    }
    return rv;
}

static int index_apply_record(struct tdm_index *index, MDB_txn *txn, struct index_entries *entries,
                              uint64_t lsn, const struct tandem_record *record,
                              struct tdm_diag *diag)
{
    if (record->type == TANDEM_RECORD_MESSAGE) {
        return index_apply_message(entries, lsn, &record->message, diag);
    }
    if (record->type == TANDEM_RECORD_CUSTOMER) {
        return index_apply_customer(index, txn, lsn, &record->customer, diag);
    }
    tdm_diag_printf(diag, "index: record at lsn %" PRIu64 ": unknown type %d", lsn,
                    (int)record->type);
    return TANDEM_EINVALID;
}

static void index_location_encode(uint8_t *p, const struct tdm_index_location *location)
{
    tdm_store_be64(p, location->segment_lsn);
    tdm_store_be64(p + 8, location->offset);
    tdm_store_be32(p + 16, location->size);
    tdm_store_be32(p + 20, location->record_count);
}

static int index_apply_batch(struct tdm_index *index, MDB_txn *txn, struct index_entries *entries,
                             const struct tdm_index_batch *batch, struct tdm_diag *diag)
{
    const struct tdm_index_location *location = &batch->location;
    uint8_t key[INDEX_LSN_SIZE];
    uint8_t value[INDEX_LOCATION_SIZE];
    tdm_store_be64(key, location->lsn_first);
    index_location_encode(value, location);
    int rv = index_put(index, txn, INDEX_DB_BATCH, key, sizeof(key), value, sizeof(value), diag);
    for (uint32_t i = 0; i < location->record_count && rv == 0; i++) {
        rv = index_apply_record(index, txn, entries, location->lsn_first + i, &batch->records[i],
                                diag);
    }
    return rv;
}

/* The caller's contract: batches follow the watermark, in LSN order, each
 * with at least one record. Returns the last LSN of the last batch. */
static uint64_t index_batches_check(const struct tdm_index_batch *batches, size_t count,
                                    uint64_t watermark)
{
    uint64_t lsn_last = watermark;
    for (size_t i = 0; i < count; i++) {
        const struct tdm_index_location *location = &batches[i].location;
        tdm_assert(batches[i].records != NULL);
        tdm_assert(location->record_count >= 1);
        tdm_assert(location->record_count <= TDM_BATCH_RECORDS_MAX);
        tdm_assert(location->lsn_first > lsn_last);
        tdm_assert(location->lsn_first - 1 <= UINT64_MAX - location->record_count);
        lsn_last = location->lsn_first + location->record_count - 1;
    }
    return lsn_last;
}

static int index_watermark_put(struct tdm_index *index, MDB_txn *txn, uint64_t lsn,
                               const struct tdm_chain_hash *chain, struct tdm_diag *diag)
{
    uint8_t value[INDEX_WATERMARK_SIZE];
    tdm_store_be64(value, lsn);
    memcpy(value + INDEX_LSN_SIZE, chain->bytes, TDM_CHAIN_HASH_SIZE);
    return index_put(index, txn, INDEX_DB_META, index_key_watermark,
                     sizeof(index_key_watermark) - 1, value, sizeof(value), diag);
}

/* Apply one chunk of batches in txn: batch locations and customer records in
 * LSN order (a customer record reads and replaces its predecessor's
 * entries); the message records' entries collected, then stored in key
 * order. */
static int index_apply_chunk(struct tdm_index *index, MDB_txn *txn,
                             const struct tdm_index_batch *batches, size_t count,
                             struct tdm_diag *diag)
{
    struct index_entries entries = {0};
    int rv = 0;
    for (size_t i = 0; i < count && rv == 0; i++) {
        rv = index_apply_batch(index, txn, &entries, &batches[i], diag);
    }
    if (rv == 0) {
        rv = index_entries_store(index, txn, &entries, diag);
    }
    index_entries_free(&entries);
    return rv;
}

int tdm_index_apply_stream(struct tdm_index *index, tdm_index_next_cb next, void *data,
                           uint64_t *lsn_last, struct tdm_diag *diag)
{
    tdm_assert(index != NULL);
    tdm_assert(next != NULL);
    *lsn_last = 0;
    if (index->read_only) {
        tdm_diag_printf(diag, "index: apply: opened read-only");
        return TANDEM_EREADONLY;
    }
    const struct tdm_index_batch *batches = NULL;
    size_t count = next(data, &batches);
    if (count == 0) {
        return 0;
    }
    /* The first chunk is checked before the write transaction begins, so
     * that a failed check leaves no transaction behind (the test hook
     * longjmps out of it). The one writer thread is the only one that moves
     * the watermark. */
    uint64_t watermark = 0;
    struct tdm_chain_hash chain;
    int rv = index_watermark_read(index, &watermark, &chain, diag);
    if (rv != 0) {
        return rv;
    }
    uint64_t lsn = index_batches_check(batches, count, watermark);

    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(index->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "apply", "mdb_txn_begin", diag);
    }
    uint64_t watermark_in_txn = 0;
    rv = index_watermark_get(index, txn, &watermark_in_txn, &chain, diag);
    if (rv == 0) {
        tdm_assert(watermark_in_txn == watermark);
    }
    while (rv == 0) {
        rv = index_apply_chunk(index, txn, batches, count, diag);
        if (rv != 0) {
            break;
        }
        chain = batches[count - 1].chain_hash; /* batches lasts until the next call. */
        count = next(data, &batches);
        if (count == 0) {
            break;
        }
        lsn = index_batches_check(batches, count, lsn);
    }
    if (rv == 0) {
        rv = index_watermark_put(index, txn, lsn, &chain, diag);
    }
    if (rv != 0) {
        mdb_txn_abort(txn);
        return rv;
    }
    rc = mdb_txn_commit(txn);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "apply", "mdb_txn_commit", diag);
    }
    *lsn_last = lsn;
    return 0;
}

/* tdm_index_apply()'s one chunk, handed over once. */
struct index_once {
    const struct tdm_index_batch *batches;
    size_t count;
};

static size_t index_once_next(void *data, const struct tdm_index_batch **batches)
{
    struct index_once *once = data;
    size_t count = once->count;
    *batches = once->batches;
    once->count = 0;
    return count;
}

int tdm_index_apply(struct tdm_index *index, const struct tdm_index_batch *batches, size_t count,
                    struct tdm_diag *diag)
{
    tdm_assert(batches != NULL || count == 0);
    struct index_once once = {.batches = batches, .count = count};
    uint64_t lsn_last;
    return tdm_index_apply_stream(index, index_once_next, &once, &lsn_last, diag);
}

int tdm_index_clear(struct tdm_index *index, struct tdm_diag *diag)
{
    tdm_assert(index != NULL);
    tdm_assert(index->env != NULL);
    if (index->read_only) {
        tdm_diag_printf(diag, "index: clear: opened read-only");
        return TANDEM_EREADONLY;
    }
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(index->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "clear", "mdb_txn_begin", diag);
    }
    int rv = index_clear_in(index, txn, diag);
    if (rv != 0) {
        mdb_txn_abort(txn);
        return rv;
    }
    rc = mdb_txn_commit(txn);
    if (rc != MDB_SUCCESS) {
        return index_error(rc, "clear", "mdb_txn_commit", diag);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Scans.
 * ------------------------------------------------------------------------ */

void tdm_index_scan_init(struct tdm_index_scan *scan, enum tdm_index_scan_kind kind)
{
    tdm_assert(scan != NULL);
    tdm_assert(kind >= TDM_INDEX_SCAN_MESSAGE_ID);
    tdm_assert(kind <= TDM_INDEX_SCAN_EMAIL);
    memset(scan, 0, sizeof(*scan));
    scan->kind = kind;
    scan->since_ns = 0;
    scan->until_ns = INT64_MAX;
}

static void index_scan_plan_time(const struct tdm_index_scan *scan, struct index_scan_plan *plan,
                                 uint8_t *first)
{
    uint64_t since = scan->since_ns > 0 ? (uint64_t)scan->since_ns : 0;
    plan->until = scan->until_ns > 0 ? (uint64_t)scan->until_ns : 0;
    plan->empty = since >= plan->until;
    tdm_store_be64(first, since);
}

static void index_scan_plan(const struct tdm_index_scan *scan, struct index_scan_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->dup = true;
    switch (scan->kind) {
    case TDM_INDEX_SCAN_MESSAGE_ID:
    case TDM_INDEX_SCAN_USERNAME:
    case TDM_INDEX_SCAN_EMAIL:
        plan->db = scan->kind == TDM_INDEX_SCAN_MESSAGE_ID ? INDEX_DB_MESSAGE_ID
                   : scan->kind == TDM_INDEX_SCAN_USERNAME ? INDEX_DB_USERNAME
                                                           : INDEX_DB_EMAIL;
        plan->key_size = index_field_key(plan->key, scan->key, scan->key_size);
        plan->empty = plan->key_size == 0; /* Empty fields are not indexed. */
        plan->first_size =
            plan->db == INDEX_DB_MESSAGE_ID ? INDEX_LSN_SIZE : INDEX_CUSTOMER_KEY_SIZE;
        break; /* first is all zero: the smallest value. */
    case TDM_INDEX_SCAN_CUSTOMER_TIME:
        plan->db = INDEX_DB_CUSTOMER_TIME;
        plan->dup = false;
        tdm_store_be32(plan->first, scan->customer_id);
        index_scan_plan_time(scan, plan, plan->first + 4);
        plan->first_size = INDEX_TIME_KEY_SIZE; /* LSN 0 sorts before every record. */
        break;
    case TDM_INDEX_SCAN_RECIPIENT:
    case TDM_INDEX_SCAN_SENDER:
        plan->db = scan->kind == TDM_INDEX_SCAN_RECIPIENT ? INDEX_DB_RECIPIENT : INDEX_DB_SENDER;
        plan->key_size = index_address_key(plan->key, scan->customer_id, scan->key, scan->key_size);
        index_scan_plan_time(scan, plan, plan->first);
        plan->first_size = INDEX_TIME_VALUE_SIZE;
        break;
    default:
        tdm_unreachable();
    }
    tdm_assert(plan->first_size <= sizeof(plan->first));
    tdm_assert(plan->db >= INDEX_DB_MESSAGE_ID);
}

/* Decide whether the entry under the cursor belongs to the scan and, if it
 * does, which LSN it yields. Bytes of the wrong size are TANDEM_ECORRUPT. */
static int index_scan_entry(struct tdm_index *index, MDB_txn *txn,
                            const struct tdm_index_scan *scan, const struct index_scan_plan *plan,
                            const MDB_val *key, const MDB_val *value, bool *match, uint64_t *lsn)
{
    const uint8_t *k = key->mv_data;
    const uint8_t *v = value->mv_data;
    *match = false;
    switch (scan->kind) {
    case TDM_INDEX_SCAN_MESSAGE_ID:
        if (value->mv_size != INDEX_LSN_SIZE) {
            return TDM_CORRUPT(NULL, "index: message_id value of %zu bytes", value->mv_size);
        }
        *lsn = tdm_load_be64(v);
        *match = true;
        return 0;
    case TDM_INDEX_SCAN_CUSTOMER_TIME:
        if (key->mv_size != INDEX_TIME_KEY_SIZE) {
            return TDM_CORRUPT(NULL, "index: customer_time key of %zu bytes", key->mv_size);
        }
        *lsn = tdm_load_be64(k + 12);
        *match = tdm_load_be32(k) == scan->customer_id && tdm_load_be64(k + 4) < plan->until;
        return 0;
    case TDM_INDEX_SCAN_RECIPIENT:
    case TDM_INDEX_SCAN_SENDER:
        if (value->mv_size != INDEX_TIME_VALUE_SIZE) {
            return TDM_CORRUPT(NULL, "index: address value of %zu bytes", value->mv_size);
        }
        *lsn = tdm_load_be64(v + 8);
        *match = tdm_load_be64(v) < plan->until;
        return 0;
    case TDM_INDEX_SCAN_USERNAME:
    case TDM_INDEX_SCAN_EMAIL: {
        if (value->mv_size != INDEX_CUSTOMER_KEY_SIZE) {
            return TDM_CORRUPT(NULL, "index: customer id value of %zu bytes", value->mv_size);
        }
        struct index_customer_value customer = {0};
        int rv = index_customer_get(index, txn, tdm_load_be32(v), &customer, NULL);
        if (rv == TANDEM_ENOTFOUND) {
            return TDM_CORRUPT(NULL, "index: username or email of a missing customer");
        }
        *lsn = customer.lsn;
        *match = rv == 0;
        return rv;
    }
    default:
        tdm_unreachable();
    }
}

static int index_scan_step(MDB_cursor *cursor, const struct index_scan_plan *plan, MDB_val *key,
                           MDB_val *value, bool *found)
{
    int rc = mdb_cursor_get(cursor, key, value, plan->dup ? MDB_NEXT_DUP : MDB_NEXT);
    *found = rc == MDB_SUCCESS;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return index_error(rc, index_db_specs[plan->db].name, "mdb_cursor_get", NULL);
    }
    return 0;
}

/* Put the cursor on the first entry of the scan, or on the first entry after
 * the one the previous call returned last. */
static int index_scan_position(MDB_cursor *cursor, const struct tdm_index_scan *scan,
                               const struct index_scan_plan *plan, MDB_val *key, MDB_val *value,
                               bool *found)
{
    const uint8_t *from = scan->started ? scan->resume : plan->first;
    size_t from_size = scan->started ? scan->resume_size : plan->first_size;
    tdm_assert(from_size > 0);
    int rc;
    if (plan->dup) {
        *key = index_val(plan->key, plan->key_size);
        *value = index_val(from, from_size);
        rc = mdb_cursor_get(cursor, key, value, MDB_GET_BOTH_RANGE);
    } else {
        *key = index_val(from, from_size);
        rc = mdb_cursor_get(cursor, key, value, MDB_SET_RANGE);
    }
    *found = rc == MDB_SUCCESS;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return index_error(rc, index_db_specs[plan->db].name, "mdb_cursor_get", NULL);
    }
    if (!*found || !scan->started) {
        return 0;
    }
    /* The entry at the resume position itself was returned last time. */
    const MDB_val *at = plan->dup ? value : key;
    if (at->mv_size == from_size && memcmp(at->mv_data, from, from_size) == 0) {
        return index_scan_step(cursor, plan, key, value, found);
    }
    return 0;
}

/* Collect up to lsn_max LSNs from the cursor's position on. Updates the
 * resume position in scan (the caller restores it on failure). */
static int index_scan_collect(struct tdm_index *index, MDB_txn *txn, MDB_cursor *cursor,
                              struct tdm_index_scan *scan, const struct index_scan_plan *plan,
                              uint64_t *lsns, size_t lsn_max, size_t *lsn_count)
{
    MDB_val key;
    MDB_val value;
    bool found = false;
    int rv = index_scan_position(cursor, scan, plan, &key, &value, &found);
    size_t count = 0;
    bool match = false;
    while (rv == 0 && found) {
        uint64_t lsn = 0;
        rv = index_scan_entry(index, txn, scan, plan, &key, &value, &match, &lsn);
        if (rv != 0 || !match || count == lsn_max) {
            break; /* A match at count == lsn_max is only a peek: not done. */
        }
        lsns[count++] = lsn;
        const MDB_val *at = plan->dup ? &value : &key;
        tdm_assert(at->mv_size <= sizeof(scan->resume)); /* index_scan_entry checked it. */
        memcpy(scan->resume, at->mv_data, at->mv_size);
        scan->resume_size = at->mv_size;
        scan->started = true;
        rv = index_scan_step(cursor, plan, &key, &value, &found);
    }
    if (rv != 0) {
        return rv;
    }
    scan->done = !found || !match;
    *lsn_count = count;
    tdm_assert(count <= lsn_max);
    tdm_assert(scan->done || count == lsn_max);
    return 0;
}

int tdm_index_scan_next(struct tdm_index *index, struct tdm_index_scan *scan, uint64_t *lsns,
                        size_t lsn_max, size_t *lsn_count)
{
    tdm_assert(index != NULL);
    tdm_assert(scan != NULL);
    tdm_assert(lsns != NULL);
    tdm_assert(lsn_max >= 1);
    tdm_assert(lsn_count != NULL);
    tdm_assert(scan->key != NULL || scan->key_size == 0);
    if (scan->done) {
        *lsn_count = 0;
        return 0;
    }
    struct index_scan_plan plan;
    index_scan_plan(scan, &plan);
    if (plan.empty) {
        scan->done = true;
        *lsn_count = 0;
        return 0;
    }
    MDB_txn *txn = NULL;
    int rv = index_read_begin(index, &txn, NULL);
    if (rv != 0) {
        return rv;
    }
    MDB_cursor *cursor = NULL;
    int rc = mdb_cursor_open(txn, index->dbis[plan.db], &cursor);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return index_error(rc, index_db_specs[plan.db].name, "mdb_cursor_open", NULL);
    }
    struct tdm_index_scan saved = *scan;
    rv = index_scan_collect(index, txn, cursor, scan, &plan, lsns, lsn_max, lsn_count);
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    if (rv != 0) {
        *scan = saved; /* The position moves only on success. */
    }
    return rv;
}

/* ------------------------------------------------------------------------
 * Verification: comparing two indexes, removing a scratch one.
 * ------------------------------------------------------------------------ */

static bool index_val_equal(const MDB_val *a, const MDB_val *b)
{
    return a->mv_size == b->mv_size &&
           (a->mv_size == 0 || memcmp(a->mv_data, b->mv_data, a->mv_size) == 0);
}

/* Walk database db of both indexes side by side, duplicates included, up to
 * the first entry that differs. *entry_index receives the 0-based position of
 * that entry, or the entry count when both hold the same entries. */
static int index_db_compare(struct tdm_index *a, MDB_txn *ta, struct tdm_index *b, MDB_txn *tb,
                            enum index_db db, const atomic_bool *stop, bool *equal,
                            uint64_t *entry_index, struct tdm_diag *diag)
{
    const char *name = index_db_specs[db].name;
    MDB_cursor *ca = NULL;
    MDB_cursor *cb = NULL;
    int rc = mdb_cursor_open(ta, a->dbis[db], &ca);
    if (rc == MDB_SUCCESS) {
        rc = mdb_cursor_open(tb, b->dbis[db], &cb);
    }
    if (rc != MDB_SUCCESS) {
        if (ca != NULL) {
            mdb_cursor_close(ca);
        }
        return index_error(rc, name, "mdb_cursor_open", diag);
    }
    MDB_val ka, va, kb, vb;
    int ra = mdb_cursor_get(ca, &ka, &va, MDB_FIRST);
    int rb = mdb_cursor_get(cb, &kb, &vb, MDB_FIRST);
    uint64_t n = 0;
    while (ra == MDB_SUCCESS && rb == MDB_SUCCESS) {
        if (!index_val_equal(&ka, &kb) || !index_val_equal(&va, &vb)) {
            break;
        }
        n++;
        if (stop != NULL && n % TDM_INDEX_COMPARE_STOP_ENTRIES == 0 && atomic_load(stop)) {
            mdb_cursor_close(ca);
            mdb_cursor_close(cb);
            tdm_diag_printf(diag, "index comparison stopped in database %s at entry %" PRIu64, name,
                            n);
            return TANDEM_ECANCELED;
        }
        ra = mdb_cursor_get(ca, &ka, &va, MDB_NEXT);
        rb = mdb_cursor_get(cb, &kb, &vb, MDB_NEXT);
    }
    mdb_cursor_close(ca);
    mdb_cursor_close(cb);
    if (ra != MDB_SUCCESS && ra != MDB_NOTFOUND) {
        return index_error(ra, name, "mdb_cursor_get", diag);
    }
    if (rb != MDB_SUCCESS && rb != MDB_NOTFOUND) {
        return index_error(rb, name, "mdb_cursor_get", diag);
    }
    *equal = ra == MDB_NOTFOUND && rb == MDB_NOTFOUND;
    *entry_index = n;
    return 0;
}

/* tdm_index_compare(), and tdm_index_compare_at() when at is not NULL. */
static int index_compare(struct tdm_index *index, struct tdm_index *reference, const uint64_t *lsn,
                         const atomic_bool *stop, bool *at, bool *equal, char *difference,
                         size_t difference_size, struct tdm_diag *diag)
{
    tdm_assert(index != NULL);
    tdm_assert(reference != NULL);
    tdm_assert(index->env != reference->env);
    MDB_txn *ta = NULL;
    MDB_txn *tb = NULL;
    int rv = index_read_begin(index, &ta, diag);
    if (rv != 0) {
        return rv;
    }
    if (lsn != NULL) {
        uint64_t found = 0;
        struct tdm_chain_hash chain;
        rv = index_watermark_get(index, ta, &found, &chain, diag);
        *at = rv == 0 && found == *lsn;
        if (rv != 0 || !*at) {
            mdb_txn_abort(ta);
            return rv;
        }
    }
    rv = index_read_begin(reference, &tb, diag);
    if (rv != 0) {
        mdb_txn_abort(ta);
        return rv;
    }
    bool same = true;
    for (int db = INDEX_DB_META; db < INDEX_DB__COUNT && rv == 0 && same; db++) {
        uint64_t entry_index = 0;
        rv = index_db_compare(index, ta, reference, tb, (enum index_db)db, stop, &same,
                              &entry_index, diag);
        if (rv == 0 && !same && difference != NULL) {
            snprintf(difference, difference_size,
                     "database %s differs from a rebuild at entry %" PRIu64,
                     index_db_specs[db].name, entry_index);
        }
    }
    mdb_txn_abort(ta);
    mdb_txn_abort(tb);
    if (rv == 0) {
        *equal = same;
    }
    return rv;
}

int tdm_index_compare(struct tdm_index *index, struct tdm_index *reference, bool *equal,
                      char *difference, size_t difference_size, struct tdm_diag *diag)
{
    return index_compare(index, reference, NULL, NULL, NULL, equal, difference, difference_size,
                         diag);
}

int tdm_index_compare_at(struct tdm_index *index, struct tdm_index *reference, uint64_t lsn,
                         const atomic_bool *stop, bool *at, bool *equal, char *difference,
                         size_t difference_size, struct tdm_diag *diag)
{
    tdm_assert(at != NULL);
    *at = false;
    return index_compare(index, reference, &lsn, stop, at, equal, difference, difference_size,
                         diag);
}

/* LMDB's two files in an environment directory. */
static const char *const index_file_names[] = {"data.mdb", "lock.mdb"};

/* Unlink LMDB's files in env_dir (absent ones are fine). */
static int index_remove_files(const char *env_dir, struct tdm_diag *diag)
{
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < sizeof(index_file_names) / sizeof(index_file_names[0]); i++) {
        char path[INDEX_PATH_SIZE];
        rv = index_path(path, env_dir, index_file_names[i], diag);
        if (rv == 0 && unlink(path) != 0 && errno != ENOENT) {
            rv = -errno;
            tdm_diag_printf(diag, "index: unlink %s: %s", path, tandem_strerror(rv));
        }
    }
    return rv;
}

int tdm_index_remove_at(const char *node_dir, const char *name, struct tdm_diag *diag)
{
    tdm_assert(node_dir != NULL);
    tdm_assert(name != NULL);
    char env_dir[INDEX_PATH_SIZE];
    int rv = index_path(env_dir, node_dir, name, diag);
    if (rv == 0) {
        rv = index_remove_files(env_dir, diag);
    }
    if (rv == 0 && rmdir(env_dir) != 0 && errno != ENOENT) {
        rv = -errno;
        tdm_diag_printf(diag, "index: rmdir %s: %s", env_dir, tandem_strerror(rv));
    }
    return rv;
}

int tdm_index_discard(const char *node_dir, struct tdm_diag *diag)
{
    tdm_assert(node_dir != NULL);
    char env_dir[INDEX_PATH_SIZE];
    int rv = index_path(env_dir, node_dir, "index", diag);
    return rv == 0 ? index_remove_files(env_dir, diag) : rv;
}
