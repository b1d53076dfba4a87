/* tools/status_doc.c: the status document (tools/status_doc.h), with Jansson.
 *
 * 1. The caller fills a view: tandem.conf, and tandem_status() of an open
 *    handle (or why the node could not be opened); tdm_status_judge() sets the
 *    health.
 * 2. tdm_status_json() writes the document of DESIGN "Public contracts" (schema
 *    1) plus the log's details under the node object.
 * 3. tdm_status_parse() reads that document back (the CLI, when tandemd
 *    answered STATUS), so that the text view is printed from the same fields.
 * Until replication exists the cluster as the node sees it is the node itself:
 * a standalone primary, verified_lsn 0, no lag, link up.
 * Failure modes: -ENOMEM from Jansson; a document that is not ours is
 * TANDEM_ECORRUPT. */
#include "status_doc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/assert.h"
#include "jsonl.h"

#define STATUS_SCHEMA   1
#define STATUS_NS_PER_S 1000000000

/* Damage or divergence (docs/PROTOCOL.md §9): ranges no verified copy
 * holds, damage the background scrubber found, a known mismatch. */
static const char *status_integrity_problem(const struct tdm_status_view *view, char *reason,
                                            size_t size)
{
    const struct tdm_uv_cluster_view *cluster = &view->cluster;
    if (cluster->repair.lost_count > 0) {
        snprintf(reason, size,
                 "LOST: %u damaged range%s that no verified copy holds intact (see \"LOST\" below)",
                 cluster->repair.lost_count, cluster->repair.lost_count == 1 ? "" : "s");
        return reason;
    }
    if (cluster->scrub.damaged_count > 0) {
        snprintf(reason, size, "scrub found %u damaged range%s in sealed segments",
                 cluster->scrub.damaged_count, cluster->scrub.damaged_count == 1 ? "" : "s");
        return reason;
    }
    for (uint32_t i = 0; i < cluster->node_count; i++) {
        const struct tdm_uv_node_view *node = &cluster->nodes[i];
        if (node->divergent_first != 0) {
            snprintf(reason, size,
                     "node %s: its copy differs from the primary's from lsn %llu (first "
                     "divergent batch lsn %llu..%llu)",
                     node->id, (unsigned long long)node->divergent_first,
                     (unsigned long long)node->divergent_first,
                     (unsigned long long)node->divergent_last);
            return reason;
        }
    }
    return NULL;
}

/* A copy this node compares unverified longer than the bound (counted from
 * when this node started, at the earliest). */
static const char *status_unverified_problem(const struct tdm_status_view *view, char *reason,
                                             size_t size)
{
    const struct tdm_uv_cluster_view *cluster = &view->cluster;
    for (uint32_t i = 0; i < cluster->node_count; i++) {
        const struct tdm_uv_node_view *node = &cluster->nodes[i];
        if (!node->verify_known) {
            continue;
        }
        int64_t since =
            node->verified_at_ns > cluster->started_ns ? node->verified_at_ns : cluster->started_ns;
        int64_t bound_ns = (int64_t)cluster->unverified_bound_s * STATUS_NS_PER_S;
        if (cluster->now_ns - since > bound_ns) {
            snprintf(reason, size, "node %s: unverified for %.0f s (bound %u s)", node->id,
                     (double)(cluster->now_ns - since) / STATUS_NS_PER_S,
                     cluster->unverified_bound_s);
            return reason;
        }
    }
    return NULL;
}

const char *tdm_status_verify_problem(const struct tdm_status_view *view, char *reason, size_t size)
{
    if (!view->replicated) {
        return NULL;
    }
    const char *problem = status_integrity_problem(view, reason, size);
    return problem != NULL ? problem : status_unverified_problem(view, reason, size);
}

