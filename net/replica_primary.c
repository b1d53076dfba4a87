/* net/replica_primary.c: the primary: open the epoch, answer HELLO with START,
 * ship batches through a bounded pipeline, count durable copies, acknowledge
 * writes at min_copies, fail them at the deadline (docs/PROTOCOL.md §4-§6).
 *
 * Happy path:
 * 1. First step: open epoch E+1 beginning at last_lsn + 1 and ask for the
 *    history to be persisted. Every restart of a primary opens a new epoch, so
 *    that batches it wrote, shipped and then lost in a crash (never durable
 *    here, so never acknowledged) can be told apart from the batches it writes
 *    next at the same LSNs: backups cut that tail at the fork point.
 *    One exception, a new cluster's first primary (PROTOCOL.md §4): with the
 *    init history (1, self, 1) and an empty log it acts in epoch 1 at once
 *    (primary_first_epoch() says why that is safe), and while it acts in
 *    epoch 1 it ships only batches durable here.
 * 2. PERSISTED(EPOCHS): act as primary: HELLO to every linked node, hand held
 *    writes to the engine (WRITE_LOCAL).
 * 3. HELLO from a backup: compute the fork point (replica_fork.c) and answer
 *    START; READY (same hello_id) makes the link LIVE at fork_lsn + 1.
 * 4. APPENDED: the local log grew by whole batches; remember the batch end
 *    (a ring of TDM_REPLICA_BOUNDARIES_MAX) and ship to every LIVE backup,
 *    at most pipeline_batches_max APPEND ranges (each of one or more whole
 *    batches) and pipeline_size_max bytes beyond what it holds durably. A backup further behind
 * than the ring gets one catch-up range at a time, of unknown size (the adapter streams it).
 * 5. ACK: move the backup's durable and received LSNs forward, free the
 *    pipeline, recompute the commit LSN, complete writes, ship more.
 * 6. The commit LSN is the highest LSN durable here AND on min_copies - 1
 *    backups: the primary is always one of the copies, so every acknowledged
 *    write survives on the node that stays primary (D1).
 *
 * Failure modes:
 * - a frame that breaks the protocol or comes from another epoch: traced,
 *   ignored (primary_ignore_*);
 * - a backup that stops acknowledging: after retransmit_ms without progress the
 *   pipeline restarts from its received LSN (go-back-N); frames may be lost,
 *   duplicated or reordered without harm;
 * - too few copies by a write's deadline: the write fails with TANDEM_ECOPIES
 *   (its records may still be stored and may still reach backups);
 * - a failed epoch persist or fdatasync: the node stops (replica.c);
 * - a HELLO from the acting primary of a higher epoch: the node steps down
 *   and follows it (replica_switch.c, PROTOCOL.md §8.3); a HOLDING primary
 *   (switchover, replica_switch.c) ships and acknowledges but takes no new
 *   write until the switchover ends. */
#include <inttypes.h>
#include <string.h>

#include "engine/base/assert.h"
#include "engine/base/error.h"
#include "net/replica.h"
#include "net/replica_internal.h"

static void primary_peer_reset(struct tdm_replica_peer *peer)
{
    peer->fork_lsn = 0;
    peer->next_lsn = 0;
    peer->received_lsn = 0;
    peer->inflight_head = 0;
    peer->inflight_count = 0;
    peer->inflight_size = 0;
    tdm_assert(peer->inflight_count == 0);
    tdm_assert(peer->inflight_size == 0);
}

static void primary_boundary_push(struct tdm_replica *replica, uint64_t lsn_last, uint64_t size)
{
    tdm_assert(replica->boundary_count <= TDM_REPLICA_BOUNDARIES_MAX);
    replica->size_total += size;
    uint32_t index;
    if (replica->boundary_count == TDM_REPLICA_BOUNDARIES_MAX) {
        index = replica->boundary_head;
        replica->boundary_head = (replica->boundary_head + 1) % TDM_REPLICA_BOUNDARIES_MAX;
    } else {
        index = (replica->boundary_head + replica->boundary_count) % TDM_REPLICA_BOUNDARIES_MAX;
        replica->boundary_count++;
    }
    struct tdm_replica_boundary *boundary = &replica->boundaries[index];
    boundary->lsn_last = lsn_last;
    boundary->size_total = replica->size_total;
    boundary->written_ms = replica->now_ms;
    tdm_assert(replica->boundary_count >= 1);
}

static const struct tdm_replica_boundary *primary_boundary_at(const struct tdm_replica *replica,
                                                              uint32_t position)
{
    tdm_assert(position < replica->boundary_count);
    tdm_assert(replica->boundary_count <= TDM_REPLICA_BOUNDARIES_MAX);
    return &replica->boundaries[(replica->boundary_head + position) % TDM_REPLICA_BOUNDARIES_MAX];
}

/* Position of the first remembered batch end >= lsn, or boundary_count. */
static uint32_t primary_boundary_search(const struct tdm_replica *replica, uint64_t lsn)
{
    uint32_t low = 0;
    uint32_t high = replica->boundary_count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        if (primary_boundary_at(replica, middle)->lsn_last < lsn) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    tdm_assert(low <= replica->boundary_count);
    return low;
}

/* True if this primary may act in the epoch of its history's last entry (which
 * names it) again, without opening a new one: its log holds no batch of that
 * epoch. The cluster's first epoch (init history, empty log) is one case; a
 * primary handed an epoch by a switchover or a failover that crashed before
 * it made a batch of it durable is another.
 *
 * Why that is safe. A new epoch exists to tell apart batches that a primary
 * shipped and then lost in a crash from the different batches it writes next
 * at the same LSNs. In an epoch of which the log holds nothing there is
 * nothing to tell apart:
 * - only this node can have written batches of the epoch: one primary per
 *   epoch, and a backup appends only what its primary sent;
 * - a primary ships only batches durable in its own log until its log holds a
 *   durable batch of its epoch (primary_ship_lsn()), and durable batches
 *   survive a crash;
 * - so if its log holds no batch of the epoch, no batch of the epoch ever left
 *   it: whatever it wrote before a crash was never durable here, hence never
 *   shipped (and never acknowledged), and no backup holds a batch of the epoch
 *   that the batches it writes now could contradict.
 * Any other restart opens a new epoch: batches of the epoch may have left
 * before a crash cut the local tail, so the fence is needed. (A node whose
 * directory was wiped while its backups kept its batches breaks the premise
 * "durable batches survive"; that is an operator error, as it is for any
 * primary.) */
