/* tests/unit/test_jsonl.c: tools/jsonl.c, records <-> JSON Lines (DESIGN "What
 * is stored": field names, _base64 for bytes that are not UTF-8, RFC 3339
 * times, errors that name the field).
 *
 * Method: hand-written lines pin each accepted form and each rejection with
 * its exact message; seeded random records (valid UTF-8 text, arbitrary bytes,
 * NUL bytes) prove that format then parse is byte-exact. The library heap is
 * cmocka's, so every test also proves that parse and format leak nothing. */
#include "tdm_test.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/prng.h"
#include "engine/codec.h"
#include "tools/jsonl.h"
#include "heap.h"

#define TEST_SEED         0x6a736f6e6c01ULL
#define TEST_ROUNDS       2000
#define TEST_LINE_SIZE    8192
#define TEST_STRING_COUNT 6
#define TEST_STRING_SIZE  (TANDEM_SUBJECT_SIZE_MAX + 2)

/* ------------------------------------------------------------------------
 * Fixtures.
 * ------------------------------------------------------------------------ */

/* The keys and raw JSON values of a valid message line, in DESIGN order. */
static const char *const test_message_pairs[][2] = {
    {"type", "\"message\""},
    {"customer_id", "42"},
    {"time", "\"2026-11-28T03:57:02.123456789Z\""},
    {"size", "1234"},
    {"destination", "\"delivered\""},
    {"classification", "\"spam\""},
    {"recipient", "\"bob@example.com\""},
    {"spam_score", "5.3"},
    {"relay_ip", "\"192.0.2.1\""},
};
#define TEST_MESSAGE_PAIR_COUNT (sizeof(test_message_pairs) / sizeof(test_message_pairs[0]))

/* True if key is name or name_base64. */
static bool test_key_matches(const char *key, const char *name)
{
    size_t name_size = strlen(name);
    return key != NULL && strncmp(key, name, name_size) == 0 &&
           (key[name_size] == '\0' || strcmp(key + name_size, "_base64") == 0);
}

/* Write the valid message line with key's value replaced by value (raw JSON),
 * removed when value is NULL, or appended when key is not in the line. A key
 * "<field>_base64" takes the place of "<field>". */
static const char *test_message_line(char *buf, size_t size, const char *key, const char *value)
{
    size_t n = 0;
    bool found = false;

    n += (size_t)snprintf(buf + n, size - n, "{");
    for (size_t i = 0; i < TEST_MESSAGE_PAIR_COUNT; i++) {
        const char *k = test_message_pairs[i][0];
        const char *v = test_message_pairs[i][1];
        if (test_key_matches(key, k)) {
            found = true;
            k = key;
            v = value;
        }
        if (v != NULL) {
            n += (size_t)snprintf(buf + n, size - n, "%s\"%s\":%s", n > 1 ? "," : "", k, v);
        }
    }
    if (!found && key != NULL && value != NULL) {
        n += (size_t)snprintf(buf + n, size - n, ",\"%s\":%s", key, value);
    }
    n += (size_t)snprintf(buf + n, size - n, "}");
    assert_true(n < size);
    return buf;
}

/* A JSON string value of size copies of c. */
static const char *test_json_string(char *buf, size_t size, char c, size_t count)
{
    assert_true(count + 3 <= size);
    buf[0] = '"';
    memset(buf + 1, c, count);
    buf[count + 1] = '"';
    buf[count + 2] = '\0';
    return buf;
}

static int test_parse(const char *line, struct tdm_jsonl_record *out, struct tdm_diag *diag)
{
    memset(diag, 0, sizeof(*diag));
    return tdm_jsonl_parse(line, strlen(line), out, diag);
}

/* Parse a line that must be valid, failing with its diag if it is not. */
static void test_parse_ok(const char *line, struct tdm_jsonl_record *out)
{
    struct tdm_diag diag;
    int rv = test_parse(line, out, &diag);
    if (rv != 0) {
        fail_msg("parse %s: %d %s", line, rv, diag.message);
    }
    assert_non_null(out->storage);
}

/* A line that must be rejected with exactly message. */
static void test_reject(const char *line, const char *message)
{
    struct tdm_jsonl_record out;
    struct tdm_diag diag;
    int rv = test_parse(line, &out, &diag);
    if (rv != TANDEM_EINVALID || strcmp(diag.message, message) != 0) {
        fail_msg("line %s: want \"%s\", got %d \"%s\"", line, message, rv, diag.message);
    }
    assert_null(out.storage);
}

/* A line that must be rejected with a message starting with prefix. */
static void test_reject_prefix(const char *line, const char *prefix)
{
    struct tdm_jsonl_record out;
    struct tdm_diag diag;
    int rv = test_parse(line, &out, &diag);
    if (rv != TANDEM_EINVALID || strncmp(diag.message, prefix, strlen(prefix)) != 0) {
        fail_msg("line %s: want \"%s...\", got %d \"%s\"", line, prefix, rv, diag.message);
    }
    assert_null(out.storage);
}

static void test_reject_message_field(const char *key, const char *value, const char *message)
{
    char line[TEST_LINE_SIZE];
    test_reject(test_message_line(line, sizeof(line), key, value), message);
}

/* Format a record and return the line; the caller frees it with tdm_free(). */
static char *test_format(const struct tandem_record *record, uint64_t lsn)
{
    char *text = NULL;
    size_t size = 0;
    assert_int_equal(tdm_jsonl_format(record, lsn, &text, &size), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), size); /* JSON escapes every NUL byte. */
    return text;
}

/* Parse a message line with key set to value, and format it again. */
static char *test_reformat_message_field(const char *key, const char *value,
                                         struct tdm_jsonl_record *out)
{
    char line[TEST_LINE_SIZE];
    test_parse_ok(test_message_line(line, sizeof(line), key, value), out);
    return test_format(&out->record, 0);
}

static void test_set_bytes(struct tandem_bytes *bytes, const char *data, size_t size)
{
    bytes->data = data;
    bytes->size = size;
}

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
    test_set_bytes(&m->recipient, "bob@example.com", 15);
    m->spam_score_milli = 5300;
    test_set_bytes(&m->message_id, "<a@b>", 5);
    test_set_bytes(&m->sender, "alice@example.org", 17);
    m->relay_ip.family = 4;
    m->relay_ip.bytes[0] = 192;
    m->relay_ip.bytes[2] = 2;
    m->relay_ip.bytes[3] = 1;
    test_set_bytes(&m->subject, "Hello", 5);
}

