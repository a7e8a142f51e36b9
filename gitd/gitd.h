/* ff-gitd's private header: the declarations every file of the daemon
 * shares, grouped by the file that defines them, in reading order: framing
 * (pktline.c), the push command list (refcmd.c), repositories and their lock
 * (repo.c), the quarantine a pack waits in (quarantine.c), the two protocol
 * roles (receive.c, upload.c) and the recorded build used by tests
 * (fakebuild.c). */
#ifndef GITD_H
#define GITD_H

#include "ff_buf.h"
#include "ff_err.h"

#include <git2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What we call ourselves in the agent= capability (same version as the
 * HTTP clients' User-Agent). */
#define GITD_AGENT "fleetforge/1"

/* ---- pktline.c: pkt-line framing and side-band ---------------------------
 *
 * A pkt-line is four hex digits giving the length of the whole line (the
 * four digits included), then the payload; 0000 is a flush, 0001 a delimiter
 * and 0002 a response end (gitprotocol-common). After a receive-pack command
 * list the pack follows raw, unframed, so the reader also hands out raw
 * bytes. Output goes through the side-band when the client asked for
 * side-band-64k: band 1 data, band 2 progress, band 3 fatal error. */

/* Longest pkt-line, length digits included: git's LARGE_PACKET_MAX. git
 * refuses anything longer, so we neither send nor accept more. */
#define PKTLINE_MAX 65520
/* Longest payload of one pkt-line. */
#define PKTLINE_DATA_MAX (PKTLINE_MAX - 4)
/* Most data bytes in one side-band packet: the band byte takes one more.
 * (gitprotocol-capabilities says "65519 data bytes", counting without the
 * length digits; git itself sends and accepts at most 65515, and a 65519
 * byte payload would make a line git rejects.) */
#define PKTLINE_BAND_DATA_MAX (PKTLINE_DATA_MAX - 1)
/* Read-ahead buffer: one maximal pkt-line, and large enough that a pack
 * streams in few system calls. */
#define PKTLINE_READ_BUF (128u << 10)

enum pktline_kind {
    PKTLINE_DATA,
    PKTLINE_FLUSH,        /* 0000 */
    PKTLINE_DELIM,        /* 0001 */
    PKTLINE_RESPONSE_END, /* 0002 */
    PKTLINE_EOF           /* the input ended cleanly between two pkt-lines */
};

enum pktline_band {
    PKTLINE_BAND_DATA = 1,
    PKTLINE_BAND_PROGRESS = 2,
    PKTLINE_BAND_ERROR = 3
};

/* The byte streams of one session, as the SSH layer or stdio provide them.
 * read: up to n bytes into buf; returns the count, 0 at end of input, -1
 * with errno on failure. write and write_err: all n bytes; 0, or -1 with
 * errno (the peer is gone). write_err carries messages outside the protocol
 * (stderr, SSH extended data) and may be NULL. */
struct gitd_stream {
    ssize_t (*read)(void *ctx, void *buf, size_t n);
    int (*write)(void *ctx, const void *buf, size_t n);
    int (*write_err)(void *ctx, const void *buf, size_t n);
    void *ctx;
};

/* File descriptors behind a stream made by pktline_stream_fds. */
struct gitd_fds {
    int in;
    int out;
    int err; /* -1: no message stream */
};

/* Fills s with functions that use fds (which must outlive s). Reads retry
 * on EINTR; writes loop until everything is written. */
void pktline_stream_fds(struct gitd_stream *s, struct gitd_fds *fds);

struct pktline {
    const struct gitd_stream *stream;
    unsigned char *in;  /* read-ahead, PKTLINE_READ_BUF bytes */
    size_t in_pos;
    size_t in_len;
    bool in_eof;
    char *line;         /* payload of the last pkt-line read, NUL-terminated */
    bool sideband;      /* the client asked for side-band-64k */
    bool out_failed;    /* a write failed: the client is gone, writes are dropped */
};

/* Prepares p to talk over stream (borrowed; it must outlive p). Returns 0
 * or FF_ENOMEM. */
int pktline_init(struct pktline *p, const struct gitd_stream *stream, struct ff_err *err);

/* Frees the buffers. NULL-safe on a zeroed struct. */
void pktline_release(struct pktline *p);

/* Decodes the four length digits of a pkt-line: *kind is FLUSH, DELIM,
 * RESPONSE_END or DATA with *payload_len bytes to follow. Errors: FF_EINVAL
 * for anything but four lower- or upper-case hex digits, for the reserved
 * lengths 0003, and for lengths over PKTLINE_MAX. */
int pktline_parse_length(const unsigned char hdr[4], enum pktline_kind *kind,
                         size_t *payload_len, struct ff_err *err);

