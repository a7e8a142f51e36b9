/* ff-builder's private header: the declarations every file of the daemon
 * shares, grouped by the file that defines them. */
#ifndef BUILDER_H
#define BUILDER_H

#include "ff_conf.h"
#include "ff_db.h"
#include "ff_err.h"
#include "ff_http_server.h"
#include "ff_jwt.h"
#include "ff_log.h"
#include "ff_ratelimit.h"
#include "ff_scope.h"
#include "ff_secret.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Longest user name: short enough for a terminal column and a JWT "sub",
 * long enough for "firstname.lastname" style names. */
#define USER_NAME_MAX 64
/* Longest app name, from the grammar [a-z0-9][a-z0-9-]{0,62}: one DNS
 * label, so "<owner>/<app>" is always a valid repository name. */
#define APP_NAME_MAX 63
/* Longest API token name: a label for people, not a place for data. */
#define TOKEN_NAME_MAX 64
/* Most architectures per app: amd64, arm64 and armv7 are all we build. */
#define APP_ARCHS_MAX 3
/* Largest JSON body of any /v1 route: every body is a handful of short
 * fields; a password (FF_SECRET_PASSWORD_MAX) is the longest of them. */
#define BODY_MAX 4096
/* Session lifetime bounds (seconds): at least a minute, at most a week, so
 * a stolen session token cannot outlive a working week. */
#define SESSION_TTL_MIN 60
#define SESSION_TTL_MAX (7LL * 86400)
/* Longest API token lifetime a client may ask for: one year; tokens
 * without expiry are asked for by leaving expires_in out. */
#define API_TOKEN_TTL_MAX (365LL * 86400)
/* Registry tokens live at most five minutes (DESIGN.md §2), so a revoked
 * user or key loses registry access within that time. */
#define REGISTRY_TOKEN_TTL_MAX 300
/* Login lock-out: this many failures for one user within the window lock
 * the user out for LOGIN_LOCK_SECONDS (issue 4). */
#define LOGIN_FAILURES_MAX 10
#define LOGIN_WINDOW_SECONDS (2LL * 3600)
#define LOGIN_LOCK_SECONDS 3600
/* Page size of list endpoints: default and the most a client may ask. */
#define PAGE_DEFAULT 50
#define PAGE_MAX 200
/* Longest audit detail stored: a denied scope or a token name fits. */
#define AUDIT_DETAIL_MAX 512

enum role {
    ROLE_USER = 0,
    ROLE_ADMIN = 1
};

enum member_role {
    MEMBER_VIEWER = 0,
    MEMBER_DEVELOPER = 1
};

/* ---- config.c: the daemon's configuration -------------------------------- */

struct builder_config {
    struct ff_conf *conf; /* every value, with defaults */
    enum ff_log_level log_level;
};

/* Reads and checks the INI file at path ([server] cert and key, [storage]
 * db and [tokens] key are required; [log] level must be a level name).
 * On success out->conf belongs to out (config_release). Errors: as
 * ff_conf_load, and FF_EINVAL for a missing required key or a bad level. */
int config_load(const char *path, struct builder_config *out, struct ff_err *err);

/* The same from text in memory (tests); name appears in messages. */
int config_load_string(const char *text, const char *name, struct builder_config *out,
                       struct ff_err *err);

/* NULL-safe on a released or zeroed cfg. */
void config_release(struct builder_config *cfg);

/* ---- decode.c: JSON request bodies into typed structs --------------------
 *
 * Each decoder parses len bytes strictly (ff_json_parse_object with
 * BODY_MAX, unknown keys refused, types and lengths checked) and fills out
 * with pointers borrowed from *root, which the caller frees with
 * json_decref even on error (it is NULL then). Errors: FF_EINVAL (with the
 * field in the message), FF_ETOOBIG (body longer than BODY_MAX),
 * FF_ENOMEM. */

struct login_body {
    const char *username;
    const char *password;
};
int decode_login(const char *data, size_t len, json_t **root, struct login_body *out,
                 struct ff_err *err);

struct user_body {
    const char *name;     /* passes user_name_check */
    const char *password; /* FF_SECRET_PASSWORD_MIN..MAX bytes */
    enum role role;       /* "admin" or "user"; "user" when absent */
};
int decode_user(const char *data, size_t len, json_t **root, struct user_body *out,
                struct ff_err *err);

struct token_body {
    const char *name;   /* 1..TOKEN_NAME_MAX printable characters */
    int64_t expires_in; /* seconds, 60..API_TOKEN_TTL_MAX; 0: never */
};
int decode_token(const char *data, size_t len, json_t **root, struct token_body *out,
                 struct ff_err *err);

struct app_body {
    const char *name; /* passes app_name_check */
    const char *archs[APP_ARCHS_MAX];
    size_t n_archs; /* >= 1, distinct, each amd64, arm64 or armv7 */
};
int decode_app(const char *data, size_t len, json_t **root, struct app_body *out,
               struct ff_err *err);

struct member_body {
    enum member_role role;
};
int decode_member(const char *data, size_t len, json_t **root, struct member_body *out,
                  struct ff_err *err);

