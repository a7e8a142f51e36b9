/* Where the API is and which token to send: the environment, then the
 * config directory (config file and the token ff login stored), then an
 * env file such as deploy/farm's var/farm.env. The token file is kept like
 * an SSH private key: 0600 in a 0700 directory, refused when others can
 * read it. */
#include "cli.h"

#include "ff_file.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

int config_read_text(const char *path, size_t max, char **out, struct ff_err *err)
{
    /* Not ff_file_read: a pipe (--env-file <(...)) is welcome here. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && errno == ENOENT)
        return FF_ENOTFOUND;
    if (fd < 0) {
        (void)ff_err_set(err, FF_EIO, "cannot open \"%s\": %s", path, strerror(errno));
        return FF_EIO;
    }
    size_t len = 0;
    int rc = ff_file_read_fd(fd, path, max, FF_FILE_SECRET, out, &len, err);
    (void)close(fd);
    if (rc == 0 && strlen(*out) != len) {
        free(*out);
        *out = NULL;
        (void)ff_err_set(err, FF_EINVAL, "\"%s\" holds a NUL byte", path);
        rc = FF_EINVAL;
    }
    return rc;
}

/* Trims spaces and tabs at both ends of [*s, *e). */
static void trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r'))
        (*e)--;
}

/* Parses one "key = value" line [s, e) into malloc'd key and value.
 * Errors return the constant, not ff_err_set's result, so analyzers see
 * that *key and *value are set whenever 0 is returned. */
static int kv_line(const char *s, const char *e, const char *name, unsigned line, char **key,
                   char **value, struct ff_err *err)
{
    const char *eq = memchr(s, '=', (size_t)(e - s));
    const char *why = NULL;
    if (eq == NULL) {
        (void)ff_err_set(err, FF_EINVAL, "%s:%u: expected KEY=VALUE", name, line);
        return FF_EINVAL;
    }
    const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
    trim(&ks, &ke);
    trim(&vs, &ve);
    if (ks == ke)
        why = "expected a key before '='";
    for (const char *p = ks; why == NULL && p < ke; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            why = "key must match [A-Za-z0-9_]+";
    }
    if (why == NULL && ve > vs && (*vs == '\'' || *vs == '"')) {
        char q = *vs;
        if (ve - vs < 2 || ve[-1] != q || memchr(vs + 1, q, (size_t)(ve - vs - 2)) != NULL)
            why = q == '\'' ? "the value must be one single-quoted string"
                            : "the value must be one double-quoted string";
        vs++;
        ve--;
    }
    for (const char *p = vs; why == NULL && p < ve; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            why = "control character in the value";
    }
    if (why != NULL) {
        (void)ff_err_set(err, FF_EINVAL, "%s:%u: %s", name, line, why);
        return FF_EINVAL;
    }
    *key = ff_strndup(ks, (size_t)(ke - ks));
    *value = ff_strndup(vs, (size_t)(ve - vs));
    if (*key == NULL || *value == NULL) {
        free(*key);
        ff_secret_free(*value);
        *key = *value = NULL;
        (void)ff_err_set(err, FF_ENOMEM, "out of memory");
        return FF_ENOMEM;
    }
    return 0;
}

