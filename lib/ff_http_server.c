#include "ff_http_server.h"

#include "ff_buf.h"
#include "ff_err.h"
#include "ff_log.h"
#include "ff_str.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest method token kept; the longest standard one (OPTIONS) has 7. */
#define HTTP_METHOD_MAX 16
/* Routes one server holds; the registry needs about 30. */
#define HTTP_ROUTES_MAX 128
/* Segments in a pattern or a path; OCI repository names stay far below
 * this, and the cap keeps the matcher's work per request bounded. */
#define HTTP_SEGMENTS_MAX 128
/* Certificate chains and keys are a few KiB; anything larger is a mistake. */
#define HTTP_PEM_MAX ((size_t)256 * 1024)
/* Upper bounds for the configurable limits, so a typo cannot ask for a
 * 4 GiB pool per connection or a million threads. */
#define HTTP_MAX_HEADER_BYTES_LIMIT ((size_t)1024 * 1024)
#define HTTP_MAX_CONNECTIONS_LIMIT 65536u
#define HTTP_POOL_THREADS_LIMIT 256u
/* Longest message of an error body: one line for a person to read, not a
 * place for dumps; longer messages are cut. */
#define HTTP_ERROR_MESSAGE_MAX 1024
/* Buffer libmicrohttpd offers a streamed body's reader, as a hint. */
#define HTTP_STREAM_BLOCK ((size_t)32 * 1024)
/* TLS 1.2 and 1.3 only: every client we serve (curl, skopeo, docker,
 * the device agent) speaks 1.2 or better, and older versions are broken. */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* Longest libmicrohttpd log message kept to explain a failed start. */
#define HTTP_MHD_MSG_MAX 256

struct http_route {
    char method[HTTP_METHOD_MAX];
    char *pattern;
    struct ff_http_handler handler;
    void *userdata;
};

struct ff_http_server {
    struct ff_http_server_config cfg; /* string fields point at the copies below */
    char *bind_addr;
    char *cert_path;
    char *key_path;
    char *cert_pem;
    char *key_pem;
    size_t key_len;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct http_route *routes;
    size_t nroutes;
    struct MHD_Daemon *daemon;
    int quiesced_fd; /* listening socket handed back by MHD_quiesce_daemon */
    uint16_t port;
    atomic_bool stopping;
    pthread_mutex_t lock; /* guards inflight and mhd_msg */
    pthread_cond_t idle;  /* signalled when inflight drops to 0 */
    unsigned inflight;
    char mhd_msg[HTTP_MHD_MSG_MAX];
};

struct http_param {
    const char *name; /* into the route's pattern */
    size_t name_len;
    char *value;
};

struct http_header {
    char *name;
    char *value;
};

struct ff_http_request {
    struct ff_http_server *srv;
    struct MHD_Connection *conn;
    const struct http_route *route;
    char id[FF_LOG_REQID_SIZE];
    char method[HTTP_METHOD_MAX];
    char ip[INET6_ADDRSTRLEN];
    char *raw_path; /* as received, up to '?' */
    char *path;     /* percent-decoded by libmicrohttpd */
    struct timespec start;
    bool started;      /* the access handler has seen the headers */
    bool body_refused; /* the rest of the body is being dropped */
    bool queued;       /* a response went to libmicrohttpd */
    bool has_length;
    bool chunked; /* a body of unknown length (Transfer-Encoding) */
    uint64_t content_length;
    uint64_t bytes_in;
    uint64_t drained;
    uint64_t bytes_out;
    struct ff_buf body;
    struct http_param params[FF_HTTP_CAPTURES_MAX];
    size_t nparams;
    struct http_header headers[FF_HTTP_RESPONSE_HEADERS_MAX];
    size_t nheaders;
    struct MHD_Response *response; /* made, not yet queued */
    unsigned status;
    uint64_t pending_out; /* body bytes of the made response */
    void *state;
    void (*state_free)(void *state);
};

/* ---------------------------------------------------------------------- */
/* Patterns and paths                                                      */

struct span {
    const char *p;
    size_t n;
};

enum seg_kind { SEG_LITERAL, SEG_ONE, SEG_PLUS };

struct pat_seg {
    enum seg_kind kind;
    struct span text; /* literal text, or the capture's name */
};

/* Splits s (which starts with '/') into the segments between slashes.
 * Returns the count, or HTTP_SEGMENTS_MAX + 1 when there are more. */
static size_t split_segments(const char *s, size_t len, struct span *out)
{
    size_t n = 0;
    size_t i = 1;
    for (;;) {
        if (n == HTTP_SEGMENTS_MAX)
            return HTTP_SEGMENTS_MAX + 1;
        const char *slash = memchr(s + i, '/', len - i);
        size_t end = slash != NULL ? (size_t)(slash - s) : len;
        out[n].p = s + i;
        out[n].n = end - i;
        n++;
        if (slash == NULL)
            return n;
        i = end + 1;
    }
}

