#!/usr/bin/python3
"""DRIM-M whitelists ("listes blanches") signed by a test PKI.

Stdlib + the `openssl` and `xmlsec1` command-line tools. Provides:
  make_trust(workdir)           a test root CA and a list-signing certificate
  write_signed_whitelist()      a ListeBlancheDRIM-M with an enveloped
                                XAdES-BASELINE-B signature, as the ANS signs it
  write_unsigned_whitelist()    the same list without signature

The list has the layout of the ANS referencing sample
(drim-m-data/referencement-drimbox/liste-blanche-test) and the signature
what src/whitelist.c requires: a reference to the whole document (URI=""),
one to the XAdES SignedProperties, and a signer with the configured CN/OU
(the defaults of whitelist_signer_cn and whitelist_signer_ou).

Manual use: python3 tests/lib/wlsign.py OUTDIR HOST [HOST ...]
writes OUTDIR/whitelist.xml listing the hosts, the trust files, and prints
the drimbox configuration lines that accept the list.
"""

import base64
import hashlib
import ssl
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape

# The namespace src/whitelist.c reads (the referencing sample's; the older
# informatif sample's listeblanche.mesimagesmedicales.fr one is refused).
NS_LIST = "https://github.com/ansforge/DRIM-M_DATA"
CA_SUBJECT = "/C=FR/O=ANS test/CN=DRIMbox test whitelist root CA"
SIGNER_SUBJECT = "/C=FR/O=ANS test/OU=318751275100020/CN=Liste Blanche DRIM-M"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"

# `openssl ca` is the 3.0 tool that can back-date a certificate (-startdate).
CA_CONF = """\
[ca]
default_ca = test_ca
[test_ca]
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}
default_md = sha256
policy = any
unique_subject = no
[any]
countryName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[signer]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

DOMAIN = """\
        <Domaine>
            <Identifiant>{id}</Identifiant>
            <db>{db}</db>
            <vi>{vi}</vi>
            <Denomination>{name}</Denomination>
            <DNCertificatOperateur>{cert_dn}</DNCertificatOperateur>
            <SupportContact>support@drimbox.invalid</SupportContact>
            <DateMAJ>{updated}</DateMAJ>
        </Domaine>
