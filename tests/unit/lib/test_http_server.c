#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_buf.h"
#include "ff_err.h"
#include "ff_http_server.h"
#include "ff_log.h"
#include "ff_str.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Big enough to prove streaming, small enough for ASan. */
#define STREAM_BODY_BYTES ((uint64_t)8 * 1024 * 1024)
/* Limit of the buffered echo route. */
#define ECHO_MAX ((size_t)64 * 1024)
/* Size the HEAD route reports. */
#define HEAD_LENGTH 123456789u
/* Longest a test waits for something the server does after answering. */
#define WAIT_MS 5000

static char tmpdir[64];
static char cert_path[128], key_path[128], cert2_path[128], key2_path[128];
static char blob_path[128], log_path[128];
static int log_fd = -1;
static struct ff_http_server *srv;
static char base_url[64];

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

/* snprintf into an array that fails the test instead of truncating. */
#define FMT(buf, ...) assert_true(fits(snprintf((buf), sizeof(buf), __VA_ARGS__), sizeof(buf)))

static bool fits(int n, size_t size)
{
    return n >= 0 && (size_t)n < size;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
}

/* Runs the openssl CLI to make a self-signed P-256 certificate. */
static int make_cert(const char *key, const char *cert)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        char *argv[] = {"openssl",
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-nodes",
                        "-keyout",
                        (char *)key,
                        "-out",
                        (char *)cert,
                        "-days",
                        "1",
                        "-subj",
                        "/CN=localhost",
                        "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        NULL};
        execvp("openssl", argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

struct resp {
    long status;
    struct ff_buf body;
    struct ff_buf headers;
    CURLcode code;
};

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    struct ff_buf *b = ud;
    return ff_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

/* The value of response header name (case-insensitive), copied into out. */
static bool resp_header(const struct resp *r, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    const char *p = r->headers.data;
    while (p != NULL && *p != '\0') {
        const char *eol = strstr(p, "\r\n");
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(eol - v);
            if (vl >= size)
                vl = size - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        p = eol + 2;
    }
    return false;
}

struct upload {
    uint64_t left;
    uint64_t sent;
    uint64_t abort_after; /* 0: never */
    uint32_t x;
    EVP_MD_CTX *md;
};

static size_t upload_read(char *buf, size_t size, size_t n, void *ud)
{
    struct upload *u = ud;
    if (u->abort_after != 0 && u->sent >= u->abort_after)
        return CURL_READFUNC_ABORT;
    size_t want = size * n;
    if (want > u->left)
        want = (size_t)u->left;
    for (size_t i = 0; i < want; i++) {
        u->x ^= u->x << 13;
        u->x ^= u->x >> 17;
        u->x ^= u->x << 5;
        buf[i] = (char)(u->x & 0xff);
    }
    if (u->md != NULL)
        EVP_DigestUpdate(u->md, buf, want);
    u->left -= want;
    u->sent += want;
    return want;
}

/* One request with libcurl, verifying the server against the test cert.
 * upload (may be NULL) streams a body instead of body/len. */
static void request(const char *method, const char *path, const void *body, size_t len,
                    struct curl_slist *hdrs, struct upload *upload, struct resp *r)
{
    char url[512];
    FMT(url, "%s%s", base_url, path);
    r->status = 0;
    ff_buf_init(&r->body, (size_t)32 * 1024 * 1024);
    ff_buf_init(&r->headers, (size_t)64 * 1024);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, cert_path);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (upload != NULL) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_read);
        curl_easy_setopt(c, CURLOPT_READDATA, upload);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)upload->left);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (hdrs != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    r->code = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
}

static void resp_release(struct resp *r)
{
    ff_buf_release(&r->body);
    ff_buf_release(&r->headers);
}

static const char *body_str(const struct resp *r)
{
    return r->body.data != NULL ? r->body.data : "";
}

/* ---------------------------------------------------------------------- */
/* Handlers of the test server                                             */

static atomic_int states_freed;
static atomic_int observed;
static pthread_mutex_t observe_lock = PTHREAD_MUTEX_INITIALIZER;
static char observed_route[128];
static unsigned observed_status;
static uint64_t observed_in;

static void observe(void *ctx, const char *route, const char *method, unsigned status,
                    uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us)
{
    (void)ctx;
    (void)method;
    (void)bytes_out;
    (void)duration_us;
    pthread_mutex_lock(&observe_lock);
    ff_strlcpy(observed_route, route, sizeof(observed_route));
    observed_status = status;
    observed_in = bytes_in;
    pthread_mutex_unlock(&observe_lock);
    atomic_fetch_add(&observed, 1);
}

static int h_echo(struct ff_http_request *req)
{
    size_t len;
    const char *body = ff_http_request_body(req, &len);
    return ff_http_respond_bytes(req, 200, "application/octet-stream", body, len);
}

static void state_free(void *state)
{
    EVP_MD_CTX_free(state);
    atomic_fetch_add(&states_freed, 1);
}

static int h_put_headers(struct ff_http_request *req)
{
    if (strcmp(ff_http_request_param(req, "digest"), "deny") == 0)
        return ff_http_respond_error(req, 401, "UNAUTHORIZED", "no token for \"%s\"",
                                     ff_http_request_param(req, "name"));
    if (strcmp(ff_http_request_param(req, "digest"), "fail") == 0)
        return FF_EDENIED;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return FF_ECRYPTO;
    }
    ff_http_request_set_state(req, md, state_free);
    return 0;
}

