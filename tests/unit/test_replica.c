/* tests/unit/test_replica.c: how a primary starts (net/replica_primary.c,
 * docs/PROTOCOL.md §4): a new cluster's first primary acts in epoch 1 at once
 * and, in epoch 1, ships only what is durable locally; any other start of a
 * primary opens epoch + 1 and ships before the local fdatasync. And what a
 * failed APPEND read (SHIP_FAILED, docs/PROTOCOL.md §9.5) does: nothing is
 * acknowledged, shipping waits and resumes by go-back-N.
 *
 * Method: one real struct tdm_replica (node 0 of two) stepped by hand with the
 * events an adapter would report; each test checks the actions of each step.
 * The backup (node 1) is played by frames built here. */
#include "tdm_test.h"

#include <string.h>

#include "engine/base/error.h"
#include "net/replica.h"

/* Large (the action arrays): static, reset by every test. */
static struct tdm_replica replica;
static struct tdm_actions actions;
static uint64_t now_ms;

/* Initialise replica as node 0 of two with history (epoch, lsn_first,
 * primary) triples and a log ending at last_lsn (of epoch last_epoch). */
static void replica_make(uint32_t count, const uint64_t (*entries)[3], uint64_t last_lsn,
                         uint64_t last_epoch)
{
    struct tdm_epoch_history history;
    memset(&history, 0, sizeof(history));
    history.count = count;
    for (uint32_t i = 0; i < count; i++) {
        history.entries[i].epoch = entries[i][0];
        history.entries[i].lsn_first = entries[i][1];
        history.entries[i].primary_index = (uint32_t)entries[i][2];
    }
    struct tdm_replica_config config = {
        .node_count = 2,
        .self_index = 0,
        .min_copies = 2,
        .write_deadline_ms = 10000,
        .heartbeat_ms = 100,
        .retransmit_ms = 300,
        .handshake_ms = 300,
        .pipeline_batches_max = TDM_PIPELINE_BATCHES_MAX,
        .pipeline_size_max = TDM_PIPELINE_BYTES_MAX,
        .history = &history,
        .last_lsn = last_lsn,
        .last_epoch = last_epoch,
    };
    memset(&replica, 0, sizeof(replica));
    tdm_replica_init(&replica, &config);
    now_ms = 1;
}

static void step(struct tdm_event *event)
{
    event->now_ms = ++now_ms;
    tdm_replica_step(&replica, event, &actions);
}

static void step_tick(void)
{
    struct tdm_event event = {.type = TDM_EVENT_TICK};
    step(&event);
}

static void step_receive(struct tdm_frame *frame)
{
    struct tdm_event event = {.type = TDM_EVENT_RECEIVE};
    event.receive.node_index = 1;
    event.receive.frame = frame;
    step(&event);
}

static void step_persisted(enum tdm_persisted_kind kind, uint64_t lsn_first, uint64_t lsn_last)
{
    struct tdm_event event = {.type = TDM_EVENT_PERSISTED};
    event.persisted.kind = kind;
    event.persisted.write_id = 1;
    event.persisted.lsn_first = lsn_first;
    event.persisted.lsn_last = lsn_last;
    step(&event);
}

/* The only send of type in the last step's actions, or NULL if none. */
static const struct tdm_send *send_find(uint16_t type)
{
    const struct tdm_send *found = NULL;
    for (uint32_t i = 0; i < actions.send_count; i++) {
        if (actions.sends[i].type == type) {
            assert_null(found);
            found = &actions.sends[i];
        }
    }
    return found;
}

/* The last step sent one APPEND, of LSNs lsn_first .. lsn_last. */
static void append_sent_is(uint64_t lsn_first, uint64_t lsn_last)
{
    const struct tdm_send *append = send_find(TDM_FRAME_APPEND);
    assert_non_null(append);
    assert_int_equal(append->append.lsn_first, lsn_first);
    assert_int_equal(append->append.lsn_last, lsn_last);
}

/* Node 1 acknowledges in epoch 1: received and durable through lsn. */
static void step_ack(uint64_t lsn)
{
    static struct tdm_frame ack;
    memset(&ack, 0, sizeof(ack));
    ack.type = TDM_FRAME_ACK;
    ack.epoch = 1;
    ack.ack.durable_lsn = lsn;
    ack.ack.received_lsn = lsn;
    step_receive(&ack);
}

