/* The exec request an SSH client sends, as it arrives: any bytes. */
#include "gitd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct command cmd;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = command_parse((const char *)data, size, &cmd, &err);
    if (rc != 0) {
        /* Refusals are echoed to the client: never a control character. */
        for (const char *p = err.msg; *p != '\0'; p++) {
            if ((unsigned char)*p < ' ' || *p == 0x7f)
                abort();
        }
        if (cmd.owner[0] != '\0' || cmd.app[0] != '\0')
            abort();
        return 0;
    }
    /* What is accepted is a pair of safe path components ... */
    if (!command_owner_valid(cmd.owner, strlen(cmd.owner)) ||
        !command_app_valid(cmd.app, strlen(cmd.app)) || strstr(cmd.owner, "..") != NULL)
        abort();
    /* ... that the canonical spelling parses back to. */
    char again[COMMAND_TEXT_MAX + 1];
    int n = snprintf(again, sizeof(again), "%s '/%s/%s.git'", command_verb_name(cmd.verb),
                     cmd.owner, cmd.app);
    struct command back;
    if (n < 0 || (size_t)n >= sizeof(again) || command_parse(again, (size_t)n, &back, &err) != 0 ||
        back.verb != cmd.verb || strcmp(back.owner, cmd.owner) != 0 ||
        strcmp(back.app, cmd.app) != 0)
        abort();
    return 0;
}
