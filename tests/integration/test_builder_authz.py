"""The authorization matrix: every ff-builder route, called by every kind of
identity, must answer exactly as the table below says, and a refused call
must change nothing stored. A route missing from the table fails the test,
so a new route cannot slip in without a decision about who may call it."""

import base64
import itertools
import json
import re
import time
import urllib.parse

import pytest

from builderlib import start_builder
from conftest import run

# The matrix sends some thousand requests from one address in seconds; the
# limits themselves are tested in test_builder.py.
NO_LIMITS = "[limits]\nip_rate = 100000\nip_burst = 100000\nidentity_rate = 100000\n" \
            "identity_burst = 100000\n"

ANON = "anonymous"
IDENTITIES = [ANON, "owner", "other", "viewer", "developer", "admin", "device_a", "device_b",
              "deleted_device", "worker", "gitd", "expired", "revoked"]
DEAD = {ANON, "deleted_device", "expired", "revoked"}
LIVE = set(IDENTITIES) - DEAD
USERS = {"owner", "other", "viewer", "developer", "admin"}
APP_READERS = {"owner", "viewer", "developer", "admin"}
APP_WRITERS = {"owner", "developer", "admin"}
APP_ADMINS = {"owner", "admin"}
APP = "bob/web"

_counter = itertools.count(1)


def fresh(prefix):
    return f"{prefix}{next(_counter)}"


class World:
    """Users, apps, devices and machines, one of each kind the table names."""

    def __init__(self, builder, tmp_path):
        self.b = builder
        self.tmp = tmp_path
        b = builder
        self.secret = {"admin": (b.admin, b.admin_token)}
        for user in ("bob", "carol", "dave", "erin", "frank"):
            self.secret[user] = (user, b.add_user(user))
        self.secret["owner"] = self.secret["bob"]
        self.secret["other"] = self.secret["carol"]
        self.secret["viewer"] = self.secret["dave"]
        self.secret["developer"] = self.secret["erin"]
        bob = self.token("owner")
        b.add_app(bob, "web")
        b.add_app(self.token("other"), "db")
        b.add_member(bob, APP, "dave", "viewer")
        b.add_member(bob, APP, "erin", "developer")
        self.device_a = self.add_device(APP, "owner")
        self.device_b = self.add_device("carol/db", "other")
        dead = self.add_device(APP, "owner")
        b.ok("DELETE", f"/v1/devices/{dead['uuid']}", bob, status=204)
        for name, dev in (("device_a", self.device_a), ("device_b", self.device_b),
                          ("deleted_device", dead)):
            self.secret[name] = (f"d_{dev['uuid']}", dev["key"])
        w = b.add_worker()
        self.secret["worker"] = (w["name"], w["key"])
        self.secret["gitd"] = ("svc_gitd", b.service_key())
        expired = b.ok("POST", "/v1/tokens", bob, {"name": "old", "expires_in": 60})
        b.query("UPDATE api_tokens SET expires_at = ? WHERE id = ?", int(time.time()) - 1,
                expired["id"])
        self.secret["expired"] = ("bob", expired["token"])
        revoked = b.ok("POST", "/v1/tokens", bob, {"name": "gone"})
        b.ok("DELETE", f"/v1/tokens/{revoked['id']}", bob, status=204)
        self.secret["revoked"] = ("bob", revoked["token"])
        self.bob_key = self.add_ssh_key("owner")

    def token(self, who):
        return self.secret[who][1]

    def add_device(self, app, owner):
        return self.b.add_device(self.token(owner), app)

    def add_ssh_key(self, who):
        return self.b.ok("POST", "/v1/keys", self.token(who),
                         {"public_key": self.ssh_key_line()}, status=201)

    def ssh_key_line(self):
        path = self.tmp / fresh("key")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path])
        return path.with_suffix(".pub").read_text().strip()

    # ---- victims: fresh objects for routes that destroy what they touch ----

    def fresh_token_id(self):
        return self.b.ok("POST", "/v1/tokens", self.token("owner"), {"name": "v"})["id"]

    def fresh_app(self):
        name = fresh("victim")
        bob = self.token("owner")
        self.b.add_app(bob, name)
        self.b.add_member(bob, f"bob/{name}", "dave", "viewer")
        self.b.add_member(bob, f"bob/{name}", "erin", "developer")
        return name

    def frank_member(self):
        self.b.add_member(self.token("owner"), APP, "frank", "viewer")
        return "frank"

    def fresh_provisioning_key(self):
        return self.b.provisioning_key(self.token("owner"), APP)["id"]

    def fresh_device(self):
        return self.add_device(APP, "owner")["uuid"]

    def app_var(self):
        self.b.ok("PUT", f"/v1/apps/{APP}/env/VICTIM", self.token("owner"), {"value": "1"})
        return "VICTIM"

    def device_var(self):
        self.b.ok("PUT", f"/v1/devices/{self.device_a['uuid']}/env/VICTIM",
                  self.token("owner"), {"value": "1"})
        return "VICTIM"

    def fresh_worker(self):
        return self.b.add_worker()["id"]

    def fresh_ssh_key_id(self):
        return self.add_ssh_key("owner")["id"]

    def snapshot(self):
        """What a refused request must not change."""
        return self.b.query(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM api_tokens), "
            "(SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL), "
            "(SELECT count(*) FROM apps), (SELECT count(*) FROM app_members), "
            "(SELECT group_concat(role) FROM app_members), "
            "(SELECT count(*) FROM provisioning_keys WHERE revoked_at IS NULL), "
            "(SELECT count(*) FROM provisioning_keys), (SELECT count(*) FROM devices), "
            "(SELECT group_concat(name || status) FROM devices), "
            "(SELECT count(*) FROM app_env), (SELECT count(*) FROM device_env), "
            "(SELECT count(*) FROM workers WHERE revoked_at IS NULL), "
            "(SELECT count(*) FROM worker_join_tokens), (SELECT count(*) FROM ssh_keys), "
            "(SELECT count(*) FROM users WHERE totp_secret IS NOT NULL)")


