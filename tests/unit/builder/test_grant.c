#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "builder.h"

#include <stdlib.h>
#include <string.h>

/* bob may read bob/web and carol/db (a member), nothing else. */
static bool bob_apps(void *ctx, const char *owner, const char *app)
{
    (*(int *)ctx)++;
    return (strcmp(owner, "bob") == 0 && strcmp(app, "web") == 0) ||
           (strcmp(owner, "carol") == 0 && strcmp(app, "db") == 0);
}

/* Parses scopes, grants, and checks granted and denied as scope strings. */
static void check_subject(const struct grant_subject *s, const char *scopes,
                          const char *const *want_granted, size_t n_granted,
                          const char *const *want_denied, size_t n_denied)
{
    struct ff_access req, granted, denied;
    ff_access_init(&req);
    ff_access_init(&granted);
    ff_access_init(&denied);
    struct ff_err err;
    assert_int_equal(ff_scope_parse(scopes, &req, &err), 0);
    assert_int_equal(grant_compute(s, &req, &granted, &denied, &err), 0);
    assert_int_equal(granted.n, n_granted);
    assert_int_equal(denied.n, n_denied);
    for (size_t i = 0; i < n_granted; i++) {
        char *f = NULL;
        const struct ff_access_entry *e = &granted.entries[i];
        assert_int_equal(ff_access_format_scope(e->type, e->name, e->actions, &f, &err), 0);
        assert_string_equal(f, want_granted[i]);
        free(f);
    }
    for (size_t i = 0; i < n_denied; i++) {
        char *f = NULL;
        const struct ff_access_entry *e = &denied.entries[i];
        assert_int_equal(ff_access_format_scope(e->type, e->name, e->actions, &f, &err), 0);
        assert_string_equal(f, want_denied[i]);
        free(f);
    }
    ff_access_release(&req);
    ff_access_release(&granted);
    ff_access_release(&denied);
}

static void check(bool admin, const char *scopes, const char *const *want_granted,
                  size_t n_granted, const char *const *want_denied, size_t n_denied)
{
    int calls = 0;
    struct grant_subject s = {.name = "bob", .admin = admin, .library_pull = true,
                              .can_pull_app = bob_apps, .ctx = &calls};
    check_subject(&s, scopes, want_granted, n_granted, want_denied, n_denied);
}

/* A worker holding a job of bob/web: push there, pull base images. */
static bool worker_job(void *ctx, const char *owner, const char *app)
{
    (void)ctx;
    return strcmp(owner, "bob") == 0 && strcmp(app, "web") == 0;
}

static void test_worker(void **state)
{
    (void)state;
    struct grant_subject s = {.name = "w_1", .library_pull = true, .can_push_app = worker_job};
    const char *g[] = {"repository:bob/web:pull,push", "repository:library/base:pull"};
    const char *d[] = {"repository:bob/web:delete", "repository:bob/api:pull,push",
                       "repository:library/base:push", "registry:catalog:*"};
    check_subject(&s, "repository:bob/web:pull,push,delete repository:bob/api:pull,push "
                  "repository:library/base:pull,push registry:catalog:*", g, 2, d, 4);
}

/* A service (gitd) has no registry business at all. */
static void test_service(void **state)
{
    (void)state;
    struct grant_subject s = {.name = "svc_gitd"};
    const char *d[] = {"repository:library/base:pull", "repository:bob/web:pull"};
    check_subject(&s, "repository:library/base:pull repository:bob/web:pull", NULL, 0, d, 2);
}

static void test_user(void **state)
{
    (void)state;
    const char *g[] = {"repository:bob/web:pull", "repository:carol/db:pull",
                       "repository:library/base:pull"};
    const char *d[] = {"repository:bob/web:push", "repository:carol/db:push,delete",
                       "repository:library/base:push", "repository:alice/app:pull",
                       "registry:catalog:*", "repository:bob/web/x:pull",
                       "repository:library:pull"};
    check(false, "repository:bob/web:pull,push repository:carol/db:pull,push,delete "
          "repository:library/base:pull,push repository:alice/app:pull registry:catalog:* "
          "repository:bob/web/x:pull repository:library:pull", g, 3, d, 7);
}

static void test_admin(void **state)
{
    (void)state;
    const char *g[] = {"repository:library/base:pull,push", "registry:catalog:*",
                       "repository:bob/web:pull"};
    const char *d[] = {"repository:library/base:delete", "repository:alice/app:pull,push",
                       "repository:bob/web:push"};
    check(true, "repository:library/base:pull,push,delete registry:catalog:* "
          "repository:alice/app:pull,push repository:bob/web:pull,push", g, 3, d, 3);
}

static void test_star_never_grants_push(void **state)
{
    (void)state;
    const char *d[] = {"repository:library/x:*", "repository:bob/web:*"};
    check(false, "repository:library/x:* repository:bob/web:*", NULL, 0, d, 2);
    check(true, "repository:library/x:*", NULL, 0, d, 1);
}

static void test_no_app_callback(void **state)
{
    (void)state;
    struct grant_subject s = {.name = "x", .admin = false};
    struct ff_access req, granted, denied;
    ff_access_init(&req);
    ff_access_init(&granted);
    ff_access_init(&denied);
    struct ff_err err;
    assert_int_equal(ff_scope_parse("repository:bob/web:pull", &req, &err), 0);
    assert_int_equal(grant_compute(&s, &req, &granted, &denied, &err), 0);
    assert_int_equal(granted.n, 0);
    assert_int_equal(denied.n, 1);
    ff_access_release(&req);
    ff_access_release(&granted);
    ff_access_release(&denied);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_worker),
        cmocka_unit_test(test_service),
        cmocka_unit_test(test_star_never_grants_push),
        cmocka_unit_test(test_no_app_callback),
    };
    return cmocka_run_group_tests_name("builder/grant", tests, NULL, NULL);
}
