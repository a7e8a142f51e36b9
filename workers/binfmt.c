/* qemu-user-static in binfmt_misc, so that arm64 and armv7 steps run on an
 * x86_64 worker.
 *
 * The entry must be enabled and carry the F (fix-binary) flag: the kernel
 * then opens the interpreter when the entry is registered and uses that
 * open file for every later exec, in any mount namespace, so a container
 * runs foreign binaries without qemu in its rootfs. Debian's
 * qemu-user-static ships the definitions (with F) for systemd-binfmt and
 * binfmt-support, but nothing registers them in a container or a VM
 * without those services, and an entry registered earlier without F would
 * fail inside runc; such an entry is replaced. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#define BINFMT_CONF_DIR "/usr/lib/binfmt.d"
#define BINFMT_SUPPORT_DIR "/usr/share/binfmts"
/* Fields of a register line after its leading delimiter. */
#define BINFMT_FIELDS 7

void binfmt_def_release(struct binfmt_def *def)
{
    if (def == NULL)
        return;
    free(def->name);
    free(def->magic);
    free(def->mask);
    free(def->interpreter);
    free(def->flags);
    *def = (struct binfmt_def){0};
}

void binfmt_entry_release(struct binfmt_entry *entry)
{
    if (entry == NULL)
        return;
    free(entry->interpreter);
    free(entry->flags);
    *entry = (struct binfmt_entry){0};
}

static bool is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

/* Next line of text[*pos..len) without its newline; false at the end. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len)
        return false;
    const char *start = text + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    *line = start;
    *n = nl != NULL ? (size_t)(nl - start) : len - *pos;
    *pos += *n + (nl != NULL ? 1 : 0);
    return true;
}

static int parse_offset(const char *p, size_t n, unsigned *out)
{
    char tmp[16];
    int64_t v;
    if (n == 0) {
        *out = 0;
        return 0;
    }
    if (n >= sizeof(tmp))
        return FF_EINVAL;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    if (ff_parse_i64(tmp, 0, BINFMT_TEXT_MAX, &v) != 0)
        return FF_EINVAL;
    *out = (unsigned)v;
    return 0;
}

static int def_fill(struct binfmt_def *d, const char *const *f, const size_t *fn,
                    struct ff_err *err)
{
    static const char *const names[] = {"name", "type", "offset", "magic", "mask",
                                        "interpreter", "flags"};
    if (fn[0] == 0 || fn[3] == 0 || fn[5] == 0) {
        size_t bad = fn[0] == 0 ? 0 : fn[3] == 0 ? 3 : 5;
        return ff_err_set(err, FF_EINVAL, "binfmt definition: empty %s", names[bad]);
    }
    if (fn[1] != 1 || (f[1][0] != 'M' && f[1][0] != 'E'))
        return ff_err_set(err, FF_EINVAL, "binfmt definition: type must be M or E");
    if (parse_offset(f[2], fn[2], &d->offset) != 0)
        return ff_err_set(err, FF_EINVAL, "binfmt definition: bad offset");
    d->type = f[1][0];
    d->name = ff_strndup(f[0], fn[0]);
    d->magic = ff_strndup(f[3], fn[3]);
    d->mask = ff_strndup(f[4], fn[4]);
    d->interpreter = ff_strndup(f[5], fn[5]);
    d->flags = ff_strndup(f[6], fn[6]);
    if (d->name == NULL || d->magic == NULL || d->mask == NULL || d->interpreter == NULL ||
        d->flags == NULL)
        return ff_err_set(err, FF_ENOMEM, "binfmt definition: out of memory");
    return 0;
}

/* Splits a register line at its delimiter (its first character). */
static int split_line(const char *line, size_t n, const char **f, size_t *fn,
                      struct ff_err *err)
{
    if (n < 2)
        return ff_err_set(err, FF_EINVAL, "binfmt definition: line too short");
    char delim = line[0];
    size_t count = 0;
    size_t start = 1;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && line[i] != delim)
            continue;
        if (count == BINFMT_FIELDS) {
            if (i == start && i >= n - 1)
                break; /* a trailing delimiter after the flags */
            return ff_err_set(err, FF_EINVAL, "binfmt definition: more than %d fields",
                              BINFMT_FIELDS);
        }
        f[count] = line + start;
        fn[count] = i - start;
        count++;
        start = i + 1;
    }
    if (count < BINFMT_FIELDS - 1)
        return ff_err_set(err, FF_EINVAL, "binfmt definition: %zu fields (expected "
                          ":name:type:offset:magic:mask:interpreter:flags)", count);
    if (count == BINFMT_FIELDS - 1) {
        f[count] = line + n;
        fn[count] = 0;
    }
    return 0;
}

