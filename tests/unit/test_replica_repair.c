/* tests/unit/test_replica_repair.c: which copy a damaged range is fetched from
 * and which answers fit (net/replica_repair.c; docs/PROTOCOL.md §9.4).
 *
 * Method: replica statuses built by hand (roles, links, verified claims), the
 * choice asked for a range's last LSN with sets of nodes already tried. A
 * backup takes only its primary, and only when its own copy is verified
 * through the range; a primary takes a LIVE backup verified that far; a node
 * that failed once is not asked again; when none could ever qualify the range
 * is lost, while one that may qualify later (down, not verified yet) makes it
 * wait. Built with -Dplanted_bug=repair_takes_first_copy, an unverified copy
 * is taken and test_replica_repair__verified_only fails (planted.replica_repair). */
#include "tdm_test.h"

#include <string.h>

#include "net/replica_repair.h"

static struct tdm_replica_status status;

/* n nodes, self and primary as given, every link LIVE, every copy verified
 * through verified (known on the primary; on a backup, its own). */
static void cluster(uint32_t n, uint32_t self, uint32_t primary, uint64_t verified)
{
    memset(&status, 0, sizeof(status));
    status.node_count = n;
    status.self_index = self;
    status.primary_index = primary;
    status.role = self == primary ? TDM_ROLE_PRIMARY : TDM_ROLE_BACKUP;
    for (uint32_t i = 0; i < n; i++) {
        status.nodes[i].link_up = true;
        status.nodes[i].link = TDM_LINK_LIVE;
        status.nodes[i].verify_known = self == primary || i == self || i == primary;
        status.nodes[i].verified_lsn = verified;
    }
}

static void test_replica_repair__verified_only(void **state)
{
    (void)state;
    uint32_t index = 99;
    /* Backup 1 of primary 0, verified through 500. */
    cluster(2, 1, 0, 500);
    assert_int_equal(tdm_repair_choose(&status, 500, 0, &index), TDM_REPAIR_SOURCE);
    assert_int_equal(index, 0);
    assert_int_equal(tdm_repair_choose(&status, 501, 0, &index), TDM_REPAIR_WAIT);
    status.nodes[0].link = TDM_LINK_STARTED;
    assert_int_equal(tdm_repair_choose(&status, 400, 0, &index), TDM_REPAIR_WAIT);
    assert_int_equal(tdm_repair_choose(&status, 400, 1u << 0, &index), TDM_REPAIR_LOST);
    /* Primary 0 of backups 1 and 2: 1 verified through 300 only, 2 through 500. */
    cluster(3, 0, 0, 500);
    status.nodes[1].verified_lsn = 300;
    index = 99;
    assert_int_equal(tdm_repair_choose(&status, 400, 0, &index), TDM_REPAIR_SOURCE);
    assert_int_equal(index, 2);
    assert_int_equal(tdm_repair_choose(&status, 400, 1u << 2, &index), TDM_REPAIR_WAIT);
    status.role = TDM_ROLE_HOLDING; /* A primary in a switchover judges the same. */
    assert_int_equal(tdm_repair_choose(&status, 200, 1u << 2, &index), TDM_REPAIR_SOURCE);
    assert_int_equal(index, 1);
    status.nodes[1].verify_known = false;
    assert_int_equal(tdm_repair_choose(&status, 200, 1u << 2, &index), TDM_REPAIR_WAIT);
}

static void test_replica_repair__lost_and_waiting(void **state)
{
    (void)state;
    uint32_t index = 99;
    cluster(3, 0, 0, 500);
    status.nodes[1].link_up = false;
    status.nodes[1].link = TDM_LINK_DOWN;
    assert_int_equal(tdm_repair_choose(&status, 500, 1u << 2, &index), TDM_REPAIR_WAIT);
    assert_int_equal(tdm_repair_choose(&status, 500, (1u << 1) | (1u << 2), &index),
                     TDM_REPAIR_LOST);
    cluster(1, 0, 0, 0); /* A cluster of one: no other copy at all. */
    assert_int_equal(tdm_repair_choose(&status, 1, 0, &index), TDM_REPAIR_LOST);
    cluster(2, 1, 0, 500);
    status.role = TDM_ROLE_RECOVERING;
    assert_int_equal(tdm_repair_choose(&status, 1, 0, &index), TDM_REPAIR_WAIT);
    status.role = TDM_ROLE_FAILED;
    assert_int_equal(tdm_repair_choose(&status, 1, 0, &index), TDM_REPAIR_WAIT);
    assert_int_equal(index, 99);
}

static void test_replica_repair__reply_matches(void **state)
{
    (void)state;
    struct tdm_repair_request request = {
        .fetch_id = 7, .node_index = 1, .lsn_first = 100, .lsn_last = 200};
    struct tdm_repair_reply reply = {
        .fetch_id = 7, .node_index = 1, .status = 0, .lsn_first = 100, .lsn_last = 150};
    assert_true(tdm_repair_reply_matches(&request, &reply)); /* A prefix: more to fetch. */
    reply.lsn_last = 200;
    assert_true(tdm_repair_reply_matches(&request, &reply));
    reply.lsn_last = 201;
    assert_false(tdm_repair_reply_matches(&request, &reply));
    reply.lsn_last = 200;
    reply.fetch_id = 6; /* Late: an earlier FETCH's. */
    assert_false(tdm_repair_reply_matches(&request, &reply));
    reply.fetch_id = 7;
    reply.node_index = 2; /* Not the node asked. */
    assert_false(tdm_repair_reply_matches(&request, &reply));
    reply.node_index = 1;
    reply.lsn_first = 101;
    assert_false(tdm_repair_reply_matches(&request, &reply));
    reply.lsn_first = 100;
    reply.status = -20005; /* An error echoes the whole range. */
    assert_true(tdm_repair_reply_matches(&request, &reply));
    reply.lsn_last = 150;
    assert_false(tdm_repair_reply_matches(&request, &reply));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replica_repair__verified_only),
        cmocka_unit_test(test_replica_repair__lost_and_waiting),
        cmocka_unit_test(test_replica_repair__reply_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
