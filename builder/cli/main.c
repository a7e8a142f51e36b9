/* ff: the Fleetforge command-line client. This file is the command table
 * and the dispatch: global options, the longest matching command words,
 * the command's options and operands, the configuration, then the run
 * function; its result becomes one line on stderr and the exit status. */
#include "cli.h"

#include "ff_log.h"
#include "ff_str.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The command needs a token (all but login and logout). */
#define NEEDS_TOKEN 1u
/* Width of an option and its value in a command's help. */
#define OPT_COLUMN 22

struct cli_cmd {
    const char *words;    /* "app create" */
    const char *operands; /* "NAME --arch A[,B]", for usage lines */
    const char *summary;  /* one line for ff --help */
    const struct cli_opt *opts;
    size_t n_opts;
    size_t min_pos, max_pos;
    unsigned flags;
    cli_run_fn run;
};

static const struct cli_opt o_login[] = {{"--user", "NAME", "the user to log in as"}};
static const struct cli_opt o_keys_add[] = {
    {"--name", "N", "a name for the key (default: its comment, else the file name)"}};
static const struct cli_opt o_limit[] = {{"--limit", "N", "show at most N items"}};
static const struct cli_opt o_tokens_create[] = {
    {"--expires-in", "SECONDS", "the token ends after this long (default: never)"}};
static const struct cli_opt o_app_create[] = {
    {"--arch", "A[,B]", "target architectures: amd64, arm64, armv7"},
    {"--deploy-branch", "B", "the branch whose pushes are built and deployed (default main)"}};
static const struct cli_opt o_members[] = {
    {"--role", "ROLE", "with add: developer (may push) or viewer"},
    {"--limit", "N", "show at most N members"}};
static const struct cli_opt o_pkey_create[] = {
    {"--name", "N", "a name for the key (required)"},
    {"--expires-in", "SECONDS", "the key ends after this long (default: never)"},
    {"--max-uses", "N", "devices it may register (default: no limit)"}};
static const struct cli_opt o_device[] = {
    {"--device", "UUID", "the variable of this device of the app (overrides the app's)"}};
static const struct cli_opt o_users_create[] = {{"--admin", NULL, "make an operator"}};
static const struct cli_opt o_join[] = {
    {"--expires-in", "SECONDS", "the token ends after this long (default: the server's)"}};

#define OPTS(o) o, N_OF(o)
#define NO_OPTS NULL, 0

