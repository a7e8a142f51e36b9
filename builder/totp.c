/* One-time codes for the second factor: base32 (RFC 4648), HOTP (RFC 4226)
 * and TOTP (RFC 6238) over OpenSSL's HMAC-SHA-1, the otpauth:// URI that
 * authenticator apps read, and recovery codes. Pure computation: no
 * database, no I/O, so every rule here is unit tested and fuzzed alone. */
#include "builder.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b32_upper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/* Recovery codes are shown in lower case: easier to read aloud and type. */
static const char b32_lower[] = "abcdefghijklmnopqrstuvwxyz234567";

/* HOTP code lengths RFC 4226 §5.3 allows; 10^8 fits in 32 bits. */
#define HOTP_DIGITS_MIN 6
#define HOTP_DIGITS_MAX 8

size_t totp_base32_encoded_size(size_t n)
{
    return (n + 4) / 5 * 8 + 1;
}

size_t totp_base32_encode(const unsigned char *in, size_t n, bool pad, char *out)
{
    size_t o = 0;
    unsigned bits = 0;
    unsigned nbits = 0;
    for (size_t i = 0; i < n; i++) {
        bits = (bits << 8) | in[i];
        nbits += 8;
        while (nbits >= 5) {
            nbits -= 5;
            out[o++] = b32_upper[(bits >> nbits) & 31u];
        }
        bits &= (1u << nbits) - 1u;
    }
    if (nbits > 0)
        out[o++] = b32_upper[(bits << (5 - nbits)) & 31u];
    while (pad && o % 8 != 0)
        out[o++] = '=';
    out[o] = '\0';
    return o;
}

/* Value of an upper-case base32 character, or -1. */
static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

int totp_base32_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                       size_t *out_len, struct ff_err *err)
{
    size_t chars = len;
    while (chars > 0 && in[chars - 1] == '=')
        chars--;
    size_t padding = len - chars;
    /* A last group of r characters carries 5r bits; only these r leave
     * fewer than 5 bits over, i.e. end on a whole byte. */
    size_t r = chars % 8;
    if (r == 1 || r == 3 || r == 6)
        return ff_err_set(err, FF_EINVAL, "base32: %zu characters cannot end on a whole byte",
                          chars);
    if (padding > 0 && (len % 8 != 0 || r == 0 || padding >= 8))
        return ff_err_set(err, FF_EINVAL, "base32: padding must fill the last group of 8 "
                          "exactly (%zu characters, %zu '=')", chars, padding);
    size_t n = chars / 8 * 5 + (r * 5) / 8;
    if (n > cap)
        return ff_err_set(err, FF_ETOOBIG, "base32: decodes to %zu bytes, at most %zu expected",
                          n, cap);
    unsigned bits = 0;
    unsigned nbits = 0;
    size_t o = 0;
    for (size_t i = 0; i < chars; i++) {
        int v = b32_value(in[i]);
        if (v < 0)
            return ff_err_set(err, FF_EINVAL, "base32: character %zu is not in [A-Z2-7]",
                              i + 1);
        bits = (bits << 5) | (unsigned)v;
        nbits += 5;
        if (nbits >= 8) {
            nbits -= 8;
            out[o++] = (unsigned char)(bits >> nbits);
            bits &= (1u << nbits) - 1u;
        }
    }
    if (bits != 0)
        return ff_err_set(err, FF_EINVAL, "base32: unused bits of the last character must be "
                          "zero");
    *out_len = o;
    return 0;
}

int totp_hotp(const unsigned char *key, size_t key_len, uint64_t counter, unsigned digits,
              uint32_t *out, struct ff_err *err)
{
    if (digits < HOTP_DIGITS_MIN || digits > HOTP_DIGITS_MAX)
        return ff_err_set(err, FF_EINVAL, "hotp: %u digits, expected %d..%d", digits,
                          HOTP_DIGITS_MIN, HOTP_DIGITS_MAX);
    if (key_len == 0 || key_len > TOTP_SECRET_MAX)
        return ff_err_set(err, FF_EINVAL, "hotp: key of %zu bytes, expected 1..%d", key_len,
                          TOTP_SECRET_MAX);
    unsigned char msg[8];
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(counter & 0xffu);
        counter >>= 8;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (HMAC(EVP_sha1(), key, (int)key_len, msg, sizeof(msg), md, &md_len) == NULL ||
        md_len != 20)
        return ff_err_set(err, FF_ECRYPTO, "hotp: HMAC-SHA-1 failed");
    /* Dynamic truncation, RFC 4226 §5.3. */
    unsigned off = md[19] & 0x0fu;
    uint32_t bin = ((uint32_t)(md[off] & 0x7fu) << 24) | ((uint32_t)md[off + 1] << 16) |
                   ((uint32_t)md[off + 2] << 8) | (uint32_t)md[off + 3];
    ff_secret_wipe(md, sizeof(md));
    uint32_t mod = 1;
    for (unsigned i = 0; i < digits; i++)
        mod *= 10;
    *out = bin % mod;
    return 0;
}

