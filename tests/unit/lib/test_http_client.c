#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_base64.h"
#include "ff_buf.h"
#include "ff_http_client.h"
#include "ff_log.h"
#include "ff_str.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The test server: tests/unit/lib/https_fixture.py next to this file, run
 * from the repository root as the Makefile and tests/run.py do. */
#define PYTHON "/usr/bin/python3"
/* How long the server may take to start and write its port. */
#define SERVER_START_MS 15000
/* Size of the streamed upload and download tests. */
#define STREAM_BYTES (64u << 20)
/* Block of the generated stream, as in https_fixture.py gen_block. */
#define GEN_BLOCK 65536u

static char tmpdir[64];
static char cert[128], key[128], other_cert[128], other_key[128], port_file[128];
static char base[64];
static pid_t server_pid = -1;

/* snprintf that fails the test when the text does not fit. */
static void fmt(char *buf, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t size, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, size, f, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < size);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Runs argv to completion with output discarded; returns its exit status. */
static int run(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static int make_cert(const char *c, const char *k)
{
    char *const argv[] = {"openssl",
                          "req",
                          "-x509",
                          "-newkey",
                          "ec",
                          "-pkeyopt",
                          "ec_paramgen_curve:P-256",
                          "-nodes",
                          "-keyout",
                          (char *)k,
                          "-out",
                          (char *)c,
                          "-days",
                          "1",
                          "-subj",
                          "/CN=localhost",
                          "-addext",
                          "subjectAltName=IP:127.0.0.1,DNS:localhost",
                          NULL};
    return run(argv);
}

static int start_server(void)
{
    char fixture[256];
    const char *slash = strrchr(__FILE__, '/');
    fmt(fixture, sizeof(fixture), "%.*s/https_fixture.py",
        slash != NULL ? (int)(slash - __FILE__) : 1, slash != NULL ? __FILE__ : ".");
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        char *const argv[] = {PYTHON, fixture, cert, key, port_file, NULL};
        execv(PYTHON, argv);
        _exit(127);
    }
    for (long waited = 0; waited < SERVER_START_MS; waited += 20) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            char line[16] = "";
            char *ok = fgets(line, sizeof(line), f);
            (void)fclose(f);
            int64_t port = 0;
            line[strcspn(line, "\n")] = '\0';
            if (ok != NULL && ff_parse_i64(line, 1, 65535, &port) == 0) {
                fmt(base, sizeof(base), "https://127.0.0.1:%d", (int)port);
                return 0;
            }
        }
        int status;
        if (waitpid(server_pid, &status, WNOHANG) == server_pid) {
            server_pid = -1;
            return -1;
        }
        usleep(20000);
    }
    return -1;
}

