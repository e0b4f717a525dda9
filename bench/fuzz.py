"""The long fuzz campaign: generated graphs and damaged corpus models through check / compare / fix / api.check.

    .venv/bin/python bench/fuzz.py --minutes 30 [--seed S] [--out DIR] [--timeout 60] [--memory-gb 2]

Each run is one case of tests/fuzzing (the same generators and judge as tests/test_fuzz_properties.py), drawn from
a seeded random.Random (a new seed per campaign unless --seed), run in a worker process under RLIMIT_AS
(--memory-gb) and a per-run timeout: a run that does not answer in time is a hang (the worker is killed and
restarted), one that runs out of memory or kills the worker is memory / crash. Prints the runs per category
(ok, crash, hang, memory, data-loss, bad-error, bad-output) and writes one reproducer per distinct failure (the
files, cmd.sh and outcome.json) under --out (default: a new temp folder). Never writes under ../shared.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
MARK = "@@FUZZ "
CATEGORIES = ["ok", "crash", "hang", "memory", "data-loss", "bad-error", "bad-output", "generator-error"]
RESTART_EVERY = 200   # runs per worker: keeps slow leaks (sessions, protobufs) from piling up


def case_seed(campaign: int, i: int) -> int:
    return campaign * 1_000_003 + i


# ----------------------------------------------------------------------------------------------- worker

def worker() -> None:
    """Read seeds on stdin, run each case in-process, answer one MARK line per seed."""
    import faulthandler
    import traceback
    # a segfault leaves its Python stack in the worker log (a copy of fd 2: runs redirect fd 2 to catch noise)
    fault_log = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=fault_log)
    from fuzzing.cases import make_case
    from fuzzing.draw import RandomDraw
    from fuzzing.harness import run_case
    base = Path(tempfile.mkdtemp(prefix="dlarules-fuzz-w-"))
    for line in sys.stdin:
        seed = int(line)
        print(f"@@seed {seed}", file=sys.stderr, flush=True)   # the log says which run a crash happened in
        t0 = time.perf_counter()
        try:
            case = make_case(RandomDraw(seed))
        except Exception as exc:
            res = {"category": "generator-error", "signature": f"{type(exc).__name__} in the generator",
                   "detail": traceback.format_exc()[-800:], "rc": None}
        else:
            folder = base / str(seed)
            pending(case, seed, Path(os.environ["DLARULES_FUZZ_PENDING"]))
            try:
                res = run_case(case, folder).to_dict()
            except MemoryError as exc:
                res = {"category": "memory", "signature": "MemoryError in the harness", "detail": str(exc), "rc": None}
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        res.update(seed=seed, seconds=round(time.perf_counter() - t0, 3), rss_mb=_rss_mb(), vm_mb=_vm_mb())
        sys.stdout.write(MARK + json.dumps(res) + "\n")
        sys.stdout.flush()


def _rss_mb() -> int:
    """The worker's resident memory now (a leak across runs shows as growth)."""
    return _statm(1)


def _vm_mb() -> int:
    """Its address space now: what RLIMIT_AS counts (thread stacks and arenas too)."""
    return _statm(0)


def _statm(field: int) -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[field]) * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    except OSError:
        return 0


