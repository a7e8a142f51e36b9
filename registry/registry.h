/* ff-registry's private header: the declarations every file of the daemon
 * shares, grouped by the file that defines them. */
#ifndef REGISTRY_H
#define REGISTRY_H

#include "ff_buf.h"
#include "ff_conf.h"
#include "ff_digest.h"
#include "ff_err.h"
#include "ff_http_server.h"
#include "ff_jwt.h"
#include "ff_log.h"
#include "ff_ratelimit.h"
#include "ff_scope.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- name.c: repository names, tags and references ------------------- */

/* Longest repository name: clients cap "host[:port]/name" at 255
 * characters (OCI distribution spec), so a longer name could not be pulled
 * anyway; it also bounds the keys we store. */
#define NAME_LEN_MAX 255
/* Most path components of a repository name: "owner/app/arch" style names
 * need three or four; eight leaves room without inviting directory-tree
 * abuse in listings. */
#define NAME_DEPTH_MAX 8
/* Longest tag, from the OCI grammar [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. */
#define TAG_LEN_MAX 128

/* Checks a repository name against the OCI grammar
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 * (which rules out "..", empty components and leading or trailing '/'),
 * NAME_LEN_MAX and NAME_DEPTH_MAX. Returns 0 or FF_EINVAL with a message
 * such as `repository name "a/../b": component 2 ".." must start with
 * [a-z0-9]`; the name is quoted with unprintable bytes replaced by '?'. */
int name_validate(const char *name, struct ff_err *err);

/* Checks a tag against [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. Returns 0 or
 * FF_EINVAL with a message naming the offending character. */
int tag_validate(const char *tag, struct ff_err *err);

enum reference_kind {
    REFERENCE_TAG,
    REFERENCE_DIGEST
};

/* The <reference> of /v2/<name>/manifests/<reference>: a tag or a digest. */
struct reference {
    enum reference_kind kind;
    char tag[TAG_LEN_MAX + 1]; /* REFERENCE_TAG: the tag; "" otherwise */
    struct ff_digest digest;   /* REFERENCE_DIGEST: the digest */
};

/* Parses a reference: anything with a ':' is a digest (tags cannot hold
 * one) and must be "sha256:<64 hex>"; anything else must be a valid tag.
 * Returns 0 or FF_EINVAL (malformed tag or digest, or a digest algorithm
 * other than sha256). */
int reference_parse(const char *ref, struct reference *out, struct ff_err *err);

/* ---- manifest.c: manifest and index parsing ------------------------------ */

/* Largest manifest accepted: the OCI distribution spec suggests registries
 * accept at least 4 MiB, and real manifests are a few KiB, so this admits
 * every real one while bounding memory per request. */
#define MANIFEST_SIZE_MAX (4u << 20)
/* Most layers in an image manifest: 300-layer images exist in the wild;
 * 1024 passes all of them and still bounds the work per manifest. */
#define MANIFEST_LAYERS_MAX 1024
/* Most entries in an index: a multi-arch index with attestations has a few
 * dozen; 1024 leaves ample room. */
#define MANIFEST_INDEX_ENTRIES_MAX 1024
/* Longest media type: RFC 6838 caps type and subtype at 127 characters
 * each, so "type/subtype" is at most 255. */
#define MEDIA_TYPE_MAX 255

#define MEDIA_TYPE_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_TYPE_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_TYPE_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MEDIA_TYPE_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

enum manifest_kind {
    MANIFEST_OCI_MANIFEST,
    MANIFEST_OCI_INDEX,
    MANIFEST_DOCKER_MANIFEST,
    MANIFEST_DOCKER_LIST
};

/* Platform of an index entry. Strings are borrowed from the manifest. */
struct platform {
    const char *os;
    const char *architecture;
    const char *variant; /* NULL when absent */
};

/* A content descriptor. Strings and JSON are borrowed from the manifest
 * that holds the descriptor and live as long as it does. */
struct descriptor {
    const char *media_type;
    struct ff_digest digest;
    int64_t size;                /* >= 0 */
    const char *artifact_type;   /* NULL when absent */
    const json_t *annotations;   /* object of strings, or NULL when absent */
    bool has_platform;           /* index entries only */
    struct platform platform;
};

/* A parsed manifest. Every pointer is owned by the manifest (manifest_free);
 * strings point into its JSON document, root. */
