/* tools/cmd_query.c: "tandem get", "tandem query" and "tandem customer".
 *
 * Happy path:
 * 1. Parse and check the arguments (a bad number or time: exit 2).
 * 2. When ADDR is HOST:PORT (TCP + mutual TLS, net/client.h) or a tandemd
 *    answers on DIR/tandemd.sock, send the node one QUERY and print the JSON
 *    Lines text of its QUERY_RESULT frames (PROTOCOL.md §7.2); else open the
 *    node directory read-only (TANDEM_OPEN_READONLY): no lock, no file
 *    modified, so a query runs beside the process that writes.
 * 3. Run the query; its callback formats each record as one JSON Lines object
 *    with "lsn" (tdm_jsonl_format) and writes it to stdout.
 * 4. Exit 0 if anything was printed, 1 if nothing matched.
 * Failure modes: an open or query error prints its cause and exits 1; records
 * delivered before a query error (a damaged range of the log) stay printed.
 * Close: tandem_close() before exit. */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "jsonl.h"
#include "net/client.h"

#define QUERY_STDOUT_BUFFER_SIZE (64u * 1024u)

struct query_output {
    uint64_t printed; /* Records printed. */
    int rv;           /* First failure of the callback itself, or 0. */
};

static int query_print_cb(void *data, uint64_t lsn, const struct tandem_record *record)
{
    struct query_output *output = data;
    tdm_assert(record != NULL);
    tdm_assert(lsn > 0);
    char *text = NULL;
    size_t size = 0;
    int rv = tdm_jsonl_format(record, lsn, &text, &size);
    if (rv != 0) {
        output->rv = rv;
        return 1;
    }
    fwrite(text, 1, size, stdout);
    fputc('\n', stdout);
    tdm_free(text);
    output->printed++;
    return 0;
}

/* The query to run, as parsed from the command line. */
enum query_kind {
    QUERY_MESSAGE_ID = 1,
    QUERY_CUSTOMER_MESSAGES,
    QUERY_CUSTOMER_ID,
    QUERY_CUSTOMER_USERNAME,
    QUERY_CUSTOMER_EMAIL,
};

struct query_request {
    enum query_kind kind;
    const char *text; /* Message-ID, username or email. */
    uint32_t customer_id;
    struct tandem_query query;
};

static int query_dispatch(struct tandem *t, const struct query_request *request,
                          struct query_output *output, struct tandem_diag *diag)
{
    switch (request->kind) {
    case QUERY_MESSAGE_ID:
        return tandem_get(t, request->text, strlen(request->text), query_print_cb, output, diag);
    case QUERY_CUSTOMER_MESSAGES:
        return tandem_query(t, &request->query, query_print_cb, output, diag);
    case QUERY_CUSTOMER_ID:
        return tandem_customer_get(t, request->customer_id, query_print_cb, output, diag);
    case QUERY_CUSTOMER_USERNAME:
        return tandem_customer_find(t, TANDEM_CUSTOMER_KEY_USERNAME, request->text,
                                    strlen(request->text), query_print_cb, output, diag);
    case QUERY_CUSTOMER_EMAIL:
        return tandem_customer_find(t, TANDEM_CUSTOMER_KEY_EMAIL, request->text,
                                    strlen(request->text), query_print_cb, output, diag);
    }
    tdm_unreachable();
}

/* The QUERY frame of request (PROTOCOL.md §3.3). */
static void query_frame(const struct query_request *request, uint64_t request_id,
                        struct tdm_proto_msg *msg)
{
    struct tdm_proto_query *q = &msg->query;
    msg->type = TDM_PROTO_QUERY;
    q->request_id = request_id;
    q->kind = (uint8_t)request->kind; /* enum query_kind follows the QUERY kinds. */
    q->customer_id = request->customer_id;
    if (request->text != NULL) {
        q->key.data = (const uint8_t *)request->text;
        q->key.size = strlen(request->text);
    }
    if (request->kind != QUERY_CUSTOMER_MESSAGES) {
        return;
    }
    const struct tandem_query *query = &request->query;
    q->since_ns = query->since_ns;
    q->until_ns = query->until_ns;
    if (query->recipient.size > 0) {
        q->flags |= TDM_PROTO_QUERY_HAS_RECIPIENT;
        q->recipient.data = (const uint8_t *)query->recipient.data;
        q->recipient.size = query->recipient.size;
    }
    if (query->sender.size > 0 || query->sender_empty) {
        q->flags |= TDM_PROTO_QUERY_HAS_SENDER;
        q->sender.data = (const uint8_t *)query->sender.data;
        q->sender.size = query->sender.size;
    }
}

