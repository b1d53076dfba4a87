/* tests/sim/sim.c: one seeded run of a simulated cluster (STYLE B8,
 * RELIABILITY S7, TigerBeetle's VOPR in miniature).
 *
 * The model:
 * - 2 to 4 nodes, each a real struct tdm_replica; node 0 is the primary named
 *   by the initial epoch history (1, node 0, LSN 1) every node starts with.
 * - A network of links, one per pair, up when both ends run and no partition
 *   cuts them; each up/down change is a new session (TCP connection) and frames
 *   of an old session are never delivered. Within a session frames are
 *   delayed at random (so reordered), dropped and duplicated.
 * - A disk per node: the log as a list of batches (LSN range, epoch, payload,
 *   chain hash = a hash of the previous chain hash and the batch) with a
 *   durable prefix, the persisted epoch history, and a FIFO of disk operations
 *   (persist the history, cut, fdatasync) that complete after random latency.
 *   A crash loses the operations in flight and a random part of the batches
 *   that were not yet durable; the node restarts from what is left. About a
 *   third of the seeds also crash node 0 once within its first 60 ms, while
 *   its first batches may not be durable: the case that lets a first primary
 *   act in epoch 1 again only because it ships nothing not durable in epoch 1
 *   (docs/PROTOCOL.md §4).
 * - Storage corruption (docs/PROTOCOL.md §9.5): bit rot flips a bit of the
 *   body, the checksum or the header's chain hash of a durable batch in a
 *   sealed segment (a batch in the node's first seal_every * k batches) of an
 *   acknowledged LSN, on a running or stopped node, while another node holds
 *   an intact copy (so every batch keeps one: TigerBeetle's rule). A batch
 *   keeps what was written (what the checkers compare) and its damage (what a
 *   read returns). Every read checks the checksum, as tdm_log_read_located
 *   does: an APPEND range with a damaged batch is not sent (SHIP_FAILED goes
 *   to the replica, which goes on retransmitting: shipping waits), a chain
 *   hash read fails with TANDEM_ECORRUPT, a client query is refused. Repair
 *   runs in the adapter (scrub, fetch, swap: net/uv_scrub.c, net/uv_repair.c),
 *   so the simulator stands in for it: now and then, and for all damage when
 *   phase 2 begins, a damaged batch gets the bytes of an intact copy of the
 *   same batch (same LSNs and chain hash) on another node. These faults draw
 *   from a PRNG of their own, so a seed without them runs exactly as before.
 * - Clients submit writes to the primary and to backups (forwarded), and
 *   query batches of any node.
 * - Switchover and failover (docs/PROTOCOL.md §8): the schedule or an operator
 *   asks the primary to move (to a random node, to "next in rotation", to an
 *   unknown one), an operator fails over to a backup after a crash of the
 *   primary, or at random (mostly premature: refused), sometimes as a dry run,
 *   sometimes forced; each with its own bounds and rotation order per seed.
 *   The primary is whoever acts in the newest epoch (sim->authority_*).
 * - Swarm testing: each seed draws its own fault rates, latencies and limits.
 * - Phase 1 (faults) runs for a fixed time; phase 2 heals every partition,
 *   restarts every node, stops faults and clients, and requires convergence.
 *
 * Invariants, checked after every step (sim_check, sim_apply):
 * - D1: the highest acknowledged LSN is durable, with the acknowledged chain
 *   hash, on at least min_copies nodes, and on the node acting as primary of
 *   the newest epoch: no acknowledged write is lost by a switchover or an
 *   unforced failover (a forced failover may lose some: from the moment one
 *   starts, the loss checks stop for the seed, the others go on);
 * - no node acts in an epoch it has not persisted (the planted bug
 *   target_accepts_before_epoch_persisted fails here), and at most one node
 *   appends local writes in an epoch;
 * - ENOTPRIMARY never reaches a client: writers see a pause, never an error;
 * - C1: every node's log agrees with the acknowledged log (by chain hash) at
 *   min(its last LSN, the acknowledged LSN): committed prefixes are identical;
 * - an acknowledged write's LSNs hold exactly that write's records;
 * - O1: the writes submitted on one node get LSNs in the order they were
 *   submitted (a client's stream keeps its order, forwarded or not), on
 *   seeds whose links neither reorder nor duplicate frames, as TCP does not
 *   (p->stream_links; frames may still be lost, with their link);
 * - at most one primary per epoch; epochs only grow on every node;
 * - a backup appends only frames of its own epoch, and every node's log
 *   agrees with its own persisted epoch history (no batch of an epoch that
 *   the history does not assign to its LSNs);
 * - batches received follow the receiver's chain (what the engine verifies);
 * - nothing acknowledged is ever cut, and what is cut goes to quarantine;
 * - I1: no node ever ships or serves bytes that fail their checksum: every
 *   batch of every APPEND frame put on the wire, every chain hash read that
 *   succeeds and every query answered is checked against its checksum,
 *   apart from the read path that should have refused it (sim_check_bytes;
 *   `sim --unchecked-reads` removes the reads' checks and fails here);
 * - liveness: after phase 2 one node is the primary of the newest epoch, every
 *   other one its backup in that epoch holding its log durably, no switchover
 *   or failover is under way, and every client write has an answer;
 * - verification (docs/PROTOCOL.md §9; sim_verify_*): every replica compares
 *   copies every verify_interval_ms, its reads of chain hashes go through the
 *   disk queue (so they race with cuts and crashes), segments seal every few
 *   batches, and claims persist across restarts. A claim "verified through n"
 *   (the primary's of a backup, a backup's of itself) is never above a point
 *   where that copy's chain hash differs from the primary's, when made or
 *   later; no mismatch is ever reported, since copies never diverge in the
 *   range compared (no false alarms); after phase 2 every backup is verified
 *   through the primary's last LSN, on both sides. */
#include "sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/error.h"
#include "engine/base/prng.h"
#include "net/replica.h"

#define SIM_NODES_MAX    4
#define SIM_LOG_MAX      8192
#define SIM_OPS_MAX      64
#define SIM_MESSAGES_MAX 4096
#define SIM_EVENTS_MAX   32768
#define SIM_WRITES_MAX   16384
#define SIM_EPOCHS_MAX   8192
#define SIM_STEPS_MAX    400000

struct sim_batch {
    uint64_t lsn_first;
    uint64_t lsn_last;
    uint64_t epoch;
    uint64_t payload;  /* The client write id whose records these are. */
    uint64_t write_id; /* The primary replica's write id; 0 for received batches. */
    uint32_t size;
    struct tdm_frame_chain_hash chain;
    uint64_t checksum; /* Of the batch as written (sim_checksum). */
    /* Bit rot: bits flipped in what a read returns (0: intact). */
    uint64_t damage_payload;
    uint64_t damage_checksum;
    uint64_t damage_chain; /* Into the chain hash's first 8 bytes (the header). */
};

/* A batch's bytes as an APPEND frame carries them (after the frame's batch
 * header: LSNs, epoch, size, chain hash). */
struct sim_bytes {
    uint64_t payload;
    uint64_t checksum;
};

enum sim_op_kind { SIM_OP_EPOCHS = 1, SIM_OP_CUT, SIM_OP_SYNC, SIM_OP_READ };

struct sim_op {
    enum sim_op_kind kind;
    uint64_t cut_after_lsn;
    uint32_t sync_count; /* SYNC: batches durable once it completes. */
    uint64_t read_id;    /* READ: a chain hash read (verification). */
    uint64_t read_lsn;
};

struct sim_node {
    struct tdm_replica replica;
    bool running;
    uint64_t incarnation;
    uint64_t next_tick_ms;
    uint64_t epoch_seen;
    uint32_t count;
    uint32_t durable_count;
    struct sim_batch log[SIM_LOG_MAX];
    struct tdm_epoch_history history; /* Persisted. */
    struct tdm_epoch_history history_pending;
    uint32_t op_head;
    uint32_t op_count;
    struct sim_op ops[SIM_OPS_MAX];
    uint64_t quarantined; /* Batches cut into quarantine. */
    /* DIR/verified: the last claim recorded for each node (survives crashes). */
    uint64_t verified_disk[SIM_NODES_MAX];
};

enum sim_event_kind {
    SIM_EV_DELIVER = 1,
    SIM_EV_DISK,
    SIM_EV_TICK,
    SIM_EV_REPLICA, /* A replica event queued by the adapter (PEER_*, APPENDED). */
    SIM_EV_CLIENT,
    SIM_EV_CRASH,
    SIM_EV_RESTART,
    SIM_EV_PARTITION,
    SIM_EV_HEAL,
    SIM_EV_CALM,       /* Phase 2 begins. */
    SIM_EV_SWITCHOVER, /* The schedule or an operator asks the primary to move. */
    SIM_EV_FAILOVER,   /* An operator asks a backup to take over. */
    SIM_EV_DAMAGE,     /* Bit rot in a sealed batch (sim_on_damage). */
    SIM_EV_REPAIR,     /* The scrubber and repair restore a node's damaged batches. */
    SIM_EV_QUERY,      /* A client queries a batch of a node. */
};

struct sim_event {
    uint64_t at_ms;
    uint64_t seq;
    enum sim_event_kind kind;
    uint32_t node;
    uint32_t other;
    uint64_t incarnation;
    struct tdm_event replica_event;
};

struct sim_message {
    bool used;
    uint32_t from;
    uint32_t to;
    uint64_t session;
    struct tdm_frame frame;
    struct sim_bytes bytes[TDM_FRAME_BATCHES_MAX];
    uint64_t forward_payload;
};

enum sim_write_state { SIM_WRITE_PENDING = 1, SIM_WRITE_ACKED, SIM_WRITE_FAILED, SIM_WRITE_LOST };

struct sim_write {
    uint32_t node;
    enum sim_write_state state;
    uint32_t record_count;
    uint64_t lsn_first; /* Once acknowledged. */
    uint64_t lsn_last;
};

/* Per seed: what the swarm drew. */
struct sim_params {
    uint32_t node_count;
    uint32_t min_copies;
    uint64_t delay_ms_max;
    uint32_t drop_per_mille;
    uint32_t duplicate_per_mille;
    uint32_t reorder_per_mille; /* Frames that overtake or fall behind their link's order. */
    bool stream_links;          /* No reorder, no duplicate (TCP): O1 is checked. */
    uint64_t disk_ms_max;
    uint64_t client_gap_ms_max;
    uint64_t crash_gap_ms; /* 0: no crashes. */
    /* 0: none. Else crash node 0, the first primary, once at this time, while
     * its first batches may not be durable yet: with an empty log it acts in
     * epoch 1 again, which is safe only because in epoch 1 it ships nothing
     * that is not durable (PROTOCOL.md §4). */
    uint64_t first_primary_crash_ms;
    uint64_t partition_gap_ms; /* 0: no partitions. */
    uint64_t down_ms_max;
    uint32_t frame_batches_max;
    uint64_t faults_ms;
    uint32_t seal_every; /* A segment seals every this many local batches. */
    /* Switchover and failover (PROTOCOL.md §8). */
    uint64_t switchover_gap_ms;  /* 0: none. Else one every 1..this ms. */
    uint32_t failover_per_mille; /* After a crash of the primary: chance of a failover. */
    uint64_t failover_gap_ms;    /* 0: none. Else an operator failover (maybe
                                    premature) every 1..this ms. */
    uint32_t force_per_mille;    /* Of failovers: forced. */
    uint32_t dry_run_per_mille;  /* Of failovers: dry runs. */
    /* Storage corruption (drawn from damage_prng). 0: none. */
    uint64_t damage_gap_ms; /* Bit rot in a sealed batch every 1..this ms. */
    uint64_t repair_gap_ms; /* A node's damage repaired every 1..this ms. */
    uint64_t query_gap_ms;  /* A client query every 1..this ms. */
    struct tdm_replica_config config;
};

