/* tests/unit/test_uv_node.c: the replication adapter (net/uv_node.c) end to
 * end: two nodes in one process and one loop over 127.0.0.1, real TLS
 * certificates, real node directories.
 *
 * Method: the group setup makes a cluster CA and certificates for node1 and
 * node2 in a tmpdir. Each test opens each node directory (tandem_open), starts
 * a tdm_uv_node on it (node1, the first id, is the primary and dials node2),
 * submits writes on the primary, and waits in the loop for their results;
 * then closes the adapters, the handles and the loop (uv_loop_close() == 0),
 * and reads both logs again, read-only, to compare their ends: the same last
 * LSN and the same chain hash there. A watchdog timer (unreferenced) fails a
 * test that hangs. Not the cmocka heap: the engine's threads allocate too. */
#include "tdm_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "engine/batch.h"
#include "engine/codec.h"
#include "engine/log.h"
#include "engine/node.h"
#include "engine/segment.h"
#include "net/tls.h"
#include "net/uv_link.h"
#include "net/uv_node.h"

#define PATH_SIZE   1200
#define WATCHDOG_MS 60000u
#define WRITES      20u /* Writes per phase. */
#define NODES       2u

static char tmp_dir[1024];
static char ca_dir[PATH_SIZE];

struct fixture;

struct member {
    struct fixture *f;
    uint32_t index;
    char dir[PATH_SIZE];
    struct tandem *t;
    struct tdm_tls_config tls;
    struct tdm_uv_node *node; /* NULL once closed. */
    bool started;
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t watchdog;
    uv_timer_t timer; /* Scenario steps. */
    struct member members[NODES];
    uint32_t min_copies;
    uint64_t write_deadline_ms;
    uint32_t results;  /* Results seen. */
    uint32_t acked;    /* With status 0. */
    uint32_t ecopies;  /* With TANDEM_ECOPIES. */
    uint32_t expected; /* Results to wait for before the next phase. */
    uint64_t lsn_max;
    uint64_t primary_epoch; /* The primary's epoch when its writes were acknowledged. */
    int phase;
    uint64_t verify_interval_ms; /* 0: the adapter's default. */
};

static void path_make(char *out, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", tmp_dir, name);
    assert_true(n > 0 && n < PATH_SIZE);
}

static int group_setup(void **state)
{
    (void)state;
    assert_int_equal(tdm_test_tmpdir_create(tmp_dir, sizeof(tmp_dir)), 0);
    struct tdm_diag diag = {{0}};
    path_make(ca_dir, "ca");
    assert_int_equal(tdm_pki_ca_create(ca_dir, "c1", &diag), 0);
    char out[PATH_SIZE];
    path_make(out, "tls-node1");
    assert_int_equal(tdm_pki_issue(ca_dir, "node1", out, &diag), 0);
    path_make(out, "tls-node2");
    assert_int_equal(tdm_pki_issue(ca_dir, "node2", out, &diag), 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tdm_test_tmpdir_remove(tmp_dir);
    return 0;
}

static void watchdog_cb(uv_timer_t *timer)
{
    (void)timer;
    fail_msg("test did not finish within %u ms", WATCHDOG_MS);
}

static int setup(void **state)
{
    static int test_number;
    test_number++;
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
    assert_int_equal(uv_timer_start(&f->watchdog, watchdog_cb, WATCHDOG_MS, 0), 0);
    uv_unref((uv_handle_t *)&f->watchdog);
    assert_int_equal(uv_timer_init(&f->loop, &f->timer), 0);
    f->timer.data = f;
    f->min_copies = 2;
    f->write_deadline_ms = 10000;
    for (uint32_t i = 0; i < NODES; i++) {
        struct member *m = &f->members[i];
        m->f = f;
        m->index = i;
        char name[64];
        snprintf(name, sizeof(name), "t%d-node%u", test_number, i + 1);
        path_make(m->dir, name);
        struct tandem_options options;
        tandem_options_init(&options);
        options.flags = TANDEM_OPEN_CREATE;
        struct tandem_diag diag = {{0}};
        assert_int_equal(tandem_open(m->dir, &options, &m->t, &diag), 0);
        char tls_dir[PATH_SIZE];
        snprintf(name, sizeof(name), "tls-node%u", i + 1);
        path_make(tls_dir, name);
        struct tdm_diag d = {{0}};
        assert_int_equal(tdm_tls_config_init_dir(&m->tls, tls_dir, &d), 0);
    }
    *state = f;
    return 0;
}

static void log_end(const char *dir, uint64_t *lsn_last, uint8_t hash[16])
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_READONLY;
    struct tandem *t;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_open(dir, &options, &t, &diag), 0);
    struct tandem_status st;
    assert_int_equal(tandem_status(t, &st), 0);
    *lsn_last = st.lsn_last;
    memcpy(hash, st.chain_hash, 16);
    tandem_close(t);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_close((uv_handle_t *)&f->timer, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    for (uint32_t i = 0; i < NODES; i++) {
        assert_null(f->members[i].node);
        tandem_close(f->members[i].t);
        tdm_tls_config_close(&f->members[i].tls);
    }
    free(f);
    return 0;
}

/* ---- nodes ---- */

static void member_start(struct fixture *f, uint32_t i)
{
    struct member *m = &f->members[i];
    struct sockaddr_in any;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &any), 0);
    struct tdm_uv_node_config config = {
        .dir = m->dir,
        .t = m->t,
        .tls = &m->tls,
        .listen_address = (const struct sockaddr *)&any,
        .initial_primary_index = 0,
        .min_copies = f->min_copies,
        .write_deadline_ms = f->write_deadline_ms,
        .heartbeat_ms = 100,
        .retransmit_ms = 300,
        .handshake_ms = 300,
        .reconnect_ms = 50,
        .verify_interval_ms = f->verify_interval_ms,
    };
    snprintf(config.cluster.name, sizeof(config.cluster.name), "c1");
    config.cluster.node_count = NODES;
    config.cluster.self_index = i;
    for (uint32_t j = 0; j < NODES; j++) {
        snprintf(config.cluster.node_ids[j], sizeof(config.cluster.node_ids[j]), "node%u", j + 1);
    }
    struct tdm_diag diag = {{0}};
    int rv = tdm_uv_node_start(&f->loop, &config, &m->node, &diag);
    if (rv != 0) {
        fail_msg("start node%u: %s", i + 1, diag.message);
    }
    m->started = true;
}

