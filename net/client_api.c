/* net/client_api.c: the public client API of libtandem (include/tandem.h,
 * tandem_client_*) over the transport of net/client.h.
 *
 * Happy path:
 * 1. tandem_client_open(): HOST:PORT -> tdm_client_connect_cert() with
 *    cert_dir or $TANDEM_CERT; a directory -> tdm_client_connect_local().
 * 2. tandem_client_append(): validate every record (tandem_record_validate),
 *    encode them as the engine does (engine/codec.h) into one APPEND_REQUEST
 *    (PROTOCOL.md §7.2), queue it, and wait for the APPEND_RESULT with the
 *    same request_id (api_call: any number of threads at once, see struct
 *    tandem_client).
 *    tandem_client_append_async(): the same request, but the call returns once
 *    it is queued; the client's thread (api_thread_main, started by the first
 *    such call) reads every answer from then on and runs the callbacks.
 * 3. tandem_client_status(): one STATUS, one STATUS_RESULT; its text is copied
 *    into a malloc'd string (the caller frees it with free()); likewise
 *    tandem_client_switchover() and tandem_client_failover() (SWITCHOVER,
 *    FAILOVER and their results, PROTOCOL.md §7.5).
 * 4. tandem_client_close().
 *
 * Failure modes: a refused record or an oversize request is TANDEM_EINVALID
 * before anything is sent. A code in a result frame (the node refused the
 * request) is returned with the node's message; the connection stays usable.
 * Anything that breaks the connection or the frame stream (send or receive
 * error, an answer of the wrong type or to a request no call waits for, a
 * record count that does not match) leaves the client failed: every call
 * waiting then returns that code and diag, and so does every later call,
 * because the stream can no longer be trusted to pair answers with requests.
 * An asynchronous append's callback gets the same code and diag.
 * Close: the client's thread (if started) ends every asynchronous append not
 * yet answered with TANDEM_ECANCELED, runs its callback and exits; then the
 * transport's close. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/bytes.h"
#include "engine/base/wake.h"
#include "engine/batch.h"
#include "net/client.h"
#include "net/uv.h"

#define CLIENT_CERT_ENV "TANDEM_CERT"
/* Calls in flight on one client; more wait for room. Below the node's
 * requests in flight per connection, so the node never stops reading this
 * connection: a sender blocked on a full socket (holding the transport) while
 * the node waits for us to read its answers would wait forever. */
#define API_CALLS_MAX 64u

tdm_static_assert(API_CALLS_MAX <= TDM_UV_REQUESTS_MAX);
/* Combined APPEND_REQUESTs in flight on one client. Appends queued while
 * that many wait for their answers wait too, and leave together when one is
 * answered: the busier the client, the more records a request carries (the
 * node's group commit, one level up). */
#define API_APPENDS_INFLIGHT_MAX 2u

tdm_static_assert(TANDEM_APPEND_RECORDS_MAX == TDM_PROTO_RECORDS_MAX);

/* Why a waiter was woken (struct api_waiter's wake). */
enum api_wake {
    API_WAKE_NONE = 0, /* Still waiting. */
    API_WAKE_ROLE = 1, /* The reader role is free: take it if still waiting. */
    API_WAKE_DONE = 2, /* Answered or failed; the last store anyone makes to the waiter. */
};

/* One call waiting for its answer (on the caller's stack). */
struct api_waiter {
    uint64_t request_id;
    uint16_t want;         /* The answer type expected. */
    bool done;             /* The answer is in, or the connection failed. */
    bool answered;         /* The answer is in. */
    int32_t status;        /* The answer's status. */
    uint64_t lsn_first;    /* APPEND_RESULT. */
    uint32_t record_count; /* APPEND_RESULT. */
    char *text;            /* malloc'd, NUL-terminated: message or text; NULL if none. */
    /* enum api_wake, a futex word: the caller sleeps on it without c->lock,
     * so that a woken caller does not queue on the lock its waker holds. */
    _Atomic uint32_t wake;
    struct api_waiter *next;      /* In c->waiters. */
    struct api_waiter *wake_next; /* In the reader's list of callers to wake. */
    /* An append: its encoded records, combined with other callers' appends
     * into one APPEND_REQUEST by the sender (api_combine). */
    uint8_t *entries;                /* Owned (api_append_waiter), freed when the call ends. */
    size_t entries_size;             /* Bytes. */
    uint32_t count;                  /* Records. */
    uint32_t offset;                 /* Records before ours in the combined request. */
    uint32_t batch_total;            /* Records of the combined request. */
    struct api_waiter *pending_next; /* In c->pending until combined. */
    /* An asynchronous append (tandem_client_append_async): heap-allocated;
     * the client's thread runs cb once the call has ended. */
    tandem_client_append_cb cb;
    void *cb_data;
};

/* Thread: any number of threads at once (tandem.h). Each call encodes its
 * request, queues it in the outbox and waits for its answer by request id:
 * - lock guards the outbox, the waiters, the roles and the failure; each
 *   waiter sleeps on its own futex word (wake), which says that its answer
 *   is in (or the connection failed), or that the reader role is free: only
 *   the waiter concerned is woken, and the reader wakes the answered ones
 *   after dropping the lock, so a woken caller returns without taking it;
 * - io_lock guards the transport (the TLS session and the socket);
 * - one caller at a time is the sender: it writes everything queued, in one
 *   send, until the outbox is empty (callers who queue meanwhile leave their
 *   frames to it), so N concurrent calls cost about one syscall, not N;
 * - appends waiting to be sent are combined into one APPEND_REQUEST (up to
 *   TDM_PROTO_RECORDS_MAX records and a client frame): each caller's records
 *   get consecutive LSNs inside it, in the order the calls were queued, and
 *   every caller learns the request's outcome (the node groups them anyway;
 *   this saves it, and us, a frame, a request and an answer per call);
 * - one waiting caller at a time is the reader: it takes every answer that
 *   has arrived, hands each to its waiter, and polls (holding no lock) when
 *   there is none; once its own answer is in it hands the role on. */
