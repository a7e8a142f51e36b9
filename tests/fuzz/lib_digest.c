/* Digest string parsing on hostile bytes; a parsed digest must format back
 * to exactly the input (one spelling per digest). */
#include "ff_digest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ff_digest d;
    if (ff_digest_parse((const char *)data, size, &d, NULL) != 0)
        return 0;
    char s[FF_DIGEST_STR_SIZE];
    ff_digest_format(&d, s);
    if (size != strlen(s) || memcmp(s, data, size) != 0)
        abort();
    return 0;
}
