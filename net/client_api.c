/* net/client_api.c: the public client API of libtandem (include/tandem.h,
 * tandem_client_*) over the transport of net/client.h.
 *
 * Happy path:
 * 1. tandem_client_open(): HOST:PORT -> tdm_client_connect_cert() with
 *    cert_dir or $TANDEM_CERT; a directory -> tdm_client_connect_local().
 * 2. tandem_client_append(): validate every record (tandem_record_validate),
 *    encode them as the engine does (engine/codec.h) into one APPEND_REQUEST
 *    (PROTOCOL.md §7.2), send it, and wait for the APPEND_RESULT with the same
 *    request_id.
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
 * error, an answer of the wrong type or id, a record count that does not
 * match) leaves the client failed: that code and diag are returned by every
 * later call, because the stream can no longer be trusted to pair answers with
 * requests. Close: the transport's close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/base/bytes.h"
#include "engine/codec.h"
#include "net/client.h"

#define CLIENT_CERT_ENV "TANDEM_CERT"

tdm_static_assert(TANDEM_APPEND_RECORDS_MAX == TDM_PROTO_RECORDS_MAX);

/* Thread: one thread at a time (tandem.h). */
struct tandem_client {
    struct tdm_client client;   /* Must not move: the client is heap-allocated once. */
    struct tdm_proto_msg *msg;  /* Frame scratch (large: not on the stack). */
    uint8_t *entries;           /* Encoded records of one request. */
    size_t entries_capacity;    /* Bytes allocated in entries. */
    int failed;                 /* Sticky connection failure; 0 while usable. */
    struct tdm_diag failed_why; /* Its diag. */
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
    if (c->msg == NULL) {
        tdm_free(c);
        return -ENOMEM;
    }
    int rv = api_connect(c, addr, cert_dir, &why);
    if (rv != 0) {
        tdm_assert(rv < 0);
        api_diag_copy(diag, &why);
        tdm_free(c->msg);
        tdm_free(c);
        return rv;
    }
    tdm_assert(c->client.fd >= 0);
    *out = c;
    return 0;
}

/* The connection broke: remember why for every later call. */
static int api_fail(struct tandem_client *c, int rv, const struct tdm_diag *why,
                    struct tandem_diag *diag)
{
    tdm_assert(rv < 0);
    tdm_assert(c->failed == 0);
    c->failed = rv;
    c->failed_why = *why;
    api_diag_copy(diag, why);
    return rv;
}

/* Send msg and take the answer of type want (same request_id) into c->msg.
 * Returns 0, or a connection failure (already recorded in c->failed). */
static int api_round_trip(struct tandem_client *c, uint16_t want, uint64_t request_id,
                          struct tandem_diag *diag)
{
    struct tdm_diag why = {{0}};
    int rv = tdm_client_send(&c->client, c->msg, &why);
    if (rv == 0) {
        rv = tdm_client_receive(&c->client, c->msg, true, &why);
    }
    if (rv == 0) {
        /* Both result types lead with request_id (struct tdm_proto_result and
         * struct tdm_proto_text_result). */
        uint64_t id = want == TDM_PROTO_APPEND_RESULT ? c->msg->append_result.request_id
                                                      : c->msg->status_result.request_id;
        if (c->msg->type != want || id != request_id) {
            rv = TDM_CORRUPT(&why, "%s answered %s (request %llu) to request %llu", c->client.label,
                             tdm_proto_type_name(c->msg->type), (unsigned long long)id,
                             (unsigned long long)request_id);
        }
    }
    if (rv != 0) {
        return api_fail(c, rv, &why, diag);
    }
    return 0;
}

/* Validate records and encode them into c->entries. Returns 0 and *size, or
 * TANDEM_EINVALID / -ENOMEM with diag. */
static int api_encode(struct tandem_client *c, const struct tandem_record *records, size_t count,
                      size_t *size, struct tdm_diag *diag)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        struct tandem_diag why = {{0}};
        int rv = tandem_record_validate(&records[i], &why);
        if (rv != 0) {
            tdm_diag_printf(diag, "record %zu: %s", i, why.message);
            return rv;
        }
        total += 4 + tdm_codec_size(&records[i]);
    }
    /* request_id, record_count, then the entries (PROTOCOL.md §3.3). */
    size_t frame = TDM_PROTO_FRAME_SIZE_MIN + 8 + 4 + total;
    if (frame > TDM_CLIENT_FRAME_SIZE_MAX) {
        tdm_diag_printf(diag, "%zu records encode to a %zu-byte request, limit %u: split the call",
                        count, frame, TDM_CLIENT_FRAME_SIZE_MAX);
        return TANDEM_EINVALID;
    }
    if (total > c->entries_capacity) {
        uint8_t *entries = tdm_realloc(c->entries, total);
        if (entries == NULL) {
            return -ENOMEM;
        }
        c->entries = entries;
        c->entries_capacity = total;
    }
    struct tdm_writer w;
    tdm_writer_init(&w, c->entries, total);
    for (size_t i = 0; i < count; i++) {
        size_t record_size = tdm_codec_size(&records[i]);
        tdm_put_u32(&w, (uint32_t)record_size);
        uint8_t *out = tdm_writer_reserve(&w, record_size);
        tdm_assert(out != NULL);
        size_t written = tdm_codec_encode(&records[i], out, record_size);
        tdm_assert(written == record_size);
    }
    tdm_assert(w.offset == total);
    *size = total;
    return 0;
}

/* A NUL-terminated copy of text in *json. malloc, not tdm_malloc: the caller
 * frees it with free() (tandem.h). */
