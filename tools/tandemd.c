/* tools/tandemd.c: "tandemd DIR", the node daemon (DESIGN "Public contracts").
 *
 * Happy path:
 * 1. Read DIR/tandem.conf (inih): [node] cluster and id. Replication settings
 *    (listen, peer.*) are noted with one line and otherwise ignored: the node
 *    runs standalone until net/uv drives net/replica.
 * 2. Open the node for writing (tandem_open). That takes the directory's lock,
 *    so a second tandemd (or a tandem append) on DIR fails here: exit 1.
 * 3. Serve the local client socket DIR/tandemd.sock (net/uv.h, tdm_uv_serve)
 *    until SIGTERM or SIGINT: then stop accepting, finish the appends in
 *    flight (their answers are written), close every handle.
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
};

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
               (strcmp(name, "listen") == 0 || strncmp(name, "peer.", 5) == 0)) {
        conf->replicated = true;
    }
    if (target != NULL) {
        if (strlen(value) > TDM_CMD_NAME_SIZE_MAX) {
            return 0;
        }
        snprintf(target, TDM_CMD_NAME_SIZE_MAX + 1, "%s", value);
    }
    return 1;
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
    if (line != 0) {
        tandemd_log("%s: line %d: bad value", path, line);
        return -1;
    }
    if (conf->conf.cluster[0] == '\0' || conf->conf.id[0] == '\0') {
        tandemd_log("%s: [node] cluster and id are required", path);
        return -1;
    }
    return 0;
}

/* What the status callback needs: the directory and its configuration. */
struct tandemd {
    const char *dir;
    struct tandemd_conf conf;
};

/* tdm_uv_status_cb: the status document of the open node (threadpool). */
static int tandemd_status_cb(void *data, struct tandem *t, char **out, size_t *size)
{
    struct tandemd *d = data;
    struct tdm_status_view view = {.dir = d->dir, .conf = d->conf.conf, .conf_found = true};
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
    if (tandemd_conf_read(d.dir, &d.conf) != 0) {
        return 1;
    }
    if (d.conf.replicated) {
        tandemd_log("replication not built yet: running standalone");
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
    int rv = tdm_uv_serve(&config, &diag);
    tandem_close(t);
    if (rv != 0) {
        tandemd_log("serve %s: %s%s%s", socket_path, tandem_strerror(rv),
                    diag.message[0] != '\0' ? ": " : "", diag.message);
        return 1;
    }
    tandemd_log("stopped: %s closed", d.dir);
    return 0;
}
