/* tests/unit/test_switchover.c: switchover and failover (net/replica_switch.c,
 * net/replica_failover.c, docs/PROTOCOL.md §8) as readable traces, and every
 * refusal.
 *
 * Method: three real struct tdm_replica (nodes #0, #1, #2; #0 the primary of
 * the init history) over a hand-driven cluster: frames go into one FIFO and
 * are delivered in order by run(), each 1 ms after the one before; disk work
 * completes at once, queued behind the frames already sent; timers fire only
 * when a test lets time pass (tick()). Every replica
 * trace line, every frame sent (but HEARTBEAT and ACK, which only repeat),
 * every disk action and every result and report is appended to one trace,
 * which the trace tests compare with an expected text (cowsql's
 * CLUSTER_TRACE): a change of sequence shows as a readable diff, printed on
 * failure. The refusal tests check that nothing changed: no history persisted
 * anywhere, the same epoch and primary everywhere. */
#include "tdm_test.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/error.h"
#include "net/replica.h"

#define NODES      3
#define LOG_MAX    64
#define QUEUE_MAX  512
#define TRACE_SIZE (64 * 1024)
#define WALL_MS    UINT64_C(1700000000000)

struct batch {
    uint64_t lsn_first;
    uint64_t lsn_last;
    uint64_t epoch;
    struct tdm_frame_chain_hash chain;
};

/* One node's disk (every batch durable at once) and its persisted history. */
struct node {
    struct tdm_replica replica;
    bool running;
    struct tdm_epoch_history history;
    uint32_t count;
    struct batch log[LOG_MAX];
    uint32_t persists;    /* Histories persisted. */
    uint32_t quarantined; /* Batches cut. */
};

enum item_kind { ITEM_FRAME = 1, ITEM_EVENT };

struct item {
    enum item_kind kind;
    uint32_t from;
    uint32_t to;
    struct tdm_frame frame;
    struct tdm_event event;
};

struct cluster {
    struct node nodes[NODES];
    bool link[NODES][NODES];
    uint64_t now_ms;
    uint32_t head;
    uint32_t count;
    struct item queue[QUEUE_MAX];
    struct item current;
    struct tdm_actions actions;
    char trace[TRACE_SIZE];
    size_t trace_size;
    bool quiet; /* Setup: nothing traced. */
    uint32_t min_copies;
    struct tdm_report report; /* The last one. */
    uint32_t report_count;
    uint64_t write_next;
};

static struct cluster c;
static const uint8_t dummy_bytes[8];

