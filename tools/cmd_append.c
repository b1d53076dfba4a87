/* tools/cmd_append.c: "tandem append --node ADDR [--cert DIR] < records.jsonl".
 *
 * Contract (DESIGN "Public contracts"): stdin is read as a stream; each line is
 * checked before it is written; stdout gets one line {"lsn": N} per record, in
 * input order, once the record is durable, and nothing else; at the first bad
 * line the command stops with exit status 1 and "tandem: line N: <field>: ...";
 * the lines before it are stored and their LSNs printed, none after it.
 *
 * Happy path, one loop on the main thread:
 * 1. Parse every complete line already in the input buffer (tdm_jsonl_parse,
 *    then tandem_record_validate) into the current batch, up to
 *    APPEND_BATCH_RECORDS_MAX records.
 * 2. When no complete line is left, ask poll(2) with timeout 0 whether more
 *    input is there right now. If it is, read it and go back to 1; if not,
 *    hand the batch to tandem_append_async() at once: records arriving on a
 *    pipe are written while more is to come, and a file or a fast producer
 *    fills batches of APPEND_BATCH_RECORDS_MAX.
 * 3. Up to APPEND_INFLIGHT_MAX batches are in flight, so that parsing overlaps
 *    the engine's fdatasync (their records share fdatasyncs: group commit).
 *    The completion callback, on the engine's commit thread, marks its batch
 *    done and writes a byte to a wake-up pipe.
 * 4. poll(2) waits on stdin and the wake-up pipe together. Completed batches
 *    are printed strictly in submission order (a ring), and stdout is flushed,
 *    so each LSN appears as soon as its record and all before it are durable.
 * 5. At end of input, wait for every batch in flight, print, exit 0.
 *
 * Failure modes:
 * - A bad line (JSON, field, limit, longer than APPEND_LINE_SIZE_MAX): the
 *   batch before it is submitted, everything in flight is waited for and
 *   printed, then the error; exit 1.
 * - A failed write (TANDEM_EFAILED, -EIO, ...): LSNs are printed up to the
 *   batch before the failed one and no further, even if later batches were
 *   stored, so that line k of the output is always the LSN of record k; exit 1.
 * - TANDEM_EBUSY from the engine: wait for a batch in flight (or 1 ms) and
 *   retry, at most APPEND_BUSY_RETRY_MAX times.
 * Through tandemd: when a tandemd answers on DIR/tandemd.sock, or ADDR is a
 * node's HOST:PORT (TCP + mutual TLS, net/client.h), each batch goes to the
 * node as one APPEND_REQUEST (PROTOCOL.md §7) instead of to
 * tandem_append_async(): lines are parsed and validated here exactly as above,
 * the wake-up descriptor is the socket, and an APPEND_RESULT completes its
 * batch (matched by request_id). A lost connection fails every batch in
 * flight: no LSN is printed for them.
 * Close: tandem_close() (or closing the connection) after the last batch
 * completed. */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/bytes.h"
#include "engine/codec.h"
#include "jsonl.h"
#include "net/client.h"

#define APPEND_BATCH_RECORDS_MAX  1000       /* Records per tandem_append_async() call. */
#define APPEND_INFLIGHT_MAX       8          /* Batches submitted and not yet printed. */
#define APPEND_LINE_SIZE_MAX      (1u << 20) /* Bytes in one input line, newline excluded. */
#define APPEND_READ_SIZE          ((size_t)256 * 1024) /* Bytes asked of one read(2). */
#define APPEND_BUSY_RETRY_MAX     60000                /* TANDEM_EBUSY retries (about 60 s). */
#define APPEND_STDOUT_BUFFER_SIZE (64u * 1024u)

tdm_static_assert(APPEND_BATCH_RECORDS_MAX <= TANDEM_APPEND_RECORDS_MAX);

enum append_state {
    APPEND_BATCH_FILLING = 1, /* Main thread adds records. */
    APPEND_BATCH_INFLIGHT,    /* Submitted; the commit thread will complete it. */
    APPEND_BATCH_DONE,        /* Completed: status and lsn_first are valid. */
};

