/* Human output: aligned tables and records from the server's JSON.
 * Everything the server sends is cleaned before it reaches the terminal:
 * a name holding an escape sequence must not be able to rewrite the
 * screen or hide a line. */
#include "cli.h"

#include "ff_buf.h"
#include "ff_json.h"
#include "ff_secret.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest line printed: a cell can be as long as a response. */
#define TABLE_LINE_MAX CLI_RESPONSE_MAX
/* Spaces between columns. */
#define TABLE_GAP 2

int table_time(int64_t t, char out[TABLE_TIME_SIZE])
{
    /* Years 0..9999 keep the fixed width of ISO 8601's basic form. */
    if (t < -62167219200LL || t > 253402300799LL)
        return FF_ERANGE;
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL)
        return FF_ERANGE;
    if (strftime(out, TABLE_TIME_SIZE, "%Y-%m-%dT%H:%M:%SZ", &tm) != TABLE_TIME_SIZE - 1)
        return FF_ERANGE;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char b = s[0];
    if (b < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return n;
}

char *table_clean(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p != '\0') {
        size_t k = utf8_len(p);
        /* C0 controls, DEL, and C1 controls (U+0080..U+009F = C2 80..9F). */
        bool control = (k == 1 && (*p < 0x20 || *p == 0x7f)) || (k == 2 && p[0] == 0xC2 &&
                                                                 p[1] < 0xA0);
        if (k == 0 || control) {
            out[o++] = '?';
            p += k > 0 ? k : 1;
            continue;
        }
        memcpy(out + o, p, k);
        o += k;
        p += k;
    }
    out[o] = '\0';
    return out;
}

size_t table_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xC0) != 0x80)
            w++;
    }
    return w;
}

/* Text of one scalar (or, compactly, of anything else) into b. */
static int value_text(struct ff_buf *b, const json_t *v, enum table_kind kind)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_STRING: return ff_buf_append(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        if (kind == TABLE_TIME && table_time((int64_t)json_integer_value(v), num) == 0)
            return ff_buf_append_str(b, num);
        return ff_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL: return ff_buf_printf(b, "%g", json_real_value(v));
    case JSON_TRUE: return ff_buf_append_str(b, "yes");
    case JSON_FALSE: return ff_buf_append_str(b, "no");
    case JSON_NULL: return ff_buf_append_str(b, "-");
    case JSON_ARRAY: {
        size_t i;
        json_t *item;
        int rc = 0;
        json_array_foreach(v, i, item) {
            if (rc == 0 && i > 0)
                rc = ff_buf_append_str(b, ",");
            if (rc == 0)
                rc = json_is_array(item) ? FF_EINVAL : value_text(b, item, kind);
        }
        if (rc == FF_EINVAL) {
            char *dump = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
            ff_buf_reset(b);
            rc = dump != NULL ? ff_buf_append_str(b, dump) : FF_ENOMEM;
            free(dump);
        }
        return rc;
    }
    case JSON_OBJECT:
    default: {
        char *dump = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        int rc = dump != NULL ? ff_buf_append_str(b, dump) : FF_ENOMEM;
        free(dump);
        return rc;
    }
    }
}

int table_cell(const json_t *obj, const struct table_col *col, char **out, struct ff_err *err)
{
    struct ff_buf b;
    ff_buf_init(&b, TABLE_LINE_MAX);
    const json_t *v = json_object_get(obj, col->key);
    int rc = value_text(&b, v != NULL ? v : json_null(), col->kind);
    if (rc == 0 && col->key2 != NULL) {
        const json_t *v2 = json_object_get(obj, col->key2);
        rc = ff_buf_append_str(&b, "/");
        if (rc == 0)
            rc = value_text(&b, v2 != NULL ? v2 : json_null(), col->kind);
    }
    char *raw = rc == 0 ? ff_buf_steal(&b) : NULL;
    ff_buf_release(&b);
    *out = raw != NULL ? table_clean(raw) : NULL;
    /* A cell may be a token shown once: leave no copy behind. */
    ff_secret_free(raw);
    if (*out == NULL)
        return ff_err_set(err, rc == FF_ETOOBIG ? FF_ETOOBIG : FF_ENOMEM,
                          "cannot format field \"%s\"", col->key);
    return 0;
}

