/* net/replica.h: the role state machine of one node (docs/PROTOCOL.md §4-§6).
 *
 * Pure: no I/O, no clock, no threads, no allocation after tdm_replica_init()
 * (STYLE B1). The adapter (net/uv, or the simulator in tests/sim) turns sockets,
 * timers and engine completions into events, calls tdm_replica_step() with one
 * event at a time, and carries out the actions the step fills in.
 *
 * The order of actions is the contract. After each step the adapter MUST:
 *   1. persist actions->history_to_persist durably (temp file, fdatasync,
 *      rename, directory fsync), if not NULL, and report PERSISTED(EPOCHS);
 *   2. cut the log after actions->cut_after_lsn into quarantine, if
 *      actions->cut is set, and report PERSISTED(CUT);
 *   3. carry out actions->writes[] in order: LOCAL hands a client write to the
 *      engine (group commit), RECEIVED appends batches exactly as received;
 *      report APPENDED (primary) and PERSISTED(LOG / WRITE) as they complete;
 *   4. send actions->sends[] in order, each on its node's link (a send to a
 *      link that is down is dropped);
 *   5. deliver actions->results[] to the clients that submitted those writes;
 *   6. step again with a TICK no later than actions->deadline_ms.
 * An APPEND send whose read fails (a batch fails its checksum, an I/O error)
 * is not sent, not even in part: bytes that fail their checksum never leave
 * the node. The adapter reports it with a SHIP_FAILED event; the replica
 * traces it and keeps it for status, and its go-back-N retransmission asks
 * for the range again later: shipping waits until the range reads again
 * (repair, docs/PROTOCOL.md §9.5).
 * Verification (docs/PROTOCOL.md §9) adds two actions that depend on nothing
 * above and that nothing above waits for; carry them out after the sends:
 *   - actions->reads[]: read the chain hash of the batch holding an LSN of the
 *     local log, and report it with a CHAIN_READ event (never from the step);
 *   - actions->verified[]: record "verified through LSN n" for a node, durably
 *     but without fdatasync on the write path (docs/FORMAT.md "Verified state");
 *     no event reports it.
 * Switchover and failover (docs/PROTOCOL.md §8) add one more, carried out
 * last: actions->reports[], the outcome of a SWITCHOVER or FAILOVER command,
 * for the adapter to print or log (and, for a switchover's DONE, to record the
 * measured write pause); nothing waits for it. The adapter drives them with:
 *   - TDM_EVENT_SWITCHOVER on the primary (an operator's `tandem switchover`,
 *     command = true, or its own switchover_interval timer with target
 *     TDM_SWITCHOVER_NEXT, command = false);
 *   - TDM_EVENT_FAILOVER on the backup to promote (`tandem failover`, with
 *     force and dry_run);
 *   - wall_ms in any event (Unix ms, its wall clock): the time the replica
 *     records in the epoch history entries it opens; never used for timing.
 * A command is answered by a report at once (STARTED, REFUSED or DRY_RUN),
 * then by DONE or ABANDONED; request_id ties them to the command. Every new
 * epoch still reaches the disk as history_to_persist (1) before it is used,
 * and the new frames (HANDOVER, HANDOVER_DONE, FENCE, FENCED) are sends like
 * any other: tdm_replica_frame_from_send() fills them (HANDOVER's and FENCE's
 * history from actions->history_new).
 * The replica emits at most one of (1) or (2) per step and waits for its
 * PERSISTED event before any action that depends on it, so "carry out in
 * order" is all the adapter has to get right. A failed completion is reported
 * with a negative status; the replica then stops (role FAILED), never retries.
 *
 * Thread: a struct tdm_replica is owned by one thread. */
#ifndef TDM_NET_REPLICA_H
#define TDM_NET_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/base/assert.h"
#include "net/frame.h"
#include "net/replica_switch.h"
#include "net/replica_verify.h"

#define TDM_REPLICA_WRITES_MAX            1024 /* Client writes in flight on one node. */
#define TDM_PIPELINE_BATCHES_MAX          64 /* APPEND ranges sent, not acknowledged, per backup. */
#define TDM_PIPELINE_BYTES_MAX            (8u << 20) /* Bytes sent, not acknowledged, per backup. */
#define TDM_REPLICA_BOUNDARIES_MAX        256   /* Recent local batch ends the primary remembers. */
#define TDM_REPLICA_WRITE_DEADLINE_MS_MAX 60000 /* DESIGN: writes fail within 60 s. */
#define TDM_REPLICA_TRACE_SIZE            200   /* Bytes of one trace line. */
/* Sends one step can produce: per backup a pipeline's worth plus a few control
 * frames, plus one FORWARD or FORWARD_RESULT per write in flight. */