static void trace_add(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void trace_add(const char *format, ...)
{
    if (c.quiet || c.trace_size + 2 >= sizeof(c.trace)) {
        return;
    }
    va_list args;
    va_start(args, format);
    int n = vsnprintf(c.trace + c.trace_size, sizeof(c.trace) - c.trace_size - 1, format, args);
    va_end(args);
    assert_true(n > 0);
    c.trace_size += (size_t)n;
    if (c.trace_size > sizeof(c.trace) - 2) {
        c.trace_size = sizeof(c.trace) - 2;
    }
    c.trace[c.trace_size++] = '\n';
    c.trace[c.trace_size] = '\0';
}

static void trace_cb(void *data, const char *line)
{
    (void)data;
    trace_add("%s", line);
}

/* --- Disks ------------------------------------------------------------------ */

static struct tdm_frame_chain_hash chain_next(const struct tdm_frame_chain_hash *prev,
                                              uint64_t lsn_last, uint64_t epoch)
{
    struct tdm_frame_chain_hash chain;
    for (uint32_t i = 0; i < TDM_FRAME_CHAIN_HASH_SIZE; i++) {
        chain.bytes[i] = (uint8_t)(prev->bytes[i] * 31u + (uint8_t)(lsn_last >> (8 * (i % 8))) +
                                   (uint8_t)epoch + i);
    }
    return chain;
}

static uint64_t node_last(const struct node *n)
{
    return n->count == 0 ? 0 : n->log[n->count - 1].lsn_last;
}

static struct tdm_frame_chain_hash node_chain(const struct node *n)
{
    struct tdm_frame_chain_hash zero;
    memset(&zero, 0, sizeof(zero));
    return n->count == 0 ? zero : n->log[n->count - 1].chain;
}

static void node_append(struct node *n, uint64_t lsn_first, uint64_t lsn_last, uint64_t epoch,
                        const struct tdm_frame_chain_hash *chain)
{
    assert_true(n->count < LOG_MAX);
    assert_int_equal(lsn_first, node_last(n) + 1);
    struct batch *b = &n->log[n->count++];
    b->lsn_first = lsn_first;
    b->lsn_last = lsn_last;
    b->epoch = epoch;
    b->chain = *chain;
}

/* --- The queue ------------------------------------------------------------- */

static struct item *queue_push(enum item_kind kind, uint32_t from, uint32_t to)
{
    assert_true(c.count < QUEUE_MAX);
    struct item *item = &c.queue[(c.head + c.count++) % QUEUE_MAX];
    memset(item, 0, sizeof(*item));
    item->kind = kind;
    item->from = from;
    item->to = to;
    return item;
}

static void queue_event(uint32_t to, const struct tdm_event *event)
{
    queue_push(ITEM_EVENT, to, to)->event = *event;
}

static void persisted(uint32_t to, enum tdm_persisted_kind kind, uint64_t lsn_last)
{
    const struct node *n = &c.nodes[to];
    struct tdm_event event = {.type = TDM_EVENT_PERSISTED};
    event.persisted.kind = kind;
    event.persisted.lsn_last = lsn_last;
    event.persisted.last_epoch = n->count == 0 ? 0 : n->log[n->count - 1].epoch;
    event.persisted.chain_hash = node_chain(n);
    queue_event(to, &event);
}

/* --- Carrying out actions ------------------------------------------------------ */

static void apply_history(uint32_t i, const struct tdm_epoch_history *h)
{
    struct node *n = &c.nodes[i];
    const struct tdm_epoch_entry *e = &h->entries[h->count - 1];
    n->history = *h;
    n->persists++;
    trace_add("  #%u persists epoch %" PRIu64 " (primary #%u, lsn %" PRIu64 ", %s%s)", i, e->epoch,
              e->primary_index, e->lsn_first, tdm_replica_cause_name(e->cause),
              e->risk_lsn_first != 0 ? ", LSNs at risk" : "");
    for (uint32_t k = 0; k < h->count; k++) {
        if (h->entries[k].pause_ms != 0) {
            trace_add("  #%u   epoch %" PRIu64 " pause %" PRIu64 " ms recorded", i,
                      h->entries[k].epoch, h->entries[k].pause_ms);
        }
    }
    persisted(i, TDM_PERSISTED_EPOCHS, 0);
}

static void apply_cut(uint32_t i, uint64_t after)
{
    struct node *n = &c.nodes[i];
    uint32_t keep = 0;
    while (keep < n->count && n->log[keep].lsn_last <= after) {
        keep++;
    }
    trace_add("  #%u cuts %u batches after lsn %" PRIu64 " into quarantine", i, n->count - keep,
              after);
    n->quarantined += n->count - keep;
    n->count = keep;
    persisted(i, TDM_PERSISTED_CUT, node_last(n));
}

static void apply_write(uint32_t i, const struct tdm_action_write *w)
{
    struct node *n = &c.nodes[i];
    if (w->kind == TDM_WRITE_LOCAL) {
        uint64_t first = node_last(n) + 1;
        uint64_t last = first + w->record_count - 1;
        struct tdm_frame_chain_hash prev = node_chain(n);
        struct tdm_frame_chain_hash chain = chain_next(&prev, last, w->epoch);
        node_append(n, first, last, w->epoch, &chain);
        if (w->write_id >= TDM_REPLICA_WRITE_ID_FORWARDED) {
            trace_add("  #%u appends a forwarded write at lsn %" PRIu64 "..%" PRIu64
                      " (epoch %" PRIu64 ")",
                      i, first, last, w->epoch);
        } else {
            trace_add("  #%u appends write %" PRIu64 " at lsn %" PRIu64 "..%" PRIu64
                      " (epoch %" PRIu64 ")",
                      i, w->write_id, first, last, w->epoch);
        }
        struct tdm_event event = {.type = TDM_EVENT_APPENDED};
        event.appended.lsn_last = last;
        event.appended.size = 100;
        event.appended.epoch = w->epoch;
        event.appended.chain_hash = chain;
        queue_event(i, &event);
        struct tdm_event done = {.type = TDM_EVENT_PERSISTED};
        done.persisted.kind = TDM_PERSISTED_WRITE;
        done.persisted.write_id = w->write_id;
        done.persisted.lsn_first = first;
        done.persisted.lsn_last = last;
        queue_event(i, &done);
        persisted(i, TDM_PERSISTED_LOG, last);
        return;
    }
    for (uint32_t b = 0; b < w->batch_count; b++) {
        const struct tdm_frame_batch *in = &w->batches[b];
        node_append(n, in->lsn_first, in->lsn_last, in->epoch, &in->chain_hash);
    }
    persisted(i, TDM_PERSISTED_LOG, node_last(n));
}

static const char *frame_name(uint16_t type)
{
    static const char *const names[] = {
        "?",       "HELLO",          "START",    "READY",         "APPEND", "ACK",   "HEARTBEAT",
        "FORWARD", "FORWARD_RESULT", "HANDOVER", "HANDOVER_DONE", "FENCE",  "FENCED"};
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

static void trace_send(uint32_t i, const struct tdm_send *send, const struct tdm_frame *frame)
{
    if (send->type == TDM_FRAME_HEARTBEAT || send->type == TDM_FRAME_ACK) {
        return;
    }
    char detail[96] = "";
    if (send->type == TDM_FRAME_HELLO) {
        snprintf(detail, sizeof(detail), " %s", tdm_replica_role_name(frame->hello.role));
    } else if (send->type == TDM_FRAME_APPEND) {
        snprintf(detail, sizeof(detail), " lsn %" PRIu64 "..%" PRIu64, send->append.lsn_first,
                 send->append.lsn_last);
    } else if (send->type == TDM_FRAME_HANDOVER) {
        snprintf(detail, sizeof(detail), " epoch %" PRIu64 " at lsn %" PRIu64,
                 frame->handover.new_epoch, frame->handover.last_lsn);
    } else if (send->type == TDM_FRAME_HANDOVER_DONE) {
        snprintf(detail, sizeof(detail), " epoch %" PRIu64 " %s", frame->handover_done.new_epoch,
                 frame->handover_done.refusal == 0
                     ? "accepted"
                     : tdm_replica_refusal_name(frame->handover_done.refusal));
    } else if (send->type == TDM_FRAME_FENCE) {
        snprintf(detail, sizeof(detail), " %s%s",
                 (frame->fence.flags & TDM_FENCE_PROBE) ? "probe" : "epoch", "");
        if ((frame->fence.flags & TDM_FENCE_PROBE) == 0) {
            snprintf(detail, sizeof(detail), " into epoch %" PRIu64, frame->fence.new_epoch);
        }
    } else if (send->type == TDM_FRAME_FENCED) {
        snprintf(detail, sizeof(detail), " epoch %" PRIu64 " durable %" PRIu64 " %s",
                 frame->fenced.epoch, frame->fenced.durable_lsn,
                 frame->fenced.refusal == 0 ? "ok"
                                            : tdm_replica_refusal_name(frame->fenced.refusal));
    } else if (send->type == TDM_FRAME_FORWARD || send->type == TDM_FRAME_FORWARD_RESULT) {
        snprintf(detail, sizeof(detail), " write %" PRIu64,
                 send->type == TDM_FRAME_FORWARD ? send->forward.request_id
                                                 : send->forward_result.request_id);
    }
    trace_add("  #%u -> #%u %s (e%" PRIu64 ")%s", i, send->node_index, frame_name(send->type),
              send->epoch, detail);
}

static void apply_send(uint32_t i, const struct tdm_send *send)
{
    uint32_t to = send->node_index;
    if (!c.link[i][to]) {
        return;
    }
    struct item *item = queue_push(ITEM_FRAME, i, to);
    tdm_replica_frame_from_send(&c.actions, send, &item->frame);
    if (send->type == TDM_FRAME_APPEND) {
        const struct node *n = &c.nodes[i];
        struct tdm_frame_append *append = &item->frame.append;
        append->batch_count = 0;
        for (uint32_t k = 0; k < n->count; k++) {
            const struct batch *b = &n->log[k];
            if (b->lsn_first >= send->append.lsn_first && b->lsn_last <= send->append.lsn_last) {
                struct tdm_frame_batch *out = &append->batches[append->batch_count++];
                out->lsn_first = b->lsn_first;
                out->lsn_last = b->lsn_last;
                out->epoch = b->epoch;
                out->size = 100;
                out->chain_hash = b->chain;
                out->bytes = dummy_bytes;
            }
        }
    } else if (send->type == TDM_FRAME_FORWARD) {
        item->frame.forward.records = dummy_bytes;
    }
    trace_send(i, send, &item->frame);
}

static void apply_report(uint32_t i, const struct tdm_report *r)
{
    trace_add("  #%u reports %s %" PRIu64 ": %s%s%s (epoch %" PRIu64 ", pause %" PRIu64
              " ms, at risk %" PRIu64 "..%" PRIu64 ")",
              i, r->kind == TDM_REPORT_SWITCHOVER ? "switchover" : "failover", r->request_id,
              tdm_replica_outcome_name(r->outcome), r->refusal != 0 ? ": " : "",
              r->refusal != 0 ? tdm_replica_refusal_name(r->refusal) : "", r->epoch, r->pause_ms,
              r->risk_lsn_first, r->risk_lsn_last);
    c.report = *r;
    c.report_count++;
}

static void apply(uint32_t i)
{
    const struct tdm_actions *a = &c.actions;
    if (a->history_to_persist != NULL) {
        apply_history(i, a->history_to_persist);
    }
    if (a->cut) {
        apply_cut(i, a->cut_after_lsn);
    }
    for (uint32_t k = 0; k < a->write_count; k++) {
        apply_write(i, &a->writes[k]);
    }
    for (uint32_t k = 0; k < a->send_count; k++) {
        apply_send(i, &a->sends[k]);
    }
    for (uint32_t k = 0; k < a->result_count; k++) {
        const struct tdm_action_result *r = &a->results[k];
        if (r->status == 0) {
            trace_add("  #%u write %" PRIu64 " acknowledged: lsn %" PRIu64 "..%" PRIu64, i,
                      r->write_id, r->lsn_first, r->lsn_last);
        } else {
            trace_add("  #%u write %" PRIu64 " failed: %d", i, r->write_id, r->status);
        }
    }
    for (uint32_t k = 0; k < a->report_count; k++) {
        apply_report(i, &a->reports[k]);
    }
}

static void step(uint32_t i, struct tdm_event *event)
{
    if (!c.nodes[i].running) {
        return;
    }
    event->now_ms = c.now_ms;
    event->wall_ms = WALL_MS + c.now_ms;
    tdm_replica_step(&c.nodes[i].replica, event, &c.actions);
    apply(i);
}

/* Deliver frames and disk completions, in order, until nothing is left. */
static void run(void)
{
    for (uint32_t rounds = 0; c.count > 0; rounds++) {
        assert_true(rounds < 100000);
        c.current = c.queue[c.head];
        c.head = (c.head + 1) % QUEUE_MAX;
        c.count--;
        struct item *item = &c.current;
        if (item->kind == ITEM_EVENT) {
            step(item->to, &item->event);
        } else if (c.link[item->from][item->to]) {
            c.now_ms++; /* A network hop. */
            struct tdm_event event = {.type = TDM_EVENT_RECEIVE};
            event.receive.node_index = item->from;
            event.receive.frame = &item->frame;
            step(item->to, &event);
        }
    }
}

/* Let ms pass, one millisecond at a time, every node ticking. */
static void tick(uint64_t ms)
{
    for (uint64_t t = 0; t < ms; t++) {
        c.now_ms++;
        for (uint32_t i = 0; i < NODES; i++) {
            struct tdm_event event = {.type = TDM_EVENT_TICK};
            step(i, &event);
        }
        run();
    }
}

static void link_set(uint32_t a, uint32_t b, bool up)
{
    if (c.link[a][b] == up) {
        return;
    }
    c.link[a][b] = c.link[b][a] = up;
    uint32_t ends[2] = {a, b};
    for (uint32_t k = 0; k < 2; k++) {
        struct tdm_event event = {.type = up ? TDM_EVENT_PEER_UP : TDM_EVENT_PEER_DOWN};
        event.peer.node_index = ends[1 - k];
        if (c.nodes[ends[k]].running) {
            queue_event(ends[k], &event);
        }
    }
}

static void node_start(uint32_t i)
{
    struct node *n = &c.nodes[i];
    struct tdm_replica_config config = {
        .node_count = NODES,
        .self_index = i,
        .min_copies = c.min_copies,
        .write_deadline_ms = 5000,
        .heartbeat_ms = 50,
        .retransmit_ms = 200,
        .handshake_ms = 100,
        .pipeline_batches_max = TDM_PIPELINE_BATCHES_MAX,
        .pipeline_size_max = TDM_PIPELINE_BYTES_MAX,
        .history = &n->history,
        .last_lsn = node_last(n),
        .last_epoch = n->count == 0 ? 0 : n->log[n->count - 1].epoch,
        .chain_hash = node_chain(n),
        .switchover_catch_up_ms = 300,
        .switchover_handover_ms = 300,
        .failover_silence_ms = 200,
        .failover_fence_ms = 300,
        .trace = trace_cb,
    };
    tdm_replica_init(&n->replica, &config);
    n->running = true;
    struct tdm_event event = {.type = TDM_EVENT_TICK};
    step(i, &event);
}

static void node_crash(uint32_t i)
{
    for (uint32_t j = 0; j < NODES; j++) {
        if (j != i) {
            link_set(i, j, false);
        }
    }
    c.nodes[i].running = false;
    trace_add("  #%u crashes", i);
}

static uint64_t submit(uint32_t i, uint32_t records)
{
    struct tdm_event event = {.type = TDM_EVENT_SUBMIT};
    event.submit.write_id = ++c.write_next;
    event.submit.record_count = records;
    event.submit.size = 100 * records;
    trace_add("%" PRIu64 " client: write %" PRIu64 " (%u records) to #%u", c.now_ms, c.write_next,
              records, i);
    step(i, &event);
    return c.write_next;
}

/* Three nodes in epoch 1, every backup LIVE, one write acknowledged. Quiet. */
static void cluster_ready(uint32_t min_copies)
{
    memset(&c, 0, sizeof(c));
    c.quiet = true;
    c.min_copies = min_copies;
    c.now_ms = 1;
    for (uint32_t i = 0; i < NODES; i++) {
        c.nodes[i].history.count = 1;
        c.nodes[i].history.entries[0] = (struct tdm_epoch_entry){
            .epoch = 1, .lsn_first = 1, .primary_index = 0, .cause = TDM_EPOCH_CAUSE_INIT};
        node_start(i);
    }
    link_set(0, 1, true);
    link_set(0, 2, true);
    link_set(1, 2, true);
    run();
    submit(0, 2);
    run();
    tick(60); /* A heartbeat: every backup learns the commit LSN. */
    for (uint32_t i = 0; i < NODES; i++) {
        c.nodes[i].persists = 0;
    }
    c.report_count = 0;
    c.quiet = false;
}

static void trace_expect(const char *expected)
{
    if (strcmp(c.trace, expected) != 0) {
        printf("--- expected\n%s--- actual\n%s---\n", expected, c.trace);
        fail_msg("the trace differs (both printed above)");
    }
}

static uint32_t persists_total(void)
{
    uint32_t total = 0;
    for (uint32_t i = 0; i < NODES; i++) {
        total += c.nodes[i].persists;
    }
    return total;
}

static struct tdm_replica_status status_of(uint32_t i)
{
    struct tdm_replica_status status;
    tdm_replica_status(&c.nodes[i].replica, &status);
    return status;
}

static void switchover(uint32_t i, uint32_t target, bool command)
{
    struct tdm_event event = {.type = TDM_EVENT_SWITCHOVER};
    event.switchover.request_id = 7;
    event.switchover.target_index = target;
    event.switchover.command = command;
    trace_add("%" PRIu64 " operator: switchover 7 on #%u", c.now_ms, i);
    step(i, &event);
}

static void failover(uint32_t i, bool force, bool dry_run)
{
    struct tdm_event event = {.type = TDM_EVENT_FAILOVER};
    event.failover.request_id = 9;
    event.failover.force = force;
    event.failover.dry_run = dry_run;
    trace_add("%" PRIu64 " operator: failover 9 on #%u%s%s", c.now_ms, i, force ? " --force" : "",
              dry_run ? " --dry-run" : "");
    step(i, &event);
}

/* Nothing changed: no history persisted, every node in epoch 1 under #0. */
static void assert_nothing_changed(void)
{
    assert_int_equal(persists_total(), 0);
    for (uint32_t i = 0; i < NODES; i++) {
        if (!c.nodes[i].running) {
            continue;
        }
        struct tdm_replica_status status = status_of(i);
        assert_int_equal(status.epoch, 1);
        assert_int_equal(status.primary_index, 0);
        assert_int_equal(c.nodes[i].history.count, 1);
    }
}

#include "test_switchover_golden.h"

/* --- Trace tests --------------------------------------------------------------- */

/* A commanded switchover from #0 to #1: #0 holds writes (one arrives and is
 * held), #1 holds lsn 2 durably, #0 persists the offer (epoch 4, owned by #1),
 * hands over, #1 persists it before it takes a write and answers, #0 reports
 * the pause, follows #1 and forwards its held write, #1 acts once #0 says
 * HELLO as its backup, #2 follows #1 on its HELLO, the held write is
 * acknowledged in epoch 4. */
static void test_switchover__trace(void **state)
{
    (void)state;
    cluster_ready(2);
    switchover(0, 1, true);
    submit(0, 1);
    run();
    tick(60);
    trace_expect(golden_switchover);
    assert_int_equal(status_of(1).role, TDM_ROLE_PRIMARY);
    assert_int_equal(status_of(1).epoch, 4);
    assert_int_equal(status_of(0).role, TDM_ROLE_BACKUP);
    assert_int_equal(status_of(2).role, TDM_ROLE_BACKUP);
    assert_int_equal(status_of(2).epoch, 4);
    /* The old primary recorded the measured pause in its own copy. */
    const struct tdm_epoch_history *h = &c.nodes[0].history;
    assert_int_equal(h->entries[h->count - 1].epoch, 4);
    assert_int_equal(h->entries[h->count - 1].cause, TDM_EPOCH_CAUSE_COMMAND);
    assert_true(h->entries[h->count - 1].pause_ms > 0);
    assert_int_equal(h->entries[h->count - 1].time_ms, c.nodes[0].history.entries[1].time_ms);
    assert_true(h->entries[h->count - 1].time_ms > WALL_MS);
}

/* The primary #0 is gone (its links down for the silence bound); #2 fails
 * over: probes #1, fences it into epoch 2 (owned by #2; #1 persists before it
 * answers), persists and acts; #1 joins it. #0 comes back with a batch nobody
 * else has: it waits for a backup before opening an epoch, hears #2's HELLO of
 * epoch 5, follows, and cuts that batch into quarantine at the fork point. */
static void test_failover__trace(void **state)
{
    (void)state;
    cluster_ready(2);
    c.quiet = true;
    link_set(0, 1, false);
    link_set(0, 2, false);
    run();
    submit(0, 1); /* Written on #0 only: not acknowledged. */
    run();
    c.quiet = false;
    trace_add("%" PRIu64 " #0 is cut off, with lsn 3 written", c.now_ms);
    c.quiet = true;
    tick(250);
    c.quiet = false;
    node_crash(0);
    run();
    failover(2, false, false);
    run();
    tick(60);
    c.nodes[0].running = false;
    trace_add("%" PRIu64 " #0 restarts", c.now_ms);
    node_start(0);
    link_set(0, 1, true);
    link_set(0, 2, true);
    run();
    tick(60);
    trace_expect(golden_failover);
    assert_int_equal(status_of(2).role, TDM_ROLE_PRIMARY);
    assert_int_equal(status_of(2).epoch, 2);
    assert_int_equal(status_of(0).role, TDM_ROLE_BACKUP);
    assert_int_equal(status_of(0).epoch, 2);
    assert_int_equal(c.nodes[0].quarantined, 1);
    assert_int_equal(node_last(&c.nodes[0]), 2);
}

/* Writes forwarded to a primary that then dies get no answer from it. Once a
 * failover moved the cluster to a new primary, each fails at once with
 * TANDEM_ECOPIES ("not acknowledged", never "not stored"), on the backup
 * that forwarded it (#1) and on the promoted node itself (#2, which forwarded
 * its write while it was a backup), instead of at its deadline (5 s here). */
static void test_failover__forwarded_writes_fail_at_once(void **state)
{
    (void)state;
    cluster_ready(2);
    c.link[1][0] = false; /* #1's and #2's FORWARDs never reach #0 (no PEER_DOWN). */
    c.link[2][0] = false;
    uint64_t w1 = submit(1, 1);
    uint64_t w2 = submit(2, 1);
    run();
    node_crash(0);
    run();
    tick(250); /* The silence bound. */
    uint64_t failover_ms = c.now_ms;
    failover(2, false, false);
    run();
    tick(60);
    assert_int_equal(status_of(2).role, TDM_ROLE_PRIMARY);
    assert_int_equal(status_of(1).role, TDM_ROLE_BACKUP);
    char line[128];
    snprintf(line, sizeof(line), "#1 write %" PRIu64 " failed: %d", w1, TANDEM_ECOPIES);
    assert_non_null(strstr(c.trace, line));
    snprintf(line, sizeof(line), "#2 write %" PRIu64 " failed: %d", w2, TANDEM_ECOPIES);
    assert_non_null(strstr(c.trace, line));
    assert_true(c.now_ms < failover_ms + 1000); /* Simulated time: long before 5 s. */
}

/* --- Switchover refusals: each changes nothing --------------------------------- */

/* A target that does not catch up within switchover_catch_up_ms (its link is
 * up but it never acknowledges): refused, writes released in the same epoch. */
static void test_switchover__refused_target_lagging(void **state)
{
    (void)state;
    cluster_ready(2);
    c.link[1][0] = false; /* #1 hears #0, #0 hears nothing from #1 (no ACK). */
    uint64_t write_id = submit(0, 1);
    run();
    switchover(0, 1, false);
    run();
    tick(320);
    assert_int_equal(c.report.outcome, TDM_OUTCOME_REFUSED);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_TARGET_LAGGING);
    assert_int_equal(c.report.node_index, 1);
    assert_int_equal(status_of(0).role, TDM_ROLE_PRIMARY);
    assert_nothing_changed();
    (void)write_id;
}

/* A second switchover while one is in progress: refused at once. */
static void test_switchover__refused_in_progress(void **state)
{
    (void)state;
    cluster_ready(2);
    c.link[1][0] = false; /* Keep the first one waiting. */
    uint64_t write_id = submit(0, 1);
    run();
    switchover(0, 1, true);
    switchover(0, 2, true);
    assert_int_equal(c.report.outcome, TDM_OUTCOME_REFUSED);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_IN_PROGRESS);
    assert_nothing_changed();
    (void)write_id;
}

