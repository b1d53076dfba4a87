/* tests/unit/test_log.c: the log's replication primitives: appending a batch
 * built elsewhere exactly as received (tdm_log_append_batch), cutting a
 * divergent tail into quarantine (tdm_log_cut_after), including a power loss
 * at every file operation of a cut, locating batches by LSN
 * (tdm_log_locate, tdm_log_read_located) against tdm_log_scan as the oracle,
 * prepared segments, quarantine names, and recovery from whole-file damage: a
 * torn segment creation, an unsealed segment that is not the last, a missing
 * segment, a chain hash break between segments. */
#include "tdm_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/bytes.h"
#include "engine/codec.h"
#include "engine/log.h"
#include "fault_fs.h"
#include "tools/gen.h"

#define BATCHES 30

struct fixture {
    struct tdm_fault_fs fs;
    char dir_a[256];
    char dir_b[300];
    /* What the primary log A wrote, batch by batch. */
    struct tdm_batch_header headers[BATCHES];
    struct tdm_log_location locations[BATCHES];
};

static void node_dirs(struct fixture *f, const char *dir)
{
    char path[300];
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, dir), 0);
    snprintf(path, sizeof(path), "%s/log", dir);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, path), 0);
    snprintf(path, sizeof(path), "%s/quarantine", dir);
    assert_int_equal(tdm_fault_fs_mkdirs(&f->fs, path), 0);
}

static void log_open(struct fixture *f, struct tdm_log *log, const char *dir)
{
    struct tdm_log_options options = {.segment_size = 4096, .read_only = false};
    struct tdm_diag diag = {{0}};
    int rv = tdm_log_open(log, &f->fs.base, dir, &options, &diag);
    if (rv != 0) {
        fprintf(stderr, "open %s: %s\n", dir, diag.message);
    }
    assert_int_equal(rv, 0);
}

/* Append one batch of count generated records to log; returns its code. */
static int append_generated_rv(struct tdm_log *log, struct tdm_gen *gen, uint32_t count,
                               struct tdm_batch_header *header, struct tdm_log_location *location,
                               struct tdm_diag *diag)
{
    uint8_t raw[5 * (TDM_RECORD_SIZE_MAX + 4)];
    size_t size = 0;
    assert_true(count <= 5);
    for (uint32_t i = 0; i < count; i++) { /* Each at once: the generator reuses its buffers. */
        struct tandem_record r;
        tdm_gen_message(gen, &r);
        size_t n = tdm_codec_encode(&r, raw + size + 4, sizeof(raw) - size - 4);
        struct tdm_writer w;
        tdm_writer_init(&w, raw + size, 4);
        tdm_put_u32(&w, (uint32_t)n);
        size += 4 + n;
    }
    return tdm_log_append(log, raw, size, count, 1, header, location, diag);
}

/* Append one batch of count generated records to log. */
static void append_generated(struct tdm_log *log, struct tdm_gen *gen, uint32_t count,
                             struct tdm_batch_header *header, struct tdm_log_location *location)
{
    assert_int_equal(append_generated_rv(log, gen, count, header, location, NULL), 0);
}

/* Append BATCHES batches of 1-5 generated records to log, recording each. */
static void fill(struct fixture *f, struct tdm_log *log, uint64_t seed)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, seed, 4);
    for (int b = 0; b < BATCHES; b++) {
        append_generated(log, &gen, 1 + (uint32_t)(b % 5), &f->headers[b], &f->locations[b]);
    }
}

/* The on-disk bytes of batch b of log A. */
static uint8_t *batch_bytes(struct fixture *f, int b, size_t *size)
{
    char path[400];
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), f->locations[b].segment_lsn);
    snprintf(path, sizeof(path), "%s/log/%s", f->dir_a, name);
    void *file = NULL;
    size_t file_size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &file, &file_size), 0);
    assert_true(f->locations[b].offset + f->locations[b].size <= file_size);
    uint8_t *out = malloc(f->locations[b].size);
    memcpy(out, (uint8_t *)file + f->locations[b].offset, f->locations[b].size);
    tdm_free(file);
    *size = f->locations[b].size;
    return out;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tdm_fault_fs_init(&f->fs);
    assert_int_equal(tdm_test_tmpdir_create(f->dir_a, sizeof(f->dir_a)), 0);
    snprintf(f->dir_b, sizeof(f->dir_b), "%s/b", f->dir_a);
    node_dirs(f, f->dir_a);
    node_dirs(f, f->dir_b);
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    fill(f, &a, 7);
    tdm_log_close(&a);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tdm_fault_fs_deinit(&f->fs);
    tdm_test_tmpdir_remove(f->dir_a);
    free(f);
    return 0;
}

/* A backup that appends the primary's batches byte for byte has the same
 * chain hash at every LSN, sealed segments included, and reopens clean. */
static void test_log_append_batch__replica_matches_primary(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    for (int i = 0; i < BATCHES; i++) {
        size_t size;
        uint8_t *bytes = batch_bytes(f, i, &size);
        struct tdm_batch_header h;
        struct tdm_log_location location;
        assert_int_equal(tdm_log_append_batch(&b, bytes, size, &h, &location, NULL), 0);
        free(bytes);
        assert_int_equal(b.lsn_last, tdm_batch_lsn_last(&f->headers[i]));
        assert_memory_equal(b.chain_last.bytes, f->headers[i].chain_hash.bytes,
                            TDM_CHAIN_HASH_SIZE);
    }
    assert_true(b.segment_count > 2);
    tdm_log_close(&b);
    log_open(f, &b, f->dir_b);
    assert_int_equal(b.damaged_count, 0);
    assert_memory_equal(b.chain_last.bytes, f->headers[BATCHES - 1].chain_hash.bytes,
                        TDM_CHAIN_HASH_SIZE);
    tdm_log_close(&b);
}

/* A gap, a repeat, a flipped bit, a foreign history and an older epoch are
 * each refused with their own code, and nothing is written. */
static void test_log_append_batch__rejects_and_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    size_t size;
    uint8_t *first = batch_bytes(f, 0, &size);
    struct tdm_batch_header h;
    struct tdm_log_location location;
    struct tdm_diag diag;
    assert_int_equal(tdm_log_append_batch(&b, first, size, &h, &location, NULL), 0);
    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_b);

    size_t size2;
    uint8_t *third = batch_bytes(f, 2, &size2);
    assert_int_equal(tdm_log_append_batch(&b, third, size2, &h, &location, &diag),
                     TANDEM_EINVALID); /* A gap. */
    assert_non_null(strstr(diag.message, "ends at"));
    assert_int_equal(tdm_log_append_batch(&b, first, size, &h, &location, &diag),
                     TANDEM_EINVALID); /* A repeat. */
    free(third);

    uint8_t *second = batch_bytes(f, 1, &size2);
    for (size_t bit = 0; bit < size2 * 8; bit += 7) {
        second[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(tdm_log_append_batch(&b, second, size2, &h, &location, NULL),
                         TANDEM_ECORRUPT);
        second[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(tdm_log_append_batch(&b, second, size2 - 1, &h, &location, NULL),
                     TANDEM_ECORRUPT); /* Truncated. */

    b.epoch = 9; /* As if this node had moved to a later epoch. */
    assert_int_equal(tdm_log_append_batch(&b, second, size2, &h, &location, &diag),
                     TANDEM_ESTALEEPOCH);
    b.epoch = 1;
    /* A batch from another history: same LSN, different chain. */
    struct tdm_log c;
    char dir_c[256];
    assert_true(strlen(f->dir_a) + 2 < sizeof(dir_c));
    memcpy(dir_c, f->dir_a, strlen(f->dir_a));
    memcpy(dir_c + strlen(f->dir_a), "/c", 3);
    node_dirs(f, dir_c);
    log_open(f, &c, dir_c);
    struct tdm_fixture_swap {
        struct tdm_batch_header headers[BATCHES];
        struct tdm_log_location locations[BATCHES];
    } *saved = malloc(sizeof(*saved));
    memcpy(saved->headers, f->headers, sizeof(f->headers));
    memcpy(saved->locations, f->locations, sizeof(f->locations));
    fill(f, &c, 99);
    tdm_log_close(&c);
    char dir_a[256];
    memcpy(dir_a, f->dir_a, sizeof(dir_a));
    memcpy(f->dir_a, dir_c, sizeof(dir_c));
    size_t size3;
    uint8_t *foreign = batch_bytes(f, 1, &size3);
    memcpy(f->dir_a, dir_a, sizeof(dir_a));
    memcpy(f->headers, saved->headers, sizeof(f->headers));
    memcpy(f->locations, saved->locations, sizeof(f->locations));
    free(saved);
    assert_int_equal(tdm_log_append_batch(&b, foreign, size3, &h, &location, &diag),
                     TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "chain"));
    free(foreign);

    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_b), before);
    assert_int_equal(tdm_log_append_batch(&b, second, size2, &h, &location, NULL), 0);
    free(first);
    free(second);
    tdm_log_close(&b);
}

