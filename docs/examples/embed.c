/* docs/examples/embed.c: an application that embeds a tandem node.
 *
 * A mail frontend that runs where a node of the cluster runs can run that
 * node itself instead of beside a tandemd: it links libtandem, starts its node
 * with tandem_server_start() (the same tandem.conf, local socket, links and
 * TLS clients as tandemd), and gets the same replication. Writes go through
 * the client API on the node's local socket, so that each is acknowledged
 * only once min_copies nodes hold it durably (on a backup, the node forwards
 * it to the primary); reads are answered from this process's copy,
 * tandem_server_node(). This program walks through that:
 *
 * 1. Start the node of every DIR given, each on a thread of its own. A real
 *    application runs one, its own; two show a whole cluster in one process.
 * 2. Open a client on the first node's local socket: tandem_client_open(DIR,
 *    NULL, ...). No certificate: the socket's file permissions guard it.
 * 3. Store a customer record and EMBED_MAIL_COUNT message records: the first
 *    half with tandem_client_append(), which returns once acknowledged, the
 *    rest with tandem_client_append_async(), as a frontend built on an event
 *    loop would: the call returns at once, and a callback on the client's
 *    thread says when each is acknowledged.
 * 4. On every node's own copy: log the customer in (find by username) and
 *    query their mail. A backup may show an acknowledged record a moment
 *    after the primary acknowledged it: poll, bounded.
 * 5. Close the client and stop every node (tandem_server_stop(): as tandemd
 *    on SIGTERM, it answers what is in flight, closes the links and the node).
 *
 * Usage: embed DIR [DIR...], each a node directory made by `tandem init` (a
 * standalone node, or the nodes of one cluster: `tandem ca CADIR --cluster
 * NAME`, then `tandem init DIR --cluster NAME --node ID --listen HOST:PORT
 * --ca CADIR --peer ID=HOST:PORT...`). Exit status 0 when every step returned
 * what it should, 1 otherwise.
 *
 * Build: cc embed.c $(pkg-config --cflags --libs tandem) */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tandem.h"

#define EMBED_NODES_MAX      8
#define EMBED_MAIL_COUNT     20
#define EMBED_CUSTOMER_ID    7
#define EMBED_TIME_BASE_NS   1795824000000000000LL /* 2026-11-28T00:00:00Z */
#define EMBED_SECOND_NS      1000000000LL
#define EMBED_POLL_MS        10
#define EMBED_POLL_COUNT_MAX 2000 /* 20 s for a backup to show what was acknowledged. */

static void embed_check(int rv, const char *what, const struct tandem_diag *diag)
{
    if (rv == 0) {
        return;
    }
    fprintf(stderr, "embed: %s: %s%s%s\n", what, tandem_strerror(rv),
            diag != NULL && diag->message[0] != '\0' ? ": " : "",
            diag != NULL ? diag->message : "");
    exit(1);
}

/* Step 3, asynchronous appends: what their callbacks report. */
struct embed_pending {
    pthread_mutex_t lock;
    pthread_cond_t done;
    int waiting;       /* Calls whose callback has not run yet. */
    int failed;        /* The first failure's status; 0 if none. */
    uint64_t lsn_last; /* The highest LSN acknowledged. */
    char message[TANDEM_DIAG_SIZE];
};

/* Runs on the client's thread once the node answered: quick, no blocking. */
static void embed_acknowledged(void *data, int status, uint64_t lsn_first,
                               const struct tandem_diag *diag)
{
    struct embed_pending *pending = data;
    pthread_mutex_lock(&pending->lock);
    if (status != 0 && pending->failed == 0) {
        pending->failed = status;
        snprintf(pending->message, sizeof(pending->message), "%s", diag->message);
    } else if (status == 0 && lsn_first > pending->lsn_last) {
        pending->lsn_last = lsn_first;
    }
    if (--pending->waiting == 0) {
        pthread_cond_signal(&pending->done);
    }
    pthread_mutex_unlock(&pending->lock);
}

/* Step 3: the customer, then one record per mail. The strings live in the
 * caller's buffers: both append calls copy them before they return. */
