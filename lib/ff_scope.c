#include "ff_scope.h"

#include "ff_json.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest resource type read from a claim: types are short words
 * ("repository"); a longer one is junk and would only bloat messages. */
#define SCOPE_TYPE_MAX 64
/* Most actions one claim entry may list: there are four we know and a
 * token server has no reason to repeat them; the cap bounds the work. */
#define ACCESS_ACTIONS_MAX 16

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* One OCI path component; idx counts from 1 for messages. */
static int component_check(const char *c, size_t n, size_t idx, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    if (n == 0)
        return ff_err_set(err, FF_EINVAL, "component %zu is empty, expected [a-z0-9]+", idx);
    ff_str_quote(c, n, q);
    if (!is_lower_alnum(c[0]))
        return ff_err_set(err, FF_EINVAL, "component %zu \"%s\" must start with [a-z0-9]", idx,
                          q);
    size_t i = 0;
    while (i < n) {
        if (is_lower_alnum(c[i])) {
            i++;
            continue;
        }
        size_t sep = i;
        if (c[i] == '.') {
            i++;
        } else if (c[i] == '_') {
            i++;
            if (i < n && c[i] == '_')
                i++;
        } else if (c[i] == '-') {
            while (i < n && c[i] == '-')
                i++;
        } else {
            unsigned char bad = (unsigned char)c[i];
            if (bad >= 0x20 && bad < 0x7f)
                return ff_err_set(err, FF_EINVAL, "component %zu \"%s\": character %zu '%c' "
                                  "is outside [a-z0-9._-]", idx, q, i + 1, bad);
            return ff_err_set(err, FF_EINVAL, "component %zu \"%s\": character %zu (0x%02x) "
                              "is outside [a-z0-9._-]", idx, q, i + 1, bad);
        }
        if (i == n || !is_lower_alnum(c[i]))
            return ff_err_set(err, FF_EINVAL, "component %zu \"%s\": separator \"%.*s\" must "
                              "be followed by [a-z0-9]", idx, q, (int)(i - sep), c + sep);
    }
    return 0;
}

int ff_scope_name_check(const char *name, size_t len, struct ff_err *err)
{
    if (len == 0)
        return ff_err_set(err, FF_EINVAL, "empty, expected components of [a-z0-9._-] "
                          "separated by '/'");
    if (len > FF_SCOPE_NAME_MAX)
        return ff_err_set(err, FF_EINVAL, "%zu characters long, limit is %d", len,
                          FF_SCOPE_NAME_MAX);
    size_t start = 0;
    for (size_t idx = 1;; idx++) {
        const char *slash = memchr(name + start, '/', len - start);
        size_t end = slash != NULL ? (size_t)(slash - name) : len;
        int rc = component_check(name + start, end - start, idx, err);
        if (rc != 0)
            return rc;
        if (slash == NULL)
            return 0;
        start = end + 1;
    }
}

/* hostcomponent: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
static bool host_component_valid(const char *s, size_t n)
{
    if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

/* hostname := hostcomponent ['.' hostcomponent]* [':' port-number] */
static bool hostname_valid(const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    size_t host_len = n;
    if (colon != NULL) {
        host_len = (size_t)(colon - s);
        size_t port_len = n - host_len - 1;
        if (port_len == 0)
            return false;
        for (size_t i = 0; i < port_len; i++) {
            if (colon[1 + i] < '0' || colon[1 + i] > '9')
                return false;
        }
    }
    size_t start = 0;
    for (;;) {
        const char *dot = memchr(s + start, '.', host_len - start);
        size_t end = dot != NULL ? (size_t)(dot - s) : host_len;
        if (!host_component_valid(s + start, end - start))
            return false;
        if (dot == NULL)
            return true;
        start = end + 1;
    }
}

/* resourcename := [ hostname '/' ] component [ '/' component ]*. The two
 * alternatives overlap ("localhost/x"); a name is valid if either fits. */