/* One tandem_append_async() call. Thread: main thread, except the completion
 * fields, which the commit thread writes before it stores APPEND_BATCH_DONE
 * (release) and the main thread reads after it loads that state (acquire). */
struct append_batch {
    struct tdm_jsonl_record parsed[APPEND_BATCH_RECORDS_MAX]; /* Own the strings. */
    struct tandem_record records[APPEND_BATCH_RECORDS_MAX];   /* Point into parsed. */
    size_t count;                                             /* Records in the batch. */
    uint64_t line_first;                                      /* Input line of records[0]. */
    _Atomic int state;                                        /* enum append_state. */
    int status;                                               /* Completion code. */
    uint64_t lsn_first;                                       /* Valid when status is 0. */
    int wake_fd;                                              /* Write end of the pipe. */
    uint64_t request_id;       /* Through tandemd: the APPEND_REQUEST's id. */
    struct tandem_diag remote; /* Through tandemd: why it failed. */
};

/* The input buffer: bytes [start, end) of data are read and not yet parsed. */
struct append_input {
    char *data;
    size_t capacity;      /* Bytes allocated. */
    size_t start;         /* First unparsed byte. */
    size_t end;           /* One past the last byte read. */
    bool eof;             /* read(2) returned 0. */
    uint64_t line_number; /* 1-based number of the last line taken. */
};

/* Thread: main thread only, except what struct append_batch says. */
struct append {
    struct tandem *t;          /* The open directory; NULL when tandemd writes. */
    struct tdm_client *client; /* The connection to tandemd; NULL when t is open. */
    struct tdm_proto_msg *msg; /* Frame scratch, with client. */
    uint8_t *entries;          /* Encoded records of one request, with client. */
    struct append_batch *ring; /* APPEND_INFLIGHT_MAX + 1 batches. */
    size_t head;               /* Oldest batch not yet printed. */
    size_t inflight;           /* Batches submitted and not yet printed. */
    int wake_fds[2];           /* Completions write to [1]; poll reads [0]. */
    struct append_input input;
    int failed_status;              /* The failed write earliest in input order, or 0. */
    uint64_t failed_line;           /* Input line of its first record. */
    bool print_stopped;             /* A batch at the head failed: print no more. */
    struct tandem_diag failed_diag; /* Its detail, when the engine gave one. */
    uint64_t printed;               /* LSN lines printed. */
};

#define APPEND_RING_SIZE (APPEND_INFLIGHT_MAX + 1)

/* Why append_parse_available() stopped, besides needing more input. */
#define APPEND_STOP_BAD_LINE 1
#define APPEND_STOP_WRITE    2

static struct append_batch *append_current(struct append *append)
{
    tdm_assert(append->inflight < APPEND_RING_SIZE);
    struct append_batch *batch =
        &append->ring[(append->head + append->inflight) % APPEND_RING_SIZE];
    tdm_assert(atomic_load(&batch->state) == APPEND_BATCH_FILLING);
    return batch;
}

/* Completion of tandem_append_async(): runs on the engine's commit thread. */
static void append_done_cb(void *data, int status, uint64_t lsn_first)
{
    struct append_batch *batch = data;
    tdm_assert(atomic_load(&batch->state) == APPEND_BATCH_INFLIGHT);
    batch->status = status;
    batch->lsn_first = lsn_first;
    int wake_fd = batch->wake_fd;
    atomic_store_explicit(&batch->state, APPEND_BATCH_DONE, memory_order_release);
    /* A full pipe already holds a wake-up: EAGAIN is harmless. */
    char byte = 1;
    ssize_t written = write(wake_fd, &byte, 1);
    (void)written;
}

static void append_batch_release(struct append_batch *batch)
{
    for (size_t i = 0; i < batch->count; i++) {
        tdm_jsonl_record_free(&batch->parsed[i]);
    }
    batch->count = 0;
    batch->status = 0;
    batch->lsn_first = 0;
    atomic_store(&batch->state, APPEND_BATCH_FILLING);
}

