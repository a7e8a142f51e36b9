/* ff-worker's private header: every part of the build engine, one section
 * per responsibility (see docs/worker.md for how they fit together). */
#ifndef WORKER_H
#define WORKER_H

#include "ff_digest.h"
#include "ff_err.h"
#include "ff_http_client.h"

#include <jansson.h>
#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* ==== recipe ============================================================== */

/* The recipe front end of ff-worker: Dockerfile.template substitution, the
 * Dockerfile parser, Docker's variable substitution with ARG/ENV scoping,
 * and .dockerignore matching. Recipes and ignore files come from the pushed
 * repository: hostile input, parsed with explicit limits, never aborting.
 *
 * Files: dockerfile.c (template, parser), expand.c (substitution, scopes,
 * the expanded form of each step), ignore.c (.dockerignore).
 *
 * Behaviour follows BuildKit's Dockerfile frontend (parser, instructions
 * and shell lexer) and moby/patternmatcher where it matters: the same
 * line continuations, directives, word splitting, quoting and substitution
 * rules, so a Dockerfile that builds with `docker build` means the same
 * here. Where we are stricter the error says what was expected.
 *
 * Parse errors read "<file>:<line>: <INSTRUCTION>: <what is wrong>,
 * expected <what>"; the line is the first line of a continued instruction.
 * Every function returns 0 or a negative FF_E* code and fills err. */

/* ---- limits ------------------------------------------------------------ */

/* Largest recipe accepted: real Dockerfiles are a few KiB. */
#define RECIPE_SIZE_MAX ((size_t)1 << 20)
/* Longest physical line, and longest instruction once its continuation
 * lines are joined: a long apt-get install list stays under 8 KiB. */
#define RECIPE_LINE_MAX ((size_t)64 << 10)
/* Most instructions (all stages, global ARGs included) and stages: Docker
 * refuses images of more than 125 layers, so real recipes stay far below. */
#define RECIPE_INSTRS_MAX 4096
#define RECIPE_STAGES_MAX 128
/* Longest result of substituting one word, and most bytes of variables one
 * scope holds: a process environment larger than ARG_MAX (2 MiB) could not
 * be passed to RUN anyway, and the cap stops ENV A=$B$B$B... doubling. */
#define RECIPE_EXPAND_MAX ((size_t)1 << 20)
#define RECIPE_SCOPE_MAX ((size_t)1 << 20)
/* Deepest nesting of ${A:-${B:-...}} and quotes inside them: real recipes
 * use two levels; the cap bounds the recursion. */
#define RECIPE_EXPAND_DEPTH_MAX 32
/* Most ports one EXPOSE may name once ranges are expanded. */
#define RECIPE_EXPOSE_MAX 1024
/* Longest %%FF_APP%% value (an "owner/app" name with room to spare). */
#define RECIPE_APP_MAX 255

/* ---- dockerfile.c: Dockerfile.template --------------------------------- */

/* Replaces %%FF_ARCH%% with arch ("amd64", "arm64" or "armv7") and
 * %%FF_APP%% with app (at most RECIPE_APP_MAX bytes of [A-Za-z0-9._/-],
 * so it cannot break a recipe line or a quoted word; NULL or "" when the
 * build has no app name, then %%FF_APP%% is an error) in len bytes of
 * text. Only %%NAME%% with NAME an identifier is a placeholder; any other
 * % is text. On success *out (NUL-terminated, *out_len bytes) belongs to
 * the caller (free). Errors: FF_EINVAL (bad arch or app; an unknown
 * %%NAME%% or %%FF_APP%% without an app, the message naming
 * Dockerfile.template and the line), FF_ETOOBIG (input or result larger
 * than RECIPE_SIZE_MAX), FF_ENOMEM. */
int recipe_template(const char *text, size_t len, const char *arch, const char *app,
                    char **out, size_t *out_len, struct ff_err *err);

/* ---- dockerfile.c: the parsed recipe ----------------------------------- */

enum recipe_kind {
    RECIPE_ARG = 1,
    RECIPE_ENV,
    RECIPE_LABEL,
    RECIPE_RUN,
    RECIPE_CMD,
    RECIPE_ENTRYPOINT,
    RECIPE_COPY,
    RECIPE_ADD,
    RECIPE_WORKDIR,
    RECIPE_USER,
    RECIPE_EXPOSE
};

/* Upper-case name of an instruction kind ("COPY"); "?" for other values. */
const char *recipe_kind_name(enum recipe_kind kind);

/* One NAME=value of ENV, LABEL or ARG. value is NULL for an ARG declared
 * without a default (and, in an expanded ARG, one that has no value). */
struct recipe_kv {
    char *key;
    char *value;
};

/* One instruction after FROM (or a global ARG). In a parsed recipe the
 * words are as written (quotes and escapes kept, nothing substituted);
 * recipe_scope_step returns an expanded copy of the same shape in which
 * quotes are removed and variables substituted. */
struct recipe_instr {
    enum recipe_kind kind;
    unsigned line; /* first line of the instruction, 1-based */
    /* Parsed: the instruction as written, keyword upper-cased, continuation
     * lines joined, outer whitespace trimmed (used in messages and history).
     * Expanded: a canonical, unambiguous text of the expanded instruction
     * (values quoted where needed, COPY/ADD and exec forms as JSON arrays):
     * what goes into the step's cache key. */
    char *text;
    /* RUN, CMD, ENTRYPOINT: exec form (a JSON array of strings) when true,
     * else args[0] is the shell command. COPY, ADD: written as a JSON array. */
    bool exec_form;
    /* RUN/CMD/ENTRYPOINT: the argv (exec form; CMD [] has none) or the one
     * shell command. COPY/ADD: the sources, then the destination (last).
     * EXPOSE: the port words (expanded: "80/tcp", ranges spelt out).
     * WORKDIR: the path. USER: "user[:group]". */
    char **args;
    size_t n_args;
    /* ENV, LABEL, ARG: the pairs in order. */
    struct recipe_kv *kvs;
    size_t n_kvs;
    /* COPY/ADD flags; NULL when not given. */
    char *from;     /* COPY --from= */
    char *chown;    /* --chown=user[:group] */
    char *chmod;    /* --chmod= octal */
    char *checksum; /* ADD --checksum=sha256:<64 hex> */
    bool link;      /* --link: accepted, means nothing here */
    /* --from names stage from_stage (an earlier stage, by name or index)
     * when >= 0; -1 when from is NULL, names an image (from_image), or still
     * holds a variable (parsed form). */
    int from_stage;
    bool from_image;
    /* --chmod as a number (0..07777) once known, else -1. */
    int chmod_mode;
};

/* A stage's FROM line. */
struct recipe_from {
    unsigned line;
    char *text;     /* as for recipe_instr.text */
    char *image;    /* the base: image reference or earlier stage's name */
    char *platform; /* --platform value, NULL when absent (recorded only) */
    char *name;     /* AS name, lower-cased, NULL when absent */
    /* image names stage base_stage (an earlier stage) when >= 0, else -1. */
    int base_stage;
    bool scratch; /* image is "scratch": the stage starts empty */
};

struct recipe_stage {
    struct recipe_from from;
    struct recipe_instr *instrs;
    size_t n_instrs;
};

struct recipe {
    char *file;  /* file name used in messages */
    char escape; /* '\\' or '`' (# escape= directive) */
    /* ARGs before the first FROM: visible in FROM lines, and inside a stage
     * that declares them again with ARG NAME. */
    struct recipe_instr *args;
    size_t n_args;
    struct recipe_stage *stages;
    size_t n_stages;
};

/* Parses len bytes of a Dockerfile; file_name (e.g. "Dockerfile") only
 * names it in messages. Accepts what BuildKit's frontend accepts for FROM,
 * ARG, ENV, LABEL, RUN, CMD, ENTRYPOINT, COPY, ADD, WORKDIR, USER, EXPOSE
 * (see dockerfile.c), with line continuations, comments, leading blanks
 * and parser directives (# escape= honoured, # syntax= and # check=
 * ignored). Refused with "<file>:<line>: <INSTRUCTION>: ..., expected ...":
 * unknown and unsupported instructions (MAINTAINER, ONBUILD, HEALTHCHECK,
 * SHELL, STOPSIGNAL, VOLUME), heredocs, instructions before FROM other
 * than ARG, unknown or malformed flags, JSON arrays of non-strings, missing
 * arguments, bad stage names, EXPOSE ports, --chmod modes and ADD
 * checksums, URLs in COPY or in ADD without --checksum, --from naming the
 * current or a later stage. On success *out belongs to the caller
 * (recipe_free). Errors: FF_EINVAL (the message says what and where),
 * FF_ETOOBIG (a limit above, named in the message), FF_ENOMEM. */
int recipe_parse(const char *text, size_t len, const char *file_name, struct recipe **out,
                 struct ff_err *err);

/* Frees a recipe and everything in it. NULL-safe. */
void recipe_free(struct recipe *r);

/* Free an instruction or FROM returned by recipe_scope_step or
 * recipe_scope_from (the struct and its contents). NULL-safe. */
void recipe_instr_free(struct recipe_instr *in);
void recipe_from_free(struct recipe_from *from);

/* Index of the stage named name (compared case-insensitively, as BuildKit
 * does) among the first `before` stages, or -1. */
int recipe_stage_find(const struct recipe *r, const char *name, size_t before);

/* Shared by dockerfile.c and expand.c, not for other callers.
 *
 * recipe_instr_check checks in, an instruction of stage (any stage for a
 * global ARG), against what Docker accepts once values are known: USER
 * and --chown forms, ports, --chmod, --checksum, URL sources, --from. With
 * expanded false (the parser) only words without quotes, escapes or $ are
 * checked; with expanded true everything is, EXPOSE ports are rewritten
 * as "port/proto" one per port, chmod_mode, from_stage and from_image are
 * set. Errors: FF_EINVAL "<file>:<line>: <INSTRUCTION>: ...", FF_ENOMEM,
 * FF_ETOOBIG (an EXPOSE range wider than RECIPE_EXPOSE_MAX). */
int recipe_instr_check(const struct recipe *r, size_t stage, struct recipe_instr *in,
                       bool expanded, struct ff_err *err);

/* ff_err_set with the "<file>:<line>: <instr>: " prefix (no instr part
 * when instr is NULL). Returns code. */
