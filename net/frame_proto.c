/* net/frame_proto.c: struct tdm_proto_msg <-> struct tdm_frame for the
 * replication frames (net/frame_proto.h; byte layouts in docs/PROTOCOL.md §3).
 *
 * Happy path:
 * 1. from_proto copies the fixed fields, maps node ids to indexes through the
 *    cluster (history primaries, lag rows in index order), decodes each APPEND
 *    batch's header to fill struct tdm_frame_batch (the bytes stay in the
 *    reader's buffer), and turns FORWARD_RESULT's count into lsn_last.
 * 2. to_proto does the reverse, filling HELLO's cluster name and node id from
 *    the cluster and checking each batch's fields against its header.
 *
 * Failure modes: a received value the replica cannot take is TANDEM_ECORRUPT
 * through TDM_CORRUPT (trace line with file:line), a frame of ours that does
 * not fit the wire is TANDEM_EINVALID; nothing from a peer is asserted on.
 * Loops over counts run only after the count was checked against its _MAX.
 *
 * Close: nothing to release. */
#include "net/frame_proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/assert.h"
#include "engine/base/chain.h"
#include "engine/batch.h"

/* The two sides agree on every limit and value they share. */
tdm_static_assert(TDM_FRAME_VERSION == TDM_PROTO_VERSION);
tdm_static_assert(TDM_REPLICA_NODES_MAX == TDM_PROTO_PEERS_MAX);
tdm_static_assert(TDM_REPLICA_EPOCHS_MAX == TDM_PROTO_HISTORY_MAX);
tdm_static_assert(TDM_FRAME_BATCHES_MAX == TDM_PROTO_APPEND_BATCHES_MAX);
tdm_static_assert(TDM_FRAME_CHAIN_HASH_SIZE == TDM_PROTO_CHAIN_HASH_SIZE);
tdm_static_assert(TDM_FRAME_CHAIN_HASH_SIZE == TDM_CHAIN_HASH_SIZE);
tdm_static_assert(TDM_PROTO_FRAME_SIZE_MAX <= UINT32_MAX); /* Batch and record sizes fit u32. */
tdm_static_assert((int)TDM_FRAME_HELLO == (int)TDM_PROTO_HELLO);
tdm_static_assert((int)TDM_FRAME_START == (int)TDM_PROTO_START);
tdm_static_assert((int)TDM_FRAME_READY == (int)TDM_PROTO_READY);
tdm_static_assert((int)TDM_FRAME_APPEND == (int)TDM_PROTO_APPEND);
tdm_static_assert((int)TDM_FRAME_ACK == (int)TDM_PROTO_ACK);
tdm_static_assert((int)TDM_FRAME_HEARTBEAT == (int)TDM_PROTO_HEARTBEAT);
tdm_static_assert((int)TDM_FRAME_FORWARD == (int)TDM_PROTO_FORWARD);
tdm_static_assert((int)TDM_FRAME_FORWARD_RESULT == (int)TDM_PROTO_FORWARD_RESULT);
tdm_static_assert((int)TDM_FRAME_HANDOVER == (int)TDM_PROTO_HANDOVER);
tdm_static_assert((int)TDM_FRAME_HANDOVER_DONE == (int)TDM_PROTO_HANDOVER_DONE);
tdm_static_assert((int)TDM_FRAME_FENCE == (int)TDM_PROTO_FENCE);
tdm_static_assert((int)TDM_FRAME_FENCED == (int)TDM_PROTO_FENCED);
tdm_static_assert((int)TDM_EPOCH_CAUSE__COUNT == TDM_PROTO_CAUSE_MAX + 1);
tdm_static_assert((int)TDM_REFUSAL__COUNT == TDM_PROTO_REFUSAL_MAX + 1);
tdm_static_assert(TDM_FENCE_PROBE == TDM_PROTO_FENCE_PROBE);
tdm_static_assert(TDM_FORWARD_RESTART == TDM_PROTO_FORWARD_RESTART);
tdm_static_assert(TDM_FENCE_FORCE == TDM_PROTO_FENCE_FORCE);
tdm_static_assert(TDM_FENCED_PRIMARY_SEEN == TDM_PROTO_FENCED_PRIMARY_SEEN);
tdm_static_assert((int)TDM_FRAME_CHECK == (int)TDM_PROTO_CHECK);
tdm_static_assert((int)TDM_FRAME_CHECK_RESULT == (int)TDM_PROTO_CHECK_RESULT);
tdm_static_assert((int)TDM_FRAME__COUNT == (int)TDM_PROTO_CHECK_RESULT + 1);
tdm_static_assert((int)TDM_CHECK_EQUAL == TDM_PROTO_CHECK_EQUAL);
tdm_static_assert((int)TDM_CHECK_DIFFERENT == TDM_PROTO_CHECK_DIFFERENT);
tdm_static_assert((int)TDM_CHECK_ABSENT == TDM_PROTO_CHECK_ABSENT);
tdm_static_assert((int)TDM_CHECK_UNREADABLE == TDM_PROTO_CHECK_UNREADABLE);
tdm_static_assert((int)TDM_CHECK__COUNT == TDM_PROTO_CHECK_UNREADABLE + 1);
tdm_static_assert((int)TDM_ROLE_RECOVERING == (int)TDM_PROTO_ROLE_RECOVERING);
tdm_static_assert((int)TDM_ROLE_BACKUP == (int)TDM_PROTO_ROLE_BACKUP);
tdm_static_assert((int)TDM_ROLE_PRIMARY == (int)TDM_PROTO_ROLE_PRIMARY);
tdm_static_assert((int)TDM_ROLE_HOLDING == (int)TDM_PROTO_ROLE_HOLDING);
tdm_static_assert((int)TDM_ROLE_FAILED == (int)TDM_PROTO_ROLE_FAILED);
tdm_static_assert((int)TDM_ROLE__COUNT == (int)TDM_PROTO_ROLE_FAILED + 1);

