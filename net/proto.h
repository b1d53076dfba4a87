/* net/proto.h: the frames of the replication and client links, encoded and
 * decoded (docs/PROTOCOL.md §3, the byte layout of every frame).
 *
 * Pure and bounded: no I/O, no clock, no allocation. Every byte handed to a
 * decoder is untrusted (it came from a peer, even an authenticated one): a
 * frame that is too large, of an unknown type, or whose payload does not decode
 * exactly returns TANDEM_ECORRUPT with a diag and a trace line, never an
 * assertion.
 *
 * Happy path on a link:
 * 1. The adapter owns one receive buffer per link and a struct tdm_proto_reader
 *    over it; it feeds the plaintext bytes that TLS gives it, in any split.
 * 2. tdm_proto_reader_next() hands out each complete frame (type, epoch, and a
 *    payload that points into the buffer).
 * 3. tdm_proto_decode() turns the frame into a struct tdm_proto_msg: names and
 *    small fields are copied, batches, records and text stay slices into the
 *    buffer (zero-copy), valid until the next tdm_proto_reader_feed().
 * 4. To send, fill a struct tdm_proto_msg and tdm_proto_encode() it into a
 *    buffer of tdm_proto_encoded_size() bytes.
 *
 * The names here are tdm_proto_* so that they never meet the decoded-frame
 * structs of net/frame.h; net/frame_proto.h converts between the two.
 *
 * Thread: none of this keeps global state; a reader belongs to one thread. */
#ifndef TDM_NET_PROTO_H
#define TDM_NET_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/error.h"

#define TDM_PROTO_VERSION 2 /* HELLO's version; PROTOCOL.md title. */

/* Bytes after a frame's size field (PROTOCOL.md §3.1). */
#define TDM_PROTO_FRAME_SIZE_MAX (16u << 20)
#ifndef TDM_FRAME_SIZE_MAX
#define TDM_FRAME_SIZE_MAX TDM_PROTO_FRAME_SIZE_MAX
#endif
#define TDM_PROTO_FRAME_HEADER_SIZE 16 /* size, type, reserved, epoch. */
/* The smallest value of the size field: type, reserved and epoch. */
#define TDM_PROTO_FRAME_SIZE_MIN (TDM_PROTO_FRAME_HEADER_SIZE - 4)
/* A receive buffer that holds any frame. */
#define TDM_PROTO_BUFFER_SIZE (TDM_PROTO_FRAME_SIZE_MAX + 4)

#define TDM_PROTO_NAME_SIZE_MAX          63  /* Cluster names and node ids, bytes. */
#define TDM_PROTO_CHAIN_HASH_SIZE        16  /* == TDM_CHAIN_HASH_SIZE (engine/batch.h). */
#define TDM_PROTO_HISTORY_MAX            128 /* Epoch history entries in one frame. */
#define TDM_PROTO_PEERS_MAX              8   /* Nodes in a cluster (PROTOCOL.md §2). */
#define TDM_PROTO_APPEND_BATCHES_MAX     64  /* Batches in one APPEND (== TDM_FRAME_BATCHES_MAX). */
#define TDM_PROTO_FORWARD_RESTART        0x1u /* FORWARD flags: see PROTOCOL.md §6. */
#define TDM_PROTO_RECORDS_MAX            4096 /* == TANDEM_APPEND_RECORDS_MAX. */
#define TDM_PROTO_RECORD_SIZE_MAX        4096 /* == TDM_RECORD_SIZE_MAX (engine/codec.h). */
#define TDM_PROTO_MESSAGE_SIZE_MAX       255  /* Error text in a result frame. */
#define TDM_PROTO_QUERY_KEY_SIZE_MAX     998  /* == TANDEM_MESSAGE_ID_SIZE_MAX. */
#define TDM_PROTO_QUERY_ADDRESS_SIZE_MAX 320  /* == TANDEM_ADDRESS_SIZE_MAX. */

/* Frame types (PROTOCOL.md §3.2). Zero is never valid: catches zeroed memory.
 * Node frames are 1..31, client frames 32..63. */