static int h_put_body(struct ff_http_request *req, const char *data, size_t len)
{
    if (len > FF_HTTP_DEFAULT_MAX_HEADER_BYTES)
        return FF_EINVAL; /* a chunk bigger than the pool: not streaming */
    return EVP_DigestUpdate(ff_http_request_state(req), data, len) == 1 ? 0 : FF_ECRYPTO;
}

static int h_put_complete(struct ff_http_request *req)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ff_http_request_state(req), md, &n) != 1)
        return FF_ECRYPTO;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    ff_hex_encode(md, n, hex);
    int rc = ff_http_response_header(req, "X-Name", ff_http_request_param(req, "name"));
    if (rc != 0)
        return rc;
    return ff_http_respond_bytes(req, 201, "text/plain", hex, strlen(hex));
}

static int h_blob_get(struct ff_http_request *req)
{
    uint64_t off = 0, len = 0;
    const char *o = ff_http_request_query(req, "offset");
    const char *l = ff_http_request_query(req, "length");
    if (o == NULL || l == NULL || ff_parse_u64(o, 1u << 20, &off) != 0 ||
        ff_parse_u64(l, 1u << 20, &len) != 0)
        return FF_EINVAL;
    int fd = open(blob_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FF_ENOTFOUND;
    int rc =
        ff_http_response_header(req, "Docker-Content-Digest", ff_http_request_param(req, "digest"));
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return ff_http_respond_fd(req, 206, fd, off, len, "application/octet-stream");
}

static int h_blob_head(struct ff_http_request *req)
{
    return ff_http_respond_head(req, 200, HEAD_LENGTH, "application/octet-stream");
}

static int h_json_error(struct ff_http_request *req)
{
    return ff_http_respond_error(req, 409, "NAME_UNKNOWN", "repository \"%s\" is not known", "a/b");
}

static int join_scope(void *ctx, const char *value)
{
    return ff_buf_printf(ctx, "%s;", value);
}

static int h_query(struct ff_http_request *req)
{
    struct ff_buf b;
    ff_buf_init(&b, 4096);
    const char *a = ff_http_request_query(req, "a");
    const char *upper = ff_http_request_query(req, "A");
    int rc = ff_buf_printf(&b, "a=%s A=%s scopes=", a != NULL ? a : "(none)",
                           upper != NULL ? upper : "(none)");
    if (rc == 0)
        rc = ff_http_request_query_each(req, "scope", join_scope, &b);
    const char *auth = ff_http_request_header(req, "authorization");
    if (rc == 0)
        rc = ff_buf_printf(&b, " auth=%s ip=%s", auth != NULL ? "yes" : "no",
                           ff_http_request_ip(req));
    if (rc == 0)
        rc = ff_http_respond_bytes(req, 200, "text/plain", b.data, b.len);
    ff_buf_release(&b);
    return rc;
}

struct chunks {
    int left;
};

static ssize_t chunks_read(void *ctx, char *buf, size_t max)
{
    struct chunks *c = ctx;
    if (c->left == 0)
        return 0;
    int n = snprintf(buf, max, "chunk %d\n", c->left);
    c->left--;
    return n > 0 && (size_t)n < max ? n : FF_ETOOBIG;
}

static int h_stream(struct ff_http_request *req)
{
    struct chunks *c = malloc(sizeof(*c));
    if (c == NULL)
        return FF_ENOMEM;
    c->left = 3;
    return ff_http_respond_stream(req, 200, "text/plain", chunks_read, c, free);
}

static int h_denied(struct ff_http_request *req)
{
    (void)req;
    return FF_EDENIED;
}

static int h_forgot(struct ff_http_request *req)
{
    (void)req;
    return 0;
}

static void count_free(void *ctx)
{
    (*(int *)ctx)++;
}

static ssize_t never_read(void *ctx, uint64_t pos, char *buf, size_t max)
{
    (void)ctx;
    (void)pos;
    (void)buf;
    (void)max;
    return FF_EIO;
}

/* Misuses the API from inside a handler and reports what it got. */
static int h_checks(struct ff_http_request *req)
{
    char out[256];
    int head = ff_http_respond_head(req, 200, 1, NULL);
    int crlf = ff_http_response_header(req, "X-A", "v\r\nX-Injected: 1");
    int reserved = ff_http_response_header(req, "Content-Length", "5");
    int status = ff_http_respond_bytes(req, 99, NULL, "x", 1);
    int fd = ff_http_respond_fd(req, 200, -1, 0, 1, NULL);
    int freed = 0;
    int reader = ff_http_respond_reader(req, 200, 1, NULL, &freed, count_free, NULL);
    /* A server thread: no cmocka asserts here, the client checks the text. */
    int n = snprintf(out, sizeof(out),
                     "head=%d crlf=%d reserved=%d status=%d fd=%d reader=%d/%d method=%s route=%s",
                     head, crlf, reserved, status, fd, reader, freed, ff_http_request_method(req),
                     ff_http_request_route(req));
    if (!fits(n, sizeof(out)))
        return FF_ETOOBIG;
    int rc = ff_http_respond_bytes(req, 200, "text/plain", out, strlen(out));
    if (rc != 0)
        return rc;
    int twice = ff_http_respond_bytes(req, 200, NULL, "again", 5);
    int late = ff_http_response_header(req, "X-Late", "1");
    int late_reader = ff_http_respond_reader(req, 200, 1, never_read, &freed, count_free, NULL);
    return twice == FF_EINVAL && late == FF_EINVAL && late_reader == FF_EINVAL && freed == 2
               ? 0
               : FF_EINVAL;
}

/* Sleeps ?ms= milliseconds (400 when absent), as a long-poll would. */
static int h_slow(struct ff_http_request *req)
{
    uint64_t ms = 400;
    const char *q = ff_http_request_query(req, "ms");
    if (q != NULL && ff_parse_u64(q, 10000, &ms) != 0)
        return FF_EINVAL;
    sleep_ms((unsigned)ms);
    return ff_http_respond_bytes(req, 200, NULL, "slow", 4);
}

static int add_routes(struct ff_http_server *s)
{
    static const struct ff_http_handler echo = {.max_body = ECHO_MAX, .on_request = h_echo};
    static const struct ff_http_handler put = {.max_body = (uint64_t)64 * 1024 * 1024,
                                               .body_mode = FF_HTTP_BODY_STREAM,
                                               .on_headers = h_put_headers,
                                               .on_body = h_put_body,
                                               .on_complete = h_put_complete};
    static const struct ff_http_handler blob_get = {.on_request = h_blob_get};
    static const struct ff_http_handler blob_head = {.on_request = h_blob_head};
    static const struct ff_http_handler json_error = {.on_request = h_json_error};
    static const struct ff_http_handler query = {.on_request = h_query};
    static const struct ff_http_handler stream = {.on_request = h_stream};
    static const struct ff_http_handler denied = {.on_request = h_denied};
    static const struct ff_http_handler forgot = {.on_request = h_forgot};
    static const struct ff_http_handler checks = {.on_request = h_checks};
    static const struct ff_http_handler slow = {.on_request = h_slow};
    static const struct {
        const char *method, *pattern;
        const struct ff_http_handler *h;
    } routes[] = {
        {"POST", "/echo", &echo},
        {"PUT", "/v2/{name+}/blobs/{digest}", &put},
        {"GET", "/v2/{name+}/blobs/{digest}", &blob_get},
        {"HEAD", "/v2/{name+}/blobs/{digest}", &blob_head},
        {"GET", "/json-error", &json_error},
        {"GET", "/query", &query},
        {"GET", "/stream", &stream},
        {"GET", "/denied", &denied},
        {"GET", "/forgot", &forgot},
        {"GET", "/checks", &checks},
        {"GET", "/slow", &slow},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc =
            ff_http_server_route(s, routes[i].method, routes[i].pattern, routes[i].h, NULL, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void test_config(struct ff_http_server_config *cfg)
{
    ff_http_server_config_init(cfg);
    cfg->cert_path = cert_path;
    cfg->key_path = key_path;
}

static int setup(void **state)
{
    (void)state;
    ff_strlcpy(tmpdir, "/tmp/ff-http-test-XXXXXX", sizeof(tmpdir));
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    FMT(cert_path, "%s/c.pem", tmpdir);
    FMT(key_path, "%s/k.pem", tmpdir);
    FMT(cert2_path, "%s/c2.pem", tmpdir);
    FMT(key2_path, "%s/k2.pem", tmpdir);
    FMT(blob_path, "%s/blob", tmpdir);
    FMT(log_path, "%s/log", tmpdir);
    if (make_cert(key_path, cert_path) != 0 || make_cert(key2_path, cert2_path) != 0)
        return -1;
    char blob[256];
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (char)i;
    if (write_file(blob_path, blob, sizeof(blob)) != 0)
        return -1;
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return -1;
    ff_log_open("ff-test", FF_LOG_INFO);
    ff_log_set_fd(log_fd);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return -1;

    struct ff_http_server_config cfg;
    test_config(&cfg);
    cfg.observe = observe;
    if (ff_http_server_new(&cfg, &srv, NULL) != 0)
        return -1;
    if (add_routes(srv) != 0 || ff_http_server_start(srv, NULL) != 0)
        return -1;
    FMT(base_url, "https://127.0.0.1:%u", (unsigned)ff_http_server_port(srv));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ff_http_server_free(srv);
    curl_global_cleanup();
    ff_log_set_fd(2);
    close(log_fd);
    const char *files[] = {cert_path, key_path, cert2_path, key2_path, blob_path, log_path};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    return rmdir(tmpdir);
}

/* ---------------------------------------------------------------------- */
/* Patterns, paths, headers                                                */

static bool match(const char *pattern, const char *path, struct ff_http_capture *caps, size_t *n)
{
    assert_int_equal(ff_http_pattern_check(pattern, NULL), 0);
    assert_int_equal(ff_http_path_check(path, strlen(path), NULL), 0);
    return ff_http_pattern_match(pattern, path, caps, n);
}

static void assert_cap(const struct ff_http_capture *c, const char *name, const char *value)
{
    assert_int_equal(c->name_len, strlen(name));
    assert_memory_equal(c->name, name, c->name_len);
    assert_int_equal(c->value_len, strlen(value));
    assert_memory_equal(c->value, value, c->value_len);
}

static void test_pattern_captures(void **state)
{
    (void)state;
    struct ff_http_capture c[FF_HTTP_CAPTURES_MAX];
    size_t n;
    const char *blobs = "/v2/{name+}/blobs/{digest}";
    assert_true(match(blobs, "/v2/a/b/blobs/sha256:x", c, &n));
    assert_int_equal(n, 2);
    assert_cap(&c[0], "name", "a/b");
    assert_cap(&c[1], "digest", "sha256:x");
    /* Greedy: the fixed suffix is taken from the end of the path. */
    assert_true(match(blobs, "/v2/a/blobs/b/blobs/d", c, &n));
    assert_cap(&c[0], "name", "a/blobs/b");
    assert_cap(&c[1], "digest", "d");
    assert_true(match(blobs, "/v2/x/blobs/d", c, &n));
    assert_cap(&c[0], "name", "x");
    /* {x+} needs at least one segment. */
    assert_false(match(blobs, "/v2/blobs/d", c, &n));
    assert_false(match(blobs, "/v2/a/b/manifests/d", c, &n));
    /* {x} and {x+} never match an empty (trailing) segment. */
    assert_false(match(blobs, "/v2/a/blobs/", c, &n));
    assert_false(match("/x/{a+}", "/x/a/b/", c, &n));
    assert_true(match("/x/{a+}", "/x/a/b", c, &n));
    assert_cap(&c[0], "a", "a/b");
    /* A trailing slash in the pattern is significant. */
    assert_true(match("/v2/", "/v2/", c, &n));
    assert_int_equal(n, 0);
    assert_false(match("/v2/", "/v2", c, &n));
    assert_false(match("/v2", "/v2/", c, &n));
    assert_true(match("/v2/{name+}/blobs/uploads/", "/v2/a/b/blobs/uploads/", c, &n));
    assert_cap(&c[0], "name", "a/b");
    assert_false(match(blobs, "/v2/a/b/blobs/uploads/", c, &n));
    /* {+} at the start and at the end. */
    assert_true(match("/{p+}/tail", "/a/b/c/tail", c, &n));
    assert_cap(&c[0], "p", "a/b/c");
    assert_true(match("/files/{p+}", "/files/a/b", c, &n));
    assert_cap(&c[0], "p", "a/b");
    assert_true(match("/{a}/{b}", "/x/y", c, &n));
    assert_cap(&c[0], "a", "x");
    assert_cap(&c[1], "b", "y");
    assert_false(match("/{a}/{b}", "/x/y/z", c, &n));
    assert_false(match("/{a}/{b}", "/x", c, &n));
    assert_true(match("/", "/", c, &n));
    assert_false(match("/", "/a", c, &n));
    assert_false(match("/a", "/A", c, &n));
}

static void test_pattern_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "v2",
        "//",
        "/a//b",
        "/{name+}/{other+}",
        "/{a}/{a}",
        "/{}",
        "/{+}",
        "/x{a}",
        "/{a}x",
        "/./a",
        "/a/..",
        "/{a-b}",
        "/{a",
        "/a}",
        "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}",
        "/{a123456789012345678901234567890123}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ff_err err;
        ff_err_clear(&err);
        if (ff_http_pattern_check(bad[i], &err) != FF_EINVAL)
            fail_msg("pattern \"%s\" was accepted", bad[i]);
        assert_true(strlen(err.msg) > 0);
    }
    struct ff_err err;
    assert_int_equal(ff_http_pattern_check("/{a+}/{b+}", &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "at most one {name+}"));
    assert_int_equal(ff_http_pattern_check("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", NULL), 0);
    struct ff_http_capture c[FF_HTTP_CAPTURES_MAX];
    size_t n;
    assert_false(ff_http_pattern_match("/a//b", "/a//b", c, &n));
}

static void test_path_check(void **state)
{
    (void)state;
    static const char *const good[] = {"/",          "/a",     "/a/b/",  "/v2/a/b/blobs/sha256:x",
                                       "/a/.hidden", "/a/...", "/a/b..c"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(ff_http_path_check(good[i], strlen(good[i]), NULL), 0);
    static const char *const bad[] = {"",    "a",    "//",      "/a//b",  "//a", "/.",
                                      "/..", "/a/.", "/a/../b", "/a/./b", "*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ff_http_path_check(bad[i], strlen(bad[i]), NULL) != FF_EINVAL)
            fail_msg("path \"%s\" was accepted", bad[i]);
    }
    struct ff_err err;
    assert_int_equal(ff_http_path_check("/a\0b", 4, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "NUL"));
    char deep[2 * 200 + 1];
    for (size_t i = 0; i < 200; i++) {
        deep[2 * i] = '/';
        deep[2 * i + 1] = 'a';
    }
    deep[400] = '\0';
    assert_int_equal(ff_http_path_check(deep, 400, NULL), FF_EINVAL);
}

static void test_route_lookup(void **state)
{
    (void)state;
    char allow[128];
    assert_int_equal(
        ff_http_server_route_lookup(srv, "GET", "/v2/a/b/blobs/x", allow, sizeof(allow)), 200);
    assert_int_equal(
        ff_http_server_route_lookup(srv, "HEAD", "/v2/a/blobs/x", allow, sizeof(allow)), 200);
    assert_int_equal(
        ff_http_server_route_lookup(srv, "DELETE", "/v2/a/blobs/x", allow, sizeof(allow)), 405);
    assert_string_equal(allow, "PUT, GET, HEAD");
    assert_int_equal(ff_http_server_route_lookup(srv, "GET", "/echo", allow, sizeof(allow)), 405);
    assert_string_equal(allow, "POST");
    assert_int_equal(ff_http_server_route_lookup(srv, "GET", "/echo/", allow, sizeof(allow)), 404);
    assert_int_equal(ff_http_server_route_lookup(srv, "GET", "/nope", allow, sizeof(allow)), 404);
    assert_int_equal(ff_http_server_route_lookup(srv, "GET", "/v2/../echo", allow, sizeof(allow)),
                     400);
    assert_int_equal(ff_http_server_route_lookup(srv, "GET", "/v2//blobs/x", allow, sizeof(allow)),
                     400);
    /* A tiny Allow buffer is truncated at a method, never overflowed. */
    char small[6];
    assert_int_equal(
        ff_http_server_route_lookup(srv, "DELETE", "/v2/a/blobs/x", small, sizeof(small)), 405);
    assert_string_equal(small, "PUT");
}

static void test_header_check(void **state)
{
    (void)state;
    assert_int_equal(ff_http_header_check("Location", "/v2/a/blobs/uploads/1", NULL), 0);
    assert_int_equal(
        ff_http_header_check("WWW-Authenticate", "Bearer realm=\"x\",scope=\"a:b\"\tz", NULL), 0);
    assert_int_equal(ff_http_header_check("X-A", "", NULL), 0);
    struct ff_err err;
    assert_int_equal(ff_http_header_check("X-A", "v\r\nX-Injected: 1", &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "0x0d"));
    assert_int_equal(ff_http_header_check("X-A", "v\nX", NULL), FF_EINVAL);
    assert_int_equal(ff_http_header_check("X-A", "\x7f", NULL), FF_EINVAL);
    assert_int_equal(ff_http_header_check("X-A", "\x01", NULL), FF_EINVAL);
    assert_int_equal(ff_http_header_check("", "v", NULL), FF_EINVAL);
    assert_int_equal(ff_http_header_check("X A", "v", NULL), FF_EINVAL);
    assert_int_equal(ff_http_header_check("X:A", "v", NULL), FF_EINVAL);
    assert_int_equal(ff_http_header_check("X-A\r\n", "v", NULL), FF_EINVAL);
    assert_int_equal(ff_http_header_check("content-length", "1", &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "set by the server"));
    assert_int_equal(ff_http_header_check("X-Request-Id", "1", NULL), FF_EINVAL);
}

/* ---------------------------------------------------------------------- */
/* Life cycle errors                                                       */

static void test_new_errors(void **state)
{
    (void)state;
    struct ff_http_server_config cfg;
    struct ff_http_server *s = NULL;
    struct ff_err err;

    test_config(&cfg);
    cfg.cert_path = "/nonexistent/cert.pem";
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EIO);
    assert_non_null(strstr(err.msg, "cannot read certificate \"/nonexistent/cert.pem\""));
    assert_null(s);

    test_config(&cfg);
    cfg.key_path = NULL;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "TLS is mandatory"));

    test_config(&cfg);
    cfg.key_path = key2_path;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "does not match"));

    test_config(&cfg);
    cfg.cert_path = blob_path;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "expected a PEM certificate"));

    test_config(&cfg);
    cfg.key_path = cert_path;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "expected an unencrypted PEM private key"));

    test_config(&cfg);
    cfg.bind_addr = "localhost";
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "bind address \"localhost\""));

    test_config(&cfg);
    cfg.max_header_bytes = 100;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EINVAL);

    test_config(&cfg);
    cfg.max_per_ip = 1000;
    cfg.max_connections = 10;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), FF_EINVAL);

    /* Zero limits take the defaults rather than switching limits off. */
    struct ff_http_server_config zero;
    memset(&zero, 0, sizeof(zero));
    zero.cert_path = cert_path;
    zero.key_path = key_path;
    assert_int_equal(ff_http_server_new(&zero, &s, &err), 0);
    assert_int_equal(ff_http_server_port(s), 0);
    assert_int_equal(ff_http_server_stop(s, 1), 0);
    ff_http_server_free(s);
    ff_http_server_free(NULL);
}

