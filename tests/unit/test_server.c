/* tests/unit/test_server.c: a node run in this process (include/tandem.h,
 * tandem_server_*; tools/server.c), as an application that embeds the engine
 * runs it, linked against libtandem.
 *
 * Method: the group setup makes a cluster CA and node certificates in a
 * tmpdir (net/tls.h, tdm_pki_*). Each test makes its node directories (the
 * engine's files with TANDEM_OPEN_CREATE, and a tandem.conf written here as
 * `tandem init` writes it, on free ports of 127.0.0.1), starts
 * tandem_server instances in this process, writes through the public client
 * API on a node's local socket, reads with the public queries on
 * tandem_server_node(), and stops the servers. "Nothing left running" is
 * checked by what a failed start leaves: the thread count of the process
 * (/proc/self/task), the socket file, and the directory's lock (a writer can
 * open it). Not the cmocka heap: the servers' threads allocate. */
#include "tdm_test.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/tls.h"
#include "net/uv.h"
#include "tandem.h"

#define PATH_SIZE   1024
#define POLL_MS_MAX 20000 /* Bound on waiting for a backup to show a record. */

static char tmp_dir[256];
static char ca_dir[PATH_SIZE];

static void path_make(char *out, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", tmp_dir, name);
    assert_true(n > 0 && n < PATH_SIZE);
}

static int group_setup(void **state)
{
    (void)state;
    assert_int_equal(tdm_test_tmpdir_create(tmp_dir, sizeof(tmp_dir)), 0);
    struct tdm_diag diag = {{0}};
    path_make(ca_dir, "ca");
    assert_int_equal(tdm_pki_ca_create(ca_dir, "c1", &diag), 0);
    unsetenv("TANDEM_TRACE");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tdm_test_tmpdir_remove(tmp_dir);
    return 0;
}

/* A port of 127.0.0.1 that was free a moment ago. */
static int port_free(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    socklen_t size = sizeof(address);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &size), 0);
    close(fd);
    return ntohs(address.sin_port);
}

static void file_write(const char *dir, const char *name, const char *text)
{
    char path[PATH_SIZE + 32];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(fputs(text, file) >= 0, 1);
    assert_int_equal(fclose(file), 0);
}

/* A new node directory tmp_dir/name: the engine's files and conf. */
static void node_make(char *dir, const char *name, const char *conf)
{
    path_make(dir, name);
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = TANDEM_OPEN_CREATE;
    struct tandem *t = NULL;
    assert_int_equal(tandem_open(dir, &options, &t, NULL), 0);
    tandem_close(t);
    file_write(dir, "tandem.conf", conf);
}

/* A replicated node tmp_dir/name, id of cluster c1 (node1 or node2; node1 is
 * the primary) listening on port, with the other as its peer; its certificate
 * from the group's CA. */
static void node_make_replicated(char *dir, const char *name, const char *id, int port,
                                 const char *peer_id, int peer_port, int min_copies)
{
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "[node]\ncluster = c1\nid = %s\n\n[replication]\nprimary = node1\n"
             "listen = 127.0.0.1:%d\npeer.%s = 127.0.0.1:%d\nmin_copies = %d\n"
             "write_deadline_ms = 20000\ntls_key = tls/node.key\ntls_cert = tls/node.crt\n"
             "tls_ca = tls/ca.crt\n",
             id, port, peer_id, peer_port, min_copies);
    node_make(dir, name, conf);
    char tls_dir[PATH_SIZE + 8];
    snprintf(tls_dir, sizeof(tls_dir), "%s/tls", dir);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_pki_issue(ca_dir, id, tls_dir, &diag), 0);
}

static int thread_count(void)
{
    DIR *tasks = opendir("/proc/self/task");
    assert_non_null(tasks);
    int count = 0;
    for (struct dirent *entry = readdir(tasks); entry != NULL; entry = readdir(tasks)) {
        count += entry->d_name[0] != '.';
    }
    closedir(tasks);
    return count;
}