static int resource_name_check(const char *s, size_t len, struct ff_err *err)
{
    if (len > FF_SCOPE_NAME_MAX || ff_scope_name_check(s, len, NULL) == 0)
        return ff_scope_name_check(s, len, err);
    const char *slash = memchr(s, '/', len);
    size_t host_len = slash != NULL ? (size_t)(slash - s) : 0;
    if (slash != NULL && hostname_valid(s, host_len)) {
        const char *rest = slash + 1;
        size_t rest_len = len - host_len - 1;
        if (ff_scope_name_check(rest, rest_len, NULL) == 0)
            return 0;
        /* Blame the rest only when the first part can be nothing but a
         * host; otherwise the plain path reading says more. */
        if (component_check(s, host_len, 1, NULL) != 0) {
            (void)ff_scope_name_check(rest, rest_len, err);
            return ff_err_wrap(err, "after host \"%.*s\"", (int)host_len, s);
        }
    }
    return ff_scope_name_check(s, len, err);
}

static bool type_known(const char *type, size_t len)
{
    return (len == strlen(FF_SCOPE_TYPE_REPOSITORY) &&
            memcmp(type, FF_SCOPE_TYPE_REPOSITORY, len) == 0) ||
           (len == strlen(FF_SCOPE_TYPE_REGISTRY) &&
            memcmp(type, FF_SCOPE_TYPE_REGISTRY, len) == 0);
}

/* Bit for one action word of a known type, or 0 when the type has no such
 * action (dropped by the callers). */
static unsigned action_bit(const char *type, const char *word, size_t len)
{
    if (len == 1 && word[0] == '*')
        return FF_ACTION_ALL;
    if (strcmp(type, FF_SCOPE_TYPE_REPOSITORY) != 0)
        return 0;
    if (len == 4 && memcmp(word, "pull", 4) == 0)
        return FF_ACTION_PULL;
    if (len == 4 && memcmp(word, "push", 4) == 0)
        return FF_ACTION_PUSH;
    if (len == 6 && memcmp(word, "delete", 6) == 0)
        return FF_ACTION_DELETE;
    return 0;
}

/* Action bits a type may hold. */
static unsigned type_actions(const char *type)
{
    if (strcmp(type, FF_SCOPE_TYPE_REPOSITORY) == 0)
        return FF_ACTION_PULL | FF_ACTION_PUSH | FF_ACTION_DELETE | FF_ACTION_ALL;
    return FF_ACTION_ALL;
}

/* True when (type, name) is a resource we keep; registry names other than
 * the catalog are dropped. The name must already be grammar-checked. */
static bool resource_kept(const char *type, const char *name, size_t name_len)
{
    if (strcmp(type, FF_SCOPE_TYPE_REGISTRY) != 0)
        return true;
    return name_len == strlen(FF_SCOPE_NAME_CATALOG) &&
           memcmp(name, FF_SCOPE_NAME_CATALOG, name_len) == 0;
}

static struct ff_access_entry *entry_find(const struct ff_access *a, const char *type,
                                          const char *name, size_t name_len)
{
    for (size_t i = 0; i < a->n; i++) {
        struct ff_access_entry *e = &a->entries[i];
        if (strcmp(e->type, type) == 0 && strlen(e->name) == name_len &&
            memcmp(e->name, name, name_len) == 0)
            return e;
    }
    return NULL;
}

/* Adds a grant that the caller has validated; on error a is unchanged. */
static int access_put(struct ff_access *a, const char *type, const char *name, size_t name_len,
                      unsigned actions, struct ff_err *err)
{
    if (actions == 0)
        return 0;
    struct ff_access_entry *e = entry_find(a, type, name, name_len);
    if (e != NULL) {
        e->actions |= actions;
        return 0;
    }
    if (a->n >= FF_ACCESS_MAX)
        return ff_err_set(err, FF_ETOOBIG, "access: more than %d resources", FF_ACCESS_MAX);
    char *t = strdup(type);
    char *n = ff_strndup(name, name_len);
    struct ff_access_entry *grown =
        t != NULL && n != NULL ? realloc(a->entries, (a->n + 1) * sizeof(*grown)) : NULL;
    if (grown == NULL) {
        free(t);
        free(n);
        return ff_err_set(err, FF_ENOMEM, "access: out of memory");
    }
    a->entries = grown;
    a->entries[a->n].type = t;
    a->entries[a->n].name = n;
    a->entries[a->n].actions = actions;
    a->n++;
    return 0;
}

/* Moves every grant of from into to, then empties from. Either all are
 * merged or, on error, to is unchanged (from is released either way). */
