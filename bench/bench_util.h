/* bench/bench_util.h: what the benchmarks share (bench_ingest, bench_scrub):
 * a pool of generated message records (tools/gen.c), their strings copied into
 * chunks of one bump allocator, immutable once built so that every thread may
 * read it; and the name of a file system for a report's machine lines. */
#ifndef TDM_BENCH_UTIL_H
#define TDM_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "tandem.h"

struct bench_chunk;

struct bench_pool {
    struct tandem_record *records; /* records[0 .. count) */
    size_t count;
    struct bench_chunk *chunks; /* Owned; the strings of the records. */
    size_t chunk_size;          /* Bytes of strings a chunk holds. */
    size_t string_size;         /* Bytes of strings, NULs included. */
};

/* The benchmark's way out: prints "NAME: cause" and exits 1. */
typedef void (*bench_fail_fn)(const char *format, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* Generate count messages (seed, customer_count as tdm_gen_init) into pool,
 * their strings in chunks of chunk_size bytes. Out of memory: fail(). */
void bench_pool_build(struct bench_pool *pool, size_t count, uint64_t seed, uint32_t customer_count,
                      size_t chunk_size, bench_fail_fn fail);

void bench_pool_free(struct bench_pool *pool);

/* The name of a file system from its statfs f_type ("unknown" if not known). */
const char *bench_fs_name(unsigned long type);

#endif
