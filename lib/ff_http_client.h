/* HTTPS client on libcurl for talking to our own daemons and registries:
 * a pinned CA, bearer or basic auth, bodies streamed both ways, timeouts,
 * and retries with backoff for requests that may safely be repeated.
 *
 * TLS verification is always on (peer and host name), only https:// URLs
 * are accepted (plain http only with allow_http, meant for tests), and
 * redirects are not followed unless follow_redirects is set, and then only
 * to https. HTTP error statuses are not errors here: a call that got any
 * response returns 0 and the caller reads resp->status.
 *
 * Threads: a struct ff_http_client keeps one curl handle so connections and
 * TLS sessions are reused between requests; it is not thread-safe, so use
 * one client per thread. */
#ifndef FF_HTTP_CLIENT_H
#define FF_HTTP_CLIENT_H

#include "ff_buf.h"
#include "ff_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Time to set up TCP and TLS: generous for a device on a cellular link,
 * short enough that a dead peer is noticed and retried. */
#define FF_HTTP_CONNECT_TIMEOUT_MS 10000L
/* No whole-transfer deadline by default: a 1 GiB layer over a slow link
 * legitimately takes long. Stalls are caught by the low-speed limit; a
 * request that needs a deadline sets timeout_ms. */
#define FF_HTTP_TIMEOUT_MS 0L
/* A transfer slower than FF_HTTP_LOW_SPEED_LIMIT bytes/s for
 * FF_HTTP_LOW_SPEED_TIME_S seconds is abandoned (FF_ETIMEOUT): 1 KiB/s
 * over 30 s is far below any working link but ends a stuck one. */
#define FF_HTTP_LOW_SPEED_LIMIT 1024L
#define FF_HTTP_LOW_SPEED_TIME_S 30L
/* Retries after the first attempt: three rides out a restarting daemon or
 * a brief outage without making a dead peer take minutes to report. */
#define FF_HTTP_MAX_RETRIES 3u
/* First backoff delay; it doubles per retry (with jitter, so that many
 * devices do not retry in lockstep) up to FF_HTTP_RETRY_MAX_MS. */
#define FF_HTTP_RETRY_BASE_MS 250L
#define FF_HTTP_RETRY_MAX_MS 30000L
/* Longest Retry-After we honour; a longer one is cut to this, so a
 * misbehaving server cannot park a worker for hours. */
#define FF_HTTP_RETRY_AFTER_MAX_MS 60000L
/* Redirect hops followed when follow_redirects is set: blob downloads
 * redirect once to storage; more than a few means a loop. */
#define FF_HTTP_MAX_REDIRECTS 5L
/* Bytes of response headers kept (names and values): registry responses
 * carry a handful of short headers; 64 KiB leaves room for long Link and
 * WWW-Authenticate values and stops a hostile server from growing it. */
#define FF_HTTP_HEADERS_MAX 65536u
/* Bytes of an error body kept when the success body goes to a callback:
 * enough for any JSON error document, the rest is dropped. */
#define FF_HTTP_ERROR_BODY_MAX 65536u
/* Longest URL accepted: well above any registry path with a digest and
 * query, well below what servers refuse. */
#define FF_HTTP_URL_MAX 8192u
/* Request headers a caller may add: a request needs a few. */
#define FF_HTTP_REQUEST_HEADERS_MAX 64u
/* Longest bearer token, user name or password: a JWT with many scopes is
 * a few KiB. */
#define FF_HTTP_CREDENTIAL_MAX 16384u
/* Default User-Agent. */
#define FF_HTTP_USER_AGENT "fleetforge/1"

struct ff_http_client_config {
    const char *ca_file;     /* PEM CAs to trust, and no others; NULL: the system bundle */
    const char *proxy;       /* proxy URL; NULL: connect directly (environment ignored) */
    const char *user_agent;  /* NULL: FF_HTTP_USER_AGENT */
    long connect_timeout_ms; /* TCP + TLS set-up */
    long timeout_ms;         /* whole request, 0: none */
    long low_speed_limit;    /* bytes/s ... */
    long low_speed_time_s;   /* ... for this long, else FF_ETIMEOUT; 0: off */
    unsigned max_retries;    /* retries after the first attempt */
    long retry_base_ms;      /* first backoff delay */
    long retry_max_ms;       /* largest backoff delay */
    long retry_after_max_ms; /* largest Retry-After honoured */
    bool allow_http;         /* accept http:// (tests only) */
    bool follow_redirects;   /* follow 3xx Location, https only */
};

/* Fills cfg with the FF_HTTP_* defaults above, no CA file (system bundle),
 * no proxy, http refused and redirects not followed. */
void ff_http_client_config_init(struct ff_http_client_config *cfg);

struct ff_http_client;

/* Makes a client with a copy of cfg (the strings are copied too). On
 * success *out belongs to the caller (ff_http_client_free). Errors:
 * FF_EINVAL (negative timeouts or delays), FF_EIO (ca_file cannot be
 * read), FF_ENOMEM. */
int ff_http_client_new(const struct ff_http_client_config *cfg, struct ff_http_client **out,
                       struct ff_err *err);

/* Closes the client's connections and frees it. NULL-safe. */
void ff_http_client_free(struct ff_http_client *c);