int binfmt_def_parse_conf(const char *text, size_t len, struct binfmt_def *out,
                          struct ff_err *err)
{
    if (len > BINFMT_TEXT_MAX)
        return ff_err_set(err, FF_ETOOBIG, "binfmt definition: longer than %d bytes",
                          BINFMT_TEXT_MAX);
    size_t pos = 0;
    const char *line;
    size_t n;
    while (next_line(text, len, &pos, &line, &n)) {
        if (is_blank(line, n) || line[0] == '#' || line[0] == ';')
            continue;
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
            n--;
        const char *f[BINFMT_FIELDS] = {0};
        size_t fn[BINFMT_FIELDS] = {0};
        int rc = split_line(line, n, f, fn, err);
        if (rc != 0)
            return rc;
        struct binfmt_def d = {0};
        rc = def_fill(&d, f, fn, err);
        if (rc != 0) {
            binfmt_def_release(&d);
            return rc;
        }
        *out = d;
        return 0;
    }
    return ff_err_set(err, FF_EINVAL, "binfmt definition: no entry");
}

/* binfmt-support keys and the flag letter each "yes" stands for. */
static const struct {
    const char *key;
    char flag;
} binfmts_flags[] = {{"preserve", 'P'}, {"credentials", 'C'}, {"fix_binary", 'F'}};

static bool key_is(const char *line, size_t n, const char *key, const char **val, size_t *vn)
{
    size_t k = strlen(key);
    if (n <= k || memcmp(line, key, k) != 0 || (line[k] != ' ' && line[k] != '\t'))
        return false;
    size_t i = k;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t end = n;
    while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\r'))
        end--;
    *val = line + i;
    *vn = end - i;
    return true;
}

struct binfmts_fields {
    const char *f[BINFMT_FIELDS];
    size_t fn[BINFMT_FIELDS];
    bool flag[sizeof(binfmts_flags) / sizeof(binfmts_flags[0])];
};

static void binfmts_line(const char *line, size_t n, struct binfmts_fields *b)
{
    /* field index in a register line for each key */
    static const struct {
        const char *key;
        size_t field;
    } keys[] = {{"offset", 2}, {"magic", 3}, {"extension", 3}, {"mask", 4},
                {"interpreter", 5}};
    const char *v;
    size_t vn;
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        if (key_is(line, n, keys[k].key, &v, &vn)) {
            b->f[keys[k].field] = v;
            b->fn[keys[k].field] = vn;
            if (keys[k].field == 3)
                b->f[1] = keys[k].key[0] == 'm' ? "M" : "E";
            return;
        }
    }
    for (size_t k = 0; k < sizeof(binfmts_flags) / sizeof(binfmts_flags[0]); k++) {
        if (key_is(line, n, binfmts_flags[k].key, &v, &vn))
            b->flag[k] = vn == 3 && memcmp(v, "yes", 3) == 0;
    }
}

int binfmt_def_parse_binfmts(const char *name, const char *text, size_t len,
                             struct binfmt_def *out, struct ff_err *err)
{
    if (len > BINFMT_TEXT_MAX)
        return ff_err_set(err, FF_ETOOBIG, "binfmt definition: longer than %d bytes",
                          BINFMT_TEXT_MAX);
    struct binfmts_fields b = {.f = {name, NULL, "", "", "", "", ""},
                               .fn = {strlen(name), 1, 0, 0, 0, 0, 0}};
    size_t pos = 0;
    const char *line;
    size_t n;
    while (next_line(text, len, &pos, &line, &n))
        binfmts_line(line, n, &b);
    if (b.f[1] == NULL)
        return ff_err_set(err, FF_EINVAL, "binfmt definition \"%s\": neither magic nor "
                          "extension", name);
    /* Flags in one order whatever the file's, so the line is canonical. */
    char flags[sizeof(binfmts_flags) / sizeof(binfmts_flags[0]) + 1];
    size_t n_flags = 0;
    for (size_t k = 0; k < sizeof(binfmts_flags) / sizeof(binfmts_flags[0]); k++) {
        if (b.flag[k])
            flags[n_flags++] = binfmts_flags[k].flag;
    }
    flags[n_flags] = '\0';
    b.f[6] = flags;
    b.fn[6] = n_flags;
    struct binfmt_def d = {0};
    int rc = def_fill(&d, b.f, b.fn, err);
    if (rc != 0) {
        binfmt_def_release(&d);
        return rc;
    }
    *out = d;
    return 0;
}

