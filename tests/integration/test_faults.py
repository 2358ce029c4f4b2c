"""Faults: drimboxd killed (-9) in the middle of a remote pull and of an
import, the PACS and the source DRIMbox going away and coming back, the
cache's filesystem full.

The servers are real (Orthanc, drimboxd, the DMP simulator); a TCP
forwarder (tests/lib/netfault.py) between drimbox and the server under
test slows the link, so that a kill lands mid-transfer, or takes the
server off the network and brings it back on the same address. After
each fault: nothing lost, nothing done twice, no partial file in the
cache, and the work finishes without restarting anything but the killed
daemon. (A kill during a PACS retrieval and during a publication, and the
DMP down and back, are in test_cache.py and test_publish.py.)
"""

import io
import json
import os
import subprocess
import time
import unittest

import pydicom

import common
import harness
import reports
from harness import Drimbox, Orthanc
from netfault import Proxy
from test_cache import index_matches_disk
from test_consumer import Browser, decoded
from test_publish import dmp_with_key, last_job_id, wait_job
from wlsign import make_trust, write_signed_whitelist

PATIENT = reports.SMALL_SET_PATIENT


def study_files(db, study):
    """Instance files of a study in db's cache (complete ones: the cache
    writes into .tmp/ and renames)."""
    return list((db.cache_dir / study).glob("*/*.dcm"))