/* Tell node1 where node2 listens (node1 dials). */
static void member_connect(struct fixture *f)
{
    struct sockaddr_storage address;
    assert_int_equal(tdm_uv_node_address(f->members[1].node, &address), 0);
    tdm_uv_node_peer_address(f->members[0].node, 1, (const struct sockaddr *)&address);
}

static void member_closed(void *data)
{
    struct member *m = data;
    m->node = NULL;
}

static void close_all(struct fixture *f)
{
    for (uint32_t i = 0; i < NODES; i++) {
        if (f->members[i].node != NULL) {
            tdm_uv_node_close(f->members[i].node, member_closed, &f->members[i]);
        }
    }
}

/* ---- writes ---- */

static void write_cb(void *data, int status, uint64_t lsn_first, uint64_t lsn_last);

static void submit(struct fixture *f, uint32_t n, uint32_t seed)
{
    for (uint32_t k = 0; k < n; k++) {
        char recipient[64];
        char message_id[64];
        int rn = snprintf(recipient, sizeof(recipient), "user%u@example.com", seed + k);
        int mn = snprintf(message_id, sizeof(message_id), "<%u@example.com>", seed + k);
        struct tandem_record records[2];
        memset(records, 0, sizeof(records));
        for (int r = 0; r < 2; r++) {
            records[r].type = TANDEM_RECORD_MESSAGE;
            struct tandem_message *msg = &records[r].message;
            msg->customer_id = 7;
            msg->time_ns = 1700000000000000000 + (int64_t)(seed + k);
            msg->size = 1000 + k;
            msg->destination = TANDEM_DESTINATION_DELIVERED;
            msg->classification = TANDEM_CLASSIFICATION_CLEAN;
            msg->recipient = (struct tandem_bytes){recipient, (size_t)rn};
            msg->message_id = (struct tandem_bytes){message_id, (size_t)mn};
            msg->relay_ip.family = 4;
        }
        struct tdm_diag diag = {{0}};
        int rv = tdm_uv_node_submit(f->members[0].node, records, 2, write_cb, f, &diag);
        if (rv != 0) {
            fail_msg("submit: %s", diag.message);
        }
    }
}

/* Records each valid but together more than one batch: refused at once with
 * one message, nothing submitted. */
static void submit_too_many_bytes(struct fixture *f)
{
    static char id[TANDEM_MESSAGE_ID_SIZE_MAX];
    static char subject[TANDEM_SUBJECT_SIZE_MAX];
    memset(id, 'm', sizeof(id));
    memset(subject, 's', sizeof(subject));
    size_t count = TANDEM_APPEND_RECORDS_MAX;
    struct tandem_record *records = calloc(count, sizeof(*records));
    assert_non_null(records);
    for (size_t i = 0; i < count; i++) {
        records[i].type = TANDEM_RECORD_MESSAGE;
        struct tandem_message *msg = &records[i].message;
        msg->customer_id = 7;
        msg->time_ns = 1700000000000000000;
        msg->destination = TANDEM_DESTINATION_DELIVERED;
        msg->classification = TANDEM_CLASSIFICATION_CLEAN;
        msg->recipient = (struct tandem_bytes){"user@example.com", 16};
        msg->message_id = (struct tandem_bytes){id, sizeof(id)};
        msg->subject = (struct tandem_bytes){subject, sizeof(subject)};
        msg->relay_ip.family = 4;
    }
    struct tdm_diag diag = {{0}};
    int rv = tdm_uv_node_submit(f->members[0].node, records, count, write_cb, f, &diag);
    if (rv != TANDEM_EINVALID || strstr(diag.message, "append them in several calls") == NULL) {
        fail_msg("submit of %zu large records: %s: %s", count, tandem_strerror(rv), diag.message);
    }
    free(records);
}

static void phase_next(struct fixture *f);
static void verify_poll_cb(uv_timer_t *timer);

static void write_cb(void *data, int status, uint64_t lsn_first, uint64_t lsn_last)
{
    struct fixture *f = data;
    f->results++;
    if (status == 0) {
        f->acked++;
        assert_int_equal(lsn_last, lsn_first + 1);
        if (lsn_last > f->lsn_max) {
            f->lsn_max = lsn_last;
        }
    } else if (status == TANDEM_ECOPIES) {
        f->ecopies++;
    } else if (status != TANDEM_ECANCELED) {
        fail_msg("write failed: %s", tandem_strerror(status));
    }
    if (f->results == f->expected) {
        phase_next(f);
    }
}

static void timer_cb(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    phase_next(f);
}

/* Scenario "replicate": phase 0 submit; 1 all acked -> close. */
/* Scenario "catch-up": 0 submit; 1 acked -> drop the link (held) and submit
 * more; the timer (2) releases the link; 3 all acked -> close. */
/* Scenario "copies": only node1; 0 submit one write; 1 ECOPIES -> close. */
/* Scenario "backup queries": 0 submit; 1 all acked -> poll the backup's
 * handle (timer) until its queries find every record -> close. */
static int scenario;

#define POLL_MS    10u
#define POLL_COUNT 1000u /* Bound on the polls (10 s): a hang fails, never a slowness. */

static uint32_t polls;

static int count_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)lsn;
    uint32_t *count = data;
    assert_int_equal(record->type, TANDEM_RECORD_MESSAGE);
    (*count)++;
    return 0;
}