struct sim {
    struct tdm_prng prng;
    struct tdm_prng damage_prng; /* Storage corruption and queries only. */
    uint64_t seed;
    bool verbose;
    bool failed;
    bool calm;
    char *message;
    size_t message_size;
    uint64_t now_ms;
    uint64_t steps;
    uint64_t seq;
    struct sim_params params;
    struct sim_node nodes[SIM_NODES_MAX];
    bool partitioned[SIM_NODES_MAX][SIM_NODES_MAX];
    bool up[SIM_NODES_MAX][SIM_NODES_MAX];
    uint64_t session[SIM_NODES_MAX][SIM_NODES_MAX];
    uint64_t link_last_ms[SIM_NODES_MAX][SIM_NODES_MAX]; /* Latest in-order delivery. */
    uint32_t event_count;
    struct sim_event events[SIM_EVENTS_MAX]; /* A binary heap by (at_ms, seq). */
    uint32_t message_free;
    struct sim_message messages[SIM_MESSAGES_MAX];
    uint64_t write_next;
    struct sim_write writes[SIM_WRITES_MAX];
    /* The acknowledged log: batch ends and chain hashes, from the primary. */
    uint32_t ref_count;
    uint64_t ref_lsn_last[SIM_LOG_MAX];
    struct tdm_frame_chain_hash ref_chain[SIM_LOG_MAX];
    uint32_t epoch_primary[SIM_EPOCHS_MAX]; /* UINT32_MAX: not seen. */
    uint32_t epoch_writer[SIM_EPOCHS_MAX];  /* Node that appended local writes; UINT32_MAX. */
    /* The newest epoch any node acted in as primary: its primary must hold
     * every acknowledged write (PROTOCOL.md §8). */
    uint64_t authority_epoch;
    uint32_t authority_index;
    /* A forced failover ran: acknowledged writes may be lost from now on, so
     * the loss checks stop (the structural ones go on). */
    bool lossy;
    uint64_t request_next; /* Switchover and failover request ids. */
    struct tdm_actions actions;
};

static struct sim sim_state;
static struct sim_stats sim_totals;
/* `sim --unchecked-reads`: reads return damaged bytes as they are, to show
 * that the I1 checks catch a node that ships or serves them. */
static bool sim_unchecked_reads;

void sim_reads_unchecked(bool unchecked)
{
    sim_unchecked_reads = unchecked;
}

void sim_stats_get(struct sim_stats *stats)
{
    *stats = sim_totals;
}