struct manifest {
    enum manifest_kind kind;
    const char *media_type;      /* one of the MEDIA_TYPE_* constants */
    struct ff_digest digest;     /* sha256 of the bytes as received */
    const char *artifact_type;   /* the manifest's "artifactType", or NULL */
    bool has_config;             /* image manifests: always true */
    struct descriptor config;
    struct descriptor *layers;   /* image manifests */
    size_t n_layers;
    struct descriptor *manifests; /* indexes */
    size_t n_manifests;
    bool has_subject;            /* OCI types only */
    struct descriptor subject;
    const json_t *annotations;   /* OCI types: object of strings, or NULL */
    json_t *root;
};

/* True when content_type (a Content-Type header value; parameters after
 * ';' are ignored, type and subtype compared case-insensitively) is one of
 * the four manifest types we store. The manifest PUT route asks this first
 * and answers MANIFEST_INVALID / unsupported for anything else, Docker
 * schema 1 included; manifest_parse then only fails with FF_EINVAL or
 * FF_ETOOBIG, so the route can map its errors without inspecting messages. */
bool manifest_media_type_supported(const char *content_type);

/* Parses and validates len bytes of a manifest or index. content_type may
 * be NULL (stored manifests re-read without a header); when given, it must
 * be supported and the body's "mediaType", when present, must equal it.
 * Without a body "mediaType" the Content-Type decides (OCI rule); Docker
 * types must carry "mediaType" in the body. "schemaVersion" must be 2.
 * Descriptors need a valid "mediaType" (RFC 6838 grammar), a sha256
 * "digest" and a non-negative integer "size". An image manifest must not
 * hold "manifests" and an index must not hold "config" or "layers" (the
 * content-confusion rule). Unknown fields are ignored, as the OCI spec
 * requires; duplicate keys are refused. On success *out belongs to the
 * caller (manifest_free). Errors: FF_ETOOBIG (more than MANIFEST_SIZE_MAX
 * bytes), FF_EINVAL (anything else wrong, with the field in the message),
 * FF_ENOMEM, FF_ECRYPTO. */
int manifest_parse(const char *data, size_t len, const char *content_type,
                   struct manifest **out, struct ff_err *err);

/* NULL-safe. */
void manifest_free(struct manifest *m);

/* The artifactType a referrers list shows for m (distribution spec,
 * "Listing Referrers"): the manifest's artifactType; else, for an image
 * manifest, its config media type; else NULL (indexes without one). The
 * string is borrowed from m. */
const char *manifest_referrer_artifact_type(const struct manifest *m);

enum manifest_ref_kind {
    MANIFEST_REF_BLOB,     /* config or layer: must exist in the repository */
    MANIFEST_REF_MANIFEST, /* index entry: must exist in the repository */
    MANIFEST_REF_SUBJECT   /* need NOT exist: the spec requires accepting a
                              referrer pushed before its subject */
};

/* Called once per reference; a non-zero return stops the walk. */
typedef int (*manifest_ref_fn)(void *ctx, enum manifest_ref_kind kind,
                               const struct descriptor *d);

/* Calls fn for every descriptor m refers to, in document order: config,
 * layers, index entries, then subject. The same digest may come more than
 * once (an empty config reused as a layer). Returns 0 or the first
 * non-zero value fn returned. */
int manifest_foreach_ref(const struct manifest *m, manifest_ref_fn fn, void *ctx);

/* ---- blobstore.c: content-addressed, crash-safe blob storage -------------
 *
 * Under the store's root:
 *   lock                   flock()ed while a process has the store open
 *   blobs/sha256/ab/<hex>  committed blobs, named by digest, never modified
 *   tmp/                   blobs being written; leftovers are crash debris
 *   uploads/               upload sessions (upload.c)
 * All on one file system, so link() and rename() into blobs/ are atomic. A
 * blob is visible only once its bytes and its directory entry are on disk
 * and its digest matched: after a crash every blob is whole or absent. */

/* Largest blob by default: bigger than any sane layer, small enough that a
 * runaway upload cannot fill a disk unnoticed. The daemon makes it
 * configurable. */
#define BLOB_SIZE_MAX_DEFAULT ((int64_t)32 << 30)

struct blob_store;
struct blob_writer;

/* Opens (creating with mode 0700 when missing) the store at root, takes
 * the lock file, and removes everything in tmp/ (blobs a crash cut short;
 * none was acknowledged). max_blob_size <= 0 means BLOB_SIZE_MAX_DEFAULT.
 * *out belongs to the caller (blob_store_free). Errors: FF_EBUSY (another
 * process has the store open), FF_EIO, FF_ENOMEM. */
