"""SSH public keys on a real ff-builder: keys made by ssh-keygen are added,
listed with the fingerprint `ssh-keygen -lf` prints, refused when weak,
malformed or held by anyone already, removed by their owner only, and
looked up by fingerprint with ff-gitd's service key alone."""

import base64
import hashlib
import secrets
import struct
import urllib.parse

import pytest

from conftest import bin_path, run

KEY_FIELDS = {"id", "name", "type", "fingerprint", "created_at"}


def keygen(tmp_path, name, *args, comment=None):
    """A fresh key pair from ssh-keygen; returns (public line, fingerprint)."""
    path = tmp_path / name
    if comment is None:
        comment = f"{name}@test"
    run(["ssh-keygen", "-q", "-N", "", "-C", comment, "-f", path] + list(args))
    line = (tmp_path / f"{name}.pub").read_text()
    fp = run(["ssh-keygen", "-lf", f"{path}.pub"]).stdout.split()[1]
    return line, fp


def service_key(builder):
    """ff-gitd's service key, issued by the operator command."""
    out = run([bin_path("ff-builder"), "-f", builder.config, "service-key", "gitd"]).stdout
    name, _, value = out.strip().partition("=")
    assert name == "FF_GITD_KEY" and value.startswith("ffg_"), out
    return value


def lookup(builder, token, fp, raw=False):
    q = fp if raw else urllib.parse.quote(fp, safe="")
    return builder.request("GET", f"/v1/keys/lookup?fingerprint={q}", token)


def key_rows(builder):
    return builder.query("SELECT user_id, name, type, fingerprint, public_key FROM ssh_keys "
                         "ORDER BY id")


@pytest.mark.parametrize("name,args,ktype", [
    ("ed25519", ["-t", "ed25519"], "ssh-ed25519"),
    ("ecdsa256", ["-t", "ecdsa", "-b", "256"], "ecdsa-sha2-nistp256"),
    ("ecdsa384", ["-t", "ecdsa", "-b", "384"], "ecdsa-sha2-nistp384"),
    ("ecdsa521", ["-t", "ecdsa", "-b", "521"], "ecdsa-sha2-nistp521"),
    ("rsa2048", ["-t", "rsa", "-b", "2048"], "ssh-rsa"),
])
def test_add_each_type_with_ssh_keygen_fingerprint(builder, tmp_path, name, args, ktype):
    bob = builder.add_user("bob")
    line, fp = keygen(tmp_path, name, *args)
    st, _, key = builder.request("POST", "/v1/keys", bob, {"public_key": line})
    assert st == 201, key
    assert set(key) == KEY_FIELDS
    assert key["fingerprint"] == fp and key["type"] == ktype
    # No name given: the line's comment names the key.
    assert key["name"] == f"{name}@test"
    # Stored normalised: type and base64, the comment dropped.
    (uid, _, stype, sfp, public), = key_rows(builder)
    assert (stype, sfp) == (ktype, fp)
    assert public == " ".join(line.split()[:2])
    st, _, page = builder.request("GET", "/v1/keys", bob)
    assert st == 200 and page == {"items": [key], "next": None}
    (actor, detail), = builder.audit("key.add")
    assert actor == "bob" and f"fingerprint={fp}" in detail and f"type={ktype}" in detail


def test_name_and_line_forms(builder, tmp_path):
    bob = builder.add_user("bob")
    line, fp = keygen(tmp_path, "k", "-t", "ed25519", comment="")
    st, _, key = builder.request("POST", "/v1/keys", bob, {"name": "CI runner \u00e9",
                                                           "public_key": line})
    assert st == 201, key
    assert key["name"] == "CI runner \u00e9"
    builder.request("DELETE", f"/v1/keys/{key['id']}", bob)
    # No comment and no name: the type names it. Extra spaces and CRLF are fine.
    t, b64 = line.split()
    st, _, key = builder.request("POST", "/v1/keys", bob, {"public_key": f"  {t}   {b64} \r\n"})
    assert st == 201, key
    assert key["name"] == "ssh-ed25519" and key["fingerprint"] == fp
    # A long comment is cut to 64 bytes for the default name.
    line2, _ = keygen(tmp_path, "k2", "-t", "ed25519", comment="c" * 100)
    st, _, key = builder.request("POST", "/v1/keys", bob, {"public_key": line2})
    assert st == 201 and key["name"] == "c" * 64


