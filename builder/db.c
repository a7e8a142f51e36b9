/* The builder's SQLite database: users, their tokens (hashes only), apps
 * with members, and the append-only audit log. */
#include "builder.h"

#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

struct db {
    struct ff_db *db;
};

static const struct ff_db_migration db_migrations[] = {
    {1, "CREATE TABLE users("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  role TEXT NOT NULL CHECK (role IN ('admin', 'user')),"
        "  password TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL);"
        "CREATE TABLE api_tokens("
        "  id INTEGER PRIMARY KEY,"
        "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  hash TEXT NOT NULL UNIQUE,"
        "  kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),"
        "  created_at INTEGER NOT NULL,"
        "  expires_at INTEGER,"
        "  revoked_at INTEGER,"
        "  last_used_at INTEGER);"
        "CREATE INDEX api_tokens_user ON api_tokens(user_id, id);"
        "CREATE TABLE apps("
        "  id INTEGER PRIMARY KEY,"
        "  owner_id INTEGER NOT NULL REFERENCES users(id),"
        "  name TEXT NOT NULL,"
        "  archs TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  UNIQUE (owner_id, name));"
        "CREATE TABLE app_members("
        "  app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
        "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
        "  role TEXT NOT NULL CHECK (role IN ('developer', 'viewer')),"
        "  PRIMARY KEY (app_id, user_id)) WITHOUT ROWID;"
        "CREATE INDEX app_members_user ON app_members(user_id);"
        "CREATE TABLE audit("
        "  id INTEGER PRIMARY KEY,"
        "  at INTEGER NOT NULL,"
        "  actor TEXT,"
        "  ip TEXT,"
        "  event TEXT NOT NULL,"
        "  detail TEXT);"
        "CREATE INDEX audit_actor_event ON audit(actor, event, at);"
        /* The audit log must survive a compromised request handler: no
         * statement may change or remove a row once written. */
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
        "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
        "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"},
    {2, "ALTER TABLE users ADD COLUMN totp_secret TEXT;"
        "ALTER TABLE users ADD COLUMN totp_enabled_at INTEGER;"
        /* The last accepted TOTP time step: a code is good once. */
        "ALTER TABLE users ADD COLUMN totp_last_step INTEGER;"
        "CREATE TABLE recovery_codes("
        "  id INTEGER PRIMARY KEY,"
        "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
        "  hash TEXT NOT NULL UNIQUE,"
        "  used_at INTEGER);"
        "CREATE INDEX recovery_codes_user ON recovery_codes(user_id);"
        "CREATE TABLE ssh_keys("
        "  id INTEGER PRIMARY KEY,"
        "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  type TEXT NOT NULL,"
        "  fingerprint TEXT NOT NULL UNIQUE,"
        "  public_key TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL);"
        "CREATE INDEX ssh_keys_user ON ssh_keys(user_id, id);"
        "ALTER TABLE apps ADD COLUMN deploy_branch TEXT NOT NULL DEFAULT 'main';"
        "ALTER TABLE apps ADD COLUMN target_release TEXT;"
        "CREATE TABLE provisioning_keys("
        "  id INTEGER PRIMARY KEY,"
        "  app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  hash TEXT NOT NULL UNIQUE,"
        "  created_by TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  expires_at INTEGER,"
        "  max_uses INTEGER,"
        "  uses INTEGER NOT NULL DEFAULT 0,"
        "  revoked_at INTEGER);"
        "CREATE INDEX provisioning_keys_app ON provisioning_keys(app_id, id);"
        "CREATE TABLE devices("
        "  id INTEGER PRIMARY KEY,"
        "  uuid TEXT NOT NULL UNIQUE,"
        "  app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  device_type TEXT NOT NULL,"
        "  arch TEXT NOT NULL,"
        "  key_hash TEXT NOT NULL UNIQUE,"
        "  status TEXT,"
        "  provisioning_key_id INTEGER,"
        "  created_at INTEGER NOT NULL,"
        "  last_seen_at INTEGER);"
        "CREATE INDEX devices_app ON devices(app_id, id);"
        "CREATE TABLE app_env("
        "  app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (app_id, name)) WITHOUT ROWID;"
        "CREATE TABLE device_env("
        "  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (device_id, name)) WITHOUT ROWID;"
        "CREATE TABLE workers("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL,"
        "  archs TEXT NOT NULL,"
        "  key_hash TEXT NOT NULL UNIQUE,"
        "  created_at INTEGER NOT NULL,"
        "  revoked_at INTEGER,"
        "  last_seen_at INTEGER);"
        "CREATE TABLE worker_join_tokens("
        "  id INTEGER PRIMARY KEY,"
        "  hash TEXT NOT NULL UNIQUE,"
        "  created_by TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  expires_at INTEGER NOT NULL,"
        "  used_at INTEGER,"
        "  worker_id INTEGER REFERENCES workers(id));"
        "CREATE TABLE services("
        "  name TEXT PRIMARY KEY,"
        "  key_hash TEXT NOT NULL UNIQUE,"
        "  created_at INTEGER NOT NULL);"
        /* Jobs appear with build dispatch; the table exists now because a
         * worker's push grant is "the repository of a job it holds". */
        "CREATE TABLE jobs("
        "  id INTEGER PRIMARY KEY,"
        "  app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
        "  arch TEXT NOT NULL,"
        "  commit_id TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),"
        "  worker_id INTEGER REFERENCES workers(id),"
        "  created_at INTEGER NOT NULL);"
        "CREATE INDEX jobs_worker ON jobs(worker_id, state);"},
};