# (method, route pattern as in routes.c, query, body or callable(world),
# who may call it, parameter overrides). A parameter is a value or a
# callable(world) making a fresh victim for routes that destroy what they
# touch; defaults are in DEFAULTS.
ROUTES = [
    ("GET", "/v1/whoami", "", None, LIVE, {}),
    ("POST", "/v1/users", "", lambda w: {"name": fresh("u"), "password": "long-enough-pw-1"},
     {"admin"}, {}),
    ("POST", "/v1/tokens", "", {"name": "t"}, USERS, {}),
    ("GET", "/v1/tokens", "", None, USERS, {}),
    ("DELETE", "/v1/tokens/{id}", "", None, {"owner"}, {"id": World.fresh_token_id}),
    ("POST", "/v1/2fa/enrol", "", {}, USERS, {}),
    # A wrong code passes authorization and is refused by the handler: 400.
    ("POST", "/v1/2fa/confirm", "", {"code": "000000"}, USERS, {}),
    ("POST", "/v1/2fa/disable", "", {"code": "000000"}, USERS, {}),
    ("POST", "/v1/keys", "", lambda w: {"public_key": w.ssh_key_line()}, USERS, {}),
    ("GET", "/v1/keys", "", None, USERS, {}),
    ("DELETE", "/v1/keys/{id}", "", None, {"owner"}, {"id": World.fresh_ssh_key_id}),
    ("GET", "/v1/keys/lookup", "?fingerprint={fp}", None, {"gitd"}, {}),
    ("GET", "/v1/audit", "", None, {"admin"}, {}),
    ("POST", "/v1/apps", "", lambda w: {"name": fresh("app"), "archs": ["amd64"]}, USERS, {}),
    ("GET", "/v1/apps", "", None, USERS, {}),
    ("GET", "/v1/apps/{owner}/{name}", "", None, APP_READERS | {"device_a"}, {}),
    ("DELETE", "/v1/apps/{owner}/{name}", "", None, APP_ADMINS, {"name": World.fresh_app}),
    ("GET", "/v1/apps/{owner}/{name}/members", "", None, APP_READERS, {}),
    ("PUT", "/v1/apps/{owner}/{name}/members/{user}", "", {"role": "developer"}, APP_ADMINS,
     {}),
    ("DELETE", "/v1/apps/{owner}/{name}/members/{user}", "", None, APP_ADMINS,
     {"user": World.frank_member}),
    ("POST", "/v1/apps/{owner}/{name}/provisioning-keys", "", {"name": "k"}, APP_ADMINS, {}),
    ("GET", "/v1/apps/{owner}/{name}/provisioning-keys", "", None, APP_ADMINS, {}),
    ("DELETE", "/v1/apps/{owner}/{name}/provisioning-keys/{id}", "", None, APP_ADMINS,
     {"id": World.fresh_provisioning_key}),
    ("GET", "/v1/apps/{owner}/{name}/devices", "", None, APP_READERS, {}),
    ("GET", "/v1/apps/{owner}/{name}/env", "", None, APP_READERS | {"device_a"}, {}),
    ("PUT", "/v1/apps/{owner}/{name}/env/{var}", "", {"value": "v"}, APP_WRITERS, {}),
    ("DELETE", "/v1/apps/{owner}/{name}/env/{var}", "", None, APP_WRITERS,
     {"var": World.app_var}),
    ("GET", "/v1/apps/{owner}/{name}/access", "?user=dave", None, {"gitd"}, {}),
    # Until build dispatch exists the gitd service is told 503 no_builder.
    ("POST", "/v1/apps/{owner}/{name}/builds", "",
     {"commit": "a" * 40, "ref": "refs/heads/main", "user": "bob"}, {"gitd"}, {}),
    ("POST", "/v1/devices", "", {"name": "d", "device_type": "x", "arch": "amd64"}, set(), {}),
    ("GET", "/v1/devices/{uuid}", "", None, APP_READERS | {"device_a"}, {}),
    ("PATCH", "/v1/devices/{uuid}", "", {"name": "renamed"}, APP_WRITERS | {"device_a"}, {}),
    ("DELETE", "/v1/devices/{uuid}", "", None, APP_ADMINS, {"uuid": World.fresh_device}),
    ("GET", "/v1/devices/{uuid}/env", "", None, APP_READERS | {"device_a"}, {}),
    ("PUT", "/v1/devices/{uuid}/env/{var}", "", {"value": "v"}, APP_WRITERS, {}),
    ("DELETE", "/v1/devices/{uuid}/env/{var}", "", None, APP_WRITERS,
     {"var": World.device_var}),
    ("POST", "/v1/workers/join-tokens", "", {}, {"admin"}, {}),
    ("POST", "/v1/workers/join", "", {"name": "w", "archs": ["amd64"]}, set(), {}),
    ("GET", "/v1/workers", "", None, {"admin"}, {}),
    ("DELETE", "/v1/workers/{id}", "", None, {"admin"}, {"id": World.fresh_worker}),
    ("GET", "/v2/token", "?service=ff-registry", None, LIVE, {}),
]