static void embed_write(struct tandem_client *client)
{
    struct tandem_record customer = {.type = TANDEM_RECORD_CUSTOMER};
    customer.customer.customer_id = EMBED_CUSTOMER_ID;
    customer.customer.first_name = (struct tandem_bytes){"Ada", 3};
    customer.customer.last_name = (struct tandem_bytes){"Lovelace", 8};
    customer.customer.email = (struct tandem_bytes){"ada@customer7.example", 21};
    customer.customer.username = (struct tandem_bytes){"ada", 3};
    customer.customer.address = (struct tandem_bytes){"12 St James's Square, London", 28};
    struct tandem_diag diag = {{0}};
    uint64_t lsn = 0;
    embed_check(tandem_client_append(client, &customer, 1, &lsn, &diag), "append customer", &diag);
    printf("customer %d acknowledged at lsn %llu\n", EMBED_CUSTOMER_ID, (unsigned long long)lsn);

    struct embed_pending pending = {.waiting = 0};
    pthread_mutex_init(&pending.lock, NULL);
    pthread_cond_init(&pending.done, NULL);
    for (int i = 0; i < EMBED_MAIL_COUNT; i++) {
        char message_id[64];
        snprintf(message_id, sizeof(message_id), "<%d@mx1.example.net>", i);
        struct tandem_record record = {.type = TANDEM_RECORD_MESSAGE};
        struct tandem_message *message = &record.message;
        message->customer_id = EMBED_CUSTOMER_ID;
        message->time_ns = EMBED_TIME_BASE_NS + i * EMBED_SECOND_NS;
        message->size = 1024;
        message->destination = TANDEM_DESTINATION_DELIVERED;
        message->classification = TANDEM_CLASSIFICATION_CLEAN;
        message->recipient = (struct tandem_bytes){"ada@customer7.example", 21};
        message->message_id = (struct tandem_bytes){message_id, strlen(message_id)};
        message->sender = (struct tandem_bytes){"news@sender.example", 19};
        message->relay_ip.family = 4;
        message->relay_ip.bytes[0] = 192;
        message->relay_ip.bytes[3] = 2;
        message->subject = (struct tandem_bytes){"Analytical engines", 18};
        if (i < EMBED_MAIL_COUNT / 2) {
            /* Returns once min_copies nodes hold the record durably: only then
             * may the frontend tell the sending server the mail was accepted. */
            embed_check(tandem_client_append(client, &record, 1, &lsn, &diag), "append", &diag);
            continue;
        }
        /* Returns at once; embed_acknowledged() says when it is acknowledged
         * (an event-loop frontend answers the sending server from there). */
        pthread_mutex_lock(&pending.lock);
        pending.waiting++;
        pthread_mutex_unlock(&pending.lock);
        int rv =
            tandem_client_append_async(client, &record, 1, embed_acknowledged, &pending, &diag);
        if (rv != 0) {
            pthread_mutex_lock(&pending.lock);
            pending.waiting--; /* Refused: its callback never runs. */
            pthread_mutex_unlock(&pending.lock);
            embed_check(rv, "append_async", &diag);
        }
    }
    pthread_mutex_lock(&pending.lock);
    while (pending.waiting > 0) {
        pthread_cond_wait(&pending.done, &pending.lock);
    }
    pthread_mutex_unlock(&pending.lock);
    if (pending.failed != 0) {
        snprintf(diag.message, sizeof(diag.message), "%s", pending.message);
        embed_check(pending.failed, "append_async callback", &diag);
    }
    pthread_cond_destroy(&pending.done);
    pthread_mutex_destroy(&pending.lock);
    lsn = pending.lsn_last > lsn ? pending.lsn_last : lsn;
    printf("%d mails acknowledged, the last at lsn %llu\n", EMBED_MAIL_COUNT,
           (unsigned long long)lsn);
}

/* Query callbacks: records are valid only during the call. */
static int embed_count_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)lsn;
    (void)record;
    (*(int *)data)++;
    return 0;
}

/* Step 4 on one node's copy: the login and the mail. Returns true once the
 * copy holds everything step 3 wrote. */
static bool embed_read(struct tandem *node)
{
    struct tandem_diag diag = {{0}};
    int logins = 0;
    embed_check(tandem_customer_find(node, TANDEM_CUSTOMER_KEY_USERNAME, "ada", 3, embed_count_cb,
                                     &logins, &diag),
                "login lookup", &diag);
    struct tandem_query query;
    tandem_query_init(&query, EMBED_CUSTOMER_ID);
    int mails = 0;
    embed_check(tandem_query(node, &query, embed_count_cb, &mails, &diag), "query", &diag);
    return logins == 1 && mails == EMBED_MAIL_COUNT;
}

static bool embed_read_wait(struct tandem *node)
{
    for (int i = 0; i < EMBED_POLL_COUNT_MAX; i++) {
        if (embed_read(node)) {
            return true;
        }
        struct timespec delay = {.tv_sec = 0, .tv_nsec = EMBED_POLL_MS * 1000000L};
        nanosleep(&delay, NULL);
    }
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc - 1 > EMBED_NODES_MAX) {
        fprintf(stderr, "usage: embed DIR [DIR...] (node directories made by tandem init)\n");
        return 2;
    }
    int node_count = argc - 1;
    struct tandem_server *servers[EMBED_NODES_MAX];
    for (int i = 0; i < node_count; i++) { /* Step 1. */
        struct tandem_diag diag = {{0}};
        embed_check(tandem_server_start(argv[1 + i], NULL, &servers[i], &diag), "start", &diag);
        struct tandem_server_info info;
        tandem_server_info(servers[i], &info);
        printf("node %s of cluster %s serves (%s, min_copies %u)\n", info.node_id, info.cluster,
               info.replicated ? info.listen : "standalone", info.min_copies);
    }

    struct tandem_client *client = NULL; /* Step 2. */
    struct tandem_diag diag = {{0}};
    embed_check(tandem_client_open(argv[1], NULL, &client, &diag), "client", &diag);
    embed_write(client);
    tandem_client_close(client);

    int status = 0;
    for (int i = 0; i < node_count; i++) { /* Step 4. */
        struct tandem_server_info info;
        tandem_server_info(servers[i], &info);
        bool complete = embed_read_wait(tandem_server_node(servers[i]));
        printf("node %s: %s\n", info.node_id,
               complete ? "the login and every mail are in its copy" : "MISSING RECORDS");
        status = complete ? status : 1;
    }

    for (int i = node_count - 1; i >= 0; i--) { /* Step 5. */
        tandem_server_stop(servers[i]);
    }
    printf("stopped\n");
    return status;
}
