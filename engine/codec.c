/* engine/codec.c: records <-> compact binary, and validation against the limits
 * of include/tandem.h (DESIGN "What is stored").
 *
 * Record encoding, version 1 (docs/FORMAT.md "Record encoding (format version
 * 1)" has the same table). Integers are little-endian; sizes are in bytes.
 *
 *   u8   version              TDM_CODEC_VERSION
 *   u8   type                 1 message, 2 customer (enum tandem_record_type)
 *   message:
 *     u32  customer_id
 *     u64  time_ns            UTC nanoseconds since 1970; <= INT64_MAX
 *     u64  size               <= TANDEM_MESSAGE_SIZE_MAX
 *     u8   destination        enum tandem_destination
 *     u8   classification     enum tandem_classification
 *     u32  spam_score_milli   two's complement int32
 *     ip   relay_ip
 *     str  threat, recipient, message_id, sender, subject (in this order)
 *   customer:
 *     u32  customer_id
 *     str  first_name, last_name, email, username, phone, address
 *
 *   ip   = u8 family (4 or 6), then 4 or 16 address bytes in network order.
 *   str  = u16 length, length bytes, one 0 byte. The trailing 0 lets decode
 *          point a record's strings into the buffer and still keep tandem.h's
 *          promise that returned strings are NUL-terminated.
 *
 * The encoding is canonical: a valid record has exactly one encoding, so that
 * decode followed by encode gives back the same bytes (replicas compare bytes).
 *
 * Happy path:
 * 1. tdm_codec_validate() checks every documented limit of a caller's record
 *    and names the offending field by its interchange (JSON) name.
 * 2. tdm_codec_size() gives the encoded size, tdm_codec_encode() writes it
 *    through a bounded writer.
 * 3. tdm_codec_decode() reads it back through a bounded reader, pointing the
 *    strings into the buffer, and re-checks every limit.
 *
 * Failure modes:
 * - A record that breaks a limit: TANDEM_EINVALID from validation, with a diag
 *   such as "recipient: 321 bytes, limit 320". Encoding an invalid record is a
 *   programmer error and asserts.
 * - Bytes that are not a valid encoding (bad version or type, truncated,
 *   trailing bytes, missing string terminator, a value out of its limit):
 *   TANDEM_ECORRUPT through TDM_CORRUPT(), never an assertion, because they
 *   come from a disk or a peer. The output record is then left untouched.
 *
 * Close: nothing to release; every function is pure and thread-safe.
 */
#include "codec.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "base/assert.h"
#include "base/bytes.h"

/* Encoded sizes of the parts of a record. */
#define CODEC_HEADER_SIZE          2  /* version, type */
#define CODEC_STRING_OVERHEAD_SIZE 3  /* u16 length, trailing 0 byte */
#define CODEC_IP_SIZE_MAX          17 /* family, 16 address bytes */
#define CODEC_MESSAGE_FIXED_SIZE   (4 + 8 + 8 + 1 + 1 + 4)
#define CODEC_CUSTOMER_FIXED_SIZE  4

#define CODEC_MESSAGE_SIZE_MAX                                                                     \
    (CODEC_HEADER_SIZE + CODEC_MESSAGE_FIXED_SIZE + CODEC_IP_SIZE_MAX +                            \
     5 * CODEC_STRING_OVERHEAD_SIZE + TANDEM_THREAT_SIZE_MAX + TANDEM_ADDRESS_SIZE_MAX +           \
     TANDEM_MESSAGE_ID_SIZE_MAX + TANDEM_ADDRESS_SIZE_MAX + TANDEM_SUBJECT_SIZE_MAX)
#define CODEC_CUSTOMER_SIZE_MAX                                                                    \
    (CODEC_HEADER_SIZE + CODEC_CUSTOMER_FIXED_SIZE + 6 * CODEC_STRING_OVERHEAD_SIZE +              \
     2 * TANDEM_NAME_SIZE_MAX + TANDEM_ADDRESS_SIZE_MAX + TANDEM_USERNAME_SIZE_MAX +               \
     TANDEM_PHONE_SIZE_MAX + TANDEM_POSTAL_SIZE_MAX)

