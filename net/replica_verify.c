/* net/replica_verify.c: continuous comparison of copies (docs/PROTOCOL.md §9;
 * DESIGN "Verification"): the primary proves each backup's copy equal to its
 * own through an LSN by comparing chain hashes there, and on a mismatch finds
 * the first divergent batch by bisection.
 *
 * Happy path, primary, per LIVE backup:
 * 1. A checkpoint is due every verify_interval_ms, at once when the link
 *    becomes LIVE, and as soon as the backup holds the last LSN of a segment
 *    we sealed. Its target is T = min(our durable LSN, the backup's).
 * 2. Read our own batch holding T (a read action; CHAIN_READ answers). If it
 *    ends at T, T is the probe; else the batch before it is read and its end
 *    is the probe. A probe is always a batch end of our log that both hold
 *    durably, so both sides compare at exactly the same LSN.
 * 3. CHECK(probe, our chain hash there) to the backup, which reads its own
 *    batch holding the probe and answers CHECK_RESULT.
 * 4. EQUAL: the backup is verified through the probe, now (a verified action:
 *    the adapter stamps the wall time and keeps it in DIR/verified).
 * 5. DIFFERENT: bisection between the last LSN proven equal (good; an older
 *    claim is checked again first) and the probe (bad): probe the batch end
 *    at or below the middle, move good or bad, until no batch end of ours
 *    lies between them: the batch (good, bad] is the first divergent batch.
 *    It is traced, kept for status, sent to the backup in every later CHECK,
 *    and the backup's durable LSN no longer counts as a copy beyond it.
 * Happy path, backup: CHECK at an LSN it holds durably: read its batch there;
 *    EQUAL if that batch ends at the LSN with the primary's chain hash, else
 *    DIFFERENT; answer with its batch and chain hash. EQUAL makes its own
 *    claim "verified through the LSN" (verified action).
 *
 * Failure modes (none stops the node; the comparison is monitoring):
 * - the backup holds less than the probe (it was cut): ABSENT, no verdict;
 * - a read fails (damage, I/O): the check is dropped (ours) or answered
 *   UNREADABLE (the backup's); the scrubber reports the damage;
 * - a CHECK or CHECK_RESULT lost, or a link that changes while a check is in
 *   flight: the check times out or is dropped, and the next one starts over;
 *   a bisection restarts from scratch on a new link;
 * - a CHECK_RESULT that answers no outstanding CHECK, from another epoch or a
 *   link that is not LIVE: traced and ignored (verify_ignore_*);
 * - claims never stay above what a copy holds: a cut lowers them.
 *
 * Close: nothing to release. */
#include <inttypes.h>
#include <string.h>

#include "engine/base/assert.h"
#include "net/replica.h"
#include "net/replica_internal.h"

/* The planted bug "verify_different_lsn" (meson_options.txt): a backup
 * compares the primary's chain hash at the probe with its own at its last LSN,
 * not at the probe: comparing at different LSNs raises false alarms, which the
 * simulator and tests/unit/test_replica_verify.c catch. */
#ifndef TDM_PLANTED_VERIFY_DIFFERENT_LSN
#define TDM_PLANTED_VERIFY_DIFFERENT_LSN 0
#endif

static bool verify_enabled(const struct tdm_replica *replica)
{
    return replica->config.verify_interval_ms > 0;
}

/* A CHECK unanswered this long is dropped: by then the backup would have
 * started a new handshake anyway (PROTOCOL.md §5.1). */
static uint64_t verify_timeout_ms(const struct tdm_replica *replica)
{
    return 2 * replica->config.handshake_ms;
}

