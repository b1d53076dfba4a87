/* tests/unit/test_codec.c: engine/codec.c, the binary record encoding and the
 * validation of every documented limit of include/tandem.h.
 *
 * Method: hand-made records pin each rule and its message; seeded random
 * records (engine/base/prng.h) prove round trips; every truncation, every
 * single-bit flip and random garbage prove that decode never crashes and
 * never accepts what encode cannot have written. */
#include "tdm_test.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/prng.h"
#include "engine/codec.h"
#include "heap.h"

#define TEST_SEED         0x74616e64656d01ULL
#define TEST_ROUNDS       2000
#define TEST_STRING_COUNT 6
#define TEST_STRING_SIZE  (TANDEM_SUBJECT_SIZE_MAX + 2)

/* A record and the buffers its strings point into. */
struct test_record {
    struct tandem_record record;
    char strings[TEST_STRING_COUNT][TEST_STRING_SIZE];
};

/* Every string field of a record, with its interchange name and limit. */
struct test_string_field {
    enum tandem_record_type type;
    const char *name;
    size_t offset; /* Of the struct tandem_bytes in struct tandem_record. */
    size_t size_max;
};

#define TEST_FIELD(type, name, member, limit)                                                      \
    {                                                                                              \
        type, name, offsetof(struct tandem_record, member), limit                                  \
    }

static const struct test_string_field test_string_fields[] = {
    TEST_FIELD(TANDEM_RECORD_MESSAGE, "threat", message.threat, TANDEM_THREAT_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_MESSAGE, "recipient", message.recipient, TANDEM_ADDRESS_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_MESSAGE, "message_id", message.message_id, TANDEM_MESSAGE_ID_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_MESSAGE, "sender", message.sender, TANDEM_ADDRESS_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_MESSAGE, "subject", message.subject, TANDEM_SUBJECT_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_CUSTOMER, "first_name", customer.first_name, TANDEM_NAME_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_CUSTOMER, "last_name", customer.last_name, TANDEM_NAME_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_CUSTOMER, "email", customer.email, TANDEM_ADDRESS_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_CUSTOMER, "username", customer.username, TANDEM_USERNAME_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_CUSTOMER, "phone", customer.phone, TANDEM_PHONE_SIZE_MAX),
    TEST_FIELD(TANDEM_RECORD_CUSTOMER, "address", customer.address, TANDEM_POSTAL_SIZE_MAX),
};
#define TEST_STRING_FIELD_COUNT (sizeof(test_string_fields) / sizeof(test_string_fields[0]))

/* ------------------------------------------------------------------------
 * Fixtures: records, the cmocka heap and the assert hook.
 * ------------------------------------------------------------------------ */

static struct tandem_bytes *test_bytes(struct tandem_record *record,
                                       const struct test_string_field *field)
{
    return (struct tandem_bytes *)((char *)record + field->offset);
}

static void test_set_text(struct tandem_bytes *bytes, const char *text)
{
    bytes->data = text;
    bytes->size = strlen(text);
}

/* A valid message with every field set. */
static void test_message_init(struct tandem_record *record)
{
    memset(record, 0, sizeof(*record));
    record->type = TANDEM_RECORD_MESSAGE;
    struct tandem_message *m = &record->message;
    m->customer_id = 42;
    m->time_ns = 1795838222123456789LL;
    m->size = 1234;
    m->destination = TANDEM_DESTINATION_DELIVERED;
    m->classification = TANDEM_CLASSIFICATION_SPAM;
    test_set_text(&m->threat, "Eicar-Test-Signature");
    test_set_text(&m->recipient, "bob@example.com");
    m->spam_score_milli = 5300;
    test_set_text(&m->message_id, "<1234@mail.example.org>");
    test_set_text(&m->sender, "alice@example.org");
    m->relay_ip.family = 4;
    m->relay_ip.bytes[0] = 192;
    m->relay_ip.bytes[2] = 2;
    m->relay_ip.bytes[3] = 1;
    test_set_text(&m->subject, "\xff\xfe Caf\xe9");
}

/* A valid customer with every field set. */
static void test_customer_init(struct tandem_record *record)
{
    memset(record, 0, sizeof(*record));
    record->type = TANDEM_RECORD_CUSTOMER;
    struct tandem_customer *c = &record->customer;
    c->customer_id = 7;
    test_set_text(&c->first_name, "Ada");
    test_set_text(&c->last_name, "Lovelace");
    test_set_text(&c->email, "ada@example.com");
    test_set_text(&c->username, "ada");
    test_set_text(&c->phone, "+44 20 7946 0000");
    test_set_text(&c->address, "12 St James's Square, London");
}

