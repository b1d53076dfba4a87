/* net/replica.c: tdm_replica_step(): dispatch, the role transition table, the
 * write table, status and the invariants checked after every step
 * (docs/PROTOCOL.md §4-§6; STYLE B1, B6).
 *
 * Happy path of one step:
 * 1. Reset the caller's actions (counts only: the arrays are not cleared).
 * 2. On the first step, start the role the persisted history gives: the
 *    primary of the last entry opens a new epoch, or, as a new cluster's first
 *    primary, acts in epoch 1 at once (replica_primary.c); any other node
 *    becomes a backup (replica_backup.c).
 * 3. Hand the event to the role's handlers; they filter untrusted frames
 *    (*_ignore_*), then change state and append actions.
 * 4. Compute the next deadline, then check replica_invariants().
 *
 * Failure modes:
 * - a frame that breaks the protocol is traced and ignored (never asserted);
 * - a disk completion with a negative status (the epoch file, a cut, an
 *   fdatasync) moves the node to FAILED: every write in flight fails with
 *   that status and the node acts no more until the adapter restarts it from
 *   the engine's recovered state (STYLE B1.6: no fsync is retried);
 * - a broken invariant or an event that breaks the adapter contract (a
 *   PERSISTED the replica did not ask for, time going backwards) is our own bug
 *   and asserts.
 *
 * Close: nothing to do; the replica owns no resources. */
#include "net/replica.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/assert.h"
#include "engine/base/error.h"
#include "net/replica_internal.h"

static const uint32_t role_moves_allowed[TDM_ROLE__COUNT] = {
    /* A restarted primary: acts, waits for the old primary's confirmation of a
     * switchover's epoch (HOLDING), or follows a higher epoch. */
    [TDM_ROLE_RECOVERING] = TDM_BIT(TDM_ROLE_BACKUP) | TDM_BIT(TDM_ROLE_PRIMARY) |
                            TDM_BIT(TDM_ROLE_HOLDING) | TDM_BIT(TDM_ROLE_FAILED),
    /* Promoted by a failover (PRIMARY) or handed an epoch by a switchover (HOLDING). */
    [TDM_ROLE_BACKUP] =
        TDM_BIT(TDM_ROLE_PRIMARY) | TDM_BIT(TDM_ROLE_HOLDING) | TDM_BIT(TDM_ROLE_FAILED),
    [TDM_ROLE_PRIMARY] =
        TDM_BIT(TDM_ROLE_HOLDING) | TDM_BIT(TDM_ROLE_BACKUP) | TDM_BIT(TDM_ROLE_FAILED),
    [TDM_ROLE_HOLDING] =
        TDM_BIT(TDM_ROLE_PRIMARY) | TDM_BIT(TDM_ROLE_BACKUP) | TDM_BIT(TDM_ROLE_FAILED),
    [TDM_ROLE_FAILED] = 0, /* Terminal until restart. */
};

const char *tdm_replica_role_name(enum tdm_role role)
{
    switch (role) {
    case TDM_ROLE_RECOVERING:
        return "recovering";
    case TDM_ROLE_BACKUP:
        return "backup";
    case TDM_ROLE_PRIMARY:
        return "primary";
    case TDM_ROLE_HOLDING:
        return "holding";
    case TDM_ROLE_FAILED:
        return "failed";
    case TDM_ROLE__COUNT:
        break;
    }
    return "unknown";
}

void tdm_replica_tracef(const struct tdm_replica *replica, const char *format, ...)
{
    tdm_assert(replica != NULL);
    tdm_assert(format != NULL);
    if (replica->config.trace == NULL) {
        return;
    }
    char line[TDM_REPLICA_TRACE_SIZE];
    int prefix =
        snprintf(line, sizeof(line), "%" PRIu64 " #%u %s e%" PRIu64 ": ", replica->now_ms,
                 replica->config.self_index, tdm_replica_role_name(replica->role), replica->epoch);
    if (prefix < 0 || (size_t)prefix >= sizeof(line)) {
        return;
    }
    va_list args;
    va_start(args, format);
    (void)vsnprintf(line + prefix, sizeof(line) - (size_t)prefix, format, args);
    va_end(args);
    replica->config.trace(replica->config.trace_data, line);
}