static bool span_is(struct span a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && memcmp(a.p, lit, n) == 0;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Parses a pattern into segments. Returns the count or FF_EINVAL. */
static int parse_pattern(const char *pattern, struct pat_seg *segs, size_t *nsegs,
                         struct ff_err *err)
{
    size_t len = strlen(pattern);
    if (len == 0 || pattern[0] != '/')
        return ff_err_set(err, FF_EINVAL, "route pattern \"%s\": expected a leading '/'", pattern);
    struct span spans[HTTP_SEGMENTS_MAX];
    size_t n = split_segments(pattern, len, spans);
    if (n > HTTP_SEGMENTS_MAX)
        return ff_err_set(err, FF_EINVAL, "route pattern \"%s\": more than %d segments", pattern,
                          HTTP_SEGMENTS_MAX);
    size_t ncaps = 0;
    bool plus = false;
    for (size_t i = 0; i < n; i++) {
        struct span s = spans[i];
        if (s.n > 0 && s.p[0] == '{') {
            if (s.n < 3 || s.p[s.n - 1] != '}')
                return ff_err_set(err, FF_EINVAL,
                                  "route pattern \"%s\": segment %zu: expected {name} or "
                                  "{name+}",
                                  pattern, i + 1);
            struct span name = {s.p + 1, s.n - 2};
            enum seg_kind kind = SEG_ONE;
            if (name.p[name.n - 1] == '+') {
                kind = SEG_PLUS;
                name.n--;
                if (plus)
                    return ff_err_set(err, FF_EINVAL,
                                      "route pattern \"%s\": expected at most one {name+}",
                                      pattern);
                plus = true;
            }
            if (name.n == 0 || name.n > FF_HTTP_NAME_MAX)
                return ff_err_set(err, FF_EINVAL,
                                  "route pattern \"%s\": segment %zu: expected a capture "
                                  "name of 1 to %d characters",
                                  pattern, i + 1, FF_HTTP_NAME_MAX);
            for (size_t k = 0; k < name.n; k++) {
                if (!is_name_char(name.p[k]))
                    return ff_err_set(err, FF_EINVAL,
                                      "route pattern \"%s\": segment %zu: expected a "
                                      "capture name of [A-Za-z0-9_]",
                                      pattern, i + 1);
            }
            for (size_t k = 0; k < i; k++) {
                if (segs[k].kind != SEG_LITERAL && segs[k].text.n == name.n &&
                    memcmp(segs[k].text.p, name.p, name.n) == 0)
                    return ff_err_set(err, FF_EINVAL,
                                      "route pattern \"%s\": capture \"%.*s\" appears twice",
                                      pattern, (int)name.n, name.p);
            }
            if (++ncaps > FF_HTTP_CAPTURES_MAX)
                return ff_err_set(err, FF_EINVAL, "route pattern \"%s\": more than %d captures",
                                  pattern, FF_HTTP_CAPTURES_MAX);
            segs[i].kind = kind;
            segs[i].text = name;
            continue;
        }
        if (memchr(s.p, '{', s.n) != NULL || memchr(s.p, '}', s.n) != NULL)
            return ff_err_set(err, FF_EINVAL,
                              "route pattern \"%s\": segment %zu: a capture must be the "
                              "whole segment",
                              pattern, i + 1);
        if (span_is(s, ".") || span_is(s, ".."))
            return ff_err_set(err, FF_EINVAL,
                              "route pattern \"%s\": segment %zu: \".\" and \"..\" are "
                              "never routable",
                              pattern, i + 1);
        if (s.n == 0 && i + 1 < n)
            return ff_err_set(err, FF_EINVAL,
                              "route pattern \"%s\": empty segment (\"//\") before the end",
                              pattern);
        segs[i].kind = SEG_LITERAL;
        segs[i].text = s;
    }
    *nsegs = n;
    return 0;
}

int ff_http_pattern_check(const char *pattern, struct ff_err *err)
{
    struct pat_seg segs[HTTP_SEGMENTS_MAX];
    size_t n;
    return parse_pattern(pattern, segs, &n, err);
}

int ff_http_path_check(const char *path, size_t len, struct ff_err *err)
{
    if (len == 0 || path[0] != '/')
        return ff_err_set(err, FF_EINVAL, "path: expected a leading '/'");
    if (memchr(path, '\0', len) != NULL)
        return ff_err_set(err, FF_EINVAL, "path: holds a NUL byte");
    struct span spans[HTTP_SEGMENTS_MAX];
    size_t n = split_segments(path, len, spans);
    if (n > HTTP_SEGMENTS_MAX)
        return ff_err_set(err, FF_EINVAL, "path: more than %d segments", HTTP_SEGMENTS_MAX);
    for (size_t i = 0; i < n; i++) {
        if (spans[i].n == 0 && i + 1 < n)
            return ff_err_set(err, FF_EINVAL, "path: empty segment (\"//\")");
        if (span_is(spans[i], ".") || span_is(spans[i], ".."))
            return ff_err_set(err, FF_EINVAL, "path: \".\" or \"..\" segment");
    }
    return 0;
}

static bool seg_matches(const struct pat_seg *ps, struct span s)
{
    if (ps->kind == SEG_LITERAL)
        return ps->text.n == s.n && memcmp(ps->text.p, s.p, s.n) == 0;
    return s.n > 0;
}

bool ff_http_pattern_match(const char *pattern, const char *path,
                           struct ff_http_capture caps[FF_HTTP_CAPTURES_MAX], size_t *ncaps)
{
    struct pat_seg ps[HTTP_SEGMENTS_MAX];
    size_t m = 0;
    if (parse_pattern(pattern, ps, &m, NULL) != 0)
        return false;
    size_t len = strlen(path);
    if (len == 0 || path[0] != '/')
        return false;
    struct span s[HTTP_SEGMENTS_MAX];
    size_t n = split_segments(path, len, s);
    if (n > HTTP_SEGMENTS_MAX)
        return false;

    size_t plus = m;
    for (size_t i = 0; i < m; i++) {
        if (ps[i].kind == SEG_PLUS)
            plus = i;
    }
    /* Pattern segment i matches path segment i before the {x+}; after it,
     * pattern segment i matches path segment i + shift, so the fixed
     * suffix lines up with the end of the path. */
    size_t shift = 0;
    if (plus == m) {
        if (n != m)
            return false;
    } else {
        if (n < m)
            return false;
        shift = n - m;
    }
    size_t nc = 0;
    for (size_t i = 0; i < m; i++) {
        if (i == plus) {
            /* Path segments plus .. plus+shift, all non-empty. */
            for (size_t k = plus; k <= plus + shift; k++) {
                if (s[k].n == 0)
                    return false;
            }
            const char *end = s[plus + shift].p + s[plus + shift].n;
            caps[nc].name = ps[i].text.p;
            caps[nc].name_len = ps[i].text.n;
            caps[nc].value = s[plus].p;
            caps[nc].value_len = (size_t)(end - s[plus].p);
            nc++;
            continue;
        }
        struct span seg = s[i > plus && plus < m ? i + shift : i];
        if (!seg_matches(&ps[i], seg))
            return false;
        if (ps[i].kind == SEG_ONE) {
            caps[nc].name = ps[i].text.p;
            caps[nc].name_len = ps[i].text.n;
            caps[nc].value = seg.p;
            caps[nc].value_len = seg.n;
            nc++;
        }
    }
    *ncaps = nc;
    return true;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (!is_tchar((unsigned char)*s))
            return false;
    }
    return true;
}

