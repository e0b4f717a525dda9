"""TEST DOUBLE of OpenSSH's ssh: the "remote" command runs on this machine under sh -c, so mktemp, trtexec (the
fake one on PATH) and rm really happen, in $TMPDIR.

  FAKE_SSH_RECORD  append this run's argv (JSON, one line) to this file
  FAKE_SSH_FAIL    fail as ssh does when it cannot log in: "HOST: <this text>" on stderr, exit 255"""
from __future__ import annotations

import json
import os
import subprocess
import sys

WITH_ARGUMENT = set("BbcDEeFIiJLlmOoPpQRSWw")   # ssh options that take a value


def split_args(args: list[str]) -> tuple[str, list[str]]:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if len(args[i]) == 2 and args[i][1] in WITH_ARGUMENT else 1
    return args[i], args[i + 1:]


def main() -> int:
    args = sys.argv[1:]
    if os.environ.get("FAKE_SSH_RECORD"):
        with open(os.environ["FAKE_SSH_RECORD"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(args) + "\n")
    host, command = split_args(args)
    if os.environ.get("FAKE_SSH_FAIL"):
        print(f"{host}: {os.environ['FAKE_SSH_FAIL']}", file=sys.stderr)
        return 255
    return subprocess.call(["sh", "-c", " ".join(command)], stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