static int group_setup(void **state)
{
    (void)state;
    ff_log_open("ff-test", FF_LOG_ERROR);
    fmt(tmpdir, sizeof(tmpdir), "/tmp/ff-test-http-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    fmt(cert, sizeof(cert), "%s/cert.pem", tmpdir);
    fmt(key, sizeof(key), "%s/key.pem", tmpdir);
    fmt(other_cert, sizeof(other_cert), "%s/other.pem", tmpdir);
    fmt(other_key, sizeof(other_key), "%s/otherkey.pem", tmpdir);
    fmt(port_file, sizeof(port_file), "%s/port", tmpdir);
    if (make_cert(cert, key) != 0 || make_cert(other_cert, other_key) != 0)
        return -1;
    return start_server();
}

static int group_teardown(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    unlink(cert);
    unlink(key);
    unlink(other_cert);
    unlink(other_key);
    unlink(port_file);
    rmdir(tmpdir);
    return 0;
}

static struct ff_http_client *client_with(const char *ca, unsigned retries)
{
    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.ca_file = ca;
    cfg.max_retries = retries;
    cfg.retry_base_ms = 10;
    struct ff_http_client *c = NULL;
    struct ff_err err = {0};
    if (ff_http_client_new(&cfg, &c, &err) != 0)
        fail_msg("client: %s", err.msg);
    return c;
}

static struct ff_http_client *client(void)
{
    return client_with(cert, 2);
}

static const char *url(const char *path)
{
    static char buf[256];
    fmt(buf, sizeof(buf), "%s%s", base, path);
    return buf;
}

/* Asks the server how often it saw key. */
static long hits(struct ff_http_client *c, const char *k)
{
    char path[96];
    fmt(path, sizeof(path), "/hits/%s", k);
    struct ff_buf body;
    ff_buf_init(&body, 64);
    struct ff_http_client_request req = {.url = url(path), .resp_body = &body};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    int64_t n = -1;
    assert_int_equal(ff_parse_i64(body.data, 0, 1000, &n), 0);
    ff_buf_release(&body);
    ff_http_client_response_release(&resp);
    return (long)n;
}

static void test_echo_get(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_buf body;
    ff_buf_init(&body, 1 << 16);
    const char *headers[] = {"X-Test: one", "Accept: application/json"};
    struct ff_http_client_request req = {
        .url = url("/echo?q=1"), .headers = headers, .n_headers = 2, .resp_body = &body};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 1);
    assert_int_equal(resp.body_bytes, body.len);
    assert_non_null(strstr(body.data, "METHOD GET\nPATH /echo?q=1\n"));
    assert_non_null(strstr(body.data, "X-Test: one\n"));
    assert_non_null(strstr(body.data, "Accept: application/json\n"));
    assert_non_null(strstr(body.data, "User-Agent: " FF_HTTP_USER_AGENT "\n"));
    assert_null(strstr(body.data, "Authorization"));
    assert_string_equal(ff_http_client_response_header(&resp, "content-type"), "text/plain");
    ff_http_client_response_release(&resp);

    /* The same client again: the connection is reused, content appended
     * to what the buffer held. */
    size_t before = body.len;
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(body.len, 2 * before);
    ff_http_client_response_release(&resp);
    ff_buf_release(&body);
    ff_http_client_free(c);
}

static void test_methods_and_bodies(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_buf body;
    ff_buf_init(&body, 1 << 16);
    struct ff_http_client_response resp;
    struct ff_err err = {0};

    struct ff_http_client_request post = {.method = "POST",
                                   .url = url("/echo"),
                                   .body = "hello world",
                                   .body_len = 11,
                                   .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &post, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(body.data, "METHOD POST\n"));
    assert_non_null(strstr(body.data, "Content-Length: 11\n"));
    assert_int_equal(strcmp(body.data + body.len - 12, "\nhello world"), 0);
    ff_http_client_response_release(&resp);

    /* POST without a body still says how long it is. */
    ff_buf_reset(&body);
    struct ff_http_client_request empty = {.method = "POST", .url = url("/echo"), .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &empty, &resp, &err), 0);
    assert_non_null(strstr(body.data, "Content-Length: 0\n"));
    ff_http_client_response_release(&resp);

    ff_buf_reset(&body);
    struct ff_http_client_request patch = {
        .method = "PATCH", .url = url("/echo"), .body = "abc", .body_len = 3, .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &patch, &resp, &err), 0);
    assert_non_null(strstr(body.data, "METHOD PATCH\n"));
    assert_int_equal(strcmp(body.data + body.len - 4, "\nabc"), 0);
    ff_http_client_response_release(&resp);

    ff_buf_reset(&body);
    struct ff_http_client_request del = {.method = "DELETE", .url = url("/echo"), .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &del, &resp, &err), 0);
    assert_non_null(strstr(body.data, "METHOD DELETE\n"));
    ff_http_client_response_release(&resp);

    ff_buf_reset(&body);
    struct ff_http_client_request range = {.url = url("/echo"), .range = "0-9", .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &range, &resp, &err), 0);
    assert_non_null(strstr(body.data, "Range: bytes=0-9\n"));
    ff_http_client_response_release(&resp);

    ff_buf_reset(&body);
    struct ff_http_client_request head = {.method = "HEAD", .url = url("/echo"), .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &head, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_bytes, 0);
    assert_int_equal(body.len, 0);
    assert_non_null(ff_http_client_response_header(&resp, "Content-Length"));
    ff_http_client_response_release(&resp);

    ff_buf_release(&body);
    ff_http_client_free(c);
}