int ff_http_header_check(const char *name, const char *value, struct ff_err *err)
{
    if (!is_token(name))
        return ff_err_set(err, FF_EINVAL, "response header name \"%s\": expected a token", name);
    static const char *const reserved[] = {"Content-Length", "Transfer-Encoding", "Connection",
                                           "Date", "X-Request-Id"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        if (strcasecmp(name, reserved[i]) == 0)
            return ff_err_set(err, FF_EINVAL,
                              "response header \"%s\": set by the server, not by handlers", name);
    }
    for (const char *p = value; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return ff_err_set(err, FF_EINVAL,
                              "response header \"%s\": value holds control character 0x%02x", name,
                              c);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Server set-up                                                           */

void ff_http_server_config_init(struct ff_http_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->bind_addr = FF_HTTP_DEFAULT_BIND;
    cfg->max_connections = FF_HTTP_DEFAULT_MAX_CONNECTIONS;
    cfg->max_per_ip = FF_HTTP_DEFAULT_MAX_PER_IP;
    cfg->timeout_seconds = FF_HTTP_DEFAULT_TIMEOUT_SECONDS;
    cfg->max_header_bytes = FF_HTTP_DEFAULT_MAX_HEADER_BYTES;
    cfg->threading = FF_HTTP_THREAD_PER_CONNECTION;
    cfg->pool_threads = FF_HTTP_DEFAULT_POOL_THREADS;
}

/* Reads a whole PEM file into a NUL-terminated malloc'd string. */
static int read_pem(const char *path, const char *what, char **out, size_t *out_len,
                    struct ff_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "cannot read %s \"%s\": %s", what, path, strerror(errno));
    struct ff_buf b;
    ff_buf_init(&b, HTTP_PEM_MAX);
    int rc = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ff_err_set(err, FF_EIO, "cannot read %s \"%s\": %s", what, path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        rc = ff_buf_append(&b, chunk, (size_t)n);
        if (rc == FF_ETOOBIG) {
            rc = ff_err_set(err, FF_ETOOBIG, "%s \"%s\": larger than %zu bytes", what, path,
                            HTTP_PEM_MAX);
            goto out;
        }
        if (rc != 0) {
            rc = ff_err_set(err, rc, "%s \"%s\": out of memory", what, path);
            goto out;
        }
    }
    *out_len = b.len;
    *out = ff_buf_steal(&b);
    if (*out == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "%s \"%s\": out of memory", what, path);
out:
    OPENSSL_cleanse(chunk, sizeof(chunk));
    if (rc != 0 && b.data != NULL)
        OPENSSL_cleanse(b.data, b.len);
    ff_buf_release(&b);
    close(fd);
    return rc;
}

/* Refuses to prompt for a pass phrase: keys must be unencrypted. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* Checks with OpenSSL that the certificate and key parse and belong
 * together, so that a bad file is named at start-up instead of failing
 * every handshake. */
static int check_tls_files(const struct ff_http_server *srv, struct ff_err *err)
{
    int rc = 0;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    BIO *cb = BIO_new_mem_buf(srv->cert_pem, -1);
    BIO *kb = BIO_new_mem_buf(srv->key_pem, -1);
    if (cb == NULL || kb == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "tls: out of memory");
        goto out;
    }
    cert = PEM_read_bio_X509(cb, NULL, no_password, NULL);
    if (cert == NULL) {
        rc = ff_err_set(err, FF_EINVAL, "certificate \"%s\": expected a PEM certificate",
                        srv->cert_path);
        goto out;
    }
    key = PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL);
    if (key == NULL) {
        rc = ff_err_set(err, FF_EINVAL, "key \"%s\": expected an unencrypted PEM private key",
                        srv->key_path);
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        rc = ff_err_set(err, FF_EINVAL, "key \"%s\": does not match certificate \"%s\"",
                        srv->key_path, srv->cert_path);
        goto out;
    }
out:
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

static int parse_bind(struct ff_http_server *srv, struct ff_err *err)
{
    memset(&srv->addr, 0, sizeof(srv->addr));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&srv->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&srv->addr;
    if (inet_pton(AF_INET, srv->bind_addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(srv->cfg.port);
        srv->addr_len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, srv->bind_addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(srv->cfg.port);
        srv->addr_len = sizeof(*in6);
        return 0;
    }
    return ff_err_set(err, FF_EINVAL,
                      "bind address \"%s\": expected an IPv4 or IPv6 address literal",
                      srv->bind_addr);
}

/* Copies cfg with zero limits replaced by their defaults, and checks it. */
static int take_config(struct ff_http_server *srv, const struct ff_http_server_config *cfg,
                       struct ff_err *err)
{
    srv->cfg = *cfg;
    struct ff_http_server_config *c = &srv->cfg;
    if (c->max_connections == 0)
        c->max_connections = FF_HTTP_DEFAULT_MAX_CONNECTIONS;
    if (c->max_per_ip == 0)
        c->max_per_ip = FF_HTTP_DEFAULT_MAX_PER_IP;
    if (c->timeout_seconds == 0)
        c->timeout_seconds = FF_HTTP_DEFAULT_TIMEOUT_SECONDS;
    if (c->max_header_bytes == 0)
        c->max_header_bytes = FF_HTTP_DEFAULT_MAX_HEADER_BYTES;
    if (c->pool_threads == 0)
        c->pool_threads = FF_HTTP_DEFAULT_POOL_THREADS;
    if (c->cert_path == NULL || c->cert_path[0] == '\0' || c->key_path == NULL ||
        c->key_path[0] == '\0')
        return ff_err_set(err, FF_EINVAL,
                          "http server: expected both a certificate and a key path (TLS is "
                          "mandatory)");
    if (c->max_connections > HTTP_MAX_CONNECTIONS_LIMIT)
        return ff_err_set(err, FF_EINVAL, "max connections %u: expected at most %u",
                          c->max_connections, HTTP_MAX_CONNECTIONS_LIMIT);
    if (c->max_per_ip > c->max_connections)
        return ff_err_set(err, FF_EINVAL,
                          "max connections per ip %u: expected at most max connections (%u)",
                          c->max_per_ip, c->max_connections);
    if (c->max_header_bytes < FF_HTTP_MIN_HEADER_BYTES ||
        c->max_header_bytes > HTTP_MAX_HEADER_BYTES_LIMIT)
        return ff_err_set(err, FF_EINVAL, "max header bytes %zu: expected %zu to %zu",
                          c->max_header_bytes, FF_HTTP_MIN_HEADER_BYTES,
                          HTTP_MAX_HEADER_BYTES_LIMIT);
    if (c->threading != FF_HTTP_THREAD_PER_CONNECTION && c->threading != FF_HTTP_THREAD_POOL)
        return ff_err_set(err, FF_EINVAL, "threading %d: expected per-connection or pool",
                          (int)c->threading);
    if (c->pool_threads > HTTP_POOL_THREADS_LIMIT)
        return ff_err_set(err, FF_EINVAL, "pool threads %u: expected at most %u", c->pool_threads,
                          HTTP_POOL_THREADS_LIMIT);
    srv->bind_addr = strdup(c->bind_addr != NULL ? c->bind_addr : FF_HTTP_DEFAULT_BIND);
    srv->cert_path = strdup(c->cert_path);
    srv->key_path = strdup(c->key_path);
    if (srv->bind_addr == NULL || srv->cert_path == NULL || srv->key_path == NULL)
        return ff_err_set(err, FF_ENOMEM, "http server: out of memory");
    c->bind_addr = srv->bind_addr;
    c->cert_path = srv->cert_path;
    c->key_path = srv->key_path;
    return parse_bind(srv, err);
}

int ff_http_server_new(const struct ff_http_server_config *cfg, struct ff_http_server **out,
                       struct ff_err *err)
{
    struct ff_http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return ff_err_set(err, FF_ENOMEM, "http server: out of memory");
    srv->quiesced_fd = -1;
    atomic_init(&srv->stopping, false);
    int rc = FF_ENOMEM;
    pthread_condattr_t ca;
    if (pthread_mutex_init(&srv->lock, NULL) != 0) {
        free(srv);
        return ff_err_set(err, FF_ENOMEM, "http server: cannot make a mutex");
    }
    if (pthread_condattr_init(&ca) != 0) {
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return ff_err_set(err, FF_ENOMEM, "http server: cannot make a condition variable");
    }
    bool cond_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                   pthread_cond_init(&srv->idle, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!cond_ok) {
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return ff_err_set(err, FF_ENOMEM, "http server: cannot make a condition variable");
    }
    rc = take_config(srv, cfg, err);
    if (rc != 0)
        goto fail;
    size_t cert_len;
    rc = read_pem(srv->cert_path, "certificate", &srv->cert_pem, &cert_len, err);
    if (rc != 0)
        goto fail;
    rc = read_pem(srv->key_path, "key", &srv->key_pem, &srv->key_len, err);
    if (rc != 0)
        goto fail;
    rc = check_tls_files(srv, err);
    if (rc != 0)
        goto fail;
    *out = srv;
    return 0;
fail:
    ff_http_server_free(srv);
    return rc;
}

static bool method_valid(const char *method)
{
    return is_token(method) && strlen(method) < HTTP_METHOD_MAX;
}

int ff_http_server_route(struct ff_http_server *srv, const char *method, const char *pattern,
                         const struct ff_http_handler *handler, void *userdata, struct ff_err *err)
{
    if (srv->daemon != NULL)
        return ff_err_set(err, FF_EBUSY, "route \"%s %s\": server already started", method,
                          pattern);
    if (!method_valid(method))
        return ff_err_set(err, FF_EINVAL,
                          "route method \"%s\": expected an HTTP token of under %d characters",
                          method, HTTP_METHOD_MAX);
    int rc = ff_http_pattern_check(pattern, err);
    if (rc != 0)
        return rc;
    const struct ff_http_handler *h = handler;
    if (h->body_mode == FF_HTTP_BODY_BUFFER) {
        if (h->on_request == NULL)
            return ff_err_set(err, FF_EINVAL, "route \"%s %s\": BUFFER mode expects on_request",
                              method, pattern);
        if (h->max_body > FF_HTTP_BUFFER_MAX)
            return ff_err_set(err, FF_EINVAL,
                              "route \"%s %s\": max body %" PRIu64 " bytes: BUFFER mode "
                              "allows at most %" PRIu64 " (use STREAM)",
                              method, pattern, h->max_body, FF_HTTP_BUFFER_MAX);
    } else if (h->body_mode == FF_HTTP_BODY_STREAM) {
        if (h->on_complete == NULL || (h->max_body > 0 && h->on_body == NULL))
            return ff_err_set(err, FF_EINVAL,
                              "route \"%s %s\": STREAM mode expects on_complete, and on_body "
                              "when a body is allowed",
                              method, pattern);
    } else {
        return ff_err_set(err, FF_EINVAL, "route \"%s %s\": unknown body mode %d", method, pattern,
                          (int)h->body_mode);
    }
    for (size_t i = 0; i < srv->nroutes; i++) {
        if (strcmp(srv->routes[i].method, method) == 0 &&
            strcmp(srv->routes[i].pattern, pattern) == 0)
            return ff_err_set(err, FF_EEXIST, "route \"%s %s\": already added", method, pattern);
    }
    if (srv->nroutes == HTTP_ROUTES_MAX)
        return ff_err_set(err, FF_ETOOBIG, "route \"%s %s\": more than %d routes", method, pattern,
                          HTTP_ROUTES_MAX);
    struct http_route *nr = realloc(srv->routes, (srv->nroutes + 1) * sizeof(*nr));
    if (nr == NULL)
        return ff_err_set(err, FF_ENOMEM, "route \"%s %s\": out of memory", method, pattern);
    srv->routes = nr;
    struct http_route *r = &nr[srv->nroutes];
    memset(r, 0, sizeof(*r));
    r->pattern = strdup(pattern);
    if (r->pattern == NULL)
        return ff_err_set(err, FF_ENOMEM, "route \"%s %s\": out of memory", method, pattern);
    ff_strlcpy(r->method, method, sizeof(r->method));
    r->handler = *h;
    r->userdata = userdata;
    srv->nroutes++;
    return 0;
}

/* Finds the route for method + path (already checked). Returns 200 with
 * *route and caps filled, 404, or 405 with allow filled. */
static unsigned route_find(const struct ff_http_server *srv, const char *method, const char *path,
                           const struct http_route **route,
                           struct ff_http_capture caps[FF_HTTP_CAPTURES_MAX], size_t *ncaps,
                           char *allow, size_t allow_size)
{
    bool other = false;
    size_t used = 0;
    if (allow_size > 0)
        allow[0] = '\0';
    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct http_route *r = &srv->routes[i];
        struct ff_http_capture c[FF_HTTP_CAPTURES_MAX];
        size_t nc;
        if (!ff_http_pattern_match(r->pattern, path, c, &nc))
            continue;
        if (strcmp(r->method, method) == 0) {
            *route = r;
            memcpy(caps, c, nc * sizeof(c[0]));
            *ncaps = nc;
            return 200;
        }
        other = true;
        /* Each method once, in the order the routes were added. */
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) {
            seen = strcmp(srv->routes[k].method, r->method) == 0 &&
                   ff_http_pattern_match(srv->routes[k].pattern, path, c, &nc);
        }
        if (seen || allow_size == 0)
            continue;
        int n = snprintf(allow + used, allow_size - used, "%s%s", used > 0 ? ", " : "", r->method);
        if (n > 0 && (size_t)n < allow_size - used)
            used += (size_t)n;
        else
            allow[used] = '\0';
    }
    return other ? 405 : 404;
}

