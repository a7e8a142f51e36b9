/* The builder's request-body decoders on hostile bytes: every body of the
 * /v1 API goes through one of them. Whatever they accept must satisfy the
 * invariants the handlers rely on. */
#include "builder.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    json_t *root = NULL;
    struct login_body login;
    if (decode_login(s, size, &root, &login, NULL) == 0 &&
        (login.username == NULL || login.password == NULL ||
         strlen(login.username) > USER_NAME_MAX))
        abort();
    json_decref(root);
    struct user_body user;
    if (decode_user(s, size, &root, &user, NULL) == 0 &&
        (user_name_check(user.name, NULL) != 0 ||
         strlen(user.password) < FF_SECRET_PASSWORD_MIN ||
         (user.role != ROLE_ADMIN && user.role != ROLE_USER)))
        abort();
    json_decref(root);
    struct token_body token;
    if (decode_token(s, size, &root, &token, NULL) == 0 &&
        (strlen(token.name) > TOKEN_NAME_MAX || token.expires_in < 0 ||
         token.expires_in > API_TOKEN_TTL_MAX))
        abort();
    json_decref(root);
    struct app_body app;
    if (decode_app(s, size, &root, &app, NULL) == 0) {
        if (app_name_check(app.name, NULL) != 0 || app.n_archs == 0 ||
            app.n_archs > APP_ARCHS_MAX || branch_name_check(app.deploy_branch, NULL) != 0 ||
            strstr(app.deploy_branch, "..") != NULL)
            abort();
        for (size_t i = 0; i < app.n_archs; i++) {
            for (size_t k = i + 1; k < app.n_archs; k++) {
                if (strcmp(app.archs[i], app.archs[k]) == 0)
                    abort();
            }
        }
    }
    json_decref(root);
    struct member_body member;
    if (decode_member(s, size, &root, &member, NULL) == 0 &&
        member.role != MEMBER_DEVELOPER && member.role != MEMBER_VIEWER)
        abort();
    json_decref(root);
    struct provision_body prov;
    if (decode_provision(s, size, &root, &prov, NULL) == 0 &&
        (prov.expires_in < 0 || prov.expires_in > PROVISION_TTL_MAX || prov.max_uses < 0 ||
         prov.max_uses > PROVISION_USES_MAX))
        abort();
    json_decref(root);
    struct device_body dev;
    if (decode_device(s, size, &root, &dev, NULL) == 0 &&
        ((dev.uuid != NULL && device_uuid_check(dev.uuid, NULL) != 0) ||
         arch_check(dev.arch, NULL) != 0 || strlen(dev.name) > DEVICE_NAME_MAX))
        abort();
    json_decref(root);
    struct device_update_body upd;
    if (decode_device_update(s, size, &root, &upd, NULL) == 0 && upd.name == NULL &&
        upd.status == NULL)
        abort();
    json_decref(root);
    struct env_body env;
    if (decode_env(s, size, &root, &env, NULL) == 0 && strlen(env.value) > ENV_VALUE_MAX)
        abort();
    json_decref(root);
    struct join_token_body join;
    if (decode_join_token(s, size, &root, &join, NULL) == 0 &&
        (join.expires_in < 60 || join.expires_in > JOIN_TOKEN_TTL_MAX))
        abort();
    json_decref(root);
    struct worker_join_body worker;
    if (decode_worker_join(s, size, &root, &worker, NULL) == 0) {
        for (size_t i = 0; i < worker.n_archs; i++) {
            if (arch_check(worker.archs[i], NULL) != 0)
                abort();
        }
    }
    json_decref(root);
    return 0;
}