static void sleep_ms(long ms)
{
    struct timespec delay = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&delay, NULL);
}

/* One message record of customer 7 with this Message-ID. */
static struct tandem_record message_make(const char *message_id)
{
    struct tandem_record record = {.type = TANDEM_RECORD_MESSAGE};
    struct tandem_message *message = &record.message;
    message->customer_id = 7;
    message->time_ns = 1795824000000000000LL;
    message->size = 4096;
    message->destination = TANDEM_DESTINATION_DELIVERED;
    message->classification = TANDEM_CLASSIFICATION_CLEAN;
    message->recipient = (struct tandem_bytes){"alice@customer7.example", 23};
    message->message_id = (struct tandem_bytes){message_id, strlen(message_id)};
    message->sender = (struct tandem_bytes){"bob@sender.example", 18};
    message->relay_ip.family = 4;
    message->relay_ip.bytes[0] = 192;
    message->relay_ip.bytes[3] = 2;
    message->subject = (struct tandem_bytes){"Hello", 5};
    return record;
}

/* Append one record through the local socket of dir; returns its LSN. */
static uint64_t client_append(const char *dir, const char *message_id)
{
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    int rv = tandem_client_open(dir, NULL, &client, &diag);
    if (rv != 0) {
        fail_msg("client open %s: %s: %s", dir, tandem_strerror(rv), diag.message);
    }
    struct tandem_record record = message_make(message_id);
    uint64_t lsn = 0;
    rv = tandem_client_append(client, &record, 1, &lsn, &diag);
    if (rv != 0) {
        fail_msg("append %s: %s: %s", message_id, tandem_strerror(rv), diag.message);
    }
    tandem_client_close(client);
    assert_true(lsn >= 1);
    return lsn;
}

/* What tandem_get() delivered. */
struct found {
    int count;
    uint64_t lsn;
    char subject[16];
};

static int found_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    struct found *found = data;
    assert_int_equal(record->type, TANDEM_RECORD_MESSAGE);
    found->count++;
    found->lsn = lsn;
    snprintf(found->subject, sizeof(found->subject), "%.*s", (int)record->message.subject.size,
             record->message.subject.data);
    return 0;
}

/* Poll t (a copy that may be behind) until it holds message_id at lsn. */
static void found_wait(struct tandem *t, const char *message_id, uint64_t lsn)
{
    struct found found = {0};
    for (int waited_ms = 0; waited_ms < POLL_MS_MAX; waited_ms += 10) {
        found = (struct found){0};
        struct tandem_diag diag = {{0}};
        assert_int_equal(tandem_get(t, message_id, strlen(message_id), found_cb, &found, &diag), 0);
        if (found.count > 0) {
            break;
        }
        sleep_ms(10);
    }
    assert_int_equal(found.count, 1);
    assert_int_equal(found.lsn, lsn);
    assert_string_equal(found.subject, "Hello");
}

static void server_start(const char *dir, struct tandem_server **out)
{
    struct tandem_diag diag = {{0}};
    int rv = tandem_server_start(dir, NULL, out, &diag);
    if (rv != 0) {
        fail_msg("start %s: %s: %s", dir, tandem_strerror(rv), diag.message);
    }
}

/* After a stop the socket file is gone and the directory's lock is free. */
static void assert_stopped(const char *dir)
{
    assert_false(tdm_test_file_exists(dir, "tandemd.sock"));
    struct tandem_options options;
    tandem_options_init(&options);
    struct tandem *t = NULL;
    assert_int_equal(tandem_open(dir, &options, &t, NULL), 0);
    tandem_close(t);
}

/* A standalone node run in this process serves its local socket: an append
 * through the client API is durable and visible to tandem_get() on
 * tandem_server_node() once acknowledged; the info names the node; stop
 * removes the socket and releases the lock. */
