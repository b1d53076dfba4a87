/* tools/verify_doc.c: the VERIFY answer (docs/PROTOCOL.md §7.7): tandemd's
 * side (run the pass, write JSON Lines) and the CLI's (read the report back).
 *
 * Happy path (tandemd, threadpool): tdm_node_verify_running() re-reads every
 * segment beside the writer; each progress call becomes one {"progress": ...}
 * line, which net/uv_server.c sends at once; the report becomes the last line.
 * Failure modes: the verify's error (another verify runs, I/O) is returned
 * with its diag and answered as the frame's error; a line that cannot be
 * sent stops nothing (the pass goes on; the report's line fails instead). */
#include "verify_doc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/base/alloc.h"
#include "engine/node.h"
#include "net/proto.h"

struct verify_serve {
    tdm_uv_line_cb line;
    void *line_data;
};

static int verify_line(struct verify_serve *v, json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        return -ENOMEM;
    }
    int rv = v->line(v->line_data, text, strlen(text));
    free(text);
    return rv;
}

/* tdm_node_verify_progress_cb: any thread (the line callback is thread-safe
 * for VERIFY). A line lost for lack of memory is only a progress line. */
static void verify_progress_cb(void *data, const char *phase, uint64_t bytes_done,
                               uint64_t bytes_total, uint64_t segment_lsn)
{
    struct verify_serve *v = data;
    json_t *progress =
        json_pack("{s:s, s:I, s:I, s:I}", "phase", phase, "bytes_done", (json_int_t)bytes_done,
                  "bytes_total", (json_int_t)bytes_total, "segment_lsn", (json_int_t)segment_lsn);
    (void)verify_line(v, progress != NULL ? json_pack("{s:o}", "progress", progress) : NULL);
}

static json_t *verify_report_json(const struct tandem_verify_report *r, double seconds)
{
    char hex[2 * sizeof(r->chain_hash) + 1];
    for (size_t i = 0; i < sizeof(r->chain_hash); i++) {
        snprintf(hex + 2 * i, 3, "%02x", r->chain_hash[i]);
    }
    json_t *damaged = json_array();
    uint32_t listed =
        r->damaged_count < TANDEM_STATUS_DAMAGED_MAX ? r->damaged_count : TANDEM_STATUS_DAMAGED_MAX;
    for (uint32_t i = 0; damaged != NULL && i < listed; i++) {
        const struct tandem_damage *d = &r->damaged[i];
        if (json_array_append_new(
                damaged,
                json_pack("{s:I, s:I, s:I, s:I, s:b}", "segment_lsn", (json_int_t)d->segment_lsn,
                          "offset", (json_int_t)d->offset, "lsn_first", (json_int_t)d->lsn_first,
                          "lsn_last", (json_int_t)d->lsn_last, "sealed", d->sealed)) != 0) {
            json_decref(damaged);
            damaged = NULL;
        }
    }
    if (damaged == NULL) {
        return NULL;
    }
    json_t *report = json_pack(
        "{s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:o, s:b, s:b, s:b, s:I, s:s}", "seconds",
        seconds, "segment_count", (json_int_t)r->segment_count, "sealed_count",
        (json_int_t)r->sealed_count, "segment_bytes", (json_int_t)r->segment_bytes, "read_bytes",
        (json_int_t)r->read_bytes, "lsn_first", (json_int_t)r->lsn_first, "lsn_last",
        (json_int_t)r->lsn_last, "chain_hash", hex, "damaged_count", (json_int_t)r->damaged_count,
        "damaged", damaged, "index_checked", r->index_checked, "index_equal", r->index_equal,
        "index_rebuilt", r->index_rebuilt, "index_lsn", (json_int_t)r->index_lsn,
        "index_difference", r->index_difference);
    return report != NULL ? json_pack("{s:o}", "report", report) : NULL;
}

