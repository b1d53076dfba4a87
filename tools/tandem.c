/* tools/tandem.c: the tandem command-line tool: dispatch, help and what the
 * commands share (tools/cmd.h). Contract: DESIGN "Public contracts".
 *
 * 1. main() looks the first argument up in the command table and calls the
 *    command's function with the rest (argv[0] = the command's name).
 * 2. The command parses its options with tdm_cmd_parse(), resolves --node
 *    [--cert] with tdm_cmd_node_resolve(), connects to a running node with
 *    tdm_cmd_connect() (a directory's local socket, or HOST:PORT over TCP +
 *    mutual TLS, net/client.h) or, for a directory with no tandemd, opens it
 *    with tdm_cmd_open(), and prints its results on stdout.
 * Failure modes: every error is one line "tandem: <cause>" on stderr and an
 * exit status: 1 when the operation failed or found nothing, 2 for a bad
 * command line (unknown command or option, missing or malformed value, a
 * HOST:PORT without a client certificate), and for switchover and failover
 * also a node that cannot be reached (tools/cmd_switch.c) and verify (an
 * error that stopped the check, tools/cmd_verify.c). */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/assert.h"
#include "net/client.h"

struct cmd_entry {
    const char *name;
    int (*run)(int argc, char **argv); /* NULL only for "help" (cmd_help). */
    const char *summary;               /* One line for "tandem --help". */
    const char *usage;                 /* "tandem help NAME": synopsis and options. */
};