/* Reads the next pkt-line. For DATA the payload is in p->line (valid until
 * the next read, NUL-terminated, may itself hold NULs) and its length in
 * *len; *len is 0 for the other kinds. EOF is returned only when the input
 * ends exactly between two pkt-lines. Errors: FF_EINVAL (malformed length,
 * input ending inside a pkt-line), FF_EIO (read failed). */
int pktline_read(struct pktline *p, enum pktline_kind *kind, size_t *len, struct ff_err *err);

/* Reads up to cap raw bytes (the pack after a command list) into buf; *n is
 * 0 at end of input. Errors: FF_EIO. */
int pktline_read_raw(struct pktline *p, void *buf, size_t cap, size_t *n, struct ff_err *err);

/* Writes one data pkt-line of len (<= PKTLINE_DATA_MAX) bytes, outside any
 * side-band. Errors: FF_EIO (the client is gone; later writes fail at once). */
int pktline_write(struct pktline *p, const void *data, size_t len, struct ff_err *err);

/* Writes one formatted data pkt-line; same errors, and FF_ETOOBIG when the
 * text is longer than PKTLINE_DATA_MAX. */
int pktline_printf(struct pktline *p, struct ff_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes len bytes as they are: pkt-lines assembled with pktline_buf_*.
 * Errors: FF_EIO. */
int pktline_write_raw(struct pktline *p, const void *data, size_t len, struct ff_err *err);

/* Writes a flush pkt-line (0000). Errors: FF_EIO. */
int pktline_flush(struct pktline *p, struct ff_err *err);

/* Sends len bytes on band (1..3), split into side-band packets of at most
 * PKTLINE_BAND_DATA_MAX bytes. Without side-band, band 1 goes to the
 * protocol stream raw and bands 2 and 3 to the message stream. Errors:
 * FF_EIO. */
int pktline_band(struct pktline *p, enum pktline_band band, const void *data, size_t len,
                 struct ff_err *err);

/* Appends a pkt-line (or, for pktline_buf_flush, a flush) to b, for output
 * that is assembled before it is sent (the report-status wrapped in band 1).
 * Errors: FF_ETOOBIG (line or buffer limit), FF_ENOMEM. */
int pktline_buf_printf(struct ff_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pktline_buf_flush(struct ff_buf *b);

/* Where live lines go while a push runs (a build log, a waiting notice):
 * band 2 when the client asked for side-band, else the message stream. */
struct progress {
    struct pktline *pkt;
    bool quiet; /* the client asked for quiet: progress is dropped */
};

/* Sends one line of progress. The text is untrusted (a build log), so
 * control characters other than tab become '?' and a terminal cannot be
 * driven through it; lines longer than one packet are cut. Failures to
 * write are ignored: a client that went away must not stop the push. */
void pktline_progress(struct progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Tells the client about a fatal error: "ERR <msg>" is not understood in
 * every phase, so this uses band 3 under side-band and the message stream
 * otherwise, prefixed "ff-gitd: ". Write failures are ignored. */
void pktline_fatal(struct pktline *p, const char *msg);

/* ---- refcmd.c: the receive-pack command list ------------------------------
 *
 *   <old-id> SP <new-id> SP <refname> [NUL <capabilities>] [LF]
 *
 * one per pkt-line, capabilities on the first only. Ids are 40 lower-case
 * hex digits (gitprotocol-common's HEXDIG), all zeros meaning "no ref". */

/* Longest ref name: a ref is a file under refs/, so each component must fit
 * a file name (255) and the whole a path; 1024 leaves ample room for real
 * branch and tag names while bounding memory per command. */
#define REFCMD_NAME_MAX 1024
/* Most commands in one push: `git push --tags` on a long-lived app sends a
 * few hundred; 10000 bounds the memory (about 10 MiB) a client can claim. */
#define REFCMD_MAX 10000

struct refcmd {
    git_oid old_id;   /* zero: create */
    git_oid new_id;   /* zero: delete */
    char *ref;        /* owned */
    bool rejected;    /* the command will not be applied */
    char *reason;     /* owned; why it was rejected (NULL only when out of memory) */
};

/* Capabilities a pushing client may ask for (the ones we advertise). */
struct refcmd_caps {
    bool report_status;
    bool side_band_64k;
    bool quiet;
    bool atomic;
    bool ofs_delta;
    bool delete_refs;
};

struct refcmd_list {
    struct refcmd *cmds;
    size_t n;
    size_t cap;
    struct refcmd_caps caps;
};

/* Parses one command line of len bytes (one pkt-line payload, trailing LF
 * optional) and appends it; the first line added may carry capabilities.
 * Refused, FF_EINVAL with a message naming the line and what was expected:
 * malformed ids (not 40 lower-case hex digits), both ids zero, a missing
 * separator, ref names that are empty, too long, hold control characters
 * or fail git_reference_name_is_valid, a ref named twice, a capability we
 * did not advertise, a NUL outside the first line. A valid name outside
 * refs/heads/ and refs/tags/ is accepted with a reason, so the client sees
 * `ng <ref> ...` for it. FF_ETOOBIG: more than REFCMD_MAX commands.
 * FF_ENOMEM. On error the list is unchanged. */
int refcmd_list_add(struct refcmd_list *l, const char *line, size_t len, struct ff_err *err);

/* Frees every command. NULL-safe on a zeroed list. */
void refcmd_list_release(struct refcmd_list *l);

/* Rejects c with a reason, unless it is rejected already (the first cause
 * is the one the client sees). The text should be short and plain; control
 * characters are replaced so it cannot break the report line. */
void refcmd_reject(struct refcmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True for a delete (new id zero). */
bool refcmd_is_delete(const struct refcmd *c);

/* ---- repo.c: bare repositories, their push lock, crash debris ------------- */

/* File in a repository that pushes lock (flock) while they run. */
#define REPO_LOCK_FILE "ff-gitd.lock"
/* Line a push prints while it waits for another push's lock. */
#define REPO_WAIT_MESSAGE "waiting for the build of another push to finish"

/* Sets the process-wide libgit2 options every role needs: init, fsync of
 * what it writes, no global or system configuration, object size cap.
 * Returns 0 or FF_EIO. Call once at start. */
int repo_lib_init(struct ff_err *err);

/* Opens the bare repository at path for a push: creates the directory (not
 * its parents) and a bare repository with HEAD on refs/heads/<branch> when
 * create is set and it is missing, takes its push lock (printing
 * REPO_WAIT_MESSAGE to p while another push holds it), then removes what a
 * killed push left: quarantine directories and ref lock files. On success
 * *out (git_repository_free) and *lock_fd (close to release the lock)
 * belong to the caller. Errors: FF_ENOTFOUND (missing and !create), FF_EIO. */
int repo_open_locked(git_repository **out, int *lock_fd, const char *path, bool create,
                     const char *branch, struct progress *p, struct ff_err *err);

/* Opens an existing bare repository for reading (no lock). Errors:
 * FF_ENOTFOUND, FF_EIO. */
int repo_open(git_repository **out, const char *path, struct ff_err *err);

/* Removes path and everything under it (symbolic links are removed, not
 * followed); a missing path is not an error. Errors: FF_EIO. */
int repo_remove_tree(const char *path, struct ff_err *err);

/* One ref as advertised. */
struct repo_ref {
    char *name;      /* owned */
    git_oid id;
    bool has_peeled; /* an annotated tag: peeled is what it finally names */
    git_oid peeled;
};

/* Most refs a repository may advertise: pushes add at most REFCMD_MAX each;
 * an app with more than this many refs is not one we serve. */
#define REPO_REFS_MAX 100000
/* Largest ref advertisement: a line per ref and per peeled tag, each at
 * most one pkt-line. */
#define REPO_ADVERT_MAX ((size_t)(REPO_REFS_MAX + 1) * 2 * PKTLINE_MAX)

/* Lists the direct refs under refs/, sorted by name (symbolic refs are
 * skipped). *out (repo_refs_free) belongs to the caller. Errors: FF_EIO,
 * FF_ENOMEM, FF_ETOOBIG (more than REPO_REFS_MAX). */
int repo_refs(struct repo_ref **out, size_t *n, git_repository *repo, struct ff_err *err);

/* NULL-safe. */
void repo_refs_free(struct repo_ref *refs, size_t n);

/* Copies libgit2's last error message into err with the given code,
 * prefixed with what we were doing (printf-style). Returns code. */
int repo_git_error(struct ff_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- quarantine.c: a received pack, until it is proven complete -----------
 *
 * The pack is indexed into <repo>/objects/incoming-XXXXXX/pack, which is not
 * an alternate of the repository: other readers cannot see it. It is checked
 * through a second repository handle that adds the quarantine in memory
 * only. Accepted, its .pack then .idx are renamed into objects/pack (same
 * file system, so each rename is atomic) and the directory fsync'd; refused
 * or abandoned, the directory is removed. A directory left by a killed
 * process is removed by the next push (repo_open_locked). */

#define QUARANTINE_PREFIX "incoming-"

struct quarantine;

/* Starts a quarantine in repo's objects directory; received data is indexed
 * with repo's object database completing thin packs. The pack may be at
 * most max_bytes long and declare at most max_objects objects. On success
 * *out belongs to the caller (quarantine_free). Errors: FF_EIO. */
int quarantine_new(struct quarantine **out, git_repository *repo, uint64_t max_bytes,
                   uint32_t max_objects, struct ff_err *err);

/* Feeds the next len bytes of the pack. Errors: FF_ETOOBIG (more than
 * max_bytes, or a header declaring more than max_objects), FF_EINVAL (not a
 * pack, or data the indexer rejects). After an error the pack is dead. */
int quarantine_append(struct quarantine *q, const void *data, size_t len, struct ff_err *err);

/* Ends the pack: resolves deltas (fetching thin-pack bases) and writes the
 * index. Errors: FF_EINVAL (truncated or corrupt pack), FF_EIO. */
int quarantine_finish(struct quarantine *q, struct ff_err *err);

/* Objects the client sent (after quarantine_finish). */
uint32_t quarantine_object_count(const struct quarantine *q);

/* Opens a second handle on the repository at path that also sees the
 * quarantined objects (in memory only: nothing on disk names the
 * quarantine). *out belongs to the caller (git_repository_free). Errors:
 * FF_EIO. */
int quarantine_open_view(git_repository **out, const struct quarantine *q, const char *path,
                         struct ff_err *err);

/* A set of object ids (the objects a connectivity check has seen). */
struct oidset;

/* Returns 0 or FF_ENOMEM; *out belongs to the caller (oidset_free). */
int oidset_new(struct oidset **out);

/* NULL-safe. */
void oidset_free(struct oidset *s);

/* Proves tip pushable in view (from quarantine_open_view): every object
 * reachable from it and not from the repository's refs is present and
 * parses; tags are followed, commits walked (libgit2 revwalk hiding the
 * refs), and every tree of every new commit is read entry by entry, each
 * distinct tree or blob once per seen set (seen may be shared between the
 * tips of one push). Tree entries named "", ".", "..", ".git" (any case) or
 * holding '/', and unknown modes, are refused. Gitlinks are not followed.
 * Errors: FF_EINVAL (missing or malformed object, message says which),
 * FF_ENOMEM. After an error seen holds objects whose check did not finish:
 * free it and start a new one. */
int quarantine_check(git_repository *view, const git_oid *tip, struct oidset *seen,
                     struct ff_err *err);

/* Moves the pack into repo's objects/pack (.pack first, then .idx, so no
 * reader ever sees an index without its pack), fsyncs the directory and
 * refreshes repo's object database. A pack without objects is dropped
 * instead. Errors: FF_EIO. */
int quarantine_migrate(struct quarantine *q, git_repository *repo, struct ff_err *err);

/* Removes the quarantine directory unless migrated, and frees q. NULL-safe. */
void quarantine_free(struct quarantine *q);

/* Removes every objects/incoming-* directory of the repository at path:
 * call only with the push lock held. Errors: FF_EIO. */
int quarantine_sweep(const char *path, struct ff_err *err);

/* ---- receive.c: receive-pack (git push) ---------------------------------- */

/* Largest pack by default: ten times the benchmark's 200 MB repository;
 * bigger pushes are almost certainly mistakes (build artefacts committed). */
#define RECEIVE_MAX_PACK_BYTES_DEFAULT ((uint64_t)2 << 30)
/* Most objects in one pack by default: a large application repository has
 * a few hundred thousand; each costs the indexer some memory. */
#define RECEIVE_MAX_OBJECTS_DEFAULT 1000000u
/* The branch whose pushes deploy, by default; "master" is its alias. */
#define RECEIVE_DEPLOY_BRANCH_DEFAULT "main"

/* Decides whether a push to the deploy branch may move it (a build). ref is
 * the full ref name, old_id zero for a create; view sees the pushed
 * objects. p takes live lines for the client; like the output of git's
 * hooks they are shown even to a quiet client (git asks for quiet whenever
 * its stderr is not a terminal). Returns 0 to accept; any
 * other value refuses, with *reason (malloc'd, freed by the caller; NULL
 * means "build failed") as the ng reason. */
typedef int (*receive_gate_fn)(void *ctx, git_repository *view, const char *ref,
                               const git_oid *old_id, const git_oid *new_id, struct progress *p,
                               char **reason);

struct receive_config {
    uint64_t max_pack_bytes;
    uint32_t max_objects;
    const char *deploy_branch; /* short name, e.g. "main" */
    receive_gate_fn gate;      /* NULL: deploy pushes need no gate */
    void *gate_ctx;
    const char *reqid;         /* request id for log lines, or NULL */
};

/* Fills cfg with the defaults above and no gate. */
void receive_config_init(struct receive_config *cfg);

/* True when ref (full name) is the deploy branch of cfg: refs/heads/<deploy>,
 * or refs/heads/master when the deploy branch is main. */
bool receive_is_deploy_ref(const struct receive_config *cfg, const char *ref);

/* Serves one git-receive-pack session for the repository at path (created
 * on the first push) over stream: advertisement, commands, pack into a
 * quarantine, checks, gate, ref updates with compare-and-swap, report.
 *
 * The push lock is taken before the advertisement and held to the end, so
 * pushes to one repository run one after the other, each advertised the
 * refs its predecessor left (a second push is refused by its own client
 * only if the first made it a non-fast-forward). The pack runs to the end
 * of input, as git closes its side after sending it: stream->read must
 * report the client's EOF (over SSH, the channel's EOF). If the client goes
 * away during the gate, the gate's result still applies.
 *
 * Rejected refs are not errors: they are reported to the client and the
 * call returns 0. Errors (also told to the client when possible):
 * FF_EINVAL (protocol violation), FF_EIO, FF_ENOMEM; the repository is
 * unchanged by any of them, except FF_EIO from writing the final report
 * (the client went away after the refs were updated). */
int receive_pack(const struct gitd_stream *stream, const char *path,
                 const struct receive_config *cfg, struct ff_err *err);

/* ---- upload.c: upload-pack (git clone, git fetch) ------------------------- */

/* Most wants and haves in one fetch: a clone wants one id per ref (see
 * REFCMD_MAX), and a client sends haves in rounds until it hears an ACK. */
#define UPLOAD_WANTS_MAX REFCMD_MAX
#define UPLOAD_HAVES_MAX 100000

/* Serves one git-upload-pack session (protocol v0, no shallow, no
 * multi_ack) for the repository at path, read-only. Errors: FF_ENOTFOUND
 * (no such repository, told to the client as ERR), FF_EINVAL (protocol
 * violation, e.g. a want that is not an advertised tip), FF_EIO. */
int upload_pack(const struct gitd_stream *stream, const char *path, struct ff_err *err);

/* ---- fakebuild.c: a recorded build stream standing in for the builder ----
 *
 * Lines of the recording:
 *   log <arch> <text>                       progress "<arch>: <text>"
 *   sleep <seconds>                         pause (decimal, at most 60)
 *   wait-for <path>                         pause until path exists (at most
 *                                           60 s), so tests can pace a replay
 *                                           by events instead of by time
 *   result ok sha256:<64 hex> release <n>   success
 *   result failed                           failure
 * Blank lines and lines starting with '#' are skipped. */

/* Largest recording read. */
#define FAKEBUILD_FILE_MAX (1u << 20)

/* A receive_gate_fn; ctx is the recording's path (const char *). Replays
 * it with its pacing; on success prints the release and image digest and
 * returns 0; on "result failed" returns FF_EDENIED with reason "build
 * failed"; an unreadable or malformed recording is FF_EIO or FF_EINVAL
 * with the line in the reason, a wait-for in vain FF_ETIMEOUT. */
int fakebuild_gate(void *ctx, git_repository *view, const char *ref, const git_oid *old_id,
                   const git_oid *new_id, struct progress *p, char **reason);

/* ==== The SSH front ========================================================
 *
 * sshd.c listens and forks one process per connection; session.c runs that
 * connection (key exchange, public-key authentication against the builder,
 * one session channel, one exec request); spawn.c runs the git program as a
 * child of our own binary (the receive-pack and upload-pack roles above) on
 * three pipes and pumps bytes between it and the channel. The builder is
 * asked through builder_client.c; limits are held in slot.c's lock files. */

#include "ff_conf.h"
#include "ff_log.h"

struct ssh_bind_struct;
struct ssh_channel_struct;
struct ssh_event_struct;
struct ssh_key_struct;
struct ssh_session_struct;

/* ---- config.c: the INI file ----------------------------------------------- */

/* The configuration as the daemon uses it; config.c's schema holds every
 * key's default and range. */
struct gitd_config {
    struct ff_conf *conf;     /* owned; the strings below are borrowed from it */
    const char *address;      /* [server] address: numeric IPv4 or IPv6 */
    uint16_t port;            /* [server] port */
    const char *host_key;     /* [server] host_key: made on first start */
    const char *user;         /* [server] user to run as; NULL: stay */
    const char *builder_url;  /* [builder] url: https://host:port, no path */
    const char *builder_ca;   /* [builder] ca; NULL: the system CAs */
    const char *key_file;     /* [builder] key_file: the service key */
    const char *repos;        /* [storage] repos: <repos>/<owner>/<app>.git */
    char *run_dir;            /* owned; [storage] run, default <repos>/.run */
    unsigned sessions;        /* [limits] sessions: connections at once */
    unsigned sessions_per_user;
    unsigned sessions_per_address;
    unsigned auth_timeout_s;
    unsigned idle_timeout_s;
    uint64_t max_pack_bytes;
    uint32_t max_objects;
    enum ff_log_level log_level;
};

/* Reads and checks the configuration at path (NULL: FF_EINVAL, a file is
 * required). On success out holds what config_release frees. Errors:
 * FF_ENOTFOUND (no file), FF_EINVAL and FF_ERANGE (naming the file, key and
 * what was expected), FF_EIO, FF_ENOMEM; out is then empty. */
int config_load(const char *path, struct gitd_config *out, struct ff_err *err);

/* The same from text in memory; name stands for the file in messages. */
int config_load_string(const char *text, const char *name, struct gitd_config *out,
                       struct ff_err *err);

/* Frees what config_load filled in. Safe on a released or zeroed config. */
void config_release(struct gitd_config *cfg);

/* Longest service key accepted: the builder's keys are about 50 characters. */
#define CONFIG_SERVICE_KEY_MAX 256
/* Largest key file read: one line, with room for comments. */
#define CONFIG_KEY_FILE_MAX 4096

/* Reads the service key from path: the line `FF_GITD_KEY=ffg_...` that
 * `ff-builder service-key gitd` prints, or the bare key; blank lines and
 * lines starting with '#' are skipped. On success *out is the key,
 * malloc'd, for the caller to free with ff_secret_free. Errors: FF_EIO
 * (unreadable), FF_EDENIED (the file is readable by every user),
 * FF_EINVAL (no key, two keys, or a key with spaces or control
 * characters), FF_ETOOBIG, FF_ENOMEM. Nothing read is left in memory. */
int config_service_key_read(const char *path, char **out, struct ff_err *err);

/* ---- command.c: the exec request ------------------------------------------
 *
 * git runs `git-receive-pack '<path>'` or `git-upload-pack '<path>'` over
 * ssh; the path we serve is [/]<owner>/<app>[.git], owner in the builder's
 * user-name grammar [a-z0-9]+([._-][a-z0-9]+)* and app [a-z0-9][a-z0-9-]*. */

/* Longest owner (the builder's USER_NAME_MAX) and app name (APP_NAME_MAX). */
#define COMMAND_OWNER_MAX 64
#define COMMAND_APP_MAX 63
/* Longest command looked at: the longest valid one has 152 bytes. */
#define COMMAND_TEXT_MAX 256

enum command_verb {
    COMMAND_RECEIVE_PACK,
    COMMAND_UPLOAD_PACK
};

struct command {
    enum command_verb verb;
    char owner[COMMAND_OWNER_MAX + 1];
    char app[COMMAND_APP_MAX + 1];
};

/* Parses the len bytes of an exec request into out. Errors: FF_EINVAL with
 * a message for the user that quotes the offending part and says what is
 * expected (an unknown command, missing or unbalanced quotes, a path that
 * is not <owner>/<app>.git), FF_ETOOBIG (longer than COMMAND_TEXT_MAX). */
int command_parse(const char *text, size_t len, struct command *out, struct ff_err *err);

/* True when the len bytes of s are a user name the builder would accept. */
bool command_owner_valid(const char *s, size_t len);

/* True when the len bytes of s are an app name the builder would accept. */
bool command_app_valid(const char *s, size_t len);

/* "git-receive-pack" or "git-upload-pack". */
const char *command_verb_name(enum command_verb verb);

/* ---- builder_client.c: what gitd asks the builder -------------------------
 *
 * HTTPS with the gitd service key as bearer token. The builder's errors
 * ({"error": {"code", "message"}}) become codes: 401 FF_EAUTH (the service
 * key is refused), 403 FF_EDENIED, 404 FF_ENOTFOUND, 503 FF_EBUSY, others
 * FF_ENET; err carries the builder's message. A builder that cannot be
 * reached is FF_ENET or FF_ETIMEOUT. */

/* Largest answer read: the answers are a few short fields. */
#define BUILDER_ANSWER_MAX 65536
/* Deadline of one request: authentication waits on it. */
#define BUILDER_TIMEOUT_MS 10000L
/* Longest deploy branch name taken from the builder. */
#define BUILDER_BRANCH_MAX 255

struct builder_client;

/* Makes a client for the builder at url (https://host[:port]) trusting
 * ca_file (NULL: the system CAs), with a copy of key. On success *out
 * belongs to the caller (builder_client_free). Errors: FF_EINVAL (not an
 * https URL), FF_EIO (CA unreadable), FF_ENOMEM. */
int builder_client_new(struct builder_client **out, const char *url, const char *ca_file,
                       const char *key, struct ff_err *err);

/* Wipes the key and frees c. NULL-safe. */
void builder_client_free(struct builder_client *c);

struct builder_user {
    char name[COMMAND_OWNER_MAX + 1];
    bool admin;
    int64_t key_id;
};

/* Who holds the SSH key with this fingerprint ("SHA256:<base64>"). Errors:
 * FF_ENOTFOUND (no such key), and the codes above. */
int builder_key_lookup(struct builder_client *c, const char *fingerprint,
                       struct builder_user *out, struct ff_err *err);

struct builder_access {
    bool push;
    bool pull;
    char access[16]; /* "none", "viewer", "developer" or "owner" */
    char deploy_branch[BUILDER_BRANCH_MAX + 1];
};

/* What user may do with the app owner/app. Errors: FF_ENOTFOUND (no such
 * app), FF_EINVAL (an answer without the expected fields), and the codes
 * above. */
int builder_app_access(struct builder_client *c, const char *owner, const char *app,
                       const char *user, struct builder_access *out, struct ff_err *err);

/* Asks for a build of commit (40 hex digits) pushed to ref by user. Returns
 * 0 when the builder took it; today it answers 503 "no builder available"
 * (FF_EBUSY), which the gate turns into the push's rejection reason. */
int builder_build_start(struct builder_client *c, const char *owner, const char *app,
                        const char *commit, const char *ref, const char *user,
                        struct ff_err *err);

/* The receive-pack gate that asks the builder, set up from what spawn.c
 * gives a receive-pack child (SPAWN_ENV_*: user, app, builder URL and CA,
 * and the descriptor the service key is read from, which is closed). On
 * success *out (builder_gate_free) belongs to the caller. Errors: FF_EINVAL
 * (a variable missing or malformed), FF_EIO, FF_ENOMEM. */
struct builder_gate;
int builder_gate_from_env(struct builder_gate **out, struct ff_err *err);

/* NULL-safe; wipes the key. */
void builder_gate_free(struct builder_gate *g);

/* A receive_gate_fn; ctx is a struct builder_gate. Asks the builder for a
 * build of new_id and refuses the update with the builder's answer as the
 * reason (today: "no builder available"). */
int builder_gate(void *ctx, git_repository *view, const char *ref, const git_oid *old_id,
                 const git_oid *new_id, struct progress *p, char **reason);

/* ---- slot.c: concurrent-session limits ------------------------------------
 *
 * A limit of n sessions for a name is n files <dir>/<kind>.<name>.<i>; a
 * session holds one under flock for its life, so a process that dies,
 * however it dies, frees its slot. */

/* Takes a free slot of kind/name among limit. On success *fd holds the
 * lock (close it to free the slot). Errors: FF_EBUSY (all limit slots are
 * taken), FF_EINVAL (a name that is empty, too long or holds '/' or a
 * control character), FF_EIO. */
int slot_take(int *fd, const char *dir, const char *kind, const char *name, unsigned limit,
              struct ff_err *err);

/* Removes slot files nobody holds, so that names seen once (addresses) do
 * not pile up. Errors: FF_EIO (dir unreadable); files that vanish or are
 * held are skipped. */
int slot_sweep(const char *dir, struct ff_err *err);

/* ---- spawn.c: the git program as a child, and the byte pump ---------------
 *
 * The child is our own binary (/proc/self/exe) with an environment of only
 * what it needs; fd 0-2 are pipes to the session, fd 3 the daemon's log, fd
 * 4 (receive-pack only) a pipe holding the service key for the gate: a pipe
 * rather than a variable, so that the key is read once and is not left in
 * /proc/<pid>/environ for the life of a process that parses a client's pack. */

#define SPAWN_ENV_USER "FF_GITD_USER"          /* the pushing user */
#define SPAWN_ENV_APP "FF_GITD_APP"            /* <owner>/<app> */
#define SPAWN_ENV_REQID "FF_GITD_REQID"        /* the session's request id */
#define SPAWN_ENV_LOG_FD "FF_GITD_LOG_FD"      /* where log lines go */
#define SPAWN_ENV_LOG_LEVEL "FF_GITD_LOG_LEVEL" /* debug, info, warn or error */
#define SPAWN_ENV_BUILDER_URL "FF_GITD_BUILDER_URL"
#define SPAWN_ENV_BUILDER_CA "FF_GITD_BUILDER_CA"
#define SPAWN_ENV_KEY_FD "FF_GITD_KEY_FD"      /* read the service key here */
#define SPAWN_LOG_FD 3
#define SPAWN_KEY_FD 4
/* Bytes buffered from the child's stdout and stderr for the channel: a
 * few SSH packets, so that neither side waits on the other for long. */
#define SPAWN_BUF 65536
/* Bytes read from the channel for the child's stdin at once. libssh 0.10
 * re-opens the client's window to 1 280 000 bytes (its WINDOWBASE) on every
 * read, however much it still holds; reads at least that large consume as
 * much as each one lets in, so what libssh holds stays bounded. */
#define SPAWN_IN_BUF (2u << 20)
/* Data the client may leave queued in libssh before the session is
 * dropped: an honest client stays under two windows; libssh keeps what a
 * hostile one sends past its window. */
#define SPAWN_QUEUED_MAX (16u << 20)
/* How long a child that is told to stop (idle timeout) gets before SIGKILL. */
#define SPAWN_KILL_GRACE_MS 2000

struct spawn_spec {
    char **argv;       /* argv[0] is a name; the program is /proc/self/exe */
    char **envp;       /* the whole environment */
    char *key;         /* service key for fd 4, or NULL; wiped once written */
    unsigned idle_timeout_s;
    const char *reqid;
};

/* Runs spec's child with its stdin fed from the channel and its stdout and
 * stderr sent back (stderr as extended data) until the child has exited
 * and everything it wrote is sent, or the client is gone (then the child
 * keeps running with its input closed and is waited for, so that a push
 * whose build runs on still completes). *exit_status is the child's exit
 * code, 128 + signal when killed, or -1 when the client went away. The
 * event must already hold the session. Errors: FF_EIO (pipes, fork),
 * FF_ETIMEOUT (nothing moved for idle_timeout_s: the child was killed),
 * FF_ENET (the client broke the protocol, e.g. flooding past its window). */
int spawn_run(struct ssh_session_struct *ssh, struct ssh_event_struct *event,
              struct ssh_channel_struct *chan, const struct spawn_spec *spec, int *exit_status,
              struct ff_err *err);

/* In a child started by spawn_run (main.c calls it right after
 * ff_log_open): sends log lines to the descriptor SPAWN_ENV_LOG_FD names,
 * not to the client's stderr, at the daemon's level (SPAWN_ENV_LOG_LEVEL).
 * Does nothing outside such a child. */
void spawn_child_log_setup(void);

/* ---- session.c and sshd.c: connections ------------------------------------ */

/* What every connection process inherits from the listener. */
struct sshd {
    const struct gitd_config *cfg;
    struct ssh_bind_struct *bind;    /* holds the host key */
    struct builder_client *builder;
    char *service_key;               /* for the receive-pack gate; a session
                                      * wipes its copy once the git program
                                      * has it (or, for upload-pack, before) */
};

/* Most failed authentication requests on one connection: OpenSSH offers
 * every key of an agent in turn (its own servers allow 6 failures); each
 * unknown key costs a question to the builder. */
#define SESSION_AUTH_FAILURES_MAX 10
/* How long the end of a session waits for the client to close the channel
 * after the exit status, so that it does not see a disconnect first. */
#define SESSION_CLOSE_WAIT_MS 5000

/* Serves one accepted connection fd (closed before returning) from peer (a
 * numeric address) in a process of its own, then returns the process's
 * exit code: 0 when a command ran and exited 0, else 1. Never returns
 * early for what the client does; everything is logged. */
int session_serve(struct sshd *srv, int fd, const char *peer);

/* Loads the host key at path, or makes an ed25519 key there (0600, never
 * replacing a file) when there is none. A key file readable by group or
 * others is refused. On success *out (ssh_key_free) belongs to the caller
 * and *fingerprint (free) is its SHA256 fingerprint. Errors: FF_EINVAL (not
 * a private key), FF_EDENIED (mode), FF_EIO, FF_ECRYPTO. */
int sshd_host_key_load(const char *path, struct ssh_key_struct **out, char **fingerprint,
                       struct ff_err *err);

/* Runs the SSH front until SIGTERM, SIGINT or SIGHUP: loads the host and
 * service keys, binds, drops to [server] user, then accepts and forks a
 * session per connection. Start-up failures (bad key, cannot bind, cannot
 * drop) return FF_EIO, FF_EINVAL or FF_EDENIED with a message before
 * anything is served; after that it returns 0. Sessions outlive it. */
int sshd_serve(const struct gitd_config *cfg, struct ff_err *err);

/* SHA256:<base64 without padding> of a public key, as ssh-keygen -l and the
 * builder write it. Returns 0, FF_ECRYPTO or FF_ENOMEM; *out (free) belongs
 * to the caller. */
int sshd_key_fingerprint(struct ssh_key_struct *key, char **out);

#endif
