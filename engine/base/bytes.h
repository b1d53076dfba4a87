/* engine/base/bytes.h: bounded little-endian encoding for disk and wire bytes
 * (STYLE B5.5). A reader or writer never touches memory outside its buffer: an
 * overrun sets a sticky flag, checked once at the end. */
#ifndef TDM_ENGINE_BASE_BYTES_H
#define TDM_ENGINE_BASE_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct tdm_writer {
    uint8_t *data; /* Borrowed buffer. */
    size_t size;   /* Capacity in bytes. */
    size_t offset; /* Bytes written so far. */
    bool overflow; /* Sticky: a write did not fit. */
};

struct tdm_reader {
    const uint8_t *data; /* Borrowed buffer. */
    size_t size;         /* Bytes available. */
    size_t offset;       /* Bytes consumed so far. */
    bool overflow;       /* Sticky: a read went past the end. */
};

static inline void tdm_writer_init(struct tdm_writer *w, void *data, size_t size)
{
    w->data = data;
    w->size = size;
    w->offset = 0;
    w->overflow = false;
}

static inline void tdm_reader_init(struct tdm_reader *r, const void *data, size_t size)
{
    r->data = data;
    r->size = size;
    r->offset = 0;
    r->overflow = false;
}

static inline uint8_t *tdm_writer_reserve(struct tdm_writer *w, size_t n)
{
    if (w->overflow || n > w->size - w->offset) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *p = w->data + w->offset;
    w->offset += n;
    return p;
}

static inline void tdm_put_bytes(struct tdm_writer *w, const void *src, size_t n)
{
    uint8_t *p = tdm_writer_reserve(w, n);
    if (p != NULL && n > 0) {
        memcpy(p, src, n);
    }
}

static inline void tdm_put_u8(struct tdm_writer *w, uint8_t v)
{
    tdm_put_bytes(w, &v, 1);
}

static inline void tdm_put_u16(struct tdm_writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    tdm_put_bytes(w, b, 2);
}

static inline void tdm_put_u32(struct tdm_writer *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    tdm_put_bytes(w, b, 4);
}

static inline void tdm_put_u64(struct tdm_writer *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    tdm_put_bytes(w, b, 8);
}

static inline const uint8_t *tdm_reader_take(struct tdm_reader *r, size_t n)
{
    if (r->overflow || n > r->size - r->offset) {
        r->overflow = true;
        return NULL;
    }
    const uint8_t *p = r->data + r->offset;
    r->offset += n;
    return p;
}

static inline void tdm_get_bytes(struct tdm_reader *r, void *dst, size_t n)
{
    const uint8_t *p = tdm_reader_take(r, n);
    if (p != NULL) {
        if (n > 0) {
            memcpy(dst, p, n);
        }
    } else if (n > 0) {
        memset(dst, 0, n);
    }
}

static inline uint8_t tdm_get_u8(struct tdm_reader *r)
{
    const uint8_t *p = tdm_reader_take(r, 1);
    return p != NULL ? p[0] : 0;
}

static inline uint16_t tdm_get_u16(struct tdm_reader *r)
{
    const uint8_t *p = tdm_reader_take(r, 2);
    return p != NULL ? (uint16_t)(p[0] | (p[1] << 8)) : 0;
}

static inline uint32_t tdm_get_u32(struct tdm_reader *r)
{
    const uint8_t *p = tdm_reader_take(r, 4);
    uint32_t v = 0;
    for (int i = 0; p != NULL && i < 4; i++) {
        v |= (uint32_t)p[i] << (8 * i);
    }
    return v;
}

static inline uint64_t tdm_get_u64(struct tdm_reader *r)
{
    const uint8_t *p = tdm_reader_take(r, 8);
    uint64_t v = 0;
    for (int i = 0; p != NULL && i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* Big-endian helpers for LMDB keys, whose byte order is their sort order. */
static inline void tdm_store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

static inline uint64_t tdm_load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static inline void tdm_store_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (24 - 8 * i));
    }
}

static inline uint32_t tdm_load_be32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

#endif
