/* The registry client of ff-worker: pulls base images and pushes results
 * over the OCI distribution API, with the Docker token flow as skopeo does
 * it.
 *
 * Authentication: a request goes out with what we know (nothing at first);
 * a 401 carries a challenge (wwwauth.c). For Bearer we ask the realm, with
 * HTTP Basic user:secret, for a token covering the scopes of the operation
 * (several `scope=` parameters in one request) and send the request again
 * with it; tokens are cached per scope set until shortly before they
 * expire, and once the realm is known later operations fetch their token
 * before their first request. For Basic we send the credentials directly.
 * The secret goes only to the realm (or a registry that asked for Basic),
 * over TLS verified against the pinned CA, and is never logged.
 *
 * Integrity: every manifest is hashed and compared with the digest that
 * named it and with Docker-Content-Digest; every blob is hashed while it
 * streams to a temporary file and renamed into place only when its size
 * and digest match. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_http_client.h"
#include "ff_json.h"
#include "ff_log.h"
#include "ff_scope.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest tag (OCI distribution spec). */
#define TAG_MAX 128
/* Longest repository name (OCI distribution spec, with the host). */
#define REPO_MAX 255
/* Longest token we store: what the HTTP client will send. */
#define TOKEN_MAX FF_HTTP_CREDENTIAL_MAX
/* Attempts of one request through the authentication dance: unauthenticated,
 * with a (cached or fresh) token, with a fresh token after a refusal. */
#define AUTH_ATTEMPTS 3
/* Largest error body we read a message from. */
#define ERROR_BODY_MAX 65536u

static const char accept_manifests[] =
    "Accept: " OCI_MT_MANIFEST ", " OCI_MT_INDEX ", " DOCKER_MT_MANIFEST ", " DOCKER_MT_LIST;

struct token {
    char *scopes; /* the scope set it was asked for: the cache key */
    char *value;  /* secret: wiped when dropped */
    int64_t expires_ms;
};

struct regclient {
    struct ff_http_client *http;  /* API requests: redirects are not followed */
    struct ff_http_client *blobs; /* blob downloads: may be redirected to storage */
    char *base; /* "https://host:port" */
    char *host; /* "host:port", for messages */
    char *user;
    char *secret;
    enum wwwauth_scheme scheme; /* what the registry asked for; NONE until a 401 */
    char *realm;
    char *service;
    struct token tokens[REGCLIENT_TOKENS_MAX];
    size_t n_tokens;
    size_t chunk_size;
    struct regclient_stats stats;
};

/* ---- small helpers ----------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int regclient_repo_check(const char *repo, struct ff_err *err)
{
    if (repo == NULL)
        return ff_err_set(err, FF_EINVAL, "repository name missing");
    char q[FF_STR_QUOTE_SIZE];
    size_t len = strnlen(repo, REPO_MAX + 1);
    ff_str_quote(repo, len, q);
    if (len > REPO_MAX)
        return ff_err_set(err, FF_EINVAL, "repository name \"%s\": longer than %d characters",
                          q, REPO_MAX);
    if (ff_scope_name_check(repo, len, err) != 0)
        return ff_err_wrap(err, "repository name \"%s\"", q);
    return 0;
}

static bool tag_char(char ch, bool first)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        ch == '_')
        return true;
    return !first && (ch == '.' || ch == '-');
}

static int tag_check(const char *tag, struct ff_err *err)
{
    size_t len = strnlen(tag, TAG_MAX + 1);
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(tag, len, q);
    if (len == 0 || len > TAG_MAX)
        return ff_err_set(err, FF_EINVAL, "tag \"%s\": expected 1 to %d characters", q,
                          TAG_MAX);
    for (size_t i = 0; i < len; i++) {
        if (!tag_char(tag[i], i == 0))
            return ff_err_set(err, FF_EINVAL, "tag \"%s\": character %zu is not %s", q, i + 1,
                              i == 0 ? "[A-Za-z0-9_]" : "[A-Za-z0-9_.-]");
    }
    return 0;
}

int regclient_reference_check(const char *reference, struct ff_err *err)
{
    if (reference == NULL)
        return ff_err_set(err, FF_EINVAL, "reference missing");
    if (strchr(reference, ':') != NULL) {
        if (ff_digest_parse_str(reference, NULL, err) != 0)
            return ff_err_wrap(err, "reference");
        return 0;
    }
    return tag_check(reference, err);
}

/* "repo:tag" or "repo@sha256:…" for messages (reference already checked). */
static void ref_show(const char *repo, const char *reference, char *out, size_t size)
{
    bool digest = strchr(reference, ':') != NULL;
    (void)snprintf(out, size, "%s%s%s", repo, digest ? "@" : ":", reference);
}

static bool host_port_valid(const char *s)
{
    size_t n = strnlen(s, REGCLIENT_HOST_MAX + 1);
    if (n == 0 || n > REGCLIENT_HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']'))
            return false;
    }
    return true;
}

/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
static int url_escape_append(struct ff_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~';
        char enc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
        int rc = keep ? ff_buf_append(b, s, 1) : ff_buf_append(b, enc, 3);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- client life cycle ---------------------------------------------------------- */

static void token_drop(struct token *t)
{
    free(t->scopes);
    ff_secret_free(t->value);
    memset(t, 0, sizeof(*t));
}

static void tokens_clear(struct regclient *c)
{
    for (size_t i = 0; i < c->n_tokens; i++)
        token_drop(&c->tokens[i]);
    c->n_tokens = 0;
}

int regclient_new(struct regclient **out, const char *host_port, const char *ca_file,
                  const char *user, const char *secret, struct ff_err *err)
{
    if (host_port == NULL || !host_port_valid(host_port)) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(host_port != NULL ? host_port : "", host_port != NULL ? strlen(host_port) : 0,
                     q);
        return ff_err_set(err, FF_EINVAL, "registry \"%s\": expected host[:port]", q);
    }
    if ((user == NULL) != (secret == NULL))
        return ff_err_set(err, FF_EINVAL, "registry credentials: give both user and secret, "
                          "or neither");
    if (user != NULL && (user[0] == '\0' || strchr(user, ':') != NULL ||
                         strlen(user) > FF_HTTP_CREDENTIAL_MAX ||
                         strlen(secret) > FF_HTTP_CREDENTIAL_MAX))
        return ff_err_set(err, FF_EINVAL, "registry credentials: user must be non-empty "
                          "without ':', and both at most %u bytes", FF_HTTP_CREDENTIAL_MAX);
    struct regclient *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ff_err_set(err, FF_ENOMEM, "registry client: out of memory");
    c->chunk_size = REGCLIENT_CHUNK_DEFAULT;
    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.ca_file = ca_file;
    int rc = ff_http_client_new(&cfg, &c->http, err);
    /* Blob downloads may be redirected to storage (https only, and curl
     * does not carry Authorization to another host); nothing else is, so
     * an upload or a manifest cannot be bounced elsewhere. */
    cfg.follow_redirects = true;
    if (rc == 0)
        rc = ff_http_client_new(&cfg, &c->blobs, err);
    if (rc != 0) {
        ff_http_client_free(c->http);
        free(c);
        return rc;
    }
    c->base = ff_asprintf("https://%s", host_port);
    c->host = strdup(host_port);
    if (user != NULL) {
        c->user = strdup(user);
        c->secret = strdup(secret);
    }
    if (c->base == NULL || c->host == NULL ||
        (user != NULL && (c->user == NULL || c->secret == NULL))) {
        regclient_free(c);
        return ff_err_set(err, FF_ENOMEM, "registry client: out of memory");
    }
    *out = c;
    return 0;
}

