/* engine/batch.c: one batch of records on disk and on the wire.
 *
 * Format (docs/FORMAT.md "Batch"), all integers little-endian:
 *
 *   offset size field
 *        0    4 magic "BTCH"
 *        4    2 version (1)
 *        6    2 flags (0)
 *        8    8 epoch
 *       16    8 lsn_first
 *       24    4 record_count (>= 1)
 *       28    4 body_size (compressed bytes that follow the header)
 *       32    4 raw_size (uncompressed body bytes)
 *       36    4 reserved (0)
 *       40    8 time_ns (wall clock when the batch was made; data only)
 *       48    8 lsn_durable (LSN known durable when the batch was written)
 *       56    8 body_checksum = XXH3-64(body)
 *       64   16 chain_hash = XXH3-128(previous chain hash || bytes 0..63)
 *       80    8 reserved (0)
 *       88    8 header_checksum = XXH3-64(bytes 0..87)
 *       96      body: zstd frame of record_count entries (u32 size, record)
 *
 * Happy path (build): 1. compress the raw body after the header; 2. checksum
 * the body; 3. encode the header fields; 4. fold the previous chain hash and
 * the header into the chain hash; 5. checksum the header.
 * Happy path (read): 1. decode and check the header (magic, version, checksum,
 * limits); 2. check the body checksum; 3. decompress; 4. walk the entries.
 * Failure modes: every check of bytes read from disk or a peer returns
 * TANDEM_ECORRUPT with a diag naming the check; nothing here asserts on them. */
#include "batch.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <xxhash.h>

#include "base/alloc.h"
#include "base/assert.h"
#include "base/bytes.h"
#include "codec.h"

#define BATCH_CHAIN_OFFSET    64
#define BATCH_CHECKSUM_OFFSET 88

tdm_static_assert(BATCH_CHECKSUM_OFFSET + 8 == TDM_BATCH_HEADER_SIZE);
tdm_static_assert(BATCH_CHAIN_OFFSET + TDM_CHAIN_HASH_SIZE + 8 == BATCH_CHECKSUM_OFFSET);

size_t tdm_batch_bound(size_t raw_size)
{
    return TDM_BATCH_HEADER_SIZE + ZSTD_compressBound(raw_size);
}

static void batch_chain(const struct tdm_chain_hash *prev, const uint8_t *header,
                        struct tdm_chain_hash *out)
{
    uint8_t input[TDM_CHAIN_HASH_SIZE + BATCH_CHAIN_OFFSET];
    memcpy(input, prev->bytes, TDM_CHAIN_HASH_SIZE);
    memcpy(input + TDM_CHAIN_HASH_SIZE, header, BATCH_CHAIN_OFFSET);
    XXH128_hash_t h = XXH3_128bits(input, sizeof(input));
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, h);
    tdm_static_assert(sizeof(canonical.digest) == TDM_CHAIN_HASH_SIZE);
    memcpy(out->bytes, canonical.digest, TDM_CHAIN_HASH_SIZE);
}