/* Unknown node, the primary itself, a target whose link is down, a node that
 * is not the primary: each refused at once with its reason. */
static void test_switchover__refused_target(void **state)
{
    (void)state;
    cluster_ready(2);
    switchover(0, 9, true);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_TARGET_UNKNOWN);
    switchover(0, 0, true);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_TARGET_SELF);
    link_set(0, 2, false);
    run();
    switchover(0, 2, true);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_TARGET_DOWN);
    assert_int_equal(c.report.node_index, 2);
    switchover(1, 2, true);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_NOT_PRIMARY);
    assert_int_equal(c.report.node_index, 0);
    assert_int_equal(c.report_count, 4);
    assert_nothing_changed();
}

/* A target whose copy the verifier found different from the primary's (a
 * divergent range named: set here as net/replica_verify.c records it after a
 * bisection, which tests/unit/test_replica_verify.c drives) is refused by
 * name, and "next in rotation" passes over it. */
static void test_switchover__refused_target_unverified(void **state)
{
    (void)state;
    cluster_ready(2);
    c.nodes[0].replica.verify.peers[1].divergent_first = 3;
    c.nodes[0].replica.verify.peers[1].divergent_last = 3;
    switchover(0, 1, true);
    assert_int_equal(c.report.outcome, TDM_OUTCOME_REFUSED);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_TARGET_UNVERIFIED);
    assert_int_equal(c.report.node_index, 1);
    assert_int_equal(tdm_replica_switchover_next(&c.nodes[0].replica), 2);
    assert_nothing_changed();
}

