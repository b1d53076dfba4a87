/* tests/loopback/fault_proxy.c: a TCP proxy between two nodes that injects
 * network faults for the loopback suites (RELIABILITY 3.3: no tc netem here).
 *
 *   fault_proxy LISTEN_PORT TARGET_PORT CONTROL_PATH
 *
 * Happy path:
 *   1. Listen on 127.0.0.1:LISTEN_PORT; for each accepted connection, connect
 *      to 127.0.0.1:TARGET_PORT and copy bytes both ways.
 *   2. Read one-line commands on the Unix socket CONTROL_PATH and answer "ok":
 *        pass         copy bytes (the default)
 *        drop         discard bytes both ways; connections stay open
 *        delay MS     hold each chunk MS milliseconds before writing it
 *        cut          close every connection and refuse new ones
 *        heal         back to pass and accept again
 *        stats        answer "ok connections N bytes N dropped N"
 *   3. SIGTERM or SIGINT: close everything and exit 0.
 * Failure modes: a side that closes or fails closes its pair; a bad command
 * is answered "error <reason>"; bounded: at most PROXY_PAIRS_MAX pairs, and a
 * pair whose delayed data exceeds PROXY_DELAY_BYTES_MAX is closed. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define PROXY_PAIRS_MAX       64
#define PROXY_DELAY_BYTES_MAX (64u << 20)
#define PROXY_LINE_SIZE       128

enum proxy_mode {
    PROXY_PASS = 1,
    PROXY_DROP,
    PROXY_CUT,
};

struct proxy;

/* One direction's endpoint of a proxied connection. */
struct proxy_side {
    uv_tcp_t tcp;
    struct proxy_pair *pair;
    struct proxy_side *other;
    bool open;
};

struct proxy_pair {
    struct proxy *proxy;
    struct proxy_side client; /* Accepted from the dialer. */
    struct proxy_side target; /* Dialed to the target. */
    uv_connect_t connect;
    int closing;         /* Sides still to close. */
    size_t delayed_size; /* Bytes held by delay timers. */
    uint64_t generation; /* Which connection holds this slot now. */
    bool used;
};

/* A chunk held for the delay, then written. */
struct proxy_delayed {
    uv_timer_t timer;
    struct proxy_side *to;
    struct proxy_pair *pair;
    uint64_t generation; /* The pair's generation when the chunk was read. */
    uv_buf_t buf;
};

struct proxy_write {
    uv_write_t req;
    uv_buf_t buf;
};

struct proxy {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_pipe_t control;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    int target_port;
    enum proxy_mode mode;
    uint64_t delay_ms;
    struct proxy_pair pairs[PROXY_PAIRS_MAX];
    uint64_t connections;
    uint64_t bytes;
    uint64_t dropped;
};

static void proxy_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    buf->base = malloc(suggested);
    buf->len = buf->base != NULL ? suggested : 0;
}

static void proxy_side_closed_cb(uv_handle_t *handle)
{
    struct proxy_side *side = handle->data;
    struct proxy_pair *pair = side->pair;
    if (--pair->closing == 0) {
        pair->used = false;
    }
}

static void proxy_pair_close(struct proxy_pair *pair)
{
    struct proxy_side *sides[2] = {&pair->client, &pair->target};
    for (int i = 0; i < 2; i++) {
        if (sides[i]->open) {
            sides[i]->open = false;
            uv_close((uv_handle_t *)&sides[i]->tcp, proxy_side_closed_cb);
        }
    }
}

static void proxy_write_cb(uv_write_t *req, int status)
{
    struct proxy_write *w = (struct proxy_write *)req;
    (void)status;
    free(w->buf.base);
    free(w);
}

static void proxy_forward(struct proxy_side *to, char *base, size_t size)
{
    if (!to->open) {
        free(base);
        return;
    }
    struct proxy_write *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(base);
        proxy_pair_close(to->pair);
        return;
    }
    w->buf = uv_buf_init(base, (unsigned)size);
    if (uv_write(&w->req, (uv_stream_t *)&to->tcp, &w->buf, 1, proxy_write_cb) != 0) {
        free(base);
        free(w);
        proxy_pair_close(to->pair);
    }
}

static void proxy_delayed_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void proxy_delayed_cb(uv_timer_t *timer)
{
    struct proxy_delayed *d = timer->data;
    if (d->pair->used && d->pair->generation == d->generation) {
        d->pair->delayed_size -= d->buf.len;
        proxy_forward(d->to, d->buf.base, d->buf.len);
    } else {
        free(d->buf.base); /* Its connection is gone; the slot may hold another. */
    }
    uv_close((uv_handle_t *)&d->timer, proxy_delayed_closed_cb);
}

