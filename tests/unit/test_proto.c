/* tests/unit/test_proto.c: the frame codec (net/proto.c, docs/PROTOCOL.md §3):
 * round trips of every frame type, refusal of every truncation and of trailing
 * bytes, oversize and malformed headers, byte-by-byte and random reassembly,
 * and seeded garbage that must be refused or decoded canonically, never crash. */
#include "tdm_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/bytes.h"
#include "engine/base/prng.h"
#include "net/proto.h"

static const uint16_t every_type[] = {
    TDM_PROTO_HELLO,
    TDM_PROTO_START,
    TDM_PROTO_READY,
    TDM_PROTO_APPEND,
    TDM_PROTO_ACK,
    TDM_PROTO_HEARTBEAT,
    TDM_PROTO_FORWARD,
    TDM_PROTO_FORWARD_RESULT,
    TDM_PROTO_HANDOVER,
    TDM_PROTO_HANDOVER_DONE,
    TDM_PROTO_FENCE,
    TDM_PROTO_FENCED,
    TDM_PROTO_CHECK,
    TDM_PROTO_CHECK_RESULT,
    TDM_PROTO_APPEND_REQUEST,
    TDM_PROTO_APPEND_RESULT,
    TDM_PROTO_QUERY,
    TDM_PROTO_QUERY_RESULT,
    TDM_PROTO_STATUS,
    TDM_PROTO_STATUS_RESULT,
    TDM_PROTO_SWITCHOVER,
    TDM_PROTO_SWITCHOVER_RESULT,
    TDM_PROTO_FAILOVER,
    TDM_PROTO_FAILOVER_RESULT,
    TDM_PROTO_FETCH,
    TDM_PROTO_FETCHED,
    TDM_PROTO_HISTORY,
    TDM_PROTO_HISTORY_RESULT,
    TDM_PROTO_QUARANTINE,
    TDM_PROTO_QUARANTINE_RESULT,
    TDM_PROTO_VERIFY,
    TDM_PROTO_VERIFY_RESULT,
};
#define TYPE_COUNT (sizeof(every_type) / sizeof(every_type[0]))