int db_open(const char *path, struct db **out, struct ff_err *err)
{
    struct db *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return ff_err_set(err, FF_ENOMEM, "db: out of memory");
    int rc = ff_db_open(path, db_migrations, sizeof(db_migrations) / sizeof(db_migrations[0]),
                        &d->db, err);
    if (rc != 0) {
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void db_free(struct db *db)
{
    if (db == NULL)
        return;
    ff_db_free(db->db);
    free(db);
}

struct ff_db *db_handle(struct db *db)
{
    return db->db;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

int db_step_done(struct db *db, sqlite3_stmt *st, const char *what, struct ff_err *err)
{
    int rc = ff_db_step(st, err);
    ff_db_finalize(db->db, st);
    if (rc == FF_ECONFLICT)
        return ff_err_set(err, FF_EEXIST, "%s already exists", what);
    return rc < 0 ? rc : 0;
}

int db_admin_exists(struct db *db, bool *out, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT 1 FROM users WHERE role = 'admin' LIMIT 1", &st,
                           err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    ff_db_finalize(db->db, st);
    if (rc < 0)
        return rc;
    *out = rc == 1;
    return 0;
}

int db_user_create(struct db *db, const char *name, const char *password_hash, enum role role,
                   int64_t *out_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "INSERT INTO users(name, role, password, created_at) "
                           "VALUES (?, ?, ?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, role == ROLE_ADMIN ? "admin" : "user", err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, password_hash, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, now_s(), err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    rc = db_step_done(db, st, "user", err);
    if (rc == 0 && out_id != NULL)
        *out_id = ff_db_last_insert_id(db->db);
    return rc;
}

/* Fills u from columns id, name, role starting at col. */
static void user_from_row(sqlite3_stmt *st, int col, struct user *u)
{
    u->id = sqlite3_column_int64(st, col);
    const char *name = (const char *)sqlite3_column_text(st, col + 1);
    ff_strlcpy(u->name, name != NULL ? name : "", sizeof(u->name));
    const char *role = (const char *)sqlite3_column_text(st, col + 2);
    u->role = role != NULL && strcmp(role, "admin") == 0 ? ROLE_ADMIN : ROLE_USER;
}

int db_user_by_name(struct db *db, const char *name, struct user *out, char **out_hash,
                    struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT id, name, role, password FROM users WHERE name = ?",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, name, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "user \"%s\" not found", name);
    if (rc == 1) {
        rc = 0;
        user_from_row(st, 0, out);
        if (out_hash != NULL) {
            const char *h = (const char *)sqlite3_column_text(st, 3);
            *out_hash = strdup(h != NULL ? h : "");
            if (*out_hash == NULL)
                rc = ff_err_set(err, FF_ENOMEM, "db: out of memory");
        }
    }
    ff_db_finalize(db->db, st);
    return rc;
}

int db_token_create(struct db *db, int64_t user_id, const char *name, const char *hash_hex,
                    enum token_kind kind, int64_t expires_at, int64_t *out_id,
                    struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "INSERT INTO api_tokens(user_id, name, hash, kind, "
                           "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, hash_hex, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 4, kind == TOKEN_API ? "api" : "session", err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 5, now_s(), err);
    if (rc == 0)
        rc = expires_at > 0 ? ff_db_bind_int64(st, 6, expires_at, err)
                            : ff_db_bind_null(st, 6, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    rc = db_step_done(db, st, "token", err);
    if (rc == 0 && out_id != NULL)
        *out_id = ff_db_last_insert_id(db->db);
    return rc;
}

int db_token_lookup(struct db *db, const char *hash_hex, int64_t now, struct user *out,
                    int64_t *out_token_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT u.id, u.name, u.role, t.id FROM api_tokens t "
                           "JOIN users u ON u.id = t.user_id WHERE t.hash = ? AND "
                           "t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, hash_hex, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, now, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_EAUTH, "token unknown, expired or revoked");
    if (rc == 1) {
        rc = 0;
        user_from_row(st, 0, out);
        *out_token_id = sqlite3_column_int64(st, 3);
    }
    ff_db_finalize(db->db, st);
    if (rc != 0)
        return rc;
    rc = ff_db_prepare(db->db, "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, *out_token_id, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    return db_step_done(db, st, "token", err);
}

json_t *db_json_int(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    return json_integer((json_int_t)sqlite3_column_int64(st, col));
}

int db_token_list(struct db *db, int64_t user_id, int64_t after, int limit, json_t **out,
                  int64_t *out_next, struct ff_err *err)
{
    json_t *items = json_array();
    if (items == NULL)
        return ff_err_set(err, FF_ENOMEM, "db: out of memory");
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT id, name, kind, created_at, expires_at, revoked_at, "
                           "last_used_at FROM api_tokens WHERE user_id = ? AND id > ? "
                           "ORDER BY id LIMIT ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, after, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, (int64_t)limit + 1, err);
    int64_t next = 0, last = 0;
    int n = 0;
    while (rc == 0 && (rc = ff_db_step(st, err)) == 1) {
        rc = 0;
        if (n == limit) {
            next = last;
            break;
        }
        last = sqlite3_column_int64(st, 0);
        json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:o,s:o,s:o}", "id", (json_int_t)last,
                              "name", (const char *)sqlite3_column_text(st, 1), "kind",
                              (const char *)sqlite3_column_text(st, 2), "created_at",
                              (json_int_t)sqlite3_column_int64(st, 3), "expires_at",
                              db_json_int(st, 4), "revoked_at", db_json_int(st, 5),
                              "last_used_at", db_json_int(st, 6));
        if (o == NULL || json_array_append_new(items, o) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "db: out of memory");
        n++;
    }
    ff_db_finalize(db->db, st);
    if (rc < 0) {
        json_decref(items);
        return rc;
    }
    *out = items;
    *out_next = next;
    return 0;
}

int db_token_revoke(struct db *db, int64_t user_id, int64_t id, int64_t now,
                    struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND "
                           "user_id = ? AND revoked_at IS NULL", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, user_id, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    rc = db_step_done(db, st, "token", err);
    if (rc == 0 && ff_db_changes(db->db) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "token %lld not found or already revoked",
                        (long long)id);
    return rc;
}

int db_audit(struct db *db, const char *actor, const char *ip, const char *event,
             const char *detail, struct ff_err *err)
{
    char cut[AUDIT_DETAIL_MAX + 1];
    if (detail != NULL) {
        ff_strlcpy(cut, detail, sizeof(cut));
        detail = cut;
    }
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "INSERT INTO audit(at, actor, ip, event, detail) "
                           "VALUES (?, ?, ?, ?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now_s(), err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, actor, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, ip, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 4, event, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 5, detail, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    return db_step_done(db, st, "audit row", err);
}

/* Runs a one-integer query on (actor, event, since). */
static int audit_int(struct db *db, const char *sql, const char *actor, const char *event,
                     int64_t since, int64_t *out, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, sql, &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, actor, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, event, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, since, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == 0) {
        *out = 0;
    }
    ff_db_finalize(db->db, st);
    return rc;
}

int db_audit_count(struct db *db, const char *actor, const char *event, int64_t since,
                   int64_t *out, struct ff_err *err)
{
    return audit_int(db, "SELECT count(*) FROM audit WHERE actor = ? AND event = ? AND at >= ?",
                     actor, event, since, out, err);
}

/* A nullable text column as JSON: null or the string. */
json_t *db_json_text(sqlite3_stmt *st, int col)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    return v == NULL ? json_null() : json_string(v);
}

