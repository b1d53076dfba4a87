/* tests/unit/test_replica_verify.c: the continuous comparison of copies
 * (net/replica_verify.c, docs/PROTOCOL.md §9): identical copies are verified
 * on both sides with no alarm; a backup whose history was altered (the same
 * records, one byte different in one batch, every checksum and chain hash
 * recomputed) is found, and bisection names exactly its first divergent batch.
 *
 * Method: two real struct tdm_replica (node 0 the primary, node 1 a backup)
 * stepped by hand. Each node's log is a list of real batches built with
 * tdm_batch_build() (engine/batch.h), whose chain hashes are what the replicas
 * compare; the harness carries out the actions: frames go to the other node's
 * queue, reads are answered from the node's own log (CHAIN_READ), persists
 * complete at once, and verified claims are kept per node as DIR/verified
 * would keep them. Time moves only when a test says so. */
#include "tdm_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/bytes.h"
#include "engine/base/error.h"
#include "engine/batch.h"
#include "net/replica.h"

#define NODES        2u
#define BATCHES_MAX  64u
#define QUEUE_MAX    512u
#define INTERVAL_MS  1000u
#define HANDSHAKE_MS 300u
#define TRACE_SIZE   (64u * 1024u)
#define RECORD_SIZE  24u

struct fake_batch {
    uint64_t lsn_first;
    uint64_t lsn_last;
    struct tdm_frame_chain_hash chain;
};

struct pending {
    struct tdm_event event;
    struct tdm_frame frame; /* RECEIVE: the frame the event points to. */
};

struct node {
    struct tdm_replica replica;
    struct tdm_actions actions;
    uint32_t count;
    struct fake_batch log[BATCHES_MAX];
    uint32_t head;
    uint32_t queued;
    struct pending queue[QUEUE_MAX];
    /* The last claim recorded for each node, as DIR/verified keeps it. */
    bool claimed[NODES];
    uint64_t claim_lsn[NODES];
    bool claim_fresh[NODES];
    uint32_t checks_sent;    /* CHECK frames (primary). */
    uint32_t different_sent; /* CHECK_RESULT DIFFERENT frames (backup). */
};

static struct node nodes[NODES];
static uint64_t now_ms;
static char trace[TRACE_SIZE];
static size_t trace_used;
/* Frames of this type from node drop_from are lost, drop_count times. */
static uint16_t drop_type;
static uint32_t drop_count;

static void trace_cb(void *data, const char *line)
{
    (void)data;
    int n = snprintf(trace + trace_used, sizeof(trace) - trace_used, "%s\n", line);
    if (n > 0 && trace_used + (size_t)n < sizeof(trace)) {
        trace_used += (size_t)n;
    }
}

/* The record at lsn: text that depends on the LSN only; altered: one byte
 * differs, the length does not. */
static void record_make(uint64_t lsn, bool altered, uint8_t *out)
{
    char text[RECORD_SIZE + 1];
    snprintf(text, sizeof(text), "record %016" PRIu64, lsn);
    memcpy(out, text, RECORD_SIZE);
    if (altered) {
        out[3] ^= 0x20; /* "record" -> "reCord". */
    }
}

/* Build node's log: batch_count batches of counts[i] records from LSN 1, epoch
 * 1, chained from the zero hash; the record at altered_lsn (0: none) has one
 * byte changed. Every checksum and chain hash is tdm_batch_build()'s own. */
