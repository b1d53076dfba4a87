/* net/uv_server.c: the local client socket of a node (DIR/tandemd.sock), served
 * with libuv. Frames: docs/PROTOCOL.md §3 (layout) and §7 (client frames).
 *
 * Happy path:
 * 1. tdm_uv_server_start() removes a stale socket file (only when a connect()
 *    to it fails: a live server is never unlinked), binds, makes the file
 *    0600 before listen() (so nobody can connect through wider permissions),
 *    and listens.
 * 2. Each connection gets a frame reader (net/proto.h) over a buffer of
 *    frame_size_max bytes. Bytes read are fed to it; every complete frame is
 *    decoded and dispatched:
 *    - APPEND_REQUEST: records decoded (engine/codec.h) and handed to
 *      tandem_append_async(). Its callback runs on the engine's commit thread:
 *      it only queues the result under a mutex and calls uv_async_send(); the
 *      loop thread then writes APPEND_RESULT (lsn_first, or the code and a
 *      message).
 *    - QUERY and STATUS: run on the threadpool (uv_queue_work). The work
 *      formats records as JSON Lines (config->format) in chunks of at most
 *      SERVER_TEXT_CHUNK_SIZE bytes; the after-work callback writes one
 *      QUERY_RESULT frame per chunk, all but the last flagged MORE.
 *    - HISTORY and QUARANTINE (PROTOCOL.md §7.6): the same, with the lines of
 *      the answer from config->inspect, which reads the node directory; no
 *      callback (a test server): answered TANDEM_EINVALID.
 *    - VERIFY (PROTOCOL.md §7.7): config->inspect too, but every line is sent
 *      as soon as it is made (a progress line must not wait for the end of
 *      the pass): the threadpool appends it to the request's stream under the
 *      server's mutex and wakes the loop (the async handle), which sends what
 *      has gathered in one VERIFY_RESULT frame flagged MORE. The after-work
 *      callback sends what is left, then the closing frame (empty, or the
 *      error), so that the frames keep the order of the lines.
 * 3. Answers are written in the order requests complete; request_id pairs them.
 *
 * Bounds and failure modes:
 * - At most clients_max connections: one more is accepted and closed at once
 *   (with a trace line), so that it does not wait in the backlog.
 * - At most requests_max requests in flight per connection: reading stops
 *   (backpressure) and resumes when one completes. Bytes already read and not
 *   yet taken by the reader wait in the connection's read buffer.
 * - A frame larger than frame_size_max, of a non-client type, or that does not
 *   decode, closes that connection with a trace line naming the cause. Other
 *   connections and the node are untouched.
 * - An append the engine refuses (TANDEM_EINVALID, TANDEM_EFAILED, ...) is
 *   answered with its code and message; the connection stays open.
 *
 * Adopted TLS links (tdm_uv_server_adopt, PROTOCOL.md §7.4): a client that
 * connected to the node's listen port with a client certificate reaches the
 * same connections and requests. The link (net/uv_link.h) reads, decrypts and
 * decodes; its on_frame hands each message to the same dispatch as the pipe's
 * decoded frames. Answers go out through tdm_uv_link_send(); when it refuses
 * (TANDEM_EBUSY: its queue is full) the answer is encoded into the
 * connection's answer queue, the link is paused, and on_drain sends the queue
 * in order; reading resumes once the queue is empty and fewer than
 * requests_max requests are in flight. Only "client:<name>" peers are
 * adopted. A link whose peer is gone (on_close) drops its answers and is freed
 * once its requests have completed.
 *
 * Close (tdm_uv_server_close): stop accepting (listener closed), stop reading on
 * every connection, wait until every request in flight has completed and every
 * answer is written (handed to the link, for a link), close each connection
 * (adopted links included, and wait for their on_close), close the async
 * handle, remove the socket file, free, call the close callback. A connection
 * whose peer is gone still waits for its appends (the engine owns them until
 * their callback). */
#include "net/uv.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/queue.h"
#include "engine/base/trace.h"
#include "engine/codec.h"
#include "engine/node.h"
#include "net/proto.h"
#include "net/tls.h"
#include "net/uv_link.h"

#define SERVER_READ_SIZE       ((size_t)64 * 1024)  /* Bytes asked of one read. */
#define SERVER_TEXT_CHUNK_SIZE ((size_t)256 * 1024) /* JSON Lines bytes per QUERY_RESULT. */
#define SERVER_CHUNKS_MAX      4096u                /* Chunks per answer: 1 GiB of text. */
#define SERVER_BACKLOG         128

struct server;
struct conn;

/* One request in flight: an append, a query or a status. */
struct request {
    struct conn *conn;    /* Retained: the connection waits for every request. */
    uint64_t request_id;  /* The client's. */
    uint16_t type;        /* TDM_PROTO_APPEND_REQUEST, _QUERY, _STATUS, _SWITCHOVER, _FAILOVER. */
    uv_work_t work;       /* Query and status. */
    struct request *next; /* In the server's completion queue (appends). */
    /* Append. */
    int status;                                   /* Completion code. */
    uint64_t lsn_first;                           /* Valid when status is 0. */
    uint32_t record_count;                        /* Records of the append. */
    char message[TDM_PROTO_MESSAGE_SIZE_MAX + 1]; /* Why it failed. */
    /* Query. */
    struct tdm_proto_query query; /* Slices point into the arrays below. */
    char key[TDM_PROTO_QUERY_KEY_SIZE_MAX + 1];
    char recipient[TDM_PROTO_QUERY_ADDRESS_SIZE_MAX + 1];
    char sender[TDM_PROTO_QUERY_ADDRESS_SIZE_MAX + 1];
    /* Answer text (query, status), built on the threadpool. */
    char **chunks;           /* chunk_capacity entries, chunk_count used; each tdm_malloc'd. */
    size_t *chunk_sizes;     /* Bytes used in each chunk. */
    uint32_t chunk_count;    /* <= chunk_capacity <= SERVER_CHUNKS_MAX. */
    uint32_t chunk_capacity; /* Entries allocated in chunks and chunk_sizes. */
    int format_rv;           /* The formatter's failure, or 0. */
    void *snapshot;          /* Status: config.snapshot's copy, or NULL. */
    uint8_t inspect_flags;   /* HISTORY, QUARANTINE, VERIFY: the request's flags. */
    /* VERIFY: lines made and not yet sent, under server->mutex. */
    char *stream; /* tdm_malloc'd; stream_size bytes used. */
    size_t stream_size;
    bool stream_queued; /* In the server's stream queue. */
    struct request *stream_next;
};

/* Link: an answer the link refused for now (TANDEM_EBUSY), encoded. */
struct answer {
    struct answer *next; /* The next answer in order; NULL for the last. */
    size_t size;         /* Bytes of the encoded frame in data. */
    uint8_t data[];
};

/* One client connection: the local socket's pipe, or an adopted TLS link.
 * Freed once closed and every request has completed. */
struct conn {
    uv_pipe_t pipe; /* Pipe only. */
    struct server *server;
    struct tdm_proto_reader reader; /* Pipe only (a link decodes its own frames). */
    uint8_t *frame_buffer;          /* Pipe: frame_size_max + 4 bytes; link: NULL. */
    uint8_t *read_buffer;           /* Pipe: SERVER_READ_SIZE bytes; link: NULL. */
    bool is_link;                   /* Adopted TLS link rather than the pipe. */
    struct tdm_uv_link *link;       /* Link until its on_close ran; then NULL. */
    struct answer *answers;         /* Link: refused answers, oldest first; bounded by the
                                       requests in flight (reading stops while any wait). */
    struct answer *answers_tail;
    size_t read_start; /* read_buffer[read_start, read_end) is unfed. */
    size_t read_end;
    bool reading;      /* uv_read_start is in effect. */
    bool closing;      /* uv_close called, or about to be. */
    bool eof;          /* Peer gone or broke the protocol: no answers. */
    bool read_done;    /* The peer sent EOF: answer, read no more. */
    uint32_t inflight; /* Requests not yet answered. */
    uint32_t writes;   /* uv_write calls not yet completed. */
    uint64_t id;       /* For trace lines. */
    struct conn *next; /* In the server's list. */
    struct conn *prev;
};

