/* tools/cmd_node.c: "tandem init" and "tandem reindex", and reading tandem.conf.
 *
 * init, happy path:
 * 1. Check the names and refuse options that need replication (not built yet).
 * 2. Create DIR and its parents; refuse a DIR that already has a tandem.conf.
 * 3. Create the store: tandem_open(DIR, TANDEM_OPEN_CREATE), tandem_close().
 * 4. Write DIR/tandem.conf.tmp, fsync it, rename it to tandem.conf and fsync
 *    DIR, so that a crash leaves either no tandem.conf or a whole one.
 * Failure modes: a failed step prints its cause and exits 1; what steps 2 and 3
 * created stays (init can be run again, since tandem.conf is written last).
 *
 * reindex: tandem_reindex(DIR), then a read-only open to say how far the new
 * index reaches. It needs the directory's lock, so it fails (exit 1) while a
 * writer runs.
 *
 * tandem.conf is INI (read with inih): [node] cluster, id; [replication]
 * primary, min_copies, write_deadline_ms. Unknown keys are ignored so that
 * newer files stay readable. */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/assert.h"

#define NODE_DIR_MODE      0750 /* Node directories hold customer data. */
#define NODE_CONF_MODE     0640
#define NODE_CONF_SIZE_MAX 2048

/* A cluster name or node id: 1..63 bytes of [A-Za-z0-9._-], so that it is safe
 * in tandem.conf, in file names and in certificate names. */
static bool node_name_valid(const char *name)
{
    size_t size = strlen(name);
    if (size == 0 || size > TDM_CMD_NAME_SIZE_MAX) {
        return false;
    }
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
           size;
}

/* mkdir -p path. Returns 0 or -errno. */
static int node_mkdir_parents(const char *path)
{
    char buf[TDM_CMD_PATH_SIZE];
    size_t size = strlen(path);
    if (size == 0 || size >= sizeof(buf)) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, path, size + 1);
    for (size_t i = 1; i <= size; i++) {
        if (buf[i] != '/' && buf[i] != '\0') {
            continue;
        }
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, i == size ? NODE_DIR_MODE : 0755) != 0 && errno != EEXIST) {
            return -errno;
        }
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        return -errno;
    }
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int node_fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rv = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rv;
}

/* Write text to dir/tandem.conf durably (steps 4 of the header). */
static int node_conf_write(const char *dir, const char *text, char *what, size_t what_size)
{
    tdm_assert(dir != NULL);
    tdm_assert(strlen(text) < NODE_CONF_SIZE_MAX);
    char path[TDM_CMD_PATH_SIZE];
    char tmp[TDM_CMD_PATH_SIZE];
    snprintf(path, sizeof(path), "%s/tandem.conf", dir);
    snprintf(tmp, sizeof(tmp), "%s/tandem.conf.tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, NODE_CONF_MODE);
    if (fd < 0) {
        int rv = -errno;
        snprintf(what, what_size, "create %s", tmp);
        return rv;
    }
    size_t size = strlen(text);
    ssize_t written = write(fd, text, size);
    int rv = written < 0 ? -errno : 0;
    if (rv == 0 && (size_t)written != size) {
        rv = -EIO;
    }
    if (rv == 0 && fsync(fd) != 0) {
        rv = -errno;
    }
    close(fd);
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = -errno;
    }
    if (rv == 0) {
        rv = node_fsync_path(dir, O_RDONLY | O_DIRECTORY);
    }
    if (rv != 0) {
        snprintf(what, what_size, "write %s", path);
        unlink(tmp);
    }
    return rv;
}

static void node_conf_format(char *text, size_t size, const char *cluster, const char *id,
                             const char *primary)
{
    int n = snprintf(text, size,
                     "# tandem.conf: the configuration of one tandem node (docs/OPERATIONS.md).\n"
                     "# Written by 'tandem init'; read by tandemd and the tandem CLI.\n"
                     "\n"
                     "[node]\n"
                     "cluster = %s\n"
                     "id = %s\n"
                     "\n"
                     "[replication]\n"
                     "# The primary of the first epoch.\n"
                     "primary = %s\n"
                     "# Nodes, this one included, that must hold a write durably before it\n"
                     "# is acknowledged. Applies once replication is built: until then a\n"
                     "# standalone node acknowledges a write once it is durable on its disk.\n"
                     "min_copies = 2\n"
                     "# How long a write waits for min_copies before it fails.\n"
                     "write_deadline_ms = 60000\n",
                     cluster, id, primary);
    tdm_assert(n > 0);
    tdm_assert((size_t)n < size);
}