int db_audit_list(struct db *db, int64_t after, int limit, json_t **out, int64_t *out_next,
                  struct ff_err *err)
{
    json_t *items = json_array();
    if (items == NULL)
        return ff_err_set(err, FF_ENOMEM, "db: out of memory");
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT id, at, actor, ip, event, detail FROM audit "
                           "WHERE id > ? ORDER BY id LIMIT ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, after, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, (int64_t)limit + 1, err);
    int64_t next = 0, last = 0;
    int n = 0;
    while (rc == 0 && (rc = ff_db_step(st, err)) == 1) {
        rc = 0;
        if (n == limit) {
            next = last;
            break;
        }
        last = sqlite3_column_int64(st, 0);
        json_t *o = json_pack("{s:I,s:I,s:o,s:o,s:s,s:o}", "id", (json_int_t)last, "at",
                              (json_int_t)sqlite3_column_int64(st, 1), "actor",
                              db_json_text(st, 2), "ip", db_json_text(st, 3), "event",
                              (const char *)sqlite3_column_text(st, 4), "detail",
                              db_json_text(st, 5));
        if (o == NULL || json_array_append_new(items, o) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "db: out of memory");
        n++;
    }
    ff_db_finalize(db->db, st);
    if (rc < 0) {
        json_decref(items);
        return rc;
    }
    *out = items;
    *out_next = next;
    return 0;
}