struct tandem_client {
    struct tdm_client client; /* Must not move: the client is heap-allocated once. */
    pthread_mutex_t lock;
    pthread_mutex_t io_lock;
    struct tdm_proto_msg *msg; /* The reader's frame scratch (large: not on the stack). */
    uint8_t *outbox;           /* Encoded frames waiting for the sender. */
    size_t outbox_size;
    size_t outbox_capacity;
    uint8_t *sending; /* The sender's: frames being written. */
    size_t sending_capacity;
    bool sender;                /* A caller is the sender. */
    bool reader;                /* A caller is the reader. */
    struct api_waiter *waiters; /* Sent or queued, not answered. */
    struct api_waiter *pending; /* Appends not yet combined into a request, oldest first. */
    struct api_waiter **pending_tail;
    struct tdm_proto_msg *send_msg; /* The sender's scratch for combined requests. */
    uint32_t appends_inflight;      /* Combined APPEND_REQUESTs sent, not answered. */
    uint64_t inflight_records;      /* Their records. */
    uint64_t pending_records;       /* Records of the appends in pending. */
    uint32_t calls;                 /* Calls between admission and their answer. */
    pthread_cond_t admit;           /* A call ended: room for one more. */
    uint64_t request_id_next;
    int failed;                 /* Sticky connection failure; 0 while usable. */
    struct tdm_diag failed_why; /* Its diag. */
    /* The client's thread, started by the first asynchronous append: from
     * then on it is the only reader (sync callers no longer take the role),
     * and it runs the callbacks of the ended asynchronous appends, in the
     * order they ended, without any lock held. */
    bool thread_started;
    bool closing; /* tandem_client_close(): the thread ends. */
    pthread_t thread;
    pthread_cond_t thread_cond;    /* The role is free, a callback is due, or closing. */
    int event_fd;                  /* Wakes the thread from poll(2); -1 until it starts. */
    struct api_waiter *async_done; /* Ended asynchronous appends, oldest first. */
    struct api_waiter **async_done_tail;
};

static void api_diag_copy(struct tandem_diag *diag, const struct tdm_diag *from)
{
    if (diag != NULL) {
        snprintf(diag->message, sizeof(diag->message), "%s", from->message);
    }
}

/* True if addr names no file and looks like an attempt at HOST:PORT. */
static bool api_addr_is_bad_host_port(const char *addr)
{
    struct stat st;
    return strchr(addr, ':') != NULL && strchr(addr, '/') == NULL && stat(addr, &st) != 0;
}

static int api_connect(struct tandem_client *c, const char *addr, const char *cert_dir,
                       struct tdm_diag *diag)
{
    if (tdm_client_address_is_tcp(addr)) {
        if (cert_dir == NULL) {
            cert_dir = getenv(CLIENT_CERT_ENV);
        }
        if (cert_dir == NULL || cert_dir[0] == '\0') {
            tdm_diag_printf(diag,
                            "%s: a HOST:PORT address needs a client certificate: give cert_dir "
                            "or set " CLIENT_CERT_ENV,
                            addr);
            return TANDEM_EINVALID;
        }
        return tdm_client_connect_cert(addr, cert_dir, 0, &c->client, diag);
    }
    if (api_addr_is_bad_host_port(addr)) {
        /* Say what is wrong with it as an address rather than as a path. */
        int rv = tdm_client_address_check(addr, diag);
        tdm_assert(rv == TANDEM_EINVALID);
        return rv;
    }
    return tdm_client_connect_local(addr, &c->client, diag);
}

int tandem_client_open(const char *addr, const char *cert_dir, struct tandem_client **out,
                       struct tandem_diag *diag)
{
    struct tdm_diag why = {{0}};
    if (addr == NULL || addr[0] == '\0' || out == NULL) {
        tdm_diag_printf((struct tdm_diag *)diag, "tandem_client_open: no address");
        return TANDEM_EINVALID;
    }
    struct tandem_client *c = tdm_calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->msg = tdm_calloc(1, sizeof(*c->msg));
    c->send_msg = tdm_calloc(1, sizeof(*c->send_msg));
    if (c->msg == NULL || c->send_msg == NULL) {
        tdm_free(c->msg);
        tdm_free(c->send_msg);
        tdm_free(c);
        return -ENOMEM;
    }
    c->pending_tail = &c->pending;
    c->async_done_tail = &c->async_done;
    c->event_fd = -1;
    int rv = api_connect(c, addr, cert_dir, &why);
    if (rv != 0) {
        tdm_assert(rv < 0);
        api_diag_copy(diag, &why);
        tdm_free(c->msg);
        tdm_free(c->send_msg);
        tdm_free(c);
        return rv;
    }
    tdm_assert(c->client.fd >= 0);
    int init = pthread_mutex_init(&c->lock, NULL);
    tdm_assert(init == 0);
    init = pthread_mutex_init(&c->io_lock, NULL);
    tdm_assert(init == 0);
    init = pthread_cond_init(&c->admit, NULL);
    tdm_assert(init == 0);
    init = pthread_cond_init(&c->thread_cond, NULL);
    tdm_assert(init == 0);
    c->request_id_next = 1;
    *out = c;
    return 0;
}

