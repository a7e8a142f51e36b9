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
/* Longest one-time code a login carries: a 6-digit TOTP code or a
 * recovery code (api_2fa.c). */
#define OTP_CODE_MAX 32
/* A device UUID in canonical form: 8-4-4-4-12 lowercase hex. */
#define DEVICE_UUID_LEN 36
/* Longest identity name: a user name, "d_<uuid>", "w_<id>" or "svc_gitd". */
#define IDENTITY_NAME_MAX 64
/* Device names and types: labels for people, [A-Za-z0-9._ -] and 1..64. */
#define DEVICE_NAME_MAX 64
#define DEVICE_STATUS_MAX 64
/* Environment variables: names [A-Za-z_][A-Za-z0-9_]{0,127}; values up to
 * 2 KiB of text, enough for a URL list, too little for a payload. */
#define ENV_NAME_MAX 128
#define ENV_VALUE_MAX 2048
/* Worker join tokens expire within a day at most: they are meant to be
 * used at once, by an operator installing a worker. */
#define JOIN_TOKEN_TTL_DEFAULT 3600
#define JOIN_TOKEN_TTL_MAX 86400
/* Provisioning keys: at most a million uses, at most ten years. */
#define PROVISION_USES_MAX 1000000
#define PROVISION_TTL_MAX (3650LL * 86400)

/* Credential type prefixes (ff_secret_token_new): the prefix says which
 * table a presented secret is looked up in, and lets secret scanners
 * recognise each kind. */
#define USER_TOKEN_PREFIX "ffu"
#define DEVICE_KEY_PREFIX "ffd"
#define WORKER_KEY_PREFIX "ffw"
#define SERVICE_KEY_PREFIX "ffg"
#define PROVISION_KEY_PREFIX "ffp"
#define JOIN_TOKEN_PREFIX "ffj"
/* The one service identity so far: ff-gitd. */
#define SERVICE_GITD "gitd"

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
    const char *otp; /* NULL when absent: TOTP or recovery code */
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
    const char *deploy_branch; /* passes branch_name_check; "main" when absent */
};
int decode_app(const char *data, size_t len, json_t **root, struct app_body *out,
               struct ff_err *err);

struct member_body {
    enum member_role role;
};
int decode_member(const char *data, size_t len, json_t **root, struct member_body *out,
                  struct ff_err *err);

struct provision_body {
    const char *name;   /* 1..TOKEN_NAME_MAX, no control characters */
    int64_t expires_in; /* 60..PROVISION_TTL_MAX seconds; 0: never */
    int64_t max_uses;   /* 1..PROVISION_USES_MAX; 0: unlimited */
};
int decode_provision(const char *data, size_t len, json_t **root, struct provision_body *out,
                     struct ff_err *err);

struct device_body {
    const char *uuid;        /* NULL: the builder makes one; else device_uuid_check */
    const char *name;        /* 1..DEVICE_NAME_MAX, no control characters */
    const char *device_type; /* 1..DEVICE_NAME_MAX of [a-z0-9-] */
    const char *arch;        /* arch_check */
};
int decode_device(const char *data, size_t len, json_t **root, struct device_body *out,
                  struct ff_err *err);

struct device_update_body {
    const char *name;   /* NULL: unchanged */
    const char *status; /* NULL: unchanged; 1..DEVICE_STATUS_MAX */
};
int decode_device_update(const char *data, size_t len, json_t **root,
                         struct device_update_body *out, struct ff_err *err);

struct env_body {
    const char *value; /* 0..ENV_VALUE_MAX bytes, no NUL */
};
int decode_env(const char *data, size_t len, json_t **root, struct env_body *out,
               struct ff_err *err);

struct join_token_body {
    int64_t expires_in; /* 60..JOIN_TOKEN_TTL_MAX; JOIN_TOKEN_TTL_DEFAULT when absent */
};
int decode_join_token(const char *data, size_t len, json_t **root, struct join_token_body *out,
                      struct ff_err *err);

struct worker_join_body {
    const char *name; /* 1..DEVICE_NAME_MAX, no control characters */
    const char *archs[APP_ARCHS_MAX];
    size_t n_archs;
};
int decode_worker_join(const char *data, size_t len, json_t **root,
                       struct worker_join_body *out, struct ff_err *err);

struct build_body {
    const char *commit; /* 40 lowercase hex digits */
    const char *ref;    /* "refs/heads/<branch>" */
    const char *user;   /* the pusher, user_name_check */
};
int decode_build(const char *data, size_t len, json_t **root, struct build_body *out,
                 struct ff_err *err);

