"""DICOMweb interoperability with a third-party client: a second Orthanc
("the client"), declaring drimbox as a remote DICOMweb server in
DicomWeb.Servers, queries drimbox (QIDO-RS) and retrieves from it (WADO-RS)
through its DICOMweb plugin's REST API (/dicom-web/servers/drimbox/get and
/retrieve).  What lands in the client must be the PACS's instances, bit for
bit (dataset bytes and transfer syntax: the plugin asks for
transfer-syntax=*)."""

import unittest

import common
import harness

SERVER = "drimbox"
STUDY_UID = "0020000D"
SOP_UID = "00080018"


def uids(dicom_json, tag):
    """Set of the values of a UID attribute in a QIDO-RS answer."""
    return {item[tag]["Value"][0] for item in dicom_json}


class DicomwebOrthancClientTest(common.PacsTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = harness.Drimbox(cls.dir / "drimbox", pacs=cls.pacs).start()
        cls.db.cli("sync", "--all")
        servers = {SERVER: {"Url": cls.server_url() + "/"}}
        cls.client = harness.Orthanc(cls.dir / "client", aet="CLIENT",
                                     extra_config={"DicomWeb": {"Servers": servers}})
        cls.client.start()

    @classmethod
    def tearDownClass(cls):
        cls.client.stop()
        cls.db.stop()
        super().tearDownClass()

    @classmethod
    def server_url(cls):
        """DICOMweb root the client is pointed at: drimbox's."""
        return cls.db.dicomweb_url

    def client_call(self, operation, body):
        """POST /dicom-web/servers/drimbox/OPERATION to the client; on an
        error, fails with the tail of the client's log (the plugin's reason
        for a 500 is only there)."""
        try:
            return self.client.rest("POST", "/dicom-web/servers/%s/%s" % (SERVER, operation),
                                    body, timeout=120)
        except harness.HarnessError as e:
            self.fail("%s\n--- client Orthanc log (tail) ---\n%s"
                      % (e, harness.tail(self.client.log_path, 15)))

    def client_get(self, uri):
        """QIDO-RS through the client's plugin; parsed DICOM JSON."""
        return self.client_call("get", {"Uri": uri, "HttpHeaders":
                                        {"Accept": "application/dicom+json"}})

    def client_retrieve(self, resource):
        """WADO-RS of one resource ({"Study": uid[, "Series": uid]}) into
        the client (synchronous job)."""
        self.client_call("retrieve", {"Resources": [resource]})

    def assert_client_holds_pacs_copies(self, study_uid, sop_uids):
        """The client holds exactly sop_uids of the study, each with the
        PACS's transfer syntax and dataset bytes."""
        ours = self.client.instances_of_study(study_uid)
        self.assertEqual(set(ours), set(sop_uids))
        pacs = self.pacs.instances_of_study(study_uid)
        for sop, client_id in ours.items():
            self.assertEqual(common.part10_dataset(self.client.instance_file(client_id)),
                             common.part10_dataset(self.pacs.instance_file(pacs[sop])),
                             "instance %s differs from the PACS's copy" % sop)

    def test_qido_studies_lists_the_pacs_studies(self):
        self.assertEqual(uids(self.client_get("/studies"), STUDY_UID),
                         set(self.pacs.uid_tree()))

    def test_qido_instances_of_a_series(self):
        mr = self.study_of_kind("mr")
        series, sops = sorted(self.pacs.uid_tree()[mr].items())[0]
        answer = self.client_get("/studies/%s/series/%s/instances" % (mr, series))
        self.assertEqual(uids(answer, SOP_UID), sops)

    def test_wado_study_retrieve_lands_the_pacs_bytes(self):
        uid = self.study_of_kind("ct-jls")
        self.client_retrieve({"Study": uid})
        self.assert_client_holds_pacs_copies(
            uid, set().union(*self.pacs.uid_tree()[uid].values()))

    def test_wado_series_retrieve_lands_the_pacs_bytes(self):
        mr = self.study_of_kind("mr")
        tree = self.pacs.uid_tree()[mr]
        for series in sorted(tree):
            self.client_retrieve({"Study": mr, "Series": series})
        self.assert_client_holds_pacs_copies(mr, set().union(*tree.values()))


if __name__ == "__main__":
    unittest.main()
