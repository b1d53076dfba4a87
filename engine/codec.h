/* engine/codec.h: records <-> compact binary, and validation against the limits of
 * include/tandem.h. Format: docs/FORMAT.md "Record encoding". */
#ifndef TDM_ENGINE_CODEC_H
#define TDM_ENGINE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define TDM_CODEC_VERSION 1
/* Upper bound of one encoded record, in bytes (pinned by a static assert). */
#define TDM_RECORD_SIZE_MAX 4096

/* Check every documented limit. Returns 0 or TANDEM_EINVALID with diag naming
 * the field by its interchange name and the limit, e.g.
 * "recipient: 321 bytes, limit 320" or "classification: unknown value 9". */
int tdm_codec_validate(const struct tandem_record *record, struct tdm_diag *diag);

/* Bytes tdm_codec_encode() will write for a valid record (<= TDM_RECORD_SIZE_MAX). */
size_t tdm_codec_size(const struct tandem_record *record);

/* Encode a record that passed tdm_codec_validate() into buf (size >=
 * tdm_codec_size(record)). Returns the bytes written. Asserts on an invalid
 * record: validation is the caller's job. */
size_t tdm_codec_encode(const struct tandem_record *record, uint8_t *buf, size_t size);

/* Decode size bytes into record. The record's strings point into data (each is
 * followed by a NUL byte in the encoding), so data must outlive record.
 * Untrusted input: returns TANDEM_ECORRUPT with diag for any malformed or
 * out-of-limit encoding, never asserts. */
int tdm_codec_decode(const uint8_t *data, size_t size, struct tandem_record *record,
                     struct tdm_diag *diag);

/* Field-by-field equality of two records (strings compared as bytes). */
int tdm_codec_equal(const struct tandem_record *a, const struct tandem_record *b);

#endif
