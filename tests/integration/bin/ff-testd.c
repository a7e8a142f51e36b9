/* ff-testd: a small daemon on lib/ff_http_server for the integration tests
 * of the HTTP server itself (tests/integration/test_http_server.py).
 *
 *   ff-testd --port N --cert FILE --key FILE [--max-body N] [--bind ADDR]
 *
 * Routes: GET /healthz; POST /echo (buffered); PUT /hash (streamed, the
 * SHA-256 of the body in hex); GET and HEAD /file?path=P[&offset=&length=]
 * (test-only: serves any readable file); GET /slow?ms=N; GET
 * /stream?lines=N. SIGTERM or SIGINT stops it gracefully (10 s grace) and
 * it exits 0. It logs with ff_log to stderr and prints nothing else. */
#include "ff_err.h"
#include "ff_http_server.h"
#include "ff_log.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Grace period for requests in flight at SIGTERM. */
#define TESTD_GRACE_SECONDS 10u
/* Default and largest body of POST /echo (BUFFER mode). */
#define TESTD_ECHO_MAX_DEFAULT ((uint64_t)1024 * 1024)
/* PUT /hash takes up to 2 GiB: enough to prove bodies stream. */
#define TESTD_HASH_MAX ((uint64_t)2 * 1024 * 1024 * 1024)
/* GET /slow sleeps at most a minute. */
#define TESTD_SLOW_MAX_MS 60000u
/* GET /stream sends at most this many lines, one every TESTD_LINE_MS. */
#define TESTD_STREAM_MAX_LINES 100000u
#define TESTD_LINE_MS 10u

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
}

/* A query number in [0, max], or def when absent. Returns 0 or FF_EINVAL. */
static int query_u64(struct ff_http_request *req, const char *name, uint64_t max, uint64_t def,
                     uint64_t *out)
{
    const char *v = ff_http_request_query(req, name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (ff_parse_u64(v, max, out) != 0) {
        int rc = ff_http_respond_error(req, 400, "BAD_REQUEST",
                                       "query \"%s\": expected a number up to %llu", name,
                                       (unsigned long long)max);
        return rc != 0 ? rc : FF_EINVAL;
    }
    return 0;
}

static int healthz(struct ff_http_request *req)
{
    return ff_http_respond_bytes(req, 200, "text/plain", "ok\n", 3);
}

static int echo(struct ff_http_request *req)
{
    size_t len;
    const char *body = ff_http_request_body(req, &len);
    return ff_http_respond_bytes(req, 200, "application/octet-stream", body, len);
}

static void hash_free(void *state)
{
    EVP_MD_CTX_free(state);
}

static int hash_headers(struct ff_http_request *req)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return FF_ENOMEM;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return FF_ECRYPTO;
    }
    ff_http_request_set_state(req, md, hash_free);
    return 0;
}

static int hash_body(struct ff_http_request *req, const char *data, size_t len)
{
    return EVP_DigestUpdate(ff_http_request_state(req), data, len) == 1 ? 0 : FF_ECRYPTO;
}

static int hash_complete(struct ff_http_request *req)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ff_http_request_state(req), md, &n) != 1 || n != 32)
        return FF_ECRYPTO;
    char hex[65];
    ff_hex_encode(md, n, hex);
    hex[64] = '\n';
    return ff_http_respond_bytes(req, 200, "text/plain", hex, sizeof(hex));
}