static bool primary_acts_again(const struct tdm_replica *replica)
{
    const struct tdm_epoch_entry *entry = &replica->history.entries[replica->history.count - 1];
    tdm_assert(entry->primary_index == replica->config.self_index);
    /* And the log ends just before it: a log that lost batches acknowledged
     * nowhere before the epoch began opens a new epoch instead. */
    return replica->last_epoch < entry->epoch && replica->last_lsn + 1 == entry->lsn_first;
}

/* The last LSN the primary may ship: until a batch of its epoch is durable
 * here, only what is durable here (primary_acts_again()); then everything
 * written (PROTOCOL.md §5.4: the local fdatasync runs in parallel with the
 * backups'). */
static uint64_t primary_ship_lsn(const struct tdm_replica *replica)
{
    tdm_assert(replica->durable_lsn <= replica->last_lsn);
    uint64_t first = replica->history.entries[replica->history.count - 1].lsn_first;
    return replica->durable_lsn >= first ? replica->last_lsn : replica->durable_lsn;
}

/* A primary of an epoch it opened itself (after a restart, an abandoned
 * switchover, or above an abandoned epoch) acts once a backup has joined it
 * there (READY), so that no node acting as primary
 * can be unaware of a newer epoch in which writes were acknowledged
 * (PROTOCOL.md §4, §8.3): a backup fenced into such an epoch never joins.
 * Not needed in the cluster's first epoch (every other epoch is above it) nor
 * with min_copies 1 (no backup is needed to acknowledge anyway). */
void tdm_replica_primary_act_or_wait(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_RECOVERING || replica->role == TDM_ROLE_HOLDING);
    tdm_assert(!replica->history_pending);
    if (replica->epoch == 1 || replica->config.min_copies < 2) {
        tdm_replica_primary_act(replica, actions);
        return;
    }
    if (replica->role != TDM_ROLE_HOLDING) {
        tdm_replica_role_move(replica, TDM_ROLE_HOLDING);
    }
    replica->sw.phase = TDM_SWITCH_JOIN;
    tdm_replica_tracef(replica, "hold writes until a backup joins epoch %" PRIu64, replica->epoch);
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_replica_peer *peer = &replica->peers[i];
        if (i != replica->config.self_index && peer->link != TDM_LINK_DOWN) {
            primary_peer_reset(peer);
            peer->link = TDM_LINK_UP;
            peer->link_ms = replica->now_ms;
            peer->hello_id = 0;
            tdm_replica_primary_hello(replica, actions, i);
        }
    }
}

void tdm_replica_primary_start(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_RECOVERING);
    tdm_assert(!replica->history_pending);
    /* Boundary ring starts at the recovered log end, of known size 0. */
    replica->boundary_head = 0;
    replica->boundary_count = 0;
    primary_boundary_push(replica, replica->last_lsn, 0);
    const struct tdm_epoch_history *history = &replica->history;
    uint32_t cause = history->entries[history->count - 1].cause;
    if (primary_acts_again(replica)) {
        if (history->count >= 2 &&
            (cause == TDM_EPOCH_CAUSE_SCHEDULED || cause == TDM_EPOCH_CAUSE_COMMAND)) {
            tdm_replica_switch_unconfirmed_start(replica, actions); /* PROTOCOL.md §8.1. */
            return;
        }
        tdm_replica_tracef(replica, "epoch %" PRIu64 " again: no batch of it in the log",
                           replica->epoch);
        tdm_replica_primary_act_or_wait(replica, actions);
        return;
    }
    if (replica->config.min_copies >= 2) {
        /* PROTOCOL.md §4: a new epoch only once a backup says HELLO to us as
         * its primary; nodes a failover fenced never do. */
        replica->sw.lazy = true;
        tdm_replica_tracef(replica, "wait for a backup before opening an epoch");
        return;
    }
    tdm_replica_primary_open(replica, actions, replica->epoch, TDM_EPOCH_CAUSE_RESTART);
}

void tdm_replica_primary_open(struct tdm_replica *replica, struct tdm_actions *actions,
                              uint64_t base, uint32_t cause)
{
    tdm_assert(!replica->history_pending);
    tdm_assert(base >= replica->epoch);
    uint32_t self = replica->config.self_index;
    replica->history_next = replica->history;
    struct tdm_epoch_entry entry = tdm_replica_entry_make(
        replica, tdm_replica_epoch_next(base, self, replica->config.node_count), self, cause);
    tdm_replica_history_push(&replica->history_next, &entry);
    replica->history_pending = true;
    actions->history_to_persist = &replica->history_next;
    tdm_assert(entry.epoch >= 2);
    tdm_replica_tracef(replica, "open epoch %" PRIu64 " at lsn %" PRIu64, entry.epoch,
                       entry.lsn_first);
}

void tdm_replica_primary_hello(struct tdm_replica *replica, struct tdm_actions *actions,
                               uint32_t node_index)
{
    tdm_assert(replica->role == TDM_ROLE_PRIMARY || replica->role == TDM_ROLE_HOLDING ||
               replica->role == TDM_ROLE_RECOVERING);
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_HELLO);
    send->hello.role = (uint8_t)replica->role;
    send->hello.last_lsn = replica->last_lsn;
    send->hello.durable_lsn = replica->durable_lsn;
    send->hello.last_epoch = replica->last_epoch;
    send->hello.chain_hash = replica->chain_hash;
}

/* Hand a write to the engine. records: NULL for a local SUBMIT. */
static void primary_write_local(struct tdm_replica *replica, struct tdm_actions *actions,
                                struct tdm_replica_write *write, const uint8_t *records)
{
    tdm_assert(replica->role == TDM_ROLE_PRIMARY);
    tdm_assert(write->state == TDM_WRITE_HELD || write->state == TDM_WRITE_APPENDING);
    struct tdm_action_write *action = tdm_replica_write_action(replica, actions, TDM_WRITE_LOCAL);
    action->write_id = write->write_id;
    action->record_count = write->record_count;
    action->size = write->size;
    action->records = records;
    write->state = TDM_WRITE_APPENDING;
}

/* Tell whoever submitted write how it ended, and forget it. */
static void primary_write_finish(struct tdm_replica *replica, struct tdm_actions *actions,
                                 struct tdm_replica_write *write, int status)
{
    tdm_assert(status <= 0);
    tdm_assert(status < 0 || write->state == TDM_WRITE_WAITING);
    if (write->origin_index == replica->config.self_index) {
        tdm_replica_result(actions, write->write_id, status, write->lsn_first, write->lsn_last);
    } else if (write->origin_index < replica->config.node_count) {
        tdm_assert(replica->peers[write->origin_index].link != TDM_LINK_DOWN);
        struct tdm_send *send =
            tdm_replica_send(replica, actions, write->origin_index, TDM_FRAME_FORWARD_RESULT);
        send->forward_result.request_id = write->request_id;
        send->forward_result.status = status;
        send->forward_result.lsn_first = status == 0 ? write->lsn_first : 0;
        send->forward_result.lsn_last = status == 0 ? write->lsn_last : 0;
    }
    tdm_replica_write_remove(replica, write);
}

