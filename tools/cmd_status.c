/* tools/cmd_status.c: "tandem status --node ADDR [--cert DIR] [--json] [--watch]".
 *
 * Happy path:
 * 1. Read DIR/tandem.conf for the cluster name and node id (a directory made
 *    by the library alone has none: both are then empty).
 * 2. Open DIR read-only and take tandem_status(): this works beside the
 *    process that writes.
 * 3. Judge health: broken when the directory cannot be opened or writes
 *    stopped (failed_code != 0), degraded when the log has damaged ranges,
 *    else healthy.
 * 4. Print the view as text (a table an on-call engineer reads at a glance)
 *    or as one JSON object (schema 1, DESIGN "Public contracts"), and exit
 *    0 healthy, 1 degraded, 2 broken.
 * When a tandemd answers on DIR/tandemd.sock, or ADDR is a node's HOST:PORT
 * (TCP + mutual TLS, net/client.h), steps 1-3 are the node's: it answers
 * STATUS with the document (tools/status_doc.c), printed as is with --json and
 * read back for the text view; a node that cannot answer (or a HOST:PORT that
 * cannot be reached) means broken, exit 2.
 * With --watch, steps 1-4 repeat every STATUS_WATCH_INTERVAL_S seconds until
 * interrupted (text: the screen is redrawn on a terminal; JSON: one object per
 * line).
 * Failure modes: an unopenable directory is itself the answer (broken, exit
 * 2), with the cause on stderr as well. */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "jsonl.h"
#include "net/client.h"
#include "status_doc.h"

#define STATUS_WATCH_INTERVAL_S 2

static int status_exit(enum tdm_status_health health)
{
    switch (health) {
    case TDM_STATUS_HEALTHY:
        return TDM_CMD_EXIT_OK;
    case TDM_STATUS_DEGRADED:
        return TDM_CMD_EXIT_FAILED;
    case TDM_STATUS_BROKEN:
        return TDM_CMD_EXIT_USAGE;
    }
    tdm_unreachable();
}

/* Steps 1-3 of the header. */
static void status_collect(struct tdm_status_view *view)
{
    tdm_assert(view->dir != NULL);
    tdm_assert(!view->opened);
    struct tandem_diag diag = {{0}};
    view->conf_found = tdm_cmd_conf_read(view->dir, &view->conf, &diag) == 0;
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_READONLY;
    struct tandem *t = NULL;
    int rv = tandem_open(view->dir, &options, &t, &diag);
    if (rv == 0) {
        rv = tandem_status(t, &view->status);
        tandem_close(t);
    }
    if (rv != 0) {
        snprintf(view->open_error, sizeof(view->open_error), "open %s: %s%s%s", view->dir,
                 tandem_strerror(rv), diag.message[0] != '\0' ? ": " : "", diag.message);
        view->health = TDM_STATUS_BROKEN;
        return;
    }
    view->opened = true;
    view->stopped = view->conf_found && view->conf.replicated;
    tdm_status_judge(view);
}

/* Ask the tandemd of view->dir for its status document (STATUS). Returns 0 with
 * view filled and *text the document (tdm_malloc'd), 1 when no tandemd runs
 * there (the caller opens the directory), or -1 when tandemd could not answer:
 * view then says broken, with the cause. */
static int status_collect_remote(const struct tdm_cmd_node *node, struct tdm_status_view *view,
                                 char *dir_storage, char **text)
{
    tdm_assert(view->dir != NULL);
    struct tdm_client client;
    struct tdm_diag diag = {{0}};
    int rv = tdm_cmd_connect(node, &client, &diag);
    if (rv == 1) {
        return 1;
    }
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (rv == 0 && msg == NULL) {
        rv = -ENOMEM;
    }
    if (rv == 0) {
        msg->type = TDM_PROTO_STATUS;
        msg->status.request_id = client.request_id_next++;
        rv = tdm_client_send(&client, msg, &diag);
    }
    if (rv == 0) {
        rv = tdm_client_receive(&client, msg, true, &diag);
    }
    if (rv == 0 && (msg->type != TDM_PROTO_STATUS_RESULT || msg->status_result.status != 0)) {
        tdm_diag_printf(&diag, "tandemd answered %s %s", tdm_proto_type_name(msg->type),
                        tandem_strerror(msg->status_result.status));
        rv = TANDEM_ECORRUPT;
    }
    if (rv == 0) {
        const struct tdm_proto_slice *doc = &msg->status_result.text;
        *text = tdm_malloc(doc->size + 1);
        rv = *text == NULL ? -ENOMEM : 0;
        if (rv == 0) {
            memcpy(*text, doc->data, doc->size);
            (*text)[doc->size] = '\0';
            const char *dir = view->dir;
            rv = tdm_status_parse(*text, doc->size, view, dir_storage);
            view->dir = dir;
        }
    }
    tdm_free(msg);
    if (client.fd >= 0) {
        tdm_client_close(&client);
    }
    if (rv != 0) {
        tdm_free(*text);
        *text = NULL;
        snprintf(view->open_error, sizeof(view->open_error), "%s %s: %s%s%s",
                 node->address != NULL ? "node at" : "tandemd on", view->dir, tandem_strerror(rv),
                 diag.message[0] != '\0' ? ": " : "", diag.message);
        view->opened = false;
        view->health = TDM_STATUS_BROKEN;
        return -1;
    }
    return 0;
}

