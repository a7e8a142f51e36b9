/* ff-builder: the farm's control plane. Today it only bootstraps the farm's
 * keys (pki-init); the API server, token endpoint, build dispatch and
 * signing come with their issues. */
#include "ff_daemon.h"
#include "ff_log.h"
#include "ff_pki.h"

#include <stdio.h>
#include <string.h>

/* Names given with --name; the certificate always covers localhost too. */
#define PKI_NAMES_MAX 16

static void usage(FILE *out)
{
    (void)fprintf(out,
            "usage: ff-builder [-d] pki-init --dir DIR [--name NAME]...\n"
            "\n"
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
    if (opts.argc >= 1 && strcmp(opts.argv[0], "pki-init") == 0)
        return cmd_pki_init(opts.argc, opts.argv);
    if (opts.argc == 0)
        (void)fprintf(stderr, "ff-builder: the API server is not built yet; only pki-init exists\n");
    else
        (void)fprintf(stderr, "ff-builder: unknown command \"%s\"\n", opts.argv[0]);
    usage(stderr);
    return 2;
}
