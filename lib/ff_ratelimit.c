#include "ff_ratelimit.h"

#include "ff_str.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bucket {
    bool used;
    char key[FF_RATELIMIT_KEY_MAX + 1];
    double tokens;
    double last; /* time of the last refill */
};

struct ff_ratelimit {
    pthread_mutex_t lock;
    double rate;
    double burst;
    size_t cap; /* slots: twice max_keys keeps probe chains short */
    size_t max_keys;
    size_t count;
    struct bucket *slots;
};

int ff_ratelimit_new(double rate, double burst, size_t max_keys, struct ff_ratelimit **out,
                     struct ff_err *err)
{
    if (!(rate > 0) || !(burst >= 1) || max_keys == 0 || max_keys > SIZE_MAX / 4)
        return ff_err_set(err, FF_EINVAL, "rate limit: rate %g, burst %g, %zu keys: expected "
                          "rate > 0, burst >= 1, keys >= 1", rate, burst, max_keys);
    struct ff_ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return ff_err_set(err, FF_ENOMEM, "rate limit: out of memory");
    rl->cap = max_keys * 2;
    rl->slots = calloc(rl->cap, sizeof(*rl->slots));
    if (rl->slots == NULL) {
        free(rl);
        return ff_err_set(err, FF_ENOMEM, "rate limit: out of memory");
    }
    pthread_mutex_init(&rl->lock, NULL);
    rl->rate = rate;
    rl->burst = burst;
    rl->max_keys = max_keys;
    *out = rl;
    return 0;
}

void ff_ratelimit_free(struct ff_ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl->slots);
    free(rl);
}

double ff_ratelimit_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t key_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

static void refill(const struct ff_ratelimit *rl, struct bucket *b, double now)
{
    if (now > b->last) {
        b->tokens = fmin(rl->burst, b->tokens + (now - b->last) * rl->rate);
        b->last = now;
    }
}

/* Removes slot i and re-inserts the rest of its probe chain, so lookups
 * of later keys still find them (linear probing). */
static void slot_remove(struct ff_ratelimit *rl, size_t i)
{
    rl->slots[i].used = false;
    rl->count--;
    for (size_t j = (i + 1) % rl->cap; rl->slots[j].used; j = (j + 1) % rl->cap) {
        struct bucket moved = rl->slots[j];
        rl->slots[j].used = false;
        size_t k = key_hash(moved.key) % rl->cap;
        while (rl->slots[k].used)
            k = (k + 1) % rl->cap;
        rl->slots[k] = moved;
    }
}

/* Frees one slot: a full bucket if any (forgetting it is harmless), else
 * the least recently refilled. */
static void evict_one(struct ff_ratelimit *rl, double now)
{
    size_t victim = SIZE_MAX;
    double oldest = INFINITY;
    for (size_t i = 0; i < rl->cap; i++) {
        struct bucket *b = &rl->slots[i];
        if (!b->used)
            continue;
        refill(rl, b, now);
        if (b->tokens >= rl->burst) {
            victim = i;
            break;
        }
        if (b->last < oldest) {
            oldest = b->last;
            victim = i;
        }
    }
    if (victim != SIZE_MAX)
        slot_remove(rl, victim);
}

static struct bucket *bucket_get(struct ff_ratelimit *rl, const char *key, double now)
{
    size_t i = key_hash(key) % rl->cap;
    while (rl->slots[i].used) {
        if (strcmp(rl->slots[i].key, key) == 0)
            return &rl->slots[i];
        i = (i + 1) % rl->cap;
    }
    if (rl->count >= rl->max_keys) {
        evict_one(rl, now);
        i = key_hash(key) % rl->cap;
        while (rl->slots[i].used)
            i = (i + 1) % rl->cap;
    }
    struct bucket *b = &rl->slots[i];
    b->used = true;
    ff_strlcpy(b->key, key, sizeof(b->key));
    b->tokens = rl->burst;
    b->last = now;
    rl->count++;
    return b;
}

void ff_ratelimit_take(struct ff_ratelimit *rl, const char *key, double now,
                       struct ff_ratelimit_result *out)
{
    char k[FF_RATELIMIT_KEY_MAX + 1];
    ff_strlcpy(k, key, sizeof(k));
    pthread_mutex_lock(&rl->lock);
    struct bucket *b = bucket_get(rl, k, now);
    refill(rl, b, now);
    out->allowed = b->tokens >= 1;
    if (out->allowed)
        b->tokens -= 1;
    out->limit = (unsigned)rl->burst;
    out->remaining = (unsigned)floor(b->tokens);
    out->reset = (unsigned)ceil((rl->burst - b->tokens) / rl->rate);
    out->retry_after = out->allowed ? 0 : (unsigned)ceil((1 - b->tokens) / rl->rate);
    if (!out->allowed && out->retry_after == 0)
        out->retry_after = 1;
    pthread_mutex_unlock(&rl->lock);
}