enum tdm_proto_type {
    TDM_PROTO_HELLO = 1,
    TDM_PROTO_START = 2,
    TDM_PROTO_READY = 3,
    TDM_PROTO_APPEND = 4,
    TDM_PROTO_ACK = 5,
    TDM_PROTO_HEARTBEAT = 6,
    TDM_PROTO_FORWARD = 7,
    TDM_PROTO_FORWARD_RESULT = 8,
    TDM_PROTO_HANDOVER = 9,
    TDM_PROTO_HANDOVER_DONE = 10,
    TDM_PROTO_FENCE = 11,
    TDM_PROTO_FENCED = 12,
    TDM_PROTO_CHECK = 13,        /* Verification (PROTOCOL.md §9). */
    TDM_PROTO_CHECK_RESULT = 14, /* Verification (PROTOCOL.md §9). */
    TDM_PROTO_FETCH = 15,        /* Repair: ask a verified copy for batches (§9.4). */
    TDM_PROTO_FETCHED = 16,      /* Repair: the batches, or why not (§9.4). */
    TDM_PROTO_APPEND_REQUEST = 32,
    TDM_PROTO_APPEND_RESULT = 33,
    TDM_PROTO_QUERY = 34,
    TDM_PROTO_QUERY_RESULT = 35,
    TDM_PROTO_STATUS = 36,
    TDM_PROTO_STATUS_RESULT = 37,
    TDM_PROTO_SWITCHOVER = 38,        /* Operator: move the primary (PROTOCOL.md §7.5). */
    TDM_PROTO_SWITCHOVER_RESULT = 39, /* Its outcome: a JSON document. */
    TDM_PROTO_FAILOVER = 40,          /* Operator: promote the node asked (§7.5). */
    TDM_PROTO_FAILOVER_RESULT = 41,   /* Its outcome: a JSON document. */
    TDM_PROTO_HISTORY = 42,           /* The node's epoch history (PROTOCOL.md §7.6). */
    TDM_PROTO_HISTORY_RESULT = 43,    /* A JSON document. */
    TDM_PROTO_QUARANTINE = 44,        /* What DIR/quarantine/ holds, or its records (§7.6). */
    TDM_PROTO_QUARANTINE_RESULT = 45, /* A JSON document, or JSON Lines flagged MORE. */
    TDM_PROTO_VERIFY = 46,            /* Verify the node now (PROTOCOL.md §7.7). */
    TDM_PROTO_VERIFY_RESULT = 47,     /* JSON Lines: progress flagged MORE, then the report. */
};

/* A node's role as HELLO announces it. */
enum tdm_proto_role {
    TDM_PROTO_ROLE_RECOVERING = 1,
    TDM_PROTO_ROLE_BACKUP = 2,
    TDM_PROTO_ROLE_PRIMARY = 3,
    TDM_PROTO_ROLE_HOLDING = 4, /* Primary holding writes during a switchover. */
    TDM_PROTO_ROLE_FAILED = 5,
};

/* QUERY kinds: the client commands of DESIGN "Public contracts". */
enum tdm_proto_query_kind {
    TDM_PROTO_QUERY_MESSAGE_ID = 1,        /* key = Message-ID. */
    TDM_PROTO_QUERY_CUSTOMER_MESSAGES = 2, /* customer_id, since/until, filters. */
    TDM_PROTO_QUERY_CUSTOMER_ID = 3,       /* customer_id. */
    TDM_PROTO_QUERY_USERNAME = 4,          /* key = username. */
    TDM_PROTO_QUERY_EMAIL = 5,             /* key = email. */
};
#define TDM_PROTO_QUERY_HAS_RECIPIENT 0x1u /* QUERY flags: recipient filter set. */
#define TDM_PROTO_QUERY_HAS_SENDER    0x2u /* sender filter set ('' = bounces). */
#define TDM_PROTO_RESULT_MORE         0x1u /* QUERY_RESULT flags: more frames follow. */
#define TDM_PROTO_FAILOVER_FORCE      0x1u /* FAILOVER flags: promote against the rules. */
#define TDM_PROTO_FAILOVER_DRY_RUN    0x2u /* FAILOVER flags: only say what it would do. */
#define TDM_PROTO_QUARANTINE_EXPORT   0x1u /* QUARANTINE flags: the records, as JSON Lines. */
#define TDM_PROTO_VERIFY_DEEP         0x1u /* VERIFY flags: also prove the index (--deep). */

