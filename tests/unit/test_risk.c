/* tests/unit/test_risk.c: the count per customer of the records a failover
 * may lose (net/risk.c; docs/PROTOCOL.md §7.5).
 *
 * Method: batches of generated message records whose customers the test
 * sets (customer = LSN % 5 + 1, or one customer per record past the table),
 * built as a node builds them (tdm_batch_build), counted from an LSN inside
 * the first one and up to a bound inside the last; then batches made bad as
 * a lying or damaged peer would send them: cut short, of other LSNs, a
 * flipped body byte, a header that is not one, an entry that is no record
 * after good ones. Each bad one must be refused with TANDEM_ECORRUPT, naming
 * the cause, and count nothing, not even its good records: the count is as
 * it was. */
#include "tdm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/bytes.h"
#include "engine/batch.h"
#include "engine/codec.h"
#include "net/risk.h"
#include "tools/gen.h"

/* A batch of count records from lsn_first (malloc'd; *size its bytes). From
 * LSN garbage_from on (0: none), the entries are bytes that are no record. */
static uint8_t *batch_make(uint64_t lsn_first, uint32_t count, bool many_customers,
                           uint64_t garbage_from, size_t *size)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, lsn_first, 10);
    size_t raw_capacity = (size_t)count * (TDM_RECORD_SIZE_MAX + 4);
    uint8_t *raw = malloc(raw_capacity);
    assert_non_null(raw);
    size_t raw_size = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct tandem_record r;
        tdm_gen_message(&gen, &r);
        uint64_t lsn = lsn_first + i;
        r.message.customer_id = many_customers ? (uint32_t)lsn : (uint32_t)(lsn % 5 + 1);
        bool garbage = garbage_from != 0 && lsn >= garbage_from;
        size_t n =
            garbage ? 7 : tdm_codec_encode(&r, raw + raw_size + 4, raw_capacity - raw_size - 4);
        if (garbage) {
            memset(raw + raw_size + 4, 0xee, n);
        }
        struct tdm_writer w;
        tdm_writer_init(&w, raw + raw_size, 4);
        tdm_put_u32(&w, (uint32_t)n);
        raw_size += 4 + n;
    }
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    uint8_t *out = malloc(tdm_batch_bound(raw_size));
    struct tdm_chain_hash prev;
    memset(prev.bytes, 0x11, sizeof(prev.bytes));
    struct tdm_batch_header header;
    int n = tdm_batch_build(cctx, raw, raw_size, count, 2, lsn_first, lsn_first - 1, 1000, &prev,
                            out, tdm_batch_bound(raw_size), &header);
    assert_true(n > TDM_BATCH_HEADER_SIZE);
    ZSTD_freeCCtx(cctx);
    free(raw);
    *size = (size_t)n;
    return out;
}

static uint64_t risk_customer(const struct tdm_risk *risk, uint32_t customer)
{
    for (uint32_t i = 0; i < risk->customer_count; i++) {
        if (risk->customers[i] == customer) {
            return risk->customer_records[i];
        }
    }
    return 0;
}

/* LSNs 12..27 at risk, counted through 25: batches 10..19 and 20..29 count
 * 12..19 and 20..25, per customer (LSN % 5 + 1); tdm_risk_order sorts them. */
static void test_risk_count_batch__counts_from_next_lsn_to_the_bound(void **state)
{
    (void)state;
    struct tdm_risk risk;
    tdm_risk_init(&risk, 12, 27);
    assert_int_equal(risk.count_last, 27);
    risk.count_last = 25; /* As if bounded. */
    size_t size = 0;
    uint8_t *a = batch_make(10, 10, false, 0, &size);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_risk_count_batch(&risk, a, size, &diag), 0);
    free(a);
    assert_int_equal(risk.next_lsn, 20);
    assert_int_equal(risk.records, 8);
    uint8_t *b = batch_make(20, 10, false, 0, &size);
    assert_int_equal(tdm_risk_count_batch(&risk, b, size, &diag), 0);
    free(b);
    assert_int_equal(risk.next_lsn, 26);
    assert_int_equal(risk.records, 14);
    uint64_t want[6] = {0};
    for (uint64_t lsn = 12; lsn <= 25; lsn++) {
        want[lsn % 5 + 1]++;
    }
    assert_int_equal(risk.customer_count, 5);
    for (uint32_t c = 1; c <= 5; c++) {
        assert_int_equal(risk_customer(&risk, c), want[c]);
    }
    uint32_t order[TDM_RISK_CUSTOMERS_MAX];
    tdm_risk_order(&risk, order);
    for (uint32_t i = 0; i < risk.customer_count; i++) {
        assert_int_equal(risk.customers[order[i]], i + 1);
    }
    assert_int_equal(risk.other_records, 0);
}