/* --- The cluster ------------------------------------------------------------ */

static bool cluster_name_valid(const char *name)
{
    return tdm_proto_name_valid(name, strnlen(name, TDM_PROTO_NAME_SIZE_MAX + 1));
}

bool tdm_frame_cluster_valid(const struct tdm_frame_cluster *cluster)
{
    tdm_assert(cluster != NULL);
    if (!cluster_name_valid(cluster->name)) {
        return false;
    }
    if (cluster->node_count == 0 || cluster->node_count > TDM_REPLICA_NODES_MAX) {
        return false;
    }
    if (cluster->self_index >= cluster->node_count) {
        return false;
    }
    for (uint32_t i = 0; i < cluster->node_count; i++) {
        if (!cluster_name_valid(cluster->node_ids[i])) {
            return false;
        }
        if (i > 0 && strcmp(cluster->node_ids[i - 1], cluster->node_ids[i]) >= 0) {
            return false;
        }
    }
    return true;
}

bool tdm_frame_cluster_index(const struct tdm_frame_cluster *cluster, const char *node_id,
                             uint32_t *index)
{
    tdm_assert(node_id != NULL);
    tdm_assert(index != NULL);
    tdm_assert(cluster->node_count <= TDM_REPLICA_NODES_MAX);
    for (uint32_t i = 0; i < cluster->node_count; i++) {
        if (strcmp(cluster->node_ids[i], node_id) == 0) {
            *index = i;
            return true;
        }
    }
    return false;
}

/* The conversions' precondition: the cheap part always, the rest in verify builds. */
static void cluster_assert(const struct tdm_frame_cluster *cluster)
{
    tdm_assert(cluster != NULL);
    tdm_assert(cluster->node_count >= 1);
    tdm_assert(cluster->node_count <= TDM_REPLICA_NODES_MAX);
    tdm_assert(cluster->self_index < cluster->node_count);
    tdm_verify(tdm_frame_cluster_valid(cluster));
}

/* --- Received: proto -> frame ------------------------------------------------ */

static int from_history(const char *type, const struct tdm_proto_history *in,
                        const struct tdm_frame_cluster *cluster, struct tdm_epoch_history *out,
                        struct tdm_diag *diag)
{
    if (in->count > TDM_REPLICA_EPOCHS_MAX) {
        return TDM_CORRUPT(diag, "%s frame: history: %u entries, a node keeps at most %u", type,
                           in->count, (unsigned)TDM_REPLICA_EPOCHS_MAX);
    }
    for (uint32_t i = 0; i < in->count; i++) {
        const struct tdm_proto_epoch *e = &in->entries[i];
        uint32_t index = 0;
        if (!tdm_frame_cluster_index(cluster, e->primary, &index)) {
            return TDM_CORRUPT(diag,
                               "%s frame: history: epoch %llu: primary %.63s is not a node "
                               "of this cluster",
                               type, (unsigned long long)e->epoch, e->primary);
        }
        tdm_assert(index < cluster->node_count);
        if (e->cause > TDM_PROTO_CAUSE_MAX) {
            return TDM_CORRUPT(diag, "%s frame: history: epoch %llu: cause %u", type,
                               (unsigned long long)e->epoch, e->cause);
        }
        out->entries[i] = (struct tdm_epoch_entry){
            .epoch = e->epoch,
            .lsn_first = e->lsn_first,
            .primary_index = index,
            .cause = (enum tdm_epoch_cause)e->cause,
            .time_ms = e->time_ms,
            .pause_ms = e->pause_ms,
            .risk_lsn_first = e->risk_lsn_first,
            .risk_lsn_last = e->risk_lsn_last,
        };
    }
    out->count = in->count;
    return 0;
}

