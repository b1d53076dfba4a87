/* net/uv_daemon.c: a replicated node on one libuv loop (net/uv.h,
 * tdm_uv_serve_replicated): the local client socket (net/uv_server.c), the
 * replication adapter (net/uv_node.c) and, on the node's listen address, both
 * its peers' links and TLS clients.
 *
 * Happy path:
 * 1. tdm_uv_cluster_check() the settings; load the TLS credentials; resolve
 *    every HOST:PORT (getaddrinfo, once, at start); sort the node ids into the
 *    cluster's indexes (PROTOCOL.md §2).
 * 2. tdm_uv_serve() with hooks: once the local socket serves, start the
 *    replication adapter on the same loop with this node's listen address, the
 *    peers' addresses and the primary of epoch 1.
 * 3. Appends on the local socket and from TLS clients are submitted to the
 *    adapter (tdm_uv_node_submit): the answer comes when the write is
 *    acknowledged (durable on min_copies nodes) or has failed (its deadline).
 * 4. Status requests get a struct tdm_uv_cluster_view taken on the loop thread.
 * 5. SIGTERM (or tdm_uv_serve_stop() of the caller's control): the server
 *    answers what is in flight (the adapter still runs, so appends complete),
 *    then the adapter closes its links, then the loop ends.
 *
 * Failure modes: a bad setting, unreadable credentials or an address that does
 * not resolve fail the start with a diag naming it; a listen address in use
 * likewise. A client link that the server cannot adopt is closed. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/trace.h"
#include "net/replica.h"
#include "net/risk.h"
#include "net/tls.h"
#include "net/uv.h"
#include "net/uv_link.h"
#include "net/uv_node.h"
#include "net/uv_repair.h"
#include "net/uv_scrub.h"

tdm_static_assert(TDM_UV_NODES_MAX == TDM_REPLICA_NODES_MAX);
tdm_static_assert(TDM_UV_NAME_SIZE_MAX == TDM_PROTO_NAME_SIZE_MAX);

/* Replica timers (PROTOCOL.md §6): a heartbeat every 100 ms measures lag; a
 * range is resent after 1 s without progress; a HELLO is repeated after 2 s. */
#define DAEMON_HEARTBEAT_MS  100u
#define DAEMON_RETRANSMIT_MS 1000u
#define DAEMON_HANDSHAKE_MS  2000u
/* Operator commands (PROTOCOL.md §7.5): the answer comes at the latest this
 * long after the request (the replica's own bounds, §8.5, are 2 s each); a
 * switchover's DONE is answered once the new primary acts (it sent START
 * here), waiting at most DAEMON_ACTING_MS for that. */
#define DAEMON_COMMAND_MS      15000u
#define DAEMON_ACTING_MS       5000u
#define DAEMON_COMMAND_POLL_MS 5u
#define DAEMON_ANSWER_SIZE     (64u * 1024)
/* The LSNs at risk beyond this node's own copy are counted in the copy of
 * the node that answered the probe with the highest durable LSN, fetched
 * with FETCH (PROTOCOL.md §7.5, §9.4) under ids of their own (this bit set:
 * never the repairer's), for at most this long in all. */
#define DAEMON_RISK_FETCH_BIT ((uint64_t)1 << 63)
#define DAEMON_RISK_FETCH_MS  3000u

struct daemon;
struct daemon_risk;

/* A SWITCHOVER or FAILOVER waiting for its outcome (PROTOCOL.md §7.5). */
struct daemon_command {
    struct daemon_command *next;
    uint64_t request_id; /* The daemon's, given to the replica. */
    bool failover;
    uint32_t target_index; /* As asked; TDM_SWITCHOVER_NEXT for "next". */
    uint64_t deadline_ms;  /* uv_now() bound on the answer. */
    bool decided;          /* A final report came (in report). */
    uint64_t acting_deadline_ms;
    struct tdm_report report;
    struct daemon_risk *risk; /* A dry run's count of the LSNs at risk, once begun. */
    tdm_uv_command_done_cb done;
    void *done_data;
};

struct daemon {
    struct tdm_uv_server_config server_config; /* With submit and snapshot set. */
    const struct tdm_uv_cluster_config *cluster;
    tdm_uv_status_cb status; /* The caller's. */
    void *status_data;
    struct tdm_tls_config tls;
    struct tdm_frame_cluster frame_cluster;
    uint32_t primary_index;
    struct sockaddr_storage addresses[TDM_UV_NODES_MAX]; /* By index. */
    uv_loop_t *loop;
    struct tdm_uv_server *server;
    struct tdm_uv_node *node;
    struct tdm_uv_scrub *scrub;      /* NULL if it could not start. */
    struct tdm_uv_repair *repair;    /* NULL: not running ([verification] repair = off). */
    int64_t started_ns;              /* UTC when the adapter started. */
    struct daemon_command *commands; /* Waiting for their outcome. */
    uint64_t command_next_id;
    uint64_t risk_fetch_next_id; /* Of the dry runs' FETCHes (DAEMON_RISK_FETCH_BIT added). */
    uv_timer_t command_timer;    /* Polls commands while any waits. */
    bool command_timer_open;
};

/* One append in flight through the adapter. */
struct daemon_write {
    tdm_uv_submit_done_cb done;
    void *done_data;
    struct daemon *daemon;
};

static bool name_valid(const char *name)
{
    size_t size = strlen(name);
    if (size == 0 || size > TDM_UV_NAME_SIZE_MAX) {
        return false;
    }
    for (size_t i = 0; i < size; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Split "HOST:PORT" or "[IPv6]:PORT". Returns true and host, port. */
static bool addr_split(const char *addr, char *host, size_t host_size, char *port, size_t port_size)
{
    const char *colon;
    const char *host_start = addr;
    size_t host_length;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':') {
            return false;
        }
        host_start = addr + 1;
        host_length = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return false;
        }
        host_length = (size_t)(colon - addr);
    }
    if (host_length == 0 || host_length >= host_size) {
        return false;
    }
    const char *digits = colon + 1;
    size_t digit_count = strlen(digits);
    if (digit_count == 0 || digit_count > 5 || digit_count >= port_size) {
        return false;
    }
    unsigned long value = 0;
    for (size_t i = 0; i < digit_count; i++) {
        if (digits[i] < '0' || digits[i] > '9') {
            return false;
        }
        value = value * 10 + (unsigned long)(digits[i] - '0');
    }
    if (value == 0 || value > 65535) {
        return false;
    }
    memcpy(host, host_start, host_length);
    host[host_length] = '\0';
    snprintf(port, port_size, "%s", digits);
    return true;
}