#define TDM_ACTIONS_SENDS_MAX                                                                      \
    (TDM_REPLICA_NODES_MAX * (TDM_PIPELINE_BATCHES_MAX + 8) + TDM_REPLICA_WRITES_MAX)
#define TDM_ACTIONS_WRITES_MAX  TDM_REPLICA_WRITES_MAX
#define TDM_ACTIONS_RESULTS_MAX TDM_REPLICA_WRITES_MAX
/* origin_index of a forwarded write whose backup's link dropped. */
#define TDM_REPLICA_ORIGIN_GONE UINT32_MAX
/* Write ids at or above this are the primary's own, for forwarded writes. */
#define TDM_REPLICA_WRITE_ID_FORWARDED (UINT64_C(1) << 63)

/* Called with one trace line (no newline, no record payload). */
typedef void (*tdm_replica_trace_cb)(void *data, const char *line);

struct tdm_replica_config {
    uint32_t node_count;           /* 1..TDM_REPLICA_NODES_MAX; node indexes are sorted node ids. */
    uint32_t self_index;           /* This node's index. */
    uint32_t min_copies;           /* 1..node_count durable copies, the primary's included. */
    uint64_t write_deadline_ms;    /* 1..TDM_REPLICA_WRITE_DEADLINE_MS_MAX. */
    uint64_t heartbeat_ms;         /* Primary: HEARTBEAT period per backup; > 0. */
    uint64_t retransmit_ms;        /* Primary: resend after this long without progress; > 0. */
    uint64_t handshake_ms;         /* Backup: repeat HELLO after this long without START; > 0. */
    uint32_t pipeline_batches_max; /* 1..TDM_PIPELINE_BATCHES_MAX. */
    uint64_t pipeline_size_max;    /* 1..TDM_PIPELINE_BYTES_MAX. */
    /* The node's durable state, as the engine recovered it. */
    const struct tdm_epoch_history *history; /* Persisted epoch history; copied. */
    uint64_t last_lsn;                       /* Last LSN in the log; 0 if empty. */
    uint64_t last_epoch;                    /* Epoch of the batch ending at last_lsn; 0 if empty. */
    struct tdm_frame_chain_hash chain_hash; /* At last_lsn. */
    /* Verification (PROTOCOL.md §9): a checkpoint per backup every
     * verify_interval_ms (0: no comparison at all), and the claims the node
     * kept durably (DIR/verified), by node index: on a primary, each backup's;
     * on a backup, its own (at self_index). */
    uint64_t verify_interval_ms;
    uint64_t verified_lsn[TDM_REPLICA_NODES_MAX];
    /* Switchover and failover (PROTOCOL.md §8). 0 picks the default. */
    uint32_t rotation_count;                  /* 0: every node in index order. */
    uint32_t rotation[TDM_REPLICA_NODES_MAX]; /* Node indexes, each once: the order
                                                 "next in rotation" follows. */
    uint64_t switchover_catch_up_ms;          /* Hold writes at most this long for the target. */
    uint64_t switchover_handover_ms;          /* Then wait this long for HANDOVER_DONE. */
    uint64_t failover_silence_ms;             /* The old primary silent this long (default
                                                 2 * handshake_ms). */
    uint64_t failover_fence_ms;               /* Wait this long for the other nodes' FENCED. */
    tdm_replica_trace_cb trace;               /* May be NULL. */
    void *trace_data;
};

enum tdm_event_type {
    TDM_EVENT_TICK = 1,    /* Time passed; zero is never valid. */
    TDM_EVENT_PEER_UP,     /* An authenticated link to node_index is up. */
    TDM_EVENT_PEER_DOWN,   /* That link is gone; frames in flight on it are lost. */
    TDM_EVENT_RECEIVE,     /* A decoded frame arrived on node_index's link. */
    TDM_EVENT_APPENDED,    /* Primary: local batches written (readable) up to lsn_last. */
    TDM_EVENT_PERSISTED,   /* A disk action finished (see enum tdm_persisted_kind). */
    TDM_EVENT_SUBMIT,      /* A local client write (on a backup: to be forwarded). */
    TDM_EVENT_CHAIN_READ,  /* A read action finished (PROTOCOL.md §9). */
    TDM_EVENT_SWITCHOVER,  /* Operator or schedule: move the primary role (PROTOCOL.md §8.1). */
    TDM_EVENT_FAILOVER,    /* Operator: promote this backup (PROTOCOL.md §8.2). */
    TDM_EVENT_SHIP_FAILED, /* An APPEND send's read failed: nothing of it was sent (§9.5). */
    TDM_EVENT__COUNT,
};