static bool verify_hash_equal(const struct tdm_frame_chain_hash *a,
                              const struct tdm_frame_chain_hash *b)
{
    return memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

void tdm_replica_verify_init(struct tdm_replica *replica)
{
    const struct tdm_replica_config *config = &replica->config;
    struct tdm_verify *verify = &replica->verify;
    memset(verify, 0, sizeof(*verify));
    for (uint32_t i = 0; i < config->node_count; i++) {
        if (i == config->self_index) {
            /* A claim above what the log holds was made for a log that is gone. */
            verify->self.verified_lsn = tdm_replica_min(config->verified_lsn[i], config->last_lsn);
        } else {
            verify->peers[i].verified_lsn = config->verified_lsn[i];
        }
        verify->peers[i].state = TDM_VERIFY_IDLE;
    }
    tdm_assert(verify->self.verified_lsn <= replica->durable_lsn);
    tdm_assert(!verify->self.pending);
}

/* Record that node_index is verified through lsn (one action per node per
 * step: the last claim of a step is the one the adapter keeps). */
static void verify_claim(struct tdm_actions *actions, uint32_t node_index, uint64_t lsn, bool fresh)
{
    tdm_assert(node_index < TDM_REPLICA_NODES_MAX);
    for (uint32_t i = 0; i < actions->verified_count; i++) {
        if (actions->verified[i].node_index == node_index) {
            actions->verified[i].lsn = lsn;
            actions->verified[i].fresh = fresh;
            return;
        }
    }
    tdm_assert(actions->verified_count < TDM_ACTIONS_VERIFIED_MAX);
    actions->verified[actions->verified_count++] =
        (struct tdm_action_verified){.node_index = node_index, .lsn = lsn, .fresh = fresh};
}

static void verify_peer_set(struct tdm_replica *replica, struct tdm_actions *actions,
                            uint32_t node_index, uint64_t lsn, bool fresh)
{
    tdm_assert(node_index != replica->config.self_index);
    tdm_assert(fresh || lsn <= replica->verify.peers[node_index].verified_lsn);
    replica->verify.peers[node_index].verified_lsn = lsn;
    verify_claim(actions, node_index, lsn, fresh);
}

static void verify_self_set(struct tdm_replica *replica, struct tdm_actions *actions, uint64_t lsn,
                            bool fresh)
{
    tdm_assert(lsn <= replica->durable_lsn);
    tdm_assert(fresh || lsn <= replica->verify.self.verified_lsn);
    replica->verify.self.verified_lsn = lsn;
    verify_claim(actions, replica->config.self_index, lsn, fresh);
}

/* Drop what belongs to a link: the read or check in flight, the bisection. */
static void verify_peer_reset(struct tdm_verify_peer *v)
{
    v->state = TDM_VERIFY_IDLE;
    v->link_ms = 0;
    v->read_id = 0;
    v->check_id = 0;
    v->good_lsn = 0;
    v->bad_lsn = 0;
    v->confirm_good = false;
    tdm_assert(v->bad_lsn == 0);
}

static struct tdm_action_read *verify_read_push(struct tdm_replica *replica,
                                                struct tdm_actions *actions, uint64_t lsn)
{
    tdm_assert(lsn >= 1);
    tdm_assert(lsn <= replica->durable_lsn);
    tdm_assert(actions->read_count < TDM_ACTIONS_READS_MAX);
    struct tdm_action_read *read = &actions->reads[actions->read_count++];
    read->read_id = ++replica->verify.read_id_last;
    read->lsn = lsn;
    return read;
}

/* Primary: read our batch holding lsn; the probe it yields must end at or
 * below limit. */
static void verify_read(struct tdm_replica *replica, struct tdm_actions *actions,
                        uint32_t node_index, uint64_t lsn, uint64_t limit)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    tdm_assert(v->state == TDM_VERIFY_IDLE);
    tdm_assert(limit >= 1);
    v->state = TDM_VERIFY_READING;
    v->read_id = verify_read_push(replica, actions, lsn)->read_id;
    v->read_limit = limit;
}

static void verify_check_send(struct tdm_replica *replica, struct tdm_actions *actions,
                              uint32_t node_index, uint64_t lsn,
                              const struct tdm_frame_chain_hash *hash)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    tdm_assert(v->state == TDM_VERIFY_IDLE);
    tdm_assert(lsn >= 1);
    v->state = TDM_VERIFY_CHECKING;
    v->check_id = ++replica->verify.check_id_last;
    v->check_lsn = lsn;
    v->check_hash = *hash;
    v->check_ms = replica->now_ms;
    struct tdm_send *send = tdm_replica_send(replica, actions, node_index, TDM_FRAME_CHECK);
    send->check.check_id = v->check_id;
    send->check.lsn = lsn;
    send->check.chain_hash = *hash;
    send->check.divergent_first = v->divergent_first;
    send->check.divergent_last = v->divergent_last;
}