/* Random size in [size_min, size_max], with the bounds themselves often. */
static size_t test_random_size(struct tdm_prng *prng, size_t size_min, size_t size_max)
{
    switch (tdm_prng_below(prng, 8)) {
    case 0:
        return size_min;
    case 1:
        return size_max;
    default:
        return size_min + (size_t)tdm_prng_below(prng, size_max - size_min + 1);
    }
}

/* Random bytes of any value, NUL and invalid UTF-8 included. */
static void test_random_bytes(struct tdm_prng *prng, struct tandem_bytes *bytes, char *buf,
                              size_t size_min, size_t size_max)
{
    size_t size = test_random_size(prng, size_min, size_max);
    for (size_t i = 0; i < size; i++) {
        buf[i] = (char)tdm_prng_below(prng, 256);
    }
    bytes->data = size > 0 || tdm_prng_below(prng, 2) == 0 ? buf : NULL;
    bytes->size = size;
}

static void test_random_message(struct tdm_prng *prng, struct test_record *tr)
{
    memset(&tr->record, 0, sizeof(tr->record));
    tr->record.type = TANDEM_RECORD_MESSAGE;
    struct tandem_message *m = &tr->record.message;
    m->customer_id = (uint32_t)tdm_prng_next(prng);
    m->time_ns = (int64_t)(tdm_prng_next(prng) >> 1);
    m->size = tdm_prng_below(prng, TANDEM_MESSAGE_SIZE_MAX + 1);
    m->destination = (enum tandem_destination)(1 + tdm_prng_below(prng, 2));
    m->classification = (enum tandem_classification)(1 + tdm_prng_below(prng, 6));
    m->spam_score_milli =
        (int32_t)((int64_t)tdm_prng_below(prng, 2ULL * 1000000000 + 1) - 1000000000);
    m->relay_ip.family = tdm_prng_below(prng, 2) == 0 ? 4 : 6;
    for (size_t i = 0; i < (m->relay_ip.family == 4 ? 4u : 16u); i++) {
        m->relay_ip.bytes[i] = (uint8_t)tdm_prng_next(prng);
    }
    test_random_bytes(prng, &m->threat, tr->strings[0], 0, TANDEM_THREAT_SIZE_MAX);
    test_random_bytes(prng, &m->recipient, tr->strings[1], 1, TANDEM_ADDRESS_SIZE_MAX);
    test_random_bytes(prng, &m->message_id, tr->strings[2], 0, TANDEM_MESSAGE_ID_SIZE_MAX);
    test_random_bytes(prng, &m->sender, tr->strings[3], 0, TANDEM_ADDRESS_SIZE_MAX);
    test_random_bytes(prng, &m->subject, tr->strings[4], 0, TANDEM_SUBJECT_SIZE_MAX);
}

static void test_random_customer(struct tdm_prng *prng, struct test_record *tr)
{
    memset(&tr->record, 0, sizeof(tr->record));
    tr->record.type = TANDEM_RECORD_CUSTOMER;
    struct tandem_customer *c = &tr->record.customer;
    c->customer_id = (uint32_t)tdm_prng_next(prng);
    test_random_bytes(prng, &c->first_name, tr->strings[0], 0, TANDEM_NAME_SIZE_MAX);
    test_random_bytes(prng, &c->last_name, tr->strings[1], 0, TANDEM_NAME_SIZE_MAX);
    test_random_bytes(prng, &c->email, tr->strings[2], 0, TANDEM_ADDRESS_SIZE_MAX);
    test_random_bytes(prng, &c->username, tr->strings[3], 0, TANDEM_USERNAME_SIZE_MAX);
    test_random_bytes(prng, &c->phone, tr->strings[4], 0, TANDEM_PHONE_SIZE_MAX);
    test_random_bytes(prng, &c->address, tr->strings[5], 0, TANDEM_POSTAL_SIZE_MAX);
}

static void test_random_record(struct tdm_prng *prng, struct test_record *tr)
{
    if (tdm_prng_below(prng, 2) == 0) {
        test_random_message(prng, tr);
    } else {
        test_random_customer(prng, tr);
    }
}

/* Encode a valid record into an exactly sized heap buffer, so that the
 * sanitizers see any read beyond it. */
static uint8_t *test_encode(const struct tandem_record *record, size_t *size)
{
    assert_int_equal(tdm_codec_validate(record, NULL), 0);
    *size = tdm_codec_size(record);
    uint8_t *buf = test_malloc(*size);
    assert_int_equal(tdm_codec_encode(record, buf, *size), *size);
    return buf;
}