static void test_auth_headers(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_buf body;
    ff_buf_init(&body, 1 << 16);
    struct ff_http_client_response resp;
    struct ff_err err = {0};

    struct ff_http_client_request bearer = {.url = url("/echo"),
                                     .auth = FF_HTTP_AUTH_BEARER,
                                     .token = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
                                     .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &bearer, &resp, &err), 0);
    assert_non_null(strstr(body.data, "Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln\n"));
    ff_http_client_response_release(&resp);

    ff_buf_reset(&body);
    struct ff_http_client_request basic = {.url = url("/echo"),
                                    .auth = FF_HTTP_AUTH_BASIC,
                                    .user = "alice",
                                    .password = "pa:ss word!",
                                    .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &basic, &resp, &err), 0);
    char *b64 = ff_base64_encode_new((const unsigned char *)"alice:pa:ss word!", 17, false);
    assert_non_null(b64);
    char want[128];
    fmt(want, sizeof(want), "Authorization: Basic %s\n", b64);
    free(b64);
    assert_non_null(strstr(body.data, want));
    ff_http_client_response_release(&resp);

    /* Refused before anything is sent; no secret in the messages. */
    struct ff_http_client_request colon = {
        .url = url("/echo"), .auth = FF_HTTP_AUTH_BASIC, .user = "ali:ce", .password = "hunter2"};
    assert_int_equal(ff_http_client_do(c, &colon, &resp, &err), FF_EINVAL);
    assert_null(strstr(err.msg, "hunter2"));
    ff_http_client_response_release(&resp);
    struct ff_http_client_request inject = {
        .url = url("/echo"), .auth = FF_HTTP_AUTH_BEARER, .token = "abc\r\nX-Evil: 1"};
    assert_int_equal(ff_http_client_do(c, &inject, &resp, &err), FF_EINVAL);
    assert_null(strstr(err.msg, "abc"));
    ff_http_client_response_release(&resp);
    struct ff_http_client_request notoken = {.url = url("/echo"), .auth = FF_HTTP_AUTH_BEARER};
    assert_int_equal(ff_http_client_do(c, &notoken, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);
    const char *raw[] = {"authorization: Bearer sneaky"};
    struct ff_http_client_request as_header = {.url = url("/echo"), .headers = raw, .n_headers = 1};
    assert_int_equal(ff_http_client_do(c, &as_header, &resp, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "expected it in auth"));
    ff_http_client_response_release(&resp);

    ff_buf_release(&body);
    ff_http_client_free(c);
}

static void test_retry_503_then_200(void **state)
{
    (void)state;
    struct ff_http_client *c = client_with(cert, 3);
    struct ff_buf body;
    ff_buf_init(&body, 1024);
    struct ff_http_client_request req = {.url = url("/flaky/a1"), .resp_body = &body};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 3);
    /* Only the final response's body is kept. */
    assert_string_equal(body.data, "attempt 3");
    ff_http_client_response_release(&resp);
    assert_int_equal(hits(c, "a1"), 3);

    /* Too few retries: the last 503 is the answer, not an error. */
    ff_http_client_free(c);
    c = client_with(cert, 1);
    ff_buf_reset(&body);
    req.url = url("/flaky/a2");
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.attempts, 2);
    assert_string_equal(body.data, "{\"error\":\"try later\"}");
    ff_http_client_response_release(&resp);
    ff_buf_release(&body);
    ff_http_client_free(c);
}