class SourceFaultsTest(common.PacsTestCase):
    """drimbox as a source, its PACS behind a forwarder."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sim, dmp = dmp_with_key(cls.dir)
        cls.link = Proxy(cls.pacs.dicom_port).up()
        cls.hl7 = harness.free_port()
        cls.db = Drimbox(cls.dir / "db", pacs=cls.pacs, extra=dict(
            dmp, pacs_port=cls.link.port, pacs_retry_max=1, hl7_port=cls.hl7,
            publish_wait_hours=0, publish_retry_max=2)).start()
        cls.db.cli("sync", "--all")

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        cls.link.down()
        cls.sim.stop()
        super().tearDownClass()

    def manifests(self):
        return [d for d in self.sim.control("documents") if d["mime"] == "application/dicom"]

    def test_pacs_down_then_back(self):
        st = next(s for s in self.manifest["studies"] if s["key"] == "ct")
        url = "%s/studies/%s/metadata" % (self.db.dicomweb_url, st["study_uid"])
        self.link.down()
        try:
            status, _, body = harness.http_get(url, {"Accept": "application/dicom+json"})
            self.assertEqual(status, 502, body[:300])
            self.assertIn("PACS", json.loads(body)["error"])
            # a report meanwhile: accepted, its publication waits for the PACS
            ack = reports.mllp_send(self.hl7, reports.oru(
                st["study_uid"], st["accession_number"], PATIENT, "PACSDOWN1"))
            self.assertEqual(ack, "AA")
            job_id = last_job_id(self.db)
            job = wait_job(self.db, job_id, lambda j: j["attempts"] >= 1, 30)
            self.assertEqual(job["state"], "queued", job)
            self.assertIn("PACS", job["reason"] or "", job)
            self.assertEqual(self.manifests(), [])
        finally:
            self.link.up()
        # back: both go through without a restart, the manifest once
        job = wait_job(self.db, job_id, timeout=60)
        self.assertEqual(job["state"], "done", job.get("reason"))
        self.assertEqual(len(self.manifests()), 1)
        status, _, body = harness.http_get(url, {"Accept": "application/dicom+json"})
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(len(json.loads(body)), sum(len(se["instances"]) for se in st["series"]))
        self.assertIn("PACS", self.db.log_text())


class ConsumerFaultsTest(common.PacsTestCase):
    """A source A (its links to consumers behind a forwarder) publishes the
    patient's CT twice (plain, JPEG-LS); each test runs its own consumer B
    on a fresh index and cache, importing into Orthanc B (behind a
    forwarder too)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.dir
        cls.sim, cls.dmp = dmp_with_key(d)
        hl7, a_http = harness.free_port(), harness.free_port()
        cls.to_a = Proxy(a_http).up()
        cls.a = Drimbox(d / "a", pacs=cls.pacs, aet="DRIMBOXA", extra=dict(
            cls.dmp, hl7_port=hl7, publish_wait_hours=0, http_port=a_http,
            public_url="http://127.0.0.1:%d" % cls.to_a.port)).start()
        cls.a.cli("sync", "--all")
        cls.studies = {s["key"]: s for s in cls.manifest["studies"]}
        for n, key in enumerate(("ct", "ct-jls")):
            st = cls.studies[key]
            ack = reports.mllp_send(hl7, reports.oru(
                st["study_uid"], st["accession_number"], PATIENT, "FAULT%d" % n,
                modality=st["modality"]))
            job = wait_job(cls.a, last_job_id(cls.a)) if ack == "AA" else ack
            if ack != "AA" or job["state"] != "done":
                raise harness.HarnessError("publication of %s: %s" % (key, job))
        trust = make_trust(d / "wl")
        write_signed_whitelist(d / "wl" / "list.xml", [
            {"id": "1", "db": "127.0.0.1", "vi": "127.0.0.1", "name": "A"}], trust)
        cls.whitelist = {"whitelist_file": d / "wl" / "list.xml",
                         "whitelist_trust": trust["ca_cert"]}
        cls.pacs_b = Orthanc(d / "orthanc-b", aet="ORTHANCB").start()
        cls.to_pacs_b = Proxy(cls.pacs_b.dicom_port).up()

    @classmethod
    def tearDownClass(cls):
        for p in (cls.pacs_b, cls.a, cls.sim):
            p.stop()
        for link in (cls.to_a, cls.to_pacs_b):
            link.down()
        super().tearDownClass()

    def setUp(self):
        self.to_a.rate = self.to_pacs_b.rate = None
        self.pacs_b.clear()

    def consumer(self, name):
        """A fresh consumer B, and a browser in a contextual call on it."""
        b = Drimbox(self.dir / name, pacs=self.pacs_b, aet="DRIMBOXB", extra=dict(
            self.dmp, **self.whitelist, pacs_port=self.to_pacs_b.port,
            conso_professional="10001234567^MEDECIN^Anne", conso_prefetch=0,
            remote_timeout=5)).start()
        self.addCleanup(b.stop)
        br = Browser("http://%s:%d" % (harness.LOOPBACK, b.http_port))
        br.open_session()
        return b, br

    def count(self, key):
        """Number of instances of a study of the set."""
        return sum(len(se["instances"]) for se in self.studies[key]["series"])

    def exam(self, br, key):
        status, body = br.api("GET", "exams")
        self.assertEqual(status, 200, body)
        uid = self.studies[key]["study_uid"]
        return next(e for e in body["exams"] if e["study_uid"] == uid)

    def wait_exam(self, br, key, states, timeout=90):
        deadline = time.monotonic() + timeout
        e = self.exam(br, key)
        while e["state"] not in states and time.monotonic() < deadline:
            time.sleep(0.2)
            e = self.exam(br, key)
        return e

    def assert_holds_the_originals(self, b, key):
        """B's cache holds exactly Orthanc A's instances of the study, the
        same pixels, and the index agrees with the disk."""
        uid = self.studies[key]["study_uid"]
        originals = {}
        for oid in self.pacs.instances_of_study(uid).values():
            ds = pydicom.dcmread(io.BytesIO(self.pacs.instance_file(oid)))
            originals[ds.SOPInstanceUID] = ds
        pulled = {}
        for f in study_files(b, uid):
            ds = pydicom.dcmread(f)
            pulled[ds.SOPInstanceUID] = ds
        self.assertEqual(set(pulled), set(originals))
        def pixels(ds):
            if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80":
                ds = decoded(ds)
            return ds.PixelData

        for sop, ds in pulled.items():
            self.assertEqual(pixels(ds), pixels(originals[sop]), sop)
        index_matches_disk(self, b)

    def imported(self, key):
        """Number of instances of the study Orthanc B holds."""
        uid = self.studies[key]["study_uid"]
        return len(self.pacs_b.instances_of_study(uid)) if uid in self.pacs_b.study_uids() else 0

    def import_jobs(self, b):
        return [j for j in json.loads(b.cli("jobs", "--json", "-n", "0").stdout)
                if j["kind"] == "import"]

    def test_killed_during_a_pull_then_restarted(self):
        b, br = self.consumer("b-pull")
        ct = self.studies["ct"]["study_uid"]
        self.to_a.rate = 24 * 1024  # the pull takes ~10 s
        e = self.exam(br, "ct")
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        self.assertTrue(harness.wait_until(lambda: len(study_files(b, ct)) >= 2, 60),
                        "the pull did not start")
        b.kill9()
        n = len(study_files(b, ct))
        self.assertLess(n, self.count("ct"), "not killed mid-pull")
        # whatever the kill left is whole: every file in the cache parses
        for f in study_files(b, ct):
            pydicom.dcmread(f).PixelData
        self.to_a.rate = None
        b.start()
        self.assertIn('cat=cache msg="check dir=', b.log_text())
        index_matches_disk(self, b, recent_orphans_ok=True)
        # the session survived the restart; View again completes the pull
        e = self.exam(br, "ct")
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        e = self.wait_exam(br, "ct", ("local", "failed"))
        self.assertEqual(e["state"], "local", e)
        self.assert_holds_the_originals(b, "ct")

    def test_killed_during_an_import_then_restarted(self):
        b, br = self.consumer("b-import")
        total = self.count("ct")
        e = self.exam(br, "ct")
        self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
        self.assertEqual(self.wait_exam(br, "ct", ("local", "failed"))["state"], "local")
        self.to_pacs_b.rate = 16 * 1024  # the import takes ~10 s
        status, body = br.api("POST", "exams/%s/import" % e["id"])
        self.assertEqual(status, 202, body)
        self.assertTrue(harness.wait_until(lambda: self.imported("ct") >= 2, 60),
                        "the import did not start")
        b.kill9()
        self.assertLess(self.imported("ct"), total, "not killed mid-import")
        self.to_pacs_b.rate = None
        b.start()
        # the durable job resumes by itself, once
        job = wait_job(b, body["job"], timeout=90)
        self.assertEqual(job["state"], "done", job.get("reason"))
        self.assertEqual(len(self.import_jobs(b)), 1)
        self.assertEqual(self.imported("ct"), total)
        self.assertEqual(self.wait_exam(br, "ct", ("imported",))["state"], "imported")
        index_matches_disk(self, b)

    def test_source_down_then_back(self):
        b, br = self.consumer("b-down")
        self.to_a.down()
        try:
            e = self.exam(br, "ct-jls")
            self.assertEqual(br.api("POST", "exams/%s/view" % e["id"])[0], 200)
            e = self.wait_exam(br, "ct-jls", ("failed", "local"))
            self.assertEqual(e["state"], "failed", e)
            self.assertIn("does not answer", e["error"])
            status, body = br.api("POST", "exams/%s/import" % e["id"])
            self.assertEqual(status, 202, body)
            job = wait_job(b, body["job"], lambda j: j["attempts"] >= 1, 60)
            self.assertEqual(job["state"], "queued", job)
            self.assertIn("does not answer", job["reason"] or "")
        finally:
            self.to_a.up()
        # back: the queued import pulls and imports; View works again
        job = wait_job(b, body["job"], timeout=90)
        self.assertEqual(job["state"], "done", job.get("reason"))
        self.assertEqual(self.imported("ct-jls"), self.count("ct-jls"))
        e = self.exam(br, "ct-jls")
        self.assertIn(e["state"], ("local", "imported"), e)
        self.assert_holds_the_originals(b, "ct-jls")


