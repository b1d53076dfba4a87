/* tools/cmd_quarantine.c: "tandem quarantine --node ADDR [--cert DIR] [--json]
 * [--export FILE|-]": what a node holds in DIR/quarantine/, and its records as
 * JSON Lines for reconciliation.
 *
 * Happy path:
 * 1. Resolve --node. A node directory is read directly (tools/inspect.c),
 *    whether or not a tandemd runs there (quarantine files are never changed
 *    once written); HOST:PORT sends QUARANTINE (docs/PROTOCOL.md §7.6).
 * 2. Without --export: print the listing (a table, or --json one document):
 *    per file why it is there, the LSN range, batches, records, bytes, time,
 *    and every unreadable range. Exit 0.
 * 3. With --export FILE (or - for stdout): write the records of every batch
 *    that verifies as JSON Lines with "lsn" (as `tandem get` prints them), in
 *    file name order; from HOST:PORT they stream in QUARANTINE_RESULT frames.
 *    Exit 0 when every byte in quarantine was exported.
 * Failure modes: unreadable bytes are never exported: the export writes what
 * verifies, then one line says how many ranges were left out (exit 1); a node
 * that cannot be reached, a FILE that cannot be written: one line, exit 1; a
 * bad command line: exit 2. */
#include "cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/assert.h"
#include "inspect.h"
#include "net/proto.h"

/* "81.2 MiB": bytes for a human. */
static void quarantine_bytes_human(uint64_t bytes, char *buf, size_t size)
{
    tdm_cmd_bytes_human(bytes, "B", buf, size);
}

static void quarantine_print_file(const json_t *file)
{
    char lsns[48] = "-";
    char bytes[32];
    if (json_is_integer(json_object_get(file, "lsn_first"))) {
        snprintf(lsns, sizeof(lsns), "%" PRIu64 "-%" PRIu64, tdm_cmd_json_u64(file, "lsn_first"),
                 tdm_cmd_json_u64(file, "lsn_last"));
    }
    quarantine_bytes_human(tdm_cmd_json_u64(file, "bytes"), bytes, sizeof(bytes));
    const char *time = json_string_value(json_object_get(file, "time"));
    printf("%-38s %-19s %-15s %-7" PRIu64 " %-7" PRIu64 " %-10s %s\n",
           json_string_value(json_object_get(file, "file")),
           json_string_value(json_object_get(file, "reason")), lsns,
           tdm_cmd_json_u64(file, "batches"), tdm_cmd_json_u64(file, "records"), bytes,
           time != NULL ? time : "-");
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(file, "epochs"), i, item)
    {
        printf("  written in epoch %" PRIu64 ": LSNs %" PRIu64 "-%" PRIu64 ", %" PRIu64
               " records\n",
               tdm_cmd_json_u64(item, "epoch"), tdm_cmd_json_u64(item, "lsn_first"),
               tdm_cmd_json_u64(item, "lsn_last"), tdm_cmd_json_u64(item, "records"));
    }
    json_array_foreach(json_object_get(file, "unreadable"), i, item)
    {
        printf("  unreadable at offset %" PRIu64 ", %" PRIu64 " bytes: %s\n",
               tdm_cmd_json_u64(item, "offset"), tdm_cmd_json_u64(item, "bytes"),
               json_string_value(json_object_get(item, "cause")));
    }
    uint64_t listed = json_array_size(json_object_get(file, "unreadable"));
    if (tdm_cmd_json_u64(file, "unreadable_count") > listed) {
        printf("  and %" PRIu64 " more unreadable ranges\n",
               tdm_cmd_json_u64(file, "unreadable_count") - listed);
    }
    const char *error = json_string_value(json_object_get(file, "error"));
    if (error != NULL) {
        printf("  cannot be read: %s\n", error);
    }
}

static void quarantine_print_text(const json_t *doc)
{
    if (tdm_cmd_json_u64(doc, "file_count") == 0) {
        printf("quarantine is empty\n");
        return;
    }
    printf("%-38s %-19s %-15s %-7s %-7s %-10s %s\n", "FILE", "REASON", "LSNS", "BATCHES", "RECORDS",
           "BYTES", "TIME");
    size_t i;
    json_t *file;
    json_array_foreach(json_object_get(doc, "files"), i, file)
    {
        quarantine_print_file(file);
    }
    char bytes[32];
    quarantine_bytes_human(tdm_cmd_json_u64(doc, "bytes"), bytes, sizeof(bytes));
    printf("total: %" PRIu64 " files, %s, %" PRIu64 " batches, %" PRIu64 " records, %" PRIu64
           " unreadable ranges\n",
           tdm_cmd_json_u64(doc, "file_count"), bytes, tdm_cmd_json_u64(doc, "batches"),
           tdm_cmd_json_u64(doc, "records"), tdm_cmd_json_u64(doc, "unreadable"));
}

