"""Pictures: contact sheets of composed queries and their hits, and recall-against-alpha plots.

A contact sheet has one row per query: the reference (blue frame, labelled), the modification text (wrapped), then
the top hits, each with its id and score underneath (a green / red frame when ground truth says hit / miss). Images
whose files cannot be found become a grey tile that says so, never a black square.

Plots need matplotlib (``pip install 'cir_milvus[plot]'``), imported only when a plot is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["SheetRow", "contact_sheet", "load_tile", "placeholder_tile", "plot_recall_vs_alpha", "resolve_source"]

REFERENCE = (40, 80, 200)
HIT = (30, 160, 60)
MISS = (200, 50, 50)
INK = (30, 30, 30)
MUTED = (110, 110, 110)


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
    sheet = Image.new("RGB", (width, max(1, len(rows)) * row_h), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = r * row_h + pad
        if r:
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


def plot_recall_vs_alpha(
    sweeps: Mapping[str, Mapping[float, Mapping[str, float]]],
    path: str | Path,
    *,
    metrics: Sequence[str] = ("R@1", "R@5", "R@10"),
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "",
) -> Path:
    """Plot recall against alpha, one colour per composer, one line style per metric; write a PNG.

    Args:
        sweeps: ``{composer: {alpha: {metric: value}}}``.
        path: output PNG.
        metrics: the metrics to draw (those a sweep lacks are skipped).
        baselines: ``{name: {metric: value}}`` of composers without alpha, drawn as horizontal lines.
        title: figure title.

    Raises:
        BackendUnavailableError: matplotlib is not installed (``pip install 'cir_milvus[plot]'``).
    """
    from cir_milvus._optional import require

    matplotlib = require("matplotlib", extra="plot", purpose="plots")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", extra="plot", purpose="plots")
    styles = ["-", "--", ":", "-."]
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    try:
        for c, (name, by_alpha) in enumerate(sweeps.items()):
            alphas = sorted(by_alpha)
            for s, metric in enumerate(m for m in metrics if all(m in by_alpha[a] for a in alphas)):
                ys = [by_alpha[a][metric] for a in alphas]
                ax.plot(alphas, ys, styles[s % len(styles)], marker="o", ms=4, color=colours[c % len(colours)],
                        label=f"{name} {metric}")
        for b, (name, values) in enumerate((baselines or {}).items()):
            found = next((m for m in metrics if m in values), None)
            if found is not None:
                ax.axhline(values[found], color=colours[(len(sweeps) + b) % len(colours)], lw=1, alpha=0.8,
                           ls=(0, (4, 2)), label=f"{name} {found}")
        ax.set_xlabel("alpha (weight of the text; 1 = text only)")
        ax.set_ylabel("recall (%)")
        ax.grid(alpha=0.3)
        if title:
            import textwrap

            ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
