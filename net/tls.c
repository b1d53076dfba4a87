/* net/tls.c: mutual TLS 1.3 sessions over memory BIOs (net/tls.h; the link
 * rules of docs/PROTOCOL.md §2).
 *
 * Happy path:
 * 1. tdm_tls_config_init() builds one SSL_CTX: TLS 1.3 only, the cluster CA as
 *    the only trust anchor, peer certificates required both ways, no tickets.
 *    It also checks that our own certificate verifies under that CA, so that a
 *    wrong file is reported at start, not as a refusal by every peer.
 * 2. tdm_tls_session_init() makes an SSL with two memory BIOs: inbox (what the
 *    peer sent) and outbox (what to send), and copies the name policy.
 * 3. During the handshake OpenSSL verifies the chain, then calls
 *    tls_verify_callback() for each certificate; at the leaf we compare the
 *    subject CN with the policy. A refusal there stops the handshake with an
 *    alert, before any application byte is read or written.
 * 4. Established: SSL_write_ex / SSL_read_ex move plaintext; TLS records give
 *    integrity, ordering and replay protection within the connection, and the
 *    fresh ECDHE handshake of every connection makes a recorded session
 *    useless to replay.
 *
 * Failure modes: every OpenSSL failure is turned into -EACCES (authentication)
 * or -EPROTO (anything else) by tls_fail(), which records a sticky error, its
 * message and one trace line. OpenSSL's thread-local error queue is cleared
 * before every call, so a message never names an older failure.
 *
 * Close: tdm_tls_session_close() frees the SSL (and its BIOs);
 * tdm_tls_config_close() frees the SSL_CTX. */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/assert.h"
#include "engine/base/trace.h"
#include "net/proto.h"

tdm_static_assert(TDM_TLS_ALLOWED_MAX == TDM_PROTO_PEERS_MAX);
tdm_static_assert(TDM_TLS_NAME_SIZE_MAX ==
                  sizeof(TDM_TLS_CLIENT_PREFIX) - 1 + TDM_PROTO_NAME_SIZE_MAX);

/* --- Names ------------------------------------------------------------------ */

static bool tls_name_is_client(const char *name)
{
    return strncmp(name, TDM_TLS_CLIENT_PREFIX, sizeof(TDM_TLS_CLIENT_PREFIX) - 1) == 0;
}

/* A certificate name is a node id or "client:" + a name. */
static bool tls_name_valid(const char *name)
{
    size_t size = strlen(name);
    if (tls_name_is_client(name)) {
        size_t prefix = sizeof(TDM_TLS_CLIENT_PREFIX) - 1;
        return tdm_proto_name_valid(name + prefix, size - prefix);
    }
    return tdm_proto_name_valid(name, size);
}

/* Copy the single subject CN of cert into name. Returns false if there is
 * none, more than one, or it is not a valid tandem name. */
static bool tls_cert_name(X509 *cert, char *name, size_t size)
{
    tdm_assert(size == TDM_TLS_NAME_SIZE_MAX + 1);
    const X509_NAME *subject = X509_get_subject_name(cert);
    if (subject == NULL) {
        return false;
    }
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) {
        return false;
    }
    const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
    int length = ASN1_STRING_length(data);
    if (length <= 0 || (size_t)length > TDM_TLS_NAME_SIZE_MAX) {
        return false;
    }
    const unsigned char *bytes = ASN1_STRING_get0_data(data);
    if (memchr(bytes, '\0', (size_t)length) != NULL) {
        return false;
    }
    memcpy(name, bytes, (size_t)length);
    name[length] = '\0';
    return tls_name_valid(name);
}

/* --- Configuration ------------------------------------------------------------ */

static void tls_openssl_reason(char *out, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(out, size, "%s", reason != NULL ? reason : "unknown OpenSSL error");
    ERR_clear_error();
}

static int tls_file_check(const char *path, const char *what, struct tdm_diag *diag)
{
    FILE *file = fopen(path, "re");
    if (file == NULL) {
        int rv = -errno;
        tdm_diag_printf(diag, "%s %s: %s", what, path, strerror(-rv));
        return rv;
    }
    fclose(file);
    return 0;
}