/* ------------------------------------------------------------------------
 * Random records.
 * ------------------------------------------------------------------------ */

struct test_record {
    struct tandem_record record;
    char strings[TEST_STRING_COUNT][TEST_STRING_SIZE];
};

/* Append one random code point as UTF-8 if it fits in size_max; returns the
 * new size. Control characters, quotes, backslashes and NUL are frequent. */
static size_t test_random_code_point(struct tdm_prng *prng, char *buf, size_t size, size_t size_max)
{
    static const char ascii_specials[] = {'\0', '"', '\\', '\n', '\t', '\x1f', '/', '\x7f'};
    uint32_t cp;
    switch (tdm_prng_below(prng, 5)) {
    case 0:
        cp = (uint8_t)ascii_specials[tdm_prng_below(prng, sizeof(ascii_specials))];
        break;
    case 1:
        cp = 0x20 + (uint32_t)tdm_prng_below(prng, 0x5F);
        break;
    case 2:
        cp = 0x80 + (uint32_t)tdm_prng_below(prng, 0x800 - 0x80);
        break;
    case 3:
        cp = 0x800 + (uint32_t)tdm_prng_below(prng, 0x10000 - 0x800 - 0x800);
        cp = cp >= 0xD800 ? cp + 0x800 : cp; /* Skip the surrogates. */
        break;
    default:
        cp = 0x10000 + (uint32_t)tdm_prng_below(prng, 0x110000 - 0x10000);
        break;
    }
    size_t length = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (size + length > size_max) {
        return size;
    }
    if (length == 1) {
        buf[size] = (char)cp;
        return size + 1;
    }
    static const uint8_t leads[] = {0, 0, 0xC0, 0xE0, 0xF0};
    for (size_t i = length - 1; i > 0; i--) {
        buf[size + i] = (char)(0x80 | (cp & 0x3F));
        cp >>= 6;
    }
    buf[size] = (char)(leads[length] | cp);
    return size + length;
}

/* Random text (valid UTF-8) or random bytes, of size_min..size_max bytes. */
static void test_random_string(struct tdm_prng *prng, struct tandem_bytes *bytes, char *buf,
                               size_t size_min, size_t size_max)
{
    size_t target = size_min + (size_t)tdm_prng_below(prng, size_max - size_min + 1);
    size_t size = 0;
    if (tdm_prng_below(prng, 8) == 0) {
        target = size_max;
    }
    if (tdm_prng_below(prng, 3) == 0) {
        for (size = 0; size < target; size++) {
            buf[size] = (char)tdm_prng_below(prng, 256);
        }
    } else {
        for (int tries = 0; size < target && tries < 4000; tries++) {
            size = test_random_code_point(prng, buf, size, target);
        }
        while (size < size_min) {
            buf[size++] = 'a';
        }
    }
    bytes->data = buf;
    bytes->size = size;
}

static void test_random_record(struct tdm_prng *prng, struct test_record *tr)
{
    struct tandem_record *r = &tr->record;
    memset(r, 0, sizeof(*r));
    if (tdm_prng_below(prng, 2) == 0) {
        r->type = TANDEM_RECORD_CUSTOMER;
        r->customer.customer_id = (uint32_t)tdm_prng_next(prng);
        test_random_string(prng, &r->customer.first_name, tr->strings[0], 0, 128);
        test_random_string(prng, &r->customer.last_name, tr->strings[1], 0, 128);
        test_random_string(prng, &r->customer.email, tr->strings[2], 0, 320);
        test_random_string(prng, &r->customer.username, tr->strings[3], 0, 128);
        test_random_string(prng, &r->customer.phone, tr->strings[4], 0, 32);
        test_random_string(prng, &r->customer.address, tr->strings[5], 0, 512);
        return;
    }
    struct tandem_message *m = &r->message;
    r->type = TANDEM_RECORD_MESSAGE;
    m->customer_id = (uint32_t)tdm_prng_next(prng);
    m->time_ns = (int64_t)(tdm_prng_next(prng) >> 1);
    if (tdm_prng_below(prng, 4) == 0) {
        m->time_ns -= m->time_ns % 1000000000; /* Whole seconds: no fraction. */
    }
    m->size = tdm_prng_below(prng, TANDEM_MESSAGE_SIZE_MAX + 1);
    m->destination = (enum tandem_destination)(1 + tdm_prng_below(prng, 2));
    m->classification = (enum tandem_classification)(1 + tdm_prng_below(prng, 6));
    m->spam_score_milli = (int32_t)((int64_t)tdm_prng_below(prng, 2000000001) - 1000000000);
    m->relay_ip.family = tdm_prng_below(prng, 2) == 0 ? 4 : 6;
    for (size_t i = 0; i < (m->relay_ip.family == 4 ? 4u : 16u); i++) {
        m->relay_ip.bytes[i] = (uint8_t)tdm_prng_next(prng);
    }
    test_random_string(prng, &m->threat, tr->strings[0], 0, 255);
    test_random_string(prng, &m->recipient, tr->strings[1], 1, 320);
    test_random_string(prng, &m->message_id, tr->strings[2], 0, 998);
    test_random_string(prng, &m->sender, tr->strings[3], 0, 320);
    test_random_string(prng, &m->subject, tr->strings[4], 0, 998);
}

/* ------------------------------------------------------------------------
 * Round trips and output form.
 * ------------------------------------------------------------------------ */

/* Random records (text, raw bytes, NUL bytes, every enum, IPv4 and IPv6, any
 * time and score) come back equal from format then parse, and formatting the
 * parsed record gives the same line again. */
static void test_jsonl_format__round_trip_random(void **state)
{
    static struct test_record tr;
    struct tdm_prng prng;
    (void)state;

    tdm_prng_init(&prng, TEST_SEED);
    for (int round = 0; round < TEST_ROUNDS; round++) {
        struct tdm_jsonl_record parsed;
        struct tdm_diag diag;
        uint64_t lsn = tdm_prng_below(&prng, 2) == 0 ? 0 : 1 + tdm_prng_below(&prng, INT64_MAX);
        test_random_record(&prng, &tr);
        assert_int_equal(tdm_codec_validate(&tr.record, NULL), 0);
        char *line = test_format(&tr.record, lsn);
        int rv = tdm_jsonl_parse(line, strlen(line), &parsed, &diag);
        if (rv != 0) {
            fail_msg("round %d: %s: %s", round, diag.message, line);
        }
        assert_true(tdm_codec_equal(&tr.record, &parsed.record));
        char *again = test_format(&parsed.record, lsn);
        assert_string_equal(line, again);
        tdm_free(again);
        tdm_free(line);
        tdm_jsonl_record_free(&parsed);
    }
}