static const struct cmd_entry cmd_table[] = {
    {"init", tdm_cmd_init, "create a node directory",
     "usage: tandem init DIR --cluster NAME --node ID [--primary ID]\n"
     "       [--listen HOST:PORT --ca CADIR] [--peer ID=HOST:PORT]...\n"
     "       [--index-dir PATH]\n"
     "\n"
     "Create DIR (and its parents) as node ID of cluster NAME: DIR/tandem.conf,\n"
     "DIR/log/, DIR/index/, DIR/quarantine/. Refuses a directory that already has\n"
     "a tandem.conf. NAME and ID: letters, digits, '.', '_' and '-', at most 63\n"
     "bytes. Without --listen the node is standalone (its own primary).\n"
     "With --listen HOST:PORT --ca CADIR the node replicates: its key and\n"
     "certificate (CN ID) are issued from the cluster CA into DIR/tls/, and\n"
     "tandem.conf lists the other nodes (--peer ID=HOST:PORT, repeatable) and the\n"
     "primary of epoch 1 (--primary ID, default the first id in sorted order of\n"
     "this node and its peers). IPv6 hosts go in brackets: [::1]:7000.\n"
     "With --index-dir PATH (absolute; created, must be empty) the index lives\n"
     "there, on another disk for instance, and DIR/index is a link to it.\n"},
    {"append", tdm_cmd_append, "write JSON Lines records from stdin",
     "usage: tandem append --node ADDR [--cert DIR] < records.jsonl\n"
     "\n"
     "Read records (JSON Lines, one object per line) from stdin as a stream and\n"
     "write them. Prints one line {\"lsn\": N} per record, in input order, once it\n"
     "is durable; nothing else goes to stdout. Each line is checked before it is\n"
     "written: at the first bad line the command stops with exit status 1 and an\n"
     "error naming the line and the field; the lines before it are stored (and\n"
     "their LSNs printed), none after it. Empty lines are skipped.\n"
     "ADDR: a node directory, or HOST:PORT with a client certificate (--cert DIR\n"
     "or TANDEM_CERT; see tandem --help). Through a replicated node an LSN is\n"
     "printed once the record is durable on min_copies nodes.\n"},
    {"get", tdm_cmd_get, "print the message records with a Message-ID",
     "usage: tandem get --node ADDR [--cert DIR] --message-id ID\n"
     "\n"
     "Print every message record with this Message-ID as JSON Lines with \"lsn\",\n"
     "in LSN order. Exit status 1 when there is none.\n"},
    {"query", tdm_cmd_query, "print a customer's message records",
     "usage: tandem query --node ADDR [--cert DIR] --customer N [--since T]\n"
     "       [--until T] [--recipient ADDRESS] [--sender ADDRESS]\n"
     "\n"
     "Print customer N's message records with since <= time < until, in time\n"
     "order, as JSON Lines with \"lsn\". T is RFC 3339 (2026-11-28T03:57:02Z).\n"
     "--sender '' selects bounces (empty sender). Exit status 1 when there is none.\n"},
    {"customer", tdm_cmd_customer, "print a customer record",
     "usage: tandem customer --node ADDR [--cert DIR] (--id N | --username U |\n"
     "       --email E)\n"
     "\n"
     "Print the current customer record of customer N, or the customers with this\n"
     "username or email (in customer_id order), as JSON Lines with \"lsn\".\n"
     "Exit status 1 when there is none.\n"},
    {"status", tdm_cmd_status, "show the health of the cluster as a node sees it",
     "usage: tandem status --node ADDR [--cert DIR] [--json] [--watch]\n"
     "\n"
     "Show health, roles, LSNs, lag, the log, the index and any damaged ranges.\n"
     "Exit status 0 healthy, 1 degraded (damage to repair), 2 broken (writes\n"
     "stopped) or unreachable. --json prints one JSON object (schema 1);\n"
     "--watch repeats every 2 seconds until interrupted. A HOST:PORT that does\n"
     "not answer is unreachable: exit status 2.\n"},
    {"reindex", tdm_cmd_reindex, "rebuild a node's index from its log",
     "usage: tandem reindex DIR\n"
     "\n"
     "Rebuild DIR/index/ from the log, from scratch. Needs the directory's lock:\n"
     "stop the process that writes to DIR first.\n"},
    {"generate", tdm_cmd_generate, "print synthetic records (for demos and tests)",
     "usage: tandem generate [--seed S] [--count N] [--customers C]\n"
     "\n"
     "Print C customer records (default 100), then N message records (default\n"
     "1000) as JSON Lines, the same for the same seed S (default 1).\n"},
    {"ca", tdm_cmd_ca, "create a cluster CA or a client certificate",
     "usage: tandem ca CADIR --cluster NAME\n"
     "       tandem ca CADIR --client NAME [--out DIR]\n"
     "\n"
     "--cluster: create the private CA of cluster NAME in CADIR (and its parents):\n"
     "CADIR/ca.key (mode 0600: keep it private) and CADIR/ca.crt. Refuses a CADIR\n"
     "that already holds a CA. Node certificates come from 'tandem init --ca'.\n"
     "--client: issue a client certificate (CN client:NAME) into DIR, by default\n"
     "CADIR/clients/NAME: node.key, node.crt, ca.crt. Give DIR to the CLI as\n"
     "--cert DIR or TANDEM_CERT. Keys are EC P-256; certificates last 10 years.\n"},
    {"switchover", tdm_cmd_switchover, "move the primary role to another node (planned)",
     "usage: tandem switchover --node ADDR [--cert DIR] [--to ID] [--json]\n"
     "\n"
     "Ask the primary at ADDR (a node directory with tandemd running, or HOST:PORT\n"
     "with --cert) to hand the primary role to node ID, or to the next live,\n"
     "caught-up node of [replication] rotation. Writers see a pause, never an\n"
     "error. Prints what happened: the new primary, the epoch and how long writes\n"
     "were held; or why it was refused (nothing changed) or abandoned (the old\n"
     "primary resumed in an epoch of its own). --json prints the node's answer as\n"
     "one JSON object. Exit status 0 once the new primary accepts writes, 1\n"
     "refused or abandoned, 2 node unreachable or bad usage.\n"},
    {"failover", tdm_cmd_failover, "promote a backup when the primary is lost (unplanned)",
     "usage: tandem failover --node ADDR --to ID [--cert DIR] [--dry-run] [--force] [--json]\n"
     "\n"
     "Promote node ID, which must be the node at ADDR (the target carries out\n"
     "the failover), once the primary is gone. Without --force it refuses, and\n"
     "changes nothing, while the old primary answers (or a backup still hears\n"
     "it), when a backup does not answer, or when a backup holds more durable\n"
     "data than ID. --dry-run probes every node and prints what a promotion\n"
     "would do: the table of nodes, the epoch it would open and the LSNs it\n"
     "could lose, with their records per customer as far as ID's own copy holds\n"
     "them. --force promotes anyway and records the LSNs at risk in the new\n"
     "epoch's history. Exit status 0 done (dry run: a real run would go ahead),\n"
     "1 refused or abandoned (dry run: would be refused), 2 node unreachable or\n"
     "bad usage.\n"},
    {"verify", tdm_cmd_verify, "re-read a node's log from disk and check every checksum",
     "usage: tandem verify --node ADDR [--cert DIR] [--deep]\n"
     "\n"
     "Re-read every segment of the node's log from the disk now (not the page\n"
     "cache) and recompute every batch checksum, the chain hash and every footer;\n"
     "print what was checked, the chain hash at the last LSN and every damaged\n"
     "range. --deep also proves the index equal to a rebuild from the log, and\n"
     "rebuilds it when it is not. ADDR is a node directory (verified in this\n"
     "process when no tandemd runs there, else by its tandemd) or HOST:PORT of a\n"
     "running node (with a client certificate: --cert DIR or TANDEM_CERT); a\n"
     "running node verifies beside its writes and sends progress lines, printed\n"
     "on stderr. Exit status 0 intact, 1 damage found (or the index differed and\n"
     "was rebuilt), 2 unreachable, bad usage or an error that stopped the check.\n"},
    {"history", tdm_cmd_history, "show every epoch: primary, cause, time, pause, risk",
     "usage: tandem history --node ADDR [--cert DIR] [--json]\n"
     "\n"
     "Print the node's epoch history (DIR/epochs), oldest first: each epoch's\n"
     "primary (node id), first LSN, cause (init, restart, scheduled, command,\n"
     "resumed, failover, forced, reopen), time (RFC 3339 UTC), the write pause a\n"
     "switchover measured (ms, on its old primary), the LSNs a forced failover put\n"
     "at risk, and the batches in quarantine written in that epoch. --json prints\n"
     "one JSON document. A node directory is read directly (tandemd may run or\n"
     "not); HOST:PORT asks the node. Exit status 1 for a standalone node (no\n"
     "replication history) or a damaged DIR/epochs (the error names the line).\n"},
    {"quarantine", tdm_cmd_quarantine, "list or export what a node holds in quarantine",
     "usage: tandem quarantine --node ADDR [--cert DIR] [--json | --export FILE|-]\n"
     "\n"
     "List DIR/quarantine/: per file why it is there (torn tail, cut at a fork\n"
     "point), the LSN range and epochs of its batches, batch and record counts,\n"
     "bytes, time, and every unreadable range. --json prints one JSON document.\n"
     "--export writes the records of every batch that verifies as JSON Lines with\n"
     "\"lsn\" (as tandem get prints them) to FILE, or stdout for -, for\n"
     "reconciliation; from HOST:PORT they stream from the node. Exit status 0,\n"
     "or 1 when unreadable ranges could not be exported (one line says how many).\n"},
    {"help", NULL, "show the help of a command", "usage: tandem help [COMMAND]\n"},
};

