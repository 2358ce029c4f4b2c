#!/usr/bin/python3
"""Test harness for drimbox integration tests and benchmarks.

Stdlib + pydicom only.  Provides:
  free_port(), TempDir          reserved loopback ports, temporary dirs
  generate_studies(), read_manifest(), manifest_uid_tree(), ensure_full_set()
                                synthetic data (tests/data/gen_studies.py)
  http_get(), parse_multipart() DICOMweb client helpers (PS3.18, RFC 2046)
  Orthanc                       a throw-away Orthanc used as the PACS
  Drimbox                       a drimboxd daemon and its `drimbox` CLI
  Postgres                      a throw-away PostgreSQL cluster; with
                                DRIMBOX_TEST_INDEX=postgresql every Drimbox
                                gets a database of its own in one

Every process started here is stopped by its context manager, by stop(),
and at interpreter exit; it also gets SIGKILL if the Python process dies
(PR_SET_PDEATHSIG), so no daemon outlives a test run.

Self-check: /usr/bin/python3 tests/lib/harness.py --selftest
"""

import atexit
import ctypes
import email.message
import email.utils
import fcntl
import hashlib
import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
from pydicom.filereader import read_file_meta_info

REPO = Path(__file__).resolve().parents[2]
GEN_STUDIES = REPO / "tests" / "data" / "gen_studies.py"
PYTHON = "/usr/bin/python3"
ORTHANC_BIN = os.environ.get("ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
LOOPBACK = "127.0.0.1"
# make check-valgrind: drimboxd runs under this command (a valgrind
# line), and the waits for it are this many times longer
DRIMBOXD_WRAP = shlex.split(os.environ.get("DRIMBOXD_WRAP", ""))
SLOW = float(os.environ.get("DRIMBOX_TIMEOUT_SCALE", "1"))
# the index backend of the Drimbox daemons: "sqlite" (default) or
# "postgresql" (the integration suite runs against both)
TEST_INDEX = os.environ.get("DRIMBOX_TEST_INDEX", "sqlite")


class HarnessError(Exception):
    """A managed process failed to start or a command failed."""


def dicom_env():
    """Environment for Orthanc and DCMTK tools (TCP_NODELAY, see build notes)."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def _server_ports():
    """Ports for test servers: outside the kernel's range for outgoing
    connections, where any client (PostgreSQL, curl, another test) may
    take a port between our check and the server's bind."""
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range")
                     .read_text().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    if lo - 10000 >= 4096:
        return range(10000, lo)
    if 65535 - hi >= 4096:
        return range(hi + 1, 65536)
    return None


_PORTS = _server_ports()
_PORT_DIR = Path(tempfile.gettempdir()) / "drimbox-test-ports"
_PORT_LOCKS = {}  # port -> open lock file, held until this process exits


@atexit.register  # registered first: runs after the servers are stopped
def _release_ports():
    for f in _PORT_LOCKS.values():
        f.close()


def free_port():
    """A TCP port for a test server, free on the loopback interface now
    and reserved for this process: test programs running side by side
    each lock their ports (one lock file per port), so no two are given
    the same one."""
    if _PORTS is None:  # no room outside the kernel's range
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            return s.getsockname()[1]
    _PORT_DIR.mkdir(exist_ok=True)
    start = random.randrange(len(_PORTS))
    for i in range(len(_PORTS)):
        port = _PORTS[(start + i) % len(_PORTS)]
        if port in _PORT_LOCKS:
            continue
        f = open(_PORT_DIR / str(port), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOOPBACK, port))
        except OSError:
            f.close()
            continue
        _PORT_LOCKS[port] = f
        return port
    raise HarnessError("no free port in %s" % _PORTS)


