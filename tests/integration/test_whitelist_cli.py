"""`drimbox whitelist`: what an operator runs on the list the ANS
publishes. The signed referencing list verifies against the IGC-Santé TEST
root (whitelist_trust) and its DRIMboxes are listed; the unsigned one and a
tampered copy are refused with the reason, exit status 1."""

import base64
import os
import re
import subprocess
import textwrap
import unittest

from harness import TempDir, drimbox_binaries
from shared import shared_dir

LISTS = shared_dir() / "drim-m-data" / "referencement-drimbox" / "liste-blanche-test"
SIGNED = LISTS / "liste-blanche-signee" / "LISTEBLANCHE_DRIM-M_SIGNEE_TEST.xml"
UNSIGNED = LISTS / "liste-blanche-non-signee" / "LISTEBLANCHE_DRIM-M_NONSIGNEE_TEST.xml"


class WhitelistCliTest(unittest.TestCase):

    def setUp(self):
        tmp = TempDir("drimbox-wl-")
        self.dir = tmp.__enter__()
        self.addCleanup(tmp.__exit__, None, None, None)
        # the root of the chain in the list's KeyInfo: the test anchor
        der = re.findall(r"<ds:X509Certificate>(.*?)</ds:X509Certificate>",
                         SIGNED.read_text(encoding="utf-8"), re.S)[2]
        b64 = base64.b64encode(base64.b64decode(re.sub(r"\s", "", der))).decode()
        (self.dir / "root.pem").write_text("-----BEGIN CERTIFICATE-----\n%s\n"
                                           "-----END CERTIFICATE-----\n"
                                           % "\n".join(textwrap.wrap(b64, 64)))
        self.conf = self.dir / "drimbox.conf"
        self.conf.write_text("data_dir = %s\nwhitelist_trust = %s\nwhitelist_file = %s\n"
                             "auth = none\n" % (self.dir, self.dir / "root.pem", SIGNED))

    def run_cli(self, *args):
        return subprocess.run([str(drimbox_binaries()[1]), "-c", str(self.conf), "whitelist"]
                              + [str(a) for a in args], capture_output=True, text=True)

    def test_the_signed_list_is_listed(self):
        out = self.run_cli()
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("signature valid", out.stdout)
        self.assertIn("17 DRIMboxes", out.stdout)
        self.assertIn("db3.test.mesimagesmedicales.fr", out.stdout)

    def test_unsigned_and_tampered_lists_are_refused(self):
        out = self.run_cli(UNSIGNED)
        self.assertEqual(out.returncode, 1)
        self.assertIn("REFUSED: not signed", out.stderr)
        tampered = self.dir / "tampered.xml"
        tampered.write_bytes(SIGNED.read_bytes().replace(b"<db>db3.", b"<db>db9.", 1))
        out = self.run_cli(tampered)
        self.assertEqual(out.returncode, 1)
        self.assertIn("REFUSED: the signature does not verify", out.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TCP_NODELAY", "1")
    unittest.main(verbosity=2)
