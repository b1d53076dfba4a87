/* tests/unit/test_replica_fork.c: epoch histories and the fork point
 * (net/replica_fork.c, docs/PROTOCOL.md §4, §5.2).
 *
 * Each test builds two histories by hand, as a primary and a backup would
 * hold them after the events its comment describes, and checks the fork point
 * (the backup keeps LSNs 1..fork and cuts the rest) or the history checks. */
#include "tdm_test.h"

#include <string.h>

#include "net/replica.h"

/* Build a history from (epoch, lsn_first, primary) triples. */
static void history_make(struct tdm_epoch_history *history, uint32_t count,
                         const uint64_t (*entries)[3])
{
    memset(history, 0, sizeof(*history));
    history->count = count;
    for (uint32_t i = 0; i < count; i++) {
        history->entries[i].epoch = entries[i][0];
        history->entries[i].lsn_first = entries[i][1];
        history->entries[i].primary_index = (uint32_t)entries[i][2];
    }
}

/* A backup with an empty log keeps nothing and cuts nothing. */
static void test_replica_fork_point__empty_backup(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    struct tdm_epoch_history backup;
    history_make(&primary, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}});
    history_make(&backup, 1, (const uint64_t[][3]){{1, 1, 0}});
    assert_int_equal(tdm_replica_fork_point(&primary, 50, &backup, 0, 0), 0);
}

/* A backup behind the primary in the same epoch keeps all it has. */
static void test_replica_fork_point__behind_same_epoch(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    history_make(&primary, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}});
    assert_int_equal(tdm_replica_fork_point(&primary, 50, &primary, 30, 2), 30);
}

/* The primary crashed after shipping LSNs 91..100 of epoch 2 but before making
 * them durable, restarted at 90 and opened epoch 3 at 91: the backup, still in
 * epoch 2 with 100, cuts after 90. */
static void test_replica_fork_point__primary_lost_tail(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    struct tdm_epoch_history backup;
    history_make(&primary, 3, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}, {3, 91, 0}});
    history_make(&backup, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}});
    assert_int_equal(tdm_replica_fork_point(&primary, 120, &backup, 100, 2), 90);
    /* Behind the primary's epoch end: nothing to cut. */
    assert_int_equal(tdm_replica_fork_point(&primary, 120, &backup, 80, 2), 80);
}

/* The backup persisted the primary's newer history, then crashed before its
 * cut: the history names epoch 3 at 91, but its last batch is still epoch 2's
 * LSN 100. The epoch of the data, not of the history, decides: cut after 90. */
static void test_replica_fork_point__history_ahead_of_cut(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    history_make(&primary, 3, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}, {3, 91, 0}});
    assert_int_equal(tdm_replica_fork_point(&primary, 120, &primary, 100, 2), 90);
    assert_int_equal(tdm_replica_fork_point(&primary, 120, &primary, 100, 3), 100);
}

/* An epoch the primary never knew (a deposed primary's, issue 4): the walk goes
 * down to the last shared epoch and cuts at its end. */
static void test_replica_fork_point__unknown_epoch(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    struct tdm_epoch_history backup;
    history_make(&primary, 3, (const uint64_t[][3]){{1, 1, 0}, {2, 41, 1}, {4, 61, 2}});
    history_make(&backup, 3, (const uint64_t[][3]){{1, 1, 0}, {2, 41, 1}, {3, 51, 0}});
    /* Epoch 3 (node 0) is unknown to the primary: keep epoch 2's 41..50 at most. */
    assert_int_equal(tdm_replica_fork_point(&primary, 80, &backup, 70, 3), 50);
    /* Same epoch number with another primary is another epoch. */
    history_make(&backup, 3, (const uint64_t[][3]){{1, 1, 0}, {2, 41, 1}, {4, 51, 0}});
    assert_int_equal(tdm_replica_fork_point(&primary, 80, &backup, 70, 4), 50);
}

/* Simulator seed 5390: node 2 offered epoch 140 to node 0 at LSN 1078 in a
 * switchover it then abandoned (its history keeps (140, 1078, 0)); node 0
 * later opened epoch 140 at 1081 for node 3's switchover, and the backup
 * holds that one's data. Same epoch and primary, another first LSN: another
 * epoch, so the walk goes down to epoch 134, which both hold, and cuts at
 * its end (1067), not at the end of the primary's empty epoch 140 (1077,
 * inside a batch of the backup's epoch 139). */
static void test_replica_fork_point__same_epoch_other_first_lsn(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    struct tdm_epoch_history backup;
    history_make(
        &primary, 4,
        (const uint64_t[][3]){{134, 1061, 2}, {138, 1068, 2}, {140, 1078, 0}, {142, 1078, 2}});
    history_make(
        &backup, 4,
        (const uint64_t[][3]){{134, 1061, 2}, {139, 1068, 3}, {140, 1081, 0}, {141, 1090, 1}});
    assert_int_equal(tdm_replica_fork_point(&primary, 1077, &backup, 1089, 141), 1067);
}

