/* tools/server.c: a node run in this process (include/tandem.h,
 * tandem_server_*): what tandemd does, as a library, so that an application
 * that embeds the engine gets the same replication by linking libtandem, and
 * tandemd (tools/tandemd.c) is a thin user of it.
 *
 * Happy path:
 * 1. tandem_server_start(), on the caller's thread: read DIR/tandem.conf
 *    (inih): [node] cluster and id; for a replicated node (listen or peer.*
 *    set) also [replication] listen, peer.<ID>, primary, min_copies,
 *    write_deadline_ms, switchover_interval, rotation, tls_key, tls_cert,
 *    tls_ca (paths relative to DIR),
 *    and [verification] unverified_bound_s, verify_interval_ms,
 *    scrub_bytes_per_second, scrub_pause_ms, repair (docs/OPERATIONS.md
 *    "Verification"); for every node [log] segment_size,
 *    checked with tdm_uv_cluster_check(). Then create the server's thread
 *    with every signal blocked, and wait until it serves or has failed.
 * 2. The server's thread opens the node for writing (tandem_open: the
 *    directory's lock, recovery), so that the engine's threads inherit its
 *    mask: no signal meant for the application lands on them.
 * 3. It runs tdm_uv_serve() (a standalone node: appends go to
 *    tandem_append_async()) or tdm_uv_serve_replicated() (links, TLS clients,
 *    every append acknowledged at min_copies) on a loop of its own, with a
 *    struct tdm_uv_serve_control instead of signal handlers. Its serving
 *    callback wakes tandem_server_start(), which returns.
 * 4. Status requests get the status document (tools/status_doc.c) and query
 *    answers are JSON Lines (tools/jsonl.c), built on libuv's threadpool.
 * 5. tandem_server_stop(): tdm_uv_serve_stop() wakes the loop, which answers
 *    what is in flight, closes the links and the socket and returns; the
 *    thread closes the node (tandem_close: flush, lock released) and ends;
 *    the caller joins it and frees the server.
 *
 * Failure modes: a missing or bad tandem.conf fails the start on the caller's
 * thread, before any thread exists. An open error, a socket or listen address
 * in use, unreadable credentials: the server's thread closes what it opened,
 * records the code and a one-line diag, and ends; tandem_server_start() joins
 * it and returns them. Nothing is left running after a failed start.
 *
 * Thread: struct tandem_server's configuration is written before the thread
 * starts and only read afterwards; state, rv and diag are shared under mutex.
 * The node (t) is used by the loop thread, libuv's threadpool and the
 * application's readers (tandem.h: struct tandem is thread-safe). */
#include <errno.h>
#include <ini.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/trace.h"
#include "engine/scrub.h"
#include "engine/segment.h"
#include "inspect.h"
#include "verify_doc.h"
#include "jsonl.h"
#include "net/proto.h"
#include "net/uv.h"
#include "status_doc.h"

tdm_static_assert(TANDEM_SERVER_NAME_SIZE == TDM_UV_NAME_SIZE_MAX + 1);
tdm_static_assert(TANDEM_SERVER_NAME_SIZE == TDM_CMD_NAME_SIZE_MAX + 1);
tdm_static_assert(TANDEM_SERVER_ADDR_SIZE == TDM_UV_ADDR_SIZE_MAX + 1);

#define SERVER_SOCKET_NAME     "tandemd.sock"
#define SERVER_BAD_KEY_SIZE    320
#define SERVER_DEADLINE_MS_MAX 60000 /* write_deadline_ms: DESIGN's "at most 60 s". */

/* What the server reads from tandem.conf. */
struct server_conf {
    struct tdm_cmd_conf conf; /* cluster, id, primary. */
    bool replicated;          /* listen or peer.* is set. */
    struct tdm_uv_cluster_config cluster;
    char listen[TDM_UV_ADDR_SIZE_MAX + 1];
    const char *dir; /* The server's dir. */
    bool too_many_peers;
    uint64_t segment_size;             /* [log] segment_size; 0: the engine's default. */
    char bad_key[SERVER_BAD_KEY_SIZE]; /* A [replication] value that does not parse. */
};