/* A message comes out compact, with type, lsn, then the DESIGN's field
 * order, every field present, optional empty strings as "". */
static void test_jsonl_format__message_field_order(void **state)
{
    struct tandem_record record;
    (void)state;

    test_message_init(&record);
    char *line = test_format(&record, 7);
    assert_string_equal(line,
                        "{\"type\":\"message\",\"lsn\":7,\"customer_id\":42,"
                        "\"time\":\"2026-11-28T03:57:02.123456789Z\",\"size\":1234,"
                        "\"destination\":\"delivered\",\"classification\":\"spam\","
                        "\"threat\":\"\",\"recipient\":\"bob@example.com\",\"spam_score\":5.3,"
                        "\"message_id\":\"<a@b>\",\"sender\":\"alice@example.org\","
                        "\"relay_ip\":\"192.0.2.1\",\"subject\":\"Hello\"}");
    tdm_free(line);
}

/* A customer comes out in the DESIGN's order; lsn 0 leaves "lsn" out. */
static void test_jsonl_format__customer_without_lsn(void **state)
{
    struct tandem_record record;
    (void)state;

    memset(&record, 0, sizeof(record));
    record.type = TANDEM_RECORD_CUSTOMER;
    record.customer.customer_id = 4294967295u;
    test_set_bytes(&record.customer.first_name, "Ada", 3);
    test_set_bytes(&record.customer.address, "1 Main St\nSpringfield", 21);
    char *line = test_format(&record, 0);
    assert_string_equal(line, "{\"type\":\"customer\",\"customer_id\":4294967295,"
                              "\"first_name\":\"Ada\",\"last_name\":\"\",\"email\":\"\","
                              "\"username\":\"\",\"phone\":\"\","
                              "\"address\":\"1 Main St\\nSpringfield\"}");
    tdm_free(line);
}

/* A subject of raw bytes that are not UTF-8 arrives as subject_base64, is
 * stored byte for byte and leaves as subject_base64 with the same text. */
static void test_jsonl_parse__subject_base64_byte_exact(void **state)
{
    static const char raw[] = "\xff\xfe Caf\xe9";
    struct tdm_jsonl_record parsed;
    (void)state;

    char *line = test_reformat_message_field("subject_base64", "\"//4gQ2Fm6Q==\"", &parsed);
    assert_int_equal(parsed.record.message.subject.size, sizeof(raw) - 1);
    assert_memory_equal(parsed.record.message.subject.data, raw, sizeof(raw) - 1);
    assert_int_equal(parsed.record.message.subject.data[sizeof(raw) - 1], '\0');
    assert_non_null(strstr(line, ",\"subject_base64\":\"//4gQ2Fm6Q==\"}"));
    assert_null(strstr(line, "\"subject\""));
    tdm_free(line);
    tdm_jsonl_record_free(&parsed);
}

/* The escape \u00e9 is stored as the UTF-8 bytes C3 A9 and written back as
 * the literal character, not as an escape. */
static void test_jsonl_parse__unicode_escape_stored_as_utf8(void **state)
{
    struct tdm_jsonl_record parsed;
    (void)state;

    char *line = test_reformat_message_field("subject", "\"Caf\\u00e9 \\ud83d\\ude00\"", &parsed);
    assert_int_equal(parsed.record.message.subject.size, 10);
    assert_memory_equal(parsed.record.message.subject.data, "Caf\xc3\xa9 \xf0\x9f\x98\x80", 10);
    assert_non_null(strstr(line, ",\"subject\":\"Caf\xc3\xa9 \xf0\x9f\x98\x80\"}"));
    tdm_free(line);
    tdm_jsonl_record_free(&parsed);
}

/* Valid UTF-8 given as base64 is written back in the plain form: output uses
 * _base64 exactly when the bytes are not UTF-8. */
static void test_jsonl_format__base64_only_when_not_utf8(void **state)
{
    struct tdm_jsonl_record parsed;
    (void)state;

    char *line = test_reformat_message_field("subject_base64", "\"Q2Fmw6k=\"", &parsed);
    assert_non_null(strstr(line, ",\"subject\":\"Caf\xc3\xa9\"}"));
    tdm_free(line);
    tdm_jsonl_record_free(&parsed);
}

/* A NUL byte is valid UTF-8: it travels in the plain form as \u0000, both
 * ways, and the parsed string keeps all its bytes. */
static void test_jsonl_parse__nul_byte(void **state)
{
    struct tdm_jsonl_record parsed;
    (void)state;

    char *line = test_reformat_message_field("subject", "\"a\\u0000b\"", &parsed);
    assert_int_equal(parsed.record.message.subject.size, 3);
    assert_memory_equal(parsed.record.message.subject.data, "a\0b", 4);
    assert_non_null(strstr(line, ",\"subject\":\"a\\u0000b\"}"));
    tdm_free(line);
    tdm_jsonl_record_free(&parsed);
}

/* The strict UTF-8 check sends overlong forms, surrogates, code points above
 * U+10FFFF, truncated sequences and stray continuation bytes to _base64, and
 * keeps the largest valid forms plain. */
static void test_jsonl_format__utf8_edge_cases(void **state)
{
    static const struct {
        const char *bytes;
        bool valid;
    } cases[] = {
        {"\xc0\xaf", false},
        {"\xc1\xbf", false},
        {"\xe0\x80\xaf", false},
        {"\xf0\x80\x80\xaf", false},
        {"\xed\xa0\x80", false},
        {"\xed\xbf\xbf", false},
        {"\xf4\x90\x80\x80", false},
        {"\xf5\x80\x80\x80", false},
        {"\xe2\x82", false},
        {"\x80", false},
        {"\xff", false},
        {"a\xc3", false},
        {"\xc2\x80", true},
        {"\xdf\xbf", true},
        {"\xe0\xa0\x80", true},
        {"\xed\x9f\xbf", true},
        {"\xee\x80\x80", true},
        {"\xef\xbf\xbf", true},
        {"\xf0\x90\x80\x80", true},
        {"\xf4\x8f\xbf\xbf", true},
        {"\x7f", true},
    };
    struct tandem_record record;
    struct tdm_jsonl_record parsed;
    struct tdm_diag diag;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        test_message_init(&record);
        test_set_bytes(&record.message.subject, cases[i].bytes, strlen(cases[i].bytes));
        char *line = test_format(&record, 0);
        bool plain = strstr(line, "\"subject\":") != NULL;
        bool base64 = strstr(line, "\"subject_base64\":") != NULL;
        if (plain != cases[i].valid || base64 == cases[i].valid) {
            fail_msg("case %zu: %s", i, line);
        }
        assert_int_equal(tdm_jsonl_parse(line, strlen(line), &parsed, &diag), 0);
        assert_true(tdm_codec_equal(&record, &parsed.record));
        tdm_jsonl_record_free(&parsed);
        tdm_free(line);
    }
}

