/* tests/fault/test_damage.c: a flipped bit inside a sealed segment is reported
 * as damage (never cut off), reads of its range fail clearly, the rest of the
 * log is served, and neither open, reads nor close alter any file.
 *
 * Method: on the in-memory fault file system, a node with small segments
 * (8 KiB) appends a few thousand records, so that the log holds many sealed
 * segments and one open segment, and closes cleanly. The test parses the
 * segment files itself to know where every segment header, batch header,
 * batch body and footer lies. Then, for positions spread over every region of
 * several sealed segments (deterministic from a seed), it flips one bit (bit
 * rot on the medium), opens the node, checks the damage report, reads every
 * LSN and queries every customer, closes, checks that no file changed, and
 * flips the bit back. Other cases flip a bit in the open segment, and check
 * that appends after sealed damage leave a log that is clean once the bit is
 * repaired. */
#include "tdm_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/prng.h"
#include "engine/batch.h"
#include "engine/node.h"
#include "engine/segment.h"
#include "fault_fs.h"
#include "records.h"
#include "tools/gen.h"

#define SEGMENT_SIZE 8192
#define RECORD_COUNT 2500
#define CUSTOMERS    12
#define LSN_MAX      (RECORD_COUNT + 256)
#define SEGMENTS_MAX 1024
#define BATCHES_MAX  256 /* Per segment: far more than 8 KiB can hold. */
#define POSITIONS    100 /* Sealed-segment flips per run. */
#define SEED         4242

/* Where one batch lies, as the test parsed it. */
struct batch_info {
    uint64_t offset; /* Of the batch header. */
    uint64_t size;   /* Header plus body. */
    uint64_t lsn_first;
    uint64_t lsn_last;
};

struct segment_info {
    uint64_t lsn_first;
    uint64_t lsn_last;
    char path[TDM_PATH_SIZE];
    uint64_t size;
    bool sealed;
    uint32_t batch_count;
    struct batch_info batches[BATCHES_MAX];
};

struct fixture {
    struct tdm_fault_fs fs;
    char dir[256]; /* Real temporary directory: the index lives there. */
    char log_dir[TDM_PATH_SIZE];
    struct tdm_kept *kept; /* kept[1 .. lsn_last]. */
    uint64_t lsn_last;
    struct segment_info *segments;
    uint32_t segment_count;
};

/* What one flip is expected to break. */
enum region {
    REGION_SEGMENT_HEADER = 1,
    REGION_BATCH_HEADER,
    REGION_BATCH_BODY,
    REGION_FOOTER,
};

static const char *region_name(enum region region)
{
    switch (region) {
    case REGION_SEGMENT_HEADER:
        return "segment header";
    case REGION_BATCH_HEADER:
        return "batch header";
    case REGION_BATCH_BODY:
        return "batch body";
    case REGION_FOOTER:
        return "footer";
    }
    return "?";
}

struct flip {
    const struct segment_info *segment;
    enum region region;
    const struct batch_info *batch; /* For the batch regions; else NULL. */
    uint64_t offset;
    unsigned bit;
};

static struct tandem *node_open(struct fixture *f, uint32_t flags)
{
    return tdm_test_node_open(&f->fs.base, f->dir, flags, SEGMENT_SIZE);
}

static void fill(struct fixture *f, struct tandem *t)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, SEED, CUSTOMERS);
    struct tdm_prng prng;
    tdm_prng_init(&prng, SEED);
    uint64_t next = 1;
    while (next <= RECORD_COUNT) {
        struct tdm_kept kept[4];
        struct tandem_record records[4];
        uint32_t count = 1 + (uint32_t)tdm_prng_below(&prng, 4);
        for (uint32_t i = 0; i < count; i++) {
            struct tandem_record r;
            uint64_t lsn = next + i;
            if (lsn <= CUSTOMERS || tdm_prng_below(&prng, 64) == 0) {
                uint32_t id = lsn <= CUSTOMERS ? (uint32_t)lsn
                                               : 1 + (uint32_t)tdm_prng_below(&prng, CUSTOMERS);
                tdm_gen_customer(&gen, id, &r);
            } else {
                tdm_gen_message(&gen, &r);
            }
            tdm_kept_set(&kept[i], &r);
        }
        for (uint32_t i = 0; i < count; i++) {
            tdm_kept_get(&kept[i], &records[i]);
        }
        uint64_t lsn = 0;
        assert_int_equal(tandem_append(t, records, count, &lsn, NULL), 0);
        assert_int_equal(lsn, next);
        for (uint32_t i = 0; i < count; i++) {
            f->kept[lsn + i] = kept[i];
        }
        next += count;
    }
    f->lsn_last = next - 1;
}

