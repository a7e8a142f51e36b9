/* The one thing a client may ask to run: git's own request over ssh,
 *
 *   git-receive-pack '<owner>/<app>.git'      (git push)
 *   git-upload-pack '<owner>/<app>.git'       (git clone, git fetch)
 *
 * parsed strictly: one space, the path in single quotes as git writes it,
 * an optional leading '/' (ssh://host/owner/app.git URLs) and an optional
 * ".git". Nothing here reaches a shell; the names are checked against the
 * builder's grammar, so they are safe as path components. */
#include "gitd.h"

#include "ff_str.h"

#include <string.h>

static const struct {
    const char *name;
    enum command_verb verb;
} verbs[] = {
    {"git-receive-pack", COMMAND_RECEIVE_PACK},
    {"git-upload-pack", COMMAND_UPLOAD_PACK},
};

static bool lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool command_owner_valid(const char *s, size_t len)
{
    if (len == 0 || len > COMMAND_OWNER_MAX)
        return false;
    /* One separator at a time, never first or last (decode.c's rule). */
    bool after_sep = true;
    for (size_t i = 0; i < len; i++) {
        bool sep = s[i] == '.' || s[i] == '_' || s[i] == '-';
        if (!lower_alnum(s[i]) && !(sep && !after_sep))
            return false;
        after_sep = sep;
    }
    return !after_sep;
}

bool command_app_valid(const char *s, size_t len)
{
    if (len == 0 || len > COMMAND_APP_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!lower_alnum(s[i]) && !(i > 0 && s[i] == '-'))
            return false;
    }
    return true;
}

const char *command_verb_name(enum command_verb verb)
{
    return verb == COMMAND_RECEIVE_PACK ? "git-receive-pack" : "git-upload-pack";
}

static int bad_path(const char *path, size_t len, const char *why, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(path, len, q);
    return ff_err_set(err, FF_EINVAL, "repository \"%s\": %s", q, why);
}

/* [/]<owner>/<app>[.git] */
static int parse_path(const char *path, size_t len, struct command *out, struct ff_err *err)
{
    const char *p = path;
    size_t n = len;
    if (n > 0 && p[0] == '/') {
        p++;
        n--;
    }
    const char *slash = memchr(p, '/', n);
    if (slash == NULL)
        return bad_path(path, len, "expected '<owner>/<app>.git'", err);
    size_t owner_len = (size_t)(slash - p);
    const char *app = slash + 1;
    size_t app_len = n - owner_len - 1;
    if (app_len > 4 && memcmp(app + app_len - 4, ".git", 4) == 0)
        app_len -= 4;
    if (!command_owner_valid(p, owner_len))
        return bad_path(path, len,
                        "the owner must be a user name: words of [a-z0-9] joined "
                        "by single '.', '_' or '-', at most 64 characters; expected "
                        "'<owner>/<app>.git'",
                        err);
    if (!command_app_valid(app, app_len))
        return bad_path(path, len,
                        "the app must be a name of [a-z0-9-] starting with a "
                        "letter or digit, at most 63 characters; expected '<owner>/<app>.git'",
                        err);
    memcpy(out->owner, p, owner_len);
    out->owner[owner_len] = '\0';
    memcpy(out->app, app, app_len);
    out->app[app_len] = '\0';
    return 0;
}

int command_parse(const char *text, size_t len, struct command *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    if (len > COMMAND_TEXT_MAX)
        return ff_err_set(err, FF_ETOOBIG,
                          "the command is longer than %d bytes: only "
                          "git-receive-pack and git-upload-pack run here",
                          COMMAND_TEXT_MAX);
    const char *sp = memchr(text, ' ', len);
    size_t word = sp != NULL ? (size_t)(sp - text) : len;
    size_t i = 0;
    for (; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strlen(verbs[i].name) == word && memcmp(verbs[i].name, text, word) == 0)
            break;
    }
    if (i == sizeof(verbs) / sizeof(verbs[0])) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(text, word, q);
        return ff_err_set(err, FF_EINVAL,
                          "command \"%s\" is not allowed: only "
                          "git-receive-pack and git-upload-pack run here",
                          q);
    }
    out->verb = verbs[i].verb;
    const char *rest = text + word;
    size_t rest_len = len - word;
    /* " '" path "'" */
    if (rest_len < 3 || rest[0] != ' ' || rest[1] != '\'' || rest[rest_len - 1] != '\'' ||
        memchr(rest + 2, '\'', rest_len - 3) != NULL)
        return ff_err_set(err, FF_EINVAL,
                          "%s: expected one argument in single quotes, '<owner>/<app>.git'",
                          verbs[i].name);
    return parse_path(rest + 2, rest_len - 3, out, err);
}