/* A node whose link is not live, that lags, or whose role is failed. */
static const char *status_node_problem(const struct tdm_status_view *view, char *reason,
                                       size_t size)
{
    for (uint32_t i = 0; i < view->cluster.node_count; i++) {
        const struct tdm_uv_node_view *node = &view->cluster.nodes[i];
        if (strcmp(node->role, "failed") == 0) {
            snprintf(reason, size, "node %s: failed (writes stopped there)", node->id);
            return reason;
        }
        if (!node->self && strcmp(node->link, "live") != 0) {
            snprintf(reason, size, "node %s: link %s", node->id, node->link);
            return reason;
        }
        if (node->lag_ms > TDM_STATUS_LAG_MS_DEGRADED) {
            snprintf(reason, size, "node %s: %.1f s behind the primary", node->id,
                     (double)node->lag_ms / 1000.0);
            return reason;
        }
    }
    return NULL;
}

const char *tdm_status_degraded_reason(const struct tdm_status_view *view, char *reason,
                                       size_t size)
{
    const char *problem = NULL;
    if (view->replicated) {
        problem = status_integrity_problem(view, reason, size);
        problem = problem != NULL ? problem : status_node_problem(view, reason, size);
        problem = problem != NULL ? problem : status_unverified_problem(view, reason, size);
    }
    if (problem == NULL) {
        snprintf(reason, size, "see the nodes below");
    }
    return reason;
}

void tdm_status_judge(struct tdm_status_view *view)
{
    tdm_assert(view != NULL);
    if (!view->opened || view->status.failed_code != 0 || view->stopped ||
        (view->replicated && strcmp(view->cluster.role, "failed") == 0)) {
        view->health = TDM_STATUS_BROKEN;
    } else if (view->status.damaged_count > 0) {
        view->health = TDM_STATUS_DEGRADED;
    } else {
        view->health = TDM_STATUS_HEALTHY;
    }
    if (view->health != TDM_STATUS_HEALTHY || !view->replicated) {
        return;
    }
    /* Degraded exactly when tdm_status_degraded_reason() names a problem. */
    char reason[TDM_STATUS_REASON_SIZE];
    if (status_node_problem(view, reason, sizeof(reason)) != NULL ||
        tdm_status_verify_problem(view, reason, sizeof(reason)) != NULL) {
        view->health = TDM_STATUS_DEGRADED;
    }
}

const char *tdm_status_health_name(enum tdm_status_health health)
{
    switch (health) {
    case TDM_STATUS_HEALTHY:
        return "healthy";
    case TDM_STATUS_DEGRADED:
        return "degraded";
    case TDM_STATUS_BROKEN:
        return "broken";
    }
    tdm_unreachable();
}

bool tdm_status_failed(const struct tdm_status_view *view)
{
    return !view->opened || view->status.failed_code != 0 || view->stopped;
}

const char *tdm_status_failed_message(const struct tdm_status_view *view)
{
    if (!view->opened) {
        return view->open_error;
    }
    if (view->stopped) {
        return "no tandemd runs for this replicated node: it is unreachable and writes nothing "
               "(start tandemd DIR)";
    }
    if (view->status.failed_message[0] != '\0') {
        return view->status.failed_message;
    }
    return tandem_strerror(view->status.failed_code);
}

void tdm_status_chain_hash_hex(const struct tandem_status *status, char *hex, size_t size)
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
    tdm_status_chain_hash_hex(status, hex, sizeof(hex));
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

/* An RFC 3339 time, or null for 0 (never). */
static json_t *status_json_time(int64_t time_ns)
{
    if (time_ns == 0) {
        return json_null();
    }
    char text[40];
    tdm_time_format(time_ns, text, sizeof(text));
    return json_string(text);
}

/* Verification fields of a node object: verified_lsn, verified_at,
 * verified_age_seconds, mismatches (docs/OPERATIONS.md "Verification"). A
 * copy this node does not compare has 0 and nulls. */