static int from_hello(const struct tdm_proto_hello *in, const struct tdm_frame_cluster *cluster,
                      struct tdm_frame_hello *out, struct tdm_diag *diag)
{
    uint32_t index = 0;
    if (strncmp(in->cluster, cluster->name, sizeof(in->cluster)) != 0) {
        return TDM_CORRUPT(diag, "HELLO frame: cluster: %.63s, this node's is %.63s", in->cluster,
                           cluster->name);
    }
    if (!tdm_frame_cluster_index(cluster, in->node, &index)) {
        return TDM_CORRUPT(diag, "HELLO frame: node: %.63s is not a node of this cluster",
                           in->node);
    }
    out->version = in->version;
    out->role = in->role;
    out->hello_id = in->hello_id;
    out->last_lsn = in->last_lsn;
    out->durable_lsn = in->durable_lsn;
    out->last_epoch = in->last_epoch;
    memcpy(out->chain_hash.bytes, in->chain_hash, TDM_FRAME_CHAIN_HASH_SIZE);
    return from_history("HELLO", &in->history, cluster, &out->history, diag);
}

/* One batch, exactly as on disk: its header decodes and accounts for every byte. */
static int from_batch(uint32_t i, const struct tdm_proto_slice *in, struct tdm_frame_batch *out,
                      struct tdm_diag *diag)
{
    struct tdm_batch_header header;
    if (in->data == NULL || in->size < TDM_BATCH_HEADER_SIZE) {
        return TDM_CORRUPT(diag, "APPEND frame: batch %u: %zu bytes, shorter than its header", i,
                           in->size);
    }
    int rv = tdm_batch_header_decode(in->data, in->size, &header, diag);
    if (rv != 0) {
        tdm_diag_wrapf(diag, "APPEND frame: batch %u", i);
        return rv;
    }
    if (in->size != (size_t)TDM_BATCH_HEADER_SIZE + header.body_size) {
        return TDM_CORRUPT(diag, "APPEND frame: batch %u: %zu bytes, its header says %zu", i,
                           in->size, (size_t)TDM_BATCH_HEADER_SIZE + header.body_size);
    }
    tdm_assert(in->size <= UINT32_MAX);
    tdm_assert(header.record_count >= 1);
    out->lsn_first = header.lsn_first;
    out->lsn_last = tdm_batch_lsn_last(&header);
    out->epoch = header.epoch;
    out->size = (uint32_t)in->size;
    memcpy(out->chain_hash.bytes, header.chain_hash.bytes, TDM_FRAME_CHAIN_HASH_SIZE);
    out->bytes = in->data;
    return 0;
}

static int from_append(const struct tdm_proto_append *in, struct tdm_frame_append *out,
                       struct tdm_diag *diag)
{
    if (in->batch_count > TDM_FRAME_BATCHES_MAX) {
        return TDM_CORRUPT(diag, "APPEND frame: batch count: %u, a node takes at most %u",
                           in->batch_count, (unsigned)TDM_FRAME_BATCHES_MAX);
    }
    out->commit_lsn = in->commit_lsn;
    for (uint32_t i = 0; i < in->batch_count; i++) {
        int rv = from_batch(i, &in->batches[i], &out->batches[i], diag);
        if (rv != 0) {
            return rv;
        }
    }
    out->batch_count = in->batch_count;
    return 0;
}

/* Row i of the lag table is node index i: the rows name the cluster's nodes in order. */
static int from_heartbeat(const struct tdm_proto_heartbeat *in,
                          const struct tdm_frame_cluster *cluster, struct tdm_frame_heartbeat *out,
                          struct tdm_diag *diag)
{
    if (in->lag_count > cluster->node_count) {
        return TDM_CORRUPT(diag, "HEARTBEAT frame: lag table: %u rows, the cluster has %u nodes",
                           in->lag_count, cluster->node_count);
    }
    tdm_assert(cluster->node_count <= TDM_REPLICA_NODES_MAX);
    for (uint32_t i = 0; i < in->lag_count; i++) {
        const struct tdm_proto_lag *lag = &in->lags[i];
        if (strncmp(lag->node, cluster->node_ids[i], sizeof(lag->node)) != 0) {
            return TDM_CORRUPT(diag, "HEARTBEAT frame: lag table: row %u is %.63s, expected %.63s",
                               i, lag->node, cluster->node_ids[i]);
        }
        out->lags[i] = (struct tdm_frame_lag){
            .durable_lsn = lag->durable_lsn,
            .records = lag->records,
            .size = lag->size,
            .ms = lag->ms,
            .link_up = lag->link_up,
        };
    }
    out->last_lsn = in->last_lsn;
    out->commit_lsn = in->commit_lsn;
    out->send_ms = in->send_ms;
    out->node_count = in->lag_count;
    return 0;
}

