"""DICOMweb served by drimboxd: QIDO-RS, WADO-RS retrieve, metadata,
frames and rendered images, Accept negotiation, and bad requests (never a
crash, never a 500 for a client error)."""

import concurrent.futures
import gzip
import io
import json
import socket
import unittest
import urllib.parse

import pydicom

import common
import harness

MULTI_DICOM = 'multipart/related; type="application/dicom"'
ELE = "1.2.840.10008.1.2.1"
JLS = "1.2.840.10008.1.2.4.80"


def dataset_of(part):
    """The pydicom dataset of a retrieved part."""
    return pydicom.dcmread(io.BytesIO(part))


class DicomwebTest(common.PacsTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = harness.Drimbox(cls.dir / "db", pacs=cls.pacs).start()
        cls.db.cli("sync", "--all")
        cls.url = cls.db.dicomweb_url
        cls.tree = cls.pacs.uid_tree()

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        super().tearDownClass()

    def get(self, path, accept=None, headers=None):
        h = dict(headers or {})
        if accept is not None:
            h["Accept"] = accept
        return harness.http_get(self.url + path, headers=h)

    def get_json(self, path, status=200):
        code, hdr, body = self.get(path)
        self.assertEqual(code, status, body[:300])
        return json.loads(body)

    def multipart(self, path, accept):
        code, hdr, body = self.get(path, accept)
        self.assertEqual(code, 200, body[:300])
        if "content-length" in hdr:  # declared when every part is sent as stored
            self.assertEqual(int(hdr["content-length"]), len(body))
        return harness.parse_multipart(hdr["content-type"], body)

    def first_series(self, kind):
        study = self.study_of_kind(kind)
        return study, sorted(self.tree[study])[0]

    # ---- QIDO-RS ---------------------------------------------------------

    def test_qido_studies_lists_what_the_pacs_holds(self):
        studies = self.get_json("/studies")
        self.assertEqual({s["0020000D"]["Value"][0] for s in studies}, set(self.tree))
        one = studies[0]
        for tag in ("00100010", "00080020", "00081190", "00201208"):
            self.assertIn(tag, one)
        self.assertTrue(one["00081190"]["Value"][0].startswith(self.url + "/studies/"))

    def test_qido_series_and_instances_of_a_study(self):
        mr = self.study_of_kind("mr")
        series = self.get_json("/studies/%s/series" % mr)
        self.assertEqual({s["0020000E"]["Value"][0] for s in series}, set(self.tree[mr]))
        se = sorted(self.tree[mr])[0]
        inst = self.get_json("/studies/%s/series/%s/instances" % (mr, se))
        self.assertEqual({i["00080018"]["Value"][0] for i in inst}, self.tree[mr][se])
        all_inst = self.get_json("/studies/%s/instances" % mr)
        self.assertEqual(len(all_inst), sum(len(v) for v in self.tree[mr].values()))

    def test_qido_matching_by_keyword_tag_wildcard_range_and_uid_list(self):
        ct, jls = self.study_of_kind("ct"), self.study_of_kind("ct-jls")
        by_kw = self.get_json("/studies?PatientID=279035121518989")
        by_tag = self.get_json("/studies?00100020=279035121518989")
        self.assertEqual(len(by_kw), 2)
        self.assertEqual(by_kw, by_tag)
        self.assertEqual(len(self.get_json("/studies?PatientName=PAT-TR*")), 2)
        self.assertEqual(len(self.get_json("/studies?PatientName=PAT-TRO?S*")), 2)
        self.assertEqual(len(self.get_json("/studies?StudyDate=20240101-20240131")), 2)
        self.assertEqual(len(self.get_json("/studies?StudyDate=-20240116")), 2)
        self.assertEqual(len(self.get_json("/studies?StudyInstanceUID=%s,%s" % (ct, jls))), 2)
        self.assertEqual(len(self.get_json("/studies?ModalitiesInStudy=MR")), 1)
        self.assertEqual(self.get_json("/studies?AccessionNumber=NOPE"), [])

    def test_qido_fuzzy_matching_of_person_names(self):
        self.assertEqual(self.get_json("/studies?PatientName=dominique"), [])
        fuzzy = self.get_json("/studies?PatientName=domin&fuzzymatching=true")
        self.assertEqual(len(fuzzy), 2)
        self.assertEqual(len(self.get_json("/studies?PatientName=pat-trois&fuzzymatching=true")), 2)

    def test_qido_includefield_all_and_named(self):
        plain = self.get_json("/studies?PatientID=162018885045327")[0]
        self.assertNotIn("00100021", plain)
        named = self.get_json("/studies?PatientID=162018885045327&includefield=IssuerOfPatientID")[0]
        self.assertIn("00100021", named)
        everything = self.get_json("/studies?PatientID=162018885045327&includefield=all")[0]
        self.assertLessEqual(set(named), set(everything))
        ct, se = self.first_series("ct")
        inst = self.get_json("/studies/%s/series/%s/instances?includefield=all&limit=1" % (ct, se))
        self.assertEqual(inst[0]["00280010"]["Value"][0], 128)  # Rows, from the metadata

    def test_qido_limit_and_offset_page_through_results(self):
        ct, se = self.first_series("ct")
        path = "/studies/%s/series/%s/instances" % (ct, se)
        everything = [i["00080018"]["Value"][0] for i in self.get_json(path)]
        pages = []
        for offset in range(0, len(everything), 7):
            pages += [i["00080018"]["Value"][0]
                      for i in self.get_json(path + "?limit=7&offset=%d" % offset)]
        self.assertEqual(pages, everything)
        self.assertEqual(self.get_json(path + "?offset=%d" % len(everything)), [])

    # ---- WADO-RS -----------------------------------------------------------

    def test_wado_study_as_stored_equals_the_originals(self):
        jls = self.study_of_kind("ct-jls")
        self.db.cli("fetch", jls)  # whatever ran before
        code, hdr, _ = self.get("/studies/" + jls, MULTI_DICOM + "; transfer-syntax=*")
        self.assertIn("content-length", hdr)  # cached and as stored: length known
        parts = self.multipart("/studies/" + jls, MULTI_DICOM + "; transfer-syntax=*")
        self.assertEqual(len(parts), sum(len(v) for v in self.tree[jls].values()))
        pacs_ids = self.pacs.instances_of_study(jls)
        for headers, body in parts:
            self.assertIn("transfer-syntax=" + JLS, headers["content-type"])
            sop = dataset_of(body).SOPInstanceUID
            self.assertEqual(common.part10_dataset(body),
                             common.part10_dataset(self.pacs.instance_file(pacs_ids[sop])))

    def test_wado_quoted_and_unquoted_accept_parameters_are_equivalent(self):
        ct, se = self.first_series("ct")
        path = "/studies/%s/series/%s" % (ct, se)
        quoted = self.multipart(path, 'multipart/related; type="application/dicom"; '
                                      'transfer-syntax="*"')
        unquoted = self.multipart(path, "multipart/related;type=application/dicom;"
                                        "transfer-syntax=*")
        self.assertEqual([b for _, b in quoted], [b for _, b in unquoted])

    def test_wado_transcodes_jpeg_ls_to_explicit_little_endian(self):
        jls, ct = self.study_of_kind("ct-jls"), self.study_of_kind("ct")
        parts = self.multipart("/studies/" + jls, MULTI_DICOM + "; transfer-syntax=" + ELE)
        originals = {}
        for _, body in self.multipart("/studies/" + ct, MULTI_DICOM + "; transfer-syntax=*"):
            ds = dataset_of(body)
            originals[int(ds.InstanceNumber)] = ds.PixelData
        for headers, body in parts:
            self.assertIn("transfer-syntax=" + ELE, headers["content-type"])
            ds = dataset_of(body)
            self.assertEqual(str(ds.file_meta.TransferSyntaxUID), ELE)
            self.assertEqual(ds.PixelData, originals[int(ds.InstanceNumber)])

    def test_wado_follows_the_ans_q_list(self):
        ct, se = self.first_series("ct")
        ans = ",".join('multipart/related; type="application/dicom";transfer-syntax=%s;'
                       "q=%s;boundary=**" % (ts, q)
                       for ts, q in (("1.2.840.10008.1.2.4.70", "0.9"),
                                     ("1.2.840.10008.1.2.4.80", "0.8"),
                                     ("1.2.840.10008.1.2.4.91", "0.6"),
                                     (ELE, "0.4"))) + ","
        parts = self.multipart("/studies/%s/series/%s" % (ct, se), ans)
        self.assertTrue(parts)
        for headers, _ in parts:
            self.assertIn("transfer-syntax=1.2.840.10008.1.2.4.70", headers["content-type"])

    def test_wado_default_transfer_syntax_is_explicit_little_endian(self):
        jls = self.study_of_kind("ct-jls")
        sop = sorted(self.pacs.instances_of_study(jls))[0]
        series = next(se for se, sops in self.tree[jls].items() if sop in sops)
        parts = self.multipart("/studies/%s/series/%s/instances/%s" % (jls, series, sop),
                               MULTI_DICOM)
        self.assertEqual(len(parts), 1)
        self.assertIn("transfer-syntax=" + ELE, parts[0][0]["content-type"])

    def test_wado_instance_has_an_etag_and_answers_304(self):
        ct, se = self.first_series("ct")
        self.db.cli("fetch", ct, "--series", se)  # the validators need the file
        path = "/studies/%s/series/%s/instances/%s" % (ct, se, sorted(self.tree[ct][se])[0])
        code, hdr, _ = self.get(path, MULTI_DICOM + "; transfer-syntax=*")
        self.assertEqual(code, 200)
        self.assertTrue(hdr["last-modified"].endswith(" GMT"), hdr)
        code, _, _ = self.get(path, MULTI_DICOM + "; transfer-syntax=*",
                              headers={"If-None-Match": hdr["etag"]})
        self.assertEqual(code, 304)

    def test_wado_answers_406_when_nothing_acceptable(self):
        ct, se = self.first_series("ct")
        for accept in ("text/html", MULTI_DICOM + "; transfer-syntax=1.2.3.4.5.6"):
            code, hdr, body = self.get("/studies/%s/series/%s" % (ct, se), accept)
            self.assertEqual(code, 406, accept)
            self.assertIn("error", json.loads(body))

    # ---- metadata ------------------------------------------------------------

    def test_metadata_of_a_study_with_bulk_data_uris_and_gzip(self):
        ct = self.study_of_kind("ct")
        meta = self.get_json("/studies/%s/metadata" % ct)
        self.assertEqual(len(meta), sum(len(v) for v in self.tree[ct].values()))
        pixel = meta[0]["7FE00010"]
        self.assertTrue(pixel["BulkDataURI"].startswith(self.url + "/studies/" + ct))
        code, hdr, body = self.get("/studies/%s/metadata" % ct,
                                   headers={"Accept-Encoding": "gzip"})
        self.assertEqual(hdr.get("content-encoding"), "gzip")
        self.assertEqual(json.loads(gzip.decompress(body)), meta)

    def test_instance_metadata_has_an_etag_and_answers_304(self):
        ct, se = self.first_series("ct")
        sop = sorted(self.tree[ct][se])[0]
        path = "/studies/%s/series/%s/instances/%s/metadata" % (ct, se, sop)
        code, hdr, _ = self.get(path)
        self.assertEqual(code, 200)
        code, _, body = self.get(path, headers={"If-None-Match": hdr["etag"]})
        self.assertEqual(code, 304)

    def test_bulkdata_of_native_pixel_data_and_refusal_for_encapsulated(self):
        ct, se = self.first_series("ct")
        sop = sorted(self.tree[ct][se])[0]
        base = "/studies/%s/series/%s/instances/%s" % (ct, se, sop)
        meta = self.get_json(base + "/metadata")[0]
        uri = meta["7FE00010"]["BulkDataURI"]
        code, hdr, body = harness.http_get(uri)
        self.assertEqual(code, 200)
        parts = harness.parse_multipart(hdr["content-type"], body)
        pixels = dataset_of(self.multipart(base, MULTI_DICOM + "; transfer-syntax=*")[0][1])
        self.assertEqual(parts[0][1], pixels.PixelData)
        code, hdr, body = harness.http_get(uri, headers={"Accept": "application/octet-stream"})
        self.assertEqual((code, body), (200, pixels.PixelData))
        jls, jse = self.first_series("ct-jls")
        jsop = sorted(self.tree[jls][jse])[0]
        self.assert_client_error("/studies/%s/series/%s/instances/%s/bulkdata/7FE00010"
                                 % (jls, jse, jsop), 400)
        self.assert_client_error(base + "/bulkdata/00091234", 404)
        self.assert_client_error(base + "/bulkdata/zz", 400)

    # ---- frames and rendered ---------------------------------------------------

    def frames(self, kind, frames, accept):
        study, se = self.first_series(kind)
        sop = sorted(self.tree[study][se])[0]
        return self.multipart("/studies/%s/series/%s/instances/%s/frames/%s"
                              % (study, se, sop, frames), accept)

    def test_native_frame_is_its_pixel_bytes(self):
        study, se = self.first_series("ct")
        sop = sorted(self.tree[study][se])[0]
        parts = self.frames("ct", "1", 'multipart/related; type="application/octet-stream"; '
                                       "transfer-syntax=*")
        self.assertEqual(len(parts), 1)
        self.assertIn("transfer-syntax=" + ELE, parts[0][0]["content-type"])
        ds = dataset_of(self.multipart("/studies/%s/series/%s/instances/%s" % (study, se, sop),
                                       MULTI_DICOM + "; transfer-syntax=*")[0][1])
        self.assertEqual(parts[0][1], ds.PixelData)

    def test_compressed_frame_is_its_codestream(self):
        parts = self.frames("ct-jls", "1", "multipart/related; type=application/octet-stream; "
                                           "transfer-syntax=*")
        self.assertIn("transfer-syntax=" + JLS, parts[0][0]["content-type"])
        self.assertEqual(parts[0][1][:4], b"\xff\xd8\xff\xf7")
        native = self.frames("ct-jls", "1", 'multipart/related; type="application/octet-stream"')
        self.assertEqual(len(native[0][1]), 128 * 128 * 2)

    def test_multi_frame_frame_list(self):
        parts = self.frames("us", "1,3,5", "multipart/related; type=application/octet-stream; "
                                            "transfer-syntax=*")
        self.assertEqual(len(parts), 3)
        self.assertEqual(len({body for _, body in parts}), 3)
        for _, body in parts:
            self.assertEqual(body[:2], b"\xff\xd8")  # JPEG baseline fragments

    def test_frame_out_of_range_is_a_client_error(self):
        study, se = self.first_series("us")
        sop = sorted(self.tree[study][se])[0]
        for frames in ("99", "0", "1,x", "1,,2"):
            code, _, body = self.get("/studies/%s/series/%s/instances/%s/frames/%s"
                                     % (study, se, sop, frames))
            self.assertEqual(code, 400, frames)
            self.assertIn("error", json.loads(body))

    def test_rendered_jpeg_and_png_with_viewport_and_window(self):
        study, se = self.first_series("ct")
        sop = sorted(self.tree[study][se])[0]
        base = "/studies/%s/series/%s/instances/%s" % (study, se, sop)
        code, hdr, body = self.get(base + "/rendered?window=40,400&quality=80")
        self.assertEqual((code, hdr["content-type"], body[:2]), (200, "image/jpeg", b"\xff\xd8"))
        code, hdr, body = self.get(base + "/rendered?viewport=64,64", "image/png")
        self.assertEqual((code, hdr["content-type"]), (200, "image/png"))
        self.assertEqual(body[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual((int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")),
                         (64, 64))
        code, hdr, body = self.get("/studies/%s/thumbnail" % self.study_of_kind("dx"))
        self.assertEqual((code, body[:2]), (200, b"\xff\xd8"))
        self.assertEqual(self.get(base + "/rendered?window=abc")[0], 400)
        # frame level: a frame of the multi-frame ultrasound, and its thumbnail
        us = self.study_of_kind("us")
        us_se = next(iter(self.tree[us]))
        frame = "/studies/%s/series/%s/instances/%s/frames/3" % (
            us, us_se, next(iter(self.tree[us][us_se])))
        for what in ("/rendered", "/thumbnail"):
            code, hdr, body = self.get(frame + what)
            self.assertEqual((code, hdr["content-type"], body[:2]),
                             (200, "image/jpeg", b"\xff\xd8"), what)
        self.assert_client_error(frame.replace("frames/3", "frames/99") + "/rendered")

    def test_an_uncached_instance_is_asked_for_on_its_own(self):
        """A frame of an instance not in the cache: the instance is
        retrieved alone (a viewer's first image does not wait for its whole
        series), and the series follows."""
        db = self.drimbox("cold", aet="DRIMCOLD")  # the PACS knows DRIMBOX as cls.db
        db.cli("sync", "--all")
        study, se = self.first_series("ct")
        sop = sorted(self.tree[study][se])[7]
        code, hdr, body = harness.http_get(
            "%s/studies/%s/series/%s/instances/%s/frames/1/rendered" % (
                db.dicomweb_url, study, se, sop), headers={"Accept": "image/jpeg"})
        self.assertEqual((code, body[:2]), (200, b"\xff\xd8"))
        self.assertTrue(harness.wait_until(lambda: "instance=" + sop in db.log_text(), 10),
                        "no retrieval of the instance alone")
        self.assertTrue(harness.wait_until(
            lambda: all(i["cached"] for st in db.ls() if st["study_uid"] == study
                        for s in st["series"] if s["series_uid"] == se
                        for i in s["instances"]), 30), "the series was not retrieved")

    def test_rendered_series_is_every_instance(self):
        mr, se = self.first_series("mr")
        parts = self.multipart("/studies/%s/series/%s/rendered?viewport=32,32" % (mr, se),
                               'multipart/related; type="image/jpeg"')
        self.assertEqual(len(parts), len(self.tree[mr][se]))
        for headers, body in parts:
            self.assertEqual((headers["content-type"], body[:2]), ("image/jpeg", b"\xff\xd8"))

    # ---- bad requests ------------------------------------------------------------

    def assert_client_error(self, path, status=None, **kw):
        code, hdr, body = self.get(path, **kw)
        self.assertTrue(400 <= code < 500, "%s -> %d" % (path, code))
        if status is not None:
            self.assertEqual(code, status, path)
        self.assertIn("error", json.loads(body), path)

    def test_bad_requests_get_a_json_4xx(self):
        ct = self.study_of_kind("ct")
        self.assert_client_error("/studies/1.2.abc", 400)
        self.assert_client_error("/studies/" + ct + "/series/..", 400)
        self.assert_client_error("/studies/%2e%2e/%2e%2e/etc/passwd")
        self.assert_client_error("/../../etc/passwd")
        self.assert_client_error("/nothing", 404)
        self.assert_client_error("/studies?limit=-1", 400)
        self.assert_client_error("/studies?limit=99999999999999999999", 400)
        self.assert_client_error("/studies?offset=x", 400)
        self.assert_client_error("/studies?includefield=NoSuchAttribute", 400)
        self.assert_client_error("/studies?NoSuchKey=1", 400)
        self.assert_client_error("/studies?StudyDate=2024", 400)
        self.assert_client_error("/studies/1.2.3.4.5.6.7.8.9", 404)
        self.assert_client_error("/studies?PatientID=" + "x" * 5000)
        self.assert_client_error("/studies", 431, headers={"X-Big": "y" * 20000})
        # past its 64 KiB connection pool libmicrohttpd answers 431 itself
        self.assertEqual(self.get("/studies", headers={"X-Big": "y" * 70000})[0], 431)
        self.assertTrue(self.db.running())

    def test_unknown_study_is_404_and_the_daemon_stays_up(self):
        code, _, body = self.get("/studies/1.2.3.999/metadata")
        self.assertEqual(code, 404)
        raw = socket.create_connection(("127.0.0.1", self.db.settings["http_port"]))
        raw.sendall(b"GARBAGE / HTTP/9.9\r\n\r\n")
        raw.recv(1024)
        raw.close()
        self.assertEqual(self.get("/studies")[0], 200)


class ColdStudyTest(common.PacsTestCase):
    """A study not in the cache is streamed as the PACS delivers it."""

    def test_wado_of_an_uncached_study_streams_it_from_the_pacs(self):
        db = self.drimbox("db-cold")
        mr = self.study_of_kind("mr")  # never synced, never fetched
        code, hdr, body = harness.http_get(
            db.dicomweb_url + "/studies/" + mr,
            headers={"Accept": MULTI_DICOM + "; transfer-syntax=*"})
        self.assertEqual(code, 200, body[:300])
        parts = harness.parse_multipart(hdr["content-type"], body)
        sops = {dataset_of(b).SOPInstanceUID for _, b in parts}
        self.assertEqual(sops, set().union(*self.pacs.uid_tree()[mr].values()))
        # the stream does not wait for the index: the last rows are
        # committed as (or just after) the last part goes out
        self.assertTrue(harness.wait_until(
            lambda: len(common.cached_paths(db.ls())) == len(sops), 30),
            "not every streamed instance was cached")
        pacs_ids = self.pacs.instances_of_study(mr)
        for _, body in parts:  # sent from where it landed, bytes intact
            self.assertEqual(common.part10_dataset(body), common.part10_dataset(
                self.pacs.instance_file(pacs_ids[dataset_of(body).SOPInstanceUID])))

    def test_uncached_study_is_transcoded_as_it_arrives(self):
        db = self.drimbox("db-cold-jls")
        jls = self.study_of_kind("ct-jls")
        parts = harness.parse_multipart(*self.wado(db, jls, MULTI_DICOM + "; transfer-syntax=" + ELE))
        self.assertEqual(len(parts), sum(len(v) for v in self.pacs.uid_tree()[jls].values()))
        for headers, body in parts:
            self.assertIn("transfer-syntax=" + ELE, headers["content-type"])
            self.assertEqual(str(dataset_of(body).file_meta.TransferSyntaxUID), ELE)

    def wado(self, db, study, accept):
        """(Content-Type, body) of a 200 WADO-RS of a study."""
        code, hdr, body = harness.http_get(db.dicomweb_url + "/studies/" + study,
                                           headers={"Accept": accept})
        self.assertEqual(code, 200, body[:300])
        return hdr["content-type"], body

    def test_concurrent_requests_for_a_cold_study_share_one_retrieval(self):
        db = self.drimbox("db-shared")
        ct = self.study_of_kind("ct")
        url = db.dicomweb_url + "/studies/" + ct
        accept = {"Accept": MULTI_DICOM + "; transfer-syntax=*"}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: harness.http_get(url, headers=accept), range(4)))
        expected = set().union(*self.pacs.uid_tree()[ct].values())
        for code, hdr, body in answers:
            self.assertEqual(code, 200)
            parts = harness.parse_multipart(hdr["content-type"], body)
            self.assertEqual({dataset_of(b).SOPInstanceUID for _, b in parts}, expected)
        self.assertEqual(db.log_text().count("retrieve study=" + ct), 1)


if __name__ == "__main__":
    unittest.main()