/* No shared epoch at all: the whole log is suspect. */
static void test_replica_fork_point__nothing_shared(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    struct tdm_epoch_history backup;
    history_make(&primary, 1, (const uint64_t[][3]){{1, 1, 0}});
    history_make(&backup, 1, (const uint64_t[][3]){{1, 1, 1}});
    assert_int_equal(tdm_replica_fork_point(&primary, 80, &backup, 70, 1), 0);
}

/* Empty epochs (several restarts without a write) share a first LSN. */
static void test_replica_fork_point__empty_epochs(void **state)
{
    (void)state;
    struct tdm_epoch_history primary;
    struct tdm_epoch_history backup;
    history_make(&primary, 4, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}, {3, 11, 0}, {4, 11, 0}});
    history_make(&backup, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}});
    assert_int_equal(tdm_replica_fork_point(&primary, 30, &backup, 15, 2), 10);
    assert_int_equal(tdm_replica_history_epoch_at(&primary, 10), 2);
    assert_int_equal(tdm_replica_history_epoch_at(&primary, 11), 4);
    assert_int_equal(tdm_replica_history_epoch_at(&primary, 0), 0);
    assert_int_equal(tdm_replica_history_epoch_end(&primary, 2, 30), 10);
    assert_int_equal(tdm_replica_history_epoch_end(&primary, 3, 30), 30);
}

/* A fork point never exceeds either log. */
static void test_replica_fork_point__bounded_by_both_logs(void **state)
{
    (void)state;
    struct tdm_epoch_history history;
    history_make(&history, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 1, 0}});
    /* An untrusted HELLO claiming more than the primary holds. */
    assert_int_equal(tdm_replica_fork_point(&history, 20, &history, 500, 2), 20);
}

/* Malformed histories from a peer are refused, never asserted on. */
static void test_replica_history_valid__rejects_malformed(void **state)
{
    (void)state;
    struct tdm_epoch_history history;
    history_make(&history, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 5, 1}});
    assert_true(tdm_replica_history_valid(&history, 3));
    assert_false(tdm_replica_history_valid(&history, 1)); /* Primary index out of range. */
    history_make(&history, 2, (const uint64_t[][3]){{2, 1, 0}, {2, 5, 0}});
    assert_false(tdm_replica_history_valid(&history, 3)); /* Epochs must grow. */
    history_make(&history, 2, (const uint64_t[][3]){{1, 5, 0}, {2, 4, 0}});
    assert_false(tdm_replica_history_valid(&history, 3)); /* First LSNs must not shrink. */
    history_make(&history, 1, (const uint64_t[][3]){{0, 1, 0}});
    assert_false(tdm_replica_history_valid(&history, 3)); /* Epoch 0. */
    history.count = 0;
    assert_false(tdm_replica_history_valid(&history, 3));
    history.count = TDM_REPLICA_EPOCHS_MAX + 1;
    assert_false(tdm_replica_history_valid(&history, 3));
}

/* Equality compares every field of every entry; find locates an epoch. */
static void test_replica_history_equal__and_find(void **state)
{
    (void)state;
    struct tdm_epoch_history a;
    struct tdm_epoch_history b;
    history_make(&a, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 5, 1}});
    history_make(&b, 2, (const uint64_t[][3]){{1, 1, 0}, {2, 5, 1}});
    assert_true(tdm_replica_history_equal(&a, &b));
    b.entries[1].primary_index = 0;
    assert_false(tdm_replica_history_equal(&a, &b));
    b.count = 1;
    assert_false(tdm_replica_history_equal(&a, &b));
    assert_int_equal(tdm_replica_history_find(&a, 2), 1);
    assert_int_equal(tdm_replica_history_find(&a, 3), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replica_fork_point__empty_backup),
        cmocka_unit_test(test_replica_fork_point__behind_same_epoch),
        cmocka_unit_test(test_replica_fork_point__primary_lost_tail),
        cmocka_unit_test(test_replica_fork_point__history_ahead_of_cut),
        cmocka_unit_test(test_replica_fork_point__unknown_epoch),
        cmocka_unit_test(test_replica_fork_point__nothing_shared),
        cmocka_unit_test(test_replica_fork_point__empty_epochs),
        cmocka_unit_test(test_replica_fork_point__bounded_by_both_logs),
        cmocka_unit_test(test_replica_fork_point__same_epoch_other_first_lsn),
        cmocka_unit_test(test_replica_history_valid__rejects_malformed),
        cmocka_unit_test(test_replica_history_equal__and_find),
    };
    return cmocka_run_group_tests_name("replica_fork", tests, NULL, NULL);
}