int db_app_create(struct db *db, int64_t owner_id, const char *name, const char *archs_json,
                  const char *deploy_branch, int64_t *out_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "INSERT INTO apps(owner_id, name, archs, created_at, "
                           "deploy_branch) VALUES (?, ?, ?, ?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, owner_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, archs_json, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, now_s(), err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 5, deploy_branch, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    rc = db_step_done(db, st, "app", err);
    if (rc == 0 && out_id != NULL)
        *out_id = ff_db_last_insert_id(db->db);
    return rc;
}

/* The columns app_json reads, in its order, from "apps a JOIN users u". */
#define APP_COLUMNS "a.id, u.name, a.name, a.archs, a.created_at, a.deploy_branch, " \
                    "a.target_release, a.owner_id"

/* The JSON an app is shown as, from APP_COLUMNS. */
static json_t *app_json(sqlite3_stmt *st)
{
    const char *archs = (const char *)sqlite3_column_text(st, 3);
    json_t *a = json_loads(archs != NULL ? archs : "[]", 0, NULL);
    if (a == NULL)
        return NULL;
    const char *release = (const char *)sqlite3_column_text(st, 6);
    return json_pack("{s:I,s:s,s:s,s:o,s:I,s:s,s:o}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "owner",
                     (const char *)sqlite3_column_text(st, 1), "name",
                     (const char *)sqlite3_column_text(st, 2), "archs", a, "created_at",
                     (json_int_t)sqlite3_column_int64(st, 4), "deploy_branch",
                     (const char *)sqlite3_column_text(st, 5), "target_release",
                     release != NULL ? json_string(release) : json_null());
}

/* Fills out (and *out_json when not NULL) from a row of APP_COLUMNS. */
static int app_from_row(sqlite3_stmt *st, struct app *out, json_t **out_json,
                        struct ff_err *err)
{
    out->id = sqlite3_column_int64(st, 0);
    out->owner_id = sqlite3_column_int64(st, 7);
    ff_strlcpy(out->owner, (const char *)sqlite3_column_text(st, 1), sizeof(out->owner));
    ff_strlcpy(out->name, (const char *)sqlite3_column_text(st, 2), sizeof(out->name));
    if (out_json != NULL && (*out_json = app_json(st)) == NULL)
        return ff_err_set(err, FF_ENOMEM, "db: out of memory");
    return 0;
}

int db_app_get(struct db *db, const char *owner, const char *name, struct app *out,
               json_t **out_json, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT " APP_COLUMNS " FROM apps a JOIN users u ON "
                           "u.id = a.owner_id WHERE u.name = ? AND a.name = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, owner, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, name, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "app \"%s/%s\" not found", owner, name);
    if (rc == 1)
        rc = app_from_row(st, out, out_json, err);
    ff_db_finalize(db->db, st);
    return rc;
}