int recipe_err_at(struct ff_err *err, int code, const char *file, unsigned line,
                  const char *instr, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* A growable array of owned strings. */
struct recipe_strv {
    char **v;
    size_t n;
    size_t cap;
};

/* Returns p (elements of size elem, *cap of them) grown to hold need, the
 * new slots zeroed, or NULL when out of memory (p is then unchanged and
 * still owned by the caller). */
void *recipe_grow(void *p, size_t *cap, size_t need, size_t elem);

/* Takes s (owned; freed on failure) into sv. Returns 0 or FF_ENOMEM
 * (also for s NULL: a failed allocation of the caller's). */
int recipe_strv_take(struct recipe_strv *sv, char *s);

/* Frees the strings and the array; sv is empty afterwards. */
void recipe_strv_release(struct recipe_strv *sv);

/* ff_err_set and recipe_err_at as expressions whose value is visibly code,
 * so that the static analyzer follows error paths (it cannot see into
 * another file to learn that they return it). */
#define RECIPE_ERR(err, code, ...) (ff_err_set((err), (code), __VA_ARGS__), (code))
#define RECIPE_ERR_AT(err, code, ...) (recipe_err_at((err), (code), __VA_ARGS__), (code))

/* ---- expand.c: variable substitution ------------------------------------ */

/* Looks a variable up: returns true and points *value (borrowed, valid
 * until the caller's scope changes) at its value when name (name_len
 * bytes, not NUL-terminated) is set; false when unset. */
typedef bool (*recipe_lookup_fn)(void *ctx, const char *name, size_t name_len,
                                 const char **value);

/* Docker's substitution of one word (BuildKit's shell lexer, ProcessWord):
 * $NAME, ${NAME}, ${NAME:-word}, ${NAME-word}, ${NAME:+word}, ${NAME+word},
 * ${NAME:?msg}, ${NAME?msg}; the words nest and may be quoted. Single
 * quotes keep everything literal, double quotes allow $ substitution, the
 * escape character (escape, '\\' or '`') makes the next character literal
 * (inside double quotes only before ", $ and itself). Quotes are removed.
 * Unknown variables expand to "". lookup may be NULL (nothing is set).
 * On success *out belongs to the caller (free). Errors: FF_EINVAL (an
 * unterminated quote, a bad or unsupported ${...}, ${NAME?} of an unset
 * NAME; the message quotes the word), FF_ETOOBIG (result longer than
 * RECIPE_EXPAND_MAX, nesting deeper than RECIPE_EXPAND_DEPTH_MAX),
 * FF_ENOMEM. */
int recipe_expand_word(const char *word, char escape, recipe_lookup_fn lookup, void *ctx,
                       char **out, struct ff_err *err);

/* The same, splitting the result into words at unquoted blanks, blanks
 * that come out of an unquoted $NAME included (ProcessWords, used for
 * EXPOSE). *out is an array of *n_out strings, all owned by the caller
 * (recipe_strv_free); empty words are dropped. Errors as above. */
int recipe_expand_words(const char *word, char escape, recipe_lookup_fn lookup, void *ctx,
                        char ***out, size_t *n_out, struct ff_err *err);

/* Frees n strings and the array. NULL-safe. */
void recipe_strv_free(char **v, size_t n);

/* ---- expand.c: ARG and ENV scopes ---------------------------------------- */

/* The variables one part of a build sees, in Docker's order:
 *
 * - the global scope (recipe_scope_global_new) holds the automatic
 *   platform ARGs (TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT and
 *   the BUILD* ones) and the ARGs before the first FROM, defaults expanded
 *   in order and replaced by --build-arg values. FROM lines and COPY
 *   --from values expand in it (BuildKit resolves stage dependencies
 *   before it runs any stage).
 * - a stage scope (recipe_scope_stage_new) starts with the base image's
 *   ENV (or everything the base stage ended with) and changes as each
 *   instruction is stepped: ARG NAME sets NAME to its --build-arg value,
 *   else its expanded default, else the global ARG's value; ENV sets the
 *   variable for later steps and the image; the latest definition wins.
 *
 * A stage scope borrows its global scope and recipe, which must outlive
 * it. Scopes are not thread-safe. */
struct recipe_scope;

/* Creates the global scope of r for a build for target_arch, on a worker
 * of build_arch (each "amd64", "arm64" or "armv7"). build_args holds
 * n_build_args "NAME=value" strings (--build-arg; a later one replaces an
 * earlier one of the same name). On success *out belongs to the caller
 * (recipe_scope_free, after every stage scope made from it). Errors:
 * FF_EINVAL (a bad arch or build arg; a global ARG whose default does not
 * expand, with file:line), FF_ETOOBIG, FF_ENOMEM. */
int recipe_scope_global_new(const struct recipe *r, const char *const *build_args,
                            size_t n_build_args, const char *target_arch,
                            const char *build_arch, struct recipe_scope **out,
                            struct ff_err *err);

/* Expands stage's FROM line in the global scope: image and platform
 * substituted, base_stage and scratch decided on the result, text made
 * canonical. On success *out belongs to the caller (recipe_from_free).
 * Errors: FF_EINVAL (stage out of range; substitution failed; the base
 * expands to nothing, or names the current or a later stage), FF_ETOOBIG,
 * FF_ENOMEM. */
int recipe_scope_from(struct recipe_scope *global, size_t stage, struct recipe_from **out,
                      struct ff_err *err);

/* Creates the scope stage starts in. base is the scope the stage's base
 * stage ended with when its FROM names an earlier stage (then image_env
 * must be empty), else NULL and image_env holds the base image config's
 * n_image_env "NAME=value" strings (none for scratch). On success *out
 * belongs to the caller (recipe_scope_free). Errors: FF_EINVAL (stage out
 * of range, malformed image_env entry), FF_ETOOBIG, FF_ENOMEM. */
int recipe_scope_stage_new(struct recipe_scope *global, size_t stage,
                           const struct recipe_scope *base, const char *const *image_env,
                           size_t n_image_env, struct recipe_scope **out,
                           struct ff_err *err);

/* Expands in (an instruction of the scope's stage, in order) in scope and
 * then applies its effect to the scope (ARG, ENV). *out is the expanded
 * instruction (see struct recipe_instr), owned by the caller
 * (recipe_instr_free); its text is the cache key's instruction text.
 * RUN, CMD and ENTRYPOINT are copied unchanged: the shell expands them.
 * Checks what only the expanded values can show (empty names, USER and
 * --chown forms, ports, --chmod, checksums, URLs, --from stages). Errors:
 * FF_EINVAL with "<file>:<line>: <INSTRUCTION>: ...", FF_ETOOBIG,
 * FF_ENOMEM; on error the scope is unchanged. */
int recipe_scope_step(struct recipe_scope *scope, const struct recipe_instr *in,
                      struct recipe_instr **out, struct ff_err *err);

/* recipe_lookup_fn over a scope (ctx is a struct recipe_scope *), for the
 * engine's own substitutions. */
bool recipe_scope_lookup(void *ctx, const char *name, size_t name_len, const char **value);

/* The environment RUN sees (ARGs and ENVs, the latest definition of each,
 * in order of first definition) and the ENV the image config keeps, as
 * *n_out "NAME=value" strings owned by the caller (recipe_strv_free).
 * Errors: FF_ENOMEM. */
int recipe_scope_run_env(const struct recipe_scope *scope, char ***out, size_t *n_out,
                         struct ff_err *err);
int recipe_scope_image_env(const struct recipe_scope *scope, char ***out, size_t *n_out,
                           struct ff_err *err);

/* Docker's "[Warning] One or more build-args [A B] were not consumed":
 * after a build, the --build-arg names that no ARG of a global scope or
 * of a stage stepped through it declared (proxy variables, which Docker
 * predefines, are never reported). *out is NULL when all were consumed,
 * else "A B" owned by the caller (free). Errors: FF_ENOMEM. */
int recipe_scope_unused_build_args(const struct recipe_scope *global, char **out,
                                   struct ff_err *err);

/* Frees a scope. NULL-safe. */
void recipe_scope_free(struct recipe_scope *scope);

/* ---- ignore.c: .dockerignore -------------------------------------------- */

/* Largest .dockerignore, most patterns, longest pattern or path: matching
 * costs patterns x path length per file, so the caps keep a context walk
 * linear in its size. */
#define IGNORE_SIZE_MAX ((size_t)1 << 20)
#define IGNORE_PATTERNS_MAX 4096
#define IGNORE_PATH_MAX 4096

/* Compiled .dockerignore patterns (moby/patternmatcher semantics). */
struct ignore;

/* Parses len bytes of .dockerignore text as Docker does: one pattern a
 * line, a line whose first byte is '#' is a comment, blanks around a
 * pattern are trimmed, a leading '!' makes an exception, the pattern is
 * cleaned (duplicate and trailing '/', "." and ".." components, a leading
 * '/' removed). Patterns: '*' (any run of characters but '/'), '?' (one
 * character but '/'), [...] classes ([^...] negated), '\' escapes, '**'
 * any number of directories. Empty text gives a matcher that excludes
 * nothing. On success *out belongs to the caller (ignore_free). Errors:
 * FF_EINVAL (".dockerignore:<line>: ..., expected ..." for a lone '!' or
 * a malformed pattern), FF_ETOOBIG, FF_ENOMEM. */
int ignore_parse(const char *text, size_t len, struct ignore **out, struct ff_err *err);

/* Whether rel_path (relative to the context root, '/'-separated; a leading
 * "./" or '/' and duplicate '/' are tolerated) is excluded from the build
 * context: the last pattern that matches it or one of its parent
 * directories decides, an exception ('!') re-including. The patterns apply
 * to every path alike: Dockerfile and .dockerignore are not special here,
 * because the engine reads the recipe and the ignore file itself and never
 * through this filter; excluding them keeps them out of COPY and ADD only,
 * as with BuildKit. The empty path (the root) is never excluded. Errors:
 * FF_EINVAL (a ".." component), FF_ETOOBIG (longer than IGNORE_PATH_MAX),
 * FF_ENOMEM. */
int ignore_match(const struct ignore *ig, const char *rel_path, bool *excluded,
                 struct ff_err *err);

/* Whether a walk of the context must descend into directory rel_dir
 * (true) or may skip it whole (false). False only when rel_dir is excluded
 * and no exception pattern can match any path below it, which (as the
 * patterns are evaluated) guarantees that every entry below is excluded
 * too. Unlike the prefix test of Docker's and BuildKit's walkers, this
 * also sees exceptions with wildcards ("!**.go", "!src?/keep"), and sends
 * the walk only where an exception could still match. Errors as for
 * ignore_match. */
int ignore_dir_may_contain_exceptions(const struct ignore *ig, const char *rel_dir,
                                      bool *may, struct ff_err *err);

/* Number of patterns and whether any is an exception. */
size_t ignore_count(const struct ignore *ig);
bool ignore_has_exceptions(const struct ignore *ig);

/* Frees a matcher. NULL-safe. */
void ignore_free(struct ignore *ig);

/* ==== context ============================================================= */

/* The build context: COPY and ADD sources, the digest of what they carry,
 * and copying them into a rootfs (context.c, copy.c, fetch.c).
 *
 * A source is resolved inside a root directory: the build context, or the
 * rootfs of an earlier stage for COPY --from. Every path is walked one
 * component at a time with openat(O_NOFOLLOW) from descriptors we hold, and
 * symlinks are expanded by us, so a name swapped under our feet can change
 * which file inside the root is read but can never lead outside it.
 *
 * Semantics follow BuildKit's Dockerfile frontend (fsutil's copy), with the
 * differences listed at each function. In short:
 * - sources are relative to the root ("/x" is the root's "x"), cleaned; a
 *   relative source that climbs out ("../x") is refused; globs are Go's
 *   filepath.Match per path segment; a glob that matches nothing is an
 *   error (BuildKit ignores it silently; the classic builder refuses it);
 * - a top-level source that is a symlink is followed, inside the root;
 *   in the build context a symlink whose target leaves the context
 *   (absolute, or ".." above it) is an error; in a stage rootfs absolute
 *   targets are taken relative to that rootfs, as the image means them;
 * - symlinks inside a copied directory are copied as symlinks;
 * - excluded paths (.dockerignore) do not exist, as sources or inside
 *   copied directories; an excluded directory that may hold re-included
 *   entries is walked, and created only if something inside is copied;
 * - context files are owned 0:0, stage files keep their owners, unless
 *   --chown; --chmod replaces the permission bits of every file and
 *   directory copied (not of directories created on the way);
 * - sockets are skipped (Docker's context tar cannot carry them), fifos
 *   are copied, device nodes are refused (a checkout cannot hold one, so
 *   one in a context means tampering; creating device nodes as root from
 *   build input is not something the worker does).
 */

/* Longest path handled, relative to a root or inside a rootfs: Linux's
 * PATH_MAX, which no file in a context can exceed anyway. */
#define CONTEXT_PATH_MAX 4096
/* Deepest directory nesting walked: one descriptor is open per level; real
 * trees stay far below, a hostile one is stopped before the fd limit. */
#define CONTEXT_DEPTH_MAX 256
/* Most entries (files, directories, links) one COPY may carry, and most
 * sources a glob may expand to: a million is 80 times the benchmark's
 * context and still a bounded amount of memory. */
#define CONTEXT_ENTRIES_MAX (1u << 20)
/* Symlinks expanded while resolving one path: Linux's MAXSYMLINKS. */
#define CONTEXT_SYMLINKS_MAX 40
/* Longest glob pattern segment: a name is at most 255 bytes, and escapes
 * can double a pattern; matching costs pattern x name per entry, so this
 * keeps one match under a few hundred thousand steps. */
#define CONTEXT_GLOB_SEGMENT_MAX 1024
/* Read size for hashing and copying: large files stream in few syscalls,
 * and the buffer stays in L2. */
#define CONTEXT_IO_BUF ((size_t)256 * 1024)

/* ---- roots ------------------------------------------------------------- */

/* Decides whether rel_path (relative to the root, '/'-separated, never
 * empty, no leading '/') is excluded, as .dockerignore does. For an
 * excluded directory, *walk_anyway says whether entries below it may be
 * re-included (a "!" exception), so it must be walked. Set *excluded and
 * *walk_anyway (both start false). Return 0, or a negative FF_E* code with
 * err filled to stop the operation with that error. */
typedef int (*context_exclude_fn)(void *ctx, const char *rel_path, bool is_dir, bool *excluded,
                                  bool *walk_anyway, struct ff_err *err);

enum context_root_kind {
    /* A build context: symlinks may not leave it, owners become 0:0. */
    CONTEXT_ROOT_CONTEXT = 0,
    /* An earlier stage's rootfs (COPY --from): absolute symlinks resolve
     * inside it, owners are kept. */
    CONTEXT_ROOT_STAGE
};

struct context_root;

/* Opens dir as a root to resolve sources in. what names it in messages
 * ("the build context", "stage \"build\""). exclude (may be NULL) and its
 * ctx are kept and must outlive the root. On success *out belongs to the
 * caller (context_root_free). Errors: FF_ENOTFOUND (dir missing or not a
 * directory), FF_EIO, FF_ENOMEM. */
int context_root_open(const char *dir, enum context_root_kind kind, const char *what,
                      context_exclude_fn exclude, void *exclude_ctx, struct context_root **out,
                      struct ff_err *err);

/* NULL-safe. */
void context_root_free(struct context_root *r);

/* ---- sources ----------------------------------------------------------- */

enum context_instr { CONTEXT_COPY = 0, CONTEXT_ADD };

enum context_source_kind { CONTEXT_SRC_PATH = 0, CONTEXT_SRC_URL };

struct context_source {
    enum context_source_kind kind;
    char *spec; /* the source as written, or the glob it matched, for messages */
    /* PATH: the real path relative to the root once every symlink is
     * resolved ("" is the root itself), and the name it takes when copied
     * into a directory: the last component as written or matched (for a
     * followed symlink, the link's name, as BuildKit does). */
    char *path;
    char *name;
    mode_t type; /* S_IFREG, S_IFDIR or S_IFIFO */
    /* An excluded directory walked only for re-included entries: it is
     * copied only if one exists. */
    bool walk_only;
    /* URL: https URL and the --checksum it must match. */
    char *url;
    struct ff_digest checksum;
};

struct context_sources {
    const struct context_root *root; /* borrowed: must outlive this */
    enum context_instr instr;
    struct context_source *v;
    size_t n;
};

/* Resolves the n sources of a COPY or ADD (srcs as the recipe gives them,
 * quotes removed and variables expanded) inside root, in order, each glob
 * expanded in name order (bytes). checksum is ADD's --checksum value
 * ("sha256:<hex>") or NULL. ADD takes "http://" and "https://" sources as
 * URLs: only https is fetched, and only with a checksum; as in BuildKit a
 * checksum takes exactly one source, and that must be a URL (so a URL is
 * never mixed with other sources). Nothing is read here
 * beyond names and file types. On success *out belongs to the caller
 * (context_sources_free) and borrows root. Errors (messages start with
 * "COPY: " or "ADD: "): FF_EINVAL ("forbidden path outside <root>: ../x";
 * a symlink that leaves the build context; a bad glob; a device node; ADD
 * from a URL without --checksum ("ADD from a URL needs --checksum"), an
 * http:// URL, a malformed checksum), FF_ENOTFOUND ("source \"x\" not
 * found in <root>"; "no source files match \"*.x\" in <root>"),
 * FF_ETOOBIG (a limit above), FF_EIO, FF_ENOMEM, or the exclusion
 * callback's code. */
int context_resolve(const struct context_root *root, enum context_instr instr,
                    const char *const *srcs, size_t n, const char *checksum,
                    struct context_sources **out, struct ff_err *err);

/* NULL-safe. */
void context_sources_free(struct context_sources *s);

/* ---- digest ------------------------------------------------------------ */

/* What COPY/ADD does to metadata; the digest takes it in so that a
 * --chmod or --chown change is a different input. */
struct context_attrs {
    int chmod;  /* -1: keep; else 0..07777, replacing the mode's bits */
    bool chown; /* set owner to uid:gid (names already resolved) */
    uint32_t uid;
    uint32_t gid;
};

/* Memo of content digests, keyed by path and validated by (device, inode,
 * size, mtime, ctime), so an unchanged file is not read again. ctime cannot
 * be set back from user space, so any write or metadata change invalidates
 * an entry; files changed less than CONTEXT_MEMO_SETTLE_NS before hashing
 * are not memoised, because within one coarse clock tick a second write
 * may leave every stamp unchanged (git's "racily clean" problem).
 * Entries are keyed by the path inside the root, so keep one memo file per
 * context directory: two contexts sharing one stay correct (the inode and
 * stamps must match) but evict each other's entries. Not thread-safe: one
 * digest at a time per memo. */
struct context_memo;

/* Files whose ctime is younger than this when hashed are not memoised:
 * far above any kernel timestamp granularity (jiffies, NFS), short enough
 * that a settled tree is fully memoised by the second build. */
#define CONTEXT_MEMO_SETTLE_NS 1000000000LL
/* Most entries kept; beyond it new entries are simply not remembered. */
#define CONTEXT_MEMO_ENTRIES_MAX (1u << 21)
/* Largest memo file read: the entries' cap at their longest paths is far
 * above it; a bigger file is not ours and is ignored. */
#define CONTEXT_MEMO_FILE_MAX ((size_t)256 << 20)

/* Loads the memo saved at path (which need not exist). A file that is
 * missing, malformed, of another version or failing its own checksum
 * gives an empty memo: it is a cache, never an authority. On success *out
 * belongs to the caller (context_memo_free). Errors: FF_EIO (path cannot
 * be read for another reason than not existing), FF_ENOMEM. */
int context_memo_open(const char *path, struct context_memo **out, struct ff_err *err);

/* Parses a memo image from memory (what context_memo_open reads), for the
 * fuzzer and tests. Malformed data gives an empty memo, never an error
 * other than FF_ENOMEM. *out belongs to the caller. */
int context_memo_parse(const void *data, size_t len, struct context_memo **out, struct ff_err *err);

/* Writes the memo back to its path (a temporary file renamed over it) if
 * anything changed, keeping only entries used since it was opened when
 * any were (files gone from the context are forgotten). Errors: FF_EIO,
 * FF_ENOMEM. */
int context_memo_save(struct context_memo *m, struct ff_err *err);

/* Serialises the memo (as context_memo_save writes it) into a malloc'd
 * buffer the caller frees. Errors: FF_ENOMEM, FF_ETOOBIG. */
int context_memo_image(struct context_memo *m, void **out, size_t *len, struct ff_err *err);

/* Entries held, for tests. */
size_t context_memo_count(const struct context_memo *m);

/* Changes the settle time (CONTEXT_MEMO_SETTLE_NS) for this memo, so
 * tests need not wait for files to age. */
void context_memo_set_settle(struct context_memo *m, int64_t ns);

/* NULL-safe. */
void context_memo_free(struct context_memo *m);

struct context_stats {
    uint64_t entries;    /* entries digested */
    uint64_t files;      /* regular files among them */
    uint64_t bytes;      /* their total size */
    uint64_t bytes_read; /* bytes actually read and hashed (memo misses) */
    uint64_t memo_hits;  /* files whose digest came from the memo */
};

/* The input digest of the sources for the step's cache key: a sha256 over,
 * for each source in order, its kind and name (as matched; a URL source
 * contributes its URL and checksum only, so it is never fetched here), and
 * for each entry it carries, in walk order (each directory's names sorted
 * by bytes): its path relative to the source, type, permission bits after
 * attrs->chmod, owner as it will be written (attrs->chown, else 0:0 for a
 * build context, the file's for a stage), size and content sha256 of
 * files, target of symlinks, and for a second hard link to a file the path
 * of the first. Times and inode numbers are left out, so a fresh checkout
 * of the same tree gives the same digest (BuildKit does the same). The
 * top directory of a directory source contributes only its type: copying
 * it never applies its own metadata. memo may be NULL. stats may be NULL.
 * Errors: FF_ENOTFOUND / FF_EINVAL (a source changed since it was
 * resolved: missing, now a symlink, or an excluded directory with nothing
 * to copy), FF_ETOOBIG, FF_EIO, FF_ECRYPTO, FF_ENOMEM, or the exclusion
 * callback's code. */
int context_digest(const struct context_sources *s, const struct context_attrs *attrs,
                   struct context_memo *memo, struct ff_digest *out, struct context_stats *stats,
                   struct ff_err *err);

/* ---- glob -------------------------------------------------------------- */

/* Whether s (len bytes) holds an unescaped '*', '?' or '[', as BuildKit
 * decides whether a source is a glob. */
bool context_glob_has_meta(const char *s, size_t len);

/* Go's filepath.Match for one path segment: '*' any run of bytes, '?'
 * one character (UTF-8), '[...]' a class of characters or ranges, '[^...]'
 * its complement, '\' escapes the next byte. No backtracking across
 * stars: each chunk between stars takes its leftmost match, as Go does, so
 * the cost is at most (name length + 2) x (pattern length + 1) steps.
 * *steps (may be NULL) receives the steps taken, for the fuzzer's bound.
 * Errors: FF_EINVAL (malformed pattern: an unterminated or empty class,
 * a range missing an end, a trailing '\', invalid UTF-8 in a class),
 * FF_ETOOBIG (pattern longer than CONTEXT_GLOB_SEGMENT_MAX). */
int context_glob_match(const char *pattern, size_t plen, const char *name, size_t nlen, bool *match,
                       size_t *steps, struct ff_err *err);

/* ---- archives (ADD) ---------------------------------------------------- */

enum context_archive {
    CONTEXT_ARCHIVE_NONE = 0,
    CONTEXT_ARCHIVE_TAR,
    CONTEXT_ARCHIVE_GZIP,
    CONTEXT_ARCHIVE_BZIP2,
    CONTEXT_ARCHIVE_XZ,
    CONTEXT_ARCHIVE_ZSTD
};

/* Short name of a kind ("gzip"). Never NULL. */
const char *context_archive_name(enum context_archive kind);

/* Whether the file open on fd is an archive ADD extracts: a tar ("ustar"
 * at offset 257 with a valid header checksum), or gzip, bzip2, xz or zstd
 * (by magic) whose decompressed start is such a tar header, as BuildKit
 * decides by reading one tar header. A compressed file that is not a tar
 * (a plain .gz) is copied as a file. Reads with pread, leaves the offset.
 * Errors: FF_EIO. */
int context_archive_detect(int fd, enum context_archive *kind, struct ff_err *err);

/* ---- copy (copy.c) ----------------------------------------------------- */

/* Extracts the archive open on fd (read it from offset 0) into the
 * directory dest_dirfd, which was resolved inside the rootfs (its
 * symlinks cannot redirect it) and created if missing; dest_in_root is the
 * same directory as an absolute path inside the image, for messages. A
 * path string for it is "/proc/self/fd/<dest_dirfd>". Return 0 or a
 * negative FF_E* code with err filled. */
typedef int (*copy_extract_fn)(void *ctx, int fd, enum context_archive kind, int dest_dirfd,
                               const char *dest_in_root, struct ff_err *err);

/* Defaults for ADD from a URL: 1 GiB is more than any sane download into
 * an image and bounds the temporary file; 10 minutes fetches it over a
 * slow link and ends a stuck one. */
#define CONTEXT_FETCH_MAX_BYTES ((uint64_t)1 << 30)
#define CONTEXT_FETCH_TIMEOUT_MS (10L * 60 * 1000)

struct copy_opts {
    const char *workdir;        /* the stage's WORKDIR (absolute); NULL: "/" */
    struct context_attrs attrs; /* as given to context_digest */
    copy_extract_fn extract;    /* ADD: called for local archives; NULL: copy them */
    void *extract_ctx;
    struct ff_http_client *http; /* ADD from a URL (follow_redirects wanted) */
    const char *tmp_dir;         /* where downloads are held until verified */
    uint64_t fetch_max_bytes;    /* 0: CONTEXT_FETCH_MAX_BYTES */
    long fetch_timeout_ms;       /* 0: CONTEXT_FETCH_TIMEOUT_MS */
};

/* Copies the sources into the rootfs directory root_dir at dest, as the
 * step's COPY or ADD does:
 * - dest is taken relative to workdir unless absolute, cleaned, and
 *   resolved inside root_dir: a symlink in the image (even absolute) is
 *   followed as the image means it and cannot lead outside root_dir;
 * - dest is a directory when it ends with '/' (or is "." or ""), or when
 *   there are several sources; then it and its missing parents are
 *   created; otherwise only its missing parents are; created directories
 *   are 0755 and owned by attrs' owner (0:0 without --chown), as BuildKit
 *   creates them;
 * - a directory source copies its contents into dest (created 0755 if
 *   missing); directories inside get the source's mode (or --chmod) and
 *   times, also when they already exist; an existing non-directory where
 *   a directory goes is an error;
 * - a file (or a followed symlink's file, or fifo) goes to dest, or inside
 *   it when dest is an existing directory (a symlink to one counts),
 *   under the source's name; an existing file or symlink there is
 *   replaced, never written through; an existing directory is an error;
 * - modes are kept unless --chmod, owners as context_digest says, mtimes
 *   and atimes are the source's, hard links between copied files are kept;
 * - ADD: a local source file that context_archive_detect recognises is
 *   given to opts->extract with dest as a directory (created if missing)
 *   instead of copied; URL sources are all fetched (opts->http, https
 *   only, at most fetch_max_bytes) and verified against their checksum
 *   before anything is copied, then written mode 0600 (or --chmod), owner
 *   as attrs, named after the URL's last path segment when dest is a
 *   directory.
 * On error root_dir may hold part of the copy: the caller discards the
 * step's upper directory. Errors (messages start with "COPY: " or "ADD:
 * "): FF_EINVAL (a directory where a file goes or the reverse, a source
 * changed since it was resolved, a URL with no usable file name, checksum
 * mismatch naming URL, expected and got), FF_ENOTFOUND, FF_ENET,
 * FF_ETIMEOUT, FF_ETOOBIG, FF_EIO, FF_ENOMEM, FF_ECRYPTO, or a callback's
 * code. */
int copy_into(const char *root_dir, const struct context_sources *s, const char *dest,
              const struct copy_opts *opts, struct ff_err *err);

/* ---- fetch (fetch.c) --------------------------------------------------- */

/* Downloads url with http into a new unlinked temporary file in tmp_dir,
 * hashing while it streams, and checks the sha256 against want. At most
 * max_bytes are accepted; timeout_ms bounds the whole request. On success
 * *out_fd is the file, positioned at 0, owned by the caller (close it).
 * Errors ("ADD: \"<url>\": ..."): FF_EINVAL (not https, or checksum
 * mismatch: "checksum mismatch (expected sha256:..., got sha256:...)"),
 * FF_ENET (connection failure or a non-2xx status, named), FF_ETIMEOUT,
 * FF_ETOOBIG, FF_EIO (tmp_dir unusable), FF_ENOMEM, FF_ECRYPTO. */
int fetch_url(struct ff_http_client *http, const char *url, const struct ff_digest *want,
              const char *tmp_dir, uint64_t max_bytes, long timeout_ms, int *out_fd,
              struct ff_err *err);

/* The file name ADD gives a download when dest is a directory: the URL
 * path's last segment, percent-decoded. *out is malloc'd for the caller.
 * Errors: FF_EINVAL (no path segment, or one that decodes to "." or "..",
 * or holds '/' or NUL, or a malformed %-escape), FF_ENOMEM. */
int fetch_url_file_name(const char *url, char **out, struct ff_err *err);

/* Whether s is an http:// or https:// URL (scheme in any case), which ADD
 * treats as a URL rather than a path. */
bool fetch_is_url(const char *s);

/* The streaming side of fetch_url, exposed for tests: bytes go to fd and
 * into a running sha256, at most max bytes. */
struct fetch_sink {
    int fd;
    uint64_t max;
    uint64_t got;
    struct ff_digest_ctx *hash;
};

/* Starts a sink writing to fd. Release with fetch_sink_release. Errors:
 * FF_ENOMEM, FF_ECRYPTO. */
int fetch_sink_init(struct fetch_sink *s, int fd, uint64_t max, struct ff_err *err);

/* An ff_http_client_write_fn: ctx is a struct fetch_sink. Errors:
 * FF_ETOOBIG (more than max bytes), FF_EIO, FF_ECRYPTO. */
int fetch_sink_write(void *ctx, const void *data, size_t n, struct ff_err *err);

/* Compares what was received with want. Errors: FF_EINVAL ("ADD:
 * \"<url>\": checksum mismatch (expected ..., got ...)"), FF_ECRYPTO. */
int fetch_sink_finish(struct fetch_sink *s, const char *url, const struct ff_digest *want,
                      struct ff_err *err);

/* NULL-safe on a zeroed sink. Does not close fd. */
void fetch_sink_release(struct fetch_sink *s);

/* ---- shared by context.c and copy.c ------------------------------------ */

/* ff_err_set whose value is code itself (evaluated twice: pass a constant
 * or a pure expression), so static analysis sees that an error return is
 * never 0 and that out-parameters are set whenever 0 is returned. */
#define CONTEXT_FAIL(err, code, ...) ((void)ff_err_set((err), (code), __VA_ARGS__), (code))

/* Cleans path as Go's path.Clean does, relative to a root: "" and "." are
 * the root (""), duplicate '/' and "." components go, ".." removes the
 * component before it; at the top, ".." is dropped when path starts with
 * '/' (it cannot climb above the root) and otherwise kept, in which case
 * *escapes is set. The result has no leading or trailing '/'. *out is
 * malloc'd for the caller. Errors: FF_ENOMEM, FF_ETOOBIG (longer than
 * CONTEXT_PATH_MAX). */
int context_path_clean(const char *path, char **out, bool *escapes, struct ff_err *err);

/* Resolution of a path inside a root directory descriptor. */
enum {
    CONTEXT_RES_IN_ROOT = 1,     /* absolute symlinks and ".." stay in the root (else refused) */
    CONTEXT_RES_FOLLOW_LAST = 2, /* a symlink as the last component is followed */
    CONTEXT_RES_MKDIR = 4,       /* missing directories on the way are created */
    CONTEXT_RES_MKDIR_LAST = 8,  /* ... and the last component too */
    CONTEXT_RES_MISSING_OK = 16, /* a missing last component is not an error */
    CONTEXT_RES_NO_SYMLINKS = 32 /* any symlink to follow is an error (a re-walk of a real path) */
};

struct context_resolved {
    int parent_fd;  /* O_PATH descriptor of the last component's directory */
    int fd;         /* O_PATH descriptor of the last component, -1 if missing */
    char *name;     /* the last component's name in parent_fd ("" for the root) */
    char *real;     /* root-relative path with every symlink resolved */
    struct stat st; /* of fd (lstat: a symlink when not followed) */
    bool excluded;  /* walk_only: an excluded directory walked for exceptions */
};

struct context_res_opts {
    int flags;                  /* CONTEXT_RES_* */
    context_exclude_fn exclude; /* may be NULL */
    void *exclude_ctx;
    uid_t uid; /* owner of directories created */
    gid_t gid;
};

/* Resolves the cleaned, relative path (as context_path_clean gives) from
 * rootfd under o->flags. exclude makes excluded components invisible
 * (missing), except excluded directories it says to walk, which set
 * out->excluded when last. Directories created get 0755 and o's owner.
 * out is released with context_resolved_release. Errors: FF_ENOTFOUND
 * (missing, or a non-directory on the way; FF_OK with fd -1 for a missing
 * last component under MISSING_OK), FF_EINVAL (a symlink leaving the root
 * without IN_ROOT: "symlink \"x\" points outside the root"; a symlink
 * under NO_SYMLINKS), FF_ETOOBIG (too many symlinks, too deep, too long),
 * FF_EIO, FF_ENOMEM, or the callback's code. Messages name the path only;
 * callers add their context. */
int context_resolve_path(int rootfd, const char *path, const struct context_res_opts *o,
                         struct context_resolved *out, struct ff_err *err);

/* Closes and frees what out holds; safe on a zeroed or released one. */
void context_resolved_release(struct context_resolved *out);

/* One entry met while walking a source. */
struct context_entry {
    size_t source;          /* index into the sources */
    const char *rel;        /* path relative to the source ("" for the top) */
    const char *real;       /* path relative to the root, for messages */
    int dirfd;              /* directory holding it (for the top: its parent) */
    const char *name;       /* its name in dirfd */
    int fd;                 /* directories: open O_RDONLY|O_DIRECTORY; others -1 */
    struct stat st;         /* lstat (a directory's: fstat of fd) */
    const char *link;       /* symlinks: the target */
    const char *hardlink;   /* a second link to a file: rel of the first */
    size_t hardlink_source; /* ... and its source index */
    bool top;               /* the source itself */
};

enum context_visit { CONTEXT_VISIT_ENTRY = 0, CONTEXT_VISIT_LEAVE };

/* Called for each entry (CONTEXT_VISIT_ENTRY, directories before their
 * contents) and again for each directory after its contents
 * (CONTEXT_VISIT_LEAVE). Return 0 or a negative FF_E* code to stop. */
typedef int (*context_visit_fn)(void *ctx, const struct context_entry *e, enum context_visit v,
                                struct ff_err *err);

struct context_walk;

/* A walk over sources, sharing one hard-link table. *out belongs to the
 * caller (context_walk_free). Errors: FF_ENOMEM. */
int context_walk_new(const struct context_sources *s, struct context_walk **out,
                     struct ff_err *err);

/* Walks path source i: the top (a followed symlink's target), then, for a
 * directory, its entries depth first in byte order, excluded ones left
 * out; sockets skipped, device nodes refused. Errors as context_digest,
 * or the visitor's code. */
int context_walk_source(struct context_walk *w, size_t i, context_visit_fn fn, void *ctx,
                        struct ff_err *err);

/* NULL-safe. */
void context_walk_free(struct context_walk *w);

/* Opens the regular file of an entry for reading (O_NOFOLLOW) and checks
 * it is still the file the walk saw (device and inode); *st is its fstat.
 * Returns the fd or a negative FF_E* code with err filled. */
int context_entry_open(const struct context_entry *e, struct stat *st, struct ff_err *err);

/* "COPY" or "ADD". */
const char *context_instr_name(enum context_instr instr);

/* The root's description ("the build context"), and its O_PATH
 * directory descriptor (borrowed). */
const char *context_root_what(const struct context_root *r);
int context_root_fd(const struct context_root *r);

/* Owner an entry gets: attrs' when chown, else 0:0 for a build context and
 * the entry's own for a stage. */
void context_entry_owner(const struct context_sources *s, const struct context_attrs *a,
                         const struct stat *st, uid_t *uid, gid_t *gid);

/* Permission bits an entry gets: attrs' chmod, or its own. */
mode_t context_entry_mode(const struct context_attrs *a, const struct stat *st);

/* ==== layer =============================================================== */

/* Image layers: a directory written as a reproducible OCI layer blob, and a
 * layer blob unpacked securely into a directory.
 *
 * layer_write_*: the tar is written with libarchive (restricted pax: ustar,
 * with a pax header only where ustar cannot say it, like Go's archive/tar
 * that containerd and BuildKit use). Entries come in path order (component
 * by component, byte order, so a directory's subtree follows it), owners are
 * numeric, modes kept, mtimes whole seconds clamped to SOURCE_DATE_EPOCH,
 * no atime/ctime, no xattr but security.capability. gzip is a series of
 * independent 1 MiB-input gzip members compressed in parallel (libdeflate):
 * one valid RFC 1952 stream that Go, zlib and gzip read, byte-identical for
 * the same input and level whatever the thread count. diff_id and digest
 * are hashed while the blob is written.
 *
 * layer_unpack / layer_extract_plain: the blob is untrusted. Every path is
 * resolved below the destination with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), so no entry can be written through a symlink,
 * outside the destination, or by a hard link to something outside it; the
 * first bad entry stops the unpack with an error naming it. libarchive's
 * archive_write_disk (ARCHIVE_EXTRACT_SECURE_*) is not used: it resolves
 * paths against the process-wide working directory (a chdir per unpack,
 * unsafe in a threaded daemon) and checks symlinks with lstat before it
 * writes, which leaves a window; the checks here are the same three and
 * stricter. */

/* Zero is gzip so that a zeroed options struct asks for the default. */
enum layer_compression {
    LAYER_GZIP = 0,
    LAYER_ZSTD = 1,
    LAYER_UNCOMPRESSED = 2
};

/* Input bytes per gzip member: large enough that the members cost < 0.1 %
 * of compression ratio (the 32 KiB window restarts once per MiB), small
 * enough that two threads have work on a 2 MiB step. Part of the output
 * format: changing it changes every gzip layer digest. */
#define LAYER_GZIP_CHUNK (1u << 20)
/* gzip -6, the level Docker, BuildKit and buildah use. */
#define LAYER_GZIP_LEVEL_DEFAULT 6
/* libdeflate's range; 0 stores without compressing. */
#define LAYER_GZIP_LEVEL_MAX 12
/* zstd's own default, the one containerd and BuildKit use. */
#define LAYER_ZSTD_LEVEL_DEFAULT 3
/* Workers have 2 cores; more threads than cores only adds switching. */
#define LAYER_THREADS_DEFAULT 2
#define LAYER_THREADS_MAX 16
/* Longest relative path of an entry, written or unpacked: Linux PATH_MAX. */
#define LAYER_PATH_MAX 4096
/* Deepest directory nesting written; one descriptor is open per level, and
 * real root file systems stay far below this. */
#define LAYER_WRITE_DEPTH_MAX 256
/* Unpack defaults, for base-image layers: the largest real layers (CUDA,
 * TeX Live) are a few GB and a few hundred thousand files. */
#define LAYER_UNPACK_MAX_BYTES_DEFAULT (16ull << 30)
#define LAYER_UNPACK_MAX_ENTRIES_DEFAULT 2000000ull

struct layer_write_opts {
    enum layer_compression compression;
    int level;           /* 0: the compression's default */
    unsigned threads;    /* compressing threads; 0: LAYER_THREADS_DEFAULT */
    bool clamp_mtime;    /* true: mtimes after epoch become epoch */
    int64_t epoch;       /* SOURCE_DATE_EPOCH, seconds */
    bool overlay;        /* dir is an overlayfs upper dir: char device 0/0
                          * becomes a ".wh.<name>" entry, an opaque dir
                          * (trusted. or user.overlay.opaque=y) gets a
                          * ".wh..wh..opq" entry right after it; redirect and
                          * metacopy uppers are refused (mount with
                          * redirect_dir=off,metacopy=off) */
};

/* What a layer blob is: filled by layer_write_* and by the unpackers. */
struct layer_info {
    struct ff_digest diff_id; /* sha256 of the uncompressed tar */
    struct ff_digest digest;  /* sha256 of the blob */
    uint64_t size;            /* blob bytes */
    uint64_t tar_size;        /* uncompressed bytes */
    uint64_t entries;         /* tar entries, whiteouts included */
    bool empty;               /* no entries: the engine makes no layer */
    enum layer_compression compression;
};

struct layer_unpack_opts {
    uint64_t max_bytes;   /* uncompressed bytes; 0: the default */
    uint64_t max_entries; /* 0: the default */
    size_t max_path;      /* bytes of a path or link target; 0: LAYER_PATH_MAX */
    const struct ff_digest *diff_id; /* expected, or NULL not to check */
    const struct ff_digest *digest;  /* expected blob digest, or NULL */
};

/* OCI media type of a layer with that compression; a static string. */
const char *layer_media_type(enum layer_compression c);

/* Writes the layer of the directory dir (not itself an entry) to out_path:
 * a temporary file beside it, fsync'd, renamed over out_path, the directory
 * fsync'd; on failure nothing new is left at either name. opts may be NULL
 * (gzip -6, 2 threads, no clamping, plain directory). Sockets are skipped
 * (tar cannot hold them). info (caller's) is filled on success; info->empty
 * says no entry was written, so the engine makes no layer.
 * Errors: FF_ENOTFOUND (dir missing), FF_EIO (reading dir, writing out),
 * FF_EINVAL (level outside 1..LAYER_GZIP_LEVEL_MAX or zstd's 1..19+,
 * threads over LAYER_THREADS_MAX, unknown compression; an overlay
 * redirect or metacopy upper), FF_ETOOBIG (a path over LAYER_PATH_MAX,
 * nesting over LAYER_WRITE_DEPTH_MAX), FF_ENOMEM, FF_ECRYPTO. */
int layer_write_file(const char *dir, const char *out_path, const struct layer_write_opts *opts,
                     struct layer_info *info, struct ff_err *err);

/* Same, writing the blob to fd from its current offset; fd is neither
 * fsync'd nor closed. On failure part of a blob may have been written. */
int layer_write_fd(const char *dir, int fd, const struct layer_write_opts *opts,
                   struct layer_info *info, struct ff_err *err);

/* Applies the layer blob read from fd (to its end; gzip, zstd or plain tar,
 * told apart by magic bytes) to dest, an existing empty directory, as an
 * overlayfs lower layer: ".wh.<name>" becomes a character device 0/0
 * <name>, ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory,
 * other ".wh..wh.*" (aufs metadata) are skipped. Entries keep mode
 * (setuid too), numeric owner, mtime and security.capability (no other
 * xattr: a layer must not set trusted.overlay.* itself); char, block and
 * fifo nodes are created; hard links only to earlier entries. Missing
 * parent directories are created 0755 root:root. A later entry replaces an
 * earlier one of the same name unless both are directories (then the later
 * metadata wins), or the earlier is a non-empty directory (an error).
 * opts may be NULL (defaults, no digest checks); info may be NULL.
 * On any error dest holds a partial tree and must not be used: the caller
 * removes it. Errors: FF_EINVAL (a refused entry, named: absolute path,
 * ".." component, a path through a symlink, a hard link outside or
 * through a symlink, an unsupported type; corrupt or truncated gzip, zstd
 * or tar; diff_id or digest mismatch), FF_ETOOBIG (max_bytes, max_entries,
 * max_path), FF_EEXIST (dest not empty), FF_ENOTFOUND (dest missing),
 * FF_EIO, FF_ENOMEM, FF_ECRYPTO. */
int layer_unpack(int fd, const char *dest, const struct layer_unpack_opts *opts,
                 struct layer_info *info, struct ff_err *err);

/* ADD's tar auto-extraction into dest, a directory that may already hold
 * files (a rootfs being built): the same checks and limits as layer_unpack
 * (an existing symlink on the way is refused, not followed), but no
 * whiteout conversion: ".wh.*" entries are ordinary files, as BuildKit's
 * ADD extracts them (Docker's archive.Untar without a whiteout converter).
 * Errors as layer_unpack, without FF_EEXIST. */
int layer_extract_plain(int fd, const char *dest, const struct layer_unpack_opts *opts,
                        struct layer_info *info, struct ff_err *err);

/* --- shared by layer_write.c and layer_unpack.c --- */

/* Switches the calling thread (only) to the C.UTF-8 character type, so
 * that libarchive converts names the same way whatever the process locale;
 * *saved is what layer_locale_leave restores. Errors: FF_EIO. */
int layer_locale_enter(locale_t *saved, struct ff_err *err);
void layer_locale_leave(locale_t saved);

/* --- compress.c: the blob side of both directions, used by the above --- */

struct compress_out;

/* Starts a blob written to fd, compressed as asked (level 0: the default;
 * threads 0: LAYER_THREADS_DEFAULT). *out belongs to the caller
 * (compress_out_free). Errors: FF_EINVAL (level or threads out of range),
 * FF_ENOMEM, FF_ECRYPTO, FF_EIO (a thread could not start). */
int compress_out_new(struct compress_out **out, int fd, enum layer_compression c, int level,
                     unsigned threads, struct ff_err *err);

/* Feeds n bytes of tar. Errors: FF_EIO (writing fd), FF_ENOMEM, FF_ECRYPTO;
 * after an error the blob is unusable. */
int compress_out_write(struct compress_out *o, const void *p, size_t n, struct ff_err *err);

/* Ends the blob and fills diff_id, digest, size, tar_size and compression
 * of info. Errors as compress_out_write. */
int compress_out_finish(struct compress_out *o, struct layer_info *info, struct ff_err *err);

/* Stops the threads and frees. NULL-safe. */
void compress_out_free(struct compress_out *o);

struct compress_in;

/* Starts reading a blob from fd, decompressing what its magic bytes say
 * and hashing both sides; at most max_bytes uncompressed bytes are
 * produced. *out belongs to the caller (compress_in_free). Errors:
 * FF_EIO, FF_ENOMEM, FF_ECRYPTO. */
int compress_in_new(struct compress_in **out, int fd, uint64_t max_bytes, struct ff_err *err);

/* The compression the magic bytes showed. */
enum layer_compression compress_in_kind(const struct compress_in *in);

/* Points *data at the next *len uncompressed bytes (borrowed until the next
 * call); *len is 0 at the end. Errors: FF_EINVAL (corrupt or truncated
 * stream, trailing garbage), FF_ETOOBIG (over max_bytes), FF_EIO. */
int compress_in_read(struct compress_in *in, const void **data, size_t *len, struct ff_err *err);

/* Reads what is left (the tar's padding after its end) and fills diff_id,
 * digest, size, tar_size and compression of info. Errors as
 * compress_in_read. */
int compress_in_finish(struct compress_in *in, struct layer_info *info, struct ff_err *err);

/* NULL-safe. */
void compress_in_free(struct compress_in *in);

/* ==== regclient =========================================================== */

/* ff-worker's registry side: the OCI image documents it reads and writes
 * (oci.c), the WWW-Authenticate challenges it answers (wwwauth.c) and the
 * registry client that pulls base images and pushes results (regclient.c).
 *
 * Everything a registry or an image layout sends is hostile until checked:
 * manifests, indexes and configs are parsed with size, count and type
 * limits, every digest is checked with lib/ff_digest, and a blob or manifest
 * is handed on only after its bytes hashed to the digest that named it.
 * Documents we write are serialised deterministically (fixed key order,
 * maps sorted by key, no insignificant whitespace), so the same input gives
 * the same digest. */

/* ---- media types ---------------------------------------------------------- */

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_MT_LAYER "application/vnd.oci.image.layer.v1.tar"
#define OCI_MT_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_MT_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define DOCKER_MT_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_MT_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define DOCKER_MT_CONFIG "application/vnd.docker.container.image.v1+json"
#define DOCKER_MT_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

/* The annotation that names a tag in an OCI image layout's index.json. */
#define OCI_ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"

/* ---- limits ----------------------------------------------------------------- */

/* Largest manifest or index: what ff-registry accepts (docs/registry.md),
 * and far above a real one (a 256-layer manifest is about 50 KiB). */
#define OCI_MANIFEST_MAX (4u << 20)
/* Largest image config: configs carry the whole build history, so they can
 * be hundreds of KiB for long Dockerfiles; 8 MiB bounds what we hold. */
#define OCI_CONFIG_MAX (8u << 20)
/* Most layers in an image: overlayfs stacks up to about 500 lower layers
 * with short paths and Docker stops at 127; 256 leaves room for both. */
#define OCI_LAYERS_MAX 256
/* Most entries in an index: a few platforms plus their attestations. */
#define OCI_INDEX_MAX 256
/* Most Env, Cmd or Entrypoint items, labels, exposed ports and history
 * entries of a config: far above real images, low enough to bound work. */
#define OCI_LIST_MAX 4096
/* Longest string field of a config (a long RUN line in history). */
#define OCI_STRING_MAX 65536
/* Longest media type: RFC 6838 names are at most 127 + 1 + 127. */
#define OCI_MEDIA_TYPE_MAX 255
/* Longest platform os, architecture or variant: real values are short
 * words ("linux", "arm64", "v7"). */
#define OCI_PLATFORM_FIELD_MAX 64
/* Largest blob: ff-registry's default max_blob_size. */
#define OCI_BLOB_SIZE_MAX ((int64_t)32 << 30)
/* "YYYY-MM-DDTHH:MM:SSZ" and a NUL. */
#define OCI_TIME_SIZE 21
/* Room for "os/architecture/variant" in messages. */
#define OCI_PLATFORM_STR_SIZE (3 * OCI_PLATFORM_FIELD_MAX + 3)

/* ---- platforms (oci.c) ------------------------------------------------------ */

/* A platform as OCI writes it. Strings are borrowed: from a parsed
 * document, or from the caller. variant NULL or "" means none. */
struct oci_platform {
    const char *os;
    const char *architecture;
    const char *variant;
};

/* Maps a worker architecture name to its OCI platform (os "linux"):
 * "amd64" -> amd64, "arm64" -> arm64/v8, "armv7" -> arm/v7. The strings
 * are static. Errors: FF_EINVAL naming the accepted names. */
int oci_platform_from_arch(const char *arch, struct oci_platform *out, struct ff_err *err);

/* True when have can run where want is asked for: same os, architecture
 * and variant after the normalisation containerd applies (aarch64 is
 * arm64; x86_64 is amd64; arm64 without a variant is v8, arm without a
 * variant is v7, amd64 without one is v1). */
bool oci_platform_match(const struct oci_platform *want, const struct oci_platform *have);

/* Writes "os/architecture[/variant]" into out (size bytes), every byte
 * outside printable ASCII replaced, for messages. */
void oci_platform_format(const struct oci_platform *p, char *out, size_t size);

/* ---- descriptors, manifests and indexes (oci.c) ---------------------------- */

/* A content descriptor. For parsed documents every string is borrowed from
 * the oci_manifest that holds it. */
struct oci_descriptor {
    const char *media_type;
    struct ff_digest digest;
    int64_t size;
    struct oci_platform platform; /* index entries; platform.os NULL when absent */
    const char *ref_name;         /* OCI_ANNOTATION_REF_NAME or NULL */
};

/* A key/value annotation for documents we build. */
struct oci_annotation {
    const char *key;
    const char *value;
};

enum oci_kind {
    OCI_KIND_MANIFEST = 1, /* OCI image manifest or Docker schema 2 manifest */
    OCI_KIND_INDEX         /* OCI image index or Docker manifest list */
};

/* A parsed manifest or index. root owns every string the descriptors
 * point to; release with oci_manifest_release. */
struct oci_manifest {
    json_t *root;
    enum oci_kind kind;
    const char *media_type;       /* one of the four manifest media types (static) */
    struct oci_descriptor config; /* OCI_KIND_MANIFEST */
    struct oci_descriptor *layers;
    size_t n_layers;
    struct oci_descriptor *manifests; /* OCI_KIND_INDEX */
    size_t n_manifests;
};

/* Parses len bytes as a manifest or index. content_type (may be NULL) is
 * what the registry said; the document's own mediaType decides when both
 * are known and they must agree; an OCI document without mediaType is
 * taken by its Content-Type, else by its shape. Strict: schemaVersion 2, at
 * most OCI_MANIFEST_MAX bytes, OCI_LAYERS_MAX layers or OCI_INDEX_MAX
 * entries, known config and layer media types (the image kinds we can
 * unpack), valid sha256 digests, sizes within 0..OCI_BLOB_SIZE_MAX,
 * bounded platform strings. On success *out must be released. Errors:
 * FF_ETOOBIG, FF_EINVAL (what and which field), FF_ENOMEM. */
int oci_manifest_parse(const void *data, size_t len, const char *content_type,
                       struct oci_manifest *out, struct ff_err *err);

/* Frees what m holds; m is zeroed. NULL-safe, safe twice. */
void oci_manifest_release(struct oci_manifest *m);

/* The entry of index m for platform want; *out is borrowed from m. Entries
 * that are not manifests (nested indexes) and attestations (os "unknown")
 * are never chosen; an exact variant beats a normalised match. Errors:
 * FF_ENOTFOUND with a message listing the platforms the index holds,
 * FF_EINVAL when m is not an index. */
int oci_index_select(const struct oci_manifest *m, const struct oci_platform *want,
                     const struct oci_descriptor **out, struct ff_err *err);

/* Builds an OCI image manifest: config, layers in order, annotations
 * (sorted by key; n_annotations may be 0). *out (NUL-terminated, *out_len
 * bytes without it) belongs to the caller (free). Errors: FF_EINVAL (a
 * descriptor without media type, a negative size, more than
 * OCI_LAYERS_MAX layers, duplicate annotation keys), FF_ENOMEM. */
int oci_manifest_build(const struct oci_descriptor *config, const struct oci_descriptor *layers,
                       size_t n_layers, const struct oci_annotation *annotations,
                       size_t n_annotations, char **out, size_t *out_len, struct ff_err *err);

/* Builds an OCI image index of manifests (each with its platform when
 * platform.os is set, and ref_name as annotation when set). Ownership and
 * errors as oci_manifest_build. */
int oci_index_build(const struct oci_descriptor *manifests, size_t n,
                    const struct oci_annotation *annotations, size_t n_annotations, char **out,
                    size_t *out_len, struct ff_err *err);

/* ---- image config (oci.c) --------------------------------------------------- */

struct oci_label {
    char *key;
    char *value;
};

struct oci_history {
    char *created;    /* RFC 3339 or NULL */
    char *created_by; /* or NULL */
    char *author;     /* or NULL */
    char *comment;    /* or NULL */
    bool empty_layer;
};

/* An image config: what a build starts from (its base's) and what it
 * writes. Every string is owned by the struct (oci_config_release). NULL
 * string fields are omitted when serialised. */
struct oci_image_config {
    char *created; /* RFC 3339, oci_time_format(SOURCE_DATE_EPOCH) for builds */
    char *architecture;
    char *variant;
    char *os;
    char *user;
    char *working_dir;
    char **env; /* "NAME=value", in order, names unique */
    size_t n_env;
    char **entrypoint;
    size_t n_entrypoint;
    bool has_entrypoint; /* false: omitted; true with 0 items: [] */
    char **cmd;
    size_t n_cmd;
    bool has_cmd;
    struct oci_label *labels; /* sorted by key, keys unique */
    size_t n_labels;
    char **exposed_ports; /* "80/tcp", sorted, unique */
    size_t n_exposed_ports;
    /* Config fields we do not model but must carry from a base image:
     * StopSignal, Volumes, Healthcheck, Shell. NULL or an object. */
    json_t *extra;
    struct ff_digest *diff_ids;
    size_t n_diff_ids;
    struct oci_history *history;
    size_t n_history;
};

/* Prepares an empty config (equivalent to zeroing it). */
void oci_config_init(struct oci_image_config *c);

/* Frees everything c holds; c is empty afterwards. NULL-safe. */
void oci_config_release(struct oci_image_config *c);

/* Parses an image config (OCI or Docker) into out, which must be empty
 * (oci_config_init). Strict and bounded: at most OCI_CONFIG_MAX bytes;
 * architecture and os required; Env items "NAME=value"; Cmd and
 * Entrypoint arrays of strings or null; Labels an object of strings;
 * ExposedPorts an object; rootfs.type "layers" with valid diff_ids (at most
 * OCI_LAYERS_MAX); history at most OCI_LIST_MAX entries; strings at most
 * OCI_STRING_MAX bytes. Labels and ports come out sorted. Keys of config
 * outside the model are dropped except those kept in extra. On error out
 * is left empty. Errors: FF_ETOOBIG, FF_EINVAL (naming the field),
 * FF_ENOMEM. */
int oci_config_parse(const void *data, size_t len, struct oci_image_config *out,
                     struct ff_err *err);

/* Serialises c deterministically: created, architecture, variant, os,
 * config {User, ExposedPorts, Env, Entrypoint, Cmd, WorkingDir, Labels,
 * extra keys sorted}, rootfs {type, diff_ids}, history. *out (and its
 * length) belongs to the caller (free). Errors: FF_EINVAL (architecture or
 * os missing), FF_ENOMEM. */
int oci_config_build(const struct oci_image_config *c, char **out, size_t *out_len,
                     struct ff_err *err);

/* Editing, for the build steps. Values are copied. */

/* Sets NAME=value (replacing NAME's earlier value in place). Errors:
 * FF_EINVAL (empty name or name with '='), FF_ETOOBIG (OCI_LIST_MAX),
 * FF_ENOMEM. */
int oci_config_env_set(struct oci_image_config *c, const char *name, const char *value,
                       struct ff_err *err);
/* The value of NAME in Env, borrowed, or NULL. */
const char *oci_config_env_get(const struct oci_image_config *c, const char *name);
/* Sets a label (kept sorted). Errors as oci_config_env_set. */
int oci_config_label_set(struct oci_image_config *c, const char *key, const char *value,
                         struct ff_err *err);
/* Adds "port/proto" (kept sorted, duplicates ignored). Errors: FF_EINVAL
 * (not <1-65535>/<tcp|udp|sctp>), FF_ETOOBIG, FF_ENOMEM. */
int oci_config_port_add(struct oci_image_config *c, const char *port, struct ff_err *err);
/* Replaces Cmd or Entrypoint (which = "Cmd" or "Entrypoint") with n items.
 * Errors: FF_EINVAL (unknown which), FF_ETOOBIG, FF_ENOMEM. */
int oci_config_argv_set(struct oci_image_config *c, const char *which, const char *const *argv,
                        size_t n, struct ff_err *err);
/* Replaces a string field: field = "User", "WorkingDir", "created",
 * "architecture", "os" or "variant"; value NULL clears it. Errors:
 * FF_EINVAL, FF_ENOMEM. */
int oci_config_string_set(struct oci_image_config *c, const char *field, const char *value,
                          struct ff_err *err);
/* Appends a history entry (created_by as the step's text) and, unless
 * diff_id is NULL, the layer's diff_id; a NULL diff_id makes the entry
 * empty_layer. created may be NULL. Errors: FF_ETOOBIG, FF_ENOMEM. */
int oci_config_history_add(struct oci_image_config *c, const char *created,
                           const char *created_by, const struct ff_digest *diff_id,
                           struct ff_err *err);

/* Checks that c describes an image for want (oci_platform_match): a
 * single-platform image found by tag may be for another architecture, and
 * only its config says so. Errors: FF_EINVAL naming both platforms. */
int oci_config_platform_check(const struct oci_image_config *c, const struct oci_platform *want,
                              struct ff_err *err);

/* Formats seconds since the epoch as RFC 3339 UTC, "2024-05-01T12:00:00Z".
 * Errors: FF_ERANGE (before 1970 or after 9999). */
int oci_time_format(int64_t epoch, char out[OCI_TIME_SIZE], struct ff_err *err);

/* ---- OCI image layout (oci.c) ----------------------------------------------- */

/* Creates dir if missing, blobs/sha256/ and the "oci-layout" file. An
 * existing layout is kept (its version must be 1.0.0). Errors: FF_EIO,
 * FF_EINVAL (an existing oci-layout of another version). */
int oci_layout_init(const char *dir, struct ff_err *err);

/* Path of a blob in the layout, malloc'd for the caller; NULL when out of
 * memory. */
char *oci_layout_blob_path(const char *dir, const struct ff_digest *d);

/* Puts the file at path into the layout as blob d: a hard link when
 * link_ok and both live on one filesystem (the caller vouches for the
 * digest), else a copy hashed on the way and refused on mismatch. An
 * existing blob is kept. Written via a temporary file, fsync and rename.
 * Errors: FF_EIO, FF_ENOTFOUND (no such path), FF_EINVAL (digest
 * mismatch, naming both digests). */
int oci_layout_blob_add_file(const char *dir, const struct ff_digest *d, const char *path,
                             bool link_ok, struct ff_err *err);

/* Puts len bytes into the layout; *out (may be NULL) receives their
 * digest. Errors: FF_EIO, FF_ENOMEM, FF_ECRYPTO. */
int oci_layout_blob_add_bytes(const char *dir, const void *data, size_t len,
                              struct ff_digest *out, struct ff_err *err);

/* Reads blob d of the layout (at most max bytes) and checks its digest.
 * *out (NUL-terminated, *out_len bytes) belongs to the caller (free).
 * Errors: FF_ENOTFOUND, FF_ETOOBIG, FF_EIO, FF_EINVAL (digest mismatch). */
int oci_layout_blob_read(const char *dir, const struct ff_digest *d, size_t max, char **out,
                         size_t *out_len, struct ff_err *err);

/* Writes index.json (an OCI index of entries, deterministic as
 * oci_index_build) atomically: temporary file, fsync, rename. Errors: as
 * oci_index_build, FF_EIO. */
int oci_layout_index_write(const char *dir, const struct oci_descriptor *entries, size_t n,
                           struct ff_err *err);

/* The whole write of one image: oci_layout_init, every blob of blob_paths
 * (digests[i] at blob_paths[i], linked when link_ok), the manifest bytes
 * as a blob, and index.json with the manifest under tag (replacing an
 * entry of that tag, keeping the others). Errors as the steps above. */
int oci_layout_write(const char *dir, const char *tag, const char *media_type,
                     const char *manifest, size_t manifest_len, const struct ff_digest *digests,
                     const char *const *blob_paths, size_t n_blobs, bool link_ok,
                     struct ff_err *err);

/* An opened layout: its directory and parsed index.json. */
struct oci_layout {
    char *dir;
    struct oci_manifest index;
};

/* Opens dir: "oci-layout" must say 1.0.0 and index.json must parse as an
 * index. On success out must be closed. Errors: FF_ENOTFOUND, FF_EINVAL,
 * FF_EIO, FF_ETOOBIG, FF_ENOMEM. */
int oci_layout_open(const char *dir, struct oci_layout *out, struct ff_err *err);

/* The index.json entry named tag, or with tag NULL the only entry;
 * borrowed from l. Errors: FF_ENOTFOUND (listing the tags there),
 * FF_EINVAL (tag NULL and not exactly one entry). */
int oci_layout_find(const struct oci_layout *l, const char *tag,
                    const struct oci_descriptor **out, struct ff_err *err);

/* NULL-safe; l is zeroed. */
void oci_layout_close(struct oci_layout *l);

/* ---- WWW-Authenticate (wwwauth.c) ------------------------------------------- */

enum wwwauth_scheme {
    WWWAUTH_NONE = 0,
    WWWAUTH_BEARER,
    WWWAUTH_BASIC
};

/* Longest header value parsed: ff_http_client keeps at most 64 KiB of all
 * headers; a real challenge is a few hundred bytes. */
#define WWWAUTH_HEADER_MAX 16384
/* Longest parameter value (a scope string with many repositories). */
#define WWWAUTH_VALUE_MAX 8192
/* Most challenges in one header and parameters in one challenge. */
#define WWWAUTH_CHALLENGES_MAX 16
#define WWWAUTH_PARAMS_MAX 32

/* The challenge we answer: the first Bearer one, else the first Basic.
 * Strings are owned (wwwauth_challenge_release); NULL when absent. */
struct wwwauth_challenge {
    enum wwwauth_scheme scheme;
    char *realm;
    char *service;
    char *scope;
    char *error; /* RFC 6750: invalid_token, insufficient_scope ... */
};

/* Parses one WWW-Authenticate value (RFC 9110 §11.6.1: comma-separated
 * challenges of auth-params or a token68; parameter names case-
 * insensitive, values tokens or quoted strings with backslash escapes).
 * Challenges of other schemes are skipped. Refused (FF_EINVAL, saying what
 * and where): broken syntax, a parameter repeated in one challenge, a
 * value with control characters, a Bearer challenge without realm, no
 * Bearer or Basic challenge at all (FF_ENOTFOUND); over the limits above:
 * FF_ETOOBIG. On success *out must be released; on error it is empty. */
int wwwauth_parse(const char *value, size_t len, struct wwwauth_challenge *out,
                  struct ff_err *err);

/* NULL-safe; c is zeroed. */
void wwwauth_challenge_release(struct wwwauth_challenge *c);

/* ---- registry client (regclient.c) ------------------------------------------ */

/* Default upload chunk: 8 MiB keeps the number of round trips low for
 * 100 MiB layers while a failed chunk costs little to send again. */
#define REGCLIENT_CHUNK_DEFAULT (8u << 20)
/* Smallest and largest chunk size accepted (tests use small ones). */
#define REGCLIENT_CHUNK_MIN 1024u
#define REGCLIENT_CHUNK_MAX (512u << 20)
/* Times one chunk is sent again after a failure, resuming from what the
 * registry acknowledged; the delay starts at REGCLIENT_RETRY_BASE_MS and
 * doubles. Four rides out a registry restart. */
#define REGCLIENT_CHUNK_RETRIES 4u
#define REGCLIENT_RETRY_BASE_MS 200L
/* Times a download is resumed with a Range request after the connection
 * broke mid-body. */
#define REGCLIENT_FETCH_RESUMES 3u
/* Token lifetime assumed when the realm gives none (Docker token spec). */
#define REGCLIENT_TOKEN_TTL_DEFAULT 60
/* Longest lifetime believed: ff-builder gives at most 300 s. */
#define REGCLIENT_TOKEN_TTL_MAX 86400
/* A token is renewed this long before it expires (or at half its life if
 * that is shorter), so a request never goes out with a token about to die. */
#define REGCLIENT_TOKEN_MARGIN_S 10
/* Tokens kept, one per scope set: a push names a few repositories. */
#define REGCLIENT_TOKENS_MAX 32
/* Largest token endpoint answer: a JWT with many scopes is a few KiB. */
#define REGCLIENT_TOKEN_BODY_MAX 65536u
/* Longest "host:port". */
#define REGCLIENT_HOST_MAX 255

struct regclient;

/* Counters, for progress lines and tests. */
struct regclient_stats {
    unsigned long requests;      /* registry requests sent (not token requests) */
    unsigned long token_fetches; /* token endpoint requests */
    unsigned long blobs_skipped; /* regclient_blob_ensure: already there */
    unsigned long blobs_mounted;
    unsigned long blobs_pushed;
    unsigned long chunks;        /* PATCH requests that were acknowledged */
    unsigned long chunk_retries; /* chunks resumed after a failure */
    unsigned long fetch_resumes; /* downloads resumed with Range */
    uint64_t bytes_pushed;
    uint64_t bytes_fetched;
};

/* Makes a client for https://host_port (e.g. "127.0.0.1:5443"), trusting
 * only ca_file (NULL: the system bundle). user and secret (both or
 * neither) are sent only to the token realm (Basic) or, when the registry
 * answers a Basic challenge, to the registry; the secret is copied, wiped
 * on free and never logged. *out belongs to the caller (regclient_free).
 * Errors: FF_EINVAL (malformed host_port, user with ':', only one of user
 * and secret), FF_EIO (ca_file unreadable), FF_ENOMEM. */
int regclient_new(struct regclient **out, const char *host_port, const char *ca_file,
                  const char *user, const char *secret, struct ff_err *err);

/* Wipes the secret and tokens, frees c. NULL-safe. */
void regclient_free(struct regclient *c);

/* Sets the upload chunk size (REGCLIENT_CHUNK_MIN..REGCLIENT_CHUNK_MAX).
 * Errors: FF_ERANGE. */
int regclient_chunk_size_set(struct regclient *c, size_t bytes, struct ff_err *err);

/* Copies the counters. */
void regclient_stats_get(const struct regclient *c, struct regclient_stats *out);

/* A manifest or index as fetched: bytes, digest and parsed form. */
struct regclient_manifest {
    char *bytes; /* NUL-terminated, len bytes */
    size_t len;
    struct ff_digest digest; /* sha256 of bytes, verified */
    struct oci_manifest parsed;
    /* regclient_resolve of an index: the index's digest and the platform
     * entry chosen (from_index false otherwise). */
    bool from_index;
    struct ff_digest index_digest;
};

/* Frees m; NULL-safe, safe twice. */
void regclient_manifest_release(struct regclient_manifest *m);

/* GETs the manifest or index repo:reference (a tag or "sha256:…") asking
 * for the OCI and Docker manifest and index types, and verifies it: the
 * sha256 of the bytes must equal a digest reference and the
 * Docker-Content-Digest header when present, and the document must parse
 * (oci_manifest_parse). out must be released. Errors: FF_EINVAL (bad repo
 * or reference, digest mismatch, malformed document: the message names
 * repo, reference, and both digests), FF_ENOTFOUND (404), FF_EAUTH
 * (credentials refused), FF_EDENIED (the token lacks the scope), FF_ENET,
 * FF_ETIMEOUT, FF_ETOOBIG, FF_ENOMEM. */
int regclient_manifest_fetch(struct regclient *c, const char *repo, const char *reference,
                             struct regclient_manifest *out, struct ff_err *err);

/* regclient_manifest_fetch, and when that gives an index, the entry for
 * want (oci_index_select) fetched by digest and verified the same way;
 * the result is always an image manifest with its config and layer
 * descriptors. A platform the index lacks is FF_ENOTFOUND listing those it
 * has. Errors otherwise as regclient_manifest_fetch. */
int regclient_resolve(struct regclient *c, const char *repo, const char *reference,
                      const struct oci_platform *want, struct regclient_manifest *out,
                      struct ff_err *err);

/* Downloads blob digest of repo to dest_path: into a temporary file in
 * dest's directory, hashed while it streams, refused past expected_size
 * (negative: unknown, capped at OCI_BLOB_SIZE_MAX), resumed with Range
 * after a broken connection, fsync'd, and renamed to dest_path only when
 * size and digest match. On any error no file is left. Errors: FF_EINVAL
 * (digest or size mismatch: names repo, expected and got), FF_ETOOBIG,
 * FF_ENOTFOUND (404), FF_EAUTH, FF_EDENIED, FF_ENET, FF_ETIMEOUT, FF_EIO. */
int regclient_blob_fetch(struct regclient *c, const char *repo, const struct ff_digest *digest,
                         int64_t expected_size, const char *dest_path, struct ff_err *err);

/* HEAD of blob digest in repo: *exists true on 200, false on 404. Errors:
 * FF_EAUTH, FF_EDENIED, FF_ENET (another status), FF_EINVAL (bad repo). */
int regclient_blob_exists(struct regclient *c, const char *repo, const struct ff_digest *digest,
                          bool *exists, struct ff_err *err);

/* Cross-repository mount of digest from from_repo into repo (the token asks
 * for push on repo and pull on from_repo). *mounted true on 201. On 202
 * the registry opened an upload instead (it lacks the blob there, or we may
 * not read from_repo): that session is cancelled (DELETE) and *mounted is
 * false; regclient_blob_ensure reuses it instead. Errors: as
 * regclient_blob_exists. */
int regclient_blob_mount(struct regclient *c, const char *repo, const struct ff_digest *digest,
                         const char *from_repo, bool *mounted, struct ff_err *err);

/* Uploads the file at path as blob digest of repo (token scope pull,push):
 * POST a session, then one PUT ?digest= when the file is smaller than the
 * chunk size, else PATCH chunks with Content-Range following each
 * Location, resuming from the registry's Range after a failed chunk
 * (REGCLIENT_CHUNK_RETRIES with backoff), and a final PUT ?digest=. The file
 * is not hashed here (the caller made the digest); the registry checks it,
 * and its Docker-Content-Digest must match. A failed upload's session is
 * cancelled. Errors: FF_EINVAL (the registry refused the digest: the file
 * does not hash to it), FF_ENET (a Location on another host, a refused or
 * broken chunk after the retries), FF_ENOTFOUND (no such file), FF_EIO,
 * FF_EAUTH, FF_EDENIED, FF_ETIMEOUT. */
int regclient_blob_push(struct regclient *c, const char *repo, const struct ff_digest *digest,
                        const char *path, struct ff_err *err);

enum regclient_blob_how {
    REGCLIENT_BLOB_EXISTED = 1, /* HEAD found it */
    REGCLIENT_BLOB_MOUNTED,     /* mounted from from_repo */
    REGCLIENT_BLOB_PUSHED       /* uploaded from path */
};

/* Makes blob digest present in repo the cheapest way: HEAD; then, with
 * from_repo, a mount (reusing the upload session a refused mount opens);
 * then an upload from path. path may be NULL only if the blob can be found
 * or mounted (else FF_ENOTFOUND). *how (may be NULL) says which. Errors: as
 * regclient_blob_push. */
int regclient_blob_ensure(struct regclient *c, const char *repo, const struct ff_digest *digest,
                          const char *path, const char *from_repo, enum regclient_blob_how *how,
                          struct ff_err *err);

/* PUTs a manifest or index (media_type as Content-Type) to repo under tag,
 * or under its digest when tag is NULL. *digest_out (may be NULL) receives
 * the sha256 of bytes, which the registry's Docker-Content-Digest must
 * equal. Errors: FF_EINVAL (bad repo or tag, a refused manifest with the
 * registry's message, digest mismatch), FF_EAUTH, FF_EDENIED, FF_ENET. */
int regclient_manifest_push(struct regclient *c, const char *repo, const char *tag,
                            const char *media_type, const char *bytes, size_t len,
                            struct ff_digest *digest_out, struct ff_err *err);

/* Checks a repository name (OCI grammar) and a reference (tag or sha256
 * digest). Errors: FF_EINVAL saying what is wrong. */
int regclient_repo_check(const char *repo, struct ff_err *err);
int regclient_reference_check(const char *reference, struct ff_err *err);

/* ==== runner ============================================================== */

/* Running one build step (RUN) of ff-worker: an overlay rootfs over the
 * parent layers, an OCI bundle for runc with namespaces, the default
 * container capabilities, no_new_privs, a seccomp allow-list and limits,
 * qemu-user-static through binfmt_misc for foreign architectures, and USER
 * resolved against the image's own /etc/passwd and /etc/group.
 *
 * Files: rootfs.c (overlay mount), runc.c (config.json, running runc, the
 * whole step), seccomp.c (the profile), binfmt.c (qemu registration),
 * passwd.c (USER). Every function returns 0 or a negative FF_E* code and
 * fills err. */

/* ---- rootfs.c: the overlay a step runs in ------------------------------ */

/* Overlay stacks at most 500 lower layers; images stay far below (Docker
 * refuses more than 125). 128 keeps the short-path form of the mount
 * options (about 19 bytes a layer) well inside one page. */
#define ROOTFS_LOWERS_MAX 128

/* Mounts at target an overlay of lowers[0..n_lowers) (topmost layer first,
 * as in lowerdir=), with upper receiving the step's changes and work its
 * empty scratch directory on the same file system as upper. The lower
 * directories are unpacked layers in overlay form (whiteouts are 0/0
 * character devices, opaque directories carry trusted.overlay.opaque=y) and
 * are never written. redirect_dir, metacopy and index are off so that every
 * change is a plain file, directory, whiteout or opaque directory in upper
 * (what the layer writer understands); volatile skips syncs a throw-away
 * step never needs, and leaves a marker in work, which therefore serves
 * one mount only.
 * When the absolute paths do not fit the one page mount(2) takes, each
 * directory is opened and named as /proc/self/fd/N instead. Errors:
 * FF_EINVAL (no lowers, a relative path), FF_ETOOBIG (more than
 * ROOTFS_LOWERS_MAX), FF_EIO (open or mount failed; the message says which
 * directory or the kernel's reason). */
int rootfs_mount(const char *target, const char *const *lowers, size_t n_lowers,
                 const char *upper, const char *work, struct ff_err *err);

/* Unmounts target, waiting out a short EBUSY and detaching lazily as a last
 * resort, so that a failed step never leaves its mount behind. Nothing
 * mounted at target is success. Errors: FF_EIO. */
int rootfs_unmount(const char *target, struct ff_err *err);

/* ---- passwd.c: USER name[:group] ---------------------------------------- */

/* /etc/passwd and /etc/group come from the image: hostile. Files larger
 * than this are refused (real ones are a few KiB). */
#define PASSWD_FILE_MAX ((size_t)4 << 20)
/* Longest USER value accepted (names are at most 32 bytes on Linux). */
#define PASSWD_SPEC_MAX 256
/* Most supplementary groups kept; the kernel's own cap is 65536. */
#define PASSWD_GIDS_MAX 256
/* uid_t and gid_t are 32 bits and (uid_t)-1 means "no change". */
#define PASSWD_ID_MAX 4294967294u

struct passwd_ids {
    uint32_t uid;
    uint32_t gid;
    uint32_t *gids; /* supplementary groups, malloc'd; NULL when n_gids is 0 */
    size_t n_gids;
};

/* Resolves spec ("name", "uid", "name:group", "uid:gid", mixed) the way
 * Docker does: a user name must be in passwd; a numeric uid not in passwd
 * runs with gid 0; an explicit group replaces the primary gid and drops the
 * supplementary groups, otherwise they are the groups of group that list
 * the user by name. passwd and group hold the files' bytes (NULL: the file
 * is missing; numeric ids still work). Lines that are malformed are
 * skipped unless they name the user or group asked for, which is an error.
 * On success out belongs to the caller (passwd_ids_release). Errors:
 * FF_EINVAL (malformed spec or matching line, file:line in the message),
 * FF_ERANGE (an id above PASSWD_ID_MAX), FF_ENOTFOUND (an unknown name,
 * named in the message), FF_ETOOBIG (too many groups), FF_ENOMEM. */
int passwd_resolve_buf(const char *spec, const char *passwd, size_t passwd_len,
                       const char *group, size_t group_len, struct passwd_ids *out,
                       struct ff_err *err);

/* Reads etc/passwd and etc/group of the rootfs open as rootfs_fd (symlinks
 * resolved inside it, regular files only, at most PASSWD_FILE_MAX each)
 * and resolves spec with passwd_resolve_buf. A NULL or empty spec is root
 * (0:0, no supplementary groups). Same errors, plus FF_EIO and FF_ETOOBIG
 * for the files. */
int passwd_resolve(int rootfs_fd, const char *spec, struct passwd_ids *out,
                   struct ff_err *err);

/* Frees what passwd_resolve* stored in ids. NULL-safe. */
void passwd_ids_release(struct passwd_ids *ids);

/* ---- seccomp.c: the system-call allow-list ------------------------------ */

/* Returns the linux.seccomp object of a runc config for a host whose
 * uname machine is host_machine ("x86_64", "aarch64", "armv7l"): default
 * action ERRNO(EPERM) and an allow-list in the spirit of Docker's default
 * profile: what ordinary programs (and qemu-user, whose system calls are
 * the host's) need, but no mount, unshare, setns, namespaces through clone,
 * keyrings, bpf, ptrace, module, clock or reboot calls; clone3 answers
 * ENOSYS so that C libraries fall back to clone. Filters are per host
 * architecture because a guest under qemu makes the host's system calls.
 * *out belongs to the caller (json_decref). Errors: FF_EINVAL (unknown
 * host), FF_ENOMEM. */
int seccomp_profile_new(const char *host_machine, json_t **out, struct ff_err *err);

/* ---- binfmt.c: qemu-user-static in binfmt_misc -------------------------- */

#define BINFMT_DIR "/proc/sys/fs/binfmt_misc"
/* Registrations are one line; status files are a few hundred bytes. */
#define BINFMT_TEXT_MAX 4096

/* One registration as written to BINFMT_DIR/register:
 * :name:type:offset:magic:mask:interpreter:flags (magic and mask keep
 * their \xHH escapes; the kernel decodes them). */
struct binfmt_def {
    char *name;
    char type; /* 'M' (magic) or 'E' (extension) */
    unsigned offset;
    char *magic;
    char *mask; /* may be empty */
    char *interpreter;
    char *flags; /* may be empty */
};

/* What BINFMT_DIR/<name> says about a registered entry. */
struct binfmt_entry {
    bool enabled;
    char *interpreter;
    char *flags; /* the letters after "flags: " */
};

/* Parses a systemd binfmt.d file (/usr/lib/binfmt.d/qemu-aarch64.conf): the
 * first line that is not blank or a comment. Errors: FF_EINVAL naming the
 * field. On success out belongs to the caller (binfmt_def_release). */
int binfmt_def_parse_conf(const char *text, size_t len, struct binfmt_def *out,
                          struct ff_err *err);

/* Parses a binfmt-support file (/usr/share/binfmts/qemu-aarch64: "key
 * value" lines) for the entry called name. fix_binary, credentials and
 * preserve become the F, C and P flags. Same errors and ownership. */
int binfmt_def_parse_binfmts(const char *name, const char *text, size_t len,
                             struct binfmt_def *out, struct ff_err *err);

/* Parses BINFMT_DIR/<name>. Errors: FF_EINVAL. Ownership as above. */
int binfmt_entry_parse(const char *text, size_t len, struct binfmt_entry *out,
                       struct ff_err *err);

/* The register line for def with the F flag added when missing; *out is
 * malloc'd and belongs to the caller. Errors: FF_EINVAL (a field holds ':'
 * or a newline), FF_ENOMEM. */
int binfmt_def_line(const struct binfmt_def *def, char **out, struct ff_err *err);

/* Makes sure def is registered in dir (BINFMT_DIR normally): enabled, with
 * the F flag and def's interpreter; otherwise the old entry is removed and
 * def registered again. With F the kernel opens the interpreter at
 * registration, so it works in a container whose rootfs has no qemu.
 * Errors: FF_ENOTFOUND (the interpreter is missing), FF_EIO (the kernel
 * refused; the message says how). */
int binfmt_ensure_def(const char *dir, const struct binfmt_def *def, struct ff_err *err);

/* binfmt_ensure_def for the qemu-user-static of arch ("arm64", "armv7";
 * "armhf" and "arm" are accepted too): mounts binfmt_misc when it is not,
 * and reads the definition from /usr/lib/binfmt.d/qemu-<cpu>.conf or
 * /usr/share/binfmts/qemu-<cpu>. The host's own architecture needs
 * nothing. Errors: FF_EINVAL (unknown arch), FF_ENOTFOUND (qemu-user-static
 * is not installed), FF_EIO. */
int binfmt_ensure(const char *arch, struct ff_err *err);

/* Frees the strings of def / entry. NULL-safe. */
void binfmt_def_release(struct binfmt_def *def);
void binfmt_entry_release(struct binfmt_entry *entry);

/* ---- runc.c: the bundle and the step ------------------------------------ */

#define RUNC_PATH_DEFAULT "/usr/sbin/runc"
/* Same every time, so nothing the step writes depends on the worker. */
#define RUNC_HOSTNAME "ff-build"
/* Docker's PATH, used when the step's environment has none. */
#define RUNC_PATH_ENV "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* A step without its own limit gets an hour: long enough for compilers
 * under qemu, short enough that a hung step frees the worker. */
#define RUNC_TIMEOUT_DEFAULT_S 3600u
#define RUNC_TIMEOUT_MAX_S 604800u /* a week */
/* 4 GiB of the 24 a worker has: two steps in parallel and the page cache
 * still fit. */
#define RUNC_MEMORY_DEFAULT ((uint64_t)4 << 30)
/* Below this not even a shell under qemu starts. */
#define RUNC_MEMORY_MIN ((uint64_t)4 << 20)
/* Enough for make -j and test suites; stops fork bombs. */
#define RUNC_PIDS_DEFAULT 4096
/* Open files: builds need thousands, but programs that close every fd up
 * to the limit crawl at Docker's 1048576. A worker without
 * CAP_SYS_RESOURCE cannot go above its own hard limit, so a step gets the
 * smaller of the two. */
#define RUNC_NOFILE 65536u
/* /dev/shm size, Docker's default. */
#define RUNC_SHM_BYTES ((uint64_t)64 << 20)
/* Output lines longer than this reach the callback in pieces. */
#define RUNC_LINE_MAX 4096
/* Arguments and environment entries of one step. */
#define RUNC_ARGS_MAX 4096
#define RUNC_ARG_BYTES_MAX ((size_t)1 << 20)
/* After the time limit: how long runc may take to die before it is
 * killed itself. */
#define RUNC_KILL_GRACE_MS 10000
/* After runc exits: how long output may still drain from the pipes (a
 * process that escaped would otherwise hold them open). */
#define RUNC_DRAIN_GRACE_MS 2000
/* runc's --log of one step: its errors are a few lines. */
#define RUNC_LOG_MAX ((size_t)1 << 20)

/* Everything config.json says, already resolved (runc_config_build does no
 * I/O). */
struct runc_config {
    const char *host_machine;      /* uname machine, picks the seccomp arches */
    const char *rootfs;            /* path relative to the bundle or absolute */
    bool shell_form;               /* args[0] runs as /bin/sh -c args[0] */
    const char *const *args;       /* exec form: argv, args[0] the program */
    size_t n_args;
    const char *const *env;        /* "KEY=value"; PATH is added when missing */
    size_t n_env;
    const char *cwd;               /* absolute; NULL is "/" */
    uint32_t uid, gid;
    const uint32_t *gids;          /* supplementary groups */
    size_t n_gids;
    bool network;                  /* share the host's network namespace */
    const char *hosts_file;        /* bind-mounted at /etc/hosts when network */
    const char *resolv_file;       /* bind-mounted at /etc/resolv.conf when network */
    uint64_t memory_limit;         /* bytes, memory+swap the same; 0: none */
    int64_t pids_limit;            /* 0: none */
    uint64_t nofile;               /* RLIMIT_NOFILE; 0: RUNC_NOFILE */
};

/* Builds config.json for c: PID, mount, IPC, UTS and cgroup namespaces and
 * a network namespace with only lo (none when c->network: the step then
 * shares the worker's network, as `docker build --network host` does);
 * Docker's 14 default capabilities (bounding; also effective and permitted
 * for uid 0, none for other users), none ambient or inheritable,
 * noNewPrivileges, the seccomp profile, runc's masked and read-only paths,
 * proc, /dev tmpfs, devpts, /dev/shm, mqueue and read-only sysfs, the
 * NOFILE, memory and pids limits, hostname RUNC_HOSTNAME, umask
 * 022, no terminal. *out (NUL-terminated, *out_len bytes) belongs to the
 * caller. Errors: FF_EINVAL (no args, shell form with other than one
 * argument, an env entry without '=' or an empty key, a relative cwd, a
 * host without a seccomp profile), FF_ERANGE (a limit above INT64_MAX or
 * negative), FF_ETOOBIG (more than RUNC_ARGS_MAX entries or
 * RUNC_ARG_BYTES_MAX bytes), FF_ENOMEM. */
int runc_config_build(const struct runc_config *c, char **out, size_t *out_len,
                      struct ff_err *err);

/* Where runc runs; one per worker. */
struct runc_opts {
    const char *runc;       /* NULL: RUNC_PATH_DEFAULT */
    const char *state_root; /* runc --root, the worker's own directory (created) */
};

enum runc_stream {
    RUNC_STDOUT = 1,
    RUNC_STDERR = 2
};

/* Receives the step's output as it comes, one line at a time without its
 * newline (NUL-terminated, len bytes; lines longer than RUNC_LINE_MAX come
 * in pieces; a last line without newline is flushed at the end). The line
 * is borrowed for the call only. */
typedef void (*runc_output_fn)(void *arg, enum runc_stream stream, const char *line,
                               size_t len);

/* One RUN step. Directories are absolute paths. */
struct runc_step {
    const char *const *lowers; /* unpacked parent layers, topmost first */
    size_t n_lowers;
    const char *upper;  /* empty: receives the step's changes */
    const char *work;   /* empty, on the same file system as upper */
    const char *bundle; /* must not exist: created and removed again */
    bool shell_form;
    const char *const *args;
    size_t n_args;
    const char *const *env;
    size_t n_env;
    const char *cwd;  /* NULL: "/" */
    const char *user; /* USER value; NULL or "": root */
    bool network;
    unsigned timeout_s;    /* 0: RUNC_TIMEOUT_DEFAULT_S */
    uint64_t memory_limit; /* 0: RUNC_MEMORY_DEFAULT */
    int64_t pids_limit;    /* 0: RUNC_PIDS_DEFAULT */
};

/* Runs step: creates the bundle, mounts the overlay at bundle/rootfs,
 * resolves the user in it, writes config.json, runs `runc run` under a
 * fresh container id with stdout and stderr streamed to out (NULL: thrown
 * away), then always deletes the container, unmounts, removes the empty
 * mount points runc had to create in upper (/proc, /dev, /sys, /etc/hosts …
 * when the image lacked them) and removes the bundle. Afterwards upper
 * holds exactly the step's changes. Foreign architectures need
 * binfmt_ensure first. runc is started with posix_spawn and reaped by its
 * pid: the caller must not reap children it did not start (waitpid(-1) in
 * a SIGCHLD handler). Returns 0 when the step ran to its end, with its
 * exit status in *status (0 success; 128+N when killed by signal N), which
 * is the caller's to judge. Errors: FF_ETIMEOUT (the step exceeded its time
 * limit: it was killed, *status is not set), FF_EINVAL (a bad step, user or
 * config), FF_ERANGE (a limit out of range), FF_ENOTFOUND (an unknown USER
 * name), FF_EEXIST (the bundle exists), FF_EIO (mount, runc or clean-up
 * failed; runc refusing to start the process, e.g. no such program, is
 * "runc: " and runc's reason). */
int runc_step_run(const struct runc_opts *opts, const struct runc_step *step,
                  runc_output_fn out, void *out_arg, int *status, struct ff_err *err);

/* Deletes every container left in opts->state_root (a worker that died
 * mid-step leaves its container there); for the worker's start. The
 * overlays of the dead worker's bundles are the caller's to unmount
 * (rootfs_unmount). Errors: FF_EIO. */
int runc_reap(const struct runc_opts *opts, struct ff_err *err);

/* ==== cache =============================================================== */

/* The worker's cache, one directory shared by every build on the worker:
 *
 *   blobs/sha256/<hex>     compressed layer blobs (built, or fetched bases)
 *   layers/<hex>/          a layer unpacked as an overlay lower directory,
 *                          named by its diff_id
 *   layers/<hex>.json      the layer's blob digest, size, media type and the
 *                          bytes it takes; its mtime is when it was last used
 *   steps/<key hex>        what a build step with this cache key produced
 *   tmp/                   work directories (same filesystem, so renames
 *                          into place are atomic)
 *
 * One build at a time holds the cache (flock on <dir>/lock): a second
 * waits. Eviction removes least recently used layers until the cache is
 * under its bound; a step record whose layer is gone is a miss. */

/* Longest media type kept for a layer. */
#define CACHE_MEDIA_TYPE_MAX 127

struct cache;

struct cache_layer {
    struct ff_digest diff_id; /* of the uncompressed tar; names the directory */
    struct ff_digest digest;  /* of the blob */
    uint64_t size;            /* blob bytes */
    char media_type[CACHE_MEDIA_TYPE_MAX + 1];
};

struct cache_step {
    bool empty; /* the step made no layer (metadata only, or no change) */
    struct cache_layer layer;
};

/* Opens (creating as needed) the cache at dir, bounded to max_bytes (0: no
 * bound), waiting for any other build that holds it; clears tmp/. On
 * success *out (cache_close) belongs to the caller. Errors: FF_EIO (naming
 * the path), FF_ENOMEM. */
int cache_open(const char *dir, uint64_t max_bytes, struct cache **out, struct ff_err *err);

/* Releases the lock and frees c. NULL-safe. */
void cache_close(struct cache *c);

/* A new empty directory under tmp/, malloc'd path for the caller (who
 * removes it with cache_remove_tree when done). Errors: FF_EIO, FF_ENOMEM. */
int cache_tmp_dir(struct cache *c, const char *prefix, char **out, struct ff_err *err);

/* Paths inside the cache, malloc'd for the caller (NULL when out of
 * memory); the file or directory need not exist. */
char *cache_blob_path(const struct cache *c, const struct ff_digest *digest);
char *cache_layer_path(const struct cache *c, const struct ff_digest *diff_id);

/* Looks up the layer with this diff_id; *found is false when its record,
 * directory or blob is missing. A found layer is marked used. Errors:
 * FF_EIO, FF_EINVAL (a damaged record: the layer should be re-made). */
int cache_layer_get(struct cache *c, const struct ff_digest *diff_id, struct cache_layer *out,
                    bool *found, struct ff_err *err);

/* Adds a layer: renames dir (its unpacked form) and blob (its compressed
 * form; NULL when the blob is already at cache_blob_path) into place, then
 * writes its record. Both must be on the cache's filesystem (use
 * cache_tmp_dir). If the layer is already there, dir and blob are removed
 * and the existing one is kept. Errors: FF_EIO, FF_ENOMEM. */
int cache_layer_add(struct cache *c, const struct cache_layer *layer, const char *dir,
                    const char *blob, struct ff_err *err);

/* What the step with this key produced; *hit is false when unknown or when
 * its layer has been evicted. Errors: FF_EIO, FF_EINVAL (damaged record). */
int cache_step_get(struct cache *c, const struct ff_digest *key, struct cache_step *out,
                   bool *hit, struct ff_err *err);

/* Records what the step with this key produced (atomic replace). Errors:
 * FF_EIO, FF_ENOMEM. */
int cache_step_put(struct cache *c, const struct ff_digest *key, const struct cache_step *s,
                   struct ff_err *err);

/* Removes least recently used layers (directory, blob, record) until the
 * cache holds at most its bound; *freed (may be NULL) gets the bytes
 * removed. Only call between builds' uses of layers (the holder of the
 * cache decides). Errors: FF_EIO. */
int cache_evict(struct cache *c, uint64_t *freed, struct ff_err *err);

/* Bytes the layers of the cache take, as their records say. */
int cache_usage(struct cache *c, uint64_t *bytes, struct ff_err *err);

/* Removes path and everything under it without following symbolic links;
 * a missing path (or NULL) is not an error. Errors: FF_EIO naming what could not be
 * removed. */
int cache_remove_tree(const char *path, struct ff_err *err);

/* ==== build =============================================================== */

/* The build engine's entry point: a context directory and its recipe in,
 * an image (or, for several architectures, an image index) out, pushed to
 * a registry or written as an OCI image layout. */

/* Most --arch values in one build. */
#define BUILD_ARCHS_MAX 3
/* Most --build-arg values. */
#define BUILD_ARGS_MAX 256

/* Where a line of progress goes: one line per step with its cache status
 * and duration, and the live output of RUN steps, each prefixed with the
 * architecture. line has no newline. */
typedef void (*build_progress_fn)(void *ctx, const char *line);

struct build_opts {
    const char *context;          /* the context directory */
    const char *file;             /* recipe path relative to context; NULL:
                                   * Dockerfile, else Dockerfile.template */
    const char *archs[BUILD_ARCHS_MAX]; /* amd64, arm64, armv7 */
    size_t n_archs;
    const char *const *build_args; /* "K=V" */
    size_t n_build_args;
    const char *app;              /* %%FF_APP%% of a template; NULL: "" */
    bool no_cache;                /* run every step; results still cached */
    const char *cache_dir;        /* the worker's cache (cache.h) */
    uint64_t cache_max_bytes;     /* 0: unbounded */
    int64_t epoch;                /* SOURCE_DATE_EPOCH: created times, mtime clamp */
    bool zstd;                    /* zstd layers instead of gzip */
    bool network;                 /* RUN steps get the host network */
    unsigned step_timeout_s;      /* 0: the runner's default */
    uint64_t step_memory;         /* 0: the runner's default */
    /* The registry FROM resolves against and --push goes to. */
    const char *registry;         /* host:port; NULL only with no base image and no push */
    const char *ca_file;          /* NULL: the system CAs */
    const char *user;             /* registry credentials, or NULL */
    const char *secret;
    /* Output: push to repo:tag, or write an OCI layout with tag, or both. */
    const char *push_repo;
    const char *push_tag;
    const char *layout_dir;
    const char *layout_tag;
    build_progress_fn progress;
    void *progress_ctx;
};

struct build_result {
    struct ff_digest digest; /* the manifest's, or the index's for several archs */
    bool is_index;
    unsigned steps_run;      /* RUN, COPY and ADD steps executed */
    unsigned steps_cached;   /* those taken from the cache */
};

/* Builds what opts describes; *out is filled on success. Errors name the
 * recipe file, line and instruction for whatever the recipe asks that
 * cannot be done: FF_EINVAL (bad recipe or option, missing COPY source,
 * checksum mismatch, a RUN that exits non-zero: its status is in the
 * message), FF_ETIMEOUT (a step over its time limit), FF_ENOTFOUND (no
 * such base image), FF_EAUTH and FF_EDENIED (registry credentials),
 * FF_ENET, FF_EIO, FF_ENOMEM. Nothing is pushed or written unless every
 * architecture built. */
int build_run(const struct build_opts *opts, struct build_result *out, struct ff_err *err);

/* ---- publish.c: writing what was built ------------------------------------ */

/* One layer of a finished image. */
struct build_layer {
    struct ff_digest diff_id;
    struct ff_digest digest;
    int64_t size;
    char media_type[CACHE_MEDIA_TYPE_MAX + 1];
    char *blob_path;   /* the compressed blob in the cache */
    char *source_repo; /* a base image's layer: the repository it came from
                        * (a push mounts it from there); NULL when built */
};

/* One architecture's finished image. */
struct build_image {
    struct oci_platform platform;
    char *config;
    size_t config_len;
    struct ff_digest config_digest;
    char *manifest;
    size_t manifest_len;
    struct ff_digest manifest_digest;
    struct build_layer *layers;
    size_t n_layers;
};

/* The bytes of an OCI index over images (several architectures). *out
 * (malloc'd) belongs to the caller. Errors: FF_ENOMEM, FF_ETOOBIG. */
int publish_index(const struct build_image *images, size_t n, char **out, size_t *out_len,
                  struct ff_digest *digest, struct ff_err *err);

/* Writes images to the OCI image layout dir under tag: one image as its
 * manifest, several as an index; *digest is what the tag names. index.json
 * keeps other tags. Errors: FF_EIO, FF_ENOMEM, FF_EINVAL. */
int publish_layout(const char *dir, const char *tag, const struct build_image *images,
                   size_t n, struct ff_digest *digest, struct ff_err *err);

/* Pushes images to repo:tag: every blob the registry lacks (base layers
 * mounted from their repository when possible), then each manifest, and
 * for several images an index under tag. tmp_dir holds config files while
 * they are uploaded. *digest is what the tag names. Errors: those of
 * regclient. */
int publish_push(struct regclient *reg, const char *repo, const char *tag,
                 const struct build_image *images, size_t n, const char *tmp_dir,
                 struct ff_digest *digest, struct ff_err *err);

/* ==== args ================================================================ */

/* The command line of `ff-worker build` (args.c): options and their
 * defaults from the environment, checked and turned into build_opts
 * (build.h). Parsing does no I/O, so every rule is unit-tested. */

/* Where the worker keeps its cache when neither --cache nor
 * FF_WORKER_CACHE says otherwise (FHS: regenerable data of a program). */
#define ARGS_CACHE_DIR_DEFAULT "/var/cache/ff-worker"
/* Tag of --oci-layout DIR without ":TAG", as skopeo and umoci assume. */
#define ARGS_LAYOUT_TAG_DEFAULT "latest"
/* Latest SOURCE_DATE_EPOCH: 9999-12-31T23:59:59Z, the last second an RFC
 * 3339 time (four-digit year) in an image config can hold. */
#define ARGS_EPOCH_MAX INT64_C(253402300799)
/* Largest --cache-max or --step-memory: 1 PiB, far above any disk or RAM
 * of a worker, low enough that no size arithmetic downstream overflows. */
#define ARGS_SIZE_MAX (UINT64_C(1) << 50)

/* Looks up an environment variable: its value (borrowed, must outlive the
 * parsed result) or NULL when unset. main passes getenv; tests a table. */
typedef const char *(*args_getenv_fn)(void *ctx, const char *name);

/* A parsed `ff-worker build` command. opts is what build_run takes; its
 * strings point into argv, into the environment or into the members
 * below, so argv and the environment must outlive it. */
struct build_args {
    struct build_opts opts;
    bool help;                             /* --help: print build_args_usage, build nothing */
    const char *build_arg_v[BUILD_ARGS_MAX]; /* opts.build_args points here */
    char *user;                            /* from --creds or FF_ADMIN_USER */
    char *secret;                          /* the same; wiped by build_args_release */
    char *push_repo;                       /* --push split at its tag */
    char *layout_dir;                      /* --oci-layout split at its tag */
    char *layout_tag;
};

/* The text of `ff-worker build --help` (several lines, ends in a newline). */
extern const char build_args_usage[];

/* Parses the words after "build" (argc of them in argv; no program name)
 * into *out, which the caller then releases with build_args_release,
 * whatever the result. Options may come before or after the context
 * directory, as "--name value" or "--name=value"; "--" ends them. --arch
 * and --build-arg may repeat (a value given twice is an error, so is any
 * other option given twice). Missing values come from env: FF_REGISTRY,
 * FF_ADMIN_USER and FF_ADMIN_TOKEN (both or neither), FF_CA,
 * SOURCE_DATE_EPOCH, FF_WORKER_CACHE (else ARGS_CACHE_DIR_DEFAULT).
 * With --help anywhere before "--", only out->help is set and 0 returned.
 * Errors: FF_EINVAL, a usage error whose message names the option or
 * variable and says what was expected (unknown option, missing or bad
 * value, missing context directory, --arch, or --push/--oci-layout, --push
 * without a registry); FF_ENOMEM. Secrets never appear in messages. */
int build_args_parse(int argc, char *const *argv, args_getenv_fn getenv_fn, void *env_ctx,
                     struct build_args *out, struct ff_err *err);

/* Frees what out owns, wiping the secret first. NULL-safe; out is zeroed. */
void build_args_release(struct build_args *out);

/* Overwrites, in place, the secret half of every --creds value in argv
 * (the same words build_args_parse took) with NUL bytes, so it no longer
 * shows in /proc/<pid>/cmdline or ps. Call after build_args_parse, whose
 * result holds its own copy. */
void build_args_wipe_secret(int argc, char **argv);

/* Parses a size: digits with an optional binary suffix K, M, G or T
 * (either case, optionally followed by "iB"), at most max bytes. Returns
 * 0, FF_EINVAL (not a size) or FF_ERANGE (above max). */
int build_args_size_parse(const char *s, uint64_t max, uint64_t *out);

#endif
