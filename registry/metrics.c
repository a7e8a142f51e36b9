/* Prometheus metrics: requests by route, method and status, bytes in and
 * out, a latency histogram per route, and uploads in progress. Fed by the
 * HTTP server's observe hook from every connection thread. */
#include "registry.h"

#include "ff_str.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Series kept: ~15 routes x 5 methods x 10 statuses fit many times over;
 * anything beyond is counted under route "other" so memory stays bounded. */
#define METRICS_SERIES_MAX 1024
/* Upper bounds (seconds) of the latency histogram buckets. */
static const double latency_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,   1,    2.5,   5,    10};
#define N_BUCKETS (sizeof(latency_buckets) / sizeof(latency_buckets[0]))

struct series {
    char route[96];
    char method[8];
    unsigned status;
    uint64_t count;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t buckets[N_BUCKETS]; /* cumulative at render time, not here */
    double seconds_sum;
};

struct metrics {
    pthread_mutex_t lock;
    struct series *series;
    size_t n;
};

int metrics_new(struct metrics **out, struct ff_err *err)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ff_err_set(err, FF_ENOMEM, "metrics: out of memory");
    m->series = calloc(METRICS_SERIES_MAX, sizeof(*m->series));
    if (m->series == NULL) {
        free(m);
        return ff_err_set(err, FF_ENOMEM, "metrics: out of memory");
    }
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return 0;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m->series);
    free(m);
}

static struct series *series_get(struct metrics *m, const char *route, const char *method,
                                 unsigned status)
{
    for (size_t i = 0; i < m->n; i++) {
        struct series *s = &m->series[i];
        if (s->status == status && strcmp(s->route, route) == 0 &&
            strcmp(s->method, method) == 0)
            return s;
    }
    if (m->n == METRICS_SERIES_MAX) {
        if (strcmp(route, "other") == 0)
            return &m->series[m->n - 1];
        return series_get(m, "other", "other", 0);
    }
    struct series *s = &m->series[m->n++];
    ff_strlcpy(s->route, route, sizeof(s->route));
    ff_strlcpy(s->method, method, sizeof(s->method));
    s->status = status;
    return s;
}

void metrics_observe(void *ctx, const char *route, const char *method, unsigned status,
                     uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us)
{
    struct metrics *m = ctx;
    double seconds = (double)duration_us / 1e6;
    pthread_mutex_lock(&m->lock);
    struct series *s = series_get(m, route[0] != '\0' ? route : "none", method, status);
    s->count++;
    s->bytes_in += bytes_in;
    s->bytes_out += bytes_out;
    s->seconds_sum += seconds;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        if (seconds <= latency_buckets[b]) {
            s->buckets[b]++;
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

/* Label values are route patterns and methods we chose, but escape them
 * anyway as the text format requires. */
static void label_value(struct ff_buf *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            ff_buf_append(b, "\\", 1);
        if (*v == '\n')
            ff_buf_append_str(b, "\\n");
        else
            ff_buf_append(b, v, 1);
    }
}

static void series_labels(struct ff_buf *b, const struct series *s, bool with_status)
{
    ff_buf_append_str(b, "{route=\"");
    label_value(b, s->route);
    ff_buf_append_str(b, "\",method=\"");
    label_value(b, s->method);
    if (with_status)
        ff_buf_printf(b, "\",status=\"%u", s->status);
    ff_buf_append_str(b, "\"");
}

int metrics_render(struct metrics *m, int64_t uploads_in_progress, struct ff_buf *out)
{
    ff_buf_append_str(out, "# HELP ff_registry_requests_total Requests completed.\n"
                           "# TYPE ff_registry_requests_total counter\n");
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        ff_buf_append_str(out, "ff_registry_requests_total");
        series_labels(out, &m->series[i], true);
        ff_buf_printf(out, "} %llu\n", (unsigned long long)m->series[i].count);
    }
    static const char *const byte_kinds[2] = {"in", "out"};
    for (size_t k = 0; k < 2; k++) {
        ff_buf_printf(out, "# HELP ff_registry_bytes_%s_total Body bytes %s.\n"
                           "# TYPE ff_registry_bytes_%s_total counter\n",
                      byte_kinds[k], k == 0 ? "received" : "sent", byte_kinds[k]);
        for (size_t i = 0; i < m->n; i++) {
            ff_buf_printf(out, "ff_registry_bytes_%s_total", byte_kinds[k]);
            series_labels(out, &m->series[i], true);
            ff_buf_printf(out, "} %llu\n",
                          (unsigned long long)(k == 0 ? m->series[i].bytes_in
                                                      : m->series[i].bytes_out));
        }
    }
    ff_buf_append_str(out, "# HELP ff_registry_request_duration_seconds Time to serve.\n"
                           "# TYPE ff_registry_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->n; i++) {
        const struct series *s = &m->series[i];
        uint64_t cumulative = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cumulative += s->buckets[b];
            ff_buf_append_str(out, "ff_registry_request_duration_seconds_bucket");
            series_labels(out, s, true);
            ff_buf_printf(out, ",le=\"%g\"} %llu\n", latency_buckets[b],
                          (unsigned long long)cumulative);
        }
        ff_buf_append_str(out, "ff_registry_request_duration_seconds_bucket");
        series_labels(out, s, true);
        ff_buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)s->count);
        ff_buf_append_str(out, "ff_registry_request_duration_seconds_sum");
        series_labels(out, s, true);
        ff_buf_printf(out, "} %.6f\n", s->seconds_sum);
        ff_buf_append_str(out, "ff_registry_request_duration_seconds_count");
        series_labels(out, s, true);
        ff_buf_printf(out, "} %llu\n", (unsigned long long)s->count);
    }
    pthread_mutex_unlock(&m->lock);
    return ff_buf_printf(out, "# HELP ff_registry_uploads_in_progress Upload sessions open.\n"
                              "# TYPE ff_registry_uploads_in_progress gauge\n"
                              "ff_registry_uploads_in_progress %lld\n",
                         (long long)uploads_in_progress);
}