int64_t totp_step(int64_t now)
{
    int64_t q = now / TOTP_PERIOD;
    return now % TOTP_PERIOD < 0 ? q - 1 : q;
}

int totp_code_check(const char *code, struct ff_err *err)
{
    size_t i = 0;
    while (i < TOTP_DIGITS && code[i] >= '0' && code[i] <= '9')
        i++;
    if (i != TOTP_DIGITS || code[i] != '\0')
        return ff_err_set(err, FF_EINVAL, "a two-factor code is exactly %d digits",
                          TOTP_DIGITS);
    return 0;
}

int totp_verify(const unsigned char *key, size_t key_len, const char *code, int64_t now,
                int64_t last_step, int64_t *out_step, struct ff_err *err)
{
    int rc = totp_code_check(code, err);
    if (rc != 0)
        return rc;
    int64_t step = totp_step(now);
    int64_t match = -1;
    char want[HOTP_DIGITS_MAX + 1];
    /* Every step in the window is computed and compared, matched or not,
     * so the time taken says nothing about which one matched. */
    for (int64_t s = step - TOTP_WINDOW; rc == 0 && s <= step + TOTP_WINDOW; s++) {
        if (s < 0)
            continue;
        uint32_t v = 0;
        rc = totp_hotp(key, key_len, (uint64_t)s, TOTP_DIGITS, &v, err);
        if (rc != 0)
            break;
        (void)snprintf(want, sizeof(want), "%0*u", TOTP_DIGITS, (unsigned)v);
        bool same = ff_secret_equal(want, code, TOTP_DIGITS);
        if (same && s > last_step)
            match = s;
    }
    ff_secret_wipe(want, sizeof(want));
    if (rc != 0)
        return rc;
    if (match < 0)
        return ff_err_set(err, FF_EAUTH, "two-factor code is wrong or already used");
    *out_step = match;
    return 0;
}

/* RFC 3986 unreserved characters pass; everything else is %XX. */
static bool uri_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

int totp_uri(const char *user, const char *secret_b32, char **out, struct ff_err *err)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t ulen = strlen(user);
    size_t size = ulen * 3 + 1;
    char *label = malloc(size);
    if (label == NULL)
        return ff_err_set(err, FF_ENOMEM, "totp: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < ulen; i++) {
        unsigned char c = (unsigned char)user[i];
        if (uri_unreserved(c)) {
            label[o++] = (char)c;
        } else {
            label[o++] = '%';
            label[o++] = hex[c >> 4];
            label[o++] = hex[c & 15u];
        }
    }
    label[o] = '\0';
    /* Sized exactly, so the secret is never left behind in a buffer that
     * was grown and freed. */
    static const char fmt[] = "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&"
                              "digits=%d&period=%d";
    int need = snprintf(NULL, 0, fmt, TOTP_ISSUER, label, secret_b32, TOTP_ISSUER,
                        TOTP_DIGITS, TOTP_PERIOD);
    char *uri = need < 0 ? NULL : malloc((size_t)need + 1);
    if (uri == NULL) {
        free(label);
        return ff_err_set(err, FF_ENOMEM, "totp: out of memory");
    }
    (void)snprintf(uri, (size_t)need + 1, fmt, TOTP_ISSUER, label, secret_b32, TOTP_ISSUER,
                   TOTP_DIGITS, TOTP_PERIOD);
    free(label);
    *out = uri;
    return 0;
}

int totp_recovery_new(char out[RECOVERY_CODE_SIZE], struct ff_err *err)
{
    unsigned char raw[RECOVERY_CODE_CHARS];
    int rc = ff_secret_random(raw, sizeof(raw), err);
    if (rc != 0)
        return rc;
    size_t o = 0;
    for (size_t i = 0; i < RECOVERY_CODE_CHARS; i++) {
        if (i > 0 && i % 5 == 0)
            out[o++] = '-';
        /* 256 is a multiple of 32: the low five bits are uniform. */
        out[o++] = b32_lower[raw[i] & 31u];
    }
    out[o] = '\0';
    ff_secret_wipe(raw, sizeof(raw));
    return 0;
}

int totp_recovery_normalise(const char *code, char out[RECOVERY_CODE_CHARS + 1],
                            struct ff_err *err)
{
    size_t n = 0;
    for (size_t i = 0; code[i] != '\0'; i++) {
        char c = code[i];
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        bool ok = (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
        if (!ok || n == RECOVERY_CODE_CHARS) {
            ff_secret_wipe(out, n);
            return ff_err_set(err, FF_EINVAL, "a recovery code is %d characters of "
                              "[a-z2-7], with optional '-'", RECOVERY_CODE_CHARS);
        }
        out[n++] = c;
    }
    if (n != RECOVERY_CODE_CHARS) {
        ff_secret_wipe(out, n);
        return ff_err_set(err, FF_EINVAL, "a recovery code is %d characters of [a-z2-7], "
                          "with optional '-'", RECOVERY_CODE_CHARS);
    }
    out[n] = '\0';
    return 0;
}
