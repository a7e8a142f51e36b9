"""ff-registry protocol details, auth and bad input, with raw HTTPS requests:
every refusal gets the spec's status and code, and changes nothing stored."""

import base64
import hashlib
import hmac
import json
import socket
import ssl
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import run
from tokenserver import access

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def code(body):
    return json.loads(body)["errors"][0]["code"]


def manifest_for(cfg, layers, **extra):
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(cfg), "size": len(cfg)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": sha(l), "size": len(l)} for l in layers]}
    m.update(extra)
    return json.dumps(m).encode()


# ---- authentication ---------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with(secret, claims, kid):
    """The key-confusion attack: HMAC keyed with the verifier's public key.
    Built by hand because PyJWT rightly refuses to make it."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def forged_tokens(registry):
    """Every way a token can be wrong, each paired with its name."""
    m = registry.minter
    grant = access("alice/app", "pull", "push")
    other_key = ec.generate_private_key(ec.SECP256R1())
    pub_pem = m.key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"iss": "ff-builder", "aud": "ff-registry", "sub": "alice", "exp": now + 300,
              "nbf": now, "access": grant}
    return {
        "expired": m.mint("alice", grant, ttl=-120),
        "not yet valid": m.mint("alice", grant, nbf_offset=600),
        "wrong key": m.mint("alice", grant, key=other_key),
        "unknown kid": m.mint("alice", grant, kid="0123456789abcdef0123456789abcdef"),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": m.kid}),
        "HS256 with the public key": hs256_with(pub_pem, claims, m.kid),
        "wrong audience": m.mint("alice", grant, aud="another-registry"),
        "wrong issuer": m.mint("alice", grant, iss="mallory"),
        "garbage": "not.a.token",
    }


def test_no_token_gets_challenge(registry):
    st, h, body = registry.request("GET", "/v2/alice/app/tags/list")
    assert st == 401 and code(body) == "UNAUTHORIZED"
    assert h["www-authenticate"] == (f'Bearer realm="{registry.tokens.realm}",'
                                     'service="ff-registry",scope="repository:alice/app:pull"')
    st, h, _ = registry.request("POST", "/v2/alice/app/blobs/uploads/")
    assert st == 401 and 'scope="repository:alice/app:pull,push"' in h["www-authenticate"]
    st, h, _ = registry.request("GET", "/v2/")
    assert st == 401 and "scope=" not in h["www-authenticate"]


@pytest.mark.parametrize("kind", ["expired", "not yet valid", "wrong key", "unknown kid",
                                  "alg none", "HS256 with the public key", "wrong audience",
                                  "wrong issuer", "garbage"])
def test_forged_tokens_refused_and_nothing_stored(registry, kind):
    token = forged_tokens(registry)[kind]
    data = b"must not be stored " + kind.encode()
    st, h, body = registry.request("POST", f"/v2/alice/app/blobs/uploads/?digest={sha(data)}",
                                   token, body=data)
    assert st == 401, (kind, st, body)
    assert 'error="invalid_token"' in h["www-authenticate"]
    assert registry.blob_files() == []
    st, _, _ = registry.request("GET", "/v2/alice/app/tags/list", token)
    assert st == 401


def test_pull_only_token_cannot_push(registry):
    good = registry.token("alice", "alice/app", "pull", "push")
    registry.push_image("alice/app", "v1", [b"layer"], good)
    before = registry.blob_files()
    pull = registry.token("bob", "alice/app", "pull")
    st, h, _ = registry.request("GET", "/v2/alice/app/manifests/v1", pull)
    assert st == 200
    data = b"new layer"
    st, h, body = registry.request("POST", f"/v2/alice/app/blobs/uploads/?digest={sha(data)}",
                                   pull, body=data)
    assert st == 401 and 'error="insufficient_scope"' in h["www-authenticate"]
    st, _, _ = registry.request("PUT", "/v2/alice/app/manifests/v2", pull,
                                body=manifest_for(b"c", []),
                                headers={"Content-Type": OCI_MANIFEST})
    assert st == 401
    st, _, _ = registry.request("DELETE", "/v2/alice/app/manifests/v1", pull)
    assert st == 401
    assert registry.blob_files() == before


def test_token_for_repo_a_is_useless_on_repo_b(registry):
    a = registry.token("alice", "alice/a", "pull", "push", "delete")
    registry.push_image("alice/b", "v1", [b"b layer"],
                        registry.token("alice", "alice/b", "pull", "push"))
    before = registry.blob_files()
    for method, path in [("GET", "/v2/alice/b/manifests/v1"), ("GET", "/v2/alice/b/tags/list"),
                         ("DELETE", "/v2/alice/b/manifests/v1"),
                         ("POST", "/v2/alice/b/blobs/uploads/")]:
        st, _, _ = registry.request(method, path, a)
        assert st == 401, (method, path, st)
    assert registry.blob_files() == before


def test_blob_served_only_from_repos_that_link_it(registry):
    data = b"private layer"
    d = registry.push_blob("alice/private", data,
                           registry.token("alice", "alice/private", "pull", "push"))
    other = registry.token("alice", "alice/other", "pull")
    st, _, body = registry.request("GET", f"/v2/alice/other/blobs/{d}", other)
    assert st == 404 and code(body) == "BLOB_UNKNOWN"


def test_catalog_needs_registry_scope(registry):
    registry.push_image("alice/one", "v1", [b"1"], registry.token("alice", "alice/one", "push"))
    st, h, _ = registry.request("GET", "/v2/_catalog", registry.token("alice", "alice/one", "pull"))
    assert st == 401 and 'scope="registry:catalog:*"' in h["www-authenticate"]
    admin = registry.minter.mint("admin", [{"type": "registry", "name": "catalog",
                                            "actions": ["*"]}])
    st, _, body = registry.request("GET", "/v2/_catalog", admin)
    assert st == 200 and json.loads(body)["repositories"] == ["alice/one"]


# ---- uploads ----------------------------------------------------------------

def test_chunked_upload_status_and_out_of_order(registry):
    t = registry.token("alice", "alice/app", "pull", "push")
    data = bytes(range(256)) * 1000
    st, h, _ = registry.request("POST", "/v2/alice/app/blobs/uploads/", t)
    assert st == 202 and h["range"] == "0-0"
    loc = h["location"]
    st, h, _ = registry.request("PATCH", loc, t, body=data[:100000],
                                headers={"Content-Range": "0-99999"})
    assert st == 202 and h["range"] == "0-99999"
    # A chunk that does not start where the last one ended: 416, nothing kept.
    st, h, body = registry.request("PATCH", loc, t, body=data[200000:],
                                   headers={"Content-Range": f"200000-{len(data) - 1}"})
    assert st == 416 and h["range"] == "0-99999"
    st, h, _ = registry.request("GET", loc, t)
    assert st == 204 and h["range"] == "0-99999"
    st, h, _ = registry.request("PATCH", loc, t, body=data[100000:200000],
                                headers={"Content-Range": "100000-199999"})
    assert st == 202
    st, h, body = registry.request("PUT", f"{loc}?digest={sha(data)}", t, body=data[200000:])
    assert st == 201, body
    assert h["docker-content-digest"] == sha(data)
    st, _, got = registry.request("GET", f"/v2/alice/app/blobs/{sha(data)}", t)
    assert st == 200 and got == data
    st, _, body = registry.request("GET", loc, t)
    assert st == 404 and code(body) == "BLOB_UPLOAD_UNKNOWN"


def test_cancel_upload(registry):
    t = registry.token("alice", "alice/app", "push")
    st, h, _ = registry.request("POST", "/v2/alice/app/blobs/uploads/", t)
    loc = h["location"]
    assert registry.request("PATCH", loc, t, body=b"abc")[0] == 202
    assert registry.request("DELETE", loc, t)[0] == 204
    assert registry.request("GET", loc, t)[0] == 404
    assert registry.blob_files() == []


def test_digest_mismatch_stores_nothing(registry):
    t = registry.token("alice", "alice/app", "push")
    st, _, body = registry.request("POST", f"/v2/alice/app/blobs/uploads/?digest={sha(b'x')}", t,
                                   body=b"not x")
    assert st == 400 and code(body) == "DIGEST_INVALID"
    assert registry.blob_files() == []
    st, h, _ = registry.request("POST", "/v2/alice/app/blobs/uploads/", t)
    st, _, body = registry.request("PUT", f"{h['location']}?digest={sha(b'y')}", t, body=b"z")
    assert st == 400 and code(body) == "DIGEST_INVALID"
    assert registry.blob_files() == []


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 32, "SHA256:" + "a" * 64,
                                    "sha256:" + "g" * 64, "sha512:" + "0" * 128, "nocolon",
                                    "sha256:%ff%fe%22" + "a" * 61])
def test_invalid_digest_strings(registry, digest):
    t = registry.token("alice", "alice/app", "pull", "push")
    st, _, body = registry.request("GET", f"/v2/alice/app/blobs/{digest}", t)
    assert st == 400 and code(body) == "DIGEST_INVALID"
    st, _, body = registry.request("POST", f"/v2/alice/app/blobs/uploads/?digest={digest}", t,
                                   body=b"x")
    assert st == 400 and code(body) == "DIGEST_INVALID"
    assert registry.blob_files() == []


@pytest.mark.parametrize("name", ["Alice/app", "alice/../app", "alice//app", "-alice/app",
                                  "alice/app-", "a/b/c/d/e/f/g/h/i", "a" * 256])
def test_bad_names(registry, name):
    t = registry.minter.mint("admin", access(name, "pull", "push"))
    st, _, body = registry.request("GET", f"/v2/{name}/tags/list", t)
    assert st in (400, 404)
    if st == 400 and body.startswith(b'{"errors"'):
        assert code(body) == "NAME_INVALID"
    st, _, _ = registry.request("POST", f"/v2/{name}/blobs/uploads/", t)
    assert st in (400, 401, 404)
    assert registry.blob_files() == []


def test_range_requests(registry):
    t = registry.token("alice", "alice/app", "pull", "push")
    data = b"0123456789" * 100
    d = registry.push_blob("alice/app", data, t)
    st, h, body = registry.request("GET", f"/v2/alice/app/blobs/{d}", t,
                                   headers={"Range": "bytes=10-19"})
    assert st == 206 and body == data[10:20] and h["content-range"] == "bytes 10-19/1000"
    st, h, body = registry.request("GET", f"/v2/alice/app/blobs/{d}", t,
                                   headers={"Range": "bytes=990-"})
    assert st == 206 and body == data[990:]
    st, h, _ = registry.request("GET", f"/v2/alice/app/blobs/{d}", t,
                                headers={"Range": "bytes=1000-1010"})
    assert st == 416 and h["content-range"] == "bytes */1000"
    st, h, _ = registry.request("HEAD", f"/v2/alice/app/blobs/{d}", t)
    assert st == 200 and h["content-length"] == "1000" and h["docker-content-digest"] == d


def test_cross_repository_mount(registry):
    src = registry.token("alice", "alice/src", "pull", "push")
    d = registry.push_blob("alice/src", b"shared base", src)
    both = registry.minter.mint("alice", access("alice/src", "pull") +
                                access("alice/dst", "pull", "push"))
    st, h, _ = registry.request("POST", f"/v2/alice/dst/blobs/uploads/?mount={d}&from=alice/src",
                                both)
    assert st == 201 and h["location"] == f"/v2/alice/dst/blobs/{d}"
    assert registry.request("GET", f"/v2/alice/dst/blobs/{d}", both)[0] == 200
    # Without pull on the source the mount falls back to an upload session.
    only_dst = registry.token("alice", "alice/dst2", "pull", "push")
    st, h, _ = registry.request("POST", f"/v2/alice/dst2/blobs/uploads/?mount={d}&from=alice/src",
                                only_dst)
    assert st == 202 and "/blobs/uploads/" in h["location"]
    assert registry.request("GET", f"/v2/alice/dst2/blobs/{d}", only_dst)[0] == 404


# ---- manifests ----------------------------------------------------------------

def test_manifest_refused_when_blob_missing(registry):
    t = registry.token("alice", "alice/app", "pull", "push")
    cfg = b"{}"
    registry.push_blob("alice/app", cfg, t)
    body = manifest_for(cfg, [b"never uploaded"])
    st, _, resp = registry.request("PUT", "/v2/alice/app/manifests/v1", t, body=body,
                                   headers={"Content-Type": OCI_MANIFEST})
    assert st == 400 and code(resp) == "MANIFEST_BLOB_UNKNOWN"
    assert sha(b"never uploaded")[7:] in resp.decode()
    assert registry.request("GET", "/v2/alice/app/manifests/v1", t)[0] == 404
    assert registry.blob_files() == [sha(cfg)]


def test_index_refused_when_child_missing(registry):
    t = registry.token("alice", "alice/app", "pull", "push")
    child = registry.push_image("alice/app", "child", [b"l"], t)
    index = json.dumps({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 1},
                                      {"mediaType": OCI_MANIFEST, "digest": sha(b"nope"),
                                       "size": 1}]}).encode()
    st, _, resp = registry.request("PUT", "/v2/alice/app/manifests/multi", t, body=index,
                                   headers={"Content-Type":
                                            "application/vnd.oci.image.index.v1+json"})
    assert st == 400 and code(resp) == "MANIFEST_BLOB_UNKNOWN"


@pytest.mark.parametrize("body,ctype,status,err", [
    (b"{not json", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (b'{"schemaVersion":1}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}',
     OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (b'{"schemaVersion":2}', "application/vnd.docker.distribution.manifest.v1+prettyjws",
     415, "MANIFEST_INVALID"),
    (b'{"schemaVersion":2}', "text/plain", 415, "MANIFEST_INVALID"),
])
def test_malformed_manifests(registry, body, ctype, status, err):
    t = registry.token("alice", "alice/app", "pull", "push")
    st, _, resp = registry.request("PUT", "/v2/alice/app/manifests/v1", t, body=body,
                                   headers={"Content-Type": ctype})
    assert st == status and code(resp) == err
    assert registry.blob_files() == []


def test_oversized_manifest(registry):
    t = registry.token("alice", "alice/app", "push")
    body = b'{"schemaVersion":2,"x":"' + b"a" * (4 << 20) + b'"}'
    try:
        st, _, _ = registry.request("PUT", "/v2/alice/app/manifests/v1", t, body=body,
                                    headers={"Content-Type": OCI_MANIFEST})
    except (ssl.SSLError, ConnectionError):
        # The 413 goes out before the body is read and the connection is
        # closed; a client still sending may see only the close.
        st = 413
    assert st == 413
    assert registry.blob_files() == []
    assert registry.request("GET", "/v2/alice/app/manifests/v1", t)[0] in (401, 404)


def test_manifest_digest_reference_must_match(registry):
    t = registry.token("alice", "alice/app", "pull", "push")
    cfg = b"{}"
    registry.push_blob("alice/app", cfg, t)
    body = manifest_for(cfg, [])
    st, _, resp = registry.request("PUT", f"/v2/alice/app/manifests/{sha(b'other')}", t,
                                   body=body, headers={"Content-Type": OCI_MANIFEST})
    assert st == 400 and code(resp) == "DIGEST_INVALID"
    st, h, _ = registry.request("PUT", f"/v2/alice/app/manifests/{sha(body)}", t, body=body,
                                headers={"Content-Type": OCI_MANIFEST})
    assert st == 201 and h["docker-content-digest"] == sha(body)
    st, h, got = registry.request("GET", f"/v2/alice/app/manifests/{sha(body)}", t)
    assert st == 200 and got == body and h["content-type"] == OCI_MANIFEST
    st, h, _ = registry.request("HEAD", f"/v2/alice/app/manifests/{sha(body)}", t)
    assert st == 200 and h["content-length"] == str(len(body))


def test_tags_pagination(registry):
    t = registry.token("alice", "alice/app", "pull", "push", "delete")
    digest = registry.push_image("alice/app", "t0", [b"l"], t)
    cfg = b'{"architecture":"amd64","os":"linux"}'
    body = manifest_for(cfg, [b"l"])
    body = json.dumps(dict(json.loads(body), layers=[{
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b"l"),
        "size": 1}])).encode()
    for i in range(1, 5):
        st, _, _ = registry.request("PUT", f"/v2/alice/app/manifests/t{i}", t, body=body,
                                    headers={"Content-Type": OCI_MANIFEST})
        assert st == 201
    st, h, resp = registry.request("GET", "/v2/alice/app/tags/list?n=2", t)
    assert st == 200 and json.loads(resp) == {"name": "alice/app", "tags": ["t0", "t1"]}
    assert h["link"] == '</v2/alice/app/tags/list?n=2&last=t1>; rel="next"'
    st, h, resp = registry.request("GET", "/v2/alice/app/tags/list?n=2&last=t3", t)
    assert json.loads(resp)["tags"] == ["t4"] and "link" not in h
    st, _, resp = registry.request("GET", "/v2/alice/app/tags/list?n=abc", t)
    assert st == 400 and code(resp) == "PAGINATION_NUMBER_INVALID"
    assert registry.request("DELETE", "/v2/alice/app/manifests/t1", t)[0] == 202
    st, _, resp = registry.request("GET", "/v2/alice/app/tags/list", t)
    assert json.loads(resp)["tags"] == ["t0", "t2", "t3", "t4"]
    assert registry.request("GET", "/v2/alice/app/manifests/t0", t)[0] == 200
    assert registry.request("GET", "/v2/alice/nothing/tags/list",
                            registry.token("alice", "alice/nothing", "pull"))[0] == 404
    assert digest


def test_referrers(registry):
    t = registry.token("alice", "alice/app", "pull", "push")
    subject = registry.push_image("alice/app", "v1", [b"app"], t)
    empty = b"{}"
    registry.push_blob("alice/app", empty, t)
    sig = registry.push_blob("alice/app", b"signature", t)
    artifact = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(empty),
                   "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 9}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"org.example": "yes"}}).encode()
    st, h, _ = registry.request("PUT", f"/v2/alice/app/manifests/{sha(artifact)}", t,
                                body=artifact, headers={"Content-Type": OCI_MANIFEST})
    assert st == 201 and h["oci-subject"] == subject
    st, h, resp = registry.request("GET", f"/v2/alice/app/referrers/{subject}", t)
    assert st == 200 and h["content-type"] == "application/vnd.oci.image.index.v1+json"
    index = json.loads(resp)
    assert [m["digest"] for m in index["manifests"]] == [sha(artifact)]
    assert index["manifests"][0]["artifactType"] == \
        "application/vnd.dev.cosign.simplesigning.v1+json"
    assert index["manifests"][0]["annotations"] == {"org.example": "yes"}
    st, h, resp = registry.request(
        "GET", f"/v2/alice/app/referrers/{subject}?artifactType=application/x-other", t)
    assert json.loads(resp)["manifests"] == [] and h["oci-filters-applied"] == "artifactType"
    st, _, resp = registry.request("GET", f"/v2/alice/app/referrers/{sha(b'unknown')}", t)
    assert st == 200 and json.loads(resp)["manifests"] == []


def test_immutable_tags(registry_factory):
    reg = registry_factory("[tags]\nimmutable = v*\n")
    t = reg.token("alice", "alice/app", "pull", "push", "delete")
    first = reg.push_image("alice/app", "v1", [b"one"], t)
    reg.push_image("alice/app", "v1", [b"one"], t)  # same content: fine
    cfg = b'{"architecture":"amd64","os":"linux"}'
    reg.push_blob("alice/app", b"two", t)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha(cfg), "size": len(cfg)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "digest": sha(b"two"), "size": 3}]}).encode()
    st, _, resp = reg.request("PUT", "/v2/alice/app/manifests/v1", t, body=body,
                              headers={"Content-Type": OCI_MANIFEST})
    assert st == 403 and code(resp) == "DENIED"
    st, h, _ = reg.request("GET", "/v2/alice/app/manifests/v1", t)
    assert h["docker-content-digest"] == first
    assert reg.request("DELETE", "/v2/alice/app/manifests/v1", t)[0] == 403
    assert reg.request("DELETE", f"/v2/alice/app/manifests/{first}", t)[0] == 403
    # Mutable tags move freely.
    assert reg.request("PUT", "/v2/alice/app/manifests/latest", t, body=body,
                       headers={"Content-Type": OCI_MANIFEST})[0] == 201


# ---- operations ---------------------------------------------------------------

def test_plain_http_refused(registry):
    with socket.create_connection(("127.0.0.1", registry.port), timeout=5) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
    assert not data.startswith(b"HTTP/1.1 200")
    assert not data.startswith(b"HTTP/1.1 401")


def test_healthz_and_metrics(registry):
    t = registry.token("alice", "alice/app", "pull", "push")
    registry.push_blob("alice/app", b"m", t)
    registry.request("POST", "/v2/alice/app/blobs/uploads/", t)
    st, _, body = registry.request("GET", "/healthz")
    assert st == 200 and body == b"ok\n"
    st, h, body = registry.request("GET", "/metrics")
    text = body.decode()
    assert st == 200 and h["content-type"].startswith("text/plain")
    assert 'ff_registry_requests_total{route="/v2/{name+}/blobs/uploads/",method="POST",' \
           'status="201"} 1' in text
    assert "ff_registry_uploads_in_progress 1" in text
    assert 'ff_registry_bytes_in_total{route="/v2/{name+}/blobs/uploads/",method="POST",' \
           'status="201"} 1' in text
    assert "ff_registry_request_duration_seconds_bucket{" in text


def test_rate_limit_per_address(registry_factory):
    reg = registry_factory("[limits]\nip_rate = 1\nip_burst = 3\n")
    t = reg.token("alice", "alice/app", "pull")
    statuses = [reg.request("GET", "/v2/alice/app/tags/list", t)[0] for _ in range(3)]
    assert 429 not in statuses
    st, h, body = reg.request("GET", "/v2/alice/app/tags/list", t)
    assert st == 429 and code(body) == "TOOMANYREQUESTS" and int(h["retry-after"]) >= 1


def test_rate_limit_per_subject(registry_factory):
    reg = registry_factory("[limits]\nsubject_rate = 1\nsubject_burst = 2\n")
    t = reg.token("alice", "alice/app", "pull")
    reg.request("GET", "/v2/alice/app/tags/list", t)
    reg.request("GET", "/v2/alice/app/tags/list", t)
    st, h, _ = reg.request("GET", "/v2/alice/app/tags/list", t)
    assert st == 429 and "retry-after" in h
    other = reg.token("bob", "alice/shared", "pull")
    assert reg.request("GET", "/v2/alice/shared/tags/list", other)[0] == 404


def test_config_check_and_errors(registry, tmp_path):
    assert "configuration ok" in run([registry.bin, "-f", registry.config, "-n"]).stdout
    bad = tmp_path / "bad.ini"
    bad.write_text(registry.config.read_text() + "[server]\nportt = 1\n")
    res = run([registry.bin, "-f", bad, "-n"], check=False)
    assert res.returncode == 1 and 'unknown key' in res.stderr and 'portt' in res.stderr
