"""`--format html`: the page's structure (golden skeleton on a tiny builder model), its data, collapsing on big
models, the CLI, and the page rendered in headless Chromium (DOM after the scripts ran, and a screenshot whose
pixels hold the DLA and GPU colours). The browser tests skip, saying so, only where no Chromium binary exists.

Regenerate the golden skeleton after an intended change with DLARULES_UPDATE_GOLDEN=1 and review the diff."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlarules.api import check
from dlarules.report import html as H
from dlarules.report.html import render_html

from conftest import EXAMPLE, ROOT, run_cli

GOLDEN = ROOT / "tests" / "golden" / "html_tiny_structure.txt"


# ---------------------------------------------------------------- models

def chain_model(blocks: int, pool_at: tuple[int, ...] = (), skip_every: int = 0) -> onnx.ModelProto:
    """Conv 3x3 -> Relu blocks on 1x8x16x16; a 9x9 AveragePool (outside DLA's 1..8 window: GPU) after each
    block in `pool_at`; every `skip_every` blocks an Add of the block's input (a branch the layout must draw)."""
    w = numpy_helper.from_array(np.full((8, 8, 3, 3), 0.01, np.float32), "w")
    nodes, cur = [], "x"
    for b in range(blocks):
        start = cur
        nodes.append(helper.make_node("Conv", [cur, "w"], [f"c{b}"], name=f"/b{b}/Conv", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{b}"], [f"r{b}"], name=f"/b{b}/Relu"))
        cur = f"r{b}"
        if skip_every and b % skip_every == skip_every - 1:
            nodes.append(helper.make_node("Add", [cur, start], [f"a{b}"], name=f"/b{b}/Add"))
            cur = f"a{b}"
        if b in pool_at:
            nodes.append(helper.make_node("AveragePool", [cur], [f"p{b}"], name=f"/b{b}/AveragePool",
                                          kernel_shape=[9, 9], pads=[4, 4, 4, 4]))
            cur = f"p{b}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, 8, 16, 16])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def tiny(db):
    # 3 blocks, a GPU pooling after the first: two DLA subgraphs, transitions both ways, a skip connection
    return check(chain_model(3, pool_at=(0,), skip_every=2), db, hardware="orin", trt="10.3")


# ---------------------------------------------------------------- page structure (no browser)

class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def tags(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    return p


def panel_json(page: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r"<script type='application/json' class='panel-data'>(.*?)</script>",
                                               page, re.S)]


def skeleton(page: str) -> str:
    """The key elements, one a line: sections, headings' ids, subgraph and fallback rows, rule cards."""
    out = []
    for tag, a in tags(page).tags:
        cls, ident = a.get("class", ""), a.get("id", "")
        if tag in ("section", "table") or (tag == "tr" and ident) or (tag == "div" and cls in ("rulecard", "pair")):
            extra = f" rules={a['data-rules']}" if "data-rules" in a else ""
            out.append(f"{tag}.{cls.replace(' ', '.')}#{ident}{extra}")
    return "\n".join(out) + "\n"


def test_page_is_self_contained_and_names_what_tensorrt_names(tiny):
    page = render_html([tiny])
    t = tags(page)
    # no network: no external script, stylesheet, image or frame; no CSS import or url()
    for tag, a in t.tags:
        assert not (tag in ("script", "img", "iframe") and "src" in a), (tag, a)
        assert tag != "link", a
    assert "@import" not in page and "url(http" not in page and "sourceMappingURL" not in page
    assert "Copyright (c) 2012-2014 Chris Pettitt" in page          # dagre's licence travels with it
    text = "".join(t.text)
    for sg in tiny.placement.subgraphs:
        assert "{" + sg.name + "}" in text
    # every GPU layer has a row naming its rules, linked to a rule card holding the rule's source and fix
    rows = {a["data-layer"]: a["data-rules"] for tag, a in t.tags if tag == "tr" and "data-layer" in a}
    assert {int(i) for i in rows} == set(tiny.placement.gpu_layers)
    by = {v.index: v for v in tiny.layers}
    for i, rules in rows.items():
        assert rules.split() == [f.rule for f in by[int(i)].findings]
        for f in by[int(i)].findings:
            assert f"id='rule-{f.rule}'" in page and f.source[:40] in text
    assert f"loadable limit {tiny.placement.loadable_limit}" in text


def test_panel_data_matches_the_report(tiny):
    (data,) = panel_json(render_html([tiny]))
    assert [x["i"] for x in data["layers"]] == [v.index for v in tiny.layers]
    assert [x["d"] for x in data["layers"]] == ["DLA" if tiny.on_dla(v.index) else "GPU" for v in tiny.layers]
    assert [s["name"] for s in data["subgraphs"]] == [s.name for s in tiny.placement.subgraphs]
    # runs cover every layer once, in order, each inside one partition
    flat = [p for a, b in data["runs"] for p in range(a, b)]
    assert flat == list(range(len(tiny.layers)))
    for a, b in data["runs"]:
        assert len({(x["d"], x.get("s")) for x in data["layers"][a:b]}) == 1
    # edges go forward (network order is topological); every marked transition crosses a DLA subgraph boundary
    assert data["edges"] and all(a < b for a, b, _ in data["edges"])
    crossing = [(a, b) for a, b, t in data["edges"] if t]
    assert crossing
    for a, b in crossing:
        la, lb = data["layers"][a], data["layers"][b]
        assert (la["d"], la.get("s")) != (lb["d"], lb.get("s")) and "DLA" in (la["d"], lb["d"])
    assert not data["collapse"]                                       # a tiny model: every layer its own box


def test_golden_skeleton(tiny):
    # the key elements and the data the page script draws (not the bytes of the page: CSS and script may change)
    page = render_html([tiny])
    got = skeleton(page) + json.dumps(panel_json(page), indent=1, sort_keys=True) + "\n"
    if os.environ.get("DLARULES_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert GOLDEN.exists(), f"missing golden file {GOLDEN}; run with DLARULES_UPDATE_GOLDEN=1"
    assert got == GOLDEN.read_text()


def test_script_data_cannot_end_its_element(db):
    # a layer name with '</script>' in it stays data: the JSON escapes '<', the tables escape it as text
    m = chain_model(1, pool_at=(0,))
    m.graph.node[2].name = "</script><b>x"
    page = render_html([check(m, db, hardware="orin", trt="10.3")])
    assert "</script><b>x" not in page and "&lt;/script&gt;&lt;b&gt;x" in page
    assert any(x["n"] == "</script><b>x" for x in panel_json(page)[0]["layers"])


def test_big_models_are_collapsed_into_runs(db):
    report = check(chain_model(70, pool_at=(20, 45)), db, hardware="orin", trt="10.3")
    assert len(report.layers) > H.COLLAPSE_OVER
    (data,) = panel_json(render_html([report]))
    assert data["collapse"]
    long_runs = [(a, b) for a, b in data["runs"] if b - a >= H.MIN_RUN]
    assert long_runs and len(data["runs"]) < len(report.layers) / 10


def test_fix_page_has_before_and_after_side_by_side(db):
    from dlarules.fix import fix
    result = fix(EXAMPLE, db, db.target("orin", "8.6"), verify=False)
    assert result.changes
    page = render_html([], fix=result)
    ids = [d["id"] for d in panel_json(page)]
    assert ids == ["fix-before", "fix-after"]
    assert "<div class='pair'>" in page
    for c in result.changes:
        assert H._e(c.recipe) in page and H._e(c.node) in page
    before, after = panel_json(page)
    assert sum(x["d"] == "GPU" for x in after["layers"]) == result.after.summary["layers_on_gpu"]
    assert sum(x["d"] == "GPU" for x in before["layers"]) == result.before.summary["layers_on_gpu"]
    assert any(x.get("c") for x in after["layers"])                   # the rewritten layers are marked


# ---------------------------------------------------------------- CLI

def test_cli_check_html_and_formats(tmp_path):
    out = tmp_path / "report.html"
    r = run_cli("check", str(EXAMPLE), "--format", "html", "-o", str(out))
    assert r.returncode == 1 and r.stdout == "", r.stderr               # the example falls back: exit 1
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and len(panel_json(page)) == 1
    r = run_cli("check", str(EXAMPLE), "--format", "svg")
    assert r.returncode == 2 and "html" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    from dlarules.errors import DlarulesError
    from dlarules.report import formats
    assert formats.get("html", "check").name == formats.get("html", "fix").name == "html"
    for kind in ("compare", "verify", "split"):   # no drawing of those: one line naming --format
        with pytest.raises(DlarulesError, match="'html' cannot render a .* result"):
            formats.get("html", kind)


def test_cli_fix_html_on_stdout(tmp_path):
    src = tmp_path / "demo.onnx"
    src.write_bytes(EXAMPLE.read_bytes())
    r = run_cli("fix", str(src), "--dry-run", "--no-verify", "--format", "html")
    assert r.returncode == 0, r.stderr
    assert [d["id"] for d in panel_json(r.stdout)] == ["fix-before", "fix-after"]
    assert not (tmp_path / "demo.dla.onnx").exists()


# ---------------------------------------------------------------- headless Chromium

def chromium() -> str:
    for name in (os.environ.get("DLARULES_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium binary (chromium, chromium-browser, google-chrome) on PATH: the page is not rendered "
                "in a browser here; `apt-get install -y chromium` (as .ci/run does) or set DLARULES_CHROMIUM")


def browse(page: str, tmp_path: Path, *args: str, size: str = "1200,900", fragment: str = "") -> subprocess.CompletedProcess:
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
           "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
           f"--window-size={size}", *args, path.as_uri() + fragment]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def dom(page: str, tmp_path: Path, fragment: str = "") -> _Tags:
    return tags(browse(page, tmp_path, "--dump-dom", fragment=fragment).stdout)


def info_text(page_dom: str, pid: str) -> str:
    """The text of a panel's info box (what a click on a box shows) in the DOM after the scripts ran."""
    start = page_dom.index(f'id="{pid}"')
    a = page_dom.index('<aside class="info">', start)
    return page_dom[a:page_dom.index("</aside>", a)]


def read_png(path: Path) -> tuple[int, int, np.ndarray]:
    """A tiny PNG decoder (8-bit RGB/RGBA, not interlaced: what Chromium writes): width, height, pixels HxWx3."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:    # sub: a running sum along the row, per channel
            cur = (np.cumsum(line.reshape(-1, bpp), axis=0) & 255).reshape(-1)
        elif f == 2:
            cur = (line + prev) & 255
        else:   # average, paeth depend on the decoded pixel to the left: byte by byte (plain ints are fastest)
            ln, up, row = line.tolist(), prev.tolist(), [0] * stride
            for x in range(stride):
                a = row[x - bpp] if x >= bpp else 0
                b = up[x]
                if f == 3:
                    p = (a + b) >> 1
                else:
                    c = up[x - bpp] if x >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[x] = (ln[x] + p) & 255
            cur = np.array(row, np.int32)
        out[y] = cur
        prev = cur
    return width, height, out.reshape(height, width, bpp)[:, :, :3]


def colour_count(px: np.ndarray, hex_colour: str, tol: int = 3) -> int:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(px.astype(int) - rgb).max(axis=2) <= tol).sum())


@pytest.fixture(scope="module")
def tiny_dom(tiny, tmp_path_factory) -> str:
    """The tiny page's DOM after its scripts ran, opened as report.html#show=p0:N: the page's own click handler
    has clicked the first GPU layer's box (one browser start serves the two tests below)."""
    return browse(render_html([tiny]), tmp_path_factory.mktemp("tiny"), "--dump-dom",
                  fragment=f"#show=p0:{tiny.gpu_layers[0].index}").stdout


def test_browser_draws_every_layer_subgraph_and_fallback(tiny, tiny_dom):
    d = tags(tiny_dom)
    panel = next(a for tag, a in d.tags if a.get("id") == "p0")
    assert panel.get("data-drawn") == "1", "the page script did not finish"
    boxes = [a for tag, a in d.tags if tag == "g" and "layer" in a.get("class", "").split()]
    assert sorted(int(a["data-layer"]) for a in boxes) == sorted(v.index for v in tiny.layers)
    for a in boxes:
        assert ("dla" if tiny.on_dla(int(a["data-layer"])) else "gpu") in a["class"].split()
    # GPU boxes carry their rule IDs (the click handler shows rule, message, source and fix)
    by = {v.index: v for v in tiny.layers}
    gpu = {int(a["data-layer"]): a["data-rules"].split() for a in boxes if "gpu" in a["class"].split()}
    assert gpu and all(rules == [f.rule for f in by[i].findings] for i, rules in gpu.items())
    # the subgraph outlines carry TensorRT's ForeignNode names
    outlines = [a["data-name"] for tag, a in d.tags if tag == "g" and "subgraph" in a.get("class", "")]
    assert sorted(outlines) == sorted(s.name for s in tiny.placement.subgraphs)
    assert any("transition" in a.get("class", "").split() for tag, a in d.tags if tag == "path")


def test_clicking_a_fallback_shows_its_rule_message_source_and_fix(tiny, tiny_dom):
    v = tiny.gpu_layers[0]
    f = v.findings[0]
    out = tiny_dom
    box = info_text(out, "p0")
    assert f'href="#rule-{f.rule}"' in box and f.rule in box
    text = html.unescape(re.sub(r"<[^>]+>", "", box))
    assert f.message in text and f"source: {f.source}" in text and f.fix and f"fix: {f.fix}" in text
    assert f"{v.kind}: {v.name}" in text and "runs on GPU" in text
    assert re.search(r'<g class="layer gpu[^"]* sel"[^>]*data-layer="%d"' % v.index, out)


def test_screenshot_shows_dla_and_gpu_colours(tiny, tmp_path):
    shot = tmp_path / "shot.png"
    browse(render_html([tiny]), tmp_path, f"--screenshot={shot}", size="1000,700")
    w, h, px = read_png(shot)
    assert (w, h) == (1000, 700)
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 20, "blank screenshot"
    # a layer box is 176x34 px: the drawing shows at least a box's worth of each fill
    assert colour_count(px, H.DLA_COLOR) > 1500
    assert colour_count(px, H.GPU_COLOR) > 1500


def test_browser_draws_a_thousand_layer_model_collapsed(db, tmp_path):
    report = check(chain_model(520, pool_at=(30, 60, 61), skip_every=7), db, hardware="orin", trt="10.3")
    assert len(report.layers) > 1000
    t0 = time.perf_counter()
    page = render_html([report])
    assert time.perf_counter() - t0 < 2.0 and len(page) < 600_000
    d = dom(page, tmp_path)
    panel = next(a for tag, a in d.tags if a.get("id") == "p0")
    assert panel.get("data-drawn") == "1"
    assert int(panel["data-boxes"]) < 40 and int(panel["data-layout-ms"]) < 10_000
    runs = [a for tag, a in d.tags if tag == "g" and "run" in a.get("class", "").split()]
    assert sum(int(a["data-count"]) for a in runs) > 1000 - 40
    gpu = [a for tag, a in d.tags if tag == "g" and "gpu" in a.get("class", "").split()]
    assert gpu and all("POOL-WINDOW" in a["data-rules"] for a in gpu)
    # a link to a layer inside a collapsed run expands that run only and selects the layer
    inner = report.layers[100]                     # in the run of about 64 layers between the first two pools
    out = browse(page, tmp_path, "--dump-dom", fragment=f"#show=p0:{inner.index}").stdout
    assert re.search(r'<g class="layer dla[^"]* sel"[^>]*data-layer="%d"' % inner.index, out)
    boxes = int(re.search(r'id="p0"[^>]*data-boxes="(\d+)"', out).group(1))
    assert 40 < boxes < 200 and inner.name in html.unescape(info_text(out, "p0"))


def test_browser_draws_fix_before_and_after(db, tmp_path):
    from dlarules.fix import fix
    result = fix(EXAMPLE, db, db.target("orin", "8.6"), verify=False)
    d = dom(render_html([], fix=result), tmp_path)
    for pid, rep in (("fix-before", result.before), ("fix-after", result.after)):
        panel = next(a for tag, a in d.tags if a.get("id") == pid)
        assert panel.get("data-drawn") == "1" and int(panel["data-boxes"]) == len(rep.layers)


def test_loadable_limit_and_moved_subgraphs_are_shown(db):
    # a GPU pooling after every block: one DLA subgraph per block, past the limit of 16 per DLA core
    report = check(chain_model(18, pool_at=tuple(range(18))), db, hardware="orin", trt="10.3")
    pl = report.placement
    assert pl.limit_exceeded
    page = render_html([report])
    moved = [sg for sg in pl.subgraphs if sg.moved_to_gpu]
    assert f"exceed the loadable limit of {pl.loadable_limit} per DLA core: {len(moved)} moved to the GPU" in page
    for sg in moved:
        assert f"<tr id='p0-sg-{sg.index}' class='moved'>" in page
    (data,) = panel_json(page)
    moved_layers = {i for sg in moved for i in sg.layers}
    assert {x["i"] for x in data["layers"] if x.get("m")} == moved_layers
    assert all(x["d"] == "GPU" for x in data["layers"] if x.get("m"))
    # their GPU rows say why: the limit, not a rule
    assert page.count("its DLA subgraph is past the loadable limit") == len(moved_layers)


@pytest.mark.parametrize("name,hw,trt", [("ddrnet23_slim_seedlike_1024x2048.onnx", "xavier", "8.5"),
                                         ("yolov8n_640.onnx", "orin", "10.3")])
def test_browser_draws_the_corpus_models(db, tmp_path, name, hw, trt):
    # issue 14's acceptance: DDRNet on Xavier 8.5 and yolov8n on Orin 10.3 render, and the screenshot shows them
    # (the README's pictures, docs/img/, are these pages: docs/make_screenshots.py)
    from conftest import CORPUS, need_shared
    need_shared()
    report = check(CORPUS / name, db, target=db.target(hw, trt))
    page = render_html([report])
    d = tags(browse(page, tmp_path, "--dump-dom").stdout)
    panel = next(a for tag, a in d.tags if a.get("id") == "p0")
    assert panel.get("data-drawn") == "1", "the page script did not finish"
    outlines = [a["data-name"] for tag, a in d.tags if tag == "g" and "subgraph" in a.get("class", "")]
    assert sorted(outlines) == sorted(s.name for s in report.placement.subgraphs)
    shot = tmp_path / "shot.png"
    browse(page, tmp_path, f"--screenshot={shot}", size="1200,800")
    _, _, px = read_png(shot)
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 20, "blank screenshot"
    assert colour_count(px, H.DLA_COLOR) > 1500 and colour_count(px, H.GPU_COLOR) > 500
