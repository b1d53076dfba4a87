/* tools/tandemd.c: "tandemd DIR", the node daemon (DESIGN "Public contracts"):
 * a thin user of libtandem's tandem_server_* API (include/tandem.h,
 * tools/server.c), which does the work.
 *
 * Happy path:
 * 0. Not root (RELIABILITY S13): started as root, tandemd runs as the owner
 *    of DIR (the service user the operator chowned it to: docs/OPERATIONS.md
 *    "Run as a service user"): supplementary groups, group, then user, before
 *    anything of DIR is opened, and proves it cannot become root again; its
 *    capabilities are then none. A DIR owned by root keeps root, with a
 *    warning line once the node serves (a refused start stays one line). A
 *    failed switch exits 1: never root when a service user was meant.
 *    No core dumps: a core of tandemd would hold customer records and the
 *    node's TLS key (RELIABILITY S13). RLIMIT_CORE 0, and not dumpable
 *    (PR_SET_DUMPABLE 0: no core even if a later setrlimit raised it, and
 *    only root may attach a debugger). A failure of either is one line on
 *    stderr, and tandemd goes on.
 * 1. Block SIGTERM and SIGINT, so that one sent while the node opens (recovery
 *    can take a while) waits, and stops the node once it serves.
 * 2. tandem_server_start(DIR): read DIR/tandem.conf, open the node for
 *    writing (its lock: a second tandemd on DIR fails here), serve the local
 *    socket DIR/tandemd.sock and, for a replicated node, its links and TLS
 *    clients (every append acknowledged only once min_copies nodes hold it
 *    durably), on the server's thread.
 * 3. sigwait() for SIGTERM or SIGINT.
 * 4. tandem_server_stop(): stop accepting, finish the requests in flight
 *    (their answers are written), close the links and the node; exit 0. A
 *    second SIGTERM or SIGINT meanwhile ends the process at once.
 * Every event is one line on stderr: started, listening, client errors,
 * stopping, stopped (the server's lines come through its trace, which tandemd
 * turns on with TANDEM_SERVER_TRACE).
 * Failure modes: a bad command line exits 2; a missing or bad tandem.conf, an
 * open error, a socket or listen address that cannot be bound exits 1 with the
 * cause in one line. */
#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tandem.h"

/* Step 3: the signal that stops the node. */
static int tandemd_wait(const sigset_t *stop)
{
    for (;;) {
        int signum = 0;
        if (sigwait(stop, &signum) == 0) {
            return signum;
        }
    }
}

/* Step 0: run as the owner of dir when started as root. Returns 0 (with
 * *as_root set if it stays root: dir belongs to root), or -1 with the cause
 * on stderr. */
static int tandemd_drop_root(const char *dir, bool *as_root)
{
    *as_root = false;
    if (geteuid() != 0) {
        return 0;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        return 0; /* The open names what is wrong with dir. */
    }
    if (st.st_uid == 0) {
        *as_root = true; /* Said once the node serves: a refusal stays one line. */
        return 0;
    }
    uid_t uid = st.st_uid;
    /* Let the service user give its index thread back normal priority while
     * a query waits for it (engine/commit.c "The index thread's priority"):
     * nice 0 needs RLIMIT_NICE 20 without CAP_SYS_NICE. Best effort. */
    struct rlimit nice_limit;
    if (getrlimit(RLIMIT_NICE, &nice_limit) == 0 && nice_limit.rlim_cur < 20) {
        nice_limit.rlim_cur = 20;
        if (nice_limit.rlim_max < 20) {
            nice_limit.rlim_max = 20;
        }
        (void)setrlimit(RLIMIT_NICE, &nice_limit);
    }
    const struct passwd *pw = getpwuid(uid);
    gid_t gid = pw != NULL ? pw->pw_gid : st.st_gid;
    const char *what = "setgroups";
    int rc = pw != NULL ? initgroups(pw->pw_name, gid) : setgroups(1, &gid);
    if (rc == 0) {
        what = "setgid";
        rc = setgid(gid);
    }
    if (rc == 0) {
        what = "setuid";
        rc = setuid(uid);
    }
    if (rc != 0) {
        fprintf(stderr, "tandemd: cannot run as uid %u, the owner of %s: %s: %s\n", (unsigned)uid,
                dir, what, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        fprintf(stderr, "tandemd: could become root again after switching to uid %u\n",
                (unsigned)uid);
        return -1;
    }
    fprintf(stderr, "tandemd: running as %s (uid %u, gid %u), the owner of %s\n",
            pw != NULL ? pw->pw_name : "an unnamed user", (unsigned)uid, (unsigned)gid, dir);
    return 0;
}

/* Step 0, after the switch (which resets the dumpable flag). */
static void tandemd_no_core(void)
{
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        fprintf(stderr, "tandemd: setrlimit(RLIMIT_CORE, 0): %s; core dumps stay possible\n",
                strerror(errno));
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        fprintf(stderr, "tandemd: prctl(PR_SET_DUMPABLE, 0): %s\n", strerror(errno));
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: tandemd DIR\n"
                        "Run the node in DIR (config DIR/tandem.conf) until SIGTERM; log to "
                        "stderr.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    const char *dir = argv[1];
    bool as_root = false;
    if (tandemd_drop_root(dir, &as_root) != 0) {
        return 1;
    }
    tandemd_no_core();
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    (void)sigprocmask(SIG_BLOCK, &stop, NULL);

    struct tandem_server_options options;
    tandem_server_options_init(&options);
    options.flags = TANDEM_SERVER_TRACE;
    struct tandem_server *server = NULL;
    struct tandem_diag diag = {{0}};
    int rv = tandem_server_start(dir, &options, &server, &diag);
    if (rv != 0) {
        fprintf(stderr, "tandemd: %s\n",
                diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        return 1;
    }
    struct tandem_server_info info;
    tandem_server_info(server, &info);
    struct tandem_status status;
    if (tandem_status(tandem_server_node(server), &status) == 0) {
        fprintf(stderr, "tandemd: started: node %s of cluster %s, %s, last lsn %llu\n",
                info.node_id, info.cluster, dir, (unsigned long long)status.lsn_last);
    }
    if (as_root) {
        fprintf(stderr,
                "tandemd: running as root, because %s belongs to root; chown -R it to a service "
                "user to run as that user (docs/OPERATIONS.md)\n",
                dir);
    }

    int signum = tandemd_wait(&stop);
    fprintf(stderr, "tandemd: stopping on %s\n", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    /* A second SIGTERM or SIGINT while the node stops ends the process at once
     * (their default action; the server's threads block them): what was
     * acknowledged is durable already. */
    (void)sigprocmask(SIG_UNBLOCK, &stop, NULL);
    tandem_server_stop(server);
    fprintf(stderr, "tandemd: stopped: %s closed\n", dir);
    return 0;
}
