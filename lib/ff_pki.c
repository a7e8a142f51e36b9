#include "ff_pki.h"

#include "ff_file.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Serial numbers: 128 random bits (top bit cleared so the DER INTEGER is
 * positive), as the CA/Browser Forum asks for at least 64. */
#define SERIAL_BYTES 16
/* Longest group name OpenSSL reports ("prime256v1" and the like). */
#define GROUP_NAME_MAX 64
/* Longest part of a refused name quoted in an error message. */
#define NAME_QUOTE_MAX 80

/* Returns FF_ECRYPTO with msg, dropping OpenSSL's queued errors so they do
 * not surface later in an unrelated call on this thread. */
static int crypto_fail(struct ff_err *err, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char detail[256];
    ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    if (e == 0)
        return ff_err_set(err, FF_ECRYPTO, "pki: %s failed", what);
    return ff_err_set(err, FF_ECRYPTO, "pki: %s failed (%s)", what, detail);
}

int ff_pki_key_new(EVP_PKEY **out, struct ff_err *err)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL)
        return crypto_fail(err, "generating an ec p-256 key");
    *out = key;
    return 0;
}

int ff_pki_key_check(const EVP_PKEY *key, struct ff_err *err)
{
    if (!EVP_PKEY_is_a(key, "EC")) {
        const char *type = EVP_PKEY_get0_type_name(key);
        return ff_err_set(err, FF_EINVAL, "pki: key is of type \"%s\", expected \"EC\" (p-256)",
                          type == NULL ? "unknown" : type);
    }
    char group[GROUP_NAME_MAX];
    size_t glen = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen) != 1) {
        ERR_clear_error();
        return ff_err_set(err, FF_EINVAL, "pki: ec key has no named curve, expected p-256");
    }
    if (OBJ_txt2nid(group) != NID_X9_62_prime256v1) {
        ERR_clear_error();
        return ff_err_set(err, FF_EINVAL, "pki: ec key is on curve \"%s\", expected p-256", group);
    }
    return 0;
}

/* Private keys may be encrypted PEM; we never prompt for a passphrase on a
 * terminal (OpenSSL's default), we refuse. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

typedef int (*pem_emit_fn)(BIO *bio, const void *obj);

static int emit_private_key(BIO *bio, const void *obj)
{
    return PEM_write_bio_PrivateKey(bio, obj, NULL, NULL, 0, NULL, NULL);
}

static int emit_public_key(BIO *bio, const void *obj)
{
    return PEM_write_bio_PUBKEY(bio, obj);
}

static int emit_cert(BIO *bio, const void *obj)
{
    return PEM_write_bio_X509(bio, obj);
}

/* fsyncs the directory holding path, so a rename into it survives a crash. */
static int sync_parent(const char *path, struct ff_err *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        ff_strlcpy(dir, ".", sizeof(dir));
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof(dir))
            return ff_err_set(err, FF_EINVAL, "pki: path \"%s\" is too long", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "pki: cannot open directory \"%s\": %s", dir,
                          strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0)
        rc = ff_err_set(err, FF_EIO, "pki: cannot sync directory \"%s\": %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* Moves tmp to path unless path exists. renameat2 does that atomically;
 * file systems without RENAME_NOREPLACE get link + unlink, which is just as
 * exclusive. */
static int publish_no_replace(const char *tmp, const char *path, struct ff_err *err)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EINVAL || errno == ENOSYS) {
        if (link(tmp, path) == 0) {
            if (unlink(tmp) != 0)
                return ff_err_set(err, FF_EIO, "pki: cannot remove \"%s\": %s", tmp,
                                  strerror(errno));
            return 0;
        }
    }
    if (errno == EEXIST)
        return ff_err_set(err, FF_EEXIST, "pki: \"%s\" exists already, not replacing it", path);
    return ff_err_set(err, FF_EIO, "pki: cannot rename \"%s\" to \"%s\": %s", tmp, path,
                      strerror(errno));
}