enum server_state {
    SERVER_STARTING = 1, /* The thread opens the node and starts serving. */
    SERVER_SERVING,      /* The loop serves; tandem_server_start() returned 0. */
    SERVER_FAILED,       /* The thread failed to start and has ended (rv, diag). */
};

struct tandem_server {
    char dir[TDM_UV_PATH_SIZE];
    char socket_path[TDM_UV_PATH_SIZE + sizeof(SERVER_SOCKET_NAME)];
    struct server_conf conf;
    struct tandem *t; /* Open from step 2 until the thread ends. */
    struct tdm_uv_serve_control *control;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;     /* state left SERVER_STARTING. */
    enum server_state state; /* Under mutex. */
    int rv;                  /* SERVER_FAILED: the code. */
    struct tdm_diag diag;    /* SERVER_FAILED: why. */
};

/* ---- tandem.conf (step 1) ---------------------------------------------------------- */

/* A decimal number in [min, max]. */
static bool server_number(const char *value, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long number = strtoull(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || number < min ||
        number > max) {
        return false;
    }
    *out = number;
    return true;
}

/* A path in tandem.conf: relative to DIR unless absolute. */
static void server_path(const struct server_conf *conf, const char *value, char *out, size_t size)
{
    if (value[0] == '/') {
        snprintf(out, size, "%s", value);
    } else {
        snprintf(out, size, "%s/%s", conf->dir, value);
    }
}

/* switchover_interval: "off" or a number with a unit (ms, s, m, h, d), at
 * least 100 ms and at most 365 d: "24h", "30m", "90s", "500ms". */
static bool server_duration_ms(const char *value, uint64_t *out)
{
    if (strcmp(value, "off") == 0) {
        *out = 0;
        return true;
    }
    const char *unit = value;
    while (*unit >= '0' && *unit <= '9') {
        unit++;
    }
    if (unit == value || unit - value > 12) {
        return false;
    }
    uint64_t number = strtoull(value, NULL, 10);
    uint64_t scale = 0;
    if (strcmp(unit, "ms") == 0) {
        scale = 1;
    } else if (strcmp(unit, "s") == 0) {
        scale = 1000;
    } else if (strcmp(unit, "m") == 0) {
        scale = 60 * 1000;
    } else if (strcmp(unit, "h") == 0) {
        scale = 3600 * 1000;
    } else if (strcmp(unit, "d") == 0) {
        scale = 24 * 3600 * 1000;
    } else {
        return false;
    }
    uint64_t max_ms = UINT64_C(365) * 24 * 3600 * 1000;
    if (number > max_ms / scale || number * scale < 100) {
        return false;
    }
    *out = number * scale;
    return true;
}

/* rotation: node ids separated by commas (spaces around them allowed). */
static bool server_rotation(struct tdm_uv_cluster_config *cluster, const char *value)
{
    cluster->rotation_count = 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        const char *start = p;
        while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }
        size_t size = (size_t)(p - start);
        if (size == 0 || size > TDM_UV_NAME_SIZE_MAX ||
            cluster->rotation_count >= TDM_UV_NODES_MAX) {
            return false;
        }
        char *id = cluster->rotation[cluster->rotation_count++];
        memcpy(id, start, size);
        id[size] = '\0';
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            return true;
        }
        if (*p != ',') {
            return false;
        }
        p++;
    }
}