unsigned ff_http_server_route_lookup(const struct ff_http_server *srv, const char *method,
                                     const char *path, char *allow, size_t allow_size)
{
    if (allow_size > 0)
        allow[0] = '\0';
    if (ff_http_path_check(path, strlen(path), NULL) != 0)
        return 400;
    const struct http_route *r;
    struct ff_http_capture caps[FF_HTTP_CAPTURES_MAX];
    size_t nc;
    return route_find(srv, method, path, &r, caps, &nc, allow, allow_size);
}

/* ---------------------------------------------------------------------- */
/* Requests                                                                */

static uint64_t elapsed_us(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us =
        (int64_t)(now.tv_sec - start->tv_sec) * 1000000 + (now.tv_nsec - start->tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

static void request_free(struct ff_http_request *req)
{
    if (req->state_free != NULL)
        req->state_free(req->state);
    if (req->response != NULL)
        MHD_destroy_response(req->response);
    for (size_t i = 0; i < req->nparams; i++)
        free(req->params[i].value);
    for (size_t i = 0; i < req->nheaders; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    ff_buf_release(&req->body);
    free(req->raw_path);
    free(req->path);
    free(req);
}

static bool answered(const struct ff_http_request *req)
{
    return req->response != NULL || req->queued;
}

/* The server's own error answers: code and message for each status. */
static const struct {
    unsigned status;
    const char *code;
    const char *message;
} status_texts[] = {
    {400, "BAD_REQUEST", "bad request"},
    {401, "UNAUTHORIZED", "authentication required"},
    {403, "DENIED", "access denied"},
    {404, "NOT_FOUND", "not found"},
    {405, "METHOD_NOT_ALLOWED", "method not allowed"},
    {409, "CONFLICT", "conflict"},
    {413, "TOO_LARGE", "body too large"},
    {416, "RANGE_NOT_SATISFIABLE", "range not satisfiable"},
    {501, "NOT_IMPLEMENTED", "not implemented"},
    {503, "UNAVAILABLE", "service unavailable"},
};

static const char *code_for_status(unsigned status)
{
    for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]); i++) {
        if (status_texts[i].status == status)
            return status_texts[i].code;
    }
    return "INTERNAL";
}

static const char *message_for_status(unsigned status)
{
    for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]); i++) {
        if (status_texts[i].status == status)
            return status_texts[i].message;
    }
    return "internal error";
}