int blob_store_open(const char *root, int64_t max_blob_size, struct blob_store **out,
                    struct ff_err *err);

/* Opens the store beside a registry that has it open, for `ff-registry
 * gc`: no lock is taken and tmp/ is left alone (it belongs to the serving
 * process). Only reading, iterating and deleting blobs are meant for such
 * a handle; commits stay with the registry. Errors: FF_EIO, FF_ENOMEM. */
int blob_store_open_shared(const char *root, struct blob_store **out, struct ff_err *err);

/* Releases the lock and frees bs. NULL-safe. */
void blob_store_free(struct blob_store *bs);

/* The root directory's descriptor (borrowed, valid until blob_store_free),
 * for upload.c which keeps its sessions under the same root. */
int blob_store_root_fd(const struct blob_store *bs);

/* The largest blob the store accepts. */
int64_t blob_store_max_size(const struct blob_store *bs);

/* Size of a committed blob. Errors: FF_ENOTFOUND, FF_EIO. */
int blob_store_stat(struct blob_store *bs, const struct ff_digest *d, int64_t *size,
                    struct ff_err *err);

/* Opens a committed blob for reading; *fd (O_RDONLY, close-on-exec) belongs
 * to the caller. Errors: FF_ENOTFOUND, FF_EIO. */
int blob_store_open_read(struct blob_store *bs, const struct ff_digest *d, int *fd,
                         int64_t *size, struct ff_err *err);

/* Opens the committed blob d a second time with O_DIRECT, if the file
 * system allows it and it is still the file fd has open (a GC may have
 * removed it and a push brought it back). Returns the descriptor (the
 * caller's) or -1: the caller then reads through fd only. */
int blob_store_open_direct(struct blob_store *bs, const struct ff_digest *d, int fd);

/* Removes a committed blob (for GC; readers that have it open keep
 * reading). Not fsync'd: a crash may bring a deleted blob back, and the
 * next GC removes it again. Errors: FF_ENOTFOUND, FF_EIO. */
int blob_store_delete(struct blob_store *bs, const struct ff_digest *d, struct ff_err *err);

/* Called once per committed blob; mtime is the last commit of that digest
 * (a re-upload of an existing blob refreshes it, so GC can keep blobs
 * younger than its grace period). A non-zero return stops the walk. */
typedef int (*blob_store_iter_fn)(void *ctx, const struct ff_digest *d, int64_t size,
                                  time_t mtime);

/* Walks every committed blob (entries whose name is not a digest are
 * skipped). Returns 0, the first non-zero value fn returned, or FF_EIO. */
int blob_store_iterate(struct blob_store *bs, blob_store_iter_fn fn, void *ctx,
                       struct ff_err *err);

/* Commits a finished file as a blob. The file is name in directory dirfd
 * (which must be on the store's file system) and open as fd (for reading
 * and fsync). actual is its digest when the caller hashed it while it was
 * written; NULL makes the store hash fd from offset 0. expected, when not
 * NULL, must equal the digest. The file is fsync'd and hard-linked into
 * blobs/; if that blob exists already it is kept (same digest, same bytes)
 * and its mtime refreshed. The fan-out directory is fsync'd, so on success
 * the blob survives a crash. The source name is left in place for the
 * caller to remove, and the caller must never write to it again: it may now
 * be the blob's own inode. This is the store's one commit path
 * (blob_writer_commit and upload_finish use it). *actual_out and *size are
 * written on success and may be NULL. Errors: FF_EINVAL (digest mismatch; the message names both
 * digests; nothing was published), FF_ETOOBIG (larger than the store's
 * maximum), FF_EIO, FF_ENOMEM, FF_ECRYPTO. */
int blob_store_adopt(struct blob_store *bs, int dirfd, const char *name, int fd,
                     const struct ff_digest *actual, const struct ff_digest *expected,
                     struct ff_digest *actual_out, int64_t *size, struct ff_err *err);

/* Starts a blob in tmp/, hashed as it is written. *out belongs to the
 * caller (blob_writer_free). Errors: FF_EIO, FF_ENOMEM, FF_ECRYPTO. */
int blob_writer_new(struct blob_store *bs, struct blob_writer **out, struct ff_err *err);