static void verify_found(struct tdm_replica *replica, uint32_t node_index);

/* The next probe of a bisection: good again if it is an old claim, else the
 * batch end at or below the middle of (good, bad]. */
static void verify_bisect_next(struct tdm_replica *replica, struct tdm_actions *actions,
                               uint32_t node_index)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    tdm_assert(v->bad_lsn > v->good_lsn);
    tdm_assert(v->state == TDM_VERIFY_IDLE);
    if (v->confirm_good) {
        verify_read(replica, actions, node_index, v->good_lsn, v->good_lsn);
        return;
    }
    if (v->bad_lsn - v->good_lsn == 1) {
        verify_found(replica, node_index); /* Both batch ends: (good, bad] is one LSN. */
        return;
    }
    uint64_t middle = v->good_lsn + (v->bad_lsn - v->good_lsn) / 2;
    tdm_assert(middle > v->good_lsn);
    tdm_assert(middle < v->bad_lsn);
    verify_read(replica, actions, node_index, middle, v->bad_lsn - 1);
}

/* No batch end of ours lies in (good, bad): (good, bad] is one batch, the
 * first whose chain hash differs on the backup. */
static void verify_found(struct tdm_replica *replica, uint32_t node_index)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    tdm_assert(v->bad_lsn > v->good_lsn);
    tdm_assert(v->verified_lsn <= v->good_lsn);
    v->divergent_first = v->good_lsn + 1;
    v->divergent_last = v->bad_lsn;
    tdm_replica_tracef(replica,
                       "verify #%u: MISMATCH: first divergent batch lsn %" PRIu64 "..%" PRIu64
                       " (equal through lsn %" PRIu64 ")",
                       node_index, v->divergent_first, v->divergent_last, v->good_lsn);
    v->good_lsn = 0;
    v->bad_lsn = 0;
    v->confirm_good = false;
    v->next_ms = replica->now_ms + replica->config.verify_interval_ms;
}

/* Give up a bisection that cannot go on (the backup holds less now, or cannot
 * read its copy): the next checkpoint starts afresh. */
static void verify_bisect_abandon(struct tdm_replica *replica, uint32_t node_index, const char *why)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    if (v->bad_lsn != 0) {
        tdm_replica_tracef(replica, "verify #%u: bisection abandoned: %s", node_index, why);
    }
    v->good_lsn = 0;
    v->bad_lsn = 0;
    v->confirm_good = false;
    v->next_ms = replica->now_ms + replica->config.verify_interval_ms;
}

/* Our read for node_index's probe came back: batch lsn_first..lsn_last. */
static void verify_on_own_read(struct tdm_replica *replica, struct tdm_actions *actions,
                               uint32_t node_index, const struct tdm_event *event)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    tdm_assert(v->state == TDM_VERIFY_READING);
    v->state = TDM_VERIFY_IDLE;
    uint64_t first = event->chain_read.lsn_first;
    uint64_t last = event->chain_read.lsn_last;
    if (event->chain_read.status != 0 || first == 0 || first > last) {
        tdm_replica_tracef(replica, "verify #%u: reading our own batch failed (%d)", node_index,
                           event->chain_read.status);
        v->next_ms = replica->now_ms + replica->config.verify_interval_ms;
        return;
    }
    if (last <= v->read_limit) {
        tdm_assert(last >= v->good_lsn);
        verify_check_send(replica, actions, node_index, last, &event->chain_read.chain_hash);
        return;
    }
    if (v->bad_lsn != 0 && v->confirm_good) {
        /* The old claim is not even a batch end of our log: it cannot stand. */
        tdm_replica_tracef(replica, "verify #%u: lsn %" PRIu64 " is no batch end: bisect from 0",
                           node_index, v->good_lsn);
        v->confirm_good = false;
        v->good_lsn = 0;
        if (v->verified_lsn > 0) {
            verify_peer_set(replica, actions, node_index, 0, false);
        }
        verify_bisect_next(replica, actions, node_index);
        return;
    }
    if (v->bad_lsn != 0 && last != v->bad_lsn) {
        verify_bisect_abandon(replica, node_index, "our batches moved");
        return;
    }
    /* The batch holding the LSN asked for ends beyond the limit: the probe is
     * the end of the batch before it, if that is still above the floor. */
    uint64_t floor = v->bad_lsn != 0 ? v->good_lsn : 0;
    if (first - 1 > floor) {
        verify_read(replica, actions, node_index, first - 1, v->read_limit);
    } else if (v->bad_lsn != 0) {
        verify_found(replica, node_index);
    }
}