int tdm_verify_serve(struct tandem *t, uint8_t flags, tdm_uv_line_cb line, void *line_data,
                     struct tdm_diag *diag)
{
    struct verify_serve v = {.line = line, .line_data = line_data};
    struct tandem_verify_report *report = tdm_calloc(1, sizeof(*report));
    if (report == NULL) {
        return -ENOMEM;
    }
    struct timespec start;
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned verify_flags = (flags & TDM_PROTO_VERIFY_DEEP) != 0 ? TANDEM_VERIFY_DEEP : 0;
    int rv = tdm_node_verify_running(t, verify_flags, verify_progress_cb, &v, report, diag);
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds =
        (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    if (rv == 0) {
        rv = verify_line(&v, verify_report_json(report, seconds));
    }
    tdm_free(report);
    return rv;
}

static bool verify_u64(const json_t *object, const char *key, uint64_t max, uint64_t *out)
{
    const json_t *value = json_object_get(object, key);
    if (!json_is_integer(value) || json_integer_value(value) < 0 ||
        (uint64_t)json_integer_value(value) > max) {
        return false;
    }
    *out = (uint64_t)json_integer_value(value);
    return true;
}

static bool verify_bool(const json_t *object, const char *key, bool *out)
{
    const json_t *value = json_object_get(object, key);
    *out = json_is_true(value);
    return json_is_boolean(value);
}

int tdm_verify_doc_report(const json_t *doc, struct tandem_verify_report *report, double *seconds,
                          struct tdm_diag *diag)
{
    memset(report, 0, sizeof(*report));
    uint64_t segment_count = 0;
    uint64_t sealed_count = 0;
    uint64_t damaged_count = 0;
    const json_t *hex = json_object_get(doc, "chain_hash");
    const json_t *damaged = json_object_get(doc, "damaged");
    const json_t *difference = json_object_get(doc, "index_difference");
    bool ok = json_is_object(doc) && json_is_number(json_object_get(doc, "seconds")) &&
              verify_u64(doc, "segment_count", UINT32_MAX, &segment_count) &&
              verify_u64(doc, "sealed_count", UINT32_MAX, &sealed_count) &&
              verify_u64(doc, "segment_bytes", INT64_MAX, &report->segment_bytes) &&
              verify_u64(doc, "read_bytes", INT64_MAX, &report->read_bytes) &&
              verify_u64(doc, "lsn_first", INT64_MAX, &report->lsn_first) &&
              verify_u64(doc, "lsn_last", INT64_MAX, &report->lsn_last) &&
              verify_u64(doc, "damaged_count", UINT32_MAX, &damaged_count) &&
              verify_u64(doc, "index_lsn", INT64_MAX, &report->index_lsn) &&
              verify_bool(doc, "index_checked", &report->index_checked) &&
              verify_bool(doc, "index_equal", &report->index_equal) &&
              verify_bool(doc, "index_rebuilt", &report->index_rebuilt) && json_is_string(hex) &&
              json_string_length(hex) == 2 * sizeof(report->chain_hash) &&
              json_is_string(difference) && json_is_array(damaged) &&
              json_array_size(damaged) <= TANDEM_STATUS_DAMAGED_MAX;
    for (size_t i = 0; ok && i < sizeof(report->chain_hash); i++) {
        unsigned byte = 0;
        ok = sscanf(json_string_value(hex) + 2 * i, "%2x", &byte) == 1;
        report->chain_hash[i] = (uint8_t)byte;
    }
    for (size_t i = 0; ok && i < json_array_size(damaged); i++) {
        const json_t *d = json_array_get(damaged, i);
        struct tandem_damage *out = &report->damaged[i];
        ok = verify_u64(d, "segment_lsn", INT64_MAX, &out->segment_lsn) &&
             verify_u64(d, "offset", INT64_MAX, &out->offset) &&
             verify_u64(d, "lsn_first", INT64_MAX, &out->lsn_first) &&
             verify_u64(d, "lsn_last", INT64_MAX, &out->lsn_last) &&
             verify_bool(d, "sealed", &out->sealed);
    }
    if (!ok) {
        return TDM_CORRUPT(diag, "the node answered a verify report that does not parse");
    }
    report->segment_count = (uint32_t)segment_count;
    report->sealed_count = (uint32_t)sealed_count;
    report->damaged_count = (uint32_t)damaged_count;
    snprintf(report->index_difference, sizeof(report->index_difference), "%s",
             json_string_value(difference));
    *seconds = json_number_value(json_object_get(doc, "seconds"));
    return 0;
}
