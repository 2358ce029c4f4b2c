"""Retrieval into the cache by C-MOVE and C-GET: every instance lands with
the same dataset bytes and transfer syntax as the PACS's copy."""

import unittest
from pathlib import Path

import common


class RetrieveTest(common.PacsTestCase):

    def check_cached_like_pacs(self, db, study_uid):
        ls = db.ls()
        cached = common.cached_paths(ls)
        pacs = self.pacs.instances_of_study(study_uid)
        self.assertEqual(set(cached) & set(pacs), set(pacs))
        for sop, orthanc_id in pacs.items():
            ours = (Path(db.cache_dir) / cached[sop]).read_bytes()
            theirs = self.pacs.instance_file(orthanc_id)
            self.assertEqual(common.part10_dataset(ours), common.part10_dataset(theirs),
                             "instance %s differs from the PACS's copy" % sop)

    def fetch_all_kinds(self, db):
        for kind in ("ct", "ct-jls", "mr", "dx", "us"):
            uid = self.study_of_kind(kind)
            out = db.cli("fetch", uid).stdout
            n = sum(len(s) for s in self.pacs.uid_tree()[uid].values())
            self.assertIn("fetched %d instances" % n, out)
            self.check_cached_like_pacs(db, uid)

    def test_cmove_lands_every_instance_with_the_pacs_bytes(self):
        self.fetch_all_kinds(self.drimbox("db-move", retrieve="move"))

    def test_cget_lands_every_instance_with_the_pacs_bytes(self):
        self.fetch_all_kinds(self.drimbox("db-get", retrieve="get"))

    def test_fetch_of_one_series(self):
        db = self.drimbox("db-series")
        mr = self.study_of_kind("mr")
        series = sorted(self.pacs.uid_tree()[mr])[0]
        db.cli("fetch", mr, "--series", series)
        cached = set(common.cached_paths(db.ls()))
        self.assertEqual(cached, self.pacs.uid_tree()[mr][series])

    def test_fetch_indexes_the_study_without_a_prior_sync(self):
        db = self.drimbox("db-nosync")
        uid = self.study_of_kind("dx")
        db.cli("fetch", uid)
        self.assertEqual(common.index_tree(db.ls()), {uid: self.pacs.uid_tree()[uid]})

    def test_fetch_of_unknown_study_fails_clearly(self):
        db = self.drimbox("db-unknown")
        r = db.cli("fetch", "1.2.3.4.5.6.7.8.9", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("fetch failed", r.stderr)
        bad = db.cli("fetch", "not-a-uid", check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("not a UID", bad.stderr)


if __name__ == "__main__":
    unittest.main()
