/* tandem.h: the one public header of libtandem.
 *
 * A mail frontend links libtandem to store the metadata of each processed mail
 * (a message record) and the identity of each customer (a customer record) in a
 * node directory, and to query them. This header documents every function the
 * way LMDB documents its own: parameters and their ownership, the error codes a
 * caller must handle, and thread safety.
 *
 * Conventions:
 * - Every function that can fail returns int: 0 on success, a negative value on
 *   failure. Values in [-4095, -1] are negated errno values from the operating
 *   system (-EIO, -ENOSPC, -ENOMEM, ...). tandem's own conditions live in
 *   [-20999, -20000]. tandem_strerror() names both.
 * - Results are written to out-parameters only on success.
 * - Pointer parameters are borrowed for the duration of the call unless the
 *   comment says otherwise.
 * - Functions that take a struct tandem_diag fill it with one line naming the
 *   cause when they fail (it may be NULL).
 */
#ifndef TANDEM_H
#define TANDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TANDEM_VERSION_MAJOR 0
#define TANDEM_VERSION_MINOR 1

/* Error codes. Each function lists the ones that mean something specific for
 * it; any other negative value is an operating-system error to report. */
enum tandem_error {
    TANDEM_EINVALID = -20001,    /* A record or argument breaks a documented limit. */
    TANDEM_ENOTPRIMARY = -20002, /* This node is not the primary. */
    TANDEM_ESTALEEPOCH = -20003, /* A peer spoke from an older epoch. */
    TANDEM_ECOPIES = -20004,     /* Fewer than min_copies held the write before the deadline. */
    TANDEM_ECORRUPT = -20005,    /* Stored or received bytes failed a checksum. */
    TANDEM_EFAILED = -20006,     /* The node stopped accepting writes after fatal I/O. */
    TANDEM_ECANCELED = -20007,   /* The request was cancelled because its owner closed. */
    TANDEM_ELOCKED = -20008,     /* Another process owns the directory for writing. */
    TANDEM_ENOTFOUND = -20009,   /* No such record. */
    TANDEM_EREADONLY = -20010,   /* The handle was opened read-only. */
    TANDEM_EDAMAGED = -20011, /* The log is damaged: the range must be repaired from a replica. */
    TANDEM_EFORMAT =
        -20012,            /* Not a tandem directory, or a format version this build cannot read. */
    TANDEM_EBUSY = -20013, /* Too many requests in flight; try again. */
};

/* Return a static, human-readable name for a tandem or errno code. Thread-safe. */
const char *tandem_strerror(int code);

/* One line of human detail beside an error code. */
#define TANDEM_DIAG_SIZE 256
struct tandem_diag {
    char message[TANDEM_DIAG_SIZE]; /* NUL-terminated; empty when nothing was reported. */
};

/* Limits of a record, in bytes unless stated. The addresses follow RFC 5321
 * (64-byte local part, '@', 255-byte domain); Message-ID and subject follow the
 * 998-byte line limit of RFC 5322. A record that breaks one is rejected with
 * TANDEM_EINVALID and a diag naming the field; nothing is ever truncated. */
#define TANDEM_ADDRESS_SIZE_MAX     320          /* recipient, sender, email */
#define TANDEM_MESSAGE_ID_SIZE_MAX  998          /* message_id */
#define TANDEM_SUBJECT_SIZE_MAX     998          /* subject (raw bytes, any encoding) */
#define TANDEM_THREAT_SIZE_MAX      255          /* threat */
#define TANDEM_NAME_SIZE_MAX        128          /* first_name, last_name */
#define TANDEM_USERNAME_SIZE_MAX    128          /* username */
#define TANDEM_PHONE_SIZE_MAX       32           /* phone */
#define TANDEM_POSTAL_SIZE_MAX      512          /* address (postal business address) */
#define TANDEM_MESSAGE_SIZE_MAX     (1ULL << 40) /* size: 1 TiB */
#define TANDEM_SPAM_SCORE_MILLI_MAX 1000000000   /* |spam_score| <= 1,000,000.000 */
#define TANDEM_APPEND_RECORDS_MAX   4096         /* records in one tandem_append() call */
#define TANDEM_APPEND_SIZE_MAX      (8u << 20)   /* their encoded bytes, 4 per record included */

