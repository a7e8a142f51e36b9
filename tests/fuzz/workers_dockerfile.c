/* The recipe front end on hostile bytes: the input is a Dockerfile (and a
 * Dockerfile.template). Whatever parses must hold what the build engine
 * relies on: instruction lines strictly increasing and inside the input,
 * well-formed instructions, stage references that point backwards; and
 * stepping every stage through its scope must either succeed with a
 * consistent expanded instruction or fail with a located message. ASan
 * checks that nothing leaks or overruns. */
#include "worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static unsigned count_lines(const uint8_t *data, size_t size)
{
    unsigned n = 1;
    for (size_t i = 0; i < size; i++)
        n += data[i] == '\n';
    return n;
}

static void check_instr(const struct recipe_instr *in, size_t stage, bool expanded)
{
    const char *name = recipe_kind_name(in->kind);
    check(strcmp(name, "?") != 0);
    check(in->text != NULL && strncmp(in->text, name, strlen(name)) == 0);
    switch (in->kind) {
    case RECIPE_RUN:
    case RECIPE_CMD:
    case RECIPE_ENTRYPOINT:
        check(in->exec_form || in->n_args == 1);
        check(in->kind != RECIPE_RUN || in->n_args >= 1);
        break;
    case RECIPE_COPY:
    case RECIPE_ADD:
        check(in->n_args >= 2);
        check(in->from_stage < (int)stage);
        check(in->chmod_mode >= -1 && in->chmod_mode <= 07777);
        check(!(in->from_image && in->from_stage >= 0));
        break;
    case RECIPE_ENV:
    case RECIPE_LABEL:
    case RECIPE_ARG:
        check(in->n_kvs >= 1);
        for (size_t i = 0; i < in->n_kvs; i++)
            check(in->kvs[i].key != NULL && (in->kind == RECIPE_ARG || in->kvs[i].value != NULL));
        break;
    case RECIPE_EXPOSE:
        check(in->n_args >= 1);
        for (size_t i = 0; expanded && i < in->n_args; i++) {
            const char *slash = strchr(in->args[i], '/');
            check(slash != NULL && (strcmp(slash, "/tcp") == 0 || strcmp(slash, "/udp") == 0 ||
                                    strcmp(slash, "/sctp") == 0));
        }
        break;
    default:
        check(in->n_args == 1 && in->args[0][0] != '\0');
        break;
    }
    for (size_t i = 0; i < in->n_args; i++)
        check(in->args[i] != NULL);
}

static void check_parsed(const struct recipe *r, unsigned n_lines)
{
    check(r->escape == '\\' || r->escape == '`');
    check(r->n_stages >= 1 && r->n_stages <= RECIPE_STAGES_MAX);
    unsigned last = 0;
    for (size_t i = 0; i < r->n_args; i++) {
        check(r->args[i].kind == RECIPE_ARG && r->args[i].line > last);
        last = r->args[i].line;
        check_instr(&r->args[i], 0, false);
    }
    for (size_t s = 0; s < r->n_stages; s++) {
        const struct recipe_from *f = &r->stages[s].from;
        check(f->line > last && f->line <= n_lines);
        last = f->line;
        check(f->image != NULL && f->image[0] != '\0' && f->base_stage < (int)s);
        check(f->text != NULL && strncmp(f->text, "FROM", 4) == 0);
        for (const char *p = f->name; p != NULL && *p != '\0'; p++)
            check(!(*p >= 'A' && *p <= 'Z'));
        for (size_t i = 0; i < r->stages[s].n_instrs; i++) {
            const struct recipe_instr *in = &r->stages[s].instrs[i];
            check(in->line > last && in->line <= n_lines);
            last = in->line;
            check_instr(in, s, false);
        }
    }
}

/* Both environments of a scope as one string, to compare. */
static char *env_text(const struct recipe_scope *sc)
{
    size_t total = 2;
    char **v[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    struct ff_err err;
    check(recipe_scope_run_env(sc, &v[0], &n[0], &err) == 0);
    check(recipe_scope_image_env(sc, &v[1], &n[1], &err) == 0);
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < n[k]; i++)
            total += strlen(v[k][i]) + 1;
    }
    char *out = malloc(total);
    check(out != NULL);
    size_t w = 0;
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < n[k]; i++) {
            size_t l = strlen(v[k][i]);
            memcpy(out + w, v[k][i], l);
            w += l;
            out[w++] = '\n';
        }
        out[w++] = '|';
        recipe_strv_free(v[k], n[k]);
    }
    out[w - 1] = '\0';
    return out;
}

