/* The two-factor parsers on hostile bytes: base32 secrets, TOTP codes and
 * recovery codes as clients type them (login "otp", /v1/2fa "code").
 * Whatever they accept must hold the invariants the handlers rely on, and
 * base32 must have exactly one spelling per value. */
#include "builder.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool b32_lower_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

static void check_base32(const char *in, size_t size)
{
    size_t cap = size / 8 * 5 + 5;
    unsigned char *out = malloc(cap);
    char *again = malloc(totp_base32_encoded_size(cap));
    if (out == NULL || again == NULL)
        abort();
    size_t len = 0;
    if (totp_base32_decode(in, size, out, cap, &len, NULL) == 0) {
        /* One spelling: encoding the value again gives the input back. */
        bool pad = size > 0 && in[size - 1] == '=';
        size_t n = totp_base32_encode(out, len, pad, again);
        if (n != size || memcmp(again, in, size) != 0)
            abort();
        /* A smaller buffer is refused as too small, never overrun. */
        unsigned char small[TOTP_SECRET_BYTES];
        size_t slen = 0;
        int rc = totp_base32_decode(in, size, small, sizeof(small), &slen, NULL);
        if (len > sizeof(small) ? rc != FF_ETOOBIG : (rc != 0 || slen != len))
            abort();
        /* A decodable secret of a usable size gives a code in range. */
        uint32_t code = 0;
        if (len >= 1 && len <= TOTP_SECRET_MAX &&
            (totp_hotp(out, len, 1, TOTP_DIGITS, &code, NULL) != 0 || code >= 1000000))
            abort();
    }
    free(again);
    free(out);
}

static void check_codes(const char *s)
{
    bool totp = totp_code_check(s, NULL) == 0;
    if (totp) {
        if (strlen(s) != TOTP_DIGITS)
            abort();
        for (size_t i = 0; i < TOTP_DIGITS; i++) {
            if (s[i] < '0' || s[i] > '9')
                abort();
        }
    }
    static const unsigned char key[] = "12345678901234567890";
    int64_t step = 0;
    int rc = totp_verify(key, 20, s, 1111111111, -1, &step, NULL);
    if ((rc == FF_EINVAL) == totp)
        abort();
    if (rc == 0 && (step < totp_step(1111111111) - TOTP_WINDOW ||
                    step > totp_step(1111111111) + TOTP_WINDOW))
        abort();
    char canon[RECOVERY_CODE_CHARS + 1];
    bool recovery = totp_recovery_normalise(s, canon, NULL) == 0;
    if (recovery) {
        if (strlen(canon) != RECOVERY_CODE_CHARS)
            abort();
        for (size_t i = 0; i < RECOVERY_CODE_CHARS; i++) {
            if (!b32_lower_char(canon[i]))
                abort();
        }
        char twice[RECOVERY_CODE_CHARS + 1];
        if (totp_recovery_normalise(canon, twice, NULL) != 0 || strcmp(canon, twice) != 0)
            abort();
    }
    if ((api_2fa_code_shape(s, "otp", NULL) == 0) != (totp || recovery))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_base32((const char *)data, size);
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    check_codes(s);
    free(s);
    return 0;
}
