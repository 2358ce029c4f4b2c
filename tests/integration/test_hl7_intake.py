"""HL7 v2 intake over MLLP: every ANS sample message gets the answer it
should, bad messages and broken frames are refused with a reason and
create no job, accepted ones are journaled with their job (parked when the
identity is not qualified, released by a qualified one).

The sample data is read from ../shared (see tests/lib/shared.py); the
referencing messages' {{placeholders}} are filled in as the ANS test
platform does.
"""

import json
import socket
import ssl
import subprocess
import time
import unittest
from pathlib import Path

import harness
from harness import Drimbox, TempDir
from shared import shared_dir

SHARED = shared_dir()
REF = SHARED / "drim-m-data" / "referencement-drimbox" / "jeux-de-donnees" / "hl7v2"
CISIS = SHARED / "ans-samples" / "hl7v2-cisis" / "trans-doc-cda-v2.1"
DEMO = SHARED / "ans-samples" / "drimbox-demonstrator"

SB, EB = b"\x0b", b"\x1c\r"

# What drimbox answers each sample, and the job it creates (None: none).
# Intake only: whether the PACS holds the exam is checked by the
# publication job (issue 4, publishing), not here.
EXPECTED = {
    # referencing set: exam reports, published (G1_MAJ replaces G1,
    # I_Depublication unpublishes I)
    **{"%s/CR_%s-%s.hl7" % (d, x, t): ("AA", "publish")
       for d, x in [("examen-c", "C"), ("examen-e", "E"), ("examen-f", "F"),
                    ("examen-g", "G1"), ("examen-g", "G2"), ("examen-h", "H"),
                    ("examen-i", "I"), ("examen-j", "J"), ("examen-k", "K"),
                    ("examen-l", "L"), ("examen-m", "M"), ("examen-n", "N"),
                    ("examen-q", "Q"), ("examen-r", "R"), ("examen-s", "S"),
                    ("examen-u", "U"), ("examen-v", "V"), ("examen-w", "W"),
                    ("examen-x", "X"), ("examen-y", "Y"), ("examen-z", "Z"),
                    ("annexes/examen-a", "A"), ("annexes/examen-b", "B"),
                    ("annexes/examen-d", "D"), ("annexes/examen-o", "O"),
                    ("annexes/examen-p", "P"), ("annexes/examen-t", "T")]
       for t in ("ORU", "MDM")},
    # this copy holds G1's report again (ORC NW, OBX-11 F, CDA 407 v1): a
    # re-sent report, which the publication turns into a replacement
    "examen-g/CR_G1_MAJ-ORU.hl7": ("AA", "publish"),
    "examen-g/CR_G1_MAJ-MDM.hl7": ("AA", "replace"),
    "examen-i/CR_I_Depublication-ORU.hl7": ("AA", "unpublish"),
    "examen-i/CR_I_Depublication-MDM.hl7": ("AA", "unpublish"),
    # the imaging order of exam W cancelled: the exam is withdrawn
    "examen-w/CR_W_Suppression-OMI.hl7": ("AA", "unpublish"),
}

# CI-SIS samples: the ORU ones carry biology reports (not ours: refused);
# the MDM ones a radiology report, whose initial "plain" variant holds
# text, not XML, in OBX-5. None has PID-32: their jobs are parked.
CISIS_EXPECTED = {
    "oru/transmission-initiale-oru/message_oru_cr_bio_init_n3_segur.hl7":
        ("AE", None, "not an imaging report"),
    "oru/remplacement-oru/message_oru_cr_bio_rplc_n3_segur.hl7":
        ("AE", None, "not an imaging report"),
    "oru/suppression-oru/message_oru_cr_bio_del_n3_segur.hl7":
        ("AE", None, "not an imaging report"),
    "mdm/transmission-initiale-mdm/message_mdm_cr_radio_init_n1.er7":
        ("AE", None, "not XML"),
    "mdm/transmission-initiale-mdm/message_mdm_cr_radio_init_n1_base64.er7":
        ("AA", "publish", None),
    "mdm/remplacement-mdm/message_mdm_cr_radio_rplc_n1.er7":
        ("AA", "replace", None),
    "mdm/suppression-mdm/message_mdm_cr_radio_del_n1.er7":
        ("AA", "unpublish", None),
}


