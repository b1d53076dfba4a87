/* tests/unit/test_frame_proto.c: struct tdm_frame <-> struct tdm_proto_msg
 * (net/frame_proto.c): every replication frame survives frame -> msg -> bytes
 * -> msg -> frame unchanged, batch and record bytes are never copied, values
 * the replica cannot take are refused on the way in (TANDEM_ECORRUPT) and
 * frames the wire cannot carry on the way out (TANDEM_EINVALID), and seeded
 * mutations of the bytes are refused or convert back to the same frame. */
#include "tdm_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/bytes.h"
#include "engine/base/prng.h"
#include "engine/batch.h"
#include "net/frame_proto.h"

static const uint16_t every_type[] = {
    TDM_FRAME_HELLO, TDM_FRAME_START,        TDM_FRAME_READY,    TDM_FRAME_APPEND,
    TDM_FRAME_ACK,   TDM_FRAME_HEARTBEAT,    TDM_FRAME_FORWARD,  TDM_FRAME_FORWARD_RESULT,
    TDM_FRAME_CHECK, TDM_FRAME_CHECK_RESULT, TDM_FRAME_HANDOVER, TDM_FRAME_HANDOVER_DONE,
    TDM_FRAME_FENCE, TDM_FRAME_FENCED,
};
#define TYPE_COUNT    (sizeof(every_type) / sizeof(every_type[0]))
#define VARIANT_COUNT 2 /* Each type has a rich sample (0) and an edge sample (1). */

#define BATCH_COUNT 3
static uint8_t batch_bytes[BATCH_COUNT][2048];
static struct tdm_batch_header batch_headers[BATCH_COUNT];
static uint32_t batch_sizes[BATCH_COUNT];
static uint8_t record_bytes[64];
static uint32_t record_bytes_size;

/* Frames and messages are large (histories); keep them off the stack. */
static struct tdm_frame frame_a;
static struct tdm_frame frame_b;
static struct tdm_proto_msg msg_a;
static struct tdm_proto_msg msg_b;
static uint8_t buffer_a[1 << 16];
static uint8_t buffer_b[1 << 16];

static const struct tdm_frame_cluster cluster = {
    .name = "eu-mail.1",
    .node_count = 3,
    .self_index = 1,
    .node_ids = {"n0", "n1", "node-2"},
};

/* Three real, chained batches of epoch 4: LSNs 101-102, 103-105, 106. */
static int group_setup(void **state)
{
    (void)state;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    static const uint32_t counts[BATCH_COUNT] = {2, 3, 1};
    struct tdm_chain_hash prev;
    memset(prev.bytes, 0x77, sizeof(prev.bytes));
    uint64_t lsn = 101;
    for (uint32_t b = 0; b < BATCH_COUNT; b++) {
        uint8_t raw[256];
        struct tdm_writer w;
        tdm_writer_init(&w, raw, sizeof(raw));
        for (uint32_t i = 0; i < counts[b]; i++) {
            tdm_put_u32(&w, 4 + i);
            for (uint32_t j = 0; j < 4 + i; j++) {
                tdm_put_u8(&w, (uint8_t)(b * 32 + i * 8 + j));
            }
        }
        assert_false(w.overflow);
        assert_true(tdm_batch_bound(w.offset) <= sizeof(batch_bytes[b]));
        int size = tdm_batch_build(cctx, raw, w.offset, counts[b], 4, lsn, lsn - 1, 1000 + b, &prev,
                                   batch_bytes[b], sizeof(batch_bytes[b]), &batch_headers[b]);
        assert_true(size > TDM_BATCH_HEADER_SIZE);
        batch_sizes[b] = (uint32_t)size;
        prev = batch_headers[b].chain_hash;
        lsn += counts[b];
    }
    ZSTD_freeCCtx(cctx);
    struct tdm_writer w;
    tdm_writer_init(&w, record_bytes, sizeof(record_bytes));
    for (uint32_t i = 0; i < 3; i++) {
        tdm_put_u32(&w, 5 + i);
        for (uint32_t j = 0; j < 5 + i; j++) {
            tdm_put_u8(&w, (uint8_t)(i * 16 + j));
        }
    }
    assert_false(w.overflow);
    record_bytes_size = (uint32_t)w.offset;
    return 0;
}

static void sample_history(struct tdm_epoch_history *history, uint32_t variant)
{
    if (variant == 0) {
        history->count = 3;
        history->entries[0] = (struct tdm_epoch_entry){.epoch = 1, .lsn_first = 1};
        history->entries[1] =
            (struct tdm_epoch_entry){.epoch = 2, .lsn_first = 50, .primary_index = 2};
        history->entries[2] = (struct tdm_epoch_entry){.epoch = 4,
                                                       .lsn_first = 101,
                                                       .primary_index = 1,
                                                       .cause = TDM_EPOCH_CAUSE_FORCED,
                                                       .time_ms = 1700000000123,
                                                       .pause_ms = 12,
                                                       .risk_lsn_first = 90,
                                                       .risk_lsn_last = 100};
        return;
    }
    history->count = TDM_REPLICA_EPOCHS_MAX;
    for (uint32_t i = 0; i < TDM_REPLICA_EPOCHS_MAX; i++) {
        history->entries[i].epoch = 1 + 3 * (uint64_t)i;
        history->entries[i].lsn_first = 1 + (uint64_t)i / 2;
        history->entries[i].primary_index = i % cluster.node_count;
    }
}

