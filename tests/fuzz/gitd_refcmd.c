/* The receive-pack command list on hostile bytes: the input is split at
 * LF into command lines (which may hold NULs), added in order. */
#include "gitd.h"

#include "ff_str.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready)
        ready = git_libgit2_init() > 0;
    struct refcmd_list l = {0};
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        size_t before = l.n;
        struct ff_err err;
        int rc = refcmd_list_add(&l, p, len, &err);
        if ((rc == 0) != (l.n == before + 1))
            abort();
        if (rc == 0) {
            const struct refcmd *c = &l.cmds[l.n - 1];
            bool ours = ff_str_has_prefix(c->ref, "refs/heads/") ||
                        ff_str_has_prefix(c->ref, "refs/tags/");
            if (c->rejected == ours || strlen(c->ref) > REFCMD_NAME_MAX ||
                (git_oid_is_zero(&c->old_id) && git_oid_is_zero(&c->new_id)))
                abort();
        }
        p += len;
    }
    refcmd_list_release(&l);
    return 0;
}