/* ---- Waking callers --------------------------------------------------------------- */

/* Tell w why it wakes, and wake it (engine/base/wake.h: once why is
 * API_WAKE_DONE, the caller may return at once and w be gone). */
static void api_wake(struct api_waiter *w, uint32_t why)
{
    tdm_wake_set(&w->wake, why);
}

/* Sleep until w is woken (with done, until it is woken with
 * API_WAKE_DONE: a ROLE it was given before its call ended does not
 * count); returns why (enum api_wake). */
static uint32_t api_sleep(struct api_waiter *w, bool done)
{
    for (;;) {
        uint32_t why = atomic_load_explicit(&w->wake, memory_order_acquire);
        if (why == API_WAKE_DONE || (why != API_WAKE_NONE && !done)) {
            return why;
        }
        tdm_wake_wait(&w->wake, why);
    }
}

/* Wake the answered callers of list (lock not held): each returns without
 * taking c->lock. self, the reader, is not asleep. */
static void api_wake_answered(struct api_waiter *list, struct api_waiter *self)
{
    while (list != NULL) {
        struct api_waiter *next = list->wake_next; /* Before list may be gone. */
        if (list == self) {
            atomic_store_explicit(&self->wake, API_WAKE_DONE, memory_order_relaxed);
        } else {
            api_wake(list, API_WAKE_DONE);
        }
        list = next;
    }
}

/* ---- Under c->lock ------------------------------------------------------------- */

/* w's call is over (lock held): it leaves the waiters and makes room for
 * another call. */
static void api_end_locked(struct tandem_client *c, struct api_waiter *w)
{
    w->done = true;
    tdm_assert(c->calls > 0);
    c->calls--;
    pthread_cond_signal(&c->admit);
}

/* Whether the calling thread is the client's own (a callback runs on it). */
static bool api_on_own_thread(const struct tandem_client *c)
{
    return c->thread_started && pthread_equal(pthread_self(), c->thread) != 0;
}

/* Wake the client's thread (lock held): from its condition variable, and
 * from poll(2) when it reads. */
static void api_thread_wake_locked(struct tandem_client *c)
{
    /* On the thread itself (an answer it dispatched) there is no one to wake:
     * it looks at async_done before it waits again. */
    if (!c->thread_started || api_on_own_thread(c)) {
        return;
    }
    pthread_cond_signal(&c->thread_cond);
    uint64_t one = 1;
    ssize_t n = write(c->event_fd, &one, sizeof(one));
    (void)n; /* Only EAGAIN (the counter is full: a wake is pending anyway). */
}

/* The asynchronous append w has ended (lock held): its callback is due, on
 * the client's thread. */
static void api_async_due_locked(struct tandem_client *c, struct api_waiter *w)
{
    w->wake_next = NULL;
    *c->async_done_tail = w;
    c->async_done_tail = &w->wake_next;
    api_thread_wake_locked(c);
}

/* The connection broke: remember why for every later call, and end every
 * wait (lock held). */
static void api_fail_locked(struct tandem_client *c, int rv, const struct tdm_diag *why)
{
    tdm_assert(rv < 0);
    if (c->failed != 0) {
        return;
    }
    c->failed = rv;
    c->failed_why = *why;
    for (struct api_waiter *w = c->waiters, *next; w != NULL; w = next) {
        next = w->next;
        api_end_locked(c, w);
        if (w->cb != NULL) {
            w->status = rv;
            w->text = strdup(why->message);
            api_async_due_locked(c, w);
        } else {
            api_wake(w, API_WAKE_DONE);
        }
    }
    c->waiters = NULL;
    c->pending = NULL;
    c->pending_tail = &c->pending;
    c->pending_records = 0;
    pthread_cond_broadcast(&c->admit); /* Waiting for room: fail at once. */
    api_thread_wake_locked(c);
}

static void api_waiter_remove(struct tandem_client *c, struct api_waiter *waiter)
{
    for (struct api_waiter **p = &c->waiters; *p != NULL; p = &(*p)->next) {
        if (*p == waiter) {
            *p = waiter->next;
            return;
        }
    }
}

/* Append size bytes to the outbox. Returns 0 or -ENOMEM. */
static int api_outbox_add(struct tandem_client *c, const uint8_t *frame, size_t size)
{
    if (c->outbox_size + size > c->outbox_capacity) {
        size_t capacity = c->outbox_capacity > 0 ? c->outbox_capacity : 4096;
        while (capacity < c->outbox_size + size) {
            capacity *= 2;
        }
        uint8_t *outbox = tdm_realloc(c->outbox, capacity);
        if (outbox == NULL) {
            return -ENOMEM;
        }
        c->outbox = outbox;
        c->outbox_capacity = capacity;
    }
    memcpy(c->outbox + c->outbox_size, frame, size);
    c->outbox_size += size;
    return 0;
}

/* Combine the pending appends, oldest first, into APPEND_REQUESTs in the
 * outbox (lock held; the callers wait for their answers, so their entries
 * stay valid). The requests in flight are kept about the same size: each
 * takes at most half of the records in flight and pending, and while one is
 * in flight, fewer than half its records wait for its answer and leave with
 * the rest then. Otherwise sizes, once uneven, stay so: the callers of a
 * one-record request make the next one-record request, a whole round for
 * one record (64 callers settled at requests of 1 and 63). Returns 0, or
 * -ENOMEM / the encoder's code with why. */