static void status_json_verified(json_t *object, const struct tdm_uv_node_view *node,
                                 int64_t now_ns)
{
    bool at = node->verify_known && node->verified_at_ns != 0;
    json_object_set_new(object, "verified_lsn", json_integer((json_int_t)node->verified_lsn));
    json_object_set_new(object, "verified_at", status_json_time(at ? node->verified_at_ns : 0));
    json_object_set_new(
        object, "verified_age_seconds",
        at ? json_real((double)(now_ns > node->verified_at_ns ? now_ns - node->verified_at_ns : 0) /
                       STATUS_NS_PER_S)
           : json_null());
    json_object_set_new(object, "verified_known", json_boolean(node->verify_known));
    json_t *divergent =
        node->divergent_first == 0
            ? json_null()
            : json_pack("{s:I, s:I}", "lsn_first", (json_int_t)node->divergent_first, "lsn_last",
                        (json_int_t)node->divergent_last);
    json_object_set_new(object, "mismatches",
                        json_pack("{s:I, s:o, s:b}", "found", (json_int_t)node->mismatches_found,
                                  "first_divergent", divergent, "bisecting", node->bisecting));
}

/* The background scrubber of this node (net/uv_scrub.h); bytes_total is the log's. */
static json_t *status_json_scrub(const struct tdm_uv_scrub_view *scrub, uint64_t bytes_total)
{
    json_t *damaged = json_array();
    uint32_t listed = scrub->damaged_count < TDM_UV_SCRUB_DAMAGED_MAX ? scrub->damaged_count
                                                                      : TDM_UV_SCRUB_DAMAGED_MAX;
    for (uint32_t i = 0; i < listed; i++) {
        const struct tandem_damage *damage = &scrub->damaged[i];
        json_array_append_new(damaged, json_pack("{s:I, s:I, s:I, s:I}", "segment",
                                                 (json_int_t)damage->segment_lsn, "offset",
                                                 (json_int_t)damage->offset, "lsn_first",
                                                 (json_int_t)damage->lsn_first, "lsn_last",
                                                 (json_int_t)damage->lsn_last));
    }
    json_t *object = json_object();
    json_object_set_new(object, "enabled", json_boolean(scrub->enabled));
    json_object_set_new(object, "running", json_boolean(scrub->running));
    json_object_set_new(object, "bytes_done", json_integer((json_int_t)scrub->bytes_done));
    json_object_set_new(object, "bytes_total", json_integer((json_int_t)bytes_total));
    json_object_set_new(object, "segment",
                        scrub->segment_lsn != 0 ? json_integer((json_int_t)scrub->segment_lsn)
                                                : json_null());
    json_object_set_new(object, "pass_started", status_json_time(scrub->pass_started_ns));
    json_object_set_new(object, "last_full_pass", status_json_time(scrub->last_full_pass_ns));
    json_object_set_new(object, "passes", json_integer((json_int_t)scrub->passes));
    json_object_set_new(object, "damaged", json_integer(scrub->damaged_count));
    json_object_set_new(object, "damaged_ranges", damaged);
    json_object_set_new(object, "error",
                        scrub->error[0] != '\0' ? json_string(scrub->error) : json_null());
    return object;
}

/* Repairs from verified copies on this node (net/uv_repair.h). */
static json_t *status_json_repair(const struct tdm_uv_repair_view *repair)
{
    json_t *lost = json_array();
    uint32_t listed =
        repair->lost_count < TDM_UV_REPAIR_LOST_MAX ? repair->lost_count : TDM_UV_REPAIR_LOST_MAX;
    for (uint32_t i = 0; i < listed; i++) {
        const struct tdm_uv_repair_lost *l = &repair->lost[i];
        json_array_append_new(lost, json_pack("{s:I, s:I, s:I, s:s}", "segment",
                                              (json_int_t)l->segment_lsn, "lsn_first",
                                              (json_int_t)l->lsn_first, "lsn_last",
                                              (json_int_t)l->lsn_last, "reason", l->reason));
    }
    json_t *object = json_object();
    json_object_set_new(object, "enabled", json_boolean(repair->enabled));
    json_object_set_new(object, "repaired", json_integer((json_int_t)repair->repaired));
    json_object_set_new(object, "fetches_served", json_integer((json_int_t)repair->fetches_served));
    json_object_set_new(
        object, "active",
        repair->active
            ? json_pack("{s:I, s:I, s:I, s:b}", "segment", (json_int_t)repair->active_segment,
                        "lsn_first", (json_int_t)repair->active_lsn_first, "lsn_last",
                        (json_int_t)repair->active_lsn_last, "waiting", repair->waiting)
            : json_null());
    json_object_set_new(object, "lost", json_integer(repair->lost_count));
    json_object_set_new(object, "lost_ranges", lost);
    return object;
}

