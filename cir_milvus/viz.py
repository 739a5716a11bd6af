"""Pictures: contact sheets of composed queries and their hits, and recall-against-alpha plots.

A contact sheet has one row per query: the reference (blue frame, labelled), the modification text (wrapped), then
the top hits, each with its id and score underneath (a green / red frame when ground truth says hit / miss). A
legend above the rows names each frame colour the sheet uses (reference, correct, wrong). Images whose files cannot
be found become a grey tile that says so, never a black square.

A recall-against-alpha plot draws one colour per composer and one line style per metric; composers without alpha
are the only dashed lines, and the tuned alpha of each composer is marked with a star (and named in the legend).

Plots need matplotlib (``pip install 'cir_milvus[plot]'``), imported only when a plot is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["SheetRow", "contact_sheet", "draw_recall_vs_alpha", "legend_entries", "load_tile", "placeholder_tile",
           "plot_recall_vs_alpha", "resolve_source"]

REFERENCE = (40, 80, 200)
HIT = (30, 160, 60)
MISS = (200, 50, 50)
INK = (30, 30, 30)
MUTED = (110, 110, 110)
FRAME_LABELS = {"reference": REFERENCE, "correct": HIT, "wrong": MISS}
"""The frame colours of a contact sheet by what they mean (the legend's entries)."""


@dataclass
class SheetRow:
    """One query row.

    Attributes:
        reference: reference image (``None`` for a text-only query).
        text: the modification text.
        hits: ``(image, caption, is_hit)`` per hit; the caption may hold several lines (id, then score);
            ``is_hit`` is ``None`` when there is no ground truth.
    """

    reference: Image.Image | None
    text: str
    hits: Sequence[tuple[Image.Image, str, bool | None]]


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any) -> float:
    return float(draw.textlength(text, font=font))