void regclient_free(struct regclient *c)
{
    if (c == NULL)
        return;
    tokens_clear(c);
    ff_http_client_free(c->http);
    ff_http_client_free(c->blobs);
    free(c->base);
    free(c->host);
    free(c->user);
    ff_secret_free(c->secret);
    free(c->realm);
    free(c->service);
    free(c);
}

int regclient_chunk_size_set(struct regclient *c, size_t bytes, struct ff_err *err)
{
    if (bytes < REGCLIENT_CHUNK_MIN || bytes > REGCLIENT_CHUNK_MAX)
        return ff_err_set(err, FF_ERANGE, "chunk size %zu: expected %u to %u bytes", bytes,
                          REGCLIENT_CHUNK_MIN, REGCLIENT_CHUNK_MAX);
    c->chunk_size = bytes;
    return 0;
}

void regclient_stats_get(const struct regclient *c, struct regclient_stats *out)
{
    *out = c->stats;
}

void regclient_manifest_release(struct regclient_manifest *m)
{
    if (m == NULL)
        return;
    free(m->bytes);
    oci_manifest_release(&m->parsed);
    memset(m, 0, sizeof(*m));
}

/* ---- error bodies ------------------------------------------------------------------ */

/* Describes a registry error body (OCI {"errors":[{code,message}]} or the
 * first bytes of anything else) into out, quoted for a message. */
static void error_body_describe(const struct ff_buf *body, char *out, size_t size)
{
    out[0] = '\0';
    if (body == NULL || body->data == NULL || body->len == 0)
        return;
    json_t *root = NULL;
    size_t len = body->len < ERROR_BODY_MAX ? body->len : ERROR_BODY_MAX;
    if (ff_json_parse_object(body->data, len, ERROR_BODY_MAX, &root, NULL) == 0) {
        /* OCI: {"errors":[{code,message}]}; ff-builder: {"error":{code,message}}. */
        json_t *first = json_array_get(json_object_get(root, "errors"), 0);
        if (first == NULL)
            first = json_object_get(root, "error");
        const char *code = json_string_value(json_object_get(first, "code"));
        const char *msg = json_string_value(json_object_get(first, "message"));
        if (code != NULL || msg != NULL) {
            char qc[FF_STR_QUOTE_SIZE], qm[FF_STR_QUOTE_SIZE];
            ff_str_quote(code != NULL ? code : "", code != NULL ? strlen(code) : 0, qc);
            ff_str_quote(msg != NULL ? msg : "", msg != NULL ? strlen(msg) : 0, qm);
            (void)snprintf(out, size, ": %s \"%s\"", qc, qm);
            json_decref(root);
            return;
        }
        json_decref(root);
    }
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(body->data, len, q);
    (void)snprintf(out, size, ": \"%s\"", q);
}

static int status_code(long status)
{
    switch (status) {
    case 400: return FF_EINVAL;
    case 401: return FF_EAUTH;
    case 403: return FF_EDENIED;
    case 404: return FF_ENOTFOUND;
    case 413: return FF_ETOOBIG;
    case 429: return FF_EBUSY;
    default: return FF_ENET;
    }
}

/* Fails with what the registry answered: "<what>: registry "h" answered
 * 404: MANIFEST_UNKNOWN ...". body is where the request put its body (NULL:
 * the response's error_body). */
static int http_fail(const struct regclient *c, const char *what,
                     const struct ff_http_client_response *resp, const struct ff_buf *body,
                     struct ff_err *err)
{
    char detail[FF_ERR_MSG_MAX / 2];
    error_body_describe(body != NULL ? body : &resp->error_body, detail, sizeof(detail));
    return ff_err_set(err, status_code(resp->status), "%s: registry \"%s\" answered %ld%s", what,
                      c->host, resp->status, detail);
}

/* ---- tokens ------------------------------------------------------------------------ */

static const char *token_find(struct regclient *c, const char *scopes)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < c->n_tokens; i++) {
        if (strcmp(c->tokens[i].scopes, scopes) == 0)
            return c->tokens[i].expires_ms > now ? c->tokens[i].value : NULL;
    }
    return NULL;
}

static void token_forget(struct regclient *c, const char *scopes)
{
    for (size_t i = 0; i < c->n_tokens; i++) {
        if (strcmp(c->tokens[i].scopes, scopes) == 0) {
            token_drop(&c->tokens[i]);
            c->tokens[i] = c->tokens[--c->n_tokens];
            memset(&c->tokens[c->n_tokens], 0, sizeof(c->tokens[0]));
            return;
        }
    }
}

/* Keeps value (taken over) for scopes, for ttl_s seconds less a margin. */
static int token_store(struct regclient *c, const char *scopes, char *value, int64_t ttl_s,
                       struct ff_err *err)
{
    token_forget(c, scopes);
    if (c->n_tokens == REGCLIENT_TOKENS_MAX) {
        size_t oldest = 0;
        for (size_t i = 1; i < c->n_tokens; i++) {
            if (c->tokens[i].expires_ms < c->tokens[oldest].expires_ms)
                oldest = i;
        }
        token_drop(&c->tokens[oldest]);
        c->tokens[oldest] = c->tokens[--c->n_tokens];
        memset(&c->tokens[c->n_tokens], 0, sizeof(c->tokens[0]));
    }
    int64_t margin = ttl_s / 2 < REGCLIENT_TOKEN_MARGIN_S ? ttl_s / 2 : REGCLIENT_TOKEN_MARGIN_S;
    struct token *t = &c->tokens[c->n_tokens];
    t->scopes = strdup(scopes);
    if (t->scopes == NULL) {
        ff_secret_free(value);
        return ff_err_set(err, FF_ENOMEM, "registry token: out of memory");
    }
    t->value = value;
    t->expires_ms = now_ms() + (ttl_s - margin) * 1000;
    c->n_tokens++;
    return 0;
}

/* The realm URL with service and every scope as query parameters. */
static int token_url(const struct regclient *c, const char *scopes, const char *extra,
                     char **out, struct ff_err *err)
{
    struct ff_buf b;
    ff_buf_init(&b, FF_HTTP_URL_MAX);
    int rc = ff_buf_append_str(&b, c->realm);
    char sep = strchr(c->realm, '?') != NULL ? '&' : '?';
    if (rc == 0 && c->service != NULL) {
        rc = ff_buf_printf(&b, "%cservice=", sep);
        sep = '&';
        if (rc == 0)
            rc = url_escape_append(&b, c->service);
    }
    const char *lists[2] = {scopes, extra};
    for (size_t l = 0; rc == 0 && l < 2; l++) {
        const char *p = lists[l];
        while (rc == 0 && p != NULL && *p != '\0') {
            size_t n = strcspn(p, " ");
            char *one = ff_strndup(p, n);
            rc = one == NULL ? FF_ENOMEM : ff_buf_printf(&b, "%cscope=", sep);
            sep = '&';
            if (rc == 0)
                rc = url_escape_append(&b, one);
            free(one);
            p += n;
            p += strspn(p, " ");
        }
    }
    if (rc != 0) {
        ff_buf_release(&b);
        return ff_err_set(err, rc == FF_ENOMEM ? FF_ENOMEM : FF_ETOOBIG,
                          "token request url: longer than %u bytes or out of memory",
                          FF_HTTP_URL_MAX);
    }
    *out = ff_buf_steal(&b);
    return *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
}