/* "Next in rotation" skips a node whose link is down; with none left it is
 * refused. */
static void test_switchover__next_in_rotation(void **state)
{
    (void)state;
    cluster_ready(2);
    assert_int_equal(tdm_replica_switchover_next(&c.nodes[0].replica), 1);
    link_set(0, 1, false);
    run();
    assert_int_equal(tdm_replica_switchover_next(&c.nodes[0].replica), 2);
    link_set(0, 2, false);
    run();
    assert_int_equal(tdm_replica_switchover_next(&c.nodes[0].replica), UINT32_MAX);
    switchover(0, TDM_SWITCHOVER_NEXT, false);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_NO_TARGET);
    assert_nothing_changed();
}

/* The target never answers HANDOVER (it crashed after the offer): the old
 * primary resumes in an epoch of its own, above the offer's (ABANDONED). */
static void test_switchover__abandoned_resumes_above(void **state)
{
    (void)state;
    cluster_ready(2);
    switchover(0, 1, true);
    c.link[1][0] = false; /* HANDOVER_DONE never arrives. */
    run();
    tick(320);
    assert_int_equal(c.report.outcome, TDM_OUTCOME_ABANDONED);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_TARGET_TIMEOUT);
    /* Offer epoch 4 (owned by #1), resumed in 6 (owned by #0). */
    assert_int_equal(c.report.epoch, 6);
    assert_int_equal(status_of(0).role, TDM_ROLE_PRIMARY);
    assert_int_equal(status_of(0).epoch, 6);
    const struct tdm_epoch_history *h = &c.nodes[0].history;
    assert_int_equal(h->entries[h->count - 2].epoch, 4);
    assert_int_equal(h->entries[h->count - 1].cause, TDM_EPOCH_CAUSE_RESUMED);
}