static int write_pem_file(const char *path, mode_t mode, pem_emit_fn emit, const void *obj,
                          struct ff_err *err)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return ff_err_set(err, FF_EINVAL, "pki: path \"%s\" is too long", path);
    /* mkstemp creates the file 0600 whatever the umask, so a private key is
     * never readable by anyone else, even before it is complete. */
    int fd = mkstemp(tmp);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "pki: cannot create a temporary file for \"%s\": %s", path,
                          strerror(errno));
    int rc = 0;
    BIO *bio = NULL;
    if (mode != 0600 && fchmod(fd, mode) != 0) {
        rc =
            ff_err_set(err, FF_EIO, "pki: cannot set the mode of \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    bio = BIO_new_fd(fd, BIO_NOCLOSE);
    if (bio == NULL) {
        rc = crypto_fail(err, "opening a bio");
        goto fail;
    }
    if (emit(bio, obj) != 1 || BIO_flush(bio) != 1) {
        rc = crypto_fail(err, "writing pem");
        goto fail;
    }
    if (fsync(fd) != 0) {
        rc = ff_err_set(err, FF_EIO, "pki: cannot sync \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    BIO_free(bio);
    bio = NULL;
    int fd_closed = fd;
    fd = -1;
    if (close(fd_closed) != 0) {
        rc = ff_err_set(err, FF_EIO, "pki: cannot close \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    rc = publish_no_replace(tmp, path, err);
    if (rc != 0)
        goto fail;
    return sync_parent(path, err);
fail:
    BIO_free(bio);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int ff_pki_key_write(const EVP_PKEY *key, const char *path, bool private_key, struct ff_err *err)
{
    if (private_key)
        return write_pem_file(path, 0600, emit_private_key, key, err);
    return write_pem_file(path, 0644, emit_public_key, key, err);
}

int ff_pki_cert_write(X509 *cert, const char *path, struct ff_err *err)
{
    return write_pem_file(path, 0644, emit_cert, cert, err);
}

/* Reads a PEM file (at most FF_PKI_FILE_MAX bytes) into *out, which the
 * caller wipes and frees. */
static int pem_file_read(const char *path, char **out, size_t *len, struct ff_err *err)
{
    int rc = ff_file_read(path, FF_PKI_FILE_MAX, FF_FILE_SECRET, out, len, err);
    if (rc != 0)
        (void)ff_err_wrap(err, "pki");
    return rc;
}

int ff_pki_key_read(const char *path, bool private_key, EVP_PKEY **out, struct ff_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = pem_file_read(path, &buf, &len, err);
    if (rc != 0)
        return rc;
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL) {
        rc = crypto_fail(err, "opening a bio");
        goto out;
    }
    if (private_key)
        key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    else
        key = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    if (key == NULL) {
        ERR_clear_error();
        rc = ff_err_set(err, FF_EINVAL, "pki: \"%s\" holds no PEM %s key%s", path,
                        private_key ? "private" : "public",
                        private_key ? " (or it is encrypted)" : "");
        goto out;
    }
    rc = ff_pki_key_check(key, err);
    if (rc != 0) {
        ff_err_wrap(err, "\"%s\"", path);
        goto out;
    }
    *out = key;
    key = NULL;
out:
    EVP_PKEY_free(key);
    BIO_free(bio);
    ff_secret_wipe(buf, len);
    free(buf);
    return rc;
}

int ff_pki_cert_read(const char *path, X509 **out, struct ff_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = pem_file_read(path, &buf, &len, err);
    if (rc != 0)
        return rc;
    X509 *cert = NULL;
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL) {
        rc = crypto_fail(err, "opening a bio");
        goto out;
    }
    cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    if (cert == NULL) {
        ERR_clear_error();
        rc = ff_err_set(err, FF_EINVAL, "pki: \"%s\" holds no PEM certificate", path);
        goto out;
    }
    *out = cert;
out:
    BIO_free(bio);
    free(buf);
    return rc;
}

int ff_pki_key_id(const EVP_PKEY *key, char out[FF_PKI_KEY_ID_SIZE], struct ff_err *err)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(key, &der);
    if (len <= 0)
        return crypto_fail(err, "encoding a public key");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (ok != 1 || mdlen * 2 < FF_PKI_KEY_ID_SIZE - 1)
        return crypto_fail(err, "hashing a public key");
    ff_hex_encode(md, (FF_PKI_KEY_ID_SIZE - 1) / 2, out);
    return 0;
}

static int check_common_name(const char *cn, struct ff_err *err)
{
    size_t n = cn == NULL ? 0 : strnlen(cn, FF_PKI_CN_MAX + 1);
    if (n == 0 || n > FF_PKI_CN_MAX)
        return ff_err_set(err, FF_EINVAL, "pki: common name must be 1 to %d bytes", FF_PKI_CN_MAX);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f)
            return ff_err_set(err, FF_EINVAL, "pki: common name holds a control character");
    }
    return 0;
}

static int check_days(int days, struct ff_err *err)
{
    if (days < 1 || days > FF_PKI_DAYS_MAX)
        return ff_err_set(err, FF_ERANGE, "pki: validity of %d days is outside 1..%d", days,
                          FF_PKI_DAYS_MAX);
    return 0;
}

/* Writes a DNS name in lower case to out (FF_PKI_DNS_NAME_MAX + 1 bytes)
 * when it follows the rules in ff_pki_server_cert_new's comment. */
static bool dns_name_normalise(const char *name, char *out)
{
    size_t n = strnlen(name, FF_PKI_DNS_NAME_MAX + 1);
    if (n == 0 || n > FF_PKI_DNS_NAME_MAX)
        return false;
    size_t label_start = 0;
    bool label_all_digits = true;
    for (size_t i = 0; i <= n; i++) {
        char c = name[i];
        if (c == '.' || c == '\0') {
            size_t label_len = i - label_start;
            if (label_len == 0 || label_len > 63)
                return false;
            if (name[label_start] == '-' || name[i - 1] == '-')
                return false;
            if (c == '\0' && label_all_digits)
                return false;
            label_start = i + 1;
            label_all_digits = true;
            out[i] = c;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        if (c < '0' || c > '9')
            label_all_digits = false;
        out[i] = c;
    }
    return true;
}

/* Appends gen to gens unless an equal entry is there; takes gen. */
static int san_push(GENERAL_NAMES *gens, GENERAL_NAME *gen, struct ff_err *err)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(gens, i), gen) == 0) {
            GENERAL_NAME_free(gen);
            return 0;
        }
    }
    if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
        GENERAL_NAME_free(gen);
        return crypto_fail(err, "building subjectAltName");
    }
    return 0;
}