/* Any valid record fits the bound that batches and buffers are sized by. */
tdm_static_assert(CODEC_MESSAGE_SIZE_MAX <= TDM_RECORD_SIZE_MAX);
tdm_static_assert(CODEC_CUSTOMER_SIZE_MAX <= TDM_RECORD_SIZE_MAX);

/* Every string length fits the u16 length prefix. */
tdm_static_assert(TANDEM_ADDRESS_SIZE_MAX <= UINT16_MAX);
tdm_static_assert(TANDEM_MESSAGE_ID_SIZE_MAX <= UINT16_MAX);
tdm_static_assert(TANDEM_SUBJECT_SIZE_MAX <= UINT16_MAX);
tdm_static_assert(TANDEM_THREAT_SIZE_MAX <= UINT16_MAX);
tdm_static_assert(TANDEM_NAME_SIZE_MAX <= UINT16_MAX);
tdm_static_assert(TANDEM_USERNAME_SIZE_MAX <= UINT16_MAX);
tdm_static_assert(TANDEM_PHONE_SIZE_MAX <= UINT16_MAX);
tdm_static_assert(TANDEM_POSTAL_SIZE_MAX <= UINT16_MAX);

/* Every valid spam score fits spam_score_milli's int32. */
tdm_static_assert(TANDEM_SPAM_SCORE_MILLI_MAX <= INT32_MAX);

/* ------------------------------------------------------------------------
 * Validation.
 * ------------------------------------------------------------------------ */

static int codec_check_bytes(const char *field, const struct tandem_bytes *bytes, size_t size_max,
                             struct tdm_diag *diag)
{
    tdm_assert(field != NULL);
    tdm_assert(size_max <= UINT16_MAX);
    if (bytes->size > 0 && bytes->data == NULL) {
        tdm_diag_printf(diag, "%s: %zu bytes but no data", field, bytes->size);
        return TANDEM_EINVALID;
    }
    if (bytes->size > size_max) {
        tdm_diag_printf(diag, "%s: %zu bytes, limit %zu", field, bytes->size, size_max);
        return TANDEM_EINVALID;
    }
    return 0;
}

static int codec_check_ip(const struct tandem_ip *ip, struct tdm_diag *diag)
{
    if (ip->family == 4) {
        /* The unused bytes must be 0 (tandem.h), or a record would compare
         * unequal to its own decoded copy. */
        for (size_t i = 4; i < sizeof(ip->bytes); i++) {
            if (ip->bytes[i] != 0) {
                tdm_diag_printf(diag, "relay_ip: IPv4 address with non-zero byte %zu", i);
                return TANDEM_EINVALID;
            }
        }
        return 0;
    }
    if (ip->family == 6) {
        return 0;
    }
    tdm_diag_printf(diag, "relay_ip: unknown family %u", (unsigned)ip->family);
    return TANDEM_EINVALID;
}

static int codec_check_spam_score(int32_t milli, struct tdm_diag *diag)
{
    int64_t magnitude = milli < 0 ? -(int64_t)milli : (int64_t)milli;
    if (magnitude <= TANDEM_SPAM_SCORE_MILLI_MAX) {
        return 0;
    }
    tdm_diag_printf(diag, "spam_score: %s%" PRId64 ".%03" PRId64 " out of range, limit %d.%03d",
                    milli < 0 ? "-" : "", magnitude / 1000, magnitude % 1000,
                    TANDEM_SPAM_SCORE_MILLI_MAX / 1000, TANDEM_SPAM_SCORE_MILLI_MAX % 1000);
    return TANDEM_EINVALID;
}

