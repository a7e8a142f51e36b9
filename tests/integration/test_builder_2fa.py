"""ff-builder's TOTP two-factor over real HTTPS: enrol, confirm, login with
and without the code, replay and concurrency, recovery codes, disable, the
lock-out, and bad bodies. Codes are computed here, independently of the C
code, with Python's hmac (RFC 6238: HMAC-SHA-1, 6 digits, 30 s).

Decided behaviour checked here: tokens issued before 2FA was enabled keep
working (2FA guards logins, not tokens already held; revoke them with
DELETE /v1/tokens/{id}); a missing code is not a failed login, a wrong one
is."""

import base64
import hashlib
import hmac
import re
import struct
import threading
import time

import pytest

from builderlib import USER_PASSWORD

B32_SECRET = re.compile(r"^[A-Z2-7]{32}$")
RECOVERY = re.compile(r"^[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}$")


def code_at(secret, step):
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def fresh_step(margin=4):
    """The current TOTP step, once at least margin seconds of it remain, so
    the server judges codes computed now against the same step."""
    while True:
        now = time.time()
        left = 30 - now % 30
        if left >= margin:
            return int(now // 30)
        time.sleep(left + 0.05)


def wrong_code(secret, step):
    """A well-formed code that is none of the window's."""
    good = {code_at(secret, step + d) for d in (-2, -1, 0, 1, 2)}
    return next("%06d" % n for n in range(1000000) if "%06d" % n not in good)


def login(builder, name, otp=None, password=USER_PASSWORD):
    body = {"username": name, "password": password}
    if otp is not None:
        body["otp"] = otp
    return builder.request("POST", "/v1/login", body=body)


def state(builder, name):
    return builder.query("SELECT u.totp_secret, u.totp_enabled_at, u.totp_last_step, "
                         "(SELECT count(*) FROM recovery_codes r WHERE r.user_id = u.id), "
                         "(SELECT count(*) FROM recovery_codes r WHERE r.user_id = u.id AND "
                         "r.used_at IS NOT NULL) FROM users u WHERE u.name = ?", name)[0]


def enrol(builder, token):
    st, _, body = builder.request("POST", "/v1/2fa/enrol", token, {})
    assert st == 200, body
    return body["secret"]


def enable(builder, token):
    """Enrols and confirms; returns (secret, recovery codes, step used)."""
    secret = enrol(builder, token)
    step = fresh_step()
    st, _, body = builder.request("POST", "/v1/2fa/confirm", token,
                                  {"code": code_at(secret, step - 1)})
    assert st == 200, body
    return secret, body["recovery_codes"], step


def failures(builder, name, reason):
    return sum(1 for _, d in builder.audit("login.failed", name) if d == f"reason={reason}")


def test_enrol_confirm_login_recover_disable(builder):
    bob = builder.add_user("bob")
    st, _, body = builder.request("POST", "/v1/2fa/enrol", bob, {})
    assert st == 200, body
    secret = body["secret"]
    assert B32_SECRET.match(secret)
    assert len(base64.b32decode(secret)) == 20
    assert body["uri"] == (f"otpauth://totp/Fleetforge:bob?secret={secret}&issuer=Fleetforge"
                           "&algorithm=SHA1&digits=6&period=30")
    assert state(builder, "bob") == (secret, None, None, 0, 0)
    # Pending, not enabled: the password alone still logs in.
    st, _, _ = login(builder, "bob")
    assert st == 201

    step = fresh_step()
    st, _, body = builder.request("POST", "/v1/2fa/confirm", bob,
                                  {"code": code_at(secret, step - 1)})
    assert st == 200, body
    codes = body["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(RECOVERY.match(c) for c in codes), codes
    sec, enabled_at, last_step, n_codes, n_used = state(builder, "bob")
    assert sec == secret and enabled_at is not None and last_step == step - 1
    assert (n_codes, n_used) == (10, 0)
    # Only hashes of the canonical form are stored.
    stored = {h for (h,) in builder.query("SELECT hash FROM recovery_codes")}
    assert stored == {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes}

    # The code is now required; a missing one is not counted as a failure.
    st, _, body = login(builder, "bob")
    assert st == 401 and body["error"] == {"code": "otp_required",
                                           "message": "two-factor code required"}
    assert failures(builder, "bob", "otp") == 0
    assert builder.audit("login.otp_required", "bob")

    st, _, body = login(builder, "bob", code_at(secret, step))
    assert st == 201, body
    assert body["token"].startswith("ffu_")
    # The same code again, and an older one, are refused and counted.
    st, _, body = login(builder, "bob", code_at(secret, step))
    assert st == 401 and body["error"]["code"] == "unauthorized"
    st, _, _ = login(builder, "bob", code_at(secret, step - 1))
    assert st == 401
    st, _, _ = login(builder, "bob", wrong_code(secret, step))
    assert st == 401
    assert failures(builder, "bob", "otp") == 3
    # A wrong password with a good code: the code is not looked at or spent.
    st, _, body = login(builder, "bob", code_at(secret, step + 1), password="wrong-password-x")
    assert st == 401 and body["error"]["message"] == "wrong user name or password"
    st, _, _ = login(builder, "bob", code_at(secret, step + 1))
    assert st == 201

    # A token issued before 2FA was enabled keeps working.
    st, _, me = builder.request("GET", "/v1/whoami", bob)
    assert st == 200 and me["name"] == "bob"

    # A recovery code logs in once, typed in any case, with or without dashes.
    typed = codes[0].replace("-", "").upper()
    st, _, body = login(builder, "bob", typed)
    assert st == 201, body
    assert builder.audit("2fa.recovery_used", "bob") == [("bob", "left=9")]
    st, _, _ = login(builder, "bob", codes[0])
    assert st == 401
    assert state(builder, "bob")[3:] == (10, 1)

    # Disable: a wrong code is refused and changes nothing; a recovery code works.
    st, _, body = builder.request("POST", "/v1/2fa/disable", bob, {"code": "aaaaa-aaaaa-aaaaa-aaaaa"})
    assert st == 400 and body["error"] == {"code": "invalid", "message":
                                           "two-factor code is wrong or already used"}, body
    assert state(builder, "bob")[1] is not None
    assert builder.audit("2fa.failed", "bob") == [("bob", "action=disable")]
    st, _, body = builder.request("POST", "/v1/2fa/disable", bob, {"code": codes[1]})
    assert st == 204, body
    assert state(builder, "bob") == (None, None, None, 0, 0)
    assert builder.audit("2fa.disable", "bob") == [("bob", "with=recovery")]
    st, _, _ = login(builder, "bob")
    assert st == 201
    # Disabled already.
    st, _, body = builder.request("POST", "/v1/2fa/disable", bob, {"code": codes[2]})
    assert st == 409, body

    # Audited, and neither the secret nor any code reached the log or the audit.
    events = [e for (e,) in builder.query("SELECT event FROM audit WHERE actor = 'bob'")]
    for e in ("2fa.enrol", "2fa.enable", "2fa.recovery_used", "2fa.disable"):
        assert e in events
    text = builder.daemon.log() + repr(builder.query("SELECT * FROM audit"))
    for s in [secret, code_at(secret, step), code_at(secret, step + 1)] + codes:
        assert s not in text
        assert s.replace("-", "") not in text


def test_disable_with_totp_then_reenrol(builder):
    bob = builder.add_user("bob")
    secret, _, step = enable(builder, bob)
    st, _, body = builder.request("POST", "/v1/2fa/disable", bob, {"code": code_at(secret, step)})
    assert st == 204, body
    assert builder.audit("2fa.disable", "bob") == [("bob", "with=totp")]
    # A fresh enrolment has a fresh secret.
    again = enrol(builder, bob)
    assert again != secret
    assert state(builder, "bob")[:2] == (again, None)


def test_confirm_wrong_code_leaves_2fa_off(builder):
    bob = builder.add_user("bob")
    # Nothing to confirm before enrolling.
    st, _, body = builder.request("POST", "/v1/2fa/confirm", bob, {"code": "123456"})
    assert st == 409, body
    secret = enrol(builder, bob)
    step = fresh_step()
    st, _, body = builder.request("POST", "/v1/2fa/confirm", bob,
                                  {"code": wrong_code(secret, step)})
    assert st == 400 and body["error"] == {"code": "invalid", "message":
                                           "two-factor code is wrong or already used"}, body
    assert state(builder, "bob") == (secret, None, None, 0, 0)
    assert builder.audit("2fa.failed", "bob") == [("bob", "action=confirm")]
    st, _, _ = login(builder, "bob")
    assert st == 201
    # A recovery code cannot confirm: only the app's code proves the enrolment.
    st, _, body = builder.request("POST", "/v1/2fa/confirm", bob,
                                  {"code": "abcde-fghij-klmno-pqrst"})
    assert st == 400, body
    # Re-enrolling while pending replaces the secret: the old one's codes fail.
    newer = enrol(builder, bob)
    st, _, _ = builder.request("POST", "/v1/2fa/confirm", bob, {"code": code_at(secret, step)})
    assert st == 400
    st, _, body = builder.request("POST", "/v1/2fa/confirm", bob,
                                  {"code": code_at(newer, step)})
    assert st == 200, body
    # Once enabled, neither enrol nor confirm may change it.
    st, _, body = builder.request("POST", "/v1/2fa/enrol", bob, {})
    assert st == 409 and body["error"]["code"] == "conflict"
    st, _, body = builder.request("POST", "/v1/2fa/confirm", bob,
                                  {"code": code_at(newer, step + 1)})
    assert st == 409
    assert state(builder, "bob")[0] == newer


def test_recovery_codes_belong_to_their_user(builder):
    bob = builder.add_user("bob")
    carol = builder.add_user("carol")
    _, bob_codes, _ = enable(builder, bob)
    _, carol_codes, _ = enable(builder, carol)
    st, _, _ = login(builder, "carol", bob_codes[0])
    assert st == 401
    assert failures(builder, "carol", "otp") == 1
    # Bob's code was not spent by the attempt.
    st, _, _ = login(builder, "bob", bob_codes[0])
    assert st == 201
    # A new confirmation (after disable and enrol) replaces the old codes.
    st, _, _ = builder.request("POST", "/v1/2fa/disable", carol, {"code": carol_codes[0]})
    assert st == 204
    _, fresh, _ = enable(builder, carol)
    st, _, _ = login(builder, "carol", carol_codes[1])
    assert st == 401
    st, _, _ = login(builder, "carol", fresh[0])
    assert st == 201


def test_same_code_raced_is_accepted_once(builder):
    bob = builder.add_user("bob")
    secret, _, step = enable(builder, bob)
    code = code_at(secret, step)
    results = []
    go = threading.Barrier(4)

    def attempt():
        go.wait()
        st, _, _ = login(builder, "bob", code)
        results.append(st)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 401, 401, 401], results
    assert failures(builder, "bob", "otp") == 3


def test_missing_code_is_not_counted_but_wrong_codes_lock_out(builder):
    bob = builder.add_user("bob")
    secret, _, step = enable(builder, bob)
    for _ in range(12):
        st, _, body = login(builder, "bob")
        assert st == 401 and body["error"]["code"] == "otp_required"
    st, _, body = login(builder, "bob", code_at(secret, step))
    assert st == 201, body
    bad = wrong_code(secret, step)
    for _ in range(10):
        st, _, _ = login(builder, "bob", bad)
        assert st == 401
    st, h, body = login(builder, "bob", code_at(secret, step + 1))
    assert st == 429 and body["error"]["code"] == "locked", body
    assert h["retry-after"] == "3600"
    # Locked before the code was looked at: it is still unused.
    assert state(builder, "bob")[2] == step


def test_wrong_disable_codes_lock_out(builder):
    bob = builder.add_user("bob")
    secret, codes, step = enable(builder, bob)
    bad = wrong_code(secret, step)
    for _ in range(10):
        st, _, _ = builder.request("POST", "/v1/2fa/disable", bob, {"code": bad})
        assert st == 400
    st, h, body = builder.request("POST", "/v1/2fa/disable", bob, {"code": codes[0]})
    assert st == 429 and h["retry-after"] == "3600", body
    assert state(builder, "bob")[1] is not None and state(builder, "bob")[4] == 0
    assert builder.audit("2fa.locked", "bob")


@pytest.mark.parametrize("path,body", [
    ("/v1/2fa/enrol", {"code": "123456"}),
    ("/v1/2fa/enrol", []),
    ("/v1/2fa/enrol", "{not json"),
    ("/v1/2fa/confirm", {}),
    ("/v1/2fa/confirm", {"code": 123456}),
    ("/v1/2fa/confirm", {"code": "12345"}),
    ("/v1/2fa/confirm", {"code": "123456", "secret": "x"}),
    ("/v1/2fa/confirm", {"code": ""}),
    ("/v1/2fa/disable", {"code": "1" * 33}),
    ("/v1/2fa/disable", {"code": "abcde-fghij"}),
    ("/v1/2fa/disable", {"code": ["123456"]}),
    ("/v1/2fa/disable", '{"code": "123456", "code": "654321"}'),
    ("/v1/2fa/disable", "null"),
    ("/v1/login", {"username": "bob", "password": USER_PASSWORD, "otp": "12ab56"}),
    ("/v1/login", {"username": "bob", "password": USER_PASSWORD, "otp": 123456}),
    ("/v1/login", {"username": "bob", "password": USER_PASSWORD, "otp": "1" * 33}),
])
def test_bad_bodies_are_400_and_change_nothing(builder, path, body):
    bob = builder.add_user("bob")
    # Pending for the enrol and confirm cases, enabled for disable and login.
    if path in ("/v1/2fa/disable", "/v1/login"):
        enable(builder, bob)
    else:
        enrol(builder, bob)
    snapshot = (state(builder, "bob"), builder.query("SELECT count(*) FROM audit"),
                builder.query("SELECT count(*) FROM api_tokens"))
    st, _, resp = builder.request("POST", path, None if path == "/v1/login" else bob, body)
    assert st == 400, resp
    assert resp["error"]["code"] in ("invalid", "too_big") and resp["error"]["message"]
    assert (state(builder, "bob"), builder.query("SELECT count(*) FROM audit"),
            builder.query("SELECT count(*) FROM api_tokens")) == snapshot


def test_only_users_use_2fa_routes(builder):
    st, _, _ = builder.request("POST", "/v1/2fa/enrol", None, {})
    assert st == 401
    st, _, _ = builder.request("POST", "/v1/2fa/enrol", "ffu_not-a-real-token", {})
    assert st == 401
    # An empty body is accepted as "{}" for enrol.
    st, _, body = builder.request("POST", "/v1/2fa/enrol", builder.admin_token)
    assert st == 200 and B32_SECRET.match(body["secret"])