static int api_text_copy(const struct tdm_proto_slice *text, char **json)
{
    char *copy = malloc(text->size + 1);
    if (copy == NULL) {
        return -ENOMEM;
    }
    if (text->size > 0) {
        memcpy(copy, text->data, text->size);
    }
    copy[text->size] = '\0';
    *json = copy;
    return 0;
}

/* The calls that need a usable client start here. */
static int api_usable(const struct tandem_client *c, struct tandem_diag *diag)
{
    tdm_assert(c != NULL);
    if (c->failed != 0) {
        api_diag_copy(diag, &c->failed_why);
        return c->failed;
    }
    tdm_assert(c->client.fd >= 0);
    return 0;
}

int tandem_client_append(struct tandem_client *client, const struct tandem_record *records,
                         size_t count, uint64_t *lsn_first, struct tandem_diag *diag)
{
    int rv = api_usable(client, diag);
    if (rv != 0) {
        return rv;
    }
    struct tdm_diag why = {{0}};
    if (count == 0 || count > TANDEM_APPEND_RECORDS_MAX || records == NULL || lsn_first == NULL) {
        tdm_diag_printf((struct tdm_diag *)diag, "append: %zu records, limit 1..%d", count,
                        TANDEM_APPEND_RECORDS_MAX);
        return TANDEM_EINVALID;
    }
    size_t size = 0;
    rv = api_encode(client, records, count, &size, &why);
    if (rv != 0) {
        api_diag_copy(diag, &why);
        return rv;
    }
    uint64_t request_id = client->client.request_id_next++;
    struct tdm_proto_msg *msg = client->msg;
    memset(msg, 0, sizeof(*msg));
    msg->type = TDM_PROTO_APPEND_REQUEST;
    msg->append_request.request_id = request_id;
    msg->append_request.record_count = (uint32_t)count;
    msg->append_request.entries.data = client->entries;
    msg->append_request.entries.size = size;
    rv = api_round_trip(client, TDM_PROTO_APPEND_RESULT, request_id, diag);
    if (rv != 0) {
        return rv;
    }
    const struct tdm_proto_result *result = &msg->append_result;
    if (result->status != 0) {
        tdm_diag_printf((struct tdm_diag *)diag, "%s", result->message);
        return result->status < 0 ? result->status : TANDEM_ECORRUPT;
    }
    if (result->record_count != count || result->lsn_first == 0) {
        rv = TDM_CORRUPT(&why, "%s acknowledged %u records at lsn %llu, %zu were sent",
                         client->client.label, result->record_count,
                         (unsigned long long)result->lsn_first, count);
        return api_fail(client, rv, &why, diag);
    }
    *lsn_first = result->lsn_first;
    return 0;
}

int tandem_client_status(struct tandem_client *client, char **json, struct tandem_diag *diag)
{
    int rv = api_usable(client, diag);
    if (rv != 0) {
        return rv;
    }
    tdm_assert(json != NULL);
    uint64_t request_id = client->client.request_id_next++;
    struct tdm_proto_msg *msg = client->msg;
    memset(msg, 0, sizeof(*msg));
    msg->type = TDM_PROTO_STATUS;
    msg->status.request_id = request_id;
    rv = api_round_trip(client, TDM_PROTO_STATUS_RESULT, request_id, diag);
    if (rv != 0) {
        return rv;
    }
    const struct tdm_proto_text_result *result = &msg->status_result;
    if (result->status != 0) {
        tdm_diag_printf((struct tdm_diag *)diag, "%.*s", (int)result->text.size,
                        (const char *)result->text.data);
        return result->status < 0 ? result->status : TANDEM_ECORRUPT;
    }
    return api_text_copy(&result->text, json);
}

/* SWITCHOVER or FAILOVER: one request, one answer (PROTOCOL.md §7.5). */
static int api_command(struct tandem_client *client, uint16_t type, const char *target,
                       unsigned flags, char **json, struct tandem_diag *diag)
{
    int rv = api_usable(client, diag);
    if (rv != 0) {
        return rv;
    }
    tdm_assert(json != NULL);
    size_t size = target != NULL ? strlen(target) : 0;
    if ((size > 0 && !tdm_proto_name_valid(target, size)) ||
        (type == TDM_PROTO_FAILOVER && size == 0) ||
        (flags & ~(unsigned)(TANDEM_FAILOVER_FORCE | TANDEM_FAILOVER_DRY_RUN)) != 0) {
        tdm_diag_printf((struct tdm_diag *)diag, "%s: bad target '%s' or flags 0x%x",
                        tdm_proto_type_name(type), target != NULL ? target : "", flags);
        return TANDEM_EINVALID;
    }
    uint64_t request_id = client->client.request_id_next++;
    struct tdm_proto_msg *msg = client->msg;
    memset(msg, 0, sizeof(*msg));
    msg->type = type;
    msg->command.request_id = request_id;
    msg->command.flags = (uint8_t)flags;
    if (size > 0) {
        memcpy(msg->command.target, target, size);
    }
    uint16_t want =
        type == TDM_PROTO_FAILOVER ? TDM_PROTO_FAILOVER_RESULT : TDM_PROTO_SWITCHOVER_RESULT;
    rv = api_round_trip(client, want, request_id, diag);
    if (rv != 0) {
        return rv;
    }
    const struct tdm_proto_text_result *result = &msg->command_result;
    if (result->status != 0) {
        tdm_diag_printf((struct tdm_diag *)diag, "%.*s", (int)result->text.size,
                        (const char *)result->text.data);
        return result->status;
    }
    return api_text_copy(&result->text, json);
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
    tdm_client_close(&client->client);
    tdm_free(client->entries);
    tdm_free(client->msg);
    tdm_free(client);
}
