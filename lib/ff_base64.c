#include "ff_base64.h"

#include "ff_err.h"

#include <stdint.h>
#include <stdlib.h>

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t ff_base64_encoded_size(size_t n)
{
    return (n + 2) / 3 * 4 + 1;
}

size_t ff_base64_encode(const unsigned char *in, size_t n, char *out, bool url)
{
    const char *a = url ? url_alphabet : std_alphabet;
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    size_t rest = n - i;
    if (rest > 0) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (rest == 2)
            v |= (uint32_t)in[i + 1] << 8;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (rest == 2)
            out[o++] = a[v >> 6 & 63];
        if (!url) {
            if (rest == 1)
                out[o++] = '=';
            out[o++] = '=';
        }
    }
    out[o] = '\0';
    return o;
}

char *ff_base64_encode_new(const unsigned char *in, size_t n, bool url)
{
    char *out = malloc(ff_base64_encoded_size(n));
    if (out != NULL)
        ff_base64_encode(in, n, out, url);
    return out;
}

static int b64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int ff_base64_decode(const char *in, size_t len, bool url, unsigned char **out,
                     size_t *outlen)
{
    size_t data_len = len;
    if (!url) {
        if (len % 4 != 0)
            return FF_EINVAL;
        if (len > 0 && in[len - 1] == '=')
            data_len--;
        if (len > 1 && in[len - 2] == '=')
            data_len--;
    }
    if (data_len % 4 == 1)
        return FF_EINVAL;
    size_t n = data_len / 4 * 3 + (data_len % 4 == 0 ? 0 : data_len % 4 - 1);
    unsigned char *buf = malloc(n + 1);
    if (buf == NULL)
        return FF_ENOMEM;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < data_len; i++) {
        int v = b64_value(in[i], url);
        if (v < 0)
            goto fail;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    /* Leftover bits must be zero, or two strings would decode alike. */
    if ((acc & ((1u << bits) - 1)) != 0)
        goto fail;
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
fail:
    free(buf);
    return FF_EINVAL;
}