/* Records the backup's own handle (members[1].t) answers for customer 7 and
 * for the Message-ID of submit()'s write seed. */
static uint32_t backup_query_count(struct fixture *f, uint32_t seed, uint32_t *by_message_id)
{
    struct tandem *t = f->members[1].t;
    uint32_t count = 0;
    struct tandem_query query;
    tandem_query_init(&query, 7);
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_query(t, &query, count_cb, &count, &diag), 0);
    char message_id[64];
    int n = snprintf(message_id, sizeof(message_id), "<%u@example.com>", seed);
    *by_message_id = 0;
    assert_int_equal(tandem_get(t, message_id, (size_t)n, count_cb, by_message_id, &diag), 0);
    return count;
}

static void poll_cb(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    uint32_t by_message_id = 0;
    uint32_t count = backup_query_count(f, WRITES - 1, &by_message_id);
    if (count == 2 * WRITES) {
        assert_int_equal(by_message_id, 2);
        close_all(f);
        return;
    }
    assert_true(count < 2 * WRITES);
    polls++;
    if (polls >= POLL_COUNT) {
        fail_msg("the backup's queries found %u of %u records", count, 2 * WRITES);
    }
    uv_timer_start(&f->timer, poll_cb, POLL_MS, 0);
}

static void phase_next(struct fixture *f)
{
    f->phase++;
    if (scenario == 1) {
        assert_int_equal(f->acked, WRITES);
        struct tdm_replica_status status;
        tdm_uv_node_status(f->members[0].node, &status);
        assert_int_equal(status.role, TDM_ROLE_PRIMARY);
        f->primary_epoch = status.epoch;
        close_all(f);
    } else if (scenario == 2) {
        if (f->phase == 1) {
            assert_int_equal(f->acked, WRITES);
            tdm_uv_node_peer_drop(f->members[0].node, 1, true);
            f->expected = 2 * WRITES;
            submit(f, WRITES, 1000);
            uv_timer_start(&f->timer, timer_cb, 500, 0);
        } else if (f->phase == 2) {
            assert_int_equal(f->acked, WRITES); /* Nothing more without the backup. */
            tdm_uv_node_peer_release(f->members[0].node, 1);
        } else {
            assert_int_equal(f->acked, 2 * WRITES);
            close_all(f);
        }
    } else if (scenario == 4) {
        assert_int_equal(f->acked, WRITES);
        polls = 0;
        uv_timer_start(&f->timer, poll_cb, 0, 0);
    } else if (scenario == 5) {
        assert_int_equal(f->acked, WRITES);
        polls = 0;
        uv_timer_start(&f->timer, verify_poll_cb, 0, 0);
    } else if (scenario == 6) {
        /* One write at a time: each its own batch. */
        if (f->acked < WRITES) {
            f->expected++;
            submit(f, 1, f->acked);
        } else {
            close_all(f);
        }
    } else {
        assert_int_equal(f->ecopies, 1);
        close_all(f);
    }
}

static void check_same_logs(struct fixture *f, uint64_t lsn_want)
{
    uint64_t lsn[NODES];
    uint8_t hash[NODES][16];
    for (uint32_t i = 0; i < NODES; i++) {
        tandem_close(f->members[i].t);
        log_end(f->members[i].dir, &lsn[i], hash[i]);
        struct tandem_options options;
        tandem_options_init(&options);
        struct tandem_diag diag = {{0}};
        assert_int_equal(tandem_open(f->members[i].dir, &options, &f->members[i].t, &diag), 0);
    }
    assert_int_equal(lsn[0], lsn_want);
    assert_int_equal(lsn[1], lsn[0]);
    assert_memory_equal(hash[0], hash[1], 16);
}

/* DIR/epochs of member i equals want (docs/FORMAT.md "Epoch history"). */
static void check_epochs(struct fixture *f, uint32_t i, const char *want)
{
    char path[PATH_SIZE + 16];
    snprintf(path, sizeof(path), "%s/epochs", f->members[i].dir);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    char text[512];
    size_t n = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[n] = '\0';
    /* Entries the adapter opened carry the wall clock (Unix ms, field 5):
     * within a day of now, then compared as 0. */
    char normal[512];
    size_t used = 0;
    time_t now = time(NULL);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        unsigned long long epoch = 0, lsn = 0, at_ms = 0;
        char id[64], cause[32], rest[256] = "";
        int fields = sscanf(line, "%llu %63s %llu %31s %llu %255[^\n]", &epoch, id, &lsn, cause,
                            &at_ms, rest);
        if (fields >= 5) {
            if (at_ms != 0) {
                assert_true(at_ms / 1000 + 86400 > (unsigned long long)now);
                assert_true(at_ms / 1000 < (unsigned long long)now + 86400);
            }
            used +=
                (size_t)snprintf(normal + used, sizeof(normal) - used, "%llu %s %llu %s 0%s%s\n",
                                 epoch, id, lsn, cause, fields == 6 ? " " : "", rest);
        } else {
            used += (size_t)snprintf(normal + used, sizeof(normal) - used, "%s\n", line);
        }
        assert_true(used < sizeof(normal));
    }
    assert_string_equal(normal, want);
}

/* Member i never persisted a history: it holds the init one, (1, node1, 1). */
static void check_no_epochs(struct fixture *f, uint32_t i)
{
    char path[PATH_SIZE + 16];
    snprintf(path, sizeof(path), "%s/epochs", f->members[i].dir);
    FILE *file = fopen(path, "r");
    assert_null(file);
}

