/* Repository names, tags and references as they come in URLs. */
#include "registry.h"

#include "ff_scope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct ff_err err;
    int name_rc = name_validate(s, &err);
    /* The registry's names are a subset of what a scope may name. */
    if (name_rc == 0 && ff_scope_name_check(s, strlen(s), &err) != 0)
        abort();
    (void)tag_validate(s, &err);
    struct reference ref;
    if (reference_parse(s, &ref, &err) == 0 && ref.kind == REFERENCE_TAG &&
        strcmp(ref.tag, s) != 0)
        abort();
    (void)ff_scope_name_check((const char *)data, size, &err);
    free(s);
    return 0;
}
