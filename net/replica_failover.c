/* net/replica_failover.c: failover, the promotion of a backup when the
 * primary is gone (docs/PROTOCOL.md §8.2).
 *
 * Happy path on the target T (a backup of the old primary P):
 * 1. FAILOVER: T checks what it knows itself: it is a backup, no other
 *    switchover or failover runs here, min_copies >= 2, and P is silent: the
 *    link down for failover_silence_ms and no frame from P for as long.
 * 2. Probe: FENCE(PROBE) to every node but T (P too: if it answers, its
 *    epoch counts for the new one's number); each answers FENCED with its
 *    role, epoch, epoch of its last batch, last and durable LSN, the commit
 *    LSN it heard of, the chain hash at its last LSN and whether its own
 *    primary still answers it. A probe changes nothing anywhere.
 * 3. Decide, once every backup answered (and P, if linked) or after
 *    failover_fence_ms: refuse if a backup did not answer, if one still
 *    hears P (or is not a backup), if P answered as a primary, or if a
 *    backup is ahead of T: a later last epoch, or the same with more durable
 *    LSNs.
 *    --dry-run stops here and reports the table, the epoch a promotion would
 *    open and the LSNs it could lose: everything acknowledged or durable
 *    somewhere beyond T's durable LSN.
 * 4. Fence: F = tdm_replica_epoch_next(highest epoch seen, T); FENCE(F,
 *    history + (F, T, T's last LSN + 1, cause, time, risk)) to every node,
 *    carrying the state it answered. A node moves only if that state is
 *    unchanged (so P acknowledged nothing through it since the probe) and it
 *    still does not hear P: it stops acknowledging P at once, cuts into
 *    quarantine any tail beyond T's last LSN (which the new history would
 *    otherwise vouch for), persists the history, and only then answers
 *    FENCED.
 * 5. Every node fenced: T persists the same history and acts as primary of F.
 *
 * Why no acknowledged write is lost (without --force): an acknowledged write
 * was durable on P and on at least one backup (min_copies >= 2). Every
 * backup answered the probe, and T was at least as far as each of them, in
 * the same lineage (the last epoch first), so T's log holds every write a
 * backup held then. After the probe P could acknowledge a write only through
 * a backup whose durable LSN then grows: that backup refuses its fence
 * (STATE_CHANGED) and T does not act. Once fenced, a backup takes nothing
 * from P (its epoch F is above P's). P itself, if it restarts, opens a new
 * epoch only when a backup of its own says HELLO (PROTOCOL.md §4): fenced
 * nodes follow T and never do. When P returns it sees T's higher epoch, follows
 * T, and the fork point cuts its divergent tail into quarantine.
 *
 * Failure modes:
 * - a rule is broken at the probe: REFUSED, nothing changed anywhere;
 * - a node refuses its fence or does not answer in time: ABANDONED; the nodes
 *   already fenced hold an epoch whose primary never acts. The acting primary
 *   moves above it once T, its backup again, proves the attempt is over
 *   (replica_switch.c, "reopen"), and they follow it;
 * - P acts as a primary towards T meanwhile (APPEND, HEARTBEAT, START, HELLO
 *   as primary or holding): the attempt ends (PRIMARY_ALIVE); P back as a
 *   backup or restarting cannot acknowledge anything and does not stop it;
 * - --force skips the rules of step 3, fences whom it reaches and records in
 *   the new epoch's entry the LSNs it may have lost.
 *
 * Close: nothing to release. */
#include <inttypes.h>
#include <string.h>

#include "engine/base/assert.h"
#include "net/replica.h"
#include "net/replica_internal.h"

static uint64_t failover_silence_ms(const struct tdm_replica *replica)
{
    uint64_t ms = replica->config.failover_silence_ms;
    return ms != 0 ? ms : 2 * replica->config.handshake_ms;
}

static uint64_t failover_fence_ms(const struct tdm_replica *replica)
{
    uint64_t ms = replica->config.failover_fence_ms;
    return ms != 0 ? ms : TDM_FAILOVER_FENCE_MS_DEFAULT;
}