/* #0 persists its offer of epoch 4 to #1, whose HANDOVER is lost, and
 * crashes; #2 fails over (epoch 2, fencing #1). #0 restarts as #1's backup of
 * epoch 4 (its offer); #1, a backup of #2, tells it so: nobody took epoch 4.
 * #0 resumes above it (epoch 6, cause resumed) and waits for a backup to join.
 * Meanwhile #2, acting in epoch 2 with #1 its LIVE backup, learns of epoch 4
 * (nobody else can hold it) and moves above it too; whichever lineage is
 * newer wins, nothing is cut, and every node ends up in one epoch above 4. */
static void test_switchover__offer_nobody_took(void **state)
{
    (void)state;
    cluster_ready(2);
    switchover(0, 1, true);
    c.link[0][1] = false; /* HANDOVER never arrives. */
    run();
    const struct tdm_epoch_history *h0 = &c.nodes[0].history;
    assert_int_equal(h0->entries[h0->count - 1].epoch, 4);
    c.link[0][1] = true; /* So that the crash takes the link down at both ends. */
    node_crash(0);
    run();
    tick(250);
    failover(2, false, false);
    run();
    tick(60);
    assert_int_equal(status_of(2).role, TDM_ROLE_PRIMARY);
    assert_int_equal(status_of(2).epoch, 2);
    c.nodes[0].running = false;
    node_start(0);
    link_set(0, 1, true);
    link_set(0, 2, true);
    run();
    tick(600);
    uint32_t primaries = 0;
    uint64_t epoch = status_of(0).epoch;
    assert_true(epoch > 4);
    for (uint32_t i = 0; i < NODES; i++) {
        struct tdm_replica_status status = status_of(i);
        primaries += status.role == TDM_ROLE_PRIMARY;
        assert_true(status.role == TDM_ROLE_PRIMARY || status.role == TDM_ROLE_BACKUP);
        assert_int_equal(status.epoch, epoch);
    }
    assert_int_equal(primaries, 1);
    bool resumed = false;
    for (uint32_t k = 0; k < h0->count; k++) {
        resumed |= h0->entries[k].epoch == 6 && h0->entries[k].cause == TDM_EPOCH_CAUSE_RESUMED;
    }
    assert_true(resumed);
    for (uint32_t i = 0; i < NODES; i++) {
        assert_int_equal(c.nodes[i].quarantined, 0);
    }
}

