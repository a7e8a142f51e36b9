#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "builder.h"

#include "ff_base64.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines made once with `ssh-keygen -t <type> [-b <bits>] -N '' -C <comment>`
 * and the fingerprints `ssh-keygen -lf` printed for them. */
struct sample {
    const char *line;
    const char *type;
    unsigned bits;
    const char *fingerprint;
};

static const struct sample good[] = {
    {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPXWGZHvl5WZGlVyUx8wia5S0vkCAo5EmDymHwFnkG8 "
     "test-ed25519@fleetforge",
     "ssh-ed25519", 256, "SHA256:HnRW80Bmk30wbgXPYi9KLt4YFeilQjh9oONXJvUfKsQ"},
    {"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN5HIxOw6pKQzyDJ"
     "tf6HheyKJeby/OK/9UGPytTt/nYsuZHTGdcVUDmOuPm01HX5kob7Lhy+SO2ZWtr+g5RB20Y= "
     "test-ecdsa-b256@fleetforge",
     "ecdsa-sha2-nistp256", 256, "SHA256:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E"},
    {"ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBDuhsqX+1SoZ2mGl"
     "fm5kUWZ+gSCyywxAQbiBolSe1FFryvRSwAdpVSFHJR1bAOZxE1J9xC2/xxiyjr5QxGYfvnmNbwDkYGdBAt9Br3dg"
     "LA+xmKjgNHojKmgRS+iwCjofaQ== test-ecdsa-b384@fleetforge",
     "ecdsa-sha2-nistp384", 384, "SHA256:EMCtLxrQCRaYuv0UgGiW2QON4p5gQyOe2mAV7P/tCXM"},
    {"ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAB/XvwQLGDdjUQp"
     "dTH0vip3aWgGGX7difZ4aTmvvcslpNBAKd8EpZF+lbSyUqYT2PE/PNOnBM6/0mfCGERAjmU2ZQAXVEIqKDVbKarn"
     "E9LzUJ/DcYMt+BevOG9pIFZwFhkEKzlt2eTie/sHnUjagi4EI63zZiTl+XgFwpoesbwVEyf2sA== "
     "test-ecdsa-b521@fleetforge",
     "ecdsa-sha2-nistp521", 521, "SHA256:cmDVCxVyOkbHu5faZFmCHBLcdzR6Zq7h25Xk0ZjIrTs"},
    {"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDJ+tfxMl6nUvWEf6mCxatJm5tdSy61rSW19JwXZcf9qkD3ghrt"
     "h9LSfapDBJNU/85lhHlu0IknCd0TtEg3FpvggDSz/ouLFZ9qXjNxGB8yfBa5xnnxxfEEqhWoXogCf3+lcvjPbxH4"
     "LoMOxFLpJQHbRgtkKeEuxCC0bYqwJia8p2UUnGzCR8Ea1ByYzGGC5oOEOoCrgbxuB3TE+1frMnvX4xaosS2pGdbd"
     "kovEIDxm81WPQ11T93wR6r2tnXWlKC90qmA7WOAUgGLNZf/PDcAMPQpROkq9W+gRlBfL4/DLrf7Ra7PEdJeAS8v6"
     "lBMG2QCjG8/acC0lVx8yem1ArM3H test-rsa-b2048@fleetforge",
     "ssh-rsa", 2048, "SHA256:u8ZnE572AuCvVNr43hFLUCmoFK0BTBw5YvQf49GGrwc"},
    {"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQDMvjRW/c79U9t2TA41rPhL3bRxEWyq/Bph8bXCPoPM6OxCYOL6"
     "PL/4PebxQf9RtwEJhg347bPgepDSUpmnfWVBhVqH+TqKAwqG7f1qOGfz/3AqHuZomCpTHSfZd1dMYTgMykZySYd1"
     "6SOFX602Vnl4k8TKynzTkHJx87YeLol7azA8gkg7ww/kPV5AHQIKJrFnFJNdoGd580vv8a1mz2TER7WQiaU3lbGk"
     "5MVM7lWRI4UAdVUZYF11oVTjO1zDYCUyvBR7wkK+cEvToLvS5KHK9qF/lGql3vQaP1yxZT7Nz+E9xZoALZmZd+5v"
     "Rf6W3ooGhgLCr5qKCxPhO+SDJePm8HkaUE69LaPriKZDgvakWRxlBB5aVlbK6W60uVkHw/hSCywNCabeRoFDS1ST"
     "aiJgv9iYthXPgaCaL0UcL7hh2UlEBrw2ZhQ+5P/A6VPEh8qqUrJ+LwQ09p/BXSlbfigwecB2j+IWILcrfB+X+03e"
     "gyDxurhkT7h/TWNx9l6ovGAn0tFejPj34Gp11VQi06eJD4EM1p4JRiE4A5Zknw9YNOyPaFF2QOP8jS8b3rjgtU8x"
     "O2CFSP30We5xJ6DAKb9JcaoncQwEyrzS5d2T20CO2K6hkdlawvcGDxsQdk32j6SifhkZmVAFdNPjvmcemOV07a2d"
     "gMrAw1eorqPSX2DnVw== test-rsa-b4096@fleetforge",
     "ssh-rsa", 4096, "SHA256:Bxizje/m7qZzfLwiOstxsR4r1GSa1Zshz83JKSca+xM"},
};

