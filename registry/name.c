/* Repository names, tags and references as they arrive in URLs. The name
 * grammar itself lives in lib/ff_scope.c (ff_scope_name_check), so that the
 * names a token grants and the names the registry serves are checked by the
 * same code; this file adds the registry's own limits. */
#include "registry.h"

#include "ff_scope.h"
#include "ff_str.h"

#include <string.h>

int name_validate(const char *name, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(name, strnlen(name, FF_STR_QUOTE_SIZE), q);
    size_t len = strnlen(name, NAME_LEN_MAX + 1);
    if (len > NAME_LEN_MAX)
        return ff_err_set(err, FF_EINVAL, "repository name \"%s\": longer than %d "
                          "characters", q, NAME_LEN_MAX);
    if (ff_scope_name_check(name, len, err) != 0)
        return ff_err_wrap(err, "repository name \"%s\"", q);
    size_t depth = 1;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '/')
            depth++;
    }
    if (depth > NAME_DEPTH_MAX)
        return ff_err_set(err, FF_EINVAL, "repository name \"%s\": %zu components, limit "
                          "is %d", q, depth, NAME_DEPTH_MAX);
    return 0;
}

static bool tag_char(char c, bool first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
        return true;
    return !first && (c == '.' || c == '-');
}

int tag_validate(const char *tag, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(tag, strnlen(tag, FF_STR_QUOTE_SIZE), q);
    size_t len = strnlen(tag, TAG_LEN_MAX + 1);
    if (len == 0)
        return ff_err_set(err, FF_EINVAL, "tag: empty, expected [a-zA-Z0-9_][a-zA-Z0-9._-]*");
    if (len > TAG_LEN_MAX)
        return ff_err_set(err, FF_EINVAL, "tag \"%s\": longer than %d characters", q,
                          TAG_LEN_MAX);
    for (size_t i = 0; i < len; i++) {
        if (!tag_char(tag[i], i == 0))
            return ff_err_set(err, FF_EINVAL, "tag \"%s\": character %zu is not %s", q,
                              i + 1, i == 0 ? "[a-zA-Z0-9_]" : "[a-zA-Z0-9._-]");
    }
    return 0;
}

int reference_parse(const char *ref, struct reference *out, struct ff_err *err)
{
    struct reference r;
    memset(&r, 0, sizeof(r));
    /* Checked here so that no message below echoes bytes a JSON error
     * body could not carry. */
    size_t len = strnlen(ref, FF_DIGEST_STR_MAX + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)ref[i];
        if (c <= 0x20 || c >= 0x7f)
            return ff_err_set(err, FF_EINVAL, "reference: character %zu (0x%02x) is not "
                              "printable ASCII", i + 1, c);
    }
    if (memchr(ref, ':', len) != NULL) {
        r.kind = REFERENCE_DIGEST;
        if (ff_digest_parse_str(ref, &r.digest, err) != 0)
            return ff_err_wrap(err, "reference");
    } else {
        r.kind = REFERENCE_TAG;
        if (tag_validate(ref, err) != 0)
            return ff_err_wrap(err, "reference");
        ff_strlcpy(r.tag, ref, sizeof(r.tag));
    }
    *out = r;
    return 0;
}