/* True for the types a client link may carry (PROTOCOL.md §7). */
bool tdm_proto_type_is_client(uint16_t type);
/* "HELLO", ... or "unknown" (for trace lines). */
const char *tdm_proto_type_name(uint16_t type);

/* A view of bytes inside a frame buffer (or, when encoding, the caller's). */
struct tdm_proto_slice {
    const uint8_t *data; /* Borrowed; NULL only when size is 0. */
    size_t size;         /* Bytes. */
};

#define TDM_PROTO_CAUSE_MAX           8 /* Epoch causes 0..8 (PROTOCOL.md §3.3; == net/frame.h's). */
#define TDM_PROTO_REFUSAL_MAX         21   /* Refusals 0..21 in HANDOVER_DONE, FENCED (§8.4). */
#define TDM_PROTO_FENCE_PROBE         0x1u /* FENCE flags. */
#define TDM_PROTO_FENCE_FORCE         0x2u
#define TDM_PROTO_FENCED_PRIMARY_SEEN 0x1u /* FENCED flags. */

/* One entry of an epoch history (PROTOCOL.md §4). */
struct tdm_proto_epoch {
    uint64_t epoch;                            /* >= 1; strictly increasing in a history. */
    char primary[TDM_PROTO_NAME_SIZE_MAX + 1]; /* Node id of the epoch's primary. */
    uint64_t lsn_first;                        /* First LSN of the epoch; non-decreasing. */
    uint8_t cause;                             /* 0 (not recorded) .. TDM_PROTO_CAUSE_MAX. */
    uint64_t time_ms;                          /* Wall clock, Unix ms, when opened; 0: unknown. */
    uint64_t pause_ms;                         /* Switchover: writes held this long; 0: none. */
    uint64_t risk_lsn_first;                   /* Forced failover: LSNs at risk; 0, 0: none, else */
    uint64_t risk_lsn_last;                    /* 1 <= first <= last. */
};

struct tdm_proto_history {
    uint32_t count; /* 0..TDM_PROTO_HISTORY_MAX: the most recent entries. */
    struct tdm_proto_epoch entries[TDM_PROTO_HISTORY_MAX];
};

struct tdm_proto_hello {
    uint16_t version;                          /* TDM_PROTO_VERSION. */
    uint8_t role;                              /* enum tdm_proto_role. */
    char cluster[TDM_PROTO_NAME_SIZE_MAX + 1]; /* Must equal the receiver's. */
    char node[TDM_PROTO_NAME_SIZE_MAX + 1];    /* Must equal the TLS peer name. */
    uint64_t hello_id;    /* Sender's handshake attempt (increasing); echoed by START, READY. */
    uint64_t last_lsn;    /* Last LSN in the sender's log; 0 if empty. */
    uint64_t durable_lsn; /* Last LSN fdatasync'd; <= last_lsn. */
    uint64_t last_epoch;  /* Epoch of the batch ending at last_lsn; 0 iff last_lsn is 0. */
    uint8_t chain_hash[TDM_PROTO_CHAIN_HASH_SIZE]; /* At last_lsn. */
    struct tdm_proto_history history;
};

struct tdm_proto_start {
    uint64_t hello_id;                /* Echo of the HELLO this answers. */
    uint64_t fork_lsn;                /* The backup keeps (1..fork_lsn]. */
    struct tdm_proto_history history; /* The primary's. */
};

struct tdm_proto_ready {
    uint64_t hello_id;                             /* Echo of the START's. */
    uint64_t last_lsn;                             /* After the cut. */
    uint64_t durable_lsn;                          /* <= last_lsn. */
    uint8_t chain_hash[TDM_PROTO_CHAIN_HASH_SIZE]; /* At last_lsn. */
};