static void proxy_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct proxy_side *side = stream->data;
    struct proxy *proxy = side->pair->proxy;
    if (nread < 0) {
        free(buf->base);
        proxy_pair_close(side->pair);
        return;
    }
    if (nread == 0) {
        free(buf->base);
        return;
    }
    proxy->bytes += (uint64_t)nread;
    if (proxy->mode == PROXY_DROP) {
        proxy->dropped += (uint64_t)nread;
        free(buf->base);
        return;
    }
    if (proxy->delay_ms == 0) {
        proxy_forward(side->other, buf->base, (size_t)nread);
        return;
    }
    struct proxy_delayed *d = malloc(sizeof(*d));
    if (d == NULL || side->pair->delayed_size + (size_t)nread > PROXY_DELAY_BYTES_MAX) {
        free(d);
        free(buf->base);
        proxy_pair_close(side->pair);
        return;
    }
    side->pair->delayed_size += (size_t)nread;
    d->to = side->other;
    d->pair = side->pair;
    d->generation = side->pair->generation;
    d->buf = uv_buf_init(buf->base, (unsigned)nread);
    uv_timer_init(proxy->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, proxy_delayed_cb, proxy->delay_ms, 0);
}

static void proxy_connect_cb(uv_connect_t *req, int status)
{
    struct proxy_pair *pair = req->data;
    if (status != 0 || pair->proxy->mode == PROXY_CUT) {
        proxy_pair_close(pair);
        return;
    }
    uv_read_start((uv_stream_t *)&pair->client.tcp, proxy_alloc_cb, proxy_read_cb);
    uv_read_start((uv_stream_t *)&pair->target.tcp, proxy_alloc_cb, proxy_read_cb);
}

static void proxy_side_init(struct proxy *proxy, struct proxy_pair *pair, struct proxy_side *side,
                            struct proxy_side *other)
{
    uv_tcp_init(proxy->loop, &side->tcp);
    side->tcp.data = side;
    side->pair = pair;
    side->other = other;
    side->open = true;
}

static void proxy_refused_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void proxy_accept_cb(uv_stream_t *listener, int status)
{
    struct proxy *proxy = listener->data;
    if (status != 0) {
        return;
    }
    struct proxy_pair *pair = NULL;
    for (int i = 0; i < PROXY_PAIRS_MAX && pair == NULL; i++) {
        pair = proxy->pairs[i].used ? NULL : &proxy->pairs[i];
    }
    if (pair == NULL || proxy->mode == PROXY_CUT) {
        uv_tcp_t *refused = malloc(sizeof(*refused));
        if (refused == NULL) {
            return;
        }
        uv_tcp_init(proxy->loop, refused);
        refused->data = refused;
        (void)uv_accept(listener, (uv_stream_t *)refused);
        uv_close((uv_handle_t *)refused, proxy_refused_closed_cb);
        return;
    }
    uint64_t generation = pair->generation + 1;
    memset(pair, 0, sizeof(*pair));
    pair->generation = generation;
    pair->used = true;
    pair->proxy = proxy;
    pair->closing = 2;
    proxy_side_init(proxy, pair, &pair->client, &pair->target);
    proxy_side_init(proxy, pair, &pair->target, &pair->client);
    if (uv_accept(listener, (uv_stream_t *)&pair->client.tcp) != 0) {
        proxy_pair_close(pair);
        return;
    }
    proxy->connections++;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", proxy->target_port, &addr);
    pair->connect.data = pair;
    if (uv_tcp_connect(&pair->connect, &pair->target.tcp, (const struct sockaddr *)&addr,
                       proxy_connect_cb) != 0) {
        proxy_pair_close(pair);
    }
}

/* ---- control socket ------------------------------------------------------------- */

struct proxy_control {
    uv_pipe_t pipe;
    struct proxy *proxy;
    char line[PROXY_LINE_SIZE];
    size_t line_size;
};

static void proxy_control_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void proxy_reply(struct proxy_control *c, const char *text)
{
    size_t size = strlen(text);
    char *copy = malloc(size + 1);
    struct proxy_write *w = malloc(sizeof(*w));
    if (copy == NULL || w == NULL) {
        free(copy);
        free(w);
        return;
    }
    memcpy(copy, text, size);
    copy[size] = '\n';
    w->buf = uv_buf_init(copy, (unsigned)(size + 1));
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, proxy_write_cb) != 0) {
        free(copy);
        free(w);
    }
}

