/* tools/cmd_node.c: "tandem init" and "tandem reindex", and reading tandem.conf.
 *
 * init, happy path:
 * 1. Check the names; with --listen, check HOST:PORT, every --peer ID=HOST:PORT
 *    (no duplicate, not this node), --primary (this node or a peer; default
 *    the first id in sorted order) and that --ca CADIR holds the CA of this
 *    cluster (tdm_pki_ca_cluster).
 * 2. Create DIR and its parents; refuse a DIR that already has a tandem.conf.
 *    With --index-dir PATH (absolute): create PATH, which must be empty, and
 *    make DIR/index a symbolic link to it (as PostgreSQL's initdb --waldir
 *    links pg_wal), then fsync DIR. A link to PATH left by an interrupted
 *    init is kept, whatever PATH holds.
 * 3. Create the store: tandem_open(DIR, TANDEM_OPEN_CREATE), tandem_close().
 * 4. With --listen: issue DIR/tls/{node.key,node.crt,ca.crt} from the CA
 *    (tdm_pki_issue, CN = node id), replacing what an interrupted init left.
 * 5. Write DIR/tandem.conf.tmp, fsync it, rename it to tandem.conf and fsync
 *    DIR, so that a crash leaves either no tandem.conf or a whole one.
 * Failure modes: a bad command line exits 2 before anything is created; a
 * failed step prints its cause and exits 1; what steps 2-4 created stays (init
 * can be run again, since tandem.conf is written last).
 *
 * reindex: tandem_reindex(DIR), then a read-only open to say how far the new
 * index reaches. It needs the directory's lock, so it fails (exit 1) while a
 * writer runs.
 *
 * tandem.conf is INI (read with inih): [node] cluster, id; [replication]
 * primary, min_copies, write_deadline_ms, and for a replicated node listen,
 * peer.<ID> = HOST:PORT (one line per other node) and tls_key, tls_cert,
 * tls_ca (paths relative to DIR). Unknown keys are ignored so that newer files
 * stay readable. */
#include "engine/base/path.h"
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
#include "engine/fs.h"
#include "net/tls.h"

#define NODE_DIR_MODE      0750 /* Node directories hold customer data. */
#define NODE_CONF_MODE     0640
#define NODE_CONF_SIZE_MAX 8192
#define NODE_PEERS_MAX     7   /* Other nodes: a cluster has at most 8 (PROTOCOL.md §2). */
#define NODE_ADDR_SIZE_MAX 263 /* "[" host "]:" port: a DNS name of 253 bytes and 5 digits. */
#define NODE_TLS_DIR       "tls"
#define NODE_DEADLINE_MS   10000 /* Default write deadline of a replicated node. */

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
                     "# is acknowledged. A standalone node (no peers) holds the only copy:\n"
                     "# it acknowledges a write once it is durable on its own disk.\n"
                     "min_copies = 2\n"
                     "# How long a write waits for min_copies before it fails.\n"
                     "write_deadline_ms = 60000\n",
                     cluster, id, primary);
    tdm_assert(n > 0);
    tdm_assert((size_t)n < size);
}

/* One --peer ID=HOST:PORT. */
struct node_peer {
    char id[TDM_CMD_NAME_SIZE_MAX + 1];
    const char *addr; /* Borrowed from argv. */
};

struct node_init_args {
    const char *dir;
    const char *cluster;
    const char *id;
    const char *primary;
    const char *listen; /* NULL: a standalone node. */
    const char *ca;
    const char *index_dir; /* NULL: DIR/index is a directory of DIR. */
    struct node_peer peers[NODE_PEERS_MAX];
    size_t peer_count;
};

/* True if text is 1-5 digits of a port in 1..65535. */
static bool node_port_valid(const char *text)
{
    size_t size = strlen(text);
    if (size == 0 || size > 5 || strspn(text, "0123456789") != size) {
        return false;
    }
    long port = strtol(text, NULL, 10);
    return port >= 1 && port <= 65535;
}