/* --- Failover refusals: each changes nothing ----------------------------------- */

/* The old primary still answers the target: refused before any probe. */
static void test_failover__refused_primary_alive(void **state)
{
    (void)state;
    cluster_ready(2);
    failover(2, false, false);
    run();
    assert_int_equal(c.report.outcome, TDM_OUTCOME_REFUSED);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_PRIMARY_ALIVE);
    assert_int_equal(c.report.node_index, 0);
    assert_nothing_changed();
}

/* The old primary is cut off from the target, not from the other backup,
 * which still hears it: refused, naming that backup. */
static void test_failover__refused_primary_seen_by_backup(void **state)
{
    (void)state;
    cluster_ready(2);
    link_set(0, 2, false);
    run();
    tick(250);
    failover(2, false, false);
    run();
    assert_int_equal(c.report.refusal, TDM_REFUSAL_PRIMARY_ALIVE);
    assert_int_equal(c.report.node_index, 1);
    assert_nothing_changed();
}

/* A backup does not answer the probe within failover_fence_ms. */
static void test_failover__refused_backup_unreachable(void **state)
{
    (void)state;
    cluster_ready(2);
    node_crash(0);
    link_set(1, 2, false);
    run();
    tick(250);
    failover(2, false, false);
    run();
    tick(320);
    assert_int_equal(c.report.outcome, TDM_OUTCOME_REFUSED);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_UNREACHABLE);
    assert_int_equal(c.report.node_index, 1);
    assert_nothing_changed();
}