/* The node object of a replicated node's cluster entry i. */
static json_t *status_json_peer(const struct tdm_uv_node_view *node, int64_t now_ns)
{
    json_t *object = json_object();
    json_object_set_new(object, "id", json_string(node->id));
    json_object_set_new(object, "role", json_string(node->role));
    json_object_set_new(object, "epoch", json_integer((json_int_t)node->epoch));
    json_object_set_new(object, "last_lsn", json_integer((json_int_t)node->last_lsn));
    json_object_set_new(object, "durable_lsn", json_integer((json_int_t)node->durable_lsn));
    status_json_verified(object, node, now_ns);
    json_object_set_new(object, "lag",
                        json_pack("{s:I, s:I, s:f}", "records", (json_int_t)node->lag_records,
                                  "bytes", (json_int_t)node->lag_bytes, "seconds",
                                  (double)node->lag_ms / 1000.0));
    json_object_set_new(object, "link", json_string(node->self || node->link_up ? "up" : "down"));
    json_object_set_new(object, "link_state", json_string(node->link));
    json_object_set_new(object, "self", json_boolean(node->self));
    return object;
}

static json_t *status_json_self(const struct tdm_status_view *view, bool failed);

/* A replicated node: every node of the cluster, this one with its log details. */
static json_t *status_json_cluster_node(const struct tdm_status_view *view, json_t *self)
{
    json_t *nodes = json_array();
    for (uint32_t i = 0; i < view->cluster.node_count; i++) {
        const struct tdm_uv_node_view *node = &view->cluster.nodes[i];
        json_t *object = status_json_peer(node, view->cluster.now_ns);
        if (node->self) {
            json_object_update(object, self);
            json_object_set_new(object, "role",
                                json_string(tdm_status_failed(view) ? "failed" : node->role));
        }
        json_array_append_new(nodes, object);
    }
    json_decref(self);
    return nodes;
}

/* The self fields beyond the cluster entry's: state, failure, dir, log. */
static json_t *status_json_self(const struct tdm_status_view *view, bool failed)
{
    json_t *node = json_object();
    json_object_set_new(node, "state", json_string(failed ? "failed" : "ok"));
    json_object_set_new(node, "failed",
                        failed ? json_string(tdm_status_failed_message(view)) : json_null());
    json_object_set_new(node, "dir", json_string(view->dir));
    if (view->opened) {
        status_json_node_log(node, &view->status);
    }
    json_object_set_new(node, "scrub",
                        status_json_scrub(&view->cluster.scrub, view->status.log_bytes));
    json_object_set_new(node, "repair", status_json_repair(&view->cluster.repair));
    return node;
}

