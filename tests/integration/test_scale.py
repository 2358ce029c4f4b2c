"""Scale-out: three drimboxd nodes on one PostgreSQL index and one shared
cache directory, behind nginx (HTTP, and MLLP as TCP), as a large site
runs them.

200 reports sent through the balancer (round robin over the nodes) give
exactly 200 publications at the DMP (the simulator), none twice, although
one node is killed (SIGKILL) in the middle while it runs publications:
once its leases have run out the other nodes finish its jobs, and a
manifest it had submitted is not submitted again. The viewer's requests
keep working through the balancer with a node down.

PostgreSQL restarted under the nodes is survived: each connection finds
its server gone and connects again before a request fails on it.

A message or an instance received by two nodes at once (a RIS resending
after a lost acknowledgement, a PACS sending twice) is processed once: one
job for the message, one row and one file for the instance.
"""

import json
import subprocess
import threading
import time
import unittest
import urllib.request
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

import harness
import reports
from harness import DmpSim, Drimbox, Nginx, Orthanc, Postgres, TempDir
from test_hl7_intake import MllpClient
from test_publish import signing_key, write_study

REPORTS = 200
PATIENT = reports.SMALL_SET_PATIENT
LEASE = 10


def write_studies(out, n):
    """n one-instance CT studies of the patient the reports name; their
    (study UID, accession)."""
    patient = {"id": PATIENT["ins"], "issuer": "ASIP-SANTE-INS-NIR",
               "name": "%s^%s" % (PATIENT["family"], PATIENT["given"]),
               "birth": PATIENT["birth"], "sex": PATIENT["sex"]}
    studies = [(generate_uid(), "SCALE%04d" % k) for k in range(n)]
    for study, accession in studies:
        write_study(out, study, accession, series=1, per_series=1, patient=patient)
    return studies


class ScaleOutTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir("drimbox-scale-")
        d = cls.tmp.__enter__()
        (d / "studies").mkdir()
        cls.studies = write_studies(d / "studies", REPORTS)
        cls.pg = Postgres().start()
        cls.url = cls.pg.create_database()
        cls.pacs = Orthanc(d / "pacs").start()
        cls.pacs.load_dir(d / "studies")
        signing_key(d)
        cls.sim = DmpSim(d / "dmp", trust=d / "sign.pem").start()
        cls.nodes = []
        for n in (1, 2, 3):
            cls.nodes.append(Drimbox(d / ("node%d" % n), pacs=cls.pacs, aet="DRIMBOX%d" % n,
                                     extra={
                "index_url": cls.url, "node_name": "node%d" % n, "job_lease": LEASE,
                "cache_dir": d / "cache", "hl7_port": harness.free_port(),
                "publish_wait_hours": 0, "publish_retry_max": 1,
                "dmp_url": cls.sim.url + "/si-dmp-server/v2/services",
                "dmp_sign_cert": d / "sign.pem", "dmp_sign_key": d / "sign.key",
                "dmp_structure_id": "499700367909006", "dmp_lps_id": "DRIMBOX-SCALE",
                "dmp_timeout": 30}).start())
        cls.lb = Nginx(d / "lb", [n.http_port for n in cls.nodes],
                       [n.settings["hl7_port"] for n in cls.nodes]).start()

    @classmethod
    def tearDownClass(cls):
        cls.lb.stop()
        for node in cls.nodes:
            node.stop()
        cls.sim.stop()
        cls.pacs.stop()
        cls.pg.stop()
        cls.tmp.__exit__(None, None, None)

    def send(self, k):
        study, accession = self.studies[k]
        client = MllpClient(self.lb.hl7_port)
        try:
            ack = client.send(reports.oru(study, accession, PATIENT, "SCALE%05d" % k))
        finally:
            client.close()
        self.assertEqual(ack["MSA"][1], "AA", ack)

    def jobs(self, where):
        return int(self.nodes[0].sql("SELECT count(*) FROM jobs WHERE " + where)[0][0])

    def manifests(self):
        return [d for d in self.sim.control("documents") if d["mime"] == "application/dicom"]

    def test_a_postgresql_restart_is_survived(self):
        node = self.nodes[0]
        url = "http://%s:%d/dicomweb/studies?AccessionNumber=SCALE0001" % (
            harness.LOOPBACK, node.http_port)
        self.assertEqual(harness.http_get(url)[0], 200)
        self.pg.restart()
        # the connections find their server gone and connect again, before
        # a request fails on them
        statuses = [harness.http_get(url)[0] for _ in range(20)]
        self.assertEqual(statuses, [200] * 20)
        self.assertIn("PostgreSQL connection lost: reconnecting", node.log_text())

    def test_reports_through_the_balancer_are_published_once_despite_a_dead_node(self):
        victim = self.nodes[1]
        for k in range(REPORTS // 2):
            self.send(k)
        # every node received its share of the reports (round robin)
        for node in self.nodes:
            self.assertGreaterEqual(node.log_text().count("type=ORU^R01"), REPORTS // 2 // 3 - 2,
                                    node.settings["node_name"])
        # the DMP answers slowly: node2 is caught in the middle of
        # submissions (the DMP registers them, node2 never hears back)
        self.sim.control("faults", {"action": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
                                    "kind": "slow-reply", "count": 9, "delay": 3})
        harness.wait_until(lambda: self.jobs("state = 'running' AND owner LIKE 'node2:%'") > 0,
                           30)
        held = [int(r[0]) for r in self.nodes[0].sql(
            "SELECT id FROM jobs WHERE state = 'running' AND owner LIKE 'node2:%'")]
        self.assertTrue(held, "node2 ran no publication")
        time.sleep(0.5)  # its submission reaches the DMP
        victim.kill9()
        for k in range(REPORTS // 2, REPORTS):
            self.send(k)  # the balancer skips the dead node
        harness.wait_until(lambda: self.jobs("state = 'done'") == REPORTS, 120 + 2 * LEASE)
        states = self.nodes[0].sql("SELECT state, count(*) FROM jobs GROUP BY state")
        self.assertEqual(states, [["done", str(REPORTS)]])
        # node2's jobs were finished by the others, once
        for job in held:
            owner = self.nodes[0].sql("SELECT owner FROM jobs WHERE id = %d" % job)[0][0]
            self.assertFalse(owner.startswith("node2:"), owner)
        # exactly one manifest per report at the DMP
        manifests = self.manifests()
        self.assertEqual(len(manifests), REPORTS)
        self.assertEqual(len({m["unique_id"] for m in manifests}), REPORTS)
        submissions = [r for r in self.sim.control("requests")
                       if r["action"].endswith("ProvideAndRegisterDocumentSet-b")
                       and r["outcome"] == "success"]
        self.assertEqual(len(submissions), REPORTS)
        # the surviving nodes both worked
        owners = {r[0].split(":")[0] for r in self.nodes[0].sql("SELECT owner FROM jobs")}
        self.assertTrue({"node1", "node3"} <= owners, owners)
        self.viewer_through_the_balancer()

    def test_the_same_message_and_instance_on_two_nodes_are_processed_once(self):
        first, third = self.nodes[0], self.nodes[2]
        study, accession = self.studies[REPORTS - 1]
        message = reports.oru(study, accession, PATIENT, "TWICE0001")
        acks = []

        def send(node):
            client = MllpClient(node.settings["hl7_port"])
            try:
                acks.append(client.send(message)["MSA"][1])
            finally:
                client.close()

        threads = [threading.Thread(target=send, args=(n,)) for n in (first, third)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(acks, ["AA", "AA"])
        rows = first.sql("SELECT job FROM hl7_messages WHERE control_id = 'TWICE0001' "
                         "ORDER BY id")
        self.assertEqual(len(rows), 2)  # both journaled...
        self.assertEqual(rows[0], rows[1])  # ...with one job
        self.assertEqual(self.jobs("id = %s" % rows[0][0]), 1)
        # the same instance stored to both nodes: one row, one file
        instance = sorted((Path(self.tmp.path) / "studies").rglob("*.dcm"))[3]
        for node in (first, third):
            r = subprocess.run(["storescu", "-aet", "ORTHANC", "-aec", node.aet,
                                harness.LOOPBACK, str(node.dicom_port), str(instance)],
                               capture_output=True, text=True, env=harness.dicom_env())
            self.assertEqual(r.returncode, 0, r.stderr)
        sop = pydicom.dcmread(instance).SOPInstanceUID
        # from the PACS's AE title it is cache fill, answered before the
        # commit: wait for the row
        query = "SELECT cache_path FROM instances WHERE uid = '%s'" % sop
        harness.wait_until(lambda: any(r[0] for r in first.sql(query)), 30)
        rows = first.sql(query)
        self.assertEqual(len(rows), 1)
        self.assertTrue((first.cache_dir / rows[0][0]).is_file())
        self.assertEqual(len(list(first.cache_dir.rglob(sop + ".dcm"))), 1)

    def viewer_through_the_balancer(self):
        """What the viewer asks for, through nginx, node2 still down:
        the page, the study's metadata, a rendered image, a frame as
        stored (each request lands on either live node)."""
        study = self.studies[7][0]
        link = urllib.request.Request(
            self.lb.url + "/IHEInvokeImageDisplay?requestType=STUDY&studyUID=" + study,
            headers={"Accept": "text/html,*/*"})
        with urllib.request.urlopen(link, timeout=60) as r:
            self.assertEqual(r.status, 200)
            self.assertIn(b"<html", r.read().lower())
        for _ in range(6):
            status, _, body = harness.http_get(
                self.lb.url + "/dicomweb/studies/%s/metadata" % study)
            self.assertEqual(status, 200)
            meta = json.loads(body)
            sop = meta[0]["00080018"]["Value"][0]
            series = meta[0]["0020000E"]["Value"][0]
            status, headers, body = harness.http_get(
                self.lb.url + "/dicomweb/studies/%s/series/%s/instances/%s/rendered"
                % (study, series, sop), {"Accept": "image/jpeg"})
            self.assertEqual(status, 200)
            self.assertTrue(body.startswith(b"\xff\xd8"))
            # the viewer's image loader: the frame as stored
            status, headers, body = harness.http_get(
                self.lb.url + "/dicomweb/studies/%s/series/%s/instances/%s/frames/1"
                % (study, series, sop),
                {"Accept": 'multipart/related; type="application/octet-stream"; '
                           "transfer-syntax=*"})
            self.assertEqual(status, 200)
            parts = harness.parse_multipart(headers["content-type"], body)
            self.assertEqual(len(parts[0][1]), 16 * 16 * 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
