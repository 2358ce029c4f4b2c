"""Certificates for TLS tests, made with the openssl command: a CA, server
certificates for 127.0.0.1 and client certificates with a chosen subject
(an IGC-Santé-like chain in miniature, for mutual TLS between
DRIMboxes)."""

import subprocess
from pathlib import Path


def _openssl(*args):
    out = subprocess.run(["openssl"] + [str(a) for a in args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], out.stderr.strip()))


def make_ca(workdir, name):
    """A self-signed CA in workdir: (cert path, key path)."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cert, key = work / (name + ".pem"), work / (name + ".key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-noenc", "-days", "3",
             "-subj", "/O=drimbox tests/CN=" + name, "-keyout", key, "-out", cert,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def issue(workdir, ca, name, subject, server=False):
    """A certificate (subject as '/C=FR/.../CN=...') issued by ca (the
    pair make_ca returns): for 127.0.0.1 when server, else for TLS
    clients. (cert path, key path)."""
    work = Path(workdir)
    cert, key, csr, ext = (work / (name + s) for s in (".pem", ".key", ".csr", ".ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" if server
                   else "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-noenc", "-subj", subject,
             "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "2", "-extfile", ext, "-out", cert)
    return cert, key
