/* ff-registry: an OCI Distribution v1.1 registry over HTTPS that accepts
 * only tokens signed by ff-builder.
 *
 *   ff-registry -f registry.ini [-d] [-n]       serve (or check the config)
 *   ff-registry -f registry.ini gc [--grace S]  collect garbage once
 *   ff-registry mint-token --key FILE --sub NAME --scope SCOPE... [--ttl S]
 *
 * Start-up order: read the configuration and the TLS key (as root when
 * started as root), drop to [server] user, then open storage, so every
 * file the registry creates belongs to that user, and only then serve. */
#include "registry.h"

#include "ff_daemon.h"
#include "ff_jwt.h"
#include "ff_log.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest lifetime of a minted token: the builder's tokens live at most
 * 5 minutes; operators testing by hand get up to an hour. */
#define MINT_TTL_MAX 3600
#define MINT_SCOPES_MAX 16

static void usage(FILE *out)
{
    (void)fprintf(out,
            "usage: ff-registry -f FILE [-d] [-n]            serve (-n: check config, exit)\n"
            "       ff-registry -f FILE gc [--grace SECONDS] collect garbage once\n"
            "       ff-registry mint-token --key FILE --sub NAME --scope SCOPE... [--ttl S]\n"
            "                   [--iss ISSUER] [--aud SERVICE]\n"
            "SCOPE is repository:NAME:pull,push,delete or registry:catalog:*\n");
}

