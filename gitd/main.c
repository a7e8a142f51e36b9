/* ff-gitd. Two ways in: `serve` runs the SSH front (sshd.c), which runs
 * this same binary once per git command in the stdio mode: one git
 * protocol session on stdin and stdout, messages on stderr. git can drive
 * the stdio mode directly, which the protocol tests do:
 *
 *   git push --receive-pack='ff-gitd receive-pack' /srv/app.git main
 *   git clone --upload-pack='ff-gitd upload-pack' /srv/app.git */
#include "gitd.h"

#include "ff_daemon.h"
#include "ff_log.h"
#include "ff_str.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: ff-gitd -f FILE [-n] [-d] [serve]   the SSH front (-n: check the config, exit)\n"
    "       ff-gitd [-d] receive-pack [--fake-build FILE | --gate builder]\n"
    "                    [--max-pack-bytes N] [--max-objects N] [--deploy-branch B] REPO\n"
    "       ff-gitd [-d] upload-pack REPO\n";

static int parse_receive_args(int argc, char **argv, struct receive_config *cfg,
                              const char **repo, struct ff_err *err)
{
    int i = 0;
    for (; i + 1 < argc && ff_str_has_prefix(argv[i], "--"); i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        uint64_t n;
        if (strcmp(opt, "--fake-build") == 0) {
            cfg->gate = fakebuild_gate;
            cfg->gate_ctx = (void *)val;
        } else if (strcmp(opt, "--gate") == 0) {
            if (strcmp(val, "builder") != 0)
                return ff_err_set(err, FF_EINVAL, "--gate: \"%s\" is not a gate (expected builder)",
                                  val);
            struct builder_gate *g = NULL;
            int rc = builder_gate_from_env(&g, err);
            if (rc != 0)
                return rc;
            builder_gate_free(cfg->gate == builder_gate ? cfg->gate_ctx : NULL);
            cfg->gate = builder_gate;
            cfg->gate_ctx = g;
        } else if (strcmp(opt, "--max-pack-bytes") == 0) {
            if (ff_parse_u64(val, UINT64_MAX, &n) != 0 || n == 0)
                return ff_err_set(err, FF_EINVAL, "--max-pack-bytes: \"%s\" is not a size", val);
            cfg->max_pack_bytes = n;
        } else if (strcmp(opt, "--max-objects") == 0) {
            if (ff_parse_u64(val, UINT32_MAX, &n) != 0)
                return ff_err_set(err, FF_EINVAL, "--max-objects: \"%s\" is not a count", val);
            cfg->max_objects = (uint32_t)n;
        } else if (strcmp(opt, "--deploy-branch") == 0) {
            char *ref = ff_asprintf("refs/heads/%s", val);
            int valid = 0;
            if (ref == NULL || git_reference_name_is_valid(&valid, ref) != 0)
                valid = 0;
            free(ref);
            if (!valid)
                return ff_err_set(err, FF_EINVAL, "--deploy-branch: \"%s\" is not a branch name",
                                  val);
            cfg->deploy_branch = val;
        } else {
            return ff_err_set(err, FF_EINVAL, "unknown option \"%s\"", opt);
        }
    }
    if (i + 1 != argc)
        return ff_err_set(err, FF_EINVAL, "expected one repository after the options");
    *repo = argv[i];
    return 0;
}

/* The SSH front: `ff-gitd -f FILE [-n] [-d] [serve]`. */
static int main_serve(const struct ff_daemon_opts *o)
{
    struct ff_err err;
    ff_err_clear(&err);
    if (o->config_path == NULL || o->argc > 1 ||
        (o->argc == 1 && strcmp(o->argv[0], "serve") != 0)) {
        (void)fputs(usage, stderr);
        return 2;
    }
    struct gitd_config cfg;
    if (config_load(o->config_path, &cfg, &err) != 0)
        ff_fatal("%s", err.msg);
    if (o->debug)
        cfg.log_level = FF_LOG_DEBUG;
    ff_log_open("ff-gitd", cfg.log_level);
    if (o->check_only) {
        config_release(&cfg);
        (void)printf("%s: configuration is valid\n", o->config_path);
        return 0;
    }
    if (repo_lib_init(&err) != 0)
        ff_fatal("libgit2: %s", err.msg);
    int rc = sshd_serve(&cfg, &err);
    if (rc != 0)
        ff_fatal("%s", err.msg);
    config_release(&cfg);
    git_libgit2_shutdown();
    return 0;
}

/* One git session on stdin and stdout, as the SSH front runs it. */
static int main_stdio(int argc, char **argv, bool debug)
{
    struct ff_err err;
    ff_err_clear(&err);
    ff_log_open("ff-gitd", debug ? FF_LOG_DEBUG : FF_LOG_WARN);
    spawn_child_log_setup();
    if (repo_lib_init(&err) != 0)
        ff_fatal("libgit2: %s", err.msg);

    struct gitd_fds fds = {.in = 0, .out = 1, .err = 2};
    struct gitd_stream stream;
    pktline_stream_fds(&stream, &fds);
    const char *role = argv[0];
    const char *repo = NULL;
    const char *reqid = getenv(SPAWN_ENV_REQID);
    int rc;
    if (strcmp(role, "receive-pack") == 0) {
        struct receive_config cfg;
        receive_config_init(&cfg);
        cfg.reqid = reqid;
        if (parse_receive_args(argc - 1, argv + 1, &cfg, &repo, &err) != 0) {
            (void)fprintf(stderr, "ff-gitd: %s\n%s", err.msg, usage);
            builder_gate_free(cfg.gate == builder_gate ? cfg.gate_ctx : NULL);
            return 2;
        }
        rc = receive_pack(&stream, repo, &cfg, &err);
        builder_gate_free(cfg.gate == builder_gate ? cfg.gate_ctx : NULL);
    } else if (strcmp(role, "upload-pack") == 0 && argc == 2) {
        repo = argv[1];
        rc = upload_pack(&stream, repo, &err);
    } else {
        (void)fputs(usage, stderr);
        return 2;
    }
    if (rc != 0)
        ff_log_error(reqid, "session.failed", "role=%s repo=%s error=%s", role, repo, err.msg);
    git_libgit2_shutdown();
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct ff_err err;
    ff_err_clear(&err);
    /* A client that goes away must show up as a failed write, not kill a
     * push whose build result still applies. */
    (void)signal(SIGPIPE, SIG_IGN);
    struct ff_daemon_opts o;
    if (ff_daemon_parse_args(argc, argv, &o, &err) != 0) {
        if (strcmp(err.msg, "help") != 0)
            (void)fprintf(stderr, "ff-gitd: %s\n", err.msg);
        (void)fputs(usage, stderr);
        return 2;
    }
    if (o.config_path == NULL && o.argc >= 1 &&
        (strcmp(o.argv[0], "receive-pack") == 0 || strcmp(o.argv[0], "upload-pack") == 0))
        return main_stdio(o.argc, o.argv, o.debug);
    return main_serve(&o);
}