void tdm_replica_role_move(struct tdm_replica *replica, enum tdm_role next)
{
    tdm_assert(next > 0);
    tdm_assert(next < TDM_ROLE__COUNT);
    tdm_assert((role_moves_allowed[replica->role] & TDM_BIT(next)) != 0);
    tdm_replica_tracef(replica, "role %s -> %s", tdm_replica_role_name(replica->role),
                       tdm_replica_role_name(next));
    replica->role = next;
}

struct tdm_send *tdm_replica_send(struct tdm_replica *replica, struct tdm_actions *actions,
                                  uint32_t node_index, enum tdm_frame_type type)
{
    tdm_assert(node_index < replica->config.node_count);
    tdm_assert(node_index != replica->config.self_index);
    tdm_assert(actions->send_count < TDM_ACTIONS_SENDS_MAX);
    struct tdm_send *send = &actions->sends[actions->send_count++];
    memset(send, 0, sizeof(*send));
    send->node_index = node_index;
    send->type = (uint16_t)type;
    send->epoch = replica->epoch;
    return send;
}

struct tdm_action_write *tdm_replica_write_action(struct tdm_replica *replica,
                                                  struct tdm_actions *actions,
                                                  enum tdm_write_kind kind)
{
    tdm_assert(actions->write_count < TDM_ACTIONS_WRITES_MAX);
    tdm_assert(kind == TDM_WRITE_LOCAL || kind == TDM_WRITE_RECEIVED);
    struct tdm_action_write *write = &actions->writes[actions->write_count++];
    memset(write, 0, sizeof(*write));
    write->kind = kind;
    write->epoch = replica->epoch;
    return write;
}

void tdm_replica_result(struct tdm_actions *actions, uint64_t write_id, int status,
                        uint64_t lsn_first, uint64_t lsn_last)
{
    tdm_assert(actions->result_count < TDM_ACTIONS_RESULTS_MAX);
    tdm_assert(status <= 0);
    struct tdm_action_result *result = &actions->results[actions->result_count++];
    result->write_id = write_id;
    result->status = status;
    result->lsn_first = status == 0 ? lsn_first : 0;
    result->lsn_last = status == 0 ? lsn_last : 0;
}

struct tdm_replica_write *tdm_replica_write_add(struct tdm_replica *replica, uint64_t write_id,
                                                enum tdm_write_state state)
{
    tdm_assert(replica->write_count <= TDM_REPLICA_WRITES_MAX);
    tdm_assert(tdm_replica_write_find(replica, write_id) == NULL);
    if (replica->write_count == TDM_REPLICA_WRITES_MAX) {
        return NULL;
    }
    struct tdm_replica_write *write = &replica->writes[replica->write_count++];
    memset(write, 0, sizeof(*write));
    write->write_id = write_id;
    write->state = state;
    write->origin_index = replica->config.self_index;
    return write;
}

struct tdm_replica_write *tdm_replica_write_find(struct tdm_replica *replica, uint64_t write_id)
{
    tdm_assert(replica->write_count <= TDM_REPLICA_WRITES_MAX);
    for (uint32_t i = 0; i < replica->write_count; i++) {
        if (replica->writes[i].write_id == write_id) {
            return &replica->writes[i];
        }
    }
    return NULL;
}

void tdm_replica_write_remove(struct tdm_replica *replica, struct tdm_replica_write *write)
{
    tdm_assert(write >= replica->writes);
    tdm_assert(write < replica->writes + replica->write_count);
    size_t index = (size_t)(write - replica->writes);
    size_t after = replica->write_count - index - 1;
    memmove(write, write + 1, after * sizeof(*write));
    replica->write_count--;
}

bool tdm_replica_forward_lost(const struct tdm_replica *replica,
                              const struct tdm_replica_write *write)
{
    return write->state == TDM_WRITE_FORWARDED && write->forward_index != replica->primary_index &&
           write->forward_index < replica->config.node_count &&
           write->forward_index != replica->config.self_index &&
           replica->peers[write->forward_index].link == TDM_LINK_DOWN;
}

