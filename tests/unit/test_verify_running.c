/* tests/unit/test_verify_running.c: verify of a node a writer holds open
 * (engine/node.h tdm_node_verify_running(), tdm_node_reindex_running()) and the
 * VERIFY answer's lines (tools/verify_doc.c; docs/PROTOCOL.md §7.7): intact,
 * a flipped byte in a sealed segment, --deep equal, a second verify refused
 * while one runs, bad flags and handles, an in-place rebuild that queries
 * survive, the report's round trip through JSON and a report that does not
 * parse. */
#include "tdm_test.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/node.h"
#include "net/proto.h"
#include "records.h"
#include "tools/gen.h"
#include "tools/verify_doc.h"

#define BATCHES           40
#define RECORDS_PER_BATCH 50

struct fixture {
    char dir[256];
    struct tandem *t;
    uint64_t lsn_last;
    char message_id[512]; /* Of the first record. */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    options.segment_size = 64 << 10; /* Several sealed segments. */
    struct tandem_diag diag;
    assert_int_equal(tandem_open(f->dir, &options, &f->t, &diag), 0);
    struct tdm_gen gen;
    tdm_gen_init(&gen, 11, 10);
    struct tdm_kept *kept = calloc(RECORDS_PER_BATCH, sizeof(*kept));
    struct tandem_record records[RECORDS_PER_BATCH];
    for (int b = 0; b < BATCHES; b++) {
        tdm_kept_generate(&gen, RECORDS_PER_BATCH, kept, records);
        if (b == 0) {
            snprintf(f->message_id, sizeof(f->message_id), "%.*s",
                     (int)records[0].message.message_id.size, records[0].message.message_id.data);
        }
        uint64_t lsn_first = 0;
        assert_int_equal(tandem_append(f->t, records, RECORDS_PER_BATCH, &lsn_first, &diag), 0);
        f->lsn_last = lsn_first + RECORDS_PER_BATCH - 1;
    }
    free(kept);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->t != NULL) {
        tandem_close(f->t);
    }
    tdm_test_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* What progress calls a verify made; optionally a nested verify from the first. */
struct progress {
    int log_calls;
    int index_calls;
    uint64_t first_done;
    uint64_t first_total;
    struct tandem *nested;  /* Not NULL: verify it again from the first call. */
    struct tandem *stop;    /* Not NULL: tdm_node_verify_stop() it from the first call... */
    const char *stop_phase; /* ... of this phase. */
    int nested_rv;
    char nested_message[TANDEM_DIAG_SIZE];
};

static void progress_cb(void *data, const char *phase, uint64_t bytes_done, uint64_t bytes_total,
                        uint64_t segment_lsn)
{
    struct progress *p = data;
    (void)segment_lsn;
    if (p->stop != NULL && strcmp(phase, p->stop_phase) == 0) {
        tdm_node_verify_stop(p->stop);
        p->stop = NULL;
    }
    if (strcmp(phase, "index") == 0) {
        p->index_calls++;
        return;
    }
    assert_string_equal(phase, "log");
    if (p->log_calls++ == 0) {
        p->first_done = bytes_done;
        p->first_total = bytes_total;
        if (p->nested != NULL) {
            struct tandem_verify_report *report = calloc(1, sizeof(*report));
            struct tdm_diag diag = {{0}};
            p->nested_rv = tdm_node_verify_running(p->nested, 0, NULL, NULL, report, &diag);
            snprintf(p->nested_message, sizeof(p->nested_message), "%s", diag.message);
            free(report);
        }
    }
}

static int count_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)lsn;
    (void)record;
    (*(uint32_t *)data)++;
    return 0;
}

/* Every segment re-read, the chain hash the log's, no damage; progress at the
 * start with the bytes to read. */
static void test_verify_running__intact(void **state)
{
    struct fixture *f = *state;
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    struct progress p = {0};
    assert_int_equal(tdm_node_verify_running(f->t, 0, progress_cb, &p, &report, &diag), 0);
    assert_int_equal(report.damaged_count, 0);
    assert_true(report.segment_count >= 3);
    assert_int_equal(report.sealed_count, report.segment_count - 1);
    assert_int_equal(report.lsn_first, 1);
    assert_int_equal(report.lsn_last, f->lsn_last);
    assert_true(report.read_bytes >= report.segment_bytes);
    assert_false(report.index_checked);
    struct tandem_status status;
    assert_int_equal(tandem_status(f->t, &status), 0);
    assert_memory_equal(report.chain_hash, status.chain_hash, sizeof(report.chain_hash));
    assert_true(p.log_calls >= 1);
    assert_int_equal(p.first_done, 0);
    assert_int_equal(p.first_total, status.log_bytes);
    assert_int_equal(p.index_calls, 0);
    /* Without a progress callback too. */
    assert_int_equal(tdm_node_verify_running(f->t, 0, NULL, NULL, &report, &diag), 0);
    assert_int_equal(report.lsn_last, f->lsn_last);
}