static void log_build(struct node *n, const uint32_t *counts, uint32_t batch_count,
                      uint64_t altered_lsn)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    struct tdm_chain_hash prev;
    memset(&prev, 0, sizeof(prev));
    uint64_t lsn = 1;
    n->count = 0;
    for (uint32_t b = 0; b < batch_count; b++) {
        static uint8_t raw[4096];
        static uint8_t bytes[8192];
        struct tdm_writer w;
        tdm_writer_init(&w, raw, sizeof(raw));
        for (uint32_t r = 0; r < counts[b]; r++) {
            uint8_t record[RECORD_SIZE];
            record_make(lsn + r, lsn + r == altered_lsn, record);
            tdm_put_u32(&w, RECORD_SIZE);
            tdm_put_bytes(&w, record, RECORD_SIZE);
        }
        assert_false(w.overflow);
        struct tdm_batch_header header;
        int size = tdm_batch_build(cctx, raw, w.offset, counts[b], 1, lsn, lsn - 1, 1, &prev, bytes,
                                   sizeof(bytes), &header);
        assert_true(size > TDM_BATCH_HEADER_SIZE);
        struct fake_batch *batch = &n->log[n->count++];
        batch->lsn_first = lsn;
        batch->lsn_last = tdm_batch_lsn_last(&header);
        memcpy(batch->chain.bytes, header.chain_hash.bytes, sizeof(batch->chain.bytes));
        prev = header.chain_hash;
        lsn = batch->lsn_last + 1;
    }
    ZSTD_freeCCtx(cctx);
}

static uint64_t log_last(const struct node *n)
{
    return n->count == 0 ? 0 : n->log[n->count - 1].lsn_last;
}

static void node_init(uint32_t index, const uint64_t *verified)
{
    struct node *n = &nodes[index];
    struct tdm_epoch_history history;
    memset(&history, 0, sizeof(history));
    history.count = 1;
    history.entries[0] = (struct tdm_epoch_entry){.epoch = 1, .lsn_first = 1, .primary_index = 0};
    struct tdm_replica_config config = {
        .node_count = NODES,
        .self_index = index,
        .min_copies = 2,
        .write_deadline_ms = 10000,
        .heartbeat_ms = 100,
        .retransmit_ms = 300,
        .handshake_ms = HANDSHAKE_MS,
        .pipeline_batches_max = TDM_PIPELINE_BATCHES_MAX,
        .pipeline_size_max = TDM_PIPELINE_BYTES_MAX,
        .history = &history,
        .last_lsn = log_last(n),
        .last_epoch = n->count == 0 ? 0 : 1,
        .verify_interval_ms = INTERVAL_MS,
        .trace = trace_cb,
    };
    if (n->count > 0) {
        config.chain_hash = n->log[n->count - 1].chain;
    }
    if (verified != NULL) {
        memcpy(config.verified_lsn, verified, sizeof(config.verified_lsn[0]) * NODES);
    }
    tdm_replica_init(&n->replica, &config);
}

static void queue_push(uint32_t index, const struct tdm_event *event, const struct tdm_frame *frame)
{
    struct node *n = &nodes[index];
    assert_true(n->queued < QUEUE_MAX);
    struct pending *p = &n->queue[(n->head + n->queued++) % QUEUE_MAX];
    p->event = *event;
    if (frame != NULL) {
        p->frame = *frame;
    }
}

/* The batch of n's log holding lsn, as a CHAIN_READ event for read. */
static void read_answer(uint32_t index, const struct tdm_action_read *read)
{
    const struct node *n = &nodes[index];
    struct tdm_event event = {.type = TDM_EVENT_CHAIN_READ};
    event.chain_read.read_id = read->read_id;
    event.chain_read.status = TANDEM_ENOTFOUND;
    for (uint32_t b = 0; b < n->count; b++) {
        if (n->log[b].lsn_first <= read->lsn && read->lsn <= n->log[b].lsn_last) {
            event.chain_read.status = 0;
            event.chain_read.lsn_first = n->log[b].lsn_first;
            event.chain_read.lsn_last = n->log[b].lsn_last;
            event.chain_read.chain_hash = n->log[b].chain;
        }
    }
    queue_push(index, &event, NULL);
}

