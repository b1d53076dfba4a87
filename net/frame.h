/* net/frame.h: the decoded frames of a node link, as net/replica sees them
 * (docs/PROTOCOL.md §3, §5, §6).
 *
 * These are plain structs: no encoding lives here. net/proto decodes bytes into
 * its own struct tdm_proto_msg and net/frame_proto.h converts that into a
 * struct tdm_frame (node ids -> node indexes, batch headers -> struct
 * tdm_frame_batch), and back for the frames the replica sends. Everything in a
 * received frame is untrusted: net/replica filters it (the *_ignore_* handlers)
 * and never asserts on it.
 *
 * Node indexes: every node of a cluster is known by its index in the sorted
 * list of node ids (struct tdm_replica_config.node_count); the adapter maps an
 * authenticated TLS peer name to that index. Membership is fixed in version 1.
 *
 * Thread: plain data, owned by whoever filled it. */
#ifndef TDM_NET_FRAME_H
#define TDM_NET_FRAME_H

#include <stdbool.h>
#include <stdint.h>

#define TDM_FRAME_VERSION         2   /* HELLO's protocol version (PROTOCOL.md title). */
#define TDM_REPLICA_NODES_MAX     8   /* Nodes in a cluster, self included (PROTOCOL.md §2). */
#define TDM_REPLICA_EPOCHS_MAX    128 /* Epoch history entries kept and sent. */
#define TDM_FRAME_BATCHES_MAX     64  /* Batches in one decoded APPEND. */
#define TDM_FRAME_CHAIN_HASH_SIZE 16  /* == TDM_CHAIN_HASH_SIZE (engine/batch.h). */

/* Zero is never a valid type: catches zeroed memory. Values are the wire's. */
enum tdm_frame_type {
    TDM_FRAME_HELLO = 1,
    TDM_FRAME_START = 2,
    TDM_FRAME_READY = 3,
    TDM_FRAME_APPEND = 4,
    TDM_FRAME_ACK = 5,
    TDM_FRAME_HEARTBEAT = 6,
    TDM_FRAME_FORWARD = 7,
    TDM_FRAME_FORWARD_RESULT = 8,
    TDM_FRAME_HANDOVER = 9,       /* Switchover: old primary -> target (PROTOCOL.md §8.1). */
    TDM_FRAME_HANDOVER_DONE = 10, /* Switchover: target -> old primary. */
    TDM_FRAME_FENCE = 11,         /* Failover: target -> other nodes (PROTOCOL.md §8.2). */
    TDM_FRAME_FENCED = 12,        /* Failover: their answer. */
    TDM_FRAME_CHECK = 13,         /* Verification (PROTOCOL.md §9). */
    TDM_FRAME_CHECK_RESULT = 14,  /* Verification (PROTOCOL.md §9). */
    TDM_FRAME__COUNT,
};

/* The role a node announces in HELLO (same values as net/proto's). */
enum tdm_role {
    TDM_ROLE_RECOVERING = 1, /* Started, not yet acting in an epoch. */
    TDM_ROLE_BACKUP = 2,
    TDM_ROLE_PRIMARY = 3,
    TDM_ROLE_HOLDING = 4, /* Primary holding writes in a switchover (PROTOCOL.md §8.1). */
    TDM_ROLE_FAILED = 5,  /* Stopped after fatal I/O; terminal until restart. */
    TDM_ROLE__COUNT,
};

/* The chain hash of the batch that ends at some LSN (docs/FORMAT.md "Batch").
 * A copy of engine/batch.h's struct, which net/replica may not include. */
struct tdm_frame_chain_hash {
    uint8_t bytes[TDM_FRAME_CHAIN_HASH_SIZE];
};

/* Why an epoch began (PROTOCOL.md §4, §8). Values are the wire's and the
 * epoch file's (docs/FORMAT.md "Epoch history"). 0 is "not recorded": an
 * entry from a file or a frame older than causes, shown as init. */
enum tdm_epoch_cause {
    TDM_EPOCH_CAUSE_INIT = 1,  /* The cluster's first epoch (tandem init). */
    TDM_EPOCH_CAUSE_RESTART,   /* A primary restarted with data of its epoch. */
    TDM_EPOCH_CAUSE_SCHEDULED, /* A switchover on the adapter's schedule. */
    TDM_EPOCH_CAUSE_COMMAND,   /* A switchover on command (tandem switchover). */
    TDM_EPOCH_CAUSE_RESUMED,   /* A switchover's target did not confirm (or never took
                                  the offer): the old primary resumed in an epoch of
                                  its own. */
    TDM_EPOCH_CAUSE_FAILOVER,  /* tandem failover, every rule met. */
    TDM_EPOCH_CAUSE_FORCED,    /* tandem failover --force. */
    TDM_EPOCH_CAUSE_REOPEN,    /* A primary moved above an epoch in which nothing can
                                  have been acknowledged (an abandoned failover's). */
    TDM_EPOCH_CAUSE__COUNT,
};

