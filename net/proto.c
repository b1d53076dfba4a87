/* net/proto.c: the frame codec of docs/PROTOCOL.md §3 (byte layouts there).
 *
 * Happy path:
 * 1. tdm_proto_reader_feed() copies stream bytes into the caller's buffer until
 *    one frame is whole; the size field is checked after 4 bytes and the rest
 *    of the header after 16, so an oversize or unknown frame is refused before
 *    its body is read.
 * 2. tdm_proto_decode() reads the payload with the bounded reader of
 *    engine/base/bytes.h (its overflow flag is sticky and checked once), copies
 *    names into fixed arrays, points slices into the buffer, then applies the
 *    same semantic checks (msg_check) that tdm_proto_encode() applies before it
 *    writes: what one side can encode the other decodes, and nothing else.
 * 3. tdm_proto_encode() writes the header and the payload with the bounded
 *    writer; the size it writes equals tdm_proto_encoded_size() (asserted).
 *
 * Failure modes: every refusal of received bytes is TANDEM_ECORRUPT through
 * TDM_CORRUPT (a trace line with file:line) and a diag "<TYPE> frame: <field>:
 * <why>"; nothing from the wire is asserted on. Loops over wire counts run only
 * after the count was checked against its _MAX.
 *
 * Close: nothing to release; a reader is dropped with its buffer. */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/assert.h"
#include "engine/base/bytes.h"

tdm_static_assert(TDM_PROTO_FRAME_HEADER_SIZE == 4 + 2 + 2 + 8);
tdm_static_assert(TDM_PROTO_FRAME_SIZE_MAX <= UINT32_MAX);
tdm_static_assert(TDM_PROTO_HISTORY_MAX <= UINT16_MAX);
tdm_static_assert(TDM_PROTO_PEERS_MAX <= UINT8_MAX);
tdm_static_assert(TDM_PROTO_NAME_SIZE_MAX <= UINT8_MAX);
tdm_static_assert(TDM_PROTO_MESSAGE_SIZE_MAX <= UINT8_MAX);
tdm_static_assert(TDM_PROTO_QUERY_KEY_SIZE_MAX <= UINT16_MAX);

/* --- Names and types ------------------------------------------------------ */