/* Appends len bytes, written and hashed through a spool (so a write
 * error may be reported by a later call or by the commit; no fsync until
 * commit). Errors: FF_ETOOBIG (the blob would pass the store's maximum;
 * nothing taken), FF_EIO (disk full, ...), FF_ECRYPTO, FF_ENOMEM, and
 * FF_EINVAL after a failed write or a commit. */
int blob_writer_write(struct blob_writer *w, const void *data, size_t len,
                      struct ff_err *err);

/* Bytes taken so far (all on disk once committed). */
int64_t blob_writer_size(const struct blob_writer *w);

/* Finishes the blob: checks it against expected (may be NULL: the digest
 * is then whatever was written), then commits it as blob_store_adopt does
 * and removes the temporary file. On any failure, including a digest
 * mismatch (FF_EINVAL, both digests in the message), the temporary file is
 * removed and nothing is visible in blobs/. The writer is spent either way;
 * free it. *actual and *size may be NULL. Errors as blob_store_adopt. */
int blob_writer_commit(struct blob_writer *w, const struct ff_digest *expected,
                       struct ff_digest *actual, int64_t *size, struct ff_err *err);

/* Frees w, removing its temporary file if it was not committed (this is
 * how an upload is aborted). NULL-safe. */
void blob_writer_free(struct blob_writer *w);

/* Writes all len bytes at offset of fd (pwrite, retrying short writes and
 * EINTR) and starts write-back of each finished 8 MiB stretch, so the
 * fsync at commit does not have to flush gigabytes at once. Errors: FF_EIO
 * (errno text in the message). */
int blob_fd_write(int fd, int64_t offset, const void *data, size_t len, struct ff_err *err);

/* What O_DIRECT wants buffers, offsets and lengths aligned to: the
 * logical block size, which the page size covers on every disk we run on. */
#define BLOB_DIRECT_ALIGN ((size_t)4096)

/* Opens dir_fd/name again with O_DIRECT and access (O_RDONLY, O_WRONLY),
 * if the file system allows it and it is the file same_as has open (no
 * symlink followed). Returns the descriptor (the caller's) or -1. */
int blob_fd_reopen_direct(int dir_fd, const char *name, int access, int same_as);

/* ---- blobread.c: reading a blob for a GET ------------------------------ */

struct blob_reader;

/* A reader of length bytes of the committed blob d from offset on, read
 * from fd (taken in every case; closed by blob_reader_free, or at once on
 * error). Large blobs that are not in the page cache are read with
 * O_DIRECT a few MiB ahead; everything else through fd. *out belongs to
 * the caller (blob_reader_free). Errors: FF_EINVAL (offset + length past
 * INT64_MAX), FF_ENOMEM. */
int blob_reader_new(struct blob_store *bs, const struct ff_digest *d, int fd, uint64_t offset,
                    uint64_t length, struct blob_reader **out);

/* An ff_http_read_at_fn: up to max bytes of the range from its byte pos on.
 * Returns the count, or FF_EIO if the blob file ended early or failed,
 * FF_EINVAL for a pos past the range. */
ssize_t blob_reader_read(void *r, uint64_t pos, char *buf, size_t max);

/* Frees a blob_reader (void * to serve as the response's free callback);
 * NULL-safe. */
void blob_reader_free(void *r);

/* ---- spool.c: pipelined writing and hashing of a blob -------------------- */

struct spool;

/* Starts a spool that writes what it is given to fd from offset on and
 * feeds it to ctx (borrowed, may be NULL: write only), in 512 KiB pieces
 * that one helper thread hashes and another writes, both started when the
 * first piece is full. Until
 * spool_flush returns, neither fd's bytes past offset nor ctx may be used
 * by anyone else. *out belongs to the caller (spool_free). Errors:
 * FF_ENOMEM. */
int spool_new(int fd, int64_t offset, struct ff_digest_ctx *ctx, struct spool **out,
              struct ff_err *err);

/* Opens dir_fd/name, which must be the spool's file, a second time with
 * O_DIRECT: whole aligned pieces then bypass the page cache, whose copy
 * of every pushed byte was most of a large push's cost. Best effort: if
 * the file system refuses O_DIRECT or name is another file, every piece
 * keeps going through fd. The spool owns the descriptor. */
void spool_direct_open(struct spool *sp, int dir_fd, const char *name);

/* Takes len bytes (copied). Errors: FF_ENOMEM, and an earlier piece's
 * write or hash failure (FF_EIO, FF_ECRYPTO) reported late; after an error
 * the spool is only good for spool_free. */
