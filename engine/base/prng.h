/* engine/base/prng.h: a seeded PRNG for tests and simulation (splitmix64 seeding,
 * xoshiro256**). Deterministic for a seed; not for secrets. */
#ifndef TDM_ENGINE_BASE_PRNG_H
#define TDM_ENGINE_BASE_PRNG_H

#include <stdint.h>

struct tdm_prng {
    uint64_t s[4];
};

static inline uint64_t tdm_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void tdm_prng_init(struct tdm_prng *p, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        p->s[i] = tdm_splitmix64(&seed);
    }
}

static inline uint64_t tdm_prng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t tdm_prng_next(struct tdm_prng *p)
{
    uint64_t *s = p->s;
    uint64_t result = tdm_prng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = tdm_prng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, bound); bound > 0. */
static inline uint64_t tdm_prng_below(struct tdm_prng *p, uint64_t bound)
{
    return bound == 0 ? 0 : tdm_prng_next(p) % bound;
}

#endif