int db_app_by_id(struct db *db, int64_t app_id, struct app *out, json_t **out_json,
                 struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT " APP_COLUMNS " FROM apps a JOIN users u ON "
                           "u.id = a.owner_id WHERE a.id = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "app %lld not found", (long long)app_id);
    if (rc == 1)
        rc = app_from_row(st, out, out_json, err);
    ff_db_finalize(db->db, st);
    return rc;
}

int db_page(struct db *db, sqlite3_stmt *st, int limit, db_row_fn row, json_t **out,
            int64_t *out_next, struct ff_err *err)
{
    json_t *items = json_array();
    int rc = items != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "db: out of memory");
    int64_t next = 0, last = 0;
    int n = 0;
    while (rc == 0 && (rc = ff_db_step(st, err)) == 1) {
        rc = 0;
        if (n == limit) {
            next = last;
            break;
        }
        last = sqlite3_column_int64(st, 0);
        json_t *o = row(st);
        if (o == NULL || json_array_append_new(items, o) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "db: out of memory");
        n++;
    }
    ff_db_finalize(db->db, st);
    if (rc < 0) {
        json_decref(items);
        return rc;
    }
    *out = items;
    *out_next = next;
    return 0;
}

int db_app_list(struct db *db, int64_t user_id, int64_t after, int limit, json_t **out,
                int64_t *out_next, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT " APP_COLUMNS " FROM apps a JOIN users u ON "
                           "u.id = a.owner_id WHERE a.id > ?1 AND "
                           "(a.owner_id = ?2 OR EXISTS (SELECT 1 "
                           "FROM app_members m WHERE m.app_id = a.id AND m.user_id = ?2)) "
                           "ORDER BY a.id LIMIT ?3", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, after, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, (int64_t)limit + 1, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    return db_page(db, st, limit, app_json, out, out_next, err);
}

int db_app_delete(struct db *db, int64_t app_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "DELETE FROM apps WHERE id = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    rc = db_step_done(db, st, "app", err);
    if (rc == 0 && ff_db_changes(db->db) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "app %lld not found", (long long)app_id);
    return rc;
}

int db_member_set(struct db *db, int64_t app_id, int64_t user_id, enum member_role role,
                  struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "INSERT INTO app_members(app_id, user_id, role) "
                           "VALUES (?, ?, ?) ON CONFLICT (app_id, user_id) DO UPDATE "
                           "SET role = excluded.role", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, role == MEMBER_DEVELOPER ? "developer" : "viewer", err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    return db_step_done(db, st, "member", err);
}

int db_app_access(struct db *db, int64_t app_id, int64_t user_id, enum app_access *out,
                  struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT CASE WHEN a.owner_id = ?2 THEN 'owner' ELSE "
                           "(SELECT m.role FROM app_members m WHERE m.app_id = a.id AND "
                           "m.user_id = ?2) END FROM apps a WHERE a.id = ?1", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, user_id, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    *out = APP_NONE;
    if (rc == 1) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (r != NULL && strcmp(r, "owner") == 0)
            *out = APP_OWNER;
        else if (r != NULL && strcmp(r, "developer") == 0)
            *out = APP_DEVELOPER;
        else if (r != NULL && strcmp(r, "viewer") == 0)
            *out = APP_VIEWER;
    }
    ff_db_finalize(db->db, st);
    return rc < 0 ? rc : 0;
}

static json_t *member_json(sqlite3_stmt *st)
{
    return json_pack("{s:s,s:s}", "user", (const char *)sqlite3_column_text(st, 1), "role",
                     (const char *)sqlite3_column_text(st, 2));
}

int db_member_list(struct db *db, int64_t app_id, int64_t after, int limit, json_t **out,
                   int64_t *out_next, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "SELECT u.id, u.name, m.role FROM app_members m JOIN users u "
                           "ON u.id = m.user_id WHERE m.app_id = ? AND u.id > ? ORDER BY u.id "
                           "LIMIT ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, after, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, (int64_t)limit + 1, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    return db_page(db, st, limit, member_json, out, out_next, err);
}

int db_member_delete(struct db *db, int64_t app_id, int64_t user_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(db->db, "DELETE FROM app_members WHERE app_id = ? AND user_id = ?",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, user_id, err);
    if (rc != 0) {
        ff_db_finalize(db->db, st);
        return rc;
    }
    rc = db_step_done(db, st, "member", err);
    if (rc == 0 && ff_db_changes(db->db) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "no such member of the app");
    return rc;
}
