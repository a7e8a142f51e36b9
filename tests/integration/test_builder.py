"""ff-builder's identity core over real HTTPS: init, login, sessions, API
tokens, bad bodies, the registry token endpoint, and skopeo pushing to and
pulling from a real ff-registry through that endpoint."""

import hashlib
import json
import time

import pytest

from builderlib import USER_PASSWORD, make_image, skopeo, start_builder, verify_jwt
from conftest import bin_path, run


def access_of(claims):
    return {(a["type"], a["name"]): sorted(a["actions"]) for a in claims["access"]}


# ---- init, login, sessions -------------------------------------------------------


def test_init_refuses_second_admin(builder):
    res = run([bin_path("ff-builder"), "-f", builder.config, "init", "--admin", "other"],
              check=False)
    assert res.returncode == 3
    assert "admin exists" in res.stderr
    assert res.stdout == ""
    assert builder.query("SELECT name, role FROM users") == [(builder.admin, "admin")]


def test_check_config_and_bad_config(builder, tmp_path):
    res = run([bin_path("ff-builder"), "-f", builder.config, "-n"])
    assert "configuration ok" in res.stdout
    bad = tmp_path / "bad.ini"
    bad.write_text(builder.config.read_text() + "ttl = 301\n")
    res = run([bin_path("ff-builder"), "-f", bad, "-n"], check=False)
    assert res.returncode != 0


def test_login_and_whoami(builder):
    st, _, body = builder.request("POST", "/v1/login", body={
        "username": builder.admin, "password": builder.admin_password})
    assert st == 201, body
    assert body["token"].startswith("ffu_") and body["kind"] == "session"
    assert body["expires_at"] > time.time() + 3600
    st, _, me = builder.request("GET", "/v1/whoami", body["token"])
    assert st == 200 and me["name"] == builder.admin and me["role"] == "admin"
    # Only the hash is stored.
    hashes_ = [h for (h,) in builder.query("SELECT hash FROM api_tokens")]
    assert hashlib.sha256(body["token"].encode()).hexdigest() in hashes_
    assert body["token"] not in hashes_
    assert builder.audit("login.ok", builder.admin)


def test_login_wrong_password_and_unknown_user(builder):
    st, h, body = builder.request("POST", "/v1/login", body={
        "username": builder.admin, "password": "not-the-password"})
    assert st == 401 and body["error"]["code"] == "unauthorized"
    st, _, body = builder.request("POST", "/v1/login", body={
        "username": "nobody", "password": "not-the-password"})
    assert st == 401
    assert builder.audit("login.failed", builder.admin)
    assert builder.audit("login.failed", "nobody")


def test_login_lockout_after_ten_failures(builder):
    builder.add_user("bob")
    for _ in range(10):
        st, _, _ = builder.request("POST", "/v1/login", body={
            "username": "bob", "password": "wrong-password-x"})
        assert st == 401
    # Locked now, even with the right password.
    st, h, body = builder.request("POST", "/v1/login", body={
        "username": "bob", "password": USER_PASSWORD})
    assert st == 429, body
    assert h["retry-after"] == "3600"
    assert builder.audit("login.locked", "bob")
    # Other users are not affected.
    st, _, _ = builder.request("POST", "/v1/login", body={
        "username": builder.admin, "password": builder.admin_password})
    assert st == 201


def test_bearer_required(builder):
    st, h, body = builder.request("GET", "/v1/whoami")
    assert st == 401 and "error" in body
    st, _, _ = builder.request("GET", "/v1/whoami", "ffu_not-a-real-token")
    assert st == 401
    st, _, _ = builder.request("GET", "/v1/whoami", headers={"Authorization": "Basic eDp5"})
    assert st == 401


def test_rate_limit_headers(builder):
    st, h, _ = builder.request("GET", "/v1/whoami", builder.admin_token)
    assert st == 200
    for k in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert k in h