static int segment_names_cb(void *data, const char *name)
{
    struct fixture *f = data;
    uint64_t lsn;
    if (tdm_segment_name_parse(name, &lsn)) {
        assert_true(f->segment_count < SEGMENTS_MAX);
        struct segment_info *s = &f->segments[f->segment_count++];
        s->lsn_first = lsn;
        assert_int_equal(tdm_fs_path(s->path, sizeof(s->path), f->log_dir, name), 0);
    }
    return 0;
}

/* Parse one segment file: header, every batch, and the footer if sealed. */
static void segment_parse(struct fixture *f, struct segment_info *s, bool sealed)
{
    void *data = NULL;
    size_t size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, s->path, &data, &size), 0);
    const uint8_t *bytes = data;
    s->size = size;
    s->sealed = sealed;
    struct tdm_segment_header sh;
    assert_int_equal(tdm_segment_header_decode(bytes, &sh, NULL), 0);
    assert_int_equal(sh.lsn_first, s->lsn_first);
    uint64_t end = size;
    if (sealed) {
        struct tdm_segment_footer footer;
        end = size - TDM_SEGMENT_FOOTER_SIZE;
        assert_int_equal(tdm_segment_footer_decode(bytes + end, &footer, NULL), 0);
        assert_int_equal(footer.data_size, end);
    }
    uint64_t offset = TDM_SEGMENT_HEADER_SIZE;
    uint64_t expected = s->lsn_first;
    while (offset < end && !tdm_test_zero_rest(bytes, offset, end)) {
        struct tdm_batch_header h;
        assert_int_equal(tdm_batch_header_decode(bytes + offset, TDM_BATCH_HEADER_SIZE, &h, NULL),
                         0);
        assert_int_equal(h.lsn_first, expected);
        assert_true(s->batch_count < BATCHES_MAX);
        s->batches[s->batch_count++] = (struct batch_info){
            offset, TDM_BATCH_HEADER_SIZE + h.body_size, h.lsn_first, tdm_batch_lsn_last(&h)};
        offset += TDM_BATCH_HEADER_SIZE + h.body_size;
        expected = tdm_batch_lsn_last(&h) + 1;
    }
    assert_true(offset == end || tdm_test_zero_rest(bytes, offset, end));
    s->lsn_last = expected - 1;
    tdm_free(data);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->kept = calloc(LSN_MAX, sizeof(*f->kept));
    f->segments = calloc(SEGMENTS_MAX, sizeof(*f->segments));
    assert_non_null(f->kept);
    assert_non_null(f->segments);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    assert_int_equal(tdm_fs_path(f->log_dir, sizeof(f->log_dir), f->dir, "log"), 0);
    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, f->dir), 0);
    struct tandem *t = node_open(f, TANDEM_OPEN_CREATE);
    fill(f, t);
    tandem_close(t);
    assert_int_equal(f->fs.base.list(&f->fs.base, f->log_dir, segment_names_cb, f), 0);
    assert_true(f->segment_count >= 4); /* Several sealed segments and the open one. */
    for (uint32_t i = 0; i < f->segment_count; i++) {
        segment_parse(f, &f->segments[i], i + 1 < f->segment_count);
        if (i > 0) {
            assert_int_equal(f->segments[i].lsn_first, f->segments[i - 1].lsn_last + 1);
        }
    }
    assert_int_equal(f->segments[f->segment_count - 1].lsn_last, f->lsn_last);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tdm_fault_fs_deinit(&f->fs);
    tdm_test_tmpdir_remove(f->dir);
    free(f->segments);
    free(f->kept);
    free(f);
    return 0;
}

/* ---- checks ------------------------------------------------------------------- */

static bool in_range(uint64_t lsn, uint64_t first, uint64_t last)
{
    return lsn >= first && lsn <= last;
}

