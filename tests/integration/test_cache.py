"""The cache stays consistent with the index: under eviction, and after
kill -9 in the middle of a retrieval."""

import time
import unittest
from pathlib import Path

import pydicom

import common
import harness


def index_matches_disk(test, db, recent_orphans_ok=False):
    """Every cached row has its file, every file has its row, no temp file.
    recent_orphans_ok: on PostgreSQL, the cache may be shared by nodes, and
    a file just placed by another node has no row yet: the start-up check
    leaves files without a row until they are 10 minutes old (a crash's
    orphans are then removed by a later check, or replaced by the next
    retrieval of the same instance)."""
    ls = db.ls()
    rows = set(common.cached_paths(ls).values())
    if recent_orphans_ok and harness.TEST_INDEX == "postgresql":
        test.assertLessEqual(rows, common.files_under(db.cache_dir))
    else:
        test.assertEqual(common.files_under(db.cache_dir), rows)
    # (nodes sharing a PostgreSQL index each have a .tmp/NODE/)
    tmp = Path(db.cache_dir) / ".tmp"
    test.assertEqual([p for p in tmp.rglob("*") if not p.is_dir()], [])
    return ls


class CacheTest(common.PacsTestCase):

    def test_eviction_keeps_the_index_consistent_and_within_bound(self):
        db = self.drimbox("db-evict", extra={"cache_max_mb": 1})
        for kind in ("ct", "ct-jls", "mr", "dx", "us"):
            db.cli("fetch", self.study_of_kind(kind))
        ls = index_matches_disk(self, db)
        size = sum(p.stat().st_size for p in Path(db.cache_dir).rglob("*.dcm"))
        self.assertLessEqual(size, 1 << 20)
        self.assertIn("evicted series=", db.log_text())
        # The most recent study is still cached, the first one is not.
        cached = set(common.cached_paths(ls))
        tree = self.pacs.uid_tree()
        us = set().union(*tree[self.study_of_kind("us")].values())
        ct = set().union(*tree[self.study_of_kind("ct")].values())
        self.assertTrue(us <= cached)
        self.assertFalse(ct & cached)


class KillTest(common.PacsTestCase):
    """A study big enough that a retrieval can be killed half-way."""

    COPIES = 600

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        src = next(Path(cls.data).rglob("ct/*/*.dcm"))
        ds = pydicom.dcmread(src)
        cls.big_study = "1.2.826.0.1.3680043.10.1234.9.1"
        ds.StudyInstanceUID = cls.big_study
        ds.SeriesInstanceUID = cls.big_study + ".1"
        out = cls.dir / "big"
        out.mkdir()
        for i in range(cls.COPIES):
            ds.SOPInstanceUID = "%s.%d" % (ds.SeriesInstanceUID, i + 1)
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = i + 1
            ds.save_as(out / ("%04d.dcm" % i), write_like_original=False)
        cls.pacs.load_dir(out)

    def test_kill9_mid_retrieval_leaves_no_half_file_and_no_orphan_row(self):
        db = self.drimbox("db-kill")
        proc = harness.subprocess.Popen(
            [str(db.cli_bin), "-c", str(db.conf_path), "fetch", self.big_study],
            stdout=harness.subprocess.DEVNULL, stderr=harness.subprocess.DEVNULL,
            env=harness.dicom_env())
        deadline = time.time() + 60
        while time.time() < deadline:
            n = len(list(Path(db.cache_dir).rglob("*.dcm")))
            if n >= 50:
                break
            time.sleep(0.01)
        db.kill9()
        proc.wait(timeout=30)
        self.assertTrue(0 < n < self.COPIES, "not killed mid-retrieval (%d files)" % n)
        db.start()
        self.assertIn('cat=cache msg="check dir=', db.log_text())
        index_matches_disk(self, db, recent_orphans_ok=True)
        # The retrieval can be run again and completes.
        db.cli("fetch", self.big_study)
        ls = index_matches_disk(self, db)
        self.assertEqual(len(common.cached_paths(ls)), self.COPIES)


if __name__ == "__main__":
    unittest.main()