enum tandem_record_type {
    TANDEM_RECORD_MESSAGE = 1,
    TANDEM_RECORD_CUSTOMER = 2,
};

enum tandem_destination {
    TANDEM_DESTINATION_DELIVERED = 1,
    TANDEM_DESTINATION_QUARANTINED = 2,
};

enum tandem_classification {
    TANDEM_CLASSIFICATION_CLEAN = 1,
    TANDEM_CLASSIFICATION_SPAM = 2,
    TANDEM_CLASSIFICATION_VIRUS = 3,
    TANDEM_CLASSIFICATION_BANNED_FILE = 4,
    TANDEM_CLASSIFICATION_BAD_HEADER = 5,
    TANDEM_CLASSIFICATION_OVERSIZED = 6,
};

/* A byte string, not necessarily NUL-terminated nor valid UTF-8. Strings in
 * records returned by the library are followed by a NUL byte (data[size] == 0)
 * for convenience; strings passed in need not be. */
struct tandem_bytes {
    const char *data; /* May be NULL when size is 0. */
    size_t size;      /* Bytes. */
};

/* An IPv4 or IPv6 address. */
struct tandem_ip {
    uint8_t family;    /* 4 or 6. */
    uint8_t bytes[16]; /* Network order; IPv4 uses the first 4 bytes, the rest are 0. */
};

/* The metadata of one processed mail for one recipient. */
struct tandem_message {
    uint32_t customer_id;
    int64_t time_ns; /* UTC nanoseconds since 1970; >= 0. */
    uint64_t size;   /* Bytes; <= TANDEM_MESSAGE_SIZE_MAX. */
    enum tandem_destination destination;
    enum tandem_classification classification;
    struct tandem_bytes threat;     /* Virus or banned-file name; may be empty. */
    struct tandem_bytes recipient;  /* Address; not empty. */
    int32_t spam_score_milli;       /* Spam score times 1000 (three decimals). */
    struct tandem_bytes message_id; /* May be empty. */
    struct tandem_bytes sender;     /* Address; empty for bounces. */
    struct tandem_ip relay_ip;      /* The server that relayed the message. */
    struct tandem_bytes subject;    /* Raw header bytes. */
};

/* The identity of one customer account. A newer record for the same
 * customer_id replaces the older one. */
struct tandem_customer {
    uint32_t customer_id;
    struct tandem_bytes first_name;
    struct tandem_bytes last_name;
    struct tandem_bytes email;
    struct tandem_bytes username;
    struct tandem_bytes phone;
    struct tandem_bytes address; /* Postal business address. */
};

struct tandem_record {
    enum tandem_record_type type;
    union {
        struct tandem_message message;   /* When type is TANDEM_RECORD_MESSAGE. */
        struct tandem_customer customer; /* When type is TANDEM_RECORD_CUSTOMER. */
    };
};

/* Check a record against every documented limit without storing it.
 * Returns 0, or TANDEM_EINVALID with diag naming the field and the limit
 * (for example "recipient: 321 bytes, limit 320"). Thread-safe. */
int tandem_record_validate(const struct tandem_record *record, struct tandem_diag *diag);

/* ------------------------------------------------------------------------
 * Opening a node directory.
 * ------------------------------------------------------------------------ */

/* An open node directory. Thread-safe: every function below may be called from
 * any thread once tandem_open() has returned, except tandem_close(). */
struct tandem;

#define TANDEM_OPEN_READONLY 0x1u /* Query only; take no lock; modify no file. */
#define TANDEM_OPEN_CREATE   0x2u /* Create the log/, index/ and quarantine/ directories. */

struct tandem_options {
    uint32_t flags;        /* TANDEM_OPEN_* bits. */
    uint64_t segment_size; /* Bytes at which a segment is sealed; 0 = default (64 MiB). */
};

/* Fill options with the defaults. */
void tandem_options_init(struct tandem_options *options);

