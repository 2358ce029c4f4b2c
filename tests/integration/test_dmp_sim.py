"""The DMP simulator speaks the DMP's protocol and checks what it gets:
the ANS validator's ITI-41 sample (with a real KOS attached over MTOM) is
registered, found by ITI-18, retrieved by ITI-43, replaced (RPLC) and
deleted (ITI-57); broken framing, addressing, VIHF and metadata are refused
with the registry's errors; injected faults happen when asked.
"""

import base64
import copy
import hashlib
import io
import unittest
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import harness
from harness import DmpSim, TempDir
from shared import shared_dir

SAMPLE = (shared_dir() / "drim-m-data" / "echantillons-validateurs" / "validateur-xds"
          / "XDS.xml")
NS = {"soap": "http://www.w3.org/2003/05/soap-envelope",
      "wsa": "http://www.w3.org/2005/08/addressing",
      "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
      "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
      "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0",
      "xds": "urn:ihe:iti:xds-b:2007",
      "saml2": "urn:oasis:names:tc:SAML:2.0:assertion"}
ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
PATIENT = "162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH"
UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
for _p, _u in NS.items():
    ET.register_namespace(_p, _u)


def kos_bytes(study_uid):
    """A minimal Key Object Selection file."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.59"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.Modality = "KO"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, write_like_original=False)
    return out.getvalue()


def q(tag):
    prefix, name = tag.split(":")
    return "{%s}%s" % (NS[prefix], name)


def set_slot(obj, name, value):
    for slot in obj.findall("rim:Slot", NS):
        if slot.get("name") == name:
            slot.find("rim:ValueList/rim:Value", NS).text = value


def set_external_id(obj, scheme, value):
    for e in obj.findall("rim:ExternalIdentifier", NS):
        if e.get("identificationScheme") == scheme:
            e.set("value", value)


class Request:
    """The ANS ITI-41 sample, made submittable: fresh unique ids, a real
    KOS and a signature part attached over MTOM, their sizes and hashes."""

    def __init__(self):
        self.env = ET.parse(SAMPLE).getroot()
        self.kos = kos_bytes(generate_uid())
        self.unique_id = "1.2.250.1.999.%d" % uuid.uuid4().int
        body = self.env.find("soap:Body/xds:ProvideAndRegisterDocumentSetRequest", NS)
        objects = body.find("{%s}SubmitObjectsRequest/rim:RegistryObjectList"
                            % "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0", NS)
        self.objects = objects
        # an IHE DSG signature whose manifest names the KOS (the simulator
        # checks the digests; it verifies the signature only with --trust)
        self.signature = (
            '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:Object>'
            '<ds:Manifest Id="IHEManifest"><ds:Reference URI="urn:oid:%s"><ds:DigestValue>'
            '%s</ds:DigestValue></ds:Reference></ds:Manifest></ds:Object></ds:Signature>'
            % (self.unique_id, base64.b64encode(hashlib.sha256(self.kos).digest()).decode())
        ).encode()
        for entry in objects.findall("rim:ExtrinsicObject", NS):
            data = self.kos if entry.get("id") == "DocumentKOS" else self.signature
            set_slot(entry, "size", str(len(data)))
            set_slot(entry, "hash", hashlib.sha1(data).hexdigest())
            set_external_id(entry, UNIQUE_ID, self.unique_id if entry.get("id") ==
                            "DocumentKOS" else "1.2.250.1.999.%d" % uuid.uuid4().int)
        package = objects.find("rim:RegistryPackage", NS)
        set_external_id(package, SS_UNIQUE_ID, "1.2.250.1.999.%d" % uuid.uuid4().int)
        self.header = self.env.find("soap:Header", NS)

    def entry(self, eid="DocumentKOS"):
        return next(e for e in self.objects.findall("rim:ExtrinsicObject", NS)
                    if e.get("id") == eid)

    def replaces(self, target_uuid):
        assoc = ET.SubElement(self.objects, q("rim:Association"), {
            "associationType": "urn:ihe:iti:2007:AssociationType:RPLC",
            "id": "rplc1", "sourceObject": "DocumentKOS", "targetObject": target_uuid})
        return assoc

    def mtom(self, action=ITI41, parts=None):
        """(Content-Type, body)."""
        xml = ET.tostring(self.env, encoding="utf-8", xml_declaration=True)
        return mtom(xml, action, {"0.2": self.kos, "0.3": self.signature}
                    if parts is None else parts)


def mtom(xml, action, parts):
    boundary = "MIMEBoundary_%s" % uuid.uuid4().hex
    out = [b"--%s\r\nContent-Type: application/xop+xml; charset=UTF-8; "
           b'type="application/soap+xml"\r\nContent-Transfer-Encoding: binary\r\n'
           b"Content-ID: <root.message@cxf.apache.org>\r\n\r\n" % boundary.encode(), xml, b"\r\n"]
    for cid, data in parts.items():
        out += [b"--%s\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: binary\r\nContent-ID: <%s>\r\n\r\n"
                % (boundary.encode(), cid.encode()), data, b"\r\n"]
    out.append(b"--%s--\r\n" % boundary.encode())
    ctype = ('multipart/related; type="application/xop+xml"; boundary="%s"; '
             'start="<root.message@cxf.apache.org>"; start-info="application/soap+xml"; '
             'action="%s"' % (boundary, action))
    return ctype, b"".join(out)


def soap(header_of, action, body_elem):
    """A plain SOAP 1.2 request with the sample's VIHF header."""
    env = ET.Element(q("soap:Envelope"))
    header = copy.deepcopy(header_of)
    header.find("wsa:Action", NS).text = action
    header.find("wsa:MessageID", NS).text = "urn:uuid:%s" % uuid.uuid4()
    env.append(header)
    ET.SubElement(env, q("soap:Body")).append(body_elem)
    return ('application/soap+xml; charset=UTF-8; action="%s"' % action,
            ET.tostring(env, encoding="utf-8", xml_declaration=True))