/* Bytes the sample messages point at (batches, records, text). */
static uint8_t batch_bytes[3][100];
static const uint8_t sample_batch_a[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* FETCHED's (opaque here). */
static const uint8_t sample_batch_b[] = {0xb0, 0xb1, 0xb2};
static uint8_t record_bytes[64];
static size_t record_bytes_size;
static const char jsonl[] = "{\"type\":\"message\",\"lsn\":1}\n{\"type\":\"customer\",\"lsn\":2}\n";

/* Messages are large (histories); keep them off the stack. */
static struct tdm_proto_msg msg_a;
static struct tdm_proto_msg msg_b;
static uint8_t frame_a[1 << 16];
static uint8_t frame_b[1 << 16];

static void sample_history(struct tdm_proto_history *history, uint32_t count)
{
    history->count = count;
    for (uint32_t i = 0; i < count; i++) {
        history->entries[i].epoch = 1 + 2 * i;
        snprintf(history->entries[i].primary, sizeof(history->entries[i].primary), "node-%u",
                 i % 3);
        history->entries[i].lsn_first = 1 + 100 * i;
        history->entries[i].cause = (uint8_t)(i % (TDM_PROTO_CAUSE_MAX + 1));
        history->entries[i].time_ms = 1700000000000 + i;
        history->entries[i].pause_ms = i;
        history->entries[i].risk_lsn_first = i == 2 ? 150 : 0;
        history->entries[i].risk_lsn_last = i == 2 ? 160 : 0;
    }
}

static void sample_records(struct tdm_proto_records *records)
{
    struct tdm_writer w;
    tdm_writer_init(&w, record_bytes, sizeof(record_bytes));
    for (uint32_t i = 0; i < 3; i++) {
        tdm_put_u32(&w, 5 + i);
        for (uint32_t j = 0; j < 5 + i; j++) {
            tdm_put_u8(&w, (uint8_t)(i * 16 + j));
        }
    }
    assert_false(w.overflow);
    record_bytes_size = w.offset;
    records->request_id = 0x1122334455667788ULL;
    records->record_count = 3;
    records->entries.data = record_bytes;
    records->entries.size = record_bytes_size;
}

static void sample_hello(struct tdm_proto_hello *hello)
{
    hello->version = TDM_PROTO_VERSION;
    hello->role = TDM_PROTO_ROLE_BACKUP;
    snprintf(hello->cluster, sizeof(hello->cluster), "eu-mail.1");
    snprintf(hello->node, sizeof(hello->node), "node_2");
    hello->hello_id = 0x0102030405060708ULL;
    hello->last_lsn = 1000;
    hello->durable_lsn = 990;
    hello->last_epoch = 5;
    memset(hello->chain_hash, 0xa5, sizeof(hello->chain_hash));
    sample_history(&hello->history, 4);
}

static void sample_append(struct tdm_proto_append *append)
{
    append->commit_lsn = 77;
    append->batch_count = 3;
    for (uint32_t i = 0; i < 3; i++) {
        memset(batch_bytes[i], (int)(0x30 + i), sizeof(batch_bytes[i]));
        append->batches[i].data = batch_bytes[i];
        append->batches[i].size = 10 + 40 * i;
    }
}

static void sample_heartbeat(struct tdm_proto_heartbeat *heartbeat)
{
    heartbeat->last_lsn = 500;
    heartbeat->commit_lsn = 480;
    heartbeat->send_ms = 123456789;
    heartbeat->lag_count = 3;
    for (uint32_t i = 0; i < 3; i++) {
        struct tdm_proto_lag *lag = &heartbeat->lags[i];
        snprintf(lag->node, sizeof(lag->node), "n%u", i);
        lag->durable_lsn = 400 + i;
        lag->records = 100 - i;
        lag->size = 4096 * i;
        lag->ms = 3 * i;
        lag->link_up = i != 1;
    }
}

static void sample_query(struct tdm_proto_query *query)
{
    static const char recipient[] = "alice@example.com";
    query->request_id = 9;
    query->kind = TDM_PROTO_QUERY_CUSTOMER_MESSAGES;
    query->flags = TDM_PROTO_QUERY_HAS_RECIPIENT | TDM_PROTO_QUERY_HAS_SENDER;
    query->customer_id = 42;
    query->since_ns = -5;
    query->until_ns = INT64_MAX;
    query->recipient.data = (const uint8_t *)recipient;
    query->recipient.size = strlen(recipient);
    query->sender.data = (const uint8_t *)recipient; /* Any non-NULL pointer: size 0 = bounces. */
    query->sender.size = 0;
}

static void sample_result(struct tdm_proto_result *result, int32_t status)
{
    result->request_id = 17;
    result->status = status;
    result->lsn_first = status == 0 ? 1001 : 0;
    result->record_count = status == 0 ? 3 : 0;
    snprintf(result->message, sizeof(result->message), "%s",
             status == 0 ? "" : "durable on 1 of 2 required copies");
}

static void sample_text(struct tdm_proto_text_result *result, uint8_t flags)
{
    result->request_id = 23;
    result->status = 0;
    result->flags = flags;
    result->text.data = (const uint8_t *)jsonl;
    result->text.size = strlen(jsonl);
}

/* sample_msg() for HANDOVER, HANDOVER_DONE, FENCE, FENCED. */
static void sample_msg_switch(uint16_t type, struct tdm_proto_msg *msg)
{
    switch ((enum tdm_proto_type)type) {
    case TDM_PROTO_HANDOVER:
        msg->handover.new_epoch = 9;
        sample_history(&msg->handover.history, 5); /* Epochs 1, 3, 5, 7, 9. */
        msg->handover.last_lsn = 401;
        memset(msg->handover.chain_hash, 0x22, sizeof(msg->handover.chain_hash));
        return;
    case TDM_PROTO_HANDOVER_DONE:
        msg->handover_done.new_epoch = 9;
        msg->handover_done.refusal = TDM_PROTO_REFUSAL_MAX;
        msg->handover_done.last_lsn = 401;
        memset(msg->handover_done.chain_hash, 0x24, sizeof(msg->handover_done.chain_hash));
        return;
    case TDM_PROTO_FENCE:
        msg->fence.fence_id = 3;
        msg->fence.flags = TDM_PROTO_FENCE_FORCE;
        msg->fence.new_epoch = 5;
        msg->fence.expect_epoch = 3;
        msg->fence.expect_last_epoch = 3;
        msg->fence.expect_durable_lsn = 87;
        sample_history(&msg->fence.history, 3); /* Epochs 1, 3, 5. */
        return;
    case TDM_PROTO_FENCED:
        msg->fenced.fence_id = 3;
        msg->fenced.refusal = 0;
        msg->fenced.role = TDM_PROTO_ROLE_BACKUP;
        msg->fenced.flags = TDM_PROTO_FENCED_PRIMARY_SEEN;
        msg->fenced.epoch = 5;
        msg->fenced.last_epoch = 3;
        msg->fenced.last_lsn = 90;
        msg->fenced.durable_lsn = 88;
        msg->fenced.commit_lsn = 80;
        memset(msg->fenced.chain_hash, 0x33, sizeof(msg->fenced.chain_hash));
        return;
    default:
        fail_msg("type %u: not a switchover or failover frame", type);
    }
}

/* Fill msg with a valid, non-trivial message of type. */
static void sample_msg(uint16_t type, struct tdm_proto_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    msg->type = type;
    msg->epoch = 7;
    switch ((enum tdm_proto_type)type) {
    case TDM_PROTO_HELLO:
        sample_hello(&msg->hello);
        return;
    case TDM_PROTO_START:
        msg->start.hello_id = 12;
        msg->start.fork_lsn = 300;
        sample_history(&msg->start.history, 2);
        return;
    case TDM_PROTO_READY:
        msg->ready.hello_id = 12;
        msg->ready.last_lsn = 300;
        msg->ready.durable_lsn = 290;
        memset(msg->ready.chain_hash, 0x11, sizeof(msg->ready.chain_hash));
        return;
    case TDM_PROTO_APPEND:
        sample_append(&msg->append);
        return;
    case TDM_PROTO_ACK:
        msg->ack = (struct tdm_proto_ack){.durable_lsn = 5, .received_lsn = 6, .echo_ms = 7};
        return;
    case TDM_PROTO_HEARTBEAT:
        sample_heartbeat(&msg->heartbeat);
        return;
    case TDM_PROTO_FORWARD:
    case TDM_PROTO_APPEND_REQUEST:
        sample_records(&msg->forward);
        msg->epoch = type == TDM_PROTO_APPEND_REQUEST ? 0 : 7;
        return;
    case TDM_PROTO_FORWARD_RESULT:
    case TDM_PROTO_APPEND_RESULT:
        sample_result(&msg->forward_result, type == TDM_PROTO_FORWARD_RESULT ? 0 : -20004);
        return;
    case TDM_PROTO_HANDOVER:
    case TDM_PROTO_HANDOVER_DONE:
    case TDM_PROTO_FENCE:
    case TDM_PROTO_FENCED:
        sample_msg_switch(type, msg);
        return;
    case TDM_PROTO_CHECK:
        msg->check.check_id = 17;
        msg->check.lsn = 4096;
        memset(msg->check.chain_hash, 0x44, sizeof(msg->check.chain_hash));
        msg->check.divergent_first = 301;
        msg->check.divergent_last = 305;
        return;
    case TDM_PROTO_CHECK_RESULT:
        msg->check_result.check_id = 17;
        msg->check_result.lsn = 4096;
        msg->check_result.result = TDM_PROTO_CHECK_DIFFERENT;
        msg->check_result.batch_first = 4090;
        msg->check_result.batch_last = 4100;
        memset(msg->check_result.chain_hash, 0x55, sizeof(msg->check_result.chain_hash));
        return;
    case TDM_PROTO_FETCH:
        msg->fetch.fetch_id = 23;
        msg->fetch.lsn_first = 1001;
        msg->fetch.lsn_last = 1064;
        return;
    case TDM_PROTO_FETCHED:
        msg->fetched.fetch_id = 23;
        msg->fetched.status = 0;
        msg->fetched.lsn_first = 1001;
        msg->fetched.lsn_last = 1032;
        msg->fetched.batch_count = 2;
        msg->fetched.batches[0] = (struct tdm_proto_slice){sample_batch_a, sizeof(sample_batch_a)};
        msg->fetched.batches[1] = (struct tdm_proto_slice){sample_batch_b, sizeof(sample_batch_b)};
        return;
    case TDM_PROTO_QUERY:
        sample_query(&msg->query);
        return;
    case TDM_PROTO_QUERY_RESULT:
        sample_text(&msg->query_result, TDM_PROTO_RESULT_MORE);
        return;
    case TDM_PROTO_STATUS:
        msg->status.request_id = 31;
        return;
    case TDM_PROTO_STATUS_RESULT:
        sample_text(&msg->status_result, 0);
        return;
    case TDM_PROTO_SWITCHOVER:
        msg->epoch = 0;
        msg->command.request_id = 41;
        snprintf(msg->command.target, sizeof(msg->command.target), "node-c");
        return;
    case TDM_PROTO_FAILOVER:
        msg->epoch = 0;
        msg->command.request_id = 42;
        msg->command.flags = TDM_PROTO_FAILOVER_FORCE | TDM_PROTO_FAILOVER_DRY_RUN;
        snprintf(msg->command.target, sizeof(msg->command.target), "node-b");
        return;
    case TDM_PROTO_SWITCHOVER_RESULT:
    case TDM_PROTO_FAILOVER_RESULT:
        sample_text(&msg->command_result, 0);
        msg->command_result.status = type == TDM_PROTO_FAILOVER_RESULT ? -20001 : 0;
        return;
    case TDM_PROTO_HISTORY:
    case TDM_PROTO_QUARANTINE:
    case TDM_PROTO_VERIFY:
        msg->epoch = 0;
        msg->inspect.request_id = 43;
        msg->inspect.flags = type == TDM_PROTO_QUARANTINE ? TDM_PROTO_QUARANTINE_EXPORT
                             : type == TDM_PROTO_VERIFY   ? TDM_PROTO_VERIFY_DEEP
                                                          : 0;
        return;
    case TDM_PROTO_HISTORY_RESULT:
    case TDM_PROTO_QUARANTINE_RESULT:
    case TDM_PROTO_VERIFY_RESULT:
        sample_text(&msg->inspect_result, TDM_PROTO_RESULT_MORE);
        return;
    }
    fail_msg("no sample for type %u", type);
}

/* Encode msg_a as it is. */
static size_t encode_sample_msg(uint8_t *buffer, size_t size)
{
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    assert_int_equal(tdm_proto_encode(&msg_a, buffer, size, &written, &diag), 0);
    assert_int_equal(written, tdm_proto_encoded_size(&msg_a));
    return written;
}

static size_t encode_sample(uint16_t type, uint8_t *buffer, size_t size)
{
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    sample_msg(type, &msg_a);
    assert_int_equal(tdm_proto_encode(&msg_a, buffer, size, &written, &diag), 0);
    assert_int_equal(written, tdm_proto_encoded_size(&msg_a));
    return written;
}

/* Decode buffer[0..size) as one frame; returns the code. */
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

/* Every frame type decodes to what was encoded: re-encoding the decoded
 * message gives the same bytes, and APPEND's batches point into the frame. */
/* msg_a is refused by the encoder, the diagnostic naming want. */
static void encode_refused(const char *want)
{
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, want));
}