static void test_route_errors(void **state)
{
    (void)state;
    struct ff_http_server_config cfg;
    test_config(&cfg);
    struct ff_http_server *s;
    struct ff_err err;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), 0);
    struct ff_http_handler h = {.on_request = h_echo};
    assert_int_equal(ff_http_server_route(s, "GET", "/a", &h, NULL, &err), 0);
    assert_int_equal(ff_http_server_route(s, "GET", "/a", &h, NULL, &err), FF_EEXIST);
    assert_int_equal(ff_http_server_route(s, "HEAD", "/a", &h, NULL, &err), 0);
    assert_int_equal(ff_http_server_route(s, "G ET", "/b", &h, NULL, &err), FF_EINVAL);
    assert_int_equal(ff_http_server_route(s, "", "/b", &h, NULL, &err), FF_EINVAL);
    assert_int_equal(ff_http_server_route(s, "GET", "/{a}/{a}", &h, NULL, &err), FF_EINVAL);
    h.max_body = (uint64_t)FF_HTTP_BUFFER_MAX + 1;
    assert_int_equal(ff_http_server_route(s, "PUT", "/b", &h, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "use STREAM"));
    struct ff_http_handler st = {
        .body_mode = FF_HTTP_BODY_STREAM, .max_body = 10, .on_complete = h_echo};
    assert_int_equal(ff_http_server_route(s, "PUT", "/b", &st, NULL, &err), FF_EINVAL);
    st.on_body = h_put_body;
    assert_int_equal(ff_http_server_route(s, "PUT", "/b", &st, NULL, &err), 0);
    struct ff_http_handler none = {.body_mode = FF_HTTP_BODY_BUFFER};
    assert_int_equal(ff_http_server_route(s, "PUT", "/c", &none, NULL, &err), FF_EINVAL);
    assert_int_equal(ff_http_server_start(s, &err), 0);
    assert_true(ff_http_server_port(s) > 0);
    assert_int_equal(ff_http_server_start(s, &err), FF_EBUSY);
    assert_int_equal(ff_http_server_route(s, "GET", "/late", &h, NULL, &err), FF_EBUSY);
    assert_int_equal(ff_http_server_stop(s, 1), 0);
    assert_int_equal(ff_http_server_stop(s, 1), 0);
    assert_int_equal(ff_http_server_port(s), 0);
    ff_http_server_free(s);
}

