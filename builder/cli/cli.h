/* The ff command-line client: private header of builder/cli/.
 *
 * main.c parses the global options, finds the command in its table and
 * runs it; args.c parses a command's options and operands; config.c
 * resolves where the API is and which token to send, and keeps the token
 * file; api.c sends requests and turns answers into FF_E* codes; table.c
 * and output.c print; prompt.c reads passwords and codes; cmd_*.c are the
 * command groups. Every run function returns 0 or a negative code with
 * err filled, and main turns that into one line on stderr and an exit
 * status (cli_exit_status). */
#ifndef FF_CLI_H
#define FF_CLI_H

#include "ff_err.h"
#include "ff_http_client.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- exit statuses (documented in ff --help) ---------------------------- */

enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_ERROR = 1,    /* the server refused, or a local failure */
    CLI_EXIT_USAGE = 2,    /* bad command line */
    CLI_EXIT_AUTH = 3,     /* authentication needed: no token, or 401 */
    CLI_EXIT_NOTFOUND = 4, /* the server answered 404 */
    CLI_EXIT_NET = 5       /* connection, TLS or timeout failure */
};

/* A usage error: bad operands or options. Outside the FF_E* range on
 * purpose, because a server's 400 (FF_EINVAL) is exit 1, not 2. */
#define CLI_EUSAGE (-100)

/* Exit status for a run function's result. */
int cli_exit_status(int code);

/* ---- args.c: options and operands ---------------------------------------- */

/* Most operands any command takes ("app members O/N add USER" has 3). */
#define CLI_POS_MAX 8
/* Most options one command declares. */
#define CLI_OPTS_MAX 8

struct cli_opt {
    const char *name;  /* "--name" */
    const char *value; /* "N" for an option with a value; NULL for a flag */
    const char *help;
};

/* A parsed command line. Strings are borrowed from argv. */
struct cli_args {
    const char *pos[CLI_POS_MAX]; /* operands in order */
    size_t n_pos;
    const struct cli_opt *opts;     /* the command's options (borrowed) ... */
    size_t n_opts;
    const char *vals[CLI_OPTS_MAX]; /* ... and their values ("" for a set flag; NULL: absent) */
    /* Global options, accepted before and after the command words. */
    bool json;
    bool help;
    const char *env_file;
};

/* Starts an empty parse for a command with the n options of opts
 * (n <= CLI_OPTS_MAX, else FF_BUG). */
void args_init(struct cli_args *a, const struct cli_opt *opts, size_t n);

/* Parses argv[0..argc) into a: "--opt value", "--opt=value", flags, the
 * global --json, --env-file FILE, --help/-h, and "--" to end options.
 * With stop_at_operand, stops at the first operand and sets *used to its
 * index (for the options before the command words); otherwise every
 * operand is collected and *used is argc. Errors (CLI_EUSAGE, message
 * naming the option): unknown option, missing value, value given to a
 * flag, option repeated, more than CLI_POS_MAX operands. */
int args_parse(struct cli_args *a, int argc, char *const *argv, bool stop_at_operand, int *used,
               struct ff_err *err);

/* Value of option name ("" for a set flag), or NULL when absent. Asking
 * for an option the command did not declare is a programmer error. */
const char *args_value(const struct cli_args *a, const char *name);

/* Option name as an integer in [min, max]: 0 with *out set, FF_ENOTFOUND
 * when absent (*out unchanged), CLI_EUSAGE when not such a number. */
int args_int(const struct cli_args *a, const char *name, int64_t min, int64_t max,
             int64_t *out, struct ff_err *err);

/* --limit N as a count of items, 0 when absent (no limit). CLI_EUSAGE
 * unless 1..CLI_LIST_ITEMS_MAX. */
int args_limit(const struct cli_args *a, int64_t *out, struct ff_err *err);

/* s as a positive integer id; CLI_EUSAGE naming what ("token id") else. */
int args_id(const char *s, const char *what, int64_t *out, struct ff_err *err);

/* Splits "OWNER/NAME" into malloc'd parts the caller frees. CLI_EUSAGE
 * unless there is exactly one '/' with text on both sides; FF_ENOMEM. */
int args_app(const char *s, char **owner, char **name, struct ff_err *err);

/* ---- config.c: where the API is and which token to send ------------------ */

