"""The consumer role, with two DRIMboxes on loopback: drimbox A (source,
Orthanc A with the small set) publishes a report's manifest to the DMP
simulator; drimbox B (consumer, Orthanc B empty) gets a contextual call,
lists the patient's exams from the DMP, pulls the exam from A over
WADO-RS (whitelist checked, KOS-SOPInstanceUID sent), and imports it into
Orthanc B. The pixel data B holds equals Orthanc A's. Also: the context is
single-use, a bad call is refused, a RetrieveURL not in the whitelist, a
DMP fault and an unreachable source are clear errors with nothing
imported. The consumer page itself is driven in headless Chromium
(tests/viewer/conso.mjs): banner, list, View to the first image.
"""

import hashlib
import http.cookiejar
import io
import json
import os
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import pydicom

import common
import harness
import reports
from harness import DmpSim, Drimbox, Orthanc, PscSim
from test_publish import last_job_id, signing_key, wait_job
from tlscerts import issue, make_ca
from wlsign import make_trust, write_signed_whitelist

DRIVER = harness.REPO / "tests" / "viewer" / "conso.mjs"
ARTIFACTS = common.TMP_ROOT / "conso-artifacts"
PATIENT = reports.SMALL_SET_PATIENT
RPPS = "899700366240"  # the PSC simulator's professional
B_SUBJECT = "/C=FR/ST=Paris (75)/O=editeur/OU=00000000000002/CN=db.b.test"
B_DN = "CN=db.b.test,OU=00000000000002,O=editeur,ST=Paris (75),C=FR"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def call_form(**over):
    """The DRIM-M contextual call's parameters for the small set's patient."""
    form = {
        "Patient.identifier.value": PATIENT["ins"],
        "Patient.identifier.system": "urn:oid:" + reports.INS_OID,
        "Patient.name.family": PATIENT["family"],
        "Patient.name.given": PATIENT["given"],
        "Patient.gender": PATIENT["sex"],
        "Patient.birthDate": "1979-03-15",
        "Address.district": "51215",
        "InformationEtOppositionConsultation": "true",
        "PatientID": "IPP-B-1",
        "PatientIDIssuer": "1.2.250.1.999.1",
    }
    form.update(over)
    return {k: v for k, v in form.items() if v is not None}


def decoded(ds):
    """A JPEG-LS dataset decoded by DCMTK (dcmdjpls) to explicit little
    endian."""
    with tempfile.TemporaryDirectory() as t:
        src, dst = os.path.join(t, "in.dcm"), os.path.join(t, "out.dcm")
        ds.save_as(src, write_like_original=True)
        subprocess.run(["dcmdjpls", src, dst], check=True, capture_output=True)
        return pydicom.dcmread(dst)


class LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    """Secure cookies go back to http://127.0.0.1, as browsers send them
    to loopback."""

    def return_ok_secure(self, cookie, request):
        return True


class Browser:
    """A client with its own cookies, redirects not followed."""

    def __init__(self, base, context=None):
        self.base = base
        self.jar = http.cookiejar.CookieJar(LoopbackIsSecure())
        self.opener = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=context))

    def sign_in(self):
        """Signs in through Pro Santé Connect (the simulator approves at
        once): drimbox -> PSC -> drimbox's callback, which sets the
        session cookie."""
        status, headers, _ = self.req("GET", "/auth/login?next=/health")
        assert status == 302, status
        for _ in range(2):  # PSC's authorization, then the callback
            status, headers, body = self.req("GET", headers["Location"])
            assert status == 302, (status, body[:300])
        assert headers["Location"] == "/health", headers["Location"]
        assert any(c.name == "drimbox_session" for c in self.jar)
        return self

    def req(self, method, path, data=None, headers=None):
        """(status, headers, body); path may be a whole URL."""
        url = path if path.startswith("http") else self.base + path
        r = urllib.request.Request(url, data=data, method=method,
                                   headers=headers or {})
        try:
            with self.opener.open(r, timeout=120) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def call(self, form):
        body = urllib.parse.urlencode(form).encode()
        return self.req("POST", "/conso", body,
                        {"Content-Type": "application/x-www-form-urlencoded"})

    def open_session(self, form=None):
        """Contextual call, then the page: the session cookie is set."""
        status, headers, _ = self.call(form or call_form())
        assert status == 303, status
        loc = headers["Location"]
        status, headers, _ = self.req("GET", loc)
        assert status == 303, status
        return loc

    def api(self, method, path):
        status, _, body = self.req(method, "/conso/api/" + path, b"" if method == "POST" else None,
                                   {"X-Requested-With": "drimbox"})
        return status, json.loads(body) if body else None


