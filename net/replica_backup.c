/* net/replica_backup.c: the backup: handshake with the primary, cut a
 * divergent tail, append received batches, acknowledge what is durable,
 * forward local writes (docs/PROTOCOL.md §5, §6).
 *
 * Happy path:
 * 1. Link to the primary up: HELLO (hello_id, last LSN, durable LSN, epoch of
 *    the last batch, chain hash, epoch history).
 * 2. START echoing that hello_id: if the fork point is below our last LSN, cut
 *    the log after it (into quarantine) and wait for PERSISTED(CUT); then, if
 *    the primary's history differs from ours, persist it and wait for
 *    PERSISTED(EPOCHS). The cut comes first: a history persisted ahead of a
 *    cut would vouch for a tail that is not the primary's. Then READY, LIVE.
 * 3. APPEND in our epoch: take the batches that continue our log exactly
 *    (duplicates before them are skipped, a gap stops them), each checked
 *    against the epoch history, and append them (WRITE_RECEIVED).
 * 4. PERSISTED(LOG): ACK with the durable LSN. Never before: an ACK is a
 *    promise that the batches survive a crash of this node.
 * 5. HEARTBEAT: remember the lag table, ACK with the echo of its send time.
 * 6. SUBMIT: FORWARD to the primary once a link is up; FORWARD_RESULT (or the
 *    deadline) completes the write.
 *
 * Failure modes:
 * - frames from another epoch, out of order, duplicated or not answering our
 *   current HELLO: traced, ignored (backup_ignore_*);
 * - no START within handshake_ms, or nothing from the primary for
 *   2 * handshake_ms while LIVE: HELLO again with a new hello_id;
 * - the link drops while a cut or a persist is in flight: the disk work
 *   finishes, then the handshake starts over when a link is up;
 * - a failed cut, persist or fdatasync: the node stops (replica.c);
 * - a forwarded write without a result by its deadline (plus handshake_ms):
 *   TANDEM_ECOPIES, which says "not acknowledged", never "not stored". */
#include <inttypes.h>
#include <string.h>

#include "engine/base/assert.h"
#include "engine/base/error.h"
#include "net/replica.h"
#include "net/replica_internal.h"

#ifndef TDM_PLANTED_BACKUP_ACK_BEFORE_FDATASYNC
#define TDM_PLANTED_BACKUP_ACK_BEFORE_FDATASYNC 0
#endif

void tdm_replica_backup_start(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_RECOVERING);
    tdm_assert(replica->primary_index != replica->config.self_index);
    (void)actions;
    tdm_replica_role_move(replica, TDM_ROLE_BACKUP);
}

static bool backup_disk_busy(const struct tdm_replica *replica)
{
    return replica->cut_pending || replica->history_pending;
}

static void backup_hello_send(struct tdm_replica *replica, struct tdm_actions *actions)
{
    uint32_t primary = replica->primary_index;
    struct tdm_replica_peer *peer = &replica->peers[primary];
    tdm_assert(peer->link != TDM_LINK_DOWN);
    tdm_assert(!backup_disk_busy(replica));
    if (replica->fo.phase != TDM_FAILOVER_IDLE || replica->fo.answer_epoch != 0) {
        /* Promoting this node, or being fenced away from this primary: the
         * log stays as probed (replica_failover.c); no handshake until then. */
        peer->link = TDM_LINK_UP;
        peer->link_ms = replica->now_ms;
        return;
    }
    peer->hello_id = ++replica->hello_id_last;
    peer->link = TDM_LINK_STARTED;
    peer->link_ms = replica->now_ms;
    struct tdm_send *send = tdm_replica_send(replica, actions, primary, TDM_FRAME_HELLO);
    send->hello.role = TDM_ROLE_BACKUP;
    send->hello.hello_id = peer->hello_id;
    send->hello.last_lsn = replica->last_lsn;
    send->hello.durable_lsn = replica->durable_lsn;
    send->hello.last_epoch = replica->last_epoch;
    send->hello.chain_hash = replica->chain_hash;
}

void tdm_replica_backup_hello(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_BACKUP);
    backup_hello_send(replica, actions);
}