struct tdm_proto_append {
    uint64_t commit_lsn;  /* Acknowledged (durable at min_copies) up to here. */
    uint32_t batch_count; /* 0..TDM_PROTO_APPEND_BATCHES_MAX. */
    /* Whole batches as on disk (docs/FORMAT.md "Batch"), each >= 1 byte. */
    struct tdm_proto_slice batches[TDM_PROTO_APPEND_BATCHES_MAX];
};

struct tdm_proto_ack {
    uint64_t durable_lsn;  /* The backup's durable LSN; <= received_lsn. */
    uint64_t received_lsn; /* The backup's last written LSN: resending resumes after it. */
    uint64_t echo_ms;      /* send_ms of the last HEARTBEAT seen; 0 if none. */
};

/* One row of the primary's lag table, measured on its own clock (§6). */
struct tdm_proto_lag {
    char node[TDM_PROTO_NAME_SIZE_MAX + 1];
    uint64_t durable_lsn; /* The node's durable LSN as the primary knows it. */
    uint64_t records;     /* LSNs behind the primary's last_lsn. */
    uint64_t size;        /* Bytes behind (a lower bound when far behind). */
    uint64_t ms;          /* Milliseconds behind. */
    bool link_up;         /* The primary's link to the node (its own row: true). */
};

struct tdm_proto_heartbeat {
    uint64_t last_lsn;   /* The primary's. */
    uint64_t commit_lsn; /* Acknowledged up to here. */
    uint64_t send_ms;    /* The primary's monotonic clock; echoed by ACK. */
    uint32_t lag_count;  /* 0..TDM_PROTO_PEERS_MAX; row i is the node of index i (§3.3). */
    struct tdm_proto_lag lags[TDM_PROTO_PEERS_MAX];
};

/* FORWARD and APPEND_REQUEST: encoded records, laid out as a batch's raw body
 * (each entry: u32 size, then size bytes of one encoded record). */
struct tdm_proto_records {
    uint64_t request_id;   /* Chosen by the sender; echoed in the result. */
    uint32_t record_count; /* 1..TDM_PROTO_RECORDS_MAX entries in entries. */
    uint8_t flags;         /* FORWARD only: TDM_PROTO_FORWARD_* (0 in APPEND_REQUEST). */
    struct tdm_proto_slice entries;
};

/* FORWARD_RESULT and APPEND_RESULT. */
struct tdm_proto_result {
    uint64_t request_id;
    int32_t status;                               /* 0, or a negative tandem code (tandem.h). */
    uint64_t lsn_first;                           /* LSN of the first record; 0 on failure. */
    uint32_t record_count;                        /* Records stored (LSNs lsn_first..). */
    char message[TDM_PROTO_MESSAGE_SIZE_MAX + 1]; /* Printable ASCII; "" if none. */
};

struct tdm_proto_handover {
    uint64_t new_epoch;               /* The target's epoch once it takes over. */
    struct tdm_proto_history history; /* Ends with (new_epoch, target, last_lsn + 1). */
    uint64_t last_lsn;                /* The old primary's last LSN. */
    uint8_t chain_hash[TDM_PROTO_CHAIN_HASH_SIZE];
};

struct tdm_proto_handover_done {
    uint64_t new_epoch; /* Echo of the HANDOVER's (>= 1). */
    uint8_t refusal;    /* 0: persisted; else 1..TDM_PROTO_REFUSAL_MAX. */
    uint64_t last_lsn;  /* The target's. */
    uint8_t chain_hash[TDM_PROTO_CHAIN_HASH_SIZE]; /* The target's, at last_lsn. */
};

struct tdm_proto_fence {
    uint64_t fence_id;  /* >= 1. */
    uint8_t flags;      /* TDM_PROTO_FENCE_*. */
    uint64_t new_epoch; /* PROBE: 0 (and expect_* 0, history empty); else >= 1. */
    uint64_t expect_epoch;
    uint64_t expect_last_epoch;
    uint64_t expect_durable_lsn;
    struct tdm_proto_history history; /* Not PROBE: ends with the new epoch's entry. */
};