/* A sample frame of type with byte offset of its payload set to value is
 * refused, the diagnostic naming want. */
static void refused_with_byte(uint16_t type, size_t offset, uint8_t value, const char *want)
{
    struct tdm_diag diag = {{0}};
    size_t size = encode_sample(type, frame_a, sizeof(frame_a));
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + offset] = value;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, want));
}

static void test_proto_decode__round_trip_every_type(void **state)
{
    (void)state;
    for (size_t t = 0; t < TYPE_COUNT; t++) {
        size_t size = encode_sample(every_type[t], frame_a, sizeof(frame_a));
        struct tdm_diag diag = {{0}};
        assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
        assert_int_equal(msg_b.type, every_type[t]);
        assert_int_equal(msg_b.epoch, msg_a.epoch);
        size_t written = 0;
        assert_int_equal(tdm_proto_encode(&msg_b, frame_b, sizeof(frame_b), &written, &diag), 0);
        assert_int_equal(written, size);
        assert_memory_equal(frame_a, frame_b, size);
    }
    encode_sample(TDM_PROTO_APPEND, frame_a, sizeof(frame_a));
    struct tdm_diag diag;
    assert_int_equal(decode_buffer(frame_a, sizeof(frame_a), &msg_b, &diag), TANDEM_ECORRUPT);
    size_t size = tdm_proto_encoded_size(&msg_a);
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    for (uint32_t i = 0; i < msg_b.append.batch_count; i++) {
        const uint8_t *data = msg_b.append.batches[i].data;
        assert_true(data > frame_a);
        assert_true(data + msg_b.append.batches[i].size <= frame_a + size);
        assert_memory_equal(data, batch_bytes[i], msg_b.append.batches[i].size);
    }
}