#define CMD_COUNT (sizeof(cmd_table) / sizeof(cmd_table[0]))

static const struct cmd_entry *cmd_find(const char *name)
{
    tdm_assert(name != NULL);
    for (size_t i = 0; i < CMD_COUNT; i++) {
        if (strcmp(cmd_table[i].name, name) == 0) {
            return &cmd_table[i];
        }
    }
    return NULL;
}

static void cmd_help_print(FILE *out)
{
    fputs("usage: tandem COMMAND [OPTIONS]\n"
          "\n"
          "tandem stores mail metadata and customer records in a node directory.\n"
          "ADDR is a node directory (through its tandemd when one runs there, else\n"
          "opened directly), or HOST:PORT: a node's listen address, over TCP and\n"
          "mutual TLS 1.3 with a client certificate ('tandem ca CADIR --client NAME')\n"
          "named by --cert DIR or the environment variable TANDEM_CERT.\n"
          "\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < CMD_COUNT; i++) {
        fprintf(out, "  %-11s %s\n", cmd_table[i].name, cmd_table[i].summary);
    }
    fputs("\nRun 'tandem help COMMAND' for a command's options. Errors are one line on\n"
          "stderr; exit status 0 success, 1 failure or nothing found, 2 bad usage.\n",
          out);
}

