"""Imaging reports as a RIS sends them: an ORU^R01 (HL7 v2.5, CI-SIS) whose
OBX-5 carries a CDA R2 report (IMG-CR-IMG header, text body) for a given
study, accession number and patient. Used by the benchmarks and the demo,
which must not depend on the ANS sample data."""

import base64
import subprocess
import tempfile
import time
import uuid
from xml.sax.saxutils import quoteattr

INS_OID = "1.2.250.1.213.1.4.10"
RPPS_OID = "1.2.250.1.71.4.2.1"


def cda(study_uid, accession, patient, modality="CT", title="CR d'imagerie médicale"):
    """A CDA R2 imaging report (bytes). patient: {"ins", "family", "given",
    "birth", "sex"}."""
    now = time.strftime("%Y%m%d%H%M%S+0000", time.gmtime())
    q = quoteattr
    return ("""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:ps3-20="urn:dicom-org:ps3-20">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root=%(docid)s/>
  <code code="18748-4" codeSystem="2.16.840.1.113883.6.1" displayName="CR d'imagerie médicale"/>
  <title>%(title)s</title>
  <effectiveTime value="%(now)s"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <setId root=%(setid)s/>
  <versionNumber value="1"/>
  <recordTarget><patientRole><id extension=%(ins)s root="%(insoid)s"/>
    <patient><name><family>%(family)s</family><given>%(given)s</given></name>
    <administrativeGenderCode code=%(sex)s codeSystem="2.16.840.1.113883.5.1"/>
    <birthTime value=%(birth)s/></patient></patientRole></recordTarget>
  <author><time value="%(now)s"/><assignedAuthor>
    <id root="%(rpps)s" extension="801234560801"/>
    <assignedPerson><name><given>Jacques</given><family>BIDEAULT</family></name></assignedPerson>
    <representedOrganization><id root="1.2.250.1.71.4.2.2" extension="101235555"/>
    <name>Centre de radiologie (démo)</name></representedOrganization></assignedAuthor></author>
  <legalAuthenticator><time value="%(now)s"/><signatureCode code="S"/><assignedEntity>
    <id root="%(rpps)s" extension="801234560801"/>
    <assignedPerson><name><given>Jacques</given><family>BIDEAULT</family></name></assignedPerson>
  </assignedEntity></legalAuthenticator>
  <inFulfillmentOf><order><id root="1.2.250.1.999.1.1.6" extension=%(order)s/>
    <ps3-20:accessionNumber root="1.2.250.1.999.1.1.5" extension=%(acc)s/></order></inFulfillmentOf>
  <documentationOf><serviceEvent classCode="ACT"><id root=%(study)s/>
    <code code="24727-0" codeSystem="2.16.840.1.113883.6.1" displayName="CT Head W contrast IV">
      <translation code=%(modality)s codeSystem="1.2.840.10008.2.16.4"/>
    </code>
    <effectiveTime><low value="%(now)s"/><high value="%(now)s"/></effectiveTime>
  </serviceEvent></documentationOf>
  <component><nonXMLBody><text mediaType="text/plain">Compte rendu.</text></nonXMLBody></component>
</ClinicalDocument>
""" % {"docid": q("2.25.%d" % uuid.uuid4().int), "setid": q("2.25.%d" % uuid.uuid4().int),
       "title": title, "now": now, "ins": q(patient["ins"]), "insoid": INS_OID,
       "family": patient["family"], "given": patient["given"], "sex": q(patient["sex"]),
       "birth": q(patient["birth"]), "rpps": RPPS_OID, "order": q("OPN-" + accession),
       "acc": q(accession), "study": q(study_uid), "modality": q(modality)}).encode("utf-8")


def oru(study_uid, accession, patient, control_id, modality="CT", orc="NW"):
    """An ORU^R01 carrying the report (bytes, segments ended by CR); orc
    "RO" for a corrected report, which replaces the one sent before."""
    report = base64.b64encode(cda(study_uid, accession, patient, modality)).decode()
    now = time.strftime("%Y%m%d%H%M%S")
    segments = [
        "MSH|^~\\&|RIS|SITE|DRIMBOX|SITE|%s||ORU^R01^ORU_R01|%s|P|2.5|||||FRA|UNICODE UTF-8"
        "|||2.1^CISIS_CDA_HL7_V2" % (now, control_id),
        "PID|||%s^^^ASIP-SANTE-INS-NIR&%s&ISO^INS||%s^%s||%s|%s" % (
            patient["ins"], INS_OID, patient["family"], patient["given"], patient["birth"],
            patient["sex"]) + "|" * 24 + "VALI",
        "ORC|" + orc,
        "OBR|1|OPN-%s||18748-4^CR d'imagerie médicale^LN|||||||||||||||%s" % (accession,
                                                                             accession),
        "OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^TEXT^XML^Base64^%s||||||F" % report,
        "OBX|2|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y||||||F",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


# Patient p1 of the generated studies (tests/data/gen_studies.py): its CT
# ("ct", "ct-jls") reports name this identity.
SMALL_SET_PATIENT = {"ins": "279035121518989", "family": "PAT-TROIS", "given": "DOMINIQUE",
                     "birth": "19790315", "sex": "F"}


def mllp_send(port, message, host="127.0.0.1"):
    """Sends one message as a RIS does, with python3-hl7's mllp_send; the
    acknowledgement code (MSA-1: AA, AE, AR)."""
    # it reads MLLP frames from a file (Debian's 0.4.5 fails on stdin)
    with tempfile.NamedTemporaryFile(suffix=".hl7") as f:
        f.write(b"\x0b" + message + b"\x1c\r")
        f.flush()
        out = subprocess.run(["mllp_send", "-p", str(port), "-f", f.name, host],
                             capture_output=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("mllp_send: exit %d: %s" % (out.returncode, out.stderr.decode()))
    for seg in out.stdout.decode("utf-8", "replace").replace("\n", "\r").split("\r"):
        if seg.startswith("MSA|"):
            return seg.split("|")[1]
    raise RuntimeError("mllp_send: no MSA in the answer: %r" % out.stdout[:200])