/* Note a failed write of the batch whose first record is on input line
 * line_first. Batches fail out of input order (a submission can fail while
 * earlier batches are in flight), so the report names the earliest. */
static void append_failed(struct append *append, int status, uint64_t line_first)
{
    tdm_assert(status < 0);
    tdm_assert(line_first > 0);
    if (append->failed_status == 0 || line_first < append->failed_line) {
        append->failed_status = status;
        append->failed_line = line_first;
    }
}

/* Print the head batch's LSNs (unless a batch before it failed) and release it. */
static void append_print_head(struct append *append)
{
    struct append_batch *batch = &append->ring[append->head];
    tdm_assert(append->inflight > 0);
    tdm_assert(batch->count > 0);
    tdm_assert(atomic_load(&batch->state) == APPEND_BATCH_DONE);
    if (batch->status != 0) {
        if (append->failed_status == 0 || batch->line_first < append->failed_line) {
            append->failed_diag = batch->remote;
        }
        append_failed(append, batch->status, batch->line_first);
        append->print_stopped = true;
    }
    if (!append->print_stopped) {
        for (size_t i = 0; i < batch->count; i++) {
            printf("{\"lsn\": %" PRIu64 "}\n", batch->lsn_first + (uint64_t)i);
        }
        append->printed += batch->count;
    }
    append_batch_release(batch);
    append->head = (append->head + 1) % APPEND_RING_SIZE;
    append->inflight--;
}

/* The descriptor that becomes readable when a batch completes. */
static int append_wake_fd(const struct append *append)
{
    return append->client != NULL ? append->client->fd : append->wake_fds[0];
}

/* A batch in flight through tandemd completed with status. */
static void append_remote_done(struct append_batch *batch, int status, uint64_t lsn_first,
                               const char *message)
{
    tdm_assert(atomic_load(&batch->state) == APPEND_BATCH_INFLIGHT);
    batch->status = status;
    batch->lsn_first = lsn_first;
    snprintf(batch->remote.message, sizeof(batch->remote.message), "%s", message);
    atomic_store(&batch->state, APPEND_BATCH_DONE);
}

/* Take every APPEND_RESULT tandemd has sent. A broken connection fails every
 * batch in flight: their records may be stored, but are not acknowledged. */
static void append_drain_remote(struct append *append)
{
    for (;;) {
        struct tdm_diag diag = {{0}};
        int rv = tdm_client_receive(append->client, append->msg, false, &diag);
        if (rv == -EAGAIN) {
            return;
        }
        const struct tdm_proto_result *result = &append->msg->append_result;
        if (rv == 0 && append->msg->type != TDM_PROTO_APPEND_RESULT) {
            tdm_diag_printf(&diag, "tandemd answered %s", tdm_proto_type_name(append->msg->type));
            rv = TANDEM_ECORRUPT;
        }
        for (size_t i = 0; i < append->inflight; i++) {
            struct append_batch *batch = &append->ring[(append->head + i) % APPEND_RING_SIZE];
            if (atomic_load(&batch->state) != APPEND_BATCH_INFLIGHT) {
                continue;
            }
            if (rv != 0) {
                append_remote_done(batch, rv, 0, diag.message);
            } else if (batch->request_id == result->request_id) {
                append_remote_done(batch, result->status, result->lsn_first, result->message);
            }
        }
        if (rv != 0) {
            return;
        }
    }
}

/* After a wake-up: drain the pipe, or take tandemd's answers. */
static void append_drain(struct append *append)
{
    if (append->client != NULL) {
        append_drain_remote(append);
        return;
    }
    char drain[256];
    while (read(append->wake_fds[0], drain, sizeof(drain)) > 0) {
    }
}

/* Send batch to tandemd as one APPEND_REQUEST (records encoded as the engine
 * encodes them; each was validated when parsed). Returns 0 or a negative code
 * with batch->remote saying why. */