/* Field values survive the trip (spot checks on the richest frames). */
static void test_proto_decode__fields(void **state)
{
    (void)state;
    struct tdm_diag diag;
    size_t size = encode_sample(TDM_PROTO_HELLO, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_string_equal(msg_b.hello.cluster, "eu-mail.1");
    assert_string_equal(msg_b.hello.node, "node_2");
    assert_int_equal(msg_b.hello.durable_lsn, 990);
    assert_int_equal(msg_b.hello.hello_id, 0x0102030405060708ULL);
    assert_int_equal(msg_b.hello.last_epoch, 5);
    assert_int_equal(msg_b.hello.history.count, 4);
    assert_string_equal(msg_b.hello.history.entries[3].primary, "node-0");
    assert_int_equal(msg_b.hello.history.entries[3].lsn_first, 301);
    assert_int_equal(msg_b.hello.history.entries[3].cause, 3);
    assert_int_equal(msg_b.hello.history.entries[3].time_ms, 1700000000003);
    assert_int_equal(msg_b.hello.history.entries[2].risk_lsn_last, 160);
    size = encode_sample(TDM_PROTO_START, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.start.hello_id, 12);
    size = encode_sample(TDM_PROTO_READY, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.ready.hello_id, 12);
    assert_int_equal(msg_b.ready.durable_lsn, 290);
    size = encode_sample(TDM_PROTO_ACK, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.ack.durable_lsn, 5);
    assert_int_equal(msg_b.ack.received_lsn, 6);
    assert_int_equal(msg_b.ack.echo_ms, 7);
    size = encode_sample(TDM_PROTO_HEARTBEAT, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.heartbeat.lag_count, 3);
    assert_true(msg_b.heartbeat.lags[0].link_up);
    assert_false(msg_b.heartbeat.lags[1].link_up);
    assert_int_equal(msg_b.heartbeat.lags[2].size, 8192);
    size = encode_sample(TDM_PROTO_APPEND_REQUEST, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    size_t offset = 0;
    struct tdm_proto_slice record;
    uint32_t count = 0;
    while (tdm_proto_records_next(&msg_b.append_request, &offset, &record)) {
        assert_int_equal(record.size, 5 + count);
        assert_int_equal(record.data[0], count * 16);
        count++;
    }
    assert_int_equal(count, 3);
    size = encode_sample(TDM_PROTO_APPEND_RESULT, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.append_result.status, -20004);
    assert_string_equal(msg_b.append_result.message, "durable on 1 of 2 required copies");
    size = encode_sample(TDM_PROTO_QUERY, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.query.since_ns, -5);
    assert_int_equal(msg_b.query.until_ns, INT64_MAX);
    assert_int_equal(msg_b.query.sender.size, 0);
    assert_memory_equal(msg_b.query.recipient.data, "alice@example.com", 17);
}

/* Write a frame header with the given size field, type and reserved value. */
static void header_write(uint8_t *buffer, uint32_t size, uint16_t type, uint16_t reserved)
{
    struct tdm_writer w;
    tdm_writer_init(&w, buffer, TDM_PROTO_FRAME_HEADER_SIZE);
    tdm_put_u32(&w, size);
    tdm_put_u16(&w, type);
    tdm_put_u16(&w, reserved);
    tdm_put_u64(&w, 7);
    assert_false(w.overflow);
}

/* Cutting a payload at any length, or adding a byte, is refused with
 * TANDEM_ECORRUPT and a diag naming the frame type. */
static void test_proto_decode__every_truncation(void **state)
{
    (void)state;
    for (size_t t = 0; t < TYPE_COUNT; t++) {
        size_t size = encode_sample(every_type[t], frame_a, sizeof(frame_a));
        size_t payload = size - TDM_PROTO_FRAME_HEADER_SIZE;
        for (size_t cut = 0; cut < payload; cut++) {
            memcpy(frame_b, frame_a, TDM_PROTO_FRAME_HEADER_SIZE + cut);
            header_write(frame_b, (uint32_t)(TDM_PROTO_FRAME_SIZE_MIN + cut), every_type[t], 0);
            struct tdm_diag diag = {{0}};
            int rv = decode_buffer(frame_b, TDM_PROTO_FRAME_HEADER_SIZE + cut, &msg_b, &diag);
            if (rv != TANDEM_ECORRUPT) {
                fail_msg("%s cut to %zu of %zu payload bytes: rv %d",
                         tdm_proto_type_name(every_type[t]), cut, payload, rv);
            }
            assert_non_null(strstr(diag.message, tdm_proto_type_name(every_type[t])));
        }
        memcpy(frame_b, frame_a, size);
        frame_b[size] = 0;
        header_write(frame_b, (uint32_t)(size + 1 - 4), every_type[t], 0);
        struct tdm_diag diag = {{0}};
        assert_int_equal(decode_buffer(frame_b, size + 1, &msg_b, &diag), TANDEM_ECORRUPT);
        assert_non_null(strstr(diag.message, "after the")); /* Payload or last record. */
    }
}

/* Feed stream[0..size) in pieces of at most step bytes (0: random pieces from
 * prng) and check that the frames come out as the encoded ones. */
static void reassemble(const uint8_t *stream, size_t size, size_t step, struct tdm_prng *prng,
                       const size_t *frame_sizes, size_t frame_count)
{
    static uint8_t buffer[1 << 16];
    struct tdm_proto_reader reader;
    tdm_proto_reader_init(&reader, buffer, sizeof(buffer));
    size_t offset = 0;
    size_t frames = 0;
    size_t frame_offset = 0;
    struct tdm_diag diag;
    while (offset < size) {
        size_t n = step != 0 ? step : 1 + (size_t)tdm_prng_below(prng, 40);
        n = n < size - offset ? n : size - offset;
        size_t consumed = 0;
        assert_int_equal(tdm_proto_reader_feed(&reader, stream + offset, n, &consumed, &diag), 0);
        offset += consumed;
        struct tdm_proto_frame frame;
        while (tdm_proto_reader_next(&reader, &frame, &diag) == 0) {
            assert_true(frames < frame_count);
            size_t whole = TDM_PROTO_FRAME_HEADER_SIZE + frame.payload_size;
            assert_int_equal(whole, frame_sizes[frames]);
            assert_memory_equal(frame.payload, stream + frame_offset + 16, frame.payload_size);
            assert_int_equal(tdm_proto_decode(&frame, &msg_b, &diag), 0);
            frame_offset += whole;
            frames++;
        }
    }
    assert_int_equal(frames, frame_count);
    assert_int_equal(tdm_proto_reader_eof(&reader, &diag), 0);
}

/* A stream of every frame type, delivered byte by byte and in random pieces,
 * reassembles into the same frames. */
static void test_proto_reader__split_delivery(void **state)
{
    (void)state;
    static uint8_t stream[1 << 16];
    size_t sizes[TYPE_COUNT];
    size_t size = 0;
    for (size_t t = 0; t < TYPE_COUNT; t++) {
        sizes[t] = encode_sample(every_type[t], stream + size, sizeof(stream) - size);
        size += sizes[t];
    }
    reassemble(stream, size, 1, NULL, sizes, TYPE_COUNT);
    reassemble(stream, size, size, NULL, sizes, TYPE_COUNT);
    struct tdm_prng prng;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        tdm_prng_init(&prng, seed);
        reassemble(stream, size, 0, &prng, sizes, TYPE_COUNT);
    }
}

/* A size field over TDM_PROTO_FRAME_SIZE_MAX (or over the reader's buffer) is
 * refused after its 4 bytes, before any body arrives, and the error sticks. */
static void test_proto_reader__oversize(void **state)
{
    (void)state;
    static uint8_t buffer[256];
    uint8_t header[TDM_PROTO_FRAME_HEADER_SIZE];
    header_write(header, TDM_PROTO_FRAME_SIZE_MAX + 1, TDM_PROTO_APPEND, 0);
    struct tdm_proto_reader reader;
    tdm_proto_reader_init(&reader, buffer, sizeof(buffer));
    struct tdm_diag diag = {{0}};
    size_t consumed = 0;
    assert_int_equal(tdm_proto_reader_feed(&reader, header, 4, &consumed, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "exceeds the limit"));
    assert_int_equal(tdm_proto_reader_feed(&reader, header, 4, &consumed, &diag), TANDEM_ECORRUPT);
    assert_int_equal(consumed, 0);
    struct tdm_proto_frame frame;
    assert_int_equal(tdm_proto_reader_next(&reader, &frame, &diag), TANDEM_ECORRUPT);
    /* Within the protocol limit but over this reader's buffer. */
    header_write(header, 1000, TDM_PROTO_APPEND, 0);
    tdm_proto_reader_init(&reader, buffer, sizeof(buffer));
    assert_int_equal(tdm_proto_reader_feed(&reader, header, 16, &consumed, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "this link's limit"));
    /* Encoding refuses what decoding would refuse. */
    sample_msg(TDM_PROTO_APPEND, &msg_a);
    msg_a.append.batch_count = 2;
    msg_a.append.batches[0].size = 9u << 20;
    msg_a.append.batches[1].size = 9u << 20;
    encode_refused("exceed the limit");
}

/* Headers that are too small, of an unknown type or with reserved bits set are
 * refused; a stream that ends inside a frame is reported at eof. */
static void test_proto_reader__bad_headers(void **state)
{
    (void)state;
    static uint8_t buffer[256];
    struct {
        uint32_t size;
        uint16_t type;
        uint16_t reserved;
        const char *diag;
    } cases[] = {
        {11, TDM_PROTO_ACK, 0, "below the header"},
        {36, 0, 0, "unknown type 0"},
        {36, 30, 0, "unknown type 30"},
        {36, 31, 0, "unknown type 31"},
        {36, 63, 0, "unknown type 63"},
        {36, TDM_PROTO_ACK, 1, "reserved"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t header[TDM_PROTO_FRAME_HEADER_SIZE];
        header_write(header, cases[i].size, cases[i].type, cases[i].reserved);
        struct tdm_proto_reader reader;
        tdm_proto_reader_init(&reader, buffer, sizeof(buffer));
        struct tdm_diag diag = {{0}};
        size_t consumed = 0;
        assert_int_equal(tdm_proto_reader_feed(&reader, header, sizeof(header), &consumed, &diag),
                         TANDEM_ECORRUPT);
        assert_non_null(strstr(diag.message, cases[i].diag));
    }
    size_t size = encode_sample(TDM_PROTO_ACK, frame_a, sizeof(frame_a));
    struct tdm_proto_reader reader;
    tdm_proto_reader_init(&reader, buffer, sizeof(buffer));
    struct tdm_diag diag = {{0}};
    size_t consumed = 0;
    assert_int_equal(tdm_proto_reader_feed(&reader, frame_a, size - 1, &consumed, &diag), 0);
    struct tdm_proto_frame frame;
    assert_int_equal(tdm_proto_reader_next(&reader, &frame, &diag), -EAGAIN);
    assert_int_equal(tdm_proto_reader_eof(&reader, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "ended inside a frame"));
}

/* Switchover and failover frames (PROTOCOL.md §3.3, §8): a probe that carries
 * an epoch, a FENCED whose durable LSN passes its last, a refusal or cause out
 * of range, LSNs at risk that are not a range: all refused. */
static void proto_switch_semantic_checks(void)
{
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    sample_msg(TDM_PROTO_FENCE, &msg_a);
    msg_a.fence.flags = TDM_PROTO_FENCE_PROBE;
    encode_refused("probe");
    memset(&msg_a.fence.history, 0, sizeof(msg_a.fence.history));
    msg_a.fence.new_epoch = 0;
    msg_a.fence.expect_epoch = msg_a.fence.expect_last_epoch = msg_a.fence.expect_durable_lsn = 0;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag), 0);
    msg_a.fence.flags = 0x4;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    sample_msg(TDM_PROTO_FENCED, &msg_a);
    msg_a.fenced.durable_lsn = msg_a.fenced.last_lsn + 1;
    encode_refused("FENCED frame: durable_lsn");
    sample_msg(TDM_PROTO_HANDOVER_DONE, &msg_a);
    msg_a.handover_done.refusal = TDM_PROTO_REFUSAL_MAX + 1;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    sample_msg(TDM_PROTO_START, &msg_a);
    msg_a.start.history.entries[0].cause = TDM_PROTO_CAUSE_MAX + 1;
    encode_refused("cause");
    sample_msg(TDM_PROTO_START, &msg_a);
    msg_a.start.history.entries[0].risk_lsn_first = 5;
    encode_refused("at risk");
}