static void test_tandem_server_start__standalone(void **state)
{
    (void)state;
    char dir[PATH_SIZE];
    node_make(dir, "solo", "[node]\ncluster = c1\nid = solo\n");
    struct tandem_server *server = NULL;
    server_start(dir, &server);
    struct tandem_server_info info;
    tandem_server_info(server, &info);
    assert_string_equal(info.cluster, "c1");
    assert_string_equal(info.node_id, "solo");
    assert_false(info.replicated);
    assert_int_equal(info.min_copies, 1);
    assert_true(tdm_test_file_exists(dir, "tandemd.sock"));

    uint64_t lsn = client_append(dir, "<solo@mx.example>");
    found_wait(tandem_server_node(server), "<solo@mx.example>", lsn);
    struct tandem_status status;
    assert_int_equal(tandem_status(tandem_server_node(server), &status), 0);
    assert_int_equal(status.lsn_last, lsn);

    /* No replicas: a switchover or failover is refused with the reason. */
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(dir, NULL, &client, &diag), 0);
    char *json = NULL;
    assert_int_equal(tandem_client_switchover(client, NULL, &json, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "a standalone node has no replicas"));
    assert_int_equal(tandem_client_failover(client, "solo", TANDEM_FAILOVER_DRY_RUN, &json, &diag),
                     TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "a standalone node has no replicas"));
    assert_null(json);
    tandem_client_close(client);

    tandem_server_stop(server);
    assert_stopped(dir);
}

/* Two nodes of one cluster (min_copies 2) run in one process: an append on
 * the primary's socket is acknowledged and then read back from the backup's
 * own copy (tandem_server_node()); an append on the backup's socket is
 * forwarded to the primary and read back on both; both stop cleanly. */
static void test_tandem_server_start__replicated(void **state)
{
    (void)state;
    int port1 = port_free();
    int port2 = port_free();
    char dir1[PATH_SIZE];
    char dir2[PATH_SIZE];
    node_make_replicated(dir1, "node1", "node1", port1, "node2", port2, 2);
    node_make_replicated(dir2, "node2", "node2", port2, "node1", port1, 2);
    struct tandem_server *primary = NULL;
    struct tandem_server *backup = NULL;
    server_start(dir1, &primary);
    server_start(dir2, &backup);
    struct tandem_server_info info;
    tandem_server_info(backup, &info);
    assert_true(info.replicated);
    assert_int_equal(info.node_count, 2);
    assert_int_equal(info.min_copies, 2);

    uint64_t lsn = client_append(dir1, "<one@mx.example>");
    found_wait(tandem_server_node(backup), "<one@mx.example>", lsn);
    found_wait(tandem_server_node(primary), "<one@mx.example>", lsn);

    uint64_t forwarded = client_append(dir2, "<two@mx.example>");
    assert_int_equal(forwarded, lsn + 1);
    found_wait(tandem_server_node(primary), "<two@mx.example>", forwarded);
    found_wait(tandem_server_node(backup), "<two@mx.example>", forwarded);

    /* A switchover through the client API: node2 becomes the primary and
     * takes writes; a failover sent to another node than its target is
     * refused before anything is stepped. */
    struct tandem_client *client = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_client_open(dir1, NULL, &client, &diag), 0);
    char *json = NULL;
    int rv = TANDEM_EBUSY;
    for (int i = 0; i < 100 && rv == TANDEM_EBUSY; i++) { /* Until node2's link is live. */
        assert_int_equal(tandem_client_switchover(client, "node2", &json, &diag), 0);
        rv = strstr(json, "\"outcome\": \"done\"") != NULL ? 0 : TANDEM_EBUSY;
        if (rv != 0) {
            assert_non_null(strstr(json, "\"outcome\": \"refused\""));
            free(json);
            json = NULL;
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    assert_int_equal(rv, 0);
    assert_non_null(strstr(json, "\"target\": \"node2\""));
    assert_non_null(strstr(json, "\"acting\": true"));
    free(json);
    json = NULL;
    assert_int_equal(tandem_client_failover(client, "node2", 0, &json, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "this is node node1"));
    assert_null(json);
    assert_int_equal(tandem_client_switchover(client, "bad id", &json, &diag), TANDEM_EINVALID);
    assert_int_equal(tandem_client_failover(client, NULL, 0, &json, &diag), TANDEM_EINVALID);
    tandem_client_close(client);
    uint64_t after = client_append(dir1, "<three@mx.example>"); /* Forwarded to node2. */
    assert_int_equal(after, forwarded + 1);
    found_wait(tandem_server_node(backup), "<three@mx.example>", after);

    tandem_server_stop(backup);
    tandem_server_stop(primary);
    assert_stopped(dir1);
    assert_stopped(dir2);
}

/* Start on dir fails with code and a one-line diag containing word, and
 * leaves no thread running. */
static void assert_start_fails(const char *dir, int code, const char *word)
{
    int threads = thread_count();
    struct tandem_server *server = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_server_start(dir, NULL, &server, &diag), code);
    assert_null(server);
    if (strstr(diag.message, word) == NULL) {
        fail_msg("diag [%s] does not name %s", diag.message, word);
    }
    assert_null(strchr(diag.message, '\n'));
    /* A joined thread can stay listed in /proc/self/task for a moment while
     * the kernel finishes its exit: wait (bounded) for the count to drop. */
    for (int ms = 0; ms < 2000 && thread_count() > threads; ms++) {
        sleep_ms(1);
    }
    assert_int_equal(thread_count(), threads);
}