/* The [replication] keys of a replicated node. Returns false on a bad value. */
static bool server_conf_replication(struct server_conf *conf, const char *name, const char *value)
{
    struct tdm_uv_cluster_config *cluster = &conf->cluster;
    uint64_t number = 0;
    if (strcmp(name, "listen") == 0) {
        conf->replicated = true;
        snprintf(conf->listen, sizeof(conf->listen), "%s", value);
        return strlen(value) <= TDM_UV_ADDR_SIZE_MAX;
    }
    if (strncmp(name, "peer.", 5) == 0) {
        conf->replicated = true;
        if (cluster->node_count + 1 >= TDM_UV_NODES_MAX) {
            conf->too_many_peers = true;
            return true;
        }
        struct tdm_uv_cluster_node *node = &cluster->nodes[cluster->node_count++];
        snprintf(node->id, sizeof(node->id), "%s", name + 5);
        snprintf(node->addr, sizeof(node->addr), "%s", value);
        return strlen(name + 5) <= TDM_UV_NAME_SIZE_MAX && strlen(value) <= TDM_UV_ADDR_SIZE_MAX;
    }
    if (strcmp(name, "min_copies") == 0) {
        if (!server_number(value, 1, TDM_UV_NODES_MAX, &number)) {
            return false;
        }
        cluster->min_copies = (uint32_t)number;
        return true;
    }
    if (strcmp(name, "write_deadline_ms") == 0) {
        if (!server_number(value, 1, SERVER_DEADLINE_MS_MAX, &number)) {
            return false;
        }
        cluster->write_deadline_ms = number;
        return true;
    }
    if (strcmp(name, "switchover_interval") == 0) {
        return server_duration_ms(value, &cluster->switchover_interval_ms);
    }
    if (strcmp(name, "rotation") == 0) {
        return server_rotation(cluster, value);
    }
    if (strcmp(name, "tls_key") == 0) {
        server_path(conf, value, cluster->tls_key, sizeof(cluster->tls_key));
    } else if (strcmp(name, "tls_cert") == 0) {
        server_path(conf, value, cluster->tls_cert, sizeof(cluster->tls_cert));
    } else if (strcmp(name, "tls_ca") == 0) {
        server_path(conf, value, cluster->tls_ca, sizeof(cluster->tls_ca));
    }
    return true;
}

/* The [verification] keys (docs/OPERATIONS.md "Verification"). Returns false
 * on a bad value; unknown keys are ignored, like the other sections'. */
static bool server_conf_verification(struct server_conf *conf, const char *name, const char *value)
{
    struct tdm_uv_cluster_config *cluster = &conf->cluster;
    uint64_t number = 0;
    if (strcmp(name, "unverified_bound_s") == 0) {
        if (!server_number(value, 1, 7 * 24 * 3600, &number)) {
            return false;
        }
        cluster->unverified_bound_s = (uint32_t)number;
    } else if (strcmp(name, "verify_interval_ms") == 0) {
        if (!server_number(value, 10, 3600 * 1000, &number)) {
            return false;
        }
        cluster->verify_interval_ms = number;
    } else if (strcmp(name, "scrub_bytes_per_second") == 0) {
        if (!server_number(value, 1, TDM_SCRUB_RATE_MAX, &number)) {
            return false;
        }
        cluster->scrub_bytes_per_second = number;
    } else if (strcmp(name, "scrub_pause_ms") == 0) {
        if (!server_number(value, 10, 24 * 3600 * 1000, &number)) {
            return false;
        }
        cluster->scrub_pause_ms = number;
    } else if (strcmp(name, "repair") == 0) {
        if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
            return false;
        }
        cluster->repair_off = strcmp(value, "off") == 0;
    }
    return true;
}

/* inih handler: keeps the keys the server needs and ignores the others. */
static int server_conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct server_conf *conf = user;
    char *target = NULL;
    if (strcmp(section, "node") == 0 && strcmp(name, "cluster") == 0) {
        target = conf->conf.cluster;
    } else if (strcmp(section, "node") == 0 && strcmp(name, "id") == 0) {
        target = conf->conf.id;
    } else if (strcmp(section, "replication") == 0 && strcmp(name, "primary") == 0) {
        target = conf->conf.primary;
    } else if (strcmp(section, "replication") == 0 && !server_conf_replication(conf, name, value)) {
        snprintf(conf->bad_key, sizeof(conf->bad_key), "[replication] %s = %s%s", name, value,
                 strcmp(name, "switchover_interval") == 0
                     ? " (expected off, or 100ms to 365d as e.g. 24h, 30m, 90s, 500ms)"
                 : strcmp(name, "rotation") == 0 ? " (expected node ids separated by commas)"
                                                 : "");
        return 0;
    } else if (strcmp(section, "verification") == 0 &&
               !server_conf_verification(conf, name, value)) {
        snprintf(conf->bad_key, sizeof(conf->bad_key), "[verification] %s = %s", name, value);
        return 0;
    } else if (strcmp(section, "log") == 0 && strcmp(name, "segment_size") == 0) {
        uint64_t number = 0;
        if (!server_number(value, TDM_SEGMENT_SIZE_MIN, TDM_SEGMENT_SIZE_MAX, &number)) {
            snprintf(conf->bad_key, sizeof(conf->bad_key), "[log] %s = %s", name, value);
            return 0;
        }
        conf->segment_size = number;
    }
    if (target != NULL) {
        if (strlen(value) > TDM_CMD_NAME_SIZE_MAX) {
            return 0;
        }
        snprintf(target, TDM_CMD_NAME_SIZE_MAX + 1, "%s", value);
    }
    return 1;
}