static int cmd_help(int argc, char **argv)
{
    if (argc <= 1) {
        cmd_help_print(stdout);
        return TDM_CMD_EXIT_OK;
    }
    if (argc > 2) {
        tdm_cmd_fail("help: expected one command name, got %d arguments", argc - 1);
        return TDM_CMD_EXIT_USAGE;
    }
    const struct cmd_entry *entry = cmd_find(argv[1]);
    if (entry == NULL) {
        tdm_cmd_fail("help: unknown command '%s' (see tandem --help)", argv[1]);
        return TDM_CMD_EXIT_USAGE;
    }
    fputs(entry->usage, stdout);
    return TDM_CMD_EXIT_OK;
}

/* Open /dev/null on any of fds 0-2 that the caller closed. Otherwise the
 * engine's first open(2) would get, say, fd 0, and "tandem append" would read
 * its own lock file as input. Returns false if that is impossible. */
static bool cmd_standard_fds_open(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) {
            continue;
        }
        int null_fd = open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);
        if (null_fd != fd) {
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    if (!cmd_standard_fds_open()) {
        return TDM_CMD_EXIT_FAILED;
    }
    if (argc < 2) {
        tdm_cmd_fail("missing command (see tandem --help)");
        return TDM_CMD_EXIT_USAGE;
    }
    const char *name = argv[1];
    int exit_status;
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        name = "help";
        cmd_help_print(stdout);
        exit_status = TDM_CMD_EXIT_OK;
    } else if (strcmp(name, "help") == 0) {
        exit_status = cmd_help(argc - 1, argv + 1);
    } else {
        const struct cmd_entry *entry = cmd_find(name);
        if (entry == NULL) {
            tdm_cmd_fail("unknown command '%s' (see tandem --help)", name);
            return TDM_CMD_EXIT_USAGE;
        }
        tdm_assert(entry->run != NULL); /* Only "help" has none, and it is handled above. */
        exit_status = entry->run(argc - 1, argv + 1);
    }
    /* Output that did not reach stdout (a full disk, /dev/full) must not pass
     * for success: the command's own answer is lost. A command that failed
     * has said why already; status's "degraded" (1) is an answer too. */
    bool status = strcmp(name, "status") == 0;
    bool answered = exit_status == TDM_CMD_EXIT_OK || (status && exit_status == 1);
    if ((fflush(stdout) != 0 || ferror(stdout)) && answered) {
        tdm_cmd_fail("%s: write to stdout failed", name);
        return status ? TDM_CMD_EXIT_USAGE : TDM_CMD_EXIT_FAILED;
    }
    return exit_status;
}

void tdm_cmd_fail(const char *format, ...)
{
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    /* One line, always: a cause that carries a newline would break scripts. */
    for (char *c = line; *c != '\0'; c++) {
        if (*c == '\n' || *c == '\r') {
            *c = ' ';
        }
    }
    fprintf(stderr, "tandem: %s\n", line);
}

void tdm_cmd_fail_code(const char *what, int rv, const struct tandem_diag *diag)
{
    tdm_assert(what != NULL);
    tdm_assert(rv < 0);
    if (diag != NULL && diag->message[0] != '\0') {
        tdm_cmd_fail("%s: %s: %s", what, tandem_strerror(rv), diag->message);
    } else {
        tdm_cmd_fail("%s: %s", what, tandem_strerror(rv));
    }
}