/* Decode size bytes from an exactly sized copy; a successful decode must give
 * back the same bytes when encoded again (the encoding is canonical). */
static int test_decode_copy(const uint8_t *data, size_t size)
{
    uint8_t *copy = test_malloc(size > 0 ? size : 1);
    struct tandem_record record;
    struct tandem_record sentinel;
    struct tdm_diag diag;

    if (size > 0) {
        memcpy(copy, data, size);
    }
    memset(&record, 0xA5, sizeof(record));
    memcpy(&sentinel, &record, sizeof(record));
    int rv = tdm_codec_decode(copy, size, &record, &diag);
    if (rv == 0) {
        uint8_t again[TDM_RECORD_SIZE_MAX];
        assert_int_equal(tdm_codec_validate(&record, NULL), 0);
        assert_int_equal(tdm_codec_size(&record), size);
        assert_int_equal(tdm_codec_encode(&record, again, sizeof(again)), size);
        assert_memory_equal(again, copy, size);
    } else {
        assert_int_equal(rv, TANDEM_ECORRUPT);
        assert_true(strlen(diag.message) > 0);
        assert_memory_equal(&record, &sentinel, sizeof(record)); /* Untouched on failure. */
    }
    test_free(copy);
    return rv;
}

static void test_assert_hook(const char *expr, const char *file, int line)
{
    mock_assert(0, expr, file, line);
}

static void test_expect_invalid(const struct tandem_record *record, const char *message)
{
    struct tdm_diag diag;
    memset(&diag, 0, sizeof(diag));
    assert_int_equal(tdm_codec_validate(record, &diag), TANDEM_EINVALID);
    assert_string_equal(diag.message, message);
}

/* ------------------------------------------------------------------------
 * Validation.
 * ------------------------------------------------------------------------ */

/* The hand-made message and customer, with every field set, are valid. */
static void test_codec_validate__valid_records(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    test_customer_init(&record);
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
}

/* Every string field is accepted at its limit and rejected one byte over it,
 * with a diag naming the field, the size and the limit. */
static void test_codec_validate__string_limits(void **state)
{
    static char buf[TEST_STRING_SIZE];
    char expected[TDM_DIAG_SIZE];
    struct tandem_record record;
    (void)state;

    memset(buf, 'x', sizeof(buf));
    for (size_t i = 0; i < TEST_STRING_FIELD_COUNT; i++) {
        const struct test_string_field *field = &test_string_fields[i];
        if (field->type == TANDEM_RECORD_MESSAGE) {
            test_message_init(&record);
        } else {
            test_customer_init(&record);
        }
        struct tandem_bytes *bytes = test_bytes(&record, field);
        bytes->data = buf;
        bytes->size = field->size_max;
        assert_int_equal(tdm_codec_validate(&record, NULL), 0);
        bytes->size = field->size_max + 1;
        (void)snprintf(expected, sizeof(expected), "%s: %zu bytes, limit %zu", field->name,
                       field->size_max + 1, field->size_max);
        test_expect_invalid(&record, expected);
    }
}

/* A string with a size but no data is rejected, naming the field; an empty
 * string may have NULL data. */
static void test_codec_validate__null_data(void **state)
{
    char expected[TDM_DIAG_SIZE];
    struct tandem_record record;
    (void)state;

    for (size_t i = 0; i < TEST_STRING_FIELD_COUNT; i++) {
        const struct test_string_field *field = &test_string_fields[i];
        if (field->type == TANDEM_RECORD_MESSAGE) {
            test_message_init(&record);
        } else {
            test_customer_init(&record);
        }
        struct tandem_bytes *bytes = test_bytes(&record, field);
        bytes->data = NULL;
        bytes->size = 0;
        if (strcmp(field->name, "recipient") != 0) {
            assert_int_equal(tdm_codec_validate(&record, NULL), 0);
        }
        bytes->size = 3;
        (void)snprintf(expected, sizeof(expected), "%s: 3 bytes but no data", field->name);
        test_expect_invalid(&record, expected);
    }
}

/* An empty recipient is rejected; the other message strings may be empty. */
static void test_codec_validate__recipient_empty(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    record.message.threat.size = 0;
    record.message.message_id.size = 0;
    record.message.sender.size = 0;
    record.message.subject.size = 0;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.message.recipient.size = 0;
    test_expect_invalid(&record, "recipient: empty");
}

