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

#define TDM_FRAME_VERSION         1   /* HELLO's protocol version (PROTOCOL.md title). */
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
    TDM_FRAME__COUNT, /* HANDOVER, FENCE and their answers are issue 4. */
};

/* The role a node announces in HELLO (same values as net/proto's). */
enum tdm_role {
    TDM_ROLE_RECOVERING = 1, /* Started, not yet acting in an epoch. */
    TDM_ROLE_BACKUP = 2,
    TDM_ROLE_PRIMARY = 3,
    TDM_ROLE_HOLDING = 4, /* Primary holding writes in a switchover (issue 4). */
    TDM_ROLE_FAILED = 5,  /* Stopped after fatal I/O; terminal until restart. */
    TDM_ROLE__COUNT,
};

/* The chain hash of the batch that ends at some LSN (docs/FORMAT.md "Batch").
 * A copy of engine/batch.h's struct, which net/replica may not include. */
struct tdm_frame_chain_hash {
    uint8_t bytes[TDM_FRAME_CHAIN_HASH_SIZE];
};

/* One entry of an epoch history (PROTOCOL.md §4): epoch `epoch`, whose primary
 * was node `primary_index`, begins at LSN lsn_first. */
struct tdm_epoch_entry {
    uint64_t epoch;         /* >= 1; strictly increasing along a history. */
    uint64_t lsn_first;     /* First LSN of the epoch; non-decreasing along a history. */
    uint32_t primary_index; /* Node index of the epoch's primary. */
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

struct tdm_frame_forward {
    uint64_t request_id;    /* Chosen by the backup; strictly increasing on one link. */
    uint32_t record_count;  /* >= 1. */
    uint32_t size;          /* Bytes of records. */
    const uint8_t *records; /* Borrowed: (u32 size, record) entries, owned by the adapter. */
};

struct tdm_frame_forward_result {
    uint64_t request_id;
    int32_t status;     /* 0, or a negative tandem code. */
    uint64_t lsn_first; /* On success: the LSNs the records got. */
    uint64_t lsn_last;
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
    };
};

#endif