/* tdm_log_append_batch_proven_unsynced(), for bytes whose body the caller
 * decoded already: the primary's batches go in and the log reopens clean; a
 * flipped header bit, a gap, a repeat and a truncated batch are still
 * refused, and nothing is written for them. */
static void test_log_append_batch_proven__checks_all_but_the_body(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    struct tdm_batch_header h;
    struct tdm_log_location location;
    struct tdm_diag diag = {{0}};
    size_t size;
    uint8_t *first = batch_bytes(f, 0, &size);
    assert_int_equal(tdm_log_append_batch_proven_unsynced(&b, first, size, &h, &location, NULL), 0);
    assert_int_equal(tdm_log_sync(&b, NULL), 0);
    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_b);

    size_t size2;
    uint8_t *third = batch_bytes(f, 2, &size2);
    assert_int_equal(tdm_log_append_batch_proven_unsynced(&b, third, size2, &h, &location, &diag),
                     TANDEM_EINVALID); /* A gap. */
    free(third);
    assert_int_equal(tdm_log_append_batch_proven_unsynced(&b, first, size, &h, &location, &diag),
                     TANDEM_EINVALID); /* A repeat. */
    uint8_t *second = batch_bytes(f, 1, &size2);
    for (size_t bit = 0; bit < TDM_BATCH_HEADER_SIZE * 8; bit += 5) {
        second[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            tdm_log_append_batch_proven_unsynced(&b, second, size2, &h, &location, NULL),
            TANDEM_ECORRUPT);
        second[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    diag.message[0] = '\0';
    assert_int_equal(
        tdm_log_append_batch_proven_unsynced(&b, second, size2 - 1, &h, &location, &diag),
        TANDEM_ECORRUPT); /* Truncated. */
    assert_non_null(strstr(diag.message, "header says"));
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_b), before);

    free(first);
    free(second);
    for (int i = 1; i < BATCHES; i++) {
        uint8_t *bytes = batch_bytes(f, i, &size);
        assert_int_equal(tdm_log_append_batch_proven_unsynced(&b, bytes, size, &h, &location, NULL),
                         0);
        free(bytes);
    }
    assert_int_equal(tdm_log_sync(&b, NULL), 0);
    tdm_log_close(&b);
    log_open(f, &b, f->dir_b);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.lsn_last, tdm_batch_lsn_last(&f->headers[BATCHES - 1]));
    assert_memory_equal(b.chain_last.bytes, f->headers[BATCHES - 1].chain_hash.bytes,
                        TDM_CHAIN_HASH_SIZE);
    tdm_log_close(&b);
}

/* Cutting after an LSN in an older, sealed segment moves every later byte to
 * quarantine, leaves the log's chain hash at that LSN, reopens clean, and the
 * log grows again from there; a cut inside a batch is refused. */
/* A backup's group commit: batches appended unsynced are lost by a power cut
 * until tdm_log_sync(), which makes all of them durable at once (one
 * fdatasync); a sealed segment's footer fdatasync covers them too. */
static void test_log_append_batch_unsynced__durable_only_after_sync(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    int synced_through = -1; /* Last batch made durable. */
    for (int i = 0; i < BATCHES; i++) {
        size_t size;
        uint8_t *bytes = batch_bytes(f, i, &size);
        struct tdm_batch_header h;
        struct tdm_log_location location;
        assert_int_equal(tdm_log_append_batch_unsynced(&b, bytes, size, &h, &location, NULL), 0);
        free(bytes);
        assert_int_equal(b.lsn_last, tdm_batch_lsn_last(&f->headers[i]));
        if (i % 7 == 6) {
            assert_int_equal(tdm_log_sync(&b, NULL), 0);
            synced_through = i;
            assert_false(b.tail_unsynced);
        }
    }
    assert_true(b.tail_unsynced);
    /* Power cut: what was not synced (and not sealed) is gone. */
    tdm_fault_fs_crash(&f->fs, TDM_FAULT_CRASH_DROP, NULL);
    b.tail_fd = -1;
    b.progress_fd = -1;
    tdm_log_close(&b);
    log_open(f, &b, f->dir_b);
    assert_int_equal(b.damaged_count, 0);
    assert_true(b.lsn_last >= tdm_batch_lsn_last(&f->headers[synced_through]));
    assert_true(b.lsn_last < tdm_batch_lsn_last(&f->headers[BATCHES - 1]));
    /* What survived is a prefix of the primary's log. */
    bool prefix = false;
    for (int i = 0; i < BATCHES; i++) {
        if (tdm_batch_lsn_last(&f->headers[i]) == b.lsn_last) {
            prefix = memcmp(b.chain_last.bytes, f->headers[i].chain_hash.bytes,
                            TDM_CHAIN_HASH_SIZE) == 0;
        }
    }
    assert_true(prefix);
    /* Nothing to sync is a no-op. */
    assert_int_equal(tdm_log_sync(&b, NULL), 0);
    tdm_log_close(&b);
}

