/* tools/cmd_history.c: "tandem history --node ADDR [--cert DIR] [--json]", and
 * the request both inspection commands send to a node at HOST:PORT
 * (tdm_cmd_inspect_remote(), also used by tools/cmd_quarantine.c).
 *
 * Happy path:
 * 1. Resolve --node. A node directory is read directly (tools/inspect.c:
 *    DIR/epochs and DIR/quarantine/), whether or not a tandemd runs there:
 *    the adapter replaces DIR/epochs by rename, so a reader sees the old or
 *    the new file whole. HOST:PORT: send HISTORY (docs/PROTOCOL.md §7.6) and
 *    read the document from HISTORY_RESULT frames.
 * 2. Print it: --json as one JSON document (docs/OPERATIONS.md "History"),
 *    else a table, one epoch a line, then what of the quarantine matches no
 *    epoch.
 * Failure modes (one line on stderr each): a standalone node has no
 *    replication history (exit 1); a DIR/epochs that does not parse names
 *    the file and line (exit 1); a node that cannot be reached or answers an
 *    error (exit 1); a bad command line (exit 2). */
#include "cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "inspect.h"
#include "net/client.h"
#include "net/proto.h"

/* Receive the answer frames of request_id until one without MORE. */
static int inspect_receive(struct tdm_client *client, uint16_t type, uint64_t request_id,
                           tdm_cmd_text_cb text, void *data, struct tdm_diag *diag)
{
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (msg == NULL) {
        return -ENOMEM;
    }
    int rv = 0;
    for (bool more = true; more && rv == 0;) {
        rv = tdm_client_receive(client, msg, true, diag);
        const struct tdm_proto_text_result *result = &msg->inspect_result;
        if (rv == 0 && (msg->type != type + 1 || result->request_id != request_id)) {
            tdm_diag_printf(diag, "the node answered %s", tdm_proto_type_name(msg->type));
            rv = TANDEM_ECORRUPT;
        } else if (rv == 0 && result->status != 0) {
            tdm_diag_printf(diag, "%.*s", (int)result->text.size, (const char *)result->text.data);
            rv = result->status;
        } else if (rv == 0) {
            rv = text(data, result->text.data, result->text.size);
            more = (result->flags & TDM_PROTO_RESULT_MORE) != 0;
        }
    }
    tdm_free(msg);
    return rv;
}

int tdm_cmd_inspect_remote(const struct tdm_cmd_node *node, uint16_t type, uint8_t flags,
                           tdm_cmd_text_cb text, void *data, struct tdm_diag *diag)
{
    tdm_assert(type == TDM_PROTO_HISTORY || type == TDM_PROTO_QUARANTINE);
    struct tdm_client client;
    int rv = tdm_cmd_connect(node, &client, diag);
    if (rv != 0) {
        return rv == 1 ? -ENOENT : rv;
    }
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    rv = msg == NULL ? -ENOMEM : 0;
    uint64_t request_id = client.request_id_next++;
    if (rv == 0) {
        msg->type = type;
        msg->inspect.request_id = request_id;
        msg->inspect.flags = flags;
        rv = tdm_client_send(&client, msg, diag);
    }
    tdm_free(msg);
    rv = rv != 0 ? rv : inspect_receive(&client, type, request_id, text, data, diag);
    tdm_client_close(&client);
    return rv;
}

/* Collect answer text into a growing, NUL-terminated buffer. */
struct inspect_text {
    char *data;
    size_t size;
};

static int inspect_text_cb(void *data, const uint8_t *text, size_t size)
{
    struct inspect_text *t = data;
    char *grown = tdm_realloc(t->data, t->size + size + 1);
    if (grown == NULL) {
        return -ENOMEM;
    }
    memcpy(grown + t->size, text, size);
    t->size += size;
    grown[t->size] = '\0';
    t->data = grown;
    return 0;
}