/* Builds every stage the way the engine does. */
static void step_all(const struct recipe *r)
{
    static const char *const args[] = {"A=1", "TAG=x y", "HTTP_PROXY=p"};
    static const char *const env[] = {"PATH=/bin", "HOME=/root"};
    struct recipe_scope *g = NULL;
    struct ff_err err;
    if (recipe_scope_global_new(r, args, 3, "armv7", "amd64", &g, &err) != 0) {
        check(strncmp(err.msg, "Dockerfile:", 11) == 0);
        return;
    }
    struct recipe_scope **scopes = calloc(r->n_stages, sizeof(struct recipe_scope *));
    check(scopes != NULL);
    for (size_t s = 0; s < r->n_stages; s++) {
        struct recipe_from *f = NULL;
        if (recipe_scope_from(g, s, &f, &err) != 0) {
            check(strncmp(err.msg, "Dockerfile:", 11) == 0);
            continue;
        }
        check(f->line == r->stages[s].from.line && f->base_stage < (int)s);
        const struct recipe_scope *base = f->base_stage >= 0 ? scopes[f->base_stage] : NULL;
        bool skip = f->base_stage >= 0 && base == NULL;
        recipe_from_free(f);
        if (skip || recipe_scope_stage_new(g, s, base, base != NULL ? NULL : env,
                                           base != NULL ? 0 : 2, &scopes[s], &err) != 0)
            continue;
        for (size_t i = 0; i < r->stages[s].n_instrs; i++) {
            const struct recipe_instr *in = &r->stages[s].instrs[i];
            struct recipe_instr *e = NULL;
            char *before = env_text(scopes[s]);
            if (recipe_scope_step(scopes[s], in, &e, &err) != 0) {
                check(e == NULL && strncmp(err.msg, "Dockerfile:", 11) == 0);
                /* A failed step leaves the scope as it was. */
                char *after = env_text(scopes[s]);
                check(strcmp(before, after) == 0);
                free(after);
                free(before);
                continue;
            }
            free(before);
            check(e->kind == in->kind && e->line == in->line);
            check_instr(e, s, true);
            recipe_instr_free(e);
        }
        char **v = NULL;
        size_t n = 0;
        check(recipe_scope_run_env(scopes[s], &v, &n, &err) == 0);
        for (size_t i = 0; i < n; i++)
            check(strchr(v[i], '=') != NULL);
        recipe_strv_free(v, n);
    }
    char *unused = NULL;
    check(recipe_scope_unused_build_args(g, &unused, &err) == 0);
    free(unused);
    for (size_t s = 0; s < r->n_stages; s++)
        recipe_scope_free(scopes[s]);
    free(scopes);
    recipe_scope_free(g);
}

static void check_template(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t n = 0;
    struct ff_err err;
    if (recipe_template((const char *)data, size, "arm64", "me/app", &out, &n, &err) != 0) {
        check(strncmp(err.msg, "Dockerfile.template", 19) == 0);
        return;
    }
    check(n <= RECIPE_SIZE_MAX && out[n] == '\0');
    free(out);
}

static bool lookup(void *ctx, const char *name, size_t len, const char **value)
{
    (void)ctx;
    if (len == 1 && name[0] == 'A') {
        *value = "a b";
        return true;
    }
    return false;
}

static void check_expand(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    check(s != NULL);
    memcpy(s, data, size);
    s[size] = '\0';
    char *out = NULL;
    struct ff_err err;
    int rc = recipe_expand_word(s, '\\', lookup, NULL, &out, &err);
    if (rc == 0)
        check(strlen(out) <= RECIPE_EXPAND_MAX);
    free(out);
    char **w = NULL;
    size_t n = 0;
    /* Words and the single word agree on success and failure. */
    check((recipe_expand_words(s, '\\', lookup, NULL, &w, &n, &err) == 0) == (rc == 0));
    for (size_t i = 0; i < n; i++)
        check(w[i][0] != '\0');
    recipe_strv_free(w, n);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct recipe *r = NULL;
    struct ff_err err;
    int rc = recipe_parse((const char *)data, size, "Dockerfile", &r, &err);
    if (rc != 0) {
        check(r == NULL && (rc == FF_EINVAL || rc == FF_ETOOBIG));
        check(strncmp(err.msg, "Dockerfile", 10) == 0);
    } else {
        check_parsed(r, count_lines(data, size));
        step_all(r);
        recipe_free(r);
    }
    check_template(data, size);
    if (memchr(data, '\0', size) == NULL)
        check_expand(data, size);
    return 0;
}