enum tdm_persisted_kind {
    TDM_PERSISTED_EPOCHS = 1, /* history_to_persist is durable. */
    TDM_PERSISTED_CUT,        /* The cut is done: lsn_last, last_epoch, chain_hash after it. */
    TDM_PERSISTED_LOG,        /* The log is durable up to lsn_last (a batch end). */
    TDM_PERSISTED_WRITE,      /* Primary: write write_id got LSNs lsn_first..lsn_last. */
};

struct tdm_event {
    enum tdm_event_type type;
    uint64_t now_ms;  /* Monotonic, the adapter's clock; never decreases. */
    uint64_t wall_ms; /* Wall clock, Unix ms, for the epoch history only (never for
                         timing, never compared between nodes); 0: unknown. */
    union {
        struct {
            uint32_t node_index;
        } peer; /* PEER_UP, PEER_DOWN. */
        struct {
            uint32_t node_index;
            const struct tdm_frame *frame; /* Borrowed until the actions are carried out. */
        } receive;
        struct {
            uint64_t lsn_last;                      /* A batch end; > the previous APPENDED. */
            uint64_t size;                          /* Bytes of the batches newly written. */
            uint64_t epoch;                         /* Epoch of the batch ending at lsn_last. */
            struct tdm_frame_chain_hash chain_hash; /* At lsn_last. */
            bool sealed; /* That batch filled its segment, which is now sealed. */
        } appended;
        struct {
            enum tdm_persisted_kind kind;
            int status;          /* 0, or the negative code of the failure. */
            uint64_t write_id;   /* WRITE. */
            uint64_t lsn_first;  /* WRITE. */
            uint64_t lsn_last;   /* CUT, LOG, WRITE. */
            uint64_t last_epoch; /* CUT: epoch of the batch ending at lsn_last. */
            struct tdm_frame_chain_hash chain_hash; /* CUT, LOG: at lsn_last. */
        } persisted;
        struct {
            uint64_t write_id;     /* The adapter's id, < TDM_REPLICA_WRITE_ID_FORWARDED,
                                      unique and increasing over the node's life. */
            uint32_t record_count; /* >= 1. */
            uint32_t size;         /* Bytes of the records, which the adapter holds. */
        } submit;
        struct {
            uint64_t read_id; /* The read action's. */
            int status; /* 0; else the read failed (TANDEM_ENOTFOUND, TANDEM_ECORRUPT, ...). */
            uint64_t lsn_first; /* The batch holding the LSN asked for. */
            uint64_t lsn_last;
            struct tdm_frame_chain_hash chain_hash; /* At lsn_last. */
        } chain_read;
        struct {
            uint64_t request_id;   /* The adapter's, echoed by the reports. */
            uint32_t target_index; /* A node index, or TDM_SWITCHOVER_NEXT. */
            bool command;          /* An operator asked (else the schedule). */
        } switchover;
        struct {
            uint64_t request_id; /* The adapter's, echoed by the reports. */
            bool force;          /* Promote even against the rules (PROTOCOL.md §8.2). */
            bool dry_run;        /* Only report what a promotion would do. */
        } failover;
        struct {
            uint32_t node_index; /* The APPEND send's. */
            uint64_t lsn_first;  /* Its range. */
            uint64_t lsn_last;
            int status; /* TANDEM_ECORRUPT (a batch failed its checksum), -EIO, ... */
        } ship_failed;
    };
};

enum tdm_write_kind {
    TDM_WRITE_LOCAL = 1, /* Primary: append a client write's records (group commit). */
    TDM_WRITE_RECEIVED,  /* Backup: append batches exactly as received. */
};

