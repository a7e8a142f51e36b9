#include "ff_http_client.h"

#include "ff_base64.h"
#include "ff_buf.h"
#include "ff_err.h"
#include "ff_log.h"
#include "ff_str.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Longest method name: the standard ones are at most 7 letters. */
#define HTTP_METHOD_MAX 16
/* Room for the URL as shown in errors and logs (scheme, host, port, path;
 * never the query, which may hold a presigned signature). */
#define HTTP_SHOWN_URL_MAX 256
/* Largest Retry-After in seconds we parse before capping, so that the
 * conversion to milliseconds cannot overflow. */
#define HTTP_RETRY_AFTER_PARSE_MAX 86400u

struct ff_http_client {
    CURL *h;
    struct ff_http_client_config cfg; /* strings point into the copies below */
    char *ca_file;
    char *proxy;
    char *user_agent;
    char errbuf[CURL_ERROR_SIZE];
};

/* Where the body of the response being received goes. */
enum sink {
    SINK_UNDECIDED = 0, /* no body byte seen yet for this response */
    SINK_DISCARD,       /* to be retried, or nobody wants it */
    SINK_BUF,           /* req->resp_body */
    SINK_CALLER,        /* req->resp_write */
    SINK_ERROR_BODY     /* resp->error_body, silently clipped */
};

/* State of one ff_http_client_do call, shared with the curl callbacks. */
struct xfer {
    struct ff_http_client *c;
    const struct ff_http_client_request *req;
    struct ff_http_client_response *resp;
    const char *method;
    char shown[HTTP_SHOWN_URL_MAX];
    bool idempotent;
    unsigned attempt;
    size_t buf_base;      /* resp_body->len before the call, restored per attempt */
    size_t mem_off;       /* next byte of a memory body */
    uint64_t stream_read; /* bytes taken from body_read this attempt */
    enum sink sink;
    int decided_retry; /* -1 undecided, else whether this response is retried */
    bool delivered;    /* resp_write has been given bytes: no retry after that */
    int cb_code;       /* why a callback stopped the transfer */
    struct ff_err cb_err;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void ff_http_client_config_init(struct ff_http_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->connect_timeout_ms = FF_HTTP_CONNECT_TIMEOUT_MS;
    cfg->timeout_ms = FF_HTTP_TIMEOUT_MS;
    cfg->low_speed_limit = FF_HTTP_LOW_SPEED_LIMIT;
    cfg->low_speed_time_s = FF_HTTP_LOW_SPEED_TIME_S;
    cfg->max_retries = FF_HTTP_MAX_RETRIES;
    cfg->retry_base_ms = FF_HTTP_RETRY_BASE_MS;
    cfg->retry_max_ms = FF_HTTP_RETRY_MAX_MS;
    cfg->retry_after_max_ms = FF_HTTP_RETRY_AFTER_MAX_MS;
}

/* strdup that keeps NULL as NULL; false only when out of memory. */
static bool dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL)
        return true;
    *out = strdup(s);
    return *out != NULL;
}