/* HOST:PORT with HOST a DNS name or IPv4 address, or [IPv6]:PORT. */
static bool node_addr_valid(const char *addr)
{
    size_t size = strlen(addr);
    if (size == 0 || size > NODE_ADDR_SIZE_MAX) {
        return false;
    }
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close == addr + 1 || close[1] != ':') {
            return false;
        }
        size_t host = (size_t)(close - addr - 1);
        return strspn(addr + 1, "0123456789abcdefABCDEF:.") == host &&
               memchr(addr + 1, ':', host) != NULL && node_port_valid(close + 2);
    }
    const char *colon = strchr(addr, ':');
    if (colon == NULL || colon == addr || strchr(colon + 1, ':') != NULL) {
        return false;
    }
    size_t host = (size_t)(colon - addr);
    return strspn(addr, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
               host &&
           node_port_valid(colon + 1);
}

/* Parse one --peer ID=HOST:PORT into peer. Returns -1 or an exit status. */
static int node_peer_parse(const char *text, struct node_peer *peer)
{
    const char *equals = strchr(text, '=');
    size_t id_size = equals != NULL ? (size_t)(equals - text) : 0;
    if (equals == NULL || id_size == 0 || id_size > TDM_CMD_NAME_SIZE_MAX) {
        tdm_cmd_fail("init: --peer '%s': expected ID=HOST:PORT", text);
        return TDM_CMD_EXIT_USAGE;
    }
    memcpy(peer->id, text, id_size);
    peer->id[id_size] = '\0';
    peer->addr = equals + 1;
    if (!node_name_valid(peer->id)) {
        tdm_cmd_fail("init: --peer '%s': id: use 1-63 letters, digits, '.', '_' or '-'", text);
        return TDM_CMD_EXIT_USAGE;
    }
    if (!node_addr_valid(peer->addr)) {
        tdm_cmd_fail("init: --peer '%s': bad HOST:PORT (port 1-65535; IPv6 as [::1]:7000)", text);
        return TDM_CMD_EXIT_USAGE;
    }
    return -1;
}

/* Parse the peers and check that ids are unique and not this node's. */
static int node_peers_check(struct node_init_args *args, const char **texts, size_t count)
{
    tdm_assert(count <= NODE_PEERS_MAX);
    for (size_t i = 0; i < count; i++) {
        int exit_status = node_peer_parse(texts[i], &args->peers[i]);
        if (exit_status >= 0) {
            return exit_status;
        }
        if (strcmp(args->peers[i].id, args->id) == 0) {
            tdm_cmd_fail("init: --peer %s: that is this node's own id", args->peers[i].id);
            return TDM_CMD_EXIT_USAGE;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(args->peers[i].id, args->peers[j].id) == 0) {
                tdm_cmd_fail("init: --peer %s given twice", args->peers[i].id);
                return TDM_CMD_EXIT_USAGE;
            }
        }
    }
    args->peer_count = count;
    return -1;
}

/* The primary of epoch 1: --primary (this node or a peer), or the first id in
 * sorted order, so that every node's init computes the same one. */
static int node_primary_check(struct node_init_args *args)
{
    if (args->primary == NULL) {
        args->primary = args->id;
        for (size_t i = 0; i < args->peer_count; i++) {
            if (strcmp(args->peers[i].id, args->primary) < 0) {
                args->primary = args->peers[i].id;
            }
        }
        return -1;
    }
    if (strcmp(args->primary, args->id) == 0) {
        return -1;
    }
    for (size_t i = 0; i < args->peer_count; i++) {
        if (strcmp(args->primary, args->peers[i].id) == 0) {
            return -1;
        }
    }
    tdm_cmd_fail("init: --primary %s: unknown id (not this node nor any --peer)", args->primary);
    return TDM_CMD_EXIT_USAGE;
}

/* --ca must hold the CA of this very cluster. */
static int node_ca_check(const struct node_init_args *args)
{
    char cluster[TDM_CMD_NAME_SIZE_MAX + 1];
    struct tdm_diag diag = {{0}};
    int rv = tdm_pki_ca_cluster(args->ca, cluster, sizeof(cluster), &diag);
    if (rv == -ENOENT || rv == -ENOTDIR) {
        tdm_cmd_fail("init: --ca %s: no CA there (create it with: tandem ca %s --cluster %s)",
                     args->ca, args->ca, args->cluster);
        return TDM_CMD_EXIT_USAGE;
    }
    if (rv != 0) {
        tdm_cmd_fail("init: --ca %s: %s", args->ca, diag.message);
        return TDM_CMD_EXIT_FAILED;
    }
    if (strcmp(cluster, args->cluster) != 0) {
        tdm_cmd_fail("init: --ca %s is the CA of cluster %s, not %s", args->ca, cluster,
                     args->cluster);
        return TDM_CMD_EXIT_USAGE;
    }
    return -1;
}