static int access_merge(struct ff_access *to, struct ff_access *from, struct ff_err *err)
{
    int rc = 0;
    size_t fresh = 0;
    for (size_t i = 0; i < from->n; i++) {
        const struct ff_access_entry *e = &from->entries[i];
        if (entry_find(to, e->type, e->name, strlen(e->name)) == NULL)
            fresh++;
    }
    if (to->n + fresh > FF_ACCESS_MAX) {
        rc = ff_err_set(err, FF_ETOOBIG, "access: more than %d resources", FF_ACCESS_MAX);
        goto out;
    }
    if (fresh > 0) {
        struct ff_access_entry *grown = realloc(to->entries, (to->n + fresh) * sizeof(*grown));
        if (grown == NULL) {
            rc = ff_err_set(err, FF_ENOMEM, "access: out of memory");
            goto out;
        }
        to->entries = grown;
    }
    for (size_t i = 0; i < from->n; i++) {
        struct ff_access_entry *e = &from->entries[i];
        struct ff_access_entry *have = entry_find(to, e->type, e->name, strlen(e->name));
        if (have != NULL) {
            have->actions |= e->actions;
            continue;
        }
        to->entries[to->n++] = *e;
        e->type = NULL;
        e->name = NULL;
    }
out:
    ff_access_release(from);
    return rc;
}

void ff_access_init(struct ff_access *a)
{
    a->entries = NULL;
    a->n = 0;
}

void ff_access_release(struct ff_access *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->entries[i].type);
        free(a->entries[i].name);
    }
    free(a->entries);
    a->entries = NULL;
    a->n = 0;
}

/* Checks type, name and action bits as ff_access_add documents. */
static int grant_check(const char *type, const char *name, unsigned actions, struct ff_err *err)
{
    if (!type_known(type, strlen(type))) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(type, strlen(type), q);
        return ff_err_set(err, FF_EINVAL, "access: resource type \"%s\", expected "
                          "\"repository\" or \"registry\"", q);
    }
    size_t name_len = strlen(name);
    if (strcmp(type, FF_SCOPE_TYPE_REGISTRY) == 0) {
        if (strcmp(name, FF_SCOPE_NAME_CATALOG) != 0)
            return ff_err_set(err, FF_EINVAL, "access: registry resource must be "
                              "\"catalog\"");
    } else if (resource_name_check(name, name_len, err) != 0) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(name, name_len, q);
        return ff_err_wrap(err, "access: name \"%s\"", q);
    }
    if ((actions & ~type_actions(type)) != 0)
        return ff_err_set(err, FF_EINVAL, "access: actions 0x%x not defined for \"%s\"",
                          actions & ~type_actions(type), type);
    return 0;
}

int ff_access_add(struct ff_access *a, const char *type, const char *name, unsigned actions,
                  struct ff_err *err)
{
    int rc = grant_check(type, name, actions, err);
    if (rc != 0)
        return rc;
    return access_put(a, type, name, strlen(name), actions, err);
}

/* resourcetype := /[a-z0-9]+/ [ '(' /[a-z0-9]+/ ')' ]; *base_len gets the
 * length of the type without its class. */
static bool resource_type_parse(const char *s, size_t n, size_t *base_len)
{
    size_t i = 0;
    while (i < n && is_lower_alnum(s[i]))
        i++;
    if (i == 0)
        return false;
    *base_len = i;
    if (i == n)
        return true;
    if (s[i] != '(' || s[n - 1] != ')')
        return false;
    size_t j = i + 1;
    while (j < n - 1 && is_lower_alnum(s[j]))
        j++;
    return j == n - 1 && j > i + 1;
}

