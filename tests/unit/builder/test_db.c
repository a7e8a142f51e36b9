#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "builder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fake stored hash: the database never looks inside it. */
#define HASH "$scrypt$ln=1,r=1,p=1$AAAA$AAAA"
#define TOKEN_HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TOKEN_HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fixture {
    char dir[64];
    char path[128];
    struct db *db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/ff-builder-db-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_true((size_t)snprintf(f->path, sizeof(f->path), "%s/b.db", f->dir) <
                sizeof(f->path));
    struct ff_err err;
    assert_int_equal(db_open(f->path, &f->db, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_free(f->db);
    static const char *const files[] = {"b.db", "b.db-wal", "b.db-shm"};
    char p[160];
    for (size_t i = 0; i < 3; i++) {
        (void)snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_migrations_reopen(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    int64_t id = 0;
    assert_int_equal(db_user_create(f->db, "admin", HASH, ROLE_ADMIN, &id, &err), 0);
    db_free(f->db);
    /* Reopening applies nothing twice and keeps the data. */
    assert_int_equal(db_open(f->path, &f->db, &err), 0);
    bool admin = false;
    assert_int_equal(db_admin_exists(f->db, &admin, &err), 0);
    assert_true(admin);
    sqlite3_stmt *st = NULL;
    assert_int_equal(ff_db_prepare(db_handle(f->db), "SELECT max(version) FROM "
                                   "schema_migrations", &st, &err), 0);
    assert_int_equal(ff_db_step(st, &err), 1);
    assert_int_equal(sqlite3_column_int(st, 0), 2);
    ff_db_finalize(db_handle(f->db), st);
}

static void test_audit_append_only(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    assert_int_equal(db_audit(f->db, "admin", "127.0.0.1", "login.failed", "x", &err), 0);
    assert_int_equal(db_audit(f->db, NULL, NULL, "login.failed", NULL, &err), 0);
    int64_t n = 0;
    assert_int_equal(db_audit_count(f->db, "admin", "login.failed", 0, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(db_audit_count(f->db, "admin", "login.failed", INT64_MAX, &n, &err), 0);
    assert_int_equal(n, 0);
    struct ff_db *h = db_handle(f->db);
    assert_int_not_equal(ff_db_exec(h, "UPDATE audit SET actor = 'eve'", &err), 0);
    assert_non_null(strstr(err.msg, "append-only"));
    assert_int_not_equal(ff_db_exec(h, "DELETE FROM audit", &err), 0);
    assert_non_null(strstr(err.msg, "append-only"));
    assert_int_equal(db_audit_count(f->db, "admin", "login.failed", 0, &n, &err), 0);
    assert_int_equal(n, 1);
    /* A long detail is cut, not refused. */
    char big[AUDIT_DETAIL_MAX * 2];
    memset(big, 'd', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(db_audit(f->db, "admin", NULL, "e", big, &err), 0);
    json_t *items = NULL;
    int64_t next = 0;
    assert_int_equal(db_audit_list(f->db, 0, 2, &items, &next, &err), 0);
    assert_int_equal(json_array_size(items), 2);
    assert_true(json_is_null(json_object_get(json_array_get(items, 1), "actor")));
    json_decref(items);
    assert_int_equal(db_audit_list(f->db, next, 2, &items, &next, &err), 0);
    assert_int_equal(json_array_size(items), 1);
    assert_int_equal(next, 0);
    const char *d = json_string_value(json_object_get(json_array_get(items, 0), "detail"));
    assert_int_equal(strlen(d), AUDIT_DETAIL_MAX);
    json_decref(items);
}

static void test_users_and_tokens(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    bool admin = true;
    assert_int_equal(db_admin_exists(f->db, &admin, &err), 0);
    assert_false(admin);
    int64_t uid = 0, tid = 0, tid2 = 0;
    assert_int_equal(db_user_create(f->db, "bob", HASH, ROLE_USER, &uid, &err), 0);
    assert_int_equal(db_user_create(f->db, "bob", HASH, ROLE_ADMIN, NULL, &err), FF_EEXIST);
    struct user u;
    char *hash = NULL;
    assert_int_equal(db_user_by_name(f->db, "bob", &u, &hash, &err), 0);
    assert_string_equal(hash, HASH);
    assert_int_equal(u.role, ROLE_USER);
    ff_secret_free(hash);
    assert_int_equal(db_user_by_name(f->db, "eve", &u, NULL, &err), FF_ENOTFOUND);

    int64_t now = (int64_t)time(NULL);
    assert_int_equal(db_token_create(f->db, uid, "a", TOKEN_HASH_A, TOKEN_API, 0, &tid, &err),
                     0);
    assert_int_equal(db_token_create(f->db, uid, "b", TOKEN_HASH_A, TOKEN_API, 0, NULL, &err),
                     FF_EEXIST);
    assert_int_equal(db_token_create(f->db, uid, "s", TOKEN_HASH_B, TOKEN_SESSION, now + 10,
                                     &tid2, &err), 0);
    int64_t got = 0;
    assert_int_equal(db_token_lookup(f->db, TOKEN_HASH_A, now, &u, &got, &err), 0);
    assert_int_equal(got, tid);
    assert_string_equal(u.name, "bob");
    assert_int_equal(db_token_lookup(f->db, TOKEN_HASH_B, now, &u, &got, &err), 0);
    /* Expired at its expiry instant. */
    assert_int_equal(db_token_lookup(f->db, TOKEN_HASH_B, now + 10, &u, &got, &err), FF_EAUTH);
    assert_int_equal(db_token_lookup(f->db, "00", now, &u, &got, &err), FF_EAUTH);

    json_t *items = NULL;
    int64_t next = 0;
    assert_int_equal(db_token_list(f->db, uid, 0, 1, &items, &next, &err), 0);
    assert_int_equal(json_array_size(items), 1);
    assert_int_equal(next, tid);
    assert_null(json_object_get(json_array_get(items, 0), "hash"));
    json_decref(items);
    assert_int_equal(db_token_list(f->db, uid, next, 1, &items, &next, &err), 0);
    assert_int_equal(json_array_size(items), 1);
    assert_int_equal(next, 0);
    json_decref(items);

    assert_int_equal(db_token_revoke(f->db, uid + 1, tid, now, &err), FF_ENOTFOUND);
    assert_int_equal(db_token_revoke(f->db, uid, tid, now, &err), 0);
    assert_int_equal(db_token_revoke(f->db, uid, tid, now, &err), FF_ENOTFOUND);
    assert_int_equal(db_token_lookup(f->db, TOKEN_HASH_A, now, &u, &got, &err), FF_EAUTH);
}

static void test_apps(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    int64_t bob = 0, carol = 0, app = 0;
    assert_int_equal(db_user_create(f->db, "bob", HASH, ROLE_USER, &bob, &err), 0);
    assert_int_equal(db_user_create(f->db, "carol", HASH, ROLE_USER, &carol, &err), 0);
    assert_int_equal(db_app_create(f->db, bob, "web", "[\"amd64\"]", "main", &app, &err), 0);
    assert_int_equal(db_app_create(f->db, bob, "web", "[\"amd64\"]", "main", NULL, &err), FF_EEXIST);
    enum app_access acc = APP_NONE;
    assert_int_equal(db_app_access(f->db, app, bob, &acc, &err), 0);
    assert_int_equal(acc, APP_OWNER);
    assert_int_equal(db_app_access(f->db, app, carol, &acc, &err), 0);
    assert_int_equal(acc, APP_NONE);
    assert_int_equal(db_member_set(f->db, app, carol, MEMBER_VIEWER, &err), 0);
    assert_int_equal(db_app_access(f->db, app, carol, &acc, &err), 0);
    assert_int_equal(acc, APP_VIEWER);
    assert_int_equal(db_member_set(f->db, app, carol, MEMBER_DEVELOPER, &err), 0);
    assert_int_equal(db_app_access(f->db, app, carol, &acc, &err), 0);
    assert_int_equal(acc, APP_DEVELOPER);
    json_t *members = NULL;
    int64_t mnext = 0;
    assert_int_equal(db_member_list(f->db, app, 0, 10, &members, &mnext, &err), 0);
    assert_int_equal(json_array_size(members), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(members, 0), "role")),
                        "developer");
    json_decref(members);
    json_t *items = NULL;
    int64_t next = 0;
    assert_int_equal(db_app_list(f->db, carol, 0, 10, &items, &next, &err), 0);
    assert_int_equal(json_array_size(items), 1);
    json_decref(items);
    struct app a;
    json_t *j = NULL;
    assert_int_equal(db_app_get(f->db, "bob", "web", &a, &j, &err), 0);
    assert_string_equal(json_string_value(json_object_get(j, "owner")), "bob");
    json_decref(j);
    assert_int_equal(db_app_get(f->db, "carol", "web", &a, NULL, &err), FF_ENOTFOUND);
    assert_int_equal(db_app_delete(f->db, app, &err), 0);
    assert_int_equal(db_app_delete(f->db, app, &err), FF_ENOTFOUND);
    assert_int_equal(db_app_access(f->db, app, carol, &acc, &err), 0);
    assert_int_equal(acc, APP_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_append_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_and_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apps, setup, teardown),
    };
    return cmocka_run_group_tests_name("builder/db", tests, NULL, NULL);
}
