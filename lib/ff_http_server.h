/* The HTTPS server under every Fleetforge daemon (registry, builder API),
 * built on libmicrohttpd with its GnuTLS back end.
 *
 * TLS is mandatory: there is no plain-HTTP mode, and a plain request to the
 * port fails in the TLS handshake. Requests are routed by method and path
 * pattern to a handler; each handler either gets its body collected into a
 * capped buffer (BUFFER) or sees it chunk by chunk as it arrives (STREAM),
 * so a multi-gigabyte blob upload never sits in memory. Every response
 * carries X-Request-Id, and every completed request writes one access-log
 * line (path without its query string, never a header value).
 *
 *   struct ff_http_server_config cfg;
 *   ff_http_server_config_init(&cfg);
 *   cfg.cert_path = "tls.crt"; cfg.key_path = "tls.key";
 *   ff_http_server_new(&cfg, &srv, &err);
 *   ff_http_server_route(srv, "GET", "/v2/{name+}/blobs/{digest}", &blob_get, ctx, &err);
 *   ff_http_server_start(srv, &err);
 *   ...
 *   ff_http_server_stop(srv, 10);
 *   ff_http_server_free(srv);
 *
 * Threads: in the default FF_HTTP_THREAD_PER_CONNECTION model each
 * connection has its own thread, so handlers may block (long-poll, streamed
 * logs); handlers of different requests run concurrently and must guard
 * shared state themselves. A request object is only ever used by one thread
 * at a time: call the ff_http_request_* and ff_http_respond* functions only
 * from inside that request's handler callbacks. Route registration happens
 * before ff_http_server_start; ff_http_server_port may be called from any
 * thread once started; ff_http_server_stop may be called from any one
 * thread (e.g. the main thread after a signal), not concurrently with
 * itself or with ff_http_server_free. */
#ifndef FF_HTTP_SERVER_H
#define FF_HTTP_SERVER_H

#include "ff_err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Loopback unless told otherwise: a daemon is reachable from outside only
 * when its configuration says so. */
#define FF_HTTP_DEFAULT_BIND "127.0.0.1"
/* Connections served at once; each costs a thread and its memory pool, so
 * this bounds the server's memory (256 x 64 KiB pools = 16 MiB). */
#define FF_HTTP_DEFAULT_MAX_CONNECTIONS 256u
/* Connections from one address, so one client cannot take every slot. A
 * build worker or a busy docker push uses well under 16 at once. */
#define FF_HTTP_DEFAULT_MAX_PER_IP 32u
/* Seconds a connection may stay idle (no bytes moving) before it is
 * closed: long enough for slow mobile devices, short enough that idle
 * keep-alive connections do not pile up. In the thread-per-connection
 * model, time a handler spends blocked (a long-poll) does not count. */
#define FF_HTTP_DEFAULT_TIMEOUT_SECONDS 60u
/* Per-connection memory for the request line, headers and I/O buffers
 * (libmicrohttpd's connection memory pool); a request whose headers do not
 * fit is refused by libmicrohttpd (431 or a closed connection). Registry
 * clients send bearer tokens of a few KiB; 64 KiB leaves ample room. */
#define FF_HTTP_DEFAULT_MAX_HEADER_BYTES ((size_t)64 * 1024)
/* Smallest pool accepted: below this libmicrohttpd cannot hold even a
 * modest request plus its I/O buffers. */
#define FF_HTTP_MIN_HEADER_BYTES ((size_t)8 * 1024)
/* Worker threads in FF_HTTP_THREAD_POOL mode: one per core on the 2-core
 * machines the farm targets, twice over for I/O waits. */
#define FF_HTTP_DEFAULT_POOL_THREADS 4u
/* Largest body a BUFFER-mode route may accept: bigger bodies must stream
 * (STREAM mode) rather than sit in memory. */
#define FF_HTTP_BUFFER_MAX ((uint64_t)64 * 1024 * 1024)
/* Most {captures} in one pattern; the longest real pattern (registry
 * upload) has two. */
#define FF_HTTP_CAPTURES_MAX 8
/* Longest {capture} name, in bytes. */
#define FF_HTTP_NAME_MAX 32
/* Most extra headers one response may carry (WWW-Authenticate, Location,
 * Range, Docker-Content-Digest ... stay well under this). */