static void test_retry_only_idempotent(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    struct ff_http_client_request post = {
        .method = "POST", .url = url("/status/503/b1"), .body = "x", .body_len = 1};
    assert_int_equal(ff_http_client_do(c, &post, &resp, &err), 0);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.attempts, 1);
    ff_http_client_response_release(&resp);
    assert_int_equal(hits(c, "b1"), 1);

    post.url = url("/status/503/b2");
    post.idempotent = true;
    assert_int_equal(ff_http_client_do(c, &post, &resp, &err), 0);
    assert_int_equal(resp.attempts, 3);
    ff_http_client_response_release(&resp);
    assert_int_equal(hits(c, "b2"), 3);

    /* 4xx other than 429 is never retried, and not an error here. */
    struct ff_http_client_request get = {.url = url("/status/404/b3")};
    assert_int_equal(ff_http_client_do(c, &get, &resp, &err), 0);
    assert_int_equal(resp.status, 404);
    assert_int_equal(resp.attempts, 1);
    /* Nobody asked for the body: an error body is still kept. */
    assert_string_equal(resp.error_body.data, "{\"errors\":[{\"code\":\"X\"}]}");
    ff_http_client_response_release(&resp);
    assert_int_equal(hits(c, "b3"), 1);

    get.url = url("/status/500/b4");
    assert_int_equal(ff_http_client_do(c, &get, &resp, &err), 0);
    assert_int_equal(resp.attempts, 1);
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);
}

static void test_retry_after(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    struct ff_http_client_request req = {.url = url("/ratelimit/c1")};
    long t0 = now_ms();
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    long took = now_ms() - t0;
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 2);
    assert_true(took >= 950);
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);

    /* The cap wins over a longer Retry-After. */
    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.ca_file = cert;
    cfg.retry_after_max_ms = 50;
    assert_int_equal(ff_http_client_new(&cfg, &c, &err), 0);
    req.url = url("/ratelimit/c2");
    t0 = now_ms();
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    took = now_ms() - t0;
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 2);
    assert_true(took < 900);
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);
}

/* Generates the stream pattern of https_fixture.py for uploads. */
struct gen {
    uint64_t total, pos;
    uint64_t cur_block; /* index held in block, UINT64_MAX for none */
    unsigned char block[GEN_BLOCK];
    int rewinds;
    int fail_at_read; /* return FF_EIO on this read (1-based), 0: never */
    int reads;
};

static void gen_fill(struct gen *g, uint64_t idx)
{
    if (g->cur_block == idx)
        return;
    char num[32];
    fmt(num, sizeof(num), "%llu", (unsigned long long)idx);
    unsigned char md[32];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(num, strlen(num), md, &mdlen, EVP_sha256(), NULL), 1);
    for (size_t off = 0; off < GEN_BLOCK; off += 32)
        memcpy(g->block + off, md, 32);
    g->cur_block = idx;
}

static void gen_init(struct gen *g, uint64_t total)
{
    memset(g, 0, sizeof(*g));
    g->total = total;
    g->cur_block = UINT64_MAX;
}

static int gen_read(void *ctx, void *buf, size_t cap, size_t *got, struct ff_err *err)
{
    struct gen *g = ctx;
    g->reads++;
    if (g->fail_at_read != 0 && g->reads == g->fail_at_read)
        return ff_err_set(err, FF_EIO, "layer file: read error on purpose");
    size_t n = 0;
    while (n < cap && g->pos < g->total) {
        gen_fill(g, g->pos / GEN_BLOCK);
        size_t off = (size_t)(g->pos % GEN_BLOCK);
        size_t k = GEN_BLOCK - off;
        if (k > cap - n)
            k = cap - n;
        if (k > g->total - g->pos)
            k = (size_t)(g->total - g->pos);
        memcpy((char *)buf + n, g->block + off, k);
        n += k;
        g->pos += k;
    }
    *got = n;
    return 0;
}

static int gen_rewind(void *ctx, struct ff_err *err)
{
    (void)err;
    struct gen *g = ctx;
    g->pos = 0;
    g->rewinds++;
    return 0;
}