static void test_uv_node__replicate(void **state)
{
    struct fixture *f = *state;
    scenario = 1;
    member_start(f, 0);
    member_start(f, 1);
    member_connect(f);
    f->expected = WRITES;
    submit_too_many_bytes(f);
    submit(f, WRITES, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->acked, WRITES);
    assert_int_equal(f->lsn_max, 2 * WRITES);
    check_same_logs(f, 2 * WRITES);
    /* A new cluster's first primary acts in epoch 1 (PROTOCOL.md §4): no new
     * epoch, so neither node had a history to persist. */
    assert_int_equal(f->primary_epoch, 1);
    check_no_epochs(f, 0);
    check_no_epochs(f, 1);
}

/* Both nodes stop and start again: the primary, whose log is no longer empty,
 * opens epoch 2 at LSN 41, the backup rejoins through a new handshake and takes
 * that history, and new writes replicate. */
static void test_uv_node__restart(void **state)
{
    struct fixture *f = *state;
    scenario = 1;
    member_start(f, 0);
    member_start(f, 1);
    member_connect(f);
    f->expected = WRITES;
    submit(f, WRITES, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    check_same_logs(f, 2 * WRITES); /* Reopens both handles. */
    assert_int_equal(f->primary_epoch, 1);
    f->results = 0;
    f->acked = 0;
    f->phase = 0;
    member_start(f, 1); /* The backup first this time. */
    member_start(f, 0);
    member_connect(f);
    submit(f, WRITES, 500);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->acked, WRITES);
    check_same_logs(f, 4 * WRITES);
    assert_int_equal(f->primary_epoch, 2);
    /* Version 2 (docs/FORMAT.md "Epoch history"): cause, wall time (this
     * adapter passes none yet: 0), pause, LSNs at risk. */
    check_epochs(f, 0, "tandem-epochs 2\n1 node1 1 init 0 0 0 0\n2 node1 41 restart 0 0 0 0\n");
    check_epochs(f, 1, "tandem-epochs 2\n1 node1 1 init 0 0 0 0\n2 node1 41 restart 0 0 0 0\n");
}

/* A DIR/epochs that does not parse stops the start, naming the file. */
static void test_uv_node__bad_epochs_file(void **state)
{
    struct fixture *f = *state;
    char path[PATH_SIZE + 16];
    snprintf(path, sizeof(path), "%s/epochs", f->members[0].dir);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs("tandem-epochs 1\n1 node9 1\n", file);
    fclose(file);
    struct sockaddr_in any;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &any), 0);
    struct tdm_uv_node_config config = {
        .dir = f->members[0].dir,
        .t = f->members[0].t,
        .tls = &f->members[0].tls,
        .listen_address = (const struct sockaddr *)&any,
        .min_copies = 2,
        .write_deadline_ms = 1000,
        .heartbeat_ms = 100,
        .retransmit_ms = 300,
        .handshake_ms = 300,
    };
    snprintf(config.cluster.name, sizeof(config.cluster.name), "c1");
    config.cluster.node_count = NODES;
    snprintf(config.cluster.node_ids[0], sizeof(config.cluster.node_ids[0]), "node1");
    snprintf(config.cluster.node_ids[1], sizeof(config.cluster.node_ids[1]), "node2");
    struct tdm_diag diag = {{0}};
    struct tdm_uv_node *node = NULL;
    assert_int_equal(tdm_uv_node_start(&f->loop, &config, &node, &diag), TANDEM_ECORRUPT);
    assert_null(node);
    assert_non_null(strstr(diag.message, "epochs: bad entry 1"));
}

/* DIR/epochs version 1 (three fields a line, before causes and times) is
 * still read; a version 2 line with an unknown cause is refused, naming the
 * file (docs/FORMAT.md "Epoch history"). */
static void test_uv_node__epochs_file_versions(void **state)
{
    struct fixture *f = *state;
    char path[PATH_SIZE + 16];
    snprintf(path, sizeof(path), "%s/epochs", f->members[1].dir);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs("tandem-epochs 1\n1 node1 1\n", file);
    fclose(file);
    member_start(f, 1);
    snprintf(path, sizeof(path), "%s/epochs", f->members[0].dir);
    file = fopen(path, "w");
    assert_non_null(file);
    fputs("tandem-epochs 2\n1 node1 1 sideways 0 0 0 0\n", file);
    fclose(file);
    struct sockaddr_in any;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &any), 0);
    struct tdm_uv_node_config config = {
        .dir = f->members[0].dir,
        .t = f->members[0].t,
        .tls = &f->members[0].tls,
        .listen_address = (const struct sockaddr *)&any,
        .min_copies = 2,
        .write_deadline_ms = 1000,
        .heartbeat_ms = 100,
        .retransmit_ms = 300,
        .handshake_ms = 300,
    };
    snprintf(config.cluster.name, sizeof(config.cluster.name), "c1");
    config.cluster.node_count = NODES;
    snprintf(config.cluster.node_ids[0], sizeof(config.cluster.node_ids[0]), "node1");
    snprintf(config.cluster.node_ids[1], sizeof(config.cluster.node_ids[1]), "node2");
    struct tdm_diag diag = {{0}};
    struct tdm_uv_node *node = NULL;
    assert_int_equal(tdm_uv_node_start(&f->loop, &config, &node, &diag), TANDEM_ECORRUPT);
    assert_null(node);
    assert_non_null(strstr(diag.message, "epochs: bad entry 1"));
    close_all(f);
}

/* ---- a fake primary that sends a batch whose body is corrupt ---- */

struct fake {
    struct fixture *f;
    struct tdm_frame_cluster cluster; /* As node1. */
    struct tdm_uv_link *link;
    bool undecodable; /* Checksums verify, the record does not decode. */
    bool appended;    /* The bad APPEND went out. */
    bool failed_seen; /* The backup's role became FAILED. */
    uv_timer_t poll;
    bool closed;
    int close_status;
    struct tdm_frame frame;
    struct tdm_proto_msg msg;
    uint8_t batch[4096];
};

