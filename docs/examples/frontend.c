/* docs/examples/frontend.c: how a mail frontend uses libtandem.
 *
 * A frontend links libtandem, opens its node directory once, appends one
 * message record per processed mail from its worker threads, and looks
 * customers up at login. This program walks through that:
 *
 * 1. Open a fresh node directory with TANDEM_OPEN_CREATE.
 * 2. Store a customer record (the identity used at login).
 * 3. Append message records from FRONTEND_THREAD_COUNT worker threads, one
 *    tandem_append() per mail. Each call returns once its record is durable;
 *    concurrent calls share an fdatasync (group commit).
 * 4. Append one record with tandem_append_async(), as an event-loop frontend
 *    would, and wait for its callback.
 * 5. Log the customer in: find the record by username.
 * 6. Query the customer's mail in a time window, and one mail by Message-ID.
 * 7. Read tandem_status(), close, and remove the directory.
 *
 * Usage: frontend [PARENT]. The node directory is a new mkdtemp directory under
 * PARENT (default $TMPDIR or /tmp), removed at the end. Exit status 0 when
 * every step returned what it should, 1 otherwise.
 *
 * Build: cc frontend.c $(pkg-config --cflags --libs tandem) -pthread */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, nftw */
#endif
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"

#define FRONTEND_THREAD_COUNT     4
#define FRONTEND_MAILS_PER_THREAD 50
#define FRONTEND_CUSTOMER_ID      42
#define FRONTEND_TIME_BASE_NS     1795824000000000000LL /* 2026-11-28T00:00:00Z */
#define FRONTEND_SECOND_NS        1000000000LL

static struct tandem *frontend_store;

static void frontend_check(int rv, const char *what, const struct tandem_diag *diag)
{
    if (rv == 0) {
        return;
    }
    fprintf(stderr, "frontend: %s: %s%s%s\n", what, tandem_strerror(rv),
            diag != NULL && diag->message[0] != '\0' ? ": " : "",
            diag != NULL ? diag->message : "");
    exit(1);
}

/* The metadata of mail number mail_index, handled by worker thread_index. The
 * strings live in the caller's buffers: tandem_append() copies them. */
struct frontend_mail {
    char recipient[64];
    char message_id[96];
    char subject[64];
};

static struct tandem_record frontend_message(struct frontend_mail *mail, int thread_index,
                                             int mail_index)
{
    snprintf(mail->recipient, sizeof(mail->recipient), "user%d@customer42.example", mail_index % 5);
    snprintf(mail->message_id, sizeof(mail->message_id), "<%d.%d@mx%d.example.net>", mail_index,
             thread_index, thread_index);
    snprintf(mail->subject, sizeof(mail->subject), "Invoice %d", mail_index);
    struct tandem_record record = {.type = TANDEM_RECORD_MESSAGE};
    struct tandem_message *message = &record.message;
    message->customer_id = FRONTEND_CUSTOMER_ID;
    /* One mail per second per thread: mail i of every thread at second i. */
    message->time_ns = FRONTEND_TIME_BASE_NS + mail_index * FRONTEND_SECOND_NS + thread_index;
    message->size = 2048 + (uint64_t)mail_index;
    message->destination =
        mail_index % 10 == 0 ? TANDEM_DESTINATION_QUARANTINED : TANDEM_DESTINATION_DELIVERED;
    message->classification =
        mail_index % 10 == 0 ? TANDEM_CLASSIFICATION_SPAM : TANDEM_CLASSIFICATION_CLEAN;
    message->recipient = (struct tandem_bytes){mail->recipient, strlen(mail->recipient)};
    message->spam_score_milli = mail_index % 10 == 0 ? 7500 : -1200;
    message->message_id = (struct tandem_bytes){mail->message_id, strlen(mail->message_id)};
    message->sender = (struct tandem_bytes){"billing@supplier.example", 24};
    message->relay_ip.family = 4;
    memcpy(message->relay_ip.bytes, (uint8_t[]){192, 0, 2, (uint8_t)(10 + thread_index)}, 4);
    message->subject = (struct tandem_bytes){mail->subject, strlen(mail->subject)};
    return record;
}

/* Step 3: a worker thread appends one record per mail, as it processes it. */
static void *frontend_worker(void *arg)
{
    int thread_index = (int)(intptr_t)arg;
    for (int i = 0; i < FRONTEND_MAILS_PER_THREAD; i++) {
        struct frontend_mail mail;
        struct tandem_record record = frontend_message(&mail, thread_index, i);
        struct tandem_diag diag = {{0}};
        uint64_t lsn = 0;
        /* Returns once the record is durable: only then may the frontend tell
         * the sending server that the mail was accepted. */
        frontend_check(tandem_append(frontend_store, &record, 1, &lsn, &diag), "append", &diag);
    }
    return NULL;
}

/* Step 4: completion of tandem_append_async(), on the engine's commit thread. */
struct frontend_async {
    pthread_mutex_t mutex;
    pthread_cond_t done_cond;
    bool done;
    int status;
    uint64_t lsn;
};

static void frontend_async_cb(void *data, int status, uint64_t lsn_first)
{
    struct frontend_async *async = data;
    pthread_mutex_lock(&async->mutex);
    async->done = true;
    async->status = status;
    async->lsn = lsn_first;
    pthread_cond_signal(&async->done_cond);
    pthread_mutex_unlock(&async->mutex);
}

