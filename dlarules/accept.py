"""Accepted fallbacks: the config's [[ignore]] entries applied to a check report, after the check.

The check core stays pure (checker.py and partition.py know nothing of ignores). This post-step marks each
(GPU layer, rule) pair an ignore matches as accepted with the ignore's reason; the layer stays in every report,
on the GPU, and counts for coverage and the gates as before (it really runs on the GPU). What changes is the exit
code: a report whose every GPU layer is explained only by accepted findings exits 0 (api.Report.exit_code).
Ignores that matched nothing in a model are listed in its report as unused (used: 0).
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Collection, Iterable

from .config import Ignore
from .errors import DlarulesError

if TYPE_CHECKING:
    from .core import Report

LOADABLE_RULE = "DLA-LOADABLE-LIMIT"   # a layer on the GPU because its DLA subgraph is past the loadable limit


def vet(ignores: Iterable[Ignore], known: Collection[str]) -> None:
    """Every ignore must name a rule of the DB (or DLA-LOADABLE-LIMIT): a typo would silently accept nothing."""
    names = set(known) | {LOADABLE_RULE}
    for ig in ignores:
        if ig.rule not in names:
            close = difflib.get_close_matches(ig.rule, sorted(names), n=1, cutoff=0.6)
            raise DlarulesError(ig.source, f"[[ignore]] rule {ig.rule!r} is not a rule ID"
                                + (f" (did you mean {close[0]}?)" if close else "")
                                + "; `dlarules rules list` lists them")


def apply(report: "Report", ignores: list[Ignore]) -> "Report":
    """Mark the findings of `report` that `ignores` accept (in place; returns the report). The first ignore that
    matches a (layer, rule) pair explains it and counts it as used."""
    accepted: dict[tuple[int, str], str] = {}
    used = [0] * len(ignores)
    for v in report.gpu_layers:
        names = [*v.nodes, v.name]
        for rule in [f.rule for f in v.findings] or [LOADABLE_RULE]:
            for k, ig in enumerate(ignores):
                if ig.rule == rule and ig.matches_names(names):
                    accepted[(v.index, rule)] = ig.reason
                    used[k] += 1
                    break
    report.accepted = accepted
    report.ignores = [{**ig.to_dict(), "used": n} for ig, n in zip(ignores, used)]
    return report