static enum tdm_role role_now(uint64_t *epoch)
{
    struct tdm_replica_status status;
    tdm_replica_status(&replica, &status);
    *epoch = status.epoch;
    return status.role;
}

/* Link node 1 up and take it through HELLO, START and READY (an empty log,
 * in the primary's epoch): afterwards it is LIVE from LSN 1. */
static void backup_join(uint64_t epoch, const struct tdm_epoch_history *history)
{
    struct tdm_event up = {.type = TDM_EVENT_PEER_UP};
    up.peer.node_index = 1;
    step(&up);
    assert_non_null(send_find(TDM_FRAME_HELLO));
    static struct tdm_frame frame;
    memset(&frame, 0, sizeof(frame));
    frame.type = TDM_FRAME_HELLO;
    frame.epoch = epoch;
    frame.hello.version = TDM_FRAME_VERSION;
    frame.hello.role = TDM_ROLE_BACKUP;
    frame.hello.hello_id = 1;
    frame.hello.history = *history;
    step_receive(&frame);
    const struct tdm_send *start = send_find(TDM_FRAME_START);
    assert_non_null(start);
    assert_int_equal(start->start.fork_lsn, 0);
    memset(&frame, 0, sizeof(frame));
    frame.type = TDM_FRAME_READY;
    frame.epoch = epoch;
    frame.ready.hello_id = 1;
    step_receive(&frame);
}

/* Submit write 1 (two records) and expect it handed to the engine at once. */
static void submit_one(uint64_t epoch)
{
    struct tdm_event event = {.type = TDM_EVENT_SUBMIT};
    event.submit.write_id = 1;
    event.submit.record_count = 2;
    event.submit.size = 100;
    step(&event);
    assert_int_equal(actions.write_count, 1);
    assert_int_equal(actions.writes[0].kind, TDM_WRITE_LOCAL);
    assert_int_equal(actions.writes[0].epoch, epoch);
}

static void step_appended(uint64_t lsn_last, uint64_t epoch)
{
    struct tdm_event event = {.type = TDM_EVENT_APPENDED};
    event.appended.lsn_last = lsn_last;
    event.appended.size = 100;
    event.appended.epoch = epoch;
    step(&event);
}

/* A new cluster's first primary (history (1, self, 1), empty log) acts in
 * epoch 1 from its first step: nothing to persist, writes go straight to the
 * engine, stamped with epoch 1. */
static void test_replica_primary__first_epoch_acts_at_once(void **state)
{
    (void)state;
    replica_make(1, (const uint64_t[][3]){{1, 1, 0}}, 0, 0);
    step_tick();
    assert_null(actions.history_to_persist);
    uint64_t epoch = 0;
    assert_int_equal(role_now(&epoch), TDM_ROLE_PRIMARY);
    assert_int_equal(epoch, 1);
    submit_one(1);
}

/* In epoch 1 the primary ships a batch only once it is durable locally: that
 * is what lets a restart with an empty log act in epoch 1 again (no backup can
 * hold an epoch-1 batch the primary lost). A write is acknowledged once the
 * backup holds it durably. */
static void test_replica_primary__first_epoch_ships_only_durable(void **state)
{
    (void)state;
    replica_make(1, (const uint64_t[][3]){{1, 1, 0}}, 0, 0);
    step_tick();
    backup_join(1, &replica.history);
    submit_one(1);
    step_appended(2, 1);
    assert_null(send_find(TDM_FRAME_APPEND)); /* Written, not durable: stays here. */
    step_persisted(TDM_PERSISTED_LOG, 0, 2);
    append_sent_is(1, 2);
    step_persisted(TDM_PERSISTED_WRITE, 1, 2);
    assert_int_equal(actions.result_count, 0);
    step_ack(2);
    assert_int_equal(actions.result_count, 1);
    assert_int_equal(actions.results[0].status, 0);
    assert_int_equal(actions.results[0].lsn_last, 2);
}