/* A minimal message (required fields only) and a customer with only its id
 * parse, with absent strings empty and every string NUL-terminated; a
 * trailing newline and an "lsn" from earlier output are accepted. */
static void test_jsonl_parse__minimal_records(void **state)
{
    char line[TEST_LINE_SIZE];
    struct tdm_jsonl_record parsed;
    (void)state;

    test_parse_ok(test_message_line(line, sizeof(line), NULL, NULL), &parsed);
    const struct tandem_message *m = &parsed.record.message;
    assert_int_equal(parsed.record.type, TANDEM_RECORD_MESSAGE);
    assert_int_equal(m->customer_id, 42);
    assert_int_equal(m->time_ns, 1795838222123456789LL);
    assert_int_equal(m->size, 1234);
    assert_int_equal(m->destination, TANDEM_DESTINATION_DELIVERED);
    assert_int_equal(m->classification, TANDEM_CLASSIFICATION_SPAM);
    assert_int_equal(m->spam_score_milli, 5300);
    assert_int_equal(m->relay_ip.family, 4);
    assert_memory_equal(m->relay_ip.bytes, "\xc0\x00\x02\x01\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    assert_string_equal(m->recipient.data, "bob@example.com");
    assert_int_equal(m->threat.size, 0);
    assert_int_equal(m->threat.data[0], '\0');
    assert_int_equal(m->subject.size, 0);
    tdm_jsonl_record_free(&parsed);
    assert_null(parsed.storage);

    test_parse_ok("{\"customer_id\":7,\"type\":\"customer\",\"lsn\":99}\r\n", &parsed);
    assert_int_equal(parsed.record.type, TANDEM_RECORD_CUSTOMER);
    assert_int_equal(parsed.record.customer.customer_id, 7);
    assert_int_equal(parsed.record.customer.address.size, 0);
    assert_string_equal(parsed.record.customer.email.data, "");
    tdm_jsonl_record_free(&parsed);
}

/* Each destination and classification name parses to its enum value and is
 * written back with the same name. */
static void test_jsonl_parse__every_enum_value(void **state)
{
    static const char *const destinations[] = {"delivered", "quarantined"};
    static const char *const classifications[] = {"clean",       "spam",       "virus",
                                                  "banned_file", "bad_header", "oversized"};
    char value[64];
    char expected[128];
    struct tdm_jsonl_record parsed;
    (void)state;

    for (int i = 0; i < 2; i++) {
        (void)snprintf(value, sizeof(value), "\"%s\"", destinations[i]);
        char *line = test_reformat_message_field("destination", value, &parsed);
        assert_int_equal(parsed.record.message.destination, i + 1);
        (void)snprintf(expected, sizeof(expected), "\"destination\":%s,", value);
        assert_non_null(strstr(line, expected));
        tdm_free(line);
        tdm_jsonl_record_free(&parsed);
    }
    for (int i = 0; i < 6; i++) {
        (void)snprintf(value, sizeof(value), "\"%s\"", classifications[i]);
        char *line = test_reformat_message_field("classification", value, &parsed);
        assert_int_equal(parsed.record.message.classification, i + 1);
        (void)snprintf(expected, sizeof(expected), "\"classification\":%s,", value);
        assert_non_null(strstr(line, expected));
        tdm_free(line);
        tdm_jsonl_record_free(&parsed);
    }
}

/* ------------------------------------------------------------------------
 * spam_score.
 * ------------------------------------------------------------------------ */

/* Numbers with at most three decimals, integers and exponent forms included,
 * parse to the exact milli value; output is the shortest real form. */
static void test_jsonl_parse__spam_score_forms(void **state)
{
    static const struct {
        const char *input;
        int32_t milli;
        const char *output;
    } cases[] = {
        {"5.3", 5300, "5.3"},
        {"5.300", 5300, "5.3"},
        {"-1.25", -1250, "-1.25"},
        {"0", 0, "0.0"},
        {"-0.0", 0, "0.0"},
        {"7", 7000, "7.0"},
        {"0.001", 1, "0.001"},
        {"-0.001", -1, "-0.001"},
        {"5e0", 5000, "5.0"},
        {"1.5e2", 150000, "150.0"},
        {"25E-3", 25, "0.025"},
        {"999999.999", 999999999, "999999.999"},
        {"1000000", 1000000000, "1000000.0"},
        {"-1000000.000", -1000000000, "-1000000.0"},
        {"123456.789", 123456789, "123456.789"},
    };
    char expected[64];
    struct tdm_jsonl_record parsed;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = test_reformat_message_field("spam_score", cases[i].input, &parsed);
        assert_int_equal(parsed.record.message.spam_score_milli, cases[i].milli);
        (void)snprintf(expected, sizeof(expected), "\"spam_score\":%s,", cases[i].output);
        if (strstr(line, expected) == NULL) {
            fail_msg("%s: want %s in %s", cases[i].input, expected, line);
        }
        tdm_free(line);
        tdm_jsonl_record_free(&parsed);
    }
}

/* Every milli value in a wide sweep is written as a number that reads back to
 * the same value. */
static void test_jsonl_format__spam_score_sweep(void **state)
{
    struct tandem_record record;
    struct tdm_jsonl_record parsed;
    struct tdm_diag diag;
    struct tdm_prng prng;
    (void)state;

    tdm_prng_init(&prng, TEST_SEED + 1);
    test_message_init(&record);
    for (int i = 0; i < 20000; i++) {
        int32_t milli = i < 10000
                            ? i - 5000
                            : (int32_t)((int64_t)tdm_prng_below(&prng, 2000000001) - 1000000000);
        record.message.spam_score_milli = milli;
        char *line = test_format(&record, 0);
        assert_int_equal(tdm_jsonl_parse(line, strlen(line), &parsed, &diag), 0);
        assert_int_equal(parsed.record.message.spam_score_milli, milli);
        tdm_jsonl_record_free(&parsed);
        tdm_free(line);
    }
}