static int from_forward(const struct tdm_proto_records *in, struct tdm_frame_forward *out,
                        struct tdm_diag *diag)
{
    if (in->entries.size > UINT32_MAX || (in->entries.data == NULL && in->entries.size != 0)) {
        return TDM_CORRUPT(diag, "FORWARD frame: records: %zu bytes, not a slice of a frame",
                           in->entries.size);
    }
    out->request_id = in->request_id;
    out->record_count = in->record_count;
    out->flags = in->flags;
    out->size = (uint32_t)in->entries.size;
    out->records = in->entries.data;
    return 0;
}

/* Success: record_count >= 1 records from lsn_first; failure: no LSNs at all. */
static int from_forward_result(const struct tdm_proto_result *in,
                               struct tdm_frame_forward_result *out, struct tdm_diag *diag)
{
    uint64_t lsn_last = 0;
    if (in->status > 0) {
        return TDM_CORRUPT(diag, "FORWARD_RESULT frame: status: %d, positive", in->status);
    }
    if (in->status == 0) {
        if (in->lsn_first == 0 || in->record_count == 0) {
            return TDM_CORRUPT(diag,
                               "FORWARD_RESULT frame: success without LSNs (lsn_first %llu, "
                               "%u records)",
                               (unsigned long long)in->lsn_first, in->record_count);
        }
        if (in->lsn_first > UINT64_MAX - (in->record_count - 1)) {
            return TDM_CORRUPT(diag, "FORWARD_RESULT frame: lsn_first: %llu + %u records overflow",
                               (unsigned long long)in->lsn_first, in->record_count);
        }
        lsn_last = in->lsn_first + (in->record_count - 1);
    } else if (in->lsn_first != 0 || in->record_count != 0) {
        return TDM_CORRUPT(diag,
                           "FORWARD_RESULT frame: failure with LSNs (lsn_first %llu, "
                           "%u records)",
                           (unsigned long long)in->lsn_first, in->record_count);
    }
    out->request_id = in->request_id;
    out->status = in->status;
    out->lsn_first = in->lsn_first;
    out->lsn_last = lsn_last;
    return 0;
}

/* CHECK and CHECK_RESULT carry no node ids: the decoder's checks are all. */
static void from_check(const struct tdm_proto_check *in, struct tdm_frame_check *out)
{
    out->check_id = in->check_id;
    out->lsn = in->lsn;
    memcpy(out->chain_hash.bytes, in->chain_hash, TDM_FRAME_CHAIN_HASH_SIZE);
    out->divergent_first = in->divergent_first;
    out->divergent_last = in->divergent_last;
}

static void from_check_result(const struct tdm_proto_check_result *in,
                              struct tdm_frame_check_result *out)
{
    out->check_id = in->check_id;
    out->lsn = in->lsn;
    out->result = in->result;
    out->batch_first = in->batch_first;
    out->batch_last = in->batch_last;
    memcpy(out->chain_hash.bytes, in->chain_hash, TDM_FRAME_CHAIN_HASH_SIZE);
}

static int from_handover(const struct tdm_proto_handover *in,
                         const struct tdm_frame_cluster *cluster, struct tdm_frame_handover *out,
                         struct tdm_diag *diag)
{
    out->new_epoch = in->new_epoch;
    out->last_lsn = in->last_lsn;
    memcpy(out->chain_hash.bytes, in->chain_hash, TDM_FRAME_CHAIN_HASH_SIZE);
    return from_history("HANDOVER", &in->history, cluster, &out->history, diag);
}

static int from_fence(const struct tdm_proto_fence *in, const struct tdm_frame_cluster *cluster,
                      struct tdm_frame_fence *out, struct tdm_diag *diag)
{
    out->fence_id = in->fence_id;
    out->flags = in->flags;
    out->new_epoch = in->new_epoch;
    out->expect_epoch = in->expect_epoch;
    out->expect_last_epoch = in->expect_last_epoch;
    out->expect_durable_lsn = in->expect_durable_lsn;
    return from_history("FENCE", &in->history, cluster, &out->history, diag);
}

static void from_fenced(const struct tdm_proto_fenced *in, struct tdm_frame_fenced *out)
{
    out->fence_id = in->fence_id;
    out->refusal = in->refusal;
    out->role = in->role;
    out->flags = in->flags;
    out->epoch = in->epoch;
    out->last_epoch = in->last_epoch;
    out->last_lsn = in->last_lsn;
    out->durable_lsn = in->durable_lsn;
    out->commit_lsn = in->commit_lsn;
    memcpy(out->chain_hash.bytes, in->chain_hash, TDM_FRAME_CHAIN_HASH_SIZE);
}

