/* tests/lib/records.c: records kept by value for comparisons in tests. */
#include "records.h"

#include <stdio.h>
#include <stdlib.h>

#include "engine/node.h"
#include "tdm_test.h"

void tdm_kept_set(struct tdm_kept *kept, const struct tandem_record *record)
{
    assert_int_equal(tdm_codec_validate(record, NULL), 0);
    kept->size = tdm_codec_encode(record, kept->bytes, sizeof(kept->bytes));
    assert_true(kept->size > 0);
}

void tdm_kept_get(const struct tdm_kept *kept, struct tandem_record *record)
{
    assert_true(kept->size > 0);
    assert_int_equal(tdm_codec_decode(kept->bytes, kept->size, record, NULL), 0);
}

static void kept_compare(const struct tdm_kept *kept, uint64_t lsn,
                         const struct tandem_record *record)
{
    struct tandem_record want;
    tdm_kept_get(kept, &want);
    if (!tdm_codec_equal(record, &want)) {
        fprintf(stderr, "LSN %llu differs from what was written\n", (unsigned long long)lsn);
        fail();
    }
}

int tdm_kept_equal_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    kept_compare(data, lsn, record);
    return 0;
}

int tdm_delivery_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    struct tdm_delivery *d = data;
    d->count++;
    assert_non_null(d->want);
    kept_compare(d->want, lsn, record);
    return 0;
}

void tdm_kept_generate(struct tdm_gen *gen, uint32_t n, struct tdm_kept *kept,
                       struct tandem_record *records)
{
    /* The generator's strings live until its next call: keep each first. */
    for (uint32_t i = 0; i < n; i++) {
        struct tandem_record generated;
        tdm_gen_message(gen, &generated);
        tdm_kept_set(&kept[i], &generated);
    }
    for (uint32_t i = 0; i < n; i++) {
        tdm_kept_get(&kept[i], &records[i]);
    }
}

bool tdm_test_zero_rest(const uint8_t *bytes, uint64_t offset, uint64_t end)
{
    for (uint64_t i = offset; i < end; i++) {
        if (bytes[i] != 0) {
            return false;
        }
    }
    return true;
}

struct tandem *tdm_test_node_open(struct tdm_fs *fs, const char *dir, uint32_t flags,
                                  uint64_t segment_size)
{
    struct tandem_options options;
    tandem_options_init(&options);
    options.flags = flags | TDM_OPEN_PREPARE_INLINE; /* Deterministic file operations. */
    if (segment_size != 0) {
        options.segment_size = segment_size;
    }
    struct tandem *t = NULL;
    struct tdm_diag diag = {{0}};
    int rv = tdm_node_open(dir, &options, fs, &t, &diag);
    if (rv != 0) {
        fprintf(stderr, "open %s: %s: %s\n", dir, tandem_strerror(rv), diag.message);
    }
    assert_int_equal(rv, 0);
    return t;
}
