/* net/pki.c: the private cluster CA and the certificates it issues (net/tls.h;
 * docs/PROTOCOL.md §2.1). Used by "tandem ca" and "tandem init --listen".
 *
 * CA, happy path (tdm_pki_ca_create):
 * 1. Create CADIR (0700) and refuse one that already holds ca.key or ca.crt.
 * 2. Generate an EC P-256 key; make a self-signed X.509 v3 certificate with
 *    CN "tandem CA <cluster>", a random 159-bit serial, valid from one hour
 *    ago (clock skew between data centres) for 10 years, basicConstraints
 *    CA:TRUE pathlen:0, keyUsage keyCertSign and cRLSign, key identifiers.
 * 3. Write ca.key (0600, O_EXCL) and ca.crt (0644), fsync both and CADIR.
 *
 * Issue, happy path (tdm_pki_issue): load the CA, create OUTDIR (0700), refuse
 * one that has node.key, generate a P-256 key and a certificate with CN NAME
 * signed by the CA: CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
 * serverAuth+clientAuth for a node (it dials and accepts) or clientAuth only
 * for "client:<name>" (so a client certificate cannot serve a node's end).
 * Write node.key (0600), node.crt and a copy of ca.crt; fsync them and OUTDIR.
 *
 * Failure modes: a step that fails returns its code with a diag naming the
 * file or the OpenSSL reason, and removes the files this call created (the
 * directories stay). The CA key never leaves CADIR.
 *
 * Close: nothing is kept between calls. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/path.h"
#include "engine/base/assert.h"
#include "net/proto.h"
#include "net/tls.h"

#define PKI_CA_PREFIX   "tandem CA "
#define PKI_VALID_DAYS  3653 /* Ten years, leap days included. */
#define PKI_BACKDATE_S  3600 /* Tolerate an hour of clock skew. */
#define PKI_SERIAL_BITS 159  /* RFC 5280: at most 20 octets, positive. */
#define PKI_DIR_MODE    0700
#define PKI_KEY_MODE    0600
#define PKI_CERT_MODE   0644
#define PKI_PATH_SIZE   4096

static int pki_path(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PKI_PATH_SIZE, "%s/%s", dir, name);
    return n < 0 || n >= PKI_PATH_SIZE ? -ENAMETOOLONG : 0;
}

static bool pki_exists(const char *dir, const char *name)
{
    char path[PKI_PATH_SIZE];
    struct stat st;
    return pki_path(path, dir, name) == 0 && stat(path, &st) == 0;
}

static int pki_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rv = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rv;
}

/* Write a key (key != NULL) or a certificate as PEM to a new file dir/name
 * with mode, durably. Refuses an existing file (-EEXIST). */
static int pki_write_pem(const char *dir, const char *name, EVP_PKEY *key, X509 *cert, int mode,
                         struct tdm_diag *diag)
{
    char path[PKI_PATH_SIZE];
    int rv = pki_path(path, dir, name);
    if (rv != 0) {
        tdm_diag_printf(diag, "%s/%s: path too long", dir, name);
        return rv;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        rv = -errno;
        tdm_diag_printf(diag, "create %s: %s", path, strerror(-rv));
        return rv;
    }
    BIO *bio = BIO_new_fd(fd, BIO_NOCLOSE);
    int ok = bio != NULL;
    if (ok && key != NULL) {
        ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    } else if (ok) {
        ok = PEM_write_bio_X509(bio, cert);
    }
    ok = ok && BIO_flush(bio) == 1;
    BIO_free(bio);
    ERR_clear_error();
    rv = ok ? 0 : -EIO;
    if (rv == 0 && fsync(fd) != 0) {
        rv = -errno;
    }
    close(fd);
    if (rv != 0) {
        tdm_diag_printf(diag, "write %s: %s", path, strerror(-rv));
        unlink(path);
    }
    return rv;
}

static void pki_unlink(const char *dir, const char *name)
{
    char path[PKI_PATH_SIZE];
    if (pki_path(path, dir, name) == 0) {
        unlink(path); /* Best effort: undo a half-written credential. */
    }
}

/* A random positive serial, validity, version 3, subject CN name. */
static int pki_cert_basics(X509 *cert, const char *common_name, EVP_PKEY *key)
{
    BIGNUM *serial = BN_new();
    int ok = serial != NULL;
    ok = ok && BN_rand(serial, PKI_SERIAL_BITS, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1;
    ok = ok && BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) != NULL;
    BN_free(serial);
    ok = ok && X509_set_version(cert, X509_VERSION_3) == 1;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(cert), -PKI_BACKDATE_S) != NULL;
    ok = ok && X509_time_adj_ex(X509_getm_notAfter(cert), PKI_VALID_DAYS, 0, NULL) != NULL;
    X509_NAME *subject = X509_get_subject_name(cert);
    ok = ok && X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
                                          (const unsigned char *)"tandem", -1, -1, 0) == 1;
    ok = ok && X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                          (const unsigned char *)common_name, -1, -1, 0) == 1;
    ok = ok && X509_set_pubkey(cert, key) == 1;
    return ok ? 0 : -ENOMEM;
}