struct tdm_proto_fenced {
    uint64_t fence_id; /* Echo. */
    uint8_t refusal;   /* 0 or 1..TDM_PROTO_REFUSAL_MAX. */
    uint8_t role;      /* enum tdm_proto_role. */
    uint8_t flags;     /* TDM_PROTO_FENCED_*. */
    uint64_t epoch;    /* >= 1. */
    uint64_t last_epoch;
    uint64_t last_lsn;
    uint64_t durable_lsn; /* <= last_lsn. */
    uint64_t commit_lsn;
    uint8_t chain_hash[TDM_PROTO_CHAIN_HASH_SIZE]; /* At last_lsn. */
};

/* CHECK: compare chain hashes at lsn (PROTOCOL.md §9). */
struct tdm_proto_check {
    uint64_t check_id;                             /* >= 1. */
    uint64_t lsn;                                  /* >= 1. */
    uint8_t chain_hash[TDM_PROTO_CHAIN_HASH_SIZE]; /* The primary's, at lsn. */
    uint64_t divergent_first;                      /* 0, 0 or 1 <= first <= last. */
    uint64_t divergent_last;
};

#define TDM_PROTO_CHECK_EQUAL      1 /* CHECK_RESULT verdicts. */
#define TDM_PROTO_CHECK_DIFFERENT  2
#define TDM_PROTO_CHECK_ABSENT     3
#define TDM_PROTO_CHECK_UNREADABLE 4

struct tdm_proto_check_result {
    uint64_t check_id; /* Echo. */
    uint64_t lsn;      /* Echo. */
    uint8_t result;    /* TDM_PROTO_CHECK_*. */
    /* EQUAL: batch_last == lsn; DIFFERENT: batch_first <= lsn <= batch_last;
     * ABSENT, UNREADABLE: both 0 and the hash all zero. */
    uint64_t batch_first;
    uint64_t batch_last;
    uint8_t chain_hash[TDM_PROTO_CHAIN_HASH_SIZE]; /* The backup's, at batch_last. */
};

/* FETCH (PROTOCOL.md §9.4): the batches holding lsn_first .. lsn_last, for a
 * repair. At most TDM_PROTO_FETCH_LSNS_MAX LSNs. */
#define TDM_PROTO_FETCH_LSNS_MAX (1u << 20)
struct tdm_proto_fetch {
    uint64_t fetch_id;  /* >= 1; echoed by FETCHED. */
    uint64_t lsn_first; /* >= 1. */
    uint64_t lsn_last;  /* >= lsn_first. */
};

/* FETCHED: status 0 and whole batches as on disk that hold exactly
 * lsn_first .. lsn_last, or a negative tandem.h status and none. */
struct tdm_proto_fetched {
    uint64_t fetch_id;    /* Echo. */
    int32_t status;       /* 0 or a negative tandem.h code (its copy is damaged too...). */
    uint64_t lsn_first;   /* Echo. */
    uint64_t lsn_last;    /* Echo. */
    uint32_t batch_count; /* status 0: 1..TDM_PROTO_APPEND_BATCHES_MAX; else 0. */
    struct tdm_proto_slice batches[TDM_PROTO_APPEND_BATCHES_MAX];
};

struct tdm_proto_query {
    uint64_t request_id;
    uint8_t kind;                     /* enum tdm_proto_query_kind. */
    uint8_t flags;                    /* TDM_PROTO_QUERY_HAS_* bits. */
    uint32_t customer_id;             /* Kinds 2 and 3. */
    int64_t since_ns;                 /* Kind 2: inclusive, Unix ns. */
    int64_t until_ns;                 /* Kind 2: exclusive. */
    struct tdm_proto_slice key;       /* Kinds 1, 4, 5: <= TDM_PROTO_QUERY_KEY_SIZE_MAX. */
    struct tdm_proto_slice recipient; /* <= TDM_PROTO_QUERY_ADDRESS_SIZE_MAX. */
    struct tdm_proto_slice sender;    /* <= TDM_PROTO_QUERY_ADDRESS_SIZE_MAX. */
};

