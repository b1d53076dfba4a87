/* tools/cmd_ca.c: "tandem ca", the private CA of a cluster (DESIGN "Public
 * contracts"; docs/PROTOCOL.md §2.1).
 *
 * tandem ca CADIR --cluster NAME, happy path:
 * 1. Check NAME; tdm_pki_ca_create() makes CADIR (0700) with ca.key (0600) and
 *    ca.crt, and refuses a CADIR that already holds a CA.
 * 2. Print where the files are and that ca.key must stay private.
 *
 * tandem ca CADIR --client NAME [--out DIR], happy path:
 * 1. tdm_pki_issue(CADIR, "client:NAME", DIR) writes DIR/node.key (0600),
 *    DIR/node.crt (CN client:NAME, clientAuth only) and DIR/ca.crt. DIR
 *    defaults to CADIR/clients/NAME.
 * 2. Print the directory to pass as --cert DIR or TANDEM_CERT.
 *
 * Failure modes: a bad command line exits 2; a refused or failed step prints
 * its cause on one line and exits 1, leaving no half-written key behind. */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/assert.h"
#include "net/proto.h"
#include "net/tls.h"

static int ca_create(const char *cadir, const char *cluster)
{
    tdm_assert(cadir != NULL);
    tdm_assert(cluster != NULL);
    struct tdm_diag diag = {{0}};
    int rv = tdm_pki_ca_create(cadir, cluster, &diag);
    if (rv == TANDEM_EINVALID) {
        tdm_cmd_fail("ca: --cluster %s", diag.message);
        return TDM_CMD_EXIT_USAGE;
    }
    if (rv != 0) {
        tdm_cmd_fail("ca: %s", diag.message);
        return TDM_CMD_EXIT_FAILED;
    }
    printf("created the CA of cluster %s in %s: ca.crt (give to every node and client),"
           " ca.key (keep private)\n",
           cluster, cadir);
    return TDM_CMD_EXIT_OK;
}

static int ca_client(const char *cadir, const char *client, const char *out)
{
    char name[TDM_TLS_NAME_SIZE_MAX + 1];
    char dir[TDM_CMD_PATH_SIZE];
    tdm_assert(client != NULL);
    if (!tdm_proto_name_valid(client, strlen(client))) {
        tdm_cmd_fail("ca: --client '%s': use 1-63 letters, digits, '.', '_' or '-'", client);
        return TDM_CMD_EXIT_USAGE;
    }
    snprintf(name, sizeof(name), "%s%s", TDM_TLS_CLIENT_PREFIX, client);
    int n = out != NULL ? snprintf(dir, sizeof(dir), "%s", out)
                        : snprintf(dir, sizeof(dir), "%s/clients/%s", cadir, client);
    if (n < 0 || (size_t)n >= sizeof(dir)) {
        tdm_cmd_fail("ca: output directory path too long");
        return TDM_CMD_EXIT_USAGE;
    }
    struct tdm_diag diag = {{0}};
    int rv = tdm_pki_issue(cadir, name, dir, &diag); /* The name is valid: EINVALID is the CA's. */
    if (rv != 0) {
        tdm_cmd_fail("ca: %s", diag.message);
        return TDM_CMD_EXIT_FAILED;
    }
    printf("issued client certificate %s in %s (use --cert %s or TANDEM_CERT=%s)\n", name, dir, dir,
           dir);
    return TDM_CMD_EXIT_OK;
}

int tdm_cmd_ca(int argc, char **argv)
{
    const char *cluster = NULL;
    const char *client = NULL;
    const char *out = NULL;
    const struct tdm_cmd_option options[] = {
        {"cluster", true, &cluster, NULL},
        {"client", true, &client, NULL},
        {"out", true, &out, NULL},
        {NULL, false, NULL, NULL},
    };
    const char *positional[1] = {NULL};
    int exit_status = tdm_cmd_parse(argc, argv, options, positional, 1, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    const char *cadir = positional[0];
    if (cadir == NULL) {
        tdm_cmd_fail("ca: missing CADIR (see tandem help ca)");
        return TDM_CMD_EXIT_USAGE;
    }
    if ((cluster == NULL) == (client == NULL)) {
        tdm_cmd_fail("ca: give exactly one of --cluster NAME or --client NAME");
        return TDM_CMD_EXIT_USAGE;
    }
    if (out != NULL && client == NULL) {
        tdm_cmd_fail("ca: --out goes with --client");
        return TDM_CMD_EXIT_USAGE;
    }
    return cluster != NULL ? ca_create(cadir, cluster) : ca_client(cadir, client, out);
}
