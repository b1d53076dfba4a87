/* bench/bench_util.c: what the benchmarks share (bench/bench_util.h). */
#include "bench_util.h"

#include <stdlib.h>
#include <string.h>

#include "engine/base/assert.h"
#include "tools/gen.h"

/* A bump allocator for the pool's strings. */
struct bench_chunk {
    struct bench_chunk *next;
    size_t used;
    char bytes[];
};

static void bench_pool_copy(struct bench_pool *pool, struct tandem_bytes *bytes, bench_fail_fn fail)
{
    size_t size = bytes->size + 1;
    tdm_assert(size <= pool->chunk_size);
    if (pool->chunks == NULL || pool->chunks->used + size > pool->chunk_size) {
        struct bench_chunk *chunk = malloc(sizeof(*chunk) + pool->chunk_size);
        if (chunk == NULL) {
            fail("out of memory for the record pool");
        }
        chunk->next = pool->chunks;
        chunk->used = 0;
        pool->chunks = chunk;
    }
    char *copy = pool->chunks->bytes + pool->chunks->used;
    if (bytes->size > 0) {
        memcpy(copy, bytes->data, bytes->size);
    }
    copy[bytes->size] = '\0';
    pool->chunks->used += size;
    pool->string_size += size;
    bytes->data = copy;
}

void bench_pool_build(struct bench_pool *pool, size_t count, uint64_t seed, uint32_t customer_count,
                      size_t chunk_size, bench_fail_fn fail)
{
    memset(pool, 0, sizeof(*pool));
    pool->chunk_size = chunk_size;
    pool->records = calloc(count, sizeof(pool->records[0]));
    if (pool->records == NULL) {
        fail("out of memory for %zu records", count);
    }
    struct tdm_gen *gen = malloc(sizeof(*gen));
    if (gen == NULL) {
        fail("out of memory for the generator");
    }
    tdm_gen_init(gen, seed, customer_count);
    for (size_t i = 0; i < count; i++) {
        struct tandem_record *r = &pool->records[i];
        tdm_gen_message(gen, r);
        tdm_assert(r->type == TANDEM_RECORD_MESSAGE);
        bench_pool_copy(pool, &r->message.threat, fail);
        bench_pool_copy(pool, &r->message.recipient, fail);
        bench_pool_copy(pool, &r->message.message_id, fail);
        bench_pool_copy(pool, &r->message.sender, fail);
        bench_pool_copy(pool, &r->message.subject, fail);
    }
    pool->count = count;
    free(gen);
}

void bench_pool_free(struct bench_pool *pool)
{
    while (pool->chunks != NULL) {
        struct bench_chunk *next = pool->chunks->next;
        free(pool->chunks);
        pool->chunks = next;
    }
    free(pool->records);
    memset(pool, 0, sizeof(*pool));
}

const char *bench_fs_name(unsigned long type)
{
    switch (type) {
    case 0xEF53UL:
        return "ext2/ext3/ext4";
    case 0x01021994UL:
        return "tmpfs";
    case 0x58465342UL:
        return "xfs";
    case 0x9123683EUL:
        return "btrfs";
    case 0x794C7630UL:
        return "overlayfs";
    case 0x2FC12FC1UL:
        return "zfs";
    case 0xF2F52010UL:
        return "f2fs";
    case 0x6969UL:
        return "nfs";
    case 0x65735546UL:
        return "fuse";
    case 0x858458F6UL:
        return "ramfs";
    default:
        return "unknown";
    }
}