/* The primary of epoch 1 when tandem.conf names none: the first id in sorted
 * order (DESIGN "Public contracts"). */
static void server_conf_default_primary(struct server_conf *conf)
{
    const struct tdm_uv_cluster_config *cluster = &conf->cluster;
    const char *first = cluster->nodes[0].id;
    for (uint32_t i = 1; i < cluster->node_count; i++) {
        if (strcmp(cluster->nodes[i].id, first) < 0) {
            first = cluster->nodes[i].id;
        }
    }
    snprintf(conf->conf.primary, sizeof(conf->conf.primary), "%s", first);
}

/* A replicated node's settings, completed and checked. Returns 0 or
 * TANDEM_EINVALID with diag naming the setting. */
static int server_conf_cluster(struct server_conf *conf, const char *path, struct tdm_diag *diag)
{
    struct tdm_uv_cluster_config *cluster = &conf->cluster;
    if (conf->too_many_peers) {
        tdm_diag_printf(diag, "%s: more than %d peers: a cluster has at most %d nodes", path,
                        TDM_UV_NODES_MAX - 1, TDM_UV_NODES_MAX);
        return TANDEM_EINVALID;
    }
    if (conf->listen[0] == '\0') {
        tdm_diag_printf(diag, "%s: [replication] listen is required with peers", path);
        return TANDEM_EINVALID;
    }
    if (cluster->tls_key[0] == '\0' || cluster->tls_cert[0] == '\0' || cluster->tls_ca[0] == '\0') {
        tdm_diag_printf(diag, "%s: [replication] tls_key, tls_cert and tls_ca are required", path);
        return TANDEM_EINVALID;
    }
    struct tdm_uv_cluster_node *self = &cluster->nodes[cluster->node_count++];
    snprintf(self->id, sizeof(self->id), "%s", conf->conf.id);
    snprintf(self->addr, sizeof(self->addr), "%s", conf->listen);
    snprintf(cluster->cluster, sizeof(cluster->cluster), "%s", conf->conf.cluster);
    snprintf(cluster->self_id, sizeof(cluster->self_id), "%s", conf->conf.id);
    if (conf->conf.primary[0] == '\0') {
        server_conf_default_primary(conf);
    }
    snprintf(cluster->primary, sizeof(cluster->primary), "%s", conf->conf.primary);
    if (cluster->min_copies == 0) {
        cluster->min_copies = cluster->node_count < 2 ? cluster->node_count : 2;
    }
    if (cluster->write_deadline_ms == 0) {
        cluster->write_deadline_ms = SERVER_DEADLINE_MS_MAX;
    }
    cluster->dir = conf->dir;
    struct tdm_diag check = {{0}};
    int rv = tdm_uv_cluster_check(cluster, &check);
    if (rv != 0) {
        tdm_diag_printf(diag, "%s: %s", path, check.message);
        return rv;
    }
    return 0;
}

