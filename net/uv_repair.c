/* net/uv_repair.c: repair of damaged sealed segments from a verified copy
 * (net/uv_repair.h for the happy path, the failure modes and close;
 * net/replica_repair.c for the choice of copy; engine/repair.c for the checks
 * and the swap; docs/PROTOCOL.md §9.4 for FETCH and FETCHED). */
#include "net/uv_repair.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/trace.h"
#include "engine/log.h"
#include "engine/node.h"
#include "engine/repair.h"
#include "net/proto.h"
#include "net/replica_repair.h"
#include "net/uv_node.h"
#include "net/uv_scrub.h"

#define REPAIR_FRAME_BYTES_MAX ((16u << 20) - 4096u) /* Batch bytes in one FETCHED. */
tdm_static_assert(TDM_UV_REPAIR_FETCH_BATCHES_MAX <= TDM_PROTO_APPEND_BATCHES_MAX);

#define REPAIR_LOST_TABLE 64 /* Lost ranges remembered (the view lists the first few). */

/* A lost range and when it was judged so (tried again after
 * TDM_UV_REPAIR_LOST_RETRY_MS: a verified copy may have come back). */
struct repair_lost {
    struct tdm_uv_repair_lost range;
    uint64_t at_ms;
};

enum repair_state {
    REPAIR_IDLE = 1, /* Nothing under way. */
    REPAIR_PLANNING, /* tdm_repair_plan on the threadpool. */
    REPAIR_CHOOSING, /* Waiting for a verified copy to ask. */
    REPAIR_FETCHING, /* A FETCH is in flight. */
    REPAIR_APPLYING, /* tdm_repair_apply on the threadpool. */
};

/* A threadpool job: plan, apply (ours) or serve (a peer's FETCH). */
struct repair_job {
    uv_work_t work;
    struct tdm_uv_repair *repair;
    enum repair_state kind; /* PLANNING, APPLYING, or IDLE for serving. */
    uint64_t segment_lsn;
    struct tdm_repair_plan plan;
    uint8_t *bytes; /* APPLYING: the fetched batches; serving: read here. Owned. */
    size_t size;
    /* Serving. */
    uint32_t node_index;
    struct tdm_proto_fetch fetch;
    struct tdm_log_batch batches[TDM_PROTO_APPEND_BATCHES_MAX];
    struct tdm_batch_header headers[TDM_PROTO_APPEND_BATCHES_MAX];
    uint32_t batch_count;
    /* Result. */
    int status;
    bool framed; /* PLANNING: a damaged header or footer was restored first. */
    struct tdm_diag diag;
};

struct tdm_uv_repair {
    uv_loop_t *loop;
    struct tandem *t;
    struct tdm_log *log;
    struct tdm_uv_node *node;
    struct tdm_uv_scrub *scrub;
    const struct tdm_frame_cluster *cluster; /* Node ids, for trace lines. */
    uv_timer_t timer;
    bool stopping;
    bool timer_closed;
    uint32_t jobs_running;
    uint32_t serving;
    uint64_t now_ms;
    /* The range under way. */
    enum repair_state state;
    struct tdm_repair_plan plan;
    uint32_t tried; /* Bit i: node index i answered badly for this range. */
    bool waiting_traced;
    struct tdm_repair_request request;
    uint64_t fetch_deadline_ms;
    uint64_t fetch_id_last;
    uint8_t *buffer; /* plan.size bytes; filled of them fetched so far. */
    size_t filled;
    /* Counts. */
    uint64_t repaired;
    uint64_t fetches_served;
    uint32_t lost_count; /* Entries of lost[]. */
    struct repair_lost lost[REPAIR_LOST_TABLE];
};

/* The id of node index (for trace lines). */
static const char *repair_node_id(const struct tdm_uv_repair *r, uint32_t index)
{
    return index < r->cluster->node_count ? r->cluster->node_ids[index] : "?";
}

static struct repair_lost *repair_lost_find(struct tdm_uv_repair *r, uint64_t segment_lsn)
{
    for (uint32_t i = 0; i < r->lost_count; i++) {
        if (r->lost[i].range.segment_lsn == segment_lsn) {
            return &r->lost[i];
        }
    }
    return NULL;
}