/* True if the damage report names a range with both ends known that holds lsn. */
static bool damage_reported(const struct tandem_status *status, uint64_t lsn)
{
    uint32_t n = status->damaged_count < TANDEM_STATUS_DAMAGED_MAX ? status->damaged_count
                                                                   : TANDEM_STATUS_DAMAGED_MAX;
    for (uint32_t i = 0; i < n; i++) {
        const struct tandem_damage *d = &status->damaged[i];
        if (d->lsn_first != 0 && d->lsn_last != 0 && in_range(lsn, d->lsn_first, d->lsn_last)) {
            return true;
        }
    }
    return false;
}

/* Read every LSN of the log. A read either delivers the record as it was
 * written or fails with TANDEM_ECORRUPT / TANDEM_EDAMAGED and a diag naming
 * the segment file and the offset; failed[lsn] records which. With exact
 * ranges (damage to batches), every LSN of a reported range fails; a segment
 * header or footer flip may be reported coarsely, as the segment's range,
 * while its batches still verify and read. */
static void read_all(struct fixture *f, struct tandem *t, const struct tandem_status *status,
                     bool exact_ranges, uint8_t *failed)
{
    for (uint64_t lsn = 1; lsn <= f->lsn_last; lsn++) {
        struct tdm_delivery d = {&f->kept[lsn], 0};
        struct tandem_diag diag = {{0}};
        int rv = tandem_read(t, lsn, tdm_delivery_cb, &d, &diag);
        failed[lsn] = rv != 0;
        if (rv == 0) {
            assert_int_equal(d.count, 1);
        } else {
            if (rv != TANDEM_ECORRUPT && rv != TANDEM_EDAMAGED) {
                fprintf(stderr, "read LSN %" PRIu64 ": %s: %s\n", lsn, tandem_strerror(rv),
                        diag.message);
            }
            assert_true(rv == TANDEM_ECORRUPT || rv == TANDEM_EDAMAGED);
            assert_int_equal(d.count, 0);
            assert_non_null(strstr(diag.message, "segment"));
            assert_non_null(strstr(diag.message, "offset"));
        }
        if (exact_ranges && damage_reported(status, lsn) && rv == 0) {
            fprintf(stderr, "LSN %" PRIu64 " lies in a reported damaged range but reads\n", lsn);
            fail();
        }
    }
}

struct collected {
    uint64_t lsns[LSN_MAX];
    size_t count;
};

static int collect_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    struct collected *c = data;
    (void)record;
    assert_true(c->count < LSN_MAX);
    c->lsns[c->count++] = lsn;
    return 0;
}

/* Every customer's query delivers its undamaged records in order: all of
 * them if none is damaged, else exactly those before the first damaged one
 * and then TANDEM_ECORRUPT / TANDEM_EDAMAGED. (The generator's times grow
 * with the LSN, so time order is LSN order.) */
static void query_all(struct fixture *f, struct tandem *t, const uint8_t *failed)
{
    struct collected *got = calloc(1, sizeof(*got));
    assert_non_null(got);
    for (uint32_t customer = 1; customer <= CUSTOMERS; customer++) {
        got->count = 0;
        struct tandem_query q;
        tandem_query_init(&q, customer);
        int rv = tandem_query(t, &q, collect_cb, got, NULL);
        size_t n = 0;
        bool hit_damage = false;
        for (uint64_t lsn = 1; lsn <= f->lsn_last && !hit_damage; lsn++) {
            struct tandem_record r;
            tdm_kept_get(&f->kept[lsn], &r);
            if (r.type != TANDEM_RECORD_MESSAGE || r.message.customer_id != customer) {
                continue;
            }
            if (failed[lsn]) {
                hit_damage = true;
                break;
            }
            assert_true(n < got->count);
            assert_int_equal(got->lsns[n], lsn);
            n++;
        }
        assert_int_equal(got->count, n);
        if (hit_damage) {
            assert_true(rv == TANDEM_ECORRUPT || rv == TANDEM_EDAMAGED);
        } else {
            assert_int_equal(rv, 0);
        }
    }
    free(got);
}

static const struct tandem_damage *damage_in(const struct tandem_status *status,
                                             uint64_t segment_lsn)
{
    uint32_t n = status->damaged_count < TANDEM_STATUS_DAMAGED_MAX ? status->damaged_count
                                                                   : TANDEM_STATUS_DAMAGED_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (status->damaged[i].segment_lsn == segment_lsn) {
            return &status->damaged[i];
        }
    }
    return NULL;
}