static int san_add(GENERAL_NAMES *gens, const char *name, struct ff_err *err)
{
    unsigned char ip[16];
    int ip_len = 0;
    if (inet_pton(AF_INET, name, ip) == 1)
        ip_len = 4;
    else if (inet_pton(AF_INET6, name, ip) == 1)
        ip_len = 16;
    char dns[FF_PKI_DNS_NAME_MAX + 1];
    if (ip_len == 0 && !dns_name_normalise(name, dns))
        return ff_err_set(err, FF_EINVAL,
                          "pki: \"%.*s\" is neither an ip address nor a valid dns name",
                          NAME_QUOTE_MAX, name);
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_STRING *value = ip_len > 0 ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    if (gen == NULL || value == NULL)
        goto fail;
    if (ip_len > 0) {
        if (ASN1_OCTET_STRING_set(value, ip, ip_len) != 1)
            goto fail;
        GENERAL_NAME_set0_value(gen, GEN_IPADD, value);
    } else {
        if (ASN1_STRING_set(value, dns, (int)strlen(dns)) != 1)
            goto fail;
        GENERAL_NAME_set0_value(gen, GEN_DNS, value);
    }
    return san_push(gens, gen, err);
fail:
    ASN1_STRING_free(value);
    GENERAL_NAME_free(gen);
    return crypto_fail(err, "building subjectAltName");
}