/* True while segment_lsn holds a lost range not yet due for another try. */
static bool repair_is_lost(struct tdm_uv_repair *r, uint64_t segment_lsn)
{
    const struct repair_lost *l = repair_lost_find(r, segment_lsn);
    return l != NULL && r->now_ms - l->at_ms < TDM_UV_REPAIR_LOST_RETRY_MS;
}

static void repair_lost(struct tdm_uv_repair *r, uint64_t segment_lsn, uint64_t lsn_first,
                        uint64_t lsn_last, const char *reason)
{
    tdm_tracef("repair: LOST: log/%020" PRIu64 ".seg lsn %" PRIu64 "..%" PRIu64
               ": %s; nothing was changed",
               segment_lsn, lsn_first, lsn_last, reason);
    struct repair_lost *l = repair_lost_find(r, segment_lsn);
    if (l == NULL && r->lost_count < REPAIR_LOST_TABLE) {
        l = &r->lost[r->lost_count++];
    }
    if (l == NULL) {
        return; /* Beyond the table: planned again at each tick, like new damage. */
    }
    l->range.segment_lsn = segment_lsn;
    l->range.lsn_first = lsn_first;
    l->range.lsn_last = lsn_last;
    snprintf(l->range.reason, sizeof(l->range.reason), "%s", reason);
    l->at_ms = r->now_ms;
}

/* The segment verifies (repaired, here or before): nothing of it is lost. */
static void repair_found_whole(struct tdm_uv_repair *r, uint64_t segment_lsn)
{
    struct repair_lost *l = repair_lost_find(r, segment_lsn);
    if (l != NULL) {
        *l = r->lost[--r->lost_count];
    }
    tdm_uv_scrub_forget(r->scrub, segment_lsn);
}

static void repair_idle(struct tdm_uv_repair *r)
{
    tdm_free(r->buffer);
    r->buffer = NULL;
    r->filled = 0;
    r->tried = 0;
    r->waiting_traced = false;
    r->state = REPAIR_IDLE;
}

static void repair_maybe_free(struct tdm_uv_repair *r)
{
    if (r->stopping && r->timer_closed && r->jobs_running == 0) {
        tdm_free(r->buffer);
        tdm_free(r);
    }
}

/* ---- threadpool jobs ----------------------------------------------------------- */

static void job_serve_work(struct repair_job *job)
{
    struct tdm_log *log = job->repair->log;
    uint64_t lsn = job->fetch.lsn_first;
    size_t total = 0;
    int rv = 0;
    while (lsn <= job->fetch.lsn_last && job->batch_count < TDM_UV_REPAIR_FETCH_BATCHES_MAX) {
        uint32_t count = 0;
        rv = tdm_log_locate(log, lsn, job->fetch.lsn_last, job->batches + job->batch_count,
                            TDM_UV_REPAIR_FETCH_BATCHES_MAX - job->batch_count, &count, &job->diag);
        if (rv != 0) {
            break;
        }
        uint32_t kept = 0;
        while (kept < count && (job->batch_count + kept == 0 ||
                                total + job->batches[job->batch_count + kept].location.size <=
                                    REPAIR_FRAME_BYTES_MAX)) {
            total += job->batches[job->batch_count + kept].location.size;
            kept++;
        }
        job->batch_count += kept;
        lsn = job->batches[job->batch_count - 1].lsn_last + 1;
        if (kept < count) {
            break; /* The frame is full: the rest in the next FETCH. */
        }
    }
    if (rv == 0 && (job->batch_count == 0 || job->batches[0].lsn_first != job->fetch.lsn_first ||
                    job->batches[job->batch_count - 1].lsn_last > job->fetch.lsn_last)) {
        tdm_diag_printf(&job->diag, "no run of batches here holds exactly lsn %" PRIu64 "..",
                        job->fetch.lsn_first);
        rv = TANDEM_ENOTFOUND;
    }
    if (rv == 0) {
        job->bytes = tdm_malloc(total);
        rv = job->bytes == NULL ? -ENOMEM : 0;
    }
    if (rv == 0) {
        job->size = total;
        rv = tdm_log_read_located(log, job->batches, job->batch_count, job->bytes, job->headers,
                                  &job->diag);
    }
    job->status = rv;
}

/* Plan; damage in the segment's header or footer, which no copy's batches
 * restore, is rebuilt from the segment itself first (tdm_repair_frame), then
 * planned again for any damage left in its batches. */
