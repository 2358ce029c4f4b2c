"""Publication worker: a report received over MLLP finds its exam in the
PACS, is checked against it, gets its KOS manifest (which dciodvfy
accepts) and is published to the DMP (the simulator) by ITI-41 with a
signed VIHF; a report whose exam is another patient's, or is not in the
PACS, is parked with the reason and nothing reaches the DMP. The DMP down
then up publishes once; drimboxd killed after the DMP registered the
manifest but before the job recorded it publishes nothing twice.

The PACS (Orthanc) holds small studies made for the referencing exams C,
M and G (their UIDs and accession numbers read from the ANS CDA reports),
under the patient the referencing messages name (IPP101, PAT-TROIS).
"""

import json
import re
import subprocess
import time
import unittest
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import harness
from harness import DmpSim, Drimbox, Orthanc, TempDir
from shared import shared_dir
from test_hl7_intake import MllpClient, fill_placeholders, make_pki

DATA = shared_dir() / "drim-m-data" / "referencement-drimbox" / "jeux-de-donnees"
PUBLIC = "https://drimbox.test.example"


def exam_of(letter, cda_name=None):
    """(study UID, accession) of a referencing exam, from its CDA."""
    text = (DATA / "cda" / ("examen-" + letter.lower()) /
            (cda_name or "CR_%s.xml" % letter)).read_text(encoding="utf-8")
    uid = re.search(r"<serviceEvent.*?<id root=\"([^\"]+)\"", text, re.S).group(1)
    acc = re.search(r"accessionNumber root=\"[^\"]+\" extension=\"([^\"]+)\"", text).group(1)
    return uid, acc


# the referencing messages' patient
IPP101 = {"id": "IPP101", "issuer": None, "name": "PAT-TROIS^DOMINIQUE", "birth": "19790328",
          "sex": "F"}


def write_study(out, study_uid, accession, series=2, per_series=3, patient=IPP101):
    """A small CT study of the patient ({"id", "issuer", "name", "birth",
    "sex"}), as the PACS holds it; files under out/STUDY/."""
    for s in range(series):
        series_uid = generate_uid()
        for i in range(per_series):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.PatientID = patient["id"]
            if patient["issuer"]:
                ds.IssuerOfPatientID = patient["issuer"]
            ds.PatientName = patient["name"]
            ds.PatientBirthDate = patient["birth"]
            ds.PatientSex = patient["sex"]
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.AccessionNumber = accession
            ds.StudyDate, ds.StudyTime = "20240912", "101500"
            ds.StudyID, ds.Modality = "1", "CT"
            ds.SeriesNumber, ds.InstanceNumber = s + 1, i + 1
            ds.Rows = ds.Columns = 16
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
            ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.PixelData = np.zeros((16, 16), np.uint16).tobytes()
            path = Path(out) / study_uid / ("%d-%d.dcm" % (s, i))
            path.parent.mkdir(parents=True, exist_ok=True)
            pydicom.dcmwrite(path, ds, write_like_original=False)