int ff_http_client_new(const struct ff_http_client_config *cfg, struct ff_http_client **out,
                       struct ff_err *err)
{
    if (cfg->connect_timeout_ms < 0 || cfg->timeout_ms < 0 || cfg->low_speed_limit < 0 ||
        cfg->low_speed_time_s < 0 || cfg->retry_base_ms < 0 || cfg->retry_max_ms < 0 ||
        cfg->retry_after_max_ms < 0)
        return ff_err_set(err, FF_EINVAL, "http client: negative timeout or delay in config");
    if (cfg->ca_file != NULL) {
        /* Fail now with a clear message rather than at the first request
         * with a TLS error that hides the cause. */
        int fd = open(cfg->ca_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return ff_err_set(err, FF_EIO, "ca file \"%s\": %s", cfg->ca_file, strerror(errno));
        close(fd);
    }
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return ff_err_set(err, FF_ENOMEM, "http client: curl_global_init: %s",
                          curl_easy_strerror(global_rc));
    struct ff_http_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ff_err_set(err, FF_ENOMEM, "http client: out of memory");
    c->cfg = *cfg;
    if (!dup_opt(cfg->ca_file, &c->ca_file) || !dup_opt(cfg->proxy, &c->proxy) ||
        !dup_opt(cfg->user_agent != NULL ? cfg->user_agent : FF_HTTP_USER_AGENT, &c->user_agent))
        goto nomem;
    c->cfg.ca_file = c->ca_file;
    c->cfg.proxy = c->proxy;
    c->cfg.user_agent = c->user_agent;
    c->h = curl_easy_init();
    if (c->h == NULL)
        goto nomem;
    *out = c;
    return 0;
nomem:
    ff_http_client_free(c);
    return ff_err_set(err, FF_ENOMEM, "http client: out of memory");
}

void ff_http_client_free(struct ff_http_client *c)
{
    if (c == NULL)
        return;
    if (c->h != NULL)
        curl_easy_cleanup(c->h);
    free(c->ca_file);
    free(c->proxy);
    free(c->user_agent);
    free(c);
}

void ff_http_client_response_release(struct ff_http_client_response *resp)
{
    ff_buf_release(&resp->error_body);
    ff_buf_release(&resp->headers);
}

const char *ff_http_client_response_header_nth(const struct ff_http_client_response *resp, const char *name,
                                        size_t n)
{
    /* resp->headers holds "name\0value\0" pairs back to back. */
    const char *p = resp->headers.data;
    const char *end = p != NULL ? p + resp->headers.len : NULL;
    while (p != NULL && p < end) {
        const char *value = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0) {
            if (n == 0)
                return value;
            n--;
        }
        p = value + strlen(value) + 1;
    }
    return NULL;
}

const char *ff_http_client_response_header(const struct ff_http_client_response *resp, const char *name)
{
    return ff_http_client_response_header_nth(resp, name, 0);
}

/* RFC 9110 token characters, for method and header names. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* True when s holds a byte that could end a header line early. */
static bool has_ctl(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return true;
    }
    return false;
}

/* Checks the URL's scheme and form and writes the version safe to show
 * (no query, no fragment) into x->shown. */
static int check_url(struct xfer *x, const char *url, struct ff_err *err)
{
    if (url == NULL)
        return ff_err_set(err, FF_EINVAL, "http: request without a url");
    size_t len = strlen(url);
    if (len > FF_HTTP_URL_MAX)
        return ff_err_set(err, FF_EINVAL, "http: url of %zu bytes, expected at most %u", len,
                          FF_HTTP_URL_MAX);
    if (has_ctl(url) || strchr(url, ' ') != NULL)
        return ff_err_set(err, FF_EINVAL, "http: url holds spaces or control characters");
    CURLU *u = curl_url();
    if (u == NULL)
        return ff_err_set(err, FF_ENOMEM, "http: out of memory");
    char *scheme = NULL, *user = NULL, *host = NULL, *port = NULL, *path = NULL;
    int ret = 0;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_PATH, &path, 0);
    if (uc != CURLUE_OK) {
        /* Only the scheme and host of a malformed URL are shown: no
         * guessing which part is secret. */
        ret = ff_err_set(err, FF_EINVAL, "http: malformed url: %s", curl_url_strerror(uc));
        goto out;
    }
    bool https = strcasecmp(scheme, "https") == 0;
    if (!https && !(x->c->cfg.allow_http && strcasecmp(scheme, "http") == 0)) {
        ret = ff_err_set(err, FF_EINVAL, "http: url scheme \"%s\" refused, expected https", scheme);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        ret =
            ff_err_set(err, FF_EINVAL,
                       "http: url for host \"%s\" holds credentials, expected them in auth", host);
        goto out;
    }
    (void)curl_url_get(u, CURLUPART_PORT, &port, 0);
    int n = snprintf(x->shown, sizeof(x->shown), "%s://%s%s%s%s", scheme, host,
                     port != NULL ? ":" : "", port != NULL ? port : "", path);
    if (n < 0)
        x->shown[0] = '\0';
    else if ((size_t)n >= sizeof(x->shown))
        memcpy(x->shown + sizeof(x->shown) - 4, "...", 4);
