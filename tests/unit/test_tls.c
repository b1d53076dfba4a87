/* tests/unit/test_tls.c: mutual TLS 1.3 over memory BIOs (net/tls.c) and the
 * cluster CA (net/pki.c), with two endpoints wired back to back in memory.
 *
 * Method: the group setup creates two CAs in a tmpdir ("c1", the cluster, and
 * "c2", a stranger) and issues certificates with tdm_pki_*: node1, node2,
 * node3 and client:alice from c1, and node2 again from c2 (an impostor). A
 * pump moves ciphertext between two sessions until neither has anything to
 * send. A raw OpenSSL client stands in for peers our API will not build (no
 * certificate; a stranger's certificate with the cluster CA as trust). */
#include "tdm_test.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/base/prng.h"
#include "net/tls.h"

#define PATH_SIZE 4096

struct fixture {
    char dir[1024]; /* Short enough that every path built from it fits. */
    char ca1[1100];
    char ca2[1100];
};

/* The test's own view of one end. */
struct end {
    struct tdm_tls_config config;
    struct tdm_tls_session session;
    struct tdm_diag diag;
    int rv; /* Last handshake result. */
};

static struct fixture *fx;

static void fx_path(char *out, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", fx->dir, name);
    assert_true(n > 0 && n < PATH_SIZE);
}

static int group_setup(void **state)
{
    fx = test_calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(tdm_test_tmpdir_create(fx->dir, sizeof(fx->dir)), 0);
    snprintf(fx->ca1, sizeof(fx->ca1), "%s/ca1", fx->dir);
    snprintf(fx->ca2, sizeof(fx->ca2), "%s/ca2", fx->dir);
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_pki_ca_create(fx->ca1, "c1", &diag), 0);
    assert_int_equal(tdm_pki_ca_create(fx->ca2, "c2", &diag), 0);
    const char *names[] = {"node1", "node2", "node3", "client:alice"};
    const char *dirs[] = {"node1", "node2", "node3", "alice"};
    char out[PATH_SIZE];
    for (size_t i = 0; i < 4; i++) {
        fx_path(out, dirs[i]);
        assert_int_equal(tdm_pki_issue(fx->ca1, names[i], out, &diag), 0);
    }
    fx_path(out, "impostor2");
    assert_int_equal(tdm_pki_issue(fx->ca2, "node2", out, &diag), 0);
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tdm_test_tmpdir_remove(fx->dir);
    test_free(fx);
    return 0;
}

static void end_open(struct end *end, const char *dir, enum tdm_tls_side side,
                     const struct tdm_tls_peers *peers)
{
    char path[PATH_SIZE];
    fx_path(path, dir);
    memset(end, 0, sizeof(*end));
    assert_int_equal(tdm_tls_config_init_dir(&end->config, path, &end->diag), 0);
    assert_int_equal(tdm_tls_session_init(&end->session, &end->config, side, peers, &end->diag), 0);
    end->rv = -EAGAIN;
}

static void end_close(struct end *end)
{
    tdm_tls_session_close(&end->session);
    tdm_tls_config_close(&end->config);
}

/* Move every pending byte from one session to the other; append a copy to log
 * (if not NULL). Returns the bytes moved. */
static size_t move(struct end *from, struct end *to, uint8_t *log, size_t *log_size)
{
    uint8_t buffer[16384];
    size_t moved = 0;
    size_t n;
    while ((n = tdm_tls_take(&from->session, buffer, sizeof(buffer))) > 0) {
        if (log != NULL) {
            assert_true(*log_size + n <= 65536);
            memcpy(log + *log_size, buffer, n);
            *log_size += n;
        }
        size_t consumed = 0;
        int rv = tdm_tls_feed(&to->session, buffer, n, &consumed);
        if (rv != 0) {
            return moved; /* The receiver failed; the rest is dropped. */
        }
        assert_int_equal(consumed, n);
        moved += n;
    }
    return moved;
}

static void step(struct end *end)
{
    if (end->session.state == TDM_TLS_HANDSHAKE) {
        end->rv = tdm_tls_handshake(&end->session, &end->diag);
    }
}

/* Run the handshake until nothing moves. Logs what each side sent. */
static void pump_logged(struct end *dialer, struct end *acceptor, uint8_t *dialer_log,
                        size_t *dialer_log_size, uint8_t *acceptor_log, size_t *acceptor_log_size)
{
    step(dialer);
    for (int round = 0; round < 20; round++) {
        size_t moved = move(dialer, acceptor, dialer_log, dialer_log_size);
        step(acceptor);
        moved += move(acceptor, dialer, acceptor_log, acceptor_log_size);
        step(dialer);
        if (moved == 0) {
            return;
        }
    }
    fail_msg("handshake did not settle in 20 rounds");
}