/* More than three decimals, values out of range and non-numbers are
 * rejected, naming spam_score. */
static void test_jsonl_parse__spam_score_rejected(void **state)
{
    char line[TEST_LINE_SIZE];
    (void)state;

    test_reject_prefix(test_message_line(line, sizeof(line), "spam_score", "5.3001"),
                       "spam_score: 5.3001 has more than 3 decimal places");
    test_reject_message_field("spam_score", "0.0005",
                              "spam_score: 0.0005 has more than 3 decimal places");
    test_reject_message_field("spam_score", "1.0000000000001",
                              "spam_score: 1.0000000000001 has more than 3 decimal places");
    test_reject_message_field("spam_score", "1000000.001",
                              "spam_score: 1000000.001 out of range, limit 1000000.000");
    test_reject_message_field("spam_score", "-1000001",
                              "spam_score: -1000001.000 out of range, limit 1000000.000");
    test_reject_message_field("spam_score", "1e300",
                              "spam_score: 1e+300 out of range, limit 1000000.000");
    test_reject_message_field("spam_score", "-9223372036854775807",
                              "spam_score: -9223372036854775807 out of range, limit "
                              "1000000.000");
    test_reject_message_field("spam_score", "\"5.3\"", "spam_score: not a number");
    test_reject_message_field("spam_score", "null", "spam_score: not a number");
    test_reject_message_field("spam_score", "true", "spam_score: not a number");
}

/* ------------------------------------------------------------------------
 * Rejections.
 * ------------------------------------------------------------------------ */

/* Every string field, in either form, is accepted at its limit and rejected
 * one byte over it with a diag naming the field and the limit. */
static void test_jsonl_parse__string_limits(void **state)
{
    static const struct {
        const char *name;
        size_t limit;
        bool message;
    } fields[] = {
        {"threat", 255, true},     {"recipient", 320, true}, {"message_id", 998, true},
        {"sender", 320, true},     {"subject", 998, true},   {"first_name", 128, false},
        {"last_name", 128, false}, {"email", 320, false},    {"username", 128, false},
        {"phone", 32, false},      {"address", 512, false},
    };
    static char value[TEST_LINE_SIZE];
    static char line[TEST_LINE_SIZE];
    char key[64];
    char expected[TDM_DIAG_SIZE];
    struct tdm_jsonl_record parsed;
    (void)state;

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        for (size_t over = 0; over <= 1; over++) {
            size_t size = fields[i].limit + over;
            for (int base64 = 0; base64 <= 1; base64++) {
                /* Base64 of 4n 'Q's is 3n bytes, so only sizes that are multiples of
                 * 3 are tried in that form. */
                if (base64 && size % 3 != 0) {
                    continue;
                }
                test_json_string(value, sizeof(value), base64 ? 'Q' : 'x',
                                 base64 ? size / 3 * 4 : size);
                (void)snprintf(key, sizeof(key), "%s%s", fields[i].name, base64 ? "_base64" : "");
                if (fields[i].message) {
                    test_message_line(line, sizeof(line), key, value);
                } else {
                    (void)snprintf(line, sizeof(line),
                                   "{\"type\":\"customer\",\"customer_id\":1,"
                                   "\"%s\":%s}",
                                   key, value);
                }
                if (over == 0) {
                    test_parse_ok(line, &parsed);
                    tdm_jsonl_record_free(&parsed);
                    continue;
                }
                (void)snprintf(expected, sizeof(expected), "%s: %zu bytes, limit %zu",
                               fields[i].name, size, fields[i].limit);
                test_reject(line, expected);
            }
        }
    }
}

/* Unknown type values, a missing or non-string type, and unknown enum names
 * are rejected, naming the field and quoting the value. */
static void test_jsonl_parse__unknown_enum_values(void **state)
{
    (void)state;

    test_reject_message_field("type", "\"bogus\"", "type: unknown value \"bogus\"");
    test_reject_message_field("type", "\"Message\"", "type: unknown value \"Message\"");
    test_reject_message_field("type", "1", "type: not a string");
    test_reject_message_field("type", NULL, "type: missing");
    test_reject_message_field("destination", "\"bounced\"",
                              "destination: unknown value \"bounced\"");
    test_reject_message_field("destination", "1", "destination: not a string");
    test_reject_message_field("classification", "\"ham\"", "classification: unknown value \"ham\"");
    test_reject_message_field("classification", "\"clean \"",
                              "classification: unknown value \"clean \"");
    test_reject_message_field("classification", "\"clean\\u0000\"",
                              "classification: unknown value \"clean?\"");
    test_reject_message_field("classification", "\"cleancleancleancleancleancleancleanclean\"",
                              "classification: unknown value "
                              "\"cleancleancleancleancleancleancleanc...\"");
}

/* Each required field of a message, and customer_id of a customer, is
 * reported missing by name. */
static void test_jsonl_parse__missing_fields(void **state)
{
    static const char *const required[] = {"customer_id",    "time",      "size",
                                           "destination",    "recipient", "spam_score",
                                           "classification", "relay_ip"};
    char expected[64];
    (void)state;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        (void)snprintf(expected, sizeof(expected), "%s: missing", required[i]);
        test_reject_message_field(required[i], NULL, expected);
    }
    test_reject("{\"type\":\"customer\"}", "customer_id: missing");
    test_reject("{}", "type: missing");
}

/* Unknown keys are rejected by name: a stranger, a _base64 form of a field
 * that is not a byte string, and a message field in a customer. */
static void test_jsonl_parse__unknown_fields(void **state)
{
    (void)state;

    test_reject_message_field("colour", "\"red\"", "colour: unknown field");
    test_reject_message_field("time_base64", "\"AAAA\"", "time_base64: unknown field");
    test_reject_message_field("relay_ip_base64", "\"AAAA\"", "relay_ip_base64: unknown field");
    test_reject("{\"type\":\"customer\",\"customer_id\":1,\"type_base64\":\"AAAA\"}",
                "type_base64: unknown field");
    test_reject_message_field("subject_base6", "\"AAAA\"", "subject_base6: unknown field");
    test_reject_message_field("Subject", "\"x\"", "Subject: unknown field");
    test_reject_message_field("first_name", "\"Ada\"", "first_name: unknown field");
    test_reject("{\"type\":\"customer\",\"customer_id\":1,\"recipient\":\"a@b\"}",
                "recipient: unknown field");
    test_reject_message_field("lsn", "0", "lsn: not a positive integer");
    test_reject_message_field("lsn", "\"5\"", "lsn: not a positive integer");
}