/* A backup still hears its primary: connected, or a frame from it lately. */
static bool failover_primary_seen(const struct tdm_replica *replica)
{
    const struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    tdm_assert(replica->primary_index != replica->config.self_index);
    if (peer->link != TDM_LINK_DOWN) {
        return true;
    }
    uint64_t silence = failover_silence_ms(replica);
    return replica->now_ms < peer->link_ms + silence ||
           (peer->heard_ms != 0 && replica->now_ms < peer->heard_ms + silence);
}

static void failover_self_row(const struct tdm_replica *replica, struct tdm_report_node *row)
{
    memset(row, 0, sizeof(*row));
    row->answered = true;
    row->role = (uint8_t)replica->role;
    row->epoch = replica->epoch;
    row->last_epoch = replica->last_epoch;
    row->last_lsn = replica->last_lsn;
    row->durable_lsn = replica->durable_lsn;
    row->commit_lsn = replica->commit_lsn;
}

/* The nodes a failover asks: all but this one and the old primary. */
static bool failover_asks(const struct tdm_replica *replica, uint32_t node_index)
{
    return node_index != replica->config.self_index && node_index != replica->fo.old_index;
}

static struct tdm_report *failover_report(struct tdm_replica *replica, struct tdm_actions *actions,
                                          enum tdm_report_outcome outcome, uint32_t refusal,
                                          uint32_t node_index)
{
    struct tdm_replica_failover *fo = &replica->fo;
    struct tdm_report *report =
        tdm_replica_report(actions, TDM_REPORT_FAILOVER, outcome, fo->request_id);
    report->refusal = refusal;
    report->target_index = replica->config.self_index;
    report->node_index = node_index;
    report->epoch = fo->new_epoch;
    report->lsn = replica->durable_lsn;
    report->risk_lsn_first = fo->risk_lsn_first;
    report->risk_lsn_last = fo->risk_lsn_last;
    report->node_count = replica->config.node_count;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        report->nodes[i] = fo->nodes[i];
    }
    failover_self_row(replica, &report->nodes[replica->config.self_index]);
    return report;
}

/* Why this node cannot start a failover at all, or 0. */
static uint32_t failover_refusal_local(const struct tdm_replica *replica, bool force)
{
    if (replica->role == TDM_ROLE_FAILED) {
        return TDM_REFUSAL_FAILED;
    }
    if (replica->sw.phase != TDM_SWITCH_IDLE || replica->fo.phase != TDM_FAILOVER_IDLE) {
        return TDM_REFUSAL_IN_PROGRESS;
    }
    if (replica->role != TDM_ROLE_BACKUP) {
        return TDM_REFUSAL_NOT_BACKUP;
    }
    if (replica->history_pending || replica->cut_pending || replica->fo.answer_epoch != 0) {
        return TDM_REFUSAL_BUSY;
    }
    if (!force && replica->config.min_copies < 2) {
        return TDM_REFUSAL_SINGLE_COPY;
    }
    if (!force && failover_primary_seen(replica)) {
        return TDM_REFUSAL_PRIMARY_ALIVE;
    }
    return 0;
}

static void failover_probe_send(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        /* The old primary too: if it answers it is alive (and its epoch
         * counts for the new one's number). */
        if (i != replica->config.self_index && !fo->nodes[i].answered) {
            struct tdm_send *send = tdm_replica_send(replica, actions, i, TDM_FRAME_FENCE);
            send->fence.fence_id = fo->fence_id;
            send->fence.flags = (uint8_t)(TDM_FENCE_PROBE | (fo->force ? TDM_FENCE_FORCE : 0));
        }
    }
    fo->resend_ms = replica->now_ms + replica->config.retransmit_ms;
}

