"""Remote mode, for a workstation next to a Jetson: copy the model to a temporary folder on the device with scp,
run trtexec there over ssh, bring back what it printed, remove the folder.

ssh always runs with BatchMode=yes: dlarules never handles passwords, so key login must already work."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from onnx import TensorProto

from ..model import read_model
from .build import BuildOutput, BuildRequest
from .errors import VerifyError
from .process import check_success, failure, output_of, run_tool
from .trtexec import JETSON_TRTEXEC, TIMEOUT_HINT, trtexec_args

# BatchMode: never prompt (no passwords); the keep-alives notice a dead link during a long build.
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=30")
SHORT_TIMEOUT_S = 120.0          # mktemp, mkdir, rm: seconds, unless the link is dead
_SSH_FAILED = 255                # ssh's own failures (auth, host unreachable); anything else is the remote command's
_NO_TRTEXEC = 127
_TIMED_OUT = 124                 # coreutils `timeout` on the device
_HOST = re.compile(r"^(?:[^@\s/:]+@)?[A-Za-z0-9_][A-Za-z0-9._-]*$")
_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9._/-]+$")
_SAFE_RELATIVE = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9._ /+-]+$")


@dataclass(frozen=True)
class Remote:
    host: str                    # user@host or an ssh config alias
    trtexec: str | None = None   # trtexec's path on the device; default: PATH there, then JetPack's location
    ssh: str | None = None       # local programs; default: found on PATH
    scp: str | None = None


def run_remote(req: BuildRequest, remote: Remote) -> BuildOutput:
    host = check_host(remote.host)
    ssh = _program(remote.ssh, "ssh")
    scp = _program(remote.scp, "scp")
    files = model_files(req.model)
    workdir = _ssh_output(ssh, host, 'mktemp -d "${TMPDIR:-/tmp}/dlarules.XXXXXX"', "creating a temporary folder")
    if not _REMOTE_DIR.match(workdir):
        raise VerifyError(host, f"mktemp on the device printed {workdir!r}, not a folder path")
    argv = [remote.trtexec or "trtexec", *trtexec_args(req, f"{workdir}/{req.model.name}")]
    notes = ["trtexec calibrates INT8 with its own dummy scales: --inputs is not used"] if req.inputs else []
    try:
        _copy(ssh, scp, host, req, files, workdir)
        proc = run_tool([ssh, *SSH_OPTIONS, host, _sh(_trtexec_script(req, remote.trtexec, argv[1:]))],
                        what=f"trtexec on {host}", timeout=_local_timeout(req), source=host, hint=TIMEOUT_HINT)
        text = _check_remote(proc, host, req)
    finally:
        notes += _cleanup(ssh, host, workdir)
    return BuildOutput(text, "trtexec", argv, remote=host, notes=notes)


def check_host(host: str) -> str:
    """user@host or an ssh alias; never anything ssh could read as an option."""
    if not _HOST.match(host or ""):
        raise VerifyError("--remote", f"{host!r} is not user@host (or an ssh host alias)")
    return host


def model_files(model: Path) -> list[str]:
    """The model's file name and its external data files, relative to the model's folder (what trtexec needs)."""
    proto = read_model(model)
    found = [model.name]
    for init in proto.graph.initializer:
        if init.data_location != TensorProto.EXTERNAL:
            continue
        loc = next(e.value for e in init.external_data if e.key == "location")
        if not _SAFE_RELATIVE.match(loc):
            raise VerifyError(model, f"external data location {loc!r} is not a plain relative path; "
                                     "copy the model to the device yourself and run `dlarules verify` there")
        if loc not in found:
            found.append(loc)
    return found


def _program(explicit: str | None, name: str) -> str:
    found = explicit or shutil.which(name)
    if not found:
        raise VerifyError(None, f"{name} not found on PATH; install the OpenSSH client, or run `dlarules verify` "
                                "on the device itself")
    return found


def _sh(script: str) -> str:
    # ssh hands the command to the user's login shell (bash, zsh, even fish): run it under sh to be sure.
    return f"sh -c {shlex.quote(script)}"


def _ssh_output(ssh: str, host: str, script: str, what: str) -> str:
    proc = run_tool([ssh, *SSH_OPTIONS, host, _sh(script)], what=f"ssh {host}", timeout=SHORT_TIMEOUT_S,
                    source=host, merge_output=False)
    if proc.returncode != 0:
        raise _ssh_failure(proc, host, what)
    return (proc.stdout or "").strip()


def _ssh_failure(proc: subprocess.CompletedProcess[str], host: str, what: str) -> VerifyError:
    hint = ("dlarules runs ssh with BatchMode=yes and never asks for a password: set up key login "
            f"(ssh-copy-id {host}) and check that `ssh {host} true` works without a prompt"
            if proc.returncode == _SSH_FAILED else "")
    return failure(proc, what=f"ssh ({what})", source=host, hint=hint)


def _copy(ssh: str, scp: str, host: str, req: BuildRequest, files: list[str], workdir: str) -> None:
    by_folder: dict[str, list[str]] = {}
    for f in files:
        by_folder.setdefault(str(PurePosixPath(f).parent), []).append(f)
    subfolders = [d for d in by_folder if d != "."]
    if subfolders:
        _ssh_output(ssh, host, "mkdir -p " + " ".join(shlex.quote(f"{workdir}/{d}") for d in subfolders),
                    "creating folders for external data")
    for folder, group in by_folder.items():
        target = workdir if folder == "." else f"{workdir}/{folder}"
        # Absolute local paths: a relative name holding ':' would read as host:path to scp.
        sources = [str((req.model.parent / f).resolve()) for f in group]
        proc = run_tool([scp, *SSH_OPTIONS, "-q", *sources, f"{host}:{target}/"], what=f"scp to {host}",
                        timeout=req.timeout, source=host, merge_output=False)
        if proc.returncode != 0:
            raise _ssh_failure(proc, host, "copying the model")


def _trtexec_script(req: BuildRequest, trtexec: str | None, args: list[str]) -> str:
    """Find trtexec on the device (PATH, then JetPack's folder, which a non-interactive ssh shell lacks), bound
    its run with coreutils `timeout` where the device has it, and exec it."""
    find = (f"T={shlex.quote(trtexec)}" if trtexec else
            f"T=$(command -v trtexec || echo {shlex.quote(str(JETSON_TRTEXEC))})")
    lines = [find,
             f'[ -x "$T" ] || {{ echo "dlarules: trtexec not found: $T" >&2; exit {_NO_TRTEXEC}; }}',
             "set --"]
    if req.timeout:
        lines.append(f"command -v timeout >/dev/null 2>&1 && set -- timeout {max(1, round(req.timeout))}")
    lines.append('exec "$@" "$T" ' + " ".join(shlex.quote(a) for a in args))
    return "\n".join(lines)


def _local_timeout(req: BuildRequest) -> float | None:
    # The device's own `timeout` fires first, so the log printed so far comes back through ssh.
    return req.timeout + 60 if req.timeout else None


def _check_remote(proc: subprocess.CompletedProcess[str], host: str, req: BuildRequest) -> str:
    if proc.returncode == _SSH_FAILED:
        raise _ssh_failure(proc, host, "running trtexec")
    if proc.returncode == _NO_TRTEXEC:
        raise VerifyError(host, f"trtexec not found on {host} (not on PATH there, not in {JETSON_TRTEXEC.parent}); "
                                "give its path on the device with --trtexec", log=output_of(proc), command=proc.args)
    if proc.returncode == _TIMED_OUT and req.timeout:
        raise VerifyError(host, f"trtexec on {host} did not finish within {req.timeout:g} s; {TIMEOUT_HINT}",
                          log=output_of(proc), command=proc.args)
    return check_success(proc, what=f"trtexec on {host}", source=host)


def _cleanup(ssh: str, host: str, workdir: str) -> list[str]:
    """Remove the device's temporary folder; a failure here must not hide the build's own result or error."""
    try:
        proc = run_tool([ssh, *SSH_OPTIONS, host, _sh(f"rm -rf -- {shlex.quote(workdir)}")], what=f"ssh {host}",
                        timeout=SHORT_TIMEOUT_S, source=host)
    except VerifyError:
        proc = None
    if proc is not None and proc.returncode == 0:
        return []
    return [f"could not remove {host}:{workdir}; remove it by hand"]
