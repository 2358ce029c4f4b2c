"""What a site installs: `meson install` (what make install runs) into a
DESTDIR, the systemd unit (systemd-analyze verify), the logrotate file
(logrotate -d), docker/compose.yaml (docker-compose config), and
docker/Dockerfile: it builds with the Makefile's own targets, and its
runtime packages hold every library the binaries link."""

import json
import os
import re
import subprocess
import unittest
from pathlib import Path

import harness
import yaml

REPO = harness.REPO
BUILD = Path(os.environ.get("DRIMBOXD", REPO / "build" / "src" / "drimboxd")).resolve().parents[1]


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


def build_option(name):
    opts = json.loads(run("meson", "introspect", BUILD, "--buildoptions",
                          check=True).stdout)
    return next(o["value"] for o in opts if o["name"] == name)


def runtime_packages():
    """The [runtime] section of .ci/debian-packages."""
    section, out = None, set()
    for line in (REPO / ".ci" / "debian-packages").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "runtime":
            out.add(line)
    return out


class InstallTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("drimbox-install-")
        cls.dest = cls.tmp.__enter__() / "root"
        cls.prefix = build_option("prefix")
        sysconf = build_option("sysconfdir")
        cls.etc = Path(sysconf if sysconf.startswith("/") else cls.prefix + "/" + sysconf)
        cls.install()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.__exit__(None, None, None)

    @classmethod
    def install(cls):
        r = run("meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", cls.dest)
        if r.returncode != 0:
            raise AssertionError("meson install failed:\n" + r.stdout + r.stderr)

    def at(self, path):
        return self.dest / str(path).lstrip("/")

    def test_the_tree_installed(self):
        p = self.prefix
        for f in ("%s/sbin/drimboxd" % p, "%s/bin/drimbox" % p,
                  "%s/share/drimbox/viewer/index.html" % p,
                  "%s/share/drimbox/web/conso/index.html" % p,
                  "%s/lib/systemd/system/drimboxd.service" % p,
                  "%s/lib/sysusers.d/drimbox.conf" % p,
                  "%s/logrotate.d/drimbox" % self.etc,
                  "%s/drimbox/drimbox.conf" % self.etc,
                  "%s/drimbox/drimbox.conf.reference" % self.etc,
                  "%s/share/doc/drimbox/admin-guide.md" % p):
            self.assertTrue(self.at(f).is_file(), f)
        # the installed daemon looks for its files where they were put
        conf = run(self.at(p + "/sbin/drimboxd"), "--print-config", check=True).stdout
        self.assertIn("viewer_dir = %s/share/drimbox/viewer\n" % p, conf)
        self.assertIn("web_dir = %s/share/drimbox/web\n" % p, conf)
        usage = run(self.at(p + "/bin/drimbox"), "--help").stdout
        self.assertIn("%s/drimbox/drimbox.conf" % self.etc, usage)

    def test_a_sites_configuration_is_never_replaced(self):
        conf = self.at("%s/drimbox/drimbox.conf" % self.etc)
        conf.write_text("pacs_aet = SITEPACS\n")
        self.install()
        self.assertEqual(conf.read_text(), "pacs_aet = SITEPACS\n")
        self.assertEqual(self.at("%s/drimbox/drimbox.conf.reference" % self.etc).read_text(),
                         (REPO / "conf" / "drimbox.conf").read_text())

    def test_the_systemd_unit(self):
        unit = self.at(self.prefix + "/lib/systemd/system/drimboxd.service")
        text = unit.read_text()
        self.assertIn("ExecStart=%s/sbin/drimboxd -c %s/drimbox/drimbox.conf\n"
                      % (self.prefix, self.etc), text)
        for line in ("User=drimbox", "Restart=on-failure", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "StateDirectory=drimbox",
                     "CacheDirectory=drimbox", "ExecReload=/bin/kill -HUP $MAINPID"):
            self.assertIn(line + "\n", text)
        # systemd's own check, the paths pointing into the installed tree
        copy = self.dest / "drimboxd.service"
        copy.write_text(text.replace(self.prefix + "/sbin/", str(self.at(self.prefix)) + "/sbin/"))
        r = run("systemd-analyze", "verify", "--man=no", copy)
        problems = [l for l in (r.stdout + r.stderr).splitlines()
                    if "drimboxd.service" in l]
        self.assertEqual((r.returncode, problems), (0, []), r.stdout + r.stderr)
        users = self.at(self.prefix + "/lib/sysusers.d/drimbox.conf").read_text()
        self.assertRegex(users, r"(?m)^u drimbox - ")

    def test_logrotate_parses_its_file(self):
        text = self.at("%s/logrotate.d/drimbox" % self.etc).read_text()
        self.assertIn("create 0640 drimbox drimbox\n", text)
        self.assertIn("systemctl kill --signal=HUP drimboxd.service", text)
        # parsed by logrotate (as root: the user drimbox exists only once
        # systemd-sysusers ran on a real install)
        copy = self.dest / "logrotate.conf"
        copy.write_text(text.replace("drimbox drimbox", "root root"))
        r = run("logrotate", "-d", "-s", self.dest / "logrotate.state", copy)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("/var/log/drimbox/*.log", r.stderr)
        self.assertNotIn("error:", r.stderr)


