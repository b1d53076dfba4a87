/* engine/segment.h: segment files under DIR/log/: a header, batches, and, once
 * sealed, a footer. Format: docs/FORMAT.md "Segment". A sealed segment is never
 * modified again. */
#ifndef TDM_ENGINE_SEGMENT_H
#define TDM_ENGINE_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "batch.h"

#define TDM_SEGMENT_MAGIC        0x4d474553u /* "SEGM" */
#define TDM_FOOTER_MAGIC         0x544f4f46u /* "FOOT" */
#define TDM_SEGMENT_VERSION      1
#define TDM_SEGMENT_HEADER_SIZE  64
#define TDM_SEGMENT_FOOTER_SIZE  80
#define TDM_SEGMENT_NAME_SIZE    32 /* "%020llu.seg" and a NUL. */
#define TDM_SEGMENT_SIZE_DEFAULT (64ull << 20)
#define TDM_SEGMENT_SIZE_MIN     (4ull << 10)
#define TDM_SEGMENT_SIZE_MAX     (1ull << 30)

/* Segment header flags. */
#define TDM_SEGMENT_PREPARED                                                                       \
    0x1u /* Made from a zero-filled file: zeros may follow the                                     \
          * last batch (docs/FORMAT.md "Prepared segments"). */

struct tdm_segment_header {
    uint16_t flags;                   /* TDM_SEGMENT_PREPARED or 0. */
    uint64_t lsn_first;               /* LSN of the first batch the segment holds. */
    uint64_t epoch;                   /* Epoch when the segment was created. */
    struct tdm_chain_hash chain_prev; /* Chain hash at lsn_first - 1 (zero at LSN 1). */
    int64_t time_ns;                  /* Creation time (data only). */
};

struct tdm_segment_footer {
    uint64_t lsn_first;               /* Equal to the header's. */
    uint64_t lsn_last;                /* Last LSN in the segment. */
    uint32_t batch_count;             /* Batches in the segment. */
    uint64_t data_size;               /* Bytes before the footer (header + batches). */
    uint64_t checksum;                /* XXH3-64 of those data_size bytes. */
    struct tdm_chain_hash chain_last; /* Chain hash at lsn_last. */
};

void tdm_segment_name(char *out, size_t size, uint64_t lsn_first);
/* Parse "%020llu.seg"; returns false for any other name. */
bool tdm_segment_name_parse(const char *name, uint64_t *lsn_first);

void tdm_segment_header_encode(const struct tdm_segment_header *header, uint8_t *out);
int tdm_segment_header_decode(const uint8_t *buf, struct tdm_segment_header *header,
                              struct tdm_diag *diag);
void tdm_segment_footer_encode(const struct tdm_segment_footer *footer, uint8_t *out);
int tdm_segment_footer_decode(const uint8_t *buf, struct tdm_segment_footer *footer,
                              struct tdm_diag *diag);

#endif
