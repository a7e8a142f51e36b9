"""A stand-in for ff-builder's token endpoint (GET /v2/token, Docker token
spec) so registry tests can use the real token flow with real clients
before the builder exists. It mints ES256 tokens with the farm's token.key,
exactly as the builder will: kid = first 16 bytes of SHA-256 of the DER
public key, hex; iss ff-builder; aud the service; exp 5 minutes."""

import base64
import hashlib
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization

ISSUER = "ff-builder"
SERVICE = "ff-registry"
TTL = 300


def key_id(public_key):
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:32]


class Minter:
    """Signs registry tokens with a PEM private key."""

    def __init__(self, key_path):
        with open(key_path, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), password=None)
        self.kid = key_id(self.key.public_key())

    def mint(self, sub, access, ttl=TTL, nbf_offset=0, iss=ISSUER, aud=SERVICE, kid=None,
             alg="ES256", key=None):
        now = int(time.time())
        claims = {"iss": iss, "aud": aud, "sub": sub, "jti": uuid.uuid4().hex,
                  "iat": now, "nbf": now + nbf_offset, "exp": now + ttl,
                  "access": access}
        return jwt.encode(claims, key if key is not None else self.key, algorithm=alg,
                          headers={"kid": kid or self.kid})


def access(repo, *actions):
    return [{"type": "repository", "name": repo, "actions": list(actions)}]


def parse_scope(scope):
    kind, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    return kind, name, actions.split(",")


class TokenServer:
    """HTTPS token realm. users maps user -> (password, grant) where grant
    is fn(kind, name, actions) -> granted actions (requested ∩ allowed)."""

    def __init__(self, minter, cert, key, users):
        self.minter = minter
        self.users = users
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                if url.path != "/v2/token":
                    self.send_error(404)
                    return
                q = parse_qs(url.query)
                outer.requests.append(q)
                user = outer.check_basic(self.headers.get("Authorization", ""))
                if user is None:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="ff"')
                    self.end_headers()
                    return
                granted = []
                for scope in q.get("scope", []):
                    for one in scope.split(" "):
                        kind, name, actions = parse_scope(one)
                        ok = outer.users[user][1](kind, name, actions)
                        if ok:
                            granted.append({"type": kind, "name": name, "actions": ok})
                token = outer.minter.mint(user, granted)
                body = json.dumps({"token": token, "access_token": token,
                                   "expires_in": TTL}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.realm = f"https://127.0.0.1:{self.port}/v2/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def check_basic(self, header):
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        entry = self.users.get(user)
        return user if entry is not None and entry[0] == password else None

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
