/* tests/lib/records.h: records kept by value (their codec encoding), for tests
 * that compare what they wrote with what they read back. */
#ifndef TDM_TESTS_LIB_RECORDS_H
#define TDM_TESTS_LIB_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/codec.h"
#include "engine/fs.h"
#include "tools/gen.h"

struct tdm_kept {
    uint8_t bytes[TDM_RECORD_SIZE_MAX];
    size_t size; /* 0: nothing kept. */
};

/* Keep a valid record (asserts validity: test data is generated valid). */
void tdm_kept_set(struct tdm_kept *kept, const struct tandem_record *record);
/* The kept record; its strings point into kept. */
void tdm_kept_get(const struct tdm_kept *kept, struct tandem_record *record);
/* tandem_record_cb that asserts the delivered record equals data (a const
 * struct tdm_kept *). */
int tdm_kept_equal_cb(void *data, uint64_t lsn, const struct tandem_record *record);

/* Counts deliveries of a query and compares each with what was kept. */
struct tdm_delivery {
    const struct tdm_kept *want; /* The record every delivery must equal. */
    int count;                   /* Deliveries so far. */
};

/* tandem_record_cb for a struct tdm_delivery *: counts, and fails the test if
 * the record differs from want. */
int tdm_delivery_cb(void *data, uint64_t lsn, const struct tandem_record *record);

/* Open the node in dir over fs (tdm_node_open) with flags and segment_size
 * (0: the default); fails the test, printing the cause, if it cannot. */
/* Whether bytes[offset, end) are all zero: the unwritten space of a prepared
 * segment after its last batch (docs/FORMAT.md "Prepared segments"). A batch
 * header never starts with a zero byte. */
bool tdm_test_zero_rest(const uint8_t *bytes, uint64_t offset, uint64_t end);

struct tandem *tdm_test_node_open(struct tdm_fs *fs, const char *dir, uint32_t flags,
                                  uint64_t segment_size);

/* Generate n message records from gen, keep them in kept[0..n) and point
 * records[0..n) at the kept copies (valid while kept is). */
void tdm_kept_generate(struct tdm_gen *gen, uint32_t n, struct tdm_kept *kept,
                       struct tandem_record *records);

#endif