/* SHA-256 hex of the first total bytes of the pattern. */
static void gen_digest(uint64_t total, char hex[65])
{
    struct gen *g = malloc(sizeof(*g));
    assert_non_null(g);
    gen_init(g, total);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
    static unsigned char chunk[GEN_BLOCK];
    size_t got = 0;
    do {
        assert_int_equal(gen_read(g, chunk, sizeof(chunk), &got, NULL), 0);
        assert_int_equal(EVP_DigestUpdate(md, chunk, got), 1);
    } while (got > 0);
    unsigned char out[32];
    assert_int_equal(EVP_DigestFinal_ex(md, out, NULL), 1);
    EVP_MD_CTX_free(md);
    free(g);
    ff_hex_encode(out, 32, hex);
}

static void test_streamed_upload(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct gen *g = malloc(sizeof(*g));
    assert_non_null(g);
    char want[65], line[128];
    struct ff_buf body;
    ff_buf_init(&body, 256);
    struct ff_http_client_response resp;
    struct ff_err err = {0};

    /* Known length: Content-Length. */
    gen_init(g, STREAM_BYTES);
    gen_digest(STREAM_BYTES, want);
    struct ff_http_client_request req = {.method = "PUT",
                                  .url = url("/upload"),
                                  .body_read = gen_read,
                                  .body_rewind = gen_rewind,
                                  .body_ctx = g,
                                  .body_size = STREAM_BYTES,
                                  .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    fmt(line, sizeof(line), "%s %u", want, STREAM_BYTES);
    assert_string_equal(body.data, line);
    ff_http_client_response_release(&resp);

    /* Unknown length: chunked, an odd size. */
    const uint64_t odd = (1u << 20) + 7;
    gen_init(g, odd);
    gen_digest(odd, want);
    ff_buf_reset(&body);
    req.body_size = 0;
    req.method = "POST";
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    fmt(line, sizeof(line), "%s %llu", want, (unsigned long long)odd);
    assert_string_equal(body.data, line);
    ff_http_client_response_release(&resp);

    ff_buf_release(&body);
    free(g);
    ff_http_client_free(c);
}

static void test_streamed_upload_retry_needs_rewind(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct gen *g = malloc(sizeof(*g));
    assert_non_null(g);
    struct ff_http_client_response resp;
    struct ff_err err = {0};

    gen_init(g, 4096);
    struct ff_http_client_request req = {.method = "PUT",
                                  .url = url("/status/503/d1"),
                                  .body_read = gen_read,
                                  .body_ctx = g,
                                  .body_size = 4096};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.attempts, 1);
    ff_http_client_response_release(&resp);
    assert_int_equal(hits(c, "d1"), 1);

    gen_init(g, 4096);
    req.url = url("/status/503/d2");
    req.body_rewind = gen_rewind;
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.attempts, 3);
    assert_true(g->rewinds >= 2);
    ff_http_client_response_release(&resp);
    assert_int_equal(hits(c, "d2"), 3);

    /* A failing read callback ends the request with its own error. */
    gen_init(g, 1 << 20);
    g->fail_at_read = 2;
    req.url = url("/upload");
    req.body_size = 1 << 20;
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EIO);
    assert_non_null(strstr(err.msg, "read error on purpose"));
    assert_int_equal(resp.attempts, 1);
    ff_http_client_response_release(&resp);

    free(g);
    ff_http_client_free(c);
}

struct sink {
    EVP_MD_CTX *md;
    uint64_t n;
    int fail_after; /* bytes after which to fail, 0: never */
};

static int sink_write(void *ctx, const void *data, size_t n, struct ff_err *err)
{
    struct sink *s = ctx;
    s->n += n;
    if (s->fail_after != 0 && s->n > (uint64_t)s->fail_after)
        return ff_err_set(err, FF_EIO, "blob file: disk full on purpose");
    if (EVP_DigestUpdate(s->md, data, n) != 1)
        return ff_err_set(err, FF_ECRYPTO, "sha256 failed");
    return 0;
}