void tdm_replica_failover_on_command(struct tdm_replica *replica, const struct tdm_event *event,
                                     struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    bool force = event->failover.force;
    bool dry_run = event->failover.dry_run;
    uint32_t refusal = failover_refusal_local(replica, force);
    bool probe_anyway =
        dry_run && (refusal == TDM_REFUSAL_PRIMARY_ALIVE || refusal == TDM_REFUSAL_SINGLE_COPY);
    if (refusal != 0 && !probe_anyway) {
        tdm_replica_tracef(replica, "failover %" PRIu64 " refused: %s", event->failover.request_id,
                           tdm_replica_refusal_name(refusal));
        struct tdm_report *report = tdm_replica_report(
            actions, TDM_REPORT_FAILOVER, TDM_OUTCOME_REFUSED, event->failover.request_id);
        report->refusal = refusal;
        report->target_index = replica->config.self_index;
        report->node_index = replica->role == TDM_ROLE_FAILED ? UINT32_MAX : replica->primary_index;
        return;
    }
    uint64_t fence_id = fo->fence_id + 1;
    memset(fo, 0, sizeof(*fo));
    fo->phase = TDM_FAILOVER_PROBE;
    fo->request_id = event->failover.request_id;
    fo->force = force;
    fo->dry_run = dry_run;
    fo->fence_id = fence_id;
    fo->old_index = replica->primary_index;
    fo->deadline_ms = replica->now_ms + failover_fence_ms(replica);
    failover_self_row(replica, &fo->nodes[replica->config.self_index]);
    tdm_replica_tracef(replica, "failover %" PRIu64 "%s%s: probe the other nodes", fo->request_id,
                       force ? " (forced)" : "", dry_run ? " (dry run)" : "");
    if (!dry_run) {
        struct tdm_report *report =
            tdm_replica_report(actions, TDM_REPORT_FAILOVER, TDM_OUTCOME_STARTED, fo->request_id);
        report->target_index = replica->config.self_index;
    }
    failover_probe_send(replica, actions);
}

/* End the attempt: REFUSED if nothing moved, else ABANDONED. */
static void failover_stop(struct tdm_replica *replica, struct tdm_actions *actions,
                          uint32_t refusal, uint32_t node_index)
{
    struct tdm_replica_failover *fo = &replica->fo;
    tdm_assert(fo->phase == TDM_FAILOVER_PROBE || fo->phase == TDM_FAILOVER_FENCE);
    bool moved = false;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        moved = moved || fo->fenced[i];
    }
    tdm_replica_tracef(replica, "failover %" PRIu64 " %s: %s", fo->request_id,
                       moved ? "abandoned" : "refused", tdm_replica_refusal_name(refusal));
    failover_report(replica, actions, moved ? TDM_OUTCOME_ABANDONED : TDM_OUTCOME_REFUSED, refusal,
                    node_index);
    fo->phase = TDM_FAILOVER_IDLE;
    /* Back to the old primary, if it is there: the handshake starts over. */
    if (replica->role == TDM_ROLE_BACKUP &&
        replica->peers[replica->primary_index].link == TDM_LINK_UP && !replica->history_pending &&
        !replica->cut_pending) {
        tdm_replica_backup_hello(replica, actions);
    }
}

void tdm_replica_failover_end(struct tdm_replica *replica, struct tdm_actions *actions,
                              uint32_t refusal)
{
    if (replica->fo.phase == TDM_FAILOVER_PROBE || replica->fo.phase == TDM_FAILOVER_FENCE) {
        failover_stop(replica, actions, refusal, UINT32_MAX);
    }
}

/* True if a is ahead of b: a later last epoch, or more durable in the same. */
static bool failover_ahead(const struct tdm_report_node *a, const struct tdm_report_node *b)
{
    if (a->last_epoch != b->last_epoch) {
        return a->last_epoch > b->last_epoch;
    }
    return a->durable_lsn > b->durable_lsn;
}

/* The probe's verdict: the first rule a promotion would break (0: none), the
 * node it is about, the LSNs at risk and the epoch to open. */