static void test_log_cut_after__quarantines_tail(void **state)
{
    struct fixture *f = *state;
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    uint64_t inside = f->headers[12].lsn_first + 1;
    struct tdm_diag diag;
    if (f->headers[12].record_count > 1) {
        assert_int_equal(tdm_log_cut_after(&a, inside, &diag), TANDEM_EINVALID);
        assert_non_null(strstr(diag.message, "inside"));
    }
    uint64_t lsn = tdm_batch_lsn_last(&f->headers[9]);
    uint32_t segments_before = a.segment_count;
    assert_int_equal(tdm_log_cut_after(&a, lsn, &diag), 0);
    assert_int_equal(a.lsn_last, lsn);
    assert_memory_equal(a.chain_last.bytes, f->headers[9].chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
    assert_true(a.segment_count < segments_before);
    assert_true(a.quarantine_count >= 1);
    tdm_log_close(&a);
    log_open(f, &a, f->dir_a);
    assert_int_equal(a.damaged_count, 0);
    assert_int_equal(a.lsn_last, lsn);
    assert_true(a.quarantine_count >= 1);
    assert_true(a.quarantine_bytes > 0);
    fill(f, &a, 8); /* The log grows again after the cut. */
    tdm_log_close(&a);
    log_open(f, &a, f->dir_a);
    assert_int_equal(a.damaged_count, 0);
    assert_int_equal(a.lsn_last, tdm_batch_lsn_last(&f->headers[BATCHES - 1]));
    tdm_log_close(&a);
}

/* A power loss at any file operation of a cut leaves a log that opens without
 * damage and holds a prefix of the original history no shorter than the cut. */
static void test_log_cut_after__power_loss_at_every_step(void **state)
{
    struct fixture *f = *state;
    uint64_t lsn = tdm_batch_lsn_last(&f->headers[6]);
    uint64_t original = tdm_batch_lsn_last(&f->headers[BATCHES - 1]);
    int runs = 0;
    for (uint64_t n = 0;; n++) {
        struct tdm_fault_fs *fs = &f->fs;
        struct tdm_log a;
        log_open(f, &a, f->dir_a);
        uint64_t fired = tdm_fault_fs_fired(fs);
        assert_int_equal(tdm_fault_fs_fail_after(fs, 0, n, -EIO, true), 0);
        int rv = tdm_log_cut_after(&a, lsn, NULL);
        bool hit = tdm_fault_fs_fired(fs) > fired;
        tdm_fault_fs_crash(fs, TDM_FAULT_CRASH_DROP, NULL);
        a.tail_fd = -1;
        a.progress_fd = -1;
        tdm_log_close(&a);
        log_open(f, &a, f->dir_a);
        assert_int_equal(a.damaged_count, 0);
        assert_true(a.lsn_last >= lsn);
        assert_true(a.lsn_last <= original);
        bool prefix = false;
        for (int b = 0; b < BATCHES; b++) {
            if (tdm_batch_lsn_last(&f->headers[b]) == a.lsn_last) {
                prefix = memcmp(a.chain_last.bytes, f->headers[b].chain_hash.bytes,
                                TDM_CHAIN_HASH_SIZE) == 0;
            }
        }
        assert_true(prefix);
        if (!hit) {
            assert_int_equal(rv, 0);
            assert_int_equal(a.lsn_last, lsn);
            tdm_log_close(&a);
            break;
        }
        /* Put the original back for the next run: append the cut batches. */
        tdm_log_close(&a);
        tdm_fault_fs_deinit(fs);
        tdm_fault_fs_init(fs);
        node_dirs(f, f->dir_a);
        log_open(f, &a, f->dir_a);
        fill(f, &a, 7);
        tdm_log_close(&a);
        runs++;
    }
    assert_true(runs >= 5); /* The sweep crossed the cut's operations. */
}

/* ---- locating batches ---- */

#define ORACLE_BATCHES_MAX 1024

/* Every batch of a log as tdm_log_scan() finds it: the brute-force oracle. */
struct oracle {
    struct tdm_log_batch batches[ORACLE_BATCHES_MAX];
    struct tdm_batch_header headers[ORACLE_BATCHES_MAX];
    uint32_t count;
};

static int oracle_cb(void *data, const struct tdm_batch_header *header,
                     const struct tdm_log_location *location, const uint8_t *raw)
{
    (void)raw;
    struct oracle *o = data;
    assert_true(o->count < ORACLE_BATCHES_MAX);
    o->batches[o->count] = (struct tdm_log_batch){
        .lsn_first = header->lsn_first,
        .lsn_last = tdm_batch_lsn_last(header),
        .location = *location,
    };
    o->headers[o->count] = *header;
    o->count++;
    return 0;
}

static struct oracle *oracle_build(struct tdm_log *log)
{
    struct oracle *o = calloc(1, sizeof(*o));
    assert_int_equal(tdm_log_scan(log, 1, oracle_cb, o, NULL), 0);
    assert_true(o->count > 0);
    assert_int_equal(o->batches[o->count - 1].lsn_last, log->lsn_last);
    return o;
}

/* Locate lsn_first .. lsn_last with capacity and compare with the oracle. */
static void locate_compare(struct tdm_log *log, const struct oracle *o, uint64_t lsn_first,
                           uint64_t lsn_last, uint32_t capacity)
{
    struct tdm_log_batch out[8];
    uint32_t count = 99;
    struct tdm_diag diag = {{0}};
    assert_true(capacity <= 8);
    int rv = tdm_log_locate(log, lsn_first, lsn_last, out, capacity, &count, &diag);
    if (rv != 0) {
        fprintf(stderr, "locate %lu..%lu: %s\n", (unsigned long)lsn_first, (unsigned long)lsn_last,
                diag.message);
    }
    assert_int_equal(rv, 0);
    uint32_t k = 0;
    while (o->batches[k].lsn_last < lsn_first) {
        k++;
    }
    uint32_t want = 0;
    while (k + want < o->count && want < capacity && o->batches[k + want].lsn_first <= lsn_last) {
        want++;
    }
    assert_int_equal(count, want);
    for (uint32_t i = 0; i < count; i++) {
        const struct tdm_log_batch *a = &out[i];
        const struct tdm_log_batch *b = &o->batches[k + i];
        assert_int_equal(a->lsn_first, b->lsn_first);
        assert_int_equal(a->lsn_last, b->lsn_last);
        assert_int_equal(a->location.segment_lsn, b->location.segment_lsn);
        assert_int_equal(a->location.offset, b->location.offset);
        assert_int_equal(a->location.size, b->location.size);
    }
}

/* Read every batch of the log back through tdm_log_locate and
 * tdm_log_read_located: the same bytes and headers as the oracle, with one
 * pread per segment (its batches are back to back). */
static void read_located_compare(struct fixture *f, struct tdm_log *log, const struct oracle *o,
                                 const char *dir)
{
    struct tdm_log_batch *batches = calloc(o->count, sizeof(*batches));
    struct tdm_batch_header *headers = calloc(o->count, sizeof(*headers));
    uint32_t count = 0;
    assert_int_equal(tdm_log_locate(log, 1, UINT64_MAX, batches, o->count, &count, NULL), 0);
    assert_int_equal(count, o->count);
    size_t total = 0;
    uint32_t segment_count = 0;
    for (uint32_t i = 0; i < count; i++) {
        total += batches[i].location.size;
        if (i == 0 || batches[i].location.segment_lsn != batches[i - 1].location.segment_lsn) {
            segment_count++;
        }
    }
    uint8_t *buffer = malloc(total);
    uint64_t preads = tdm_fault_fs_count(&f->fs, TDM_FS_OP_PREAD);
    assert_int_equal(tdm_log_read_located(log, batches, count, buffer, headers, NULL), 0);
    assert_int_equal(tdm_fault_fs_count(&f->fs, TDM_FS_OP_PREAD) - preads, segment_count);
    size_t done = 0;
    for (uint32_t i = 0; i < count; i++) {
        assert_int_equal(headers[i].lsn_first, o->headers[i].lsn_first);
        assert_memory_equal(headers[i].chain_hash.bytes, o->headers[i].chain_hash.bytes,
                            TDM_CHAIN_HASH_SIZE);
        char path[400];
        char name[TDM_SEGMENT_NAME_SIZE];
        tdm_segment_name(name, sizeof(name), batches[i].location.segment_lsn);
        snprintf(path, sizeof(path), "%s/log/%s", dir, name);
        void *file = NULL;
        size_t file_size = 0;
        assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &file, &file_size), 0);
        assert_memory_equal(buffer + done, (uint8_t *)file + batches[i].location.offset,
                            batches[i].location.size);
        tdm_free(file);
        done += batches[i].location.size;
    }
    free(buffer);
    free(headers);
    free(batches);
}

/* Each batch table lists a prefix of the batches of a segment the log holds,
 * as the oracle finds them, no two tables list the same segment, and the
 * open segment's table lists all of its batches. */