/* Longest config file, env file or token file read: a few short lines. */
#define CLI_FILE_MAX 65536
/* Longest token accepted from a file or the environment; ours are ~50
 * characters. */
#define CLI_TOKEN_MAX 4096

/* What the process environment says; main fills it from getenv, tests
 * fill it by hand. NULL or "" means unset. */
struct cli_env {
    const char *api_url;         /* FF_API_URL */
    const char *ca;              /* FF_CA */
    const char *token;           /* FF_TOKEN */
    const char *xdg_config_home; /* XDG_CONFIG_HOME */
    const char *home;            /* HOME */
};

enum cli_token_source {
    CLI_TOKEN_NONE = 0,
    CLI_TOKEN_ENV,      /* FF_TOKEN */
    CLI_TOKEN_STORE,    /* the token file ff login wrote */
    CLI_TOKEN_ENV_FILE  /* FF_ADMIN_TOKEN of --env-file */
};

struct cli_config {
    char *dir;     /* the config directory (…/ff), or NULL when HOME is unknown */
    char *api_url; /* without a trailing '/', or NULL */
    char *ca;      /* CA file, or NULL: the system bundle */
    char *token;   /* a secret: wiped by config_release; NULL when none */
    enum cli_token_source token_source;
};

/* Resolves the configuration. Each value comes from the first place that
 * has it: the environment; then <dir>/config ("api_url = …", "ca = …"
 * lines) and <dir>/token; then env_file (FF_API_URL, FF_CA, FF_ADMIN_TOKEN,
 * shell quoting as deploy/farm writes it) when not NULL. Without
 * want_token no token is looked for (ff login needs none, and must work
 * when the stored one is unusable). <dir> is
 * $XDG_CONFIG_HOME/ff, else $HOME/.config/ff. A missing config or token
 * file is not an error. On success *out holds copies (config_release);
 * on error it is zeroed. Errors: FF_EINVAL (malformed file: file,
 * line and what was expected; a URL that is not https://), FF_EIO (a file
 * cannot be read; env_file missing), FF_EDENIED (the token file is
 * readable by others or not ours), FF_ETOOBIG, FF_ENOMEM. */
int config_load(const struct cli_env *env, const char *env_file, bool want_token,
                struct cli_config *out, struct ff_err *err);

/* Frees what c holds, wiping the token. Safe twice and on a zeroed c. */
void config_release(struct cli_config *c);

/* Parses key=value text (name for messages; '#' comments, blank lines,
 * optional single or double quotes around the value). Calls fn for each
 * pair; fn returns 0 or a negative code to stop with. Errors: FF_EINVAL
 * (a line without '=', an unterminated quote; file and line named). */
typedef int (*config_kv_fn)(void *ctx, const char *key, const char *value, unsigned line,
                            struct ff_err *err);
int config_parse_kv(const char *text, const char *name, config_kv_fn fn, void *ctx,
                    struct ff_err *err);

/* Reads <dir>/token into *out (ff_secret_free). FF_ENOTFOUND when there is
 * none; FF_EDENIED when it is not a regular file of ours with mode 0600
 * or stricter (a token others can read must not be used); FF_EINVAL when
 * empty or not one line; FF_ETOOBIG; FF_EIO. */
int config_token_read(const char *dir, char **out, struct ff_err *err);

/* Stores token in <dir>/token with mode 0600 and no window in which it is
 * readable by others (a temporary file, then rename), creating dir and
 * missing parents with mode 0700 and tightening dir to 0700 if looser.
 * Errors: FF_EINVAL (token empty or with a newline), FF_EIO. */
int config_token_write(const char *dir, const char *token, struct ff_err *err);

/* Reads the file at path, at most max bytes, into *out (NUL-terminated;
 * the caller frees it). Errors: FF_ENOTFOUND (no such file; no message),
 * FF_ETOOBIG, FF_EINVAL (it holds a NUL byte), FF_EIO. */
int config_read_text(const char *path, size_t max, char **out, struct ff_err *err);

/* Removes <dir>/token. FF_ENOTFOUND when there was none; FF_EIO. */
int config_token_remove(const char *dir, struct ff_err *err);

/* ---- the command context -------------------------------------------------- */

struct cli {
    struct cli_config cfg;
    struct ff_http_client *http; /* made by api.c at the first request */
    const char *cmd;             /* "app create": for messages */
    bool json;                   /* --json: print the server's JSON */
    FILE *out;                   /* where results go (stdout) */
};