static json_t *status_json_node(const struct tdm_status_view *view)
{
    const struct tandem_status *status = &view->status;
    tdm_assert(view->health >= TDM_STATUS_HEALTHY);
    bool failed = tdm_status_failed(view);
    tdm_assert(!failed || view->health == TDM_STATUS_BROKEN);
    if (view->replicated) {
        return status_json_cluster_node(view, status_json_self(view, failed));
    }
    uint64_t lsn_last = view->opened ? status->lsn_last : 0;
    json_t *node = json_object();
    json_object_set_new(node, "id", json_string(view->conf.id));
    json_object_set_new(node, "role",
                        json_string(view->stopped ? "stopped"
                                    : failed      ? "failed"
                                                  : "primary"));
    json_object_set_new(node, "epoch", json_integer(view->opened ? (json_int_t)status->epoch : 0));
    json_object_set_new(node, "last_lsn", json_integer((json_int_t)lsn_last));
    json_object_set_new(node, "durable_lsn", json_integer((json_int_t)lsn_last));
    /* A standalone node has no other copy to compare: nothing is verified. */
    struct tdm_uv_node_view alone;
    memset(&alone, 0, sizeof(alone));
    status_json_verified(node, &alone, 0);
    json_object_set_new(node, "lag",
                        json_pack("{s:i, s:i, s:f}", "records", 0, "bytes", 0, "seconds", 0.0));
    json_object_set_new(node, "link", json_string(view->opened && !view->stopped ? "up" : "down"));
    json_object_set_new(node, "self", json_true());
    json_object_set_new(node, "state", json_string(failed ? "failed" : "ok"));
    json_object_set_new(node, "failed",
                        failed ? json_string(tdm_status_failed_message(view)) : json_null());
    json_object_set_new(node, "dir", json_string(view->dir));
    if (view->opened) {
        status_json_node_log(node, status);
    }
    struct tdm_uv_scrub_view no_scrub;
    memset(&no_scrub, 0, sizeof(no_scrub)); /* The background scrubber runs in tandemd only. */
    json_object_set_new(node, "scrub", status_json_scrub(&no_scrub, status->log_bytes));
    return node;
}

/* The primary named in tandem.conf; a standalone node is its own. */
const char *tdm_status_primary(const struct tdm_status_view *view)
{
    if (view->replicated) {
        return view->cluster.primary;
    }
    return view->conf.primary[0] != '\0' ? view->conf.primary : view->conf.id;
}

const char *tdm_status_health_reason(const struct tdm_status_view *view, char *reason, size_t size)
{
    const struct tandem_status *status = &view->status;
    switch (view->health) {
    case TDM_STATUS_HEALTHY:
        return NULL;
    case TDM_STATUS_DEGRADED:
        if (status->damaged_count > 0) {
            /* What to do differs: docs/OPERATIONS.md "Damage", steps 3 and 4. */
            snprintf(reason, size, "%u damaged range%s in the log; %s (docs/OPERATIONS.md Damage)",
                     status->damaged_count, status->damaged_count == 1 ? "" : "s",
                     view->replicated ? "tandemd repairs sealed segments from a verified copy"
                                      : "restore the segment file from a backup copy");
            return reason;
        }
        return tdm_status_degraded_reason(view, reason, size);
    case TDM_STATUS_BROKEN:
        snprintf(reason, size, "%s%s", view->opened && !view->stopped ? "writes stopped: " : "",
                 tdm_status_failed_message(view));
        return reason;
    }
    tdm_unreachable();
}

int tdm_status_json(const struct tdm_status_view *view, char **out)
{
    tdm_assert(view->health >= TDM_STATUS_HEALTHY);
    tdm_assert(out != NULL);
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_integer(STATUS_SCHEMA));
    json_object_set_new(root, "cluster", json_string(view->conf.cluster));
    json_object_set_new(root, "health", json_string(tdm_status_health_name(view->health)));
    char reason[TDM_STATUS_REASON_SIZE];
    const char *why = tdm_status_health_reason(view, reason, sizeof(reason));
    json_object_set_new(root, "health_reason", why != NULL ? json_string(why) : json_null());
    json_object_set_new(root, "primary", json_string(tdm_status_primary(view)));
    json_object_set_new(root, "epoch",
                        json_integer(view->replicated ? (json_int_t)view->cluster.epoch
                                     : view->opened   ? (json_int_t)view->status.epoch
                                                      : 0));
    json_object_set_new(root, "self", json_string(view->conf.id));
    if (view->replicated) {
        json_object_set_new(root, "role", json_string(view->cluster.role));
        json_object_set_new(root, "min_copies", json_integer(view->cluster.min_copies));
        json_object_set_new(root, "commit_lsn", json_integer((json_int_t)view->cluster.commit_lsn));
        json_object_set_new(root, "writes_in_flight", json_integer(view->cluster.writes_in_flight));
        json_object_set_new(root, "time", status_json_time(view->cluster.now_ns));
        json_object_set_new(root, "unverified_bound_s",
                            json_integer(view->cluster.unverified_bound_s));
        json_object_set_new(root, "nodes", status_json_node(view));
    } else {
        json_t *nodes = json_array();
        json_array_append_new(nodes, status_json_node(view));
        json_object_set_new(root, "nodes", nodes);
    }
    char *text = json_dumps(root, 0);
    json_decref(root);
    if (text == NULL) {
        return -ENOMEM;
    }
    *out = text;
    return 0;
}

