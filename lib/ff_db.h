/* SQLite in WAL mode: numbered migrations, prepared-statement helpers that
 * keep the SQL visible, and write transactions.
 *
 * Threads: a struct ff_db is shared by every thread of a daemon, and each
 * thread that uses it gets its own SQLite connection, opened on first use
 * and closed when the thread exits (a pthread key destructor) or at
 * ff_db_free. SQLite connections cannot run two transactions at once, and
 * last_insert_rowid/changes are per connection, so one connection shared by
 * a thread-per-connection HTTP server would mix requests; a connection per
 * thread keeps every request's transaction its own while WAL lets readers
 * run beside the single writer. Statements returned by ff_db_prepare belong
 * to the calling thread's connection and must be stepped and finalized on
 * that thread.
 *
 * Errors: every message includes SQLite's own text and the first
 * FF_DB_ERR_SQL_MAX characters of the statement, e.g.
 *   statement "INSERT INTO apps(name) VALUES (?)": UNIQUE constraint failed: apps.name */
#ifndef FF_DB_H
#define FF_DB_H

#include "ff_err.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* How long a connection waits for another writer before giving up with
 * FF_EBUSY: far longer than any of our write transactions should take, yet
 * short enough that a stuck writer shows up as errors instead of a hang. */
#define FF_DB_BUSY_TIMEOUT_MS 5000
/* Characters of SQL quoted in an error message: enough to recognise the
 * statement, short enough to leave room for SQLite's text. */
#define FF_DB_ERR_SQL_MAX 60
/* Prepared statements kept per connection. A daemon runs a few dozen
 * distinct queries; beyond this the least recently used one is dropped. */
#define FF_DB_STMT_CACHE_SIZE 64

/* One schema step. Versions start at 1 and strictly increase along the
 * array; sql may hold several statements but no BEGIN/COMMIT (each
 * migration already runs in its own transaction). */
struct ff_db_migration {
    int version;
    const char *sql;
};

struct ff_db;

/* Opens the database at path, creating the file with mode 0600 when it is
 * missing, sets WAL, synchronous=FULL, foreign keys and the busy timeout,
 * then brings the schema up to date: each migration newer than the highest
 * version in table schema_migrations runs in its own transaction together
 * with the row that records it, so a failing migration leaves no trace.
 * The calling thread's connection is the one used for the migrations.
 * On success *out belongs to the caller (ff_db_free). Errors: FF_EINVAL
 * (versions not strictly increasing from 1, NULL sql, a migration that
 * ends its own transaction), FF_EIO (cannot create the file), FF_EDB
 * (SQLite failed, a migration failed, or the database's schema is newer
 * than the newest migration given), FF_EBUSY (another process held the
 * write lock past the timeout), FF_ENOMEM. */
int ff_db_open(const char *path, const struct ff_db_migration *migrations, size_t n,
               struct ff_db **out, struct ff_err *err);

/* Closes every thread's connection and frees db. Call it only once no
 * other thread uses db any more (after joining or stopping them).
 * NULL-safe. */
void ff_db_free(struct ff_db *db);

/* Runs one or more SQL statements that return no rows needed by the
 * caller (DDL, PRAGMA settings, fixed updates). Errors as ff_db_step. */
int ff_db_exec(struct ff_db *db, const char *sql, struct ff_err *err);

/* Compiles exactly one statement for the calling thread's connection,
 * reusing a cached compilation of the same text when one is idle. *out is
 * borrowed: give it back with ff_db_finalize (on the same thread) when
 * done, even after an error from a bind or step. Errors: FF_EDB (syntax
 * error, unknown table...), FF_EINVAL (more than one statement in sql),
 * FF_ENOMEM, FF_EBUSY (schema locked past the timeout). */
int ff_db_prepare(struct ff_db *db, const char *sql, sqlite3_stmt **out, struct ff_err *err);

/* Bind helpers; idx counts from 1 as in SQLite. Text and blobs are copied,
 * so the caller's memory may change right after the call. A NULL s binds
 * SQL NULL. Errors: FF_EINVAL (no such parameter index), FF_ETOOBIG
 * (longer than SQLite allows), FF_ENOMEM. */
int ff_db_bind_text(sqlite3_stmt *stmt, int idx, const char *s, struct ff_err *err);
int ff_db_bind_int64(sqlite3_stmt *stmt, int idx, int64_t v, struct ff_err *err);
int ff_db_bind_blob(sqlite3_stmt *stmt, int idx, const void *p, size_t n, struct ff_err *err);
int ff_db_bind_null(sqlite3_stmt *stmt, int idx, struct ff_err *err);

/* Runs stmt to its next row. Returns 1 when a row is ready (read it with
 * sqlite3_column_*), 0 when the statement is done, or a negative code:
 * FF_EBUSY (the database stayed locked for FF_DB_BUSY_TIMEOUT_MS),
 * FF_ECONFLICT (a UNIQUE, FOREIGN KEY, CHECK or NOT NULL constraint
 * refused the change), FF_ETOOBIG (a value too large), FF_ENOMEM, FF_EDB
 * (anything else). */
int ff_db_step(sqlite3_stmt *stmt, struct ff_err *err);

/* Gives back a statement from ff_db_prepare: a cached one is reset and its
 * bindings cleared for the next user, any other is finalized. NULL-safe. */
void ff_db_finalize(struct ff_db *db, sqlite3_stmt *stmt);

/* Starts a write transaction with BEGIN IMMEDIATE: the write lock is taken
 * now (waiting up to the busy timeout), so two writers serialise here
 * instead of one failing at COMMIT after doing its work. Calling it while
 * this thread's transaction is open is a programmer error (FF_BUG).
 * Errors: FF_EBUSY, FF_EDB. */
int ff_db_begin(struct ff_db *db, struct ff_err *err);

/* Commits this thread's transaction; committing without one is a
 * programmer error. On failure the transaction has been rolled back, so
 * nothing is half applied. Errors: FF_EBUSY, FF_EDB. */
int ff_db_commit(struct ff_db *db, struct ff_err *err);

/* Rolls back this thread's transaction, if one is open (SQLite may already
 * have rolled it back after an error), so it is safe on every failure
 * path. Errors: FF_EDB. */
int ff_db_rollback(struct ff_db *db, struct ff_err *err);

/* Rowid of the last row this thread's connection inserted (0 if none). */
int64_t ff_db_last_insert_id(struct ff_db *db);

/* Rows changed by this thread's most recent INSERT, UPDATE or DELETE. */
int ff_db_changes(struct ff_db *db);

#endif
