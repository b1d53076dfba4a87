/* engine/batch.h: one batch of records: header, zstd-compressed body, XXH3
 * checksums and the chain hash. Format: docs/FORMAT.md "Batch".
 *
 * A batch's body, before compression, is a sequence of (u32 size, encoded
 * record) pairs (engine/codec.h). The chain hash of a batch folds in the chain
 * hash of the batch before it, so the chain hash at an LSN names the whole
 * history up to that LSN. */
#ifndef TDM_ENGINE_BATCH_H
#define TDM_ENGINE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "base/chain.h"
#include "base/error.h"

#define TDM_BATCH_MAGIC         0x48435442u /* "BTCH" little-endian. */
#define TDM_BATCH_VERSION       1
#define TDM_BATCH_HEADER_SIZE   96
#define TDM_BATCH_RECORDS_MAX   8192
#define TDM_BATCH_RAW_SIZE_MAX  (8u << 20) /* Uncompressed body bytes. */
#define TDM_BATCH_BODY_SIZE_MAX (9u << 20) /* Compressed body bytes (zstd bound). */
/* The decoded, verified header of a batch. */
struct tdm_batch_header {
    uint64_t epoch;         /* Epoch of the primary that wrote the batch. */
    uint64_t lsn_first;     /* LSN of the first record. */
    uint32_t record_count;  /* Records; lsn_last = lsn_first + record_count - 1. */
    uint32_t body_size;     /* Compressed body bytes that follow the header. */
    uint32_t raw_size;      /* Uncompressed body bytes. */
    uint32_t flags;         /* Reserved, 0. */
    int64_t time_ns;        /* Wall-clock time the batch was made (data only). */
    uint64_t lsn_durable;   /* LSN known durable when the batch was written (recovery hint). */
    uint64_t body_checksum; /* XXH3-64 of the compressed body. */
    struct tdm_chain_hash chain_hash; /* XXH3-128 over the previous chain hash and this header. */
};

static inline uint64_t tdm_batch_lsn_last(const struct tdm_batch_header *h)
{
    return h->lsn_first + h->record_count - 1;
}

/* Build a batch from a raw body (record_count (u32 size, record) pairs).
 * Compresses raw into out after a TDM_BATCH_HEADER_SIZE header, fills every
 * checksum and the chain hash from prev. out_size must be >=
 * tdm_batch_bound(raw_size). cctx is the caller's compression context (one per
 * thread). Returns the total bytes, or a negative code
 * (-ENOMEM, TANDEM_EINVALID if zstd fails). header receives the result. */
int tdm_batch_build(ZSTD_CCtx *cctx, const uint8_t *raw, size_t raw_size, uint32_t record_count,
                    uint64_t epoch, uint64_t lsn_first, uint64_t lsn_durable, int64_t time_ns,
                    const struct tdm_chain_hash *prev, uint8_t *out, size_t out_size,
                    struct tdm_batch_header *header);

/* Bytes a batch of raw_size raw bytes may take on disk. */
size_t tdm_batch_bound(size_t raw_size);

/* Decode and verify a header (magic, version, header checksum, limits).
 * Untrusted: returns TANDEM_ECORRUPT with diag on any mismatch. */
int tdm_batch_header_decode(const uint8_t *buf, size_t size, struct tdm_batch_header *header,
                            struct tdm_diag *diag);

/* tdm_batch_header_decode() of a whole batch (bytes holds exactly the header
 * and its body), and a check of that size against the header's body_size.
 * Untrusted: TANDEM_ECORRUPT with diag on any mismatch. */
int tdm_batch_whole_header_decode(const uint8_t *bytes, size_t size,
                                  struct tdm_batch_header *header, struct tdm_diag *diag);

/* Verify that header's chain hash follows from prev. */
bool tdm_batch_chain_follows(const struct tdm_batch_header *header,
                             const struct tdm_chain_hash *prev);

/* Verify the body checksum only (header->body_size bytes of body), without
 * decompressing: TANDEM_ECORRUPT on a mismatch (the scrubber, engine/recover.c). */
int tdm_batch_body_check(const struct tdm_batch_header *header, const uint8_t *body,
                         struct tdm_diag *diag);

/* Verify the body checksum and decompress it into raw (raw_size >=
 * header->raw_size). Untrusted: TANDEM_ECORRUPT on any mismatch, including a
 * body that does not hold exactly record_count well-formed entries. */
int tdm_batch_body_decode(const struct tdm_batch_header *header, const uint8_t *body, uint8_t *raw,
                          size_t raw_size, struct tdm_diag *diag);

/* Verify a whole batch as received from a peer, before anything is written:
 * header, size, body checksum, decompression and entry count. Untrusted:
 * returns 0 and the header, or TANDEM_ECORRUPT / -ENOMEM with diag. */
int tdm_batch_verify(const uint8_t *bytes, size_t size, struct tdm_batch_header *header,
                     struct tdm_diag *diag);

/* Walk the entries of a verified raw body: *offset starts at 0; returns 1 and
 * the next record's bytes, or 0 at the end. */
int tdm_batch_next(const uint8_t *raw, size_t raw_size, size_t *offset, const uint8_t **record,
                   size_t *record_size);

/* Validate count records (untrusted: from an application) and encode them as
 * a raw body's entries into a new buffer *raw (tdm_free). size_max bounds the
 * encoded bytes. Returns 0 and *raw_size, TANDEM_EINVALID with a diag naming
 * the count, the record and its field, or the sizes, or -ENOMEM. */
int tdm_batch_raw_encode(const struct tandem_record *records, size_t count, size_t size_max,
                         uint8_t **raw, size_t *raw_size, struct tdm_diag *diag);

#endif
