/* tools/cmd_switch.c: "tandem switchover --node ADDR [--to ID] [--json]" and
 * "tandem failover --node ADDR --to ID [--dry-run] [--force] [--json]"
 * (DESIGN "Switchover, failover", docs/PROTOCOL.md §7.5, §8).
 *
 * Happy path:
 * 1. Resolve --node ADDR (a node directory with tandemd running: its local
 *    socket; or HOST:PORT with --cert DIR) and connect.
 * 2. Send SWITCHOVER (target --to, or "" for the next of the rotation) or
 *    FAILOVER (target --to, which must be the node at ADDR: a failover is
 *    carried out by the node it promotes; flags FORCE, DRY_RUN).
 * 3. Wait for the answer: the node sends it once the command is decided
 *    (switchover: once the new primary acts, or refused/abandoned; failover:
 *    done, refused, abandoned, or the dry run's findings), within its bound.
 * 4. Print one readable summary (with --json the node's document as is): what
 *    happened, the new primary, the epoch, the pause; or the refusal and the
 *    node it is about. A dry run also prints the probe's table and the LSNs at
 *    risk with their records per customer (counted in the target's own copy,
 *    then in the copy of the answered node with the highest durable LSN).
 * Exit status: 0 done (a dry run: a real run would go ahead), 1 refused or
 * abandoned (a dry run: a real run would be refused) or the node failed the
 * command, 2 bad usage or the node unreachable.
 *
 * Failure modes: a node that cannot be reached, or an answer that does not
 * parse, is one line on stderr (exit 2). */
#include "cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "net/client.h"

static const char *json_str(json_t *doc, const char *key, const char *fallback)
{
    const char *value = json_string_value(json_object_get(doc, key));
    return value != NULL ? value : fallback;
}

static uint64_t json_u64(json_t *doc, const char *key)
{
    json_int_t value = json_integer_value(json_object_get(doc, key));
    return value > 0 ? (uint64_t)value : 0;
}

/* The probe's table and what is at risk (failover). */
static void switch_print_failover_detail(json_t *doc, const char *target)
{
    json_t *nodes = json_object_get(doc, "nodes");
    if (json_is_array(nodes) && json_array_size(nodes) > 0) {
        printf("%-16s %-9s %-10s %8s %10s %12s %12s %12s %s\n", "NODE", "ANSWERED", "ROLE", "EPOCH",
               "LAST_EPOCH", "LAST_LSN", "DURABLE_LSN", "COMMIT_LSN", "NOTE");
        size_t i;
        json_t *n;
        json_array_foreach(nodes, i, n)
        {
            bool answered = json_is_true(json_object_get(n, "answered"));
            const char *refusal = json_str(n, "refusal", NULL); /* A token: short. */
            char note[128];
            snprintf(note, sizeof(note), "%s%s%s",
                     json_is_true(json_object_get(n, "primary_seen")) ? "hears its primary" : "",
                     refusal != NULL && json_is_true(json_object_get(n, "primary_seen")) ? "; "
                                                                                         : "",
                     refusal != NULL ? refusal : "");
            printf("%-16s %-9s %-10s %8" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64
                   " %12" PRIu64 " %s\n",
                   json_str(n, "id", "?"), answered ? "yes" : "no", json_str(n, "role", "?"),
                   json_u64(n, "epoch"), json_u64(n, "last_epoch"), json_u64(n, "last_lsn"),
                   json_u64(n, "durable_lsn"), json_u64(n, "commit_lsn"), note);
        }
    }
    json_t *risk = json_object_get(doc, "risk");
    if (!json_is_object(risk)) {
        printf("at risk: nothing (no acknowledged LSN beyond what %s holds durably)\n", target);
        return;
    }
    uint64_t first = json_u64(risk, "lsn_first");
    uint64_t last = json_u64(risk, "lsn_last");
    uint64_t counted_last = json_u64(risk, "counted_lsn_last");
    uint64_t own_last = json_u64(risk, "own_lsn_last");
    uint64_t unknown_first = json_u64(risk, "unknown_lsn_first");
    const char *counted_in = json_str(risk, "counted_in", NULL);
    printf("at risk: LSN %" PRIu64 "..%" PRIu64 " (%" PRIu64 " records)\n", first, last,
           last - first + 1);
    if (counted_last >= first && counted_last != 0) {
        bool own = own_last >= first && own_last != 0;
        printf("  counted");
        if (own) {
            printf(" in %s's own copy (LSN %" PRIu64 "..%" PRIu64 ")", target, first, own_last);
        }
        if (counted_in != NULL && counted_last > (own ? own_last : first - 1)) {
            printf("%s in %s's copy (LSN %" PRIu64 "..%" PRIu64 ")", own ? " and" : "", counted_in,
                   own ? own_last + 1 : first, counted_last);
        }
        printf(": %" PRIu64 " records\n", json_u64(risk, "records_counted"));
        json_t *customers = json_object_get(risk, "customers");
        size_t i;
        json_t *c;
        json_array_foreach(customers, i, c)
        {
            printf("    customer %" PRIu64 ": %" PRIu64 " records\n", json_u64(c, "customer_id"),
                   json_u64(c, "records"));
        }
        if (json_u64(risk, "other_customers_records") > 0) {
            printf("    other customers: %" PRIu64 " records\n",
                   json_u64(risk, "other_customers_records"));
        }
    }
    if (unknown_first != 0) {
        printf("  LSN %" PRIu64 "..%" PRIu64 ": not counted (%s): customers unknown\n",
               unknown_first, last, json_str(risk, "count_error", "no answered node holds them"));
    }
}