static void sim_fail(struct sim *sim, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void sim_fail(struct sim *sim, const char *format, ...)
{
    if (sim->failed) {
        return;
    }
    sim->failed = true;
    int prefix = snprintf(sim->message, sim->message_size, "t=%" PRIu64 "ms: ", sim->now_ms);
    if (prefix < 0 || (size_t)prefix >= sim->message_size) {
        return;
    }
    va_list args;
    va_start(args, format);
    (void)vsnprintf(sim->message + prefix, sim->message_size - (size_t)prefix, format, args);
    va_end(args);
}

static void sim_log(struct sim *sim, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void sim_log(struct sim *sim, const char *format, ...)
{
    if (!sim->verbose) {
        return;
    }
    printf("%8" PRIu64 " sim  ", sim->now_ms);
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    putchar('\n');
}

static void sim_trace(void *data, const char *line)
{
    (void)data;
    printf("%8s      %s\n", "", line);
}

static uint64_t sim_random(struct sim *sim, uint64_t bound)
{
    return tdm_prng_below(&sim->prng, bound);
}

static bool sim_chance(struct sim *sim, uint32_t per_mille)
{
    return sim_random(sim, 1000) < per_mille;
}

/* --- Event heap -------------------------------------------------------------- */

static bool sim_event_before(const struct sim_event *a, const struct sim_event *b)
{
    return a->at_ms < b->at_ms || (a->at_ms == b->at_ms && a->seq < b->seq);
}

static struct sim_event *sim_schedule(struct sim *sim, uint64_t at_ms, enum sim_event_kind kind,
                                      uint32_t node)
{
    if (sim->event_count == SIM_EVENTS_MAX) {
        sim_fail(sim, "simulator event queue full");
        static struct sim_event spare;
        return &spare;
    }
    uint32_t index = sim->event_count++;
    struct sim_event event = {.at_ms = at_ms, .seq = sim->seq++, .kind = kind, .node = node};
    if (node < SIM_NODES_MAX) {
        event.incarnation = sim->nodes[node].incarnation;
    }
    while (index > 0) {
        uint32_t parent = (index - 1) / 2;
        if (!sim_event_before(&event, &sim->events[parent])) {
            break;
        }
        sim->events[index] = sim->events[parent];
        index = parent;
    }
    sim->events[index] = event;
    return &sim->events[index];
}

static struct sim_event sim_pop(struct sim *sim)
{
    struct sim_event top = sim->events[0];
    struct sim_event last = sim->events[--sim->event_count];
    uint32_t index = 0;
    for (;;) {
        uint32_t child = 2 * index + 1;
        if (child >= sim->event_count) {
            break;
        }
        if (child + 1 < sim->event_count &&
            sim_event_before(&sim->events[child + 1], &sim->events[child])) {
            child++;
        }
        if (!sim_event_before(&sim->events[child], &last)) {
            break;
        }
        sim->events[index] = sim->events[child];
        index = child;
    }
    if (sim->event_count > 0) {
        sim->events[index] = last;
    }
    return top;
}

/* Queue a replica event for node, delivered in order after the current step. */
static void sim_queue_replica(struct sim *sim, uint32_t node, const struct tdm_event *event)
{
    struct sim_event *queued = sim_schedule(sim, sim->now_ms, SIM_EV_REPLICA, node);
    queued->replica_event = *event;
}

/* --- Logs and chain hashes ------------------------------------------------- */

static uint64_t sim_mix(uint64_t x)
{
    return tdm_splitmix64(&x);
}

static struct tdm_frame_chain_hash sim_chain(const struct tdm_frame_chain_hash *prev,
                                             const struct sim_batch *batch)
{
    uint64_t a;
    uint64_t b;
    memcpy(&a, prev->bytes, 8);
    memcpy(&b, prev->bytes + 8, 8);
    uint64_t fields[5] = {batch->lsn_first, batch->lsn_last, batch->epoch, batch->payload,
                          batch->size};
    for (int i = 0; i < 5; i++) {
        a = sim_mix(a ^ fields[i]);
        b = sim_mix(b + fields[i] * 0x9e3779b97f4a7c15ULL + a);
    }
    struct tdm_frame_chain_hash chain;
    memcpy(chain.bytes, &a, 8);
    memcpy(chain.bytes + 8, &b, 8);
    return chain;
}

/* The checksum a batch carries: of its header (LSNs, epoch, size, chain
 * hash) and its body, as engine/batch.c's XXH3 checksums cover them. */
static uint64_t sim_checksum(uint64_t lsn_first, uint64_t lsn_last, uint64_t epoch, uint32_t size,
                             const struct tdm_frame_chain_hash *chain, uint64_t payload)
{
    uint64_t a;
    uint64_t b;
    memcpy(&a, chain->bytes, 8);
    memcpy(&b, chain->bytes + 8, 8);
    uint64_t fields[7] = {lsn_first, lsn_last, epoch, size, a, b, payload};
    uint64_t checksum = UINT64_C(0x243f6a8885a308d3);
    for (int i = 0; i < 7; i++) {
        checksum = sim_mix(checksum ^ fields[i]);
    }
    return checksum;
}

static uint64_t sim_batch_checksum(const struct sim_batch *batch)
{
    return sim_checksum(batch->lsn_first, batch->lsn_last, batch->epoch, batch->size, &batch->chain,
                        batch->payload);
}

static bool sim_damaged(const struct sim_batch *batch)
{
    return batch->damage_payload != 0 || batch->damage_checksum != 0 || batch->damage_chain != 0;
}

/* What a read of a batch finds on the medium: its bytes with their damage. */
struct sim_view {
    uint64_t payload;
    uint64_t checksum;
    struct tdm_frame_chain_hash chain;
};

static struct sim_view sim_view_of(const struct sim_batch *batch)
{
    struct sim_view view = {.payload = batch->payload ^ batch->damage_payload,
                            .checksum = batch->checksum ^ batch->damage_checksum,
                            .chain = batch->chain};
    uint64_t head;
    memcpy(&head, view.chain.bytes, 8);
    head ^= batch->damage_chain;
    memcpy(view.chain.bytes, &head, 8);
    return view;
}

/* The adapter's read of one batch: every checksum checked, as
 * tdm_log_read_located does. Returns 0 or TANDEM_ECORRUPT. */
static int sim_read(const struct sim_batch *batch, struct sim_view *view)
{
    *view = sim_view_of(batch);
    if (!sim_unchecked_reads &&
        sim_checksum(batch->lsn_first, batch->lsn_last, batch->epoch, batch->size, &view->chain,
                     view->payload) != view->checksum) {
        return TANDEM_ECORRUPT;
    }
    return 0;
}

/* I1, checked apart from the read path: bytes a node ships or serves (what
 * leaves it: header fields, chain hash, body, checksum) pass their checksum. */
static void sim_check_bytes(struct sim *sim, uint32_t index, const char *what,
                            const struct tdm_frame_batch *header, const struct sim_bytes *bytes)
{
    if (sim_checksum(header->lsn_first, header->lsn_last, header->epoch, header->size,
                     &header->chain_hash, bytes->payload) != bytes->checksum) {
        sim_fail(sim, "I1: n%u %s lsn %" PRIu64 "..%" PRIu64 ", bytes that fail their checksum",
                 index, what, header->lsn_first, header->lsn_last);
    }
}

static struct tdm_frame_chain_hash sim_chain_last(const struct sim_node *node)
{
    struct tdm_frame_chain_hash zero;
    memset(&zero, 0, sizeof(zero));
    return node->count == 0 ? zero : node->log[node->count - 1].chain;
}

static uint64_t sim_last_lsn(const struct sim_node *node, uint32_t count)
{
    return count == 0 ? 0 : node->log[count - 1].lsn_last;
}

/* Index of the batch of node's log (first count batches) holding lsn, or -1. */
static int sim_find(const struct sim_node *node, uint32_t count, uint64_t lsn)
{
    uint32_t low = 0;
    uint32_t high = count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        if (node->log[middle].lsn_last < lsn) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    if (low < count && node->log[low].lsn_first <= lsn) {
        return (int)low;
    }
    return -1;
}

static int sim_ref_find(const struct sim *sim, uint64_t lsn_last)
{
    uint32_t low = 0;
    uint32_t high = sim->ref_count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        if (sim->ref_lsn_last[middle] < lsn_last) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low < sim->ref_count && sim->ref_lsn_last[low] == lsn_last ? (int)low : -1;
}

static uint64_t sim_acked_lsn(const struct sim *sim)
{
    return sim->ref_count == 0 ? 0 : sim->ref_lsn_last[sim->ref_count - 1];
}

/* The node's persisted history must assign batch's epoch to its LSNs. */
static void sim_check_batch_epoch(struct sim *sim, uint32_t index, const struct sim_batch *batch)
{
    const struct tdm_epoch_history *history = &sim->nodes[index].history;
    if (batch->lsn_last < history->entries[0].lsn_first) {
        return; /* Older than the oldest entry kept (TDM_REPLICA_EPOCHS_MAX). */
    }
    if (tdm_replica_history_epoch_at(history, batch->lsn_first) != batch->epoch ||
        tdm_replica_history_epoch_at(history, batch->lsn_last) != batch->epoch) {
        sim_fail(sim,
                 "n%u holds lsn %" PRIu64 "..%" PRIu64 " of epoch %" PRIu64
                 ", which its epoch history does not assign there",
                 index, batch->lsn_first, batch->lsn_last, batch->epoch);
    }
}

static void sim_append(struct sim *sim, uint32_t index, const struct sim_batch *batch)
{
    struct sim_node *node = &sim->nodes[index];
    if (node->count == SIM_LOG_MAX) {
        sim_fail(sim, "simulated log full on n%u", index);
        return;
    }
    if (batch->lsn_first != sim_last_lsn(node, node->count) + 1) {
        sim_fail(sim, "n%u: batch at lsn %" PRIu64 " does not follow lsn %" PRIu64, index,
                 batch->lsn_first, sim_last_lsn(node, node->count));
        return;
    }
    if (node->count > 0 && batch->epoch < node->log[node->count - 1].epoch) {
        sim_fail(sim, "n%u: batch epoch %" PRIu64 " older than the log's", index, batch->epoch);
    }
    sim_check_batch_epoch(sim, index, batch);
    node->log[node->count++] = *batch;
}

/* --- Disk operations --------------------------------------------------------- */

static void sim_disk_schedule_head(struct sim *sim, uint32_t index)
{
    struct sim_node *node = &sim->nodes[index];
    if (node->op_count > 0) {
        uint64_t latency = 1 + sim_random(sim, sim->params.disk_ms_max);
        sim_schedule(sim, sim->now_ms + latency, SIM_EV_DISK, index);
    }
}

static struct sim_op *sim_disk_push(struct sim *sim, uint32_t index, enum sim_op_kind kind)
{
    struct sim_node *node = &sim->nodes[index];
    if (kind == SIM_OP_SYNC && node->op_count > 1) {
        struct sim_op *tail = &node->ops[(node->op_head + node->op_count - 1) % SIM_OPS_MAX];
        if (tail->kind == SIM_OP_SYNC) {
            return tail; /* Not started yet: one fdatasync covers both. */
        }
    }
    if (node->op_count == SIM_OPS_MAX) {
        sim_fail(sim, "simulated disk queue full on n%u", index);
        static struct sim_op spare;
        return &spare;
    }
    struct sim_op *op = &node->ops[(node->op_head + node->op_count++) % SIM_OPS_MAX];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    if (node->op_count == 1) {
        sim_disk_schedule_head(sim, index);
    }
    return op;
}

static void sim_sync(struct sim *sim, uint32_t index)
{
    struct sim_op *op = sim_disk_push(sim, index, SIM_OP_SYNC);
    op->sync_count = sim->nodes[index].count;
}

static void sim_epochs_record(struct sim *sim, const struct tdm_epoch_history *history)
{
    for (uint32_t i = 0; i < history->count; i++) {
        uint64_t epoch = history->entries[i].epoch;
        uint32_t primary = history->entries[i].primary_index;
        if (epoch >= SIM_EPOCHS_MAX) {
            sim_fail(sim, "epoch %" PRIu64 " beyond the simulator's table", epoch);
            return;
        }
        if (sim->epoch_primary[epoch] == UINT32_MAX) {
            sim->epoch_primary[epoch] = primary;
        } else if (sim->epoch_primary[epoch] != primary) {
            sim_fail(sim, "two primaries in epoch %" PRIu64 ": n%u and n%u", epoch,
                     sim->epoch_primary[epoch], primary);
        }
    }
}

static void sim_disk_epochs_done(struct sim *sim, uint32_t index, struct tdm_event *event)
{
    struct sim_node *node = &sim->nodes[index];
    uint64_t old = node->history.entries[node->history.count - 1].epoch;
    node->history = node->history_pending;
    uint64_t epoch = node->history.entries[node->history.count - 1].epoch;
    if (epoch < old) {
        sim_fail(sim, "n%u persisted epoch %" PRIu64 " after %" PRIu64, index, epoch, old);
    }
    sim_epochs_record(sim, &node->history);
    for (uint32_t i = 0; i < node->count; i++) {
        sim_check_batch_epoch(sim, index, &node->log[i]);
    }
    event->persisted.kind = TDM_PERSISTED_EPOCHS;
}

static void sim_disk_cut_done(struct sim *sim, uint32_t index, const struct sim_op *op,
                              struct tdm_event *event)
{
    struct sim_node *node = &sim->nodes[index];
    uint32_t keep = 0;
    while (keep < node->count && node->log[keep].lsn_last <= op->cut_after_lsn) {
        keep++;
    }
    if (sim_last_lsn(node, keep) != op->cut_after_lsn) {
        sim_fail(sim, "n%u: cut after lsn %" PRIu64 " is not a batch end", index,
                 op->cut_after_lsn);
    }
    uint64_t acked = sim_acked_lsn(sim);
    for (uint32_t i = keep; i < node->count; i++) {
        const struct sim_batch *batch = &node->log[i];
        int ref = !sim->lossy && batch->lsn_last <= acked ? sim_ref_find(sim, batch->lsn_last) : -1;
        if (ref >= 0 && memcmp(&sim->ref_chain[ref], &batch->chain, sizeof(batch->chain)) == 0) {
            sim_fail(sim, "n%u cut acknowledged lsn %" PRIu64, index, batch->lsn_last);
        }
    }
    sim_totals.cuts++;
    sim_totals.quarantined += node->count - keep;
    sim_log(sim, "n%u cut %u batches after lsn %" PRIu64 " into quarantine", index,
            node->count - keep, op->cut_after_lsn);
    node->quarantined += node->count - keep;
    node->count = keep;
    if (node->durable_count > keep) {
        node->durable_count = keep;
    }
    event->persisted.kind = TDM_PERSISTED_CUT;
    event->persisted.lsn_last = sim_last_lsn(node, keep);
    event->persisted.last_epoch = keep == 0 ? 0 : node->log[keep - 1].epoch;
    event->persisted.chain_hash = sim_chain_last(node);
}

static void sim_step(struct sim *sim, uint32_t index, const struct tdm_event *event);
static void sim_reports(struct sim *sim, uint32_t index);
static void sim_verify_read_done(struct sim *sim, uint32_t index, const struct sim_op *op);

/* PERSISTED(WRITE) for each local write made durable, then PERSISTED(LOG). */
static void sim_disk_sync_done(struct sim *sim, uint32_t index, const struct sim_op *op)
{
    struct sim_node *node = &sim->nodes[index];
    uint32_t target = op->sync_count < node->count ? op->sync_count : node->count;
    if (target <= node->durable_count) {
        return;
    }
    uint32_t from = node->durable_count;
    node->durable_count = target;
    for (uint32_t i = from; i < target; i++) {
        if (node->log[i].write_id != 0) {
            struct tdm_event event = {.type = TDM_EVENT_PERSISTED, .now_ms = sim->now_ms};
            event.persisted.kind = TDM_PERSISTED_WRITE;
            event.persisted.write_id = node->log[i].write_id;
            event.persisted.lsn_first = node->log[i].lsn_first;
            event.persisted.lsn_last = node->log[i].lsn_last;
            sim_queue_replica(sim, index, &event);
        }
    }
    struct tdm_event event = {.type = TDM_EVENT_PERSISTED, .now_ms = sim->now_ms};
    event.persisted.kind = TDM_PERSISTED_LOG;
    event.persisted.lsn_last = node->log[target - 1].lsn_last;
    event.persisted.chain_hash = node->log[target - 1].chain;
    sim_queue_replica(sim, index, &event);
}

static void sim_on_disk(struct sim *sim, uint32_t index)
{
    struct sim_node *node = &sim->nodes[index];
    if (node->op_count == 0) {
        sim_fail(sim, "disk completion with nothing queued on n%u", index);
        return;
    }
    struct sim_op op = node->ops[node->op_head];
    node->op_head = (node->op_head + 1) % SIM_OPS_MAX;
    node->op_count--;
    sim_disk_schedule_head(sim, index);
    struct tdm_event event = {.type = TDM_EVENT_PERSISTED, .now_ms = sim->now_ms};
    switch (op.kind) {
    case SIM_OP_EPOCHS:
        sim_disk_epochs_done(sim, index, &event);
        sim_step(sim, index, &event);
        break;
    case SIM_OP_CUT:
        sim_disk_cut_done(sim, index, &op, &event);
        sim_step(sim, index, &event);
        break;
    case SIM_OP_SYNC:
        sim_disk_sync_done(sim, index, &op);
        break;
    case SIM_OP_READ:
        sim_verify_read_done(sim, index, &op);
        break;
    }
}

/* --- Network ----------------------------------------------------------------- */

static struct sim_message *sim_message_new(struct sim *sim, uint32_t from, uint32_t to,
                                           uint32_t *message_index)
{
    for (uint32_t tries = 0; tries < SIM_MESSAGES_MAX; tries++) {
        uint32_t index = (sim->message_free + tries) % SIM_MESSAGES_MAX;
        if (!sim->messages[index].used) {
            sim->message_free = (index + 1) % SIM_MESSAGES_MAX;
            struct sim_message *message = &sim->messages[index];
            message->used = true;
            message->from = from;
            message->to = to;
            message->session = sim->session[from][to];
            *message_index = index;
            return message;
        }
    }
    sim_fail(sim, "simulated network full");
    return NULL;
}

/* Put message on the wire: maybe lost, maybe twice, after a random delay. */
static void sim_transmit(struct sim *sim, uint32_t message_index)
{
    struct sim_message *message = &sim->messages[message_index];
    uint32_t copies = 1;
    if (!sim->calm && sim_chance(sim, sim->params.drop_per_mille)) {
        copies = 0;
    } else if (sim_chance(sim, sim->params.duplicate_per_mille)) {
        copies = 2;
    }
    if (copies == 0) {
        message->used = false;
        return;
    }
    for (uint32_t i = 0; i < copies; i++) {
        uint32_t index = message_index;
        if (i == 1) {
            struct sim_message *copy = sim_message_new(sim, message->from, message->to, &index);
            if (copy == NULL) {
                return;
            }
            *copy = *message;
        }
        /* A link is a stream: in order, but for the odd frame that is not. */
        uint64_t at = sim->now_ms + 1 + sim_random(sim, sim->params.delay_ms_max);
        uint64_t *last = &sim->link_last_ms[message->from][message->to];
        if (!sim_chance(sim, sim->params.reorder_per_mille)) {
            at = at > *last ? at : *last;
            *last = at;
        }
        struct sim_event *event = sim_schedule(sim, at, SIM_EV_DELIVER, message->to);
        event->other = index;
    }
}

static bool sim_send_append(struct sim *sim, uint32_t from, const struct tdm_send *send)
{
    const struct sim_node *node = &sim->nodes[from];
    int first = sim_find(node, node->count, send->append.lsn_first);
    int last = sim_find(node, node->count, send->append.lsn_last);
    if (first < 0 || last < 0 || node->log[first].lsn_first != send->append.lsn_first ||
        node->log[last].lsn_last != send->append.lsn_last) {
        sim_fail(sim, "n%u: APPEND %" PRIu64 "..%" PRIu64 " is not whole batches of its log", from,
                 send->append.lsn_first, send->append.lsn_last);
        return false;
    }
    /* Read the range first, as net/uv_node.c does: a batch that fails its
     * checksum fails the whole read, and nothing of it is sent (shipping
     * waits for repair). The replica hears of it (SHIP_FAILED). */
    for (int i = first; i <= last; i++) {
        struct sim_view view;
        if (sim_read(&node->log[i], &view) != 0) {
            sim_totals.ships_refused++;
            sim_log(sim,
                    "n%u: APPEND %" PRIu64 "..%" PRIu64 " to n%u not sent: lsn %" PRIu64
                    "..%" PRIu64 " fails its checksum",
                    from, send->append.lsn_first, send->append.lsn_last, send->node_index,
                    node->log[i].lsn_first, node->log[i].lsn_last);
            struct tdm_event event = {.type = TDM_EVENT_SHIP_FAILED, .now_ms = sim->now_ms};
            event.ship_failed.node_index = send->node_index;
            event.ship_failed.lsn_first = send->append.lsn_first;
            event.ship_failed.lsn_last = send->append.lsn_last;
            event.ship_failed.status = TANDEM_ECORRUPT;
            sim_queue_replica(sim, from, &event);
            return false;
        }
    }
    /* A catch-up range (size unknown to the replica) is streamed in full frames. */
    uint32_t per_frame =
        send->append.size == 0 ? TDM_FRAME_BATCHES_MAX : sim->params.frame_batches_max;
    for (int i = first; i <= last;) {
        uint32_t index;
        struct sim_message *message = sim_message_new(sim, from, send->node_index, &index);
        if (message == NULL) {
            return false;
        }
        message->frame.type = TDM_FRAME_APPEND;
        message->frame.epoch = send->epoch;
        struct tdm_frame_append *append = &message->frame.append;
        append->commit_lsn = send->append.commit_lsn;
        append->batch_count = 0;
        while (i <= last && append->batch_count < per_frame) {
            const struct sim_batch *batch = &node->log[i++];
            struct sim_view view = sim_view_of(batch);
            struct tdm_frame_batch *out = &append->batches[append->batch_count];
            out->lsn_first = batch->lsn_first;
            out->lsn_last = batch->lsn_last;
            out->epoch = batch->epoch;
            out->size = batch->size;
            out->chain_hash = view.chain;
            out->bytes = NULL;
            message->bytes[append->batch_count].payload = view.payload;
            message->bytes[append->batch_count].checksum = view.checksum;
            sim_check_bytes(sim, from, "ships", out, &message->bytes[append->batch_count]);
            append->batch_count++;
        }
        sim_transmit(sim, index);
    }
    return true;
}

static void sim_send(struct sim *sim, uint32_t from, const struct tdm_actions *actions,
                     const struct tdm_send *send)
{
    uint32_t to = send->node_index;
    if (!sim->up[from][to]) {
        return;
    }
    if (send->type == TDM_FRAME_APPEND) {
        sim_totals.catch_up_ranges += send->append.size == 0;
        sim_send_append(sim, from, send);
        return;
    }
    uint32_t index;
    struct sim_message *message = sim_message_new(sim, from, to, &index);
    if (message == NULL) {
        return;
    }
    struct tdm_frame *frame = &message->frame;
    tdm_replica_frame_from_send(actions, send, frame);
    if (send->type == TDM_FRAME_FORWARD) {
        message->forward_payload = send->forward.request_id; /* The client's write id. */
    }
    sim_transmit(sim, index);
}

static void sim_on_deliver(struct sim *sim, uint32_t message_index)
{
    struct sim_message *message = &sim->messages[message_index];
    uint32_t from = message->from;
    uint32_t to = message->to;
    if (sim->up[from][to] && sim->session[from][to] == message->session) {
        struct tdm_frame *frame = &message->frame;
        if (frame->type == TDM_FRAME_APPEND) {
            for (uint32_t i = 0; i < frame->append.batch_count; i++) {
                frame->append.batches[i].bytes = (const uint8_t *)&message->bytes[i];
            }
        } else if (frame->type == TDM_FRAME_FORWARD) {
            frame->forward.records = (const uint8_t *)&message->forward_payload;
        }
        struct tdm_event event = {.type = TDM_EVENT_RECEIVE, .now_ms = sim->now_ms};
        event.receive.node_index = from;
        event.receive.frame = frame;
        sim_step(sim, to, &event);
    }
    message->used = false;
}

/* Bring every link to what partitions and running nodes say it should be. */
static void sim_links_update(struct sim *sim)
{
    uint32_t count = sim->params.node_count;
    for (uint32_t a = 0; a < count; a++) {
        for (uint32_t b = a + 1; b < count; b++) {
            bool want = sim->nodes[a].running && sim->nodes[b].running && !sim->partitioned[a][b];
            if (want == sim->up[a][b]) {
                continue;
            }
            sim->up[a][b] = sim->up[b][a] = want;
            sim->session[a][b]++;
            sim->session[b][a]++;
            sim_log(sim, "link n%u-n%u %s", a, b, want ? "up" : "down");
            uint32_t ends[2] = {a, b};
            for (int i = 0; i < 2; i++) {
                if (!sim->nodes[ends[i]].running) {
                    continue;
                }
                struct tdm_event event = {.type = want ? TDM_EVENT_PEER_UP : TDM_EVENT_PEER_DOWN,
                                          .now_ms = sim->now_ms};
                event.peer.node_index = ends[1 - i];
                sim_queue_replica(sim, ends[i], &event);
            }
        }
    }
}

/* --- Clients ----------------------------------------------------------------- */

static bool sim_holds(const struct sim *sim, const struct sim_node *node, uint32_t count,
                      uint64_t lsn_last, const struct tdm_frame_chain_hash *chain);

/* A node that durably holds the batch of an acknowledged write, whose log
 * agrees with the acknowledged log so far: the primary that acknowledged it,
 * or (after a switchover or failover) a node that holds all it held. */
static const struct sim_node *sim_holder(const struct sim *sim,
                                         const struct tdm_action_result *result, int *at)
{
    uint64_t acked = sim_acked_lsn(sim);
    for (uint32_t k = 0; k <= sim->params.node_count; k++) {
        uint32_t i = k == 0 ? sim->authority_index : k - 1;
        if (i >= sim->params.node_count) {
            continue;
        }
        const struct sim_node *node = &sim->nodes[i];
        int found = sim_find(node, node->durable_count, result->lsn_first);
        if (found < 0 || node->log[found].lsn_first != result->lsn_first ||
            node->log[found].lsn_last != result->lsn_last ||
            node->log[found].payload != result->write_id) {
            continue;
        }
        if (acked > 0 && result->lsn_last > acked &&
            !sim_holds(sim, node, node->count, acked, &sim->ref_chain[sim->ref_count - 1])) {
            continue;
        }
        *at = found;
        return node;
    }
    return NULL;
}

/* O1: the nearest acknowledged writes submitted on the same node before and
 * after write_id hold lower and higher LSNs (transitively: all of them). */
static void sim_check_order(struct sim *sim, uint64_t write_id)
{
    const struct sim_write *write = &sim->writes[write_id];
    for (uint64_t id = write_id - 1; id >= 1; id--) {
        const struct sim_write *before = &sim->writes[id];
        if (before->node == write->node && before->state == SIM_WRITE_ACKED) {
            if (before->lsn_last >= write->lsn_first) {
                sim_fail(sim,
                         "O1: n%u: write %" PRIu64 " at lsn %" PRIu64 " after write %" PRIu64
                         " at lsn %" PRIu64 ", submitted later",
                         write->node, write_id, write->lsn_first, id, before->lsn_last);
            }
            break;
        }
    }
    for (uint64_t id = write_id + 1; id < sim->write_next; id++) {
        const struct sim_write *after = &sim->writes[id];
        if (after->node == write->node && after->state == SIM_WRITE_ACKED) {
            if (after->lsn_first <= write->lsn_last) {
                sim_fail(sim,
                         "O1: n%u: write %" PRIu64 " at lsn %" PRIu64 " before write %" PRIu64
                         " at lsn %" PRIu64 ", submitted earlier",
                         write->node, id, after->lsn_first, write_id, write->lsn_last);
            }
            break;
        }
    }
}

static void sim_result(struct sim *sim, uint32_t index, const struct tdm_action_result *result)
{
    if (result->write_id == 0 || result->write_id >= sim->write_next) {
        sim_fail(sim, "n%u answers unknown write %" PRIu64, index, result->write_id);
        return;
    }
    struct sim_write *write = &sim->writes[result->write_id];
    if (write->state != SIM_WRITE_PENDING || write->node != index) {
        sim_fail(sim, "n%u answers write %" PRIu64 " twice or not its own", index,
                 result->write_id);
        return;
    }
    if (result->status == TANDEM_ENOTPRIMARY) {
        /* A write refused by a node that is not (or no longer) the primary is
         * sent again by the replica: writers never see it (PROTOCOL.md §8.1). */
        sim_fail(sim, "write %" PRIu64 " on n%u failed with ENOTPRIMARY", result->write_id, index);
        return;
    }
    if (result->status != 0) {
        sim_totals.writes_failed++;
        write->state = SIM_WRITE_FAILED;
        sim_log(sim, "write %" PRIu64 " on n%u failed: %d", result->write_id, index,
                result->status);
        return;
    }
    write->state = SIM_WRITE_ACKED;
    write->lsn_first = result->lsn_first;
    write->lsn_last = result->lsn_last;
    sim_totals.writes_acked++;
    if (index != sim->authority_index) {
        sim_totals.writes_forwarded_acked++;
    }
    if (sim->lossy) {
        return; /* A forced failover: the acknowledged log is no longer checked. */
    }
    if (sim->params.stream_links) {
        sim_check_order(sim, result->write_id);
    }
    int at = -1;
    const struct sim_node *primary = sim_holder(sim, result, &at);
    if (primary == NULL || result->lsn_last - result->lsn_first + 1 != write->record_count) {
        sim_fail(sim,
                 "write %" PRIu64 " acknowledged at lsn %" PRIu64 "..%" PRIu64
                 " which no node of the acknowledged lineage durably holds with its records",
                 result->write_id, result->lsn_first, result->lsn_last);
        return;
    }
    sim_log(sim, "write %" PRIu64 " acknowledged on n%u: lsn %" PRIu64 "..%" PRIu64,
            result->write_id, index, result->lsn_first, result->lsn_last);
    /* Extend the acknowledged log with the primary's batches up to lsn_last. */
    uint64_t acked = sim_acked_lsn(sim);
    if (result->lsn_last <= acked) {
        int ref = sim_ref_find(sim, result->lsn_last);
        if (ref < 0 || memcmp(&sim->ref_chain[ref], &primary->log[at].chain,
                              sizeof(primary->log[at].chain)) != 0) {
            sim_fail(sim, "write %" PRIu64 " acknowledged off the acknowledged log",
                     result->write_id);
        }
        return;
    }
    if (acked > 0) {
        int old = sim_find(primary, primary->count, acked);
        if (old < 0 || memcmp(&primary->log[old].chain, &sim->ref_chain[sim->ref_count - 1],
                              sizeof(primary->log[old].chain)) != 0) {
            sim_fail(sim, "the primary no longer holds acknowledged lsn %" PRIu64, acked);
            return;
        }
    }
    for (int i = (acked == 0 ? 0 : sim_find(primary, primary->count, acked) + 1); i <= at; i++) {
        sim->ref_lsn_last[sim->ref_count] = primary->log[i].lsn_last;
        sim->ref_chain[sim->ref_count] = primary->log[i].chain;
        sim->ref_count++;
    }
}

static void sim_on_client(struct sim *sim)
{
    if (!sim->calm) {
        uint64_t gap = 1 + sim_random(sim, sim->params.client_gap_ms_max);
        sim_schedule(sim, sim->now_ms + gap, SIM_EV_CLIENT, UINT32_MAX);
    }
    /* Mostly to the primary; else to a backup, which forwards it. */
    uint32_t index = sim->authority_index < sim->params.node_count ? sim->authority_index : 0;
    if (sim_chance(sim, 300)) {
        index = (index + 1 + (uint32_t)sim_random(sim, sim->params.node_count - 1)) %
                sim->params.node_count;
    }
    if (!sim->nodes[index].running || sim->write_next >= SIM_WRITES_MAX) {
        return;
    }
    uint64_t write_id = sim->write_next++;
    struct sim_write *write = &sim->writes[write_id];
    write->node = index;
    write->state = SIM_WRITE_PENDING;
    write->record_count = 1 + (uint32_t)sim_random(sim, 4);
    sim_log(sim, "client submits write %" PRIu64 " (%u records) to n%u", write_id,
            write->record_count, index);
    struct tdm_event event = {.type = TDM_EVENT_SUBMIT, .now_ms = sim->now_ms};
    event.submit.write_id = write_id;
    event.submit.record_count = write->record_count;
    event.submit.size = 100 * write->record_count;
    sim_step(sim, index, &event);
}

/* --- Applying actions ---------------------------------------------------------- */

static void sim_write_local(struct sim *sim, uint32_t index, const struct tdm_action_write *write)
{
    struct sim_node *node = &sim->nodes[index];
    /* The epoch stamped must be persisted, naming this node its primary (a
     * step may hand writes over and then step down: they fail, ECOPIES). */
    const struct tdm_epoch_entry *own = &node->history.entries[node->history.count - 1];
    if (write->epoch != own->epoch || own->primary_index != index) {
        sim_fail(sim, "n%u appends a local write outside its own persisted epoch", index);
        return;
    }
    /* At most one primary accepts writes per epoch. */
    uint32_t *writer = &sim->epoch_writer[write->epoch < SIM_EPOCHS_MAX ? write->epoch : 0];
    if (*writer != UINT32_MAX && *writer != index) {
        sim_fail(sim, "n%u and n%u both append local writes in epoch %" PRIu64, *writer, index,
                 write->epoch);
        return;
    }
    *writer = index;
    uint64_t payload = write->write_id;
    if (write->records != NULL) {
        memcpy(&payload, write->records, sizeof(payload));
    }
    struct sim_batch batch = {
        .lsn_first = sim_last_lsn(node, node->count) + 1,
        .epoch = write->epoch,
        .payload = payload,
        .write_id = write->write_id,
        .size = write->size,
    };
    batch.lsn_last = batch.lsn_first + write->record_count - 1;
    struct tdm_frame_chain_hash prev = sim_chain_last(node);
    batch.chain = sim_chain(&prev, &batch);
    batch.checksum = sim_batch_checksum(&batch);
    sim_append(sim, index, &batch);
    struct tdm_event event = {.type = TDM_EVENT_APPENDED, .now_ms = sim->now_ms};
    event.appended.lsn_last = batch.lsn_last;
    event.appended.size = batch.size;
    event.appended.epoch = batch.epoch;
    event.appended.chain_hash = batch.chain;
    event.appended.sealed = node->count % sim->params.seal_every == 0;
    sim_queue_replica(sim, index, &event);
    sim_sync(sim, index);
}

static void sim_write_received(struct sim *sim, uint32_t index,
                               const struct tdm_action_write *write)
{
    struct sim_node *node = &sim->nodes[index];
    if (write->epoch != node->replica.epoch ||
        write->epoch != node->history.entries[node->history.count - 1].epoch) {
        sim_fail(sim, "n%u appends batches of epoch %" PRIu64 " in epoch %" PRIu64, index,
                 write->epoch, node->replica.epoch);
        return;
    }
    for (uint32_t i = 0; i < write->batch_count && !sim->failed; i++) {
        const struct tdm_frame_batch *in = &write->batches[i];
        struct sim_batch batch = {
            .lsn_first = in->lsn_first,
            .lsn_last = in->lsn_last,
            .epoch = in->epoch,
            .size = in->size,
        };
        struct sim_bytes bytes;
        memcpy(&bytes, in->bytes, sizeof(bytes));
        batch.payload = bytes.payload;
        /* The engine verifies every checksum of a received batch before it
         * writes it (tdm_batch_verify): I1 makes damaged ones unreachable. */
        if (sim_checksum(in->lsn_first, in->lsn_last, in->epoch, in->size, &in->chain_hash,
                         bytes.payload) != bytes.checksum) {
            sim_fail(sim, "n%u: received batch %" PRIu64 "..%" PRIu64 " fails its checksum", index,
                     in->lsn_first, in->lsn_last);
            return;
        }
        batch.checksum = bytes.checksum;
        struct tdm_frame_chain_hash prev = sim_chain_last(node);
        batch.chain = sim_chain(&prev, &batch);
        if (memcmp(&batch.chain, &in->chain_hash, sizeof(batch.chain)) != 0) {
            sim_fail(sim, "n%u: batch %" PRIu64 "..%" PRIu64 " does not follow its chain", index,
                     in->lsn_first, in->lsn_last);
            return;
        }
        if (in->epoch > write->epoch) {
            sim_fail(sim, "n%u: batch of epoch %" PRIu64 " in an APPEND of epoch %" PRIu64, index,
                     in->epoch, write->epoch);
        }
        sim_append(sim, index, &batch);
    }
    sim_sync(sim, index);
}

/* --- Verification (docs/PROTOCOL.md §9) ----------------------------------------- */

/* A read of the chain hash at an LSN: answered from the log as it is when the
 * disk gets to it (a cut may have come first). */
static void sim_verify_read_done(struct sim *sim, uint32_t index, const struct sim_op *op)
{
    const struct sim_node *node = &sim->nodes[index];
    struct tdm_event event = {.type = TDM_EVENT_CHAIN_READ, .now_ms = sim->now_ms};
    event.chain_read.read_id = op->read_id;
    int at = sim_find(node, node->count, op->read_lsn);
    struct sim_view view;
    if (at < 0) {
        event.chain_read.status = TANDEM_ENOTFOUND;
    } else if (sim_read(&node->log[at], &view) != 0) {
        event.chain_read.status = TANDEM_ECORRUPT; /* The backup answers UNREADABLE. */
        sim_totals.verify_reads_refused++;
        sim_log(sim, "n%u: chain hash read at lsn %" PRIu64 ": batch fails its checksum", index,
                op->read_lsn);
    } else {
        const struct sim_batch *batch = &node->log[at];
        event.chain_read.lsn_first = batch->lsn_first;
        event.chain_read.lsn_last = batch->lsn_last;
        event.chain_read.chain_hash = view.chain;
        struct tdm_frame_batch header = {.lsn_first = batch->lsn_first,
                                         .lsn_last = batch->lsn_last,
                                         .epoch = batch->epoch,
                                         .size = batch->size,
                                         .chain_hash = view.chain};
        struct sim_bytes bytes = {.payload = view.payload, .checksum = view.checksum};
        sim_check_bytes(sim, index, "answers a chain hash read with", &header, &bytes);
    }
    sim_totals.verify_reads++;
    sim_step(sim, index, &event);
}

/* The claim "node's copy equals the primary's through lsn" holds on the
 * simulated disks: the primary (node 0) has a batch ending at lsn, and node
 * either no longer holds lsn or holds the same batch end with the same chain
 * hash. claimer names who claims it. */
static void sim_verify_claim_check(struct sim *sim, uint32_t claimer, uint32_t index, uint64_t lsn)
{
    if (lsn == 0 || sim->lossy) {
        return; /* Lossy: after a forced failover the primary's log may lack it. */
    }
    /* The acting primary of the newest epoch holds what every earlier one
     * did; with none acting, the last to act (its disk is still there). A
     * primary that acted alone in a newer epoch and is down again (its
     * epoch abandoned) is not it while a lower epoch's primary acts; a stale
     * one below the claimer's epoch (it acknowledges nothing) is not either. */
    uint32_t reference = sim->authority_index < sim->params.node_count ? sim->authority_index : 0;
    uint64_t reference_epoch = sim->nodes[claimer].replica.epoch;
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        const struct tdm_replica *replica = &sim->nodes[i].replica;
        if (sim->nodes[i].running && replica->role == TDM_ROLE_PRIMARY &&
            replica->epoch >= reference_epoch) {
            reference = i;
            reference_epoch = replica->epoch;
        }
    }
    const struct sim_node *primary = &sim->nodes[reference];
    const struct sim_node *node = &sim->nodes[index];
    int at = sim_find(primary, primary->count, lsn);
    if (at < 0 || primary->log[at].lsn_last != lsn) {
        sim_fail(sim, "n%u claims n%u verified through lsn %" PRIu64 ", no batch end of n%u",
                 claimer, index, lsn, reference);
        return;
    }
    int mine = sim_find(node, node->count, lsn);
    if (mine >= 0 &&
        (node->log[mine].lsn_last != lsn || memcmp(&node->log[mine].chain, &primary->log[at].chain,
                                                   sizeof(node->log[mine].chain)) != 0)) {
        sim_fail(sim,
                 "n%u claims n%u verified through lsn %" PRIu64 ", where their chain hashes differ",
                 claimer, index, lsn);
    }
}

/* Reads go through the disk queue; claims are checked and kept as DIR/verified. */
static void sim_verify_apply(struct sim *sim, uint32_t index)
{
    struct sim_node *node = &sim->nodes[index];
    const struct tdm_actions *actions = &sim->actions;
    for (uint32_t i = 0; i < actions->read_count && !sim->failed; i++) {
        const struct tdm_action_read *read = &actions->reads[i];
        if (read->lsn == 0 || read->lsn > sim_last_lsn(node, node->durable_count)) {
            sim_fail(sim, "n%u reads the chain hash at lsn %" PRIu64 ", not durable here", index,
                     read->lsn);
            return;
        }
        struct sim_op *op = sim_disk_push(sim, index, SIM_OP_READ);
        op->read_id = read->read_id;
        op->read_lsn = read->lsn;
    }
    for (uint32_t i = 0; i < actions->verified_count && !sim->failed; i++) {
        const struct tdm_action_verified *claim = &actions->verified[i];
        if (claim->node_index >= sim->params.node_count) {
            sim_fail(sim, "n%u claims node %u verified", index, claim->node_index);
            return;
        }
        if (claim->fresh) {
            sim_verify_claim_check(sim, index, claim->node_index, claim->lsn);
            sim_totals.verify_claims += claim->lsn > 0;
        }
        node->verified_disk[claim->node_index] = claim->lsn;
    }
}

/* After every step: no replica holds a claim that the disks contradict, and
 * none has seen a mismatch (copies never diverge where they are compared). */
static void sim_verify_check(struct sim *sim)
{
    for (uint32_t i = 0; i < sim->params.node_count && !sim->failed; i++) {
        const struct sim_node *node = &sim->nodes[i];
        if (!node->running) {
            continue;
        }
        const struct tdm_verify *verify = &node->replica.verify;
        if (verify->self.mismatches_found > 0 || verify->self.divergent_first != 0) {
            sim_fail(sim, "false alarm: n%u says its copy differs from the primary's", i);
            return;
        }
        if (node->replica.role == TDM_ROLE_BACKUP) {
            sim_verify_claim_check(sim, i, i, verify->self.verified_lsn);
        }
        for (uint32_t j = 0; j < sim->params.node_count; j++) {
            const struct tdm_verify_peer *v = &verify->peers[j];
            if (j == i) {
                continue;
            }
            if (v->mismatches_found > 0 || v->divergent_first != 0) {
                sim_fail(sim,
                         "false alarm: n%u says n%u's copy differs (first divergent %" PRIu64
                         "..%" PRIu64 ")",
                         i, j, v->divergent_first, v->divergent_last);
                return;
            }
            if (i == sim->authority_index) {
                sim_verify_claim_check(sim, i, j, v->verified_lsn);
            }
        }
    }
}

/* Phase 2's goal for verification: every backup verified through the
 * primary's last LSN, as the primary records it and as it records itself. */
static bool sim_verify_converged(const struct sim *sim)
{
    uint32_t p = sim->authority_index;
    const struct sim_node *primary = &sim->nodes[p];
    uint64_t last = sim_last_lsn(primary, primary->count);
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        if (i == p) {
            continue;
        }
        if (primary->replica.verify.peers[i].verified_lsn != last ||
            sim->nodes[i].replica.verify.self.verified_lsn != last) {
            return false;
        }
    }
    return true;
}

