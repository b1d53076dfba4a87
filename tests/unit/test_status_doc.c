/* tests/unit/test_status_doc.c: the verification part of the status document
 * (tools/status_doc.c; docs/OPERATIONS.md "Verification"): a replicated node is
 * degraded while a copy it compares has been unverified longer than the bound
 * (counted from its start at the earliest), while a mismatch is known, or
 * while the scrubber found damage, and healthy otherwise; the JSON carries
 * verified_lsn, verified_at (RFC 3339), verified_age_seconds, mismatches and
 * scrub, and reads back into the same view.
 *
 * Method: views built by hand (what tandemd's snapshot would hold), judged,
 * written as JSON, checked with Jansson, parsed back. */
#include "tdm_test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tools/status_doc.h"

#define NS       1000000000LL
#define T0       (1764302222LL * NS) /* 2025-11-28T03:57:02Z */
#define BOUND_S  60u
#define LAST_LSN 500u

static struct tdm_status_view view;

/* A primary n1 with a backup n2, both live, n2 verified through LAST_LSN at
 * T0 - age_s, the node started long before. */
static void view_make(int64_t age_s)
{
    memset(&view, 0, sizeof(view));
    view.dir = "/srv/n1";
    view.conf_found = true;
    snprintf(view.conf.cluster, sizeof(view.conf.cluster), "c1");
    snprintf(view.conf.id, sizeof(view.conf.id), "n1");
    view.opened = true;
    view.status.lsn_last = LAST_LSN;
    view.status.log_bytes = 123456;
    view.replicated = true;
    struct tdm_uv_cluster_view *c = &view.cluster;
    snprintf(c->role, sizeof(c->role), "primary");
    snprintf(c->primary, sizeof(c->primary), "n1");
    c->epoch = 2;
    c->min_copies = 2;
    c->node_count = 2;
    c->now_ns = T0;
    c->started_ns = T0 - 3600 * NS;
    c->unverified_bound_s = BOUND_S;
    c->scrub.enabled = true;
    c->scrub.passes = 3;
    c->scrub.last_full_pass_ns = T0 - 10 * NS;
    for (uint32_t i = 0; i < 2; i++) {
        struct tdm_uv_node_view *n = &c->nodes[i];
        snprintf(n->id, sizeof(n->id), "n%u", i + 1);
        n->self = i == 0;
        snprintf(n->role, sizeof(n->role), i == 0 ? "primary" : "backup");
        snprintf(n->link, sizeof(n->link), i == 0 ? "up" : "live");
        n->link_up = true;
        n->epoch = 2;
        n->last_lsn = LAST_LSN;
        n->durable_lsn = LAST_LSN;
        n->verify_known = true;
        n->verified_lsn = LAST_LSN;
        n->verified_at_ns = T0 - age_s * NS;
    }
}

/* Copies verified a moment ago: healthy. Past the bound: degraded, naming the
 * node; the same age counted from a start within the bound: healthy. */
static void test_status__unverified_bound(void **state)
{
    (void)state;
    char reason[256];
    view_make(2);
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_HEALTHY);
    assert_null(tdm_status_verify_problem(&view, reason, sizeof(reason)));
    view_make(BOUND_S + 1);
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_DEGRADED);
    assert_non_null(tdm_status_verify_problem(&view, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "unverified for 61 s (bound 60 s)"));
    view.cluster.started_ns = T0 - 5 * NS; /* Restarted 5 s ago. */
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_HEALTHY);
    view_make(0);
    view.cluster.nodes[1].verified_at_ns = 0;          /* Never verified... */
    view.cluster.started_ns = T0 - (BOUND_S + 5) * NS; /* ...since the start, 65 s ago. */
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_DEGRADED);
    view.cluster.nodes[1].verify_known = false; /* A copy this node does not compare. */
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_HEALTHY);
}

/* The reason a degraded cluster gives names the cause first: a backup whose
 * link is down is named even after its copy has gone unverified past the
 * bound (the consequence); damage outranks both; then a lagging node. */
static void test_status__degraded_reason_names_the_cause(void **state)
{
    (void)state;
    char reason[256];
    view_make(BOUND_S + 30);
    snprintf(view.cluster.nodes[1].link, sizeof(view.cluster.nodes[1].link), "down");
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_DEGRADED);
    assert_string_equal(tdm_status_degraded_reason(&view, reason, sizeof(reason)),
                        "node n2: link down");
    view.cluster.scrub.damaged_count = 2;
    assert_string_equal(tdm_status_degraded_reason(&view, reason, sizeof(reason)),
                        "scrub found 2 damaged ranges in sealed segments");
    view_make(1);
    view.cluster.nodes[1].lag_ms = TDM_STATUS_LAG_MS_DEGRADED + 1500;
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_DEGRADED);
    assert_non_null(strstr(tdm_status_degraded_reason(&view, reason, sizeof(reason)), "node n2: "));
    assert_non_null(strstr(reason, "s behind the primary"));
    view_make(BOUND_S + 1);
    assert_string_equal(tdm_status_degraded_reason(&view, reason, sizeof(reason)),
                        "node n1: unverified for 61 s (bound 60 s)");
    snprintf(view.cluster.nodes[1].role, sizeof(view.cluster.nodes[1].role), "failed");
    assert_string_equal(tdm_status_degraded_reason(&view, reason, sizeof(reason)),
                        "node n2: failed (writes stopped there)");
    view_make(1);
    assert_string_equal(tdm_status_degraded_reason(&view, reason, sizeof(reason)),
                        "see the nodes below");
    /* Damaged ranges of the log itself: what to do depends on the node. */
    view.status.damaged_count = 2;
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_DEGRADED);
    assert_non_null(strstr(tdm_status_health_reason(&view, reason, sizeof(reason)),
                           "2 damaged ranges in the log; tandemd repairs"));
    view.replicated = false;
    assert_non_null(strstr(tdm_status_health_reason(&view, reason, sizeof(reason)),
                           "restore the segment file from a backup copy"));
}