static uint32_t failover_verdict(struct tdm_replica *replica, uint32_t *node_index)
{
    struct tdm_replica_failover *fo = &replica->fo;
    const struct tdm_report_node *self = &fo->nodes[replica->config.self_index];
    uint32_t refusal = failover_refusal_local(replica, fo->force);
    if (refusal == TDM_REFUSAL_IN_PROGRESS) {
        refusal = 0; /* Our own attempt. */
    }
    *node_index = refusal != 0 ? fo->old_index : UINT32_MAX;
    uint64_t top = tdm_replica_max(replica->commit_lsn, self->durable_lsn);
    uint64_t epoch = replica->epoch;
    const struct tdm_report_node *old = &fo->nodes[fo->old_index];
    if (old->answered) {
        epoch = tdm_replica_max(epoch, old->epoch);
    }
    /* Back as a backup, or restarted and waiting for one, it cannot
     * acknowledge: fenced backups neither ack nor join it (§8.2). */
    if (old->answered && old->role != TDM_ROLE_BACKUP && old->role != TDM_ROLE_RECOVERING) {
        if (refusal == 0) {
            refusal = TDM_REFUSAL_PRIMARY_ALIVE;
            *node_index = fo->old_index;
        }
    }
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        const struct tdm_report_node *row = &fo->nodes[i];
        if (!failover_asks(replica, i)) {
            continue;
        }
        uint32_t why = 0;
        if (!row->answered) {
            why = TDM_REFUSAL_UNREACHABLE;
        } else if (row->primary_seen || row->role != TDM_ROLE_BACKUP) {
            why = TDM_REFUSAL_PRIMARY_ALIVE;
        } else if (failover_ahead(row, self)) {
            why = TDM_REFUSAL_NOT_HIGHEST;
        }
        if (row->answered) {
            top = tdm_replica_max(top, tdm_replica_max(row->commit_lsn, row->durable_lsn));
            epoch = tdm_replica_max(epoch, row->epoch);
        }
        if (refusal == 0 && why != 0) {
            refusal = why;
            *node_index = i;
        }
    }
    fo->risk_lsn_first = top > self->durable_lsn ? self->durable_lsn + 1 : 0;
    fo->risk_lsn_last = top > self->durable_lsn ? top : 0;
    fo->new_epoch =
        tdm_replica_epoch_next(epoch, replica->config.self_index, replica->config.node_count);
    return refusal;
}

static void failover_fence_send(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        const struct tdm_report_node *row = &fo->nodes[i];
        if (!failover_asks(replica, i) || !row->answered || fo->fenced[i]) {
            continue;
        }
        struct tdm_send *send = tdm_replica_send(replica, actions, i, TDM_FRAME_FENCE);
        send->fence.fence_id = fo->fence_id;
        send->fence.flags = (uint8_t)(fo->force ? TDM_FENCE_FORCE : 0);
        send->fence.new_epoch = fo->new_epoch;
        send->fence.expect_epoch = row->epoch;
        send->fence.expect_last_epoch = row->last_epoch;
        send->fence.expect_durable_lsn = row->durable_lsn;
        actions->history_new = &replica->history_offer;
    }
    fo->resend_ms = replica->now_ms + replica->config.retransmit_ms;
}

static void failover_decide(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    uint32_t node_index = UINT32_MAX;
    bool force = fo->force;
    fo->force = false; /* The rules' verdict, which --force then overrides. */
    uint32_t refusal = failover_verdict(replica, &node_index);
    fo->force = force;
    if (fo->dry_run) {
        tdm_replica_tracef(replica, "failover %" PRIu64 " dry run: %s", fo->request_id,
                           refusal == 0 ? "would promote" : tdm_replica_refusal_name(refusal));
        failover_report(replica, actions, TDM_OUTCOME_DRY_RUN, refusal, node_index);
        fo->phase = TDM_FAILOVER_IDLE;
        return;
    }
    if (refusal != 0 && !force) {
        failover_stop(replica, actions, refusal, node_index);
        return;
    }
    replica->history_offer = replica->history;
    struct tdm_epoch_entry entry =
        tdm_replica_entry_make(replica, fo->new_epoch, replica->config.self_index,
                               fo->force ? TDM_EPOCH_CAUSE_FORCED : TDM_EPOCH_CAUSE_FAILOVER);
    entry.risk_lsn_first = fo->risk_lsn_first;
    entry.risk_lsn_last = fo->risk_lsn_last;
    tdm_replica_history_push(&replica->history_offer, &entry);
    /* From now on this node takes nothing from the old primary. */
    struct tdm_replica_peer *old = &replica->peers[fo->old_index];
    if (old->link != TDM_LINK_DOWN) {
        old->link = TDM_LINK_UP;
    }
    fo->phase = TDM_FAILOVER_FENCE;
    fo->deadline_ms = replica->now_ms + failover_fence_ms(replica);
    tdm_replica_tracef(replica, "failover %" PRIu64 ": fence the other nodes into epoch %" PRIu64,
                       fo->request_id, fo->new_epoch);
    failover_fence_send(replica, actions);
}