/* Bad base64 is rejected naming <field>_base64: wrong length, bad characters,
 * misplaced padding, non-zero padding bits and whitespace. */
static void test_jsonl_parse__bad_base64(void **state)
{
    (void)state;

    test_reject_message_field("subject_base64", "\"abc\"",
                              "subject_base64: 3 characters, not a multiple of 4");
    test_reject_message_field("subject_base64", "\"QQ==\\n\"",
                              "subject_base64: 5 characters, not a multiple of 4");
    test_reject_message_field("subject_base64", "\"ab!d\"",
                              "subject_base64: invalid character at offset 2");
    test_reject_message_field("subject_base64", "\"QQ=A\"",
                              "subject_base64: invalid character at offset 2");
    test_reject_message_field("subject_base64", "\"====\"",
                              "subject_base64: invalid character at offset 0");
    test_reject_message_field("subject_base64", "\"QQ==QQ==\"",
                              "subject_base64: invalid character at offset 2");
    test_reject_message_field("subject_base64", "\" QQ=\"",
                              "subject_base64: invalid character at offset 0");
    test_reject_message_field("subject_base64", "\"Q-_A\"",
                              "subject_base64: invalid character at offset 1");
    test_reject_message_field("subject_base64", "\"QR==\"",
                              "subject_base64: not canonical (non-zero padding bits)");
    test_reject_message_field("subject_base64", "\"QUJ=\"",
                              "subject_base64: not canonical (non-zero padding bits)");
    test_reject_message_field("subject_base64", "5", "subject_base64: not a string");
    test_reject_message_field("recipient_base64", "null", "recipient_base64: not a string");
    test_reject_message_field("subject", "5", "subject: not a string");
}

/* Empty base64 is the empty string; giving a field in both forms is an error
 * naming the field. */
static void test_jsonl_parse__both_forms(void **state)
{
    char line[TEST_LINE_SIZE];
    struct tdm_jsonl_record parsed;
    (void)state;

    test_parse_ok(test_message_line(line, sizeof(line), "subject_base64", "\"\""), &parsed);
    assert_int_equal(parsed.record.message.subject.size, 0);
    tdm_jsonl_record_free(&parsed);
    test_reject(
        "{\"type\":\"customer\",\"customer_id\":1,\"phone\":\"1\",\"phone_base64\":\"MQ==\"}",
        "phone: both phone and phone_base64 given");
    test_reject("{\"type\":\"customer\",\"customer_id\":1,\"email_base64\":\"\",\"email\":\"\"}",
                "email: both email and email_base64 given");
    test_reject("{\"type\":\"customer\",\"customer_id\":1,\"address_base64\":\"YUBi\","
                "\"address\":\"a@b\"}",
                "address: both address and address_base64 given");
}

/* customer_id and size accept the integers of their ranges and reject
 * negatives, reals, strings and values beyond the limit. */
static void test_jsonl_parse__integer_fields(void **state)
{
    char line[TEST_LINE_SIZE];
    struct tdm_jsonl_record parsed;
    (void)state;

    test_parse_ok(test_message_line(line, sizeof(line), "customer_id", "4294967295"), &parsed);
    assert_int_equal(parsed.record.message.customer_id, 4294967295u);
    tdm_jsonl_record_free(&parsed);
    test_parse_ok(test_message_line(line, sizeof(line), "size", "1099511627776"), &parsed);
    assert_int_equal(parsed.record.message.size, TANDEM_MESSAGE_SIZE_MAX);
    tdm_jsonl_record_free(&parsed);
    test_parse_ok(test_message_line(line, sizeof(line), "size", "0"), &parsed);
    tdm_jsonl_record_free(&parsed);

    test_reject_message_field("customer_id", "4294967296",
                              "customer_id: 4294967296 out of range, limit 4294967295");
    test_reject_message_field("customer_id", "-1", "customer_id: -1 is negative");
    test_reject_message_field("customer_id", "1.0", "customer_id: not an integer");
    test_reject_message_field("customer_id", "\"42\"", "customer_id: not an integer");
    test_reject_message_field("size", "1099511627777",
                              "size: 1099511627777 bytes, limit 1099511627776");
    test_reject_message_field("size", "-5", "size: -5 is negative");
    test_reject_message_field("size", "1e3", "size: not an integer");
    test_reject_prefix(test_message_line(line, sizeof(line), "size", "99999999999999999999"),
                       "invalid JSON");
}

/* An empty recipient is rejected like any other broken limit. */
static void test_jsonl_parse__recipient_empty(void **state)
{
    (void)state;
    test_reject_message_field("recipient", "\"\"", "recipient: empty");
    test_reject_message_field("recipient_base64", "\"\"", "recipient: empty");
}

/* relay_ip accepts IPv4 and IPv6 text (kept as given: an IPv4-mapped IPv6
 * address stays IPv6) and is written back in canonical text. */
static void test_jsonl_parse__relay_ip(void **state)
{
    static const struct {
        const char *input;
        uint8_t family;
        const char *output;
    } cases[] = {
        {"\"192.0.2.1\"", 4, "\"192.0.2.1\""},
        {"\"0.0.0.0\"", 4, "\"0.0.0.0\""},
        {"\"255.255.255.255\"", 4, "\"255.255.255.255\""},
        {"\"2001:db8::1\"", 6, "\"2001:db8::1\""},
        {"\"2001:0DB8:0:0:0:0:0:1\"", 6, "\"2001:db8::1\""},
        {"\"::\"", 6, "\"::\""},
        {"\"::ffff:192.0.2.1\"", 6, "\"::ffff:192.0.2.1\""},
        {"\"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255\"", 6,
         "\"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\""},
    };
    char expected[128];
    struct tdm_jsonl_record parsed;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = test_reformat_message_field("relay_ip", cases[i].input, &parsed);
        assert_int_equal(parsed.record.message.relay_ip.family, cases[i].family);
        (void)snprintf(expected, sizeof(expected), "\"relay_ip\":%s,", cases[i].output);
        if (strstr(line, expected) == NULL) {
            fail_msg("%s: want %s in %s", cases[i].input, expected, line);
        }
        tdm_free(line);
        tdm_jsonl_record_free(&parsed);
    }
}

