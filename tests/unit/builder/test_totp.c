#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "builder.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The seed of RFC 6238 Appendix B and RFC 4226 Appendix D (SHA-1). */
static const unsigned char rfc_key[] = "12345678901234567890";
#define RFC_KEY_LEN 20

static void test_base32_rfc4648_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *plain, *padded, *bare;
    } v[] = {
        {"", "", ""},
        {"f", "MY======", "MY"},
        {"fo", "MZXQ====", "MZXQ"},
        {"foo", "MZXW6===", "MZXW6"},
        {"foob", "MZXW6YQ=", "MZXW6YQ"},
        {"fooba", "MZXW6YTB", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI======", "MZXW6YTBOI"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = strlen(v[i].plain);
        char enc[32];
        assert_true(totp_base32_encoded_size(n) <= sizeof(enc));
        assert_int_equal(totp_base32_encode((const unsigned char *)v[i].plain, n, true, enc),
                         strlen(v[i].padded));
        assert_string_equal(enc, v[i].padded);
        assert_int_equal(totp_base32_encode((const unsigned char *)v[i].plain, n, false, enc),
                         strlen(v[i].bare));
        assert_string_equal(enc, v[i].bare);
        const char *forms[] = {v[i].padded, v[i].bare};
        for (size_t f = 0; f < 2; f++) {
            unsigned char out[16];
            size_t len = 99;
            struct ff_err err;
            assert_int_equal(totp_base32_decode(forms[f], strlen(forms[f]), out, sizeof(out),
                                                &len, &err), 0);
            assert_int_equal(len, n);
            assert_memory_equal(out, v[i].plain, n);
        }
    }
}

static void test_base32_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "mzxw6ytb",         /* lower case */
        "MY=====",          /* padding short of a group of 8 */
        "MY=======",        /* padding past a group of 8 */
        "M=======",         /* 1 character cannot end on a byte */
        "MZX=====",         /* 3 characters neither */
        "MZXW6Y==",         /* 6 characters neither */
        "MZ======",         /* 2 characters with non-zero unused bits */
        "MZXW6YTBOJ",       /* 10 characters with non-zero unused bits */
        "MZ=W6YTB",         /* '=' inside */
        "MZXW1YTB",         /* '1' is not in the alphabet */
        "MZXW0YTB",         /* nor is '0' */
        "MZXW6YTB========", /* a whole group of padding */
        "MZXTBOI=========", /* more padding than the last group needs */
        "MY==============",
        "========",
        "MZXW 6YTB",
        "MZXW6YT\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char out[16];
        size_t len = 0;
        struct ff_err err;
        ff_err_clear(&err);
        assert_int_equal(totp_base32_decode(bad[i], strlen(bad[i]), out, sizeof(out), &len,
                                            &err), FF_EINVAL);
        assert_true(strlen(err.msg) > 0);
    }
    /* More bytes than the caller has room for. */
    unsigned char small[5];
    size_t len = 0;
    struct ff_err err;
    assert_int_equal(totp_base32_decode("MZXW6YTBOI", 10, small, sizeof(small), &len, &err),
                     FF_ETOOBIG);
    assert_int_equal(totp_base32_decode("MZXW6YTB", 8, small, sizeof(small), &len, &err), 0);
    assert_int_equal(len, 5);
}

/* A secret survives encode and decode, and the padded and bare spellings
 * are the only two that decode. */
static void test_base32_round_trip(void **state)
{
    (void)state;
    unsigned char in[TOTP_SECRET_BYTES + 3];
    for (size_t n = 0; n <= sizeof(in); n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 37u + n);
        char enc[64];
        unsigned char out[sizeof(in)];
        size_t len = 0;
        struct ff_err err;
        for (int pad = 0; pad < 2; pad++) {
            size_t elen = totp_base32_encode(in, n, pad != 0, enc);
            assert_int_equal(totp_base32_decode(enc, elen, out, sizeof(out), &len, &err), 0);
            assert_int_equal(len, n);
            assert_memory_equal(out, in, n);
        }
    }
    char enc[64];
    assert_int_equal(totp_base32_encode(in, TOTP_SECRET_BYTES, false, enc), 32);
    assert_true(totp_base32_encoded_size(TOTP_SECRET_MAX) <= TOTP_SECRET_B32_SIZE);
}

