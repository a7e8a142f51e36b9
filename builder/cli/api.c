/* Requests to ff-builder's /v1 API: one client per run, JSON both ways,
 * the server's {"error":{"code","message"}} turned into an FF_E* code and
 * its message, and list pages followed to their end. */
#include "cli.h"

#include "ff_json.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_exit_status(int code)
{
    switch (code) {
    case 0: return CLI_EXIT_OK;
    case CLI_EUSAGE: return CLI_EXIT_USAGE;
    case FF_EAUTH:
    case FF_EEXPIRED: return CLI_EXIT_AUTH;
    case FF_ENOTFOUND: return CLI_EXIT_NOTFOUND;
    case FF_ENET:
    case FF_ETIMEOUT: return CLI_EXIT_NET;
    default: return CLI_EXIT_ERROR;
    }
}

static int client_get(struct cli *c, struct ff_err *err)
{
    if (c->http != NULL)
        return 0;
    struct ff_http_client_config hc;
    ff_http_client_config_init(&hc);
    hc.ca_file = c->cfg.ca;
    hc.timeout_ms = CLI_HTTP_TIMEOUT_MS;
    hc.max_retries = CLI_HTTP_RETRIES;
    hc.retry_after_max_ms = CLI_HTTP_RETRY_AFTER_MAX_MS;
    int rc = ff_http_client_new(&hc, &c->http, err);
    if (rc == FF_EIO)
        return ff_err_wrap(err, "CA file");
    return rc;
}

static int status_code(long status)
{
    switch (status) {
    case 400: return FF_EINVAL;
    case 401: return FF_EAUTH;
    case 403: return FF_EDENIED;
    case 404: return FF_ENOTFOUND;
    case 409: return FF_EEXIST;
    case 429: return FF_EBUSY;
    default: return FF_EIO;
    }
}

/* Turns an error answer into err (and code): the server's message when
 * the body is our JSON error document, else the bare status. */
static int error_answer(const struct cli *c, const struct api_req *r, long status,
                        const struct ff_buf *body, char code[CLI_CODE_SIZE], struct ff_err *err)
{
    json_t *doc = NULL, *e = NULL;
    const char *msg = NULL, *scode = NULL;
    struct ff_err perr;
    if (body->len > 0 &&
        ff_json_parse_object(body->data, body->len, CLI_RESPONSE_MAX, &doc, &perr) == 0 &&
        ff_json_get_object(doc, "error", true, &e, &perr) == 0) {
        (void)ff_json_get_string(e, "message", false, FF_ERR_MSG_MAX, &msg, &perr);
        (void)ff_json_get_string(e, "code", false, CLI_CODE_SIZE - 1, &scode, &perr);
    }
    if (code != NULL)
        ff_strlcpy(code, scode != NULL ? scode : "", CLI_CODE_SIZE);
    char *clean = msg != NULL ? table_clean(msg) : NULL;
    const char *hint = "";
    if (status == 401 && !r->anonymous)
        hint = c->cfg.token_source == CLI_TOKEN_ENV ? " (check FF_TOKEN)"
               : c->cfg.token_source == CLI_TOKEN_ENV_FILE ? " (check FF_ADMIN_TOKEN of the env file)"
               : " (log in again: ff login)";
    int rc;
    if (clean != NULL)
        rc = ff_err_set(err, status_code(status), "%s%s", clean, hint);
    else if (status == 501)
        rc = ff_err_set(err, FF_EIO, "the server does not implement %s %s yet (HTTP 501)",
                        r->method, r->path);
    else
        rc = ff_err_set(err, status_code(status), "the server answered HTTP %ld%s", status, hint);
    free(clean);
    json_decref(doc);
    return rc;
}

