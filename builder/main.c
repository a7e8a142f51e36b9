/* ff-builder: the farm's control plane. It knows who is who and mints
 * every registry token.
 *
 *   ff-builder -f builder.ini [-d] [-n]            serve the API (-n: check config)
 *   ff-builder -f builder.ini init [--admin NAME]  create the first admin
 *   ff-builder -f builder.ini service-key gitd     (re)issue ff-gitd's key
 *   ff-builder pki-init --dir DIR [--name NAME]... bootstrap the farm's keys
 *
 * Start-up order: read the configuration, the TLS key and the token-signing
 * key (as root when started as root), drop to [server] user, then open the
 * database, so every file the builder creates belongs to that user, and
 * only then serve.
 *
 * Registry clients (docker login, skopeo --creds) authenticate to /v2/token
 * with their user name and one of their API or session tokens as the
 * password, never the account password, so that a second factor required
 * at login cannot be bypassed through the registry. */
#include "builder.h"

#include "ff_base64.h"
#include "ff_daemon.h"
#include "ff_log.h"
#include "ff_pki.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names given with --name; the certificate always covers localhost too. */
#define PKI_NAMES_MAX 16

static void usage(FILE *out)
{
    (void)fprintf(out,
            "usage: ff-builder -f FILE [-d] [-n]            serve (-n: check config, exit)\n"
            "       ff-builder -f FILE init [--admin NAME]  create the first admin\n"
            "       ff-builder -f FILE service-key gitd     issue ff-gitd's service key\n"
            "       ff-builder [-d] pki-init --dir DIR [--name NAME]...\n"
            "\n"
            "  init       create the first admin with a random password and an API\n"
            "             token, printed once as FF_ADMIN_USER=, FF_ADMIN_PASSWORD= and\n"
            "             FF_ADMIN_TOKEN= lines; refused (exit 3) when an admin exists.\n"
            "  service-key  issue the service key of ff-gitd, printed once as\n"
            "             FF_GITD_KEY=; a new key replaces (revokes) the previous one.\n"
            "  pki-init   create whatever is missing in DIR: a private CA, a server\n"
            "             certificate for 127.0.0.1, ::1, localhost and every NAME, the\n"
            "             registry-token key pair and the image-signing key pair.\n"
            "             Existing files are never replaced.\n");
}

static const struct {
    unsigned flag;
    const char *file;
} pki_files[] = {
    {FF_PKI_CREATED_CA_KEY, "ca.key"},
    {FF_PKI_CREATED_CA_CERT, "ca.crt"},
    {FF_PKI_CREATED_SERVER_KEY, "server.key"},
    {FF_PKI_CREATED_SERVER_CERT, "server.crt"},
    {FF_PKI_CREATED_TOKEN_KEY, "token.key"},
    {FF_PKI_CREATED_TOKEN_PUB, "token.pub"},
    {FF_PKI_CREATED_SIGNING_KEY, "signing.key"},
    {FF_PKI_CREATED_SIGNING_PUB, "signing.pub"},
};

