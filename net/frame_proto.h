/* net/frame_proto.h: conversion between net/proto's decoded messages (struct
 * tdm_proto_msg, docs/PROTOCOL.md §3) and net/replica's frames (struct
 * tdm_frame, net/frame.h), for the replication frames HELLO .. FORWARD_RESULT
 * and the verification frames CHECK, CHECK_RESULT (PROTOCOL.md §9).
 *
 * Pure and bounded: no I/O, no clock, no allocation, no copy of batch or
 * record bytes. What the two sides name differently is mapped here:
 * - node ids <-> node indexes, through struct tdm_frame_cluster (the sorted
 *   list of node ids, PROTOCOL.md §2): history primaries and lag-table rows;
 * - HELLO's cluster name and node id, which a tdm_frame does not carry: filled
 *   from the cluster on the way out, checked against it on the way in;
 * - each APPEND batch's header fields (lsn_first, lsn_last, epoch, chain hash),
 *   which the wire carries only inside the batch bytes: decoded from the batch
 *   header (engine/batch.h) on the way in, checked against it on the way out;
 * - FORWARD_RESULT's record_count <-> lsn_last, and its message (sent empty,
 *   dropped on the way in: the replica has no use for it).
 *
 * Happy path for the adapter (net/uv):
 * 1. Receive: tdm_proto_decode(), then tdm_frame_from_proto(); hand the frame
 *    to tdm_replica_step() as a RECEIVE event. Batch and record pointers in the
 *    frame borrow the reader's buffer, like the msg's slices.
 * 2. Send: build a struct tdm_frame from a struct tdm_send (plus the history,
 *    lag table, batches or records that the actions and the adapter hold),
 *    tdm_frame_to_proto(), then tdm_proto_encode().
 *
 * Thread: none of this keeps state; a cluster is read-only after it is filled. */
#ifndef TDM_NET_FRAME_PROTO_H
#define TDM_NET_FRAME_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/base/error.h"
#include "net/frame.h"
#include "net/proto.h"

/* The nodes of a cluster as the conversions see them. Filled by the adapter
 * from its configuration; check it with tdm_frame_cluster_valid() once. */
struct tdm_frame_cluster {
    char name[TDM_PROTO_NAME_SIZE_MAX + 1]; /* The cluster name HELLO carries. */
    uint32_t node_count;                    /* 1..TDM_REPLICA_NODES_MAX. */
    uint32_t self_index;                    /* This node: the sender of what to_proto converts. */
    /* Node index i is node_ids[i]: valid ids, strictly increasing (strcmp). */
    char node_ids[TDM_REPLICA_NODES_MAX][TDM_PROTO_NAME_SIZE_MAX + 1];
};

/* True if cluster is well formed: a valid name, 1..TDM_REPLICA_NODES_MAX valid
 * node ids in strictly increasing order, self_index among them. The
 * conversions assert it (it is the adapter's own configuration). */
bool tdm_frame_cluster_valid(const struct tdm_frame_cluster *cluster);

/* Set *index to the node index of node_id (a NUL-terminated id, e.g. the
 * authenticated TLS peer name or a HELLO's node). Returns true if node_id is a
 * node of cluster, else false (and leaves *index alone). */
bool tdm_frame_cluster_index(const struct tdm_frame_cluster *cluster, const char *node_id,
                             uint32_t *index);

/* Convert a received, decoded msg into *frame for tdm_replica_step(). msg is
 * untrusted: a value the replica cannot take (a history primary or lag-table
 * row that is not the cluster's node at that index, a HELLO of another
 * cluster or node, a batch whose header does not decode or does not match its
 * size, a FORWARD_RESULT whose LSNs do not form a range, a count above what a
 * tdm_frame holds) returns TANDEM_ECORRUPT with diag "<TYPE> frame: <field>:
 * <why>" and a trace line, never an assertion. A type with no tdm_frame
 * (client frames) returns -ENOTSUP. On failure
 * *frame is unspecified. Batch bytes and records in *frame borrow msg's
 * slices (valid as long as they are). HELLO's node id is checked to be a
 * member only: the adapter still compares it with the link's TLS peer name. */
int tdm_frame_from_proto(const struct tdm_proto_msg *msg, const struct tdm_frame_cluster *cluster,
                         struct tdm_frame *frame, struct tdm_diag *diag);

/* Convert a frame this node sends (sender: cluster->self_index) into *msg for
 * tdm_proto_encode(). Returns 0, or TANDEM_EINVALID with diag if frame does not
 * fit the wire: an unknown type, a node index outside the cluster, a count
 * above the wire's limit, an APPEND batch whose header does not match its
 * fields, a FORWARD_RESULT whose status and LSNs disagree. Limits that only
 * the encoder checks (names, record layout, LSN orders) are left to
 * tdm_proto_encode(), which refuses them with TANDEM_EINVALID. On failure
 * *msg is unspecified. Slices in *msg borrow frame's batch and record bytes. */
int tdm_frame_to_proto(const struct tdm_frame *frame, const struct tdm_frame_cluster *cluster,
                       struct tdm_proto_msg *msg, struct tdm_diag *diag);

#endif