/* A bad tandem.conf fails the start with a diag naming the key and its line;
 * so do a replicated node without credentials and a missing tandem.conf.
 * Nothing is left running and the directory stays free for a writer. */
static void test_tandem_server_start__bad_conf(void **state)
{
    (void)state;
    char dir[PATH_SIZE];
    node_make(dir, "bad",
              "[node]\ncluster = c1\nid = node1\n\n[replication]\nlisten = 127.0.0.1:7000\n"
              "peer.node2 = 127.0.0.1:7001\nmin_copies = 0\n");
    assert_start_fails(dir, TANDEM_EINVALID, "line 8: bad value: [replication] min_copies = 0");
    assert_stopped(dir);

    file_write(dir, "tandem.conf",
               "[node]\ncluster = c1\nid = node1\n\n[replication]\nlisten = 127.0.0.1:7000\n"
               "peer.node2 = 127.0.0.1:7001\n");
    assert_start_fails(dir, TANDEM_EINVALID, "tls_key");

    char missing[PATH_SIZE];
    path_make(missing, "missing");
    assert_start_fails(missing, -ENOENT, "tandem init");

    struct tandem_server_options options;
    tandem_server_options_init(&options);
    options.flags = 0x80;
    struct tandem_server *server = NULL;
    struct tandem_diag diag = {{0}};
    assert_int_equal(tandem_server_start(dir, &options, &server, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "flags"));
}

/* tdm_uv_cluster_check(): a good cluster passes; each of its refusals names
 * the setting at fault, in one line. */
static struct tdm_uv_cluster_config cluster_good(void)
{
    struct tdm_uv_cluster_config c;
    memset(&c, 0, sizeof(c));
    snprintf(c.cluster, sizeof(c.cluster), "c1");
    snprintf(c.self_id, sizeof(c.self_id), "n1");
    snprintf(c.primary, sizeof(c.primary), "n2");
    c.node_count = 3;
    for (uint32_t i = 0; i < 3; i++) {
        snprintf(c.nodes[i].id, sizeof(c.nodes[i].id), "n%u", i + 1);
        snprintf(c.nodes[i].addr, sizeof(c.nodes[i].addr), "127.0.0.1:%u", 7000 + i);
    }
    c.min_copies = 2;
    c.write_deadline_ms = 10000;
    c.rotation_count = 2;
    snprintf(c.rotation[0], sizeof(c.rotation[0]), "n3");
    snprintf(c.rotation[1], sizeof(c.rotation[1]), "n1");
    return c;
}

/* Case i of the refusals: break one setting of c; returns the words the
 * refusal must say, or NULL past the last case. */