/* Values outside each enum are rejected with the field and the value. */
static void test_codec_validate__unknown_enum_values(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    record.message.destination = (enum tandem_destination)0;
    test_expect_invalid(&record, "destination: unknown value 0");
    record.message.destination = (enum tandem_destination)3;
    test_expect_invalid(&record, "destination: unknown value 3");
    record.message.destination = TANDEM_DESTINATION_QUARANTINED;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);

    record.message.classification = (enum tandem_classification)0;
    test_expect_invalid(&record, "classification: unknown value 0");
    record.message.classification = (enum tandem_classification)9;
    test_expect_invalid(&record, "classification: unknown value 9");
    for (int c = TANDEM_CLASSIFICATION_CLEAN; c <= TANDEM_CLASSIFICATION_OVERSIZED; c++) {
        record.message.classification = (enum tandem_classification)c;
        assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    }

    record.type = (enum tandem_record_type)3;
    test_expect_invalid(&record, "type: unknown value 3");
    record.type = (enum tandem_record_type)0;
    test_expect_invalid(&record, "type: unknown value 0");
}

/* time must not be negative; 0 (1970) and INT64_MAX are valid. */
static void test_codec_validate__time(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    record.message.time_ns = 0;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.message.time_ns = INT64_MAX;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.message.time_ns = -1;
    test_expect_invalid(&record, "time: -1 ns is before 1970");
}

/* size is accepted up to TANDEM_MESSAGE_SIZE_MAX and rejected beyond. */
static void test_codec_validate__size(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    record.message.size = TANDEM_MESSAGE_SIZE_MAX;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.message.size = TANDEM_MESSAGE_SIZE_MAX + 1;
    test_expect_invalid(&record, "size: 1099511627777 bytes, limit 1099511627776");
    record.message.size = UINT64_MAX;
    test_expect_invalid(&record, "size: 18446744073709551615 bytes, limit 1099511627776");
}

/* |spam_score| is accepted up to the limit in both signs and rejected beyond,
 * INT32_MIN included (whose magnitude does not fit an int32). */
static void test_codec_validate__spam_score(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    record.message.spam_score_milli = TANDEM_SPAM_SCORE_MILLI_MAX;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.message.spam_score_milli = -TANDEM_SPAM_SCORE_MILLI_MAX;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.message.spam_score_milli = TANDEM_SPAM_SCORE_MILLI_MAX + 1;
    test_expect_invalid(&record, "spam_score: 1000000.001 out of range, limit 1000000.000");
    record.message.spam_score_milli = -TANDEM_SPAM_SCORE_MILLI_MAX - 1;
    test_expect_invalid(&record, "spam_score: -1000000.001 out of range, limit 1000000.000");
    record.message.spam_score_milli = INT32_MIN;
    test_expect_invalid(&record, "spam_score: -2147483.648 out of range, limit 1000000.000");
}

/* relay_ip must be family 4 or 6, and an IPv4 address keeps bytes 4..15 at 0. */
static void test_codec_validate__relay_ip(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    record.message.relay_ip.family = 6;
    memset(record.message.relay_ip.bytes, 0xFF, sizeof(record.message.relay_ip.bytes));
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.message.relay_ip.family = 4;
    test_expect_invalid(&record, "relay_ip: IPv4 address with non-zero byte 4");
    record.message.relay_ip.family = 0;
    test_expect_invalid(&record, "relay_ip: unknown family 0");
    record.message.relay_ip.family = 5;
    test_expect_invalid(&record, "relay_ip: unknown family 5");
}

/* Every customer_id is valid, 0 and UINT32_MAX included. */
static void test_codec_validate__customer_id_any(void **state)
{
    struct tandem_record record;
    (void)state;

    test_customer_init(&record);
    record.customer.customer_id = 0;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
    record.customer.customer_id = UINT32_MAX;
    assert_int_equal(tdm_codec_validate(&record, NULL), 0);
}

/* The public entry point gives the same verdict and copies the diag; it
 * accepts a NULL diag and leaves the diag alone on success. */
static void test_tandem_record_validate__copies_diag(void **state)
{
    struct tandem_record record;
    struct tandem_diag diag;
    (void)state;

    test_message_init(&record);
    strcpy(diag.message, "untouched");
    assert_int_equal(tandem_record_validate(&record, &diag), 0);
    assert_string_equal(diag.message, "untouched");
    record.message.classification = (enum tandem_classification)9;
    assert_int_equal(tandem_record_validate(&record, &diag), TANDEM_EINVALID);
    assert_string_equal(diag.message, "classification: unknown value 9");
    assert_int_equal(tandem_record_validate(&record, NULL), TANDEM_EINVALID);
}

/* ------------------------------------------------------------------------
 * Encoding and decoding.
 * ------------------------------------------------------------------------ */

