/* engine/node.h: struct tandem, the public API's handle, for tests that open a
 * node over a fault-injecting file system. */
#ifndef TDM_ENGINE_NODE_H
#define TDM_ENGINE_NODE_H

#include "base/error.h"
#include "fs.h"

/* tandem_open() with the file-system table fs (borrowed until close). */
int tdm_node_open(const char *dir, const struct tandem_options *options, struct tdm_fs *fs,
                  struct tandem **out, struct tdm_diag *diag);

/* tandem_reindex() over fs. */
int tdm_node_reindex(const char *dir, struct tdm_fs *fs, struct tdm_diag *diag);

/* tandem_verify() over fs, scrubbing with scrub_options (NULL: unthrottled,
 * the real clock). */
struct tdm_scrub_options;
int tdm_node_verify(const char *dir, unsigned flags, struct tdm_fs *fs,
                    const struct tdm_scrub_options *scrub_options,
                    struct tandem_verify_report *report, struct tdm_diag *diag);

/* Abandon the handle as a crash would: stop the threads without closing the
 * log or the index cleanly, release memory. For power-loss tests only. */
void tdm_node_abandon(struct tandem *t);

#endif
