/* engine/base/chain.h: the chain hash type, shared by the engine's log and the
 * pure replica (net/replica), which may include only engine/base. The chain
 * hash at an LSN identifies the whole history up to that LSN (docs/FORMAT.md
 * "Batch"); a checksum covers one header or body only. */
#ifndef TDM_ENGINE_BASE_CHAIN_H
#define TDM_ENGINE_BASE_CHAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define TDM_CHAIN_HASH_SIZE 16

struct tdm_chain_hash {
    uint8_t bytes[TDM_CHAIN_HASH_SIZE];
};

static inline bool tdm_chain_hash_equal(const struct tdm_chain_hash *a,
                                        const struct tdm_chain_hash *b)
{
    return memcmp(a->bytes, b->bytes, TDM_CHAIN_HASH_SIZE) == 0;
}

#endif