/* Random records survive encode and decode unchanged, within the declared
 * size, with NUL-terminated strings pointing into the encoding. */
static void test_codec_encode__round_trip_random(void **state)
{
    static struct test_record tr;
    struct tdm_prng prng;
    (void)state;

    tdm_prng_init(&prng, TEST_SEED);
    for (int round = 0; round < TEST_ROUNDS; round++) {
        size_t size;
        struct tandem_record decoded;
        struct tdm_diag diag;
        test_random_record(&prng, &tr);
        uint8_t *buf = test_encode(&tr.record, &size);
        assert_true(size <= TDM_RECORD_SIZE_MAX);
        assert_int_equal(buf[0], TDM_CODEC_VERSION);
        assert_int_equal(tdm_codec_decode(buf, size, &decoded, &diag), 0);
        assert_true(tdm_codec_equal(&tr.record, &decoded));
        const struct tandem_bytes *s = &decoded.message.subject;
        if (decoded.type == TANDEM_RECORD_CUSTOMER) {
            s = &decoded.customer.address;
        }
        assert_true((const uint8_t *)s->data > buf);
        assert_true((const uint8_t *)s->data + s->size < buf + size);
        assert_int_equal(s->data[s->size], '\0');
        test_free(buf);
    }
}

/* Records with every string at its limit are the largest and still fit
 * TDM_RECORD_SIZE_MAX. */
static void test_codec_size__largest_records(void **state)
{
    static char buf[TEST_STRING_SIZE];
    struct tandem_record record;
    (void)state;

    memset(buf, 'y', sizeof(buf));
    test_message_init(&record);
    record.message.relay_ip.family = 6;
    for (size_t i = 0; i < TEST_STRING_FIELD_COUNT; i++) {
        if (test_string_fields[i].type == TANDEM_RECORD_MESSAGE) {
            test_bytes(&record, &test_string_fields[i])->data = buf;
            test_bytes(&record, &test_string_fields[i])->size = test_string_fields[i].size_max;
        }
    }
    assert_int_equal(tdm_codec_size(&record), 2 + 26 + 17 + 5 * 3 + 255 + 320 + 998 + 320 + 998);
    assert_true(tdm_codec_size(&record) <= TDM_RECORD_SIZE_MAX);

    test_customer_init(&record);
    for (size_t i = 0; i < TEST_STRING_FIELD_COUNT; i++) {
        if (test_string_fields[i].type == TANDEM_RECORD_CUSTOMER) {
            test_bytes(&record, &test_string_fields[i])->data = buf;
            test_bytes(&record, &test_string_fields[i])->size = test_string_fields[i].size_max;
        }
    }
    assert_int_equal(tdm_codec_size(&record), 2 + 4 + 6 * 3 + 128 + 128 + 320 + 128 + 32 + 512);
    assert_true(tdm_codec_size(&record) <= TDM_RECORD_SIZE_MAX);
}

/* The encoding of a small message is the documented layout, byte for byte. */
static void test_codec_encode__layout(void **state)
{
    static const uint8_t expected[] = {
        1,    1,                            /* version, type */
        7,    0,    0,    0,                /* customer_id */
        1,    0,    0,    0,    0, 0, 0, 0, /* time_ns */
        2,    0,    0,    0,    0, 0, 0, 0, /* size */
        2,    3,                            /* destination, classification */
        0xFF, 0xFF, 0xFF, 0xFF,             /* spam_score_milli -1 */
        4,    10,   0,    0,    1,          /* relay_ip */
        0,    0,    0,                      /* threat "" */
        1,    0,    'r',  0,                /* recipient "r" */
        0,    0,    0,    0,    0, 0,       /* message_id, sender */
        2,    0,    0xE9, 0,    0,          /* subject "\xe9\0" */
    };
    struct tandem_record record;
    uint8_t buf[TDM_RECORD_SIZE_MAX];
    (void)state;

    memset(&record, 0, sizeof(record));
    record.type = TANDEM_RECORD_MESSAGE;
    record.message.customer_id = 7;
    record.message.time_ns = 1;
    record.message.size = 2;
    record.message.destination = TANDEM_DESTINATION_QUARANTINED;
    record.message.classification = TANDEM_CLASSIFICATION_VIRUS;
    record.message.spam_score_milli = -1;
    record.message.relay_ip.family = 4;
    record.message.relay_ip.bytes[0] = 10;
    record.message.relay_ip.bytes[3] = 1;
    record.message.recipient.data = "r";
    record.message.recipient.size = 1;
    record.message.subject.data = "\xe9";
    record.message.subject.size = 2; /* The string's own NUL byte is data here. */
    assert_int_equal(tdm_codec_encode(&record, buf, sizeof(buf)), sizeof(expected));
    assert_memory_equal(buf, expected, sizeof(expected));
}