static void primary_on_epoch_persisted(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->history_pending);
    replica->history = replica->history_next;
    replica->history_pending = false;
    replica->epoch = replica->history.entries[replica->history.count - 1].epoch;
    tdm_replica_history_persisted(replica);
    if (replica->role == TDM_ROLE_HOLDING) {
        tdm_replica_switch_on_persisted(replica, actions); /* PROTOCOL.md §8.1. */
        return;
    }
    tdm_assert(replica->role == TDM_ROLE_RECOVERING);
    tdm_replica_primary_act_or_wait(replica, actions);
}

/* Hand held writes to the engine in the order they were submitted; a write
 * this node forwarded while a backup, still unanswered, holds back the ones
 * after it (it may come back not taken, to be appended here first). */
void tdm_replica_primary_release_held(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_PRIMARY);
    for (uint32_t i = 0; i < replica->write_count; i++) {
        struct tdm_replica_write *write = &replica->writes[i];
        if (write->state == TDM_WRITE_FORWARDED) {
            return;
        }
        if (write->state == TDM_WRITE_HELD) {
            primary_write_local(replica, actions, write, NULL);
        }
    }
}

/* True if a new local write must wait behind an older one (held, or
 * forwarded while this node was a backup and not answered yet). */
static bool primary_write_waits(const struct tdm_replica *replica)
{
    for (uint32_t i = 0; i < replica->write_count; i++) {
        enum tdm_write_state state = replica->writes[i].state;
        if (state == TDM_WRITE_HELD || state == TDM_WRITE_FORWARDED) {
            return true;
        }
    }
    return false;
}

/* Act as primary in replica->epoch: every linked node handshakes again (its
 * epoch is older), held writes go to the engine. */
void tdm_replica_primary_act(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_RECOVERING || replica->role == TDM_ROLE_HOLDING ||
               replica->role == TDM_ROLE_BACKUP); /* BACKUP: promoted by a failover. */
    tdm_assert(!replica->history_pending);
    tdm_replica_role_move(replica, TDM_ROLE_PRIMARY);
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_replica_peer *peer = &replica->peers[i];
        if (i != replica->config.self_index && peer->link != TDM_LINK_DOWN) {
            primary_peer_reset(peer);
            peer->link = TDM_LINK_UP;
            peer->link_ms = replica->now_ms;
            peer->hello_id = 0;
            tdm_replica_primary_hello(replica, actions, i);
        }
    }
    tdm_replica_primary_release_held(replica, actions);
}

void tdm_replica_primary_become(struct tdm_replica *replica)
{
    tdm_assert(replica->primary_index == replica->config.self_index);
    tdm_assert(replica->role == TDM_ROLE_BACKUP);
    replica->boundary_head = 0;
    replica->boundary_count = 0;
    primary_boundary_push(replica, replica->last_lsn, 0);
    /* What the old primary said was acknowledged, as far as we hold it. */
    replica->commit_lsn = tdm_replica_min(replica->commit_lsn, replica->durable_lsn);
    replica->forward_id_next =
        tdm_replica_max(replica->forward_id_next, TDM_REPLICA_WRITE_ID_FORWARDED);
    replica->lag_count = 0;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_replica_peer *peer = &replica->peers[i];
        primary_peer_reset(peer);
        peer->durable_lsn = 0;
        peer->hello_id = 0;
        /* forward_held stays: a FORWARD this node refused as a backup holds
         * the link until the sender restarts from its oldest write. */
        if (i != replica->config.self_index && peer->link != TDM_LINK_DOWN) {
            peer->link = TDM_LINK_UP;
            peer->link_ms = replica->now_ms;
        }
    }
    /* Writes waiting for a link to the old primary are ours to append now. */
    for (uint32_t i = 0; i < replica->write_count; i++) {
        if (replica->writes[i].state == TDM_WRITE_UNSENT) {
            replica->writes[i].state = TDM_WRITE_HELD;
        }
    }
}

void tdm_replica_primary_step_down(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role != TDM_ROLE_BACKUP);
    tdm_assert(replica->role != TDM_ROLE_FAILED);
    for (uint32_t i = 0; i < replica->write_count;) {
        struct tdm_replica_write *write = &replica->writes[i];
        if (write->state == TDM_WRITE_HELD) {
            write->state = TDM_WRITE_UNSENT; /* Never stored: forwarded to the new primary. */
            i++;
        } else if (write->state == TDM_WRITE_FORWARDED) {
            i++;
        } else {
            /* Handed to the engine: may be stored, not acknowledged. */
            if (write->origin_index < replica->config.node_count &&
                write->origin_index != replica->config.self_index &&
                replica->peers[write->origin_index].link == TDM_LINK_DOWN) {
                write->origin_index = TDM_REPLICA_ORIGIN_GONE;
            }
            primary_write_finish(replica, actions, write, TANDEM_ECOPIES);
        }
    }
}

/* The copy count (PROTOCOL.md §6): the primary's durable LSN, capped by the
 * (min_copies - 1)-th highest durable LSN among the backups of this epoch. */
static void primary_commit_advance(struct tdm_replica *replica, struct tdm_actions *actions)
{
    uint64_t durable[TDM_REPLICA_NODES_MAX];
    uint32_t count = 0;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        if (i != replica->config.self_index) {
            /* Not beyond a known divergence: those bytes are not ours (§9). */
            durable[count++] = tdm_replica_verify_countable(replica, i);
        }
    }
    /* Sort descending (at most 7 values). */
    for (uint32_t i = 1; i < count; i++) {
        for (uint32_t j = i; j > 0 && durable[j] > durable[j - 1]; j--) {
            uint64_t swap = durable[j];
            durable[j] = durable[j - 1];
            durable[j - 1] = swap;
        }
    }
    uint32_t needed = replica->config.min_copies - 1;
    tdm_assert(needed <= count);
    uint64_t commit = replica->durable_lsn;
    if (needed > 0) {
        commit = tdm_replica_min(commit, durable[needed - 1]);
    }
    if (commit > replica->commit_lsn) {
        replica->commit_lsn = commit;
    }
    for (uint32_t i = 0; i < replica->write_count;) {
        struct tdm_replica_write *write = &replica->writes[i];
        if (write->state == TDM_WRITE_WAITING && write->lsn_last <= replica->commit_lsn) {
            primary_write_finish(replica, actions, write, 0);
        } else {
            i++;
        }
    }
    tdm_assert(replica->commit_lsn <= replica->durable_lsn);
}

