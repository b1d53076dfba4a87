/* tools/jsonl.c: records <-> JSON Lines, the interchange format of DESIGN "What
 * is stored", on top of Jansson.
 *
 * One line is one JSON object. Its keys are "type" ("message" or "customer"),
 * on output "lsn" (omitted when 0), then the DESIGN's fields in the DESIGN's
 * order:
 *   message:  customer_id time size destination classification threat recipient
 *             spam_score message_id sender relay_ip subject
 *   customer: customer_id first_name last_name email username phone address
 *
 * Value forms (the choices this file makes, each for byte-exact round trips):
 * - Byte-string fields (threat, recipient, message_id, sender, subject and the
 *   six customer strings) are JSON strings holding the bytes as UTF-8. Bytes
 *   that are not valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 *   nothing above U+10FFFF) travel as "<field>_base64" (RFC 4648 standard
 *   alphabet with padding, canonical: unused bits 0) in place of "<field>".
 *   Output uses _base64 exactly when the bytes are not valid UTF-8. Input
 *   accepts either form, never both; absent optional strings are empty.
 * - A NUL byte is valid UTF-8 (U+0000): it stays in the plain form and is
 *   written as the JSON escape \u0000, which the parser accepts
 *   (JSON_ALLOW_NUL). Every other valid character is written literally.
 * - time: RFC 3339 with up to 9 fractional digits. Input accepts "Z" or a
 *   numeric offset (converted to UTC), "T"/"t" and "Z"/"z"; no leap second 60,
 *   nothing before 1970 nor after 2262-04-11T23:47:16.854775807Z (int64 ns).
 *   Output is UTC with "Z" and the shortest exact fraction (none when 0).
 * - spam_score: input is any JSON number with at most 3 decimals, judged on
 *   its double value: it is accepted when it equals the double nearest to a
 *   3-decimal value (so "5.3", "5.300", 5 and 5e0 all mean 5300 milli, while
 *   5.3001 is rejected; digits beyond a double's 17 significant ones cannot be
 *   seen). Output is always a JSON real with the fewest decimals that say the
 *   value exactly, at least one: 5.3, -1.25, 0.0, 1000000.0.
 * - customer_id and size: JSON integers (not reals such as 5.0).
 * - relay_ip: text accepted by inet_pton() (dotted quad or RFC 4291 text);
 *   output is inet_ntop()'s (RFC 5952 style for IPv6). An IPv4-mapped IPv6
 *   address stays IPv6.
 * - "lsn" on input is accepted and ignored when it is a positive integer, so
 *   that the output of a query can be fed back as input.
 *
 * Happy path of tdm_jsonl_parse():
 * 1. Jansson parses the line (duplicate keys rejected, \u0000 allowed).
 * 2. "type" selects the field table; every other key is matched against it
 *    (plain or _base64 form) and unknown keys are rejected.
 * 3. Fields are converted in table order: numbers, enums, time and relay_ip
 *    straight into the record; strings are measured (base64 is checked).
 * 4. One tdm_malloc'd block receives every string, each followed by a NUL.
 * 5. tdm_codec_validate() checks every limit and names the field.
 *
 * Failure modes: TANDEM_EINVALID with a diag naming the field by its
 * interchange name (the base64 form as "<field>_base64" when its text is bad),
 * or -ENOMEM. Nothing is kept on failure.
 *
 * Close: a parsed record owns one block, released by tdm_jsonl_record_free().
 */
#include "jsonl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/codec.h"

enum jsonl_kind {
    JSONL_KIND_STRING = 1,
    JSONL_KIND_U32,
    JSONL_KIND_SIZE,
    JSONL_KIND_TIME,
    JSONL_KIND_DESTINATION,
    JSONL_KIND_CLASSIFICATION,
    JSONL_KIND_SPAM_SCORE,
    JSONL_KIND_IP,
};

struct jsonl_field {
    const char *name;     /* Interchange name. */
    enum jsonl_kind kind; /* How the value is written and read. */
    bool required;        /* Input must carry it (in either form). */
    size_t offset;        /* Of the value inside struct tandem_record. */
};

#define JSONL_FIELD(name, kind, required, member)                                                  \
    {                                                                                              \
        name, JSONL_KIND_##kind, required, offsetof(struct tandem_record, member)                  \
    }

static const struct jsonl_field jsonl_message_fields[] = {
    JSONL_FIELD("customer_id", U32, true, message.customer_id),
    JSONL_FIELD("time", TIME, true, message.time_ns),
    JSONL_FIELD("size", SIZE, true, message.size),
    JSONL_FIELD("destination", DESTINATION, true, message.destination),
    JSONL_FIELD("classification", CLASSIFICATION, true, message.classification),
    JSONL_FIELD("threat", STRING, false, message.threat),
    JSONL_FIELD("recipient", STRING, true, message.recipient),
    JSONL_FIELD("spam_score", SPAM_SCORE, true, message.spam_score_milli),
    JSONL_FIELD("message_id", STRING, false, message.message_id),
    JSONL_FIELD("sender", STRING, false, message.sender),
    JSONL_FIELD("relay_ip", IP, true, message.relay_ip),
    JSONL_FIELD("subject", STRING, false, message.subject),
};