/* Another backup holds more durable data than the target: refused, naming it.
 * The dry run says the same, with the LSNs a promotion would lose. */
static void test_failover__refused_not_highest(void **state)
{
    (void)state;
    cluster_ready(2);
    link_set(0, 2, false); /* #2 misses what follows. */
    run();
    submit(0, 3);
    run();
    tick(60);
    node_crash(0);
    run();
    tick(250);
    failover(2, false, true);
    run();
    assert_int_equal(c.report.outcome, TDM_OUTCOME_DRY_RUN);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_NOT_HIGHEST);
    assert_int_equal(c.report.node_index, 1);
    assert_int_equal(c.report.risk_lsn_first, 3);
    assert_int_equal(c.report.risk_lsn_last, 5);
    assert_true(c.report.nodes[1].answered);
    assert_int_equal(c.report.nodes[1].durable_lsn, 5);
    failover(2, false, false);
    run();
    assert_int_equal(c.report.outcome, TDM_OUTCOME_REFUSED);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_NOT_HIGHEST);
    assert_int_equal(c.report.node_index, 1);
    assert_nothing_changed();
    /* --force promotes anyway and records what was at risk. */
    failover(2, true, false);
    run();
    assert_int_equal(c.report.outcome, TDM_OUTCOME_DONE);
    const struct tdm_epoch_history *h = &c.nodes[2].history;
    assert_int_equal(h->entries[h->count - 1].cause, TDM_EPOCH_CAUSE_FORCED);
    assert_int_equal(h->entries[h->count - 1].risk_lsn_first, 3);
    assert_int_equal(h->entries[h->count - 1].risk_lsn_last, 5);
}