/* QUERY_RESULT (JSON Lines) and STATUS_RESULT (one JSON document). */
struct tdm_proto_text_result {
    uint64_t request_id;
    int32_t status;              /* 0, TANDEM_ENOTFOUND, or another negative code. */
    uint8_t flags;               /* QUERY_RESULT: TDM_PROTO_RESULT_MORE; STATUS: 0. */
    struct tdm_proto_slice text; /* Not checked: the client parses it. */
};

struct tdm_proto_status {
    uint64_t request_id;
};

/* SWITCHOVER and FAILOVER (PROTOCOL.md §7.5). */
struct tdm_proto_command {
    uint64_t request_id;
    uint8_t flags; /* FAILOVER: TDM_PROTO_FAILOVER_*; SWITCHOVER: 0. */
    /* SWITCHOVER: the node to hand over to, "" for the next of the rotation;
     * FAILOVER: the node to promote (required: the node asked must be it). */
    char target[TDM_PROTO_NAME_SIZE_MAX + 1];
};

/* HISTORY and QUARANTINE (PROTOCOL.md §7.6), VERIFY (§7.7). */
struct tdm_proto_inspect {
    uint64_t request_id;
    uint8_t flags; /* QUARANTINE: TDM_PROTO_QUARANTINE_EXPORT; VERIFY: TDM_PROTO_VERIFY_DEEP;
                      HISTORY: 0. */
};

/* A frame's decoded payload. type selects the member of the union. */
struct tdm_proto_msg {
    uint16_t type;  /* enum tdm_proto_type. */
    uint64_t epoch; /* The sender's epoch (0 from a client). */
    union {
        struct tdm_proto_hello hello;
        struct tdm_proto_start start;
        struct tdm_proto_ready ready;
        struct tdm_proto_append append;
        struct tdm_proto_ack ack;
        struct tdm_proto_heartbeat heartbeat;
        struct tdm_proto_records forward;       /* Also APPEND_REQUEST. */
        struct tdm_proto_result forward_result; /* Also APPEND_RESULT. */
        struct tdm_proto_handover handover;
        struct tdm_proto_handover_done handover_done;
        struct tdm_proto_fence fence;
        struct tdm_proto_fenced fenced;
        struct tdm_proto_check check;
        struct tdm_proto_check_result check_result;
        struct tdm_proto_fetch fetch;
        struct tdm_proto_fetched fetched;
        struct tdm_proto_records append_request;
        struct tdm_proto_result append_result;
        struct tdm_proto_query query;
        struct tdm_proto_text_result query_result; /* Also STATUS_RESULT. */
        struct tdm_proto_status status;
        struct tdm_proto_text_result status_result;
        struct tdm_proto_command command;            /* SWITCHOVER, FAILOVER. */
        struct tdm_proto_text_result command_result; /* SWITCHOVER_RESULT, FAILOVER_RESULT. */
        struct tdm_proto_inspect inspect;            /* HISTORY, QUARANTINE, VERIFY. */
        struct tdm_proto_text_result inspect_result; /* HISTORY_RESULT, QUARANTINE_RESULT,
                                                        VERIFY_RESULT. */
    };
};

/* A complete frame as the reader delivers it. */
struct tdm_proto_frame {
    uint16_t type;          /* A known enum tdm_proto_type. */
    uint64_t epoch;         /* The sender's epoch. */
    const uint8_t *payload; /* Borrowed from the reader's buffer. */
    size_t payload_size;    /* Bytes; <= TDM_PROTO_FRAME_SIZE_MAX - 12. */
};

/* Streaming frame reader over a caller-owned buffer. It holds at most one frame
 * at a time, so it never moves bytes. Thread: one thread. */