static void tables_check(const struct tdm_log *log, const struct oracle *o)
{
    const struct tdm_log_segment *open = &log->segments[log->segment_count - 1];
    bool open_listed = open->sealed;
    for (uint32_t i = 0; i < TDM_LOG_TABLES_MAX; i++) {
        if (log->tables[i].segment_lsn == open->lsn_first) {
            open_listed = log->tables[i].lsn_next == open->lsn_last + 1;
        }
    }
    assert_true(open_listed);
    for (uint32_t i = 0; i < TDM_LOG_TABLES_MAX; i++) {
        const struct tdm_log_table *t = &log->tables[i];
        if (t->segment_lsn == 0) {
            continue;
        }
        for (uint32_t j = i + 1; j < TDM_LOG_TABLES_MAX; j++) {
            assert_int_not_equal(log->tables[j].segment_lsn, t->segment_lsn);
        }
        bool held = false;
        for (uint32_t s = 0; s < log->segment_count; s++) {
            held = held || log->segments[s].lsn_first == t->segment_lsn;
        }
        assert_true(held);
        uint32_t k = 0;
        while (k < o->count && o->batches[k].location.segment_lsn != t->segment_lsn) {
            k++;
        }
        assert_true(k + t->count <= o->count);
        for (uint32_t j = 0; j < t->count; j++) {
            const struct tdm_log_batch *b = &o->batches[k + j];
            assert_int_equal(b->location.segment_lsn, t->segment_lsn);
            assert_int_equal(t->entries[j].lsn_first, b->lsn_first);
            assert_int_equal(t->entries[j].offset, b->location.offset);
            assert_int_equal(t->entries[j].size, b->location.size);
        }
        uint64_t end = t->count == 0
                           ? TDM_SEGMENT_HEADER_SIZE
                           : t->entries[t->count - 1].offset + t->entries[t->count - 1].size;
        assert_int_equal(t->end, end);
        assert_int_equal(t->lsn_next, t->count == 0 ? t->segment_lsn
                                                    : o->batches[k + t->count - 1].lsn_last + 1);
    }
}

/* Every LSN range maps to the batches the oracle finds, with several
 * capacities; LSNs outside the log are not found. */
static void locate_check_all(struct fixture *f, struct tdm_log *log, const char *dir)
{
    struct oracle *o = oracle_build(log);
    tables_check(log, o);
    uint64_t last = log->lsn_last;
    static const uint64_t spans[] = {0, 1, 7, 40};
    static const uint32_t capacities[] = {1, 3, 8};
    for (uint64_t lsn = last; lsn >= 1; lsn--) {
        locate_compare(log, o, lsn, lsn, 1); /* Newest first: the tables as they were left. */
    }
    for (uint64_t lsn = 1; lsn <= last; lsn++) {
        for (size_t s = 0; s < sizeof(spans) / sizeof(spans[0]); s++) {
            for (size_t c = 0; c < sizeof(capacities) / sizeof(capacities[0]); c++) {
                locate_compare(log, o, lsn, lsn + spans[s], capacities[c]);
            }
        }
        locate_compare(log, o, lsn, last + 5, 8);
    }
    struct tdm_log_batch out[1];
    uint32_t count = 7;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_log_locate(log, last + 1, last + 9, out, 1, &count, &diag),
                     TANDEM_ENOTFOUND);
    assert_int_equal(count, 0);
    assert_non_null(strstr(diag.message, "not in the log"));
    read_located_compare(f, log, o, dir);
    tables_check(log, o);
    free(o);
}

static void locate_fill(struct tdm_log *log, uint64_t seed, int batch_count)
{
    struct tdm_gen gen;
    tdm_gen_init(&gen, seed, 4);
    for (int b = 0; b < batch_count; b++) {
        struct tdm_batch_header h;
        struct tdm_log_location l;
        append_generated(log, &gen, 1 + (uint32_t)((b * 7) % 5), &h, &l);
    }
}

/* Locating agrees with a scan of the whole log across many segments: while
 * the log is written, after a reopen (recovery lists the open segment), after
 * a cut into an older sealed segment, after appends that follow the cut, and
 * after a cut inside the open segment. */
static void test_log_locate__matches_scan(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    locate_fill(&b, 11, 120);
    assert_true(b.segment_count > TDM_LOG_TABLES_MAX + 4);
    locate_check_all(f, &b, f->dir_b);
    tdm_log_close(&b);

    log_open(f, &b, f->dir_b);
    locate_check_all(f, &b, f->dir_b);
    struct oracle *o = oracle_build(&b);
    uint64_t cut = o->batches[40].lsn_last; /* In an older, sealed segment. */
    free(o);
    assert_int_equal(tdm_log_cut_after(&b, cut, NULL), 0);
    locate_fill(&b, 12, 60); /* Straight after the cut: the tables as the cut left them. */
    locate_check_all(f, &b, f->dir_b);
    tdm_log_close(&b);

    log_open(f, &b, f->dir_b);
    locate_check_all(f, &b, f->dir_b);
    for (uint64_t seed = 13; seed < 15; seed++) {
        o = oracle_build(&b);
        assert_true(o->count > 3);
        cut = o->batches[o->count - 3].lsn_last; /* Inside the open segment. */
        free(o);
        assert_int_equal(tdm_log_cut_after(&b, cut, NULL), 0);
        if (seed == 14) {
            locate_check_all(f, &b, f->dir_b);
        }
        locate_fill(&b, seed, 5);
        locate_check_all(f, &b, f->dir_b);
    }
    tdm_log_close(&b);
}

/* tdm_log_read_batch() reads every batch where its location says, and a
 * location that holds no batch (a damaged index gave it) is refused with
 * TANDEM_ECORRUPT naming the cause and the place, or with the open error of
 * a segment that is not there. */
static void test_log_read_batch__bad_locations(void **state)
{
    struct fixture *f = *state;
    char log_dir[300];
    snprintf(log_dir, sizeof(log_dir), "%s/log", f->dir_a);
    struct tdm_batch_header h;
    uint8_t *raw = NULL;
    struct tdm_diag diag = {{0}};
    for (int b = 0; b < BATCHES; b++) {
        assert_int_equal(
            tdm_log_read_batch(&f->fs.base, log_dir, &f->locations[b], &h, &raw, &diag), 0);
        assert_int_equal(h.lsn_first, f->headers[b].lsn_first);
        assert_int_equal(h.record_count, f->headers[b].record_count);
        assert_int_equal(h.raw_size, f->headers[b].raw_size);
        tdm_free(raw);
    }
    const struct tdm_log_location good = f->locations[3];
    struct {
        struct tdm_log_location location;
        int rv;
        const char *why;
    } cases[] = {
        {{good.segment_lsn, good.offset, good.size - 1},
         TANDEM_ECORRUPT,
         "batch size differs from the index"},
        {{good.segment_lsn, good.offset, 10}, TANDEM_ECORRUPT, "batch size differs from the index"},
        {{good.segment_lsn, good.offset, TDM_BATCH_HEADER_SIZE + TDM_BATCH_BODY_SIZE_MAX + 1},
         TANDEM_ECORRUPT,
         "batch size differs from the index"},
        {{good.segment_lsn, good.offset + 1, good.size}, TANDEM_ECORRUPT, "segment "},
        {{good.segment_lsn, 1u << 30, good.size},
         TANDEM_ECORRUPT,
         "batch past the end of the file"},
        {{good.segment_lsn + 1000000, good.offset, good.size}, -ENOENT, "open segment"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&diag, 0, sizeof(diag));
        raw = NULL;
        int rv = tdm_log_read_batch(&f->fs.base, log_dir, &cases[i].location, &h, &raw, &diag);
        if (rv != cases[i].rv || strstr(diag.message, cases[i].why) == NULL) {
            fprintf(stderr, "case %zu: %d %s\n", i, rv, diag.message);
        }
        assert_int_equal(rv, cases[i].rv);
        assert_non_null(strstr(diag.message, cases[i].why));
        assert_null(raw);
    }
}

