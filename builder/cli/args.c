/* Command-line options and operands. Options may come before, between
 * and after operands (GNU style) so "ff app list --json" and
 * "ff --json app list" both work; "--" ends them. */
#include "cli.h"

#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

void args_init(struct cli_args *a, const struct cli_opt *opts, size_t n)
{
    if (n > CLI_OPTS_MAX)
        FF_BUG("command declares more than CLI_OPTS_MAX options");
    memset(a, 0, sizeof(*a));
    a->opts = opts;
    a->n_opts = n;
}

/* Index of the option whose name is the len bytes at name, or -1. */
static int opt_find(const struct cli_args *a, const char *name, size_t len)
{
    for (size_t i = 0; i < a->n_opts; i++) {
        if (strlen(a->opts[i].name) == len && strncmp(a->opts[i].name, name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* Handles arg when it is a global option; *consumed is how many argv
 * entries it used (0 when arg is not one). */
static int global_opt(struct cli_args *a, const char *arg, const char *next, int *consumed,
                      struct ff_err *err)
{
    static const char env_file[] = "--env-file";
    *consumed = 0;
    if (strcmp(arg, "--json") == 0) {
        a->json = true;
        *consumed = 1;
        return 0;
    }
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        a->help = true;
        *consumed = 1;
        return 0;
    }
    if (strncmp(arg, env_file, sizeof(env_file) - 1) != 0 ||
        (arg[sizeof(env_file) - 1] != '\0' && arg[sizeof(env_file) - 1] != '='))
        return 0;
    if (a->env_file != NULL)
        return ff_err_set(err, CLI_EUSAGE, "option \"--env-file\" given twice");
    if (arg[sizeof(env_file) - 1] == '=') {
        a->env_file = arg + sizeof(env_file);
        *consumed = 1;
    } else {
        a->env_file = next;
        *consumed = 2;
    }
    if (a->env_file == NULL || a->env_file[0] == '\0')
        return ff_err_set(err, CLI_EUSAGE, "option \"--env-file\" needs a FILE");
    return 0;
}

/* Handles arg, a "--name[=value]" option of the command. */
static int command_opt(struct cli_args *a, const char *arg, const char *next, int *consumed,
                       struct ff_err *err)
{
    const char *eq = strchr(arg, '=');
    size_t name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    int k = ff_str_has_prefix(arg, "--") ? opt_find(a, arg, name_len) : -1;
    if (k < 0) {
        char shown[FF_STR_QUOTE_SIZE];
        ff_str_quote(arg, name_len, shown);
        return ff_err_set(err, CLI_EUSAGE, "unknown option \"%s\"", shown);
    }
    const struct cli_opt *o = &a->opts[k];
    if (a->vals[k] != NULL)
        return ff_err_set(err, CLI_EUSAGE, "option \"%s\" given twice", o->name);
    if (o->value == NULL) {
        if (eq != NULL)
            return ff_err_set(err, CLI_EUSAGE, "option \"%s\" takes no value", o->name);
        a->vals[k] = "";
        *consumed = 1;
    } else if (eq != NULL) {
        a->vals[k] = eq + 1;
        *consumed = 1;
    } else if (next != NULL) {
        a->vals[k] = next;
        *consumed = 2;
    } else {
        return ff_err_set(err, CLI_EUSAGE, "option \"%s\" needs a value %s", o->name, o->value);
    }
    return 0;
}

int args_parse(struct cli_args *a, int argc, char *const *argv, bool stop_at_operand, int *used,
               struct ff_err *err)
{
    bool options_done = false;
    int i = 0;
    while (i < argc) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (stop_at_operand)
                break;
            if (a->n_pos == CLI_POS_MAX)
                return ff_err_set(err, CLI_EUSAGE, "too many operands (at most %d)",
                                  CLI_POS_MAX);
            a->pos[a->n_pos++] = arg;
            i++;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            i++;
            continue;
        }
        int consumed = 0;
        int rc = global_opt(a, arg, next, &consumed, err);
        if (rc == 0 && consumed == 0)
            rc = command_opt(a, arg, next, &consumed, err);
        if (rc != 0)
            return rc;
        i += consumed;
    }
    *used = i;
    return 0;
}

const char *args_value(const struct cli_args *a, const char *name)
{
    int k = opt_find(a, name, strlen(name));
    if (k < 0)
        FF_BUG("asked for an option the command does not declare");
    return a->vals[k];
}

int args_int(const struct cli_args *a, const char *name, int64_t min, int64_t max,
             int64_t *out, struct ff_err *err)
{
    const char *v = args_value(a, name);
    if (v == NULL)
        return FF_ENOTFOUND;
    if (ff_parse_i64(v, min, max, out) != 0) {
        char shown[FF_STR_QUOTE_SIZE];
        ff_str_quote(v, strlen(v), shown);
        return ff_err_set(err, CLI_EUSAGE, "option \"%s\": \"%s\" is not a number in "
                          "%lld..%lld", name, shown, (long long)min, (long long)max);
    }
    return 0;
}

int args_limit(const struct cli_args *a, int64_t *out, struct ff_err *err)
{
    *out = 0;
    int rc = args_int(a, "--limit", 1, CLI_LIST_ITEMS_MAX, out, err);
    return rc == FF_ENOTFOUND ? 0 : rc;
}

int args_id(const char *s, const char *what, int64_t *out, struct ff_err *err)
{
    if (ff_parse_i64(s, 1, INT64_MAX, out) == 0)
        return 0;
    char shown[FF_STR_QUOTE_SIZE];
    ff_str_quote(s, strlen(s), shown);
    return ff_err_set(err, CLI_EUSAGE, "%s \"%s\" is not a positive integer", what, shown);
}

int args_app(const char *s, char **owner, char **name, struct ff_err *err)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s || slash[1] == '\0' || strchr(slash + 1, '/') != NULL) {
        char shown[FF_STR_QUOTE_SIZE];
        ff_str_quote(s, strlen(s), shown);
        return ff_err_set(err, CLI_EUSAGE, "app \"%s\" must be OWNER/NAME", shown);
    }
    *owner = ff_strndup(s, (size_t)(slash - s));
    *name = ff_strndup(slash + 1, strlen(slash + 1));
    if (*owner == NULL || *name == NULL) {
        free(*owner);
        free(*name);
        *owner = *name = NULL;
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    return 0;
}