/* User names: [a-z0-9][a-z0-9._-]{0,63}, so a name is also a repository
 * path component prefix and safe in logs and JWT claims. Returns 0 or
 * FF_EINVAL. */
int user_name_check(const char *name, struct ff_err *err);

/* App names: [a-z0-9][a-z0-9-]{0,62}. Returns 0 or FF_EINVAL. */
int app_name_check(const char *name, struct ff_err *err);

/* ---- db.c: users, tokens, apps and the audit log in SQLite --------------- */

struct db;

struct user {
    int64_t id;
    char name[USER_NAME_MAX + 1];
    enum role role;
};

/* Opens (creating and migrating) the database at path. *out belongs to the
 * caller (db_free). Errors: as ff_db_open. */
int db_open(const char *path, struct db **out, struct ff_err *err);
void db_free(struct db *db);

/* The SQLite handle under db (borrowed), for tests and ad-hoc queries. */
struct ff_db *db_handle(struct db *db);

/* Whether any admin exists. Errors: FF_EDB, FF_EBUSY. */
int db_admin_exists(struct db *db, bool *out, struct ff_err *err);

/* Adds a user with an already hashed password. Errors: FF_EEXIST (name
 * taken), FF_EDB, FF_EBUSY. */
int db_user_create(struct db *db, const char *name, const char *password_hash, enum role role,
                   int64_t *out_id, struct ff_err *err);

/* Looks a user up by name; *out_hash (may be NULL) is the stored password
 * hash, malloc'd, the caller's (ff_secret_free). Errors: FF_ENOTFOUND,
 * FF_EDB, FF_ENOMEM. */
int db_user_by_name(struct db *db, const char *name, struct user *out, char **out_hash,
                    struct ff_err *err);

enum token_kind {
    TOKEN_SESSION = 0,
    TOKEN_API = 1
};

/* Stores a token by its hash; expires_at 0 means never. Errors:
 * FF_EEXIST, FF_EDB, FF_EBUSY. */
int db_token_create(struct db *db, int64_t user_id, const char *name, const char *hash_hex,
                    enum token_kind kind, int64_t expires_at, int64_t *out_id,
                    struct ff_err *err);

/* Finds the live token whose hash is hash_hex (not revoked, not expired at
 * now), fills *out with its user and *out_token_id, and records its use.
 * Errors: FF_EAUTH (unknown, revoked or expired), FF_EDB, FF_EBUSY. */
int db_token_lookup(struct db *db, const char *hash_hex, int64_t now, struct user *out,
                    int64_t *out_token_id, struct ff_err *err);

/* One page of user_id's tokens with id > after (never the hash), as a JSON
 * array; *out_next is the id to pass as after for the next page, or 0 at
 * the end. *out belongs to the caller. Errors: FF_EDB, FF_ENOMEM. */
int db_token_list(struct db *db, int64_t user_id, int64_t after, int limit, json_t **out,
                  int64_t *out_next, struct ff_err *err);

/* Revokes user_id's token id at now. Errors: FF_ENOTFOUND (no such live
 * token of that user), FF_EDB, FF_EBUSY. */
int db_token_revoke(struct db *db, int64_t user_id, int64_t id, int64_t now,
                    struct ff_err *err);

/* Appends an audit row at now; actor and ip may be NULL, detail is cut to
 * AUDIT_DETAIL_MAX. Errors: FF_EDB, FF_EBUSY. */
int db_audit(struct db *db, const char *actor, const char *ip, const char *event,
             const char *detail, struct ff_err *err);

/* Counts audit rows of event for actor at or after since (the login
 * lock-out counts failures this way). Errors: FF_EDB, FF_EBUSY. */
int db_audit_count(struct db *db, const char *actor, const char *event, int64_t since,
                   int64_t *out, struct ff_err *err);

/* One page of audit rows with id > after, oldest first, as a JSON array
 * of {id, at, actor, ip, event, detail}; *out_next as in db_token_list.
 * *out belongs to the caller. Errors: FF_EDB, FF_ENOMEM. */
int db_audit_list(struct db *db, int64_t after, int limit, json_t **out, int64_t *out_next,
                  struct ff_err *err);

/* Creates app owner_id/name with archs (a JSON array text). Errors:
 * FF_EEXIST, FF_EDB, FF_EBUSY. */
int db_app_create(struct db *db, int64_t owner_id, const char *name, const char *archs_json,
                  int64_t *out_id, struct ff_err *err);

struct app {
    int64_t id;
    int64_t owner_id;
    char owner[USER_NAME_MAX + 1];
    char name[APP_NAME_MAX + 1];
};

/* Looks up app owner/name into *out; *out_json (may be NULL) is the app
 * as the API shows it, the caller's (json_decref). Errors: FF_ENOTFOUND,
 * FF_EDB, FF_ENOMEM. */
int db_app_get(struct db *db, const char *owner, const char *name, struct app *out,
               json_t **out_json, struct ff_err *err);