static void sample_batch(uint32_t b, struct tdm_frame_batch *batch)
{
    const struct tdm_batch_header *h = &batch_headers[b];
    batch->lsn_first = h->lsn_first;
    batch->lsn_last = tdm_batch_lsn_last(h);
    batch->epoch = h->epoch;
    batch->size = batch_sizes[b];
    memcpy(batch->chain_hash.bytes, h->chain_hash.bytes, TDM_FRAME_CHAIN_HASH_SIZE);
    batch->bytes = batch_bytes[b];
}

/* Switchover and failover frames (PROTOCOL.md §8): variant 1 is a refusal,
 * or a probe. */
static void sample_switch_frame(uint16_t type, uint32_t variant, struct tdm_frame *frame)
{
    if (type == TDM_FRAME_HANDOVER) {
        sample_history(&frame->handover.history, variant);
        frame->handover.new_epoch =
            frame->handover.history.entries[frame->handover.history.count - 1].epoch;
        frame->handover.last_lsn = 100;
        memset(frame->handover.chain_hash.bytes, 0x21, TDM_FRAME_CHAIN_HASH_SIZE);
    } else if (type == TDM_FRAME_HANDOVER_DONE) {
        frame->handover_done.new_epoch = 7;
        frame->handover_done.refusal = variant == 0 ? 0 : TDM_REFUSAL_TARGET_DIVERGED;
        frame->handover_done.last_lsn = 100;
        memset(frame->handover_done.chain_hash.bytes, 0x22, TDM_FRAME_CHAIN_HASH_SIZE);
    } else if (type == TDM_FRAME_FENCE) {
        frame->fence.fence_id = variant == 0 ? 5 : UINT64_MAX;
        frame->fence.flags = variant == 0 ? TDM_FENCE_FORCE : TDM_FENCE_PROBE;
        if (variant == 0) {
            sample_history(&frame->fence.history, 0);
            frame->fence.new_epoch = 4;
            frame->fence.expect_epoch = 2;
            frame->fence.expect_last_epoch = 2;
            frame->fence.expect_durable_lsn = 99;
        }
    } else {
        assert_int_equal(type, TDM_FRAME_FENCED);
        frame->fenced = (struct tdm_frame_fenced){
            .fence_id = 5,
            .refusal = variant == 0 ? 0 : TDM_REFUSAL_STATE_CHANGED,
            .role = TDM_ROLE_BACKUP,
            .flags = variant == 0 ? 0 : TDM_FENCED_PRIMARY_SEEN,
            .epoch = 4,
            .last_epoch = 2,
            .last_lsn = 106,
            .durable_lsn = 103,
            .commit_lsn = 101,
        };
        memset(frame->fenced.chain_hash.bytes, 0x23, TDM_FRAME_CHAIN_HASH_SIZE);
    }
}

static void switch_frame_assert_equal(const struct tdm_frame *a, const struct tdm_frame *b);

/* Fill frame with a valid frame of type: variant 0 is the rich one; variant 1
 * the edge (full history, no batches, no lag rows, a failed result). */
static void sample_frame(uint16_t type, uint32_t variant, struct tdm_frame *frame)
{
    memset(frame, 0, sizeof(*frame));
    frame->type = type;
    frame->epoch = 4;
    switch ((enum tdm_frame_type)type) {
    case TDM_FRAME_HELLO:
        frame->hello.version = TDM_FRAME_VERSION;
        frame->hello.role = variant == 0 ? TDM_ROLE_BACKUP : TDM_ROLE_RECOVERING;
        frame->hello.hello_id = 42;
        frame->hello.last_lsn = variant == 0 ? 106 : 0;
        frame->hello.durable_lsn = variant == 0 ? 103 : 0;
        frame->hello.last_epoch = variant == 0 ? 4 : 0;
        memset(frame->hello.chain_hash.bytes, 0x5a, TDM_FRAME_CHAIN_HASH_SIZE);
        sample_history(&frame->hello.history, variant);
        frame->epoch = frame->hello.history.entries[frame->hello.history.count - 1].epoch;
        return;
    case TDM_FRAME_START:
        frame->start.hello_id = 42;
        frame->start.fork_lsn = variant == 0 ? 100 : 0;
        sample_history(&frame->start.history, variant);
        return;
    case TDM_FRAME_READY:
        frame->ready.hello_id = 42;
        frame->ready.last_lsn = variant == 0 ? 100 : 0;
        frame->ready.durable_lsn = variant == 0 ? 99 : 0;
        memset(frame->ready.chain_hash.bytes, 0x11, TDM_FRAME_CHAIN_HASH_SIZE);
        return;
    case TDM_FRAME_APPEND:
        frame->append.commit_lsn = 100;
        frame->append.batch_count = variant == 0 ? BATCH_COUNT : 0;
        for (uint32_t b = 0; b < frame->append.batch_count; b++) {
            sample_batch(b, &frame->append.batches[b]);
        }
        return;
    case TDM_FRAME_ACK:
        frame->ack =
            (struct tdm_frame_ack){.durable_lsn = 103, .received_lsn = 106, .echo_ms = 777};
        if (variant == 1) {
            frame->ack = (struct tdm_frame_ack){.durable_lsn = 0, .received_lsn = 0, .echo_ms = 0};
        }
        return;
    case TDM_FRAME_HEARTBEAT:
        frame->heartbeat.last_lsn = 106;
        frame->heartbeat.commit_lsn = 103;
        frame->heartbeat.send_ms = 123456;
        frame->heartbeat.node_count = variant == 0 ? cluster.node_count : 0;
        for (uint32_t i = 0; i < frame->heartbeat.node_count; i++) {
            frame->heartbeat.lags[i] = (struct tdm_frame_lag){
                .durable_lsn = 100 + i,
                .records = 6 - i,
                .size = 1000 * (uint64_t)i,
                .ms = 7 * (uint64_t)i,
                .link_up = i != 2,
            };
        }
        return;
    case TDM_FRAME_FORWARD:
        frame->forward.request_id = variant == 0 ? 9 : UINT64_MAX;
        frame->forward.record_count = 3;
        frame->forward.size = record_bytes_size;
        frame->forward.records = record_bytes;
        return;
    case TDM_FRAME_FORWARD_RESULT:
        frame->forward_result.request_id = 9;
        frame->forward_result.status = variant == 0 ? 0 : TANDEM_ECOPIES;
        frame->forward_result.lsn_first = variant == 0 ? 101 : 0;
        frame->forward_result.lsn_last = variant == 0 ? 103 : 0;
        return;
    case TDM_FRAME_CHECK:
        frame->check.check_id = variant == 0 ? 3 : UINT64_MAX;
        frame->check.lsn = variant == 0 ? 105 : 1;
        memset(frame->check.chain_hash.bytes, 0x5a, sizeof(frame->check.chain_hash.bytes));
        frame->check.divergent_first = variant == 0 ? 103 : 0;
        frame->check.divergent_last = variant == 0 ? 105 : 0;
        return;
    case TDM_FRAME_CHECK_RESULT:
        frame->check_result.check_id = 3;
        frame->check_result.lsn = 105;
        frame->check_result.result = variant == 0 ? TDM_CHECK_EQUAL : TDM_CHECK_ABSENT;
        frame->check_result.batch_first = variant == 0 ? 103 : 0;
        frame->check_result.batch_last = variant == 0 ? 105 : 0;
        memset(frame->check_result.chain_hash.bytes, variant == 0 ? 0xa5 : 0,
               sizeof(frame->check_result.chain_hash.bytes));
        return;
    case TDM_FRAME_HANDOVER:
    case TDM_FRAME_HANDOVER_DONE:
    case TDM_FRAME_FENCE:
    case TDM_FRAME_FENCED:
        sample_switch_frame(type, variant, frame);
        return;
    case TDM_FRAME__COUNT:
        break;
    }
    fail_msg("no sample for type %u", type);
}