/* The exit status of an answer (--json prints no summary). */
static int switch_exit(json_t *doc)
{
    const char *outcome = json_str(doc, "outcome", "unknown");
    if (strcmp(outcome, "done") == 0) {
        return TDM_CMD_EXIT_OK;
    }
    if (strcmp(outcome, "dry run") == 0 && json_str(doc, "refusal", NULL) == NULL) {
        return TDM_CMD_EXIT_OK;
    }
    return TDM_CMD_EXIT_FAILED;
}

/* Step 4. Returns the exit status. */
static int switch_print(json_t *doc, bool failover)
{
    const char *outcome = json_str(doc, "outcome", "unknown");
    const char *refusal = json_str(doc, "reason", NULL);
    const char *refusal_node = json_str(doc, "refusal_node", NULL);
    const char *target = json_str(doc, "target", "?");
    const char *node = json_str(doc, "node", "?");
    const char *primary = json_str(doc, "primary", "?");
    uint64_t epoch = json_u64(doc, "epoch");
    char why[256] = "";
    if (refusal != NULL) {
        snprintf(why, sizeof(why), ": %s%s%s%s", refusal, refusal_node != NULL ? " (node " : "",
                 refusal_node != NULL ? refusal_node : "", refusal_node != NULL ? ")" : "");
    }
    const char *command = failover ? "failover" : "switchover";
    if (strcmp(outcome, "done") == 0) {
        if (failover) {
            printf("failover done: %s is the primary in epoch %" PRIu64 "%s; durable LSN %" PRIu64
                   "\n",
                   target, epoch,
                   json_is_true(json_object_get(doc, "acting")) ? " and accepts writes" : "",
                   json_u64(doc, "lsn"));
            if (json_is_object(json_object_get(doc, "risk"))) {
                switch_print_failover_detail(doc, target); /* Forced: what may be lost. */
            }
        } else {
            printf("switchover done: %s -> %s, epoch %" PRIu64 ", handover at LSN %" PRIu64
                   ", writes held %" PRIu64 " ms%s\n",
                   node, target, epoch, json_u64(doc, "lsn"), json_u64(doc, "pause_ms"),
                   json_is_true(json_object_get(doc, "acting"))
                       ? ""
                       : " (the new primary was not yet seen acting: check tandem status)");
        }
        return TDM_CMD_EXIT_OK;
    }
    if (strcmp(outcome, "refused") == 0) {
        printf("%s refused%s; nothing changed (primary %s, epoch %" PRIu64 ")\n", command, why,
               primary, json_u64(doc, "current_epoch"));
        return TDM_CMD_EXIT_FAILED;
    }
    if (strcmp(outcome, "abandoned") == 0) {
        if (failover) {
            printf("failover abandoned%s; nodes already fenced hold epoch %" PRIu64
                   " until the acting primary moves above it\n",
                   why, epoch);
        } else {
            printf("switchover abandoned%s; %s resumed as primary in epoch %" PRIu64
                   " after holding writes %" PRIu64 " ms\n",
                   why, node, epoch, json_u64(doc, "pause_ms"));
        }
        return TDM_CMD_EXIT_FAILED;
    }
    if (strcmp(outcome, "dry run") == 0) {
        if (refusal != NULL) {
            printf("failover dry run: promoting %s would be refused%s (without --force)\n", target,
                   why);
        } else {
            printf("failover dry run: promoting %s would open epoch %" PRIu64 "\n", target, epoch);
        }
        switch_print_failover_detail(doc, target);
        return refusal != NULL ? TDM_CMD_EXIT_FAILED : TDM_CMD_EXIT_OK;
    }
    printf("%s: %s\n", command, json_str(doc, "message", outcome));
    return TDM_CMD_EXIT_FAILED;
}