static void fake_history(struct tdm_epoch_history *h)
{
    memset(h, 0, sizeof(*h));
    h->count = 2;
    h->entries[0] = (struct tdm_epoch_entry){.epoch = 1, .lsn_first = 1, .primary_index = 0};
    h->entries[1] = (struct tdm_epoch_entry){.epoch = 2, .lsn_first = 1, .primary_index = 0};
}

static void fake_send(struct fake *k)
{
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_frame_to_proto(&k->frame, &k->cluster, &k->msg, &diag), 0);
    assert_int_equal(tdm_uv_link_send(k->link, &k->msg, &diag), 0);
}

/* One valid batch (epoch 2, LSN 1) with one byte of its body flipped. */
static size_t fake_bad_batch(struct fake *k, struct tdm_batch_header *h)
{
    struct tandem_record r;
    memset(&r, 0, sizeof(r));
    r.type = TANDEM_RECORD_MESSAGE;
    r.message.customer_id = 1;
    r.message.destination = TANDEM_DESTINATION_DELIVERED;
    r.message.classification = TANDEM_CLASSIFICATION_CLEAN;
    r.message.recipient = (struct tandem_bytes){"a@example.com", 13};
    r.message.relay_ip.family = 4;
    uint8_t raw[512];
    size_t n = tdm_codec_encode(&r, raw + 4, sizeof(raw) - 4);
    raw[0] = (uint8_t)n;
    raw[1] = raw[2] = raw[3] = 0;
    if (k->undecodable) {
        memset(raw + 4, 0xff, n); /* No record type is 0xff. */
    }
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    struct tdm_chain_hash prev;
    memset(&prev, 0, sizeof(prev));
    assert_true(tdm_batch_bound(4 + n) <= sizeof(k->batch));
    int size =
        tdm_batch_build(cctx, raw, 4 + n, 1, 2, 1, 0, 1, &prev, k->batch, sizeof(k->batch), h);
    ZSTD_freeCCtx(cctx);
    assert_true(size > TDM_BATCH_HEADER_SIZE);
    if (!k->undecodable) {
        k->batch[size - 1] ^= 0x55; /* Body: the header still decodes. */
    }
    return (size_t)size;
}

static void fake_on_frame(struct tdm_uv_link *link, const struct tdm_proto_msg *msg, void *data)
{
    (void)link;
    struct fake *k = data;
    struct tdm_diag diag = {{0}};
    struct tdm_frame in;
    assert_int_equal(tdm_frame_from_proto(msg, &k->cluster, &in, &diag), 0);
    memset(&k->frame, 0, sizeof(k->frame));
    k->frame.epoch = 2;
    if (in.type == TDM_FRAME_HELLO) {
        k->frame.type = TDM_FRAME_START;
        k->frame.start.hello_id = in.hello.hello_id;
        k->frame.start.fork_lsn = 0;
        fake_history(&k->frame.start.history);
        fake_send(k);
    } else if (in.type == TDM_FRAME_READY && !k->appended) {
        struct tdm_batch_header h;
        size_t size = fake_bad_batch(k, &h);
        k->frame.type = TDM_FRAME_APPEND;
        k->frame.append.batch_count = 1;
        struct tdm_frame_batch *b = &k->frame.append.batches[0];
        b->lsn_first = 1;
        b->lsn_last = 1;
        b->epoch = 2;
        b->size = (uint32_t)size;
        memcpy(b->chain_hash.bytes, h.chain_hash.bytes, sizeof(b->chain_hash.bytes));
        b->bytes = k->batch;
        fake_send(k);
        k->appended = true;
    }
}

static void fake_on_open(struct tdm_uv_link *link, void *data)
{
    struct fake *k = data;
    k->link = link;
}

static void fake_on_close(struct tdm_uv_link *link, int status, const struct tdm_diag *diag,
                          void *data)
{
    (void)link;
    (void)diag;
    struct fake *k = data;
    k->closed = true;
    k->close_status = status;
    k->link = NULL;
    close_all(k->f); /* The backup dropped us: done. */
}

/* Start node2 as a backup of epoch 1 and dial it as node1 with fake: it
 * sends one bad batch (undecodable: checksums that verify around a record
 * that does not decode; else a corrupt body) once node2 is READY. */
static void fake_start(struct fixture *f, struct fake *fake, bool undecodable)
{
    member_start(f, 1); /* node2, a backup of epoch 1 (primary node1). */
    memset(fake, 0, sizeof(*fake));
    fake->f = f;
    fake->undecodable = undecodable;
    snprintf(fake->cluster.name, sizeof(fake->cluster.name), "c1");
    fake->cluster.node_count = NODES;
    fake->cluster.self_index = 0;
    snprintf(fake->cluster.node_ids[0], sizeof(fake->cluster.node_ids[0]), "node1");
    snprintf(fake->cluster.node_ids[1], sizeof(fake->cluster.node_ids[1]), "node2");
    struct sockaddr_storage address;
    assert_int_equal(tdm_uv_node_address(f->members[1].node, &address), 0);
    struct tdm_uv_link_dial_config config = {
        .address = (const struct sockaddr *)&address,
        .tls = &f->members[0].tls,
        .expected = "node2",
        .callbacks = {.on_open = fake_on_open,
                      .on_frame = fake_on_frame,
                      .on_close = fake_on_close,
                      .data = fake},
    };
    struct tdm_diag diag = {{0}};
    struct tdm_uv_link *link = NULL;
    assert_int_equal(tdm_uv_link_dial(&f->loop, &config, &link, &diag), 0);
}

/* node2's log holds nothing, and node2's directory opens again. */
static void fake_backup_log_empty(struct fixture *f)
{
    uint64_t lsn;
    uint8_t hash[16];
    tandem_close(f->members[1].t);
    log_end(f->members[1].dir, &lsn, hash);
    assert_int_equal(lsn, 0);
    struct tandem_options options;
    tandem_options_init(&options);
    struct tandem_diag tdiag = {{0}};
    assert_int_equal(tandem_open(f->members[1].dir, &options, &f->members[1].t, &tdiag), 0);
}