static void verify_equal(struct tdm_replica *replica, struct tdm_actions *actions,
                         uint32_t node_index, uint64_t lsn)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    tdm_assert(v->state == TDM_VERIFY_IDLE);
    if (lsn >= v->verified_lsn) {
        verify_peer_set(replica, actions, node_index, lsn, true);
    }
    if (v->divergent_last != 0 && lsn >= v->divergent_last) {
        tdm_replica_tracef(replica,
                           "verify #%u: equal at lsn %" PRIu64 ": the divergent batch lsn %" PRIu64
                           "..%" PRIu64 " is gone",
                           node_index, lsn, v->divergent_first, v->divergent_last);
        v->divergent_first = 0;
        v->divergent_last = 0;
    }
    if (v->bad_lsn == 0) {
        return;
    }
    if (v->confirm_good) {
        tdm_assert(lsn == v->good_lsn);
        v->confirm_good = false;
    } else {
        tdm_assert(lsn > v->good_lsn);
        tdm_assert(lsn < v->bad_lsn);
        v->good_lsn = lsn;
    }
    verify_bisect_next(replica, actions, node_index);
}

static void verify_different(struct tdm_replica *replica, struct tdm_actions *actions,
                             uint32_t node_index, uint64_t lsn)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    tdm_assert(v->state == TDM_VERIFY_IDLE);
    if (v->bad_lsn == 0) {
        if (v->divergent_first != 0 && lsn >= v->divergent_first) {
            return; /* The divergence we know of, still there. */
        }
        v->mismatches_found++;
        v->bad_lsn = lsn;
        v->good_lsn = v->verified_lsn < lsn ? v->verified_lsn : 0;
        v->confirm_good = v->good_lsn > 0;
        tdm_replica_tracef(replica,
                           "verify #%u: chain hashes differ at lsn %" PRIu64
                           ": bisecting from lsn %" PRIu64,
                           node_index, lsn, v->good_lsn);
    } else if (v->confirm_good) {
        tdm_assert(lsn == v->good_lsn);
        tdm_replica_tracef(replica,
                           "verify #%u: differs at lsn %" PRIu64
                           " too, which it was verified through: bisecting from 0",
                           node_index, lsn);
        v->confirm_good = false;
        v->bad_lsn = lsn;
        v->good_lsn = 0;
    } else {
        tdm_assert(lsn > v->good_lsn);
        tdm_assert(lsn < v->bad_lsn);
        v->bad_lsn = lsn;
    }
    if (v->verified_lsn >= lsn) {
        verify_peer_set(replica, actions, node_index, v->good_lsn, false);
    }
    verify_bisect_next(replica, actions, node_index);
}