static int api_combine(struct tandem_client *c, struct tdm_diag *why)
{
    while (c->pending != NULL && c->appends_inflight < API_APPENDS_INFLIGHT_MAX) {
        if (c->appends_inflight > 0 && c->pending_records * 2 < c->inflight_records) {
            break; /* Too few to balance: they wait for the answer in flight. */
        }
        uint64_t share = (c->pending_records + c->inflight_records + 1) / 2;
        uint32_t total = 0;
        size_t bytes = 0;
        struct api_waiter *end = c->pending;
        /* request_id, record_count, then the entries (PROTOCOL.md §3.3). */
        while (end != NULL &&
               (total == 0 ||
                (total + end->count <= share && total + end->count <= TDM_PROTO_RECORDS_MAX &&
                 TDM_PROTO_FRAME_SIZE_MIN + 8 + 4 + bytes + end->entries_size <=
                     TDM_CLIENT_FRAME_SIZE_MAX))) {
            total += end->count;
            bytes += end->entries_size;
            end = end->pending_next;
        }
        uint8_t *entries = tdm_malloc(bytes);
        if (entries == NULL) {
            return -ENOMEM;
        }
        uint64_t request_id = c->request_id_next++;
        size_t at = 0;
        uint32_t offset = 0;
        for (struct api_waiter *w = c->pending; w != end; w = w->pending_next) {
            memcpy(entries + at, w->entries, w->entries_size);
            at += w->entries_size;
            w->request_id = request_id;
            w->offset = offset;
            w->batch_total = total;
            offset += w->count;
        }
        struct tdm_proto_msg *msg = c->send_msg;
        memset(msg, 0, sizeof(*msg));
        msg->type = TDM_PROTO_APPEND_REQUEST;
        msg->append_request.request_id = request_id;
        msg->append_request.record_count = total;
        msg->append_request.entries.data = entries;
        msg->append_request.entries.size = bytes;
        uint8_t *frame = NULL;
        size_t size = 0;
        int rv = tdm_client_encode(msg, &frame, &size, why);
        tdm_free(entries);
        if (rv == 0) {
            rv = api_outbox_add(c, frame, size);
            tdm_free(frame);
        }
        if (rv != 0) {
            return rv;
        }
        c->pending = end;
        if (end == NULL) {
            c->pending_tail = &c->pending;
        }
        c->appends_inflight++;
        c->inflight_records += total;
        tdm_assert(c->pending_records >= total);
        c->pending_records -= total;
    }
    return 0;
}

/* The sender's turn (lock held on entry and exit): write the outbox until
 * it stays empty. The lock is dropped around each write, so that callers
 * keep queueing behind it. */
static void api_send_queued(struct tandem_client *c)
{
    tdm_assert(c->sender);
    for (;;) {
        struct tdm_diag combine_why = {{0}};
        int combined = c->failed == 0 ? api_combine(c, &combine_why) : 0;
        if (combined != 0) {
            if (combine_why.message[0] == '\0') {
                tdm_diag_printf(&combine_why, "request to %s: %s", c->client.label,
                                tandem_strerror(combined));
            }
            api_fail_locked(c, combined, &combine_why);
        }
        if (c->outbox_size == 0 || c->failed != 0) {
            break;
        }
        uint8_t *data = c->outbox;
        size_t size = c->outbox_size;
        size_t capacity = c->outbox_capacity;
        c->outbox = c->sending;
        c->outbox_capacity = c->sending_capacity;
        c->outbox_size = 0;
        c->sending = data;
        c->sending_capacity = capacity;
        pthread_mutex_unlock(&c->lock);
        struct tdm_diag why = {{0}};
        pthread_mutex_lock(&c->io_lock);
        int rv = tdm_client_send_bytes(&c->client, data, size, &why);
        pthread_mutex_unlock(&c->io_lock);
        pthread_mutex_lock(&c->lock);
        if (rv != 0) {
            api_fail_locked(c, rv, &why);
        }
    }
    c->sender = false;
}

/* Send what waits for a request in flight to end, unless a sender is at it
 * (lock held). */
static void api_send_pending_locked(struct tandem_client *c)
{
    if (c->pending != NULL && !c->sender && c->failed == 0) {
        c->sender = true;
        api_send_queued(c);
    }
}

/* Hand the frame in c->msg to its waiter (lock held): fill in its answer and
 * add it to *wakes, which the reader wakes once it drops the lock. Returns 0,
 * or TANDEM_ECORRUPT with why for an answer nobody asked for. */