static void backup_ack_send(struct tdm_replica *replica, struct tdm_actions *actions,
                            uint64_t durable_lsn)
{
    struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    tdm_assert(peer->link == TDM_LINK_LIVE);
    tdm_assert(durable_lsn <= replica->last_lsn);
    struct tdm_send *send =
        tdm_replica_send(replica, actions, replica->primary_index, TDM_FRAME_ACK);
    send->ack.durable_lsn = durable_lsn;
    send->ack.received_lsn = replica->last_lsn;
    send->ack.echo_ms = peer->echo_ms;
}

static void backup_forward_send(struct tdm_replica *replica, struct tdm_actions *actions,
                                struct tdm_replica_write *write, bool oldest)
{
    tdm_assert(write->state == TDM_WRITE_UNSENT);
    tdm_assert(replica->peers[replica->primary_index].link != TDM_LINK_DOWN);
    struct tdm_send *send =
        tdm_replica_send(replica, actions, replica->primary_index, TDM_FRAME_FORWARD);
    send->forward.request_id = write->write_id;
    send->forward.record_count = write->record_count;
    send->forward.size = write->size;
    send->forward.flags = oldest ? TDM_FORWARD_RESTART : 0;
    write->state = TDM_WRITE_FORWARDED;
    write->forward_index = replica->primary_index;
}

static bool backup_may_forward(const struct tdm_replica *replica)
{
    return replica->peers[replica->primary_index].link != TDM_LINK_DOWN &&
           replica->sw.phase != TDM_SWITCH_TAKEOVER;
}

/* Forward the writes still waiting for a primary (PROTOCOL.md §6): those held
 * back, and those a node sent back not taken (ENOTPRIMARY, EBUSY), in the
 * order they were submitted, so the records of one client stream get LSNs in
 * its order. The oldest unanswered write goes first, flagged
 * TDM_FORWARD_RESTART, once every FORWARD sent before it is answered: the
 * primary took none sent after one it did not take. Not while this node takes
 * over a switchover's epoch. */
void tdm_replica_backup_forward_unsent(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_BACKUP);
    if (!backup_may_forward(replica)) {
        return;
    }
    bool forwarded = false;
    for (uint32_t i = 0; i < replica->write_count; i++) {
        forwarded = forwarded || replica->writes[i].state == TDM_WRITE_FORWARDED;
    }
    bool sent = false; /* This pass sent the oldest: the rest follow it in order. */
    for (uint32_t i = 0; i < replica->write_count; i++) {
        struct tdm_replica_write *write = &replica->writes[i];
        if (write->state == TDM_WRITE_FORWARDED) {
            if (!sent) {
                return; /* Taken, or on its way back: what follows waits. */
            }
        } else if (write->state == TDM_WRITE_UNSENT) {
            if (!sent && forwarded) {
                return; /* Answers to FORWARDs already sent are on their way. */
            }
            backup_forward_send(replica, actions, write, !sent);
            sent = true;
        }
    }
}

/* A new write goes straight out if every older one is forwarded to the
 * primary and none waits to be sent again; else it waits its turn. */
static void backup_forward_new(struct tdm_replica *replica, struct tdm_actions *actions,
                               struct tdm_replica_write *write)
{
    if (!backup_may_forward(replica)) {
        return;
    }
    bool older = false;
    for (struct tdm_replica_write *w = replica->writes; w < write; w++) {
        if (w->state == TDM_WRITE_UNSENT ||
            (w->state == TDM_WRITE_FORWARDED && w->forward_index != replica->primary_index)) {
            return;
        }
        older = older || w->state == TDM_WRITE_FORWARDED;
    }
    backup_forward_send(replica, actions, write, !older);
}

/* The disk work of a handshake is done (or was never needed): READY if the
 * link that asked for it is still there, else start over when one is. */
static void backup_sync_done(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(!backup_disk_busy(replica));
    struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    if (peer->link == TDM_LINK_UP) {
        backup_hello_send(replica, actions);
        return;
    }
    if (peer->link != TDM_LINK_SYNCING) {
        return;
    }
    peer->link = TDM_LINK_LIVE;
    peer->link_ms = replica->now_ms;
    peer->heard_ms = replica->now_ms;
    struct tdm_send *send =
        tdm_replica_send(replica, actions, replica->primary_index, TDM_FRAME_READY);
    send->ready.hello_id = peer->hello_id;
    send->ready.last_lsn = replica->last_lsn;
    send->ready.durable_lsn = replica->durable_lsn;
    send->ready.chain_hash = replica->chain_hash;
    tdm_replica_tracef(replica, "READY at lsn %" PRIu64, replica->last_lsn);
    tdm_replica_backup_forward_unsent(replica, actions);
}