static const struct cli_cmd commands[] = {
    {"login", "[--user NAME]",
     "log in: the password is prompted for (or read from standard input); the session token "
     "is stored in ~/.config/ff/token",
     OPTS(o_login), 0, 0, 0, cmd_login},
    {"logout", "", "revoke the stored session token and remove it", NO_OPTS, 0, 0, 0,
     cmd_logout},
    {"whoami", "", "show who the token belongs to", NO_OPTS, 0, 0, NEEDS_TOKEN, cmd_whoami},
    {"keys add", "FILE [--name N]", "add an SSH public key (FILE is the .pub file)",
     OPTS(o_keys_add), 1, 1, NEEDS_TOKEN, cmd_keys_add},
    {"keys list", "[--limit N]", "list your SSH keys", OPTS(o_limit), 0, 0, NEEDS_TOKEN,
     cmd_keys_list},
    {"keys rm", "ID", "remove an SSH key", NO_OPTS, 1, 1, NEEDS_TOKEN, cmd_keys_rm},
    {"tokens create", "NAME [--expires-in SECONDS]",
     "create an API token for scripts (shown once)", OPTS(o_tokens_create), 1, 1, NEEDS_TOKEN,
     cmd_tokens_create},
    {"tokens list", "[--limit N]", "list your tokens", OPTS(o_limit), 0, 0, NEEDS_TOKEN,
     cmd_tokens_list},
    {"tokens revoke", "ID", "revoke a token", NO_OPTS, 1, 1, NEEDS_TOKEN, cmd_tokens_revoke},
    {"2fa enable", "",
     "turn on two-factor login: shows the secret, asks for a code, prints recovery codes once",
     NO_OPTS, 0, 0, NEEDS_TOKEN, cmd_2fa_enable},
    {"2fa disable", "", "turn off two-factor login (asks for a code or a recovery code)",
     NO_OPTS, 0, 0, NEEDS_TOKEN, cmd_2fa_disable},
    {"app create", "NAME --arch A[,B]", "create an app owned by you", OPTS(o_app_create), 1, 1,
     NEEDS_TOKEN, cmd_app_create},
    {"app list", "[--limit N]", "list the apps you own or are a member of", OPTS(o_limit), 0,
     0, NEEDS_TOKEN, cmd_app_list},
    {"app show", "OWNER/NAME", "show an app", NO_OPTS, 1, 1, NEEDS_TOKEN, cmd_app_show},
    {"app rm", "OWNER/NAME", "delete an app", NO_OPTS, 1, 1, NEEDS_TOKEN, cmd_app_rm},
    {"app members", "OWNER/NAME [add USER --role developer|viewer | rm USER]",
     "list, add or remove the members of an app", OPTS(o_members), 1, 3, NEEDS_TOKEN,
     cmd_app_members},
    {"provision-key create", "OWNER/NAME --name N [--expires-in SECONDS] [--max-uses N]",
     "create a key devices register with (shown once)", OPTS(o_pkey_create), 1, 1,
     NEEDS_TOKEN, cmd_pkey_create},
    {"provision-key list", "OWNER/NAME [--limit N]", "list an app's provisioning keys",
     OPTS(o_limit), 1, 1, NEEDS_TOKEN, cmd_pkey_list},
    {"provision-key revoke", "OWNER/NAME ID", "revoke a provisioning key", NO_OPTS, 2, 2,
     NEEDS_TOKEN, cmd_pkey_revoke},
    {"devices list", "OWNER/NAME [--limit N]", "list an app's devices", OPTS(o_limit), 1, 1,
     NEEDS_TOKEN, cmd_devices_list},
    {"devices show", "UUID", "show a device", NO_OPTS, 1, 1, NEEDS_TOKEN, cmd_devices_show},
    {"devices rm", "UUID", "delete a device; its key stops working at once", NO_OPTS, 1, 1,
     NEEDS_TOKEN, cmd_devices_rm},
    {"env set", "OWNER/NAME NAME=VALUE|NAME [--device UUID]",
     "set a variable; with NAME alone the value is prompted for (or read from standard "
     "input), so secrets stay off the command line",
     OPTS(o_device), 2, 2, NEEDS_TOKEN, cmd_env_set},
    {"env list", "OWNER/NAME [--device UUID]",
     "list an app's variables, or what a device sees", OPTS(o_device), 1, 1, NEEDS_TOKEN,
     cmd_env_list},
    {"env rm", "OWNER/NAME NAME [--device UUID]", "remove a variable", OPTS(o_device), 2, 2,
     NEEDS_TOKEN, cmd_env_rm},
    {"audit", "[--limit N]", "show the audit log (admins)", OPTS(o_limit), 0, 0, NEEDS_TOKEN,
     cmd_audit},
    {"users create", "NAME [--admin]",
     "create a user (admins); the password is prompted for (or read from standard input)",
     OPTS(o_users_create), 1, 1, NEEDS_TOKEN, cmd_users_create},
    {"workers join-token", "[--expires-in SECONDS]",
     "create a single-use token a worker joins with (admins; shown once)", OPTS(o_join), 0, 0,
     NEEDS_TOKEN, cmd_workers_join_token},
};

static const char global_help[] =
    "Global options:\n"
    "  --json           print the server's JSON (for scripts) instead of tables\n"
    "  --env-file FILE  read FF_API_URL, FF_CA and FF_ADMIN_TOKEN from FILE (such as\n"
    "                   var/farm.env) for what nothing else sets\n"
    "  -h, --help       show help\n";

static const char config_help[] =
    "Configuration, each value from the first place that has it:\n"
    "  1. the environment: FF_API_URL, FF_CA (the CA to trust), FF_TOKEN\n"
    "  2. ~/.config/ff/config (or $XDG_CONFIG_HOME/ff/config) with the lines\n"
    "     \"api_url = https://…\" and \"ca = FILE\", and the token ff login stored\n"
    "     in ~/.config/ff/token (mode 0600; refused when others can read it)\n"
    "  3. --env-file FILE\n"
    "\n"
    "FF_LOG=debug|info|warn shows the client's event lines (retries) on stderr.\n"
    "\n"
    "Exit status: 0 done, 1 refused by the server or failed, 2 usage error,\n"
    "3 authentication needed (log in), 4 not found, 5 cannot reach the server\n"
    "(connection, TLS or timeout).\n";

