/* net/replica_repair.c: which copy a damaged range is fetched from, and
 * whether an answer fits the question (net/replica_repair.h; docs/PROTOCOL.md
 * §9.4). Pure: a function of the replica's status and the caller's arguments. */
#include "net/replica_repair.h"

#include <stddef.h>

#include "engine/base/assert.h"

/* The planted bug "repair_takes_first_copy" (meson_options.txt) also lets the
 * first node that answers serve, verified or not. */
#ifndef TDM_PLANTED_REPAIR_TAKES_FIRST_COPY
#define TDM_PLANTED_REPAIR_TAKES_FIRST_COPY 0
#endif

static bool repair_live(const struct tdm_replica_node_status *node)
{
    return node->link_up && node->link == TDM_LINK_LIVE;
}

enum tdm_repair_choice tdm_repair_choose(const struct tdm_replica_status *status, uint64_t lsn_last,
                                         uint32_t tried, uint32_t *index)
{
    tdm_assert(status != NULL && index != NULL);
    tdm_assert(status->node_count <= TDM_REPLICA_NODES_MAX);
    uint32_t self = status->self_index;
    bool primary = status->role == TDM_ROLE_PRIMARY || status->role == TDM_ROLE_HOLDING;
    if (status->role == TDM_ROLE_BACKUP) {
        uint32_t p = status->primary_index;
        if ((tried & (1u << p)) != 0) {
            return TDM_REPAIR_LOST; /* A backup's only verified source is its primary. */
        }
        bool verified = status->nodes[self].verified_lsn >= lsn_last;
        if ((verified || TDM_PLANTED_REPAIR_TAKES_FIRST_COPY) && repair_live(&status->nodes[p])) {
            *index = p;
            return TDM_REPAIR_SOURCE;
        }
        return TDM_REPAIR_WAIT;
    }
    if (!primary) {
        return TDM_REPAIR_WAIT; /* Recovering, failed: no role to judge copies from. */
    }
    bool untried = false;
    for (uint32_t i = 0; i < status->node_count; i++) {
        if (i == self || (tried & (1u << i)) != 0) {
            continue;
        }
        const struct tdm_replica_node_status *node = &status->nodes[i];
        bool verified = node->verify_known && node->verified_lsn >= lsn_last;
        if ((verified || TDM_PLANTED_REPAIR_TAKES_FIRST_COPY) && repair_live(node)) {
            *index = i;
            return TDM_REPAIR_SOURCE;
        }
        untried = true; /* Down or not verified that far yet: it may be later. */
    }
    return untried ? TDM_REPAIR_WAIT : TDM_REPAIR_LOST;
}

bool tdm_repair_reply_matches(const struct tdm_repair_request *request,
                              const struct tdm_repair_reply *reply)
{
    tdm_assert(request != NULL && reply != NULL);
    if (reply->fetch_id != request->fetch_id || reply->node_index != request->node_index ||
        reply->lsn_first != request->lsn_first) {
        return false;
    }
    if (reply->status != 0) {
        return reply->lsn_last == request->lsn_last;
    }
    return reply->lsn_last >= reply->lsn_first && reply->lsn_last <= request->lsn_last;
}