static void sim_apply(struct sim *sim, uint32_t index)
{
    struct sim_node *node = &sim->nodes[index];
    struct tdm_actions *actions = &sim->actions;
    if (actions->history_to_persist != NULL) {
        node->history_pending = *actions->history_to_persist;
        sim_disk_push(sim, index, SIM_OP_EPOCHS);
    }
    if (actions->cut) {
        struct sim_op *op = sim_disk_push(sim, index, SIM_OP_CUT);
        op->cut_after_lsn = actions->cut_after_lsn;
    }
    for (uint32_t i = 0; i < actions->write_count && !sim->failed; i++) {
        const struct tdm_action_write *write = &actions->writes[i];
        if (write->kind == TDM_WRITE_LOCAL) {
            sim_write_local(sim, index, write);
        } else {
            sim_write_received(sim, index, write);
        }
    }
    for (uint32_t i = 0; i < actions->send_count && !sim->failed; i++) {
        sim_send(sim, index, actions, &actions->sends[i]);
    }
    for (uint32_t i = 0; i < actions->result_count && !sim->failed; i++) {
        sim_result(sim, index, &actions->results[i]);
    }
    sim_verify_apply(sim, index);
    sim_reports(sim, index);
    if (actions->deadline_ms != UINT64_MAX &&
        (actions->deadline_ms < node->next_tick_ms || node->next_tick_ms <= sim->now_ms)) {
        node->next_tick_ms = actions->deadline_ms;
        sim_schedule(sim, actions->deadline_ms, SIM_EV_TICK, index);
    }
}

