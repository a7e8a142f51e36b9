/* OpenSSH public key lines, as users paste them from ~/.ssh/id_*.pub: the
 * one place where such a line becomes a key the builder stores. libssh
 * reads the key (the same library ff-gitd verifies signatures with); this
 * file decides which keys are acceptable and makes sure one key has one
 * line and one fingerprint, since the fingerprint is what ff-gitd looks a
 * user up by. */
#include "builder.h"

#include "ff_base64.h"
#include "ff_str.h"

#include <libssh/libssh.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of a SHA-256 digest, and of its unpadded base64 in a fingerprint. */
#define SHA256_LEN 32
#define SHA256_B64_LEN 43
#define FINGERPRINT_PREFIX "SHA256:"

/* The key types accepted, with what libssh calls them. */
struct key_kind {
    const char *name;
    enum ssh_keytypes_e type;
    unsigned bits; /* 0: read from the key (RSA) */
};

static const struct key_kind key_kinds[] = {
    {"ssh-ed25519", SSH_KEYTYPE_ED25519, 256},
    {"ecdsa-sha2-nistp256", SSH_KEYTYPE_ECDSA_P256, 256},
    {"ecdsa-sha2-nistp384", SSH_KEYTYPE_ECDSA_P384, 384},
    {"ecdsa-sha2-nistp521", SSH_KEYTYPE_ECDSA_P521, 521},
    {"ssh-rsa", SSH_KEYTYPE_RSA, 0},
};

/* Reads the SSH wire string at *pos of blob (RFC 4251 §5: a 32-bit
 * big-endian length, then the bytes) and advances *pos past it. */
static bool wire_string(const unsigned char *blob, size_t len, size_t *pos,
                        const unsigned char **out, size_t *out_len)
{
    if (len - *pos < 4)
        return false;
    const unsigned char *p = blob + *pos;
    uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (len - *pos - 4 < n)
        return false;
    *out = p + 4;
    *out_len = n;
    *pos += 4 + (size_t)n;
    return true;
}

/* Bit length of a non-negative mpint's magnitude (leading zeros skipped). */
static unsigned mpint_bits(const unsigned char *p, size_t n)
{
    while (n > 0 && *p == 0) {
        p++;
        n--;
    }
    if (n == 0)
        return 0;
    unsigned bits = (unsigned)(n - 1) * 8;
    for (unsigned c = *p; c != 0; c >>= 1)
        bits++;
    return bits;
}

/* Checks an ssh-rsa blob's exponent and modulus, which follow its type
 * string at pos, and sets *bits. libssh 0.10 imports 1024-bit moduli and
 * even exponents alike; e = 1 or an even e makes no working key, and
 * small moduli are weak. */
static int rsa_check(const unsigned char *blob, size_t len, size_t pos, unsigned *bits,
                     struct ff_err *err)
{
    const unsigned char *e = NULL, *n = NULL;
    size_t e_len = 0, n_len = 0;
    if (!wire_string(blob, len, &pos, &e, &e_len) || !wire_string(blob, len, &pos, &n, &n_len))
        return ff_err_set(err, FF_EINVAL, "public key: the ssh-rsa key data is truncated");
    unsigned e_bits = mpint_bits(e, e_len);
    if (e_bits < 2 || (e[e_len - 1] & 1) == 0)
        return ff_err_set(err, FF_EINVAL, "public key: the RSA exponent must be odd and at "
                          "least 3");
    *bits = mpint_bits(n, n_len);
    if (*bits < SSHKEY_RSA_BITS_MIN || *bits > SSHKEY_RSA_BITS_MAX)
        return ff_err_set(err, FF_EINVAL, "public key: RSA key of %u bits refused (expected "
                          "%d..%d bits; ed25519 is preferred)", *bits, SSHKEY_RSA_BITS_MIN,
                          SSHKEY_RSA_BITS_MAX);
    return 0;
}

/* Says why a type outside key_kinds is refused. */
static int type_refused(const char *type, size_t n, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(type, n, q);
    if (memmem(type, n, "-cert-", 6) != NULL)
        return ff_err_set(err, FF_EINVAL, "public key: \"%s\" is a certificate; add the plain "
                          "public key instead", q);
    if (n > 3 && memcmp(type, "sk-", 3) == 0)
        return ff_err_set(err, FF_EINVAL, "public key: \"%s\" is a security key (FIDO), which "
                          "is not supported; use ssh-ed25519", q);
    if (n == 7 && memcmp(type, "ssh-dss", 7) == 0)
        return ff_err_set(err, FF_EINVAL, "public key: DSA keys are refused (weak; OpenSSH "
                          "dropped them); use ssh-ed25519");
    return ff_err_set(err, FF_EINVAL, "public key: unknown key type \"%s\" (expected "
                      "ssh-ed25519, ecdsa-sha2-nistp256|384|521 or ssh-rsa)", q);
}

