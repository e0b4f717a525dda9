"""TEST DOUBLE of OpenSSH's scp: copies the sources to the path after "HOST:" on this machine.

  FAKE_SCP_RECORD  append this run's argv (JSON, one line) to this file
  FAKE_SCP_FAIL    print this on stderr and exit 1, as scp does when a copy fails"""
from __future__ import annotations

import json
import os
import shutil
import sys

WITH_ARGUMENT = set("cFiJloPSDX")   # scp options that take a value


def main() -> int:
    args = sys.argv[1:]
    if os.environ.get("FAKE_SCP_RECORD"):
        with open(os.environ["FAKE_SCP_RECORD"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(args) + "\n")
    if os.environ.get("FAKE_SCP_FAIL"):
        print(os.environ["FAKE_SCP_FAIL"], file=sys.stderr)
        return 1
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if len(args[i]) == 2 and args[i][1] in WITH_ARGUMENT else 1
    *sources, target = args[i:]
    _host, _, path = target.partition(":")
    for src in sources:
        shutil.copy(src, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