int tdm_frame_from_proto(const struct tdm_proto_msg *msg, const struct tdm_frame_cluster *cluster,
                         struct tdm_frame *frame, struct tdm_diag *diag)
{
    tdm_assert(msg != NULL);
    tdm_assert(frame != NULL);
    cluster_assert(cluster);
    memset(frame, 0, sizeof(*frame));
    frame->type = msg->type;
    frame->epoch = msg->epoch;
    switch ((enum tdm_proto_type)msg->type) {
    case TDM_PROTO_HELLO:
        return from_hello(&msg->hello, cluster, &frame->hello, diag);
    case TDM_PROTO_START:
        frame->start.hello_id = msg->start.hello_id;
        frame->start.fork_lsn = msg->start.fork_lsn;
        return from_history("START", &msg->start.history, cluster, &frame->start.history, diag);
    case TDM_PROTO_READY:
        frame->ready.hello_id = msg->ready.hello_id;
        frame->ready.last_lsn = msg->ready.last_lsn;
        frame->ready.durable_lsn = msg->ready.durable_lsn;
        memcpy(frame->ready.chain_hash.bytes, msg->ready.chain_hash, TDM_FRAME_CHAIN_HASH_SIZE);
        return 0;
    case TDM_PROTO_APPEND:
        return from_append(&msg->append, &frame->append, diag);
    case TDM_PROTO_ACK:
        frame->ack.durable_lsn = msg->ack.durable_lsn;
        frame->ack.received_lsn = msg->ack.received_lsn;
        frame->ack.echo_ms = msg->ack.echo_ms;
        return 0;
    case TDM_PROTO_HEARTBEAT:
        return from_heartbeat(&msg->heartbeat, cluster, &frame->heartbeat, diag);
    case TDM_PROTO_FORWARD:
        return from_forward(&msg->forward, &frame->forward, diag);
    case TDM_PROTO_FORWARD_RESULT:
        return from_forward_result(&msg->forward_result, &frame->forward_result, diag);
    case TDM_PROTO_CHECK:
        from_check(&msg->check, &frame->check);
        return 0;
    case TDM_PROTO_CHECK_RESULT:
        from_check_result(&msg->check_result, &frame->check_result);
        return 0;
    case TDM_PROTO_HANDOVER:
        return from_handover(&msg->handover, cluster, &frame->handover, diag);
    case TDM_PROTO_HANDOVER_DONE:
        frame->handover_done.new_epoch = msg->handover_done.new_epoch;
        frame->handover_done.refusal = msg->handover_done.refusal;
        frame->handover_done.last_lsn = msg->handover_done.last_lsn;
        memcpy(frame->handover_done.chain_hash.bytes, msg->handover_done.chain_hash,
               TDM_FRAME_CHAIN_HASH_SIZE);
        return 0;
    case TDM_PROTO_FENCE:
        return from_fence(&msg->fence, cluster, &frame->fence, diag);
    case TDM_PROTO_FENCED:
        from_fenced(&msg->fenced, &frame->fenced);
        return 0;
    case TDM_PROTO_APPEND_REQUEST:
    case TDM_PROTO_APPEND_RESULT:
    case TDM_PROTO_QUERY:
    case TDM_PROTO_QUERY_RESULT:
    case TDM_PROTO_STATUS:
    case TDM_PROTO_STATUS_RESULT:
    case TDM_PROTO_SWITCHOVER:
    case TDM_PROTO_SWITCHOVER_RESULT:
    case TDM_PROTO_FAILOVER:
    case TDM_PROTO_FAILOVER_RESULT:
    case TDM_PROTO_HISTORY:
    case TDM_PROTO_HISTORY_RESULT:
    case TDM_PROTO_QUARANTINE:
    case TDM_PROTO_QUARANTINE_RESULT:
    case TDM_PROTO_VERIFY:
    case TDM_PROTO_VERIFY_RESULT:
        break;
    case TDM_PROTO_FETCH:
    case TDM_PROTO_FETCHED:
        /* Repair frames (PROTOCOL.md §9.4) are the adapter's (net/uv_repair.c):
         * they carry batches of sealed segments, not the replica's state. */
        tdm_diag_printf(diag, "%s frame: a repair frame, handled outside the replica",
                        tdm_proto_type_name(msg->type));
        return -ENOTSUP;
    }
    tdm_diag_printf(diag, "%s frame (type %u): not a replication frame of this version",
                    tdm_proto_type_name(msg->type), msg->type);
    return -ENOTSUP;
}