/* Open the node directory dir.
 *
 * A writer takes the directory's lock, checks the tail of the log batch by
 * batch (cutting a torn, never-acknowledged tail into dir/quarantine/), finds
 * any damage in sealed segments (reported by tandem_status(), never cut off)
 * and brings the index up to date with the log. A reader (TANDEM_OPEN_READONLY)
 * takes no lock, modifies nothing and may run beside the writer.
 *
 * Returns 0 and *out, or:
 * - TANDEM_ELOCKED: another process has the directory open for writing;
 * - TANDEM_EFORMAT: dir is not a node directory or its format is too new;
 * - TANDEM_ECORRUPT: a file that recovery cannot interpret safely;
 * - negative errno from the file system.
 * The handle must be released with tandem_close(). */
int tandem_open(const char *dir, const struct tandem_options *options, struct tandem **out,
                struct tandem_diag *diag);

/* Finish every write in flight (their callbacks run), flush, release the lock
 * and free the handle. No other call may run on the handle during or after. */
void tandem_close(struct tandem *t);

/* ------------------------------------------------------------------------
 * Writing.
 * ------------------------------------------------------------------------ */

/* Append count records (1..TANDEM_APPEND_RECORDS_MAX) and wait until they are
 * durable. Records of one call get consecutive LSNs; *lsn_first receives the
 * first. Many threads may call at once: their records share a batch and one
 * fdatasync (group commit). The records are copied; the caller's memory is
 * free again when the call returns.
 *
 * Returns 0, or:
 * - TANDEM_EINVALID: a record breaks a limit (diag names the record's index
 *   and the field), or the records together take more than
 *   TANDEM_APPEND_SIZE_MAX bytes encoded (docs/FORMAT.md "Record encoding",
 *   plus 4 bytes each: only calls of thousands of large records come near);
 *   nothing of this call was stored;
 * - TANDEM_EFAILED: the node stopped accepting writes after a failed write or
 *   fdatasync (tandem_status() says why); reopen after fixing the cause;
 * - TANDEM_EDAMAGED: the tail of the log is damaged and must be repaired;
 * - TANDEM_EREADONLY: the handle is read-only;
 * - TANDEM_ECANCELED: the handle is closing. */
int tandem_append(struct tandem *t, const struct tandem_record *records, size_t count,
                  uint64_t *lsn_first, struct tandem_diag *diag);

/* Completion of tandem_append_async(). status is 0 or one of tandem_append()'s
 * codes; lsn_first is valid only when status is 0. Runs on the engine's commit
 * thread: it must be quick, and must not call tandem_append() nor
 * tandem_close(). */
typedef void (*tandem_append_cb)(void *data, int status, uint64_t lsn_first);

/* Like tandem_append() but returns at once; cb runs exactly once when the
 * records are durable or have failed. If tandem_append_async() itself returns an
 * error (TANDEM_EINVALID, TANDEM_EREADONLY, TANDEM_EFAILED, TANDEM_ECANCELED),
 * cb is never called. data is retained until cb runs. */
int tandem_append_async(struct tandem *t, const struct tandem_record *records, size_t count,
                        tandem_append_cb cb, void *data, struct tandem_diag *diag);

/* ------------------------------------------------------------------------
 * Reading. Every query sees at least every record durable before it started.
 * Results are delivered to a callback, one record at a time, in the order
 * documented; the record and its strings are valid only during the callback.
 * A callback returns 0 to go on or non-zero to stop early (the query then
 * returns 0).
 *
 * Queries return 0 (even when nothing matched), or:
 * - TANDEM_EINVALID: a bad argument (diag says which);
 * - TANDEM_ECORRUPT or TANDEM_EDAMAGED: a matching record lies in a damaged
 *   range of the log; records before it were delivered;
 * - negative errno.
 * ------------------------------------------------------------------------ */

typedef int (*tandem_record_cb)(void *data, uint64_t lsn, const struct tandem_record *record);

/* Every message record with this Message-ID (1..TANDEM_MESSAGE_ID_SIZE_MAX
 * bytes; records with an empty Message-ID are not indexed by it), in LSN order. */
int tandem_get(struct tandem *t, const char *message_id, size_t message_id_size,
               tandem_record_cb cb, void *data, struct tandem_diag *diag);

/* A customer's message records with since_ns <= time < until_ns, in time order
 * (ties in LSN order), optionally only those to one recipient and/or from one
 * sender. */