static int api_dispatch(struct tandem_client *c, struct api_waiter **wakes, struct tdm_diag *why)
{
    const struct tdm_proto_msg *msg = c->msg;
    /* Every result type leads with request_id (struct tdm_proto_result and
     * struct tdm_proto_text_result). */
    bool append = msg->type == TDM_PROTO_APPEND_RESULT;
    uint64_t id = append ? msg->append_result.request_id : msg->status_result.request_id;
    struct api_waiter *waiter = c->waiters;
    while (waiter != NULL && waiter->request_id != id) {
        waiter = waiter->next;
    }
    if (waiter == NULL || waiter->want != msg->type) {
        return TDM_CORRUPT(why, "%s answered %s to request %llu, %s", c->client.label,
                           tdm_proto_type_name(msg->type), (unsigned long long)id,
                           waiter == NULL ? "which no call waits for" : "of another type");
    }
    if (append) {
        /* Every caller whose records the request combined. */
        const struct tdm_proto_result *result = &msg->append_result;
        if (result->status == 0 && result->record_count != waiter->batch_total) {
            return TDM_CORRUPT(why, "%s acknowledged %u records at lsn %llu, %u were sent",
                               c->client.label, result->record_count,
                               (unsigned long long)result->lsn_first, waiter->batch_total);
        }
        tdm_assert(c->appends_inflight > 0);
        c->appends_inflight--;
        tdm_assert(c->inflight_records >= waiter->batch_total);
        c->inflight_records -= waiter->batch_total;
        for (struct api_waiter **p = &c->waiters; *p != NULL;) {
            struct api_waiter *w = *p;
            if (w->request_id != id) {
                p = &w->next;
                continue;
            }
            *p = w->next;
            w->status = result->status;
            w->lsn_first = result->status == 0 ? result->lsn_first + w->offset : 0;
            w->record_count = result->status == 0 ? w->count : 0;
            w->text = result->status != 0 ? strdup(result->message) : NULL;
            w->answered = true;
            api_end_locked(c, w);
            if (w->cb != NULL) {
                api_async_due_locked(c, w);
            } else {
                w->wake_next = *wakes;
                *wakes = w;
            }
        }
        return 0;
    }
    const struct tdm_proto_text_result *result = &msg->status_result;
    waiter->status = result->status;
    waiter->text = malloc(result->text.size + 1);
    if (waiter->text != NULL) {
        if (result->text.size > 0) {
            memcpy(waiter->text, result->text.data, result->text.size);
        }
        waiter->text[result->text.size] = '\0';
    }
    waiter->answered = true;
    api_waiter_remove(c, waiter);
    api_end_locked(c, waiter);
    waiter->wake_next = *wakes;
    *wakes = waiter;
    return 0;
}

/* One step of a reader, called without c->lock and returning with it held:
 * take the next answer and hand it out (api_dispatch; the sync callers
 * answered go to *wakes), or, if none has arrived, wait for bytes (poll the
 * connection, and event_fd unless it is -1); then send what an answer made
 * room for. A failure fails the client. */