static const char *cluster_break(struct tdm_uv_cluster_config *c, int i)
{
    switch (i) {
    case 0:
        snprintf(c->cluster, sizeof(c->cluster), "bad name");
        return "[node] cluster 'bad name'";
    case 1:
        c->node_count = 0;
        return "0 nodes: a cluster has 1 to";
    case 2:
        c->node_count = TDM_UV_NODES_MAX + 1;
        return "nodes: a cluster has 1 to";
    case 3:
        snprintf(c->nodes[2].id, sizeof(c->nodes[2].id), "n/3");
        return "node id 'n/3'";
    case 4:
        snprintf(c->nodes[0].addr, sizeof(c->nodes[0].addr), "127.0.0.1");
        return "[replication] listen '127.0.0.1': expected HOST:PORT";
    case 5:
        snprintf(c->nodes[1].addr, sizeof(c->nodes[1].addr), "h:0");
        return "[replication] peer 'h:0': expected HOST:PORT";
    case 6:
        snprintf(c->nodes[2].id, sizeof(c->nodes[2].id), "n2");
        return "node id 'n2' given twice";
    case 7:
        snprintf(c->self_id, sizeof(c->self_id), "n9");
        return "[replication] listen is not set for this node (n9)";
    case 8:
        snprintf(c->primary, sizeof(c->primary), "n9");
        return "[replication] primary 'n9': not this node nor any peer";
    case 9:
        c->min_copies = 4;
        return "[replication] min_copies 4: must be 1 to the 3 nodes";
    case 10:
        c->min_copies = 0;
        return "[replication] min_copies 0";
    case 11:
        c->write_deadline_ms = 0;
        return "[replication] write_deadline_ms 0: must be 1 to";
    case 12:
        c->rotation_count = 4;
        return "[replication] rotation: 4 ids for 3 nodes";
    case 13:
        snprintf(c->rotation[1], sizeof(c->rotation[1]), "n7");
        return "[replication] rotation: 'n7' is not this node nor any peer";
    case 14:
        snprintf(c->rotation[1], sizeof(c->rotation[1]), "n3");
        return "[replication] rotation: 'n3' given twice";
    default:
        return NULL;
    }
}

static void test_cluster_check__refusals(void **state)
{
    (void)state;
    struct tdm_uv_cluster_config c = cluster_good();
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_uv_cluster_check(&c, &diag), 0);
    int cases = 0;
    for (const char *words = cluster_break(&c, 0); words != NULL;
         words = cluster_break(&c, ++cases)) {
        diag.message[0] = '\0';
        assert_int_equal(tdm_uv_cluster_check(&c, &diag), TANDEM_EINVALID);
        if (strstr(diag.message, words) == NULL) {
            fail_msg("case %d: diag [%s] does not say [%s]", cases, diag.message, words);
        }
        assert_null(strchr(diag.message, '\n'));
        c = cluster_good();
    }
    assert_int_equal(cases, 15);
}

/* [replication] switchover_interval and rotation (docs/OPERATIONS.md
 * "Switchover"): a bad value fails the start naming the key, its line and
 * the expected form; good values get past the configuration (the start then
 * fails only on the credentials, which do not exist here). */