DEFAULTS = {"owner": "bob", "name": "web", "user": "frank", "var": "NEW",
            "uuid": lambda w: w.device_a["uuid"], "fp": lambda w: urllib.parse.quote(w.bob_key["fingerprint"], safe=":")}

# Routes that take no identity by design: health checks and password login.
ANONYMOUS_ROUTES = {("GET", "/healthz"), ("POST", "/v1/login")}

# Routes authenticated by a key that is not an identity (provisioning key,
# join token): every identity's secret is refused there with 401.
KEY_ROUTES = {("POST", "/v1/devices"), ("POST", "/v1/workers/join")}


# Routes whose body is a one-time code the matrix cannot know: for callers
# who may use them, a 400 (wrong code) or 409 (2FA not in the state the call
# needs) shows the call got past authorization.
CODE_ROUTES = {"/v1/2fa/confirm", "/v1/2fa/disable"}

# Routes that answer the one caller allowed with this status, not a 2xx.
ALLOWED_STATUS = {"/v1/apps/{owner}/{name}/builds": 503}


def registered_routes():
    """The route table as the source declares it, so none can be forgotten."""
    with open("builder/routes.c", encoding="utf-8") as f:
        text = f.read()
    return set(re.findall(r'\{"(GET|POST|PUT|PATCH|DELETE)", "([^"]+)"', text))