/* Text that inet_pton() does not take as IPv4 or IPv6 is rejected, naming
 * relay_ip. */
static void test_jsonl_parse__bad_relay_ip(void **state)
{
    static const char *const bad[] = {
        "\"192.0.2\"",
        "\"192.0.2.256\"",
        "\"192.0.2.1 \"",
        "\" 192.0.2.1\"",
        "\"2001:db8::g\"",
        "\"1:2:3:4:5:6:7:8:9\"",
        "\"fe80::1%eth0\"",
        "\"\"",
        "\"192.0.2.1\\u0000\"",
        "\"localhost\"",
        "\"2001:db8::1/64\"",
        "\"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd\"",
    };
    char line[TEST_LINE_SIZE];
    struct tdm_jsonl_record parsed;
    struct tdm_diag diag;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        test_message_line(line, sizeof(line), "relay_ip", bad[i]);
        assert_int_equal(test_parse(line, &parsed, &diag), TANDEM_EINVALID);
        if (strncmp(diag.message, "relay_ip: ", 10) != 0 ||
            strstr(diag.message, "is not an IPv4 or IPv6 address") == NULL) {
            fail_msg("%s: %s", bad[i], diag.message);
        }
    }
    test_reject_message_field("relay_ip", "3221225985", "relay_ip: not a string");
}

/* Lines that are not one JSON object are rejected: bad JSON, another JSON
 * type, two objects, duplicate keys, raw invalid UTF-8 and lone surrogates. */
static void test_jsonl_parse__not_an_object(void **state)
{
    (void)state;

    test_reject_prefix("", "invalid JSON");
    test_reject_prefix("not json", "invalid JSON");
    test_reject_prefix("{\"type\":\"customer\",\"customer_id\":1", "invalid JSON");
    test_reject_prefix("{\"type\":\"customer\",\"customer_id\":1} {}", "invalid JSON");
    test_reject_prefix("{\"type\":\"customer\",\"customer_id\":1,\"customer_id\":2}",
                       "invalid JSON");
    test_reject_prefix("{\"type\":\"customer\",\"customer_id\":1,\"phone\":\"\xff\"}",
                       "invalid JSON");
    test_reject_prefix("{\"type\":\"customer\",\"customer_id\":1,\"phone\":\"\\ud800\"}",
                       "invalid JSON");
    test_reject("[1, 2]", "not a JSON object");
}

/* ------------------------------------------------------------------------
 * Time.
 * ------------------------------------------------------------------------ */

/* RFC 3339 forms parse to the right instant: fractions of 1 to 9 digits,
 * lowercase t and z, numeric offsets converted to UTC, both ends of range. */
static void test_tdm_time_parse__valid(void **state)
{
    static const struct {
        const char *text;
        int64_t time_ns;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.000000001Z", 1},
        {"1970-01-01T00:00:01.5Z", 1500000000},
        {"2026-11-28T03:57:02.123456789Z", 1795838222123456789LL},
        {"2026-11-28t03:57:02.123456789z", 1795838222123456789LL},
        {"2026-11-28T03:57:02Z", 1795838222000000000LL},
        {"2026-11-28T03:57:02.1Z", 1795838222100000000LL},
        {"2026-11-28T03:57:02.12Z", 1795838222120000000LL},
        {"2026-11-28T03:57:02.000Z", 1795838222000000000LL},
        {"2026-11-28T04:57:02.5+01:00", 1795838222500000000LL},
        {"2026-11-27T23:27:02-04:30", 1795838222000000000LL},
        {"2026-11-28T03:57:02-00:00", 1795838222000000000LL},
        {"2026-11-28T03:57:02+00:00", 1795838222000000000LL},
        {"2000-02-29T00:00:00Z", 951782400000000000LL},
        {"1970-01-01T00:30:00+00:30", 0},
        {"1969-12-31T23:00:00-01:00", 0},
        {"2262-04-11T23:47:16.854775807Z", INT64_MAX},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t time_ns = -1;
        int rv = tdm_time_parse(cases[i].text, strlen(cases[i].text), &time_ns);
        if (rv != 0 || time_ns != cases[i].time_ns) {
            fail_msg("%s: rv %d, %lld", cases[i].text, rv, (long long)time_ns);
        }
    }
}

/* Anything else is rejected, and the output is left alone. */
static void test_tdm_time_parse__invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "2026-11-28",
        "2026-11-28T03:57:02",
        "2026-11-28 03:57:02Z",
        "2026-11-28T03:57Z",
        "26-11-28T03:57:02Z",
        "+2026-11-28T03:57:02Z",
        "2026-1-28T03:57:02Z",
        "2026-11-28T03:57:02.Z",
        "2026-11-28T03:57:02.1234567891Z",
        "2026-11-28T03:57:02,5Z",
        "2026-11-28T03:57:02+0100",
        "2026-11-28T03:57:02+01",
        "2026-11-28T03:57:02+24:00",
        "2026-11-28T03:57:02+01:60",
        "2026-11-28T03:57:02UTC",
        "2026-11-28T03:57:02Zjunk",
        "2026-11-28T03:57:02Z ",
        " 2026-11-28T03:57:02Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-11-28T24:00:00Z",
        "2026-11-28T23:60:00Z",
        "2016-12-31T23:59:60Z",
        "1969-12-31T23:59:59.999999999Z",
        "1970-01-01T00:29:59+00:30",
        "0000-01-01T00:00:00Z",
        "2262-04-11T23:47:16.854775808Z",
        "2262-04-11T23:47:17Z",
        "9999-12-31T23:59:59Z",
        "2026-11-28T03:57:0２Z",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t time_ns = -7;
        if (tdm_time_parse(bad[i], strlen(bad[i]), &time_ns) != TANDEM_EINVALID) {
            fail_msg("accepted %s", bad[i]);
        }
        assert_int_equal(time_ns, -7);
    }
    /* A NUL byte inside the text is not skipped. */
    assert_int_equal(tdm_time_parse("2026-11-28T03:57:02\0Z", 21, &(int64_t){0}), TANDEM_EINVALID);
}