#define ED25519_B64 "AAAAC3NzaC1lZDI1NTE5AAAAIEPXWGZHvl5WZGlVyUx8wia5S0vkCAo5EmDymHwFnkG8"

/* ssh-keygen -t rsa -b 1024 */
static const char rsa1024[] =
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQD2im9sSqFVXqg7pRX9RjzzlLZi9aHOmK4+UFbNErBeP4S6/RKB7w"
    "RDPbvjMykbusxJE/1sD3UMwrhVGgdysnaCFuuJ/+Mpyn3J8xrYDoEKgxeX0AZgXCQ9kdpGddny2+9iEmGIvTZVC7kq"
    "c2q9divShskioyjtQzvIcCrEB5mdcw== test-rsa-b1024@fleetforge";

/* ssh-keygen -t dsa */
static const char dsa[] =
    "ssh-dss AAAAB3NzaC1kc3MAAACBAOIonrup8qNZMSD/Rprnhjpbh3Cv0DDUd2zO4M4xHHKwkRhwnidy+sGDP2QcXe"
    "fn4W6+e+al9TtagujXSgnqzI/Rqd2FRKOwRiqTo9E87ameplD1ekdpe+tDQA7nof4oDh0iF82PKz4vOKXRyBymsGUs"
    "DnobJIGHs3XgmPy0jc1PAAAAFQDQCPSag21w31WrfuGv7NZcy/bSiwAAAIBuD6hblNNz5x7aDqzlNAcjBwHzrsZPwt"
    "f3JSXNp6MQu2jC/xAP+AcT0PNmVyG0f5ecjFdOfmJ/u4yVR2Y1zn5dDbvmsBpo2YJ6KYyiITV6o9/4Pk7prIurVELK"
    "BqDSExg6gj7XCS9uZMujvKUqlIpYUw6DKA60H1ySxcM4t1siVAAAAIBmhmi5sedOLtCd9sG7TapH6NyjZJjAo42vJX"
    "lFzveWnzmWMG01r0Pi+5yUuvPTiwfDaUSqUxAjTD+aTUW9mgayH4AjwVIvAFgRV3uM3dI2Xi8tH53X7dtvfRZYZJGz"
    "ofRZKaXlH+QZ4XBi2gkwA1EOsNWmbND7sTlsSAew7BkISA== test-dsa@fleetforge";

/* ssh-keygen -s ca -I test -n bob on the ed25519 key above */
static const char cert[] =
    "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIITx"
    "xn/sgEmkSCD3LZitg/+8UqanQJUMO3uWBQyIikTRAAAAIEPXWGZHvl5WZGlVyUx8wia5S0vkCAo5EmDymHwFnkG8AA"
    "AAAAAAAAAAAAABAAAABHRlc3QAAAAHAAAAA2JvYgAAAAAAAAAA//////////8AAAAAAAAAggAAABVwZXJtaXQtWDEx"
    "LWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YX"
    "JkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQy"
    "NTUxOQAAACCvkUmCIVV/bQ/4rytlu6y1ZicNRv76lKtU9j4rxTJ8HgAAAFMAAAALc3NoLWVkMjU1MTkAAABA33gh2E"
    "1tTsYVEWzq4jCq7Uf2rBzeI+eVBTq/7yYWlKfdo8//g8aCvl4AIo4Vht/T4shA3mYtQuyOr+o+5zOrBQ== "
    "test-ed25519@fleetforge";

static void expect_ok(const char *line, size_t len, struct sshkey *k)
{
    struct ff_err err;
    ff_err_clear(&err);
    int rc = sshkey_parse(line, len, k, &err);
    if (rc != 0)
        fail_msg("sshkey_parse refused a good key: %s", err.msg);
}