/* A primary that restarts with a non-empty log opens epoch 2 (the next it
 * owns, PROTOCOL.md §4) at its next LSN once a backup of its lineage says
 * HELLO, persisted before it acts (writes wait), and acts once a backup has
 * joined epoch 2. */
static void test_replica_primary__restart_opens_next_epoch(void **state)
{
    (void)state;
    replica_make(1, (const uint64_t[][3]){{1, 1, 0}}, 4, 1);
    step_tick();
    assert_null(actions.history_to_persist); /* Waits for a backup first. */
    struct tdm_event up = {.type = TDM_EVENT_PEER_UP};
    up.peer.node_index = 1;
    step(&up);
    static struct tdm_frame hello;
    memset(&hello, 0, sizeof(hello));
    hello.type = TDM_FRAME_HELLO;
    hello.epoch = 1;
    hello.hello.version = TDM_FRAME_VERSION;
    hello.hello.role = TDM_ROLE_BACKUP;
    hello.hello.hello_id = 1;
    hello.hello.history = replica.history;
    step_receive(&hello);
    assert_non_null(actions.history_to_persist);
    const struct tdm_epoch_history *next = actions.history_to_persist;
    assert_int_equal(next->count, 2);
    assert_int_equal(next->entries[1].epoch, 2);
    assert_int_equal(next->entries[1].lsn_first, 5);
    assert_int_equal(next->entries[1].primary_index, 0);
    uint64_t epoch = 0;
    assert_int_equal(role_now(&epoch), TDM_ROLE_RECOVERING);
    struct tdm_event submit = {.type = TDM_EVENT_SUBMIT};
    submit.submit.write_id = 1;
    submit.submit.record_count = 2;
    submit.submit.size = 100;
    step(&submit);
    assert_int_equal(actions.write_count, 0); /* Held until the epoch is durable. */
    step_persisted(TDM_PERSISTED_EPOCHS, 0, 0);
    assert_int_equal(role_now(&epoch), TDM_ROLE_HOLDING); /* Until a backup joins. */
    assert_int_equal(epoch, 2);
    assert_int_equal(actions.write_count, 0);
    hello.epoch = 1;
    hello.hello.hello_id = 2;
    hello.hello.last_lsn = 4;
    hello.hello.durable_lsn = 4;
    hello.hello.last_epoch = 1;
    step_receive(&hello);
    const struct tdm_send *start = send_find(TDM_FRAME_START);
    assert_non_null(start);
    assert_int_equal(start->start.fork_lsn, 4);
    static struct tdm_frame ready;
    memset(&ready, 0, sizeof(ready));
    ready.type = TDM_FRAME_READY;
    ready.epoch = 2;
    ready.ready.hello_id = 2;
    ready.ready.last_lsn = 4;
    ready.ready.durable_lsn = 4;
    step_receive(&ready);
    assert_int_equal(role_now(&epoch), TDM_ROLE_PRIMARY);
    assert_int_equal(actions.write_count, 1);
    assert_int_equal(actions.writes[0].epoch, 2);
}

/* A primary whose log holds no batch of its epoch (2: it restarted before,
 * having made nothing durable there) acts in it again, without a new epoch,
 * once a backup joins; until its first batch of epoch 2 is durable here it
 * ships only durable batches (that is what makes acting again safe), then it
 * ships before the local fdatasync. */
static void test_replica_primary__empty_log_later_epoch_acts_again(void **state)
{
    (void)state;
    replica_make(2, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}}, 0, 0);
    step_tick();
    assert_null(actions.history_to_persist);
    uint64_t epoch = 0;
    assert_int_equal(role_now(&epoch), TDM_ROLE_HOLDING);
    assert_int_equal(epoch, 2);
    backup_join(2, &replica.history);
    assert_int_equal(role_now(&epoch), TDM_ROLE_PRIMARY);
    submit_one(2);
    step_appended(2, 2);
    assert_null(send_find(TDM_FRAME_APPEND)); /* Not durable here yet. */
    step_persisted(TDM_PERSISTED_LOG, 0, 2);
    const struct tdm_send *append = send_find(TDM_FRAME_APPEND);
    assert_non_null(append);
    assert_int_equal(append->append.lsn_last, 2);
    struct tdm_event submit = {.type = TDM_EVENT_SUBMIT};
    submit.submit.write_id = 2;
    submit.submit.record_count = 1;
    submit.submit.size = 50;
    step(&submit);
    step_appended(3, 2);
    append = send_find(TDM_FRAME_APPEND); /* A durable batch of epoch 2 exists now. */
    assert_non_null(append);
    assert_int_equal(append->append.lsn_last, 3);
}