/* HISTORY and QUARANTINE (PROTOCOL.md §7.6): fields survive, results may be
 * flagged MORE, and unknown flag bits are refused. */
static void test_proto_decode__inspect(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    size_t size = encode_sample(TDM_PROTO_QUARANTINE, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.inspect.request_id, 43);
    assert_int_equal(msg_b.inspect.flags, TDM_PROTO_QUARANTINE_EXPORT);
    size = encode_sample(TDM_PROTO_QUARANTINE_RESULT, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.inspect_result.flags, TDM_PROTO_RESULT_MORE);
    /* Flags: byte 8 of the payload. */
    refused_with_byte(TDM_PROTO_QUARANTINE, 8, 0x2, "QUARANTINE frame: flags: unknown bits");
    refused_with_byte(TDM_PROTO_HISTORY, 8, TDM_PROTO_QUARANTINE_EXPORT,
                      "HISTORY frame: flags: unknown bits");
    /* A result flag other than MORE. */
    refused_with_byte(TDM_PROTO_HISTORY_RESULT, 12, 0x2,
                      "HISTORY_RESULT frame: flags: unknown bits");
}

/* VERIFY (PROTOCOL.md §7.7): the request and DEEP survive, progress results
 * are flagged MORE, and unknown flag bits are refused. */