static void job_plan_work(struct repair_job *job)
{
    struct tdm_log *log = job->repair->log;
    job->framed = false;
    job->status = tdm_repair_plan(log, job->segment_lsn, &job->plan, &job->diag);
    if (job->status != TANDEM_ECORRUPT) {
        return;
    }
    struct tdm_diag framing = {{0}};
    int rv = tdm_repair_frame(log, job->segment_lsn, &framing);
    if (rv == TANDEM_ENOTFOUND) {
        return; /* Both verify: the plan's verdict stands. */
    }
    if (rv != 0) {
        job->status = rv;
        job->diag = framing;
        return;
    }
    job->framed = true;
    job->diag = (struct tdm_diag){{0}};
    job->status = tdm_repair_plan(log, job->segment_lsn, &job->plan, &job->diag);
}

static void job_work(uv_work_t *work)
{
    struct repair_job *job = work->data;
    switch (job->kind) {
    case REPAIR_PLANNING:
        job_plan_work(job);
        return;
    case REPAIR_APPLYING:
        job->status =
            tdm_repair_apply(job->repair->log, &job->plan, job->bytes, job->size, &job->diag);
        return;
    case REPAIR_IDLE:
        job_serve_work(job);
        return;
    case REPAIR_CHOOSING:
    case REPAIR_FETCHING:
        break;
    }
    tdm_unreachable();
}

static void job_after(uv_work_t *work, int status);

static int job_queue(struct tdm_uv_repair *r, struct repair_job *job)
{
    job->repair = r;
    job->work.data = job;
    int rv = uv_queue_work(r->loop, &job->work, job_work, job_after);
    if (rv == 0) {
        r->jobs_running++;
    }
    return rv;
}

/* ---- our range: plan, choose, fetch, apply --------------------------------------- */

static void repair_send_fetch(struct tdm_uv_repair *r, uint32_t index, uint64_t lsn_first)
{
    struct tdm_replica_status status;
    tdm_uv_node_status(r->node, &status);
    r->request = (struct tdm_repair_request){
        .fetch_id = ++r->fetch_id_last,
        .node_index = index,
        .lsn_first = lsn_first,
        .lsn_last = r->plan.lsn_last,
    };
    struct tdm_proto_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = TDM_PROTO_FETCH;
    msg.epoch = status.epoch;
    msg.fetch.fetch_id = r->request.fetch_id;
    msg.fetch.lsn_first = r->request.lsn_first;
    msg.fetch.lsn_last = r->request.lsn_last;
    struct tdm_diag diag = {{0}};
    int rv = tdm_uv_node_send(r->node, index, &msg, &diag);
    if (rv != 0) {
        tdm_tracef("repair: FETCH lsn %" PRIu64 "..%" PRIu64 ": %s", lsn_first, r->plan.lsn_last,
                   diag.message);
    }
    /* Sent or not: the deadline asks again. */
    r->state = REPAIR_FETCHING;
    r->fetch_deadline_ms = r->now_ms + TDM_UV_REPAIR_FETCH_MS;
}

static void repair_choose(struct tdm_uv_repair *r)
{
    tdm_assert(r->state == REPAIR_CHOOSING);
    struct tdm_replica_status status;
    tdm_uv_node_status(r->node, &status);
    uint32_t index = 0;
    switch (tdm_repair_choose(&status, r->plan.lsn_last, r->tried, &index)) {
    case TDM_REPAIR_SOURCE:
        r->filled = 0;
        if (r->buffer == NULL) {
            r->buffer = tdm_malloc(r->plan.size);
            if (r->buffer == NULL) {
                tdm_tracef("repair: segment %" PRIu64 ": out of memory for %" PRIu64 " bytes",
                           r->plan.segment_lsn, r->plan.size);
                repair_idle(r);
                return;
            }
        }
        tdm_tracef("repair: log/%020" PRIu64 ".seg offset %" PRIu64 ": fetching lsn %" PRIu64
                   "..%" PRIu64 " from %s, whose copy is verified",
                   r->plan.segment_lsn, r->plan.offset, r->plan.lsn_first, r->plan.lsn_last,
                   repair_node_id(r, index));
        repair_send_fetch(r, index, r->plan.lsn_first);
        return;
    case TDM_REPAIR_WAIT:
        if (!r->waiting_traced) {
            r->waiting_traced = true;
            tdm_tracef("repair: log/%020" PRIu64 ".seg lsn %" PRIu64 "..%" PRIu64
                       ": waiting for a node whose copy is verified that far to be reachable",
                       r->plan.segment_lsn, r->plan.lsn_first, r->plan.lsn_last);
        }
        return;
    case TDM_REPAIR_LOST:
        repair_lost(r, r->plan.segment_lsn, r->plan.lsn_first, r->plan.lsn_last,
                    "no verified copy holds it intact");
        repair_idle(r);
        return;
    }
    tdm_unreachable();
}

