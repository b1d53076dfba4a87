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

static inline uint64_t tdm_replica_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static inline uint64_t tdm_replica_max(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

#endif
