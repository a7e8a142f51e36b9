/* USER resolution on hostile /etc/passwd and /etc/group from an image.
 * Input: the USER value up to the first newline, then passwd up to the
 * first NUL byte, then group (no NUL: the image has no /etc/group; nothing
 * after the USER line: no /etc/passwd either). Whatever is accepted must be
 * in range, the supplementary groups unique and bounded, numeric ids taken
 * as written, and every failure must say something. */
#include "worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* The number written in s[0..n) when it fits, else UINT64_MAX. */
static uint64_t number(const char *s, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return UINT64_MAX;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

static void check_ok(const char *spec, const struct passwd_ids *ids)
{
    if (ids->uid > PASSWD_ID_MAX || ids->gid > PASSWD_ID_MAX || ids->n_gids > PASSWD_GIDS_MAX ||
        (ids->n_gids == 0) != (ids->gids == NULL))
        abort();
    for (size_t i = 0; i < ids->n_gids; i++) {
        if (ids->gids[i] > PASSWD_ID_MAX)
            abort();
        for (size_t j = 0; j < i; j++) {
            if (ids->gids[i] == ids->gids[j])
                abort();
        }
    }
    const char *colon = strchr(spec, ':');
    size_t ulen = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    if (digits(spec, ulen) && number(spec, ulen) != ids->uid)
        abort();
    if (colon != NULL) {
        /* An explicit group: taken as written when numeric, and no others. */
        if (ids->n_gids != 0)
            abort();
        if (digits(colon + 1, strlen(colon + 1)) &&
            number(colon + 1, strlen(colon + 1)) != ids->gid)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t spec_len = nl != NULL ? (size_t)(nl - in) : size;
    char *spec = malloc(spec_len + 1);
    if (spec == NULL)
        abort();
    memcpy(spec, in, spec_len);
    spec[spec_len] = '\0';
    const char *pw = NULL, *gr = NULL;
    size_t pw_len = 0, gr_len = 0;
    if (nl != NULL && (size_t)(nl + 1 - in) < size) {
        pw = nl + 1;
        size_t rest = size - (size_t)(pw - in);
        const char *nul = memchr(pw, '\0', rest);
        pw_len = nul != NULL ? (size_t)(nul - pw) : rest;
        if (nul != NULL) {
            gr = nul + 1;
            gr_len = rest - pw_len - 1;
        }
    }
    struct passwd_ids ids = {0};
    struct ff_err err = {0};
    int rc = passwd_resolve_buf(spec, pw, pw_len, gr, gr_len, &ids, &err);
    if (rc == 0) {
        check_ok(spec, &ids);
        /* Deterministic: the same input resolves the same way. */
        struct passwd_ids again = {0};
        if (passwd_resolve_buf(spec, pw, pw_len, gr, gr_len, &again, NULL) != 0 ||
            again.uid != ids.uid || again.gid != ids.gid || again.n_gids != ids.n_gids ||
            (ids.n_gids > 0 && memcmp(again.gids, ids.gids, ids.n_gids * sizeof(*ids.gids)) != 0))
            abort();
        passwd_ids_release(&again);
    } else if (rc >= 0 || err.code != rc || err.msg[0] == '\0' || ids.gids != NULL) {
        abort();
    }
    passwd_ids_release(&ids);
    free(spec);
    return 0;
}
