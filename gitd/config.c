/* ff-gitd's configuration: one INI file, every key declared here with its
 * default and range, and the service key file it names. */
#include "gitd.h"

#include "ff_daemon.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The defaults of [limits], with why:
 * - sessions 100: every connection is a process of a few MiB; 100 fit a
 *   small machine, and a client that opens more is attacking it.
 * - sessions_per_user 4: a developer pushes one app at a time; four leave
 *   room for a fetch and a CI job next to it.
 * - sessions_per_address 8: also counts connections not yet authenticated,
 *   so one address cannot hold every process; offices behind one NAT get
 *   a few developers' worth.
 * - auth_timeout 30 s: OpenSSH's LoginGraceTime is 120 s for humans typing
 *   passwords; keys need a second, a slow builder a few.
 * - idle_timeout 600 s: a push is quiet while its build runs without
 *   output; ten minutes of silence either way is a dead session.
 * - max_pack_bytes and max_objects: receive.c's RECEIVE_MAX_* defaults
 *   (2 GiB, 1 000 000), written out because the schema wants text. */
static const struct ff_conf_key gitd_schema[] = {
    {"server", "address", FF_CONF_STRING, "127.0.0.1", 0, 0},
    {"server", "port", FF_CONF_INT, "2222", 1, 65535},
    {"server", "host_key", FF_CONF_STRING, NULL, 0, 0},
    {"server", "user", FF_CONF_STRING, NULL, 0, 0},
    {"builder", "url", FF_CONF_STRING, NULL, 0, 0},
    {"builder", "ca", FF_CONF_STRING, NULL, 0, 0},
    {"builder", "key_file", FF_CONF_STRING, NULL, 0, 0},
    {"storage", "repos", FF_CONF_STRING, NULL, 0, 0},
    {"storage", "run", FF_CONF_STRING, NULL, 0, 0},
    {"limits", "sessions", FF_CONF_INT, "100", 1, 10000},
    {"limits", "sessions_per_user", FF_CONF_INT, "4", 1, 1000},
    {"limits", "sessions_per_address", FF_CONF_INT, "8", 1, 1000},
    {"limits", "auth_timeout", FF_CONF_INT, "30", 1, 600},
    {"limits", "idle_timeout", FF_CONF_INT, "600", 1, 86400},
    {"limits", "max_pack_bytes", FF_CONF_SIZE, "2G", 1, INT64_MAX},
    {"limits", "max_objects", FF_CONF_INT, "1000000", 1, UINT32_MAX},
    {"log", "level", FF_CONF_STRING, "info", 0, 0},
};

#define SCHEMA_N (sizeof(gitd_schema) / sizeof(gitd_schema[0]))

/* A required string key: set and not empty. */
static int need(const struct ff_conf *c, const char *path, const char *section, const char *name,
                struct ff_err *err)
{
    int rc = ff_conf_require(c, path, section, name, err);
    if (rc == 0 && ff_conf_string(c, section, name)[0] == '\0')
        rc = ff_err_set(err, FF_EINVAL, "config \"%s\": [%s] %s must not be empty", path, section,
                        name);
    return rc;
}

/* An optional string key: NULL unless set to something. */
static const char *optional(const struct ff_conf *c, const char *section, const char *name)
{
    const char *v = ff_conf_string(c, section, name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int check_address(const char *path, const char *addr, struct ff_err *err)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, addr, buf) == 1 || inet_pton(AF_INET6, addr, buf) == 1)
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(addr, strlen(addr), q);
    return ff_err_set(err, FF_EINVAL,
                      "config \"%s\": [server] address \"%s\" is not a numeric "
                      "IPv4 or IPv6 address",
                      path, q);
}

/* https://host[:port] with nothing after it: paths are ours to add. */
static int check_url(const char *path, const char *url, struct ff_err *err)
{
    const char *host = url + strlen("https://");
    if (!ff_str_has_prefix(url, "https://") || *host == '\0' || strchr(host, '/') != NULL ||
        strchr(host, '?') != NULL || strchr(host, '@') != NULL || strchr(host, ' ') != NULL) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(url, strlen(url), q);
        return ff_err_set(err, FF_EINVAL,
                          "config \"%s\": [builder] url \"%s\" is not https://host[:port]", path,
                          q);
    }
    return 0;
}

static int config_check(struct ff_conf *c, const char *path, struct gitd_config *out,
                        struct ff_err *err)
{
    int rc = need(c, path, "server", "host_key", err);
    if (rc == 0)
        rc = need(c, path, "builder", "url", err);
    if (rc == 0)
        rc = need(c, path, "builder", "key_file", err);
    if (rc == 0)
        rc = need(c, path, "storage", "repos", err);
    if (rc == 0)
        rc = check_address(path, ff_conf_string(c, "server", "address"), err);
    if (rc == 0)
        rc = check_url(path, ff_conf_string(c, "builder", "url"), err);
    if (rc == 0 && ff_conf_is_set(c, "server", "user") && optional(c, "server", "user") == NULL)
        rc = ff_err_set(err, FF_EINVAL, "config \"%s\": [server] user must not be empty", path);
    enum ff_log_level level = FF_LOG_INFO;
    if (rc == 0)
        rc = ff_daemon_log_level(c, path, &level, err);
    char *run = NULL;
    if (rc == 0) {
        const char *r = optional(c, "storage", "run");
        run = r != NULL ? strdup(r) : ff_asprintf("%s/.run", ff_conf_string(c, "storage", "repos"));
        if (run == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "config \"%s\": out of memory", path);
    }
    if (rc != 0) {
        ff_conf_free(c);
        return rc;
    }
    out->conf = c;
    out->address = ff_conf_string(c, "server", "address");
    out->port = (uint16_t)ff_conf_int(c, "server", "port");
    out->host_key = ff_conf_string(c, "server", "host_key");
    out->user = optional(c, "server", "user");
    out->builder_url = ff_conf_string(c, "builder", "url");
    out->builder_ca = optional(c, "builder", "ca");
    out->key_file = ff_conf_string(c, "builder", "key_file");
    out->repos = ff_conf_string(c, "storage", "repos");
    out->run_dir = run;
    out->sessions = (unsigned)ff_conf_int(c, "limits", "sessions");
    out->sessions_per_user = (unsigned)ff_conf_int(c, "limits", "sessions_per_user");
    out->sessions_per_address = (unsigned)ff_conf_int(c, "limits", "sessions_per_address");
    out->auth_timeout_s = (unsigned)ff_conf_int(c, "limits", "auth_timeout");
    out->idle_timeout_s = (unsigned)ff_conf_int(c, "limits", "idle_timeout");
    out->max_pack_bytes = (uint64_t)ff_conf_int(c, "limits", "max_pack_bytes");
    out->max_objects = (uint32_t)ff_conf_int(c, "limits", "max_objects");
    out->log_level = level;
    return 0;
}