enum ff_http_client_auth {
    FF_HTTP_AUTH_NONE = 0,
    FF_HTTP_AUTH_BEARER, /* Authorization: Bearer <token> */
    FF_HTTP_AUTH_BASIC   /* Authorization: Basic base64(<user>:<password>) */
};

/* Streaming request body: put up to cap bytes into buf and set *got; *got
 * = 0 means the end. Return 0, or a negative FF_E* code (with err filled)
 * to abandon the request, which then fails with that code. */
typedef int (*ff_http_client_read_fn)(void *ctx, void *buf, size_t cap, size_t *got, struct ff_err *err);
/* Goes back to the start of the streaming body so it can be sent again.
 * Return 0 or a negative FF_E* code. */
typedef int (*ff_http_client_rewind_fn)(void *ctx, struct ff_err *err);
/* Streaming response body: consume n bytes. Return 0, or a negative FF_E*
 * code (with err filled) to abandon the transfer with that code. */
typedef int (*ff_http_client_write_fn)(void *ctx, const void *data, size_t n, struct ff_err *err);

/* One request. Zero-initialise, then fill in what is needed. Nothing here
 * is modified or kept after the call; the caller wipes its own secrets.
 * The Authorization header built from them is wiped after the request
 * (libcurl's own transient send buffer is beyond our reach), is never
 * logged, and libcurl does not send it on to another host, port or scheme
 * when following a redirect. */
struct ff_http_client_request {
    const char *method;         /* "GET", "PUT" ...; NULL: GET */
    const char *url;            /* https://host[:port]/path[?query], no user:password@ */
    const char *const *headers; /* n_headers "Name: value" lines; no Authorization */
    size_t n_headers;

    enum ff_http_client_auth auth;
    const char *token;    /* FF_HTTP_AUTH_BEARER */
    const char *user;     /* FF_HTTP_AUTH_BASIC; no ':' */
    const char *password; /* FF_HTTP_AUTH_BASIC */

    /* Request body: either body/body_len from memory, or body_read. POST,
     * PUT and PATCH without one send an empty body. */
    const void *body;
    size_t body_len;
    ff_http_client_read_fn body_read;
    ff_http_client_rewind_fn body_rewind; /* optional; without it no retry once
                                    * body_read has given any bytes */
    void *body_ctx;
    uint64_t body_size; /* length body_read will give; 0: unknown, sent chunked */

    /* Response body of a 2xx answer: appended to resp_body (the request
     * fails with FF_ETOOBIG if it would pass resp_body->max), or passed to
     * resp_write. Other statuses' bodies go to resp_body when given, else
     * to the response's error_body. With neither, a 2xx body is dropped. */
    struct ff_buf *resp_body;
    ff_http_client_write_fn resp_write;
    void *resp_ctx;

    const char *range; /* "first-last" byte range (e.g. "0-1023"); NULL: all */
    bool idempotent;   /* this POST or PATCH may be repeated: retry it */
    long timeout_ms;   /* whole request; 0: the client's timeout_ms */
};

/* The outcome of a request. Filled by ff_http_client_do; release with
 * ff_http_client_response_release after every call, successful or not. */
struct ff_http_client_response {
    long status;              /* HTTP status of the last response, 0 if none */
    unsigned attempts;        /* 1 + retries made; 0 if refused before sending */
    uint64_t body_bytes;      /* body bytes of the last response delivered */
    struct ff_buf error_body; /* see resp_body above (capped at FF_HTTP_ERROR_BODY_MAX) */
    struct ff_buf headers;    /* private: use ff_http_client_response_header */
};

/* Sends req and waits for the whole response, retrying when allowed:
 * only idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, or marked so)
 * whose body can be sent again, after connection failures or statuses
 * 429/502/503/504, at most cfg.max_retries times, waiting Retry-After
 * seconds (capped) or an exponential backoff with jitter. A response body
 * already passed to resp_write is never repeated, so that ends retrying.
 * resp is (re)initialised first and always needs ff_http_client_response_release.
 * Returns 0 when a response arrived (any status), else: FF_EINVAL (bad
 * method, URL, header or credentials; http:// without allow_http),
 * FF_ENET (connection, TLS or protocol failure; the message carries
 * curl's text), FF_ETIMEOUT (a timeout or the low-speed limit),
 * FF_ETOOBIG (body or headers over their cap), FF_ENOMEM, or the code a
 * callback returned. */
int ff_http_client_do(struct ff_http_client *c, const struct ff_http_client_request *req,
                      struct ff_http_client_response *resp, struct ff_err *err);

/* Frees what resp holds. Safe on a zeroed or already released resp. */
void ff_http_client_response_release(struct ff_http_client_response *resp);

/* Value of the first response header called name (any case), with
 * surrounding spaces removed, or NULL. Borrowed from resp. */
const char *ff_http_client_response_header(const struct ff_http_client_response *resp, const char *name);

/* The same for the n-th (from 0) header called name, for headers that
 * repeat (Link, WWW-Authenticate). */
const char *ff_http_client_response_header_nth(const struct ff_http_client_response *resp, const char *name,
                                        size_t n);

#endif