static bool verify_ignore_check_result(const struct tdm_replica *replica, uint32_t node_index,
                                       const struct tdm_frame *frame)
{
    const struct tdm_frame_check_result *result = &frame->check_result;
    const struct tdm_replica_peer *peer = &replica->peers[node_index];
    const struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    const char *why = NULL;
    if (replica->role != TDM_ROLE_PRIMARY) {
        why = "not acting as primary";
    } else if (frame->epoch != replica->epoch) {
        why = "other epoch";
    } else if (peer->link != TDM_LINK_LIVE || v->link_ms != peer->link_ms) {
        why = "not on the link of the CHECK";
    } else if (v->state != TDM_VERIFY_CHECKING || result->check_id != v->check_id ||
               result->lsn != v->check_lsn) {
        why = "answers no outstanding CHECK";
    } else if (result->result < TDM_CHECK_EQUAL || result->result >= TDM_CHECK__COUNT) {
        why = "verdict out of range";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore CHECK_RESULT from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

void tdm_replica_verify_on_check_result(struct tdm_replica *replica, uint32_t node_index,
                                        const struct tdm_frame *frame, struct tdm_actions *actions)
{
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    if (verify_ignore_check_result(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_check_result *result = &frame->check_result;
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    v->state = TDM_VERIFY_IDLE;
    uint64_t lsn = v->check_lsn;
    if (result->result == TDM_CHECK_ABSENT || result->result == TDM_CHECK_UNREADABLE) {
        tdm_replica_tracef(replica, "verify #%u: no verdict at lsn %" PRIu64 ": %s", node_index,
                           lsn,
                           result->result == TDM_CHECK_ABSENT ? "it does not hold it"
                                                              : "it cannot read its batch");
        verify_bisect_abandon(replica, node_index, "no verdict");
        return;
    }
    /* We judge by the hashes ourselves; the backup's verdict must agree. */
    bool equal =
        result->batch_last == lsn && verify_hash_equal(&result->chain_hash, &v->check_hash);
    if (equal != (result->result == TDM_CHECK_EQUAL)) {
        tdm_replica_tracef(replica,
                           "verify #%u: its verdict at lsn %" PRIu64 " disagrees with its hash",
                           node_index, lsn);
        if (equal) {
            verify_bisect_abandon(replica, node_index, "contradictory answer");
            return;
        }
    }
    if (equal) {
        verify_equal(replica, actions, node_index, lsn);
    } else {
        verify_different(replica, actions, node_index, lsn);
    }
}

/* A regular checkpoint (or a sealed segment's end) for a LIVE backup. */
static void verify_checkpoint(struct tdm_replica *replica, struct tdm_actions *actions,
                              uint32_t node_index)
{
    struct tdm_verify_peer *v = &replica->verify.peers[node_index];
    const struct tdm_replica_peer *peer = &replica->peers[node_index];
    uint64_t now = replica->now_ms;
    uint64_t held = tdm_replica_min(replica->durable_lsn, peer->durable_lsn);
    if (v->seal_lsn != 0 && v->seal_lsn <= v->verified_lsn) {
        v->seal_lsn = 0; /* Proven already. */
    }
    bool seal_due = v->seal_lsn != 0 && v->seal_lsn <= held;
    if (!seal_due && now < v->next_ms) {
        return;
    }
    v->next_ms = now + replica->config.verify_interval_ms;
    if (v->bad_lsn != 0) {
        verify_bisect_next(replica, actions, node_index); /* After a failed read. */
        return;
    }
    uint64_t target = seal_due ? v->seal_lsn : held;
    v->seal_lsn = seal_due ? 0 : v->seal_lsn;
    if (target == 0) {
        /* Nothing held on both sides: the empty histories are equal. */
        verify_peer_set(replica, actions, node_index, 0, true);
        return;
    }
    verify_read(replica, actions, node_index, target, target);
}

void tdm_replica_verify_primary(struct tdm_replica *replica, struct tdm_actions *actions)
{
    if (!verify_enabled(replica) || replica->role != TDM_ROLE_PRIMARY) {
        return;
    }
    uint64_t now = replica->now_ms;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        if (i == replica->config.self_index) {
            continue;
        }
        struct tdm_verify_peer *v = &replica->verify.peers[i];
        const struct tdm_replica_peer *peer = &replica->peers[i];
        if (peer->link != TDM_LINK_LIVE) {
            if (v->link_ms != 0) {
                verify_peer_reset(v);
            }
            continue;
        }
        if (v->link_ms != peer->link_ms) {
            verify_peer_reset(v);
            v->link_ms = peer->link_ms;
            v->next_ms = now; /* A new LIVE link is checked at once. */
        }
        if (v->verified_lsn > peer->durable_lsn) {
            verify_peer_set(replica, actions, i, peer->durable_lsn, false); /* It was cut. */
        }
        if (v->state == TDM_VERIFY_CHECKING && now >= v->check_ms + verify_timeout_ms(replica)) {
            tdm_replica_tracef(replica, "verify #%u: CHECK at lsn %" PRIu64 " unanswered", i,
                               v->check_lsn);
            v->state = TDM_VERIFY_IDLE;
            v->next_ms = now;
        }
        if (v->state == TDM_VERIFY_IDLE) {
            verify_checkpoint(replica, actions, i);
        }
    }
}

void tdm_replica_verify_on_sealed(struct tdm_replica *replica, uint64_t lsn_last)
{
    tdm_assert(lsn_last >= 1);
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        if (i != replica->config.self_index) {
            replica->verify.peers[i].seal_lsn = lsn_last;
        }
    }
}

/* --- Backup ------------------------------------------------------------------ */

static bool verify_ignore_check(const struct tdm_replica *replica, uint32_t node_index,
                                const struct tdm_frame *frame)
{
    const struct tdm_frame_check *check = &frame->check;
    const char *why = NULL;
    if (replica->role != TDM_ROLE_BACKUP) {
        why = "not a backup";
    } else if (node_index != replica->primary_index) {
        why = "not our primary";
    } else if (replica->peers[node_index].link != TDM_LINK_LIVE) {
        why = "handshake not done";
    } else if (frame->epoch != replica->epoch) {
        why = "other epoch";
    } else if (check->check_id == 0 || check->lsn == 0 ||
               (check->divergent_first == 0) != (check->divergent_last == 0) ||
               check->divergent_first > check->divergent_last) {
        why = "malformed";
    }
    if (why != NULL) {
        tdm_replica_tracef(replica, "ignore CHECK from #%u: %s", node_index, why);
        return true;
    }
    return false;
}

static void verify_result_send(struct tdm_replica *replica, struct tdm_actions *actions,
                               const struct tdm_frame_check *check, enum tdm_check_result result,
                               uint64_t batch_first, uint64_t batch_last,
                               const struct tdm_frame_chain_hash *hash)
{
    struct tdm_send *send =
        tdm_replica_send(replica, actions, replica->primary_index, TDM_FRAME_CHECK_RESULT);
    send->check_result.check_id = check->check_id;
    send->check_result.lsn = check->lsn;
    send->check_result.result = (uint8_t)result;
    if (hash != NULL) {
        send->check_result.batch_first = batch_first;
        send->check_result.batch_last = batch_last;
        send->check_result.chain_hash = *hash;
    }
}

/* The backup's own comparison of its batch lsn_first..lsn_last (chain hash
 * hash at lsn_last) with the primary's chain hash at check->lsn. */
static void verify_self_judge(struct tdm_replica *replica, struct tdm_actions *actions,
                              const struct tdm_frame_check *check, uint64_t lsn_first,
                              uint64_t lsn_last, const struct tdm_frame_chain_hash *hash)
{
    struct tdm_verify_self *self = &replica->verify.self;
    uint64_t lsn = check->lsn;
    tdm_assert(lsn <= replica->durable_lsn);
    if (lsn_first == 0 || lsn_first > lsn || lsn > lsn_last) {
        tdm_replica_tracef(replica, "verify: our batch read at lsn %" PRIu64 " does not hold it",
                           lsn);
        verify_result_send(replica, actions, check, TDM_CHECK_UNREADABLE, 0, 0, NULL);
        return;
    }
    if (lsn_last == lsn && verify_hash_equal(hash, &check->chain_hash)) {
        if (lsn >= self->verified_lsn) {
            verify_self_set(replica, actions, lsn, true);
        }
        if (self->divergent_last != 0 && lsn >= self->divergent_last) {
            self->divergent_first = 0;
            self->divergent_last = 0;
        }
        verify_result_send(replica, actions, check, TDM_CHECK_EQUAL, lsn_first, lsn_last, hash);
        return;
    }
    if (self->divergent_first == 0 || lsn < self->divergent_first) {
        self->mismatches_found++; /* Not the divergence the primary already named. */
        tdm_replica_tracef(replica,
                           "verify: our copy differs from the primary's at lsn %" PRIu64
                           " (our batch lsn %" PRIu64 "..%" PRIu64 ")",
                           lsn, lsn_first, lsn_last);
    }
    if (self->verified_lsn >= lsn) {
        verify_self_set(replica, actions, 0, false);
    }
    verify_result_send(replica, actions, check, TDM_CHECK_DIFFERENT, lsn_first, lsn_last, hash);
}

void tdm_replica_verify_on_check(struct tdm_replica *replica, uint32_t node_index,
                                 const struct tdm_frame *frame, struct tdm_actions *actions)
{
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    if (verify_ignore_check(replica, node_index, frame)) {
        return;
    }
    const struct tdm_frame_check *check = &frame->check;
    struct tdm_verify_self *self = &replica->verify.self;
    if (check->divergent_first != self->divergent_first ||
        check->divergent_last != self->divergent_last) {
        self->divergent_first = check->divergent_first;
        self->divergent_last = check->divergent_last;
        if (self->divergent_first != 0) {
            tdm_replica_tracef(replica,
                               "verify: MISMATCH: the primary names lsn %" PRIu64 "..%" PRIu64
                               " the first divergent batch of our copy",
                               self->divergent_first, self->divergent_last);
        }
    }
    if (self->divergent_first != 0 && self->verified_lsn >= self->divergent_first) {
        verify_self_set(replica, actions, self->divergent_first - 1, false);
    }
    if (check->lsn > replica->durable_lsn) {
        verify_result_send(replica, actions, check, TDM_CHECK_ABSENT, 0, 0, NULL);
        return;
    }
    if (TDM_PLANTED_VERIFY_DIFFERENT_LSN) {
        /* The planted bug: our chain hash at our last LSN stands for the probe's. */
        verify_self_judge(replica, actions, check, check->lsn, replica->last_lsn,
                          &replica->chain_hash);
        return;
    }
    self->pending = true;
    self->check = *check;
    self->link_ms = replica->peers[node_index].link_ms;
    self->epoch = replica->epoch;
    self->read_id = verify_read_push(replica, actions, check->lsn)->read_id;
}

static void verify_self_on_read(struct tdm_replica *replica, const struct tdm_event *event,
                                struct tdm_actions *actions)
{
    struct tdm_verify_self *self = &replica->verify.self;
    if (!self->pending || event->chain_read.read_id != self->read_id) {
        return; /* A CHECK since replaced this one. */
    }
    self->pending = false;
    const struct tdm_replica_peer *peer = &replica->peers[replica->primary_index];
    if (peer->link != TDM_LINK_LIVE || peer->link_ms != self->link_ms ||
        replica->epoch != self->epoch) {
        tdm_replica_tracef(replica, "verify: CHECK at lsn %" PRIu64 " dropped: the link changed",
                           self->check.lsn);
        return;
    }
    if (event->chain_read.status != 0) {
        tdm_replica_tracef(replica, "verify: reading our batch at lsn %" PRIu64 " failed (%d)",
                           self->check.lsn, event->chain_read.status);
        verify_result_send(replica, actions, &self->check, TDM_CHECK_UNREADABLE, 0, 0, NULL);
        return;
    }
    verify_self_judge(replica, actions, &self->check, event->chain_read.lsn_first,
                      event->chain_read.lsn_last, &event->chain_read.chain_hash);
}

/* --- Both ---------------------------------------------------------------------- */

void tdm_replica_verify_on_read(struct tdm_replica *replica, const struct tdm_event *event,
                                struct tdm_actions *actions)
{
    tdm_assert(event->type == TDM_EVENT_CHAIN_READ);
    tdm_assert(event->chain_read.read_id <= replica->verify.read_id_last);
    if (replica->role == TDM_ROLE_BACKUP) {
        verify_self_on_read(replica, event, actions);
        return;
    }
    /* HOLDING (a switchover, PROTOCOL.md §8.1) keeps its links LIVE: a read
     * dropped here would leave the peer READING for good. */
    if (replica->role != TDM_ROLE_PRIMARY && replica->role != TDM_ROLE_HOLDING) {
        return;
    }
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_verify_peer *v = &replica->verify.peers[i];
        if (i != replica->config.self_index && v->state == TDM_VERIFY_READING &&
            v->read_id == event->chain_read.read_id) {
            verify_on_own_read(replica, actions, i, event);
            return;
        }
    }
}

void tdm_replica_verify_after_step(struct tdm_replica *replica, struct tdm_actions *actions)
{
    struct tdm_verify_self *self = &replica->verify.self;
    if (replica->role == TDM_ROLE_BACKUP && self->verified_lsn > replica->durable_lsn) {
        verify_self_set(replica, actions, replica->durable_lsn, false); /* It was cut. */
    }
}

uint64_t tdm_replica_verify_deadline(const struct tdm_replica *replica)
{
    if (!verify_enabled(replica) || replica->role != TDM_ROLE_PRIMARY) {
        return UINT64_MAX;
    }
    uint64_t deadline = UINT64_MAX;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        const struct tdm_verify_peer *v = &replica->verify.peers[i];
        if (i == replica->config.self_index || replica->peers[i].link != TDM_LINK_LIVE) {
            continue;
        }
        if (v->state == TDM_VERIFY_IDLE) {
            deadline = tdm_replica_min(deadline, v->next_ms);
        } else if (v->state == TDM_VERIFY_CHECKING) {
            deadline = tdm_replica_min(deadline, v->check_ms + verify_timeout_ms(replica));
        }
    }
    return deadline == UINT64_MAX ? deadline : tdm_replica_max(deadline, replica->now_ms + 1);
}