/* The SHA-256 fingerprint of key into out, as ssh-keygen -l prints it. */
static int fingerprint(ssh_key key, char out[SSHKEY_FINGERPRINT_LEN + 1], struct ff_err *err)
{
    unsigned char *hash = NULL;
    size_t hlen = 0;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != SSH_OK ||
        hlen != SHA256_LEN) {
        ssh_clean_pubkey_hash(&hash);
        return ff_err_set(err, FF_ECRYPTO, "public key: libssh could not hash the key");
    }
    char b64[SHA256_B64_LEN + 2]; /* padded: one '=' and the NUL */
    ff_base64_encode(hash, hlen, b64, false);
    ssh_clean_pubkey_hash(&hash);
    b64[SHA256_B64_LEN] = '\0';
    int n = snprintf(out, SSHKEY_FINGERPRINT_LEN + 1, FINGERPRINT_PREFIX "%s", b64);
    if (n != SSHKEY_FINGERPRINT_LEN)
        FF_BUG("fingerprint: SSHKEY_FINGERPRINT_LEN does not fit SHA-256");
    return 0;
}

/* Whether the n bytes at s are well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF): the comment becomes a
 * JSON string. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t more = 0;
        unsigned lo = 0x80, hi = 0xbf; /* bounds of the byte after the lead */
        if (c < 0x80)
            more = 0;
        else if (c >= 0xc2 && c <= 0xdf)
            more = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else
            return false;
        if (n - i - 1 < more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            unsigned b = s[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
                return false;
        }
        i += 1 + more;
    }
    return true;
}

/* Imports the blob's base64 b64 as kind with libssh and fingerprints it.
 * libssh 0.10 ignores bytes after the key and imports an ecdsa-sha2-nistp256
 * blob holding a P-384 curve and point, so the key must encode back to the
 * very same text: then nothing was ignored and one key has one spelling. */
static int libssh_check(const struct key_kind *kind, const char *b64,
                        char fp[SSHKEY_FINGERPRINT_LEN + 1], struct ff_err *err)
{
    ssh_key key = NULL;
    char *again = NULL;
    int rc = 0;
    if (ssh_pki_import_pubkey_base64(b64, kind->type, &key) != SSH_OK) {
        rc = ff_err_set(err, FF_EINVAL, "public key: the %s key data is malformed", kind->name);
        goto out;
    }
    if (ssh_key_type(key) != kind->type || ssh_key_is_public(key) != 1) {
        rc = ff_err_set(err, FF_EINVAL, "public key: the key data is not a %s public key",
                        kind->name);
        goto out;
    }
    if (ssh_pki_export_pubkey_base64(key, &again) != SSH_OK || again == NULL) {
        rc = ff_err_set(err, FF_EINVAL, "public key: libssh cannot encode the %s key",
                        kind->name);
        goto out;
    }
    if (strcmp(again, b64) != 0) {
        rc = ff_err_set(err, FF_EINVAL, "public key: the %s key data is not in canonical form "
                        "(trailing bytes, a padded number or a curve not matching the "
                        "type)", kind->name);
        goto out;
    }
    rc = fingerprint(key, fp, err);
out:
    ssh_string_free_char(again);
    ssh_key_free(key);
    return rc;
}

/* Checks the decoded blob against the line's kind: the type string inside
 * must be the line's (libssh does not compare them), RSA must be strong. */
static int blob_check(const struct key_kind *kind, const unsigned char *blob, size_t len,
                      unsigned *bits, struct ff_err *err)
{
    const unsigned char *t = NULL;
    size_t t_len = 0, pos = 0;
    if (!wire_string(blob, len, &pos, &t, &t_len))
        return ff_err_set(err, FF_EINVAL, "public key: the key data is truncated");
    if (t_len != strlen(kind->name) || memcmp(t, kind->name, t_len) != 0) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote((const char *)t, t_len, q);
        return ff_err_set(err, FF_EINVAL, "public key: the line says %s but the key data "
                          "holds \"%s\"", kind->name, q);
    }
    *bits = kind->bits;
    if (kind->type == SSH_KEYTYPE_RSA)
        return rsa_check(blob, len, pos, bits, err);
    return 0;
}

/* The next run of non-space bytes of s[*pos..n), skipping spaces before. */
static size_t field(const char *s, size_t n, size_t *pos, const char **out)
{
    while (*pos < n && s[*pos] == ' ')
        (*pos)++;
    *out = s + *pos;
    size_t start = *pos;
    while (*pos < n && s[*pos] != ' ')
        (*pos)++;
    return *pos - start;
}

/* The three fields of a key line, borrowed from it. */
struct line_fields {
    const char *type;
    size_t type_len;
    const char *data;
    size_t data_len;
    const char *comment; /* comment_len 0: none */
    size_t comment_len;
};

/* Splits "<type> <base64> [comment]" and checks the text: one line, no
 * control characters, a UTF-8 comment. */