static void test_streamed_download(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    char want[65], got[65];
    gen_digest(STREAM_BYTES, want);
    struct sink s = {.md = EVP_MD_CTX_new()};
    assert_non_null(s.md);
    assert_int_equal(EVP_DigestInit_ex(s.md, EVP_sha256(), NULL), 1);
    char path[64];
    fmt(path, sizeof(path), "/stream/%u", STREAM_BYTES);
    struct ff_http_client_request req = {.url = url(path), .resp_write = sink_write, .resp_ctx = &s};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_bytes, STREAM_BYTES);
    assert_int_equal(s.n, STREAM_BYTES);
    unsigned char md[32];
    assert_int_equal(EVP_DigestFinal_ex(s.md, md, NULL), 1);
    ff_hex_encode(md, 32, got);
    assert_string_equal(got, want);
    ff_http_client_response_release(&resp);

    /* An error status does not reach the callback. */
    assert_int_equal(EVP_DigestInit_ex(s.md, EVP_sha256(), NULL), 1);
    s.n = 0;
    req.url = url("/status/404/e1");
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 404);
    assert_int_equal(s.n, 0);
    assert_string_equal(resp.error_body.data, "{\"errors\":[{\"code\":\"X\"}]}");
    ff_http_client_response_release(&resp);

    /* A failing callback stops the transfer with its error, no retry. */
    s.fail_after = 1 << 20;
    s.n = 0;
    req.url = url(path);
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EIO);
    assert_non_null(strstr(err.msg, "disk full on purpose"));
    assert_int_equal(resp.attempts, 1);
    ff_http_client_response_release(&resp);

    EVP_MD_CTX_free(s.md);
    ff_http_client_free(c);
}

static void test_timeout(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_http_client_request req = {.url = url("/slow"), .timeout_ms = 300};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    long t0 = now_ms();
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ETIMEOUT);
    assert_true(now_ms() - t0 < 3000);
    assert_int_equal(resp.attempts, 1);
    assert_non_null(strstr(err.msg, "GET \""));
    assert_non_null(strstr(err.msg, "/slow\""));
    assert_non_null(strstr(err.msg, "timed out"));
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);
}

static void test_body_cap(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_buf body;
    ff_buf_init(&body, 1000);
    struct ff_http_client_response resp;
    struct ff_err err = {0};

    struct ff_http_client_request req = {.url = url("/big/100000"), .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "exceeds 1000 bytes"));
    ff_http_client_response_release(&resp);

    /* No length announced: caught while receiving. */
    req.url = url("/bigchunked/100000");
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "exceeds 1000 bytes"));
    assert_true(body.len <= 1000);
    ff_http_client_response_release(&resp);

    ff_buf_reset(&body);
    req.url = url("/big/1000");
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(body.len, 1000);
    ff_http_client_response_release(&resp);

    req.url = url("/hugeheaders");
    ff_buf_reset(&body);
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "response headers exceed"));
    ff_http_client_response_release(&resp);
    ff_buf_release(&body);
    ff_http_client_free(c);
}

static void test_response_headers(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_http_client_request req = {.url = url("/headers")};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    char digest[80];
    fmt(digest, sizeof(digest), "sha256:%s",
        "abababababababababababababababababababababababababababababababab");
    assert_string_equal(ff_http_client_response_header(&resp, "docker-content-digest"), digest);
    assert_string_equal(ff_http_client_response_header(&resp, "DOCKER-CONTENT-DIGEST"), digest);
    assert_string_equal(ff_http_client_response_header(&resp, "Link"),
                        "</v2/_catalog?n=2&last=b>; rel=\"next\"");
    assert_string_equal(ff_http_client_response_header_nth(&resp, "link", 1),
                        "</v2/other>; rel=\"other\"");
    assert_null(ff_http_client_response_header_nth(&resp, "link", 2));
    assert_non_null(strstr(ff_http_client_response_header(&resp, "www-authenticate"),
                           "scope=\"repository:a/b:pull\""));
    assert_string_equal(ff_http_client_response_header(&resp, "X-Spaces"), "padded value");
    assert_string_equal(ff_http_client_response_header(&resp, "content-length"), "2");
    assert_null(ff_http_client_response_header(&resp, "Location"));
    ff_http_client_response_release(&resp);
    /* Released twice is harmless. */
    ff_http_client_response_release(&resp);
    assert_null(ff_http_client_response_header(&resp, "Link"));
    ff_http_client_free(c);
}