static void test_bind_in_use(void **state)
{
    (void)state;
    struct ff_http_server_config cfg;
    test_config(&cfg);
    cfg.port = ff_http_server_port(srv);
    struct ff_http_server *s;
    struct ff_err err;
    assert_int_equal(ff_http_server_new(&cfg, &s, &err), 0);
    assert_int_equal(ff_http_server_start(s, &err), FF_EIO);
    char want[64];
    FMT(want, "bind 127.0.0.1:%u: Address already in use", (unsigned)cfg.port);
    assert_string_equal(err.msg, want);
    ff_http_server_free(s);
}

/* ---------------------------------------------------------------------- */
/* End to end                                                              */

static void test_echo_and_request_id(void **state)
{
    (void)state;
    struct resp r;
    request("POST", "/echo", "hello, world", 12, NULL, NULL, &r);
    assert_int_equal(r.code, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r), "hello, world");
    char id[64];
    assert_true(resp_header(&r, "X-Request-Id", id, sizeof(id)));
    assert_int_equal(strlen(id), FF_LOG_REQID_SIZE - 1);
    resp_release(&r);

    /* Empty body. */
    request("POST", "/echo", "", 0, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    resp_release(&r);
}

static void test_body_limit(void **state)
{
    (void)state;
    size_t n = ECHO_MAX + 1;
    char *big = calloc(1, n);
    assert_non_null(big);
    struct resp r;
    request("POST", "/echo", big, n, NULL, NULL, &r);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(body_str(&r), "\"code\":\"TOO_LARGE\""));
    resp_release(&r);
    /* Exactly at the limit is fine. */
    request("POST", "/echo", big, ECHO_MAX, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, ECHO_MAX);
    resp_release(&r);
    /* Chunked, a little over the limit: refused once it passes. */
    struct curl_slist *h = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    request("POST", "/echo", big, n, h, NULL, &r);
    assert_int_equal(r.status, 413);
    resp_release(&r);
    curl_slist_free_all(h);
    /* No body allowed on a GET route. */
    request("GET", "/json-error", "x", 1, NULL, NULL, &r);
    assert_int_equal(r.status, 413);
    resp_release(&r);
    free(big);
}