/* Builds the subjectAltName list: the loopback names, then names. On
 * success *out belongs to the caller (GENERAL_NAMES_free). */
static int san_build(const char *const *names, size_t n_names, GENERAL_NAMES **out,
                     struct ff_err *err)
{
    static const char *const always[] = {"127.0.0.1", "::1", "localhost"};
    if (n_names > FF_PKI_NAMES_MAX)
        return ff_err_set(err, FF_ERANGE, "pki: %zu names given, at most %d allowed", n_names,
                          FF_PKI_NAMES_MAX);
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    if (gens == NULL)
        return crypto_fail(err, "building subjectAltName");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(always) / sizeof(always[0]); i++)
        rc = san_add(gens, always[i], err);
    for (size_t i = 0; rc == 0 && i < n_names; i++) {
        if (names[i] == NULL)
            rc = ff_err_set(err, FF_EINVAL, "pki: name %zu is missing", i);
        else
            rc = san_add(gens, names[i], err);
    }
    if (rc != 0) {
        GENERAL_NAMES_free(gens);
        return rc;
    }
    *out = gens;
    return 0;
}

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value, struct ff_err *err)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return crypto_fail(err, "building a certificate extension");
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return crypto_fail(err, "adding a certificate extension");
    return 0;
}

static int set_random_serial(X509 *cert, struct ff_err *err)
{
    unsigned char raw[SERIAL_BYTES];
    int rc = ff_secret_random(raw, sizeof(raw), err);
    if (rc != 0)
        return rc;
    raw[0] &= 0x7f;
    /* A zero serial is not allowed; 127 random bits are never all zero in
     * practice, but the rule costs one byte to keep. */
    raw[SERIAL_BYTES - 1] |= 1;
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL)
        rc = crypto_fail(err, "setting a serial number");
    BN_free(bn);
    return rc;
}

/* Builds and signs a certificate for key. issuer_cert NULL makes a
 * self-signed CA (issuer_key is then key); otherwise a server leaf with
 * subjectAltName san. */
static int cert_make(EVP_PKEY *key, EVP_PKEY *issuer_key, X509 *issuer_cert, const char *cn,
                     int days, GENERAL_NAMES *san, X509 **out, struct ff_err *err)
{
    int rc = 0;
    X509_NAME *name = NULL;
    X509 *cert = X509_new();
    if (cert == NULL) {
        rc = crypto_fail(err, "allocating a certificate");
        goto fail;
    }
    name = X509_NAME_new();
    if (name == NULL || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                   (const unsigned char *)cn, -1, -1, 0) != 1) {
        rc = crypto_fail(err, "setting the common name");
        goto fail;
    }
    if (X509_set_version(cert, 2) != 1 || X509_set_subject_name(cert, name) != 1 ||
        X509_set_issuer_name(cert, issuer_cert == NULL ? name
                                                       : X509_get_subject_name(issuer_cert)) != 1 ||
        X509_set_pubkey(cert, key) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(cert), -FF_PKI_BACKDATE_SECONDS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, NULL) == NULL) {
        rc = crypto_fail(err, "filling a certificate");
        goto fail;
    }
    rc = set_random_serial(cert, err);
    if (rc != 0)
        goto fail;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer_cert == NULL ? cert : issuer_cert, cert, NULL, NULL, 0);
    if (issuer_cert == NULL) {
        rc = add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE", err);
        if (rc == 0)
            rc = add_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign", err);
        if (rc == 0)
            rc = add_ext(cert, &ctx, NID_subject_key_identifier, "hash", err);
    } else {
        rc = add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE", err);
        if (rc == 0)
            rc = add_ext(cert, &ctx, NID_key_usage, "critical,digitalSignature", err);
        if (rc == 0)
            rc = add_ext(cert, &ctx, NID_ext_key_usage, "serverAuth", err);
        if (rc == 0)
            rc = add_ext(cert, &ctx, NID_subject_key_identifier, "hash", err);
        if (rc == 0)
            rc = add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always", err);
        if (rc == 0 &&
            X509_add1_ext_i2d(cert, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT) != 1)
            rc = crypto_fail(err, "adding subjectAltName");
    }
    if (rc != 0)
        goto fail;
    if (X509_sign(cert, issuer_key, EVP_sha256()) <= 0) {
        rc = crypto_fail(err, "signing a certificate");
        goto fail;
    }
    X509_NAME_free(name);
    *out = cert;
    return 0;