/* Every node fenced (or, forced, the bound passed): persist, then act. */
static void failover_persist(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    tdm_assert(fo->phase == TDM_FAILOVER_FENCE);
    tdm_assert(!replica->history_pending);
    replica->history_next = replica->history_offer;
    tdm_assert(replica->history_next.entries[replica->history_next.count - 1].lsn_first ==
               replica->last_lsn + 1);
    replica->history_pending = true;
    actions->history_to_persist = &replica->history_next;
    fo->phase = TDM_FAILOVER_PERSIST;
}

void tdm_replica_failover_promote(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    tdm_assert(fo->phase == TDM_FAILOVER_PERSIST);
    tdm_assert(replica->primary_index == replica->config.self_index);
    tdm_replica_primary_become(replica);
    fo->phase = TDM_FAILOVER_IDLE;
    tdm_replica_tracef(replica, "failover %" PRIu64 ": act as primary of epoch %" PRIu64,
                       fo->request_id, replica->epoch);
    tdm_replica_primary_act(replica, actions);
    failover_report(replica, actions, TDM_OUTCOME_DONE, 0, UINT32_MAX);
}

static void failover_fenced_send(struct tdm_replica *replica, struct tdm_actions *actions,
                                 uint32_t node_index, uint64_t fence_id, uint32_t refusal)
{
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_FENCED);
    struct tdm_frame_fenced *fenced = &send->fenced;
    fenced->fence_id = fence_id;
    fenced->refusal = (uint8_t)refusal;
    fenced->role = (uint8_t)replica->role;
    bool backup = replica->role == TDM_ROLE_BACKUP;
    fenced->flags = backup && replica->primary_index != node_index && failover_primary_seen(replica)
                        ? TDM_FENCED_PRIMARY_SEEN
                        : 0;
    fenced->epoch = replica->epoch;
    fenced->last_epoch = replica->last_epoch;
    fenced->last_lsn = replica->last_lsn;
    fenced->durable_lsn = replica->durable_lsn;
    fenced->commit_lsn = replica->commit_lsn;
    fenced->chain_hash = replica->chain_hash;
}

/* Why this node refuses to move into the FENCE's epoch, or 0. */
static uint32_t failover_fence_refusal(const struct tdm_replica *replica,
                                       const struct tdm_frame_fence *fence)
{
    if (fence->new_epoch <= replica->epoch) {
        return TDM_REFUSAL_EPOCH_AHEAD;
    }
    if (replica->role != TDM_ROLE_BACKUP) {
        return TDM_REFUSAL_PRIMARY_ALIVE;
    }
    if (replica->sw.phase != TDM_SWITCH_IDLE || replica->fo.phase != TDM_FAILOVER_IDLE) {
        return TDM_REFUSAL_IN_PROGRESS;
    }
    if (replica->epoch != fence->expect_epoch || replica->last_epoch != fence->expect_last_epoch ||
        replica->durable_lsn != fence->expect_durable_lsn) {
        return TDM_REFUSAL_STATE_CHANGED;
    }
    if ((fence->flags & TDM_FENCE_FORCE) == 0 && failover_primary_seen(replica)) {
        return TDM_REFUSAL_PRIMARY_ALIVE;
    }
    return 0;
}