static int status_print_json(const struct tdm_status_view *view)
{
    char *text = NULL;
    int rv = tdm_status_json(view, &text);
    if (rv != 0) {
        tdm_cmd_fail("status: format JSON: %s", tandem_strerror(rv));
        return rv;
    }
    puts(text);
    free(text);
    return 0;
}

void tdm_cmd_bytes_human(uint64_t bytes, const char *unit, char *buf, size_t size)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        snprintf(buf, size, "%llu %s", (unsigned long long)bytes, unit);
        return;
    }
    double value = (double)bytes / 1024.0;
    size_t i = 0;
    while (value >= 1024.0 && i + 1 < sizeof(units) / sizeof(units[0])) {
        value /= 1024.0;
        i++;
    }
    snprintf(buf, size, "%.1f %s", value, units[i]);
}

/* "81.2 MiB": bytes for a human. */
static void status_bytes_human(uint64_t bytes, char *buf, size_t size)
{
    tdm_cmd_bytes_human(bytes, "bytes", buf, size);
}

static void status_print_health(const struct tdm_status_view *view)
{
    const struct tandem_status *status = &view->status;
    char reason[TDM_STATUS_REASON_SIZE];
    if (tdm_status_health_reason(view, reason, sizeof(reason)) == NULL) {
        printf("health      HEALTHY\n");
    } else {
        printf("health      %s: %s\n", view->health == TDM_STATUS_BROKEN ? "BROKEN" : "DEGRADED",
               reason);
    }
    printf("cluster     %s    primary %s    epoch %llu\n",
           view->conf_found ? view->conf.cluster : "? (no tandem.conf)",
           view->conf_found ? tdm_status_primary(view) : "?",
           (unsigned long long)(view->replicated ? view->cluster.epoch
                                : view->opened   ? status->epoch
                                                 : 0));
    if (view->replicated) {
        printf("this node   %s, %s, min_copies %u, acknowledged to lsn %llu, %u write%s in "
               "flight\n",
               view->conf.id, view->cluster.role, view->cluster.min_copies,
               (unsigned long long)view->cluster.commit_lsn, view->cluster.writes_in_flight,
               view->cluster.writes_in_flight == 1 ? "" : "s");
    }
}

static void status_print_nodes(const struct tdm_status_view *view)
{
    const struct tandem_status *status = &view->status;
    bool failed = tdm_status_failed(view);
    char last[24] = "-";
    if (view->opened) {
        snprintf(last, sizeof(last), "%llu", (unsigned long long)status->lsn_last);
    }
    printf("\n%-12s %-8s %6s %12s %12s %12s %8s  %-5s %s\n", "NODE", "ROLE", "EPOCH", "LAST_LSN",
           "DURABLE_LSN", "VERIFIED_LSN", "LAG", "LINK",
           view->replicated ? "DIR (self) OR LINK STATE" : "DIR");
    if (view->replicated) {
        for (uint32_t i = 0; i < view->cluster.node_count; i++) {
            const struct tdm_uv_node_view *node = &view->cluster.nodes[i];
            char lag[48];
            snprintf(lag, sizeof(lag), "%llu", (unsigned long long)node->lag_records);
            char verified[24] = "-";
            if (node->verify_known) {
                snprintf(verified, sizeof(verified), "%llu",
                         (unsigned long long)node->verified_lsn);
            }
            printf("%-12s %-8s %6llu %12llu %12llu %12s %8s  %-5s %s\n", node->id,
                   node->self && failed ? "failed" : node->role, (unsigned long long)node->epoch,
                   (unsigned long long)node->last_lsn, (unsigned long long)node->durable_lsn,
                   verified, lag, node->self || node->link_up ? "up" : "down",
                   node->self ? view->dir : node->link);
        }
        return;
    }
    printf("%-12s %-8s %6llu %12s %12s %12s %8s  %-5s %s\n",
           view->conf.id[0] != '\0' ? view->conf.id : "?",
           view->stopped ? "stopped"
           : failed      ? "failed"
                         : "primary",
           (unsigned long long)(view->opened ? status->epoch : 0), last, last, "-", "0",
           view->opened && !view->stopped ? "up" : "down", view->dir);
}