/* Opens the metadata database that lives beside the blobs. */
static int meta_open_in(struct registry *r, const char *root, struct ff_err *err)
{
    char *db = ff_asprintf("%s/meta.db", root);
    if (db == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = meta_open(db, &r->meta, err);
    free(db);
    return rc;
}

/* Opens everything the server needs but the HTTP server. */
static int registry_open(struct registry *r, struct ff_err *err)
{
    const char *root = ff_conf_string(r->cfg.conf, "storage", "root");
    int rc = blob_store_open(root, ff_conf_int(r->cfg.conf, "storage", "max_blob_size"),
                             &r->blobs, err);
    if (rc == 0)
        rc = upload_store_open(r->blobs, &r->uploads, err);
    if (rc == 0)
        rc = meta_open_in(r, root, err);
    return rc;
}

/* For `ff-registry gc` beside a running registry: the blob store without
 * its lock and no upload sessions (they belong to the serving process). */
static int registry_open_for_gc(struct registry *r, struct ff_err *err)
{
    const char *root = ff_conf_string(r->cfg.conf, "storage", "root");
    int rc = blob_store_open_shared(root, &r->blobs, err);
    if (rc == 0)
        rc = meta_open_in(r, root, err);
    return rc;
}

static void registry_close(struct registry *r)
{
    ff_http_server_free(r->http);
    meta_free(r->meta);
    upload_store_free(r->uploads);
    blob_store_free(r->blobs);
    ff_jwt_keyset_free(r->keys);
    ff_ratelimit_free(r->rl_subject);
    ff_ratelimit_free(r->rl_ip);
    metrics_free(r->metrics);
    config_release(&r->cfg);
}

static int http_new(struct registry *r, struct ff_err *err)
{
    struct ff_http_server_config hc;
    ff_daemon_http_config(r->cfg.conf, &hc);
    hc.observe = metrics_observe;
    hc.observe_ctx = r->metrics;
    return ff_http_server_new(&hc, &r->http, err);
}

static int limits_new(struct registry *r, struct ff_err *err)
{
    const struct ff_conf *c = r->cfg.conf;
    size_t keys = (size_t)ff_conf_int(c, "limits", "tracked_keys");
    int rc = ff_ratelimit_new((double)ff_conf_int(c, "limits", "subject_rate"),
                              (double)ff_conf_int(c, "limits", "subject_burst"), keys,
                              &r->rl_subject, err);
    if (rc == 0)
        rc = ff_ratelimit_new((double)ff_conf_int(c, "limits", "ip_rate"),
                              (double)ff_conf_int(c, "limits", "ip_burst"), keys, &r->rl_ip,
                              err);
    return rc;
}

struct periodic {
    struct registry *r;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

/* Runs GC every [gc] interval seconds and expires abandoned uploads. */
static void *periodic_main(void *arg)
{
    struct periodic *p = arg;
    const struct ff_conf *c = p->r->cfg.conf;
    int64_t interval = ff_conf_int(c, "gc", "interval");
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += interval;
        while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock, &until) == 0)
            ;
        if (p->stop)
            break;
        pthread_mutex_unlock(&p->lock);
        struct ff_err err;
        unsigned expired = 0;
        if (upload_expire(p->r->uploads, ff_conf_int(c, "gc", "upload_expiry"), &expired,
                          &err) != 0)
            ff_log_error(NULL, "upload.expire.failed", "error=%s", err.msg);
        struct gc_stats stats;
        if (gc_run(p->r, ff_conf_int(c, "gc", "grace"), &stats, &err) != 0)
            ff_log_error(NULL, "gc.failed", "error=%s", err.msg);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int cmd_serve(struct registry *r, bool check_only)
{
    struct ff_err err;
    if (metrics_new(&r->metrics, &err) != 0 || limits_new(r, &err) != 0 ||
        auth_keys_load(&r->cfg, &r->keys, &err) != 0 || http_new(r, &err) != 0)
        ff_fatal("%s", err.msg);
    if (check_only) {
        printf("ff-registry: configuration ok\n");
        return 0;
    }
    if (ff_daemon_drop_privileges(ff_conf_string(r->cfg.conf, "server", "user"), &err) != 0)
        ff_fatal("%s", err.msg);
    if (registry_open(r, &err) != 0 || routes_register(r, &err) != 0)
        ff_fatal("%s", err.msg);
    ff_daemon_signals_block();
    if (ff_http_server_start(r->http, &err) != 0)
        ff_fatal("%s", err.msg);
    struct periodic p = {.r = r, .stop = false};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.wake, NULL);
    pthread_t periodic_thread;
    bool periodic_on = ff_conf_int(r->cfg.conf, "gc", "interval") > 0 &&
                       pthread_create(&periodic_thread, NULL, periodic_main, &p) == 0;
    ff_log_info(NULL, "start", "port=%u storage=%s", ff_http_server_port(r->http),
                ff_conf_string(r->cfg.conf, "storage", "root"));
    int sig = ff_daemon_signal_wait();
    ff_log_info(NULL, "stopping", "signal=%d", sig);
    if (periodic_on) {
        pthread_mutex_lock(&p.lock);
        p.stop = true;
        pthread_cond_signal(&p.wake);
        pthread_mutex_unlock(&p.lock);
        pthread_join(periodic_thread, NULL);
    }
    int rc = ff_http_server_stop(r->http,
                                 (unsigned)ff_conf_int(r->cfg.conf, "server", "shutdown_grace"));
    ff_log_info(NULL, "stopped", "graceful=%s", rc == 0 ? "yes" : "no");
    pthread_cond_destroy(&p.wake);
    pthread_mutex_destroy(&p.lock);
    return 0;
}

static int cmd_gc(struct registry *r, int argc, char **argv)
{
    int64_t grace = ff_conf_int(r->cfg.conf, "gc", "grace");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--grace") == 0 && i + 1 < argc &&
            ff_parse_i64(argv[++i], 0, INT64_MAX / 2, &grace) == 0)
            continue;
        (void)fprintf(stderr, "ff-registry: gc: bad argument \"%s\"\n", argv[i]);
        return 2;
    }
    struct ff_err err;
    if (ff_daemon_drop_privileges(ff_conf_string(r->cfg.conf, "server", "user"), &err) != 0 ||
        registry_open_for_gc(r, &err) != 0) {
        (void)fprintf(stderr, "ff-registry: gc: %s\n", err.msg);
        return 1;
    }
    struct gc_stats s;
    if (gc_run(r, grace, &s, &err) != 0) {
        (void)fprintf(stderr, "ff-registry: gc: %s\n", err.msg);
        return 1;
    }
    printf("gc: %d manifests, %d blob links, %d of %d blobs (%lld bytes) removed\n",
           s.manifests_deleted, s.links_deleted, s.blobs_deleted, s.blobs_seen,
           (long long)s.bytes_freed);
    return 0;
}