/* The numeric fields of a message: everything but its strings. */
static int codec_check_message_numbers(const struct tandem_message *m, struct tdm_diag *diag)
{
    /* Enums are read as ints: the caller's memory may hold any value. */
    int destination = (int)m->destination;
    int classification = (int)m->classification;

    if (m->time_ns < 0) {
        tdm_diag_printf(diag, "time: %" PRId64 " ns is before 1970", m->time_ns);
        return TANDEM_EINVALID;
    }
    if (m->size > TANDEM_MESSAGE_SIZE_MAX) {
        tdm_diag_printf(diag, "size: %" PRIu64 " bytes, limit %" PRIu64, m->size,
                        (uint64_t)TANDEM_MESSAGE_SIZE_MAX);
        return TANDEM_EINVALID;
    }
    if (destination < TANDEM_DESTINATION_DELIVERED ||
        destination > TANDEM_DESTINATION_QUARANTINED) {
        tdm_diag_printf(diag, "destination: unknown value %d", destination);
        return TANDEM_EINVALID;
    }
    if (classification < TANDEM_CLASSIFICATION_CLEAN ||
        classification > TANDEM_CLASSIFICATION_OVERSIZED) {
        tdm_diag_printf(diag, "classification: unknown value %d", classification);
        return TANDEM_EINVALID;
    }
    int rv = codec_check_spam_score(m->spam_score_milli, diag);
    if (rv != 0) {
        return rv;
    }
    return codec_check_ip(&m->relay_ip, diag);
}