/* Carry out index's actions in the documented order. */
static void apply(uint32_t index)
{
    struct node *n = &nodes[index];
    const struct tdm_actions *a = &n->actions;
    if (a->history_to_persist != NULL) {
        struct tdm_event event = {.type = TDM_EVENT_PERSISTED};
        event.persisted.kind = TDM_PERSISTED_EPOCHS;
        queue_push(index, &event, NULL);
    }
    assert_false(a->cut);                /* Equal histories: the fork point is the end. */
    assert_int_equal(a->write_count, 0); /* No writes in these tests. */
    assert_int_equal(a->result_count, 0);
    for (uint32_t i = 0; i < a->send_count; i++) {
        const struct tdm_send *send = &a->sends[i];
        static struct tdm_frame frame;
        memset(&frame, 0, sizeof(frame));
        tdm_replica_frame_from_send(a, send, &frame);
        if (send->type == TDM_FRAME_CHECK) {
            n->checks_sent++;
        }
        if (send->type == TDM_FRAME_CHECK_RESULT &&
            send->check_result.result == TDM_CHECK_DIFFERENT) {
            n->different_sent++;
        }
        if (send->type == drop_type && drop_count > 0) {
            drop_count--;
            continue;
        }
        assert_int_not_equal(send->type, TDM_FRAME_APPEND); /* Both logs end alike. */
        struct tdm_event event = {.type = TDM_EVENT_RECEIVE};
        event.receive.node_index = index;
        queue_push(send->node_index, &event, &frame);
    }
    for (uint32_t i = 0; i < a->read_count; i++) {
        read_answer(index, &a->reads[i]);
    }
    for (uint32_t i = 0; i < a->verified_count; i++) {
        const struct tdm_action_verified *v = &a->verified[i];
        assert_true(v->node_index < NODES);
        n->claimed[v->node_index] = true;
        n->claim_lsn[v->node_index] = v->lsn;
        n->claim_fresh[v->node_index] = v->fresh;
    }
}

static void step(uint32_t index, struct tdm_event *event)
{
    struct node *n = &nodes[index];
    event->now_ms = now_ms;
    tdm_replica_step(&n->replica, event, &n->actions);
    apply(index);
}

/* Step queued events, both nodes, until nothing is left. */
static void pump(void)
{
    for (uint32_t rounds = 0; rounds < 100000; rounds++) {
        bool any = false;
        for (uint32_t i = 0; i < NODES; i++) {
            struct node *n = &nodes[i];
            if (n->queued == 0) {
                continue;
            }
            static struct pending p;
            p = n->queue[n->head];
            n->head = (n->head + 1) % QUEUE_MAX;
            n->queued--;
            if (p.event.type == TDM_EVENT_RECEIVE) {
                p.event.receive.frame = &p.frame;
            }
            step(i, &p.event);
            any = true;
        }
        if (!any) {
            return;
        }
    }
    fail_msg("the nodes never went quiet");
}

/* Time passes: both nodes TICK, then everything that follows is pumped. */
static void advance(uint64_t ms)
{
    now_ms += ms;
    for (uint32_t i = 0; i < NODES; i++) {
        struct tdm_event tick = {.type = TDM_EVENT_TICK};
        step(i, &tick);
    }
    pump();
}

/* Start both replicas (the primary opens epoch 2), link them, and pump the
 * handshake: the backup becomes LIVE and the first checkpoint runs at once. */
static void connect(void)
{
    advance(1);
    for (uint32_t i = 0; i < NODES; i++) {
        struct tdm_event up = {.type = TDM_EVENT_PEER_UP};
        up.peer.node_index = 1 - i;
        queue_push(i, &up, NULL);
    }
    pump();
    assert_int_equal(nodes[0].replica.role, TDM_ROLE_PRIMARY);
    assert_int_equal(nodes[0].replica.peers[1].link, TDM_LINK_LIVE);
}

static void status_of(uint32_t index, struct tdm_replica_status *status)
{
    tdm_replica_status(&nodes[index].replica, status);
}

static int setup(void **state)
{
    (void)state;
    memset(nodes, 0, sizeof(nodes));
    now_ms = 1;
    trace_used = 0;
    trace[0] = '\0';
    drop_type = 0;
    drop_count = 0;
    return 0;
}

/* Twelve batches of 1 to 4 records: LSNs 1..30. */
static const uint32_t counts[] = {1, 3, 2, 4, 1, 1, 3, 4, 2, 2, 3, 4};
#define COUNT_BATCHES (sizeof(counts) / sizeof(counts[0]))
#define LAST_LSN      30u

/* Identical copies: the first checkpoint proves the backup equal through the
 * last LSN, on the primary (per backup) and on the backup (its own claim),
 * each a fresh claim; no mismatch, no alarm. Later checkpoints refresh it. */
