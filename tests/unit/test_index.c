/* tests/unit/test_index.c: the LMDB index (engine/index.c).
 *
 * Method: records are built by hand (no codec) from small pools of values
 * chosen to collide (duplicated Message-IDs, long Message-IDs sharing their
 * first 384+ bytes, many messages at the same time, customers that replace
 * their username and email). A seeded PRNG (engine/base/prng.h) builds a model
 * of many records; the test applies it in random batches and compares every
 * kind of scan, page by page with lsn_max 1, 7 and 1000, against a brute-force
 * filter over the model. Hand-made cases pin the boundaries: time windows,
 * resumption, batch location, the watermark, clear, reopen, read-only handles
 * (in this process and in a child process), format and corruption errors. */
#include "tdm_test.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>
#include <xxhash.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/bytes.h"
#include "engine/base/prng.h"
#include "engine/index.h"

#define TEST_PATH_SIZE     4096
#define TEST_LSN_MAX_BIG   1000
#define MODEL_RECORDS_MAX  1600
#define MODEL_CUSTOMERS    12 /* Customer ids 1..12; 0 and 13 have no records. */
#define MODEL_TIME_STEPS   50
#define MODEL_TIME_STEP_NS 1000
#define MODEL_SEED         0x7a11de3ull

/* ------------------------------------------------------------------------
 * Fixture, heap and assertion hooks.
 * ------------------------------------------------------------------------ */

struct fixture {
    char dir[TEST_PATH_SIZE]; /* The node directory; the index lives in dir/index. */
    struct tdm_index *index;  /* Writer, or NULL. */
    struct tdm_index *reader; /* Read-only handle, or NULL. */
};

static bool heap_fail; /* Make every allocation fail. */

static void *test_heap_malloc(void *data, size_t size)
{
    (void)data;
    return heap_fail ? NULL : test_malloc(size);
}

static void *test_heap_calloc(void *data, size_t count, size_t size)
{
    (void)data;
    return heap_fail ? NULL : test_calloc(count, size);
}

static void *test_heap_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return heap_fail ? NULL : test_realloc(ptr, size);
}

static void test_heap_free(void *data, void *ptr)
{
    (void)data;
    test_free(ptr);
}

static const struct tdm_heap test_heap = {
    .malloc = test_heap_malloc,
    .calloc = test_heap_calloc,
    .realloc = test_heap_realloc,
    .free = test_heap_free,
    .data = NULL,
};

static void test_assert_hook(const char *expr, const char *file, int line)
{
    mock_assert(0, expr, file, line);
}

static void pools_init(void);

static void close_writer(struct fixture *f)
{
    tdm_index_close(f->index);
    f->index = NULL;
}

/* Close both handles. No transaction runs meanwhile, which is what makes two
 * handles on one index in one process safe (see engine/index.c). */
static void close_handles(struct fixture *f)
{
    tdm_index_close(f->reader);
    f->reader = NULL;
    close_writer(f);
}

static int group_setup(void **state)
{
    (void)state;
    tdm_heap_set(&test_heap);
    tdm_assert_hook_set(test_assert_hook);
    pools_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tdm_assert_hook_set(NULL);
    tdm_heap_set(NULL);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(tdm_test_tmpdir_create(f->dir, sizeof(f->dir)), 0);
    heap_fail = false;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    close_handles(f); /* Still open only when the test failed. */
    char mnt[TEST_PATH_SIZE + 8];
    (void)snprintf(mnt, sizeof(mnt), "%s/mnt", f->dir);
    (void)umount2(mnt, MNT_DETACH); /* test_index_apply__full_disk's, if it failed. */
    tdm_test_tmpdir_remove(f->dir);
    test_free(f);
    return 0;
}

static void open_writer(struct fixture *f)
{
    struct tdm_diag diag = {{0}};
    int rv = tdm_index_open(f->dir, false, &f->index, &diag);
    if (rv != 0) {
        print_error("open: %s\n", diag.message);
    }
    assert_int_equal(rv, 0);
}

/* ------------------------------------------------------------------------
 * Building records and batches by hand.
 * ------------------------------------------------------------------------ */

static struct tandem_bytes bytes_of(const char *data, size_t size)
{
    struct tandem_bytes b = {.data = data, .size = size};
    return b;
}

static struct tandem_bytes text(const char *s)
{
    return bytes_of(s, strlen(s));
}

static struct tandem_record message(uint32_t customer_id, int64_t time_ns,
                                    struct tandem_bytes message_id, const char *recipient,
                                    const char *sender)
{
    struct tandem_record r;
    memset(&r, 0, sizeof(r));
    r.type = TANDEM_RECORD_MESSAGE;
    r.message.customer_id = customer_id;
    r.message.time_ns = time_ns;
    r.message.size = 1000;
    r.message.destination = TANDEM_DESTINATION_DELIVERED;
    r.message.classification = TANDEM_CLASSIFICATION_CLEAN;
    r.message.message_id = message_id;
    r.message.recipient = text(recipient);
    r.message.sender = text(sender);
    r.message.relay_ip.family = 4;
    return r;
}

static struct tandem_record customer(uint32_t customer_id, const char *username, const char *email)
{
    struct tandem_record r;
    memset(&r, 0, sizeof(r));
    r.type = TANDEM_RECORD_CUSTOMER;
    r.customer.customer_id = customer_id;
    r.customer.first_name = text("Ada");
    r.customer.username = text(username);
    r.customer.email = text(email);
    return r;
}

static struct tdm_chain_hash chain_for(uint64_t lsn)
{
    struct tdm_chain_hash chain;
    for (int i = 0; i < TDM_CHAIN_HASH_SIZE; i++) {
        chain.bytes[i] = (uint8_t)(lsn * 31 + (uint64_t)i);
    }
    return chain;
}

static struct tdm_index_batch batch_of(uint64_t lsn_first, const struct tandem_record *records,
                                       uint32_t count)
{
    struct tdm_index_batch b;
    memset(&b, 0, sizeof(b));
    b.location.lsn_first = lsn_first;
    b.location.record_count = count;
    b.location.segment_lsn = 1 + (lsn_first / 100) * 100;
    b.location.offset = lsn_first * 1000 + 7;
    b.location.size = count * 10 + 96;
    b.chain_hash = chain_for(lsn_first + count - 1);
    b.records = records;
    return b;
}

/* Apply records as one batch that starts at lsn_first. */
static void apply_records(struct tdm_index *index, uint64_t lsn_first,
                          const struct tandem_record *records, uint32_t count)
{
    struct tdm_index_batch b = batch_of(lsn_first, records, count);
    struct tdm_diag diag = {{0}};
    int rv = tdm_index_apply(index, &b, 1, &diag);
    if (rv != 0) {
        print_error("apply: %s\n", diag.message);
    }
    assert_int_equal(rv, 0);
}

static uint64_t page[TEST_LSN_MAX_BIG];
static uint64_t scan_results[MODEL_RECORDS_MAX + 64];

/* Run scan to the end with lsn_max per call, checking the paging contract,
 * and return how many LSNs it yielded into out. */
static size_t scan_all(struct tdm_index *index, struct tdm_index_scan *scan, size_t lsn_max,
                       uint64_t *out, size_t out_max)
{
    assert_true(lsn_max <= TEST_LSN_MAX_BIG);
    size_t total = 0;
    for (size_t calls = 0;; calls++) {
        assert_true(calls <= out_max + 1);
        size_t count = SIZE_MAX;
        assert_int_equal(tdm_index_scan_next(index, scan, page, lsn_max, &count), 0);
        assert_true(count <= lsn_max);
        if (count < lsn_max) {
            assert_true(scan->done);
        }
        assert_true(total + count <= out_max);
        memcpy(out + total, page, count * sizeof(page[0]));
        total += count;
        if (scan->done) {
            break;
        }
    }
    size_t count = SIZE_MAX;
    assert_int_equal(tdm_index_scan_next(index, scan, page, lsn_max, &count), 0);
    assert_int_equal(count, 0);
    return total;
}

static struct tdm_index_scan scan_of(enum tdm_index_scan_kind kind, uint32_t customer_id,
                                     struct tandem_bytes key, int64_t since_ns, int64_t until_ns)
{
    struct tdm_index_scan scan;
    tdm_index_scan_init(&scan, kind);
    scan.customer_id = customer_id;
    scan.key = key.data;
    scan.key_size = key.size;
    scan.since_ns = since_ns;
    scan.until_ns = until_ns;
    return scan;
}

/* Scan with lsn_max 1, 7 and 1000 and compare each run with expected. */
static void check_scan(struct tdm_index *index, const struct tdm_index_scan *proto,
                       const uint64_t *expected, size_t expected_count)
{
    static const size_t lsn_maxes[] = {1, 7, TEST_LSN_MAX_BIG};
    for (size_t i = 0; i < sizeof(lsn_maxes) / sizeof(lsn_maxes[0]); i++) {
        struct tdm_index_scan scan = *proto;
        size_t count = scan_all(index, &scan, lsn_maxes[i], scan_results, MODEL_RECORDS_MAX + 64);
        assert_int_equal(count, expected_count);
        for (size_t j = 0; j < count && j < expected_count; j++) {
            assert_int_equal(scan_results[j], expected[j]);
        }
    }
}