/* One entry of an epoch history (PROTOCOL.md §4): epoch `epoch`, whose primary
 * was node `primary_index`, begins at LSN lsn_first. The fields after
 * primary_index describe the epoch for people (tandem history); the protocol
 * decides nothing on them but cause (PROTOCOL.md §8.1: a switchover's target
 * waits for the old primary's confirmation). */
struct tdm_epoch_entry {
    uint64_t epoch;             /* >= 1; strictly increasing along a history. */
    uint64_t lsn_first;         /* First LSN of the epoch; non-decreasing along a history. */
    uint32_t primary_index;     /* Node index of the epoch's primary. */
    enum tdm_epoch_cause cause; /* Why the epoch began; 0: not recorded. */
    uint64_t time_ms;           /* Wall clock (Unix ms) when it was opened; 0: unknown. */
    uint64_t pause_ms;          /* Switchover: writes held this long by the old primary
                                   (its own copy only); 0: none or unknown. */
    uint64_t risk_lsn_first;    /* Forced failover: acknowledged LSNs that may be lost, */
    uint64_t risk_lsn_last;     /* risk_lsn_first..risk_lsn_last; 0, 0: none. */
};

struct tdm_epoch_history {
    uint32_t count; /* 1..TDM_REPLICA_EPOCHS_MAX entries (0 only in a bad frame). */
    struct tdm_epoch_entry entries[TDM_REPLICA_EPOCHS_MAX];
};

struct tdm_frame_hello {
    uint16_t version;     /* TDM_FRAME_VERSION. */
    uint8_t role;         /* enum tdm_role of the sender. */
    uint64_t hello_id;    /* Sender's handshake attempt number; echoed by START and READY. */
    uint64_t last_lsn;    /* Last LSN in the sender's log; 0 if empty. */
    uint64_t durable_lsn; /* Last LSN fdatasync'd; <= last_lsn. */
    uint64_t last_epoch;  /* Epoch of the batch that ends at last_lsn; 0 if empty. */
    struct tdm_frame_chain_hash chain_hash; /* At last_lsn. */
    struct tdm_epoch_history history;
};

struct tdm_frame_start {
    uint64_t hello_id;                /* The backup's HELLO this answers. */
    uint64_t fork_lsn;                /* The backup keeps (1..fork_lsn] and cuts the rest. */
    struct tdm_epoch_history history; /* The primary's. */
};

struct tdm_frame_ready {
    uint64_t hello_id;                      /* Echo of the START's. */
    uint64_t last_lsn;                      /* The backup's last LSN after the cut (== fork_lsn). */
    uint64_t durable_lsn;                   /* <= last_lsn. */
    struct tdm_frame_chain_hash chain_hash; /* At last_lsn. */
};

/* One batch inside an APPEND: its header fields, decoded by the adapter from
 * the batch header (untrusted), and its bytes, exactly as the primary wrote
 * them. bytes are owned by the adapter; the replica never reads them. */
struct tdm_frame_batch {
    uint64_t lsn_first;
    uint64_t lsn_last;
    uint64_t epoch; /* Epoch of the primary that wrote the batch. */
    uint32_t size;  /* Bytes of the whole batch. */
    struct tdm_frame_chain_hash chain_hash;
    const uint8_t *bytes; /* Borrowed from the adapter's receive buffer. */
};

struct tdm_frame_append {
    uint64_t commit_lsn;  /* Acknowledged (durable at min_copies) up to here. */
    uint32_t batch_count; /* 0..TDM_FRAME_BATCHES_MAX. */
    struct tdm_frame_batch batches[TDM_FRAME_BATCHES_MAX];
};

struct tdm_frame_ack {
    uint64_t durable_lsn;  /* The backup's durable LSN. */
    uint64_t received_lsn; /* The backup's last written LSN (>= durable_lsn); resend after it. */
    uint64_t echo_ms;      /* send_ms of the last HEARTBEAT seen; 0 if none. */
};

/* One row of the primary's lag table, measured on the primary's clock only. */
struct tdm_frame_lag {
    uint64_t durable_lsn; /* As the primary knows it. */
    uint64_t records;     /* LSNs behind the primary's last LSN. */
    uint64_t size;        /* Bytes behind (a lower bound when far behind). */
    uint64_t ms;          /* How long ago the primary had the first LSN this node lacks. */
    bool link_up;         /* The primary's link to the node. */
};

