/* ff-builder's configuration: one INI file, every key declared here with
 * its default and range. */
#include "builder.h"

#include "ff_daemon.h"

#include <string.h>

static const struct ff_conf_key builder_schema[] = {
    {"server", "listen", FF_CONF_STRING, "127.0.0.1", 0, 0},
    {"server", "port", FF_CONF_INT, "8443", 1, 65535},
    {"server", "cert", FF_CONF_STRING, NULL, 0, 0},
    {"server", "key", FF_CONF_STRING, NULL, 0, 0},
    {"server", "user", FF_CONF_STRING, NULL, 0, 0},
    {"server", "max_connections", FF_CONF_INT, "256", 1, 65536},
    {"server", "max_per_ip", FF_CONF_INT, "64", 1, 65536},
    {"server", "timeout", FF_CONF_INT, "60", 1, 3600},
    {"server", "shutdown_grace", FF_CONF_INT, "10", 0, 3600},
    {"storage", "db", FF_CONF_STRING, NULL, 0, 0},
    {"tokens", "key", FF_CONF_STRING, NULL, 0, 0},
    {"tokens", "issuer", FF_CONF_STRING, "ff-builder", 0, 0},
    {"tokens", "service", FF_CONF_STRING, "ff-registry", 0, 0},
    {"tokens", "ttl", FF_CONF_INT, "300", 1, REGISTRY_TOKEN_TTL_MAX},
    {"tokens", "session_ttl", FF_CONF_INT, "43200", SESSION_TTL_MIN, SESSION_TTL_MAX},
    {"limits", "identity_rate", FF_CONF_INT, "20", 1, 1000000},
    {"limits", "identity_burst", FF_CONF_INT, "200", 1, 1000000},
    {"limits", "ip_rate", FF_CONF_INT, "50", 1, 1000000},
    {"limits", "ip_burst", FF_CONF_INT, "500", 1, 1000000},
    {"limits", "tracked_keys", FF_CONF_INT, "10000", 16, 10000000},
    {"log", "level", FF_CONF_STRING, "info", 0, 0},
};

/* Checks what the schema cannot express and hands c over to out. */
static int config_check(struct ff_conf *c, const char *path, struct builder_config *out,
                        struct ff_err *err)
{
    int rc = ff_conf_require(c, path, "server", "cert", err);
    if (rc == 0)
        rc = ff_conf_require(c, path, "server", "key", err);
    if (rc == 0)
        rc = ff_conf_require(c, path, "storage", "db", err);
    if (rc == 0)
        rc = ff_conf_require(c, path, "tokens", "key", err);
    if (rc == 0 && ff_conf_string(c, "tokens", "service")[0] == '\0')
        rc = ff_err_set(err, FF_EINVAL, "config \"%s\": [tokens] service must not be empty",
                        path);
    if (rc == 0 && ff_conf_string(c, "tokens", "issuer")[0] == '\0')
        rc = ff_err_set(err, FF_EINVAL, "config \"%s\": [tokens] issuer must not be empty",
                        path);
    enum ff_log_level level = FF_LOG_INFO;
    if (rc == 0)
        rc = ff_daemon_log_level(c, path, &level, err);
    if (rc != 0) {
        ff_conf_free(c);
        return rc;
    }
    out->conf = c;
    out->log_level = level;
    return 0;
}

int config_load(const char *path, struct builder_config *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    if (path == NULL)
        return ff_err_set(err, FF_EINVAL, "a configuration file is required (-f FILE)");
    struct ff_conf *c = NULL;
    int rc = ff_conf_load(path, builder_schema,
                          sizeof(builder_schema) / sizeof(builder_schema[0]), &c, err);
    if (rc != 0)
        return rc;
    return config_check(c, path, out, err);
}

int config_load_string(const char *text, const char *name, struct builder_config *out,
                       struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    struct ff_conf *c = NULL;
    int rc = ff_conf_load_string(text, name, builder_schema,
                                 sizeof(builder_schema) / sizeof(builder_schema[0]), &c, err);
    if (rc != 0)
        return rc;
    return config_check(c, name, out, err);
}

void config_release(struct builder_config *cfg)
{
    ff_conf_free(cfg->conf);
    cfg->conf = NULL;
}
