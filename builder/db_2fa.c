/* Two-factor state in SQLite: the TOTP secret of each user (pending until
 * confirmed), the last time step a code was accepted for, and recovery
 * codes, of which only SHA-256 hashes are stored. Every "use a code" is a
 * compare-and-set in one statement, so a code is accepted once even when
 * requests race. */
#include "builder.h"

#include "ff_str.h"

#include <string.h>

int db_2fa_get(struct db *db, int64_t user_id, struct totp_state *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    out->last_step = -1;
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "SELECT totp_secret, totp_enabled_at, totp_last_step FROM users "
                           "WHERE id = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "user %lld not found", (long long)user_id);
    if (rc == 1) {
        rc = 0;
        const char *secret = (const char *)sqlite3_column_text(st, 0);
        if (secret != NULL &&
            ff_strlcpy(out->secret, secret, sizeof(out->secret)) >= sizeof(out->secret))
            rc = ff_err_set(err, FF_EDB, "user %lld: stored two-factor secret too long",
                            (long long)user_id);
        out->enabled = secret != NULL && sqlite3_column_type(st, 1) != SQLITE_NULL;
        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
            out->last_step = sqlite3_column_int64(st, 2);
    }
    ff_db_finalize(h, st);
    if (rc != 0)
        ff_secret_wipe(out->secret, sizeof(out->secret));
    return rc;
}

int db_2fa_enrol(struct db *db, int64_t user_id, const char *secret_b32, struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "UPDATE users SET totp_secret = ?, totp_last_step = NULL "
                           "WHERE id = ? AND totp_enabled_at IS NULL", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, secret_b32, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, user_id, err);
    if (rc != 0) {
        ff_db_finalize(h, st);
        return rc;
    }
    rc = db_step_done(db, st, "two-factor secret", err);
    if (rc == 0 && ff_db_changes(h) == 0)
        rc = ff_err_set(err, FF_ECONFLICT, "two-factor authentication is already enabled; "
                        "disable it first");
    return rc;
}

/* Inserts the hash of one recovery code of user_id. */
static int recovery_insert(struct db *db, int64_t user_id, const char *code,
                           struct ff_err *err)
{
    char canon[RECOVERY_CODE_CHARS + 1];
    int rc = totp_recovery_normalise(code, canon, err);
    if (rc != 0)
        return rc;
    char hash[FF_SECRET_HASH_HEX_SIZE];
    ff_secret_token_hash(canon, hash);
    ff_secret_wipe(canon, sizeof(canon));
    if (hash[0] == '\0')
        return ff_err_set(err, FF_ECRYPTO, "recovery code: SHA-256 failed");
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    rc = ff_db_prepare(h, "INSERT INTO recovery_codes(user_id, hash) VALUES (?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, hash, err);
    if (rc != 0) {
        ff_db_finalize(h, st);
        return rc;
    }
    return db_step_done(db, st, "recovery code", err);
}

/* Runs one statement binding user_id at 1; *changes gets the rows changed. */
static int exec_user(struct db *db, const char *sql, int64_t user_id, int *changes,
                     struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, sql, &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc != 0) {
        ff_db_finalize(h, st);
        return rc;
    }
    rc = db_step_done(db, st, "two-factor state", err);
    if (rc == 0 && changes != NULL)
        *changes = ff_db_changes(h);
    return rc;
}

/* Marks secret_b32 enabled at now with step used, if it is still the
 * pending secret and step is new. */