void tdm_replica_failover_on_fence(struct tdm_replica *replica, uint32_t node_index,
                                   const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_fence *fence = &frame->fence;
    struct tdm_replica_failover *fo = &replica->fo;
    if (replica->role == TDM_ROLE_FAILED) {
        return;
    }
    if ((fence->flags & TDM_FENCE_PROBE) != 0) {
        bool primary = replica->role != TDM_ROLE_BACKUP;
        failover_fenced_send(replica, actions, node_index, fence->fence_id,
                             primary ? TDM_REFUSAL_PRIMARY_ALIVE : 0);
        return;
    }
    const struct tdm_epoch_history *history = &fence->history;
    if (!tdm_replica_history_valid(history, replica->config.node_count) ||
        history->entries[history->count - 1].epoch != fence->new_epoch ||
        history->entries[history->count - 1].primary_index != node_index) {
        tdm_replica_tracef(replica, "ignore FENCE from #%u: malformed epoch history", node_index);
        return;
    }
    if (fo->answer_epoch == fence->new_epoch && fo->answer_index == node_index) {
        return; /* Persisting: FENCED follows. */
    }
    if (replica->epoch == fence->new_epoch && replica->primary_index == node_index) {
        failover_fenced_send(replica, actions, node_index, fence->fence_id, 0); /* Again. */
        return;
    }
    uint32_t refusal = failover_fence_refusal(replica, fence);
    if (refusal == 0 && (replica->history_pending || replica->cut_pending)) {
        return; /* A handshake's disk work: the FENCE comes again. */
    }
    if (refusal != 0) {
        tdm_replica_tracef(replica, "refuse FENCE from #%u: %s", node_index,
                           tdm_replica_refusal_name(refusal));
        failover_fenced_send(replica, actions, node_index, fence->fence_id, refusal);
        return;
    }
    /* Stop acknowledging the old primary now, then persist. */
    struct tdm_replica_peer *old = &replica->peers[replica->primary_index];
    if (old->link != TDM_LINK_DOWN) {
        old->link = TDM_LINK_UP;
    }
    fo->answer_index = node_index;
    fo->answer_id = fence->fence_id;
    fo->answer_epoch = fence->new_epoch;
    tdm_replica_history_adopt(replica, history, &replica->history_next);
    /* As in a handshake (PROTOCOL.md §5.3), a tail beyond the target's log is
     * cut first, so that the history persisted never vouches for it. */
    uint64_t target_last = history->entries[history->count - 1].lsn_first - 1;
    uint64_t fork = tdm_replica_fork_point(history, target_last, &replica->history,
                                           replica->last_lsn, replica->last_epoch);
    tdm_replica_tracef(replica, "fenced by #%u into epoch %" PRIu64, node_index, fence->new_epoch);
    if (fork < replica->last_lsn) {
        tdm_replica_tracef(replica, "cut after lsn %" PRIu64 " (last %" PRIu64 ")", fork,
                           replica->last_lsn);
        replica->cut_pending = true;
        actions->cut = true;
        actions->cut_after_lsn = fork;
        return; /* Then the history, then FENCED (replica_backup.c). */
    }
    replica->history_pending = true;
    actions->history_to_persist = &replica->history_next;
}

/* A backup's history is durable: the FENCED it owes, if any. */
void tdm_replica_failover_after_persisted(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    if (fo->answer_epoch != 0 && !replica->history_pending) {
        if (replica->epoch == fo->answer_epoch) {
            failover_fenced_send(replica, actions, fo->answer_index, fo->answer_id, 0);
        }
        fo->answer_epoch = 0;
    }
}

static void failover_probe_answer(struct tdm_replica *replica, uint32_t node_index,
                                  const struct tdm_frame_fenced *fenced)
{
    struct tdm_report_node *row = &replica->fo.nodes[node_index];
    if (fenced->refusal == TDM_REFUSAL_BUSY) {
        return; /* Asked again at the next resend. */
    }
    row->answered = true;
    row->role = fenced->role;
    row->primary_seen = (fenced->flags & TDM_FENCED_PRIMARY_SEEN) != 0;
    row->refusal = fenced->refusal;
    row->epoch = fenced->epoch;
    row->last_epoch = fenced->last_epoch;
    row->last_lsn = fenced->last_lsn;
    row->durable_lsn = fenced->durable_lsn;
    row->commit_lsn = fenced->commit_lsn;
}

void tdm_replica_failover_on_fenced(struct tdm_replica *replica, uint32_t node_index,
                                    const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_fenced *fenced = &frame->fenced;
    struct tdm_replica_failover *fo = &replica->fo;
    if ((fo->phase != TDM_FAILOVER_PROBE && fo->phase != TDM_FAILOVER_FENCE) ||
        fenced->fence_id != fo->fence_id || node_index == replica->config.self_index ||
        (fo->phase == TDM_FAILOVER_FENCE && !failover_asks(replica, node_index)) ||
        fenced->durable_lsn > fenced->last_lsn || fenced->refusal >= TDM_REFUSAL__COUNT) {
        tdm_replica_tracef(replica, "ignore FENCED from #%u: no such fence", node_index);
        return;
    }
    if (fo->phase == TDM_FAILOVER_PROBE) {
        failover_probe_answer(replica, node_index, fenced);
        return;
    }
    if (fenced->refusal == 0 && fenced->epoch == fo->new_epoch) {
        fo->fenced[node_index] = true;
        return;
    }
    if (fenced->refusal == TDM_REFUSAL_BUSY || fenced->refusal == 0) {
        return;
    }
    if (fo->force && fenced->refusal != TDM_REFUSAL_EPOCH_AHEAD) {
        fo->nodes[node_index].refusal = fenced->refusal;
        fo->nodes[node_index].answered = false; /* Not fenced; not asked again. */
        return;
    }
    failover_stop(replica, actions, fenced->refusal, node_index);
}