struct tdm_frame_heartbeat {
    uint64_t last_lsn;   /* The primary's. */
    uint64_t commit_lsn; /* Acknowledged up to here. */
    uint64_t send_ms;    /* The primary's monotonic clock; echoed by ACK, never compared. */
    uint32_t node_count; /* Rows in lags, by node index. */
    struct tdm_frame_lag lags[TDM_REPLICA_NODES_MAX];
};

#define TDM_FORWARD_RESTART 0x1u /* FORWARD flags: the sender's oldest write (PROTOCOL.md §6). */

struct tdm_frame_forward {
    uint64_t request_id;    /* The backup's write id: unique, in submission order (§6). */
    uint32_t record_count;  /* >= 1. */
    uint8_t flags;          /* TDM_FORWARD_*. */
    uint32_t size;          /* Bytes of records. */
    const uint8_t *records; /* Borrowed: (u32 size, record) entries, owned by the adapter. */
};

struct tdm_frame_forward_result {
    uint64_t request_id;
    int32_t status;     /* 0, or a negative tandem code. */
    uint64_t lsn_first; /* On success: the LSNs the records got. */
    uint64_t lsn_last;
};

/* CHECK (PROTOCOL.md §9): the primary asks a backup to compare chain hashes
 * at lsn, a batch end in the primary's log that both hold durably. */
struct tdm_frame_check {
    uint64_t check_id;                      /* >= 1; echoed by CHECK_RESULT. */
    uint64_t lsn;                           /* >= 1. */
    struct tdm_frame_chain_hash chain_hash; /* The primary's, at lsn. */
    /* The first divergent batch the primary knows in this backup's copy, or
     * 0, 0: the backup learns of the alarm from it. */
    uint64_t divergent_first;
    uint64_t divergent_last;
};

/* CHECK_RESULT's verdicts (wire values). */
enum tdm_check_result {
    TDM_CHECK_EQUAL = 1,      /* A batch ends at lsn and its chain hash is the primary's. */
    TDM_CHECK_DIFFERENT = 2,  /* No batch ends at lsn, or its chain hash differs. */
    TDM_CHECK_ABSENT = 3,     /* lsn is beyond what the backup holds durably: no verdict. */
    TDM_CHECK_UNREADABLE = 4, /* The backup could not read its batch there (damage, I/O). */
    TDM_CHECK__COUNT,
};

struct tdm_frame_check_result {
    uint64_t check_id; /* Echo of the CHECK's. */
    uint64_t lsn;      /* Echo of the CHECK's. */
    uint8_t result;    /* enum tdm_check_result. */
    /* EQUAL, DIFFERENT: the backup's batch holding lsn and its chain hash at
     * batch_last (all 0 otherwise). */
    uint64_t batch_first;
    uint64_t batch_last;
    struct tdm_frame_chain_hash chain_hash;
};

/* Why a switchover or a failover was refused or abandoned (PROTOCOL.md §8.4).
 * Values are the wire's (HANDOVER_DONE, FENCED: 0 there means "accepted"). */
enum tdm_refusal {
    TDM_REFUSAL_NOT_PRIMARY = 1,   /* Switchover asked of a node that is not the acting primary. */
    TDM_REFUSAL_NOT_BACKUP,        /* Failover asked of a node that is not a backup. */
    TDM_REFUSAL_IN_PROGRESS,       /* Another switchover or failover is in progress. */
    TDM_REFUSAL_BUSY,              /* Disk work of a handshake in flight: ask again. */
    TDM_REFUSAL_TARGET_UNKNOWN,    /* No such node. */
    TDM_REFUSAL_TARGET_SELF,       /* The primary itself. */
    TDM_REFUSAL_NO_TARGET,         /* No node of the rotation is LIVE and caught up. */
    TDM_REFUSAL_TARGET_DOWN,       /* The target's link is not LIVE. */
    TDM_REFUSAL_TARGET_LAGGING,    /* The target did not catch up within the bound. */
    TDM_REFUSAL_UNACKNOWLEDGED,    /* Writes in flight were not acknowledged within the bound. */
    TDM_REFUSAL_TARGET_DIVERGED,   /* The target's last LSN or chain hash is not ours. */
    TDM_REFUSAL_TARGET_TIMEOUT,    /* No HANDOVER_DONE within the bound. */
    TDM_REFUSAL_PRIMARY_ALIVE,     /* Failover: the old primary still answers (someone). */
    TDM_REFUSAL_UNREACHABLE,       /* Failover: a node did not answer within the bound. */
    TDM_REFUSAL_NOT_HIGHEST,       /* Failover: another node holds more durable data. */
    TDM_REFUSAL_SINGLE_COPY,       /* Failover: min_copies 1, an acknowledged write may
                                      exist on the old primary alone. */
    TDM_REFUSAL_STATE_CHANGED,     /* Failover: a node changed between probe and fence. */
    TDM_REFUSAL_EPOCH_AHEAD,       /* A node is in an epoch at or above the one proposed. */
    TDM_REFUSAL_HIGHER_EPOCH,      /* A primary of a higher epoch appeared meanwhile. */
    TDM_REFUSAL_FAILED,            /* The node stopped (fatal I/O) meanwhile. */
    TDM_REFUSAL_TARGET_UNVERIFIED, /* The verifier found the target's copy different
                                      from the primary's (PROTOCOL.md §9). */
    TDM_REFUSAL__COUNT,
};