int api_do(struct cli *c, const struct api_req *r, json_t **out, char code[CLI_CODE_SIZE],
           struct ff_err *err)
{
    static const char *const json_headers[] = {"Accept: application/json",
                                               "Content-Type: application/json"};
    if (out != NULL)
        *out = NULL;
    if (code != NULL)
        code[0] = '\0';
    if (c->cfg.api_url == NULL)
        return ff_err_set(err, FF_EINVAL, "no API URL: set FF_API_URL, put api_url in %s/config, "
                          "or give --env-file", c->cfg.dir != NULL ? c->cfg.dir : "~/.config/ff");
    if (!r->anonymous && c->cfg.token == NULL)
        return ff_err_set(err, FF_EAUTH, "not logged in: run ff login, or set FF_TOKEN");
    char *url = NULL, *body = NULL;
    size_t body_len = 0;
    struct ff_buf resp_body;
    struct ff_http_client_response resp = {0};
    ff_buf_init(&resp_body, CLI_RESPONSE_MAX);
    int rc = client_get(c, err);
    if (rc != 0)
        goto out;
    url = ff_asprintf("%s%s", c->cfg.api_url, r->path);
    if (url == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    if (r->body != NULL && (rc = ff_json_dump(r->body, &body, &body_len, err)) != 0)
        goto out;
    struct ff_http_client_request req = {
        .method = r->method,
        .url = url,
        .headers = json_headers,
        .n_headers = r->body != NULL ? 2 : 1,
        .auth = r->anonymous ? FF_HTTP_AUTH_NONE : FF_HTTP_AUTH_BEARER,
        .token = r->anonymous ? NULL : c->cfg.token,
        .body = body,
        .body_len = body_len,
        .resp_body = &resp_body,
    };
    rc = ff_http_client_do(c->http, &req, &resp, err);
    if (rc != 0)
        goto out;
    if (resp.status < 200 || resp.status > 299) {
        rc = error_answer(c, r, resp.status, &resp_body, code, err);
        goto out;
    }
    if (out != NULL && resp_body.len > 0) {
        rc = ff_json_parse(resp_body.data, resp_body.len, CLI_RESPONSE_MAX, out, err);
        if (rc != 0)
            rc = ff_err_wrap(err, "the server's answer to %s %s", r->method, r->path);
    }
out:
    /* Bodies may hold secrets (a password, a new token): wipe both. */
    if (body != NULL) {
        ff_secret_wipe(body, body_len);
        free(body);
    }
    if (resp_body.data != NULL)
        ff_secret_wipe(resp_body.data, resp_body.len);
    ff_buf_release(&resp_body);
    ff_http_client_response_release(&resp);
    free(url);
    return rc;
}

int api_get(struct cli *c, const char *path, json_t **out, struct ff_err *err)
{
    struct api_req r = {.method = "GET", .path = path};
    return api_do(c, &r, out, NULL, err);
}

int api_send(struct cli *c, const char *method, const char *path, const json_t *body,
             json_t **out, struct ff_err *err)
{
    struct api_req r = {.method = method, .path = path, .body = body};
    return api_do(c, &r, out, NULL, err);
}

/* Checks a page and moves its items to all; *next is its next id or 0. */
static int page_take(json_t *page, json_t *all, int64_t after, int64_t *next,
                     struct ff_err *err)
{
    json_t *items = NULL;
    if (!json_is_object(page) || ff_json_get_array(page, "items", true, CLI_PAGE_LIMIT,
                                                   &items, err) != 0)
        return ff_err_set(err, FF_EINVAL, "the server's page is not {\"items\":[…],\"next\":…}");
    json_t *n = json_object_get(page, "next");
    *next = 0;
    if (json_is_integer(n))
        *next = (int64_t)json_integer_value(n);
    else if (n != NULL && !json_is_null(n))
        return ff_err_set(err, FF_EINVAL, "the server's page has a \"next\" that is not an id");
    if (n != NULL && !json_is_null(n) && *next <= after)
        return ff_err_set(err, FF_EINVAL, "the server's pages do not advance (next %lld after "
                          "%lld)", (long long)*next, (long long)after);
    if (json_array_size(all) + json_array_size(items) > CLI_LIST_ITEMS_MAX)
        return ff_err_set(err, FF_ETOOBIG, "the list holds more than %d items; use --limit",
                          CLI_LIST_ITEMS_MAX);
    if (json_array_extend(all, items) != 0)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    return 0;
}

int api_list(struct cli *c, const char *path, int64_t limit, json_t **out, struct ff_err *err)
{
    *out = NULL;
    json_t *all = json_array();
    if (all == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    const char sep = strchr(path, '?') != NULL ? '&' : '?';
    int64_t after = 0, next = 0;
    int rc = 0;
    for (;;) {
        int64_t want = CLI_PAGE_LIMIT;
        if (limit > 0 && limit - (int64_t)json_array_size(all) < want)
            want = limit - (int64_t)json_array_size(all);
        char *p = after > 0 ? ff_asprintf("%s%climit=%lld&after=%lld", path, sep,
                                          (long long)want, (long long)after)
                            : ff_asprintf("%s%climit=%lld", path, sep, (long long)want);
        if (p == NULL) {
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
            break;
        }
        json_t *page = NULL;
        rc = api_get(c, p, &page, err);
        free(p);
        if (rc == 0)
            rc = page_take(page, all, after, &next, err);
        json_decref(page);
        if (rc != 0 || next == 0 || (limit > 0 && (int64_t)json_array_size(all) >= limit))
            break;
        after = next;
    }
    if (rc == 0 && limit > 0 && (int64_t)json_array_size(all) > limit) {
        /* A server that gives more than asked is trimmed to the limit. */
        while ((int64_t)json_array_size(all) > limit)
            (void)json_array_remove(all, json_array_size(all) - 1);
    }
    if (rc == 0) {
        *out = json_pack("{s:o,s:o}", "items", all, "next",
                         next > 0 ? json_integer((json_int_t)next) : json_null());
        all = NULL;
        if (*out == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    json_decref(all);
    return rc;
}

static bool unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

char *api_pathf(const char *fmt, ...)
{
    static const char hex[] = "0123456789ABCDEF";
    struct ff_buf b;
    /* Paths are short; the cap only guards against a runaway argument. */
    ff_buf_init(&b, FF_HTTP_URL_MAX);
    va_list ap;
    va_start(ap, fmt);
    int rc = 0;
    for (const char *p = fmt; *p != '\0' && rc == 0; p++) {
        if (p[0] != '%') {
            rc = ff_buf_append(&b, p, 1);
            continue;
        }
        if (p[1] != 's')
            FF_BUG("api_pathf knows only %s");
        p++;
        const char *arg = va_arg(ap, const char *);
        /* "." and ".." would be taken as path steps; encode them whole. */
        bool dots = strcmp(arg, ".") == 0 || strcmp(arg, "..") == 0;
        for (const unsigned char *s = (const unsigned char *)arg; *s != '\0' && rc == 0; s++) {
            char enc[3] = {'%', hex[*s >> 4], hex[*s & 15]};
            rc = unreserved(*s) && !dots ? ff_buf_append(&b, s, 1) : ff_buf_append(&b, enc, 3);
        }
    }
    va_end(ap);
    char *out = rc == 0 ? ff_buf_steal(&b) : NULL;
    ff_buf_release(&b);
    return out;
}

int api_app_path(const char *app, const char *suffix, const char *extra, char **out,
                 struct ff_err *err)
{
    *out = NULL;
    char *owner = NULL, *name = NULL;
    int rc = args_app(app, &owner, &name, err);
    if (rc != 0)
        return rc;
    char *fmt = ff_asprintf("/v1/apps/%%s/%%s%s", suffix);
    if (fmt != NULL)
        *out = extra != NULL ? api_pathf(fmt, owner, name, extra) : api_pathf(fmt, owner, name);
    free(fmt);
    free(owner);
    free(name);
    return *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
}

int api_about(int rc, const char *what, struct ff_err *err)
{
    return rc == FF_ENOTFOUND ? ff_err_wrap(err, "%s", what) : rc;
}

void api_wipe_member(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        ff_secret_wipe((char *)json_string_value(v), json_string_length(v));
}

void api_release(struct cli *c)
{
    ff_http_client_free(c->http);
    c->http = NULL;
}