static void frontend_append_async(void)
{
    struct frontend_async async = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0,
                                   0};
    struct frontend_mail mail;
    struct tandem_record record = frontend_message(&mail, FRONTEND_THREAD_COUNT, 0);
    struct tandem_diag diag = {{0}};
    frontend_check(
        tandem_append_async(frontend_store, &record, 1, frontend_async_cb, &async, &diag),
        "append_async", &diag);
    pthread_mutex_lock(&async.mutex);
    while (!async.done) {
        pthread_cond_wait(&async.done_cond, &async.mutex);
    }
    pthread_mutex_unlock(&async.mutex);
    frontend_check(async.status, "append_async callback", NULL);
    printf("async append: durable at lsn %llu\n", (unsigned long long)async.lsn);
}

static void frontend_store_customer(void)
{
    struct tandem_record record = {.type = TANDEM_RECORD_CUSTOMER};
    struct tandem_customer *customer = &record.customer;
    customer->customer_id = FRONTEND_CUSTOMER_ID;
    customer->first_name = (struct tandem_bytes){"Zo\xc3\xa9", 4}; /* "Zoé" in UTF-8. */
    customer->last_name = (struct tandem_bytes){"Martin", 6};
    customer->email = (struct tandem_bytes){"zoe.martin@customer42.example", 29};
    customer->username = (struct tandem_bytes){"zmartin", 7};
    customer->phone = (struct tandem_bytes){"+33 1 23 45 67 89", 17};
    customer->address = (struct tandem_bytes){"1 rue de la Paix, 75002 Paris", 29};
    struct tandem_diag diag = {{0}};
    uint64_t lsn = 0;
    frontend_check(tandem_append(frontend_store, &record, 1, &lsn, &diag), "append customer",
                   &diag);
    printf("customer %u stored at lsn %llu\n", FRONTEND_CUSTOMER_ID, (unsigned long long)lsn);
}

/* Query callbacks: count what comes back (records are valid only during the call). */
static int frontend_count_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)lsn;
    (void)record;
    (*(unsigned *)data)++;
    return 0;
}

static int frontend_login_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)lsn;
    if (record->type == TANDEM_RECORD_CUSTOMER) {
        *(uint32_t *)data = record->customer.customer_id;
    }
    return 1; /* The first match is enough: stop. */
}

static void frontend_expect(unsigned got, unsigned want, const char *what)
{
    printf("%s: %u record%s\n", what, got, got == 1 ? "" : "s");
    if (got != want) {
        fprintf(stderr, "frontend: %s: got %u records, expected %u\n", what, got, want);
        exit(1);
    }
}

/* Steps 5 and 6. */
static void frontend_read(void)
{
    struct tandem_diag diag = {{0}};
    uint32_t customer_id = 0;
    frontend_check(tandem_customer_find(frontend_store, TANDEM_CUSTOMER_KEY_USERNAME, "zmartin", 7,
                                        frontend_login_cb, &customer_id, &diag),
                   "login lookup", &diag);
    frontend_expect(customer_id == FRONTEND_CUSTOMER_ID, 1, "login of zmartin");

    /* Mails 10..19 of every worker thread (seconds 10 to 19, until exclusive). */
    struct tandem_query query;
    tandem_query_init(&query, FRONTEND_CUSTOMER_ID);
    query.since_ns = FRONTEND_TIME_BASE_NS + 10 * FRONTEND_SECOND_NS;
    query.until_ns = FRONTEND_TIME_BASE_NS + 20 * FRONTEND_SECOND_NS;
    unsigned count = 0;
    frontend_check(tandem_query(frontend_store, &query, frontend_count_cb, &count, &diag), "query",
                   &diag);
    frontend_expect(count, 10 * FRONTEND_THREAD_COUNT, "customer 42, seconds 10 to 19");

    const char *message_id = "<7.2@mx2.example.net>";
    count = 0;
    frontend_check(tandem_get(frontend_store, message_id, strlen(message_id), frontend_count_cb,
                              &count, &diag),
                   "get", &diag);
    frontend_expect(count, 1, "Message-ID <7.2@mx2.example.net>");
}

static int frontend_remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    const char *parent = argc > 1 ? argv[1] : getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tandem-frontend-XXXXXX",
             parent != NULL && parent[0] != '\0' ? parent : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("frontend: mkdtemp");
        return 1;
    }

    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    struct tandem_diag diag = {{0}};
    frontend_check(tandem_open(dir, &options, &frontend_store, &diag), "open", &diag);

    frontend_store_customer();
    pthread_t threads[FRONTEND_THREAD_COUNT];
    for (int i = 0; i < FRONTEND_THREAD_COUNT; i++) {
        if (pthread_create(&threads[i], NULL, frontend_worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "frontend: pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < FRONTEND_THREAD_COUNT; i++) {
        pthread_join(threads[i], NULL);
    }
    printf("%d threads appended %d mails each\n", FRONTEND_THREAD_COUNT, FRONTEND_MAILS_PER_THREAD);
    frontend_append_async();
    frontend_read();

    struct tandem_status status;
    frontend_check(tandem_status(frontend_store, &status), "status", NULL);
    printf("status: lsn %llu..%llu, epoch %llu, %u segment(s), index at lsn %llu\n",
           (unsigned long long)status.lsn_first, (unsigned long long)status.lsn_last,
           (unsigned long long)status.epoch, status.segment_count,
           (unsigned long long)status.index_lsn);
    unsigned want = 1 + FRONTEND_THREAD_COUNT * FRONTEND_MAILS_PER_THREAD + 1;
    frontend_expect((unsigned)status.lsn_last, want, "records in the log");

    tandem_close(frontend_store);
    nftw(dir, frontend_remove_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
