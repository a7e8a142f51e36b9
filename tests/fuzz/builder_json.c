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
            app.n_archs > APP_ARCHS_MAX)
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
    return 0;
}
