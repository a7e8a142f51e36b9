/* SSH public key lines and fingerprints on hostile bytes: sshkey_parse is
 * what a user's POST /v1/keys reaches, sshkey_fingerprint_check what
 * ff-gitd's lookup query reaches, decode_key the body around the line.
 * Whatever they accept must hold the invariants the database and ff-gitd
 * rely on: one of the five types, sane sizes, a well-formed fingerprint,
 * and a normalised line that parses back to the same key. */
#include "builder.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_key(const struct sshkey *k)
{
    static const char *const types[] = {"ssh-ed25519", "ecdsa-sha2-nistp256",
                                        "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                                        "ssh-rsa"};
    bool known = false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        known = known || strcmp(k->type, types[i]) == 0;
    size_t tlen = strlen(k->type);
    if (!known || k->line == NULL || strncmp(k->line, k->type, tlen) != 0 ||
        k->line[tlen] != ' ' || strchr(k->line + tlen + 1, ' ') != NULL ||
        sshkey_fingerprint_check(k->fingerprint, NULL) != 0)
        abort();
    if (strcmp(k->type, "ssh-rsa") == 0 &&
        (k->bits < SSHKEY_RSA_BITS_MIN || k->bits > SSHKEY_RSA_BITS_MAX))
        abort();
    if (k->comment != NULL) {
        if (k->comment[0] == '\0' || k->comment[0] == ' ')
            abort();
        for (const char *c = k->comment; *c != '\0'; c++) {
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                abort();
        }
    }
    struct sshkey again;
    if (sshkey_parse(k->line, strlen(k->line), &again, NULL) != 0 ||
        strcmp(again.fingerprint, k->fingerprint) != 0 || strcmp(again.line, k->line) != 0 ||
        again.comment != NULL)
        abort();
    sshkey_release(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct sshkey k;
    if (sshkey_parse(s, size, &k, NULL) == 0) {
        check_key(&k);
        sshkey_release(&k);
    } else if (k.line != NULL || k.comment != NULL) {
        abort();
    }
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (sshkey_fingerprint_check(text, NULL) == 0 &&
        (strlen(text) != SSHKEY_FINGERPRINT_LEN || strncmp(text, "SHA256:", 7) != 0))
        abort();
    free(text);
    json_t *root = NULL;
    struct key_body body;
    if (decode_key(s, size, &root, &body, NULL) == 0) {
        if (body.public_key == NULL || strlen(body.public_key) > SSHKEY_LINE_MAX ||
            (body.name != NULL && strlen(body.name) > KEY_NAME_MAX))
            abort();
        if (sshkey_parse(body.public_key, strlen(body.public_key), &k, NULL) == 0) {
            check_key(&k);
            sshkey_release(&k);
        }
    }
    json_decref(root);
    return 0;
}