/* --- Sent: frame -> proto ---------------------------------------------------- */

static int to_history(const char *type, const struct tdm_epoch_history *in,
                      const struct tdm_frame_cluster *cluster, struct tdm_proto_history *out,
                      struct tdm_diag *diag)
{
    if (in->count > TDM_PROTO_HISTORY_MAX) {
        tdm_diag_printf(diag, "%s frame: history: %u entries, the wire takes at most %u", type,
                        in->count, (unsigned)TDM_PROTO_HISTORY_MAX);
        return TANDEM_EINVALID;
    }
    for (uint32_t i = 0; i < in->count; i++) {
        const struct tdm_epoch_entry *e = &in->entries[i];
        if (e->primary_index >= cluster->node_count) {
            tdm_diag_printf(diag,
                            "%s frame: history: epoch %llu: primary index %u, the cluster "
                            "has %u nodes",
                            type, (unsigned long long)e->epoch, e->primary_index,
                            cluster->node_count);
            return TANDEM_EINVALID;
        }
        struct tdm_proto_epoch *p = &out->entries[i];
        p->epoch = e->epoch;
        p->lsn_first = e->lsn_first;
        p->cause = (uint8_t)e->cause;
        p->time_ms = e->time_ms;
        p->pause_ms = e->pause_ms;
        p->risk_lsn_first = e->risk_lsn_first;
        p->risk_lsn_last = e->risk_lsn_last;
        snprintf(p->primary, sizeof(p->primary), "%s", cluster->node_ids[e->primary_index]);
    }
    out->count = in->count;
    return 0;
}

static int to_hello(const struct tdm_frame_hello *in, const struct tdm_frame_cluster *cluster,
                    struct tdm_proto_hello *out, struct tdm_diag *diag)
{
    out->version = in->version;
    out->role = in->role;
    snprintf(out->cluster, sizeof(out->cluster), "%s", cluster->name);
    snprintf(out->node, sizeof(out->node), "%s", cluster->node_ids[cluster->self_index]);
    out->hello_id = in->hello_id;
    out->last_lsn = in->last_lsn;
    out->durable_lsn = in->durable_lsn;
    out->last_epoch = in->last_epoch;
    memcpy(out->chain_hash, in->chain_hash.bytes, TDM_PROTO_CHAIN_HASH_SIZE);
    return to_history("HELLO", &in->history, cluster, &out->history, diag);
}

/* Our own batch: its fields must say what its header says, or the receiver
 * would refuse it (from_batch) or, worse, place it where it does not belong. */
