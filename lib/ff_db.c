#include "ff_db.h"

#include "ff_err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Mode of a database file we create: it holds password hashes, token
 * hashes and the like, so only the owning daemon's user may read it.
 * SQLite gives the -wal and -shm files the same mode as the database. */
#define DB_FILE_MODE 0600

struct db_stmt_slot {
    char *sql; /* text the statement was compiled from; NULL when empty */
    sqlite3_stmt *stmt;
    bool in_use;        /* handed out by ff_db_prepare, not yet given back */
    uint64_t last_used; /* conn->tick when last handed out, for eviction */
};

struct db_conn {
    struct ff_db *db;
    sqlite3 *h;
    struct db_conn *prev, *next; /* in db->conns, under db->mu */
    uint64_t tick;
    struct db_stmt_slot cache[FF_DB_STMT_CACHE_SIZE];
};

struct ff_db {
    char *path;
    pthread_key_t key; /* this thread's struct db_conn */
    bool key_made;
    pthread_mutex_t mu; /* guards conns: threads come and go concurrently */
    bool mu_made;
    struct db_conn *conns;
};

/* Copies the start of sql into out for an error message, whitespace runs
 * folded into one space so a multi-line statement stays on one line. */
static void sql_excerpt(const char *sql, char out[FF_DB_ERR_SQL_MAX + 4])
{
    size_t n = 0;
    bool space = false;
    const char *p = sql != NULL ? sql : "";
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    for (; *p != '\0' && n < FF_DB_ERR_SQL_MAX; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            space = true;
            continue;
        }
        if (space && n < FF_DB_ERR_SQL_MAX)
            out[n++] = ' ';
        space = false;
        if (n < FF_DB_ERR_SQL_MAX)
            out[n++] = (char)(ch < 0x20 ? '?' : ch);
    }
    if (*p != '\0') {
        while (n > 0 && out[n - 1] == ' ')
            n--;
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Maps an SQLite result code (plain or extended) to an FF_E* code. */
static int db_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return FF_EBUSY;
    case SQLITE_CONSTRAINT: return FF_ECONFLICT;
    case SQLITE_TOOBIG: return FF_ETOOBIG;
    case SQLITE_NOMEM: return FF_ENOMEM;
    default: return FF_EDB;
    }
}

/* Fills err from the connection's last error for statement sql. */
static int db_fail(struct ff_err *err, sqlite3 *h, int rc, const char *sql)
{
    char ex[FF_DB_ERR_SQL_MAX + 4];
    sql_excerpt(sql, ex);
    const char *msg = h != NULL ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
    int code = db_code(rc);
    if (code == FF_EBUSY)
        return ff_err_set(err, code, "statement \"%s\": %s (waited %d ms for the lock)", ex, msg,
                          FF_DB_BUSY_TIMEOUT_MS);
    return ff_err_set(err, code, "statement \"%s\": %s", ex, msg);
}

static int conn_exec(struct db_conn *c, const char *sql, struct ff_err *err)
{
    int rc = sqlite3_exec(c->h, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(err, c->h, rc, sql);
    return 0;
}

/* Finalizes the cached statements and closes the connection. sqlite3_close_v2
 * defers the close if a caller still holds an uncached statement, instead
 * of leaking the connection. */
static void conn_close(struct db_conn *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < FF_DB_STMT_CACHE_SIZE; i++) {
        sqlite3_finalize(c->cache[i].stmt);
        free(c->cache[i].sql);
    }
    sqlite3_close_v2(c->h);
    free(c);
}

/* Runs a one-value PRAGMA and checks the text it answers. */
static int conn_pragma_expect(struct db_conn *c, const char *sql, const char *want,
                              struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(err, c->h, rc, sql);
    int ret = 0;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        ret = db_fail(err, c->h, rc, sql);
        goto out;
    }
    const unsigned char *got = sqlite3_column_text(st, 0);
    if (got == NULL || strcmp((const char *)got, want) != 0) {
        ret = ff_err_set(err, FF_EDB, "statement \"%s\": answered \"%s\", expected \"%s\"", sql,
                         got != NULL ? (const char *)got : "", want);
        goto out;
    }
out:
    sqlite3_finalize(st);
    return ret;
}

