#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_db.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* snprintf that fails the test when the text does not fit. */
static void fmt(char *buf, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t size, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, size, f, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < size);
}

/* Each test gets a fresh directory holding its database. */
struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    fmt(f->dir, sizeof(f->dir), "/tmp/ff-test-db-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    fmt(f->path, sizeof(f->path), "%s/test.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            fmt(p, sizeof(p), "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Runs a query that answers one integer. */
static int64_t query_int(struct ff_db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_prepare(db, sql, &st, &err), 0);
    assert_int_equal(ff_db_step(st, &err), 1);
    int64_t v = sqlite3_column_int64(st, 0);
    assert_int_equal(ff_db_step(st, &err), 0);
    ff_db_finalize(db, st);
    return v;
}

/* Runs a query that answers one text value and compares it. */
static void assert_query_text(struct ff_db *db, const char *sql, const char *want)
{
    sqlite3_stmt *st = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_prepare(db, sql, &st, &err), 0);
    assert_int_equal(ff_db_step(st, &err), 1);
    const unsigned char *got = sqlite3_column_text(st, 0);
    assert_non_null(got);
    assert_string_equal((const char *)got, want);
    ff_db_finalize(db, st);
}

static bool table_exists(struct ff_db *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    struct ff_err err = {0};
    assert_int_equal(
        ff_db_prepare(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                      &st, &err),
        0);
    assert_int_equal(ff_db_bind_text(st, 1, name, &err), 0);
    assert_int_equal(ff_db_step(st, &err), 1);
    bool found = sqlite3_column_int64(st, 0) == 1;
    ff_db_finalize(db, st);
    return found;
}

static const struct ff_db_migration schema_v3[] = {
    {1, "CREATE TABLE apps (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"},
    /* Needs the table from version 1, so it only works in order. */
    {2, "ALTER TABLE apps ADD COLUMN arch TEXT NOT NULL DEFAULT 'amd64';\n"
        "CREATE INDEX apps_arch ON apps(arch);"},
    {3, "CREATE TABLE builds (id INTEGER PRIMARY KEY,\n"
        "  app_id INTEGER NOT NULL REFERENCES apps(id), status TEXT NOT NULL);"},
};

static void test_migrations_apply_in_order(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM schema_migrations"), 3);
    assert_int_equal(query_int(db, "SELECT group_concat(version) = '1,2,3' FROM "
                                   "(SELECT version FROM schema_migrations ORDER BY version)"),
                     1);
    assert_int_equal(query_int(db, "SELECT min(applied_at) > 1700000000 FROM schema_migrations"),
                     1);
    assert_true(table_exists(db, "apps"));
    assert_true(table_exists(db, "builds"));
    assert_int_equal(ff_db_exec(db, "INSERT INTO apps(name) VALUES ('x')", &err), 0);
    assert_query_text(db, "SELECT arch FROM apps", "amd64");
    ff_db_free(db);
}

static void test_reopen_applies_only_new(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 2, &db, &err), 0);
    assert_false(table_exists(db, "builds"));
    ff_db_free(db);

    /* Versions 1 and 2 would fail if run again (the table and index exist),
     * so success shows that only version 3 ran. */
    db = NULL;
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    assert_true(table_exists(db, "builds"));
    assert_int_equal(query_int(db, "SELECT max(version) FROM schema_migrations"), 3);
    assert_int_equal(query_int(db, "SELECT count(*) FROM schema_migrations"), 3);
    ff_db_free(db);

    db = NULL;
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM schema_migrations"), 3);
    ff_db_free(db);
}

static void test_failing_migration_rolls_back(void **state)
{
    struct fixture *f = *state;
    const struct ff_db_migration bad[] = {
        {1, "CREATE TABLE apps (id INTEGER PRIMARY KEY);"},
        {2, "CREATE TABLE half (x INTEGER);\nINSERT INTO half VALUES (1);\n"
            "INSERT INTO nosuch VALUES (1);"},
    };
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, bad, 2, &db, &err), FF_EDB);
    assert_null(db);
    assert_int_equal(err.code, FF_EDB);
    assert_non_null(strstr(err.msg, "migration 2"));
    assert_non_null(strstr(err.msg, "no such table: nosuch"));
    assert_non_null(strstr(err.msg, "statement \"CREATE TABLE half (x INTEGER); INSERT INTO"));

    assert_int_equal(ff_db_open(f->path, bad, 1, &db, &err), 0);
    assert_true(table_exists(db, "apps"));
    assert_false(table_exists(db, "half"));
    assert_int_equal(query_int(db, "SELECT max(version) FROM schema_migrations"), 1);
    ff_db_free(db);
}