def test_weak_and_foreign_keys_refused(builder, tmp_path):
    bob = builder.add_user("bob")
    rsa1024, _ = keygen(tmp_path, "rsa1024", "-t", "rsa", "-b", "1024")
    dsa, _ = keygen(tmp_path, "dsa", "-t", "dsa")
    ed, _ = keygen(tmp_path, "ed", "-t", "ed25519")
    keygen(tmp_path, "ca", "-t", "ed25519")
    run(["ssh-keygen", "-q", "-s", tmp_path / "ca", "-I", "bob", "-n", "bob", tmp_path / "ed.pub"])
    cert = (tmp_path / "ed-cert.pub").read_text()
    t, b64, *_ = ed.split()
    cases = [
        (rsa1024, "RSA key of 1024 bits refused"),
        (dsa, "DSA keys are refused"),
        (cert, "is a certificate"),
        (f"ssh-rsa {b64}", "the line says ssh-rsa but the key data holds \"ssh-ed25519\""),
        (f"{t} {b64[:-4]}", "ssh-ed25519 key data is malformed"),
        (f"{t} {b64}AAAAAA==", "not in canonical form"),
        (f"{t} {b64}\n{t} {b64}", "control character"),
        (f"{t}\t{b64}", "control character"),
        ("ssh-ed25519", "expected \"<type> <base64> [comment]\""),
        (f"sk-ssh-ed25519@openssh.com {b64}", "security key"),
        (f'command="true" {ed}', "unknown key type"),
        (open(tmp_path / "ed").read(), "control character"),  # the private key
    ]
    for public_key, want in cases:
        st, _, body = builder.request("POST", "/v1/keys", bob, {"public_key": public_key})
        assert st == 400, (public_key, body)
        assert body["error"]["code"] == "invalid"
        assert want in body["error"]["message"], (want, body)
        assert "PRIVATE" not in body["error"]["message"]
    assert key_rows(builder) == []
    assert builder.audit("key.add") == []


def test_duplicate_refused_across_users(builder, tmp_path):
    bob = builder.add_user("bob")
    carol = builder.add_user("carol")
    line, fp = keygen(tmp_path, "shared", "-t", "ed25519")
    st, _, key = builder.request("POST", "/v1/keys", bob, {"public_key": line})
    assert st == 201
    t, b64, *_ = line.split()
    # Same key under another comment, spacing or name: still the same key.
    for who, public_key in [(carol, line), (carol, f"{t}  {b64} carol@laptop\n"),
                            (bob, f"{t} {b64}"), (builder.admin_token, line)]:
        st, _, body = builder.request("POST", "/v1/keys", who, {"name": "x",
                                                                "public_key": public_key})
        assert st == 409, body
        assert body["error"] == {"code": "exists", "message": "this key is already registered"}
    assert [r[3] for r in key_rows(builder)] == [fp]
    tried = builder.audit("key.duplicate")
    assert len(tried) == 4 and ("carol", f"fingerprint={fp}") in tried
    st, _, page = builder.request("GET", "/v1/keys", carol)
    assert page == {"items": [], "next": None}