static void test_verify__identical_copies(void **state)
{
    (void)state;
    log_build(&nodes[0], counts, COUNT_BATCHES, 0);
    log_build(&nodes[1], counts, COUNT_BATCHES, 0);
    assert_int_equal(log_last(&nodes[0]), LAST_LSN);
    node_init(0, NULL);
    node_init(1, NULL);
    connect();
    struct tdm_replica_status status;
    status_of(0, &status);
    assert_true(status.nodes[1].verify_known);
    assert_int_equal(status.nodes[1].verified_lsn, LAST_LSN);
    assert_int_equal(status.nodes[1].mismatches_found, 0);
    assert_int_equal(status.nodes[1].divergent_first, 0);
    assert_int_equal(status.nodes[0].verified_lsn, LAST_LSN); /* The primary's: its best backup. */
    assert_true(nodes[0].claimed[1]);
    assert_int_equal(nodes[0].claim_lsn[1], LAST_LSN);
    assert_true(nodes[0].claim_fresh[1]);
    status_of(1, &status);
    assert_int_equal(status.nodes[1].verified_lsn, LAST_LSN);
    assert_int_equal(status.nodes[0].verified_lsn, LAST_LSN);
    assert_true(nodes[1].claimed[1]);
    assert_true(nodes[1].claim_fresh[1]);
    assert_int_equal(nodes[1].different_sent, 0);
    uint32_t checks = nodes[0].checks_sent;
    assert_int_equal(checks, 1);
    /* One checkpoint per interval, no more (PROTOCOL.md §9: one small frame per
     * backup per checkpoint). */
    nodes[0].claimed[1] = false;
    advance(INTERVAL_MS / 2);
    assert_int_equal(nodes[0].checks_sent, checks);
    advance(INTERVAL_MS / 2);
    assert_int_equal(nodes[0].checks_sent, checks + 1);
    assert_true(nodes[0].claimed[1]);
    assert_true(nodes[0].claim_fresh[1]);
    assert_null(strstr(trace, "MISMATCH"));
    assert_null(strstr(trace, "differ"));
}

/* The batch of the primary's log that holds lsn. */
static const struct fake_batch *primary_batch(uint64_t lsn)
{
    for (uint32_t b = 0; b < nodes[0].count; b++) {
        if (nodes[0].log[b].lsn_first <= lsn && lsn <= nodes[0].log[b].lsn_last) {
            return &nodes[0].log[b];
        }
    }
    fail_msg("no batch holds lsn %" PRIu64, lsn);
    return NULL;
}

/* The primary named exactly batch (a..b) and the backup learnt it. */
static void expect_divergent(const struct fake_batch *batch)
{
    char want[128];
    snprintf(want, sizeof(want), "first divergent batch lsn %" PRIu64 "..%" PRIu64 " ",
             batch->lsn_first, batch->lsn_last);
    if (strstr(trace, want) == NULL) {
        fail_msg("no trace line names %s; trace:\n%s", want, trace);
    }
    struct tdm_replica_status status;
    status_of(0, &status);
    assert_int_equal(status.nodes[1].divergent_first, batch->lsn_first);
    assert_int_equal(status.nodes[1].divergent_last, batch->lsn_last);
    assert_int_equal(status.nodes[1].mismatches_found, 1);
    assert_false(status.nodes[1].bisecting);
    /* Never verified above a point where the chain hashes differ. */
    assert_int_equal(status.nodes[1].verified_lsn, batch->lsn_first - 1);
    /* The next CHECK tells the backup, which lowers its own claim too. */
    advance(INTERVAL_MS);
    status_of(1, &status);
    assert_int_equal(status.nodes[1].divergent_first, batch->lsn_first);
    assert_int_equal(status.nodes[1].divergent_last, batch->lsn_last);
    assert_int_equal(status.nodes[1].verified_lsn, batch->lsn_first - 1);
    assert_non_null(strstr(trace, "the primary names lsn"));
    /* Still diverged: no second bisection, no second count. */
    status_of(0, &status);
    assert_int_equal(status.nodes[1].mismatches_found, 1);
}

