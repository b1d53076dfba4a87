/* net/replica_switch.c: switchover, following a new primary, and the epoch
 * numbers every new epoch takes (docs/PROTOCOL.md §4, §8.1, §8.3).
 *
 * Happy path of a switchover, old primary P (epoch E, last LSN L) to target T:
 * 1. SWITCHOVER: P checks the target (known, not itself, LIVE, lag within
 *    switchover_catch_up_ms) and becomes HOLDING: new local writes are held
 *    (HELD), forwarded ones are answered ENOTPRIMARY (the backup tries again
 *    once it knows the new primary), shipping goes on.
 * 2. Once no write waits for the engine, every write is acknowledged
 *    (commit LSN == L) and T holds L durably: P persists its history plus
 *    (E', T, L + 1), E' = tdm_replica_epoch_next(E, T): the offer.
 * 3. P sends HANDOVER(E', history, L, chain hash at L) in epoch E.
 * 4. T checks that its log ends at L, durable, with that chain hash, persists
 *    the history and becomes the primary of E', HOLDING: it takes no write
 *    yet. It answers HANDOVER_DONE in E' (and again every handshake_ms).
 * 5. P, on HANDOVER_DONE (or on T's HELLO as holding primary of E'), reports
 *    DONE with the measured pause (now - hold start), becomes a backup of T,
 *    says HELLO to it and forwards its held writes.
 * 6. T, on P's HELLO as a backup of E' (the confirmation), acts as primary:
 *    takes writes, ships, answers P's HELLO with START.
 *
 * The fencing argument (PROTOCOL.md §8.3): P resumes in an epoch of its own
 * only if it never got HANDOVER_DONE within switchover_handover_ms; T accepts
 * writes only once P said HELLO as its backup, which P does only after
 * HANDOVER_DONE. Exactly one of the two happens. So:
 * - no write is ever acknowledged in E' unless P gave up resuming: whatever T
 *   held before P's HELLO was never written, and a T that restarts before it
 *   holds a batch of E' acts in E' again, still unconfirmed (no new epoch);
 * - P's resume epoch E'' = tdm_replica_epoch_next(E', P) is above E' and P's
 *   history holds the offer (E', T): T (and any backup) that sees E'' follows
 *   P, and since T wrote nothing in E', the fork point cuts nothing acknowledged;
 * - P persisted the offer before HANDOVER: a P that crashes and restarts
 *   finds (E', T) last and starts as T's backup (its HELLO confirms T), so it
 *   can never open E' or anything that competes with T;
 * - epochs are owned (epoch % node_count == owner): P's E'' and T's epochs
 *   never collide, whatever either knows.
 *
 * Following (§8.3): a node that sees the HELLO of the acting primary of a
 * higher epoch (or of its own primary, newly acting) follows it: a primary
 * steps down (held writes wait to be forwarded, writes handed to the engine
 * fail with ECOPIES: not acknowledged, may be stored), and the handshake's
 * fork point cuts any divergent tail into quarantine. A node that sees a stale
 * primary's HELLO answers with its own, so that the stale one learns.
 *
 * Failure modes:
 * - target gone, lagging or refusing before the offer: P acts again in E,
 *   nothing changed (REFUSED);
 * - after the offer, no HANDOVER_DONE in time or a refusal: P persists E''
 *   (ABANDONED) and acts once a backup joined E'' (TDM_SWITCH_JOIN: an epoch
 *   no other node holds must not take writes, PROTOCOL.md §8.3);
 * - a higher epoch's primary appears meanwhile: the switchover ends, the
 *   node follows it (ABANDONED, HIGHER_EPOCH);
 * - the other end moved on for good (PROTOCOL.md §8.1): an unconfirmed T whose
 *   P says HELLO as a backup of a higher epoch waits for a backup to join it
 *   instead (switch_unconfirmed_abandoned()); a P restarted after its offer
 *   whose T is a backup elsewhere, without the offer, acts again in an epoch
 *   above (switch_offer_void()); so does a node stranded in a failover's epoch
 *   whose target never persisted it (switch_fence_void(), §8.2);
 * - a failed persist stops the node (replica.c), like any other.
 *
 * Close: nothing to release. */
#include <inttypes.h>
#include <string.h>

#include "engine/base/assert.h"
#include "engine/base/error.h"
#include "net/replica.h"
#include "net/replica_internal.h"

#ifndef TDM_PLANTED_TARGET_ACCEPTS_BEFORE_EPOCH_PERSISTED
#define TDM_PLANTED_TARGET_ACCEPTS_BEFORE_EPOCH_PERSISTED 0
#endif

/* --- Epoch numbers, names ------------------------------------------------------ */

uint64_t tdm_replica_epoch_next(uint64_t base, uint32_t owner_index, uint32_t node_count)
{
    tdm_assert(node_count >= 1);
    tdm_assert(owner_index < node_count);
    uint64_t epoch = base + 1;
    epoch += (owner_index + node_count - (uint32_t)(epoch % node_count)) % node_count;
    tdm_assert(epoch > base);
    tdm_assert(epoch % node_count == owner_index);
    return epoch;
}

static const char *const cause_names[TDM_EPOCH_CAUSE__COUNT] = {
    [0] = "init", /* Not recorded: an entry older than causes. */
    [TDM_EPOCH_CAUSE_INIT] = "init",
    [TDM_EPOCH_CAUSE_RESTART] = "restart",
    [TDM_EPOCH_CAUSE_SCHEDULED] = "scheduled",
    [TDM_EPOCH_CAUSE_COMMAND] = "command",
    [TDM_EPOCH_CAUSE_RESUMED] = "resumed",
    [TDM_EPOCH_CAUSE_FAILOVER] = "failover",
    [TDM_EPOCH_CAUSE_FORCED] = "forced",
    [TDM_EPOCH_CAUSE_REOPEN] = "reopen",
};

static const char *const refusal_names[TDM_REFUSAL__COUNT] = {
    [0] = "none",
    [TDM_REFUSAL_NOT_PRIMARY] = "not the acting primary",
    [TDM_REFUSAL_NOT_BACKUP] = "not a backup",
    [TDM_REFUSAL_IN_PROGRESS] = "another switchover or failover is in progress",
    [TDM_REFUSAL_BUSY] = "busy with a handshake, try again",
    [TDM_REFUSAL_TARGET_UNKNOWN] = "no such node",
    [TDM_REFUSAL_TARGET_SELF] = "the target is the primary itself",
    [TDM_REFUSAL_NO_TARGET] = "no node of the rotation is live and caught up",
    [TDM_REFUSAL_TARGET_DOWN] = "the target's link is not live",
    [TDM_REFUSAL_TARGET_LAGGING] = "the target is not caught up",
    [TDM_REFUSAL_UNACKNOWLEDGED] = "writes in flight were not acknowledged in time",
    [TDM_REFUSAL_TARGET_DIVERGED] = "the target's log differs",
    [TDM_REFUSAL_TARGET_TIMEOUT] = "the target did not confirm in time",
    [TDM_REFUSAL_PRIMARY_ALIVE] = "the old primary still answers",
    [TDM_REFUSAL_UNREACHABLE] = "a node did not answer",
    [TDM_REFUSAL_NOT_HIGHEST] = "another node holds more durable data",
    [TDM_REFUSAL_SINGLE_COPY] = "min_copies is 1: acknowledged writes may be on one node",
    [TDM_REFUSAL_STATE_CHANGED] = "a node changed since it was probed",
    [TDM_REFUSAL_EPOCH_AHEAD] = "a node is in a higher epoch",
    [TDM_REFUSAL_HIGHER_EPOCH] = "a primary of a higher epoch appeared",
    [TDM_REFUSAL_FAILED] = "the node stopped after an I/O failure",
    [TDM_REFUSAL_TARGET_UNVERIFIED] = "the verifier found the target's copy different",
};

const char *tdm_replica_cause_name(uint32_t cause)
{
    return cause < TDM_EPOCH_CAUSE__COUNT ? cause_names[cause] : "unknown";
}

bool tdm_replica_cause_parse(const char *name, uint32_t *cause)
{
    tdm_assert(name != NULL);
    tdm_assert(cause != NULL);
    for (uint32_t i = TDM_EPOCH_CAUSE_INIT; i < TDM_EPOCH_CAUSE__COUNT; i++) {
        if (strcmp(name, cause_names[i]) == 0) {
            *cause = i;
            return true;
        }
    }
    return false;
}