"""

# xmlsec1 template: it computes the digests and the signature value and
# fills X509Data with the signer certificate. Exclusive c14n, RSA-SHA256
# and SHA-256 as in the ANS sample; the enveloped-signature transform
# stands for the sample's equivalent XPath-filter2 "subtract".
SIGNATURE = """\
<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="sig"><ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference Id="ref-list" URI=""><ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>
<ds:Reference Type="http://uri.etsi.org/01903#SignedProperties" URI="#xades-sig"><ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>
</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
<ds:Object><xades:QualifyingProperties xmlns:xades="{xades}" Target="#sig">\
<xades:SignedProperties Id="xades-sig"><xades:SignedSignatureProperties>\
<xades:SigningTime>{time}</xades:SigningTime><xades:SigningCertificateV2><xades:Cert>\
<xades:CertDigest><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>\
<ds:DigestValue>{cert_digest}</ds:DigestValue></xades:CertDigest></xades:Cert>\
</xades:SigningCertificateV2></xades:SignedSignatureProperties>\
<xades:SignedDataObjectProperties><xades:DataObjectFormat ObjectReference="#ref-list">\
<xades:MimeType>text/xml</xades:MimeType></xades:DataObjectFormat>\
</xades:SignedDataObjectProperties></xades:SignedProperties></xades:QualifyingProperties>\
</ds:Object></ds:Signature>
"""


def _run(*args):
    """Runs a command; raises RuntimeError with its stderr if it fails."""
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (args[0], out.stderr.strip()))


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_trust(workdir):
    """Creates in workdir a root CA and the list signer it issues (RSA 2048,
    valid from yesterday for two years); returns their PEM paths."""
    work = Path(workdir)
    db = work / "ca-db"
    db.mkdir(parents=True, exist_ok=True)
    (db / "index.txt").write_text("")
    conf = db / "ca.cnf"
    conf.write_text(CA_CONF.format(dir=db))
    start = datetime.now(timezone.utc) - timedelta(days=1)
    dates = ["-startdate", start.strftime("%y%m%d%H%M%SZ"),
             "-enddate", (start + timedelta(days=730)).strftime("%y%m%d%H%M%SZ")]
    trust = dict(ca_cert=work / "ca.pem", signer_cert=work / "signer.pem",
                 signer_key=work / "signer.key")
    ca_key = work / "ca.key"
    for key, cert, subject, ext, issuer in (
            (ca_key, trust["ca_cert"], CA_SUBJECT, "root", ["-selfsign"]),
            (trust["signer_key"], trust["signer_cert"], SIGNER_SUBJECT, "signer",
             ["-cert", trust["ca_cert"]])):
        csr = db / (cert.stem + ".csr")
        _run("openssl", "req", "-new", "-newkey", "rsa:2048", "-noenc",
             "-keyout", key, "-subj", subject, "-out", csr)
        _run("openssl", "ca", "-batch", "-config", conf, "-create_serial", "-preserveDN",
             "-notext", "-extensions", ext, "-keyfile", ca_key, *issuer, *dates,
             "-in", csr, "-out", cert)
    return {k: str(v) for k, v in trust.items()}


def _list_xml(domains, generated, signature=""):
    """The ListeBlancheDRIM-M document, with signature as its last child."""
    generated = generated or _now()
    rows = "".join(DOMAIN.format(
        updated=generated,
        **{k: escape(str(v)) for k, v in dict(
            d, cert_dn=d.get("cert_dn", "CN=%s,O=DRIMbox test,C=FR" % d["db"])).items()})
        for d in domains)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListeBlancheDRIM-M xmlns="%s" versionFormat="1.0.0">\n'
            '    <DateDeGeneration>%s</DateDeGeneration>\n'
            '    <ListeDomaines>\n%s    </ListeDomaines>\n%s</ListeBlancheDRIM-M>\n'
            % (NS_LIST, generated, rows, signature))


def write_unsigned_whitelist(path, domains, generated=None):
    """Writes the list of domains ({"id", "db", "vi", "name"[, "cert_dn"]})."""
    Path(path).write_text(_list_xml(domains, generated), encoding="utf-8")


def write_signed_whitelist(path, domains, trust, generated=None):
    """Writes the list of domains signed with trust's signer (make_trust)."""
    der = ssl.PEM_cert_to_DER_cert(Path(trust["signer_cert"]).read_text())
    signature = SIGNATURE.format(
        xades=XADES_NS, time=_now(),
        cert_digest=base64.b64encode(hashlib.sha256(der).digest()).decode())
    with tempfile.NamedTemporaryFile("w", suffix=".xml", encoding="utf-8",
                                     dir=Path(path).parent) as template:
        template.write(_list_xml(domains, generated, signature))
        template.flush()
        # the SignedProperties reference resolves only once xmlsec1 knows
        # its Id attribute is an ID (there is no DTD or schema)
        _run("xmlsec1", "--sign", "--privkey-pem",
             "%s,%s" % (trust["signer_key"], trust["signer_cert"]),
             "--id-attr:Id", XADES_NS + ":SignedProperties",
             "--output", path, template.name)


def main(argv):
    if len(argv) < 3:
        sys.exit("usage: wlsign.py OUTDIR HOST [HOST ...]")
    out = Path(argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    trust = make_trust(out)
    domains = [dict(id=str(i), db=h, vi=h, name="DRIMbox %s" % h)
               for i, h in enumerate(argv[2:], 1)]
    write_signed_whitelist(out / "whitelist.xml", domains, trust)
    print("whitelist_file = %s\nwhitelist_trust = %s" % (out / "whitelist.xml",
                                                         trust["ca_cert"]))


if __name__ == "__main__":
    main(sys.argv)