/* One resourcescope of len bytes at s, added to acc. */
static int resource_scope_parse(const char *s, size_t len, struct ff_access *acc,
                                struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(s, len, q);
    const char *first = memchr(s, ':', len);
    const char *last = memrchr(s, ':', len);
    if (first == NULL || first == last)
        return ff_err_set(err, FF_EINVAL, "scope \"%s\": expected type:name:actions", q);
    size_t type_len = (size_t)(first - s);
    size_t base_len = 0;
    if (!resource_type_parse(s, type_len, &base_len))
        return ff_err_set(err, FF_EINVAL, "scope \"%s\": resource type must be [a-z0-9]+ "
                          "with an optional (class)", q);
    const char *name = first + 1;
    size_t name_len = (size_t)(last - name);
    if (resource_name_check(name, name_len, err) != 0)
        return ff_err_wrap(err, "scope \"%s\": name", q);
    const char *actions = last + 1;
    size_t actions_len = len - (size_t)(actions - s);
    /* The type is known to be one of two literals from here on. */
    const char *type = NULL;
    if (base_len == strlen(FF_SCOPE_TYPE_REPOSITORY) &&
        memcmp(s, FF_SCOPE_TYPE_REPOSITORY, base_len) == 0)
        type = FF_SCOPE_TYPE_REPOSITORY;
    else if (base_len == strlen(FF_SCOPE_TYPE_REGISTRY) &&
             memcmp(s, FF_SCOPE_TYPE_REGISTRY, base_len) == 0)
        type = FF_SCOPE_TYPE_REGISTRY;
    unsigned bits = 0;
    size_t start = 0;
    for (;;) {
        const char *comma = memchr(actions + start, ',', actions_len - start);
        size_t end = comma != NULL ? (size_t)(comma - actions) : actions_len;
        const char *word = actions + start;
        size_t word_len = end - start;
        bool star = word_len == 1 && word[0] == '*';
        bool ok = word_len > 0;
        for (size_t i = 0; ok && !star && i < word_len; i++)
            ok = word[i] >= 'a' && word[i] <= 'z';
        if (!ok)
            return ff_err_set(err, FF_EINVAL, "scope \"%s\": action %s, expected [a-z]+ or "
                              "\"*\"", q, word_len == 0 ? "is empty" : "is malformed");
        if (type != NULL)
            bits |= action_bit(type, word, word_len);
        if (comma == NULL)
            break;
        start = end + 1;
    }
    if (type == NULL || !resource_kept(type, name, name_len))
        return 0;
    return access_put(acc, type, name, name_len, bits, err);
}

int ff_scope_parse(const char *s, struct ff_access *out, struct ff_err *err)
{
    size_t len = strnlen(s, FF_SCOPE_STRING_MAX + 1);
    if (len > FF_SCOPE_STRING_MAX)
        return ff_err_set(err, FF_ETOOBIG, "scope: longer than %d characters",
                          FF_SCOPE_STRING_MAX);
    struct ff_access tmp;
    ff_access_init(&tmp);
    size_t i = 0;
    size_t scopes = 0;
    int rc = 0;
    while (i < len) {
        if (s[i] == ' ') {
            i++;
            continue;
        }
        const char *sp = memchr(s + i, ' ', len - i);
        size_t end = sp != NULL ? (size_t)(sp - s) : len;
        rc = resource_scope_parse(s + i, end - i, &tmp, err);
        if (rc != 0)
            goto fail;
        scopes++;
        i = end;
    }
    if (scopes == 0) {
        rc = ff_err_set(err, FF_EINVAL, "scope: empty, expected type:name:actions");
        goto fail;
    }
    return access_merge(out, &tmp, err);
fail:
    ff_access_release(&tmp);
    return rc;
}

/* One item of an access claim, added to acc (or dropped, see the header). */
static int claim_item_parse(const json_t *item, struct ff_access *acc, struct ff_err *err)
{
    if (!json_is_object(item))
        return ff_err_set(err, FF_EINVAL, "expected an object, got %s",
                          ff_json_type_name(item));
    const char *type = NULL;
    const char *name = NULL;
    json_t *actions = NULL;
    int rc = ff_json_get_string(item, "type", true, SCOPE_TYPE_MAX, &type, err);
    if (rc == 0)
        rc = ff_json_get_string(item, "name", true, FF_SCOPE_NAME_MAX, &name, err);
    if (rc == 0)
        rc = ff_json_get_array(item, "actions", true, ACCESS_ACTIONS_MAX, &actions, err);
    if (rc != 0)
        return rc;
    size_t name_len = strlen(name);
    /* A claim built with embedded NULs must not pass as a shorter name. */
    if (name_len != json_string_length(json_object_get(item, "name")) ||
        strlen(type) != json_string_length(json_object_get(item, "type")))
        return ff_err_set(err, FF_EINVAL, "field \"type\" or \"name\": contains a NUL");
    bool known = type_known(type, strlen(type));
    if (known && strcmp(type, FF_SCOPE_TYPE_REPOSITORY) == 0) {
        rc = resource_name_check(name, name_len, err);
        if (rc != 0)
            return ff_err_wrap(err, "field \"name\"");
    }
    unsigned bits = 0;
    size_t i;
    json_t *a;
    json_array_foreach(actions, i, a) {
        if (!json_is_string(a))
            return ff_err_set(err, FF_EINVAL, "field \"actions\": item %zu: expected a "
                              "string, got %s", i, ff_json_type_name(a));
        if (known)
            bits |= action_bit(type, json_string_value(a), json_string_length(a));
    }
    if (!known || !resource_kept(type, name, name_len))
        return 0;
    return access_put(acc, type, name, name_len, bits, err);
}

