/* tests/unit/test_batch.c: the batch format: build, decode, checksums and the
 * chain hash (engine/batch.c, docs/FORMAT.md "Batch"). */
#include "tdm_test.h"

#include <string.h>

#include "engine/base/bytes.h"
#include "engine/base/prng.h"
#include "engine/batch.h"

struct fixture {
    ZSTD_CCtx *cctx;
    uint8_t raw[4096];
    size_t raw_size;
    uint32_t record_count;
    uint8_t out[8192];
    int size;
    struct tdm_batch_header header;
    struct tdm_chain_hash prev;
};

/* Lay out count entries of random bytes as a raw body. */
static void raw_fill(struct fixture *f, uint32_t count, uint64_t seed)
{
    struct tdm_prng prng;
    tdm_prng_init(&prng, seed);
    struct tdm_writer w;
    tdm_writer_init(&w, f->raw, sizeof(f->raw));
    for (uint32_t i = 0; i < count; i++) {
        uint32_t size = 1 + (uint32_t)tdm_prng_below(&prng, 60);
        tdm_put_u32(&w, size);
        for (uint32_t j = 0; j < size; j++) {
            tdm_put_u8(&w, (uint8_t)tdm_prng_below(&prng, 4));
        }
    }
    assert_false(w.overflow);
    f->raw_size = w.offset;
    f->record_count = count;
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    f->cctx = ZSTD_createCCtx();
    assert_non_null(f->cctx);
    memset(f->prev.bytes, 0x5a, sizeof(f->prev.bytes));
    raw_fill(f, 20, 7);
    f->size = tdm_batch_build(f->cctx, f->raw, f->raw_size, f->record_count, 3, 1000, 999,
                              123456789, &f->prev, f->out, sizeof(f->out), &f->header);
    assert_true(f->size > TDM_BATCH_HEADER_SIZE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ZSTD_freeCCtx(f->cctx);
    test_free(f);
    return 0;
}

/* A built batch decodes to the same header and the same raw body. */
static void test_batch_build__round_trip(void **state)
{
    struct fixture *f = *state;
    struct tdm_batch_header h;
    struct tdm_diag diag;
    assert_int_equal(tdm_batch_header_decode(f->out, (size_t)f->size, &h, &diag), 0);
    assert_int_equal(h.lsn_first, 1000);
    assert_int_equal(h.record_count, 20);
    assert_int_equal(tdm_batch_lsn_last(&h), 1019);
    assert_int_equal(h.epoch, 3);
    assert_int_equal(h.lsn_durable, 999);
    assert_int_equal(h.time_ns, 123456789);
    assert_int_equal(h.raw_size, f->raw_size);
    assert_memory_equal(h.chain_hash.bytes, f->header.chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
    uint8_t raw[4096];
    assert_int_equal(
        tdm_batch_body_decode(&h, f->out + TDM_BATCH_HEADER_SIZE, raw, sizeof(raw), &diag), 0);
    assert_memory_equal(raw, f->raw, f->raw_size);
    size_t offset = 0;
    const uint8_t *record;
    size_t record_size;
    uint32_t count = 0;
    while (tdm_batch_next(raw, h.raw_size, &offset, &record, &record_size) == 1) {
        count++;
    }
    assert_int_equal(count, 20);
}

/* The chain hash follows from the previous one and from nothing else. */
static void test_batch_chain_follows__previous_only(void **state)
{
    struct fixture *f = *state;
    assert_true(tdm_batch_chain_follows(&f->header, &f->prev));
    struct tdm_chain_hash other = f->prev;
    other.bytes[15] ^= 1;
    assert_false(tdm_batch_chain_follows(&f->header, &other));
}

/* The same records after a different history get a different chain hash,
 * so equal chain hashes at an LSN mean equal histories. */
static void test_batch_build__chain_depends_on_history(void **state)
{
    struct fixture *f = *state;
    struct tdm_chain_hash prev = f->prev;
    prev.bytes[0] ^= 0x80;
    uint8_t out[8192];
    struct tdm_batch_header h;
    int size = tdm_batch_build(f->cctx, f->raw, f->raw_size, f->record_count, 3, 1000, 999,
                               123456789, &prev, out, sizeof(out), &h);
    assert_int_equal(size, f->size);
    assert_memory_not_equal(h.chain_hash.bytes, f->header.chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
}

/* Every single-bit flip in the header is caught by the header checksum or the
 * magic check, and reported as corruption (never an assertion). */
static void test_batch_header_decode__every_bit_flip(void **state)
{
    struct fixture *f = *state;
    for (size_t bit = 0; bit < TDM_BATCH_HEADER_SIZE * 8; bit++) {
        uint8_t copy[TDM_BATCH_HEADER_SIZE];
        memcpy(copy, f->out, sizeof(copy));
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct tdm_batch_header h;
        struct tdm_diag diag;
        assert_int_equal(tdm_batch_header_decode(copy, sizeof(copy), &h, &diag), TANDEM_ECORRUPT);
    }
}

/* Every single-bit flip in the body is caught by the body checksum. */
static void test_batch_body_decode__every_bit_flip(void **state)
{
    struct fixture *f = *state;
    size_t body_size = (size_t)f->size - TDM_BATCH_HEADER_SIZE;
    for (size_t bit = 0; bit < body_size * 8; bit += 3) {
        uint8_t body[8192];
        memcpy(body, f->out + TDM_BATCH_HEADER_SIZE, body_size);
        body[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        uint8_t raw[4096];
        struct tdm_diag diag;
        assert_int_equal(tdm_batch_body_decode(&f->header, body, raw, sizeof(raw), &diag),
                         TANDEM_ECORRUPT);
        assert_non_null(strstr(diag.message, "checksum"));
    }
}

/* A header cut short is corruption, at every length. */
static void test_batch_header_decode__truncated(void **state)
{
    struct fixture *f = *state;
    for (size_t size = 0; size < TDM_BATCH_HEADER_SIZE; size++) {
        struct tdm_batch_header h;
        assert_int_equal(tdm_batch_header_decode(f->out, size, &h, NULL), TANDEM_ECORRUPT);
    }
}

/* A header that verifies but claims more entries than the body holds is
 * corruption: the entry count is checked after decompression. */
static void test_batch_body_decode__entry_count_mismatch(void **state)
{
    struct fixture *f = *state;
    uint8_t out[8192];
    struct tdm_batch_header h;
    /* Built honestly with a record_count that does not match the entries. */
    int size = tdm_batch_build(f->cctx, f->raw, f->raw_size, f->record_count + 1, 3, 1000, 999, 1,
                               &f->prev, out, sizeof(out), &h);
    assert_true(size > 0);
    uint8_t raw[4096];
    struct tdm_diag diag;
    assert_int_equal(
        tdm_batch_body_decode(&h, out + TDM_BATCH_HEADER_SIZE, raw, sizeof(raw), &diag),
        TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "entries"));
}

/* LSN arithmetic near the top of the range is rejected, not wrapped. */
static void test_batch_header_decode__lsn_overflow(void **state)
{
    struct fixture *f = *state;
    uint8_t out[8192];
    struct tdm_batch_header h;
    int size = tdm_batch_build(f->cctx, f->raw, f->raw_size, f->record_count, 3, UINT64_MAX - 5, 0,
                               1, &f->prev, out, sizeof(out), &h);
    assert_true(size > 0);
    assert_int_equal(tdm_batch_header_decode(out, (size_t)size, &h, NULL), TANDEM_ECORRUPT);
}

/* A whole batch as a peer sends it verifies; every truncation, every length
 * beyond it and a flipped bit anywhere are refused as corruption. */
static void test_batch_verify__whole_batch(void **state)
{
    struct fixture *f = *state;
    struct tdm_batch_header h;
    assert_int_equal(tdm_batch_verify(f->out, (size_t)f->size, &h, NULL), 0);
    assert_int_equal(h.lsn_first, 1000);
    for (size_t size = 0; size < (size_t)f->size; size++) {
        assert_int_equal(tdm_batch_verify(f->out, size, &h, NULL), TANDEM_ECORRUPT);
    }
    assert_int_equal(tdm_batch_verify(f->out, (size_t)f->size + 1, &h, NULL), TANDEM_ECORRUPT);
    for (size_t bit = 0; bit < (size_t)f->size * 8; bit += 5) {
        f->out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(tdm_batch_verify(f->out, (size_t)f->size, &h, NULL), TANDEM_ECORRUPT);
        f->out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_build__round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_chain_follows__previous_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_build__chain_depends_on_history, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batch_header_decode__every_bit_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_body_decode__every_bit_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_header_decode__truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_body_decode__entry_count_mismatch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batch_header_decode__lsn_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_verify__whole_batch, setup, teardown),
    };
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