static void test_tandem_server_start__switchover_conf(void **state)
{
    (void)state;
    static const char *const bad_intervals[] = {
        "10", "5x", "50ms", "-1h", "400d", "h", "1.5h", "99999999999999999999s", ""};
    char dir[PATH_SIZE];
    char conf[1024];
    char expected[256];
    const char *head = "[node]\ncluster = c1\nid = node1\n\n[replication]\nlisten = "
                       "127.0.0.1:7000\npeer.node2 = 127.0.0.1:7001\npeer.node3 = "
                       "127.0.0.1:7002\ntls_key = none.key\ntls_cert = none.crt\ntls_ca = "
                       "none.ca\n";
    node_make(dir, "switch", "");
    for (size_t i = 0; i < sizeof(bad_intervals) / sizeof(bad_intervals[0]); i++) {
        snprintf(conf, sizeof(conf), "%sswitchover_interval = %s\n", head, bad_intervals[i]);
        file_write(dir, "tandem.conf", conf);
        snprintf(expected, sizeof(expected),
                 "line 12: bad value: [replication] switchover_interval = %s (expected off, or "
                 "100ms to 365d",
                 bad_intervals[i]);
        assert_start_fails(dir, TANDEM_EINVALID, expected);
    }
    static const char *const bad_rotations[] = {"node1,,node2", "node1 node2", ",node1", "node1,",
                                                "a,b,c,d,e,f,g,h,i"};
    for (size_t i = 0; i < sizeof(bad_rotations) / sizeof(bad_rotations[0]); i++) {
        snprintf(conf, sizeof(conf), "%srotation = %s\n", head, bad_rotations[i]);
        file_write(dir, "tandem.conf", conf);
        snprintf(expected, sizeof(expected),
                 "line 12: bad value: [replication] rotation = %s (expected node ids separated "
                 "by commas)",
                 bad_rotations[i]);
        assert_start_fails(dir, TANDEM_EINVALID, expected);
    }
    snprintf(conf, sizeof(conf), "%srotation = node2, node4\n", head);
    file_write(dir, "tandem.conf", conf);
    assert_start_fails(dir, TANDEM_EINVALID, "[replication] rotation: 'node4' is not this node");
    snprintf(conf, sizeof(conf), "%srotation = node2,node1,node2\n", head);
    file_write(dir, "tandem.conf", conf);
    assert_start_fails(dir, TANDEM_EINVALID, "[replication] rotation: 'node2' given twice");
    static const char *const good_intervals[] = {"24h", "30m", "90s", "500ms", "off", "7d"};
    for (size_t i = 0; i < sizeof(good_intervals) / sizeof(good_intervals[0]); i++) {
        snprintf(conf, sizeof(conf), "%sswitchover_interval = %s\nrotation = node3, node1,node2\n",
                 head, good_intervals[i]);
        file_write(dir, "tandem.conf", conf);
        assert_start_fails(dir, -ENOENT, "none.");
    }
    assert_stopped(dir);
}

/* A second server on a directory that one serves fails with the lock named,
 * after its thread opened nothing, and leaves the first one serving; so does
 * a credential file that cannot be read, after the node was opened (the open
 * is undone: the lock is free again). */
static void test_tandem_server_start__fails_after_the_thread_started(void **state)
{
    (void)state;
    char dir[PATH_SIZE];
    node_make(dir, "locked", "[node]\ncluster = c1\nid = locked\n");
    struct tandem_server *server = NULL;
    server_start(dir, &server);
    assert_start_fails(dir, TANDEM_ELOCKED, "lock");
    assert_true(tdm_test_file_exists(dir, "tandemd.sock"));
    uint64_t lsn = client_append(dir, "<locked@mx.example>");
    found_wait(tandem_server_node(server), "<locked@mx.example>", lsn);
    tandem_server_stop(server);
    assert_stopped(dir);

    char dir2[PATH_SIZE];
    node_make_replicated(dir2, "nocert", "node1", port_free(), "node2", port_free(), 2);
    char key[PATH_SIZE + 32];
    snprintf(key, sizeof(key), "%s/tls/node.key", dir2);
    assert_int_equal(unlink(key), 0);
    assert_start_fails(dir2, -ENOENT, "node.key");
    assert_stopped(dir2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tandem_server_start__standalone),
        cmocka_unit_test(test_tandem_server_start__replicated),
        cmocka_unit_test(test_tandem_server_start__bad_conf),
        cmocka_unit_test(test_cluster_check__refusals),
        cmocka_unit_test(test_tandem_server_start__switchover_conf),
        cmocka_unit_test(test_tandem_server_start__fails_after_the_thread_started),
    };
    return cmocka_run_group_tests_name("server", tests, group_setup, group_teardown);
}