/* Verify our own certificate under the CA: a misconfigured node learns it at
 * start rather than from every peer's refusal. */
static int tls_own_cert_check(SSL_CTX *ctx, const char *cert_path, const char *ca_path,
                              struct tdm_diag *diag)
{
    X509_STORE_CTX *store_ctx = X509_STORE_CTX_new();
    if (store_ctx == NULL) {
        return -ENOMEM;
    }
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    tdm_assert(cert != NULL);
    int rv = 0;
    if (X509_STORE_CTX_init(store_ctx, SSL_CTX_get_cert_store(ctx), cert, NULL) != 1) {
        rv = -ENOMEM;
    } else if (X509_verify_cert(store_ctx) != 1) {
        int err = X509_STORE_CTX_get_error(store_ctx);
        tdm_diag_printf(diag, "%s was not issued by %s: %s", cert_path, ca_path,
                        X509_verify_cert_error_string(err));
        rv = TANDEM_EINVALID;
    }
    X509_STORE_CTX_free(store_ctx);
    ERR_clear_error();
    return rv;
}

static int tls_verify_callback(int preverify_ok, X509_STORE_CTX *store);

/* The settings of the header comment; every call here only fails on OOM. */
static int tls_ctx_settings(SSL_CTX *ctx)
{
    int ok = SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    ok &= SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    ok &= SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    ok &= SSL_CTX_set_max_early_data(ctx, 0);
    ok &= SSL_CTX_set1_groups_list(ctx, "X25519:P-256");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_verify_callback);
    SSL_CTX_set_verify_depth(ctx, 1);
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
    return ok == 1 ? 0 : -ENOMEM;
}

/* Load the three files into ctx. */
static int tls_ctx_load(SSL_CTX *ctx, const char *key_path, const char *cert_path,
                        const char *ca_path, struct tdm_diag *diag)
{
    char reason[128];
    if (SSL_CTX_use_certificate_file(ctx, cert_path, SSL_FILETYPE_PEM) != 1) {
        tls_openssl_reason(reason, sizeof(reason));
        tdm_diag_printf(diag, "load certificate %s: not a PEM certificate (OpenSSL: %s)", cert_path,
                        reason);
        return TANDEM_EINVALID;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL checks the key against the certificate as it loads it. */
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        tls_openssl_reason(reason, sizeof(reason));
        if (mismatch) {
            tdm_diag_printf(diag, "key %s does not match certificate %s", key_path, cert_path);
        } else {
            tdm_diag_printf(diag, "load key %s: not a PEM private key (OpenSSL: %s)", key_path,
                            reason);
        }
        return TANDEM_EINVALID;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        tdm_diag_printf(diag, "key %s does not match certificate %s", key_path, cert_path);
        return TANDEM_EINVALID;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1) {
        tls_openssl_reason(reason, sizeof(reason));
        tdm_diag_printf(diag, "load CA %s: not a PEM certificate (OpenSSL: %s)", ca_path, reason);
        return TANDEM_EINVALID;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_path);
    if (names == NULL) {
        tls_openssl_reason(reason, sizeof(reason));
        tdm_diag_printf(diag, "load CA %s: %s", ca_path, reason);
        return TANDEM_EINVALID;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    return tls_own_cert_check(ctx, cert_path, ca_path, diag);
}

int tdm_tls_config_init(struct tdm_tls_config *config, const char *key_path, const char *cert_path,
                        const char *ca_path, struct tdm_diag *diag)
{
    tdm_assert(config != NULL);
    tdm_assert(key_path != NULL);
    tdm_assert(cert_path != NULL);
    tdm_assert(ca_path != NULL);
    memset(config, 0, sizeof(*config));
    const char *paths[] = {key_path, cert_path, ca_path};
    const char *whats[] = {"open key", "open certificate", "open CA"};
    for (size_t i = 0; i < 3; i++) {
        int rv = tls_file_check(paths[i], whats[i], diag);
        if (rv != 0) {
            return rv;
        }
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        ERR_clear_error();
        return -ENOMEM;
    }
    int rv = tls_ctx_settings(ctx);
    if (rv == 0) {
        rv = tls_ctx_load(ctx, key_path, cert_path, ca_path, diag);
    }
    if (rv == 0 &&
        !tls_cert_name(SSL_CTX_get0_certificate(ctx), config->name, sizeof(config->name))) {
        tdm_diag_printf(diag, "certificate %s: subject CN is not a tandem node or client name",
                        cert_path);
        rv = TANDEM_EINVALID;
    }
    if (rv != 0) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        tdm_assert(rv < 0);
        return rv;
    }
    config->ctx = ctx;
    return 0;
}