class TempDir:
    """Context manager yielding a fresh temporary directory (a Path)."""

    def __init__(self, prefix="drimbox-test-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def wait_until(predicate, timeout, interval=0.05):
    """Poll predicate() until it is true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def tail(path, lines=40):
    """Last lines of a text file, or a note that it does not exist."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log at %s)" % path
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent():
    """preexec_fn: SIGKILL the child when the harness process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_RUNNING = set()


@atexit.register
def _stop_all():
    for proc in list(_RUNNING):
        proc.stop()


class ManagedProcess:
    """A daemon started with its output in a log file; always stoppable.

    Start it from the main thread: PR_SET_PDEATHSIG fires when the thread
    that spawned the child exits.
    """

    name = "process"

    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self.proc = None
        # detached: outlives this Python process (make demo); not stopped
        # at exit, in a session of its own.
        self.detached = False

    def _spawn(self, argv):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=dicom_env(), start_new_session=self.detached,
                preexec_fn=None if self.detached else _die_with_parent)
        if not self.detached:
            _RUNNING.add(self)

    def running(self):
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def status_kb(self, key):
        """A kB figure of the running process's /proc status (VmRSS,
        VmHWM...)."""
        status = Path("/proc/%d/status" % self.proc.pid).read_text()
        return int(re.search(r"^%s:\s+(\d+) kB" % key, status, re.M).group(1))

    def log_text(self):
        """Whole log of the process."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, ready, timeout):
        """Wait until ready() is true; stop and raise (with the log) if the
        process exits first or timeout seconds pass."""
        wait_until(lambda: not self.running() or ready(), timeout)
        if not self.running():
            self._fail("exited with code %s during start-up" % self.proc.returncode)
        if not ready():
            self._fail("not ready after %s s" % timeout)

    def _fail(self, message):
        self.stop()
        raise HarnessError("%s: %s\n--- %s (tail) ---\n%s"
                           % (self.name, message, self.log_path, tail(self.log_path)))

    # what stop() sends first
    stop_signal = signal.SIGTERM

    def stop(self, timeout=5):
        """stop_signal (SIGTERM), then SIGKILL after timeout seconds;
        always reaps."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _RUNNING.discard(self)

    def kill9(self):
        """SIGKILL the process (crash simulation) and reap it."""
        self._killed = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _RUNNING.discard(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


# ------------------------------------------------------------- postgres

def _pg_bindir():
    """Directory of the newest PostgreSQL server binaries."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name))
    if not found:
        raise HarnessError("PostgreSQL not found (apt-get install postgresql)")
    return found[-1].parent


def _as_postgres():
    """preexec_fn: the server refuses root; run as the postgres user (when
    root), and die with the harness (set after the change of user, which
    clears it)."""
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("postgres")
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    _die_with_parent()


class Postgres(ManagedProcess):
    """A PostgreSQL cluster of its own on a loopback port, role "drimbox"
    trusted, in a directory under /tmp (the postgres user must reach it).
    durable=False (tests) turns fsync off; benchmarks keep it on."""

    name = "postgres"

    def __init__(self, durable=False):
        self.dir = Path(tempfile.mkdtemp(prefix="drimbox-pg-"))
        super().__init__(self.dir / "postgres.log")
        self.durable = durable
        self.port = free_port()
        self.bindir = _pg_bindir()
        self._ndb = 0

    def start(self, timeout=30):
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.dir / "data"),
                        "--auth=trust", "--no-locale", "-E", "UTF8", "-U", "drimbox",
                        "--no-sync"], check=True, capture_output=True,
                       preexec_fn=_as_postgres, cwd="/")
        return self._serve(timeout)

    def _serve(self, timeout):
        argv = [str(self.bindir / "postgres"), "-D", str(self.dir / "data"),
                "-p", str(self.port), "-k", str(self.dir),
                "-c", "listen_addresses=" + LOOPBACK, "-c", "max_connections=300",
                "-c", "logging_collector=off"]
        if not self.durable:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off"]
        self.log_path.touch()
        if os.geteuid() == 0:
            shutil.chown(self.log_path, "postgres")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, preexec_fn=_as_postgres, cwd="/")
        _RUNNING.add(self)
        self._wait_ready(lambda: self._psql("postgres", "SELECT 1", check=False)
                         .returncode == 0, timeout)
        return self

    stop_signal = signal.SIGINT  # fast shutdown

    def restart(self, timeout=30):
        """Fast shutdown, then the same cluster again on the same port."""
        super().stop()
        return self._serve(timeout)

    def stop(self, timeout=10):
        """Fast shutdown, then the directory goes."""
        super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db):
        """libpq URI of database db."""
        return "postgresql://drimbox@%s:%d/%s" % (LOOPBACK, self.port, db)

    def _psql(self, db, sql, check=True):
        return subprocess.run(["psql", "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1",
                               "-d", self.url(db), "-c", sql],
                              capture_output=True, text=True, check=check, timeout=120)

    def create_database(self):
        """A new empty database; its URI."""
        self._ndb += 1
        name = "drimbox%d" % self._ndb
        self._psql("postgres", "CREATE DATABASE %s" % name)
        return self.url(name)

    def copy_database(self, url):
        """A new database holding what url's holds now (pg_dump, which
        works while drimboxd is connected); its URI."""
        copy = self.create_database()
        dump = subprocess.run(["pg_dump", "-d", url], capture_output=True, check=True)
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", copy],
                       input=dump.stdout, capture_output=True, check=True)
        return copy


_CLUSTER = None


def shared_postgres():
    """The cluster of this test process (started on first use)."""
    global _CLUSTER
    if _CLUSTER is None or not _CLUSTER.running():
        _CLUSTER = Postgres().start()
    return _CLUSTER