int tdm_uv_cluster_check(const struct tdm_uv_cluster_config *cluster, struct tdm_diag *diag)
{
    if (!name_valid(cluster->cluster)) {
        tdm_diag_printf(diag, "[node] cluster '%s': use 1-63 letters, digits, '.', '_' or '-'",
                        cluster->cluster);
        return TANDEM_EINVALID;
    }
    if (cluster->node_count < 1 || cluster->node_count > TDM_UV_NODES_MAX) {
        tdm_diag_printf(diag, "%" PRIu32 " nodes: a cluster has 1 to %d", cluster->node_count,
                        TDM_UV_NODES_MAX);
        return TANDEM_EINVALID;
    }
    bool self_found = false;
    bool primary_found = false;
    for (uint32_t i = 0; i < cluster->node_count; i++) {
        const struct tdm_uv_cluster_node *node = &cluster->nodes[i];
        char host[TDM_UV_ADDR_SIZE_MAX + 1];
        char port[8];
        if (!name_valid(node->id)) {
            tdm_diag_printf(diag, "node id '%s': use 1-63 letters, digits, '.', '_' or '-'",
                            node->id);
            return TANDEM_EINVALID;
        }
        if (!addr_split(node->addr, host, sizeof(host), port, sizeof(port))) {
            tdm_diag_printf(diag, "%s '%s': expected HOST:PORT (port 1-65535; IPv6 as [::1]:7000)",
                            strcmp(node->id, cluster->self_id) == 0 ? "[replication] listen"
                                                                    : "[replication] peer",
                            node->addr);
            return TANDEM_EINVALID;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(cluster->nodes[j].id, node->id) == 0) {
                tdm_diag_printf(diag, "node id '%s' given twice", node->id);
                return TANDEM_EINVALID;
            }
        }
        self_found = self_found || strcmp(node->id, cluster->self_id) == 0;
        primary_found = primary_found || strcmp(node->id, cluster->primary) == 0;
    }
    if (!self_found) {
        tdm_diag_printf(diag, "[replication] listen is not set for this node (%s)",
                        cluster->self_id);
        return TANDEM_EINVALID;
    }
    if (!primary_found) {
        tdm_diag_printf(diag, "[replication] primary '%s': not this node nor any peer",
                        cluster->primary);
        return TANDEM_EINVALID;
    }
    if (cluster->min_copies < 1 || cluster->min_copies > cluster->node_count) {
        tdm_diag_printf(diag,
                        "[replication] min_copies %" PRIu32 ": must be 1 to the %" PRIu32
                        " nodes of the cluster",
                        cluster->min_copies, cluster->node_count);
        return TANDEM_EINVALID;
    }
    if (cluster->write_deadline_ms < 1 ||
        cluster->write_deadline_ms > TDM_REPLICA_WRITE_DEADLINE_MS_MAX) {
        tdm_diag_printf(diag, "[replication] write_deadline_ms %" PRIu64 ": must be 1 to %d",
                        cluster->write_deadline_ms, TDM_REPLICA_WRITE_DEADLINE_MS_MAX);
        return TANDEM_EINVALID;
    }
    if (cluster->rotation_count > cluster->node_count) {
        tdm_diag_printf(diag, "[replication] rotation: %" PRIu32 " ids for %" PRIu32 " nodes",
                        cluster->rotation_count, cluster->node_count);
        return TANDEM_EINVALID;
    }
    for (uint32_t i = 0; i < cluster->rotation_count; i++) {
        bool known = false;
        for (uint32_t j = 0; j < cluster->node_count; j++) {
            known = known || strcmp(cluster->nodes[j].id, cluster->rotation[i]) == 0;
        }
        if (!known) {
            tdm_diag_printf(diag, "[replication] rotation: '%s' is not this node nor any peer",
                            cluster->rotation[i]);
            return TANDEM_EINVALID;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(cluster->rotation[j], cluster->rotation[i]) == 0) {
                tdm_diag_printf(diag, "[replication] rotation: '%s' given twice",
                                cluster->rotation[i]);
                return TANDEM_EINVALID;
            }
        }
    }
    return 0;
}