static void check_lsns(struct tdm_index *index, enum tdm_index_scan_kind kind, uint32_t customer_id,
                       struct tandem_bytes key, int64_t since_ns, int64_t until_ns,
                       const uint64_t *expected, size_t expected_count)
{
    struct tdm_index_scan scan = scan_of(kind, customer_id, key, since_ns, until_ns);
    check_scan(index, &scan, expected, expected_count);
}

/* ------------------------------------------------------------------------
 * Value pools and the random model.
 * ------------------------------------------------------------------------ */

#define POOL_MESSAGE_ID_COUNT 12
#define POOL_RECIPIENT_COUNT  5
#define POOL_SENDER_COUNT     4
#define POOL_USERNAME_COUNT   5
#define POOL_EMAIL_COUNT      4

static char pool_message_id_storage[POOL_MESSAGE_ID_COUNT][TANDEM_MESSAGE_ID_SIZE_MAX];
static struct tandem_bytes pool_message_id[POOL_MESSAGE_ID_COUNT];
static char pool_long_address[TANDEM_ADDRESS_SIZE_MAX + 1];
static char pool_long_sender[TANDEM_ADDRESS_SIZE_MAX + 1];
static char pool_long_username[TANDEM_USERNAME_SIZE_MAX + 1];
static char pool_long_email[TANDEM_ADDRESS_SIZE_MAX + 1];
static const char *pool_recipient[POOL_RECIPIENT_COUNT] = {"a@x.test", "b@x.test", "c@y.test",
                                                           "A@x.test", pool_long_address};
static const char *pool_sender[POOL_SENDER_COUNT] = {"", "s1@z.test", "s2@z.test",
                                                     pool_long_sender};
static const char *pool_username[POOL_USERNAME_COUNT] = {"", "alice", "bob", "carol",
                                                         pool_long_username};
static const char *pool_email[POOL_EMAIL_COUNT] = {"", "alice@x.test", "bob@x.test",
                                                   pool_long_email};

/* Fill a Message-ID of size bytes with fill, ending in tail. */
static void pool_message_id_set(size_t i, char fill, size_t size, const char *tail)
{
    char *p = pool_message_id_storage[i];
    size_t tail_size = strlen(tail);
    assert_true(size <= TANDEM_MESSAGE_ID_SIZE_MAX);
    assert_true(tail_size <= size);
    memset(p, fill, size);
    memcpy(p + size - tail_size, tail, tail_size);
    pool_message_id[i] = bytes_of(p, size);
}

static void pools_init(void)
{
    pool_message_id_set(0, 'x', 0, ""); /* Empty: not indexed. */
    pool_message_id_set(1, '<', 17, "m1@example.com>");
    pool_message_id_set(2, '<', 17, "m2@example.com>");
    pool_message_id_set(3, '<', 17, "m3@example.com>");
    pool_message_id_set(4, 'q', 400, "");   /* Version 1's longest key kept as is. */
    pool_message_id_set(5, 'q', 401, "");   /* Shares all 400 bytes above. */
    pool_message_id_set(6, 'r', 500, "-1"); /* 6..8 share 498 bytes. */
    pool_message_id_set(7, 'r', 500, "-2");
    pool_message_id_set(8, 'r', 500, "-3");
    pool_message_id_set(9, 's', TANDEM_MESSAGE_ID_SIZE_MAX, "1");
    pool_message_id_set(10, 's', TANDEM_MESSAGE_ID_SIZE_MAX, "2");
    pool_message_id_set(11, 'r', 385, "-1"); /* Shares 383 bytes with 6..8. */
    memset(pool_long_address, 'l', TANDEM_ADDRESS_SIZE_MAX);
    memset(pool_long_sender, 'w', TANDEM_ADDRESS_SIZE_MAX);
    memset(pool_long_username, 'u', TANDEM_USERNAME_SIZE_MAX);
    memset(pool_long_email, 'e', TANDEM_ADDRESS_SIZE_MAX);
}

static struct tandem_record model[MODEL_RECORDS_MAX]; /* model[i] has LSN i + 1. */
static size_t model_count;
static struct tdm_index_location model_batches[MODEL_RECORDS_MAX];
static size_t model_batch_count;

static int64_t model_time(struct tdm_prng *prng)
{
    uint64_t roll = tdm_prng_below(prng, 100);
    if (roll == 0) {
        return 0;
    }
    if (roll == 1) {
        return INT64_MAX; /* Never inside a [since, until) window. */
    }
    return (int64_t)(tdm_prng_below(prng, MODEL_TIME_STEPS) * MODEL_TIME_STEP_NS);
}

static void model_generate(uint64_t seed, size_t count)
{
    struct tdm_prng prng;
    tdm_prng_init(&prng, seed);
    assert_true(count <= MODEL_RECORDS_MAX);
    for (size_t i = 0; i < count; i++) {
        uint32_t id = 1 + (uint32_t)tdm_prng_below(&prng, MODEL_CUSTOMERS);
        if (tdm_prng_below(&prng, 100) < 15) {
            model[i] = customer(id, pool_username[tdm_prng_below(&prng, POOL_USERNAME_COUNT)],
                                pool_email[tdm_prng_below(&prng, POOL_EMAIL_COUNT)]);
            continue;
        }
        int64_t time_ns = model_time(&prng);
        struct tandem_bytes message_id =
            pool_message_id[tdm_prng_below(&prng, POOL_MESSAGE_ID_COUNT)];
        model[i] = message(id, time_ns, message_id,
                           pool_recipient[tdm_prng_below(&prng, POOL_RECIPIENT_COUNT)],
                           pool_sender[tdm_prng_below(&prng, POOL_SENDER_COUNT)]);
    }
    model_count = count;
    model_batch_count = 0;
}

/* Apply model[first .. last) in batches of 1..17 records, 1..4 batches per
 * call of tdm_index_apply(). */
static void model_apply(struct tdm_index *index, struct tdm_prng *prng, size_t first, size_t last)
{
    struct tdm_index_batch batches[4];
    size_t next = first;
    while (next < last) {
        size_t batch_count = 1 + tdm_prng_below(prng, 4);
        size_t used = 0;
        for (; used < batch_count && next < last; used++) {
            uint32_t size = 1 + (uint32_t)tdm_prng_below(prng, 17);
            if (size > last - next) {
                size = (uint32_t)(last - next);
            }
            batches[used] = batch_of(next + 1, &model[next], size);
            model_batches[model_batch_count++] = batches[used].location;
            next += size;
        }
        struct tdm_diag diag = {{0}};
        assert_int_equal(tdm_index_apply(index, batches, used, &diag), 0);
    }
}

static bool bytes_equal(struct tandem_bytes a, struct tandem_bytes b)
{
    return a.size == b.size && (a.size == 0 || memcmp(a.data, b.data, a.size) == 0);
}

static uint64_t want_lsns[MODEL_RECORDS_MAX]; /* Filled by the expect_* filters. */

static size_t expect_message_id(size_t applied, struct tandem_bytes key)
{
    size_t n = 0;
    for (size_t i = 0; i < applied && key.size > 0; i++) {
        const struct tandem_record *r = &model[i];
        if (r->type == TANDEM_RECORD_MESSAGE && bytes_equal(r->message.message_id, key)) {
            want_lsns[n++] = i + 1;
        }
    }
    return n;
}

static int64_t model_time_of(uint64_t lsn)
{
    return model[lsn - 1].message.time_ns;
}

/* Messages of customer_id in [since_ns, until_ns), optionally to one
 * recipient or from one sender, in (time, LSN) order. */
static size_t expect_time(size_t applied, enum tdm_index_scan_kind kind, uint32_t customer_id,
                          struct tandem_bytes key, int64_t since_ns, int64_t until_ns)
{
    size_t n = 0;
    for (size_t i = 0; i < applied; i++) {
        const struct tandem_message *m = &model[i].message;
        if (model[i].type != TANDEM_RECORD_MESSAGE || m->customer_id != customer_id) {
            continue;
        }
        if (m->time_ns < since_ns || m->time_ns >= until_ns) {
            continue;
        }
        if (kind == TDM_INDEX_SCAN_RECIPIENT && !bytes_equal(m->recipient, key)) {
            continue;
        }
        if (kind == TDM_INDEX_SCAN_SENDER && !bytes_equal(m->sender, key)) {
            continue;
        }
        /* Insertion sort by (time, LSN); LSNs arrive in order. */
        size_t j = n++;
        while (j > 0 && model_time_of(want_lsns[j - 1]) > m->time_ns) {
            want_lsns[j] = want_lsns[j - 1];
            j--;
        }
        want_lsns[j] = i + 1;
    }
    return n;
}

/* Each customer whose current record has this username (or email), in
 * customer order: the LSN of that record. */
static size_t expect_customer_key(size_t applied, enum tdm_index_scan_kind kind,
                                  struct tandem_bytes key)
{
    size_t n = 0;
    for (uint32_t id = 0; id <= MODEL_CUSTOMERS + 1 && key.size > 0; id++) {
        size_t current = SIZE_MAX;
        for (size_t i = 0; i < applied; i++) {
            if (model[i].type == TANDEM_RECORD_CUSTOMER && model[i].customer.customer_id == id) {
                current = i;
            }
        }
        if (current == SIZE_MAX) {
            continue;
        }
        const struct tandem_customer *c = &model[current].customer;
        struct tandem_bytes value = kind == TDM_INDEX_SCAN_USERNAME ? c->username : c->email;
        if (bytes_equal(value, key)) {
            want_lsns[n++] = current + 1;
        }
    }
    return n;
}