def test_rate_limits_answer_429(daemons, tls_cert, tmp_path):
    b = start_builder(daemons, tls_cert, tmp_path,
                      "[limits]\nidentity_rate = 1\nidentity_burst = 3\n")
    statuses = []
    for _ in range(6):
        st, h, body = b.request("GET", "/v1/whoami", b.admin_token)
        statuses.append(st)
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    assert int(h["retry-after"]) >= 1 and h["ratelimit-remaining"] == "0"
    assert body["error"]["code"] == "rate_limited"
    # The limit is per identity: login (limited per address only) still works.
    st, _, _ = b.request("POST", "/v1/login", body={"username": b.admin,
                                                    "password": b.admin_password})
    assert st == 201


# ---- API tokens -------------------------------------------------------------------


def test_api_token_create_list_revoke(builder):
    st, _, created = builder.request("POST", "/v1/tokens", builder.admin_token,
                                     {"name": "laptop", "expires_in": 3600})
    assert st == 201, created
    tok = created["token"]
    assert created["expires_at"] > time.time()
    st, _, me = builder.request("GET", "/v1/whoami", tok)
    assert st == 200 and me["token_id"] == created["id"]
    st, _, page = builder.request("GET", "/v1/tokens?limit=1", builder.admin_token)
    assert st == 200 and len(page["items"]) == 1 and page["next"] is not None
    st, _, page2 = builder.request("GET", f"/v1/tokens?limit=1&after={page['next']}",
                                   builder.admin_token)
    assert st == 200
    listed = page["items"] + page2["items"]
    assert any(t["id"] == created["id"] and t["name"] == "laptop" for t in listed)
    assert tok not in json.dumps(listed)
    assert all("hash" not in t and "token" not in t for t in listed)
    st, _, _ = builder.request("DELETE", f"/v1/tokens/{created['id']}", builder.admin_token)
    assert st == 204
    st, _, _ = builder.request("GET", "/v1/whoami", tok)
    assert st == 401
    st, _, _ = builder.request("DELETE", f"/v1/tokens/{created['id']}", builder.admin_token)
    assert st == 404
    assert builder.audit("token.create", builder.admin)
    assert builder.audit("token.revoke", builder.admin)


def test_token_of_other_user_cannot_be_revoked(builder):
    bob = builder.add_user("bob")
    st, _, me = builder.request("GET", "/v1/whoami", bob)
    st, _, _ = builder.request("DELETE", f"/v1/tokens/{me['token_id']}", builder.admin_token)
    assert st == 404
    st, _, _ = builder.request("GET", "/v1/whoami", bob)
    assert st == 200


def test_only_admin_creates_users(builder):
    bob = builder.add_user("bob")
    st, _, body = builder.request("POST", "/v1/users", bob,
                                  {"name": "eve", "password": USER_PASSWORD})
    assert st == 403, body
    st, _, body = builder.request("POST", "/v1/users", builder.admin_token,
                                  {"name": "bob", "password": USER_PASSWORD})
    assert st == 409
    assert [n for (n,) in builder.query("SELECT name FROM users ORDER BY id")] == \
        [builder.admin, "bob"]
    assert builder.audit("user.create", builder.admin)