/* --- Invariants ---------------------------------------------------------------- */

static bool sim_holds(const struct sim *sim, const struct sim_node *node, uint32_t count,
                      uint64_t lsn_last, const struct tdm_frame_chain_hash *chain)
{
    (void)sim;
    int at = sim_find(node, count, lsn_last);
    return at >= 0 && node->log[at].lsn_last == lsn_last &&
           memcmp(&node->log[at].chain, chain, sizeof(*chain)) == 0;
}

/* Roles and epochs: epochs only grow; a node never acts in an epoch it has
 * not persisted (the planted bug target_accepts_before_epoch_persisted); the
 * newest epoch a node acts in as primary is the authority the loss checks
 * hold to. */
static void sim_check_roles(struct sim *sim)
{
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        struct sim_node *node = &sim->nodes[i];
        if (!node->running) {
            continue;
        }
        const struct tdm_replica *replica = &node->replica;
        if (replica->epoch < node->epoch_seen) {
            sim_fail(sim, "n%u epoch went from %" PRIu64 " to %" PRIu64, i, node->epoch_seen,
                     replica->epoch);
        }
        node->epoch_seen = replica->epoch;
        const struct tdm_epoch_entry *disk = &node->history.entries[node->history.count - 1];
        if (replica->epoch > disk->epoch) {
            sim_fail(sim, "n%u acts in epoch %" PRIu64 ", its persisted epoch is %" PRIu64, i,
                     replica->epoch, disk->epoch);
        }
        if (replica->role == TDM_ROLE_PRIMARY &&
            (replica->epoch != disk->epoch || disk->primary_index != i)) {
            sim_fail(sim, "n%u acts as primary of epoch %" PRIu64 ", not so persisted", i,
                     replica->epoch);
        }
        if (replica->role == TDM_ROLE_PRIMARY && replica->epoch >= sim->authority_epoch) {
            if (replica->epoch == sim->authority_epoch && sim->authority_index != i &&
                sim->authority_index < sim->params.node_count) {
                sim_fail(sim, "n%u and n%u both act as primary of epoch %" PRIu64, i,
                         sim->authority_index, replica->epoch);
            }
            sim->authority_epoch = replica->epoch;
            sim->authority_index = i;
        }
    }
}