static void pump(struct end *dialer, struct end *acceptor)
{
    pump_logged(dialer, acceptor, NULL, NULL, NULL, NULL);
}

/* Read everything available on end into buffer; returns the last code. */
static int read_all(struct end *end, uint8_t *buffer, size_t size, size_t *total)
{
    *total = 0;
    for (;;) {
        size_t n = 0;
        int rv = tdm_tls_read(&end->session, buffer + *total, size - *total, &n, &end->diag);
        if (rv != 0) {
            return rv;
        }
        *total += n;
        if (*total == size) {
            return 0;
        }
    }
}

static const char *const node_names[] = {"node1", "node2", "node3"};

/* node1 dials node2 (pinned by name); node2 accepts node1 and node3. Both
 * complete a TLS 1.3 handshake, name each other, and move data both ways,
 * including a payload that spans many records. */
static void test_tls_handshake__mutual(void **state)
{
    (void)state;
    struct end dialer;
    struct end acceptor;
    struct tdm_tls_peers dial = {.expected = "node2"};
    struct tdm_tls_peers accept = {.allowed = (const char *const[]){"node1", "node3"},
                                   .allowed_count = 2};
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_int_equal(dialer.rv, 0);
    assert_int_equal(acceptor.rv, 0);
    assert_true(tdm_tls_established(&dialer.session));
    assert_true(tdm_tls_established(&acceptor.session));
    assert_string_equal(tdm_tls_peer_name(&dialer.session), "node2");
    assert_string_equal(tdm_tls_peer_name(&acceptor.session), "node1");
    assert_false(tdm_tls_peer_is_client(&acceptor.session));
    assert_int_equal(SSL_version(dialer.session.ssl), TLS1_3_VERSION);
    assert_int_equal(SSL_session_reused(dialer.session.ssl), 0);

    static uint8_t big[100000];
    static uint8_t got[100000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)(i * 7);
    }
    assert_int_equal(tdm_tls_write(&dialer.session, big, sizeof(big), &dialer.diag), 0);
    assert_int_equal(tdm_tls_write(&acceptor.session, "pong", 4, &acceptor.diag), 0);
    size_t total = 0;
    while (total < sizeof(big)) {
        move(&dialer, &acceptor, NULL, NULL);
        size_t n = 0;
        int rv = read_all(&acceptor, got + total, sizeof(got) - total, &n);
        assert_true(rv == 0 || rv == -EAGAIN);
        total += n;
    }
    assert_memory_equal(big, got, sizeof(big));
    move(&acceptor, &dialer, NULL, NULL);
    assert_int_equal(read_all(&dialer, got, 4, &total), 0);
    assert_memory_equal(got, "pong", 4);
    assert_int_equal(read_all(&dialer, got, 4, &total), -EAGAIN);

    /* A clean close: close_notify, then end of stream is not an error. */
    assert_int_equal(tdm_tls_close_notify(&dialer.session), 0);
    move(&dialer, &acceptor, NULL, NULL);
    assert_int_equal(read_all(&acceptor, got, 4, &total), -EPIPE);
    assert_int_equal(tdm_tls_eof(&acceptor.session, &acceptor.diag), 0);
    end_close(&dialer);
    end_close(&acceptor);
}

/* One side of a refused handshake: it fails with rv and message and reports no
 * authenticated peer. */
static void assert_refused(struct end *end, int rv, const char *message)
{
    if (end->session.error == 0) {
        /* TLS 1.3: the dialer finishes its handshake before the acceptor checks
         * the dialer's certificate, so it learns of the refusal (the alert) on
         * its first read. The acceptor never read a byte from it. */
        uint8_t byte;
        size_t n;
        int read_rv = tdm_tls_read(&end->session, &byte, 1, &n, &end->diag);
        assert_int_equal(read_rv, rv);
    }
    assert_int_equal(end->session.error, rv);
    assert_int_equal(end->session.state, TDM_TLS_FAILED);
    assert_false(tdm_tls_established(&end->session));
    if (strstr(end->diag.message, message) == NULL) {
        fail_msg("diag [%s] lacks [%s]", end->diag.message, message);
    }
    assert_string_equal(tdm_tls_peer_name(&end->session), "");
}