/* The open segment's batches and those of a sealed segment located once are
 * found again without reading the disk: the batch tables answer. */
static void test_log_locate__tables_answer_without_io(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    locate_fill(&b, 21, 60);
    tdm_log_close(&b);
    log_open(f, &b, f->dir_b);
    struct oracle *o = oracle_build(&b);
    struct tdm_log_batch out[4];
    uint32_t count = 0;
    uint64_t reads = tdm_fault_fs_count(&f->fs, 0);
    assert_int_equal(tdm_log_locate(&b, b.lsn_last, b.lsn_last, out, 4, &count, NULL), 0);
    assert_int_equal(count, 1);
    assert_int_equal(tdm_fault_fs_count(&f->fs, 0), reads); /* Open segment: listed. */
    uint64_t old = o->batches[2].lsn_first; /* First segments: sealed, not listed. */
    assert_true(o->batches[2].location.segment_lsn < b.segments[b.segment_count - 1].lsn_first);
    assert_int_equal(tdm_log_locate(&b, old, old + 20, out, 4, &count, NULL), 0);
    assert_true(tdm_fault_fs_count(&f->fs, 0) > reads); /* Walked once... */
    reads = tdm_fault_fs_count(&f->fs, 0);
    assert_int_equal(tdm_log_locate(&b, old, old, out, 1, &count, NULL), 0);
    assert_int_equal(out[0].lsn_first, old);
    assert_int_equal(tdm_fault_fs_count(&f->fs, 0), reads); /* ...then listed. */
    free(o);
    tdm_log_close(&b);
}

/* A damaged batch header in a sealed segment makes locating it and the LSNs
 * after it in that segment fail with TANDEM_ECORRUPT, not those before it; a
 * damaged body is located (headers only) but reading it back fails. */
static void test_log_locate__damage(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    locate_fill(&b, 31, 60);
    struct oracle *o = oracle_build(&b);
    tdm_log_close(&b);
    /* Two batches of one older sealed segment, neither its first. */
    uint32_t k = 1;
    while (o->batches[k].location.segment_lsn == o->batches[k - 1].location.segment_lsn ||
           o->batches[k + 1].location.segment_lsn != o->batches[k].location.segment_lsn ||
           o->batches[k + 2].location.segment_lsn != o->batches[k].location.segment_lsn) {
        k++;
    }
    const struct tdm_log_batch *body = &o->batches[k + 1]; /* Bad body. */
    const struct tdm_log_batch *head = &o->batches[k + 2]; /* Bad header. */
    char path[400];
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), head->location.segment_lsn);
    snprintf(path, sizeof(path), "%s/log/%s", f->dir_b, name);
    assert_int_equal(
        tdm_fault_fs_flip(&f->fs, path, body->location.offset + TDM_BATCH_HEADER_SIZE + 3, 1), 0);
    assert_int_equal(tdm_fault_fs_flip(&f->fs, path, head->location.offset + 20, 2), 0);
    log_open(f, &b, f->dir_b);
    assert_true(b.damaged_count > 0);

    struct tdm_log_batch out[8];
    struct tdm_batch_header headers[8];
    uint32_t count = 0;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_log_locate(&b, head->lsn_first, head->lsn_last, out, 8, &count, &diag),
                     TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "segment"));
    assert_int_equal(tdm_log_locate(&b, body->lsn_first, head->lsn_last, out, 8, &count, NULL),
                     TANDEM_ECORRUPT);
    assert_int_equal(tdm_log_locate(&b, body->lsn_first, body->lsn_last, out, 8, &count, NULL), 0);
    assert_int_equal(count, 1);
    uint8_t *buffer = malloc(out[0].location.size);
    assert_int_equal(tdm_log_read_located(&b, out, 1, buffer, headers, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "body checksum"));
    free(buffer);
    const struct tdm_log_batch *before = &o->batches[k];
    assert_int_equal(tdm_log_locate(&b, before->lsn_first, before->lsn_last, out, 8, &count, NULL),
                     0);
    assert_int_equal(out[0].location.offset, before->location.offset);
    free(o);
    tdm_log_close(&b);
}

/* An I/O error while locating (opening or reading a segment to walk it) or
 * while reading located batches back is returned with its cause, and the
 * next call, without the fault, succeeds. */
static void test_log_locate__io_errors(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open(f, &b, f->dir_b);
    locate_fill(&b, 41, 60);
    tdm_log_close(&b);
    log_open(f, &b, f->dir_b); /* Only the open segment is listed. */
    struct tdm_log_batch out[4];
    struct tdm_batch_header headers[4];
    uint32_t count = 0;
    struct tdm_diag diag = {{0}};
    static const unsigned ops[] = {TDM_FS_OP_OPEN, TDM_FS_OP_PREAD};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        assert_int_equal(tdm_fault_fs_fail_next(&f->fs, ops[i], -EIO), 0);
        assert_int_equal(tdm_log_locate(&b, 2, 9, out, 4, &count, &diag), -EIO);
        assert_non_null(strstr(diag.message, ops[i] == TDM_FS_OP_OPEN ? "open" : "read"));
    }
    assert_int_equal(tdm_log_locate(&b, 2, 9, out, 4, &count, NULL), 0);
    size_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        total += out[i].location.size;
    }
    uint8_t *buffer = malloc(total);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        assert_int_equal(tdm_fault_fs_fail_next(&f->fs, ops[i], -EIO), 0);
        assert_int_equal(tdm_log_read_located(&b, out, count, buffer, headers, &diag), -EIO);
    }
    assert_int_equal(tdm_log_read_located(&b, out, count, buffer, headers, NULL), 0);
    free(buffer);
    tdm_log_close(&b);
}

/* ---- prepared segments (log.h options.prepare) ---------------------------------- */

static void log_open_mode(struct fixture *f, struct tdm_log *log, const char *dir,
                          enum tdm_log_prepare prepare)
{
    struct tdm_log_options options = {.segment_size = 4096, .prepare = prepare};
    struct tdm_diag diag = {{0}};
    int rv = tdm_log_open(log, &f->fs.base, dir, &options, &diag);
    if (rv != 0) {
        fprintf(stderr, "open %s: %s\n", dir, diag.message);
    }
    assert_int_equal(rv, 0);
}

/* The bytes of segment segment_lsn of the node in dir (tdm_malloc'd). */
static uint8_t *segment_read(struct fixture *f, const char *dir, uint64_t segment_lsn, size_t *size)
{
    char path[400];
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), segment_lsn);
    snprintf(path, sizeof(path), "%s/log/%s", dir, name);
    void *data = NULL;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &data, size), 0);
    return data;
}