@pytest.mark.parametrize("path,body", [
    ("/v1/users", {"name": "carol", "password": 12345678901234}),
    ("/v1/users", {"name": "carol", "password": USER_PASSWORD, "admin": True}),
    ("/v1/users", {"name": "Carol!", "password": USER_PASSWORD}),
    ("/v1/users", {"name": "carol", "password": "short"}),
    ("/v1/users", {"name": "carol", "password": USER_PASSWORD, "role": "root"}),
    ("/v1/users", {"name": "c" * 65, "password": USER_PASSWORD}),
    ("/v1/users", ["carol"]),
    ("/v1/users", '{"name": "carol", "name": "dave", "password": "x"}'),
    ("/v1/users", "{not json"),
    ("/v1/tokens", {"name": 7}),
    ("/v1/tokens", {"name": "x", "expires_in": "1h"}),
    ("/v1/tokens", {"name": "x", "expires_in": 1}),
    ("/v1/tokens", {"name": "x" * 65}),
    ("/v1/tokens", {"name": "x", "scope": "all"}),
    ("/v1/login", {"username": "admin"}),
    ("/v1/login", {"username": ["admin"], "password": "x"}),
    ("/v1/apps", {"name": "-bad", "archs": ["amd64"]}),
    ("/v1/apps", {"name": "ok", "archs": ["sparc"]}),
    ("/v1/apps", {"name": "ok", "archs": []}),
    ("/v1/apps", {"name": "ok", "archs": ["amd64", "amd64"]}),
])
def test_bad_bodies_are_400_and_change_nothing(builder, path, body):
    before = builder.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM "
                           "api_tokens), (SELECT count(*) FROM apps)")
    st, _, resp = builder.request("POST", path, builder.admin_token, body)
    assert st == 400, resp
    assert resp["error"]["code"] and resp["error"]["message"]
    after = builder.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM "
                          "api_tokens), (SELECT count(*) FROM apps)")
    assert before == after


def test_oversized_body_refused(builder):
    st, _, _ = builder.request("POST", "/v1/users", builder.admin_token,
                               {"name": "carol", "password": "p" * 8000})
    assert st == 413
    assert builder.query("SELECT count(*) FROM users") == [(1,)]