/* A backup verifies every received batch before appending it: a corrupt body
 * closes the link to the primary, and nothing is written. */
static void test_uv_node__bad_batch_drops_link(void **state)
{
    struct fixture *f = *state;
    static struct fake k;
    fake_start(f, &k, false);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(k.appended);
    assert_true(k.closed);
    assert_int_not_equal(k.close_status, TANDEM_ECANCELED); /* The backup closed it. */
    fake_backup_log_empty(f);
}

/* Until the backup (node2) has stopped: then close everything. */
static void fake_poll_cb(uv_timer_t *timer)
{
    struct fake *k = timer->data;
    struct tdm_replica_status status;
    tdm_uv_node_status(k->f->members[1].node, &status);
    if (status.role != TDM_ROLE_FAILED) {
        return;
    }
    k->failed_seen = true;
    uv_close((uv_handle_t *)timer, NULL);
    if (k->link != NULL) {
        tdm_uv_link_close(k->link);
    } else {
        close_all(k->f);
    }
}

/* A batch whose checksums verify but whose record does not decode is checked
 * on the backup before anything is handed to the commit thread: nothing is
 * written, and the backup stops (role FAILED, traced), as for any append
 * that fails; it does not acknowledge it. */
static void test_uv_node__undecodable_batch_stops_backup(void **state)
{
    struct fixture *f = *state;
    static struct fake k;
    fake_start(f, &k, true);
    uv_timer_init(&f->loop, &k.poll);
    k.poll.data = &k;
    uv_timer_start(&k.poll, fake_poll_cb, 10, 10);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(k.appended);
    assert_true(k.failed_seen);
    fake_backup_log_empty(f);
}

/* Every node answers queries from its own copy (DESIGN "Replication"): once
 * writes are acknowledged, the backup's own tandem handle finds their records
 * through its index (received batches reach it through the commit thread), with
 * no reopen. Method: poll the backup's handle from a timer, a bounded number of
 * times; the test asserts what is found, never how fast. */
static void test_uv_node__backup_answers_queries(void **state)
{
    struct fixture *f = *state;
    scenario = 4;
    member_start(f, 0);
    member_start(f, 1);
    member_connect(f);
    f->expected = WRITES;
    submit(f, WRITES, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->acked, WRITES);
    /* Reopened: the index the backup built while running is the log's. */
    check_same_logs(f, 2 * WRITES);
    uint32_t by_message_id = 0;
    assert_int_equal(backup_query_count(f, 3, &by_message_id), 2 * WRITES);
    assert_int_equal(by_message_id, 2);
}

static void test_uv_node__catch_up(void **state)
{
    struct fixture *f = *state;
    scenario = 2;
    member_start(f, 0);
    member_start(f, 1);
    member_connect(f);
    f->expected = WRITES;
    submit(f, WRITES, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->acked, 2 * WRITES);
    check_same_logs(f, 4 * WRITES);
}