static void history_assert_equal(const struct tdm_epoch_history *a,
                                 const struct tdm_epoch_history *b)
{
    assert_int_equal(a->count, b->count);
    for (uint32_t i = 0; i < a->count; i++) {
        assert_int_equal(a->entries[i].epoch, b->entries[i].epoch);
        assert_int_equal(a->entries[i].lsn_first, b->entries[i].lsn_first);
        assert_int_equal(a->entries[i].primary_index, b->entries[i].primary_index);
        assert_int_equal(a->entries[i].cause, b->entries[i].cause);
        assert_int_equal(a->entries[i].time_ms, b->entries[i].time_ms);
        assert_int_equal(a->entries[i].pause_ms, b->entries[i].pause_ms);
        assert_int_equal(a->entries[i].risk_lsn_first, b->entries[i].risk_lsn_first);
        assert_int_equal(a->entries[i].risk_lsn_last, b->entries[i].risk_lsn_last);
    }
}

static void switch_frame_assert_equal(const struct tdm_frame *a, const struct tdm_frame *b)
{
    if (a->type == TDM_FRAME_HANDOVER) {
        assert_int_equal(a->handover.new_epoch, b->handover.new_epoch);
        assert_int_equal(a->handover.last_lsn, b->handover.last_lsn);
        assert_memory_equal(&a->handover.chain_hash, &b->handover.chain_hash,
                            TDM_FRAME_CHAIN_HASH_SIZE);
        history_assert_equal(&a->handover.history, &b->handover.history);
    } else if (a->type == TDM_FRAME_HANDOVER_DONE) {
        assert_int_equal(a->handover_done.new_epoch, b->handover_done.new_epoch);
        assert_int_equal(a->handover_done.refusal, b->handover_done.refusal);
        assert_int_equal(a->handover_done.last_lsn, b->handover_done.last_lsn);
        assert_memory_equal(&a->handover_done.chain_hash, &b->handover_done.chain_hash,
                            TDM_FRAME_CHAIN_HASH_SIZE);
    } else if (a->type == TDM_FRAME_FENCE) {
        assert_int_equal(a->fence.fence_id, b->fence.fence_id);
        assert_int_equal(a->fence.flags, b->fence.flags);
        assert_int_equal(a->fence.new_epoch, b->fence.new_epoch);
        assert_int_equal(a->fence.expect_epoch, b->fence.expect_epoch);
        assert_int_equal(a->fence.expect_last_epoch, b->fence.expect_last_epoch);
        assert_int_equal(a->fence.expect_durable_lsn, b->fence.expect_durable_lsn);
        history_assert_equal(&a->fence.history, &b->fence.history);
    } else {
        assert_int_equal(a->type, TDM_FRAME_FENCED);
        assert_memory_equal(&a->fenced, &b->fenced, offsetof(struct tdm_frame_fenced, epoch));
        assert_int_equal(a->fenced.epoch, b->fenced.epoch);
        assert_int_equal(a->fenced.last_epoch, b->fenced.last_epoch);
        assert_int_equal(a->fenced.last_lsn, b->fenced.last_lsn);
        assert_int_equal(a->fenced.durable_lsn, b->fenced.durable_lsn);
        assert_int_equal(a->fenced.commit_lsn, b->fenced.commit_lsn);
        assert_memory_equal(&a->fenced.chain_hash, &b->fenced.chain_hash,
                            TDM_FRAME_CHAIN_HASH_SIZE);
    }
}

