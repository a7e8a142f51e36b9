"""Devices, provisioning keys, environment variables, workers and the gitd
service key over real HTTPS, and a device pulling its own app's image with
skopeo through ff-registry."""

import base64
import hashlib
import json
import time

from builderlib import make_image, skopeo
from conftest import bin_path, run


def setup_app(builder, name="web", archs=("amd64", "arm64")):
    bob = builder.add_user("bob")
    builder.add_app(bob, name, archs)
    return bob, f"bob/{name}"


def test_device_registration_and_self_access(builder):
    bob, app = setup_app(builder)
    pk = builder.provisioning_key(bob, app)
    assert pk["key"].startswith("ffp_") and pk["uses"] == 0
    uuid = "0123abcd-0000-4000-8000-00000000beef"
    st, dev = builder.register_device(pk["key"], "arm64", uuid=uuid, name="kiosk 1",
                                      device_type="raspberrypi4-64")
    assert st == 201, dev
    assert dev["uuid"] == uuid and dev["app"] == app and dev["key"].startswith("ffd_")
    key = dev["key"]
    # Only the hash is stored.
    stored = builder.query("SELECT key_hash FROM devices WHERE uuid = ?", uuid)[0][0]
    assert stored == hashlib.sha256(key.encode()).hexdigest()
    who = builder.ok("GET", "/v1/whoami", key)
    assert who == {"kind": "device", "name": f"d_{uuid}", "uuid": uuid}
    assert builder.ok("GET", f"/v1/devices/{uuid}", key)["name"] == "kiosk 1"
    assert builder.ok("GET", f"/v1/apps/{app}", key)["name"] == "web"
    dev2 = builder.ok("PATCH", f"/v1/devices/{uuid}", key, {"status": "running v3"})
    assert dev2["status"] == "running v3"
    # A person renames; only the device reports a status.
    st, _, _ = builder.request("PATCH", f"/v1/devices/{uuid}", bob, {"status": "fake"})
    assert st == 403
    assert builder.ok("PATCH", f"/v1/devices/{uuid}", bob, {"name": "lobby"})["name"] == "lobby"
    # An app it does not belong to, other routes, and the audit log are closed.
    builder.add_app(bob, "other")
    for method, path in [("GET", "/v1/apps/bob/other"), ("GET", "/v1/apps"),
                         ("GET", "/v1/tokens"), ("GET", f"/v1/apps/{app}/devices"),
                         ("DELETE", f"/v1/devices/{uuid}"), ("GET", "/v1/audit")]:
        st, _, _ = builder.request(method, path, key)
        assert st in (403, 404), (method, path, st)
    assert builder.audit("device.register")[0][1] == f"device=d_{uuid} app={app}"


def test_device_arch_must_be_built_for_the_app(builder):
    bob, app = setup_app(builder, archs=("amd64",))
    pk = builder.provisioning_key(bob, app)["key"]
    st, resp = builder.register_device(pk, "armv7")
    assert st == 400 and "armv7" in resp["error"]["message"]
    # The refused registration used nothing up and stored nothing.
    assert builder.query("SELECT uses FROM provisioning_keys")[0][0] == 0
    assert builder.query("SELECT count(*) FROM devices")[0][0] == 0


def test_provisioning_key_max_uses_expiry_and_revocation(builder):
    bob, app = setup_app(builder)
    once = builder.provisioning_key(bob, app, max_uses=2)["key"]
    assert builder.register_device(once)[0] == 201
    assert builder.register_device(once)[0] == 201
    st, resp = builder.register_device(once)
    assert st == 401 and "used up" in resp["error"]["message"]
    short = builder.provisioning_key(bob, app, expires_in=60)
    builder.query("UPDATE provisioning_keys SET expires_at = ? WHERE id = ?",
                  int(time.time()) - 1, short["id"])
    assert builder.register_device(short["key"])[0] == 401
    rev = builder.provisioning_key(bob, app)
    assert builder.register_device(rev["key"])[0] == 201
    builder.ok("DELETE", f"/v1/apps/{app}/provisioning-keys/{rev['id']}", bob, status=204)
    assert builder.register_device(rev["key"])[0] == 401
    keys = builder.ok("GET", f"/v1/apps/{app}/provisioning-keys", bob)["items"]
    assert [k["uses"] for k in keys] == [2, 0, 1]
    assert all("key" not in k and "hash" not in k for k in keys)
    # A user token, a device key or garbage is not a provisioning key.
    st, _ = builder.register_device(bob)
    assert st == 401
    assert builder.query("SELECT count(*) FROM devices")[0][0] == 3
    assert len(builder.audit("device.register.refused")) == 4


