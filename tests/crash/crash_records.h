/* tests/crash/crash_records.h: the records crash_child appends, regenerated
 * by test_crash from what the child reported, so that the parent can compare
 * byte for byte without the child sending any record over the pipe.
 *
 * Each append of writer thread `thread` (numbered across every run of the
 * child, so no two appends in one directory share a seed) with sequence number
 * `seq` stores 1 to 3 message records; record j comes from its own generator,
 * seeded from (thread, seq, j), so that each record's strings stay valid while
 * the others are generated. */
#ifndef TDM_TESTS_CRASH_CRASH_RECORDS_H
#define TDM_TESTS_CRASH_CRASH_RECORDS_H

#include <stdint.h>

#include "tandem.h"
#include "tools/gen.h"

#define CRASH_THREADS     16 /* Writer threads in one child. */
#define CRASH_RECORDS_MAX 3  /* Records in one append. */
#define CRASH_CUSTOMERS   20
#define CRASH_SEQ_MAX     1000003u /* Appends of one thread: keeps seeds distinct. */

/* Fill records[0 .. *count) for append (thread, seq). The records' strings
 * live in gens (CRASH_RECORDS_MAX generators) until the next call. */
static inline void crash_records(uint64_t thread, uint64_t seq, struct tdm_gen *gens,
                                 struct tandem_record *records, uint32_t *count)
{
    uint64_t seed = thread * CRASH_SEQ_MAX + seq;
    *count = 1 + (uint32_t)(seed % CRASH_RECORDS_MAX);
    for (uint32_t j = 0; j < *count; j++) {
        tdm_gen_init(&gens[j], seed * CRASH_RECORDS_MAX + j, CRASH_CUSTOMERS);
        tdm_gen_message(&gens[j], &records[j]);
    }
}

#endif