/* Opens a connection to db's existing file and applies the settings every
 * connection needs (most PRAGMAs are per connection, not per file). */
static int conn_open(struct ff_db *db, struct db_conn **out, struct ff_err *err)
{
    struct db_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ff_err_set(err, FF_ENOMEM, "database \"%s\": out of memory", db->path);
        return FF_ENOMEM;
    }
    c->db = db;
    /* FULLMUTEX although each connection serves one thread: it costs an
     * uncontended lock per call and turns a statement wrongly passed to
     * another thread into serialised use rather than memory corruption. */
    int rc = sqlite3_open_v2(db->path, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
    int ret;
    if (rc != SQLITE_OK) {
        ret = ff_err_set(err, db_code(rc) == FF_ENOMEM ? FF_ENOMEM : FF_EDB, "open: %s",
                         c->h != NULL ? sqlite3_errmsg(c->h) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(c->h, 1);
    rc = sqlite3_busy_timeout(c->h, FF_DB_BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) {
        ret = ff_err_set(err, FF_EDB, "busy timeout: %s", sqlite3_errmsg(c->h));
        goto fail;
    }
    /* WAL: readers never block the writer nor the writer readers, which is
     * what a daemon serving pulls while pushes land needs. */
    ret = conn_pragma_expect(c, "PRAGMA journal_mode=WAL", "wal", err);
    if (ret != 0)
        goto fail;
    /* FULL, not WAL's usual NORMAL: NORMAL survives a crash of the process
     * but may lose the last commits on power loss, and a push or release
     * we acknowledged must not vanish when a device in the field reboots. */
    ret = conn_exec(c, "PRAGMA synchronous=FULL", err);
    if (ret != 0)
        goto fail;
    ret = conn_exec(c, "PRAGMA foreign_keys=ON", err);
    if (ret != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    ff_err_wrap(err, "database \"%s\"", db->path);
    conn_close(c);
    /* Every path here set ret; the guard keeps a failure from ever
     * reading as success (and tells the analyzer so). */
    return ret != 0 ? ret : FF_EDB;
}

/* Thread-exit destructor for db->key: closes that thread's connection. */
static void conn_thread_exit(void *p)
{
    struct db_conn *c = p;
    struct ff_db *db = c->db;
    pthread_mutex_lock(&db->mu);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        db->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&db->mu);
    conn_close(c);
}

/* This thread's connection, or NULL when it has not used db yet. */
static struct db_conn *conn_peek(struct ff_db *db)
{
    return pthread_getspecific(db->key);
}

/* This thread's connection, opened on first use. */
static int conn_get(struct ff_db *db, struct db_conn **out, struct ff_err *err)
{
    struct db_conn *c = conn_peek(db);
    if (c != NULL) {
        *out = c;
        return 0;
    }
    int ret = conn_open(db, &c, err);
    if (ret != 0)
        return ret;
    if (pthread_setspecific(db->key, c) != 0) {
        conn_close(c);
        ff_err_set(err, FF_ENOMEM, "database \"%s\": cannot record the thread's connection",
                   db->path);
        return FF_ENOMEM;
    }
    pthread_mutex_lock(&db->mu);
    c->next = db->conns;
    if (db->conns != NULL)
        db->conns->prev = c;
    db->conns = c;
    pthread_mutex_unlock(&db->mu);
    *out = c;
    return 0;
}

/* Highest recorded schema version, 0 for a fresh database. */
static int conn_schema_version(struct db_conn *c, int64_t *out, struct ff_err *err)
{
    static const char sql[] = "SELECT coalesce(max(version), 0) FROM schema_migrations";
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(err, c->h, rc, sql);
    int ret = 0;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        ret = db_fail(err, c->h, rc, sql);
    else
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ret;
}

/* Applies migration m in one transaction with the row that records it,
 * unless another process applied it since we looked. */
static int conn_apply(struct db_conn *c, const struct ff_db_migration *m, struct ff_err *err)
{
    static const char record[] =
        "INSERT INTO schema_migrations(version, applied_at) VALUES (?, unixepoch())";
    sqlite3_stmt *st = NULL;
    int ret = conn_exec(c, "BEGIN IMMEDIATE", err);
    if (ret != 0)
        return ret;
    int64_t current = 0;
    ret = conn_schema_version(c, &current, err);
    if (ret != 0)
        goto fail;
    if (current >= m->version)
        return conn_exec(c, "COMMIT", err);
    int rc = sqlite3_exec(c->h, m->sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        /* A constraint failing inside a migration is a broken migration,
         * not a conflict between writers, so only BUSY and NOMEM keep their
         * own codes. */
        ret = db_fail(err, c->h, rc, m->sql);
        if (ret != FF_EBUSY && ret != FF_ENOMEM) {
            ret = FF_EDB;
            if (err != NULL)
                err->code = FF_EDB;
        }
        goto fail;
    }
    if (sqlite3_get_autocommit(c->h)) {
        ret = ff_err_set(err, FF_EINVAL,
                         "ends its own transaction (no BEGIN, COMMIT or ROLLBACK "
                         "in migrations)");
        goto fail;
    }
    rc = sqlite3_prepare_v2(c->h, record, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, m->version);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        ret = db_fail(err, c->h, rc, record);
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    return conn_exec(c, "COMMIT", err);
fail:
    sqlite3_finalize(st);
    if (!sqlite3_get_autocommit(c->h))
        (void)sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
    return ret;
}

static int conn_migrate(struct db_conn *c, const struct ff_db_migration *migrations, size_t n,
                        struct ff_err *err)
{
    int ret = conn_exec(c,
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                        err);
    if (ret != 0)
        return ret;
    int64_t current = 0;
    ret = conn_schema_version(c, &current, err);
    if (ret != 0)
        return ret;
    int known = n > 0 ? migrations[n - 1].version : 0;
    if (current > known)
        return ff_err_set(err, FF_EDB,
                          "database schema version %lld is newer than this program (knows up to "
                          "%d)",
                          (long long)current, known);
    for (size_t i = 0; i < n; i++) {
        if (migrations[i].version <= current)
            continue;
        ret = conn_apply(c, &migrations[i], err);
        if (ret != 0)
            return ff_err_wrap(err, "migration %d", migrations[i].version);
    }
    return 0;
}

static int check_migrations(const struct ff_db_migration *migrations, size_t n, struct ff_err *err)
{
    if (n > 0 && migrations == NULL)
        return ff_err_set(err, FF_EINVAL, "migrations: NULL array of %zu", n);
    int prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (migrations[i].version <= prev)
            return ff_err_set(err, FF_EINVAL,
                              "migration %zu: version %d after %d, expected versions strictly "
                              "increasing from 1",
                              i, migrations[i].version, prev);
        if (migrations[i].sql == NULL)
            return ff_err_set(err, FF_EINVAL, "migration %d: sql is NULL", migrations[i].version);
        prev = migrations[i].version;
    }
    return 0;
}

/* Creates the file with DB_FILE_MODE when it does not exist yet, so that
 * SQLite (which would use 0644) never creates it. */
static int create_file(const char *path, struct ff_err *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, DB_FILE_MODE);
    if (fd < 0) {
        if (errno == EEXIST)
            return 0;
        return ff_err_set(err, FF_EIO, "database \"%s\": cannot create: %s", path, strerror(errno));
    }
    /* The umask may have removed bits we want (the owner's write bit). */
    int ret = 0;
    if (fchmod(fd, DB_FILE_MODE) != 0)
        ret = ff_err_set(err, FF_EIO, "database \"%s\": chmod: %s", path, strerror(errno));
    if (close(fd) != 0 && ret == 0)
        ret = ff_err_set(err, FF_EIO, "database \"%s\": close: %s", path, strerror(errno));
    return ret;
}