/* A backup whose history was altered at lsn (same length, one byte, every
 * checksum and chain hash recomputed) is found at the first checkpoint, and
 * bisection names the primary's batch holding lsn, in at most ~2 log2(n)
 * CHECKs. Tried at the first batch, a middle one, the last. */
static void test_verify__altered_history_named(void **state)
{
    static const uint64_t altered[] = {1, 2, 14, 17, 25, LAST_LSN};
    for (size_t k = 0; k < sizeof(altered) / sizeof(altered[0]); k++) {
        setup(state);
        log_build(&nodes[0], counts, COUNT_BATCHES, 0);
        log_build(&nodes[1], counts, COUNT_BATCHES, altered[k]);
        node_init(0, NULL);
        node_init(1, NULL);
        connect();
        assert_non_null(strstr(trace, "chain hashes differ at lsn 30"));
        assert_true(nodes[0].checks_sent <= 2 * 5 + 2);
        expect_divergent(primary_batch(altered[k]));
    }
}

/* An altered backup that both sides had verified through the end before (the
 * claims of DIR/verified, from before the alteration): the old claim is
 * checked again first, fails, and bisection starts from the empty history;
 * the batch is still named exactly and both claims come down. */
static void test_verify__altered_below_old_claim(void **state)
{
    (void)state;
    log_build(&nodes[0], counts, COUNT_BATCHES, 0);
    log_build(&nodes[1], counts, COUNT_BATCHES, 12);
    const uint64_t primary_claims[NODES] = {0, LAST_LSN - 4};
    const uint64_t backup_claims[NODES] = {0, LAST_LSN};
    node_init(0, primary_claims);
    node_init(1, backup_claims);
    /* The primary's newest checkpoint (30) differs; its older claim (26) is a
     * batch end and is checked again: it differs too. */
    connect();
    assert_non_null(strstr(trace, "differs at lsn 26 too"));
    expect_divergent(primary_batch(12));
    assert_false(nodes[0].claim_fresh[1] && nodes[0].claim_lsn[1] > 11);
}

/* The backup's batches end elsewhere (two of the primary's batches were one
 * batch there: the same records): it has no batch end at the primary's end of
 * the first of them, so that batch is the first divergent one. */
static void test_verify__other_batch_boundaries(void **state)
{
    (void)state;
    static const uint32_t merged[] = {1, 3, 2, 4, 1, 1, 7, 2, 2, 3, 4}; /* 3 + 4 as one. */
    log_build(&nodes[0], counts, COUNT_BATCHES, 0);
    log_build(&nodes[1], merged, sizeof(merged) / sizeof(merged[0]), 0);
    assert_int_equal(log_last(&nodes[1]), LAST_LSN);
    node_init(0, NULL);
    node_init(1, NULL);
    connect();
    expect_divergent(primary_batch(13)); /* The primary's batch 13..15. */
}

/* A CHECK at an LSN the backup does not hold durably gets ABSENT, never a
 * verdict: no false alarm from a backup that is behind. */
static void test_verify__absent_is_no_verdict(void **state)
{
    (void)state;
    log_build(&nodes[0], counts, COUNT_BATCHES, 0);
    log_build(&nodes[1], counts, COUNT_BATCHES - 2, 0); /* Holds 1..23. */
    node_init(1, NULL);
    /* Play the primary by hand (nothing is pumped): START makes the backup LIVE. */
    struct tdm_event up = {.type = TDM_EVENT_PEER_UP};
    up.peer.node_index = 0;
    step(1, &up);
    static struct tdm_frame frame;
    memset(&frame, 0, sizeof(frame));
    frame.type = TDM_FRAME_START;
    frame.epoch = 1;
    frame.start.hello_id = nodes[1].replica.peers[0].hello_id;
    frame.start.fork_lsn = 23;
    frame.start.history = nodes[1].replica.history;
    struct tdm_event event = {.type = TDM_EVENT_RECEIVE};
    event.receive.node_index = 0;
    event.receive.frame = &frame;
    step(1, &event);
    assert_int_equal(nodes[1].replica.peers[0].link, TDM_LINK_LIVE);
    memset(&frame, 0, sizeof(frame));
    frame.type = TDM_FRAME_CHECK;
    frame.epoch = 1;
    frame.check.check_id = 7;
    frame.check.lsn = 26;
    frame.check.chain_hash = nodes[0].log[9].chain;
    step(1, &event);
    const struct tdm_send *answer = NULL;
    for (uint32_t i = 0; i < nodes[1].actions.send_count; i++) {
        if (nodes[1].actions.sends[i].type == TDM_FRAME_CHECK_RESULT) {
            answer = &nodes[1].actions.sends[i];
        }
    }
    assert_non_null(answer);
    assert_int_equal(answer->check_result.check_id, 7);
    assert_int_equal(answer->check_result.result, TDM_CHECK_ABSENT);
    assert_int_equal(nodes[1].actions.read_count, 0);
    struct tdm_replica_status status;
    status_of(1, &status);
    assert_int_equal(status.nodes[1].mismatches_found, 0);
    assert_int_equal(status.nodes[1].verified_lsn, 0);
}

