/* net/uv_scrub.c: the background scrubber of a running node (net/uv_scrub.h
 * for the happy path, the failure modes and close; engine/scrub.c for what a
 * pass checks and how it reads the medium). */
#include "net/uv_scrub.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/trace.h"
#include "engine/node.h"
#include "engine/scrub.h"

struct tdm_uv_scrub {
    struct tdm_scrub scrub; /* Must not move while a pass runs: this struct is heap. */
    struct tandem *t;
    char dir[TDM_PATH_SIZE];
    uint64_t pause_ms;
    uv_thread_t thread;
    uv_mutex_t mutex; /* Guards everything below. */
    uv_cond_t wake;   /* Signalled by stop, and by the thread as it ends. */
    bool stopping;
    bool ended; /* The thread is about to return. */
    uint32_t damaged_count;
    struct tandem_damage damaged[TDM_UV_SCRUB_DAMAGED_MAX];
    char error[TDM_UV_SCRUB_ERROR_SIZE];
};

/* Damage is reported: traced here, counted in the view (the node is
 * degraded); net/uv_repair.c reads the view and repairs it from a verified copy. */
static void scrub_damage_found(struct tdm_uv_scrub *s, const struct tandem_damage *damage)
{
    tdm_tracef("scrub %s: DAMAGED: log/%020" PRIu64 ".seg offset %" PRIu64 ": lsn %" PRIu64
               "..%" PRIu64 " (sealed segment): to be repaired from a verified copy",
               s->dir, damage->segment_lsn, damage->offset, damage->lsn_first, damage->lsn_last);
}

static uint32_t scrub_quarantine_count(struct tandem *t)
{
    static __thread struct tandem_status status; /* Large; one per thread. */
    return tandem_status(t, &status) == 0 ? status.quarantine_count : UINT32_MAX;
}

/* One pass; what it found replaces what the last one found. */
static void scrub_pass(struct tdm_uv_scrub *s)
{
    static __thread struct tdm_scrub_report report; /* Large; one per thread. */
    struct tdm_diag diag = {{0}};
    uint32_t quarantine = scrub_quarantine_count(s->t);
    int rv = tdm_scrub_pass(&s->scrub, &report, &diag);
    if (rv == TANDEM_ECANCELED) {
        return;
    }
    uv_mutex_lock(&s->mutex);
    if (rv != 0) {
        snprintf(s->error, sizeof(s->error), "%s", diag.message);
        uv_mutex_unlock(&s->mutex);
        tdm_tracef("scrub %s: pass failed: %s", s->dir, diag.message);
        return;
    }
    s->error[0] = '\0';
    if (scrub_quarantine_count(s->t) != quarantine) {
        uv_mutex_unlock(&s->mutex);
        tdm_tracef("scrub %s: the log was cut during the pass: its findings wait for the next",
                   s->dir);
        return;
    }
    s->damaged_count = 0;
    uint32_t listed = report.damaged_count < TANDEM_STATUS_DAMAGED_MAX ? report.damaged_count
                                                                       : TANDEM_STATUS_DAMAGED_MAX;
    for (uint32_t i = 0; i < listed; i++) {
        const struct tandem_damage *damage = &report.damaged[i];
        if (!damage->sealed) {
            continue; /* The writer's open segment: its own reads judge it. */
        }
        if (s->damaged_count < TDM_UV_SCRUB_DAMAGED_MAX) {
            s->damaged[s->damaged_count] = *damage;
        }
        s->damaged_count++;
        scrub_damage_found(s, damage);
    }
    uv_mutex_unlock(&s->mutex);
}

static void scrub_thread(void *arg)
{
    struct tdm_uv_scrub *s = arg;
    uv_mutex_lock(&s->mutex);
    while (!s->stopping) {
        uv_mutex_unlock(&s->mutex);
        scrub_pass(s);
        uv_mutex_lock(&s->mutex);
        if (!s->stopping) {
            (void)uv_cond_timedwait(&s->wake, &s->mutex, s->pause_ms * 1000000u);
        }
    }
    s->ended = true;
    uv_cond_broadcast(&s->wake);
    uv_mutex_unlock(&s->mutex);
}