tdm_static_assert((int)QUERY_MESSAGE_ID == TDM_PROTO_QUERY_MESSAGE_ID);
tdm_static_assert((int)QUERY_CUSTOMER_MESSAGES == TDM_PROTO_QUERY_CUSTOMER_MESSAGES);
tdm_static_assert((int)QUERY_CUSTOMER_ID == TDM_PROTO_QUERY_CUSTOMER_ID);
tdm_static_assert((int)QUERY_CUSTOMER_USERNAME == TDM_PROTO_QUERY_USERNAME);
tdm_static_assert((int)QUERY_CUSTOMER_EMAIL == TDM_PROTO_QUERY_EMAIL);

/* Steps 2-4 through tandemd: send QUERY, print the text of every QUERY_RESULT
 * until one without the MORE flag. Returns 0 or the failure's code (diag). */
static int query_remote(struct tdm_client *client, const struct query_request *request,
                        struct query_output *output, struct tandem_diag *diag)
{
    struct tdm_proto_msg *msg = tdm_calloc(1, sizeof(*msg));
    if (msg == NULL) {
        return -ENOMEM;
    }
    uint64_t request_id = client->request_id_next++;
    query_frame(request, request_id, msg);
    int rv = tdm_client_send(client, msg, (struct tdm_diag *)diag);
    bool more = rv == 0;
    while (more) {
        rv = tdm_client_receive(client, msg, true, (struct tdm_diag *)diag);
        if (rv != 0) {
            break;
        }
        const struct tdm_proto_text_result *result = &msg->query_result;
        if (msg->type != TDM_PROTO_QUERY_RESULT || result->request_id != request_id) {
            tdm_diag_printf((struct tdm_diag *)diag, "tandemd answered %s",
                            tdm_proto_type_name(msg->type));
            rv = TANDEM_ECORRUPT;
            break;
        }
        if (result->status != 0) {
            snprintf(diag->message, sizeof(diag->message), "%.*s", (int)result->text.size,
                     (const char *)result->text.data);
            rv = result->status;
            break;
        }
        fwrite(result->text.data, 1, result->text.size, stdout);
        for (size_t i = 0; i < result->text.size; i++) {
            output->printed += result->text.data[i] == '\n';
        }
        more = (result->flags & TDM_PROTO_RESULT_MORE) != 0;
    }
    tdm_free(msg);
    return rv;
}

/* Steps 2-4 of the header. */
static int query_run(const char *command, const char *addr, const char *cert,
                     const struct query_request *request)
{
    tdm_assert(command != NULL);
    tdm_assert(request->kind >= QUERY_MESSAGE_ID);
    struct tdm_cmd_node node;
    int exit_status = tdm_cmd_node_resolve(command, addr, cert, &node);
    if (exit_status >= 0) {
        return exit_status;
    }
    static char stdout_buffer[QUERY_STDOUT_BUFFER_SIZE];
    struct query_output output = {0};
    struct tandem_diag diag = {{0}};
    struct tdm_client client;
    int rv = tdm_cmd_connect(&node, &client, (struct tdm_diag *)&diag);
    if (rv == 0) {
        setvbuf(stdout, stdout_buffer, _IOFBF, sizeof(stdout_buffer));
        rv = query_remote(&client, request, &output, &diag);
        tdm_client_close(&client);
    } else if (rv == 1) {
        struct tandem *t;
        if (tdm_cmd_open(node.dir, TANDEM_OPEN_READONLY, &t) != 0) {
            return TDM_CMD_EXIT_FAILED;
        }
        setvbuf(stdout, stdout_buffer, _IOFBF, sizeof(stdout_buffer));
        rv = query_dispatch(t, request, &output, &diag);
        tandem_close(t);
    }
    fflush(stdout);
    if (rv == 0 && output.rv != 0) {
        rv = output.rv;
    }
    if (rv != 0) {
        tdm_cmd_fail_code(command, rv, &diag);
        return TDM_CMD_EXIT_FAILED;
    }
    if (ferror(stdout)) {
        tdm_cmd_fail("%s: write to stdout failed", command);
        return TDM_CMD_EXIT_FAILED;
    }
    return output.printed > 0 ? TDM_CMD_EXIT_OK : TDM_CMD_EXIT_FAILED;
}

int tdm_cmd_get(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    struct query_request request = {.kind = QUERY_MESSAGE_ID};
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},
        {"cert", true, &cert, NULL},
        {"message-id", true, &request.text, NULL},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    if (request.text == NULL) {
        tdm_cmd_fail("get: --message-id ID is required");
        return TDM_CMD_EXIT_USAGE;
    }
    if (request.text[0] == '\0') {
        tdm_cmd_fail("get: --message-id: empty (records without a Message-ID are not indexed "
                     "by it; use tandem query)");
        return TDM_CMD_EXIT_USAGE;
    }
    if (strlen(request.text) > TANDEM_MESSAGE_ID_SIZE_MAX) {
        tdm_cmd_fail("get: --message-id: %zu bytes, limit %d", strlen(request.text),
                     TANDEM_MESSAGE_ID_SIZE_MAX);
        return TDM_CMD_EXIT_USAGE;
    }
    return query_run("get", addr, cert, &request);
}

