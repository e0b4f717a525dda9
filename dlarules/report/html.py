"""The HTML picture of a check (or a fix): one self-contained file, no network.

Python writes the page: summary, DLA subgraph list, fallback table, rule cards, the fix's changes, and per report
the layer graph as compact JSON. The drawing is laid out in the page by dagre (`vendor/dagre.min.js`, MIT,
inlined): a maintained layered (Sugiyama) layout, so users need no graphviz and Python needs no extra package,
and the page can re-lay the graph when a collapsed run is expanded. Big models stay drawable: above
`COLLAPSE_OVER` layers, each run of at least `MIN_RUN` consecutive layers (network order) in one partition (one
DLA subgraph, or the GPU) is one box with its count, listed on click and expandable.
"""
from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from ..core import Report
from ..fix import FixResult

COLLAPSE_OVER = 120   # layers: above this, runs are collapsed on first view (every box stays one click away)
MIN_RUN = 3           # a shorter run is drawn layer by layer even when collapsing
NAME_CHARS = 200      # a layer name longer than this is clipped in the page data (the tables keep it whole)

DLA_COLOR = "#34a853"  # the tests look for these fills in the screenshot
GPU_COLOR = "#ea7704"


def _vendor(name: str) -> str:
    return resources.files("dlarules.report").joinpath("vendor", name).read_text(encoding="utf-8")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json(data: Any) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' left to end the element or start a comment."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _target_text(r: Report) -> str:
    t = r.target
    return f"{t.hardware_text} / TensorRT {t.trt} / {t.platform} / {t.mode_name}"


def partitions(report: Report) -> dict[int, str]:
    """Layer index -> its partition: 'DLA:k' for a live DLA subgraph, 'moved:k' for one moved to the GPU by the
    loadable limit, 'GPU' for a rule fallback."""
    out = {i: d for i, d in report.placement.device.items()}
    for sg in report.placement.subgraphs:
        if sg.moved_to_gpu:
            for i in sg.layers:
                out[i] = f"moved:{sg.index}"
    return out