struct server {
    uv_loop_t *loop;
    uv_pipe_t listener;
    uv_async_t async;          /* Append completions (commit thread), VERIFY lines. */
    uv_mutex_t mutex;          /* Guards done_head, done_tail, stream_head and the
                                  requests' stream fields. */
    struct request *done_head; /* Completed appends, oldest first. */
    struct request *done_tail;
    struct request *stream_head; /* VERIFY requests with lines to send (also mutex). */
    struct tdm_uv_server_config config;
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct conn *conns;  /* Open (or closing) connections. */
    uint32_t conn_count; /* In conns. */
    uint64_t conn_next_id;
    uint32_t handles;   /* listener and async, until their close callbacks. */
    bool closing;       /* tdm_uv_server_close() was called (or start failed). */
    bool async_closing; /* uv_close(async) was called. */
    tdm_uv_server_close_cb close_cb;
    void *close_data;
};

static void conn_read_resume(struct conn *conn);
static void conn_process(struct conn *conn);
static void server_maybe_finish(struct server *server);
static void server_start_failed_cb(void *data);

/* ---- Writing answers ------------------------------------------------------------ */

struct write_req {
    uv_write_t req;
    struct conn *conn;
    uint8_t *data; /* tdm_malloc'd frame. */
};

static void conn_maybe_close(struct conn *conn);

static void conn_write_cb(uv_write_t *req, int status)
{
    struct write_req *w = req->data;
    struct conn *conn = w->conn;
    tdm_assert(conn->writes > 0);
    conn->writes--;
    tdm_free(w->data);
    tdm_free(w);
    if (status != 0 && !conn->closing) {
        tdm_tracef("client %" PRIu64 ": write: %s", conn->id, uv_strerror(status));
        conn->eof = true;
    }
    conn_maybe_close(conn);
}

/* Link: encode msg at the tail of the answer queue. Returns 0 or -ENOMEM /
 * TANDEM_EINVALID (msg does not encode). */
static int conn_answer_queue(struct conn *conn, const struct tdm_proto_msg *msg,
                             struct tdm_diag *diag)
{
    tdm_assert(conn->is_link);
    size_t size = tdm_proto_encoded_size(msg);
    struct answer *answer = tdm_malloc(sizeof(*answer) + size);
    if (answer == NULL) {
        return -ENOMEM;
    }
    size_t written = 0;
    int rv = tdm_proto_encode(msg, answer->data, size, &written, diag);
    if (rv != 0) {
        tdm_free(answer);
        return rv;
    }
    tdm_assert(written == size);
    answer->size = size;
    answer->next = NULL;
    if (conn->answers_tail == NULL) {
        conn->answers = answer;
    } else {
        conn->answers_tail->next = answer;
    }
    conn->answers_tail = answer;
    return 0;
}

static void conn_answers_free(struct conn *conn)
{
    while (conn->answers != NULL) {
        struct answer *next = conn->answers->next;
        tdm_free(conn->answers);
        conn->answers = next;
    }
    conn->answers_tail = NULL;
}

/* Link: an answer could not be sent or queued: the client would wait forever
 * for it, so take no more requests; the connection closes once idle. */
static void conn_link_lost_answer(struct conn *conn, uint16_t type, int rv,
                                  const struct tdm_diag *diag)
{
    tdm_tracef("client %" PRIu64 " (%s): answer %s not sent: %s%s%s", conn->id,
               conn->link != NULL ? tdm_uv_link_peer_name(conn->link) : "gone",
               tdm_proto_type_name(type), tandem_strerror(rv), diag->message[0] != '\0' ? ": " : "",
               diag->message);
    conn->eof = true;
    conn_answers_free(conn);
    if (conn->link != NULL) {
        tdm_uv_link_pause(conn->link);
    }
}

/* Link: send msg, or queue it behind the answers the link refused earlier, so
 * that answers keep their order. A queued answer pauses the link. */
static void conn_link_send(struct conn *conn, const struct tdm_proto_msg *msg)
{
    tdm_assert(conn->is_link);
    tdm_assert(conn->link != NULL); /* Its on_close sets eof. */
    struct tdm_diag diag = {{0}};
    int rv = TANDEM_EBUSY;
    if (conn->answers == NULL) {
        rv = tdm_uv_link_send(conn->link, msg, &diag);
    }
    if (rv == TANDEM_EBUSY) {
        diag.message[0] = '\0';
        rv = conn_answer_queue(conn, msg, &diag);
        tdm_uv_link_pause(conn->link);
    }
    if (rv != 0) {
        conn_link_lost_answer(conn, msg->type, rv, &diag);
    }
}

/* Encode msg and queue it on conn. A failure closes the connection: the
 * client would wait forever for the answer it lost. */
static void conn_send(struct conn *conn, const struct tdm_proto_msg *msg)
{
    tdm_assert(tdm_proto_type_is_client(msg->type));
    if (conn->eof || conn->closing) {
        return; /* Nobody to answer; the request still counts as done. */
    }
    if (conn->is_link) {
        conn_link_send(conn, msg);
        return;
    }
    size_t size = tdm_proto_encoded_size(msg);
    struct write_req *w = tdm_malloc(sizeof(*w));
    uint8_t *data = tdm_malloc(size);
    struct tdm_diag diag = {{0}};
    size_t written = 0;
    int rv = (w == NULL || data == NULL) ? -ENOMEM : 0;
    if (rv == 0) {
        rv = tdm_proto_encode(msg, data, size, &written, &diag);
    }
    if (rv == 0) {
        tdm_assert(written == size);
        w->conn = conn;
        w->data = data;
        w->req.data = w;
        uv_buf_t buf = uv_buf_init((char *)data, (unsigned)size);
        rv = uv_write(&w->req, (uv_stream_t *)&conn->pipe, &buf, 1, conn_write_cb);
    }
    if (rv != 0) {
        tdm_tracef("client %" PRIu64 ": answer %s not sent: %s%s%s", conn->id,
                   tdm_proto_type_name(msg->type), tandem_strerror(rv),
                   diag.message[0] != '\0' ? ": " : "", diag.message);
        tdm_free(w);
        tdm_free(data);
        conn->eof = true;
        return;
    }
    conn->writes++;
}

static void send_append_result(struct conn *conn, const struct request *request)
{
    struct tdm_proto_msg msg = {.type = TDM_PROTO_APPEND_RESULT};
    msg.append_result.request_id = request->request_id;
    msg.append_result.status = request->status;
    msg.append_result.lsn_first = request->status == 0 ? request->lsn_first : 0;
    msg.append_result.record_count = request->status == 0 ? request->record_count : 0;
    snprintf(msg.append_result.message, sizeof(msg.append_result.message), "%s", request->message);
    conn_send(conn, &msg);
}

/* The text answer of a query (QUERY_RESULT frames) or status (STATUS_RESULT).
 * A query that failed part-way sends the records it had first, then one frame
 * with the code and the message, as the CLI prints records before an error. */
static void send_text_result(struct conn *conn, const struct request *request, int status)
{
    bool is_status = request->type == TDM_PROTO_STATUS;
    uint32_t texts = (is_status && status != 0) ? 0 : request->chunk_count;
    uint32_t count = texts + (status != 0 ? 1 : 0);
    if (count == 0) {
        count = 1; /* Nothing found: one empty frame. */
    }
    for (uint32_t i = 0; i < count; i++) {
        /* Each result type is its request's plus one (PROTOCOL.md §3.2). */
        struct tdm_proto_msg msg = {.type = (uint16_t)(request->type + 1)};
        struct tdm_proto_text_result *result = &msg.query_result;
        bool is_error = status != 0 && i == texts;
        result->request_id = request->request_id;
        result->status = is_error ? status : 0;
        result->flags = (!is_status && i + 1 < count) ? TDM_PROTO_RESULT_MORE : 0;
        if (is_error) {
            result->text.data = (const uint8_t *)request->message;
            result->text.size = strlen(request->message);
        } else if (i < texts) {
            result->text.data = (const uint8_t *)request->chunks[i];
            result->text.size = request->chunk_sizes[i];
        }
        conn_send(conn, &msg);
    }
}

static void request_free(struct request *request)
{
    for (uint32_t i = 0; i < request->chunk_count; i++) {
        tdm_free(request->chunks[i]);
    }
    tdm_free(request->chunks);
    tdm_free(request->chunk_sizes);
    tdm_free(request->snapshot);
    tdm_free(request->stream);
    tdm_free(request);
}

/* Make room for one more chunk of capacity bytes (threadpool). Returns 0,
 * -E2BIG past SERVER_CHUNKS_MAX, or -ENOMEM. */