/* Parses line and expects code with want somewhere in the message. */
static void expect_refused(const char *line, size_t len, int code, const char *want)
{
    struct sshkey k;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = sshkey_parse(line, len, &k, &err);
    if (rc != code || strstr(err.msg, want) == NULL)
        fail_msg("line \"%.60s...\": got %d \"%s\", expected %d with \"%s\"", line, rc, err.msg,
                 code, want);
    assert_null(k.line);
    assert_null(k.comment);
}

static void test_accepted_types_and_fingerprints(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct sshkey k;
        expect_ok(good[i].line, strlen(good[i].line), &k);
        assert_string_equal(k.type, good[i].type);
        assert_int_equal(k.bits, good[i].bits);
        assert_string_equal(k.fingerprint, good[i].fingerprint);
        assert_int_equal(sshkey_fingerprint_check(k.fingerprint, NULL), 0);
        /* The normalised line is the original without its comment. */
        const char *space = strrchr(good[i].line, ' ');
        assert_int_equal(strlen(k.line), (size_t)(space - good[i].line));
        assert_memory_equal(k.line, good[i].line, strlen(k.line));
        assert_string_equal(k.comment, space + 1);
        /* Parsing the normalised line gives the same key. */
        struct sshkey again;
        expect_ok(k.line, strlen(k.line), &again);
        assert_string_equal(again.fingerprint, k.fingerprint);
        assert_null(again.comment);
        sshkey_release(&again);
        sshkey_release(&k);
    }
}

static void test_line_forms(void **state)
{
    (void)state;
    static const char *const forms[] = {
        "ssh-ed25519 " ED25519_B64 " test-ed25519@fleetforge\n",
        "ssh-ed25519 " ED25519_B64 " test-ed25519@fleetforge\r\n",
        "  ssh-ed25519   " ED25519_B64 "   test-ed25519@fleetforge  ",
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct sshkey k;
        expect_ok(forms[i], strlen(forms[i]), &k);
        assert_string_equal(k.line, "ssh-ed25519 " ED25519_B64);
        assert_string_equal(k.comment, "test-ed25519@fleetforge");
        assert_string_equal(k.fingerprint, good[0].fingerprint);
        sshkey_release(&k);
    }
    struct sshkey k;
    const char *spaced = "ssh-ed25519 " ED25519_B64 " Bob's laptop  (2024) \xc3\xa9t\xc3\xa9";
    expect_ok(spaced, strlen(spaced), &k);
    assert_string_equal(k.comment, "Bob's laptop  (2024) \xc3\xa9t\xc3\xa9");
    sshkey_release(&k);
    const char *bare = "ssh-ed25519 " ED25519_B64;
    expect_ok(bare, strlen(bare), &k);
    assert_null(k.comment);
    sshkey_release(&k);
    /* len, not the NUL, ends the line. */
    expect_ok(good[0].line, strlen("ssh-ed25519 ") + strlen(ED25519_B64), &k);
    assert_null(k.comment);
    sshkey_release(&k);
    sshkey_release(NULL);
}

static void test_refused_types(void **state)
{
    (void)state;
    expect_refused(rsa1024, strlen(rsa1024), FF_EINVAL, "RSA key of 1024 bits refused");
    expect_refused(dsa, strlen(dsa), FF_EINVAL, "DSA keys are refused");
    expect_refused(cert, strlen(cert), FF_EINVAL, "is a certificate");
    const char *sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIE"
                     "PXWGZHvl5WZGlVyUx8wia5S0vkCAo5EmDymHwFnkG8AAAABHNzaDo= sk";
    expect_refused(sk, strlen(sk), FF_EINVAL, "security key");
    const char *unknown = "ssh-foo " ED25519_B64;
    expect_refused(unknown, strlen(unknown), FF_EINVAL, "unknown key type \"ssh-foo\"");
    /* authorized_keys options are not part of a key. */
    const char *opts = "command=\"ls\" ssh-ed25519 " ED25519_B64;
    expect_refused(opts, strlen(opts), FF_EINVAL, "unknown key type");
}