static int switch_run(const char *command, const char *addr, const char *cert, const char *to,
                      uint8_t flags, bool json)
{
    bool failover = strcmp(command, "failover") == 0;
    if (to != NULL && !tdm_proto_name_valid(to, strlen(to))) {
        tdm_cmd_fail("%s: --to '%s': not a node id (1-63 letters, digits, '.', '_' or '-')",
                     command, to);
        return TDM_CMD_EXIT_USAGE;
    }
    struct tdm_cmd_node node;
    int exit_status = tdm_cmd_node_resolve(command, addr, cert, &node);
    if (exit_status >= 0) {
        return exit_status;
    }
    struct tdm_client client;
    struct tdm_diag diag = {{0}};
    int rv = tdm_cmd_connect(&node, &client, &diag);
    if (rv == 1) {
        tdm_cmd_fail("%s: no tandemd runs in %s: a %s needs the running node", command, node.dir,
                     command);
        return TDM_CMD_EXIT_USAGE;
    }
    if (rv != 0) {
        tdm_cmd_fail("%s: %s %s: %s%s%s", command, node.address != NULL ? "node at" : "tandemd on",
                     node.address != NULL ? node.address : node.dir, tandem_strerror(rv),
                     diag.message[0] != '\0' ? ": " : "", diag.message);
        return TDM_CMD_EXIT_USAGE;
    }
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (msg == NULL) {
        tdm_client_close(&client);
        tdm_cmd_fail("%s: out of memory", command);
        return TDM_CMD_EXIT_USAGE;
    }
    msg->type = failover ? TDM_PROTO_FAILOVER : TDM_PROTO_SWITCHOVER;
    msg->command.request_id = client.request_id_next++;
    msg->command.flags = flags;
    snprintf(msg->command.target, sizeof(msg->command.target), "%s", to != NULL ? to : "");
    uint64_t request_id = msg->command.request_id;
    rv = tdm_client_send(&client, msg, &diag);
    if (rv == 0) {
        rv = tdm_client_receive(&client, msg, true, &diag);
    }
    uint16_t expected = failover ? TDM_PROTO_FAILOVER_RESULT : TDM_PROTO_SWITCHOVER_RESULT;
    if (rv == 0 && (msg->type != expected || msg->command_result.request_id != request_id)) {
        tdm_diag_printf(&diag, "answered %s to %s", tdm_proto_type_name(msg->type),
                        failover ? "FAILOVER" : "SWITCHOVER");
        rv = TANDEM_ECORRUPT;
    }
    if (rv != 0) {
        tdm_free(msg);
        tdm_client_close(&client);
        tdm_cmd_fail("%s: %s %s: %s%s%s", command, node.address != NULL ? "node at" : "tandemd on",
                     node.address != NULL ? node.address : node.dir, tandem_strerror(rv),
                     diag.message[0] != '\0' ? ": " : "", diag.message);
        return TDM_CMD_EXIT_USAGE;
    }
    const struct tdm_proto_slice *text = &msg->command_result.text;
    int status = msg->command_result.status;
    if (status != 0) {
        tdm_cmd_fail("%s: %s: %.*s", command, tandem_strerror(status), (int)text->size,
                     (const char *)text->data);
        tdm_free(msg);
        tdm_client_close(&client);
        return TDM_CMD_EXIT_FAILED;
    }
    json_error_t error;
    json_t *doc = json_loadb((const char *)text->data, text->size, 0, &error);
    if (json_is_object(doc) && json) {
        printf("%.*s\n", (int)text->size, (const char *)text->data);
    }
    tdm_free(msg);
    tdm_client_close(&client);
    if (!json_is_object(doc)) {
        json_decref(doc);
        tdm_cmd_fail("%s: the node's answer does not parse: %s", command, error.text);
        return TDM_CMD_EXIT_USAGE;
    }
    int result = json ? switch_exit(doc) : switch_print(doc, failover);
    json_decref(doc);
    fflush(stdout);
    return result;
}

int tdm_cmd_switchover(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    const char *to = NULL;
    bool json = false;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},  {"cert", true, &cert, NULL}, {"to", true, &to, NULL},
        {"json", false, NULL, &json}, {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    return switch_run("switchover", addr, cert, to, 0, json);
}

int tdm_cmd_failover(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    const char *to = NULL;
    bool json = false;
    bool dry_run = false;
    bool force = false;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},
        {"cert", true, &cert, NULL},
        {"to", true, &to, NULL},
        {"json", false, NULL, &json},
        {"dry-run", false, NULL, &dry_run},
        {"force", false, NULL, &force},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    if (to == NULL) {
        tdm_cmd_fail("failover: --to ID is required: the node to promote (the node at --node)");
        return TDM_CMD_EXIT_USAGE;
    }
    uint8_t flags = (uint8_t)((force ? TDM_PROTO_FAILOVER_FORCE : 0) |
                              (dry_run ? TDM_PROTO_FAILOVER_DRY_RUN : 0));
    return switch_run("failover", addr, cert, to, flags, json);
}