/* The copy asked for this range failed us: never ask it again for the range. */
static void repair_copy_bad(struct tdm_uv_repair *r, const char *why)
{
    tdm_tracef("repair: lsn %" PRIu64 "..%" PRIu64 ": the copy of %s is not taken: %s",
               r->plan.lsn_first, r->plan.lsn_last, repair_node_id(r, r->request.node_index), why);
    r->tried |= 1u << r->request.node_index;
    r->filled = 0;
    r->state = REPAIR_CHOOSING;
    repair_choose(r);
}

static void repair_planned(struct tdm_uv_repair *r, struct repair_job *job)
{
    if (job->framed) {
        r->repaired++;
        tdm_tracef("repair: log/%020" PRIu64 ".seg: REPAIRED its header or footer from its own "
                   "bytes",
                   job->segment_lsn);
    }
    if (job->status == TANDEM_ENOTFOUND) {
        /* It verifies (repaired already, or the pass read it mid-swap). */
        repair_found_whole(r, job->segment_lsn);
        repair_idle(r);
        return;
    }
    if (job->status == TANDEM_ECORRUPT) {
        repair_lost(r, job->segment_lsn, 0, 0, job->diag.message);
        repair_idle(r);
        return;
    }
    if (job->status != 0) {
        tdm_tracef("repair: plan segment %" PRIu64 ": %s; tried again later", job->segment_lsn,
                   job->diag.message);
        repair_idle(r);
        return;
    }
    r->plan = job->plan;
    r->state = REPAIR_CHOOSING;
    repair_choose(r);
}

static void repair_applied(struct tdm_uv_repair *r, struct repair_job *job)
{
    if (job->status == 0) {
        r->repaired++;
        repair_found_whole(r, r->plan.segment_lsn);
        tdm_tracef("repair: log/%020" PRIu64 ".seg lsn %" PRIu64 "..%" PRIu64
                   ": REPAIRED from %s's verified copy",
                   r->plan.segment_lsn, r->plan.lsn_first, r->plan.lsn_last,
                   repair_node_id(r, r->request.node_index));
        repair_idle(r);
        return;
    }
    if (job->status == TANDEM_ECORRUPT) {
        r->state = REPAIR_FETCHING;
        repair_copy_bad(r, job->diag.message);
        return;
    }
    tdm_tracef("repair: segment %" PRIu64 ": %s; planned again later", r->plan.segment_lsn,
               job->diag.message);
    repair_idle(r);
}

static void repair_fetched(struct tdm_uv_repair *r, uint32_t index,
                           const struct tdm_proto_fetched *fetched)
{
    struct tdm_repair_reply reply = {
        .fetch_id = fetched->fetch_id,
        .node_index = index,
        .status = fetched->status,
        .lsn_first = fetched->lsn_first,
        .lsn_last = fetched->lsn_last,
    };
    if (r->state != REPAIR_FETCHING || !tdm_repair_reply_matches(&r->request, &reply)) {
        return; /* Late, or not ours. */
    }
    if (fetched->status == TANDEM_EBUSY) {
        r->fetch_deadline_ms = r->now_ms + TDM_UV_REPAIR_TICK_MS; /* Asked again soon. */
        return;
    }
    if (fetched->status != 0) {
        char why[96];
        snprintf(why, sizeof(why), "it answered %s", tandem_strerror(fetched->status));
        repair_copy_bad(r, why);
        return;
    }
    for (uint32_t i = 0; i < fetched->batch_count; i++) {
        const struct tdm_proto_slice *b = &fetched->batches[i];
        if (b->size > r->plan.size - r->filled) {
            repair_copy_bad(r, "its batches overrun the damaged span");
            return;
        }
        memcpy(r->buffer + r->filled, b->data, b->size);
        r->filled += b->size;
    }
    if (fetched->lsn_last < r->plan.lsn_last) {
        repair_send_fetch(r, index, fetched->lsn_last + 1);
        return;
    }
    struct repair_job *job = tdm_calloc(1, sizeof(*job));
    if (job == NULL) {
        repair_idle(r);
        return;
    }
    job->kind = REPAIR_APPLYING;
    job->plan = r->plan;
    job->bytes = r->buffer; /* The job owns it now. */
    job->size = r->filled;
    r->buffer = NULL;
    r->filled = 0;
    if (job_queue(r, job) != 0) {
        tdm_free(job->bytes);
        tdm_free(job);
        repair_idle(r);
        return;
    }
    r->state = REPAIR_APPLYING;
}

