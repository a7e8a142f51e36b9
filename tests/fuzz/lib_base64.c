/* Strict base64 decoding: whatever decodes must encode back to the input. */
#include "ff_base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, bool url)
{
    unsigned char *out = NULL;
    size_t n = 0;
    if (ff_base64_decode((const char *)data, size, url, &out, &n) != 0)
        return;
    char *again = ff_base64_encode_new(out, n, url);
    if (again == NULL || strlen(again) != size || memcmp(again, data, size) != 0)
        abort();
    free(again);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, false);
    check(data, size, true);
    return 0;
}
