/* tools/gen.c: seeded, realistic, synthetic message and customer records
 * (RELIABILITY 3.8 "PII hygiene for tests").
 *
 * Purpose: give tests, benchmarks and demos a stream of records that looks
 * like the traffic of a mail gateway (proportions, sizes, scores, fan-out to
 * several recipients, raw 8-bit subjects) while holding no real personal data:
 * every personal string carries the marker token "ZZPII", every domain is an
 * RFC 2606 name and every address an RFC 5737 / RFC 3849 documentation one.
 *
 * Happy path of tdm_gen_message():
 * 1. If the current mail has no recipient left, start a new one: advance the
 *    clock by an exponential gap (mean 25 ms), pick a customer (skewed to low
 *    ids), a recipient count, a classification and, from it, the destination,
 *    size, spam score, threat, sender, relay, Message-ID and subject.
 *    Otherwise advance the clock by 50-999 microseconds (per-recipient work).
 * 2. Pick the next recipient: consecutive users of the customer, so that one
 *    mail never names the same recipient twice.
 * 3. Point out's strings at the generator's buffers.
 * Happy path of tdm_gen_customer(): derive the identity from (seed,
 * customer_id), draw phone and postal address from the stream, point out's
 * strings at the buffers.
 *
 * Identities (customer names, domains, users) are hashes of (seed, customer,
 * index), not draws from the stream, so they stay the same whatever order
 * records are asked for in. The generator never reads a clock and uses no
 * libm: the few logarithms and exponentials are computed here.
 *
 * Failure modes: none at run time. Every string is built with a bounded
 * appender that asserts it fits; the inputs are tables sized far below the
 * limits of include/tandem.h, so an assertion means a bug in this file.
 * Close: nothing to release. */
#include "gen.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/base/assert.h"

#define GEN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define GEN_MAIL_GAP_NS_MEAN     25000000.0 /* 25 ms between mails. */
#define GEN_RECIPIENT_GAP_US_MIN 50         /* Between records of one mail. */
#define GEN_RECIPIENT_GAP_US_MAX 999
#define GEN_SIZE_MIN             300           /* Smallest mail, bytes. */
#define GEN_SIZE_MAX             (45ULL << 20) /* Largest mail not oversized. */
#define GEN_OVERSIZED_MIN        (50ULL << 20)
#define GEN_OVERSIZED_SPAN       (100ULL << 20)
#define GEN_USERS_MIN            20 /* >= the largest recipient count. */
#define GEN_USERS_SPAN           300
#define GEN_RECIPIENTS_MAX       20
#define GEN_SUBJECT_LONG_MAX     990 /* Below TANDEM_SUBJECT_SIZE_MAX. */
#define GEN_SPAM_SCORE_MAX       60.0
#define GEN_LN2                  0.69314718055994530942

tdm_static_assert(GEN_RECIPIENTS_MAX <= GEN_USERS_MIN);
tdm_static_assert(GEN_SUBJECT_LONG_MAX <= TANDEM_SUBJECT_SIZE_MAX);
tdm_static_assert(GEN_OVERSIZED_MIN + GEN_OVERSIZED_SPAN <= TANDEM_MESSAGE_SIZE_MAX);

/* Salts that keep the identity hashes of different things apart. */
enum gen_salt {
    GEN_SALT_FIRST_NAME = 1,
    GEN_SALT_LAST_NAME,
    GEN_SALT_DOMAIN_COUNT,
    GEN_SALT_DOMAIN_WORD,
    GEN_SALT_DOMAIN_TLD,
    GEN_SALT_USER_COUNT,
    GEN_SALT_USER,
    GEN_SALT_MESSAGE_ID,
};

/* ------------------------------------------------------------------------
 * Tables.
 * ------------------------------------------------------------------------ */

static const char *const gen_first_names[] = {
    "Ada",     "Alan",  "Grace", "Edsger", "Barbara", "Donald", "Frances", "John",      "Margaret",
    "Niklaus", "Radia", "Ken",   "Dennis", "Leslie",  "Tony",   "Hedy",    "Katherine", "Linus",
    "Sophie",  "Karen", "Mary",  "Adele",  "Jean",    "Annie",  "Bjarne",  "Guido",     "Ivan",
    "Lena",    "Omar",  "Priya", "Chen",   "Fatima",  "Tomasz", "Ingrid",  "Mateo",     "Noor",
};

static const char *const gen_last_names[] = {
    "Lovelace", "Turing",   "Hopper",  "Dijkstra",   "Liskov",   "Knuth",      "Allen",
    "Backus",   "Hamilton", "Wirth",   "Perlman",    "Thompson", "Ritchie",    "Lamport",
    "Hoare",    "Lamarr",   "Johnson", "Torvalds",   "Wilson",   "Jones",      "Keller",
    "Goldberg", "Sammet",   "Easley",  "Stroustrup", "Rossum",   "Sutherland", "Nowak",
    "Haddad",   "Sharma",   "Wei",     "Okafor",     "Kowalski", "Berg",       "Garcia",
};