out:
    curl_free(scheme);
    curl_free(user);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return ret;
}

static int check_request(struct xfer *x, const struct ff_http_client_request *req, struct ff_err *err)
{
    size_t mlen = strlen(x->method);
    if (mlen == 0 || mlen > HTTP_METHOD_MAX)
        return ff_err_set(err, FF_EINVAL, "http: method of %zu characters, expected 1 to %d", mlen,
                          HTTP_METHOD_MAX);
    for (size_t i = 0; i < mlen; i++) {
        if (!is_tchar((unsigned char)x->method[i]))
            return ff_err_set(err, FF_EINVAL, "http: method \"%.*s\" is not a token",
                              HTTP_METHOD_MAX, x->method);
    }
    int ret = check_url(x, req->url, err);
    if (ret != 0)
        return ret;
    if (req->n_headers > FF_HTTP_REQUEST_HEADERS_MAX)
        return ff_err_set(err, FF_EINVAL, "http: %zu request headers, expected at most %u",
                          req->n_headers, FF_HTTP_REQUEST_HEADERS_MAX);
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *h = req->headers[i];
        const char *colon = h != NULL ? strchr(h, ':') : NULL;
        if (colon == NULL || colon == h)
            return ff_err_set(err, FF_EINVAL, "http: request header %zu is not \"Name: value\"", i);
        for (const char *p = h; p < colon; p++) {
            if (!is_tchar((unsigned char)*p))
                return ff_err_set(err, FF_EINVAL,
                                  "http: request header %zu has a bad character in its name", i);
        }
        if (has_ctl(colon))
            return ff_err_set(err, FF_EINVAL,
                              "http: request header \"%.*s\" holds control characters",
                              (int)(colon - h), h);
        if ((size_t)(colon - h) == strlen("Authorization") &&
            strncasecmp(h, "Authorization", (size_t)(colon - h)) == 0)
            return ff_err_set(err, FF_EINVAL,
                              "http: Authorization given as a header, expected it in auth");
    }
    if (req->body != NULL && req->body_read != NULL)
        return ff_err_set(err, FF_EINVAL, "http: both a memory body and body_read given");
    if (req->body_size > (uint64_t)INT64_MAX)
        return ff_err_set(err, FF_EINVAL, "http: body_size %llu out of range",
                          (unsigned long long)req->body_size);
    if (req->resp_body != NULL && req->resp_write != NULL)
        return ff_err_set(err, FF_EINVAL, "http: both resp_body and resp_write given");
    if (req->range != NULL &&
        (req->range[0] == '\0' || strspn(req->range, "0123456789-,") != strlen(req->range)))
        return ff_err_set(err, FF_EINVAL, "http: range \"%.64s\", expected \"first-last\"",
                          req->range);
    if (req->timeout_ms < 0)
        return ff_err_set(err, FF_EINVAL, "http: negative timeout_ms");
    return 0;
}

/* Appends the Authorization header for req to *list. *node is set to the
 * list entry holding the secret so that it can be wiped afterwards. */