struct node_init_args {
    const char *dir;
    const char *cluster;
    const char *id;
    const char *primary;
};

/* Check the command line of init (step 1). Returns -1 to go on, or an exit status. */
static int node_init_check(struct node_init_args *args, bool listen, bool ca, bool peer)
{
    if (listen || ca || peer) {
        tdm_cmd_fail("init: --%s needs replication (not built yet)",
                     listen ? "listen" : (ca ? "ca" : "peer"));
        return TDM_CMD_EXIT_USAGE;
    }
    if (args->dir == NULL) {
        tdm_cmd_fail("init: missing DIR (see tandem help init)");
        return TDM_CMD_EXIT_USAGE;
    }
    if (args->cluster == NULL || args->id == NULL) {
        tdm_cmd_fail("init: --cluster NAME and --node ID are required (see tandem help init)");
        return TDM_CMD_EXIT_USAGE;
    }
    const char *names[] = {args->cluster, args->id, args->primary};
    const char *flags[] = {"cluster", "node", "primary"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i] != NULL && !node_name_valid(names[i])) {
            tdm_cmd_fail("init: --%s '%s': use 1-63 letters, digits, '.', '_' or '-'", flags[i],
                         names[i]);
            return TDM_CMD_EXIT_USAGE;
        }
    }
    if (args->primary == NULL) {
        args->primary = args->id;
    }
    if (strcmp(args->primary, args->id) != 0) {
        tdm_cmd_fail("init: --primary %s: a standalone node is its own primary "
                     "(--peer needs replication, not built yet)",
                     args->primary);
        return TDM_CMD_EXIT_USAGE;
    }
    return -1;
}

/* Steps 2-4 of the header. */
static int node_init_create(const struct node_init_args *args)
{
    tdm_assert(node_name_valid(args->cluster));
    tdm_assert(node_name_valid(args->id));
    int rv = node_mkdir_parents(args->dir);
    if (rv != 0) {
        tdm_cmd_fail("init: create %s: %s", args->dir, tandem_strerror(rv));
        return TDM_CMD_EXIT_FAILED;
    }
    struct tdm_cmd_conf existing;
    struct tandem_diag diag = {{0}};
    rv = tdm_cmd_conf_read(args->dir, &existing, &diag);
    if (rv == 0) {
        tdm_cmd_fail("init: %s/tandem.conf exists: %s is already node '%s' of cluster '%s'",
                     args->dir, args->dir, existing.id, existing.cluster);
        return TDM_CMD_EXIT_FAILED;
    }
    if (rv != -ENOENT) {
        tdm_cmd_fail("init: %s/tandem.conf exists and cannot be read: %s", args->dir, diag.message);
        return TDM_CMD_EXIT_FAILED;
    }
    struct tandem *t;
    rv = tdm_cmd_open(args->dir, TANDEM_OPEN_CREATE, &t);
    if (rv != 0) {
        return TDM_CMD_EXIT_FAILED;
    }
    tandem_close(t);
    char text[NODE_CONF_SIZE_MAX];
    char what[TDM_CMD_PATH_SIZE + 32];
    node_conf_format(text, sizeof(text), args->cluster, args->id, args->primary);
    rv = node_conf_write(args->dir, text, what, sizeof(what));
    if (rv != 0) {
        tdm_cmd_fail("init: %s: %s", what, tandem_strerror(rv));
        return TDM_CMD_EXIT_FAILED;
    }
    return TDM_CMD_EXIT_OK;
}

