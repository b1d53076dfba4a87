/* tests/unit/test_segment.c: segment names, header and footer (engine/segment.c,
 * docs/FORMAT.md "Segment"). */
#include "tdm_test.h"

#include <string.h>

#include "engine/segment.h"

/* A name formats to 20 digits and parses back; anything else is not a segment. */
static void test_segment_name__round_trip_and_rejects(void **state)
{
    (void)state;
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), 42);
    assert_string_equal(name, "00000000000000000042.seg");
    uint64_t lsn = 0;
    assert_true(tdm_segment_name_parse(name, &lsn));
    assert_int_equal(lsn, 42);
    tdm_segment_name(name, sizeof(name), UINT64_MAX);
    assert_true(tdm_segment_name_parse(name, &lsn));
    assert_true(lsn == UINT64_MAX);
    const char *bad[] = {"progress",
                         "00000000000000000042.se",
                         "0000000000000000004x.seg",
                         "00000000000000000000.seg",
                         "99999999999999999999.seg",
                         "000000000000000000042.seg",
                         ".seg",
                         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(tdm_segment_name_parse(bad[i], &lsn));
    }
}

/* A header round-trips, and every single-bit flip in it is reported. */
static void test_segment_header__round_trip_and_flips(void **state)
{
    (void)state;
    struct tdm_segment_header h = {.lsn_first = 77, .epoch = 5, .time_ns = 99};
    memset(h.chain_prev.bytes, 0xab, sizeof(h.chain_prev.bytes));
    uint8_t buf[TDM_SEGMENT_HEADER_SIZE];
    tdm_segment_header_encode(&h, buf);
    struct tdm_segment_header out;
    assert_int_equal(tdm_segment_header_decode(buf, &out, NULL), 0);
    assert_int_equal(out.lsn_first, 77);
    assert_int_equal(out.epoch, 5);
    assert_memory_equal(out.chain_prev.bytes, h.chain_prev.bytes, TDM_CHAIN_HASH_SIZE);
    for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
        uint8_t copy[TDM_SEGMENT_HEADER_SIZE];
        memcpy(copy, buf, sizeof(copy));
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct tdm_diag diag;
        assert_int_equal(tdm_segment_header_decode(copy, &out, &diag), TANDEM_ECORRUPT);
    }
}

/* A footer round-trips, every bit flip is reported, and an impossible LSN
 * range is refused even with a valid checksum. */
static void test_segment_footer__round_trip_flips_and_range(void **state)
{
    (void)state;
    struct tdm_segment_footer f = {
        .lsn_first = 10, .lsn_last = 20, .batch_count = 3, .data_size = 4096, .checksum = 7};
    memset(f.chain_last.bytes, 0x11, sizeof(f.chain_last.bytes));
    uint8_t buf[TDM_SEGMENT_FOOTER_SIZE];
    tdm_segment_footer_encode(&f, buf);
    struct tdm_segment_footer out;
    assert_int_equal(tdm_segment_footer_decode(buf, &out, NULL), 0);
    assert_int_equal(out.lsn_last, 20);
    assert_int_equal(out.data_size, 4096);
    for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
        uint8_t copy[TDM_SEGMENT_FOOTER_SIZE];
        memcpy(copy, buf, sizeof(copy));
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(tdm_segment_footer_decode(copy, &out, NULL), TANDEM_ECORRUPT);
    }
    f.lsn_last = 9;
    tdm_segment_footer_encode(&f, buf);
    struct tdm_diag diag;
    assert_int_equal(tdm_segment_footer_decode(buf, &out, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "range"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segment_name__round_trip_and_rejects),
        cmocka_unit_test(test_segment_header__round_trip_and_flips),
        cmocka_unit_test(test_segment_footer__round_trip_flips_and_range),
    };
    return cmocka_run_group_tests_name("segment", tests, NULL, NULL);
}