/* Add the extensions (name = OpenSSL config syntax value) in order. */
static int pki_cert_extensions(X509 *cert, X509 *issuer, const int *nids, const char *const *values,
                               size_t count)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    for (size_t i = 0; i < count; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nids[i], values[i]);
        if (ext == NULL) {
            return -ENOMEM;
        }
        int ok = X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        if (ok != 1) {
            return -ENOMEM;
        }
    }
    return 0;
}

/* Build the self-signed CA certificate for cluster. */
static X509 *pki_ca_cert_make(const char *cluster, EVP_PKEY *key)
{
    char common_name[sizeof(PKI_CA_PREFIX) + TDM_PROTO_NAME_SIZE_MAX];
    snprintf(common_name, sizeof(common_name), "%s%s", PKI_CA_PREFIX, cluster);
    X509 *cert = X509_new();
    if (cert == NULL || pki_cert_basics(cert, common_name, key) != 0 ||
        X509_set_issuer_name(cert, X509_get_subject_name(cert)) != 1) {
        X509_free(cert);
        return NULL;
    }
    const int nids[] = {NID_basic_constraints, NID_key_usage, NID_subject_key_identifier,
                        NID_authority_key_identifier};
    const char *const values[] = {"critical,CA:TRUE,pathlen:0", "critical,keyCertSign,cRLSign",
                                  "hash", "keyid:always"};
    if (pki_cert_extensions(cert, cert, nids, values, 4) != 0 ||
        X509_sign(cert, key, EVP_sha256()) == 0) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

int tdm_pki_ca_create(const char *cadir, const char *cluster, struct tdm_diag *diag)
{
    tdm_assert(cadir != NULL);
    tdm_assert(cluster != NULL);
    if (!tdm_proto_name_valid(cluster, strlen(cluster))) {
        tdm_diag_printf(diag, "cluster name '%s': use 1-63 letters, digits, '.', '_' or '-'",
                        cluster);
        return TANDEM_EINVALID;
    }
    int rv = tdm_mkdir_parents(cadir, PKI_DIR_MODE);
    if (rv != 0) {
        tdm_diag_printf(diag, "create %s: %s", cadir, strerror(-rv));
        return rv;
    }
    if (pki_exists(cadir, "ca.key") || pki_exists(cadir, TDM_TLS_CA_FILE)) {
        tdm_diag_printf(diag, "%s already holds a CA (ca.key or ca.crt): refusing to replace it",
                        cadir);
        return -EEXIST;
    }
    ERR_clear_error();
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key != NULL ? pki_ca_cert_make(cluster, key) : NULL;
    if (cert == NULL) {
        tdm_diag_printf(diag, "make the CA key and certificate: out of memory");
        rv = -ENOMEM;
        goto err_after_key;
    }
    rv = pki_write_pem(cadir, "ca.key", key, NULL, PKI_KEY_MODE, diag);
    if (rv != 0) {
        goto err_after_cert;
    }
    rv = pki_write_pem(cadir, TDM_TLS_CA_FILE, NULL, cert, PKI_CERT_MODE, diag);
    if (rv == 0) {
        rv = pki_fsync_dir(cadir);
    }
    if (rv != 0) {
        pki_unlink(cadir, "ca.key");
        pki_unlink(cadir, TDM_TLS_CA_FILE);
        goto err_after_cert;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return 0;

err_after_cert:
    X509_free(cert);
err_after_key:
    EVP_PKEY_free(key);
    ERR_clear_error();
    tdm_assert(rv < 0);
    return rv;
}

/* Load cadir/ca.crt and, if key is not NULL, cadir/ca.key. */
static int pki_ca_load(const char *cadir, X509 **cert, EVP_PKEY **key, struct tdm_diag *diag)
{
    char path[PKI_PATH_SIZE];
    const char *names[] = {TDM_TLS_CA_FILE, "ca.key"};
    for (size_t i = 0; i < (key != NULL ? 2u : 1u); i++) {
        if (pki_path(path, cadir, names[i]) != 0) {
            tdm_diag_printf(diag, "%s: path too long", cadir);
            return -ENAMETOOLONG;
        }
        FILE *file = fopen(path, "re");
        if (file == NULL) {
            int rv = -errno;
            tdm_diag_printf(diag, "no CA in %s: open %s: %s", cadir, names[i], strerror(-rv));
            if (i == 1) {
                X509_free(*cert);
            }
            return rv;
        }
        if (i == 0) {
            *cert = PEM_read_X509(file, NULL, NULL, NULL);
        } else {
            *key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
        }
        fclose(file);
        if ((i == 0 && *cert == NULL) || (i == 1 && *key == NULL)) {
            ERR_clear_error();
            tdm_diag_printf(diag, "%s/%s: not a PEM %s", cadir, names[i],
                            i == 0 ? "certificate" : "private key");
            if (i == 1) {
                X509_free(*cert);
            }
            return TANDEM_EINVALID;
        }
    }
    return 0;
}

int tdm_pki_ca_cluster(const char *cadir, char *cluster, size_t size, struct tdm_diag *diag)
{
    tdm_assert(cadir != NULL);
    tdm_assert(size > TDM_PROTO_NAME_SIZE_MAX);
    X509 *cert = NULL;
    int rv = pki_ca_load(cadir, &cert, NULL, diag);
    if (rv != 0) {
        return rv;
    }
    char common_name[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, common_name,
                              (int)sizeof(common_name));
    X509_free(cert);
    ERR_clear_error();
    size_t prefix = strlen(PKI_CA_PREFIX);
    const char *name = common_name + prefix;
    if (strncmp(common_name, PKI_CA_PREFIX, prefix) != 0 ||
        !tdm_proto_name_valid(name, strlen(name))) {
        tdm_diag_printf(diag, "%s/ca.crt is not a tandem cluster CA", cadir);
        return TANDEM_EINVALID;
    }
    snprintf(cluster, size, "%s", name);
    return 0;
}

/* Build the certificate for name, signed by the CA. */
static X509 *pki_leaf_cert_make(const char *name, EVP_PKEY *key, X509 *ca_cert, EVP_PKEY *ca_key)
{
    bool client = strncmp(name, TDM_TLS_CLIENT_PREFIX, strlen(TDM_TLS_CLIENT_PREFIX)) == 0;
    X509 *cert = X509_new();
    if (cert == NULL || pki_cert_basics(cert, name, key) != 0 ||
        X509_set_issuer_name(cert, X509_get_subject_name(ca_cert)) != 1) {
        X509_free(cert);
        return NULL;
    }
    const int nids[] = {NID_basic_constraints, NID_key_usage, NID_ext_key_usage,
                        NID_subject_key_identifier, NID_authority_key_identifier};
    const char *const values[] = {"critical,CA:FALSE", "critical,digitalSignature",
                                  client ? "clientAuth" : "serverAuth,clientAuth", "hash",
                                  "keyid:always"};
    if (pki_cert_extensions(cert, ca_cert, nids, values, 5) != 0 ||
        X509_sign(cert, ca_key, EVP_sha256()) == 0) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static bool pki_issue_name_valid(const char *name)
{
    size_t prefix = strlen(TDM_TLS_CLIENT_PREFIX);
    if (strncmp(name, TDM_TLS_CLIENT_PREFIX, prefix) == 0) {
        return tdm_proto_name_valid(name + prefix, strlen(name) - prefix);
    }
    return tdm_proto_name_valid(name, strlen(name));
}

/* Write the three files of a credential directory; on failure remove them. */
static int pki_issue_write(const char *outdir, EVP_PKEY *key, X509 *cert, X509 *ca_cert,
                           struct tdm_diag *diag)
{
    int rv = pki_write_pem(outdir, TDM_TLS_KEY_FILE, key, NULL, PKI_KEY_MODE, diag);
    if (rv != 0) {
        return rv;
    }
    rv = pki_write_pem(outdir, TDM_TLS_CERT_FILE, NULL, cert, PKI_CERT_MODE, diag);
    if (rv == 0) {
        rv = pki_write_pem(outdir, TDM_TLS_CA_FILE, NULL, ca_cert, PKI_CERT_MODE, diag);
    }
    if (rv == 0) {
        rv = pki_fsync_dir(outdir);
    }
    if (rv != 0) {
        pki_unlink(outdir, TDM_TLS_KEY_FILE);
        pki_unlink(outdir, TDM_TLS_CERT_FILE);
        pki_unlink(outdir, TDM_TLS_CA_FILE);
    }
    return rv;
}

int tdm_pki_issue(const char *cadir, const char *name, const char *outdir, struct tdm_diag *diag)
{
    tdm_assert(cadir != NULL);
    tdm_assert(name != NULL);
    tdm_assert(outdir != NULL);
    if (!pki_issue_name_valid(name)) {
        tdm_diag_printf(diag, "name '%s': use 1-63 letters, digits, '.', '_' or '-'", name);
        return TANDEM_EINVALID;
    }
    X509 *ca_cert = NULL;
    EVP_PKEY *ca_key = NULL;
    int rv = pki_ca_load(cadir, &ca_cert, &ca_key, diag);
    if (rv != 0) {
        return rv;
    }
    rv = tdm_mkdir_parents(outdir, PKI_DIR_MODE);
    if (rv != 0) {
        tdm_diag_printf(diag, "create %s: %s", outdir, strerror(-rv));
        goto err_after_ca;
    }
    if (pki_exists(outdir, TDM_TLS_KEY_FILE)) {
        tdm_diag_printf(diag, "%s already holds a key (%s): refusing to replace it", outdir,
                        TDM_TLS_KEY_FILE);
        rv = -EEXIST;
        goto err_after_ca;
    }
    ERR_clear_error();
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key != NULL ? pki_leaf_cert_make(name, key, ca_cert, ca_key) : NULL;
    rv = cert != NULL ? pki_issue_write(outdir, key, cert, ca_cert, diag) : -ENOMEM;
    if (cert == NULL) {
        tdm_diag_printf(diag, "make the key and certificate of %s: out of memory", name);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
err_after_ca:
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    ERR_clear_error();
    return rv;
}
