#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_ratelimit.h"

#include <stdio.h>
#include <string.h>

static void test_burst_then_refill(void **state)
{
    (void)state;
    struct ff_ratelimit *rl = NULL;
    assert_int_equal(ff_ratelimit_new(2.0, 3, 10, &rl, NULL), 0);
    struct ff_ratelimit_result r;
    for (int i = 0; i < 3; i++) {
        ff_ratelimit_take(rl, "alice", 100.0, &r);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 2 - i);
        assert_int_equal(r.limit, 3);
    }
    ff_ratelimit_take(rl, "alice", 100.0, &r);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after, 1);
    assert_int_equal(r.reset, 2);
    /* Another key has its own bucket. */
    ff_ratelimit_take(rl, "bob", 100.0, &r);
    assert_true(r.allowed);
    /* Half a second at 2/s gives one token back. */
    ff_ratelimit_take(rl, "alice", 100.5, &r);
    assert_true(r.allowed);
    ff_ratelimit_take(rl, "alice", 100.5, &r);
    assert_false(r.allowed);
    /* A long pause refills to the burst, not beyond. */
    ff_ratelimit_take(rl, "alice", 1000.0, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    ff_ratelimit_free(rl);
}

static void test_slow_rate_retry_after(void **state)
{
    (void)state;
    struct ff_ratelimit *rl = NULL;
    assert_int_equal(ff_ratelimit_new(10.0 / 3600.0, 10, 4, &rl, NULL), 0);
    struct ff_ratelimit_result r;
    for (int i = 0; i < 10; i++)
        ff_ratelimit_take(rl, "u", 0, &r);
    ff_ratelimit_take(rl, "u", 0, &r);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after, 360);
    ff_ratelimit_free(rl);
}

static void test_bounded_keys(void **state)
{
    (void)state;
    struct ff_ratelimit *rl = NULL;
    assert_int_equal(ff_ratelimit_new(1.0, 2, 8, &rl, NULL), 0);
    struct ff_ratelimit_result r;
    /* The limited key stays remembered while thousands of others pass. */
    ff_ratelimit_take(rl, "victim", 0, &r);
    ff_ratelimit_take(rl, "victim", 0, &r);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        (void)snprintf(key, sizeof(key), "k%d", i);
        ff_ratelimit_take(rl, key, 0.0001 * i, &r);
        assert_true(r.allowed);
    }
    /* Every key is either remembered or evicted; lookups still work. */
    ff_ratelimit_take(rl, "k4999", 0.5, &r);
    assert_true(r.allowed);
    ff_ratelimit_take(rl, "k4999", 0.5, &r);
    assert_false(r.allowed);
    ff_ratelimit_free(rl);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct ff_ratelimit *rl = NULL;
    struct ff_err err;
    assert_int_equal(ff_ratelimit_new(0, 1, 1, &rl, &err), FF_EINVAL);
    assert_int_equal(ff_ratelimit_new(1, 0.5, 1, &rl, &err), FF_EINVAL);
    assert_int_equal(ff_ratelimit_new(1, 1, 0, &rl, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "expected rate > 0"));
    ff_ratelimit_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_slow_rate_retry_after),
        cmocka_unit_test(test_bounded_keys),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests_name("lib/ratelimit", tests, NULL, NULL);
}
