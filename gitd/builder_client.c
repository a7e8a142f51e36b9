/* What ff-gitd asks ff-builder, with its service key: who holds this SSH
 * key, what may this user do with this app, and build this commit. gitd
 * never opens the builder's database (DESIGN.md §2); these answers are all
 * it knows about users and apps. */
#include "gitd.h"

#include "ff_http_client.h"
#include "ff_json.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Retries of a question after a failed connection or a 502/503/504: enough
 * to ride out a restarting builder while a user waits to authenticate. */
#define BUILDER_RETRIES 2u

struct builder_client {
    struct ff_http_client *http;
    char *url;
    char *key;
};

int builder_client_new(struct builder_client **out, const char *url, const char *ca_file,
                       const char *key, struct ff_err *err)
{
    *out = NULL;
    if (!ff_str_has_prefix(url, "https://"))
        return ff_err_set(err, FF_EINVAL, "builder URL must start with https://");
    struct builder_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    c->url = strdup(url);
    c->key = strdup(key);
    if (c->url == NULL || c->key == NULL) {
        builder_client_free(c);
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    struct ff_http_client_config hc;
    ff_http_client_config_init(&hc);
    hc.ca_file = ca_file;
    hc.timeout_ms = BUILDER_TIMEOUT_MS;
    hc.max_retries = BUILDER_RETRIES;
    int rc = ff_http_client_new(&hc, &c->http, err);
    if (rc != 0) {
        builder_client_free(c);
        return ff_err_wrap(err, "builder client");
    }
    *out = c;
    return 0;
}

void builder_client_free(struct builder_client *c)
{
    if (c == NULL)
        return;
    ff_http_client_free(c->http);
    free(c->url);
    ff_secret_free(c->key);
    free(c);
}

/* Copies a message from the builder for a terminal and a log line:
 * control characters become '?', so it cannot drive either. */
static void clean_message(const char *msg, char out[FF_ERR_MSG_MAX])
{
    size_t i = 0;
    for (; msg[i] != '\0' && i + 1 < FF_ERR_MSG_MAX; i++) {
        unsigned char ch = (unsigned char)msg[i];
        out[i] = (char)(ch < ' ' || ch == 0x7f ? '?' : ch);
    }
    out[i] = '\0';
}

static int status_code(long status)
{
    switch (status) {
    case 401: return FF_EAUTH;
    case 403: return FF_EDENIED;
    case 404: return FF_ENOTFOUND;
    case 503: return FF_EBUSY;
    default: return FF_ENET;
    }
}

/* err from a non-2xx answer: the builder's own message when the body is
 * its JSON error document. */
static int error_answer(long status, const struct ff_buf *body, struct ff_err *err)
{
    json_t *doc = NULL, *e = NULL;
    const char *msg = NULL;
    struct ff_err perr;
    if (body->len > 0 &&
        ff_json_parse_object(body->data, body->len, BUILDER_ANSWER_MAX, &doc, &perr) == 0 &&
        ff_json_get_object(doc, "error", true, &e, &perr) == 0)
        (void)ff_json_get_string(e, "message", false, FF_ERR_MSG_MAX, &msg, &perr);
    int code = status_code(status);
    if (msg != NULL) {
        char clean[FF_ERR_MSG_MAX];
        clean_message(msg, clean);
        ff_err_set(err, code, "%s", clean);
    } else if (status == 401) {
        ff_err_set(err, code, "the builder refused gitd's service key (HTTP 401)");
    } else {
        ff_err_set(err, code, "the builder answered HTTP %ld", status);
    }
    json_decref(doc);
    return code;
}

/* One request; a 2xx answer's JSON object is handed over in *out (when out
 * is not NULL). */
static int ask(struct builder_client *c, const char *method, const char *path, const json_t *body,
               json_t **out, struct ff_err *err)
{
    static const char *const headers[] = {"Accept: application/json",
                                          "Content-Type: application/json"};
    if (out != NULL)
        *out = NULL;
    char *url = ff_asprintf("%s%s", c->url, path);
    char *data = NULL;
    size_t data_len = 0;
    struct ff_buf resp_body;
    struct ff_http_client_response resp = {0};
    ff_buf_init(&resp_body, BUILDER_ANSWER_MAX);
    int rc = url == NULL ? ff_err_set(err, FF_ENOMEM, "out of memory") : 0;
    if (rc == 0 && body != NULL)
        rc = ff_json_dump(body, &data, &data_len, err);
    if (rc != 0)
        goto out;
    struct ff_http_client_request req = {
        .method = method,
        .url = url,
        .headers = headers,
        .n_headers = 2,
        .auth = FF_HTTP_AUTH_BEARER,
        .token = c->key,
        .body = data,
        .body_len = data_len,
        .resp_body = &resp_body,
    };
    rc = ff_http_client_do(c->http, &req, &resp, err);
    if (rc != 0) {
        rc = ff_err_wrap(err, "cannot reach the builder");
        goto out;
    }
    if (resp.status < 200 || resp.status > 299) {
        rc = error_answer(resp.status, &resp_body, err);
        goto out;
    }
    if (out != NULL)
        rc = ff_json_parse_object(resp_body.data != NULL ? resp_body.data : "", resp_body.len,
                                  BUILDER_ANSWER_MAX, out, err);
    if (rc != 0)
        rc = ff_err_wrap(err, "the builder's answer to %s %s", method, path);
out:
    ff_http_client_response_release(&resp);
    ff_buf_release(&resp_body);
    free(data);
    free(url);
    return rc;
}

/* Copies a string field of doc into out (size out_size), which must be
 * non-empty and fit. */
static int copy_field(const json_t *doc, const char *key, bool required, char *out, size_t out_size,
                      struct ff_err *err)
{
    const char *v = NULL;
    int rc = ff_json_get_string(doc, key, required, out_size - 1, &v, err);
    if (rc == 0)
        ff_strlcpy(out, v, out_size);
    return rc;
}

int builder_key_lookup(struct builder_client *c, const char *fingerprint, struct builder_user *out,
                       struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    /* Fingerprints are base64: '+' and '/' must be escaped in a query. */
    struct ff_buf path;
    ff_buf_init(&path, 256);
    int rc = ff_buf_append_str(&path, "/v1/keys/lookup?fingerprint=");
    for (const char *p = fingerprint; rc == 0 && *p != '\0'; p++) {
        if (*p == '+' || *p == '/' || *p == '=' || *p == ':')
            rc = ff_buf_printf(&path, "%%%02X", (unsigned)(unsigned char)*p);
        else
            rc = ff_buf_append(&path, p, 1);
    }
    if (rc != 0) {
        ff_buf_release(&path);
        return ff_err_set(err, rc, "fingerprint too long");
    }
    json_t *doc = NULL;
    const char *role = NULL;
    rc = ask(c, "GET", path.data, NULL, &doc, err);
    ff_buf_release(&path);
    if (rc == 0)
        rc = copy_field(doc, "user", true, out->name, sizeof(out->name), err);
    if (rc == 0 && !command_owner_valid(out->name, strlen(out->name)))
        rc = ff_err_set(err, FF_EINVAL, "the builder named a user gitd cannot serve");
    if (rc == 0)
        rc = ff_json_get_string(doc, "role", true, 16, &role, err);
    if (rc == 0)
        rc = ff_json_get_int(doc, "key_id", true, 1, INT64_MAX, &out->key_id, err);
    if (rc == 0)
        out->admin = strcmp(role, "admin") == 0;
    json_decref(doc);
    return rc;
}

int builder_app_access(struct builder_client *c, const char *owner, const char *app,
                       const char *user, struct builder_access *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!command_owner_valid(owner, strlen(owner)) || !command_app_valid(app, strlen(app)) ||
        !command_owner_valid(user, strlen(user)))
        return ff_err_set(err, FF_EINVAL, "not an app and user the builder knows");
    char *path = ff_asprintf("/v1/apps/%s/%s/access?user=%s", owner, app, user);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    json_t *doc = NULL;
    int rc = ask(c, "GET", path, NULL, &doc, err);
    free(path);
    if (rc == 0)
        rc = ff_json_get_bool(doc, "push", true, &out->push, err);
    if (rc == 0)
        rc = ff_json_get_bool(doc, "pull", true, &out->pull, err);
    if (rc == 0)
        rc = copy_field(doc, "access", true, out->access, sizeof(out->access), err);
    if (rc == 0) {
        ff_strlcpy(out->deploy_branch, RECEIVE_DEPLOY_BRANCH_DEFAULT, sizeof(out->deploy_branch));
        rc = copy_field(doc, "deploy_branch", false, out->deploy_branch, sizeof(out->deploy_branch),
                        err);
        if (rc == FF_ENOTFOUND)
            rc = 0;
    }
    if (rc != 0 && rc != FF_ENOMEM && doc != NULL)
        rc = ff_err_wrap(err, "the builder's access answer");
    json_decref(doc);
    return rc;
}