static int request_chunk_add(struct request *request, size_t capacity)
{
    if (request->chunk_count == request->chunk_capacity) {
        if (request->chunk_capacity == SERVER_CHUNKS_MAX) {
            return -E2BIG;
        }
        uint32_t grown = request->chunk_capacity == 0 ? 4 : 2 * request->chunk_capacity;
        char **chunks = tdm_realloc(request->chunks, (size_t)grown * sizeof(*chunks));
        if (chunks == NULL) {
            return -ENOMEM;
        }
        request->chunks = chunks;
        size_t *sizes = tdm_realloc(request->chunk_sizes, (size_t)grown * sizeof(*sizes));
        if (sizes == NULL) {
            return -ENOMEM;
        }
        request->chunk_sizes = sizes;
        request->chunk_capacity = grown;
    }
    tdm_assert(request->chunk_count < request->chunk_capacity);
    char *chunk = tdm_malloc(capacity);
    if (chunk == NULL) {
        return -ENOMEM;
    }
    request->chunks[request->chunk_count] = chunk;
    request->chunk_sizes[request->chunk_count] = 0;
    request->chunk_count++;
    return 0;
}

/* A request is answered: release it and let the connection read again. */
static void request_done(struct request *request)
{
    struct conn *conn = request->conn;
    tdm_assert(conn->inflight > 0);
    conn->inflight--;
    request_free(request);
    if (!conn->closing && !conn->server->closing && !conn->eof && !conn->read_done) {
        conn_process(conn);
        conn_read_resume(conn);
    }
    conn_maybe_close(conn);
}

/* ---- Appends ------------------------------------------------------------------- */

/* tandem_append_async() completion: the engine's commit thread. Touches no
 * libuv state but the thread-safe uv_async_send(). */
static void append_done_cb(void *data, int status, uint64_t lsn_first)
{
    struct request *request = data;
    struct server *server = request->conn->server;
    request->status = status;
    request->lsn_first = lsn_first;
    request->next = NULL;
    uv_mutex_lock(&server->mutex);
    if (server->done_tail == NULL) {
        server->done_head = request;
    } else {
        server->done_tail->next = request;
    }
    server->done_tail = request;
    uv_mutex_unlock(&server->mutex);
    int rv = uv_async_send(&server->async);
    tdm_assert(rv == 0);
}

/* VERIFY: send the lines request has gathered in one frame flagged MORE
 * (loop thread; takes server->mutex). */
static void stream_send(struct server *server, struct request *request)
{
    uv_mutex_lock(&server->mutex);
    char *text = request->stream;
    size_t size = request->stream_size;
    request->stream = NULL;
    request->stream_size = 0;
    if (request->stream_queued) {
        struct request **p = &server->stream_head;
        while (*p != request) {
            p = &(*p)->stream_next;
        }
        *p = request->stream_next;
        request->stream_queued = false;
    }
    uv_mutex_unlock(&server->mutex);
    if (size > 0) {
        struct tdm_proto_msg msg = {.type = (uint16_t)(request->type + 1)};
        msg.inspect_result.request_id = request->request_id;
        msg.inspect_result.flags = TDM_PROTO_RESULT_MORE;
        msg.inspect_result.text.data = (const uint8_t *)text;
        msg.inspect_result.text.size = size;
        conn_send(request->conn, &msg);
    }
    tdm_free(text);
}

/* The loop thread's side of append_done_cb and of stream lines. */
static void server_async_cb(uv_async_t *async)
{
    struct server *server = async->data;
    for (;;) {
        uv_mutex_lock(&server->mutex);
        struct request *streaming = server->stream_head;
        uv_mutex_unlock(&server->mutex);
        if (streaming == NULL) {
            break;
        }
        stream_send(server, streaming);
    }
    uv_mutex_lock(&server->mutex);
    struct request *request = server->done_head;
    server->done_head = NULL;
    server->done_tail = NULL;
    uv_mutex_unlock(&server->mutex);
    while (request != NULL) {
        struct request *next = request->next;
        tdm_assert(request->type == TDM_PROTO_APPEND_REQUEST);
        if (request->status != 0 && request->message[0] == '\0') {
            struct tandem_status status;
            const char *why = tandem_strerror(request->status);
            if (tandem_status(server->config.t, &status) == 0 && status.failed_message[0] != '\0') {
                why = status.failed_message;
            }
            snprintf(request->message, sizeof(request->message), "%s", why);
        }
        send_append_result(request->conn, request);
        request_done(request);
        request = next;
    }
    server_maybe_finish(server);
}

/* Keep only printable ASCII in a result message (PROTOCOL.md §3.3). */
static void message_sanitize(char *message)
{
    for (char *c = message; *c != '\0'; c++) {
        if (*c < 0x20 || *c > 0x7e) {
            *c = '?';
        }
    }
}

/* tdm_uv_submit_done_cb: a replicated append's outcome, on the loop thread. */
static void submit_done_cb(void *done_data, int status, uint64_t lsn_first, const char *message)
{
    struct request *request = done_data;
    struct server *server = request->conn->server;
    request->status = status;
    request->lsn_first = lsn_first;
    if (status != 0) {
        snprintf(request->message, sizeof(request->message), "%s",
                 message != NULL && message[0] != '\0' ? message : tandem_strerror(status));
        message_sanitize(request->message);
    }
    send_append_result(request->conn, request);
    request_done(request);
    server_maybe_finish(server);
}

/* Decode the records of an APPEND_REQUEST and submit them. Returns 0 when the
 * request is in flight or already answered (a refused append), or
 * TANDEM_ECORRUPT when a record does not decode (the connection is closed). */
static int conn_append(struct conn *conn, const struct tdm_proto_records *records,
                       struct tdm_diag *diag)
{
    tdm_assert(records->record_count >= 1);
    tdm_assert(records->record_count <= TDM_PROTO_RECORDS_MAX);
    struct request *request = tdm_calloc(1, sizeof(*request));
    struct tandem_record *decoded = tdm_calloc(records->record_count, sizeof(*decoded));
    if (request == NULL || decoded == NULL) {
        tdm_free(request);
        tdm_free(decoded);
        return -ENOMEM;
    }
    size_t offset = 0;
    uint32_t count = 0;
    struct tdm_proto_slice entry;
    int rv = 0;
    while (rv == 0 && tdm_proto_records_next(records, &offset, &entry)) {
        tdm_assert(count < records->record_count);
        rv = tdm_codec_decode(entry.data, entry.size, &decoded[count], diag);
        if (rv != 0) {
            tdm_diag_wrapf(diag, "APPEND_REQUEST record %u", count);
        }
        count++;
    }
    if (rv == 0 && count != records->record_count) {
        rv = TDM_CORRUPT(diag, "APPEND_REQUEST: %u records, header says %u", count,
                         records->record_count);
    }
    if (rv != 0) {
        tdm_free(request);
        tdm_free(decoded);
        return rv;
    }
    request->conn = conn;
    request->type = TDM_PROTO_APPEND_REQUEST;
    request->request_id = records->request_id;
    request->record_count = count;
    conn->inflight++;
    struct tandem_diag append_diag = {{0}};
    const struct tdm_uv_server_config *config = &conn->server->config;
    if (config->submit != NULL) {
        rv = config->submit(config->data, decoded, count, submit_done_cb, request,
                            (struct tdm_diag *)&append_diag);
    } else {
        rv = tandem_append_async(config->t, decoded, count, append_done_cb, request, &append_diag);
    }
    tdm_free(decoded); /* The engine copied the records. */
    if (rv != 0) {
        /* Refused before submission: the callback never runs. Answer now. */
        request->status = rv;
        snprintf(request->message, sizeof(request->message), "%s",
                 append_diag.message[0] != '\0' ? append_diag.message : tandem_strerror(rv));
        message_sanitize(request->message);
        send_append_result(conn, request);
        conn->inflight--; /* Not request_done(): the caller is conn_process(). */
        request_free(request);
    }
    return 0;
}

/* ---- Queries and status (threadpool) ------------------------------------------ */