static int append_submit_remote(struct append *append, struct append_batch *batch)
{
    struct tdm_writer w;
    tdm_writer_init(&w, append->entries,
                    (size_t)APPEND_BATCH_RECORDS_MAX * (4 + TDM_RECORD_SIZE_MAX));
    for (size_t i = 0; i < batch->count; i++) {
        size_t size = tdm_codec_size(&batch->records[i]);
        tdm_assert(size <= TDM_RECORD_SIZE_MAX);
        tdm_put_u32(&w, (uint32_t)size);
        uint8_t *out = tdm_writer_reserve(&w, size);
        tdm_assert(out != NULL);
        size_t written = tdm_codec_encode(&batch->records[i], out, size);
        tdm_assert(written == size);
    }
    struct tdm_proto_msg *msg = append->msg;
    memset(msg, 0, sizeof(*msg));
    msg->type = TDM_PROTO_APPEND_REQUEST;
    batch->request_id = append->client->request_id_next++;
    msg->append_request.request_id = batch->request_id;
    msg->append_request.record_count = (uint32_t)batch->count;
    msg->append_request.entries.data = append->entries;
    msg->append_request.entries.size = w.offset;
    struct tdm_diag diag = {{0}};
    int rv = tdm_client_send(append->client, msg, &diag);
    if (rv != 0) {
        snprintf(batch->remote.message, sizeof(batch->remote.message), "%s", diag.message);
    }
    return rv;
}

/* Print every completed batch at the head of the ring; with wait, block until
 * at least the head batch has completed (there must be one in flight). */
static void append_reap(struct append *append, bool wait)
{
    tdm_assert(!wait || append->inflight > 0);
    bool printed = false;
    for (;;) {
        while (append->inflight > 0 &&
               atomic_load_explicit(&append->ring[append->head].state, memory_order_acquire) ==
                   APPEND_BATCH_DONE) {
            append_print_head(append);
            printed = true;
            wait = false;
        }
        if (!wait) {
            break;
        }
        /* An interrupted poll just goes round the loop again. */
        struct pollfd wake = {.fd = append_wake_fd(append), .events = POLLIN};
        (void)poll(&wake, 1, -1);
        append_drain(append);
    }
    if (printed) {
        fflush(stdout);
    }
}

/* Hand the current batch (if it holds records) to the engine. Returns 0, or the
 * error of tandem_append_async() (its callback then never runs). */
static int append_submit(struct append *append)
{
    struct append_batch *batch = append_current(append);
    tdm_assert(batch->count <= APPEND_BATCH_RECORDS_MAX);
    tdm_assert(append->failed_status == 0);
    if (batch->count == 0) {
        return 0;
    }
    if (append->inflight == APPEND_INFLIGHT_MAX) {
        append_reap(append, true);
    }
    tdm_assert(append->inflight < APPEND_INFLIGHT_MAX);
    if (append->client != NULL) {
        int rv = append_submit_remote(append, batch);
        if (rv != 0) {
            append_failed(append, rv, batch->line_first);
            append->failed_diag = batch->remote;
            return rv;
        }
        atomic_store(&batch->state, APPEND_BATCH_INFLIGHT);
        append->inflight++;
        return 0;
    }
    struct tandem_diag diag = {{0}};
    for (unsigned retry = 0;; retry++) {
        atomic_store(&batch->state, APPEND_BATCH_INFLIGHT);
        int rv = tandem_append_async(append->t, batch->records, batch->count, append_done_cb, batch,
                                     &diag);
        if (rv == 0) {
            append->inflight++;
            return 0;
        }
        atomic_store(&batch->state, APPEND_BATCH_FILLING);
        if (rv != TANDEM_EBUSY || retry == APPEND_BUSY_RETRY_MAX) {
            append_failed(append, rv, batch->line_first);
            append->failed_diag = diag;
            return rv;
        }
        if (append->inflight > 0) {
            append_reap(append, true);
        } else {
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
            nanosleep(&pause, NULL);
        }
    }
}

/* Read what stdin has into the input buffer. Returns 0 (eof may be set),
 * -EAGAIN when nothing was there, or -errno. */