class ConsumerTest(common.PacsTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.dir
        signing_key(d)
        cls.sim = DmpSim(d / "dmp", trust=d / "sign.pem").start()
        cls.psc = PscSim(d / "psc", clients=(("drimbox-a", "secret-a"),
                                             ("drimbox-b", "secret-b"))).start()
        dmp = {"dmp_url": cls.sim.url + "/si-dmp-server/v2/services",
               "dmp_sign_cert": d / "sign.pem", "dmp_sign_key": d / "sign.key",
               "dmp_structure_id": "CONSOTEST", "dmp_lps_id": "CONSOTEST"}
        cls.hl7_port = harness.free_port()
        a_http = harness.free_port()
        # A serves HTTPS and asks other DRIMboxes for a client certificate
        # (mutual TLS): B's is in the whitelist, issued by the TLS CA
        cls.tls = d / "tls"
        cls.tls_ca = make_ca(cls.tls, "tls-ca")
        server = issue(cls.tls, cls.tls_ca, "a-server", "/CN=127.0.0.1", server=True)
        cls.b_cert = issue(cls.tls, cls.tls_ca, "b-client", B_SUBJECT)
        trust = make_trust(d / "wl")
        write_signed_whitelist(d / "wl" / "list.xml", [
            {"id": "1", "db": "127.0.0.1", "vi": "127.0.0.1", "name": "DRIMbox A"},
            {"id": "2", "db": "db.b.test", "vi": "db.b.test", "name": "DRIMbox B",
             "cert_dn": B_DN}], trust)
        cls.a = Drimbox(d / "a", pacs=cls.pacs, aet="DRIMBOXA", extra=dict(
            dmp, hl7_port=cls.hl7_port, publish_wait_hours=0, http_port=a_http,
            public_url="https://127.0.0.1:%d" % a_http,
            http_tls_cert=server[0], http_tls_key=server[1],
            http_tls_client_ca=cls.tls_ca[0],
            whitelist_file=d / "wl" / "list.xml", whitelist_trust=trust["ca_cert"],
            psc_bearer_clients="drimbox-b",  # B pulls with its users' tokens
            **cls.psc.settings(("drimbox-a", "secret-a")))).start()
        cls.a.cli("sync", "--all")
        write_signed_whitelist(d / "wl" / "other.xml", [
            {"id": "1", "db": "db1.example.org", "vi": "db1.example.org", "name": "X"}], trust)
        cls.pacs_b = Orthanc(d / "orthanc-b", aet="ORTHANCB").start()
        cls.consumer = consumer = dict(dmp, whitelist_file=d / "wl" / "list.xml",
                        whitelist_trust=trust["ca_cert"], web_dir=harness.REPO / "web",
                        conso_prefetch=0, remote_tls_cert=cls.b_cert[0],
                        remote_tls_key=cls.b_cert[1], remote_tls_ca=cls.tls_ca[0],
                        **cls.psc.settings(("drimbox-b", "secret-b")))
        cls.ws = harness.Storescp(d / "ws", aet="WS1").start()  # a workstation
        cls.b = Drimbox(d / "b", pacs=cls.pacs_b, aet="DRIMBOXB", extra=dict(
            consumer, qr_workstations="WS1@%s:%d, WS2@%s:%d" % (
                harness.LOOPBACK, cls.ws.port, harness.LOOPBACK, harness.free_port()))).start()
        cls.b_other = Drimbox(d / "b2", aet="DRIMBOXC", extra=dict(
            consumer, whitelist_file=d / "wl" / "other.xml")).start()
        cls.studies = {st["key"]: st for st in cls.manifest["studies"]}
        for n, key in enumerate(("ct", "ct-jls")):  # the patient's
            st = cls.studies[key]
            ack = reports.mllp_send(cls.hl7_port, reports.oru(
                st["study_uid"], st["accession_number"], PATIENT, "CONSO%d" % n))
            if ack != "AA":
                raise harness.HarnessError("report refused: " + ack)
            job = wait_job(cls.a, last_job_id(cls.a))
            if job["state"] != "done":
                raise harness.HarnessError("publication not done: %s" % job)
        cls.base_b = "http://%s:%d" % (harness.LOOPBACK, cls.b.http_port)

    @classmethod
    def tearDownClass(cls):
        for p in (cls.b_other, cls.b, cls.ws, cls.a, cls.pacs_b, cls.sim, cls.psc):
            p.stop()
        super().tearDownClass()

    def exams(self, br):
        status, body = br.api("GET", "exams")
        self.assertEqual(status, 200, body)
        return {e["study_uid"]: e for e in body["exams"]}

    def wait_state(self, br, study, states, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            e = self.exams(br)[study]
            if e["state"] in states or time.monotonic() > deadline:
                return e
            time.sleep(0.2)

    # ------------------------------------------------------------ the call

    def test_the_context_opens_one_session_once(self):
        br = Browser(self.base_b).sign_in()
        loc = br.open_session()
        self.assertTrue(loc.startswith("/conso/?ctx="), loc)
        self.assertGreaterEqual(len(loc) - len("/conso/?ctx="), 40)
        cookie = next(c for c in br.jar if c.name == "drimbox_conso")
        self.assertTrue(cookie.has_nonstandard_attr("HttpOnly"))
        status, body = br.api("GET", "session")
        self.assertEqual(status, 200)
        self.assertEqual(body["patient"]["ins"], PATIENT["ins"])
        # the same link again, from another browser: refused
        other = Browser(self.base_b).sign_in()
        status, _, _ = other.req("GET", loc)
        self.assertEqual(status, 404)
        self.assertEqual(other.api("GET", "exams")[0], 401)

    def test_a_bad_call_is_refused_with_its_reason(self):
        br = Browser(self.base_b).sign_in()
        for form, word in ((call_form(**{"Patient.identifier.value": "12345"}), "identifier"),
                           (call_form(**{"Patient.birthDate": "15/03/1979"}), "birthDate"),
                           (call_form(PatientID=None), "PatientID"),
                           (call_form(InformationEtOppositionConsultation="maybe"),
                            "Information")):
            status, _, body = br.call(form)
            self.assertEqual(status, 400, form)
            self.assertIn(word, json.loads(body)["error"])
        status, _, _ = br.req("POST", "/conso", b"not a form", {"Content-Type": "text/plain"})
        self.assertEqual(status, 415)
        status, _, body = br.call(call_form(Situation="x" * 70000))
        self.assertEqual(status, 413, body)
        status, _, body = br.call(call_form(Situation="x" * 300))
        self.assertEqual(status, 400, body)  # a value over 256 bytes

    def test_an_action_without_its_header_is_refused(self):
        br = Browser(self.base_b).sign_in()
        br.open_session()
        e = next(iter(self.exams(br).values()))
        status, _, body = br.req("POST", "/conso/api/exams/%s/import" % e["id"], b"")
        self.assertEqual(status, 403, body)
        self.assertIn("X-Requested-With", json.loads(body)["error"])
        self.assertEqual(br.api("POST", "exams/no-such-exam/view")[0], 404)

    # ------------------------------------------------------- list, pull, import

    def audit(self, box, *args, **match):
        """The rows of box's audit trail (drimbox audit --json) that
        match."""
        rows = json.loads(box.cli("audit", "--json", *args).stdout)
        return [r for r in rows if all(r[k] == v for k, v in match.items())]

    def test_exam_listed_pulled_identical_and_imported(self):
        ct = self.studies["ct"]
        br = Browser(self.base_b).sign_in()
        loc = br.open_session()
        call = hashlib.sha256(loc.split("ctx=")[1].encode()).hexdigest()[:16]
        exams = self.exams(br)
        self.assertIn(ct["study_uid"], exams)
        e = exams[ct["study_uid"]]
        self.assertEqual(e["modality"], "CT")
        self.assertEqual(e["accession"], ct["accession_number"])
        self.assertEqual(e["state"], "remote")
        status, body = br.api("POST", "exams/%s/view" % e["id"])
        self.assertEqual(status, 200, body)
        self.assertEqual(body["viewer"], "/viewer/?study=" + ct["study_uid"])
        e = self.wait_state(br, ct["study_uid"], ("local", "failed"))
        self.assertEqual(e["state"], "local", e)
        # B holds what Orthanc A holds
        originals = {}
        for oid in self.pacs.instances_of_study(ct["study_uid"]).values():
            ds = pydicom.dcmread(io.BytesIO(self.pacs.instance_file(oid)))
            originals[ds.SOPInstanceUID] = ds
        pulled = {}
        for f in harness.dicom_files(self.b.cache_dir / ct["study_uid"]):
            ds = pydicom.dcmread(f)
            pulled[ds.SOPInstanceUID] = ds
        self.assertEqual(set(pulled), set(originals))
        # it travelled compressed (JPEG-LS lossless, the puller's first
        # choice): decoded, the pixels are the same
        for uid, ds in originals.items():
            got = pulled[uid]
            self.assertEqual(got.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.80")
            self.assertEqual(decoded(got).PixelData, ds.PixelData, uid)
        # B's own DICOMweb serves it
        status, _, body = br.req("GET", "/dicomweb/studies/%s/series" % ct["study_uid"])
        self.assertEqual(status, 200)
        status, body = br.api("POST", "exams/%s/import" % e["id"])
        self.assertEqual(status, 202, body)
        e = self.wait_state(br, ct["study_uid"], ("imported", "failed"))
        self.assertEqual(e["state"], "imported", e)
        self.assertEqual(e["import_sent"], len(originals))
        imported = self.pacs_b.instances_of_study(ct["study_uid"])
        self.assertEqual(len(imported), len(originals))
        # filed under the local patient of the call, the INS kept
        ds = pydicom.dcmread(io.BytesIO(self.pacs_b.instance_file(next(iter(imported.values())))))
        self.assertEqual((ds.PatientID, ds.IssuerOfPatientID), ("IPP-B-1", "1.2.250.1.999.1"))
        self.assertEqual(ds.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityIDType, "ISO")
        kept = {(o.PatientID, o.get("IssuerOfPatientID", "")) for o in ds.OtherPatientIDsSequence}
        self.assertIn((PATIENT["ins"], reports.INS_OID), kept)
        self.assertEqual(decoded(ds).PixelData, originals[ds.SOPInstanceUID].PixelData)
        self.check_audit(call, ct["study_uid"])

    def check_audit(self, call, study):
        """What the flow left in both audit trails, the statistics file
        of B, and the hash chain that shows a row changed or removed."""
        rows = self.audit(self.b, call=call)
        seen = {(r["action"], r["actor"], r["study"], r["outcome"], r["detail"])
                for r in rows}
        self.assertIn(("call", "", "", "ok", "patient " + PATIENT["ins"]), seen)
        self.assertIn(("consult", RPPS, "", "ok", ""), seen)
        for tx in ("TD0.2", "ITI-18", "ITI-43"):  # the VIHF's professional
            self.assertIn(("dmp", RPPS, "", "ok", tx), seen)
        self.assertIn(("pull", RPPS, study, "ok", ""), seen)
        self.assertIn(("import", RPPS, study, "ok", ""), seen)
        pull = next(r for r in rows if r["action"] == "pull")
        self.assertEqual(pull["source"], "127.0.0.1:%d" % self.a.http_port)
        views = self.audit(self.b, action="view", actor=RPPS, study=study)
        self.assertTrue(views and views[0]["source"] == "127.0.0.1", views)
        # at the source: the study served to B for that professional, and
        # its publication
        self.assertTrue(self.audit(self.a, action="serve", actor=RPPS, study=study,
                                   outcome="ok"))
        self.assertTrue(self.audit(self.a, action="publish", study=study, outcome="ok"))
        # a time that is not one is refused, saying the form expected
        for bad in (("--from", "yesterday"), ("--to", "2026-13-01"), ("--json", "x")):
            got = self.b.cli("audit", *bad, check=False)
            self.assertEqual(got.returncode, 2, bad)
            self.assertIn("YYYY-MM-DD", got.stderr)
        # a time range: nothing before 2000, everything by today
        self.assertEqual(self.audit(self.b, "--to", "2000-01-01"), [])
        today = time.strftime("%Y-%m-%d", time.gmtime())
        self.assertEqual(len(self.audit(self.b, "--from", today, "--to", today, call=call)),
                         len(rows))
        csv = self.b.cli("audit").stdout.splitlines()
        self.assertEqual(csv[0], "id,time,actor,action,study,series,source,outcome,call,"
                                 "detail,hash")
        self.assertTrue(any(",consult,,,%s," % "127.0.0.1" in l and call in l for l in csv))
        # the statistics file: the call's exchanges and their status
        stats = {s["call"]: s for s in json.loads(self.b.cli("stats", "--json").stdout)}
        self.assertEqual({k: stats[call][k] for k in ("rpps", "TD0.2", "ITI-18", "ITI-43",
                                                      "WADO-RS", "C-STORE", "status")},
                         {"rpps": RPPS, "TD0.2": "OK", "ITI-18": "OK", "ITI-43": "OK",
                          "WADO-RS": "OK", "C-STORE": "OK", "status": "OK"})
        self.assertIn(call, self.b.cli("stats").stdout)
        # the chain: intact, then a copy changed or cut is seen to be
        out = self.b.cli("audit", "verify").stdout
        self.assertRegex(out, r"^audit trail intact: \d+ rows, last hash [0-9a-f]{64}\n$")
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, "drimbox.conf")

            def tampered(sql):
                # a copy of the index as it is now, changed by sql
                lines, target = self.b.index_copy(tmp)
                with open(conf, "w") as f:
                    f.write(lines + "auth = none\n")
                harness.sql_query(target, sql)
                return subprocess.run([str(self.b.cli_bin), "-c", conf, "audit", "verify"],
                                      capture_output=True, text=True, timeout=60)

            got = tampered("SELECT 1")
            self.assertEqual(got.returncode, 0, got.stderr)
            consult = next(r for r in rows if r["action"] == "consult")["id"]
            for sql in ("UPDATE audit SET actor = '810000000000' WHERE id = %d" % consult,
                        "DELETE FROM audit WHERE id = %d" % consult):
                got = tampered(sql)
                self.assertEqual(got.returncode, 1, sql)
                self.assertIn("BROKEN at row %d" % (consult + ("DELETE" in sql)), got.stdout)

    def test_a_call_naming_an_accession_asks_for_its_documents(self):
        ct = self.studies["ct"]
        br = Browser(self.base_b).sign_in()
        br.open_session(call_form(AccessionNumber=ct["accession_number"],
                                  AccessionNumberIssuer="1.2.250.1.999.1.1.5"))
        self.assertIn(ct["study_uid"], self.exams(br))
        self.assertIn("FindDocumentsByReferenceId %s^^^&1.2.250.1.999.1.1.5&ISO^"
                      "urn:ihe:iti:xds:2013:accession -> ok (1 documents)"
                      % ct["accession_number"],
                      (self.b.workdir / "drimboxd.log").read_text())

    def test_a_retrieve_url_off_the_whitelist_is_refused(self):
        mr = self.studies["ct-jls"]
        br = Browser("http://%s:%d" % (harness.LOOPBACK, self.b_other.http_port)).sign_in()
        br.open_session()
        e = self.exams(br)[mr["study_uid"]]
        status, body = br.api("POST", "exams/%s/view" % e["id"])
        self.assertEqual(status, 403, body)
        self.assertIn("whitelist", body["error"])
        self.assertEqual(self.exams(br)[mr["study_uid"]]["state"], "failed")
        self.assertFalse((self.b_other.cache_dir / mr["study_uid"]).exists())

    # ------------------------------------------------------------ sign-in

    def test_the_signed_in_professional_consults(self):
        br = Browser(self.base_b)
        status, headers, _ = br.call(call_form())
        self.assertEqual(status, 303)  # the call itself is public
        # the page asks for a sign-in first, then comes back to the call
        status, headers, _ = br.req("GET", headers["Location"], headers={"Accept": "text/html"})
        self.assertEqual(status, 302)
        self.assertTrue(headers["Location"].startswith(self.psc.issuer), headers["Location"])
        for _ in range(2):
            status, headers, _ = br.req("GET", headers["Location"])
        self.assertTrue(headers["Location"].startswith("/conso/?ctx="), headers["Location"])
        self.assertEqual(br.req("GET", headers["Location"])[0], 303)
        self.exams(br)
        # the VIHF of the DMP requests names them (RPPS, profession, specialty)
        listing = [r for r in self.sim.control("requests") if r["action"] == ITI18]
        self.assertEqual(listing[-1]["subject"], "899700366240 10 SM44")
        # the session is theirs: another sign-in cannot use its cookie
        other = Browser(self.base_b).sign_in()
        conso = next(c for c in br.jar if c.name == "drimbox_conso")
        other.jar.set_cookie(conso)
        status, body = other.api("GET", "exams")
        self.assertEqual(status, 403, body)

    def test_the_source_serves_another_drimbox_its_manifest_with_a_token(self):
        ct = self.studies["ct"]
        kos = [d["unique_id"] for d in self.sim.control("documents")
               if d["mime"] == "application/dicom" and ct["study_uid"] in (d["reference_ids"] or "")][-1]
        url = "https://%s:%d/dicomweb/studies/%s" % (harness.LOOPBACK, self.a.http_port,
                                                      ct["study_uid"])
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'

        def tls(cert):
            ctx = ssl.create_default_context(cafile=str(self.tls_ca[0]))
            if cert:
                ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            return ctx

        b_tls = tls(self.b_cert)

        def get(token=None, manifest=kos, path="", context=b_tls):
            headers = {"Accept": accept}
            if token:
                headers["Authorization"] = "Bearer " + token
            if manifest:
                headers["KOS-SOPInstanceUID"] = manifest
            try:
                with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers),
                                            timeout=60, context=context) as resp:
                    resp.read()
                    return resp.status, ""
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())["error"]

        def token(**kw):
            return self.psc.control("token", dict(kw, client_id="drimbox-b"))["access_token"]

        self.assertEqual(get(), (401, "sign-in required"))
        status, why = get(token(sign="other-key"))
        self.assertEqual((status, why), (401, "token signature does not verify"))
        self.assertEqual(get(token(seconds=-120)), (401, "token expired"))
        self.assertEqual(get(token(acr="eidas2"))[0], 401)
        good = token()
        self.assertEqual(get(good, manifest="1.2.3")[0], 403)
        self.assertEqual(get(good, manifest=None)[0], 403)  # the whole PACS: no
        self.assertEqual(get(good, path="/series")[0], 403)  # nor a search
        self.assertEqual(get(good), (200, ""))
        self.assertIn("refused GET /dicomweb/studies/%s: token expired" % ct["study_uid"],
                      self.a.log_text())
        # mutual TLS: a DRIMbox of the whitelist, with a certificate of its
        # trust anchors, and nothing else
        rogue_ca = make_ca(self.tls / "rogue", "rogue-ca")
        for cert, why in (
                (None, "a client certificate is required"),
                (issue(self.tls / "rogue", rogue_ca, "rogue", B_SUBJECT),
                 "the client certificate is refused"),
                (issue(self.tls, self.tls_ca, "unlisted", "/O=editeur/CN=db.c.test"),
                 "the client certificate 'CN=db.c.test,O=editeur' is not a DRIMbox "
                 "of the whitelist")):
            status, error = get(good, context=tls(cert))
            self.assertEqual(status, 403, cert)
            self.assertTrue(error.startswith(why), error)
        refused = self.audit(self.a, action="serve", outcome="refused")
        self.assertTrue(any(r["detail"] == "a client certificate is required" and
                            r["actor"] == RPPS for r in refused), refused)
        # people's browsers are not asked for one: a signed-in session
        # reads A's DICOMweb without a certificate
        br = Browser("https://%s:%d" % (harness.LOOPBACK, self.a.http_port), tls(None))
        br.sign_in()
        self.assertEqual(br.req("GET", "/dicomweb/studies/%s/series" % ct["study_uid"])[0], 200)

    def test_a_dmp_fault_is_shown(self):
        self.sim.control("faults", {"action": ITI18, "kind": "soap-fault", "count": 1})
        br = Browser(self.base_b).sign_in()
        br.open_session()  # the session starts listing at once: it meets the fault
        status, body = br.api("GET", "exams")
        self.assertIn(status, (403, 502), body)  # refused, or not reached
        self.assertIn("DMP", body["error"])
        # the next attempt asks again, and lists
        self.assertEqual(br.api("GET", "exams")[0], 200)

    def consumer_box(self, name, **extra):
        """Another drimbox B, its cache empty, stopped after the test."""
        box = Drimbox(self.dir / name, aet=name.upper(),
                      extra=dict(self.consumer, **extra)).start()
        self.addCleanup(box.stop)
        return box, "http://%s:%d" % (harness.LOOPBACK, box.http_port)

    def test_a_manifest_the_source_replaced_is_refused_then_read_again(self):
        st = self.studies["ct"]
        uid = st["study_uid"]
        box, base = self.consumer_box("b403")
        br = Browser(base).sign_in()
        br.open_session()
        listed = self.exams(br)[uid]  # the manifest A publishes now
        # A's report is corrected: A publishes a new manifest in place of
        # the one B listed, and no longer serves under the old one
        ack = reports.mllp_send(self.hl7_port, reports.oru(
            uid, st["accession_number"], PATIENT, "CONSO-RO", orc="RO"))
        self.assertEqual(ack, "AA")
        job = wait_job(self.a, last_job_id(self.a))
        self.assertEqual((job["kind"], job["state"]), ("replace", "done"), job)
        status, body = br.api("POST", "exams/%s/view" % listed["id"])
        self.assertEqual(status, 200, body)
        e = self.wait_state(br, uid, ("failed", "local"))
        self.assertEqual(e["state"], "failed", e)
        self.assertIn("refused", e["error"])
        self.assertIn("403", e["error"])
        self.assertEqual(harness.dicom_files(box.cache_dir / uid), [])
        self.assertIn("KOS-SOPInstanceUID", (box.workdir / "drimboxd.log").read_text())
        # a new session lists the new manifest, which is read again: the
        # study comes
        br = Browser(base).sign_in()
        br.open_session()
        e = self.exams(br)[uid]
        self.assertNotEqual(e["unique"], listed["unique"])
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        e = self.wait_state(br, uid, ("failed", "local"))
        self.assertEqual(e["state"], "local", e)

    def test_a_corrupt_or_unexpected_part_is_refused_then_the_rest_resumes(self):
        st = self.studies["ct-jls"]
        uid = st["study_uid"]
        self.a.cli("fetch", uid)  # A serves the study from its cache
        files = harness.dicom_files(self.a.cache_dir / uid)
        self.assertGreater(len(files), 3)
        corrupt, stranger = files[0], files[1]
        saved = {f: f.read_bytes() for f in (corrupt, stranger)}
        for f, data in saved.items():
            self.addCleanup(f.write_bytes, data)
        # a damaged header, the same size
        corrupt.write_bytes(saved[corrupt][:132] + b"\xff" * 200 + saved[corrupt][332:])
        # another instance than the one asked for, under the same name
        sop = pydicom.dcmread(io.BytesIO(saved[stranger])).SOPInstanceUID
        other = sop[:-2] + "99"  # no instance of the study
        stranger.write_bytes(saved[stranger].replace(sop.encode(), other.encode()))
        box, base = self.consumer_box("bcorrupt")
        br = Browser(base).sign_in()
        br.open_session()
        e = self.exams(br)[uid]
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        e = self.wait_state(br, uid, ("failed", "local"))
        self.assertEqual(e["state"], "failed", e)
        self.assertIn("refused, not cached", e["error"])
        self.assertEqual(e["received"], len(files) - 2)
        cached = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                  for f in harness.dicom_files(box.cache_dir / uid)}
        self.assertNotIn(other, cached)
        self.assertNotIn(sop, cached)
        # the source mended, "View" again asks for the two missing only
        for f, data in saved.items():
            f.write_bytes(data)
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        e = self.wait_state(br, uid, ("failed", "local"))
        self.assertEqual(e["state"], "local", e)
        self.assertIn("pull study=%s: 2 instances, 2 requests" % uid,
                      (box.workdir / "drimboxd.log").read_text())

    def test_prefetch_pulls_the_most_recent_exams_before_any_click(self):
        box, base = self.consumer_box("bprefetch", conso_prefetch=2)
        br = Browser(base).sign_in()
        br.open_session()
        for key in ("ct", "ct-jls"):
            e = self.wait_state(br, self.studies[key]["study_uid"], ("failed", "local"))
            self.assertEqual(e["state"], "local", e)

    # ------------------------------------------------------ workstations

    def dcmtk(self, tool, *args, aet="WS1"):
        out = subprocess.run([tool, "-S", "-aet", aet, "-aec", "DRIMBOXB", *args,
                              harness.LOOPBACK, str(self.b.dicom_port)],
                             capture_output=True, text=True, env=harness.dicom_env(), timeout=120)
        return out

    def test_workstations_find_move_and_get_a_pulled_study(self):
        st = self.studies["ct-jls"]
        uid = st["study_uid"]
        br = Browser(self.base_b).sign_in()
        br.open_session()
        e = self.exams(br)[uid]
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        self.assertEqual(self.wait_state(br, uid, ("failed", "local"))["state"], "local")
        count = sum(len(se["instances"]) for se in st["series"])
        # C-FIND: the pulled study, its series
        with tempfile.TemporaryDirectory() as t:
            out = self.dcmtk("findscu", "-X", "-od", t, "-k", "QueryRetrieveLevel=STUDY",
                             "-k", "PatientID", "-k", "StudyInstanceUID", "-k",
                             "ModalitiesInStudy", "-k", "NumberOfStudyRelatedInstances")
            self.assertEqual(out.returncode, 0, out.stderr)
            found = {ds.StudyInstanceUID: ds for ds in map(pydicom.dcmread, sorted(
                os.path.join(t, f) for f in os.listdir(t)))}
        self.assertIn(uid, found)
        self.assertEqual(int(found[uid].NumberOfStudyRelatedInstances), count)
        self.assertEqual(found[uid].RetrieveAETitle, "DRIMBOXB")
        self.assertNotIn(self.studies["mr"]["study_uid"], found)  # not pulled
        # C-MOVE to the workstation
        self.ws.clear()
        out = self.dcmtk("movescu", "-aem", "WS1", "-k", "QueryRetrieveLevel=STUDY",
                         "-k", "StudyInstanceUID=" + uid)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(len(self.ws.files()), count)
        # to a workstation that does not answer, or that is not listed
        for dest, status in (("WS2", "failed: unabletoprocess"),
                             ("NOWHERE", "refused: movedestinationunknown")):
            out = self.dcmtk("movescu", "-v", "-aem", dest, "-k", "QueryRetrieveLevel=STUDY",
                             "-k", "StudyInstanceUID=" + uid)
            self.assertIn(status, out.stderr.lower(), out.stderr)
        # a list of instances too long to read is refused, not widened to
        # the whole study
        self.ws.clear()
        many = "\\".join("%s.%d" % (uid, n) for n in range(600))
        out = self.dcmtk("movescu", "-v", "-aem", "WS1", "-k", "QueryRetrieveLevel=IMAGE",
                         "-k", "StudyInstanceUID=" + uid, "-k", "SOPInstanceUID=" + many)
        self.assertIn("failed: unabletoprocess", out.stderr.lower(), out.stderr)
        self.assertEqual(self.ws.files(), [])
        self.assertIn("too many UIDs", (self.b.workdir / "drimboxd.log").read_text())
        # C-GET of one series
        series = st["series"][0]
        with tempfile.TemporaryDirectory() as t:
            out = self.dcmtk("getscu", "-od", t, "-k", "QueryRetrieveLevel=SERIES",
                             "-k", "StudyInstanceUID=" + uid,
                             "-k", "SeriesInstanceUID=" + series["series_uid"])
            self.assertEqual(out.returncode, 0, out.stderr)
            got = {pydicom.dcmread(os.path.join(t, f)).SOPInstanceUID for f in os.listdir(t)}
        self.assertEqual(got, {i["sop_uid"] for i in series["instances"]})
        # an AE that is not a workstation is not answered
        out = self.dcmtk("findscu", "-k", "QueryRetrieveLevel=STUDY", "-k",
                         "StudyInstanceUID", aet="INTRUDER")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("INTRUDER", (self.b.workdir / "drimboxd.log").read_text())

    # ------------------------------------------------------------ the page

    def test_the_page_lists_and_views_in_a_browser(self):
        ct = self.studies["ct"]
        br = Browser(self.base_b)
        status, headers, _ = br.call(call_form(StudyInstanceUID=ct["study_uid"]))
        self.assertEqual(status, 303)
        spec = {"url": self.base_b + headers["Location"], "scenario": "view",
                "exam": ct["study_uid"], "artifacts": str(ARTIFACTS), "timeout_ms": 60000}
        spec_path = self.dir / "conso-spec.json"
        spec_path.write_text(json.dumps(spec))
        out = subprocess.run(["node", str(DRIVER), str(spec_path)], capture_output=True,
                             text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr[-3000:])
        r = json.loads(out.stdout.splitlines()[-1])
        self.assertTrue(r["ok"], r)
        self.assertIn(PATIENT["family"], r["banner"])
        self.assertTrue(r["ins_hidden"])
        self.assertIn(PATIENT["ins"], r["ins_shown"])
        self.assertTrue(r["viewer_ready"], r)
        self.assertEqual(r["page_errors"], [])


