/* tests/cli/client_server.c: a node served to clients both ways, for
 * tests/cli/remote.sh: on its local socket DIR/tandemd.sock and on a TLS
 * listener at 127.0.0.1 (a port the kernel picks) whose client links are
 * adopted by the same server (tdm_uv_server_adopt), as a replicated tandemd
 * serves clients on its listen port, without the replication.
 *
 * Usage: client_server DIR TLSDIR. Opens DIR for writing, prints the port as
 * one line on stdout once both listen, and serves until SIGTERM or SIGINT;
 * then closes the listener and the server (answering what is in flight) and
 * exits 0. TLSDIR holds the node's node.key, node.crt and ca.crt. Errors: one
 * line on stderr, exit 1. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "engine/base/error.h"
#include "net/tls.h"
#include "net/uv.h"
#include "net/uv_link.h"
#include "tools/jsonl.h"
#include "tools/status_doc.h"

struct serve {
    const char *dir;
    uv_loop_t loop;
    uv_signal_t signals[2];
    struct tdm_tls_config tls;
    struct tdm_uv_server *server;
    struct tdm_uv_listener *listener;
};

/* tdm_uv_status_cb: the document of `tandem status --json` for the node. */
static int status_cb(void *data, struct tandem *t, const void *snapshot, char **out, size_t *size)
{
    struct serve *serve = data;
    (void)snapshot;
    struct tdm_status_view view = {.dir = serve->dir};
    int rv = tandem_status(t, &view.status);
    if (rv != 0) {
        return rv;
    }
    view.opened = true;
    tdm_status_judge(&view);
    char *text = NULL;
    rv = tdm_status_json(&view, &text);
    if (rv != 0) {
        return rv;
    }
    /* tdm_status_json() mallocs; the server frees with tdm_free(), which is
     * libc's free() in this program (no heap installed). */
    *out = text;
    *size = strlen(text);
    return 0;
}

static void accept_cb(struct tdm_uv_listener *listener, struct tdm_uv_link *link, int status,
                      const struct tdm_diag *diag, void *data)
{
    struct serve *serve = data;
    (void)listener;
    if (status != 0) {
        fprintf(stderr, "client_server: connection failed: %s\n", diag->message);
        return;
    }
    struct tdm_diag why = {{0}};
    if (tdm_uv_server_adopt(serve->server, link, &why) != 0) {
        fprintf(stderr, "client_server: %s refused: %s\n", tdm_uv_link_peer_name(link),
                why.message);
        tdm_uv_link_close(link);
    }
}

static void link_frame_cb(struct tdm_uv_link *link, const struct tdm_proto_msg *msg, void *data)
{
    (void)link;
    (void)msg;
    (void)data;
}

static void link_close_cb(struct tdm_uv_link *link, int status, const struct tdm_diag *diag,
                          void *data)
{
    (void)link;
    (void)status;
    (void)diag;
    (void)data;
}

static void closed_cb(void *data)
{
    (void)data;
}

static void signal_cb(uv_signal_t *signal, int signum)
{
    struct serve *serve = signal->data;
    (void)signum;
    for (int i = 0; i < 2; i++) {
        uv_close((uv_handle_t *)&serve->signals[i], NULL);
    }
    tdm_uv_listener_close(serve->listener, NULL, NULL);
    tdm_uv_server_close(serve->server, closed_cb, serve);
}

static int serve_listen(struct serve *serve, struct tdm_diag *diag)
{
    struct sockaddr_in address;
    int rv = uv_ip4_addr("127.0.0.1", 0, &address);
    if (rv != 0) {
        return rv;
    }
    struct tdm_uv_listen_config config = {
        .address = (const struct sockaddr *)&address,
        .tls = &serve->tls,
        .clients = true,
        .on_accept = accept_cb,
        .callbacks = {.on_frame = link_frame_cb, .on_close = link_close_cb, .data = serve},
    };
    rv = tdm_uv_link_listen(&serve->loop, &config, &serve->listener, diag);
    if (rv != 0) {
        return rv;
    }
    struct sockaddr_storage bound;
    rv = tdm_uv_listener_address(serve->listener, &bound);
    if (rv == 0) {
        printf("%u\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
        fflush(stdout);
    }
    return rv;
}

static int serve_run(struct serve *serve, struct tandem *t, struct tdm_diag *diag)
{
    static char socket_path[4200];
    snprintf(socket_path, sizeof(socket_path), "%s/tandemd.sock", serve->dir);
    struct tdm_uv_server_config config = {
        .socket_path = socket_path,
        .t = t,
        .format = tdm_jsonl_format,
        .status = status_cb,
        .data = serve,
    };
    int rv = tdm_uv_server_start(&serve->loop, &config, &serve->server, diag);
    if (rv != 0) {
        return rv;
    }
    rv = serve_listen(serve, diag);
    if (rv != 0) {
        tdm_uv_server_close(serve->server, closed_cb, serve);
        (void)uv_run(&serve->loop, UV_RUN_DEFAULT);
        return rv;
    }
    const int signums[2] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        (void)uv_signal_init(&serve->loop, &serve->signals[i]);
        serve->signals[i].data = serve;
        (void)uv_signal_start(&serve->signals[i], signal_cb, signums[i]);
    }
    return uv_run(&serve->loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: client_server DIR TLSDIR\n");
        return 1;
    }
    (void)signal(SIGPIPE, SIG_IGN);
    static struct serve serve;
    serve.dir = argv[1];
    struct tdm_diag diag = {{0}};
    struct tandem *t = NULL;
    int rv = tandem_open(argv[1], NULL, &t, (struct tandem_diag *)&diag);
    if (rv == 0) {
        rv = tdm_tls_config_init_dir(&serve.tls, argv[2], &diag);
        if (rv == 0) {
            rv = uv_loop_init(&serve.loop);
            if (rv == 0) {
                rv = serve_run(&serve, t, &diag);
                (void)uv_loop_close(&serve.loop);
            }
            tdm_tls_config_close(&serve.tls);
        }
        tandem_close(t);
    }
    if (rv != 0) {
        fprintf(stderr, "client_server: %s: %s\n", tandem_strerror(rv), diag.message);
        return 1;
    }
    return 0;
}
