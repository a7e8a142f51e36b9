/* The farm's private PKI: a CA, TLS server certificates it signs, and the
 * ES256 (EC P-256) key pairs that sign registry tokens and images.
 *
 * `make up` calls ff_pki_bootstrap once to fill var/ with everything the
 * daemons need; it is idempotent and never replaces a file, so keys that
 * devices have pinned survive every later run. Every key here is EC P-256:
 * it is what ES256 JWTs and cosign signatures use, and every TLS client of
 * the farm (curl, Go's crypto/tls in skopeo, GnuTLS) accepts it.
 *
 * Key and certificate files are PEM: private keys as unencrypted PKCS#8
 * ("PRIVATE KEY"), public keys as SubjectPublicKeyInfo ("PUBLIC KEY"). */
#ifndef FF_PKI_H
#define FF_PKI_H

#include "ff_err.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <stdbool.h>
#include <stddef.h>

/* A key id: 32 lower-case hex characters and a NUL. */
#define FF_PKI_KEY_ID_SIZE 33
/* Longest certificate common name (RFC 5280's ub-common-name). */
#define FF_PKI_CN_MAX 64
/* Longest validity accepted, in days: a CA for a century is already more
 * than any farm needs; the cap catches unit mistakes (seconds for days). */
#define FF_PKI_DAYS_MAX 36500
/* Most extra names on one server certificate: a farm has a handful of
 * host names; the cap bounds the certificate's size. */
#define FF_PKI_NAMES_MAX 64
/* Longest DNS name (RFC 1035: 255 octets on the wire, 253 as text). */
#define FF_PKI_DNS_NAME_MAX 253
/* Largest key or certificate file read: real ones are under 4 KiB, and
 * a bigger file is a mistake we should not parse. */
#define FF_PKI_FILE_MAX (64u << 10)
/* Validity starts this long before "now" so that a client whose clock is
 * a little slow still accepts a certificate made a moment ago. */
#define FF_PKI_BACKDATE_SECONDS 3600
/* CA and server certificate validity used by ff_pki_bootstrap. */
#define FF_PKI_CA_DAYS 3650
#define FF_PKI_SERVER_DAYS 730
#define FF_PKI_CA_NAME "Fleetforge CA"

/* What ff_pki_bootstrap created (bits of *out_created). */
#define FF_PKI_CREATED_CA_KEY (1u << 0)
#define FF_PKI_CREATED_CA_CERT (1u << 1)
#define FF_PKI_CREATED_SERVER_KEY (1u << 2)
#define FF_PKI_CREATED_SERVER_CERT (1u << 3)
#define FF_PKI_CREATED_TOKEN_KEY (1u << 4)
#define FF_PKI_CREATED_TOKEN_PUB (1u << 5)
#define FF_PKI_CREATED_SIGNING_KEY (1u << 6)
#define FF_PKI_CREATED_SIGNING_PUB (1u << 7)

/* Generates a new EC P-256 key pair. On success *out belongs to the caller
 * (EVP_PKEY_free). Returns 0 or FF_ECRYPTO. */
int ff_pki_key_new(EVP_PKEY **out, struct ff_err *err);

/* Returns 0 when key is an EC key on P-256, else FF_EINVAL with a message
 * naming the key type or curve found. */
int ff_pki_key_check(const EVP_PKEY *key, struct ff_err *err);

/* Writes key as PEM to path: the private key (mode 0600) when private_key,
 * else the public key (0644). The file is written under a temporary name
 * in the same directory (created 0600, so a private key is never readable
 * by others at any moment), fsync'd, and renamed into place; an existing
 * path is never replaced. Returns 0, FF_EEXIST (path exists), FF_EIO or
 * FF_ECRYPTO. */
int ff_pki_key_write(const EVP_PKEY *key, const char *path, bool private_key, struct ff_err *err);

/* Reads a PEM private key (private_key) or public key from path and checks
 * that it is EC P-256. On success *out belongs to the caller
 * (EVP_PKEY_free). Returns 0, FF_ENOTFOUND (no such file), FF_EIO,
 * FF_ETOOBIG (larger than FF_PKI_FILE_MAX), or FF_EINVAL (not a PEM key of
 * that kind, or not EC P-256). */
int ff_pki_key_read(const char *path, bool private_key, EVP_PKEY **out, struct ff_err *err);