/* Handle "--help" or report an unknown option. */
static int cmd_parse_unknown(const char *command, const char *arg)
{
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        const struct cmd_entry *entry = cmd_find(command);
        tdm_assert(entry != NULL);
        fputs(entry->usage, stdout);
        return TDM_CMD_EXIT_OK;
    }
    tdm_cmd_fail("%s: unknown option '%s' (see tandem help %s)", command, arg, command);
    return TDM_CMD_EXIT_USAGE;
}

/* Match argv[*index] against options; consume its value. */
static int cmd_parse_option(int argc, char **argv, int *index, const struct tdm_cmd_option *options)
{
    const char *arg = argv[*index] + 2;
    const char *equals = strchr(arg, '=');
    size_t name_size = equals != NULL ? (size_t)(equals - arg) : strlen(arg);
    for (const struct tdm_cmd_option *option = options; option->name != NULL; option++) {
        if (strlen(option->name) != name_size || memcmp(option->name, arg, name_size) != 0) {
            continue;
        }
        if (!option->takes_value) {
            if (equals != NULL) {
                tdm_cmd_fail("%s: --%s takes no value", argv[0], option->name);
                return TDM_CMD_EXIT_USAGE;
            }
        } else if (equals != NULL) {
            *option->value = equals + 1;
        } else if (*index + 1 < argc) {
            *index += 1;
            *option->value = argv[*index];
        } else {
            tdm_cmd_fail("%s: --%s needs a value", argv[0], option->name);
            return TDM_CMD_EXIT_USAGE;
        }
        if (option->present != NULL) {
            *option->present = true;
        }
        return -1;
    }
    return cmd_parse_unknown(argv[0], argv[*index]);
}

int tdm_cmd_parse(int argc, char **argv, const struct tdm_cmd_option *options,
                  const char **positional, size_t positional_max, size_t *positional_count)
{
    tdm_assert(argc >= 1);
    tdm_assert(options != NULL);
    size_t count = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            if (arg[1] != '-') {
                return cmd_parse_unknown(argv[0], arg);
            }
            int exit_status = cmd_parse_option(argc, argv, &i, options);
            if (exit_status >= 0) {
                return exit_status;
            }
            continue;
        }
        if (count == positional_max) {
            tdm_cmd_fail("%s: unexpected argument '%s' (see tandem help %s)", argv[0], arg,
                         argv[0]);
            return TDM_CMD_EXIT_USAGE;
        }
        positional[count] = arg;
        count++;
    }
    if (positional_count != NULL) {
        *positional_count = count;
    }
    return -1;
}

/* The option of options that arg ("--name" or "--name=value") names, or NULL. */
static const struct tdm_cmd_option *cmd_option_find(const struct tdm_cmd_option *options,
                                                    const char *arg)
{
    const char *name = arg + 2;
    const char *equals = strchr(name, '=');
    size_t name_size = equals != NULL ? (size_t)(equals - name) : strlen(name);
    for (const struct tdm_cmd_option *option = options; option->name != NULL; option++) {
        if (strlen(option->name) == name_size && memcmp(option->name, name, name_size) == 0) {
            return option;
        }
    }
    return NULL;
}

int tdm_cmd_collect(int argc, char **argv, const struct tdm_cmd_option *options, const char *name,
                    const char **values, size_t values_max, size_t *count)
{
    tdm_assert(name != NULL);
    tdm_assert(count != NULL);
    *count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            break;
        }
        if (arg[0] != '-' || arg[1] != '-') {
            continue;
        }
        const struct tdm_cmd_option *option = cmd_option_find(options, arg);
        if (option == NULL || !option->takes_value) {
            continue;
        }
        const char *equals = strchr(arg, '=');
        const char *value = equals != NULL ? equals + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (value == NULL || strcmp(option->name, name) != 0) {
            continue;
        }
        if (*count == values_max) {
            return -1;
        }
        values[*count] = value;
        *count += 1;
    }
    return 0;
}

