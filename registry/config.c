/* ff-registry's configuration: one INI file, every key declared here with
 * its default and range. */
#include "registry.h"

#include "ff_daemon.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

static const struct ff_conf_key registry_schema[] = {
    {"server", "listen", FF_CONF_STRING, "127.0.0.1", 0, 0},
    {"server", "port", FF_CONF_INT, "5443", 1, 65535},
    {"server", "cert", FF_CONF_STRING, NULL, 0, 0},
    {"server", "key", FF_CONF_STRING, NULL, 0, 0},
    {"server", "user", FF_CONF_STRING, NULL, 0, 0},
    {"server", "max_connections", FF_CONF_INT, "256", 1, 65536},
    {"server", "max_per_ip", FF_CONF_INT, "64", 1, 65536},
    {"server", "timeout", FF_CONF_INT, "60", 1, 3600},
    {"server", "shutdown_grace", FF_CONF_INT, "30", 0, 3600},
    {"storage", "root", FF_CONF_STRING, NULL, 0, 0},
    {"storage", "max_blob_size", FF_CONF_SIZE, "32G", 1, 1LL << 50},
    {"auth", "realm", FF_CONF_STRING, "https://127.0.0.1:8443/v2/token", 0, 0},
    {"auth", "service", FF_CONF_STRING, "ff-registry", 0, 0},
    {"auth", "issuer", FF_CONF_STRING, "ff-builder", 0, 0},
    {"auth", "public_key", FF_CONF_LIST, NULL, 0, 0},
    {"auth", "leeway", FF_CONF_INT, "30", 0, 60},
    {"limits", "subject_rate", FF_CONF_INT, "200", 1, 1000000},
    {"limits", "subject_burst", FF_CONF_INT, "2000", 1, 1000000},
    {"limits", "ip_rate", FF_CONF_INT, "400", 1, 1000000},
    {"limits", "ip_burst", FF_CONF_INT, "4000", 1, 1000000},
    {"limits", "tracked_keys", FF_CONF_INT, "10000", 16, 10000000},
    {"tags", "immutable", FF_CONF_LIST, NULL, 0, 0},
    {"gc", "interval", FF_CONF_INT, "0", 0, 7LL * 86400},
    {"gc", "grace", FF_CONF_INT, "3600", 0, 30LL * 86400},
    {"gc", "upload_expiry", FF_CONF_INT, "86400", 60, 30LL * 86400},
    {"log", "level", FF_CONF_STRING, "info", 0, 0},
};

int config_load(const char *path, struct registry_config *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    if (path == NULL)
        return ff_err_set(err, FF_EINVAL, "a configuration file is required (-f FILE)");
    struct ff_conf *c = NULL;
    int rc = ff_conf_load(path, registry_schema,
                          sizeof(registry_schema) / sizeof(registry_schema[0]), &c, err);
    if (rc != 0)
        return rc;
    rc = ff_conf_require(c, path, "server", "cert", err);
    if (rc == 0)
        rc = ff_conf_require(c, path, "server", "key", err);
    if (rc == 0)
        rc = ff_conf_require(c, path, "storage", "root", err);
    const char *const *keys = NULL;
    if (rc == 0 && ff_conf_list(c, "auth", "public_key", &keys) == 0)
        rc = ff_err_set(err, FF_EINVAL, "config \"%s\": [auth] public_key: at least one "
                        "token public key is required", path);
    enum ff_log_level level;
    if (rc == 0)
        rc = ff_daemon_log_level(c, path, &level, err);
    const char *const *pats = NULL;
    size_t n_pats = ff_conf_list(c, "tags", "immutable", &pats);
    for (size_t i = 0; rc == 0 && i < n_pats; i++) {
        if (pats[i][0] == '\0' || strlen(pats[i]) > TAG_LEN_MAX)
            rc = ff_err_set(err, FF_EINVAL, "config \"%s\": [tags] immutable: pattern \"%s\" "
                            "must hold 1..%d characters", path, pats[i], TAG_LEN_MAX);
    }
    if (rc != 0) {
        ff_conf_free(c);
        return rc;
    }
    out->conf = c;
    out->log_level = level;
    return 0;
}

void config_release(struct registry_config *cfg)
{
    ff_conf_free(cfg->conf);
    cfg->conf = NULL;
}

bool config_tag_immutable(const struct registry_config *cfg, const char *tag)
{
    const char *const *pats = NULL;
    size_t n = ff_conf_list(cfg->conf, "tags", "immutable", &pats);
    for (size_t i = 0; i < n; i++) {
        if (fnmatch(pats[i], tag, 0) == 0)
            return true;
    }
    return false;
}