static int add_auth(const struct ff_http_client_request *req, struct curl_slist **list,
                    struct curl_slist **node, struct ff_err *err)
{
    const char *scheme = NULL;
    const char *cred = NULL;
    char *joined = NULL, *b64 = NULL, *line = NULL;
    size_t joined_len = 0, b64_size = 0, line_size = 0;
    int ret = 0;
    if (req->auth == FF_HTTP_AUTH_NONE)
        return 0;
    if (req->auth == FF_HTTP_AUTH_BEARER) {
        if (req->token == NULL || req->token[0] == '\0')
            return ff_err_set(err, FF_EINVAL, "http: bearer auth without a token");
        size_t tlen = strlen(req->token);
        if (tlen > FF_HTTP_CREDENTIAL_MAX)
            return ff_err_set(err, FF_EINVAL,
                              "http: bearer token of %zu bytes, expected at "
                              "most %u",
                              tlen, FF_HTTP_CREDENTIAL_MAX);
        for (size_t i = 0; i < tlen; i++) {
            unsigned char ch = (unsigned char)req->token[i];
            if (ch <= 0x20 || ch >= 0x7f)
                return ff_err_set(err, FF_EINVAL,
                                  "http: bearer token holds a byte that is "
                                  "not printable ascii");
        }
        scheme = "Bearer";
        cred = req->token;
    } else if (req->auth == FF_HTTP_AUTH_BASIC) {
        if (req->user == NULL || req->password == NULL)
            return ff_err_set(err, FF_EINVAL, "http: basic auth without a user or password");
        size_t ulen = strlen(req->user), plen = strlen(req->password);
        if (ulen > FF_HTTP_CREDENTIAL_MAX || plen > FF_HTTP_CREDENTIAL_MAX)
            return ff_err_set(err, FF_EINVAL, "http: basic auth user or password over %u bytes",
                              FF_HTTP_CREDENTIAL_MAX);
        /* RFC 7617: the user-id cannot hold a colon, it would shift the
         * split into the password. */
        if (strchr(req->user, ':') != NULL || has_ctl(req->user) || has_ctl(req->password))
            return ff_err_set(err, FF_EINVAL,
                              "http: basic auth user holds ':' or a control character");
        joined_len = ulen + 1 + plen; /* both bounded by FF_HTTP_CREDENTIAL_MAX */
        joined = malloc(joined_len + 1);
        b64_size = ff_base64_encoded_size(joined_len);
        b64 = malloc(b64_size);
        if (joined == NULL || b64 == NULL) {
            ret = ff_err_set(err, FF_ENOMEM, "http: out of memory");
            goto out;
        }
        memcpy(joined, req->user, ulen);
        joined[ulen] = ':';
        memcpy(joined + ulen + 1, req->password, plen + 1);
        ff_base64_encode((const unsigned char *)joined, joined_len, b64, false);
        scheme = "Basic";
        cred = b64;
    } else {
        return ff_err_set(err, FF_EINVAL, "http: unknown auth kind %d", (int)req->auth);
    }
    line_size = strlen("Authorization: ") + strlen(scheme) + 1 + strlen(cred) + 1;
    line = malloc(line_size);
    if (line == NULL) {
        ret = ff_err_set(err, FF_ENOMEM, "http: out of memory");
        goto out;
    }
    int n = snprintf(line, line_size, "Authorization: %s %s", scheme, cred);
    if (n < 0 || (size_t)n >= line_size) {
        ret = ff_err_set(err, FF_EINVAL, "http: cannot format the Authorization header");
        goto out;
    }
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL) {
        ret = ff_err_set(err, FF_ENOMEM, "http: out of memory");
        goto out;
    }
    *list = l;
    while (l->next != NULL)
        l = l->next;
    *node = l;
out:
    if (joined != NULL)
        OPENSSL_cleanse(joined, joined_len + 1);
    if (b64 != NULL)
        OPENSSL_cleanse(b64, b64_size);
    if (line != NULL)
        OPENSSL_cleanse(line, line_size);
    free(joined);
    free(b64);
    free(line);
    return ret;
}

static bool method_is(const struct xfer *x, const char *m)
{
    return strcmp(x->method, m) == 0;
}

static bool retryable_status(long status)
{
    return status == 429 || status == 502 || status == 503 || status == 504;
}

/* Failures where the request most likely did not reach the application,
 * or the connection broke: worth another try. TLS verification and
 * timeouts are not: the first will not change, the second means the
 * caller's deadline has passed. */
static bool retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return true;
    default: return false;
    }
}

/* Whether one more attempt is allowed at this point of the transfer. */
static bool may_retry(const struct xfer *x)
{
    const struct ff_http_client_request *req = x->req;
    if (x->attempt > x->c->cfg.max_retries || !x->idempotent || x->delivered)
        return false;
    /* A stream without a rewind can only be repeated if nothing was
     * taken from it yet. */
    if (req->body_read != NULL && req->body_rewind == NULL && x->stream_read > 0)
        return false;
    return true;
}

/* Chooses where the body of the current response goes, at its first byte
 * (the status is known by then). */