int ff_db_open(const char *path, const struct ff_db_migration *migrations, size_t n,
               struct ff_db **out, struct ff_err *err)
{
    struct ff_db *db = NULL;
    int ret = check_migrations(migrations, n, err);
    if (ret != 0)
        return ret;
    if (!sqlite3_threadsafe())
        return ff_err_set(err, FF_EDB, "database \"%s\": sqlite was built without thread support",
                          path);
    ret = create_file(path, err);
    if (ret != 0)
        return ret;
    db = calloc(1, sizeof(*db));
    if (db == NULL)
        return ff_err_set(err, FF_ENOMEM, "database \"%s\": out of memory", path);
    db->path = strdup(path);
    if (db->path == NULL) {
        ret = ff_err_set(err, FF_ENOMEM, "database \"%s\": out of memory", path);
        goto fail;
    }
    if (pthread_mutex_init(&db->mu, NULL) != 0) {
        ret = ff_err_set(err, FF_ENOMEM, "database \"%s\": cannot create a mutex", path);
        goto fail;
    }
    db->mu_made = true;
    if (pthread_key_create(&db->key, conn_thread_exit) != 0) {
        ret = ff_err_set(err, FF_ENOMEM, "database \"%s\": cannot create a thread key", path);
        goto fail;
    }
    db->key_made = true;
    struct db_conn *c = NULL;
    ret = conn_get(db, &c, err);
    if (ret != 0)
        goto fail;
    ret = conn_migrate(c, migrations, n, err);
    if (ret != 0) {
        ff_err_wrap(err, "database \"%s\"", path);
        goto fail;
    }
    *out = db;
    return 0;
fail:
    ff_db_free(db);
    return ret;
}

