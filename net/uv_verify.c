/* net/uv_verify.c: reads of chain hashes and DIR/verified for the libuv
 * adapter (net/uv_verify.h; docs/PROTOCOL.md §9; docs/FORMAT.md "Verified
 * state"). The happy path, failure modes and close are in the header. */
#include "net/uv_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/path.h"
#include "engine/base/trace.h"
#include "engine/batch.h"
#include "engine/log.h"

/* One read action on the threadpool. */
struct verify_read {
    uv_work_t work;
    struct tdm_uv_verify *v;
    uint64_t read_id;
    uint64_t lsn;
    int status;
    struct tdm_diag diag;
    uint64_t lsn_first;
    uint64_t lsn_last;
    struct tdm_frame_chain_hash chain_hash;
};

/* One write of DIR/verified on the threadpool: the text and what it says. */
struct verify_store {
    uv_work_t work;
    struct tdm_uv_verify *v;
    struct tdm_uv_verify_entry entries[TDM_REPLICA_NODES_MAX];
    char text[64 + TDM_REPLICA_NODES_MAX * (TDM_PROTO_NAME_SIZE_MAX + 48)];
    size_t size;
    int status;
    struct tdm_diag diag;
};

static int64_t verify_wall_ns(void)
{
    struct timespec ts;
    int rv = clock_gettime(CLOCK_REALTIME, &ts);
    tdm_assert(rv == 0);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int verify_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

int tdm_uv_verify_load(const char *dir, const struct tdm_frame_cluster *cluster,
                       struct tdm_uv_verify_entry entries[TDM_REPLICA_NODES_MAX],
                       struct tdm_diag *diag)
{
    memset(entries, 0, sizeof(entries[0]) * TDM_REPLICA_NODES_MAX);
    char path[TDM_PATH_SIZE];
    int rv = verify_path(path, sizeof(path), dir, TDM_UV_VERIFY_NAME);
    if (rv != 0) {
        tdm_diag_printf(diag, "path too long");
        return rv;
    }
    FILE *file = fopen(path, "re");
    if (file == NULL) {
        return 0; /* Nothing verified yet. */
    }
    char line[256];
    if (fgets(line, sizeof(line), file) == NULL || strcmp(line, TDM_UV_VERIFY_MAGIC "\n") != 0) {
        tdm_diag_printf(diag, "%s: bad first line", path);
        rv = TANDEM_ECORRUPT;
    }
    for (uint32_t number = 2; rv == 0 && fgets(line, sizeof(line), file) != NULL; number++) {
        char id[TDM_PROTO_NAME_SIZE_MAX + 1];
        unsigned long long lsn;
        long long at_ns;
        uint32_t index;
        if (sscanf(line, "%63s %llu %lld", id, &lsn, &at_ns) != 3 || at_ns < 0) {
            tdm_diag_printf(diag, "%s: line %" PRIu32 " does not parse", path, number);
            rv = TANDEM_ECORRUPT;
        } else if (tdm_frame_cluster_index(cluster, id, &index)) {
            entries[index] = (struct tdm_uv_verify_entry){.lsn = lsn, .at_ns = at_ns};
        }
        /* A node no longer in the cluster: its claim no longer matters. */
    }
    fclose(file);
    if (rv != 0) {
        memset(entries, 0, sizeof(entries[0]) * TDM_REPLICA_NODES_MAX);
    }
    return rv;
}

void tdm_uv_verify_init(struct tdm_uv_verify *v, uv_loop_t *loop, struct tdm_log *log,
                        const char *dir, const struct tdm_frame_cluster *cluster,
                        const struct tdm_uv_verify_entry entries[TDM_REPLICA_NODES_MAX],
                        tdm_uv_verify_cb cb, void *data)
{
    tdm_assert(cb != NULL);
    tdm_assert(cluster->node_count <= TDM_REPLICA_NODES_MAX);
    memset(v, 0, sizeof(*v));
    v->loop = loop;
    v->log = log;
    snprintf(v->dir, sizeof(v->dir), "%s", dir);
    v->cluster = *cluster;
    v->cb = cb;
    v->data = data;
    memcpy(v->claims, entries, sizeof(v->claims));
    memcpy(v->stored, entries, sizeof(v->stored));
}

/* ---- reads -------------------------------------------------------------------- */

/* Threadpool: the batch holding r->lsn, its header and body checksums verified. */
static void verify_read_work(uv_work_t *work)
{
    struct verify_read *r = work->data;
    struct tdm_log_batch batch;
    uint32_t count = 0;
    r->status = tdm_log_locate(r->v->log, r->lsn, r->lsn, &batch, 1, &count, &r->diag);
    if (r->status != 0) {
        return;
    }
    tdm_assert(count == 1);
    uint8_t *bytes = tdm_malloc(batch.location.size);
    if (bytes == NULL) {
        r->status = -ENOMEM;
        return;
    }
    struct tdm_batch_header header;
    r->status = tdm_log_read_located(r->v->log, &batch, 1, bytes, &header, &r->diag);
    tdm_free(bytes);
    if (r->status == 0) {
        r->lsn_first = header.lsn_first;
        r->lsn_last = tdm_batch_lsn_last(&header);
        tdm_static_assert(sizeof(r->chain_hash.bytes) == sizeof(header.chain_hash.bytes));
        memcpy(r->chain_hash.bytes, header.chain_hash.bytes, sizeof(r->chain_hash.bytes));
    }
}

static void verify_read_done(uv_work_t *work, int status)
{
    struct verify_read *r = work->data;
    struct tdm_uv_verify *v = r->v;
    tdm_assert(v->reads_running > 0);
    v->reads_running--;
    if (status != 0 && r->status == 0) {
        r->status = status;
    }
    if (r->status != 0 && !v->closing) {
        tdm_tracef("node %s: verify: read of the chain hash at lsn %" PRIu64 ": %s",
                   v->cluster.node_ids[v->cluster.self_index], r->lsn,
                   r->diag.message[0] != '\0' ? r->diag.message : tandem_strerror(r->status));
    }
    struct tdm_event event = {.type = TDM_EVENT_CHAIN_READ};
    event.chain_read.read_id = r->read_id;
    event.chain_read.status = r->status;
    if (r->status == 0) {
        event.chain_read.lsn_first = r->lsn_first;
        event.chain_read.lsn_last = r->lsn_last;
        event.chain_read.chain_hash = r->chain_hash;
    }
    bool closing = v->closing;
    void *data = v->data;
    tdm_uv_verify_cb cb = v->cb;
    tdm_free(r);
    cb(data, closing ? NULL : &event); /* May free v (the node) when closing. */
}

static void verify_read_start(struct tdm_uv_verify *v, const struct tdm_action_read *read)
{
    struct verify_read *r = tdm_calloc(1, sizeof(*r));
    tdm_assert(r != NULL); /* Small and bounded; out of memory here is fatal. */
    r->v = v;
    r->read_id = read->read_id;
    r->lsn = read->lsn;
    r->work.data = r;
    int rv = uv_queue_work(v->loop, &r->work, verify_read_work, verify_read_done);
    tdm_assert(rv == 0);
    v->reads_running++;
}

/* ---- DIR/verified ----------------------------------------------------------------- */

static void verify_store_work(uv_work_t *work)
{
    struct verify_store *s = work->data;
    s->status = tdm_file_replace(s->v->dir, TDM_UV_VERIFY_NAME, s->text, s->size, 0600, &s->diag);
}

static void verify_store_maybe(struct tdm_uv_verify *v);

static void verify_store_done(uv_work_t *work, int status)
{
    struct verify_store *s = work->data;
    struct tdm_uv_verify *v = s->v;
    tdm_assert(v->store_running);
    v->store_running = false;
    if (status != 0 && s->status == 0) {
        s->status = status;
    }
    if (s->status != 0 && !v->closing) {
        tdm_tracef("node %s: verify: %s", v->cluster.node_ids[v->cluster.self_index],
                   s->diag.message);
    }
    /* Even after a failure: the next change writes again, no busy retry. */
    memcpy(v->stored, s->entries, sizeof(v->stored));
    tdm_free(s);
    if (v->closing) {
        v->cb(v->data, NULL);
        return;
    }
    verify_store_maybe(v);
}

/* The table differs from the file: an LSN, or a time by TDM_UV_VERIFY_STORE_MS. */
static bool verify_dirty(const struct tdm_uv_verify *v)
{
    for (uint32_t i = 0; i < v->cluster.node_count; i++) {
        const struct tdm_uv_verify_entry *claim = &v->claims[i];
        const struct tdm_uv_verify_entry *stored = &v->stored[i];
        if (claim->lsn != stored->lsn ||
            claim->at_ns - stored->at_ns >= (int64_t)TDM_UV_VERIFY_STORE_MS * 1000000) {
            return true;
        }
    }
    return false;
}

static void verify_store_maybe(struct tdm_uv_verify *v)
{
    if (v->closing || v->store_running || !verify_dirty(v)) {
        return;
    }
    struct verify_store *s = tdm_calloc(1, sizeof(*s));
    tdm_assert(s != NULL);
    s->v = v;
    memcpy(s->entries, v->claims, sizeof(s->entries));
    int n = snprintf(s->text, sizeof(s->text), "%s\n", TDM_UV_VERIFY_MAGIC);
    tdm_assert(n > 0);
    size_t size = (size_t)n;
    for (uint32_t i = 0; i < v->cluster.node_count; i++) {
        const struct tdm_uv_verify_entry *e = &s->entries[i];
        if (e->lsn == 0 && e->at_ns == 0) {
            continue;
        }
        n = snprintf(s->text + size, sizeof(s->text) - size, "%s %" PRIu64 " %" PRId64 "\n",
                     v->cluster.node_ids[i], e->lsn, e->at_ns);
        tdm_assert(n > 0);
        size += (size_t)n;
        tdm_assert(size < sizeof(s->text));
    }
    s->size = size;
    s->work.data = s;
    int rv = uv_queue_work(v->loop, &s->work, verify_store_work, verify_store_done);
    tdm_assert(rv == 0);
    v->store_running = true;
}

/* ---- actions -------------------------------------------------------------------- */

void tdm_uv_verify_apply(struct tdm_uv_verify *v, const struct tdm_actions *actions)
{
    tdm_assert(actions->read_count <= TDM_ACTIONS_READS_MAX);
    tdm_assert(actions->verified_count <= TDM_ACTIONS_VERIFIED_MAX);
    if (v->closing) {
        return;
    }
    for (uint32_t i = 0; i < actions->read_count; i++) {
        verify_read_start(v, &actions->reads[i]);
    }
    if (actions->verified_count == 0) {
        return;
    }
    int64_t now = verify_wall_ns();
    for (uint32_t i = 0; i < actions->verified_count; i++) {
        const struct tdm_action_verified *claim = &actions->verified[i];
        tdm_assert(claim->node_index < v->cluster.node_count);
        struct tdm_uv_verify_entry *entry = &v->claims[claim->node_index];
        entry->lsn = claim->lsn;
        if (claim->fresh) {
            entry->at_ns = now;
        }
    }
    verify_store_maybe(v);
}

struct tdm_uv_verify_entry tdm_uv_verify_claim(const struct tdm_uv_verify *v, uint32_t index)
{
    tdm_assert(index < v->cluster.node_count);
    return v->claims[index];
}

void tdm_uv_verify_close(struct tdm_uv_verify *v)
{
    tdm_assert(!v->closing);
    v->closing = true;
}

bool tdm_uv_verify_busy(const struct tdm_uv_verify *v)
{
    return v->reads_running > 0 || v->store_running;
}
