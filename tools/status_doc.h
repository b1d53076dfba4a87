/* tools/status_doc.h: the status document of a node (DESIGN "Public contracts",
 * "tandem status --json"), built once for the CLI (tools/cmd_status.c) and for
 * tandemd (answering STATUS on its local socket), and read back by the CLI when
 * tandemd answered. */
#ifndef TDM_TOOLS_STATUS_DOC_H
#define TDM_TOOLS_STATUS_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include "cmd.h"
#include "net/uv.h"

#define TDM_STATUS_LAG_MS_DEGRADED 10000 /* A node this far behind is degraded. */

enum tdm_status_health {
    TDM_STATUS_HEALTHY = 1,
    TDM_STATUS_DEGRADED,
    TDM_STATUS_BROKEN,
};

/* What is known about the node. */
struct tdm_status_view {
    const char *dir;          /* Borrowed. */
    struct tdm_cmd_conf conf; /* From tandem.conf (empty fields when not found). */
    bool conf_found;
    bool opened;  /* status is valid. */
    bool stopped; /* A replicated node read from its directory: no tandemd serves it. */
    char open_error[TANDEM_DIAG_SIZE + TDM_CMD_PATH_SIZE]; /* When !opened. */
    struct tandem_status status;
    /* A replicated node served by tandemd: the cluster as it sees it. */
    bool replicated;
    struct tdm_uv_cluster_view cluster;
    enum tdm_status_health health;
};

/* Set view->health from opened, status and the cluster: broken when the node
 * could not be opened, writes stopped or its role is failed; degraded when the
 * log has damaged ranges or, on a replicated node, a node's link is down or
 * not live, a node lags more than TDM_STATUS_LAG_MS_DEGRADED behind, or
 * tdm_status_verify_problem() names a problem. */
void tdm_status_judge(struct tdm_status_view *view);

/* Verification of a replicated node (docs/OPERATIONS.md "Verification"): a
 * copy this node compares unverified longer than cluster.unverified_bound_s
 * (counted from cluster.started_ns at the earliest), a known mismatch (a first
 * divergent batch), or damage the background scrubber found. Returns NULL, or
 * reason (size bytes) filled with the first problem. */
const char *tdm_status_verify_problem(const struct tdm_status_view *view, char *reason,
                                      size_t size);

/* Why a replicated node without damaged log ranges is degraded, the first of:
 * damage or divergence (tdm_status_verify_problem()'s), a node failed, a link
 * not live, a node lagging, a copy unverified past the bound (a link that is
 * down leaves its copy unverified: the cause is named, not the consequence).
 * Fills reason (size bytes) and returns it; "see the nodes below" if none. */
const char *tdm_status_degraded_reason(const struct tdm_status_view *view, char *reason,
                                       size_t size);

#define TDM_STATUS_REASON_SIZE 512

/* The health line's reason: NULL when healthy; else reason (size bytes)
 * filled: the damaged ranges of the log, tdm_status_degraded_reason(), or
 * why the node is broken. JSON: "health_reason". */
const char *tdm_status_health_reason(const struct tdm_status_view *view, char *reason, size_t size);

const char *tdm_status_health_name(enum tdm_status_health health);
/* True when the node cannot write (not opened, or writes stopped). */
bool tdm_status_failed(const struct tdm_status_view *view);
/* Why tdm_status_failed() is true. */
const char *tdm_status_failed_message(const struct tdm_status_view *view);
/* The primary named in tandem.conf; a standalone node is its own. */
const char *tdm_status_primary(const struct tdm_status_view *view);
/* status->chain_hash in hex; size >= 33. */
void tdm_status_chain_hash_hex(const struct tandem_status *status, char *hex, size_t size);

/* The status document (schema 1) as one line of JSON without a newline, in a
 * malloc'd string (release with free()). Returns 0 or -ENOMEM. Thread-safe. */
int tdm_status_json(const struct tdm_status_view *view, char **out);

/* Read a status document written by tdm_status_json() back into view (dir
 * borrowed from dir_storage, which must hold TDM_CMD_PATH_SIZE bytes). Returns
 * 0, or TANDEM_ECORRUPT when text is not such a document. */
int tdm_status_parse(const char *text, size_t size, struct tdm_status_view *view,
                     char *dir_storage);

#endif
