"""TEST DOUBLE of NVIDIA's trtexec: replays a recorded build log instead of building anything.

Driven by environment variables:
  FAKE_TRTEXEC_LOG    the recorded log to print, byte for byte, on stdout
  FAKE_TRTEXEC_MODE   ok (default) | no-placement (print only build noise) | hang (print, then sleep until killed)
  FAKE_TRTEXEC_RC     exit status (default 0); when non-zero, FAKE_TRTEXEC_ERROR is printed as trtexec prints errors
  FAKE_TRTEXEC_RECORD append {"argv": [...], "files": [files beside --onnx]} as one JSON line to this file

Like trtexec it fails when the --onnx file does not exist, which is what makes the remote test meaningful."""
from __future__ import annotations

import json
import os
import sys
import time

FAILED = "&&&& FAILED TensorRT.trtexec [TensorRT v8502] # trtexec "


def main() -> int:
    args = sys.argv[1:]
    env = os.environ
    onnx = next((a.split("=", 1)[1] for a in args if a.startswith("--onnx=")), "")
    if env.get("FAKE_TRTEXEC_RECORD"):
        files = sorted(os.listdir(os.path.dirname(onnx) or ".")) if os.path.isfile(onnx) else []
        with open(env["FAKE_TRTEXEC_RECORD"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"argv": args, "files": files}) + "\n")
    if not os.path.isfile(onnx):
        print(f"[E] [TRT] ModelImporter.cpp:688: Failed to parse ONNX model from file: {onnx}", file=sys.stderr)
        print(FAILED + " ".join(args))
        return 1
    mode = env.get("FAKE_TRTEXEC_MODE", "ok")
    if mode == "no-placement":
        print("[08/10/2023-13:58:01] [V] [TRT] Original: 321 layers\n&&&& PASSED TensorRT.trtexec")
        return 0
    sys.stdout.flush()
    with open(env["FAKE_TRTEXEC_LOG"], "rb") as fh:
        sys.stdout.buffer.write(fh.read())
    sys.stdout.flush()
    if mode == "hang":
        time.sleep(120)
    rc = int(env.get("FAKE_TRTEXEC_RC", "0"))
    if rc:
        print(f"[08/10/2023-13:58:12] [E] {env.get('FAKE_TRTEXEC_ERROR', 'Error[2]: build failed')}", file=sys.stderr)
        print("[08/10/2023-13:58:12] [E] Engine could not be created from network", file=sys.stderr)
        print(FAILED + " ".join(args))
    return rc


if __name__ == "__main__":
    sys.exit(main())