static bool token_chars_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
    }
    return true;
}

/* Reads {"token": …} or {"access_token": …} and "expires_in". */
static int token_answer_parse(const struct ff_buf *body, char **value, int64_t *ttl,
                              struct ff_err *err)
{
    json_t *root = NULL;
    int rc = ff_json_parse_object(body->data != NULL ? body->data : "", body->len,
                                  REGCLIENT_TOKEN_BODY_MAX, &root, err);
    if (rc != 0)
        return ff_err_wrap(err, "token answer");
    const char *tok = json_string_value(json_object_get(root, "token"));
    if (tok == NULL || tok[0] == '\0')
        tok = json_string_value(json_object_get(root, "access_token"));
    json_t *exp = json_object_get(root, "expires_in");
    *ttl = REGCLIENT_TOKEN_TTL_DEFAULT;
    if (json_is_integer(exp) && json_integer_value(exp) > 0)
        *ttl = json_integer_value(exp) < REGCLIENT_TOKEN_TTL_MAX ? json_integer_value(exp)
                                                                 : REGCLIENT_TOKEN_TTL_MAX;
    if (tok == NULL || !token_chars_ok(tok))
        rc = ff_err_set(err, FF_ENET, "token answer: no \"token\" or \"access_token\" of 1 to "
                        "%u printable characters", TOKEN_MAX);
    else if ((*value = strdup(tok)) == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "token answer: out of memory");
    json_decref(root);
    return rc;
}

/* Asks the realm for a token for scopes (and extra, a scope the registry
 * named that we did not ask for) and caches it. */
static int token_fetch(struct regclient *c, const char *scopes, const char *extra,
                       struct ff_err *err)
{
    char *url = NULL;
    int rc = token_url(c, scopes, extra, &url, err);
    if (rc != 0)
        return rc;
    struct ff_buf body;
    ff_buf_init(&body, REGCLIENT_TOKEN_BODY_MAX);
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.resp_body = &body;
    if (c->user != NULL) {
        req.auth = FF_HTTP_AUTH_BASIC;
        req.user = c->user;
        req.password = c->secret;
    }
    struct ff_http_client_response resp;
    c->stats.token_fetches++;
    rc = ff_http_client_do(c->http, &req, &resp, err);
    char realm_q[FF_STR_QUOTE_SIZE];
    ff_str_quote(c->realm, strcspn(c->realm, "?"), realm_q);
    if (rc != 0) {
        ff_err_wrap(err, "token realm \"%s\"", realm_q);
    } else if (resp.status == 401 || resp.status == 403) {
        char detail[FF_ERR_MSG_MAX / 2];
        error_body_describe(&body, detail, sizeof(detail));
        rc = ff_err_set(err, FF_EAUTH, "token realm \"%s\" refused the credentials of \"%s\" "
                        "(HTTP %ld%s)", realm_q, c->user != NULL ? c->user : "(anonymous)",
                        resp.status, detail);
    } else if (resp.status != 200) {
        char detail[FF_ERR_MSG_MAX / 2];
        error_body_describe(&body, detail, sizeof(detail));
        rc = ff_err_set(err, status_code(resp.status), "token realm \"%s\" answered %ld%s",
                        realm_q, resp.status, detail);
    } else {
        char *value = NULL;
        int64_t ttl = 0;
        rc = token_answer_parse(&body, &value, &ttl, err);
        if (rc == 0)
            rc = token_store(c, scopes, value, ttl, err);
        if (rc == 0)
            ff_log_debug(NULL, "registry.token", "scope=%s ttl=%lld", scopes, (long long)ttl);
        else
            ff_err_wrap(err, "token realm \"%s\"", realm_q);
    }
    if (body.data != NULL)
        ff_secret_wipe(body.data, body.len);
    ff_buf_release(&body);
    ff_http_client_response_release(&resp);
    free(url);
    return rc;
}

/* ---- authenticated requests --------------------------------------------------------- */

/* The first challenge of the response we can answer. */
static int challenge_get(const struct ff_http_client_response *resp,
                         struct wwwauth_challenge *out, struct ff_err *err)
{
    int rc = ff_err_set(err, FF_EAUTH, "401 without a WWW-Authenticate challenge");
    for (size_t i = 0; i < WWWAUTH_CHALLENGES_MAX; i++) {
        const char *h = ff_http_client_response_header_nth(resp, "WWW-Authenticate", i);
        if (h == NULL)
            break;
        rc = wwwauth_parse(h, strlen(h), out, err);
        if (rc == 0)
            return 0;
    }
    return rc;
}

static int str_replace(char **slot, const char *value)
{
    char *v = value != NULL ? strdup(value) : NULL;
    if (value != NULL && v == NULL)
        return FF_ENOMEM;
    free(*slot);
    *slot = v;
    return 0;
}

/* Takes a Bearer challenge's realm and service; a new realm or service
 * makes every cached token useless. */
static int bearer_learn(struct regclient *c, const struct wwwauth_challenge *ch,
                        struct ff_err *err)
{
    if (strncasecmp(ch->realm, "https://", 8) != 0) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(ch->realm, strlen(ch->realm), q);
        return ff_err_set(err, FF_EAUTH, "registry \"%s\" names token realm \"%s\", expected "
                          "an https url", c->host, q);
    }
    bool same = c->realm != NULL && strcmp(c->realm, ch->realm) == 0 &&
                ((c->service == NULL && ch->service == NULL) ||
                 (c->service != NULL && ch->service != NULL &&
                  strcmp(c->service, ch->service) == 0));
    if (same)
        return 0;
    tokens_clear(c);
    if (str_replace(&c->realm, ch->realm) != 0 || str_replace(&c->service, ch->service) != 0)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    c->scheme = WWWAUTH_BEARER;
    return 0;
}

/* The challenge's scope when it is well-formed and not one we ask for
 * anyway, else NULL. */
static const char *extra_scope(const struct wwwauth_challenge *ch, const char *scopes)
{
    if (ch->scope == NULL || ch->scope[0] == '\0')
        return NULL;
    struct ff_access a;
    ff_access_init(&a);
    int rc = ff_scope_parse(ch->scope, &a, NULL);
    ff_access_release(&a);
    if (rc != 0)
        return NULL;
    size_t n = strlen(ch->scope);
    for (const char *p = scopes; *p != '\0';) {
        size_t k = strcspn(p, " ");
        if (k == n && strncmp(p, ch->scope, n) == 0)
            return NULL;
        p += k;
        p += strspn(p, " ");
    }
    return ch->scope;
}

/* What the final 401 means. */
static int auth_refused(const struct regclient *c, const char *what, const char *scopes,
                        const struct wwwauth_challenge *ch, struct ff_err *err)
{
    if (ch->scheme == WWWAUTH_BEARER && ch->error != NULL &&
        strcmp(ch->error, "insufficient_scope") == 0)
        return ff_err_set(err, FF_EDENIED, "%s: registry \"%s\" denies \"%s\" to \"%s\" (the "
                          "token realm did not grant it)", what, c->host, scopes,
                          c->user != NULL ? c->user : "(anonymous)");
    char q[FF_STR_QUOTE_SIZE];
    const char *e = ch->error != NULL ? ch->error : "none";
    ff_str_quote(e, strlen(e), q);
    return ff_err_set(err, FF_EAUTH, "%s: registry \"%s\" refused the %s of \"%s\" (error %s)",
                      what, c->host, ch->scheme == WWWAUTH_BASIC ? "credentials" : "token",
                      c->user != NULL ? c->user : "(anonymous)", q);
}

