"""The feature catalog as one static HTML page: views, features, lineage, consumers, freshness, search.

    featurestore docs [--out site/] [--snapshot DIR]      # site/index.html, no server needed
    featurestore serve                                    # the same page at /

Everything is rendered here (plain HTML and inline SVG, no external files, no network); a few
lines of JavaScript filter the page as one types in the search box. What needs PostgreSQL
(online freshness, recorded consumers, unused features) is left out, with a note, when it is
not reachable. With a training snapshot, each view shows the drift (PSI) of its features.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from featurestore.errors import FeatureStoreError
from featurestore.governance.describe import ViewDescription
from featurestore.governance.stats import PSI_MODERATE, PSI_SIGNIFICANT
from featurestore.governance.unused import unread_features
from featurestore.offline.snapshots import load_snapshot
from featurestore.store import FeatureStore

__all__ = ["build_site", "render_catalog"]

UNUSED_DAYS = 30  # as `featurestore unused`: a feature nobody read for this long is unused


def build_site(store: FeatureStore, out: str | Path = "site", *, snapshot: str | Path | None = None) -> Path:
    """Write the catalog to `out`/index.html; returns its path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "index.html"
    page.write_text(render_catalog(store, snapshot=snapshot), encoding="utf-8")
    return page


def render_catalog(store: FeatureStore, *, snapshot: str | Path | None = None,
                   views: Iterable[str] | None = None) -> str:
    """The catalog page as HTML text, of `views` (default: all)."""
    names = sorted(store.views if views is None else views)
    notes: list[str] = []
    described: dict[str, ViewDescription] = {}
    for name in names:
        try:
            described[name] = store.describe(name)
        except FeatureStoreError as exc:  # PostgreSQL unreachable: the rest of the page still helps
            entry = next(v for v in store.catalog() if v["view"] == name)
            described[name] = ViewDescription(**entry, data=None, online=None, recorded_consumers=None)
            notes.append(f"{name}: {exc}")
    try:  # every read ever, once: the unused features (as `featurestore unused` finds them) come from it
        read = store.readers()
        since = datetime.now(UTC) - timedelta(days=UNUSED_DAYS)
        unused: set[str] | None = {f.qualified for v, f, _, _ in unread_features(store.project, read, since)
                                   if v.name in names}
    except FeatureStoreError as exc:
        unused, read = None, {}
        notes.append(f"consumers and unused features: {exc}")
    drift: dict[str, dict[str, dict[str, Any]]] = {}
    if snapshot is not None:
        trained = load_snapshot(snapshot)  # once, verified; a modified snapshot is an error, not a silent gap
        for name in names:
            try:
                drift[name] = {item["feature"]: item for item in store.drift(name, trained)}
            except FeatureStoreError as exc:
                notes.append(f"drift of {name}: {exc}")
    lineage = {f"{name}.{feature.name}": store.lineage(f"{name}.{feature.name}")
               for name in names for feature in store.views[name].features}
    cards = "\n".join(_view_card(described[name], lineage, unused, read, drift.get(name)) for name in names)
    feature_count = sum(len(store.views[name].features) for name in names)
    unused_note = "" if unused is None else f" · <span class=unused-count>{len(unused)} unused</span>"
    problems = "".join(f"<li>{_e(n)}</li>" for n in dict.fromkeys(notes))
    return _PAGE.format(
        title=_e(f"Feature catalog · {store.root.name}"),
        generated=_e(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        summary=f"{len(names)} views · {feature_count} features{unused_note}",
        graph=_lineage_svg(store, names),
        cards=cards,
        notes=f"<details class=notes><summary>Not shown</summary><ul>{problems}</ul></details>" if problems else "",
        snapshot=f" · drift against <code>{_e(str(snapshot))}</code>" if snapshot else "",
        style=_STYLE, script=_SCRIPT)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _view_card(view: ViewDescription, lineage: dict[str, Any], unused: set[str] | None,
               read: dict[tuple[str, str], dict[str, dict[str, Any]]], drift: dict[str, dict[str, Any]] | None) -> str:
    name = view.view
    facts = [("kind", view.kind), ("entity", ", ".join(view.entity)), ("timestamp", view.timestamp),
             ("owner", view.owner), ("version", view.version), ("file", view.path)]
    for key in ("available_after", "available_since", "ttl", "created"):
        value = getattr(view, key)
        if value and value != "0s":
            facts.append((key, value))
    if view.windows:
        facts.append(("windows", ", ".join(view.windows)))
    for start, end in view.invalid:
        facts.append(("invalid", f"{start} .. {end}"))
    if view.data:
        data = view.data
        facts.append(("data", f"{data.count:,} {data.unit}, {data.first} to {data.last}"))
    online = view.online
    facts.append(("freshness", f"online up to {online.watermark} (materialized {online.materialized_at})"
                  if online else "not materialized"))
    consumers = sorted(set(view.consumers) | {c.consumer for c in view.recorded_consumers or ()})
    facts.append(("consumers", ", ".join(consumers) or "none"))
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    tags = "".join(f"<span class=tag>{_e(t)}</span>" for t in view.tags)
    deprecated = ""
    if view.deprecated:
        deprecated = (f"<p class=deprecated>Deprecated: sunset {_e(view.deprecated.sunset)} "
                      f"{_e(view.deprecated.hint)}</p>")
    features = []
    for feature in view.features:
        qualified = f"{name}.{feature.name}"
        by = read.get((name, feature.name), {})
        readers = sorted(by)
        last = max((info["last_read"] for info in by.values()), default=None)
        last = last.strftime("%Y-%m-%d %H:%M") if last else ""
        is_unused = unused is not None and qualified in unused
        sources = ", ".join(lineage[qualified].sources)
        shift = drift.get(feature.name) if drift else None
        features.append(
            f"<tr class='feature{' unused' if is_unused else ''}' data-search='{_e(qualified.lower())}'>"
            f"<td><code>{_e(feature.name)}</code>{' <span class=badge>unused</span>' if is_unused else ''}</td>"
            f"<td>{_e(feature.type)}</td><td>{_e(sources)}</td><td>{_e(', '.join(readers) or '')}</td>"
            f"<td>{_e(last)}</td><td>{_psi_bar(shift) if shift else ''}</td></tr>")
    # The view's own words; its features match row by row (a view shows if either matches).
    search = " ".join([name, view.owner, view.description, *view.tags]).lower()
    return f"""<section class=view id="view-{_e(name)}" data-search="{_e(search)}">
<h2>{_e(name)} {tags}</h2>
<p class=description>{_e(view.description)}</p>{deprecated}
<table class=facts>{rows}</table>
<table class=features><thead><tr><th>feature</th><th>type</th><th>from</th><th>read by</th><th>last read</th>
<th>drift (PSI)</th></tr></thead><tbody>{"".join(features)}</tbody></table>
</section>"""


def _psi_bar(item: dict[str, Any]) -> str:
    """A small bar whose length is the PSI (full at 0.5), coloured by its verdict."""
    value = item["psi"]
    colour = "#2e7d32" if value < PSI_MODERATE else "#f9a825" if value < PSI_SIGNIFICANT else "#c62828"
    width = max(2, min(100, round(value / 0.5 * 100)))
    return (f'<svg class="psi" width="110" height="14" role="img" aria-label="PSI {value}">'
            f'<rect width="{width}" height="12" y="1" fill="{colour}"></rect></svg> {value:.3f} {_e(item["verdict"])}')


def _lineage_svg(store: FeatureStore, names: list[str]) -> str:
    """Sources → views → features, as one SVG: three columns of boxes joined by lines."""
    views = sorted((store.views[name] for name in names), key=lambda v: (len(v.reads), v.name))
    sources = sorted({r for v in views for r in v.reads if r not in store.views})
    features = [(v.name, f.name) for v in views for f in v.features]
    row, width = 24, 220
    height = max(len(sources), len(views), len(features)) * row + 20
    place = {("source", s): (10, 10 + i * row * max(1, len(features) // max(len(sources), 1))) for i, s in
             enumerate(sources)}
    place.update({("view", v.name): (300, 10 + i * row * max(1, len(features) // max(len(views), 1)))
                  for i, v in enumerate(views)})
    place.update({("feature", f"{v}.{f}"): (590, 10 + i * row) for i, (v, f) in enumerate(features)})
    edges = [(("source" if r not in store.views else "view", r), ("view", v.name)) for v in views for r in v.reads]
    edges += [(("view", v), ("feature", f"{v}.{f}")) for v, f in features]
    # Quoted attributes: in HTML, an unquoted value swallows the "/" of "/>".
    lines = "".join(f'<line x1="{place[a][0] + width}" y1="{place[a][1] + 9}" x2="{place[b][0]}" '
                    f'y2="{place[b][1] + 9}"></line>' for a, b in edges if a in place and b in place)
    boxes = "".join(f'<g class="node {kind}" data-node="{_e(label)}"><rect x="{x}" y="{y}" width="{width}" height="18" '
                    f'rx="4"></rect><text x="{x + 6}" y="{y + 13}">'
                    f'{_e(label.split(".", 1)[1] if kind == "feature" else label)}</text></g>'
                    for (kind, label), (x, y) in place.items())
    return (f'<svg class="lineage" viewBox="0 0 820 {height}" width="820" height="{height}" role="img" '
            f'aria-label="lineage from sources to features"><g class="edges">{lines}</g>{boxes}</svg>')


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em 2em; color: #222; }
header { display: flex; align-items: baseline; gap: 1em; flex-wrap: wrap; }
#search { font-size: 16px; padding: .4em .6em; width: 24em; }
section.view { border: 1px solid #ddd; border-radius: 6px; padding: .5em 1em; margin: 1em 0; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { text-align: left; padding: .15em .7em .15em 0; vertical-align: top; }
table.facts th { color: #666; font-weight: normal; }
table.features thead th { border-bottom: 1px solid #ccc; }
tr.unused td:first-child code { background: #fff3cd; }
.badge { background: #f0ad4e; color: #fff; border-radius: 3px; padding: 0 .4em; font-size: 11px; }
.tag { background: #e3ecfa; border-radius: 3px; padding: 0 .4em; font-size: 12px; margin-left: .3em; }
.deprecated { color: #a94442; }
.hidden { display: none; }
svg.lineage line { stroke: #9ab; stroke-width: 1; }
svg.lineage rect { fill: #f4f7fb; stroke: #9ab; }
svg.lineage .source rect { fill: #e8f5e9; }
svg.lineage .view rect { fill: #e3ecfa; }
svg.lineage text { font-size: 12px; }
"""

_SCRIPT = """
const box = document.getElementById('search');
box.addEventListener('input', () => {
  const words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
  let shown = 0;
  for (const view of document.querySelectorAll('section.view')) {
    const match = (text) => words.every((w) => text.includes(w));
    const rows = [...view.querySelectorAll('tr.feature')];
    const viewMatches = match(view.dataset.search);
    let rowsShown = 0;
    for (const row of rows) {
      const visible = viewMatches || match(row.dataset.search);
      row.classList.toggle('hidden', !visible && words.length > 0);
      if (visible) rowsShown++;
    }
    const visible = words.length === 0 || viewMatches || rowsShown > 0;
    view.classList.toggle('hidden', !visible);
    if (visible) shown++;
  }
  document.getElementById('count').textContent = words.length ? shown + ' views match' : '';
});
"""

_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width">
<title>{title}</title><style>{style}</style></head>
<body>
<header><h1>{title}</h1><span>{summary}{snapshot} · generated {generated}</span></header>
<p><input id=search type=search placeholder="Search views, features, owners, tags…" aria-label=search>
<span id=count></span></p>
{notes}
<h2>Lineage</h2>
{graph}
{cards}
<script>{script}</script>
</body></html>
"""