def test_audit_log_for_admins_only(builder):
    bob = builder.add_user("bob")
    st, _, _ = builder.request("GET", "/v1/audit", bob)
    assert st == 403
    st, _, page = builder.request("GET", "/v1/audit?limit=2", builder.admin_token)
    assert st == 200 and len(page["items"]) == 2 and page["next"] == page["items"][1]["id"]
    assert page["items"][0]["event"] == "user.create"
    events = []
    after = 0
    while True:
        st, _, page = builder.request("GET", f"/v1/audit?after={after}&limit=3",
                                      builder.admin_token)
        events += [e["event"] for e in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert events.count("user.create") == 2 and "login.ok" in events
    st, _, _ = builder.request("GET", "/v1/audit?limit=0", builder.admin_token)
    assert st == 400


# ---- apps ---------------------------------------------------------------------------


def test_apps_and_members(builder):
    bob = builder.add_user("bob")
    carol = builder.add_user("carol")
    st, _, app = builder.request("POST", "/v1/apps", bob, {"name": "web", "archs": ["amd64",
                                                                                    "arm64"]})
    assert st == 201, app
    assert app["owner"] == "bob" and app["archs"] == ["amd64", "arm64"]
    assert app["deploy_branch"] == "main"
    st, _, _ = builder.request("POST", "/v1/apps", bob, {"name": "web", "archs": ["amd64"]})
    assert st == 409
    st, _, other = builder.request("POST", "/v1/apps", bob, {"name": "api", "archs": ["amd64"],
                                                            "deploy_branch": "release/v2"})
    assert st == 201 and other["deploy_branch"] == "release/v2"
    st, _, body = builder.request("POST", "/v1/apps", bob, {"name": "bad", "archs": ["amd64"],
                                                           "deploy_branch": "a..b"})
    assert st == 400 and "deploy branch" in body["error"]["message"]
    st, _, _ = builder.request("GET", "/v1/apps/bob/bad", bob)
    assert st == 404
    st, _, _ = builder.request("GET", "/v1/apps/bob/web", carol)
    assert st == 404
    st, _, body = builder.request("PUT", "/v1/apps/bob/web/members/carol", carol,
                                  {"role": "viewer"})
    assert st == 404
    st, _, body = builder.request("PUT", "/v1/apps/bob/web/members/carol", bob,
                                  {"role": "viewer"})
    assert st == 200, body
    st, _, got = builder.request("GET", "/v1/apps/bob/web", carol)
    assert st == 200 and got["name"] == "web"
    st, _, page = builder.request("GET", "/v1/apps", carol)
    assert [a["name"] for a in page["items"]] == ["web"]
    builder.request("DELETE", "/v1/apps/bob/api", bob)
    st, _, _ = builder.request("DELETE", "/v1/apps/bob/web", carol)
    assert st == 403
    st, _, _ = builder.request("DELETE", "/v1/apps/bob/web", bob)
    assert st == 204
    st, _, _ = builder.request("GET", "/v1/apps/bob/web", bob)
    assert st == 404


# ---- registry token endpoint ------------------------------------------------------


def test_registry_token_admin(builder):
    st, _, body = builder.registry_token(
        builder.admin, builder.admin_token, "repository:library/base:pull,push",
        "repository:someone/app:pull,push", "registry:catalog:*",
        "repository:library/base:delete")
    assert st == 200, body
    assert body["token"] == body["access_token"]
    assert body["expires_in"] <= 300
    assert body["issued_at"].endswith("Z")
    _, claims = verify_jwt(body["token"], builder.tls.token_pub)
    assert claims["iss"] == "ff-builder" and claims["aud"] == "ff-registry"
    assert claims["sub"] == builder.admin and len(claims["jti"]) == 32
    assert claims["nbf"] == claims["iat"] and 0 < claims["exp"] - claims["iat"] <= 300
    assert access_of(claims) == {("repository", "library/base"): ["pull", "push"],
                                 ("registry", "catalog"): ["*"]}
    denied = [d for (_, d) in builder.audit("token.denied", builder.admin)]
    assert "scope=repository:someone/app:pull,push" in denied
    assert "scope=repository:library/base:delete" in denied


def test_registry_token_user_intersection(builder):
    bob = builder.add_user("bob")
    carol = builder.add_user("carol")
    st, _, _ = builder.request("POST", "/v1/apps", bob, {"name": "web", "archs": ["amd64"]})
    assert st == 201
    st, _, _ = builder.request("POST", "/v1/apps", carol, {"name": "db", "archs": ["amd64"]})
    assert st == 201
    st, _, body = builder.registry_token(
        "bob", bob, "repository:bob/web:pull,push", "repository:carol/db:pull",
        "repository:library/base:pull,push", "registry:catalog:*",
        "repository:bob/web/extra:pull")
    assert st == 200, body
    _, claims = verify_jwt(body["token"], builder.tls.token_pub)
    assert claims["sub"] == "bob"
    assert access_of(claims) == {("repository", "bob/web"): ["pull"],
                                 ("repository", "library/base"): ["pull"]}
    denied = sorted(d for (_, d) in builder.audit("token.denied", "bob"))
    assert denied == sorted(["scope=repository:bob/web:push",
                             "scope=repository:carol/db:pull",
                             "scope=repository:library/base:push",
                             "scope=registry:catalog:*",
                             "scope=repository:bob/web/extra:pull"])
    # A member may pull, never push.
    st, _, _ = builder.request("PUT", "/v1/apps/carol/db/members/bob", carol,
                               {"role": "developer"})
    assert st == 200
    st, _, body = builder.registry_token("bob", bob, "repository:carol/db:pull,push")
    _, claims = verify_jwt(body["token"], builder.tls.token_pub)
    assert access_of(claims) == {("repository", "carol/db"): ["pull"]}


def test_registry_token_auth_and_service(builder):
    st, h, body = builder.request("GET", "/v2/token?service=ff-registry")
    assert st == 401 and h["www-authenticate"] == 'Basic realm="ff-builder"'
    # The account password is not a registry credential.
    st, h, _ = builder.registry_token(builder.admin, builder.admin_password,
                                      "repository:library/base:pull")
    assert st == 401 and h["www-authenticate"].startswith("Basic")
    # Another user's token under this user's name.
    bob = builder.add_user("bob")
    st, _, _ = builder.registry_token(builder.admin, bob, "repository:library/base:pull")
    assert st == 401
    st, _, body = builder.registry_token(builder.admin, builder.admin_token,
                                         "repository:library/base:pull", service="other")
    assert st == 400 and "service" in body["error"]["message"]
    st, _, body = builder.registry_token(builder.admin, builder.admin_token,
                                         "repository:Bad..Name:pull")
    assert st == 400
    # No scope: a token with an empty access list (the registry's base check).
    st, _, body = builder.registry_token(builder.admin, builder.admin_token)
    assert st == 200
    _, claims = verify_jwt(body["token"], builder.tls.token_pub)
    assert claims["access"] == []


# ---- end to end with ff-registry ------------------------------------------------


def test_skopeo_through_builder_tokens(builder, registry_behind_builder, cert_dir, tmp_path):
    host = registry_behind_builder
    layout = tmp_path / "img"
    make_image(layout, "v1")
    skopeo("copy", "--dest-cert-dir", cert_dir, "--dest-creds",
           f"{builder.admin}:{builder.admin_token}", f"oci:{layout}:v1",
           f"docker://{host}/library/base:1")
    bob = builder.add_user("bob")
    res = skopeo("copy", "--dest-cert-dir", cert_dir, "--dest-creds", f"bob:{bob}",
                 f"oci:{layout}:v1", f"docker://{host}/library/evil:1", check=False)
    assert res.returncode != 0
    assert "unauthorized" in res.stderr.lower() or "denied" in res.stderr.lower()
    info = json.loads(skopeo("inspect", "--cert-dir", cert_dir, "--creds", f"bob:{bob}",
                             f"docker://{host}/library/base:1").stdout)
    assert info["Digest"].startswith("sha256:")
    back = tmp_path / "back"
    skopeo("copy", "--src-cert-dir", cert_dir, "--src-creds", f"bob:{bob}",
           f"docker://{host}/library/base:1", f"oci:{back}:v1")
    assert (back / "index.json").exists()
    denied = [d for (_, d) in builder.audit("token.denied", "bob")]
    assert any("library/evil" in d and "push" in d for d in denied), denied
    # The account password never works against the registry.
    res = skopeo("inspect", "--cert-dir", cert_dir, "--creds",
                 f"{builder.admin}:{builder.admin_password}",
                 f"docker://{host}/library/base:1", check=False)
    assert res.returncode != 0


def test_errors_are_json_everywhere(builder):
    for method, path, body in [("GET", "/v1/nothing", None), ("PUT", "/v1/whoami", None),
                               ("POST", "/v1/users", "x" * 5000)]:
        st, _, resp = builder.request(method, path, builder.admin_token, body)
        assert st in (404, 405, 413), (method, path, st)
        assert resp is not None and resp["error"]["code"] and resp["error"]["message"]


BEARER_ROUTES = [("GET", "/v1/whoami"), ("POST", "/v1/users"), ("POST", "/v1/tokens"),
                 ("GET", "/v1/tokens"), ("DELETE", "/v1/tokens/1"), ("GET", "/v1/audit"),
                 ("POST", "/v1/apps"), ("GET", "/v1/apps"), ("GET", "/v1/apps/admin/x"),
                 ("DELETE", "/v1/apps/admin/x"), ("PUT", "/v1/apps/admin/x/members/admin")]


def test_every_route_refuses_missing_and_revoked_tokens(builder):
    st, _, created = builder.request("POST", "/v1/tokens", builder.admin_token, {"name": "t"})
    st, _, _ = builder.request("DELETE", f"/v1/tokens/{created['id']}", builder.admin_token)
    assert st == 204
    before = builder.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM "
                           "api_tokens WHERE revoked_at IS NULL), (SELECT count(*) FROM apps)")
    for method, path in BEARER_ROUTES:
        for token in (None, created["token"], "ffu_" + "A" * 43):
            body = "{}" if method in ("POST", "PUT") else None
            st, h, resp = builder.request(method, path, token, body)
            assert st == 401, (method, path, token, st)
            assert h["www-authenticate"].startswith("Bearer")
            assert resp["error"]["code"] == "unauthorized"
    after = builder.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM "
                          "api_tokens WHERE revoked_at IS NULL), (SELECT count(*) FROM apps)")
    assert before == after