struct tdm_proto_reader {
    uint8_t *buffer; /* Borrowed for the reader's life. */
    size_t capacity; /* Bytes; frames larger than capacity are refused. */
    size_t have;     /* Bytes of the current frame received so far. */
    size_t want;     /* Bytes of the whole current frame; 0 until its size is known. */
    bool ready;      /* A complete frame waits for tdm_proto_reader_next(). */
    int error;       /* Sticky: 0, or the code of the first failure. */
    char error_message[TDM_DIAG_SIZE]; /* Diag of the first failure. */
};

/* Initialise reader over buffer[0..capacity). capacity must be at least
 * TDM_PROTO_FRAME_HEADER_SIZE; TDM_PROTO_BUFFER_SIZE takes any frame. The
 * buffer is retained until the reader is dropped (no close needed). */
void tdm_proto_reader_init(struct tdm_proto_reader *reader, uint8_t *buffer, size_t capacity);

/* Copy bytes from data[0..size) into the reader, up to the end of the current
 * frame, and set *consumed to the number taken (0 while a complete frame waits
 * for tdm_proto_reader_next()). Call again with the rest after next().
 * Returns 0, or TANDEM_ECORRUPT (diag says why: oversize, unknown type,
 * reserved bits) as soon as a frame header is bad; the error is sticky. Frames
 * handed out earlier become invalid once this copies a byte. */
int tdm_proto_reader_feed(struct tdm_proto_reader *reader, const void *data, size_t size,
                          size_t *consumed, struct tdm_diag *diag);

/* Take the complete frame, if any, into *frame (valid until the next feed).
 * Returns 0 with a frame, -EAGAIN if more bytes are needed, or the sticky
 * error of an earlier feed. */
int tdm_proto_reader_next(struct tdm_proto_reader *reader, struct tdm_proto_frame *frame,
                          struct tdm_diag *diag);

/* The stream ended. Returns 0 at a frame boundary, else TANDEM_ECORRUPT ("stream
 * ended inside a frame"), or the sticky error. */
int tdm_proto_reader_eof(const struct tdm_proto_reader *reader, struct tdm_diag *diag);

/* Parse the one whole frame in data[0..size) (no bytes before or after it) into
 * *frame, which borrows data. Returns 0 or TANDEM_ECORRUPT with diag. */
int tdm_proto_frame_parse(const uint8_t *data, size_t size, struct tdm_proto_frame *frame,
                          struct tdm_diag *diag);

/* Decode frame's payload into *msg (slices borrow frame's buffer). The payload
 * must decode exactly: every field in range, no byte short, no byte left over.
 * Returns 0, or TANDEM_ECORRUPT with diag naming the frame type and the field;
 * *msg is then unspecified. */
int tdm_proto_decode(const struct tdm_proto_frame *frame, struct tdm_proto_msg *msg,
                     struct tdm_diag *diag);

/* Bytes that tdm_proto_encode() writes for msg, size field included. Valid for a
 * msg that tdm_proto_encode() accepts. */
size_t tdm_proto_encoded_size(const struct tdm_proto_msg *msg);

/* Encode msg as one whole frame into buffer[0..size) and set *written. msg is
 * read during the call only. Returns 0; TANDEM_EINVALID (diag names the field)
 * if msg breaks a limit the decoder would refuse (a count over its _MAX, a bad
 * name, a frame over TDM_PROTO_FRAME_SIZE_MAX); -ENOBUFS if size is smaller than
 * tdm_proto_encoded_size(msg). */
int tdm_proto_encode(const struct tdm_proto_msg *msg, uint8_t *buffer, size_t size, size_t *written,
                     struct tdm_diag *diag);

/* Walk the entries of a decoded (or encodable) records slice: set *record to the
 * entry at *offset and advance *offset. Returns false at the end. The slice
 * must have passed tdm_proto_decode() or tdm_proto_encode(). */
bool tdm_proto_records_next(const struct tdm_proto_records *records, size_t *offset,
                            struct tdm_proto_slice *record);

/* True if name is 1..TDM_PROTO_NAME_SIZE_MAX bytes of [A-Za-z0-9._-] (the node
 * id and cluster name rule of tools/cmd_node.c). */
bool tdm_proto_name_valid(const char *name, size_t size);

#endif