static void batch_header_encode(const struct tdm_batch_header *h, uint8_t *out)
{
    struct tdm_writer w;
    tdm_writer_init(&w, out, TDM_BATCH_HEADER_SIZE);
    tdm_put_u32(&w, TDM_BATCH_MAGIC);
    tdm_put_u16(&w, TDM_BATCH_VERSION);
    tdm_put_u16(&w, (uint16_t)h->flags);
    tdm_put_u64(&w, h->epoch);
    tdm_put_u64(&w, h->lsn_first);
    tdm_put_u32(&w, h->record_count);
    tdm_put_u32(&w, h->body_size);
    tdm_put_u32(&w, h->raw_size);
    tdm_put_u32(&w, 0);
    tdm_put_u64(&w, (uint64_t)h->time_ns);
    tdm_put_u64(&w, h->lsn_durable);
    tdm_put_u64(&w, h->body_checksum);
    tdm_assert(w.offset == BATCH_CHAIN_OFFSET);
    tdm_put_bytes(&w, h->chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
    tdm_put_u64(&w, 0);
    tdm_put_u64(&w, XXH3_64bits(out, BATCH_CHECKSUM_OFFSET));
    tdm_assert(!w.overflow);
    tdm_assert(w.offset == TDM_BATCH_HEADER_SIZE);
}

int tdm_batch_build(ZSTD_CCtx *cctx, const uint8_t *raw, size_t raw_size, uint32_t record_count,
                    uint64_t epoch, uint64_t lsn_first, uint64_t lsn_durable, int64_t time_ns,
                    const struct tdm_chain_hash *prev, uint8_t *out, size_t out_size,
                    struct tdm_batch_header *header)
{
    tdm_assert(record_count > 0);
    tdm_assert(record_count <= TDM_BATCH_RECORDS_MAX);
    tdm_assert(raw_size <= TDM_BATCH_RAW_SIZE_MAX);
    tdm_assert(out_size >= tdm_batch_bound(raw_size));
    tdm_assert(lsn_first > 0);

    size_t body_size = ZSTD_compressCCtx(cctx, out + TDM_BATCH_HEADER_SIZE,
                                         out_size - TDM_BATCH_HEADER_SIZE, raw, raw_size, 1);
    if (ZSTD_isError(body_size)) {
        return -ENOMEM;
    }
    tdm_assert(body_size <= TDM_BATCH_BODY_SIZE_MAX);
    struct tdm_batch_header h = {
        .epoch = epoch,
        .lsn_first = lsn_first,
        .record_count = record_count,
        .body_size = (uint32_t)body_size,
        .raw_size = (uint32_t)raw_size,
        .flags = 0,
        .time_ns = time_ns,
        .lsn_durable = lsn_durable,
        .body_checksum = XXH3_64bits(out + TDM_BATCH_HEADER_SIZE, body_size),
    };
    /* The chain hash covers the header bytes before it, so encode twice: the
     * first pass lays out the bytes the chain hash folds in. */
    batch_header_encode(&h, out);
    batch_chain(prev, out, &h.chain_hash);
    batch_header_encode(&h, out);
    *header = h;
    return (int)(TDM_BATCH_HEADER_SIZE + body_size);
}

int tdm_batch_header_decode(const uint8_t *buf, size_t size, struct tdm_batch_header *header,
                            struct tdm_diag *diag)
{
    if (size < TDM_BATCH_HEADER_SIZE) {
        return TDM_CORRUPT(diag, "batch header: %zu bytes, need %d", size, TDM_BATCH_HEADER_SIZE);
    }
    struct tdm_reader r;
    tdm_reader_init(&r, buf, TDM_BATCH_HEADER_SIZE);
    struct tdm_batch_header h;
    uint32_t magic = tdm_get_u32(&r);
    uint16_t version = tdm_get_u16(&r);
    h.flags = tdm_get_u16(&r);
    h.epoch = tdm_get_u64(&r);
    h.lsn_first = tdm_get_u64(&r);
    h.record_count = tdm_get_u32(&r);
    h.body_size = tdm_get_u32(&r);
    h.raw_size = tdm_get_u32(&r);
    (void)tdm_get_u32(&r);
    h.time_ns = (int64_t)tdm_get_u64(&r);
    h.lsn_durable = tdm_get_u64(&r);
    h.body_checksum = tdm_get_u64(&r);
    tdm_get_bytes(&r, h.chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
    (void)tdm_get_u64(&r);
    uint64_t checksum = tdm_get_u64(&r);
    tdm_assert(!r.overflow);

    if (magic != TDM_BATCH_MAGIC) {
        return TDM_CORRUPT(diag, "batch header: bad magic 0x%08x", magic);
    }
    if (checksum != XXH3_64bits(buf, BATCH_CHECKSUM_OFFSET)) {
        return TDM_CORRUPT(diag, "batch header: checksum mismatch");
    }
    if (version != TDM_BATCH_VERSION) {
        return TDM_CORRUPT(diag, "batch header: unsupported version %u", version);
    }
    if (h.record_count == 0 || h.record_count > TDM_BATCH_RECORDS_MAX) {
        return TDM_CORRUPT(diag, "batch header: record_count %u out of range", h.record_count);
    }
    if (h.raw_size > TDM_BATCH_RAW_SIZE_MAX || h.body_size > TDM_BATCH_BODY_SIZE_MAX) {
        return TDM_CORRUPT(diag, "batch header: size out of range");
    }
    if (h.lsn_first == 0 || h.lsn_first > UINT64_MAX - h.record_count) {
        return TDM_CORRUPT(diag, "batch header: lsn_first %llu out of range",
                           (unsigned long long)h.lsn_first);
    }
    *header = h;
    return 0;
}

bool tdm_batch_chain_follows(const struct tdm_batch_header *header,
                             const struct tdm_chain_hash *prev)
{
    uint8_t encoded[TDM_BATCH_HEADER_SIZE];
    struct tdm_chain_hash chain;
    batch_header_encode(header, encoded);
    batch_chain(prev, encoded, &chain);
    return memcmp(chain.bytes, header->chain_hash.bytes, TDM_CHAIN_HASH_SIZE) == 0;
}

static int batch_entries_check(const struct tdm_batch_header *header, const uint8_t *raw,
                               struct tdm_diag *diag)
{
    size_t offset = 0;
    uint32_t count = 0;
    while (offset < header->raw_size) {
        if (header->raw_size - offset < 4) {
            return TDM_CORRUPT(diag, "batch %llu: truncated entry",
                               (unsigned long long)header->lsn_first);
        }
        struct tdm_reader r;
        tdm_reader_init(&r, raw + offset, 4);
        uint32_t size = tdm_get_u32(&r);
        offset += 4;
        if (size == 0 || size > header->raw_size - offset) {
            return TDM_CORRUPT(diag, "batch %llu: entry size %u out of range",
                               (unsigned long long)header->lsn_first, size);
        }
        offset += size;
        count++;
    }
    if (count != header->record_count) {
        return TDM_CORRUPT(diag, "batch %llu: %u entries, header says %u",
                           (unsigned long long)header->lsn_first, count, header->record_count);
    }
    return 0;
}

int tdm_batch_body_check(const struct tdm_batch_header *header, const uint8_t *body,
                         struct tdm_diag *diag)
{
    if (XXH3_64bits(body, header->body_size) != header->body_checksum) {
        return TDM_CORRUPT(diag, "batch %llu: body checksum mismatch",
                           (unsigned long long)header->lsn_first);
    }
    return 0;
}

/* One decompression context per thread, kept for the thread's life:
 * ZSTD_decompress() allocates and initialises a fresh one (about 160 KiB)
 * on every call, which cost more than decompressing a small batch. */
static pthread_key_t batch_dctx_key;
static pthread_once_t batch_dctx_once = PTHREAD_ONCE_INIT;
static int batch_dctx_key_rv;

static void batch_dctx_free(void *dctx)
{
    ZSTD_freeDCtx(dctx);
}

static void batch_dctx_key_create(void)
{
    batch_dctx_key_rv = pthread_key_create(&batch_dctx_key, batch_dctx_free);
}

/* This thread's context, or NULL (out of memory, or no key). */
static ZSTD_DCtx *batch_dctx(void)
{
    pthread_once(&batch_dctx_once, batch_dctx_key_create);
    if (batch_dctx_key_rv != 0) {
        return NULL;
    }
    ZSTD_DCtx *dctx = pthread_getspecific(batch_dctx_key);
    if (dctx == NULL) {
        dctx = ZSTD_createDCtx();
        if (dctx != NULL && pthread_setspecific(batch_dctx_key, dctx) != 0) {
            ZSTD_freeDCtx(dctx);
            dctx = NULL;
        }
    }
    return dctx;
}

int tdm_batch_body_decode(const struct tdm_batch_header *header, const uint8_t *body, uint8_t *raw,
                          size_t raw_size, struct tdm_diag *diag)
{
    tdm_assert(raw_size >= header->raw_size);
    int rv = tdm_batch_body_check(header, body, diag);
    if (rv != 0) {
        return rv;
    }
    ZSTD_DCtx *dctx = batch_dctx();
    size_t n = dctx != NULL ? ZSTD_decompressDCtx(dctx, raw, raw_size, body, header->body_size)
                            : ZSTD_decompress(raw, raw_size, body, header->body_size);
    if (ZSTD_isError(n) || n != header->raw_size) {
        return TDM_CORRUPT(diag, "batch %llu: body does not decompress to %u bytes",
                           (unsigned long long)header->lsn_first, header->raw_size);
    }
    return batch_entries_check(header, raw, diag);
}

int tdm_batch_whole_header_decode(const uint8_t *bytes, size_t size,
                                  struct tdm_batch_header *header, struct tdm_diag *diag)
{
    int rv = tdm_batch_header_decode(bytes, size, header, diag);
    if (rv == 0 && size != TDM_BATCH_HEADER_SIZE + (size_t)header->body_size) {
        rv = TDM_CORRUPT(diag, "batch %llu: %zu bytes, header says %u",
                         (unsigned long long)header->lsn_first, size,
                         TDM_BATCH_HEADER_SIZE + header->body_size);
    }
    return rv;
}

int tdm_batch_verify(const uint8_t *bytes, size_t size, struct tdm_batch_header *header,
                     struct tdm_diag *diag)
{
    struct tdm_batch_header h;
    int rv = tdm_batch_whole_header_decode(bytes, size, &h, diag);
    if (rv != 0) {
        return rv;
    }
    uint8_t *raw = tdm_malloc(h.raw_size + 1u);
    if (raw == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    rv = tdm_batch_body_decode(&h, bytes + TDM_BATCH_HEADER_SIZE, raw, h.raw_size, diag);
    tdm_free(raw);
    if (rv == 0) {
        *header = h;
    }
    return rv;
}

int tdm_batch_next(const uint8_t *raw, size_t raw_size, size_t *offset, const uint8_t **record,
                   size_t *record_size)
{
    if (*offset >= raw_size) {
        return 0;
    }
    tdm_assert(raw_size - *offset >= 4);
    struct tdm_reader r;
    tdm_reader_init(&r, raw + *offset, 4);
    uint32_t size = tdm_get_u32(&r);
    tdm_assert(size <= raw_size - *offset - 4);
    *record = raw + *offset + 4;
    *record_size = size;
    *offset += 4 + size;
    return 1;
}

int tdm_batch_raw_encode(const struct tandem_record *records, size_t count, size_t size_max,
                         uint8_t **raw, size_t *raw_size, struct tdm_diag *diag)
{
    if (records == NULL || count == 0 || count > TANDEM_APPEND_RECORDS_MAX) {
        tdm_diag_printf(diag, "record count %zu out of range [1, %d]", count,
                        TANDEM_APPEND_RECORDS_MAX);
        return TANDEM_EINVALID;
    }
    size_t size = 0;
    for (size_t i = 0; i < count; i++) {
        int rv = tdm_codec_validate(&records[i], diag);
        if (rv != 0) {
            tdm_diag_wrapf(diag, "record %zu", i);
            return rv;
        }
        size += 4 + tdm_codec_size(&records[i]);
    }
    if (size > size_max) {
        tdm_diag_printf(diag,
                        "%zu records take %zu bytes encoded, more than one call's %zu: "
                        "append them in several calls",
                        count, size, size_max);
        return TANDEM_EINVALID;
    }
    uint8_t *out = tdm_malloc(size);
    if (out == NULL) {
        tdm_diag_printf(diag, "out of memory for %zu records (%zu bytes)", count, size);
        return -ENOMEM;
    }
    struct tdm_writer w;
    tdm_writer_init(&w, out, size);
    for (size_t i = 0; i < count; i++) {
        size_t record_size = tdm_codec_size(&records[i]);
        tdm_put_u32(&w, (uint32_t)record_size);
        uint8_t *entry = tdm_writer_reserve(&w, record_size);
        tdm_assert(entry != NULL);
        size_t written = tdm_codec_encode(&records[i], entry, record_size);
        tdm_assert(written == record_size);
    }
    tdm_assert(w.offset == size);
    *raw = out;
    *raw_size = size;
    return 0;
}
