/* tools/tandemd.c: "tandemd DIR", the node daemon (DESIGN "Public contracts").
 *
 * Happy path:
 * 1. Read DIR/tandem.conf (inih): [node] cluster and id; for a replicated node
 *    (listen or peer.* set) also [replication] listen, peer.<ID>, primary,
 *    min_copies, write_deadline_ms, tls_key, tls_cert, tls_ca (paths relative
 *    to DIR), checked with tdm_uv_cluster_check().
 * 2. Open the node for writing (tandem_open). That takes the directory's lock,
 *    so a second tandemd (or a tandem append) on DIR fails here: exit 1.
 * 3. Serve the local client socket DIR/tandemd.sock (net/uv.h, tdm_uv_serve)
 *    until SIGTERM or SIGINT: then stop accepting, finish the appends in
 *    flight (their answers are written), close every handle. A replicated
 *    node (tdm_uv_serve_replicated) also runs its links and serves TLS
 *    clients on its listen address; every append is acknowledged only once
 *    min_copies nodes hold it durably.
 * 4. tandem_close() (flushes, releases the lock), exit 0.
 * SIGTERM and SIGINT are blocked from the start until the server's handlers
 * are installed, so that one sent while the node opens stops it cleanly too.
 * Every event is one line on stderr: started, client errors, stopping, stopped
 * (the server's lines come through tdm_tracef, which tandemd turns on).
 * Failure modes: a bad command line exits 2; a missing or bad tandem.conf, an
 * open error or a socket that cannot be bound exits 1 with the cause. */
#include <errno.h>
#include <ini.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/trace.h"
#include "jsonl.h"
#include "net/uv.h"
#include "status_doc.h"

#define TANDEMD_SOCKET_NAME "tandemd.sock"

/* What tandemd reads from tandem.conf. */
struct tandemd_conf {
    struct tdm_cmd_conf conf; /* cluster, id, primary. */
    bool replicated;          /* listen or peer.* is set. */
    struct tdm_uv_cluster_config cluster;
    char listen[TDM_UV_ADDR_SIZE_MAX + 1];
    const char *dir;
    bool too_many_peers;
    char bad_key[128]; /* A [replication] value that does not parse. */
};

/* A decimal number in [min, max]. */
static bool tandemd_number(const char *value, uint64_t min, uint64_t max, uint64_t *out)
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
static void tandemd_path(const struct tandemd_conf *conf, const char *value, char *out, size_t size)
{
    if (value[0] == '/') {
        snprintf(out, size, "%s", value);
    } else {
        snprintf(out, size, "%s/%s", conf->dir, value);
    }
}

/* The [replication] keys of a replicated node. Returns false on a bad value. */
static bool tandemd_conf_replication(struct tandemd_conf *conf, const char *name, const char *value)
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
        if (!tandemd_number(value, 1, TDM_UV_NODES_MAX, &number)) {
            return false;
        }
        cluster->min_copies = (uint32_t)number;
        return true;
    }
    if (strcmp(name, "write_deadline_ms") == 0) {
        if (!tandemd_number(value, 1, 60000, &number)) {
            return false;
        }
        cluster->write_deadline_ms = number;
        return true;
    }
    if (strcmp(name, "tls_key") == 0) {
        tandemd_path(conf, value, cluster->tls_key, sizeof(cluster->tls_key));
    } else if (strcmp(name, "tls_cert") == 0) {
        tandemd_path(conf, value, cluster->tls_cert, sizeof(cluster->tls_cert));
    } else if (strcmp(name, "tls_ca") == 0) {
        tandemd_path(conf, value, cluster->tls_ca, sizeof(cluster->tls_ca));
    }
    return true;
}