/* Puts the request back to its start for another attempt. */
static int request_rewind(const struct ff_http_client_request *req, struct ff_err *err)
{
    if (req->resp_body != NULL)
        ff_buf_reset(req->resp_body);
    if (req->body_read != NULL && req->body_rewind != NULL)
        return req->body_rewind(req->body_ctx, err);
    return 0;
}

/* Sets req's credentials for scopes from what we know, fetching a token
 * when the registry uses Bearer and none is cached. *fresh says whether
 * that token was fetched just now. */
static int auth_apply(struct regclient *c, const char *scopes, const char *extra,
                      struct ff_http_client_request *req, bool *fresh, struct ff_err *err)
{
    req->auth = FF_HTTP_AUTH_NONE;
    if (c->scheme == WWWAUTH_BASIC) {
        req->auth = FF_HTTP_AUTH_BASIC;
        req->user = c->user;
        req->password = c->secret;
    } else if (c->scheme == WWWAUTH_BEARER) {
        const char *tok = token_find(c, scopes);
        if (tok == NULL) {
            int rc = token_fetch(c, scopes, extra, err);
            if (rc != 0)
                return rc;
            *fresh = true;
            tok = token_find(c, scopes);
            if (tok == NULL)
                return ff_err_set(err, FF_EAUTH, "token realm gave a token that expired at once");
        }
        req->auth = FF_HTTP_AUTH_BEARER;
        req->token = tok;
    }
    return 0;
}

/* Decides what to do about a 401: learn the scheme and go again (0), or
 * fail. */
static int unauthorized(struct regclient *c, const char *what, const char *scopes,
                        const struct ff_http_client_response *resp, bool sent_auth, bool fresh,
                        struct wwwauth_challenge *ch, struct ff_err *err)
{
    int rc = challenge_get(resp, ch, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s: registry \"%s\"", what, c->host);
    if (ch->scheme == WWWAUTH_BASIC) {
        if (c->user == NULL)
            return ff_err_set(err, FF_EAUTH, "%s: registry \"%s\" asks for credentials and "
                              "none were given", what, c->host);
        if (c->scheme == WWWAUTH_BASIC && sent_auth)
            return auth_refused(c, what, scopes, ch, err);
        c->scheme = WWWAUTH_BASIC;
        return 0;
    }
    if (fresh)
        return auth_refused(c, what, scopes, ch, err);
    rc = bearer_learn(c, ch, err);
    if (rc != 0)
        return rc;
    token_forget(c, scopes);
    return 0;
}

/* Sends req over h with the credentials scopes need, answering
 * challenges. A response other than 401 is returned as it is (0, caller
 * reads status); resp must be released by the caller on success. what
 * names the operation in messages. */
static int reg_request_on(struct regclient *c, struct ff_http_client *h, const char *what,
                          const char *scopes, struct ff_http_client_request *req,
                          struct ff_http_client_response *resp, struct ff_err *err)
{
    bool fresh = false;
    const char *extra = NULL;
    struct wwwauth_challenge ch;
    memset(&ch, 0, sizeof(ch));
    int rc = 0;
    memset(resp, 0, sizeof(*resp));
    for (int attempt = 0; attempt < AUTH_ATTEMPTS; attempt++) {
        if (attempt > 0 && (rc = request_rewind(req, err)) != 0)
            break;
        rc = auth_apply(c, scopes, extra, req, &fresh, err);
        if (rc != 0) {
            ff_err_wrap(err, "%s", what);
            break;
        }
        c->stats.requests++;
        rc = ff_http_client_do(h, req, resp, err);
        if (rc != 0 || resp->status != 401)
            break;
        wwwauth_challenge_release(&ch);
        rc = unauthorized(c, what, scopes, resp, req->auth != FF_HTTP_AUTH_NONE, fresh, &ch,
                          err);
        if (rc == 0 && attempt + 1 == AUTH_ATTEMPTS)
            rc = auth_refused(c, what, scopes, &ch, err);
        if (rc != 0)
            break;
        extra = extra_scope(&ch, scopes);
        ff_http_client_response_release(resp);
    }
    req->token = NULL;
    wwwauth_challenge_release(&ch);
    if (rc != 0)
        ff_http_client_response_release(resp);
    return rc;
}

static int reg_request(struct regclient *c, const char *what, const char *scopes,
                       struct ff_http_client_request *req, struct ff_http_client_response *resp,
                       struct ff_err *err)
{
    return reg_request_on(c, c->http, what, scopes, req, resp, err);
}

static char *scope_pull(const char *repo)
{
    return ff_asprintf("repository:%s:pull", repo);
}

static char *scope_push(const char *repo, const char *from)
{
    if (from != NULL && strcmp(from, repo) != 0)
        return ff_asprintf("repository:%s:pull,push repository:%s:pull", repo, from);
    return ff_asprintf("repository:%s:pull,push", repo);
}

/* Makes loc (a Location header) absolute; it must stay on our registry,
 * since the token goes with it. */
static int location_resolve(const struct regclient *c, const char *loc, char **out,
                            struct ff_err *err)
{
    if (loc == NULL || loc[0] == '\0')
        return ff_err_set(err, FF_ENET, "registry \"%s\" sent no Location for the upload",
                          c->host);
    size_t blen = strlen(c->base);
    if (loc[0] == '/' && loc[1] != '/')
        *out = ff_asprintf("%s%s", c->base, loc);
    else if (strncasecmp(loc, c->base, blen) == 0 && loc[blen] == '/')
        *out = strdup(loc);
    else {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(loc, strlen(loc), q);
        return ff_err_set(err, FF_ENET, "registry \"%s\" sent upload Location \"%s\" on "
                          "another host", c->host, q);
    }
    return *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
}

/* Docker-Content-Digest, when present, must be d. */
static int digest_header_check(const struct regclient *c, const char *what,
                               const struct ff_http_client_response *resp,
                               const struct ff_digest *d, struct ff_err *err)
{
    const char *h = ff_http_client_response_header(resp, "Docker-Content-Digest");
    if (h == NULL)
        return 0;
    struct ff_digest got;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(d, ds);
    if (ff_digest_parse_str(h, &got, err) != 0)
        return ff_err_wrap(err, "%s: registry \"%s\": Docker-Content-Digest", what, c->host);
    if (!ff_digest_equal(&got, d)) {
        char gs[FF_DIGEST_STR_SIZE];
        ff_digest_format(&got, gs);
        return ff_err_set(err, FF_EINVAL, "%s: registry \"%s\" says Docker-Content-Digest %s "
                          "but the bytes hash to %s", what, c->host, gs, ds);
    }
    return 0;
}

/* ---- manifests ---------------------------------------------------------------------- */