/* True if node index is the authority: acting as primary of the newest epoch. */
static bool sim_is_authority(const struct sim *sim, uint32_t index)
{
    const struct sim_node *node = &sim->nodes[index];
    return index == sim->authority_index && node->running &&
           node->replica.role == TDM_ROLE_PRIMARY && node->replica.epoch == sim->authority_epoch;
}

static void sim_check(struct sim *sim)
{
    sim_check_roles(sim);
    uint64_t acked = sim_acked_lsn(sim);
    uint32_t copies = 0;
    for (uint32_t i = 0; i < sim->params.node_count && !sim->lossy; i++) {
        struct sim_node *node = &sim->nodes[i];
        if (acked == 0) {
            continue;
        }
        const struct tdm_frame_chain_hash *chain = &sim->ref_chain[sim->ref_count - 1];
        if (sim_holds(sim, node, node->durable_count, acked, chain)) {
            copies++;
        } else if (sim_is_authority(sim, i)) {
            sim_fail(sim, "the primary n%u does not durably hold acknowledged lsn %" PRIu64, i,
                     acked);
        }
        /* C1: agreement with the acknowledged log. The primary and a backup
         * LIVE in the primary's epoch vouch for their whole log; any other node
         * may still hold a divergent tail it has yet to cut, and vouches only
         * up to the commit LSN it has heard of. */
        uint64_t last = sim_last_lsn(node, node->count);
        uint64_t probe = last < acked ? last : acked;
        const struct tdm_replica *replica = &node->replica;
        uint32_t p = sim->authority_index;
        bool vouches =
            sim_is_authority(sim, i) ||
            (p < sim->params.node_count && sim_is_authority(sim, p) && node->running &&
             replica->role == TDM_ROLE_BACKUP && replica->primary_index == p &&
             replica->peers[p].link == TDM_LINK_LIVE && replica->epoch == sim->authority_epoch);
        if (!vouches && (!node->running || replica->commit_lsn < probe)) {
            probe = node->running ? replica->commit_lsn : 0;
        }
        if (probe == 0) {
            continue;
        }
        int at = sim_find(node, node->count, probe);
        int ref = at < 0 ? -1 : sim_ref_find(sim, node->log[at].lsn_last);
        if (ref < 0 ||
            memcmp(&sim->ref_chain[ref], &node->log[at].chain, sizeof(node->log[at].chain)) != 0) {
            sim_fail(sim, "n%u diverges from the acknowledged log at lsn %" PRIu64, i, probe);
        }
    }
    if (!sim->lossy && acked > 0 && copies < sim->params.min_copies) {
        sim_fail(sim, "acknowledged lsn %" PRIu64 " is durable on %u nodes, min_copies %u", acked,
                 copies, sim->params.min_copies);
    }
}

static void sim_step(struct sim *sim, uint32_t index, const struct tdm_event *event)
{
    struct sim_node *node = &sim->nodes[index];
    if (!node->running || sim->failed) {
        return;
    }
    sim->steps++;
    struct tdm_event stamped = *event;
    stamped.wall_ms = UINT64_C(1700000000000) + sim->now_ms; /* For epoch entries. */
    tdm_replica_step(&node->replica, &stamped, &sim->actions);
    sim_apply(sim, index);
    sim_check(sim);
    if (!sim->lossy) {
        sim_verify_check(sim);
    }
}

/* --- Faults -------------------------------------------------------------------- */

static void sim_node_start(struct sim *sim, uint32_t index)
{
    struct sim_node *node = &sim->nodes[index];
    node->running = true;
    node->incarnation++;
    node->durable_count = node->count; /* Recovery makes what survived durable. */
    node->op_head = 0;
    node->op_count = 0;
    node->next_tick_ms = 0;
    struct tdm_replica_config config = sim->params.config;
    config.self_index = index;
    config.history = &node->history;
    config.last_lsn = sim_last_lsn(node, node->count);
    config.last_epoch = node->count == 0 ? 0 : node->log[node->count - 1].epoch;
    config.chain_hash = sim_chain_last(node);
    memcpy(config.verified_lsn, node->verified_disk, sizeof(node->verified_disk));
    config.trace = sim->verbose ? sim_trace : NULL;
    tdm_replica_init(&node->replica, &config);
    struct tdm_event tick = {.type = TDM_EVENT_TICK, .now_ms = sim->now_ms};
    sim_queue_replica(sim, index, &tick);
    sim_links_update(sim);
}

static void sim_crash(struct sim *sim, uint32_t index)
{
    struct sim_node *node = &sim->nodes[index];
    uint32_t lost = node->count - node->durable_count;
    uint32_t survive = (uint32_t)sim_random(sim, lost + 1);
    node->count = node->durable_count + survive;
    node->running = false;
    node->incarnation++;
    node->op_count = 0;
    sim_totals.crashes++;
    sim_log(sim, "n%u crashes: %u unsynced batches lost, %u survive", index, lost - survive,
            survive);
    if (index == sim->authority_index && sim_chance(sim, sim->params.failover_per_mille)) {
        /* On-call notices the primary is gone and promotes a backup. */
        uint64_t silence = sim->params.config.failover_silence_ms;
        struct sim_event *failover =
            sim_schedule(sim, sim->now_ms + silence + 1 + sim_random(sim, 2 * silence),
                         SIM_EV_FAILOVER, UINT32_MAX);
        failover->other = (index + 1 + (uint32_t)sim_random(sim, sim->params.node_count - 1)) %
                          sim->params.node_count;
    }
    for (uint64_t id = 1; id < sim->write_next; id++) {
        if (sim->writes[id].node == index && sim->writes[id].state == SIM_WRITE_PENDING) {
            sim->writes[id].state = SIM_WRITE_LOST;
        }
    }
    sim_links_update(sim);
}

static void sim_on_fault(struct sim *sim, const struct sim_event *event)
{
    uint32_t count = sim->params.node_count;
    if (event->kind == SIM_EV_CRASH) {
        if (sim->calm) {
            return;
        }
        if (event->node != UINT32_MAX) { /* A crash of one node, once. */
            if (sim->nodes[event->node].running) {
                sim_crash(sim, event->node);
                uint64_t down = 1 + sim_random(sim, sim->params.down_ms_max);
                sim_schedule(sim, sim->now_ms + down, SIM_EV_RESTART, event->node);
            }
            return;
        }
        uint32_t index = (uint32_t)sim_random(sim, count);
        if (sim->nodes[index].running) {
            sim_crash(sim, index);
            uint64_t down = 1 + sim_random(sim, sim->params.down_ms_max);
            sim_schedule(sim, sim->now_ms + down, SIM_EV_RESTART, index);
        }
        sim_schedule(sim, sim->now_ms + 1 + sim_random(sim, sim->params.crash_gap_ms), SIM_EV_CRASH,
                     UINT32_MAX);
    } else if (event->kind == SIM_EV_RESTART) {
        if (!sim->nodes[event->node].running) {
            sim_log(sim, "n%u restarts", event->node);
            sim_node_start(sim, event->node);
        }
    } else if (event->kind == SIM_EV_PARTITION) {
        if (sim->calm) {
            return;
        }
        uint32_t a = (uint32_t)sim_random(sim, count);
        uint32_t b = (uint32_t)sim_random(sim, count);
        if (a != b) {
            sim->partitioned[a][b] = sim->partitioned[b][a] = true;
            sim_totals.partitions++;
            sim_links_update(sim);
            struct sim_event *heal = sim_schedule(
                sim, sim->now_ms + 1 + sim_random(sim, sim->params.down_ms_max), SIM_EV_HEAL, a);
            heal->other = b;
        }
        sim_schedule(sim, sim->now_ms + 1 + sim_random(sim, sim->params.partition_gap_ms),
                     SIM_EV_PARTITION, UINT32_MAX);
    } else if (event->kind == SIM_EV_HEAL) {
        sim->partitioned[event->node][event->other] = false;
        sim->partitioned[event->other][event->node] = false;
        sim_links_update(sim);
    }
}

/* --- Storage corruption, repair, queries (docs/PROTOCOL.md §9.5) ----------------- */

static uint64_t sim_damage_random(struct sim *sim, uint64_t bound)
{
    return tdm_prng_below(&sim->damage_prng, bound);
}

/* A node other than except durably holding an intact copy of batch (same
 * LSNs, same chain hash); -1 if none. */
static int sim_intact_copy(const struct sim *sim, uint32_t except, const struct sim_batch *batch)
{
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        const struct sim_node *node = &sim->nodes[i];
        int at = i == except ? -1 : sim_find(node, node->durable_count, batch->lsn_last);
        if (at >= 0 && node->log[at].lsn_first == batch->lsn_first &&
            node->log[at].lsn_last == batch->lsn_last &&
            memcmp(&node->log[at].chain, &batch->chain, sizeof(batch->chain)) == 0 &&
            !sim_damaged(&node->log[at])) {
            return (int)i;
        }
    }
    return -1;
}

static uint32_t sim_damage_count(const struct sim_node *node)
{
    uint32_t count = 0;
    for (uint32_t i = 0; i < node->count; i++) {
        count += sim_damaged(&node->log[i]);
    }
    return count;
}

/* Bit rot: one bit of a durable batch of a sealed segment, of an
 * acknowledged LSN, flips on some node (running or not), provided another
 * node holds an intact copy. None after a forced failover (the intact copy
 * may be cut) or in phase 2. */