void tdm_replica_forward_link_lost(struct tdm_replica *replica, struct tdm_actions *actions,
                                   uint32_t node_index)
{
    for (uint32_t i = 0; i < replica->write_count;) {
        struct tdm_replica_write *write = &replica->writes[i];
        if (write->state == TDM_WRITE_FORWARDED && write->forward_index == node_index) {
            tdm_replica_tracef(replica,
                               "write %" PRIu64 " was forwarded to #%u on a link that dropped: "
                               "not acknowledged",
                               write->write_id, node_index);
            tdm_replica_result(actions, write->write_id, TANDEM_ECOPIES, 0, 0);
            tdm_replica_write_remove(replica, write);
        } else {
            i++;
        }
    }
}

void tdm_replica_fail(struct tdm_replica *replica, struct tdm_actions *actions, int status,
                      const char *what)
{
    tdm_assert(status < 0);
    tdm_assert(replica->role != TDM_ROLE_FAILED);
    tdm_replica_tracef(replica, "%s failed (%d): the node stops", what, status);
    tdm_replica_role_move(replica, TDM_ROLE_FAILED);
    for (uint32_t i = 0; i < replica->write_count; i++) {
        const struct tdm_replica_write *write = &replica->writes[i];
        if (write->origin_index == replica->config.self_index) {
            tdm_replica_result(actions, write->write_id, TANDEM_EFAILED, 0, 0);
        }
    }
    replica->write_count = 0;
    replica->history_pending = false;
    replica->cut_pending = false;
    tdm_replica_switch_fail(replica, actions);
}

static void config_check(const struct tdm_replica_config *config)
{
    tdm_assert(config->node_count >= 1);
    tdm_assert(config->node_count <= TDM_REPLICA_NODES_MAX);
    tdm_assert(config->self_index < config->node_count);
    tdm_assert(config->min_copies >= 1);
    tdm_assert(config->min_copies <= config->node_count);
    tdm_assert(config->write_deadline_ms >= 1);
    tdm_assert(config->write_deadline_ms <= TDM_REPLICA_WRITE_DEADLINE_MS_MAX);
    tdm_assert(config->heartbeat_ms > 0);
    tdm_assert(config->retransmit_ms > 0);
    tdm_assert(config->handshake_ms > config->heartbeat_ms);
    tdm_assert(config->pipeline_batches_max >= 1);
    tdm_assert(config->pipeline_batches_max <= TDM_PIPELINE_BATCHES_MAX);
    tdm_assert(config->pipeline_size_max >= 1);
    tdm_assert(config->pipeline_size_max <= TDM_PIPELINE_BYTES_MAX);
    tdm_assert(config->history != NULL);
    tdm_assert(tdm_replica_history_valid(config->history, config->node_count));
    tdm_assert(config->last_epoch <= config->history->entries[config->history->count - 1].epoch);
    tdm_assert((config->last_lsn == 0) == (config->last_epoch == 0));
}

void tdm_replica_init(struct tdm_replica *replica, const struct tdm_replica_config *config)
{
    tdm_assert(replica != NULL);
    config_check(config);
    memset(replica, 0, sizeof(*replica));
    replica->config = *config;
    replica->history = *config->history;
    replica->config.history = &replica->history;
    replica->role = TDM_ROLE_RECOVERING;
    replica->epoch = replica->history.entries[replica->history.count - 1].epoch;
    replica->primary_index = replica->history.entries[replica->history.count - 1].primary_index;
    replica->last_lsn = config->last_lsn;
    replica->last_epoch = config->last_epoch;
    replica->chain_hash = config->chain_hash;
    /* The engine's recovery leaves only durable batches behind. */
    replica->durable_lsn = config->last_lsn;
    replica->forward_id_next = TDM_REPLICA_WRITE_ID_FORWARDED;
    for (uint32_t i = 0; i < config->node_count; i++) {
        replica->peers[i].link = TDM_LINK_DOWN;
        replica->peers[i].role = TDM_ROLE_RECOVERING;
    }
    tdm_assert(replica->durable_lsn == replica->last_lsn);
    tdm_replica_verify_init(replica);
    tdm_replica_switch_init(replica);
}