static unsigned status_for_error(int code)
{
    switch (code) {
    case FF_EINVAL: return 400;
    case FF_EAUTH: return 401;
    case FF_EDENIED: return 403;
    case FF_ENOTFOUND: return 404;
    case FF_EEXIST:
    case FF_ECONFLICT: return 409;
    case FF_ETOOBIG: return 413;
    case FF_ERANGE: return 416;
    case FF_EBUSY: return 503;
    default: return 500;
    }
}

/* Answers with the server's own JSON error. Failing to make even this
 * answer leaves the request unanswered, and the caller closes it. */
static void answer_error(struct ff_http_request *req, unsigned status, const char *msg)
{
    if (answered(req))
        return;
    if (ff_http_respond_error(req, status, code_for_status(status), "%s", msg) != 0)
        ff_log_error(req->id, "http.respond", "status=%u error=%s", status, "out of memory");
}

/* After a handler callback: supplies the answer it owed, if any. */
static void after_callback(struct ff_http_request *req, const char *callback, int rc,
                           bool must_answer)
{
    if (answered(req))
        return;
    if (rc != 0) {
        unsigned status = status_for_error(rc);
        ff_log_info(req->id, "http.handler", "route=%s callback=%s rc=%s status=%u",
                    req->route->pattern, callback, ff_err_name(rc), status);
        answer_error(req, status, message_for_status(status));
    } else if (must_answer) {
        ff_log_error(req->id, "http.handler", "route=%s callback=%s error=%s", req->route->pattern,
                     callback, "returned 0 without answering");
        answer_error(req, 500, "internal error");
    }
}

static enum MHD_Result queue_answer(struct ff_http_request *req)
{
    if (req->response == NULL)
        return req->queued ? MHD_YES : MHD_NO;
    enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->response);
    MHD_destroy_response(req->response);
    req->response = NULL;
    if (r != MHD_YES) {
        ff_log_error(req->id, "http.respond", "status=%u error=%s", req->status,
                     "libmicrohttpd refused the response");
        return MHD_NO;
    }
    req->queued = true;
    req->bytes_out += req->pending_out;
    return MHD_YES;
}

struct nul_scan {
    bool found;
};

static enum MHD_Result scan_for_nul(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct nul_scan *scan = cls;
    if ((key != NULL && strlen(key) != key_size) ||
        (value != NULL && strlen(value) != value_size)) {
        scan->found = true;
        return MHD_NO;
    }
    return MHD_YES;
}

/* The headers are in: check the path, route, check the body's size, and
 * let a STREAM handler look at the request. May answer at once. */
static void begin_request(struct ff_http_request *req, const char *url, const char *method)
{
    struct ff_http_server *srv = req->srv;
    const char *cl =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (cl != NULL && te == NULL && ff_parse_u64(cl, UINT64_MAX, &req->content_length) == 0)
        req->has_length = true;
    req->chunked = te != NULL;
    if (!method_valid(method)) {
        answer_error(req, 501, "method not implemented");
        return;
    }
    ff_strlcpy(req->method, method, sizeof(req->method));
    req->path = strdup(url);
    if (req->path == NULL) {
        answer_error(req, 500, "out of memory");
        return;
    }
    /* libmicrohttpd turns %00 into a NUL that silently ends the path. */
    if (req->raw_path != NULL && strstr(req->raw_path, "%00") != NULL) {
        /* Log the path as received, not cut short at the NUL. */
        free(req->path);
        req->path = NULL;
        answer_error(req, 400, "path: holds a NUL byte");
        return;
    }
    struct ff_err perr;
    ff_err_clear(&perr);
    if (ff_http_path_check(req->path, strlen(req->path), &perr) != 0) {
        answer_error(req, 400, perr.msg);
        return;
    }
    struct nul_scan scan = {false};
    MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND | MHD_HEADER_KIND, scan_for_nul,
                                &scan);
    if (scan.found) {
        answer_error(req, 400, "query or header holds a NUL byte");
        return;
    }

    struct ff_http_capture caps[FF_HTTP_CAPTURES_MAX];
    size_t ncaps = 0;
    char allow[256];
    unsigned st =
        route_find(srv, req->method, req->path, &req->route, caps, &ncaps, allow, sizeof(allow));
    if (st == 405) {
        if (ff_http_response_header(req, "Allow", allow) != 0) {
            answer_error(req, 500, "out of memory");
            return;
        }
        answer_error(req, 405, message_for_status(405));
        return;
    }
    if (st != 200) {
        answer_error(req, 404, message_for_status(404));
        return;
    }
    for (size_t i = 0; i < ncaps; i++) {
        req->params[i].name = caps[i].name;
        req->params[i].name_len = caps[i].name_len;
        req->params[i].value = ff_strndup(caps[i].value, caps[i].value_len);
        if (req->params[i].value == NULL) {
            answer_error(req, 500, "out of memory");
            return;
        }
        req->nparams++;
    }

    const struct ff_http_handler *h = &req->route->handler;
    if ((req->has_length && req->content_length > h->max_body) ||
        (h->max_body == 0 && req->chunked)) {
        char msg[128];
        (void)snprintf(msg, sizeof(msg), "body larger than %" PRIu64 " bytes", h->max_body);
        answer_error(req, 413, msg);
        return;
    }
    if (h->body_mode == FF_HTTP_BODY_BUFFER) {
        ff_buf_init(&req->body, (size_t)h->max_body);
        return;
    }
    if (h->on_headers != NULL)
        after_callback(req, "on_headers", h->on_headers(req), false);
}

/* Drops body bytes after the body was refused; false to close instead. */
static bool drain(struct ff_http_request *req, size_t n)
{
    req->drained += n;
    if (req->drained > FF_HTTP_DRAIN_MAX)
        return false;
    if (req->has_length && req->content_length > req->bytes_in &&
        req->content_length - req->bytes_in > FF_HTTP_DRAIN_MAX - req->drained)
        return false;
    return true;
}

static enum MHD_Result take_body(struct ff_http_request *req, const char *data, size_t n)
{
    if (__builtin_add_overflow(req->bytes_in, (uint64_t)n, &req->bytes_in))
        return MHD_NO;
    if (req->body_refused || answered(req) || req->route == NULL)
        return drain(req, n) ? MHD_YES : MHD_NO;
    const struct ff_http_handler *h = &req->route->handler;
    if (req->bytes_in > h->max_body) {
        char msg[128];
        (void)snprintf(msg, sizeof(msg), "body larger than %" PRIu64 " bytes", h->max_body);
        answer_error(req, 413, msg);
        req->body_refused = true;
        return drain(req, n) ? MHD_YES : MHD_NO;
    }
    if (h->body_mode == FF_HTTP_BODY_BUFFER) {
        if (ff_buf_append(&req->body, data, n) != 0) {
            answer_error(req, 500, "out of memory");
            req->body_refused = true;
            return drain(req, n) ? MHD_YES : MHD_NO;
        }
        return MHD_YES;
    }
    int rc = h->on_body(req, data, n);
    if (rc != 0 || answered(req)) {
        after_callback(req, "on_body", rc, true);
        req->body_refused = true;
        return drain(req, 0) ? MHD_YES : MHD_NO;
    }
    return MHD_YES;
}