static uint16_t segment_flags(const uint8_t *bytes)
{
    struct tdm_segment_header h;
    assert_int_equal(tdm_segment_header_decode(bytes, &h, NULL), 0);
    return h.flags;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Every segment after the first is made from a prepared file: its header says
 * so, a sealed one ends at its footer (seal cut the zeros), and the open one
 * goes on with zeros. Recovery ends the log at the last batch and moves
 * nothing to quarantine; appends continue there, and every batch reads back. */
static void test_log_prepare__zero_tail_is_the_end(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_INLINE);
    fill(f, &b, 9);
    assert_true(b.segment_count >= 3);
    assert_true(b.tail_allocated);
    for (uint32_t i = 0; i < b.segment_count; i++) {
        size_t size = 0;
        uint8_t *bytes = segment_read(f, f->dir_b, b.segments[i].lsn_first, &size);
        assert_int_equal(segment_flags(bytes), i == 0 ? 0 : TDM_SEGMENT_PREPARED);
        if (b.segments[i].sealed) {
            assert_int_equal(size, b.segments[i].size);
        } else {
            assert_true(size > b.segments[i].size);
            assert_true(all_zero(bytes + b.segments[i].size, size - b.segments[i].size));
        }
        tdm_free(bytes);
    }
    uint64_t lsn_last = b.lsn_last;
    uint64_t tail_size = b.segments[b.segment_count - 1].size;
    tdm_log_close(&b);

    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.quarantine_count, 0);
    assert_int_equal(b.lsn_last, lsn_last);
    assert_int_equal(b.segments[b.segment_count - 1].size, tail_size);
    assert_int_equal(b.tail_offset, tail_size);
    assert_true(b.tail_allocated);
    fill(f, &b, 10); /* Into the zeros, then sealed, then unprepared segments. */
    tdm_log_close(&b);

    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.quarantine_count, 0);
    assert_int_equal(b.lsn_last, tdm_batch_lsn_last(&f->headers[BATCHES - 1]));
    struct oracle *o = oracle_build(&b);
    assert_int_equal(o->count, 2 * BATCHES);
    free(o);
    tdm_log_close(&b);
}

/* A torn batch before the zeros of a prepared segment: only its bytes (up to
 * the last non-zero one) go to quarantine, the segment is cut where the batch
 * began, and appends continue. */
static void test_log_prepare__torn_batch_before_zeros(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_INLINE);
    fill(f, &b, 9);
    assert_true(b.tail_allocated);
    uint64_t lsn_last = b.lsn_last;
    uint64_t segment_lsn = b.segments[b.segment_count - 1].lsn_first;
    uint64_t end = b.segments[b.segment_count - 1].size;
    tdm_log_close(&b);

    /* 100 bytes of a batch that a power loss tore, durable, the last one not zero. */
    uint8_t torn[100];
    for (size_t i = 0; i < sizeof(torn); i++) {
        torn[i] = (uint8_t)(i * 37 + 1);
    }
    char path[400];
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), segment_lsn);
    snprintf(path, sizeof(path), "%s/log/%s", f->dir_b, name);
    int fd;
    assert_int_equal(f->fs.base.open(&f->fs.base, path, TDM_FS_WRITE, &fd), 0);
    assert_int_equal(f->fs.base.pwrite(&f->fs.base, fd, torn, 100, end), 0);
    assert_int_equal(f->fs.base.fdatasync(&f->fs.base, fd), 0);
    f->fs.base.close(&f->fs.base, fd);

    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.lsn_last, lsn_last);
    assert_int_equal(b.quarantine_count, 1);
    assert_int_equal(b.quarantine_bytes, 100);
    assert_false(b.tail_allocated);
    uint64_t file_size = 0;
    assert_int_equal(tdm_fault_fs_file_size(&f->fs, path, &file_size), 0);
    assert_int_equal(file_size, end);
    fill(f, &b, 10);
    tdm_log_close(&b);
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.quarantine_count, 1);
    tdm_log_close(&b);
}

/* What a crash leaves of a prepared file (a segment header written before the
 * rename became durable, a partial fill) is taken over and made whole zeros;
 * a prepared file that cannot be written is removed, nothing fails, and the
 * next segment is created empty. */
static void test_log_prepare__leftover_and_failure(void **state)
{
    struct fixture *f = *state;
    char path[400];
    snprintf(path, sizeof(path), "%s/log/%s", f->dir_b, TDM_LOG_PREPARE_NAME);
    uint8_t junk[TDM_SEGMENT_HEADER_SIZE + 10];
    memset(junk, 0, sizeof(junk));
    memset(junk, 0xab, TDM_SEGMENT_HEADER_SIZE);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, path, junk, sizeof(junk)), 0);
    struct tdm_log b;
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(b.damaged_count, 0); /* Not a segment name. */
    assert_int_equal(tdm_log_prepare_file(&b), 0);
    assert_true(b.prepare_ready);
    size_t size = 0;
    void *data = NULL;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &data, &size), 0);
    assert_int_equal(size, 4096 + 4096 / 16);
    assert_true(all_zero(data, size));
    tdm_free(data);

    /* The first segment takes it (asked for or not), whatever the mode. */
    struct tdm_gen gen;
    tdm_gen_init(&gen, 3, 4);
    struct tdm_batch_header h;
    struct tdm_log_location location;
    append_generated(&b, &gen, 1, &h, &location);
    assert_false(b.prepare_ready);
    assert_false(tdm_fault_fs_exists(&f->fs, path));
    uint8_t *bytes = segment_read(f, f->dir_b, 1, &size);
    assert_int_equal(segment_flags(bytes), TDM_SEGMENT_PREPARED);
    tdm_free(bytes);

    /* A failed write: the file is removed, the log goes on. */
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_PWRITE, -ENOSPC), 0);
    assert_int_equal(tdm_log_prepare_file(&b), -ENOSPC);
    assert_false(b.prepare_ready);
    assert_false(tdm_fault_fs_exists(&f->fs, path));
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_log_failed(&b, &diag), 0);
    while (b.segment_count < 2) {
        append_generated(&b, &gen, 5, &h, &location);
    }
    bytes = segment_read(f, f->dir_b, b.segments[1].lsn_first, &size);
    assert_int_equal(segment_flags(bytes), 0);
    tdm_free(bytes);
    tdm_log_close(&b);
}

/* Sealing a prepared segment cuts the zeros first; when that fails, the log
 * fails (never retried) with one message naming the segment. */
static void test_log_prepare__seal_truncate_fails(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(tdm_log_prepare_file(&b), 0);
    struct tdm_gen gen;
    tdm_gen_init(&gen, 4, 4);
    struct tdm_batch_header h;
    struct tdm_log_location location;
    append_generated(&b, &gen, 1, &h, &location);
    assert_true(b.tail_allocated);
    assert_int_equal(tdm_fault_fs_fail_next(&f->fs, TDM_FS_OP_TRUNCATE, -EIO), 0);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_log_seal(&b, &diag), TANDEM_EFAILED);
    assert_non_null(strstr(diag.message, "truncate segment 1"));
    assert_int_equal(tdm_log_failed(&b, &diag), -EIO);
    tdm_log_close(&b);
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.lsn_last, h.lsn_first + h.record_count - 1);
    tdm_log_close(&b);
}

/* The prepare thread makes the next file while the writer appends; closing
 * stops it, and what it left is taken over on the next open. */
static void test_log_prepare__thread(void **state)
{
    struct fixture *f = *state;
    struct tdm_log b;
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_THREAD);
    assert_true(b.prepare_started);
    fill(f, &b, 9);
    tdm_log_close(&b);
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_THREAD);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.quarantine_count, 0);
    fill(f, &b, 10);
    assert_int_equal(b.lsn_last, tdm_batch_lsn_last(&f->headers[BATCHES - 1]));
    tdm_log_close(&b);
    log_open_mode(f, &b, f->dir_b, TDM_LOG_PREPARE_OFF);
    assert_int_equal(b.damaged_count, 0);
    assert_int_equal(b.quarantine_count, 0);
    struct oracle *o = oracle_build(&b);
    assert_int_equal(o->count, 2 * BATCHES);
    free(o);
    tdm_log_close(&b);
}