const char *tdm_replica_refusal_name(uint32_t refusal)
{
    return refusal < TDM_REFUSAL__COUNT ? refusal_names[refusal] : "unknown";
}

const char *tdm_replica_outcome_name(uint32_t outcome)
{
    switch (outcome) {
    case TDM_OUTCOME_STARTED:
        return "started";
    case TDM_OUTCOME_DONE:
        return "done";
    case TDM_OUTCOME_REFUSED:
        return "refused";
    case TDM_OUTCOME_ABANDONED:
        return "abandoned";
    case TDM_OUTCOME_DRY_RUN:
        return "dry run";
    default:
        return "unknown";
    }
}

/* --- Shared pieces --------------------------------------------------------------- */

uint64_t tdm_replica_catch_up_ms(const struct tdm_replica *replica)
{
    uint64_t ms = replica->config.switchover_catch_up_ms;
    return ms != 0 ? ms : TDM_SWITCHOVER_CATCH_UP_MS_DEFAULT;
}

static uint64_t switch_handover_ms(const struct tdm_replica *replica)
{
    uint64_t ms = replica->config.switchover_handover_ms;
    return ms != 0 ? ms : TDM_SWITCHOVER_HANDOVER_MS_DEFAULT;
}

struct tdm_report *tdm_replica_report(struct tdm_actions *actions, enum tdm_report_kind kind,
                                      enum tdm_report_outcome outcome, uint64_t request_id)
{
    tdm_assert(actions->report_count < TDM_ACTIONS_REPORTS_MAX);
    tdm_assert(outcome >= TDM_OUTCOME_STARTED && outcome <= TDM_OUTCOME_DRY_RUN);
    struct tdm_report *report = &actions->reports[actions->report_count++];
    memset(report, 0, sizeof(*report));
    report->kind = kind;
    report->outcome = outcome;
    report->request_id = request_id;
    report->target_index = UINT32_MAX;
    report->node_index = UINT32_MAX;
    return report;
}

void tdm_replica_history_push(struct tdm_epoch_history *history,
                              const struct tdm_epoch_entry *entry)
{
    tdm_assert(history->count >= 1);
    tdm_assert(entry->epoch > history->entries[history->count - 1].epoch);
    /* Epochs that begin beyond the new one's first LSN hold nothing of this
     * log (it lost or never had their batches): they stay, empty here, so
     * that their primaries learn they were passed; the fork point cuts their
     * batches elsewhere (an epoch's end is the next entry's first LSN - 1). */
    for (uint32_t i = history->count; i > 0 && history->entries[i - 1].lsn_first > entry->lsn_first;
         i--) {
        history->entries[i - 1].lsn_first = entry->lsn_first;
    }
    if (history->count == TDM_REPLICA_EPOCHS_MAX) {
        /* Keep the newest entries: a backup older than all of them cuts its
         * whole log, which the primary then ships again. */
        memmove(&history->entries[0], &history->entries[1],
                sizeof(history->entries[0]) * (TDM_REPLICA_EPOCHS_MAX - 1));
        history->count--;
    }
    history->entries[history->count++] = *entry;
}

void tdm_replica_history_adopt(struct tdm_replica *replica, const struct tdm_epoch_history *in,
                               struct tdm_epoch_history *out)
{
    tdm_assert(in->count >= 1);
    tdm_assert(in->count <= TDM_REPLICA_EPOCHS_MAX);
    *out = *in;
    for (uint32_t i = 0; i < out->count; i++) {
        struct tdm_epoch_entry *entry = &out->entries[i];
        int mine = tdm_replica_history_find(&replica->history, entry->epoch);
        if (mine >= 0 && entry->pause_ms == 0) {
            const struct tdm_epoch_entry *local = &replica->history.entries[mine];
            if (local->primary_index == entry->primary_index &&
                local->lsn_first == entry->lsn_first) {
                entry->pause_ms = local->pause_ms;
            }
        }
        if (replica->sw.pause_epoch != 0 && entry->epoch == replica->sw.pause_epoch) {
            entry->pause_ms = replica->sw.pause_ms;
        }
    }
}

bool tdm_replica_history_dirty(const struct tdm_replica *replica)
{
    return replica->sw.pause_epoch != 0 &&
           tdm_replica_history_find(&replica->history, replica->sw.pause_epoch) >= 0;
}

void tdm_replica_history_persisted(struct tdm_replica *replica)
{
    int at = tdm_replica_history_find(&replica->history, replica->sw.pause_epoch);
    if (replica->sw.pause_epoch != 0 && at >= 0 &&
        replica->history.entries[at].pause_ms == replica->sw.pause_ms) {
        replica->sw.pause_epoch = 0; /* Recorded. */
        replica->sw.pause_ms = 0;
    }
}

struct tdm_epoch_entry tdm_replica_entry_make(const struct tdm_replica *replica, uint64_t epoch,
                                              uint32_t primary_index, uint32_t cause)
{
    tdm_assert(cause >= TDM_EPOCH_CAUSE_INIT && cause < TDM_EPOCH_CAUSE__COUNT);
    tdm_assert(primary_index < replica->config.node_count);
    struct tdm_epoch_entry entry;
    memset(&entry, 0, sizeof(entry));
    entry.epoch = epoch;
    entry.lsn_first = replica->last_lsn + 1;
    entry.primary_index = primary_index;
    entry.cause = (enum tdm_epoch_cause)cause;
    entry.time_ms = replica->wall_ms;
    return entry;
}

/* The verifier found target's copy different from ours (a divergent range
 * named, or a mismatch being narrowed down): it must not become the primary
 * until that is resolved (repair, or a cut at the fork point). */
static bool switch_target_unverified(const struct tdm_replica *replica, uint32_t target)
{
    const struct tdm_verify_peer *v = &replica->verify.peers[target];
    return v->divergent_first != 0 || v->bad_lsn != 0;
}

uint32_t tdm_replica_switchover_next(const struct tdm_replica *replica)
{
    const struct tdm_replica_config *config = &replica->config;
    if (replica->role != TDM_ROLE_PRIMARY || replica->primary_index != config->self_index) {
        return UINT32_MAX;
    }
    uint32_t order[TDM_REPLICA_NODES_MAX];
    uint32_t count = config->rotation_count;
    for (uint32_t i = 0; i < count; i++) {
        order[i] = config->rotation[i];
    }
    if (count == 0) {
        count = config->node_count;
        for (uint32_t i = 0; i < count; i++) {
            order[i] = i;
        }
    }
    uint32_t start = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (order[i] == config->self_index) {
            start = i + 1;
        }
    }
    struct tdm_frame_lag lags[TDM_REPLICA_NODES_MAX];
    tdm_replica_primary_lags(replica, lags);
    for (uint32_t k = 0; k < count; k++) {
        uint32_t node = order[(start + k) % count];
        if (node != config->self_index && replica->peers[node].link == TDM_LINK_LIVE &&
            lags[node].ms <= tdm_replica_catch_up_ms(replica) &&
            !switch_target_unverified(replica, node)) {
            return node;
        }
    }
    return UINT32_MAX;
}

/* --- Following a new primary (PROTOCOL.md §8.3) ------------------------------------ */

/* End whatever switchover or failover this node was in, telling the adapter. */
static void switch_end_all(struct tdm_replica *replica, struct tdm_actions *actions,
                           uint32_t refusal)
{
    struct tdm_replica_switch *sw = &replica->sw;
    if (sw->phase == TDM_SWITCH_CATCH_UP || sw->phase == TDM_SWITCH_HANDOVER ||
        (sw->phase == TDM_SWITCH_RESUME && sw->report_pending)) {
        struct tdm_report *report = tdm_replica_report(actions, TDM_REPORT_SWITCHOVER,
                                                       TDM_OUTCOME_ABANDONED, sw->request_id);
        report->refusal = refusal;
        report->target_index = sw->target_index;
        report->pause_ms = replica->now_ms - sw->hold_ms;
    }
    sw->phase = TDM_SWITCH_IDLE;
    sw->report_pending = false;
    sw->lazy = false;
    sw->reopen_epoch = 0;
    tdm_replica_failover_end(replica, actions, refusal);
}

