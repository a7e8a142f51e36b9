/* Who may do what in the registry (DESIGN.md §2): the intersection of what
 * a client asks for with what its identity allows. Push is the dangerous
 * action, so it is granted in exactly one place below. */
#include "builder.h"

#include <string.h>

#define LIBRARY_PREFIX "library/"

/* Splits "owner/app" (exactly two components) into its parts. */
static bool app_repo_split(const char *name, char owner[USER_NAME_MAX + 1],
                           char app[APP_NAME_MAX + 1])
{
    const char *slash = strchr(name, '/');
    if (slash == NULL || strchr(slash + 1, '/') != NULL)
        return false;
    size_t olen = (size_t)(slash - name);
    size_t alen = strlen(slash + 1);
    if (olen == 0 || olen > USER_NAME_MAX || alen == 0 || alen > APP_NAME_MAX)
        return false;
    memcpy(owner, name, olen);
    owner[olen] = '\0';
    memcpy(app, slash + 1, alen + 1);
    return true;
}

/* The actions s may have on one resource. */
static unsigned allowed_actions(const struct grant_subject *s, const char *type,
                                const char *name)
{
    if (strcmp(type, FF_SCOPE_TYPE_REGISTRY) == 0)
        return s->admin && strcmp(name, FF_SCOPE_NAME_CATALOG) == 0 ? FF_ACTION_ALL : 0;
    if (strcmp(type, FF_SCOPE_TYPE_REPOSITORY) != 0)
        return 0;
    if (strncmp(name, LIBRARY_PREFIX, strlen(LIBRARY_PREFIX)) == 0 &&
        name[strlen(LIBRARY_PREFIX)] != '\0') {
        if (s->admin)
            return FF_ACTION_PULL | FF_ACTION_PUSH;
        return s->library_pull ? FF_ACTION_PULL : 0;
    }
    char owner[USER_NAME_MAX + 1], app[APP_NAME_MAX + 1];
    if (!app_repo_split(name, owner, app))
        return 0;
    /* The only push outside library/: a worker's own job's repository. */
    if (s->can_push_app != NULL && s->can_push_app(s->ctx, owner, app))
        return FF_ACTION_PULL | FF_ACTION_PUSH;
    if (s->can_pull_app != NULL && s->can_pull_app(s->ctx, owner, app))
        return FF_ACTION_PULL;
    return 0;
}

int grant_compute(const struct grant_subject *s, const struct ff_access *requested,
                  struct ff_access *granted, struct ff_access *denied, struct ff_err *err)
{
    for (size_t i = 0; i < requested->n; i++) {
        const struct ff_access_entry *e = &requested->entries[i];
        unsigned allowed = allowed_actions(s, e->type, e->name);
        unsigned want = e->actions;
        /* "*" on a repository would include push and delete: it is only
         * ever granted as a whole where everything is allowed. */
        unsigned give = want & allowed;
        if ((want & FF_ACTION_ALL) && !(allowed & FF_ACTION_ALL))
            give &= ~FF_ACTION_ALL;
        int rc = ff_access_add(granted, e->type, e->name, give, err);
        if (rc == 0)
            rc = ff_access_add(denied, e->type, e->name, want & ~give, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}
