/* tools/jsonl.h: records <-> JSON Lines, the interchange format of DESIGN "What is
 * stored" (Jansson). Field names are exactly the DESIGN's plus "type" and, on
 * output, "lsn". A string that is not valid UTF-8 travels as <field>_base64. */
#ifndef TDM_TOOLS_JSONL_H
#define TDM_TOOLS_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/error.h"

/* A parsed record and the storage its strings point into. */
struct tdm_jsonl_record {
    struct tandem_record record;
    char *storage; /* Owned; released by tdm_jsonl_record_free(). */
};

/* Parse one line (one JSON object; trailing newline allowed) into out and
 * validate it against every limit. Returns 0, TANDEM_EINVALID with diag naming
 * the field by its interchange name ("recipient: 321 bytes, limit 320",
 * "time: not RFC 3339", "type: missing", "colour: unknown field"), or -ENOMEM.
 * On failure out holds nothing to free. */
int tdm_jsonl_parse(const char *line, size_t size, struct tdm_jsonl_record *out,
                    struct tdm_diag *diag);
void tdm_jsonl_record_free(struct tdm_jsonl_record *record);

/* Format record (with "lsn" when lsn != 0) as one JSON object without a
 * trailing newline into a tdm_malloc'd, NUL-terminated string. Returns 0 or
 * -ENOMEM. */
int tdm_jsonl_format(const struct tandem_record *record, uint64_t lsn, char **out, size_t *size);

/* RFC 3339 with up to 9 fractional digits: "2026-11-28T03:57:02.123456789Z".
 * parse accepts "Z" or a numeric offset; returns 0 or TANDEM_EINVALID.
 * format writes UTC with "Z" and the shortest exact fraction; buf needs 40 bytes. */
int tdm_time_parse(const char *text, size_t size, int64_t *time_ns);
void tdm_time_format(int64_t time_ns, char *buf, size_t size);

#endif