static void finish_request(struct ff_http_request *req)
{
    if (answered(req) || req->body_refused || req->route == NULL)
        return; /* no route means the error answer could not be made: close */
    const struct ff_http_handler *h = &req->route->handler;
    if (h->body_mode == FF_HTTP_BODY_BUFFER)
        after_callback(req, "on_request", h->on_request(req), true);
    else
        after_callback(req, "on_complete", h->on_complete(req), true);
}

static bool expects_body(const struct ff_http_request *req)
{
    return (req->has_length && req->content_length > 0) || req->chunked;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    struct ff_http_request *req = *con_cls;
    if (req == NULL)
        return MHD_NO; /* out of memory when the request line came in */
    req->conn = conn;
    if (!req->started) {
        req->started = true;
        begin_request(req, url, method);
        /* An answer made before the body is read (401, 404, 416 ...): a
         * declared body small enough to drain is read and dropped first, so
         * the client, still sending, gets the answer on an open connection;
         * a larger or chunked one gets the answer now and the connection is
         * closed (libmicrohttpd drops the body). Without a body the answer
         * waits for the next call so that the connection stays open. */
        if (answered(req) && expects_body(req)) {
            if (req->has_length && req->content_length <= FF_HTTP_DRAIN_MAX) {
                req->body_refused = true;
                return MHD_YES;
            }
            return queue_answer(req);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return take_body(req, upload_data, n);
    }
    finish_request(req);
    return queue_answer(req);
}

/* libmicrohttpd calls this once per request, right after the request line,
 * with the raw URI; the object made here lives until on_completed. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct ff_http_server *srv = cls;
    struct ff_http_request *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->srv = srv;
    req->conn = conn;
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    ff_log_reqid_new(req->id);
    ff_buf_init(&req->body, 0);
    req->method[0] = '\0';
    const char *q = strchr(uri, '?');
    req->raw_path = ff_strndup(uri, q != NULL ? (size_t)(q - uri) : strlen(uri));
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    ff_strlcpy(req->ip, "-", sizeof(req->ip));
    if (ci != NULL && ci->client_addr != NULL) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, req->ip,
                      sizeof(req->ip));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                      req->ip, sizeof(req->ip));
    }
    pthread_mutex_lock(&srv->lock);
    srv->inflight++;
    pthread_mutex_unlock(&srv->lock);
    return req;
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "ok";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
    default: return "unknown";
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ff_http_server *srv = cls;
    struct ff_http_request *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    unsigned status = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (ci != NULL)
        status = ci->http_status;
    uint64_t us = elapsed_us(&req->start);
    const char *method = req->method[0] != '\0' ? req->method : "-";
    const char *path = req->path != NULL ? req->path : req->raw_path;
    const char *end = termination_name(toe);
    ff_log_info(req->id, "http.request",
                "method=%s path=%s status=%u bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " ms=%" PRIu64
                " ip=%s end=%s",
                method, path, status, req->bytes_in, req->bytes_out, us / 1000, req->ip, end);
    if (srv->cfg.observe != NULL)
        srv->cfg.observe(srv->cfg.observe_ctx, req->route != NULL ? req->route->pattern : "",
                         method, status, req->bytes_in, req->bytes_out, us);
    request_free(req);
    pthread_mutex_lock(&srv->lock);
    srv->inflight--;
    if (srv->inflight == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct ff_http_server *srv = cls;
    char msg[HTTP_MHD_MSG_MAX];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        msg[--len] = '\0';
    pthread_mutex_lock(&srv->lock);
    ff_strlcpy(srv->mhd_msg, msg, sizeof(srv->mhd_msg));
    pthread_mutex_unlock(&srv->lock);
    ff_log_warn(NULL, "http.mhd", "msg=%s", msg);
}

/* ---------------------------------------------------------------------- */
/* Start and stop                                                          */

static void format_addr(const struct ff_http_server *srv, char *out, size_t size)
{
    if (srv->addr.ss_family == AF_INET6)
        (void)snprintf(out, size, "[%s]:%u", srv->bind_addr, (unsigned)srv->cfg.port);
    else
        (void)snprintf(out, size, "%s:%u", srv->bind_addr, (unsigned)srv->cfg.port);
}

/* Binds the listening socket ourselves, so that a failure names the
 * address and the reason, and so that SO_REUSEADDR (quick restarts) is set
 * but SO_REUSEPORT is not: a second daemon on the same port must fail, not
 * share the port. (This is also why MHD_OPTION_LISTENING_ADDRESS_REUSE is
 * not passed: libmicrohttpd ignores it for a socket it is given.) */
static int open_listener(struct ff_http_server *srv, int *out, struct ff_err *err)
{
    char where[INET6_ADDRSTRLEN + 16];
    format_addr(srv, where, sizeof(where));
    int fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "socket for %s: %s", where, strerror(errno));
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (srv->addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0)) {
        int e = errno;
        close(fd);
        return ff_err_set(err, FF_EIO, "setsockopt on %s: %s", where, strerror(e));
    }
    if (bind(fd, (const struct sockaddr *)&srv->addr, srv->addr_len) != 0) {
        int e = errno;
        close(fd);
        return ff_err_set(err, FF_EIO, "bind %s: %s", where, strerror(e));
    }
    if (listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return ff_err_set(err, FF_EIO, "listen %s: %s", where, strerror(e));
    }
    struct sockaddr_storage bound;
    memset(&bound, 0, sizeof(bound));
    socklen_t blen = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        int e = errno;
        close(fd);
        return ff_err_set(err, FF_EIO, "getsockname %s: %s", where, strerror(e));
    }
    if (bound.ss_family == AF_INET6)
        srv->port = ntohs(((const struct sockaddr_in6 *)(const void *)&bound)->sin6_port);
    else
        srv->port = ntohs(((const struct sockaddr_in *)(const void *)&bound)->sin_port);
    *out = fd;
    return 0;
}

int ff_http_server_start(struct ff_http_server *srv, struct ff_err *err)
{
    if (srv->daemon != NULL || atomic_load(&srv->stopping))
        return ff_err_set(err, FF_EBUSY, "http server: already started");
    int fd = -1;
    int rc = open_listener(srv, &fd, err);
    if (rc != 0)
        return rc;
    unsigned flags =
        MHD_USE_TLS | MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_INTERNAL_POLLING_THREAD;
    struct MHD_OptionItem extra[] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
    if (srv->cfg.threading == FF_HTTP_THREAD_PER_CONNECTION) {
        /* Blocking handlers need their own thread; epoll cannot be combined
         * with thread-per-connection, poll() has no FD_SETSIZE limit. */
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    } else {
        flags |= MHD_USE_EPOLL;
        extra[0].option = MHD_OPTION_THREAD_POOL_SIZE;
        extra[0].value = (intptr_t)srv->cfg.pool_threads;
    }
    if (srv->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    pthread_mutex_lock(&srv->lock);
    srv->mhd_msg[0] = '\0';
    pthread_mutex_unlock(&srv->lock);
    /* One option and its value(s) per line. */
    /* clang-format off */
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_HTTPS_MEM_CERT, srv->cert_pem,
        MHD_OPTION_HTTPS_MEM_KEY, srv->key_pem,
        MHD_OPTION_HTTPS_PRIORITIES, HTTP_TLS_PRIORITIES,
        MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, srv->cfg.max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.timeout_seconds,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, srv->cfg.max_header_bytes,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_ARRAY, extra,
        MHD_OPTION_END);
    /* clang-format on */
    if (srv->daemon == NULL) {
        close(fd);
        char where[INET6_ADDRSTRLEN + 16];
        format_addr(srv, where, sizeof(where));
        pthread_mutex_lock(&srv->lock);
        rc = ff_err_set(err, FF_EINVAL, "http server on %s: libmicrohttpd refused to start (%s)",
                        where, srv->mhd_msg[0] != '\0' ? srv->mhd_msg : "no reason given");
        pthread_mutex_unlock(&srv->lock);
        srv->port = 0;
        return rc;
    }
    ff_log_info(NULL, "http.listen", "addr=%s port=%u", srv->bind_addr, (unsigned)srv->port);
    return 0;
}