/* Resolve addr into *out (the first answer). Returns 0 or TANDEM_EINVALID. */
static int addr_resolve(const char *what, const char *addr, struct sockaddr_storage *out,
                        struct tdm_diag *diag)
{
    char host[TDM_UV_ADDR_SIZE_MAX + 1];
    char port[8];
    if (!addr_split(addr, host, sizeof(host), port, sizeof(port))) {
        tdm_diag_printf(diag, "%s '%s': expected HOST:PORT", what, addr);
        return TANDEM_EINVALID;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *result = NULL;
    int rv = getaddrinfo(host, port, &hints, &result);
    if (rv != 0 || result == NULL) {
        tdm_diag_printf(diag, "tandem.conf: %s '%s': %s", what, addr, gai_strerror(rv));
        return TANDEM_EINVALID;
    }
    tdm_assert(result->ai_addrlen <= sizeof(*out));
    memset(out, 0, sizeof(*out));
    memcpy(out, result->ai_addr, result->ai_addrlen);
    freeaddrinfo(result);
    return 0;
}

/* Step 1: indexes (sorted ids), addresses, credentials. */
static int daemon_prepare(struct daemon *d, struct tdm_diag *diag)
{
    const struct tdm_uv_cluster_config *cluster = d->cluster;
    int rv = tdm_uv_cluster_check(cluster, diag);
    if (rv != 0) {
        return rv;
    }
    struct tdm_frame_cluster *fc = &d->frame_cluster;
    memset(fc, 0, sizeof(*fc));
    snprintf(fc->name, sizeof(fc->name), "%s", cluster->cluster);
    fc->node_count = cluster->node_count;
    uint32_t order[TDM_UV_NODES_MAX];
    for (uint32_t i = 0; i < cluster->node_count; i++) {
        order[i] = i;
    }
    for (uint32_t i = 1; i < cluster->node_count; i++) { /* Insertion sort by id. */
        for (uint32_t j = i;
             j > 0 && strcmp(cluster->nodes[order[j - 1]].id, cluster->nodes[order[j]].id) > 0;
             j--) {
            uint32_t swap = order[j];
            order[j] = order[j - 1];
            order[j - 1] = swap;
        }
    }
    for (uint32_t index = 0; index < cluster->node_count; index++) {
        const struct tdm_uv_cluster_node *node = &cluster->nodes[order[index]];
        snprintf(fc->node_ids[index], sizeof(fc->node_ids[index]), "%s", node->id);
        bool self = strcmp(node->id, cluster->self_id) == 0;
        if (self) {
            fc->self_index = index;
        }
        if (strcmp(node->id, cluster->primary) == 0) {
            d->primary_index = index;
        }
        rv = addr_resolve(self ? "[replication] listen" : "[replication] peer", node->addr,
                          &d->addresses[index], diag);
        if (rv != 0) {
            return rv;
        }
    }
    tdm_assert(tdm_frame_cluster_valid(fc));
    return tdm_tls_config_init(&d->tls, cluster->tls_key, cluster->tls_cert, cluster->tls_ca, diag);
}

/* ---- Appends and status, for the server --------------------------------------------- */

static void daemon_write_cb(void *data, int status, uint64_t lsn_first, uint64_t lsn_last)
{
    struct daemon_write *write = data;
    (void)lsn_last;
    char message[TANDEM_DIAG_SIZE];
    message[0] = '\0';
    if (status == TANDEM_ECOPIES) {
        snprintf(message, sizeof(message),
                 "not acknowledged: fewer than min_copies=%" PRIu32
                 " nodes held the write durably within the write deadline (%" PRIu64
                 " ms); it may still be stored",
                 write->daemon->cluster->min_copies, write->daemon->cluster->write_deadline_ms);
    } else if (status == TANDEM_ECANCELED) {
        snprintf(message, sizeof(message), "not acknowledged: the node is stopping");
    }
    write->done(write->done_data, status, lsn_first, message);
    tdm_free(write);
}

static int daemon_submit(void *data, const struct tandem_record *records, size_t count,
                         tdm_uv_submit_done_cb done, void *done_data, struct tdm_diag *diag)
{
    struct daemon *d = data;
    struct daemon_write *write = tdm_malloc(sizeof(*write));
    if (write == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    *write = (struct daemon_write){.done = done, .done_data = done_data, .daemon = d};
    int rv = tdm_uv_node_submit(d->node, records, count, daemon_write_cb, write, diag);
    if (rv != 0) {
        tdm_free(write);
    }
    return rv;
}

static const char *link_name(enum tdm_link_state link)
{
    switch (link) {
    case TDM_LINK_DOWN:
        return "down";
    case TDM_LINK_UP:
    case TDM_LINK_STARTED:
        return "handshake";
    case TDM_LINK_SYNCING:
        return "syncing";
    case TDM_LINK_LIVE:
        return "live";
    }
    return "down";
}

static int64_t daemon_wall_ns(void)
{
    struct timespec ts;
    int rv = clock_gettime(CLOCK_REALTIME, &ts);
    tdm_assert(rv == 0);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Verification and scrub (docs/PROTOCOL.md §9) for the status document. The
 * replica knows the LSNs, the adapter the wall times of DIR/verified. */
static void daemon_snapshot_verify(struct daemon *d, const struct tdm_replica_status *status,
                                   struct tdm_uv_cluster_view *view)
{
    view->now_ns = daemon_wall_ns();
    view->started_ns = d->started_ns;
    view->unverified_bound_s = d->cluster->unverified_bound_s != 0
                                   ? d->cluster->unverified_bound_s
                                   : TDM_UV_UNVERIFIED_BOUND_S_DEFAULT;
    tdm_uv_scrub_view(d->scrub, &view->scrub);
    tdm_uv_repair_view(d->repair, &view->repair);
    uint32_t self = status->self_index;
    bool primary = status->primary_index == self;
    for (uint32_t i = 0; i < status->node_count; i++) {
        const struct tdm_replica_node_status *n = &status->nodes[i];
        struct tdm_uv_node_view *v = &view->nodes[i];
        v->verify_known = n->verify_known;
        v->verified_lsn = n->verified_lsn;
        v->mismatches_found = n->mismatches_found;
        v->divergent_first = n->divergent_first;
        v->divergent_last = n->divergent_last;
        v->bisecting = n->bisecting;
        if (!n->verify_known) {
            continue;
        }
        /* The time of the claim behind the LSN: a backup's own (on the primary
         * of each backup, on a backup for itself and its primary); the
         * primary's copy is as fresh as its freshest backup's. */
        uint64_t lsn = 0;
        int64_t at_ns = 0;
        if (primary && i == self) {
            for (uint32_t j = 0; j < status->node_count; j++) {
                if (j != self) {
                    tdm_uv_node_verified(d->node, j, &lsn, &at_ns);
                    v->verified_at_ns = at_ns > v->verified_at_ns ? at_ns : v->verified_at_ns;
                }
            }
        } else {
            tdm_uv_node_verified(d->node, primary ? i : self, &lsn, &at_ns);
            v->verified_at_ns = at_ns;
        }
    }
}

static void daemon_snapshot(void *data, void *snapshot)
{
    struct daemon *d = data;
    struct tdm_uv_cluster_view *view = snapshot;
    struct tdm_replica_status status;
    tdm_uv_node_status(d->node, &status);
    memset(view, 0, sizeof(*view));
    snprintf(view->role, sizeof(view->role), "%s", tdm_replica_role_name(status.role));
    view->epoch = status.epoch;
    snprintf(view->primary, sizeof(view->primary), "%s",
             d->frame_cluster.node_ids[status.primary_index]);
    view->commit_lsn = status.commit_lsn;
    view->min_copies = d->cluster->min_copies;
    view->writes_in_flight = status.writes_in_flight;
    view->node_count = status.node_count;
    for (uint32_t i = 0; i < status.node_count; i++) {
        const struct tdm_replica_node_status *n = &status.nodes[i];
        struct tdm_uv_node_view *v = &view->nodes[i];
        snprintf(v->id, sizeof(v->id), "%s", d->frame_cluster.node_ids[i]);
        v->self = i == status.self_index;
        snprintf(v->role, sizeof(v->role), "%s", tdm_replica_role_name(n->role));
        v->epoch = n->epoch;
        v->last_lsn = n->last_lsn;
        v->durable_lsn = n->durable_lsn;
        v->lag_records = n->lag_records;
        v->lag_bytes = n->lag_size;
        v->lag_ms = n->lag_ms;
        v->link_up = n->link_up;
        snprintf(v->link, sizeof(v->link), "%s",
                 v->self ? "up" : (n->link_up ? link_name(n->link) : "down"));
    }
    daemon_snapshot_verify(d, &status, view);
}

static int daemon_status(void *data, struct tandem *t, const void *snapshot, char **out,
                         size_t *size)
{
    struct daemon *d = data;
    return d->status(d->status_data, t, snapshot, out, size);
}

/* ---- Operator commands: switchover, failover (PROTOCOL.md §7.5) --------------------- */

/* The answer's "refusal" tokens (stable, for scripts); "reason" carries
 * tdm_replica_refusal_name()'s sentence. */
static const char *const command_refusal_tokens[TDM_REFUSAL__COUNT] = {
    [TDM_REFUSAL_NOT_PRIMARY] = "not_primary",
    [TDM_REFUSAL_NOT_BACKUP] = "not_backup",
    [TDM_REFUSAL_IN_PROGRESS] = "in_progress",
    [TDM_REFUSAL_BUSY] = "busy",
    [TDM_REFUSAL_TARGET_UNKNOWN] = "target_unknown",
    [TDM_REFUSAL_TARGET_SELF] = "target_self",
    [TDM_REFUSAL_NO_TARGET] = "no_target",
    [TDM_REFUSAL_TARGET_DOWN] = "target_down",
    [TDM_REFUSAL_TARGET_LAGGING] = "target_lagging",
    [TDM_REFUSAL_UNACKNOWLEDGED] = "unacknowledged",
    [TDM_REFUSAL_TARGET_DIVERGED] = "target_diverged",
    [TDM_REFUSAL_TARGET_TIMEOUT] = "target_timeout",
    [TDM_REFUSAL_PRIMARY_ALIVE] = "primary_alive",
    [TDM_REFUSAL_UNREACHABLE] = "unreachable",
    [TDM_REFUSAL_NOT_HIGHEST] = "not_highest",
    [TDM_REFUSAL_SINGLE_COPY] = "single_copy",
    [TDM_REFUSAL_STATE_CHANGED] = "state_changed",
    [TDM_REFUSAL_EPOCH_AHEAD] = "epoch_ahead",
    [TDM_REFUSAL_HIGHER_EPOCH] = "higher_epoch",
    [TDM_REFUSAL_FAILED] = "failed",
    [TDM_REFUSAL_TARGET_UNVERIFIED] = "target_unverified",
};

static const char *command_refusal_token(uint32_t refusal)
{
    return refusal < TDM_REFUSAL__COUNT && command_refusal_tokens[refusal] != NULL
               ? command_refusal_tokens[refusal]
               : "unknown";
}

/* Bytes appended to a fixed answer buffer; truncation is caught by the caller. */
struct daemon_text {
    char *data;
    size_t size;
    size_t used;
};

static void text_add(struct daemon_text *text, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void text_add(struct daemon_text *text, const char *format, ...)
{
    if (text->used + 1 >= text->size) {
        return;
    }
    va_list args;
    va_start(args, format);
    int n = vsnprintf(text->data + text->used, text->size - text->used, format, args);
    va_end(args);
    text->used += n > 0 ? (size_t)n : 0;
    if (text->used >= text->size) {
        text->used = text->size - 1;
    }
}

/* A dry run's count of the LSNs at risk (net/risk.h), and its FETCHes. */
struct daemon_risk {
    struct tdm_risk count;
    uint64_t own_lsn_last;   /* Counted in this node's own copy through here; 0: none. */
    uint32_t from_index;     /* The node whose copy counts past ours; node_count: none. */
    uint64_t fetch_id;       /* A FETCH in flight, or 0. */
    uint64_t fetch_deadline; /* uv_now() bound on all the FETCHes. */
    char error[160];         /* Why the count in from_index's copy stopped short, or "". */
};

static int risk_record_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    (void)lsn;
    tdm_risk_count(data, record);
    return 0;
}

/* Ask risk->from_index for the LSNs from the next one to count on. */
static void risk_fetch(struct daemon *d, struct daemon_risk *risk)
{
    struct tdm_replica_status status;
    tdm_uv_node_status(d->node, &status);
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (msg == NULL) {
        snprintf(risk->error, sizeof(risk->error), "out of memory");
        return;
    }
    risk->fetch_id = DAEMON_RISK_FETCH_BIT | ++d->risk_fetch_next_id;
    msg->type = TDM_PROTO_FETCH;
    msg->epoch = status.epoch;
    msg->fetch.fetch_id = risk->fetch_id;
    msg->fetch.lsn_first = risk->count.next_lsn;
    msg->fetch.lsn_last = risk->count.count_last;
    struct tdm_diag diag = {{0}};
    if (tdm_uv_node_send(d->node, risk->from_index, msg, &diag) != 0) {
        risk->fetch_id = 0;
        snprintf(risk->error, sizeof(risk->error), "%s", diag.message);
    }
    tdm_free(msg);
}

/* Begin a dry run's count of the LSNs at risk (DESIGN: it names "how many
 * records of which customers"): those in this node's own copy at once, the
 * rest in the copy of the answered node with the highest durable LSN, by
 * FETCH; the answer waits for them (command_timer_cb). Returns NULL if out
 * of memory (the answer then has no count). */
static struct daemon_risk *risk_begin(struct daemon *d, const struct tdm_report *report)
{
    struct daemon_risk *risk = tdm_calloc(1, sizeof(*risk));
    if (risk == NULL) {
        return NULL;
    }
    struct tdm_risk *count = &risk->count;
    tdm_risk_init(count, report->risk_lsn_first, report->risk_lsn_last);
    risk->from_index = d->frame_cluster.node_count;
    struct tandem_status st;
    uint64_t own_last = 0;
    if (tandem_status(d->server_config.t, &st) == 0) {
        own_last = st.lsn_last < count->count_last ? st.lsn_last : count->count_last;
    }
    while (count->next_lsn <= own_last) {
        struct tandem_diag diag = {{0}};
        uint64_t lsn = count->next_lsn;
        if (tandem_read(d->server_config.t, lsn, risk_record_cb, count, &diag) != 0 ||
            count->next_lsn == lsn) {
            break; /* Not readable here: the rest is counted elsewhere, or not at all. */
        }
    }
    risk->own_lsn_last = count->next_lsn > count->lsn_first ? count->next_lsn - 1 : 0;
    if (count->next_lsn > count->count_last) {
        return risk;
    }
    if (report->outcome != TDM_OUTCOME_DRY_RUN) {
        /* Forced: the nodes ahead are fenced now, and cut those LSNs. */
        snprintf(risk->error, sizeof(risk->error),
                 "counted only by a dry run: a node ahead cuts them into its quarantine when "
                 "fenced (tandem quarantine)");
        return risk;
    }
    uint64_t best = 0;
    for (uint32_t i = 0; i < report->node_count && i < d->frame_cluster.node_count; i++) {
        const struct tdm_report_node *n = &report->nodes[i];
        if (i != d->frame_cluster.self_index && n->answered && n->durable_lsn >= count->next_lsn &&
            n->durable_lsn > best) {
            best = n->durable_lsn;
            risk->from_index = i;
        }
    }
    if (risk->from_index < d->frame_cluster.node_count) {
        risk->fetch_deadline = uv_now(d->loop) + DAEMON_RISK_FETCH_MS;
        risk_fetch(d, risk);
    }
    return risk;
}

/* FETCHED for a dry run's count (the id has DAEMON_RISK_FETCH_BIT). */
static void risk_fetched(struct daemon *d, uint32_t index, const struct tdm_proto_fetched *f)
{
    struct daemon_risk *risk = NULL;
    for (struct daemon_command *c = d->commands; c != NULL; c = c->next) {
        if (c->risk != NULL && c->risk->fetch_id == f->fetch_id && c->risk->from_index == index) {
            risk = c->risk;
        }
    }
    if (risk == NULL) {
        return; /* Late: its command was answered. */
    }
    risk->fetch_id = 0;
    const char *node = d->frame_cluster.node_ids[index];
    if (f->status != 0) {
        snprintf(risk->error, sizeof(risk->error), "%s answered %s", node,
                 tandem_strerror(f->status));
        return;
    }
    struct tdm_risk *count = &risk->count;
    uint64_t before = count->next_lsn;
    for (uint32_t i = 0; i < f->batch_count && count->next_lsn <= count->count_last; i++) {
        struct tdm_diag diag = {{0}};
        if (tdm_risk_count_batch(count, f->batches[i].data, f->batches[i].size, &diag) != 0) {
            snprintf(risk->error, sizeof(risk->error), "%s sent a bad batch: %s", node,
                     diag.message);
            tdm_tracef("failover dry run: %s", risk->error);
            return;
        }
    }
    if (count->next_lsn <= count->count_last) {
        if (count->next_lsn == before) {
            snprintf(risk->error, sizeof(risk->error), "%s sent no batch of LSN %" PRIu64, node,
                     count->next_lsn);
            return;
        }
        risk_fetch(d, risk); /* The rest: a FETCHED carries at most 16 batches. */
    }
}

/* The count of the records at risk in the answer (DESIGN: a dry run names
 * "how many records of which customers"). */
static void command_risk(struct daemon *d, const struct daemon_command *c, struct daemon_text *text)
{
    const struct tdm_report *report = &c->report;
    const struct daemon_risk *risk = c->risk;
    if (risk == NULL) {
        text_add(text,
                 ", \"risk\": {\"lsn_first\": %" PRIu64 ", \"lsn_last\": %" PRIu64
                 ", \"counted_lsn_last\": 0, \"own_lsn_last\": 0, \"records_counted\": 0"
                 ", \"counted_in\": null, \"count_error\": \"out of memory\""
                 ", \"unknown_lsn_first\": %" PRIu64
                 ", \"customers\": [], \"other_customers_records\": 0}",
                 report->risk_lsn_first, report->risk_lsn_last, report->risk_lsn_first);
        return;
    }
    const struct tdm_risk *count = &risk->count;
    uint64_t counted_last = count->next_lsn > count->lsn_first ? count->next_lsn - 1 : 0;
    bool fetched = risk->from_index < d->frame_cluster.node_count &&
                   count->next_lsn > risk->own_lsn_last + 1 && count->next_lsn > count->lsn_first;
    text_add(text,
             ", \"risk\": {\"lsn_first\": %" PRIu64 ", \"lsn_last\": %" PRIu64
             ", \"counted_lsn_last\": %" PRIu64 ", \"own_lsn_last\": %" PRIu64
             ", \"records_counted\": %" PRIu64 ", \"counted_in\": %s%s%s",
             count->lsn_first, count->lsn_last, counted_last, risk->own_lsn_last, count->records,
             fetched ? "\"" : "", fetched ? d->frame_cluster.node_ids[risk->from_index] : "null",
             fetched ? "\"" : "");
    if (risk->error[0] != '\0') {
        text_add(text, ", \"count_error\": \"");
        for (const char *p = risk->error; *p != '\0'; p++) { /* JSON: no quotes, no controls. */
            text_add(text, "%c", *p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ? '\'' : *p);
        }
        text_add(text, "\"");
    } else if (count->next_lsn <= count->lsn_last) {
        text_add(text, ", \"count_error\": \"%s\"",
                 count->next_lsn <= count->count_last ? "no answered node holds them"
                                                      : "beyond the count's bound");
    } else {
        text_add(text, ", \"count_error\": null");
    }
    text_add(text, ", \"unknown_lsn_first\": %" PRIu64 ", \"customers\": [",
             count->next_lsn <= count->lsn_last ? count->next_lsn : 0);
    uint32_t order[TDM_RISK_CUSTOMERS_MAX];
    tdm_risk_order(count, order);
    for (uint32_t i = 0; i < count->customer_count; i++) {
        text_add(text, "%s{\"customer_id\": %" PRIu32 ", \"records\": %" PRIu64 "}",
                 i == 0 ? "" : ", ", count->customers[order[i]], count->customer_records[order[i]]);
    }
    text_add(text, "], \"other_customers_records\": %" PRIu64 "}", count->other_records);
}

/* The answer document of a decided command (PROTOCOL.md §7.5). */
static void command_answer_text(struct daemon *d, const struct daemon_command *c, bool acting,
                                struct daemon_text *text)
{
    const struct tdm_report *r = &c->report;
    struct tdm_replica_status status;
    tdm_uv_node_status(d->node, &status);
    char line[512];
    tdm_uv_node_report_line(d->node, r, line, sizeof(line));
    text_add(text, "{\"command\": \"%s\", \"node\": \"%s\", \"outcome\": \"%s\"",
             c->failover ? "failover" : "switchover",
             d->frame_cluster.node_ids[d->frame_cluster.self_index],
             tdm_replica_outcome_name(r->outcome));
    if (r->refusal != 0) {
        text_add(text, ", \"refusal\": \"%s\", \"reason\": \"%s\"",
                 command_refusal_token(r->refusal), tdm_replica_refusal_name(r->refusal));
    } else {
        text_add(text, ", \"refusal\": null, \"reason\": null");
    }
    if (r->node_index < d->frame_cluster.node_count) {
        text_add(text, ", \"refusal_node\": \"%s\"", d->frame_cluster.node_ids[r->node_index]);
    } else {
        text_add(text, ", \"refusal_node\": null");
    }
    if (r->target_index < d->frame_cluster.node_count) {
        text_add(text, ", \"target\": \"%s\"", d->frame_cluster.node_ids[r->target_index]);
    } else {
        text_add(text, ", \"target\": null");
    }
    text_add(text,
             ", \"primary\": \"%s\", \"current_epoch\": %" PRIu64
             ", \"acting\": %s, \"epoch\": %" PRIu64 ", \"lsn\": %" PRIu64
             ", \"pause_ms\": %" PRIu64,
             d->frame_cluster.node_ids[status.primary_index], status.epoch,
             acting ? "true" : "false", r->epoch, r->lsn, r->pause_ms);
    if (c->failover) {
        text_add(text, ", \"nodes\": [");
        for (uint32_t i = 0; i < r->node_count && i < d->frame_cluster.node_count; i++) {
            const struct tdm_report_node *n = &r->nodes[i];
            text_add(text,
                     "%s{\"id\": \"%s\", \"answered\": %s, \"role\": \"%s\", \"epoch\": %" PRIu64
                     ", \"last_epoch\": %" PRIu64 ", \"last_lsn\": %" PRIu64
                     ", \"durable_lsn\": %" PRIu64 ", \"commit_lsn\": %" PRIu64
                     ", \"primary_seen\": %s, \"refusal\": %s%s%s}",
                     i == 0 ? "" : ", ", d->frame_cluster.node_ids[i],
                     n->answered ? "true" : "false",
                     n->answered ? tdm_replica_role_name((enum tdm_role)n->role) : "unknown",
                     n->epoch, n->last_epoch, n->last_lsn, n->durable_lsn, n->commit_lsn,
                     n->primary_seen ? "true" : "false", n->refusal != 0 ? "\"" : "",
                     n->refusal != 0 ? command_refusal_token(n->refusal) : "null",
                     n->refusal != 0 ? "\"" : "");
        }
        text_add(text, "]");
        if (r->risk_lsn_first != 0) {
            command_risk(d, c, text);
        } else {
            text_add(text, ", \"risk\": null");
        }
    }
    text_add(text, ", \"message\": \"%s\"}", line);
}

static void command_timer_closed(uv_handle_t *handle)
{
    (void)handle;
}

/* Answer c (unlinked by the caller) and free it. */
static void command_answer(struct daemon *d, struct daemon_command *c, bool acting)
{
    struct daemon_text text = {.data = tdm_malloc(DAEMON_ANSWER_SIZE), .size = DAEMON_ANSWER_SIZE};
    if (text.data == NULL) {
        c->done(c->done_data, -ENOMEM, "out of memory");
    } else if (!c->decided) {
        snprintf(text.data, text.size,
                 "no outcome within %u s: see tandem status and the node's trace",
                 DAEMON_COMMAND_MS / 1000);
        c->done(c->done_data, -ETIMEDOUT, text.data);
    } else {
        command_answer_text(d, c, acting, &text);
        if (text.used + 1 >= text.size) {
            c->done(c->done_data, -ENOBUFS, "answer too large");
        } else {
            c->done(c->done_data, 0, text.data);
        }
    }
    tdm_free(text.data);
    tdm_free(c->risk);
    tdm_free(c);
}

/* The new primary acts, as far as this node can tell. */
static bool command_acting(struct daemon *d, const struct daemon_command *c)
{
    struct tdm_replica_status status;
    tdm_uv_node_status(d->node, &status);
    const struct tdm_report *r = &c->report;
    if (c->failover || r->outcome != TDM_OUTCOME_DONE) {
        return status.role == TDM_ROLE_PRIMARY;
    }
    return status.role == TDM_ROLE_BACKUP && status.primary_index == r->target_index &&
           status.epoch >= r->epoch && r->target_index < status.node_count &&
           status.nodes[r->target_index].link >= TDM_LINK_SYNCING;
}

static void command_timer_cb(uv_timer_t *timer)
{
    struct daemon *d = timer->data;
    uint64_t now = uv_now(d->loop);
    struct daemon_command **link = &d->commands;
    while (*link != NULL) {
        struct daemon_command *c = *link;
        bool answer = false;
        bool acting = false;
        if (!c->decided) {
            answer = now >= c->deadline_ms;
        } else if (!c->failover && c->report.outcome == TDM_OUTCOME_DONE) {
            acting = command_acting(d, c);
            answer = acting || now >= c->acting_deadline_ms;
        } else if (c->failover && c->report.risk_lsn_first != 0 && c->risk == NULL) {
            c->risk = risk_begin(d, &c->report);
            answer = c->risk == NULL || c->risk->fetch_id == 0;
            acting = answer && command_acting(d, c);
        } else if (c->risk != NULL && c->risk->fetch_id != 0 && now < c->risk->fetch_deadline) {
            answer = false; /* The count waits for its FETCHED. */
        } else {
            if (c->risk != NULL && c->risk->fetch_id != 0) {
                snprintf(c->risk->error, sizeof(c->risk->error), "%s did not answer within %u ms",
                         d->frame_cluster.node_ids[c->risk->from_index], DAEMON_RISK_FETCH_MS);
                c->risk->fetch_id = 0;
            }
            acting = command_acting(d, c);
            answer = true;
        }
        if (answer) {
            *link = c->next;
            command_answer(d, c, acting);
        } else {
            link = &c->next;
        }
    }
    if (d->commands == NULL) {
        uv_timer_stop(&d->command_timer);
    }
}

static void command_timer_arm(struct daemon *d, uint64_t timeout)
{
    uv_timer_start(&d->command_timer, command_timer_cb, timeout, DAEMON_COMMAND_POLL_MS);
}

/* tdm_uv_node_report_cb: a command's report (inside the node's step: the
 * answer is left to the timer, which runs after it). */
static void daemon_report(void *data, const struct tdm_report *report)
{
    struct daemon *d = data;
    for (struct daemon_command *c = d->commands; c != NULL; c = c->next) {
        if (c->request_id != report->request_id || c->decided) {
            continue;
        }
        if (report->outcome == TDM_OUTCOME_STARTED) {
            return;
        }
        c->report = *report;
        c->decided = true;
        c->acting_deadline_ms = uv_now(d->loop) + DAEMON_ACTING_MS;
        command_timer_arm(d, 0);
        return;
    }
}

/* tdm_uv_command_cb. */
static int daemon_command(void *data, bool failover, const char *target, uint32_t flags,
                          tdm_uv_command_done_cb done, void *done_data, struct tdm_diag *diag)
{
    struct daemon *d = data;
    const struct tdm_frame_cluster *fc = &d->frame_cluster;
    uint32_t target_index = TDM_SWITCHOVER_NEXT;
    if (target[0] != '\0') {
        for (uint32_t i = 0; i < fc->node_count; i++) {
            if (strcmp(fc->node_ids[i], target) == 0) {
                target_index = i;
            }
        }
        if (target_index == TDM_SWITCHOVER_NEXT) {
            tdm_diag_printf(diag, "no node '%s' in cluster %s", target, fc->name);
            return TANDEM_EINVALID;
        }
    }
    if (failover && target_index != fc->self_index) {
        tdm_diag_printf(diag,
                        "this is node %s: send the failover to the node it promotes (%s), with "
                        "--node at its address",
                        fc->node_ids[fc->self_index], target);
        return TANDEM_EINVALID;
    }
    if (d->node == NULL) {
        tdm_diag_printf(diag, "replication is stopping");
        return TANDEM_ECANCELED;
    }
    struct daemon_command *c = tdm_calloc(1, sizeof(*c));
    if (c == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    c->request_id = ++d->command_next_id;
    c->failover = failover;
    c->target_index = target_index;
    c->deadline_ms = uv_now(d->loop) + DAEMON_COMMAND_MS;
    c->done = done;
    c->done_data = done_data;
    c->next = d->commands;
    d->commands = c;
    int rv = failover ? tdm_uv_node_failover(d->node, c->request_id,
                                             (flags & TDM_PROTO_FAILOVER_FORCE) != 0,
                                             (flags & TDM_PROTO_FAILOVER_DRY_RUN) != 0)
                      : tdm_uv_node_switchover(d->node, c->request_id, target_index, true);
    if (rv != 0) {
        d->commands = c->next;
        tdm_free(c);
        tdm_diag_printf(diag, "the node cannot take a command now");
        return rv;
    }
    command_timer_arm(d, c->decided ? 0 : DAEMON_COMMAND_POLL_MS);
    return 0;
}

/* ---- The adapter beside the server ------------------------------------------------ */

/* FETCH and FETCHED from a peer (PROTOCOL.md §9.4): the repairer's, but for
 * the FETCHED of a failover dry run's count. */
static void daemon_repair(void *data, uint32_t index, const struct tdm_proto_msg *msg)
{
    struct daemon *d = data;
    if (msg->type == TDM_PROTO_FETCHED && (msg->fetched.fetch_id & DAEMON_RISK_FETCH_BIT) != 0) {
        risk_fetched(d, index, &msg->fetched); /* A failover dry run's count. */
        return;
    }
    tdm_uv_repair_receive(d->repair, index, msg);
}

static bool daemon_client(void *data, struct tdm_uv_link *link)
{
    struct daemon *d = data;
    struct tdm_diag diag = {{0}};
    int rv = tdm_uv_server_adopt(d->server, link, &diag);
    if (rv != 0) {
        tdm_tracef("client %s: refused: %s%s%s", tdm_uv_link_peer_name(link), tandem_strerror(rv),
                   diag.message[0] != '\0' ? ": " : "", diag.message);
        return false;
    }
    return true;
}

static const char *daemon_self_addr(const struct daemon *d)
{
    for (uint32_t i = 0; i < d->cluster->node_count; i++) {
        if (strcmp(d->cluster->nodes[i].id, d->cluster->self_id) == 0) {
            return d->cluster->nodes[i].addr;
        }
    }
    tdm_unreachable();
}

static int daemon_start(void *data, struct uv_loop_s *loop, struct tdm_uv_server *server,
                        struct tdm_diag *diag)
{
    struct daemon *d = data;
    d->loop = loop;
    d->server = server;
    const struct tdm_uv_cluster_config *cluster = d->cluster;
    uint32_t self = d->frame_cluster.self_index;
    struct tdm_uv_node_config config = {
        .dir = cluster->dir,
        .t = d->server_config.t,
        .tls = &d->tls,
        .cluster = d->frame_cluster,
        .listen_address = (const struct sockaddr *)&d->addresses[self],
        .initial_primary_index = d->primary_index,
        .min_copies = cluster->min_copies,
        .write_deadline_ms = cluster->write_deadline_ms,
        .heartbeat_ms = DAEMON_HEARTBEAT_MS,
        .retransmit_ms = DAEMON_RETRANSMIT_MS,
        .handshake_ms = DAEMON_HANDSHAKE_MS,
        .on_client = daemon_client,
        .client_data = d,
        .on_repair = daemon_repair,
        .repair_data = d,
        .verify_interval_ms = cluster->verify_interval_ms,
        .switchover_interval_ms = cluster->switchover_interval_ms,
        .rotation_count = cluster->rotation_count,
        .on_report = daemon_report,
        .report_data = d,
    };
    for (uint32_t i = 0; i < cluster->rotation_count; i++) {
        for (uint32_t j = 0; j < d->frame_cluster.node_count; j++) {
            if (strcmp(cluster->rotation[i], d->frame_cluster.node_ids[j]) == 0) {
                config.rotation[i] = j;
            }
        }
    }
    uv_timer_init(loop, &d->command_timer);
    d->command_timer.data = d;
    d->command_timer_open = true;
    int rv = tdm_uv_node_start(loop, &config, &d->node, diag);
    if (rv != 0) {
        uv_close((uv_handle_t *)&d->command_timer, command_timer_closed);
        d->command_timer_open = false;
        return rv; /* diag names the cause, the listen address included. */
    }
    d->started_ns = daemon_wall_ns();
    struct tdm_diag scrub_diag = {{0}};
    if (tdm_uv_scrub_start(d->server_config.t, cluster->dir, cluster->scrub_bytes_per_second,
                           cluster->scrub_pause_ms, &d->scrub, &scrub_diag) != 0) {
        tdm_tracef("node %s: no background scrub: %s", cluster->self_id, scrub_diag.message);
        d->scrub = NULL;
    }
    if (d->scrub != NULL && !cluster->repair_off &&
        tdm_uv_repair_start(loop, d->server_config.t, d->node, d->scrub, &d->frame_cluster,
                            &d->repair, &scrub_diag) != 0) {
        tdm_tracef("node %s: no repair: %s", cluster->self_id, scrub_diag.message);
        d->repair = NULL;
    }
    for (uint32_t i = 0; i < d->frame_cluster.node_count; i++) {
        if (i != self) {
            tdm_uv_node_peer_address(d->node, i, (const struct sockaddr *)&d->addresses[i]);
        }
    }
    tdm_tracef("node %s of cluster %s: listening on %s, %" PRIu32 " nodes, min_copies %" PRIu32,
               cluster->self_id, cluster->cluster, daemon_self_addr(d), cluster->node_count,
               cluster->min_copies);
    return 0;
}

static void daemon_node_closed(void *data)
{
    struct daemon *d = data;
    d->node = NULL;
    tdm_tracef("replication stopped: links closed");
}

static void daemon_stop(void *data)
{
    struct daemon *d = data;
    tdm_uv_repair_stop(d->repair); /* Frees itself once its jobs ended. */
    d->repair = NULL;
    tdm_uv_scrub_stop(d->scrub); /* Blocks until its pass stops: ~0.1 s. */
    d->scrub = NULL;
    while (d->commands != NULL) { /* None: the server answered all before it closed. */
        struct daemon_command *c = d->commands;
        d->commands = c->next;
        command_answer(d, c, false);
    }
    if (d->command_timer_open) {
        uv_close((uv_handle_t *)&d->command_timer, command_timer_closed);
        d->command_timer_open = false;
    }
    if (d->node != NULL) {
        tdm_uv_node_close(d->node, daemon_node_closed, d);
    }
}

int tdm_uv_serve_replicated(const struct tdm_uv_server_config *server_config,
                            const struct tdm_uv_cluster_config *cluster,
                            struct tdm_uv_serve_control *control, struct tdm_diag *diag)
{
    struct daemon *d = tdm_calloc(1, sizeof(*d));
    if (d == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    d->cluster = cluster;
    d->status = server_config->status;
    d->status_data = server_config->data;
    int rv = daemon_prepare(d, diag);
    if (rv != 0) {
        tdm_free(d);
        return rv;
    }
    d->server_config = *server_config;
    d->server_config.data = d;
    d->server_config.status = daemon_status;
    d->server_config.submit = daemon_submit;
    d->server_config.snapshot = daemon_snapshot;
    d->server_config.snapshot_size = sizeof(struct tdm_uv_cluster_view);
    d->server_config.command = daemon_command;
    struct tdm_uv_serve_hooks hooks = {.start = daemon_start, .stop = daemon_stop, .data = d};
    rv = tdm_uv_serve(&d->server_config, &hooks, control, diag);
    tdm_tls_config_close(&d->tls);
    tdm_free(d);
    return rv;
}