#define MODEL_WINDOW_COUNT 10

/* Fixed windows at the edges, then random ones whose bounds sit on, just
 * before or just after the times the records use. */
static void model_windows(struct tdm_prng *prng, int64_t since[MODEL_WINDOW_COUNT],
                          int64_t until[MODEL_WINDOW_COUNT])
{
    static const int64_t fixed[][2] = {
        {0, INT64_MAX}, {INT64_MIN, INT64_MAX}, {5000, 9000}, {5000, 5000}, {9000, 5000}, {0, 1},
    };
    size_t fixed_count = sizeof(fixed) / sizeof(fixed[0]);
    for (size_t i = 0; i < MODEL_WINDOW_COUNT; i++) {
        if (i < fixed_count) {
            since[i] = fixed[i][0];
            until[i] = fixed[i][1];
            continue;
        }
        for (int edge = 0; edge < 2; edge++) {
            int64_t base = (int64_t)tdm_prng_below(prng, MODEL_TIME_STEPS + 1) * MODEL_TIME_STEP_NS;
            int64_t t = base + (int64_t)tdm_prng_below(prng, 3) - 1;
            *(edge == 0 ? &since[i] : &until[i]) = t;
        }
    }
}

static void model_check_time(struct tdm_index *index, struct tdm_prng *prng, size_t applied)
{
    int64_t since[MODEL_WINDOW_COUNT];
    int64_t until[MODEL_WINDOW_COUNT];
    for (uint32_t id = 0; id <= MODEL_CUSTOMERS + 1; id++) {
        model_windows(prng, since, until);
        for (size_t w = 0; w < MODEL_WINDOW_COUNT; w++) {
            struct tandem_bytes none = {NULL, 0};
            size_t n =
                expect_time(applied, TDM_INDEX_SCAN_CUSTOMER_TIME, id, none, since[w], until[w]);
            check_lsns(index, TDM_INDEX_SCAN_CUSTOMER_TIME, id, none, since[w], until[w], want_lsns,
                       n);
            for (size_t a = 0; a < POOL_RECIPIENT_COUNT; a++) {
                struct tandem_bytes key = text(pool_recipient[a]);
                n = expect_time(applied, TDM_INDEX_SCAN_RECIPIENT, id, key, since[w], until[w]);
                check_lsns(index, TDM_INDEX_SCAN_RECIPIENT, id, key, since[w], until[w], want_lsns,
                           n);
            }
            for (size_t a = 0; a < POOL_SENDER_COUNT; a++) {
                struct tandem_bytes key = text(pool_sender[a]);
                n = expect_time(applied, TDM_INDEX_SCAN_SENDER, id, key, since[w], until[w]);
                check_lsns(index, TDM_INDEX_SCAN_SENDER, id, key, since[w], until[w], want_lsns, n);
            }
        }
    }
}

static void model_check_keys(struct tdm_index *index, size_t applied)
{
    for (size_t i = 0; i < POOL_MESSAGE_ID_COUNT; i++) {
        size_t n = expect_message_id(applied, pool_message_id[i]);
        check_lsns(index, TDM_INDEX_SCAN_MESSAGE_ID, 0, pool_message_id[i], 0, 0, want_lsns, n);
    }
    check_lsns(index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<nobody@x.test>"), 0, 0, want_lsns, 0);
    for (size_t i = 0; i < POOL_USERNAME_COUNT; i++) {
        struct tandem_bytes key = text(pool_username[i]);
        size_t n = expect_customer_key(applied, TDM_INDEX_SCAN_USERNAME, key);
        check_lsns(index, TDM_INDEX_SCAN_USERNAME, 0, key, 0, 0, want_lsns, n);
    }
    for (size_t i = 0; i < POOL_EMAIL_COUNT; i++) {
        struct tandem_bytes key = text(pool_email[i]);
        size_t n = expect_customer_key(applied, TDM_INDEX_SCAN_EMAIL, key);
        check_lsns(index, TDM_INDEX_SCAN_EMAIL, 0, key, 0, 0, want_lsns, n);
    }
    check_lsns(index, TDM_INDEX_SCAN_USERNAME, 0, text("mallory"), 0, 0, want_lsns, 0);
    for (uint32_t id = 0; id <= MODEL_CUSTOMERS + 1; id++) {
        size_t current = SIZE_MAX;
        for (size_t i = 0; i < applied; i++) {
            if (model[i].type == TANDEM_RECORD_CUSTOMER && model[i].customer.customer_id == id) {
                current = i;
            }
        }
        uint64_t lsn = 0;
        int rv = tdm_index_customer(index, id, &lsn);
        assert_int_equal(rv, current == SIZE_MAX ? TANDEM_ENOTFOUND : 0);
        if (current != SIZE_MAX) {
            assert_int_equal(lsn, current + 1);
        }
    }
}

static void model_check_all(struct tdm_index *index, struct tdm_prng *prng, size_t applied)
{
    model_check_keys(index, applied);
    model_check_time(index, prng, applied);
    uint64_t watermark = 1;
    struct tdm_chain_hash chain;
    assert_int_equal(tdm_index_watermark(index, &watermark, &chain), 0);
    assert_int_equal(watermark, applied);
    struct tdm_chain_hash want = chain_for(applied);
    assert_memory_equal(chain.bytes, want.bytes, TDM_CHAIN_HASH_SIZE);
}

/* ------------------------------------------------------------------------
 * Raw LMDB access, for states tdm_index never writes.
 * ------------------------------------------------------------------------ */

static MDB_env *raw_open(const char *node_dir)
{
    char path[TEST_PATH_SIZE + 16];
    assert_true(snprintf(path, sizeof(path), "%s/index", node_dir) > 0);
    MDB_env *env = NULL;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0); /* Grows to the file. */
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    return env;
}

/* Overwrite one key of a named database with raw bytes. */
static void raw_put(const char *node_dir, const char *db_name, const void *key, size_t key_size,
                    const void *value, size_t value_size)
{
    MDB_env *env = raw_open(node_dir);
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db_name, 0, &dbi), 0);
    MDB_val k = {.mv_size = key_size, .mv_data = (void *)(uintptr_t)key};
    MDB_val v = {.mv_size = value_size, .mv_data = (void *)(uintptr_t)value};
    unsigned int flags = 0;
    assert_int_equal(mdb_dbi_flags(txn, dbi, &flags), 0);
    if (flags & MDB_DUPSORT) {
        assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0); /* Replace every duplicate. */
    }
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Read every key of a named database, in order, into keys (each up to 511
 * bytes) and return how many there are. */
static size_t raw_keys(const char *node_dir, const char *db_name, uint8_t (*keys)[511],
                       size_t *key_sizes, size_t key_max)
{
    MDB_env *env = raw_open(node_dir);
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cursor = NULL;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db_name, 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cursor), 0);
    size_t n = 0;
    MDB_val k;
    MDB_val v;
    while (mdb_cursor_get(cursor, &k, &v, n == 0 ? MDB_FIRST : MDB_NEXT_NODUP) == 0) {
        assert_true(n < key_max);
        assert_true(k.mv_size <= 511);
        memcpy(keys[n], k.mv_data, k.mv_size);
        key_sizes[n++] = k.mv_size;
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return n;
}

/* ------------------------------------------------------------------------
 * Opening.
 * ------------------------------------------------------------------------ */

/* A writer open of a fresh node directory creates DIR/index with mode 0700
 * and an index at watermark 0 with a zero chain hash. */