static void flip_describe(const struct flip *flip)
{
    fprintf(stderr, "flip: segment %" PRIu64 " (%s) offset %" PRIu64 " bit %u, %s\n",
            flip->segment->lsn_first, flip->segment->sealed ? "sealed" : "open", flip->offset,
            flip->bit, region_name(flip->region));
}

/* The damage report for one flip inside a sealed segment. */
static void check_sealed_report(const struct flip *flip, const struct tandem_status *status)
{
    const struct tandem_damage *d = damage_in(status, flip->segment->lsn_first);
    if (status->damaged_count < 1 || d == NULL || !d->sealed) {
        flip_describe(flip);
        fprintf(stderr, "  %u damaged ranges; in this segment: %s\n", status->damaged_count,
                d == NULL ? "none" : (d->sealed ? "sealed" : "not marked sealed"));
        for (uint32_t i = 0; i < status->damaged_count && i < TANDEM_STATUS_DAMAGED_MAX; i++) {
            const struct tandem_damage *x = &status->damaged[i];
            fprintf(stderr,
                    "  range %" PRIu64 "..%" PRIu64 " segment %" PRIu64 " offset %" PRIu64 "%s\n",
                    x->lsn_first, x->lsn_last, x->segment_lsn, x->offset,
                    x->sealed ? " sealed" : "");
        }
    }
    assert_true(status->damaged_count >= 1);
    assert_non_null(d);
    assert_true(d->sealed);
    assert_int_equal(status->failed_code, 0);
    assert_int_equal(status->lsn_last, status->index_lsn);
    if (flip->batch != NULL) {
        /* Exactly the batch whose bytes changed. */
        assert_int_equal(status->damaged_count, 1);
        assert_int_equal(d->lsn_first, flip->batch->lsn_first);
        assert_int_equal(d->lsn_last, flip->batch->lsn_last);
        assert_int_equal(d->offset, flip->batch->offset);
    }
}

/* After the flip, reads fail exactly where the bytes are bad: the batch for
 * a batch flip; for a segment header or footer flip the batches themselves
 * still verify, so reads that work must be equal and none may be wrong. */
static void check_sealed_reads(struct fixture *f, const struct flip *flip, const uint8_t *failed)
{
    if (flip->batch == NULL) {
        return;
    }
    for (uint64_t lsn = 1; lsn <= f->lsn_last; lsn++) {
        bool inside = in_range(lsn, flip->batch->lsn_first, flip->batch->lsn_last);
        if ((bool)failed[lsn] != inside) {
            flip_describe(flip);
            fprintf(stderr, "  LSN %" PRIu64 " %s\n", lsn,
                    inside ? "reads although damaged" : "fails although intact");
        }
        assert_int_equal(failed[lsn], inside);
    }
}

static void run_sealed_flip(struct fixture *f, const struct flip *flip, uint8_t *failed)
{
    assert_int_equal(tdm_fault_fs_flip(&f->fs, flip->segment->path, flip->offset, flip->bit), 0);
    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir);
    struct tandem *t = node_open(f, 0);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir), before);
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    check_sealed_report(flip, &status);
    assert_int_equal(status.lsn_last, f->lsn_last);
    read_all(f, t, &status, flip->batch != NULL, failed);
    check_sealed_reads(f, flip, failed);
    query_all(f, t, failed);
    tandem_close(t);
    assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir), before);
    assert_int_equal(tdm_fault_fs_flip(&f->fs, flip->segment->path, flip->offset, flip->bit), 0);
}

/* A deterministic position in one region of a segment. */
static void flip_pick(struct tdm_prng *prng, const struct segment_info *s, enum region region,
                      struct flip *flip)
{
    memset(flip, 0, sizeof(*flip));
    flip->segment = s;
    flip->region = region;
    flip->bit = (unsigned)tdm_prng_below(prng, 8);
    const struct batch_info *b = &s->batches[tdm_prng_below(prng, s->batch_count)];
    switch (region) {
    case REGION_SEGMENT_HEADER:
        flip->offset = tdm_prng_below(prng, TDM_SEGMENT_HEADER_SIZE);
        break;
    case REGION_BATCH_HEADER:
        flip->batch = b;
        flip->offset = b->offset + tdm_prng_below(prng, TDM_BATCH_HEADER_SIZE);
        break;
    case REGION_BATCH_BODY:
        flip->batch = b;
        flip->offset = b->offset + TDM_BATCH_HEADER_SIZE +
                       tdm_prng_below(prng, b->size - TDM_BATCH_HEADER_SIZE);
        break;
    case REGION_FOOTER:
        assert_true(s->sealed);
        flip->offset =
            s->size - TDM_SEGMENT_FOOTER_SIZE + tdm_prng_below(prng, TDM_SEGMENT_FOOTER_SIZE);
        break;
    }
}