/* A known mismatch, or damage found by the scrubber: degraded. */
static void test_status__mismatch_and_scrub_damage(void **state)
{
    (void)state;
    char reason[256];
    view_make(1);
    view.cluster.nodes[1].divergent_first = 201;
    view.cluster.nodes[1].divergent_last = 204;
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_DEGRADED);
    assert_non_null(tdm_status_verify_problem(&view, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "first divergent batch lsn 201..204"));
    view_make(1);
    view.cluster.scrub.damaged_count = 1;
    tdm_status_judge(&view);
    assert_int_equal(view.health, TDM_STATUS_DEGRADED);
    assert_non_null(strstr(tdm_status_verify_problem(&view, reason, sizeof(reason)), "scrub"));
}

/* The document: the contract's fields, the verification ones, back again. */
static void test_status__json_fields(void **state)
{
    (void)state;
    view_make(2);
    view.cluster.nodes[1].mismatches_found = 1;
    view.cluster.nodes[1].divergent_first = 201;
    view.cluster.nodes[1].divergent_last = 204;
    view.cluster.scrub.damaged_count = 1;
    view.cluster.scrub.damaged[0] =
        (struct tandem_damage){.segment_lsn = 1, .offset = 4096, .lsn_first = 7, .lsn_last = 9};
    tdm_status_judge(&view);
    char *text = NULL;
    assert_int_equal(tdm_status_json(&view, &text), 0);
    json_error_t error;
    json_t *root = json_loads(text, 0, &error);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "health")), "degraded");
    assert_string_equal(json_string_value(json_object_get(root, "health_reason")),
                        "scrub found 1 damaged range in sealed segments");
    assert_int_equal(json_integer_value(json_object_get(root, "unverified_bound_s")), BOUND_S);
    json_t *n2 = json_array_get(json_object_get(root, "nodes"), 1);
    assert_int_equal(json_integer_value(json_object_get(n2, "verified_lsn")), LAST_LSN);
    assert_string_equal(json_string_value(json_object_get(n2, "verified_at")),
                        "2025-11-28T03:57:00Z");
    assert_true(json_real_value(json_object_get(n2, "verified_age_seconds")) == 2.0);
    json_t *mismatches = json_object_get(n2, "mismatches");
    assert_int_equal(json_integer_value(json_object_get(mismatches, "found")), 1);
    json_t *divergent = json_object_get(mismatches, "first_divergent");
    assert_int_equal(json_integer_value(json_object_get(divergent, "lsn_first")), 201);
    assert_int_equal(json_integer_value(json_object_get(divergent, "lsn_last")), 204);
    json_t *n1 = json_array_get(json_object_get(root, "nodes"), 0);
    json_t *scrub = json_object_get(n1, "scrub");
    assert_true(json_is_true(json_object_get(scrub, "enabled")));
    assert_int_equal(json_integer_value(json_object_get(scrub, "bytes_total")), 123456);
    assert_int_equal(json_integer_value(json_object_get(scrub, "damaged")), 1);
    assert_string_equal(json_string_value(json_object_get(scrub, "last_full_pass")),
                        "2025-11-28T03:56:52Z");
    json_decref(root);
    /* Read back, as the CLI does when tandemd answered. */
    static struct tdm_status_view back;
    static char dir[TDM_CMD_PATH_SIZE];
    assert_int_equal(tdm_status_parse(text, strlen(text), &back, dir), 0);
    free(text);
    assert_int_equal(back.health, TDM_STATUS_DEGRADED);
    assert_int_equal(back.cluster.now_ns, T0);
    assert_int_equal(back.cluster.unverified_bound_s, BOUND_S);
    assert_int_equal(back.cluster.nodes[1].verified_lsn, LAST_LSN);
    assert_int_equal(back.cluster.nodes[1].verified_at_ns, T0 - 2 * NS);
    assert_true(back.cluster.nodes[1].verify_known);
    assert_int_equal(back.cluster.nodes[1].divergent_first, 201);
    assert_int_equal(back.cluster.scrub.damaged_count, 1);
    assert_int_equal(back.cluster.scrub.damaged[0].lsn_last, 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status__unverified_bound),
        cmocka_unit_test(test_status__degraded_reason_names_the_cause),
        cmocka_unit_test(test_status__mismatch_and_scrub_damage),
        cmocka_unit_test(test_status__json_fields),
    };
    return cmocka_run_group_tests_name("status_doc", tests, NULL, NULL);
}
