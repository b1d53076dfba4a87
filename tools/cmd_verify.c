/* tools/cmd_verify.c: "tandem verify --node ADDR [--cert DIR] [--deep]":
 * prove a node intact now (docs/OPERATIONS.md "Verifying a node").
 *
 * 1. Resolve --node: a node directory, or HOST:PORT (TLS, --cert DIR).
 * 2. A directory with no tandemd running: tandem_verify(DIR, DEEP?) takes the
 *    directory's lock, re-reads every segment from the medium and recomputes
 *    every checksum, the chain hash and every footer; with --deep it also
 *    proves the index equal to a rebuild from the log, rebuilding it if not.
 *    A running node (the directory's tandemd, or HOST:PORT): send VERIFY
 *    (docs/PROTOCOL.md §7.7); tandemd runs the same pass beside its writer and
 *    answers progress lines (printed on stderr as they come) and the report.
 * 3. Print the report on stdout (one "key value" line each, then one line
 *    per damaged range in tandem status's words) and one summary line on
 *    stderr, always; the same words either way.
 *
 * Exit status: 0 all intact (and, with --deep, the index equal to a rebuild);
 * 1 damage found, or the index differed (it was rebuilt: run verify again to
 * see it equal); 2 bad usage or an error that stopped the check (not a node
 * directory, an unreachable node, another verify under way, I/O error). */
#include "cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "net/client.h"
#include "net/proto.h"
#include "verify_doc.h"

static double verify_seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void verify_print_index(const struct tandem_verify_report *report, bool deep)
{
    if (!deep) {
        printf("index       not checked (use --deep)\n");
    } else if (!report->index_checked) {
        printf("index       not checked: the log is damaged (repair it first)\n");
    } else if (report->index_equal) {
        printf("index       equal to a rebuild from the log (lsn %llu)\n",
               (unsigned long long)report->lsn_last);
    } else if (report->index_rebuilt) {
        printf("index       differed from a rebuild from the log: %s; rebuilt\n",
               report->index_difference);
    }
}

static void verify_print(const char *dir, const struct tandem_verify_report *report, bool deep)
{
    bool intact = report->damaged_count == 0;
    printf("verify      %s: %s\n", dir, intact ? "log intact" : "log DAMAGED");
    if (report->lsn_last == 0) {
        printf("log         empty, %u segment%s\n", report->segment_count,
               report->segment_count == 1 ? "" : "s");
    } else {
        printf("log         lsn %llu..%llu in %u segment%s (%u sealed)\n",
               (unsigned long long)report->lsn_first, (unsigned long long)report->lsn_last,
               report->segment_count, report->segment_count == 1 ? "" : "s", report->sealed_count);
    }
    printf("checked     %llu bytes of segments, %llu bytes read from the disk\n",
           (unsigned long long)report->segment_bytes, (unsigned long long)report->read_bytes);
    if (report->lsn_last > 0) {
        char hex[2 * sizeof(report->chain_hash) + 1];
        for (size_t i = 0; i < sizeof(report->chain_hash); i++) {
            snprintf(hex + 2 * i, 3, "%02x", report->chain_hash[i]);
        }
        printf("chain hash  %s at lsn %llu\n", hex, (unsigned long long)report->lsn_last);
    }
    tdm_cmd_print_damaged(report->damaged, report->damaged_count);
    verify_print_index(report, deep);
}

/* The report on stdout and the summary line on stderr; the exit status. */
static int verify_finish(const char *name, const struct tandem_verify_report *report, bool deep,
                         double seconds)
{
    verify_print(name, report, deep);
    bool intact = report->damaged_count == 0 && !report->index_rebuilt;
    char found[64] = "intact";
    if (report->damaged_count > 0) {
        snprintf(found, sizeof(found), "DAMAGED: %u range%s", report->damaged_count,
                 report->damaged_count == 1 ? "" : "s");
    }
    fflush(stdout);
    fprintf(stderr, "tandem: verify %s: %u segments, %.1f MB read in %.2f s: %s%s%s\n", name,
            report->segment_count, (double)report->read_bytes / 1e6, seconds, found,
            report->index_rebuilt ? ", index differed and was rebuilt" : "",
            deep && report->index_equal ? ", index equal" : "");
    return intact ? TDM_CMD_EXIT_OK : TDM_CMD_EXIT_FAILED;
}

/* One line of a VERIFY answer: a progress line goes to stderr now; the
 * report is kept. */
struct verify_remote {
    const char *name;
    struct tandem_verify_report *report;
    double seconds;
    bool have_report;
};