static int cmd_pki_init(int argc, char **argv)
{
    const char *dir = NULL;
    const char *names[PKI_NAMES_MAX];
    size_t n_names = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            if (n_names == PKI_NAMES_MAX) {
                (void)fprintf(stderr, "ff-builder: pki-init: more than %d --name\n", PKI_NAMES_MAX);
                return 2;
            }
            names[n_names++] = argv[++i];
        } else {
            (void)fprintf(stderr, "ff-builder: pki-init: unexpected argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (dir == NULL) {
        (void)fprintf(stderr, "ff-builder: pki-init: --dir is required\n");
        return 2;
    }
    unsigned created = 0;
    struct ff_err err;
    if (ff_pki_bootstrap(dir, names, n_names, &created, &err) != 0) {
        (void)fprintf(stderr, "ff-builder: pki-init: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < sizeof(pki_files) / sizeof(pki_files[0]); i++) {
        if (created & pki_files[i].flag)
            printf("pki-init: created %s/%s\n", dir, pki_files[i].file);
    }
    if (created == 0)
        printf("pki-init: %s already complete, nothing created\n", dir);
    return 0;
}

/* Random bytes in a generated admin password: 192 bits, base64url-encoded
 * into 32 characters, above FF_SECRET_PASSWORD_MIN. */
#define ADMIN_PASSWORD_BYTES 24
/* Exit status of init when an admin exists already, so that `make up` can
 * tell "done before" from a failure. */
#define INIT_EXIT_ADMIN_EXISTS 3
/* Admin created by init when --admin is not given. */
#define ADMIN_DEFAULT_NAME "admin"

static void builder_close(struct builder *b)
{
    ff_http_server_free(b->http);
    db_free(b->db);
    ff_jwt_key_free(b->token_key);
    ff_ratelimit_free(b->rl_identity);
    ff_ratelimit_free(b->rl_ip);
    ff_secret_free(b->dummy_hash);
    config_release(&b->cfg);
}

static int http_new(struct builder *b, struct ff_err *err)
{
    struct ff_http_server_config hc;
    ff_daemon_http_config(b->cfg.conf, &hc);
    return ff_http_server_new(&hc, &b->http, err);
}

static int limits_new(struct builder *b, struct ff_err *err)
{
    const struct ff_conf *c = b->cfg.conf;
    size_t keys = (size_t)ff_conf_int(c, "limits", "tracked_keys");
    int rc = ff_ratelimit_new((double)ff_conf_int(c, "limits", "identity_rate"),
                              (double)ff_conf_int(c, "limits", "identity_burst"), keys,
                              &b->rl_identity, err);
    if (rc == 0)
        rc = ff_ratelimit_new((double)ff_conf_int(c, "limits", "ip_rate"),
                              (double)ff_conf_int(c, "limits", "ip_burst"), keys, &b->rl_ip,
                              err);
    return rc;
}

/* A hash of a random password, verified against for unknown user names so
 * that a failed login costs the same whether or not the user exists. */
static int dummy_hash_new(struct builder *b, struct ff_err *err)
{
    unsigned char raw[ADMIN_PASSWORD_BYTES];
    int rc = ff_secret_random(raw, sizeof(raw), err);
    if (rc != 0)
        return rc;
    char *pw = ff_base64_encode_new(raw, sizeof(raw), true);
    ff_secret_wipe(raw, sizeof(raw));
    if (pw == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    rc = ff_secret_password_hash(pw, &b->dummy_hash, err);
    ff_secret_free(pw);
    return rc;
}

static int cmd_serve(struct builder *b, bool check_only)
{
    struct ff_err err;
    const struct ff_conf *c = b->cfg.conf;
    if (limits_new(b, &err) != 0 ||
        ff_jwt_key_load(ff_conf_string(c, "tokens", "key"), NULL, true, &b->token_key,
                        &err) != 0 ||
        http_new(b, &err) != 0)
        ff_fatal("%s", err.msg);
    if (check_only) {
        printf("ff-builder: configuration ok\n");
        return 0;
    }
    if (ff_daemon_drop_privileges(ff_conf_string(c, "server", "user"), &err) != 0)
        ff_fatal("%s", err.msg);
    if (db_open(ff_conf_string(c, "storage", "db"), &b->db, &err) != 0 ||
        dummy_hash_new(b, &err) != 0 || routes_register(b, &err) != 0)
        ff_fatal("%s", err.msg);
    ff_daemon_signals_block();
    if (ff_http_server_start(b->http, &err) != 0)
        ff_fatal("%s", err.msg);
    ff_log_info(NULL, "start", "port=%u kid=%s", ff_http_server_port(b->http),
                ff_jwt_key_kid(b->token_key));
    int sig = ff_daemon_signal_wait();
    ff_log_info(NULL, "stopping", "signal=%d", sig);
    int rc = ff_http_server_stop(b->http, (unsigned)ff_conf_int(c, "server", "shutdown_grace"));
    ff_log_info(NULL, "stopped", "graceful=%s", rc == 0 ? "yes" : "no");
    return 0;
}

/* Creates the admin and its first API token; prints both once. */
static int admin_create(struct builder *b, const char *name, struct ff_err *err)
{
    unsigned char raw[ADMIN_PASSWORD_BYTES];
    char *password = NULL, *pw_hash = NULL, *token = NULL;
    char token_hash[FF_SECRET_HASH_HEX_SIZE];
    int64_t uid = 0;
    bool exists = false;
    int rc = db_admin_exists(b->db, &exists, err);
    if (rc == 0 && exists)
        rc = ff_err_set(err, FF_EEXIST, "an admin exists already; init runs only once");
    if (rc == 0)
        rc = ff_secret_random(raw, sizeof(raw), err);
    if (rc == 0) {
        password = ff_base64_encode_new(raw, sizeof(raw), true);
        ff_secret_wipe(raw, sizeof(raw));
        if (password == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = ff_secret_password_hash(password, &pw_hash, err);
    if (rc == 0)
        rc = ff_secret_token_new(USER_TOKEN_PREFIX, &token, token_hash, err);
    if (rc == 0)
        rc = ff_db_begin(db_handle(b->db), err);
    if (rc == 0) {
        rc = db_user_create(b->db, name, pw_hash, ROLE_ADMIN, &uid, err);
        if (rc == 0)
            rc = db_token_create(b->db, uid, "init", token_hash, TOKEN_API, 0, NULL, err);
        if (rc == 0)
            rc = db_audit(b->db, name, NULL, "user.create", "role=admin by=init", err);
        if (rc == 0)
            rc = ff_db_commit(db_handle(b->db), err);
        else
            (void)ff_db_rollback(db_handle(b->db), NULL);
    }
    if (rc == 0) {
        printf("FF_ADMIN_USER=%s\nFF_ADMIN_PASSWORD=%s\nFF_ADMIN_TOKEN=%s\n", name, password,
               token);
        if (fflush(stdout) != 0)
            rc = ff_err_set(err, FF_EIO, "cannot write the credentials to stdout");
    }
    ff_secret_free(password);
    ff_secret_free(pw_hash);
    ff_secret_free(token);
    return rc;
}

static int cmd_init(struct builder *b, int argc, char **argv)
{
    const char *name = ADMIN_DEFAULT_NAME;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc) {
            name = argv[++i];
            continue;
        }
        (void)fprintf(stderr, "ff-builder: init: bad argument \"%s\"\n", argv[i]);
        return 2;
    }
    struct ff_err err;
    const struct ff_conf *c = b->cfg.conf;
    if (user_name_check(name, &err) != 0 ||
        ff_daemon_drop_privileges(ff_conf_string(c, "server", "user"), &err) != 0 ||
        db_open(ff_conf_string(c, "storage", "db"), &b->db, &err) != 0 ||
        admin_create(b, name, &err) != 0) {
        (void)fprintf(stderr, "ff-builder: init: %s\n", err.msg);
        return err.code == FF_EEXIST ? INIT_EXIT_ADMIN_EXISTS : 1;
    }
    return 0;
}

/* Issues a new key for service name, replacing any previous one, and
 * prints it once. */
static int service_key_issue(struct builder *b, const char *name, struct ff_err *err)
{
    char *key = NULL;
    char hash[FF_SECRET_HASH_HEX_SIZE];
    int rc = ff_secret_token_new(SERVICE_KEY_PREFIX, &key, hash, err);
    if (rc == 0)
        rc = db_service_key_set(b->db, name, hash, err);
    if (rc == 0)
        rc = db_audit(b->db, NULL, NULL, "service.key", name, err);
    if (rc == 0) {
        printf("FF_GITD_KEY=%s\n", key);
        if (fflush(stdout) != 0)
            rc = ff_err_set(err, FF_EIO, "cannot write the key to stdout");
    }
    ff_secret_free(key);
    return rc;
}

static int cmd_service_key(struct builder *b, int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], SERVICE_GITD) != 0) {
        (void)fprintf(stderr, "ff-builder: service-key: the one service is \"%s\"\n",
                      SERVICE_GITD);
        return 2;
    }
    struct ff_err err;
    const struct ff_conf *c = b->cfg.conf;
    if (ff_daemon_drop_privileges(ff_conf_string(c, "server", "user"), &err) != 0 ||
        db_open(ff_conf_string(c, "storage", "db"), &b->db, &err) != 0 ||
        service_key_issue(b, argv[1], &err) != 0) {
        (void)fprintf(stderr, "ff-builder: service-key: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct ff_daemon_opts opts;
    struct ff_err err;
    if (ff_daemon_parse_args(argc, argv, &opts, &err) != 0) {
        bool help = strcmp(err.msg, "help") == 0;
        if (!help)
            (void)fprintf(stderr, "ff-builder: %s\n", err.msg);
        usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    ff_log_open("ff-builder", opts.debug ? FF_LOG_DEBUG : FF_LOG_INFO);
    const char *cmd = opts.argc > 0 ? opts.argv[0] : "serve";
    if (strcmp(cmd, "pki-init") == 0)
        return cmd_pki_init(opts.argc, opts.argv);
    static struct builder b;
    if (config_load(opts.config_path, &b.cfg, &err) != 0)
        ff_fatal("%s", err.msg);
    ff_log_open("ff-builder", opts.debug ? FF_LOG_DEBUG : b.cfg.log_level);
    int rc;
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(&b, opts.check_only);
    else if (strcmp(cmd, "init") == 0)
        rc = cmd_init(&b, opts.argc, opts.argv);
    else if (strcmp(cmd, "service-key") == 0)
        rc = cmd_service_key(&b, opts.argc, opts.argv);
    else {
        (void)fprintf(stderr, "ff-builder: unknown command \"%s\"\n", cmd);
        usage(stderr);
        rc = 2;
    }
    builder_close(&b);
    return rc;
}