static void test_proto_decode__verify(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    size_t size = encode_sample(TDM_PROTO_VERIFY, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.type, TDM_PROTO_VERIFY);
    assert_int_equal(msg_b.inspect.request_id, 43);
    assert_int_equal(msg_b.inspect.flags, TDM_PROTO_VERIFY_DEEP);
    assert_string_equal(tdm_proto_type_name(TDM_PROTO_VERIFY), "VERIFY");
    assert_true(tdm_proto_type_is_client(TDM_PROTO_VERIFY));
    assert_true(tdm_proto_type_is_client(TDM_PROTO_VERIFY_RESULT));
    size = encode_sample(TDM_PROTO_VERIFY_RESULT, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.inspect_result.request_id, msg_a.inspect_result.request_id);
    assert_int_equal(msg_b.inspect_result.flags, TDM_PROTO_RESULT_MORE);
    assert_int_equal(msg_b.inspect_result.text.size, msg_a.inspect_result.text.size);
    /* Flags: byte 8 of the payload; only DEEP is known. */
    refused_with_byte(TDM_PROTO_VERIFY, 8, 0x2, "VERIFY frame: flags: unknown bits");
    /* A result flag other than MORE. */
    refused_with_byte(TDM_PROTO_VERIFY_RESULT, 12, 0x2, "VERIFY_RESULT frame: flags: unknown bits");
}

/* Semantic checks: wrong version, durable past last, a history that goes
 * backwards, a bad name, a control character in a message, a record count
 * that does not match the entries: all refused, naming the field. */
/* SWITCHOVER and FAILOVER (PROTOCOL.md §7.5): fields survive, an empty
 * switchover target means "next", and malformed commands are refused. */
static void test_proto_decode__commands(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    size_t size = encode_sample(TDM_PROTO_FAILOVER, frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.command.request_id, 42);
    assert_int_equal(msg_b.command.flags, TDM_PROTO_FAILOVER_FORCE | TDM_PROTO_FAILOVER_DRY_RUN);
    assert_string_equal(msg_b.command.target, "node-b");
    /* A switchover to the next of the rotation: no target. */
    sample_msg(TDM_PROTO_SWITCHOVER, &msg_a);
    msg_a.command.target[0] = '\0';
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag), 0);
    assert_int_equal(decode_buffer(frame_a, written, &msg_b, &diag), 0);
    assert_string_equal(msg_b.command.target, "");
    /* A failover must name its target. */
    sample_msg(TDM_PROTO_FAILOVER, &msg_a);
    msg_a.command.target[0] = '\0';
    encode_refused("FAILOVER frame: target: bad id");
    /* Unknown flag bits, on the wire: byte 8 of the payload. */
    refused_with_byte(TDM_PROTO_FAILOVER, 8, 0x4, "FAILOVER frame: flags: unknown bits");
    refused_with_byte(TDM_PROTO_SWITCHOVER, 8, TDM_PROTO_FAILOVER_FORCE,
                      "SWITCHOVER frame: flags: unknown bits");
    /* A target that is not an id: a space, then a NUL inside. */
    size = encode_sample(TDM_PROTO_SWITCHOVER, frame_a, sizeof(frame_a));
    frame_a[size - 1] = ' ';
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "SWITCHOVER frame: target: bad id"));
    frame_a[size - 1] = '\0';
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "SWITCHOVER frame: target: bad id"));
    /* A target size over 63. */
    size = encode_sample(TDM_PROTO_SWITCHOVER, frame_a, sizeof(frame_a));
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 9] = TDM_PROTO_NAME_SIZE_MAX + 1;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    /* A result with a positive status. */
    size = encode_sample(TDM_PROTO_SWITCHOVER_RESULT, frame_a, sizeof(frame_a));
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 8] = 0;
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 11] = 1;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "SWITCHOVER_RESULT frame: status: positive"));
    /* Results carry no flags. */
    refused_with_byte(TDM_PROTO_FAILOVER_RESULT, 12, TDM_PROTO_RESULT_MORE,
                      "FAILOVER_RESULT frame: flags: unknown bits");
}

