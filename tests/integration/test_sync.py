"""Sync: drimbox indexes exactly what the PACS holds, incrementally."""

import re
import unittest

import common


class SyncTest(common.PacsTestCase):

    def test_sync_indexes_exactly_what_orthanc_holds(self):
        db = self.drimbox("db-sync")
        out = db.cli("sync", "--all").stdout
        self.assertIn("5 studies listed, 5 refreshed", out)
        self.assertEqual(common.index_tree(db.ls()), self.pacs.uid_tree())

    def test_second_sync_queries_only_changed_studies(self):
        db = self.drimbox("db-incr")
        db.cli("sync", "--all")
        self.assertIn("0 refreshed", db.cli("sync", "--all").stdout)
        # An instance disappears from the PACS: only its study is refreshed
        # and the index follows.
        ct = self.study_of_kind("ct-jls")
        victim = sorted(self.pacs.instances_of_study(ct).values())[0]
        self.pacs.rest("DELETE", "/instances/" + victim)
        self.assertIn("1 refreshed", db.cli("sync", "--all").stdout)
        self.assertEqual(common.index_tree(db.ls()), self.pacs.uid_tree())
        self.assertIn("5 refreshed", db.cli("sync", "--all", "--full").stdout)

    def test_sync_by_date_window_skips_older_studies(self):
        db = self.drimbox("db-window")
        out = db.cli("sync", "--days", "1").stdout
        self.assertIn("0 studies listed", out)  # generated studies are from 2024
        self.assertEqual(db.ls(), [])

    def test_sync_of_one_study(self):
        db = self.drimbox("db-one")
        mr = self.study_of_kind("mr")
        db.cli("sync", "--study", mr)
        self.assertEqual(common.index_tree(db.ls()), {mr: self.pacs.uid_tree()[mr]})

    def test_ls_shows_patient_with_accents_in_utf8(self):
        db = self.drimbox("db-ls")
        db.cli("sync", "--all")
        text = db.cli("ls").stdout
        self.assertEqual(len(text.strip().splitlines()), 1 + 5)
        names = {st["patient_name"] for st in db.ls()}
        self.assertTrue(any(re.search("[ÉÈÇéèç]", n) for n in names), names)

    def test_echo_and_find_query_the_pacs(self):
        db = self.drimbox("db-find")
        self.assertIn("OK", db.cli("echo").stdout)
        found = db.cli("find", "-L", "series",
                       "StudyInstanceUID=" + self.study_of_kind("mr"))
        self.assertEqual(len(found.stdout.strip().splitlines()),
                         len(self.pacs.uid_tree()[self.study_of_kind("mr")]))
        bad = db.cli("find", "NoSuchKeyword=1", check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("unknown attribute", bad.stderr)


if __name__ == "__main__":
    unittest.main()