/* Parse an optional RFC 3339 option value into *time_ns. Returns -1 to go on,
 * else the exit status. */
static int query_parse_time(const char *name, const char *text, int64_t *time_ns)
{
    if (text == NULL) {
        return -1;
    }
    if (tdm_time_parse(text, strlen(text), time_ns) != 0) {
        tdm_cmd_fail("query: --%s '%s': not an RFC 3339 time such as 2026-11-28T03:57:02Z", name,
                     text);
        return TDM_CMD_EXIT_USAGE;
    }
    return -1;
}

/* Check an address option: its size must be within the address limit. */
static int query_parse_address(const char *name, const char *text, struct tandem_bytes *out)
{
    if (text == NULL) {
        return -1;
    }
    size_t size = strlen(text);
    if (size > TANDEM_ADDRESS_SIZE_MAX) {
        tdm_cmd_fail("query: --%s: %zu bytes, limit %d", name, size, TANDEM_ADDRESS_SIZE_MAX);
        return TDM_CMD_EXIT_USAGE;
    }
    out->data = text;
    out->size = size;
    return -1;
}

/* Fill request->query from the option values. Returns -1 to go on, else the
 * exit status. */
static int query_check(struct query_request *request, const char *customer, const char *since,
                       const char *until, const char *recipient, const char *sender)
{
    tdm_assert(request->kind == QUERY_CUSTOMER_MESSAGES);
    if (customer == NULL) {
        tdm_cmd_fail("query: --customer N is required");
        return TDM_CMD_EXIT_USAGE;
    }
    if (tdm_cmd_parse_u32(customer, &request->customer_id) != 0) {
        tdm_cmd_fail("query: --customer '%s': not a customer id (0 to 4294967295)", customer);
        return TDM_CMD_EXIT_USAGE;
    }
    tandem_query_init(&request->query, request->customer_id);
    int exit_status = query_parse_time("since", since, &request->query.since_ns);
    if (exit_status < 0) {
        exit_status = query_parse_time("until", until, &request->query.until_ns);
    }
    if (exit_status < 0) {
        exit_status = query_parse_address("recipient", recipient, &request->query.recipient);
    }
    if (exit_status < 0) {
        exit_status = query_parse_address("sender", sender, &request->query.sender);
    }
    if (exit_status >= 0) {
        return exit_status;
    }
    /* "--sender ''" asks for bounces, whose sender is empty. */
    request->query.sender_empty = sender != NULL && sender[0] == '\0';
    if (request->query.since_ns >= request->query.until_ns) {
        tdm_cmd_fail("query: empty time window: --since must be before --until");
        return TDM_CMD_EXIT_USAGE;
    }
    return -1;
}

int tdm_cmd_query(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    const char *customer = NULL;
    const char *since = NULL;
    const char *until = NULL;
    const char *recipient = NULL;
    const char *sender = NULL;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},         {"cert", true, &cert, NULL},
        {"customer", true, &customer, NULL}, {"since", true, &since, NULL},
        {"until", true, &until, NULL},       {"recipient", true, &recipient, NULL},
        {"sender", true, &sender, NULL},     {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    struct query_request request = {.kind = QUERY_CUSTOMER_MESSAGES};
    exit_status = query_check(&request, customer, since, until, recipient, sender);
    if (exit_status >= 0) {
        return exit_status;
    }
    return query_run("query", addr, cert, &request);
}

int tdm_cmd_customer(int argc, char **argv)
{
    const char *addr = NULL;
    const char *cert = NULL;
    const char *id = NULL;
    const char *username = NULL;
    const char *email = NULL;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},   {"cert", true, &cert, NULL},
        {"id", true, &id, NULL},       {"username", true, &username, NULL},
        {"email", true, &email, NULL}, {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    if ((id != NULL) + (username != NULL) + (email != NULL) != 1) {
        tdm_cmd_fail("customer: give exactly one of --id N, --username U, --email E");
        return TDM_CMD_EXIT_USAGE;
    }
    struct query_request request = {.kind = QUERY_CUSTOMER_ID};
    if (id != NULL && tdm_cmd_parse_u32(id, &request.customer_id) != 0) {
        tdm_cmd_fail("customer: --id '%s': not a customer id (0 to 4294967295)", id);
        return TDM_CMD_EXIT_USAGE;
    }
    if (username != NULL) {
        request.kind = QUERY_CUSTOMER_USERNAME;
        request.text = username;
    }
    if (email != NULL) {
        request.kind = QUERY_CUSTOMER_EMAIL;
        request.text = email;
    }
    return query_run("customer", addr, cert, &request);
}
