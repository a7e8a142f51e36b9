#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include "ff_str.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char root[64];
    char *dir; /* the cache */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    ff_strlcpy(f->root, "/tmp/ff-test-cache-XXXXXX", sizeof(f->root));
    if (mkdtemp(f->root) == NULL)
        return -1;
    f->dir = ff_asprintf("%s/cache", f->root);
    return f->dir == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(cache_remove_tree(f->root, NULL), 0);
    free(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static struct ff_digest digest_of(const char *text)
{
    struct ff_digest d;
    assert_int_equal(ff_digest_buffer(text, strlen(text), &d, NULL), 0);
    return d;
}

/* Makes a layer in tmp/: a directory holding one file of size bytes and a
 * blob; returns its description. */
static struct cache_layer make_layer(struct cache *c, const char *name, size_t size,
                                     char **dir, char **blob)
{
    struct ff_err err;
    assert_int_equal(cache_tmp_dir(c, "layer", dir, &err), 0);
    char *file = ff_asprintf("%s/%s", *dir, name);
    char *text = calloc(1, size + 1);
    assert_non_null(file);
    assert_non_null(text);
    memset(text, 'x', size);
    write_file(file, text);
    *blob = ff_asprintf("%s.blob", *dir);
    write_file(*blob, name);
    struct cache_layer l = {.diff_id = digest_of(name), .digest = digest_of(*blob), .size = 10};
    ff_strlcpy(l.media_type, "application/vnd.oci.image.layer.v1.tar+gzip",
               sizeof(l.media_type));
    free(text);
    free(file);
    return l;
}

static void add_layer(struct cache *c, const char *name, size_t size, struct cache_layer *out)
{
    char *dir = NULL, *blob = NULL;
    *out = make_layer(c, name, size, &dir, &blob);
    struct ff_err err;
    assert_int_equal(cache_layer_add(c, out, dir, blob, &err), 0);
    assert_false(exists(dir));
    free(dir);
    free(blob);
}

static void test_open_makes_the_layout_and_clears_tmp(void **state)
{
    struct fixture *f = *state;
    struct cache *c = NULL;
    struct ff_err err;
    assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
    char *tmp = NULL;
    assert_int_equal(cache_tmp_dir(c, "work", &tmp, &err), 0);
    assert_true(exists(tmp));
    cache_close(c);
    /* A build that died left tmp behind: the next open clears it. */
    assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
    assert_false(exists(tmp));
    static const char *const subs[] = {"blobs/sha256", "layers", "steps", "tmp", "lock"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char *p = ff_asprintf("%s/%s", f->dir, subs[i]);
        assert_true(exists(p));
        free(p);
    }
    free(tmp);
    cache_close(c);
}

/* A build that died mid-step leaves an overlay mounted under tmp/: the
 * next open detaches it instead of failing on (or deleting through) it. */
static void test_open_detaches_mounts_left_in_tmp(void **state)
{
    struct fixture *f = *state;
    struct cache *c = NULL;
    struct ff_err err;
    assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
    char *mnt = NULL;
    assert_int_equal(cache_tmp_dir(c, "step", &mnt, &err), 0);
    cache_close(c);
    /* Only root can mount; everywhere else there is nothing to test. */
    bool mounted = mount("ff-test", mnt, "tmpfs", 0, "size=1m") == 0;
    if (mounted) {
        char *file = ff_asprintf("%s/inside", mnt);
        write_file(file, "x");
        free(file);
        assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
        assert_false(exists(mnt));
        cache_close(c);
    }
    free(mnt);
}

static void test_steps_and_layers_round_trip(void **state)
{
    struct fixture *f = *state;
    struct cache *c = NULL;
    struct ff_err err;
    assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
    struct ff_digest k1 = digest_of("step one"), k2 = digest_of("step two");
    struct cache_step s;
    bool hit = true;
    assert_int_equal(cache_step_get(c, &k1, &s, &hit, &err), 0);
    assert_false(hit);

    struct cache_step empty = {.empty = true};
    assert_int_equal(cache_step_put(c, &k1, &empty, &err), 0);
    assert_int_equal(cache_step_get(c, &k1, &s, &hit, &err), 0);
    assert_true(hit);
    assert_true(s.empty);

    struct cache_step full = {.empty = false};
    add_layer(c, "a", 100, &full.layer);
    assert_int_equal(cache_step_put(c, &k2, &full, &err), 0);
    assert_int_equal(cache_step_get(c, &k2, &s, &hit, &err), 0);
    assert_true(hit);
    assert_false(s.empty);
    assert_true(ff_digest_equal(&s.layer.diff_id, &full.layer.diff_id));
    assert_true(ff_digest_equal(&s.layer.digest, &full.layer.digest));
    assert_int_equal(s.layer.size, 10);
    assert_string_equal(s.layer.media_type, full.layer.media_type);

    char *dir = cache_layer_path(c, &full.layer.diff_id);
    char *file = ff_asprintf("%s/a", dir);
    assert_true(exists(file));
    /* A layer whose directory is gone makes its steps misses. */
    assert_int_equal(cache_remove_tree(dir, &err), 0);
    assert_int_equal(cache_step_get(c, &k2, &s, &hit, &err), 0);
    assert_false(hit);
    free(file);
    free(dir);
    cache_close(c);
}

static void test_adding_a_layer_twice_keeps_the_first(void **state)
{
    struct fixture *f = *state;
    struct cache *c = NULL;
    struct ff_err err;
    assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
    struct cache_layer l;
    add_layer(c, "same", 10, &l);
    char *dir = NULL, *blob = NULL;
    struct cache_layer again = make_layer(c, "same", 20, &dir, &blob);
    assert_int_equal(cache_layer_add(c, &again, dir, blob, &err), 0);
    assert_false(exists(dir));
    assert_false(exists(blob));
    struct cache_layer got;
    bool found = false;
    assert_int_equal(cache_layer_get(c, &l.diff_id, &got, &found, &err), 0);
    assert_true(found);
    struct stat st;
    char *path = cache_layer_path(c, &l.diff_id);
    char *file = ff_asprintf("%s/same", path);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 10);
    free(file);
    free(path);
    free(dir);
    free(blob);
    cache_close(c);
}