def runs(report: Report) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of consecutive layers (positions in report.layers) in one partition."""
    part = partitions(report)
    keys = [part.get(v.index, "GPU") for v in report.layers]
    out: list[tuple[int, int]] = []
    start = 0
    for pos in range(1, len(keys) + 1):
        if pos == len(keys) or keys[pos] != keys[start]:
            out.append((start, pos))
            start = pos
    return out


def _edges(report: Report, part: dict[int, str]) -> list[list[int]]:
    """[producer position, consumer position, transition] per data edge. A transition crosses partitions with a
    DLA subgraph on one side (as partition.count_transitions counts them); weights from constants are not."""
    if report.layer_graph is None:
        return []
    pos = {v.index: k for k, v in enumerate(report.layers)}
    layers = {layer.index: layer for layer in report.layer_graph.layers}
    producer: dict[str, int] = {}
    for layer in report.layer_graph.layers:
        for t in layer.outputs:
            producer[t.name] = layer.index
    seen: set[tuple[int, int]] = set()
    out: list[list[int]] = []
    for layer in report.layer_graph.layers:
        if layer.index not in pos:
            continue
        for t in layer.inputs:
            src = producer.get(t.name)
            if src is None or src not in pos or src == layer.index or (src, layer.index) in seen:
                continue
            seen.add((src, layer.index))
            a, b = part.get(src, "GPU"), part.get(layer.index, "GPU")
            crossing = a != b and (a.startswith("DLA") or b.startswith("DLA")) and layers[src].kind != "CONSTANT"
            out.append([pos[src], pos[layer.index], int(crossing)])
    return out


def _changed_nodes(fix: FixResult | None, side: str) -> set[str]:
    """ONNX nodes a fix rewrote: removed or rewritten ones before, added ones after."""
    if fix is None:
        return set()
    names: set[str] = set()
    for c in fix.changes:
        names.update(c.removed_nodes + [c.node] if side == "before" else c.added_nodes or [c.node])
    return names


def panel_data(report: Report, pid: str, changed: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """What the page script draws for one report (compact keys: the file stays small on 1,000+ layers)."""
    part = partitions(report)
    sg_of = {i: sg.index for sg in report.placement.subgraphs for i in sg.layers}
    layers = []
    for v in report.layers:
        p = part.get(v.index, "GPU")
        item: dict[str, Any] = {"i": v.index, "k": v.kind, "n": v.name[:NAME_CHARS],
                                "d": "DLA" if p.startswith("DLA") else "GPU"}
        if v.index in sg_of:
            item["s"] = sg_of[v.index]
        if p.startswith("moved"):
            item["m"] = 1
        if v.precision:
            item["p"] = v.precision
        if v.findings:
            item["f"] = [[f.rule, f.message] for f in v.findings]
        if changed and set(v.nodes) & changed:
            item["c"] = 1
        layers.append(item)
    pl = report.placement
    return {"id": pid, "collapse": len(report.layers) > COLLAPSE_OVER, "minRun": MIN_RUN,
            "limit": pl.loadable_limit, "layers": layers, "edges": _edges(report, part),
            "runs": [list(r) for r in runs(report)],
            "subgraphs": [{"k": sg.index, "name": sg.name, "n": len(sg.layers), "m": int(sg.moved_to_gpu)}
                          for sg in pl.subgraphs]}


def _rules(reports: list[Report]) -> dict[str, dict[str, Any]]:
    """Rule ID -> what the page shows about it (the finding carries the rule DB's source, fix and hint)."""
    out: dict[str, dict[str, Any]] = {}
    for r in reports:
        for v in r.layers:
            for f in v.findings:
                out.setdefault(f.rule, {"source": f.source, "url": f.url, "confidence": f.confidence,
                                        "fix": f.fix, "hint": f.hint, "layers": 0})
                out[f.rule]["layers"] += 1
    return dict(sorted(out.items()))


def _summary(r: Report) -> str:
    s, pl = r.summary, r.placement
    cov = r.coverage
    limit = (f"<span class='limit over'>{len(pl.subgraphs)} DLA subgraphs exceed the loadable limit of "
             f"{pl.loadable_limit} per DLA core: {sum(sg.moved_to_gpu for sg in pl.subgraphs)} moved to the GPU</span>"
             if pl.limit_exceeded else
             f"<span class='limit'>loadable limit {pl.loadable_limit} DLA subgraphs per DLA core</span>")
    return (f"<p class='summary'><b>{s['layers_on_dla']}</b> layers on DLA, <b>{s['layers_on_gpu']}</b> on GPU, "
            f"<b>{s['dla_subgraphs']}</b> DLA subgraph(s), <b>{s['transitions']}</b> GPU&lt;-&gt;DLA transition(s); "
            f"DLA coverage {cov['layers_pct']:.1f}% of layers, {cov['flops_pct']:.1f}% of FLOPs. {limit}</p>")


def _panel(r: Report, pid: str, heading: str, fixed: bool = False) -> str:
    pl = r.placement
    by = {v.index: v for v in r.layers}
    parts = [f"<section class='panel' id='{pid}'>",
             f"<h2>{_e(heading)}</h2>",
             f"<p class='target'>{_e(r.model)} &mdash; {_e(_target_text(r))} (rules {_e(r.db_version)})</p>",
             _summary(r),
             "<div class='legend'><span class='key dla'>DLA layer</span><span class='key gpu'>GPU layer</span>"
             "<span class='key moved'>moved to GPU (loadable limit)</span><span class='key sg'>DLA subgraph"
             "</span><span class='key tr'>GPU&lt;-&gt;DLA transition</span><span class='key run'>collapsed run"
             " (click: list, expand)</span></div>",
             "<div class='toolbar'><button data-act='in' title='zoom in'>+</button><button data-act='out' "
             "title='zoom out'>&minus;</button><button data-act='fit'>fit</button><button data-act='expand'>expand "
             "all</button><button data-act='collapse'>collapse runs</button><span class='status'></span></div>",
             "<div class='view'><div class='canvas'><noscript>The drawing needs JavaScript; the tables below list "
             "every subgraph and fallback.</noscript></div><aside class='info'>Click a box: its layer, device, "
             "rules.</aside></div>"]
    parts.append(f"<h3>DLA subgraphs ({sum(not s.moved_to_gpu for s in pl.subgraphs)}, limit {pl.loadable_limit}"
                 f" per DLA core)</h3>")
    if pl.subgraphs:
        parts.append("<table class='subgraphs'><tr><th>#</th><th>TensorRT name</th><th>layers</th><th>runs on</th>"
                     "</tr>")
        for sg in pl.subgraphs:
            where = "GPU: past the loadable limit" if sg.moved_to_gpu else "DLA"
            parts.append(f"<tr id='{pid}-sg-{sg.index}' class='{'moved' if sg.moved_to_gpu else 'dla'}'>"
                         f"<td>{sg.index}</td><td class='name'>{{{_e(sg.name)}}}</td><td>{len(sg.layers)}</td>"
                         f"<td>{where}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>none: no layer runs on DLA</p>")
    gpu = [by[i] for i in pl.gpu_layers]
    parts.append(f"<h3>GPU layers ({len(gpu)})</h3>")
    if gpu:
        parts.append("<table class='fallbacks'><tr><th>layer</th><th>rule</th><th>why</th><th>fix</th></tr>")
        for v in gpu:
            fs = v.findings
            rules = " ".join(f"<a class='rule' href='#rule-{_e(f.rule)}'>{_e(f.rule)}</a>" for f in fs) \
                or "<span class='rule'>loadable limit</span>"
            why = "<br>".join(_e(f.message) + (f" <em class='accepted'>accepted: {_e(a)}</em>" if (
                a := r.accepted_reason(v.index, f.rule)) is not None else "") for f in fs) or \
                f"its DLA subgraph is past the loadable limit of {pl.loadable_limit} per DLA core"
            fixes = ", ".join(sorted({_e(f.fix) for f in fs if f.fix})) or "&mdash;"
            parts.append(f"<tr id='{pid}-layer-{v.index}' class='fallback' data-layer='{v.index}' "
                         f"data-rules='{_e(' '.join(f.rule for f in fs))}'><td>{_e(v.kind)}: {_e(v.name)}</td>"
                         f"<td>{rules}</td><td>{why}</td><td>{fixes}</td></tr>")
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)