int spool_write(struct spool *sp, const void *data, size_t len, struct ff_err *err);

/* Returns once every byte taken is written to fd and hashed into ctx.
 * Errors: as spool_write. */
int spool_flush(struct spool *sp, struct ff_err *err);

/* Stops the helper (a piece it holds is still written) and frees sp;
 * bytes taken since the last flush may or may not reach fd. NULL-safe. */
void spool_free(struct spool *sp);

/* ---- upload.c: upload sessions (chunked, resumable, crash-safe) ----------
 *
 * A session lives in uploads/<id>/ under the blob store's root: "data" holds
 * the bytes acknowledged so far and "info" (JSON, replaced atomically)
 * records the repository, the creation time and the acknowledged size. A
 * chunk is acknowledged once its bytes are fsync'd and info records the new
 * size; after a crash the session resumes at that size and any unrecorded
 * tail is cut off. Sessions in use are cached in memory (with the running
 * digest, so finishing needs no second pass over the data); the cache is
 * shared by all threads behind one mutex. */

/* Length of an upload id: 128 random bits in lower-case hex, unguessable,
 * so knowing an id is as good as holding the session. */
#define UPLOAD_ID_LEN 32
/* Most sessions cached in memory at once. Each holds two descriptors and a
 * digest state, so the cache costs at most 512 descriptors (the daemon must
 * allow for that in RLIMIT_NOFILE); idle sessions are evicted first and
 * re-read from disk later, and only 256 uploads in progress at the same
 * instant are refused (FF_EBUSY): dozens of clients pushing a few layers
 * each. */
#define UPLOAD_LIVE_MAX 256
/* Largest info file read: a repository name and two numbers. */
#define UPLOAD_INFO_MAX 4096

struct upload_store;
struct upload;

/* Opens the session store under bs's root (creating uploads/ when missing)
 * and removes half-created sessions a crash left behind. bs must outlive
 * the upload store. *out belongs to the caller (upload_store_free).
 * Errors: FF_EIO, FF_ENOMEM. */
int upload_store_open(struct blob_store *bs, struct upload_store **out, struct ff_err *err);

/* Frees the store and every cached session. No handle may be open.
 * NULL-safe. */
void upload_store_free(struct upload_store *us);

/* Creates an empty session for repository repo (validated with
 * name_validate) and writes its id, NUL-terminated, into id. The session
 * is on disk when this returns. Errors: FF_EINVAL (bad name), FF_EIO,
 * FF_ECRYPTO (no randomness), FF_ENOMEM. */
int upload_create(struct upload_store *us, const char *repo, char id[UPLOAD_ID_LEN + 1],
                  struct ff_err *err);

/* Opens session id of repository repo (both straight from the URL). *out
 * belongs to the caller (upload_close). Errors: FF_ENOTFOUND (malformed id,
 * no such session, or one of another repository), FF_EBUSY (too many
 * sessions in use at once), FF_EIO, FF_ENOMEM. */
int upload_open(struct upload_store *us, const char *repo, const char *id,
                struct upload **out, struct ff_err *err);

/* Releases a handle, aborting an append it left unfinished. NULL-safe. */
void upload_close(struct upload *u);

/* The session id (borrowed from u). */
const char *upload_id(const struct upload *u);

/* Bytes acknowledged so far: what the Range header of a status answer
 * reports and where the next chunk must start. */
int64_t upload_size(const struct upload *u);

/* Starts writing a chunk that the client says begins at offset. Until
 * upload_append_end or upload_append_abort, other appends, finish and
 * cancel on this session fail with FF_EBUSY (a concurrent PATCH is refused,
 * not interleaved). Errors: FF_ERANGE (offset is not upload_size(): answer
 * 416), FF_EBUSY, FF_ENOTFOUND (finished, cancelled or expired meanwhile),
 * FF_ENOMEM, FF_ECRYPTO. */
int upload_append_begin(struct upload *u, int64_t offset, struct ff_err *err);

/* Writes the next len bytes of the chunk as they arrive. Errors:
 * FF_ETOOBIG (the upload would pass the blob store's maximum), FF_EIO,
 * FF_ECRYPTO, FF_EINVAL (no append begun). After an error, abort. */
int upload_append_write(struct upload *u, const void *data, size_t len, struct ff_err *err);