static void test_malformed_lines(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *want;
    } bad[] = {
        {"", "expected \"<type> <base64> [comment]\""},
        {"   \n", "expected \"<type> <base64>"},
        {"ssh-ed25519", "expected \"<type> <base64>"},
        {"ssh-ed25519   ", "expected \"<type> <base64>"},
        {"ssh-ed25519 not*base64", "not base64"},
        {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPXWGZHvl5WZGlVyUx8wia5S0vkCAo5EmDymHwFnkG",
         "not base64"},
        {"ssh-ed25519\t" ED25519_B64, "control character at byte 12"},
        {"ssh-ed25519 " ED25519_B64 " a\x01" "b", "control character at byte 83"},
        {"ssh-ed25519 " ED25519_B64 "\n\n", "control character"},
        {"ssh-ed25519 " ED25519_B64 " a\x7f", "control character"},
        {"ssh-ed25519 " ED25519_B64 " caf\xc3", "comment is not UTF-8"},
        {"ssh-ed25519 " ED25519_B64 " \xed\xa0\x80", "comment is not UTF-8"},
        {"ssh-ed25519 " ED25519_B64 " \xc0\xaf", "comment is not UTF-8"},
        {"ssh-ed25519 AAAA", "truncated"},
        /* The line's type must be the one in the data. */
        {"ssh-rsa " ED25519_B64, "the line says ssh-rsa but the key data holds \"ssh-ed25519\""},
        {"ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN5HIxOw6pKQz"
         "yDJtf6HheyKJeby/OK/9UGPytTt/nYsuZHTGdcVUDmOuPm01HX5kob7Lhy+SO2ZWtr+g5RB20Y=",
         "the line says ecdsa-sha2-nistp384"},
        /* Type string nistp256, curve and point of P-384. */
        {"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAzODQAAABhBDuhsqX+1SoZ2"
         "mGlfm5kUWZ+gSCyywxAQbiBolSe1FFryvRSwAdpVSFHJR1bAOZxE1J9xC2/xxiyjr5QxGYfvnmNbwDkYGdBAt9"
         "Br3dgLA+xmKjgNHojKmgRS+iwCjofaQ==",
         "ecdsa-sha2-nistp256 key data is not in canonical form"},
        /* An ed25519 key of 31 bytes. */
        {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAH0PXWGZHvl5WZGlVyUx8wia5S0vkCAo5EmDymHwFnkE=",
         "ssh-ed25519 key data is malformed"},
        /* Four zero bytes after a good ed25519 key. */
        {"ssh-ed25519 " ED25519_B64 "AAAAAA==", "not in canonical form"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(bad[i].line, strlen(bad[i].line), FF_EINVAL, bad[i].want);
    const char nul[] = "ssh-ed25519 " ED25519_B64 "\0x";
    expect_refused(nul, sizeof(nul) - 1, FF_EINVAL, "control character at byte 81");
}

/* Builds "ssh-rsa <base64>" from a blob of the type string, e and n. */
static char *rsa_line(const unsigned char *e, size_t e_len, const unsigned char *n,
                      size_t n_len)
{
    size_t len = 4 + 7 + 4 + e_len + 4 + n_len;
    unsigned char *blob = malloc(len);
    assert_non_null(blob);
    size_t o = 0;
    const struct {
        const void *p;
        size_t n;
    } parts[] = {{"ssh-rsa", 7}, {e, e_len}, {n, n_len}};
    for (size_t i = 0; i < 3; i++) {
        blob[o++] = (unsigned char)(parts[i].n >> 24);
        blob[o++] = (unsigned char)(parts[i].n >> 16);
        blob[o++] = (unsigned char)(parts[i].n >> 8);
        blob[o++] = (unsigned char)parts[i].n;
        memcpy(blob + o, parts[i].p, parts[i].n);
        o += parts[i].n;
    }
    char *b64 = ff_base64_encode_new(blob, len, false);
    free(blob);
    assert_non_null(b64);
    char *line = ff_asprintf("ssh-rsa %s", b64);
    free(b64);
    assert_non_null(line);
    return line;
}

/* The modulus of the 2048-bit sample key. */
static void rsa_modulus(unsigned char **n, size_t *n_len)
{
    const char *b64 = strchr(good[4].line, ' ') + 1;
    size_t b64_len = (size_t)(strchr(b64, ' ') - b64);
    unsigned char *blob = NULL;
    size_t len = 0;
    assert_int_equal(ff_base64_decode(b64, b64_len, false, &blob, &len), 0);
    /* type "ssh-rsa" (4 + 7), e 0x010001 (4 + 3), then n. */
    size_t at = 4 + 7 + 4 + 3;
    *n_len = (size_t)blob[at] << 24 | (size_t)blob[at + 1] << 16 | (size_t)blob[at + 2] << 8 |
             blob[at + 3];
    assert_int_equal(*n_len, 257);
    *n = malloc(*n_len + 1);
    assert_non_null(*n);
    memcpy(*n, blob + at + 4, *n_len);
    free(blob);
}

static void test_rsa_checks(void **state)
{
    (void)state;
    unsigned char *n = NULL;
    size_t n_len = 0;
    rsa_modulus(&n, &n_len);
    static const unsigned char e65537[] = {1, 0, 1};
    char *line = rsa_line(e65537, sizeof(e65537), n, n_len);
    struct sshkey k;
    expect_ok(line, strlen(line), &k);
    assert_string_equal(k.fingerprint, good[4].fingerprint);
    sshkey_release(&k);
    free(line);

    static const unsigned char even[] = {1, 0, 2}, one[] = {1}, zero[] = {0};
    line = rsa_line(even, sizeof(even), n, n_len);
    expect_refused(line, strlen(line), FF_EINVAL, "exponent must be odd");
    free(line);
    line = rsa_line(one, sizeof(one), n, n_len);
    expect_refused(line, strlen(line), FF_EINVAL, "exponent must be odd");
    free(line);
    line = rsa_line(zero, 0, n, n_len);
    expect_refused(line, strlen(line), FF_EINVAL, "exponent must be odd");
    free(line);

    /* Another leading zero on n: same key, second encoding. */
    unsigned char *padded = malloc(n_len + 1);
    assert_non_null(padded);
    padded[0] = 0;
    memcpy(padded + 1, n, n_len);
    line = rsa_line(e65537, sizeof(e65537), padded, n_len + 1);
    expect_refused(line, strlen(line), FF_EINVAL, "not in canonical form");
    free(line);
    free(padded);

    /* 2047 bits: n shifted right by one. */
    unsigned char *small = malloc(n_len);
    assert_non_null(small);
    unsigned carry = 0;
    for (size_t i = 0; i < n_len; i++) {
        small[i] = (unsigned char)((n[i] >> 1) | (carry << 7));
        carry = n[i] & 1;
    }
    small[n_len - 1] |= 1;
    line = rsa_line(e65537, sizeof(e65537), small, n_len);
    expect_refused(line, strlen(line), FF_EINVAL, "RSA key of 2047 bits refused");
    free(line);
    free(small);

    /* 16385 bits: one more than OpenSSH makes. */
    size_t big_len = 16384 / 8 + 1;
    unsigned char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 0xab, big_len);
    big[0] = 1;
    line = rsa_line(e65537, sizeof(e65537), big, big_len);
    expect_refused(line, strlen(line), FF_EINVAL, "RSA key of 16385 bits refused");
    free(line);
    free(big);

    /* Truncated after e. */
    line = rsa_line(e65537, sizeof(e65537), n, 0);
    expect_refused(line, strlen(line), FF_EINVAL, "RSA key of 0 bits");
    free(line);
    free(n);
}