static void primary_inflight_push(struct tdm_replica *replica, struct tdm_replica_peer *peer,
                                  uint64_t lsn_last, uint64_t size)
{
    tdm_assert(peer->inflight_count < TDM_PIPELINE_BATCHES_MAX);
    tdm_assert(size > 0);
    uint32_t index = (peer->inflight_head + peer->inflight_count) % TDM_PIPELINE_BATCHES_MAX;
    peer->inflight[index].lsn_last = lsn_last;
    peer->inflight[index].size = size;
    peer->inflight_count++;
    peer->inflight_size += size;
    if (peer->inflight_count == 1) {
        peer->progress_ms = replica->now_ms;
    }
}

/* Forget the ranges the backup now holds durably. */
static void primary_inflight_release(struct tdm_replica_peer *peer)
{
    while (peer->inflight_count > 0) {
        struct tdm_replica_inflight *first = &peer->inflight[peer->inflight_head];
        if (first->lsn_last > peer->durable_lsn) {
            break;
        }
        tdm_assert(peer->inflight_size >= first->size);
        peer->inflight_size -= first->size;
        peer->inflight_head = (peer->inflight_head + 1) % TDM_PIPELINE_BATCHES_MAX;
        peer->inflight_count--;
    }
    tdm_assert(peer->inflight_count > 0 || peer->inflight_size == 0);
}

/* Send one APPEND range to a LIVE backup, if the pipeline has room. Returns
 * false when nothing more can be sent now. */
static bool primary_ship_one(struct tdm_replica *replica, struct tdm_actions *actions,
                             uint32_t node_index)
{
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    const struct tdm_replica_config *config = &replica->config;
    tdm_assert(peer->link == TDM_LINK_LIVE);
    tdm_assert(peer->next_lsn >= 1);
    uint64_t ship_lsn = primary_ship_lsn(replica);
    if (peer->next_lsn > ship_lsn || peer->inflight_count >= config->pipeline_batches_max ||
        peer->inflight_size >= config->pipeline_size_max) {
        return false;
    }
    uint32_t position = primary_boundary_search(replica, peer->next_lsn);
    tdm_assert(position < replica->boundary_count); /* The newest is last_lsn. */
    const struct tdm_replica_boundary *end = primary_boundary_at(replica, position);
    if (end->lsn_last > ship_lsn) {
        return false; /* Epoch 1: the batch is not durable here yet. */
    }
    uint64_t size = 0;
    if (position > 0 &&
        primary_boundary_at(replica, position - 1)->lsn_last == peer->next_lsn - 1) {
        /* Known batches: one range takes as many as the byte budget allows. */
        uint64_t base = primary_boundary_at(replica, position - 1)->size_total;
        uint64_t budget = config->pipeline_size_max - peer->inflight_size;
        while (position + 1 < replica->boundary_count &&
               primary_boundary_at(replica, position + 1)->lsn_last <= ship_lsn &&
               primary_boundary_at(replica, position + 1)->size_total - base <= budget) {
            position++;
        }
        end = primary_boundary_at(replica, position);
        size = end->size_total - base;
    }
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_APPEND);
    send->append.lsn_first = peer->next_lsn;
    send->append.lsn_last = end->lsn_last;
    send->append.commit_lsn = replica->commit_lsn;
    send->append.size = size;
    /* A catch-up range of unknown size fills the pipeline on its own. */
    primary_inflight_push(replica, peer, end->lsn_last,
                          size > 0 ? size : config->pipeline_size_max);
    peer->next_lsn = end->lsn_last + 1;
    return true;
}

/* True if this primary talks to its backups in its epoch: acting, or holding
 * writes while a switchover's target catches up (and while the offer is
 * persisted: the epoch is still ours). Not once the offer is persisted. */
static bool primary_shipping(const struct tdm_replica *replica)
{
    return replica->role == TDM_ROLE_PRIMARY ||
           (replica->role == TDM_ROLE_HOLDING &&
            (replica->sw.phase == TDM_SWITCH_CATCH_UP || replica->sw.phase == TDM_SWITCH_OFFER));
}

/* True if this primary says HELLO again to linked nodes that have not
 * answered: acting, or waiting for a first backup to join. */
static bool primary_hails(const struct tdm_replica *replica)
{
    return replica->role == TDM_ROLE_PRIMARY ||
           (replica->role == TDM_ROLE_HOLDING && replica->sw.phase == TDM_SWITCH_JOIN) ||
           (replica->role == TDM_ROLE_RECOVERING && replica->sw.lazy);
}

/* True if this primary answers a backup's HELLO with START: it ships, or it
 * waits for a first backup to join its epoch. */
static bool primary_answers_hello(const struct tdm_replica *replica)
{
    return primary_shipping(replica) ||
           (replica->role == TDM_ROLE_HOLDING && replica->sw.phase == TDM_SWITCH_JOIN);
}

static void primary_ship(struct tdm_replica *replica, struct tdm_actions *actions,
                         uint32_t node_index)
{
    if (!primary_shipping(replica)) {
        return; /* A switchover's handover, or a new epoch being persisted. */
    }
    uint32_t sent = 0;
    while (primary_ship_one(replica, actions, node_index)) {
        sent++;
        tdm_assert(sent <= TDM_PIPELINE_BATCHES_MAX);
    }
}

static void primary_ship_all(struct tdm_replica *replica, struct tdm_actions *actions)
{
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        if (i != replica->config.self_index && replica->peers[i].link == TDM_LINK_LIVE) {
            primary_ship(replica, actions, i);
        }
    }
}

