/* tools/gen.h: a seeded generator of realistic, synthetic records for tests,
 * benchmarks and demos (RELIABILITY 3.8: all test data is synthetic).
 *
 * The same seed and customer_count always give the same stream of records.
 * Every name, personal email address and phone number carries the marker token
 * "ZZPII" (e.g. first_name "Ada-ZZPII-17"), so an artefact scanner can prove
 * that no record leaked into logs or reports. Every value is within the limits
 * of include/tandem.h and passes tandem_record_validate(). */
#ifndef TDM_TOOLS_GEN_H
#define TDM_TOOLS_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/prng.h"
#include "tandem.h"

/* Time of the first message: 2026-11-28T00:00:00Z, in ns since 1970. */
#define TDM_GEN_TIME_BASE_NS (1795824000LL * 1000000000LL)

/* The mail whose records tdm_gen_message() is handing out, one per recipient. */
struct tdm_gen_mail {
    uint64_t index;           /* Mails started so far, this one included. */
    uint32_t recipient_count; /* Records of this mail: 1 .. 20. */
    uint32_t recipients_left; /* Records of this mail still to come. */
    uint32_t user_first;      /* Customer's user of the first record. */
    uint32_t customer_id;
    uint64_t size; /* Bytes. */
    enum tandem_destination destination;
    enum tandem_classification classification;
    int32_t spam_score_milli;
    struct tandem_ip relay_ip;
    size_t threat_size; /* Bytes in threat. */
    size_t message_id_size;
    size_t sender_size;
    size_t subject_size;
    char threat[TANDEM_THREAT_SIZE_MAX + 1]; /* NUL-terminated, like the others. */
    char message_id[TANDEM_MESSAGE_ID_SIZE_MAX + 1];
    char sender[TANDEM_ADDRESS_SIZE_MAX + 1];
    char subject[TANDEM_SUBJECT_SIZE_MAX + 1]; /* Raw bytes; may hold Latin-1. */
};

/* A generator. Plain memory: no deinit. Thread: one thread at a time. */
struct tdm_gen {
    uint64_t seed;            /* As given to tdm_gen_init(). */
    uint32_t customer_count;  /* Messages go to customers 1 .. customer_count. */
    struct tdm_prng prng;     /* Everything random except identities. */
    int64_t time_ns;          /* Time of the last message record. */
    uint64_t message_count;   /* Message records generated. */
    struct tdm_gen_mail mail; /* The current mail. */
    size_t recipient_size;
    char recipient[TANDEM_ADDRESS_SIZE_MAX + 1];
    /* The last customer record's strings (NUL-terminated). */
    char first_name[TANDEM_NAME_SIZE_MAX + 1];
    char last_name[TANDEM_NAME_SIZE_MAX + 1];
    char email[TANDEM_ADDRESS_SIZE_MAX + 1];
    char username[TANDEM_USERNAME_SIZE_MAX + 1];
    char phone[TANDEM_PHONE_SIZE_MAX + 1];
    char address[TANDEM_POSTAL_SIZE_MAX + 1];
};

/* Initialise gen for seed and customer_count (>= 1) customers, numbered 1 ..
 * customer_count. Cannot fail. */
void tdm_gen_init(struct tdm_gen *gen, uint64_t seed, uint32_t customer_count);

/* Write the next message record into out. Its strings point into gen and stay
 * valid until the next tdm_gen_message() call on gen (tdm_gen_customer() does
 * not touch them). What the stream looks like:
 * - time_ns strictly increases from TDM_GEN_TIME_BASE_NS: mails arrive about
 *   every 25 ms (exponential gaps); the records of one mail follow it by a
 *   few hundred microseconds each.
 * - A mail goes to 1 recipient (85%), 2-5 (13%) or 6-20 (2%): its records
 *   share customer_id, message_id, sender, subject, size, classification,
 *   destination, spam score and relay; recipients are users of the customer's
 *   own 1-3 domains ("ada.lovelace.ZZPII-17-3@northwind-17.example").
 * - Customers are skewed: low ids receive much more mail than high ones.
 * - classification: clean 62%, spam 30%, bad_header 5.5%, banned_file 1.1%,
 *   oversized 1%, virus 0.4%; spam, virus, banned_file and oversized are
 *   mostly quarantined; threat is set exactly for virus ("Eicar-Test-Signature",
 *   ...) and banned_file ("invoice.exe", ...).
 * - size: log-normal around 24 KB (spam 8 KB, attachments 400 KB), at least
 *   300 bytes; oversized mails are 50-150 MB.
 * - spam_score: three decimals; negative for much clean mail, 5-60 for spam.
 * - sender: empty for bounces (2%); otherwise colleagues, outside people
 *   (marked ZZPII), role accounts and spammers, on RFC 2606 domains.
 * - message_id: "<20261128035702.ab12cd3f@mx3.example.net>" or Outlook-like
 *   hex, unique per mail within one generator (up to 2^32 mails); empty for
 *   0.5% of mails.
 * - relay_ip: RFC 5737 IPv4 (90%) or RFC 3849 IPv6 (10%) documentation
 *   addresses.
 * - subject: English templates; 5% Latin-1 bytes (not valid UTF-8), 5%
 *   UTF-8, 3% MIME encoded-words, 1% empty, 0.5% long (up to 990 bytes). */
void tdm_gen_message(struct tdm_gen *gen, struct tandem_record *out);

/* Write a customer record for customer_id into out. Its strings point into
 * gen and stay valid until the next tdm_gen_customer() call on gen. The
 * identity (names, email, username, email domain) depends only on the seed
 * and customer_id, and the email's domain is the first one the customer's
 * messages go to; phone and postal address come from the random stream, so
 * calling again for the same id gives an update of the same person. */
void tdm_gen_customer(struct tdm_gen *gen, uint32_t customer_id, struct tandem_record *out);

#endif
