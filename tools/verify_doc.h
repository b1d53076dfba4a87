/* tools/verify_doc.h: "tandem verify" of a running node (docs/PROTOCOL.md
 * §7.7): tandemd runs the pass and answers VERIFY with JSON Lines, one
 * progress object now and then and the report last; the CLI reads them back
 * into a struct tandem_verify_report and prints it as a local verify does. */
#ifndef TDM_TOOLS_VERIFY_DOC_H
#define TDM_TOOLS_VERIFY_DOC_H

#include <jansson.h>
#include <stdbool.h>

#include "engine/base/error.h"
#include "net/uv.h"

/* tandemd (threadpool): verify the node t holds open now (engine/node.h
 * tdm_node_verify_running(); flags: TDM_PROTO_VERIFY_DEEP) and hand each line
 * of the answer to line: {"progress": {...}} lines while it runs, then one
 * {"report": {...}} line. Returns 0 (damage found and an index rebuilt are
 * results), or the verify's or line's error with diag. */
int tdm_verify_serve(struct tandem *t, uint8_t flags, tdm_uv_line_cb line, void *line_data,
                     struct tdm_diag *diag);

/* The CLI: a "report" object into *report and *seconds. Returns 0, or
 * TANDEM_ECORRUPT with diag when a field is missing or out of range. */
int tdm_verify_doc_report(const json_t *doc, struct tandem_verify_report *report, double *seconds,
                          struct tdm_diag *diag);

#endif