static void test_migration_may_not_commit(void **state)
{
    struct fixture *f = *state;
    const struct ff_db_migration bad[] = {
        {1, "CREATE TABLE a (x INTEGER); COMMIT;"},
    };
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, bad, 1, &db, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "ends its own transaction"));
}

static void test_newer_schema_refused(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    ff_db_free(db);
    db = NULL;
    assert_int_equal(ff_db_open(f->path, schema_v3, 2, &db, &err), FF_EDB);
    assert_null(db);
    assert_non_null(
        strstr(err.msg, "database schema version 3 is newer than this program (knows up to 2)"));
}

static void test_bad_migration_lists(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    const struct ff_db_migration backwards[] = {{2, "SELECT 1"}, {1, "SELECT 1"}};
    assert_int_equal(ff_db_open(f->path, backwards, 2, &db, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "strictly increasing"));
    const struct ff_db_migration twice[] = {{1, "SELECT 1"}, {1, "SELECT 1"}};
    assert_int_equal(ff_db_open(f->path, twice, 2, &db, &err), FF_EINVAL);
    const struct ff_db_migration zero[] = {{0, "SELECT 1"}};
    assert_int_equal(ff_db_open(f->path, zero, 1, &db, &err), FF_EINVAL);
    const struct ff_db_migration nosql[] = {{1, NULL}};
    assert_int_equal(ff_db_open(f->path, nosql, 1, &db, &err), FF_EINVAL);
    assert_null(db);
}

static void test_settings(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, NULL, 0, &db, &err), 0);
    assert_query_text(db, "PRAGMA journal_mode", "wal");
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(query_int(db, "PRAGMA busy_timeout"), FF_DB_BUSY_TIMEOUT_MS);
    ff_db_free(db);
}

