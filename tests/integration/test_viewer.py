"""The viewer and the report link, end to end: a report for the small CT is
published (Orthanc, drimboxd, the DMP simulator, mllp_send as the RIS);
its link /IHEInvokeImageDisplay opens the viewer, and headless Chromium
(tests/viewer/drive.mjs) checks what a physician sees: the first image
drawn, scrolling, window/level, a length in mm that matches the phantom,
every transfer syntax of the small set, cine, a prior beside the exam, a
tablet-width window, and the error pages. Screenshots are kept under
build/tests/tmp/viewer-artifacts.

Also, over plain HTTP: the viewer's files (media types, precompressed
twins, caching), the report link's checks, and what another DRIMbox naming
a manifest (KOS-SOPInstanceUID) may retrieve.
"""

import gzip
import json
import os
import re
import subprocess
import unittest
import urllib.error
import urllib.request

import pydicom
from pydicom.uid import generate_uid

import common
import harness
import reports
from harness import DmpSim, Drimbox
from test_publish import last_job_id, signing_key, wait_job

DRIVER = harness.REPO / "tests" / "viewer" / "drive.mjs"
ARTIFACTS = common.TMP_ROOT / "viewer-artifacts"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def request(url, headers=None):
    """(status, headers, body) of a GET, redirects not followed."""
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class ViewerTest(common.PacsTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        signing_key(cls.dir)
        cls.sim = DmpSim(cls.dir / "dmp", trust=cls.dir / "sign.pem").start()
        cls.hl7_port = harness.free_port()
        cls.db = Drimbox(cls.dir / "db", pacs=cls.pacs, extra={
            "hl7_port": cls.hl7_port, "publish_wait_hours": 0,
            "dmp_url": cls.sim.url + "/si-dmp-server/v2/services",
            "dmp_sign_cert": cls.dir / "sign.pem", "dmp_sign_key": cls.dir / "sign.key",
            "dmp_structure_id": "VIEWERTEST", "dmp_lps_id": "VIEWERTEST"}).start()
        cls.db.cli("sync", "--all")
        cls.base = "http://%s:%d" % (harness.LOOPBACK, cls.db.http_port)
        cls.studies = {st["key"]: st for st in cls.manifest["studies"]}
        ct = cls.studies["ct"]
        ack = reports.mllp_send(cls.hl7_port, reports.oru(
            ct["study_uid"], ct["accession_number"], reports.SMALL_SET_PATIENT, "VIEWER1"))
        if ack != "AA":
            raise harness.HarnessError("report refused: " + ack)
        job = wait_job(cls.db, last_job_id(cls.db))
        if job["state"] != "done":
            raise harness.HarnessError("publication not done: %s" % job)
        cls.link = ("%s/IHEInvokeImageDisplay?requestType=STUDY&studyUID=%s&Accessionnumber=%s"
                    "&idCDA=1.2.3" % (cls.base, ct["study_uid"], ct["accession_number"]))

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        cls.sim.stop()
        super().tearDownClass()

    # ------------------------------------------------------------ browser

    @classmethod
    def browser(cls):
        """The driver's results, by scenario (run once, on first use)."""
        if not hasattr(cls, "_results"):
            ct = cls.studies["ct"]
            spec = {
                "viewer": cls.base + "/viewer/",
                "link": cls.link,
                "unpublishedLink": "%s/IHEInvokeImageDisplay?requestType=STUDY&studyUID=%s"
                                   % (cls.base, cls.studies["mr"]["study_uid"]),
                "studies": {k: v["study_uid"] for k, v in cls.studies.items()},
                "accession": ct["accession_number"],
                # 88 pixels along a row of the 128-pixel CT
                "measure": {"points": [[20, 64], [108, 64]]},
                "artifacts": str(ARTIFACTS),
            }
            spec_path = cls.dir / "viewer-spec.json"
            spec_path.write_text(json.dumps(spec))
            out = subprocess.run(["node", str(DRIVER), str(spec_path)], capture_output=True,
                                 text=True, timeout=600)
            if out.returncode != 0:
                raise harness.HarnessError("drive.mjs: exit %d\n%s" % (out.returncode,
                                                                        out.stderr[-4000:]))
            cls._results = {r["name"]: r for r in json.loads(out.stdout.splitlines()[-1])}
        return cls._results

    def scenario(self, name):
        r = self.browser()[name]
        self.assertTrue(r["ok"], r.get("error"))
        self.assertEqual(r["pageErrors"], [], name)
        return r

    def assertDrawn(self, pixels, what):
        """A real image: most pixels lit and not a flat colour."""
        self.assertGreater(pixels["w"], 100, what)
        self.assertGreater(pixels["std"], 10, "%s: flat image %s" % (what, pixels))
        self.assertGreater(pixels["lit"], 0.05, "%s: nearly black %s" % (what, pixels))

    def test_report_link_opens_the_viewer_on_the_first_image(self):
        r = self.scenario("link")
        self.assertIsNone(r["error"])
        self.assertIn("/viewer/?study=" + self.studies["ct"]["study_uid"], r["url"])
        self.assertDrawn(r["pixels"], "first image")
        # the server-rendered preview came first, then Cornerstone's image
        self.assertIsNotNone(r["previewMs"])
        self.assertLess(r["previewMs"], r["firstImageMs"])
        self.assertIn("PAT-TROIS DOMINIQUE", r["banner"])
        self.assertIn("15/03/1979", r["banner"])
        self.assertNotIn("279035121518989", r["banner"], "the INS is shown on demand only")
        self.assertIn("Visualisation non diagnostique", r["banner"])
        self.assertTrue(r["nondiag"])

    def test_scrolling_changes_the_image(self):
        r = self.scenario("scroll")
        self.assertEqual(r["before"]["count"], 20)
        self.assertEqual(r["before"]["index"], 10, "opens on the middle slice")
        self.assertNotEqual(r["wheel"]["index"], r["before"]["index"])
        self.assertNotEqual(r["wheel"]["pixels"]["hash"], r["before"]["pixels"]["hash"])
        self.assertEqual(r["home"]["index"], 0)

    def test_window_level_drag_changes_the_pixels(self):
        r = self.scenario("windowing")
        self.assertNotEqual(r["after"]["voi"], r["before"]["voi"])
        self.assertGreater(abs(r["after"]["pixels"]["mean"] - r["before"]["pixels"]["mean"]), 2)
        lower, upper = r["preset"]["voi"]
        self.assertAlmostEqual(upper - lower, 1500, delta=1)  # lung: W 1500 L -600
        self.assertAlmostEqual((upper + lower) / 2, -600, delta=1)

    def test_length_in_mm_matches_the_phantom(self):
        r = self.scenario("measure")
        spacing = 400.0 / 128  # gen_studies.py: 400 mm field of view
        expected = 88 * spacing
        lengths = [float(m.group(1)) for t in r["texts"]
                   for m in [re.search(r"([0-9.]+)\s*mm", t)] if m]
        self.assertTrue(lengths, "no length in mm among %s" % r["texts"])
        self.assertAlmostEqual(lengths[0], expected, delta=expected * 0.01)

    def test_every_transfer_syntax_displays(self):
        r = self.scenario("syntaxes")
        seen = {(s["study"], s["series"]) for s in r["series"]}
        # ct, ct-jls, dx, us: one series each; mr: four (explicit, implicit,
        # JPEG lossless, RLE)
        self.assertEqual(len(seen), 8, seen)
        for s in r["series"]:
            self.assertIsNone(s["error"], s)
            self.assertDrawn(s["pixels"], "%s series %d" % (s["study"], s["series"]))
        us = next(s for s in r["series"] if s["study"] == "us")
        self.assertGreater(us["pixels"]["colour"], 0.005, "the ultrasound is in colour")

    def test_cine_plays_the_frames(self):
        r = self.scenario("cine")
        self.assertTrue(r["cineVisible"])
        self.assertEqual(r["fps"], "30", "the rate of the acquisition (Frame Time 33.3 ms)")
        self.assertEqual(r["before"]["count"], 5)
        self.assertGreater(len(r["seen"]), 2, r["seen"])

    def test_a_prior_of_the_same_patient_opens_beside(self):
        r = self.scenario("compare")
        self.assertEqual(r["priors"], 1, "the patient's other study (the JPEG-LS CT)")
        self.assertDrawn(r["left"], "exam")
        self.assertDrawn(r["right"], "prior")

    def test_tablet_width_and_help(self):
        r = self.scenario("tablet")
        self.assertIsNone(r["error"])
        self.assertDrawn(r["pixels"], "tablet")
        self.assertLessEqual(r["overflow"], 0, "no horizontal scrolling")
        self.assertTrue(r["help"])

    def test_error_pages(self):
        r = self.scenario("errors")
        self.assertEqual(r["missing"]["error"], "notfound")
        self.assertIn("Examen introuvable", r["missingText"])
        self.assertEqual(r["denied"]["error"], "denied")
        self.assertIn("non autorisé", r["deniedText"])
        self.assertEqual(r["network"]["error"], "network")
        self.assertIn("Erreur réseau", r["networkText"])
        self.assertEqual(r["none"]["error"], "notfound")
        self.assertIn("Examen non disponible", r["unpublishedLink"]["text"])

    # --------------------------------------------------------------- HTTP

    def test_viewer_files_types_compression_and_caching(self):
        status, h, body = request(self.base + "/viewer/")
        self.assertEqual(status, 200)
        self.assertEqual(h["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(h["Cache-Control"], "no-cache")
        page = body.decode()
        self.assertIn('data-dicomweb="/dicomweb"', page)
        main = re.search(r'data-main="\./(main-[A-Z0-9]{8}\.js)"', page).group(1)
        status, h, plain = request(self.base + "/viewer/" + main)
        self.assertEqual((status, h["Content-Type"]), (200, "text/javascript; charset=utf-8"))
        self.assertIn("immutable", h["Cache-Control"])
        self.assertIsNone(h["Content-Encoding"])
        status, h, gz = request(self.base + "/viewer/" + main, {"Accept-Encoding": "gzip"})
        self.assertEqual(h["Content-Encoding"], "gzip")
        self.assertEqual(gzip.decompress(gz), plain)
        status, h, br = request(self.base + "/viewer/" + main,
                                {"Accept-Encoding": "gzip, deflate, br"})
        self.assertEqual(h["Content-Encoding"], "br")
        self.assertLess(len(br), len(plain))
        status, h, _ = request(self.base + "/viewer/" + main,
                               {"Accept-Encoding": "br;q=0, gzip"})
        self.assertEqual(h["Content-Encoding"], "gzip")
        status, h, wasm = request(self.base + "/viewer/wasm/charlswasm_decode.wasm")
        self.assertEqual((status, h["Content-Type"]), (200, "application/wasm"))
        self.assertEqual(wasm[:4], b"\0asm")
        self.assertEqual(h["Cache-Control"], "no-cache")
        status, _, _ = request(self.base + "/viewer/wasm/charlswasm_decode.wasm",
                               {"If-None-Match": h["ETag"]})
        self.assertEqual(status, 304)
        status, h, _ = request(self.base + "/viewer")
        self.assertEqual((status, h["Location"]), (301, "/viewer/"))
        # a path of the page's own (no dot in its last segment) is the page
        status, h, body = request(self.base + "/viewer/compare")
        self.assertEqual((status, h["Content-Type"]), (200, "text/html; charset=utf-8"))
        self.assertEqual(body.decode(), page)
        for bad in ("/viewer/../drimbox.conf", "/viewer/%2e%2e/db/drimbox.conf",
                    "/viewer/.hidden", "/viewer/wasm//x", "/viewer/nothing.js"):
            status, h, body = request(self.base + bad)
            self.assertEqual(status, 404, bad)
            self.assertIn("error", json.loads(body), bad)

    def test_report_link_checks_what_it_opens(self):
        ct = self.studies["ct"]
        status, h, _ = request(self.link)
        self.assertEqual(status, 302)
        self.assertEqual(h["Location"], "/viewer/?study=" + ct["study_uid"])
        # parameter names in any case, the accession as root.extension
        status, h, _ = request(
            "%s/IHEInvokeImageDisplay?REQUESTTYPE=STUDY&studyuid=%s&AccessionNumber=%s"
            % (self.base, ct["study_uid"], "1.2.250.1.999.1.1.5." + ct["accession_number"]))
        self.assertEqual(status, 302)
        cases = [
            ("requestType=PATIENT&studyUID=" + ct["study_uid"], 400),
            ("requestType=STUDY", 400),
            ("requestType=STUDY&studyUID=1..2", 400),
            ("requestType=STUDY&studyUID=%s&studyUID=%s" % (ct["study_uid"], ct["study_uid"]),
             400),
            ("requestType=STUDY&studyUID=%s&Accessionnumber=OTHER" % ct["study_uid"], 404),
            ("requestType=STUDY&studyUID=%s&Accessionnumber=1.2.3.%s"
             % (ct["study_uid"], ct["accession_number"]), 404),  # another issuer's
            ("requestType=STUDY&studyUID=%s&Accessionnumber=%%3Cb%%3E" % ct["study_uid"], 400),
            ("requestType=STUDY&studyUID=%s" % self.studies["mr"]["study_uid"], 404),
            ("requestType=STUDY&studyUID=%s,%s" % (ct["study_uid"],
                                                  self.studies["mr"]["study_uid"]), 404),
        ]
        for query, expected in cases:
            status, h, body = request(self.base + "/IHEInvokeImageDisplay?" + query)
            self.assertEqual(status, expected, query)
            self.assertIn("error", json.loads(body), query)
        # a browser gets a page, not JSON
        status, h, body = request(
            "%s/IHEInvokeImageDisplay?requestType=STUDY&studyUID=%s"
            % (self.base, self.studies["mr"]["study_uid"]), {"Accept": "text/html,*/*"})
        self.assertEqual((status, h["Content-Type"]), (404, "text/html; charset=utf-8"))
        self.assertIn("Examen non disponible", body.decode())

    def test_another_drimbox_reaches_only_what_the_manifest_references(self):
        """Source side: a request naming a manifest (KOS-SOPInstanceUID)
        gets what that manifest, published here for this study, references;
        another manifest, or another study, is refused (403)."""
        ct = self.studies["ct"]
        job = next(j for j in json.loads(self.db.cli("jobs", "--json", "-n", "0").stdout)
                   if j["state"] == "done" and j["kind"] == "publish"
                   and any(k["study"] == ct["study_uid"] for k in j["payload"]["kos"]))
        kos = next(k["sop"] for k in job["payload"]["kos"] if k["study"] == ct["study_uid"])
        series = ct["series"][0]["series_uid"]
        url = "%s/dicomweb/studies/%s/series/%s" % (self.base, ct["study_uid"], series)
        accept = {"Accept": 'multipart/related; type="application/dicom"'}
        status, h, body = request(url, dict(accept, **{"KOS-SOPInstanceUID": kos}))
        self.assertEqual(status, 200)
        parts = harness.parse_multipart(h["Content-Type"], body)
        self.assertEqual(len(parts), len(ct["series"][0]["instances"]))
        status, _, body = request(url + "/metadata", {"KOS-SOPInstanceUID": kos})
        self.assertEqual((status, len(json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b"
                                                 else body))),
                         (200, len(ct["series"][0]["instances"])))
        for headers, target in (
                ({"KOS-SOPInstanceUID": "1.2.3.4"}, url),
                ({"KOS-SOPInstanceUID": kos},
                 "%s/dicomweb/studies/%s" % (self.base, self.studies["mr"]["study_uid"]))):
            status, _, body = request(target, dict(accept, **headers))
            self.assertEqual(status, 403, target)
            self.assertIn("KOS-SOPInstanceUID", json.loads(body)["error"])

    def test_an_instance_added_after_publication_is_not_served_to_others(self):
        """The DX is published with its one instance; a second instance
        reaches its series in the PACS afterwards: locally the series has
        two, another DRIMbox naming the manifest gets the one it lists."""
        dx = self.studies["dx"]
        patient = {"ins": "162018885045327", "family": "MARTIN", "given": "JEAN-FRANÇOIS",
                   "birth": "19620127", "sex": "M"}
        self.assertEqual(reports.mllp_send(self.hl7_port, reports.oru(
            dx["study_uid"], dx["accession_number"], patient, "VIEWER4", "DX")), "AA")
        job = wait_job(self.db, last_job_id(self.db))
        self.assertEqual(job["state"], "done", job)
        kos = job["payload"]["kos"][0]["sop"]
        series = dx["series"][0]
        ds = pydicom.dcmread(self.data / series["instances"][0]["path"])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = 2
        extra = self.dir / "extra"
        extra.mkdir()
        ds.save_as(extra / "late.dcm", write_like_original=False)
        self.pacs.load_dir(extra)
        self.db.cli("sync", "--study", dx["study_uid"])
        url = "%s/dicomweb/studies/%s/series/%s/metadata" % (self.base, dx["study_uid"],
                                                              series["series_uid"])
        local = json.loads(request(url)[2])
        remote = json.loads(request(url, {"KOS-SOPInstanceUID": kos})[2])
        self.assertEqual(len(local), 2)
        self.assertEqual([m["00080018"]["Value"][0] for m in remote],
                         [series["instances"][0]["sop_uid"]])

    def test_unpublished_study_link_stops_working(self):
        """After an unpublication (ORC CA), the link no longer opens."""
        ct = self.studies["ct-jls"]
        ack = reports.mllp_send(self.hl7_port, reports.oru(
            ct["study_uid"], ct["accession_number"], reports.SMALL_SET_PATIENT, "VIEWER2"))
        self.assertEqual(ack, "AA")
        self.assertEqual(wait_job(self.db, last_job_id(self.db))["state"], "done")
        link = "%s/IHEInvokeImageDisplay?requestType=STUDY&studyUID=%s" % (self.base,
                                                                         ct["study_uid"])
        self.assertEqual(request(link)[0], 302)
        cancel = reports.oru(ct["study_uid"], ct["accession_number"],
                             reports.SMALL_SET_PATIENT, "VIEWER3").replace(b"ORC|NW", b"ORC|CA")
        self.assertEqual(reports.mllp_send(self.hl7_port, cancel), "AA")
        self.assertEqual(wait_job(self.db, last_job_id(self.db))["state"], "done")
        self.assertEqual(request(link)[0], 404)


if __name__ == "__main__":
    os.environ.setdefault("TCP_NODELAY", "1")
    unittest.main(verbosity=2)