/* Field by field (padding is not compared); bytes by content, not address. */
static void frame_assert_equal(const struct tdm_frame *a, const struct tdm_frame *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->epoch, b->epoch);
    switch ((enum tdm_frame_type)a->type) {
    case TDM_FRAME_HELLO:
        assert_int_equal(a->hello.version, b->hello.version);
        assert_int_equal(a->hello.role, b->hello.role);
        assert_int_equal(a->hello.hello_id, b->hello.hello_id);
        assert_int_equal(a->hello.last_lsn, b->hello.last_lsn);
        assert_int_equal(a->hello.durable_lsn, b->hello.durable_lsn);
        assert_int_equal(a->hello.last_epoch, b->hello.last_epoch);
        assert_memory_equal(a->hello.chain_hash.bytes, b->hello.chain_hash.bytes,
                            TDM_FRAME_CHAIN_HASH_SIZE);
        history_assert_equal(&a->hello.history, &b->hello.history);
        return;
    case TDM_FRAME_START:
        assert_int_equal(a->start.hello_id, b->start.hello_id);
        assert_int_equal(a->start.fork_lsn, b->start.fork_lsn);
        history_assert_equal(&a->start.history, &b->start.history);
        return;
    case TDM_FRAME_READY:
        assert_int_equal(a->ready.hello_id, b->ready.hello_id);
        assert_int_equal(a->ready.last_lsn, b->ready.last_lsn);
        assert_int_equal(a->ready.durable_lsn, b->ready.durable_lsn);
        assert_memory_equal(a->ready.chain_hash.bytes, b->ready.chain_hash.bytes,
                            TDM_FRAME_CHAIN_HASH_SIZE);
        return;
    case TDM_FRAME_APPEND:
        assert_int_equal(a->append.commit_lsn, b->append.commit_lsn);
        assert_int_equal(a->append.batch_count, b->append.batch_count);
        for (uint32_t i = 0; i < a->append.batch_count; i++) {
            const struct tdm_frame_batch *x = &a->append.batches[i];
            const struct tdm_frame_batch *y = &b->append.batches[i];
            assert_int_equal(x->lsn_first, y->lsn_first);
            assert_int_equal(x->lsn_last, y->lsn_last);
            assert_int_equal(x->epoch, y->epoch);
            assert_int_equal(x->size, y->size);
            assert_memory_equal(x->chain_hash.bytes, y->chain_hash.bytes,
                                TDM_FRAME_CHAIN_HASH_SIZE);
            assert_memory_equal(x->bytes, y->bytes, x->size);
        }
        return;
    case TDM_FRAME_ACK:
        assert_int_equal(a->ack.durable_lsn, b->ack.durable_lsn);
        assert_int_equal(a->ack.received_lsn, b->ack.received_lsn);
        assert_int_equal(a->ack.echo_ms, b->ack.echo_ms);
        return;
    case TDM_FRAME_HEARTBEAT:
        assert_int_equal(a->heartbeat.last_lsn, b->heartbeat.last_lsn);
        assert_int_equal(a->heartbeat.commit_lsn, b->heartbeat.commit_lsn);
        assert_int_equal(a->heartbeat.send_ms, b->heartbeat.send_ms);
        assert_int_equal(a->heartbeat.node_count, b->heartbeat.node_count);
        for (uint32_t i = 0; i < a->heartbeat.node_count; i++) {
            const struct tdm_frame_lag *x = &a->heartbeat.lags[i];
            const struct tdm_frame_lag *y = &b->heartbeat.lags[i];
            assert_int_equal(x->durable_lsn, y->durable_lsn);
            assert_int_equal(x->records, y->records);
            assert_int_equal(x->size, y->size);
            assert_int_equal(x->ms, y->ms);
            assert_int_equal(x->link_up, y->link_up);
        }
        return;
    case TDM_FRAME_FORWARD:
        assert_int_equal(a->forward.request_id, b->forward.request_id);
        assert_int_equal(a->forward.record_count, b->forward.record_count);
        assert_int_equal(a->forward.size, b->forward.size);
        assert_memory_equal(a->forward.records, b->forward.records, a->forward.size);
        return;
    case TDM_FRAME_FORWARD_RESULT:
        assert_int_equal(a->forward_result.request_id, b->forward_result.request_id);
        assert_int_equal(a->forward_result.status, b->forward_result.status);
        assert_int_equal(a->forward_result.lsn_first, b->forward_result.lsn_first);
        assert_int_equal(a->forward_result.lsn_last, b->forward_result.lsn_last);
        return;
    case TDM_FRAME_CHECK:
        assert_int_equal(a->check.check_id, b->check.check_id);
        assert_int_equal(a->check.lsn, b->check.lsn);
        assert_memory_equal(&a->check.chain_hash, &b->check.chain_hash,
                            sizeof(a->check.chain_hash));
        assert_int_equal(a->check.divergent_first, b->check.divergent_first);
        assert_int_equal(a->check.divergent_last, b->check.divergent_last);
        return;
    case TDM_FRAME_CHECK_RESULT:
        assert_int_equal(a->check_result.check_id, b->check_result.check_id);
        assert_int_equal(a->check_result.lsn, b->check_result.lsn);
        assert_int_equal(a->check_result.result, b->check_result.result);
        assert_int_equal(a->check_result.batch_first, b->check_result.batch_first);
        assert_int_equal(a->check_result.batch_last, b->check_result.batch_last);
        assert_memory_equal(&a->check_result.chain_hash, &b->check_result.chain_hash,
                            sizeof(a->check_result.chain_hash));
        return;
    case TDM_FRAME_HANDOVER:
    case TDM_FRAME_HANDOVER_DONE:
    case TDM_FRAME_FENCE:
    case TDM_FRAME_FENCED:
        switch_frame_assert_equal(a, b);
        return;
    case TDM_FRAME__COUNT:
        break;
    }
    fail_msg("no comparison for type %u", a->type);
}