/* Encoding a record that breaks a limit is a programmer error and asserts. */
static void test_codec_encode__asserts_on_invalid_record(void **state)
{
    struct tandem_record record;
    uint8_t buf[TDM_RECORD_SIZE_MAX];
    (void)state;

    test_message_init(&record);
    record.message.recipient.size = 0;
    tdm_assert_hook_set(test_assert_hook);
    expect_assert_failure(tdm_codec_encode(&record, buf, sizeof(buf)));
    tdm_assert_hook_set(NULL);
}

/* Every proper prefix of a valid encoding, the empty one included, is
 * rejected as corrupt without touching the output record. */
static void test_codec_decode__every_truncation(void **state)
{
    struct tandem_record records[2];
    (void)state;

    test_message_init(&records[0]);
    test_customer_init(&records[1]);
    for (size_t r = 0; r < 2; r++) {
        size_t size;
        uint8_t *buf = test_encode(&records[r], &size);
        for (size_t length = 0; length < size; length++) {
            assert_int_equal(test_decode_copy(buf, length), TANDEM_ECORRUPT);
        }
        assert_int_equal(test_decode_copy(buf, size), 0);
        test_free(buf);
    }
}

/* A byte after a complete record is corruption. */
static void test_codec_decode__trailing_bytes(void **state)
{
    struct tandem_record record;
    uint8_t buf[TDM_RECORD_SIZE_MAX];
    struct tdm_diag diag;
    (void)state;

    test_customer_init(&record);
    size_t size = tdm_codec_encode(&record, buf, sizeof(buf));
    buf[size] = 0;
    assert_int_equal(tdm_codec_decode(buf, size + 1, &record, &diag), TANDEM_ECORRUPT);
    assert_string_equal(diag.message, "record: 1 trailing bytes");
}

/* A wrong version or type byte is corruption, named in the diag. */
static void test_codec_decode__bad_version_and_type(void **state)
{
    struct tandem_record record;
    uint8_t buf[TDM_RECORD_SIZE_MAX];
    struct tdm_diag diag;
    (void)state;

    test_message_init(&record);
    size_t size = tdm_codec_encode(&record, buf, sizeof(buf));
    buf[0] = TDM_CODEC_VERSION + 1;
    assert_int_equal(tdm_codec_decode(buf, size, &record, &diag), TANDEM_ECORRUPT);
    assert_string_equal(diag.message, "record: unknown version 2");
    buf[0] = 0;
    assert_int_equal(tdm_codec_decode(buf, size, &record, &diag), TANDEM_ECORRUPT);
    buf[0] = TDM_CODEC_VERSION;
    buf[1] = 3;
    assert_int_equal(tdm_codec_decode(buf, size, &record, &diag), TANDEM_ECORRUPT);
    assert_string_equal(diag.message, "record: unknown type 3");
    buf[1] = 0;
    assert_int_equal(tdm_codec_decode(buf, size, &record, &diag), TANDEM_ECORRUPT);
    /* A customer's bytes read as a message cannot line up. */
    buf[1] = TANDEM_RECORD_CUSTOMER;
    assert_int_equal(tdm_codec_decode(buf, size, &record, &diag), TANDEM_ECORRUPT);
}

/* A string whose terminating byte is not 0 is corruption naming the field. */
static void test_codec_decode__missing_terminator(void **state)
{
    struct tandem_record record;
    uint8_t buf[TDM_RECORD_SIZE_MAX];
    struct tdm_diag diag;
    (void)state;

    test_customer_init(&record);
    size_t size = tdm_codec_encode(&record, buf, sizeof(buf));
    buf[2 + 4 + 2 + 3] = 'x'; /* After first_name "Ada". */
    assert_int_equal(tdm_codec_decode(buf, size, &record, &diag), TANDEM_ECORRUPT);
    assert_string_equal(diag.message, "record: first_name: missing terminating 0 byte");
}

/* Lengths and values beyond the documented limits are corruption, even when
 * the bytes are all there. */
