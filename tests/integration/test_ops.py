"""What operations rely on: /health and /ready as a load balancer asks
them, /metrics as Prometheus reads it (parsed by python3-prometheus-client's
own parser), `drimbox status`, and the log: logfmt lines, reopened on
SIGHUP after logrotate moved the file."""

import http.client
import json
import os
import re
import signal
import socket
import unittest

from prometheus_client.parser import text_string_to_metric_families

import common
import harness
from test_hl7_intake import MllpClient


def get(port, path, source=None, headers=None):
    """(status, headers, body) of a GET from source (an address of lo)."""
    conn = http.client.HTTPConnection(
        harness.LOOPBACK, port, timeout=60,
        source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(smp, name, **labels):
    return smp.get((name, frozenset(labels.items())), 0)


# One event per line: ts, level, cat, an optional context, a quoted msg.
LOGFMT = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z '
                    r'level=(debug|info|warn|error) cat=[a-z0-9]+ '
                    r'([a-z]+=[^ "]+ )?'
                    r'msg="([^"\\]|\\.)*"$')


def drimbox_lines(text):
    """The daemon's own lines (not valgrind's, under make check-valgrind)."""
    return [line for line in text.splitlines() if not line.startswith("==")]


class OpsTest(common.PacsTestCase):

    def test_ready_and_metrics_follow_what_was_served(self):
        hl7_port = harness.free_port()
        db = self.drimbox("db", extra={"hl7_port": hl7_port})
        port = db.http_port
        status, _, body = get(port, "/health")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
        status, _, body = get(port, "/ready")
        ready = json.loads(body)
        self.assertEqual(status, 200, ready)
        self.assertEqual(ready, {"ready": True, "checks": {
            "index": {"ok": True}, "pacs": {"ok": True}}})

        ct = self.study_of_kind("ct")
        db.cli("sync", "--all")
        root = "/dicomweb"
        self.assertEqual(get(port, root + "/studies")[0], 200)
        self.assertEqual(get(port, root + "/studies/" + ct + "/metadata")[0], 200)
        status, _, body = get(port, root + "/studies/" + ct)
        self.assertEqual(status, 200)
        served = len(body)
        self.assertEqual(get(port, root + "/studies/1.2.3/series")[0], 404)
        self.assertEqual(get(port, root + "/studies/1.2..3")[0], 400)
        client = MllpClient(hl7_port)
        try:
            ack = client.send(b"MSH|^~\\&|RIS|SITE|DRIMBOX|SITE|20260101||ORU^R01^ORU_R01|"
                              b"M1|P|2.5\rPID|1\r")
        finally:
            client.close()
        self.assertIn(ack["MSA"][1], ("AE", "AR"))

        req = "drimbox_http_requests_total"
        # a request is counted once its last byte went out, which the
        # client may see first: wait for the last one (the 400)
        harness.wait_until(lambda: value(samples(get(port, "/metrics")[2].decode()),
                                         req, route="wado", status="400") == 1, 10)
        status, headers, body = get(port, "/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        smp = samples(body.decode())
        self.assertEqual(value(smp, req, route="qido", status="200"), 1)
        self.assertEqual(value(smp, req, route="qido", status="404"), 1)
        self.assertEqual(value(smp, req, route="metadata", status="200"), 1)
        self.assertEqual(value(smp, req, route="wado", status="200"), 1)
        self.assertEqual(value(smp, req, route="wado", status="400"), 1)
        self.assertEqual(value(smp, req, route="health", status="200"), 1)
        self.assertEqual(value(smp, req, route="ready", status="200"), 1)
        # the histogram counts every answered request of its route
        self.assertEqual(value(smp, "drimbox_http_request_duration_seconds_count",
                               route="wado"), 2)
        self.assertGreater(value(smp, "drimbox_http_request_duration_seconds_sum",
                                 route="wado"), 0)
        self.assertGreaterEqual(value(smp, "drimbox_http_response_bytes_total"), served)
        # the metadata waited for the study's instances, the study's
        # retrieval found them cached
        misses = value(smp, "drimbox_cache_requests_total", result="miss")
        self.assertGreater(misses, 0)
        self.assertEqual(value(smp, "drimbox_cache_requests_total", result="hit"), misses)
        self.assertEqual(value(smp, "drimbox_pacs_retrievals_total", outcome="ok"), 1)
        self.assertGreater(value(smp, "drimbox_pacs_retrieved_bytes_total"), 0)
        self.assertEqual(value(smp, "drimbox_pacs_retrieved_instances_total"), misses)
        self.assertEqual(value(smp, "drimbox_pacs_reachable"), 1)
        self.assertEqual(value(smp, "drimbox_hl7_messages_total", type="ORU^R01",
                               ack=ack["MSA"][1]), 1)
        self.assertGreater(value(smp, "drimbox_cache_bytes"), 0)
        self.assertEqual(value(smp, "drimbox_jobs_readable"), 1)

        # the same study again comes from the cache
        self.assertEqual(get(port, root + "/studies/" + ct)[0], 200)
        smp = samples(get(port, "/metrics")[2].decode())
        self.assertEqual(value(smp, "drimbox_cache_requests_total", result="hit"),
                         2 * misses)
        self.assertAlmostEqual(value(smp, "drimbox_cache_hit_ratio"), 2 / 3, places=3)

        # another address than metrics_allowed: refused, with the reason
        status, _, body = get(port, "/metrics", source="127.0.0.2")
        self.assertEqual(status, 403)
        self.assertIn("metrics_allowed", json.loads(body)["error"])
        for line in drimbox_lines(db.log_text()):
            self.assertRegex(line, LOGFMT)

    def test_not_ready_when_the_pacs_or_the_dmp_cannot_be_reached(self):
        nothing = harness.free_port()  # nobody listens there
        db = harness.Drimbox(self.dir / "down", extra={
            "pacs_host": harness.LOOPBACK, "pacs_port": nothing, "pacs_aet": "NOPACS",
            "pacs_timeout": 2, "hl7_port": harness.free_port(),
            "dmp_url": "http://%s:%d/dmp" % (harness.LOOPBACK, nothing)})
        db.start()
        self.addCleanup(db.stop)
        status, _, body = get(db.http_port, "/ready")
        self.assertEqual(status, 503)
        ready = json.loads(body)
        self.assertFalse(ready["ready"])
        self.assertTrue(ready["checks"]["index"]["ok"])
        self.assertFalse(ready["checks"]["pacs"]["ok"])
        self.assertIn(":%d" % nothing, ready["checks"]["pacs"]["error"])
        self.assertFalse(ready["checks"]["dmp"]["ok"])
        self.assertIn(str(nothing), ready["checks"]["dmp"]["error"])
        # /health only says the server answers
        self.assertEqual(get(db.http_port, "/health")[0], 200)

        out = db.cli("status").stdout
        self.assertIn("UNREACHABLE", out)
        self.assertRegex(out, r"ready +NO: .*pacs \(.*:%d" % nothing)
        self.assertRegex(out, r"jobs +none waiting")
        self.assertRegex(out, r"problems \(latest last\)\n  ts=\S+ level=error cat=pacs")
        status = json.loads(db.cli("status", "--json").stdout)
        self.assertGreater(len(status["recent_problems"]), 0)
        self.assertEqual(status["jobs"], [])

    def test_start_up_names_the_port_already_in_use(self):
        with socket.socket() as busy:  # another program on the HTTP port
            busy.bind((harness.LOOPBACK, harness.free_port()))
            busy.listen(1)
            port = busy.getsockname()[1]
            db = harness.Drimbox(self.dir / "busy", pacs=self.pacs,
                                 extra={"http_port": port})
            with self.assertRaises(harness.HarnessError) as failed:
                db.start()
        self.assertIn("start-up failed: HTTP server on 127.0.0.1:%d could not "
                      "start: Failed to bind to port %d: Address already in use"
                      % (port, port), str(failed.exception))

    def test_log_file_reopened_on_sighup(self):
        log = self.dir / "rotated" / "drimbox.log"
        log.parent.mkdir(parents=True)
        db = self.drimbox("rotated", extra={"log_file": log})
        first = log.read_text()
        self.assertIn('msg="drimboxd ready', first)
        os.rename(log, str(log) + ".1")  # what logrotate does
        db.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: log.exists() and "reopened" in log.read_text(), 10)
        db.cli("status")
        self.assertEqual(get(db.http_port, "/dicomweb/studies")[0], 200)
        self.assertNotIn("reopened", (log.parent / "drimbox.log.1").read_text())
        for line in drimbox_lines(log.read_text() + first):
            self.assertRegex(line, LOGFMT)


if __name__ == "__main__":
    unittest.main()
