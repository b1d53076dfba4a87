/* tests/fuzz/fuzz_codec.c: libFuzzer target for the record decoder (untrusted:
 * bytes from disk and from peers). A decode either fails with TANDEM_ECORRUPT
 * or yields a record that validates and re-encodes to exactly the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tandem_record record;
    if (tdm_codec_decode(data, size, &record, NULL) != 0) {
        return 0;
    }
    if (tdm_codec_validate(&record, NULL) != 0) {
        abort();
    }
    uint8_t out[TDM_RECORD_SIZE_MAX];
    size_t n = tdm_codec_encode(&record, out, sizeof(out));
    if (n != size || memcmp(out, data, size) != 0) {
        abort();
    }
    return 0;
}
