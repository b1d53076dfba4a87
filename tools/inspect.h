/* tools/inspect.h: what `tandem history` and `tandem quarantine` read from a node
 * directory (DIR/epochs, DIR/quarantine/), as JSON documents built once for the
 * CLI (tools/cmd_history.c, tools/cmd_quarantine.c) and for tandemd (answering
 * HISTORY and QUARANTINE, docs/PROTOCOL.md §7.6). Formats read: docs/FORMAT.md
 * "Epoch history", "Batch", "Segment", "Recovery" (quarantine file names).
 *
 * Everything read is untrusted: a damaged DIR/epochs is an error naming the
 * line; damaged bytes in quarantine are reported as unreadable ranges, never
 * asserted on. Nothing is ever written. Thread: any; no global state. */
#ifndef TDM_TOOLS_INSPECT_H
#define TDM_TOOLS_INSPECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/base/error.h"

/* What tandem.conf says about the node (read by the caller). */
struct tdm_inspect_node {
    const char *dir;     /* The node directory. Borrowed. */
    const char *id;      /* [node] id; "" if unknown. Borrowed. */
    const char *primary; /* [replication] primary (of epoch 1); "" if unset. Borrowed. */
    bool replicated;     /* [replication] listen or peer.* is set. */
};

/* The history document of `tandem history --json` (README, docs/OPERATIONS.md
 * "History"): {"node", "epochs": [...], "quarantine_other": [...]}. Each
 * epoch carries what of DIR/quarantine/ was written in it. Returns 0 and *out
 * (json_decref() it), TANDEM_ENOTFOUND when the node is standalone (no
 * DIR/epochs, not replicated: no replication history), TANDEM_ECORRUPT with
 * diag naming DIR/epochs and the line, or -errno / -ENOMEM with diag. */
int tdm_inspect_history(const struct tdm_inspect_node *node, json_t **out, struct tdm_diag *diag);

/* The listing of DIR/quarantine/ (`tandem quarantine --json`): {"node",
 * "files": [...], "file_count", "bytes", "batches", "records", "unreadable"}.
 * No directory is an empty listing. Returns 0 and *out, or -errno / -ENOMEM
 * with diag (an unreadable file is listed with its cause, not an error). */
int tdm_inspect_quarantine(const struct tdm_inspect_node *node, json_t **out,
                           struct tdm_diag *diag);

/* Called with each record of a batch in quarantine that verifies, in file
 * order (file names sorted), as one JSON Lines object with "lsn" (no newline,
 * tools/jsonl.h). A non-zero return stops the export and is returned. */
typedef int (*tdm_inspect_line_cb)(void *data, const char *line, size_t size);

/* Export the records of every batch in DIR/quarantine/ that verifies through
 * line. Unreadable bytes are skipped (the listing names them); *skipped_count
 * receives the number of unreadable ranges. Returns 0, line's code, or -errno
 * / -ENOMEM with diag. */
int tdm_inspect_export(const struct tdm_inspect_node *node, tdm_inspect_line_cb line, void *data,
                       uint64_t *skipped_count, struct tdm_diag *diag);

#endif