struct tandem_query {
    uint32_t customer_id;
    int64_t since_ns;              /* Inclusive. */
    int64_t until_ns;              /* Exclusive; INT64_MAX for "no end". */
    struct tandem_bytes recipient; /* Empty: any recipient. */
    struct tandem_bytes sender;    /* Empty: any sender (use sender_empty for bounces). */
    bool sender_empty;             /* Only bounces (empty sender). */
};
void tandem_query_init(struct tandem_query *query, uint32_t customer_id);
int tandem_query(struct tandem *t, const struct tandem_query *query, tandem_record_cb cb,
                 void *data, struct tandem_diag *diag);

/* The current customer record of customer_id (at most one call of cb). */
int tandem_customer_get(struct tandem *t, uint32_t customer_id, tandem_record_cb cb, void *data,
                        struct tandem_diag *diag);

/* The current customer records whose username (or email) equals value, in
 * customer_id order. For logins. */
enum tandem_customer_key {
    TANDEM_CUSTOMER_KEY_USERNAME = 1,
    TANDEM_CUSTOMER_KEY_EMAIL = 2,
};
int tandem_customer_find(struct tandem *t, enum tandem_customer_key key, const char *value,
                         size_t value_size, tandem_record_cb cb, void *data,
                         struct tandem_diag *diag);

/* The record at one LSN. Returns TANDEM_ENOTFOUND outside the log. */
int tandem_read(struct tandem *t, uint64_t lsn, tandem_record_cb cb, void *data,
                struct tandem_diag *diag);

/* ------------------------------------------------------------------------
 * Status and maintenance.
 * ------------------------------------------------------------------------ */

#define TANDEM_STATUS_DAMAGED_MAX 16

/* A range of the log whose bytes fail their checksums. */
struct tandem_damage {
    uint64_t lsn_first;   /* First LSN of the range (0 if unknown). */
    uint64_t lsn_last;    /* Last LSN of the range (0 if unknown). */
    uint64_t segment_lsn; /* The segment file's first LSN (its name). */
    uint64_t offset;      /* Byte offset of the damage in the segment file. */
    bool sealed;          /* Inside a sealed segment. */
};

struct tandem_status {
    uint64_t lsn_first;                    /* First LSN in the log; 0 if empty. */
    uint64_t lsn_last;                     /* Last durable LSN; 0 if empty. */
    uint64_t index_lsn;                    /* LSN the index is current to. */
    uint64_t epoch;                        /* Epoch of the last batch; 1 on a new node. */
    uint8_t chain_hash[16];                /* Chain hash at lsn_last. */
    uint32_t segment_count;                /* Segment files, sealed and open. */
    uint32_t sealed_count;                 /* Sealed segments. */
    uint64_t log_bytes;                    /* Bytes in segment files. */
    uint64_t quarantine_bytes;             /* Bytes held in quarantine/. */
    uint32_t quarantine_count;             /* Files in quarantine/. */
    bool read_only;                        /* The handle is read-only. */
    int failed_code;                       /* 0, or the error that stopped writes. */
    char failed_message[TANDEM_DIAG_SIZE]; /* Why writes stopped. */
    uint32_t damaged_count;                /* Damaged ranges found (may exceed the array). */
    struct tandem_damage damaged[TANDEM_STATUS_DAMAGED_MAX];
};

/* Fill status. Thread-safe. */
int tandem_status(struct tandem *t, struct tandem_status *status);

/* Rebuild the index of the node directory dir from the log, from scratch.
 * Takes the directory's lock (TANDEM_ELOCKED if a writer holds it). */
int tandem_reindex(const char *dir, struct tandem_diag *diag);

/* ------------------------------------------------------------------------
 * Verification.
 * ------------------------------------------------------------------------ */

#define TANDEM_VERIFY_DEEP 0x1u /* Also prove the index equals a rebuild from the log. */