/* ---- serving a peer's FETCH ---------------------------------------------------- */

static void repair_answer(struct tdm_uv_repair *r, uint32_t index,
                          const struct tdm_proto_fetch *fetch, int status, struct repair_job *job)
{
    struct tdm_replica_status replica;
    tdm_uv_node_status(r->node, &replica);
    struct tdm_proto_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = TDM_PROTO_FETCHED;
    msg.epoch = replica.epoch;
    msg.fetched.fetch_id = fetch->fetch_id;
    msg.fetched.lsn_first = fetch->lsn_first;
    msg.fetched.lsn_last = fetch->lsn_last;
    msg.fetched.status = status;
    if (status == 0) {
        size_t offset = 0;
        for (uint32_t i = 0; i < job->batch_count; i++) {
            uint32_t size = job->batches[i].location.size;
            msg.fetched.batches[i].data = job->bytes + offset;
            msg.fetched.batches[i].size = size;
            offset += size;
        }
        msg.fetched.batch_count = job->batch_count;
        msg.fetched.lsn_last = job->batches[job->batch_count - 1].lsn_last;
        r->fetches_served++;
    }
    struct tdm_diag diag = {{0}};
    if (tdm_uv_node_send(r->node, index, &msg, &diag) != 0) {
        tdm_tracef("repair: FETCHED lsn %" PRIu64 "..%" PRIu64 ": %s", fetch->lsn_first,
                   fetch->lsn_last, diag.message);
    }
}

static void repair_serve(struct tdm_uv_repair *r, uint32_t index,
                         const struct tdm_proto_fetch *fetch)
{
    if (r->serving >= TDM_UV_REPAIR_SERVING_MAX) {
        repair_answer(r, index, fetch, TANDEM_EBUSY, NULL);
        return;
    }
    struct repair_job *job = tdm_calloc(1, sizeof(*job));
    if (job == NULL) {
        repair_answer(r, index, fetch, -ENOMEM, NULL);
        return;
    }
    job->kind = REPAIR_IDLE;
    job->node_index = index;
    job->fetch = *fetch;
    if (job_queue(r, job) != 0) {
        tdm_free(job);
        repair_answer(r, index, fetch, TANDEM_EBUSY, NULL);
        return;
    }
    r->serving++;
}

static void job_after(uv_work_t *work, int status)
{
    struct repair_job *job = work->data;
    struct tdm_uv_repair *r = job->repair;
    r->jobs_running--;
    if (status != 0) {
        job->status = TANDEM_ECANCELED;
    }
    if (job->kind == REPAIR_IDLE) {
        r->serving--;
        if (!r->stopping) {
            if (job->status != 0) {
                tdm_tracef("repair: a peer's FETCH lsn %" PRIu64 "..%" PRIu64 " is refused: %s",
                           job->fetch.lsn_first, job->fetch.lsn_last, job->diag.message);
            }
            repair_answer(r, job->node_index, &job->fetch, job->status, job);
        }
    } else if (!r->stopping && job->kind == REPAIR_PLANNING) {
        repair_planned(r, job);
    } else if (!r->stopping) {
        repair_applied(r, job);
    }
    tdm_free(job->bytes);
    tdm_free(job);
    repair_maybe_free(r);
}

/* ---- the loop ------------------------------------------------------------------ */