static void test_wrong_ca(void **state)
{
    (void)state;
    struct ff_http_client *c = client_with(other_cert, 2);
    struct ff_http_client_request req = {.url = url("/echo")};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ENET);
    assert_non_null(strstr(err.msg, "tls: "));
    assert_non_null(strstr(err.msg, "certificate"));
    /* A certificate problem does not go away by retrying. */
    assert_int_equal(resp.attempts, 1);
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);

    /* The system bundle does not know our test CA either. */
    c = client_with(NULL, 0);
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ENET);
    assert_non_null(strstr(err.msg, "certificate"));
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);
}

static void test_bad_urls(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    char http_url[128];
    fmt(http_url, sizeof(http_url), "http://%s/echo", base + strlen("https://"));
    struct ff_http_client_request req = {.url = http_url};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "scheme \"http\" refused, expected https"));
    ff_http_client_response_release(&resp);

    req.url = "ftp://127.0.0.1/x";
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);
    req.url = "https://bob:hunter2@127.0.0.1/x";
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EINVAL);
    assert_null(strstr(err.msg, "hunter2"));
    ff_http_client_response_release(&resp);
    req.url = "127.0.0.1/no-scheme";
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);
    req.url = "https://127.0.0.1/a b";
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);
    req.url = NULL;
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);

    /* With allow_http (tests only) the scheme passes our check; this
     * server speaks TLS only, so the exchange itself fails. */
    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.allow_http = true;
    cfg.max_retries = 0;
    cfg.timeout_ms = 3000;
    assert_int_equal(ff_http_client_new(&cfg, &c, &err), 0);
    req.url = http_url;
    int rc = ff_http_client_do(c, &req, &resp, &err);
    assert_true(rc == 0 || rc == FF_ENET);
    if (rc == 0)
        assert_int_equal(resp.status, 400);
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);
}

static void test_bad_requests(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    struct ff_http_client_request req = {.url = url("/echo"), .method = "G ET"};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);

    const char *nocolon[] = {"X-Test"};
    struct ff_http_client_request h1 = {.url = url("/echo"), .headers = nocolon, .n_headers = 1};
    assert_int_equal(ff_http_client_do(c, &h1, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);
    const char *crlf[] = {"X-Test: a\r\nX-Evil: b"};
    struct ff_http_client_request h2 = {.url = url("/echo"), .headers = crlf, .n_headers = 1};
    assert_int_equal(ff_http_client_do(c, &h2, &resp, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "control characters"));
    ff_http_client_response_release(&resp);

    struct gen g1;
    gen_init(&g1, 1);
    struct ff_http_client_request both = {.method = "PUT",
                                   .url = url("/echo"),
                                   .body = "x",
                                   .body_len = 1,
                                   .body_read = gen_read,
                                   .body_ctx = &g1};
    assert_int_equal(ff_http_client_do(c, &both, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);

    struct ff_http_client_request range = {.url = url("/echo"), .range = "0-9\r\nX: y"};
    assert_int_equal(ff_http_client_do(c, &range, &resp, &err), FF_EINVAL);
    ff_http_client_response_release(&resp);

    struct ff_http_client *c2 = NULL;
    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(ff_http_client_new(&cfg, &c2, &err), FF_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/ca.pem"));
    ff_http_client_config_init(&cfg);
    cfg.timeout_ms = -1;
    assert_int_equal(ff_http_client_new(&cfg, &c2, &err), FF_EINVAL);
    assert_null(c2);
    ff_http_client_free(NULL);
    ff_http_client_free(c);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* A port that was just free: nothing listens there. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    close(s);
    char u[64];
    fmt(u, sizeof(u), "https://127.0.0.1:%d/x?token=secret", ntohs(sa.sin_port));

    struct ff_http_client *c = client();
    struct ff_http_client_request req = {.url = u};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ENET);
    assert_int_equal(resp.attempts, 3);
    assert_non_null(strstr(err.msg, "127.0.0.1"));
    /* The query string (a presigned URL's signature) stays out. */
    assert_null(strstr(err.msg, "secret"));
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);
}