/* HANDOVER (PROTOCOL.md §8.1): the old primary hands epoch new_epoch to the
 * target; sent in the old primary's acting epoch (frame epoch < new_epoch). */
struct tdm_frame_handover {
    uint64_t new_epoch;                     /* The target's epoch once it takes over. */
    struct tdm_epoch_history history;       /* Ends with (new_epoch, target, last_lsn + 1). */
    uint64_t last_lsn;                      /* The old primary's last LSN, all acknowledged. */
    struct tdm_frame_chain_hash chain_hash; /* At last_lsn. */
};

/* HANDOVER_DONE: the target's answer, sent in new_epoch once persisted
 * (refusal 0), or in its own epoch with the reason it refuses. */
struct tdm_frame_handover_done {
    uint64_t new_epoch;                     /* Echo of the HANDOVER's. */
    uint8_t refusal;                        /* 0: persisted, acting; else enum tdm_refusal. */
    uint64_t last_lsn;                      /* The target's last LSN. */
    struct tdm_frame_chain_hash chain_hash; /* The target's, at last_lsn. */
};

#define TDM_FENCE_PROBE         0x1u /* FENCE flags: only answer, change nothing. */
#define TDM_FENCE_FORCE         0x2u /* tandem failover --force. */
#define TDM_FENCED_PRIMARY_SEEN 0x1u /* FENCED flags: the sender's primary still answers it. */

/* FENCE (PROTOCOL.md §8.2): a failover target asks a node for its state
 * (PROBE), or to move to new_epoch (persisted before it answers). */
struct tdm_frame_fence {
    uint64_t fence_id;  /* >= 1, the target's attempt; echoed by FENCED. */
    uint8_t flags;      /* TDM_FENCE_*. */
    uint64_t new_epoch; /* 0 with PROBE. */
    /* Not PROBE: the receiver's state as it answered the probe; it refuses if
     * it changed since (a write may have been acknowledged meanwhile). */
    uint64_t expect_epoch;
    uint64_t expect_last_epoch;
    uint64_t expect_durable_lsn;
    struct tdm_epoch_history history; /* PROBE: empty; else ends with (new_epoch, sender). */
};

struct tdm_frame_fenced {
    uint64_t fence_id; /* Echo. */
    uint8_t refusal;   /* 0, or enum tdm_refusal. */
    uint8_t role;      /* enum tdm_role of the sender. */
    uint8_t flags;     /* TDM_FENCED_*. */
    uint64_t epoch;    /* The sender's epoch (after persisting, if it moved). */
    uint64_t last_epoch;
    uint64_t last_lsn;
    uint64_t durable_lsn;
    uint64_t commit_lsn;                    /* The acknowledged LSN it heard of. */
    struct tdm_frame_chain_hash chain_hash; /* At last_lsn. */
};

struct tdm_frame {
    uint16_t type;  /* enum tdm_frame_type. */
    uint64_t epoch; /* The sender's epoch. */
    union {
        struct tdm_frame_hello hello;
        struct tdm_frame_start start;
        struct tdm_frame_ready ready;
        struct tdm_frame_append append;
        struct tdm_frame_ack ack;
        struct tdm_frame_heartbeat heartbeat;
        struct tdm_frame_forward forward;
        struct tdm_frame_forward_result forward_result;
        struct tdm_frame_handover handover;
        struct tdm_frame_handover_done handover_done;
        struct tdm_frame_fence fence;
        struct tdm_frame_fenced fenced;
        struct tdm_frame_check check;
        struct tdm_frame_check_result check_result;
    };
};

#endif
