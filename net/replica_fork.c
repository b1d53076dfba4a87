/* net/replica_fork.c: epoch histories and the fork point (docs/PROTOCOL.md §4,
 * §5.2).
 *
 * An epoch history is the list of (epoch, primary, first LSN) a node has
 * persisted. Every epoch has exactly one primary, and that primary's log in the
 * epoch is the only log of the epoch: two nodes that both hold data of epoch e
 * hold prefixes of the same sequence of batches. So a backup's log is a prefix
 * of the primary's up to the end of the last epoch both histories share, and no
 * further: beyond it the backup may hold a tail the primary never had (a
 * primary that crashed before making those batches durable) or that a later
 * epoch replaced.
 *
 * Happy path of tdm_replica_fork_point():
 * 1. Take the backup's entries whose epoch is at most the epoch of its last
 *    batch (a history persisted ahead of a cut must not vouch for old data).
 * 2. From the newest down, find the first entry whose epoch, primary and
 *    first LSN also appear in the primary's history. (An abandoned
 *    switchover leaves its offering node an entry for an epoch the target
 *    never opened there; another node may open that epoch later at another
 *    LSN. Two entries that differ in their first LSN are two different
 *    epochs, and neither vouches for the other's data: simulator seed 5390.)
 * 3. The fork point is the smaller of the two ends of that epoch: in the
 *    backup's log, and in the primary's.
 *
 * Decision table (b = the backup's newest shared entry, e its epoch):
 *
 *   backup log empty ........................ fork 0 (nothing to cut)
 *   no shared epoch ......................... fork 0 (the whole log is suspect)
 *   e is the primary's current epoch ........ min(backup end of e, primary last LSN)
 *   e is an older epoch of the primary ...... min(backup end of e, primary end of e)
 *
 * Failure modes: none; the inputs were filtered by tdm_replica_history_valid().
 * Everything here is a pure function of its arguments. */
#include "net/replica.h"

#include <stddef.h>

#include "engine/base/assert.h"

bool tdm_replica_history_valid(const struct tdm_epoch_history *history, uint32_t node_count)
{
    tdm_assert(history != NULL);
    tdm_assert(node_count <= TDM_REPLICA_NODES_MAX);
    if (history->count == 0 || history->count > TDM_REPLICA_EPOCHS_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < history->count; i++) {
        const struct tdm_epoch_entry *entry = &history->entries[i];
        if (entry->epoch == 0 || entry->lsn_first == 0 || entry->primary_index >= node_count) {
            return false;
        }
        if (i > 0) {
            const struct tdm_epoch_entry *before = &history->entries[i - 1];
            if (entry->epoch <= before->epoch || entry->lsn_first < before->lsn_first) {
                return false;
            }
        }
    }
    return true;
}

int tdm_replica_history_find(const struct tdm_epoch_history *history, uint64_t epoch)
{
    tdm_assert(history != NULL);
    tdm_assert(history->count <= TDM_REPLICA_EPOCHS_MAX);
    for (uint32_t i = history->count; i > 0; i--) {
        if (history->entries[i - 1].epoch == epoch) {
            return (int)(i - 1);
        }
    }
    return -1;
}

uint64_t tdm_replica_history_epoch_end(const struct tdm_epoch_history *history, uint32_t index,
                                       uint64_t last_lsn)
{
    tdm_assert(index < history->count);
    tdm_assert(history->count <= TDM_REPLICA_EPOCHS_MAX);
    uint64_t end = last_lsn;
    if (index + 1 < history->count) {
        uint64_t next_first = history->entries[index + 1].lsn_first;
        tdm_assert(next_first >= 1);
        if (next_first - 1 < end) {
            end = next_first - 1;
        }
    }
    return end;
}

uint64_t tdm_replica_history_epoch_at(const struct tdm_epoch_history *history, uint64_t lsn)
{
    tdm_assert(history != NULL);
    tdm_assert(history->count <= TDM_REPLICA_EPOCHS_MAX);
    for (uint32_t i = history->count; i > 0; i--) {
        if (history->entries[i - 1].lsn_first <= lsn) {
            return history->entries[i - 1].epoch;
        }
    }
    return 0;
}

bool tdm_replica_history_equal(const struct tdm_epoch_history *a, const struct tdm_epoch_history *b)
{
    tdm_assert(a != NULL);
    tdm_assert(b != NULL);
    if (a->count != b->count) {
        return false;
    }
    for (uint32_t i = 0; i < a->count; i++) {
        const struct tdm_epoch_entry *x = &a->entries[i];
        const struct tdm_epoch_entry *y = &b->entries[i];
        if (x->epoch != y->epoch || x->lsn_first != y->lsn_first ||
            x->primary_index != y->primary_index) {
            return false;
        }
    }
    return true;
}

static uint64_t fork_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t tdm_replica_fork_point(const struct tdm_epoch_history *primary, uint64_t primary_last_lsn,
                                const struct tdm_epoch_history *backup, uint64_t backup_last_lsn,
                                uint64_t backup_last_epoch)
{
    tdm_assert(primary->count >= 1);
    tdm_assert(backup->count >= 1);
    if (backup_last_lsn == 0) {
        return 0;
    }
    /* end: the last LSN of the backup's log that belongs to the entry under
     * consideration; it shrinks as the walk goes down the history. */
    uint64_t end = backup_last_lsn;
    for (uint32_t i = backup->count; i > 0; i--) {
        const struct tdm_epoch_entry *entry = &backup->entries[i - 1];
        if (entry->epoch > backup_last_epoch) {
            continue; /* Persisted ahead of the data: vouches for nothing held. */
        }
        int j = tdm_replica_history_find(primary, entry->epoch);
        if (j >= 0 && primary->entries[j].primary_index == entry->primary_index &&
            primary->entries[j].lsn_first == entry->lsn_first) {
            uint64_t primary_end =
                tdm_replica_history_epoch_end(primary, (uint32_t)j, primary_last_lsn);
            uint64_t fork = fork_min(end, primary_end);
            tdm_assert(fork <= backup_last_lsn);
            tdm_assert(fork <= primary_last_lsn);
            return fork;
        }
        if (entry->lsn_first == 0) {
            return 0;
        }
        end = fork_min(end, entry->lsn_first - 1);
    }
    return 0;
}