/* Number of words in a command's name. */
static size_t word_count(const char *words)
{
    size_t n = 1;
    for (const char *p = words; *p != '\0'; p++)
        n += *p == ' ';
    return n;
}

/* Whether the first word_count(words) entries of argv spell words. */
static bool words_match(const char *words, int argc, char *const *argv)
{
    size_t n = word_count(words);
    if ((size_t)argc < n)
        return false;
    const char *p = words;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(p, " ");
        if (strlen(argv[i]) != len || strncmp(argv[i], p, len) != 0)
            return false;
        p += len + (p[len] == ' ');
    }
    return true;
}

static const struct cli_cmd *cmd_find(int argc, char *const *argv)
{
    const struct cli_cmd *best = NULL;
    for (size_t i = 0; i < N_OF(commands); i++) {
        if (words_match(commands[i].words, argc, argv) &&
            (best == NULL || word_count(commands[i].words) > word_count(best->words)))
            best = &commands[i];
    }
    return best;
}

/* Whether group ("app") is the first word of some command. */
static bool is_group(const char *group)
{
    size_t len = strlen(group);
    for (size_t i = 0; i < N_OF(commands); i++) {
        if (strncmp(commands[i].words, group, len) == 0 && commands[i].words[len] == ' ')
            return true;
    }
    return false;
}

/* Help goes to stdout, the error line to stderr; a failed write to
 * either is caught once, by the ferror check of the caller (help) or not
 * at all (the error line has nowhere else to go). */
__attribute__((format(printf, 2, 3))) static void put(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vfprintf(f, fmt, ap);
    va_end(ap);
}