/* Step 1. Returns 0, or a negative code with diag naming the cause. */
static int server_conf_read(struct server_conf *conf, struct tdm_diag *diag)
{
    char path[TDM_UV_PATH_SIZE + 16];
    snprintf(path, sizeof(path), "%s/tandem.conf", conf->dir);
    FILE *file = fopen(path, "re");
    if (file == NULL) {
        int rv = -errno;
        tdm_diag_printf(diag, "%s: %s%s", path, strerror(-rv),
                        rv == -ENOENT   ? " (create the node with tandem init)"
                        : rv == -EACCES ? " (the node directory's files must belong to the user "
                                          "tandemd runs as: chown -R)"
                                        : "");
        return rv;
    }
    int line = ini_parse_file(file, server_conf_handler, conf);
    fclose(file);
    if (line < 0) { /* -2: inih ran out of memory. */
        tdm_diag_printf(diag, "%s: out of memory", path);
        return -ENOMEM;
    }
    if (line != 0 && conf->bad_key[0] != '\0') {
        tdm_diag_printf(diag, "%s: line %d: bad value: %s", path, line, conf->bad_key);
        return TANDEM_EINVALID;
    }
    if (line != 0) { /* inih found no '=' (or ':'), or an unclosed '['. */
        tdm_diag_printf(diag, "%s: line %d: neither [section] nor key = value", path, line);
        return TANDEM_EINVALID;
    }
    if (conf->conf.cluster[0] == '\0' || conf->conf.id[0] == '\0') {
        tdm_diag_printf(diag, "%s: [node] cluster and id are required", path);
        return TANDEM_EINVALID;
    }
    if (!conf->replicated) {
        return 0;
    }
    return server_conf_cluster(conf, path, diag);
}

/* ---- The server's thread (steps 2 to 4) ------------------------------------------ */

/* tdm_uv_status_cb: the status document of the open node (threadpool). */
static int server_status_cb(void *data, struct tandem *t, const void *snapshot, char **out,
                            size_t *size)
{
    struct tandem_server *server = data;
    struct tdm_status_view view = {
        .dir = server->dir, .conf = server->conf.conf, .conf_found = true};
    if (snapshot != NULL) {
        view.replicated = true;
        memcpy(&view.cluster, snapshot, sizeof(view.cluster));
    }
    int rv = tandem_status(t, &view.status);
    if (rv != 0) {
        return rv;
    }
    view.opened = true;
    tdm_status_judge(&view);
    char *text = NULL;
    rv = tdm_status_json(&view, &text);
    if (rv != 0) {
        return rv;
    }
    size_t length = strlen(text);
    *out = tdm_malloc(length + 1);
    if (*out == NULL) {
        free(text);
        return -ENOMEM;
    }
    memcpy(*out, text, length + 1);
    *size = length;
    free(text);
    return 0;
}

/* tdm_uv_inspect_cb: HISTORY and QUARANTINE (docs/PROTOCOL.md §7.6), read from
 * the node directory (threadpool; tools/inspect.c); VERIFY (§7.7), a pass over
 * the node's segments now (tools/verify_doc.c). */
static int server_inspect_cb(void *data, uint16_t type, uint8_t flags, tdm_uv_line_cb line,
                             void *line_data, struct tdm_diag *diag)
{
    struct tandem_server *server = data;
    if (type == TDM_PROTO_VERIFY) {
        return tdm_verify_serve(server->t, flags, line, line_data, diag);
    }
    struct tdm_inspect_node node = {.dir = server->dir,
                                    .id = server->conf.conf.id,
                                    .primary = server->conf.conf.primary,
                                    .replicated = server->conf.replicated};
    if (type == TDM_PROTO_QUARANTINE && (flags & TDM_PROTO_QUARANTINE_EXPORT) != 0) {
        uint64_t skipped = 0;
        return tdm_inspect_export(&node, line, line_data, &skipped, diag);
    }
    json_t *doc = NULL;
    int rv = type == TDM_PROTO_HISTORY ? tdm_inspect_history(&node, &doc, diag)
                                       : tdm_inspect_quarantine(&node, &doc, diag);
    if (rv != 0) {
        return rv;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL) {
        return -ENOMEM;
    }
    rv = line(line_data, text, strlen(text));
    free(text);
    return rv;
}