static void choose_sink(struct xfer *x)
{
    const struct ff_http_client_request *req = x->req;
    long status = 0;
    if (curl_easy_getinfo(x->c->h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0; /* unknown: treated as an error response */
    x->decided_retry = retryable_status(status) && may_retry(x);
    bool ok = status >= 200 && status <= 299;
    if (!x->decided_retry && req->resp_body != NULL)
        x->sink = SINK_BUF;
    else if (!x->decided_retry && !ok)
        x->sink = SINK_ERROR_BODY;
    else if (!x->decided_retry && req->resp_write != NULL)
        x->sink = SINK_CALLER;
    else
        x->sink = SINK_DISCARD;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *p)
{
    struct xfer *x = p;
    size_t n = size * nmemb; /* curl documents size as always 1 */
    if (x->sink == SINK_UNDECIDED)
        choose_sink(x);
    int rc;
    switch (x->sink) {
    case SINK_BUF:
        rc = ff_buf_append(x->req->resp_body, data, n);
        if (rc == FF_ETOOBIG) {
            x->cb_code = ff_err_set(&x->cb_err, FF_ETOOBIG, "response body exceeds %zu bytes",
                                    x->req->resp_body->max - x->buf_base);
            return 0;
        }
        if (rc != 0) {
            x->cb_code = ff_err_set(&x->cb_err, rc, "response body: out of memory");
            return 0;
        }
        break;
    case SINK_CALLER:
        x->delivered = true;
        ff_err_clear(&x->cb_err);
        rc = x->req->resp_write(x->req->resp_ctx, data, n, &x->cb_err);
        if (rc != 0) {
            x->cb_code = rc < 0 ? rc : FF_EIO;
            if (x->cb_err.msg[0] == '\0')
                ff_err_set(&x->cb_err, x->cb_code, "response body callback failed");
            return 0;
        }
        break;
    case SINK_ERROR_BODY: {
        struct ff_buf *b = &x->resp->error_body;
        size_t room = b->max - b->len;
        if (ff_buf_append(b, data, n < room ? n : room) != 0) {
            x->cb_code = ff_err_set(&x->cb_err, FF_ENOMEM, "error body: out of memory");
            return 0;
        }
        break;
    }
    case SINK_DISCARD:
    case SINK_UNDECIDED: return n;
    }
    x->resp->body_bytes += n;
    return n;
}

/* Stores one response header line; a status line starts a new response
 * (after 1xx, a redirect, or a retry), so the previous headers go. */
static size_t on_header(char *line, size_t size, size_t nitems, void *p)
{
    struct xfer *x = p;
    size_t n = size * nitems;
    size_t len = n;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    struct ff_buf *h = &x->resp->headers;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        ff_buf_reset(h);
        x->sink = SINK_UNDECIDED;
        x->decided_retry = -1;
        return n;
    }
    if (len == 0 || memchr(line, '\0', len) != NULL)
        return n; /* a NUL would split our name/value pairs */
    int rc = 0;
    if (line[0] == ' ' || line[0] == '\t') {
        /* Obsolete line folding: continues the last value, which sits at
         * the end of the buffer before its NUL. */
        if (h->len == 0)
            return n;
        size_t s = 0;
        while (s < len && (line[s] == ' ' || line[s] == '\t'))
            s++;
        h->len--;
        rc = ff_buf_append(h, " ", 1);
        if (rc == 0)
            rc = ff_buf_append(h, line + s, len - s);
        if (rc == 0)
            rc = ff_buf_append(h, "", 1);
    } else {
        const char *colon = memchr(line, ':', len);
        if (colon == NULL || colon == line)
            return n; /* not a header; curl has judged the response already */
        size_t nlen = (size_t)(colon - line);
        size_t vs = nlen + 1, ve = len;
        while (vs < ve && (line[vs] == ' ' || line[vs] == '\t'))
            vs++;
        while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
            ve--;
        rc = ff_buf_append(h, line, nlen);
        if (rc == 0)
            rc = ff_buf_append(h, "", 1);
        if (rc == 0)
            rc = ff_buf_append(h, line + vs, ve - vs);
        if (rc == 0)
            rc = ff_buf_append(h, "", 1);
    }
    if (rc != 0) {
        x->cb_code = ff_err_set(&x->cb_err, rc == FF_ETOOBIG ? FF_ETOOBIG : FF_ENOMEM,
                                "response headers exceed %u bytes", FF_HTTP_HEADERS_MAX);
        return 0;
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *p)
{
    struct xfer *x = p;
    const struct ff_http_client_request *req = x->req;
    size_t cap = size * nitems;
    if (req->body_read == NULL) {
        size_t left = req->body != NULL ? req->body_len - x->mem_off : 0;
        size_t k = left < cap ? left : cap;
        if (k > 0)
            memcpy(buf, (const char *)req->body + x->mem_off, k);
        x->mem_off += k;
        return k;
    }
    size_t got = 0;
    ff_err_clear(&x->cb_err);
    int rc = req->body_read(req->body_ctx, buf, cap, &got, &x->cb_err);
    if (rc != 0 || got > cap) {
        x->cb_code = rc < 0 ? rc : FF_EINVAL;
        if (rc == 0)
            ff_err_set(&x->cb_err, FF_EINVAL, "body_read gave %zu bytes for a %zu byte buffer", got,
                       cap);
        else if (x->cb_err.msg[0] == '\0')
            ff_err_set(&x->cb_err, x->cb_code, "request body callback failed");
        return CURL_READFUNC_ABORT;
    }
    x->stream_read += got;
    return got;
}

/* Rewinds the request body, for curl (a reused connection that had closed,
 * auth negotiation) and for our retries. */
static int rewind_body(struct xfer *x)
{
    const struct ff_http_client_request *req = x->req;
    if (req->body_read == NULL) {
        x->mem_off = 0;
        return 0;
    }
    if (req->body_rewind == NULL) {
        if (x->stream_read == 0)
            return 0; /* nothing taken from the stream yet */
        x->cb_code =
            ff_err_set(&x->cb_err, FF_EINVAL, "request body cannot be sent again (no body_rewind)");
        return x->cb_code;
    }
    x->stream_read = 0;
    ff_err_clear(&x->cb_err);
    int rc = req->body_rewind(req->body_ctx, &x->cb_err);
    if (rc != 0) {
        x->cb_code = rc < 0 ? rc : FF_EIO;
        if (x->cb_err.msg[0] == '\0')
            ff_err_set(&x->cb_err, x->cb_code, "request body rewind failed");
    }
    return rc;
}

static int on_seek(void *p, curl_off_t offset, int origin)
{
    struct xfer *x = p;
    if (origin != SEEK_SET || offset != 0) {
        const struct ff_http_client_request *req = x->req;
        if (req->body_read == NULL && origin == SEEK_SET && offset > 0 &&
            (uint64_t)offset <= req->body_len) {
            x->mem_off = (size_t)offset;
            return CURL_SEEKFUNC_OK;
        }
        return CURL_SEEKFUNC_CANTSEEK;
    }
    if (x->req->body_read != NULL && x->req->body_rewind == NULL)
        return CURL_SEEKFUNC_CANTSEEK;
    return rewind_body(x) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

/* Sets every option for this request on the (reset) handle. */
static CURLcode set_options(struct xfer *x, struct curl_slist *headers)
{
    struct ff_http_client *c = x->c;
    const struct ff_http_client_request *req = x->req;
    const struct ff_http_client_config *cfg = &c->cfg;
    CURL *h = c->h;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, (opt), (val));                                                \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, cfg->allow_http ? "http,https" : "https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, cfg->allow_http ? "http,https" : "https");
    SET(CURLOPT_FOLLOWLOCATION, cfg->follow_redirects ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, FF_HTTP_MAX_REDIRECTS);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (cfg->ca_file != NULL) {
        /* Trust exactly the pinned CA: no system bundle, no directory. */
        SET(CURLOPT_CAINFO, cfg->ca_file);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    /* An empty proxy disables the *_proxy environment variables, so that
     * where requests go is decided by configuration alone. */
    SET(CURLOPT_PROXY, cfg->proxy != NULL ? cfg->proxy : "");
    SET(CURLOPT_USERAGENT, cfg->user_agent);
    SET(CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : cfg->timeout_ms);
    SET(CURLOPT_LOW_SPEED_LIMIT, cfg->low_speed_limit);
    SET(CURLOPT_LOW_SPEED_TIME, cfg->low_speed_time_s);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_HTTPHEADER, headers);
    if (req->range != NULL)
        SET(CURLOPT_RANGE, req->range);
    if (req->resp_body != NULL) {
        /* Refuses at once a body whose Content-Length is over the cap. */
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(req->resp_body->max - x->buf_base));
    }
    bool has_body = req->body != NULL || req->body_read != NULL;
    if (method_is(x, "GET") && !has_body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (method_is(x, "HEAD") && !has_body) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (has_body || method_is(x, "POST") || method_is(x, "PUT") || method_is(x, "PATCH")) {
        /* Every body goes through the read callback, so memory and
         * streamed bodies share one path (and one rewind). */
        curl_off_t size = -1;
        if (req->body_read == NULL)
            size = (curl_off_t)(req->body != NULL ? req->body_len : 0);
        else if (req->body_size > 0)
            size = (curl_off_t)req->body_size;
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, x);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, x);
        SET(CURLOPT_INFILESIZE_LARGE, size);
        if (!method_is(x, "PUT"))
            SET(CURLOPT_CUSTOMREQUEST, x->method);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, x->method);
    }
