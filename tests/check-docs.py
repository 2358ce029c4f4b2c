#!/usr/bin/python3
"""The documentation cannot drift from the code:

- docs/admin-guide.md's configuration reference (between its config
  markers) is what `drimboxd --print-config-md` writes, and it names every
  key of the schema in src/config.c;
- docs/api.md names every HTTP path the code compares a request's URL with
  (src/*.c: strcmp/strncmp on url, the consumer API's sub-paths, the
  DICOMweb sub-resources, the path #defines).

  tests/check-docs.py DRIMBOXD SOURCE_ROOT DATADIR [--update]
--update rewrites the generated block of the guide instead of checking it.
"""

import re
import subprocess
import sys
from pathlib import Path

BEGIN, END = "<!-- config:begin -->", "<!-- config:end -->"


def generated_config(drimboxd, datadir):
    out = subprocess.run([drimboxd, "--print-config-md"], check=True,
                         capture_output=True, text=True).stdout
    return out.replace(datadir, "/usr/share/drimbox")


def schema_keys(src):
    text = (src / "src" / "config.c").read_text()
    return re.findall(r'^\t\{ "([a-z0-9_]+)", (?:STR|INT|ENUM|AET)\(', text, re.M)


def code_routes(src):
    """Every path literal a request URL is compared with, as documented."""
    routes = set()
    for c in sorted((src / "src").glob("*.c")):
        text = c.read_text()
        for m in re.finditer(r'str(?:n)?cmp\(url, "(/[^"]*)"', text):
            routes.add(m.group(1))
        for m in re.finditer(r'#define [A-Z_]+ "(/[A-Za-z][^"]*)"', text):
            routes.add(m.group(1))
        if c.name == "conso.c":  # the consumer page's API: API "path"
            for m in re.finditer(r'str(?:n)?cmp\(path, "([a-z/]+)"', text):
                routes.add("/conso/api/" + m.group(1))
            for m in re.finditer(r'strcmp\(action, "([a-z]+)"\)', text):
                routes.add("/conso/api/exams/{id}/" + m.group(1))
        if c.name == "wado.c":  # the DICOMweb sub-resources
            for m in re.finditer(r'str(?:n)?cmp\([tr], "/?([a-z]+/?)"', text):
                routes.add(m.group(1))
    return routes


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    drimboxd, src, datadir = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    guide_path = src / "docs" / "admin-guide.md"
    guide = guide_path.read_text()
    if BEGIN not in guide or END not in guide:
        sys.exit("%s: the markers %s and %s are missing" % (guide_path, BEGIN, END))
    head, rest = guide.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    want = "\n" + generated_config(drimboxd, datadir)
    if "--update" in sys.argv[4:]:
        guide_path.write_text(head + BEGIN + want + END + tail)
        return
    problems = []
    if block != want:
        problems.append("%s: the configuration reference is out of date: run %s"
                        % (guide_path, " ".join(sys.argv[:4] + ["--update"])))
    for key in schema_keys(src):
        if "`%s`" % key not in block:
            problems.append("%s: configuration key %s not documented" % (guide_path, key))
    api = (src / "docs" / "api.md").read_text()
    for route in sorted(code_routes(src)):
        if route not in api:
            problems.append("docs/api.md: route %r of the code not documented" % route)
    if problems:
        sys.exit("\n".join(problems))
    print("docs: %d configuration keys, %d routes documented"
          % (len(schema_keys(src)), len(code_routes(src))))


if __name__ == "__main__":
    main()