/* ---- tests -------------------------------------------------------------------- */

/* A bit flipped anywhere in a sealed segment (its header, a batch header, a
 * batch body, its footer; 100 positions over several segments) is reported
 * as damage in that segment, marked sealed; a flipped batch is reported as
 * exactly its LSN range and fails every read of that range with a diag
 * naming the segment and offset, while every other LSN reads back equal and
 * queries deliver every undamaged record; no file is altered by open, reads
 * or close. */
static void test_open__sealed_bit_flip_is_damage(void **state)
{
    struct fixture *f = *state;
    uint32_t sealed_count = f->segment_count - 1;
    assert_true(sealed_count >= 3);
    uint8_t *failed = calloc(LSN_MAX, 1);
    assert_non_null(failed);
    struct tdm_prng prng;
    tdm_prng_init(&prng, SEED);
    for (int i = 0; i < POSITIONS; i++) {
        /* The first and the last sealed segments get every region; others at random. */
        uint32_t index = (uint32_t)tdm_prng_below(&prng, sealed_count);
        if (i < 8) {
            index = i < 4 ? 0 : sealed_count - 1;
        }
        enum region region = (enum region)(REGION_SEGMENT_HEADER + i % 4);
        struct flip flip;
        flip_pick(&prng, &f->segments[index], region, &flip);
        run_sealed_flip(f, &flip, failed);
    }
    /* With every bit flipped back, the log is whole again. */
    struct tandem *t = node_open(f, 0);
    struct tandem_status status;
    assert_int_equal(tandem_status(t, &status), 0);
    assert_int_equal(status.damaged_count, 0);
    tandem_close(t);
    free(failed);
}

/* A bit flipped in a batch of the open (last, unsealed) segment with a valid
 * batch after it cannot be a torn write: it is reported as damage of exactly
 * that batch, not cut; appends are refused with TANDEM_EDAMAGED; reads of the
 * batch fail, the rest of the log is served; no file is altered. */
static void test_open__open_segment_bit_flip_is_damage(void **state)
{
    struct fixture *f = *state;
    const struct segment_info *s = &f->segments[f->segment_count - 1];
    assert_false(s->sealed);
    assert_true(s->batch_count >= 2);
    uint8_t *failed = calloc(LSN_MAX, 1);
    assert_non_null(failed);
    struct tdm_prng prng;
    tdm_prng_init(&prng, SEED + 1);
    for (int i = 0; i < 8; i++) {
        const struct batch_info *b = &s->batches[tdm_prng_below(&prng, s->batch_count - 1)];
        uint64_t offset = b->offset + tdm_prng_below(&prng, b->size);
        unsigned bit = (unsigned)tdm_prng_below(&prng, 8);
        struct flip flip = {
            s, offset < b->offset + TDM_BATCH_HEADER_SIZE ? REGION_BATCH_HEADER : REGION_BATCH_BODY,
            b, offset, bit};
        assert_int_equal(tdm_fault_fs_flip(&f->fs, s->path, offset, bit), 0);
        uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir);
        struct tandem *t = node_open(f, 0);
        assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir), before);

        struct tandem_status status;
        assert_int_equal(tandem_status(t, &status), 0);
        if (status.damaged_count != 1) {
            flip_describe(&flip);
        }
        assert_int_equal(status.damaged_count, 1);
        assert_int_equal(status.damaged[0].segment_lsn, s->lsn_first);
        assert_int_equal(status.damaged[0].offset, b->offset);
        assert_int_equal(status.damaged[0].lsn_first, b->lsn_first);
        assert_int_equal(status.damaged[0].lsn_last, b->lsn_last);
        assert_false(status.damaged[0].sealed);
        assert_int_equal(status.quarantine_count, 0);
        assert_int_equal(status.lsn_last, f->lsn_last); /* The batches after it are durable. */
        assert_int_equal(status.index_lsn, f->lsn_last);

        struct tdm_gen gen;
        tdm_gen_init(&gen, (uint64_t)i, 3);
        struct tandem_record record;
        tdm_gen_message(&gen, &record);
        uint64_t lsn = 0;
        struct tandem_diag diag = {{0}};
        assert_int_equal(tandem_append(t, &record, 1, &lsn, &diag), TANDEM_EDAMAGED);
        assert_true(strlen(diag.message) > 0);

        read_all(f, t, &status, true, failed);
        for (uint64_t l = 1; l <= f->lsn_last; l++) {
            bool inside = in_range(l, b->lsn_first, b->lsn_last);
            if ((bool)failed[l] != inside) {
                flip_describe(&flip);
                fprintf(stderr, "  LSN %" PRIu64 " %s\n", l,
                        inside ? "reads although damaged" : "fails although intact");
            }
            assert_int_equal(failed[l], inside);
        }
        query_all(f, t, failed);
        tandem_close(t);
        assert_int_equal(tdm_fault_fs_open_count(&f->fs), 0);
        assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir), before);
        assert_int_equal(tdm_fault_fs_flip(&f->fs, s->path, offset, bit), 0);
    }
    free(failed);
}

