/* Config parsing on hostile text. */
#include "ff_conf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct ff_conf_key schema[] = {
    {"server", "listen", FF_CONF_STRING, "127.0.0.1:1", 0, 0},
    {"server", "workers", FF_CONF_INT, "4", 1, 64},
    {"server", "max_body", FF_CONF_SIZE, "4M", 1, 1LL << 40},
    {"server", "tls", FF_CONF_BOOL, "true", 0, 0},
    {"auth", "key", FF_CONF_LIST, NULL, 0, 0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct ff_conf *c = NULL;
    if (ff_conf_load_string(text, "fuzz", schema, sizeof(schema) / sizeof(schema[0]), &c,
                            NULL) == 0) {
        const char *const *items;
        (void)ff_conf_string(c, "server", "listen");
        (void)ff_conf_int(c, "server", "max_body");
        (void)ff_conf_list(c, "auth", "key", &items);
        ff_conf_free(c);
    }
    free(text);
    return 0;
}