/* After the cut: adopt the primary's history if it differs from ours. */
static void backup_sync_history(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(!backup_disk_busy(replica));
    if (!tdm_replica_history_equal(&replica->history, &replica->history_next) ||
        tdm_replica_history_dirty(replica)) {
        replica->history_pending = true;
        actions->history_to_persist = &replica->history_next;
        return;
    }
    backup_sync_done(replica, actions);
}

static bool backup_ignore_start(const struct tdm_replica *replica, uint32_t node_index,
                                const struct tdm_frame *frame)
{
    const struct tdm_frame_start *start = &frame->start;
    const struct tdm_replica_peer *peer = &replica->peers[node_index];
    const char *why = NULL;
    if (node_index != replica->primary_index) {
        why = "not our primary";
    } else if (peer->link != TDM_LINK_STARTED) {
        why = "no HELLO outstanding";
    } else if (start->hello_id != peer->hello_id) {
        why = "answers an older HELLO";
    } else if (frame->epoch < replica->epoch) {
        why = "lower epoch";
    } else if (!tdm_replica_history_valid(&start->history, replica->config.node_count)) {
        why = "malformed epoch history";
    } else if (start->history.entries[start->history.count - 1].epoch != frame->epoch ||
               start->history.entries[start->history.count - 1].primary_index != node_index) {
        why = "history does not name the sender as primary of its epoch";
    } else if (start->fork_lsn > replica->last_lsn) {
        why = "fork point beyond our log";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore START from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void backup_on_start(struct tdm_replica *replica, uint32_t node_index,
                            const struct tdm_frame *frame, struct tdm_actions *actions)
{
    if (backup_ignore_start(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_start *start = &frame->start;
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    tdm_assert(!backup_disk_busy(replica));
    peer->link = TDM_LINK_SYNCING;
    peer->link_ms = replica->now_ms;
    peer->heard_ms = replica->now_ms;
    peer->epoch = frame->epoch;
    peer->role = TDM_ROLE_PRIMARY;
    tdm_replica_history_adopt(replica, &start->history, &replica->history_next);
    if (start->fork_lsn < replica->last_lsn) {
        tdm_replica_tracef(replica, "cut after lsn %" PRIu64 " (last %" PRIu64 ")", start->fork_lsn,
                           replica->last_lsn);
        replica->cut_pending = true;
        actions->cut = true;
        actions->cut_after_lsn = start->fork_lsn;
        return;
    }
    backup_sync_history(replica, actions);
}

/* The checks of one received batch that must continue our log at lsn. */
static const char *backup_batch_problem(const struct tdm_replica *replica, uint64_t frame_epoch,
                                        const struct tdm_frame_batch *batch, uint64_t lsn,
                                        uint64_t last_epoch)
{
    if (batch->lsn_first != lsn) {
        return "gap";
    }
    if (batch->lsn_last < batch->lsn_first || batch->size == 0) {
        return "malformed batch";
    }
    if (batch->epoch > frame_epoch || batch->epoch < last_epoch) {
        return "batch epoch out of order";
    }
    if (tdm_replica_history_epoch_at(&replica->history, batch->lsn_first) != batch->epoch ||
        tdm_replica_history_epoch_at(&replica->history, batch->lsn_last) != batch->epoch) {
        return "batch epoch disagrees with the epoch history";
    }
    return NULL;
}

static bool backup_ignore_append(const struct tdm_replica *replica, uint32_t node_index,
                                 const struct tdm_frame *frame)
{
    const char *why = NULL;
    if (node_index != replica->primary_index) {
        why = "not our primary";
    } else if (replica->peers[node_index].link != TDM_LINK_LIVE) {
        why = "handshake not done";
    } else if (frame->epoch != replica->epoch) {
        why = "other epoch";
    } else if (frame->append.batch_count > TDM_FRAME_BATCHES_MAX) {
        why = "too many batches";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore APPEND from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void backup_on_append(struct tdm_replica *replica, uint32_t node_index,
                             const struct tdm_frame *frame, struct tdm_actions *actions)
{
    if (backup_ignore_append(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_append *append = &frame->append;
    replica->peers[node_index].heard_ms = replica->now_ms;
    replica->commit_lsn = tdm_replica_max(replica->commit_lsn, append->commit_lsn);
    uint32_t first = 0;
    while (first < append->batch_count && append->batches[first].lsn_last <= replica->last_lsn) {
        first++; /* Already written: a duplicate or a resend. */
    }
    uint32_t count = 0;
    uint64_t lsn = replica->last_lsn + 1;
    uint64_t last_epoch = replica->last_epoch;
    while (first + count < append->batch_count) {
        const struct tdm_frame_batch *batch = &append->batches[first + count];
        const char *why = backup_batch_problem(replica, frame->epoch, batch, lsn, last_epoch);
        if (why != NULL) {
            tdm_replica_tracef(replica, "APPEND stops at lsn %" PRIu64 ": %s", lsn, why);
            break;
        }
        lsn = batch->lsn_last + 1;
        last_epoch = batch->epoch;
        count++;
    }
    if (count == 0) {
        return;
    }
    struct tdm_action_write *write = tdm_replica_write_action(replica, actions, TDM_WRITE_RECEIVED);
    write->batches = &append->batches[first];
    write->batch_count = count;
    const struct tdm_frame_batch *last = &append->batches[first + count - 1];
    replica->last_lsn = last->lsn_last;
    replica->last_epoch = last->epoch;
    replica->chain_hash = last->chain_hash;
    tdm_assert(replica->last_lsn == lsn - 1);
    if (TDM_PLANTED_BACKUP_ACK_BEFORE_FDATASYNC) {
        backup_ack_send(replica, actions, replica->last_lsn); /* The planted bug. */
    }
}

static bool backup_ignore_heartbeat(const struct tdm_replica *replica, uint32_t node_index,
                                    const struct tdm_frame *frame)
{
    const char *why = NULL;
    if (node_index != replica->primary_index) {
        why = "not our primary";
    } else if (replica->peers[node_index].link != TDM_LINK_LIVE) {
        why = "handshake not done";
    } else if (frame->epoch != replica->epoch) {
        why = "other epoch";
    } else if (frame->heartbeat.node_count > replica->config.node_count) {
        why = "lag table too long";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore HEARTBEAT from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void backup_on_heartbeat(struct tdm_replica *replica, uint32_t node_index,
                                const struct tdm_frame *frame, struct tdm_actions *actions)
{
    if (backup_ignore_heartbeat(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_heartbeat *heartbeat = &frame->heartbeat;
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    peer->heard_ms = replica->now_ms;
    peer->echo_ms = heartbeat->send_ms;
    peer->last_lsn = heartbeat->last_lsn;
    replica->commit_lsn = tdm_replica_max(replica->commit_lsn, heartbeat->commit_lsn);
    replica->lag_count = heartbeat->node_count;
    memcpy(replica->lags, heartbeat->lags, sizeof(heartbeat->lags[0]) * heartbeat->node_count);
    backup_ack_send(replica, actions, replica->durable_lsn);
    tdm_replica_backup_forward_unsent(replica, actions); /* The primary acts: try again. */
}

static void backup_on_forward_result(struct tdm_replica *replica, uint32_t node_index,
                                     const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_forward_result *result = &frame->forward_result;
    struct tdm_replica_write *write = tdm_replica_write_find(replica, result->request_id);
    const char *why = NULL;
    if (write == NULL ||
        (write->state != TDM_WRITE_FORWARDED && write->state != TDM_WRITE_UNSENT)) {
        why = "no such forwarded write";
    } else if (result->status > 0 || result->status < -20999) {
        why = "status out of range";
    } else if (result->status == 0 &&
               (result->lsn_first == 0 || result->lsn_first > result->lsn_last)) {
        why = "LSN range";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore FORWARD_RESULT from #%u: %s", node_index, why);
        return;
    }
    if (result->status == TANDEM_ENOTPRIMARY || result->status == TANDEM_EBUSY) {
        /* Not taken (not the primary, or not acting yet: it opens its epoch
         * after a restart, or too many writes): send it again at the next
         * HEARTBEAT of an acting primary, until the write's deadline. */
        write->state = TDM_WRITE_UNSENT;
        return;
    }
    tdm_replica_result(actions, write->write_id, result->status, result->lsn_first,
                       result->lsn_last);
    tdm_replica_write_remove(replica, write);
}

static void backup_on_hello(struct tdm_replica *replica, uint32_t node_index,
                            const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_hello *hello = &frame->hello;
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    if (hello->version != TDM_FRAME_VERSION ||
        !tdm_replica_history_valid(&hello->history, replica->config.node_count)) {
        tdm_replica_tracef(replica, "ignore HELLO from #%u: malformed", node_index);
        return;
    }
    peer->role = hello->role;
    peer->epoch = frame->epoch;
    peer->last_lsn = hello->last_lsn;
    /* The primary says hello on a new link and once it acts in its epoch: our
     * HELLO may have been lost or refused before then, so say it again. */
    if (node_index == replica->primary_index &&
        (hello->role == TDM_ROLE_PRIMARY || hello->role == TDM_ROLE_HOLDING) &&
        (peer->link == TDM_LINK_UP || peer->link == TDM_LINK_STARTED) &&
        !backup_disk_busy(replica)) {
        backup_hello_send(replica, actions);
    }
}

static void backup_on_receive(struct tdm_replica *replica, const struct tdm_event *event,
                              struct tdm_actions *actions)
{
    uint32_t node_index = event->receive.node_index;
    const struct tdm_frame *frame = event->receive.frame;
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    switch (frame->type) {
    case TDM_FRAME_HELLO:
        backup_on_hello(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_START:
        backup_on_start(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_APPEND:
        backup_on_append(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_HEARTBEAT:
        backup_on_heartbeat(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_FORWARD_RESULT:
        backup_on_forward_result(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_CHECK:
        tdm_replica_verify_on_check(replica, node_index, frame, actions);
        break;
    case TDM_FRAME_FORWARD: {
        /* Not the primary: the sender's idea of the primary is stale. Not
         * taken, so neither is a later FORWARD on this link, even once this
         * node is promoted, until the sender's oldest write comes again
         * flagged TDM_FORWARD_RESTART (PROTOCOL.md §6). */
        replica->peers[node_index].forward_held = true;
        struct tdm_send *send =
            tdm_replica_send(replica, actions, node_index, TDM_FRAME_FORWARD_RESULT);
        send->forward_result.request_id = frame->forward.request_id;
        send->forward_result.status = TANDEM_ENOTPRIMARY;
        break;
    }
    default:
        tdm_replica_tracef(replica, "ignore frame type %u from #%u: not for a backup",
                           (unsigned)frame->type, node_index);
        break;
    }
}

static void backup_on_persisted(struct tdm_replica *replica, const struct tdm_event *event,
                                struct tdm_actions *actions)
{
    enum tdm_persisted_kind kind = event->persisted.kind;
    if (kind == TDM_PERSISTED_WRITE) {
        /* A write handed to the engine before this node stepped down; its
         * client already has its answer (replica_switch.c). */
        tdm_replica_tracef(replica, "write %" PRIu64 " stored after stepping down",
                           event->persisted.write_id);
        return;
    }
    if (event->persisted.status < 0) {
        tdm_replica_fail(replica, actions, event->persisted.status,
                         kind == TDM_PERSISTED_EPOCHS ? "epoch history persist"
                         : kind == TDM_PERSISTED_CUT  ? "log cut"
                                                      : "log append or fdatasync");
        return;
    }
    if (kind == TDM_PERSISTED_EPOCHS && tdm_replica_switch_backup_persisted(replica, actions)) {
        return; /* A takeover or a failover: this node is the primary now. */
    }
    if (kind == TDM_PERSISTED_CUT) {
        tdm_assert(replica->cut_pending);
        tdm_assert(event->persisted.lsn_last <= replica->last_lsn);
        replica->cut_pending = false;
        replica->last_lsn = event->persisted.lsn_last;
        replica->last_epoch = event->persisted.last_epoch;
        replica->chain_hash = event->persisted.chain_hash;
        replica->durable_lsn = tdm_replica_min(replica->durable_lsn, replica->last_lsn);
        backup_sync_history(replica, actions);
    } else if (kind == TDM_PERSISTED_EPOCHS) {
        tdm_assert(replica->history_pending);
        replica->history_pending = false;
        replica->history = replica->history_next;
        replica->epoch = replica->history.entries[replica->history.count - 1].epoch;
        replica->primary_index = replica->history.entries[replica->history.count - 1].primary_index;
        tdm_replica_history_persisted(replica);
        tdm_replica_failover_after_persisted(replica, actions); /* FENCED, if owed. */
        backup_sync_done(replica, actions);
    } else {
        tdm_assert(kind == TDM_PERSISTED_LOG);
        tdm_assert(event->persisted.lsn_last <= replica->last_lsn);
        if (event->persisted.lsn_last > replica->durable_lsn) {
            replica->durable_lsn = event->persisted.lsn_last;
        }
        if (replica->peers[replica->primary_index].link == TDM_LINK_LIVE) {
            backup_ack_send(replica, actions, replica->durable_lsn);
        }
    }
}

static void backup_on_submit(struct tdm_replica *replica, const struct tdm_event *event,
                             struct tdm_actions *actions)
{
    tdm_assert(event->submit.write_id < TDM_REPLICA_WRITE_ID_FORWARDED);
    tdm_assert(event->submit.record_count >= 1);
    struct tdm_replica_write *write =
        tdm_replica_write_add(replica, event->submit.write_id, TDM_WRITE_UNSENT);
    if (write == NULL) {
        tdm_replica_result(actions, event->submit.write_id, TANDEM_EBUSY, 0, 0);
        return;
    }
    write->record_count = event->submit.record_count;
    write->size = event->submit.size;
    write->deadline_ms =
        replica->now_ms + replica->config.write_deadline_ms + replica->config.handshake_ms;
    backup_forward_new(replica, actions, write);
}

/* The local log grew by a write handed to the engine before this node
 * stepped down (replica_switch.c): what the handshake said is stale. */
static void backup_on_appended(struct tdm_replica *replica, const struct tdm_event *event,
                               struct tdm_actions *actions)
{
    tdm_assert(event->appended.lsn_last > replica->last_lsn);
    tdm_assert(event->appended.epoch <= replica->epoch);
    replica->last_lsn = event->appended.lsn_last;
    replica->last_epoch = event->appended.epoch;
    replica->chain_hash = event->appended.chain_hash;
    tdm_replica_tracef(replica, "own batch to lsn %" PRIu64 " written after stepping down",
                       replica->last_lsn);
    struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    if (peer->link != TDM_LINK_DOWN && !backup_disk_busy(replica)) {
        backup_hello_send(replica, actions); /* Handshake again from here. */
    }
}

static void backup_on_peer(struct tdm_replica *replica, const struct tdm_event *event,
                           struct tdm_actions *actions)
{
    uint32_t node_index = event->peer.node_index;
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    struct tdm_replica_peer *peer = &replica->peers[node_index];
    peer->link_ms = replica->now_ms;
    peer->hello_id = 0;
    peer->forward_held = false; /* A new link starts with the sender's oldest write. */
    if (event->type == TDM_EVENT_PEER_DOWN) {
        peer->link = TDM_LINK_DOWN;
        tdm_replica_forward_link_lost(replica, actions, node_index);
        return;
    }
    peer->link = TDM_LINK_UP;
    if (node_index != replica->primary_index) {
        return;
    }
    tdm_replica_backup_forward_unsent(replica, actions);
    if (!backup_disk_busy(replica)) {
        backup_hello_send(replica, actions);
    }
}

static void backup_timers(struct tdm_replica *replica, struct tdm_actions *actions)
{
    uint64_t now = replica->now_ms;
    struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    uint64_t handshake_ms = replica->config.handshake_ms;
    if (!backup_disk_busy(replica)) {
        bool retry = false;
        if (peer->link == TDM_LINK_STARTED && now >= peer->link_ms + handshake_ms) {
            retry = true; /* HELLO or START lost. */
        } else if (peer->link == TDM_LINK_LIVE && now >= peer->heard_ms + 2 * handshake_ms) {
            retry = true; /* READY lost, or the primary stopped talking to us. */
        } else if (peer->link == TDM_LINK_UP && now >= peer->link_ms + handshake_ms) {
            retry = true; /* No HELLO yet: held back by a failover attempt (§8.2). */
        }
        if (retry) {
            if (peer->link != TDM_LINK_UP) {
                tdm_replica_tracef(replica, "handshake with #%u again", replica->primary_index);
            }
            backup_hello_send(replica, actions);
        }
    }
    for (uint32_t i = 0; i < replica->write_count;) {
        struct tdm_replica_write *write = &replica->writes[i];
        if (now >= write->deadline_ms) {
            tdm_replica_result(actions, write->write_id, TANDEM_ECOPIES, 0, 0);
            tdm_replica_write_remove(replica, write);
        } else {
            /* A write forwarded on a link that dropped failed at PEER_DOWN. */
            tdm_assert(!tdm_replica_forward_lost(replica, write));
            i++;
        }
    }
}

void tdm_replica_backup_step(struct tdm_replica *replica, const struct tdm_event *event,
                             struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_BACKUP);
    tdm_assert(replica->primary_index != replica->config.self_index);
    switch (event->type) {
    case TDM_EVENT_TICK:
        break;
    case TDM_EVENT_PEER_UP:
    case TDM_EVENT_PEER_DOWN:
        backup_on_peer(replica, event, actions);
        break;
    case TDM_EVENT_RECEIVE:
        backup_on_receive(replica, event, actions);
        break;
    case TDM_EVENT_APPENDED:
        backup_on_appended(replica, event, actions);
        break;
    case TDM_EVENT_PERSISTED:
        backup_on_persisted(replica, event, actions);
        break;
    case TDM_EVENT_SUBMIT:
        backup_on_submit(replica, event, actions);
        break;
    case TDM_EVENT_CHAIN_READ:
        tdm_replica_verify_on_read(replica, event, actions);
        break;
    case TDM_EVENT_SHIP_FAILED:
        /* A send of the primary this node was until this event: moot. */
        tdm_replica_tracef(replica, "ignore SHIP_FAILED: not the primary");
        break;
    case TDM_EVENT_SWITCHOVER:
    case TDM_EVENT_FAILOVER:
    case TDM_EVENT__COUNT:
        tdm_unreachable(); /* Commands: replica_switch.c. */
    }
    if (replica->role == TDM_ROLE_BACKUP) {
        backup_timers(replica, actions);
    }
}

uint64_t tdm_replica_backup_deadline(const struct tdm_replica *replica)
{
    tdm_assert(replica->role == TDM_ROLE_BACKUP);
    const struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    uint64_t deadline = UINT64_MAX;
    if (!backup_disk_busy(replica)) {
        if (peer->link == TDM_LINK_STARTED) {
            deadline = peer->link_ms + replica->config.handshake_ms;
        } else if (peer->link == TDM_LINK_UP) {
            /* Past when the link came up during disk work: the next tick. */
            deadline =
                tdm_replica_max(peer->link_ms + replica->config.handshake_ms, replica->now_ms + 1);
        } else if (peer->link == TDM_LINK_LIVE) {
            deadline = peer->heard_ms + 2 * replica->config.handshake_ms;
        }
    }
    tdm_assert(deadline > replica->now_ms);
    return deadline;
}

void tdm_replica_backup_invariants(const struct tdm_replica *replica)
{
    tdm_assert(replica->primary_index != replica->config.self_index);
    tdm_assert(replica->commit_lsn <= UINT64_MAX);
    const struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    if (peer->link == TDM_LINK_LIVE) {
        tdm_assert(!backup_disk_busy(replica));
        /* LIVE in an epoch means the log agrees with the history of it. */
        tdm_assert(replica->last_lsn == 0 ||
                   tdm_replica_history_epoch_at(&replica->history, replica->last_lsn) ==
                       replica->last_epoch);
    }
    for (uint32_t i = 0; i < replica->write_count; i++) {
        const struct tdm_replica_write *write = &replica->writes[i];
        tdm_assert(write->state == TDM_WRITE_UNSENT || write->state == TDM_WRITE_FORWARDED);
        tdm_assert(write->origin_index == replica->config.self_index);
    }
}