def stored_query(query_id, **params):
    req = ET.Element(q("query:AdhocQueryRequest"))
    ET.SubElement(req, q("query:ResponseOption"), returnType="LeafClass",
                  returnComposedObjects="true")
    query = ET.SubElement(req, q("rim:AdhocQuery"), id=query_id)
    for name, value in params.items():
        slot = ET.SubElement(query, q("rim:Slot"), name=name)
        ET.SubElement(ET.SubElement(slot, q("rim:ValueList")), q("rim:Value")).text = value
    return req


class DmpSimTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir("drimbox-dmpsim-")
        cls.sim = DmpSim(cls.tmp.__enter__() / "sim").start()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        cls.tmp.__exit__(None, None, None)

    def post(self, service, ctype_body):
        ctype, body = ctype_body
        req = urllib.request.Request(self.sim.service_url(service), data=body,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers.get("Content-Type"), resp.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers.get("Content-Type"), e.read()

    def registry_status(self, answer):
        status, _, body = answer
        self.assertEqual(status, 200, body[:500])
        resp = ET.fromstring(body).find("soap:Body/rs:RegistryResponse", NS)
        errors = [e.get("errorCode") for e in resp.iter("{%s}RegistryError" % NS["rs"])]
        return resp.get("status").rsplit(":", 1)[1], errors

    def publish(self, request):
        return self.registry_status(self.post("repository", request.mtom()))

    def find(self, request):
        answer = self.post("registry", soap(request.header, ITI18, stored_query(
            "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
            **{"$XDSDocumentEntryPatientId": "'%s'" % PATIENT,
               "$XDSDocumentEntryStatus":
                   "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"})))
        self.assertEqual(answer[0], 200)
        return ET.fromstring(answer[2]).findall(".//rim:ExtrinsicObject", NS)

    def test_sample_is_registered_found_retrieved_replaced_and_deleted(self):
        first = Request()
        self.assertEqual(self.publish(first), ("Success", []))
        found = [e for e in self.find(first) if e.get("mimeType") == "application/dicom"]
        mine = [e for e in found if any(x.get("value") == first.unique_id
                                        for x in e.findall("rim:ExternalIdentifier", NS))]
        self.assertEqual(len(mine), 1)
        entry_uuid = mine[0].get("id")
        # ITI-43: the KOS comes back over MTOM, byte for byte
        req = ET.Element(q("xds:RetrieveDocumentSetRequest"))
        item = ET.SubElement(req, q("xds:DocumentRequest"))
        ET.SubElement(item, q("xds:RepositoryUniqueId")).text = "1.2.250.1.213.1.1.9"
        ET.SubElement(item, q("xds:DocumentUniqueId")).text = first.unique_id
        status, ctype, body = self.post("repository", soap(first.header, ITI43, req))
        self.assertEqual(status, 200)
        parts = harness.parse_multipart(ctype, body)
        self.assertEqual(parts[1][1], first.kos)
        # a new version replaces it (RPLC): the first becomes Deprecated
        second = Request()
        second.replaces(entry_uuid)
        self.assertEqual(self.publish(second), ("Success", []))
        docs = {d["unique_id"]: d for d in self.sim.control("documents")}
        self.assertTrue(docs[first.unique_id]["status"].endswith("Deprecated"))
        self.assertEqual(docs[second.unique_id]["replaces"], entry_uuid)
        # ITI-57: deletion
        second_uuid = docs[second.unique_id]["entry_uuid"]
        update = ET.Element("{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}SubmitObjectsRequest")
        objs = ET.SubElement(update, q("rim:RegistryObjectList"))
        assoc = ET.SubElement(objs, q("rim:Association"), {
            "associationType": "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus",
            "id": "u1", "sourceObject": "ss", "targetObject": second_uuid})
        for name, value in (("OriginalStatus",
                             "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"),
                            ("NewStatus", "urn:asip:ci-sis:2010:StatusType:Deleted")):
            slot = ET.SubElement(assoc, q("rim:Slot"), name=name)
            ET.SubElement(ET.SubElement(slot, q("rim:ValueList")), q("rim:Value")).text = value
        self.assertEqual(self.registry_status(self.post("registry",
                                                        soap(first.header, ITI57, update))),
                         ("Success", []))
        docs = {d["unique_id"]: d for d in self.sim.control("documents")}
        self.assertTrue(docs[second.unique_id]["status"].endswith("Deleted"))

    def test_bad_metadata_and_documents_get_registry_errors(self):
        r = Request()
        set_slot(r.entry(), "hash", "00" * 20)
        self.assertEqual(self.publish(r), ("Failure", ["XDSNonIdenticalHash"]))
        r = Request()
        r.entry().remove(next(c for c in r.entry().findall("rim:Classification", NS)
                              if c.get("nodeRepresentation") == "IMG-KOS"))
        self.assertEqual(self.publish(r), ("Failure", ["XDSRegistryMetadataError"]))
        r = Request()
        r.signature = r.signature.replace(b"</ds:DigestValue>", b"AA</ds:DigestValue>")
        for entry in r.objects.findall("rim:ExtrinsicObject", NS):
            if entry.get("id") == "Signature01":
                set_slot(entry, "size", str(len(r.signature)))
                set_slot(entry, "hash", hashlib.sha1(r.signature).hexdigest())
        self.assertEqual(self.publish(r), ("Failure", ["XDSNonIdenticalHash"]))
        r = Request()
        r.kos = b"not dicom at all"
        set_slot(r.entry(), "size", str(len(r.kos)))
        set_slot(r.entry(), "hash", hashlib.sha1(r.kos).hexdigest())
        self.assertEqual(self.publish(r), ("Failure", ["XDSRegistryMetadataError"]))
        r = Request()
        r.replaces("urn:uuid:%s" % uuid.uuid4())
        self.assertEqual(self.publish(r), ("Failure", ["XDSUnknownDocument"]))
        r = Request()
        self.assertEqual(self.publish(r), ("Success", []))
        self.assertEqual(self.publish(r), ("Failure", ["XDSDuplicateUniqueIdInRegistry"]))

    def test_bad_framing_addressing_and_vihf_get_soap_faults(self):
        r = Request()
        ctype, body = r.mtom()
        cases = [
            (ctype.replace('start="<root.message@cxf.apache.org>"', 'start="<nope>"'), body),
            (ctype, body.replace(b"cid:0.2", b"cid:missing")),
            (ctype.replace(ITI41, ITI18), body),
            ("text/plain", b"hello"),
        ]
        for ctype_, body_ in cases:
            status, _, answer = self.post("repository", (ctype_, body_))
            if status == 200:  # a registry error, not a fault, for a missing part
                self.assertIn(b"XDSMissingDocument", answer)
            else:
                self.assertEqual(status, 500)
                self.assertIn(b"Fault", answer)
        r = Request()
        r.header.remove(r.header.find("{%s}Security" % "http://docs.oasis-open.org/wss/2004/01/"
                                      "oasis-200401-wss-wssecurity-secext-1.0.xsd"))
        status, _, answer = self.post("repository", r.mtom())
        self.assertEqual(status, 500)
        self.assertIn(b"no VIHF", answer)

    def test_injected_faults(self):
        self.sim.control("faults", {"action": ITI41, "kind": "soap-fault", "count": 1})
        status, _, answer = self.post("repository", Request().mtom())
        self.assertEqual(status, 500)
        self.assertIn(b"injected", answer)
        self.assertEqual(self.publish(Request()), ("Success", []))  # count 1: over
        self.sim.control("faults", {"action": ITI41, "kind": "metadata-error", "count": 1})
        self.assertEqual(self.publish(Request()), ("Failure", ["XDSRegistryMetadataError"]))
        self.sim.control("faults", {"action": ITI41, "kind": "reset", "count": 1})
        with self.assertRaises((ConnectionError, urllib.error.URLError)):
            self.post("repository", Request().mtom())
        self.sim.control("faults", {"action": ITI41, "kind": "slow", "count": 1, "delay": 1})
        start = harness.time.monotonic()
        self.assertEqual(self.publish(Request()), ("Success", []))
        self.assertGreaterEqual(harness.time.monotonic() - start, 1)
        self.assertTrue(self.sim.running)


if __name__ == "__main__":
    unittest.main()
