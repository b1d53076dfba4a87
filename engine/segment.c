/* engine/segment.c: the header and footer of a segment file.
 *
 * Format (docs/FORMAT.md "Segment"), little-endian:
 *
 *   header (64 bytes, at offset 0)        footer (80 bytes, at the end once sealed)
 *    0  4 magic "SEGM"                      0  4 magic "FOOT"
 *    4  2 version (1)                       4  2 version (1)
 *    6  2 reserved (0)                      6  2 reserved (0)
 *    8  8 lsn_first                         8  8 lsn_first
 *   16  8 epoch                            16  8 lsn_last
 *   24 16 chain hash at lsn_first - 1      24  4 batch_count
 *   40  8 time_ns                          28  4 reserved (0)
 *   48  8 reserved (0)                     32  8 data_size (bytes before the footer)
 *   56  8 XXH3-64 of bytes 0..55           40  8 XXH3-64 of bytes [0, data_size)
 *                                          48 16 chain hash at lsn_last
 *                                          64  8 reserved (0)
 *                                          72  8 XXH3-64 of bytes 0..71
 *
 * Failure modes: decoding untrusted bytes returns TANDEM_ECORRUPT with a diag. */
#include "segment.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "base/assert.h"
#include "base/bytes.h"

void tdm_segment_name(char *out, size_t size, uint64_t lsn_first)
{
    tdm_assert(size >= TDM_SEGMENT_NAME_SIZE);
    snprintf(out, size, "%020" PRIu64 ".seg", lsn_first);
}

bool tdm_segment_name_parse(const char *name, uint64_t *lsn_first)
{
    if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0) {
        return false;
    }
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return false;
        }
        v = v * 10 + digit;
    }
    if (v == 0) {
        return false;
    }
    *lsn_first = v;
    return true;
}

void tdm_segment_header_encode(const struct tdm_segment_header *header, uint8_t *out)
{
    struct tdm_writer w;
    tdm_writer_init(&w, out, TDM_SEGMENT_HEADER_SIZE);
    tdm_put_u32(&w, TDM_SEGMENT_MAGIC);
    tdm_put_u16(&w, TDM_SEGMENT_VERSION);
    tdm_put_u16(&w, header->flags);
    tdm_put_u64(&w, header->lsn_first);
    tdm_put_u64(&w, header->epoch);
    tdm_put_bytes(&w, header->chain_prev.bytes, TDM_CHAIN_HASH_SIZE);
    tdm_put_u64(&w, (uint64_t)header->time_ns);
    tdm_put_u64(&w, 0);
    tdm_put_u64(&w, XXH3_64bits(out, 56));
    tdm_assert(!w.overflow);
    tdm_assert(w.offset == TDM_SEGMENT_HEADER_SIZE);
}

int tdm_segment_header_decode(const uint8_t *buf, struct tdm_segment_header *header,
                              struct tdm_diag *diag)
{
    struct tdm_reader r;
    tdm_reader_init(&r, buf, TDM_SEGMENT_HEADER_SIZE);
    uint32_t magic = tdm_get_u32(&r);
    uint16_t version = tdm_get_u16(&r);
    struct tdm_segment_header h;
    h.flags = tdm_get_u16(&r);
    h.lsn_first = tdm_get_u64(&r);
    h.epoch = tdm_get_u64(&r);
    tdm_get_bytes(&r, h.chain_prev.bytes, TDM_CHAIN_HASH_SIZE);
    h.time_ns = (int64_t)tdm_get_u64(&r);
    (void)tdm_get_u64(&r);
    uint64_t checksum = tdm_get_u64(&r);
    tdm_assert(!r.overflow);
    if (magic != TDM_SEGMENT_MAGIC) {
        return TDM_CORRUPT(diag, "segment header: bad magic 0x%08x", magic);
    }
    if (checksum != XXH3_64bits(buf, 56)) {
        return TDM_CORRUPT(diag, "segment header: checksum mismatch");
    }
    if (version != TDM_SEGMENT_VERSION) {
        return TDM_CORRUPT(diag, "segment header: unsupported version %u", version);
    }
    if ((h.flags & ~TDM_SEGMENT_PREPARED) != 0) {
        return TDM_CORRUPT(diag, "segment header: unknown flags 0x%04x", h.flags);
    }
    if (h.lsn_first == 0) {
        return TDM_CORRUPT(diag, "segment header: lsn_first 0");
    }
    *header = h;
    return 0;
}

void tdm_segment_footer_encode(const struct tdm_segment_footer *footer, uint8_t *out)
{
    struct tdm_writer w;
    tdm_writer_init(&w, out, TDM_SEGMENT_FOOTER_SIZE);
    tdm_put_u32(&w, TDM_FOOTER_MAGIC);
    tdm_put_u16(&w, TDM_SEGMENT_VERSION);
    tdm_put_u16(&w, 0);
    tdm_put_u64(&w, footer->lsn_first);
    tdm_put_u64(&w, footer->lsn_last);
    tdm_put_u32(&w, footer->batch_count);
    tdm_put_u32(&w, 0);
    tdm_put_u64(&w, footer->data_size);
    tdm_put_u64(&w, footer->checksum);
    tdm_put_bytes(&w, footer->chain_last.bytes, TDM_CHAIN_HASH_SIZE);
    tdm_put_u64(&w, 0);
    tdm_put_u64(&w, XXH3_64bits(out, 72));
    tdm_assert(!w.overflow);
    tdm_assert(w.offset == TDM_SEGMENT_FOOTER_SIZE);
}

int tdm_segment_footer_decode(const uint8_t *buf, struct tdm_segment_footer *footer,
                              struct tdm_diag *diag)
{
    struct tdm_reader r;
    tdm_reader_init(&r, buf, TDM_SEGMENT_FOOTER_SIZE);
    uint32_t magic = tdm_get_u32(&r);
    uint16_t version = tdm_get_u16(&r);
    (void)tdm_get_u16(&r);
    struct tdm_segment_footer f;
    f.lsn_first = tdm_get_u64(&r);
    f.lsn_last = tdm_get_u64(&r);
    f.batch_count = tdm_get_u32(&r);
    (void)tdm_get_u32(&r);
    f.data_size = tdm_get_u64(&r);
    f.checksum = tdm_get_u64(&r);
    tdm_get_bytes(&r, f.chain_last.bytes, TDM_CHAIN_HASH_SIZE);
    (void)tdm_get_u64(&r);
    uint64_t checksum = tdm_get_u64(&r);
    tdm_assert(!r.overflow);
    if (magic != TDM_FOOTER_MAGIC) {
        return TDM_CORRUPT(diag, "segment footer: bad magic 0x%08x", magic);
    }
    if (checksum != XXH3_64bits(buf, 72)) {
        return TDM_CORRUPT(diag, "segment footer: checksum mismatch");
    }
    if (version != TDM_SEGMENT_VERSION) {
        return TDM_CORRUPT(diag, "segment footer: unsupported version %u", version);
    }
    if (f.lsn_first == 0 || f.lsn_last < f.lsn_first || f.batch_count == 0) {
        return TDM_CORRUPT(diag, "segment footer: bad LSN range");
    }
    *footer = f;
    return 0;
}