def pending(case, seed: int, where: Path) -> None:
    """The case's files and command, written before it runs: the parent keeps them if the run fails or kills the
    worker (regenerating the case in the parent could kill the parent too)."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    for name, data in case.files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(data)
    (where / "out").mkdir(exist_ok=True)
    (where / "cmd.sh").write_text("#!/bin/sh\n# run inside this folder\n" + case.command() + "\n", encoding="utf-8")
    (where / "case.json").write_text(json.dumps({"seed": seed, "label": case.label}) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------- parent

class Worker:
    def __init__(self, memory_gb: float, log: Path, cache: Path) -> None:
        self.pending = cache.parent / "pending"
        limit = int(memory_gb * (1 << 30))

        def limits() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        # MALLOC_ARENA_MAX: glibc reserves 64 MB of address space per malloc arena (one per thread that allocates,
        # up to 8 per core); under RLIMIT_AS a long-lived worker whose onnxruntime sessions came and went died in
        # the case generator with "cannot allocate memory for thread-local data" (a limit of the harness, not a
        # run of dlarules). Two arenas keep the limit about what the runs allocate.
        env = dict(os.environ, DLARULES_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1",
                   DLARULES_FUZZ_PENDING=str(self.pending), MALLOC_ARENA_MAX="2")
        env.pop("DLARULES_RULES", None)
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     preexec_fn=limits, env=env, text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        self.runs = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.lines.put(json.loads(line[len(MARK):]))
        self.lines.put(None)   # EOF: the worker died

    def run(self, seed: int, timeout: float) -> dict | None:
        """The worker's answer, {} on timeout, None when it died."""
        self.runs += 1
        try:
            self.proc.stdin.write(f"{seed}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return {}

    def stop(self) -> int | None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def kill(self) -> int | None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        return self.proc.returncode


def _log_tail(log: Path, n: int = 1500) -> str:
    try:
        data = log.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


def _died(rc: int | None, tail: str) -> tuple[str, str]:
    """Category and signature of a run that killed the worker, from the worker log after its last seed."""
    tail = tail.rsplit("@@seed", 1)[-1]
    if re.search(r"MemoryError|bad_alloc|Cannot allocate memory|std::length_error|out of memory", tail):
        return "memory", f"worker died (exit {rc}) out of memory"
    # faulthandler lists the innermost frame first
    frame = re.search(r'File "[^"]*?/((?:dlarules|fuzzing)/[^"]+)", line \d+ in (\S+)', tail)
    why = re.search(r"(Assertion .{0,80}failed|Fatal Python error: [\w ]+|Segmentation fault)", tail)
    where = f" @ {frame.group(1)}:{frame.group(2)}" if frame else ""
    return "crash", f"worker died (exit {rc}){where}: {why.group(1) if why else 'no message'}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def write_reproducer(out: Path, n: int, seed: int, res: dict, pending_dir: Path) -> Path:
    """The case's files, the one-line command (cmd.sh, run inside the folder) and what happened."""
    folder = out / f"{n:03d}-{res['category']}-{_slug(res['signature'])}"
    info = {}
    if (pending_dir / "case.json").is_file() and json.loads((pending_dir / "case.json").read_text())["seed"] == seed:
        shutil.copytree(pending_dir, folder, dirs_exist_ok=True)
        info = json.loads((folder / "case.json").read_text())
        (folder / "case.json").unlink()
    else:   # the worker died before the case was written: the generator itself (onnx's shape inference) broke
        folder.mkdir(parents=True, exist_ok=True)
        res = {**res, "signature": res["signature"] + " (in the generator, before dlarules ran)"}
    (folder / "outcome.json").write_text(json.dumps({**res, "seed": seed, "label": info.get("label", ""),
                                                     "replay": f"bench/fuzz.py --replay {seed}"}, indent=1) + "\n",
                                         encoding="utf-8")
    return folder


def campaign(minutes: float, seed: int, out: Path, timeout: float, memory_gb: float) -> int:
    shared = (ROOT.parent / "shared").resolve()
    if out.resolve() == shared or shared in out.resolve().parents:
        print(f"bench/fuzz.py: --out {out}: never writes under {shared}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    # Ctrl-C or kill (even from a background job, where SIGINT starts ignored) ends the campaign with its table
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    scratch = Path(tempfile.mkdtemp(prefix="dlarules-fuzz-"))
    log = scratch / "worker.log"
    w = Worker(memory_gb, log, scratch / "cache")
    runs: Counter = Counter()
    distinct: dict[str, dict[str, int]] = defaultdict(dict)
    reproducers: list[Path] = []
    seconds: list[float] = []
    rss: list[tuple[int, int]] = []   # (runs of this worker, its RSS in MB) after each answer
    vm: list[tuple[int, int]] = []    # the same for its address space
    deadline = time.monotonic() + minutes * 60
    i = 0
    t_start = time.monotonic()
    print(f"fuzz campaign: seed {seed}, {minutes:g} min, timeout {timeout:g} s, RLIMIT_AS {memory_gb:g} GB, "
          f"reproducers in {out}", flush=True)
    try:
        while time.monotonic() < deadline:
            s = case_seed(seed, i)
            i += 1
            if w.runs >= RESTART_EVERY:
                w.stop()
                w = Worker(memory_gb, log, scratch / "cache")
            res = w.run(s, timeout)
            if res == {}:
                w.kill()
                res = {"category": "hang", "signature": f"no answer in {timeout:g} s", "detail": "", "rc": None}
                w = Worker(memory_gb, log, scratch / "cache")
            elif res is None:
                rc = w.kill()
                cat, sig = _died(rc, _log_tail(log))
                res = {"category": cat, "signature": sig, "detail": _log_tail(log, 4000).rsplit("@@seed", 1)[-1], "rc": rc}
                w = Worker(memory_gb, log, scratch / "cache")
            else:
                seconds.append(res.get("seconds", 0.0))
                rss.append((w.runs, res.get("rss_mb", 0)))
                vm.append((w.runs, res.get("vm_mb", 0)))
            cat = res["category"]
            runs[cat] += 1
            if cat != "ok":
                sig = res["signature"]
                first = sig not in distinct[cat]
                distinct[cat][sig] = distinct[cat].get(sig, 0) + 1
                if first:
                    try:
                        reproducers.append(write_reproducer(out, len(reproducers) + 1, s, res, w.pending))
                    except Exception as exc:   # a case the generator cannot rebuild is still counted
                        print(f"  (no reproducer for seed {s}: {type(exc).__name__}: {exc})", flush=True)
                    print(f"  [{cat}] {sig}  (seed {s})", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        w.kill() if w.proc.poll() is None else None
        shutil.rmtree(scratch, ignore_errors=True)
    total = sum(runs.values())
    elapsed = (time.monotonic() - t_start) / 60
    print(f"\n{total} runs in {elapsed:.1f} min (median run {sorted(seconds)[len(seconds) // 2] if seconds else 0:.3f} s), "
          f"seed {seed}")
    print("| category | runs | distinct |\n|---|---|---|")
    for cat in CATEGORIES:
        if runs[cat] or cat in ("ok", "crash", "hang", "memory", "data-loss", "bad-error"):
            print(f"| {cat} | {runs[cat]} | {len(distinct[cat]) if cat != 'ok' else '-'} |")
    for cat in CATEGORIES[1:]:
        for sig, n in sorted(distinct[cat].items(), key=lambda kv: -kv[1]):
            print(f"  {cat}: {n} x {sig}")
    for what, series in (("RSS", rss), ("address space", vm)):
        if series:
            early = sorted(m for n, m in series if n <= 20)
            late = sorted(m for n, m in series if n >= RESTART_EVERY - 20)
            print(f"worker {what}: max {max(m for _, m in series)} MB; median after <= 20 runs "
                  f"{early[len(early) // 2] if early else '-'} MB, after >= {RESTART_EVERY - 20} runs "
                  f"{late[len(late) // 2] if late else '-'} MB")
    print(f"reproducers: {len(reproducers)} in {out}")
    return 0 if total == runs["ok"] else 1


def replay(seed: int) -> int:
    """Run one case in this process and print what happened (for debugging a reproducer)."""
    from fuzzing.cases import make_case
    from fuzzing.draw import RandomDraw
    from fuzzing.harness import run_case
    case = make_case(RandomDraw(seed))
    print(f"case: {case.label}\ncommand: {case.command()}")
    folder = Path(tempfile.mkdtemp(prefix="dlarules-fuzz-replay-"))
    res = run_case(case, folder)
    print(json.dumps(res.to_dict(), indent=1))
    print(f"files in {folder}")
    return 0 if res.category == "ok" else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=None, help="campaign seed (default: new each time)")
    ap.add_argument("--out", type=Path, default=None, help="reproducer folder (default: a new temp folder)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds one run may take (else: hang)")
    ap.add_argument("--memory-gb", type=float, default=2.0, help="address-space limit of the worker (else: memory)")
    ap.add_argument("--replay", type=int, default=None, help="run one case seed in-process and show the outcome")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker()
        return 0
    if a.replay is not None:
        return replay(a.replay)
    if a.minutes <= 0 or a.timeout <= 0 or a.memory_gb <= 0:
        ap.error("--minutes, --timeout and --memory-gb must be positive")
    seed = a.seed if a.seed is not None else int(time.time()) % 1_000_000
    out = a.out or Path(tempfile.mkdtemp(prefix="dlarules-fuzz-repro-"))
    return campaign(a.minutes, seed, out, a.timeout, a.memory_gb)


if __name__ == "__main__":
    sys.exit(main())
