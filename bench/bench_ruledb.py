"""How long loading the packaged rule DB takes, measured in one run (issue 7: under 50 ms on the dev machine).

    python bench/bench_ruledb.py

Cold: YAML parse + JSON Schema + compile (first use, or after a rule file changes). Warm: the validated data
comes from the cache (keyed by every rule file's size and mtime, the package version and the schemas), and the
conditions are compiled. The import of the package is reported apart."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

CODE = """
import time, sys
t0 = time.perf_counter()
from dlarules.ruledb import RuleDB
t1 = time.perf_counter()
db = RuleDB.load(use_cache={cache})
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, len(db.rules))
"""


def run(cache: bool, env: dict) -> tuple[float, float, int]:
    out = subprocess.run([sys.executable, "-c", CODE.format(cache=cache)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "DLARULES_CACHE_DIR": cache_dir}
        cold = [run(False, env) for _ in range(5)]
        run(True, env)                                   # fill the cache
        warm = [run(True, env) for _ in range(9)]
    n = cold[0][2]
    print(f"rule DB: {n} rule entries (fresh process each run)")
    print(f"import dlarules.ruledb:   median {statistics.median(x[0] for x in warm) * 1e3:6.1f} ms")
    print(f"load, cold (no cache):    median {statistics.median(x[1] for x in cold) * 1e3:6.1f} ms")
    print(f"load, warm (cache):       median {statistics.median(x[1] for x in warm) * 1e3:6.1f} ms, "
          f"best {min(x[1] for x in warm) * 1e3:.1f} ms; target < 50 ms")
    print(f"cold / warm ratio:        {statistics.median(x[1] for x in cold) / statistics.median(x[1] for x in warm):.1f}")


if __name__ == "__main__":
    main()