/* Decode buffer[0..size) as one whole frame into *msg. */
static int decode_buffer(const uint8_t *buffer, size_t size, struct tdm_proto_msg *msg,
                         struct tdm_diag *diag)
{
    struct tdm_proto_frame frame;
    int rv = tdm_proto_frame_parse(buffer, size, &frame, diag);
    if (rv != 0) {
        return rv;
    }
    return tdm_proto_decode(&frame, msg, diag);
}

/* frame -> msg -> bytes in buffer; returns the frame's size. */
static size_t frame_encode(const struct tdm_frame *frame, uint8_t *buffer, size_t capacity)
{
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_frame_to_proto(frame, &cluster, &msg_a, &diag), 0);
    size_t written = 0;
    int rv = tdm_proto_encode(&msg_a, buffer, capacity, &written, &diag);
    if (rv != 0) {
        fail_msg("encode %s: %d %s", tdm_proto_type_name(frame->type), rv, diag.message);
    }
    assert_int_equal(written, tdm_proto_encoded_size(&msg_a));
    return written;
}

/* Every replication frame, rich and edge, comes back equal from the wire. */
static void test_frame_proto__round_trip_every_type(void **state)
{
    (void)state;
    for (size_t t = 0; t < TYPE_COUNT; t++) {
        for (uint32_t variant = 0; variant < VARIANT_COUNT; variant++) {
            sample_frame(every_type[t], variant, &frame_a);
            size_t size = frame_encode(&frame_a, buffer_a, sizeof(buffer_a));
            struct tdm_diag diag = {{0}};
            assert_int_equal(decode_buffer(buffer_a, size, &msg_b, &diag), 0);
            int rv = tdm_frame_from_proto(&msg_b, &cluster, &frame_b, &diag);
            if (rv != 0) {
                fail_msg("%s variant %u: %d %s", tdm_proto_type_name(every_type[t]), variant, rv,
                         diag.message);
            }
            frame_assert_equal(&frame_a, &frame_b);
        }
    }
}

/* The names the frame does not carry travel on the wire: HELLO's cluster and
 * sender, history primaries and lag rows as node ids. */
static void test_frame_proto__names_on_the_wire(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    sample_frame(TDM_FRAME_HELLO, 0, &frame_a);
    assert_int_equal(tdm_frame_to_proto(&frame_a, &cluster, &msg_a, &diag), 0);
    assert_string_equal(msg_a.hello.cluster, "eu-mail.1");
    assert_string_equal(msg_a.hello.node, "n1");
    assert_string_equal(msg_a.hello.history.entries[1].primary, "node-2");
    sample_frame(TDM_FRAME_HEARTBEAT, 0, &frame_a);
    assert_int_equal(tdm_frame_to_proto(&frame_a, &cluster, &msg_a, &diag), 0);
    assert_int_equal(msg_a.heartbeat.lag_count, 3);
    assert_string_equal(msg_a.heartbeat.lags[2].node, "node-2");
    assert_false(msg_a.heartbeat.lags[2].link_up);
    sample_frame(TDM_FRAME_FORWARD_RESULT, 0, &frame_a);
    assert_int_equal(tdm_frame_to_proto(&frame_a, &cluster, &msg_a, &diag), 0);
    assert_int_equal(msg_a.forward_result.record_count, 3);
    assert_string_equal(msg_a.forward_result.message, "");
    uint32_t index = 99;
    assert_true(tdm_frame_cluster_index(&cluster, "node-2", &index));
    assert_int_equal(index, 2);
    assert_false(tdm_frame_cluster_index(&cluster, "node-3", &index));
    assert_int_equal(index, 2);
}

/* Batches and records are never copied: the received frame points into the
 * receive buffer, the message to send points at the frame's bytes. */
static void test_frame_proto__zero_copy(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    size_t size = frame_encode(&frame_a, buffer_a, sizeof(buffer_a));
    for (uint32_t b = 0; b < BATCH_COUNT; b++) {
        assert_ptr_equal(msg_a.append.batches[b].data, batch_bytes[b]);
    }
    assert_int_equal(decode_buffer(buffer_a, size, &msg_b, &diag), 0);
    assert_int_equal(tdm_frame_from_proto(&msg_b, &cluster, &frame_b, &diag), 0);
    for (uint32_t b = 0; b < BATCH_COUNT; b++) {
        assert_true(frame_b.append.batches[b].bytes > buffer_a);
        assert_true(frame_b.append.batches[b].bytes + frame_b.append.batches[b].size <=
                    buffer_a + size);
    }
    sample_frame(TDM_FRAME_FORWARD, 0, &frame_a);
    size = frame_encode(&frame_a, buffer_a, sizeof(buffer_a));
    assert_ptr_equal(msg_a.forward.entries.data, record_bytes);
    assert_int_equal(decode_buffer(buffer_a, size, &msg_b, &diag), 0);
    assert_int_equal(tdm_frame_from_proto(&msg_b, &cluster, &frame_b, &diag), 0);
    assert_true(frame_b.forward.records > buffer_a);
    assert_true(frame_b.forward.records + frame_b.forward.size == buffer_a + size);
}