int tdm_tls_config_init_dir(struct tdm_tls_config *config, const char *dir, struct tdm_diag *diag)
{
    tdm_assert(dir != NULL);
    char key[4096];
    char cert[4096];
    char ca[4096];
    snprintf(key, sizeof(key), "%s/%s", dir, TDM_TLS_KEY_FILE);
    snprintf(cert, sizeof(cert), "%s/%s", dir, TDM_TLS_CERT_FILE);
    int n = snprintf(ca, sizeof(ca), "%s/%s", dir, TDM_TLS_CA_FILE);
    if (n < 0 || (size_t)n >= sizeof(ca)) {
        tdm_diag_printf(diag, "credential directory path too long");
        return -ENAMETOOLONG;
    }
    return tdm_tls_config_init(config, key, cert, ca, diag);
}

void tdm_tls_config_close(struct tdm_tls_config *config)
{
    tdm_assert(config != NULL);
    SSL_CTX_free(config->ctx);
    config->ctx = NULL;
}

/* --- Verification -------------------------------------------------------------- */

/* Record the first reason our check refused the peer; later ones follow from it. */
static void tls_refuse(struct tdm_tls_session *session, const char *message)
{
    if (session->refusal[0] == '\0') {
        snprintf(session->refusal, sizeof(session->refusal), "%s", message);
    }
}

static const char *tls_verify_error_text(int err)
{
    switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return "peer certificate not issued by the cluster CA";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "peer certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "peer certificate not yet valid";
    case X509_V_ERR_INVALID_PURPOSE:
        return "peer certificate not valid for this end of a link (a client certificate?)";
    default:
        return NULL;
    }
}

/* Check the verified leaf's name against the policy; NULL if accepted. */
static const char *tls_name_check(const struct tdm_tls_session *session, const char *name,
                                  char *why, size_t size)
{
    bool client = tls_name_is_client(name);
    if (session->side == TDM_TLS_DIAL) {
        if (client) {
            snprintf(why, size, "peer name %s is a client certificate, expected a node", name);
            return why;
        }
        if (session->expected[0] != '\0' && strcmp(name, session->expected) != 0) {
            snprintf(why, size, "peer name %s, expected %s", name, session->expected);
            return why;
        }
        return NULL;
    }
    if (client) {
        if (!session->clients) {
            snprintf(why, size, "client certificate %s refused: this port accepts nodes only",
                     name);
            return why;
        }
        return NULL;
    }
    for (size_t i = 0; i < session->allowed_count; i++) {
        if (strcmp(name, session->allowed[i]) == 0) {
            return NULL;
        }
    }
    snprintf(why, size, "peer name %s is not an allowed node of this cluster", name);
    return why;
}

/* OpenSSL calls this for each certificate of the peer's chain, CA first and
 * the leaf (depth 0) last, with preverify_ok saying whether the chain checks
 * passed so far. Returning 0 aborts the handshake with an alert. */