/* Checks run in the DESIGN's field order, so the first broken field is named. */
static int codec_validate_message(const struct tandem_message *m, struct tdm_diag *diag)
{
    int rv = codec_check_message_numbers(m, diag);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_bytes("threat", &m->threat, TANDEM_THREAT_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_bytes("recipient", &m->recipient, TANDEM_ADDRESS_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    if (m->recipient.size == 0) {
        tdm_diag_printf(diag, "recipient: empty");
        return TANDEM_EINVALID;
    }
    rv = codec_check_bytes("message_id", &m->message_id, TANDEM_MESSAGE_ID_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_bytes("sender", &m->sender, TANDEM_ADDRESS_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    return codec_check_bytes("subject", &m->subject, TANDEM_SUBJECT_SIZE_MAX, diag);
}

static int codec_validate_customer(const struct tandem_customer *c, struct tdm_diag *diag)
{
    /* customer_id: every u32 is valid. */
    int rv = codec_check_bytes("first_name", &c->first_name, TANDEM_NAME_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_bytes("last_name", &c->last_name, TANDEM_NAME_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_bytes("email", &c->email, TANDEM_ADDRESS_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_bytes("username", &c->username, TANDEM_USERNAME_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    rv = codec_check_bytes("phone", &c->phone, TANDEM_PHONE_SIZE_MAX, diag);
    if (rv != 0) {
        return rv;
    }
    return codec_check_bytes("address", &c->address, TANDEM_POSTAL_SIZE_MAX, diag);
}

int tdm_codec_validate(const struct tandem_record *record, struct tdm_diag *diag)
{
    tdm_assert(record != NULL);
    switch ((int)record->type) {
    case TANDEM_RECORD_MESSAGE:
        return codec_validate_message(&record->message, diag);
    case TANDEM_RECORD_CUSTOMER:
        return codec_validate_customer(&record->customer, diag);
    default:
        tdm_diag_printf(diag, "type: unknown value %d", (int)record->type);
        return TANDEM_EINVALID;
    }
}

int tandem_record_validate(const struct tandem_record *record, struct tandem_diag *diag)
{
    struct tdm_diag inner;

    tdm_assert(record != NULL);
    inner.message[0] = '\0';
    int rv = tdm_codec_validate(record, &inner);
    tdm_assert(rv == 0 || rv == TANDEM_EINVALID);
    if (rv != 0 && diag != NULL) {
        tdm_static_assert(sizeof(diag->message) == sizeof(inner.message));
        memcpy(diag->message, inner.message, sizeof(diag->message));
        diag->message[sizeof(diag->message) - 1] = '\0';
    }
    return rv;
}

/* ------------------------------------------------------------------------
 * Encoding.
 * ------------------------------------------------------------------------ */

static size_t codec_string_size(const struct tandem_bytes *bytes)
{
    return CODEC_STRING_OVERHEAD_SIZE + bytes->size;
}

static size_t codec_ip_size(const struct tandem_ip *ip)
{
    tdm_assert(ip->family == 4 || ip->family == 6);
    return 1 + (ip->family == 4 ? 4u : 16u);
}

size_t tdm_codec_size(const struct tandem_record *record)
{
    size_t size = CODEC_HEADER_SIZE;

    tdm_assert(record != NULL);
    if (record->type == TANDEM_RECORD_MESSAGE) {
        const struct tandem_message *m = &record->message;
        size += CODEC_MESSAGE_FIXED_SIZE + codec_ip_size(&m->relay_ip);
        size += codec_string_size(&m->threat) + codec_string_size(&m->recipient) +
                codec_string_size(&m->message_id) + codec_string_size(&m->sender) +
                codec_string_size(&m->subject);
        tdm_assert(size <= CODEC_MESSAGE_SIZE_MAX);
    } else {
        const struct tandem_customer *c = &record->customer;
        tdm_assert(record->type == TANDEM_RECORD_CUSTOMER);
        size += CODEC_CUSTOMER_FIXED_SIZE;
        size += codec_string_size(&c->first_name) + codec_string_size(&c->last_name) +
                codec_string_size(&c->email) + codec_string_size(&c->username) +
                codec_string_size(&c->phone) + codec_string_size(&c->address);
        tdm_assert(size <= CODEC_CUSTOMER_SIZE_MAX);
    }
    return size;
}

static void codec_put_string(struct tdm_writer *w, const struct tandem_bytes *bytes)
{
    tdm_assert(bytes->size <= UINT16_MAX);
    tdm_put_u16(w, (uint16_t)bytes->size);
    tdm_put_bytes(w, bytes->data, bytes->size);
    tdm_put_u8(w, 0);
}

static void codec_put_message(struct tdm_writer *w, const struct tandem_message *m)
{
    tdm_put_u32(w, m->customer_id);
    tdm_put_u64(w, (uint64_t)m->time_ns);
    tdm_put_u64(w, m->size);
    tdm_put_u8(w, (uint8_t)m->destination);
    tdm_put_u8(w, (uint8_t)m->classification);
    tdm_put_u32(w, (uint32_t)m->spam_score_milli);
    tdm_put_u8(w, m->relay_ip.family);
    tdm_put_bytes(w, m->relay_ip.bytes, m->relay_ip.family == 4 ? 4 : 16);
    codec_put_string(w, &m->threat);
    codec_put_string(w, &m->recipient);
    codec_put_string(w, &m->message_id);
    codec_put_string(w, &m->sender);
    codec_put_string(w, &m->subject);
}

static void codec_put_customer(struct tdm_writer *w, const struct tandem_customer *c)
{
    tdm_put_u32(w, c->customer_id);
    codec_put_string(w, &c->first_name);
    codec_put_string(w, &c->last_name);
    codec_put_string(w, &c->email);
    codec_put_string(w, &c->username);
    codec_put_string(w, &c->phone);
    codec_put_string(w, &c->address);
}

size_t tdm_codec_encode(const struct tandem_record *record, uint8_t *buf, size_t size)
{
    struct tdm_writer w;

    tdm_assert(record != NULL);
    tdm_assert(buf != NULL);
    /* Validation is the caller's job; a record that slipped past it is our bug. */
    tdm_assert(tdm_codec_validate(record, NULL) == 0);
    size_t expected = tdm_codec_size(record);
    tdm_assert(size >= expected);

    tdm_writer_init(&w, buf, size);
    tdm_put_u8(&w, TDM_CODEC_VERSION);
    tdm_put_u8(&w, (uint8_t)record->type);
    if (record->type == TANDEM_RECORD_MESSAGE) {
        codec_put_message(&w, &record->message);
    } else {
        codec_put_customer(&w, &record->customer);
    }
    tdm_assert(!w.overflow);
    tdm_assert(w.offset == expected);
    return w.offset;
}

/* ------------------------------------------------------------------------
 * Decoding. Everything here reads untrusted bytes: every check returns
 * TANDEM_ECORRUPT, none asserts.
 * ------------------------------------------------------------------------ */

static int codec_get_string(struct tdm_reader *r, const char *field, size_t size_max,
                            struct tandem_bytes *bytes, struct tdm_diag *diag)
{
    uint16_t size = tdm_get_u16(r);
    if (r->overflow) {
        return TDM_CORRUPT(diag, "record: %s: truncated", field);
    }
    if (size > size_max) {
        return TDM_CORRUPT(diag, "record: %s: %u bytes, limit %zu", field, (unsigned)size,
                           size_max);
    }
    const uint8_t *data = tdm_reader_take(r, size);
    uint8_t terminator = tdm_get_u8(r);
    if (r->overflow) {
        return TDM_CORRUPT(diag, "record: %s: truncated", field);
    }
    if (terminator != 0) {
        return TDM_CORRUPT(diag, "record: %s: missing terminating 0 byte", field);
    }
    bytes->data = (const char *)data;
    bytes->size = size;
    return 0;
}

static int codec_get_ip(struct tdm_reader *r, struct tandem_ip *ip, struct tdm_diag *diag)
{
    uint8_t family = tdm_get_u8(r);
    if (r->overflow) {
        return TDM_CORRUPT(diag, "record: relay_ip: truncated");
    }
    if (family != 4 && family != 6) {
        return TDM_CORRUPT(diag, "record: relay_ip: unknown family %u", (unsigned)family);
    }
    memset(ip, 0, sizeof(*ip));
    ip->family = family;
    tdm_get_bytes(r, ip->bytes, family == 4 ? 4 : 16);
    if (r->overflow) {
        return TDM_CORRUPT(diag, "record: relay_ip: truncated");
    }
    return 0;
}

static int codec_get_message(struct tdm_reader *r, struct tandem_message *m, struct tdm_diag *diag)
{
    m->customer_id = tdm_get_u32(r);
    uint64_t time_ns = tdm_get_u64(r);
    m->size = tdm_get_u64(r);
    m->destination = (enum tandem_destination)tdm_get_u8(r);
    m->classification = (enum tandem_classification)tdm_get_u8(r);
    m->spam_score_milli = (int32_t)tdm_get_u32(r);
    if (r->overflow) {
        return TDM_CORRUPT(diag, "record: message: truncated");
    }
    if (time_ns > INT64_MAX) {
        return TDM_CORRUPT(diag, "record: time: %" PRIu64 " out of range", time_ns);
    }
    m->time_ns = (int64_t)time_ns;
    int rv = codec_get_ip(r, &m->relay_ip, diag);
    if (rv == 0) {
        rv = codec_get_string(r, "threat", TANDEM_THREAT_SIZE_MAX, &m->threat, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "recipient", TANDEM_ADDRESS_SIZE_MAX, &m->recipient, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "message_id", TANDEM_MESSAGE_ID_SIZE_MAX, &m->message_id, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "sender", TANDEM_ADDRESS_SIZE_MAX, &m->sender, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "subject", TANDEM_SUBJECT_SIZE_MAX, &m->subject, diag);
    }
    return rv;
}

static int codec_get_customer(struct tdm_reader *r, struct tandem_customer *c,
                              struct tdm_diag *diag)
{
    c->customer_id = tdm_get_u32(r);
    if (r->overflow) {
        return TDM_CORRUPT(diag, "record: customer: truncated");
    }
    int rv = codec_get_string(r, "first_name", TANDEM_NAME_SIZE_MAX, &c->first_name, diag);
    if (rv == 0) {
        rv = codec_get_string(r, "last_name", TANDEM_NAME_SIZE_MAX, &c->last_name, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "email", TANDEM_ADDRESS_SIZE_MAX, &c->email, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "username", TANDEM_USERNAME_SIZE_MAX, &c->username, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "phone", TANDEM_PHONE_SIZE_MAX, &c->phone, diag);
    }
    if (rv == 0) {
        rv = codec_get_string(r, "address", TANDEM_POSTAL_SIZE_MAX, &c->address, diag);
    }
    return rv;
}

int tdm_codec_decode(const uint8_t *data, size_t size, struct tandem_record *record,
                     struct tdm_diag *diag)
{
    struct tandem_record decoded;
    struct tdm_reader r;
    int rv;

    tdm_assert(data != NULL || size == 0);
    tdm_assert(record != NULL);
    memset(&decoded, 0, sizeof(decoded));
    tdm_reader_init(&r, data, size);

    uint8_t version = tdm_get_u8(&r);
    uint8_t type = tdm_get_u8(&r);
    if (r.overflow) {
        return TDM_CORRUPT(diag, "record: %zu bytes, too short for a header", size);
    }
    if (version != TDM_CODEC_VERSION) {
        return TDM_CORRUPT(diag, "record: unknown version %u", (unsigned)version);
    }
    if (type == TANDEM_RECORD_MESSAGE) {
        decoded.type = TANDEM_RECORD_MESSAGE;
        rv = codec_get_message(&r, &decoded.message, diag);
    } else if (type == TANDEM_RECORD_CUSTOMER) {
        decoded.type = TANDEM_RECORD_CUSTOMER;
        rv = codec_get_customer(&r, &decoded.customer, diag);
    } else {
        return TDM_CORRUPT(diag, "record: unknown type %u", (unsigned)type);
    }
    if (rv != 0) {
        return rv;
    }
    if (r.offset != size) {
        return TDM_CORRUPT(diag, "record: %zu trailing bytes", size - r.offset);
    }
    /* The same limits as on the way in: what a valid writer cannot have
     * produced is corruption. */
    struct tdm_diag inner;
    inner.message[0] = '\0';
    if (tdm_codec_validate(&decoded, &inner) != 0) {
        return TDM_CORRUPT(diag, "record: %s", inner.message);
    }
    tdm_assert(!r.overflow);
    *record = decoded;
    return 0;
}

/* ------------------------------------------------------------------------
 * Equality.
 * ------------------------------------------------------------------------ */

static bool codec_bytes_equal(const struct tandem_bytes *a, const struct tandem_bytes *b)
{
    if (a->size != b->size) {
        return false;
    }
    return a->size == 0 || memcmp(a->data, b->data, a->size) == 0;
}

static bool codec_message_equal(const struct tandem_message *a, const struct tandem_message *b)
{
    return a->customer_id == b->customer_id && a->time_ns == b->time_ns && a->size == b->size &&
           a->destination == b->destination && a->classification == b->classification &&
           a->spam_score_milli == b->spam_score_milli && a->relay_ip.family == b->relay_ip.family &&
           memcmp(a->relay_ip.bytes, b->relay_ip.bytes, sizeof(a->relay_ip.bytes)) == 0 &&
           codec_bytes_equal(&a->threat, &b->threat) &&
           codec_bytes_equal(&a->recipient, &b->recipient) &&
           codec_bytes_equal(&a->message_id, &b->message_id) &&
           codec_bytes_equal(&a->sender, &b->sender) && codec_bytes_equal(&a->subject, &b->subject);
}

static bool codec_customer_equal(const struct tandem_customer *a, const struct tandem_customer *b)
{
    return a->customer_id == b->customer_id && codec_bytes_equal(&a->first_name, &b->first_name) &&
           codec_bytes_equal(&a->last_name, &b->last_name) &&
           codec_bytes_equal(&a->email, &b->email) &&
           codec_bytes_equal(&a->username, &b->username) &&
           codec_bytes_equal(&a->phone, &b->phone) && codec_bytes_equal(&a->address, &b->address);
}

int tdm_codec_equal(const struct tandem_record *a, const struct tandem_record *b)
{
    tdm_assert(a != NULL);
    tdm_assert(b != NULL);
    if (a->type != b->type) {
        return 0;
    }
    if (a->type == TANDEM_RECORD_MESSAGE) {
        return codec_message_equal(&a->message, &b->message);
    }
    if (a->type == TANDEM_RECORD_CUSTOMER) {
        return codec_customer_equal(&a->customer, &b->customer);
    }
    return 0;
}