static void test_codec_decode__out_of_limit_values(void **state)
{
    uint8_t buf[64];
    struct tandem_record record;
    struct tdm_diag diag;
    (void)state;

    /* A customer whose phone (limit 32) claims 33 bytes, all present. */
    size_t n = 0;
    buf[n++] = TDM_CODEC_VERSION;
    buf[n++] = TANDEM_RECORD_CUSTOMER;
    memset(buf + n, 0, 4 + 4 * 3);
    n += 4 + 4 * 3;
    buf[n++] = 33;
    buf[n++] = 0;
    memset(buf + n, 'p', 33);
    n += 33;
    buf[n++] = 0;
    buf[n++] = 0; /* address "" */
    buf[n++] = 0;
    buf[n++] = 0;
    assert_int_equal(tdm_codec_decode(buf, n, &record, &diag), TANDEM_ECORRUPT);
    assert_string_equal(diag.message, "record: phone: 33 bytes, limit 32");

    /* The same with a phone of 32 bytes decodes. */
    buf[2 + 4 + 12] = 32;
    memmove(buf + 2 + 4 + 12 + 2 + 32, buf + 2 + 4 + 12 + 2 + 33, 4);
    assert_int_equal(tdm_codec_decode(buf, n - 1, &record, &diag), 0);
    assert_int_equal(record.customer.phone.size, 32);
}

/* Each field of an encoded message that can hold an invalid value is caught
 * by decode: time sign, enums, spam score, address family, empty recipient. */
static void test_codec_decode__invalid_message_fields(void **state)
{
    struct {
        size_t offset;
        uint8_t value;
        const char *message;
    } cases[] = {
        {2 + 4 + 7, 0x80, "record: time: 9223372036854775808 out of range"},
        {2 + 20, 0, "record: destination: unknown value 0"},
        {2 + 20, 3, "record: destination: unknown value 3"},
        {2 + 21, 7, "record: classification: unknown value 7"},
        {2 + 25, 0x7F, "record: spam_score: 2139062.143 out of range, limit 1000000.000"},
        {2 + 26, 5, "record: relay_ip: unknown family 5"},
    };
    struct tandem_record record;
    uint8_t buf[TDM_RECORD_SIZE_MAX];
    uint8_t copy[TDM_RECORD_SIZE_MAX];
    struct tdm_diag diag;
    (void)state;

    test_message_init(&record);
    record.message.time_ns = 0;
    record.message.spam_score_milli = 0x7F7F7F;
    size_t size = tdm_codec_encode(&record, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(copy, buf, size);
        copy[cases[i].offset] = cases[i].value;
        assert_int_equal(tdm_codec_decode(copy, size, &record, &diag), TANDEM_ECORRUPT);
        assert_string_equal(diag.message, cases[i].message);
    }

    /* An empty recipient: rebuild the tail with recipient length 0. */
    test_message_init(&record);
    record.message.threat.size = 0;
    size = tdm_codec_encode(&record, buf, sizeof(buf));
    size_t recipient_at = 2 + 26 + 5 + 3;
    size_t recipient_size = record.message.recipient.size;
    buf[recipient_at] = 0;
    buf[recipient_at + 2] = 0;
    memmove(buf + recipient_at + 3, buf + recipient_at + 3 + recipient_size,
            size - (recipient_at + 3 + recipient_size));
    size -= recipient_size;
    assert_int_equal(tdm_codec_decode(buf, size, &record, &diag), TANDEM_ECORRUPT);
    assert_string_equal(diag.message, "record: recipient: empty");
}

/* Flipping any single bit of valid encodings never crashes decode: it is
 * either rejected or decodes to a record that encodes to the flipped bytes. */