static void test_proto_decode__semantic_checks(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    sample_msg(TDM_PROTO_HELLO, &msg_a);
    msg_a.hello.version = TDM_PROTO_VERSION + 1;
    encode_refused("version");
    /* Patch the version in the bytes of a valid HELLO: the decoder refuses. */
    size_t size = encode_sample(TDM_PROTO_HELLO, frame_a, sizeof(frame_a));
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE] = TDM_PROTO_VERSION + 1;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "HELLO frame: version"));
    sample_msg(TDM_PROTO_HELLO, &msg_a);
    msg_a.hello.durable_lsn = msg_a.hello.last_lsn + 1;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    sample_msg(TDM_PROTO_HELLO, &msg_a);
    msg_a.hello.last_epoch = 0;
    encode_refused("last_epoch");
    msg_a.hello.last_lsn = 0;
    msg_a.hello.durable_lsn = 0;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag), 0);
    msg_a.hello.last_epoch = 1;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    sample_msg(TDM_PROTO_READY, &msg_a);
    msg_a.ready.durable_lsn = msg_a.ready.last_lsn + 1;
    encode_refused("READY frame: durable_lsn");
    sample_msg(TDM_PROTO_ACK, &msg_a);
    msg_a.ack.durable_lsn = msg_a.ack.received_lsn + 1;
    encode_refused("ACK frame: durable_lsn");
    /* Patch the last lag row's link_up byte (the frame's last byte) to 2. */
    size = encode_sample(TDM_PROTO_HEARTBEAT, frame_a, sizeof(frame_a));
    assert_int_equal(frame_a[size - 1], 1);
    frame_a[size - 1] = 2;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "HEARTBEAT frame: lag table: link_up"));
    sample_msg(TDM_PROTO_APPEND, &msg_a);
    msg_a.append.batch_count = TDM_PROTO_APPEND_BATCHES_MAX + 1;
    encode_refused("batch count");
    /* Patch APPEND's batch count (after commit_lsn) to 65: refused by count. */
    size = encode_sample(TDM_PROTO_APPEND, frame_a, sizeof(frame_a));
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 8] = TDM_PROTO_APPEND_BATCHES_MAX + 1;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "APPEND frame: batch count: over 64"));
    sample_msg(TDM_PROTO_START, &msg_a);
    msg_a.start.history.entries[1].epoch = msg_a.start.history.entries[0].epoch;
    encode_refused("strictly increasing");
    sample_msg(TDM_PROTO_HELLO, &msg_a);
    snprintf(msg_a.hello.node, sizeof(msg_a.hello.node), "bad name");
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    sample_msg(TDM_PROTO_FORWARD_RESULT, &msg_a);
    snprintf(msg_a.forward_result.message, sizeof(msg_a.forward_result.message), "a\nb");
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    sample_msg(TDM_PROTO_FORWARD, &msg_a);
    msg_a.forward.record_count = 4;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    /* FORWARD's flags: RESTART round-trips; an unknown bit is refused by
     * the encoder, and by the decoder when patched into valid bytes. */
    sample_msg(TDM_PROTO_FORWARD, &msg_a);
    msg_a.forward.flags = TDM_PROTO_FORWARD_RESTART;
    size = encode_sample_msg(frame_a, sizeof(frame_a));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.forward.flags, TDM_PROTO_FORWARD_RESTART);
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 8 + 4] = 0x2;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "flags: unknown bits"));
    msg_a.forward.flags = 0x80;
    encode_refused("flags: unknown bits");
    sample_msg(TDM_PROTO_FENCE, &msg_a);
    msg_a.fence.new_epoch = 6;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    proto_switch_semantic_checks();
    sample_msg(TDM_PROTO_ACK, &msg_a);
    size = tdm_proto_encoded_size(&msg_a);
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, size - 1, &written, &diag), -ENOBUFS);
}

/* Mutate a valid frame of a random type: flip bytes, overwrite a run, or cut
 * it (fixing the size field). */
static size_t garbage_frame(struct tdm_prng *prng, uint8_t *buffer, size_t capacity)
{
    uint16_t type = every_type[tdm_prng_below(prng, TYPE_COUNT)];
    size_t size = encode_sample(type, buffer, capacity);
    uint64_t how = tdm_prng_below(prng, 3);
    if (how == 0) {
        uint64_t flips = 1 + tdm_prng_below(prng, 4);
        for (uint64_t i = 0; i < flips; i++) {
            size_t at = TDM_PROTO_FRAME_HEADER_SIZE +
                        (size_t)tdm_prng_below(prng, size - TDM_PROTO_FRAME_HEADER_SIZE);
            buffer[at] ^= (uint8_t)(1u << tdm_prng_below(prng, 8));
        }
    } else if (how == 1) {
        size_t at = (size_t)tdm_prng_below(prng, size);
        size_t run = 1 + (size_t)tdm_prng_below(prng, 16);
        for (size_t i = at; i < at + run && i < size; i++) {
            buffer[i] = (uint8_t)tdm_prng_next(prng);
        }
    } else {
        size = TDM_PROTO_FRAME_HEADER_SIZE +
               (size_t)tdm_prng_below(prng, size - TDM_PROTO_FRAME_HEADER_SIZE + 1);
        header_write(buffer, (uint32_t)(size - 4), type, 0);
    }
    return size;
}

/* CHECK and CHECK_RESULT (PROTOCOL.md §9): a probe at LSN 0, a half-named
 * divergent batch, a verdict out of range, an EQUAL whose batch does not end
 * at the probe, a DIFFERENT whose batch does not hold it, an ABSENT that
 * names a batch: each refused by the encoder and, patched into valid bytes,
 * by the decoder, naming the field. */
static void test_proto_decode__check_fields(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    size_t size = encode_sample(TDM_PROTO_CHECK, frame_a, sizeof(frame_a));
    assert_int_equal(size, TDM_PROTO_FRAME_HEADER_SIZE + 8 + 8 + 16 + 8 + 8);
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.check.check_id, 17);
    assert_int_equal(msg_b.check.lsn, 4096);
    assert_int_equal(msg_b.check.chain_hash[15], 0x44);
    assert_int_equal(msg_b.check.divergent_first, 301);
    assert_int_equal(msg_b.check.divergent_last, 305);
    sample_msg(TDM_PROTO_CHECK, &msg_a);
    msg_a.check.lsn = 0;
    encode_refused("CHECK frame: lsn");
    sample_msg(TDM_PROTO_CHECK, &msg_a);
    msg_a.check.divergent_first = 0;
    encode_refused("divergent batch");
    msg_a.check.divergent_last = 0;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag), 0);
    /* CHECK_RESULT: result is the byte after check_id and lsn. */
    size = encode_sample(TDM_PROTO_CHECK_RESULT, frame_a, sizeof(frame_a));
    assert_int_equal(size, TDM_PROTO_FRAME_HEADER_SIZE + 8 + 8 + 1 + 8 + 8 + 16);
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 16] = 5;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "CHECK_RESULT frame: result"));
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 16] = TDM_PROTO_CHECK_EQUAL; /* Batch ends at 4100. */
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "equal"));
    sample_msg(TDM_PROTO_CHECK_RESULT, &msg_a);
    msg_a.check_result.batch_last = 4095;
    encode_refused("different");
    sample_msg(TDM_PROTO_CHECK_RESULT, &msg_a);
    msg_a.check_result.result = TDM_PROTO_CHECK_ABSENT;
    encode_refused("absent");
    msg_a.check_result.batch_first = 0;
    msg_a.check_result.batch_last = 0;
    memset(msg_a.check_result.chain_hash, 0, sizeof(msg_a.check_result.chain_hash));
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag), 0);
    assert_int_equal(decode_buffer(frame_a, written, &msg_b, &diag), 0);
    assert_int_equal(msg_b.check_result.result, TDM_PROTO_CHECK_ABSENT);
}