/* Sets when the layer was last used (its record's mtime). */
static void set_used(const struct ff_digest *diff_id, time_t when, const char *cache_dir)
{
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(diff_id, hex);
    char *rec = ff_asprintf("%s/layers/%s.json", cache_dir, hex);
    struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};
    assert_int_equal(utimensat(AT_FDCWD, rec, ts, 0), 0);
    free(rec);
}

static void test_eviction_removes_least_recently_used_first(void **state)
{
    struct fixture *f = *state;
    struct cache *c = NULL;
    struct ff_err err;
    /* Each layer takes a 64 KiB file (at least 64 KiB on disk) and a blob. */
    assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
    struct cache_layer old, mid, recent;
    add_layer(c, "old", 65536, &old);
    add_layer(c, "mid", 65536, &mid);
    add_layer(c, "recent", 65536, &recent);
    set_used(&old.diff_id, 1000, f->dir);
    set_used(&recent.diff_id, 3000, f->dir);
    set_used(&mid.diff_id, 2000, f->dir);
    uint64_t total = 0;
    assert_int_equal(cache_usage(c, &total, &err), 0);
    assert_true(total >= (uint64_t)3 * 65536);
    cache_close(c);

    /* Bounded to a little more than two layers: the oldest goes. */
    assert_int_equal(cache_open(f->dir, total - total / 6, &c, &err), 0);
    uint64_t freed = 0;
    assert_int_equal(cache_evict(c, &freed, &err), 0);
    assert_true(freed >= 65536);
    struct cache_layer got;
    bool found = true;
    assert_int_equal(cache_layer_get(c, &old.diff_id, &got, &found, &err), 0);
    assert_false(found);
    char *blob = cache_blob_path(c, &old.digest);
    assert_false(exists(blob));
    free(blob);
    /* Using mid makes it the most recent: the next eviction takes recent. */
    assert_int_equal(cache_layer_get(c, &mid.diff_id, &got, &found, &err), 0);
    assert_true(found);
    cache_close(c);
    assert_int_equal(cache_open(f->dir, total / 2, &c, &err), 0);
    assert_int_equal(cache_evict(c, &freed, &err), 0);
    assert_int_equal(cache_layer_get(c, &recent.diff_id, &got, &found, &err), 0);
    assert_false(found);
    assert_int_equal(cache_layer_get(c, &mid.diff_id, &got, &found, &err), 0);
    assert_true(found);
    cache_close(c);
}

static void test_damaged_records_are_reported(void **state)
{
    struct fixture *f = *state;
    struct cache *c = NULL;
    struct ff_err err;
    assert_int_equal(cache_open(f->dir, 0, &c, &err), 0);
    struct ff_digest k = digest_of("broken");
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(&k, hex);
    char *rec = ff_asprintf("%s/steps/%s", f->dir, hex);
    write_file(rec, "{\"empty\": \"yes\"}");
    struct cache_step s;
    bool hit = true;
    assert_int_equal(cache_step_get(c, &k, &s, &hit, &err), FF_EINVAL);
    assert_false(hit);
    assert_non_null(strstr(err.msg, "damaged step record"));
    write_file(rec, "not json");
    assert_int_equal(cache_step_get(c, &k, &s, &hit, &err), FF_EINVAL);
    free(rec);
    cache_close(c);
}

static void test_remove_tree_does_not_follow_links(void **state)
{
    struct fixture *f = *state;
    char *outside = ff_asprintf("%s/outside", f->root);
    char *keep = ff_asprintf("%s/keep", outside);
    char *tree = ff_asprintf("%s/tree", f->root);
    char *sub = ff_asprintf("%s/tree/sub", f->root);
    char *link = ff_asprintf("%s/tree/sub/link", f->root);
    assert_int_equal(mkdir(outside, 0700), 0);
    write_file(keep, "keep");
    assert_int_equal(mkdir(tree, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(cache_remove_tree(tree, NULL), 0);
    assert_false(exists(tree));
    assert_true(exists(keep));
    assert_int_equal(cache_remove_tree(tree, NULL), 0); /* already gone: fine */
    free(outside);
    free(keep);
    free(tree);
    free(sub);
    free(link);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_makes_the_layout_and_clears_tmp, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_detaches_mounts_left_in_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_and_layers_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adding_a_layer_twice_keeps_the_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eviction_removes_least_recently_used_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damaged_records_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_tree_does_not_follow_links, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