struct tdm_action_write {
    enum tdm_write_kind kind;
    uint64_t epoch; /* LOCAL: epoch to stamp on the new batches. RECEIVED: the APPEND's. */
    /* LOCAL: */
    uint64_t write_id; /* Report PERSISTED(WRITE) with it. */
    uint32_t record_count;
    uint32_t size;
    const uint8_t *records; /* NULL: the records the adapter holds for write_id (SUBMIT);
                               else borrowed from this step's FORWARD frame. */
    /* RECEIVED: */
    const struct tdm_frame_batch *batches; /* Borrowed from this step's APPEND frame. */
    uint32_t batch_count;
};

/* A frame to send. HELLO and START carry actions->history; HEARTBEAT carries
 * actions->lags[0 .. actions->lag_count). */
struct tdm_send {
    uint32_t node_index;
    uint16_t type;  /* enum tdm_frame_type. */
    uint64_t epoch; /* The sender's epoch, for the frame header. */
    union {
        struct {
            uint8_t role;
            uint64_t hello_id;
            uint64_t last_lsn;
            uint64_t durable_lsn;
            uint64_t last_epoch;
            struct tdm_frame_chain_hash chain_hash;
        } hello;
        struct {
            uint64_t hello_id;
            uint64_t fork_lsn;
        } start;
        struct tdm_frame_ready ready;
        struct {
            uint64_t lsn_first; /* Read whole batches lsn_first..lsn_last from the log and */
            uint64_t lsn_last;  /* send them, in as many APPEND frames as the limits need. */
            uint64_t commit_lsn;
            uint64_t size; /* Bytes, 0 if the replica does not know (catch-up). */
        } append;
        struct tdm_frame_ack ack;
        struct {
            uint64_t last_lsn;
            uint64_t commit_lsn;
            uint64_t send_ms;
        } heartbeat;
        struct {
            uint64_t request_id; /* The write_id whose records the adapter holds. */
            uint32_t record_count;
            uint32_t size;
            uint8_t flags; /* TDM_FORWARD_*. */
        } forward;
        struct tdm_frame_forward_result forward_result;
        struct {
            uint64_t new_epoch; /* The history is actions->history_new. */
            uint64_t last_lsn;
            struct tdm_frame_chain_hash chain_hash;
        } handover;
        struct tdm_frame_handover_done handover_done;
        struct {
            uint64_t fence_id; /* The history is actions->history_new, unless PROBE. */
            uint8_t flags;
            uint64_t new_epoch;
            uint64_t expect_epoch;
            uint64_t expect_last_epoch;
            uint64_t expect_durable_lsn;
        } fence;
        struct tdm_frame_fenced fenced;
        struct tdm_frame_check check;
        struct tdm_frame_check_result check_result;
    };
};

/* The outcome of a client write submitted on this node. */
struct tdm_action_result {
    uint64_t write_id;
    int status;         /* 0 (acknowledged: durable at min_copies), TANDEM_ECOPIES
                           (not acknowledged by the deadline; may still be stored),
                           TANDEM_EFAILED, TANDEM_EBUSY, or another negative code. */
    uint64_t lsn_first; /* On success. */
    uint64_t lsn_last;
};

/* Filled by tdm_replica_step(); owned by the caller. Pointers in it point into
 * the replica or into the event and are valid until the next step. */
struct tdm_actions {
    const struct tdm_epoch_history *history_to_persist; /* (1) NULL: nothing. */
    bool cut;                                           /* (2) */
    uint64_t cut_after_lsn;
    uint32_t write_count; /* (3) */
    struct tdm_action_write writes[TDM_ACTIONS_WRITES_MAX];
    uint32_t send_count; /* (4) */
    struct tdm_send sends[TDM_ACTIONS_SENDS_MAX];
    const struct tdm_epoch_history *history;     /* For HELLO and START sends. */
    const struct tdm_epoch_history *history_new; /* For HANDOVER and FENCE sends. */
    uint32_t lag_count;                          /* For HEARTBEAT sends. */
    const struct tdm_frame_lag *lags;
    uint32_t result_count; /* (5) */
    struct tdm_action_result results[TDM_ACTIONS_RESULTS_MAX];
    uint64_t deadline_ms;  /* (6) */
    uint32_t report_count; /* Last: command outcomes (PROTOCOL.md §8). */
    struct tdm_report reports[TDM_ACTIONS_REPORTS_MAX];
    uint32_t read_count; /* Verification: after the sends. */
    struct tdm_action_read reads[TDM_ACTIONS_READS_MAX];
    uint32_t verified_count;
    struct tdm_action_verified verified[TDM_ACTIONS_VERIFIED_MAX];
};