#undef SET
    return rc;
}

static bool is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE: return true;
    default: return false;
    }
}

/* Turns a failed transfer into our error code and message. */
static int transfer_error(struct xfer *x, CURLcode rc, struct ff_err *err)
{
    if (x->cb_code != 0)
        return ff_err_set(err, x->cb_code, "%s \"%s\": %s", x->method, x->shown, x->cb_err.msg);
    const char *text = x->c->errbuf[0] != '\0' ? x->c->errbuf : curl_easy_strerror(rc);
    int code;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: code = FF_ETIMEOUT; break;
    case CURLE_OUT_OF_MEMORY: code = FF_ENOMEM; break;
    case CURLE_FILESIZE_EXCEEDED:
        return ff_err_set(err, FF_ETOOBIG, "%s \"%s\": response body exceeds %zu bytes", x->method,
                          x->shown, x->req->resp_body->max - x->buf_base);
    case CURLE_URL_MALFORMAT: code = FF_EINVAL; break;
    default: code = FF_ENET; break;
    }
    return ff_err_set(err, code, "%s \"%s\": %s%s", x->method, x->shown,
                      is_tls_error(rc) ? "tls: " : "", text);
}

/* Delay before the next attempt: Retry-After when the server gave one in
 * seconds (capped), else exponential backoff with jitter. */