static bool primary_ignore_hello(const struct tdm_replica *replica, uint32_t node_index,
                                 const struct tdm_frame *frame)
{
    const struct tdm_frame_hello *hello = &frame->hello;
    const struct tdm_replica_peer *peer = &replica->peers[node_index];
    const char *why = NULL;
    if (!primary_answers_hello(replica)) {
        why = "not acting as primary";
    } else if (hello->version != TDM_FRAME_VERSION) {
        why = "protocol version";
    } else if (!tdm_replica_history_valid(&hello->history, replica->config.node_count)) {
        why = "malformed epoch history";
    } else if (frame->epoch != hello->history.entries[hello->history.count - 1].epoch) {
        why = "epoch is not its history's";
    } else if (frame->epoch > replica->epoch) {
        why = "higher epoch, not its acting primary";
    } else if (hello->role != TDM_ROLE_BACKUP) {
        why = "another primary, behind us";
    } else if (hello->durable_lsn > hello->last_lsn) {
        why = "durable_lsn beyond last_lsn";
    } else if ((hello->last_lsn == 0) != (hello->last_epoch == 0) ||
               hello->last_epoch > frame->epoch) {
        why = "last_epoch";
    } else if (peer->link == TDM_LINK_DOWN) {
        why = "link is down";
    } else if (hello->hello_id <= peer->hello_id) {
        why = "stale hello_id";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore HELLO from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void primary_on_hello(struct tdm_replica *replica, uint32_t node_index,
                             const struct tdm_frame *frame, struct tdm_actions *actions)
{
    if (primary_ignore_hello(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_hello *hello = &frame->hello;
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    uint64_t fork = tdm_replica_fork_point(&replica->history, replica->last_lsn, &hello->history,
                                           hello->last_lsn, hello->last_epoch);
    tdm_assert(fork <= hello->last_lsn);
    tdm_assert(fork <= replica->last_lsn);
    primary_peer_reset(peer);
    peer->link = TDM_LINK_STARTED;
    peer->link_ms = replica->now_ms;
    peer->hello_id = hello->hello_id;
    peer->fork_lsn = fork;
    peer->role = hello->role;
    peer->epoch = frame->epoch;
    peer->last_lsn = hello->last_lsn;
    /* What it holds durably beyond the fork point is about to be cut. */
    peer->durable_lsn = tdm_replica_min(peer->durable_lsn, fork);
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_START);
    send->start.hello_id = hello->hello_id;
    send->start.fork_lsn = fork;
    tdm_replica_tracef(replica, "START #%u: hello %" PRIu64 " last %" PRIu64 " fork %" PRIu64,
                       node_index, hello->hello_id, hello->last_lsn, fork);
}

static bool primary_ignore_ready(const struct tdm_replica *replica, uint32_t node_index,
                                 const struct tdm_frame *frame)
{
    const struct tdm_frame_ready *ready = &frame->ready;
    const struct tdm_replica_peer *peer = &replica->peers[node_index];
    const char *why = NULL;
    if (frame->epoch != replica->epoch) {
        why = "other epoch";
    } else if (peer->link != TDM_LINK_STARTED) {
        why = "no START outstanding";
    } else if (ready->hello_id != peer->hello_id) {
        why = "stale hello_id";
    } else if (ready->last_lsn != peer->fork_lsn) {
        why = "last_lsn is not the fork point";
    } else if (ready->durable_lsn > ready->last_lsn) {
        why = "durable_lsn beyond last_lsn";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore READY from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void primary_on_ready(struct tdm_replica *replica, uint32_t node_index,
                             const struct tdm_frame *frame, struct tdm_actions *actions)
{
    if (primary_ignore_ready(replica, node_index, frame)) {
        return;
    }
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    tdm_assert(frame->ready.last_lsn <= replica->last_lsn);
    peer->link = TDM_LINK_LIVE;
    peer->link_ms = replica->now_ms;
    peer->heard_ms = replica->now_ms;
    peer->epoch = frame->epoch;
    peer->role = TDM_ROLE_BACKUP;
    peer->last_lsn = frame->ready.last_lsn;
    peer->received_lsn = frame->ready.last_lsn;
    peer->durable_lsn = frame->ready.durable_lsn;
    peer->next_lsn = frame->ready.last_lsn + 1;
    peer->progress_ms = replica->now_ms;
    peer->heartbeat_ms = 0; /* A heartbeat now tells it the commit LSN. */
    tdm_replica_tracef(replica, "#%u LIVE from lsn %" PRIu64, node_index, peer->next_lsn);
    if (replica->role == TDM_ROLE_HOLDING && replica->sw.phase == TDM_SWITCH_JOIN) {
        tdm_replica_tracef(replica, "#%u joined epoch %" PRIu64 ": act as primary", node_index,
                           replica->epoch);
        replica->sw.phase = TDM_SWITCH_IDLE;
        tdm_replica_role_move(replica, TDM_ROLE_PRIMARY);
        for (uint32_t i = 0; i < replica->config.node_count; i++) {
            if (i != replica->config.self_index && replica->peers[i].link == TDM_LINK_UP) {
                tdm_replica_primary_hello(replica, actions, i); /* Now as primary. */
            }
        }
        tdm_replica_primary_release_held(replica, actions);
    }
    primary_commit_advance(replica, actions);
    primary_ship(replica, actions, node_index);
}

static bool primary_ignore_ack(const struct tdm_replica *replica, uint32_t node_index,
                               const struct tdm_frame *frame)
{
    const struct tdm_frame_ack *ack = &frame->ack;
    const struct tdm_replica_peer *peer = &replica->peers[node_index];
    const char *why = NULL;
    if (frame->epoch != replica->epoch) {
        why = "other epoch";
    } else if (peer->link != TDM_LINK_LIVE) {
        why = "link not LIVE";
    } else if (ack->durable_lsn > ack->received_lsn) {
        why = "durable_lsn beyond received_lsn";
    } else if (ack->received_lsn > replica->last_lsn) {
        why = "received_lsn beyond our log";
    } else if (ack->echo_ms > replica->now_ms) {
        why = "echo from the future";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore ACK from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void primary_on_ack(struct tdm_replica *replica, uint32_t node_index,
                           const struct tdm_frame *frame, struct tdm_actions *actions)
{
    if (primary_ignore_ack(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_ack *ack = &frame->ack;
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    tdm_assert(ack->durable_lsn <= replica->last_lsn);
    peer->heard_ms = replica->now_ms;
    if (ack->received_lsn > peer->received_lsn) {
        peer->received_lsn = ack->received_lsn;
        peer->progress_ms = replica->now_ms;
    }
    if (ack->durable_lsn > peer->durable_lsn) {
        peer->durable_lsn = ack->durable_lsn;
        peer->progress_ms = replica->now_ms;
    }
    peer->last_lsn = tdm_replica_max(peer->last_lsn, peer->received_lsn);
    if (replica->ship_failed_lsn != 0 && peer->durable_lsn >= replica->ship_failed_lsn) {
        tdm_replica_tracef(replica, "#%u holds lsn %" PRIu64 ": shipping goes on", node_index,
                           replica->ship_failed_lsn);
        replica->ship_failed_lsn = 0; /* It was read after all: repaired. */
    }
    if (ack->echo_ms != 0) {
        peer->rtt_ms = replica->now_ms - ack->echo_ms;
    }
    primary_inflight_release(peer);
    primary_commit_advance(replica, actions);
    primary_ship(replica, actions, node_index);
}

/* True if the FORWARD request_id of node_index is in flight here (taken, not
 * yet answered: its answer comes when it is done). Ids do not arrive in
 * order: a write answered ENOTPRIMARY or EBUSY (not taken) is sent again
 * after newer ones were taken, so only an id in flight is a duplicate. */
static bool primary_forward_in_flight(const struct tdm_replica *replica, uint32_t node_index,
                                      uint64_t request_id)
{
    for (uint32_t i = 0; i < replica->write_count; i++) {
        const struct tdm_replica_write *write = &replica->writes[i];
        if (write->origin_index == node_index && write->request_id == request_id &&
            write->state != TDM_WRITE_FORWARDED) {
            return true;
        }
    }
    return false;
}

static bool primary_ignore_forward(const struct tdm_replica *replica, uint32_t node_index,
                                   const struct tdm_frame *frame)
{
    const struct tdm_frame_forward *forward = &frame->forward;
    const char *why = NULL;
    if (forward->record_count == 0) {
        why = "no records";
    } else if (primary_forward_in_flight(replica, node_index, forward->request_id)) {
        why = "duplicate request id (in flight)";
    } else if (replica->peers[node_index].link == TDM_LINK_DOWN) {
        why = "link is down";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore FORWARD from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void primary_on_forward(struct tdm_replica *replica, uint32_t node_index,
                               const struct tdm_frame *frame, struct tdm_actions *actions)
{
    if (primary_ignore_forward(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_forward *forward = &frame->forward;
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    struct tdm_replica_write *write = NULL;
    int status = TANDEM_EBUSY; /* Not acting yet, or too many writes: try again. */
    if (replica->role == TDM_ROLE_HOLDING) {
        /* A switchover: not taken, so the backup may send it again, to
         * whichever node is the primary then (PROTOCOL.md §8.1). */
        status = TANDEM_ENOTPRIMARY;
    }
    if ((forward->flags & TDM_FORWARD_RESTART) != 0) {
        peer->forward_held = false; /* The backup's oldest write: nothing before it comes back. */
    }
    if (replica->role == TDM_ROLE_PRIMARY && !peer->forward_held) {
        write = tdm_replica_write_add(replica, replica->forward_id_next, TDM_WRITE_APPENDING);
    }
    if (write == NULL) {
        /* Not taken, so neither is any later FORWARD on this link until the
         * backup sends its oldest write again: a stream keeps its order. */
        peer->forward_held = true;
        struct tdm_send *send =
            tdm_replica_send(replica, actions, node_index, TDM_FRAME_FORWARD_RESULT);
        send->forward_result.request_id = forward->request_id;
        send->forward_result.status = status;
        return;
    }
    replica->forward_id_next++;
    write->origin_index = node_index;
    write->request_id = forward->request_id;
    write->record_count = forward->record_count;
    write->size = forward->size;
    write->deadline_ms = replica->now_ms + replica->config.write_deadline_ms;
    primary_write_local(replica, actions, write, forward->records);
}

/* The answer to a write this node forwarded while it was a backup (before a
 * switchover or a failover made it the primary). */
static void primary_on_forward_result(struct tdm_replica *replica, uint32_t node_index,
                                      const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_forward_result *result = &frame->forward_result;
    struct tdm_replica_write *write = tdm_replica_write_find(replica, result->request_id);
    if (write == NULL || write->state != TDM_WRITE_FORWARDED ||
        write->origin_index != replica->config.self_index || result->status > 0 ||
        (result->status == 0 && (result->lsn_first == 0 || result->lsn_first > result->lsn_last))) {
        tdm_replica_tracef(replica, "ignore FORWARD_RESULT from #%u: no such forwarded write",
                           node_index);
        return;
    }
    if (result->status == TANDEM_ENOTPRIMARY) {
        write->state = TDM_WRITE_HELD; /* Not taken there: ours to append. */
        if (replica->role == TDM_ROLE_PRIMARY) {
            tdm_replica_primary_release_held(replica, actions);
        }
        return;
    }
    tdm_replica_result(actions, write->write_id, result->status, result->lsn_first,
                       result->lsn_last);
    tdm_replica_write_remove(replica, write);
    if (replica->role == TDM_ROLE_PRIMARY) {
        tdm_replica_primary_release_held(replica, actions);
    }
}

static void primary_on_receive(struct tdm_replica *replica, const struct tdm_event *event,
                               struct tdm_actions *actions)
{
    uint32_t node_index = event->receive.node_index;
    const struct tdm_frame *frame = event->receive.frame;
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    switch (frame->type) {
    case TDM_FRAME_HELLO:
        primary_on_hello(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_READY:
        primary_on_ready(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_ACK:
        primary_on_ack(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_FORWARD:
        primary_on_forward(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_FORWARD_RESULT:
        primary_on_forward_result(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_CHECK_RESULT:
        tdm_replica_verify_on_check_result(replica, node_index, frame, actions);
        break;
    default:
        tdm_replica_tracef(replica, "ignore frame type %u from #%u: not for a primary",
                           (unsigned)frame->type, node_index);
        break;
    }
}

/* The adapter could not read an APPEND range (a batch failed its checksum,
 * I/O): it sent nothing of it. Nothing to undo: the range stays in flight,
 * and go-back-N asks for it again after retransmit_ms, until it reads (repair
 * restored it) or the link changes. Kept for status: shipping waits. */
static void primary_on_ship_failed(struct tdm_replica *replica, const struct tdm_event *event)
{
    tdm_replica_tracef(replica,
                       "#%u: lsn %" PRIu64 "..%" PRIu64 " unreadable here (%d): not shipped, "
                       "shipping waits for repair",
                       event->ship_failed.node_index, event->ship_failed.lsn_first,
                       event->ship_failed.lsn_last, event->ship_failed.status);
    replica->ship_failures++;
    replica->ship_failed_lsn = event->ship_failed.lsn_first;
}

static void primary_on_submit(struct tdm_replica *replica, const struct tdm_event *event,
                              struct tdm_actions *actions)
{
    tdm_assert(event->submit.write_id < TDM_REPLICA_WRITE_ID_FORWARDED);
    tdm_assert(event->submit.record_count >= 1);
    bool acting = replica->role == TDM_ROLE_PRIMARY && !primary_write_waits(replica);
    struct tdm_replica_write *write = tdm_replica_write_add(
        replica, event->submit.write_id, acting ? TDM_WRITE_APPENDING : TDM_WRITE_HELD);
    if (write == NULL) {
        tdm_replica_result(actions, event->submit.write_id, TANDEM_EBUSY, 0, 0);
        return;
    }
    write->record_count = event->submit.record_count;
    write->size = event->submit.size;
    write->deadline_ms = replica->now_ms + replica->config.write_deadline_ms;
    if (acting) {
        primary_write_local(replica, actions, write, NULL);
    }
}

static void primary_on_appended(struct tdm_replica *replica, const struct tdm_event *event,
                                struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_PRIMARY || replica->role == TDM_ROLE_HOLDING);
    tdm_assert(event->appended.lsn_last > replica->last_lsn);
    tdm_assert(event->appended.epoch == replica->epoch);
    replica->last_lsn = event->appended.lsn_last;
    replica->last_epoch = event->appended.epoch;
    replica->chain_hash = event->appended.chain_hash;
    primary_boundary_push(replica, event->appended.lsn_last, event->appended.size);
    primary_ship_all(replica, actions);
}

static void primary_on_write_persisted(struct tdm_replica *replica, const struct tdm_event *event,
                                       struct tdm_actions *actions)
{
    struct tdm_replica_write *write = tdm_replica_write_find(replica, event->persisted.write_id);
    if (write == NULL) {
        tdm_replica_tracef(replica, "write %" PRIu64 " stored after its deadline",
                           event->persisted.write_id);
        return;
    }
    tdm_assert(write->state == TDM_WRITE_APPENDING);
    if (event->persisted.status < 0) {
        primary_write_finish(replica, actions, write, event->persisted.status);
        return;
    }
    tdm_assert(event->persisted.lsn_first >= 1);
    tdm_assert(event->persisted.lsn_first <= event->persisted.lsn_last);
    tdm_assert(event->persisted.lsn_last <= replica->last_lsn);
    write->state = TDM_WRITE_WAITING;
    write->lsn_first = event->persisted.lsn_first;
    write->lsn_last = event->persisted.lsn_last;
    primary_commit_advance(replica, actions);
}

static void primary_on_persisted(struct tdm_replica *replica, const struct tdm_event *event,
                                 struct tdm_actions *actions)
{
    enum tdm_persisted_kind kind = event->persisted.kind;
    if (kind == TDM_PERSISTED_WRITE) {
        primary_on_write_persisted(replica, event, actions);
        return;
    }
    if (event->persisted.status < 0) {
        tdm_replica_fail(replica, actions, event->persisted.status,
                         kind == TDM_PERSISTED_EPOCHS ? "epoch history persist" : "log fdatasync");
        return;
    }
    if (kind == TDM_PERSISTED_EPOCHS) {
        primary_on_epoch_persisted(replica, actions);
        return;
    }
    tdm_assert(kind == TDM_PERSISTED_LOG);
    tdm_assert(event->persisted.lsn_last <= replica->last_lsn);
    if (event->persisted.lsn_last > replica->durable_lsn) {
        replica->durable_lsn = event->persisted.lsn_last;
    }
    primary_commit_advance(replica, actions);
    if (primary_shipping(replica)) {
        primary_ship_all(replica, actions); /* What just became durable may leave. */
    }
}

void tdm_replica_primary_lags(const struct tdm_replica *replica, struct tdm_frame_lag *lags)
{
    tdm_assert(replica->boundary_count >= 1);
    const struct tdm_replica_boundary *oldest = primary_boundary_at(replica, 0);
    const struct tdm_replica_boundary *newest =
        primary_boundary_at(replica, replica->boundary_count - 1);
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_frame_lag *lag = &lags[i];
        bool self = i == replica->config.self_index;
        uint64_t durable = self ? replica->durable_lsn : replica->peers[i].durable_lsn;
        memset(lag, 0, sizeof(*lag));
        lag->durable_lsn = durable;
        lag->link_up = self || replica->peers[i].link != TDM_LINK_DOWN;
        if (durable >= replica->last_lsn) {
            continue;
        }
        lag->records = replica->last_lsn - durable;
        uint32_t position = primary_boundary_search(replica, durable + 1);
        tdm_assert(position < replica->boundary_count);
        const struct tdm_replica_boundary *lacking = primary_boundary_at(replica, position);
        lag->ms = replica->now_ms - lacking->written_ms;
        if (position > 0 && primary_boundary_at(replica, position - 1)->lsn_last == durable) {
            lag->size = newest->size_total - primary_boundary_at(replica, position - 1)->size_total;
        } else {
            lag->size = newest->size_total - oldest->size_total; /* At least. */
        }
    }
}

static void primary_heartbeat(struct tdm_replica *replica, struct tdm_actions *actions,
                              uint32_t node_index)
{
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    tdm_assert(peer->link == TDM_LINK_LIVE);
    if (actions->lag_count == 0) {
        tdm_replica_primary_lags(replica, replica->lags);
        actions->lag_count = replica->config.node_count;
        actions->lags = replica->lags;
    }
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_HEARTBEAT);
    send->heartbeat.last_lsn = replica->last_lsn;
    send->heartbeat.commit_lsn = replica->commit_lsn;
    send->heartbeat.send_ms = replica->now_ms;
    peer->heartbeat_ms = replica->now_ms;
}

/* Timers: heartbeats, go-back-N on a stalled pipeline, write deadlines. */
static void primary_timers(struct tdm_replica *replica, struct tdm_actions *actions)
{
    uint64_t now = replica->now_ms;
    bool shipping = primary_shipping(replica);
    for (uint32_t i = 0; (shipping || primary_hails(replica)) && i < replica->config.node_count;
         i++) {
        struct tdm_replica_peer *peer = &replica->peers[i];
        if (i != replica->config.self_index &&
            (peer->link == TDM_LINK_UP || peer->link == TDM_LINK_STARTED) &&
            primary_hails(replica) && now >= peer->link_ms + replica->config.handshake_ms) {
            /* Linked, yet no HELLO from it: our HELLO may have been lost, and
             * a node of an older epoch learns of us only from it (§8.3). */
            peer->link_ms = now;
            tdm_replica_primary_hello(replica, actions, i);
        }
        if (i == replica->config.self_index || peer->link != TDM_LINK_LIVE || !shipping) {
            continue;
        }
        if (peer->inflight_count > 0 && now >= peer->progress_ms + replica->config.retransmit_ms) {
            tdm_replica_tracef(replica, "#%u stalled: resend from lsn %" PRIu64, i,
                               peer->received_lsn + 1);
            peer->inflight_head = 0;
            peer->inflight_count = 0;
            peer->inflight_size = 0;
            peer->next_lsn = peer->received_lsn + 1;
            peer->progress_ms = now;
            primary_ship(replica, actions, i);
        }
        if (now >= peer->heartbeat_ms + replica->config.heartbeat_ms) {
            primary_heartbeat(replica, actions, i);
        }
    }
    for (uint32_t i = 0; i < replica->write_count;) {
        struct tdm_replica_write *write = &replica->writes[i];
        if (now >= write->deadline_ms) {
            tdm_replica_tracef(replica, "write %" PRIu64 " not acknowledged by its deadline",
                               write->write_id);
            primary_write_finish(replica, actions, write, TANDEM_ECOPIES);
        } else {
            /* A write forwarded on a link that dropped failed at PEER_DOWN. */
            tdm_assert(!tdm_replica_forward_lost(replica, write));
            i++;
        }
    }
    if (replica->role == TDM_ROLE_PRIMARY) {
        tdm_replica_primary_release_held(replica, actions); /* One ended: the next may go. */
    }
}

static void primary_on_peer(struct tdm_replica *replica, const struct tdm_event *event,
                            struct tdm_actions *actions)
{
    uint32_t node_index = event->peer.node_index;
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    primary_peer_reset(peer);
    peer->hello_id = 0;
    peer->forward_held = false;
    peer->link_ms = replica->now_ms;
    if (event->type == TDM_EVENT_PEER_DOWN) {
        /* What it holds durably stays counted: durable bytes survive a link. */
        peer->link = TDM_LINK_DOWN;
        tdm_replica_forward_link_lost(replica, actions, node_index);
        if (replica->role == TDM_ROLE_PRIMARY) {
            tdm_replica_primary_release_held(replica, actions);
        }
        /* Its forwarded writes go on, but their results have nowhere to go:
         * the backup answers its client at its own deadline. */
        for (uint32_t i = 0; i < replica->write_count; i++) {
            if (replica->writes[i].origin_index == node_index) {
                replica->writes[i].origin_index = TDM_REPLICA_ORIGIN_GONE;
            }
        }
        return;
    }
    peer->link = TDM_LINK_UP;
    if (primary_answers_hello(replica) || primary_hails(replica)) {
        tdm_replica_primary_hello(replica, actions, node_index);
    }
}

void tdm_replica_primary_step(struct tdm_replica *replica, const struct tdm_event *event,
                              struct tdm_actions *actions)
{
    tdm_assert(replica->primary_index == replica->config.self_index);
    tdm_assert(replica->role == TDM_ROLE_RECOVERING || replica->role == TDM_ROLE_PRIMARY ||
               replica->role == TDM_ROLE_HOLDING);
    switch (event->type) {
    case TDM_EVENT_TICK:
        break;
    case TDM_EVENT_PEER_UP:
    case TDM_EVENT_PEER_DOWN:
        primary_on_peer(replica, event, actions);
        break;
    case TDM_EVENT_RECEIVE:
        primary_on_receive(replica, event, actions);
        break;
    case TDM_EVENT_APPENDED:
        primary_on_appended(replica, event, actions);
        break;
    case TDM_EVENT_PERSISTED:
        primary_on_persisted(replica, event, actions);
        break;
    case TDM_EVENT_SUBMIT:
        primary_on_submit(replica, event, actions);
        break;
    case TDM_EVENT_CHAIN_READ:
        tdm_replica_verify_on_read(replica, event, actions);
        break;
    case TDM_EVENT_SHIP_FAILED:
        primary_on_ship_failed(replica, event);
        break;
    case TDM_EVENT_SWITCHOVER:
    case TDM_EVENT_FAILOVER:
    case TDM_EVENT__COUNT:
        tdm_unreachable(); /* Commands: replica_switch.c. */
    }
    if (replica->role != TDM_ROLE_FAILED) {
        primary_timers(replica, actions);
        tdm_replica_verify_primary(replica, actions);
    }
}

uint64_t tdm_replica_primary_deadline(const struct tdm_replica *replica)
{
    tdm_assert(replica->role == TDM_ROLE_PRIMARY || replica->role == TDM_ROLE_HOLDING ||
               replica->role == TDM_ROLE_RECOVERING);
    uint64_t deadline = UINT64_MAX;
    bool shipping = primary_shipping(replica);
    for (uint32_t i = 0; (shipping || primary_hails(replica)) && i < replica->config.node_count;
         i++) {
        const struct tdm_replica_peer *peer = &replica->peers[i];
        if (i != replica->config.self_index &&
            (peer->link == TDM_LINK_UP || peer->link == TDM_LINK_STARTED) &&
            primary_hails(replica)) {
            /* Due now if a role change skipped this step's timers. */
            deadline = tdm_replica_min(
                deadline,
                tdm_replica_max(peer->link_ms + replica->config.handshake_ms, replica->now_ms + 1));
        }
        if (i == replica->config.self_index || peer->link != TDM_LINK_LIVE || !shipping) {
            continue;
        }
        deadline = tdm_replica_min(deadline, peer->heartbeat_ms + replica->config.heartbeat_ms);
        if (peer->inflight_count > 0) {
            deadline = tdm_replica_min(deadline, peer->progress_ms + replica->config.retransmit_ms);
        }
    }
    tdm_assert(deadline > replica->now_ms);
    return deadline;
}

void tdm_replica_primary_invariants(const struct tdm_replica *replica)
{
    tdm_assert(replica->commit_lsn <= replica->durable_lsn);
    tdm_assert(replica->boundary_count >= 1);
    tdm_assert(primary_boundary_at(replica, replica->boundary_count - 1)->lsn_last ==
               replica->last_lsn);
    tdm_assert(!replica->history_pending || replica->role == TDM_ROLE_HOLDING);
    tdm_assert(replica->last_epoch == replica->epoch ||
               replica->last_lsn < replica->history.entries[replica->history.count - 1].lsn_first);
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        const struct tdm_replica_peer *peer = &replica->peers[i];
        if (i == replica->config.self_index) {
            continue;
        }
        tdm_assert(peer->inflight_count <= replica->config.pipeline_batches_max);
        tdm_assert(peer->durable_lsn <= replica->last_lsn);
        if (peer->link == TDM_LINK_LIVE) {
            tdm_assert(peer->next_lsn >= 1);
            tdm_assert(peer->next_lsn <= replica->last_lsn + 1);
            tdm_assert(peer->received_lsn <= replica->last_lsn);
        } else {
            tdm_assert(peer->inflight_count == 0);
        }
    }
    bool behind_forwarded = false;
    for (uint32_t i = 0; i < replica->write_count; i++) {
        const struct tdm_replica_write *write = &replica->writes[i];
        /* HELD only while holding, or behind an unanswered FORWARDED one (its
         * own, sent while a backup). */
        behind_forwarded = behind_forwarded || write->state == TDM_WRITE_FORWARDED;
        tdm_assert(write->state == TDM_WRITE_APPENDING || write->state == TDM_WRITE_WAITING ||
                   write->state == TDM_WRITE_FORWARDED ||
                   (write->state == TDM_WRITE_HELD &&
                    (replica->role == TDM_ROLE_HOLDING || behind_forwarded)));
        tdm_assert(write->state != TDM_WRITE_WAITING || write->lsn_last > replica->commit_lsn);
        tdm_assert(write->state != TDM_WRITE_FORWARDED ||
                   write->origin_index == replica->config.self_index);
    }
}