def fill_placeholders(text, n):
    """The referencing messages' MSH placeholders, as the test platform
    fills them."""
    return (text.replace("{{applicationSupplier}}", "RIS_TEST")
            .replace("{{facilitySupplier}}", "SITE_TEST")
            .replace("{{applicationReceiver}}", "DRIMBOX")
            .replace("{{facilityReceiver}}", "SITE_TEST")
            .replace("{{idMessage}}", "MSG%05d" % n))


def unescape(value):
    """An HL7 value with the standard delimiters' escapes undone."""
    for esc, char in (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"),
                      ("\\R\\", "~"), ("\\E\\", "\\")):
        value = value.replace(esc, char)
    return value


def segments(message):
    """{segment id: [fields, unescaped]} of the first segment of each id."""
    out = {}
    for seg in message.replace("\n", "\r").split("\r"):
        if seg and seg[:3] not in out:
            out[seg[:3]] = [unescape(f) for f in seg.split("|")]
    return out


class MllpClient:
    """A raw MLLP connection: what tests send is exactly what goes out
    (over TLS when given an ssl.SSLContext)."""

    def __init__(self, port, tls=None):
        self.sock = socket.create_connection((harness.LOOPBACK, port), timeout=30)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=harness.LOOPBACK)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, message):
        self.send_raw(SB + message + EB)
        return self.answer()

    def answer(self):
        """The next framed answer, decoded."""
        while EB not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before an answer (got %r)" % self.buf)
            self.buf += chunk
        frame, self.buf = self.buf.split(EB, 1)
        if not frame.startswith(SB):
            raise ValueError("answer not framed: %r" % frame[:40])
        return segments(frame[1:].decode())

    def close(self):
        self.sock.close()