/* The primary's view of one backup (and a backup's of its primary). */
enum tdm_link_state {
    TDM_LINK_DOWN = 1,
    TDM_LINK_UP,      /* Connected; no handshake yet. */
    TDM_LINK_STARTED, /* Primary: START sent. Backup: HELLO sent, waiting for START. */
    TDM_LINK_SYNCING, /* Backup: cutting or persisting the primary's history. */
    TDM_LINK_LIVE,    /* Handshake done: batches flow. */
};

struct tdm_replica_inflight {
    uint64_t lsn_last; /* End of one APPEND range sent. */
    uint64_t size;     /* Bytes it counts against the pipeline. */
};

struct tdm_replica_peer {
    enum tdm_link_state link;
    uint64_t hello_id; /* Primary: the HELLO being answered. Backup: the last sent. */
    uint64_t link_ms;  /* When link last changed state. */
    /* What the peer last said of itself (HELLO, READY, ACK). */
    uint8_t role;
    uint64_t epoch;
    uint64_t last_lsn;
    /* Primary only: shipping to this backup. */
    uint64_t fork_lsn;     /* From START. */
    uint64_t next_lsn;     /* Next LSN to send. */
    uint64_t received_lsn; /* The backup's written LSN, from READY/ACK. */
    uint64_t durable_lsn;  /* The backup's durable LSN in this epoch; 0 if unknown. */
    uint64_t progress_ms;  /* Last ACK that moved received_lsn, or last (re)send. */
    uint64_t heartbeat_ms; /* Last HEARTBEAT sent. */
    uint64_t rtt_ms;       /* Last heartbeat round trip on the primary's clock. */
    uint64_t heard_ms;     /* Backup: last frame accepted from its primary. */
    uint64_t echo_ms;      /* Backup: send_ms of the last HEARTBEAT, for ACK. */
    bool forward_held;     /* A FORWARD on this link was not taken (in any role), so no later
                            * one is until one flagged TDM_FORWARD_RESTART (PROTOCOL.md §6). */
    uint32_t inflight_head;
    uint32_t inflight_count;
    uint64_t inflight_size;
    struct tdm_replica_inflight inflight[TDM_PIPELINE_BATCHES_MAX];
};

/* A local batch end the primary remembers, to cut APPEND ranges on batch
 * boundaries and to measure lag in bytes and time. */
struct tdm_replica_boundary {
    uint64_t lsn_last;
    uint64_t size_total; /* Bytes written since init, up to and including this batch. */
    uint64_t written_ms; /* When APPENDED reported it. */
};

enum tdm_write_state {
    TDM_WRITE_HELD = 1,  /* Primary not yet acting in its epoch: not handed to the engine. */
    TDM_WRITE_APPENDING, /* Primary: handed to the engine; no LSNs yet. */
    TDM_WRITE_WAITING,   /* Primary: has LSNs; waits for commit_lsn. */
    TDM_WRITE_UNSENT,    /* Backup: waits for a link to the primary. */
    TDM_WRITE_FORWARDED, /* Backup: FORWARD sent; waits for FORWARD_RESULT. */
};

struct tdm_replica_write {
    uint64_t write_id;
    enum tdm_write_state state;
    uint32_t origin_index;  /* Node that submitted it (self, or the forwarding backup),
                               or TDM_REPLICA_ORIGIN_GONE once that link dropped. */
    uint64_t request_id;    /* Forwarded: the backup's id. */
    uint32_t forward_index; /* FORWARDED: the node it was forwarded to. */
    uint32_t record_count;
    uint32_t size;
    uint64_t lsn_first;
    uint64_t lsn_last;
    uint64_t deadline_ms;
};