int tdm_cmd_init(int argc, char **argv)
{
    struct node_init_args args = {0};
    const char *listen = NULL;
    const char *ca = NULL;
    const char *peer = NULL;
    bool has_listen = false;
    bool has_ca = false;
    bool has_peer = false;
    const struct tdm_cmd_option options[] = {
        {"cluster", true, &args.cluster, NULL},
        {"node", true, &args.id, NULL},
        {"primary", true, &args.primary, NULL},
        {"listen", true, &listen, &has_listen},
        {"ca", true, &ca, &has_ca},
        {"peer", true, &peer, &has_peer},
        {NULL, false, NULL, NULL},
    };
    const char *positional[1] = {NULL};
    int exit_status = tdm_cmd_parse(argc, argv, options, positional, 1, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    args.dir = positional[0];
    exit_status = node_init_check(&args, has_listen, has_ca, has_peer);
    if (exit_status >= 0) {
        return exit_status;
    }
    exit_status = node_init_create(&args);
    if (exit_status != TDM_CMD_EXIT_OK) {
        return exit_status;
    }
    printf("initialised %s: node %s of cluster %s, standalone primary\n", args.dir, args.id,
           args.cluster);
    return TDM_CMD_EXIT_OK;
}

static double node_seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

int tdm_cmd_reindex(int argc, char **argv)
{
    const struct tdm_cmd_option options[] = {{NULL, false, NULL, NULL}};
    const char *positional[1] = {NULL};
    int exit_status = tdm_cmd_parse(argc, argv, options, positional, 1, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    const char *dir = positional[0];
    if (dir == NULL) {
        tdm_cmd_fail("reindex: missing DIR (see tandem help reindex)");
        return TDM_CMD_EXIT_USAGE;
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct tandem_diag diag = {{0}};
    int rv = tandem_reindex(dir, &diag);
    if (rv != 0) {
        char what[TDM_CMD_PATH_SIZE + 16];
        snprintf(what, sizeof(what), "reindex %s", dir);
        tdm_cmd_fail_code(what, rv, &diag);
        return TDM_CMD_EXIT_FAILED;
    }
    double seconds = node_seconds_since(&start);
    struct tandem *t;
    struct tandem_status status;
    if (tdm_cmd_open(dir, TANDEM_OPEN_READONLY, &t) != 0) {
        return TDM_CMD_EXIT_FAILED;
    }
    rv = tandem_status(t, &status);
    tandem_close(t);
    if (rv != 0) {
        tdm_cmd_fail_code("reindex: status", rv, NULL);
        return TDM_CMD_EXIT_FAILED;
    }
    printf("reindexed %s: index rebuilt from the log, current to lsn %llu "
           "(log lsn %llu..%llu), %.2f s\n",
           dir, (unsigned long long)status.index_lsn, (unsigned long long)status.lsn_first,
           (unsigned long long)status.lsn_last, seconds);
    return TDM_CMD_EXIT_OK;
}

/* inih handler: keeps the keys tandem knows and ignores the others. */
static int node_conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct tdm_cmd_conf *conf = user;
    char *target = NULL;
    if (strcmp(section, "node") == 0 && strcmp(name, "cluster") == 0) {
        target = conf->cluster;
    } else if (strcmp(section, "node") == 0 && strcmp(name, "id") == 0) {
        target = conf->id;
    } else if (strcmp(section, "replication") == 0 && strcmp(name, "primary") == 0) {
        target = conf->primary;
    } else if (strcmp(section, "replication") == 0 && strcmp(name, "min_copies") == 0) {
        return tdm_cmd_parse_u32(value, &conf->min_copies) == 0;
    }
    if (target != NULL) {
        if (strlen(value) > TDM_CMD_NAME_SIZE_MAX) {
            return 0;
        }
        snprintf(target, TDM_CMD_NAME_SIZE_MAX + 1, "%s", value);
    }
    return 1;
}

int tdm_cmd_conf_read(const char *dir, struct tdm_cmd_conf *conf, struct tandem_diag *diag)
{
    tdm_assert(dir != NULL);
    tdm_assert(conf != NULL);
    char path[TDM_CMD_PATH_SIZE];
    snprintf(path, sizeof(path), "%s/tandem.conf", dir);
    memset(conf, 0, sizeof(*conf));
    FILE *file = fopen(path, "re");
    if (file == NULL) {
        int rv = -errno;
        snprintf(diag->message, sizeof(diag->message), "open tandem.conf: %s", strerror(-rv));
        return rv;
    }
    int line = ini_parse_file(file, node_conf_handler, conf);
    fclose(file);
    if (line != 0) {
        snprintf(diag->message, sizeof(diag->message), "tandem.conf: line %d: bad value", line);
        return TANDEM_EINVALID;
    }
    return 0;
}