/* Repairs from verified copies (docs/OPERATIONS.md "Damage"); a lost range is
 * an alarm line of its own. */
static void status_print_repair(const struct tdm_uv_repair_view *repair)
{
    if (!repair->enabled) {
        printf("repair      off on this node: damage is reported, not repaired\n");
        return;
    }
    printf("repair      %llu range%s repaired from verified copies; %u lost\n",
           (unsigned long long)repair->repaired, repair->repaired == 1 ? "" : "s",
           repair->lost_count);
    if (repair->active) {
        printf("repair      log/%020llu.seg lsn %llu..%llu: %s\n",
               (unsigned long long)repair->active_segment,
               (unsigned long long)repair->active_lsn_first,
               (unsigned long long)repair->active_lsn_last,
               repair->waiting ? "waiting for a node whose copy is verified that far"
                               : "fetching it from a verified copy");
    }
    uint32_t listed =
        repair->lost_count < TDM_UV_REPAIR_LOST_MAX ? repair->lost_count : TDM_UV_REPAIR_LOST_MAX;
    for (uint32_t i = 0; i < listed; i++) {
        const struct tdm_uv_repair_lost *l = &repair->lost[i];
        printf("LOST        log/%020llu.seg lsn %llu..%llu: %s; nothing was changed "
               "(docs/OPERATIONS.md \"Damage\")\n",
               (unsigned long long)l->segment_lsn, (unsigned long long)l->lsn_first,
               (unsigned long long)l->lsn_last, l->reason);
    }
    if (repair->lost_count > listed) {
        printf("LOST        ... and %u more\n", repair->lost_count - listed);
    }
}

/* Verification of a replicated node: when each copy was last proven equal to
 * the primary's, any mismatch, and the background scrubber. */
static void status_print_verification(const struct tdm_status_view *view)
{
    const struct tdm_uv_cluster_view *cluster = &view->cluster;
    printf("\n");
    for (uint32_t i = 0; i < cluster->node_count; i++) {
        const struct tdm_uv_node_view *node = &cluster->nodes[i];
        if (!node->verify_known) {
            continue;
        }
        if (node->verified_at_ns == 0) {
            printf("verified    %s: not yet\n", node->id);
        } else {
            printf("verified    %s: equal to the primary through lsn %llu, %.1f s ago\n", node->id,
                   (unsigned long long)node->verified_lsn,
                   (double)(cluster->now_ns - node->verified_at_ns) / 1e9);
        }
        if (node->divergent_first != 0) {
            printf("MISMATCH    %s: first divergent batch lsn %llu..%llu: its copy differs "
                   "from the primary's from there (docs/OPERATIONS.md \"Verification\")\n",
                   node->id, (unsigned long long)node->divergent_first,
                   (unsigned long long)node->divergent_last);
        } else if (node->bisecting) {
            printf("MISMATCH    %s: chain hashes differ; narrowing down the first divergent "
                   "batch\n",
                   node->id);
        }
    }
    const struct tdm_uv_scrub_view *scrub = &cluster->scrub;
    if (!scrub->enabled) {
        printf("scrub       not running on this node\n");
        return;
    }
    char done[32];
    char total[32];
    status_bytes_human(scrub->bytes_done, done, sizeof(done));
    status_bytes_human(view->status.log_bytes, total, sizeof(total));
    char last[40] = "none yet";
    if (scrub->last_full_pass_ns != 0) {
        tdm_time_format(scrub->last_full_pass_ns, last, sizeof(last));
    }
    /* bytes_done counts every byte of segment files the pass read (the zeros
     * after a prepared segment's last batch, and what recovery reads twice,
     * included), so it is no fraction of the log's batch bytes. */
    printf("scrub       %s %s of segment files (the log holds %s); %llu full pass%s, last %s; "
           "%u damaged range%s\n",
           scrub->running ? "reading: read" : "between passes: the last read", done, total,
           (unsigned long long)scrub->passes, scrub->passes == 1 ? "" : "es", last,
           scrub->damaged_count, scrub->damaged_count == 1 ? "" : "s");
    uint32_t listed = scrub->damaged_count < TDM_UV_SCRUB_DAMAGED_MAX ? scrub->damaged_count
                                                                      : TDM_UV_SCRUB_DAMAGED_MAX;
    tdm_cmd_print_damaged(scrub->damaged, listed);
    if (scrub->error[0] != '\0') {
        printf("scrub       last pass failed: %s\n", scrub->error);
    }
    status_print_repair(&cluster->repair);
}