static const struct jsonl_field jsonl_customer_fields[] = {
    JSONL_FIELD("customer_id", U32, true, customer.customer_id),
    JSONL_FIELD("first_name", STRING, false, customer.first_name),
    JSONL_FIELD("last_name", STRING, false, customer.last_name),
    JSONL_FIELD("email", STRING, false, customer.email),
    JSONL_FIELD("username", STRING, false, customer.username),
    JSONL_FIELD("phone", STRING, false, customer.phone),
    JSONL_FIELD("address", STRING, false, customer.address),
};

#define JSONL_COUNT(array) (sizeof(array) / sizeof((array)[0]))
#define JSONL_FIELDS_MAX   12
tdm_static_assert(JSONL_COUNT(jsonl_message_fields) <= JSONL_FIELDS_MAX);
tdm_static_assert(JSONL_COUNT(jsonl_customer_fields) <= JSONL_FIELDS_MAX);

/* Names indexed by enum value; index 0 is no value (enums start at 1). */
static const char *const jsonl_destination_names[] = {
    [TANDEM_DESTINATION_DELIVERED] = "delivered",
    [TANDEM_DESTINATION_QUARANTINED] = "quarantined",
};
static const char *const jsonl_classification_names[] = {
    [TANDEM_CLASSIFICATION_CLEAN] = "clean",
    [TANDEM_CLASSIFICATION_SPAM] = "spam",
    [TANDEM_CLASSIFICATION_VIRUS] = "virus",
    [TANDEM_CLASSIFICATION_BANNED_FILE] = "banned_file",
    [TANDEM_CLASSIFICATION_BAD_HEADER] = "bad_header",
    [TANDEM_CLASSIFICATION_OVERSIZED] = "oversized",
};

#define JSONL_BASE64_SUFFIX      "_base64"
#define JSONL_BASE64_SUFFIX_SIZE (sizeof(JSONL_BASE64_SUFFIX) - 1)
#define JSONL_KEY_SIZE           32  /* Longest key, "classification" or "message_id_base64". */
#define JSONL_EXCERPT_SIZE       40  /* A user's value quoted in a diag. */
#define JSONL_STRING_SIZE_MAX    998 /* Largest string limit of tandem.h. */
#define JSONL_BASE64_SIZE_MAX    (4 * ((JSONL_STRING_SIZE_MAX + 2) / 3) + 1)
#define JSONL_TEXT_SIZE          64 /* A formatted time or IP address. */
/* %.10g prints any |milli / 1000| <= 1000000.000 (10 significant digits) exactly. */
#define JSONL_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))

tdm_static_assert(TANDEM_SUBJECT_SIZE_MAX <= JSONL_STRING_SIZE_MAX);
tdm_static_assert(TANDEM_MESSAGE_ID_SIZE_MAX <= JSONL_STRING_SIZE_MAX);
tdm_static_assert(TANDEM_POSTAL_SIZE_MAX <= JSONL_STRING_SIZE_MAX);
tdm_static_assert(TANDEM_ADDRESS_SIZE_MAX <= JSONL_STRING_SIZE_MAX);
tdm_static_assert(TANDEM_SPAM_SCORE_MILLI_MAX == 1000000000);
tdm_static_assert(INET6_ADDRSTRLEN <= JSONL_TEXT_SIZE);
tdm_static_assert(JSONL_EXCERPT_SIZE <= JSONL_TEXT_SIZE);

/* What the document holds for one field of the table. */
struct jsonl_slot {
    json_t *value;      /* Borrowed from the document; NULL when absent. */
    bool base64;        /* It came as <name>_base64. */
    size_t size;        /* String fields: bytes of the string. */
    size_t region_size; /* String fields: bytes of storage it needs, NUL included. */
};

/* ------------------------------------------------------------------------
 * Text checks.
 * ------------------------------------------------------------------------ */

/* Strict UTF-8 (RFC 3629). Jansson applies the same rules to json_stringn(),
 * so a string that passes here is always accepted there. */
static bool jsonl_utf8_valid(const uint8_t *s, size_t size)
{
    size_t i = 0;
    while (i < size) {
        uint8_t lead = s[i];
        size_t length;
        uint32_t code_point;
        uint32_t minimum;
        if (lead < 0x80) {
            i++;
            continue;
        }
        if (lead >= 0xC2 && lead <= 0xDF) {
            length = 2, code_point = lead & 0x1Fu, minimum = 0x80;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            length = 3, code_point = lead & 0x0Fu, minimum = 0x800;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            length = 4, code_point = lead & 0x07u, minimum = 0x10000;
        } else {
            return false; /* Continuation byte, C0/C1 (overlong) or F5..FF. */
        }
        if (size - i < length) {
            return false;
        }
        for (size_t k = 1; k < length; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return false;
            }
            code_point = (code_point << 6) | (s[i + k] & 0x3Fu);
        }
        if (code_point < minimum || code_point > 0x10FFFF) {
            return false;
        }
        if (code_point >= 0xD800 && code_point <= 0xDFFF) {
            return false;
        }
        i += length;
    }
    return true;
}

/* Copy a short, printable excerpt of a user's value for a diag. */
static void jsonl_excerpt(char *buf, size_t buf_size, const char *text, size_t size)
{
    tdm_assert(buf_size > 4);
    size_t shown = size < buf_size - 4 ? size : buf_size - 4;
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7F && c != '"') {
            buf[i] = text[i];
        } else {
            buf[i] = '?';
        }
    }
    if (shown < size) {
        memcpy(buf + shown, "...", 4);
    } else {
        buf[shown] = '\0';
    }
}