int regclient_manifest_fetch(struct regclient *c, const char *repo, const char *reference,
                             struct regclient_manifest *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = regclient_repo_check(repo, err);
    if (rc == 0)
        rc = regclient_reference_check(reference, err);
    if (rc != 0)
        return rc;
    char what[FF_ERR_MSG_MAX], shown[REPO_MAX + TAG_MAX + FF_DIGEST_STR_SIZE];
    ref_show(repo, reference, shown, sizeof(shown));
    (void)snprintf(what, sizeof(what), "manifest \"%s\"", shown);
    char *url = ff_asprintf("%s/v2/%s/manifests/%s", c->base, repo, reference);
    char *scopes = scope_pull(repo);
    struct ff_buf body;
    ff_buf_init(&body, OCI_MANIFEST_MAX);
    struct ff_http_client_response resp;
    memset(&resp, 0, sizeof(resp));
    if (url == NULL || scopes == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    const char *headers[] = {accept_manifests};
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = headers;
    req.n_headers = 1;
    req.resp_body = &body;
    rc = reg_request(c, what, scopes, &req, &resp, err);
    if (rc != 0)
        goto out;
    if (resp.status != 200) {
        rc = http_fail(c, what, &resp, &body, err);
        goto out;
    }
    struct ff_digest got;
    rc = ff_digest_buffer(body.data != NULL ? body.data : "", body.len, &got, err);
    if (rc != 0)
        goto out;
    struct ff_digest want;
    if (strchr(reference, ':') != NULL && ff_digest_parse_str(reference, &want, NULL) == 0 &&
        !ff_digest_equal(&want, &got)) {
        char gs[FF_DIGEST_STR_SIZE];
        ff_digest_format(&got, gs);
        rc = ff_err_set(err, FF_EINVAL, "%s: digest mismatch (expected %s, got %s)", what,
                        reference, gs);
        goto out;
    }
    rc = digest_header_check(c, what, &resp, &got, err);
    if (rc == 0) {
        rc = oci_manifest_parse(body.data != NULL ? body.data : "", body.len,
                                ff_http_client_response_header(&resp, "Content-Type"),
                                &out->parsed, err);
        if (rc != 0)
            ff_err_wrap(err, "%s", what);
    }
    if (rc == 0) {
        out->len = body.len;
        out->bytes = ff_buf_steal(&body);
        out->digest = got;
        if (out->bytes == NULL) {
            oci_manifest_release(&out->parsed);
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        }
    }
out:
    ff_http_client_response_release(&resp);
    ff_buf_release(&body);
    free(url);
    free(scopes);
    return rc;
}

int regclient_resolve(struct regclient *c, const char *repo, const char *reference,
                      const struct oci_platform *want, struct regclient_manifest *out,
                      struct ff_err *err)
{
    struct regclient_manifest top;
    int rc = regclient_manifest_fetch(c, repo, reference, &top, err);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    if (top.parsed.kind == OCI_KIND_MANIFEST) {
        *out = top;
        return 0;
    }
    char shown[REPO_MAX + TAG_MAX + FF_DIGEST_STR_SIZE];
    ref_show(repo, reference, shown, sizeof(shown));
    const struct oci_descriptor *entry = NULL;
    rc = oci_index_select(&top.parsed, want, &entry, err);
    if (rc != 0) {
        regclient_manifest_release(&top);
        memset(out, 0, sizeof(*out));
        return ff_err_wrap(err, "image \"%s\"", shown);
    }
    struct ff_digest child = entry->digest;
    int64_t size = entry->size;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&child, ds);
    rc = regclient_manifest_fetch(c, repo, ds, out, err);
    if (rc == 0 && out->parsed.kind != OCI_KIND_MANIFEST)
        rc = ff_err_set(err, FF_EINVAL, "image \"%s\": platform entry %s is not an image "
                        "manifest", shown, ds);
    else if (rc == 0 && (int64_t)out->len != size)
        rc = ff_err_set(err, FF_EINVAL, "image \"%s\": platform entry %s is %zu bytes, the "
                        "index says %lld", shown, ds, out->len, (long long)size);
    if (rc != 0) {
        regclient_manifest_release(out);
    } else {
        out->from_index = true;
        out->index_digest = top.digest;
    }
    regclient_manifest_release(&top);
    return rc;
}

int regclient_manifest_push(struct regclient *c, const char *repo, const char *tag,
                            const char *media_type, const char *bytes, size_t len,
                            struct ff_digest *digest_out, struct ff_err *err)
{
    int rc = regclient_repo_check(repo, err);
    if (rc == 0 && tag != NULL)
        rc = tag_check(tag, err);
    if (rc == 0 && (media_type == NULL || strpbrk(media_type, "\r\n") != NULL ||
                    strlen(media_type) > OCI_MEDIA_TYPE_MAX))
        rc = ff_err_set(err, FF_EINVAL, "manifest push: bad media type");
    if (rc == 0 && len > OCI_MANIFEST_MAX)
        rc = ff_err_set(err, FF_ETOOBIG, "manifest push: %zu bytes, limit is %u", len,
                        OCI_MANIFEST_MAX);
    struct ff_digest d;
    if (rc == 0)
        rc = ff_digest_buffer(bytes, len, &d, err);
    if (rc != 0)
        return rc;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&d, ds);
    const char *ref = tag != NULL ? tag : ds;
    char what[FF_ERR_MSG_MAX], shown[REPO_MAX + TAG_MAX + FF_DIGEST_STR_SIZE];
    ref_show(repo, ref, shown, sizeof(shown));
    (void)snprintf(what, sizeof(what), "manifest push \"%s\"", shown);
    char *url = ff_asprintf("%s/v2/%s/manifests/%s", c->base, repo, ref);
    char *scopes = scope_push(repo, NULL);
    char *ctype = ff_asprintf("Content-Type: %s", media_type);
    struct ff_http_client_response resp;
    memset(&resp, 0, sizeof(resp));
    if (url == NULL || scopes == NULL || ctype == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    const char *headers[] = {ctype};
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.url = url;
    req.headers = headers;
    req.n_headers = 1;
    req.body = bytes;
    req.body_len = len;
    rc = reg_request(c, what, scopes, &req, &resp, err);
    if (rc != 0)
        goto out;
    if (resp.status != 201 && resp.status != 200) {
        rc = http_fail(c, what, &resp, NULL, err);
        goto out;
    }
    rc = digest_header_check(c, what, &resp, &d, err);
    if (rc == 0 && digest_out != NULL)
        *digest_out = d;
out:
    ff_http_client_response_release(&resp);
    free(url);
    free(scopes);
    free(ctype);
    return rc;
}

/* ---- blob download ---------------------------------------------------------------- */

struct fetch {
    int fd;
    const char *tmp;
    struct ff_digest_ctx *hash;
    uint64_t pos; /* bytes written and hashed */
    uint64_t cap;
    bool ranged; /* this attempt asked for bytes from pos on */
};

static int fetch_write(void *ctx, const void *data, size_t n, struct ff_err *err)
{
    struct fetch *f = ctx;
    if (n > f->cap - f->pos)
        return ff_err_set(err, FF_ETOOBIG, "blob larger than the %llu bytes expected",
                          (unsigned long long)f->cap);
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = pwrite(f->fd, p, left, (off_t)(f->pos + (n - left)));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ff_err_set(err, FF_EIO, "write \"%s\": %s", f->tmp,
                              w < 0 ? strerror(errno) : "no progress");
        p += w;
        left -= (size_t)w;
    }
    int rc = ff_digest_ctx_update(f->hash, data, n, err);
    if (rc == 0)
        f->pos += n;
    return rc;
}