static int to_batch(uint32_t i, const struct tdm_frame_batch *in, struct tdm_proto_slice *out,
                    struct tdm_diag *diag)
{
    struct tdm_batch_header header;
    if (in->bytes == NULL || in->size < TDM_BATCH_HEADER_SIZE) {
        tdm_diag_printf(diag, "APPEND frame: batch %u: %u bytes, shorter than its header", i,
                        in->size);
        return TANDEM_EINVALID;
    }
    struct tdm_diag header_diag;
    if (tdm_batch_header_decode(in->bytes, in->size, &header, &header_diag) != 0) {
        tdm_diag_printf(diag, "APPEND frame: batch %u: %s", i, header_diag.message);
        return TANDEM_EINVALID;
    }
    struct tdm_chain_hash chain;
    memcpy(chain.bytes, in->chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
    if (header.lsn_first != in->lsn_first || tdm_batch_lsn_last(&header) != in->lsn_last ||
        header.epoch != in->epoch || !tdm_chain_hash_equal(&header.chain_hash, &chain) ||
        (uint64_t)TDM_BATCH_HEADER_SIZE + header.body_size != in->size) {
        tdm_diag_printf(diag,
                        "APPEND frame: batch %u: fields (lsn %llu..%llu, epoch %llu, %u bytes) "
                        "differ from its header",
                        i, (unsigned long long)in->lsn_first, (unsigned long long)in->lsn_last,
                        (unsigned long long)in->epoch, in->size);
        return TANDEM_EINVALID;
    }
    out->data = in->bytes;
    out->size = in->size;
    return 0;
}

static int to_append(const struct tdm_frame_append *in, struct tdm_proto_append *out,
                     struct tdm_diag *diag)
{
    if (in->batch_count > TDM_PROTO_APPEND_BATCHES_MAX) {
        tdm_diag_printf(diag, "APPEND frame: batch count: %u, the wire takes at most %u",
                        in->batch_count, (unsigned)TDM_PROTO_APPEND_BATCHES_MAX);
        return TANDEM_EINVALID;
    }
    out->commit_lsn = in->commit_lsn;
    for (uint32_t i = 0; i < in->batch_count; i++) {
        int rv = to_batch(i, &in->batches[i], &out->batches[i], diag);
        if (rv != 0) {
            return rv;
        }
    }
    out->batch_count = in->batch_count;
    return 0;
}

static int to_heartbeat(const struct tdm_frame_heartbeat *in,
                        const struct tdm_frame_cluster *cluster, struct tdm_proto_heartbeat *out,
                        struct tdm_diag *diag)
{
    if (in->node_count > cluster->node_count) {
        tdm_diag_printf(diag, "HEARTBEAT frame: lag table: %u rows, the cluster has %u nodes",
                        in->node_count, cluster->node_count);
        return TANDEM_EINVALID;
    }
    tdm_assert(cluster->node_count <= TDM_PROTO_PEERS_MAX);
    for (uint32_t i = 0; i < in->node_count; i++) {
        const struct tdm_frame_lag *lag = &in->lags[i];
        struct tdm_proto_lag *p = &out->lags[i];
        snprintf(p->node, sizeof(p->node), "%s", cluster->node_ids[i]);
        p->durable_lsn = lag->durable_lsn;
        p->records = lag->records;
        p->size = lag->size;
        p->ms = lag->ms;
        p->link_up = lag->link_up;
    }
    out->last_lsn = in->last_lsn;
    out->commit_lsn = in->commit_lsn;
    out->send_ms = in->send_ms;
    out->lag_count = in->node_count;
    return 0;
}

static int to_forward(const struct tdm_frame_forward *in, struct tdm_proto_records *out,
                      struct tdm_diag *diag)
{
    if (in->records == NULL) {
        tdm_diag_printf(diag, "FORWARD frame: records: missing");
        return TANDEM_EINVALID;
    }
    out->request_id = in->request_id;
    out->record_count = in->record_count;
    out->flags = in->flags;
    out->entries.data = in->records;
    out->entries.size = in->size;
    return 0;
}

static int to_forward_result(const struct tdm_frame_forward_result *in,
                             struct tdm_proto_result *out, struct tdm_diag *diag)
{
    uint64_t count = 0;
    if (in->status > 0) {
        tdm_diag_printf(diag, "FORWARD_RESULT frame: status: %d, positive", in->status);
        return TANDEM_EINVALID;
    }
    if (in->status == 0) {
        if (in->lsn_first == 0 || in->lsn_last < in->lsn_first ||
            in->lsn_last - in->lsn_first >= TDM_PROTO_RECORDS_MAX) {
            tdm_diag_printf(diag, "FORWARD_RESULT frame: LSNs %llu..%llu: not 1..%u records",
                            (unsigned long long)in->lsn_first, (unsigned long long)in->lsn_last,
                            (unsigned)TDM_PROTO_RECORDS_MAX);
            return TANDEM_EINVALID;
        }
        count = in->lsn_last - in->lsn_first + 1;
    } else if (in->lsn_first != 0 || in->lsn_last != 0) {
        tdm_diag_printf(diag, "FORWARD_RESULT frame: failure with LSNs %llu..%llu",
                        (unsigned long long)in->lsn_first, (unsigned long long)in->lsn_last);
        return TANDEM_EINVALID;
    }
    tdm_assert(count <= TDM_PROTO_RECORDS_MAX);
    out->request_id = in->request_id;
    out->status = in->status;
    out->lsn_first = in->lsn_first;
    out->record_count = (uint32_t)count;
    out->message[0] = '\0';
    return 0;
}

static int to_fence(const struct tdm_frame_fence *in, const struct tdm_frame_cluster *cluster,
                    struct tdm_proto_fence *out, struct tdm_diag *diag)
{
    out->fence_id = in->fence_id;
    out->flags = in->flags;
    out->new_epoch = in->new_epoch;
    out->expect_epoch = in->expect_epoch;
    out->expect_last_epoch = in->expect_last_epoch;
    out->expect_durable_lsn = in->expect_durable_lsn;
    return to_history("FENCE", &in->history, cluster, &out->history, diag);
}

static void to_fenced(const struct tdm_frame_fenced *in, struct tdm_proto_fenced *out)
{
    out->fence_id = in->fence_id;
    out->refusal = in->refusal;
    out->role = in->role;
    out->flags = in->flags;
    out->epoch = in->epoch;
    out->last_epoch = in->last_epoch;
    out->last_lsn = in->last_lsn;
    out->durable_lsn = in->durable_lsn;
    out->commit_lsn = in->commit_lsn;
    memcpy(out->chain_hash, in->chain_hash.bytes, TDM_PROTO_CHAIN_HASH_SIZE);
}

/* HANDOVER, HANDOVER_DONE, FENCE, FENCED (PROTOCOL.md §3.4). */
static int to_switch(const struct tdm_frame *frame, const struct tdm_frame_cluster *cluster,
                     struct tdm_proto_msg *msg, struct tdm_diag *diag)
{
    switch ((enum tdm_frame_type)frame->type) {
    case TDM_FRAME_HANDOVER:
        msg->handover.new_epoch = frame->handover.new_epoch;
        msg->handover.last_lsn = frame->handover.last_lsn;
        memcpy(msg->handover.chain_hash, frame->handover.chain_hash.bytes,
               TDM_PROTO_CHAIN_HASH_SIZE);
        return to_history("HANDOVER", &frame->handover.history, cluster, &msg->handover.history,
                          diag);
    case TDM_FRAME_HANDOVER_DONE:
        msg->handover_done.new_epoch = frame->handover_done.new_epoch;
        msg->handover_done.refusal = frame->handover_done.refusal;
        msg->handover_done.last_lsn = frame->handover_done.last_lsn;
        memcpy(msg->handover_done.chain_hash, frame->handover_done.chain_hash.bytes,
               TDM_PROTO_CHAIN_HASH_SIZE);
        return 0;
    case TDM_FRAME_FENCE:
        return to_fence(&frame->fence, cluster, &msg->fence, diag);
    default:
        tdm_assert(frame->type == TDM_FRAME_FENCED);
        to_fenced(&frame->fenced, &msg->fenced);
        return 0;
    }
}

int tdm_frame_to_proto(const struct tdm_frame *frame, const struct tdm_frame_cluster *cluster,
                       struct tdm_proto_msg *msg, struct tdm_diag *diag)
{
    tdm_assert(frame != NULL);
    tdm_assert(msg != NULL);
    cluster_assert(cluster);
    memset(msg, 0, sizeof(*msg));
    msg->type = frame->type;
    msg->epoch = frame->epoch;
    switch ((enum tdm_frame_type)frame->type) {
    case TDM_FRAME_HELLO:
        return to_hello(&frame->hello, cluster, &msg->hello, diag);
    case TDM_FRAME_START:
        msg->start.hello_id = frame->start.hello_id;
        msg->start.fork_lsn = frame->start.fork_lsn;
        return to_history("START", &frame->start.history, cluster, &msg->start.history, diag);
    case TDM_FRAME_READY:
        msg->ready.hello_id = frame->ready.hello_id;
        msg->ready.last_lsn = frame->ready.last_lsn;
        msg->ready.durable_lsn = frame->ready.durable_lsn;
        memcpy(msg->ready.chain_hash, frame->ready.chain_hash.bytes, TDM_PROTO_CHAIN_HASH_SIZE);
        return 0;
    case TDM_FRAME_APPEND:
        return to_append(&frame->append, &msg->append, diag);
    case TDM_FRAME_ACK:
        msg->ack.durable_lsn = frame->ack.durable_lsn;
        msg->ack.received_lsn = frame->ack.received_lsn;
        msg->ack.echo_ms = frame->ack.echo_ms;
        return 0;
    case TDM_FRAME_HEARTBEAT:
        return to_heartbeat(&frame->heartbeat, cluster, &msg->heartbeat, diag);
    case TDM_FRAME_FORWARD:
        return to_forward(&frame->forward, &msg->forward, diag);
    case TDM_FRAME_FORWARD_RESULT:
        return to_forward_result(&frame->forward_result, &msg->forward_result, diag);
    case TDM_FRAME_HANDOVER:
    case TDM_FRAME_HANDOVER_DONE:
    case TDM_FRAME_FENCE:
    case TDM_FRAME_FENCED:
        return to_switch(frame, cluster, msg, diag);
    case TDM_FRAME_CHECK:
        msg->check.check_id = frame->check.check_id;
        msg->check.lsn = frame->check.lsn;
        memcpy(msg->check.chain_hash, frame->check.chain_hash.bytes, TDM_PROTO_CHAIN_HASH_SIZE);
        msg->check.divergent_first = frame->check.divergent_first;
        msg->check.divergent_last = frame->check.divergent_last;
        return 0;
    case TDM_FRAME_CHECK_RESULT:
        msg->check_result.check_id = frame->check_result.check_id;
        msg->check_result.lsn = frame->check_result.lsn;
        msg->check_result.result = frame->check_result.result;
        msg->check_result.batch_first = frame->check_result.batch_first;
        msg->check_result.batch_last = frame->check_result.batch_last;
        memcpy(msg->check_result.chain_hash, frame->check_result.chain_hash.bytes,
               TDM_PROTO_CHAIN_HASH_SIZE);
        return 0;
    case TDM_FRAME__COUNT:
        break;
    }
    tdm_diag_printf(diag, "frame type %u: not a replication frame", frame->type);
    return TANDEM_EINVALID;
}