/* What tandem_verify() found. */
struct tandem_verify_report {
    uint32_t segment_count; /* Segment files checked, sealed and open. */
    uint32_t sealed_count;  /* Of which sealed. */
    uint64_t segment_bytes; /* Bytes in those files. */
    uint64_t read_bytes;    /* Bytes re-read from the medium. */
    uint64_t lsn_first;     /* LSN range of the log; 0 if empty. */
    uint64_t lsn_last;      /* Last LSN of the log; 0 if empty. */
    uint8_t chain_hash[16]; /* Chain hash at lsn_last, as recomputed (zeros if empty). */
    uint32_t damaged_count; /* Damaged ranges found (may exceed the array). */
    struct tandem_damage damaged[TANDEM_STATUS_DAMAGED_MAX];
    bool index_checked; /* DEEP ran the index comparison (skipped when damaged). */
    bool index_equal;   /* The index equalled a rebuild from the log. */
    bool index_rebuilt; /* It did not, and was rebuilt from the log. */
    uint64_t index_lsn; /* LSN the index was current to when found. */
    char index_difference[TANDEM_DIAG_SIZE]; /* Why it was not equal; empty if it was. */
};

/* Verify the node directory dir now, with no tandemd running there: take the
 * directory's lock (as tandem_reindex() does), open and recover the log, then
 * re-read every segment, sealed and open, from the medium (not the page
 * cache), unthrottled, recomputing every batch checksum, the chain hash across
 * batches and segments, and every footer. Damaged ranges are reported as
 * tandem_status() reports them; nothing in the log is modified.
 *
 * With TANDEM_VERIFY_DEEP and an undamaged log, also prove that the index
 * (DIR/index) equals a rebuild from the log: a rebuild goes into a scratch
 * environment, DIR/index.verify (removed afterwards), and every named
 * database is compared entry by entry. An index that is behind the log but
 * agrees with it is first brought up to date, as an open would. An index that
 * differs is rebuilt from the log (tandem_reindex()) and the report says so;
 * so is one whose files do not open (damaged), which a verify without DEEP
 * leaves as it is (the log is still checked). With damage in the log the
 * comparison is skipped: a rebuild would drop the damaged records' entries,
 * which repair from a replica restores.
 *
 * Returns 0 and *report whatever was found (a damaged log or a rebuilt index
 * is a result, not an error), or:
 * - TANDEM_ELOCKED: a tandemd (or another writer) has the directory open;
 * - TANDEM_EFORMAT: dir is not a node directory;
 * - TANDEM_EINVALID: unknown flags;
 * - negative errno (I/O) or an index failure, with diag. */
int tandem_verify(const char *dir, unsigned flags, struct tandem_verify_report *report,
                  struct tandem_diag *diag);

/* ------------------------------------------------------------------------
 * Client of a running node (tandemd), local or remote.
 *
 * The functions above open a node directory in this process. A client instead
 * talks to the tandemd that owns a node (docs/PROTOCOL.md §7): through the
 * node directory's local socket on the same host, or over TCP with mutual
 * TLS 1.3 to the node's listen address (the port its peers use). A remote
 * client holds a client certificate of the cluster CA (`tandem ca CADIR
 * --client NAME` writes node.key, node.crt and ca.crt into a directory) and
 * accepts any node of that CA as the server.
 *
 * Thread: a client may be shared by any number of threads: calls from
 * several threads at once are pipelined over its one connection (each call
 * still blocks until the node answers it; requests that queue while one is
 * being written leave together, and answers go to their callers by request
 * id; at most 64 calls are in flight on one client, more wait for room).
 * Appends from several threads may travel as one request: each call's
 * records still get consecutive LSNs, in its order, and each call returns
 * once its records are acknowledged (or fails with the request's error).
 * A process with many worker threads needs one client, not one per
 * thread: fewer connections, fewer syscalls, and the node groups their
 * writes. tandem_client_close() must not run while a call on the client
 * does. A failure of the connection fails every call waiting on it.
 * ------------------------------------------------------------------------ */

struct tandem_client;