int tdm_cmd_inspect_doc(const char *command, const struct tdm_cmd_node *node, uint16_t type,
                        json_t **out)
{
    struct tdm_diag diag = {{0}};
    int rv;
    struct stat st;
    if (node->dir != NULL && (stat(node->dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        tdm_cmd_fail("%s: --node %s: no such node directory", command, node->dir);
        return TDM_CMD_EXIT_FAILED;
    }
    if (node->dir != NULL) {
        struct tdm_cmd_conf conf;
        struct tandem_diag conf_diag = {{0}};
        rv = tdm_cmd_conf_read(node->dir, &conf, &conf_diag);
        if (rv != 0 && rv != -ENOENT) {
            tdm_cmd_fail("%s: %s: %s", command, node->dir, conf_diag.message);
            return TDM_CMD_EXIT_FAILED;
        }
        struct tdm_inspect_node inspect = {.dir = node->dir,
                                           .id = conf.id,
                                           .primary = conf.primary,
                                           .replicated = conf.replicated};
        rv = type == TDM_PROTO_HISTORY ? tdm_inspect_history(&inspect, out, &diag)
                                       : tdm_inspect_quarantine(&inspect, out, &diag);
    } else {
        struct inspect_text text = {0};
        rv = tdm_cmd_inspect_remote(node, type, 0, inspect_text_cb, &text, &diag);
        json_error_t error;
        *out =
            rv == 0 ? json_loadb(text.data != NULL ? text.data : "", text.size, 0, &error) : NULL;
        if (rv == 0 && *out == NULL) {
            tdm_diag_printf(&diag, "the node answered a document that does not parse: %s",
                            error.text);
            rv = TANDEM_ECORRUPT;
        }
        tdm_free(text.data);
    }
    if (rv != 0) {
        tdm_cmd_fail("%s: %s", command,
                     diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        return TDM_CMD_EXIT_FAILED;
    }
    return -1;
}

uint64_t tdm_cmd_json_u64(const json_t *object, const char *key)
{
    return (uint64_t)json_integer_value(json_object_get(object, key));
}

/* "90-96" or "-". */
static void history_range(const json_t *range, char *buf, size_t size)
{
    if (!json_is_object(range)) {
        snprintf(buf, size, "-");
        return;
    }
    snprintf(buf, size, "%" PRIu64 "-%" PRIu64, tdm_cmd_json_u64(range, "lsn_first"),
             tdm_cmd_json_u64(range, "lsn_last"));
}

/* "41-57 (17 records)" per quarantined group, joined by ", "; "-" if none. */
static void history_quarantined(const json_t *list, char *buf, size_t size)
{
    size_t used = 0;
    size_t i;
    json_t *item;
    buf[0] = '\0';
    json_array_foreach(list, i, item)
    {
        char range[64];
        history_range(item, range, sizeof(range));
        int n = snprintf(buf + used, size - used, "%s%s (%" PRIu64 " records, %s)",
                         i > 0 ? ", " : "", range, tdm_cmd_json_u64(item, "records"),
                         json_string_value(json_object_get(item, "file")));
        used = n > 0 && used + (size_t)n < size ? used + (size_t)n : used;
    }
    if (used == 0) {
        snprintf(buf, size, "-");
    }
}

static void history_print_text(const json_t *doc)
{
    printf("%-6s %-16s %-10s %-9s %-24s %-8s %-13s %s\n", "EPOCH", "PRIMARY", "LSN_FIRST", "CAUSE",
           "TIME", "PAUSE_MS", "AT_RISK", "QUARANTINED");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "epochs"), i, e)
    {
        const char *time = json_string_value(json_object_get(e, "time"));
        char risk[64];
        char pause[24] = "-";
        char quarantined[1024];
        history_range(json_object_get(e, "at_risk"), risk, sizeof(risk));
        history_quarantined(json_object_get(e, "quarantined"), quarantined, sizeof(quarantined));
        if (tdm_cmd_json_u64(e, "pause_ms") > 0) {
            snprintf(pause, sizeof(pause), "%" PRIu64, tdm_cmd_json_u64(e, "pause_ms"));
        }
        printf("%-6" PRIu64 " %-16s %-10" PRIu64 " %-9s %-24s %-8s %-13s %s\n",
               tdm_cmd_json_u64(e, "epoch"), json_string_value(json_object_get(e, "primary")),
               tdm_cmd_json_u64(e, "lsn_first"), json_string_value(json_object_get(e, "cause")),
               time != NULL ? time : "-", pause, risk, quarantined);
    }
    json_array_foreach(json_object_get(doc, "quarantine_other"), i, e)
    {
        const char *name = json_string_value(json_object_get(e, "file"));
        if (json_object_get(e, "epoch") != NULL) {
            char range[64];
            history_range(e, range, sizeof(range));
            printf("quarantined, epoch %" PRIu64 " not in this history: %s LSNs %s\n",
                   tdm_cmd_json_u64(e, "epoch"), name, range);
        } else {
            printf("quarantined, unreadable bytes: %s (see tandem quarantine)\n", name);
        }
    }
}

int tdm_cmd_history(int argc, char **argv)
{
    bool json = false;
    struct tdm_cmd_node node;
    int exit_status = tdm_cmd_parse_node("history", argc, argv, "json", &json, &node);
    if (exit_status >= 0) {
        return exit_status;
    }
    json_t *doc = NULL;
    exit_status = tdm_cmd_inspect_doc("history", &node, TDM_PROTO_HISTORY, &doc);
    if (exit_status >= 0) {
        return exit_status;
    }
    if (json) {
        char *text = json_dumps(doc, JSON_COMPACT);
        if (text == NULL) {
            json_decref(doc);
            tdm_cmd_fail("history: out of memory");
            return TDM_CMD_EXIT_FAILED;
        }
        puts(text);
        free(text);
    } else {
        history_print_text(doc);
    }
    json_decref(doc);
    return TDM_CMD_EXIT_OK; /* main() reports output that did not reach stdout. */
}