/* Opens ?path= and works out the ?offset= / ?length= slice of it. */
static int open_slice(struct ff_http_request *req, int *fd_out, uint64_t *off, uint64_t *len)
{
    const char *path = ff_http_request_query(req, "path");
    if (path == NULL) {
        int rc = ff_http_respond_error(req, 400, "BAD_REQUEST", "query \"path\": missing");
        return rc != 0 ? rc : FF_EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = ff_http_respond_error(req, 404, "NOT_FOUND", "cannot open \"%s\": %s", path,
                                       strerror(errno));
        return rc != 0 ? rc : FF_ENOTFOUND;
    }
    struct stat st;
    uint64_t size = 0;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        size = (uint64_t)st.st_size;
    int rc = query_u64(req, "offset", size, 0, off);
    if (rc == 0)
        rc = query_u64(req, "length", size - *off, size - *off, len);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int file_get(struct ff_http_request *req)
{
    int fd;
    uint64_t off, len;
    int rc = open_slice(req, &fd, &off, &len);
    if (rc != 0)
        return rc;
    return ff_http_respond_fd(req, 200, fd, off, len, "application/octet-stream");
}

static int file_head(struct ff_http_request *req)
{
    int fd;
    uint64_t off, len;
    int rc = open_slice(req, &fd, &off, &len);
    if (rc != 0)
        return rc;
    close(fd);
    return ff_http_respond_head(req, 200, len, "application/octet-stream");
}

static int slow(struct ff_http_request *req)
{
    uint64_t ms;
    int rc = query_u64(req, "ms", TESTD_SLOW_MAX_MS, 1000, &ms);
    if (rc != 0)
        return rc;
    sleep_ms((unsigned)ms);
    return ff_http_respond_bytes(req, 200, "text/plain", "slow\n", 5);
}

struct lines {
    struct ff_http_request *req; /* valid during reads, which end before it completes */
    uint64_t next;
    uint64_t count;
};

static ssize_t lines_read(void *ctx, char *buf, size_t max)
{
    struct lines *l = ctx;
    if (l->next == l->count || ff_http_request_stopping(l->req))
        return 0;
    sleep_ms(TESTD_LINE_MS);
    int n = snprintf(buf, max, "line %llu\n", (unsigned long long)l->next);
    if (n < 0 || (size_t)n >= max)
        return FF_ETOOBIG;
    l->next++;
    return n;
}

static int stream(struct ff_http_request *req)
{
    uint64_t count;
    int rc = query_u64(req, "lines", TESTD_STREAM_MAX_LINES, 10, &count);
    if (rc != 0)
        return rc;
    struct lines *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return FF_ENOMEM;
    l->req = req;
    l->count = count;
    return ff_http_respond_stream(req, 200, "text/plain", lines_read, l, free);
}

static void usage(void)
{
    (void)fprintf(stderr, "usage: ff-testd --port N --cert FILE --key FILE [--max-body N] "
                          "[--bind ADDR]\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'}, {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},  {"max-body", required_argument, NULL, 'm'},
        {"bind", required_argument, NULL, 'b'}, {NULL, 0, NULL, 0},
    };
    struct ff_http_server_config cfg;
    ff_http_server_config_init(&cfg);
    uint64_t max_body = TESTD_ECHO_MAX_DEFAULT;
    uint64_t port = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (ff_parse_u64(optarg, 65535, &port) != 0) {
                (void)fprintf(stderr, "ff-testd: --port \"%s\": expected 0 to 65535\n", optarg);
                return 2;
            }
            break;
        case 'c': cfg.cert_path = optarg; break;
        case 'k': cfg.key_path = optarg; break;
        case 'b': cfg.bind_addr = optarg; break;
        case 'm':
            if (ff_parse_u64(optarg, FF_HTTP_BUFFER_MAX, &max_body) != 0) {
                (void)fprintf(stderr, "ff-testd: --max-body \"%s\": expected 0 to %" PRIu64 "\n",
                              optarg, FF_HTTP_BUFFER_MAX);
                return 2;
            }
            break;
        default: usage(); return 2;
        }
    }
    if (optind != argc || cfg.cert_path == NULL || cfg.key_path == NULL) {
        usage();
        return 2;
    }
    cfg.port = (uint16_t)port;
    ff_log_open("ff-testd", FF_LOG_INFO);

    /* Handle SIGTERM and SIGINT in the main thread only: block them before
     * libmicrohttpd starts its threads, which inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
        (void)fprintf(stderr, "ff-testd: cannot block signals\n");
        return 1;
    }
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &ign, NULL) != 0) {
        (void)fprintf(stderr, "ff-testd: cannot ignore SIGPIPE\n");
        return 1;
    }

    struct ff_err err;
    ff_err_clear(&err);
    struct ff_http_server *srv = NULL;
    if (ff_http_server_new(&cfg, &srv, &err) != 0) {
        ff_log_error(NULL, "start", "error=%s", err.msg);
        return 1;
    }
    const struct ff_http_handler h_health = {.on_request = healthz};
    const struct ff_http_handler h_echo = {.max_body = max_body, .on_request = echo};
    const struct ff_http_handler h_hash = {.max_body = TESTD_HASH_MAX,
                                           .body_mode = FF_HTTP_BODY_STREAM,
                                           .on_headers = hash_headers,
                                           .on_body = hash_body,
                                           .on_complete = hash_complete};
    const struct ff_http_handler h_file = {.on_request = file_get};
    const struct ff_http_handler h_file_head = {.on_request = file_head};
    const struct ff_http_handler h_slow = {.on_request = slow};
    const struct ff_http_handler h_stream = {.on_request = stream};
    int rc = ff_http_server_route(srv, "GET", "/healthz", &h_health, NULL, &err);
    if (rc == 0)
        rc = ff_http_server_route(srv, "POST", "/echo", &h_echo, NULL, &err);
    if (rc == 0)
        rc = ff_http_server_route(srv, "PUT", "/hash", &h_hash, NULL, &err);
    if (rc == 0)
        rc = ff_http_server_route(srv, "GET", "/file", &h_file, NULL, &err);
    if (rc == 0)
        rc = ff_http_server_route(srv, "HEAD", "/file", &h_file_head, NULL, &err);
    if (rc == 0)
        rc = ff_http_server_route(srv, "GET", "/slow", &h_slow, NULL, &err);
    if (rc == 0)
        rc = ff_http_server_route(srv, "GET", "/stream", &h_stream, NULL, &err);
    if (rc == 0)
        rc = ff_http_server_start(srv, &err);
    if (rc != 0) {
        ff_log_error(NULL, "start", "error=%s", err.msg);
        ff_http_server_free(srv);
        return 1;
    }
    ff_log_info(NULL, "listening", "port=%u", (unsigned)ff_http_server_port(srv));

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        continue;
    ff_log_info(NULL, "signal", "sig=%d", sig);
    rc = ff_http_server_stop(srv, TESTD_GRACE_SECONDS);
    ff_http_server_free(srv);
    return rc == 0 ? 0 : 1;
}