def test_duplicate_uuid_and_bad_device_bodies(builder):
    bob, app = setup_app(builder)
    pk = builder.provisioning_key(bob, app)["key"]
    uuid = "abcdef11-2222-4333-8444-555555555555"
    assert builder.register_device(pk, uuid=uuid)[0] == 201
    st, resp = builder.register_device(pk, uuid=uuid)
    assert st == 409
    for bad in [{"uuid": "NOT-A-UUID"}, {"uuid": uuid.upper()}, {"name": ""},
                {"name": "a\x1bb"}, {"device_type": "Pi 4"}, {"arch": "x86"},
                {"arch": 64}, {"extra": 1}, {"name": "n" * 65}]:
        st, resp = builder.register_device(pk, **bad)
        assert st == 400, (bad, resp)
    # Only the first registration counted a use.
    assert builder.query("SELECT uses FROM provisioning_keys")[0][0] == 1
    assert builder.query("SELECT count(*) FROM devices")[0][0] == 1


def test_deleting_a_device_revokes_its_key_at_once(builder):
    bob, app = setup_app(builder)
    dev = builder.add_device(bob, app)
    assert builder.registry_token(f"d_{dev['uuid']}", dev["key"])[0] == 200
    builder.ok("DELETE", f"/v1/devices/{dev['uuid']}", bob, status=204)
    st, _, _ = builder.request("GET", "/v1/whoami", dev["key"])
    assert st == 401
    assert builder.registry_token(f"d_{dev['uuid']}", dev["key"])[0] == 401
    assert builder.audit("device.delete", "bob") == [("bob", f"device=d_{dev['uuid']}")]


def test_environment_variables_device_overrides_app(builder):
    bob, app = setup_app(builder)
    dev = builder.add_device(bob, app)
    uuid, key = dev["uuid"], dev["key"]
    builder.ok("PUT", f"/v1/apps/{app}/env/LOG_LEVEL", bob, {"value": "info"})
    builder.ok("PUT", f"/v1/apps/{app}/env/API", bob, {"value": "https://x"})
    builder.ok("PUT", f"/v1/devices/{uuid}/env/LOG_LEVEL", bob, {"value": "debug"})
    builder.ok("PUT", f"/v1/devices/{uuid}/env/EMPTY", bob, {"value": ""})
    assert builder.ok("GET", f"/v1/apps/{app}/env", key)["vars"] == {
        "API": "https://x", "LOG_LEVEL": "info"}
    assert builder.ok("GET", f"/v1/devices/{uuid}/env", key)["vars"] == {
        "API": "https://x", "LOG_LEVEL": "debug", "EMPTY": ""}
    builder.ok("DELETE", f"/v1/devices/{uuid}/env/LOG_LEVEL", bob, status=204)
    assert builder.ok("GET", f"/v1/devices/{uuid}/env", key)["vars"]["LOG_LEVEL"] == "info"
    st, _, _ = builder.request("DELETE", f"/v1/devices/{uuid}/env/LOG_LEVEL", bob)
    assert st == 404
    # A device reads variables but never writes them.
    st, _, _ = builder.request("PUT", f"/v1/devices/{uuid}/env/X", key, {"value": "1"})
    assert st == 403
    for name, body in [("FF_SECRET", {"value": "x"}), ("1X", {"value": "x"}),
                       ("A-B", {"value": "x"}), ("OK", {"value": 1}),
                       ("OK", {"value": "x" * 2049}), ("OK", {"value": "a", "b": 1}),
                       ("OK", {})]:
        st, _, resp = builder.request("PUT", f"/v1/apps/{app}/env/{name}", bob, body)
        assert st == 400, (name, body, resp)
    assert builder.query("SELECT count(*) FROM app_env")[0][0] == 2
    assert builder.query("SELECT count(*) FROM device_env")[0][0] == 1


