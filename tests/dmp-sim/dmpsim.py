#!/usr/bin/python3
"""dmpsim: a DMP simulator for drimbox's tests and demo.

The DMP (the national shared medical record) cannot be reached from a test
bench, so this server plays it on loopback, speaking what the DMP speaks:
SOAP 1.2 with WS-Addressing, MTOM/XOP, ebRIM 3.0 (IHE XDS.b), under the
DMP's service paths (/si-dmp-server/v2/services/{repository, registry,
patients, habilitations}).

Transactions:
  repository  ITI-41 ProvideAndRegisterDocumentSet-b (TD2.1, publication;
              RPLC associations replace), ITI-43 RetrieveDocumentSet (TD3.2)
  registry    ITI-18 RegistryStoredQuery (TD3.1): FindDocuments,
              FindDocumentsByReferenceId, GetDocuments; ITI-57
              UpdateDocumentSet (deletion: status
              urn:asip:ci-sis:2010:StatusType:Deleted)
  patients    TD0.2 (the patient's DMP exists and is open)
  habilitations TD0.3 (authorisation added)

It checks what it receives the way a registry does and answers with the
registry's errors: MTOM framing (start part, xop:Include references),
WS-Addressing Action (header, and the Content-Type's action) and
MessageID, the VIHF (a SAML 2 assertion in wsse:Security, signed, with the
attributes the DMP requires), the XDS metadata of every document entry and
of the submission set, the document's size and SHA-1, and that a KOS
(application/dicom) parses as a Key Object Selection document.

Documents are kept in SQLite (--db). Faults are injected on demand for the
next N requests of an action, through a control endpoint (JSON):
  POST /_sim/faults {"action": "urn:...", "kind": KIND, "count": N,
                     "delay": SECONDS}
  KIND: soap-fault | metadata-error | slow (before processing) |
        slow-reply (after processing: the client may give up) | reset |
        closed-dmp
  GET  /_sim/documents   every stored document's metadata, as JSON
  GET  /_sim/requests    the requests received (action, outcome, seconds
                         taken to answer, subject: the VIHF's NameID and
                         role codes), as JSON
  POST /_sim/reset       forget documents, requests and faults

With --trust PEM, the VIHF's signature is verified against those
certificates (in process, Debian package "python3-xmlsec", as a registry
does: no process per request), and so is a submission set's signature
(the xmlsec1 command, package "xmlsec1"); without, only their presence is
checked.

With --tls-cert/--tls-key it serves HTTPS (TLS 1.2+), and with --tls-ca
it requires a client certificate from that CA, as the DMP does.

usage: dmpsim.py --port PORT --db FILE [--bind ADDR] [--trust PEM]
                 [--tls-cert PEM --tls-key PEM [--tls-ca PEM]]
"""

import argparse
import base64
import email.parser
import email.policy
import hashlib
import io
import json
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lxml.etree
import pydicom
import xmlsec

NS = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
    "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0",
    "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0",
    "xds": "urn:ihe:iti:xds-b:2007",
    "xop": "http://www.w3.org/2004/08/xop/include",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
TD02 = "urn:hl7-org:v3:PRPA_IN201307UV02"
TD03 = "urn:asip:dmp:setAuthorization"
SERVICES = {  # path -> actions it answers
    "repository": {ITI41, ITI43},
    "registry": {ITI18, ITI57},
    "patients": {TD02},
    "habilitations": {TD03},
}

STABLE_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SCHEME = {  # document entry classifications and identifiers
    "classCode": "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
    "typeCode": "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
    "formatCode": "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
    "confidentialityCode": "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
    "healthcareFacilityTypeCode": "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
    "practiceSettingCode": "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
    "eventCodeList": "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4",
    "author": "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d",
    "patientId": "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
    "uniqueId": "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab",
    "ss.patientId": "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
    "ss.uniqueId": "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8",
    "ss.sourceId": "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832",
}
REQUIRED_CODES = ("classCode", "typeCode", "formatCode", "confidentialityCode",
                  "healthcareFacilityTypeCode", "practiceSettingCode")
REQUIRED_SLOTS = ("creationTime", "languageCode", "sourcePatientId")
KOS_SLOTS = ("sourcePatientInfo", "serviceStartTime")  # and for a KOS
VIHF_ATTRIBUTES = ("VIHF_Version", "Identifiant_Structure", "Secteur_Activite",
                   "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
                   "urn:oasis:names:tc:xacml:2.0:subject:role",
                   "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
                   "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
                   "Ressource_URN", "LPS_ID", "LPS_Nom", "LPS_Version",
                   "Authentification_Mode")
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_BY_REFERENCE = "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"