static int append_read(struct append_input *input)
{
    tdm_assert(input->start <= input->end);
    tdm_assert(!input->eof);
    if (input->start > 0) {
        memmove(input->data, input->data + input->start, input->end - input->start);
        input->end -= input->start;
        input->start = 0;
    }
    if (input->capacity - input->end < APPEND_READ_SIZE) {
        size_t capacity = input->capacity * 2;
        char *data = tdm_realloc(input->data, capacity);
        if (data == NULL) {
            return -ENOMEM;
        }
        input->data = data;
        input->capacity = capacity;
    }
    for (;;) {
        ssize_t n = read(STDIN_FILENO, input->data + input->end, input->capacity - input->end);
        if (n > 0) {
            input->end += (size_t)n;
            return 0;
        }
        if (n == 0) {
            input->eof = true;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return -EAGAIN;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

/* Take the next complete line (or the unterminated last one at end of input).
 * Returns 1 and the line, 0 when more input is needed, or -E2BIG for a line
 * longer than APPEND_LINE_SIZE_MAX. */
static int append_next_line(struct append_input *input, const char **line, size_t *size)
{
    tdm_assert(input->start <= input->end);
    tdm_assert(input->end <= input->capacity);
    const char *begin = input->data + input->start;
    size_t available = input->end - input->start;
    const char *newline = memchr(begin, '\n', available);
    if (newline == NULL && !(input->eof && available > 0)) {
        if (available <= APPEND_LINE_SIZE_MAX) {
            return 0;
        }
        input->line_number++;
        return -E2BIG;
    }
    size_t line_size = newline != NULL ? (size_t)(newline - begin) : available;
    input->line_number++;
    if (line_size > APPEND_LINE_SIZE_MAX) {
        return -E2BIG;
    }
    *line = begin;
    *size = line_size;
    input->start += newline != NULL ? line_size + 1 : line_size;
    return 1;
}

static bool append_line_blank(const char *line, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
            return false;
        }
    }
    return true;
}

/* Parse one line into the current batch. Returns 0, or a negative code with
 * diag naming the field. */
static int append_parse(struct append *append, const char *line, size_t size, struct tdm_diag *diag)
{
    struct append_batch *batch = append_current(append);
    tdm_assert(batch->count < APPEND_BATCH_RECORDS_MAX);
    struct tdm_jsonl_record *parsed = &batch->parsed[batch->count];
    tdm_assert(size <= APPEND_LINE_SIZE_MAX);
    int rv = tdm_jsonl_parse(line, size, parsed, diag);
    if (rv != 0) {
        return rv;
    }
    /* The engine checks again, but a record it refused would take the good
     * records of its batch down with it: check each one on its own first. */
    struct tandem_diag validate_diag = {{0}};
    rv = tandem_record_validate(&parsed->record, &validate_diag);
    if (rv != 0) {
        tdm_diag_printf(diag, "%s", validate_diag.message);
        tdm_jsonl_record_free(parsed);
        return rv;
    }
    if (batch->count == 0) {
        batch->line_first = append->input.line_number;
    }
    batch->records[batch->count] = parsed->record;
    batch->count++;
    return 0;
}

/* True if stdin has input (or end of input) to read right now. */
static bool append_input_ready(void)
{
    struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
    return poll(&in, 1, 0) > 0;
}

/* Step 4: block until stdin has input or a batch completed, and take it.
 * Returns 0, or -errno when stdin cannot be read. */
static int append_wait(struct append *append)
{
    struct pollfd fds[2] = {
        {.fd = STDIN_FILENO, .events = POLLIN},
        {.fd = append_wake_fd(append), .events = POLLIN},
    };
    tdm_assert(!append->input.eof);
    /* An interrupted poll just goes round the caller's loop again. */
    if (poll(fds, append->inflight > 0 ? 2 : 1, -1) < 0) {
        return 0;
    }
    if (append->inflight > 0 && fds[1].revents != 0) {
        append_drain(append);
        append_reap(append, false);
    }
    if (fds[0].revents != 0) {
        int rv = append_read(&append->input);
        if (rv != 0 && rv != -EAGAIN) {
            return rv;
        }
    }
    return 0;
}

/* Step 1: parse the complete lines in the buffer, submitting full batches.
 * Returns 0 when more input is needed, APPEND_STOP_BAD_LINE at a bad line
 * (diag and *bad_line set), APPEND_STOP_WRITE when a write failed, or
 * -ENOMEM. */
static int append_parse_available(struct append *append, struct tdm_diag *diag, uint64_t *bad_line)
{
    for (;;) {
        if (append->failed_status != 0) {
            return APPEND_STOP_WRITE;
        }
        if (append_current(append)->count == APPEND_BATCH_RECORDS_MAX) {
            if (append_submit(append) != 0) {
                return APPEND_STOP_WRITE;
            }
            continue;
        }
        const char *line;
        size_t size;
        int got = append_next_line(&append->input, &line, &size);
        if (got == 0) {
            return 0;
        }
        if (got < 0) {
            *bad_line = append->input.line_number;
            tdm_diag_printf(diag, "longer than %u bytes", APPEND_LINE_SIZE_MAX);
            return APPEND_STOP_BAD_LINE;
        }
        if (append_line_blank(line, size)) {
            continue;
        }
        int rv = append_parse(append, line, size, diag);
        if (rv == -ENOMEM) {
            return rv;
        }
        if (rv != 0) {
            *bad_line = append->input.line_number;
            return APPEND_STOP_BAD_LINE;
        }
    }
}

/* Say why the records from failed_line on got no LSN. */
static void append_report_write_failure(struct append *append)
{
    /* The node's own record of why writes stopped names the root cause; the
     * diag of a refused submission may only say that they did. */
    struct tandem_status status;
    const char *detail = append->failed_diag.message;
    if (append->t != NULL && tandem_status(append->t, &status) == 0 &&
        status.failed_message[0] != '\0') {
        detail = status.failed_message;
    }
    tdm_cmd_fail("append: line %llu: %s%s%s (no LSN printed for it or any later line)",
                 (unsigned long long)append->failed_line, tandem_strerror(append->failed_status),
                 detail[0] != '\0' ? ": " : "", detail);
}

/* The loop of the header. Returns the exit status. */
static int append_run(struct append *append)
{
    struct tdm_diag diag = {{0}};
    uint64_t bad_line = 0;
    int stop = 0;
    int read_rv = 0;
    while (stop == 0 && !append->input.eof) {
        stop = append_parse_available(append, &diag, &bad_line);
        if (stop != 0 || append->input.eof) {
            break;
        }
        if (append_current(append)->count > 0 && append->inflight < APPEND_INFLIGHT_MAX &&
            !append_input_ready() && append_submit(append) != 0) {
            break;
        }
        read_rv = append_wait(append);
        if (read_rv != 0) {
            break;
        }
    }
    if (stop == 0 && read_rv == 0 && append->input.eof) {
        stop = append_parse_available(append, &diag, &bad_line);
    }
    /* Whatever stopped the loop, the records parsed before it are written. */
    if (append->failed_status == 0 && stop != -ENOMEM) {
        (void)append_submit(append);
    }
    while (append->inflight > 0) {
        append_reap(append, true);
    }
    fflush(stdout);
    if (append->failed_status != 0) {
        append_report_write_failure(append);
        return TDM_CMD_EXIT_FAILED;
    }
    if (stop == APPEND_STOP_BAD_LINE) {
        tdm_cmd_fail("line %llu: %s", (unsigned long long)bad_line, diag.message);
        return TDM_CMD_EXIT_FAILED;
    }
    if (stop == -ENOMEM || read_rv != 0) {
        tdm_cmd_fail("append: %s: %s", stop == -ENOMEM ? "parse" : "read stdin",
                     tandem_strerror(stop == -ENOMEM ? stop : read_rv));
        return TDM_CMD_EXIT_FAILED;
    }
    if (ferror(stdout)) {
        tdm_cmd_fail("append: write to stdout failed");
        return TDM_CMD_EXIT_FAILED;
    }
    return TDM_CMD_EXIT_OK;
}

static int append_setup(struct append *append)
{
    tdm_assert(append->ring == NULL);
    append->wake_fds[0] = -1;
    append->wake_fds[1] = -1;
    append->ring = tdm_calloc(APPEND_RING_SIZE, sizeof(*append->ring));
    append->input.capacity = 2 * APPEND_READ_SIZE;
    append->input.data = tdm_malloc(append->input.capacity);
    if (append->ring == NULL || append->input.data == NULL) {
        return -ENOMEM;
    }
    if (pipe2(append->wake_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        return -errno;
    }
    for (size_t i = 0; i < APPEND_RING_SIZE; i++) {
        atomic_init(&append->ring[i].state, APPEND_BATCH_FILLING);
        append->ring[i].wake_fd = append->wake_fds[1];
    }
    return 0;
}

static void append_teardown(struct append *append)
{
    if (append->ring != NULL) {
        for (size_t i = 0; i < APPEND_RING_SIZE; i++) {
            append_batch_release(&append->ring[i]);
        }
    }
    tdm_free(append->ring);
    tdm_free(append->input.data);
    tdm_free(append->msg);
    tdm_free(append->entries);
    if (append->wake_fds[0] >= 0) {
        close(append->wake_fds[0]);
        close(append->wake_fds[1]);
    }
}

/* A node of a cluster writes only through its tandemd: written here, a record
 * would be durable on this one node, never acknowledged by min_copies, and
 * would fork this node's log from the primary's. True (after the error line)
 * when dir is such a node. */
static bool append_refuse_replicated(const char *dir)
{
    struct tdm_cmd_conf conf;
    struct tandem_diag diag = {{0}};
    if (tdm_cmd_conf_read(dir, &conf, &diag) != 0 || !conf.replicated) {
        return false; /* A standalone node (or no tandem.conf: the open says why). */
    }
    tdm_cmd_fail("append: %s is node %s of cluster %s and no tandemd runs there: start "
                 "tandemd %s (a replicated node writes only through it, so that min_copies "
                 "nodes hold every record)",
                 dir, conf.id, conf.cluster, dir);
    return true;
}

int tdm_cmd_append(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},
        {"cert", true, &cert, NULL},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    struct tdm_cmd_node node;
    exit_status = tdm_cmd_node_resolve("append", addr, cert, &node);
    if (exit_status >= 0) {
        return exit_status;
    }
    static char stdout_buffer[APPEND_STDOUT_BUFFER_SIZE];
    setvbuf(stdout, stdout_buffer, _IOFBF, sizeof(stdout_buffer));
    struct append append = {0};
    int rv = append_setup(&append);
    if (rv != 0) {
        tdm_cmd_fail_code("append", rv, NULL);
        append_teardown(&append);
        return TDM_CMD_EXIT_FAILED;
    }
    struct tdm_client client;
    struct tdm_diag diag = {{0}};
    rv = tdm_cmd_connect(&node, &client, &diag);
    if (rv < 0) {
        tdm_cmd_fail("append: %s: %s", tandem_strerror(rv), diag.message);
        append_teardown(&append);
        return TDM_CMD_EXIT_FAILED;
    }
    if (rv == 0) {
        /* tandemd runs there and owns the directory: write through it. */
        append.client = &client;
        append.msg = tdm_calloc(1, sizeof(*append.msg));
        append.entries = tdm_malloc((size_t)APPEND_BATCH_RECORDS_MAX * (4 + TDM_RECORD_SIZE_MAX));
        if (append.msg == NULL || append.entries == NULL) {
            tdm_cmd_fail_code("append", -ENOMEM, NULL);
            tdm_client_close(&client);
            append_teardown(&append);
            return TDM_CMD_EXIT_FAILED;
        }
    } else if (append_refuse_replicated(node.dir)) {
        append_teardown(&append);
        return TDM_CMD_EXIT_FAILED;
    } else if (tdm_cmd_open(node.dir, 0, &append.t) != 0) {
        append_teardown(&append);
        return TDM_CMD_EXIT_FAILED;
    }
    exit_status = append_run(&append);
    tdm_assert(append.inflight == 0);
    if (append.t != NULL) {
        tandem_close(append.t);
    } else {
        tdm_client_close(&client);
    }
    append_teardown(&append);
    return exit_status;
}
