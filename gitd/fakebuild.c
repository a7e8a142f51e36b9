/* A recorded build stream, replayed with its pacing, standing in for the
 * builder until build dispatch exists: it lets tests drive the gate end to
 * end (live log lines, success with release and digest, failure). */
#include "gitd.h"

#include "ff_file.h"
#include "ff_str.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Longest pause one "sleep" line may ask for. */
#define FAKEBUILD_SLEEP_MAX_S 60

/* "<s>[.<fraction>]" with s <= FAKEBUILD_SLEEP_MAX_S. */
static int parse_seconds(const char *s, struct timespec *out)
{
    long sec = 0, nsec = 0, scale = 100000000;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return FF_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        sec = sec * 10 + (*p - '0');
        if (sec > FAKEBUILD_SLEEP_MAX_S)
            return FF_ERANGE;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            nsec += (long)(*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p != '\0')
        return FF_EINVAL;
    out->tv_sec = sec;
    out->tv_nsec = nsec;
    return 0;
}

static void pause_for(struct timespec t)
{
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* How often wait-for looks: 50 times a second. */
#define FAKEBUILD_POLL_NS 20000000L

/* Polls for path to exist, up to FAKEBUILD_SLEEP_MAX_S. */
static int wait_for(const char *path)
{
    const struct timespec step = {0, FAKEBUILD_POLL_NS};
    for (long i = 0; i < FAKEBUILD_SLEEP_MAX_S * (1000000000L / FAKEBUILD_POLL_NS); i++) {
        if (access(path, F_OK) == 0)
            return 0;
        pause_for(step);
    }
    return FF_ETIMEOUT;
}

static bool is_digest(const char *s)
{
    if (!ff_str_has_prefix(s, "sha256:") || strlen(s) != 7 + 64)
        return false;
    for (s += 7; *s != '\0'; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    }
    return true;
}

/* Interprets one line. Returns 1 to go on, 0 for a successful build, or
 * FF_EDENIED / FF_EINVAL / FF_ETIMEOUT with *reason set. */
static int replay_line(char *line, size_t lineno, struct progress *p, char **reason)
{
    if (line[0] == '\0' || line[0] == '#')
        return 1;
    if (ff_str_has_prefix(line, "log ")) {
        char *arch = line + 4;
        char *text = strchr(arch, ' ');
        if (text != NULL)
            *text++ = '\0';
        pktline_progress(p, "%s: %s", arch, text != NULL ? text : "");
        return 1;
    }
    if (ff_str_has_prefix(line, "wait-for ")) {
        if (wait_for(line + 9) == 0)
            return 1;
        *reason = ff_asprintf("fake build: line %zu: waited %d s in vain", lineno,
                              FAKEBUILD_SLEEP_MAX_S);
        return FF_ETIMEOUT;
    }
    if (ff_str_has_prefix(line, "sleep ")) {
        struct timespec t;
        if (parse_seconds(line + 6, &t) == 0) {
            pause_for(t);
            return 1;
        }
    } else if (strcmp(line, "result failed") == 0) {
        pktline_progress(p, "build failed");
        *reason = strdup("build failed");
        return FF_EDENIED;
    } else if (ff_str_has_prefix(line, "result ok ")) {
        char digest[7 + 64 + 1];
        char release[21];
        int end = 0;
        /* "result ok <digest> release <n>" */
        if (sscanf(line + 10, "%71s release %20[0-9]%n", digest, release, &end) == 2 &&
            line[10 + end] == '\0' && is_digest(digest)) {
            pktline_progress(p, "build succeeded: release %s, image %s", release, digest);
            return 0;
        }
    }
    *reason = ff_asprintf("fake build: line %zu not understood", lineno);
    return FF_EINVAL;
}

int fakebuild_gate(void *ctx, git_repository *view, const char *ref, const git_oid *old_id,
                   const git_oid *new_id, struct progress *p, char **reason)
{
    (void)view;
    (void)old_id;
    const char *path = ctx;
    char *text = NULL;
    size_t len;
    *reason = NULL;
    struct ff_err err;
    int rc = ff_file_read(path, FAKEBUILD_FILE_MAX, 0, &text, &len, &err);
    if (rc != 0) {
        *reason = ff_asprintf("fake build: cannot read the recording: %s", err.msg);
        return rc;
    }
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof(hex), new_id);
    pktline_progress(p, "building %.12s for %s", hex, ref);
    rc = FF_EINVAL;
    size_t lineno = 0;
    char *line = text;
    while (line < text + len) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        char *next = nl != NULL ? nl + 1 : text + len;
        if (nl != NULL)
            *nl = '\0';
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[n - 1] = '\0';
        lineno++;
        int r = replay_line(line, lineno, p, reason);
        if (r != 1) {
            rc = r;
            break;
        }
        line = next;
    }
    if (rc == FF_EINVAL && *reason == NULL)
        *reason = strdup("fake build: the recording has no result");
    free(text);
    return rc;
}
