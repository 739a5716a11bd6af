"""Contact sheets: one row per query — the reference, the modification text, the top hits (green frame = hit)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["SheetRow", "contact_sheet"]


@dataclass
class SheetRow:
    """One query row: reference image, text, and ``(image, caption, is_hit)`` per hit (``is_hit`` may be None)."""

    reference: Image.Image
    text: str
    hits: Sequence[tuple[Image.Image, str, bool | None]]


def contact_sheet(rows: Sequence[SheetRow], path: str | Path, thumb: int = 96, text_width: int = 170) -> Path:
    """Write a PNG grid and return its path."""
    font = ImageFont.load_default()
    n_hits = max((len(r.hits) for r in rows), default=0)
    pad, label_h = 6, 14
    row_h = thumb + label_h + 2 * pad
    width = pad + (thumb + pad) + text_width + n_hits * (thumb + pad)
    sheet = Image.new("RGB", (width, max(1, len(rows)) * row_h), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = r * row_h + pad
        sheet.paste(row.reference.convert("RGB").resize((thumb, thumb)), (pad, y))
        draw.rectangle([pad - 2, y - 2, pad + thumb + 1, y + thumb + 1], outline=(60, 60, 200), width=2)
        draw.text((pad, y + thumb + 2), "reference", fill=(60, 60, 200), font=font)
        tx = pad + thumb + pad
        for i, line in enumerate(textwrap.wrap(f'"{row.text}"', width=max(10, text_width // 7))[:6]):
            draw.text((tx + 4, y + 4 + 14 * i), line, fill=(20, 20, 20), font=font)
        for j, (img, cap, hit) in enumerate(row.hits):
            x = tx + text_width + j * (thumb + pad)
            sheet.paste(img.convert("RGB").resize((thumb, thumb)), (x, y))
            if hit is not None:
                colour = (30, 170, 60) if hit else (210, 40, 40)
                draw.rectangle([x - 2, y - 2, x + thumb + 1, y + thumb + 1], outline=colour, width=3)
            draw.text((x, y + thumb + 2), cap[:16], fill=(40, 40, 40), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