static void api_read_step(struct tandem_client *c, struct api_waiter **wakes, int event_fd)
{
    struct tdm_diag why = {{0}};
    pthread_mutex_lock(&c->io_lock);
    int rv = tdm_client_receive(&c->client, c->msg, false, &why);
    pthread_mutex_unlock(&c->io_lock);
    if (rv == -EAGAIN) {
        struct pollfd p[2] = {{.fd = c->client.fd, .events = POLLIN},
                              {.fd = event_fd, .events = POLLIN}};
        rv = poll(p, event_fd >= 0 ? 2 : 1, -1) >= 0 || errno == EINTR ? 0 : -errno;
        if (rv != 0) {
            tdm_diag_printf(&why, "poll %s: %s", c->client.label, strerror(-rv));
        } else if (event_fd >= 0 && (p[1].revents & POLLIN) != 0) {
            uint64_t count;
            ssize_t n = read(event_fd, &count, sizeof(count));
            (void)n; /* Non-blocking: EAGAIN if another read emptied it. */
        }
        pthread_mutex_lock(&c->lock);
        if (rv != 0) {
            api_fail_locked(c, rv, &why);
        }
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (rv == 0) {
        rv = api_dispatch(c, wakes, &why);
    }
    if (rv != 0) {
        api_fail_locked(c, rv, &why);
    }
    api_send_pending_locked(c); /* An answer made room. */
}

/* The reader's turn (lock held on entry and exit): take answers until
 * self's is in or the connection fails. The callers answered are woken
 * between reads, without the lock; those of the last read are left in
 * *wakes for the caller to wake once it drops the lock. */
static void api_read_answers(struct tandem_client *c, struct api_waiter *self,
                             struct api_waiter **wakes)
{
    tdm_assert(c->reader);
    while (!self->done && c->failed == 0) {
        struct api_waiter *answered = *wakes;
        *wakes = NULL;
        pthread_mutex_unlock(&c->lock);
        api_wake_answered(answered, self);
        api_read_step(c, wakes, -1);
    }
    c->reader = false;
    if (c->thread_started) {
        api_thread_wake_locked(c); /* The client's thread takes the role. */
    } else if (c->waiters != NULL) {
        api_wake(c->waiters, API_WAKE_ROLE); /* It takes the role. */
    }
}

/* Fill *waiter (zeroed) with an append of records, encoded as one request
 * carries them: request_id, record_count, then the entries (PROTOCOL.md
 * §3.3), in waiter->entries (malloc'd). Returns 0, or TANDEM_EINVALID (a record
 * breaks a limit, or they do not fit one client frame) / -ENOMEM with diag. */
static int api_append_waiter(struct api_waiter *waiter, const struct tandem_record *records,
                             size_t count, struct tandem_diag *diag)
{
    memset(waiter, 0, sizeof(*waiter));
    struct tdm_diag why = {{0}};
    uint8_t *entries = NULL;
    size_t size = 0;
    int rv = tdm_batch_raw_encode(records, count,
                                  TDM_CLIENT_FRAME_SIZE_MAX - TDM_PROTO_FRAME_SIZE_MIN - 8 - 4,
                                  &entries, &size, &why);
    if (rv != 0) {
        api_diag_copy(diag, &why);
        return rv;
    }
    waiter->want = TDM_PROTO_APPEND_RESULT;
    waiter->entries = entries;
    waiter->entries_size = size;
    waiter->count = (uint32_t)count;
    return 0;
}

/* The node refused the request: its message is the diag. */
static int api_refused(const struct api_waiter *waiter, struct tandem_diag *diag)
{
    tdm_assert(waiter->status != 0);
    tdm_diag_printf((struct tdm_diag *)diag, "%s", waiter->text != NULL ? waiter->text : "");
    return waiter->status < 0 ? waiter->status : TANDEM_ECORRUPT;
}

/* An answered append whose acknowledgement does not match what was sent:
 * the stream can no longer be trusted. Fails the client and returns
 * TANDEM_ECORRUPT with why; 0 if it matches. */
static int api_check_acknowledged(struct tandem_client *c, const struct api_waiter *w,
                                  struct tdm_diag *why)
{
    if (w->record_count == w->count && w->lsn_first != 0) {
        return 0;
    }
    int rv =
        TDM_CORRUPT(why, "%s acknowledged %u records at lsn %llu, %u were sent", c->client.label,
                    w->record_count, (unsigned long long)w->lsn_first, w->count);
    pthread_mutex_lock(&c->lock);
    api_fail_locked(c, rv, why);
    pthread_mutex_unlock(&c->lock);
    return rv;
}

/* ---- The client's thread (asynchronous appends) ---------------------------------- */

/* Run the callbacks of the ended asynchronous appends of list, oldest first,
 * and free them (no lock held). */
static void api_run_callbacks(struct tandem_client *c, struct api_waiter *list)
{
    while (list != NULL) {
        struct api_waiter *w = list;
        list = w->wake_next;
        struct tandem_diag diag = {{0}};
        int status = w->status;
        uint64_t lsn_first = 0;
        if (status == 0) {
            struct tdm_diag why = {{0}};
            status = api_check_acknowledged(c, w, &why);
            if (status == 0) {
                lsn_first = w->lsn_first;
            } else {
                api_diag_copy(&diag, &why);
            }
        } else {
            status = api_refused(w, &diag);
        }
        w->cb(w->cb_data, status, lsn_first, status == 0 ? NULL : &diag);
        free(w->text);
        tdm_free(w->entries);
        tdm_free(w);
    }
}

/* The client's thread: once started it is the only reader. It waits for the
 * role if a caller holds it, then reads answers (polling the connection and
 * event_fd) and hands them out: sync callers are woken, and the callbacks of
 * asynchronous appends run, both without the lock. On closing it ends every
 * call still in flight with TANDEM_ECANCELED, runs their callbacks and exits. */
static void *api_thread_main(void *arg)
{
    struct tandem_client *c = arg;
    (void)pthread_setname_np(pthread_self(), "tandem-client"); /* Best effort. */
    pthread_mutex_lock(&c->lock);
    bool reading = false; /* This thread holds the reader role. */
    struct api_waiter *wakes = NULL;
    for (;;) {
        if (c->closing && c->failed == 0) {
            struct tdm_diag why = {{0}};
            tdm_diag_printf(&why, "%s: the client was closed before the answer came",
                            c->client.label);
            api_fail_locked(c, TANDEM_ECANCELED, &why);
        }
        struct api_waiter *due = c->async_done;
        c->async_done = NULL;
        c->async_done_tail = &c->async_done;
        if (due != NULL || wakes != NULL) {
            struct api_waiter *answered = wakes;
            wakes = NULL;
            pthread_mutex_unlock(&c->lock);
            api_wake_answered(answered, NULL);
            api_run_callbacks(c, due);
            pthread_mutex_lock(&c->lock);
            api_send_pending_locked(c); /* What the callbacks queued, combined. */
            continue;
        }
        if (c->closing) {
            break;
        }
        if (c->failed != 0 || (c->reader && !reading)) {
            pthread_cond_wait(&c->thread_cond, &c->lock); /* Closing, or the role is free. */
            continue;
        }
        reading = true;
        c->reader = true;
        pthread_mutex_unlock(&c->lock);
        api_read_step(c, &wakes, c->event_fd);
    }
    if (reading) {
        c->reader = false;
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Start the client's thread unless it runs (lock held). Returns 0, or -errno
 * with diag. */
static int api_thread_start_locked(struct tandem_client *c, struct tandem_diag *diag)
{
    if (c->thread_started) {
        return 0;
    }
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        int rv = -errno;
        tdm_diag_printf((struct tdm_diag *)diag, "client of %s: eventfd: %s", c->client.label,
                        strerror(-rv));
        return rv;
    }
    c->event_fd = fd;
    int rc = pthread_create(&c->thread, NULL, api_thread_main, c);
    if (rc != 0) {
        close(fd);
        c->event_fd = -1;
        tdm_diag_printf((struct tdm_diag *)diag, "client of %s: pthread_create: %s",
                        c->client.label, strerror(rc));
        return -rc;
    }
    c->thread_started = true; /* Before the thread can take the lock. */
    return 0;
}

/* Admit the call of waiter and queue it (lock held on entry and exit): the
 * encoded request frame[0..size) (request id waiter->request_id), or with
 * frame NULL the append in waiter->entries, combined with others when the
 * sender gets to it. Waits for room among the API_CALLS_MAX calls in flight,
 * except on the client's own thread, which must never wait for itself: there
 * a full client is TANDEM_EBUSY. Returns 0 (the call is the client's until
 * it ends: sent, or failed with the connection), or the failure with diag
 * (nothing queued). */
static int api_queue_locked(struct tandem_client *c, const uint8_t *frame, size_t size,
                            struct api_waiter *waiter, struct tandem_diag *diag)
{
    while (c->failed == 0 && c->calls >= API_CALLS_MAX) {
        if (api_on_own_thread(c)) {
            tdm_diag_printf(
                (struct tdm_diag *)diag,
                "request to %s: %u calls in flight, and a callback cannot wait for room",
                c->client.label, API_CALLS_MAX);
            return TANDEM_EBUSY;
        }
        pthread_cond_wait(&c->admit, &c->lock);
    }
    int rv = c->failed;
    if (rv == 0 && frame != NULL) {
        rv = api_outbox_add(c, frame, size);
    } else if (rv == 0) {
        waiter->pending_next = NULL;
        *c->pending_tail = waiter;
        c->pending_tail = &waiter->pending_next;
        c->pending_records += waiter->count;
    }
    if (rv != 0) {
        if (c->failed == 0) {
            struct tdm_diag why = {{0}};
            tdm_diag_printf(&why, "request to %s: %s", c->client.label, strerror(-rv));
            api_diag_copy(diag, &why);
        } else {
            api_diag_copy(diag, &c->failed_why);
        }
        return rv;
    }
    waiter->next = c->waiters;
    c->waiters = waiter;
    c->calls++;
    atomic_init(&waiter->wake, API_WAKE_NONE);
    /* On the client's thread (a callback), the thread sends once its
     * callbacks have run: the calls they make leave in one request. */
    if (!c->sender && !api_on_own_thread(c)) {
        c->sender = true;
        api_send_queued(c);
    }
    return 0;
}

/* Queue the call of waiter (api_queue_locked) and wait for its answer in
 * *waiter. Returns 0, or the connection's failure with diag. */
static int api_call(struct tandem_client *c, const uint8_t *frame, size_t size,
                    struct api_waiter *waiter, struct tandem_diag *diag)
{
    pthread_mutex_lock(&c->lock);
    if (api_on_own_thread(c)) {
        pthread_mutex_unlock(&c->lock);
        tdm_diag_printf((struct tdm_diag *)diag,
                        "a blocking call from a callback of %s would wait for itself",
                        c->client.label);
        return TANDEM_EINVALID;
    }
    int rv = api_queue_locked(c, frame, size, waiter, diag);
    if (rv != 0) {
        pthread_mutex_unlock(&c->lock);
        return rv;
    }
    struct api_waiter *wakes = NULL;
    bool locked = true;
    while (!waiter->done) {
        if (!c->reader && !c->thread_started) {
            c->reader = true;
            api_read_answers(c, waiter, &wakes);
            continue;
        }
        /* No store to the word is pending: DONE comes after done is set
         * and ROLE only under the lock. */
        atomic_store_explicit(&waiter->wake, API_WAKE_NONE, memory_order_relaxed);
        pthread_mutex_unlock(&c->lock);
        if (api_sleep(waiter, false) == API_WAKE_DONE) {
            locked = false;
            break;
        }
        pthread_mutex_lock(&c->lock); /* The reader role is free. */
    }
    if (locked) {
        pthread_mutex_unlock(&c->lock);
        api_wake_answered(wakes, waiter);
        /* Whoever ended the call stores DONE last: wait for it, so that
         * it never writes to a waiter that is gone. */
        (void)api_sleep(waiter, true);
    }
    if (waiter->answered) {
        return 0;
    }
    pthread_mutex_lock(&c->lock);
    tdm_assert(c->failed != 0);
    rv = c->failed;
    api_diag_copy(diag, &c->failed_why);
    pthread_mutex_unlock(&c->lock);
    return rv;
}

/* ---- Requests ------------------------------------------------------------------ */

/* Send msg (request id already set) and wait for the answer of type want. */
static int api_request(struct tandem_client *c, const struct tdm_proto_msg *msg, uint16_t want,
                       uint64_t request_id, struct api_waiter *waiter, struct tandem_diag *diag)
{
    struct tdm_diag why = {{0}};
    uint8_t *frame = NULL;
    size_t size = 0;
    int rv = tdm_client_encode(msg, &frame, &size, &why);
    if (rv != 0) {
        api_diag_copy(diag, &why);
        return rv;
    }
    memset(waiter, 0, sizeof(*waiter));
    waiter->request_id = request_id;
    waiter->want = want;
    rv = api_call(c, frame, size, waiter, diag);
    tdm_free(frame);
    return rv;
}

static uint64_t api_request_id(struct tandem_client *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t id = c->request_id_next++;
    pthread_mutex_unlock(&c->lock);
    return id;
}

int tandem_client_append(struct tandem_client *client, const struct tandem_record *records,
                         size_t count, uint64_t *lsn_first, struct tandem_diag *diag)
{
    tdm_assert(client != NULL);
    struct tdm_diag why = {{0}};
    if (lsn_first == NULL) {
        tdm_diag_printf((struct tdm_diag *)diag, "lsn_first must not be NULL");
        return TANDEM_EINVALID;
    }
    struct api_waiter waiter;
    int rv = api_append_waiter(&waiter, records, count, diag);
    if (rv != 0) {
        return rv;
    }
    rv = api_call(client, NULL, 0, &waiter, diag);
    tdm_free(waiter.entries);
    if (rv != 0) {
        return rv;
    }
    if (waiter.status != 0) {
        rv = api_refused(&waiter, diag);
    } else if ((rv = api_check_acknowledged(client, &waiter, &why)) != 0) {
        api_diag_copy(diag, &why);
    } else {
        *lsn_first = waiter.lsn_first;
    }
    free(waiter.text);
    return rv;
}

int tandem_client_append_async(struct tandem_client *client, const struct tandem_record *records,
                               size_t count, tandem_client_append_cb cb, void *data,
                               struct tandem_diag *diag)
{
    tdm_assert(client != NULL);
    if (cb == NULL) {
        tdm_diag_printf((struct tdm_diag *)diag, "cb must not be NULL");
        return TANDEM_EINVALID;
    }
    struct api_waiter *waiter = tdm_malloc(sizeof(*waiter));
    if (waiter == NULL) {
        return -ENOMEM;
    }
    int rv = api_append_waiter(waiter, records, count, diag);
    if (rv != 0) {
        tdm_free(waiter);
        return rv;
    }
    waiter->cb = cb;
    waiter->cb_data = data;
    pthread_mutex_lock(&client->lock);
    rv = client->failed;
    if (rv != 0) {
        api_diag_copy(diag, &client->failed_why);
    } else {
        rv = api_thread_start_locked(client, diag);
    }
    if (rv == 0) {
        rv = api_queue_locked(client, NULL, 0, waiter, diag);
    }
    pthread_mutex_unlock(&client->lock);
    if (rv != 0) {
        tdm_free(waiter->entries);
        tdm_free(waiter);
    }
    return rv;
}

/* A request answered by a text result (STATUS, SWITCHOVER, FAILOVER): the
 * text in *json (malloc'd; the caller frees it), or the node's refusal. */
static int api_text_request(struct tandem_client *c, const struct tdm_proto_msg *msg, uint16_t want,
                            uint64_t request_id, char **json, struct tandem_diag *diag)
{
    struct api_waiter waiter;
    int rv = api_request(c, msg, want, request_id, &waiter, diag);
    if (rv != 0) {
        return rv;
    }
    if (waiter.status != 0) {
        rv = api_refused(&waiter, diag);
        free(waiter.text);
        return rv;
    }
    if (waiter.text == NULL) {
        return -ENOMEM;
    }
    *json = waiter.text;
    return 0;
}

int tandem_client_status(struct tandem_client *client, char **json, struct tandem_diag *diag)
{
    tdm_assert(client != NULL);
    tdm_assert(json != NULL);
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (msg == NULL) {
        return -ENOMEM;
    }
    uint64_t request_id = api_request_id(client);
    msg->type = TDM_PROTO_STATUS;
    msg->status.request_id = request_id;
    int rv = api_text_request(client, msg, TDM_PROTO_STATUS_RESULT, request_id, json, diag);
    tdm_free(msg);
    return rv;
}

/* SWITCHOVER or FAILOVER: one request, one answer (PROTOCOL.md §7.5). */
static int api_command(struct tandem_client *client, uint16_t type, const char *target,
                       unsigned flags, char **json, struct tandem_diag *diag)
{
    tdm_assert(client != NULL);
    tdm_assert(json != NULL);
    size_t size = target != NULL ? strlen(target) : 0;
    if ((size > 0 && !tdm_proto_name_valid(target, size)) ||
        (type == TDM_PROTO_FAILOVER && size == 0) ||
        (flags & ~(unsigned)(TANDEM_FAILOVER_FORCE | TANDEM_FAILOVER_DRY_RUN)) != 0) {
        tdm_diag_printf((struct tdm_diag *)diag, "%s: bad target '%s' or flags 0x%x",
                        tdm_proto_type_name(type), target != NULL ? target : "", flags);
        return TANDEM_EINVALID;
    }
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (msg == NULL) {
        return -ENOMEM;
    }
    uint64_t request_id = api_request_id(client);
    msg->type = type;
    msg->command.request_id = request_id;
    msg->command.flags = (uint8_t)flags;
    if (size > 0) {
        memcpy(msg->command.target, target, size);
    }
    uint16_t want =
        type == TDM_PROTO_FAILOVER ? TDM_PROTO_FAILOVER_RESULT : TDM_PROTO_SWITCHOVER_RESULT;
    int rv = api_text_request(client, msg, want, request_id, json, diag);
    tdm_free(msg);
    return rv;
}

int tandem_client_switchover(struct tandem_client *client, const char *target, char **json,
                             struct tandem_diag *diag)
{
    return api_command(client, TDM_PROTO_SWITCHOVER, target, 0, json, diag);
}

int tandem_client_failover(struct tandem_client *client, const char *target, unsigned flags,
                           char **json, struct tandem_diag *diag)
{
    return api_command(client, TDM_PROTO_FAILOVER, target, flags, json, diag);
}

void tandem_client_close(struct tandem_client *client)
{
    if (client == NULL) {
        return;
    }
    if (client->thread_started) {
        tdm_assert(!api_on_own_thread(client)); /* tandem.h: not from a callback. */
        pthread_mutex_lock(&client->lock);
        client->closing = true;
        api_thread_wake_locked(client);
        pthread_mutex_unlock(&client->lock);
        int rc = pthread_join(client->thread, NULL);
        tdm_assert(rc == 0);
        close(client->event_fd);
    }
    tdm_assert(client->waiters == NULL); /* tandem.h: no blocking call may be running. */
    tdm_client_close(&client->client);
    pthread_cond_destroy(&client->thread_cond);
    pthread_cond_destroy(&client->admit);
    pthread_mutex_destroy(&client->io_lock);
    pthread_mutex_destroy(&client->lock);
    tdm_free(client->outbox);
    tdm_free(client->sending);
    tdm_free(client->msg);
    tdm_free(client->send_msg);
    tdm_free(client);
}