/* Thread: one thread. Zero-initialise nothing: tdm_replica_init() sets it all. */
struct tdm_replica {
    struct tdm_replica_config config; /* config.history points at history below. */
    enum tdm_role role;
    bool started;         /* The first step ran (a primary starts its epoch there). */
    bool history_pending; /* history_next is being persisted. */
    bool cut_pending;
    struct tdm_epoch_history history;       /* Persisted. */
    struct tdm_epoch_history history_next;  /* Being persisted. */
    uint64_t epoch;                         /* Last entry of history: only grows. */
    uint64_t last_lsn;                      /* Written to the local log. */
    uint64_t last_epoch;                    /* Epoch of the batch ending at last_lsn. */
    struct tdm_frame_chain_hash chain_hash; /* At last_lsn. */
    uint64_t durable_lsn;                   /* Durable in the local log. */
    uint64_t commit_lsn;      /* Primary: acknowledged. Backup: as the primary said. */
    uint64_t now_ms;          /* Of the last event. */
    uint64_t hello_id_last;   /* Backup: handshake attempts so far. */
    uint64_t forward_id_next; /* Primary: ids for forwarded writes. */
    uint32_t primary_index;   /* Primary of the current epoch. */
    struct tdm_replica_peer peers[TDM_REPLICA_NODES_MAX]; /* peers[self_index] unused. */
    /* Primary: recent batch ends, a ring. */
    uint32_t boundary_head;
    uint32_t boundary_count;
    uint64_t size_total; /* Bytes written since init. */
    struct tdm_replica_boundary boundaries[TDM_REPLICA_BOUNDARIES_MAX];
    /* Backup: the primary's last lag table. */
    uint32_t lag_count;
    struct tdm_frame_lag lags[TDM_REPLICA_NODES_MAX];
    uint32_t write_count;
    struct tdm_replica_write writes[TDM_REPLICA_WRITES_MAX];
    struct tdm_verify verify; /* PROTOCOL.md §9 (net/replica_verify.c). */
    /* PROTOCOL.md §8 (net/replica_switch.c, net/replica_failover.c). */
    uint64_t wall_ms; /* Of the last event that carried one. */
    struct tdm_replica_switch sw;
    struct tdm_replica_failover fo;
    struct tdm_epoch_history history_offer; /* HANDOVER's or FENCE's history. */
    /* SHIP_FAILED (PROTOCOL.md §9.5): APPEND sends the adapter could not
     * read, and the first LSN of the last one until a backup holds it
     * durably (0: none outstanding). */
    uint64_t ship_failures;
    uint64_t ship_failed_lsn;
};

tdm_static_assert(TDM_REPLICA_NODES_MAX <= 32);
tdm_static_assert(TDM_ACTIONS_SENDS_MAX >= TDM_REPLICA_NODES_MAX * TDM_PIPELINE_BATCHES_MAX);
tdm_static_assert(TDM_ACTIONS_RESULTS_MAX >= TDM_REPLICA_WRITES_MAX);
tdm_static_assert(TDM_ACTIONS_WRITES_MAX >= TDM_REPLICA_WRITES_MAX);
tdm_static_assert(TDM_REPLICA_BOUNDARIES_MAX > TDM_PIPELINE_BATCHES_MAX);

/* Initialise replica in place from config (read during the call; the history
 * is copied). config must be valid (asserted): the adapter built it from its
 * own configuration and the engine's recovery. The node becomes the primary if
 * the last history entry names it, else a backup; it acts from its first step. */
void tdm_replica_init(struct tdm_replica *replica, const struct tdm_replica_config *config);

/* Apply one event and fill actions (overwritten) with what to do, in the order
 * documented at the top of this file. event is borrowed for the call; frames
 * and records it points to must stay valid until the actions are carried out.
 * Never fails: bad frames are traced and ignored. */
void tdm_replica_step(struct tdm_replica *replica, const struct tdm_event *event,
                      struct tdm_actions *actions);

/* One node as this node sees it (tandem status). */
struct tdm_replica_node_status {
    enum tdm_role role; /* As last known; TDM_ROLE_RECOVERING if unknown. */
    uint64_t epoch;     /* As last known; 0 if unknown. */
    uint64_t last_lsn;
    uint64_t durable_lsn;
    uint64_t lag_records; /* Behind the primary's last LSN. */
    uint64_t lag_size;    /* Bytes behind (a lower bound when far behind). */
    uint64_t lag_ms;      /* On the primary's clock. */
    bool link_up;         /* Self: true. */
    enum tdm_link_state link;
    /* Verification (PROTOCOL.md §9). verify_known: this node knows the fields
     * below (a primary of every node; a backup of itself and its primary). */
    bool verify_known;
    uint64_t verified_lsn;     /* Its copy proven equal to the primary's through here. */
    uint64_t mismatches_found; /* Mismatches found since this node's replica started. */
    uint64_t divergent_first;  /* The first divergent batch of its copy; 0, 0: none known. */
    uint64_t divergent_last;
    bool bisecting; /* A mismatch is being narrowed down. */
};