int binfmt_entry_parse(const char *text, size_t len, struct binfmt_entry *out,
                       struct ff_err *err)
{
    if (len > BINFMT_TEXT_MAX)
        return ff_err_set(err, FF_ETOOBIG, "binfmt entry: longer than %d bytes",
                          BINFMT_TEXT_MAX);
    struct binfmt_entry e = {0};
    bool state = false;
    size_t pos = 0;
    const char *line;
    size_t n;
    int rc = 0;
    while (rc == 0 && next_line(text, len, &pos, &line, &n)) {
        const char *v;
        size_t vn;
        if ((n == 7 && memcmp(line, "enabled", 7) == 0) ||
            (n == 8 && memcmp(line, "disabled", 8) == 0)) {
            e.enabled = line[0] == 'e';
            state = true;
        } else if (key_is(line, n, "interpreter", &v, &vn) && e.interpreter == NULL) {
            e.interpreter = ff_strndup(v, vn);
            rc = e.interpreter == NULL ? FF_ENOMEM : 0;
        } else if (key_is(line, n, "flags:", &v, &vn) && e.flags == NULL) {
            e.flags = ff_strndup(v, vn);
            rc = e.flags == NULL ? FF_ENOMEM : 0;
        } else if (n == 6 && memcmp(line, "flags:", 6) == 0 && e.flags == NULL) {
            e.flags = ff_strndup("", 0);
            rc = e.flags == NULL ? FF_ENOMEM : 0;
        }
    }
    if (rc == 0 && (!state || e.interpreter == NULL))
        rc = ff_err_set(err, FF_EINVAL, "binfmt entry: no %s line",
                        state ? "interpreter" : "enabled/disabled");
    else if (rc != 0)
        rc = ff_err_set(err, rc, "binfmt entry: out of memory");
    if (rc != 0) {
        binfmt_entry_release(&e);
        return rc;
    }
    if (e.flags == NULL)
        e.flags = ff_strndup("", 0);
    if (e.flags == NULL) {
        binfmt_entry_release(&e);
        return ff_err_set(err, FF_ENOMEM, "binfmt entry: out of memory");
    }
    *out = e;
    return 0;
}

static bool field_ok(const char *s)
{
    return s != NULL && strpbrk(s, ":\n\r") == NULL;
}

int binfmt_def_line(const struct binfmt_def *def, char **out, struct ff_err *err)
{
    const char *fields[] = {def->name, def->magic, def->mask, def->interpreter, def->flags};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (!field_ok(fields[i]))
            return ff_err_set(err, FF_EINVAL, "binfmt definition \"%s\": a field is missing "
                              "or holds ':' or a newline",
                              def->name != NULL && field_ok(def->name) ? def->name : "?");
    }
    if (def->name[0] == '\0' || (def->type != 'M' && def->type != 'E'))
        return ff_err_set(err, FF_EINVAL, "binfmt definition: empty name or bad type");
    bool has_f = strchr(def->flags, 'F') != NULL;
    char *line = ff_asprintf(":%s:%c:%u:%s:%s:%s:%s%s", def->name, def->type, def->offset,
                             def->magic, def->mask, def->interpreter, def->flags,
                             has_f ? "" : "F");
    if (line == NULL)
        return ff_err_set(err, FF_ENOMEM, "binfmt definition: out of memory");
    if (strlen(line) > BINFMT_TEXT_MAX) {
        free(line);
        return ff_err_set(err, FF_ETOOBIG, "binfmt definition \"%s\": longer than %d bytes",
                          def->name, BINFMT_TEXT_MAX);
    }
    *out = line;
    return 0;
}