static long retry_delay_ms(const struct xfer *x, long status)
{
    const struct ff_http_client_config *cfg = &x->c->cfg;
    if (status == 429 || status == 503) {
        const char *ra = ff_http_client_response_header(x->resp, "Retry-After");
        uint64_t secs = 0;
        /* The HTTP-date form is not used by our peers; it falls back to
         * the backoff below. */
        if (ra != NULL && ff_parse_u64(ra, HTTP_RETRY_AFTER_PARSE_MAX, &secs) == 0) {
            long ms = (long)secs * 1000L;
            return ms < cfg->retry_after_max_ms ? ms : cfg->retry_after_max_ms;
        }
    }
    long d = cfg->retry_base_ms;
    for (unsigned i = 1; i < x->attempt && d < cfg->retry_max_ms; i++)
        d = d > LONG_MAX / 2 ? LONG_MAX : d * 2;
    if (d > cfg->retry_max_ms)
        d = cfg->retry_max_ms;
    /* "Equal jitter": half fixed, half random, so retries spread out but
     * never come sooner than half the backoff. */
    unsigned long r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = 0;
    long half = d / 2;
    return half + (long)(r % (unsigned long)(d - half + 1));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Puts the per-attempt state and the caller's buffer back to the start. */
static void attempt_reset(struct xfer *x)
{
    x->sink = SINK_UNDECIDED;
    x->decided_retry = -1;
    x->cb_code = 0;
    ff_err_clear(&x->cb_err);
    x->resp->status = 0;
    x->resp->body_bytes = 0;
    ff_buf_reset(&x->resp->headers);
    ff_buf_reset(&x->resp->error_body);
    struct ff_buf *b = x->req->resp_body;
    if (b != NULL && b->data != NULL) {
        b->len = x->buf_base;
        b->data[b->len] = '\0';
    }
    x->c->errbuf[0] = '\0';
}

int ff_http_client_do(struct ff_http_client *c, const struct ff_http_client_request *req,
                      struct ff_http_client_response *resp, struct ff_err *err)
{
    memset(resp, 0, sizeof(*resp));
    ff_buf_init(&resp->error_body, FF_HTTP_ERROR_BODY_MAX);
    ff_buf_init(&resp->headers, FF_HTTP_HEADERS_MAX);

    struct xfer x;
    memset(&x, 0, sizeof(x));
    x.c = c;
    x.req = req;
    x.resp = resp;
    x.method = req->method != NULL ? req->method : "GET";
    x.decided_retry = -1;
    x.buf_base = req->resp_body != NULL ? req->resp_body->len : 0;
    int ret = check_request(&x, req, err);
    if (ret != 0)
        return ret;
    x.idempotent = req->idempotent || method_is(&x, "GET") || method_is(&x, "HEAD") ||
                   method_is(&x, "PUT") || method_is(&x, "DELETE") || method_is(&x, "OPTIONS");

    struct curl_slist *headers = NULL, *auth_node = NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        struct curl_slist *l = curl_slist_append(headers, req->headers[i]);
        if (l == NULL) {
            ret = ff_err_set(err, FF_ENOMEM, "http: out of memory");
            goto out;
        }
        headers = l;
    }
    ret = add_auth(req, &headers, &auth_node, err);
    if (ret != 0)
        goto out;

    curl_easy_reset(c->h);
    CURLcode rc = set_options(&x, headers);
    if (rc != CURLE_OK) {
        ret = ff_err_set(err, rc == CURLE_OUT_OF_MEMORY ? FF_ENOMEM : FF_EINVAL,
                         "%s \"%s\": curl option: %s", x.method, x.shown, curl_easy_strerror(rc));
        goto out;
    }
    for (x.attempt = 1;; x.attempt++) {
        resp->attempts = x.attempt;
        attempt_reset(&x);
        if (x.attempt > 1 && rewind_body(&x) != 0) {
            ret = ff_err_set(err, x.cb_code, "%s \"%s\": %s", x.method, x.shown, x.cb_err.msg);
            goto out;
        }
        rc = curl_easy_perform(c->h);
        if (curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &resp->status) != CURLE_OK)
            resp->status = 0;
        bool again;
        if (rc == CURLE_OK) {
            if (!retryable_status(resp->status)) {
                ret = 0;
                goto out;
            }
            again = x.decided_retry >= 0 ? x.decided_retry == 1 : may_retry(&x);
            if (!again) {
                ret = 0;
                goto out;
            }
        } else {
            again = x.cb_code == 0 && retryable_curl(rc) && may_retry(&x);
            if (!again) {
                ret = transfer_error(&x, rc, err);
                goto out;
            }
        }
        long wait = retry_delay_ms(&x, rc == CURLE_OK ? resp->status : 0);
        if (rc == CURLE_OK)
            ff_log_warn(NULL, "http.retry", "method=%s url=%s attempt=%u status=%ld wait_ms=%ld",
                        x.method, x.shown, x.attempt, resp->status, wait);
        else
            ff_log_warn(NULL, "http.retry", "method=%s url=%s attempt=%u error=%s wait_ms=%ld",
                        x.method, x.shown, x.attempt, curl_easy_strerror(rc), wait);
        sleep_ms(wait);
    }
out:
    /* The handle must not keep pointing at the list freed below. */
    (void)curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    if (auth_node != NULL)
        OPENSSL_cleanse(auth_node->data, strlen(auth_node->data));
    curl_slist_free_all(headers);
    return ret;
}