/* The options of a replicated node (step 1 of the header). */
static int node_init_check_replication(struct node_init_args *args, const char **peers,
                                       size_t peer_count)
{
    if (args->listen == NULL) {
        if (args->ca != NULL || peer_count > 0) {
            tdm_cmd_fail("init: --%s needs --listen HOST:PORT", args->ca != NULL ? "ca" : "peer");
            return TDM_CMD_EXIT_USAGE;
        }
        return -1;
    }
    if (!node_addr_valid(args->listen)) {
        tdm_cmd_fail("init: --listen '%s': bad HOST:PORT (port 1-65535; IPv6 as [::1]:7000)",
                     args->listen);
        return TDM_CMD_EXIT_USAGE;
    }
    if (args->ca == NULL) {
        tdm_cmd_fail("init: --listen needs --ca CADIR (create one with tandem ca CADIR "
                     "--cluster %s)",
                     args->cluster);
        return TDM_CMD_EXIT_USAGE;
    }
    int exit_status = node_peers_check(args, peers, peer_count);
    if (exit_status < 0) {
        exit_status = node_primary_check(args);
    }
    if (exit_status < 0) {
        exit_status = node_ca_check(args);
    }
    return exit_status;
}

/* Check the command line of init (step 1). Returns -1 to go on, or an exit status. */
static int node_init_check(struct node_init_args *args, const char **peers, size_t peer_count)
{
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
    if (args->index_dir != NULL && args->index_dir[0] != '/') {
        tdm_cmd_fail("init: --index-dir '%s': give an absolute path (DIR/index links to it)",
                     args->index_dir);
        return TDM_CMD_EXIT_USAGE;
    }
    int exit_status = node_init_check_replication(args, peers, peer_count);
    if (exit_status >= 0 || args->listen != NULL) {
        return exit_status;
    }
    if (args->primary == NULL) {
        args->primary = args->id;
    }
    if (strcmp(args->primary, args->id) != 0) {
        tdm_cmd_fail("init: --primary %s: a standalone node is its own primary "
                     "(name the other nodes with --listen, --ca and --peer)",
                     args->primary);
        return TDM_CMD_EXIT_USAGE;
    }
    return -1;
}

/* tandem.conf of a replicated node (step 5). */
static void node_conf_format_replicated(char *text, size_t size, const struct node_init_args *args)
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
                     "# The primary of epoch 1: the same in every node's tandem.conf.\n"
                     "primary = %s\n"
                     "# Where this node accepts links from its peers and from clients.\n"
                     "listen = %s\n"
                     "# The other nodes of the cluster: peer.<ID> = HOST:PORT.\n",
                     args->cluster, args->id, args->primary, args->listen);
    tdm_assert(n > 0);
    size_t used = (size_t)n;
    for (size_t i = 0; i < args->peer_count; i++) {
        tdm_assert(used < size);
        n = snprintf(text + used, size - used, "peer.%s = %s\n", args->peers[i].id,
                     args->peers[i].addr);
        tdm_assert(n > 0);
        used += (size_t)n;
    }
    tdm_assert(used < size);
    n = snprintf(text + used, size - used,
                 "# Nodes, this one included, that must hold a write durably before it\n"
                 "# is acknowledged.\n"
                 "min_copies = 2\n"
                 "# How long a write waits for min_copies before it fails.\n"
                 "write_deadline_ms = %d\n"
                 "# This node's TLS credentials from the cluster CA (relative to this\n"
                 "# directory). Links are mutual TLS 1.3; peers are pinned by node id.\n"
                 "tls_key = %s/%s\n"
                 "tls_cert = %s/%s\n"
                 "tls_ca = %s/%s\n",
                 NODE_DEADLINE_MS, NODE_TLS_DIR, TDM_TLS_KEY_FILE, NODE_TLS_DIR, TDM_TLS_CERT_FILE,
                 NODE_TLS_DIR, TDM_TLS_CA_FILE);
    tdm_assert(n > 0);
    tdm_assert(used + (size_t)n < size);
}