/* ---- api.c: requests ------------------------------------------------------ */

/* Largest response body read: a page of 200 items is well under 1 MiB. */
#define CLI_RESPONSE_MAX (8u << 20)
/* Items a server's page may hold (its PAGE_MAX), and the page size asked. */
#define CLI_PAGE_LIMIT 200
/* Items a list command gathers before it refuses to go on: a bound on
 * memory against a server that never ends its pages. */
#define CLI_LIST_ITEMS_MAX 100000
/* Whole-request deadline: API answers are small, a minute is a dead peer. */
#define CLI_HTTP_TIMEOUT_MS 60000L
/* Retries of an idempotent request: one rides out a restart, more only
 * makes "server down" (exit 5) slow to report. */
#define CLI_HTTP_RETRIES 1u
/* Longest Retry-After waited for: a person is waiting. */
#define CLI_HTTP_RETRY_AFTER_MAX_MS 5000L
/* Room for the "code" of an error answer ("otp_required"). */
#define CLI_CODE_SIZE 32

struct api_req {
    const char *method;
    const char *path;   /* from "/v1/…", already escaped (api_pathf) */
    const json_t *body; /* NULL: no body */
    bool anonymous;     /* send no token (login) */
};

/* Sends r to the configured API. A 2xx answer returns 0 with *out the
 * parsed body (NULL for an empty one); out may be NULL to drop it. Any
 * other status returns (with err holding the server's message, and code,
 * when not NULL, its "code"): 400 FF_EINVAL, 401 FF_EAUTH, 403 FF_EDENIED,
 * 404 FF_ENOTFOUND, 409 FF_EEXIST, 429 FF_EBUSY, others FF_EIO. Failures
 * to talk: FF_ENET or FF_ETIMEOUT (exit 5); no API URL: FF_EINVAL; no
 * token for a request that needs one: FF_EAUTH; a 2xx body that is not
 * JSON: FF_EINVAL. */
int api_do(struct cli *c, const struct api_req *r, json_t **out, char code[CLI_CODE_SIZE],
           struct ff_err *err);

/* Shorthands of api_do with a token, no code. */
int api_get(struct cli *c, const char *path, json_t **out, struct ff_err *err);
int api_send(struct cli *c, const char *method, const char *path, const json_t *body,
             json_t **out, struct ff_err *err);

/* GETs a list at path, following "next" until the end or until limit
 * items (0: no limit). *out is {"items":[…],"next":<the server's next
 * after the last page read, null at the end>}, owned by the caller.
 * Errors: those of api_do; FF_EINVAL for a page that is not
 * {"items":[…],"next":id|null} or whose next does not advance;
 * FF_ETOOBIG beyond CLI_LIST_ITEMS_MAX items. */
int api_list(struct cli *c, const char *path, int64_t limit, json_t **out, struct ff_err *err);

/* Builds a path from fmt, whose only conversion is %s, each argument
 * percent-encoded as one path segment (everything but A-Z a-z 0-9 - . _ ~).
 * Returns a malloc'd string the caller frees, or NULL when out of memory. */
char *api_pathf(const char *fmt, ...);

/* The path "/v1/apps/<owner>/<name><suffix>" for the OWNER/NAME operand
 * app, where suffix may hold one %s for extra (escaped like the rest).
 * *out is the caller's. Errors: CLI_EUSAGE (app is not OWNER/NAME),
 * FF_ENOMEM. */
int api_app_path(const char *app, const char *suffix, const char *extra, char **out,
                 struct ff_err *err);

/* rc, with what (the operand named) put before the message of a 404:
 * the server says only "app not found". */
int api_about(int rc, const char *what, struct ff_err *err);

/* Overwrites the string member key of obj (a secret the server sent or we
 * are about to send) with zeros before the object is freed. */
void api_wipe_member(json_t *obj, const char *key);

/* Frees the HTTP client. NULL-safe on c->http. */
void api_release(struct cli *c);

/* ---- table.c: human output ----------------------------------------------- */

enum table_kind {
    TABLE_TEXT, /* strings as they are, numbers in decimal, arrays comma-joined */
    TABLE_TIME  /* Unix seconds as UTC ISO 8601 ("2024-05-01T12:00:00Z") */
};