static void test_streamed_upload(void **state)
{
    (void)state;
    int freed = atomic_load(&states_freed);
    struct upload u = {.left = STREAM_BODY_BYTES, .x = 2463534242u};
    u.md = EVP_MD_CTX_new();
    assert_non_null(u.md);
    assert_int_equal(EVP_DigestInit_ex(u.md, EVP_sha256(), NULL), 1);
    struct resp r;
    request("PUT", "/v2/team/app/blobs/sha256:abc", NULL, 0, NULL, &u, &r);
    assert_int_equal(r.code, CURLE_OK);
    assert_int_equal(r.status, 201);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen;
    assert_int_equal(EVP_DigestFinal_ex(u.md, md, &mdlen), 1);
    EVP_MD_CTX_free(u.md);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    ff_hex_encode(md, mdlen, hex);
    assert_string_equal(body_str(&r), hex);
    char name[64];
    assert_true(resp_header(&r, "X-Name", name, sizeof(name)));
    assert_string_equal(name, "team/app");
    resp_release(&r);
    for (int i = 0; i < WAIT_MS && atomic_load(&states_freed) == freed; i += 10)
        sleep_ms(10);
    assert_int_equal(atomic_load(&states_freed), freed + 1);
    pthread_mutex_lock(&observe_lock);
    assert_string_equal(observed_route, "/v2/{name+}/blobs/{digest}");
    assert_int_equal(observed_status, 201);
    assert_int_equal(observed_in, STREAM_BODY_BYTES);
    pthread_mutex_unlock(&observe_lock);
}