static void test_uv_node__copies_deadline(void **state)
{
    struct fixture *f = *state;
    scenario = 3;
    f->write_deadline_ms = 300;
    member_start(f, 0); /* node2 never runs. */
    f->expected = 1;
    uint64_t start = uv_now(&f->loop);
    submit(f, 1, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    uv_update_time(&f->loop);
    assert_int_equal(f->ecopies, 1);
    assert_true(uv_now(&f->loop) - start >= 300);
}

/* ---- verification (docs/PROTOCOL.md §9) ---- */

/* What a poll of the verification scenarios waits for. */
static uint64_t verify_want_first; /* 0: identical copies, verified through verify_want_lsn. */
static uint64_t verify_want_last;
static uint64_t verify_want_lsn;
static uint64_t verify_started_ms;
static uint64_t verify_named_ms; /* When the primary named the divergent batch. */

static void verify_poll_cb(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    struct tdm_replica_status primary;
    struct tdm_replica_status backup;
    tdm_uv_node_status(f->members[0].node, &primary);
    tdm_uv_node_status(f->members[1].node, &backup);
    bool done;
    if (verify_want_first == 0) {
        done = primary.nodes[1].verified_lsn == verify_want_lsn &&
               backup.nodes[1].verified_lsn == verify_want_lsn;
    } else {
        if (verify_named_ms == 0 && primary.nodes[1].divergent_first != 0) {
            uv_update_time(&f->loop);
            verify_named_ms = uv_now(&f->loop);
        }
        done = primary.nodes[1].divergent_first != 0 && backup.nodes[1].divergent_first != 0;
    }
    if (done) {
        close_all(f);
        return;
    }
    polls++;
    if (polls >= POLL_COUNT) {
        fail_msg("verification: primary sees node2 verified %" PRIu64 " divergent %" PRIu64
                 "..%" PRIu64 "; node2 sees itself verified %" PRIu64 " divergent %" PRIu64,
                 primary.nodes[1].verified_lsn, primary.nodes[1].divergent_first,
                 primary.nodes[1].divergent_last, backup.nodes[1].verified_lsn,
                 backup.nodes[1].divergent_first);
    }
    uv_timer_start(&f->timer, verify_poll_cb, POLL_MS, 0);
}

/* The line of member i's DIR/verified for node id, or fail. */
static void verified_line(struct fixture *f, uint32_t i, const char *id, uint64_t *lsn,
                          long long *at_ns)
{
    char path[PATH_SIZE + 16];
    snprintf(path, sizeof(path), "%s/verified", f->members[i].dir);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    char line[256];
    assert_non_null(fgets(line, sizeof(line), file));
    assert_string_equal(line, "tandem-verified 1\n");
    bool found = false;
    while (fgets(line, sizeof(line), file) != NULL) {
        char name[64];
        unsigned long long l;
        long long at;
        assert_int_equal(sscanf(line, "%63s %llu %lld", name, &l, &at), 3);
        if (strcmp(name, id) == 0) {
            found = true;
            *lsn = l;
            *at_ns = at;
        }
    }
    fclose(file);
    if (!found) {
        fail_msg("%s names no %s", path, id);
    }
}

/* Identical copies: once writes are acknowledged, the primary proves the
 * backup equal through the last LSN within a checkpoint interval, and both
 * record it in DIR/verified with a wall time from this run. */
static void test_uv_node__verify_identical(void **state)
{
    struct fixture *f = *state;
    scenario = 5;
    f->verify_interval_ms = 100;
    struct timespec began;
    clock_gettime(CLOCK_REALTIME, &began);
    member_start(f, 0);
    member_start(f, 1);
    member_connect(f);
    f->expected = WRITES;
    verify_want_first = 0;
    verify_want_lsn = 2 * WRITES;
    submit(f, WRITES, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->acked, WRITES);
    uint64_t lsn = 0;
    long long at = 0;
    verified_line(f, 0, "node2", &lsn, &at);
    assert_int_equal(lsn, 2 * WRITES);
    assert_true(at >= (long long)began.tv_sec * 1000000000LL);
    verified_line(f, 1, "node2", &lsn, &at);
    assert_int_equal(lsn, 2 * WRITES);
    assert_true(at >= (long long)began.tv_sec * 1000000000LL);
}

struct alter {
    ZSTD_CCtx *cctx;
    struct tandem *to;          /* The new directory, open for writing. */
    struct tdm_chain_hash prev; /* Chain hash of the last batch rebuilt. */
    uint64_t alter_lsn;         /* The batch holding it gets one byte changed. */
    uint64_t altered_first;     /* That batch's LSNs. */
    uint64_t altered_last;
    uint8_t *raw;
    uint8_t *bytes;
};

/* Rebuild each batch of the backup's log into a fresh directory: the same
 * records, but in the batch holding alter_lsn one digit of a Message-ID or
 * recipient differs; every checksum and chain hash is recomputed, so the
 * altered log verifies and its chain holds: only a comparison with the
 * primary's copy can tell. */
static int alter_cb(void *data, const struct tdm_batch_header *header,
                    const struct tdm_log_location *location, const uint8_t *raw)
{
    (void)location;
    struct alter *a = data;
    memcpy(a->raw, raw, header->raw_size);
    uint64_t last = tdm_batch_lsn_last(header);
    if (header->lsn_first <= a->alter_lsn && a->alter_lsn <= last) {
        uint8_t *at = memmem(a->raw, header->raw_size, "@example.com", 12);
        assert_non_null(at);
        at[-1] = at[-1] == '9' ? '8' : (uint8_t)(at[-1] + 1); /* A digit: same length. */
        a->altered_first = header->lsn_first;
        a->altered_last = last;
    }
    struct tdm_batch_header rebuilt;
    size_t capacity = tdm_batch_bound(header->raw_size);
    int size = tdm_batch_build(a->cctx, a->raw, header->raw_size, header->record_count,
                               header->epoch, header->lsn_first, header->lsn_durable,
                               header->time_ns, &a->prev, a->bytes, capacity, &rebuilt);
    assert_true(size > TDM_BATCH_HEADER_SIZE);
    struct tdm_diag diag = {{0}};
    int rv = tdm_node_append_received(a->to, a->bytes, (size_t)size, true, &rebuilt, &diag);
    if (rv != 0) {
        fail_msg("append the rebuilt batch %" PRIu64 ": %s", header->lsn_first, diag.message);
    }
    a->prev = rebuilt.chain_hash;
    return 0;
}

/* The batch of member i's log that holds lsn (read through its handle). */
struct batch_find {
    uint64_t lsn;
    uint64_t first;
    uint64_t last;
};

static int batch_find_cb(void *data, const struct tdm_batch_header *header,
                         const struct tdm_log_location *location, const uint8_t *raw)
{
    (void)location;
    (void)raw;
    struct batch_find *find = data;
    if (header->lsn_first <= find->lsn && find->lsn <= tdm_batch_lsn_last(header)) {
        find->first = header->lsn_first;
        find->last = tdm_batch_lsn_last(header);
    }
    return 0;
}

/* A backup whose log was altered before it starts (same length, one byte of
 * one batch different, checksums and chain recomputed): the primary's first
 * checkpoint on the new link finds the mismatch and bisection names the first
 * divergent batch, within seconds; the backup learns it from the next CHECK;
 * DIR/verified on both sides stays below that batch. */
static void test_uv_node__verify_altered_backup(void **state)
{
    struct fixture *f = *state;
    scenario = 6;
    member_start(f, 0);
    member_start(f, 1);
    member_connect(f);
    f->expected = 1;
    submit(f, 1, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->acked, WRITES);
    check_same_logs(f, 2 * WRITES); /* Reopens both handles. */

    /* Rebuild node2's log, altered at LSN 21, in a new directory, and put it
     * in node2's place. */
    struct member *backup = &f->members[1];
    char altered_dir[PATH_SIZE + 16];
    snprintf(altered_dir, sizeof(altered_dir), "%s.altered", backup->dir);
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    struct tandem_diag tdiag = {{0}};
    static struct alter a;
    memset(&a, 0, sizeof(a));
    assert_int_equal(tandem_open(altered_dir, &options, &a.to, &tdiag), 0);
    a.cctx = ZSTD_createCCtx();
    a.raw = malloc(TDM_BATCH_RAW_SIZE_MAX);
    a.bytes = malloc(tdm_batch_bound(TDM_BATCH_RAW_SIZE_MAX));
    assert_non_null(a.raw);
    assert_non_null(a.bytes);
    a.alter_lsn = 21;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_log_scan(tdm_node_log(backup->t), 1, alter_cb, &a, &diag), 0);
    ZSTD_freeCCtx(a.cctx);
    free(a.raw);
    free(a.bytes);
    tandem_close(a.to);
    assert_true(a.altered_first >= 1);
    struct batch_find find = {.lsn = 21};
    assert_int_equal(tdm_log_scan(tdm_node_log(f->members[0].t), 1, batch_find_cb, &find, &diag),
                     0);
    assert_int_equal(find.first, a.altered_first); /* The same batches, byte for byte but one. */
    assert_int_equal(find.last, a.altered_last);
    assert_true(find.first > 1); /* Batches before it stay equal. */
    tandem_close(backup->t);
    char moved[PATH_SIZE + 8];
    snprintf(moved, sizeof(moved), "%s.orig", backup->dir);
    assert_int_equal(rename(backup->dir, moved), 0);
    assert_int_equal(rename(altered_dir, backup->dir), 0);
    options.flags = 0;
    assert_int_equal(tandem_open(backup->dir, &options, &backup->t, &tdiag), 0);
    uint64_t lsn;
    uint8_t hash[16];
    uint8_t primary_hash[16];
    tandem_close(backup->t);
    log_end(backup->dir, &lsn, hash);
    log_end(f->members[0].dir, &lsn, primary_hash);
    assert_memory_not_equal(hash, primary_hash, 16); /* Same end, other history. */
    assert_int_equal(tandem_open(backup->dir, &options, &backup->t, &tdiag), 0);

    /* Both nodes again, no writes: the comparison alone must find it. */
    scenario = 5;
    f->verify_interval_ms = 100;
    verify_want_first = find.first;
    verify_want_last = find.last;
    verify_named_ms = 0;
    member_start(f, 1);
    member_start(f, 0);
    member_connect(f);
    uv_update_time(&f->loop);
    verify_started_ms = uv_now(&f->loop);
    polls = 0;
    uv_timer_start(&f->timer, verify_poll_cb, POLL_MS, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(verify_named_ms != 0);
    assert_true(verify_named_ms - verify_started_ms < 5000); /* Within seconds. */
    uint64_t verified = 0;
    long long at = 0;
    verified_line(f, 0, "node2", &verified, &at);
    assert_int_equal(verified, find.first - 1);
    verified_line(f, 1, "node2", &verified, &at);
    assert_int_equal(verified, find.first - 1);
}

/* The batch of a log holding find->lsn, and where it is. */
struct batch_locate {
    uint64_t lsn;
    uint64_t first;
    struct tdm_log_location location;
};

static int batch_locate_cb(void *data, const struct tdm_batch_header *header,
                           const struct tdm_log_location *location, const uint8_t *raw)
{
    (void)raw;
    struct batch_locate *find = data;
    if (header->lsn_first <= find->lsn && find->lsn <= tdm_batch_lsn_last(header)) {
        find->first = header->lsn_first;
        find->location = *location;
    }
    return 0;
}

static uint64_t ship_failures_seen;

/* Until the primary says a read for shipping failed (SHIP_FAILED), then close. */
static void ship_poll_cb(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    struct tdm_replica_status status;
    tdm_uv_node_status(f->members[0].node, &status);
    if (status.ship_failures > 0) {
        ship_failures_seen = status.ship_failures;
        assert_true(status.ship_failed_lsn >= 1);
        close_all(f);
        return;
    }
    polls++;
    if (polls >= POLL_COUNT) {
        fail_msg("the primary never reported the damaged range unshippable");
    }
    uv_timer_start(&f->timer, ship_poll_cb, POLL_MS, 0);
}

/* A batch of the primary's log whose bytes no longer match their checksum
 * (bit rot, flipped under the running handle) is never shipped: the read for
 * the APPEND fails, nothing of the range goes out, the replica hears of it
 * (SHIP_FAILED: status ship_failures, docs/PROTOCOL.md §9.5), and the new
 * backup holds nothing from that batch on. */
static void test_uv_node__damaged_batch_not_shipped(void **state)
{
    struct fixture *f = *state;
    f->min_copies = 1; /* The primary alone first: the backup joins later. */
    scenario = 6;
    member_start(f, 0);
    f->expected = 1;
    submit(f, 1, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->acked, WRITES);

    struct member *primary = &f->members[0];
    struct batch_locate find = {.lsn = 11};
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_log_scan(tdm_node_log(primary->t), 1, batch_locate_cb, &find, &diag), 0);
    assert_true(find.first > 1);
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), find.location.segment_lsn);
    char path[PATH_SIZE + 64];
    snprintf(path, sizeof(path), "%s/log/%s", primary->dir, name);
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    long at = (long)(find.location.offset + TDM_BATCH_HEADER_SIZE + 1); /* In the body. */
    assert_int_equal(fseek(file, at, SEEK_SET), 0);
    int byte = fgetc(file);
    assert_true(byte != EOF);
    assert_int_equal(fseek(file, at, SEEK_SET), 0);
    assert_int_equal(fputc(byte ^ 0x10, file), byte ^ 0x10);
    assert_int_equal(fclose(file), 0);

    scenario = 7;
    polls = 0;
    ship_failures_seen = 0;
    member_start(f, 1);
    member_start(f, 0);
    member_connect(f);
    uv_timer_start(&f->timer, ship_poll_cb, POLL_MS, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(ship_failures_seen >= 1);
    uint64_t lsn = 0;
    uint8_t hash[16];
    tandem_close(f->members[1].t);
    log_end(f->members[1].dir, &lsn, hash);
    assert_true(lsn < find.first); /* Nothing of the damaged batch reached the backup. */
    struct tandem_options options;
    tandem_options_init(&options);
    struct tandem_diag tdiag = {{0}};
    assert_int_equal(tandem_open(f->members[1].dir, &options, &f->members[1].t, &tdiag), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uv_node__replicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__catch_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__backup_answers_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__bad_epochs_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__epochs_file_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__bad_batch_drops_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__undecodable_batch_stops_backup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__copies_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__verify_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__verify_altered_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_node__damaged_batch_not_shipped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