/* Step 4: DIR/tls from the CA. A tandem.conf-less DIR may hold the files of
 * an interrupted init: they are replaced. */
static int node_init_tls(const struct node_init_args *args)
{
    tdm_assert(args->listen != NULL);
    char tls_dir[TDM_CMD_PATH_SIZE];
    char path[TDM_CMD_PATH_SIZE + 16];
    snprintf(tls_dir, sizeof(tls_dir), "%s/%s", args->dir, NODE_TLS_DIR);
    const char *files[] = {TDM_TLS_KEY_FILE, TDM_TLS_CERT_FILE, TDM_TLS_CA_FILE};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", tls_dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            tdm_cmd_fail("init: remove %s: %s", path, strerror(errno));
            return TDM_CMD_EXIT_FAILED;
        }
    }
    struct tdm_diag diag = {{0}};
    int rv = tdm_pki_issue(args->ca, args->id, tls_dir, &diag);
    if (rv != 0) {
        tdm_cmd_fail("init: issue the certificate of %s: %s", args->id, diag.message);
        return TDM_CMD_EXIT_FAILED;
    }
    return TDM_CMD_EXIT_OK;
}

static int node_dir_entry_cb(void *data, const char *name)
{
    (void)data;
    (void)name;
    return 1; /* One entry is enough: stop the listing. */
}

/* True if path is a directory with no entry (the file-system table's list()
 * skips "." and ".."). */
static bool node_dir_empty(const char *path)
{
    struct tdm_fs *fs = tdm_fs_posix();
    return fs->list(fs, path, node_dir_entry_cb, NULL) == 0;
}

/* Step 2 with --index-dir: DIR/index, a link to an empty PATH of its own. */
static int node_init_index_dir(const struct node_init_args *args)
{
    char link_path[TDM_CMD_PATH_SIZE];
    char target[TDM_CMD_PATH_SIZE];
    snprintf(link_path, sizeof(link_path), "%s/index", args->dir);
    ssize_t n = readlink(link_path, target, sizeof(target) - 1);
    if (n >= 0) {
        target[n] = '\0';
        if (strcmp(target, args->index_dir) == 0) {
            return TDM_CMD_EXIT_OK; /* An interrupted init made it. */
        }
        tdm_cmd_fail("init: %s is a link to %s, not to --index-dir %s", link_path, target,
                     args->index_dir);
        return TDM_CMD_EXIT_FAILED;
    }
    struct stat st;
    if (lstat(link_path, &st) == 0) {
        tdm_cmd_fail("init: %s exists: the index is already in DIR (no --index-dir then)",
                     link_path);
        return TDM_CMD_EXIT_FAILED;
    }
    int rv = tdm_mkdir_parents(args->index_dir, 0700);
    if (rv != 0) {
        tdm_cmd_fail("init: --index-dir %s: create: %s", args->index_dir, tandem_strerror(rv));
        return TDM_CMD_EXIT_FAILED;
    }
    if (!node_dir_empty(args->index_dir)) {
        tdm_cmd_fail("init: --index-dir %s is not an empty directory (another node's index?)",
                     args->index_dir);
        return TDM_CMD_EXIT_FAILED;
    }
    if (symlink(args->index_dir, link_path) != 0) {
        tdm_cmd_fail("init: link %s to %s: %s", link_path, args->index_dir, strerror(errno));
        return TDM_CMD_EXIT_FAILED;
    }
    rv = node_fsync_path(args->dir, O_RDONLY | O_DIRECTORY);
    if (rv != 0) {
        tdm_cmd_fail("init: fsync %s: %s", args->dir, tandem_strerror(rv));
        return TDM_CMD_EXIT_FAILED;
    }
    return TDM_CMD_EXIT_OK;
}