/* "amd64", "arm64" or "armv7". Returns 0 or FF_EINVAL (err may be NULL). */
int arch_check(const char *arch, struct ff_err *err);

/* Canonical lowercase UUID text. Returns 0 or FF_EINVAL. */
int device_uuid_check(const char *uuid, struct ff_err *err);

/* Variable names: [A-Za-z_][A-Za-z0-9_]{0,127}, not starting with FF_.
 * Returns 0 or FF_EINVAL. */
int env_name_check(const char *name, struct ff_err *err);

/* User names: 1..64 of [a-z0-9] with single '.', '_' or '-' between
 * them, so a name is also a repository path component and safe in logs
 * and JWT claims. Returns 0 or FF_EINVAL. */
int user_name_check(const char *name, struct ff_err *err);

/* App names: [a-z0-9][a-z0-9-]{0,62}. Returns 0 or FF_EINVAL. */
int app_name_check(const char *name, struct ff_err *err);

/* Longest deploy branch name (ff-gitd's BUILDER_BRANCH_MAX). */
#define BRANCH_NAME_MAX 255

/* A branch name git would accept (git check-ref-format for refs/heads/),
 * limited to printable ASCII: no "..", "@{", "//", '\\', space, control or
 * ~^:?*[ characters; no component starting with '.' or ending with
 * ".lock"; not starting with '-' or '/', not ending with '/' or '.'.
 * Returns 0 or FF_EINVAL naming the problem. */
int branch_name_check(const char *name, struct ff_err *err);

/* ---- db.c: users, tokens, apps and the audit log in SQLite --------------- */

struct db;

struct user {
    int64_t id;
    char name[USER_NAME_MAX + 1];
    enum role role;
};

/* Steps the write statement st to its end and finalizes it; a UNIQUE
 * violation becomes FF_EEXIST naming what. Errors: FF_EEXIST, FF_EDB,
 * FF_EBUSY. */
int db_step_done(struct db *db, sqlite3_stmt *st, const char *what, struct ff_err *err);

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

/* Creates app owner_id/name with archs (a JSON array text) deploying from
 * deploy_branch. Errors:
 * FF_EEXIST, FF_EDB, FF_EBUSY. */
int db_app_create(struct db *db, int64_t owner_id, const char *name, const char *archs_json,
                  const char *deploy_branch, int64_t *out_id, struct ff_err *err);

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

/* The same by id. Errors: FF_ENOTFOUND, FF_EDB, FF_ENOMEM. */
int db_app_by_id(struct db *db, int64_t app_id, struct app *out, json_t **out_json,
                 struct ff_err *err);

/* What a user may do with an app, from least to most. */
enum app_access {
    APP_NONE = 0,
    APP_VIEWER = 1,    /* read the app, its devices and variables; pull */
    APP_DEVELOPER = 2, /* and push code, set variables */
    APP_OWNER = 3      /* and manage members, keys and devices */
};

/* user_id's access to app_id (APP_NONE for a missing app). Admins are not
 * special here; the API layer adds that. Errors: FF_EDB, FF_EBUSY. */
int db_app_access(struct db *db, int64_t app_id, int64_t user_id, enum app_access *out,
                  struct ff_err *err);

/* One page of app_id's members (user id > after) as {user, role}, as in
 * db_token_list. Errors: FF_EDB, FF_ENOMEM. */
int db_member_list(struct db *db, int64_t app_id, int64_t after, int limit, json_t **out,
                   int64_t *out_next, struct ff_err *err);

/* Removes user_id from app_id's members. Errors: FF_ENOTFOUND, FF_EDB. */
int db_member_delete(struct db *db, int64_t app_id, int64_t user_id, struct ff_err *err);

/* A nullable column of the current row as JSON: null, or the integer /
 * the text. New references (NULL: no memory). */
json_t *db_json_int(sqlite3_stmt *st, int col);
json_t *db_json_text(sqlite3_stmt *st, int col);

/* Turns the current row of a list query into its JSON (NULL: no memory). */
typedef json_t *(*db_row_fn)(sqlite3_stmt *st);

/* Steps st, a prepared and bound query whose first column is the row id
 * and which asks for limit + 1 rows, into a page: *out is an array of up
 * to limit rows (row() of each), the caller's; *out_next is the id to pass
 * as "after" for the next page, or 0 at the end. Finalizes st always.
 * Errors: FF_EDB, FF_EBUSY, FF_ENOMEM. */
int db_page(struct db *db, sqlite3_stmt *st, int limit, db_row_fn row, json_t **out,
            int64_t *out_next, struct ff_err *err);

