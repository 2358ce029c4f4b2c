"""HTTPS, and sign-in with Pro Santé Connect, against the PSC simulator
(tests/psc-sim/pscsim.py): the authorization code flow (PKCE S256, state,
nonce, acr_values=eidas1), the session cookie and its flags, sign-out,
what stays public, and Bearer tokens checked by the JWKS (keys cached by
kid, fetched again when PSC rotates them) or by introspection (verdicts
cached). A replayed or forged callback, a PSC refusal and a PSC fault are
refused with a page that says so; nothing goes back to another site."""

import hashlib
import http.client
import ssl
import subprocess
import unittest
import urllib.parse

import harness
from harness import Drimbox, PscSim, TempDir


def get(port, path, headers=None):
    """(status, headers dict, body) of a GET on loopback, no redirects."""
    c = http.client.HTTPConnection(harness.LOOPBACK, port, timeout=30)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def get_url(url, headers=None):
    u = urllib.parse.urlsplit(url)
    return get(u.port, u.path + ("?" + u.query if u.query else ""), headers)


class SignInTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir("drimbox-auth-")
        d = cls.tmp.__enter__()
        cls.psc = PscSim(d / "psc", clients=(("drimbox", "secret"),
                                             ("other-app", "s2"))).start()
        cls.box = Drimbox(d / "box", extra=cls.psc.settings()).start()
        cls.intro = Drimbox(d / "intro", aet="INTRO", extra=dict(
            cls.psc.settings(), psc_token_check="introspection")).start()
        cls.port = cls.box.http_port

    @classmethod
    def tearDownClass(cls):
        for p in (cls.intro, cls.box, cls.psc):
            p.stop()
        cls.tmp.__exit__(None, None, None)

    def start_sign_in(self, path="/IHEInvokeImageDisplay?requestType=STUDY&studyUID=1.2.3"):
        """A page asked without a session: the 302 to PSC, parsed, and
        the cookie that binds the sign-in to this browser."""
        status, headers, _ = get(self.port, path, {"Accept": "text/html"})
        self.assertEqual(status, 302)
        loc = headers["Location"]
        self.assertTrue(loc.startswith(self.psc.issuer + "/protocol/openid-connect/auth?"), loc)
        binding = headers["Set-Cookie"]
        self.assertTrue(binding.startswith("drimbox_login="), binding)
        for flag in ("HttpOnly", "Secure", "Path=/auth/"):
            self.assertIn(flag, binding)
        self.binding = {"Cookie": binding.split(";")[0]}
        return loc, {k: v[0] for k, v in urllib.parse.parse_qs(
            urllib.parse.urlsplit(loc).query).items()}

    def sign_in(self, path="/viewer/"):
        """The whole flow; (cookie header value, where it went back)."""
        loc, _ = self.start_sign_in(path)
        status, headers, _ = get_url(loc)  # PSC approves at once
        self.assertEqual(status, 302)
        status, headers, body = get_url(headers["Location"], self.binding)  # the callback
        self.assertEqual(status, 302, body)
        return headers["Set-Cookie"].split(";")[0], headers["Location"]

    # ------------------------------------------------------------ the flow

    def test_a_page_signs_in_with_pkce_and_comes_back(self):
        path = "/IHEInvokeImageDisplay?requestType=STUDY&studyUID=1.2.3&Accessionnumber=A%201"
        loc, q = self.start_sign_in(path)
        self.assertEqual(q["response_type"], "code")
        self.assertEqual(q["client_id"], "drimbox")
        self.assertEqual(q["scope"], "openid scope_all")
        self.assertEqual(q["acr_values"], "eidas1")
        self.assertEqual(q["code_challenge_method"], "S256")
        self.assertEqual(len(q["code_challenge"]), 43)
        self.assertGreaterEqual(len(q["state"]), 43)
        self.assertGreaterEqual(len(q["nonce"]), 43)
        self.assertEqual(q["redirect_uri"], "http://%s:%d/auth/callback"
                         % (harness.LOOPBACK, self.port))
        status, headers, _ = get_url(loc)
        callback = headers["Location"]
        status, headers, _ = get_url(callback, self.binding)
        self.assertEqual(status, 302)
        self.assertEqual(headers["Location"], path)  # back where it was asked, query kept
        cookie = headers["Set-Cookie"]
        for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
            self.assertIn(flag, cookie)
        value = cookie.split(";")[0]
        self.assertEqual(get(self.port, "/dicomweb/studies", {"Cookie": value})[0], 200)
        self.assertIn("signed in: 899700366240 (KIT DOC0036624, profession 10)",
                      self.box.log_text())
        # the code went to PSC's token endpoint with the PKCE verifier
        token = [r for r in self.psc.control("requests") if r["endpoint"] == "token"]
        self.assertEqual(token[-1]["status"], 200)
        # the index keeps the session under the cookie's hash, not the cookie
        rows = self.box.sql("SELECT token_hash FROM sessions WHERE kind = 'user'")
        token_value = value.split("=", 1)[1]
        self.assertIn([hashlib.sha256(token_value.encode()).hexdigest()], rows)
        self.assertNotIn([token_value], rows)
        # the callback cannot be replayed: its state was single-use
        status, _, body = get_url(callback, self.binding)
        self.assertEqual(status, 400)
        self.assertIn("expir", body.decode())

    def test_a_forged_refused_or_failing_callback_is_refused(self):
        status, _, _ = get(self.port, "/auth/callback?code=x&state=" + "A" * 43)
        self.assertEqual(status, 400)
        status, _, _ = get(self.port, "/auth/callback?code=x")
        self.assertEqual(status, 400)
        # PSC refused (the user cancelled): a 403 page, logged
        _, q = self.start_sign_in()
        status, _, body = get(self.port, "/auth/callback?error=access_denied&state="
                              + q["state"], self.binding)
        self.assertEqual(status, 403)
        self.assertIn("refus", body.decode())
        self.assertIn("sign-in refused by PSC: access_denied", self.box.log_text())
        # PSC's token endpoint fails: a 502 page, no session
        loc, _ = self.start_sign_in()
        _, headers, _ = get_url(loc)
        self.psc.control("faults", {"endpoint": "token", "kind": "error", "count": 1})
        status, headers, _ = get_url(headers["Location"], self.binding)
        self.assertEqual(status, 502)
        self.assertNotIn("Set-Cookie", headers)
        self.assertIn("sign-in failed: PSC", self.box.log_text())
        # a callback in another browser than the one that began (login
        # CSRF: someone else's code would sign this browser in as them)
        loc, _ = self.start_sign_in()
        _, headers, _ = get_url(loc)
        status, headers, _ = get_url(headers["Location"], {"Cookie": "drimbox_login=x"})
        self.assertEqual(status, 400)
        self.assertNotIn("Set-Cookie", headers)
        self.assertIn("callback from another browser", self.box.log_text())

    def test_sign_in_goes_back_only_to_a_local_page(self):
        for nxt in ("//evil.example/x", "https://evil.example/", "/\\evil.example",
                    "/\t/evil.example", "/\r\nSet-Cookie: x=1"):
            status, headers, _ = get(self.port, "/auth/login?next=" + urllib.parse.quote(nxt))
            self.assertEqual(status, 302)
            binding = {"Cookie": headers["Set-Cookie"].split(";")[0]}
            _, headers, _ = get_url(headers["Location"])
            _, headers, _ = get_url(headers["Location"], binding)
            self.assertEqual(headers["Location"], "/viewer/", nxt)

    def test_sign_out_ends_the_session_here_and_at_psc(self):
        cookie, _ = self.sign_in()
        status, headers, _ = get(self.port, "/auth/logout", {"Cookie": cookie})
        self.assertEqual(status, 302)
        self.assertIn("Max-Age=0", headers["Set-Cookie"])
        end = urllib.parse.urlsplit(headers["Location"])
        self.assertEqual(end.path, "/auth/realms/esante-wallet/protocol/openid-connect/logout")
        q = urllib.parse.parse_qs(end.query)
        self.assertIn("id_token_hint", q)
        self.assertEqual(q["post_logout_redirect_uri"],
                         ["http://%s:%d/auth/signed-out" % (harness.LOOPBACK, self.port)])
        self.assertEqual(get(self.port, "/dicomweb/studies", {"Cookie": cookie})[0], 401)
        self.assertEqual(get(self.port, "/auth/signed-out")[0], 200)

    def test_only_the_documented_routes_are_public(self):
        self.assertEqual(get(self.port, "/health")[0], 200)
        self.assertEqual(get(self.port, "/auth/signed-out")[0], 200)
        status, headers, body = get(self.port, "/dicomweb/studies")
        self.assertEqual(status, 401)
        self.assertEqual(headers["WWW-Authenticate"], 'Bearer realm="drimbox"')
        self.assertIn(b"sign-in required", body)
        self.assertEqual(get(self.port, "/conso/api/exams")[0], 401)
        # the viewer's page signs in; its code and styles are public
        self.assertEqual(get(self.port, "/viewer/", {"Accept": "text/html"})[0], 302)
        self.assertEqual(get(self.port, "/viewer/")[0], 401)
        status, _, page = get(self.port, "/viewer/", {"Cookie": self.sign_in()[0]})
        self.assertEqual(status, 200)
        assets = [a for a in urllib.parse.unquote(page.decode()).split('"')
                  if a.endswith(".js") and not a.startswith("http")]
        self.assertTrue(assets, page[:500])
        asset = assets[0] if assets[0].startswith("/") else "/viewer/" + assets[0].lstrip("./")
        self.assertEqual(get(self.port, asset)[0], 200, asset)

    # ------------------------------------------------------------ tokens

    def token(self, **kw):
        return self.psc.control("token", kw)["access_token"]

    def bearer(self, port, token):
        status, _, body = get(port, "/dicomweb/studies", {"Authorization": "Bearer " + token})
        return status, body.decode()

    def test_tokens_checked_by_the_jwks(self):
        # a program with a token reads nothing outside a manifest
        status, body = self.bearer(self.port, self.token())
        self.assertEqual(status, 403, body)
        self.assertIn("KOS-SOPInstanceUID", body)
        for bad, why in ((self.token(sign="other-key"), "signature does not verify"),
                         (self.token(seconds=-120), "expired"),
                         (self.token(acr="eidas2"), "acr"),
                         ("not.a.jwt", "not a signed JWT"),
                         (self.psc.control("token", {})["id_token"], "not an access token"),
                         (self.token(client_id="other-app"), "client 'other-app'")):
            status, body = self.bearer(self.port, bad)
            self.assertEqual(status, 401, why)
            self.assertIn(why, body)
        self.assertEqual(self.bearer(self.port, "x" * 20000)[0], 431)  # headers too large
        # PSC rotates its key: the new kid is fetched, the old key dropped
        old = self.token()
        self.psc.control("rotate", {})
        self.assertEqual(self.bearer(self.port, self.token())[0], 403)  # known: past the check
        status, body = self.bearer(self.port, old)
        self.assertEqual(status, 401)
        self.assertIn("unknown", body)

    def test_tokens_checked_by_introspection_are_cached(self):
        port = self.intro.http_port
        good = self.token()
        before = len([r for r in self.psc.control("requests") if r["endpoint"] == "introspect"])
        self.assertEqual(self.bearer(port, good)[0], 403)  # active: past the check
        self.assertEqual(self.bearer(port, good)[0], 403)
        calls = [r for r in self.psc.control("requests") if r["endpoint"] == "introspect"]
        self.assertEqual(len(calls) - before, 1)  # the second answer came from the cache
        self.assertEqual(calls[-1]["detail"], "active")
        status, body = self.bearer(port, self.token(seconds=-5))
        self.assertEqual(status, 401)
        self.assertIn("not active", body)
        status, body = self.bearer(port, self.token(acr="eidas2"))
        self.assertEqual(status, 401)
        self.assertIn("acr", body)


