/* Strict JSON parsing and the typed getters on hostile bytes. */
#include "ff_json.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    if (ff_json_parse_object((const char *)data, size, 1 << 16, &v, NULL) != 0)
        return 0;
    const char *s;
    int64_t n;
    bool b;
    json_t *a;
    static const char *const allowed[] = {"name", "n", NULL};
    (void)ff_json_check_keys(v, allowed, "fuzz", NULL);
    (void)ff_json_get_string(v, "name", true, 64, &s, NULL);
    (void)ff_json_get_int(v, "n", false, -5, 5, &n, NULL);
    (void)ff_json_get_bool(v, "b", false, &b, NULL);
    (void)ff_json_get_array(v, "a", false, 4, &a, NULL);
    char *out = NULL;
    if (ff_json_dump(v, &out, NULL, NULL) == 0)
        free(out);
    json_decref(v);
    return 0;
}
