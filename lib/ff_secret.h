/* Secrets: random tokens, API-key hashing, scrypt password hashing,
 * constant-time comparison and wiping.
 *
 * API keys and tokens are 32 random bytes behind a short type prefix
 * ("ffu_…" user, "ffd_…" device, "ffw_…" worker) so a leaked one can be
 * recognised by secret scanners; only their SHA-256 is stored, which is
 * enough because 256 random bits cannot be guessed. Passwords are chosen by
 * people, so they are stored as scrypt hashes in a self-describing string:
 *
 *   $scrypt$ln=15,r=8,p=1$<salt, base64>$<hash, base64>
 *
 * (standard base64 alphabet with padding). Everything here goes through
 * OpenSSL 3. */
#ifndef FF_SECRET_H
#define FF_SECRET_H

#include "ff_err.h"

#include <stdbool.h>
#include <stddef.h>

/* SHA-256 in lower-case hex: 64 characters and a NUL. */
#define FF_SECRET_HASH_HEX_SIZE 65
/* Random bytes in a token: 256 bits, beyond any guessing or collision. */
#define FF_SECRET_TOKEN_BYTES 32
/* Longest token prefix: a short type tag, not a place for data. */
#define FF_SECRET_PREFIX_MAX 8

/* Shortest password accepted when setting one (NIST SP 800-63B asks for at
 * least 8; 12 keeps offline guessing of a stolen hash expensive). */
#define FF_SECRET_PASSWORD_MIN 12
/* Longest password accepted: long passphrases fit, while a megabyte of
 * "password" cannot be used to make scrypt's input hashing expensive. */
#define FF_SECRET_PASSWORD_MAX 1024

/* Default scrypt cost: N = 2^15, r = 8, p = 1 is 32 MiB and about 0.1 s per
 * hash, the interactive-login setting of the scrypt paper and RFC 7914. */
#define FF_SECRET_SCRYPT_LN 15
#define FF_SECRET_SCRYPT_R 8
#define FF_SECRET_SCRYPT_P 1
/* Upper bounds on parameters read back from a stored hash, so that a
 * hostile or corrupt stored string cannot make a verification use
 * gigabytes or minutes. */
#define FF_SECRET_SCRYPT_LN_MAX 20
#define FF_SECRET_SCRYPT_R_MAX 32
#define FF_SECRET_SCRYPT_P_MAX 16
/* Memory one scrypt computation may use (about 128 * r * N bytes): room to
 * raise the default cost fourfold, while combinations of the bounds above
 * that would need more (2^20 * 32 is 4 GiB) are refused. */
#define FF_SECRET_SCRYPT_MEM_MAX (256u << 20)
/* Salt length for new hashes: 128 bits makes every salt unique. */
#define FF_SECRET_SALT_SIZE 16
/* Longest salt accepted from a stored hash. */
#define FF_SECRET_SALT_MAX 64
/* Derived key length for new hashes: 256 bits. */
#define FF_SECRET_SCRYPT_KEY_SIZE 32
/* Range of derived key lengths accepted from a stored hash: shorter would
 * weaken the check, longer buys nothing. */
#define FF_SECRET_SCRYPT_KEY_MIN 16
#define FF_SECRET_SCRYPT_KEY_MAX 64

/* Fills out with n bytes from OpenSSL's CSPRNG. Returns 0 or FF_ECRYPTO. */
int ff_secret_random(unsigned char *out, size_t n, struct ff_err *err);

/* Makes a new token "<prefix>_<base64url of 32 random bytes>" and the
 * SHA-256 hex of the whole token, which is what gets stored. prefix must be
 * 1 to FF_SECRET_PREFIX_MAX characters of [a-z0-9]. On success *out_token
 * belongs to the caller, who frees it with ff_secret_free. Returns 0,
 * FF_EINVAL (bad prefix), FF_ENOMEM or FF_ECRYPTO. */
int ff_secret_token_new(const char *prefix, char **out_token,
                        char out_hash_hex[FF_SECRET_HASH_HEX_SIZE], struct ff_err *err);

/* Writes the SHA-256 hex of token (the stored form of a token) to
 * out_hash_hex. Should hashing fail (out of memory inside OpenSSL),
 * out_hash_hex is the empty string, which matches no stored hash. */
void ff_secret_token_hash(const char *token, char out_hash_hex[FF_SECRET_HASH_HEX_SIZE]);

/* Hashes password with scrypt at the default cost and a fresh random salt.
 * On success *out_encoded is the self-describing string above, owned by the
 * caller (free with free() or ff_secret_free). Returns 0, FF_EINVAL
 * (password shorter than FF_SECRET_PASSWORD_MIN or longer than
 * FF_SECRET_PASSWORD_MAX bytes), FF_ENOMEM or FF_ECRYPTO. */
int ff_secret_password_hash(const char *password, char **out_encoded, struct ff_err *err);

/* The same with an explicit cost N = 2^ln, r, p (tests use cheap ones).
 * The cost must lie within 1 <= ln <= FF_SECRET_SCRYPT_LN_MAX,
 * 1 <= r <= FF_SECRET_SCRYPT_R_MAX, 1 <= p <= FF_SECRET_SCRYPT_P_MAX and
 * FF_SECRET_SCRYPT_MEM_MAX, else FF_ERANGE. */
int ff_secret_password_hash_cost(const char *password, unsigned ln, unsigned r, unsigned p,
                                 char **out_encoded, struct ff_err *err);

/* Checks password against a string made by ff_secret_password_hash; the
 * final comparison is constant time. Returns 0 on a match, FF_EAUTH on a
 * mismatch, FF_EINVAL when encoded is malformed or its cost is outside the
 * bounds above (or password is longer than FF_SECRET_PASSWORD_MAX), and
 * FF_ENOMEM or FF_ECRYPTO when the computation fails. */
int ff_secret_password_verify(const char *password, const char *encoded, struct ff_err *err);

/* Compares n bytes in time that does not depend on their content. */
bool ff_secret_equal(const void *a, const void *b, size_t n);

/* Compares two C strings in time that depends only on their lengths (a
 * length difference may be revealed, the content is not). NULL equals
 * nothing, not even NULL. */
bool ff_secret_str_equal(const char *a, const char *b);

/* Overwrites n bytes at p with zeros in a way the compiler cannot drop. */
void ff_secret_wipe(void *p, size_t n);

/* Wipes strlen(s) bytes of s, then frees it. NULL-safe. */
void ff_secret_free(char *s);

#endif