/* Reads a small file whole; *missing is set (and 0 returned) when it does
 * not exist. *out is malloc'd and NUL-terminated. */
static int read_small(const char *path, char **out, size_t *out_len, bool *missing,
                      struct ff_err *err)
{
    *missing = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT) {
            *missing = true;
            return 0;
        }
        return ff_err_set(err, FF_EIO, "opening \"%s\" failed: %s", path, strerror(errno));
    }
    struct ff_buf b;
    ff_buf_init(&b, BINFMT_TEXT_MAX);
    char chunk[512];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ff_err_set(err, FF_EIO, "reading \"%s\" failed: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (ff_buf_append(&b, chunk, (size_t)n) != 0) {
            rc = ff_err_set(err, FF_ETOOBIG, "\"%s\" is larger than %d bytes", path,
                            BINFMT_TEXT_MAX);
            break;
        }
    }
    (void)close(fd);
    if (rc == 0) {
        *out_len = b.len;
        *out = ff_buf_steal(&b);
        if (*out == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    ff_buf_release(&b);
    return rc;
}

/* One write(2): binfmt_misc takes a registration or command whole. */
static int write_proc(const char *path, const char *text, struct ff_err *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "opening \"%s\" failed: %s", path, strerror(errno));
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int saved = errno;
    (void)close(fd);
    if (n < 0 || (size_t)n != len)
        return ff_err_set(err, saved == EEXIST ? FF_EEXIST : FF_EIO,
                          "writing to \"%s\" failed: %s", path,
                          n < 0 ? strerror(saved) : "short write");
    return 0;
}

/* Reads dir/name: *state is 0 when it is absent, 1 when it is as wanted,
 * 2 when it is there but must be replaced. */
static int entry_state(const char *dir, const struct binfmt_def *def, int *state,
                       struct ff_err *err)
{
    char *path = ff_asprintf("%s/%s", dir, def->name);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    bool missing = false;
    int rc = read_small(path, &text, &len, &missing, err);
    free(path);
    if (rc != 0 || missing) {
        *state = 0;
        return rc;
    }
    struct binfmt_entry e = {0};
    rc = binfmt_entry_parse(text, len, &e, err);
    free(text);
    if (rc != 0)
        return ff_err_wrap(err, "%s/%s", dir, def->name);
    *state = e.enabled && e.flags != NULL && strchr(e.flags, 'F') != NULL &&
             e.interpreter != NULL && strcmp(e.interpreter, def->interpreter) == 0 ? 1 : 2;
    binfmt_entry_release(&e);
    return 0;
}

static int entry_remove(const char *dir, const char *name, struct ff_err *err)
{
    char *path = ff_asprintf("%s/%s", dir, name);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = write_proc(path, "-1", err);
    free(path);
    return rc;
}