def signing_key(d, name="sign"):
    """A self-signed key and certificate (name.key, name.pem) in d, to sign
    with (or, for the simulator, to trust)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".pem"],
                   cwd=d, check=True, capture_output=True)


def dmp_with_key(d):
    """A started DMP simulator trusting a new signing key made in d, and
    the config keys that publish to it with that key."""
    signing_key(d)
    sim = DmpSim(d / "dmp", trust=d / "sign.pem").start()
    return sim, {"dmp_url": sim.url + "/si-dmp-server/v2/services",
                 "dmp_sign_cert": d / "sign.pem", "dmp_sign_key": d / "sign.key"}


def send_report(test, port, rel, n):
    """Sends a referencing message over MLLP (placeholders filled, MSH-10
    from n), checking that it is accepted."""
    msg = fill_placeholders((DATA / "hl7v2" / rel).read_text(encoding="utf-8"), n).encode()
    client = MllpClient(port)
    try:
        test.assertEqual(client.send(msg)["MSA"][1], "AA", rel)
    finally:
        client.close()


def last_job_id(db):
    """The job of the last message received."""
    return json.loads(db.cli("messages", "--json", "-n", "1").stdout)[0]["job"]


def wait_job(db, job_id, until=lambda j: j["state"] not in ("queued", "running"), timeout=60):
    """The job once until(job) holds (or as it is at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        job = next(j for j in json.loads(db.cli("jobs", "--json", "-n", "0").stdout)
                   if j["id"] == job_id)
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


class PublishTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir("drimbox-publish-")
        d = cls.tmp.__enter__()
        for letter, cda in (("C", None), ("M", None), ("G", "CR_G1.xml"), ("I", None),
                            ("E", None)):
            write_study(d / "studies", *exam_of(letter, cda))
        cls.studies = d / "studies"
        cls.pacs = Orthanc(d / "pacs").start()
        cls.pacs.load_dir(d / "studies")
        signing_key(d)
        cls.sim = DmpSim(d / "dmp", trust=d / "sign.pem").start()
        cls.hl7_port = harness.free_port()
        cls.db = Drimbox(d / "db", pacs=cls.pacs, extra={
            "hl7_port": cls.hl7_port, "public_url": PUBLIC,
            "publish_wait_hours": 0, "publish_retry_max": 1,
            "dmp_url": cls.sim.url + "/si-dmp-server/v2/services",
            "dmp_sign_cert": d / "sign.pem", "dmp_sign_key": d / "sign.key",
            "dmp_structure_id": "499700367909006",
            "dmp_structure_name": "Centre de radiologie Ambroise",
            "dmp_lps_id": "DRIMBOX-TEST", "dmp_timeout": 2}).start()

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        cls.sim.stop()
        cls.pacs.stop()
        cls.tmp.__exit__(None, None, None)

    def documents(self):
        """The manifests the DMP holds (each comes with its submission
        set's signature, a text/xml document)."""
        return [d for d in self.sim.control("documents") if d["mime"] == "application/dicom"]

    def signatures(self):
        return [d for d in self.sim.control("documents") if d["mime"] == "text/xml"]

    def publish(self, rel):
        """Send a referencing message; its job once it has run."""
        send_report(self, self.hl7_port, rel, int(time.time() * 1000) % 100000)
        job = wait_job(self.db, last_job_id(self.db))
        self.assertNotIn(job["state"], ("queued", "running"), job.get("reason"))
        return job

    def test_report_is_published_with_the_manifest_of_its_exam(self):
        study, accession = exam_of("C")
        before = len(self.documents())
        job = self.publish("examen-c/CR_C-ORU.hl7")
        self.assertEqual(job["state"], "done", job.get("reason"))
        [built] = job["payload"]["kos"]
        self.assertTrue(built["sent"])
        docs = self.documents()
        self.assertEqual(len(docs), before + 1)
        doc = docs[-1]
        self.assertEqual(doc["unique_id"], built["sop"])
        self.assertEqual(doc["patient_id"], "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH")
        self.assertEqual((doc["class_code"], doc["type_code"]), ("31", "IMG-KOS"))
        refs = json.loads(doc["reference_ids"])
        self.assertTrue(any(r.startswith(accession + "^^^&") and
                            r.endswith("&ISO^urn:ihe:iti:xds:2013:accession") for r in refs),
                        refs)
        self.assertIn(study + "^^^^urn:ihe:iti:xds:2016:studyInstanceUID", refs)
        # the submission set's signature went with it (IHE DSG, XAdES)
        sig = [d for d in self.signatures() if d["submission_set"] == doc["submission_set"]]
        self.assertEqual([(d["class_code"], d["type_code"]) for d in sig],
                         [("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "E1762")])
        self.assertEqual((built["study"], built["instances"]), (study, 6))
        kos = pydicom.dcmread(built["kos"])
        self.assertEqual(kos.SOPClassUID, "1.2.840.10008.5.1.4.1.1.88.59")
        self.assertEqual(kos.SOPInstanceUID, built["sop"])
        self.assertEqual(kos.PatientID, "279035121518989")
        self.assertEqual(kos.IssuerOfPatientID, "ASIP-SANTE-INS-NIR")
        self.assertEqual(kos.ReferencedRequestSequence[0].AccessionNumber, accession)
        evidence = kos.CurrentRequestedProcedureEvidenceSequence[0]
        self.assertEqual(evidence.StudyInstanceUID, study)
        self.assertEqual(len(evidence.ReferencedSeriesSequence), 2)
        for series in evidence.ReferencedSeriesSequence:
            self.assertEqual(series.RetrieveURL, "%s/dicomweb/studies/%s/series/%s"
                             % (PUBLIC, study, series.SeriesInstanceUID))
            self.assertEqual(len(series.ReferencedSOPSequence), 3)
        out = subprocess.run(["dciodvfy", built["kos"]], capture_output=True, text=True)
        self.assertNotIn("Error", out.stdout + out.stderr)

    def test_report_about_another_patient_is_parked_without_manifest(self):
        before = len(self.documents())
        job = self.publish("examen-m/CR_M-ORU.hl7")
        self.assertEqual(len(self.documents()), before)
        self.assertEqual((job["state"], job["parked_for"]), ("parked", "mismatch"))
        self.assertIn("PAT-TROIS", job["reason"])
        self.assertNotIn("kos", job["payload"])

    def test_report_whose_exam_is_not_in_the_pacs_is_parked(self):
        job = self.publish("examen-g/CR_G2-ORU.hl7")
        self.assertEqual((job["state"], job["parked_for"]), ("parked", "exam"))
        self.assertIn("1.2.3.4.5.6.7.8.9", job["reason"])


    def test_corrected_report_replaces_the_manifest(self):
        study, _ = exam_of("G", "CR_G1.xml")
        first = self.publish("examen-g/CR_G1-MDM.hl7")
        self.assertEqual(first["state"], "done", first.get("reason"))
        second = self.publish("examen-g/CR_G1_MAJ-MDM.hl7")
        self.assertEqual((second["kind"], second["state"]), ("replace", "done"),
                         second.get("reason"))
        docs = {d["unique_id"]: d for d in self.documents()}
        old = docs[first["payload"]["kos"][0]["sop"]]
        new = docs[second["payload"]["kos"][0]["sop"]]
        self.assertTrue(old["status"].endswith("Deprecated"))
        self.assertTrue(new["status"].endswith("Approved"))
        self.assertEqual(new["replaces"], old["entry_uuid"])

    def test_deletion_unpublishes_the_manifest(self):
        first = self.publish("examen-i/CR_I-ORU.hl7")
        self.assertEqual(first["state"], "done", first.get("reason"))
        gone = self.publish("examen-i/CR_I_Depublication-MDM.hl7")
        self.assertEqual((gone["kind"], gone["state"]), ("unpublish", "done"),
                         gone.get("reason"))
        docs = {d["unique_id"]: d for d in self.documents()}
        self.assertTrue(docs[first["payload"]["kos"][0]["sop"]]["status"].endswith("Deleted"))

    def reject(self, study, sops, code="113001", note_uid=None):
        """The PACS sends drimbox an IOCM rejection note for sops; its SOP
        Instance UID."""
        note = Dataset()
        note.file_meta = FileMetaDataset()
        note.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        note.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.59"
        note.SOPInstanceUID = note_uid or generate_uid()
        note.file_meta.MediaStorageSOPClassUID = note.SOPClassUID
        note.file_meta.MediaStorageSOPInstanceUID = note.SOPInstanceUID
        note.PatientID, note.StudyInstanceUID = "IPP101", study
        note.SeriesInstanceUID, note.Modality = generate_uid(), "KO"
        concept = Dataset()
        concept.CodeValue, concept.CodingSchemeDesignator = code, "DCM"
        concept.CodeMeaning = "Rejected for Quality Reasons"
        note.ConceptNameCodeSequence = [concept]
        evidence = Dataset()
        evidence.StudyInstanceUID = study
        by_series = {}
        for series, sop, cls in sops:
            by_series.setdefault(series, []).append((sop, cls))
        evidence.ReferencedSeriesSequence = []
        for series, items in by_series.items():
            se = Dataset()
            se.SeriesInstanceUID = series
            se.ReferencedSOPSequence = []
            for sop, cls in items:
                ref = Dataset()
                ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = cls, sop
                se.ReferencedSOPSequence.append(ref)
            evidence.ReferencedSeriesSequence.append(se)
        note.CurrentRequestedProcedureEvidenceSequence = [evidence]
        path = self.studies.parent / ("note-%s.dcm" % note.SOPInstanceUID)
        pydicom.dcmwrite(path, note, write_like_original=False)
        out = subprocess.run(["storescu", "-aet", self.pacs.aet, "-aec", self.db.aet,
                              harness.LOOPBACK, str(self.db.dicom_port), str(path)],
                             capture_output=True, text=True, env=harness.dicom_env())
        path.unlink()
        self.assertEqual(out.returncode, 0, out.stderr)
        return note.SOPInstanceUID

    def wait_kind(self, kind, before):
        """The first job of that kind after job `before`, once it has run."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = [j for j in json.loads(self.db.cli("jobs", "--json", "-n", "0").stdout)
                    if j["kind"] == kind and j["id"] > before]
            if jobs and jobs[0]["state"] not in ("queued", "running"):
                return jobs[0]
            time.sleep(0.1)
        self.fail("no %s job done" % kind)

    def test_rejection_notes_update_then_withdraw_the_manifest(self):
        study, _ = exam_of("E")
        job = self.publish("examen-e/CR_E-ORU.hl7")
        self.assertEqual(job["state"], "done", job.get("reason"))
        instances = []
        for f in sorted(Path(self.studies).glob(study + "/*.dcm")):
            ds = pydicom.dcmread(f)
            instances.append((ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID))
        note = self.reject(study, instances[:1])
        iocm = self.wait_kind("iocm", job["id"])
        # the same note again (sent twice, or as cache fill): no new job
        self.reject(study, instances[:1], note_uid=note)
        time.sleep(0.5)
        self.assertEqual([j["id"] for j in json.loads(self.db.cli("jobs", "--json").stdout)
                          if j["kind"] == "iocm"], [iocm["id"]])
        self.assertIn("already handled", self.db.log_text())
        self.assertEqual(iocm["state"], "done", iocm.get("reason"))
        self.assertEqual(iocm["payload"]["kos"][0]["instances"], 5)
        kos = pydicom.dcmread(iocm["payload"]["kos"][0]["kos"])
        refs = {r.ReferencedSOPInstanceUID
                for se in kos.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
        self.assertNotIn(instances[0][1], refs)
        docs = {d["unique_id"]: d for d in self.documents()}
        self.assertTrue(docs[job["payload"]["kos"][0]["sop"]]["status"].endswith("Deprecated"))
        self.assertTrue(docs[iocm["payload"]["kos"][0]["sop"]]["status"].endswith("Approved"))
        # the rest rejected too: nothing left to show, the manifest goes
        self.reject(study, instances[1:])
        last = self.wait_kind("iocm", iocm["id"])
        self.assertEqual(last["state"], "done", last.get("reason"))
        docs = {d["unique_id"]: d for d in self.documents()}
        self.assertTrue(docs[iocm["payload"]["kos"][0]["sop"]]["status"].endswith("Deleted"))

    def test_parked_job_runs_again_on_request(self):
        self.sim.control("faults", {"action": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
                                    "kind": "closed-dmp", "count": 1})
        job = self.publish("examen-c/CR_C-ORU.hl7")
        self.assertEqual((job["state"], job["parked_for"]), ("parked", "dmp"))
        self.assertIn("DMPClosed", job["reason"])
        outcome = "job=%d kind=" % job["id"]  # a line per run's outcome
        runs_before = self.db.log_text().count(outcome)
        out = self.db.cli("jobs", "retry", str(job["id"]))
        self.assertIn("queued again", out.stdout)
        again = wait_job(self.db, job["id"], lambda j: j["state"] == "done", 30)
        self.assertEqual(again["state"], "done", again.get("reason"))
        self.assertEqual(job["attempts"], runs_before)
        # counted again from zero: the runs since the retry (one, or more
        # when a slow machine meets a time-out on the way)
        self.assertEqual(again["attempts"], self.db.log_text().count(outcome) - runs_before)
        self.assertNotEqual(self.db.cli("jobs", "retry", "999999", check=False).returncode, 0)

    def test_dmp_down_then_up_publishes_once(self):
        before = len(self.documents())
        self.sim.control("faults", {"action": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
                                    "kind": "reset", "count": 2})
        job = self.publish("examen-c/CR_C-MDM.hl7")
        self.assertEqual(job["state"], "done", job.get("reason"))
        self.assertGreaterEqual(job["attempts"], 3)
        self.assertEqual(len(self.documents()), before + 1)

    def test_killed_after_the_dmp_registered_publishes_nothing_twice(self):
        before = len(self.documents())
        self.sim.control("faults", {"action": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
                                    "kind": "slow-reply", "count": 1, "delay": 5})
        send_report(self, self.hl7_port, "examen-c/CR_C-ORU.hl7", 99991)
        deadline = time.monotonic() + 30
        while len(self.documents()) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(self.documents()), before + 1)  # registered, reply pending
        self.db.kill9()
        self.db.start()
        state = wait_job(self.db, last_job_id(self.db), lambda j: j["state"] == "done")
        self.assertEqual(state["state"], "done", state.get("reason"))
        self.assertEqual(len(self.documents()), before + 1)


def all_exams():
    """{study UID: accession} of every referencing exam report (F has two)."""
    exams = {}
    for cda in sorted((DATA / "cda").rglob("CR_*.xml")):
        text = cda.read_text(encoding="utf-8")
        event = re.search(r"<serviceEvent.*?</serviceEvent>", text, re.S).group(0)
        accs = re.findall(r"accessionNumber root=\"[^\"]+\" extension=\"([^\"]+)\"", text)
        for n, uid in enumerate(re.findall(r"<id root=\"([^\"]+)\"/>", event)):
            if uid != "1.2.3.4.5.6.7.8.9":  # exam G2's report names no real exam
                exams.setdefault(uid, accs[min(n, len(accs) - 1)])
    return exams


# What each referencing message leads to, once its job has run against a
# PACS holding every exam: (job state, parked_for or None).
FINAL = {
    "examen-m": ("parked", "mismatch"),   # another patient under the same INS
    "examen-g/CR_G2": ("parked", "exam"),  # its study is not the exam's
}


class ReferencingEndToEndTest(unittest.TestCase):
    """Every referencing message, sent in order to a drimbox whose PACS holds
    every referencing exam: each leads to its publication (the MDM twin of
    a report then replaces the ORU's manifest), replacement or deletion in
    the DMP simulator, or is parked with its reason."""

    def test_every_referencing_message_reaches_the_dmp_as_it_should(self):
        with TempDir("drimbox-referencing-") as d:
            signing_key(d)
            for uid, acc in all_exams().items():
                write_study(d / "studies", uid, acc, series=1, per_series=2)
            with Orthanc(d / "pacs") as pacs, DmpSim(d / "dmp", trust=d / "sign.pem") as sim:
                pacs.load_dir(d / "studies")
                port = harness.free_port()
                with Drimbox(d / "db", pacs=pacs, extra={
                        "hl7_port": port, "publish_wait_hours": 0,
                        "dmp_url": sim.url + "/si-dmp-server/v2/services",
                        "dmp_sign_cert": d / "sign.pem", "dmp_sign_key": d / "sign.key"}) as db:
                    outcomes = self.send_all(db, port)
                docs = sim.control("documents")
        for rel, (job, state, parked_for) in outcomes.items():
            key = next((k for k in FINAL if rel.startswith(k)), None)
            expected = FINAL.get(key, ("done", None))
            with self.subTest(rel):
                self.assertEqual((state, parked_for), expected, job.get("reason"))
        kos = [x for x in docs if x["mime"] == "application/dicom"]
        deleted = [x for x in kos if x["status"].endswith("Deleted")]
        approved = [x for x in kos if x["status"].endswith("Approved")]
        self.assertEqual(len(deleted), 2)  # exams I and W
        # one approved manifest per exam published, minus I and W, minus M
        self.assertEqual(len({x["unique_id"] for x in approved}), len(approved))
        self.assertGreaterEqual(len(approved), 20)
        print("\nreferencing: %d manifests (%d approved, %d deleted, %d replaced)"
              % (len(kos), len(approved), len(deleted),
                 len([x for x in kos if x["status"].endswith("Deprecated")])))

    def send_all(self, db, port):
        """{message: (job, state, parked_for)}, each sent once the
        previous one's job has run."""
        order = sorted(p.relative_to(DATA / "hl7v2").as_posix()
                       for p in (DATA / "hl7v2").rglob("*.hl7"))
        # a deletion comes after what it deletes
        order.sort(key=lambda r: ("Depublication" in r or "Suppression" in r, r))
        outcomes = {}
        for n, rel in enumerate(order):
            send_report(self, port, rel, n + 1)
            job = wait_job(db, last_job_id(db))
            outcomes[rel] = (job, job["state"], job.get("parked_for"))
        return outcomes


class MutualTlsTest(unittest.TestCase):
    """The DMP over HTTPS asking for a client certificate: drimbox with its
    certificate publishes; without one, nothing reaches the DMP and the job
    waits to be retried."""

    def run_report(self, with_client_cert):
        with TempDir("drimbox-publish-tls-") as d:
            make_pki(d)  # ca.pem, server.pem/key (127.0.0.1), client.pem/key
            signing_key(d)
            write_study(d / "studies", *exam_of("C"))
            tls = (d / "server.pem", d / "server.key", d / "ca.pem", d / "client.pem",
                   d / "client.key")
            with Orthanc(d / "pacs") as pacs, DmpSim(d / "dmp", trust=d / "sign.pem",
                                                    tls=tls) as sim:
                pacs.load_dir(d / "studies")
                port = harness.free_port()
                extra = {"hl7_port": port, "publish_wait_hours": 0,
                         "dmp_url": sim.url + "/si-dmp-server/v2/services",
                         "dmp_sign_cert": d / "sign.pem", "dmp_sign_key": d / "sign.key",
                         "dmp_tls_ca": d / "ca.pem", "dmp_timeout": 5}
                if with_client_cert:
                    extra.update(dmp_tls_cert=d / "client.pem", dmp_tls_key=d / "client.key")
                with Drimbox(d / "db", pacs=pacs, extra=extra) as db:
                    send_report(self, port, "examen-c/CR_C-ORU.hl7", 11)
                    job = wait_job(db, last_job_id(db),
                                   lambda j: j["state"] == "done" or j.get("reason"), 30)
                return job, sim.control("documents")

    def test_with_its_certificate_drimbox_publishes(self):
        job, docs = self.run_report(True)
        self.assertEqual(job["state"], "done", job.get("reason"))
        self.assertEqual(len([x for x in docs if x["mime"] == "application/dicom"]), 1)

    def test_without_a_certificate_nothing_reaches_the_dmp(self):
        job, docs = self.run_report(False)
        self.assertNotEqual(job["state"], "done")
        self.assertEqual(docs, [])


class UntrustedSignatureTest(unittest.TestCase):
    """A DMP that does not trust the VIHF's signer refuses it: the job is
    parked with the DMP's reason, nothing is registered."""

    def test_vihf_signed_by_an_unknown_key_is_refused(self):
        with TempDir("drimbox-publish-untrusted-") as d:
            for name in ("sign", "other"):
                signing_key(d, name)
            write_study(d / "studies", *exam_of("C"))
            with Orthanc(d / "pacs") as pacs, DmpSim(d / "dmp", trust=d / "other.pem") as sim:
                pacs.load_dir(d / "studies")
                port = harness.free_port()
                with Drimbox(d / "db", pacs=pacs, extra={
                        "hl7_port": port, "publish_wait_hours": 0,
                        "dmp_url": sim.url + "/si-dmp-server/v2/services",
                        "dmp_sign_cert": d / "sign.pem",
                        "dmp_sign_key": d / "sign.key"}) as db:
                    send_report(self, port, "examen-c/CR_C-ORU.hl7", 7)
                    job = wait_job(db, last_job_id(db), timeout=30)
                    self.assertEqual((job["state"], job["parked_for"]), ("parked", "dmp"))
                    self.assertIn("VIHF signature does not verify", job["reason"])
                self.assertEqual(sim.control("documents"), [])


if __name__ == "__main__":
    unittest.main()