uint16_t ff_http_server_port(const struct ff_http_server *srv)
{
    return srv->daemon != NULL ? srv->port : 0;
}

int ff_http_server_stop(struct ff_http_server *srv, unsigned grace_seconds)
{
    if (srv->daemon == NULL)
        return 0;
    atomic_store(&srv->stopping, true);
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET) {
        /* Leaves the socket open (libmicrohttpd's threads may still look
         * at it until they are joined) but refuses new connections now
         * rather than letting them wait in the backlog. */
        shutdown(fd, SHUT_RDWR);
        srv->quiesced_fd = fd;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)grace_seconds;
    int rc = 0;
    pthread_mutex_lock(&srv->lock);
    unsigned left = srv->inflight;
    while (srv->inflight > 0) {
        int w = pthread_cond_timedwait(&srv->idle, &srv->lock, &deadline);
        if (w == ETIMEDOUT) {
            rc = FF_ETIMEOUT;
            break;
        }
    }
    unsigned cut = srv->inflight;
    pthread_mutex_unlock(&srv->lock);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    if (srv->quiesced_fd >= 0) {
        close(srv->quiesced_fd);
        srv->quiesced_fd = -1;
    }
    ff_log_info(NULL, "http.stop", "in_flight=%u cut=%u grace_s=%u", left, cut, grace_seconds);
    return rc;
}

void ff_http_server_free(struct ff_http_server *srv)
{
    if (srv == NULL)
        return;
    ff_http_server_stop(srv, 0);
    for (size_t i = 0; i < srv->nroutes; i++)
        free(srv->routes[i].pattern);
    free(srv->routes);
    if (srv->key_pem != NULL)
        OPENSSL_cleanse(srv->key_pem, srv->key_len);
    free(srv->key_pem);
    free(srv->cert_pem);
    free(srv->bind_addr);
    free(srv->cert_path);
    free(srv->key_path);
    pthread_cond_destroy(&srv->idle);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

/* ---------------------------------------------------------------------- */
/* Request accessors                                                       */

const char *ff_http_request_method(const struct ff_http_request *req)
{
    return req->method;
}

const char *ff_http_request_path(const struct ff_http_request *req)
{
    return req->path;
}

const char *ff_http_request_route(const struct ff_http_request *req)
{
    return req->route->pattern;
}

const char *ff_http_request_id(const struct ff_http_request *req)
{
    return req->id;
}

const char *ff_http_request_ip(const struct ff_http_request *req)
{
    return req->ip;
}

void *ff_http_request_userdata(const struct ff_http_request *req)
{
    return req->route->userdata;
}

const char *ff_http_request_param(const struct ff_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nparams; i++) {
        if (req->params[i].name_len == n && memcmp(req->params[i].name, name, n) == 0)
            return req->params[i].value;
    }
    return NULL;
}

const char *ff_http_request_header(const struct ff_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct query_walk {
    const char *name;
    int (*fn)(void *ctx, const char *value);
    void *ctx;
    int rc;
    const char *first;
};

static enum MHD_Result query_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct query_walk *w = cls;
    if (key == NULL || strcmp(key, w->name) != 0)
        return MHD_YES;
    if (value == NULL)
        value = "";
    if (w->fn == NULL) {
        w->first = value;
        return MHD_NO;
    }
    w->rc = w->fn(w->ctx, value);
    return w->rc == 0 ? MHD_YES : MHD_NO;
}

const char *ff_http_request_query(const struct ff_http_request *req, const char *name)
{
    struct query_walk w = {name, NULL, NULL, 0, NULL};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_visit, &w);
    return w.first;
}

int ff_http_request_query_each(const struct ff_http_request *req, const char *name,
                               int (*fn)(void *ctx, const char *value), void *ctx)
{
    struct query_walk w = {name, fn, ctx, 0, NULL};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_visit, &w);
    return w.rc;
}

int ff_http_request_content_length(const struct ff_http_request *req, uint64_t *out)
{
    if (!req->has_length)
        return FF_ENOTFOUND;
    *out = req->content_length;
    return 0;
}

const char *ff_http_request_body(const struct ff_http_request *req, size_t *len)
{
    *len = req->body.len;
    return req->body.data != NULL ? req->body.data : "";
}

bool ff_http_request_stopping(const struct ff_http_request *req)
{
    return atomic_load(&req->srv->stopping);
}

void ff_http_request_set_state(struct ff_http_request *req, void *state,
                               void (*free_fn)(void *state))
{
    if (req->state_free != NULL && req->state != state)
        req->state_free(req->state);
    req->state = state;
    req->state_free = free_fn;
}

void *ff_http_request_state(const struct ff_http_request *req)
{
    return req->state;
}

/* ---------------------------------------------------------------------- */
/* Responses                                                               */

int ff_http_response_header(struct ff_http_request *req, const char *name, const char *value)
{
    if (answered(req))
        return FF_EINVAL;
    int rc = ff_http_header_check(name, value, NULL);
    if (rc != 0)
        return rc;
    if (req->nheaders == FF_HTTP_RESPONSE_HEADERS_MAX)
        return FF_ETOOBIG;
    char *n = strdup(name);
    char *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return FF_ENOMEM;
    }
    req->headers[req->nheaders].name = n;
    req->headers[req->nheaders].value = v;
    req->nheaders++;
    return 0;
}

static bool status_valid(unsigned status)
{
    return status >= 200 && status <= 599;
}

static bool body_sent(const struct ff_http_request *req, unsigned status)
{
    return strcmp(req->method, "HEAD") != 0 && status != 204 && status != 304;
}

/* Adds the headers every answer carries and keeps resp as the answer to
 * queue. Takes resp in every case. */
static int keep_answer(struct ff_http_request *req, unsigned status, struct MHD_Response *resp,
                       const char *content_type, uint64_t body_len)
{
    bool ok = MHD_add_response_header(resp, "X-Request-Id", req->id) == MHD_YES;
    if (ok && content_type != NULL)
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) == MHD_YES;
    for (size_t i = 0; ok && i < req->nheaders; i++)
        ok = MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value) == MHD_YES;
    /* While stopping, tell keep-alive clients to go so that the server
     * drains instead of serving their next request. */
    if (ok && atomic_load(&req->srv->stopping))
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    if (!ok) {
        MHD_destroy_response(resp);
        return FF_ENOMEM;
    }
    req->response = resp;
    req->status = status;
    req->pending_out = body_sent(req, status) ? body_len : 0;
    return 0;
}