/* Steps 2-5 of the header. */
static int node_init_create(const struct node_init_args *args)
{
    tdm_assert(node_name_valid(args->cluster));
    tdm_assert(node_name_valid(args->id));
    int rv = tdm_mkdir_parents(args->dir, NODE_DIR_MODE);
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
    if (args->index_dir != NULL && node_init_index_dir(args) != TDM_CMD_EXIT_OK) {
        return TDM_CMD_EXIT_FAILED;
    }
    struct tandem *t;
    rv = tdm_cmd_open(args->dir, TANDEM_OPEN_CREATE, &t);
    if (rv != 0) {
        return TDM_CMD_EXIT_FAILED;
    }
    tandem_close(t);
    if (args->listen != NULL && node_init_tls(args) != TDM_CMD_EXIT_OK) {
        return TDM_CMD_EXIT_FAILED;
    }
    char text[NODE_CONF_SIZE_MAX];
    char what[TDM_CMD_PATH_SIZE + 32];
    if (args->listen != NULL) {
        node_conf_format_replicated(text, sizeof(text), args);
    } else {
        node_conf_format(text, sizeof(text), args->cluster, args->id, args->primary);
    }
    rv = node_conf_write(args->dir, text, what, sizeof(what));
    if (rv != 0) {
        tdm_cmd_fail("init: %s: %s", what, tandem_strerror(rv));
        return TDM_CMD_EXIT_FAILED;
    }
    return TDM_CMD_EXIT_OK;
}

static void node_init_print(const struct node_init_args *args)
{
    if (args->listen == NULL) {
        printf("initialised %s: node %s of cluster %s, standalone primary\n", args->dir, args->id,
               args->cluster);
        return;
    }
    printf("initialised %s: node %s of cluster %s, listening on %s, %zu peer%s, primary %s, "
           "TLS credentials in %s/%s\n",
           args->dir, args->id, args->cluster, args->listen, args->peer_count,
           args->peer_count == 1 ? "" : "s", args->primary, args->dir, NODE_TLS_DIR);
}

int tdm_cmd_init(int argc, char **argv)
{
    struct node_init_args args = {0};
    const char *peer = NULL;
    const struct tdm_cmd_option options[] = {
        {"cluster", true, &args.cluster, NULL},
        {"node", true, &args.id, NULL},
        {"primary", true, &args.primary, NULL},
        {"listen", true, &args.listen, NULL},
        {"ca", true, &args.ca, NULL},
        {"peer", true, &peer, NULL},
        {"index-dir", true, &args.index_dir, NULL},
        {NULL, false, NULL, NULL},
    };
    const char *positional[1] = {NULL};
    int exit_status = tdm_cmd_parse(argc, argv, options, positional, 1, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    args.dir = positional[0];
    const char *peers[NODE_PEERS_MAX];
    size_t peer_count = 0;
    if (tdm_cmd_collect(argc, argv, options, "peer", peers, NODE_PEERS_MAX, &peer_count) != 0) {
        tdm_cmd_fail("init: more than %d --peer: a cluster has at most %d nodes", NODE_PEERS_MAX,
                     NODE_PEERS_MAX + 1);
        return TDM_CMD_EXIT_USAGE;
    }
    exit_status = node_init_check(&args, peers, peer_count);
    if (exit_status >= 0) {
        return exit_status;
    }
    exit_status = node_init_create(&args);
    if (exit_status != TDM_CMD_EXIT_OK) {
        return exit_status;
    }
    node_init_print(&args);
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
        if (tdm_cmd_parse_u32(value, &conf->min_copies) != 0) {
            snprintf(conf->bad, sizeof(conf->bad), "[%s] %s = %.100s", section, name, value);
            return 0;
        }
        return 1;
    } else if (strcmp(section, "replication") == 0 &&
               (strcmp(name, "listen") == 0 || strncmp(name, "peer.", 5) == 0)) {
        conf->replicated = true;
    }
    if (target != NULL) {
        if (strlen(value) > TDM_CMD_NAME_SIZE_MAX) {
            snprintf(conf->bad, sizeof(conf->bad), "[%s] %s = %.100s (longer than %d bytes)",
                     section, name, value, TDM_CMD_NAME_SIZE_MAX);
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
    if (line != 0 && conf->bad[0] != '\0') {
        snprintf(diag->message, sizeof(diag->message), "tandem.conf: line %d: bad value: %s", line,
                 conf->bad);
        return TANDEM_EINVALID;
    }
    if (line != 0) { /* inih found no '=' (or ':'), or an unclosed '['. */
        snprintf(diag->message, sizeof(diag->message),
                 "tandem.conf: line %d: neither [section] nor key = value", line);
        return TANDEM_EINVALID;
    }
    return 0;
}
