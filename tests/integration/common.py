"""Shared set-up of the integration tests: a PACS (Orthanc) loaded with
the small generated set, and helpers to compare drimbox with it.

The small set is generated once per build directory (deterministic) under
$DRIMBOX_TEST_TMP, each test module gets its own Orthanc and drimboxd.
"""

import fcntl
import io
import os
import unittest
from pathlib import Path

import pydicom

import harness

TMP_ROOT = Path(os.environ.get("DRIMBOX_TEST_TMP", "/tmp/drimbox-tests"))


def small_set():
    """Path of the generated small set (made once, reused; test modules
    running in parallel wait for the one generating it)."""
    out = TMP_ROOT / "small-set"
    TMP_ROOT.mkdir(parents=True, exist_ok=True)
    with open(TMP_ROOT / "small-set.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "manifest.json").exists():
            harness.generate_studies("small", out)
    return out


def part10_dataset(data):
    """(transfer syntax, dataset bytes) of a Part 10 file: what a
    bit-preserving store must keep, whatever meta header each side wrote."""
    if data[128:132] != b"DICM":
        raise ValueError("not a Part 10 file")
    # (0002,0000) UL group length is the first meta element, explicit VR LE.
    group_len = int.from_bytes(data[140:144], "little")
    end = 144 + group_len
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    return str(meta.TransferSyntaxUID), data[end:]


def index_tree(ls):
    """{study: {series: set(sops)}} from `drimbox ls --json`."""
    return {st["study_uid"]: {se["series_uid"]: {i["sop_uid"] for i in se["instances"]}
                              for se in st["series"]}
            for st in ls}


def cached_paths(ls):
    """{sop_uid: relative cache path} of the cached instances."""
    return {i["sop_uid"]: i["path"] for st in ls for se in st["series"]
            for i in se["instances"] if i["cached"]}


def files_under(root):
    """Relative paths of the instance files under root (STUDY/SERIES/SOP.dcm;
    the cache's own .tmp/ and marker file are not instances)."""
    root = Path(root)
    return {str(p.relative_to(root)) for p in root.glob("*/*/*") if p.is_file()}


class PacsTestCase(unittest.TestCase):
    """Starts one Orthanc loaded with the small set for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("drimbox-it-")
        cls.dir = cls.tmp.__enter__()
        cls.data = small_set()
        cls.manifest = harness.read_manifest(cls.data)
        cls.pacs = harness.Orthanc(cls.dir / "orthanc").start()
        cls.pacs.load_dir(cls.data)

    @classmethod
    def tearDownClass(cls):
        cls.pacs.stop()
        cls.tmp.__exit__(None, None, None)

    def drimbox(self, name, **kw):
        """A started drimboxd on this PACS, stopped after the test."""
        db = harness.Drimbox(self.dir / name, pacs=self.pacs, **kw).start()
        self.addCleanup(db.stop)
        return db

    def study_of_kind(self, kind):
        """UID of the manifest's study of a kind ('ct', 'ct-jls', 'mr'...)."""
        for st in self.manifest["studies"]:
            if st["key"] == kind:
                return st["study_uid"]
        raise KeyError(kind)