static void actions_reset(struct tdm_replica *replica, struct tdm_actions *actions)
{
    actions->history_to_persist = NULL;
    actions->cut = false;
    actions->cut_after_lsn = 0;
    actions->write_count = 0;
    actions->send_count = 0;
    actions->history = &replica->history;
    actions->lag_count = 0;
    actions->lags = replica->lags;
    actions->result_count = 0;
    actions->deadline_ms = UINT64_MAX;
    actions->read_count = 0;
    actions->verified_count = 0;
    actions->history_new = NULL;
    actions->report_count = 0;
}

/* A node that has stopped still answers its local clients, with EFAILED. */
static void failed_step(struct tdm_replica *replica, const struct tdm_event *event,
                        struct tdm_actions *actions)
{
    tdm_assert(replica->role == TDM_ROLE_FAILED);
    tdm_assert(replica->write_count == 0);
    if (event->type == TDM_EVENT_SUBMIT) {
        tdm_replica_result(actions, event->submit.write_id, TANDEM_EFAILED, 0, 0);
    }
}

static bool replica_is_primary_node(const struct tdm_replica *replica)
{
    return replica->primary_index == replica->config.self_index;
}

static uint64_t replica_deadline(const struct tdm_replica *replica)
{
    uint64_t deadline = UINT64_MAX;
    for (uint32_t i = 0; i < replica->write_count; i++) {
        deadline = tdm_replica_min(deadline, replica->writes[i].deadline_ms);
    }
    if (replica->role == TDM_ROLE_PRIMARY || replica->role == TDM_ROLE_HOLDING ||
        (replica->role == TDM_ROLE_RECOVERING && replica_is_primary_node(replica))) {
        deadline = tdm_replica_min(deadline, tdm_replica_primary_deadline(replica));
        deadline = tdm_replica_min(deadline, tdm_replica_verify_deadline(replica));
    } else if (replica->role == TDM_ROLE_BACKUP) {
        deadline = tdm_replica_min(deadline, tdm_replica_backup_deadline(replica));
    }
    deadline = tdm_replica_min(deadline, tdm_replica_switch_deadline(replica));
    tdm_assert(deadline > 0);
    return deadline;
}

static void replica_invariants(const struct tdm_replica *replica)
{
    const struct tdm_replica_config *config = &replica->config;
    tdm_assert(replica->role >= TDM_ROLE_RECOVERING);
    tdm_assert(replica->role < TDM_ROLE__COUNT);
    tdm_assert(tdm_replica_history_valid(&replica->history, config->node_count));
    tdm_assert(replica->epoch == replica->history.entries[replica->history.count - 1].epoch);
    tdm_assert(replica->durable_lsn <= replica->last_lsn);
    tdm_assert(replica->last_epoch <= replica->epoch);
    tdm_assert((replica->last_lsn == 0) == (replica->last_epoch == 0));
    tdm_assert(replica->write_count <= TDM_REPLICA_WRITES_MAX);
    tdm_assert(!(replica->history_pending && replica->cut_pending));
    if (replica->history_pending) {
        tdm_assert(replica->history_next.entries[replica->history_next.count - 1].epoch >=
                   replica->epoch);
    }
    for (uint32_t i = 0; i < replica->write_count; i++) {
        const struct tdm_replica_write *write = &replica->writes[i];
        tdm_assert(write->state >= TDM_WRITE_HELD);
        tdm_assert(write->state <= TDM_WRITE_FORWARDED);
        tdm_assert(write->lsn_first <= write->lsn_last);
    }
    if (replica->role == TDM_ROLE_FAILED) {
        tdm_assert(replica->write_count == 0);
    }
    if (replica->role == TDM_ROLE_PRIMARY || replica->role == TDM_ROLE_HOLDING) {
        tdm_assert(replica_is_primary_node(replica));
        tdm_replica_primary_invariants(replica);
    }
    if (replica->role == TDM_ROLE_BACKUP) {
        tdm_replica_backup_invariants(replica);
    }
    tdm_replica_verify_invariants(replica);
    tdm_replica_switch_invariants(replica);
}