int config_load(const char *path, struct gitd_config *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    if (path == NULL)
        return ff_err_set(err, FF_EINVAL, "a configuration file is required (-f FILE)");
    struct ff_conf *c = NULL;
    int rc = ff_conf_load(path, gitd_schema, SCHEMA_N, &c, err);
    if (rc != 0)
        return rc;
    return config_check(c, path, out, err);
}

int config_load_string(const char *text, const char *name, struct gitd_config *out,
                       struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    struct ff_conf *c = NULL;
    int rc = ff_conf_load_string(text, name, gitd_schema, SCHEMA_N, &c, err);
    if (rc != 0)
        return rc;
    return config_check(c, name, out, err);
}

void config_release(struct gitd_config *cfg)
{
    ff_conf_free(cfg->conf);
    free(cfg->run_dir);
    memset(cfg, 0, sizeof(*cfg));
}

/* The key of one line: after "FF_GITD_KEY=" or the whole line, which must
 * be printable ASCII without spaces. */
static int key_of_line(const char *line, size_t len, const char *path, const char **key,
                       size_t *key_len, struct ff_err *err)
{
    static const char prefix[] = "FF_GITD_KEY=";
    if (len >= sizeof(prefix) - 1 && memcmp(line, prefix, sizeof(prefix) - 1) == 0) {
        line += sizeof(prefix) - 1;
        len -= sizeof(prefix) - 1;
    }
    if (len == 0 || len > CONFIG_SERVICE_KEY_MAX)
        return ff_err_set(err, FF_EINVAL, "key file \"%s\": the key must hold 1..%d characters",
                          path, CONFIG_SERVICE_KEY_MAX);
    for (size_t i = 0; i < len; i++) {
        if (line[i] <= ' ' || line[i] > '~')
            return ff_err_set(err, FF_EINVAL,
                              "key file \"%s\": the key holds a space or a "
                              "control character (expected FF_GITD_KEY=ffg_... as "
                              "`ff-builder service-key gitd` prints it)",
                              path);
    }
    *key = line;
    *key_len = len;
    return 0;
}

static int read_key_file(int fd, const char *path, char *buf, size_t *len, struct ff_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return ff_err_set(err, FF_EIO, "key file \"%s\": %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ff_err_set(err, FF_EINVAL, "key file \"%s\" is not a regular file", path);
    if ((st.st_mode & S_IROTH) != 0)
        return ff_err_set(err, FF_EDENIED,
                          "key file \"%s\" is readable by every user (mode "
                          "%03o): make it 0600 or 0640",
                          path, (unsigned)(st.st_mode & 0777));
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, CONFIG_KEY_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ff_err_set(err, FF_EIO, "key file \"%s\": %s", path, strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > CONFIG_KEY_FILE_MAX)
            return ff_err_set(err, FF_ETOOBIG, "key file \"%s\" is longer than %d bytes", path,
                              CONFIG_KEY_FILE_MAX);
    }
    buf[n] = '\0';
    *len = n;
    return 0;
}

int config_service_key_read(const char *path, char **out, struct ff_err *err)
{
    *out = NULL;
    char *buf = malloc(CONFIG_KEY_FILE_MAX + 2);
    if (buf == NULL)
        return ff_err_set(err, FF_ENOMEM, "key file \"%s\": out of memory", path);
    size_t len = 0;
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        rc = ff_err_set(err, FF_EIO, "key file \"%s\": %s", path, strerror(errno));
    else
        rc = read_key_file(fd, path, buf, &len, err);
    if (fd >= 0)
        (void)close(fd);
    const char *key = NULL;
    size_t key_len = 0;
    for (size_t pos = 0; rc == 0 && pos < len;) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0 || line[0] == '#')
            continue;
        if (key != NULL) {
            rc = ff_err_set(err, FF_EINVAL, "key file \"%s\" holds more than one key", path);
            break;
        }
        rc = key_of_line(line, n, path, &key, &key_len, err);
    }
    if (rc == 0 && key == NULL)
        rc = ff_err_set(err, FF_EINVAL,
                        "key file \"%s\" holds no key (expected FF_GITD_KEY="
                        "ffg_... as `ff-builder service-key gitd` prints it)",
                        path);
    if (rc == 0) {
        *out = ff_strndup(key, key_len);
        if (*out == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "key file \"%s\": out of memory", path);
    }
    ff_secret_wipe(buf, CONFIG_KEY_FILE_MAX + 2);
    free(buf);
    return rc;
}