static void test_file_mode(void **state)
{
    struct fixture *f = *state;
    mode_t old = umask(0);
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    int rc = ff_db_open(f->path, schema_v3, 1, &db, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(ff_db_exec(db, "INSERT INTO apps(name) VALUES ('a')", &err), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char wal[160];
    fmt(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    ff_db_free(db);
}

static void test_open_errors(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    char p[160];
    fmt(p, sizeof(p), "%s/no/such/dir.db", f->dir);
    assert_int_equal(ff_db_open(p, NULL, 0, &db, &err), FF_EIO);
    assert_non_null(strstr(err.msg, "no/such/dir.db"));

    /* A file that is not a database. */
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_true(fputs("this is not an sqlite database, just some text that is long enough\n", fp) >=
                0);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(ff_db_open(f->path, NULL, 0, &db, &err), FF_EDB);
    assert_non_null(strstr(err.msg, "not a database"));
    assert_null(db);
}

static void test_unique_violation_is_conflict(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    sqlite3_stmt *st = NULL;
    const char *ins = "INSERT INTO apps(name) VALUES (?)";
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ff_db_prepare(db, ins, &st, &err), 0);
        assert_int_equal(ff_db_bind_text(st, 1, "web", &err), 0);
        int rc = ff_db_step(st, &err);
        ff_db_finalize(db, st);
        if (i == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(ff_db_changes(db), 1);
            assert_int_equal(ff_db_last_insert_id(db), 1);
        } else {
            assert_int_equal(rc, FF_ECONFLICT);
            assert_non_null(strstr(err.msg, "UNIQUE constraint failed: apps.name"));
            assert_non_null(strstr(err.msg, "statement \"INSERT INTO apps(name) VALUES (?)\""));
        }
    }
    /* A foreign key to a missing app is a conflict too. */
    assert_int_equal(
        ff_db_exec(db, "INSERT INTO builds(app_id, status) VALUES (42, 'queued')", &err),
        FF_ECONFLICT);
    assert_non_null(strstr(err.msg, "FOREIGN KEY constraint failed"));
    ff_db_free(db);
}

static void test_transactions(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);

    /* Nothing to roll back: fine, so failure paths can always call it. */
    assert_int_equal(ff_db_rollback(db, &err), 0);

    assert_int_equal(ff_db_begin(db, &err), 0);
    for (int i = 0; i < 5; i++) {
        sqlite3_stmt *st = NULL;
        char name[16];
        fmt(name, sizeof(name), "app%d", i);
        assert_int_equal(ff_db_prepare(db, "INSERT INTO apps(name, arch) VALUES (?, ?)", &st, &err),
                         0);
        assert_int_equal(ff_db_bind_text(st, 1, name, &err), 0);
        assert_int_equal(ff_db_bind_text(st, 2, "arm64", &err), 0);
        assert_int_equal(ff_db_step(st, &err), 0);
        ff_db_finalize(db, st);
    }
    assert_int_equal(query_int(db, "SELECT count(*) FROM apps"), 5);
    assert_int_equal(ff_db_rollback(db, &err), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM apps"), 0);

    assert_int_equal(ff_db_begin(db, &err), 0);
    assert_int_equal(ff_db_exec(db, "INSERT INTO apps(name) VALUES ('kept')", &err), 0);
    int64_t id = ff_db_last_insert_id(db);
    assert_true(id > 0);
    assert_int_equal(ff_db_commit(db, &err), 0);
    ff_db_free(db);

    /* Committed data is there for the next opener. */
    db = NULL;
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM apps WHERE name = 'kept'"), 1);
    ff_db_free(db);
}

static void test_nested_begin_is_a_bug(void **state)
{
    struct fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Keep the expected abort message out of the test output. */
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(3);
        struct ff_db *db = NULL;
        if (ff_db_open(f->path, NULL, 0, &db, NULL) != 0)
            _exit(2);
        if (ff_db_begin(db, NULL) != 0)
            _exit(2);
        ff_db_begin(db, NULL);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_bad_sql(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);

    sqlite3_stmt *st = NULL;
    assert_int_equal(ff_db_prepare(db, "SELEKT * FROM apps", &st, &err), FF_EDB);
    assert_non_null(strstr(err.msg, "statement \"SELEKT * FROM apps\""));
    assert_non_null(strstr(err.msg, "syntax error"));

    assert_int_equal(ff_db_prepare(db, "SELECT * FROM missing_table", &st, &err), FF_EDB);
    assert_non_null(strstr(err.msg, "no such table: missing_table"));

    assert_int_equal(ff_db_exec(db, "CREATE TABEL x (y)", &err), FF_EDB);
    assert_non_null(strstr(err.msg, "syntax error"));

    /* Long SQL is clipped in the message. */
    assert_int_equal(ff_db_exec(db,
                                "SELECT id, name, arch FROM apps WHERE name = 'a' AND arch = "
                                "'b' AND id IN (SELECT app_id FROM nothing_here)",
                                &err),
                     FF_EDB);
    assert_non_null(strstr(err.msg, "\"SELECT id, name, arch FROM apps WHERE name = 'a' AND arch "
                                    "=...\": no such table: nothing_here"));

    assert_int_equal(ff_db_prepare(db, "SELECT 1; SELECT 2", &st, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "more than one statement"));
    assert_int_equal(ff_db_prepare(db, "  -- only a comment", &st, &err), FF_EINVAL);

    assert_int_equal(ff_db_prepare(db, "SELECT ?", &st, &err), 0);
    assert_int_equal(ff_db_bind_int64(st, 2, 1, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "parameter 2"));
    assert_int_equal(ff_db_bind_blob(st, 1, NULL, 0, &err), 0);
    assert_int_equal(ff_db_step(st, &err), 1);
    assert_int_equal(sqlite3_column_type(st, 0), SQLITE_BLOB);
    assert_int_equal(sqlite3_column_bytes(st, 0), 0);
    ff_db_finalize(db, st);

    /* A NOT NULL column refused. */
    assert_int_equal(ff_db_prepare(db, "INSERT INTO apps(name) VALUES (?)", &st, &err), 0);
    assert_int_equal(ff_db_bind_null(st, 1, &err), 0);
    assert_int_equal(ff_db_step(st, &err), FF_ECONFLICT);
    assert_non_null(strstr(err.msg, "NOT NULL constraint failed: apps.name"));
    ff_db_finalize(db, st);
    ff_db_free(db);
}

static void test_statement_cache(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    const char *q = "SELECT ? + 1";
    sqlite3_stmt *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(ff_db_prepare(db, q, &a, &err), 0);
    assert_int_equal(ff_db_bind_int64(a, 1, 41, &err), 0);
    /* The same text while the first is in use: a separate statement. */
    assert_int_equal(ff_db_prepare(db, q, &b, &err), 0);
    assert_ptr_not_equal(a, b);
    assert_int_equal(ff_db_step(a, &err), 1);
    assert_int_equal(sqlite3_column_int64(a, 0), 42);
    ff_db_finalize(db, a);
    ff_db_finalize(db, b);
    /* Given back: reused, with its bindings cleared. */
    assert_int_equal(ff_db_prepare(db, q, &c, &err), 0);
    assert_true(c == a || c == b);
    assert_int_equal(ff_db_step(c, &err), 1);
    assert_int_equal(sqlite3_column_type(c, 0), SQLITE_NULL);
    ff_db_finalize(db, c);

    /* More distinct statements than the cache holds, some held at once. */
    sqlite3_stmt *held[FF_DB_STMT_CACHE_SIZE + 4];
    for (int i = 0; i < FF_DB_STMT_CACHE_SIZE + 4; i++) {
        char sql[64];
        fmt(sql, sizeof(sql), "SELECT %d", i);
        assert_int_equal(ff_db_prepare(db, sql, &held[i], &err), 0);
        assert_int_equal(ff_db_step(held[i], &err), 1);
        assert_int_equal(sqlite3_column_int64(held[i], 0), i);
    }
    for (int i = 0; i < FF_DB_STMT_CACHE_SIZE + 4; i++)
        ff_db_finalize(db, held[i]);
    for (int i = 0; i < 2 * FF_DB_STMT_CACHE_SIZE; i++) {
        char sql[64];
        fmt(sql, sizeof(sql), "SELECT %d + 0", i);
        assert_int_equal(query_int(db, sql), i);
    }
    ff_db_finalize(db, NULL);
    ff_db_free(db);
    ff_db_free(NULL);
}

/* Concurrent writers sharing one struct ff_db, each on its own thread (and
 * so its own connection), as the HTTP servers will use it. */
#define WRITER_ROWS 200

struct writer {
    struct ff_db *db;
    int id;
    int failures;
    struct ff_err err;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < WRITER_ROWS; i++) {
        sqlite3_stmt *st = NULL;
        char name[32];
        fmt(name, sizeof(name), "w%d-%d", w->id, i);
        if (ff_db_begin(w->db, &w->err) != 0) {
            w->failures++;
            continue;
        }
        /* Read inside the transaction to widen the window for overlap. */
        int rc = ff_db_prepare(w->db, "SELECT count(*) FROM apps", &st, &w->err);
        if (rc == 0)
            rc = ff_db_step(st, &w->err) == 1 ? 0 : -1;
        ff_db_finalize(w->db, st);
        st = NULL;
        if (rc == 0)
            rc = ff_db_prepare(w->db, "INSERT INTO apps(name) VALUES (?)", &st, &w->err);
        if (rc == 0)
            rc = ff_db_bind_text(st, 1, name, &w->err);
        if (rc == 0)
            rc = ff_db_step(st, &w->err);
        ff_db_finalize(w->db, st);
        if (rc == 0 && ff_db_changes(w->db) != 1)
            rc = -1;
        if (rc == 0)
            rc = ff_db_commit(w->db, &w->err);
        else
            ff_db_rollback(w->db, NULL);
        if (rc != 0)
            w->failures++;
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct fixture *f = *state;
    struct ff_db *db = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &db, &err), 0);
    struct writer w[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].db = db;
        w[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        if (w[i].failures != 0)
            fail_msg("writer %d: %d failures, last: %s", i, w[i].failures, w[i].err.msg);
    }
    assert_int_equal(query_int(db, "SELECT count(*) FROM apps"), 2 * WRITER_ROWS);
    ff_db_free(db);
}