/* Starts again from byte 0 (a resumed request got the whole blob). */
static int fetch_restart(struct fetch *f, struct ff_err *err)
{
    struct ff_digest discard;
    if (ftruncate(f->fd, 0) != 0)
        return ff_err_set(err, FF_EIO, "truncate \"%s\": %s", f->tmp, strerror(errno));
    f->pos = 0;
    return ff_digest_ctx_final(f->hash, &discard, err); /* also resets it */
}

/* One GET of the blob from f->pos on; 0 when it ended with all bytes. */
static int fetch_attempt(struct regclient *c, const char *what, const char *url,
                         const char *scopes, struct fetch *f, long *status, struct ff_err *err)
{
    char range[48];
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.resp_write = fetch_write;
    req.resp_ctx = f;
    f->ranged = f->pos > 0;
    if (f->ranged) {
        (void)snprintf(range, sizeof(range), "%llu-", (unsigned long long)f->pos);
        req.range = range;
    }
    struct ff_http_client_response resp;
    int rc = reg_request_on(c, c->blobs, what, scopes, &req, &resp, err);
    *status = 0;
    if (rc != 0)
        return rc;
    *status = resp.status;
    if (resp.status != 200 && resp.status != 206)
        rc = http_fail(c, what, &resp, NULL, err);
    ff_http_client_response_release(&resp);
    return rc;
}

/* Downloads into f, resuming after broken connections. */
static int fetch_loop(struct regclient *c, const char *what, const char *url,
                      const char *scopes, struct fetch *f, struct ff_err *err)
{
    for (unsigned resumes = 0;; resumes++) {
        long status = 0;
        uint64_t before = f->pos;
        int rc = fetch_attempt(c, what, url, scopes, f, &status, err);
        bool whole_on_range = f->ranged && (status == 200 || rc == FF_ETOOBIG);
        if (rc == 0 && !whole_on_range)
            return 0;
        bool broken = rc == FF_ENET || rc == FF_ETIMEOUT || whole_on_range;
        if (!broken || resumes >= REGCLIENT_FETCH_RESUMES)
            return rc != 0 ? rc : ff_err_set(err, FF_ENET, "%s: registry ignored Range", what);
        if (whole_on_range) {
            rc = fetch_restart(f, err);
            if (rc != 0)
                return rc;
        }
        c->stats.fetch_resumes++;
        ff_log_warn(NULL, "registry.fetch.resume", "what=%s from=%llu got=%llu", what,
                    (unsigned long long)f->pos, (unsigned long long)(f->pos - before));
        sleep_ms(REGCLIENT_RETRY_BASE_MS << resumes);
    }
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return ff_strndup(path, (size_t)(slash - path));
}

/* Checks the downloaded size and digest, syncs and renames into place. */
static int fetch_commit(const char *what, struct fetch *f, const struct ff_digest *digest,
                        int64_t expected_size, const char *dest_path, struct ff_err *err)
{
    struct ff_digest got;
    int rc = ff_digest_ctx_final(f->hash, &got, err);
    if (rc != 0)
        return rc;
    if (expected_size >= 0 && f->pos != (uint64_t)expected_size)
        return ff_err_set(err, FF_EINVAL, "%s: size mismatch (expected %lld bytes, got %llu)",
                          what, (long long)expected_size, (unsigned long long)f->pos);
    if (!ff_digest_equal(&got, digest)) {
        char ws[FF_DIGEST_STR_SIZE], gs[FF_DIGEST_STR_SIZE];
        ff_digest_format(digest, ws);
        ff_digest_format(&got, gs);
        return ff_err_set(err, FF_EINVAL, "%s: digest mismatch (expected %s, got %s)", what,
                          ws, gs);
    }
    if (fsync(f->fd) != 0)
        return ff_err_set(err, FF_EIO, "fsync \"%s\": %s", f->tmp, strerror(errno));
    if (rename(f->tmp, dest_path) != 0)
        return ff_err_set(err, FF_EIO, "rename to \"%s\": %s", dest_path, strerror(errno));
    char *dir = dir_of(dest_path);
    int dfd = dir != NULL ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
    return 0;
}