static void test_hotp_rfc4226_vectors(void **state)
{
    (void)state;
    static const uint32_t want[] = {755224, 287082, 359152, 969429, 338314,
                                    254676, 287922, 162583, 399871, 520489};
    for (uint64_t c = 0; c < 10; c++) {
        uint32_t v = 0;
        struct ff_err err;
        assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, c, 6, &v, &err), 0);
        assert_int_equal(v, want[c]);
    }
}

static void test_totp_rfc6238_vectors(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        uint32_t code8;
        int64_t step;
    } v[] = {
        {59, 94287082, 0x1},
        {1111111109, 7081804, 0x23523EC},
        {1111111111, 14050471, 0x23523ED},
        {1234567890, 89005924, 0x273EF07},
        {2000000000, 69279037, 0x3F940AA},
        {20000000000LL, 65353130, 0x27BC86AA},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct ff_err err;
        int64_t step = totp_step(v[i].t);
        assert_int_equal(step, v[i].step);
        uint32_t code = 0;
        assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)step, 8, &code, &err), 0);
        assert_int_equal(code, v[i].code8);
        assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)step, 6, &code, &err), 0);
        assert_int_equal(code, v[i].code8 % 1000000);
        /* The 6-digit form verifies at that very time, zero-padded. */
        char text[8];
        (void)snprintf(text, sizeof(text), "%06u", (unsigned)(v[i].code8 % 1000000));
        int64_t got = 0;
        assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, text, v[i].t, -1, &got, &err), 0);
        assert_int_equal(got, step);
    }
    /* Leading zeros are part of the code: 1111111109 gives "081804". */
    int64_t got = 0;
    struct ff_err err;
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, "081804", 1111111109, -1, &got, &err),
                     0);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, "81804", 1111111109, -1, &got, &err),
                     FF_EINVAL);
}

static void test_hotp_bad_arguments(void **state)
{
    (void)state;
    uint32_t v = 0;
    struct ff_err err;
    assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, 0, 5, &v, &err), FF_EINVAL);
    assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, 0, 9, &v, &err), FF_EINVAL);
    assert_int_equal(totp_hotp(rfc_key, 0, 0, 6, &v, &err), FF_EINVAL);
    unsigned char big[TOTP_SECRET_MAX + 1];
    memset(big, 7, sizeof(big));
    assert_int_equal(totp_hotp(big, sizeof(big), 0, 6, &v, &err), FF_EINVAL);
    assert_int_equal(totp_hotp(big, TOTP_SECRET_MAX, 0, 6, &v, &err), 0);
    int64_t got = 0;
    assert_int_equal(totp_verify(rfc_key, 0, "123456", 59, -1, &got, &err), FF_EINVAL);
}

static void test_step(void **state)
{
    (void)state;
    assert_int_equal(totp_step(0), 0);
    assert_int_equal(totp_step(29), 0);
    assert_int_equal(totp_step(30), 1);
    assert_int_equal(totp_step(-1), -1);
    assert_int_equal(totp_step(-30), -1);
    assert_int_equal(totp_step(-31), -2);
}

/* The code of step s under the RFC key, as text. */
static void code_at(int64_t s, char out[TOTP_DIGITS + 1])
{
    uint32_t v = 0;
    assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)s, TOTP_DIGITS, &v, NULL), 0);
    (void)snprintf(out, TOTP_DIGITS + 1, "%0*u", TOTP_DIGITS, (unsigned)v);
}

