/* tools/cmd_status.c: "tandem status --node DIR [--json]".
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
 * With --watch, steps 1-4 repeat every STATUS_WATCH_INTERVAL_S seconds until
 * interrupted (text: the screen is redrawn on a terminal; JSON: one object per
 * line).
 * Until replication exists the cluster as the node sees it is the node
 * itself: a standalone primary, verified_lsn 0, no lag, link up.
 * Failure modes: an unopenable directory is itself the answer (broken, exit
 * 2), with the cause on stderr as well. */
#include "cmd.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/assert.h"

#define STATUS_SCHEMA           1
#define STATUS_WATCH_INTERVAL_S 2

enum status_health {
    STATUS_HEALTHY = 1,
    STATUS_DEGRADED,
    STATUS_BROKEN,
};

/* What the command learned about the node. */
struct status_view {
    const char *dir;
    struct tdm_cmd_conf conf;
    bool conf_found;
    bool opened;                                           /* status is valid. */
    char open_error[TANDEM_DIAG_SIZE + TDM_CMD_PATH_SIZE]; /* When !opened. */
    struct tandem_status status;
    enum status_health health;
};

static const char *status_health_name(enum status_health health)
{
    switch (health) {
    case STATUS_HEALTHY:
        return "healthy";
    case STATUS_DEGRADED:
        return "degraded";
    case STATUS_BROKEN:
        return "broken";
    }
    tdm_unreachable();
}

static int status_exit(enum status_health health)
{
    switch (health) {
    case STATUS_HEALTHY:
        return TDM_CMD_EXIT_OK;
    case STATUS_DEGRADED:
        return TDM_CMD_EXIT_FAILED;
    case STATUS_BROKEN:
        return TDM_CMD_EXIT_USAGE;
    }
    tdm_unreachable();
}

static bool status_failed(const struct status_view *view)
{
    return !view->opened || view->status.failed_code != 0;
}

static const char *status_failed_message(const struct status_view *view)
{
    if (!view->opened) {
        return view->open_error;
    }
    if (view->status.failed_message[0] != '\0') {
        return view->status.failed_message;
    }
    return tandem_strerror(view->status.failed_code);
}

/* Steps 1-3 of the header. */
static void status_collect(struct status_view *view)
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
        view->health = STATUS_BROKEN;
        return;
    }
    view->opened = true;
    if (view->status.failed_code != 0) {
        view->health = STATUS_BROKEN;
    } else if (view->status.damaged_count > 0) {
        view->health = STATUS_DEGRADED;
    } else {
        view->health = STATUS_HEALTHY;
    }
}

static void status_chain_hash_hex(const struct tandem_status *status, char *hex, size_t size)
{
    tdm_assert(size >= 2 * sizeof(status->chain_hash) + 1);
    for (size_t i = 0; i < sizeof(status->chain_hash); i++) {
        snprintf(hex + 2 * i, 3, "%02x", status->chain_hash[i]);
    }
}

static json_t *status_json_damaged(const struct tandem_status *status)
{
    json_t *damaged = json_array();
    uint32_t count = status->damaged_count;
    if (count > TANDEM_STATUS_DAMAGED_MAX) {
        count = TANDEM_STATUS_DAMAGED_MAX;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct tandem_damage *damage = &status->damaged[i];
        json_array_append_new(damaged,
                              json_pack("{s:I, s:I, s:I, s:I, s:b}", "segment",
                                        (json_int_t)damage->segment_lsn, "offset",
                                        (json_int_t)damage->offset, "lsn_first",
                                        (json_int_t)damage->lsn_first, "lsn_last",
                                        (json_int_t)damage->lsn_last, "sealed", damage->sealed));
    }
    return damaged;
}