static void proxy_command(struct proxy_control *c, const char *line)
{
    struct proxy *proxy = c->proxy;
    char reply[128];
    unsigned long ms = 0;
    snprintf(reply, sizeof(reply), "ok");
    if (strcmp(line, "pass") == 0) {
        proxy->mode = PROXY_PASS;
        proxy->delay_ms = 0;
    } else if (strcmp(line, "drop") == 0) {
        proxy->mode = PROXY_DROP;
    } else if (sscanf(line, "delay %lu", &ms) == 1) {
        proxy->delay_ms = ms;
    } else if (strcmp(line, "cut") == 0) {
        proxy->mode = PROXY_CUT;
        for (int i = 0; i < PROXY_PAIRS_MAX; i++) {
            if (proxy->pairs[i].used) {
                proxy_pair_close(&proxy->pairs[i]);
            }
        }
    } else if (strcmp(line, "heal") == 0) {
        proxy->mode = PROXY_PASS;
        proxy->delay_ms = 0;
    } else if (strcmp(line, "stats") == 0) {
        snprintf(reply, sizeof(reply), "ok connections %llu bytes %llu dropped %llu",
                 (unsigned long long)proxy->connections, (unsigned long long)proxy->bytes,
                 (unsigned long long)proxy->dropped);
    } else {
        snprintf(reply, sizeof(reply), "error unknown command");
    }
    proxy_reply(c, reply);
}

static void proxy_control_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct proxy_control *c = stream->data;
    if (nread < 0) {
        free(buf->base);
        uv_close((uv_handle_t *)&c->pipe, proxy_control_closed_cb);
        return;
    }
    for (ssize_t i = 0; i < nread; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            c->line[c->line_size] = '\0';
            proxy_command(c, c->line);
            c->line_size = 0;
        } else if (c->line_size + 1 < sizeof(c->line)) {
            c->line[c->line_size++] = ch;
        }
    }
    free(buf->base);
}

static void proxy_control_accept_cb(uv_stream_t *server, int status)
{
    struct proxy *proxy = server->data;
    struct proxy_control *c = status == 0 ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        return;
    }
    c->proxy = proxy;
    uv_pipe_init(proxy->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        uv_close((uv_handle_t *)&c->pipe, proxy_control_closed_cb);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, proxy_alloc_cb, proxy_control_read_cb);
}

static void proxy_signal_cb(uv_signal_t *signal, int signum)
{
    (void)signum;
    uv_stop(signal->loop);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fault_proxy LISTEN_PORT TARGET_PORT CONTROL_PATH\n");
        return 2;
    }
    /* A node killed mid-write leaves a socket whose next write raises
     * SIGPIPE; libuv writes TCP streams with write(2), so without this the
     * proxy itself dies and the test loses its fault controls. */
    (void)signal(SIGPIPE, SIG_IGN);
    static struct proxy proxy;
    proxy.loop = uv_default_loop();
    proxy.mode = PROXY_PASS;
    proxy.target_port = atoi(argv[2]);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    uv_tcp_init(proxy.loop, &proxy.listener);
    proxy.listener.data = &proxy;
    int rv = uv_tcp_bind(&proxy.listener, (const struct sockaddr *)&addr, 0);
    rv = rv != 0 ? rv : uv_listen((uv_stream_t *)&proxy.listener, 64, proxy_accept_cb);
    if (rv != 0) {
        fprintf(stderr, "fault_proxy: listen on %s: %s\n", argv[1], uv_strerror(rv));
        return 1;
    }
    uv_pipe_init(proxy.loop, &proxy.control, 0);
    proxy.control.data = &proxy;
    (void)remove(argv[3]);
    rv = uv_pipe_bind(&proxy.control, argv[3]);
    rv = rv != 0 ? rv : uv_listen((uv_stream_t *)&proxy.control, 8, proxy_control_accept_cb);
    if (rv != 0) {
        fprintf(stderr, "fault_proxy: control %s: %s\n", argv[3], uv_strerror(rv));
        return 1;
    }
    uv_signal_init(proxy.loop, &proxy.sigterm);
    uv_signal_start(&proxy.sigterm, proxy_signal_cb, SIGTERM);
    uv_signal_init(proxy.loop, &proxy.sigint);
    uv_signal_start(&proxy.sigint, proxy_signal_cb, SIGINT);
    fprintf(stderr, "fault_proxy: 127.0.0.1:%s -> 127.0.0.1:%s, control %s\n", argv[1], argv[2],
            argv[3]);
    uv_run(proxy.loop, UV_RUN_DEFAULT);
    (void)remove(argv[3]);
    return 0;
}