static void test_stream_early_answers(void **state)
{
    (void)state;
    struct upload u = {.left = (uint64_t)1024 * 1024, .x = 7};
    struct resp r;
    request("PUT", "/v2/a/blobs/deny", NULL, 0, NULL, &u, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(body_str(&r), "no token for \\\"a\\\""));
    resp_release(&r);
    u = (struct upload){.left = (uint64_t)1024 * 1024, .x = 7};
    request("PUT", "/v2/a/blobs/fail", NULL, 0, NULL, &u, &r);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(body_str(&r), "\"code\":\"DENIED\""));
    resp_release(&r);
}

static void test_client_abort_frees_state(void **state)
{
    (void)state;
    int freed = atomic_load(&states_freed);
    struct upload u = {.left = STREAM_BODY_BYTES, .x = 99, .abort_after = (uint64_t)512 * 1024};
    struct resp r;
    request("PUT", "/v2/a/blobs/sha256:gone", NULL, 0, NULL, &u, &r);
    assert_int_equal(r.code, CURLE_ABORTED_BY_CALLBACK);
    resp_release(&r);
    for (int i = 0; i < WAIT_MS && atomic_load(&states_freed) == freed; i += 10)
        sleep_ms(10);
    assert_int_equal(atomic_load(&states_freed), freed + 1);
}