/* Damage inside a sealed segment does not stop appends: with a bit flipped
 * in each region of the segment just before the open one, appends succeed,
 * and once the bit is repaired the log reopens with no damage at all and
 * every record, old and new, reads back equal. */
static void test_append__after_sealed_damage(void **state)
{
    struct fixture *f = *state;
    const struct segment_info *s = &f->segments[f->segment_count - 2];
    assert_true(s->sealed);
    struct tdm_prng prng;
    tdm_prng_init(&prng, SEED + 2);
    struct tdm_gen gen;
    tdm_gen_init(&gen, SEED + 2, CUSTOMERS);
    for (int r = REGION_SEGMENT_HEADER; r <= REGION_FOOTER; r++) {
        struct flip flip;
        flip_pick(&prng, s, (enum region)r, &flip);
        assert_int_equal(tdm_fault_fs_flip(&f->fs, s->path, flip.offset, flip.bit), 0);
        struct tandem *t = node_open(f, 0);
        struct tandem_status status;
        assert_int_equal(tandem_status(t, &status), 0);
        assert_true(status.damaged_count >= 1);
        for (int i = 0; i < 40; i++) {
            struct tandem_record record;
            tdm_gen_message(&gen, &record);
            struct tdm_kept kept;
            tdm_kept_set(&kept, &record);
            uint64_t lsn = 0;
            struct tandem_diag diag = {{0}};
            int rv = tandem_append(t, &record, 1, &lsn, &diag);
            if (rv != 0) {
                flip_describe(&flip);
                fprintf(stderr, "  append: %s: %s\n", tandem_strerror(rv), diag.message);
            }
            assert_int_equal(rv, 0);
            assert_int_equal(lsn, f->lsn_last + 1);
            assert_true(lsn < LSN_MAX);
            f->kept[lsn] = kept;
            f->lsn_last = lsn;
        }
        tandem_close(t);
        assert_int_equal(tdm_fault_fs_flip(&f->fs, s->path, flip.offset, flip.bit), 0);

        t = node_open(f, 0);
        assert_int_equal(tandem_status(t, &status), 0);
        if (status.damaged_count != 0) {
            flip_describe(&flip);
            fprintf(stderr,
                    "  after repair: %u damaged; first: segment %" PRIu64 " offset %" PRIu64 "\n",
                    status.damaged_count, status.damaged[0].segment_lsn, status.damaged[0].offset);
        }
        assert_int_equal(status.damaged_count, 0);
        assert_int_equal(status.lsn_last, f->lsn_last);
        for (uint64_t lsn = 1; lsn <= f->lsn_last; lsn++) {
            struct tdm_delivery d = {&f->kept[lsn], 0};
            assert_int_equal(tandem_read(t, lsn, tdm_delivery_cb, &d, NULL), 0);
            assert_int_equal(d.count, 1);
        }
        tandem_close(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open__sealed_bit_flip_is_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open__open_segment_bit_flip_is_damage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_append__after_sealed_damage, setup, teardown),
    };
    return cmocka_run_group_tests_name("damage", tests, NULL, NULL);
}