def test_every_route_is_in_the_matrix():
    table = {(m, p) for m, p, *_ in ROUTES} | ANONYMOUS_ROUTES
    assert table == registered_routes()


def resolve(world, pattern, query, overrides):
    params = {**DEFAULTS, **overrides}
    wanted = set(re.findall(r"\{(\w+)\}", pattern + query))
    values = {k: (v(world) if callable(v) else v) for k, v in params.items() if k in wanted}
    return (pattern + query).format(**values)


def call(world, who, method, path, body):
    b = world.b
    if path.startswith("/v2/token"):
        creds = None if who == ANON else world.secret[who]
        if creds is None:
            st, _, _ = b.request(method, path)
        else:
            st, _, _ = b.request(method, path, basic=creds)
        return st
    token = None if who == ANON else world.token(who)
    st, _, _ = b.request(method, path, token, body)
    return st


@pytest.fixture
def world(daemons, tls_cert, tmp_path):
    return World(start_builder(daemons, tls_cert, tmp_path, NO_LIMITS), tmp_path)


def test_authorization_matrix(world):
    wrong = []
    for method, pattern, query, body, allowed, overrides in ROUTES:
        for who in IDENTITIES:
            url = resolve(world, pattern, query, overrides)
            data = body(world) if callable(body) else body
            before = world.snapshot()
            st = call(world, who, method, url, data)
            if who in allowed:
                if pattern in CODE_ROUTES and st in (400, 409):
                    continue
                if st == ALLOWED_STATUS.get(pattern):
                    continue
                if not 200 <= st < 300:
                    wrong.append(f"{method} {url} as {who}: {st}, expected success")
                continue
            unauthenticated = (who in DEAD or (method, pattern) in KEY_ROUTES or
                               pattern == "/v2/token")
            want = {401} if unauthenticated else {403, 404}
            if st not in want:
                wrong.append(f"{method} {url} as {who}: {st}, expected {sorted(want)}")
            if world.snapshot() != before:
                wrong.append(f"{method} {url} as {who}: refused but changed the database")
    assert not wrong, "\n".join(wrong)


def scopes_granted(builder, creds, scopes):
    st, _, body = builder.registry_token(creds[0], creds[1], *scopes)
    assert st == 200, body
    claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    return {f"{a['type']}:{a['name']}:{','.join(sorted(a['actions']))}"
            for a in claims["access"]}


def test_registry_grants_per_identity(world):
    builder = world.b
    app_id = builder.query("SELECT id FROM apps WHERE name = 'web'")[0][0]
    worker_id = int(world.secret["worker"][0][2:])
    builder.query("INSERT INTO jobs(app_id, arch, commit_id, state, worker_id, created_at) "
                  "VALUES (?, 'amd64', 'c0ffee', 'running', ?, 0)", app_id, worker_id)
    asked = ["repository:bob/web:pull,push,delete", "repository:carol/db:pull,push",
             "repository:library/base:pull,push", "registry:catalog:*"]
    lib_pull = "repository:library/base:pull"
    expected = {
        "owner": {"repository:bob/web:pull", lib_pull},
        "other": {"repository:carol/db:pull", lib_pull},
        "viewer": {"repository:bob/web:pull", lib_pull},
        "developer": {"repository:bob/web:pull", lib_pull},
        "admin": {"repository:bob/web:pull", "repository:carol/db:pull",
                  "repository:library/base:pull,push", "registry:catalog:*"},
        "device_a": {"repository:bob/web:pull", lib_pull},
        "device_b": {"repository:carol/db:pull", lib_pull},
        "worker": {"repository:bob/web:pull,push", lib_pull},
        "gitd": set(),
    }
    got = {who: scopes_granted(builder, world.secret[who], asked) for who in expected}
    assert got == expected
    for who in DEAD - {ANON}:
        st, _, _ = builder.registry_token(*world.secret[who], *asked)
        assert st == 401, who
    # Every identity above asked for more than it got: each was audited.
    denied = {a for (a,) in builder.query("SELECT DISTINCT actor FROM audit "
                                          "WHERE event = 'token.denied'")}
    assert denied == {world.secret[who][0] for who in expected}