static int verify_remote_line(struct verify_remote *v, const char *text, size_t size,
                              struct tdm_diag *diag)
{
    json_error_t error;
    json_t *doc = json_loadb(text, size, 0, &error);
    const json_t *progress = json_object_get(doc, "progress");
    const json_t *report = json_object_get(doc, "report");
    int rv = 0;
    if (json_is_object(progress)) {
        const char *phase = json_string_value(json_object_get(progress, "phase"));
        uint64_t done = tdm_cmd_json_u64(progress, "bytes_done");
        uint64_t total = tdm_cmd_json_u64(progress, "bytes_total");
        uint64_t segment = tdm_cmd_json_u64(progress, "segment_lsn");
        if (phase != NULL && strcmp(phase, "index") == 0) {
            fprintf(stderr, "tandem: verify %s: comparing the index with a rebuild from the log\n",
                    v->name);
        } else if (done == 0) {
            fprintf(stderr, "tandem: verify %s: reading %" PRIu64 " bytes of segments\n", v->name,
                    total);
        } else {
            fprintf(stderr,
                    "tandem: verify %s: %" PRIu64 " of %" PRIu64
                    " bytes of segments read (at log/%020" PRIu64 ".seg)\n",
                    v->name, done, total, segment);
        }
    } else if (json_is_object(report) && !v->have_report) {
        rv = tdm_verify_doc_report(report, v->report, &v->seconds, diag);
        v->have_report = rv == 0;
    } else {
        rv = TDM_CORRUPT(diag, "the node answered a verify line that does not parse: %.*s",
                         (int)(size < 60 ? size : 60), text);
    }
    json_decref(doc);
    return rv;
}

/* Split one VERIFY_RESULT text into its lines. */
static int verify_remote_text(struct verify_remote *v, const uint8_t *text, size_t size,
                              struct tdm_diag *diag)
{
    int rv = 0;
    size_t start = 0;
    for (size_t i = 0; i < size && rv == 0; i++) {
        if (text[i] == '\n') {
            rv = verify_remote_line(v, (const char *)text + start, i - start, diag);
            start = i + 1;
        }
    }
    if (rv == 0 && start < size) {
        rv = verify_remote_line(v, (const char *)text + start, size - start, diag);
    }
    return rv;
}

/* Send VERIFY on client and read the answer until a frame without MORE. */
static int verify_remote(struct tdm_client *client, bool deep, struct verify_remote *v,
                         struct tdm_diag *diag)
{
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (msg == NULL) {
        return -ENOMEM;
    }
    uint64_t request_id = client->request_id_next++;
    msg->type = TDM_PROTO_VERIFY;
    msg->inspect.request_id = request_id;
    msg->inspect.flags = deep ? TDM_PROTO_VERIFY_DEEP : 0;
    int rv = tdm_client_send(client, msg, diag);
    for (bool more = true; more && rv == 0;) {
        rv = tdm_client_receive(client, msg, true, diag);
        const struct tdm_proto_text_result *result = &msg->inspect_result;
        if (rv == 0 && (msg->type != TDM_PROTO_VERIFY_RESULT || result->request_id != request_id)) {
            tdm_diag_printf(diag, "the node answered %s", tdm_proto_type_name(msg->type));
            rv = TANDEM_ECORRUPT;
        } else if (rv == 0 && result->status != 0) {
            tdm_diag_printf(diag, "%.*s", (int)result->text.size, (const char *)result->text.data);
            rv = result->status;
        } else if (rv == 0) {
            rv = verify_remote_text(v, result->text.data, result->text.size, diag);
            more = (result->flags & TDM_PROTO_RESULT_MORE) != 0;
        }
    }
    if (rv == 0 && !v->have_report) {
        rv = TDM_CORRUPT(diag, "the node's answer ended without a report");
    }
    tdm_free(msg);
    return rv;
}

/* A directory without tandemd: verify it in this process. */
static int verify_local(const char *dir, bool deep)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct tandem_verify_report report;
    struct tandem_diag diag = {{0}};
    int rv = tandem_verify(dir, deep ? TANDEM_VERIFY_DEEP : 0, &report, &diag);
    if (rv != 0) {
        char what[TDM_CMD_PATH_SIZE + 16];
        snprintf(what, sizeof(what), "verify %s", dir);
        if (rv == TANDEM_ELOCKED && diag.message[0] == '\0') {
            snprintf(diag.message, sizeof(diag.message),
                     "another process writes to it, and its socket does not answer (tandem "
                     "append? a tandemd starting or stopping?): try again");
        }
        tdm_cmd_fail_code(what, rv, &diag);
        return TDM_CMD_EXIT_USAGE;
    }
    return verify_finish(dir, &report, deep, verify_seconds_since(&start));
}

int tdm_cmd_verify(int argc, char **argv)
{
    bool deep = false;
    struct tdm_cmd_node node;
    int exit_status = tdm_cmd_parse_node("verify", argc, argv, "deep", &deep, &node);
    if (exit_status >= 0) {
        return exit_status;
    }
    const char *name = node.dir != NULL ? node.dir : node.address;
    struct tdm_client client;
    struct tdm_diag diag = {{0}};
    int rv = tdm_cmd_connect(&node, &client, &diag);
    if (rv == 1) {
        tdm_assert(node.dir != NULL);
        return verify_local(node.dir, deep);
    }
    if (rv != 0) {
        tdm_cmd_fail("verify %s: %s", name,
                     diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        return TDM_CMD_EXIT_USAGE;
    }
    struct tandem_verify_report *report = tdm_calloc(1, sizeof(*report));
    struct verify_remote v = {.name = name, .report = report};
    rv = report != NULL ? verify_remote(&client, deep, &v, &diag) : -ENOMEM;
    tdm_client_close(&client);
    if (rv != 0) {
        tdm_free(report);
        tdm_cmd_fail("verify %s: %s", name,
                     diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        return TDM_CMD_EXIT_USAGE;
    }
    exit_status = verify_finish(name, report, deep, v.seconds);
    tdm_free(report);
    return exit_status;
}