def _rule_cards(rules: dict[str, dict[str, Any]]) -> str:
    if not rules:
        return ""
    out = ["<section class='rules'><h2>Rules that send layers to the GPU</h2>"]
    for rid, r in rules.items():
        src = _e(r["source"]) + (f" <a href='{_e(r['url'])}'>{_e(r['url'])}</a>" if r["url"] else "")
        out.append(f"<div class='rulecard' id='rule-{_e(rid)}'><h3>{_e(rid)} <small>[{_e(r['confidence'])}]"
                   f"</small></h3><p>source: {src}</p><p>fix: {_e(r['fix']) if r['fix'] else 'no recipe'}"
                   + (f" &mdash; try <code>dlarules fix</code> (recipe <code>{_e(r['fix'])}</code>)" if r["fix"] else "")
                   + "</p>" + (f"<p>hint: {_e(r['hint'])}</p>" if r["hint"] else "") + "</div>")
    out.append("</section>")
    return "\n".join(out)


def _fix_section(fix: FixResult) -> str:
    b, a = fix.before.summary, fix.after.summary
    out = ["<section class='fix'><h2>dlarules fix: before and after</h2>",
           f"<p class='fixsum'>GPU layers {b['layers_on_gpu']} &rarr; {a['layers_on_gpu']}, DLA subgraphs "
           f"{b['dla_subgraphs']} &rarr; {a['dla_subgraphs']}, transitions {b['transitions']} &rarr; "
           f"{a['transitions']}; proof: " + ("not run" if fix.proof is None else
                                             "passed" if fix.proof.passed else "FAILED") + "</p>"]
    if fix.changes:
        out.append("<table class='changes'><tr><th>recipe</th><th>node</th><th>exact</th><th>for</th><th>what</th>"
                   "</tr>")
        for c in fix.changes:
            out.append(f"<tr><td>{_e(c.recipe)}</td><td>{_e(c.node)}</td><td>{'yes' if c.exact else 'APPROXIMATE'}"
                       f"</td><td>{_e(', '.join(c.cures))}</td><td>{_e(c.detail)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>no rewrite kept</p>")
    for s in fix.skipped + fix.reverted:
        out.append(f"<p class='skipped'>not applied: {_e(s.recipe)} on {_e(s.node)}: {_e(s.reason)}</p>")
    out.append("<div class='pair'>")
    out.append(_panel(fix.before, "fix-before", "before", fixed=True))
    out.append(_panel(fix.after, "fix-after", "after", fixed=True))
    out.append("</div></section>")
    return "\n".join(out)