static int enable_row(struct db *db, int64_t user_id, const char *secret_b32, int64_t step,
                      int64_t now, struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(h, "UPDATE users SET totp_enabled_at = ?3, totp_last_step = ?4 "
                           "WHERE id = ?1 AND totp_secret = ?2 AND totp_enabled_at IS NULL AND "
                           "(totp_last_step IS NULL OR totp_last_step < ?4)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, secret_b32, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, now, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, step, err);
    if (rc != 0) {
        ff_db_finalize(h, st);
        return rc;
    }
    rc = db_step_done(db, st, "two-factor state", err);
    if (rc == 0 && ff_db_changes(h) == 0)
        rc = ff_err_set(err, FF_ECONFLICT, "two-factor enrolment changed meanwhile (enabled, "
                        "enrolled again, or code already used); try again");
    return rc;
}

int db_2fa_enable(struct db *db, int64_t user_id, const char *secret_b32, int64_t step,
                  int64_t now, const char *const *codes, size_t n, struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    int rc = ff_db_begin(h, err);
    if (rc != 0)
        return rc;
    rc = enable_row(db, user_id, secret_b32, step, now, err);
    if (rc == 0)
        rc = exec_user(db, "DELETE FROM recovery_codes WHERE user_id = ?", user_id, NULL, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = recovery_insert(db, user_id, codes[i], err);
    if (rc == 0)
        rc = ff_db_commit(h, err);
    if (rc != 0)
        (void)ff_db_rollback(h, NULL);
    return rc;
}

int db_2fa_step_use(struct db *db, int64_t user_id, const char *secret_b32, int64_t step,
                    struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    /* The comparison and the write are one statement: of two requests
     * carrying the same code, SQLite's write lock lets exactly one see
     * totp_last_step below step. */
    int rc = ff_db_prepare(h, "UPDATE users SET totp_last_step = ?3 WHERE id = ?1 AND "
                           "totp_secret = ?2 AND totp_enabled_at IS NOT NULL AND "
                           "(totp_last_step IS NULL OR totp_last_step < ?3)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, secret_b32, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, step, err);
    if (rc != 0) {
        ff_db_finalize(h, st);
        return rc;
    }
    rc = db_step_done(db, st, "two-factor state", err);
    if (rc == 0 && ff_db_changes(h) == 0)
        rc = ff_err_set(err, FF_EAUTH, "two-factor code is wrong or already used");
    return rc;
}

int db_2fa_recovery_use(struct db *db, int64_t user_id, const char *code, int64_t now,
                        int64_t *out_left, struct ff_err *err)
{
    char canon[RECOVERY_CODE_CHARS + 1];
    int rc = totp_recovery_normalise(code, canon, err);
    if (rc != 0)
        return rc;
    char hash[FF_SECRET_HASH_HEX_SIZE];
    ff_secret_token_hash(canon, hash);
    ff_secret_wipe(canon, sizeof(canon));
    if (hash[0] == '\0')
        return ff_err_set(err, FF_ECRYPTO, "recovery code: SHA-256 failed");
    struct ff_db *h = db_handle(db);
    sqlite3_stmt *st = NULL;
    /* Looked up by hash, an index probe: the hash of a 100-bit random code
     * gives nothing away through timing. */
    rc = ff_db_prepare(h, "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND "
                       "hash = ?2 AND used_at IS NULL", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, hash, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, now, err);
    if (rc != 0) {
        ff_db_finalize(h, st);
        return rc;
    }
    rc = db_step_done(db, st, "recovery code", err);
    if (rc == 0 && ff_db_changes(h) == 0)
        rc = ff_err_set(err, FF_EAUTH, "recovery code is wrong or already used");
    if (rc != 0 || out_left == NULL)
        return rc;
    rc = ff_db_prepare(h, "SELECT count(*) FROM recovery_codes WHERE user_id = ? AND "
                       "used_at IS NULL", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, user_id, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *out_left = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == 0) {
        *out_left = 0;
    }
    ff_db_finalize(h, st);
    return rc;
}

int db_2fa_disable(struct db *db, int64_t user_id, struct ff_err *err)
{
    struct ff_db *h = db_handle(db);
    int rc = ff_db_begin(h, err);
    if (rc != 0)
        return rc;
    int changes = 0;
    rc = exec_user(db, "UPDATE users SET totp_secret = NULL, totp_enabled_at = NULL, "
                   "totp_last_step = NULL WHERE id = ? AND totp_enabled_at IS NOT NULL",
                   user_id, &changes, err);
    if (rc == 0 && changes == 0)
        rc = ff_err_set(err, FF_ECONFLICT, "two-factor authentication is not enabled");
    if (rc == 0)
        rc = exec_user(db, "DELETE FROM recovery_codes WHERE user_id = ?", user_id, NULL, err);
    if (rc == 0)
        rc = ff_db_commit(h, err);
    if (rc != 0)
        (void)ff_db_rollback(h, NULL);
    return rc;
}