static uint64_t status_get_u64(json_t *object, const char *key)
{
    json_t *value = json_object_get(object, key);
    return json_is_integer(value) ? (uint64_t)json_integer_value(value) : 0;
}

static void status_get_string(json_t *object, const char *key, char *out, size_t size)
{
    const char *text = json_string_value(json_object_get(object, key));
    snprintf(out, size, "%s", text != NULL ? text : "");
}

static void status_parse_hex(const char *hex, uint8_t *out, size_t size)
{
    for (size_t i = 0; i < size && hex[2 * i] != '\0' && hex[2 * i + 1] != '\0'; i++) {
        unsigned byte = 0;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
            return;
        }
        out[i] = (uint8_t)byte;
    }
}

static void status_parse_damaged(json_t *node, struct tandem_status *status)
{
    json_t *damaged = json_object_get(node, "damaged");
    size_t index;
    json_t *damage;
    json_array_foreach(damaged, index, damage)
    {
        if (index >= TANDEM_STATUS_DAMAGED_MAX) {
            break;
        }
        status->damaged[index].segment_lsn = status_get_u64(damage, "segment");
        status->damaged[index].offset = status_get_u64(damage, "offset");
        status->damaged[index].lsn_first = status_get_u64(damage, "lsn_first");
        status->damaged[index].lsn_last = status_get_u64(damage, "lsn_last");
        status->damaged[index].sealed = json_is_true(json_object_get(damage, "sealed"));
    }
}

/* The node object's log fields (status_json_node_log) back into status. */
static void status_parse_node(json_t *node, struct tdm_status_view *view, char *dir_storage)
{
    struct tandem_status *status = &view->status;
    status_get_string(node, "id", view->conf.id, sizeof(view->conf.id));
    status_get_string(node, "dir", dir_storage, TDM_CMD_PATH_SIZE);
    view->dir = dir_storage;
    view->opened = strcmp(json_string_value(json_object_get(node, "link")) != NULL
                              ? json_string_value(json_object_get(node, "link"))
                              : "",
                          "up") == 0;
    status->lsn_last = status_get_u64(node, "last_lsn");
    status->lsn_first = status_get_u64(node, "lsn_first");
    status->index_lsn = status_get_u64(node, "index_lsn");
    status->segment_count = (uint32_t)status_get_u64(node, "segments");
    status->sealed_count = (uint32_t)status_get_u64(node, "sealed_segments");
    status->log_bytes = status_get_u64(node, "log_bytes");
    json_t *quarantine = json_object_get(node, "quarantine");
    status->quarantine_count = (uint32_t)status_get_u64(quarantine, "files");
    status->quarantine_bytes = status_get_u64(quarantine, "bytes");
    status->damaged_count = (uint32_t)status_get_u64(node, "damaged_count");
    status_parse_damaged(node, status);
    const char *hex = json_string_value(json_object_get(node, "chain_hash"));
    if (hex != NULL) {
        status_parse_hex(hex, status->chain_hash, sizeof(status->chain_hash));
    }
    const char *failed = json_string_value(json_object_get(node, "failed"));
    if (failed != NULL && view->opened) {
        status->failed_code = TANDEM_EFAILED;
        snprintf(status->failed_message, sizeof(status->failed_message), "%s", failed);
    } else if (failed != NULL) {
        snprintf(view->open_error, sizeof(view->open_error), "%s", failed);
    }
}

