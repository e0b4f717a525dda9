"""The one reader for every file the user gives dlarules (models, build logs, rule YAML, .npz inputs).

Whatever the file is, reading it either succeeds within a stated budget or raises a one-line DlarulesError naming
the file: only regular files are opened (a FIFO or a device would block or never end; `os.stat` is asked first
and the open is non-blocking), sizes are checked against the limits below before anything is read, text must be
UTF-8 (build logs fall back to Latin-1), and YAML is loaded with a safe loader whose aliases may not expand the
document past a node budget (a "billion laughs" file is refused in milliseconds).

Limits (each a constant here, the model one also an environment variable):
  model file read whole     MAX_MODEL_BYTES  1 GiB (DLARULES_MAX_MODEL_MB); weights in external data do not count
  build log                 MAX_LOG_BYTES    256 MiB
  rule / releases YAML      MAX_YAML_BYTES   8 MiB, and MAX_YAML_NODES 200,000 nodes once aliases are expanded
  .npz inputs               MAX_NPZ_BYTES    1 GiB on disk; what the arrays hold uncompressed is the caller's
                                             budget (prove.MAX_PROOF_BYTES, calibration.MAX_CALIBRATION_BYTES)
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from .errors import DlarulesError

MiB = 1 << 20
GiB = 1 << 30


def _env_mb(name: str, default: int) -> int:
    try:
        v = int(os.environ.get(name, "") or default // MiB)
    except ValueError:
        return default
    return max(1, v) * MiB


MAX_MODEL_BYTES = _env_mb("DLARULES_MAX_MODEL_MB", 1 * GiB)
MAX_LOG_BYTES = 256 * MiB
MAX_YAML_BYTES = 8 * MiB
MAX_YAML_NODES = 200_000
MAX_NPZ_BYTES = 1 * GiB

_KIND_NAMES = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def size_text(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ENAMETOOLONG:
        return "cannot read: the file name is too long"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot read: permission denied"
    if exc.errno == errno.ELOOP:
        return "cannot read: too many levels of symbolic links"
    return f"cannot read: {exc.strerror or type(exc).__name__}"


def vet_input(path: str | os.PathLike[str], what: str, max_bytes: int | None = None,
              hint: str = "") -> os.stat_result:
    """The file's stat if it is a regular file within `max_bytes`; else a one-line DlarulesError naming it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DlarulesError(path, _os_problem(exc)) from None
    except ValueError:   # an embedded NUL byte
        raise DlarulesError(repr(str(path)), "not a valid file name") from None
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        raise DlarulesError(path, f"is {_KIND_NAMES.get(kind, 'not a regular file')}, not {what}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise DlarulesError(path, f"is {size_text(st.st_size)}, over the {size_text(max_bytes)} limit for {what}"
                                  f"{hint}")
    return st


def read_bytes(path: str | os.PathLike[str], what: str, max_bytes: int, hint: str = "") -> bytes:
    """The whole file, if it is a regular file of at most `max_bytes` (checked before reading and while reading:
    the file may grow)."""
    vet_input(path, what, max_bytes, hint)
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it does not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DlarulesError(path, _os_problem(exc)) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DlarulesError(path, f"is {_KIND_NAMES.get(stat.S_IFMT(st.st_mode), 'not a regular file')}, "
                                      f"not {what}")
        try:
            data = _read_upto(fh, max_bytes + 1, st.st_size)
        except OSError as exc:
            raise DlarulesError(path, _os_problem(exc)) from None
    if len(data) > max_bytes:
        raise DlarulesError(path, f"is over the {size_text(max_bytes)} limit for {what}{hint}")
    return data