/* Append one formatted record to the request's chunks (threadpool). */
static int query_record_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    struct request *request = data;
    struct server *server = request->conn->server;
    char *text = NULL;
    size_t size = 0;
    int rv = server->config.format(record, lsn, &text, &size);
    if (rv != 0) {
        request->format_rv = rv;
        return 1;
    }
    uint32_t i = request->chunk_count;
    if (i == 0 || request->chunk_sizes[i - 1] + size + 1 > SERVER_TEXT_CHUNK_SIZE) {
        size_t capacity = size + 1 > SERVER_TEXT_CHUNK_SIZE ? size + 1 : SERVER_TEXT_CHUNK_SIZE;
        rv = request_chunk_add(request, capacity);
        if (rv != 0) {
            tdm_free(text);
            request->format_rv = rv;
            return 1;
        }
        i++;
    }
    char *chunk = request->chunks[i - 1];
    memcpy(chunk + request->chunk_sizes[i - 1], text, size);
    chunk[request->chunk_sizes[i - 1] + size] = '\n';
    request->chunk_sizes[i - 1] += size + 1;
    tdm_free(text);
    return 0;
}

static int query_dispatch(struct tandem *t, struct request *request, struct tandem_diag *diag)
{
    const struct tdm_proto_query *q = &request->query;
    switch (q->kind) {
    case TDM_PROTO_QUERY_MESSAGE_ID:
        return tandem_get(t, request->key, q->key.size, query_record_cb, request, diag);
    case TDM_PROTO_QUERY_CUSTOMER_MESSAGES: {
        struct tandem_query query;
        tandem_query_init(&query, q->customer_id);
        query.since_ns = q->since_ns;
        query.until_ns = q->until_ns;
        if ((q->flags & TDM_PROTO_QUERY_HAS_RECIPIENT) != 0) {
            query.recipient.data = request->recipient;
            query.recipient.size = q->recipient.size;
        }
        if ((q->flags & TDM_PROTO_QUERY_HAS_SENDER) != 0) {
            query.sender.data = request->sender;
            query.sender.size = q->sender.size;
            query.sender_empty = q->sender.size == 0;
        }
        return tandem_query(t, &query, query_record_cb, request, diag);
    }
    case TDM_PROTO_QUERY_CUSTOMER_ID:
        return tandem_customer_get(t, q->customer_id, query_record_cb, request, diag);
    case TDM_PROTO_QUERY_USERNAME:
        return tandem_customer_find(t, TANDEM_CUSTOMER_KEY_USERNAME, request->key, q->key.size,
                                    query_record_cb, request, diag);
    case TDM_PROTO_QUERY_EMAIL:
        return tandem_customer_find(t, TANDEM_CUSTOMER_KEY_EMAIL, request->key, q->key.size,
                                    query_record_cb, request, diag);
    default:
        tdm_diag_printf((struct tdm_diag *)diag, "QUERY: unknown kind %u", q->kind);
        return TANDEM_EINVALID;
    }
}

/* tdm_uv_line_cb: one line of a HISTORY or QUARANTINE answer into the chunks
 * (threadpool), as query_record_cb() adds a record's. */
static int inspect_line_cb(void *line_data, const char *text, size_t size)
{
    struct request *request = line_data;
    if (request->type == TDM_PROTO_VERIFY) {
        /* Sent now (the loop thread's stream_send()); any thread. */
        struct server *server = request->conn->server;
        if (size + 1 > SERVER_TEXT_CHUNK_SIZE) {
            return -E2BIG;
        }
        uv_mutex_lock(&server->mutex);
        char *grown = NULL;
        if (request->stream_size + size + 1 <= SERVER_TEXT_CHUNK_SIZE) {
            grown = tdm_realloc(request->stream, request->stream_size + size + 1);
        }
        if (grown != NULL) {
            memcpy(grown + request->stream_size, text, size);
            grown[request->stream_size + size] = '\n';
            request->stream = grown;
            request->stream_size += size + 1;
            if (!request->stream_queued) {
                request->stream_queued = true;
                request->stream_next = server->stream_head;
                server->stream_head = request;
            }
        }
        uv_mutex_unlock(&server->mutex);
        if (grown == NULL) {
            return -ENOMEM; /* Or the loop is this far behind: the client will not wait. */
        }
        int rv = uv_async_send(&server->async);
        tdm_assert(rv == 0);
        return 0;
    }
    uint32_t i = request->chunk_count;
    if (i == 0 || request->chunk_sizes[i - 1] + size + 1 > SERVER_TEXT_CHUNK_SIZE) {
        size_t capacity = size + 1 > SERVER_TEXT_CHUNK_SIZE ? size + 1 : SERVER_TEXT_CHUNK_SIZE;
        int rv = request_chunk_add(request, capacity);
        if (rv != 0) {
            return rv;
        }
        i++;
    }
    char *chunk = request->chunks[i - 1];
    memcpy(chunk + request->chunk_sizes[i - 1], text, size);
    chunk[request->chunk_sizes[i - 1] + size] = '\n';
    request->chunk_sizes[i - 1] += size + 1;
    return 0;
}

/* HISTORY or QUARANTINE (PROTOCOL.md §7.6): the embedding program reads the
 * node directory (threadpool). */
static int inspect_run(struct server *server, struct request *request, struct tdm_diag *diag)
{
    const struct tdm_uv_server_config *config = &server->config;
    if (config->inspect == NULL) {
        tdm_diag_printf(diag, "%s is not served by this node", tdm_proto_type_name(request->type));
        return TANDEM_EINVALID;
    }
    int rv = config->inspect(config->inspect_data, request->type, request->inspect_flags,
                             inspect_line_cb, request, diag);
    if (rv == -E2BIG) {
        tdm_diag_printf(diag,
                        "the answer is over %u MiB: run the command on the node's host "
                        "with --node DIR",
                        (unsigned)((SERVER_CHUNKS_MAX * SERVER_TEXT_CHUNK_SIZE) >> 20));
    }
    return rv;
}