/* With min_copies 1 an acknowledged write may be on the old primary alone:
 * refused unless forced. Asked of the primary itself: not a backup. */
static void test_failover__refused_single_copy_or_primary(void **state)
{
    (void)state;
    cluster_ready(1);
    failover(0, false, false);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_NOT_BACKUP);
    node_crash(0);
    run();
    tick(250);
    failover(2, false, false);
    assert_int_equal(c.report.refusal, TDM_REFUSAL_SINGLE_COPY);
    assert_nothing_changed();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switchover__trace),
        cmocka_unit_test(test_failover__trace),
        cmocka_unit_test(test_failover__forwarded_writes_fail_at_once),
        cmocka_unit_test(test_switchover__refused_target_lagging),
        cmocka_unit_test(test_switchover__refused_in_progress),
        cmocka_unit_test(test_switchover__refused_target),
        cmocka_unit_test(test_switchover__refused_target_unverified),
        cmocka_unit_test(test_switchover__next_in_rotation),
        cmocka_unit_test(test_switchover__abandoned_resumes_above),
        cmocka_unit_test(test_switchover__offer_nobody_took),
        cmocka_unit_test(test_failover__refused_primary_alive),
        cmocka_unit_test(test_failover__refused_primary_seen_by_backup),
        cmocka_unit_test(test_failover__refused_backup_unreachable),
        cmocka_unit_test(test_failover__refused_not_highest),
        cmocka_unit_test(test_failover__refused_single_copy_or_primary),
    };
    return cmocka_run_group_tests_name("switchover", tests, NULL, NULL);
}