def q(tag):
    """'prefix:name' as ElementTree's {uri}name."""
    prefix, name = tag.split(":")
    return "{%s}%s" % (NS[prefix], name)


class Refusal(Exception):
    """What the registry answers instead of success."""

    def __init__(self, code, text, soap_fault=False):
        super().__init__(text)
        self.code, self.text, self.soap_fault = code, text, soap_fault


# ------------------------------------------------------------- storage

class Store:
    """Documents and the request log, in SQLite."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        self.db.executescript("""
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS documents (
                entry_uuid TEXT PRIMARY KEY, unique_id TEXT UNIQUE,
                patient_id TEXT, status TEXT, mime TEXT, class_code TEXT,
                type_code TEXT, reference_ids TEXT, metadata TEXT,
                content BLOB, submission_set TEXT, replaces TEXT,
                submitted_at REAL);
            CREATE TABLE IF NOT EXISTS requests (
                id INTEGER PRIMARY KEY, at REAL, action TEXT, outcome TEXT,
                detail TEXT, seconds REAL, subject TEXT);""")
        if "subject" not in [r[1] for r in self.db.execute("PRAGMA table_info(requests)")]:
            self.db.execute("ALTER TABLE requests ADD COLUMN subject TEXT")  # an older db

    def run(self, sql, args=()):
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def log(self, action, outcome, detail="", seconds=None, subject=None):
        self.run("INSERT INTO requests(at, action, outcome, detail, seconds, subject) "
                 "VALUES(?,?,?,?,?,?)",
                 (time.time(), action, outcome, detail, seconds, subject))


# ------------------------------------------------------------- parsing

def parse_body(content_type, body):
    """(SOAP envelope root, {cid: bytes}, action from Content-Type, the
    envelope's bytes) of a request, MTOM or plain SOAP 1.2; raises Refusal
    on bad framing."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    ctype = msg.get_content_type()
    params = dict(msg["content-type"].params)
    if ctype == "application/soap+xml":
        return parse_xml(body), {}, params.get("action"), body
    if ctype != "multipart/related":
        raise Refusal("InvalidRequest", "Content-Type %s is neither SOAP 1.2 nor MTOM"
                      % ctype, soap_fault=True)
    if params.get("type") != "application/xop+xml":
        raise Refusal("InvalidRequest", 'MTOM: type must be "application/xop+xml"',
                      soap_fault=True)
    parts = list(msg.iter_parts())
    if not parts:
        raise Refusal("InvalidRequest", "MTOM: no part", soap_fault=True)
    start = params.get("start")
    ids = {(p["content-id"] or "").strip("<>"): p for p in parts}
    root = ids.get(start.strip("<>")) if start else parts[0]
    if root is None:
        raise Refusal("InvalidRequest", "MTOM: no part has the start id %s" % start,
                      soap_fault=True)
    if root.get_content_type() != "application/xop+xml" or \
            dict(root["content-type"].params).get("type") != "application/soap+xml":
        raise Refusal("InvalidRequest", "MTOM: the root part is not "
                      'application/xop+xml; type="application/soap+xml"', soap_fault=True)
    attachments = {cid: p.get_payload(decode=True) for cid, p in ids.items() if p is not root}
    action = params.get("action") or dict(root["content-type"].params).get("action")
    xml = root.get_payload(decode=True)
    return parse_xml(xml), attachments, action, xml


def parse_xml(data):
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise Refusal("InvalidRequest", "the SOAP envelope is not XML: %s" % e,
                      soap_fault=True) from None


def check_envelope(env, service, ctype_action):
    """The WS-Addressing action (checked) and message id of an envelope."""
    if env.tag != q("soap:Envelope"):
        raise Refusal("VersionMismatch", "not a SOAP 1.2 envelope", soap_fault=True)
    header = env.find("soap:Header", NS)
    action = header.findtext("wsa:Action", namespaces=NS) if header is not None else None
    msg_id = header.findtext("wsa:MessageID", namespaces=NS) if header is not None else None
    if not action or not msg_id:
        raise Refusal("MessageAddressingHeaderRequired",
                      "WS-Addressing Action and MessageID are required", soap_fault=True)
    action = action.strip()
    if ctype_action and ctype_action != action:
        raise Refusal("ActionMismatch", "Content-Type action %s, wsa:Action %s"
                      % (ctype_action, action), soap_fault=True)
    if action not in SERVICES.get(service, ()):
        raise Refusal("ActionNotSupported", "%s is not served by %s" % (action, service),
                      soap_fault=True)
    return action, msg_id.strip()


class VihfVerifier:
    """Verifies the VIHF's enveloped signature in process (python3-xmlsec,
    the xmlsec1 library): the signing certificate, taken from KeyInfo,
    must chain to the trusted ones; only same-document references."""

    def __init__(self, trust):
        self.manager = xmlsec.KeysManager()
        self.manager.load_cert(trust, xmlsec.constants.KeyDataFormatPem,
                               xmlsec.constants.KeyDataTypeTrusted)
        self.lock = threading.Lock()

    def verify(self, body):
        """body: the raw SOAP envelope (what was signed); raises Refusal."""
        try:
            root = lxml.etree.fromstring(body, lxml.etree.XMLParser(resolve_entities=False,
                                                                    no_network=True))
        except lxml.etree.XMLSyntaxError as e:
            raise Refusal("InvalidSecurity", "the VIHF does not parse: %s" % e,
                          soap_fault=True) from None
        sigs = root.xpath("//*[local-name()='Assertion']/*[local-name()='Signature']")
        if not sigs:
            raise Refusal("InvalidSecurity", "the VIHF is not signed", soap_fault=True)
        for ref in sigs[0].iter("{%s}Reference" % NS["ds"]):
            if not (ref.get("URI") or "").startswith("#"):
                raise Refusal("InvalidSecurity", "the VIHF signature references %r"
                              % ref.get("URI"), soap_fault=True)
        ctx = xmlsec.SignatureContext(self.manager)
        ctx.register_id(sigs[0].getparent(), "ID")
        try:
            with self.lock:
                ctx.verify(sigs[0])
        except xmlsec.Error as e:
            raise Refusal("InvalidSecurity", "the VIHF signature does not verify: %s" % e,
                          soap_fault=True) from None


def verify_signature(body, trust):
    """xmlsec1 verifies a submission set's signature document (XAdES; its
    manifest's own digests are checked apart, which the command's
    --ignore-manifests allows and the Python binding does not); raises
    Refusal when it does not."""
    argv = ["--ignore-manifests", "--id-attr:Id", "Manifest",
            "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties"]
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        f.write(body)
        f.flush()
        out = subprocess.run(["xmlsec1", "--verify", "--enabled-reference-uris", "same-doc",
                              "--trusted-pem", trust] + argv + [f.name],
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise Refusal("XDSRegistryMetadataError",
                      "the submission set signature does not verify: %s"
                      % (out.stderr.strip().splitlines() or ["?"])[-1])


def check_vihf(env):
    """The VIHF: a signed SAML 2 assertion with the DMP's attributes."""
    assertion = env.find("soap:Header/wsse:Security/saml2:Assertion", NS)
    if assertion is None:
        raise Refusal("InvalidSecurity", "no VIHF (SAML assertion in wsse:Security)",
                      soap_fault=True)
    sig = assertion.find("ds:Signature", NS)
    if sig is None or not (sig.findtext("ds:SignatureValue", namespaces=NS) or "").strip():
        raise Refusal("InvalidSecurity", "the VIHF is not signed", soap_fault=True)
    names = {a.get("Name") for a in assertion.iter(q("saml2:Attribute"))}
    missing = [n for n in VIHF_ATTRIBUTES if n not in names]
    if missing:
        raise Refusal("InvalidSecurity", "VIHF attributes missing: %s" % ", ".join(missing),
                      soap_fault=True)
    return {a.get("Name"): (a.findtext("saml2:AttributeValue", namespaces=NS) or "").strip()
            for a in assertion.iter(q("saml2:Attribute"))}


def vihf_subject(env):
    """Who the VIHF names: "NameID role-code role-code...", for the log."""
    assertion = env.find("soap:Header/wsse:Security/saml2:Assertion", NS)
    name = assertion.findtext("saml2:Subject/saml2:NameID", default="", namespaces=NS)
    roles = [el.get("code") for el in assertion.iter()
             if el.tag.endswith("}Role") and el.get("code")]
    return " ".join([name.strip()] + roles)


def slots(obj):
    return {s.get("name"): [v.text or "" for v in s.iter(q("rim:Value"))]
            for s in obj.findall("rim:Slot", NS)}


def classification(obj, scheme):
    for c in obj.findall("rim:Classification", NS):
        if c.get("classificationScheme") == scheme:
            return c
    return None


def external_id(obj, scheme):
    for e in obj.findall("rim:ExternalIdentifier", NS):
        if e.get("identificationScheme") == scheme:
            return e.get("value")
    return None


def metadata_error(text):
    return Refusal("XDSRegistryMetadataError", text)


# ------------------------------------------------------------- transactions

class Registry:

    def __init__(self, store, trust=None):
        self.store, self.trust = store, trust

    def provide_and_register(self, body, attachments, vihf):
        req = body.find("xds:ProvideAndRegisterDocumentSetRequest", NS)
        sor = req.find("lcm:SubmitObjectsRequest", NS) if req is not None else None
        objects = sor.find("rim:RegistryObjectList", NS) if sor is not None else None
        if objects is None:
            raise metadata_error("no SubmitObjectsRequest/RegistryObjectList")
        package = next((p for p in objects.findall("rim:RegistryPackage", NS)
                        if external_id(p, SCHEME["ss.uniqueId"])), None)
        if package is None:
            raise metadata_error("no submission set (RegistryPackage with a uniqueId)")
        ss_patient = external_id(package, SCHEME["ss.patientId"])
        if not ss_patient:
            raise metadata_error("the submission set has no patientId")
        if vihf.get("urn:oasis:names:tc:xacml:2.0:resource:resource-id") != ss_patient:
            raise metadata_error("the VIHF resource-id (%s) is not the submission set's "
                                 "patient (%s)"
                                 % (vihf.get("urn:oasis:names:tc:xacml:2.0:resource:resource-id"),
                                    ss_patient))
        documents = {d.get("id"): d for d in req.findall("xds:Document", NS)}
        entries = [e for e in objects.findall("rim:ExtrinsicObject", NS)]
        if not entries:
            raise metadata_error("no document entry")
        rows, replaced = [], []
        for entry in entries:
            rows.append(self.check_entry(entry, documents, attachments, ss_patient))
        for assoc in objects.findall("rim:Association", NS):
            if assoc.get("associationType") == RPLC:
                target = assoc.get("targetObject")
                found = self.store.run("SELECT status FROM documents WHERE entry_uuid = ?",
                                       (target,))
                if not found or found[0][0] != APPROVED:
                    raise Refusal("XDSUnknownDocument" if not found else "XDSRegistryError",
                                  "RPLC target %s is not an approved entry" % target)
                replaced.append(target)
        self.check_signatures(rows)
        now = time.time()
        for row in rows:
            row.update(submission_set=external_id(package, SCHEME["ss.uniqueId"]),
                       replaces=",".join(replaced) or None, submitted_at=now)
        with self.store.lock:
            cur = self.store.db
            cur.execute("BEGIN")
            try:
                for row in rows:
                    if cur.execute("SELECT 1 FROM documents WHERE unique_id = ?",
                                   (row["unique_id"],)).fetchall():
                        raise Refusal("XDSDuplicateUniqueIdInRegistry",
                                      "uniqueId %s already registered" % row["unique_id"])
                    row = {k: v for k, v in row.items() if k != "format_code"}
                    cur.execute("INSERT INTO documents VALUES(:entry_uuid, :unique_id, "
                                ":patient_id, :status, :mime, :class_code, :type_code, "
                                ":reference_ids, :metadata, :content, :submission_set, "
                                ":replaces, :submitted_at)", row)
                for target in replaced:
                    cur.execute("UPDATE documents SET status = ? WHERE entry_uuid = ?",
                                (DEPRECATED, target))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return registry_response(SUCCESS)

    def check_signatures(self, rows):
        """Each submission set signature (IHE DSG): its manifest's digests
        are those of the documents submitted with it, and with --trust its
        XML signature verifies."""
        unique = {r["unique_id"]: r["content"] for r in rows}
        for row in rows:
            if row["format_code"] != "http://www.w3.org/2000/09/xmldsig#":
                continue
            try:
                sig = ET.fromstring(row["content"])
            except ET.ParseError:
                raise metadata_error("the signature document is not XML") from None
            refs = sig.findall("ds:Object/ds:Manifest/ds:Reference", NS)
            if not refs:
                raise metadata_error("the signature has no IHEManifest")
            for ref in refs:
                target = (ref.get("URI") or "").replace("urn:oid:", "", 1)
                if target in unique and target != row["unique_id"]:
                    digest = base64.b64encode(hashlib.sha256(unique[target]).digest()).decode()
                    if (ref.findtext("ds:DigestValue", namespaces=NS) or "").strip() != digest:
                        raise Refusal("XDSNonIdenticalHash", "the signature's manifest digest "
                                      "of %s does not match the document" % target)
            if self.trust:
                verify_signature(row["content"], self.trust)

    def check_entry(self, entry, documents, attachments, ss_patient):
        eid = entry.get("id") or ""
        if entry.get("objectType") != STABLE_ENTRY:
            raise metadata_error("%s: objectType is not a stable document entry" % eid)
        s = slots(entry)
        for name in REQUIRED_SLOTS:
            if not s.get(name) or not s[name][0]:
                raise metadata_error("%s: slot %s missing" % (eid, name))
        codes = {}
        for name in REQUIRED_CODES:
            c = classification(entry, SCHEME[name])
            if c is None or not c.get("nodeRepresentation"):
                raise metadata_error("%s: %s missing" % (eid, name))
            codes[name] = c.get("nodeRepresentation")
        if classification(entry, SCHEME["author"]) is None:
            raise metadata_error("%s: author missing" % eid)
        patient = external_id(entry, SCHEME["patientId"])
        unique = external_id(entry, SCHEME["uniqueId"])
        if not patient or not unique:
            raise metadata_error("%s: patientId or uniqueId missing" % eid)
        if patient != ss_patient:
            raise Refusal("XDSPatientIdDoesNotMatch",
                          "%s: patientId %s, submission set %s" % (eid, patient, ss_patient))
        doc = documents.get(eid)
        if doc is None:
            raise Refusal("XDSMissingDocument", "%s: no Document for this entry" % eid)
        content = document_bytes(doc, attachments)
        if "size" in s and s["size"] and s["size"][0] != str(len(content)):
            raise metadata_error("%s: size %s, document has %d bytes"
                                 % (eid, s["size"][0], len(content)))
        if "hash" in s and s["hash"] and \
                s["hash"][0].lower() != hashlib.sha1(content).hexdigest():
            raise Refusal("XDSNonIdenticalHash", "%s: SHA-1 does not match" % eid)
        mime = entry.get("mimeType") or ""
        if mime == "application/dicom":
            for name in KOS_SLOTS:
                if not s.get(name) or not s[name][0]:
                    raise metadata_error("%s: slot %s missing (a KOS)" % (eid, name))
            try:
                ds = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
                sop_class = str(ds.SOPClassUID)
            except Exception as e:  # noqa: BLE001 - any parse failure
                raise metadata_error("%s: the KOS does not parse: %s" % (eid, e)) from None
            if sop_class != KOS_CLASS:
                raise metadata_error("%s: SOP class %s, not a KOS" % (eid, sop_class))
            if codes["formatCode"] != KOS_CLASS:
                raise metadata_error("%s: formatCode %s for a KOS" % (eid, codes["formatCode"]))
        return {"entry_uuid": eid if eid.startswith("urn:uuid:") else "urn:uuid:%s" % uuid.uuid4(),
                "unique_id": unique, "patient_id": patient, "status": APPROVED, "mime": mime,
                "class_code": codes["classCode"], "type_code": codes["typeCode"],
                "reference_ids": json.dumps(s.get("urn:ihe:iti:xds:2013:referenceIdList", [])),
                "metadata": ET.tostring(entry, encoding="unicode"), "content": content,
                "format_code": codes["formatCode"]}

    def stored_query(self, body):
        query = body.find("query:AdhocQueryRequest/rim:AdhocQuery", NS)
        if query is None:
            raise Refusal("XDSRegistryError", "no AdhocQuery")
        params = {}
        for slot in query.findall("rim:Slot", NS):
            params[slot.get("name")] = [v.text or "" for v in slot.iter(q("rim:Value"))]
        qid = query.get("id")
        rows = []
        if qid == FIND_DOCUMENTS:
            patient = unquote(params.get("$XDSDocumentEntryPatientId", [""])[0])
            if not patient:
                raise Refusal("XDSStoredQueryParamNumber", "$XDSDocumentEntryPatientId missing")
            rows = self.store.run("SELECT entry_uuid, status, class_code, type_code, metadata "
                                  "FROM documents WHERE patient_id = ?", (patient,))
            statuses = values(params.get("$XDSDocumentEntryStatus", [])) or [APPROVED]
            rows = [r for r in rows if r[1] in statuses]
            for key, col in (("$XDSDocumentEntryClassCode", 2), ("$XDSDocumentEntryTypeCode", 3)):
                wanted = [v.split("^")[0] for v in values(params.get(key, []))]
                if wanted:
                    rows = [r for r in rows if r[col] in wanted]
            rows = [(r[0], r[1], r[4]) for r in rows]
        elif qid == FIND_BY_REFERENCE:
            patient = unquote(params.get("$XDSDocumentEntryPatientId", [""])[0])
            refs = values(params.get("$XDSDocumentEntryReferenceIdList", []))
            if not patient or not refs:
                raise Refusal("XDSStoredQueryParamNumber",
                              "$XDSDocumentEntryPatientId and ReferenceIdList are required")
            found = self.store.run("SELECT entry_uuid, status, reference_ids, metadata FROM "
                                   "documents WHERE patient_id = ?", (patient,))
            rows = [(r[0], r[1], r[3]) for r in found if r[1] == APPROVED
                    and set(refs) & set(json.loads(r[2]))]
        elif qid == GET_DOCUMENTS:
            ids = values(params.get("$XDSDocumentEntryUniqueId", []))
            uuids = values(params.get("$XDSDocumentEntryEntryUUID", []))
            found = self.store.run("SELECT entry_uuid, status, unique_id, metadata FROM documents")
            rows = [(r[0], r[1], r[3]) for r in found if r[2] in ids or r[0] in uuids]
        else:
            raise Refusal("XDSUnknownStoredQuery", "stored query %s is not known" % qid)
        response = ET.Element(q("query:AdhocQueryResponse"), status=SUCCESS)
        objects = ET.SubElement(response, q("rim:RegistryObjectList"))
        for entry_uuid, status, metadata in rows:
            obj = ET.fromstring(metadata)
            obj.set("id", entry_uuid)
            obj.set("status", status)
            objects.append(obj)
        return response

    def retrieve(self, body):
        req = body.find("xds:RetrieveDocumentSetRequest", NS)
        if req is None:
            raise Refusal("XDSRepositoryError", "no RetrieveDocumentSetRequest")
        response = ET.Element(q("xds:RetrieveDocumentSetResponse"))
        ET.SubElement(response, q("rs:RegistryResponse"), status=SUCCESS)
        parts = {}
        for item in req.findall("xds:DocumentRequest", NS):
            unique = item.findtext("xds:DocumentUniqueId", namespaces=NS) or ""
            found = self.store.run("SELECT mime, content FROM documents WHERE unique_id = ? "
                                   "AND status != ?", (unique, DELETED))
            if not found:
                raise Refusal("XDSDocumentUniqueIdError", "no document %s" % unique)
            cid = "doc%d@dmpsim" % len(parts)
            parts[cid] = found[0]
            out = ET.SubElement(response, q("xds:DocumentResponse"))
            ET.SubElement(out, q("xds:RepositoryUniqueId")).text = \
                item.findtext("xds:RepositoryUniqueId", namespaces=NS) or ""
            ET.SubElement(out, q("xds:DocumentUniqueId")).text = unique
            ET.SubElement(out, q("xds:mimeType")).text = found[0][0]
            doc = ET.SubElement(out, q("xds:Document"))
            ET.SubElement(doc, q("xop:Include"), href="cid:" + cid)
        return response, parts

    def update(self, body):
        sor = body.find("lcm:SubmitObjectsRequest", NS)
        objects = sor.find("rim:RegistryObjectList", NS) if sor is not None else None
        if objects is None:
            raise metadata_error("no SubmitObjectsRequest/RegistryObjectList")
        changed = 0
        for assoc in objects.findall("rim:Association", NS):
            if assoc.get("associationType") != "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus":
                continue
            s = slots(assoc)
            new = (s.get("NewStatus") or [""])[0]
            target = assoc.get("targetObject")
            if new != DELETED:
                raise metadata_error("only deletion (%s) is handled, not %s" % (DELETED, new))
            found = self.store.run("SELECT status FROM documents WHERE entry_uuid = ?",
                                   (target,))
            if not found:
                raise Refusal("XDSUnknownDocument", "no entry %s" % target)
            self.store.run("UPDATE documents SET status = ? WHERE entry_uuid = ?",
                           (DELETED, target))
            changed += 1
        if not changed:
            raise metadata_error("no UpdateAvailabilityStatus association")
        return registry_response(SUCCESS)


def unquote(v):
    """A stored query value without its SQL-like quotes and parentheses."""
    return v.strip().strip("()").strip().strip("'")


def values(raw):
    """Every value of a stored query parameter: ('a','b') lists split."""
    out = []
    for v in raw:
        out += [unquote(x) for x in v.strip().strip("()").split(",") if x.strip()]
    return out


def document_bytes(doc, attachments):
    include = doc.find("xop:Include", NS)
    if include is not None:
        cid = urllib.parse.unquote((include.get("href") or "").replace("cid:", "", 1))
        if cid not in attachments:
            raise Refusal("XDSMissingDocument", "xop:Include %s: no such MIME part" % cid)
        return attachments[cid]
    text = (doc.text or "").strip()
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise metadata_error("a Document is neither xop:Include nor base64") from None


def registry_response(status, error=None):
    resp = ET.Element(q("rs:RegistryResponse"), status=status)
    if error is not None:
        errors = ET.SubElement(resp, q("rs:RegistryErrorList"))
        ET.SubElement(errors, q("rs:RegistryError"), errorCode=error.code,
                      codeContext=error.text, location="dmpsim",
                      severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error")
    return resp


# ------------------------------------------------------------- HTTP

def envelope(action, relates_to, body_elem):
    env = ET.Element(q("soap:Envelope"))
    header = ET.SubElement(env, q("soap:Header"))
    ET.SubElement(header, q("wsa:Action")).text = action + "Response"
    ET.SubElement(header, q("wsa:MessageID")).text = "urn:uuid:%s" % uuid.uuid4()
    if relates_to:
        ET.SubElement(header, q("wsa:RelatesTo")).text = relates_to
    ET.SubElement(env, q("soap:Body")).append(body_elem)
    return ET.tostring(env, encoding="utf-8", xml_declaration=True)


def soap_fault(code, text):
    env = ET.Element(q("soap:Envelope"))
    body = ET.SubElement(env, q("soap:Body"))
    fault = ET.SubElement(body, q("soap:Fault"))
    c = ET.SubElement(fault, q("soap:Code"))
    ET.SubElement(c, q("soap:Value")).text = "soap:Sender"
    sub = ET.SubElement(c, q("soap:Subcode"))
    ET.SubElement(sub, q("soap:Value")).text = code
    reason = ET.SubElement(fault, q("soap:Reason"))
    ET.SubElement(reason, q("soap:Text"), {"{http://www.w3.org/XML/1998/namespace}lang": "fr"}
                  ).text = text
    return ET.tostring(env, encoding="utf-8", xml_declaration=True)


def mtom(xml, parts):
    """An MTOM response: the envelope, then each (mime, bytes) part."""
    boundary = "dmpsim-%s" % uuid.uuid4().hex
    out = [b"--%s\r\nContent-Type: application/xop+xml; charset=UTF-8; "
           b'type="application/soap+xml"\r\nContent-Transfer-Encoding: binary\r\n'
           b"Content-ID: <root@dmpsim>\r\n\r\n%s\r\n" % (boundary.encode(), xml)]
    for cid, (mime, data) in parts.items():
        out.append(b"--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: binary\r\n"
                   b"Content-ID: <%s>\r\n\r\n%s\r\n"
                   % (boundary.encode(), mime.encode(), cid.encode(), data))
    out.append(b"--%s--\r\n" % boundary.encode())
    ctype = ('multipart/related; type="application/xop+xml"; boundary="%s"; '
             'start="<root@dmpsim>"; start-info="application/soap+xml"' % boundary)
    return ctype, b"".join(out)


class Faults:
    """Faults to inject, per action: [kind, remaining count, delay]."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending = {}

    def set(self, action, kind, count, delay):
        with self.lock:
            self.pending[action] = [kind, count, delay]

    def take(self, action):
        with self.lock:
            f = self.pending.get(action)
            if not f or f[1] <= 0:
                return None, 0
            f[1] -= 1
            return f[0], f[2]

    def clear(self):
        with self.lock:
            self.pending.clear()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dmpsim/1"

    def log_message(self, fmt, *args):  # quiet: the request log is in SQLite
        pass

    def reply(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, obj, status=200):
        self.reply(status, "application/json", json.dumps(obj).encode())

    def do_GET(self):
        store = self.server.store
        if self.path == "/_sim/documents":
            cols = ("entry_uuid", "unique_id", "patient_id", "status", "mime", "class_code",
                    "type_code", "reference_ids", "submission_set", "replaces", "submitted_at")
            rows = store.run("SELECT %s FROM documents ORDER BY submitted_at" % ", ".join(cols))
            return self.reply_json([dict(zip(cols, r)) for r in rows])
        if self.path == "/_sim/requests":
            rows = store.run("SELECT at, action, outcome, detail, seconds, subject "
                             "FROM requests ORDER BY id")
            return self.reply_json([dict(zip(("at", "action", "outcome", "detail", "seconds",
                                              "subject"), r)) for r in rows])
        return self.reply_json({"error": "no such resource"}, 404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/_sim/faults":
            f = json.loads(body or b"{}")
            self.server.faults.set(f["action"], f["kind"], int(f.get("count", 1)),
                                   float(f.get("delay", 0)))
            return self.reply_json({"ok": True})
        if self.path == "/_sim/reset":
            self.server.store.run("DELETE FROM documents")
            self.server.store.run("DELETE FROM requests")
            self.server.faults.clear()
            return self.reply_json({"ok": True})
        m = re.fullmatch(r"/si-dmp-server/v2/services/(\w+)", self.path)
        if not m or m.group(1) not in SERVICES:
            return self.reply_json({"error": "no such service"}, 404)
        self.serve_soap(m.group(1), body)

    def serve_soap(self, service, body):
        started = time.monotonic()
        store, registry = self.server.store, self.server.registry
        action, msg_id = "?", None
        try:
            env, attachments, ctype_action, raw = parse_body(
                self.headers.get("Content-Type", ""), body)
            action, msg_id = check_envelope(env, service, ctype_action)
            kind, delay = self.server.faults.take(action)
            if kind == "reset":
                store.log(action, "fault", "connection reset")
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.close_connection = True
                self.connection.close()
                return
            if kind == "slow":
                time.sleep(delay)
            if kind == "soap-fault":
                raise Refusal("Receiver", "injected fault: the service is unavailable",
                              soap_fault=True)
            if kind == "metadata-error":
                raise metadata_error("injected XDSRegistryMetadataError")
            if kind == "closed-dmp":
                raise Refusal("DMPClosed", "le DMP du patient est fermé")
            vihf = check_vihf(env)
            subject = vihf_subject(env)
            if self.server.vihf:
                self.server.vihf.verify(raw)
            soap_body = env.find("soap:Body", NS)
            parts = {}
            if action == ITI41:
                result = registry.provide_and_register(soap_body, attachments, vihf)
            elif action == ITI18:
                result = registry.stored_query(soap_body)
            elif action == ITI43:
                result, parts = registry.retrieve(soap_body)
            elif action == ITI57:
                result = registry.update(soap_body)
            else:  # TD0.2, TD0.3: the patient's DMP exists; authorisation granted
                result = ET.Element(q("rs:RegistryResponse"), status=SUCCESS)
            store.log(action, "success", seconds=time.monotonic() - started,
                      subject=subject)
            if kind == "slow-reply":
                time.sleep(delay)
            xml = envelope(action, msg_id, result)
            if parts or action == ITI43:
                ctype, data = mtom(xml, parts)
                return self.reply(200, ctype, data)
            return self.reply(200, 'application/soap+xml; charset=UTF-8', xml)
        except Refusal as r:
            store.log(action, r.code, r.text)
            if r.soap_fault:
                return self.reply(500, "application/soap+xml; charset=UTF-8",
                                  soap_fault(r.code, r.text))
            resp = registry_response(FAILURE, r)
            if action == ITI18:
                resp = ET.Element(q("query:AdhocQueryResponse"), status=FAILURE)
                resp.append(registry_response(FAILURE, r).find("rs:RegistryErrorList", NS))
            return self.reply(200, "application/soap+xml; charset=UTF-8",
                              envelope(action, msg_id, resp))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--db", required=True, help="SQLite file of the documents")
    parser.add_argument("--trust", help="PEM certificates the VIHF must be signed with")
    parser.add_argument("--tls-cert", help="PEM server certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--tls-ca", help="PEM CA the clients' certificates must come from")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    server.store = Store(args.db)
    server.registry = Registry(server.store, args.trust)
    server.faults = Faults()
    server.trust = args.trust
    server.vihf = VihfVerifier(args.trust) if args.trust else None
    scheme = "http"
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_ca:
            ctx.load_verify_locations(args.tls_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print("dmpsim listening on %s://%s:%d" % (scheme, args.bind, server.server_address[1]),
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