static void test_verify_window_and_replay(void **state)
{
    (void)state;
    const int64_t now = 1111111111;
    const int64_t s = totp_step(now);
    char code[TOTP_DIGITS + 1];
    struct ff_err err;
    int64_t got = 0;
    for (int64_t d = -TOTP_WINDOW; d <= TOTP_WINDOW; d++) {
        code_at(s + d, code);
        assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, now, -1, &got, &err), 0);
        assert_int_equal(got, s + d);
    }
    /* One step outside the window either way. */
    code_at(s - TOTP_WINDOW - 1, code);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, now, -1, &got, &err), FF_EAUTH);
    code_at(s + TOTP_WINDOW + 1, code);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, now, -1, &got, &err), FF_EAUTH);
    /* The start of a step and the end of the one before. */
    code_at(s, code);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, s * TOTP_PERIOD, -1, &got, &err),
                     0);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, (s + 2) * TOTP_PERIOD - 1, -1,
                                 &got, &err), 0);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, (s + 2) * TOTP_PERIOD, -1, &got,
                                 &err), FF_EAUTH);
    /* Once step s is used, its code and older ones are refused; a newer
     * one still works. */
    code_at(s, code);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, now, s, &got, &err), FF_EAUTH);
    assert_string_equal(err.msg, "two-factor code is wrong or already used");
    code_at(s - 1, code);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, now, s, &got, &err), FF_EAUTH);
    code_at(s + 1, code);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, now, s, &got, &err), 0);
    assert_int_equal(got, s + 1);
    /* Near the epoch there is no step -1 to look at. */
    code_at(0, code);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, 5, -1, &got, &err), 0);
    assert_int_equal(got, 0);
    /* A wrong code of the right shape. */
    code_at(s, code);
    code[0] = "1234567890"[code[0] - '0'];
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, code, now, -1, &got, &err), FF_EAUTH);
}

static void test_malformed_codes(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "12345", "1234567", "12a456", " 123456", "123456 ", "+12345", "-12345",
        "123 456", "１２３４５６", "12345\n", "0x1234", "123456789012",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ff_err err;
        int64_t got = 0;
        assert_int_equal(totp_code_check(bad[i], &err), FF_EINVAL);
        assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, bad[i], 59, -1, &got, &err),
                         FF_EINVAL);
    }
    assert_int_equal(totp_code_check("000000", NULL), 0);
    assert_int_equal(totp_code_check("999999", NULL), 0);
}