/* An RFC 3339 time of the document back into ns; 0 for null or none. */
static int64_t status_get_time(json_t *object, const char *key)
{
    const char *text = json_string_value(json_object_get(object, key));
    int64_t time_ns = 0;
    if (text == NULL || tdm_time_parse(text, strlen(text), &time_ns) != 0) {
        return 0;
    }
    return time_ns;
}

/* The verification fields of a node object (status_json_verified) back. */
static void status_parse_verified(json_t *entry, struct tdm_uv_node_view *node)
{
    node->verify_known = json_is_true(json_object_get(entry, "verified_known"));
    node->verified_lsn = status_get_u64(entry, "verified_lsn");
    node->verified_at_ns = status_get_time(entry, "verified_at");
    json_t *mismatches = json_object_get(entry, "mismatches");
    node->mismatches_found = status_get_u64(mismatches, "found");
    node->bisecting = json_is_true(json_object_get(mismatches, "bisecting"));
    json_t *divergent = json_object_get(mismatches, "first_divergent");
    node->divergent_first = status_get_u64(divergent, "lsn_first");
    node->divergent_last = status_get_u64(divergent, "lsn_last");
}

static void status_parse_scrub(json_t *scrub, struct tdm_uv_scrub_view *view)
{
    view->enabled = json_is_true(json_object_get(scrub, "enabled"));
    view->running = json_is_true(json_object_get(scrub, "running"));
    view->bytes_done = status_get_u64(scrub, "bytes_done");
    view->segment_lsn = status_get_u64(scrub, "segment");
    view->pass_started_ns = status_get_time(scrub, "pass_started");
    view->last_full_pass_ns = status_get_time(scrub, "last_full_pass");
    view->passes = status_get_u64(scrub, "passes");
    view->damaged_count = (uint32_t)status_get_u64(scrub, "damaged");
    status_get_string(scrub, "error", view->error, sizeof(view->error));
    size_t index;
    json_t *damage;
    json_array_foreach(json_object_get(scrub, "damaged_ranges"), index, damage)
    {
        if (index >= TDM_UV_SCRUB_DAMAGED_MAX) {
            break;
        }
        view->damaged[index].segment_lsn = status_get_u64(damage, "segment");
        view->damaged[index].offset = status_get_u64(damage, "offset");
        view->damaged[index].lsn_first = status_get_u64(damage, "lsn_first");
        view->damaged[index].lsn_last = status_get_u64(damage, "lsn_last");
        view->damaged[index].sealed = true;
    }
}

static void status_parse_repair(json_t *repair, struct tdm_uv_repair_view *view)
{
    view->enabled = json_is_true(json_object_get(repair, "enabled"));
    view->repaired = status_get_u64(repair, "repaired");
    view->fetches_served = status_get_u64(repair, "fetches_served");
    json_t *active = json_object_get(repair, "active");
    view->active = json_is_object(active);
    view->active_segment = status_get_u64(active, "segment");
    view->active_lsn_first = status_get_u64(active, "lsn_first");
    view->active_lsn_last = status_get_u64(active, "lsn_last");
    view->waiting = json_is_true(json_object_get(active, "waiting"));
    view->lost_count = (uint32_t)status_get_u64(repair, "lost");
    size_t index;
    json_t *lost;
    json_array_foreach(json_object_get(repair, "lost_ranges"), index, lost)
    {
        if (index >= TDM_UV_REPAIR_LOST_MAX) {
            break;
        }
        view->lost[index].segment_lsn = status_get_u64(lost, "segment");
        view->lost[index].lsn_first = status_get_u64(lost, "lsn_first");
        view->lost[index].lsn_last = status_get_u64(lost, "lsn_last");
        status_get_string(lost, "reason", view->lost[index].reason,
                          sizeof(view->lost[index].reason));
    }
}

