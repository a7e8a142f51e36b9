/* Who holds a presented secret. Each kind of credential carries its own
 * type prefix (builder.h), so a secret is looked up in exactly one table
 * and a device key can never be mistaken for a user token. */
#include "builder.h"

#include <stdio.h>
#include <string.h>

const char *identity_kind_name(enum identity_kind kind)
{
    switch (kind) {
    case ID_USER: return "user";
    case ID_DEVICE: return "device";
    case ID_WORKER: return "worker";
    case ID_SERVICE: return "service";
    }
    return "unknown";
}

/* Whether secret starts with "<prefix>_". */
static bool has_prefix(const char *secret, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(secret, prefix, n) == 0 && secret[n] == '_';
}

static int user_identity(struct builder *b, const char *hash, int64_t now,
                         struct identity *out, struct ff_err *err)
{
    int rc = db_token_lookup(b->db, hash, now, &out->user, &out->token_id, err);
    if (rc != 0)
        return rc;
    out->kind = ID_USER;
    memcpy(out->name, out->user.name, sizeof(out->user.name));
    return 0;
}

static int device_identity(struct builder *b, const char *hash, int64_t now,
                           struct identity *out, struct ff_err *err)
{
    struct device d;
    int rc = db_device_by_key(b->db, hash, now, &d, err);
    if (rc != 0)
        return rc;
    out->kind = ID_DEVICE;
    out->device_id = d.id;
    out->app_id = d.app_id;
    memcpy(out->device_uuid, d.uuid, sizeof(d.uuid));
    (void)snprintf(out->name, sizeof(out->name), "d_%s", d.uuid);
    return 0;
}

static int worker_identity(struct builder *b, const char *hash, int64_t now,
                           struct identity *out, struct ff_err *err)
{
    int rc = db_worker_by_key(b->db, hash, now, &out->worker_id, err);
    if (rc != 0)
        return rc;
    out->kind = ID_WORKER;
    (void)snprintf(out->name, sizeof(out->name), "w_%lld", (long long)out->worker_id);
    return 0;
}

static int service_identity(struct builder *b, const char *hash, struct identity *out,
                            struct ff_err *err)
{
    char service[IDENTITY_NAME_MAX + 1];
    int rc = db_service_by_key(b->db, hash, service, err);
    if (rc != 0)
        return rc;
    out->kind = ID_SERVICE;
    (void)snprintf(out->name, sizeof(out->name), "svc_%.40s", service);
    return 0;
}

int identity_from_secret(struct builder *b, const char *secret, struct identity *out,
                         struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    char hash[FF_SECRET_HASH_HEX_SIZE];
    ff_secret_token_hash(secret, hash);
    if (hash[0] == '\0')
        return ff_err_set(err, FF_ENOMEM, "out of memory hashing a secret");
    int64_t now = (int64_t)time(NULL);
    if (has_prefix(secret, USER_TOKEN_PREFIX))
        return user_identity(b, hash, now, out, err);
    if (has_prefix(secret, DEVICE_KEY_PREFIX))
        return device_identity(b, hash, now, out, err);
    if (has_prefix(secret, WORKER_KEY_PREFIX))
        return worker_identity(b, hash, now, out, err);
    if (has_prefix(secret, SERVICE_KEY_PREFIX))
        return service_identity(b, hash, out, err);
    return ff_err_set(err, FF_EAUTH, "unknown or invalid credentials");
}
