/* net/replica_repair.h: the decisions of a repair (docs/PROTOCOL.md §9.4),
 * pure like the rest of net/replica: which copy a damaged range may be fetched
 * from, and whether a FETCHED answers the FETCH in flight. The I/O (frames,
 * the engine's plan and swap) is net/uv_repair.c's.
 *
 * The rule: bytes are only ever taken from a node whose copy is proven equal
 * to the primary's through at least the range's last LSN (PROTOCOL.md §9.1):
 * - on a backup, the primary, when this backup's own claim reaches that far
 *   (equal to the primary's through n: the primary's batches up to n are the
 *   ones this copy held);
 * - on the primary, a backup whose claim reaches that far.
 * Its link must be LIVE. A node that answered with an error or with bytes that
 * did not verify is marked tried and not asked again for that range. When no
 * untried node is left that could ever qualify, the range is lost: no good
 * copy exists, and nothing may be changed.
 *
 * Thread: none of this keeps state. */
#ifndef TDM_NET_REPLICA_REPAIR_H
#define TDM_NET_REPLICA_REPAIR_H

#include <stdbool.h>
#include <stdint.h>

#include "net/replica.h"

enum tdm_repair_choice {
    TDM_REPAIR_SOURCE = 1, /* Fetch from *index now. */
    TDM_REPAIR_WAIT,       /* No verified copy reachable now; one may become so: ask again. */
    TDM_REPAIR_LOST,       /* Every node that could hold a verified copy was tried. */
};

/* Choose the node to fetch LSNs .. lsn_last from, given the replica's status
 * and tried (bit i: node index i answered badly for this range). */
enum tdm_repair_choice tdm_repair_choose(const struct tdm_replica_status *status, uint64_t lsn_last,
                                         uint32_t tried, uint32_t *index);

/* What was asked. */
struct tdm_repair_request {
    uint64_t fetch_id;
    uint32_t node_index;
    uint64_t lsn_first;
    uint64_t lsn_last;
};

/* What came back (a FETCHED's fields). */
struct tdm_repair_reply {
    uint64_t fetch_id;
    uint32_t node_index; /* The link it came on. */
    int32_t status;
    uint64_t lsn_first;
    uint64_t lsn_last; /* Last LSN its batches hold (a prefix of the request's range). */
};

/* True if reply answers request: same id, the node asked, the same first LSN
 * and, with status 0, a last LSN within the request's range. A reply that does
 * not is dropped (late, or from a link that changed). */
bool tdm_repair_reply_matches(const struct tdm_repair_request *request,
                              const struct tdm_repair_reply *reply);

#endif