static const char *const gen_company_words[] = {
    "northwind", "contoso",       "fabrikam",   "tailspin",      "wingtip", "adventure-works",
    "alpine",    "blue-yonder",   "coho",       "litware",       "lucerne", "margie-travel",
    "proseware", "trey-research", "wide-world", "fourth-coffee",
};

static const char *const gen_tlds[] = {
    "example", "example.com", "example.net", "example.org", "test",
};

static const char *const gen_external_domains[] = {
    "mail.example.net", "example.org",     "partners.example.com",
    "post.example",     "mx.example.test", "users.example.net",
};

static const char *const gen_role_names[] = {
    "noreply", "newsletter", "billing", "info", "support", "notifications", "orders", "hr",
};

static const char *const gen_spam_words[] = {
    "promo", "lucky", "deals", "winner", "pharma", "crypto", "prize", "offers",
};

static const char *const gen_virus_names[] = {
    "Eicar-Test-Signature",        "Win.Trojan.Agent-1234567", "Doc.Downloader.Emotet-7001",
    "Html.Phishing.Bank-4242",     "Xls.Dropper.Agent-9001",   "Js.Trojan.Nemucod-6543",
    "Pdf.Exploit.CVE_2023_1234-1", "Win.Ransomware.Locky-88",
};

static const char *const gen_banned_files[] = {
    "invoice.exe", "scan_0412.js", "payment.scr",   "document.pdf.exe", "order.vbs",
    "archive.iso", "setup.msi",    "statement.bat", "photo.jpg.lnk",    "update.hta",
};

static const char *const gen_streets[] = {
    "Example", "Sample", "Test", "Main", "Station", "Harbour", "Mill", "Church", "Park", "Elm",
};

static const char *const gen_cities[] = {
    "Springfield", "Riverton",  "Lakeside",  "Fairview",
    "Greenville",  "Kingsport", "Millbrook", "Oakridge",
};

/* A subject: prefix, then a number if wanted, then suffix. Raw bytes. */
struct gen_subject {
    const char *prefix;
    bool number;
    const char *suffix;
};

static const struct gen_subject gen_subjects_clean[] = {
    {"Invoice ", true, " for March"},
    {"Re: Meeting on ", false, "Tuesday"},
    {"Your order #", true, " has shipped"},
    {"Fwd: Q", true, " report"},
    {"Weekly newsletter #", true, ""},
    {"Password reset requested", false, ""},
    {"Re: Re: project ", false, "Falcon"},
    {"Minutes of the board meeting ", true, ""},
    {"Out of office: back on Monday", false, ""},
    {"Reminder: timesheet due", false, ""},
    {"Delivery note ", true, ""},
    {"Re: contract draft v", true, ""},
};

static const struct gen_subject gen_subjects_spam[] = {
    {"You have won ", true, " EUR!!!"},         {"Limited offer: ", true, "% discount"},
    {"URGENT: verify your account ", true, ""}, {"Re: your parcel is waiting", false, ""},
    {"Your mailbox is full", false, ""},        {"Investment opportunity ", true, "x returns"},
};

/* ISO-8859-1 bytes: none of these is valid UTF-8. */
static const struct gen_subject gen_subjects_latin1[] = {
    {"Rechnung f\xfcr M\xe4rz ", true, ""}, {"R\xe9sum\xe9 de la r\xe9union ", true, ""},
    {"Se\xf1or, su pedido ", true, ""},     {"\xc4nderung der Lieferadresse", false, ""},
    {"Caf\xe9 cr\xe8me ", true, ""},
};

static const struct gen_subject gen_subjects_utf8[] = {
    {"Gr\xc3\xb6\xc3\x9f"
     "e ",
     true, ""},
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e report ", true, ""},
    {"Caf\xc3\xa9 order ", true, ""},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ", true, ""},
};

static const struct gen_subject gen_subjects_mime[] = {
    {"=?UTF-8?B?SGVsbG8gd29ybGQ=?= ", true, ""},
    {"=?ISO-8859-1?Q?R=E9sum=E9?= ", true, ""},
};

static const char *const gen_subjects_bounce[] = {
    "Undelivered Mail Returned to Sender",
    "Delivery Status Notification (Failure)",
    "Mail delivery failed: returning message to sender",
};

static const char *const gen_words[] = {
    "quarterly", "update", "regarding", "the",   "shipment", "and",    "invoice", "for",
    "project",   "status", "meeting",   "notes", "budget",   "review", "action",  "items",
};

/* Classification per mille, in enum order (clean first). */
static const unsigned gen_classification_per_mille[] = {
    [TANDEM_CLASSIFICATION_CLEAN] = 620,     [TANDEM_CLASSIFICATION_SPAM] = 300,
    [TANDEM_CLASSIFICATION_VIRUS] = 4,       [TANDEM_CLASSIFICATION_BANNED_FILE] = 11,
    [TANDEM_CLASSIFICATION_BAD_HEADER] = 55, [TANDEM_CLASSIFICATION_OVERSIZED] = 10,
};