int ff_access_from_json(const json_t *claim, struct ff_access *out, struct ff_err *err)
{
    if (!json_is_array(claim))
        return ff_err_set(err, FF_EINVAL, "access claim: expected an array, got %s",
                          ff_json_type_name(claim));
    if (json_array_size(claim) > FF_ACCESS_MAX)
        return ff_err_set(err, FF_ETOOBIG, "access claim: %zu items, limit is %d",
                          json_array_size(claim), FF_ACCESS_MAX);
    struct ff_access tmp;
    ff_access_init(&tmp);
    size_t i;
    json_t *item;
    json_array_foreach(claim, i, item) {
        int rc = claim_item_parse(item, &tmp, err);
        if (rc != 0) {
            ff_access_release(&tmp);
            return ff_err_wrap(err, "access claim item %zu", i);
        }
    }
    return access_merge(out, &tmp, err);
}

static const struct {
    unsigned bit;
    const char *word;
} action_words[] = {
    {FF_ACTION_PULL, "pull"},
    {FF_ACTION_PUSH, "push"},
    {FF_ACTION_DELETE, "delete"},
    {FF_ACTION_ALL, "*"},
};
#define ACTION_WORDS (sizeof(action_words) / sizeof(action_words[0]))

static json_t *entry_to_json(const struct ff_access_entry *e)
{
    json_t *obj = json_object();
    json_t *actions = json_array();
    if (obj == NULL || actions == NULL)
        goto fail;
    for (size_t i = 0; i < ACTION_WORDS; i++) {
        if ((e->actions & action_words[i].bit) != 0 &&
            json_array_append_new(actions, json_string(action_words[i].word)) != 0)
            goto fail;
    }
    if (json_object_set_new(obj, "type", json_string(e->type)) != 0 ||
        json_object_set_new(obj, "name", json_string(e->name)) != 0)
        goto fail;
    if (json_object_set_new(obj, "actions", actions) != 0) {
        actions = NULL; /* json_object_set_new consumed it even on failure */
        goto fail;
    }
    return obj;
fail:
    json_decref(actions);
    json_decref(obj);
    return NULL;
}

int ff_access_to_json(const struct ff_access *a, json_t **out, struct ff_err *err)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return ff_err_set(err, FF_ENOMEM, "access: out of memory");
    for (size_t i = 0; i < a->n; i++) {
        if (json_array_append_new(arr, entry_to_json(&a->entries[i])) != 0) {
            json_decref(arr);
            return ff_err_set(err, FF_ENOMEM, "access: out of memory");
        }
    }
    *out = arr;
    return 0;
}

bool ff_access_allows(const struct ff_access *a, const char *type, const char *name,
                      unsigned action)
{
    if (action == 0)
        return false;
    const struct ff_access_entry *e = entry_find(a, type, name, strlen(name));
    if (e == NULL)
        return false;
    return (e->actions & FF_ACTION_ALL) != 0 || (e->actions & action) == action;
}

int ff_access_format_scope(const char *type, const char *name, unsigned actions, char **out,
                           struct ff_err *err)
{
    if (actions == 0)
        return ff_err_set(err, FF_EINVAL, "access: scope without actions");
    int rc = grant_check(type, name, actions, err);
    if (rc != 0)
        return rc;
    /* "pull,push,delete,*" and a NUL */
    char words[32];
    size_t used = 0;
    for (size_t i = 0; i < ACTION_WORDS; i++) {
        if ((actions & action_words[i].bit) == 0)
            continue;
        int n = snprintf(words + used, sizeof(words) - used, "%s%s", used > 0 ? "," : "",
                         action_words[i].word);
        if (n < 0 || (size_t)n >= sizeof(words) - used)
            return ff_err_set(err, FF_EINVAL, "access: actions do not fit");
        used += (size_t)n;
    }
    char *s = ff_asprintf("%s:%s:%s", type, name, words);
    if (s == NULL)
        return ff_err_set(err, FF_ENOMEM, "access: out of memory");
    *out = s;
    return 0;
}