void tdm_replica_follow(struct tdm_replica *replica, struct tdm_actions *actions,
                        uint32_t node_index, uint64_t epoch)
{
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    tdm_assert(replica->role != TDM_ROLE_FAILED);
    if (replica->history_pending || replica->cut_pending) {
        replica->sw.follow_index = node_index; /* Once the disk work is done. */
        replica->sw.follow_epoch = epoch;
        return;
    }
    replica->sw.follow_epoch = 0;
    switch_end_all(replica, actions, TDM_REFUSAL_HIGHER_EPOCH);
    if (replica->role != TDM_ROLE_BACKUP) {
        tdm_replica_primary_step_down(replica, actions);
        tdm_replica_role_move(replica, TDM_ROLE_BACKUP);
    }
    replica->primary_index = node_index;
    replica->lag_count = 0;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_replica_peer *peer = &replica->peers[i];
        if (i != replica->config.self_index && peer->link != TDM_LINK_DOWN) {
            peer->link = TDM_LINK_UP;
            peer->link_ms = replica->now_ms;
        }
        peer->hello_id = 0;
        peer->inflight_head = 0;
        peer->inflight_count = 0;
        peer->inflight_size = 0;
    }
    tdm_replica_tracef(replica, "follow #%u, primary of epoch %" PRIu64, node_index, epoch);
    if (replica->peers[node_index].link != TDM_LINK_DOWN) {
        tdm_replica_backup_hello(replica, actions);
        tdm_replica_backup_forward_unsent(replica, actions);
    }
}

/* A HELLO this node sends to a node that is not its primary: "here is my
 * epoch" (no handshake follows from it). */
static void switch_hello_notice(struct tdm_replica *replica, struct tdm_actions *actions,
                                uint32_t node_index)
{
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_HELLO);
    send->hello.role = (uint8_t)replica->role;
    send->hello.last_lsn = replica->last_lsn;
    send->hello.durable_lsn = replica->durable_lsn;
    send->hello.last_epoch = replica->last_epoch;
    send->hello.chain_hash = replica->chain_hash;
    tdm_assert(send->hello.durable_lsn <= send->hello.last_lsn);
}

/* --- The old primary ----------------------------------------------------------------- */

static void switch_refuse(struct tdm_actions *actions, enum tdm_report_kind kind,
                          uint64_t request_id, uint32_t refusal, uint32_t node_index)
{
    tdm_assert(refusal >= 1);
    tdm_assert(refusal < TDM_REFUSAL__COUNT);
    struct tdm_report *report = tdm_replica_report(actions, kind, TDM_OUTCOME_REFUSED, request_id);
    report->refusal = refusal;
    report->node_index = node_index;
}

/* Why SWITCHOVER to target must be refused now, or 0. */
static uint32_t switch_refusal(const struct tdm_replica *replica, uint32_t target)
{
    if (target >= replica->config.node_count) {
        return TDM_REFUSAL_TARGET_UNKNOWN;
    }
    if (target == replica->config.self_index) {
        return TDM_REFUSAL_TARGET_SELF;
    }
    if (replica->peers[target].link != TDM_LINK_LIVE) {
        return TDM_REFUSAL_TARGET_DOWN;
    }
    struct tdm_frame_lag lags[TDM_REPLICA_NODES_MAX];
    tdm_replica_primary_lags(replica, lags);
    if (lags[target].ms > tdm_replica_catch_up_ms(replica)) {
        return TDM_REFUSAL_TARGET_LAGGING;
    }
    if (switch_target_unverified(replica, target)) {
        return TDM_REFUSAL_TARGET_UNVERIFIED;
    }
    return 0;
}

static void switch_on_command(struct tdm_replica *replica, const struct tdm_event *event,
                              struct tdm_actions *actions)
{
    uint64_t request_id = event->switchover.request_id;
    uint32_t refusal = 0;
    uint32_t target = event->switchover.target_index;
    if (replica->role == TDM_ROLE_FAILED) {
        refusal = TDM_REFUSAL_FAILED;
    } else if (replica->sw.phase != TDM_SWITCH_IDLE || replica->fo.phase != TDM_FAILOVER_IDLE ||
               replica->role == TDM_ROLE_HOLDING) {
        refusal = TDM_REFUSAL_IN_PROGRESS;
    } else if (replica->role == TDM_ROLE_RECOVERING &&
               replica->primary_index == replica->config.self_index) {
        refusal = TDM_REFUSAL_BUSY; /* Opening its epoch. */
    } else if (replica->role != TDM_ROLE_PRIMARY) {
        refusal = TDM_REFUSAL_NOT_PRIMARY;
        target = replica->primary_index; /* Ask that node instead. */
    } else if (target == TDM_SWITCHOVER_NEXT) {
        target = tdm_replica_switchover_next(replica);
        refusal = target == UINT32_MAX ? TDM_REFUSAL_NO_TARGET : 0;
    }
    if (refusal == 0) {
        refusal = switch_refusal(replica, target);
    }
    if (refusal != 0) {
        tdm_replica_tracef(replica, "switchover %" PRIu64 " refused: %s", request_id,
                           tdm_replica_refusal_name(refusal));
        switch_refuse(actions, TDM_REPORT_SWITCHOVER, request_id, refusal,
                      target < replica->config.node_count ? target : UINT32_MAX);
        return;
    }
    struct tdm_replica_switch *sw = &replica->sw;
    sw->phase = TDM_SWITCH_CATCH_UP;
    sw->request_id = request_id;
    sw->command = event->switchover.command;
    sw->target_index = target;
    sw->hold_ms = replica->now_ms;
    sw->deadline_ms = replica->now_ms + tdm_replica_catch_up_ms(replica);
    sw->from_epoch = replica->epoch;
    tdm_replica_role_move(replica, TDM_ROLE_HOLDING);
    tdm_replica_tracef(replica, "switchover %" PRIu64 " to #%u: hold writes at lsn %" PRIu64,
                       request_id, target, replica->last_lsn);
    struct tdm_report *report =
        tdm_replica_report(actions, TDM_REPORT_SWITCHOVER, TDM_OUTCOME_STARTED, request_id);
    report->target_index = target;
    report->lsn = replica->last_lsn;
}

/* Before the offer: give up, act again in the same epoch; nothing changed. */
static void switch_release(struct tdm_replica *replica, struct tdm_actions *actions,
                           uint32_t refusal)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(sw->phase == TDM_SWITCH_CATCH_UP);
    tdm_assert(replica->role == TDM_ROLE_HOLDING);
    tdm_replica_tracef(replica, "switchover %" PRIu64 " refused: %s", sw->request_id,
                       tdm_replica_refusal_name(refusal));
    struct tdm_report *report =
        tdm_replica_report(actions, TDM_REPORT_SWITCHOVER, TDM_OUTCOME_REFUSED, sw->request_id);
    report->refusal = refusal;
    report->target_index = sw->target_index;
    report->node_index = sw->target_index;
    report->pause_ms = replica->now_ms - sw->hold_ms;
    sw->phase = TDM_SWITCH_IDLE;
    tdm_replica_role_move(replica, TDM_ROLE_PRIMARY);
    tdm_replica_primary_release_held(replica, actions);
}

/* True if a write was handed to the engine and has no LSNs yet. */
static bool switch_appending(const struct tdm_replica *replica)
{
    for (uint32_t i = 0; i < replica->write_count; i++) {
        if (replica->writes[i].state == TDM_WRITE_APPENDING) {
            return true;
        }
    }
    return false;
}

/* Catch-up: the offer once the target holds everything, acknowledged. */
static void switch_catch_up(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    const struct tdm_replica_peer *peer = &replica->peers[sw->target_index];
    if (peer->link != TDM_LINK_LIVE) {
        switch_release(replica, actions, TDM_REFUSAL_TARGET_DOWN);
        return;
    }
    if (switch_appending(replica) || replica->commit_lsn < replica->last_lsn ||
        peer->durable_lsn < replica->last_lsn) {
        if (replica->now_ms >= sw->deadline_ms) {
            switch_release(replica, actions,
                           peer->durable_lsn < replica->last_lsn ? TDM_REFUSAL_TARGET_LAGGING
                                                                 : TDM_REFUSAL_UNACKNOWLEDGED);
        }
        return;
    }
    sw->new_epoch =
        tdm_replica_epoch_next(replica->epoch, sw->target_index, replica->config.node_count);
    sw->lsn = replica->last_lsn;
    sw->chain_hash = replica->chain_hash;
    replica->history_next = replica->history;
    struct tdm_epoch_entry entry =
        tdm_replica_entry_make(replica, sw->new_epoch, sw->target_index,
                               sw->command ? TDM_EPOCH_CAUSE_COMMAND : TDM_EPOCH_CAUSE_SCHEDULED);
    tdm_replica_history_push(&replica->history_next, &entry);
    replica->history_pending = true;
    actions->history_to_persist = &replica->history_next;
    sw->phase = TDM_SWITCH_OFFER;
    tdm_replica_tracef(replica, "#%u holds lsn %" PRIu64 ": offer epoch %" PRIu64, sw->target_index,
                       sw->lsn, sw->new_epoch);
}