static void test_codec_decode__bit_flips(void **state)
{
    static struct test_record tr;
    struct tdm_prng prng;
    (void)state;

    tdm_prng_init(&prng, TEST_SEED + 1);
    for (int round = 0; round < 24; round++) {
        size_t size;
        if (round == 0) {
            test_message_init(&tr.record);
        } else if (round == 1) {
            test_customer_init(&tr.record);
        } else {
            test_random_record(&prng, &tr);
        }
        uint8_t *buf = test_encode(&tr.record, &size);
        for (size_t bit = 0; bit < size * 8; bit++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            (void)test_decode_copy(buf, size);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        test_free(buf);
    }
}

/* Random garbage, with and without a plausible header, never crashes decode. */
static void test_codec_decode__garbage(void **state)
{
    uint8_t buf[512];
    struct tdm_prng prng;
    int accepted = 0;
    (void)state;

    tdm_prng_init(&prng, TEST_SEED + 2);
    for (int round = 0; round < 20000; round++) {
        size_t size = (size_t)tdm_prng_below(&prng, sizeof(buf) + 1);
        for (size_t i = 0; i < size; i++) {
            /* Small values make lengths and enums plausible more often. */
            buf[i] = (uint8_t)tdm_prng_below(&prng, tdm_prng_below(&prng, 2) ? 256 : 8);
        }
        if (size >= 2 && tdm_prng_below(&prng, 2) == 0) {
            buf[0] = TDM_CODEC_VERSION;
            buf[1] = (uint8_t)(1 + tdm_prng_below(&prng, 2));
        }
        accepted += test_decode_copy(buf, size) == 0;
    }
    assert_true(accepted < 20000);
}

/* ------------------------------------------------------------------------
 * Equality.
 * ------------------------------------------------------------------------ */

/* Equal records in different buffers compare equal; a change to any single
 * field, including each byte string, makes them unequal. */
static void test_codec_equal__every_field(void **state)
{
    static char buf[TEST_STRING_SIZE];
    struct tandem_record a;
    struct tandem_record b;
    (void)state;

    test_message_init(&a);
    test_message_init(&b);
    memcpy(buf, "bob@example.com", 16);
    b.message.recipient.data = buf;
    assert_true(tdm_codec_equal(&a, &b));

#define TEST_CHANGE(statement)                                                                     \
    do {                                                                                           \
        test_message_init(&b);                                                                     \
        statement;                                                                                 \
        assert_false(tdm_codec_equal(&a, &b));                                                     \
        assert_false(tdm_codec_equal(&b, &a));                                                     \
    } while (0)
    TEST_CHANGE(b.message.customer_id++);
    TEST_CHANGE(b.message.time_ns++);
    TEST_CHANGE(b.message.size++);
    TEST_CHANGE(b.message.destination = TANDEM_DESTINATION_QUARANTINED);
    TEST_CHANGE(b.message.classification = TANDEM_CLASSIFICATION_CLEAN);
    TEST_CHANGE(b.message.spam_score_milli++);
    TEST_CHANGE(b.message.relay_ip.family = 6);
    TEST_CHANGE(b.message.relay_ip.bytes[3]++);
    TEST_CHANGE(b.type = TANDEM_RECORD_CUSTOMER);
#undef TEST_CHANGE

    for (size_t i = 0; i < TEST_STRING_FIELD_COUNT; i++) {
        const struct test_string_field *field = &test_string_fields[i];
        void (*init)(struct tandem_record *) =
            field->type == TANDEM_RECORD_MESSAGE ? test_message_init : test_customer_init;
        init(&a);
        init(&b);
        struct tandem_bytes *bytes = test_bytes(&b, field);
        memcpy(buf, bytes->data, bytes->size);
        buf[0] ^= 1;
        bytes->data = buf;
        assert_false(tdm_codec_equal(&a, &b));
        bytes->data = test_bytes(&a, field)->data;
        bytes->size--;
        assert_false(tdm_codec_equal(&a, &b));
    }
    test_customer_init(&a);
    test_customer_init(&b);
    assert_true(tdm_codec_equal(&a, &b));
    b.customer.customer_id++;
    assert_false(tdm_codec_equal(&a, &b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_validate__valid_records),
        cmocka_unit_test(test_codec_validate__string_limits),
        cmocka_unit_test(test_codec_validate__null_data),
        cmocka_unit_test(test_codec_validate__recipient_empty),
        cmocka_unit_test(test_codec_validate__unknown_enum_values),
        cmocka_unit_test(test_codec_validate__time),
        cmocka_unit_test(test_codec_validate__size),
        cmocka_unit_test(test_codec_validate__spam_score),
        cmocka_unit_test(test_codec_validate__relay_ip),
        cmocka_unit_test(test_codec_validate__customer_id_any),
        cmocka_unit_test(test_tandem_record_validate__copies_diag),
        cmocka_unit_test(test_codec_encode__round_trip_random),
        cmocka_unit_test(test_codec_size__largest_records),
        cmocka_unit_test(test_codec_encode__layout),
        cmocka_unit_test(test_codec_encode__asserts_on_invalid_record),
        cmocka_unit_test(test_codec_decode__every_truncation),
        cmocka_unit_test(test_codec_decode__trailing_bytes),
        cmocka_unit_test(test_codec_decode__bad_version_and_type),
        cmocka_unit_test(test_codec_decode__missing_terminator),
        cmocka_unit_test(test_codec_decode__out_of_limit_values),
        cmocka_unit_test(test_codec_decode__invalid_message_fields),
        cmocka_unit_test(test_codec_decode__bit_flips),
        cmocka_unit_test(test_codec_decode__garbage),
        cmocka_unit_test(test_codec_equal__every_field),
    };
    tdm_test_heap_install();
    int failed = cmocka_run_group_tests_name("codec", tests, NULL, NULL);
    tdm_test_heap_uninstall();
    return failed;
}