/* A node whose certificate comes from another CA is refused by our dialer and
 * by our acceptor, both naming the cause. */
static void test_tls_handshake__other_ca(void **state)
{
    (void)state;
    struct end dialer;
    struct end acceptor;
    struct tdm_tls_peers dial = {.expected = "node2"};
    struct tdm_tls_peers accept = {.allowed = node_names, .allowed_count = 3};
    /* We dial the impostor. */
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "impostor2", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_refused(&dialer, -EACCES, "peer certificate not issued by the cluster CA");
    assert_refused(&acceptor, -EACCES, "peer refused our certificate");
    end_close(&dialer);
    end_close(&acceptor);
    /* The impostor dials us. */
    dial.expected = "node2";
    end_open(&dialer, "impostor2", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_refused(&dialer, -EACCES, "peer certificate not issued by the cluster CA");
    assert_refused(&acceptor, -EACCES, "peer refused our certificate");
    end_close(&dialer);
    end_close(&acceptor);
    /* Our own files must agree: the impostor's certificate under c1 is refused. */
    char key[PATH_SIZE], cert[PATH_SIZE], ca[PATH_SIZE];
    fx_path(key, "impostor2/node.key");
    fx_path(cert, "impostor2/node.crt");
    snprintf(ca, sizeof(ca), "%s/ca.crt", fx->ca1);
    struct tdm_tls_config config;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_tls_config_init(&config, key, cert, ca, &diag), TANDEM_EINVALID);
    assert_non_null(strstr(diag.message, "was not issued by"));
}

/* Connect a raw OpenSSL client (certificate optional, trusting ca_file) to
 * acceptor and run the handshake; returns the raw client's SSL. */
static SSL *raw_dial(SSL_CTX *ctx, struct end *acceptor)
{
    SSL *ssl = SSL_new(ctx);
    BIO *in = BIO_new(BIO_s_mem());
    BIO *out = BIO_new(BIO_s_mem());
    assert_non_null(ssl);
    BIO_set_mem_eof_return(in, -1);
    SSL_set_bio(ssl, in, out);
    SSL_set_connect_state(ssl);
    uint8_t buffer[16384];
    for (int round = 0; round < 20; round++) {
        SSL_do_handshake(ssl);
        size_t moved = 0;
        int n;
        while ((n = BIO_read(out, buffer, sizeof(buffer))) > 0) {
            size_t consumed;
            tdm_tls_feed(&acceptor->session, buffer, (size_t)n, &consumed);
            moved += (size_t)n;
        }
        step(acceptor);
        size_t taken;
        while ((taken = tdm_tls_take(&acceptor->session, buffer, sizeof(buffer))) > 0) {
            BIO_write(in, buffer, (int)taken);
            moved += taken;
        }
        if (moved == 0) {
            break;
        }
    }
    ERR_clear_error();
    return ssl;
}

static SSL_CTX *raw_ctx(const char *cert_dir, const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca_file, NULL), 1);
    if (cert_dir != NULL) {
        char path[PATH_SIZE];
        snprintf(path, sizeof(path), "%s/node.crt", cert_dir);
        assert_int_equal(SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM), 1);
        snprintf(path, sizeof(path), "%s/node.key", cert_dir);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

/* A client without a certificate, and a stranger's certificate presented by a
 * peer that trusts our CA, are both refused by the acceptor. */
static void test_tls_handshake__raw_peers(void **state)
{
    (void)state;
    char ca[PATH_SIZE];
    char impostor[PATH_SIZE];
    snprintf(ca, sizeof(ca), "%s/ca.crt", fx->ca1);
    fx_path(impostor, "impostor2");
    struct tdm_tls_peers accept = {.allowed = node_names, .allowed_count = 3, .clients = true};
    const char *cert_dirs[] = {NULL, impostor};
    const char *messages[] = {"peer sent no certificate",
                              "peer certificate not issued by the cluster CA"};
    for (size_t i = 0; i < 2; i++) {
        struct end acceptor;
        end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
        SSL_CTX *ctx = raw_ctx(cert_dirs[i], ca);
        SSL *ssl = raw_dial(ctx, &acceptor);
        assert_refused(&acceptor, -EACCES, messages[i]);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        end_close(&acceptor);
    }
}

/* The dialer pins the name: reaching node3 when node2 was expected is refused.
 * An acceptor refuses a node it does not list. */