def test_remove_own_key_only(builder, tmp_path):
    bob = builder.add_user("bob")
    carol = builder.add_user("carol")
    line, fp = keygen(tmp_path, "k", "-t", "ecdsa")
    st, _, key = builder.request("POST", "/v1/keys", bob, {"public_key": line})
    assert st == 201
    # Another user's key, even an admin's request, is "not found".
    for who in (carol, builder.admin_token):
        st, _, body = builder.request("DELETE", f"/v1/keys/{key['id']}", who)
        assert st == 404, body
    assert len(key_rows(builder)) == 1
    for bad in ("0", "-1", "abc", "99999999999999999999"):
        st, _, _ = builder.request("DELETE", f"/v1/keys/{bad}", bob)
        assert st == 400
    st, _, _ = builder.request("DELETE", f"/v1/keys/{key['id']}", bob)
    assert st == 204
    st, _, _ = builder.request("DELETE", f"/v1/keys/{key['id']}", bob)
    assert st == 404
    assert key_rows(builder) == []
    assert builder.audit("key.remove") == [("bob", f"id={key['id']} fingerprint={fp}")]
    # Removed, the key is free for anyone.
    st, _, _ = builder.request("POST", "/v1/keys", carol, {"public_key": line})
    assert st == 201


def test_list_pages(builder, tmp_path):
    bob = builder.add_user("bob")
    made = []
    for i in range(3):
        line, fp = keygen(tmp_path, f"k{i}", "-t", "ed25519")
        st, _, key = builder.request("POST", "/v1/keys", bob, {"public_key": line})
        assert st == 201
        made.append(key)
    st, _, page = builder.request("GET", "/v1/keys?limit=2", bob)
    assert st == 200 and page["items"] == made[:2] and page["next"] == made[1]["id"]
    st, _, page = builder.request("GET", f"/v1/keys?limit=2&after={page['next']}", bob)
    assert page == {"items": made[2:], "next": None}
    st, _, _ = builder.request("GET", "/v1/keys?limit=201", bob)
    assert st == 400


def test_lookup_by_gitd_service_key_only(builder, tmp_path):
    bob = builder.add_user("bob")
    line, fp = keygen(tmp_path, "k", "-t", "rsa", "-b", "2048")
    st, _, key = builder.request("POST", "/v1/keys", bob, {"public_key": line})
    assert st == 201
    gitd = service_key(builder)
    st, _, body = lookup(builder, gitd, fp)
    assert st == 200, body
    assert body == {"user": "bob", "role": "user", "key_id": key["id"]}
    # Admins are told apart, so ff-gitd can apply their rights.
    admin_line, admin_fp = keygen(tmp_path, "a", "-t", "ed25519")
    st, _, _ = builder.request("POST", "/v1/keys", builder.admin_token,
                               {"public_key": admin_line})
    st, _, body = lookup(builder, gitd, admin_fp)
    assert st == 200 and body["user"] == builder.admin and body["role"] == "admin"
    # Nobody else may ask: users (even admins) are 403, no credentials 401.
    for token in (bob, builder.admin_token):
        st, _, body = lookup(builder, token, fp)
        assert st == 403 and body["error"]["code"] == "denied"
    st, h, _ = lookup(builder, None, fp)
    assert st == 401 and "www-authenticate" in h
    st, _, _ = lookup(builder, "ffg_not-the-key", fp)
    assert st == 401
    # Strict parameter.
    other_line, other_fp = keygen(tmp_path, "o", "-t", "ed25519")
    st, _, body = lookup(builder, gitd, other_fp)
    assert st == 404 and body["error"]["code"] == "not_found"
    for bad in ("", "sha256:" + fp[7:], fp[:-1], fp + "=", fp + "A", "MD5:" + fp[7:],
                fp[:-1] + ("B" if fp[-1] != "B" else "C")):
        st, _, body = lookup(builder, gitd, bad)
        assert st == 400, (bad, body)
    st, _, body = builder.request("GET", "/v1/keys/lookup", gitd)
    assert st == 400 and "fingerprint" in body["error"]["message"]
    # Removed keys are forgotten at once.
    builder.request("DELETE", f"/v1/keys/{key['id']}", bob)
    st, _, _ = lookup(builder, gitd, fp)
    assert st == 404
    # A new service key replaces the old one.
    newer = service_key(builder)
    st, _, _ = lookup(builder, gitd, admin_fp)
    assert st == 401
    st, _, _ = lookup(builder, newer, admin_fp)
    assert st == 200


