/* pkt-line framing on hostile bytes: a session's first reader. The input
 * is read as pkt-lines in reads of varying size (the first byte picks the
 * chunk), with raw reads after a flush as receive-pack does for the pack. */
#include "gitd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *data;
    size_t size;
    size_t pos;
    size_t chunk;
};

static ssize_t input_read(void *ctx, void *buf, size_t n)
{
    struct input *in = ctx;
    size_t left = in->size - in->pos;
    if (n > left)
        n = left;
    if (n > in->chunk)
        n = in->chunk;
    memcpy(buf, in->data + in->pos, n);
    in->pos += n;
    return (ssize_t)n;
}

static int discard(void *ctx, const void *buf, size_t n)
{
    (void)ctx;
    (void)buf;
    (void)n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct input in = {data + 1, size - 1, 0, (size_t)data[0] % 64 + 1};
    struct gitd_stream s = {.read = input_read, .write = discard, .write_err = discard, .ctx = &in};
    struct pktline p;
    if (pktline_init(&p, &s, NULL) != 0)
        return 0;
    int flushes = 0;
    for (;;) {
        enum pktline_kind kind;
        size_t len;
        if (pktline_read(&p, &kind, &len, NULL) != 0 || kind == PKTLINE_EOF)
            break;
        if (len > PKTLINE_DATA_MAX || (kind == PKTLINE_DATA && p.line[len] != '\0') ||
            (kind != PKTLINE_DATA && len != 0))
            abort();
        if (kind == PKTLINE_FLUSH && ++flushes == 2) {
            unsigned char buf[100];
            size_t n;
            while (pktline_read_raw(&p, buf, sizeof(buf), &n, NULL) == 0 && n > 0)
                ;
            break;
        }
    }
    if (size >= 4) {
        enum pktline_kind kind;
        size_t len;
        if (pktline_parse_length(data, &kind, &len, NULL) == 0 && len > PKTLINE_DATA_MAX)
            abort();
    }
    struct progress pr = {.pkt = &p, .quiet = false};
    p.sideband = data[0] & 1;
    pktline_progress(&pr, "%.*s", (int)(size > 200 ? 200 : size), (const char *)data);
    pktline_release(&p);
    return 0;
}