static void switch_handover_send(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(sw->phase == TDM_SWITCH_HANDOVER);
    struct tdm_send *send =
        tdm_replica_send(replica, actions, sw->target_index, TDM_FRAME_HANDOVER);
    send->epoch = sw->from_epoch; /* The target is still in it. */
    send->handover.new_epoch = sw->new_epoch;
    send->handover.last_lsn = sw->lsn;
    send->handover.chain_hash = sw->chain_hash;
    actions->history_new = &replica->history; /* The persisted offer. */
    sw->resend_ms = replica->now_ms + replica->config.retransmit_ms;
}

/* After the offer: act again, in an epoch of our own above the offer's. */
static void switch_resume(struct tdm_replica *replica, struct tdm_actions *actions,
                          uint32_t refusal)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(sw->phase == TDM_SWITCH_HANDOVER);
    tdm_replica_tracef(replica, "switchover %" PRIu64 " abandoned: %s", sw->request_id,
                       tdm_replica_refusal_name(refusal));
    sw->phase = TDM_SWITCH_RESUME;
    sw->refusal = refusal;
    sw->report_pending = true;
    tdm_replica_primary_open(replica, actions, replica->epoch, TDM_EPOCH_CAUSE_RESUMED);
}

static void switch_handed_over(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(sw->phase == TDM_SWITCH_HANDOVER);
    uint64_t pause = replica->now_ms - sw->hold_ms;
    tdm_replica_tracef(replica,
                       "handed over to #%u in epoch %" PRIu64 ", writes held %" PRIu64 " ms",
                       sw->target_index, sw->new_epoch, pause);
    struct tdm_report *report =
        tdm_replica_report(actions, TDM_REPORT_SWITCHOVER, TDM_OUTCOME_DONE, sw->request_id);
    report->target_index = sw->target_index;
    report->epoch = sw->new_epoch;
    report->lsn = sw->lsn;
    report->pause_ms = pause;
    sw->pause_epoch = sw->new_epoch; /* Recorded in our history at the next persist. */
    sw->pause_ms = pause;
    sw->phase = TDM_SWITCH_IDLE;
    tdm_replica_follow(replica, actions, sw->target_index, sw->new_epoch);
}

static void switch_on_handover_done(struct tdm_replica *replica, uint32_t node_index,
                                    const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_handover_done *done = &frame->handover_done;
    struct tdm_replica_switch *sw = &replica->sw;
    if (sw->phase != TDM_SWITCH_HANDOVER || node_index != sw->target_index ||
        done->new_epoch != sw->new_epoch) {
        tdm_replica_tracef(replica, "ignore HANDOVER_DONE from #%u: no such handover", node_index);
        return;
    }
    if (done->refusal != 0) {
        switch_resume(replica, actions,
                      done->refusal < TDM_REFUSAL__COUNT ? done->refusal
                                                         : TDM_REFUSAL_TARGET_DIVERGED);
        return;
    }
    if (frame->epoch != sw->new_epoch || done->last_lsn != sw->lsn ||
        memcmp(&done->chain_hash, &sw->chain_hash, sizeof(sw->chain_hash)) != 0) {
        switch_resume(replica, actions, TDM_REFUSAL_TARGET_DIVERGED);
        return;
    }
    switch_handed_over(replica, actions);
}

/* PERSISTED(EPOCHS) while HOLDING: the offer, or an epoch of our own. */
void tdm_replica_switch_on_persisted(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(replica->role == TDM_ROLE_HOLDING);
    tdm_assert(!replica->history_pending);
    if (sw->phase == TDM_SWITCH_OFFER) {
        sw->phase = TDM_SWITCH_HANDOVER;
        sw->deadline_ms = replica->now_ms + switch_handover_ms(replica);
        switch_handover_send(replica, actions);
        return;
    }
    tdm_assert(sw->phase == TDM_SWITCH_RESUME);
    sw->phase = TDM_SWITCH_IDLE;
    /* Acting at once in an epoch no backup persisted could let a failover
     * elsewhere, unaware of it, open a lower one and acknowledge writes in
     * it, which our HELLO as primary would then make its backups cut. */
    tdm_replica_primary_act_or_wait(replica, actions);
    if (sw->report_pending) {
        struct tdm_report *report = tdm_replica_report(actions, TDM_REPORT_SWITCHOVER,
                                                       TDM_OUTCOME_ABANDONED, sw->request_id);
        report->refusal = sw->refusal;
        report->target_index = sw->target_index;
        report->node_index = sw->target_index;
        report->epoch = replica->epoch;
        report->lsn = sw->lsn;
        report->pause_ms = replica->now_ms - sw->hold_ms;
        sw->report_pending = false;
    }
}

/* An acting primary learns of an epoch above its own that a failover
 * abandoned: it moves above it, so that the nodes stranded there come back. */
static void switch_reopen(struct tdm_replica *replica, struct tdm_actions *actions, uint64_t epoch)
{
    tdm_assert(replica->role == TDM_ROLE_PRIMARY);
    tdm_assert(epoch > replica->epoch);
    tdm_replica_tracef(replica, "move above abandoned epoch %" PRIu64, epoch);
    tdm_replica_role_move(replica, TDM_ROLE_HOLDING);
    replica->sw.phase = TDM_SWITCH_RESUME;
    replica->sw.report_pending = false;
    replica->sw.hold_ms = replica->now_ms;
    tdm_replica_primary_open(replica, actions, epoch, TDM_EPOCH_CAUSE_REOPEN);
}

/* --- The target ---------------------------------------------------------------------- */

/* Why the target refuses HANDOVER, or 0. */
/* What a target checks before it takes over: offer (valid, at least two
 * entries, the last naming this node) must extend our history, and our log
 * must end at last_lsn, durable, with chain_hash there. */
struct switch_offer {
    uint32_t old_index;
    uint64_t from_epoch;
    uint64_t new_epoch;
    const struct tdm_epoch_history *history;
    uint64_t last_lsn;
    struct tdm_frame_chain_hash chain_hash;
};

static uint32_t switch_takeover_refusal(const struct tdm_replica *replica,
                                        const struct switch_offer *offer)
{
    const struct tdm_epoch_history *history = offer->history;
    const struct tdm_epoch_entry *mine = &replica->history.entries[replica->history.count - 1];
    tdm_assert(history->count >= 2);
    if (replica->fo.phase != TDM_FAILOVER_IDLE || replica->sw.phase != TDM_SWITCH_IDLE) {
        return TDM_REFUSAL_IN_PROGRESS;
    }
    if (replica->history_pending || replica->cut_pending ||
        replica->peers[offer->old_index].link == TDM_LINK_DOWN) {
        return TDM_REFUSAL_BUSY;
    }
    const struct tdm_epoch_entry *last = &history->entries[history->count - 1];
    const struct tdm_epoch_entry *before = &history->entries[history->count - 2];
    if (before->epoch != mine->epoch || before->primary_index != mine->primary_index ||
        before->lsn_first != mine->lsn_first || last->lsn_first != offer->last_lsn + 1) {
        return TDM_REFUSAL_TARGET_DIVERGED;
    }
    if (replica->durable_lsn < offer->last_lsn) {
        return TDM_REFUSAL_TARGET_LAGGING;
    }
    if (replica->last_lsn != offer->last_lsn ||
        memcmp(&replica->chain_hash, &offer->chain_hash, sizeof(replica->chain_hash)) != 0) {
        return TDM_REFUSAL_TARGET_DIVERGED;
    }
    return 0;
}

static void switch_done_send(struct tdm_replica *replica, struct tdm_actions *actions,
                             uint32_t node_index, uint64_t new_epoch, uint32_t refusal)
{
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_HANDOVER_DONE);
    send->handover_done.new_epoch = new_epoch;
    send->handover_done.refusal = (uint8_t)refusal;
    send->handover_done.last_lsn = replica->last_lsn;
    send->handover_done.chain_hash = replica->chain_hash;
    if (refusal == 0) {
        replica->sw.resend_ms = replica->now_ms + replica->config.handshake_ms;
    }
}