def test_lookup_plus_must_be_percent_encoded(builder, tmp_path):
    """A '+' in a query string means a space, so a raw fingerprint holding
    one is refused rather than misread."""
    bob = builder.add_user("bob")
    gitd = service_key(builder)
    for i in range(20):
        line, fp = keygen(tmp_path, f"k{i}", "-t", "ed25519")
        if "+" in fp:
            break
    else:
        pytest.skip("no fingerprint with '+' in 20 keys")
    builder.request("POST", "/v1/keys", bob, {"public_key": line})
    st, _, body = lookup(builder, gitd, fp, raw=True)
    assert st == 400 and "%2B" in body["error"]["message"]
    st, _, body = lookup(builder, gitd, fp)
    assert st == 200 and body["user"] == "bob"


@pytest.mark.parametrize("body", [
    {},
    {"name": "x"},
    {"public_key": 7},
    {"public_key": ["ssh-ed25519 AAAA"]},
    {"public_key": ""},
    {"public_key": None},
    {"public_key": "ssh-ed25519 AAAA", "owner": "admin"},
    {"public_key": "ssh-ed25519 AAAA", "name": "n" * 65},
    {"public_key": "ssh-ed25519 AAAA", "name": ""},
    {"public_key": "ssh-ed25519 AAAA", "name": "a\u0001b"},
    {"public_key": "ssh-ed25519 AAAA", "name": 5},
    ["ssh-ed25519 AAAA"],
    '{"public_key": "a", "public_key": "b"}',
    "{not json",
])
def test_bad_bodies_are_400_and_store_nothing(builder, body):
    st, _, resp = builder.request("POST", "/v1/keys", builder.admin_token, body)
    assert st == 400, resp
    assert resp["error"]["code"] == "invalid" and resp["error"]["message"]
    assert key_rows(builder) == []


def ssh_string(b):
    return struct.pack(">I", len(b)) + b


def test_body_limits(builder, tmp_path):
    # The largest RSA key OpenSSH accepts (16384 bits) fits the body limit.
    # Making one takes minutes; a public key needs no primes to be parsed,
    # so a random odd modulus of that size stands in, checked by ssh-keygen.
    n = bytearray(secrets.token_bytes(16384 // 8))
    n[0] |= 0x80
    n[-1] |= 1
    blob = ssh_string(b"ssh-rsa") + ssh_string(b"\x01\x00\x01") + ssh_string(b"\x00" + bytes(n))
    line = "ssh-rsa " + base64.b64encode(blob).decode() + " big\n"
    (tmp_path / "big.pub").write_text(line)
    out = run(["ssh-keygen", "-lf", tmp_path / "big.pub"]).stdout.split()
    fp = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert out[0] == "16384" and out[1] == fp
    st, _, key = builder.request("POST", "/v1/keys", builder.admin_token, {"public_key": line})
    assert st == 201, key
    assert key["fingerprint"] == fp
    st, _, _ = builder.request("POST", "/v1/keys", builder.admin_token,
                               {"public_key": "ssh-ed25519 " + "A" * 5000})
    assert st == 413
    assert len(key_rows(builder)) == 1


def test_key_routes_need_a_user(builder):
    gitd = service_key(builder)
    for method, path in [("POST", "/v1/keys"), ("GET", "/v1/keys"), ("DELETE", "/v1/keys/1")]:
        st, _, _ = builder.request(method, path, None, {} if method == "POST" else None)
        assert st == 401
        st, _, body = builder.request(method, path, gitd, {} if method == "POST" else None)
        assert st == 403, body