class IntakeTestCase(unittest.TestCase):
    counter = 0  # numbers the messages sent (MSH-10)

    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir("drimbox-hl7-")
        cls.tmpdir = cls.tmp.__enter__()
        cls.hl7_port = harness.free_port()
        cls.db = Drimbox(cls.tmpdir / "db", extra={
            "hl7_port": cls.hl7_port, "hl7_max_message_mb": 1,
            "hl7_idle_timeout": 2, "hl7_facility": "SITE"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        cls.tmp.__exit__(None, None, None)

    def send(self, message):
        client = MllpClient(self.hl7_port)
        try:
            return client.send(message)
        finally:
            client.close()

    def sample(self, path):
        IntakeTestCase.counter += 1
        text = fill_placeholders(Path(path).read_bytes().decode("utf-8"), self.counter)
        return text.encode("utf-8")

    def jobs(self):
        return json.loads(self.db.cli("jobs", "--json", "-n", "0").stdout)

    def messages(self):
        return json.loads(self.db.cli("messages", "--json", "-n", "0").stdout)

    def assert_answer(self, ack, outcome, reason=None):
        self.assertEqual(ack["MSA"][1], outcome, ack)
        if outcome != "AA":
            self.assertIn("ERR", ack)
            if reason:
                self.assertIn(reason, ack["ERR"][8])


class SampleMessagesTest(IntakeTestCase):

    def test_every_referencing_message(self):
        files = sorted(p.relative_to(REF).as_posix() for p in REF.rglob("*.hl7"))
        self.assertEqual(sorted(EXPECTED), files)  # every sample is listed
        for rel in files:
            outcome, kind = EXPECTED[rel]
            before = {j["id"] for j in self.jobs()}
            msg = self.sample(REF / rel)
            ack = self.send(msg)
            with self.subTest(rel):
                self.assert_answer(ack, outcome)
                self.assertEqual(ack["MSA"][2], segments(msg.decode())["MSH"][9])
                new = [j for j in self.jobs() if j["id"] not in before]
                self.assertEqual([j["kind"] for j in new], [kind] if kind else [])
                if kind:  # not held back at intake (the worker may run it)
                    self.assertNotEqual(new[0].get("parked_for"), "identity")
                    self.assertEqual(new[0]["payload"]["patient"]["ins"], "279035121518989")

    def test_exam_f_job_names_both_studies_and_accessions(self):
        self.send(self.sample(REF / "examen-f" / "CR_F-MDM.hl7"))
        job = self.jobs()[0]["payload"]
        self.assertEqual([s["uid"] for s in job["studies"]],
                         ["1.2.250.1.213.4.5.2.1.106", "1.2.250.1.213.4.5.2.1.107"])
        self.assertEqual([o["accession"] for o in job["orders"]], ["ACN106", "ACN107"])
        self.assertEqual(job["event"], "NW")
        self.assertEqual(job["meta"]["DESTDMP"], "Y")
        self.assertEqual(job["document"]["id"], "1.2.250.1.213.4.5.4.406")

    def test_cisis_and_demonstrator_samples(self):
        for rel, (outcome, kind, reason) in CISIS_EXPECTED.items():
            before = {j["id"] for j in self.jobs()}
            ack = self.send(self.sample(CISIS / rel))
            with self.subTest(rel):
                self.assert_answer(ack, outcome, reason)
                new = [j["kind"] for j in self.jobs() if j["id"] not in before]
                self.assertEqual(new, [kind] if kind else [])
        # a line break inside OBX-3: its next line is no segment
        ack = self.send(DEMO.joinpath("patient1.hl7").read_bytes())
        self.assert_answer(ack, "AR", "invalid segment id")

    def test_mllp_send_from_python_hl7_is_answered(self):
        path = self.tmpdir / "c.hl7"
        path.write_bytes(self.sample(REF / "examen-c" / "CR_C-ORU.hl7"))
        out = subprocess.run(["mllp_send", "--loose", "-f", str(path), "-p",
                              str(self.hl7_port), harness.LOOPBACK],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("MSA|AA|", out.stdout)


def oru(ins_line=None, version="2.5", orc="NW", obx5=None, status="VALI",
        ipp="IPP900", control="CTL1", extra=""):
    """A minimal ORU^R01 around the referencing CDA of exam C."""
    cda = (REF.parent / "cda" / "examen-c" / "CR_C.xml").read_bytes()
    if obx5 is None:
        import base64
        obx5 = "^TEXT^XML^Base64^" + base64.b64encode(cda).decode()
    pid3 = ins_line if ins_line is not None else (
        "279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS~"
        "%s^^^SITE&1.2.3.4&ISO^PI" % ipp)
    pid = "PID|||%s||DOE^JANE||19790328|F" % pid3 + "|" * 24 + status
    return ("MSH|^~\\&|RIS|SITE|DRIMBOX|SITE|20240101||ORU^R01^ORU_R01|%s|P|%s"
            "|||||FRA|UNICODE UTF-8\r%s\rORC|%s\rOBR|1\rOBX|1|ED|18748-4^CR^LN||%s"
            "||||||F\r%s" % (control, version, pid, orc, obx5, extra)).encode()


class BadInputTest(IntakeTestCase):

    def assert_refused(self, message, outcome, reason):
        before = len(self.jobs())
        ack = self.send(message)
        self.assert_answer(ack, outcome, reason)
        self.assertEqual(len(self.jobs()), before, "a job was created")
        self.assertEqual(self.messages()[0]["outcome"], outcome)

    def test_bad_messages_are_refused_with_a_reason(self):
        self.assert_refused(oru(version="2.3"), "AR", "version 2.3")
        self.assert_refused(oru(ins_line="IPP1^^^SITE&1.2.3&ISO^PI"), "AE", "no INS")
        self.assert_refused(oru(obx5="^TEXT^XML^Base64^%%%not base64%%%"), "AE",
                            "not valid base64")
        self.assert_refused(oru(obx5="^TEXT^XML^Base64^bm90IHhtbA=="), "AE", "not XML")
        self.assert_refused(oru(orc="ZZ"), "AE", "ORC-1")
        self.assert_refused(oru(control=""), "AR", "MSH-10")
        self.assert_refused(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\rPID|||1\r", "AR",
                            "ADT^A01")
        self.assert_refused(b"this is not HL7", "AR", "does not start with MSH")
        # a second message glued into the first frame
        self.assert_refused(oru() + oru(control="CTL2"), "AR", "second MSH")
        # a truncated message: the CDA cut in the middle
        self.assert_refused(oru()[:5000], "AE", "OBX-5")
        self.assertTrue(self.db.running)

    def test_hostile_reports_are_refused_quickly(self):
        import base64
        start = time.monotonic()
        many_ids = "~".join(["X%d^^^SITE&1.2.3&ISO^PI" % i for i in range(15000)])
        self.assert_refused(oru(ins_line=many_ids), "AE", "repetitions")
        # an entity expanded 10^10 times would take the daemon's memory
        bomb = ('<?xml version="1.0"?><!DOCTYPE c [<!ENTITY e "%s">]>'
                '<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2"/>'
                '<title>%s</title></ClinicalDocument>' % ("x" * 100000, "&e;" * 100000))
        self.assert_refused(oru(obx5="^TEXT^XML^Base64^" +
                                base64.b64encode(bomb.encode()).decode()), "AE", "DTD")
        self.assertLess(time.monotonic() - start, 30 * harness.SLOW)

    def test_report_about_another_patient_is_refused(self):
        import base64
        cda = (REF.parent / "cda" / "examen-c" / "CR_C.xml").read_text(encoding="utf-8")
        # the IPP first, then another patient's INS
        cda = cda.replace('<id extension="279035121518989" root="1.2.250.1.213.1.4.10"/>',
                          '<id extension="IPP101" root="1.2.250.1.213.4.5.2.4"/>'
                          '<id extension="162018885045327" root="1.2.250.1.213.1.4.10"/>', 1)
        self.assertIn("162018885045327", cda)
        self.assert_refused(oru(obx5="^TEXT^XML^Base64^" +
                                base64.b64encode(cda.encode()).decode()), "AE",
                            "not PID-3's INS")

    def test_a_message_sent_again_creates_no_second_job(self):
        before = len(self.jobs())
        self.assert_answer(self.send(oru(control="DUP1")), "AA")
        self.assert_answer(self.send(oru(control="DUP1")), "AA")
        self.assertEqual(len(self.jobs()), before + 1)
        self.assertIn("sent again", self.messages()[0]["reason"])

    def test_oversized_message_is_refused_and_not_kept_whole(self):
        big = oru(extra="NTE|1||" + "x" * (2 << 20) + "\r")
        self.assert_refused(big, "AR", "over the limit")
        journal = self.messages()[0]
        self.assertEqual(journal["size"], len(big))

    def test_frame_cut_by_the_next_gets_two_answers(self):
        client = MllpClient(self.hl7_port)
        try:
            client.send_raw(SB + oru()[:300] + SB + oru(control="CTL9") + EB)
            first, second = client.answer(), client.answer()
        finally:
            client.close()
        self.assert_answer(first, "AR", "cut short")
        self.assert_answer(second, "AA")

    def test_frames_split_and_glued_across_reads(self):
        client = MllpClient(self.hl7_port)
        try:
            data = b"".join(SB + oru(control="S%d" % i) + EB for i in range(3))
            for i in range(0, len(data), 7777):
                client.send_raw(data[i:i + 7777])
                time.sleep(0.001)
            answers = [client.answer() for _ in range(3)]
        finally:
            client.close()
        self.assertEqual([a["MSA"][2] for a in answers], ["S0", "S1", "S2"])
        self.assertTrue(all(a["MSA"][1] == "AA" for a in answers))

    def test_incomplete_frame_is_refused_at_the_idle_timeout(self):
        client = MllpClient(self.hl7_port)
        try:
            client.send_raw(SB + oru()[:200])
            self.assert_answer(client.answer(), "AR", "incomplete frame")
        finally:
            client.close()


class IdentityTest(IntakeTestCase):

    def test_unqualified_identity_parks_until_a_qualified_one_arrives(self):
        ack = self.send(oru(status="PROV", ipp="IPP77", control="P1"))
        self.assert_answer(ack, "AA")
        job = self.jobs()[0]
        self.assertEqual(job["state"], "parked")
        self.assertIn("identity not qualified", job["reason"])
        listing = self.db.cli("jobs").stdout
        self.assertIn("parked", listing)
        self.assertIn("identity not qualified", listing)
        # the same patient, now qualified: the parked job is released
        self.assert_answer(self.send(oru(status="VALI", ipp="IPP77", control="P2")), "AA")
        jobs = {j["id"]: j for j in self.jobs()}
        self.assertNotEqual(jobs[job["id"]].get("parked_for"), "identity")
        self.assertEqual(jobs[job["id"]]["payload"]["patient"]["status"], "VALI")
        self.assertIn("released", self.db.log_text())

    def test_destdmp_n_is_accepted_without_a_job(self):
        before = len(self.jobs())
        extra = "OBX|2|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||N||||||F\r"
        self.assert_answer(self.send(oru(extra=extra, control="N1")), "AA")
        self.assertEqual(len(self.jobs()), before)
        self.assertIn("DESTDMP=N", self.messages()[0]["reason"])


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate
    (the RIS's), made with the openssl tool in d."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")
    (Path(d) / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name,
            "-keyout", name + ".key", "-out", name + ".csr")
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", name + ".pem")


class TlsTest(unittest.TestCase):
    """hl7_tls_*: the RIS connects with TLS and a client certificate."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir("drimbox-hl7-tls-")
        d = cls.tmp.__enter__()
        make_pki(d)
        cls.pki = d
        cls.port = harness.free_port()
        cls.db = Drimbox(d / "db", extra={
            "hl7_port": cls.port, "hl7_idle_timeout": 5,
            "hl7_tls_cert": d / "server.pem", "hl7_tls_key": d / "server.key",
            "hl7_tls_ca": d / "ca.pem"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        cls.tmp.__exit__(None, None, None)

    def context(self, with_client_cert):
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.pem"))
        if with_client_cert:
            ctx.load_cert_chain(self.pki / "client.pem", self.pki / "client.key")
        return ctx

    def journal(self):
        return json.loads(self.db.cli("messages", "--json", "-n", "0").stdout)

    def test_ris_with_a_certificate_is_answered(self):
        client = MllpClient(self.port, self.context(True))
        try:
            self.assertEqual(client.send(oru(control="TLS1"))["MSA"][1:3], ["AA", "TLS1"])
        finally:
            client.close()

    def test_ris_without_a_certificate_or_without_tls_is_not_heard(self):
        before = len(self.journal())
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            client = MllpClient(self.port, self.context(False))
            client.send(oru(control="NOCERT"))
        plain = MllpClient(self.port)
        try:
            with self.assertRaises((ConnectionError, OSError)):
                plain.send(oru(control="PLAIN"))
        finally:
            plain.close()
        self.assertEqual(len(self.journal()), before)
        self.assertIn("TLS handshake", self.db.log_text())
        self.assertTrue(self.db.running)


if __name__ == "__main__":
    unittest.main()