static int line_split(const char *line, size_t len, struct line_fields *out,
                      struct ff_err *err)
{
    /* Empty spans at the start until found: never NULL. */
    *out = (struct line_fields){.type = line, .data = line, .comment = line};
    if (len > SSHKEY_LINE_MAX)
        return ff_err_set(err, FF_ETOOBIG, "public key: line of %zu bytes (at most %d)", len,
                          SSHKEY_LINE_MAX);
    /* A line pasted from a .pub file ends in a newline. */
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            return ff_err_set(err, FF_EINVAL, "public key: control character at byte %zu "
                              "(expected one line \"<type> <base64> [comment]\")", i + 1);
    }
    size_t pos = 0;
    out->type_len = field(line, len, &pos, &out->type);
    out->data_len = field(line, len, &pos, &out->data);
    if (out->type_len == 0 || out->data_len == 0)
        return ff_err_set(err, FF_EINVAL, "public key: expected \"<type> <base64> "
                          "[comment]\"");
    while (pos < len && line[pos] == ' ')
        pos++;
    out->comment = line + pos;
    out->comment_len = len - pos;
    while (out->comment_len > 0 && out->comment[out->comment_len - 1] == ' ')
        out->comment_len--;
    if (!utf8_valid((const unsigned char *)out->comment, out->comment_len))
        return ff_err_set(err, FF_EINVAL, "public key: the comment is not UTF-8");
    return 0;
}

int sshkey_parse(const char *line, size_t len, struct sshkey *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    struct line_fields f;
    int rc = line_split(line, len, &f, err);
    if (rc != 0)
        return rc;
    const struct key_kind *kind = NULL;
    for (size_t i = 0; kind == NULL && i < sizeof(key_kinds) / sizeof(key_kinds[0]); i++) {
        if (f.type_len == strlen(key_kinds[i].name) &&
            memcmp(f.type, key_kinds[i].name, f.type_len) == 0)
            kind = &key_kinds[i];
    }
    if (kind == NULL)
        return type_refused(f.type, f.type_len, err);
    unsigned char *blob = NULL;
    size_t blob_len = 0;
    char *b64 = NULL;
    struct sshkey k = {.type = kind->name};
    rc = ff_base64_decode(f.data, f.data_len, false, &blob, &blob_len);
    if (rc == FF_ENOMEM) {
        rc = ff_err_set(err, FF_ENOMEM, "public key: out of memory");
        goto fail;
    }
    if (rc != 0) {
        rc = ff_err_set(err, FF_EINVAL, "public key: the key data is not base64");
        goto fail;
    }
    rc = blob_check(kind, blob, blob_len, &k.bits, err);
    if (rc != 0)
        goto fail;
    b64 = ff_strndup(f.data, f.data_len);
    if (b64 == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "public key: out of memory");
        goto fail;
    }
    rc = libssh_check(kind, b64, k.fingerprint, err);
    if (rc != 0)
        goto fail;
    k.line = ff_asprintf("%s %s", kind->name, b64);
    if (f.comment_len > 0)
        k.comment = ff_strndup(f.comment, f.comment_len);
    if (k.line == NULL || (f.comment_len > 0 && k.comment == NULL)) {
        rc = ff_err_set(err, FF_ENOMEM, "public key: out of memory");
        goto fail;
    }
    free(b64);
    free(blob);
    *out = k;
    return 0;
fail:
    free(b64);
    free(blob);
    sshkey_release(&k);
    return rc;
}

void sshkey_release(struct sshkey *k)
{
    if (k == NULL)
        return;
    free(k->line);
    free(k->comment);
    k->line = NULL;
    k->comment = NULL;
}

int sshkey_fingerprint_check(const char *fp, struct ff_err *err)
{
    size_t plen = strlen(FINGERPRINT_PREFIX);
    if (strlen(fp) != SSHKEY_FINGERPRINT_LEN || strncmp(fp, FINGERPRINT_PREFIX, plen) != 0)
        return ff_err_set(err, FF_EINVAL, "fingerprint must be \"SHA256:\" and %d base64 "
                          "characters", SHA256_B64_LEN);
    /* A '+' in a query string means a space: the likeliest way a good
     * fingerprint arrives broken. */
    if (strchr(fp, ' ') != NULL)
        return ff_err_set(err, FF_EINVAL, "fingerprint holds a space: send each '+' in it as "
                          "%%2B");
    /* Put back the padding so the strict decoder also refuses stray low
     * bits in the last character: one digest, one spelling. */
    char padded[SHA256_B64_LEN + 2];
    memcpy(padded, fp + plen, SHA256_B64_LEN);
    padded[SHA256_B64_LEN] = '=';
    padded[SHA256_B64_LEN + 1] = '\0';
    unsigned char *raw = NULL;
    size_t n = 0;
    int rc = ff_base64_decode(padded, SHA256_B64_LEN + 1, false, &raw, &n);
    free(raw);
    if (rc == FF_ENOMEM)
        return ff_err_set(err, FF_ENOMEM, "fingerprint: out of memory");
    if (rc != 0 || n != SHA256_LEN)
        return ff_err_set(err, FF_EINVAL, "fingerprint is not the base64 of a SHA-256 digest");
    return 0;
}