int tdm_uv_scrub_start(struct tandem *t, const char *dir, uint64_t rate, uint64_t pause_ms,
                       struct tdm_uv_scrub **out, struct tdm_diag *diag)
{
    tdm_assert(t != NULL);
    tdm_assert(out != NULL);
    struct tdm_uv_scrub *s = tdm_calloc(1, sizeof(*s));
    if (s == NULL) {
        tdm_diag_printf(diag, "scrub: out of memory");
        return -ENOMEM;
    }
    s->t = t;
    s->pause_ms = pause_ms != 0 ? pause_ms : TDM_UV_SCRUB_PAUSE_MS;
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    struct tdm_scrub_options options;
    tdm_scrub_options_init(&options);
    if (rate != 0) {
        options.rate_bytes_per_second = rate;
    }
    int rv = tdm_scrub_open(&s->scrub, tdm_node_fs(t), dir, &options, diag);
    if (rv != 0) {
        tdm_free(s);
        return rv;
    }
    rv = uv_mutex_init(&s->mutex);
    tdm_assert(rv == 0);
    rv = uv_cond_init(&s->wake);
    tdm_assert(rv == 0);
    rv = uv_thread_create(&s->thread, scrub_thread, s);
    if (rv != 0) {
        tdm_diag_printf(diag, "scrub: start a thread: %s", uv_strerror(rv));
        uv_cond_destroy(&s->wake);
        uv_mutex_destroy(&s->mutex);
        tdm_scrub_close(&s->scrub);
        tdm_free(s);
        return rv;
    }
    tdm_tracef("scrub %s: scrubbing sealed segments at %" PRIu64 " bytes/s", dir,
               options.rate_bytes_per_second);
    *out = s;
    return 0;
}

void tdm_uv_scrub_stop(struct tdm_uv_scrub *scrub)
{
    if (scrub == NULL) {
        return;
    }
    uv_mutex_lock(&scrub->mutex);
    scrub->stopping = true;
    while (!scrub->ended) {
        uv_cond_broadcast(&scrub->wake);
        /* Again and again: a pass that starts now clears an earlier cancel. */
        tdm_scrub_cancel(&scrub->scrub);
        (void)uv_cond_timedwait(&scrub->wake, &scrub->mutex, 20u * 1000000u);
    }
    uv_mutex_unlock(&scrub->mutex);
    int rv = uv_thread_join(&scrub->thread);
    tdm_assert(rv == 0);
    uv_cond_destroy(&scrub->wake);
    uv_mutex_destroy(&scrub->mutex);
    tdm_scrub_close(&scrub->scrub);
    tdm_free(scrub);
}

void tdm_uv_scrub_forget(struct tdm_uv_scrub *scrub, uint64_t segment_lsn)
{
    if (scrub == NULL) {
        return;
    }
    uv_mutex_lock(&scrub->mutex);
    uint32_t listed = scrub->damaged_count < TDM_UV_SCRUB_DAMAGED_MAX ? scrub->damaged_count
                                                                      : TDM_UV_SCRUB_DAMAGED_MAX;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < listed; i++) {
        if (scrub->damaged[i].segment_lsn != segment_lsn) {
            scrub->damaged[kept++] = scrub->damaged[i];
        }
    }
    scrub->damaged_count -= listed - kept;
    uv_mutex_unlock(&scrub->mutex);
}

void tdm_uv_scrub_view(struct tdm_uv_scrub *scrub, struct tdm_uv_scrub_view *view)
{
    memset(view, 0, sizeof(*view));
    if (scrub == NULL) {
        return;
    }
    struct tdm_scrub_progress progress;
    tdm_scrub_progress(&scrub->scrub, &progress);
    view->enabled = true;
    view->running = progress.running;
    view->bytes_done = progress.pass_bytes;
    view->segment_lsn = progress.segment_lsn;
    view->pass_started_ns = progress.pass_start_ns;
    view->last_full_pass_ns = progress.last_pass_end_ns;
    view->last_pass_bytes = progress.last_pass_bytes;
    view->passes = progress.pass_count;
    uv_mutex_lock(&scrub->mutex);
    view->damaged_count = scrub->damaged_count;
    memcpy(view->damaged, scrub->damaged, sizeof(view->damaged));
    snprintf(view->error, sizeof(view->error), "%s", scrub->error);
    uv_mutex_unlock(&scrub->mutex);
}
