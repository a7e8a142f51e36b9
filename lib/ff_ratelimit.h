/* Token-bucket rate limits per key (a token's subject, a client address),
 * shared by the registry and the builder API.
 *
 * Each key has a bucket of `burst` tokens refilled at `rate` tokens per
 * second; a request takes one. The table holds at most max_keys buckets, so
 * a flood of distinct keys (spoofed subjects, many addresses) costs bounded
 * memory: when it is full, a bucket that has refilled completely is
 * forgotten first (forgetting it changes nothing), else the least recently
 * used one. Thread-safe. */
#ifndef FF_RATELIMIT_H
#define FF_RATELIMIT_H

#include "ff_err.h"

#include <stdbool.h>
#include <stddef.h>

/* Longest key kept; longer keys are refused by the caller's validation
 * long before (subjects and addresses are short). */
#define FF_RATELIMIT_KEY_MAX 128

struct ff_ratelimit;

struct ff_ratelimit_result {
    bool allowed;
    unsigned limit;       /* the burst size, for RateLimit-Limit */
    unsigned remaining;   /* whole tokens left after this request */
    unsigned reset;       /* seconds until the bucket is full again */
    unsigned retry_after; /* when refused: seconds until one token is back */
};

/* Makes a limiter: rate > 0 tokens per second, burst >= 1, max_keys >= 1.
 * *out is the caller's (ff_ratelimit_free). Errors: FF_EINVAL, FF_ENOMEM. */
int ff_ratelimit_new(double rate, double burst, size_t max_keys, struct ff_ratelimit **out,
                     struct ff_err *err);
void ff_ratelimit_free(struct ff_ratelimit *rl);

/* Takes one token from key's bucket at time now (seconds on a monotonic
 * clock) and says whether the request may go on. A key longer than
 * FF_RATELIMIT_KEY_MAX is cut there. */
void ff_ratelimit_take(struct ff_ratelimit *rl, const char *key, double now,
                       struct ff_ratelimit_result *out);

/* Seconds on CLOCK_MONOTONIC, the clock ff_ratelimit_take expects. */
double ff_ratelimit_now(void);

#endif