static void sim_on_damage(struct sim *sim)
{
    if (sim->calm || sim->lossy) {
        return;
    }
    sim_schedule(sim, sim->now_ms + 1 + sim_damage_random(sim, sim->params.damage_gap_ms),
                 SIM_EV_DAMAGE, UINT32_MAX);
    uint32_t index = (uint32_t)sim_damage_random(sim, sim->params.node_count);
    struct sim_node *node = &sim->nodes[index];
    uint32_t sealed = node->durable_count / sim->params.seal_every * sim->params.seal_every;
    if (sealed == 0) {
        return;
    }
    struct sim_batch *batch = &node->log[sim_damage_random(sim, sealed)];
    uint64_t acked = sim_acked_lsn(sim);
    int ref = batch->lsn_last <= acked ? sim_ref_find(sim, batch->lsn_last) : -1;
    if (ref < 0 || memcmp(&sim->ref_chain[ref], &batch->chain, sizeof(batch->chain)) != 0 ||
        sim_damaged(batch) || sim_intact_copy(sim, index, batch) < 0) {
        return;
    }
    uint64_t bit = UINT64_C(1) << sim_damage_random(sim, 64);
    static const char *const parts[3] = {"body", "checksum", "chain hash"};
    uint32_t part = (uint32_t)sim_damage_random(sim, 3);
    if (part == 0) {
        batch->damage_payload = bit;
    } else if (part == 1) {
        batch->damage_checksum = bit;
    } else {
        batch->damage_chain = bit;
    }
    sim_totals.damaged++;
    sim_log(sim, "n%u: bit rot in the %s of sealed batch %" PRIu64 "..%" PRIu64, index, parts[part],
            batch->lsn_first, batch->lsn_last);
}

/* The scrubber finds a node's damaged batches and repair gives each the
 * bytes of an intact copy of the same batch on another node (the adapter's
 * job: net/uv_scrub.c, net/uv_repair.c; the replica's steps have no part in
 * it). A batch with no intact copy stays damaged. */
static void sim_repair(struct sim *sim, uint32_t index)
{
    struct sim_node *node = &sim->nodes[index];
    for (uint32_t i = 0; i < node->count; i++) {
        struct sim_batch *batch = &node->log[i];
        if (!sim_damaged(batch)) {
            continue;
        }
        int from = sim_intact_copy(sim, index, batch);
        if (from < 0) {
            continue;
        }
        batch->damage_payload = 0;
        batch->damage_checksum = 0;
        batch->damage_chain = 0;
        sim_totals.repaired++;
        sim_log(sim, "n%u: batch %" PRIu64 "..%" PRIu64 " repaired from n%d", index,
                batch->lsn_first, batch->lsn_last, from);
    }
}

/* A forced failover may cut acknowledged batches from here on, the intact
 * copies of damaged ones among them: repair stands in for every node now,
 * while every damaged batch still has one (none is damaged from here on). */
static void sim_lossy_begin(struct sim *sim)
{
    sim->lossy = true;
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        sim_repair(sim, i);
    }
}

static void sim_on_repair(struct sim *sim)
{
    if (sim->calm) {
        return;
    }
    sim_schedule(sim, sim->now_ms + 1 + sim_damage_random(sim, sim->params.repair_gap_ms),
                 SIM_EV_REPAIR, UINT32_MAX);
    uint32_t index = (uint32_t)sim_damage_random(sim, sim->params.node_count);
    if (sim->nodes[index].running) {
        sim_repair(sim, index);
    }
}

/* A client reads a batch of a node: answered only with bytes that verify. */
static void sim_on_query(struct sim *sim)
{
    if (sim->calm) {
        return;
    }
    sim_schedule(sim, sim->now_ms + 1 + sim_damage_random(sim, sim->params.query_gap_ms),
                 SIM_EV_QUERY, UINT32_MAX);
    uint32_t index = (uint32_t)sim_damage_random(sim, sim->params.node_count);
    const struct sim_node *node = &sim->nodes[index];
    if (!node->running || node->durable_count == 0) {
        return;
    }
    const struct sim_batch *batch = &node->log[sim_damage_random(sim, node->durable_count)];
    struct sim_view view;
    if (sim_read(batch, &view) != 0) {
        sim_totals.queries_refused++; /* tandem: lsn ...: checksum mismatch. */
        return;
    }
    struct tdm_frame_batch header = {.lsn_first = batch->lsn_first,
                                     .lsn_last = batch->lsn_last,
                                     .epoch = batch->epoch,
                                     .size = batch->size,
                                     .chain_hash = view.chain};
    struct sim_bytes bytes = {.payload = view.payload, .checksum = view.checksum};
    sim_check_bytes(sim, index, "serves a query with", &header, &bytes);
    sim_totals.queries_served++;
}

static void sim_on_calm(struct sim *sim)
{
    sim_log(sim, "phase 2: faults stop, every node runs, every link heals");
    sim->calm = true;
    memset(sim->partitioned, 0, sizeof(sim->partitioned));
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        if (!sim->nodes[i].running) {
            sim_node_start(sim, i);
        }
    }
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        sim_repair(sim, i);
    }
    sim_links_update(sim);
}

/* --- Switchover and failover (PROTOCOL.md §8) --------------------------------------- */

/* The schedule (or an operator) asks the primary to move: to a random node
 * (itself or an unknown one now and then, to be refused) or the next one. */
static void sim_on_switchover(struct sim *sim)
{
    if (sim->calm) {
        return;
    }
    sim_schedule(sim, sim->now_ms + 1 + sim_random(sim, sim->params.switchover_gap_ms),
                 SIM_EV_SWITCHOVER, UINT32_MAX);
    uint32_t p = sim->authority_index;
    if (p >= sim->params.node_count || !sim->nodes[p].running) {
        return;
    }
    struct tdm_event event = {.type = TDM_EVENT_SWITCHOVER, .now_ms = sim->now_ms};
    event.switchover.request_id = ++sim->request_next;
    event.switchover.target_index = sim_chance(sim, 400)
                                        ? TDM_SWITCHOVER_NEXT
                                        : (uint32_t)sim_random(sim, sim->params.node_count + 1);
    event.switchover.command = sim_chance(sim, 500);
    sim_log(sim, "switchover %" PRIu64 " asked of n%u", event.switchover.request_id, p);
    sim_step(sim, p, &event);
}

/* An operator promotes a backup: after the primary crashed (event->other), or
 * at any time (often premature: the primary answers, and it is refused). */
static void sim_on_failover(struct sim *sim, const struct sim_event *source)
{
    if (sim->calm) {
        return;
    }
    uint32_t index = source->other;
    if (index == UINT32_MAX) { /* The periodic kind: any node, any time. */
        struct sim_event *next =
            sim_schedule(sim, sim->now_ms + 1 + sim_random(sim, sim->params.failover_gap_ms),
                         SIM_EV_FAILOVER, UINT32_MAX);
        next->other = UINT32_MAX;
        index = (uint32_t)sim_random(sim, sim->params.node_count);
    }
    if (index >= sim->params.node_count || !sim->nodes[index].running) {
        return;
    }
    struct tdm_event event = {.type = TDM_EVENT_FAILOVER, .now_ms = sim->now_ms};
    event.failover.request_id = ++sim->request_next;
    event.failover.force = sim_chance(sim, sim->params.force_per_mille);
    event.failover.dry_run = sim_chance(sim, sim->params.dry_run_per_mille);
    sim_log(sim, "failover %" PRIu64 " asked of n%u%s%s", event.failover.request_id, index,
            event.failover.force ? " (forced)" : "", event.failover.dry_run ? " (dry run)" : "");
    sim_step(sim, index, &event);
    if (event.failover.force && !event.failover.dry_run &&
        sim->nodes[index].replica.fo.phase != TDM_FAILOVER_IDLE && !sim->lossy) {
        /* A forced failover under way may cut acknowledged writes: the loss
         * checks end here (the structural ones go on). */
        sim_lossy_begin(sim);
        sim_log(sim, "forced failover: acknowledged writes may be lost from here on");
    }
}

/* What the adapter would print; a forced promotion ends the loss checks. */
static void sim_reports(struct sim *sim, uint32_t index)
{
    const struct tdm_actions *actions = &sim->actions;
    for (uint32_t i = 0; i < actions->report_count; i++) {
        const struct tdm_report *report = &actions->reports[i];
        bool switchover = report->kind == TDM_REPORT_SWITCHOVER;
        sim_log(sim, "n%u reports %s %" PRIu64 ": %s%s%s (epoch %" PRIu64 ", pause %" PRIu64 " ms)",
                index, switchover ? "switchover" : "failover", report->request_id,
                tdm_replica_outcome_name(report->outcome), report->refusal != 0 ? ": " : "",
                report->refusal != 0 ? tdm_replica_refusal_name(report->refusal) : "",
                report->epoch, report->pause_ms);
        uint64_t *count = NULL;
        switch (report->outcome) {
        case TDM_OUTCOME_STARTED:
            break;
        case TDM_OUTCOME_DONE:
            count = switchover ? &sim_totals.switchovers_done : &sim_totals.failovers_done;
            break;
        case TDM_OUTCOME_REFUSED:
            count = switchover ? &sim_totals.switchovers_refused : &sim_totals.failovers_refused;
            break;
        case TDM_OUTCOME_ABANDONED:
            count =
                switchover ? &sim_totals.switchovers_abandoned : &sim_totals.failovers_abandoned;
            break;
        case TDM_OUTCOME_DRY_RUN:
            count = &sim_totals.failovers_dry_run;
            break;
        }
        if (count != NULL) {
            (*count)++;
        }
        const struct tdm_epoch_history *h = &sim->nodes[index].history;
        if (!switchover && report->outcome == TDM_OUTCOME_DONE &&
            h->entries[h->count - 1].cause == TDM_EPOCH_CAUSE_FORCED) {
            sim_totals.failovers_forced++;
            sim_lossy_begin(sim);
        }
    }
}

static void sim_dispatch(struct sim *sim, const struct sim_event *event)
{
    bool stale =
        event->node < SIM_NODES_MAX && event->incarnation != sim->nodes[event->node].incarnation;
    switch (event->kind) {
    case SIM_EV_DELIVER:
        sim_on_deliver(sim, event->other);
        break;
    case SIM_EV_DISK:
        if (!stale && sim->nodes[event->node].running) {
            sim_on_disk(sim, event->node);
        }
        break;
    case SIM_EV_TICK:
        if (!stale && sim->nodes[event->node].next_tick_ms == event->at_ms) {
            struct tdm_event tick = {.type = TDM_EVENT_TICK, .now_ms = sim->now_ms};
            sim_step(sim, event->node, &tick);
        }
        break;
    case SIM_EV_REPLICA:
        if (!stale) {
            struct tdm_event replica_event = event->replica_event;
            replica_event.now_ms = sim->now_ms;
            sim_step(sim, event->node, &replica_event);
        }
        break;
    case SIM_EV_CLIENT:
        sim_on_client(sim);
        break;
    case SIM_EV_CALM:
        sim_on_calm(sim);
        break;
    case SIM_EV_CRASH:
    case SIM_EV_RESTART:
    case SIM_EV_PARTITION:
    case SIM_EV_HEAL:
        sim_on_fault(sim, event);
        break;
    case SIM_EV_SWITCHOVER:
        sim_on_switchover(sim);
        break;
    case SIM_EV_FAILOVER:
        sim_on_failover(sim, event);
        break;
    case SIM_EV_DAMAGE:
        sim_on_damage(sim);
        break;
    case SIM_EV_REPAIR:
        sim_on_repair(sim);
        break;
    case SIM_EV_QUERY:
        sim_on_query(sim);
        break;
    }
}

/* --- Setup and the run ------------------------------------------------------- */

/* Switchover and failover: how often, how bounded, forced or dry runs. */
static void sim_params_draw_switch(struct sim *sim)
{
    struct sim_params *p = &sim->params;
    struct tdm_replica_config *c = &p->config;
    p->switchover_gap_ms = sim_chance(sim, 800) ? 30 + sim_random(sim, 500) : 0;
    p->failover_per_mille = sim_chance(sim, 700) ? 300 + (uint32_t)sim_random(sim, 700) : 0;
    p->failover_gap_ms = sim_chance(sim, 500) ? 100 + sim_random(sim, 1500) : 0;
    p->force_per_mille = sim_chance(sim, 150) ? 50 + (uint32_t)sim_random(sim, 300) : 0;
    p->dry_run_per_mille = (uint32_t)sim_random(sim, 300);
    c->switchover_catch_up_ms = 20 + sim_random(sim, 300);
    c->switchover_handover_ms = 20 + sim_random(sim, 300);
    c->failover_silence_ms = c->handshake_ms + sim_random(sim, 2 * c->handshake_ms);
    c->failover_fence_ms = 30 + sim_random(sim, 300);
    if (sim_chance(sim, 300)) { /* A rotation order other than the node order. */
        c->rotation_count = p->node_count;
        for (uint32_t i = 0; i < p->node_count; i++) {
            c->rotation[i] = i;
        }
        for (uint32_t i = p->node_count - 1; i > 0; i--) {
            uint32_t j = (uint32_t)sim_random(sim, i + 1);
            uint32_t swap = c->rotation[i];
            c->rotation[i] = c->rotation[j];
            c->rotation[j] = swap;
        }
    }
}