static int jsonl_base64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Check that text is canonical padded base64 and give its decoded size.
 * EVP_DecodeBlock() accepts more (leading or trailing whitespace, padding
 * decoded as zero bytes, non-zero unused bits), so the shape is checked here. */
static int jsonl_base64_check(const char *field, const char *text, size_t size,
                              size_t *decoded_size, struct tdm_diag *diag)
{
    size_t padding = 0;

    if (size % 4 != 0) {
        tdm_diag_printf(diag, "%s_base64: %zu characters, not a multiple of 4", field, size);
        return TANDEM_EINVALID;
    }
    if (size > 0 && text[size - 1] == '=') {
        padding = text[size - 2] == '=' ? 2 : 1;
    }
    for (size_t i = 0; i < size - padding; i++) {
        if (jsonl_base64_value(text[i]) < 0) {
            tdm_diag_printf(diag, "%s_base64: invalid character at offset %zu", field, i);
            return TANDEM_EINVALID;
        }
    }
    if (padding > 0) {
        /* The bits of the last character beyond the data must be 0. */
        int last = jsonl_base64_value(text[size - padding - 1]);
        int unused_mask = padding == 2 ? 0x0F : 0x03;
        if ((last & unused_mask) != 0) {
            tdm_diag_printf(diag, "%s_base64: not canonical (non-zero padding bits)", field);
            return TANDEM_EINVALID;
        }
    }
    *decoded_size = size / 4 * 3 - padding;
    return 0;
}

/* ------------------------------------------------------------------------
 * Time (RFC 3339), after Howard Hinnant's days_from_civil / civil_from_days.
 * ------------------------------------------------------------------------ */

#define TIME_NS_PER_SECOND       1000000000LL
#define TIME_SECONDS_PER_DAY     86400LL
#define TIME_FRACTION_DIGITS_MAX 9

static int64_t time_days_from_civil(int64_t year, unsigned month, unsigned day)
{
    tdm_assert(month >= 1 && month <= 12);
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    unsigned year_of_era = (unsigned)(year - era * 400);
    unsigned month_index = month > 2 ? month - 3 : month + 9; /* March is 0. */
    unsigned day_of_year = (153 * month_index + 2) / 5 + day - 1;
    unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + (int64_t)day_of_era - 719468;
}

static void time_civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    tdm_assert(days >= 0);
    days += 719468;
    int64_t era = days / 146097;
    unsigned day_of_era = (unsigned)(days - era * 146097);
    unsigned year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    unsigned day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    unsigned month_index = (5 * day_of_year + 2) / 153;
    *day = day_of_year - (153 * month_index + 2) / 5 + 1;
    *month = month_index < 10 ? month_index + 3 : month_index - 9;
    *year = (int64_t)year_of_era + era * 400 + (*month <= 2);
}

static unsigned time_days_in_month(unsigned year, unsigned month)
{
    static const unsigned days[] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month];
}

struct time_cursor {
    const char *text; /* Borrowed. */
    size_t size;
    size_t offset;
};