def sql_query(target, sql):
    """Rows (lists of text, None for NULL as "") of sql on an index: a
    SQLite file or a PostgreSQL URI."""
    if target.startswith("postgresql://"):
        import csv
        out = subprocess.run(["psql", "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", target, "-c", sql],
                             capture_output=True, text=True, check=True, timeout=120)
        return [row for row in csv.reader(io.StringIO(out.stdout))]
    import sqlite3
    db = sqlite3.connect(target)
    try:
        rows = db.execute(sql).fetchall()
        db.commit()
        return [["" if v is None else str(v) for v in row] for row in rows]
    finally:
        db.close()


# ---------------------------------------------------------------- nginx

class Nginx(ManagedProcess):
    """nginx as the load balancer in front of several drimboxd nodes:
    HTTP on http_port (round robin over the nodes' HTTP ports; a node that
    refuses connections is skipped) and, when the nodes listen for HL7,
    MLLP on hl7_port (TCP, round robin per connection)."""

    name = "nginx"

    def __init__(self, workdir, http_backends, hl7_backends=()):
        self.workdir = Path(workdir)
        super().__init__(self.workdir / "nginx.log")
        self.http_port = free_port()
        self.hl7_port = free_port() if hl7_backends else None
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        http = "\n".join("    server %s:%d max_fails=1 fail_timeout=5s;" % (LOOPBACK, p)
                         for p in http_backends)
        conf = """load_module /usr/lib/nginx/modules/ngx_stream_module.so;
%(user)s
worker_processes 2;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(dir)s/body;
  proxy_temp_path %(dir)s/proxy;
  fastcgi_temp_path %(dir)s/fastcgi;
  uwsgi_temp_path %(dir)s/uwsgi;
  scgi_temp_path %(dir)s/scgi;
  upstream drimbox {
%(http)s
    keepalive 32;
  }
  server {
    listen %(lo)s:%(port)d;
    client_max_body_size 0;
    location / {
      proxy_pass http://drimbox;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
      proxy_next_upstream error timeout;
      proxy_read_timeout 300s;
    }
  }
}
""" % {"user": "user root root;" if os.geteuid() == 0 else "", "dir": self.workdir,
       "http": http, "lo": LOOPBACK, "port": self.http_port}
        if hl7_backends:
            conf += """stream {
  upstream mllp {
%s
  }
  server {
    listen %s:%d;
    proxy_pass mllp;
    proxy_connect_timeout 2s;
    proxy_timeout 300s;
  }
}
""" % ("\n".join("    server %s:%d max_fails=1 fail_timeout=5s;" % (LOOPBACK, p)
                  for p in hl7_backends), LOOPBACK, self.hl7_port)
        self.conf_path = self.workdir / "nginx.conf"
        self.conf_path.write_text(conf)

    @property
    def url(self):
        return "http://%s:%d" % (LOOPBACK, self.http_port)

    def start(self, timeout=10):
        self._spawn(["nginx", "-p", str(self.workdir), "-c", str(self.conf_path),
                     "-e", str(self.log_path), "-g", "daemon off;"])
        self._wait_ready(lambda: _port_open(self.http_port), timeout)
        return self


def _port_open(port):
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ data

