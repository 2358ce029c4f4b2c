"""The benchmarks' HTTP load: wrk (Debian package "wrk") driven by a Lua
script that cycles over a list of requests, and its report parsed; and a
sign-in through the PSC simulator, for the session cookie a browser would
send.
"""

import http.client
import json
import re
import shutil
import subprocess
import tempfile
import urllib.parse

import harness


def sign_in(box):
    """The session cookie ("name=value") of a sign-in to a drimboxd whose
    auth is the PSC simulator (which approves at once)."""

    def get(url, cookie=None):
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.request("GET", u.path + ("?" + u.query if u.query else ""),
                  headers={"Cookie": cookie} if cookie else {})
        r = c.getresponse()
        r.read()
        c.close()
        return r.getheader("Location"), (r.getheader("Set-Cookie") or "").split(";")[0]

    loc, binding = get("http://%s:%d/auth/login?next=/health" % (harness.LOOPBACK, box.http_port))
    loc, _ = get(loc)
    _, cookie = get(loc, binding)
    return cookie


def _ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run(url_root, requests, connections, duration, threads=1, headers=None, timeout=10):
    """wrk on url_root ("http://host:port"), keep-alive connections cycling
    over requests, a list of (path, Accept or None), each connection
    starting at its own place. headers: {name: value} sent with each.
    Returns {"requests", "rps", "p50_ms", "p99_ms", "non_2xx", "socket_errors"}.
    """
    if shutil.which("wrk") is None:
        raise harness.HarnessError("wrk not found (apt-get install wrk)")
    u = urllib.parse.urlsplit(url_root)
    lines = ",\n".join("{%s, %s}" % (json.dumps(p), json.dumps(a) if a else "nil")
                       for p, a in requests)
    extra = ", ".join("[%s] = %s" % (json.dumps(k), json.dumps(v))
                      for k, v in (headers or {}).items())
    # wrk.format() does not add wrk.headers to the headers it is given
    script = ("local reqs = {%s}\n"
              "local extra = {%s}\n"
              "local i = 0\n"
              "init = function(args) i = math.random(#reqs) end\n"
              "request = function()\n"
              "  i = i %% #reqs + 1\n"
              "  local h = {}\n"
              "  for k, v in pairs(extra) do h[k] = v end\n"
              "  h[\"Accept\"] = reqs[i][2]\n"
              "  return wrk.format(\"GET\", reqs[i][1], h)\n"
              "end\n" % (lines, extra))
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        proc = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % connections,
                               "-d%ds" % duration, "--timeout", "%ds" % timeout,
                               "--latency", "-s", f.name, "http://%s:%d/" % (u.hostname, u.port)],
                              capture_output=True, text=True)
    out = proc.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    if proc.returncode != 0 or rate is None or done is None:
        raise harness.HarnessError("wrk failed (%d):\n%s%s" % (proc.returncode, out, proc.stderr))
    pct = {int(p): _ms(v, unit) for p, v, unit in
           re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                        r"timeout (\d+)", out)
    return {"requests": int(done.group(1)), "rps": float(rate.group(1)),
            "p50_ms": pct.get(50), "p99_ms": pct.get(99),
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(map(int, sockets.groups())) if sockets else 0,
            "report": out}