static void test_dropped_connection_retried(void **state)
{
    (void)state;
    struct ff_http_client *c = client_with(cert, 3);
    struct ff_buf body;
    ff_buf_init(&body, 64);
    struct ff_http_client_request req = {.url = url("/drop/f1"), .resp_body = &body};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(body.data, "made it");
    assert_true(resp.attempts >= 2);
    ff_http_client_response_release(&resp);
    assert_int_equal(hits(c, "f1"), 3);
    ff_buf_release(&body);
    ff_http_client_free(c);
}

static void test_redirects(void **state)
{
    (void)state;
    struct ff_http_client *c = client();
    struct ff_buf body;
    ff_buf_init(&body, 1 << 16);
    struct ff_http_client_request req = {.url = url("/redirect"), .resp_body = &body};
    struct ff_http_client_response resp;
    struct ff_err err = {0};
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 302);
    assert_string_equal(ff_http_client_response_header(&resp, "location"), "/echo");
    ff_http_client_response_release(&resp);
    ff_http_client_free(c);

    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.ca_file = cert;
    cfg.follow_redirects = true;
    cfg.max_retries = 0;
    assert_int_equal(ff_http_client_new(&cfg, &c, &err), 0);
    ff_buf_reset(&body);
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(body.data, "PATH /echo\n"));
    /* Headers are the final response's only. */
    assert_null(ff_http_client_response_header(&resp, "location"));
    ff_http_client_response_release(&resp);

    /* Credentials stay with the host they were meant for. */
    ff_buf_reset(&body);
    struct ff_http_client_request authed = {.url = url("/redirect"),
                                     .auth = FF_HTTP_AUTH_BEARER,
                                     .token = "same-host-token",
                                     .resp_body = &body};
    assert_int_equal(ff_http_client_do(c, &authed, &resp, &err), 0);
    assert_non_null(strstr(body.data, "Authorization: Bearer same-host-token\n"));
    ff_http_client_response_release(&resp);
    ff_buf_reset(&body);
    authed.url = url("/redirect-other");
    assert_int_equal(ff_http_client_do(c, &authed, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(body.data, "Host: localhost:"));
    assert_null(strstr(body.data, "Authorization"));
    ff_http_client_response_release(&resp);

    req.url = url("/redirect-http");
    assert_int_equal(ff_http_client_do(c, &req, &resp, &err), FF_ENET);
    ff_http_client_response_release(&resp);
    ff_buf_release(&body);
    ff_http_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_get),
        cmocka_unit_test(test_methods_and_bodies),
        cmocka_unit_test(test_auth_headers),
        cmocka_unit_test(test_retry_503_then_200),
        cmocka_unit_test(test_retry_only_idempotent),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_streamed_upload),
        cmocka_unit_test(test_streamed_upload_retry_needs_rewind),
        cmocka_unit_test(test_streamed_download),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_response_headers),
        cmocka_unit_test(test_wrong_ca),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_dropped_connection_retried),
        cmocka_unit_test(test_redirects),
    };
    return cmocka_run_group_tests_name("lib/http_client", tests, group_setup, group_teardown);
}