/* A valid received msg of type (variant 0), decoded from the wire into msg_b. */
static void received_msg(uint16_t type)
{
    sample_frame(type, 0, &frame_a);
    size_t size = frame_encode(&frame_a, buffer_a, sizeof(buffer_a));
    struct tdm_diag diag = {{0}};
    assert_int_equal(decode_buffer(buffer_a, size, &msg_b, &diag), 0);
}

static void from_refused(const char *expect)
{
    struct tdm_diag diag = {{0}};
    int rv = tdm_frame_from_proto(&msg_b, &cluster, &frame_b, &diag);
    if (rv != TANDEM_ECORRUPT || strstr(diag.message, expect) == NULL) {
        fail_msg("want TANDEM_ECORRUPT '%s', got %d '%s'", expect, rv, diag.message);
    }
}

/* Received values the replica cannot take are refused, naming the field. */
static void test_frame_proto__from_refuses(void **state)
{
    (void)state;
    received_msg(TDM_FRAME_HELLO);
    snprintf(msg_b.hello.cluster, sizeof(msg_b.hello.cluster), "us-mail");
    from_refused("HELLO frame: cluster: us-mail, this node's is eu-mail.1");
    received_msg(TDM_FRAME_HELLO);
    snprintf(msg_b.hello.node, sizeof(msg_b.hello.node), "n9");
    from_refused("HELLO frame: node: n9 is not a node");
    received_msg(TDM_FRAME_HELLO);
    snprintf(msg_b.hello.history.entries[2].primary, sizeof(msg_b.hello.history.entries[2].primary),
             "node-20");
    from_refused("HELLO frame: history: epoch 4: primary node-20");
    received_msg(TDM_FRAME_START);
    msg_b.start.history.count = TDM_REPLICA_EPOCHS_MAX + 1;
    from_refused("START frame: history: 129 entries");
    received_msg(TDM_FRAME_APPEND);
    msg_b.append.batch_count = TDM_FRAME_BATCHES_MAX + 1;
    from_refused("APPEND frame: batch count: 65");
    /* A batch whose header fails its checksum, is cut, or has a byte too many. */
    static uint8_t bad[2048];
    received_msg(TDM_FRAME_APPEND);
    memcpy(bad, batch_bytes[1], batch_sizes[1]);
    bad[20] ^= 1; /* lsn_first. */
    msg_b.append.batches[1].data = bad;
    from_refused("APPEND frame: batch 1: batch header: checksum mismatch");
    received_msg(TDM_FRAME_APPEND);
    msg_b.append.batches[2].size = TDM_BATCH_HEADER_SIZE - 1;
    from_refused("APPEND frame: batch 2: 95 bytes, shorter than its header");
    received_msg(TDM_FRAME_APPEND);
    memcpy(bad, batch_bytes[0], batch_sizes[0]);
    msg_b.append.batches[0].data = bad;
    msg_b.append.batches[0].size = batch_sizes[0] + 1;
    from_refused("its header says");
    received_msg(TDM_FRAME_APPEND);
    msg_b.append.batches[0].size = batch_sizes[0] - 1;
    from_refused("its header says");
    /* Lag rows: more than the cluster's nodes, or not in node-index order. */
    received_msg(TDM_FRAME_HEARTBEAT);
    msg_b.heartbeat.lag_count = 4;
    snprintf(msg_b.heartbeat.lags[3].node, sizeof(msg_b.heartbeat.lags[3].node), "n3");
    from_refused("HEARTBEAT frame: lag table: 4 rows, the cluster has 3 nodes");
    received_msg(TDM_FRAME_HEARTBEAT);
    snprintf(msg_b.heartbeat.lags[0].node, sizeof(msg_b.heartbeat.lags[0].node), "n1");
    snprintf(msg_b.heartbeat.lags[1].node, sizeof(msg_b.heartbeat.lags[1].node), "n0");
    from_refused("lag table: row 0 is n1, expected n0");
    /* FORWARD_RESULT LSNs that do not form a range. */
    received_msg(TDM_FRAME_FORWARD_RESULT);
    msg_b.forward_result.record_count = 0;
    from_refused("success without LSNs");
    received_msg(TDM_FRAME_FORWARD_RESULT);
    msg_b.forward_result.lsn_first = 0;
    from_refused("success without LSNs");
    received_msg(TDM_FRAME_FORWARD_RESULT);
    msg_b.forward_result.lsn_first = UINT64_MAX;
    from_refused("overflow");
    received_msg(TDM_FRAME_FORWARD_RESULT);
    msg_b.forward_result.status = TANDEM_ECOPIES;
    from_refused("failure with LSNs");
    received_msg(TDM_FRAME_FORWARD_RESULT);
    msg_b.forward_result.status = 1;
    from_refused("status: 1, positive");
    /* Frames that have no tdm_frame: issue 4 and client frames. */
    static const uint16_t others[] = {
        TDM_PROTO_APPEND_REQUEST,
        TDM_PROTO_APPEND_RESULT,
        TDM_PROTO_QUERY,
        TDM_PROTO_QUERY_RESULT,
        TDM_PROTO_STATUS,
        TDM_PROTO_STATUS_RESULT,
        TDM_PROTO_HISTORY,
        TDM_PROTO_HISTORY_RESULT,
        TDM_PROTO_QUARANTINE,
        TDM_PROTO_QUARANTINE_RESULT,
        TDM_PROTO_VERIFY,
        TDM_PROTO_VERIFY_RESULT,
        0,
        30,
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        memset(&msg_b, 0, sizeof(msg_b));
        msg_b.type = others[i];
        struct tdm_diag diag = {{0}};
        assert_int_equal(tdm_frame_from_proto(&msg_b, &cluster, &frame_b, &diag), -ENOTSUP);
        assert_non_null(strstr(diag.message, "not a replication frame"));
    }
    /* Repair frames are the adapter's (net/uv_repair.c), never the replica's. */
    static const uint16_t repair[] = {TDM_PROTO_FETCH, TDM_PROTO_FETCHED};
    for (size_t i = 0; i < 2; i++) {
        memset(&msg_b, 0, sizeof(msg_b));
        msg_b.type = repair[i];
        struct tdm_diag diag = {{0}};
        assert_int_equal(tdm_frame_from_proto(&msg_b, &cluster, &frame_b, &diag), -ENOTSUP);
        assert_non_null(strstr(diag.message, "a repair frame"));
    }
}

