/* What the ff client reads from outside: key=value files (var/farm.env,
 * --env-file, its config) and the builder's JSON answers it prints as
 * tables. The first byte picks the parser. Whatever the server sends, a
 * printed cell holds no control character and no invalid UTF-8, so it
 * cannot drive the user's terminal. */
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count_pair(void *ctx, const char *key, const char *value, unsigned line,
                      struct ff_err *err)
{
    (void)err;
    if (key == NULL || value == NULL || line == 0 || key[0] == '\0')
        abort();
    (*(size_t *)ctx)++;
    return 0;
}

/* True when s is valid UTF-8 without C0, DEL or C1 control characters. */
static bool printable(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0)
            return false;
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
        }
        if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
            return false;
        p += n;
    }
    return true;
}

static void check_table(const char *text)
{
    json_t *items = json_loads(text, JSON_DECODE_ANY, NULL);
    if (items == NULL)
        return;
    static const struct table_col cols[] = {
        {"NAME", "name", NULL, TABLE_TEXT},
        {"APP", "owner", "name", TABLE_TEXT},
        {"CREATED", "created", NULL, TABLE_TIME},
    };
    size_t n = sizeof(cols) / sizeof(cols[0]);
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        for (size_t c = 0; c < n; c++) {
            char *cell = NULL;
            if (table_cell(item, &cols[c], &cell, NULL) == 0) {
                if (!printable(cell))
                    abort();
                free(cell);
            }
        }
    }
    FILE *sink = fopen("/dev/null", "w");
    if (sink == NULL)
        abort();
    if (json_is_array(items))
        (void)table_print(sink, cols, n, items, NULL);
    else if (json_is_object(items))
        (void)table_print_record(sink, cols, n, items, NULL);
    (void)fclose(sink);
    json_decref(items);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *s = malloc(size);
    if (s == NULL)
        abort();
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    if (data[0] & 1) {
        size_t pairs = 0;
        (void)config_parse_kv(s, "fuzz.env", count_pair, &pairs, NULL);
    } else {
        check_table(s);
        char *clean = table_clean(s);
        if (clean == NULL || !printable(clean))
            abort();
        free(clean);
    }
    free(s);
    return 0;
}