#define FF_HTTP_RESPONSE_HEADERS_MAX 32

enum ff_http_threading {
    /* One thread per connection: handlers may block. The default. */
    FF_HTTP_THREAD_PER_CONNECTION = 0,
    /* A fixed pool of epoll threads: handlers and stream readers must
     * never block, or they stall every connection of their thread. */
    FF_HTTP_THREAD_POOL = 1
};

/* Called once per completed request (also refused, aborted and timed-out
 * ones) with the route pattern that matched ("" when none did), the method,
 * the status sent (0 when none was), the body bytes received and sent, and
 * the time from request line to completion. Called concurrently from
 * connection threads: it must be thread-safe and must not block. */
typedef void (*ff_http_observe_fn)(void *ctx, const char *route, const char *method,
                                   unsigned status, uint64_t bytes_in, uint64_t bytes_out,
                                   uint64_t duration_us);

struct ff_http_server_config {
    const char *bind_addr;    /* IPv4 or IPv6 literal; NULL: FF_HTTP_DEFAULT_BIND */
    uint16_t port;            /* 0: any free port, see ff_http_server_port */
    const char *cert_path;    /* PEM certificate (chain), required */
    const char *key_path;     /* PEM private key, unencrypted, required */
    unsigned max_connections; /* 0: FF_HTTP_DEFAULT_MAX_CONNECTIONS */
    unsigned max_per_ip;      /* 0: FF_HTTP_DEFAULT_MAX_PER_IP */
    unsigned timeout_seconds; /* 0: FF_HTTP_DEFAULT_TIMEOUT_SECONDS */
    size_t max_header_bytes;  /* 0: FF_HTTP_DEFAULT_MAX_HEADER_BYTES */
    enum ff_http_threading threading;
    unsigned pool_threads;      /* FF_HTTP_THREAD_POOL only; 0: default */
    ff_http_observe_fn observe; /* may be NULL */
    void *observe_ctx;
};

/* Fills cfg with the defaults above (paths NULL, port 0). A zero numeric
 * field also means "the default", so a limit can never be switched off by
 * leaving it out. */
void ff_http_server_config_init(struct ff_http_server_config *cfg);

struct ff_http_server;
struct ff_http_request;

enum ff_http_body_mode {
    /* The body (at most max_body bytes) is collected, then on_request
     * runs; ff_http_request_body gives it. */
    FF_HTTP_BODY_BUFFER = 0,
    /* on_headers (optional) runs once the headers are in, on_body for each
     * chunk as it arrives, on_complete at the end. */
    FF_HTTP_BODY_STREAM = 1
};

/* What serves one route. Callbacks return 0 or a negative FF_E* code and
 * normally answer with one ff_http_respond* call. A callback that returns an
 * error without answering gets a JSON error response chosen from the code
 * (FF_EINVAL 400, FF_EAUTH 401, FF_EDENIED 403, FF_ENOTFOUND 404,
 * FF_ECONFLICT/FF_EEXIST 409, FF_ETOOBIG 413, FF_ERANGE 416, FF_EBUSY 503,
 * anything else 500); one that returns 0 without answering is a bug and
 * gets 500.
 *
 * Body limits: a request with no route-allowed body (max_body 0) that
 * carries one, or whose Content-Length exceeds max_body, gets 413 before any
 * body byte is read, and its connection is closed. A chunked body (no
 * Content-Length) that grows past max_body is refused when it does: the
 * rest is read and dropped up to FF_HTTP_DRAIN_MAX bytes and 413 is sent,
 * or the connection is closed when the body goes on past that. */