/* Bad times in a line are rejected naming time, with the reason. */
static void test_jsonl_parse__bad_time(void **state)
{
    (void)state;

    test_reject_message_field("time", "\"2026-11-28\"",
                              "time: not RFC 3339 (want 2026-11-28T03:57:02.123456789Z)");
    test_reject_message_field("time", "\"2026-11-28T03:57:02\"",
                              "time: not RFC 3339 (want Z or an offset such as +02:00)");
    test_reject_message_field("time", "\"2026-11-28T03:57:02.1234567891Z\"",
                              "time: more than 9 fractional digits");
    test_reject_message_field("time", "\"2026-11-28T03:57:02Zjunk\"",
                              "time: not RFC 3339 (trailing characters)");
    test_reject_message_field("time", "\"2026-13-28T03:57:02Z\"", "time: not RFC 3339 (month 13)");
    test_reject_message_field("time", "\"2023-02-29T03:57:02Z\"",
                              "time: not RFC 3339 (day 29 of 2023-02)");
    test_reject_message_field("time", "\"2016-12-31T23:59:60Z\"",
                              "time: second 60 is not representable");
    test_reject_message_field("time", "\"1969-12-31T23:59:59Z\"",
                              "time: before 1970-01-01T00:00:00Z");
    test_reject_message_field("time", "\"2262-04-11T23:47:17Z\"",
                              "time: after 2262-04-11T23:47:16.854775807Z");
    test_reject_message_field("time", "1795838222", "time: not a string");
}

/* Output is UTC with Z and the shortest exact fraction, none when zero. */
static void test_tdm_time_format__shortest_fraction(void **state)
{
    static const struct {
        int64_t time_ns;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00Z"},
        {1, "1970-01-01T00:00:00.000000001Z"},
        {500000000, "1970-01-01T00:00:00.5Z"},
        {1795838222123000000LL, "2026-11-28T03:57:02.123Z"},
        {1795838222123456789LL, "2026-11-28T03:57:02.123456789Z"},
        {1795838222000000000LL, "2026-11-28T03:57:02Z"},
        {951782400000000000LL, "2000-02-29T00:00:00Z"},
        {INT64_MAX, "2262-04-11T23:47:16.854775807Z"},
    };
    char buf[40];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tdm_time_format(cases[i].time_ns, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].text);
    }
}

/* Random instants survive format then parse, and every day of 1970..2262
 * at midnight agrees with the calendar arithmetic of the parser. */
static void test_tdm_time_format__round_trip(void **state)
{
    char buf[40];
    struct tdm_prng prng;
    (void)state;

    tdm_prng_init(&prng, TEST_SEED + 2);
    for (int i = 0; i < 100000; i++) {
        int64_t time_ns = (int64_t)(tdm_prng_next(&prng) >> 1);
        if (i % 3 == 0) {
            time_ns -= time_ns % 1000000;
        }
        int64_t parsed = -1;
        tdm_time_format(time_ns, buf, sizeof(buf));
        assert_int_equal(tdm_time_parse(buf, strlen(buf), &parsed), 0);
        assert_int_equal(parsed, time_ns);
    }
    for (int64_t day = 0; day < 106751; day++) {
        int64_t parsed = -1;
        tdm_time_format(day * 86400 * 1000000000LL, buf, sizeof(buf));
        assert_int_equal(tdm_time_parse(buf, strlen(buf), &parsed), 0);
        assert_int_equal(parsed, day * 86400 * 1000000000LL);
    }
}

/* ------------------------------------------------------------------------
 * Memory.
 * ------------------------------------------------------------------------ */

/* When the heap fails, parse and format return -ENOMEM and keep nothing. */
static void test_jsonl_parse__out_of_memory(void **state)
{
    char line[TEST_LINE_SIZE];
    struct tdm_jsonl_record parsed;
    struct tdm_diag diag;
    struct tandem_record record;
    char *text = NULL;
    size_t size = 0;
    (void)state;

    test_message_line(line, sizeof(line), NULL, NULL);
    test_message_init(&record);
    tdm_test_heap_fail(true);
    int parse_rv = test_parse(line, &parsed, &diag);
    int format_rv = tdm_jsonl_format(&record, 1, &text, &size);
    tdm_test_heap_fail(false);
    assert_int_equal(parse_rv, -ENOMEM);
    assert_null(parsed.storage);
    assert_string_equal(diag.message, "out of memory");
    assert_int_equal(format_rv, -ENOMEM);
    assert_null(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl_format__round_trip_random),
        cmocka_unit_test(test_jsonl_format__message_field_order),
        cmocka_unit_test(test_jsonl_format__customer_without_lsn),
        cmocka_unit_test(test_jsonl_parse__subject_base64_byte_exact),
        cmocka_unit_test(test_jsonl_parse__unicode_escape_stored_as_utf8),
        cmocka_unit_test(test_jsonl_format__base64_only_when_not_utf8),
        cmocka_unit_test(test_jsonl_parse__nul_byte),
        cmocka_unit_test(test_jsonl_format__utf8_edge_cases),
        cmocka_unit_test(test_jsonl_parse__minimal_records),
        cmocka_unit_test(test_jsonl_parse__every_enum_value),
        cmocka_unit_test(test_jsonl_parse__spam_score_forms),
        cmocka_unit_test(test_jsonl_format__spam_score_sweep),
        cmocka_unit_test(test_jsonl_parse__spam_score_rejected),
        cmocka_unit_test(test_jsonl_parse__string_limits),
        cmocka_unit_test(test_jsonl_parse__unknown_enum_values),
        cmocka_unit_test(test_jsonl_parse__missing_fields),
        cmocka_unit_test(test_jsonl_parse__unknown_fields),
        cmocka_unit_test(test_jsonl_parse__bad_base64),
        cmocka_unit_test(test_jsonl_parse__both_forms),
        cmocka_unit_test(test_jsonl_parse__integer_fields),
        cmocka_unit_test(test_jsonl_parse__recipient_empty),
        cmocka_unit_test(test_jsonl_parse__relay_ip),
        cmocka_unit_test(test_jsonl_parse__bad_relay_ip),
        cmocka_unit_test(test_jsonl_parse__not_an_object),
        cmocka_unit_test(test_tdm_time_parse__valid),
        cmocka_unit_test(test_tdm_time_parse__invalid),
        cmocka_unit_test(test_jsonl_parse__bad_time),
        cmocka_unit_test(test_tdm_time_format__shortest_fraction),
        cmocka_unit_test(test_tdm_time_format__round_trip),
        cmocka_unit_test(test_jsonl_parse__out_of_memory),
    };
    tdm_test_heap_install();
    int failed = cmocka_run_group_tests_name("jsonl", tests, NULL, NULL);
    tdm_test_heap_uninstall();
    return failed;
}