def test_worker_join_token_is_single_use(builder):
    st, _, resp = builder.request("POST", "/v1/workers/join-tokens", builder.admin_token,
                                  {"expires_in": 600})
    assert st == 201 and resp["token"].startswith("ffj_")
    join = resp["token"]
    st, _, w = builder.request("POST", "/v1/workers/join", join,
                               {"name": "arm box", "archs": ["arm64", "armv7"]})
    assert st == 201, w
    assert w["name"] == f"w_{w['id']}" and w["key"].startswith("ffw_")
    st, _, _ = builder.request("POST", "/v1/workers/join", join,
                               {"name": "again", "archs": ["amd64"]})
    assert st == 401
    assert builder.query("SELECT count(*) FROM workers")[0][0] == 1
    assert builder.ok("GET", "/v1/whoami", w["key"]) == {"kind": "worker", "name": w["name"],
                                                         "id": w["id"]}
    items = builder.ok("GET", "/v1/workers", builder.admin_token)["items"]
    assert [(i["name"], i["label"], i["archs"]) for i in items] == [
        (w["name"], "arm box", ["arm64", "armv7"])]
    builder.ok("DELETE", f"/v1/workers/{w['id']}", builder.admin_token, status=204)
    st, _, _ = builder.request("GET", "/v1/whoami", w["key"])
    assert st == 401


def test_worker_pushes_only_the_repository_of_a_job_it_holds(builder):
    bob, app = setup_app(builder)
    w = builder.add_worker()
    scopes = (f"repository:{app}:pull,push", "repository:library/base:pull,push")

    def access():
        st, body = builder.registry_token(w["name"], w["key"], *scopes)[::2]
        assert st == 200
        claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
        return {a["name"]: sorted(a["actions"]) for a in claims["access"]}

    assert access() == {"library/base": ["pull"]}
    app_id = builder.query("SELECT id FROM apps WHERE name = 'web'")[0][0]
    builder.query("INSERT INTO jobs(app_id, arch, commit_id, state, worker_id, created_at) "
                  "VALUES (?, 'amd64', 'c0ffee', 'running', ?, 0)", app_id, w["id"])
    assert access() == {app: ["pull", "push"], "library/base": ["pull"]}
    builder.query("UPDATE jobs SET state = 'succeeded'")
    assert access() == {"library/base": ["pull"]}


def test_gitd_service_key_rotation(builder):
    first = builder.service_key()
    assert first.startswith("ffg_")
    assert builder.ok("GET", "/v1/whoami", first) == {"kind": "service", "name": "svc_gitd"}
    second = builder.service_key()
    st, _, _ = builder.request("GET", "/v1/whoami", first)
    assert st == 401
    assert builder.ok("GET", "/v1/whoami", second)["name"] == "svc_gitd"
    # The service key opens no user route.
    st, _, _ = builder.request("GET", "/v1/apps", second)
    assert st == 403
    res = run([bin_path("ff-builder"), "-f", builder.config, "service-key", "other"],
              check=False)
    assert res.returncode == 2