static int tls_verify_callback(int preverify_ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    tdm_assert(ssl != NULL);
    struct tdm_tls_session *session = SSL_get_app_data(ssl);
    tdm_assert(session != NULL);
    if (!preverify_ok) {
        int err = X509_STORE_CTX_get_error(store);
        const char *text = tls_verify_error_text(err);
        char message[TDM_DIAG_SIZE];
        snprintf(message, sizeof(message), "%s", text != NULL ? text : "");
        if (text == NULL) {
            snprintf(message, sizeof(message), "peer certificate refused: %s",
                     X509_verify_cert_error_string(err));
        }
        tls_refuse(session, message);
        return 0;
    }
    if (X509_STORE_CTX_get_error_depth(store) > 0) {
        return 1;
    }
    char name[TDM_TLS_NAME_SIZE_MAX + 1];
    char why[TDM_DIAG_SIZE];
    const char *refused = NULL;
    if (!tls_cert_name(X509_STORE_CTX_get_current_cert(store), name, sizeof(name))) {
        refused = "peer certificate has no valid tandem name (subject CN)";
    } else {
        refused = tls_name_check(session, name, why, sizeof(why));
    }
    if (refused != NULL) {
        tls_refuse(session, refused);
        /* CERT_REJECTED makes OpenSSL send bad_certificate, which the peer reads
         * as a refusal of its credentials. */
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    snprintf(session->peer_name, sizeof(session->peer_name), "%s", name);
    return 1;
}

/* --- Sessions ------------------------------------------------------------------ */

static int tls_session_policy(struct tdm_tls_session *session, const struct tdm_tls_peers *peers,
                              struct tdm_diag *diag)
{
    if (peers->expected != NULL) {
        if (strlen(peers->expected) > TDM_TLS_NAME_SIZE_MAX) {
            tdm_diag_printf(diag, "expected peer name too long");
            return TANDEM_EINVALID;
        }
        snprintf(session->expected, sizeof(session->expected), "%s", peers->expected);
    }
    if (peers->allowed_count > TDM_TLS_ALLOWED_MAX) {
        tdm_diag_printf(diag, "%zu allowed peers, at most %d", peers->allowed_count,
                        TDM_TLS_ALLOWED_MAX);
        return TANDEM_EINVALID;
    }
    for (size_t i = 0; i < peers->allowed_count; i++) {
        if (strlen(peers->allowed[i]) > TDM_TLS_NAME_SIZE_MAX) {
            tdm_diag_printf(diag, "allowed peer name too long");
            return TANDEM_EINVALID;
        }
        snprintf(session->allowed[i], sizeof(session->allowed[i]), "%s", peers->allowed[i]);
    }
    session->allowed_count = peers->allowed_count;
    session->clients = peers->clients;
    return 0;
}

int tdm_tls_session_init(struct tdm_tls_session *session, struct tdm_tls_config *config,
                         enum tdm_tls_side side, const struct tdm_tls_peers *peers,
                         struct tdm_diag *diag)
{
    tdm_assert(config->ctx != NULL);
    tdm_assert(side == TDM_TLS_DIAL || side == TDM_TLS_ACCEPT);
    memset(session, 0, sizeof(*session));
    session->side = side;
    session->state = TDM_TLS_HANDSHAKE;
    int rv = tls_session_policy(session, peers, diag);
    if (rv != 0) {
        return rv;
    }
    ERR_clear_error();
    SSL *ssl = SSL_new(config->ctx);
    BIO *inbox = BIO_new(BIO_s_mem());
    BIO *outbox = BIO_new(BIO_s_mem());
    if (ssl == NULL || inbox == NULL || outbox == NULL) {
        SSL_free(ssl);
        BIO_free(inbox);
        BIO_free(outbox);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty inbox means "wait for more", never end of stream. */
    BIO_set_mem_eof_return(inbox, -1);
    BIO_set_mem_eof_return(outbox, -1);
    SSL_set_bio(ssl, inbox, outbox);
    SSL_set_app_data(ssl, session);
    if (side == TDM_TLS_DIAL) {
        SSL_set_connect_state(ssl);
    } else {
        SSL_set_accept_state(ssl);
    }
    session->ssl = ssl;
    session->inbox = inbox;
    session->outbox = outbox;
    return 0;
}

void tdm_tls_session_close(struct tdm_tls_session *session)
{
    tdm_assert(session != NULL);
    SSL_free(session->ssl); /* Frees both BIOs. */
    session->ssl = NULL;
    session->inbox = NULL;
    session->outbox = NULL;
}

static const char *tls_side_name(const struct tdm_tls_session *session)
{
    return session->side == TDM_TLS_DIAL ? "dial" : "accept";
}

/* The peer as a trace line can name it before it is authenticated. */
static const char *tls_peer_label(const struct tdm_tls_session *session)
{
    if (session->peer_name[0] != '\0') {
        return session->peer_name;
    }
    return session->expected[0] != '\0' ? session->expected : "unauthenticated peer";
}

static int tls_set_failed(struct tdm_tls_session *session, int rv, const char *message,
                          struct tdm_diag *diag)
{
    tdm_assert(rv < 0);
    tdm_assert(session->error == 0);
    session->error = rv;
    session->state = TDM_TLS_FAILED;
    snprintf(session->error_message, sizeof(session->error_message), "%s", message);
    tdm_diag_printf(diag, "%s", message);
    tdm_tracef("tls %s %s: %s: %s", tls_side_name(session), tls_peer_label(session),
               rv == -EACCES ? "refused" : "failed", message);
    return rv;
}

static int tls_sticky(const struct tdm_tls_session *session, struct tdm_diag *diag)
{
    tdm_assert(session->error < 0);
    tdm_diag_printf(diag, "%s", session->error_message);
    return session->error;
}

/* True if an alert the peer sent means it refused our credentials. */
static bool tls_alert_is_refusal(int reason)
{
    switch (reason) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}

/* Turn the failure of an SSL call (its return value ret) into a code. */
static int tls_fail(struct tdm_tls_session *session, int ret, struct tdm_diag *diag)
{
    int ssl_error = SSL_get_error(session->ssl, ret);
    if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return -EAGAIN;
    }
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        session->state = TDM_TLS_CLOSED;
        tdm_diag_printf(diag, "peer closed the link");
        return -EPIPE;
    }
    char message[TDM_DIAG_SIZE];
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    const char *text = ERR_reason_error_string(e);
    text = text != NULL ? text : "unknown OpenSSL error";
    int rv = -EPROTO;
    if (session->refusal[0] != '\0') {
        snprintf(message, sizeof(message), "%s", session->refusal);
        rv = -EACCES;
    } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        snprintf(message, sizeof(message), "peer sent no certificate");
        rv = -EACCES;
    } else if (tls_alert_is_refusal(reason)) {
        snprintf(message, sizeof(message), "peer refused our certificate (%s)", text);
        rv = -EACCES;
    } else if (e == 0) {
        snprintf(message, sizeof(message), "TLS error %d without detail", ssl_error);
    } else {
        snprintf(message, sizeof(message), "TLS: %s", text);
    }
    ERR_clear_error();
    return tls_set_failed(session, rv, message, diag);
}