int config_parse_kv(const char *text, const char *name, config_kv_fn fn, void *ctx,
                    struct ff_err *err)
{
    unsigned line = 0;
    const char *p = text;
    while (*p != '\0') {
        line++;
        const char *nl = strchr(p, '\n');
        const char *e = nl != NULL ? nl : p + strlen(p);
        const char *s = p;
        p = nl != NULL ? nl + 1 : e;
        const char *ts = s, *te = e;
        trim(&ts, &te);
        if (ts == te || *ts == '#')
            continue;
        char *key = NULL, *value = NULL;
        int rc = kv_line(ts, te, name, line, &key, &value, err);
        if (rc == 0)
            rc = fn(ctx, key, value, line, err);
        free(key);
        ff_secret_free(value);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Replaces *slot with a copy of value unless it is already set (an
 * earlier source wins). */
static int keep_first(char **slot, const char *value, struct ff_err *err)
{
    if (*slot != NULL)
        return 0;
    *slot = strdup(value);
    return *slot != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
}

struct file_ctx {
    struct cli_config *cfg;
    const char *name;
    bool want_token;
};

static int config_file_kv(void *ctx, const char *key, const char *value, unsigned line,
                          struct ff_err *err)
{
    struct file_ctx *f = ctx;
    if (strcmp(key, "api_url") == 0)
        return keep_first(&f->cfg->api_url, value, err);
    if (strcmp(key, "ca") == 0)
        return keep_first(&f->cfg->ca, value, err);
    return ff_err_set(err, FF_EINVAL, "%s:%u: unknown key \"%s\" (expected api_url or ca)",
                      f->name, line, key);
}

/* Keys of an env file other than these are someone else's (FF_VAR,
 * FF_REGISTRY …) and ignored. */
static int env_file_kv(void *ctx, const char *key, const char *value, unsigned line,
                       struct ff_err *err)
{
    (void)line;
    struct file_ctx *f = ctx;
    if (strcmp(key, "FF_API_URL") == 0)
        return keep_first(&f->cfg->api_url, value, err);
    if (strcmp(key, "FF_CA") == 0)
        return keep_first(&f->cfg->ca, value, err);
    if (strcmp(key, "FF_ADMIN_TOKEN") == 0 && f->want_token && f->cfg->token == NULL) {
        f->cfg->token_source = CLI_TOKEN_ENV_FILE;
        return keep_first(&f->cfg->token, value, err);
    }
    return 0;
}

static int parse_file(const char *path, config_kv_fn fn, struct cli_config *cfg, bool must_exist,
                      bool want_token, struct ff_err *err)
{
    char *text = NULL;
    int rc = config_read_text(path, CLI_FILE_MAX, &text, err);
    if (rc == FF_ENOTFOUND) {
        if (!must_exist)
            return 0;
        return ff_err_set(err, FF_EIO, "env file \"%s\" does not exist", path);
    }
    if (rc != 0)
        return rc;
    struct file_ctx ctx = {cfg, path, want_token};
    rc = config_parse_kv(text, path, fn, &ctx, err);
    ff_secret_wipe(text, strlen(text));
    free(text);
    return rc;
}

/* The config directory from XDG_CONFIG_HOME or HOME (relative values are
 * ignored, as the XDG base directory specification says). */
static int config_dir(const struct cli_env *env, char **out, struct ff_err *err)
{
    *out = NULL;
    if (is_set(env->xdg_config_home) && env->xdg_config_home[0] == '/')
        *out = ff_asprintf("%s/ff", env->xdg_config_home);
    else if (is_set(env->home) && env->home[0] == '/')
        *out = ff_asprintf("%s/.config/ff", env->home);
    else
        return 0;
    return *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
}

/* A token must be one printable line: it goes into an HTTP header. */
static int token_check(const char *token, const char *where, struct ff_err *err)
{
    size_t n = strlen(token);
    if (n == 0)
        return ff_err_set(err, FF_EINVAL, "%s: the token is empty", where);
    if (n > CLI_TOKEN_MAX)
        return ff_err_set(err, FF_ETOOBIG, "%s: the token is longer than %d bytes", where,
                          CLI_TOKEN_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)token[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return ff_err_set(err, FF_EINVAL, "%s: the token holds a character that is not "
                              "printable ASCII", where);
    }
    return 0;
}

/* The URL as the client needs it: https only, no trailing '/'. */
static int url_check(struct cli_config *cfg, struct ff_err *err)
{
    if (cfg->api_url == NULL)
        return 0;
    if (strncasecmp(cfg->api_url, "https://", 8) != 0 || cfg->api_url[8] == '\0') {
        char shown[FF_STR_QUOTE_SIZE];
        ff_str_quote(cfg->api_url, strlen(cfg->api_url), shown);
        return ff_err_set(err, FF_EINVAL, "API URL \"%s\" must start with https://", shown);
    }
    size_t n = strlen(cfg->api_url);
    while (n > 8 && cfg->api_url[n - 1] == '/')
        cfg->api_url[--n] = '\0';
    return 0;
}

int config_load(const struct cli_env *env, const char *env_file, bool want_token,
                struct cli_config *out, struct ff_err *err)
{
    struct cli_config cfg = {0};
    char *path = NULL;
    memset(out, 0, sizeof(*out));
    int rc = config_dir(env, &cfg.dir, err);
    if (rc == 0 && is_set(env->api_url))
        rc = keep_first(&cfg.api_url, env->api_url, err);
    if (rc == 0 && is_set(env->ca))
        rc = keep_first(&cfg.ca, env->ca, err);
    if (rc == 0 && want_token && is_set(env->token)) {
        rc = token_check(env->token, "FF_TOKEN", err);
        if (rc == 0)
            rc = keep_first(&cfg.token, env->token, err);
        cfg.token_source = CLI_TOKEN_ENV;
    }
    if (rc == 0 && cfg.dir != NULL) {
        path = ff_asprintf("%s/config", cfg.dir);
        rc = path != NULL ? parse_file(path, config_file_kv, &cfg, false, false, err)
                          : ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    if (rc == 0 && want_token && cfg.token == NULL && cfg.dir != NULL) {
        rc = config_token_read(cfg.dir, &cfg.token, err);
        if (rc == 0)
            cfg.token_source = CLI_TOKEN_STORE;
        else if (rc == FF_ENOTFOUND)
            rc = 0;
    }
    if (rc == 0 && env_file != NULL) {
        rc = parse_file(env_file, env_file_kv, &cfg, true, want_token, err);
        if (rc == 0 && cfg.token_source == CLI_TOKEN_ENV_FILE)
            rc = token_check(cfg.token, env_file, err);
    }
    if (rc == 0)
        rc = url_check(&cfg, err);
    free(path);
    if (rc != 0) {
        config_release(&cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

void config_release(struct cli_config *c)
{
    free(c->dir);
    free(c->api_url);
    free(c->ca);
    ff_secret_free(c->token);
    memset(c, 0, sizeof(*c));
}

int config_token_read(const char *dir, char **out, struct ff_err *err)
{
    char *path = ff_asprintf("%s/token", dir);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            rc = FF_ENOTFOUND;
        else if (errno == ELOOP)
            rc = ff_err_set(err, FF_EDENIED, "token file \"%s\" is a symbolic link", path);
        else
            rc = ff_err_set(err, FF_EIO, "cannot open \"%s\": %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = ff_err_set(err, FF_EIO, "cannot stat \"%s\": %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        rc = ff_err_set(err, FF_EDENIED, "token file \"%s\" must be a file of yours with mode "
                        "0600 (it has mode %04o): run ff login again", path,
                        (unsigned)(st.st_mode & 07777));
        goto out;
    }
    rc = ff_file_read_fd(fd, path, CLI_TOKEN_MAX + 2, FF_FILE_SECRET, &text, &len, err);
    if (rc != 0)
        goto out;
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if (len > 0 && text[len - 1] == '\r')
        text[--len] = '\0';
    rc = strlen(text) == len ? token_check(text, path, err)
                             : ff_err_set(err, FF_EINVAL, "%s: the token holds a NUL", path);
    if (rc == 0) {
        *out = text;
        text = NULL;
    }
out:
    if (fd >= 0)
        (void)close(fd);
    if (text != NULL) {
        ff_secret_wipe(text, len);
        free(text);
    }
    free(path);
    return rc;
}

/* Creates dir and its missing parents with mode 0700, and makes dir
 * itself 0700 when it already exists with a looser mode. */
static int dir_make(const char *dir, struct ff_err *err)
{
    char *p = strdup(dir);
    if (p == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = ff_err_set(err, FF_EIO, "cannot create \"%s\": %s", p, strerror(errno));
            break;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    free(p);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(dir, &st) != 0)
        return ff_err_set(err, FF_EIO, "cannot stat \"%s\": %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return ff_err_set(err, FF_EIO, "\"%s\" is not a directory", dir);
    if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0)
        return ff_err_set(err, FF_EIO, "cannot make \"%s\" private (mode 0700): %s", dir,
                          strerror(errno));
    return 0;
}

static int write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

int config_token_write(const char *dir, const char *token, struct ff_err *err)
{
    int rc = token_check(token, "token", err);
    if (rc != 0)
        return rc;
    rc = dir_make(dir, err);
    if (rc != 0)
        return rc;
    char *tmp = ff_asprintf("%s/.token.XXXXXX", dir);
    char *path = ff_asprintf("%s/token", dir);
    int fd = -1;
    if (tmp == NULL || path == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    /* mkstemp creates the file 0600 whatever the umask. */
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = ff_err_set(err, FF_EIO, "cannot create a file in \"%s\": %s", dir, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, token, strlen(token)) != 0 ||
        write_all(fd, "\n", 1) != 0 || fsync(fd) != 0) {
        rc = ff_err_set(err, FF_EIO, "cannot write \"%s\": %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = ff_err_set(err, FF_EIO, "cannot write \"%s\": %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = ff_err_set(err, FF_EIO, "cannot rename \"%s\" to \"%s\": %s", tmp, path,
                        strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    /* The rename is durable once the directory is synced; a failure here
     * leaves a working token, so it is not reported. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        (void)close(dfd);
    }
out:
    if (fd >= 0)
        (void)close(fd);
    if (tmp != NULL) {
        (void)unlink(tmp);
        free(tmp);
    }
    free(path);
    return rc;
}

int config_token_remove(const char *dir, struct ff_err *err)
{
    char *path = ff_asprintf("%s/token", dir);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = 0;
    if (unlink(path) != 0) {
        rc = errno == ENOENT ? FF_ENOTFOUND
                             : ff_err_set(err, FF_EIO, "cannot remove \"%s\": %s", path,
                                          strerror(errno));
    }
    free(path);
    return rc;
}
