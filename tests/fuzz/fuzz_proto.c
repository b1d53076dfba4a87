/* tests/fuzz/fuzz_proto.c: libFuzzer target for the frame reader and decoder
 * (untrusted: bytes from the network). Bytes are fed in two pieces; every
 * frame that decodes must re-encode to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t fuzz_buffer[1u << 20];
static uint8_t fuzz_encoded[1u << 20];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tdm_proto_reader reader;
    tdm_proto_reader_init(&reader, fuzz_buffer, sizeof(fuzz_buffer));
    size_t half = size / 2;
    const uint8_t *pieces[2] = {data, data + half};
    size_t sizes[2] = {half, size - half};
    for (int p = 0; p < 2; p++) {
        size_t at = 0;
        while (at < sizes[p]) {
            size_t consumed = 0;
            if (tdm_proto_reader_feed(&reader, pieces[p] + at, sizes[p] - at, &consumed, NULL) !=
                0) {
                return 0;
            }
            at += consumed;
            struct tdm_proto_frame frame;
            while (tdm_proto_reader_next(&reader, &frame, NULL) == 0) {
                struct tdm_proto_msg msg;
                if (tdm_proto_decode(&frame, &msg, NULL) != 0) {
                    continue;
                }
                size_t written = 0;
                if (tdm_proto_encode(&msg, fuzz_encoded, sizeof(fuzz_encoded), &written, NULL) !=
                    0) {
                    abort();
                }
            }
            if (consumed == 0) {
                break;
            }
        }
    }
    return 0;
}