void tdm_replica_step(struct tdm_replica *replica, const struct tdm_event *event,
                      struct tdm_actions *actions)
{
    tdm_assert(event->type >= TDM_EVENT_TICK);
    tdm_assert(event->type < TDM_EVENT__COUNT);
    tdm_assert(event->now_ms >= replica->now_ms);
    replica->now_ms = event->now_ms;
    if (event->wall_ms != 0) {
        replica->wall_ms = event->wall_ms;
    }
    actions_reset(replica, actions);

    if (!replica->started) {
        replica->started = true;
        if (replica_is_primary_node(replica)) {
            tdm_replica_primary_start(replica, actions);
        } else {
            tdm_replica_backup_start(replica, actions);
        }
    }
    if (event->type == TDM_EVENT_APPENDED && event->appended.sealed) {
        tdm_replica_verify_on_sealed(replica, event->appended.lsn_last);
    }
    struct tdm_event tick = {.type = TDM_EVENT_TICK, .now_ms = event->now_ms};
    if (tdm_replica_switch_step(replica, event, actions)) {
        /* A command, a switchover or failover frame, a HELLO that moved roles:
         * the role's handlers see a TICK, for their timers. */
        event = &tick;
    }
    if (replica->role == TDM_ROLE_FAILED) {
        failed_step(replica, event, actions);
    } else if (replica_is_primary_node(replica)) {
        tdm_replica_primary_step(replica, event, actions);
    } else {
        tdm_replica_backup_step(replica, event, actions);
    }
    tdm_replica_switch_after_step(replica, actions);
    tdm_replica_verify_after_step(replica, actions);
    actions->deadline_ms = replica_deadline(replica);
    replica_invariants(replica);
}

static void status_self(const struct tdm_replica *replica, struct tdm_replica_node_status *node)
{
    node->role = replica->role;
    node->epoch = replica->epoch;
    node->last_lsn = replica->last_lsn;
    node->durable_lsn = replica->durable_lsn;
    node->link_up = true;
    node->link = TDM_LINK_LIVE;
}

void tdm_replica_status(const struct tdm_replica *replica, struct tdm_replica_status *status)
{
    tdm_assert(replica != NULL);
    tdm_assert(status != NULL);
    memset(status, 0, sizeof(*status));
    status->role = replica->role;
    status->epoch = replica->epoch;
    status->self_index = replica->config.self_index;
    status->primary_index = replica->primary_index;
    status->commit_lsn = replica->commit_lsn;
    status->writes_in_flight = replica->write_count;
    status->node_count = replica->config.node_count;
    status->ship_failures = replica->ship_failures;
    status->ship_failed_lsn = replica->ship_failed_lsn;
    struct tdm_frame_lag lags[TDM_REPLICA_NODES_MAX];
    memset(lags, 0, sizeof(lags));
    if (replica->role == TDM_ROLE_PRIMARY || replica->role == TDM_ROLE_HOLDING) {
        tdm_replica_primary_lags(replica, lags);
    } else if (replica->lag_count == replica->config.node_count) {
        memcpy(lags, replica->lags, sizeof(lags[0]) * replica->lag_count);
    }
    for (uint32_t i = 0; i < replica->config.node_count; i++) {
        struct tdm_replica_node_status *node = &status->nodes[i];
        const struct tdm_replica_peer *peer = &replica->peers[i];
        node->lag_records = lags[i].records;
        node->lag_size = lags[i].size;
        node->lag_ms = lags[i].ms;
        if (i == replica->config.self_index) {
            status_self(replica, node);
            continue;
        }
        node->role = (enum tdm_role)peer->role;
        node->epoch = peer->epoch;
        node->last_lsn = peer->last_lsn;
        bool acting = replica->role == TDM_ROLE_PRIMARY || replica->role == TDM_ROLE_HOLDING;
        node->durable_lsn = acting ? peer->durable_lsn : lags[i].durable_lsn;
        node->link_up = peer->link != TDM_LINK_DOWN;
        node->link = peer->link;
        if (!acting && i != replica->primary_index) {
            /* Backups hold no links to each other: report the primary's. */
            node->link_up = lags[i].link_up;
            node->link = lags[i].link_up ? TDM_LINK_LIVE : TDM_LINK_DOWN;
            if (lags[i].link_up) {
                node->role = TDM_ROLE_BACKUP; /* The primary links only to backups. */
                node->epoch = replica->epoch;
                node->last_lsn = lags[i].durable_lsn; /* What the primary knows. */
            }
        }
    }
    tdm_replica_verify_status(replica, status);
}