static void test_line_limit(void **state)
{
    (void)state;
    size_t len = SSHKEY_LINE_MAX + 1;
    char *line = malloc(len + 1);
    assert_non_null(line);
    int head = snprintf(line, len + 1, "ssh-ed25519 %s ", ED25519_B64);
    assert_true(head > 0);
    memset(line + head, 'c', len - (size_t)head);
    line[len] = '\0';
    expect_refused(line, len, FF_ETOOBIG, "at most 16384");
    /* At the limit, a long comment is fine. */
    struct sshkey k;
    expect_ok(line, len - 1, &k);
    assert_int_equal(strlen(k.comment), len - 1 - (size_t)head);
    sshkey_release(&k);
    free(line);
}

static void test_fingerprint_check(void **state)
{
    (void)state;
    struct ff_err err;
    assert_int_equal(sshkey_fingerprint_check(good[1].fingerprint, &err), 0);
    static const char *const bad[] = {
        "",
        "SHA256:",
        "sha256:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E",
        "MD5:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E",
        "SHA256:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5",
        "SHA256:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E=",
        "SHA256:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E ",
        "SHA256:9kHudF XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E",
        "SHA256:9kHudF-XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E",
        /* The last character must leave its two low bits zero. */
        "SHA256:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5F",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sshkey_fingerprint_check(bad[i], &err) != FF_EINVAL)
            fail_msg("fingerprint \"%s\" was accepted", bad[i]);
    }
    assert_non_null(strstr(err.msg, "SHA-256"));
    /* What a '+' sent raw in a query string becomes. */
    assert_int_equal(sshkey_fingerprint_check("SHA256:9kHudF XqCZtT4ihiXdER BVKvSRUjxk7wAxqEFXB5E",
                                              &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "%2B"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_types_and_fingerprints),
        cmocka_unit_test(test_line_forms),
        cmocka_unit_test(test_refused_types),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_rsa_checks),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_fingerprint_check),
    };
    return cmocka_run_group_tests_name("builder/sshkey", tests, NULL, NULL);
}