struct tdm_replica_status {
    enum tdm_role role;
    uint64_t epoch;
    uint32_t self_index;
    uint32_t primary_index;
    uint64_t commit_lsn;
    uint32_t writes_in_flight;
    uint32_t node_count;
    struct tdm_replica_node_status nodes[TDM_REPLICA_NODES_MAX];
    uint64_t ship_failures;   /* APPEND sends not sent: their read failed. */
    uint64_t ship_failed_lsn; /* Shipping waits at this LSN (unreadable here); 0: not. */
};

/* Fill status with a snapshot of what this node knows. */
void tdm_replica_status(const struct tdm_replica *replica, struct tdm_replica_status *status);

/* "primary", "backup", ... */
const char *tdm_replica_role_name(enum tdm_role role);

/* Fill frame with everything send and actions say (header, and the payload of
 * every type). What only the adapter holds is left for it: APPEND's batches
 * (read from the log) and FORWARD's record bytes. Pure; both the libuv adapter
 * and the simulator build their frames this way. */
void tdm_replica_frame_from_send(const struct tdm_actions *actions, const struct tdm_send *send,
                                 struct tdm_frame *frame);

/* --- Epoch histories and the fork point (net/replica_fork.c) ----------------- */

/* True if history is well formed for a cluster of node_count nodes: 1..MAX
 * entries, epochs >= 1 strictly increasing, lsn_first >= 1 non-decreasing,
 * primary indexes in range. Untrusted input: never asserts. */
bool tdm_replica_history_valid(const struct tdm_epoch_history *history, uint32_t node_count);

/* Index of the entry for epoch, or -1. */
int tdm_replica_history_find(const struct tdm_epoch_history *history, uint64_t epoch);

/* Last LSN of the epoch at index in a history whose log ends at last_lsn. */
uint64_t tdm_replica_history_epoch_end(const struct tdm_epoch_history *history, uint32_t index,
                                       uint64_t last_lsn);

/* Epoch that history assigns to lsn (the last entry with lsn_first <= lsn); 0
 * if lsn precedes every entry. */
uint64_t tdm_replica_history_epoch_at(const struct tdm_epoch_history *history, uint64_t lsn);

/* True if a and b hold the same entries. */
bool tdm_replica_history_equal(const struct tdm_epoch_history *a,
                               const struct tdm_epoch_history *b);

/* The fork point (PROTOCOL.md §5.2): the last LSN up to which the backup's log
 * (ending at backup_last_lsn, whose last batch has epoch backup_last_epoch,
 * described by backup's history) is certainly a prefix of the primary's log
 * (ending at primary_last_lsn, described by primary's history). Both
 * histories must be valid. The result is <= backup_last_lsn and
 * <= primary_last_lsn. */
uint64_t tdm_replica_fork_point(const struct tdm_epoch_history *primary, uint64_t primary_last_lsn,
                                const struct tdm_epoch_history *backup, uint64_t backup_last_lsn,
                                uint64_t backup_last_epoch);

/* --- Switchover and failover (net/replica_switch.c, PROTOCOL.md §8) --------- */

/* The epoch a node opens above base: the smallest epoch > base that belongs to
 * owner_index, i.e. epoch % node_count == owner_index (PROTOCOL.md §4). Two
 * nodes can therefore never open the same epoch, whatever they know. */
uint64_t tdm_replica_epoch_next(uint64_t base, uint32_t owner_index, uint32_t node_count);

/* The node a switchover to "the next in rotation" would pick now: the first
 * node after this one in config.rotation (wrapping) whose link is LIVE and
 * whose lag is within switchover_catch_up_ms; UINT32_MAX if none (or if this
 * node is not the acting primary). For the adapter's schedule and status. */
uint32_t tdm_replica_switchover_next(const struct tdm_replica *replica);

/* Names for trace lines, the CLI and the epoch file: "scheduled", "command",
 * ...; "target lagging", ...; "done", ...; "unknown" for a value out of range. */
const char *tdm_replica_cause_name(uint32_t cause);
/* The cause whose name is name (not "unknown"); false if none. */
bool tdm_replica_cause_parse(const char *name, uint32_t *cause);
const char *tdm_replica_refusal_name(uint32_t refusal);
const char *tdm_replica_outcome_name(uint32_t outcome);

#endif