/* ------------------------------------------------------------------------
 * Bounded text.
 * ------------------------------------------------------------------------ */

struct gen_text {
    char *buf;       /* NUL-terminated at size. */
    size_t size;     /* Bytes before the NUL. */
    size_t capacity; /* Bytes of buf, NUL included. */
};

static void text_init(struct gen_text *text, char *buf, size_t capacity)
{
    tdm_assert(capacity > 0);
    text->buf = buf;
    text->size = 0;
    text->capacity = capacity;
    buf[0] = '\0';
}

static void text_append_bytes(struct gen_text *text, const char *bytes, size_t size)
{
    tdm_assert(text->size + size < text->capacity);
    memcpy(text->buf + text->size, bytes, size);
    text->size += size;
    text->buf[text->size] = '\0';
}

static void text_append(struct gen_text *text, const char *s)
{
    text_append_bytes(text, s, strlen(s));
}

/* Append s with ASCII letters lowered. */
static void text_append_lower(struct gen_text *text, const char *s)
{
    size_t start = text->size;
    text_append(text, s);
    for (size_t i = start; i < text->size; i++) {
        char c = text->buf[i];
        if (c >= 'A' && c <= 'Z') {
            text->buf[i] = (char)(c - 'A' + 'a');
        }
    }
}

static void text_append_u64(struct gen_text *text, uint64_t value)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, value);
    tdm_assert(n > 0);
    text_append_bytes(text, digits, (size_t)n);
}

/* Append value as exactly digit_count lower-case hex digits. */
static void text_append_hex(struct gen_text *text, uint64_t value, unsigned digit_count)
{
    static const char hex[] = "0123456789abcdef";
    char digits[16];
    tdm_assert(digit_count <= sizeof(digits));
    for (unsigned i = 0; i < digit_count; i++) {
        digits[digit_count - 1 - i] = hex[value & 0xf];
        value >>= 4;
    }
    text_append_bytes(text, digits, digit_count);
}

/* Append value as exactly digit_count decimal digits. */
static void text_append_padded(struct gen_text *text, uint64_t value, unsigned digit_count)
{
    char digits[20];
    tdm_assert(digit_count <= sizeof(digits));
    for (unsigned i = 0; i < digit_count; i++) {
        digits[digit_count - 1 - i] = (char)('0' + value % 10);
        value /= 10;
    }
    text_append_bytes(text, digits, digit_count);
}

/* ------------------------------------------------------------------------
 * Numbers.
 * ------------------------------------------------------------------------ */

static uint64_t gen_below(struct tdm_gen *gen, uint64_t bound)
{
    tdm_assert(bound > 0);
    return tdm_prng_below(&gen->prng, bound);
}

