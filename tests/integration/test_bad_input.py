"""Bad input never crashes the daemon nor stores anything: unknown AEs,
invalid instances, an unreachable PACS."""

import subprocess
import unittest
from pathlib import Path

import pydicom

import common
import harness


def storescu(db, path, aet):
    return subprocess.run(
        ["storescu", "-aet", aet, "-aec", db.aet, harness.LOOPBACK,
         str(db.dicom_port), str(path)],
        capture_output=True, text=True, env=harness.dicom_env())


class BadInputTest(common.PacsTestCase):

    def one_file(self, kind="dx"):
        return next(Path(self.data).rglob(kind + "/*/*.dcm"))

    def test_storage_from_an_unknown_ae_is_rejected(self):
        db = self.drimbox("db-aet")
        r = storescu(db, self.one_file(), "INTRUDER")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("INTRUDER", db.log_text())
        self.assertEqual(db.ls(), [])

    def test_storage_from_an_allowed_ae_is_accepted(self):
        db = self.drimbox("db-allowed", extra={"dicom_allowed_aets": "MODALITY1, STORESCU"})
        r = storescu(db, self.one_file(), "STORESCU")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(common.cached_paths(db.ls())), 1)

    def test_invalid_instances_are_rejected_with_the_reason_and_not_indexed(self):
        db = self.drimbox("db-invalid", extra={"dicom_allowed_aets": "STORESCU"})
        ds = pydicom.dcmread(self.one_file())
        bad_uid = self.dir / "bad-uid.dcm"
        ds.StudyInstanceUID = "1.2.abc"
        ds.save_as(bad_uid)
        no_series = self.dir / "no-series.dcm"
        ds = pydicom.dcmread(self.one_file())
        del ds.SeriesInstanceUID
        ds.save_as(no_series)
        for f in (bad_uid, no_series):
            storescu(db, f, "STORESCU")
        log = db.log_text()
        self.assertIn("StudyInstanceUID", log)
        self.assertIn("SeriesInstanceUID", log)
        self.assertEqual(log.count("rejected instance"), 2, log)
        self.assertEqual(db.ls(), [])
        self.assertEqual(common.files_under(db.cache_dir), set())
        # The daemon is still up and stores a good instance afterwards.
        self.assertEqual(storescu(db, self.one_file(), "STORESCU").returncode, 0)
        self.assertEqual(len(common.cached_paths(db.ls())), 1)

    def test_unreachable_pacs_is_retried_with_backoff_and_daemon_stays_up(self):
        port = harness.free_port()  # nothing listens there
        db = harness.Drimbox(self.dir / "db-down", extra={
            "pacs_host": harness.LOOPBACK, "pacs_port": port, "pacs_aet": "NOPACS",
            "pacs_timeout": 2})
        db.start()
        self.addCleanup(db.stop)
        harness.wait_until(lambda: "next try in 2 s" in db.log_text(), 10 * harness.SLOW)
        log = db.log_text()
        self.assertIn("unreachable", log)
        self.assertIn("next try in 1 s", log)
        self.assertIn("next try in 2 s", log)
        self.assertIn("UNREACHABLE", db.cli("status").stdout)
        echo = db.cli("echo", check=False)
        self.assertEqual(echo.returncode, 1)
        self.assertIn("NOPACS", echo.stderr)
        sync = db.cli("sync", "--all", check=False)
        self.assertEqual(sync.returncode, 1)
        self.assertTrue(sync.stderr.strip())
        fetch = db.cli("fetch", "1.2.3", check=False)
        self.assertEqual(fetch.returncode, 1)
        self.assertTrue(db.running())

    def test_bad_configuration_stops_startup_with_file_and_line(self):
        conf = self.dir / "bad.conf"
        conf.write_text("pacs_port = 104\ncache_max_mb = lots\n")
        daemon, _ = harness.drimbox_binaries()
        r = subprocess.run([str(daemon), "-c", str(conf), "--check-config"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.conf:2: cache_max_mb", r.stderr)


if __name__ == "__main__":
    unittest.main()