static void test_busy_after_timeout(void **state)
{
    struct fixture *f = *state;
    struct ff_db *a = NULL, *b = NULL;
    struct ff_err err = {0};
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &a, &err), 0);
    /* A second handle has its own connection, like another process. */
    assert_int_equal(ff_db_open(f->path, schema_v3, 3, &b, &err), 0);
    assert_int_equal(ff_db_begin(a, &err), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(ff_db_begin(b, &err), FF_EBUSY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= FF_DB_BUSY_TIMEOUT_MS - 100);
    assert_non_null(strstr(err.msg, "database is locked"));
    assert_non_null(strstr(err.msg, "BEGIN IMMEDIATE"));
    /* Readers are not blocked by the writer (WAL). */
    assert_int_equal(query_int(b, "SELECT count(*) FROM apps"), 0);
    assert_int_equal(ff_db_rollback(a, &err), 0);
    assert_int_equal(ff_db_begin(b, &err), 0);
    assert_int_equal(ff_db_commit(b, &err), 0);
    ff_db_free(a);
    ff_db_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_apply_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_applies_only_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_migration_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_may_not_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_migration_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_violation_is_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_begin_is_a_bug, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_after_timeout, setup, teardown),
    };
    return cmocka_run_group_tests_name("lib/db", tests, NULL, NULL);
}