class UnreachableSourceTest(common.PacsTestCase):
    """The source stops answering: the pull fails with a clear reason and
    nothing reaches the PACS."""

    def test_an_unreachable_source_is_a_clear_error(self):
        d = self.dir
        signing_key(d)
        sim = DmpSim(d / "dmp", trust=d / "sign.pem").start()
        self.addCleanup(sim.stop)
        dmp = {"dmp_url": sim.url + "/si-dmp-server/v2/services",
               "dmp_sign_cert": d / "sign.pem", "dmp_sign_key": d / "sign.key"}
        hl7 = harness.free_port()
        a_http = harness.free_port()
        a = harness.Drimbox(d / "a", pacs=self.pacs, aet="DRIMBOXA", extra=dict(
            dmp, hl7_port=hl7, publish_wait_hours=0, http_port=a_http,
            public_url="http://127.0.0.1:%d" % a_http)).start()
        a.cli("sync", "--all")
        ct = self.study_of_kind("ct")
        acc = next(s["accession_number"] for s in self.manifest["studies"] if s["key"] == "ct")
        self.assertEqual(reports.mllp_send(hl7, reports.oru(ct, acc, PATIENT, "UNR1")), "AA")
        self.assertEqual(wait_job(a, last_job_id(a))["state"], "done")
        a.stop()
        trust = make_trust(d / "wl")
        write_signed_whitelist(d / "wl" / "list.xml", [
            {"id": "1", "db": "127.0.0.1", "vi": "127.0.0.1", "name": "A"}], trust)
        pacs_b = Orthanc(d / "orthanc-b", aet="ORTHANCB").start()
        self.addCleanup(pacs_b.stop)
        b = harness.Drimbox(d / "b", pacs=pacs_b, aet="DRIMBOXB", extra=dict(
            dmp, whitelist_file=d / "wl" / "list.xml", whitelist_trust=trust["ca_cert"],
            conso_professional="10001234567^MEDECIN^Anne", conso_prefetch=0,
            remote_timeout=3)).start()
        self.addCleanup(b.stop)
        br = Browser("http://%s:%d" % (harness.LOOPBACK, b.http_port))
        br.open_session()
        status, body = br.api("GET", "exams")
        self.assertEqual(status, 200, body)
        e = next(x for x in body["exams"] if x["study_uid"] == ct)
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        deadline = time.monotonic() + 60
        while e["state"] not in ("failed", "local") and time.monotonic() < deadline:
            time.sleep(0.2)
            e = next(x for x in br.api("GET", "exams")[1]["exams"] if x["study_uid"] == ct)
        self.assertEqual(e["state"], "failed", e)
        self.assertIn("does not answer", e["error"])
        status, body = br.api("POST", "exams/%s/import" % e["id"])
        self.assertEqual(status, 202)
        job = wait_job(b, body["job"], until=lambda j: j["attempts"] >= 1, timeout=60)
        self.assertIn("does not answer", job["reason"] or "", job)
        self.assertNotIn(ct, pacs_b.study_uids())


if __name__ == "__main__":
    unittest.main(verbosity=2)
