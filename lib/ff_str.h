/* Small string and number helpers that the C library lacks or gets wrong:
 * a bounded copy (Debian has no strlcpy), range-checked number parsing (no
 * atoi), and hex encoding. */
#ifndef FF_STR_H
#define FF_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copies src into dst of size dstsize, always NUL-terminating when dstsize
 * > 0. Returns strlen(src); a result >= dstsize means it was truncated. */
size_t ff_strlcpy(char *dst, const char *src, size_t dstsize);

/* Parses the whole of s as a base-10 integer within [min, max]. Leading
 * spaces, signs on unsigned values, trailing text and empty strings are
 * refused. Returns 0, FF_EINVAL (not a number) or FF_ERANGE. */
int ff_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
int ff_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* Lower-case hex of n bytes into out, which must hold 2n+1 bytes. */
void ff_hex_encode(const unsigned char *in, size_t n, char *out);

/* Decodes exactly 2n hex digits (either case) from in into n bytes.
 * Returns 0 or FF_EINVAL. */
int ff_hex_decode(const char *in, size_t n, unsigned char *out);

/* True when s begins with prefix. */
bool ff_str_has_prefix(const char *s, const char *prefix);

/* Returns a malloc'd copy of the first n bytes of s plus a NUL, or NULL
 * when out of memory. The caller frees it. */
char *ff_strndup(const char *s, size_t n);

/* Room for a quoted value in a message: FF_STR_QUOTE_KEEP bytes of input
 * and "..." (enough to recognise a name or digest, short enough to leave
 * the rest of a message room). */
#define FF_STR_QUOTE_SIZE 80

/* Copies n bytes of s into out (FF_STR_QUOTE_SIZE bytes) for an error
 * message: printable ASCII other than '"' and '\' is kept, every other
 * byte becomes '?', so hostile input can neither break the quoting nor put
 * invalid UTF-8 into a JSON error body; longer input is cut with "...". */
void ff_str_quote(const char *s, size_t n, char out[FF_STR_QUOTE_SIZE]);

/* printf into a new malloc'd string that the caller frees; NULL on error. */
char *ff_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