static void status_print_log(const struct tdm_status_view *view)
{
    const struct tandem_status *status = &view->status;
    char size[32];
    status_bytes_human(status->log_bytes, size, sizeof(size));
    printf("\n");
    if (status->lsn_last == 0) {
        printf("log         empty, %u segment%s\n", status->segment_count,
               status->segment_count == 1 ? "" : "s");
    } else {
        printf("log         lsn %llu..%llu in %u segment%s (%u sealed), %s\n",
               (unsigned long long)status->lsn_first, (unsigned long long)status->lsn_last,
               status->segment_count, status->segment_count == 1 ? "" : "s", status->sealed_count,
               size);
    }
    if (status->index_lsn >= status->lsn_last) {
        printf("index       current to lsn %llu\n", (unsigned long long)status->index_lsn);
    } else {
        printf("index       current to lsn %llu, %llu behind the log (caught up by the writer, "
               "on its next open or by tandem reindex)\n",
               (unsigned long long)status->index_lsn,
               (unsigned long long)(status->lsn_last - status->index_lsn));
    }
    char hex[2 * sizeof(status->chain_hash) + 1];
    tdm_status_chain_hash_hex(status, hex, sizeof(hex));
    printf("chain hash  %s at lsn %llu\n", hex, (unsigned long long)status->lsn_last);
    status_bytes_human(status->quarantine_bytes, size, sizeof(size));
    if (status->quarantine_count == 0) {
        printf("quarantine  empty\n");
    } else {
        printf("quarantine  %u file%s, %s (cut from the log tail; kept for inspection)\n",
               status->quarantine_count, status->quarantine_count == 1 ? "" : "s", size);
    }
}

void tdm_cmd_print_damaged(const struct tandem_damage *damaged, uint32_t damaged_count)
{
    uint32_t count = damaged_count;
    if (count > TANDEM_STATUS_DAMAGED_MAX) {
        count = TANDEM_STATUS_DAMAGED_MAX;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct tandem_damage *damage = &damaged[i];
        /* Segment files are named by their first LSN (docs/FORMAT.md "Node directory"). */
        printf("damaged     log/%020llu.seg offset %llu: lsn %llu..%llu (%s)\n",
               (unsigned long long)damage->segment_lsn, (unsigned long long)damage->offset,
               (unsigned long long)damage->lsn_first, (unsigned long long)damage->lsn_last,
               damage->sealed ? "sealed segment" : "open segment");
    }
    if (damaged_count > count) {
        printf("damaged     ... and %u more\n", damaged_count - count);
    }
}

static void status_print_text(const struct tdm_status_view *view)
{
    status_print_health(view);
    status_print_nodes(view);
    if (view->replicated) {
        status_print_verification(view);
    }
    if (view->opened) {
        status_print_log(view);
        tdm_cmd_print_damaged(view->status.damaged, view->status.damaged_count);
    }
}

int tdm_cmd_status(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    bool json = false;
    bool watch = false;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},    {"cert", true, &cert, NULL}, {"json", false, NULL, &json},
        {"watch", false, NULL, &watch}, {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    struct tdm_cmd_node node;
    exit_status = tdm_cmd_node_resolve("status", addr, cert, &node);
    if (exit_status >= 0) {
        return exit_status;
    }
    bool redraw = watch && !json && isatty(STDOUT_FILENO);
    for (;;) {
        /* A remote node's view names the address it was reached at. */
        struct tdm_status_view view = {.dir = node.dir != NULL ? node.dir : node.address};
        static char remote_dir[TDM_CMD_PATH_SIZE];
        char *remote_text = NULL;
        if (status_collect_remote(&node, &view, remote_dir, &remote_text) == 1) {
            status_collect(&view);
        }
        if (redraw) {
            fputs("\033[H\033[2J", stdout);
        }
        if (json && remote_text != NULL) {
            puts(remote_text);
            tdm_free(remote_text);
        } else if (json) {
            if (status_print_json(&view) != 0) {
                return TDM_CMD_EXIT_USAGE;
            }
        } else {
            tdm_free(remote_text);
            status_print_text(&view);
        }
        fflush(stdout);
        if (!view.opened) {
            tdm_cmd_fail("status: %s", view.open_error);
        }
        if (!watch || ferror(stdout)) {
            return status_exit(view.health); /* main() reports a failed stdout. */
        }
        if (!json && !redraw) {
            putchar('\n');
        }
        struct timespec pause = {.tv_sec = STATUS_WATCH_INTERVAL_S, .tv_nsec = 0};
        nanosleep(&pause, NULL);
    }
}