class HttpsTest(unittest.TestCase):
    """http_tls_cert / http_tls_key: the server speaks HTTPS only (TLS 1.2
    or later; GnuTLS's priorities, set by drimboxd, are not tested from a
    client that Debian's OpenSSL no longer lets speak TLS 1.1)."""

    def test_https_only(self):
        with TempDir("drimbox-https-") as d:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                            "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"),
                            "-out", str(d / "cert.pem")], check=True, capture_output=True)
            with Drimbox(d / "box", extra={"http_tls_cert": d / "cert.pem",
                                           "http_tls_key": d / "key.pem"}) as box:
                ctx = ssl.create_default_context(cafile=str(d / "cert.pem"))
                c = http.client.HTTPSConnection(harness.LOOPBACK, box.http_port, timeout=30,
                                                context=ctx)
                c.request("GET", "/health")
                r = c.getresponse()
                self.assertEqual((r.status, r.read()), (200, b'{"status":"ok"}'))
                self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
                c.close()
                # plain HTTP on the HTTPS port gets no answer
                try:
                    status = get(box.http_port, "/health")[0]
                except (http.client.HTTPException, OSError):
                    status = None
                self.assertNotEqual(status, 200)
                self.assertIn("DICOMweb at https://", box.log_text())


if __name__ == "__main__":
    unittest.main(verbosity=2)