def generate_studies(set_name, outdir):
    """Run gen_studies.py; returns the parsed manifest."""
    proc = subprocess.run([PYTHON, str(GEN_STUDIES), "--set", set_name, str(outdir)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError("gen_studies.py failed:\n" + proc.stderr)
    return read_manifest(outdir)


def read_manifest(outdir):
    """Parsed OUTDIR/manifest.json."""
    return json.loads((Path(outdir) / "manifest.json").read_text(encoding="utf-8"))


def ensure_full_set(data_dir):
    """Full set in data_dir (a Path), regenerated unless its manifest is
    current (same generator, every file of the expected size)."""
    try:
        manifest = read_manifest(data_dir)
        current = (manifest["set"] == "full"
                   and manifest["generator_sha256"]
                   == hashlib.sha256(GEN_STUDIES.read_bytes()).hexdigest()
                   and all((data_dir / i["path"]).stat().st_size == i["size"]
                           for st in manifest["studies"] for se in st["series"]
                           for i in se["instances"]))
    except (OSError, ValueError, KeyError):
        current = False
    if current:
        return manifest
    print("generating the full data set into %s ..." % data_dir, file=sys.stderr)
    return generate_studies("full", data_dir)


def copy_study(files, out, count, accession="COPY0001", per_series=300):
    """A new study of count instances in out (made once; reused while its
    marker matches): the given files' datasets copied round-robin into
    series of per_series instances, under new UIDs and the accession
    number. Returns the study UID."""
    from pydicom.uid import generate_uid
    out = Path(out)
    marker = out / "study.json"
    try:
        info = json.loads(marker.read_text())
        if (info["count"], info["accession"]) == (count, accession) and \
                len(list(out.glob("*/*.dcm"))) == count:
            return info["study_uid"]
    except (OSError, ValueError, KeyError):
        pass
    shutil.rmtree(out, ignore_errors=True)
    print("building a %d-instance study into %s ..." % (count, out), file=sys.stderr)
    study_uid = generate_uid()
    series_uid = None
    for n in range(count):
        if n % per_series == 0:
            series_uid = generate_uid()
            (out / str(n // per_series)).mkdir(parents=True, exist_ok=True)
        ds = pydicom.dcmread(files[n % len(files)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SeriesNumber = 100 + n // per_series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n % per_series + 1
        ds.AccessionNumber = accession
        ds.save_as(out / str(n // per_series) / ("%04d.dcm" % (n % per_series)))
    marker.write_text(json.dumps({"study_uid": study_uid, "count": count,
                                  "accession": accession}))
    return study_uid


def manifest_uid_tree(manifest, keys=None):
    """{study_uid: {series_uid: set(sop_uids)}} of a manifest (or some studies)."""
    return {st["study_uid"]: {se["series_uid"]: {i["sop_uid"] for i in se["instances"]}
                              for se in st["series"]}
            for st in manifest["studies"] if keys is None or st["key"] in keys}


def dicom_files(path):
    """Sorted *.dcm files under path (recursively)."""
    return sorted(Path(path).rglob("*.dcm"))


def write_store_profile(files, profile_path):
    """DCMTK association profile "Default" for sending files with storescu.

    One presentation context per (SOP class, transfer syntax): both
    uncompressed syntaxes plus every compressed syntax found in the files.
    """
    syntaxes = {}
    for f in files:
        meta = read_file_meta_info(f)
        syntaxes.setdefault(meta.MediaStorageSOPClassUID, set(UNCOMPRESSED)).add(
            meta.TransferSyntaxUID)
    pairs = [(c, t) for c in sorted(syntaxes) for t in sorted(syntaxes[c])]
    if len(pairs) > 128:
        raise HarnessError("too many presentation contexts: %d" % len(pairs))
    ts_names = {t: "TS%d" % i for i, t in enumerate(sorted({t for _, t in pairs}))}
    lines = ["[[TransferSyntaxes]]"]
    for t, name in ts_names.items():
        lines += ["[%s]" % name, "TransferSyntax1 = %s" % t]
    lines += ["", "[[PresentationContexts]]", "[StoreContexts]"]
    lines += ["PresentationContext%d = %s\\%s" % (n, c, ts_names[t])
              for n, (c, t) in enumerate(pairs, 1)]
    lines += ["", "[[Profiles]]", "[Default]", "PresentationContexts = StoreContexts", ""]
    Path(profile_path).write_text("\n".join(lines))


# -------------------------------------------------------------- DICOMweb

def http_get(url, headers=None, timeout=60):
    """GET url; (status, {lower-case header name: value}, body bytes).

    4xx/5xx answers are returned, not raised.
    """
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _header_dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, _header_dict(e.headers), e.read()


def _header_dict(message):
    return {k.lower(): v for k, v in message.items()}


def content_type_param(content_type, name):
    """A parameter of a Content-Type value (quoted or not), or None."""
    msg = email.message.Message()
    msg["Content-Type"] = content_type
    value = msg.get_param(name)
    return email.utils.collapse_rfc2231_value(value) if value is not None else None


def parse_multipart(content_type, body):
    """Parts of a multipart body (RFC 2046 5.1): a list of
    ({lower-case header name: value}, part bytes).

    The boundary is the Content-Type's parameter.  A preamble, transport
    padding after a delimiter and an epilogue are allowed; a missing close
    delimiter raises ValueError.
    """
    boundary = content_type_param(content_type, "boundary")
    if not boundary:
        raise ValueError("no boundary in %r" % content_type)
    # Every delimiter but a leading one follows a CRLF.
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("ascii"))
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        padding, sep, rest = chunk.partition(b"\r\n")
        if not sep or padding.strip(b" \t"):
            raise ValueError("malformed delimiter line after part %d" % len(parts))
        parts.append(_split_part(rest))
    raise ValueError("no close delimiter (--%s--)" % boundary)


def _split_part(data):
    """(headers, content) of one body part: header lines, a blank line,
    the content (no headers: the part starts with the blank line)."""
    if data.startswith(b"\r\n"):
        return {}, data[2:]
    head, sep, content = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("part without a blank line after its headers")
    headers = {}
    name = None
    for line in head.decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and name is not None:
            headers[name] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError("bad part header line %r" % line)
        name = name.strip().lower()
        headers[name] = value.strip()
    return headers, content


# --------------------------------------------------------------- Orthanc

class Orthanc(ManagedProcess):
    """A temporary Orthanc (with DICOMweb) on ephemeral loopback ports.

    modalities: {AET: (host, port)} declared as DICOM peers (C-MOVE
    destinations, allowed to C-FIND/C-MOVE/C-GET); add_modality() adds more
    while running.
    extra_config: top-level keys merged into config(); a "DicomWeb" dict is
    merged into the DicomWeb section (e.g. {"DicomWeb": {"Servers": ...}}).
    """

    name = "Orthanc"

    def __init__(self, workdir, aet="ORTHANC", modalities=None, extra_config=None):
        self.workdir = Path(workdir)
        super().__init__(self.workdir / "orthanc.log")
        self.aet = aet
        self.host = LOOPBACK
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.modalities = dict(modalities or {})
        self.extra_config = dict(extra_config or {})
        self.url = "http://%s:%d" % (LOOPBACK, self.http_port)

    @property
    def dicomweb_url(self):
        """Root of its DICOMweb API (no trailing slash)."""
        return self.url + "/dicom-web"

    def config(self):
        """Orthanc configuration (a dict), extra_config merged in."""
        extra = dict(self.extra_config)
        dicomweb = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                    "WadoRoot": "/wado", "Ssl": False,
                    "StudiesMetadata": "Full", "SeriesMetadata": "Full"}
        dicomweb.update(extra.pop("DicomWeb", {}))
        return dict({
            "Name": "drimbox-test-pacs",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {aet: _modality(aet, host, port)
                                for aet, (host, port) in self.modalities.items()},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": dicomweb,
        }, **extra)

    def start(self, timeout=10):
        """Start Orthanc and wait until GET /system answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        self._spawn([ORTHANC_BIN, "--no-jobs", str(cfg)])
        self._wait_ready(self._answers, timeout)
        return self

    def stop(self, timeout=5):
        """SIGKILL: a graceful Orthanc shutdown takes ~3 s and its data is
        throw-away (SQLite survives it if the same workdir is restarted)."""
        self.kill9()

    def _answers(self):
        try:
            self.rest("GET", "/system")
            return True
        except (OSError, HarnessError):
            return False

    def rest(self, method, path, body=None, raw=False, timeout=60):
        """REST call; body: dict/list (sent as JSON) or bytes.

        Returns parsed JSON, or bytes if raw (or if the answer is not JSON).
        """
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                content = resp.read()
        except urllib.error.HTTPError as e:
            raise HarnessError("Orthanc %s %s: HTTP %d %s"
                               % (method, path, e.code, e.read()[:500])) from None
        if raw:
            return content
        try:
            return json.loads(content) if content else None
        except ValueError:
            return content

    def add_modality(self, aet, host, port):
        """Declare (or redefine) a DICOM peer while Orthanc runs."""
        self.modalities[aet] = (host, port)
        self.rest("PUT", "/modalities/" + aet, _modality(aet, host, port))

    def load_dir(self, path, method="storescu"):
        """Send every .dcm under path: "storescu" (C-STORE) or "rest" (POST).

        Returns the number of files sent.
        """
        files = dicom_files(path)
        if not files:
            raise HarnessError("no .dcm file under %s" % path)
        if method == "rest":
            for f in files:
                self.rest("POST", "/instances", f.read_bytes())
        else:
            self._storescu(path, files)
        return len(files)

    def _storescu(self, path, files):
        with TempDir("drimbox-storescu-") as tmp:
            profile = tmp / "store.cfg"
            write_store_profile(files, profile)
            argv = ["storescu", "-xf", str(profile), "Default", "+sd", "+r",
                    "+sp", "*.dcm", "-aet", "STORESCU", "-aec", self.aet,
                    LOOPBACK, str(self.dicom_port), str(path)]
            proc = subprocess.run(argv, capture_output=True, text=True, env=dicom_env())
        if proc.returncode != 0 or "E: " in proc.stderr:
            raise HarnessError("storescu failed (%d):\n%s%s"
                               % (proc.returncode, proc.stdout, proc.stderr[-3000:]))

    def studies(self):
        """Expanded /studies (Orthanc resources)."""
        return self.rest("GET", "/studies?expand")

    def study_uids(self):
        """StudyInstanceUIDs of the studies held."""
        return {s["MainDicomTags"]["StudyInstanceUID"] for s in self.studies()}

    def _lookup(self, uid, level):
        for hit in self.rest("POST", "/tools/lookup", uid.encode()):
            if hit["Type"] == level:
                return hit["ID"]
        raise HarnessError("%s %s not in Orthanc" % (level, uid))

    def instances_of_study(self, study_uid):
        """{sop_uid: orthanc_id} of one study."""
        study_id = self._lookup(study_uid, "Study")
        return {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"]
                for i in self.rest("GET", "/studies/%s/instances" % study_id)}

    def instance_file(self, orthanc_id):
        """Stored DICOM file of an instance (bytes)."""
        return self.rest("GET", "/instances/%s/file" % orthanc_id, raw=True)

    def uid_tree(self):
        """{study_uid: {series_uid: set(sop_uids)}} of everything stored."""
        studies = {st["ID"]: st["MainDicomTags"]["StudyInstanceUID"] for st in self.studies()}
        tree = {uid: {} for uid in studies.values()}
        series_key = {}
        for se in self.rest("GET", "/series?expand"):
            key = (studies[se["ParentStudy"]], se["MainDicomTags"]["SeriesInstanceUID"])
            series_key[se["ID"]] = key
            tree[key[0]][key[1]] = set()
        for inst in self.rest("GET", "/instances?expand"):
            study_uid, series_uid = series_key[inst["ParentSeries"]]
            tree[study_uid][series_uid].add(inst["MainDicomTags"]["SOPInstanceUID"])
        return tree

    def clear(self):
        """Delete every study."""
        for study_id in self.rest("GET", "/studies"):
            self.rest("DELETE", "/studies/" + study_id)


def _modality(aet, host, port):
    return {"AET": aet, "Host": host, "Port": port, "AllowEcho": True,
            "AllowFind": True, "AllowMove": True, "AllowGet": True,
            "AllowStore": True}


# -------------------------------------------------------------- storescp

class Storescp(ManagedProcess):
    """DCMTK storescp accepting every transfer syntax (+xa) into a directory."""

    name = "storescp"

    def __init__(self, workdir, aet="STORESCP"):
        self.workdir = Path(workdir)
        super().__init__(self.workdir / "storescp.log")
        self.aet = aet
        self.port = free_port()
        self.out_dir = self.workdir / "received"

    def start(self, timeout=10):
        """Start storescp and wait until it answers C-ECHO."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(["storescp", "+xa", "-aet", self.aet, "-od", str(self.out_dir),
                     str(self.port)])
        self._wait_ready(self._echo_ok, timeout)
        return self

    def _echo_ok(self):
        return subprocess.run(["echoscu", "-aec", self.aet, LOOPBACK, str(self.port)],
                              capture_output=True, env=dicom_env()).returncode == 0

    def files(self):
        """Files received so far."""
        return sorted(p for p in self.out_dir.iterdir() if p.is_file())

    def clear(self):
        """Delete the received files."""
        for f in self.files():
            f.unlink()


# --------------------------------------------------------------- drimbox

def drimbox_binaries():
    """(drimboxd, drimbox) paths: $DRIMBOXD / $DRIMBOX or build/src/."""
    return (Path(os.environ.get("DRIMBOXD", REPO / "build" / "src" / "drimboxd")),
            Path(os.environ.get("DRIMBOX", REPO / "build" / "src" / "drimbox")))


class Drimbox(ManagedProcess):
    """A drimboxd daemon with its own config, data and cache directories.

    pacs: a running Orthanc (drimbox's AE is declared in it) or None.
    extra: more config keys, overriding the defaults.
    """

    name = "drimboxd"

    def __init__(self, workdir, pacs=None, aet="DRIMBOX", retrieve="move", extra=None):
        self.workdir = Path(workdir)
        super().__init__(self.workdir / "drimboxd.log")
        self.daemon_bin, self.cli_bin = drimbox_binaries()
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.conf_path = self.workdir / "drimbox.conf"
        self.settings = {
            "data_dir": self.workdir / "data",
            "cache_dir": self.workdir / "cache",
            "cache_max_mb": 4096,
            "log_level": "info",
            "control_socket": self.workdir / "drimboxd.sock",
            "dicom_aet": aet,
            "dicom_bind": LOOPBACK,
            "dicom_port": self.dicom_port,
            "http_bind": LOOPBACK,
            "http_port": self.http_port,
            "auth": "none",  # tests that sign in set auth = psc (PscSim)
            "sync_interval": 0,
            "sync_window_days": 7,
            "viewer_dir": os.environ.get("DRIMBOX_VIEWER", REPO / "build" / "viewer"),
        }
        if pacs is not None:
            self.settings.update(pacs_host=pacs.host, pacs_port=pacs.dicom_port,
                                 pacs_aet=pacs.aet, pacs_retrieve=retrieve,
                                 pacs_timeout=30)
        if TEST_INDEX == "postgresql":
            self.settings["index_url"] = shared_postgres().create_database()
        self.settings.update(extra or {})
        self.http_port = self.settings["http_port"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        if pacs is not None:
            pacs.add_modality(aet, LOOPBACK, self.dicom_port)

    @property
    def cache_dir(self):
        """Path of the cache directory."""
        return Path(self.settings["cache_dir"])

    @property
    def index_target(self):
        """Its index: the PostgreSQL URI, or the SQLite file."""
        return str(self.settings.get("index_url") or
                   Path(self.settings["data_dir"]) / "index.db")

    def sql(self, query):
        """Rows of query on its index (see sql_query)."""
        return sql_query(self.index_target, query)

    def index_copy(self, directory):
        """A copy of its index as it is now: (the config lines, data_dir in
        directory, that open it; its target for sql_query)."""
        if self.settings.get("index_url"):
            url = shared_postgres().copy_database(self.settings["index_url"])
            return "data_dir = %s\nindex_url = %s\n" % (directory, url), url
        import sqlite3
        target = os.path.join(directory, "index.db")
        live = sqlite3.connect(self.index_target)
        copy = sqlite3.connect(target)
        live.backup(copy)
        live.close()
        copy.close()
        return "data_dir = %s\n" % directory, target

    @property
    def dicomweb_url(self):
        """Root of its DICOMweb API (no trailing slash)."""
        return "http://%s:%s%s" % (LOOPBACK, self.settings["http_port"],
                                   str(self.settings.get("dicomweb_root", "/dicomweb"))
                                   .rstrip("/"))

    def write_config(self):
        """(Re)write the `key = value` config file from self.settings."""
        lines = ["# drimbox test configuration (tests/lib/harness.py)"]
        lines += ["%s = %s" % (k, v) for k, v in self.settings.items()]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout=10):
        """Start drimboxd and wait until `drimbox status` succeeds."""
        for binary in (self.daemon_bin, self.cli_bin):
            if not os.access(binary, os.X_OK):
                raise HarnessError("drimbox binary not found: %s (set DRIMBOXD/DRIMBOX)"
                                   % binary)
        self._killed = False
        self._spawn(DRIMBOXD_WRAP + [str(self.daemon_bin), "-c", str(self.conf_path)])
        self._wait_ready(self._status_ok, timeout * SLOW)
        return self

    def _status_ok(self):
        return self.cli("status", check=False, timeout=5 * SLOW).returncode == 0

    def stop(self, timeout=10):
        """SIGTERM; the daemon must exit 0 and its log must be free of
        sanitizer reports (AddressSanitizer, UBSan "runtime error:") and
        of valgrind errors (make check-valgrind)."""
        proc = self.proc
        was_running = self.running()
        killed = getattr(self, "_killed", False)
        super().stop(timeout * SLOW)
        if proc is None or (not was_running and killed):
            return
        if not was_running:
            raise HarnessError("drimboxd died (exit %s) before it was stopped:\n%s"
                               % (proc.returncode, tail(self.log_path, 60)))
        log = self.log_text()
        if proc.returncode != 0 or "Sanitizer" in log or "runtime error:" in log or \
                re.search(r"ERROR SUMMARY: [1-9]", log):
            raise HarnessError("drimboxd did not stop cleanly (exit %s):\n%s"
                               % (proc.returncode, tail(self.log_path, 60)))

    def cli(self, *args, check=True, timeout=300):
        """Run `drimbox -c CONF args...`; CompletedProcess with text output."""
        argv = [str(self.cli_bin), "-c", str(self.conf_path)] + [str(a) for a in args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True,
                                  env=dicom_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError("%s: timed out after %s s\n--- daemon log ---\n%s"
                               % (" ".join(argv), timeout, tail(self.log_path))) from None
        if check and proc.returncode != 0:
            raise HarnessError("%s: exit %d\nstdout: %s\nstderr: %s\n--- daemon log ---\n%s"
                               % (" ".join(argv), proc.returncode, proc.stdout,
                                  proc.stderr, tail(self.log_path)))
        return proc

    def ls(self):
        """Parsed `drimbox ls --json` (an instance "path" may be relative
        to cache_dir: resolve it with `self.cache_dir / path`)."""
        return json.loads(self.cli("ls", "--json").stdout)


# -------------------------------------------------------------- selftest

def selftest():
    """Small set -> Orthanc via storescu, then via REST: check UIDs and pixels."""
    with TempDir() as tmp:
        manifest = generate_studies("small", tmp / "data")
        expected = manifest_uid_tree(manifest)
        with Orthanc(tmp / "orthanc") as pacs:
            for method in ("storescu", "rest"):
                pacs.clear()
                pacs.load_dir(tmp / "data", method=method)
                got = pacs.uid_tree()
                if got != expected:
                    raise HarnessError("%s: Orthanc UID tree differs from manifest:\n"
                                       "expected %s\ngot %s" % (method, expected, got))
                for study in manifest["studies"]:
                    _check_stored_copy(pacs, study, tmp / "data", method)


def _check_stored_copy(pacs, study, data_dir, method):
    """The first instance of each series is stored with its syntax and pixels."""
    ids = pacs.instances_of_study(study["study_uid"])
    for series in study["series"]:
        inst = series["instances"][0]
        stored = pydicom.dcmread(io.BytesIO(pacs.instance_file(ids[inst["sop_uid"]])))
        original = pydicom.dcmread(data_dir / inst["path"])
        if stored.file_meta.TransferSyntaxUID != inst["transfer_syntax"] \
                or stored.PixelData != original.PixelData:
            raise HarnessError("%s: stored copy of %s differs (syntax %s)"
                               % (method, inst["path"], stored.file_meta.TransferSyntaxUID))


if __name__ == "__main__":
    if sys.argv[1:] != ["--selftest"]:
        sys.exit("usage: harness.py --selftest")
    started = time.monotonic()
    try:
        selftest()
    except HarnessError as e:
        sys.exit("selftest FAILED: %s" % e)
    if os.environ.get("VERBOSE"):
        print("selftest ok in %.1f s" % (time.monotonic() - started))


class Simulator(ManagedProcess):
    """A simulator of ours (tests/*-sim/) with its /_sim/ control API at
    self.url; ready once ready_probe answers."""

    ready_probe = "requests"

    def _context(self):
        return None  # plain HTTP

    def _answers(self):
        try:
            return self.control(self.ready_probe) is not None
        except OSError:
            return False

    def control(self, path, obj=None):
        """GET (obj None) or POST JSON to a /_sim/ endpoint; the JSON answer."""
        data = None if obj is None else json.dumps(obj).encode()
        req = urllib.request.Request(self.url + "/_sim/" + path, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30, context=self._context()) as resp:
            return json.loads(resp.read())


class PscSim(Simulator):
    """The Pro Santé Connect simulator (tests/psc-sim/pscsim.py) on
    loopback, with one client per (id, secret) of clients."""

    name = "pscsim"

    def __init__(self, workdir, clients=(("drimbox", "secret"),), token_seconds=300):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.workdir / "pscsim.log")
        self.port = free_port()
        self.url = "http://%s:%d" % (LOOPBACK, self.port)
        self.issuer = self.url + "/auth/realms/esante-wallet"
        self.clients = list(clients)
        self.token_seconds = token_seconds

    def start(self, timeout=10):
        argv = ["/usr/bin/python3", str(REPO / "tests" / "psc-sim" / "pscsim.py"),
                "--port", str(self.port), "--token-seconds", str(self.token_seconds)]
        for cid, secret in self.clients:
            argv += ["--client", "%s:%s" % (cid, secret)]
        self._spawn(argv)
        self._wait_ready(self._answers, timeout)
        return self

    def settings(self, client=None):
        """drimboxd config keys that sign in with this simulator."""
        cid, secret = client or self.clients[0]
        return {"auth": "psc", "psc_issuer": self.issuer, "psc_client_id": cid,
                "psc_client_secret": secret}


class DmpSim(Simulator):
    """The DMP simulator (tests/dmp-sim/dmpsim.py) on loopback."""

    name = "dmpsim"
    ready_probe = "documents"

    def __init__(self, workdir, trust=None, tls=None):
        """tls: (cert, key, ca, client cert, client key) PEM paths: HTTPS,
        client certificates from ca required (the control calls use the
        client certificate)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.workdir / "dmpsim.log")
        self.port = free_port()
        self.url = "%s://%s:%d" % ("https" if tls else "http", LOOPBACK, self.port)
        self.trust, self.tls = trust, tls

    def start(self, timeout=30):
        """Start it and wait until it answers (its imports, pydicom and
        lxml, take seconds on a loaded 2-core machine)."""
        argv = ["/usr/bin/python3", str(REPO / "tests" / "dmp-sim" / "dmpsim.py"),
                "--port", str(self.port), "--db", str(self.workdir / "dmp.db")]
        if self.trust:
            argv += ["--trust", str(self.trust)]
        if self.tls:
            argv += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1]),
                     "--tls-ca", str(self.tls[2])]
        self._spawn(argv)
        self._wait_ready(self._answers, timeout)
        return self

    def _context(self):
        if not self.tls:
            return None
        import ssl
        ctx = ssl.create_default_context(cafile=str(self.tls[2]))
        ctx.load_cert_chain(str(self.tls[3]), str(self.tls[4]))
        return ctx


    def service_url(self, service):
        return "%s/si-dmp-server/v2/services/%s" % (self.url, service)

