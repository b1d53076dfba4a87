/* tests/fuzz/fuzz_batch.c: libFuzzer target for a batch as received from a
 * peer (tdm_batch_verify): it must refuse or accept without crashing, and an
 * accepted batch's entries must walk to exactly its record count. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/base/alloc.h"
#include "engine/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tdm_batch_header header;
    if (tdm_batch_verify(data, size, &header, NULL) != 0) {
        return 0;
    }
    uint8_t *raw = tdm_malloc(header.raw_size + 1u);
    if (raw == NULL) {
        return 0;
    }
    if (tdm_batch_body_decode(&header, data + TDM_BATCH_HEADER_SIZE, raw, header.raw_size, NULL) !=
        0) {
        abort(); /* Verified once, it must decode again. */
    }
    size_t offset = 0;
    const uint8_t *record;
    size_t record_size;
    uint32_t count = 0;
    while (tdm_batch_next(raw, header.raw_size, &offset, &record, &record_size) == 1) {
        count++;
    }
    if (count != header.record_count) {
        abort();
    }
    tdm_free(raw);
    return 0;
}