bool tdm_proto_name_valid(const char *name, size_t size)
{
    if (size == 0 || size > TDM_PROTO_NAME_SIZE_MAX) {
        return false;
    }
    for (size_t i = 0; i < size; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

static const char *const proto_type_names[] = {
    [TDM_PROTO_HELLO] = "HELLO",
    [TDM_PROTO_START] = "START",
    [TDM_PROTO_READY] = "READY",
    [TDM_PROTO_APPEND] = "APPEND",
    [TDM_PROTO_ACK] = "ACK",
    [TDM_PROTO_HEARTBEAT] = "HEARTBEAT",
    [TDM_PROTO_FORWARD] = "FORWARD",
    [TDM_PROTO_FORWARD_RESULT] = "FORWARD_RESULT",
    [TDM_PROTO_HANDOVER] = "HANDOVER",
    [TDM_PROTO_HANDOVER_DONE] = "HANDOVER_DONE",
    [TDM_PROTO_FENCE] = "FENCE",
    [TDM_PROTO_FENCED] = "FENCED",
    [TDM_PROTO_CHECK] = "CHECK",
    [TDM_PROTO_CHECK_RESULT] = "CHECK_RESULT",
    [TDM_PROTO_FETCH] = "FETCH",
    [TDM_PROTO_FETCHED] = "FETCHED",
    [TDM_PROTO_APPEND_REQUEST] = "APPEND_REQUEST",
    [TDM_PROTO_APPEND_RESULT] = "APPEND_RESULT",
    [TDM_PROTO_QUERY] = "QUERY",
    [TDM_PROTO_QUERY_RESULT] = "QUERY_RESULT",
    [TDM_PROTO_STATUS] = "STATUS",
    [TDM_PROTO_STATUS_RESULT] = "STATUS_RESULT",
    [TDM_PROTO_SWITCHOVER] = "SWITCHOVER",
    [TDM_PROTO_SWITCHOVER_RESULT] = "SWITCHOVER_RESULT",
    [TDM_PROTO_FAILOVER] = "FAILOVER",
    [TDM_PROTO_FAILOVER_RESULT] = "FAILOVER_RESULT",
    [TDM_PROTO_HISTORY] = "HISTORY",
    [TDM_PROTO_HISTORY_RESULT] = "HISTORY_RESULT",
    [TDM_PROTO_QUARANTINE] = "QUARANTINE",
    [TDM_PROTO_QUARANTINE_RESULT] = "QUARANTINE_RESULT",
    [TDM_PROTO_VERIFY] = "VERIFY",
    [TDM_PROTO_VERIFY_RESULT] = "VERIFY_RESULT",
};
#define PROTO_TYPE_END (sizeof(proto_type_names) / sizeof(proto_type_names[0]))

static bool proto_type_known(uint16_t type)
{
    return type < PROTO_TYPE_END && proto_type_names[type] != NULL;
}

const char *tdm_proto_type_name(uint16_t type)
{
    return proto_type_known(type) ? proto_type_names[type] : "unknown";
}

bool tdm_proto_type_is_client(uint16_t type)
{
    return type >= TDM_PROTO_APPEND_REQUEST && proto_type_known(type);
}

/* --- Frame header and the streaming reader -------------------------------- */

/* Check the size field (the first 4 bytes) against the limits. */
static int proto_size_check(uint32_t size, size_t capacity, struct tdm_diag *diag)
{
    if (size < TDM_PROTO_FRAME_SIZE_MIN) {
        return TDM_CORRUPT(diag, "frame size %u is below the header's %u bytes", size,
                           (unsigned)TDM_PROTO_FRAME_SIZE_MIN);
    }
    if (size > TDM_PROTO_FRAME_SIZE_MAX) {
        return TDM_CORRUPT(diag, "frame of %u bytes exceeds the limit of %u bytes", size,
                           (unsigned)TDM_PROTO_FRAME_SIZE_MAX);
    }
    if ((size_t)size + 4 > capacity) {
        return TDM_CORRUPT(diag, "frame of %u bytes exceeds this link's limit of %zu bytes", size,
                           capacity - 4);
    }
    return 0;
}

/* Check a whole 16-byte header and fill frame's type and epoch. */
static int proto_header_parse(const uint8_t *data, size_t capacity, struct tdm_proto_frame *frame,
                              struct tdm_diag *diag)
{
    struct tdm_reader r;
    tdm_reader_init(&r, data, TDM_PROTO_FRAME_HEADER_SIZE);
    uint32_t size = tdm_get_u32(&r);
    uint16_t type = tdm_get_u16(&r);
    uint16_t reserved = tdm_get_u16(&r);
    uint64_t epoch = tdm_get_u64(&r);
    tdm_assert(!r.overflow);
    int rv = proto_size_check(size, capacity, diag);
    if (rv != 0) {
        return rv;
    }
    if (!proto_type_known(type)) {
        return TDM_CORRUPT(diag, "frame of unknown type %u", type);
    }
    if (reserved != 0) {
        return TDM_CORRUPT(diag, "%s frame: reserved field is %u, not 0", tdm_proto_type_name(type),
                           reserved);
    }
    frame->type = type;
    frame->epoch = epoch;
    frame->payload = data + TDM_PROTO_FRAME_HEADER_SIZE;
    frame->payload_size = (size_t)size - TDM_PROTO_FRAME_SIZE_MIN;
    return 0;
}

void tdm_proto_reader_init(struct tdm_proto_reader *reader, uint8_t *buffer, size_t capacity)
{
    tdm_assert(buffer != NULL);
    tdm_assert(capacity >= TDM_PROTO_FRAME_HEADER_SIZE);
    memset(reader, 0, sizeof(*reader));
    reader->buffer = buffer;
    reader->capacity = capacity;
}

static int proto_reader_fail(struct tdm_proto_reader *reader, int rv, const struct tdm_diag *diag)
{
    tdm_assert(rv < 0);
    tdm_assert(reader->error == 0);
    reader->error = rv;
    snprintf(reader->error_message, sizeof(reader->error_message), "%s", diag->message);
    return rv;
}

static int proto_reader_sticky(const struct tdm_proto_reader *reader, struct tdm_diag *diag)
{
    tdm_assert(reader->error < 0);
    tdm_diag_printf(diag, "%s", reader->error_message);
    return reader->error;
}

/* Called when the header bytes needed so far have arrived. */
static int proto_reader_header(struct tdm_proto_reader *reader, struct tdm_diag *diag)
{
    if (reader->have == 4) {
        struct tdm_reader r;
        tdm_reader_init(&r, reader->buffer, 4);
        return proto_size_check(tdm_get_u32(&r), reader->capacity, diag);
    }
    tdm_assert(reader->have == TDM_PROTO_FRAME_HEADER_SIZE);
    struct tdm_proto_frame frame;
    int rv = proto_header_parse(reader->buffer, reader->capacity, &frame, diag);
    if (rv != 0) {
        return rv;
    }
    reader->want = TDM_PROTO_FRAME_HEADER_SIZE + frame.payload_size;
    tdm_assert(reader->want <= reader->capacity);
    return 0;
}

int tdm_proto_reader_feed(struct tdm_proto_reader *reader, const void *data, size_t size,
                          size_t *consumed, struct tdm_diag *diag)
{
    tdm_assert(consumed != NULL);
    tdm_assert(data != NULL || size == 0);
    struct tdm_diag local;
    if (diag == NULL) {
        diag = &local;
    }
    *consumed = 0;
    if (reader->error != 0) {
        return proto_reader_sticky(reader, diag);
    }
    const uint8_t *bytes = data;
    size_t taken = 0;
    while (taken < size && !reader->ready) {
        size_t goal = reader->want;
        if (goal == 0) {
            goal = reader->have < 4 ? 4 : TDM_PROTO_FRAME_HEADER_SIZE;
        }
        tdm_assert(goal > reader->have);
        size_t n = goal - reader->have;
        if (n > size - taken) {
            n = size - taken;
        }
        memcpy(reader->buffer + reader->have, bytes + taken, n);
        reader->have += n;
        taken += n;
        *consumed = taken;
        if (reader->want == 0 && reader->have == goal) {
            int rv = proto_reader_header(reader, diag);
            if (rv != 0) {
                return proto_reader_fail(reader, rv, diag);
            }
        }
        if (reader->want != 0 && reader->have == reader->want) {
            reader->ready = true;
        }
    }
    tdm_assert(*consumed == taken);
    return 0;
}

int tdm_proto_reader_next(struct tdm_proto_reader *reader, struct tdm_proto_frame *frame,
                          struct tdm_diag *diag)
{
    tdm_assert(frame != NULL);
    if (reader->error != 0) {
        return proto_reader_sticky(reader, diag);
    }
    if (!reader->ready) {
        return -EAGAIN;
    }
    tdm_assert(reader->have == reader->want);
    int rv = proto_header_parse(reader->buffer, reader->capacity, frame, diag);
    tdm_assert(rv == 0); /* Checked when the header arrived. */
    reader->ready = false;
    reader->have = 0;
    reader->want = 0;
    return 0;
}

int tdm_proto_reader_eof(const struct tdm_proto_reader *reader, struct tdm_diag *diag)
{
    if (reader->error != 0) {
        return proto_reader_sticky(reader, diag);
    }
    if (reader->have != 0) {
        size_t want = reader->want;
        if (want == 0) {
            return TDM_CORRUPT(diag, "stream ended inside a frame header (%zu of %u bytes)",
                               reader->have, (unsigned)TDM_PROTO_FRAME_HEADER_SIZE);
        }
        return TDM_CORRUPT(diag, "stream ended inside a frame (%zu of %zu bytes)", reader->have,
                           want);
    }
    return 0;
}

int tdm_proto_frame_parse(const uint8_t *data, size_t size, struct tdm_proto_frame *frame,
                          struct tdm_diag *diag)
{
    tdm_assert(data != NULL || size == 0);
    tdm_assert(frame != NULL);
    if (size < TDM_PROTO_FRAME_HEADER_SIZE) {
        return TDM_CORRUPT(diag, "frame of %zu bytes is shorter than its header", size);
    }
    struct tdm_proto_frame parsed;
    int rv = proto_header_parse(data, size > TDM_PROTO_BUFFER_SIZE ? TDM_PROTO_BUFFER_SIZE : size,
                                &parsed, diag);
    if (rv != 0) {
        return rv;
    }
    if (TDM_PROTO_FRAME_HEADER_SIZE + parsed.payload_size != size) {
        return TDM_CORRUPT(diag, "%s frame: size field says %zu bytes, buffer holds %zu",
                           tdm_proto_type_name(parsed.type),
                           TDM_PROTO_FRAME_HEADER_SIZE + parsed.payload_size, size);
    }
    *frame = parsed;
    return 0;
}

/* --- Semantic checks, shared by decode (after parsing) and encode ---------- */

static const char *proto_history_check(const struct tdm_proto_history *history)
{
    if (history->count > TDM_PROTO_HISTORY_MAX) {
        return "history: too many entries";
    }
    for (uint32_t i = 0; i < history->count; i++) {
        const struct tdm_proto_epoch *e = &history->entries[i];
        if (!tdm_proto_name_valid(e->primary, strnlen(e->primary, sizeof(e->primary)))) {
            return "history: bad primary id";
        }
        if (e->epoch == 0 || e->lsn_first == 0) {
            return "history: epoch and first LSN must be >= 1";
        }
        if (i > 0 && e->epoch <= history->entries[i - 1].epoch) {
            return "history: epochs not strictly increasing";
        }
        if (i > 0 && e->lsn_first < history->entries[i - 1].lsn_first) {
            return "history: first LSNs decrease";
        }
        if (e->cause > TDM_PROTO_CAUSE_MAX) {
            return "history: unknown cause";
        }
        if ((e->risk_lsn_first == 0) != (e->risk_lsn_last == 0) ||
            e->risk_lsn_first > e->risk_lsn_last) {
            return "history: LSNs at risk are not a range";
        }
    }
    return NULL;
}

static const char *proto_new_epoch_check(uint64_t new_epoch, const struct tdm_proto_history *h);

/* FENCE: a probe carries no epoch, no expectations and no history. */
static const char *proto_fence_check(const struct tdm_proto_fence *fence)
{
    if (fence->fence_id == 0) {
        return "fence id: 0";
    }
    if ((fence->flags & ~(TDM_PROTO_FENCE_PROBE | TDM_PROTO_FENCE_FORCE)) != 0) {
        return "flags: unknown bits";
    }
    if ((fence->flags & TDM_PROTO_FENCE_PROBE) != 0) {
        if (fence->new_epoch != 0 || fence->expect_epoch != 0 || fence->expect_last_epoch != 0 ||
            fence->expect_durable_lsn != 0 || fence->history.count != 0) {
            return "probe: carries an epoch, expectations or a history";
        }
        return NULL;
    }
    if (fence->new_epoch == 0) {
        return "new epoch: 0";
    }
    return proto_new_epoch_check(fence->new_epoch, &fence->history);
}

static const char *proto_fenced_check(const struct tdm_proto_fenced *fenced)
{
    if (fenced->fence_id == 0) {
        return "fence id: 0";
    }
    if (fenced->refusal > TDM_PROTO_REFUSAL_MAX) {
        return "refusal: unknown";
    }
    if (fenced->role < TDM_PROTO_ROLE_RECOVERING || fenced->role > TDM_PROTO_ROLE_FAILED) {
        return "role: unknown";
    }
    if ((fenced->flags & ~TDM_PROTO_FENCED_PRIMARY_SEEN) != 0) {
        return "flags: unknown bits";
    }
    if (fenced->epoch == 0) {
        return "epoch: 0";
    }
    if (fenced->durable_lsn > fenced->last_lsn) {
        return "durable_lsn: beyond last_lsn";
    }
    return NULL;
}

/* The history of HANDOVER and FENCE must end with the new epoch. */
static const char *proto_new_epoch_check(uint64_t new_epoch, const struct tdm_proto_history *h)
{
    const char *bad = proto_history_check(h);
    if (bad != NULL) {
        return bad;
    }
    if (h->count == 0 || h->entries[h->count - 1].epoch != new_epoch) {
        return "history: does not end with the new epoch";
    }
    return NULL;
}

static bool proto_cstr_name_valid(const char *name)
{
    return tdm_proto_name_valid(name, strnlen(name, TDM_PROTO_NAME_SIZE_MAX + 1));
}

static const char *proto_hello_check(const struct tdm_proto_hello *hello)
{
    if (hello->version != TDM_PROTO_VERSION) {
        return "version: not 1 (this node speaks protocol version 1)";
    }
    if (hello->role < TDM_PROTO_ROLE_RECOVERING || hello->role > TDM_PROTO_ROLE_FAILED) {
        return "role: out of range";
    }
    if (!proto_cstr_name_valid(hello->cluster)) {
        return "cluster: bad name";
    }
    if (!proto_cstr_name_valid(hello->node)) {
        return "node: bad id";
    }
    if (hello->durable_lsn > hello->last_lsn) {
        return "durable_lsn: past last_lsn";
    }
    if ((hello->last_lsn == 0) != (hello->last_epoch == 0)) {
        return "last_epoch: must be 0 exactly when last_lsn is 0";
    }
    return proto_history_check(&hello->history);
}

static const char *proto_ready_check(const struct tdm_proto_ready *ready)
{
    if (ready->durable_lsn > ready->last_lsn) {
        return "durable_lsn: past last_lsn";
    }
    return NULL;
}

static const char *proto_ack_check(const struct tdm_proto_ack *ack)
{
    if (ack->durable_lsn > ack->received_lsn) {
        return "durable_lsn: past received_lsn";
    }
    return NULL;
}

static const char *proto_append_check(const struct tdm_proto_append *append)
{
    if (append->batch_count > TDM_PROTO_APPEND_BATCHES_MAX) {
        return "batch count: over the limit";
    }
    for (uint32_t i = 0; i < append->batch_count; i++) {
        const struct tdm_proto_slice *b = &append->batches[i];
        if (b->size == 0 || b->size > TDM_PROTO_FRAME_SIZE_MAX || b->data == NULL) {
            return "batch: empty or over the frame limit";
        }
    }
    return NULL;
}

static const char *proto_heartbeat_check(const struct tdm_proto_heartbeat *heartbeat)
{
    if (heartbeat->lag_count > TDM_PROTO_PEERS_MAX) {
        return "lag table: too many nodes";
    }
    for (uint32_t i = 0; i < heartbeat->lag_count; i++) {
        if (!proto_cstr_name_valid(heartbeat->lags[i].node)) {
            return "lag table: bad node id";
        }
    }
    if (heartbeat->commit_lsn > heartbeat->last_lsn) {
        return "commit_lsn: past last_lsn";
    }
    return NULL;
}

/* Entries: record_count times (u32 size in 1..TDM_PROTO_RECORD_SIZE_MAX, bytes),
 * filling the slice exactly. */
static const char *proto_records_check(const struct tdm_proto_records *records)
{
    if (records->record_count == 0 || records->record_count > TDM_PROTO_RECORDS_MAX) {
        return "record count: not in 1..4096";
    }
    if (records->entries.data == NULL) {
        return "records: missing";
    }
    struct tdm_reader r;
    tdm_reader_init(&r, records->entries.data, records->entries.size);
    for (uint32_t i = 0; i < records->record_count; i++) {
        uint32_t size = tdm_get_u32(&r);
        if (r.overflow || size == 0 || size > TDM_PROTO_RECORD_SIZE_MAX) {
            return "record: size not in 1..4096";
        }
        if (tdm_reader_take(&r, size) == NULL) {
            return "record: truncated";
        }
    }
    if (r.offset != r.size) {
        return "records: bytes after the last record";
    }
    return NULL;
}

static bool proto_text_printable(const char *text)
{
    for (const char *c = text; *c != '\0'; c++) {
        if (*c < 0x20 || *c > 0x7e) {
            return false;
        }
    }
    return true;
}

static const char *proto_result_check(const struct tdm_proto_result *result)
{
    if (result->status > 0) {
        return "status: positive";
    }
    if (strnlen(result->message, sizeof(result->message)) > TDM_PROTO_MESSAGE_SIZE_MAX) {
        return "message: too long";
    }
    if (!proto_text_printable(result->message)) {
        return "message: not printable ASCII";
    }
    if (result->record_count > TDM_PROTO_RECORDS_MAX) {
        return "record count: over the limit";
    }
    return NULL;
}

static const char *proto_query_check(const struct tdm_proto_query *query)
{
    if (query->kind < TDM_PROTO_QUERY_MESSAGE_ID || query->kind > TDM_PROTO_QUERY_EMAIL) {
        return "kind: out of range";
    }
    if ((query->flags & ~(TDM_PROTO_QUERY_HAS_RECIPIENT | TDM_PROTO_QUERY_HAS_SENDER)) != 0) {
        return "flags: unknown bits";
    }
    if (query->key.size > TDM_PROTO_QUERY_KEY_SIZE_MAX) {
        return "key: too long";
    }
    if (query->recipient.size > TDM_PROTO_QUERY_ADDRESS_SIZE_MAX ||
        query->sender.size > TDM_PROTO_QUERY_ADDRESS_SIZE_MAX) {
        return "address filter: too long";
    }
    if ((query->flags & TDM_PROTO_QUERY_HAS_RECIPIENT) == 0 && query->recipient.size != 0) {
        return "recipient: set without its flag";
    }
    if ((query->flags & TDM_PROTO_QUERY_HAS_SENDER) == 0 && query->sender.size != 0) {
        return "sender: set without its flag";
    }
    return NULL;
}

static const char *proto_text_result_check(const struct tdm_proto_text_result *result,
                                           uint8_t flags_allowed)
{
    if (result->status > 0) {
        return "status: positive";
    }
    if ((result->flags & ~flags_allowed) != 0) {
        return "flags: unknown bits";
    }
    if (result->text.size > TDM_PROTO_FRAME_SIZE_MAX ||
        (result->text.size > 0 && result->text.data == NULL)) {
        return "text: over the frame limit";
    }
    return NULL;
}

static bool proto_hash_zero(const uint8_t *hash)
{
    for (size_t i = 0; i < TDM_PROTO_CHAIN_HASH_SIZE; i++) {
        if (hash[i] != 0) {
            return false;
        }
    }
    return true;
}

/* CHECK (PROTOCOL.md §9): a probe at a real LSN; the divergent batch, if named, a range. */
static const char *proto_check_check(const struct tdm_proto_check *check)
{
    if (check->check_id == 0) {
        return "check_id: 0";
    }
    if (check->lsn == 0) {
        return "lsn: 0";
    }
    if ((check->divergent_first == 0) != (check->divergent_last == 0) ||
        check->divergent_first > check->divergent_last) {
        return "divergent batch: not 0, 0 nor a range";
    }
    return NULL;
}

/* CHECK_RESULT: the batch fields agree with the verdict. */
static const char *proto_check_result_check(const struct tdm_proto_check_result *result)
{
    if (result->check_id == 0 || result->lsn == 0) {
        return "check_id or lsn: 0";
    }
    switch (result->result) {
    case TDM_PROTO_CHECK_EQUAL:
        if (result->batch_last != result->lsn || result->batch_first == 0 ||
            result->batch_first > result->batch_last) {
            return "equal: the batch does not end at lsn";
        }
        return NULL;
    case TDM_PROTO_CHECK_DIFFERENT:
        if (result->batch_first == 0 || result->batch_first > result->lsn ||
            result->lsn > result->batch_last) {
            return "different: the batch does not hold lsn";
        }
        return NULL;
    case TDM_PROTO_CHECK_ABSENT:
    case TDM_PROTO_CHECK_UNREADABLE:
        if (result->batch_first != 0 || result->batch_last != 0 ||
            !proto_hash_zero(result->chain_hash)) {
            return "absent or unreadable: batch fields set";
        }
        return NULL;
    default:
        return "result: out of range";
    }
}

/* FETCH (PROTOCOL.md §9.4): an id and a bounded LSN range. */
static const char *proto_fetch_check(const struct tdm_proto_fetch *fetch)
{
    if (fetch->fetch_id == 0) {
        return "fetch_id: 0";
    }
    if (fetch->lsn_first == 0 || fetch->lsn_last < fetch->lsn_first) {
        return "lsn range: not a range";
    }
    if (fetch->lsn_last - fetch->lsn_first >= TDM_PROTO_FETCH_LSNS_MAX) {
        return "lsn range: over the limit";
    }
    return NULL;
}

/* FETCHED: a range; batches exactly when the status is 0. */
static const char *proto_fetched_check(const struct tdm_proto_fetched *fetched)
{
    if (fetched->fetch_id == 0) {
        return "fetch_id: 0";
    }
    if (fetched->lsn_first == 0 || fetched->lsn_last < fetched->lsn_first) {
        return "lsn range: not a range";
    }
    if (fetched->status > 0) {
        return "status: positive";
    }
    if (fetched->batch_count > TDM_PROTO_APPEND_BATCHES_MAX) {
        return "batch count: over the limit";
    }
    if ((fetched->status == 0) != (fetched->batch_count > 0)) {
        return "batch count: batches exactly when the status is 0";
    }
    for (uint32_t i = 0; i < fetched->batch_count; i++) {
        const struct tdm_proto_slice *b = &fetched->batches[i];
        if (b->size == 0 || b->size > TDM_PROTO_FRAME_SIZE_MAX || b->data == NULL) {
            return "batch: empty or over the frame limit";
        }
    }
    return NULL;
}

/* SWITCHOVER: flags 0, target "" or a name; FAILOVER: known flags, a name. */
static const char *proto_command_check(const struct tdm_proto_msg *msg)
{
    const struct tdm_proto_command *command = &msg->command;
    size_t size = strnlen(command->target, sizeof(command->target));
    if (size == sizeof(command->target)) {
        return "target: too long";
    }
    if (msg->type == TDM_PROTO_SWITCHOVER) {
        if (command->flags != 0) {
            return "flags: unknown bits";
        }
        return size == 0 || tdm_proto_name_valid(command->target, size) ? NULL : "target: bad id";
    }
    if ((command->flags & ~(TDM_PROTO_FAILOVER_FORCE | TDM_PROTO_FAILOVER_DRY_RUN)) != 0) {
        return "flags: unknown bits";
    }
    return tdm_proto_name_valid(command->target, size) ? NULL : "target: bad id";
}

/* Return NULL if msg is within every limit, else the field and the reason. */
static const char *proto_msg_check(const struct tdm_proto_msg *msg)
{
    switch ((enum tdm_proto_type)msg->type) {
    case TDM_PROTO_HELLO:
        return proto_hello_check(&msg->hello);
    case TDM_PROTO_START:
        return proto_history_check(&msg->start.history);
    case TDM_PROTO_READY:
        return proto_ready_check(&msg->ready);
    case TDM_PROTO_APPEND:
        return proto_append_check(&msg->append);
    case TDM_PROTO_ACK:
        return proto_ack_check(&msg->ack);
    case TDM_PROTO_HEARTBEAT:
        return proto_heartbeat_check(&msg->heartbeat);
    case TDM_PROTO_FORWARD:
        if ((msg->forward.flags & ~TDM_PROTO_FORWARD_RESTART) != 0) {
            return "flags: unknown bits";
        }
        return proto_records_check(&msg->forward);
    case TDM_PROTO_APPEND_REQUEST:
        return proto_records_check(&msg->forward);
    case TDM_PROTO_FORWARD_RESULT:
    case TDM_PROTO_APPEND_RESULT:
        return proto_result_check(&msg->forward_result);
    case TDM_PROTO_HANDOVER:
        return proto_new_epoch_check(msg->handover.new_epoch, &msg->handover.history);
    case TDM_PROTO_HANDOVER_DONE:
        if (msg->handover_done.refusal > TDM_PROTO_REFUSAL_MAX) {
            return "refusal: unknown";
        }
        return msg->handover_done.new_epoch == 0 ? "new epoch: 0" : NULL;
    case TDM_PROTO_FENCE:
        return proto_fence_check(&msg->fence);
    case TDM_PROTO_FENCED:
        return proto_fenced_check(&msg->fenced);
    case TDM_PROTO_CHECK:
        return proto_check_check(&msg->check);
    case TDM_PROTO_CHECK_RESULT:
        return proto_check_result_check(&msg->check_result);
    case TDM_PROTO_FETCH:
        return proto_fetch_check(&msg->fetch);
    case TDM_PROTO_FETCHED:
        return proto_fetched_check(&msg->fetched);
    case TDM_PROTO_QUERY:
        return proto_query_check(&msg->query);
    case TDM_PROTO_QUERY_RESULT:
        return proto_text_result_check(&msg->query_result, TDM_PROTO_RESULT_MORE);
    case TDM_PROTO_STATUS_RESULT:
        return proto_text_result_check(&msg->status_result, 0);
    case TDM_PROTO_STATUS:
        return NULL;
    case TDM_PROTO_SWITCHOVER:
    case TDM_PROTO_FAILOVER:
        return proto_command_check(msg);
    case TDM_PROTO_SWITCHOVER_RESULT:
    case TDM_PROTO_FAILOVER_RESULT:
        return proto_text_result_check(&msg->command_result, 0);
    case TDM_PROTO_HISTORY:
        return msg->inspect.flags != 0 ? "flags: unknown bits" : NULL;
    case TDM_PROTO_QUARANTINE:
        return (msg->inspect.flags & ~TDM_PROTO_QUARANTINE_EXPORT) != 0 ? "flags: unknown bits"
                                                                        : NULL;
    case TDM_PROTO_VERIFY:
        return (msg->inspect.flags & ~TDM_PROTO_VERIFY_DEEP) != 0 ? "flags: unknown bits" : NULL;
    case TDM_PROTO_HISTORY_RESULT:
    case TDM_PROTO_QUARANTINE_RESULT:
    case TDM_PROTO_VERIFY_RESULT:
        return proto_text_result_check(&msg->inspect_result, TDM_PROTO_RESULT_MORE);
    }
    return "type: unknown";
}

/* --- Decoding ---------------------------------------------------------- */

/* A payload being decoded: the bounded reader and the first bad field. */
struct proto_dec {
    struct tdm_reader r;
    const char *bad; /* First structural failure; NULL if none. */
};

static void dec_fail(struct proto_dec *d, const char *what)
{
    if (d->bad == NULL) {
        d->bad = what;
    }
}

/* A name: u8 size (1..63), then bytes of [A-Za-z0-9._-]. */
static void dec_name(struct proto_dec *d, char *out, const char *what)
{
    out[0] = '\0';
    uint8_t size = tdm_get_u8(&d->r);
    const uint8_t *p = tdm_reader_take(&d->r, size);
    if (p == NULL) {
        return;
    }
    if (!tdm_proto_name_valid((const char *)p, size)) {
        dec_fail(d, what);
        return;
    }
    memcpy(out, p, size);
    out[size] = '\0';
}

static void dec_history(struct proto_dec *d, struct tdm_proto_history *history)
{
    uint16_t count = tdm_get_u16(&d->r);
    history->count = 0;
    if (count > TDM_PROTO_HISTORY_MAX) {
        dec_fail(d, "history: more than 128 entries");
        return;
    }
    for (uint16_t i = 0; i < count && !d->r.overflow; i++) {
        struct tdm_proto_epoch *e = &history->entries[i];
        e->epoch = tdm_get_u64(&d->r);
        dec_name(d, e->primary, "history: bad primary id");
        e->lsn_first = tdm_get_u64(&d->r);
        e->cause = tdm_get_u8(&d->r);
        e->time_ms = tdm_get_u64(&d->r);
        e->pause_ms = tdm_get_u64(&d->r);
        e->risk_lsn_first = tdm_get_u64(&d->r);
        e->risk_lsn_last = tdm_get_u64(&d->r);
    }
    history->count = count;
}

/* Bytes that stay in the frame buffer: u32 size, then size bytes. */
static void dec_slice_u32(struct proto_dec *d, struct tdm_proto_slice *slice)
{
    uint32_t size = tdm_get_u32(&d->r);
    slice->data = tdm_reader_take(&d->r, size);
    slice->size = slice->data != NULL ? size : 0;
}

static void dec_slice_u16(struct proto_dec *d, struct tdm_proto_slice *slice)
{
    uint16_t size = tdm_get_u16(&d->r);
    slice->data = tdm_reader_take(&d->r, size);
    slice->size = slice->data != NULL ? size : 0;
}

static void dec_hello(struct proto_dec *d, struct tdm_proto_hello *hello)
{
    hello->version = tdm_get_u16(&d->r);
    hello->role = tdm_get_u8(&d->r);
    dec_name(d, hello->cluster, "cluster: bad name");
    dec_name(d, hello->node, "node: bad id");
    hello->hello_id = tdm_get_u64(&d->r);
    hello->last_lsn = tdm_get_u64(&d->r);
    hello->durable_lsn = tdm_get_u64(&d->r);
    hello->last_epoch = tdm_get_u64(&d->r);
    tdm_get_bytes(&d->r, hello->chain_hash, sizeof(hello->chain_hash));
    dec_history(d, &hello->history);
}

static void dec_append(struct proto_dec *d, struct tdm_proto_append *append)
{
    append->commit_lsn = tdm_get_u64(&d->r);
    uint32_t count = tdm_get_u32(&d->r);
    append->batch_count = 0;
    if (count > TDM_PROTO_APPEND_BATCHES_MAX) {
        dec_fail(d, "batch count: over 64");
        return;
    }
    for (uint32_t i = 0; i < count && !d->r.overflow; i++) {
        dec_slice_u32(d, &append->batches[i]);
    }
    append->batch_count = count;
}

static void dec_fetched(struct proto_dec *d, struct tdm_proto_fetched *fetched)
{
    fetched->fetch_id = tdm_get_u64(&d->r);
    fetched->status = (int32_t)tdm_get_u32(&d->r);
    fetched->lsn_first = tdm_get_u64(&d->r);
    fetched->lsn_last = tdm_get_u64(&d->r);
    uint32_t count = tdm_get_u32(&d->r);
    fetched->batch_count = 0;
    if (count > TDM_PROTO_APPEND_BATCHES_MAX) {
        dec_fail(d, "batch count: over 64");
        return;
    }
    for (uint32_t i = 0; i < count && !d->r.overflow; i++) {
        dec_slice_u32(d, &fetched->batches[i]);
    }
    fetched->batch_count = count;
}

static void dec_heartbeat(struct proto_dec *d, struct tdm_proto_heartbeat *heartbeat)
{
    heartbeat->last_lsn = tdm_get_u64(&d->r);
    heartbeat->commit_lsn = tdm_get_u64(&d->r);
    heartbeat->send_ms = tdm_get_u64(&d->r);
    uint8_t count = tdm_get_u8(&d->r);
    heartbeat->lag_count = 0;
    if (count > TDM_PROTO_PEERS_MAX) {
        dec_fail(d, "lag table: more than 8 nodes");
        return;
    }
    for (uint8_t i = 0; i < count && !d->r.overflow; i++) {
        struct tdm_proto_lag *lag = &heartbeat->lags[i];
        dec_name(d, lag->node, "lag table: bad node id");
        lag->durable_lsn = tdm_get_u64(&d->r);
        lag->records = tdm_get_u64(&d->r);
        lag->size = tdm_get_u64(&d->r);
        lag->ms = tdm_get_u64(&d->r);
        uint8_t link_up = tdm_get_u8(&d->r);
        if (link_up > 1) {
            dec_fail(d, "lag table: link_up not 0 or 1");
        }
        lag->link_up = link_up == 1;
    }
    heartbeat->lag_count = count;
}

/* Records run to the end of the payload; proto_records_check() walks them. */
static void dec_records(struct proto_dec *d, struct tdm_proto_records *records, bool forward)
{
    records->request_id = tdm_get_u64(&d->r);
    records->record_count = tdm_get_u32(&d->r);
    records->flags = forward ? tdm_get_u8(&d->r) : 0;
    size_t rest = d->r.overflow ? 0 : d->r.size - d->r.offset;
    records->entries.data = tdm_reader_take(&d->r, rest);
    records->entries.size = rest;
}

static void dec_result(struct proto_dec *d, struct tdm_proto_result *result)
{
    result->request_id = tdm_get_u64(&d->r);
    result->status = (int32_t)tdm_get_u32(&d->r);
    result->lsn_first = tdm_get_u64(&d->r);
    result->record_count = tdm_get_u32(&d->r);
    uint8_t size = tdm_get_u8(&d->r);
    result->message[0] = '\0';
    const uint8_t *p = tdm_reader_take(&d->r, size);
    if (p == NULL) {
        return;
    }
    if (memchr(p, '\0', size) != NULL) {
        dec_fail(d, "message: contains NUL");
        return;
    }
    memcpy(result->message, p, size);
    result->message[size] = '\0';
}

static void dec_query(struct proto_dec *d, struct tdm_proto_query *query)
{
    query->request_id = tdm_get_u64(&d->r);
    query->kind = tdm_get_u8(&d->r);
    query->flags = tdm_get_u8(&d->r);
    query->customer_id = tdm_get_u32(&d->r);
    query->since_ns = (int64_t)tdm_get_u64(&d->r);
    query->until_ns = (int64_t)tdm_get_u64(&d->r);
    dec_slice_u16(d, &query->key);
    dec_slice_u16(d, &query->recipient);
    dec_slice_u16(d, &query->sender);
}

static void dec_text_result(struct proto_dec *d, struct tdm_proto_text_result *result)
{
    result->request_id = tdm_get_u64(&d->r);
    result->status = (int32_t)tdm_get_u32(&d->r);
    result->flags = tdm_get_u8(&d->r);
    dec_slice_u32(d, &result->text);
}

/* SWITCHOVER, FAILOVER: u64 request_id, u8 flags, u8 size (0..63) + target. */
static void dec_command(struct proto_dec *d, struct tdm_proto_command *command)
{
    command->request_id = tdm_get_u64(&d->r);
    command->flags = tdm_get_u8(&d->r);
    command->target[0] = '\0';
    uint8_t size = tdm_get_u8(&d->r);
    if (size > TDM_PROTO_NAME_SIZE_MAX) {
        dec_fail(d, "target: too long");
        return;
    }
    const uint8_t *p = tdm_reader_take(&d->r, size);
    if (p == NULL) {
        return;
    }
    if (memchr(p, '\0', size) != NULL) {
        dec_fail(d, "target: bad id");
        return;
    }
    memcpy(command->target, p, size);
    command->target[size] = '\0';
}

static void dec_chain_hash(struct proto_dec *d, uint8_t *hash)
{
    tdm_get_bytes(&d->r, hash, TDM_PROTO_CHAIN_HASH_SIZE);
}

/* HANDOVER and HANDOVER_DONE (PROTOCOL.md §3.4). */
static void dec_handover(struct proto_dec *d, struct tdm_proto_msg *msg)
{
    if (msg->type == TDM_PROTO_HANDOVER) {
        msg->handover.new_epoch = tdm_get_u64(&d->r);
        dec_history(d, &msg->handover.history);
        msg->handover.last_lsn = tdm_get_u64(&d->r);
        dec_chain_hash(d, msg->handover.chain_hash);
        return;
    }
    msg->handover_done.new_epoch = tdm_get_u64(&d->r);
    msg->handover_done.refusal = tdm_get_u8(&d->r);
    msg->handover_done.last_lsn = tdm_get_u64(&d->r);
    dec_chain_hash(d, msg->handover_done.chain_hash);
}

static void dec_fence(struct proto_dec *d, struct tdm_proto_fence *fence)
{
    fence->fence_id = tdm_get_u64(&d->r);
    fence->flags = tdm_get_u8(&d->r);
    fence->new_epoch = tdm_get_u64(&d->r);
    fence->expect_epoch = tdm_get_u64(&d->r);
    fence->expect_last_epoch = tdm_get_u64(&d->r);
    fence->expect_durable_lsn = tdm_get_u64(&d->r);
    dec_history(d, &fence->history);
}

static void dec_fenced(struct proto_dec *d, struct tdm_proto_fenced *fenced)
{
    fenced->fence_id = tdm_get_u64(&d->r);
    fenced->refusal = tdm_get_u8(&d->r);
    fenced->role = tdm_get_u8(&d->r);
    fenced->flags = tdm_get_u8(&d->r);
    fenced->epoch = tdm_get_u64(&d->r);
    fenced->last_epoch = tdm_get_u64(&d->r);
    fenced->last_lsn = tdm_get_u64(&d->r);
    fenced->durable_lsn = tdm_get_u64(&d->r);
    fenced->commit_lsn = tdm_get_u64(&d->r);
    dec_chain_hash(d, fenced->chain_hash);
}

/* HANDOVER, HANDOVER_DONE, FENCE, FENCED (PROTOCOL.md §3.4). */
static void dec_switch(struct proto_dec *d, struct tdm_proto_msg *msg)
{
    if (msg->type == TDM_PROTO_FENCE) {
        dec_fence(d, &msg->fence);
    } else if (msg->type == TDM_PROTO_FENCED) {
        dec_fenced(d, &msg->fenced);
    } else {
        dec_handover(d, msg);
    }
}

static void dec_payload(struct proto_dec *d, struct tdm_proto_msg *msg)
{
    switch ((enum tdm_proto_type)msg->type) {
    case TDM_PROTO_HELLO:
        dec_hello(d, &msg->hello);
        return;
    case TDM_PROTO_START:
        msg->start.hello_id = tdm_get_u64(&d->r);
        msg->start.fork_lsn = tdm_get_u64(&d->r);
        dec_history(d, &msg->start.history);
        return;
    case TDM_PROTO_READY:
        msg->ready.hello_id = tdm_get_u64(&d->r);
        msg->ready.last_lsn = tdm_get_u64(&d->r);
        msg->ready.durable_lsn = tdm_get_u64(&d->r);
        dec_chain_hash(d, msg->ready.chain_hash);
        return;
    case TDM_PROTO_APPEND:
        dec_append(d, &msg->append);
        return;
    case TDM_PROTO_ACK:
        msg->ack.durable_lsn = tdm_get_u64(&d->r);
        msg->ack.received_lsn = tdm_get_u64(&d->r);
        msg->ack.echo_ms = tdm_get_u64(&d->r);
        return;
    case TDM_PROTO_HEARTBEAT:
        dec_heartbeat(d, &msg->heartbeat);
        return;
    case TDM_PROTO_FORWARD:
    case TDM_PROTO_APPEND_REQUEST:
        dec_records(d, &msg->forward, msg->type == TDM_PROTO_FORWARD);
        return;
    case TDM_PROTO_FORWARD_RESULT:
    case TDM_PROTO_APPEND_RESULT:
        dec_result(d, &msg->forward_result);
        return;
    case TDM_PROTO_HANDOVER:
    case TDM_PROTO_HANDOVER_DONE:
    case TDM_PROTO_FENCE:
    case TDM_PROTO_FENCED:
        dec_switch(d, msg);
        return;
    case TDM_PROTO_CHECK:
        msg->check.check_id = tdm_get_u64(&d->r);
        msg->check.lsn = tdm_get_u64(&d->r);
        dec_chain_hash(d, msg->check.chain_hash);
        msg->check.divergent_first = tdm_get_u64(&d->r);
        msg->check.divergent_last = tdm_get_u64(&d->r);
        return;
    case TDM_PROTO_CHECK_RESULT:
        msg->check_result.check_id = tdm_get_u64(&d->r);
        msg->check_result.lsn = tdm_get_u64(&d->r);
        msg->check_result.result = tdm_get_u8(&d->r);
        msg->check_result.batch_first = tdm_get_u64(&d->r);
        msg->check_result.batch_last = tdm_get_u64(&d->r);
        dec_chain_hash(d, msg->check_result.chain_hash);
        return;
    case TDM_PROTO_FETCH:
        msg->fetch.fetch_id = tdm_get_u64(&d->r);
        msg->fetch.lsn_first = tdm_get_u64(&d->r);
        msg->fetch.lsn_last = tdm_get_u64(&d->r);
        return;
    case TDM_PROTO_FETCHED:
        dec_fetched(d, &msg->fetched);
        return;
    case TDM_PROTO_QUERY:
        dec_query(d, &msg->query);
        return;
    case TDM_PROTO_QUERY_RESULT:
    case TDM_PROTO_STATUS_RESULT:
        dec_text_result(d, &msg->query_result);
        return;
    case TDM_PROTO_STATUS:
        msg->status.request_id = tdm_get_u64(&d->r);
        return;
    case TDM_PROTO_SWITCHOVER:
    case TDM_PROTO_FAILOVER:
        dec_command(d, &msg->command);
        return;
    case TDM_PROTO_SWITCHOVER_RESULT:
    case TDM_PROTO_FAILOVER_RESULT:
        dec_text_result(d, &msg->command_result);
        return;
    case TDM_PROTO_HISTORY:
    case TDM_PROTO_QUARANTINE:
    case TDM_PROTO_VERIFY:
        msg->inspect.request_id = tdm_get_u64(&d->r);
        msg->inspect.flags = tdm_get_u8(&d->r);
        return;
    case TDM_PROTO_HISTORY_RESULT:
    case TDM_PROTO_QUARANTINE_RESULT:
    case TDM_PROTO_VERIFY_RESULT:
        dec_text_result(d, &msg->inspect_result);
        return;
    }
    dec_fail(d, "type: unknown");
}

int tdm_proto_decode(const struct tdm_proto_frame *frame, struct tdm_proto_msg *msg,
                     struct tdm_diag *diag)
{
    tdm_assert(frame != NULL);
    tdm_assert(msg != NULL);
    tdm_assert(frame->payload != NULL || frame->payload_size == 0);
    const char *name = tdm_proto_type_name(frame->type);
    if (!proto_type_known(frame->type)) {
        return TDM_CORRUPT(diag, "frame of unknown type %u", frame->type);
    }
    msg->type = frame->type;
    msg->epoch = frame->epoch;
    struct proto_dec d = {.bad = NULL};
    tdm_reader_init(&d.r, frame->payload, frame->payload_size);
    dec_payload(&d, msg);
    if (d.r.overflow) {
        return TDM_CORRUPT(diag, "%s frame: payload truncated (%zu bytes)", name,
                           frame->payload_size);
    }
    if (d.bad != NULL) {
        return TDM_CORRUPT(diag, "%s frame: %s", name, d.bad);
    }
    if (d.r.offset != d.r.size) {
        return TDM_CORRUPT(diag, "%s frame: %zu bytes after the payload", name,
                           d.r.size - d.r.offset);
    }
    const char *bad = proto_msg_check(msg);
    if (bad != NULL) {
        return TDM_CORRUPT(diag, "%s frame: %s", name, bad);
    }
    return 0;
}

bool tdm_proto_records_next(const struct tdm_proto_records *records, size_t *offset,
                            struct tdm_proto_slice *record)
{
    tdm_assert(offset != NULL);
    tdm_assert(*offset <= records->entries.size);
    if (*offset == records->entries.size) {
        return false;
    }
    struct tdm_reader r;
    tdm_reader_init(&r, records->entries.data, records->entries.size);
    r.offset = *offset;
    uint32_t size = tdm_get_u32(&r);
    record->data = tdm_reader_take(&r, size);
    tdm_assert(!r.overflow); /* The entries passed proto_records_check(). */
    tdm_assert(size >= 1);
    record->size = size;
    *offset = r.offset;
    return true;
}

/* --- Encoding -------------------------------------------------------------- */

static size_t enc_name_size(const char *name)
{
    return 1 + strlen(name);
}

static size_t enc_history_size(const struct tdm_proto_history *history)
{
    size_t size = 2;
    for (uint32_t i = 0; i < history->count && i < TDM_PROTO_HISTORY_MAX; i++) {
        size += 8 + enc_name_size(history->entries[i].primary) + 8 + 1 + 4 * 8;
    }
    return size;
}

static size_t enc_payload_size(const struct tdm_proto_msg *msg)
{
    size_t size = 0;
    switch ((enum tdm_proto_type)msg->type) {
    case TDM_PROTO_HELLO:
        return 2 + 1 + enc_name_size(msg->hello.cluster) + enc_name_size(msg->hello.node) + 4 * 8 +
               TDM_PROTO_CHAIN_HASH_SIZE + enc_history_size(&msg->hello.history);
    case TDM_PROTO_START:
        return 8 + 8 + enc_history_size(&msg->start.history);
    case TDM_PROTO_READY:
        return 3 * 8 + TDM_PROTO_CHAIN_HASH_SIZE;
    case TDM_PROTO_APPEND:
        size = 8 + 4;
        for (uint32_t i = 0; i < msg->append.batch_count && i < TDM_PROTO_APPEND_BATCHES_MAX; i++) {
            size += 4 + msg->append.batches[i].size;
        }
        return size;
    case TDM_PROTO_ACK:
        return 3 * 8;
    case TDM_PROTO_HEARTBEAT:
        size = 3 * 8 + 1;
        for (uint32_t i = 0; i < msg->heartbeat.lag_count && i < TDM_PROTO_PEERS_MAX; i++) {
            size += enc_name_size(msg->heartbeat.lags[i].node) + 4 * 8 + 1;
        }
        return size;
    case TDM_PROTO_FORWARD:
        return 8 + 4 + 1 + msg->forward.entries.size;
    case TDM_PROTO_APPEND_REQUEST:
        return 8 + 4 + msg->forward.entries.size;
    case TDM_PROTO_FORWARD_RESULT:
    case TDM_PROTO_APPEND_RESULT:
        return 8 + 4 + 8 + 4 + 1 + strlen(msg->forward_result.message);
    case TDM_PROTO_HANDOVER:
        return 8 + enc_history_size(&msg->handover.history) + 8 + TDM_PROTO_CHAIN_HASH_SIZE;
    case TDM_PROTO_HANDOVER_DONE:
        return 8 + 1 + 8 + TDM_PROTO_CHAIN_HASH_SIZE;
    case TDM_PROTO_FENCE:
        return 8 + 1 + 4 * 8 + enc_history_size(&msg->fence.history);
    case TDM_PROTO_FENCED:
        return 8 + 3 + 5 * 8 + TDM_PROTO_CHAIN_HASH_SIZE;
    case TDM_PROTO_CHECK:
        return 8 + 8 + TDM_PROTO_CHAIN_HASH_SIZE + 8 + 8;
    case TDM_PROTO_CHECK_RESULT:
        return 8 + 8 + 1 + 8 + 8 + TDM_PROTO_CHAIN_HASH_SIZE;
    case TDM_PROTO_FETCH:
        return 3 * 8;
    case TDM_PROTO_FETCHED:
        size = 8 + 4 + 8 + 8 + 4;
        for (uint32_t i = 0; i < msg->fetched.batch_count && i < TDM_PROTO_APPEND_BATCHES_MAX;
             i++) {
            size += 4 + msg->fetched.batches[i].size;
        }
        return size;
    case TDM_PROTO_QUERY:
        return 8 + 1 + 1 + 4 + 8 + 8 + 2 + msg->query.key.size + 2 + msg->query.recipient.size + 2 +
               msg->query.sender.size;
    case TDM_PROTO_QUERY_RESULT:
    case TDM_PROTO_STATUS_RESULT:
        return 8 + 4 + 1 + 4 + msg->query_result.text.size;
    case TDM_PROTO_STATUS:
        return 8;
    case TDM_PROTO_SWITCHOVER:
    case TDM_PROTO_FAILOVER:
        return 8 + 1 + 1 + strnlen(msg->command.target, sizeof(msg->command.target));
    case TDM_PROTO_SWITCHOVER_RESULT:
    case TDM_PROTO_FAILOVER_RESULT:
        return 8 + 4 + 1 + 4 + msg->command_result.text.size;
    case TDM_PROTO_HISTORY:
    case TDM_PROTO_QUARANTINE:
    case TDM_PROTO_VERIFY:
        return 8 + 1;
    case TDM_PROTO_HISTORY_RESULT:
    case TDM_PROTO_QUARANTINE_RESULT:
    case TDM_PROTO_VERIFY_RESULT:
        return 8 + 4 + 1 + 4 + msg->inspect_result.text.size;
    }
    tdm_unreachable();
}

size_t tdm_proto_encoded_size(const struct tdm_proto_msg *msg)
{
    tdm_assert(proto_type_known(msg->type));
    return TDM_PROTO_FRAME_HEADER_SIZE + enc_payload_size(msg);
}

static void enc_name(struct tdm_writer *w, const char *name)
{
    size_t size = strlen(name);
    tdm_assert(size <= TDM_PROTO_NAME_SIZE_MAX);
    tdm_put_u8(w, (uint8_t)size);
    tdm_put_bytes(w, name, size);
}

static void enc_history(struct tdm_writer *w, const struct tdm_proto_history *history)
{
    tdm_assert(history->count <= TDM_PROTO_HISTORY_MAX);
    tdm_put_u16(w, (uint16_t)history->count);
    for (uint32_t i = 0; i < history->count; i++) {
        const struct tdm_proto_epoch *e = &history->entries[i];
        tdm_put_u64(w, e->epoch);
        enc_name(w, e->primary);
        tdm_put_u64(w, e->lsn_first);
        tdm_put_u8(w, e->cause);
        tdm_put_u64(w, e->time_ms);
        tdm_put_u64(w, e->pause_ms);
        tdm_put_u64(w, e->risk_lsn_first);
        tdm_put_u64(w, e->risk_lsn_last);
    }
}

/* HANDOVER and HANDOVER_DONE (PROTOCOL.md §3.4). */
static void enc_handover(struct tdm_writer *w, const struct tdm_proto_msg *msg)
{
    if (msg->type == TDM_PROTO_HANDOVER) {
        tdm_put_u64(w, msg->handover.new_epoch);
        enc_history(w, &msg->handover.history);
        tdm_put_u64(w, msg->handover.last_lsn);
        tdm_put_bytes(w, msg->handover.chain_hash, TDM_PROTO_CHAIN_HASH_SIZE);
        return;
    }
    tdm_put_u64(w, msg->handover_done.new_epoch);
    tdm_put_u8(w, msg->handover_done.refusal);
    tdm_put_u64(w, msg->handover_done.last_lsn);
    tdm_put_bytes(w, msg->handover_done.chain_hash, TDM_PROTO_CHAIN_HASH_SIZE);
}

static void enc_fence(struct tdm_writer *w, const struct tdm_proto_fence *fence)
{
    tdm_put_u64(w, fence->fence_id);
    tdm_put_u8(w, fence->flags);
    tdm_put_u64(w, fence->new_epoch);
    tdm_put_u64(w, fence->expect_epoch);
    tdm_put_u64(w, fence->expect_last_epoch);
    tdm_put_u64(w, fence->expect_durable_lsn);
    enc_history(w, &fence->history);
}

static void enc_fenced(struct tdm_writer *w, const struct tdm_proto_fenced *fenced)
{
    tdm_put_u64(w, fenced->fence_id);
    tdm_put_u8(w, fenced->refusal);
    tdm_put_u8(w, fenced->role);
    tdm_put_u8(w, fenced->flags);
    tdm_put_u64(w, fenced->epoch);
    tdm_put_u64(w, fenced->last_epoch);
    tdm_put_u64(w, fenced->last_lsn);
    tdm_put_u64(w, fenced->durable_lsn);
    tdm_put_u64(w, fenced->commit_lsn);
    tdm_put_bytes(w, fenced->chain_hash, TDM_PROTO_CHAIN_HASH_SIZE);
}

/* HANDOVER, HANDOVER_DONE, FENCE, FENCED (PROTOCOL.md §3.4). */
static void enc_switch(struct tdm_writer *w, const struct tdm_proto_msg *msg)
{
    if (msg->type == TDM_PROTO_FENCE) {
        enc_fence(w, &msg->fence);
    } else if (msg->type == TDM_PROTO_FENCED) {
        enc_fenced(w, &msg->fenced);
    } else {
        enc_handover(w, msg);
    }
}

static void enc_slice_u32(struct tdm_writer *w, const struct tdm_proto_slice *slice)
{
    tdm_assert(slice->size <= UINT32_MAX);
    tdm_put_u32(w, (uint32_t)slice->size);
    tdm_put_bytes(w, slice->data, slice->size);
}

static void enc_slice_u16(struct tdm_writer *w, const struct tdm_proto_slice *slice)
{
    tdm_assert(slice->size <= UINT16_MAX);
    tdm_put_u16(w, (uint16_t)slice->size);
    tdm_put_bytes(w, slice->data, slice->size);
}

static void enc_hello(struct tdm_writer *w, const struct tdm_proto_hello *hello)
{
    tdm_put_u16(w, hello->version);
    tdm_put_u8(w, hello->role);
    enc_name(w, hello->cluster);
    enc_name(w, hello->node);
    tdm_put_u64(w, hello->hello_id);
    tdm_put_u64(w, hello->last_lsn);
    tdm_put_u64(w, hello->durable_lsn);
    tdm_put_u64(w, hello->last_epoch);
    tdm_put_bytes(w, hello->chain_hash, TDM_PROTO_CHAIN_HASH_SIZE);
    enc_history(w, &hello->history);
}

static void enc_append(struct tdm_writer *w, const struct tdm_proto_append *append)
{
    tdm_put_u64(w, append->commit_lsn);
    tdm_put_u32(w, append->batch_count);
    for (uint32_t i = 0; i < append->batch_count; i++) {
        enc_slice_u32(w, &append->batches[i]);
    }
}

static void enc_heartbeat(struct tdm_writer *w, const struct tdm_proto_heartbeat *heartbeat)
{
    tdm_put_u64(w, heartbeat->last_lsn);
    tdm_put_u64(w, heartbeat->commit_lsn);
    tdm_put_u64(w, heartbeat->send_ms);
    tdm_put_u8(w, (uint8_t)heartbeat->lag_count);
    for (uint32_t i = 0; i < heartbeat->lag_count; i++) {
        const struct tdm_proto_lag *lag = &heartbeat->lags[i];
        enc_name(w, lag->node);
        tdm_put_u64(w, lag->durable_lsn);
        tdm_put_u64(w, lag->records);
        tdm_put_u64(w, lag->size);
        tdm_put_u64(w, lag->ms);
        tdm_put_u8(w, lag->link_up ? 1 : 0);
    }
}

static void enc_result(struct tdm_writer *w, const struct tdm_proto_result *result)
{
    size_t size = strlen(result->message);
    tdm_assert(size <= TDM_PROTO_MESSAGE_SIZE_MAX);
    tdm_put_u64(w, result->request_id);
    tdm_put_u32(w, (uint32_t)result->status);
    tdm_put_u64(w, result->lsn_first);
    tdm_put_u32(w, result->record_count);
    tdm_put_u8(w, (uint8_t)size);
    tdm_put_bytes(w, result->message, size);
}

static void enc_query(struct tdm_writer *w, const struct tdm_proto_query *query)
{
    tdm_put_u64(w, query->request_id);
    tdm_put_u8(w, query->kind);
    tdm_put_u8(w, query->flags);
    tdm_put_u32(w, query->customer_id);
    tdm_put_u64(w, (uint64_t)query->since_ns);
    tdm_put_u64(w, (uint64_t)query->until_ns);
    enc_slice_u16(w, &query->key);
    enc_slice_u16(w, &query->recipient);
    enc_slice_u16(w, &query->sender);
}

static void enc_text_result(struct tdm_writer *w, const struct tdm_proto_text_result *result)
{
    tdm_put_u64(w, result->request_id);
    tdm_put_u32(w, (uint32_t)result->status);
    tdm_put_u8(w, result->flags);
    enc_slice_u32(w, &result->text);
}

static void enc_payload(struct tdm_writer *w, const struct tdm_proto_msg *msg)
{
    switch ((enum tdm_proto_type)msg->type) {
    case TDM_PROTO_HELLO:
        enc_hello(w, &msg->hello);
        return;
    case TDM_PROTO_START:
        tdm_put_u64(w, msg->start.hello_id);
        tdm_put_u64(w, msg->start.fork_lsn);
        enc_history(w, &msg->start.history);
        return;
    case TDM_PROTO_READY:
        tdm_put_u64(w, msg->ready.hello_id);
        tdm_put_u64(w, msg->ready.last_lsn);
        tdm_put_u64(w, msg->ready.durable_lsn);
        tdm_put_bytes(w, msg->ready.chain_hash, TDM_PROTO_CHAIN_HASH_SIZE);
        return;
    case TDM_PROTO_APPEND:
        enc_append(w, &msg->append);
        return;
    case TDM_PROTO_ACK:
        tdm_put_u64(w, msg->ack.durable_lsn);
        tdm_put_u64(w, msg->ack.received_lsn);
        tdm_put_u64(w, msg->ack.echo_ms);
        return;
    case TDM_PROTO_HEARTBEAT:
        enc_heartbeat(w, &msg->heartbeat);
        return;
    case TDM_PROTO_FORWARD:
    case TDM_PROTO_APPEND_REQUEST:
        tdm_put_u64(w, msg->forward.request_id);
        tdm_put_u32(w, msg->forward.record_count);
        if (msg->type == TDM_PROTO_FORWARD) {
            tdm_put_u8(w, msg->forward.flags);
        }
        tdm_put_bytes(w, msg->forward.entries.data, msg->forward.entries.size);
        return;
    case TDM_PROTO_FORWARD_RESULT:
    case TDM_PROTO_APPEND_RESULT:
        enc_result(w, &msg->forward_result);
        return;
    case TDM_PROTO_HANDOVER:
    case TDM_PROTO_HANDOVER_DONE:
    case TDM_PROTO_FENCE:
    case TDM_PROTO_FENCED:
        enc_switch(w, msg);
        return;
    case TDM_PROTO_CHECK:
        tdm_put_u64(w, msg->check.check_id);
        tdm_put_u64(w, msg->check.lsn);
        tdm_put_bytes(w, msg->check.chain_hash, TDM_PROTO_CHAIN_HASH_SIZE);
        tdm_put_u64(w, msg->check.divergent_first);
        tdm_put_u64(w, msg->check.divergent_last);
        return;
    case TDM_PROTO_CHECK_RESULT:
        tdm_put_u64(w, msg->check_result.check_id);
        tdm_put_u64(w, msg->check_result.lsn);
        tdm_put_u8(w, msg->check_result.result);
        tdm_put_u64(w, msg->check_result.batch_first);
        tdm_put_u64(w, msg->check_result.batch_last);
        tdm_put_bytes(w, msg->check_result.chain_hash, TDM_PROTO_CHAIN_HASH_SIZE);
        return;
    case TDM_PROTO_FETCH:
        tdm_put_u64(w, msg->fetch.fetch_id);
        tdm_put_u64(w, msg->fetch.lsn_first);
        tdm_put_u64(w, msg->fetch.lsn_last);
        return;
    case TDM_PROTO_FETCHED:
        tdm_put_u64(w, msg->fetched.fetch_id);
        tdm_put_u32(w, (uint32_t)msg->fetched.status);
        tdm_put_u64(w, msg->fetched.lsn_first);
        tdm_put_u64(w, msg->fetched.lsn_last);
        tdm_put_u32(w, msg->fetched.batch_count);
        for (uint32_t i = 0; i < msg->fetched.batch_count; i++) {
            enc_slice_u32(w, &msg->fetched.batches[i]);
        }
        return;
    case TDM_PROTO_QUERY:
        enc_query(w, &msg->query);
        return;
    case TDM_PROTO_QUERY_RESULT:
    case TDM_PROTO_STATUS_RESULT:
        enc_text_result(w, &msg->query_result);
        return;
    case TDM_PROTO_STATUS:
        tdm_put_u64(w, msg->status.request_id);
        return;
    case TDM_PROTO_SWITCHOVER:
    case TDM_PROTO_FAILOVER: {
        size_t size = strlen(msg->command.target);
        tdm_put_u64(w, msg->command.request_id);
        tdm_put_u8(w, msg->command.flags);
        tdm_put_u8(w, (uint8_t)size);
        tdm_put_bytes(w, msg->command.target, size);
        return;
    }
    case TDM_PROTO_SWITCHOVER_RESULT:
    case TDM_PROTO_FAILOVER_RESULT:
        enc_text_result(w, &msg->command_result);
        return;
    case TDM_PROTO_HISTORY:
    case TDM_PROTO_QUARANTINE:
    case TDM_PROTO_VERIFY:
        tdm_put_u64(w, msg->inspect.request_id);
        tdm_put_u8(w, msg->inspect.flags);
        return;
    case TDM_PROTO_HISTORY_RESULT:
    case TDM_PROTO_QUARANTINE_RESULT:
    case TDM_PROTO_VERIFY_RESULT:
        enc_text_result(w, &msg->inspect_result);
        return;
    }
    tdm_unreachable();
}

/* Encoding rejects by code what the caller could get wrong from data (a name,
 * a count, a size); only a call that breaks the header's contract asserts. */
static int proto_encode_check(const struct tdm_proto_msg *msg, size_t *frame_size,
                              struct tdm_diag *diag)
{
    if (!proto_type_known(msg->type)) {
        tdm_diag_printf(diag, "encode: unknown frame type %u", msg->type);
        return TANDEM_EINVALID;
    }
    const char *name = tdm_proto_type_name(msg->type);
    const char *bad = proto_msg_check(msg);
    if (bad != NULL) {
        tdm_diag_printf(diag, "encode %s frame: %s", name, bad);
        return TANDEM_EINVALID;
    }
    size_t size = tdm_proto_encoded_size(msg);
    if (size - 4 > TDM_PROTO_FRAME_SIZE_MAX) {
        tdm_diag_printf(diag, "encode %s frame: %zu bytes exceed the limit of %u", name, size - 4,
                        (unsigned)TDM_PROTO_FRAME_SIZE_MAX);
        return TANDEM_EINVALID;
    }
    *frame_size = size;
    return 0;
}

int tdm_proto_encode(const struct tdm_proto_msg *msg, uint8_t *buffer, size_t size, size_t *written,
                     struct tdm_diag *diag)
{
    tdm_assert(msg != NULL);
    tdm_assert(written != NULL);
    tdm_assert(buffer != NULL || size == 0);
    size_t frame_size = 0;
    int rv = proto_encode_check(msg, &frame_size, diag);
    if (rv != 0) {
        return rv;
    }
    if (frame_size > size) {
        tdm_diag_printf(diag, "encode %s frame: needs %zu bytes, buffer has %zu",
                        tdm_proto_type_name(msg->type), frame_size, size);
        return -ENOBUFS;
    }
    struct tdm_writer w;
    tdm_writer_init(&w, buffer, frame_size);
    tdm_put_u32(&w, (uint32_t)(frame_size - 4));
    tdm_put_u16(&w, msg->type);
    tdm_put_u16(&w, 0);
    tdm_put_u64(&w, msg->epoch);
    enc_payload(&w, msg);
    tdm_assert(!w.overflow);
    tdm_assert(w.offset == frame_size);
    *written = frame_size;
    return 0;
}