/* Acknowledges the chunk: fsyncs the data, records the new size in info,
 * and writes it to *size (may be NULL). Only after this returns 0 may the
 * client be told (202). On failure the chunk is dropped as by
 * upload_append_abort. Errors: FF_EIO, FF_EINVAL (no append begun). */
int upload_append_end(struct upload *u, int64_t *size, struct ff_err *err);

/* Drops the chunk in progress (the session stays at its acknowledged size)
 * and ends the append. No-op when no append is in progress. */
void upload_append_abort(struct upload *u);

/* The three steps above for a chunk held in memory. */
int upload_append(struct upload *u, int64_t offset, const void *data, size_t len,
                  int64_t *size, struct ff_err *err);

/* Completes the upload as blob expected (required: the spec makes the
 * digest parameter mandatory), committing it through blob_store_adopt,
 * then removes the session. *size (may be NULL) gets the blob's size.
 * On FF_EINVAL (digest mismatch) the session stays as it was, so the
 * client may retry or cancel. Errors: FF_EINVAL, FF_EBUSY (an append is in
 * progress), FF_ENOTFOUND (gone meanwhile), FF_EIO, FF_ENOMEM, FF_ECRYPTO.
 * The handle must still be closed. */
int upload_finish(struct upload *u, const struct ff_digest *expected, int64_t *size,
                  struct ff_err *err);

/* Removes the session and its data. The handle must still be closed.
 * Errors: FF_EBUSY, FF_ENOTFOUND, FF_EIO. */
int upload_cancel(struct upload *u, struct ff_err *err);

/* Removes every session with no activity (last chunk or creation) for at
 * least max_age seconds and no open handle, and half-created ones that old.
 * *count (may be NULL) gets how many were removed. Holds the store's mutex
 * throughout, so call it from a periodic job, not per request. Errors:
 * FF_EIO (the walk failed; some sessions may have been removed). */
int upload_expire(struct upload_store *us, int64_t max_age, unsigned *count,
                  struct ff_err *err);

/* Called once per session; strings are borrowed for the call only. A
 * non-zero return stops the walk. fn runs under the store's mutex and must
 * not call upload_* functions. */
typedef int (*upload_iter_fn)(void *ctx, const char *id, const char *repo, int64_t size,
                              time_t created, time_t updated);

/* Walks every session on disk (for metrics and GC). Sessions whose info
 * cannot be read are skipped. Returns 0, the first non-zero value fn
 * returned, or FF_EIO. */
int upload_iterate(struct upload_store *us, upload_iter_fn fn, void *ctx, struct ff_err *err);


/* ---- meta.c: repositories, blob links, manifests, tags and referrers in
 * SQLite (WAL). A blob is served from a repository only when the
 * repository links it; storage itself is shared and deduplicated. ---- */

struct meta;
struct ff_db;

/* A manifest as recorded: digest and size of its bytes (kept in the blob
 * store), the media type it was pushed with, and what the referrers API
 * reports about it. Strings are owned by the struct (meta_manifest_release). */
struct meta_manifest {
    char digest[FF_DIGEST_STR_SIZE];
    char *media_type;
    int64_t size;
    char *artifact_type;  /* NULL when none */
    char *annotations;    /* compact JSON object, or NULL */
};

/* What a manifest PUT records, all borrowed from the caller. */
struct meta_manifest_put {
    const char *repo;
    const char *digest;
    const char *media_type;
    int64_t size;
    const char *artifact_type;   /* for referrers; NULL when none */
    const char *subject;         /* digest of the subject, or NULL */
    const char *annotations;     /* compact JSON, or NULL */
    const char *const *blobs;    /* digests that must be linked in repo */
    size_t n_blobs;
    const char *const *children; /* manifests that must exist in repo */
    size_t n_children;
    const char *tag;             /* tag to point at it, or NULL */
    bool tag_immutable;          /* the tag matches an immutable pattern */
};

/* Opens (creating and migrating) the metadata database at path. *out is
 * the caller's (meta_free). Errors: as ff_db_open. */
int meta_open(const char *path, struct meta **out, struct ff_err *err);
void meta_free(struct meta *m);

/* Links a stored blob of size bytes into repo (created on first use).
 * Idempotent. Errors: FF_EDB, FF_EBUSY. */
int meta_blob_link(struct meta *m, const char *repo, const char *digest, int64_t size,
                   struct ff_err *err);