static void test_not_found_and_method(void **state)
{
    (void)state;
    struct resp r;
    request("GET", "/nope", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(body_str(&r), "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":"
                                      "\"not found\"}}");
    char ct[64], id[64];
    assert_true(resp_header(&r, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "application/json");
    assert_true(resp_header(&r, "X-Request-Id", id, sizeof(id)));
    resp_release(&r);

    request("DELETE", "/v2/a/b/blobs/sha256:x", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    char allow[64];
    assert_true(resp_header(&r, "Allow", allow, sizeof(allow)));
    assert_string_equal(allow, "PUT, GET, HEAD");
    resp_release(&r);

    /* HEAD is not derived from GET. */
    request("HEAD", "/query", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    resp_release(&r);

    request("GET", "/a/%2e%2e/echo", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    resp_release(&r);
    request("GET", "/echo%00x", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(body_str(&r), "NUL"));
    resp_release(&r);
    request("GET", "/query?a=%00", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    resp_release(&r);
}

static void test_head_and_fd(void **state)
{
    (void)state;
    struct resp r;
    request("HEAD", "/v2/a/blobs/sha256:x", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.code, CURLE_OK);
    assert_int_equal(r.status, 200);
    char cl[32];
    assert_true(resp_header(&r, "Content-Length", cl, sizeof(cl)));
    char want[32];
    FMT(want, "%u", HEAD_LENGTH);
    assert_string_equal(cl, want);
    assert_int_equal(r.body.len, 0);
    resp_release(&r);

    request("GET", "/v2/a/blobs/sha256:x?offset=10&length=20", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, 20);
    for (size_t i = 0; i < 20; i++)
        assert_int_equal((unsigned char)r.body.data[i], 10 + i);
    char digest[64];
    assert_true(resp_header(&r, "Docker-Content-Digest", digest, sizeof(digest)));
    assert_string_equal(digest, "sha256:x");
    resp_release(&r);

    request("GET", "/v2/a/blobs/sha256:x?offset=0&length=0", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, 0);
    resp_release(&r);
}

static void test_json_error_and_defaults(void **state)
{
    (void)state;
    struct resp r;
    request("GET", "/json-error", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(body_str(&r), "{\"error\":{\"code\":\"NAME_UNKNOWN\",\"message\":"
                                      "\"repository \\\"a/b\\\" is not known\"}}");
    resp_release(&r);
    request("GET", "/denied", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 403);
    resp_release(&r);
    request("GET", "/forgot", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(body_str(&r), "\"code\":\"INTERNAL\""));
    resp_release(&r);
}

static void test_query_headers_stream(void **state)
{
    (void)state;
    struct resp r;
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer x");
    request("GET", "/query?a=1&scope=repository%3Aa%3Apull&a=2&scope=x&flag", NULL, 0, h, NULL, &r);
    curl_slist_free_all(h);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r),
                        "a=1 A=(none) scopes=repository:a:pull;x; auth=yes ip=127.0.0.1");
    resp_release(&r);

    request("GET", "/stream", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r), "chunk 3\nchunk 2\nchunk 1\n");
    char te[32];
    assert_true(resp_header(&r, "Transfer-Encoding", te, sizeof(te)));
    assert_string_equal(te, "chunked");
    resp_release(&r);

    request("GET", "/checks", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r), "head=-1 crlf=-1 reserved=-1 status=-1 fd=-1 reader=-1/1 "
                                      "method=GET route=/checks");
    resp_release(&r);
}

static bool log_has(const char *needle)
{
    char buf[256 * 1024];
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static void test_access_log(void **state)
{
    (void)state;
    struct resp r;
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer sekrit-token-42");
    request("GET", "/query?token=sekrit-query", NULL, 0, h, NULL, &r);
    curl_slist_free_all(h);
    assert_int_equal(r.status, 200);
    char id[64];
    assert_true(resp_header(&r, "X-Request-Id", id, sizeof(id)));
    resp_release(&r);
    char want[256];
    FMT(want,
        "event=http.request req=%s method=GET path=/query status=200 bytes_in=0 "
        "bytes_out=",
        id);
    for (int i = 0; i < WAIT_MS && !log_has(want); i += 10)
        sleep_ms(10);
    assert_true(log_has(want));
    assert_true(log_has("ip=127.0.0.1"));
    assert_false(log_has("sekrit"));
}

struct slow_call {
    struct resp r;
};

static void *slow_thread(void *arg)
{
    struct slow_call *c = arg;
    request("GET", "/slow", NULL, 0, NULL, NULL, &c->r);
    return NULL;
}

static void test_stop_waits_and_times_out(void **state)
{
    (void)state;
    struct ff_http_server_config cfg;
    test_config(&cfg);
    cfg.threading = FF_HTTP_THREAD_POOL;
    cfg.pool_threads = 2;
    struct ff_http_server *s;
    assert_int_equal(ff_http_server_new(&cfg, &s, NULL), 0);
    assert_int_equal(add_routes(s), 0);
    assert_int_equal(ff_http_server_start(s, NULL), 0);
    char saved[64];
    ff_strlcpy(saved, base_url, sizeof(saved));
    FMT(base_url, "https://127.0.0.1:%u", (unsigned)ff_http_server_port(s));

    /* The thread-pool model serves too. */
    struct resp r;
    request("POST", "/echo", "pool", 4, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r), "pool");
    resp_release(&r);

    /* A grace long enough lets the request finish. */
    struct slow_call c;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_thread, &c), 0);
    sleep_ms(150);
    assert_int_equal(ff_http_server_stop(s, 5), 0);
    pthread_join(t, NULL);
    assert_int_equal(c.r.status, 200);
    char conn[32];
    assert_true(resp_header(&c.r, "Connection", conn, sizeof(conn)));
    assert_string_equal(conn, "close");
    resp_release(&c.r);
    ff_http_server_free(s);

    /* Grace 0: the stop reports the request it had to cut. */
    test_config(&cfg);
    assert_int_equal(ff_http_server_new(&cfg, &s, NULL), 0);
    assert_int_equal(add_routes(s), 0);
    assert_int_equal(ff_http_server_start(s, NULL), 0);
    FMT(base_url, "https://127.0.0.1:%u", (unsigned)ff_http_server_port(s));
    assert_int_equal(pthread_create(&t, NULL, slow_thread, &c), 0);
    sleep_ms(150);
    assert_int_equal(ff_http_server_stop(s, 0), FF_ETIMEOUT);
    pthread_join(t, NULL);
    resp_release(&c.r);
    ff_http_server_free(s);
    ff_strlcpy(base_url, saved, sizeof(base_url));
}

static void test_blocking_handler_outlives_idle_timeout(void **state)
{
    (void)state;
    struct ff_http_server_config cfg;
    test_config(&cfg);
    cfg.timeout_seconds = 1;
    struct ff_http_server *s;
    assert_int_equal(ff_http_server_new(&cfg, &s, NULL), 0);
    assert_int_equal(add_routes(s), 0);
    assert_int_equal(ff_http_server_start(s, NULL), 0);
    char saved[64];
    ff_strlcpy(saved, base_url, sizeof(saved));
    FMT(base_url, "https://127.0.0.1:%u", (unsigned)ff_http_server_port(s));
    /* The idle timeout counts silence on the wire, not a handler that
     * blocks (long-poll): the answer still arrives after 2.5 s. */
    struct resp r;
    request("GET", "/slow?ms=2500", NULL, 0, NULL, NULL, &r);
    assert_int_equal(r.code, CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_release(&r);
    assert_int_equal(ff_http_server_stop(s, 1), 0);
    ff_http_server_free(s);
    ff_strlcpy(base_url, saved, sizeof(base_url));
}

static void test_plain_http_fails(void **state)
{
    (void)state;
    char saved[64];
    ff_strlcpy(saved, base_url, sizeof(saved));
    FMT(base_url, "http://127.0.0.1:%u", (unsigned)ff_http_server_port(srv));
    struct resp r;
    request("POST", "/echo", "x", 1, NULL, NULL, &r);
    assert_int_not_equal(r.code, CURLE_OK);
    assert_int_not_equal(r.status, 200);
    resp_release(&r);
    ff_strlcpy(base_url, saved, sizeof(base_url));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_captures),
        cmocka_unit_test(test_pattern_refused),
        cmocka_unit_test(test_path_check),
        cmocka_unit_test(test_route_lookup),
        cmocka_unit_test(test_header_check),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_bind_in_use),
        cmocka_unit_test(test_echo_and_request_id),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_streamed_upload),
        cmocka_unit_test(test_stream_early_answers),
        cmocka_unit_test(test_client_abort_frees_state),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_head_and_fd),
        cmocka_unit_test(test_json_error_and_defaults),
        cmocka_unit_test(test_query_headers_stream),
        cmocka_unit_test(test_access_log),
        cmocka_unit_test(test_stop_waits_and_times_out),
        cmocka_unit_test(test_blocking_handler_outlives_idle_timeout),
        cmocka_unit_test(test_plain_http_fails),
    };
    return cmocka_run_group_tests_name("lib/http_server", tests, setup, teardown);
}