/* Builds the claims of a registry token granting scopes to sub. */
static json_t *mint_claims(const char *iss, const char *aud, const char *sub, int64_t ttl,
                           const char *const *scopes, size_t n, struct ff_err *err)
{
    struct ff_access access;
    ff_access_init(&access);
    for (size_t i = 0; i < n; i++) {
        if (ff_scope_parse(scopes[i], &access, err) != 0) {
            ff_access_release(&access);
            return NULL;
        }
    }
    json_t *list = NULL;
    if (ff_access_to_json(&access, &list, err) != 0) {
        ff_access_release(&access);
        return NULL;
    }
    ff_access_release(&access);
    unsigned char raw[16];
    char jti[33];
    if (ff_secret_random(raw, sizeof(raw), err) != 0) {
        json_decref(list);
        return NULL;
    }
    ff_hex_encode(raw, sizeof(raw), jti);
    json_int_t now = (json_int_t)time(NULL);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o}", "iss", iss, "aud", aud, "sub", sub,
                     "jti", jti, "iat", now, "nbf", now, "exp", now + ttl, "access", list);
}

static int cmd_mint_token(int argc, char **argv)
{
    const char *key_path = NULL, *sub = NULL, *iss = "ff-builder", *aud = "ff-registry";
    const char *scopes[MINT_SCOPES_MAX];
    size_t n = 0;
    int64_t ttl = 300;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            goto bad;
        if (strcmp(a, "--key") == 0)
            key_path = v;
        else if (strcmp(a, "--sub") == 0)
            sub = v;
        else if (strcmp(a, "--iss") == 0)
            iss = v;
        else if (strcmp(a, "--aud") == 0)
            aud = v;
        else if (strcmp(a, "--ttl") == 0 && ff_parse_i64(v, -MINT_TTL_MAX, MINT_TTL_MAX,
                                                         &ttl) == 0)
            ;
        else if (strcmp(a, "--scope") == 0 && n < MINT_SCOPES_MAX)
            scopes[n++] = v;
        else
            goto bad;
        i++;
    }
    if (key_path == NULL || sub == NULL)
        goto bad;
    struct ff_err err;
    struct ff_jwt_key *key = NULL;
    if (ff_jwt_key_load(key_path, NULL, true, &key, &err) != 0) {
        (void)fprintf(stderr, "ff-registry: mint-token: %s\n", err.msg);
        return 1;
    }
    json_t *claims = mint_claims(iss, aud, sub, ttl, scopes, n, &err);
    char *token = NULL;
    int rc = claims != NULL ? ff_jwt_sign(key, claims, &token, &err) : FF_EINVAL;
    json_decref(claims);
    ff_jwt_key_free(key);
    if (rc != 0) {
        (void)fprintf(stderr, "ff-registry: mint-token: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", token);
    ff_secret_free(token);
    return 0;
bad:
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    struct ff_daemon_opts opts;
    struct ff_err err;
    if (ff_daemon_parse_args(argc, argv, &opts, &err) != 0) {
        bool help = strcmp(err.msg, "help") == 0;
        if (!help)
            (void)fprintf(stderr, "ff-registry: %s\n", err.msg);
        usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    ff_log_open("ff-registry", FF_LOG_INFO);
    const char *cmd = opts.argc > 0 ? opts.argv[0] : "serve";
    if (strcmp(cmd, "mint-token") == 0)
        return cmd_mint_token(opts.argc, opts.argv);
    static struct registry r;
    if (config_load(opts.config_path, &r.cfg, &err) != 0)
        ff_fatal("%s", err.msg);
    ff_log_open("ff-registry", opts.debug ? FF_LOG_DEBUG : r.cfg.log_level);
    int rc;
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(&r, opts.check_only);
    else if (strcmp(cmd, "gc") == 0)
        rc = cmd_gc(&r, opts.argc, opts.argv);
    else {
        (void)fprintf(stderr, "ff-registry: unknown command \"%s\"\n", cmd);
        usage(stderr);
        rc = 2;
    }
    registry_close(&r);
    return rc;
}
