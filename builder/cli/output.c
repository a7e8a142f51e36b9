/* What a command prints: the server's JSON with --json (for scripts),
 * else a table or a record (for people). */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>

int out_json(struct cli *c, const json_t *v, struct ff_err *err)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (text == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = fputs(text, c->out) == EOF || fputc('\n', c->out) == EOF ? FF_EIO : 0;
    free(text);
    return rc != 0 ? ff_err_set(err, FF_EIO, "cannot write the output") : 0;
}

int out_record(struct cli *c, const json_t *v, const struct table_col *fields, size_t n,
               struct ff_err *err)
{
    if (c->json)
        return out_json(c, v, err);
    return table_print_record(c->out, fields, n, v, err);
}

int out_list(struct cli *c, const json_t *page, const struct table_col *cols, size_t n,
             struct ff_err *err)
{
    if (c->json)
        return out_json(c, page, err);
    return table_print(c->out, cols, n, json_object_get(page, "items"), err);
}

int out_line(struct cli *c, struct ff_err *err, const char *fmt, ...)
{
    if (c->json)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(c->out, fmt, ap);
    va_end(ap);
    if (n < 0 || fputc('\n', c->out) == EOF)
        return ff_err_set(err, FF_EIO, "cannot write the output");
    return 0;
}