/* An APPEND whose read fails on the primary (a batch fails its checksum:
 * nothing of it was sent, PROTOCOL.md §9.5) is traced and kept for status;
 * nothing is acknowledged; go-back-N asks for the range again after
 * retransmit_ms, and once the backup holds it (the range was repaired) the
 * write is acknowledged and status no longer says shipping waits. */
static void test_replica_primary__ship_failed_waits_for_repair(void **state)
{
    (void)state;
    replica_make(1, (const uint64_t[][3]){{1, 1, 0}}, 0, 0);
    step_tick();
    backup_join(1, &replica.history);
    submit_one(1);
    step_appended(2, 1);
    step_persisted(TDM_PERSISTED_LOG, 0, 2);
    assert_non_null(send_find(TDM_FRAME_APPEND));
    step_persisted(TDM_PERSISTED_WRITE, 1, 2);
    struct tdm_event failed = {.type = TDM_EVENT_SHIP_FAILED};
    failed.ship_failed.node_index = 1;
    failed.ship_failed.lsn_first = 1;
    failed.ship_failed.lsn_last = 2;
    failed.ship_failed.status = TANDEM_ECORRUPT;
    step(&failed);
    assert_null(send_find(TDM_FRAME_APPEND));
    assert_int_equal(actions.result_count, 0);
    struct tdm_replica_status status;
    tdm_replica_status(&replica, &status);
    assert_int_equal(status.ship_failures, 1);
    assert_int_equal(status.ship_failed_lsn, 1);
    now_ms += 300; /* retransmit_ms without progress: the range again. */
    step_tick();
    append_sent_is(1, 2);
    step_ack(2);
    assert_int_equal(actions.result_count, 1);
    assert_int_equal(actions.results[0].status, 0);
    tdm_replica_status(&replica, &status);
    assert_int_equal(status.ship_failures, 1);
    assert_int_equal(status.ship_failed_lsn, 0);
}

/* A backup ships nothing: a SHIP_FAILED it gets (a send from before it
 * stepped down) changes nothing and sends nothing. */
static void test_replica_backup__ship_failed_ignored(void **state)
{
    (void)state;
    replica_make(1, (const uint64_t[][3]){{1, 1, 1}}, 0, 0);
    step_tick();
    struct tdm_event failed = {.type = TDM_EVENT_SHIP_FAILED};
    failed.ship_failed.node_index = 1;
    failed.ship_failed.lsn_first = 1;
    failed.ship_failed.lsn_last = 1;
    failed.ship_failed.status = TANDEM_ECORRUPT;
    step(&failed);
    assert_int_equal(actions.send_count, 0);
    struct tdm_replica_status status;
    tdm_replica_status(&replica, &status);
    assert_int_equal(status.role, TDM_ROLE_BACKUP);
    assert_int_equal(status.ship_failures, 0);
    assert_int_equal(status.ship_failed_lsn, 0);
}

/* One encoded record of 4 bytes, as a FORWARD carries it. */
static const uint8_t forward_records[8] = {4, 0, 0, 0, 1, 2, 3, 4};

/* Node 0, primary of epoch 1 with node 1 LIVE as its backup; *frame is a
 * FORWARD from node 1 of forward_records (request id 0, no flags). */
static void primary_with_backup_forward(struct tdm_frame *frame)
{
    const uint64_t entries[][3] = {{1, 1, 0}};
    replica_make(1, entries, 0, 0);
    step_tick();
    backup_join(1, &replica.history);
    memset(frame, 0, sizeof(*frame));
    frame->type = TDM_FRAME_FORWARD;
    frame->epoch = 1;
    frame->forward.record_count = 1;
    frame->forward.size = sizeof(forward_records);
    frame->forward.records = forward_records;
}