/* ---- grant.c: what a registry token may grant -----------------------------
 *
 * Pure policy, no I/O: the database is asked through a callback, so the
 * rules can be tested on their own. */

/* Whether the subject may pull (or push) the app repository owner/app. */
typedef bool (*grant_app_fn)(void *ctx, const char *owner, const char *app);

struct grant_subject {
    const char *name;
    bool admin;                /* push library/<...>, registry:catalog:* */
    bool library_pull;         /* pull library/<...> (base images) */
    grant_app_fn can_pull_app; /* may be NULL: no app is readable */
    grant_app_fn can_push_app; /* may be NULL: no app is writable */
    void *ctx;
};

/* Computes granted = requested ∩ allowed for subject, and denied = what
 * was requested but not granted (per resource, the missing actions).
 * Rules: library/<...> is pulled by subjects with library_pull and admins,
 * pushed by admins only; a repository named exactly <owner>/<app> is
 * pulled and pushed when can_push_app says so (a worker's job), else
 * pulled when can_pull_app says so; admins get registry:catalog:*; nobody
 * gets push anywhere else, nor delete, nor "*" on a repository. granted
 * and denied must be initialised (ff_access_init) by the caller and are
 * added to. Errors: FF_ETOOBIG, FF_ENOMEM (as ff_access_add). */
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

/* The kinds of caller, as bits so a route can list the kinds it admits. */
enum identity_kind {
    ID_USER = 1,    /* a person: session or API token (ffu_) */
    ID_DEVICE = 2,  /* a device: its device key (ffd_) */
    ID_WORKER = 4,  /* a build worker: its worker key (ffw_) */
    ID_SERVICE = 8  /* ff-gitd: the service key (ffg_) */
};

/* Who made a request. name is what Basic auth on /v2/token must name and
 * what the audit log and the JWT "sub" show: the user name, "d_<uuid>",
 * "w_<id>" or "svc_<service>". */
struct identity {
    enum identity_kind kind;
    char name[IDENTITY_NAME_MAX + 1];
    struct user user; /* ID_USER: the user; zeroed otherwise */
    int64_t token_id; /* ID_USER: the token used */
    int64_t device_id; /* ID_DEVICE */
    int64_t app_id;    /* ID_DEVICE: the device's app */
    char device_uuid[DEVICE_UUID_LEN + 1]; /* ID_DEVICE */
    int64_t worker_id; /* ID_WORKER */
};

/* Resolves a presented secret (by its prefix) to the live identity that
 * holds it. Errors: FF_EAUTH (unknown, revoked, expired or deleted),
 * FF_EDB, FF_EBUSY, FF_ENOMEM. */
int identity_from_secret(struct builder *b, const char *secret, struct identity *out,
                         struct ff_err *err);

/* "user", "device", "worker" or "service" (static). */
const char *identity_kind_name(enum identity_kind kind);

/* The Bearer secret of req, borrowed from its headers, or NULL. */
const char *api_bearer(struct ff_http_request *req);

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

/* Answers 201 with out plus field = secret (shown once, then wiped from
 * the JSON). Takes out. */
int api_respond_secret(struct ff_http_request *req, json_t *out, const char *field,
                       const char *secret);

/* Reads the {id} path parameter as a positive integer; on false the
 * request has been answered 400. */
bool api_path_id(struct ff_http_request *req, int64_t *out);

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

/* ---- api_apps.c (more): members ----------------------------------------- */

/* id's access to app_id: a device views its own app only; an admin has
 * owner rights on every app; workers and services have none. Errors: as
 * db_app_access. */
int api_access(struct builder *b, const struct identity *id, int64_t app_id,
               enum app_access *out, struct ff_err *err);

/* Answers 404 ("<what> not found": the caller may not even know it
 * exists) when have is APP_NONE, 403 when have is below need; returns 1
 * when neither, else what the answer returned. */
int api_access_check(struct ff_http_request *req, const char *what, enum app_access have,
                     enum app_access need);

/* Looks up the app named by the path parameters {owner} and {name} and
 * checks that id has at least need on it. On false the request has been
 * answered; on true *app is filled and *out_json (when not NULL) is the app
 * as the API shows it, the caller's. */
bool api_app_find(struct ff_http_request *req, struct builder *b, const struct identity *id,
                  enum app_access need, struct app *app, json_t **out_json);