struct ff_http_handler {
    uint64_t max_body; /* BUFFER: at most FF_HTTP_BUFFER_MAX */
    enum ff_http_body_mode body_mode;
    /* BUFFER mode: the whole request is in. Must answer. */
    int (*on_request)(struct ff_http_request *req);
    /* STREAM mode, may be NULL: headers are in, no body byte read yet.
     * May answer at once (401, 404 ...): on_body and on_complete then do
     * not run; a body of at most FF_HTTP_DRAIN_MAX declared bytes is read
     * and dropped before the answer goes out, and a larger or chunked one
     * is dropped unread and the connection closed after the answer. */
    int (*on_headers)(struct ff_http_request *req);
    /* STREAM mode, may be NULL when max_body is 0: the next len > 0 bytes
     * of the body, borrowed until it returns. An error (or an answer) stops
     * the body: nothing more is passed on, the rest of the body is read and
     * dropped up to FF_HTTP_DRAIN_MAX bytes (beyond that the connection is
     * closed), and then the answer (or the error's default) is sent;
     * on_complete does not run. */
    int (*on_body)(struct ff_http_request *req, const char *data, size_t len);
    /* STREAM mode: the whole body has been passed on. Must answer. */
    int (*on_complete)(struct ff_http_request *req);
};

/* Body bytes read and dropped after a STREAM handler refused the body, so
 * that the client still gets its answer; past this the connection is
 * simply closed. */
#define FF_HTTP_DRAIN_MAX ((uint64_t)1024 * 1024)

/* Reads the certificate and key named in cfg (checking that they parse and
 * belong together) and makes a stopped server with no routes. cfg is copied.
 * On success *out belongs to the caller (ff_http_server_free). Errors:
 * FF_EINVAL (bad address, bad limits, missing path, unparsable PEM, key
 * does not match the certificate), FF_EIO (cannot read a file),
 * FF_ETOOBIG (file too large), FF_ENOMEM. */
int ff_http_server_new(const struct ff_http_server_config *cfg, struct ff_http_server **out,
                       struct ff_err *err);

/* Adds a route. method is an HTTP token ("GET", "HEAD", "PUT" ...; HEAD is
 * never derived from GET: register it explicitly). pattern starts with '/'
 * and is split on '/' into segments: a literal matches itself exactly, {x}
 * one non-empty segment, {x+} one or more segments (at most one per
 * pattern; "/v2/{name+}/blobs/{digest}" on "/v2/a/b/blobs/sha256:x" gives
 * name "a/b"). A trailing '/' is significant. The first route added wins
 * when several match. handler and pattern are copied; userdata is
 * borrowed (ff_http_request_userdata). Only before ff_http_server_start.
 * Errors: FF_EINVAL (bad method or pattern, handler fields inconsistent
 * with its mode), FF_EEXIST (same method and pattern again), FF_EBUSY
 * (server started), FF_ENOMEM. */
int ff_http_server_route(struct ff_http_server *srv, const char *method, const char *pattern,
                         const struct ff_http_handler *handler, void *userdata, struct ff_err *err);

/* Binds the listening socket and starts serving. Errors: FF_EIO (cannot
 * bind: the message reads "bind 127.0.0.1:5443: Address already in use"),
 * FF_EINVAL (libmicrohttpd refused the configuration, e.g. the TLS
 * credentials; its own log line is quoted), FF_EBUSY (already started). */
int ff_http_server_start(struct ff_http_server *srv, struct ff_err *err);

/* The TCP port bound (useful with port 0), or 0 when not started. */
uint16_t ff_http_server_port(const struct ff_http_server *srv);

/* Graceful stop: stops accepting (new connection attempts are refused),
 * asks keep-alive clients to close, waits until every request in flight
 * has completed or grace_seconds have passed, then closes all connections
 * and joins libmicrohttpd's threads. Handlers that block (long-poll, log
 * following) must poll ff_http_request_stopping at least once a second and
 * finish when it turns true, or the final join waits for them. Returns 0,
 * or FF_ETIMEOUT when requests were still in flight at the deadline (they
 * are cut). A server that is not running returns 0 at once; a stopped
 * server cannot be started again (free it and make a new one). */
int ff_http_server_stop(struct ff_http_server *srv, unsigned grace_seconds);

/* Stops the server at once if it still runs (grace 0) and frees it; the
 * private key is wiped. NULL-safe. */
void ff_http_server_free(struct ff_http_server *srv);

/* Routing as the server does it, for tests and diagnostics: returns 200
 * when a route serves method + path (path is already percent-decoded), 400
 * when ff_http_path_check refuses the path, 404 when no pattern matches
 * it, 405 when patterns match it only for other methods, in which case
 * allow (when allow_size > 0) receives those methods, comma-separated as
 * in an Allow header. */