/* A replicated node's cluster view back from the document. */
static void status_parse_cluster(json_t *root, json_t *nodes, struct tdm_status_view *view)
{
    struct tdm_uv_cluster_view *cluster = &view->cluster;
    view->replicated = true;
    status_get_string(root, "role", cluster->role, sizeof(cluster->role));
    status_get_string(root, "primary", cluster->primary, sizeof(cluster->primary));
    cluster->epoch = status_get_u64(root, "epoch");
    cluster->min_copies = (uint32_t)status_get_u64(root, "min_copies");
    cluster->commit_lsn = status_get_u64(root, "commit_lsn");
    cluster->writes_in_flight = (uint32_t)status_get_u64(root, "writes_in_flight");
    cluster->now_ns = status_get_time(root, "time");
    cluster->unverified_bound_s = (uint32_t)status_get_u64(root, "unverified_bound_s");
    size_t index;
    json_t *entry;
    json_array_foreach(nodes, index, entry)
    {
        if (index >= TDM_UV_NODES_MAX) {
            break;
        }
        struct tdm_uv_node_view *node = &cluster->nodes[index];
        status_get_string(entry, "id", node->id, sizeof(node->id));
        status_get_string(entry, "role", node->role, sizeof(node->role));
        status_get_string(entry, "link_state", node->link, sizeof(node->link));
        node->self = json_is_true(json_object_get(entry, "self"));
        node->epoch = status_get_u64(entry, "epoch");
        node->last_lsn = status_get_u64(entry, "last_lsn");
        node->durable_lsn = status_get_u64(entry, "durable_lsn");
        json_t *lag = json_object_get(entry, "lag");
        node->lag_records = status_get_u64(lag, "records");
        node->lag_bytes = status_get_u64(lag, "bytes");
        json_t *seconds = json_object_get(lag, "seconds");
        node->lag_ms =
            json_is_number(seconds) ? (uint64_t)(json_number_value(seconds) * 1000.0) : 0;
        const char *link = json_string_value(json_object_get(entry, "link"));
        node->link_up = link != NULL && strcmp(link, "up") == 0;
        status_parse_verified(entry, node);
        if (node->self) {
            status_parse_scrub(json_object_get(entry, "scrub"), &cluster->scrub);
            status_parse_repair(json_object_get(entry, "repair"), &cluster->repair);
        }
        cluster->node_count = (uint32_t)index + 1;
    }
}

int tdm_status_parse(const char *text, size_t size, struct tdm_status_view *view, char *dir_storage)
{
    tdm_assert(text != NULL);
    tdm_assert(dir_storage != NULL);
    memset(view, 0, sizeof(*view));
    json_error_t error;
    json_t *root = json_loadb(text, size, 0, &error);
    json_t *nodes = json_object_get(root, "nodes");
    json_t *node = json_array_get(nodes, 0);
    size_t index;
    json_t *entry;
    json_array_foreach(nodes, index, entry)
    {
        if (json_is_true(json_object_get(entry, "self"))) {
            node = entry;
        }
    }
    if (root == NULL || status_get_u64(root, "schema") != STATUS_SCHEMA || !json_is_object(node)) {
        json_decref(root);
        return TANDEM_ECORRUPT;
    }
    view->conf_found = true;
    status_get_string(root, "cluster", view->conf.cluster, sizeof(view->conf.cluster));
    status_get_string(root, "primary", view->conf.primary, sizeof(view->conf.primary));
    view->status.epoch = status_get_u64(root, "epoch");
    status_parse_node(node, view, dir_storage);
    if (json_is_string(json_object_get(root, "role"))) {
        status_parse_cluster(root, nodes, view);
    }
    const char *health = json_string_value(json_object_get(root, "health"));
    view->health = TDM_STATUS_BROKEN;
    if (health != NULL && strcmp(health, "healthy") == 0) {
        view->health = TDM_STATUS_HEALTHY;
    } else if (health != NULL && strcmp(health, "degraded") == 0) {
        view->health = TDM_STATUS_DEGRADED;
    }
    json_decref(root);
    return 0;
}
