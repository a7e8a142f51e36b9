/* Replays libFuzzer corpora without libFuzzer, so that every corpus runs
 * under gcc (and under ASan in `make asan`) as part of `make test`.
 * Arguments are files or directories of files; each file is one input. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus files are small by design; a bigger one is a mistake in the tree. */
#define REPLAY_INPUT_MAX (16u << 20)

static int replay_file(const char *path, unsigned *count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        (void)fprintf(stderr, "replay: cannot open \"%s\": %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(REPLAY_INPUT_MAX);
    if (buf == NULL) {
        (void)fclose(f);
        return -1;
    }
    size_t n = fread(buf, 1, REPLAY_INPUT_MAX, f);
    int bad = ferror(f) || !feof(f);
    (void)fclose(f);
    if (bad) {
        (void)fprintf(stderr, "replay: \"%s\": unreadable or larger than %u bytes\n", path,
                REPLAY_INPUT_MAX);
        free(buf);
        return -1;
    }
    /* Give the target an exact-size copy so ASan sees overreads. */
    uint8_t *exact = malloc(n ? n : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    (*count)++;
    return 0;
}

static int replay_path(const char *path, unsigned *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        (void)fprintf(stderr, "replay: \"%s\": %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path, count);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *child = malloc(len);
        if (child == NULL) {
            rc = -1;
            break;
        }
        (void)snprintf(child, len, "%s/%s", path, e->d_name);
        rc = replay_path(child, count);
        free(child);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    for (int i = 1; i < argc; i++) {
        if (replay_path(argv[i], &count) != 0)
            return 1;
    }
    printf("%u inputs replayed, no crash\n", count);
    return 0;
}
