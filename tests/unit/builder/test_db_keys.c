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

/* A fake stored password hash: the database never looks inside it. */
#define HASH "$scrypt$ln=1,r=1,p=1$AAAA$AAAA"
/* The database stores keys as given; sshkey_parse is tested on its own. */
#define FP_A "SHA256:HnRW80Bmk30wbgXPYi9KLt4YFeilQjh9oONXJvUfKsQ"
#define FP_B "SHA256:9kHudF+XqCZtT4ihiXdER+BVKvSRUjxk7wAxqEFXB5E"

struct fixture {
    char dir[64];
    char path[128];
    struct db *db;
    int64_t alice, bob;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/ff-builder-keys-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_true((size_t)snprintf(f->path, sizeof(f->path), "%s/b.db", f->dir) <
                sizeof(f->path));
    struct ff_err err;
    assert_int_equal(db_open(f->path, &f->db, &err), 0);
    assert_int_equal(db_user_create(f->db, "alice", HASH, ROLE_ADMIN, &f->alice, &err), 0);
    assert_int_equal(db_user_create(f->db, "bob", HASH, ROLE_USER, &f->bob, &err), 0);
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

static struct sshkey fake_key(const char *fp)
{
    struct sshkey k = {.type = "ssh-ed25519", .bits = 256, .line = (char *)"ssh-ed25519 AAAA"};
    (void)snprintf(k.fingerprint, sizeof(k.fingerprint), "%s", fp);
    return k;
}

static int64_t count_keys(struct fixture *f)
{
    sqlite3_stmt *st = NULL;
    struct ff_err err;
    assert_int_equal(ff_db_prepare(db_handle(f->db), "SELECT count(*) FROM ssh_keys", &st,
                                   &err), 0);
    assert_int_equal(ff_db_step(st, &err), 1);
    int64_t n = sqlite3_column_int64(st, 0);
    ff_db_finalize(db_handle(f->db), st);
    return n;
}

static void test_add_duplicate_across_users(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct sshkey a = fake_key(FP_A);
    json_t *out = NULL;
    assert_int_equal(db_key_add(f->db, f->alice, "laptop", &a, &out, &err), 0);
    assert_true(json_integer_value(json_object_get(out, "id")) > 0);
    assert_string_equal(json_string_value(json_object_get(out, "name")), "laptop");
    assert_string_equal(json_string_value(json_object_get(out, "type")), "ssh-ed25519");
    assert_string_equal(json_string_value(json_object_get(out, "fingerprint")), FP_A);
    assert_true(json_integer_value(json_object_get(out, "created_at")) > 0);
    assert_null(json_object_get(out, "public_key"));
    json_decref(out);
    /* The same key for another user, or again for the same one. */
    out = NULL;
    assert_int_equal(db_key_add(f->db, f->bob, "mine", &a, &out, &err), FF_EEXIST);
    assert_null(out);
    assert_string_equal(err.msg, "this key is already registered");
    assert_int_equal(db_key_add(f->db, f->alice, "again", &a, &out, &err), FF_EEXIST);
    assert_int_equal(count_keys(f), 1);
    /* The failed adds left no transaction open. */
    struct sshkey b = fake_key(FP_B);
    assert_int_equal(db_key_add(f->db, f->bob, "mine", &b, &out, &err), 0);
    json_decref(out);
    assert_int_equal(count_keys(f), 2);
}

static void test_list_pages_own_keys(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    char fp[SSHKEY_FINGERPRINT_LEN + 1];
    json_t *out = NULL;
    for (int i = 0; i < 5; i++) {
        (void)snprintf(fp, sizeof(fp), "SHA256:alice-%d", i);
        struct sshkey k = fake_key(fp);
        assert_int_equal(db_key_add(f->db, f->alice, "k", &k, &out, &err), 0);
        json_decref(out);
    }
    struct sshkey b = fake_key(FP_B);
    assert_int_equal(db_key_add(f->db, f->bob, "bob's", &b, &out, &err), 0);
    json_decref(out);
    json_t *items = NULL;
    int64_t next = 0, after = 0;
    size_t seen = 0;
    do {
        assert_int_equal(db_key_list(f->db, f->alice, after, 2, &items, &next, &err), 0);
        assert_true(json_array_size(items) <= 2);
        for (size_t i = 0; i < json_array_size(items); i++) {
            const char *s = json_string_value(json_object_get(json_array_get(items, i),
                                                              "fingerprint"));
            assert_non_null(strstr(s, "alice-"));
            seen++;
        }
        json_decref(items);
        after = next;
    } while (next != 0);
    assert_int_equal(seen, 5);
}

static void test_delete_own_only(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct sshkey a = fake_key(FP_A);
    json_t *out = NULL;
    assert_int_equal(db_key_add(f->db, f->alice, "laptop", &a, &out, &err), 0);
    int64_t id = json_integer_value(json_object_get(out, "id"));
    json_decref(out);
    char fp[SSHKEY_FINGERPRINT_LEN + 1] = "";
    assert_int_equal(db_key_delete(f->db, f->bob, id, fp, &err), FF_ENOTFOUND);
    assert_int_equal(count_keys(f), 1);
    assert_int_equal(db_key_delete(f->db, f->alice, id + 1, fp, &err), FF_ENOTFOUND);
    assert_int_equal(db_key_delete(f->db, f->alice, id, fp, &err), 0);
    assert_string_equal(fp, FP_A);
    assert_int_equal(count_keys(f), 0);
    assert_int_equal(db_key_delete(f->db, f->alice, id, fp, &err), FF_ENOTFOUND);
    /* Once removed, the key may be added again, by anyone. */
    assert_int_equal(db_key_add(f->db, f->bob, "now bob's", &a, &out, &err), 0);
    json_decref(out);
}

static void test_lookup(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct sshkey a = fake_key(FP_A), b = fake_key(FP_B);
    json_t *out = NULL;
    assert_int_equal(db_key_add(f->db, f->alice, "a", &a, &out, &err), 0);
    json_decref(out);
    assert_int_equal(db_key_add(f->db, f->bob, "b", &b, &out, &err), 0);
    int64_t bob_key = json_integer_value(json_object_get(out, "id"));
    json_decref(out);
    struct user u;
    int64_t key_id = 0;
    assert_int_equal(db_key_lookup(f->db, FP_B, &u, &key_id, &err), 0);
    assert_string_equal(u.name, "bob");
    assert_int_equal(u.id, f->bob);
    assert_int_equal(u.role, ROLE_USER);
    assert_int_equal(key_id, bob_key);
    assert_int_equal(db_key_lookup(f->db, FP_A, &u, &key_id, &err), 0);
    assert_string_equal(u.name, "alice");
    assert_int_equal(u.role, ROLE_ADMIN);
    assert_int_equal(db_key_lookup(f->db, "SHA256:none", &u, &key_id, &err), FF_ENOTFOUND);
}

static void test_keys_per_user_limit(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    char fp[SSHKEY_FINGERPRINT_LEN + 1];
    json_t *out = NULL;
    for (int i = 0; i < KEYS_PER_USER_MAX; i++) {
        (void)snprintf(fp, sizeof(fp), "SHA256:bob-%d", i);
        struct sshkey k = fake_key(fp);
        assert_int_equal(db_key_add(f->db, f->bob, "k", &k, &out, &err), 0);
        json_decref(out);
    }
    struct sshkey k = fake_key(FP_B);
    assert_int_equal(db_key_add(f->db, f->bob, "one more", &k, &out, &err), FF_ECONFLICT);
    assert_non_null(strstr(err.msg, "at most 100"));
    assert_int_equal(count_keys(f), KEYS_PER_USER_MAX);
    /* The limit is per user. */
    assert_int_equal(db_key_add(f->db, f->alice, "one more", &k, &out, &err), 0);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_duplicate_across_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages_own_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_own_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_per_user_limit, setup, teardown),
    };
    return cmocka_run_group_tests_name("builder/db_keys", tests, NULL, NULL);
}