/* Connect to the node at addr:
 * - "HOST:PORT" (an IPv4 address, a DNS name, or [IPv6]:PORT): TCP + mutual
 *   TLS 1.3 with the credentials in cert_dir (node.key, node.crt, ca.crt; a
 *   client certificate, CN "client:NAME"); cert_dir NULL: the directory named
 *   by the environment variable TANDEM_CERT. Connect and handshake are bounded
 *   by 10 seconds.
 * - a node directory: its local socket DIR/tandemd.sock (cert_dir unused).
 * An existing file or directory named addr is always taken as a directory.
 * Returns 0 and *out (release with tandem_client_close()), or a negative code
 * with diag naming the cause in one line:
 * - TANDEM_EINVALID: addr is neither; no cert_dir nor TANDEM_CERT for
 *   HOST:PORT; cert_dir holds a node's certificate rather than a client's, or
 *   a certificate not issued by its ca.crt;
 * - -ENOENT: no tandemd runs in the directory (no socket), or a credential
 *   file is missing; -ECONNREFUSED: nothing listens (a stale socket, a closed
 *   port); -EHOSTUNREACH: the host does not resolve or cannot be reached;
 * - -ETIMEDOUT: no connection or no handshake within 10 seconds;
 * - -EACCES: the node's certificate is not from the cluster CA (or is not a
 *   node's), or the node refused ours during the handshake;
 * - -EPROTO: the peer does not speak TLS 1.3 (not a tandem node).
 * In TLS 1.3 a node checks the client's certificate after the client's side of
 * the handshake is complete, so a node that refuses it may be heard only by
 * the first request, which then fails with -EACCES ("peer refused our
 * certificate (...)"). */
int tandem_client_open(const char *addr, const char *cert_dir, struct tandem_client **out,
                       struct tandem_diag *diag);

/* Append count records (1..TANDEM_APPEND_RECORDS_MAX) as one request and wait
 * for the node's answer: returns 0 once the records are acknowledged (durable
 * on min_copies nodes; on a standalone node, fdatasync'd) and sets *lsn_first
 * (the records hold lsn_first .. lsn_first + count - 1, in order). Every record
 * is checked against the limits here first, and the encoded request must fit
 * one client frame (8 MiB, about 2000 records of the largest size): larger
 * calls are refused whole. The records are copied; the caller's memory is
 * free again when the call returns.
 *
 * Returns 0, or the node's code with its message in diag:
 * - TANDEM_EINVALID: a record breaks a limit (diag names its index and the
 *   field), or the request is too large; nothing of this call was sent;
 * - TANDEM_ECOPIES: fewer than min_copies nodes held the records before the
 *   write deadline: they are not acknowledged (they may still be stored);
 * - TANDEM_ENOTPRIMARY, TANDEM_EFAILED, TANDEM_EDAMAGED, TANDEM_EBUSY, ...:
 *   as the node reports them;
 * or a failure of the connection (-ECONNRESET: the node closed it, -EACCES,
 * -EPROTO, TANDEM_ECORRUPT: a garbled answer, -errno): the outcome of this
 * append is then unknown, and every later call on this client returns the
 * same code: close it and open a new one. */
int tandem_client_append(struct tandem_client *client, const struct tandem_record *records,
                         size_t count, uint64_t *lsn_first, struct tandem_diag *diag);

/* Completion of tandem_client_append_async(): status is 0 or one of
 * tandem_client_append()'s codes, lsn_first is valid only when status is 0,
 * and diag (NULL when status is 0, valid only during the call) holds the
 * message. Runs on the client's
 * own thread, without any lock of the client held: it must be quick, may call
 * tandem_client_append_async(), and must not call tandem_client_close() nor a
 * blocking tandem_client_* function (those return TANDEM_EINVALID there). */
typedef void (*tandem_client_append_cb)(void *data, int status, uint64_t lsn_first,
                                        const struct tandem_diag *diag);

/* Like tandem_client_append(), but returns as soon as the request is queued:
 * cb runs exactly once, when the node has answered (the records are
 * acknowledged, or refused) or the connection has failed. For a program that
 * drives many writes from one thread (an event loop), as pgbench drives its
 * clients: it saves a thread and two context switches per call. The first
 * call starts the client's thread, which from then on reads every answer on
 * this client and runs the callbacks, in the order the answers came (calls
 * combined into one request complete in the order they were made). Sync and
 * async calls may be mixed on one client.
 * At most 64 calls (of either kind) are in flight per client: a further call
 * waits for room, except inside a callback, where it returns TANDEM_EBUSY.
 * Returns 0 once queued; or, with cb never called, TANDEM_EINVALID (a record
 * breaks a limit, the request is too large, cb is NULL), TANDEM_EBUSY,
 * -ENOMEM, -errno (the thread could not start), or the connection's failure.
 * tandem_client_close() ends the calls not answered by then: their callbacks
 * run with TANDEM_ECANCELED (the outcome is unknown: the records may be
 * stored) before it returns. */