static void replica_frame_fence(const struct tdm_actions *actions, const struct tdm_send *send,
                                struct tdm_frame *frame)
{
    struct tdm_frame_fence *fence = &frame->fence;
    fence->fence_id = send->fence.fence_id;
    fence->flags = send->fence.flags;
    fence->new_epoch = send->fence.new_epoch;
    fence->expect_epoch = send->fence.expect_epoch;
    fence->expect_last_epoch = send->fence.expect_last_epoch;
    fence->expect_durable_lsn = send->fence.expect_durable_lsn;
    fence->history.count = 0; /* A probe carries none. */
    if ((send->fence.flags & TDM_FENCE_PROBE) == 0) {
        tdm_assert(actions->history_new != NULL);
        fence->history = *actions->history_new;
    }
}

void tdm_replica_frame_from_send(const struct tdm_actions *actions, const struct tdm_send *send,
                                 struct tdm_frame *frame)
{
    tdm_assert(actions->lag_count <= TDM_REPLICA_NODES_MAX);
    frame->type = send->type;
    frame->epoch = send->epoch;
    switch (send->type) {
    case TDM_FRAME_HELLO:
        frame->hello.version = TDM_FRAME_VERSION;
        frame->hello.role = send->hello.role;
        frame->hello.hello_id = send->hello.hello_id;
        frame->hello.last_lsn = send->hello.last_lsn;
        frame->hello.durable_lsn = send->hello.durable_lsn;
        frame->hello.last_epoch = send->hello.last_epoch;
        frame->hello.chain_hash = send->hello.chain_hash;
        frame->hello.history = *actions->history;
        break;
    case TDM_FRAME_START:
        frame->start.hello_id = send->start.hello_id;
        frame->start.fork_lsn = send->start.fork_lsn;
        frame->start.history = *actions->history;
        break;
    case TDM_FRAME_READY:
        frame->ready = send->ready;
        break;
    case TDM_FRAME_APPEND:
        break; /* The batches come from the log: the adapter's part. */
    case TDM_FRAME_ACK:
        frame->ack = send->ack;
        break;
    case TDM_FRAME_HEARTBEAT:
        frame->heartbeat.last_lsn = send->heartbeat.last_lsn;
        frame->heartbeat.commit_lsn = send->heartbeat.commit_lsn;
        frame->heartbeat.send_ms = send->heartbeat.send_ms;
        frame->heartbeat.node_count = actions->lag_count;
        for (uint32_t i = 0; i < actions->lag_count; i++) {
            frame->heartbeat.lags[i] = actions->lags[i];
        }
        break;
    case TDM_FRAME_FORWARD:
        frame->forward.request_id = send->forward.request_id;
        frame->forward.record_count = send->forward.record_count;
        frame->forward.size = send->forward.size;
        frame->forward.flags = send->forward.flags;
        break; /* The record bytes are the adapter's part. */
    case TDM_FRAME_FORWARD_RESULT:
        frame->forward_result = send->forward_result;
        break;
    case TDM_FRAME_HANDOVER:
        frame->handover.new_epoch = send->handover.new_epoch;
        frame->handover.history = *actions->history_new;
        frame->handover.last_lsn = send->handover.last_lsn;
        frame->handover.chain_hash = send->handover.chain_hash;
        break;
    case TDM_FRAME_HANDOVER_DONE:
        frame->handover_done = send->handover_done;
        break;
    case TDM_FRAME_FENCE:
        replica_frame_fence(actions, send, frame);
        break;
    case TDM_FRAME_FENCED:
        frame->fenced = send->fenced;
        break;
    case TDM_FRAME_CHECK:
        frame->check = send->check;
        break;
    case TDM_FRAME_CHECK_RESULT:
        frame->check_result = send->check_result;
        break;
    default:
        tdm_unreachable(); /* The replica only emits the types above. */
    }
}