static int check_can_answer(const struct ff_http_request *req, unsigned status,
                            const char *content_type)
{
    if (answered(req) || !status_valid(status))
        return FF_EINVAL;
    if (content_type != NULL && ff_http_header_check("Content-Type", content_type, NULL) != 0)
        return FF_EINVAL;
    return 0;
}

int ff_http_respond_bytes(struct ff_http_request *req, unsigned status, const char *content_type,
                          const void *data, size_t len)
{
    int rc = check_can_answer(req, status, content_type);
    if (rc != 0)
        return rc;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)data, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return FF_ENOMEM;
    return keep_answer(req, status, resp, content_type, len);
}

int ff_http_respond_json(struct ff_http_request *req, unsigned status, const json_t *body)
{
    int rc = check_can_answer(req, status, NULL);
    if (rc != 0)
        return rc;
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL)
        return FF_ENOMEM;
    rc = ff_http_respond_bytes(req, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

int ff_http_respond_error(struct ff_http_request *req, unsigned status, const char *code,
                          const char *fmt, ...)
{
    int rc = check_can_answer(req, status, NULL);
    if (rc != 0)
        return rc;
    char msg[HTTP_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return FF_EINVAL;
    json_t *doc = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
    if (doc == NULL) {
        /* The message quoted something that is not UTF-8 (a hostile path):
         * send it with every byte outside printable ASCII as '?'. */
        for (char *p = msg; *p != '\0'; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
        }
        doc = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
    }
    if (doc == NULL)
        return FF_EINVAL; /* code is not UTF-8, or out of memory */
    rc = ff_http_respond_json(req, status, doc);
    json_decref(doc);
    return rc;
}

/* Bytes read from a file per block of a file response. libmicrohttpd's own
 * fd responses cannot use sendfile under TLS and read 4 KiB at a time,
 * which made a blob pull four times as many TLS records and syscalls as
 * needed; a callback with large preads lets each send carry 256 KiB. */
#define FILE_READ_BLOCK ((size_t)256 * 1024)

struct reader {
    ff_http_read_at_fn read;
    void *ctx;
    void (*free_cb)(void *ctx);
};

static ssize_t reader_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct reader *r = cls;
    ssize_t n = r->read(r->ctx, pos, buf, max);
    /* Short or failed: cut the response rather than send bytes that are
     * not the body's. */
    return n > 0 && (size_t)n <= max ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void reader_free(void *cls)
{
    struct reader *r = cls;
    if (r->free_cb != NULL)
        r->free_cb(r->ctx);
    free(r);
}

int ff_http_respond_reader(struct ff_http_request *req, unsigned status, uint64_t length,
                           ff_http_read_at_fn read_cb, void *ctx, void (*free_cb)(void *ctx),
                           const char *content_type)
{
    int rc = check_can_answer(req, status, content_type);
    if (rc == 0 && (read_cb == NULL || length == MHD_SIZE_UNKNOWN))
        rc = FF_EINVAL;
    struct reader *r = NULL;
    if (rc == 0) {
        r = malloc(sizeof(*r));
        if (r == NULL)
            rc = FF_ENOMEM;
    }
    if (rc != 0) {
        if (free_cb != NULL)
            free_cb(ctx);
        return rc;
    }
    r->read = read_cb;
    r->ctx = ctx;
    r->free_cb = free_cb;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(length, FILE_READ_BLOCK, reader_read, r, reader_free);
    if (resp == NULL) {
        reader_free(r);
        return FF_ENOMEM;
    }
    return keep_answer(req, status, resp, content_type, length);
}

struct file_reader {
    int fd;
    uint64_t offset; /* where the response's first byte is in the file */
};

static ssize_t file_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct file_reader *fr = cls;
    for (;;) {
        ssize_t n = pread(fr->fd, buf, max, (off_t)(fr->offset + pos));
        if (n < 0 && errno == EINTR)
            continue;
        return n > 0 ? n : FF_EIO; /* a file that shrank or failed under us */
    }
}

static void file_reader_free(void *cls)
{
    struct file_reader *fr = cls;
    close(fr->fd);
    free(fr);
}

int ff_http_respond_fd(struct ff_http_request *req, unsigned status, int fd, uint64_t offset,
                       uint64_t length, const char *content_type)
{
    if (fd < 0)
        return FF_EINVAL;
    uint64_t end;
    if (__builtin_add_overflow(offset, length, &end) || end > INT64_MAX) {
        close(fd);
        return FF_EINVAL;
    }
    struct file_reader *fr = malloc(sizeof(*fr));
    if (fr == NULL) {
        close(fd);
        return FF_ENOMEM;
    }
    fr->fd = fd;
    fr->offset = offset;
    return ff_http_respond_reader(req, status, length, file_read, fr, file_reader_free,
                                  content_type);
}

struct stream {
    ff_http_read_fn read;
    void *ctx;
    void (*free_cb)(void *ctx);
    uint64_t *counter; /* the request's bytes_out; reads end before it is freed */
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *s = cls;
    ssize_t n = s->read(s->ctx, buf, max);
    if (n > 0 && (size_t)n <= max) {
        *s->counter += (uint64_t)n;
        return n;
    }
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    if (s->free_cb != NULL)
        s->free_cb(s->ctx);
    free(s);
}

int ff_http_respond_stream(struct ff_http_request *req, unsigned status, const char *content_type,
                           ff_http_read_fn read_cb, void *ctx, void (*free_cb)(void *ctx))
{
    int rc = check_can_answer(req, status, content_type);
    struct stream *s = NULL;
    if (rc == 0 && read_cb == NULL)
        rc = FF_EINVAL;
    if (rc == 0) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            rc = FF_ENOMEM;
    }
    if (rc != 0) {
        if (free_cb != NULL)
            free_cb(ctx);
        return rc;
    }
    s->read = read_cb;
    s->ctx = ctx;
    s->free_cb = free_cb;
    s->counter = &req->bytes_out;
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, stream_read, s, stream_free);
    if (resp == NULL) {
        stream_free(s);
        return FF_ENOMEM;
    }
    return keep_answer(req, status, resp, content_type, 0);
}

/* libmicrohttpd never asks a HEAD response for its body. */
static ssize_t head_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

int ff_http_respond_head(struct ff_http_request *req, unsigned status, uint64_t content_length,
                         const char *content_type)
{
    if (strcmp(req->method, "HEAD") != 0)
        return FF_EINVAL;
    int rc = check_can_answer(req, status, content_type);
    if (rc != 0)
        return rc;
    /* A size-known response whose body is never read: libmicrohttpd writes
     * Content-Length from the size and skips the body for HEAD. */
    if (content_length == MHD_SIZE_UNKNOWN)
        return FF_EINVAL;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(content_length, 1, head_read, NULL, NULL);
    if (resp == NULL)
        return FF_ENOMEM;
    return keep_answer(req, status, resp, content_type, 0);
}