int regclient_blob_fetch(struct regclient *c, const char *repo, const struct ff_digest *digest,
                         int64_t expected_size, const char *dest_path, struct ff_err *err)
{
    int rc = regclient_repo_check(repo, err);
    if (rc != 0)
        return rc;
    if (expected_size > OCI_BLOB_SIZE_MAX)
        return ff_err_set(err, FF_ETOOBIG, "blob of %lld bytes, limit is %lld",
                          (long long)expected_size, (long long)OCI_BLOB_SIZE_MAX);
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(digest, ds);
    char what[FF_ERR_MSG_MAX];
    (void)snprintf(what, sizeof(what), "blob %s of \"%s\"", ds, repo);
    struct fetch f;
    memset(&f, 0, sizeof(f));
    f.fd = -1;
    f.cap = expected_size >= 0 ? (uint64_t)expected_size : (uint64_t)OCI_BLOB_SIZE_MAX;
    char *url = ff_asprintf("%s/v2/%s/blobs/%s", c->base, repo, ds);
    char *scopes = scope_pull(repo);
    char *tmp = ff_asprintf("%s.part.XXXXXX", dest_path);
    if (url == NULL || scopes == NULL || tmp == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    f.fd = mkostemp(tmp, O_CLOEXEC);
    if (f.fd < 0) {
        rc = ff_err_set(err, FF_EIO, "create a temporary file beside \"%s\": %s", dest_path,
                        strerror(errno));
        goto out;
    }
    f.tmp = tmp;
    rc = ff_digest_ctx_new(&f.hash, err);
    if (rc == 0)
        rc = fetch_loop(c, what, url, scopes, &f, err);
    if (rc == 0)
        rc = fetch_commit(what, &f, digest, expected_size, dest_path, err);
    c->stats.bytes_fetched += f.pos;
out:
    if (f.fd >= 0) {
        close(f.fd);
        if (rc != 0)
            (void)unlink(tmp);
    }
    ff_digest_ctx_free(f.hash);
    free(tmp);
    free(url);
    free(scopes);
    return rc;
}

/* ---- blob existence and mounts ------------------------------------------------------ */

static int blob_head(struct regclient *c, const char *repo, const char *scopes,
                     const struct ff_digest *digest, bool *exists, struct ff_err *err)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(digest, ds);
    char what[FF_ERR_MSG_MAX];
    (void)snprintf(what, sizeof(what), "blob %s of \"%s\"", ds, repo);
    char *url = ff_asprintf("%s/v2/%s/blobs/%s", c->base, repo, ds);
    if (url == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.method = "HEAD";
    req.url = url;
    struct ff_http_client_response resp;
    int rc = reg_request(c, what, scopes, &req, &resp, err);
    if (rc == 0) {
        if (resp.status == 200)
            *exists = true;
        else if (resp.status == 404)
            *exists = false;
        else
            rc = http_fail(c, what, &resp, NULL, err);
        ff_http_client_response_release(&resp);
    }
    free(url);
    return rc;
}

int regclient_blob_exists(struct regclient *c, const char *repo, const struct ff_digest *digest,
                          bool *exists, struct ff_err *err)
{
    int rc = regclient_repo_check(repo, err);
    if (rc != 0)
        return rc;
    char *scopes = scope_pull(repo);
    if (scopes == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    rc = blob_head(c, repo, scopes, digest, exists, err);
    free(scopes);
    return rc;
}

/* POST …/blobs/uploads/ (with ?mount=&from= when from is given): 201 is a
 * mount (*mounted), 202 an upload session at *location. */
static int upload_post(struct regclient *c, const char *repo, const char *scopes,
                       const struct ff_digest *digest, const char *from, bool *mounted,
                       char **location, struct ff_err *err)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(digest, ds);
    char what[FF_ERR_MSG_MAX];
    (void)snprintf(what, sizeof(what), "%s %s into \"%s\"", from != NULL ? "mount" : "upload",
                   ds, repo);
    char *url = from != NULL
                    ? ff_asprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", c->base, repo, ds,
                                  from)
                    : ff_asprintf("%s/v2/%s/blobs/uploads/", c->base, repo);
    if (url == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = url;
    struct ff_http_client_response resp;
    *mounted = false;
    *location = NULL;
    int rc = reg_request(c, what, scopes, &req, &resp, err);
    if (rc == 0) {
        if (resp.status == 201 && from != NULL) {
            *mounted = true;
            rc = digest_header_check(c, what, &resp, digest, err);
        } else if (resp.status == 202) {
            rc = location_resolve(c, ff_http_client_response_header(&resp, "Location"),
                                  location, err);
        } else {
            rc = http_fail(c, what, &resp, NULL, err);
        }
        ff_http_client_response_release(&resp);
    }
    free(url);
    return rc;
}

/* DELETE of an upload session we will not use; failures only logged. */
static void upload_cancel(struct regclient *c, const char *scopes, const char *location)
{
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.method = "DELETE";
    req.url = location;
    struct ff_http_client_response resp;
    struct ff_err err;
    if (reg_request(c, "upload cancel", scopes, &req, &resp, &err) != 0) {
        ff_log_warn(NULL, "registry.upload.cancel", "error=%s", err.msg);
        return;
    }
    if (resp.status != 204 && resp.status != 200 && resp.status != 404)
        ff_log_warn(NULL, "registry.upload.cancel", "status=%ld", resp.status);
    ff_http_client_response_release(&resp);
}

int regclient_blob_mount(struct regclient *c, const char *repo, const struct ff_digest *digest,
                         const char *from_repo, bool *mounted, struct ff_err *err)
{
    int rc = regclient_repo_check(repo, err);
    if (rc == 0)
        rc = regclient_repo_check(from_repo, err);
    if (rc != 0)
        return rc;
    char *scopes = scope_push(repo, from_repo);
    char *location = NULL;
    if (scopes == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    rc = upload_post(c, repo, scopes, digest, from_repo, mounted, &location, err);
    if (rc == 0 && *mounted)
        c->stats.blobs_mounted++;
    if (location != NULL)
        upload_cancel(c, scopes, location);
    free(location);
    free(scopes);
    return rc;
}

/* ---- blob upload -------------------------------------------------------------------- */

struct body_src {
    int fd;
    const char *path;
    uint64_t start, end, pos;
};

static int body_src_read(void *ctx, void *buf, size_t cap, size_t *got, struct ff_err *err)
{
    struct body_src *s = ctx;
    uint64_t left = s->end - s->pos;
    size_t want = left < cap ? (size_t)left : cap;
    *got = 0;
    while (want > 0) {
        ssize_t n = pread(s->fd, buf, want, (off_t)s->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return ff_err_set(err, FF_EIO, "read \"%s\": %s", s->path,
                              n < 0 ? strerror(errno) : "file shrank");
        s->pos += (uint64_t)n;
        *got = (size_t)n;
        break;
    }
    return 0;
}

static int body_src_rewind(void *ctx, struct ff_err *err)
{
    (void)err;
    struct body_src *s = ctx;
    s->pos = s->start;
    return 0;
}

/* Parses a Range header "0-<last>" (or "bytes=0-<last>") into the number
 * of bytes the registry holds. "0-0" is taken as nothing: the spec's form
 * cannot tell one byte from none. */
static int range_parse(const char *h, uint64_t *held)
{
    if (h == NULL)
        return FF_ENOTFOUND;
    if (strncasecmp(h, "bytes=", 6) == 0)
        h += 6;
    const char *dash = strchr(h, '-');
    if (dash == NULL || dash == h)
        return FF_EINVAL;
    char first[24];
    size_t n = (size_t)(dash - h);
    if (n >= sizeof(first))
        return FF_EINVAL;
    memcpy(first, h, n);
    first[n] = '\0';
    uint64_t a = 0, b = 0;
    if (ff_parse_u64(first, 0, &a) != 0 || ff_parse_u64(dash + 1, UINT64_MAX - 1, &b) != 0)
        return FF_EINVAL;
    *held = b == 0 ? 0 : b + 1;
    return 0;
}

/* Replaces *location with the response's Location, when it sent one. */
static int location_update(const struct regclient *c, const struct ff_http_client_response *resp,
                           char **location, struct ff_err *err)
{
    const char *h = ff_http_client_response_header(resp, "Location");
    if (h == NULL)
        return 0;
    char *abs = NULL;
    int rc = location_resolve(c, h, &abs, err);
    if (rc != 0)
        return rc;
    free(*location);
    *location = abs;
    return 0;
}

/* Asks the session where it stands (after a failed chunk). */
static int upload_status(struct regclient *c, const char *what, const char *scopes,
                         char **location, uint64_t *held, struct ff_err *err)
{
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.url = *location;
    struct ff_http_client_response resp;
    int rc = reg_request(c, what, scopes, &req, &resp, err);
    if (rc != 0)
        return rc;
    if (resp.status != 204 && resp.status != 200)
        rc = http_fail(c, what, &resp, NULL, err);
    else if (range_parse(ff_http_client_response_header(&resp, "Range"), held) != 0)
        *held = 0;
    if (rc == 0)
        rc = location_update(c, &resp, location, err);
    ff_http_client_response_release(&resp);
    return rc;
}

/* One PATCH of bytes [off, off+n). *status is the HTTP status (0 without
 * an answer); on 202 *held is what the registry acknowledged. */
static int chunk_send(struct regclient *c, const char *what, const char *scopes,
                      char **location, struct body_src *src, uint64_t off, uint64_t n,
                      long *status, uint64_t *held, struct ff_err *err)
{
    char crange[64];
    (void)snprintf(crange, sizeof(crange), "Content-Range: %llu-%llu", (unsigned long long)off,
                   (unsigned long long)(off + n - 1));
    const char *headers[] = {"Content-Type: application/octet-stream", crange};
    src->start = src->pos = off;
    src->end = off + n;
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.method = "PATCH";
    req.url = *location;
    req.headers = headers;
    req.n_headers = 2;
    req.body_read = body_src_read;
    req.body_rewind = body_src_rewind;
    req.body_ctx = src;
    req.body_size = n;
    struct ff_http_client_response resp;
    *status = 0;
    int rc = reg_request(c, what, scopes, &req, &resp, err);
    if (rc != 0)
        return rc;
    *status = resp.status;
    if (resp.status == 202) {
        if (range_parse(ff_http_client_response_header(&resp, "Range"), held) != 0)
            *held = off + n;
        rc = location_update(c, &resp, location, err);
    } else if (resp.status == 416) {
        if (range_parse(ff_http_client_response_header(&resp, "Range"), held) != 0)
            *held = UINT64_MAX; /* unknown: ask */
        rc = http_fail(c, what, &resp, NULL, err);
    } else {
        rc = http_fail(c, what, &resp, NULL, err);
    }
    ff_http_client_response_release(&resp);
    return rc;
}

/* Whether a failed chunk is worth sending again. */
static bool chunk_retryable(int rc, long status)
{
    if (rc == FF_ENET && status == 0)
        return true; /* connection broke */
    return rc == FF_ETIMEOUT || status == 416 || status == 429 || status >= 500;
}

/* PATCHes the file in chunks, resuming from the registry's Range. */
static int chunks_send(struct regclient *c, const char *what, const char *scopes,
                       char **location, struct body_src *src, uint64_t size, struct ff_err *err)
{
    uint64_t off = 0;
    unsigned retries = 0;
    while (off < size) {
        uint64_t n = size - off < c->chunk_size ? size - off : c->chunk_size;
        long status = 0;
        uint64_t held = 0;
        int rc = chunk_send(c, what, scopes, location, src, off, n, &status, &held, err);
        if (rc == 0) {
            if (held > size || held <= off)
                return ff_err_set(err, FF_ENET, "%s: registry acknowledged %llu bytes after a "
                                  "chunk at %llu of %llu", what, (unsigned long long)held,
                                  (unsigned long long)off, (unsigned long long)size);
            c->stats.chunks++;
            off = held;
            continue;
        }
        if (!chunk_retryable(rc, status) || retries >= REGCLIENT_CHUNK_RETRIES)
            return rc;
        ff_log_warn(NULL, "registry.chunk.retry", "what=%s offset=%llu status=%ld error=%s", what,
                    (unsigned long long)off, status, err->msg);
        sleep_ms(REGCLIENT_RETRY_BASE_MS << retries);
        retries++;
        c->stats.chunk_retries++;
        if (status != 416 || held == UINT64_MAX) {
            rc = upload_status(c, what, scopes, location, &held, err);
            if (rc != 0)
                return rc;
        }
        if (held > size)
            return ff_err_set(err, FF_ENET, "%s: registry holds %llu bytes of %llu", what,
                              (unsigned long long)held, (unsigned long long)size);
        off = held;
    }
    return 0;
}

/* The closing PUT ?digest=, with the whole blob as body when whole. */
static int upload_close(struct regclient *c, const char *what, const char *scopes,
                        const char *location, const struct ff_digest *digest,
                        struct body_src *whole, struct ff_err *err)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(digest, ds);
    char *url = ff_asprintf("%s%cdigest=%s", location, strchr(location, '?') ? '&' : '?', ds);
    if (url == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    const char *headers[] = {"Content-Type: application/octet-stream"};
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.url = url;
    req.headers = headers;
    req.n_headers = 1;
    if (whole != NULL && whole->end > 0) {
        req.body_read = body_src_read;
        req.body_rewind = body_src_rewind;
        req.body_ctx = whole;
        req.body_size = whole->end;
    }
    struct ff_http_client_response resp;
    int rc = reg_request(c, what, scopes, &req, &resp, err);
    if (rc == 0) {
        if (resp.status == 201 || resp.status == 204)
            rc = digest_header_check(c, what, &resp, digest, err);
        else
            rc = http_fail(c, what, &resp, NULL, err);
        ff_http_client_response_release(&resp);
    }
    free(url);
    return rc;
}

/* Uploads path into the session at *location (opening one when NULL). */
static int blob_upload(struct regclient *c, const char *repo, const char *scopes,
                       const struct ff_digest *digest, const char *path, char **location,
                       struct ff_err *err)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(digest, ds);
    char what[FF_ERR_MSG_MAX];
    (void)snprintf(what, sizeof(what), "upload %s into \"%s\"", ds, repo);
    struct body_src src;
    memset(&src, 0, sizeof(src));
    src.path = path;
    src.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (src.fd < 0)
        return ff_err_set(err, errno == ENOENT ? FF_ENOTFOUND : FF_EIO, "%s: open \"%s\": %s",
                          what, path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(src.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ff_err_set(err, FF_EIO, "%s: \"%s\" is not a regular file", what, path);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (*location == NULL) {
        bool mounted = false;
        rc = upload_post(c, repo, scopes, digest, NULL, &mounted, location, err);
        if (rc != 0)
            goto out;
        if (*location == NULL) {
            rc = ff_err_set(err, FF_ENET, "%s: no upload session", what);
            goto out;
        }
    }
    if (size < c->chunk_size) {
        src.start = src.pos = 0;
        src.end = size;
        rc = upload_close(c, what, scopes, *location, digest, &src, err);
    } else {
        rc = chunks_send(c, what, scopes, location, &src, size, err);
        if (rc == 0)
            rc = upload_close(c, what, scopes, *location, digest, NULL, err);
    }
    if (rc == 0) {
        c->stats.blobs_pushed++;
        c->stats.bytes_pushed += size;
    }
out:
    close(src.fd);
    return rc;
}

int regclient_blob_push(struct regclient *c, const char *repo, const struct ff_digest *digest,
                        const char *path, struct ff_err *err)
{
    int rc = regclient_repo_check(repo, err);
    if (rc != 0)
        return rc;
    char *scopes = scope_push(repo, NULL);
    char *location = NULL;
    if (scopes == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    rc = blob_upload(c, repo, scopes, digest, path, &location, err);
    if (rc != 0 && location != NULL)
        upload_cancel(c, scopes, location);
    free(location);
    free(scopes);
    return rc;
}

int regclient_blob_ensure(struct regclient *c, const char *repo, const struct ff_digest *digest,
                          const char *path, const char *from_repo, enum regclient_blob_how *how,
                          struct ff_err *err)
{
    int rc = regclient_repo_check(repo, err);
    if (rc == 0 && from_repo != NULL)
        rc = regclient_repo_check(from_repo, err);
    if (rc != 0)
        return rc;
    if (from_repo != NULL && strcmp(from_repo, repo) == 0)
        from_repo = NULL;
    char *scopes = scope_push(repo, from_repo);
    char *location = NULL;
    if (scopes == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    bool exists = false, mounted = false;
    rc = blob_head(c, repo, scopes, digest, &exists, err);
    if (rc == 0 && exists) {
        c->stats.blobs_skipped++;
        if (how != NULL)
            *how = REGCLIENT_BLOB_EXISTED;
        goto out;
    }
    if (rc == 0 && from_repo != NULL)
        rc = upload_post(c, repo, scopes, digest, from_repo, &mounted, &location, err);
    if (rc == 0 && mounted) {
        c->stats.blobs_mounted++;
        if (how != NULL)
            *how = REGCLIENT_BLOB_MOUNTED;
        goto out;
    }
    if (rc == 0 && path == NULL) {
        char ds[FF_DIGEST_STR_SIZE];
        ff_digest_format(digest, ds);
        rc = ff_err_set(err, FF_ENOTFOUND, "blob %s is not in \"%s\"%s%s and there is no local "
                        "copy to upload", ds, repo, from_repo != NULL ? " nor mountable from " : "",
                        from_repo != NULL ? from_repo : "");
    } else if (rc == 0) {
        /* A refused mount opened a session: the upload goes into it. */
        rc = blob_upload(c, repo, scopes, digest, path, &location, err);
    }
    if (rc == 0 && how != NULL)
        *how = REGCLIENT_BLOB_PUSHED;
    if (rc != 0 && location != NULL)
        upload_cancel(c, scopes, location);
out:
    free(location);
    free(scopes);
    return rc;
}