uint64_t tdm_replica_verify_countable(const struct tdm_replica *replica, uint32_t node_index)
{
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    uint64_t durable = replica->peers[node_index].durable_lsn;
    uint64_t divergent = replica->verify.peers[node_index].divergent_first;
    if (divergent != 0 && durable >= divergent) {
        return divergent - 1;
    }
    return durable;
}

void tdm_replica_verify_status(const struct tdm_replica *replica, struct tdm_replica_status *status)
{
    uint32_t self_index = replica->config.self_index;
    const struct tdm_verify *verify = &replica->verify;
    bool primary = replica->primary_index == self_index;
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_replica_node_status *node = &status->nodes[i];
        const struct tdm_verify_peer *v = &verify->peers[i];
        if (primary && i != self_index) {
            node->verify_known = verify_enabled(replica);
            node->verified_lsn = v->verified_lsn;
            node->mismatches_found = v->mismatches_found;
            node->divergent_first = v->divergent_first;
            node->divergent_last = v->divergent_last;
            node->bisecting = v->bad_lsn != 0;
        } else if (primary) {
            /* The reference copy: proven equal to another copy through the
             * highest LSN any backup was verified through. */
            node->verify_known = verify_enabled(replica);
            for (uint32_t j = 0; j < replica->config.node_count; j++) {
                if (j != self_index) {
                    node->verified_lsn =
                        tdm_replica_max(node->verified_lsn, verify->peers[j].verified_lsn);
                    node->mismatches_found += verify->peers[j].mismatches_found;
                }
            }
        } else if (i == self_index) {
            node->verify_known = true;
            node->verified_lsn = verify->self.verified_lsn;
            node->mismatches_found = verify->self.mismatches_found;
            node->divergent_first = verify->self.divergent_first;
            node->divergent_last = verify->self.divergent_last;
        } else if (i == replica->primary_index) {
            node->verify_known = true; /* Equal to ours through there. */
            node->verified_lsn = verify->self.verified_lsn;
        }
    }
}

void tdm_replica_verify_invariants(const struct tdm_replica *replica)
{
    const struct tdm_verify *verify = &replica->verify;
    tdm_assert(verify->check_id_last <= UINT64_MAX - 1);
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        const struct tdm_verify_peer *v = &verify->peers[i];
        tdm_assert(v->state >= TDM_VERIFY_IDLE);
        tdm_assert(v->state <= TDM_VERIFY_CHECKING);
        tdm_assert((v->divergent_first == 0) == (v->divergent_last == 0));
        tdm_assert(v->divergent_first <= v->divergent_last);
        if (v->bad_lsn != 0) {
            tdm_assert(v->good_lsn < v->bad_lsn);
            tdm_assert(v->verified_lsn < v->bad_lsn);
        }
        const struct tdm_replica_peer *peer = &replica->peers[i];
        if (replica->role == TDM_ROLE_PRIMARY && i != replica->config.self_index &&
            peer->link == TDM_LINK_LIVE && v->link_ms == peer->link_ms) {
            tdm_assert(v->verified_lsn <= peer->durable_lsn);
        }
    }
    if (replica->role == TDM_ROLE_BACKUP) {
        tdm_assert(verify->self.verified_lsn <= replica->durable_lsn);
    }
}