/* FORWARD request ids need not arrive in order (PROTOCOL.md §6): a write a
 * holding primary answered ENOTPRIMARY (not taken) is sent again to the new
 * primary after newer ones it already took. The older id is taken; only an
 * id in flight here is a duplicate (ignored: its answer comes when it is
 * done). Before the fix an older id was ignored as "reordered" and the
 * backup's write waited for its deadline (loopback: 100 switchovers). */
static void test_replica_primary__forward_ids_out_of_order(void **state)
{
    (void)state;
    static struct tdm_frame frame;
    primary_with_backup_forward(&frame);
    frame.forward.request_id = 20;
    step_receive(&frame);
    assert_int_equal(actions.write_count, 1); /* Taken: handed to the engine. */
    assert_int_equal(actions.writes[0].kind, TDM_WRITE_LOCAL);
    frame.forward.request_id = 10; /* Older: bounced elsewhere, sent again. */
    step_receive(&frame);
    assert_int_equal(actions.write_count, 1);
    assert_int_equal(actions.writes[0].kind, TDM_WRITE_LOCAL);
    assert_null(send_find(TDM_FRAME_FORWARD_RESULT));
    frame.forward.request_id = 20; /* In flight: a duplicate, ignored. */
    step_receive(&frame);
    assert_int_equal(actions.write_count, 0);
    assert_null(send_find(TDM_FRAME_FORWARD_RESULT));
}

/* A FORWARD the primary does not take (EBUSY: too many writes, or not
 * acting yet) holds every later FORWARD of that link, until the backup sends
 * its oldest unanswered write again, flagged RESTART (PROTOCOL.md §6).
 * Without the hold, a backup's pipelined write taken after an older one
 * bounced gets the lower LSN: loopback.cluster saw "LSNs increase in input
 * order: 31003 after 31065" (sim: O1). */
static void test_replica_primary__forward_held_after_bounce(void **state)
{
    (void)state;
    static struct tdm_frame frame;
    primary_with_backup_forward(&frame);
    /* Fill the write table with the primary's own writes. */
    struct tdm_event submit = {.type = TDM_EVENT_SUBMIT};
    submit.submit.record_count = 1;
    submit.submit.size = sizeof(forward_records);
    for (uint64_t id = 1; id <= TDM_REPLICA_WRITES_MAX; id++) {
        submit.submit.write_id = id;
        step(&submit);
        assert_int_equal(actions.result_count, 0);
    }
    frame.forward.request_id = 1;
    frame.forward.flags = TDM_FORWARD_RESTART;
    step_receive(&frame);
    const struct tdm_send *result = send_find(TDM_FRAME_FORWARD_RESULT);
    assert_non_null(result);
    assert_int_equal(result->forward_result.status, TANDEM_EBUSY);
    /* One of the primary's own writes fails by its deadline: room again. */
    now_ms += 10000;
    step_tick();
    assert_int_equal(actions.result_count, TDM_REPLICA_WRITES_MAX);
    /* Write 2 was pipelined behind 1: not taken either, though there is room. */
    frame.forward.request_id = 2;
    frame.forward.flags = 0;
    step_receive(&frame);
    result = send_find(TDM_FRAME_FORWARD_RESULT);
    assert_non_null(result);
    assert_int_equal(result->forward_result.status, TANDEM_EBUSY);
    assert_int_equal(actions.write_count, 0);
    /* The backup sends 1 again (its oldest, RESTART), then 2: both taken, in order. */
    frame.forward.request_id = 1;
    frame.forward.flags = TDM_FORWARD_RESTART;
    step_receive(&frame);
    assert_null(send_find(TDM_FRAME_FORWARD_RESULT));
    assert_int_equal(actions.write_count, 1);
    frame.forward.request_id = 2;
    frame.forward.flags = 0;
    step_receive(&frame);
    assert_null(send_find(TDM_FRAME_FORWARD_RESULT));
    assert_int_equal(actions.write_count, 1);
}

/* The backup's side: writes are forwarded in submission order, the first
 * flagged RESTART; after a bounce nothing is sent again until every FORWARD
 * sent is answered, then the oldest goes first (RESTART) and the rest follow
 * in order; a new write waits behind an unsent older one. */