int tandem_client_append_async(struct tandem_client *client, const struct tandem_record *records,
                               size_t count, tandem_client_append_cb cb, void *data,
                               struct tandem_diag *diag);

/* The node's status document: the JSON object `tandem status --json` prints
 * (schema 1; DESIGN "Public contracts": cluster, health, primary, epoch, nodes
 * with roles, LSNs, lag and links), NUL-terminated, in *json, which the caller
 * releases with free(). Returns 0, a code the node reports with diag, or a
 * failure of the connection (as for tandem_client_append()). */
int tandem_client_status(struct tandem_client *client, char **json, struct tandem_diag *diag);

/* Operator commands (docs/PROTOCOL.md §7.5; DESIGN "Switchover, failover").
 * tandem_client_switchover() asks the node (the acting primary) to hand the
 * primary role to node target, or, target NULL or "", to the next live,
 * caught-up node of its rotation; tandem_client_failover() asks the node,
 * which must be target itself, to promote itself (flags: TANDEM_FAILOVER_*).
 * Each waits for the outcome (at most about 15 s): the node's answer, one
 * JSON object ("outcome": "done", "refused", "abandoned" or "dry run";
 * "refusal", "reason", "target", "primary", "epoch", "pause_ms", and for a
 * failover the probe's "nodes" and the "risk"), NUL-terminated, in *json,
 * which the caller releases with free(). Returns 0 whenever the node decided
 * (a refusal too: read "outcome"), or the node's code with its message
 * (TANDEM_EINVALID: a standalone node, an unknown target, a failover sent to
 * another node than its target; -ETIMEDOUT: no outcome in time), or a
 * failure of the connection (as for tandem_client_append()). */
#define TANDEM_FAILOVER_FORCE   0x1u /* Promote even against the rules. */
#define TANDEM_FAILOVER_DRY_RUN 0x2u /* Only probe and say what it would do. */
int tandem_client_switchover(struct tandem_client *client, const char *target, char **json,
                             struct tandem_diag *diag);
int tandem_client_failover(struct tandem_client *client, const char *target, unsigned flags,
                           char **json, struct tandem_diag *diag);

/* Close the connection and free the client. client may be NULL. No blocking
 * call may be running on it; asynchronous appends not answered yet end first,
 * their callbacks run with TANDEM_ECANCELED. Not from a callback. */
void tandem_client_close(struct tandem_client *client);

/* ------------------------------------------------------------------------
 * Running a node in this process.
 *
 * An application that embeds the engine runs its node as tandemd would: the
 * same tandem.conf, the same local socket, and for a replicated node the same
 * links to its peers and the same TLS clients, so that it gets the same
 * replication by linking libtandem. tandemd itself is nothing more than
 * tandem_server_start(), a wait for SIGTERM or SIGINT and tandem_server_stop().
 *
 * Writes: the application writes through the client API on the node's own
 * local socket, tandem_client_open(dir, NULL, ...) then
 * tandem_client_append(), exactly as tandemd's clients do: an append returns
 * once the records are durable on min_copies nodes (a backup forwards it to
 * the primary). Never call tandem_append() or tandem_append_async() on
 * tandem_server_node(): on a replicated node that would write to this copy
 * alone, behind the replication's back (its log would no longer match its
 * peers'), and the library does not stop it.
 * Reads: tandem_get(), tandem_query(), tandem_customer_get(), ... on
 * tandem_server_node() answer from this process's copy, as every node does
 * (on a backup, an acknowledged record may appear a moment after the append
 * returned on another node).
 *
 * The node runs on a thread of the server's own, with every signal blocked
 * (the engine's threads inherit that mask): signals sent to the process go
 * to the application's threads, and the server installs no signal handler
 * and changes no signal disposition.
 * ------------------------------------------------------------------------ */

struct tandem_server;

#define TANDEM_SERVER_TRACE 0x1u /* Write one line per event on stderr (see below). */

struct tandem_server_options {
    uint32_t flags; /* TANDEM_SERVER_* bits. */
};

/* Fill options with the defaults (no flag). */
void tandem_server_options_init(struct tandem_server_options *options);