def _read_upto(fh: Any, limit: int, size: int) -> bytes:
    """At most `limit` bytes. Reads what the file holds (its stat size) at once, then in 1 MiB steps should it have
    grown: `read(limit)` would reserve `limit` bytes up front (1 GiB for a 500-byte model), which fails where the
    address space is bounded (a worker under RLIMIT_AS: found by the fuzz campaign)."""
    data = fh.read(min(limit, size + 1))
    if len(data) <= size:
        return data
    chunks, total = [data], len(data)
    while total < limit:
        more = fh.read(min(1 << 20, limit - total))
        if not more:
            break
        chunks.append(more)
        total += len(more)
    return b"".join(chunks)


def read_text(path: str | os.PathLike[str], what: str, max_bytes: int, *, latin1_fallback: bool = False) -> str:
    """The file as UTF-8 text (a BOM is dropped). Not UTF-8: a one-line error, or Latin-1 when allowed (logs)."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if latin1_fallback:
            return data.decode("latin-1")
        raise DlarulesError(path, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                  f"is it {what}?") from None


def yaml_nodes(node: Any, limit: int) -> int:
    """How many nodes the YAML document has once every alias is expanded (a shared node counts each time it is
    used), stopping as soon as `limit` is passed. Memoized per node: linear in the composed document."""
    memo: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(node, False)]
    while stack:
        n, done = stack.pop()
        key = id(n)
        if key in memo:
            continue
        value = getattr(n, "value", None)
        children: list[Any] = []
        if isinstance(value, list):
            for item in value:
                children += list(item) if isinstance(item, tuple) else [item]
        if not done:
            if key in visiting:   # reached again from inside itself: a recursive alias, endless once expanded
                return limit + 1
            visiting.add(key)
            stack.append((n, True))
            stack += [(c, False) for c in children if id(c) not in memo]
            continue
        visiting.discard(key)
        memo[key] = min(1 + sum(memo.get(id(c), 1) for c in children), limit + 1)
    return memo.get(id(node), 1)


def load_yaml(path: str | os.PathLike[str], loader: type, what: str = "a YAML rule file") -> Any:
    """Parse a YAML file with `loader` (a SafeLoader subclass) within MAX_YAML_BYTES and MAX_YAML_NODES.
    yaml.YAMLError propagates (the caller says where)."""
    text = read_text(path, what, MAX_YAML_BYTES)
    ld = loader(text)
    try:
        node = ld.get_single_node()
        if node is None:
            return None
        n = yaml_nodes(node, MAX_YAML_NODES)
        if n > MAX_YAML_NODES:
            raise DlarulesError(path, f"expands to over {MAX_YAML_NODES:,} YAML nodes through its aliases (&anchor/"
                                      f"*alias); refusing to load it")
        return ld.construct_document(node)
    finally:
        ld.dispose()


def read_npz(path: str | os.PathLike[str], what: str, max_array_bytes: int) -> dict[str, Any]:
    """The arrays of an .npz: a regular file within MAX_NPZ_BYTES, arrays of numbers (no pickles, no strings)
    holding at most `max_array_bytes` uncompressed, checked from the archive's directory before anything is
    decompressed (a small zip may expand to gigabytes)."""
    import zipfile
    import numpy as np
    from .errors import clip, first_line
    vet_input(path, what, MAX_NPZ_BYTES)
    try:
        with zipfile.ZipFile(path) as z:
            declared = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DlarulesError(path, f"not a readable .npz file ({clip(first_line(exc), 120)})") from None
    if declared > max_array_bytes:
        raise DlarulesError(path, f"its arrays hold {declared:,} bytes, over the limit of {max_array_bytes:,} "
                                  f"for {what}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:   # numpy raises ValueError, OSError, zipfile and pickle errors
        raise DlarulesError(path, f"not a readable .npz file ({clip(first_line(exc), 120)})") from None
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise DlarulesError(path, f"array {clip(repr(k), 60)} holds {a.dtype} values, not numbers")
    return arrays


def is_regular(path: Path) -> bool:
    """A regular file (following symlinks); False for FIFOs, devices, directories, dangling links, bad names."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