static void tandemd_log(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void tandemd_log(const char *format, ...)
{
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    fprintf(stderr, "tandemd: %s\n", line);
}

/* inih handler: keeps the keys tandemd needs and ignores the others. */
static int tandemd_conf_handler(void *user, const char *section, const char *name,
                                const char *value)
{
    struct tandemd_conf *conf = user;
    char *target = NULL;
    if (strcmp(section, "node") == 0 && strcmp(name, "cluster") == 0) {
        target = conf->conf.cluster;
    } else if (strcmp(section, "node") == 0 && strcmp(name, "id") == 0) {
        target = conf->conf.id;
    } else if (strcmp(section, "replication") == 0 && strcmp(name, "primary") == 0) {
        target = conf->conf.primary;
    } else if (strcmp(section, "replication") == 0 &&
               !tandemd_conf_replication(conf, name, value)) {
        snprintf(conf->bad_key, sizeof(conf->bad_key), "[replication] %s = %s", name, value);
        return 0;
    }
    if (target != NULL) {
        if (strlen(value) > TDM_CMD_NAME_SIZE_MAX) {
            return 0;
        }
        snprintf(target, TDM_CMD_NAME_SIZE_MAX + 1, "%s", value);
    }
    return 1;
}

/* A replicated node's settings, completed and checked. Returns 0 or -1. */
static int tandemd_conf_cluster(struct tandemd_conf *conf, const char *path)
{
    struct tdm_uv_cluster_config *cluster = &conf->cluster;
    if (conf->too_many_peers) {
        tandemd_log("%s: more than %d peers: a cluster has at most %d nodes", path,
                    TDM_UV_NODES_MAX - 1, TDM_UV_NODES_MAX);
        return -1;
    }
    if (conf->listen[0] == '\0') {
        tandemd_log("%s: [replication] listen is required with peers", path);
        return -1;
    }
    if (cluster->tls_key[0] == '\0' || cluster->tls_cert[0] == '\0' || cluster->tls_ca[0] == '\0') {
        tandemd_log("%s: [replication] tls_key, tls_cert and tls_ca are required", path);
        return -1;
    }
    struct tdm_uv_cluster_node *self = &cluster->nodes[cluster->node_count++];
    snprintf(self->id, sizeof(self->id), "%s", conf->conf.id);
    snprintf(self->addr, sizeof(self->addr), "%s", conf->listen);
    snprintf(cluster->cluster, sizeof(cluster->cluster), "%s", conf->conf.cluster);
    snprintf(cluster->self_id, sizeof(cluster->self_id), "%s", conf->conf.id);
    if (conf->conf.primary[0] == '\0') { /* Default: the first id in sorted order. */
        const char *first = cluster->nodes[0].id;
        for (uint32_t i = 1; i < cluster->node_count; i++) {
            if (strcmp(cluster->nodes[i].id, first) < 0) {
                first = cluster->nodes[i].id;
            }
        }
        snprintf(conf->conf.primary, sizeof(conf->conf.primary), "%s", first);
    }
    snprintf(cluster->primary, sizeof(cluster->primary), "%s", conf->conf.primary);
    if (cluster->min_copies == 0) {
        cluster->min_copies = cluster->node_count < 2 ? cluster->node_count : 2;
    }
    if (cluster->write_deadline_ms == 0) {
        cluster->write_deadline_ms = 60000;
    }
    cluster->dir = conf->dir;
    struct tdm_diag diag = {{0}};
    if (tdm_uv_cluster_check(cluster, &diag) != 0) {
        tandemd_log("%s: %s", path, diag.message);
        return -1;
    }
    return 0;
}

/* Step 1. Returns 0, or -1 after logging the cause. */
static int tandemd_conf_read(const char *dir, struct tandemd_conf *conf)
{
    char path[TDM_CMD_PATH_SIZE];
    snprintf(path, sizeof(path), "%s/tandem.conf", dir);
    FILE *file = fopen(path, "re");
    if (file == NULL) {
        tandemd_log("%s: %s (create the node with tandem init)", path, strerror(errno));
        return -1;
    }
    int line = ini_parse_file(file, tandemd_conf_handler, conf);
    fclose(file);
    if (line != 0 && conf->bad_key[0] != '\0') {
        tandemd_log("%s: line %d: bad value: %s", path, line, conf->bad_key);
        return -1;
    }
    if (line != 0) {
        tandemd_log("%s: line %d: bad value", path, line);
        return -1;
    }
    if (conf->conf.cluster[0] == '\0' || conf->conf.id[0] == '\0') {
        tandemd_log("%s: [node] cluster and id are required", path);
        return -1;
    }
    if (!conf->replicated) {
        return 0;
    }
    return tandemd_conf_cluster(conf, path);
}

/* What the status callback needs: the directory and its configuration. */
struct tandemd {
    const char *dir;
    struct tandemd_conf conf;
};

/* tdm_uv_status_cb: the status document of the open node (threadpool). */
static int tandemd_status_cb(void *data, struct tandem *t, const void *snapshot, char **out,
                             size_t *size)
{
    struct tandemd *d = data;
    struct tdm_status_view view = {.dir = d->dir, .conf = d->conf.conf, .conf_found = true};
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

/* Step 2. Returns 0 and *out, or -1 after logging the cause. */
static int tandemd_open(const char *dir, struct tandem **out)
{
    struct tandem_options options;
    struct tandem_diag diag = {{0}};
    tandem_options_init(&options);
    int rv = tandem_open(dir, &options, out, &diag);
    if (rv == TANDEM_ELOCKED) {
        tandemd_log("open %s: %s: another process writes to it (a tandemd already runs there?)",
                    dir, tandem_strerror(rv));
        return -1;
    }
    if (rv != 0) {
        tandemd_log("open %s: %s%s%s", dir, tandem_strerror(rv),
                    diag.message[0] != '\0' ? ": " : "", diag.message);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: tandemd DIR\n"
                        "Run the node in DIR (config DIR/tandem.conf) until SIGTERM; log to "
                        "stderr.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    /* Held until tdm_uv_serve() handles them: a SIGTERM while the node opens
     * (recovery can take a while) stops it cleanly once it serves. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    (void)sigprocmask(SIG_BLOCK, &stop, NULL);
    struct tandemd d = {.dir = argv[1]};
    d.conf.dir = d.dir;
    if (tandemd_conf_read(d.dir, &d.conf) != 0) {
        return 1;
    }
    struct tandem *t = NULL;
    if (tandemd_open(d.dir, &t) != 0) {
        return 1;
    }
    tdm_trace_enable(1);
    char socket_path[TDM_CMD_PATH_SIZE];
    snprintf(socket_path, sizeof(socket_path), "%s/%s", d.dir, TANDEMD_SOCKET_NAME);
    struct tdm_uv_server_config config = {
        .socket_path = socket_path,
        .t = t,
        .format = tdm_jsonl_format,
        .status = tandemd_status_cb,
        .data = &d,
    };
    struct tandem_status status;
    if (tandem_status(t, &status) == 0) {
        tandemd_log("started: node %s of cluster %s, %s, last lsn %llu", d.conf.conf.id,
                    d.conf.conf.cluster, d.dir, (unsigned long long)status.lsn_last);
    }
    struct tdm_diag diag = {{0}};
    int rv = d.conf.replicated ? tdm_uv_serve_replicated(&config, &d.conf.cluster, &diag)
                               : tdm_uv_serve(&config, NULL, &diag);
    tandem_close(t);
    if (rv != 0) {
        tandemd_log("serve %s: %s%s%s", socket_path, tandem_strerror(rv),
                    diag.message[0] != '\0' ? ": " : "", diag.message);
        return 1;
    }
    tandemd_log("stopped: %s closed", d.dir);
    return 0;
}