static void text_work_cb(uv_work_t *work)
{
    struct request *request = work->data;
    struct server *server = request->conn->server;
    struct tandem_diag diag = {{0}};
    int rv;
    if (request->type == TDM_PROTO_STATUS) {
        char *text = NULL;
        size_t size = 0;
        rv = server->config.status(server->config.data, server->config.t, request->snapshot, &text,
                                   &size);
        if (rv == 0) {
            rv = request_chunk_add(request, 1);
            if (rv == 0) {
                tdm_free(request->chunks[0]);
                request->chunks[0] = text;
                request->chunk_sizes[0] = size;
            } else {
                tdm_free(text);
            }
        }
    } else if (request->type != TDM_PROTO_QUERY) {
        rv = inspect_run(server, request, (struct tdm_diag *)&diag);
    } else {
        rv = query_dispatch(server->config.t, request, &diag);
        if (rv == 0 && request->format_rv != 0) {
            rv = request->format_rv;
        }
    }
    request->status = rv;
    if (rv != 0) {
        snprintf(request->message, sizeof(request->message), "%s",
                 diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
    }
}

static void text_after_work_cb(uv_work_t *work, int status)
{
    struct request *request = work->data;
    struct server *server = request->conn->server;
    tdm_assert(status == 0); /* Never cancelled: close waits for the work. */
    if (request->type == TDM_PROTO_VERIFY) {
        stream_send(server, request); /* The lines not sent yet, before the last frame. */
    }
    send_text_result(request->conn, request, request->status);
    request_done(request);
    server_maybe_finish(server);
}

/* Copy a slice into a NUL-terminated array of capacity bytes. */
static void slice_copy(char *out, size_t capacity, const struct tdm_proto_slice *slice)
{
    tdm_assert(slice->size < capacity);
    if (slice->size > 0) {
        memcpy(out, slice->data, slice->size);
    }
    out[slice->size] = '\0';
}

/* Queue a QUERY or STATUS on the threadpool. Returns 0 or -ENOMEM. */
static int conn_text_request(struct conn *conn, const struct tdm_proto_msg *msg)
{
    struct request *request = tdm_calloc(1, sizeof(*request));
    if (request == NULL) {
        return -ENOMEM;
    }
    request->conn = conn;
    request->type = msg->type;
    if (msg->type == TDM_PROTO_QUERY) {
        request->request_id = msg->query.request_id;
        request->query = msg->query;
        slice_copy(request->key, sizeof(request->key), &msg->query.key);
        slice_copy(request->recipient, sizeof(request->recipient), &msg->query.recipient);
        slice_copy(request->sender, sizeof(request->sender), &msg->query.sender);
    } else if (msg->type == TDM_PROTO_HISTORY || msg->type == TDM_PROTO_QUARANTINE ||
               msg->type == TDM_PROTO_VERIFY) {
        request->request_id = msg->inspect.request_id;
        request->inspect_flags = msg->inspect.flags;
    } else {
        tdm_assert(msg->type == TDM_PROTO_STATUS);
        request->request_id = msg->status.request_id;
        const struct tdm_uv_server_config *config = &conn->server->config;
        if (config->snapshot != NULL) {
            request->snapshot = tdm_malloc(config->snapshot_size);
            if (request->snapshot == NULL) {
                tdm_free(request);
                return -ENOMEM;
            }
            config->snapshot(config->data, request->snapshot);
        }
    }
    request->work.data = request;
    int rv = uv_queue_work(conn->server->loop, &request->work, text_work_cb, text_after_work_cb);
    if (rv != 0) {
        tdm_free(request->snapshot);
        tdm_free(request);
        return rv;
    }
    conn->inflight++;
    return 0;
}

/* ---- Operator commands (PROTOCOL.md §7.5) ------------------------------------------ */

static void send_command_result(struct conn *conn, const struct request *request, int status,
                                const char *text)
{
    struct tdm_proto_msg msg = {.type = request->type == TDM_PROTO_FAILOVER
                                            ? TDM_PROTO_FAILOVER_RESULT
                                            : TDM_PROTO_SWITCHOVER_RESULT};
    msg.command_result.request_id = request->request_id;
    msg.command_result.status = status;
    msg.command_result.text.data = (const uint8_t *)text;
    msg.command_result.text.size = strlen(text);
    conn_send(conn, &msg);
}

/* tdm_uv_command_done_cb. */
/* Who sent conn's requests, for the audit lines of operator commands: the
 * authenticated name of a TLS client ("client:<name>"), or the process at the
 * other end of the local socket (its uid and pid, from SO_PEERCRED). */
static void conn_who(const struct conn *conn, char *out, size_t size)
{
    if (conn->is_link) {
        snprintf(out, size, "%s", conn->link != NULL ? tdm_uv_link_peer_name(conn->link) : "gone");
        return;
    }
    uv_os_fd_t fd = -1;
    struct ucred cred;
    socklen_t length = sizeof(cred);
    if (uv_fileno((const uv_handle_t *)&conn->pipe, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0) {
        snprintf(out, size, "the local socket, uid %u, pid %d", (unsigned)cred.uid, (int)cred.pid);
    } else {
        snprintf(out, size, "the local socket");
    }
}

/* The JSON outcome of a command's answer ("done", "refused", ...), or "". */
static void command_outcome(const char *text, char *out, size_t size)
{
    static const char key[] = "\"outcome\": \"";
    const char *at = text != NULL ? strstr(text, key) : NULL;
    size_t n = 0;
    if (at != NULL) {
        at += sizeof(key) - 1;
        while (at[n] != '\0' && at[n] != '"' && n + 1 < size) {
            n++;
        }
        memcpy(out, at, n);
    }
    out[n] = '\0';
}

static void command_done_cb(void *done_data, int status, const char *text)
{
    struct request *request = done_data;
    struct server *server = request->conn->server;
    char who[128];
    char outcome[32];
    conn_who(request->conn, who, sizeof(who));
    command_outcome(text, outcome, sizeof(outcome));
    tdm_tracef("client %" PRIu64 " (%s): %s answered: %s%s", request->conn->id, who,
               tdm_proto_type_name(request->type), status == 0 ? "outcome " : "",
               status == 0 ? outcome : tandem_strerror(status));
    send_command_result(request->conn, request, status, text);
    request_done(request);
    server_maybe_finish(server);
}

/* SWITCHOVER or FAILOVER: hand it to the node; answered once it is decided. */
static int conn_command(struct conn *conn, const struct tdm_proto_msg *msg)
{
    struct request *request = tdm_calloc(1, sizeof(*request));
    if (request == NULL) {
        return -ENOMEM;
    }
    request->conn = conn;
    request->type = msg->type;
    request->request_id = msg->command.request_id;
    conn->inflight++;
    const struct tdm_uv_server_config *config = &conn->server->config;
    char who[128];
    conn_who(conn, who, sizeof(who));
    uint8_t flags = msg->command.flags;
    tdm_tracef("client %" PRIu64 " (%s): %s%s%s%s%s requested", conn->id, who,
               tdm_proto_type_name(msg->type), msg->command.target[0] != '\0' ? " to " : "",
               msg->command.target, (flags & TANDEM_FAILOVER_FORCE) != 0 ? ", forced" : "",
               (flags & TANDEM_FAILOVER_DRY_RUN) != 0 ? ", dry run" : "");
    struct tdm_diag diag = {{0}};
    int rv = TANDEM_EINVALID;
    if (config->command == NULL) {
        tdm_diag_printf(&diag, "a standalone node has no replicas: nothing to %s",
                        msg->type == TDM_PROTO_FAILOVER ? "promote" : "switch over to");
    } else {
        rv = config->command(config->data, msg->type == TDM_PROTO_FAILOVER, msg->command.target,
                             msg->command.flags, command_done_cb, request, &diag);
    }
    if (rv != 0) {
        /* Refused before it ran: the callback never runs. Answer now. */
        message_sanitize(diag.message);
        tdm_tracef("client %" PRIu64 " (%s): %s refused: %s", conn->id, who,
                   tdm_proto_type_name(msg->type),
                   diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        send_command_result(conn, request, rv,
                            diag.message[0] != '\0' ? diag.message : tandem_strerror(rv));
        conn->inflight--; /* Not request_done(): the caller is conn_process(). */
        request_free(request);
    }
    return 0;
}

/* ---- Reading frames -------------------------------------------------------------- */

/* Unlink conn from the server and free it: its pipe or link is closed. */
static void conn_free(struct conn *conn)
{
    struct server *server = conn->server;
    tdm_assert(conn->inflight == 0);
    tdm_assert(conn->writes == 0);
    tdm_assert(conn->answers == NULL);
    tdm_assert(conn->link == NULL);
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        server->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    tdm_assert(server->conn_count > 0);
    server->conn_count--;
    tdm_free(conn->frame_buffer);
    tdm_free(conn->read_buffer);
    tdm_free(conn);
    server_maybe_finish(server);
}

static void conn_close_cb(uv_handle_t *handle)
{
    struct conn *conn = handle->data;
    tdm_assert(!conn->is_link);
    conn_free(conn);
}

/* Link: close it (what was handed to it is still sent, then close_notify) and
 * free conn from its on_close; a link already gone frees conn now. */
static void conn_link_close(struct conn *conn)
{
    tdm_assert(conn->is_link);
    tdm_assert(conn->closing);
    conn_answers_free(conn);
    if (conn->link != NULL) {
        tdm_uv_link_close(conn->link);
        return;
    }
    conn_free(conn);
}

/* Close conn once nothing refers to it: no request in flight, no write. */
static void conn_maybe_close(struct conn *conn)
{
    if (conn->closing) {
        return;
    }
    if (!conn->eof && !conn->read_done && !conn->server->closing) {
        return;
    }
    if (conn->inflight > 0 || conn->writes > 0) {
        return;
    }
    if (conn->answers != NULL && !conn->eof) {
        return; /* A link still owes answers: on_drain sends them. */
    }
    conn->closing = true;
    if (conn->is_link) {
        conn_link_close(conn);
        return;
    }
    uv_close((uv_handle_t *)&conn->pipe, conn_close_cb);
}

/* A protocol error: trace it, stop reading, close when requests are done. */
static void conn_fail(struct conn *conn, int rv, const struct tdm_diag *diag)
{
    tdm_tracef("client %" PRIu64 ": closing connection: %s%s%s", conn->id, tandem_strerror(rv),
               diag->message[0] != '\0' ? ": " : "", diag->message);
    conn->eof = true;
    if (conn->reading) {
        uv_read_stop((uv_stream_t *)&conn->pipe);
        conn->reading = false;
    }
    if (conn->link != NULL) {
        tdm_uv_link_pause(conn->link);
    }
    conn_maybe_close(conn);
}

/* One decoded request, from the pipe's reader or an adopted link. Returns 0
 * (in flight or answered) or a code that closes the connection. */
static int conn_dispatch_msg(struct conn *conn, const struct tdm_proto_msg *msg,
                             struct tdm_diag *diag)
{
    if (!tdm_proto_type_is_client(msg->type)) {
        return TDM_CORRUPT(diag, "%s frame on a client link", tdm_proto_type_name(msg->type));
    }
    switch (msg->type) {
    case TDM_PROTO_APPEND_REQUEST:
        return conn_append(conn, &msg->append_request, diag);
    case TDM_PROTO_QUERY:
    case TDM_PROTO_STATUS:
    case TDM_PROTO_HISTORY:
    case TDM_PROTO_QUARANTINE:
    case TDM_PROTO_VERIFY:
        return conn_text_request(conn, msg);
    case TDM_PROTO_SWITCHOVER:
    case TDM_PROTO_FAILOVER:
        return conn_command(conn, msg);
    default:
        return TDM_CORRUPT(diag, "%s frame: a client sends only requests",
                           tdm_proto_type_name(msg->type));
    }
}

static int conn_dispatch(struct conn *conn, const struct tdm_proto_frame *frame,
                         struct tdm_diag *diag)
{
    if (!tdm_proto_type_is_client(frame->type)) {
        return TDM_CORRUPT(diag, "%s frame on a client link", tdm_proto_type_name(frame->type));
    }
    struct tdm_proto_msg *msg = tdm_malloc(sizeof(*msg));
    if (msg == NULL) {
        return -ENOMEM;
    }
    int rv = tdm_proto_decode(frame, msg, diag);
    if (rv == 0) {
        rv = conn_dispatch_msg(conn, msg, diag);
    }
    tdm_free(msg);
    return rv;
}

/* Feed the unfed bytes of the read buffer to the reader and dispatch frames
 * until they are used up or too many requests are in flight. */
static void conn_process(struct conn *conn)
{
    struct server *server = conn->server;
    if (conn->is_link) {
        return; /* The link delivers decoded frames itself (conn_link_frame_cb). */
    }
    while (!conn->eof && conn->inflight < server->config.requests_max) {
        struct tdm_proto_frame frame;
        struct tdm_diag diag = {{0}};
        int rv = tdm_proto_reader_next(&conn->reader, &frame, &diag);
        if (rv == 0) {
            rv = conn_dispatch(conn, &frame, &diag);
            if (rv != 0) {
                conn_fail(conn, rv, &diag);
                return;
            }
            continue;
        }
        if (rv != -EAGAIN) {
            conn_fail(conn, rv, &diag);
            return;
        }
        if (conn->read_start == conn->read_end) {
            return;
        }
        size_t consumed = 0;
        rv = tdm_proto_reader_feed(&conn->reader, conn->read_buffer + conn->read_start,
                                   conn->read_end - conn->read_start, &consumed, &diag);
        if (rv != 0) {
            conn_fail(conn, rv, &diag);
            return;
        }
        conn->read_start += consumed;
    }
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct conn *conn = handle->data;
    (void)suggested;
    tdm_assert(conn->read_start == conn->read_end);
    conn->read_start = 0;
    conn->read_end = 0;
    *buf = uv_buf_init((char *)conn->read_buffer, SERVER_READ_SIZE);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *conn = stream->data;
    (void)buf;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        struct tdm_diag diag = {{0}};
        if (nread != UV_EOF) {
            tdm_tracef("client %" PRIu64 ": read: %s", conn->id, uv_strerror((int)nread));
        } else if (tdm_proto_reader_eof(&conn->reader, &diag) != 0) {
            tdm_tracef("client %" PRIu64 ": %s", conn->id, diag.message);
        }
        uv_read_stop(stream);
        conn->reading = false;
        if (nread == UV_EOF) {
            conn->read_done = true; /* A half-closed client still gets its answers. */
        } else {
            conn->eof = true;
        }
        conn_maybe_close(conn);
        return;
    }
    conn->read_end = (size_t)nread;
    conn_process(conn);
    if (conn->read_start < conn->read_end && conn->reading) {
        /* Backpressure: too many requests in flight; resume in request_done. */
        uv_read_stop(stream);
        conn->reading = false;
    }
}

/* Read again if the read buffer is used up and reading is allowed. */
static void conn_read_resume(struct conn *conn)
{
    if (conn->reading || conn->eof || conn->read_done || conn->closing || conn->server->closing) {
        return;
    }
    if (conn->read_start < conn->read_end) {
        return;
    }
    if (conn->inflight >= conn->server->config.requests_max) {
        return;
    }
    if (conn->is_link) {
        if (conn->link != NULL && conn->answers == NULL) {
            tdm_uv_link_resume(conn->link); /* Delivers from a later loop turn. */
        }
        return;
    }
    int rv = uv_read_start((uv_stream_t *)&conn->pipe, conn_alloc_cb, conn_read_cb);
    tdm_assert(rv == 0);
    conn->reading = true;
}

/* ---- Accepting ------------------------------------------------------------------- */

static void reject_close_cb(uv_handle_t *handle)
{
    tdm_free(handle);
}

/* Accept one connection and close it at once: the server is full. */
static void server_reject(struct server *server)
{
    uv_pipe_t *pipe = tdm_malloc(sizeof(*pipe));
    if (pipe == NULL) {
        return;
    }
    int rv = uv_pipe_init(server->loop, pipe, 0);
    tdm_assert(rv == 0);
    (void)uv_accept((uv_stream_t *)&server->listener, (uv_stream_t *)pipe);
    tdm_tracef("client refused: %u connections open (the limit)", server->conn_count);
    uv_close((uv_handle_t *)pipe, reject_close_cb);
}

/* Number conn and put it in the server's list. */
static void server_conn_add(struct server *server, struct conn *conn)
{
    tdm_assert(server->conn_count < server->config.clients_max);
    tdm_assert(conn->next == NULL);
    conn->server = server;
    conn->id = ++server->conn_next_id;
    conn->next = server->conns;
    if (server->conns != NULL) {
        server->conns->prev = conn;
    }
    server->conns = conn;
    server->conn_count++;
}

static void server_connection_cb(uv_stream_t *listener, int status)
{
    struct server *server = listener->data;
    if (status != 0) {
        tdm_tracef("accept: %s", uv_strerror(status));
        return;
    }
    if (server->conn_count >= server->config.clients_max) {
        server_reject(server);
        return;
    }
    struct conn *conn = tdm_calloc(1, sizeof(*conn));
    uint8_t *frame_buffer = tdm_malloc((size_t)server->config.frame_size_max + 4);
    uint8_t *read_buffer = tdm_malloc(SERVER_READ_SIZE);
    if (conn == NULL || frame_buffer == NULL || read_buffer == NULL) {
        tdm_free(conn);
        tdm_free(frame_buffer);
        tdm_free(read_buffer);
        server_reject(server);
        return;
    }
    conn->frame_buffer = frame_buffer;
    conn->read_buffer = read_buffer;
    tdm_proto_reader_init(&conn->reader, frame_buffer, (size_t)server->config.frame_size_max + 4);
    int rv = uv_pipe_init(server->loop, &conn->pipe, 0);
    tdm_assert(rv == 0);
    conn->pipe.data = conn;
    server_conn_add(server, conn);
    rv = uv_accept(listener, (uv_stream_t *)&conn->pipe);
    if (rv != 0) {
        tdm_tracef("accept: %s", uv_strerror(rv));
        conn->eof = true;
        conn_maybe_close(conn);
        return;
    }
    conn_read_resume(conn);
}

/* ---- Adopted TLS links (PROTOCOL.md §7.4) ---------------------------------------- */

/* tdm_uv_link_frame_cb: one decoded frame of an adopted client link. */
static void conn_link_frame_cb(struct tdm_uv_link *link, const struct tdm_proto_msg *msg,
                               void *data)
{
    struct conn *conn = data;
    tdm_assert(conn->is_link);
    tdm_assert(conn->link == link);
    if (conn->eof || conn->closing || conn->server->closing) {
        return; /* Taking no more requests: the link is paused or closing. */
    }
    struct tdm_diag diag = {{0}};
    int rv = conn_dispatch_msg(conn, msg, &diag);
    if (rv != 0) {
        conn_fail(conn, rv, &diag);
        return;
    }
    if (conn->inflight >= conn->server->config.requests_max || conn->answers != NULL) {
        /* Backpressure: request_done() or the drain resumes (conn_read_resume). */
        tdm_uv_link_pause(link);
    }
}

/* Send the queued answers in order until the link refuses again. Returns 0,
 * or the code of a send that failed otherwise (the answers are then lost). */
static int conn_link_flush(struct conn *conn, struct tdm_proto_msg *msg, struct tdm_diag *diag)
{
    while (conn->answers != NULL) {
        struct answer *answer = conn->answers;
        struct tdm_proto_frame frame;
        int rv = tdm_proto_frame_parse(answer->data, answer->size, &frame, diag);
        tdm_assert(rv == 0); /* Encoded by conn_answer_queue(). */
        rv = tdm_proto_decode(&frame, msg, diag);
        tdm_assert(rv == 0);
        rv = tdm_uv_link_send(conn->link, msg, diag);
        if (rv == TANDEM_EBUSY) {
            return 0; /* on_drain again. */
        }
        conn->answers = answer->next;
        if (conn->answers == NULL) {
            conn->answers_tail = NULL;
        }
        tdm_free(answer);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* tdm_uv_link_drain_cb: the link takes frames again. */
static void conn_link_drain_cb(struct tdm_uv_link *link, void *data)
{
    struct conn *conn = data;
    tdm_assert(conn->link == link);
    if (conn->answers == NULL || conn->eof) {
        return;
    }
    struct tdm_diag diag = {{0}};
    struct tdm_proto_msg *msg = tdm_malloc(sizeof(*msg));
    int rv = msg == NULL ? -ENOMEM : conn_link_flush(conn, msg, &diag);
    if (rv != 0) {
        conn_link_lost_answer(conn, msg != NULL ? msg->type : 0, rv, &diag);
    } else if (conn->answers == NULL) {
        conn_read_resume(conn);
    }
    tdm_free(msg);
    conn_maybe_close(conn);
}

/* tdm_uv_link_close_cb: the link is gone (we closed it, or its peer did, or it
 * failed: the link traced why). */
static void conn_link_close_cb(struct tdm_uv_link *link, int status, const struct tdm_diag *diag,
                               void *data)
{
    struct conn *conn = data;
    (void)status;
    (void)diag;
    tdm_assert(conn->is_link);
    tdm_assert(conn->link == link);
    conn->link = NULL;
    conn->eof = true; /* Nobody to answer: requests in flight complete unanswered. */
    conn_answers_free(conn);
    if (conn->closing) {
        conn_free(conn);
        return;
    }
    conn_maybe_close(conn);
}

int tdm_uv_server_adopt(struct tdm_uv_server *handle, struct tdm_uv_link *link,
                        struct tdm_diag *diag)
{
    struct server *server = (struct server *)handle;
    tdm_assert(server != NULL);
    tdm_assert(link != NULL);
    const char *peer = tdm_uv_link_peer_name(link);
    if (strncmp(peer, TDM_TLS_CLIENT_PREFIX, strlen(TDM_TLS_CLIENT_PREFIX)) != 0) {
        tdm_diag_printf(diag,
                        "%s holds a node certificate: client service is for "
                        "client:<name> certificates only",
                        peer[0] != '\0' ? peer : "peer");
        return TANDEM_EINVALID;
    }
    if (server->closing) {
        tdm_diag_printf(diag, "the server is closing");
        return TANDEM_ECANCELED;
    }
    if (server->conn_count >= server->config.clients_max) {
        tdm_diag_printf(diag, "%u connections open (the limit)", server->conn_count);
        return TANDEM_EBUSY;
    }
    struct conn *conn = tdm_calloc(1, sizeof(*conn));
    if (conn == NULL) {
        return -ENOMEM;
    }
    conn->is_link = true;
    conn->link = link;
    server_conn_add(server, conn);
    const struct tdm_uv_link_callbacks callbacks = {
        .on_frame = conn_link_frame_cb,
        .on_drain = conn_link_drain_cb,
        .on_close = conn_link_close_cb,
        .data = conn,
    };
    tdm_uv_link_set_callbacks(link, &callbacks);
    return 0;
}

/* ---- Start and close ------------------------------------------------------------- */

/* Remove path if it is a socket nobody answers on. Returns 0 (nothing there, or
 * removed) or -EADDRINUSE when a server answers. */
static int server_remove_stale(const char *path, struct tdm_diag *diag)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return 0;
    }
    if (!S_ISSOCK(st.st_mode)) {
        tdm_diag_printf(diag, "%s exists and is not a socket", path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int rv = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    close(fd);
    if (rv == 0) {
        tdm_diag_printf(diag, "a server already answers on %s", path);
        return -EADDRINUSE;
    }
    tdm_tracef("removing stale socket %s", path);
    if (unlink(path) != 0 && errno != ENOENT) {
        return -errno;
    }
    return 0;
}

static void server_handle_close_cb(uv_handle_t *handle)
{
    struct server *server = handle->data;
    tdm_assert(server->handles > 0);
    server->handles--;
    server_maybe_finish(server);
}

static int server_listen(struct server *server, struct tdm_diag *diag)
{
    int rv = uv_pipe_bind(&server->listener, server->socket_path);
    if (rv != 0) {
        tdm_diag_printf(diag, "bind %s: %s", server->socket_path, uv_strerror(rv));
        return rv;
    }
    /* Before listen(): until then a connect() is refused, so nobody gets in
     * through the umask's wider permissions. */
    if (chmod(server->socket_path, 0600) != 0) {
        rv = -errno;
        tdm_diag_printf(diag, "chmod %s: %s", server->socket_path, strerror(errno));
        return rv;
    }
    rv = uv_listen((uv_stream_t *)&server->listener, SERVER_BACKLOG, server_connection_cb);
    if (rv != 0) {
        tdm_diag_printf(diag, "listen %s: %s", server->socket_path, uv_strerror(rv));
    }
    return rv;
}

static void server_config_defaults(struct tdm_uv_server_config *config)
{
    if (config->clients_max == 0) {
        config->clients_max = TDM_UV_CLIENTS_MAX;
    }
    if (config->requests_max == 0) {
        config->requests_max = TDM_UV_REQUESTS_MAX;
    }
    if (config->frame_size_max == 0) {
        config->frame_size_max = TDM_UV_FRAME_SIZE_DEFAULT;
    }
    if (config->frame_size_max > TDM_PROTO_FRAME_SIZE_MAX) {
        config->frame_size_max = TDM_PROTO_FRAME_SIZE_MAX;
    }
}

int tdm_uv_server_start(uv_loop_t *loop, const struct tdm_uv_server_config *config,
                        struct tdm_uv_server **out, struct tdm_diag *diag)
{
    tdm_assert(loop != NULL);
    tdm_assert(config->t != NULL);
    tdm_assert(config->format != NULL && config->status != NULL);
    struct server *server = tdm_calloc(1, sizeof(*server));
    if (server == NULL) {
        return -ENOMEM;
    }
    if (strlen(config->socket_path) >= sizeof(server->socket_path)) {
        tdm_diag_printf(diag, "socket path too long: %s", config->socket_path);
        tdm_free(server);
        return -ENAMETOOLONG;
    }
    server->loop = loop;
    server->config = *config;
    server_config_defaults(&server->config);
    snprintf(server->socket_path, sizeof(server->socket_path), "%s", config->socket_path);
    server->config.socket_path = server->socket_path;
    int rv = server_remove_stale(server->socket_path, diag);
    if (rv != 0) {
        tdm_free(server);
        return rv;
    }
    rv = uv_mutex_init(&server->mutex);
    tdm_assert(rv == 0);
    rv = uv_async_init(loop, &server->async, server_async_cb);
    tdm_assert(rv == 0);
    rv = uv_pipe_init(loop, &server->listener, 0);
    tdm_assert(rv == 0);
    server->async.data = server;
    server->listener.data = server;
    server->handles = 2;
    rv = server_listen(server, diag);
    if (rv != 0) {
        /* Close the handles; the caller runs the loop once to reap them. */
        server->closing = true;
        server->close_cb = server_start_failed_cb;
        server->async_closing = true;
        uv_close((uv_handle_t *)&server->listener, server_handle_close_cb);
        uv_close((uv_handle_t *)&server->async, server_handle_close_cb);
        return rv;
    }
    *out = (struct tdm_uv_server *)server;
    return 0;
}

/* The last step of a close: once every connection and handle is gone. */
static void server_maybe_finish(struct server *server)
{
    if (!server->closing || server->close_cb == NULL) {
        return;
    }
    if (server->conns != NULL) {
        return;
    }
    if (!server->async_closing) {
        /* Every connection is closed: no append callback can come any more. */
        server->async_closing = true;
        uv_close((uv_handle_t *)&server->async, server_handle_close_cb);
        return;
    }
    if (server->handles > 0) {
        return;
    }
    tdm_assert(server->done_head == NULL);
    (void)unlink(server->socket_path);
    uv_mutex_destroy(&server->mutex);
    tdm_uv_server_close_cb cb = server->close_cb;
    void *data = server->close_data;
    tdm_free(server);
    cb(data);
}

static void server_start_failed_cb(void *data)
{
    (void)data;
}

void tdm_uv_server_close(struct tdm_uv_server *handle, tdm_uv_server_close_cb cb, void *data)
{
    struct server *server = (struct server *)handle;
    tdm_assert(!server->closing);
    tdm_assert(cb != NULL);
    server->closing = true;
    server->close_cb = cb;
    server->close_data = data;
    /* A verify's pass may take minutes: it ends now, its client told why. */
    tdm_node_verify_stop(server->config.t);
    uv_close((uv_handle_t *)&server->listener, server_handle_close_cb);
    for (struct conn *conn = server->conns; conn != NULL;) {
        struct conn *next = conn->next;
        if (conn->reading) {
            uv_read_stop((uv_stream_t *)&conn->pipe);
            conn->reading = false;
        }
        if (conn->link != NULL) {
            tdm_uv_link_pause(conn->link);
        }
        conn_maybe_close(conn);
        conn = next;
    }
    server_maybe_finish(server);
}

/* ---- A loop of its own, stopped by a signal or by its control ------------------- */

/* Thread: every field is the loop thread's, except stop_requested and async,
 * which any thread reads and writes under mutex. */
struct tdm_uv_serve_control {
    pthread_mutex_t mutex;
    bool stop_requested; /* tdm_uv_serve_stop() was called. */
    uv_async_t *async;   /* The running loop's stop handle; NULL when none runs. */
    tdm_uv_serve_serving_cb serving;
    void *data;
};

struct serve {
    uv_signal_t signals[2]; /* SIGTERM, SIGINT; when control is NULL. */
    uv_async_t stop;        /* tdm_uv_serve_stop(); when control is set. */
    struct tdm_uv_serve_control *control;
    struct tdm_uv_server *server;
    const struct tdm_uv_serve_hooks *hooks; /* NULL: none. */
    bool stopping;
};

int tdm_uv_serve_control_new(tdm_uv_serve_serving_cb serving, void *data,
                             struct tdm_uv_serve_control **out)
{
    struct tdm_uv_serve_control *control = tdm_calloc(1, sizeof(*control));
    if (control == NULL) {
        return -ENOMEM;
    }
    int rv = pthread_mutex_init(&control->mutex, NULL);
    if (rv != 0) {
        tdm_free(control);
        return -rv;
    }
    control->serving = serving;
    control->data = data;
    *out = control;
    return 0;
}

void tdm_uv_serve_stop(struct tdm_uv_serve_control *control)
{
    tdm_assert(control != NULL);
    pthread_mutex_lock(&control->mutex);
    control->stop_requested = true;
    if (control->async != NULL) {
        int rv = uv_async_send(control->async);
        tdm_assert(rv == 0);
    }
    pthread_mutex_unlock(&control->mutex);
}

void tdm_uv_serve_control_free(struct tdm_uv_serve_control *control)
{
    if (control == NULL) {
        return;
    }
    tdm_assert(control->async == NULL);
    pthread_mutex_destroy(&control->mutex);
    tdm_free(control);
}

static void serve_closed_cb(void *data)
{
    struct serve *serve = data;
    tdm_tracef("stopped: every acknowledged append is durable");
    if (serve->hooks != NULL && serve->hooks->stop != NULL) {
        serve->hooks->stop(serve->hooks->data);
    }
}

/* Close what stops the loop: the signal handlers, or the stop handle (which no
 * thread can reach once control->async is cleared). */
static void serve_unwatch(struct serve *serve)
{
    if (serve->control == NULL) {
        for (size_t i = 0; i < 2; i++) {
            uv_close((uv_handle_t *)&serve->signals[i], NULL);
        }
        return;
    }
    pthread_mutex_lock(&serve->control->mutex);
    tdm_assert(serve->control->async == &serve->stop);
    serve->control->async = NULL;
    pthread_mutex_unlock(&serve->control->mutex);
    uv_close((uv_handle_t *)&serve->stop, NULL);
}

static void serve_start_failed_cb(void *data)
{
    struct serve *serve = data;
    serve_unwatch(serve);
}

/* Stop as on SIGTERM: stop watching, then close the server cleanly. */
static void serve_begin_stop(struct serve *serve, const char *cause)
{
    if (serve->stopping) {
        return;
    }
    serve->stopping = true;
    tdm_tracef("stopping%s%s: no new connections; finishing requests in flight",
               cause != NULL ? " on " : "", cause != NULL ? cause : "");
    serve_unwatch(serve);
    tdm_uv_server_close(serve->server, serve_closed_cb, serve);
}

static void serve_signal_cb(uv_signal_t *signal, int signum)
{
    serve_begin_stop(signal->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void serve_stop_cb(uv_async_t *async)
{
    serve_begin_stop(async->data, NULL);
}

/* Watch for what stops the loop: SIGTERM and SIGINT, or tdm_uv_serve_stop(). */
static void serve_watch(struct serve *serve, uv_loop_t *loop)
{
    if (serve->control == NULL) {
        const int signums[2] = {SIGTERM, SIGINT};
        for (size_t i = 0; i < 2; i++) {
            int r = uv_signal_init(loop, &serve->signals[i]);
            tdm_assert(r == 0);
            serve->signals[i].data = serve;
            r = uv_signal_start(&serve->signals[i], serve_signal_cb, signums[i]);
            tdm_assert(r == 0);
        }
        return;
    }
    int r = uv_async_init(loop, &serve->stop, serve_stop_cb);
    tdm_assert(r == 0);
    serve->stop.data = serve;
    pthread_mutex_lock(&serve->control->mutex);
    tdm_assert(serve->control->async == NULL);
    serve->control->async = &serve->stop;
    pthread_mutex_unlock(&serve->control->mutex);
}

/* The server serves: tell the control's owner, and stop at once if it asked
 * before the loop ran. */
static void serve_serving(struct serve *serve)
{
    struct tdm_uv_serve_control *control = serve->control;
    if (control == NULL) {
        return;
    }
    if (control->serving != NULL) {
        control->serving(control->data);
    }
    pthread_mutex_lock(&control->mutex);
    bool stop = control->stop_requested;
    pthread_mutex_unlock(&control->mutex);
    if (stop) {
        serve_begin_stop(serve, NULL);
    }
}

int tdm_uv_serve(const struct tdm_uv_server_config *config, const struct tdm_uv_serve_hooks *hooks,
                 struct tdm_uv_serve_control *control, struct tdm_diag *diag)
{
    if (control == NULL) { /* A client that goes away before its answer must not kill
                            * the node: the write then fails with EPIPE, which the
                            * server handles. (With a control, the caller's thread
                            * blocks SIGPIPE instead.) */
        (void)signal(SIGPIPE, SIG_IGN);
    }
    uv_loop_t loop;
    int rv = uv_loop_init(&loop);
    if (rv != 0) {
        tdm_diag_printf(diag, "uv_loop_init: %s", uv_strerror(rv));
        return rv;
    }
    struct serve serve = {.hooks = hooks, .control = control};
    rv = tdm_uv_server_start(&loop, config, &serve.server, diag);
    if (rv == 0) {
        serve_watch(&serve, &loop);
        tdm_tracef("listening on %s", config->socket_path);
        if (hooks != NULL && hooks->start != NULL) {
            rv = hooks->start(hooks->data, &loop, serve.server, diag);
            if (rv != 0) {
                serve.stopping = true;
                tdm_uv_server_close(serve.server, serve_start_failed_cb, &serve);
            }
        }
        if (rv == 0) {
            serve_serving(&serve);
        }
    }
    if (control == NULL) {
        /* A caller may have blocked these while it opened the node, so that a
         * SIGTERM then is not lost: it is delivered now, to the handlers above. */
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        (void)pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
    }
    /* On a failed start this only reaps the handles start closed. */
    int run = uv_run(&loop, UV_RUN_DEFAULT);
    tdm_assert(run == 0);
    int closed = uv_loop_close(&loop);
    tdm_assert(closed == 0);
    return rv;
}