static void test_tls_handshake__wrong_name(void **state)
{
    (void)state;
    struct end dialer;
    struct end acceptor;
    struct tdm_tls_peers dial = {.expected = "node2"};
    struct tdm_tls_peers accept = {.allowed = node_names, .allowed_count = 3};
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node3", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_refused(&dialer, -EACCES, "peer name node3, expected node2");
    assert_refused(&acceptor, -EACCES, "peer refused our certificate");
    end_close(&dialer);
    end_close(&acceptor);

    dial.expected = "node2";
    accept.allowed_count = 1; /* node1 only. */
    end_open(&dialer, "node3", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_refused(&acceptor, -EACCES, "peer name node3 is not an allowed node");
    assert_refused(&dialer, -EACCES, "peer refused our certificate");
    end_close(&dialer);
    end_close(&acceptor);
}

/* A client certificate is refused where only nodes are allowed, accepted where
 * clients are, and never accepted by a dialer as a node. */
static void test_tls_handshake__client_certificate(void **state)
{
    (void)state;
    struct end dialer;
    struct end acceptor;
    struct tdm_tls_peers dial = {.expected = NULL};
    struct tdm_tls_peers accept = {.allowed = node_names, .allowed_count = 3};
    end_open(&dialer, "alice", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_refused(&acceptor, -EACCES,
                   "client certificate client:alice refused: this port accepts nodes only");
    assert_refused(&dialer, -EACCES, "peer refused our certificate");
    end_close(&dialer);
    end_close(&acceptor);

    accept.clients = true;
    end_open(&dialer, "alice", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_true(tdm_tls_established(&acceptor.session));
    assert_true(tdm_tls_established(&dialer.session));
    assert_string_equal(tdm_tls_peer_name(&acceptor.session), "client:alice");
    assert_true(tdm_tls_peer_is_client(&acceptor.session));
    assert_string_equal(tdm_tls_peer_name(&dialer.session), "node2");
    end_close(&dialer);
    end_close(&acceptor);

    /* A client certificate cannot serve the accepting end of a link. */
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "alice", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_refused(&dialer, -EACCES, "peer certificate not valid for this end");
    end_close(&dialer);
    end_close(&acceptor);
}

/* Garbage instead of a ClientHello, and a handshake cut short by end of
 * stream, are refused; neither side ever reports an authenticated peer. */
static void test_tls_handshake__garbage_and_truncation(void **state)
{
    (void)state;
    struct tdm_tls_peers dial = {.expected = "node2"};
    struct tdm_tls_peers accept = {.allowed = node_names, .allowed_count = 3};
    struct tdm_prng prng;
    tdm_prng_init(&prng, 42);
    for (int i = 0; i < 20; i++) {
        struct end acceptor;
        end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
        uint8_t junk[300];
        for (size_t j = 0; j < sizeof(junk); j++) {
            junk[j] = (uint8_t)tdm_prng_next(&prng);
        }
        size_t consumed;
        assert_int_equal(tdm_tls_feed(&acceptor.session, junk, sizeof(junk), &consumed), 0);
        step(&acceptor);
        assert_refused(&acceptor, -EPROTO, "TLS: ");
        end_close(&acceptor);
    }
    /* Half a ClientHello, then the connection closes. */
    struct end dialer;
    struct end acceptor;
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    step(&dialer);
    uint8_t hello[4096];
    size_t size = tdm_tls_take(&dialer.session, hello, sizeof(hello));
    assert_true(size > 100);
    size_t consumed;
    assert_int_equal(tdm_tls_feed(&acceptor.session, hello, size / 2, &consumed), 0);
    step(&acceptor);
    assert_int_equal(acceptor.rv, -EAGAIN);
    assert_int_equal(tdm_tls_eof(&acceptor.session, &acceptor.diag), -EPROTO);
    assert_refused(&acceptor, -EPROTO, "closed during the handshake");
    end_close(&dialer);
    end_close(&acceptor);
    /* An established stream that ends without close_notify is truncated. */
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    pump(&dialer, &acceptor);
    assert_true(tdm_tls_established(&acceptor.session));
    assert_int_equal(tdm_tls_eof(&acceptor.session, &acceptor.diag), -EPROTO);
    assert_non_null(strstr(acceptor.diag.message, "without close_notify"));
    end_close(&dialer);
    end_close(&acceptor);
}

/* Recorded flights do not replay: the server's flight from one handshake fed
 * to a new dialer, the client's flight fed to a new acceptor, and a data record
 * fed twice all fail; nothing is accepted. */
static void test_tls_handshake__replay(void **state)
{
    (void)state;
    struct tdm_tls_peers dial = {.expected = "node2"};
    struct tdm_tls_peers accept = {.allowed = node_names, .allowed_count = 3};
    static uint8_t client_log[65536];
    static uint8_t server_log[65536];
    size_t client_size = 0;
    size_t server_size = 0;
    struct end dialer;
    struct end acceptor;
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    pump_logged(&dialer, &acceptor, client_log, &client_size, server_log, &server_size);
    assert_true(tdm_tls_established(&dialer.session));
    /* A record replayed within the session fails its sequence-number check. */
    uint8_t record[256];
    assert_int_equal(tdm_tls_write(&dialer.session, "frame", 5, &dialer.diag), 0);
    size_t record_size = tdm_tls_take(&dialer.session, record, sizeof(record));
    size_t consumed;
    uint8_t got[16];
    size_t n;
    assert_int_equal(tdm_tls_feed(&acceptor.session, record, record_size, &consumed), 0);
    assert_int_equal(tdm_tls_read(&acceptor.session, got, sizeof(got), &n, &acceptor.diag), 0);
    assert_int_equal(tdm_tls_feed(&acceptor.session, record, record_size, &consumed), 0);
    assert_int_equal(tdm_tls_read(&acceptor.session, got, sizeof(got), &n, &acceptor.diag),
                     -EPROTO);
    end_close(&dialer);
    end_close(&acceptor);

    /* The server's recorded flight, to a fresh dialer. */
    end_open(&dialer, "node1", TDM_TLS_DIAL, &dial);
    step(&dialer);
    uint8_t discard[4096];
    while (tdm_tls_take(&dialer.session, discard, sizeof(discard)) > 0) {
    }
    assert_int_equal(tdm_tls_feed(&dialer.session, server_log, server_size, &consumed), 0);
    step(&dialer);
    assert_true(dialer.rv < 0);
    assert_int_not_equal(dialer.rv, -EAGAIN);
    assert_false(tdm_tls_established(&dialer.session));
    end_close(&dialer);

    /* The client's recorded flight, to a fresh acceptor. */
    end_open(&acceptor, "node2", TDM_TLS_ACCEPT, &accept);
    assert_int_equal(tdm_tls_feed(&acceptor.session, client_log, client_size, &consumed), 0);
    step(&acceptor);
    assert_true(acceptor.rv < 0);
    assert_int_not_equal(acceptor.rv, -EAGAIN);
    assert_false(tdm_tls_established(&acceptor.session));
    end_close(&acceptor);
}

/* The CA refuses to be created twice; an issued key is private (0600); a
 * second issue into the same directory is refused; names are checked. */
static void test_pki__files(void **state)
{
    (void)state;
    struct tdm_diag diag = {{0}};
    assert_int_equal(tdm_pki_ca_create(fx->ca1, "c1", &diag), -EEXIST);
    assert_non_null(strstr(diag.message, "already holds a CA"));
    char path[PATH_SIZE];
    struct stat st;
    snprintf(path, sizeof(path), "%s/ca.key", fx->ca1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    fx_path(path, "node1/node.key");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    fx_path(path, "node1");
    assert_int_equal(tdm_pki_issue(fx->ca1, "node1", path, &diag), -EEXIST);
    assert_int_equal(tdm_pki_issue(fx->ca1, "bad name", path, &diag), TANDEM_EINVALID);
    fx_path(path, "nothing");
    assert_int_equal(tdm_pki_issue(path, "node9", path, &diag), -ENOENT);
    assert_non_null(strstr(diag.message, "no CA in"));
    char cluster[64];
    assert_int_equal(tdm_pki_ca_cluster(fx->ca2, cluster, sizeof(cluster), &diag), 0);
    assert_string_equal(cluster, "c2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_handshake__mutual),
        cmocka_unit_test(test_tls_handshake__other_ca),
        cmocka_unit_test(test_tls_handshake__raw_peers),
        cmocka_unit_test(test_tls_handshake__wrong_name),
        cmocka_unit_test(test_tls_handshake__client_certificate),
        cmocka_unit_test(test_tls_handshake__garbage_and_truncation),
        cmocka_unit_test(test_tls_handshake__replay),
        cmocka_unit_test(test_pki__files),
    };
    return cmocka_run_group_tests_name("tls", tests, group_setup, group_teardown);
}