def render_html(reports: list[Report], fix: FixResult | None = None) -> str:
    """One self-contained HTML page: a drawing per report (and the fix's before/after side by side)."""
    panels: list[tuple[Report, str, set[str]]] = [(r, f"p{k}", set()) for k, r in enumerate(reports)]
    if fix is not None:
        panels += [(fix.before, "fix-before", _changed_nodes(fix, "before")),
                   (fix.after, "fix-after", _changed_nodes(fix, "after"))]
    models = sorted({r.model for r, _, _ in panels})
    title = "dlarules: " + (", ".join(models) if models else "no report")
    body = [_panel(r, pid, "check" if len(reports) == 1 else f"check {k + 1}: {_target_text(r)}")
            for k, (r, pid, _) in enumerate(panels[:len(reports)])]
    if fix is not None:
        body.append(_fix_section(fix))
    body.append(_rule_cards(_rules([r for r, _, _ in panels])))
    data = "\n".join(f"<script type='application/json' class='panel-data'>{_json(panel_data(r, pid, ch))}</script>"
                     for r, pid, ch in panels)
    rules = f"<script type='application/json' id='dlarules-rules'>{_json(_rules([r for r, _, _ in panels]))}</script>"
    licence = _vendor("dagre.LICENSE").replace("*/", "* /")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>\n"
            f"<meta name='generator' content='dlarules'>\n<style>{_CSS}</style></head>\n<body>\n"
            f"<header><h1>{_e(title)}</h1></header>\n" + "\n".join(body) + "\n" + data + "\n" + rules + "\n"
            f"<script>/*! dagre (@dagrejs/dagre 3.1.3, with @dagrejs/graphlib), MIT licence:\n{licence}*/\n"
            f"{_vendor('dagre.min.js')}</script>\n<script>{_JS}</script>\n</body></html>\n")


