/* Users' SSH public keys in table ssh_keys. A key (by its fingerprint,
 * UNIQUE) belongs to one user at most: ff-gitd turns the key an SSH client
 * proves it holds into exactly one user. */
#include "builder.h"

#include "ff_str.h"

#include <string.h>

/* The JSON a key is shown as, from columns id, name, type, fingerprint,
 * created_at. */
static json_t *key_json(sqlite3_stmt *st)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                     "name", (const char *)sqlite3_column_text(st, 1), "type",
                     (const char *)sqlite3_column_text(st, 2), "fingerprint",
                     (const char *)sqlite3_column_text(st, 3), "created_at",
                     (json_int_t)sqlite3_column_int64(st, 4));
}

/* Counts user_id's keys into *out. */
static int key_count(struct ff_db *h, int64_t user_id, int64_t *out, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "SELECT count(*) FROM ssh_keys WHERE user_id = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_EDB, "db: count(*) returned no row");
    }
    ff_db_finalize(h, st);
    return rc;
}

/* Inserts the key; returns its row as key_json shows it. */
static int key_insert(struct ff_db *h, int64_t user_id, const char *name,
                      const struct sshkey *k, json_t **out, struct ff_err *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "INSERT INTO ssh_keys(user_id, name, type, fingerprint, "
                           "public_key, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                           "RETURNING id, name, type, fingerprint, created_at", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, k->type, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 4, k->fingerprint, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 5, k->line, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 6, (int64_t)time(NULL), err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *out = key_json(st);
        rc = *out != NULL ? ff_db_step(st, err) : ff_err_set(err, FF_ENOMEM,
                                                             "db: out of memory");
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_EDB, "db: INSERT ... RETURNING returned no row");
    }
    ff_db_finalize(h, st);
    /* Only the fingerprint is UNIQUE in ssh_keys (user_id is a valid
     * reference, as the caller is authenticated as that user). The owner
     * is not named: keys are public, but who uses one is not. */
    if (rc == FF_ECONFLICT)
        rc = ff_err_set(err, FF_EEXIST, "this key is already registered");
    if (rc < 0) {
        json_decref(*out);
        *out = NULL;
        return rc;
    }
    return 0;
}

int db_key_add(struct db *db, int64_t user_id, const char *name, const struct sshkey *k,
               json_t **out, struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    json_t *row = NULL;
    int64_t n = 0;
    /* One write transaction, so two concurrent adds cannot both pass the
     * count. */
    int rc = ff_db_begin(h, err);
    if (rc != 0)
        return rc;
    rc = key_count(h, user_id, &n, err);
    if (rc == 0 && n >= KEYS_PER_USER_MAX)
        rc = ff_err_set(err, FF_ECONFLICT, "you hold %d SSH keys already (at most %d); remove "
                        "one first", (int)n, KEYS_PER_USER_MAX);
    if (rc == 0)
        rc = key_insert(h, user_id, name, k, &row, err);
    if (rc == 0)
        rc = ff_db_commit(h, err);
    if (rc != 0) {
        (void)ff_db_rollback(h, NULL);
        json_decref(row);
        return rc;
    }
    *out = row;
    return 0;
}

int db_key_list(struct db *db, int64_t user_id, int64_t after, int limit, json_t **out,
                int64_t *out_next, struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    json_t *items = json_array();
    if (items == NULL)
        return ff_err_set(err, FF_ENOMEM, "db: out of memory");
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "SELECT id, name, type, fingerprint, created_at FROM ssh_keys "
                           "WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?", &st, err);
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
        json_t *o = key_json(st);
        if (o == NULL || json_array_append_new(items, o) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "db: out of memory");
        n++;
    }
    ff_db_finalize(h, st);
    if (rc < 0) {
        json_decref(items);
        return rc;
    }
    *out = items;
    *out_next = next;
    return 0;
}

int db_key_delete(struct db *db, int64_t user_id, int64_t id,
                  char fingerprint[SSHKEY_FINGERPRINT_LEN + 1], struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "DELETE FROM ssh_keys WHERE id = ? AND user_id = ? "
                           "RETURNING fingerprint", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, user_id, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "SSH key %lld not found", (long long)id);
    if (rc == 1) {
        const char *fp = (const char *)sqlite3_column_text(st, 0);
        ff_strlcpy(fingerprint, fp != NULL ? fp : "", SSHKEY_FINGERPRINT_LEN + 1);
        rc = ff_db_step(st, err);
    }
    ff_db_finalize(h, st);
    return rc < 0 ? rc : 0;
}

int db_key_lookup(struct db *db, const char *fingerprint, struct user *out_user,
                  int64_t *out_key_id, struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "SELECT k.id, u.id, u.name, u.role FROM ssh_keys k "
                           "JOIN users u ON u.id = k.user_id WHERE k.fingerprint = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, fingerprint, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "no user holds the SSH key %s", fingerprint);
    if (rc == 1) {
        rc = 0;
        *out_key_id = sqlite3_column_int64(st, 0);
        memset(out_user, 0, sizeof(*out_user));
        out_user->id = sqlite3_column_int64(st, 1);
        const char *name = (const char *)sqlite3_column_text(st, 2);
        ff_strlcpy(out_user->name, name != NULL ? name : "", sizeof(out_user->name));
        const char *role = (const char *)sqlite3_column_text(st, 3);
        out_user->role = role != NULL && strcmp(role, "admin") == 0 ? ROLE_ADMIN : ROLE_USER;
    }
    ff_db_finalize(h, st);
    return rc;
}