/* Step 2. Returns 0 and server->t, or a negative code with diag. */
static int server_open(struct tandem_server *server, struct tdm_diag *diag)
{
    struct tandem_options options;
    struct tandem_diag open_diag = {{0}};
    tandem_options_init(&options);
    options.segment_size = server->conf.segment_size; /* 0: the default. */
    int rv = tandem_open(server->dir, &options, &server->t, &open_diag);
    if (rv == TANDEM_ELOCKED) {
        tdm_diag_printf(diag,
                        "open %s: %s: another process writes to it (a tandemd already runs there?)",
                        server->dir, tandem_strerror(rv));
    } else if (rv != 0) {
        tdm_diag_printf(diag, "open %s: %s%s%s", server->dir, tandem_strerror(rv),
                        open_diag.message[0] != '\0' ? ": " : "", open_diag.message);
    }
    return rv;
}

/* tdm_uv_serve_serving_cb (loop thread): wake tandem_server_start(). */
static void server_serving_cb(void *data)
{
    struct tandem_server *server = data;
    pthread_mutex_lock(&server->mutex);
    tdm_assert(server->state == SERVER_STARTING);
    server->state = SERVER_SERVING;
    pthread_cond_broadcast(&server->cond);
    pthread_mutex_unlock(&server->mutex);
}

/* Step 3: serve until tandem_server_stop(). Returns 0, or the code of a failed
 * start with diag. */
static int server_serve(struct tandem_server *server, struct tdm_diag *diag)
{
    struct tdm_uv_server_config config = {
        .socket_path = server->socket_path,
        .t = server->t,
        .format = tdm_jsonl_format,
        .status = server_status_cb,
        .data = server,
        .inspect = server_inspect_cb,
        .inspect_data = server,
    };
    struct tdm_diag serve_diag = {{0}};
    int rv = server->conf.replicated ? tdm_uv_serve_replicated(&config, &server->conf.cluster,
                                                               server->control, &serve_diag)
                                     : tdm_uv_serve(&config, NULL, server->control, &serve_diag);
    if (rv != 0 && serve_diag.message[0] != '\0') {
        tdm_diag_printf(diag, "%s", serve_diag.message); /* It names the socket or address. */
    } else if (rv != 0) {
        tdm_diag_printf(diag, "serve %s: %s", server->socket_path, tandem_strerror(rv));
    }
    return rv;
}

static void *server_thread(void *data)
{
    struct tandem_server *server = data;
    struct tdm_diag diag = {{0}};
    int rv = server_open(server, &diag);
    if (rv == 0) {
        rv = server_serve(server, &diag);
        tandem_close(server->t);
        server->t = NULL;
    }
    if (rv != 0) { /* A failed start: nothing is open any more. */
        pthread_mutex_lock(&server->mutex);
        tdm_assert(server->state == SERVER_STARTING);
        server->state = SERVER_FAILED;
        server->rv = rv;
        server->diag = diag;
        pthread_cond_broadcast(&server->cond);
        pthread_mutex_unlock(&server->mutex);
    }
    return NULL;
}

/* ---- The public API -------------------------------------------------------------- */

void tandem_server_options_init(struct tandem_server_options *options)
{
    tdm_assert(options != NULL);
    memset(options, 0, sizeof(*options));
}

static void server_free(struct tandem_server *server)
{
    tdm_uv_serve_control_free(server->control);
    pthread_cond_destroy(&server->cond);
    pthread_mutex_destroy(&server->mutex);
    tdm_free(server);
}

/* Allocate a server for dir with its configuration read (step 1). Returns 0
 * and *out, or a negative code with diag. */