/* Writes a stable id of key's public half: the first 16 bytes of the
 * SHA-256 of its DER SubjectPublicKeyInfo in lower-case hex. Used as the
 * JWT "kid". Returns 0 or FF_ECRYPTO. */
int ff_pki_key_id(const EVP_PKEY *key, char out[FF_PKI_KEY_ID_SIZE], struct ff_err *err);

/* Makes a new P-256 key and a self-signed CA certificate for it, valid
 * for days (1..FF_PKI_DAYS_MAX) from about now: basicConstraints critical
 * CA:TRUE, keyUsage critical keyCertSign and cRLSign, a subject key
 * identifier, a random 128-bit serial, ECDSA with SHA-256. On success
 * *out_key and *out_cert belong to the caller (EVP_PKEY_free, X509_free).
 * Returns 0, FF_EINVAL (empty or over-long common name), FF_ERANGE (days)
 * or FF_ECRYPTO. */
int ff_pki_ca_new(const char *common_name, int days, EVP_PKEY **out_key, X509 **out_cert,
                  struct ff_err *err);

/* Makes a new P-256 key and a TLS server certificate for it signed by
 * ca_key/ca_cert. Its subjectAltName always holds IP 127.0.0.1, IP ::1 and
 * DNS localhost, then each of names: an IPv4 or IPv6 literal becomes an IP
 * entry, anything else must be a valid DNS name (letters, digits and
 * hyphens in dot-separated labels of 1 to 63 characters, no hyphen at
 * either end of a label, a last label that is not all digits, at most
 * FF_PKI_DNS_NAME_MAX characters; stored in lower case). Duplicates are
 * dropped. It has basicConstraints critical CA:FALSE, keyUsage critical
 * digitalSignature, extendedKeyUsage serverAuth, subject and authority key
 * identifiers. On success *out_key and *out_cert belong to the caller.
 * Returns 0, FF_EINVAL (bad name or common name, or ca_key does not match
 * ca_cert), FF_ERANGE (days, or more than FF_PKI_NAMES_MAX names) or
 * FF_ECRYPTO. */
int ff_pki_server_cert_new(EVP_PKEY *ca_key, X509 *ca_cert, const char *common_name,
                           const char *const *names, size_t n_names, int days, EVP_PKEY **out_key,
                           X509 **out_cert, struct ff_err *err);

/* Writes cert as PEM (mode 0644) the way ff_pki_key_write writes a public
 * key. Returns 0, FF_EEXIST, FF_EIO or FF_ECRYPTO. */
int ff_pki_cert_write(X509 *cert, const char *path, struct ff_err *err);

/* Reads the first PEM certificate in path. On success *out belongs to the
 * caller (X509_free). Returns 0, FF_ENOTFOUND, FF_EIO, FF_ETOOBIG or
 * FF_EINVAL (no PEM certificate). */
int ff_pki_cert_read(const char *path, X509 **out, struct ff_err *err);

/* Makes dir (mode 0700 when it does not exist) hold the farm's keys,
 * creating whichever of these is missing and never touching one that
 * exists:
 *   ca.key, ca.crt            CA FF_PKI_CA_NAME, FF_PKI_CA_DAYS
 *   server.key, server.crt    TLS server certificate signed by that CA,
 *                             FF_PKI_SERVER_DAYS, names as in
 *                             ff_pki_server_cert_new (the first name, or
 *                             "localhost", is its common name)
 *   token.key, token.pub      the builder's registry-token ES256 key pair
 *   signing.key, signing.pub  the image-signing ES256 key pair
 * A missing certificate or public key is made for its existing private key
 * (server.crt is signed with the existing CA). State that cannot be
 * completed without replacing a file is refused before anything is
 * written: a certificate or public key whose private key is missing (except
 * ca.crt when server.crt exists: the CA key may be kept offline), or a
 * server.crt with no CA at all. *out_created (may be NULL) gets the
 * FF_PKI_CREATED_* bits of what was made. Returns 0, FF_ECONFLICT (state
 * above), FF_EINVAL (bad names or an unreadable existing key/cert), FF_EIO
 * or FF_ECRYPTO. Files made before a failure stay; a rerun completes. */
int ff_pki_bootstrap(const char *dir, const char *const *names, size_t n_names,
                     unsigned *out_created, struct ff_err *err);

#endif