static void sim_params_draw(struct sim *sim)
{
    struct sim_params *p = &sim->params;
    memset(p, 0, sizeof(*p));
    p->node_count = 2 + (uint32_t)sim_random(sim, 3);
    p->min_copies = sim_chance(sim, 100) ? 1 + (uint32_t)sim_random(sim, p->node_count) : 2;
    p->delay_ms_max = 1 + sim_random(sim, 20);
    p->drop_per_mille = sim_chance(sim, 300) ? 0 : (uint32_t)sim_random(sim, 30);
    p->duplicate_per_mille = (uint32_t)sim_random(sim, 50);
    p->reorder_per_mille = (uint32_t)sim_random(sim, 50);
    p->stream_links = sim_chance(sim, 300);
    if (p->stream_links) {
        p->duplicate_per_mille = 0;
        p->reorder_per_mille = 0;
    }
    p->disk_ms_max = 1 + sim_random(sim, 15);
    p->client_gap_ms_max = 2 + sim_random(sim, 30);
    p->crash_gap_ms = sim_chance(sim, 800) ? 100 + sim_random(sim, 800) : 0;
    p->partition_gap_ms = sim_chance(sim, 700) ? 100 + sim_random(sim, 800) : 0;
    p->down_ms_max = 20 + sim_random(sim, 400);
    p->frame_batches_max = 1 + (uint32_t)sim_random(sim, 8);
    p->faults_ms = 1000 + sim_random(sim, 6000);
    struct tdm_replica_config *c = &p->config;
    c->node_count = p->node_count;
    c->min_copies = p->min_copies;
    c->write_deadline_ms = 100 + sim_random(sim, 600);
    c->heartbeat_ms = 10 + sim_random(sim, 40);
    c->retransmit_ms = 30 + sim_random(sim, 100);
    c->handshake_ms = c->heartbeat_ms + 20 + sim_random(sim, 100);
    c->pipeline_batches_max = 1 + (uint32_t)sim_random(sim, 16);
    c->pipeline_size_max = 400 + sim_random(sim, 20000);
    p->first_primary_crash_ms = sim_chance(sim, 300) ? 1 + sim_random(sim, 60) : 0;
    c->verify_interval_ms = 5 + sim_random(sim, 300);
    p->seal_every = 2 + (uint32_t)sim_random(sim, 40);
    sim_params_draw_switch(sim);
    /* Storage corruption and queries: from their own PRNG (see the top). */
    p->damage_gap_ms = sim_damage_random(sim, 1000) < 500 ? 20 + sim_damage_random(sim, 400) : 0;
    p->repair_gap_ms = 50 + sim_damage_random(sim, 1000);
    p->query_gap_ms = 5 + sim_damage_random(sim, 50);
}

static void sim_setup(struct sim *sim, uint64_t seed, bool verbose)
{
    sim->seed = seed;
    sim->verbose = verbose;
    sim->failed = false;
    sim->calm = false;
    sim->now_ms = 0;
    sim->steps = 0;
    sim->seq = 0;
    sim->event_count = 0;
    sim->message_free = 0;
    sim->write_next = 1;
    sim->ref_count = 0;
    tdm_prng_init(&sim->prng, seed);
    tdm_prng_init(&sim->damage_prng, seed ^ UINT64_C(0xda3a6eda3a6eda3a));
    memset(sim->partitioned, 0, sizeof(sim->partitioned));
    memset(sim->up, 0, sizeof(sim->up));
    memset(sim->session, 0, sizeof(sim->session));
    memset(sim->link_last_ms, 0, sizeof(sim->link_last_ms));
    for (uint32_t i = 0; i < SIM_MESSAGES_MAX; i++) {
        sim->messages[i].used = false;
    }
    for (uint32_t i = 0; i < SIM_EPOCHS_MAX; i++) {
        sim->epoch_primary[i] = UINT32_MAX;
        sim->epoch_writer[i] = UINT32_MAX;
    }
    sim->authority_epoch = 0;
    sim->authority_index = 0; /* The init history's primary. */
    sim->lossy = false;
    sim->request_next = 0;
    sim_params_draw(sim);
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        struct sim_node *node = &sim->nodes[i];
        node->running = false;
        node->incarnation = 0;
        node->epoch_seen = 0;
        node->count = 0;
        node->durable_count = 0;
        node->quarantined = 0;
        memset(node->verified_disk, 0, sizeof(node->verified_disk));
        node->history.count = 1;
        node->history.entries[0] = (struct tdm_epoch_entry){
            .epoch = 1, .lsn_first = 1, .primary_index = 0, .cause = TDM_EPOCH_CAUSE_INIT};
    }
    sim_epochs_record(sim, &sim->nodes[0].history);
}

/* Converged: one primary, of the newest epoch; every other node its backup
 * in that epoch, durably holding its whole log; no switchover or failover
 * under way; every client write has its answer. */
static bool sim_converged(const struct sim *sim)
{
    uint32_t p = sim->authority_index;
    if (p >= sim->params.node_count || !sim_is_authority(sim, p)) {
        return false;
    }
    const struct sim_node *primary = &sim->nodes[p];
    if (primary->durable_count != primary->count) {
        return false;
    }
    for (uint32_t i = 0; i < sim->params.node_count; i++) {
        const struct sim_node *node = &sim->nodes[i];
        const struct tdm_replica *replica = &node->replica;
        if (!node->running || replica->epoch != sim->authority_epoch ||
            replica->role != (i == p ? TDM_ROLE_PRIMARY : TDM_ROLE_BACKUP) ||
            replica->sw.phase != TDM_SWITCH_IDLE || replica->fo.phase != TDM_FAILOVER_IDLE) {
            return false;
        }
        if (!node->running || node->replica.write_count != 0 || sim_damage_count(node) != 0 ||
            node->durable_count != primary->count ||
            (primary->count > 0 &&
             !sim_holds(sim, node, node->durable_count, sim_last_lsn(primary, primary->count),
                        &primary->log[primary->count - 1].chain))) {
            return false;
        }
    }
    for (uint64_t id = 1; id < sim->write_next; id++) {
        if (sim->writes[id].state == SIM_WRITE_PENDING) {
            return false;
        }
    }
    return sim_verify_converged(sim);
}

/* On failure with --verbose: what every node and replica ended up with. */
static void sim_dump(struct sim *sim)
{
    for (uint32_t i = 0; sim->verbose && i < sim->params.node_count; i++) {
        const struct sim_node *node = &sim->nodes[i];
        struct tdm_replica_status status;
        tdm_replica_status(&node->replica, &status);
        printf("n%u: %s, disk %u batches (%u durable, %u damaged, last lsn %" PRIu64
               "), %u ops queued, %" PRIu64 " quarantined; replica %s epoch %" PRIu64
               " commit %" PRIu64 " writes %u\n",
               i, node->running ? "running" : "down", node->count, node->durable_count,
               sim_damage_count(node), sim_last_lsn(node, node->count), node->op_count,
               node->quarantined, tdm_replica_role_name(status.role), status.epoch,
               status.commit_lsn, status.writes_in_flight);
        printf("    switchover phase %d, failover phase %d; verified self %" PRIu64 "; history",
               (int)node->replica.sw.phase, (int)node->replica.fo.phase,
               node->replica.verify.self.verified_lsn);
        const struct tdm_epoch_history *h = &node->replica.history;
        for (uint32_t k = h->count > 6 ? h->count - 6 : 0; k < h->count; k++) {
            printf(" (%" PRIu64 " n%u %" PRIu64 " %s)", h->entries[k].epoch,
                   h->entries[k].primary_index, h->entries[k].lsn_first,
                   tdm_replica_cause_name(h->entries[k].cause));
        }
        printf("\n");
        for (uint32_t j = 0; j < status.node_count; j++) {
            const struct tdm_replica_node_status *n = &status.nodes[j];
            printf("    sees n%u: %s epoch %" PRIu64 " last %" PRIu64 " durable %" PRIu64
                   " lag %" PRIu64 " records %" PRIu64 " bytes %" PRIu64 " ms, link %d\n",
                   j, tdm_replica_role_name(n->role), n->epoch, n->last_lsn, n->durable_lsn,
                   n->lag_records, n->lag_size, n->lag_ms, (int)n->link);
        }
    }
}

int sim_run(uint64_t seed, bool verbose, char *message, size_t message_size, uint64_t *steps)
{
    struct sim *sim = &sim_state;
    sim->message = message;
    sim->message_size = message_size;
    message[0] = '\0';
    sim_setup(sim, seed, verbose);
    const struct sim_params *p = &sim->params;
    sim_log(sim,
            "seed %" PRIu64 ": %u nodes, min_copies %u, delay <= %" PRIu64
            " ms, drop %u/1000, duplicate %u/1000, reorder %u/1000, disk <= %" PRIu64 " ms",
            seed, p->node_count, p->min_copies, p->delay_ms_max, p->drop_per_mille,
            p->duplicate_per_mille, p->reorder_per_mille, p->disk_ms_max);
    for (uint32_t i = 0; i < p->node_count; i++) {
        sim_node_start(sim, i);
    }
    sim_schedule(sim, 1, SIM_EV_CLIENT, UINT32_MAX);
    if (p->crash_gap_ms > 0) {
        sim_schedule(sim, sim_random(sim, p->crash_gap_ms), SIM_EV_CRASH, UINT32_MAX);
    }
    if (p->first_primary_crash_ms > 0) {
        sim_schedule(sim, p->first_primary_crash_ms, SIM_EV_CRASH, 0);
    }
    if (p->partition_gap_ms > 0) {
        sim_schedule(sim, sim_random(sim, p->partition_gap_ms), SIM_EV_PARTITION, UINT32_MAX);
    }
    if (p->switchover_gap_ms > 0) {
        sim_schedule(sim, 1 + sim_random(sim, p->switchover_gap_ms), SIM_EV_SWITCHOVER, UINT32_MAX);
    }
    if (p->failover_gap_ms > 0) {
        struct sim_event *failover =
            sim_schedule(sim, 1 + sim_random(sim, p->failover_gap_ms), SIM_EV_FAILOVER, UINT32_MAX);
        failover->other = UINT32_MAX;
    }
    if (p->damage_gap_ms > 0) {
        sim_schedule(sim, 1 + sim_damage_random(sim, p->damage_gap_ms), SIM_EV_DAMAGE, UINT32_MAX);
        sim_schedule(sim, 1 + sim_damage_random(sim, p->repair_gap_ms), SIM_EV_REPAIR, UINT32_MAX);
    }
    sim_schedule(sim, 1 + sim_damage_random(sim, p->query_gap_ms), SIM_EV_QUERY, UINT32_MAX);
    sim_schedule(sim, p->faults_ms, SIM_EV_CALM, UINT32_MAX);
    /* Phase 2 stops at convergence; this only bounds a run that never gets there. */
    uint64_t end_ms = p->faults_ms + 60000;
    while (!sim->failed && sim->event_count > 0 && sim->steps < SIM_STEPS_MAX) {
        struct sim_event event = sim_pop(sim);
        if (event.at_ms > end_ms) {
            break;
        }
        sim->now_ms = event.at_ms;
        sim_dispatch(sim, &event);
        if (sim->calm && sim_converged(sim)) {
            break;
        }
    }
    if (!sim->failed && !sim_converged(sim)) {
        sim_fail(sim, "liveness: no convergence %" PRIu64 " ms after faults stopped",
                 sim->now_ms - p->faults_ms);
    }
    if (sim->failed) {
        sim_dump(sim);
    }
    *steps = sim->steps;
    return sim->failed ? 1 : 0;
}