/* A quarantine file is never overwritten: a taken name gets .2, .3, ...;
 * when every variant is taken, -EEXIST. */
static void test_log_quarantine_path__never_overwrites(void **state)
{
    struct fixture *f = *state;
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    char path[TDM_PATH_SIZE];
    char want[TDM_PATH_SIZE + 32];
    assert_int_equal(tdm_log_quarantine_path(&a, "x.seg.0.cut", path), 0);
    snprintf(want, sizeof(want), "%s/quarantine/x.seg.0.cut", f->dir_a);
    assert_string_equal(path, want);
    for (unsigned n = 1; n <= TDM_LOG_QUARANTINE_TRIES; n++) {
        assert_int_equal(tdm_fault_fs_write_file(&f->fs, path, "kept", 4), 0);
        int rv = tdm_log_quarantine_path(&a, "x.seg.0.cut", path);
        if (n == TDM_LOG_QUARANTINE_TRIES) {
            assert_int_equal(rv, -EEXIST);
            break;
        }
        assert_int_equal(rv, 0);
        snprintf(want, sizeof(want), "%s/quarantine/x.seg.0.cut.%u", f->dir_a, n + 1);
        assert_string_equal(path, want);
    }
    tdm_log_close(&a);
}

/* A cut that moves a whole segment to a quarantine name already taken (the
 * same segment cut in an earlier history) keeps the earlier file. */
static void test_log_cut_after__keeps_earlier_quarantine(void **state)
{
    struct fixture *f = *state;
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    uint64_t lsn = tdm_batch_lsn_last(&f->headers[9]);
    uint64_t last = a.segments[a.segment_count - 1].lsn_first;
    assert_true(last > lsn + 1); /* Moved whole by the cut. */
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), last);
    char planted[TDM_PATH_SIZE + 64];
    snprintf(planted, sizeof(planted), "%s/quarantine/%s.cut", f->dir_a, name);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, planted, "earlier", 7), 0);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_log_cut_after(&a, lsn, &diag), 0);
    void *data = NULL;
    size_t size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, planted, &data, &size), 0);
    assert_int_equal(size, 7);
    assert_memory_equal(data, "earlier", 7);
    tdm_free(data);
    char moved[sizeof(planted) + 8];
    snprintf(moved, sizeof(moved), "%s.2", planted);
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, moved, &data, &size), 0);
    assert_true(size > TDM_SEGMENT_HEADER_SIZE);
    tdm_free(data);
    tdm_log_close(&a);
}

/* ---- recovery of whole-file damage (engine/recover.c) --------------------------- */

static void segment_path(const char *dir, uint64_t segment_lsn, char *path, size_t size)
{
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), segment_lsn);
    snprintf(path, size, "%s/log/%s", dir, name);
}

static struct tandem_status log_status(struct tdm_log *log)
{
    struct tandem_status status;
    memset(&status, 0, sizeof(status));
    tdm_log_status(log, &status);
    return status;
}

/* The header a new segment after the log's last LSN would get. */
static void next_header(const struct tdm_log *log, uint8_t out[TDM_SEGMENT_HEADER_SIZE])
{
    struct tdm_segment_header h = {
        .lsn_first = log->lsn_last + 1, .epoch = 1, .chain_prev = log->chain_last, .time_ns = 1};
    tdm_segment_header_encode(&h, out);
}

/* Open log A (sealing its last segment if asked, recording a progress claim
 * of claim_beyond LSNs past its end if not 0), note its last LSN in *last, close
 * it, and plant the first size bytes of the header of segment *last + 1 as a
 * file: a segment whose creation was cut short. Returns the header in out. */
static void plant_next_segment(struct fixture *f, bool seal, uint64_t claim_beyond, size_t size,
                               uint64_t *last, uint8_t out[TDM_SEGMENT_HEADER_SIZE], char *path,
                               size_t path_size)
{
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    if (seal) {
        assert_int_equal(tdm_log_seal(&a, NULL), 0);
    }
    *last = a.lsn_last;
    next_header(&a, out);
    if (claim_beyond != 0) {
        assert_int_equal(tdm_log_progress_sync(&a, a.lsn_last + claim_beyond, &a.chain_last), 0);
    }
    tdm_log_close(&a);
    segment_path(f->dir_a, *last + 1, path, path_size);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, path, out, size), 0);
}

/* A crash while the next segment was being created (its header half
 * written, after the one before was sealed): the file holds no batch and the
 * progress record claims nothing beyond the log, so nothing in it was ever
 * acknowledged. Recovery moves it whole to quarantine, the log is clean, and
 * appends go on at the next LSN. */
static void test_log_recover__torn_segment_creation_is_quarantined(void **state)
{
    struct fixture *f = *state;
    uint64_t last;
    uint8_t header[TDM_SEGMENT_HEADER_SIZE];
    char path[400];
    plant_next_segment(f, true, 0, 20, &last, header, path, sizeof(path));

    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    struct tandem_status status = log_status(&a);
    assert_int_equal(status.damaged_count, 0);
    assert_int_equal(status.quarantine_count, 1);
    assert_int_equal(status.lsn_last, last);
    assert_false(tdm_fault_fs_exists(&f->fs, path));
    char name[TDM_SEGMENT_NAME_SIZE];
    tdm_segment_name(name, sizeof(name), last + 1);
    char moved[TDM_PATH_SIZE + 64];
    snprintf(moved, sizeof(moved), "%s/quarantine/%s.torn", f->dir_a, name);
    void *data = NULL;
    size_t size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, moved, &data, &size), 0);
    assert_int_equal(size, 20);
    assert_memory_equal(data, header, 20); /* The bytes themselves, not a copy of less. */
    tdm_free(data);
    struct tdm_gen gen;
    tdm_gen_init(&gen, 99, 4);
    struct tdm_batch_header h;
    struct tdm_log_location location;
    append_generated(&a, &gen, 2, &h, &location);
    assert_int_equal(h.lsn_first, last + 1);
    tdm_log_close(&a);
    log_open(f, &a, f->dir_a);
    status = log_status(&a);
    assert_int_equal(status.damaged_count, 0);
    assert_int_equal(status.lsn_last, last + 2);
    tdm_log_close(&a);
}

/* The same torn file, but the progress record says LSNs beyond the log were
 * durable: they may have been acknowledged, so the file is kept where it is,
 * the log reports damage from the first missing LSN and refuses appends
 * (which would reuse those LSNs), and opening changes no file. */
static void test_log_recover__torn_segment_after_progress_is_damage(void **state)
{
    struct fixture *f = *state;
    uint64_t last;
    uint8_t header[TDM_SEGMENT_HEADER_SIZE];
    char path[400];
    plant_next_segment(f, true, 3, 20, &last, header, path, sizeof(path));

    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_a);
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    struct tandem_status status = log_status(&a);
    assert_true(status.damaged_count >= 1);
    assert_int_equal(status.damaged[0].lsn_first, last + 1);
    assert_int_equal(status.quarantine_count, 0);
    assert_int_equal(status.lsn_last, last);
    struct tdm_gen gen;
    tdm_gen_init(&gen, 99, 4);
    struct tdm_batch_header h;
    struct tdm_log_location location;
    struct tdm_diag diag = {{0}};
    assert_int_equal(append_generated_rv(&a, &gen, 1, &h, &location, &diag), TANDEM_EDAMAGED);
    assert_true(strlen(diag.message) > 0);
    tdm_log_close(&a);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_a), before);
}