/* A range longer than TDM_RISK_LSNS_MAX is counted only that far; customers
 * past TDM_RISK_CUSTOMERS_MAX are counted together. */
static void test_risk__bounds(void **state)
{
    (void)state;
    struct tdm_risk risk;
    tdm_risk_init(&risk, 5, 5 + 2 * (uint64_t)TDM_RISK_LSNS_MAX);
    assert_int_equal(risk.count_last, 5 + TDM_RISK_LSNS_MAX - 1);
    tdm_risk_init(&risk, 1, 1000);
    for (uint64_t lsn = 1; lsn <= 300; lsn += 100) {
        size_t size = 0;
        uint8_t *batch = batch_make(lsn, 100, true, 0, &size);
        struct tdm_diag diag = {{0}};
        assert_int_equal(tdm_risk_count_batch(&risk, batch, size, &diag), 0);
        free(batch);
    }
    assert_int_equal(risk.records, 300);
    assert_int_equal(risk.customer_count, TDM_RISK_CUSTOMERS_MAX);
    assert_int_equal(risk.other_records, 300 - TDM_RISK_CUSTOMERS_MAX);
}

/* Batches a damaged or lying peer could send: each refused, nothing counted. */
static void test_risk_count_batch__refuses_bad_batches(void **state)
{
    (void)state;
    struct tdm_risk risk;
    tdm_risk_init(&risk, 12, 40);
    size_t size = 0;
    uint8_t *good = batch_make(10, 10, false, 0, &size);
    uint8_t *bad = malloc(size);
    size_t other_size = 0;
    uint8_t *later = batch_make(30, 5, false, 0, &other_size);
    size_t garbage_size = 0;
    uint8_t *garbage = batch_make(10, 10, false, 15, &garbage_size);
    struct {
        const char *name;
        const uint8_t *bytes;
        size_t size;
        int flip; /* A byte of bad to flip, or -1. */
        const char *why;
    } cases[] = {
        {"cut short", good, size - 1, -1, "bytes, header says"},
        {"a header that is not one", good, size, 0, "batch"},
        {"a flipped body byte", good, size, (int)size - 3, "checksum"},
        {"of other LSNs", later, other_size, -1, "does not hold LSN 12"},
        {"a record that is none after good ones", garbage, garbage_size, -1, "LSN 15"},
        {"not even a header", good, 10, -1, "batch"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *bytes = cases[i].bytes;
        if (cases[i].flip >= 0) {
            memcpy(bad, good, size);
            bad[cases[i].flip] ^= 0x40;
            bytes = bad;
        }
        struct tdm_diag diag = {{0}};
        int rv = tdm_risk_count_batch(&risk, bytes, cases[i].size, &diag);
        if (rv != TANDEM_ECORRUPT || strstr(diag.message, cases[i].why) == NULL) {
            fprintf(stderr, "%s: %d %s\n", cases[i].name, rv, diag.message);
        }
        assert_int_equal(rv, TANDEM_ECORRUPT);
        assert_non_null(strstr(diag.message, cases[i].why));
        assert_int_equal(risk.next_lsn, 12);
        assert_int_equal(risk.records, 0);
        assert_int_equal(risk.customer_count, 0);
    }
    free(good);
    free(bad);
    free(later);
    free(garbage);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_risk_count_batch__counts_from_next_lsn_to_the_bound),
        cmocka_unit_test(test_risk__bounds),
        cmocka_unit_test(test_risk_count_batch__refuses_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