/* Uniform in (0, 1]. */
static double gen_uniform(struct tdm_gen *gen)
{
    return (double)((tdm_prng_next(&gen->prng) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* About N(0, 1): the Irwin-Hall sum of 12 uniforms, minus 6. */
static double gen_normal(struct tdm_gen *gen)
{
    double sum = 0.0;
    for (int i = 0; i < 12; i++) {
        sum += gen_uniform(gen);
    }
    return sum - 6.0;
}

/* Natural logarithm of x > 0, without libm: x = m * 2^e with m in [1, 2),
 * ln m = 2 atanh((m - 1) / (m + 1)). */
static double gen_ln(double x)
{
    tdm_assert(x > 0.0);
    int exponent = 0;
    while (x >= 2.0) {
        x /= 2.0;
        exponent++;
    }
    while (x < 1.0) {
        x *= 2.0;
        exponent--;
    }
    double t = (x - 1.0) / (x + 1.0);
    double t2 = t * t;
    double term = t;
    double sum = 0.0;
    for (int k = 1; k < 40; k += 2) {
        sum += term / k;
        term *= t2;
    }
    return 2.0 * sum + exponent * GEN_LN2;
}

/* e^x for |x| <= 40, without libm: halve until small, Taylor, square back. */
static double gen_exp(double x)
{
    tdm_assert(x <= 40.0);
    tdm_assert(x >= -40.0);
    int halving_count = 0;
    while (x > 0.5 || x < -0.5) {
        x /= 2.0;
        halving_count++;
    }
    double sum = 1.0;
    double term = 1.0;
    for (int k = 1; k < 14; k++) {
        term *= x / k;
        sum += term;
    }
    while (halving_count-- > 0) {
        sum *= sum;
    }
    return sum;
}

/* Exponential with the given mean. */
static double gen_exponential(struct tdm_gen *gen, double mean)
{
    return -gen_ln(gen_uniform(gen)) * mean;
}

/* Log-normal: median * e^(sigma * N(0,1)). */
static uint64_t gen_log_normal(struct tdm_gen *gen, double median, double sigma)
{
    double value = median * gen_exp(sigma * gen_normal(gen));
    return value < 1.0 ? 1 : (uint64_t)value;
}

static int32_t gen_milli(double value)
{
    double milli = value * 1000.0;
    return (int32_t)(milli >= 0.0 ? milli + 0.5 : milli - 0.5);
}

/* An identity hash of (seed, a, b, salt): the same for the same inputs. */
static uint64_t gen_hash(const struct tdm_gen *gen, uint64_t a, uint64_t b, enum gen_salt salt)
{
    uint64_t x = gen->seed ^ (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xc2b2ae3d27d4eb4fULL) ^
                 ((uint64_t)salt << 56);
    tdm_splitmix64(&x);
    return tdm_splitmix64(&x);
}

/* A bijection of 32-bit values (lowbias32): distinct mails, distinct ids. */
static uint32_t gen_mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static const char *gen_pick(struct tdm_gen *gen, const char *const *table, size_t count)
{
    return table[gen_below(gen, count)];
}

/* ------------------------------------------------------------------------
 * Identities.
 * ------------------------------------------------------------------------ */

static uint32_t customer_domain_count(const struct tdm_gen *gen, uint32_t customer_id)
{
    return 1 + (uint32_t)(gen_hash(gen, customer_id, 0, GEN_SALT_DOMAIN_COUNT) % 3);
}

/* "northwind-17.example": domain domain_index of a customer. */
static void customer_domain(const struct tdm_gen *gen, uint32_t customer_id, uint32_t domain_index,
                            struct gen_text *text)
{
    uint64_t word = gen_hash(gen, customer_id, domain_index, GEN_SALT_DOMAIN_WORD);
    uint64_t tld = gen_hash(gen, customer_id, domain_index, GEN_SALT_DOMAIN_TLD);
    text_append(text, gen_company_words[word % GEN_ARRAY_SIZE(gen_company_words)]);
    text_append(text, "-");
    text_append_u64(text, customer_id);
    if (domain_index > 0) {
        text_append(text, "-");
        text_append_u64(text, domain_index);
    }
    text_append(text, ".");
    text_append(text, gen_tlds[tld % GEN_ARRAY_SIZE(gen_tlds)]);
}

static uint32_t customer_user_count(const struct tdm_gen *gen, uint32_t customer_id)
{
    return GEN_USERS_MIN +
           (uint32_t)(gen_hash(gen, customer_id, 0, GEN_SALT_USER_COUNT) % GEN_USERS_SPAN);
}

/* "ada.lovelace.ZZPII-17-3@northwind-17.example": user user_index of a customer. */
static void customer_user_address(const struct tdm_gen *gen, uint32_t customer_id,
                                  uint32_t user_index, struct gen_text *text)
{
    uint64_t h = gen_hash(gen, customer_id, user_index, GEN_SALT_USER);
    text_append_lower(text, gen_first_names[h % GEN_ARRAY_SIZE(gen_first_names)]);
    text_append(text, ".");
    text_append_lower(text, gen_last_names[(h >> 16) % GEN_ARRAY_SIZE(gen_last_names)]);
    text_append(text, ".ZZPII-");
    text_append_u64(text, customer_id);
    text_append(text, "-");
    text_append_u64(text, user_index);
    text_append(text, "@");
    customer_domain(gen, customer_id,
                    (uint32_t)((h >> 32) % customer_domain_count(gen, customer_id)), text);
}

/* ------------------------------------------------------------------------
 * One mail.
 * ------------------------------------------------------------------------ */

static uint32_t mail_pick_customer(struct tdm_gen *gen)
{
    /* u^2 skews towards low ids: customer 1 gets the most mail. */
    double u = gen_uniform(gen);
    uint64_t id = 1 + (uint64_t)(u * u * gen->customer_count);
    return id > gen->customer_count ? gen->customer_count : (uint32_t)id;
}

static uint32_t mail_pick_recipient_count(struct tdm_gen *gen)
{
    uint64_t r = gen_below(gen, 100);
    if (r < 85) {
        return 1;
    }
    if (r < 98) {
        return 2 + (uint32_t)gen_below(gen, 4);
    }
    return 6 + (uint32_t)gen_below(gen, GEN_RECIPIENTS_MAX - 5);
}

static enum tandem_classification mail_pick_classification(struct tdm_gen *gen)
{
    uint64_t r = gen_below(gen, 1000);
    for (int c = TANDEM_CLASSIFICATION_CLEAN; c <= TANDEM_CLASSIFICATION_OVERSIZED; c++) {
        if (r < gen_classification_per_mille[c]) {
            return (enum tandem_classification)c;
        }
        r -= gen_classification_per_mille[c];
    }
    tdm_unreachable(); /* The table sums to 1000. */
}

static enum tandem_destination mail_pick_destination(struct tdm_gen *gen,
                                                     enum tandem_classification classification)
{
    uint64_t r = gen_below(gen, 100);
    switch (classification) {
    case TANDEM_CLASSIFICATION_CLEAN:
        return TANDEM_DESTINATION_DELIVERED;
    case TANDEM_CLASSIFICATION_SPAM:
        return r < 85 ? TANDEM_DESTINATION_QUARANTINED : TANDEM_DESTINATION_DELIVERED;
    case TANDEM_CLASSIFICATION_BAD_HEADER:
        return r < 20 ? TANDEM_DESTINATION_QUARANTINED : TANDEM_DESTINATION_DELIVERED;
    case TANDEM_CLASSIFICATION_OVERSIZED:
        return r < 95 ? TANDEM_DESTINATION_QUARANTINED : TANDEM_DESTINATION_DELIVERED;
    case TANDEM_CLASSIFICATION_VIRUS:
    case TANDEM_CLASSIFICATION_BANNED_FILE:
        return TANDEM_DESTINATION_QUARANTINED;
    }
    tdm_unreachable();
}

static uint64_t mail_pick_size(struct tdm_gen *gen, bool bounce)
{
    uint64_t size;
    switch (gen->mail.classification) {
    case TANDEM_CLASSIFICATION_OVERSIZED:
        return GEN_OVERSIZED_MIN + gen_below(gen, GEN_OVERSIZED_SPAN);
    case TANDEM_CLASSIFICATION_SPAM:
        size = gen_log_normal(gen, 8000.0, 0.8);
        break;
    case TANDEM_CLASSIFICATION_VIRUS:
    case TANDEM_CLASSIFICATION_BANNED_FILE:
        size = gen_log_normal(gen, 60000.0, 1.0);
        break;
    default:
        if (bounce) {
            size = gen_log_normal(gen, 5000.0, 0.4);
        } else if (gen_below(gen, 100) < 15) {
            size = gen_log_normal(gen, 400000.0, 1.0); /* With attachments. */
        } else {
            size = gen_log_normal(gen, 24000.0, 1.0);
        }
        break;
    }
    if (size < GEN_SIZE_MIN) {
        return GEN_SIZE_MIN;
    }
    return size > GEN_SIZE_MAX ? GEN_SIZE_MAX : size;
}

static int32_t mail_pick_spam_score(struct tdm_gen *gen)
{
    double score;
    switch (gen->mail.classification) {
    case TANDEM_CLASSIFICATION_CLEAN:
        score = -0.5 + 1.5 * gen_normal(gen);
        if (score > 4.999) {
            score = 4.999;
        }
        break;
    case TANDEM_CLASSIFICATION_SPAM:
        score = 5.0 + gen_exponential(gen, 6.0);
        if (score > GEN_SPAM_SCORE_MAX) {
            score = GEN_SPAM_SCORE_MAX;
        }
        break;
    case TANDEM_CLASSIFICATION_VIRUS:
    case TANDEM_CLASSIFICATION_BANNED_FILE:
        score = 2.0 + 3.0 * gen_normal(gen);
        break;
    case TANDEM_CLASSIFICATION_BAD_HEADER:
        score = 1.5 + 2.0 * gen_normal(gen);
        break;
    default:
        score = 0.0; /* Oversized mail is not scanned. */
        break;
    }
    int32_t milli = gen_milli(score);
    tdm_assert(milli <= TANDEM_SPAM_SCORE_MILLI_MAX);
    tdm_assert(milli >= -TANDEM_SPAM_SCORE_MILLI_MAX);
    return milli;
}

static void mail_make_threat(struct tdm_gen *gen)
{
    struct gen_text text;
    text_init(&text, gen->mail.threat, sizeof(gen->mail.threat));
    if (gen->mail.classification == TANDEM_CLASSIFICATION_VIRUS) {
        /* The EICAR test file is what most scanners see most often in tests. */
        text_append(&text, gen_below(gen, 4) == 0
                               ? gen_virus_names[0]
                               : gen_pick(gen, gen_virus_names, GEN_ARRAY_SIZE(gen_virus_names)));
    } else if (gen->mail.classification == TANDEM_CLASSIFICATION_BANNED_FILE) {
        text_append(&text, gen_pick(gen, gen_banned_files, GEN_ARRAY_SIZE(gen_banned_files)));
    }
    gen->mail.threat_size = text.size;
}

static void mail_make_sender(struct tdm_gen *gen, bool bounce)
{
    struct gen_text text;
    text_init(&text, gen->mail.sender, sizeof(gen->mail.sender));
    if (bounce) {
        gen->mail.sender_size = 0; /* RFC 5321 null reverse-path. */
        return;
    }
    uint64_t r = gen_below(gen, 100);
    if (gen->mail.classification == TANDEM_CLASSIFICATION_SPAM && r < 90) {
        static const char letters[] = "abcdefghijklmnopqrstuvwxyz";
        uint64_t letter_count = 5 + gen_below(gen, 6);
        for (uint64_t i = 0; i < letter_count; i++) {
            text_append_bytes(&text, &letters[gen_below(gen, 26)], 1);
        }
        text_append_u64(&text, gen_below(gen, 1000));
        text_append(&text, "@");
        text_append(&text, gen_pick(gen, gen_spam_words, GEN_ARRAY_SIZE(gen_spam_words)));
        text_append(&text, "-");
        text_append_u64(&text, gen_below(gen, 10000));
        text_append(&text, ".test");
    } else if (r < 10) {
        /* A colleague at the same customer. */
        uint32_t user = (uint32_t)gen_below(gen, customer_user_count(gen, gen->mail.customer_id));
        customer_user_address(gen, gen->mail.customer_id, user, &text);
    } else if (r < 55) {
        /* A person outside. */
        text_append_lower(&text, gen_pick(gen, gen_first_names, GEN_ARRAY_SIZE(gen_first_names)));
        text_append(&text, ".");
        text_append_lower(&text, gen_pick(gen, gen_last_names, GEN_ARRAY_SIZE(gen_last_names)));
        text_append(&text, ".ZZPII-x");
        text_append_u64(&text, gen_below(gen, 100000));
        text_append(&text, "@");
        text_append(&text,
                    gen_pick(gen, gen_external_domains, GEN_ARRAY_SIZE(gen_external_domains)));
    } else {
        /* A role account of a company: not personal data. */
        text_append(&text, gen_pick(gen, gen_role_names, GEN_ARRAY_SIZE(gen_role_names)));
        text_append(&text, "@");
        text_append(&text, gen_pick(gen, gen_company_words, GEN_ARRAY_SIZE(gen_company_words)));
        text_append(&text, "-");
        text_append_u64(&text, 1 + gen_below(gen, 500));
        text_append(&text, ".");
        text_append(&text, gen_pick(gen, gen_tlds, GEN_ARRAY_SIZE(gen_tlds)));
    }
    gen->mail.sender_size = text.size;
}

static void mail_make_relay(struct tdm_gen *gen)
{
    struct tandem_ip *ip = &gen->mail.relay_ip;
    memset(ip, 0, sizeof(*ip));
    if (gen_below(gen, 100) < 90) {
        static const uint8_t prefixes[3][3] = {{192, 0, 2}, {198, 51, 100}, {203, 0, 113}};
        const uint8_t *prefix = prefixes[gen_below(gen, 3)];
        ip->family = 4;
        memcpy(ip->bytes, prefix, 3);
        ip->bytes[3] = (uint8_t)(1 + gen_below(gen, 254));
        return;
    }
    ip->family = 6;
    ip->bytes[0] = 0x20;
    ip->bytes[1] = 0x01;
    ip->bytes[2] = 0x0d;
    ip->bytes[3] = 0xb8;
    for (size_t i = 4; i < sizeof(ip->bytes); i++) {
        ip->bytes[i] = (uint8_t)gen_below(gen, 256);
    }
}

static void mail_make_message_id(struct tdm_gen *gen)
{
    struct gen_text text;
    text_init(&text, gen->mail.message_id, sizeof(gen->mail.message_id));
    uint64_t r = gen_below(gen, 1000);
    if (r < 5) {
        gen->mail.message_id_size = 0; /* Some software sends none. */
        return;
    }
    /* A bijection of the mail's index: unique within this generator. */
    uint32_t unique =
        gen_mix32((uint32_t)gen->mail.index ^ (uint32_t)gen_hash(gen, 0, 0, GEN_SALT_MESSAGE_ID));
    const char *domain = "mailer.example.net";
    if (gen->mail.sender_size > 0) {
        domain = strchr(gen->mail.sender, '@');
        tdm_assert(domain != NULL);
        domain++;
    }
    text_append(&text, "<");
    if (r < 700) {
        /* "<20261128035702.ab12cd3f@mx3.example.net>" */
        time_t seconds = (time_t)(gen->time_ns / 1000000000LL);
        struct tm tm;
        tdm_assert(gmtime_r(&seconds, &tm) != NULL);
        text_append_padded(&text, (uint64_t)tm.tm_year + 1900, 4);
        text_append_padded(&text, (uint64_t)tm.tm_mon + 1, 2);
        text_append_padded(&text, (uint64_t)tm.tm_mday, 2);
        text_append_padded(&text, (uint64_t)tm.tm_hour, 2);
        text_append_padded(&text, (uint64_t)tm.tm_min, 2);
        text_append_padded(&text, (uint64_t)tm.tm_sec, 2);
        text_append(&text, ".");
        text_append_hex(&text, unique, 8);
        text_append(&text, "@mx");
        text_append_u64(&text, 1 + gen_below(gen, 9));
        text_append(&text, ".");
    } else {
        /* Outlook-like: 32 hex digits. */
        text_append_hex(&text, unique, 8);
        text_append_hex(&text, tdm_prng_next(&gen->prng), 16);
        text_append_hex(&text, tdm_prng_next(&gen->prng), 8);
        text_append(&text, "@");
    }
    text_append(&text, domain);
    text_append(&text, ">");
    gen->mail.message_id_size = text.size;
}

static void subject_append(struct tdm_gen *gen, struct gen_text *text,
                           const struct gen_subject *table, size_t count)
{
    const struct gen_subject *subject = &table[gen_below(gen, count)];
    text_append(text, subject->prefix);
    if (subject->number) {
        text_append_u64(text, 1 + gen_below(gen, 99999));
    }
    text_append(text, subject->suffix);
}

static void mail_make_subject(struct tdm_gen *gen, bool bounce)
{
    struct gen_text text;
    text_init(&text, gen->mail.subject, sizeof(gen->mail.subject));
    uint64_t r = gen_below(gen, 1000);
    if (bounce) {
        text_append(&text, gen_pick(gen, gen_subjects_bounce, GEN_ARRAY_SIZE(gen_subjects_bounce)));
    } else if (r < 10) {
        /* Empty. */
    } else if (r < 15) {
        uint64_t target = 300 + gen_below(gen, GEN_SUBJECT_LONG_MAX - 300);
        for (;;) {
            const char *word = gen_pick(gen, gen_words, GEN_ARRAY_SIZE(gen_words));
            if (text.size + 1 + strlen(word) > target) {
                break;
            }
            if (text.size > 0) {
                text_append(&text, " ");
            }
            text_append(&text, word);
        }
    } else if (r < 65) {
        subject_append(gen, &text, gen_subjects_latin1, GEN_ARRAY_SIZE(gen_subjects_latin1));
    } else if (r < 115) {
        subject_append(gen, &text, gen_subjects_utf8, GEN_ARRAY_SIZE(gen_subjects_utf8));
    } else if (r < 145) {
        subject_append(gen, &text, gen_subjects_mime, GEN_ARRAY_SIZE(gen_subjects_mime));
    } else if (gen->mail.classification == TANDEM_CLASSIFICATION_SPAM) {
        subject_append(gen, &text, gen_subjects_spam, GEN_ARRAY_SIZE(gen_subjects_spam));
    } else {
        subject_append(gen, &text, gen_subjects_clean, GEN_ARRAY_SIZE(gen_subjects_clean));
    }
    gen->mail.subject_size = text.size;
}

/* Step 1: a new mail. */
static void mail_start(struct tdm_gen *gen)
{
    struct tdm_gen_mail *mail = &gen->mail;
    int64_t gap_ns = (int64_t)gen_exponential(gen, GEN_MAIL_GAP_NS_MEAN);
    gen->time_ns += gap_ns > 0 ? gap_ns : 1;
    mail->index++;
    mail->customer_id = mail_pick_customer(gen);
    mail->recipient_count = mail_pick_recipient_count(gen);
    mail->recipients_left = mail->recipient_count;
    mail->user_first = (uint32_t)gen_below(gen, customer_user_count(gen, mail->customer_id));
    bool bounce = gen_below(gen, 100) < 2;
    if (bounce) {
        mail->classification = gen_below(gen, 10) == 0 ? TANDEM_CLASSIFICATION_BAD_HEADER
                                                       : TANDEM_CLASSIFICATION_CLEAN;
    } else {
        mail->classification = mail_pick_classification(gen);
    }
    mail->destination = mail_pick_destination(gen, mail->classification);
    mail->size = mail_pick_size(gen, bounce);
    mail->spam_score_milli = mail_pick_spam_score(gen);
    mail_make_threat(gen);
    mail_make_sender(gen, bounce);
    mail_make_relay(gen);
    mail_make_message_id(gen);
    mail_make_subject(gen, bounce);
    tdm_assert(mail->recipients_left >= 1);
    tdm_assert(mail->recipients_left <= GEN_RECIPIENTS_MAX);
}

void tdm_gen_init(struct tdm_gen *gen, uint64_t seed, uint32_t customer_count)
{
    tdm_assert(gen != NULL);
    tdm_assert(customer_count >= 1);
    memset(gen, 0, sizeof(*gen));
    gen->seed = seed;
    gen->customer_count = customer_count;
    tdm_prng_init(&gen->prng, seed);
    gen->time_ns = TDM_GEN_TIME_BASE_NS;
}

void tdm_gen_message(struct tdm_gen *gen, struct tandem_record *out)
{
    tdm_assert(gen != NULL);
    tdm_assert(out != NULL);
    struct tdm_gen_mail *mail = &gen->mail;
    if (mail->recipients_left == 0) {
        mail_start(gen);
    } else {
        gen->time_ns +=
            1000 *
            (int64_t)(GEN_RECIPIENT_GAP_US_MIN +
                      gen_below(gen, GEN_RECIPIENT_GAP_US_MAX - GEN_RECIPIENT_GAP_US_MIN + 1));
    }

    /* Step 2: consecutive users, so one mail never repeats a recipient. */
    uint32_t user_count = customer_user_count(gen, mail->customer_id);
    uint32_t recipient_index = mail->recipient_count - mail->recipients_left;
    tdm_assert(recipient_index < user_count);
    uint32_t user = (mail->user_first + recipient_index) % user_count;
    struct gen_text text;
    text_init(&text, gen->recipient, sizeof(gen->recipient));
    customer_user_address(gen, mail->customer_id, user, &text);
    gen->recipient_size = text.size;
    mail->recipients_left--;
    gen->message_count++;

    /* Step 3. */
    memset(out, 0, sizeof(*out));
    out->type = TANDEM_RECORD_MESSAGE;
    struct tandem_message *m = &out->message;
    m->customer_id = mail->customer_id;
    m->time_ns = gen->time_ns;
    m->size = mail->size;
    m->destination = mail->destination;
    m->classification = mail->classification;
    m->threat = (struct tandem_bytes){mail->threat, mail->threat_size};
    m->recipient = (struct tandem_bytes){gen->recipient, gen->recipient_size};
    m->spam_score_milli = mail->spam_score_milli;
    m->message_id = (struct tandem_bytes){mail->message_id, mail->message_id_size};
    m->sender = (struct tandem_bytes){mail->sender, mail->sender_size};
    m->relay_ip = mail->relay_ip;
    m->subject = (struct tandem_bytes){mail->subject, mail->subject_size};
    tdm_assert(m->time_ns > 0);
    tdm_assert(m->recipient.size > 0);
}

void tdm_gen_customer(struct tdm_gen *gen, uint32_t customer_id, struct tandem_record *out)
{
    tdm_assert(gen != NULL);
    tdm_assert(out != NULL);
    const char *first = gen_first_names[gen_hash(gen, customer_id, 0, GEN_SALT_FIRST_NAME) %
                                        GEN_ARRAY_SIZE(gen_first_names)];
    const char *last = gen_last_names[gen_hash(gen, customer_id, 0, GEN_SALT_LAST_NAME) %
                                      GEN_ARRAY_SIZE(gen_last_names)];
    struct gen_text first_name;
    struct gen_text last_name;
    struct gen_text email;
    struct gen_text username;
    struct gen_text phone;
    struct gen_text address;

    /* "Ada-ZZPII-17" "Lovelace-ZZPII-17" */
    text_init(&first_name, gen->first_name, sizeof(gen->first_name));
    text_append(&first_name, first);
    text_append(&first_name, "-ZZPII-");
    text_append_u64(&first_name, customer_id);
    text_init(&last_name, gen->last_name, sizeof(gen->last_name));
    text_append(&last_name, last);
    text_append(&last_name, "-ZZPII-");
    text_append_u64(&last_name, customer_id);

    /* "ada.lovelace.ZZPII-17@northwind-17.example" */
    text_init(&email, gen->email, sizeof(gen->email));
    text_append_lower(&email, first);
    text_append(&email, ".");
    text_append_lower(&email, last);
    text_append(&email, ".ZZPII-");
    text_append_u64(&email, customer_id);
    text_append(&email, "@");
    customer_domain(gen, customer_id, 0, &email);

    /* "alovelace-ZZPII-17" */
    text_init(&username, gen->username, sizeof(gen->username));
    char initial[2] = {first[0], '\0'};
    text_append_lower(&username, initial);
    text_append_lower(&username, last);
    text_append(&username, "-ZZPII-");
    text_append_u64(&username, customer_id);

    /* Fictional numbers: "+1-555-0142-ZZPII-17" or "+44-20-7946-0123-ZZPII". */
    text_init(&phone, gen->phone, sizeof(gen->phone));
    if (gen_below(gen, 10) < 7) {
        text_append(&phone, "+1-555-01");
        text_append_padded(&phone, gen_below(gen, 100), 2);
        text_append(&phone, "-ZZPII-");
        text_append_u64(&phone, customer_id);
    } else {
        text_append(&phone, "+44-20-7946-0");
        text_append_padded(&phone, gen_below(gen, 1000), 3);
        text_append(&phone, "-ZZPII");
    }

    /* "17 Example Street, Springfield 12345, ZZPII-17" */
    text_init(&address, gen->address, sizeof(gen->address));
    text_append_u64(&address, 1 + gen_below(gen, 999));
    text_append(&address, " ");
    text_append(&address, gen_pick(gen, gen_streets, GEN_ARRAY_SIZE(gen_streets)));
    text_append(&address, " Street, ");
    text_append(&address, gen_pick(gen, gen_cities, GEN_ARRAY_SIZE(gen_cities)));
    text_append(&address, " ");
    text_append_padded(&address, 10000 + gen_below(gen, 90000), 5);
    text_append(&address, ", ZZPII-");
    text_append_u64(&address, customer_id);

    memset(out, 0, sizeof(*out));
    out->type = TANDEM_RECORD_CUSTOMER;
    struct tandem_customer *c = &out->customer;
    c->customer_id = customer_id;
    c->first_name = (struct tandem_bytes){first_name.buf, first_name.size};
    c->last_name = (struct tandem_bytes){last_name.buf, last_name.size};
    c->email = (struct tandem_bytes){email.buf, email.size};
    c->username = (struct tandem_bytes){username.buf, username.size};
    c->phone = (struct tandem_bytes){phone.buf, phone.size};
    c->address = (struct tandem_bytes){address.buf, address.size};
}