static int entry_register(const char *dir, const struct binfmt_def *def, struct ff_err *err)
{
    char *line = NULL;
    int rc = binfmt_def_line(def, &line, err);
    if (rc != 0 || line == NULL)
        return rc != 0 ? rc : FF_ENOMEM;
    char *reg = ff_asprintf("%s/register", dir);
    if (reg == NULL) {
        free(line);
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    rc = write_proc(reg, line, err);
    free(reg);
    free(line);
    return rc;
}

int binfmt_ensure_def(const char *dir, const struct binfmt_def *def, struct ff_err *err)
{
    struct stat st;
    if (def->name == NULL || def->interpreter == NULL)
        return ff_err_set(err, FF_EINVAL, "binfmt definition without name or interpreter");
    if (stat(def->interpreter, &st) != 0 || !S_ISREG(st.st_mode))
        return ff_err_set(err, FF_ENOTFOUND, "binfmt \"%s\": interpreter \"%s\" is missing "
                          "(is qemu-user-static installed?)", def->name, def->interpreter);
    int state = 0;
    int rc = entry_state(dir, def, &state, err);
    if (rc != 0 || state == 1)
        return rc;
    if (state == 2) {
        rc = entry_remove(dir, def->name, err);
        if (rc != 0)
            return ff_err_wrap(err, "binfmt \"%s\": removing the entry without the F flag",
                               def->name);
    }
    rc = entry_register(dir, def, err);
    /* EEXIST: another worker registered it meanwhile; judge what is there. */
    if (rc != 0 && rc != FF_EEXIST)
        return ff_err_wrap(err, "binfmt \"%s\": registering", def->name);
    rc = entry_state(dir, def, &state, err);
    if (rc == 0 && state != 1)
        rc = ff_err_set(err, FF_EIO, "binfmt \"%s\": after registering, the entry is %s",
                        def->name, state == 0 ? "missing" : "still not enabled with flag F");
    return rc;
}

static int mount_binfmt_misc(struct ff_err *err)
{
    if (access(BINFMT_DIR "/register", F_OK) == 0)
        return 0;
    if (mount("binfmt_misc", BINFMT_DIR, "binfmt_misc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) != 0 && errno != EBUSY)
        return ff_err_set(err, FF_EIO, "binfmt_misc is not mounted at " BINFMT_DIR
                          " and mounting it failed: %s", strerror(errno));
    if (access(BINFMT_DIR "/register", F_OK) != 0)
        return ff_err_set(err, FF_EIO, "binfmt_misc: no " BINFMT_DIR "/register after mount");
    return 0;
}

/* The qemu name of arch's CPU, or NULL. */
static const char *qemu_cpu(const char *arch)
{
    if (strcmp(arch, "arm64") == 0 || strcmp(arch, "aarch64") == 0)
        return "aarch64";
    if (strcmp(arch, "armv7") == 0 || strcmp(arch, "armhf") == 0 || strcmp(arch, "arm") == 0)
        return "arm";
    if (strcmp(arch, "amd64") == 0 || strcmp(arch, "x86_64") == 0)
        return "x86_64";
    return NULL;
}

static bool host_runs(const char *cpu)
{
    struct utsname u;
    if (uname(&u) != 0)
        return false;
    if (strcmp(cpu, "arm") == 0)
        return strncmp(u.machine, "armv7", 5) == 0 || strncmp(u.machine, "armv8", 5) == 0;
    return strcmp(u.machine, cpu) == 0;
}

/* Parses the definition in path; *missing when there is no such file. */
static int load_def_from(const char *path, const char *name, bool conf, struct binfmt_def *def,
                         bool *missing, struct ff_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_small(path, &text, &len, missing, err);
    if (rc != 0 || *missing)
        return rc;
    rc = conf ? binfmt_def_parse_conf(text, len, def, err)
              : binfmt_def_parse_binfmts(name, text, len, def, err);
    free(text);
    if (rc != 0)
        return ff_err_wrap(err, "%s", path);
    return 0;
}

static int load_def(const char *cpu, struct binfmt_def *def, struct ff_err *err)
{
    char *conf = ff_asprintf(BINFMT_CONF_DIR "/qemu-%s.conf", cpu);
    char *bsup = ff_asprintf(BINFMT_SUPPORT_DIR "/qemu-%s", cpu);
    char *name = ff_asprintf("qemu-%s", cpu);
    bool missing = true;
    int rc;
    if (conf == NULL || bsup == NULL || name == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    rc = load_def_from(conf, name, true, def, &missing, err);
    if (rc == 0 && missing)
        rc = load_def_from(bsup, name, false, def, &missing, err);
    if (rc == 0 && missing)
        rc = ff_err_set(err, FF_ENOTFOUND, "no qemu definition for %s: neither \"%s\" nor "
                        "\"%s\" exists (is qemu-user-static installed?)", cpu, conf, bsup);
out:
    free(conf);
    free(bsup);
    free(name);
    return rc;
}

int binfmt_ensure(const char *arch, struct ff_err *err)
{
    const char *cpu = qemu_cpu(arch);
    if (cpu == NULL)
        return ff_err_set(err, FF_EINVAL, "architecture \"%s\": expected amd64, arm64 or armv7",
                          arch);
    if (host_runs(cpu))
        return 0;
    int rc = mount_binfmt_misc(err);
    if (rc != 0)
        return rc;
    struct binfmt_def def = {0};
    rc = load_def(cpu, &def, err);
    if (rc == 0)
        rc = binfmt_ensure_def(BINFMT_DIR, &def, err);
    binfmt_def_release(&def);
    if (rc != 0)
        return ff_err_wrap(err, "architecture %s", arch);
    return 0;
}