/* A read-only open beside a writer may read a batch of the open segment as
 * the zeros it is being written over, then the batches after it whole. It
 * reads that batch again before judging (engine/recover.c,
 * RECOVER_READ_ONLY_REREADS; docs/FORMAT.md "Prepared segments"): no damage,
 * every batch there. A writer's open has nobody beside it: the same read is
 * damage at that batch. Neither open changes a file. */
static void test_log_recover__read_only_reads_a_zeroed_batch_again(void **state)
{
    struct fixture *f = *state;
    struct tdm_log_options options = {.segment_size = 1u << 20};
    struct tdm_diag diag = {{0}};
    struct tdm_log b;
    assert_int_equal(tdm_log_open(&b, &f->fs.base, f->dir_b, &options, &diag), 0);
    struct tdm_gen gen;
    tdm_gen_init(&gen, 5, 4);
    struct tdm_batch_header headers[4];
    struct tdm_log_location locations[4];
    for (int i = 0; i < 4; i++) {
        append_generated(&b, &gen, 2, &headers[i], &locations[i]);
    }
    tdm_log_close(&b);
    assert_int_equal(locations[1].segment_lsn, locations[3].segment_lsn); /* The open one. */
    char path[400];
    segment_path(f->dir_b, locations[1].segment_lsn, path, sizeof(path));
    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_b);

    options.read_only = true;
    assert_int_equal(
        tdm_fault_fs_stale_read_once(&f->fs, path, locations[1].offset, TDM_BATCH_HEADER_SIZE), 0);
    assert_int_equal(tdm_log_open(&b, &f->fs.base, f->dir_b, &options, &diag), 0);
    struct tandem_status status = log_status(&b);
    assert_int_equal(status.damaged_count, 0);
    assert_int_equal(status.lsn_last, tdm_batch_lsn_last(&headers[3]));
    tdm_log_close(&b);

    options.read_only = false;
    assert_int_equal(
        tdm_fault_fs_stale_read_once(&f->fs, path, locations[1].offset, TDM_BATCH_HEADER_SIZE), 0);
    assert_int_equal(tdm_log_open(&b, &f->fs.base, f->dir_b, &options, &diag), 0);
    status = log_status(&b);
    assert_true(status.damaged_count >= 1);
    assert_int_equal(status.damaged[0].lsn_first, headers[1].lsn_first);
    tdm_log_close(&b);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_b), before);
}

/* Every segment but the last was sealed before the next was created; an
 * unsealed one followed by another (a file restored from elsewhere, or the
 * last one's footer lost with a later segment in place) is damage in that
 * segment, never cut or moved: open changes no file. */
static void test_log_recover__unsealed_segment_not_last_is_damage(void **state)
{
    struct fixture *f = *state;
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    uint64_t open_lsn = a.segments[a.segment_count - 1].lsn_first;
    tdm_log_close(&a);
    uint64_t last;
    uint8_t header[TDM_SEGMENT_HEADER_SIZE];
    char path[400];
    plant_next_segment(f, false, 0, sizeof(header), &last, header, path, sizeof(path));

    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_a);
    log_open(f, &a, f->dir_a);
    struct tandem_status status = log_status(&a);
    assert_int_equal(status.damaged_count, 1);
    assert_int_equal(status.damaged[0].segment_lsn, open_lsn);
    assert_int_equal(status.lsn_last, last);
    assert_int_equal(status.quarantine_count, 0);
    tdm_log_close(&a);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_a), before);
}

/* A sealed segment file missing from the middle of the log: its LSN range is
 * reported as damage (named exactly, from its neighbours), the segments
 * around it still serve their batches, and open changes no file. */
static void test_log_recover__missing_segment_is_damage(void **state)
{
    struct fixture *f = *state;
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    assert_true(a.segment_count >= 4);
    struct tdm_log_segment gone = a.segments[1];
    uint64_t last = a.lsn_last;
    tdm_log_close(&a);
    char path[400];
    segment_path(f->dir_a, gone.lsn_first, path, sizeof(path));
    assert_int_equal(f->fs.base.unlink(&f->fs.base, path), 0);

    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_a);
    log_open(f, &a, f->dir_a);
    struct tandem_status status = log_status(&a);
    assert_int_equal(status.damaged_count, 1);
    assert_int_equal(status.damaged[0].lsn_first, gone.lsn_first);
    assert_int_equal(status.damaged[0].lsn_last, gone.lsn_last);
    assert_int_equal(status.lsn_last, last);
    for (int b = 0; b < BATCHES; b++) {
        bool inside =
            f->headers[b].lsn_first >= gone.lsn_first && f->headers[b].lsn_first <= gone.lsn_last;
        struct tdm_log_batch found;
        uint32_t count = 0;
        int rv = tdm_log_locate(&a, f->headers[b].lsn_first, f->headers[b].lsn_first, &found, 1,
                                &count, NULL);
        assert_int_equal(rv == 0 && count == 1, !inside);
    }
    tdm_log_close(&a);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_a), before);
}

/* A segment whose header does not continue the chain of the one before (a
 * file from another history put in place): damage reported at its header
 * (offset 0, its first LSN), and again at its first batch, whose chain hash
 * does not follow either; open changes no file. */
static void test_log_recover__chain_hash_break_is_damage(void **state)
{
    struct fixture *f = *state;
    struct tdm_log a;
    log_open(f, &a, f->dir_a);
    struct tdm_log_segment seg = a.segments[a.segment_count - 1];
    tdm_log_close(&a);
    char path[400];
    segment_path(f->dir_a, seg.lsn_first, path, sizeof(path));
    void *data = NULL;
    size_t size = 0;
    assert_int_equal(tdm_fault_fs_read_all(&f->fs, path, &data, &size), 0);
    struct tdm_segment_header h;
    assert_int_equal(tdm_segment_header_decode(data, &h, NULL), 0);
    h.chain_prev.bytes[0] ^= 1;
    tdm_segment_header_encode(&h, data);
    assert_int_equal(tdm_fault_fs_write_file(&f->fs, path, data, size), 0);
    tdm_free(data);

    uint64_t before = tdm_fault_fs_checksum_all(&f->fs, f->dir_a);
    log_open(f, &a, f->dir_a);
    struct tandem_status status = log_status(&a);
    assert_true(status.damaged_count >= 1);
    assert_int_equal(status.damaged[0].segment_lsn, seg.lsn_first);
    assert_int_equal(status.damaged[0].lsn_first, seg.lsn_first);
    assert_int_equal(status.damaged[0].lsn_last, seg.lsn_first); /* The header's own report, */
    assert_int_equal(status.damaged[0].offset, 0);               /* before its first batch's. */
    tdm_log_close(&a);
    assert_int_equal(tdm_fault_fs_checksum_all(&f->fs, f->dir_a), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_append_batch__replica_matches_primary, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_append_batch__rejects_and_writes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_append_batch_proven__checks_all_but_the_body,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_append_batch_unsynced__durable_only_after_sync,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_cut_after__quarantines_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_cut_after__power_loss_at_every_step, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_read_batch__bad_locations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_locate__matches_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_locate__tables_answer_without_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_locate__damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_locate__io_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_prepare__zero_tail_is_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_prepare__torn_batch_before_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_prepare__leftover_and_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_prepare__seal_truncate_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_prepare__thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_quarantine_path__never_overwrites, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_cut_after__keeps_earlier_quarantine, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_recover__torn_segment_creation_is_quarantined,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_recover__torn_segment_after_progress_is_damage,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_recover__read_only_reads_a_zeroed_batch_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_recover__unsealed_segment_not_last_is_damage,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_recover__missing_segment_is_damage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_recover__chain_hash_break_is_damage, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