static void test_uri(void **state)
{
    (void)state;
    char *uri = NULL;
    struct ff_err err;
    assert_int_equal(totp_uri("bob.smith", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", &uri, &err), 0);
    assert_string_equal(uri, "otpauth://totp/Fleetforge:bob.smith?secret="
                             "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Fleetforge&"
                             "algorithm=SHA1&digits=6&period=30");
    ff_secret_free(uri);
    assert_int_equal(totp_uri("a b:c/é", "MY", &uri, &err), 0);
    assert_string_equal(uri, "otpauth://totp/Fleetforge:a%20b%3Ac%2F%C3%A9?secret=MY&"
                             "issuer=Fleetforge&algorithm=SHA1&digits=6&period=30");
    ff_secret_free(uri);
}

static void test_recovery_codes(void **state)
{
    (void)state;
    char codes[RECOVERY_CODES][RECOVERY_CODE_SIZE];
    struct ff_err err;
    for (size_t i = 0; i < RECOVERY_CODES; i++) {
        assert_int_equal(totp_recovery_new(codes[i], &err), 0);
        assert_int_equal(strlen(codes[i]), RECOVERY_CODE_SIZE - 1);
        for (size_t k = 0; k < RECOVERY_CODE_SIZE - 1; k++) {
            char c = codes[i][k];
            if (k % 6 == 5)
                assert_int_equal(c, '-');
            else
                assert_true((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'));
        }
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(codes[i], codes[k]);
        char canon[RECOVERY_CODE_CHARS + 1];
        assert_int_equal(totp_recovery_normalise(codes[i], canon, &err), 0);
        assert_int_equal(strlen(canon), RECOVERY_CODE_CHARS);
    }
    char canon[RECOVERY_CODE_CHARS + 1];
    static const char *const same[] = {
        "abcde-fghij-klmno-pqrst", "ABCDE-FGHIJ-KLMNO-PQRST", "abcdefghijklmnopqrst",
        "abcde fghij klmno pqrst", "AbCdEfGhIj-KlMnO-pQrSt",
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        assert_int_equal(totp_recovery_normalise(same[i], canon, &err), 0);
        assert_string_equal(canon, "abcdefghijklmnopqrst");
    }
    static const char *const bad[] = {
        "", "abcde-fghij-klmno-pqrs", "abcde-fghij-klmno-pqrstu", "abcde-fghij-klmno-pqrs1",
        "abcde-fghij-klmno-pqrs0", "abcde-fghij-klmno-pqrs8", "abcde_fghij_klmno_pqrst",
        "abcde-fghij-klmno-pqrs=", "abcde-fghij-klmno-pqrs\xc3\xa9", "123456",
        "abcde-fghij-klmno-pqrst-abcde",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ff_err_clear(&err);
        assert_int_equal(totp_recovery_normalise(bad[i], canon, &err), FF_EINVAL);
        assert_non_null(strstr(err.msg, "recovery code"));
    }
}

/* ---- db_2fa.c: the stored state and its compare-and-set updates ---------- */

/* A fake stored password hash: the database never looks inside it. */
#define PASSWORD_HASH "$scrypt$ln=1,r=1,p=1$AAAA$AAAA"
#define SECRET_A "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#define SECRET_B "MZXW6YTBOIMZXW6YTBOIMZXW6YTBOIMZ"

struct fixture {
    char dir[64];
    char path[128];
    struct db *db;
    int64_t bob, carol;
};

static int db_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/ff-builder-2fa-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_true((size_t)snprintf(f->path, sizeof(f->path), "%s/b.db", f->dir) <
                sizeof(f->path));
    struct ff_err err;
    assert_int_equal(db_open(f->path, &f->db, &err), 0);
    assert_int_equal(db_user_create(f->db, "bob", PASSWORD_HASH, ROLE_USER, &f->bob, &err), 0);
    assert_int_equal(db_user_create(f->db, "carol", PASSWORD_HASH, ROLE_USER, &f->carol, &err),
                     0);
    *state = f;
    return 0;
}

static int db_teardown(void **state)
{
    struct fixture *f = *state;
    db_free(f->db);
    static const char *const files[] = {"b.db", "b.db-wal", "b.db-shm"};
    char p[160];
    for (size_t i = 0; i < 3; i++) {
        (void)snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static const char *const test_codes[] = {
    "aaaaa-aaaaa-aaaaa-aaaaa", "bbbbb-bbbbb-bbbbb-bbbbb", "ccccccccccccccccccccc",
};

/* Enrols SECRET_A for user and enables it with step 100 and two codes. */
static void enable_a(struct fixture *f, int64_t user)
{
    struct ff_err err;
    assert_int_equal(db_2fa_enrol(f->db, user, SECRET_A, &err), 0);
    assert_int_equal(db_2fa_enable(f->db, user, SECRET_A, 100, 1000, test_codes, 2, &err), 0);
}

static void test_db_enrol_and_enable(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct totp_state st;
    assert_int_equal(db_2fa_get(f->db, f->bob, &st, &err), 0);
    assert_false(st.enabled);
    assert_string_equal(st.secret, "");
    assert_int_equal(st.last_step, -1);
    assert_int_equal(db_2fa_get(f->db, 999, &st, &err), FF_ENOTFOUND);
    /* Pending: re-enrolling replaces the secret; enabling needs the
     * current one. */
    assert_int_equal(db_2fa_enrol(f->db, f->bob, SECRET_A, &err), 0);
    assert_int_equal(db_2fa_enrol(f->db, f->bob, SECRET_B, &err), 0);
    assert_int_equal(db_2fa_enable(f->db, f->bob, SECRET_A, 100, 1000, test_codes, 2, &err),
                     FF_ECONFLICT);
    /* A malformed recovery code rolls the whole enable back. */
    assert_int_equal(db_2fa_enable(f->db, f->bob, SECRET_B, 100, 1000, test_codes, 3, &err),
                     FF_EINVAL);
    assert_int_equal(db_2fa_get(f->db, f->bob, &st, &err), 0);
    assert_false(st.enabled);
    assert_int_equal(st.last_step, -1);
    assert_int_equal(db_2fa_enable(f->db, f->bob, SECRET_B, 100, 1000, test_codes, 2, &err),
                     0);
    assert_int_equal(db_2fa_get(f->db, f->bob, &st, &err), 0);
    assert_true(st.enabled);
    assert_string_equal(st.secret, SECRET_B);
    assert_int_equal(st.last_step, 100);
    /* Enabled: neither enrol nor a second enable may change it. */
    assert_int_equal(db_2fa_enrol(f->db, f->bob, SECRET_A, &err), FF_ECONFLICT);
    assert_int_equal(db_2fa_enable(f->db, f->bob, SECRET_B, 101, 1000, test_codes, 2, &err),
                     FF_ECONFLICT);
    assert_int_equal(db_2fa_get(f->db, f->bob, &st, &err), 0);
    assert_string_equal(st.secret, SECRET_B);
    /* Only hashes are stored: no row holds a code. */
    sqlite3_stmt *q = NULL;
    assert_int_equal(ff_db_prepare(db_handle(f->db), "SELECT count(*) FROM recovery_codes "
                                   "WHERE hash LIKE '%aaaa%' OR hash LIKE '%bbbb%'", &q, &err),
                     0);
    assert_int_equal(ff_db_step(q, &err), 1);
    assert_int_equal(sqlite3_column_int64(q, 0), 0);
    ff_db_finalize(db_handle(f->db), q);
}

static void test_db_step_is_used_once(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    enable_a(f, f->bob);
    /* The step the enable used, and older ones, are spent. */
    assert_int_equal(db_2fa_step_use(f->db, f->bob, SECRET_A, 100, &err), FF_EAUTH);
    assert_int_equal(db_2fa_step_use(f->db, f->bob, SECRET_A, 99, &err), FF_EAUTH);
    assert_int_equal(db_2fa_step_use(f->db, f->bob, SECRET_A, 101, &err), 0);
    assert_int_equal(db_2fa_step_use(f->db, f->bob, SECRET_A, 101, &err), FF_EAUTH);
    assert_string_equal(err.msg, "two-factor code is wrong or already used");
    /* Only for the enabled secret, and only for that user. */
    assert_int_equal(db_2fa_step_use(f->db, f->bob, SECRET_B, 102, &err), FF_EAUTH);
    assert_int_equal(db_2fa_step_use(f->db, f->carol, SECRET_A, 102, &err), FF_EAUTH);
    assert_int_equal(db_2fa_step_use(f->db, f->bob, SECRET_A, 103, &err), 0);
}

struct race {
    struct db *db;
    int64_t user;
    int64_t step;
    pthread_barrier_t *go;
    int rc;
};

static void *race_step(void *arg)
{
    struct race *r = arg;
    struct ff_err err;
    (void)pthread_barrier_wait(r->go);
    r->rc = db_2fa_step_use(r->db, r->user, SECRET_A, r->step, &err);
    return NULL;
}

/* Threads (each with its own SQLite connection) spending the same step at
 * once: exactly one wins, every time. */
static void test_db_step_race(void **state)
{
    struct fixture *f = *state;
    enable_a(f, f->bob);
    enum { THREADS = 4, ROUNDS = 25 };
    for (int64_t round = 0; round < ROUNDS; round++) {
        pthread_barrier_t go;
        assert_int_equal(pthread_barrier_init(&go, NULL, THREADS), 0);
        pthread_t t[THREADS];
        struct race r[THREADS];
        for (int i = 0; i < THREADS; i++) {
            r[i] = (struct race){f->db, f->bob, 200 + round, &go, 1};
            assert_int_equal(pthread_create(&t[i], NULL, race_step, &r[i]), 0);
        }
        int won = 0;
        for (int i = 0; i < THREADS; i++) {
            assert_int_equal(pthread_join(t[i], NULL), 0);
            assert_true(r[i].rc == 0 || r[i].rc == FF_EAUTH);
            won += r[i].rc == 0;
        }
        (void)pthread_barrier_destroy(&go);
        assert_int_equal(won, 1);
    }
}

static void test_db_recovery_codes(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    enable_a(f, f->bob);
    int64_t left = -1;
    /* Another user's code is nobody else's. */
    assert_int_equal(db_2fa_recovery_use(f->db, f->carol, test_codes[0], 2000, &left, &err),
                     FF_EAUTH);
    assert_int_equal(db_2fa_recovery_use(f->db, f->bob, "AAAAAAAAAAAAAAAAAAAA", 2000, &left,
                                         &err), 0);
    assert_int_equal(left, 1);
    assert_int_equal(db_2fa_recovery_use(f->db, f->bob, test_codes[0], 2001, &left, &err),
                     FF_EAUTH);
    assert_string_equal(err.msg, "recovery code is wrong or already used");
    assert_int_equal(db_2fa_recovery_use(f->db, f->bob, "ddddd-ddddd-ddddd-ddddd", 2001, NULL,
                                         &err), FF_EAUTH);
    assert_int_equal(db_2fa_recovery_use(f->db, f->bob, "not a code", 2001, NULL, &err),
                     FF_EINVAL);
    assert_int_equal(db_2fa_recovery_use(f->db, f->bob, test_codes[1], 2002, &left, &err), 0);
    assert_int_equal(left, 0);
}

static void test_db_disable(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    assert_int_equal(db_2fa_disable(f->db, f->bob, &err), FF_ECONFLICT);
    /* Pending is not enabled either. */
    assert_int_equal(db_2fa_enrol(f->db, f->carol, SECRET_A, &err), 0);
    assert_int_equal(db_2fa_disable(f->db, f->carol, &err), FF_ECONFLICT);
    enable_a(f, f->bob);
    assert_int_equal(db_2fa_disable(f->db, f->bob, &err), 0);
    struct totp_state st;
    assert_int_equal(db_2fa_get(f->db, f->bob, &st, &err), 0);
    assert_false(st.enabled);
    assert_string_equal(st.secret, "");
    assert_int_equal(st.last_step, -1);
    assert_int_equal(db_2fa_recovery_use(f->db, f->bob, test_codes[0], 3000, NULL, &err),
                     FF_EAUTH);
    assert_int_equal(db_2fa_step_use(f->db, f->bob, SECRET_A, 500, &err), FF_EAUTH);
    /* And it can be enrolled and enabled again from scratch. */
    enable_a(f, f->bob);
    assert_int_equal(db_2fa_recovery_use(f->db, f->bob, test_codes[0], 3001, NULL, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base32_rfc4648_vectors),
        cmocka_unit_test(test_base32_malformed),
        cmocka_unit_test(test_base32_round_trip),
        cmocka_unit_test(test_hotp_rfc4226_vectors),
        cmocka_unit_test(test_totp_rfc6238_vectors),
        cmocka_unit_test(test_hotp_bad_arguments),
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_verify_window_and_replay),
        cmocka_unit_test(test_malformed_codes),
        cmocka_unit_test(test_uri),
        cmocka_unit_test(test_recovery_codes),
        cmocka_unit_test_setup_teardown(test_db_enrol_and_enable, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_db_step_is_used_once, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_db_step_race, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_db_recovery_codes, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_db_disable, db_setup, db_teardown),
    };
    return cmocka_run_group_tests_name("builder/totp", tests, NULL, NULL);
}