/* Exit status after printing help: 1 when stdout could not take it. */
static int help_done(void)
{
    return fflush(stdout) == 0 && !ferror(stdout) ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

/* Prints the commands whose name starts with group + ' ' (all for NULL). */
static void help_commands(FILE *f, const char *group)
{
    size_t len = group != NULL ? strlen(group) : 0;
    put(f, "Commands:\n");
    for (size_t i = 0; i < N_OF(commands); i++) {
        const struct cli_cmd *c = &commands[i];
        if (group != NULL && (strncmp(c->words, group, len) != 0 || c->words[len] != ' '))
            continue;
        put(f, "  ff %s%s%s\n      %s\n", c->words, c->operands[0] != '\0' ? " " : "",
            c->operands, c->summary);
    }
}

static void help_overview(FILE *f)
{
    put(f, "usage: ff [--json] [--env-file FILE] COMMAND [OPERANDS] [OPTIONS]\n\n"
           "The Fleetforge client: talks to ff-builder's API over HTTPS.\n\n");
    help_commands(f, NULL);
    put(f, "\n%s\n%s", global_help, config_help);
}

static void help_command(FILE *f, const struct cli_cmd *c)
{
    put(f, "usage: ff %s%s%s\n\n%s.\n", c->words, c->operands[0] != '\0' ? " " : "",
        c->operands, c->summary);
    if (c->n_opts > 0)
        put(f, "\nOptions:\n");
    for (size_t i = 0; i < c->n_opts; i++) {
        const struct cli_opt *o = &c->opts[i];
        put(f, "  %s%s%-*s %s\n", o->name, o->value != NULL ? " " : "",
            (int)(OPT_COLUMN - strlen(o->name) - (o->value != NULL ? 1 : 0)),
            o->value != NULL ? o->value : "", o->help);
    }
    put(f, "\n%s", global_help);
}

/* Prints "ff: <cmd>: <msg>" and returns the exit status for code. */
static int fail(const char *cmd, const struct cli_cmd *c, int code, const struct ff_err *err)
{
    const char *msg = err->msg[0] != '\0' ? err->msg : ff_err_name(code);
    if (cmd != NULL)
        put(stderr, "ff: %s: %s", cmd, msg);
    else
        put(stderr, "ff: %s", msg);
    if (code == CLI_EUSAGE && c != NULL)
        put(stderr, " (usage: ff %s%s%s)", c->words, c->operands[0] != '\0' ? " " : "",
            c->operands);
    else if (code == CLI_EUSAGE)
        put(stderr, " (see ff --help)");
    put(stderr, "\n");
    return cli_exit_status(code);
}

static bool any_help(int argc, char *const *argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

/* No command matched argv: help or a usage error. */
static int no_command(const struct cli_args *g, int argc, char *const *argv)
{
    struct ff_err err;
    bool help = g->help || any_help(argc, argv);
    if (argc == 0 || (argv[0][0] == '-' && help)) {
        if (!help) {
            (void)ff_err_set(&err, CLI_EUSAGE, "missing command");
            return fail(NULL, NULL, CLI_EUSAGE, &err);
        }
        help_overview(stdout);
        return help_done();
    }
    char shown[FF_STR_QUOTE_SIZE];
    ff_str_quote(argv[0], strlen(argv[0]), shown);
    if (!is_group(argv[0])) {
        (void)ff_err_set(&err, CLI_EUSAGE, "unknown command \"%s\"", shown);
        return fail(NULL, NULL, CLI_EUSAGE, &err);
    }
    if (help) {
        put(stdout, "usage: ff %s COMMAND …\n\n", shown);
        help_commands(stdout, argv[0]);
        return help_done();
    }
    if (argc > 1) {
        char sub[FF_STR_QUOTE_SIZE];
        ff_str_quote(argv[1], strlen(argv[1]), sub);
        (void)ff_err_set(&err, CLI_EUSAGE, "unknown command \"%s\"", sub);
    } else {
        (void)ff_err_set(&err, CLI_EUSAGE, "missing command");
    }
    put(stderr, "ff: %s: %s (see ff %s --help)\n", shown, err.msg, shown);
    return CLI_EXIT_USAGE;
}

static const char *env_get(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

int main(int argc, char **argv)
{
    struct cli_args g, a;
    struct ff_err err;
    int used = 0;
    ff_err_clear(&err);
    /* The libraries' event lines (a retried request …) are for daemons'
     * logs; a person sees the one error line, unless FF_LOG asks for more. */
    enum ff_log_level level = FF_LOG_ERROR;
    const char *log = env_get("FF_LOG");
    if (log != NULL && ff_log_level_parse(log, &level) != 0)
        level = FF_LOG_ERROR;
    ff_log_open("ff", level);
    args_init(&g, NULL, 0);
    int rc = args_parse(&g, argc - 1, argv + 1, true, &used, &err);
    if (rc != 0)
        return fail(NULL, NULL, rc, &err);
    int rest_n = argc - 1 - used;
    char **rest = argv + 1 + used;
    const struct cli_cmd *cmd = cmd_find(rest_n, rest);
    if (cmd == NULL)
        return no_command(&g, rest_n, rest);
    int skip = (int)word_count(cmd->words);
    args_init(&a, cmd->opts, cmd->n_opts);
    a.json = g.json;
    a.help = g.help;
    a.env_file = g.env_file;
    rc = args_parse(&a, rest_n - skip, rest + skip, false, &used, &err);
    if (rc == 0 && a.help) {
        help_command(stdout, cmd);
        return help_done();
    }
    if (rc == 0 && a.n_pos < cmd->min_pos)
        rc = ff_err_set(&err, CLI_EUSAGE, "missing operand");
    if (rc == 0 && a.n_pos > cmd->max_pos)
        rc = ff_err_set(&err, CLI_EUSAGE, "unexpected operand \"%s\"", a.pos[cmd->max_pos]);
    if (rc != 0)
        return fail(cmd->words, cmd, rc, &err);

    struct cli c = {.cmd = cmd->words, .json = a.json, .out = stdout};
    const struct cli_env env = {
        .api_url = env_get("FF_API_URL"),
        .ca = env_get("FF_CA"),
        .token = env_get("FF_TOKEN"),
        .xdg_config_home = env_get("XDG_CONFIG_HOME"),
        .home = env_get("HOME"),
    };
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        (void)ff_err_set(&err, FF_ENOMEM, "cannot initialise libcurl");
        return fail(cmd->words, cmd, FF_ENOMEM, &err);
    }
    rc = config_load(&env, a.env_file, (cmd->flags & NEEDS_TOKEN) != 0, &c.cfg, &err);
    if (rc == 0)
        rc = cmd->run(&c, &a, &err);
    if (rc == 0 && fflush(stdout) != 0)
        rc = ff_err_set(&err, FF_EIO, "cannot write the output");
    api_release(&c);
    config_release(&c.cfg);
    curl_global_cleanup();
    return rc != 0 ? fail(cmd->words, cmd, rc, &err) : CLI_EXIT_OK;
}