/* Writes line without trailing spaces, and a newline. */
static int line_flush(FILE *f, struct ff_buf *line, struct ff_err *err)
{
    size_t n = line->len;
    while (n > 0 && line->data[n - 1] == ' ')
        n--;
    if ((n > 0 && fwrite(line->data, 1, n, f) != n) || fputc('\n', f) == EOF)
        return ff_err_set(err, FF_EIO, "cannot write the output");
    ff_buf_reset(line);
    return 0;
}

/* Appends text and enough spaces to fill width columns plus the gap. */
static int line_cell(struct ff_buf *line, const char *text, size_t width)
{
    int rc = ff_buf_append_str(line, text);
    for (size_t w = table_width(text); rc == 0 && w < width + TABLE_GAP; w++)
        rc = ff_buf_append(line, " ", 1);
    return rc;
}

int table_print(FILE *f, const struct table_col *cols, size_t n, const json_t *items,
                struct ff_err *err)
{
    size_t rows = json_array_size(items), cells_n = 0;
    if (!json_is_array(items))
        return ff_err_set(err, FF_EINVAL, "the server's list is not an array");
    if (__builtin_mul_overflow(rows, n, &cells_n) || cells_n > SIZE_MAX / sizeof(char *))
        return ff_err_set(err, FF_ETOOBIG, "the list is too large to print");
    char **cells = calloc(cells_n > 0 ? cells_n : 1, sizeof(*cells));
    size_t *width = calloc(n > 0 ? n : 1, sizeof(*width));
    struct ff_buf line;
    ff_buf_init(&line, TABLE_LINE_MAX);
    int rc = 0;
    if (cells == NULL || width == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t c = 0; c < n; c++)
        width[c] = table_width(cols[c].title);
    for (size_t r = 0; r < rows && rc == 0; r++) {
        const json_t *item = json_array_get(items, r);
        if (!json_is_object(item)) {
            rc = ff_err_set(err, FF_EINVAL, "item %zu of the server's list is %s, not an object",
                            r + 1, ff_json_type_name(item));
            break;
        }
        for (size_t c = 0; c < n && rc == 0; c++) {
            rc = table_cell(item, &cols[c], &cells[r * n + c], err);
            if (rc == 0 && table_width(cells[r * n + c]) > width[c])
                width[c] = table_width(cells[r * n + c]);
        }
    }
    for (size_t c = 0; c < n && rc == 0; c++)
        rc = line_cell(&line, cols[c].title, width[c]);
    if (rc == 0)
        rc = line_flush(f, &line, err);
    for (size_t r = 0; r < rows && rc == 0; r++) {
        for (size_t c = 0; c < n && rc == 0; c++)
            rc = line_cell(&line, cells[r * n + c], width[c]);
        if (rc == 0)
            rc = line_flush(f, &line, err);
    }
    if (rc == FF_ETOOBIG || rc == FF_ENOMEM)
        rc = ff_err_set(err, rc, "a line of the table is too long to print");
out:
    for (size_t i = 0; cells != NULL && i < cells_n; i++)
        free(cells[i]);
    free(cells);
    free(width);
    ff_buf_release(&line);
    return rc;
}

int table_print_record(FILE *f, const struct table_col *fields, size_t n, const json_t *obj,
                       struct ff_err *err)
{
    if (!json_is_object(obj))
        return ff_err_set(err, FF_EINVAL, "the server's answer is %s, not an object",
                          ff_json_type_name(obj));
    size_t width = 0;
    for (size_t i = 0; i < n; i++) {
        if (table_width(fields[i].title) + 1 > width)
            width = table_width(fields[i].title) + 1;
    }
    struct ff_buf line;
    ff_buf_init(&line, TABLE_LINE_MAX);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *cell = NULL;
        rc = table_cell(obj, &fields[i], &cell, err);
        if (rc != 0)
            break;
        rc = ff_buf_printf(&line, "%s:", fields[i].title);
        if (rc == 0)
            rc = line_cell(&line, "", width - table_width(fields[i].title) - 1);
        if (rc == 0)
            rc = ff_buf_append_str(&line, cell);
        ff_secret_free(cell);
        rc = rc == 0 ? line_flush(f, &line, err)
                     : ff_err_set(err, rc, "field \"%s\" is too long to print", fields[i].key);
    }
    if (line.data != NULL)
        ff_secret_wipe(line.data, line.cap);
    ff_buf_release(&line);
    return rc;
}