/* Whether repo links digest: 0 and *size, or FF_ENOTFOUND. */
int meta_blob_linked(struct meta *m, const char *repo, const char *digest, int64_t *size,
                     struct ff_err *err);

/* Removes the link (the bytes go at the next GC if nothing else uses
 * them). FF_ENOTFOUND when not linked. */
int meta_blob_unlink(struct meta *m, const char *repo, const char *digest, struct ff_err *err);

/* Records a manifest and, if given, moves its tag, in one transaction.
 * Errors: FF_ENOTFOUND with the missing digest in the message (a blob not
 * linked in repo, or a child manifest not in repo: MANIFEST_BLOB_UNKNOWN),
 * FF_EDENIED (the tag is immutable and points elsewhere), FF_EDB. */
int meta_manifest_put(struct meta *m, const struct meta_manifest_put *put, struct ff_err *err);

/* The reference checks of meta_manifest_put alone, without writing, so a
 * refused manifest is refused before its bytes are stored. Errors as
 * meta_manifest_put's FF_ENOTFOUND, FF_EDB. */
int meta_manifest_refs_check(struct meta *m, const struct meta_manifest_put *put,
                             struct ff_err *err);

/* Looks up a manifest of repo by digest or tag (reference is either).
 * Errors: FF_ENOTFOUND. */
int meta_manifest_get(struct meta *m, const char *repo, const char *reference,
                      struct meta_manifest *out, struct ff_err *err);
void meta_manifest_release(struct meta_manifest *mm);

/* Deletes the manifest digest of repo and every tag pointing at it.
 * Errors: FF_ENOTFOUND, FF_EDENIED (an immutable tag points at it: the
 * caller says which tags are immutable through is_immutable). */
int meta_manifest_delete(struct meta *m, const char *repo, const char *digest,
                         bool (*is_immutable)(void *ctx, const char *tag), void *ctx,
                         struct ff_err *err);

/* Deletes one tag (the manifest stays). FF_ENOTFOUND, FF_EDENIED. */
int meta_tag_delete(struct meta *m, const char *repo, const char *tag, bool immutable,
                    struct ff_err *err);

/* Calls fn for up to n names after last (NULL: from the start) in
 * lexical order: tags of repo, or repositories. *more says whether more
 * follow. Errors: FF_ENOTFOUND (no such repository, tags only), FF_EDB. */
int meta_tags_list(struct meta *m, const char *repo, const char *last, int64_t n,
                   int (*fn)(void *ctx, const char *name), void *ctx, bool *more,
                   struct ff_err *err);
int meta_catalog(struct meta *m, const char *last, int64_t n,
                 int (*fn)(void *ctx, const char *name), void *ctx, bool *more,
                 struct ff_err *err);

/* Calls fn with every manifest of repo whose subject is subject (and whose
 * artifact type is artifact_type, when that is not NULL). */
int meta_referrers(struct meta *m, const char *repo, const char *subject,
                   const char *artifact_type,
                   int (*fn)(void *ctx, const struct meta_manifest *mm), void *ctx,
                   struct ff_err *err);

/* Whether a repository of that name exists (has ever been pushed to). */
bool meta_repo_exists(struct meta *m, const char *repo);

/* The database under m, for gc.c's sweeps (borrowed). */
struct ff_db *meta_db(struct meta *m);

/* ---- config.c: the daemon's configuration ------------------------------- */

struct registry_config {
    struct ff_conf *conf;          /* every value, with defaults */
    enum ff_log_level log_level;
};

/* Reads and checks the INI file at path (required keys, key files listed,
 * tag patterns). On success out->conf belongs to out (config_release).
 * Errors: as ff_conf_load, and FF_EINVAL for a missing required key. */
int config_load(const char *path, struct registry_config *out, struct ff_err *err);
void config_release(struct registry_config *cfg);

/* Whether tag matches one of [tags] immutable (fnmatch patterns). */
bool config_tag_immutable(const struct registry_config *cfg, const char *tag);

/* ---- main.c: the daemon's state ------------------------------------------ */

struct registry {
    struct registry_config cfg;
    struct blob_store *blobs;
    struct upload_store *uploads;
    struct meta *meta;
    struct ff_jwt_keyset *keys;
    struct ff_ratelimit *rl_subject;
    struct ff_ratelimit *rl_ip;
    struct metrics *metrics;
    struct ff_http_server *http;
};

/* ---- auth.c: token verification and access decisions --------------------- */