/* Seeded garbage never crashes: a mutated frame is either refused with
 * TANDEM_ECORRUPT or decodes to a message that re-encodes to the same bytes;
 * a stream of random bytes is refused or waits for more, within bounds. */
/* FETCH and FETCHED (PROTOCOL.md §9.4): the fields round trip; an id of 0, a
 * range that is not one or is over the limit, batches with an error status,
 * none with status 0, a positive status: each refused by the encoder and, in
 * bytes, by the decoder, naming the field. */
static void test_proto_decode__fetch_fields(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    size_t size = encode_sample(TDM_PROTO_FETCH, frame_a, sizeof(frame_a));
    assert_int_equal(size, TDM_PROTO_FRAME_HEADER_SIZE + 3 * 8);
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.fetch.fetch_id, 23);
    assert_int_equal(msg_b.fetch.lsn_first, 1001);
    assert_int_equal(msg_b.fetch.lsn_last, 1064);
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 16] = 0xe8; /* lsn_last 1000 < lsn_first. */
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 17] = 0x03;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "FETCH frame: lsn range: not a range"));
    sample_msg(TDM_PROTO_FETCH, &msg_a);
    msg_a.fetch.fetch_id = 0;
    encode_refused("FETCH frame: fetch_id");
    sample_msg(TDM_PROTO_FETCH, &msg_a);
    msg_a.fetch.lsn_last = msg_a.fetch.lsn_first + TDM_PROTO_FETCH_LSNS_MAX;
    encode_refused("over the limit");

    size = encode_sample(TDM_PROTO_FETCHED, frame_a, sizeof(frame_a));
    assert_int_equal(size, TDM_PROTO_FRAME_HEADER_SIZE + 8 + 4 + 8 + 8 + 4 + 4 +
                               sizeof(sample_batch_a) + 4 + sizeof(sample_batch_b));
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), 0);
    assert_int_equal(msg_b.fetched.batch_count, 2);
    assert_int_equal(msg_b.fetched.lsn_last, 1032);
    assert_memory_equal(msg_b.fetched.batches[1].data, sample_batch_b, sizeof(sample_batch_b));
    /* A status of TANDEM_ECORRUPT with the batches still there. */
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 8] = 0xeb; /* -20005 = 0xffffb1db */
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 9] = 0xb1;
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 10] = 0xff;
    frame_a[TDM_PROTO_FRAME_HEADER_SIZE + 11] = 0xff;
    assert_int_equal(decode_buffer(frame_a, size, &msg_b, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "FETCHED frame: batch count"));
    sample_msg(TDM_PROTO_FETCHED, &msg_a);
    msg_a.fetched.status = TANDEM_ECORRUPT;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag),
                     TANDEM_EINVALID);
    msg_a.fetched.batch_count = 0;
    assert_int_equal(tdm_proto_encode(&msg_a, frame_a, sizeof(frame_a), &written, &diag), 0);
    assert_int_equal(decode_buffer(frame_a, written, &msg_b, &diag), 0);
    assert_int_equal(msg_b.fetched.status, TANDEM_ECORRUPT);
    msg_a.fetched.status = 0; /* Status 0 and no batch. */
    encode_refused("FETCHED frame: batch count");
    msg_a.fetched.status = 5;
    encode_refused("status: positive");
}

static void test_proto_decode__garbage(void **state)
{
    (void)state;
    struct tdm_prng prng;
    tdm_prng_init(&prng, 20260101);
    size_t accepted = 0;
    for (int i = 0; i < 20000; i++) {
        size_t size = garbage_frame(&prng, frame_a, sizeof(frame_a));
        struct tdm_diag diag = {{0}};
        int rv = decode_buffer(frame_a, size, &msg_b, &diag);
        if (rv != 0) {
            assert_int_equal(rv, TANDEM_ECORRUPT);
            assert_true(diag.message[0] != '\0');
            continue;
        }
        accepted++;
        size_t written = 0;
        assert_int_equal(tdm_proto_encode(&msg_b, frame_b, sizeof(frame_b), &written, &diag), 0);
        assert_int_equal(written, size);
        assert_memory_equal(frame_a, frame_b, size);
    }
    assert_true(accepted > 0); /* Some flips land in free fields (LSNs, hashes). */
    static uint8_t buffer[4096];
    for (int i = 0; i < 2000; i++) {
        uint8_t junk[64];
        for (size_t j = 0; j < sizeof(junk); j++) {
            junk[j] = (uint8_t)tdm_prng_next(&prng);
        }
        struct tdm_proto_reader reader;
        tdm_proto_reader_init(&reader, buffer, sizeof(buffer));
        size_t consumed = 0;
        struct tdm_diag diag;
        int rv = tdm_proto_reader_feed(&reader, junk, sizeof(junk), &consumed, &diag);
        assert_true(rv == 0 || rv == TANDEM_ECORRUPT);
        assert_true(consumed <= sizeof(junk));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_decode__round_trip_every_type),
        cmocka_unit_test(test_proto_decode__fields),
        cmocka_unit_test(test_proto_decode__every_truncation),
        cmocka_unit_test(test_proto_reader__split_delivery),
        cmocka_unit_test(test_proto_reader__oversize),
        cmocka_unit_test(test_proto_reader__bad_headers),
        cmocka_unit_test(test_proto_decode__semantic_checks),
        cmocka_unit_test(test_proto_decode__commands),
        cmocka_unit_test(test_proto_decode__inspect),
        cmocka_unit_test(test_proto_decode__verify),
        cmocka_unit_test(test_proto_decode__check_fields),
        cmocka_unit_test(test_proto_decode__fetch_fields),
        cmocka_unit_test(test_proto_decode__garbage),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