int builder_build_start(struct builder_client *c, const char *owner, const char *app,
                        const char *commit, const char *ref, const char *user, struct ff_err *err)
{
    if (!command_owner_valid(owner, strlen(owner)) || !command_app_valid(app, strlen(app)))
        return ff_err_set(err, FF_EINVAL, "not an app the builder knows");
    char *path = ff_asprintf("/v1/apps/%s/%s/builds", owner, app);
    json_t *body = json_pack("{s:s,s:s,s:s}", "commit", commit, "ref", ref, "user", user);
    int rc = path == NULL || body == NULL ? ff_err_set(err, FF_ENOMEM, "out of memory")
                                          : ask(c, "POST", path, body, NULL, err);
    json_decref(body);
    free(path);
    return rc;
}

/* ---- the gate of a receive-pack child ---- */

struct builder_gate {
    struct builder_client *client;
    char user[COMMAND_OWNER_MAX + 1];
    char owner[COMMAND_OWNER_MAX + 1];
    char app[COMMAND_APP_MAX + 1];
    char reqid[FF_LOG_REQID_SIZE];
};

/* Reads the service key from fd (then closed): one line, at most
 * CONFIG_SERVICE_KEY_MAX characters. *out is for ff_secret_free. */
static int key_from_fd(int fd, char **out, struct ff_err *err)
{
    char buf[CONFIG_SERVICE_KEY_MAX + 2];
    size_t n = 0;
    int rc = 0;
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = ff_err_set(err, FF_EIO, "reading the service key: %s", strerror(errno));
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    (void)close(fd);
    while (rc == 0 && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (rc == 0 && (n == 0 || n > CONFIG_SERVICE_KEY_MAX))
        rc = ff_err_set(err, FF_EINVAL, "no service key on descriptor %d", fd);
    if (rc == 0 && (*out = ff_strndup(buf, n)) == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    ff_secret_wipe(buf, sizeof(buf));
    return rc;
}

static const char *env_need(const char *name, struct ff_err *err)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        ff_err_set(err, FF_EINVAL, "the builder gate needs %s in the environment", name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

int builder_gate_from_env(struct builder_gate **out, struct ff_err *err)
{
    *out = NULL;
    const char *user = env_need(SPAWN_ENV_USER, err);
    const char *app = user != NULL ? env_need(SPAWN_ENV_APP, err) : NULL;
    const char *url = app != NULL ? env_need(SPAWN_ENV_BUILDER_URL, err) : NULL;
    const char *fd_text = url != NULL ? env_need(SPAWN_ENV_KEY_FD, err) : NULL;
    if (fd_text == NULL)
        return FF_EINVAL;
    const char *slash = strchr(app, '/');
    int64_t fd = -1;
    if (!command_owner_valid(user, strlen(user)) || slash == NULL ||
        !command_owner_valid(app, (size_t)(slash - app)) ||
        !command_app_valid(slash + 1, strlen(slash + 1)))
        return ff_err_set(err, FF_EINVAL, "%s or %s is not a user or <owner>/<app>", SPAWN_ENV_USER,
                          SPAWN_ENV_APP);
    if (ff_parse_i64(fd_text, 3, 1023, &fd) != 0)
        return ff_err_set(err, FF_EINVAL, "%s is not a descriptor", SPAWN_ENV_KEY_FD);
    struct builder_gate *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    char *key = NULL;
    int rc = key_from_fd((int)fd, &key, err);
    if (rc == 0)
        rc = builder_client_new(&g->client, url, getenv(SPAWN_ENV_BUILDER_CA), key, err);
    ff_secret_free(key);
    if (rc != 0) {
        builder_gate_free(g);
        return rc;
    }
    ff_strlcpy(g->user, user, sizeof(g->user));
    memcpy(g->owner, app, (size_t)(slash - app));
    g->owner[slash - app] = '\0';
    ff_strlcpy(g->app, slash + 1, sizeof(g->app));
    const char *reqid = getenv(SPAWN_ENV_REQID);
    ff_strlcpy(g->reqid, reqid != NULL ? reqid : "", sizeof(g->reqid));
    *out = g;
    return 0;
}

void builder_gate_free(struct builder_gate *g)
{
    if (g == NULL)
        return;
    builder_client_free(g->client);
    free(g);
}

int builder_gate(void *ctx, git_repository *view, const char *ref, const git_oid *old_id,
                 const git_oid *new_id, struct progress *p, char **reason)
{
    (void)view;
    (void)old_id;
    struct builder_gate *g = ctx;
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof(hex), new_id);
    pktline_progress(p, "asking the builder to build %.12s of %s/%s", hex, g->owner, g->app);
    struct ff_err e;
    ff_err_clear(&e);
    int rc = builder_build_start(g->client, g->owner, g->app, hex, ref, g->user, &e);
    const char *why = e.msg;
    if (rc == 0) {
        /* Following a build lands with build dispatch; until then a build
         * the builder took cannot be waited for, so the ref stays. */
        why = "the builder took the build, but this ff-gitd cannot follow builds yet";
        rc = FF_EDENIED;
    } else if (rc == FF_ENET || rc == FF_ETIMEOUT) {
        ff_log_error(g->reqid[0] != '\0' ? g->reqid : NULL, "gate.builder",
                     "app=%s/%s commit=%s error=%s", g->owner, g->app, hex, e.msg);
        why = "the builder cannot be reached; try again later";
    }
    ff_log_info(g->reqid[0] != '\0' ? g->reqid : NULL, "gate.refused",
                "app=%s/%s ref=%s commit=%s user=%s reason=%s", g->owner, g->app, ref, hex, g->user,
                why);
    *reason = strdup(why);
    return rc;
}