/* Who a verified token names and what it grants. */
struct auth {
    char subject[FF_RATELIMIT_KEY_MAX + 1];
    struct ff_access access;
};

/* Loads [auth] public_key files into a keyset (kid = ff_pki_key_id of each
 * key). *out belongs to the caller. Errors: as ff_jwt_key_load, FF_EEXIST
 * (the same key twice). */
int auth_keys_load(const struct registry_config *cfg, struct ff_jwt_keyset **out,
                   struct ff_err *err);

/* Decides whether req may do action on (type, name); type NULL asks only
 * for a valid token (the base check). Applies the per-address limit before
 * looking at the token and the per-subject limit after. On true, *out holds
 * the token's subject and grants (auth_release). On false it has answered:
 * 401 with a WWW-Authenticate challenge naming the scope needed, or 429
 * with Retry-After; the handler must not answer again. */
bool auth_require(struct registry *r, struct ff_http_request *req, const char *type,
                  const char *name, unsigned action, struct auth *out);
void auth_release(struct auth *a);

/* auth_require for handlers that need only the yes or no (true: go on;
 * false: it has answered). */
bool auth_permit(struct registry *r, struct ff_http_request *req, const char *type,
                 const char *name, unsigned action);

/* Whether a verified token also grants action on repository name (cross-
 * repository mounts ask about the source). */
bool auth_allows(const struct auth *a, const char *name, unsigned action);

/* ---- metrics.c: Prometheus metrics --------------------------------------- */

struct metrics;
int metrics_new(struct metrics **out, struct ff_err *err);
void metrics_free(struct metrics *m);
/* The ff_http_observe_fn of the server; ctx is the struct metrics. */
void metrics_observe(void *ctx, const char *route, const char *method, unsigned status,
                     uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us);
/* Appends the text exposition format to out. Errors: FF_ETOOBIG, FF_ENOMEM. */
int metrics_render(struct metrics *m, int64_t uploads_in_progress, struct ff_buf *out);

/* ---- routes.c: the HTTP surface and shared answers ----------------------- */

/* Registers every route on r->http. Errors: as ff_http_server_route. */
int routes_register(struct registry *r, struct ff_err *err);

/* Answers {"errors":[{"code","message","detail"}]} (the OCI error body). */
int oci_error(struct ff_http_request *req, unsigned status, const char *code, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));

/* Answers err with the status its code implies; FF_EINVAL uses code_400.
 * Unexpected errors are logged and answered 500 without details. */
int oci_error_from(struct ff_http_request *req, const struct ff_err *err, const char *code_400);

/* Adds Docker-Content-Digest. */
int digest_header(struct ff_http_request *req, const struct ff_digest *d);

/* Validates a repository name from the URL; on false it answered 400
 * NAME_INVALID. */
bool repo_name_check(struct ff_http_request *req, const char *name);

/* Handlers (route_blob.c, route_upload.c, route_manifest.c, route_list.c). */
int blob_get(struct ff_http_request *req);
int blob_delete(struct ff_http_request *req);
int upload_on_headers(struct ff_http_request *req);
int upload_on_body(struct ff_http_request *req, const char *data, size_t len);
int upload_on_complete(struct ff_http_request *req);
int upload_status_get(struct ff_http_request *req);
int upload_cancel_delete(struct ff_http_request *req);
int manifest_get(struct ff_http_request *req);
int manifest_put(struct ff_http_request *req);
int manifest_delete(struct ff_http_request *req);
int tags_get(struct ff_http_request *req);
int catalog_get(struct ff_http_request *req);
int referrers_get(struct ff_http_request *req);

/* ---- gc.c: garbage collection and the guard that makes it safe ---------- */

struct gc_stats {
    int manifests_deleted;
    int links_deleted;
    int blobs_deleted;
    int blobs_seen;
    int64_t bytes_freed;
};

/* Takes the GC guard shared: hold it from committing a blob until its
 * database record exists. Returns a descriptor for gc_guard_leave, or a
 * negative FF_EIO. */
int gc_guard_enter(struct registry *r, struct ff_err *err);
void gc_guard_leave(int guard);

/* One mark-and-sweep pass (see gc.c) keeping everything younger than grace
 * seconds. Safe while the registry serves, in this or another process.
 * Errors: FF_EDB, FF_EBUSY, FF_EIO. */
int gc_run(struct registry *r, int64_t grace, struct gc_stats *stats, struct ff_err *err);

#endif
