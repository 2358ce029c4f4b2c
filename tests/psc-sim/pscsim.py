#!/usr/bin/python3
"""pscsim: a Pro Santé Connect simulator for drimbox's tests and demo.

Pro Santé Connect (PSC), the national identity provider of health
professionals, cannot be reached from a test bench, so this server plays
it on loopback, speaking OpenID Connect the way PSC does, under PSC's
paths ({issuer} = http://HOST:PORT/auth/realms/esante-wallet):

  GET  {issuer}/.well-known/wallet-openid-configuration   discovery
  GET  {issuer}/protocol/openid-connect/auth              authorization
       (code flow; PKCE S256, state, nonce, scope openid and
       acr_values=eidas1 required). PSC asks the professional for their
       e-CPS here; the simulator signs in the current user at once and
       redirects to redirect_uri with code and state.
  POST {issuer}/protocol/openid-connect/token             authorization_code
       (code_verifier checked) and refresh_token grants; client
       authentication client_secret_basic or client_secret_post
  GET  {issuer}/protocol/openid-connect/userinfo          Bearer; the PSC
       attributes: SubjectNameID (RPPS), names, SubjectRefPro.exercices[]
       (profession, specialty, activities with their sector),
       Secteur_Activite
  POST {issuer}/protocol/openid-connect/token/introspect  RFC 7662
  GET  {issuer}/protocol/openid-connect/certs             JWKS (RS256)
  GET  {issuer}/protocol/openid-connect/logout            ends the user's
       session (its tokens become inactive), then post_logout_redirect_uri

Tokens are JWTs signed RS256 with a key made at start (kid in the JWKS),
iss = issuer, acr = eidas1, aud and azp = the client.

Control endpoints (JSON):
  POST /_sim/user      {"SubjectNameID": ..., ...}: the userinfo of the
                       next sign-ins (merged over the default user)
  POST /_sim/faults    {"endpoint": "token|userinfo|introspect|certs|auth",
                        "kind": "error|slow", "count": N, "delay": S}
  POST /_sim/rotate    a new signing key (new kid); the old one leaves
                       the JWKS
  POST /_sim/token     {"client_id", "seconds", "acr", "sign": "good|
                       other-key|none"}: a token as the token endpoint would
                       give, for tests that need one without a browser
  GET  /_sim/requests  the requests received (endpoint, client, status)

usage: pscsim.py --port PORT [--bind ADDR] --client ID:SECRET [...]
                 [--token-seconds N]
"""

import argparse
import base64
import hashlib
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

REALM = "/auth/realms/esante-wallet"
OIDC = REALM + "/protocol/openid-connect"
CODE_SECONDS = 60

DEFAULT_USER = {
    "sub": "f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:899700366240",
    "SubjectNameID": "899700366240",
    "preferred_username": "899700366240",
    "family_name": "DOC0036624",
    "given_name": "KIT",
    "email_verified": False,
    "Secteur_Activite": "SA07^1.2.250.1.71.4.2.4",
    "SubjectOrganization": "CABINET M DOC0036624",
    "SubjectOrganizationID": "R95141",
    "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
    "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
    "SubjectRefPro": {
        "codeCivilite": "M",
        "exercices": [{
            "codeProfession": "10",
            "codeCategorieProfessionnelle": "C",
            "codeCiviliteDexercice": "DR",
            "nomDexercice": "DOC0036624",
            "prenomDexercice": "KIT",
            "codeTypeSavoirFaire": "S",
            "codeSavoirFaire": "SM44",
            "activities": [{
                "codeModeExercice": "S",
                "codeSecteurDactivite": "SA07",
                "identifiantTechniqueDeLaStructure": "R95141",
                "raisonSocialeSite": "CABINET M DOC0036624",
            }],
        }],
    },
    "otherIds": [{"identifiant": "899700366240", "origine": "RPPS", "qualite": 1}],
}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_int(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Keys:
    """The signing key (kid) and the JWKS that publishes it."""

    def __init__(self):
        self.rotate()

    def rotate(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)

    def jwks(self):
        pub = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                          "n": b64url_int(pub.n), "e": b64url_int(pub.e)}]}

    def sign(self, claims, key=None, kid=None):
        """A JWT (RS256) of claims, with this key or another one."""
        head = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        signing = (b64url(json.dumps(head).encode()) + "." +
                   b64url(json.dumps(claims).encode())).encode()
        sig = (key or self.key).sign(signing, padding.PKCS1v15(), hashes.SHA256())
        return signing.decode() + "." + b64url(sig)