/* The extra fields of the node object, beyond the contract's. */
static void status_json_node_log(json_t *node, const struct tandem_status *status)
{
    char hex[2 * sizeof(status->chain_hash) + 1];
    status_chain_hash_hex(status, hex, sizeof(hex));
    json_object_set_new(node, "lsn_first", json_integer((json_int_t)status->lsn_first));
    json_object_set_new(node, "index_lsn", json_integer((json_int_t)status->index_lsn));
    json_object_set_new(node, "segments", json_integer(status->segment_count));
    json_object_set_new(node, "sealed_segments", json_integer(status->sealed_count));
    json_object_set_new(node, "log_bytes", json_integer((json_int_t)status->log_bytes));
    json_object_set_new(node, "quarantine",
                        json_pack("{s:I, s:I}", "files", (json_int_t)status->quarantine_count,
                                  "bytes", (json_int_t)status->quarantine_bytes));
    json_object_set_new(node, "chain_hash", json_string(hex));
    json_object_set_new(node, "damaged_count", json_integer(status->damaged_count));
    json_object_set_new(node, "damaged", status_json_damaged(status));
}

static json_t *status_json_node(const struct status_view *view)
{
    const struct tandem_status *status = &view->status;
    tdm_assert(view->health >= STATUS_HEALTHY);
    bool failed = status_failed(view);
    tdm_assert(!failed || view->health == STATUS_BROKEN);
    uint64_t lsn_last = view->opened ? status->lsn_last : 0;
    json_t *node = json_object();
    json_object_set_new(node, "id", json_string(view->conf.id));
    json_object_set_new(node, "role", json_string(failed ? "failed" : "primary"));
    json_object_set_new(node, "epoch", json_integer(view->opened ? (json_int_t)status->epoch : 0));
    json_object_set_new(node, "last_lsn", json_integer((json_int_t)lsn_last));
    json_object_set_new(node, "durable_lsn", json_integer((json_int_t)lsn_last));
    json_object_set_new(node, "verified_lsn", json_integer(0));
    json_object_set_new(node, "lag",
                        json_pack("{s:i, s:i, s:f}", "records", 0, "bytes", 0, "seconds", 0.0));
    json_object_set_new(node, "link", json_string(view->opened ? "up" : "down"));
    json_object_set_new(node, "state", json_string(failed ? "failed" : "ok"));
    json_object_set_new(node, "failed",
                        failed ? json_string(status_failed_message(view)) : json_null());
    json_object_set_new(node, "dir", json_string(view->dir));
    if (view->opened) {
        status_json_node_log(node, status);
    }
    return node;
}

/* The primary named in tandem.conf; a standalone node is its own. */
static const char *status_primary(const struct status_view *view)
{
    return view->conf.primary[0] != '\0' ? view->conf.primary : view->conf.id;
}

static int status_print_json(const struct status_view *view)
{
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_integer(STATUS_SCHEMA));
    json_object_set_new(root, "cluster", json_string(view->conf.cluster));
    json_object_set_new(root, "health", json_string(status_health_name(view->health)));
    json_object_set_new(root, "primary", json_string(status_primary(view)));
    json_object_set_new(root, "epoch",
                        json_integer(view->opened ? (json_int_t)view->status.epoch : 0));
    json_t *nodes = json_array();
    json_array_append_new(nodes, status_json_node(view));
    json_object_set_new(root, "nodes", nodes);
    char *text = json_dumps(root, 0);
    json_decref(root);
    if (text == NULL) {
        tdm_cmd_fail("status: format JSON: %s", tandem_strerror(-ENOMEM));
        return -ENOMEM;
    }
    puts(text);
    free(text);
    return 0;
}

/* "81.2 MiB": bytes for a human. */
static void status_bytes_human(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double value = (double)bytes;
    size_t unit = 0;
    while (value >= 1024.0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
        value /= 1024.0;
        unit++;
    }
    if (unit == 0) {
        snprintf(buf, size, "%llu bytes", (unsigned long long)bytes);
    } else {
        snprintf(buf, size, "%.1f %s", value, units[unit]);
    }
}

static void status_print_health(const struct status_view *view)
{
    const struct tandem_status *status = &view->status;
    switch (view->health) {
    case STATUS_HEALTHY:
        printf("health      HEALTHY\n");
        break;
    case STATUS_DEGRADED:
        printf("health      DEGRADED: %u damaged range%s in the log; repair from a replica\n",
               status->damaged_count, status->damaged_count == 1 ? "" : "s");
        break;
    case STATUS_BROKEN:
        printf("health      BROKEN: %s%s\n", view->opened ? "writes stopped: " : "",
               status_failed_message(view));
        break;
    }
    printf("cluster     %s    primary %s    epoch %llu\n",
           view->conf_found ? view->conf.cluster : "? (no tandem.conf)",
           view->conf_found ? status_primary(view) : "?",
           (unsigned long long)(view->opened ? status->epoch : 0));
}