fail:
    X509_NAME_free(name);
    X509_free(cert);
    return rc;
}

static int server_cert_for_key(EVP_PKEY *key, EVP_PKEY *ca_key, X509 *ca_cert, const char *cn,
                               const char *const *names, size_t n_names, int days, X509 **out,
                               struct ff_err *err)
{
    int rc = check_common_name(cn, err);
    if (rc == 0)
        rc = check_days(days, err);
    if (rc != 0)
        return rc;
    if (X509_check_private_key(ca_cert, ca_key) != 1) {
        ERR_clear_error();
        return ff_err_set(err, FF_EINVAL, "pki: the ca key does not match the ca certificate");
    }
    GENERAL_NAMES *san = NULL;
    rc = san_build(names, n_names, &san, err);
    if (rc != 0)
        return rc;
    rc = cert_make(key, ca_key, ca_cert, cn, days, san, out, err);
    GENERAL_NAMES_free(san);
    return rc;
}

int ff_pki_ca_new(const char *common_name, int days, EVP_PKEY **out_key, X509 **out_cert,
                  struct ff_err *err)
{
    int rc = check_common_name(common_name, err);
    if (rc == 0)
        rc = check_days(days, err);
    if (rc != 0)
        return rc;
    EVP_PKEY *key = NULL;
    rc = ff_pki_key_new(&key, err);
    if (rc != 0)
        return rc;
    X509 *cert = NULL;
    rc = cert_make(key, key, NULL, common_name, days, NULL, &cert, err);
    if (rc != 0) {
        EVP_PKEY_free(key);
        return rc;
    }
    *out_key = key;
    *out_cert = cert;
    return 0;
}

int ff_pki_server_cert_new(EVP_PKEY *ca_key, X509 *ca_cert, const char *common_name,
                           const char *const *names, size_t n_names, int days, EVP_PKEY **out_key,
                           X509 **out_cert, struct ff_err *err)
{
    EVP_PKEY *key = NULL;
    int rc = ff_pki_key_new(&key, err);
    if (rc != 0)
        return rc;
    X509 *cert = NULL;
    rc = server_cert_for_key(key, ca_key, ca_cert, common_name, names, n_names, days, &cert, err);
    if (rc != 0) {
        EVP_PKEY_free(key);
        return rc;
    }
    *out_key = key;
    *out_cert = cert;
    return 0;
}

/* The files ff_pki_bootstrap manages, in the order they are made. */
enum boot_file {
    BOOT_CA_KEY,
    BOOT_CA_CERT,
    BOOT_SERVER_KEY,
    BOOT_SERVER_CERT,
    BOOT_TOKEN_KEY,
    BOOT_TOKEN_PUB,
    BOOT_SIGNING_KEY,
    BOOT_SIGNING_PUB,
    BOOT_N
};

static const char *const boot_names[BOOT_N] = {
    "ca.key",    "ca.crt",    "server.key",  "server.crt",
    "token.key", "token.pub", "signing.key", "signing.pub",
};

struct boot {
    char path[BOOT_N][PATH_MAX];
    bool have[BOOT_N];
    unsigned created;
};