int api_member_list(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_member_delete(struct ff_http_request *req, struct builder *b,
                      const struct identity *id);

/* ---- db_devices.c: provisioning keys, devices, environment variables ---- */

struct device {
    int64_t id;
    int64_t app_id;
    char uuid[DEVICE_UUID_LEN + 1];
};

struct provision_new {
    int64_t app_id;
    const char *name;
    const char *hash;       /* SHA-256 hex of the key */
    const char *created_by; /* identity name */
    int64_t expires_at;     /* 0: never */
    int64_t max_uses;       /* 0: unlimited */
};

/* Stores a provisioning key; *out is its row as the API shows it (never
 * the hash), the caller's. Errors: FF_EEXIST, FF_EDB, FF_EBUSY, FF_ENOMEM. */
int db_provision_create(struct db *db, const struct provision_new *p, json_t **out,
                        struct ff_err *err);

/* One page of app_id's provisioning keys, as db_token_list. */
int db_provision_list(struct db *db, int64_t app_id, int64_t after, int limit, json_t **out,
                      int64_t *out_next, struct ff_err *err);

/* Revokes key id of app_id at now. Errors: FF_ENOTFOUND (no such live key
 * of that app), FF_EDB, FF_EBUSY. */
int db_provision_revoke(struct db *db, int64_t app_id, int64_t id, int64_t now,
                        struct ff_err *err);

struct device_new {
    const char *uuid; /* canonical, lowercase */
    const char *name;
    const char *device_type;
    const char *arch;
    const char *key_hash; /* SHA-256 hex of the device key */
};

/* Registers d with the provisioning key whose hash is key_hash, in one
 * transaction: the key must be live (not revoked, not expired at now,
 * uses below max_uses), its use is counted, and the device joins the key's
 * app, whose architectures must include d->arch. *out is the device as the
 * API shows it, the caller's. Errors: FF_EAUTH (no live key), FF_EINVAL
 * (arch not built for the app), FF_EEXIST (uuid taken), FF_EDB, FF_EBUSY,
 * FF_ENOMEM. */
int db_device_register(struct db *db, const char *key_hash, int64_t now,
                       const struct device_new *d, json_t **out, struct ff_err *err);

/* Finds the device holding the key whose hash is key_hash and records
 * that it was seen at now. Errors: FF_EAUTH (no such device), FF_EDB,
 * FF_EBUSY. */
int db_device_by_key(struct db *db, const char *key_hash, int64_t now, struct device *out,
                     struct ff_err *err);

/* Looks a device up by uuid; *out_json (may be NULL) is the device as the
 * API shows it (with "app": "owner/name"), the caller's. Errors:
 * FF_ENOTFOUND, FF_EDB, FF_ENOMEM. */
int db_device_get(struct db *db, const char *uuid, struct device *out, json_t **out_json,
                  struct ff_err *err);

/* One page of app_id's devices, as db_token_list. */
int db_device_list(struct db *db, int64_t app_id, int64_t after, int limit, json_t **out,
                   int64_t *out_next, struct ff_err *err);

/* Sets the device's name and/or status (NULL leaves a field as it is).
 * Errors: FF_ENOTFOUND, FF_EDB, FF_EBUSY. */
int db_device_update(struct db *db, int64_t device_id, const char *name, const char *status,
                     struct ff_err *err);

/* Deletes the device: its key stops working at once. Errors:
 * FF_ENOTFOUND, FF_EDB, FF_EBUSY. */
int db_device_delete(struct db *db, int64_t device_id, struct ff_err *err);

/* Sets (insert or replace) variable name of the app (device_id 0) or of
 * the device. Errors: FF_EDB, FF_EBUSY. */
int db_env_set(struct db *db, int64_t app_id, int64_t device_id, const char *name,
               const char *value, struct ff_err *err);

/* Removes variable name of the app (device_id 0) or of the device.
 * Errors: FF_ENOTFOUND, FF_EDB, FF_EBUSY. */
int db_env_delete(struct db *db, int64_t app_id, int64_t device_id, const char *name,
                  struct ff_err *err);

/* The variables as a JSON object name → value: the app's (device_id 0),
 * or the app's overridden by the device's. *out is the caller's. Errors:
 * FF_EDB, FF_ENOMEM. */
int db_env_get(struct db *db, int64_t app_id, int64_t device_id, json_t **out,
               struct ff_err *err);

/* ---- db_workers.c: workers, join tokens, service keys, jobs --------------- */

/* Stores a join token that expires at expires_at. Errors: FF_EEXIST,
 * FF_EDB, FF_EBUSY. */
int db_join_token_create(struct db *db, const char *hash, const char *created_by,
                         int64_t expires_at, int64_t *out_id, struct ff_err *err);

/* In one transaction: spends the live join token whose hash is join_hash
 * (unused, not expired at now) and creates worker name/archs holding the
 * key whose hash is key_hash. Errors: FF_EAUTH (no live join token),
 * FF_EDB, FF_EBUSY. */
int db_worker_join(struct db *db, const char *join_hash, int64_t now, const char *name,
                   const char *archs_json, const char *key_hash, int64_t *out_id,
                   struct ff_err *err);

/* The live (not revoked) worker holding the key whose hash is key_hash;
 * records it as seen at now. Errors: FF_EAUTH, FF_EDB, FF_EBUSY. */
int db_worker_by_key(struct db *db, const char *key_hash, int64_t now, int64_t *out_id,
                     struct ff_err *err);

/* One page of workers, as db_token_list. */
int db_worker_list(struct db *db, int64_t after, int limit, json_t **out, int64_t *out_next,
                   struct ff_err *err);

/* Revokes worker id at now. Errors: FF_ENOTFOUND, FF_EDB, FF_EBUSY. */
int db_worker_revoke(struct db *db, int64_t id, int64_t now, struct ff_err *err);

/* Sets (creating or replacing) the key hash of service name: one key per
 * service, so issuing a new one revokes the old. Errors: FF_EDB, FF_EBUSY. */
int db_service_key_set(struct db *db, const char *name, const char *key_hash,
                       struct ff_err *err);

/* The service holding the key whose hash is key_hash, copied into out.
 * Errors: FF_EAUTH, FF_EDB, FF_EBUSY. */
int db_service_by_key(struct db *db, const char *key_hash, char out[IDENTITY_NAME_MAX + 1],
                      struct ff_err *err);

/* Whether worker_id holds a running job of app owner/name (what pushing
 * its repository needs). Errors: FF_EDB, FF_EBUSY. */
int db_worker_holds_app(struct db *db, int64_t worker_id, const char *owner, const char *name,
                        bool *out, struct ff_err *err);

/* ---- api_devices.c: provisioning keys, devices, environment ------------- */

int api_provision_create(struct ff_http_request *req, struct builder *b,
                         const struct identity *id);
int api_provision_list(struct ff_http_request *req, struct builder *b,
                       const struct identity *id);
int api_provision_revoke(struct ff_http_request *req, struct builder *b,
                         const struct identity *id);
/* POST /v1/devices: authenticated by a provisioning key, not an identity. */
int api_device_register(struct ff_http_request *req, struct builder *b,
                        const struct identity *id);
int api_device_list(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_device_get(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_device_update(struct ff_http_request *req, struct builder *b,
                      const struct identity *id);
int api_device_delete(struct ff_http_request *req, struct builder *b,
                      const struct identity *id);
int api_app_env_list(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_app_env_set(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_app_env_delete(struct ff_http_request *req, struct builder *b,
                       const struct identity *id);
int api_device_env_list(struct ff_http_request *req, struct builder *b,
                        const struct identity *id);
int api_device_env_set(struct ff_http_request *req, struct builder *b,
                       const struct identity *id);
int api_device_env_delete(struct ff_http_request *req, struct builder *b,
                          const struct identity *id);

/* ---- api_workers.c: worker join tokens and workers ----------------------- */

int api_join_token_create(struct ff_http_request *req, struct builder *b,
                          const struct identity *id);
/* POST /v1/workers/join: authenticated by a join token, not an identity. */
int api_worker_join(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_worker_list(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_worker_revoke(struct ff_http_request *req, struct builder *b,
                      const struct identity *id);

/* ---- api_gitd.c: what ff-gitd asks -------------------------------------- */

/* GET /v1/apps/{owner}/{name}/access?user=U: U's access to the app. */
int api_git_access(struct ff_http_request *req, struct builder *b, const struct identity *id);
/* POST /v1/apps/{owner}/{name}/builds: build a pushed commit. */
int api_build_start(struct ff_http_request *req, struct builder *b, const struct identity *id);

/* ---- totp.c, db_2fa.c, api_2fa.c: TOTP two-factor (section owned by the
 * 2FA work; see api_2fa.c) ---------------------------------------------------- */

/* TOTP as RFC 6238 with the parameters every authenticator app supports
 * (and the only ones many support): HMAC-SHA-1, 6 digits, 30 s steps. */
#define TOTP_DIGITS 6
#define TOTP_PERIOD 30
/* Steps accepted either side of the server's: RFC 6238 §5.2 advises at
 * most one, which absorbs 30 s of clock skew and a slow typist while
 * keeping a guess's odds at 3 in a million. */
#define TOTP_WINDOW 1
/* New secrets: 160 bits, the HMAC-SHA-1 output size RFC 4226 §4 asks for. */
#define TOTP_SECRET_BYTES 20
/* Longest secret read back from the database: one HMAC-SHA-1 block; a
 * longer key would only be hashed down. */
#define TOTP_SECRET_MAX 64
/* Room for the base32 text of TOTP_SECRET_MAX bytes, padded, and a NUL. */
#define TOTP_SECRET_B32_SIZE 105
/* Issuer shown by authenticator apps next to the account name. */
#define TOTP_ISSUER "Fleetforge"
/* Recovery codes per enrolment: enough to survive a lost phone a few
 * times; each is good once. */
#define RECOVERY_CODES 10
/* A recovery code is 20 base32 characters (100 random bits, so their
 * unsalted SHA-256 hashes cannot be searched), shown in four groups of
 * five: "abcde-fghij-klmno-pqrst". */
#define RECOVERY_CODE_CHARS 20
/* Its formatted size: the characters, three dashes and a NUL. */
#define RECOVERY_CODE_SIZE (RECOVERY_CODE_CHARS + RECOVERY_CODE_CHARS / 5)

/* Bytes needed to base32-encode n bytes with padding, NUL included. */
size_t totp_base32_encoded_size(size_t n);

/* Encodes n bytes as RFC 4648 §6 base32 (upper case) into out, which holds
 * totp_base32_encoded_size(n) bytes; pad adds '=' up to a multiple of 8
 * characters. Returns the length written (NUL excluded). */
size_t totp_base32_encode(const unsigned char *in, size_t n, bool pad, char *out);

/* Decodes len characters of base32: the upper-case RFC 4648 alphabet,
 * either fully padded or not padded at all, unused trailing bits zero, so
 * one value has one spelling. Writes at most cap bytes to out and the
 * count to *out_len. Errors: FF_EINVAL (the message gives the position),
 * FF_ETOOBIG (decodes to more than cap bytes). */
int totp_base32_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                       size_t *out_len, struct ff_err *err);

/* HOTP (RFC 4226): the digits-digit code (6..8) of counter under key
 * (1..TOTP_SECRET_MAX bytes). Errors: FF_EINVAL (digits or key size out of
 * range), FF_ECRYPTO. */
int totp_hotp(const unsigned char *key, size_t key_len, uint64_t counter, unsigned digits,
              uint32_t *out, struct ff_err *err);

/* The RFC 6238 time step of Unix time now: floor(now / TOTP_PERIOD). */
int64_t totp_step(int64_t now);

/* Whether code is exactly TOTP_DIGITS ASCII digits. Errors: FF_EINVAL. */
int totp_code_check(const char *code, struct ff_err *err);

/* Verifies a TOTP code against key at time now: every step within
 * TOTP_WINDOW of now's is computed and compared in constant time, and only
 * steps after last_step (-1 when none was used) count, so a code is good
 * once. *out_step is the step matched (the latest, should two match).
 * Errors: FF_EINVAL (code not TOTP_DIGITS digits, bad key size), FF_EAUTH
 * (wrong, outside the window, or already used), FF_ECRYPTO. */
int totp_verify(const unsigned char *key, size_t key_len, const char *code, int64_t now,
                int64_t last_step, int64_t *out_step, struct ff_err *err);

/* The otpauth:// URI an authenticator app enrols from (Key Uri Format):
 * "otpauth://totp/Fleetforge:<user>?secret=<b32>&issuer=Fleetforge&
 * algorithm=SHA1&digits=6&period=30", the user percent-encoded. *out holds
 * the secret: the caller frees it with ff_secret_free. Errors: FF_ENOMEM. */
int totp_uri(const char *user, const char *secret_b32, char **out, struct ff_err *err);

/* A fresh random recovery code, formatted for people, into out. Errors:
 * FF_ECRYPTO. */
int totp_recovery_new(char out[RECOVERY_CODE_SIZE], struct ff_err *err);

/* The canonical form of a recovery code as a person may type it: case is
 * ignored and '-' and ' ' dropped, leaving exactly RECOVERY_CODE_CHARS
 * base32 characters, written lower case to out. Errors: FF_EINVAL. */
int totp_recovery_normalise(const char *code, char out[RECOVERY_CODE_CHARS + 1],
                            struct ff_err *err);

/* A user's two-factor state. secret is the base32 secret (enrolled or
 * pending), "" when none: wipe the struct after use. */
struct totp_state {
    bool enabled;
    char secret[TOTP_SECRET_B32_SIZE];
    int64_t last_step; /* -1: no code used yet */
};

/* Reads user_id's state into *out. Errors: FF_ENOTFOUND, FF_EDB (also for
 * a stored secret longer than TOTP_SECRET_B32_SIZE allows). */
int db_2fa_get(struct db *db, int64_t user_id, struct totp_state *out, struct ff_err *err);

/* Stores secret_b32 as user_id's pending secret (replacing a pending one)
 * unless two-factor is enabled. Errors: FF_ECONFLICT (enabled), FF_EDB,
 * FF_EBUSY. */
int db_2fa_enrol(struct db *db, int64_t user_id, const char *secret_b32, struct ff_err *err);

/* In one transaction: enables the pending secret_b32 at now, records step
 * as used, and replaces user_id's recovery codes with codes (n of them,
 * formatted or canonical; only their SHA-256 is stored). Refused unless
 * the pending secret is still secret_b32, two-factor is off and step is
 * after the last used one. Errors: FF_ECONFLICT (state changed meanwhile),
 * FF_EINVAL (a malformed code), FF_EDB, FF_EBUSY. */
int db_2fa_enable(struct db *db, int64_t user_id, const char *secret_b32, int64_t step,
                  int64_t now, const char *const *codes, size_t n, struct ff_err *err);

/* Records step as user_id's last used step, compare-and-set: it succeeds
 * for one caller only, however many race with the same code, and only
 * while secret_b32 is the enabled secret. Errors: FF_EAUTH (step already
 * used or passed, or the secret changed), FF_EDB, FF_EBUSY. */
int db_2fa_step_use(struct db *db, int64_t user_id, const char *secret_b32, int64_t step,
                    struct ff_err *err);

/* Spends user_id's unused recovery code code (any form totp_recovery_
 * normalise takes) at now; *out_left (may be NULL) is how many stay
 * unused. Errors: FF_EINVAL (malformed), FF_EAUTH (no such unused code of
 * that user), FF_EDB, FF_EBUSY. */
int db_2fa_recovery_use(struct db *db, int64_t user_id, const char *code, int64_t now,
                        int64_t *out_left, struct ff_err *err);

/* Turns two-factor off for user_id: secret, step and recovery codes are
 * removed in one transaction. Errors: FF_ECONFLICT (not enabled), FF_EDB,
 * FF_EBUSY. */
int db_2fa_disable(struct db *db, int64_t user_id, struct ff_err *err);

int api_2fa_enrol(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_2fa_confirm(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_2fa_disable(struct ff_http_request *req, struct builder *b, const struct identity *id);

enum otp_outcome {
    OTP_NOT_NEEDED, /* two-factor is off for the user */
    OTP_OK,         /* a good TOTP code, or a recovery code now spent */
    OTP_MISSING,    /* two-factor is on and no code was given */
    OTP_WRONG       /* wrong, already used, or malformed */
};

/* The second factor of a login whose password was right: checks otp (NULL
 * when absent; a TOTP or a recovery code) for user u and spends it, audits
 * a recovery code's use, and says how it went in *out. Errors (the login
 * fails with a server error): FF_EDB (also a corrupt stored secret),
 * FF_EBUSY, FF_ECRYPTO. */
int api_2fa_login_check(struct ff_http_request *req, struct builder *b, const struct user *u,
                        const char *otp, enum otp_outcome *out, struct ff_err *err);

/* Whether otp is shaped like a TOTP or a recovery code, so that login can
 * answer 400 before touching anything. field names it in the message.
 * Errors: FF_EINVAL. */
int api_2fa_code_shape(const char *otp, const char *field, struct ff_err *err);

/* ---- sshkey.c, db_keys.c, api_keys.c: SSH public keys (section owned by
 * the SSH key work; see api_keys.c) ------------------------------------------- */

/* Longest public key line parsed (16 KiB): far above the largest key
 * OpenSSH makes (RSA 16384, about 2.8 KB), small enough that refusing a
 * hostile line costs nothing. The API body (BODY_MAX) is the tighter cap
 * in practice. */
#define SSHKEY_LINE_MAX 16384
/* RSA moduli under 2048 bits are within reach of a funded attacker (NIST
 * SP 800-131A retired them); OpenSSH itself refuses moduli over 16384. */
#define SSHKEY_RSA_BITS_MIN 2048
#define SSHKEY_RSA_BITS_MAX 16384
/* "SHA256:" and 43 characters of unpadded base64, as `ssh-keygen -l`
 * prints a fingerprint. */
#define SSHKEY_FINGERPRINT_LEN 50
/* Longest key name: a label for people, as TOKEN_NAME_MAX. */
#define KEY_NAME_MAX 64
/* Most SSH keys one user may hold: more than anyone's laptops and CI
 * runners, few enough that one account cannot fill the table. */
#define KEYS_PER_USER_MAX 100

/* An accepted SSH public key. */
struct sshkey {
    const char *type; /* "ssh-ed25519", "ecdsa-sha2-nistp256|384|521", "ssh-rsa"; static */
    unsigned bits;    /* 256 for ed25519, the curve size, or the RSA modulus size */
    char *line;       /* normalised "<type> <base64>", the comment dropped */
    char *comment;    /* the line's comment, or NULL when it had none */
    char fingerprint[SSHKEY_FINGERPRINT_LEN + 1]; /* "SHA256:<base64, no padding>" */
};

/* Parses one OpenSSH public key line "<type> <base64> [comment]" (len
 * bytes, at most SSHKEY_LINE_MAX; one final "\n" or "\r\n" and spaces
 * around the fields are allowed) with libssh, and accepts only ed25519,
 * ecdsa on P-256/384/521 and RSA of SSHKEY_RSA_BITS_MIN..MAX bits with an
 * odd exponent >= 3. The type named in the line must be the one inside the
 * key data, and the data must be in canonical form (what libssh encodes
 * back), so one key has one line and one fingerprint. On success out's
 * strings belong to out (sshkey_release). Errors: FF_ETOOBIG (line too
 * long), FF_EINVAL (malformed, refused type, certificate, security key,
 * DSA, weak RSA; the message says which), FF_ECRYPTO (libssh could not
 * hash the key), FF_ENOMEM. */
int sshkey_parse(const char *line, size_t len, struct sshkey *out, struct ff_err *err);

/* Frees what sshkey_parse put in k. NULL-safe; safe on a zeroed k. */
void sshkey_release(struct sshkey *k);

/* Checks that fp is exactly a SHA-256 fingerprint as sshkey_parse makes
 * them: "SHA256:" and the unpadded canonical base64 of 32 bytes. Returns 0
 * or FF_EINVAL. */
int sshkey_fingerprint_check(const char *fp, struct ff_err *err);

/* Stores key k for user_id under name, unless the user already holds
 * KEYS_PER_USER_MAX keys. *out is the key as the API shows it ({id, name,
 * type, fingerprint, created_at}), the caller's (json_decref). Errors:
 * FF_EEXIST (any user holds this key already; the message does not say
 * who), FF_ECONFLICT (the user holds KEYS_PER_USER_MAX keys), FF_EDB,
 * FF_EBUSY, FF_ENOMEM. */
int db_key_add(struct db *db, int64_t user_id, const char *name, const struct sshkey *k,
               json_t **out, struct ff_err *err);

/* One page of user_id's keys with id > after, as db_token_list. */
int db_key_list(struct db *db, int64_t user_id, int64_t after, int limit, json_t **out,
                int64_t *out_next, struct ff_err *err);

/* Deletes user_id's key id and copies its fingerprint into fingerprint.
 * Errors: FF_ENOTFOUND (no such key of that user: another user's key is
 * not found either), FF_EDB, FF_EBUSY. */
int db_key_delete(struct db *db, int64_t user_id, int64_t id,
                  char fingerprint[SSHKEY_FINGERPRINT_LEN + 1], struct ff_err *err);

/* Who holds the key with this fingerprint: *out_user and *out_key_id.
 * Errors: FF_ENOTFOUND, FF_EDB, FF_EBUSY. */
int db_key_lookup(struct db *db, const char *fingerprint, struct user *out_user,
                  int64_t *out_key_id, struct ff_err *err);

struct key_body {
    const char *name;       /* NULL when absent; 1..KEY_NAME_MAX, no control characters */
    const char *public_key; /* 1..SSHKEY_LINE_MAX bytes, not yet parsed */
};

/* POST /v1/keys body {name?, public_key}, decoded as the decode.c
 * decoders are (same ownership and errors); it lives in api_keys.c beside
 * its one user. */
int decode_key(const char *data, size_t len, json_t **root, struct key_body *out,
               struct ff_err *err);

int api_key_add(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_key_list(struct ff_http_request *req, struct builder *b, const struct identity *id);
int api_key_delete(struct ff_http_request *req, struct builder *b, const struct identity *id);
/* GET /v1/keys/lookup?fingerprint=SHA256:...: the gitd service only. */
int api_key_lookup(struct ff_http_request *req, struct builder *b, const struct identity *id);

#endif