def wrap_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap by rendered width (words never squashed; an over-long word is cut with an ellipsis)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while _text_width(draw, word, font) > width and len(word) > 1:
            word = word[:-2] + "…"
        candidate = f"{line} {word}" if line else word
        if _text_width(draw, candidate, font) <= width:
            line = candidate
        else:
            if line:
                lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def _fit(text: str, draw: ImageDraw.ImageDraw, font: Any, width: int) -> str:
    if _text_width(draw, text, font) <= width:
        return text
    while len(text) > 1 and _text_width(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def placeholder_tile(label: str, size: int = 224) -> Image.Image:
    """A light grey tile saying the image is missing (instead of a black square)."""
    tile = Image.new("RGB", (size, size), (228, 228, 228))
    draw = ImageDraw.Draw(tile)
    font = _font(max(11, size // 16))
    draw.rectangle([0, 0, size - 1, size - 1], outline=(180, 180, 180), width=2)
    lines = ["image not found", *wrap_text(draw, label, font, size - 16)[:3]]
    y = size // 2 - len(lines) * (font.size + 4) // 2
    for line in lines:
        w = _text_width(draw, line, font)
        draw.text(((size - w) / 2, y), line, fill=MUTED, font=font)
        y += font.size + 4
    return tile


def resolve_source(source: str, roots: Sequence[str | os.PathLike[str]] = (),
                   metadata: Mapping[str, Any] | None = None) -> Path | None:
    """Find a stored image file: its path as stored, else under each of ``roots`` (by the relative path the
    folder ingest records in ``metadata["path"]``, by the stored relative path, then by file name)."""
    if source:
        p = Path(source).expanduser()
        if p.is_file():
            return p
    rel = str((metadata or {}).get("path") or "")
    for root in roots:
        base = Path(root).expanduser()
        for cand in (rel, source if source and not Path(source).is_absolute() else "", Path(source).name):
            if cand and (base / cand).is_file():
                return base / cand
    return None


def load_tile(source: str, *, roots: Sequence[str | os.PathLike[str]] = (), label: str = "",
              metadata: Mapping[str, Any] | None = None, size: int = 224) -> Image.Image:
    """The image at ``source`` (resolved with :func:`resolve_source`) or a labelled placeholder tile."""
    path = resolve_source(source, roots, metadata)
    if path is not None:
        try:
            from cir_milvus.images import load_image

            return load_image(str(path))
        except Exception:  # noqa: BLE001 - an unreadable file is shown as missing, the sheet still gets written
            pass
    return placeholder_tile(Path(source).name if source else (label or "?"), size)


def _square(img: Image.Image, size: int) -> Image.Image:
    """Fit inside a ``size`` square without distortion (letterboxed on white)."""
    img = img.convert("RGB")
    scale = size / max(img.size)
    resized = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC)
    tile = Image.new("RGB", (size, size), (255, 255, 255))
    tile.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return tile


def legend_entries(rows: Sequence[SheetRow]) -> list[tuple[str, tuple[int, int, int]]]:
    """The ``(label, frame colour)`` pairs a sheet of ``rows`` needs: ``reference`` when a row has one, ``correct``
    / ``wrong`` when ground truth marks a hit so (unjudged hits have no frame, hence no entry)."""
    used = {"reference": any(r.reference is not None for r in rows),
            "correct": any(hit is True for r in rows for _, _, hit in r.hits),
            "wrong": any(hit is False for r in rows for _, _, hit in r.hits)}
    return [(label, colour) for label, colour in FRAME_LABELS.items() if used[label]]


def _draw_legend(draw: ImageDraw.ImageDraw, entries: Sequence[tuple[str, tuple[int, int, int]]], x: int, y: int,
                 box: int, font: Any) -> None:
    """One line of framed swatches, each followed by its label: ``[ ] reference  [ ] correct  [ ] wrong``."""
    for label, colour in entries:
        draw.rectangle([x, y, x + box, y + box], outline=colour, width=3)
        draw.text((x + box + 6, y + (box - font.size) // 2 - 1), label, fill=INK, font=font)
        x += box + 6 + int(_text_width(draw, label, font)) + 3 * box // 2


def contact_sheet(rows: Sequence[SheetRow], path: str | Path, thumb: int = 224, text_width: int = 240) -> Path:
    """Write a PNG grid of queries and hits and return its path.

    Args:
        rows: one :class:`SheetRow` per query.
        path: output file (``.png``); folders are created.
        thumb: tile size in pixels.
        text_width: width of the column holding the modification text.
    """
    pad = max(8, thumb // 20)
    font = _font(max(12, thumb // 14))
    small = _font(max(11, thumb // 17))
    line_h = font.size + 5
    cap_lines = max((len(c.split("\n")) for r in rows for _, c, _ in r.hits), default=1)
    label_h = cap_lines * (small.size + 4) + 6
    row_h = thumb + label_h + 2 * pad
    n_hits = max((len(r.hits) for r in rows), default=0)
    width = pad + (thumb + pad) + text_width + pad + n_hits * (thumb + pad)
    entries = legend_entries(rows)
    top = small.size + 3 * pad if entries else 0  # the legend's strip
    sheet = Image.new("RGB", (width, top + max(1, len(rows)) * row_h), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    if entries:
        _draw_legend(draw, entries, pad, pad, small.size + 4, small)
    for r, row in enumerate(rows):
        y = top + r * row_h + pad
        if r or top:
            draw.line([(0, y - pad), (width, y - pad)], fill=(220, 220, 220), width=1)
        if row.reference is not None:
            sheet.paste(_square(row.reference, thumb), (pad, y))
            draw.rectangle([pad - 3, y - 3, pad + thumb + 2, y + thumb + 2], outline=REFERENCE, width=3)
            draw.text((pad, y + thumb + 5), "reference", fill=REFERENCE, font=small)
        else:
            draw.text((pad + 8, y + thumb // 2 - line_h), "(no reference:", fill=MUTED, font=font)
            draw.text((pad + 8, y + thumb // 2), "text only)", fill=MUTED, font=font)
        tx = pad + thumb + pad
        draw.text((tx + 6, y), "+ text", fill=MUTED, font=small)
        lines = wrap_text(draw, f"\u201c{row.text}\u201d", font, text_width - 16)
        max_lines = max(1, (thumb - line_h) // line_h)
        if len(lines) > max_lines:
            lines = [*lines[: max_lines - 1], _fit(lines[max_lines - 1] + " …", draw, font, text_width - 16)]
        for i, line in enumerate(lines):
            draw.text((tx + 6, y + line_h * (i + 1)), line, fill=INK, font=font)
        for j, (img, cap, hit) in enumerate(row.hits):
            x = tx + text_width + pad + j * (thumb + pad)
            sheet.paste(_square(img, thumb), (x, y))
            if hit is not None:
                draw.rectangle([x - 3, y - 3, x + thumb + 2, y + thumb + 2], outline=HIT if hit else MISS, width=4)
            for k, part in enumerate(cap.split("\n")):
                draw.text((x, y + thumb + 5 + k * (small.size + 4)), _fit(part, draw, small, thumb),
                          fill=INK if k == 0 else MUTED, font=small)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


SWEEP_STYLES = ("-", "-.", ":", (0, (3, 1, 1, 1, 1, 1)))
"""Line styles of the swept metrics (first metric solid); dashes are kept for the composers without alpha."""
BASELINE_STYLE = "--"


def plot_recall_vs_alpha(
    sweeps: Mapping[str, Mapping[float, Mapping[str, float]]],
    path: str | Path,
    *,
    metrics: Sequence[str] = ("R@1", "R@5", "R@10"),
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    tuned: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """Plot recall against alpha (:func:`draw_recall_vs_alpha`) with a legend beside it; write a PNG.

    Args:
        sweeps, metrics, baselines, tuned: as for :func:`draw_recall_vs_alpha`.
        path: output PNG.
        title: figure title.

    Raises:
        BackendUnavailableError: matplotlib is not installed (``pip install 'cir_milvus[plot]'``).
    """
    from cir_milvus._optional import require

    matplotlib = require("matplotlib", extra="plot", purpose="plots")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", extra="plot", purpose="plots")
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    try:
        draw_recall_vs_alpha(ax, sweeps, metrics=metrics, baselines=baselines, tuned=tuned)
        if title:
            import textwrap

            ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def draw_recall_vs_alpha(
    ax: Any,
    sweeps: Mapping[str, Mapping[float, Mapping[str, float]]],
    *,
    metrics: Sequence[str] = ("R@1", "R@5", "R@10"),
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    tuned: Mapping[str, float] | None = None,
) -> None:
    """Draw recall against alpha into a matplotlib ``Axes``: one colour per composer, one line style per metric.

    Line styles mean one thing each: the swept metrics are solid (the first), dash-dotted, dotted...; the composers
    without alpha are dashed horizontal lines, and nothing else is dashed. A tuned alpha is marked with a star on
    the composer's first metric over a faint vertical band, and named in the legend ("slerp tuned alpha 0.7").

    Args:
        ax: the axes to draw into (a legend is placed to its right).
        sweeps: ``{composer: {alpha: {metric: value}}}``.
        metrics: the metrics to draw (those a sweep lacks are skipped).
        baselines: ``{name: {metric: value}}`` of composers without alpha, drawn as dashed horizontal lines (their
            first metric in ``metrics``).
        tuned: ``{composer: alpha}``, the alpha chosen for each swept composer (e.g. by
            :func:`~cir_milvus.eval.runner.sweep_alpha`); names that were not swept are ignored.
    """
    import numpy as np
    from matplotlib import colormaps

    tab10 = colormaps["tab10"]
    colours = [tab10(i) for i in range(tab10.N)]
    for c, (name, by_alpha) in enumerate(sweeps.items()):
        colour = colours[c % len(colours)]
        alphas = sorted(by_alpha)
        drawn = [m for m in metrics if all(m in by_alpha[a] for a in alphas)]
        for s, metric in enumerate(drawn):
            ax.plot(alphas, [by_alpha[a][metric] for a in alphas], linestyle=SWEEP_STYLES[s % len(SWEEP_STYLES)],
                    marker="o", ms=4, color=colour, label=f"{name} {metric}")
        best = (tuned or {}).get(name)
        if best is not None and drawn:
            y = float(np.interp(best, alphas, [by_alpha[a][drawn[0]] for a in alphas]))
            ax.axvspan(best - 0.006, best + 0.006, color=colour, alpha=0.15, lw=0)
            ax.plot([best], [y], linestyle="none", marker="*", ms=15, color=colour, markeredgecolor="black",
                    markeredgewidth=0.6, label=f"{name} tuned alpha {best:g}")
    for b, (name, values) in enumerate((baselines or {}).items()):
        found = next((m for m in metrics if m in values), None)
        if found is not None:
            ax.axhline(values[found], color=colours[(len(sweeps) + b) % len(colours)], lw=1, alpha=0.8,
                       linestyle=BASELINE_STYLE, label=f"{name} {found} (no alpha)")
    ax.set_xlabel("alpha (weight of the text; 1 = text only)")
    ax.set_ylabel("recall (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
