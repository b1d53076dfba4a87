/* tools/cmd.h: what the commands of the tandem CLI share (tools/tandem.c) and the
 * entry point of each command (tools/cmd_*.c).
 *
 * Every command is a function (argc, argv) -> exit status, where argv[0] is the
 * command's name. The CLI is a boundary in the sense of STYLE B4.3: it turns
 * each error code into one line on stderr ("tandem: <cause>") and an exit status:
 * 0 success, 1 failure or nothing found, 2 bad usage (or, for status, broken). */
#ifndef TDM_TOOLS_CMD_H
#define TDM_TOOLS_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tandem.h"

enum tdm_cmd_exit {
    TDM_CMD_EXIT_OK = 0,     /* Success. */
    TDM_CMD_EXIT_FAILED = 1, /* The operation failed, or nothing was found. */
    TDM_CMD_EXIT_USAGE = 2,  /* Bad command line; status: broken or unreachable. */
};

/* Longest node id or cluster name, in bytes (a DNS label). */
#define TDM_CMD_NAME_SIZE_MAX 63
/* Longest path the CLI builds under a node directory, in bytes. */
#define TDM_CMD_PATH_SIZE 4096

/* One --option of a command. An option without a value is a flag. */
struct tdm_cmd_option {
    const char *name;   /* Without the leading "--". */
    bool takes_value;   /* "--name VALUE" or "--name=VALUE". */
    const char **value; /* Receives the (last) value; borrowed from argv. */
    bool *present;      /* Set to true when the option is seen; may be NULL. */
};

/* Parse argv[1..argc-1] of command argv[0]: options from options (terminated by
 * an entry whose name is NULL) and up to positional_max positional arguments
 * into positional. "--help" prints the command's help. Returns -1 when the
 * command should go on, else the exit status to return at once (after printing
 * a one-line error or the help). */
int tdm_cmd_parse(int argc, char **argv, const struct tdm_cmd_option *options,
                  const char **positional, size_t positional_max, size_t *positional_count);

/* Collect, in order, every value of the repeatable option name (one that takes
 * a value) from argv, as tdm_cmd_parse() reads them; call it after
 * tdm_cmd_parse() accepted argv. Sets *count and returns 0, or returns -1 if
 * there are more than values_max. Values are borrowed from argv. */
int tdm_cmd_collect(int argc, char **argv, const struct tdm_cmd_option *options, const char *name,
                    const char **values, size_t values_max, size_t *count);

/* Print "tandem: <formatted cause>" as one line on stderr. */
void tdm_cmd_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Print "tandem: <what>: <name of rv>[: <diag>]" on stderr. */
void tdm_cmd_fail_code(const char *what, int rv, const struct tandem_diag *diag);

/* Where --node ADDR points (DESIGN "Public contracts": a node directory, or
 * HOST:PORT reached over TCP + mutual TLS with a client certificate). */
struct tdm_cmd_node {
    const char *dir;     /* A node directory; NULL for HOST:PORT. Borrowed from argv. */
    const char *address; /* HOST:PORT (the node's listen address); NULL for a directory. */
    const char *cert;    /* With address: --cert DIR, else $TANDEM_CERT. */
};

/* Environment variable naming the client certificate directory (--cert). */
#define TDM_CMD_CERT_ENV "TANDEM_CERT"

/* Resolve --node ADDR [--cert DIR] of command. An existing path is a node
 * directory (cert is not needed); otherwise HOST:PORT ([IPv6]:PORT), which
 * needs a client certificate directory: cert (--cert), else $TANDEM_CERT.
 * Returns -1 when *node is set, else the exit status (2) after printing one
 * line: a missing --node, a malformed address, or a HOST:PORT without a
 * certificate (naming --cert and TANDEM_CERT). */
int tdm_cmd_node_resolve(const char *command, const char *addr, const char *cert,
                         struct tdm_cmd_node *node);

/* The command line of a command that takes --node ADDR, --cert DIR and one
 * flag --flag (*flag_set): tdm_cmd_parse(), then tdm_cmd_node_resolve().
 * Returns -1 when *node and *flag_set are set, else the exit status to return
 * at once. */
int tdm_cmd_parse_node(const char *command, int argc, char **argv, const char *flag, bool *flag_set,
                       struct tdm_cmd_node *node);

struct tdm_client;
struct tdm_diag;

