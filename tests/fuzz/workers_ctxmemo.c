/* The context digest memo read back from its cache file, which may be
 * truncated, corrupted or not ours. Each input is parsed as it is, and
 * again with a valid trailing checksum appended so the record parser is
 * reached. Invariants: no crash; whatever parses serialises and parses
 * back to the same number of entries; a memo never exceeds its caps. */
#include "worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const void *p, size_t len)
{
    struct context_memo *m = NULL;
    if (context_memo_parse(p, len, &m, NULL) != 0)
        abort();
    size_t n = context_memo_count(m);
    if (n > CONTEXT_MEMO_ENTRIES_MAX)
        abort();
    void *img = NULL;
    size_t img_len = 0;
    if (context_memo_image(m, &img, &img_len, NULL) != 0)
        abort();
    struct context_memo *again = NULL;
    if (context_memo_parse(img, img_len, &again, NULL) != 0 || context_memo_count(again) != n)
        abort();
    context_memo_free(again);
    context_memo_free(m);
    free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    unsigned char *sealed = malloc(size + FF_DIGEST_SIZE);
    if (sealed == NULL)
        abort();
    memcpy(sealed, data, size);
    struct ff_digest d;
    if (ff_digest_buffer(data, size, &d, NULL) != 0)
        abort();
    memcpy(sealed + size, d.bytes, FF_DIGEST_SIZE);
    check(sealed, size + FF_DIGEST_SIZE);
    free(sealed);
    return 0;
}