static void test_replica_backup__forward_in_order_after_bounce(void **state)
{
    (void)state;
    replica_make(1, (const uint64_t[][3]){{1, 1, 1}}, 0, 0);
    step_tick();
    struct tdm_event up = {.type = TDM_EVENT_PEER_UP};
    up.peer.node_index = 1;
    step(&up);
    const struct tdm_send *hello = send_find(TDM_FRAME_HELLO);
    assert_non_null(hello);
    uint64_t hello_id = hello->hello.hello_id;
    struct tdm_event submit = {.type = TDM_EVENT_SUBMIT};
    submit.submit.record_count = 1;
    submit.submit.size = 8;
    for (uint64_t id = 1; id <= 3; id++) {
        submit.submit.write_id = id;
        step(&submit);
        const struct tdm_send *forward = send_find(TDM_FRAME_FORWARD);
        assert_non_null(forward);
        assert_int_equal(forward->forward.request_id, id);
        assert_int_equal(forward->forward.flags, id == 1 ? TDM_FORWARD_RESTART : 0);
    }
    /* The primary's answers: 1 bounced, so 2 and 3 bounce as well. */
    static struct tdm_frame frame;
    memset(&frame, 0, sizeof(frame));
    frame.type = TDM_FRAME_FORWARD_RESULT;
    frame.epoch = 1;
    frame.forward_result.request_id = 1;
    frame.forward_result.status = TANDEM_EBUSY;
    step_receive(&frame);
    assert_int_equal(actions.send_count, 0);
    /* A new write waits behind the unsent one. */
    submit.submit.write_id = 4;
    step(&submit);
    assert_null(send_find(TDM_FRAME_FORWARD));
    /* The handshake completes; a HEARTBEAT: 2 and 3 are still unanswered. */
    static struct tdm_frame start;
    memset(&start, 0, sizeof(start));
    start.type = TDM_FRAME_START;
    start.epoch = 1;
    start.start.hello_id = hello_id;
    start.start.history = replica.history;
    step_receive(&start);
    assert_non_null(send_find(TDM_FRAME_READY));
    assert_null(send_find(TDM_FRAME_FORWARD));
    static struct tdm_frame heartbeat;
    memset(&heartbeat, 0, sizeof(heartbeat));
    heartbeat.type = TDM_FRAME_HEARTBEAT;
    heartbeat.epoch = 1;
    step_receive(&heartbeat);
    assert_null(send_find(TDM_FRAME_FORWARD));
    for (uint64_t id = 2; id <= 3; id++) {
        frame.forward_result.request_id = id;
        step_receive(&frame);
    }
    step_receive(&heartbeat);
    assert_int_equal(actions.send_count, 5); /* ACK, then FORWARD 1..4. */
    for (uint64_t id = 1; id <= 4; id++) {
        const struct tdm_send *forward = &actions.sends[id];
        assert_int_equal(forward->type, TDM_FRAME_FORWARD);
        assert_int_equal(forward->forward.request_id, id);
        assert_int_equal(forward->forward.flags, id == 1 ? TDM_FORWARD_RESTART : 0);
    }
    /* The link drops: no answer can come for them any more; they fail now. */
    struct tdm_event down = {.type = TDM_EVENT_PEER_DOWN};
    down.peer.node_index = 1;
    step(&down);
    assert_int_equal(actions.result_count, 4);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(actions.results[i].status, TANDEM_ECOPIES);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replica_primary__first_epoch_acts_at_once),
        cmocka_unit_test(test_replica_primary__first_epoch_ships_only_durable),
        cmocka_unit_test(test_replica_primary__restart_opens_next_epoch),
        cmocka_unit_test(test_replica_primary__empty_log_later_epoch_acts_again),
        cmocka_unit_test(test_replica_primary__ship_failed_waits_for_repair),
        cmocka_unit_test(test_replica_backup__ship_failed_ignored),
        cmocka_unit_test(test_replica_primary__forward_ids_out_of_order),
        cmocka_unit_test(test_replica_primary__forward_held_after_bounce),
        cmocka_unit_test(test_replica_backup__forward_in_order_after_bounce),
    };
    return cmocka_run_group_tests_name("replica", tests, NULL, NULL);
}