static int ensure_dir(const char *dir, struct ff_err *err)
{
    if (mkdir(dir, 0700) == 0)
        return sync_parent(dir, err);
    if (errno != EEXIST)
        return ff_err_set(err, FF_EIO, "pki: cannot create directory \"%s\": %s", dir,
                          strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ff_err_set(err, FF_EIO, "pki: \"%s\" exists and is not a directory", dir);
    return 0;
}

/* Makes the private key of a pair (or reads it when it exists) and the
 * public key file for it when that is missing. */
static int boot_key_pair(struct boot *b, enum boot_file key_file, enum boot_file pub_file,
                         unsigned key_flag, unsigned pub_flag, struct ff_err *err)
{
    if (b->have[key_file] && b->have[pub_file])
        return 0;
    EVP_PKEY *key = NULL;
    int rc = 0;
    if (b->have[key_file]) {
        rc = ff_pki_key_read(b->path[key_file], true, &key, err);
    } else {
        rc = ff_pki_key_new(&key, err);
        if (rc == 0)
            rc = ff_pki_key_write(key, b->path[key_file], true, err);
        if (rc == 0)
            b->created |= key_flag;
    }
    if (rc == 0 && !b->have[pub_file]) {
        rc = ff_pki_key_write(key, b->path[pub_file], false, err);
        if (rc == 0)
            b->created |= pub_flag;
    }
    EVP_PKEY_free(key);
    return rc;
}

/* Refuses, before anything is written, a state that cannot be completed
 * without replacing a file. */
static int boot_check_state(const struct boot *b, struct ff_err *err)
{
    static const enum boot_file pairs[][2] = {
        {BOOT_SERVER_KEY, BOOT_SERVER_CERT},
        {BOOT_TOKEN_KEY, BOOT_TOKEN_PUB},
        {BOOT_SIGNING_KEY, BOOT_SIGNING_PUB},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        if (!b->have[pairs[i][0]] && b->have[pairs[i][1]])
            return ff_err_set(err, FF_ECONFLICT,
                              "pki: \"%s\" exists but \"%s\" does not; restore the key or "
                              "remove both",
                              b->path[pairs[i][1]], b->path[pairs[i][0]]);
    }
    if (!b->have[BOOT_CA_KEY] && b->have[BOOT_CA_CERT] && !b->have[BOOT_SERVER_CERT])
        return ff_err_set(err, FF_ECONFLICT,
                          "pki: \"%s\" is needed to sign \"%s\" but only \"%s\" exists",
                          b->path[BOOT_CA_KEY], b->path[BOOT_SERVER_CERT], b->path[BOOT_CA_CERT]);
    if (!b->have[BOOT_CA_KEY] && !b->have[BOOT_CA_CERT] && b->have[BOOT_SERVER_CERT])
        return ff_err_set(err, FF_ECONFLICT,
                          "pki: \"%s\" exists but its ca does not; a new ca would not match "
                          "it, remove \"%s\" and \"%s\" to start over",
                          b->path[BOOT_SERVER_CERT], b->path[BOOT_SERVER_CERT],
                          b->path[BOOT_SERVER_KEY]);
    return 0;
}

static int boot_ca_and_server(struct boot *b, const char *const *names, size_t n_names,
                              struct ff_err *err)
{
    bool need_ca_cert = !b->have[BOOT_CA_CERT];
    bool need_server_cert = !b->have[BOOT_SERVER_CERT];
    if (!need_ca_cert && !need_server_cert && b->have[BOOT_SERVER_KEY])
        return 0;
    int rc = 0;
    EVP_PKEY *ca_key = NULL, *server_key = NULL;
    X509 *ca_cert = NULL, *server_cert = NULL;
    if (need_ca_cert || need_server_cert) {
        if (b->have[BOOT_CA_KEY]) {
            rc = ff_pki_key_read(b->path[BOOT_CA_KEY], true, &ca_key, err);
        } else {
            rc = ff_pki_key_new(&ca_key, err);
            if (rc == 0)
                rc = ff_pki_key_write(ca_key, b->path[BOOT_CA_KEY], true, err);
            if (rc == 0)
                b->created |= FF_PKI_CREATED_CA_KEY;
        }
        if (rc != 0)
            goto out;
        if (need_ca_cert) {
            rc = cert_make(ca_key, ca_key, NULL, FF_PKI_CA_NAME, FF_PKI_CA_DAYS, NULL, &ca_cert,
                           err);
            if (rc == 0)
                rc = ff_pki_cert_write(ca_cert, b->path[BOOT_CA_CERT], err);
            if (rc == 0)
                b->created |= FF_PKI_CREATED_CA_CERT;
        } else {
            rc = ff_pki_cert_read(b->path[BOOT_CA_CERT], &ca_cert, err);
        }
        if (rc != 0)
            goto out;
    }
    if (b->have[BOOT_SERVER_KEY]) {
        if (need_server_cert)
            rc = ff_pki_key_read(b->path[BOOT_SERVER_KEY], true, &server_key, err);
    } else {
        rc = ff_pki_key_new(&server_key, err);
        if (rc == 0)
            rc = ff_pki_key_write(server_key, b->path[BOOT_SERVER_KEY], true, err);
        if (rc == 0)
            b->created |= FF_PKI_CREATED_SERVER_KEY;
    }
    if (rc != 0 || !need_server_cert)
        goto out;
    rc = server_cert_for_key(server_key, ca_key, ca_cert, n_names > 0 ? names[0] : "localhost",
                             names, n_names, FF_PKI_SERVER_DAYS, &server_cert, err);
    if (rc == 0)
        rc = ff_pki_cert_write(server_cert, b->path[BOOT_SERVER_CERT], err);
    if (rc == 0)
        b->created |= FF_PKI_CREATED_SERVER_CERT;
out:
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(server_key);
    X509_free(ca_cert);
    X509_free(server_cert);
    return rc;
}

int ff_pki_bootstrap(const char *dir, const char *const *names, size_t n_names,
                     unsigned *out_created, struct ff_err *err)
{
    if (out_created != NULL)
        *out_created = 0;
    struct boot *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return ff_err_set(err, FF_ENOMEM, "pki: out of memory");
    int rc = 0;
    /* A typo in a name is reported even when server.crt exists already. */
    GENERAL_NAMES *san = NULL;
    rc = san_build(names, n_names, &san, err);
    GENERAL_NAMES_free(san);
    if (rc == 0 && n_names > 0)
        rc = check_common_name(names[0], err);
    if (rc != 0)
        goto out;
    rc = ensure_dir(dir, err);
    if (rc != 0)
        goto out;
    for (int i = 0; i < BOOT_N; i++) {
        int n = snprintf(b->path[i], sizeof(b->path[i]), "%s/%s", dir, boot_names[i]);
        if (n < 0 || (size_t)n >= sizeof(b->path[i])) {
            rc = ff_err_set(err, FF_EINVAL, "pki: directory \"%s\" has too long a path", dir);
            goto out;
        }
        struct stat st;
        if (lstat(b->path[i], &st) == 0) {
            b->have[i] = true;
        } else if (errno != ENOENT) {
            rc =
                ff_err_set(err, FF_EIO, "pki: cannot stat \"%s\": %s", b->path[i], strerror(errno));
            goto out;
        }
    }
    rc = boot_check_state(b, err);
    if (rc == 0)
        rc = boot_ca_and_server(b, names, n_names, err);
    if (rc == 0)
        rc = boot_key_pair(b, BOOT_TOKEN_KEY, BOOT_TOKEN_PUB, FF_PKI_CREATED_TOKEN_KEY,
                           FF_PKI_CREATED_TOKEN_PUB, err);
    if (rc == 0)
        rc = boot_key_pair(b, BOOT_SIGNING_KEY, BOOT_SIGNING_PUB, FF_PKI_CREATED_SIGNING_KEY,
                           FF_PKI_CREATED_SIGNING_PUB, err);
out:
    if (out_created != NULL)
        *out_created = b->created;
    free(b);
    return rc;
}