class State:
    """Clients, codes, tokens and sessions, behind one lock."""

    def __init__(self, clients, token_seconds):
        self.lock = threading.Lock()
        self.clients = clients
        self.token_seconds = token_seconds
        self.user = dict(DEFAULT_USER)
        self.codes = {}      # code -> grant
        self.tokens = {}     # access token -> {claims, session, user}
        self.refresh = {}    # refresh token -> {client, session, user, scope}
        self.ended = set()   # sessions logged out
        self.faults = {}     # endpoint -> [kind, count, delay]
        self.requests = []

    def take_fault(self, endpoint):
        with self.lock:
            f = self.faults.get(endpoint)
            if not f or f[1] <= 0:
                return None, 0
            f[1] -= 1
            return f[0], f[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: /_sim/requests has them
        pass

    @property
    def st(self):
        return self.server.state

    def issuer(self):
        return "http://%s:%d%s" % (self.server.server_address[0],
                                   self.server.server_address[1], REALM)

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def oauth_error(self, status, error, description, endpoint, client=""):
        self.note(endpoint, client, status, error + ": " + description)
        self.reply(status, {"error": error, "error_description": description})

    def note(self, endpoint, client, status, detail=""):
        with self.st.lock:
            self.st.requests.append({"endpoint": endpoint, "client": client,
                                     "status": status, "detail": detail,
                                     "at": time.time()})

    def form(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}

    def client_auth(self, form):
        """The authenticated client id, or None."""
        auth = self.headers.get("Authorization", "")
        cid = secret = None
        if auth.startswith("Basic "):
            try:
                cid, secret = base64.b64decode(auth[6:]).decode().split(":", 1)
                cid, secret = urllib.parse.unquote(cid), urllib.parse.unquote(secret)
            except ValueError:
                return None
        elif "client_id" in form and "client_secret" in form:
            cid, secret = form["client_id"], form["client_secret"]
        if cid is None or self.st.clients.get(cid) != secret:
            return None
        return cid

    def fault(self, endpoint):
        """True when a fault answered this request."""
        kind, delay = self.st.take_fault(endpoint)
        if kind == "slow":
            time.sleep(delay)
        elif kind == "error":
            self.note(endpoint, "", 503, "injected fault")
            self.reply(503, {"error": "temporarily_unavailable",
                             "error_description": "injected fault"})
            return True
        return False

    # ------------------------------------------------------------ GET

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path == REALM + "/.well-known/wallet-openid-configuration":
            iss = self.issuer()
            return self.reply(200, {
                "issuer": iss,
                "authorization_endpoint": iss + "/protocol/openid-connect/auth",
                "token_endpoint": iss + "/protocol/openid-connect/token",
                "userinfo_endpoint": iss + "/protocol/openid-connect/userinfo",
                "introspection_endpoint": iss + "/protocol/openid-connect/token/introspect",
                "jwks_uri": iss + "/protocol/openid-connect/certs",
                "end_session_endpoint": iss + "/protocol/openid-connect/logout",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "acr_values_supported": ["eidas1"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
            })
        if url.path == OIDC + "/auth":
            return self.authorize(query)
        if url.path == OIDC + "/userinfo":
            return self.userinfo()
        if url.path == OIDC + "/certs":
            if self.fault("certs"):
                return None
            self.note("certs", "", 200)
            return self.reply(200, self.st.keys.jwks())
        if url.path == OIDC + "/logout":
            return self.logout(query)
        if url.path == "/_sim/requests":
            with self.st.lock:
                return self.reply(200, list(self.st.requests))
        return self.reply(404, {"error": "no such endpoint"})

    def authorize(self, q):
        if self.fault("auth"):
            return None
        cid = q.get("client_id", "")
        redirect = q.get("redirect_uri", "")
        if cid not in self.st.clients or not redirect.startswith(("http://", "https://")):
            # never redirect to an unknown place: an error page
            self.note("auth", cid, 400, "unknown client or redirect_uri")
            return self.reply(400, b"unknown client or bad redirect_uri", "text/plain")
        problems = []
        if q.get("response_type") != "code":
            problems.append("response_type must be code")
        if "openid" not in q.get("scope", "").split():
            problems.append("scope must include openid")
        if q.get("acr_values") != "eidas1":
            problems.append("acr_values must be eidas1")
        if q.get("code_challenge_method") != "S256" or len(q.get("code_challenge", "")) < 43:
            problems.append("PKCE (S256) is required")
        if not q.get("state") or not q.get("nonce"):
            problems.append("state and nonce are required")
        sep = "&" if "?" in redirect else "?"
        if problems:
            self.note("auth", cid, 302, "; ".join(problems))
            loc = redirect + sep + urllib.parse.urlencode(
                {"error": "invalid_request", "error_description": "; ".join(problems),
                 "state": q.get("state", "")})
            return self.reply(302, b"", "text/plain", [("Location", loc)])
        code = secrets.token_urlsafe(24)
        with self.st.lock:
            self.st.codes[code] = {"client": cid, "redirect": redirect,
                                   "challenge": q["code_challenge"], "nonce": q["nonce"],
                                   "scope": q.get("scope", ""), "user": dict(self.st.user),
                                   "session": secrets.token_hex(8),
                                   "expires": time.time() + CODE_SECONDS}
        self.note("auth", cid, 302)
        loc = redirect + sep + urllib.parse.urlencode(
            {"code": code, "state": q["state"], "session_state": secrets.token_hex(8)})
        return self.reply(302, b"", "text/plain", [("Location", loc)])

    def bearer(self):
        """The live token record of the request's Bearer, or None."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return self.live(auth[7:].strip())

    def live(self, token):
        with self.st.lock:
            rec = self.st.tokens.get(token)
            if rec is None or rec["claims"]["exp"] <= time.time() or \
                    rec["session"] in self.st.ended:
                return None
            return rec

    def userinfo(self):
        if self.fault("userinfo"):
            return None
        rec = self.bearer()
        if rec is None:
            self.note("userinfo", "", 401)
            return self.reply(401, {"error": "invalid_token"},
                              headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')])
        self.note("userinfo", rec["claims"]["azp"], 200)
        return self.reply(200, rec["user"])

    def logout(self, q):
        hint = q.get("id_token_hint", "")
        with self.st.lock:
            for rec in self.st.tokens.values():
                if rec.get("id_token") == hint:
                    self.st.ended.add(rec["session"])
        self.note("logout", "", 302 if q.get("post_logout_redirect_uri") else 200)
        if q.get("post_logout_redirect_uri"):
            return self.reply(302, b"", "text/plain",
                              [("Location", q["post_logout_redirect_uri"])])
        return self.reply(200, b"signed out", "text/plain")

    # ------------------------------------------------------------ POST

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == OIDC + "/token":
            return self.token(self.form())
        if path == OIDC + "/token/introspect":
            return self.introspect(self.form())
        if path.startswith("/_sim/"):
            length = int(self.headers.get("Content-Length") or 0)
            obj = json.loads(self.rfile.read(length) or b"{}")
            return self.control(path[len("/_sim/"):], obj)
        return self.reply(404, {"error": "no such endpoint"})

    def issue(self, cid, user, session, scope, nonce=None, seconds=None, acr="eidas1",
              key=None):
        """Access, id and refresh tokens for a sign-in; recorded."""
        now = int(time.time())
        seconds = self.st.token_seconds if seconds is None else seconds
        claims = {"iss": self.issuer(), "sub": user["sub"], "aud": [cid, "account"],
                  "azp": cid, "exp": now + seconds, "iat": now, "jti": secrets.token_hex(8),
                  "acr": acr, "scope": scope, "typ": "Bearer", "session_state": session,
                  "SubjectNameID": user.get("SubjectNameID", ""),
                  "preferred_username": user.get("preferred_username", "")}
        access = self.st.keys.sign(claims, key=key)
        id_claims = {"iss": self.issuer(), "sub": user["sub"], "aud": cid, "azp": cid,
                     "exp": now + seconds, "iat": now, "acr": acr, "typ": "ID",
                     "session_state": session}
        if nonce:
            id_claims["nonce"] = nonce
        id_token = self.st.keys.sign(id_claims, key=key)
        refresh = secrets.token_urlsafe(32)
        with self.st.lock:
            self.st.tokens[access] = {"claims": claims, "session": session, "user": user,
                                      "id_token": id_token}
            self.st.refresh[refresh] = {"client": cid, "session": session, "user": user,
                                        "scope": scope}
        return {"access_token": access, "expires_in": seconds, "token_type": "Bearer",
                "id_token": id_token, "refresh_token": refresh,
                "refresh_expires_in": 1800, "scope": scope, "session_state": session}

    def token(self, form):
        if self.fault("token"):
            return None
        cid = self.client_auth(form)
        if cid is None:
            return self.oauth_error(401, "invalid_client", "client authentication failed",
                                    "token")
        grant = form.get("grant_type")
        if grant == "refresh_token":
            with self.st.lock:
                rec = self.st.refresh.pop(form.get("refresh_token", ""), None)
            if rec is None or rec["client"] != cid or rec["session"] in self.st.ended:
                return self.oauth_error(400, "invalid_grant", "refresh token not valid",
                                        "token", cid)
            self.note("token", cid, 200, "refresh_token")
            return self.reply(200, self.issue(cid, rec["user"], rec["session"], rec["scope"]))
        if grant != "authorization_code":
            return self.oauth_error(400, "unsupported_grant_type", str(grant), "token", cid)
        with self.st.lock:
            rec = self.st.codes.pop(form.get("code", ""), None)
        if rec is None or rec["expires"] < time.time():
            return self.oauth_error(400, "invalid_grant", "code not valid (used or expired)",
                                    "token", cid)
        if rec["client"] != cid or rec["redirect"] != form.get("redirect_uri"):
            return self.oauth_error(400, "invalid_grant", "client or redirect_uri differ",
                                    "token", cid)
        verifier = form.get("code_verifier", "")
        if b64url(hashlib.sha256(verifier.encode()).digest()) != rec["challenge"]:
            return self.oauth_error(400, "invalid_grant", "PKCE verification failed",
                                    "token", cid)
        self.note("token", cid, 200, "authorization_code")
        return self.reply(200, self.issue(cid, rec["user"], rec["session"], rec["scope"],
                                          nonce=rec["nonce"]))

    def introspect(self, form):
        if self.fault("introspect"):
            return None
        cid = self.client_auth(form)
        if cid is None:
            return self.oauth_error(401, "invalid_client", "client authentication failed",
                                    "introspect")
        rec = self.live(form.get("token", ""))
        self.note("introspect", cid, 200, "active" if rec else "inactive")
        if rec is None:
            return self.reply(200, {"active": False})
        return self.reply(200, dict(rec["claims"], active=True, client_id=rec["claims"]["azp"]))

    def control(self, what, obj):
        if what == "user":
            with self.st.lock:
                self.st.user = dict(DEFAULT_USER, **obj)
        elif what == "faults":
            with self.st.lock:
                self.st.faults[obj["endpoint"]] = [obj["kind"], int(obj.get("count", 1)),
                                                   float(obj.get("delay", 0))]
        elif what == "rotate":
            self.st.keys.rotate()
        elif what == "token":
            cid = obj.get("client_id") or next(iter(self.st.clients))
            key = None
            if obj.get("sign") == "other-key":
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            out = self.issue(cid, dict(self.st.user), secrets.token_hex(8), "openid scope_all",
                             seconds=int(obj.get("seconds", self.st.token_seconds)),
                             acr=obj.get("acr", "eidas1"), key=key)
            return self.reply(200, out)
        else:
            return self.reply(404, {"error": "no such control"})
        return self.reply(200, {"ok": True})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--client", action="append", required=True,
                        help="a client allowed to sign users in, ID:SECRET")
    parser.add_argument("--token-seconds", type=int, default=300,
                        help="lifetime of the access tokens")
    args = parser.parse_args()
    clients = {}
    for c in args.client:
        cid, _, secret = c.partition(":")
        if not cid or not secret:
            parser.error("--client: ID:SECRET")
        clients[cid] = secret
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    server.state = State(clients, args.token_seconds)
    server.state.keys = Keys()
    print("pscsim listening on http://%s:%d%s" % (args.bind, server.server_address[1], REALM),
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