unsigned ff_http_server_route_lookup(const struct ff_http_server *srv, const char *method,
                                     const char *path, char *allow, size_t allow_size);

/* Route patterns and paths, exposed for tests and the fuzzer. */

/* One {capture}: name and value point into the pattern and the path. */
struct ff_http_capture {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Checks a route pattern (rules at ff_http_server_route; capture names are
 * 1..FF_HTTP_NAME_MAX of [A-Za-z0-9_] and distinct; literal segments may
 * not be "." or ".." nor hold '{' or '}', and only the last may be empty).
 * Returns 0 or FF_EINVAL saying what is wrong. */
int ff_http_pattern_check(const char *pattern, struct ff_err *err);

/* Checks a percent-decoded request path of len bytes before routing: it
 * must start with '/' and hold no NUL byte, no empty segment ("//") except
 * a trailing '/', and no "." or ".." segment. Returns 0 or FF_EINVAL. */
int ff_http_path_check(const char *path, size_t len, struct ff_err *err);

/* Matches a path that passed ff_http_path_check against a pattern that
 * passed ff_http_pattern_check. On a match returns true and fills
 * caps[0..*ncaps) in pattern order; otherwise returns false. */
bool ff_http_pattern_match(const char *pattern, const char *path,
                           struct ff_http_capture caps[FF_HTTP_CAPTURES_MAX], size_t *ncaps);

/* Checks a response header: the name must be an RFC 9110 token and not one
 * that libmicrohttpd or this server sets (Content-Length,
 * Transfer-Encoding, Connection, Date, X-Request-Id); the value must hold no
 * CR, LF, NUL or other control character but tab. Returns 0 or
 * FF_EINVAL. */
int ff_http_header_check(const char *name, const char *value, struct ff_err *err);

/* Request accessors. Returned strings are borrowed from the request and
 * live until it completes. */

const char *ff_http_request_method(const struct ff_http_request *req);
/* Percent-decoded path without the query string. */
const char *ff_http_request_path(const struct ff_http_request *req);
/* The pattern of the route that matched. */
const char *ff_http_request_route(const struct ff_http_request *req);
/* The 16-hex-digit id also sent as X-Request-Id and logged as req=. */
const char *ff_http_request_id(const struct ff_http_request *req);
/* Client address as text ("127.0.0.1", "::1"). */
const char *ff_http_request_ip(const struct ff_http_request *req);
/* The userdata given to ff_http_server_route. */
void *ff_http_request_userdata(const struct ff_http_request *req);
/* Value of a {capture} of the matched pattern, or NULL for no such name. */
const char *ff_http_request_param(const struct ff_http_request *req, const char *name);
/* First value of a request header (name case-insensitive), or NULL. */
const char *ff_http_request_header(const struct ff_http_request *req, const char *name);
/* First value of a query argument (name case-sensitive, value
 * percent-decoded; "" for "?flag"), or NULL when absent. */
const char *ff_http_request_query(const struct ff_http_request *req, const char *name);
/* Calls fn for every value of a repeated query argument, in request order
 * (several scope= ...). Stops at the first non-zero return of fn and
 * returns it; returns 0 when fn always returned 0 (or never ran). */
int ff_http_request_query_each(const struct ff_http_request *req, const char *name,
                               int (*fn)(void *ctx, const char *value), void *ctx);
/* The declared Content-Length. Returns 0, or FF_ENOTFOUND when the request
 * has none (no body, or a chunked one). */
int ff_http_request_content_length(const struct ff_http_request *req, uint64_t *out);
/* BUFFER mode: the body, NUL-terminated (not counted in *len); "" and 0
 * when there was none. */
const char *ff_http_request_body(const struct ff_http_request *req, size_t *len);
/* True once ff_http_server_stop has begun: blocking handlers finish. */
bool ff_http_request_stopping(const struct ff_http_request *req);

/* Attaches the handler's own per-request state. free_fn (may be NULL) is
 * called with it exactly once when the request completes, is aborted by
 * the client or times out, or when the state is replaced by another call. */
void ff_http_request_set_state(struct ff_http_request *req, void *state,
                               void (*free_fn)(void *state));
/* The state set above, or NULL. */
void *ff_http_request_state(const struct ff_http_request *req);

/* Responses. Each request is answered once; a second answer is FF_EINVAL.
 * A HEAD request gets the headers (Content-Length included) without the
 * body from any of them. On error no answer was made and the handler may
 * try another (e.g. ff_http_respond_error). */

/* Adds a header to the coming answer (checked by ff_http_header_check).
 * Errors: FF_EINVAL (bad header, or the request was answered),
 * FF_ETOOBIG (more than FF_HTTP_RESPONSE_HEADERS_MAX), FF_ENOMEM. */
int ff_http_response_header(struct ff_http_request *req, const char *name, const char *value);

/* Answers with len bytes of data (copied); content_type may be NULL for no
 * Content-Type. Errors: FF_EINVAL (bad status or answered twice),
 * FF_ENOMEM. */
int ff_http_respond_bytes(struct ff_http_request *req, unsigned status, const char *content_type,
                          const void *data, size_t len);

/* Answers with body serialised as compact JSON, Content-Type
 * application/json. body is borrowed. Errors: as ff_http_respond_bytes. */
int ff_http_respond_json(struct ff_http_request *req, unsigned status, const json_t *body);

/* Answers {"error":{"code":"<code>","message":"<printf of fmt>"}}, as JSON.
 * Errors: as ff_http_respond_bytes. */
int ff_http_respond_error(struct ff_http_request *req, unsigned status, const char *code,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Answers with length bytes of the file fd from offset (blob GET, Range).
 * Takes ownership of fd in every case: it is closed after sending, or at
 * once on error. Errors: FF_EINVAL (negative fd, offset + length past
 * INT64_MAX, answered twice), FF_ENOMEM. */
int ff_http_respond_fd(struct ff_http_request *req, unsigned status, int fd, uint64_t offset,
                       uint64_t length, const char *content_type);

/* Reads up to max bytes of a response body, from byte pos of the body on,
 * into buf. pos only grows: each call starts where the last one ended.
 * Returns the count (1..max), or a negative FF_E* code, which cuts the
 * connection (the client sees a short body). Runs on the connection's
 * thread and may block. */
typedef ssize_t (*ff_http_read_at_fn)(void *ctx, uint64_t pos, char *buf, size_t max);

/* Answers with a body of exactly length bytes produced by read_cb, for
 * bodies whose reading the caller wants to steer (the registry's blobs).
 * Takes ownership of ctx in every case: free_cb(ctx) (may be NULL) runs
 * exactly once, at once on error, else after the request completed.
 * Errors: FF_EINVAL (no read_cb, answered twice, bad status or content
 * type), FF_ENOMEM. */
int ff_http_respond_reader(struct ff_http_request *req, unsigned status, uint64_t length,
                           ff_http_read_at_fn read_cb, void *ctx, void (*free_cb)(void *ctx),
                           const char *content_type);

/* Reads up to max bytes of a streamed body into buf. Returns the count
 * (> 0), 0 at the end of the body, or a negative FF_E* code to abort the
 * connection. It may block until data is there (thread-per-connection
 * mode) but should come back within a second or so when
 * ff_http_request_stopping turns true. */
typedef ssize_t (*ff_http_read_fn)(void *ctx, char *buf, size_t max);

/* Answers with a body of unknown length produced by read_cb (chunked
 * transfer encoding; connection close for HTTP/1.0 clients), for following
 * logs. read_cb runs on the connection's thread while the request lives,
 * so it may use req (e.g. ff_http_request_stopping). Takes ownership of ctx in
 * every case: free_cb(ctx) (may be NULL) runs exactly once, at once on
 * error, else after the request completed (req is gone by then: free_cb
 * must not use it). Errors: as ff_http_respond_bytes. */
int ff_http_respond_stream(struct ff_http_request *req, unsigned status, const char *content_type,
                           ff_http_read_fn read_cb, void *ctx, void (*free_cb)(void *ctx));

/* Answers a HEAD request with Content-Length: content_length and no body,
 * as the registry's HEAD on a blob or manifest must. Errors: FF_EINVAL (not
 * a HEAD request, or answered twice), FF_ENOMEM. */
int ff_http_respond_head(struct ff_http_request *req, unsigned status, uint64_t content_length,
                         const char *content_type);

#endif