/* DEEP: the live index equals a rebuild; the scratch environment is gone. */
static void test_verify_running__deep_equal(void **state)
{
    struct fixture *f = *state;
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    struct progress p = {0};
    assert_int_equal(
        tdm_node_verify_running(f->t, TANDEM_VERIFY_DEEP, progress_cb, &p, &report, &diag), 0);
    assert_true(report.index_checked);
    assert_true(report.index_equal);
    assert_false(report.index_rebuilt);
    assert_int_equal(report.index_lsn, f->lsn_last);
    assert_string_equal(report.index_difference, "");
    assert_int_equal(p.index_calls, 1);
    char path[512];
    snprintf(path, sizeof(path), "%s/index.verify-live", f->dir);
    assert_int_equal(access(path, F_OK), -1);
}

/* A byte flipped in the first (sealed) segment: one damaged range, sealed;
 * DEEP skips the index; nothing is modified. */
static void test_verify_running__damage(void **state)
{
    struct fixture *f = *state;
    char path[512];
    snprintf(path, sizeof(path), "%s/log/00000000000000000001.seg", f->dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, 20000), 1);
    byte ^= 1;
    assert_int_equal(pwrite(fd, &byte, 1, 20000), 1);
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_node_verify_running(f->t, TANDEM_VERIFY_DEEP, NULL, NULL, &report, &diag),
                     0);
    assert_int_equal(report.damaged_count, 1);
    assert_true(report.damaged[0].sealed);
    assert_int_equal(report.damaged[0].segment_lsn, 1);
    assert_true(report.damaged[0].lsn_first >= 1);
    assert_true(report.damaged[0].lsn_first <= report.damaged[0].lsn_last);
    assert_false(report.index_checked);
    uint8_t again;
    assert_int_equal(pread(fd, &again, 1, 20000), 1);
    assert_int_equal(again, byte); /* Not "repaired" by a verify. */
    byte ^= 1;
    assert_int_equal(pwrite(fd, &byte, 1, 20000), 1);
    close(fd);
    assert_int_equal(tdm_node_verify_running(f->t, 0, NULL, NULL, &report, &diag), 0);
    assert_int_equal(report.damaged_count, 0);
}

/* One verify at a time per node: a second, started while the first runs (from
 * its progress call), is refused; the first completes. */
static void test_verify_running__busy(void **state)
{
    struct fixture *f = *state;
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    struct progress p = {.nested = f->t};
    assert_int_equal(tdm_node_verify_running(f->t, 0, progress_cb, &p, &report, &diag), 0);
    assert_int_equal(p.nested_rv, TANDEM_EBUSY);
    assert_non_null(strstr(p.nested_message, "another verify of this node is under way"));
    assert_int_equal(report.damaged_count, 0);
    /* And it is free again afterwards. */
    assert_int_equal(tdm_node_verify_running(f->t, 0, NULL, NULL, &report, &diag), 0);
}

/* tdm_node_verify_stop() (a tandemd's SIGTERM) while the log is re-read, or
 * while the index is rebuilt beside the live one: the verify ends with
 * TANDEM_ECANCELED and says why, the scratch index is gone, and every later
 * verify is refused at once. The node itself goes on. */
static void verify_stop_in(struct fixture *f, const char *phase, const char *cause)
{
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    struct progress p = {.stop = f->t, .stop_phase = phase};
    assert_int_equal(
        tdm_node_verify_running(f->t, TANDEM_VERIFY_DEEP, progress_cb, &p, &report, &diag),
        TANDEM_ECANCELED);
    assert_null(p.stop);
    assert_non_null(strstr(diag.message, "verify stopped: the node is shutting down"));
    assert_non_null(strstr(diag.message, cause));
    char path[512];
    snprintf(path, sizeof(path), "%s/index.verify-live", f->dir);
    assert_int_equal(access(path, F_OK), -1);
    diag.message[0] = '\0';
    assert_int_equal(tdm_node_verify_running(f->t, 0, NULL, NULL, &report, &diag),
                     TANDEM_ECANCELED);
    assert_non_null(strstr(diag.message, "verify stopped: the node is shutting down"));
    struct tandem_status status;
    assert_int_equal(tandem_status(f->t, &status), 0);
    assert_int_equal(status.lsn_last, f->lsn_last);
}

static void test_verify_running__stop_in_log(void **state)
{
    verify_stop_in(*state, "log", "cancel");
}

static void test_verify_running__stop_in_index(void **state)
{
    verify_stop_in(*state, "index", "index fill stopped before lsn 1");
}