def test_device_pulls_its_own_app_with_skopeo(builder, registry_behind_builder, cert_dir,
                                              tmp_path):
    host = registry_behind_builder
    bob, app = setup_app(builder)
    carol = builder.add_user("carol")
    builder.add_app(carol, "db")
    layout = tmp_path / "img"
    make_image(layout, "v1")
    # Nobody but a worker holding a job pushes an app: the test places the
    # images the way the builder will, with a worker token per app.
    w = builder.add_worker()
    for owner, name in [("bob", "web"), ("carol", "db")]:
        app_id = builder.query("SELECT a.id FROM apps a JOIN users u ON u.id = a.owner_id "
                               "WHERE u.name = ? AND a.name = ?", owner, name)[0][0]
        builder.query("INSERT INTO jobs(app_id, arch, commit_id, state, worker_id, created_at) "
                      "VALUES (?, 'amd64', 'c0ffee', 'running', ?, 0)", app_id, w["id"])
        skopeo("copy", "--dest-cert-dir", cert_dir, "--dest-creds", f"{w['name']}:{w['key']}",
               f"oci:{layout}:v1", f"docker://{host}/{owner}/{name}:1")
    builder.query("UPDATE jobs SET state = 'succeeded'")
    dev = builder.add_device(bob, app)
    creds = f"d_{dev['uuid']}:{dev['key']}"
    back = tmp_path / "back"
    skopeo("copy", "--src-cert-dir", cert_dir, "--src-creds", creds,
           f"docker://{host}/{app}:1", f"oci:{back}:v1")
    assert (back / "index.json").exists()
    res = skopeo("inspect", "--cert-dir", cert_dir, "--creds", creds,
                 f"docker://{host}/carol/db:1", check=False)
    assert res.returncode != 0
    res = skopeo("copy", "--dest-cert-dir", cert_dir, "--dest-creds", creds,
                 f"oci:{layout}:v1", f"docker://{host}/{app}:evil", check=False)
    assert res.returncode != 0
    # The worker, its job done, may not push any more either.
    res = skopeo("copy", "--dest-cert-dir", cert_dir, "--dest-creds",
                 f"{w['name']}:{w['key']}", f"oci:{layout}:v1",
                 f"docker://{host}/{app}:late", check=False)
    assert res.returncode != 0
    denied = [d for (_, d) in builder.audit("token.denied", f"d_{dev['uuid']}")]
    assert any("carol/db" in d for d in denied) and any("push" in d for d in denied), denied


def test_gitd_asks_access_and_builds(builder):
    bob, app = setup_app(builder)
    builder.add_user("dave")
    builder.add_member(bob, app, "dave", "viewer")
    gitd = builder.service_key()
    got = builder.ok("GET", f"/v1/apps/{app}/access?user=dave", gitd)
    assert got == {"user": "dave", "access": "viewer", "push": False, "pull": True,
                   "deploy_branch": "main", "archs": ["amd64", "arm64"]}
    got = builder.ok("GET", f"/v1/apps/{app}/access?user=bob", gitd)
    assert got["access"] == "owner" and got["push"] is True
    got = builder.ok("GET", f"/v1/apps/{app}/access?user={builder.admin}", gitd)
    assert got["push"] is True
    for query, status in [("?user=nobody", 404), ("?user=Bad..Name", 400), ("", 400)]:
        st, _, _ = builder.request("GET", f"/v1/apps/{app}/access{query}", gitd)
        assert st == status, query
    st, _, _ = builder.request("GET", "/v1/apps/bob/none/access?user=bob", gitd)
    assert st == 404
    body = {"commit": "0" * 40, "ref": "refs/heads/main", "user": "bob"}
    st, _, resp = builder.request("POST", f"/v1/apps/{app}/builds", gitd, body)
    assert st == 503 and resp["error"] == {"code": "no_builder",
                                           "message": "no builder available"}
    assert builder.audit("build.refused", "bob")
    for bad in [{**body, "commit": "0" * 39}, {**body, "commit": "G" * 40},
                {**body, "ref": "main"}, {**body, "user": "a..b"}, {**body, "x": 1}]:
        st, _, _ = builder.request("POST", f"/v1/apps/{app}/builds", gitd, bad)
        assert st == 400, bad