class DiskFullTest(common.PacsTestCase):
    """The cache on a small filesystem of its own (tmpfs, needs root):
    a retrieval that does not fit fails with the reason, what is cached
    stays readable, and retrievals work again once there is room."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a small filesystem needs root")
        self.mnt = self.dir / "smallfs"
        self.mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(self.mnt)],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", str(self.mnt)])

    def test_disk_full_then_room_again(self):
        db = self.drimbox("db-full", extra={"cache_dir": self.mnt / "cache"})
        mr, ct = self.study_of_kind("mr"), self.study_of_kind("ct")
        db.cli("sync", "--all")  # the index knows every instance
        db.cli("fetch", mr)
        kept = {p: p.read_bytes() for p in study_files(db, mr)}
        self.assertTrue(kept)
        # the CT (~700 KB) does not fit
        got = db.cli("fetch", ct, check=False)
        self.assertNotEqual(got.returncode, 0)
        self.assertIn("No space left", got.stdout + got.stderr)
        status, _, body = harness.http_get(
            "%s/studies/%s/metadata" % (db.dicomweb_url, ct),
            {"Accept": "application/dicom+json"})
        self.assertEqual(status, 502, body[:300])
        self.assertIn("No space left", json.loads(body)["error"])
        index_matches_disk(self, db)
        # what was cached is intact and served
        self.assertEqual({p: p.read_bytes() for p in study_files(db, mr)}, kept)
        status, headers, body = harness.http_get(
            "%s/studies/%s" % (db.dicomweb_url, mr),
            {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        self.assertEqual(status, 200)
        parts = harness.parse_multipart(headers["content-type"], body)
        self.assertEqual(len(parts), len(kept))
        # room again: the same daemon retrieves the CT
        subprocess.run(["mount", "-o", "remount,size=16m", str(self.mnt)], check=True)
        db.cli("fetch", ct)
        self.assertEqual(len(study_files(db, ct)), len(self.pacs.instances_of_study(ct)))
        index_matches_disk(self, db)


if __name__ == "__main__":
    unittest.main(verbosity=2)
