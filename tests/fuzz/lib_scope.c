/* Scope strings and JWT access claims on hostile bytes; whatever parses
 * must survive a round trip through the claim form. */
#include "ff_json.h"
#include "ff_scope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Serialises a, reads it back and checks both grant the same. */
static void round_trip(const struct ff_access *a)
{
    json_t *claim = NULL;
    if (ff_access_to_json(a, &claim, NULL) != 0)
        return;
    struct ff_access back;
    ff_access_init(&back);
    if (ff_access_from_json(claim, &back, NULL) != 0 || back.n != a->n)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        const struct ff_access_entry *e = &a->entries[i];
        if (!ff_access_allows(&back, e->type, e->name, e->actions))
            abort();
        char *scope = NULL;
        if (ff_access_format_scope(e->type, e->name, e->actions, &scope, NULL) == 0) {
            struct ff_access again;
            ff_access_init(&again);
            if (ff_scope_parse(scope, &again, NULL) != 0 ||
                !ff_access_allows(&again, e->type, e->name, e->actions))
                abort();
            ff_access_release(&again);
            free(scope);
        }
    }
    ff_access_release(&back);
    json_decref(claim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct ff_access a;
    ff_access_init(&a);
    if (ff_scope_parse(s, &a, NULL) == 0)
        round_trip(&a);
    ff_access_release(&a);
    free(s);

    json_t *v = NULL;
    if (ff_json_parse((const char *)data, size, 1 << 16, &v, NULL) != 0)
        return 0;
    if (ff_access_from_json(v, &a, NULL) == 0)
        round_trip(&a);
    ff_access_release(&a);
    json_decref(v);
    return 0;
}