class DockerTest(unittest.TestCase):

    def test_compose_file_validates(self):
        r = run("docker-compose", "-f", REPO / "docker" / "compose.yaml", "config")
        self.assertEqual(r.returncode, 0, r.stderr)
        compose = yaml.safe_load(r.stdout)
        self.assertEqual(set(compose["services"]),
                         {"orthanc", "setup", "dmp-sim", "psc-sim", "drimbox"})
        box = compose["services"]["drimbox"]
        self.assertEqual(box["build"]["target"], "runtime")
        self.assertLessEqual({"drimbox-index:/var/lib/drimbox:rw",
                              "drimbox-cache:/var/cache/drimbox:rw"}, set(box["volumes"]))
        # drimbox starts once the keys and the sample studies are there
        self.assertEqual(box["depends_on"]["setup"]["condition"],
                         "service_completed_successfully")

    def test_scale_compose_runs_three_nodes_on_one_index_and_one_cache(self):
        r = run("docker-compose", "-f", REPO / "docker" / "compose.scale.yaml", "config")
        self.assertEqual(r.returncode, 0, r.stderr)
        compose = yaml.safe_load(r.stdout)
        nodes = {n: s for n, s in compose["services"].items() if n.startswith("drimbox")}
        self.assertEqual(set(compose["services"]) - set(nodes),
                         {"postgres", "orthanc", "setup", "dmp-sim", "psc-sim", "lb"})
        self.assertEqual(len(nodes), 3)
        names, ports = set(), set()
        for name, node in nodes.items():
            self.assertIn("drimbox-cache:/var/cache/drimbox:rw", node["volumes"], name)
            conf = REPO / "docker" / "scale" / Path(node["entrypoint"][-1]).name
            r = run(BUILD / "src" / "drimboxd", "-c", conf, "--check-config")
            self.assertEqual(r.returncode, 0, r.stderr)
            keys = {}
            for f in (conf.parent / "common.conf", conf):  # as include reads them
                keys.update(line.split(" = ", 1) for line in f.read_text().splitlines()
                            if " = " in line and not line.startswith("#"))
            self.assertTrue(keys["index_url"].startswith("postgresql://"), name)
            self.assertEqual(keys["cache_dir"], "/var/cache/drimbox")
            names.add(keys["node_name"])
            ports.add((keys["http_port"], keys["hl7_port"], keys["dicom_port"]))
        self.assertEqual(len(names), 3)
        self.assertEqual(len(ports), 3)
        # the balancer's configuration is valid nginx
        lb = REPO / "docker" / "scale" / "nginx.conf"
        r = run("nginx", "-t", "-c", lb, "-g", "error_log /dev/null;")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_dockerfile_builds_with_the_makefiles_steps(self):
        text = (REPO / "docker" / "Dockerfile").read_text()
        stages = dict(re.findall(r"(?ms)^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", text))
        self.assertEqual(set(stages), {"build", "orthanc", "sims", "postgres", "lb",
                                       "runtime"})
        self.assertRegex(stages["build"], r"make build BUILD=\S+ PREFIX=/usr")
        self.assertRegex(stages["build"], r"make install BUILD=\S+ PREFIX=/usr DESTDIR=/out")
        self.assertIn("install-deps runtime", stages["runtime"])
        self.assertIn("COPY --from=build /out/ /", stages["runtime"])
        self.assertRegex(stages["runtime"], r"(?m)^USER drimbox$")
        self.assertIn("/ready", stages["runtime"])
        self.assertTrue(text.rstrip().endswith(
            'ENTRYPOINT ["/usr/sbin/drimboxd", "-c", "/etc/drimbox/drimbox.conf"]'),
            "the runtime image must be the last stage (docker build's default)")
        # make build installs only the build and runtime sections
        self.assertIn("install-deps build runtime", (REPO / "Makefile").read_text())

    def test_runtime_packages_hold_every_linked_library(self):
        wanted = runtime_packages()
        for binary in (BUILD / "src" / "drimboxd", BUILD / "src" / "drimbox"):
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                                run("readelf", "-d", binary, check=True).stdout)
            out = run("ldd", binary).stdout
            paths = dict(re.findall(r"^\s*(\S+) => (\S+)", out, re.M))
            # the dynamic loader is listed by its path alone
            paths.update((os.path.basename(p), p)
                         for p in re.findall(r"^\s*(/\S+) \(0x", out, re.M))
            for soname in needed:
                if soname.startswith(("libasan.", "libubsan.")):
                    continue  # make asan's build: its runtime never ships
                path = paths.get(soname)
                self.assertIsNotNone(path, soname)
                owner = run("dpkg", "-S", os.path.realpath(path))
                if owner.returncode != 0:  # /lib vs /usr/lib (merged /usr)
                    owner = run("dpkg", "-S", path)
                package = owner.stdout.split(":")[0]
                self.assertIn(package, wanted,
                              "%s of %s comes from %s, not in [runtime]"
                              % (soname, binary.name, package))


if __name__ == "__main__":
    unittest.main()
