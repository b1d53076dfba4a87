/* net/replica_internal.h: what net/replica.c shares with its role files
 * (replica_primary.c, replica_backup.c). Not for the adapter. */
#ifndef TDM_NET_REPLICA_INTERNAL_H
#define TDM_NET_REPLICA_INTERNAL_H

#include "net/replica.h"

#define TDM_BIT(n) (1u << (n))

/* Trace one line through config.trace, if set. */
void tdm_replica_tracef(const struct tdm_replica *replica, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Move to role next through the transition table (STYLE B6). */
void tdm_replica_role_move(struct tdm_replica *replica, enum tdm_role next);

/* Append a send of type to node_index; returns it with node, type and epoch
 * set and the payload zeroed. */
struct tdm_send *tdm_replica_send(struct tdm_replica *replica, struct tdm_actions *actions,
                                  uint32_t node_index, enum tdm_frame_type type);

/* Append a write action; returns it zeroed but for kind and epoch. */
struct tdm_action_write *tdm_replica_write_action(struct tdm_replica *replica,
                                                  struct tdm_actions *actions,
                                                  enum tdm_write_kind kind);

/* Report the outcome of a write submitted on this node. */
void tdm_replica_result(struct tdm_actions *actions, uint64_t write_id, int status,
                        uint64_t lsn_first, uint64_t lsn_last);

/* Write table: add (NULL if full), find by id (NULL if absent), remove by
 * pointer (keeps submission order). */
struct tdm_replica_write *tdm_replica_write_add(struct tdm_replica *replica, uint64_t write_id,
                                                enum tdm_write_state state);
struct tdm_replica_write *tdm_replica_write_find(struct tdm_replica *replica, uint64_t write_id);
void tdm_replica_write_remove(struct tdm_replica *replica, struct tdm_replica_write *write);
/* A write this node forwarded to a node that is no longer the primary and
 * whose link is down: no answer can come any more (a failover replaced a
 * primary that is gone). Never true between steps: such a write failed
 * when the link dropped (tdm_replica_forward_link_lost); the timers assert
 * it. A switchover's old primary stays linked and answers what it took. */
bool tdm_replica_forward_lost(const struct tdm_replica *replica,
                              const struct tdm_replica_write *write);
/* The link to node_index dropped: the writes this node forwarded on it can
 * get no answer any more (the primary drops answers for a link that is gone,
 * and a new link does not carry them). They fail now with TANDEM_ECOPIES. */
void tdm_replica_forward_link_lost(struct tdm_replica *replica, struct tdm_actions *actions,
                                   uint32_t node_index);

/* The node stops after a failed completion: every write fails with status. */
void tdm_replica_fail(struct tdm_replica *replica, struct tdm_actions *actions, int status,
                      const char *what);

/* Role handlers. Primary: replica_primary.c. */
void tdm_replica_primary_start(struct tdm_replica *replica, struct tdm_actions *actions);
void tdm_replica_primary_step(struct tdm_replica *replica, const struct tdm_event *event,
                              struct tdm_actions *actions);
uint64_t tdm_replica_primary_deadline(const struct tdm_replica *replica);
void tdm_replica_primary_lags(const struct tdm_replica *replica, struct tdm_frame_lag *lags);
void tdm_replica_primary_invariants(const struct tdm_replica *replica);

/* Backup: replica_backup.c. */
void tdm_replica_backup_start(struct tdm_replica *replica, struct tdm_actions *actions);
void tdm_replica_backup_step(struct tdm_replica *replica, const struct tdm_event *event,
                             struct tdm_actions *actions);
uint64_t tdm_replica_backup_deadline(const struct tdm_replica *replica);
void tdm_replica_backup_invariants(const struct tdm_replica *replica);

/* Verification (PROTOCOL.md §9): net/replica_verify.c. */
void tdm_replica_verify_init(struct tdm_replica *replica);
/* Primary: checkpoints and timeouts, every step (a no-op unless acting). */
void tdm_replica_verify_primary(struct tdm_replica *replica, struct tdm_actions *actions);
/* Primary: APPENDED reported a sealed segment ending at lsn_last. */
void tdm_replica_verify_on_sealed(struct tdm_replica *replica, uint64_t lsn_last);
void tdm_replica_verify_on_check_result(struct tdm_replica *replica, uint32_t node_index,
                                        const struct tdm_frame *frame, struct tdm_actions *actions);
/* Backup: a CHECK from the primary. */
void tdm_replica_verify_on_check(struct tdm_replica *replica, uint32_t node_index,
                                 const struct tdm_frame *frame, struct tdm_actions *actions);
void tdm_replica_verify_on_read(struct tdm_replica *replica, const struct tdm_event *event,
                                struct tdm_actions *actions);
/* After every step: claims never above what the copies hold durably. */
void tdm_replica_verify_after_step(struct tdm_replica *replica, struct tdm_actions *actions);
uint64_t tdm_replica_verify_deadline(const struct tdm_replica *replica);
/* Primary: the durable LSN of backup node_index that counts as a copy: not
 * beyond a known divergence (its bytes there are not the primary's). */
uint64_t tdm_replica_verify_countable(const struct tdm_replica *replica, uint32_t node_index);
void tdm_replica_verify_status(const struct tdm_replica *replica,
                               struct tdm_replica_status *status);
void tdm_replica_verify_invariants(const struct tdm_replica *replica);

/* Switchover and failover (PROTOCOL.md §8): net/replica_switch.c. */
void tdm_replica_switch_init(struct tdm_replica *replica);
/* The node stopped (FAILED): end any switchover or failover, reported. */
void tdm_replica_switch_fail(struct tdm_replica *replica, struct tdm_actions *actions);
/* Commands, HANDOVER .. FENCED, the HELLOs that move roles. Returns true if
 * the event was consumed (the role's handler must not see it). */
bool tdm_replica_switch_step(struct tdm_replica *replica, const struct tdm_event *event,
                             struct tdm_actions *actions);
/* After every step: deferred step-down, catch-up, timeouts, resends. */
void tdm_replica_switch_after_step(struct tdm_replica *replica, struct tdm_actions *actions);
uint64_t tdm_replica_switch_deadline(const struct tdm_replica *replica);
void tdm_replica_switch_invariants(const struct tdm_replica *replica);
/* PERSISTED(EPOCHS) on a HOLDING old primary (offer or own epoch). */
void tdm_replica_switch_on_persisted(struct tdm_replica *replica, struct tdm_actions *actions);
/* PERSISTED(EPOCHS) on a backup: true if it was a takeover or a failover's
 * own history (the node is then primary), handled here. */
bool tdm_replica_switch_backup_persisted(struct tdm_replica *replica, struct tdm_actions *actions);
void tdm_replica_switch_takeover_persisted(struct tdm_replica *replica,
                                           struct tdm_actions *actions);
/* A primary that restarts in an epoch handed to it by a switchover, with no
 * batch of it: HOLDING until the old primary confirms. */
void tdm_replica_switch_unconfirmed_start(struct tdm_replica *replica, struct tdm_actions *actions);
/* Follow node_index, the acting primary of epoch (deferred while disk work
 * is in flight): a primary steps down first. */
void tdm_replica_follow(struct tdm_replica *replica, struct tdm_actions *actions,
                        uint32_t node_index, uint64_t epoch);
struct tdm_report *tdm_replica_report(struct tdm_actions *actions, enum tdm_report_kind kind,
                                      enum tdm_report_outcome outcome, uint64_t request_id);
uint64_t tdm_replica_catch_up_ms(const struct tdm_replica *replica);
/* A new entry (epoch, primary, last_lsn + 1, cause, the wall time). */
struct tdm_epoch_entry tdm_replica_entry_make(const struct tdm_replica *replica, uint64_t epoch,
                                              uint32_t primary_index, uint32_t cause);
/* Append entry, dropping the oldest when the history is full. */
void tdm_replica_history_push(struct tdm_epoch_history *history,
                              const struct tdm_epoch_entry *entry);
/* out = in, keeping what only this node knows (a measured pause). */
void tdm_replica_history_adopt(struct tdm_replica *replica, const struct tdm_epoch_history *in,
                               struct tdm_epoch_history *out);
/* True if the history in memory lacks a pause this node measured. */
bool tdm_replica_history_dirty(const struct tdm_replica *replica);
/* The history just persisted: forget the pause note it carries. */
void tdm_replica_history_persisted(struct tdm_replica *replica);

/* net/replica_failover.c. */
void tdm_replica_failover_on_command(struct tdm_replica *replica, const struct tdm_event *event,
                                     struct tdm_actions *actions);
void tdm_replica_failover_on_fence(struct tdm_replica *replica, uint32_t node_index,
                                   const struct tdm_frame *frame, struct tdm_actions *actions);
void tdm_replica_failover_on_fenced(struct tdm_replica *replica, uint32_t node_index,
                                    const struct tdm_frame *frame, struct tdm_actions *actions);
void tdm_replica_failover_observe(struct tdm_replica *replica, const struct tdm_event *event,
                                  struct tdm_actions *actions);
void tdm_replica_failover_after_step(struct tdm_replica *replica, struct tdm_actions *actions);
void tdm_replica_failover_after_persisted(struct tdm_replica *replica, struct tdm_actions *actions);
void tdm_replica_failover_promote(struct tdm_replica *replica, struct tdm_actions *actions);
void tdm_replica_failover_end(struct tdm_replica *replica, struct tdm_actions *actions,
                              uint32_t refusal);
uint64_t tdm_replica_failover_deadline(const struct tdm_replica *replica);

/* Role pieces the switchover and the failover use. replica_primary.c: */
void tdm_replica_primary_hello(struct tdm_replica *replica, struct tdm_actions *actions,
                               uint32_t node_index);
/* RECOVERING or HOLDING -> PRIMARY: HELLO to every linked node, held writes
 * to the engine. */
void tdm_replica_primary_act(struct tdm_replica *replica, struct tdm_actions *actions);
/* After persisting an epoch it opened: act, or (min_copies >= 2, epoch > 1)
 * hold writes (HOLDING, TDM_SWITCH_JOIN) until a backup's READY in it. */
void tdm_replica_primary_act_or_wait(struct tdm_replica *replica, struct tdm_actions *actions);
/* A backup becomes the primary node (role unchanged): primary-side state. */
void tdm_replica_primary_become(struct tdm_replica *replica);
/* Persist history + (tdm_replica_epoch_next(base, self), self, ...). */
void tdm_replica_primary_open(struct tdm_replica *replica, struct tdm_actions *actions,
                              uint64_t base, uint32_t cause);
void tdm_replica_primary_release_held(struct tdm_replica *replica, struct tdm_actions *actions);
/* Before a primary follows another: writes held wait to be forwarded, writes
 * handed to the engine fail with TANDEM_ECOPIES (not acknowledged). */
void tdm_replica_primary_step_down(struct tdm_replica *replica, struct tdm_actions *actions);
/* replica_backup.c: */
void tdm_replica_backup_hello(struct tdm_replica *replica, struct tdm_actions *actions);
void tdm_replica_backup_forward_unsent(struct tdm_replica *replica, struct tdm_actions *actions);

static inline uint64_t tdm_replica_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static inline uint64_t tdm_replica_max(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

#endif
