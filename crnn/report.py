"""The evaluation report in three forms: JSON for machines, Markdown for a README, one self-contained HTML
page for people (plots and the worst lines per scene as inline images, nothing fetched from anywhere)."""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from crnn.data.image_io import ImageDecodeError, decode_image  # noqa: E402
from crnn.data.lmdb_io import LmdbReader  # noqa: E402
from crnn.paired import LINES_FILE  # noqa: E402


def _lmdb_scenes(models: list[dict]) -> list[str]:
    """Scene columns of the models table: the LMDB sets' scenes (labelled folders get their own table).
    Reports written before per-set figures existed have every scene in `scenes`."""
    found = {s for m in models for x in m.get("sets", []) if x.get("kind") == "lmdb" for s in x["scenes"]}
    if any("sets" in m for m in models):
        return sorted(found)
    return sorted({s for m in models for s in m["scenes"]})


def _set_name(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else path


def to_markdown(report: dict) -> str:
    """The models table (synthetic scenes, one CER column per test set when there are several), then
    one table per labelled folder: CER / line accuracy per category and model, as the issue tracker and
    the model card show real-image figures."""
    models = report["models"]
    scenes = _lmdb_scenes(models)
    sets = [t["path"] for t in report["test_sets"] if t.get("n")]
    set_cols = [f"CER {_set_name(p)}" for p in sets] if len(sets) > 1 else []
    head = (
        ["model", "format", "size MB", "params", "p50 / p95 ms"]
        + [f"CER {s}" for s in scenes]
        + set_cols
        + ["CER all", "line acc", "lines/s", "peak RSS MB"]
    )
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        row = [
            m["name"],
            m["format"],
            f"{m['size_bytes'] / 1e6:.2f}",
            f"{m['params'] / 1e6:.3f} M" if m["params"] else "-",
            f"{m['latency_ms']['p50']:.2f} / {m['latency_ms']['p95']:.2f}",
        ]
        row += [f"{m['scenes'][s]['cer'] * 100:.2f}%" if s in m["scenes"] else "-" for s in scenes]
        if set_cols:
            by_path = {x["path"]: x for x in m.get("sets", [])}
            row += [f"{by_path[p]['cer'] * 100:.2f}%" if p in by_path else "-" for p in sets]
        row += [
            f"{m['overall']['cer'] * 100:.2f}%",
            f"{m['overall']['acc'] * 100:.1f}%",
            f"{m['throughput_lps']:.0f}",
            f"{m['peak_rss_mb']:.0f}" if m.get("peak_rss_mb") is not None else "-",
        ]
        out.append("| " + " | ".join(row) + " |")
    for t in report["test_sets"]:
        if t.get("kind") == "folder" and t.get("n"):
            out += ["", *folder_table(report, t["path"])]
    mach = report["machine"]
    listed = ", ".join(
        f"{t['path']} ({t['n']} lines{', ' + t['error'] if t.get('error') else ''})"
        for t in report["test_sets"]
    )
    out.append("")
    out.append(
        f"{mach['cpu']}, {mach['cores']} cores, {mach['threads']} threads; torch {mach['torch']}, "
        f"onnxruntime {mach['onnxruntime']}. Latency: batch 1, image to text. Test sets: {listed}."
    )
    return "\n".join(out) + "\n"


def _real_cell(v: dict) -> str:
    return f"{v['cer']:.3f} / {v['acc']:.2f} ({v['latency_ms']['p50']:.1f})"


def folder_table(report: dict, path: str) -> list[str]:
    """Rows: categories, their macro average and all lines; cells: CER / exact-line accuracy (p50 ms),
    from each model's figures for this set alone."""
    rec = next(t for t in report["test_sets"] if t["path"] == path)
    runs = [(m["name"], x) for m in report["models"] for x in m.get("sets", []) if x["path"] == path]
    cats = rec.get("scenes", [])
    head = ["category", "n"] + [f"{name} CER / acc (p50 ms)" for name, _ in runs]
    out = [
        f"Real lines: `{path}` (CER / exact-line accuracy, normalised per category; batch-1 p50 ms per line)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for c in cats:
        n = next((x["scenes"][c]["n"] for _, x in runs if c in x["scenes"]), 0)
        cells = [_real_cell(x["scenes"][c]) if c in x["scenes"] else "-" for _, x in runs]
        out.append("| " + " | ".join([c, str(n), *cells]) + " |")
    rows = [
        ["macro", str(len(cats)), *(f"{x['macro_cer']:.3f} / -" for _, x in runs)],
        ["all", str(rec["n"]), *(f"{x['cer']:.3f} / {x['acc']:.2f}" for _, x in runs)],
        ["p50 ms / line (mean over categories)", "", *(_mean_p50(x) for _, x in runs)],
    ]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _mean_p50(set_figures: dict) -> str:
    vals = [v["latency_ms"]["p50"] for v in set_figures["scenes"].values()]
    vals = [v for v in vals if v == v]  # a category whose lines were all unreadable has no timing
    return f"{sum(vals) / len(vals):.1f}" if vals else "-"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict, latencies: dict[str, list[float]]) -> list[tuple[str, str]]:
    models = report["models"]
    scenes = sorted({s for m in models for s in m["scenes"]})
    figs = []
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / max(len(models), 1)
    for k, m in enumerate(models):
        xs = [i + k * width for i in range(len(scenes))]
        ax.bar(xs, [m["scenes"].get(s, {}).get("cer", 0) * 100 for s in scenes], width, label=m["name"])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(scenes))], scenes)
    ax.set_ylabel("CER %")
    ax.set_title("CER per scene type")
    ax.legend(fontsize=8)
    figs.append(("CER per scene type and model", _png(fig)))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [m["name"] for m in models]
    samples = [latencies.get(n) or [m["latency_ms"]["p50"]] for n, m in zip(names, models)]
    ax.boxplot(samples, showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_yscale("log")
    ax.set_ylabel("ms per line (batch 1, log)")
    ax.set_title("Latency distribution")
    figs.append(("Latency distribution per model", _png(fig)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m in models:
        ax.scatter(m["size_bytes"] / 1e6, m["overall"]["cer"] * 100, s=40)
        ax.annotate(m["name"], (m["size_bytes"] / 1e6, m["overall"]["cer"] * 100), fontsize=8)
    ax.set_xlabel("size MB")
    ax.set_ylabel("CER %")
    ax.set_title("Size against CER")
    figs.append(("Size against CER", _png(fig)))
    return figs


def _diff_html(label: str, pred: str) -> tuple[str, str]:
    """Label and prediction with differing spans marked (deleted in red, inserted in green)."""
    sm = difflib.SequenceMatcher(a=label, b=pred, autojunk=False)
    a, b = [], []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        la, lb = html.escape(label[i1:i2]), html.escape(pred[j1:j2])
        if op == "equal":
            a.append(la)
            b.append(lb)
        else:
            if la:
                a.append(f"<del>{la}</del>")
            if lb:
                b.append(f"<ins>{lb}</ins>")
    return "".join(a), "".join(b)


def _line_image(cache: dict, line: dict) -> str:
    if "file" in line:  # a labelled folder's image, shown in colour as it is
        try:
            img = decode_image(Path(line["file"]).read_bytes(), color=True)
        except (OSError, ImageDecodeError):
            return ""
    else:
        reader = cache.setdefault(line["set"], LmdbReader(line["set"]))
        img = reader.read(line["index"]).image
    if img is None:
        return ""
    ok, buf = cv2.imencode(".png", img)
    return base64.b64encode(buf.tobytes()).decode() if ok else ""


def _html_table(rows: list[str]) -> str:
    out = ["<table>"]
    for k, r in enumerate(r for r in rows if not r.startswith("|---")):
        cells = [c.strip() for c in r.strip("|").split("|")]
        tag = "th" if k == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
    return "\n".join([*out, "</table>"])


def to_html(
    report: dict, lines: dict[str, list[dict]], worst: int, latencies: dict[str, list[float]] | None = None
) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>crnn-toolkit evaluation</title><style>",
        "body{font-family:sans-serif;margin:24px;max-width:1200px}"
        "table{border-collapse:collapse;margin:8px 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
        "del{background:#f6c6c6;text-decoration:none}"
        "ins{background:#c8ecc8;text-decoration:none}img.line{max-height:32px;max-width:560px}"
        "figure{display:inline-block;margin:8px}",
        "</style></head><body>",
        f"<h1>Evaluation: {html.escape(report['experiment'])}</h1>",
    ]
    md = to_markdown(report).splitlines()
    block: list[str] = []
    for line in [*md[:-1], ""]:  # tables separated by blank lines; captions are the other lines
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            parts.append(_html_table(block))
            block = []
        if line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    parts.append(f"<p>{html.escape(md[-1])}</p>")
    for title, b64 in _plots(report, latencies or {}):
        parts.append(
            f"<figure><img class='plot' alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{html.escape(title)}</figcaption></figure>"
        )
    cache: dict = {}
    for name, ls in lines.items():
        parts.append(f"<h2>Worst lines: {html.escape(name)}</h2>")
        by_scene: dict[str, list[dict]] = {}
        for ln in ls:
            by_scene.setdefault(ln["scene"], []).append(ln)
        for scene, items in sorted(by_scene.items()):
            scored = sorted(items, key=lambda x: -x["edits"] / max(len(x["label"]), 1))
            scored = [x for x in scored if x["label"] != x["pred"]][:worst]
            parts.append(
                f"<h3>{html.escape(scene)} ({len(scored)} shown)</h3><table><tr><th>image</th><th>label</th>"
                "<th>prediction</th><th>CER</th></tr>"
            )
            for x in scored:
                lab, pre = _diff_html(x["label"], x["pred"])
                img = _line_image(cache, x)
                shown = f"<img class='line' src='data:image/png;base64,{img}'>" if img else "(unreadable)"
                c = x["edits"] / max(len(x["label"]), 1)
                parts.append(f"<tr><td>{shown}</td><td>{lab}</td><td>{pre}</td><td>{c * 100:.0f}%</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(
    report: dict,
    lines: dict[str, list[dict]],
    out_dir: Path,
    worst: int = 20,
    latencies: dict[str, list[float]] | None = None,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out_dir / "report.md").write_text(to_markdown(report))
    (out_dir / "report.html").write_text(to_html(report, lines, worst, latencies), encoding="utf-8")
    sha = {m["name"]: m.get("sha256") for m in report["models"]}  # peers have none
    with open(out_dir / LINES_FILE, "w", encoding="utf-8") as f:  # every model's every line, paired later
        for name, ls in lines.items():
            for x in ls:
                f.write(json.dumps({"model": name, "sha256": sha.get(name), **x}, ensure_ascii=False) + "\n")