static void repair_tick(uv_timer_t *timer)
{
    struct tdm_uv_repair *r = timer->data;
    r->now_ms = uv_now(r->loop);
    if (r->stopping) {
        return;
    }
    if (r->state == REPAIR_CHOOSING) {
        repair_choose(r);
        return;
    }
    if (r->state == REPAIR_FETCHING && r->now_ms >= r->fetch_deadline_ms) {
        r->state = REPAIR_CHOOSING; /* Unanswered: not a bad copy; ask again. */
        repair_choose(r);
        return;
    }
    if (r->state != REPAIR_IDLE) {
        return;
    }
    static __thread struct tdm_uv_scrub_view view; /* Large; one per loop thread. */
    tdm_uv_scrub_view(r->scrub, &view);
    uint32_t listed = view.damaged_count < TDM_UV_SCRUB_DAMAGED_MAX ? view.damaged_count
                                                                    : TDM_UV_SCRUB_DAMAGED_MAX;
    for (uint32_t i = 0; i < listed; i++) {
        uint64_t segment_lsn = view.damaged[i].segment_lsn;
        if (repair_is_lost(r, segment_lsn)) {
            continue;
        }
        struct repair_job *job = tdm_calloc(1, sizeof(*job));
        if (job == NULL) {
            return;
        }
        job->kind = REPAIR_PLANNING;
        job->segment_lsn = segment_lsn;
        if (job_queue(r, job) != 0) {
            tdm_free(job);
            return;
        }
        r->state = REPAIR_PLANNING;
        return;
    }
}

int tdm_uv_repair_start(struct uv_loop_s *loop, struct tandem *t, struct tdm_uv_node *node,
                        struct tdm_uv_scrub *scrub, const struct tdm_frame_cluster *cluster,
                        struct tdm_uv_repair **out, struct tdm_diag *diag)
{
    tdm_assert(loop != NULL && t != NULL && node != NULL && out != NULL);
    struct tdm_uv_repair *r = tdm_calloc(1, sizeof(*r));
    if (r == NULL) {
        tdm_diag_printf(diag, "repair: out of memory");
        return -ENOMEM;
    }
    r->loop = loop;
    r->t = t;
    r->log = tdm_node_log(t);
    r->node = node;
    r->scrub = scrub;
    r->cluster = cluster;
    r->state = REPAIR_IDLE;
    int rv = uv_timer_init(loop, &r->timer);
    tdm_assert(rv == 0);
    r->timer.data = r;
    rv = uv_timer_start(&r->timer, repair_tick, TDM_UV_REPAIR_TICK_MS, TDM_UV_REPAIR_TICK_MS);
    tdm_assert(rv == 0);
    *out = r;
    return 0;
}

void tdm_uv_repair_receive(struct tdm_uv_repair *r, uint32_t index, const struct tdm_proto_msg *msg)
{
    if (r == NULL || r->stopping) {
        return;
    }
    r->now_ms = uv_now(r->loop);
    if (msg->type == TDM_PROTO_FETCH) {
        repair_serve(r, index, &msg->fetch);
    } else if (msg->type == TDM_PROTO_FETCHED) {
        repair_fetched(r, index, &msg->fetched);
    }
}

static void repair_timer_closed(uv_handle_t *handle)
{
    struct tdm_uv_repair *r = handle->data;
    r->timer_closed = true;
    repair_maybe_free(r);
}

void tdm_uv_repair_stop(struct tdm_uv_repair *r)
{
    if (r == NULL) {
        return;
    }
    tdm_assert(!r->stopping);
    r->stopping = true;
    uv_close((uv_handle_t *)&r->timer, repair_timer_closed);
}

void tdm_uv_repair_view(const struct tdm_uv_repair *r, struct tdm_uv_repair_view *view)
{
    memset(view, 0, sizeof(*view));
    if (r == NULL) {
        return;
    }
    view->enabled = true;
    view->repaired = r->repaired;
    view->fetches_served = r->fetches_served;
    view->active = r->state != REPAIR_IDLE && r->state != REPAIR_PLANNING;
    if (view->active) {
        view->active_segment = r->plan.segment_lsn;
        view->active_lsn_first = r->plan.lsn_first;
        view->active_lsn_last = r->plan.lsn_last;
        view->waiting = r->state == REPAIR_CHOOSING;
    }
    view->lost_count = r->lost_count;
    for (uint32_t i = 0; i < r->lost_count && i < TDM_UV_REPAIR_LOST_MAX; i++) {
        view->lost[i] = r->lost[i].range;
    }
}