void ff_db_free(struct ff_db *db)
{
    if (db == NULL)
        return;
    if (db->key_made) {
        /* Deleting the key first means no exiting thread's destructor can
         * run on a connection closed below. */
        pthread_key_delete(db->key);
    }
    struct db_conn *c = db->conns;
    while (c != NULL) {
        struct db_conn *next = c->next;
        conn_close(c);
        c = next;
    }
    if (db->mu_made)
        pthread_mutex_destroy(&db->mu);
    free(db->path);
    free(db);
}

int ff_db_exec(struct ff_db *db, const char *sql, struct ff_err *err)
{
    struct db_conn *c = NULL;
    int ret = conn_get(db, &c, err);
    if (ret != 0)
        return ret;
    return conn_exec(c, sql, err);
}

int ff_db_prepare(struct ff_db *db, const char *sql, sqlite3_stmt **out, struct ff_err *err)
{
    struct db_conn *c = NULL;
    int ret = conn_get(db, &c, err);
    if (ret != 0)
        return ret;
    c->tick++;
    struct db_stmt_slot *empty = NULL, *lru = NULL;
    for (size_t i = 0; i < FF_DB_STMT_CACHE_SIZE; i++) {
        struct db_stmt_slot *s = &c->cache[i];
        if (s->stmt == NULL) {
            if (empty == NULL)
                empty = s;
            continue;
        }
        if (s->in_use)
            continue;
        if (strcmp(s->sql, sql) == 0) {
            s->in_use = true;
            s->last_used = c->tick;
            *out = s->stmt;
            return 0;
        }
        if (lru == NULL || s->last_used < lru->last_used)
            lru = s;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(c->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK)
        return db_fail(err, c->h, rc, sql);
    char ex[FF_DB_ERR_SQL_MAX + 4];
    if (st == NULL) {
        sql_excerpt(sql, ex);
        return ff_err_set(err, FF_EINVAL, "statement \"%s\": holds no SQL", ex);
    }
    while (tail != NULL && (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == '\r'))
        tail++;
    if (tail != NULL && *tail != '\0') {
        sqlite3_finalize(st);
        sql_excerpt(sql, ex);
        return ff_err_set(err, FF_EINVAL,
                          "statement \"%s\": holds more than one statement, expected one", ex);
    }
    struct db_stmt_slot *slot = empty != NULL ? empty : lru;
    if (slot == NULL) {
        /* Every slot is handed out (deeply nested queries): serve this
         * one uncached; ff_db_finalize will finalize it. */
        *out = st;
        return 0;
    }
    char *copy = strdup(sql);
    if (copy == NULL) {
        sqlite3_finalize(st);
        return ff_err_set(err, FF_ENOMEM, "statement: out of memory");
    }
    sqlite3_finalize(slot->stmt);
    free(slot->sql);
    slot->sql = copy;
    slot->stmt = st;
    slot->in_use = true;
    slot->last_used = c->tick;
    *out = st;
    return 0;
}

/* Reports a failed bind on parameter idx of stmt. */
static int bind_fail(sqlite3_stmt *stmt, int idx, int rc, struct ff_err *err)
{
    char ex[FF_DB_ERR_SQL_MAX + 4];
    sql_excerpt(sqlite3_sql(stmt), ex);
    int code = (rc & 0xff) == SQLITE_RANGE ? FF_EINVAL : db_code(rc);
    if (code == FF_EDB || code == FF_EBUSY)
        code = FF_EINVAL;
    return ff_err_set(err, code, "statement \"%s\": parameter %d: %s", ex, idx, sqlite3_errstr(rc));
}

int ff_db_bind_text(sqlite3_stmt *stmt, int idx, const char *s, struct ff_err *err)
{
    int rc = s == NULL
                 ? sqlite3_bind_null(stmt, idx)
                 : sqlite3_bind_text64(stmt, idx, s, strlen(s), SQLITE_TRANSIENT, SQLITE_UTF8);
    return rc == SQLITE_OK ? 0 : bind_fail(stmt, idx, rc, err);
}

int ff_db_bind_int64(sqlite3_stmt *stmt, int idx, int64_t v, struct ff_err *err)
{
    int rc = sqlite3_bind_int64(stmt, idx, v);
    return rc == SQLITE_OK ? 0 : bind_fail(stmt, idx, rc, err);
}

int ff_db_bind_blob(sqlite3_stmt *stmt, int idx, const void *p, size_t n, struct ff_err *err)
{
    /* SQLite binds a NULL pointer as SQL NULL; an empty blob is wanted. */
    static const char empty[1];
    int rc = sqlite3_bind_blob64(stmt, idx, p != NULL ? p : empty, n, SQLITE_TRANSIENT);
    return rc == SQLITE_OK ? 0 : bind_fail(stmt, idx, rc, err);
}

int ff_db_bind_null(sqlite3_stmt *stmt, int idx, struct ff_err *err)
{
    int rc = sqlite3_bind_null(stmt, idx);
    return rc == SQLITE_OK ? 0 : bind_fail(stmt, idx, rc, err);
}

int ff_db_step(sqlite3_stmt *stmt, struct ff_err *err)
{
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_fail(err, sqlite3_db_handle(stmt), rc, sqlite3_sql(stmt));
}

void ff_db_finalize(struct ff_db *db, sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return;
    struct db_conn *c = conn_peek(db);
    if (c != NULL) {
        for (size_t i = 0; i < FF_DB_STMT_CACHE_SIZE; i++) {
            if (c->cache[i].stmt == stmt) {
                /* reset reports the last step's error again; that error
                 * was already returned by ff_db_step. */
                (void)sqlite3_reset(stmt);
                (void)sqlite3_clear_bindings(stmt);
                c->cache[i].in_use = false;
                return;
            }
        }
    }
    sqlite3_finalize(stmt);
}

int ff_db_begin(struct ff_db *db, struct ff_err *err)
{
    struct db_conn *c = NULL;
    int ret = conn_get(db, &c, err);
    if (ret != 0)
        return ret;
    if (!sqlite3_get_autocommit(c->h))
        FF_BUG("ff_db_begin: this thread already has a transaction open");
    return conn_exec(c, "BEGIN IMMEDIATE", err);
}

int ff_db_commit(struct ff_db *db, struct ff_err *err)
{
    struct db_conn *c = conn_peek(db);
    if (c == NULL || sqlite3_get_autocommit(c->h))
        FF_BUG("ff_db_commit: this thread has no transaction open");
    int ret = conn_exec(c, "COMMIT", err);
    if (ret != 0 && !sqlite3_get_autocommit(c->h)) {
        /* A failed COMMIT can leave the transaction open (SQLITE_BUSY);
         * roll back so the caller never holds a half-finished one. */
        (void)sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
    }
    return ret;
}

int ff_db_rollback(struct ff_db *db, struct ff_err *err)
{
    struct db_conn *c = conn_peek(db);
    if (c == NULL || sqlite3_get_autocommit(c->h))
        return 0;
    return conn_exec(c, "ROLLBACK", err);
}

int64_t ff_db_last_insert_id(struct ff_db *db)
{
    struct db_conn *c = conn_peek(db);
    return c != NULL ? sqlite3_last_insert_rowid(c->h) : 0;
}

int ff_db_changes(struct ff_db *db)
{
    struct db_conn *c = conn_peek(db);
    return c != NULL ? sqlite3_changes(c->h) : 0;
}