/* Run the node in the node directory dir (made by `tandem init`) as `tandemd
 * dir` does, on a thread of its own:
 * 1. read dir/tandem.conf: [node] cluster and id; a node whose [replication]
 *    section sets listen or peer.<ID> is replicated (listen, peer.<ID>,
 *    primary, min_copies, write_deadline_ms, tls_key, tls_cert, tls_ca;
 *    docs/OPERATIONS.md);
 * 2. open the node for writing (tandem_open(): takes dir's lock, recovers);
 * 3. serve the local socket dir/tandemd.sock (mode 0600) and, for a
 *    replicated node, dial and accept the peers' links and accept TLS clients
 *    on its listen address.
 * Returns once the node serves (a client may connect at once): 0 and *out,
 * which must be released with tandem_server_stop(). options may be NULL (the
 * defaults); with TANDEM_SERVER_TRACE, the server's events (listening, client
 * errors, stopping, stopped) are written to stderr, one line each ("tandem:
 * ..."), as tandemd logs them: this turns the library's trace lines on for
 * the whole process, as TANDEM_TRACE=1 in the environment does.
 *
 * On failure nothing is left running (no thread, no socket file, dir's lock
 * released) and diag names the cause in one line:
 * - -ENOENT: no dir/tandem.conf ("create the node with tandem init");
 * - TANDEM_EINVALID: a bad setting, with its key ("dir/tandem.conf: line 14:
 *   bad value: [replication] min_copies = 0", "[replication] tls_key, ...
 *   are required"), a bad argument, or an unknown flag;
 * - TANDEM_ELOCKED: another process (a tandemd?) or server owns dir;
 * - TANDEM_EFORMAT, TANDEM_ECORRUPT, negative errno: as tandem_open();
 * - -EADDRINUSE: a live server answers on dir/tandemd.sock, or the listen
 *   address is taken; -ENOENT, TANDEM_EINVALID: TLS credentials that cannot
 *   be read; TANDEM_EINVALID: an address that does not resolve;
 * - -ENAMETOOLONG: dir/tandemd.sock is longer than a Unix socket path
 *   allows (about 100 bytes);
 * - -ENOMEM, -EAGAIN (no thread).
 * Blocks while the node opens (recovery of a large log may take a while).
 * Any thread. */
int tandem_server_start(const char *dir, const struct tandem_server_options *options,
                        struct tandem_server **out, struct tandem_diag *diag);

/* What the server runs, from tandem.conf. */
#define TANDEM_SERVER_NAME_SIZE 64  /* Cluster names and node ids: 1-63 bytes and a NUL. */
#define TANDEM_SERVER_ADDR_SIZE 264 /* "HOST:PORT" or "[IPv6]:PORT" and a NUL. */
struct tandem_server_info {
    char cluster[TANDEM_SERVER_NAME_SIZE]; /* [node] cluster. */
    char node_id[TANDEM_SERVER_NAME_SIZE]; /* [node] id. */
    bool replicated;                       /* Links to peers; false: a standalone node. */
    char listen[TANDEM_SERVER_ADDR_SIZE];  /* Links and TLS clients; empty when standalone. */
    uint32_t node_count;                   /* Nodes of the cluster, this one included. */
    uint32_t min_copies;                   /* Copies of an acknowledged write (1 standalone). */
};

/* Fill info. Any thread, until tandem_server_stop(). */
void tandem_server_info(const struct tandem_server *server, struct tandem_server_info *info);

/* The node open in this process, for queries on this process's copy
 * (tandem_get(), tandem_query(), tandem_customer_get(), tandem_status(), ...)
 * from any thread. Borrowed: valid until tandem_server_stop(), and never to be
 * closed (tandem_close()) nor written to (tandem_append()) by the caller;
 * write through tandem_client_append() on the local socket (see above). */
struct tandem *tandem_server_node(struct tandem_server *server);

/* Stop as tandemd stops on SIGTERM: accept no new connection, answer every
 * request in flight (their appends complete or fail with their codes), close
 * the links and the local socket (its file is removed), join the server's
 * thread, close the node (flushed, lock released) and free server. Returns
 * once all of that is done, within seconds. server may be NULL. No call may
 * run on server, nor on tandem_server_node(server), during or after; clients
 * still open get -ECONNRESET (or the like) on their next call. Any thread but
 * the server's own (never from a callback of the node). */
void tandem_server_stop(struct tandem_server *server);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_H */