int tdm_tls_feed(struct tdm_tls_session *session, const void *data, size_t size, size_t *consumed)
{
    tdm_assert(consumed != NULL);
    tdm_assert(data != NULL || size == 0);
    *consumed = 0;
    if (session->error != 0) {
        return session->error;
    }
    size_t pending = BIO_ctrl_pending(session->inbox);
    tdm_assert(pending <= TDM_TLS_INBOX_SIZE_MAX);
    size_t room = TDM_TLS_INBOX_SIZE_MAX - pending;
    size_t n = size < room ? size : room;
    if (n == 0) {
        return 0;
    }
    size_t written = 0;
    ERR_clear_error();
    if (BIO_write_ex(session->inbox, data, n, &written) != 1) {
        ERR_clear_error();
        return -ENOMEM;
    }
    tdm_assert(written == n);
    *consumed = written;
    return 0;
}

size_t tdm_tls_pending(const struct tdm_tls_session *session)
{
    tdm_assert(session->outbox != NULL);
    return BIO_ctrl_pending(session->outbox);
}

size_t tdm_tls_take(struct tdm_tls_session *session, void *buffer, size_t size)
{
    tdm_assert(buffer != NULL || size == 0);
    size_t taken = 0;
    if (size == 0 || BIO_ctrl_pending(session->outbox) == 0) {
        return 0;
    }
    if (BIO_read_ex(session->outbox, buffer, size, &taken) != 1) {
        ERR_clear_error();
        return 0;
    }
    tdm_assert(taken <= size);
    return taken;
}