static void status_print_nodes(const struct status_view *view)
{
    const struct tandem_status *status = &view->status;
    bool failed = status_failed(view);
    char last[24] = "-";
    if (view->opened) {
        snprintf(last, sizeof(last), "%llu", (unsigned long long)status->lsn_last);
    }
    printf("\n%-12s %-8s %6s %12s %12s %12s %8s  %-5s %s\n", "NODE", "ROLE", "EPOCH", "LAST_LSN",
           "DURABLE_LSN", "VERIFIED_LSN", "LAG", "LINK", "DIR");
    printf("%-12s %-8s %6llu %12s %12s %12s %8s  %-5s %s\n",
           view->conf.id[0] != '\0' ? view->conf.id : "?", failed ? "failed" : "primary",
           (unsigned long long)(view->opened ? status->epoch : 0), last, last, "-", "0",
           view->opened ? "up" : "down", view->dir);
}

static void status_print_log(const struct status_view *view)
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
    status_chain_hash_hex(status, hex, sizeof(hex));
    printf("chain hash  %s at lsn %llu\n", hex, (unsigned long long)status->lsn_last);
    status_bytes_human(status->quarantine_bytes, size, sizeof(size));
    if (status->quarantine_count == 0) {
        printf("quarantine  empty\n");
    } else {
        printf("quarantine  %u file%s, %s (cut from the log tail; kept for inspection)\n",
               status->quarantine_count, status->quarantine_count == 1 ? "" : "s", size);
    }
}

static void status_print_damaged(const struct tandem_status *status)
{
    uint32_t count = status->damaged_count;
    if (count > TANDEM_STATUS_DAMAGED_MAX) {
        count = TANDEM_STATUS_DAMAGED_MAX;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct tandem_damage *damage = &status->damaged[i];
        /* Segment files are named by their first LSN (docs/FORMAT.md "Node directory"). */
        printf("damaged     log/%020llu.seg offset %llu: lsn %llu..%llu (%s)\n",
               (unsigned long long)damage->segment_lsn, (unsigned long long)damage->offset,
               (unsigned long long)damage->lsn_first, (unsigned long long)damage->lsn_last,
               damage->sealed ? "sealed segment" : "open segment");
    }
    if (status->damaged_count > count) {
        printf("damaged     ... and %u more\n", status->damaged_count - count);
    }
}

static void status_print_text(const struct status_view *view)
{
    status_print_health(view);
    status_print_nodes(view);
    if (view->opened) {
        status_print_log(view);
        status_print_damaged(&view->status);
    }
}

int tdm_cmd_status(int argc, char **argv)
{
    const char *addr = NULL;
    bool json = false;
    bool watch = false;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},
        {"json", false, NULL, &json},
        {"watch", false, NULL, &watch},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    const char *dir;
    exit_status = tdm_cmd_node_dir("status", addr, &dir);
    if (exit_status >= 0) {
        return exit_status;
    }
    bool redraw = watch && !json && isatty(STDOUT_FILENO);
    for (;;) {
        struct status_view view = {.dir = dir};
        status_collect(&view);
        if (redraw) {
            fputs("\033[H\033[2J", stdout);
        }
        if (json) {
            if (status_print_json(&view) != 0) {
                return TDM_CMD_EXIT_USAGE;
            }
        } else {
            status_print_text(&view);
        }
        fflush(stdout);
        if (!view.opened) {
            tdm_cmd_fail("status: %s", view.open_error);
        }
        if (!watch) {
            return status_exit(view.health);
        }
        if (!json && !redraw) {
            putchar('\n');
        }
        struct timespec pause = {.tv_sec = STATUS_WATCH_INTERVAL_S, .tv_nsec = 0};
        nanosleep(&pause, NULL);
    }
}