static void test_index_open__creates_directory(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    char path[TEST_PATH_SIZE + 16];
    assert_true(snprintf(path, sizeof(path), "%s/index", f->dir) > 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    uint64_t lsn = 99;
    struct tdm_chain_hash chain;
    memset(&chain, 0xff, sizeof(chain));
    assert_int_equal(tdm_index_watermark(f->index, &lsn, &chain), 0);
    assert_int_equal(lsn, 0);
    struct tdm_chain_hash zero = {{0}};
    assert_memory_equal(chain.bytes, zero.bytes, TDM_CHAIN_HASH_SIZE);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A writer open inside a node directory that does not exist fails with
 * -ENOENT and a diag naming mkdir. */
static void test_index_open__node_dir_missing(void **state)
{
    struct fixture *f = *state;
    char dir[TEST_PATH_SIZE + 16];
    assert_true(snprintf(dir, sizeof(dir), "%s/nowhere", f->dir) > 0);
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(dir, false, &index, &diag), -ENOENT);
    assert_null(index);
    assert_non_null(strstr(diag.message, "mkdir"));
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A read-only open of a node directory without an index fails cleanly with
 * -ENOENT and creates nothing. */
static void test_index_open__read_only_missing(void **state)
{
    struct fixture *f = *state;
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(f->dir, true, &index, &diag), -ENOENT);
    assert_null(index);
    assert_true(diag.message[0] != '\0');
    assert_false(tdm_test_file_exists(f->dir, "index"));

    /* An empty index directory is missing an index too. */
    char path[TEST_PATH_SIZE + 16];
    assert_true(snprintf(path, sizeof(path), "%s/index", f->dir) > 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(tdm_index_open(f->dir, true, &index, &diag), -ENOENT);
    assert_false(tdm_test_file_exists(f->dir, "index/lock.mdb"));
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A read-only open of an LMDB environment without the named databases (a
 * writer that never finished its first open) fails with -ENOENT. */
static void test_index_open__read_only_without_databases(void **state)
{
    struct fixture *f = *state;
    char path[TEST_PATH_SIZE + 16];
    assert_true(snprintf(path, sizeof(path), "%s/index", f->dir) > 0);
    assert_int_equal(mkdir(path, 0700), 0);
    mdb_env_close(raw_open(f->dir));
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(f->dir, true, &index, &diag), -ENOENT);
    assert_null(index);
    assert_non_null(strstr(diag.message, "missing"));
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* An index whose version is newer than this build's is refused with
 * TANDEM_EFORMAT by writers and readers alike. */
static void test_index_open__version_too_new(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    close_writer(f);
    uint8_t version[4];
    tdm_store_be32(version, 3);
    raw_put(f->dir, "meta", "version", 7, version, sizeof(version));
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(f->dir, false, &index, &diag), TANDEM_EFORMAT);
    assert_non_null(strstr(diag.message, "version 3"));
    assert_int_equal(tdm_index_open(f->dir, true, &index, &diag), TANDEM_EFORMAT);
    assert_null(index);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* An index of version 1 (keys of up to 400 bytes of each field): a reader
 * refuses it and says what rebuilds it; a writer empties it (watermark 0,
 * no entry left) and stores version 2, so that the node's open rebuilds it
 * from the log. */
static void test_index_open__version_1_is_emptied_by_a_writer(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[2] = {message(3, 10, text("<v1@x>"), "r@x", "s@x"),
                                       message(3, 11, text("<v1b@x>"), "r@x", "")};
    open_writer(f);
    apply_records(f->index, 1, records, 2);
    close_writer(f);
    uint8_t version[4];
    tdm_store_be32(version, 1);
    raw_put(f->dir, "meta", "version", 7, version, sizeof(version));
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(f->dir, true, &index, &diag), TANDEM_EFORMAT);
    assert_non_null(strstr(diag.message, "rebuilds it"));
    assert_null(index);
    open_writer(f);
    uint64_t lsn = 99;
    assert_int_equal(tdm_index_watermark(f->index, &lsn, NULL), 0);
    assert_int_equal(lsn, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<v1@x>"), 0, 0, NULL, 0);
    apply_records(f->index, 1, records, 2);
    uint64_t want[] = {1};
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<v1@x>"), 0, 0, want, 1);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A version value of the wrong size is TANDEM_EFORMAT, not a crash. */
static void test_index_open__version_malformed(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    close_writer(f);
    raw_put(f->dir, "meta", "version", 7, "1", 1);
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(f->dir, true, &index, &diag), TANDEM_EFORMAT);
    assert_null(index);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* When the handle cannot be allocated, open returns -ENOMEM and leaves no
 * environment open behind it. */
static void test_index_open__out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    heap_fail = true;
    int rv = tdm_index_open(f->dir, false, &index, &diag);
    heap_fail = false;
    assert_int_equal(rv, -ENOMEM);
    assert_null(index);
    open_writer(f);   /* Nothing holds the environment. */
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* Everything applied survives close and reopen, by writers and readers. */
static void test_index_open__reopen_persists(void **state)
{
    struct fixture *f = *state;
    struct tdm_prng prng;
    tdm_prng_init(&prng, MODEL_SEED + 1);
    model_generate(MODEL_SEED + 1, 300);
    open_writer(f);
    model_apply(f->index, &prng, 0, model_count);
    assert_int_equal(tdm_index_sync(f->index), 0);
    close_writer(f);

    open_writer(f);
    model_check_keys(f->index, model_count);
    close_writer(f);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(f->dir, true, &f->reader, &diag), 0);
    model_check_all(f->reader, &prng, model_count);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A read-only handle opened beside the writer in the same process sees what
 * the writer applied, before and after it opened, and refuses to write. */
static void test_index_open__read_only_beside_writer(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[3] = {
        message(1, 100, text("<a@x>"), "r@x", "s@x"),
        customer(1, "alice", "alice@x"),
        message(1, 200, text("<a@x>"), "r@x", "s@x"),
    };
    open_writer(f);
    apply_records(f->index, 1, records, 2);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(f->dir, true, &f->reader, &diag), 0);

    uint64_t want[] = {1, 3};
    check_lsns(f->reader, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<a@x>"), 0, 0, want, 1);
    apply_records(f->index, 3, &records[2], 1);
    check_lsns(f->reader, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<a@x>"), 0, 0, want, 2);
    uint64_t lsn = 0;
    assert_int_equal(tdm_index_watermark(f->reader, &lsn, NULL), 0);
    assert_int_equal(lsn, 3);
    assert_int_equal(tdm_index_customer(f->reader, 1, &lsn), 0);
    assert_int_equal(lsn, 2);

    struct tdm_index_batch b = batch_of(4, records, 1);
    assert_int_equal(tdm_index_apply(f->reader, &b, 1, &diag), TANDEM_EREADONLY);
    assert_int_equal(tdm_index_clear(f->reader, &diag), TANDEM_EREADONLY);
    assert_int_equal(tdm_index_sync(f->reader), 0);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* In the child process: open read-only and check what the parent applied.
 * Returns 0 when everything matched, else the number of the failed check. */
static int child_check(const char *dir, uint64_t lsn_want)
{
    struct tdm_index *reader = NULL;
    struct tdm_diag diag = {{0}};
    if (tdm_index_open(dir, true, &reader, &diag) != 0) {
        return 1;
    }
    int result = 0;
    uint64_t lsn = 0;
    if (tdm_index_watermark(reader, &lsn, NULL) != 0 || lsn != lsn_want) {
        result = 2;
    }
    struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<p@x>"), 0, 0);
    uint64_t lsns[8];
    size_t count = 0;
    if (result == 0 && tdm_index_scan_next(reader, &scan, lsns, 8, &count) != 0) {
        result = 3;
    }
    if (result == 0 && (count != lsn_want || lsns[0] != 1 || lsns[count - 1] != lsn_want)) {
        result = 4;
    }
    tdm_index_close(reader);
    return result;
}

/* In the child process: with an address-space limit of what the process
 * uses plus 6 GiB, no map of 8 GiB or more fits, so the writer open must fall
 * back to a smaller map; the index it opens must work. */
static int child_small_address_space(const char *dir)
{
    FILE *status = fopen("/proc/self/status", "r");
    if (status == NULL) {
        return 10;
    }
    char line[256];
    unsigned long long vm_kib = 0;
    while (fgets(line, sizeof(line), status) != NULL) {
        if (sscanf(line, "VmSize: %llu kB", &vm_kib) == 1) {
            break;
        }
    }
    (void)fclose(status);
    if (vm_kib == 0) {
        return 11;
    }
    struct rlimit limit;
    limit.rlim_cur = (rlim_t)(vm_kib << 10) + ((rlim_t)6 << 30);
    limit.rlim_max = limit.rlim_cur;
    if (setrlimit(RLIMIT_AS, &limit) != 0) {
        return 12;
    }
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    if (tdm_index_open(dir, false, &index, &diag) != 0) {
        (void)fprintf(stderr, "child: %s\n", diag.message);
        return 13;
    }
    struct tandem_record r = message(1, 1, text("<as@x>"), "r@x", "s@x");
    struct tdm_index_batch b = batch_of(1, &r, 1);
    int result = tdm_index_apply(index, &b, 1, &diag) == 0 ? 0 : 14;
    tdm_index_close(index);
    return result;
}

static char self_path[TEST_PATH_SIZE]; /* This test program, for the child to exec. */

/* Run this program again as "self_path mode dir arg" in a new process and
 * return its exit status. The child execs afresh rather than running on
 * after fork(): LMDB forbids using the parent's environment in a forked
 * child, and exec leaves nothing of it behind. */
static int run_child(const char *mode, const char *dir, const char *arg)
{
    (void)fflush(NULL); /* The child must not print the parent's buffered output again. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[] = {self_path, (char *)(uintptr_t)mode, (char *)(uintptr_t)dir,
                        (char *)(uintptr_t)arg, NULL};
        execv(self_path, argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void run_child_check(const char *dir, uint64_t lsn_want)
{
    char lsn_text[32];
    assert_true(snprintf(lsn_text, sizeof(lsn_text), "%" PRIu64, lsn_want) > 0);
    assert_int_equal(run_child("--index-child", dir, lsn_text), 0);
}

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

/* A writer whose address space cannot hold a 4 TiB map opens with a
 * smaller one instead of failing (ulimit -v, valgrind), and the index works
 * at full size again in an unlimited process. */
static void test_index_open__small_address_space(void **state)
{
    struct fixture *f = *state;
#ifdef TEST_ASAN
    (void)f;
    skip(); /* ASan's shadow memory already exceeds any useful limit. */
#else
    assert_int_equal(run_child("--index-child-small-as", f->dir, "-"), 0);
    open_writer(f);
    uint64_t lsn = 0;
    assert_int_equal(tdm_index_watermark(f->index, &lsn, NULL), 0);
    assert_int_equal(lsn, 1);
    uint64_t want[] = {1};
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<as@x>"), 0, 0, want, 1);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
#endif
}

/* A read-only handle in another process, opened while the writer is open,
 * sees the applied records; the writer goes on applying afterwards. */
static void test_index_open__read_only_in_another_process(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[4];
    for (int i = 0; i < 4; i++) {
        records[i] = message(9, 1000 + i, text("<p@x>"), "r@x", "");
    }
    open_writer(f);
    apply_records(f->index, 1, records, 2);
    run_child_check(f->dir, 2);
    apply_records(f->index, 3, &records[2], 2);
    run_child_check(f->dir, 4);
    uint64_t want[] = {1, 2, 3, 4};
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<p@x>"), 0, 0, want, 4);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* ------------------------------------------------------------------------
 * Scans against the model.
 * ------------------------------------------------------------------------ */

/* Every kind of scan, paged with lsn_max 1, 7 and 1000, returns exactly
 * what a brute-force filter over the model returns, halfway through the
 * model and at its end (method: see the file comment). */
static void test_index_scan_next__matches_model(void **state)
{
    struct fixture *f = *state;
    struct tdm_prng prng;
    tdm_prng_init(&prng, MODEL_SEED);
    model_generate(MODEL_SEED, 1500);
    open_writer(f);
    model_apply(f->index, &prng, 0, 700);
    model_check_all(f->index, &prng, 700);
    model_apply(f->index, &prng, 700, model_count);
    model_check_all(f->index, &prng, model_count);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* The same comparison for other seeds, with fewer records. */
static void test_index_scan_next__matches_model_more_seeds(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct tdm_diag diag = {{0}};
        assert_int_equal(tdm_index_clear(f->index, &diag), 0);
        struct tdm_prng prng;
        tdm_prng_init(&prng, seed);
        model_generate(seed, 400);
        model_apply(f->index, &prng, 0, model_count);
        model_check_all(f->index, &prng, model_count);
    }
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* Message-IDs longer than 400 bytes that share their first 384 (or more)
 * bytes, and the 400/401-byte pair around the hashing limit, each find only
 * their own records. */
static void test_index_scan_next__long_message_ids_sharing_prefix(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[POOL_MESSAGE_ID_COUNT * 2];
    for (uint32_t i = 0; i < POOL_MESSAGE_ID_COUNT * 2; i++) {
        records[i] = message(1, 5, pool_message_id[i % POOL_MESSAGE_ID_COUNT], "r@x", "s@x");
    }
    open_writer(f);
    apply_records(f->index, 1, records, POOL_MESSAGE_ID_COUNT * 2);
    for (uint64_t i = 1; i < POOL_MESSAGE_ID_COUNT; i++) {
        uint64_t want[] = {i + 1, i + 1 + POOL_MESSAGE_ID_COUNT};
        check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, pool_message_id[i], 0, 0, want, 2);
    }
    /* Empty Message-IDs are not indexed. */
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, pool_message_id[0], 0, 0, NULL, 0);
    /* A 500-byte id that matches none: same prefix, different tail. */
    char other[500];
    memset(other, 'r', sizeof(other));
    memcpy(other + 498, "-4", 2);
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, bytes_of(other, sizeof(other)), 0, 0, NULL,
               0);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* Time windows include since and exclude until, for the customer_time,
 * recipient and sender scans, and ties at one time come in LSN order. */
static void test_index_scan_next__time_window_boundaries(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[] = {
        message(5, 20, text("<1>"), "r@x", "s@x"), message(4, 20, text("<2>"), "r@x", "s@x"),
        message(5, 30, text("<3>"), "r@x", "s@x"), message(5, 10, text("<4>"), "r@x", "s@x"),
        message(6, 20, text("<5>"), "r@x", "s@x"), message(5, 20, text("<6>"), "r@x", "s@x"),
    };
    open_writer(f);
    apply_records(f->index, 1, records, 6);
    static const struct {
        int64_t since;
        int64_t until;
        size_t count;
        uint64_t lsns[4];
    } cases[] = {
        {20, 30, 2, {1, 6}},       {10, 20, 1, {4}},        {21, 30, 0, {0}},
        {10, 31, 4, {4, 1, 6, 3}}, {30, INT64_MAX, 1, {3}}, {0, 10, 0, {0}},
        {-5, 11, 1, {4}},          {20, 20, 0, {0}},        {30, 20, 0, {0}},
        {INT64_MIN, 0, 0, {0}},    {19, 21, 2, {1, 6}},
    };
    static const enum tdm_index_scan_kind kinds[] = {
        TDM_INDEX_SCAN_CUSTOMER_TIME, TDM_INDEX_SCAN_RECIPIENT, TDM_INDEX_SCAN_SENDER};
    for (size_t k = 0; k < 3; k++) {
        struct tandem_bytes key = text(kinds[k] == TDM_INDEX_SCAN_RECIPIENT ? "r@x" : "s@x");
        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
            check_lsns(f->index, kinds[k], 5, key, cases[c].since, cases[c].until, cases[c].lsns,
                       cases[c].count);
        }
    }
    /* Another address of the same customer matches nothing. */
    check_lsns(f->index, TDM_INDEX_SCAN_RECIPIENT, 5, text("q@x"), 0, INT64_MAX, NULL, 0);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A bounce (empty sender) is found by a sender scan with an empty key, and
 * only for its own customer. */
static void test_index_scan_next__empty_sender(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[] = {
        message(3, 1, text("<1>"), "r@x", ""),
        message(3, 2, text("<2>"), "r@x", "s@x"),
        message(4, 3, text("<3>"), "r@x", ""),
    };
    open_writer(f);
    apply_records(f->index, 1, records, 3);
    uint64_t want3[] = {1};
    uint64_t want4[] = {3};
    struct tandem_bytes empty = {NULL, 0};
    check_lsns(f->index, TDM_INDEX_SCAN_SENDER, 3, empty, 0, INT64_MAX, want3, 1);
    check_lsns(f->index, TDM_INDEX_SCAN_SENDER, 4, empty, 0, INT64_MAX, want4, 1);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A scan resumes exactly after its last LSN across many calls: 50 matches
 * take 50 calls at lsn_max 1 and 8 calls (7 * 7 + 1) at lsn_max 7; 49
 * matches at lsn_max 7 are done on the 7th call, found by peeking. */
static void test_index_scan_next__resume_many_calls(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[60];
    for (uint32_t i = 0; i < 60; i++) {
        records[i] = message(2, 7,
                             text(i < 50   ? "<same@x>"
                                  : i < 59 ? "<peek@x>"
                                           : "<z@x>"),
                             "r@x", "s@x");
    }
    open_writer(f);
    for (uint32_t first = 0; first < 60; first += 6) {
        apply_records(f->index, first + 1, &records[first], 6); /* Batch edges inside pages. */
    }
    static const size_t lsn_maxes[] = {1, 7};
    for (size_t m = 0; m < 2; m++) {
        struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<same@x>"), 0, 0);
        uint64_t lsns[7];
        uint64_t next = 1;
        size_t calls = 0;
        while (!scan.done) {
            size_t count = 0;
            assert_int_equal(tdm_index_scan_next(f->index, &scan, lsns, lsn_maxes[m], &count), 0);
            for (size_t i = 0; i < count; i++) {
                assert_int_equal(lsns[i], next++);
            }
            calls++;
        }
        assert_int_equal(next, 51);
        assert_int_equal(calls, m == 0 ? 50 : 8);
    }
    /* LSNs 51..59 are "<peek@x>": 9 matches fill lsn_max 9 exactly. */
    struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<peek@x>"), 0, 0);
    uint64_t lsns[9];
    size_t count = 0;
    assert_int_equal(tdm_index_scan_next(f->index, &scan, lsns, 9, &count), 0);
    assert_int_equal(count, 9);
    assert_true(scan.done);

    /* Customer time order across pages, resumed by key. */
    scan = scan_of(TDM_INDEX_SCAN_CUSTOMER_TIME, 2, bytes_of(NULL, 0), 0, INT64_MAX);
    uint64_t all[60];
    assert_int_equal(scan_all(f->index, &scan, 7, all, 60), 60);
    for (uint64_t i = 0; i < 60; i++) {
        assert_int_equal(all[i], i + 1);
    }
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* Records applied between two calls of a scan are seen by the later call:
 * no transaction or snapshot is held between calls. */
static void test_index_scan_next__resume_sees_later_records(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[5];
    for (uint32_t i = 0; i < 5; i++) {
        records[i] = message(1, 100 - i, text("<m@x>"), "r@x", "s@x");
    }
    open_writer(f);
    apply_records(f->index, 1, records, 3);
    struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<m@x>"), 0, 0);
    uint64_t lsns[2];
    size_t count = 0;
    assert_int_equal(tdm_index_scan_next(f->index, &scan, lsns, 2, &count), 0);
    assert_int_equal(count, 2);
    assert_false(scan.done);
    apply_records(f->index, 4, &records[3], 2);
    uint64_t rest[8];
    assert_int_equal(scan_all(f->index, &scan, 2, rest, 8), 3);
    assert_int_equal(rest[0], 3);
    assert_int_equal(rest[1], 4);
    assert_int_equal(rest[2], 5);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A scan with an empty key or an empty window is done at once. */
static void test_index_scan_next__empty_is_done(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    uint64_t lsns[1];
    size_t count = 1;
    struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_USERNAME, 0, bytes_of(NULL, 0), 0, 0);
    assert_int_equal(tdm_index_scan_next(f->index, &scan, lsns, 1, &count), 0);
    assert_int_equal(count, 0);
    assert_true(scan.done);
    scan = scan_of(TDM_INDEX_SCAN_CUSTOMER_TIME, 1, bytes_of(NULL, 0), 10, 10);
    count = 1;
    assert_int_equal(tdm_index_scan_next(f->index, &scan, lsns, 1, &count), 0);
    assert_int_equal(count, 0);
    assert_true(scan.done);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* tdm_index_scan_init() starts a scan over every time, not started, not done. */
static void test_index_scan_init__defaults(void **state)
{
    (void)state;
    struct tdm_index_scan scan;
    memset(&scan, 0xaa, sizeof(scan));
    tdm_index_scan_init(&scan, TDM_INDEX_SCAN_SENDER);
    assert_int_equal(scan.kind, TDM_INDEX_SCAN_SENDER);
    assert_int_equal(scan.since_ns, 0);
    assert_true(scan.until_ns == INT64_MAX);
    assert_false(scan.started);
    assert_false(scan.done);
    assert_null(scan.key);
    assert_int_equal(scan.key_size, 0);
}

struct reader_state {
    struct tdm_index *index;
    atomic_bool stop; /* Set by the writer when it has finished. */
    int failures;     /* Checks that failed in the reader thread. */
    size_t scans;     /* Complete scans run. */
};

static void *reader_main(void *data)
{
    struct reader_state *s = data;
    size_t last_count = 0;
    static uint64_t all[2000];
    while (!atomic_load(&s->stop) || s->scans == 0) {
        struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<c@x>"), 0, 0);
        size_t total = 0;
        while (!scan.done && total + 3 <= 2000) {
            size_t count = 0;
            if (tdm_index_scan_next(s->index, &scan, all + total, 3, &count) != 0) {
                s->failures++;
                return NULL;
            }
            total += count;
        }
        for (size_t i = 1; i < total; i++) {
            s->failures += all[i] <= all[i - 1];
        }
        s->failures += total < last_count;
        last_count = total;
        s->scans++;
    }
    return NULL;
}

/* Scans on another thread run while the writer applies: every scan sees
 * strictly increasing LSNs and never fewer than the scan before it. */
static void test_index_scan_next__concurrent_with_apply(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    struct reader_state s = {.index = f->index, .failures = 0, .scans = 0};
    atomic_init(&s.stop, false);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, reader_main, &s), 0);
    struct tandem_record records[5];
    for (uint64_t b = 0; b < 200; b++) {
        for (uint32_t i = 0; i < 5; i++) {
            records[i] = message(i, (int64_t)b, text(i == 4 ? "<d@x>" : "<c@x>"), "r@x", "s@x");
        }
        apply_records(f->index, b * 5 + 1, records, 5);
    }
    atomic_store(&s.stop, true);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(s.failures, 0);
    assert_true(s.scans > 0);
    struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<c@x>"), 0, 0);
    assert_int_equal(scan_all(f->index, &scan, TEST_LSN_MAX_BIG, scan_results, 1000), 800);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* ------------------------------------------------------------------------
 * Customers.
 * ------------------------------------------------------------------------ */

/* A newer customer record replaces the older one: its old username and
 * email find nothing, the new ones find it, and tdm_index_customer() gives
 * the new LSN, also when both records are in one batch. */
static void test_index_customer__replacement(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[] = {
        customer(7, "alice", "alice@x"), customer(8, "alice", "shared@x"),
        customer(7, "bob", "bob@x"),     customer(9, "carol", "carol@x"),
        customer(9, "carol", ""),        customer(9, "dave", "dave@x"),
    };
    open_writer(f);
    apply_records(f->index, 1, records, 2);
    uint64_t alice[] = {1, 2};
    check_lsns(f->index, TDM_INDEX_SCAN_USERNAME, 0, text("alice"), 0, 0, alice, 2);
    apply_records(f->index, 3, &records[2], 1);
    uint64_t alice_now[] = {2};
    uint64_t bob[] = {3};
    check_lsns(f->index, TDM_INDEX_SCAN_USERNAME, 0, text("alice"), 0, 0, alice_now, 1);
    check_lsns(f->index, TDM_INDEX_SCAN_USERNAME, 0, text("bob"), 0, 0, bob, 1);
    check_lsns(f->index, TDM_INDEX_SCAN_EMAIL, 0, text("alice@x"), 0, 0, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_EMAIL, 0, text("bob@x"), 0, 0, bob, 1);
    uint64_t lsn = 0;
    assert_int_equal(tdm_index_customer(f->index, 7, &lsn), 0);
    assert_int_equal(lsn, 3);

    /* Three records of customer 9 in one batch: same username, then an
     * empty email, then new values. */
    apply_records(f->index, 4, &records[3], 3);
    uint64_t dave[] = {6};
    check_lsns(f->index, TDM_INDEX_SCAN_USERNAME, 0, text("carol"), 0, 0, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_EMAIL, 0, text("carol@x"), 0, 0, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_USERNAME, 0, text("dave"), 0, 0, dave, 1);
    check_lsns(f->index, TDM_INDEX_SCAN_EMAIL, 0, text("dave@x"), 0, 0, dave, 1);
    assert_int_equal(tdm_index_customer(f->index, 9, &lsn), 0);
    assert_int_equal(lsn, 6);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A customer without a record is TANDEM_ENOTFOUND and the output is left
 * alone. */
static void test_index_customer__missing(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    struct tandem_record r = customer(1, "u", "e");
    apply_records(f->index, 1, &r, 1);
    uint64_t lsn = 42;
    assert_int_equal(tdm_index_customer(f->index, 2, &lsn), TANDEM_ENOTFOUND);
    assert_int_equal(lsn, 42);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A malformed customer value is TANDEM_ECORRUPT for tdm_index_customer(),
 * for username scans that reach it, and for an apply that replaces it. */
static void test_index_customer__corrupt_value(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    struct tandem_record r = customer(1, "u", "e");
    apply_records(f->index, 1, &r, 1);
    close_writer(f);
    uint8_t key[4];
    tdm_store_be32(key, 1);
    raw_put(f->dir, "customer", key, sizeof(key), "bad", 3);
    open_writer(f);
    uint64_t lsn = 0;
    assert_int_equal(tdm_index_customer(f->index, 1, &lsn), TANDEM_ECORRUPT);
    struct tdm_index_scan scan = scan_of(TDM_INDEX_SCAN_USERNAME, 0, text("u"), 0, 0);
    uint64_t lsns[4];
    size_t count = 99;
    assert_int_equal(tdm_index_scan_next(f->index, &scan, lsns, 4, &count), TANDEM_ECORRUPT);
    assert_int_equal(count, 99);
    assert_false(scan.started);
    struct tdm_index_batch b = batch_of(2, &r, 1);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_apply(f->index, &b, 1, &diag), TANDEM_ECORRUPT);
    assert_non_null(strstr(diag.message, "customer"));
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* ------------------------------------------------------------------------
 * Batches, watermark, apply errors, clear.
 * ------------------------------------------------------------------------ */

/* Every LSN of every batch, on both sides of each batch boundary, locates
 * its own batch with all its fields; LSNs outside the log are not found. */
static void test_index_locate__across_batch_boundaries(void **state)
{
    struct fixture *f = *state;
    struct tdm_prng prng;
    tdm_prng_init(&prng, MODEL_SEED + 2);
    model_generate(MODEL_SEED + 2, 400);
    open_writer(f);
    model_apply(f->index, &prng, 0, model_count);
    assert_true(model_batch_count > 20);
    for (size_t b = 0; b < model_batch_count; b++) {
        const struct tdm_index_location *want = &model_batches[b];
        for (uint64_t i = 0; i < want->record_count; i++) {
            struct tdm_index_location got;
            memset(&got, 0, sizeof(got));
            assert_int_equal(tdm_index_locate(f->index, want->lsn_first + i, &got), 0);
            assert_int_equal(got.lsn_first, want->lsn_first);
            assert_int_equal(got.record_count, want->record_count);
            assert_int_equal(got.segment_lsn, want->segment_lsn);
            assert_int_equal(got.offset, want->offset);
            assert_int_equal(got.size, want->size);
        }
    }
    struct tdm_index_location got;
    assert_int_equal(tdm_index_locate(f->index, 0, &got), TANDEM_ENOTFOUND);
    assert_int_equal(tdm_index_locate(f->index, model_count + 1, &got), TANDEM_ENOTFOUND);
    assert_int_equal(tdm_index_locate(f->index, UINT64_MAX, &got), TANDEM_ENOTFOUND);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* An LSN in a gap between two batches (a damaged range of the log) is not
 * found, while both neighbours are. */
static void test_index_locate__gap(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[5];
    for (uint32_t i = 0; i < 5; i++) {
        records[i] = message(1, 1, text("<g@x>"), "r@x", "s@x");
    }
    open_writer(f);
    struct tdm_index_batch batches[2] = {batch_of(1, records, 5), batch_of(10, records, 3)};
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_apply(f->index, batches, 2, &diag), 0);
    struct tdm_index_location got;
    assert_int_equal(tdm_index_locate(f->index, 5, &got), 0);
    assert_int_equal(got.lsn_first, 1);
    for (uint64_t lsn = 6; lsn < 10; lsn++) {
        assert_int_equal(tdm_index_locate(f->index, lsn, &got), TANDEM_ENOTFOUND);
    }
    assert_int_equal(tdm_index_locate(f->index, 12, &got), 0);
    assert_int_equal(got.lsn_first, 10);
    assert_int_equal(tdm_index_locate(f->index, 13, &got), TANDEM_ENOTFOUND);
    uint64_t lsn = 0;
    assert_int_equal(tdm_index_watermark(f->index, &lsn, NULL), 0);
    assert_int_equal(lsn, 12);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A malformed batch entry is TANDEM_ECORRUPT for tdm_index_locate(). */
static void test_index_locate__corrupt_value(void **state)
{
    struct fixture *f = *state;
    struct tandem_record r = message(1, 1, text("<g@x>"), "r@x", "s@x");
    open_writer(f);
    apply_records(f->index, 1, &r, 1);
    close_writer(f);
    uint8_t key[8];
    tdm_store_be64(key, 1);
    raw_put(f->dir, "batch", key, sizeof(key), "short", 5);
    open_writer(f);
    struct tdm_index_location got;
    assert_int_equal(tdm_index_locate(f->index, 1, &got), TANDEM_ECORRUPT);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* After each apply the watermark is the last LSN of the last batch and its
 * chain hash; an apply of no batches changes nothing. */
static void test_index_watermark__after_apply(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[6];
    for (uint32_t i = 0; i < 6; i++) {
        records[i] = message(1, i, text("<w@x>"), "r@x", "s@x");
    }
    open_writer(f);
    struct tdm_index_batch batches[2] = {batch_of(1, records, 2), batch_of(3, &records[2], 3)};
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_apply(f->index, batches, 2, &diag), 0);
    uint64_t lsn = 0;
    struct tdm_chain_hash chain;
    assert_int_equal(tdm_index_watermark(f->index, &lsn, &chain), 0);
    assert_int_equal(lsn, 5);
    assert_memory_equal(chain.bytes, batches[1].chain_hash.bytes, TDM_CHAIN_HASH_SIZE);
    assert_int_equal(tdm_index_apply(f->index, batches, 0, &diag), 0);
    assert_int_equal(tdm_index_watermark(f->index, &lsn, &chain), 0);
    assert_int_equal(lsn, 5);
    apply_records(f->index, 6, &records[5], 1);
    assert_int_equal(tdm_index_watermark(f->index, &lsn, &chain), 0);
    assert_int_equal(lsn, 6);
    struct tdm_chain_hash want = chain_for(6);
    assert_memory_equal(chain.bytes, want.bytes, TDM_CHAIN_HASH_SIZE);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A record of unknown type fails the whole apply with TANDEM_EINVALID:
 * nothing of the call is indexed and the watermark stays where it was. */
static void test_index_apply__unknown_record_type(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[2] = {
        message(1, 1, text("<u@x>"), "r@x", "s@x"),
        message(1, 2, text("<u@x>"), "r@x", "s@x"),
    };
    records[1].type = (enum tandem_record_type)7;
    open_writer(f);
    struct tdm_index_batch batches[2] = {batch_of(1, records, 1), batch_of(2, &records[1], 1)};
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_apply(f->index, batches, 2, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "lsn 2"));
    uint64_t lsn = 9;
    assert_int_equal(tdm_index_watermark(f->index, &lsn, NULL), 0);
    assert_int_equal(lsn, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<u@x>"), 0, 0, NULL, 0);
    struct tdm_index_location got;
    assert_int_equal(tdm_index_locate(f->index, 1, &got), TANDEM_ENOTFOUND);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* When the sorted entries of a group cannot be allocated, the apply fails
 * with -ENOMEM and a message naming the cause, nothing of the call is
 * indexed, and the same batches apply once memory is back. */
static void test_index_apply__out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[3] = {
        customer(1, "ann", "ann@x"),
        message(1, 1, text("<m@x>"), "r@x", "s@x"),
        message(1, 2, text("<n@x>"), "r@x", "s@x"),
    };
    open_writer(f);
    struct tdm_index_batch b = batch_of(1, records, 3);
    struct tdm_diag diag = {{0}};
    heap_fail = true;
    int rv = tdm_index_apply(f->index, &b, 1, &diag);
    heap_fail = false;
    assert_int_equal(rv, -ENOMEM);
    assert_non_null(strstr(diag.message, "out of memory"));
    uint64_t lsn = 9;
    assert_int_equal(tdm_index_watermark(f->index, &lsn, NULL), 0);
    assert_int_equal(lsn, 0);
    uint64_t customer_lsn = 0;
    assert_int_equal(tdm_index_customer(f->index, 1, &customer_lsn), TANDEM_ENOTFOUND);
    assert_int_equal(tdm_index_apply(f->index, &b, 1, &diag), 0);
    assert_int_equal(tdm_index_customer(f->index, 1, &customer_lsn), 0);
    assert_int_equal(customer_lsn, 1);
    uint64_t want[] = {3};
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<n@x>"), 0, 0, want, 1);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A comparison whose stop flag is set ends within
 * TDM_INDEX_COMPARE_STOP_ENTRIES entries with TANDEM_ECANCELED, naming where;
 * without the flag the same two indexes compare equal. */
#define STOP_RECORDS (TDM_INDEX_COMPARE_STOP_ENTRIES + 100)
static void test_index_compare__stop(void **state)
{
    struct fixture *f = *state;
    static struct tandem_record records[STOP_RECORDS];
    for (uint32_t i = 0; i < STOP_RECORDS; i++) {
        records[i] = message(1 + i % 5, i, text("<c@x>"), "r@x", "s@x");
    }
    open_writer(f);
    struct tdm_index *reference = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open_at(f->dir, "reference", false, &reference, &diag), 0);
    apply_records(f->index, 1, records, STOP_RECORDS);
    apply_records(reference, 1, records, STOP_RECORDS);
    bool at = false;
    bool equal = false;
    char difference[128] = "";
    atomic_bool stop;
    atomic_init(&stop, false);
    assert_int_equal(tdm_index_compare_at(f->index, reference, STOP_RECORDS, &stop, &at, &equal,
                                          difference, sizeof(difference), &diag),
                     0);
    assert_true(at);
    assert_true(equal);
    atomic_store(&stop, true);
    equal = false;
    assert_int_equal(tdm_index_compare_at(f->index, reference, STOP_RECORDS, &stop, &at, &equal,
                                          difference, sizeof(difference), &diag),
                     TANDEM_ECANCELED);
    assert_non_null(strstr(diag.message, "index comparison stopped in database"));
    assert_false(equal);
    tdm_index_close(reference);
    assert_int_equal(tdm_index_remove_at(f->dir, "reference", &diag), 0);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* The stored key of a Message-ID is the Message-ID itself up to 16 bytes,
 * and beyond that its 16-byte canonical XXH3-128 (docs/FORMAT.md "Index"): a
 * rebuild must write the same bytes. */
static void test_index_apply__message_id_key_format(void **state)
{
    struct fixture *f = *state;
    struct tandem_bytes plain = text("<abcdefghijklmn>");
    assert_int_equal(plain.size, 16);
    assert_int_equal(pool_message_id[1].size, 17);
    struct tandem_record records[] = {
        message(1, 1, plain, "r@x", "s@x"),              /* 16 bytes: as is. */
        message(1, 1, pool_message_id[1], "r@x", "s@x"), /* 17 bytes: hashed. */
    };
    open_writer(f);
    apply_records(f->index, 1, records, 2);
    close_writer(f);
    static uint8_t keys[4][511];
    size_t key_sizes[4] = {0};
    assert_int_equal(raw_keys(f->dir, "message_id", keys, key_sizes, 4), 2);
    XXH128_canonical_t hash;
    XXH128_canonicalFromHash(&hash, XXH3_128bits(pool_message_id[1].data, 17));
    /* Both keys are 16 bytes; LMDB sorts them by their bytes. */
    assert_int_equal(key_sizes[0], 16);
    assert_int_equal(key_sizes[1], 16);
    int first_is_plain = memcmp(keys[0], plain.data, 16) == 0;
    assert_memory_equal(keys[first_is_plain ? 0 : 1], plain.data, 16);
    assert_memory_equal(keys[first_is_plain ? 1 : 0], hash.digest, 16);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* A batch that does not follow the watermark is a programmer error: the
 * assertion fires before any transaction begins. */
static void test_index_apply__not_after_watermark(void **state)
{
    struct fixture *f = *state;
    struct tandem_record r = message(1, 1, text("<a@x>"), "r@x", "s@x");
    open_writer(f);
    apply_records(f->index, 1, &r, 1);
    struct tdm_index_batch b = batch_of(1, &r, 1);
    struct tdm_diag diag = {{0}};
    expect_assert_failure(tdm_index_apply(f->index, &b, 1, &diag));
    apply_records(f->index, 2, &r, 1); /* The writer is still usable. */
    close_handles(f);                  /* cmocka counts blocks still held at the end of a test. */
}

/* Batches out of LSN order are a programmer error too. */
static void test_index_apply__batches_out_of_order(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[2] = {
        message(1, 1, text("<a@x>"), "r@x", "s@x"),
        message(1, 1, text("<a@x>"), "r@x", "s@x"),
    };
    open_writer(f);
    struct tdm_index_batch batches[2] = {batch_of(5, records, 2), batch_of(6, records, 1)};
    struct tdm_diag diag = {{0}};
    expect_assert_failure(tdm_index_apply(f->index, batches, 2, &diag));
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* Clear empties every database and resets the watermark; the index then
 * takes batches from LSN 1 again. */
static void test_index_clear__empties_everything(void **state)
{
    struct fixture *f = *state;
    struct tandem_record records[] = {
        message(1, 10, text("<c@x>"), "r@x", "s@x"),
        customer(1, "alice", "alice@x"),
    };
    open_writer(f);
    apply_records(f->index, 1, records, 2);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_clear(f->index, &diag), 0);
    uint64_t lsn = 9;
    struct tdm_chain_hash chain;
    assert_int_equal(tdm_index_watermark(f->index, &lsn, &chain), 0);
    assert_int_equal(lsn, 0);
    struct tdm_index_location got;
    assert_int_equal(tdm_index_locate(f->index, 1, &got), TANDEM_ENOTFOUND);
    assert_int_equal(tdm_index_customer(f->index, 1, &lsn), TANDEM_ENOTFOUND);
    check_lsns(f->index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<c@x>"), 0, 0, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_CUSTOMER_TIME, 1, bytes_of(NULL, 0), 0, INT64_MAX, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_RECIPIENT, 1, text("r@x"), 0, INT64_MAX, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_SENDER, 1, text("s@x"), 0, INT64_MAX, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_USERNAME, 0, text("alice"), 0, 0, NULL, 0);
    check_lsns(f->index, TDM_INDEX_SCAN_EMAIL, 0, text("alice@x"), 0, 0, NULL, 0);

    apply_records(f->index, 1, records, 2);
    uint64_t want[] = {2};
    check_lsns(f->index, TDM_INDEX_SCAN_USERNAME, 0, text("alice"), 0, 0, want, 1);
    close_writer(f);
    open_writer(f);   /* The version survived the clear. */
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* tdm_index_sync() flushes a writer's environment. */
static void test_index_sync__writer(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    struct tandem_record r = message(1, 1, text("<s@x>"), "r@x", "s@x");
    apply_records(f->index, 1, &r, 1);
    assert_int_equal(tdm_index_sync(f->index), 0);
    close_handles(f); /* cmocka counts blocks still held at the end of a test. */
}

/* ------------------------------------------------------------------------
 * A full disk under the writer.
 * ------------------------------------------------------------------------ */

#define FULL_RECORDS    3000
#define FULL_ID_SIZE    400
#define FULL_FS_OPTIONS "size=4m"

static char full_ids[FULL_RECORDS][FULL_ID_SIZE + 1];
static struct tandem_record full_records[FULL_RECORDS];

/* Fill the file system of path: write a file until the disk is full. */
static void fill_fs(const char *path)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    static char chunk[4096];
    memset(chunk, 'f', sizeof(chunk));
    while (fwrite(chunk, 1, sizeof(chunk), fp) == sizeof(chunk) && fflush(fp) == 0) {
    }
    (void)fclose(fp); /* Fails as well: the disk is full. */
}

/* A linked index (tandem init --index-dir) whose node-dir file cannot be
 * written (its file system read-only): the writer's open fails with one
 * message naming the file and the cause, and opens nothing. */
static void test_index_open__linked_owner_unwritable(void **state)
{
    struct fixture *f = *state;
    char mnt[TEST_PATH_SIZE];
    char node[TEST_PATH_SIZE];
    char link_path[TEST_PATH_SIZE];
    assert_true(snprintf(mnt, sizeof(mnt), "%s/mnt", f->dir) < (int)sizeof(mnt));
    assert_true(snprintf(node, sizeof(node), "%s/node", f->dir) < (int)sizeof(node));
    assert_true(snprintf(link_path, sizeof(link_path), "%s/index", node) < (int)sizeof(link_path));
    assert_int_equal(mkdir(mnt, 0700), 0);
    assert_int_equal(mkdir(node, 0700), 0);
    if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        skip(); /* Needs root and tmpfs. */
    }
    assert_int_equal(symlink(mnt, link_path), 0);
    assert_int_equal(mount("tmpfs", mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    int rv = tdm_index_open(node, false, &index, &diag);
    assert_int_equal(rv, -EROFS);
    assert_null(index);
    assert_non_null(strstr(diag.message, "node-dir"));
    assert_non_null(strstr(diag.message, "Read-only file system"));
    assert_int_equal(umount2(mnt, MNT_DETACH), 0);
}

/* With the node directory on a full file system (a 4 MiB tmpfs), a write
 * that needs new pages fails with -ENOSPC and a message that names the
 * cause; reads still see every committed record, and once there is room
 * again the same handle takes the same write. Needs root (mount); skipped
 * otherwise. */
static void test_index_apply__full_disk(void **state)
{
    struct fixture *f = *state;
    char mnt[TEST_PATH_SIZE];
    assert_true(snprintf(mnt, sizeof(mnt), "%s/mnt", f->dir) < (int)sizeof(mnt));
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, FULL_FS_OPTIONS) != 0) {
        skip(); /* Needs root and tmpfs. */
    }
    for (size_t i = 0; i < FULL_RECORDS; i++) {
        int n = snprintf(full_ids[i], sizeof(full_ids[i]), "<%06zu@", i);
        memset(full_ids[i] + n, 'a' + (char)(i % 26), FULL_ID_SIZE - (size_t)n);
        full_ids[i][FULL_ID_SIZE] = '\0';
        full_records[i] =
            message(1 + (uint32_t)(i % 7), (int64_t)i, text(full_ids[i]), "r@x", "s@x");
    }
    struct tdm_index *index = NULL;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_index_open(mnt, false, &index, &diag), 0);
    struct tandem_record first = message(1, 1, text("<first@x>"), "r@x", "s@x");
    apply_records(index, 1, &first, 1);
    char filler[TEST_PATH_SIZE];
    assert_true(snprintf(filler, sizeof(filler), "%s/filler", mnt) < (int)sizeof(filler));
    fill_fs(filler);

    struct tdm_index_batch b = batch_of(2, full_records, FULL_RECORDS);
    assert_int_equal(tdm_index_apply(index, &b, 1, &diag), -ENOSPC);
    assert_non_null(strstr(diag.message, "No space left on device"));
    uint64_t lsn = 0;
    assert_int_equal(tdm_index_watermark(index, &lsn, NULL), 0);
    assert_int_equal(lsn, 1);
    uint64_t want[] = {1};
    check_lsns(index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text("<first@x>"), 0, 0, want, 1);

    assert_int_equal(unlink(filler), 0);
    apply_records(index, 2, full_records, FULL_RECORDS);
    assert_int_equal(tdm_index_watermark(index, &lsn, NULL), 0);
    assert_int_equal(lsn, 1 + FULL_RECORDS);
    uint64_t want_last[] = {1 + FULL_RECORDS};
    check_lsns(index, TDM_INDEX_SCAN_MESSAGE_ID, 0, text(full_ids[FULL_RECORDS - 1]), 0, 0,
               want_last, 1);
    tdm_index_close(index);
    assert_int_equal(umount(mnt), 0);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--index-child") == 0) {
        return child_check(argv[2], strtoull(argv[3], NULL, 10));
    }
    if (argc == 4 && strcmp(argv[1], "--index-child-small-as") == 0) {
        return child_small_address_space(argv[2]);
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    if (n <= 0 || (size_t)n >= sizeof(self_path) - 1) {
        (void)fprintf(stderr, "test_index: readlink /proc/self/exe failed\n");
        return 1;
    }
    self_path[n] = '\0';

    const struct CMUnitTest tests[] = {
        TEST(test_index_open__creates_directory),
        TEST(test_index_open__node_dir_missing),
        TEST(test_index_open__read_only_missing),
        TEST(test_index_open__read_only_without_databases),
        TEST(test_index_open__version_too_new),
        TEST(test_index_open__version_1_is_emptied_by_a_writer),
        TEST(test_index_open__version_malformed),
        TEST(test_index_open__out_of_memory),
        TEST(test_index_open__reopen_persists),
        TEST(test_index_open__read_only_beside_writer),
        TEST(test_index_open__read_only_in_another_process),
        TEST(test_index_open__small_address_space),
        TEST(test_index_scan_next__matches_model),
        TEST(test_index_scan_next__matches_model_more_seeds),
        TEST(test_index_scan_next__long_message_ids_sharing_prefix),
        TEST(test_index_scan_next__time_window_boundaries),
        TEST(test_index_scan_next__empty_sender),
        TEST(test_index_scan_next__resume_many_calls),
        TEST(test_index_scan_next__resume_sees_later_records),
        TEST(test_index_scan_next__empty_is_done),
        TEST(test_index_scan_init__defaults),
        TEST(test_index_scan_next__concurrent_with_apply),
        TEST(test_index_customer__replacement),
        TEST(test_index_customer__missing),
        TEST(test_index_customer__corrupt_value),
        TEST(test_index_locate__across_batch_boundaries),
        TEST(test_index_locate__gap),
        TEST(test_index_locate__corrupt_value),
        TEST(test_index_watermark__after_apply),
        TEST(test_index_apply__unknown_record_type),
        TEST(test_index_apply__out_of_memory),
        TEST(test_index_compare__stop),
        TEST(test_index_open__linked_owner_unwritable),
        TEST(test_index_apply__message_id_key_format),
        TEST(test_index_apply__not_after_watermark),
        TEST(test_index_apply__batches_out_of_order),
        TEST(test_index_apply__full_disk),
        TEST(test_index_clear__empties_everything),
        TEST(test_index_sync__writer),
    };
    return cmocka_run_group_tests_name("index", tests, group_setup, group_teardown);
}