int tdm_tls_handshake(struct tdm_tls_session *session, struct tdm_diag *diag)
{
    tdm_assert(session->ssl != NULL);
    if (session->error != 0) {
        return tls_sticky(session, diag);
    }
    if (session->state != TDM_TLS_HANDSHAKE) {
        return 0;
    }
    ERR_clear_error();
    int ret = SSL_do_handshake(session->ssl);
    if (ret != 1) {
        return tls_fail(session, ret, diag);
    }
    /* The callback saw and accepted the leaf: a verified peer has a name. */
    tdm_assert(SSL_get_verify_result(session->ssl) == X509_V_OK);
    tdm_assert(session->peer_name[0] != '\0');
    tdm_assert(SSL_version(session->ssl) == TLS1_3_VERSION);
    session->state = TDM_TLS_ESTABLISHED;
    tdm_tracef("tls %s %s: established (%s)", tls_side_name(session), session->peer_name,
               SSL_get_cipher_name(session->ssl));
    return 0;
}

int tdm_tls_write(struct tdm_tls_session *session, const void *data, size_t size,
                  struct tdm_diag *diag)
{
    tdm_assert(data != NULL || size == 0);
    if (session->error != 0) {
        return tls_sticky(session, diag);
    }
    if (session->state == TDM_TLS_HANDSHAKE) {
        return -EAGAIN;
    }
    if (size == 0) {
        return 0;
    }
    size_t written = 0;
    ERR_clear_error();
    int ret = SSL_write_ex(session->ssl, data, size, &written);
    if (ret != 1) {
        return tls_fail(session, ret, diag);
    }
    tdm_assert(written == size); /* A memory BIO takes every record. */
    return 0;
}

int tdm_tls_read(struct tdm_tls_session *session, void *buffer, size_t size, size_t *read_size,
                 struct tdm_diag *diag)
{
    tdm_assert(buffer != NULL);
    tdm_assert(size > 0);
    *read_size = 0;
    if (session->error != 0) {
        return tls_sticky(session, diag);
    }
    if (session->state == TDM_TLS_CLOSED) {
        return -EPIPE;
    }
    if (session->state == TDM_TLS_HANDSHAKE) {
        int rv = tdm_tls_handshake(session, diag);
        if (rv != 0) {
            return rv;
        }
    }
    ERR_clear_error();
    int ret = SSL_read_ex(session->ssl, buffer, size, read_size);
    if (ret != 1) {
        *read_size = 0;
        return tls_fail(session, ret, diag);
    }
    tdm_assert(*read_size >= 1);
    tdm_assert(*read_size <= size);
    return 0;
}

int tdm_tls_close_notify(struct tdm_tls_session *session)
{
    if (session->error != 0) {
        return session->error;
    }
    ERR_clear_error();
    if (SSL_shutdown(session->ssl) < 0) {
        ERR_clear_error(); /* Nothing more to tell the peer. */
    }
    return 0;
}

int tdm_tls_eof(struct tdm_tls_session *session, struct tdm_diag *diag)
{
    if (session->error != 0) {
        return tls_sticky(session, diag);
    }
    if (session->state == TDM_TLS_CLOSED) {
        return 0;
    }
    if (session->state == TDM_TLS_HANDSHAKE) {
        return tls_set_failed(session, -EPROTO, "connection closed during the handshake", diag);
    }
    tdm_assert(session->state == TDM_TLS_ESTABLISHED);
    return tls_set_failed(session, -EPROTO, "stream truncated: closed without close_notify", diag);
}

bool tdm_tls_established(const struct tdm_tls_session *session)
{
    return session->state == TDM_TLS_ESTABLISHED;
}

const char *tdm_tls_peer_name(const struct tdm_tls_session *session)
{
    return session->state == TDM_TLS_ESTABLISHED || session->state == TDM_TLS_CLOSED
               ? session->peer_name
               : "";
}

bool tdm_tls_peer_is_client(const struct tdm_tls_session *session)
{
    return tdm_tls_peer_name(session)[0] != '\0' && tls_name_is_client(session->peer_name);
}