/* A lost CHECK_RESULT: the check times out (2 * handshake_ms) and the next one
 * proves the copy; an answer to a CHECK no longer outstanding is ignored. */
static void test_verify__lost_answer_retried(void **state)
{
    (void)state;
    log_build(&nodes[0], counts, COUNT_BATCHES, 0);
    log_build(&nodes[1], counts, COUNT_BATCHES, 0);
    node_init(0, NULL);
    node_init(1, NULL);
    drop_type = TDM_FRAME_CHECK_RESULT;
    drop_count = 1;
    connect();
    struct tdm_replica_status status;
    status_of(0, &status);
    assert_int_equal(status.nodes[1].verified_lsn, 0);
    for (uint32_t i = 0; i < 2 * HANDSHAKE_MS / 100; i++) {
        advance(100); /* Heartbeats keep the link LIVE meanwhile. */
    }
    assert_non_null(strstr(trace, "unanswered"));
    status_of(0, &status);
    assert_int_equal(status.nodes[1].verified_lsn, LAST_LSN);
    assert_int_equal(nodes[0].checks_sent, 2);
    /* A stale answer (check id 1, long gone) changes nothing. */
    static struct tdm_frame frame;
    memset(&frame, 0, sizeof(frame));
    frame.type = TDM_FRAME_CHECK_RESULT;
    frame.epoch = nodes[0].replica.epoch;
    frame.check_result.check_id = 1;
    frame.check_result.lsn = LAST_LSN;
    frame.check_result.result = TDM_CHECK_DIFFERENT;
    frame.check_result.batch_first = 27;
    frame.check_result.batch_last = LAST_LSN;
    struct tdm_event event = {.type = TDM_EVENT_RECEIVE};
    event.receive.node_index = 1;
    event.receive.frame = &frame;
    step(0, &event);
    assert_non_null(strstr(trace, "ignore CHECK_RESULT from #1: answers no outstanding CHECK"));
    status_of(0, &status);
    assert_int_equal(status.nodes[1].mismatches_found, 0);
}

/* Verification off (verify_interval_ms 0): no CHECK is ever sent. */
static void test_verify__disabled(void **state)
{
    (void)state;
    log_build(&nodes[0], counts, COUNT_BATCHES, 0);
    log_build(&nodes[1], counts, COUNT_BATCHES, 0);
    node_init(0, NULL);
    node_init(1, NULL);
    nodes[0].replica.config.verify_interval_ms = 0;
    connect();
    advance(5 * INTERVAL_MS);
    assert_int_equal(nodes[0].checks_sent, 0);
    struct tdm_replica_status status;
    status_of(0, &status);
    assert_false(status.nodes[1].verify_known);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_verify__identical_copies, setup),
        cmocka_unit_test_setup(test_verify__altered_history_named, setup),
        cmocka_unit_test_setup(test_verify__altered_below_old_claim, setup),
        cmocka_unit_test_setup(test_verify__other_batch_boundaries, setup),
        cmocka_unit_test_setup(test_verify__absent_is_no_verdict, setup),
        cmocka_unit_test_setup(test_verify__lost_answer_retried, setup),
        cmocka_unit_test_setup(test_verify__disabled, setup),
    };
    return cmocka_run_group_tests_name("replica_verify", tests, NULL, NULL);
}