static void to_refused(const char *expect)
{
    struct tdm_diag diag = {{0}};
    int rv = tdm_frame_to_proto(&frame_a, &cluster, &msg_a, &diag);
    if (rv != TANDEM_EINVALID || strstr(diag.message, expect) == NULL) {
        fail_msg("want TANDEM_EINVALID '%s', got %d '%s'", expect, rv, diag.message);
    }
}

/* Frames the wire cannot carry are refused before encoding, naming the field;
 * what only the encoder checks is refused by it. */
static void test_frame_proto__to_refuses(void **state)
{
    (void)state;
    sample_frame(TDM_FRAME_HELLO, 0, &frame_a);
    frame_a.type = 0;
    to_refused("frame type 0");
    frame_a.type = TDM_FRAME__COUNT;
    to_refused("frame type 15");
    sample_frame(TDM_FRAME_HELLO, 0, &frame_a);
    frame_a.hello.history.entries[0].primary_index = 3;
    to_refused("HELLO frame: history: epoch 1: primary index 3, the cluster has 3 nodes");
    sample_frame(TDM_FRAME_START, 1, &frame_a);
    frame_a.start.history.count = TDM_REPLICA_EPOCHS_MAX + 1;
    to_refused("START frame: history: 129 entries");
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    frame_a.append.batch_count = TDM_FRAME_BATCHES_MAX + 1;
    to_refused("APPEND frame: batch count: 65");
    /* A batch's fields must say what its header says. */
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    frame_a.append.batches[1].lsn_last++;
    to_refused("APPEND frame: batch 1: fields");
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    frame_a.append.batches[0].epoch = 5;
    to_refused("differ from its header");
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    frame_a.append.batches[2].chain_hash.bytes[15] ^= 1;
    to_refused("differ from its header");
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    frame_a.append.batches[2].size--;
    to_refused("differ from its header");
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    static const uint8_t zeros[2048];
    frame_a.append.batches[0].bytes = zeros;
    to_refused("batch 0: batch header: bad magic");
    sample_frame(TDM_FRAME_APPEND, 0, &frame_a);
    frame_a.append.batches[0].bytes = NULL;
    to_refused("shorter than its header");
    sample_frame(TDM_FRAME_HEARTBEAT, 0, &frame_a);
    frame_a.heartbeat.node_count = 4;
    to_refused("HEARTBEAT frame: lag table: 4 rows");
    sample_frame(TDM_FRAME_FORWARD, 0, &frame_a);
    frame_a.forward.records = NULL;
    to_refused("FORWARD frame: records: missing");
    sample_frame(TDM_FRAME_FORWARD_RESULT, 0, &frame_a);
    frame_a.forward_result.lsn_last = frame_a.forward_result.lsn_first - 1;
    to_refused("not 1..4096 records");
    sample_frame(TDM_FRAME_FORWARD_RESULT, 0, &frame_a);
    frame_a.forward_result.lsn_last = frame_a.forward_result.lsn_first + TDM_PROTO_RECORDS_MAX;
    to_refused("not 1..4096 records");
    sample_frame(TDM_FRAME_FORWARD_RESULT, 0, &frame_a);
    frame_a.forward_result.lsn_first = 0;
    to_refused("not 1..4096 records");
    sample_frame(TDM_FRAME_FORWARD_RESULT, 1, &frame_a);
    frame_a.forward_result.lsn_last = 5;
    to_refused("failure with LSNs");
    sample_frame(TDM_FRAME_FORWARD_RESULT, 1, &frame_a);
    frame_a.forward_result.status = 2;
    to_refused("status: 2, positive");
    /* Converted, but refused by the encoder: the codec's own checks. */
    struct {
        uint16_t type;
        const char *expect;
    } encoder_cases[] = {
        {TDM_FRAME_HELLO, "HELLO frame: durable_lsn"}, {TDM_FRAME_HELLO, "HELLO frame: last_epoch"},
        {TDM_FRAME_READY, "READY frame: durable_lsn"}, {TDM_FRAME_ACK, "ACK frame: durable_lsn"},
        {TDM_FRAME_FORWARD, "FORWARD frame: record"},  {TDM_FRAME_HEARTBEAT, "commit_lsn"},
    };
    for (size_t i = 0; i < sizeof(encoder_cases) / sizeof(encoder_cases[0]); i++) {
        sample_frame(encoder_cases[i].type, 0, &frame_a);
        switch (i) {
        case 0:
            frame_a.hello.durable_lsn = frame_a.hello.last_lsn + 1;
            break;
        case 1:
            frame_a.hello.last_epoch = 0;
            break;
        case 2:
            frame_a.ready.durable_lsn = frame_a.ready.last_lsn + 1;
            break;
        case 3:
            frame_a.ack.durable_lsn = frame_a.ack.received_lsn + 1;
            break;
        case 4:
            frame_a.forward.record_count = 4;
            break;
        default:
            frame_a.heartbeat.commit_lsn = frame_a.heartbeat.last_lsn + 1;
            break;
        }
        struct tdm_diag diag = {{0}};
        assert_int_equal(tdm_frame_to_proto(&frame_a, &cluster, &msg_a, &diag), 0);
        size_t written = 0;
        assert_int_equal(tdm_proto_encode(&msg_a, buffer_a, sizeof(buffer_a), &written, &diag),
                         TANDEM_EINVALID);
        assert_non_null(strstr(diag.message, encoder_cases[i].expect));
    }
}