static int server_new(const char *dir, struct tandem_server **out, struct tdm_diag *diag)
{
    struct tandem_server *server = tdm_calloc(1, sizeof(*server));
    if (server == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    snprintf(server->dir, sizeof(server->dir), "%s", dir);
    snprintf(server->socket_path, sizeof(server->socket_path), "%s/%s", dir, SERVER_SOCKET_NAME);
    server->conf.dir = server->dir;
    server->state = SERVER_STARTING;
    int rv = server_conf_read(&server->conf, diag);
    if (rv == 0) {
        rv = tdm_uv_serve_control_new(server_serving_cb, server, &server->control);
        if (rv != 0) {
            tdm_diag_printf(diag, "out of memory");
        }
    }
    if (rv != 0) {
        tdm_free(server);
        return rv;
    }
    pthread_mutex_init(&server->mutex, NULL);
    pthread_cond_init(&server->cond, NULL);
    *out = server;
    return 0;
}

/* Steps 2 and 3 on a thread with every signal blocked; wait until it serves.
 * Returns 0, or the thread's failure (the thread has ended) with diag. */
static int server_run(struct tandem_server *server, struct tdm_diag *diag)
{
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rv = pthread_create(&server->thread, NULL, server_thread, server);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        tdm_diag_printf(diag, "start the server's thread: %s", strerror(rv));
        return -rv;
    }
    pthread_mutex_lock(&server->mutex);
    while (server->state == SERVER_STARTING) {
        pthread_cond_wait(&server->cond, &server->mutex);
    }
    enum server_state state = server->state;
    pthread_mutex_unlock(&server->mutex);
    if (state == SERVER_SERVING) {
        return 0;
    }
    rv = pthread_join(server->thread, NULL);
    tdm_assert(rv == 0);
    *diag = server->diag;
    tdm_assert(server->rv != 0);
    return server->rv;
}

int tandem_server_start(const char *dir, const struct tandem_server_options *options,
                        struct tandem_server **out, struct tandem_diag *diag)
{
    struct tdm_diag d = {{0}};
    int rv = 0;
    if (dir == NULL || dir[0] == '\0' || out == NULL) {
        tdm_diag_printf(&d, "dir and out are required");
        rv = TANDEM_EINVALID;
    } else if (strlen(dir) >= TDM_UV_PATH_SIZE) {
        tdm_diag_printf(&d, "dir: %zu bytes, limit %d", strlen(dir), TDM_UV_PATH_SIZE - 1);
        rv = -ENAMETOOLONG;
    } else if (options != NULL && (options->flags & ~TANDEM_SERVER_TRACE) != 0) {
        tdm_diag_printf(&d, "options: unknown flags 0x%x",
                        (unsigned)(options->flags & ~TANDEM_SERVER_TRACE));
        rv = TANDEM_EINVALID;
    }
    struct tandem_server *server = NULL;
    if (rv == 0) {
        rv = server_new(dir, &server, &d);
    }
    if (rv == 0 && options != NULL && (options->flags & TANDEM_SERVER_TRACE) != 0) {
        tdm_trace_enable(1);
    }
    if (rv == 0) {
        rv = server_run(server, &d);
        if (rv != 0) {
            server_free(server);
        }
    }
    if (rv != 0) {
        if (diag != NULL) {
            snprintf(diag->message, sizeof(diag->message), "%s", d.message);
        }
        return rv;
    }
    *out = server;
    return 0;
}

void tandem_server_info(const struct tandem_server *server, struct tandem_server_info *info)
{
    tdm_assert(server != NULL);
    tdm_assert(info != NULL);
    const struct server_conf *conf = &server->conf;
    memset(info, 0, sizeof(*info));
    snprintf(info->cluster, sizeof(info->cluster), "%s", conf->conf.cluster);
    snprintf(info->node_id, sizeof(info->node_id), "%s", conf->conf.id);
    info->replicated = conf->replicated;
    info->node_count = 1;
    info->min_copies = 1;
    if (conf->replicated) {
        snprintf(info->listen, sizeof(info->listen), "%s", conf->listen);
        info->node_count = conf->cluster.node_count;
        info->min_copies = conf->cluster.min_copies;
    }
}

struct tandem *tandem_server_node(struct tandem_server *server)
{
    tdm_assert(server != NULL);
    tdm_assert(server->t != NULL);
    return server->t;
}

void tandem_server_stop(struct tandem_server *server)
{
    if (server == NULL) {
        return;
    }
    tdm_assert(server->state == SERVER_SERVING);
    tdm_uv_serve_stop(server->control);
    int rv = pthread_join(server->thread, NULL);
    tdm_assert(rv == 0);
    tdm_assert(server->t == NULL);
    server_free(server);
}
