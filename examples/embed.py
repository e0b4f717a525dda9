"""Embedding the dlarules rule DB in another tool (an exporter, a model zoo's CI, an IDE).

    python examples/embed.py [MODEL.onnx]

Loads the packaged DB with a team's private rules layered on top, checks a model for Orin / TensorRT 8.6, and
prints a one-line verdict per rule that fires plus the JSON summary a CI would store."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dlarules.api import check, load_db

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    model = Path(argv[1]) if len(argv) > 1 else HERE / "dla_demo.onnx"
    db = load_db([HERE / "private_rules"])                      # packaged rules + the team's, by ID
    target = db.target("orin", "8.6", precision="fp16")
    rules = db.select(target).rules                             # what holds for this target
    print(f"rule DB {db.version}: {len(rules)} rule entries for {target}")
    report = check(model, db, target=target)                    # a path or an onnx.ModelProto
    for rule_id, hits in sorted(report.findings_by_rule().items()):
        first = hits[0][1]
        print(f"{rule_id}: {len(hits)} layer(s), e.g. {hits[0][0].name}: {first.message}")
    summary = {"model": str(model), **report.summary, "coverage": report.coverage,
               "dla_only": report.dla_only["feasible"]}
    print(json.dumps(summary, indent=2))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