static bool switch_ignore_handover(const struct tdm_replica *replica, uint32_t node_index,
                                   const struct tdm_frame *frame)
{
    const struct tdm_frame_handover *handover = &frame->handover;
    const char *why = NULL;
    if (!tdm_replica_history_valid(&handover->history, replica->config.node_count) ||
        handover->history.count < 2) {
        why = "malformed epoch history";
    } else if (handover->history.entries[handover->history.count - 1].epoch !=
                   handover->new_epoch ||
               handover->history.entries[handover->history.count - 1].primary_index !=
                   replica->config.self_index) {
        why = "history does not name us primary of the new epoch";
    } else if (handover->new_epoch <= frame->epoch) {
        why = "new epoch not above the sender's";
    } else if (replica->role != TDM_ROLE_BACKUP || node_index != replica->primary_index ||
               frame->epoch != replica->epoch) {
        why = "not from our primary, in our epoch";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore HANDOVER from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void switch_takeover(struct tdm_replica *replica, struct tdm_actions *actions,
                            const struct switch_offer *offer);

static void switch_on_handover(struct tdm_replica *replica, uint32_t node_index,
                               const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_handover *handover = &frame->handover;
    struct tdm_replica_switch *sw = &replica->sw;
    if (sw->new_epoch == handover->new_epoch && sw->old_index == node_index &&
        (sw->phase == TDM_SWITCH_UNCONFIRMED || sw->phase == TDM_SWITCH_TAKEOVER)) {
        if (sw->phase == TDM_SWITCH_UNCONFIRMED) {
            switch_done_send(replica, actions, node_index, handover->new_epoch, 0); /* Again. */
        }
        return; /* TAKEOVER: HANDOVER_DONE follows the persist. */
    }
    if (switch_ignore_handover(replica, node_index, frame)) {
        return;
    }
    struct switch_offer offer = {
        .old_index = node_index,
        .from_epoch = frame->epoch,
        .new_epoch = handover->new_epoch,
        .history = &handover->history,
        .last_lsn = handover->last_lsn,
        .chain_hash = handover->chain_hash,
    };
    uint32_t refusal = switch_takeover_refusal(replica, &offer);
    if (refusal != 0) {
        tdm_replica_tracef(replica, "refuse HANDOVER from #%u: %s", node_index,
                           tdm_replica_refusal_name(refusal));
        switch_done_send(replica, actions, node_index, handover->new_epoch, refusal);
        return;
    }
    switch_takeover(replica, actions, &offer);
}

static void switch_takeover(struct tdm_replica *replica, struct tdm_actions *actions,
                            const struct switch_offer *offer)
{
    struct tdm_replica_switch *sw = &replica->sw;
    uint32_t node_index = offer->old_index;
    sw->phase = TDM_SWITCH_TAKEOVER;
    replica->peers[node_index].link = TDM_LINK_UP; /* Its stream ends here: we hold it all. */
    sw->old_index = node_index;
    sw->from_epoch = offer->from_epoch;
    sw->new_epoch = offer->new_epoch;
    sw->lsn = offer->last_lsn;
    sw->chain_hash = offer->chain_hash;
    tdm_replica_history_adopt(replica, offer->history, &replica->history_next);
    replica->history_pending = true;
    actions->history_to_persist = &replica->history_next;
    tdm_replica_tracef(replica, "take over epoch %" PRIu64 " from #%u at lsn %" PRIu64,
                       sw->new_epoch, node_index, sw->lsn);
    if (TDM_PLANTED_TARGET_ACCEPTS_BEFORE_EPOCH_PERSISTED) {
        /* The planted bug: act, and take writes, as if the history were
         * already durable (and as if confirmed); its PERSISTED is swallowed. */
        replica->history_pending = false;
        sw->planted_persist_expected = true;
        replica->history = replica->history_next;
        replica->epoch = sw->new_epoch;
        replica->primary_index = replica->config.self_index;
        tdm_replica_primary_become(replica);
        sw->phase = TDM_SWITCH_IDLE;
        switch_done_send(replica, actions, node_index, sw->new_epoch, 0);
        tdm_replica_primary_act(replica, actions);
    }
}

/* PERSISTED(EPOCHS) of a takeover: primary of the new epoch, holding writes
 * until the old primary confirms. */
void tdm_replica_switch_takeover_persisted(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(sw->phase == TDM_SWITCH_TAKEOVER);
    tdm_assert(replica->primary_index == replica->config.self_index);
    tdm_replica_primary_become(replica);
    tdm_replica_role_move(replica, TDM_ROLE_HOLDING);
    sw->phase = TDM_SWITCH_UNCONFIRMED;
    switch_done_send(replica, actions, sw->old_index, sw->new_epoch, 0);
}

void tdm_replica_switch_unconfirmed_start(struct tdm_replica *replica, struct tdm_actions *actions)
{
    const struct tdm_epoch_history *history = &replica->history;
    tdm_assert(history->count >= 2);
    tdm_assert(replica->role == TDM_ROLE_RECOVERING);
    struct tdm_replica_switch *sw = &replica->sw;
    sw->phase = TDM_SWITCH_UNCONFIRMED;
    sw->old_index = history->entries[history->count - 2].primary_index;
    sw->new_epoch = replica->epoch;
    sw->lsn = replica->last_lsn;
    sw->chain_hash = replica->chain_hash;
    tdm_replica_role_move(replica, TDM_ROLE_HOLDING);
    tdm_replica_tracef(replica, "handed epoch %" PRIu64 " by #%u: wait for its confirmation",
                       replica->epoch, sw->old_index);
    switch_done_send(replica, actions, sw->old_index, sw->new_epoch, 0);
}

static void switch_confirmed(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(sw->phase == TDM_SWITCH_UNCONFIRMED);
    tdm_assert(replica->role == TDM_ROLE_HOLDING);
    tdm_replica_tracef(replica, "#%u follows epoch %" PRIu64 ": act as primary", sw->old_index,
                       replica->epoch);
    sw->phase = TDM_SWITCH_IDLE;
    tdm_replica_primary_act(replica, actions);
}

/* --- Dispatch ----------------------------------------------------------------------- */

/* True if history holds entry (same epoch, same primary). */
static bool switch_history_has(const struct tdm_epoch_history *history,
                               const struct tdm_epoch_entry *entry)
{
    int at = tdm_replica_history_find(history, entry->epoch);
    return at >= 0 && history->entries[at].primary_index == entry->primary_index;
}

/* True if this node, not acting, may follow a node of a newer lineage
 * (history): that lineage went past our top epoch, or we hold no batch of our
 * top epoch and the epoch of our last batch is in that lineage (same
 * primary); either way the fork point cuts only what that lineage never
 * acknowledged (PROTOCOL.md §8.3). */
static bool switch_superseded(const struct tdm_replica *replica,
                              const struct tdm_epoch_history *history)
{
    if (switch_history_has(history, &replica->history.entries[replica->history.count - 1])) {
        return true; /* It knew our epoch and went past it. */
    }
    if (replica->last_epoch >= replica->epoch) {
        return false;
    }
    if (replica->last_epoch == 0) {
        return true;
    }
    int at = tdm_replica_history_find(&replica->history, replica->last_epoch);
    return at >= 0 && switch_history_has(history, &replica->history.entries[at]);
}

/* True in a cluster of two nodes with min_copies 2: every acknowledged
 * write is on both, so a batch one of them lacks was never acknowledged, and
 * when their lineages part (a failover while the other was cut off, then
 * restarts) either may win; the newer epoch does. Larger clusters fence every
 * other node and need no such rule (PROTOCOL.md §8.3). */
static bool switch_pair(const struct tdm_replica *replica)
{
    return replica->config.node_count == 2 && replica->config.min_copies == 2;
}

/* True if the entry of epoch last_epoch of history (the epoch of a node's
 * last batch) is in ours: everything that node holds is of our lineage. */
static bool switch_data_within(const struct tdm_epoch_history *history, uint64_t last_epoch,
                               const struct tdm_epoch_history *ours)
{
    if (last_epoch == 0) {
        return true;
    }
    int at = tdm_replica_history_find(history, last_epoch);
    return at >= 0 && switch_history_has(ours, &history->entries[at]);
}

/* True if every entry of history is in ours, but entries of sender's own:
 * a backup of our lineage, fenced into no other primary's epoch. */
static bool switch_history_ours(const struct tdm_epoch_history *history,
                                const struct tdm_epoch_history *ours, uint32_t sender)
{
    for (uint32_t i = 0; i < history->count; i++) {
        if (history->entries[i].primary_index != sender &&
            !switch_history_has(ours, &history->entries[i])) {
            return false;
        }
    }
    return true;
}

/* True if every entry of history but its last is in ours (same epoch, same
 * primary): the lineage it extends is one we hold all of. */
static bool switch_history_within(const struct tdm_epoch_history *history,
                                  const struct tdm_epoch_history *ours)
{
    tdm_assert(history->count >= 1);
    for (uint32_t i = 0; i + 1 < history->count; i++) {
        int at = tdm_replica_history_find(ours, history->entries[i].epoch);
        if (at < 0 || ours->entries[at].primary_index != history->entries[i].primary_index) {
            return false;
        }
    }
    return true;
}

/* Our primary says HELLO as a backup of an epoch it offered us: it persisted
 * the offer and restarted (or took our HANDOVER_DONE) while ours never came.
 * It can no longer resume, so the offer stands: take it (PROTOCOL.md §8.1). */
static void switch_on_offer_hello(struct tdm_replica *replica, uint32_t node_index,
                                  const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_hello *hello = &frame->hello;
    struct switch_offer offer = {
        .old_index = node_index,
        .from_epoch = replica->epoch,
        .new_epoch = frame->epoch,
        .history = &hello->history,
        .last_lsn = hello->last_lsn,
        .chain_hash = hello->chain_hash,
    };
    uint32_t refusal = switch_takeover_refusal(replica, &offer);
    if (refusal != 0) {
        tdm_replica_tracef(replica, "cannot take the epoch #%u offered: %s", node_index,
                           tdm_replica_refusal_name(refusal));
        return;
    }
    switch_takeover(replica, actions, &offer);
}

/* A HELLO, well formed, as the rules below see it. */
struct switch_hello {
    uint32_t node_index;
    const struct tdm_frame *frame;
    const struct tdm_frame_hello *hello;
    const struct tdm_epoch_entry *last; /* Its history's last entry. */
    bool names_sender;                  /* last is (frame epoch, sender). */
};

/* The old primary says HELLO as a backup of an epoch above ours: it left
 * its handover without resuming (only a HOLDING one resumes) and will never
 * confirm. We hold no batch of our epoch (writes wait for the confirmation).
 * If its lineage went past our epoch (it holds our entry), follow that
 * lineage's primary. Otherwise the epoch above ours was opened without it
 * (a failover that fenced the old primary, possibly abandoned): act in ours
 * once a backup joins it (TDM_SWITCH_JOIN), like a restarted primary: a node
 * fenced into a newer epoch never joins, and a failover that acts there
 * fenced them all (PROTOCOL.md §8.1, §8.3). */
static void switch_unconfirmed_abandoned(struct tdm_replica *replica, const struct switch_hello *h,
                                         struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    const struct tdm_epoch_entry *ours = &replica->history.entries[replica->history.count - 1];
    uint32_t named = h->last->primary_index;
    tdm_replica_tracef(replica, "#%u is a backup of epoch %" PRIu64 ": it will not confirm",
                       h->node_index, h->frame->epoch);
    sw->phase = TDM_SWITCH_IDLE;
    if (switch_history_has(&h->hello->history, ours) && named != replica->config.self_index) {
        tdm_replica_follow(replica, actions, named, h->frame->epoch);
        return;
    }
    tdm_replica_primary_act_or_wait(replica, actions);
}

/* True if this node is an old primary that restarted after persisting its
 * offer (E', T) (PROTOCOL.md §8.1): a backup of T in E', holding no batch of
 * E', and h is T's HELLO as a backup that never took E' (its history lacks
 * the offer) nor will: its primary is another node, so it cannot take our
 * HELLO for the offer. T then never acted in E', and no write can have been
 * acknowledged there. */
static bool switch_offer_void(const struct tdm_replica *replica, const struct switch_hello *h)
{
    const struct tdm_epoch_history *history = &replica->history;
    const struct tdm_epoch_entry *offer = &history->entries[history->count - 1];
    uint32_t self = replica->config.self_index;
    if (replica->role != TDM_ROLE_BACKUP || h->node_index != replica->primary_index ||
        history->count < 2 || offer->epoch != replica->epoch ||
        offer->primary_index != h->node_index || replica->last_epoch >= offer->epoch ||
        history->entries[history->count - 2].primary_index != self) {
        return false;
    }
    if (offer->cause != TDM_EPOCH_CAUSE_SCHEDULED && offer->cause != TDM_EPOCH_CAUSE_COMMAND) {
        return false;
    }
    return h->hello->role == TDM_ROLE_BACKUP && h->last->primary_index != self &&
           !switch_history_has(&h->hello->history, offer) &&
           replica->fo.phase == TDM_FAILOVER_IDLE && !replica->history_pending &&
           !replica->cut_pending;
}

/* switch_offer_void(), switch_fence_void(): act again as after a timeout, in
 * an epoch of our own above ours and the target's, once a backup joins it. */
static void switch_offer_resume(struct tdm_replica *replica, const struct switch_hello *h,
                                struct tdm_actions *actions, uint32_t cause)
{
    struct tdm_replica_switch *sw = &replica->sw;
    tdm_replica_tracef(replica, "#%u never took epoch %" PRIu64 ": act again", h->node_index,
                       replica->epoch);
    replica->primary_index = replica->config.self_index;
    tdm_replica_primary_become(replica);
    tdm_replica_role_move(replica, TDM_ROLE_HOLDING);
    sw->phase = TDM_SWITCH_RESUME;
    sw->report_pending = false;
    sw->hold_ms = replica->now_ms;
    tdm_replica_primary_open(replica, actions, tdm_replica_max(replica->epoch, h->frame->epoch),
                             cause);
}

/* True if this node, a backup fenced into a failover's epoch F (our top
 * entry, no batch of it here), hears F's target say HELLO as a backup that
 * holds no F (the attempt was abandoned, or the target crashed before it
 * persisted F: it never acted in F) and takes us for its primary in an epoch
 * of our own history. We are then the primary of the lineage the target
 * follows, stranded in a dead epoch: nobody else will ever act for us. */
static bool switch_fence_void(const struct tdm_replica *replica, const struct switch_hello *h)
{
    const struct tdm_epoch_history *history = &replica->history;
    const struct tdm_epoch_entry *fence = &history->entries[history->count - 1];
    uint32_t self = replica->config.self_index;
    if (replica->role != TDM_ROLE_BACKUP || h->node_index != replica->primary_index ||
        fence->epoch != replica->epoch || fence->primary_index != h->node_index ||
        replica->last_epoch >= fence->epoch) {
        return false;
    }
    if (fence->cause != TDM_EPOCH_CAUSE_FAILOVER && fence->cause != TDM_EPOCH_CAUSE_FORCED) {
        return false;
    }
    return h->hello->role == TDM_ROLE_BACKUP && h->last->primary_index == self &&
           switch_history_has(history, h->last) && !switch_history_has(&h->hello->history, fence) &&
           replica->fo.phase == TDM_FAILOVER_IDLE && !replica->history_pending &&
           !replica->cut_pending;
}

/* The switchover's own HELLOs: DONE's stand-in, the confirmation, an offer
 * whose HANDOVER never came. -1: not one of them; else consumed (1) or not. */
static int switch_hello_switchover(struct tdm_replica *replica, const struct switch_hello *h,
                                   struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    uint64_t epoch = h->frame->epoch;
    uint8_t role = h->hello->role;
    if (sw->phase == TDM_SWITCH_HANDOVER && h->node_index == sw->target_index &&
        role == TDM_ROLE_HOLDING && h->names_sender && epoch == sw->new_epoch) {
        switch_handed_over(replica, actions); /* Its HANDOVER_DONE may be lost. */
        return 1;
    }
    if (sw->phase == TDM_SWITCH_UNCONFIRMED && h->node_index == sw->old_index &&
        role == TDM_ROLE_BACKUP && epoch == replica->epoch) {
        switch_confirmed(replica, actions);
        return 0; /* Answered with START as a primary. */
    }
    if (sw->phase == TDM_SWITCH_UNCONFIRMED && h->node_index == sw->old_index &&
        role == TDM_ROLE_BACKUP && epoch > replica->epoch && !replica->history_pending &&
        !replica->cut_pending) {
        switch_unconfirmed_abandoned(replica, h, actions);
        return 1;
    }
    if (switch_offer_void(replica, h)) {
        switch_offer_resume(replica, h, actions, TDM_EPOCH_CAUSE_RESUMED);
        return 1;
    }
    if (switch_fence_void(replica, h)) {
        switch_offer_resume(replica, h, actions, TDM_EPOCH_CAUSE_REOPEN);
        return 1;
    }
    if (replica->role == TDM_ROLE_BACKUP && h->node_index == replica->primary_index &&
        role == TDM_ROLE_BACKUP && epoch > replica->epoch && h->last->epoch == epoch &&
        h->last->primary_index == replica->config.self_index && h->hello->history.count >= 2 &&
        (h->last->cause == TDM_EPOCH_CAUSE_SCHEDULED ||
         h->last->cause == TDM_EPOCH_CAUSE_COMMAND)) {
        switch_on_offer_hello(replica, h->node_index, h->frame, actions);
        return 1;
    }
    return -1;
}

/* A primary not acting (restarted, or waiting for a join or a confirmation):
 * open an epoch, or follow a newer lineage (PROTOCOL.md §4, §8.3). */
static bool switch_hello_waiting(struct tdm_replica *replica, const struct switch_hello *h,
                                 struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    const struct tdm_frame_hello *hello = h->hello;
    uint64_t epoch = h->frame->epoch;
    bool lazy = replica->role == TDM_ROLE_RECOVERING && sw->lazy;
    if (lazy && hello->role == TDM_ROLE_BACKUP && epoch <= replica->epoch &&
        (switch_history_ours(&hello->history, &replica->history, h->node_index) ||
         switch_pair(replica))) {
        /* A backup of our lineage, fenced into no other: open our epoch. */
        sw->lazy = false;
        tdm_replica_primary_open(replica, actions, replica->epoch, TDM_EPOCH_CAUSE_RESTART);
        return true;
    }
    bool sender_waits = hello->role == TDM_ROLE_RECOVERING || hello->role == TDM_ROLE_HOLDING;
    if (lazy && sender_waits && h->names_sender && epoch > replica->epoch &&
        hello->last_epoch < epoch &&
        (hello->last_epoch < replica->last_epoch || hello->last_lsn <= replica->last_lsn) &&
        switch_data_within(&hello->history, hello->last_epoch, &replica->history)) {
        /* A primary that never acted in its newer epoch (no batch of it),
         * whose batches are all of our lineage, which went past them (we
         * acted later) or holds them all: open ours above it. */
        sw->lazy = false;
        tdm_replica_primary_open(replica, actions, epoch, TDM_EPOCH_CAUSE_RESTART);
        return true;
    }
    bool waiting = replica->role == TDM_ROLE_RECOVERING ||
                   (replica->role == TDM_ROLE_HOLDING &&
                    (sw->phase == TDM_SWITCH_UNCONFIRMED || sw->phase == TDM_SWITCH_JOIN));
    if (waiting && hello->role != TDM_ROLE_BACKUP && h->names_sender && epoch > replica->epoch &&
        (switch_superseded(replica, &hello->history) || switch_pair(replica))) {
        /* What we hold is in the sender's newer lineage; or, in a pair, the
         * newer epoch wins (switch_pair()). */
        tdm_replica_follow(replica, actions, h->node_index, epoch);
        return true;
    }
    return false;
}

/* Nothing of epoch (above ours) can have been acknowledged by a primary
 * other than sender: an acknowledgement needs min_copies durable copies,
 * each on a node that persisted epoch, and besides sender fewer than
 * min_copies - 1 nodes may have. We did not (we are below epoch); a LIVE
 * backup in our epoch did not either: a node's epoch only grows. */
static bool switch_epoch_uncopied(const struct tdm_replica *replica, uint32_t sender,
                                  uint64_t epoch)
{
    if (replica->config.min_copies < 2 || replica->epoch >= epoch) {
        return false;
    }
    uint32_t unknown = 0;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        const struct tdm_replica_peer *peer = &replica->peers[i];
        if (i != sender && i != replica->config.self_index &&
            (peer->link != TDM_LINK_LIVE || peer->epoch != replica->epoch)) {
            unknown++;
        }
    }
    return unknown + 1 < replica->config.min_copies;
}

/* An acting primary moves above a newer epoch in which nothing can have
 * been acknowledged: an abandoned failover's (its target is our LIVE backup),
 * one no backup joined, opened on a lineage we hold all of, or one of which
 * no other node can hold a copy (switch_epoch_uncopied()): the sender then
 * follows us and its tail of that epoch goes to quarantine. */
static bool switch_hello_acting(struct tdm_replica *replica, const struct switch_hello *h)
{
    struct tdm_replica_switch *sw = &replica->sw;
    const struct tdm_frame_hello *hello = h->hello;
    uint64_t epoch = h->frame->epoch;
    if (replica->role != TDM_ROLE_PRIMARY || epoch <= replica->epoch) {
        return false;
    }
    uint32_t target_index = h->last->primary_index;
    if (hello->role == TDM_ROLE_BACKUP && h->last->epoch == epoch &&
        target_index != h->node_index && target_index != replica->config.self_index) {
        const struct tdm_replica_peer *target = &replica->peers[target_index];
        if (target->link == TDM_LINK_LIVE && target->epoch == replica->epoch &&
            replica->now_ms <= target->heard_ms + 2 * replica->config.heartbeat_ms) {
            sw->reopen_epoch = tdm_replica_max(sw->reopen_epoch, epoch);
            return true; /* After the step, once no write waits for the engine. */
        }
    }
    if (h->names_sender &&
        (hello->role == TDM_ROLE_RECOVERING || hello->role == TDM_ROLE_HOLDING) &&
        (switch_history_within(&hello->history, &replica->history) || switch_pair(replica) ||
         switch_epoch_uncopied(replica, h->node_index, epoch))) {
        sw->reopen_epoch = tdm_replica_max(sw->reopen_epoch, epoch);
        return true;
    }
    return false;
}

/* Returns true if the HELLO was consumed by a change of role. */
static bool switch_on_hello(struct tdm_replica *replica, uint32_t node_index,
                            const struct tdm_frame *frame, struct tdm_actions *actions)
{
    const struct tdm_frame_hello *hello = &frame->hello;
    if (hello->version != TDM_FRAME_VERSION ||
        !tdm_replica_history_valid(&hello->history, replica->config.node_count)) {
        return false; /* The role's handler traces it. */
    }
    struct switch_hello h = {
        .node_index = node_index,
        .frame = frame,
        .hello = hello,
        .last = &hello->history.entries[hello->history.count - 1],
    };
    h.names_sender = h.last->epoch == frame->epoch && h.last->primary_index == node_index;
    if (hello->role == TDM_ROLE_PRIMARY && h.names_sender && frame->epoch > replica->epoch) {
        if (replica->role == TDM_ROLE_BACKUP && replica->primary_index == node_index &&
            replica->peers[node_index].link != TDM_LINK_UP &&
            replica->peers[node_index].link != TDM_LINK_DOWN) {
            return true; /* Following it already: the handshake is under way. */
        }
        tdm_replica_follow(replica, actions, node_index, frame->epoch);
        return true;
    }
    int switchover = switch_hello_switchover(replica, &h, actions);
    if (switchover >= 0) {
        return switchover == 1;
    }
    if (replica->role == TDM_ROLE_BACKUP && node_index == replica->primary_index &&
        replica->fo.phase == TDM_FAILOVER_IDLE && hello->role == TDM_ROLE_HOLDING &&
        h.names_sender && frame->epoch > replica->epoch &&
        replica->peers[node_index].link == TDM_LINK_LIVE) {
        /* Our primary opened a newer epoch and waits for a backup to join it. */
        tdm_replica_follow(replica, actions, node_index, frame->epoch);
        return true;
    }
    uint32_t named = h.last->primary_index;
    if (replica->role == TDM_ROLE_BACKUP && node_index == replica->primary_index &&
        replica->fo.phase == TDM_FAILOVER_IDLE && hello->role == TDM_ROLE_BACKUP &&
        frame->epoch > replica->epoch && h.last->epoch == frame->epoch && named != node_index &&
        named != replica->config.self_index) {
        /* Our primary is a backup of a newer epoch now: follow its primary. */
        tdm_replica_follow(replica, actions, named, frame->epoch);
        return true;
    }
    if (switch_hello_waiting(replica, &h, actions) || switch_hello_acting(replica, &h)) {
        return true;
    }
    bool takes_us = h.last->primary_index == replica->config.self_index &&
                    replica->primary_index != replica->config.self_index &&
                    replica->fo.phase == TDM_FAILOVER_IDLE;
    if (((frame->epoch < replica->epoch && hello->role != TDM_ROLE_BACKUP) || takes_us) &&
        replica->peers[node_index].link != TDM_LINK_DOWN && node_index != replica->primary_index) {
        /* It is behind (a primary of an older epoch), or it takes us for its
         * primary, which we are not (of any epoch: an old primary waiting
         * for us to take its offer learns that we never will): tell it. */
        switch_hello_notice(replica, actions, node_index);
    }
    return false;
}

bool tdm_replica_switch_step(struct tdm_replica *replica, const struct tdm_event *event,
                             struct tdm_actions *actions)
{
    if (event->type == TDM_EVENT_SWITCHOVER) {
        switch_on_command(replica, event, actions);
        return true;
    }
    if (event->type == TDM_EVENT_PERSISTED && event->persisted.kind == TDM_PERSISTED_EPOCHS &&
        replica->sw.planted_persist_expected) {
        replica->sw.planted_persist_expected = false; /* The planted bug's late persist. */
        return true;
    }
    if (event->type == TDM_EVENT_FAILOVER) {
        tdm_replica_failover_on_command(replica, event, actions);
        return true;
    }
    if (replica->role == TDM_ROLE_FAILED) {
        return false;
    }
    tdm_replica_failover_observe(replica, event, actions);
    if (event->type != TDM_EVENT_RECEIVE) {
        return false;
    }
    uint32_t node_index = event->receive.node_index;
    const struct tdm_frame *frame = event->receive.frame;
    switch (frame->type) {
    case TDM_FRAME_HELLO:
        return switch_on_hello(replica, node_index, frame, actions);
    case TDM_FRAME_HEARTBEAT:
        if (frame->epoch < replica->epoch && node_index != replica->primary_index &&
            replica->peers[node_index].link != TDM_LINK_DOWN) {
            /* A primary of an older epoch still takes us for its backup. */
            switch_hello_notice(replica, actions, node_index);
            return true;
        }
        return false;
    case TDM_FRAME_HANDOVER:
        switch_on_handover(replica, node_index, frame, actions);
        return true;
    case TDM_FRAME_HANDOVER_DONE:
        switch_on_handover_done(replica, node_index, frame, actions);
        return true;
    case TDM_FRAME_FENCE:
        tdm_replica_failover_on_fence(replica, node_index, frame, actions);
        return true;
    case TDM_FRAME_FENCED:
        tdm_replica_failover_on_fenced(replica, node_index, frame, actions);
        return true;
    default:
        return false;
    }
}

void tdm_replica_switch_after_step(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_replica_switch *sw = &replica->sw;
    if (replica->role == TDM_ROLE_FAILED) {
        return;
    }
    if (sw->follow_epoch != 0 && !replica->history_pending && !replica->cut_pending) {
        if (sw->follow_epoch > replica->epoch) {
            tdm_replica_follow(replica, actions, sw->follow_index, sw->follow_epoch);
        }
        sw->follow_epoch = 0;
    }
    if (sw->reopen_epoch != 0 && replica->role == TDM_ROLE_PRIMARY &&
        sw->phase == TDM_SWITCH_IDLE && !replica->history_pending && !switch_appending(replica)) {
        if (sw->reopen_epoch > replica->epoch) {
            switch_reopen(replica, actions, sw->reopen_epoch);
        }
        sw->reopen_epoch = 0;
    }
    if (sw->phase == TDM_SWITCH_CATCH_UP) {
        switch_catch_up(replica, actions);
    } else if (sw->phase == TDM_SWITCH_HANDOVER) {
        if (replica->now_ms >= sw->deadline_ms) {
            switch_resume(replica, actions, TDM_REFUSAL_TARGET_TIMEOUT);
        } else if (replica->now_ms >= sw->resend_ms) {
            switch_handover_send(replica, actions);
        }
    } else if (sw->phase == TDM_SWITCH_UNCONFIRMED && replica->now_ms >= sw->resend_ms) {
        switch_done_send(replica, actions, sw->old_index, sw->new_epoch, 0);
        if (replica->peers[sw->old_index].link != TDM_LINK_DOWN) {
            /* Also as HELLO: an old primary that moved on answers it (§8.3). */
            tdm_replica_primary_hello(replica, actions, sw->old_index);
        }
    }
    tdm_replica_failover_after_step(replica, actions);
}

uint64_t tdm_replica_switch_deadline(const struct tdm_replica *replica)
{
    const struct tdm_replica_switch *sw = &replica->sw;
    uint64_t deadline = UINT64_MAX;
    if (replica->role == TDM_ROLE_FAILED) {
        return deadline;
    }
    if (sw->phase == TDM_SWITCH_CATCH_UP) {
        deadline = sw->deadline_ms;
    } else if (sw->phase == TDM_SWITCH_HANDOVER) {
        deadline = tdm_replica_min(sw->deadline_ms, sw->resend_ms);
    } else if (sw->phase == TDM_SWITCH_UNCONFIRMED) {
        deadline = sw->resend_ms;
    }
    deadline = tdm_replica_min(deadline, tdm_replica_failover_deadline(replica));
    tdm_assert(deadline > replica->now_ms);
    return deadline;
}

void tdm_replica_switch_init(struct tdm_replica *replica)
{
    memset(&replica->sw, 0, sizeof(replica->sw));
    replica->sw.phase = TDM_SWITCH_IDLE;
    memset(&replica->fo, 0, sizeof(replica->fo));
    replica->fo.phase = TDM_FAILOVER_IDLE;
    tdm_assert(replica->sw.follow_epoch == 0);
    tdm_assert(replica->fo.answer_epoch == 0);
}

void tdm_replica_switch_invariants(const struct tdm_replica *replica)
{
    const struct tdm_replica_switch *sw = &replica->sw;
    tdm_assert(sw->phase >= TDM_SWITCH_IDLE && sw->phase <= TDM_SWITCH_JOIN);
    switch (sw->phase) {
    case TDM_SWITCH_CATCH_UP:
        tdm_assert(replica->role == TDM_ROLE_HOLDING);
        tdm_assert(replica->epoch == sw->from_epoch);
        break;
    case TDM_SWITCH_OFFER:
    case TDM_SWITCH_RESUME:
        tdm_assert(replica->role == TDM_ROLE_HOLDING);
        tdm_assert(replica->history_pending);
        break;
    case TDM_SWITCH_HANDOVER:
        tdm_assert(replica->role == TDM_ROLE_HOLDING);
        tdm_assert(replica->epoch == sw->new_epoch);
        tdm_assert(replica->history.entries[replica->history.count - 1].primary_index ==
                   sw->target_index);
        break;
    case TDM_SWITCH_TAKEOVER:
        tdm_assert(replica->role == TDM_ROLE_BACKUP);
        break;
    case TDM_SWITCH_UNCONFIRMED:
    case TDM_SWITCH_JOIN:
        tdm_assert(replica->role == TDM_ROLE_HOLDING);
        tdm_assert(replica->primary_index == replica->config.self_index);
        break;
    case TDM_SWITCH_IDLE:
        break;
    }
    if (replica->role == TDM_ROLE_HOLDING) {
        tdm_assert(sw->phase != TDM_SWITCH_IDLE && sw->phase != TDM_SWITCH_TAKEOVER);
    }
}

bool tdm_replica_switch_backup_persisted(struct tdm_replica *replica, struct tdm_actions *actions)
{
    bool takeover = replica->sw.phase == TDM_SWITCH_TAKEOVER;
    bool failover = replica->fo.phase == TDM_FAILOVER_PERSIST;
    if (!takeover && !failover) {
        return false;
    }
    tdm_assert(replica->role == TDM_ROLE_BACKUP);
    tdm_assert(replica->history_pending);
    replica->history_pending = false;
    replica->history = replica->history_next;
    replica->epoch = replica->history.entries[replica->history.count - 1].epoch;
    replica->primary_index = replica->history.entries[replica->history.count - 1].primary_index;
    tdm_assert(replica->primary_index == replica->config.self_index);
    tdm_replica_history_persisted(replica);
    if (takeover) {
        tdm_replica_switch_takeover_persisted(replica, actions);
    } else {
        tdm_replica_failover_promote(replica, actions);
    }
    return true;
}

void tdm_replica_switch_fail(struct tdm_replica *replica, struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_FAILED);
    switch_end_all(replica, actions, TDM_REFUSAL_FAILED);
    replica->sw.follow_epoch = 0;
    replica->sw.pause_epoch = 0;
    replica->fo.answer_epoch = 0;
    replica->fo.phase = TDM_FAILOVER_IDLE; /* PERSIST: its history never acts. */
}