struct table_col {
    const char *title; /* "NAME" */
    const char *key;   /* member of each item */
    const char *key2;  /* when set, the cell is "<key>/<key2>" (owner/name) */
    enum table_kind kind;
};

/* "YYYY-MM-DDTHH:MM:SSZ" and its NUL. */
#define TABLE_TIME_SIZE 21

/* Formats t (Unix seconds) as UTC ISO 8601. Returns 0, or FF_ERANGE for a
 * time gmtime cannot express or that does not fit in four digits. */
int table_time(int64_t t, char out[TABLE_TIME_SIZE]);

/* Text of one cell of obj, malloc'd for the caller: absent or null "-",
 * false/true "no"/"yes", objects as compact JSON. Every control character
 * (C0, DEL, C1) and invalid UTF-8 byte becomes '?', so a server cannot
 * send escape sequences to the terminal. Errors: FF_ENOMEM. */
int table_cell(const json_t *obj, const struct table_col *col, char **out, struct ff_err *err);

/* A malloc'd copy of s with every control character and invalid UTF-8
 * byte replaced by '?' (see table_cell), or NULL when out of memory. */
char *table_clean(const char *s);

/* Columns of s on a terminal: UTF-8 code points (wide characters are
 * counted as one). */
size_t table_width(const char *s);

/* Prints items (an array of objects) as a table with a header line,
 * columns separated by two spaces and aligned, no trailing spaces.
 * Errors: FF_EINVAL (an item is not an object), FF_ENOMEM, FF_EIO. */
int table_print(FILE *f, const struct table_col *cols, size_t n, const json_t *items,
                struct ff_err *err);

/* Prints obj as "title: value" lines with aligned values. Same errors. */
int table_print_record(FILE *f, const struct table_col *fields, size_t n, const json_t *obj,
                       struct ff_err *err);

/* ---- output.c: what a command prints -------------------------------------- */

/* With --json, v as indented JSON; else v as a record of fields. */
int out_record(struct cli *c, const json_t *v, const struct table_col *fields, size_t n,
               struct ff_err *err);

/* With --json, the page as api_list made it; else its items as a table. */
int out_list(struct cli *c, const json_t *page, const struct table_col *cols, size_t n,
             struct ff_err *err);

/* v as indented JSON and a newline. */
int out_json(struct cli *c, const json_t *v, struct ff_err *err);

/* A line of text for people (skipped with --json, where the JSON speaks;
 * commands that answer 204 print nothing then). */
int out_line(struct cli *c, struct ff_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- prompt.c: secrets and codes from a person or a pipe ------------------ */

/* Longest line read: a password (the server allows 1024 bytes). */
#define CLI_SECRET_MAX 1024

/* Reads one line: on a terminal, after printing label on stderr, with
 * echo off unless echo is set (echo is restored even if interrupted);
 * otherwise from standard input without a prompt. The line ends at '\n'
 * (a '\r' before it is dropped). *out is the caller's (ff_secret_free).
 * Errors: FF_EINVAL (end of input before any character; what names what
 * was expected), FF_ETOOBIG (longer than CLI_SECRET_MAX), FF_EIO. */
int prompt_line(const char *label, const char *what, bool echo, char **out,
                struct ff_err *err);

/* Whether standard input is a terminal. */
bool prompt_is_tty(void);

/* ---- commands (cmd_*.c) ---------------------------------------------------- */

typedef int (*cli_run_fn)(struct cli *c, const struct cli_args *a, struct ff_err *err);

int cmd_login(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_logout(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_whoami(struct cli *c, const struct cli_args *a, struct ff_err *err);

int cmd_keys_add(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_keys_list(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_keys_rm(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_tokens_create(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_tokens_list(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_tokens_revoke(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_2fa_enable(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_2fa_disable(struct cli *c, const struct cli_args *a, struct ff_err *err);

int cmd_app_create(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_app_list(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_app_rm(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_app_show(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_app_members(struct cli *c, const struct cli_args *a, struct ff_err *err);

int cmd_pkey_create(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_pkey_list(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_pkey_revoke(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_devices_list(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_devices_show(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_devices_rm(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_env_set(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_env_list(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_env_rm(struct cli *c, const struct cli_args *a, struct ff_err *err);

int cmd_audit(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_users_create(struct cli *c, const struct cli_args *a, struct ff_err *err);
int cmd_workers_join_token(struct cli *c, const struct cli_args *a, struct ff_err *err);

#endif
