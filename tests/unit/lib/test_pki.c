#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_pki.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Each test gets a fresh directory under /tmp, removed afterwards. */
struct fixture {
    char dir[64];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    memcpy(f->dir, "/tmp/ff-test-pki-XXXXXX", sizeof("/tmp/ff-test-pki-XXXXXX"));
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < size);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Reads a whole small file; the caller frees it. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 16, fp);
    assert_true(feof(fp));
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void write_foreign_key(const char *path, EVP_PKEY *key, const char *passphrase)
{
    BIO *bio = BIO_new_file(path, "wb");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, key,
                                              passphrase != NULL ? EVP_aes_256_cbc() : NULL, NULL,
                                              0, NULL, (void *)passphrase),
                     1);
    BIO_free(bio);
}

/* Verifies cert against ca for TLS server use, optionally for a host. */
static int verify_chain(X509 *ca, X509 *cert, const char *host)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
    if (host != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), host, 0), 1);
    int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

/* Runs `openssl verify -CAfile ca server` and returns its exit status. */
static int run_openssl_verify(const char *ca, const char *server)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        char *const argv[] = {"openssl", "verify",   "-purpose",     "sslserver",
                              "-CAfile", (char *)ca, (char *)server, NULL};
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_key_new_and_id(void **state)
{
    (void)state;
    EVP_PKEY *a = NULL, *b = NULL;
    assert_int_equal(ff_pki_key_new(&a, NULL), 0);
    assert_int_equal(ff_pki_key_new(&b, NULL), 0);
    assert_int_equal(ff_pki_key_check(a, NULL), 0);
    char ida[FF_PKI_KEY_ID_SIZE], ida2[FF_PKI_KEY_ID_SIZE], idb[FF_PKI_KEY_ID_SIZE];
    assert_int_equal(ff_pki_key_id(a, ida, NULL), 0);
    assert_int_equal(ff_pki_key_id(a, ida2, NULL), 0);
    assert_int_equal(ff_pki_key_id(b, idb, NULL), 0);
    assert_int_equal(strlen(ida), 32);
    assert_int_equal(strspn(ida, "0123456789abcdef"), 32);
    assert_string_equal(ida, ida2);
    assert_string_not_equal(ida, idb);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

static void test_key_write_read(void **state)
{
    struct fixture *f = *state;
    char priv[PATH_MAX], pub[PATH_MAX];
    path_in(priv, sizeof(priv), f->dir, "k.key");
    path_in(pub, sizeof(pub), f->dir, "k.pub");
    EVP_PKEY *key = NULL;
    assert_int_equal(ff_pki_key_new(&key, NULL), 0);

    /* Modes must not depend on the umask. */
    mode_t old = umask(0);
    assert_int_equal(ff_pki_key_write(key, priv, true, NULL), 0);
    umask(077);
    assert_int_equal(ff_pki_key_write(key, pub, false, NULL), 0);
    umask(old);
    assert_int_equal(file_mode(priv), 0600);
    assert_int_equal(file_mode(pub), 0644);
    assert_int_equal(count_entries(f->dir), 2);

    size_t len = 0;
    char *text = slurp(priv, &len);
    assert_non_null(memmem(text, len, "-----BEGIN PRIVATE KEY-----", 27));
    free(text);
    text = slurp(pub, &len);
    assert_non_null(memmem(text, len, "-----BEGIN PUBLIC KEY-----", 26));

    /* An existing file is never replaced, and no temporary is left. */
    EVP_PKEY *other = NULL;
    assert_int_equal(ff_pki_key_new(&other, NULL), 0);
    struct ff_err err;
    assert_int_equal(ff_pki_key_write(other, pub, false, &err), FF_EEXIST);
    assert_non_null(strstr(err.msg, "exists already"));
    size_t len2 = 0;
    char *text2 = slurp(pub, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(text, text2, len);
    free(text);
    free(text2);
    assert_int_equal(count_entries(f->dir), 2);

    EVP_PKEY *rpriv = NULL, *rpub = NULL;
    assert_int_equal(ff_pki_key_read(priv, true, &rpriv, NULL), 0);
    assert_int_equal(ff_pki_key_read(pub, false, &rpub, NULL), 0);
    char id[FF_PKI_KEY_ID_SIZE], id_priv[FF_PKI_KEY_ID_SIZE], id_pub[FF_PKI_KEY_ID_SIZE];
    assert_int_equal(ff_pki_key_id(key, id, NULL), 0);
    assert_int_equal(ff_pki_key_id(rpriv, id_priv, NULL), 0);
    assert_int_equal(ff_pki_key_id(rpub, id_pub, NULL), 0);
    assert_string_equal(id, id_priv);
    assert_string_equal(id, id_pub);
    assert_int_equal(EVP_PKEY_eq(key, rpriv), 1);

    /* A public key file is not a private key, and the other way round. */
    EVP_PKEY *bad = NULL;
    assert_int_equal(ff_pki_key_read(pub, true, &bad, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "no PEM private key"));
    assert_int_equal(ff_pki_key_read(priv, false, &bad, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "no PEM public key"));
    assert_null(bad);

    /* A directory that does not exist. */
    char nowhere[PATH_MAX];
    path_in(nowhere, sizeof(nowhere), f->dir, "missing/k.key");
    assert_int_equal(ff_pki_key_write(key, nowhere, true, &err), FF_EIO);

    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(rpriv);
    EVP_PKEY_free(rpub);
}

static void test_key_read_errors(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    struct ff_err err;
    EVP_PKEY *key = NULL;

    path_in(path, sizeof(path), f->dir, "missing.key");
    assert_int_equal(ff_pki_key_read(path, true, &key, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "does not exist"));

    path_in(path, sizeof(path), f->dir, "garbage.key");
    write_text(path, "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n");
    assert_int_equal(ff_pki_key_read(path, true, &key, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "no PEM private key"));
    write_text(path, "");
    assert_int_equal(ff_pki_key_read(path, false, &key, &err), FF_EINVAL);

    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed);
    path_in(path, sizeof(path), f->dir, "ed.key");
    write_foreign_key(path, ed, NULL);
    assert_int_equal(ff_pki_key_read(path, true, &key, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "type \"ED25519\", expected \"EC\""));
    assert_int_equal(ff_pki_key_check(ed, NULL), FF_EINVAL);
    EVP_PKEY_free(ed);

    EVP_PKEY *rsa = EVP_RSA_gen(1024);
    assert_non_null(rsa);
    path_in(path, sizeof(path), f->dir, "rsa.key");
    write_foreign_key(path, rsa, NULL);
    assert_int_equal(ff_pki_key_read(path, true, &key, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "type \"RSA\""));
    EVP_PKEY_free(rsa);

    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_non_null(p384);
    path_in(path, sizeof(path), f->dir, "p384.key");
    write_foreign_key(path, p384, NULL);
    assert_int_equal(ff_pki_key_read(path, true, &key, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "curve \"secp384r1\", expected p-256"));
    EVP_PKEY_free(p384);

    /* Encrypted keys are refused, never prompted for. */
    EVP_PKEY *ec = NULL;
    assert_int_equal(ff_pki_key_new(&ec, NULL), 0);
    path_in(path, sizeof(path), f->dir, "enc.key");
    write_foreign_key(path, ec, "passphrase");
    assert_int_equal(ff_pki_key_read(path, true, &key, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "encrypted"));
    EVP_PKEY_free(ec);

    path_in(path, sizeof(path), f->dir, "big.key");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (unsigned i = 0; i <= FF_PKI_FILE_MAX; i++)
        assert_int_equal(fputc('A', fp), 'A');
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(ff_pki_key_read(path, true, &key, &err), FF_ETOOBIG);

    assert_int_equal(ff_pki_key_read(f->dir, true, &key, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_null(key);
}

static void test_ca_new(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    X509 *ca = NULL;
    assert_int_equal(ff_pki_ca_new("Test CA", 30, &key, &ca, NULL), 0);
    assert_int_equal(X509_check_ca(ca), 1);
    assert_int_equal(X509_verify(ca, key), 1);
    assert_true((X509_get_key_usage(ca) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) ==
                (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    assert_non_null(X509_get0_subject_key_id(ca));
    assert_int_equal(X509_get_signature_nid(ca), NID_ecdsa_with_SHA256);
    int crit = 0;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    /* 127 random bits: 15 or 16 bytes, rarely fewer. */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(ca);
    assert_true(ASN1_STRING_length(serial) >= 12 && ASN1_STRING_length(serial) <= 16);
    char cn[64];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "Test CA");
    assert_int_equal(X509_cmp_current_time(X509_get0_notBefore(ca)), -1);
    assert_int_equal(X509_cmp_current_time(X509_get0_notAfter(ca)), 1);

    EVP_PKEY *key2 = NULL;
    X509 *ca2 = NULL;
    assert_int_equal(ff_pki_ca_new("Test CA", 30, &key2, &ca2, NULL), 0);
    assert_int_not_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(ca2)), 0);
    EVP_PKEY_free(key2);
    X509_free(ca2);

    struct ff_err err;
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    assert_int_equal(ff_pki_ca_new("", 30, &k, &c, &err), FF_EINVAL);
    assert_int_equal(ff_pki_ca_new("x\ny", 30, &k, &c, &err), FF_EINVAL);
    char long_cn[FF_PKI_CN_MAX + 2];
    memset(long_cn, 'c', sizeof(long_cn) - 1);
    long_cn[sizeof(long_cn) - 1] = '\0';
    assert_int_equal(ff_pki_ca_new(long_cn, 30, &k, &c, &err), FF_EINVAL);
    assert_int_equal(ff_pki_ca_new("Test CA", 0, &k, &c, &err), FF_ERANGE);
    assert_int_equal(ff_pki_ca_new("Test CA", FF_PKI_DAYS_MAX + 1, &k, &c, &err), FF_ERANGE);
    assert_null(k);
    assert_null(c);
    EVP_PKEY_free(key);
    X509_free(ca);
}

static int san_count(X509 *cert)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    int n = sk_GENERAL_NAME_num(gens);
    GENERAL_NAMES_free(gens);
    return n;
}

static void test_server_cert(void **state)
{
    (void)state;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    X509 *ca = NULL, *cert = NULL;
    assert_int_equal(ff_pki_ca_new("Test CA", 30, &ca_key, &ca, NULL), 0);
    const char *names[] = {"build.example.com",    "10.0.0.5",  "fe80::1",
                           "Registry.Example.COM", "localhost", "127.0.0.1",
                           "0:0:0:0:0:0:0:1"};
    assert_int_equal(
        ff_pki_server_cert_new(ca_key, ca, "build.example.com", names, 7, 30, &key, &cert, NULL),
        0);
    assert_int_equal(ff_pki_key_check(key, NULL), 0);
    assert_int_equal(X509_check_private_key(cert, key), 1);
    assert_int_equal(verify_chain(ca, cert, NULL), 1);
    assert_int_equal(verify_chain(ca, cert, "localhost"), 1);
    assert_int_equal(verify_chain(ca, cert, "registry.example.com"), 1);
    assert_int_equal(verify_chain(ca, cert, "example.org"), 0);

    /* 3 loopback names + 4 new ones; the repeats are dropped. */
    assert_int_equal(san_count(cert), 7);
    assert_int_equal(X509_check_host(cert, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(cert, "build.example.com", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(cert, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(cert, "10.0.0.5", 0), 1);
    assert_int_equal(X509_check_ip_asc(cert, "fe80::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(cert, "10.0.0.6", 0), 0);

    assert_int_equal(X509_check_ca(cert), 0);
    assert_true(X509_get_key_usage(cert) & KU_DIGITAL_SIGNATURE);
    assert_false(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_extended_key_usage(cert) & XKU_SSL_SERVER);
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert), X509_get0_subject_key_id(ca)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca)), 0);

    /* Another CA does not vouch for it. */
    EVP_PKEY *other_key = NULL;
    X509 *other = NULL;
    assert_int_equal(ff_pki_ca_new("Test CA", 30, &other_key, &other, NULL), 0);
    assert_int_equal(verify_chain(other, cert, NULL), 0);

    /* No names: only the loopback ones. */
    EVP_PKEY *k2 = NULL;
    X509 *c2 = NULL;
    assert_int_equal(ff_pki_server_cert_new(ca_key, ca, "localhost", NULL, 0, 1, &k2, &c2, NULL),
                     0);
    assert_int_equal(san_count(c2), 3);
    assert_int_equal(verify_chain(ca, c2, "localhost"), 1);

    EVP_PKEY_free(k2);
    X509_free(c2);
    EVP_PKEY_free(other_key);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    X509_free(ca);
    X509_free(cert);
}

static void test_server_cert_bad_input(void **state)
{
    (void)state;
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    assert_int_equal(ff_pki_ca_new("Test CA", 30, &ca_key, &ca, NULL), 0);
    char long_label[80], long_name[300];
    memset(long_label, 'a', 64);
    memcpy(long_label + 64, ".example", 9);
    memset(long_name, 0, sizeof(long_name));
    /* "a.a.….aa": 254 characters, one more than a DNS name may have. */
    for (size_t i = 0; i < 254; i++)
        long_name[i] = (i % 2 == 1 && i < 252) ? '.' : 'a';
    static const char *const bad[] = {
        "",
        "-bad.example",
        "bad-.example",
        "a..b",
        ".example",
        "example.",
        "under_score.example",
        "1.2.3",
        "10.0.0.256",
        "*.example.com",
        "exa mple",
        "fe80::1%eth0",
        "caf\xc3\xa9.example",
        "example.com,DNS:evil.com",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) + 2; i++) {
        const char *name = i < sizeof(bad) / sizeof(bad[0])    ? bad[i]
                           : i == sizeof(bad) / sizeof(bad[0]) ? long_label
                                                               : long_name;
        struct ff_err err;
        EVP_PKEY *k = NULL;
        X509 *c = NULL;
        int rc = ff_pki_server_cert_new(ca_key, ca, "server", &name, 1, 30, &k, &c, &err);
        if (rc != FF_EINVAL)
            fail_msg("name \"%s\": got %d", name, rc);
        assert_non_null(strstr(err.msg, "neither an ip address nor a valid dns name"));
        assert_null(k);
        assert_null(c);
    }

    struct ff_err err;
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    const char *ok_name = "a-1.b2.example";
    assert_int_equal(ff_pki_server_cert_new(ca_key, ca, "server", &ok_name, 1, 30, &k, &c, &err),
                     0);
    EVP_PKEY_free(k);
    X509_free(c);
    k = NULL;
    c = NULL;

    const char *null_name = NULL;
    assert_int_equal(ff_pki_server_cert_new(ca_key, ca, "server", &null_name, 1, 30, &k, &c, &err),
                     FF_EINVAL);
    const char *many[FF_PKI_NAMES_MAX + 1];
    for (size_t i = 0; i < FF_PKI_NAMES_MAX + 1; i++)
        many[i] = "example.com";
    assert_int_equal(
        ff_pki_server_cert_new(ca_key, ca, "server", many, FF_PKI_NAMES_MAX + 1, 30, &k, &c, &err),
        FF_ERANGE);
    assert_int_equal(ff_pki_server_cert_new(ca_key, ca, "server", NULL, 0, 0, &k, &c, &err),
                     FF_ERANGE);
    assert_int_equal(ff_pki_server_cert_new(ca_key, ca, "", NULL, 0, 30, &k, &c, &err), FF_EINVAL);

    /* A CA key that did not make this CA certificate. */
    EVP_PKEY *wrong = NULL;
    assert_int_equal(ff_pki_key_new(&wrong, NULL), 0);
    assert_int_equal(ff_pki_server_cert_new(wrong, ca, "server", NULL, 0, 30, &k, &c, &err),
                     FF_EINVAL);
    assert_non_null(strstr(err.msg, "does not match"));
    assert_null(k);
    assert_null(c);
    EVP_PKEY_free(wrong);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
}

static void test_cert_write_read(void **state)
{
    struct fixture *f = *state;
    EVP_PKEY *key = NULL;
    X509 *ca = NULL, *back = NULL;
    assert_int_equal(ff_pki_ca_new("Test CA", 30, &key, &ca, NULL), 0);
    char path[PATH_MAX];
    path_in(path, sizeof(path), f->dir, "ca.crt");
    assert_int_equal(ff_pki_cert_write(ca, path, NULL), 0);
    assert_int_equal(file_mode(path), 0644);
    assert_int_equal(ff_pki_cert_read(path, &back, NULL), 0);
    assert_int_equal(X509_cmp(ca, back), 0);
    struct ff_err err;
    assert_int_equal(ff_pki_cert_write(ca, path, &err), FF_EEXIST);

    X509 *none = NULL;
    char garbage[PATH_MAX];
    path_in(garbage, sizeof(garbage), f->dir, "garbage.crt");
    write_text(garbage, "hello\n");
    assert_int_equal(ff_pki_cert_read(garbage, &none, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "no PEM certificate"));
    path_in(garbage, sizeof(garbage), f->dir, "missing.crt");
    assert_int_equal(ff_pki_cert_read(garbage, &none, &err), FF_ENOTFOUND);
    assert_null(none);

    X509_free(back);
    X509_free(ca);
    EVP_PKEY_free(key);
}

#define ALL_CREATED 0xffu

/* Loads dir/ca.crt and dir/server.crt and checks the chain. */
static void check_boot_chain(const char *dir)
{
    char ca_path[PATH_MAX], srv_path[PATH_MAX], key_path[PATH_MAX];
    path_in(ca_path, sizeof(ca_path), dir, "ca.crt");
    path_in(srv_path, sizeof(srv_path), dir, "server.crt");
    path_in(key_path, sizeof(key_path), dir, "server.key");
    X509 *ca = NULL, *srv = NULL;
    EVP_PKEY *key = NULL;
    assert_int_equal(ff_pki_cert_read(ca_path, &ca, NULL), 0);
    assert_int_equal(ff_pki_cert_read(srv_path, &srv, NULL), 0);
    assert_int_equal(ff_pki_key_read(key_path, true, &key, NULL), 0);
    assert_int_equal(X509_check_private_key(srv, key), 1);
    assert_int_equal(verify_chain(ca, srv, "localhost"), 1);
    assert_int_equal(run_openssl_verify(ca_path, srv_path), 0);
    X509_free(ca);
    X509_free(srv);
    EVP_PKEY_free(key);
}

static void check_pair(const char *dir, const char *key_name, const char *pub_name)
{
    char kp[PATH_MAX], pp[PATH_MAX];
    path_in(kp, sizeof(kp), dir, key_name);
    path_in(pp, sizeof(pp), dir, pub_name);
    EVP_PKEY *k = NULL, *p = NULL;
    assert_int_equal(ff_pki_key_read(kp, true, &k, NULL), 0);
    assert_int_equal(ff_pki_key_read(pp, false, &p, NULL), 0);
    assert_int_equal(EVP_PKEY_eq(k, p), 1);
    EVP_PKEY_free(k);
    EVP_PKEY_free(p);
}

static const char *const boot_files[] = {
    "ca.key",    "ca.crt",    "server.key",  "server.crt",
    "token.key", "token.pub", "signing.key", "signing.pub",
};
#define N_BOOT_FILES (sizeof(boot_files) / sizeof(boot_files[0]))

static void test_bootstrap_idempotent(void **state)
{
    struct fixture *f = *state;
    char var[PATH_MAX], path[PATH_MAX];
    path_in(var, sizeof(var), f->dir, "var");
    const char *names[] = {"farm.example", "192.0.2.7"};
    unsigned created = 0;
    struct ff_err err;
    assert_int_equal(ff_pki_bootstrap(var, names, 2, &created, &err), 0);
    assert_int_equal(created, ALL_CREATED);
    assert_int_equal(file_mode(var), 0700);
    assert_int_equal(count_entries(var), N_BOOT_FILES);
    char *before[N_BOOT_FILES];
    size_t before_len[N_BOOT_FILES];
    for (size_t i = 0; i < N_BOOT_FILES; i++) {
        path_in(path, sizeof(path), var, boot_files[i]);
        bool priv = strstr(boot_files[i], ".key") != NULL;
        assert_int_equal(file_mode(path), priv ? 0600 : 0644);
        before[i] = slurp(path, &before_len[i]);
    }
    check_boot_chain(var);
    check_pair(var, "token.key", "token.pub");
    check_pair(var, "signing.key", "signing.pub");

    path_in(path, sizeof(path), var, "server.crt");
    X509 *srv = NULL;
    assert_int_equal(ff_pki_cert_read(path, &srv, NULL), 0);
    assert_int_equal(X509_check_host(srv, "farm.example", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(srv, "192.0.2.7", 0), 1);
    assert_int_equal(X509_check_ip_asc(srv, "::1", 0), 1);
    X509_free(srv);

    /* The four key pairs are distinct. */
    char ids[4][FF_PKI_KEY_ID_SIZE];
    static const char *const keys[] = {"ca.key", "server.key", "token.key", "signing.key"};
    for (size_t i = 0; i < 4; i++) {
        EVP_PKEY *k = NULL;
        path_in(path, sizeof(path), var, keys[i]);
        assert_int_equal(ff_pki_key_read(path, true, &k, NULL), 0);
        assert_int_equal(ff_pki_key_id(k, ids[i], NULL), 0);
        EVP_PKEY_free(k);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    }

    assert_int_equal(ff_pki_bootstrap(var, names, 2, &created, &err), 0);
    assert_int_equal(created, 0);
    /* Different names next time change nothing either: nothing is replaced. */
    assert_int_equal(ff_pki_bootstrap(var, NULL, 0, &created, &err), 0);
    assert_int_equal(created, 0);
    assert_int_equal(count_entries(var), N_BOOT_FILES);
    for (size_t i = 0; i < N_BOOT_FILES; i++) {
        path_in(path, sizeof(path), var, boot_files[i]);
        size_t len = 0;
        char *after = slurp(path, &len);
        assert_int_equal(len, before_len[i]);
        assert_memory_equal(after, before[i], len);
        free(after);
        free(before[i]);
    }
}

static void test_bootstrap_existing_ca(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    assert_int_equal(ff_pki_ca_new("Operator CA", 365, &ca_key, &ca, NULL), 0);
    path_in(path, sizeof(path), f->dir, "ca.key");
    assert_int_equal(ff_pki_key_write(ca_key, path, true, NULL), 0);
    path_in(path, sizeof(path), f->dir, "ca.crt");
    assert_int_equal(ff_pki_cert_write(ca, path, NULL), 0);
    size_t len = 0;
    char *ca_before = slurp(path, &len);

    unsigned created = 0;
    assert_int_equal(ff_pki_bootstrap(f->dir, NULL, 0, &created, NULL), 0);
    assert_int_equal(created, ALL_CREATED & ~(FF_PKI_CREATED_CA_KEY | FF_PKI_CREATED_CA_CERT));
    check_boot_chain(f->dir);
    size_t len2 = 0;
    char *ca_after = slurp(path, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(ca_before, ca_after, len);
    free(ca_before);
    free(ca_after);

    /* The server certificate chains to the operator's own CA. */
    X509 *srv = NULL;
    path_in(path, sizeof(path), f->dir, "server.crt");
    assert_int_equal(ff_pki_cert_read(path, &srv, NULL), 0);
    assert_int_equal(verify_chain(ca, srv, NULL), 1);
    X509_free(srv);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
}

static void remove_in(const char *dir, const char *name)
{
    char path[PATH_MAX];
    path_in(path, sizeof(path), dir, name);
    assert_int_equal(unlink(path), 0);
}

static void test_bootstrap_partial(void **state)
{
    struct fixture *f = *state;
    unsigned created = 0;
    assert_int_equal(ff_pki_bootstrap(f->dir, NULL, 0, &created, NULL), 0);
    char path[PATH_MAX];
    path_in(path, sizeof(path), f->dir, "server.key");
    size_t len = 0;
    char *server_key = slurp(path, &len);

    /* Missing certificate and public key are remade for the existing keys. */
    remove_in(f->dir, "server.crt");
    remove_in(f->dir, "token.pub");
    assert_int_equal(ff_pki_bootstrap(f->dir, NULL, 0, &created, NULL), 0);
    assert_int_equal(created, FF_PKI_CREATED_SERVER_CERT | FF_PKI_CREATED_TOKEN_PUB);
    check_boot_chain(f->dir);
    check_pair(f->dir, "token.key", "token.pub");
    size_t len2 = 0;
    char *server_key2 = slurp(path, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(server_key, server_key2, len);
    free(server_key);
    free(server_key2);

    /* A lost ca.crt is remade from ca.key, and the old server cert still
     * chains to it (same key, same name). */
    remove_in(f->dir, "ca.crt");
    assert_int_equal(ff_pki_bootstrap(f->dir, NULL, 0, &created, NULL), 0);
    assert_int_equal(created, FF_PKI_CREATED_CA_CERT);
    check_boot_chain(f->dir);

    /* Interrupted between writing a private key and its public half. */
    remove_in(f->dir, "signing.pub");
    assert_int_equal(ff_pki_bootstrap(f->dir, NULL, 0, &created, NULL), 0);
    assert_int_equal(created, FF_PKI_CREATED_SIGNING_PUB);
    check_pair(f->dir, "signing.key", "signing.pub");

    /* The CA key kept offline: nothing needs it, nothing is made. */
    remove_in(f->dir, "ca.key");
    assert_int_equal(ff_pki_bootstrap(f->dir, NULL, 0, &created, NULL), 0);
    assert_int_equal(created, 0);
}

static void test_bootstrap_conflicts(void **state)
{
    struct fixture *f = *state;
    unsigned created = 99;
    struct ff_err err;
    char sub[PATH_MAX], path[PATH_MAX];

    /* A public key without its private key cannot be completed. */
    path_in(sub, sizeof(sub), f->dir, "a");
    assert_int_equal(mkdir(sub, 0700), 0);
    path_in(path, sizeof(path), sub, "token.pub");
    write_text(path, "placeholder\n");
    assert_int_equal(ff_pki_bootstrap(sub, NULL, 0, &created, &err), FF_ECONFLICT);
    assert_non_null(strstr(err.msg, "token.key\" does not"));
    assert_int_equal(created, 0);
    assert_int_equal(count_entries(sub), 1);

    /* server.crt needs signing but the CA key is gone. */
    path_in(sub, sizeof(sub), f->dir, "b");
    assert_int_equal(ff_pki_bootstrap(sub, NULL, 0, NULL, NULL), 0);
    remove_in(sub, "ca.key");
    remove_in(sub, "server.crt");
    assert_int_equal(ff_pki_bootstrap(sub, NULL, 0, &created, &err), FF_ECONFLICT);
    assert_non_null(strstr(err.msg, "ca.key\" is needed"));
    assert_int_equal(count_entries(sub), N_BOOT_FILES - 2);

    /* A server certificate with no CA at all. */
    path_in(sub, sizeof(sub), f->dir, "c");
    assert_int_equal(ff_pki_bootstrap(sub, NULL, 0, NULL, NULL), 0);
    remove_in(sub, "ca.key");
    remove_in(sub, "ca.crt");
    assert_int_equal(ff_pki_bootstrap(sub, NULL, 0, &created, &err), FF_ECONFLICT);

    /* A bad name is refused before anything is made. */
    path_in(sub, sizeof(sub), f->dir, "d");
    const char *bad = "not a name";
    assert_int_equal(ff_pki_bootstrap(sub, &bad, 1, &created, &err), FF_EINVAL);
    assert_int_equal(access(sub, F_OK), -1);

    /* The directory path is a file. */
    path_in(sub, sizeof(sub), f->dir, "e");
    write_text(sub, "x");
    assert_int_equal(ff_pki_bootstrap(sub, NULL, 0, &created, &err), FF_EIO);

    /* An unreadable existing key is reported, not replaced. */
    path_in(sub, sizeof(sub), f->dir, "g");
    assert_int_equal(mkdir(sub, 0700), 0);
    path_in(path, sizeof(path), sub, "ca.key");
    write_text(path, "garbage\n");
    assert_int_equal(ff_pki_bootstrap(sub, NULL, 0, &created, &err), FF_EINVAL);
    assert_int_equal(count_entries(sub), 1);
}

static void test_openssl_command_rejects_other_ca(void **state)
{
    struct fixture *f = *state;
    char a[PATH_MAX], b[PATH_MAX], ca_b[PATH_MAX], srv_a[PATH_MAX];
    path_in(a, sizeof(a), f->dir, "a");
    path_in(b, sizeof(b), f->dir, "b");
    assert_int_equal(ff_pki_bootstrap(a, NULL, 0, NULL, NULL), 0);
    assert_int_equal(ff_pki_bootstrap(b, NULL, 0, NULL, NULL), 0);
    path_in(ca_b, sizeof(ca_b), b, "ca.crt");
    path_in(srv_a, sizeof(srv_a), a, "server.crt");
    assert_int_not_equal(run_openssl_verify(ca_b, srv_a), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_new_and_id),
        cmocka_unit_test_setup_teardown(test_key_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_read_errors, setup, teardown),
        cmocka_unit_test(test_ca_new),
        cmocka_unit_test(test_server_cert),
        cmocka_unit_test(test_server_cert_bad_input),
        cmocka_unit_test_setup_teardown(test_cert_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_existing_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openssl_command_rejects_other_ca, setup, teardown),
    };
    return cmocka_run_group_tests_name("lib/pki", tests, NULL, NULL);
}