/* Unknown flags and a read-only handle are refused, naming the cause. */
static void test_verify_running__refused(void **state)
{
    struct fixture *f = *state;
    struct tandem_verify_report report;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_node_verify_running(f->t, 0x8, NULL, NULL, &report, &diag),
                     TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "unknown flags 0x8"));
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_READONLY;
    struct tandem *reader = NULL;
    assert_int_equal(tandem_open(f->dir, &options, &reader, NULL), 0);
    diag.message[0] = '\0';
    assert_int_equal(tdm_node_verify_running(reader, 0, NULL, NULL, &report, &diag),
                     TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "not open for writing"));
    diag.message[0] = '\0';
    assert_int_equal(tdm_node_reindex_running(reader, &diag), TANDEM_EREADONLY);
    tandem_close(reader);
}

/* The in-place rebuild: queries answer the same after it, the index holds
 * every LSN, appends go on, and a DEEP verify finds it equal. */
static void test_reindex_running__queries_survive(void **state)
{
    struct fixture *f = *state;
    uint32_t before = 0;
    assert_int_equal(
        tandem_get(f->t, f->message_id, strlen(f->message_id), count_cb, &before, NULL), 0);
    assert_true(before >= 1);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_node_reindex_running(f->t, &diag), 0);
    uint32_t after = 0;
    assert_int_equal(tandem_get(f->t, f->message_id, strlen(f->message_id), count_cb, &after, NULL),
                     0);
    assert_int_equal(after, before);
    struct tandem_status status;
    assert_int_equal(tandem_status(f->t, &status), 0);
    assert_int_equal(status.index_lsn, f->lsn_last);
    struct tandem_verify_report report;
    assert_int_equal(tdm_node_verify_running(f->t, TANDEM_VERIFY_DEEP, NULL, NULL, &report, &diag),
                     0);
    assert_true(report.index_equal);
}

/* The answer's lines: progress objects, then a report that reads back into
 * the same struct. */
struct lines {
    json_t *docs;
};

static int line_cb(void *line_data, const char *text, size_t size)
{
    struct lines *l = line_data;
    json_error_t error;
    json_t *doc = json_loadb(text, size, 0, &error);
    assert_non_null(doc);
    assert_int_equal(json_array_append_new(l->docs, doc), 0);
    return 0;
}

static void test_verify_doc__round_trip(void **state)
{
    struct fixture *f = *state;
    struct lines l = {.docs = json_array()};
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_verify_serve(f->t, TDM_PROTO_VERIFY_DEEP, line_cb, &l, &diag), 0);
    size_t n = json_array_size(l.docs);
    assert_true(n >= 3); /* log progress, index progress, report. */
    assert_non_null(json_object_get(json_array_get(l.docs, 0), "progress"));
    const json_t *report_doc = json_object_get(json_array_get(l.docs, n - 1), "report");
    assert_non_null(report_doc);
    struct tandem_verify_report report;
    double seconds = -1;
    assert_int_equal(tdm_verify_doc_report(report_doc, &report, &seconds, &diag), 0);
    assert_true(seconds >= 0);
    assert_int_equal(report.lsn_last, f->lsn_last);
    assert_true(report.index_equal);
    struct tandem_status status;
    assert_int_equal(tandem_status(f->t, &status), 0);
    assert_memory_equal(report.chain_hash, status.chain_hash, sizeof(report.chain_hash));
    /* A field missing, out of range, or a bad chain hash: refused. */
    static const char *const bad[] = {"segment_count", "chain_hash", "damaged"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *broken = json_deep_copy(report_doc);
        json_object_del(broken, bad[i]);
        diag.message[0] = '\0';
        assert_int_equal(tdm_verify_doc_report(broken, &report, &seconds, &diag), TANDEM_ECORRUPT);
        assert_non_null(strstr(diag.message, "verify report that does not parse"));
        json_decref(broken);
    }
    json_t *broken = json_deep_copy(report_doc);
    json_object_set_new(broken, "chain_hash", json_string("zz"));
    assert_int_equal(tdm_verify_doc_report(broken, &report, &seconds, &diag), TANDEM_ECORRUPT);
    json_object_set_new(broken, "chain_hash", json_string("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"));
    assert_int_equal(tdm_verify_doc_report(broken, &report, &seconds, &diag), TANDEM_ECORRUPT);
    json_decref(broken);
    broken = json_deep_copy(report_doc);
    json_object_set_new(broken, "lsn_last", json_integer(-1));
    assert_int_equal(tdm_verify_doc_report(broken, &report, &seconds, &diag), TANDEM_ECORRUPT);
    json_decref(broken);
    json_decref(l.docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_running__intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_running__deep_equal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_running__damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_running__busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_running__refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_running__stop_in_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_running__stop_in_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reindex_running__queries_survive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_doc__round_trip, setup, teardown),
    };
    return cmocka_run_group_tests_name("verify_running", tests, NULL, NULL);
}
