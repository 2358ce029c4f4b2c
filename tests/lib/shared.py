#!/usr/bin/python3
"""Where the ANS sample data (the project's ../shared directory) is.

In order: $DRIMBOX_SHARED; the directory beside this repository; the one
beside the repository this one was cloned from (a clean clone made
elsewhere, as CI and `git clone . $(mktemp -d)` do). Run as a script, prints
the path (meson passes it to the C tests), or fails saying where it looked.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def candidates():
    """The places looked at, in order."""
    if os.environ.get("DRIMBOX_SHARED"):
        yield Path(os.environ["DRIMBOX_SHARED"])
    yield REPO.parent / "shared"
    origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:
        yield (REPO / origin).resolve().parent / "shared"


def shared_dir():
    """The ANS sample data directory; raises FileNotFoundError if none."""
    tried = []
    for path in candidates():
        if (path / "drim-m-data").is_dir():
            return path
        tried.append(str(path))
    raise FileNotFoundError("ANS sample data (../shared) not found; looked in %s; "
                            "set DRIMBOX_SHARED" % ", ".join(tried))


if __name__ == "__main__":
    try:
        print(shared_dir())
    except FileNotFoundError as e:
        sys.exit(str(e))
