/* Docker registry token scopes and the JWT "access" claim that grants them.
 *
 * ff-registry names the scope it needs in WWW-Authenticate and checks the
 * access claim of the bearer token; ff-builder parses the scopes a client
 * asks for and mints the claim. Grammar (distribution docs/spec/auth/scope.md):
 *
 *   scope          := resourcescope [ ' ' resourcescope ]*
 *   resourcescope  := resourcetype ":" resourcename ":" action [ ',' action ]*
 *   resourcetype   := /[a-z0-9]+/ [ '(' /[a-z0-9]+/ ')' ]
 *   resourcename   := [ hostname '/' ] component [ '/' component ]*
 *   hostname       := hostcomponent [ '.' hostcomponent ]* [ ':' /[0-9]+/ ]
 *   action         := /[a-z]+/ | '*'
 *
 * and component is the OCI repository-name component
 * [a-z0-9]+ ( ( '.' | '_' | '__' | '-'+ ) [a-z0-9]+ )*. The name may itself
 * hold ':' (host:port/repo), so the type ends at the first ':' of a
 * resourcescope and the actions start after its last ':'.
 *
 * What we do not understand is dropped, not refused, as distribution does: a
 * resource type other than "repository" and "registry", a "registry" name
 * other than "catalog", an action a type does not have ("repository" has
 * pull, push, delete and "*"; "registry" has only "*"). A scope left with
 * no action grants nothing and is not kept. A resource class
 * ("repository(plugin)") is accepted and dropped: it does not change what a
 * name refers to here. Anything that breaks the grammar is FF_EINVAL, so a
 * typo fails loudly instead of silently granting less. */
#ifndef FF_SCOPE_H
#define FF_SCOPE_H

#include "ff_err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Longest resource name: clients cap "host[:port]/name" at 255 characters
 * (OCI distribution spec), so nothing longer can name a real repository. */
#define FF_SCOPE_NAME_MAX 255
/* Longest scope string parsed in one call: 64 scopes of typical length;
 * anything longer is not a token request a client would send. */
#define FF_SCOPE_STRING_MAX 8192
/* Most entries in one access claim: a push of one image names a handful of
 * repositories (target, mount sources); 64 leaves room and bounds the token
 * size and the linear lookups in ff_access_allows. */
#define FF_ACCESS_MAX 64

/* Action bits. FF_ACTION_ALL is the "*" action: it grants every action on
 * its resource and is kept as its own bit so that it round-trips. */
#define FF_ACTION_PULL 1u
#define FF_ACTION_PUSH 2u
#define FF_ACTION_DELETE 4u
#define FF_ACTION_ALL 8u

#define FF_SCOPE_TYPE_REPOSITORY "repository"
#define FF_SCOPE_TYPE_REGISTRY "registry"
/* The only "registry" resource: the catalog (GET /v2/_catalog). */
#define FF_SCOPE_NAME_CATALOG "catalog"

struct ff_access_entry {
    char *type;       /* "repository" or "registry" */
    char *name;       /* validated resource name */
    unsigned actions; /* FF_ACTION_* bits, never 0 */
};

/* A set of grants. Entries are unique by (type, name): adding a grant for a
 * resource already present merges the actions. */
struct ff_access {
    struct ff_access_entry *entries;
    size_t n;
};

/* Prepares an empty set (equivalent to zero-initialising it). */
void ff_access_init(struct ff_access *a);

/* Frees every entry; the set is empty afterwards and may be reused.
 * NULL-safe. */
void ff_access_release(struct ff_access *a);

/* Checks len bytes of name against the OCI repository-name grammar
 * (components of [a-z0-9] joined by '.', '_', '__' or runs of '-',
 * separated by '/'; no hostname) and FF_SCOPE_NAME_MAX. This is the one
 * implementation of that grammar; ff-registry adds its own depth limit.
 * Returns 0 or FF_EINVAL with a message that names the failing component
 * and says what was expected, without the name itself (callers prefix it):
 * `component 2 ".." must start with [a-z0-9]`. */
int ff_scope_name_check(const char *name, size_t len, struct ff_err *err);

/* Parses a scope string (one or more resource scopes separated by spaces)
 * and merges what it grants into out. Nothing is added unless the whole
 * string parses. Errors: FF_EINVAL (grammar, with the failing scope in the
 * message), FF_ETOOBIG (longer than FF_SCOPE_STRING_MAX, or out would hold
 * more than FF_ACCESS_MAX entries), FF_ENOMEM. */
int ff_scope_parse(const char *s, struct ff_access *out, struct ff_err *err);

/* Adds one grant, merging with an entry for the same resource. type must
 * be "repository" or "registry" and name must be valid for it; actions of
 * 0 add nothing. Errors: FF_EINVAL (unknown type, bad name, action bits
 * outside FF_ACTION_*), FF_ETOOBIG (more than FF_ACCESS_MAX entries),
 * FF_ENOMEM; on error a is unchanged. */
int ff_access_add(struct ff_access *a, const char *type, const char *name, unsigned actions,
                  struct ff_err *err);

/* Reads a JWT "access" claim: an array of at most FF_ACCESS_MAX objects
 * {"type": string, "name": string, "actions": [string, ...]} and merges it
 * into out. Strict on shape: a claim that is not an array, an item that is
 * not an object, a missing or mistyped field, or a "repository" name that
 * breaks the grammar is FF_EINVAL. Unknown types, names and actions are
 * dropped as described above; other keys of an item are ignored (the token
 * spec allows extensions). Nothing is added unless the whole claim parses.
 * Errors: FF_EINVAL, FF_ETOOBIG, FF_ENOMEM. */
int ff_access_from_json(const json_t *claim, struct ff_access *out, struct ff_err *err);

/* Builds the "access" claim for a (an array, in entry order; actions in
 * the order pull, push, delete, "*"). *out belongs to the caller
 * (json_decref). Errors: FF_ENOMEM. */
int ff_access_to_json(const struct ff_access *a, json_t **out, struct ff_err *err);

/* True when a grants every bit of action on (type, name): an entry with
 * that exact type and name holds those bits, or holds FF_ACTION_ALL. An
 * action of 0 is never allowed. Names are compared byte for byte. */
bool ff_access_allows(const struct ff_access *a, const char *type, const char *name,
                      unsigned action);

/* Formats one resource scope, "repository:app/x:pull,push", for a
 * WWW-Authenticate challenge. type and name are checked as by
 * ff_access_add so that nothing outside the grammar (quotes, spaces) can
 * reach a header. *out is malloc'd and belongs to the caller. Errors:
 * FF_EINVAL (bad type or name, actions 0 or outside FF_ACTION_*),
 * FF_ENOMEM. */
int ff_access_format_scope(const char *type, const char *name, unsigned actions, char **out,
                           struct ff_err *err);

#endif
