#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define M1 "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define M2 "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fixture {
    char dir[64];
    char path[96];
    struct meta *m;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/ff-meta-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    (void)snprintf(f->path, sizeof(f->path), "%s/meta.db", f->dir);
    if (meta_open(f->path, &f->m, NULL) != 0) {
        rmdir(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    meta_free(f->m);
    char p[128];
    static const char *const files[] = {"meta.db", "meta.db-wal", "meta.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        (void)snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static struct meta_manifest_put image(const char *repo, const char *digest, const char *tag,
                                      const char *const *blobs, size_t n)
{
    struct meta_manifest_put p = {
        .repo = repo, .digest = digest, .media_type = MEDIA_TYPE_OCI_MANIFEST, .size = 100,
        .blobs = blobs, .n_blobs = n, .tag = tag,
    };
    return p;
}

static void test_visibility_per_repository(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    int64_t size = 0;
    assert_int_equal(meta_blob_link(f->m, "a/x", D1, 42, &err), 0);
    assert_int_equal(meta_blob_link(f->m, "a/x", D1, 42, &err), 0); /* idempotent */
    assert_int_equal(meta_blob_linked(f->m, "a/x", D1, &size, &err), 0);
    assert_int_equal(size, 42);
    assert_int_equal(meta_blob_linked(f->m, "a/y", D1, &size, &err), FF_ENOTFOUND);
    assert_true(meta_repo_exists(f->m, "a/x"));
    assert_false(meta_repo_exists(f->m, "a/y"));
    assert_int_equal(meta_blob_unlink(f->m, "a/x", D1, &err), 0);
    assert_int_equal(meta_blob_unlink(f->m, "a/x", D1, &err), FF_ENOTFOUND);
    assert_int_equal(meta_blob_linked(f->m, "a/x", D1, &size, &err), FF_ENOTFOUND);
}

static void test_manifest_needs_its_blobs(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    const char *blobs[] = {D1, D2};
    struct meta_manifest_put p = image("a/x", M1, "v1", blobs, 2);
    assert_int_equal(meta_blob_link(f->m, "a/x", D1, 1, &err), 0);
    assert_int_equal(meta_manifest_refs_check(f->m, &p, &err), FF_ENOTFOUND);
    assert_int_equal(meta_manifest_put(f->m, &p, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, D2));
    struct meta_manifest mm;
    assert_int_equal(meta_manifest_get(f->m, "a/x", "v1", &mm, &err), FF_ENOTFOUND);
    /* Linked in another repository does not count. */
    assert_int_equal(meta_blob_link(f->m, "a/other", D2, 1, &err), 0);
    assert_int_equal(meta_manifest_put(f->m, &p, &err), FF_ENOTFOUND);
    assert_int_equal(meta_blob_link(f->m, "a/x", D2, 1, &err), 0);
    assert_int_equal(meta_manifest_put(f->m, &p, &err), 0);
    assert_int_equal(meta_manifest_get(f->m, "a/x", "v1", &mm, &err), 0);
    assert_string_equal(mm.digest, M1);
    assert_string_equal(mm.media_type, MEDIA_TYPE_OCI_MANIFEST);
    meta_manifest_release(&mm);
    assert_int_equal(meta_manifest_get(f->m, "a/x", M1, &mm, &err), 0);
    meta_manifest_release(&mm);
    /* An index needs its children in the same repository. */
    const char *children[] = {M1, M2};
    struct meta_manifest_put idx = {.repo = "a/x", .digest = M2, .size = 10,
                                    .media_type = MEDIA_TYPE_OCI_INDEX, .children = children,
                                    .n_children = 2};
    assert_int_equal(meta_manifest_put(f->m, &idx, &err), FF_ENOTFOUND);
    idx.n_children = 1;
    assert_int_equal(meta_manifest_put(f->m, &idx, &err), 0);
}

static void test_immutable_tag(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct meta_manifest_put p = image("a/x", M1, "v1", NULL, 0);
    p.tag_immutable = true;
    assert_int_equal(meta_manifest_put(f->m, &p, &err), 0);
    assert_int_equal(meta_manifest_put(f->m, &p, &err), 0); /* same digest again */
    struct meta_manifest_put q = image("a/x", M2, "v1", NULL, 0);
    q.tag_immutable = true;
    assert_int_equal(meta_manifest_put(f->m, &q, &err), FF_EDENIED);
    assert_non_null(strstr(err.msg, "immutable"));
    struct meta_manifest mm;
    assert_int_equal(meta_manifest_get(f->m, "a/x", "v1", &mm, &err), 0);
    assert_string_equal(mm.digest, M1);
    meta_manifest_release(&mm);
    /* The refused put stored nothing, not even the manifest row. */
    assert_int_equal(meta_manifest_get(f->m, "a/x", M2, &mm, &err), FF_ENOTFOUND);
    assert_int_equal(meta_tag_delete(f->m, "a/x", "v1", true, &err), FF_EDENIED);
}

/* Appends "name," to the 64-byte buffer ctx. */
static int collect(void *ctx, const char *name)
{
    char *out = ctx;
    size_t used = strlen(out);
    (void)snprintf(out + used, 64 - used, "%s,", name);
    return 0;
}

static bool never(void *ctx, const char *tag)
{
    (void)ctx;
    (void)tag;
    return false;
}

static void test_tags_paging_and_delete(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    const char *tags[] = {"b", "a", "d", "c"};
    for (size_t i = 0; i < 4; i++) {
        struct meta_manifest_put p = image("a/x", M1, tags[i], NULL, 0);
        assert_int_equal(meta_manifest_put(f->m, &p, &err), 0);
    }
    char out[64] = "";
    bool more = false;
    assert_int_equal(meta_tags_list(f->m, "a/x", NULL, 2, collect, out, &more, &err), 0);
    assert_string_equal(out, "a,b,");
    assert_true(more);
    out[0] = '\0';
    assert_int_equal(meta_tags_list(f->m, "a/x", "b", 5, collect, out, &more, &err), 0);
    assert_string_equal(out, "c,d,");
    assert_false(more);
    assert_int_equal(meta_tags_list(f->m, "nope", NULL, 5, collect, out, &more, &err),
                     FF_ENOTFOUND);
    assert_int_equal(meta_tag_delete(f->m, "a/x", "c", false, &err), 0);
    assert_int_equal(meta_tag_delete(f->m, "a/x", "c", false, &err), FF_ENOTFOUND);
    assert_int_equal(meta_manifest_delete(f->m, "a/x", M1, never, NULL, &err), 0);
    out[0] = '\0';
    assert_int_equal(meta_tags_list(f->m, "a/x", NULL, 5, collect, out, &more, &err), 0);
    assert_string_equal(out, "");
    assert_int_equal(meta_manifest_delete(f->m, "a/x", M1, never, NULL, &err), FF_ENOTFOUND);
    out[0] = '\0';
    assert_int_equal(meta_catalog(f->m, NULL, 10, collect, out, &more, &err), 0);
    assert_string_equal(out, "a/x,");
}

static int count_referrer(void *ctx, const struct meta_manifest *mm)
{
    assert_string_equal(mm->artifact_type, "application/x-sig");
    (*(int *)ctx)++;
    return 0;
}

static void test_referrers(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct meta_manifest_put p = image("a/x", M2, NULL, NULL, 0);
    p.subject = M1;
    p.artifact_type = "application/x-sig";
    p.annotations = "{\"k\":\"v\"}";
    assert_int_equal(meta_manifest_put(f->m, &p, &err), 0);
    int n = 0;
    assert_int_equal(meta_referrers(f->m, "a/x", M1, NULL, count_referrer, &n, &err), 0);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(meta_referrers(f->m, "a/x", M1, "application/other", count_referrer, &n,
                                    &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(meta_referrers(f->m, "a/y", M1, NULL, count_referrer, &n, &err), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_visibility_per_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_needs_its_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_immutable_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_paging_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers, setup, teardown),
    };
    return cmocka_run_group_tests_name("registry/meta", tests, NULL, NULL);
}