_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:0 16px 32px;color:#222;background:#fff}
h1{font-size:18px}h2{font-size:16px;margin:18px 0 4px}h3{font-size:14px;margin:14px 0 4px}
.summary .limit{margin-left:6px;padding:1px 6px;border:1px solid #888;border-radius:3px}
.summary .limit.over{border-color:#c62828;color:#c62828;font-weight:bold}
.legend span.key{display:inline-block;margin-right:12px;padding-left:18px;position:relative}
.legend span.key:before{content:'';position:absolute;left:0;top:2px;width:13px;height:11px;border-radius:2px}
.legend .dla:before{background:DLA}.legend .gpu:before{background:GPU}
.legend .moved:before{background:GPU;outline:2px dashed #555}
.legend .sg:before{border:2px solid #1b5e20;background:rgba(52,168,83,.1)}
.legend .tr:before{height:0;top:7px;border-top:3px dashed #c62828}
.legend .run:before{background:DLA;box-shadow:3px 3px 0 #1b5e20}
.legend .changed:before{background:DLA;outline:3px solid #1565c0}
.toolbar{margin:6px 0}.toolbar button{margin-right:4px}.toolbar .status{color:#666;margin-left:8px}
.view{display:flex;gap:8px;align-items:flex-start}
.canvas{flex:1;overflow:auto;border:1px solid #ccc;height:70vh;min-height:300px;cursor:grab;background:#fff}
.info{width:300px;max-height:70vh;overflow:auto;border:1px solid #ccc;padding:6px;font-size:12px;word-break:break-all}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px}.pair .info{width:200px}
svg .layer rect,svg .run rect.front{stroke:#333;stroke-width:1}
svg .dla>rect{fill:DLA}svg .gpu>rect{fill:GPU}
svg .run rect.back{stroke:#333;stroke-width:1}
svg .moved>rect{stroke-dasharray:4 2;stroke-width:2}
svg .changed>rect.front,svg .layer.changed>rect{stroke:#1565c0;stroke-width:3}
svg text{font:11px system-ui,sans-serif;fill:#fff;pointer-events:none}
svg .subgraph rect{fill:rgba(52,168,83,.08);stroke:#1b5e20;stroke-width:2}
svg .subgraph.moved rect{fill:rgba(120,120,120,.08);stroke:#777;stroke-dasharray:6 3}
svg .subgraph text{fill:#1b5e20;font-weight:bold}svg .subgraph.moved text{fill:#555}
svg .edge{fill:none;stroke:#888;stroke-width:1.2}
svg .edge.transition{stroke:#c62828;stroke-width:2.2;stroke-dasharray:5 3}
svg circle.transition{fill:#c62828}
svg .sel>rect{stroke:#000;stroke-width:3}
svg .layer,svg .run,svg .subgraph rect{cursor:pointer}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;
vertical-align:top}tr.moved td{color:#666}tr.hl td{background:#fff3c4}
.rulecard{border-left:4px solid GPU;padding:2px 8px;margin:6px 0}
.info .finding{border-left:3px solid GPU;padding-left:6px;margin:6px 0}
""".replace("DLA", DLA_COLOR).replace("GPU", GPU_COLOR)

# The page script: lays out each panel with dagre and draws it as one SVG (string-built: fast on many boxes).
_JS = r"""
(function(){
'use strict';
var RULES=JSON.parse(document.getElementById('dlarules-rules').textContent);
var W=176,H=34,RW=190,RH=40;
function esc(s){return String(s).replace(/[&<>"']/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c];});}
function clip(s,n){s=String(s);return s.length>n?s.slice(0,n-1)+'\u2026':s;}
function Panel(d){
  var root=document.getElementById(d.id),canvas=root.querySelector('.canvas'),info=root.querySelector('.info');
  var status=root.querySelector('.status');
  var expanded={},collapse=d.collapse,scale=1,size=[1,1],sgName={};
  d.subgraphs.forEach(function(s){sgName[s.k]=s;});
  function isRun(r){return collapse&&!expanded[r]&&(d.runs[r][1]-d.runs[r][0])>=d.minRun;}
  function draw(){
    var t0=performance.now(),owner=[],nodes=[];
    if(!d.layers.length){canvas.textContent='no TensorRT layer to draw';root.setAttribute('data-boxes',0);root.setAttribute('data-drawn','1');return;}
    d.runs.forEach(function(run,r){
      if(isRun(r)){var id='r'+r;nodes.push({id:id,run:r});for(var p=run[0];p<run[1];p++)owner[p]=id;}
      else for(var q=run[0];q<run[1];q++){owner[q]='l'+q;nodes.push({id:'l'+q,pos:q});}
    });
    var g=new dagre.graphlib.Graph({compound:true});
    g.setGraph({rankdir:'TB',nodesep:14,ranksep:26,marginx:12,marginy:22});
    g.setDefaultEdgeLabel(function(){return {};});
    nodes.forEach(function(n){
      var first=n.run!==undefined?d.runs[n.run][0]:n.pos,L=d.layers[first];
      g.setNode(n.id,{width:n.run!==undefined?RW:W,height:n.run!==undefined?RH:H,n:n});
      if(L.s!==undefined){var c='sg'+L.s;if(!g.hasNode(c))g.setNode(c,{sg:L.s});g.setParent(n.id,c);}
    });
    var edges={};
    d.edges.forEach(function(e){
      var a=owner[e[0]],b=owner[e[1]];if(a===b)return;var k=a+'>'+b;
      if(!edges[k]){edges[k]={v:a,w:b,t:0};g.setEdge(a,b);}if(e[2])edges[k].t=1;
    });
    try{dagre.layout(g);}catch(err){status.textContent='layout failed ('+err+'): collapse runs';return;}
    var gw=g.graph().width||1,gh=g.graph().height||1,out=[];
    out.push('<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="-12 -12 '+(gw+24)+' '+(gh+24)+'">');
    out.push('<defs><marker id="'+d.id+'-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L8,4L0,8z" fill="#888"/></marker></defs>');
    g.nodes().forEach(function(id){
      var v=g.node(id);if(v.sg===undefined)return;var s=sgName[v.sg];
      var x=v.x-v.width/2-6,y=v.y-v.height/2-16;
      out.push('<g class="subgraph'+(s.m?' moved':'')+'" data-index="'+s.k+'" data-name="'+esc(s.name)+'"><title>{'+esc(s.name)+'} ('+s.n+' layers'+(s.m?', moved to the GPU: past the loadable limit of '+d.limit:'')+')</title><rect x="'+x+'" y="'+y+'" width="'+(v.width+12)+'" height="'+(v.height+22)+'" rx="6"/><text x="'+(x+6)+'" y="'+(y+12)+'">'+esc(clip((s.m?'moved to GPU: ':'DLA '+s.k+': ')+s.name,Math.max(20,Math.floor((v.width+12)/6.2))))+'</text></g>');
    });
    var ntr=0;
    Object.keys(edges).forEach(function(k){
      var e=edges[k],pts=g.edge(e.v,e.w).points||[];if(!pts.length)return;
      var path='M'+pts.map(function(p){return p.x.toFixed(1)+','+p.y.toFixed(1);}).join('L');
      out.push('<path class="edge'+(e.t?' transition':'')+'" d="'+path+'" marker-end="url(#'+d.id+'-arrow)"/>');
      if(e.t){ntr++;var m=pts[Math.floor(pts.length/2)];out.push('<circle class="transition" cx="'+m.x.toFixed(1)+'" cy="'+m.y.toFixed(1)+'" r="3.5"><title>GPU&lt;-&gt;DLA transition</title></circle>');}
    });
    nodes.forEach(function(n){
      var v=g.node(n.id),x=(v.x-v.width/2).toFixed(1),y=(v.y-v.height/2).toFixed(1);
      if(n.run!==undefined){
        var run=d.runs[n.run],L=d.layers[run[0]],last=d.layers[run[1]-1],cnt=run[1]-run[0],rules={};
        for(var p=run[0];p<run[1];p++)(d.layers[p].f||[]).forEach(function(f){rules[f[0]]=1;});
        var dev=L.d==='DLA'?'dla':'gpu';
        out.push('<g class="run '+dev+(L.m?' moved':'')+'" data-run="'+n.run+'" data-count="'+cnt+'" data-rules="'+esc(Object.keys(rules).join(' '))+'" tabindex="0" transform="translate('+x+','+y+')"><title>'+cnt+' '+L.d+' layers: '+esc(L.n)+' ... '+esc(last.n)+'</title><rect class="back" x="4" y="4" width="'+RW+'" height="'+RH+'" rx="3"/><rect class="front" width="'+RW+'" height="'+RH+'" rx="3"/><text x="6" y="15">'+cnt+' '+(L.m?'GPU (moved)':L.d)+' layers'+(L.s!==undefined?' of subgraph '+L.s:'')+'</text><text x="6" y="30">'+esc(clip(L.n,30))+'</text></g>');
      }else{
        var l=d.layers[n.pos],cls=l.d==='DLA'?'dla':'gpu',rs=(l.f||[]).map(function(f){return f[0];});
        out.push('<g class="layer '+cls+(l.m?' moved':'')+(l.c?' changed':'')+'" data-layer="'+l.i+'" data-pos="'+n.pos+'" data-kind="'+esc(l.k)+'" data-name="'+esc(l.n)+'" data-rules="'+esc(rs.join(' '))+'" tabindex="0" transform="translate('+x+','+y+')"><title>'+esc(l.k+': '+l.n)+' ['+l.d+(l.p?' '+l.p.toUpperCase():'')+']'+(rs.length?' '+esc(rs.join(', ')):'')+'</title><rect width="'+W+'" height="'+H+'" rx="3"/><text x="5" y="14">'+esc(clip(l.k,26))+(rs.length?' \u26a0':'')+'</text><text x="5" y="28">'+esc(clip(l.n,28))+'</text></g>');
      }
    });
    out.push('</svg>');
    canvas.innerHTML=out.join('');
    size=[gw+24,gh+24];zoom(1);
    var ms=Math.round(performance.now()-t0);
    root.setAttribute('data-layout-ms',ms);root.setAttribute('data-boxes',nodes.length);root.setAttribute('data-drawn','1');
    status.textContent=nodes.length+' boxes for '+d.layers.length+' layers, '+ntr+' transition edge(s), laid out in '+ms+' ms';
  }
  function zoom(f){scale=Math.max(0.05,Math.min(4,scale*f));var s=canvas.querySelector('svg');if(s){s.setAttribute('width',size[0]*scale);s.setAttribute('height',size[1]*scale);}}
  function fit(){var w=canvas.clientWidth-4,h=canvas.clientHeight-4;scale=1;zoom(Math.min(w/size[0],h/size[1],1));}
  function findings(l){
    if(l.m)return '<div class="finding">its DLA subgraph '+l.s+' is past the loadable limit of '+d.limit+' per DLA core: TensorRT moves it to the GPU</div>';
    return (l.f||[]).map(function(f){var r=RULES[f[0]]||{};return '<div class="finding"><a href="#rule-'+esc(f[0])+'"><b>'+esc(f[0])+'</b></a> ['+esc(r.confidence||'')+']<br>'+esc(f[1])+'<br>source: '+esc(r.source||'')+(r.url?' <a href="'+esc(r.url)+'">'+esc(r.url)+'</a>':'')+'<br>fix: '+(r.fix?'<code>'+esc(r.fix)+'</code> (dlarules fix)':'no recipe')+(r.hint?'<br>hint: '+esc(r.hint):'')+'</div>';}).join('');
  }
  function select(el){root.querySelectorAll('.sel').forEach(function(x){x.classList.remove('sel');});if(el)el.classList.add('sel');}
  function showLayer(pos){
    var l=d.layers[pos];
    info.innerHTML='<b>'+esc(l.k)+'</b>: '+esc(l.n)+'<br>runs on '+(l.m?'GPU (moved)':l.d)+(l.p?' in '+l.p.toUpperCase():'')+(l.s!==undefined?'<br>subgraph: {'+esc(sgName[l.s].name)+'}':'')+findings(l);
    var row=document.getElementById(d.id+'-layer-'+l.i);
    root.querySelectorAll('tr.hl').forEach(function(x){x.classList.remove('hl');});if(row)row.classList.add('hl');
  }
  function showRun(r){
    var run=d.runs[r],L=d.layers[run[0]],items=[];
    for(var p=run[0];p<run[1];p++){var l=d.layers[p];items.push('<li><a href="#" data-pos="'+p+'">'+esc(l.k+': '+l.n)+'</a>'+((l.f||[]).length?' ('+esc(l.f.map(function(f){return f[0];}).join(', '))+')':'')+'</li>');}
    info.innerHTML='<b>'+(run[1]-run[0])+' consecutive '+(L.m?'GPU (moved)':L.d)+' layers</b>'+(L.s!==undefined?' of {'+esc(sgName[L.s].name)+'}':'')+'<br><button data-expand="'+r+'">expand this run</button><ol>'+items.join('')+'</ol>';
  }
  canvas.addEventListener('click',function(ev){
    var el=ev.target.closest('.layer,.run,.subgraph');if(!el)return;select(el);
    if(el.classList.contains('layer'))showLayer(+el.getAttribute('data-pos'));
    else if(el.classList.contains('run'))showRun(+el.getAttribute('data-run'));
    else{var s=sgName[+el.getAttribute('data-index')];info.innerHTML='<b>{'+esc(s.name)+'}</b><br>'+s.n+' layers'+(s.m?'<br>moved to the GPU: past the loadable limit of '+d.limit+' per DLA core':'');}
  });
  canvas.addEventListener('keydown',function(ev){if(ev.key==='Enter'&&ev.target.closest){var el=ev.target.closest('.layer,.run');if(el)el.dispatchEvent(new MouseEvent('click',{bubbles:true}));}});
  info.addEventListener('click',function(ev){
    var a=ev.target.closest('[data-pos]');if(a){ev.preventDefault();showLayer(+a.getAttribute('data-pos'));return;}
    var b=ev.target.closest('[data-expand]');if(b){expanded[+b.getAttribute('data-expand')]=1;draw();}
  });
  root.querySelector('.toolbar').addEventListener('click',function(ev){
    var a=ev.target.getAttribute&&ev.target.getAttribute('data-act');if(!a)return;
    if(a==='in')zoom(1.25);else if(a==='out')zoom(0.8);else if(a==='fit')fit();
    else if(a==='expand'){collapse=false;draw();}else if(a==='collapse'){collapse=true;expanded={};draw();}
  });
  var drag=null;
  canvas.addEventListener('pointerdown',function(ev){if(ev.target.closest('.layer,.run'))return;drag=[ev.clientX,ev.clientY,canvas.scrollLeft,canvas.scrollTop];});
  window.addEventListener('pointermove',function(ev){if(drag){canvas.scrollLeft=drag[2]-(ev.clientX-drag[0]);canvas.scrollTop=drag[3]-(ev.clientY-drag[1]);}});
  window.addEventListener('pointerup',function(){drag=null;});
  canvas.addEventListener('wheel',function(ev){if(ev.ctrlKey){ev.preventDefault();zoom(ev.deltaY<0?1.1:0.9);}},{passive:false});
  draw();
  // a link to one layer: report.html#show=PANEL:LAYER expands its run and clicks its box
  var m=/^#show=([^:]+):(\d+)$/.exec(location.hash);
  if(m&&m[1]===d.id){
    d.runs.forEach(function(run,r){for(var p=run[0];p<run[1];p++)if(d.layers[p].i===+m[2]&&isRun(r)){expanded[r]=1;draw();}});
    var el=canvas.querySelector('.layer[data-layer="'+m[2]+'"]');
    if(el){el.dispatchEvent(new MouseEvent('click',{bubbles:true}));el.scrollIntoView();}
  }
}
document.querySelectorAll('script.panel-data').forEach(function(s){Panel(JSON.parse(s.textContent));});
})();
"""