/* The old primary acting as one ends an unforced attempt. */
void tdm_replica_failover_observe(struct tdm_replica *replica, const struct tdm_event *event,
                                  struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    if ((fo->phase != TDM_FAILOVER_PROBE && fo->phase != TDM_FAILOVER_FENCE) || fo->force) {
        return;
    }
    if (event->type != TDM_EVENT_RECEIVE || event->receive.node_index != fo->old_index) {
        return;
    }
    /* It acts as a primary (ships, or says so): it could still acknowledge
     * writes. Back as a backup or restarting it cannot, without a backup: the
     * fences (state unchanged since the probe) see to that. */
    const struct tdm_frame *frame = event->receive.frame;
    bool acting = frame->type == TDM_FRAME_APPEND || frame->type == TDM_FRAME_HEARTBEAT ||
                  frame->type == TDM_FRAME_START ||
                  (frame->type == TDM_FRAME_HELLO && (frame->hello.role == TDM_ROLE_PRIMARY ||
                                                      frame->hello.role == TDM_ROLE_HOLDING));
    if (acting) {
        failover_stop(replica, actions, TDM_REFUSAL_PRIMARY_ALIVE, fo->old_index);
    }
}

static bool failover_all(const struct tdm_replica *replica, bool fenced)
{
    const struct tdm_replica_failover *fo = &replica->fo;
    if (!fenced && !fo->nodes[fo->old_index].answered &&
        replica->peers[fo->old_index].link != TDM_LINK_DOWN) {
        return false; /* Linked (forced): its epoch counts; wait for it or the bound. */
    }
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        if (!failover_asks(replica, i)) {
            continue;
        }
        if (fenced ? (fo->nodes[i].answered && !fo->fenced[i]) : !fo->nodes[i].answered) {
            return false;
        }
    }
    return true;
}

void tdm_replica_failover_after_step(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_failover *fo = &replica->fo;
    uint64_t now = replica->now_ms;
    bool disk_busy = replica->history_pending || replica->cut_pending;
    if (fo->phase == TDM_FAILOVER_PROBE) {
        if ((failover_all(replica, false) || now >= fo->deadline_ms) && !disk_busy) {
            failover_decide(replica, actions);
        } else if (now >= fo->resend_ms) {
            failover_probe_send(replica, actions);
        }
    }
    if (fo->phase == TDM_FAILOVER_FENCE) {
        if (failover_all(replica, true) && !replica->history_pending) {
            failover_persist(replica, actions);
        } else if (now >= fo->deadline_ms && !fo->force) {
            uint32_t missing = UINT32_MAX;
            for (uint32_t i = 0; i < replica->config.node_count; i++) {
                if (failover_asks(replica, i) && fo->nodes[i].answered && !fo->fenced[i]) {
                    missing = i;
                }
            }
            failover_stop(replica, actions, TDM_REFUSAL_UNREACHABLE, missing);
        } else if (now >= fo->deadline_ms && !replica->history_pending) {
            failover_persist(replica, actions); /* Forced: with whom it reached. */
        } else if (now >= fo->resend_ms) {
            failover_fence_send(replica, actions);
        }
    }
}

uint64_t tdm_replica_failover_deadline(const struct tdm_replica *replica)
{
    const struct tdm_replica_failover *fo = &replica->fo;
    if (fo->phase == TDM_FAILOVER_PROBE || fo->phase == TDM_FAILOVER_FENCE) {
        /* Past while disk work finishes: its completion steps us anyway. */
        return tdm_replica_max(tdm_replica_min(fo->deadline_ms, fo->resend_ms),
                               replica->now_ms + 1);
    }
    return UINT64_MAX;
}