/* The cluster table: names valid, ids strictly increasing, self among them. */
static void test_frame_proto__cluster_valid(void **state)
{
    (void)state;
    struct tdm_frame_cluster c = cluster;
    assert_true(tdm_frame_cluster_valid(&c));
    c.node_count = 1;
    c.self_index = 0;
    assert_true(tdm_frame_cluster_valid(&c));
    c = cluster;
    c.self_index = 3;
    assert_false(tdm_frame_cluster_valid(&c));
    c = cluster;
    c.node_count = 0;
    assert_false(tdm_frame_cluster_valid(&c));
    c = cluster;
    c.node_count = TDM_REPLICA_NODES_MAX + 1;
    assert_false(tdm_frame_cluster_valid(&c));
    c = cluster;
    snprintf(c.node_ids[2], sizeof(c.node_ids[2]), "n1");
    assert_false(tdm_frame_cluster_valid(&c)); /* Duplicate. */
    c = cluster;
    snprintf(c.node_ids[0], sizeof(c.node_ids[0]), "z");
    assert_false(tdm_frame_cluster_valid(&c)); /* Not sorted. */
    c = cluster;
    snprintf(c.node_ids[1], sizeof(c.node_ids[1]), "n 1");
    assert_false(tdm_frame_cluster_valid(&c));
    c = cluster;
    c.name[0] = '\0';
    assert_false(tdm_frame_cluster_valid(&c));
}

/* Seeded mutations of valid frames' bytes never crash: each is refused by the
 * decoder or the conversion, or converts to a frame that survives another trip
 * unchanged. */
static void test_frame_proto__mutations(void **state)
{
    (void)state;
    struct tdm_prng prng;
    tdm_prng_init(&prng, 20261128);
    size_t decoded = 0;
    size_t converted = 0;
    for (int i = 0; i < 20000; i++) {
        uint16_t type = every_type[tdm_prng_below(&prng, TYPE_COUNT)];
        sample_frame(type, (uint32_t)tdm_prng_below(&prng, VARIANT_COUNT), &frame_a);
        size_t size = frame_encode(&frame_a, buffer_a, sizeof(buffer_a));
        uint64_t flips = 1 + tdm_prng_below(&prng, 3);
        for (uint64_t f = 0; f < flips; f++) {
            size_t at = TDM_PROTO_FRAME_HEADER_SIZE +
                        (size_t)tdm_prng_below(&prng, size - TDM_PROTO_FRAME_HEADER_SIZE);
            buffer_a[at] ^= (uint8_t)(1u << tdm_prng_below(&prng, 8));
        }
        struct tdm_diag diag = {{0}};
        if (decode_buffer(buffer_a, size, &msg_b, &diag) != 0) {
            continue;
        }
        decoded++;
        int rv = tdm_frame_from_proto(&msg_b, &cluster, &frame_a, &diag);
        if (rv != 0) {
            assert_int_equal(rv, TANDEM_ECORRUPT);
            assert_true(diag.message[0] != '\0');
            continue;
        }
        converted++;
        size = frame_encode(&frame_a, buffer_b, sizeof(buffer_b));
        assert_int_equal(decode_buffer(buffer_b, size, &msg_b, &diag), 0);
        assert_int_equal(tdm_frame_from_proto(&msg_b, &cluster, &frame_b, &diag), 0);
        frame_assert_equal(&frame_a, &frame_b);
    }
    assert_true(decoded > converted);
    assert_true(converted > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_proto__round_trip_every_type),
        cmocka_unit_test(test_frame_proto__names_on_the_wire),
        cmocka_unit_test(test_frame_proto__zero_copy),
        cmocka_unit_test(test_frame_proto__from_refuses),
        cmocka_unit_test(test_frame_proto__to_refuses),
        cmocka_unit_test(test_frame_proto__cluster_valid),
        cmocka_unit_test(test_frame_proto__mutations),
    };
    return cmocka_run_group_tests_name("frame_proto", tests, group_setup, NULL);
}
