/* WWW-Authenticate values as a hostile registry may send them. Whatever
 * the parser accepts must be safe to put into a URL query and a message
 * (bounded, no control characters), a Bearer answer must carry a realm,
 * and a refusal must hand nothing out. */
#include "worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const char *s)
{
    if (s == NULL)
        return;
    size_t n = strlen(s);
    if (n > WWWAUTH_VALUE_MAX)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7f)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wwwauth_challenge c;
    struct ff_err err;
    int rc = wwwauth_parse((const char *)data, size, &c, &err);
    if (rc != 0) {
        if (c.scheme != WWWAUTH_NONE || c.realm != NULL || c.service != NULL ||
            c.scope != NULL || c.error != NULL || err.msg[0] == '\0')
            abort();
        return 0;
    }
    if (c.scheme != WWWAUTH_BEARER && c.scheme != WWWAUTH_BASIC)
        abort();
    if (c.scheme == WWWAUTH_BEARER && (c.realm == NULL || c.realm[0] == '\0'))
        abort();
    check_value(c.realm);
    check_value(c.service);
    check_value(c.scope);
    check_value(c.error);
    /* The same bytes give the same answer. */
    struct wwwauth_challenge again;
    if (wwwauth_parse((const char *)data, size, &again, &err) != 0 || again.scheme != c.scheme ||
        (c.realm != NULL) != (again.realm != NULL) ||
        (c.realm != NULL && strcmp(c.realm, again.realm) != 0))
        abort();
    wwwauth_challenge_release(&again);
    wwwauth_challenge_release(&c);
    return 0;
}