/* Connect to node (net/client.h). A directory: its local socket; returns 0, or
 * 1 when no tandemd runs there (open the directory instead), or a negative
 * code with diag. HOST:PORT: TCP + TLS with node->cert, connect and handshake
 * bounded by TDM_CLIENT_TIMEOUT_MS; returns 0 or a negative code with diag
 * (never 1: a remote node cannot be opened instead). */
int tdm_cmd_connect(const struct tdm_cmd_node *node, struct tdm_client *client,
                    struct tdm_diag *diag);

/* Open the node directory dir with TANDEM_OPEN_* flags. Returns 0 and *out, or
 * the negative code after printing "tandem: open DIR: <cause>". */
int tdm_cmd_open(const char *dir, uint32_t flags, struct tandem **out);

/* Strict decimal parsers for command-line values (no sign, no spaces, no
 * overflow). Return 0 and *out, or -1. */
int tdm_cmd_parse_u64(const char *text, uint64_t *out);
int tdm_cmd_parse_u32(const char *text, uint32_t *out);

/* tandem.conf of a node directory (docs/OPERATIONS.md "Configuration"). */
struct tdm_cmd_conf {
    char cluster[TDM_CMD_NAME_SIZE_MAX + 1]; /* [node] cluster; empty if unset. */
    char id[TDM_CMD_NAME_SIZE_MAX + 1];      /* [node] id; empty if unset. */
    char primary[TDM_CMD_NAME_SIZE_MAX + 1]; /* [replication] primary; empty if unset. */
    uint32_t min_copies;                     /* [replication] min_copies; 0 if unset. */
    bool replicated; /* [replication] listen or peer.* is set: a node of a cluster. */
    char bad[160];   /* The line whose value does not parse: "[section] key = value". */
};

/* Read dir/tandem.conf into conf. Returns 0, -ENOENT when the file is missing,
 * or another negative value with diag naming the line. */
int tdm_cmd_conf_read(const char *dir, struct tdm_cmd_conf *conf, struct tandem_diag *diag);

/* The commands. */
int tdm_cmd_init(int argc, char **argv);
int tdm_cmd_reindex(int argc, char **argv);
int tdm_cmd_append(int argc, char **argv);
int tdm_cmd_get(int argc, char **argv);
int tdm_cmd_query(int argc, char **argv);
int tdm_cmd_customer(int argc, char **argv);
int tdm_cmd_status(int argc, char **argv);
int tdm_cmd_generate(int argc, char **argv);
int tdm_cmd_ca(int argc, char **argv);
int tdm_cmd_verify(int argc, char **argv);
int tdm_cmd_switchover(int argc, char **argv); /* tools/cmd_switch.c */
int tdm_cmd_failover(int argc, char **argv);   /* tools/cmd_switch.c */
int tdm_cmd_history(int argc, char **argv);
int tdm_cmd_quarantine(int argc, char **argv);

/* Text of one answer frame of a node (borrowed during the call). Returns 0 or
 * a negative code, which stops the reading. */
typedef int (*tdm_cmd_text_cb)(void *data, const uint8_t *text, size_t size);

/* Send HISTORY or QUARANTINE (type, with flags: docs/PROTOCOL.md §7.6) to node
 * and hand the text of each answer frame to text, until one without MORE.
 * Returns 0, the node's code (diag: its message), -ENOENT when no tandemd runs
 * in a directory, or a transport code with diag (tools/cmd_history.c). */
int tdm_cmd_inspect_remote(const struct tdm_cmd_node *node, uint16_t type, uint8_t flags,
                           tdm_cmd_text_cb text, void *data, struct tdm_diag *diag);

struct json_t;

/* The history (type TDM_PROTO_HISTORY) or quarantine listing document of node:
 * read from the directory, or asked of HOST:PORT. Returns -1 and *out
 * (json_decref() it), or the exit status after printing one line naming
 * command and the cause. */
int tdm_cmd_inspect_doc(const char *command, const struct tdm_cmd_node *node, uint16_t type,
                        struct json_t **out);

/* The integer member key of a JSON object as u64 (0 if absent). */
uint64_t tdm_cmd_json_u64(const struct json_t *object, const char *key);

/* "81.2 MiB": bytes for a human into buf; below 1 KiB "N UNIT", with unit the
 * word for bytes ("B" or "bytes"). */
void tdm_cmd_bytes_human(uint64_t bytes, const char *unit, char *buf, size_t size);

/* Print damaged ranges (at most TANDEM_STATUS_DAMAGED_MAX, then a count of the
 * rest) in the words `tandem status` and `tandem verify` share. */
void tdm_cmd_print_damaged(const struct tandem_damage *damaged, uint32_t damaged_count);

#endif