/* Where the export goes. */
struct quarantine_out {
    FILE *file;
    uint64_t lines;
};

static int quarantine_line_cb(void *data, const char *line, size_t size)
{
    struct quarantine_out *out = data;
    if (fwrite(line, 1, size, out->file) != size || fputc('\n', out->file) == EOF) {
        return -EIO;
    }
    out->lines++;
    return 0;
}

/* Remote export text: whole lines, already newline-terminated. */
static int quarantine_text_cb(void *data, const uint8_t *text, size_t size)
{
    struct quarantine_out *out = data;
    if (fwrite(text, 1, size, out->file) != size) {
        return -EIO;
    }
    for (size_t i = 0; i < size; i++) {
        out->lines += text[i] == '\n';
    }
    return 0;
}

/* Step 3, after the listing (doc) said what is unreadable. */
static int quarantine_export(const struct tdm_cmd_node *node, const json_t *doc, const char *path)
{
    bool to_stdout = strcmp(path, "-") == 0;
    struct quarantine_out out = {.file = to_stdout ? stdout : fopen(path, "we")};
    if (out.file == NULL) {
        tdm_cmd_fail("quarantine: --export %s: %s", path, strerror(errno));
        return TDM_CMD_EXIT_FAILED;
    }
    struct tdm_diag diag = {{0}};
    uint64_t skipped = 0;
    int rv;
    if (node->dir != NULL) {
        struct tdm_inspect_node inspect = {.dir = node->dir, .id = ""};
        rv = tdm_inspect_export(&inspect, quarantine_line_cb, &out, &skipped, &diag);
    } else {
        rv = tdm_cmd_inspect_remote(node, TDM_PROTO_QUARANTINE, TDM_PROTO_QUARANTINE_EXPORT,
                                    quarantine_text_cb, &out, &diag);
    }
    int closed = to_stdout ? fflush(stdout) : fclose(out.file);
    if (rv == 0 && closed != 0) {
        rv = -EIO;
        tdm_diag_printf(&diag, "write %s: %s", path, strerror(errno));
    }
    if (rv != 0) {
        tdm_cmd_fail("quarantine: export: %s",
                     diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        return TDM_CMD_EXIT_FAILED;
    }
    /* The listing counts unreadable ranges and files; a local export also
     * counts a record that would not decode inside a batch that verifies. */
    uint64_t unreadable = tdm_cmd_json_u64(doc, "unreadable");
    unreadable = skipped > unreadable ? skipped : unreadable;
    if (unreadable > 0) {
        tdm_cmd_fail("quarantine: exported %" PRIu64 " records; %" PRIu64
                     " unreadable ranges could not be exported (tandem quarantine --node ADDR "
                     "lists them)",
                     out.lines, unreadable);
        return TDM_CMD_EXIT_FAILED;
    }
    return TDM_CMD_EXIT_OK;
}

int tdm_cmd_quarantine(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    const char *export_path = NULL;
    bool json = false;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},  {"cert", true, &cert, NULL},
        {"json", false, NULL, &json}, {"export", true, &export_path, NULL},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    if (json && export_path != NULL) {
        tdm_cmd_fail("quarantine: --json and --export exclude each other (the export is JSON "
                     "Lines)");
        return TDM_CMD_EXIT_USAGE;
    }
    if (export_path != NULL && export_path[0] == '\0') {
        tdm_cmd_fail("quarantine: --export needs a file name, or - for stdout");
        return TDM_CMD_EXIT_USAGE;
    }
    struct tdm_cmd_node node;
    exit_status = tdm_cmd_node_resolve("quarantine", addr, cert, &node);
    if (exit_status >= 0) {
        return exit_status;
    }
    json_t *doc = NULL;
    exit_status = tdm_cmd_inspect_doc("quarantine", &node, TDM_PROTO_QUARANTINE, &doc);
    if (exit_status >= 0) {
        return exit_status;
    }
    if (export_path != NULL) {
        exit_status = quarantine_export(&node, doc, export_path);
    } else if (json) {
        (void)json_dumpf(doc, stdout, JSON_COMPACT);
        putchar('\n');
        exit_status = TDM_CMD_EXIT_OK;
    } else {
        quarantine_print_text(doc);
        exit_status = TDM_CMD_EXIT_OK;
    }
    json_decref(doc);
    return exit_status; /* main() reports output that did not reach stdout. */
}