static bool time_digits(struct time_cursor *c, size_t count, unsigned *value)
{
    unsigned v = 0;
    if (c->size - c->offset < count) {
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        char ch = c->text[c->offset + i];
        if (ch < '0' || ch > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(ch - '0');
    }
    c->offset += count;
    *value = v;
    return true;
}

/* Take one character of set (of one or two characters); false at the end. */
static bool time_char(struct time_cursor *c, const char *set)
{
    if (c->offset == c->size || strchr(set, c->text[c->offset]) == NULL ||
        c->text[c->offset] == '\0') {
        return false;
    }
    c->offset++;
    return true;
}

/* Seconds since 1970 of the date and time fields, or a diag. */
static int time_parse_civil(struct time_cursor *c, int64_t *seconds, struct tdm_diag *diag)
{
    unsigned year, month, day, hour, minute, second;
    if (!time_digits(c, 4, &year) || !time_char(c, "-") || !time_digits(c, 2, &month) ||
        !time_char(c, "-") || !time_digits(c, 2, &day) || !time_char(c, "Tt") ||
        !time_digits(c, 2, &hour) || !time_char(c, ":") || !time_digits(c, 2, &minute) ||
        !time_char(c, ":") || !time_digits(c, 2, &second)) {
        tdm_diag_printf(diag, "time: not RFC 3339 (want 2026-11-28T03:57:02.123456789Z)");
        return TANDEM_EINVALID;
    }
    if (month < 1 || month > 12) {
        tdm_diag_printf(diag, "time: not RFC 3339 (month %u)", month);
        return TANDEM_EINVALID;
    }
    if (day < 1 || day > time_days_in_month(year, month)) {
        tdm_diag_printf(diag, "time: not RFC 3339 (day %u of %04u-%02u)", day, year, month);
        return TANDEM_EINVALID;
    }
    if (hour > 23 || minute > 59) {
        tdm_diag_printf(diag, "time: not RFC 3339 (%02u:%02u)", hour, minute);
        return TANDEM_EINVALID;
    }
    if (second > 59) {
        /* Unix time has no leap seconds; 60 cannot be stored without lying. */
        tdm_diag_printf(diag, "time: second %u is not representable", second);
        return TANDEM_EINVALID;
    }
    *seconds = time_days_from_civil(year, month, day) * TIME_SECONDS_PER_DAY +
               (int64_t)hour * 3600 + (int64_t)minute * 60 + (int64_t)second;
    return 0;
}

/* The optional ".digits" part, in nanoseconds. */
static int time_parse_fraction(struct time_cursor *c, int64_t *fraction_ns, struct tdm_diag *diag)
{
    int64_t value = 0;
    size_t digit_count = 0;

    *fraction_ns = 0;
    if (!time_char(c, ".")) {
        return 0;
    }
    while (c->offset < c->size && c->text[c->offset] >= '0' && c->text[c->offset] <= '9') {
        if (digit_count == TIME_FRACTION_DIGITS_MAX) {
            tdm_diag_printf(diag, "time: more than %d fractional digits", TIME_FRACTION_DIGITS_MAX);
            return TANDEM_EINVALID;
        }
        value = value * 10 + (c->text[c->offset] - '0');
        digit_count++;
        c->offset++;
    }
    if (digit_count == 0) {
        tdm_diag_printf(diag, "time: not RFC 3339 (no digit after '.')");
        return TANDEM_EINVALID;
    }
    for (size_t i = digit_count; i < TIME_FRACTION_DIGITS_MAX; i++) {
        value *= 10;
    }
    *fraction_ns = value;
    return 0;
}

/* "Z" or "+HH:MM" / "-HH:MM", as seconds east of UTC. */
static int time_parse_offset(struct time_cursor *c, int64_t *offset_seconds, struct tdm_diag *diag)
{
    unsigned hours, minutes;

    *offset_seconds = 0;
    if (time_char(c, "Zz")) {
        return 0;
    }
    bool west = c->offset < c->size && c->text[c->offset] == '-';
    if (!time_char(c, "+-") || !time_digits(c, 2, &hours) || !time_char(c, ":") ||
        !time_digits(c, 2, &minutes)) {
        tdm_diag_printf(diag, "time: not RFC 3339 (want Z or an offset such as +02:00)");
        return TANDEM_EINVALID;
    }
    if (hours > 23 || minutes > 59) {
        tdm_diag_printf(diag, "time: not RFC 3339 (offset %02u:%02u)", hours, minutes);
        return TANDEM_EINVALID;
    }
    int64_t east = (int64_t)hours * 3600 + (int64_t)minutes * 60;
    *offset_seconds = west ? -east : east;
    return 0;
}

static int time_parse(const char *text, size_t size, int64_t *time_ns, struct tdm_diag *diag)
{
    struct time_cursor c = {.text = text, .size = size, .offset = 0};
    int64_t seconds, fraction_ns, offset_seconds;

    int rv = time_parse_civil(&c, &seconds, diag);
    if (rv == 0) {
        rv = time_parse_fraction(&c, &fraction_ns, diag);
    }
    if (rv == 0) {
        rv = time_parse_offset(&c, &offset_seconds, diag);
    }
    if (rv != 0) {
        return rv;
    }
    if (c.offset != size) {
        tdm_diag_printf(diag, "time: not RFC 3339 (trailing characters)");
        return TANDEM_EINVALID;
    }
    /* Years 0000..9999 keep this far from overflow: |seconds| < 2^39. */
    seconds -= offset_seconds;
    if (seconds < 0) {
        tdm_diag_printf(diag, "time: before 1970-01-01T00:00:00Z");
        return TANDEM_EINVALID;
    }
    if (seconds > (INT64_MAX - fraction_ns) / TIME_NS_PER_SECOND) {
        tdm_diag_printf(diag, "time: after 2262-04-11T23:47:16.854775807Z");
        return TANDEM_EINVALID;
    }
    *time_ns = seconds * TIME_NS_PER_SECOND + fraction_ns;
    tdm_assert(*time_ns >= 0);
    return 0;
}

int tdm_time_parse(const char *text, size_t size, int64_t *time_ns)
{
    int64_t parsed;

    tdm_assert(text != NULL || size == 0);
    tdm_assert(time_ns != NULL);
    int rv = time_parse(text, size, &parsed, NULL);
    if (rv == 0) {
        *time_ns = parsed;
    }
    return rv;
}

void tdm_time_format(int64_t time_ns, char *buf, size_t size)
{
    int64_t year;
    unsigned month, day;

    tdm_assert(time_ns >= 0);
    tdm_assert(size >= 40);
    int64_t seconds = time_ns / TIME_NS_PER_SECOND;
    int64_t fraction_ns = time_ns % TIME_NS_PER_SECOND;
    int64_t second_of_day = seconds % TIME_SECONDS_PER_DAY;
    time_civil_from_days(seconds / TIME_SECONDS_PER_DAY, &year, &month, &day);

    int n = snprintf(buf, size, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d", year, month, day,
                     (int)(second_of_day / 3600), (int)(second_of_day / 60 % 60),
                     (int)(second_of_day % 60));
    tdm_assert(n > 0 && (size_t)n < size);
    if (fraction_ns != 0) {
        int digit_count = TIME_FRACTION_DIGITS_MAX;
        while (fraction_ns % 10 == 0) {
            fraction_ns /= 10;
            digit_count--;
        }
        n += snprintf(buf + n, size - (size_t)n, ".%0*" PRId64, digit_count, fraction_ns);
    }
    tdm_assert((size_t)n + 2 <= size);
    buf[n] = 'Z';
    buf[n + 1] = '\0';
}

/* ------------------------------------------------------------------------
 * Parsing: matching keys to fields.
 * ------------------------------------------------------------------------ */

static void *jsonl_target(struct tandem_record *record, const struct jsonl_field *field)
{
    return (char *)record + field->offset;
}

static const void *jsonl_source(const struct tandem_record *record, const struct jsonl_field *field)
{
    return (const char *)record + field->offset;
}

static int jsonl_parse_type(json_t *root, enum tandem_record_type *type, struct tdm_diag *diag)
{
    char excerpt[JSONL_EXCERPT_SIZE];
    json_t *value = json_object_getn(root, "type", 4);

    if (value == NULL) {
        tdm_diag_printf(diag, "type: missing");
        return TANDEM_EINVALID;
    }
    if (!json_is_string(value)) {
        tdm_diag_printf(diag, "type: not a string");
        return TANDEM_EINVALID;
    }
    const char *text = json_string_value(value);
    size_t size = json_string_length(value);
    if (size == 7 && memcmp(text, "message", 7) == 0) {
        *type = TANDEM_RECORD_MESSAGE;
        return 0;
    }
    if (size == 8 && memcmp(text, "customer", 8) == 0) {
        *type = TANDEM_RECORD_CUSTOMER;
        return 0;
    }
    jsonl_excerpt(excerpt, sizeof(excerpt), text, size);
    tdm_diag_printf(diag, "type: unknown value \"%s\"", excerpt);
    return TANDEM_EINVALID;
}

/* "lsn" is output-only information: accepted, checked and ignored on input. */
static int jsonl_check_lsn(json_t *value, struct tdm_diag *diag)
{
    if (!json_is_integer(value) || json_integer_value(value) < 1) {
        tdm_diag_printf(diag, "lsn: not a positive integer");
        return TANDEM_EINVALID;
    }
    return 0;
}

/* Find the field a key names; *base64 tells the form. -1 if none. */
static int jsonl_field_find(const struct jsonl_field *fields, size_t field_count, const char *key,
                            size_t key_size, bool *base64)
{
    for (size_t i = 0; i < field_count; i++) {
        size_t name_size = strlen(fields[i].name);
        if (key_size < name_size || memcmp(key, fields[i].name, name_size) != 0) {
            continue;
        }
        if (key_size == name_size) {
            *base64 = false;
            return (int)i;
        }
        if (fields[i].kind == JSONL_KIND_STRING &&
            key_size == name_size + JSONL_BASE64_SUFFIX_SIZE &&
            memcmp(key + name_size, JSONL_BASE64_SUFFIX, JSONL_BASE64_SUFFIX_SIZE) == 0) {
            *base64 = true;
            return (int)i;
        }
    }
    return -1;
}

/* Sort the document's keys into slots: unknown keys and both forms of one
 * field are errors. */
static int jsonl_collect(json_t *root, const struct jsonl_field *fields, size_t field_count,
                         struct jsonl_slot *slots, struct tdm_diag *diag)
{
    char excerpt[JSONL_EXCERPT_SIZE];

    for (void *it = json_object_iter(root); it != NULL; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_size = json_object_iter_key_len(it);
        json_t *value = json_object_iter_value(it);
        bool base64 = false;
        if (key_size == 4 && memcmp(key, "type", 4) == 0) {
            continue;
        }
        if (key_size == 3 && memcmp(key, "lsn", 3) == 0) {
            int rv = jsonl_check_lsn(value, diag);
            if (rv != 0) {
                return rv;
            }
            continue;
        }
        int index = jsonl_field_find(fields, field_count, key, key_size, &base64);
        if (index < 0) {
            jsonl_excerpt(excerpt, sizeof(excerpt), key, key_size);
            tdm_diag_printf(diag, "%s: unknown field", excerpt);
            return TANDEM_EINVALID;
        }
        if (slots[index].value != NULL) {
            tdm_diag_printf(diag, "%s: both %s and %s_base64 given", fields[index].name,
                            fields[index].name, fields[index].name);
            return TANDEM_EINVALID;
        }
        slots[index].value = value;
        slots[index].base64 = base64;
    }
    for (size_t i = 0; i < field_count; i++) {
        if (fields[i].required && slots[i].value == NULL) {
            tdm_diag_printf(diag, "%s: missing", fields[i].name);
            return TANDEM_EINVALID;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Parsing: values.
 * ------------------------------------------------------------------------ */

static int jsonl_parse_integer(const char *name, json_t *value, json_int_t maximum, json_int_t *out,
                               struct tdm_diag *diag)
{
    if (!json_is_integer(value)) {
        tdm_diag_printf(diag, "%s: not an integer", name);
        return TANDEM_EINVALID;
    }
    json_int_t v = json_integer_value(value);
    if (v < 0) {
        tdm_diag_printf(diag, "%s: %" JSON_INTEGER_FORMAT " is negative", name, v);
        return TANDEM_EINVALID;
    }
    if (v > maximum) {
        tdm_diag_printf(diag,
                        "%s: %" JSON_INTEGER_FORMAT " out of range, limit %" JSON_INTEGER_FORMAT,
                        name, v, maximum);
        return TANDEM_EINVALID;
    }
    *out = v;
    return 0;
}

/* The shortest %g text that reads back as v, to quote a number as written. */
static void jsonl_shortest_double(double v, char *buf, size_t size)
{
    for (int precision = 1; precision <= 17; precision++) {
        int n = snprintf(buf, size, "%.*g", precision, v);
        if (n > 0 && (size_t)n < size && strtod(buf, NULL) == v) {
            return;
        }
    }
}

static int jsonl_parse_spam_score(json_t *value, int32_t *milli, struct tdm_diag *diag)
{
    /* Twice the limit: room to reject out-of-range values with the codec's
     * own message, and far from int32 overflow. */
    const double bound = 2.0 * TANDEM_SPAM_SCORE_MILLI_MAX / 1000.0;

    if (json_is_integer(value)) {
        json_int_t v = json_integer_value(value);
        if (v < -(json_int_t)bound || v > (json_int_t)bound) {
            tdm_diag_printf(diag, "spam_score: %" JSON_INTEGER_FORMAT " out of range, limit %d.000",
                            v, TANDEM_SPAM_SCORE_MILLI_MAX / 1000);
            return TANDEM_EINVALID;
        }
        *milli = (int32_t)(v * 1000);
        return 0;
    }
    if (!json_is_real(value)) {
        tdm_diag_printf(diag, "spam_score: not a number");
        return TANDEM_EINVALID;
    }
    double v = json_real_value(value);
    if (!(fabs(v) <= bound)) {
        tdm_diag_printf(diag, "spam_score: %g out of range, limit %d.000", v,
                        TANDEM_SPAM_SCORE_MILLI_MAX / 1000);
        return TANDEM_EINVALID;
    }
    long long rounded = llround(v * 1000.0);
    /* Both sides are the double nearest to rounded / 1000, when v had at most
     * three decimals: strtod() and IEEE division both round correctly. */
    if ((double)rounded / 1000.0 != v) {
        char text[JSONL_TEXT_SIZE];
        jsonl_shortest_double(v, text, sizeof(text));
        tdm_diag_printf(diag, "spam_score: %s has more than 3 decimal places", text);
        return TANDEM_EINVALID;
    }
    *milli = (int32_t)rounded;
    return 0;
}

static int jsonl_parse_ip(json_t *value, struct tandem_ip *ip, struct tdm_diag *diag)
{
    char text[JSONL_TEXT_SIZE];

    if (!json_is_string(value)) {
        tdm_diag_printf(diag, "relay_ip: not a string");
        return TANDEM_EINVALID;
    }
    size_t size = json_string_length(value);
    const char *data = json_string_value(value);
    /* inet_pton() reads a C string: a NUL inside would hide what follows. */
    if (size < sizeof(text) && memchr(data, '\0', size) == NULL) {
        memcpy(text, data, size);
        text[size] = '\0';
        memset(ip, 0, sizeof(*ip));
        if (inet_pton(AF_INET, text, ip->bytes) == 1) {
            ip->family = 4;
            return 0;
        }
        if (inet_pton(AF_INET6, text, ip->bytes) == 1) {
            ip->family = 6;
            return 0;
        }
        memset(ip, 0, sizeof(*ip));
    }
    jsonl_excerpt(text, JSONL_EXCERPT_SIZE, data, size);
    tdm_diag_printf(diag, "relay_ip: \"%s\" is not an IPv4 or IPv6 address", text);
    return TANDEM_EINVALID;
}

/* Index of text in names (index 0 unused), or a diag naming the field. */
static int jsonl_parse_enum(const char *name, json_t *value, const char *const *names,
                            size_t name_count, int *out, struct tdm_diag *diag)
{
    char excerpt[JSONL_EXCERPT_SIZE];

    if (!json_is_string(value)) {
        tdm_diag_printf(diag, "%s: not a string", name);
        return TANDEM_EINVALID;
    }
    const char *text = json_string_value(value);
    size_t size = json_string_length(value);
    for (size_t i = 1; i < name_count; i++) {
        if (strlen(names[i]) == size && memcmp(names[i], text, size) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    jsonl_excerpt(excerpt, sizeof(excerpt), text, size);
    tdm_diag_printf(diag, "%s: unknown value \"%s\"", name, excerpt);
    return TANDEM_EINVALID;
}

static int jsonl_parse_time(json_t *value, int64_t *time_ns, struct tdm_diag *diag)
{
    if (!json_is_string(value)) {
        tdm_diag_printf(diag, "time: not a string");
        return TANDEM_EINVALID;
    }
    return time_parse(json_string_value(value), json_string_length(value), time_ns, diag);
}

/* Measure a string field: its size and the storage it needs. */
static int jsonl_measure_string(const struct jsonl_field *field, struct jsonl_slot *slot,
                                struct tdm_diag *diag)
{
    if (slot->value == NULL) {
        slot->size = 0;
        slot->region_size = 1;
        return 0;
    }
    if (!json_is_string(slot->value)) {
        tdm_diag_printf(diag, "%s%s: not a string", field->name,
                        slot->base64 ? JSONL_BASE64_SUFFIX : "");
        return TANDEM_EINVALID;
    }
    size_t text_size = json_string_length(slot->value);
    if (!slot->base64) {
        slot->size = text_size;
        slot->region_size = text_size + 1;
        return 0;
    }
    int rv = jsonl_base64_check(field->name, json_string_value(slot->value), text_size, &slot->size,
                                diag);
    /* EVP_DecodeBlock() writes the padding as zero bytes: room for all. */
    slot->region_size = text_size / 4 * 3 + 1;
    return rv;
}

/* Convert one field's value into record (strings are only measured). */
static int jsonl_parse_field(const struct jsonl_field *field, struct jsonl_slot *slot,
                             struct tandem_record *record, struct tdm_diag *diag)
{
    void *target = jsonl_target(record, field);
    json_int_t integer = 0;
    int index = 0;
    int rv;

    switch (field->kind) {
    case JSONL_KIND_STRING:
        return jsonl_measure_string(field, slot, diag);
    case JSONL_KIND_U32:
        rv = jsonl_parse_integer(field->name, slot->value, UINT32_MAX, &integer, diag);
        *(uint32_t *)target = (uint32_t)integer;
        return rv;
    case JSONL_KIND_SIZE:
        /* The limit itself is the codec's to check, with its message. */
        rv = jsonl_parse_integer(field->name, slot->value, INT64_MAX, &integer, diag);
        *(uint64_t *)target = (uint64_t)integer;
        return rv;
    case JSONL_KIND_TIME:
        return jsonl_parse_time(slot->value, (int64_t *)target, diag);
    case JSONL_KIND_DESTINATION:
        rv = jsonl_parse_enum(field->name, slot->value, jsonl_destination_names,
                              JSONL_COUNT(jsonl_destination_names), &index, diag);
        *(enum tandem_destination *)target = (enum tandem_destination)index;
        return rv;
    case JSONL_KIND_CLASSIFICATION:
        rv = jsonl_parse_enum(field->name, slot->value, jsonl_classification_names,
                              JSONL_COUNT(jsonl_classification_names), &index, diag);
        *(enum tandem_classification *)target = (enum tandem_classification)index;
        return rv;
    case JSONL_KIND_SPAM_SCORE:
        return jsonl_parse_spam_score(slot->value, (int32_t *)target, diag);
    case JSONL_KIND_IP:
        return jsonl_parse_ip(slot->value, (struct tandem_ip *)target, diag);
    }
    tdm_unreachable();
}

/* Copy or decode every string field into one block, each followed by a NUL. */
static int jsonl_fill_strings(const struct jsonl_field *fields, size_t field_count,
                              const struct jsonl_slot *slots, struct tandem_record *record,
                              char **storage)
{
    size_t total = 0;
    for (size_t i = 0; i < field_count; i++) {
        total += fields[i].kind == JSONL_KIND_STRING ? slots[i].region_size : 0;
    }
    char *block = tdm_malloc(total);
    if (block == NULL) {
        return -ENOMEM;
    }
    char *cursor = block;
    for (size_t i = 0; i < field_count; i++) {
        if (fields[i].kind != JSONL_KIND_STRING) {
            continue;
        }
        const struct jsonl_slot *slot = &slots[i];
        if (slot->value == NULL) {
            tdm_assert(slot->size == 0);
        } else if (slot->base64) {
            size_t text_size = json_string_length(slot->value);
            const unsigned char *text = (const unsigned char *)json_string_value(slot->value);
            tdm_assert(text_size <= INT32_MAX);
            int n = EVP_DecodeBlock((unsigned char *)cursor, text, (int)text_size);
            tdm_assert(n >= 0); /* The text passed jsonl_base64_check(). */
            tdm_assert((size_t)n == text_size / 4 * 3);
        } else {
            memcpy(cursor, json_string_value(slot->value), slot->size);
        }
        cursor[slot->size] = '\0';
        struct tandem_bytes *bytes = jsonl_target(record, &fields[i]);
        bytes->data = cursor;
        bytes->size = slot->size;
        cursor += slot->region_size;
    }
    tdm_assert(cursor == block + total);
    *storage = block;
    return 0;
}

static int jsonl_parse_object(json_t *root, struct tdm_jsonl_record *out, struct tdm_diag *diag)
{
    struct jsonl_slot slots[JSONL_FIELDS_MAX];
    struct tandem_record record;
    enum tandem_record_type type;
    char *storage = NULL;

    int rv = jsonl_parse_type(root, &type, diag);
    if (rv != 0) {
        return rv;
    }
    const struct jsonl_field *fields =
        type == TANDEM_RECORD_MESSAGE ? jsonl_message_fields : jsonl_customer_fields;
    size_t field_count = type == TANDEM_RECORD_MESSAGE ? JSONL_COUNT(jsonl_message_fields)
                                                       : JSONL_COUNT(jsonl_customer_fields);
    memset(slots, 0, sizeof(slots));
    rv = jsonl_collect(root, fields, field_count, slots, diag);
    if (rv != 0) {
        return rv;
    }
    memset(&record, 0, sizeof(record));
    record.type = type;
    for (size_t i = 0; i < field_count; i++) {
        if (slots[i].value != NULL || fields[i].kind == JSONL_KIND_STRING) {
            rv = jsonl_parse_field(&fields[i], &slots[i], &record, diag);
            if (rv != 0) {
                return rv;
            }
        }
    }
    rv = jsonl_fill_strings(fields, field_count, slots, &record, &storage);
    if (rv != 0) {
        tdm_diag_printf(diag, "out of memory");
        return rv;
    }
    rv = tdm_codec_validate(&record, diag);
    if (rv != 0) {
        tdm_free(storage);
        return rv;
    }
    out->record = record;
    out->storage = storage;
    return 0;
}

int tdm_jsonl_parse(const char *line, size_t size, struct tdm_jsonl_record *out,
                    struct tdm_diag *diag)
{
    json_error_t error;

    tdm_assert(line != NULL || size == 0);
    tdm_assert(out != NULL);
    memset(out, 0, sizeof(*out));
    json_t *root =
        json_loadb(line != NULL ? line : "", size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &error);
    if (root == NULL) {
        if (json_error_code(&error) == json_error_out_of_memory) {
            tdm_diag_printf(diag, "out of memory");
            return -ENOMEM;
        }
        tdm_diag_printf(diag, "invalid JSON at column %d: %s", error.column, error.text);
        return TANDEM_EINVALID;
    }
    int rv;
    if (json_is_object(root)) {
        rv = jsonl_parse_object(root, out, diag);
    } else {
        tdm_diag_printf(diag, "not a JSON object");
        rv = TANDEM_EINVALID;
    }
    json_decref(root);
    tdm_assert(rv == 0 || out->storage == NULL);
    return rv;
}

void tdm_jsonl_record_free(struct tdm_jsonl_record *record)
{
    tdm_assert(record != NULL);
    tdm_free(record->storage);
    record->storage = NULL;
}

/* ------------------------------------------------------------------------
 * Formatting.
 * ------------------------------------------------------------------------ */

/* json_object_set_new() takes value even when it fails, and fails on NULL. */
static int jsonl_set(json_t *root, const char *key, json_t *value)
{
    return json_object_set_new(root, key, value) == 0 ? 0 : -ENOMEM;
}

static int jsonl_format_string(json_t *root, const char *name, const struct tandem_bytes *bytes)
{
    char key[JSONL_KEY_SIZE];
    char encoded[JSONL_BASE64_SIZE_MAX];
    const char *data = bytes->size > 0 ? bytes->data : ""; /* Jansson refuses NULL. */

    if (jsonl_utf8_valid((const uint8_t *)data, bytes->size)) {
        return jsonl_set(root, name, json_stringn(data, bytes->size));
    }
    tdm_assert(bytes->size <= JSONL_STRING_SIZE_MAX);
    int n = snprintf(key, sizeof(key), "%s%s", name, JSONL_BASE64_SUFFIX);
    tdm_assert(n > 0 && (size_t)n < sizeof(key));
    int encoded_size =
        EVP_EncodeBlock((unsigned char *)encoded, (const unsigned char *)data, (int)bytes->size);
    tdm_assert(encoded_size >= 0 && (size_t)encoded_size < sizeof(encoded));
    return jsonl_set(root, key, json_stringn(encoded, (size_t)encoded_size));
}

static int jsonl_format_field(json_t *root, const struct jsonl_field *field,
                              const struct tandem_record *record)
{
    const void *source = jsonl_source(record, field);
    char text[JSONL_TEXT_SIZE];

    switch (field->kind) {
    case JSONL_KIND_STRING:
        return jsonl_format_string(root, field->name, source);
    case JSONL_KIND_U32:
        return jsonl_set(root, field->name, json_integer(*(const uint32_t *)source));
    case JSONL_KIND_SIZE:
        return jsonl_set(root, field->name, json_integer((json_int_t) * (const uint64_t *)source));
    case JSONL_KIND_TIME:
        tdm_time_format(*(const int64_t *)source, text, sizeof(text));
        return jsonl_set(root, field->name, json_string(text));
    case JSONL_KIND_DESTINATION:
        return jsonl_set(
            root, field->name,
            json_string(jsonl_destination_names[*(const enum tandem_destination *)source]));
    case JSONL_KIND_CLASSIFICATION:
        return jsonl_set(
            root, field->name,
            json_string(jsonl_classification_names[*(const enum tandem_classification *)source]));
    case JSONL_KIND_SPAM_SCORE:
        return jsonl_set(root, field->name, json_real(*(const int32_t *)source / 1000.0));
    case JSONL_KIND_IP: {
        const struct tandem_ip *ip = source;
        const char *ok =
            inet_ntop(ip->family == 4 ? AF_INET : AF_INET6, ip->bytes, text, sizeof(text));
        tdm_assert(ok != NULL);
        return jsonl_set(root, field->name, json_string(text));
    }
    }
    tdm_unreachable();
}

static int jsonl_dump(const json_t *root, char **out, size_t *size)
{
    size_t needed = json_dumpb(root, NULL, 0, JSONL_DUMP_FLAGS);
    if (needed == 0) {
        return -ENOMEM;
    }
    char *text = tdm_malloc(needed + 1);
    if (text == NULL) {
        return -ENOMEM;
    }
    size_t written = json_dumpb(root, text, needed, JSONL_DUMP_FLAGS);
    if (written != needed) {
        tdm_free(text);
        return -ENOMEM;
    }
    text[needed] = '\0';
    *out = text;
    *size = needed;
    return 0;
}

int tdm_jsonl_format(const struct tandem_record *record, uint64_t lsn, char **out, size_t *size)
{
    tdm_assert(record != NULL);
    tdm_assert(out != NULL);
    tdm_assert(size != NULL);
    tdm_assert(lsn <= INT64_MAX);
    /* Records come from the caller's validation or from decode: both checked. */
    tdm_assert(tdm_codec_validate(record, NULL) == 0);

    bool message = record->type == TANDEM_RECORD_MESSAGE;
    const struct jsonl_field *fields = message ? jsonl_message_fields : jsonl_customer_fields;
    size_t field_count =
        message ? JSONL_COUNT(jsonl_message_fields) : JSONL_COUNT(jsonl_customer_fields);
    json_t *root = json_object();
    if (root == NULL) {
        return -ENOMEM;
    }
    int rv = jsonl_set(root, "type", json_string(message ? "message" : "customer"));
    if (rv == 0 && lsn != 0) {
        rv = jsonl_set(root, "lsn", json_integer((json_int_t)lsn));
    }
    for (size_t i = 0; rv == 0 && i < field_count; i++) {
        rv = jsonl_format_field(root, &fields[i], record);
    }
    if (rv == 0) {
        rv = jsonl_dump(root, out, size);
    }
    json_decref(root);
    return rv;
}