/* One page of the apps user_id owns or is a member of (id > after), as in
 * db_token_list. Errors: FF_EDB, FF_ENOMEM. */
int db_app_list(struct db *db, int64_t user_id, int64_t after, int limit, json_t **out,
                int64_t *out_next, struct ff_err *err);

/* Deletes an app and its memberships. Errors: FF_ENOTFOUND, FF_EDB. */
int db_app_delete(struct db *db, int64_t app_id, struct ff_err *err);

/* Sets user_id's role on app_id (insert or update). Errors: FF_EDB,
 * FF_EBUSY. */
int db_member_set(struct db *db, int64_t app_id, int64_t user_id, enum member_role role,
                  struct ff_err *err);

/* Whether user_id owns or is a member of app owner/name (what pulling its
 * repository needs). Errors: FF_EDB, FF_EBUSY. */
int db_app_readable(struct db *db, int64_t user_id, const char *owner, const char *name,
                    bool *out, struct ff_err *err);

/* ---- grant.c: what a registry token may grant -----------------------------
 *
 * Pure policy, no I/O: the database is asked through a callback, so the
 * rules can be tested on their own. */

/* Whether the subject may pull the app repository owner/app. */
typedef bool (*grant_app_fn)(void *ctx, const char *owner, const char *app);

struct grant_subject {
    const char *name;
    bool admin;
    grant_app_fn can_pull_app; /* may be NULL: no app is readable */
    void *ctx;
};

/* Computes granted = requested ∩ allowed for subject, and denied = what
 * was requested but not granted (per resource, the missing actions).
 * Rules: anyone authenticated pulls library/<...>; a repository named
 * exactly <owner>/<app> is pulled when can_pull_app says so; an admin may
 * also push library/<...> and gets registry:catalog:*; nobody gets push
 * anywhere else, nor delete, nor "*" on a repository. granted and denied
 * must be initialised (ff_access_init) by the caller and are added to.
 * Errors: FF_ETOOBIG, FF_ENOMEM (as ff_access_add). */
int grant_compute(const struct grant_subject *s, const struct ff_access *requested,
                  struct ff_access *granted, struct ff_access *denied, struct ff_err *err);

/* ---- token.c: registry tokens ----------------------------------------- */

/* Builds the claims of a registry token: iss, aud, sub, a random jti, iat
 * = nbf = now, exp = now + ttl (ttl clamped to 1..REGISTRY_TOKEN_TTL_MAX)
 * and access (ff_access_to_json). *out belongs to the caller. Errors:
 * FF_ENOMEM, FF_ECRYPTO. */
int token_claims(const char *iss, const char *aud, const char *sub, int64_t now, int64_t ttl,
                 const struct ff_access *access, json_t **out, struct ff_err *err);

/* Formats t as RFC 3339 UTC ("2026-01-02T03:04:05Z") into out. */
void token_rfc3339(int64_t t, char out[32]);

/* ---- main.c: the daemon's state ------------------------------------------ */

struct builder {
    struct builder_config cfg;
    struct db *db;
    struct ff_http_server *http;
    struct ff_jwt_key *token_key;
    struct ff_ratelimit *rl_identity;
    struct ff_ratelimit *rl_ip;
    char *dummy_hash; /* verified against for unknown users: same cost */
};

/* ---- routes.c: the HTTP surface, authentication, limits ------------------ */

/* Who made a request: a user authenticated by a token. */
struct identity {
    struct user user;
    int64_t token_id;
};

/* Registers every route on b->http. Errors: as ff_http_server_route. */
int routes_register(struct builder *b, struct ff_err *err);

/* Answers err as a JSON error with the status its code calls for. */
int api_error_from(struct ff_http_request *req, const struct ff_err *err);

/* The "after" and "limit" query parameters of a list route; on false the
 * request has been answered (400). */
bool api_page(struct ff_http_request *req, int64_t *after, int *limit);

/* Appends an audit row (actor may be NULL; the request's address is
 * recorded) and logs the event. A database failure is logged, not
 * returned: the event has happened either way. */
void api_audit(struct builder *b, struct ff_http_request *req, const char *actor,
               const char *event, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers 200 {"items": items, "next": next or null}, taking items. */
int api_respond_page(struct ff_http_request *req, json_t *items, int64_t next);

/* ---- api_users.c: login, whoami, users, API tokens ----------------------- */

int api_login(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_whoami(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_user_create(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_token_create(struct ff_http_request *req, struct builder *b,
                     const struct identity *id);
int api_token_list(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_token_revoke(struct ff_http_request *req, struct builder *b,
                     const struct identity *id);
/* GET /v1/audit: admins only. */
int api_audit_list(struct ff_http_request *req, struct builder *b, const struct identity *id);

/* ---- api_registry.c: GET /v2/token ----------------------------------------- */

int api_registry_token(struct ff_http_request *req, struct builder *b,
                       const struct identity *id);

/* ---- api_apps.c: apps and members ------------------------------------------ */

int api_app_create(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_app_list(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_app_get(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_app_delete(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_member_put(struct ff_http_request *req, struct builder *b, const struct identity *id);

#endif