int tdm_cmd_node_resolve(const char *command, const char *addr, const char *cert,
                         struct tdm_cmd_node *node)
{
    tdm_assert(command != NULL);
    tdm_assert(node != NULL);
    memset(node, 0, sizeof(*node));
    if (addr == NULL || addr[0] == '\0') {
        tdm_cmd_fail("%s: --node ADDR is required (a node directory or HOST:PORT)", command);
        return TDM_CMD_EXIT_USAGE;
    }
    if (!tdm_client_address_is_tcp(addr)) {
        struct stat st;
        struct tdm_diag diag = {{0}};
        if (stat(addr, &st) != 0 && strchr(addr, '/') == NULL && strchr(addr, ':') != NULL &&
            tdm_client_address_check(addr, &diag) != 0) {
            tdm_cmd_fail("%s: --node %s: no such directory, and %s", command, addr, diag.message);
            return TDM_CMD_EXIT_USAGE;
        }
        node->dir = addr;
        return -1;
    }
    if (cert == NULL || cert[0] == '\0') {
        cert = getenv(TDM_CMD_CERT_ENV);
    }
    if (cert == NULL || cert[0] == '\0') {
        tdm_cmd_fail("%s: --node %s needs a client certificate: give --cert DIR or set "
                     "TANDEM_CERT (tandem ca CADIR --client NAME issues one)",
                     command, addr);
        return TDM_CMD_EXIT_USAGE;
    }
    node->address = addr;
    node->cert = cert;
    return -1;
}

int tdm_cmd_parse_node(const char *command, int argc, char **argv, const char *flag, bool *flag_set,
                       struct tdm_cmd_node *node)
{
    const char *addr = NULL;
    const char *cert = NULL;
    *flag_set = false;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},
        {"cert", true, &cert, NULL},
        {flag, false, NULL, flag_set},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    return tdm_cmd_node_resolve(command, addr, cert, node);
}

int tdm_cmd_connect(const struct tdm_cmd_node *node, struct tdm_client *client,
                    struct tdm_diag *diag)
{
    tdm_assert((node->dir == NULL) != (node->address == NULL));
    if (node->dir != NULL) {
        return tdm_client_connect(node->dir, client, diag);
    }
    tdm_assert(node->cert != NULL);
    int rv = tdm_client_connect_cert(node->address, node->cert, 0, client, diag);
    tdm_assert(rv <= 0);
    return rv;
}

int tdm_cmd_open(const char *dir, uint32_t flags, struct tandem **out)
{
    tdm_assert(dir != NULL);
    struct tandem_options options;
    struct tandem_diag diag = {{0}};
    tandem_options_init(&options);
    options.flags = flags;
    int rv = tandem_open(dir, &options, out, &diag);
    if (rv != 0) {
        char what[TDM_CMD_PATH_SIZE + 8];
        snprintf(what, sizeof(what), "open %s", dir);
        if (rv == TANDEM_ELOCKED && diag.message[0] == '\0') {
            snprintf(diag.message, sizeof(diag.message),
                     "stop the process that writes to it (tandemd or tandem append) first");
        }
        tdm_cmd_fail_code(what, rv, &diag);
        tdm_assert(rv < 0);
        return rv;
    }
    tdm_assert(*out != NULL);
    return 0;
}

int tdm_cmd_parse_u64(const char *text, uint64_t *out)
{
    tdm_assert(text != NULL);
    size_t size = strlen(text);
    if (size == 0 || size > 20 || strspn(text, "0123456789") != size) {
        return -1;
    }
    errno = 0;
    unsigned long long value = strtoull(text, NULL, 10);
    if (errno != 0) {
        return -1;
    }
    *out = (uint64_t)value;
    return 0;
}

int tdm_cmd_parse_u32(const char *text, uint32_t *out)
{
    uint64_t value;
    if (tdm_cmd_parse_u64(text, &value) != 0 || value > UINT32_MAX) {
        return -1;
    }
    *out = (uint32_t)value;
    return 0;
}
