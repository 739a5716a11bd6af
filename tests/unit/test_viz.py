"""Pictures: what the contact sheet and the alpha plot draw (their legends, frames, line styles, tuned alpha)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from cir_milvus.viz import SheetRow, contact_sheet

THUMB = 64


class DrawSpy:
    """Records the rectangles and texts PIL draws (then draws them as usual)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rects: list[tuple[tuple[float, float, float, float], Any]] = []
        self.texts: list[tuple[tuple[float, float], str]] = []
        rect, text = ImageDraw.ImageDraw.rectangle, ImageDraw.ImageDraw.text
        spy = self

        def rectangle(self: ImageDraw.ImageDraw, xy: Any, *args: Any, **kw: Any) -> None:
            spy.rects.append((tuple(xy), kw.get("outline")))
            rect(self, xy, *args, **kw)

        def draw_text(self: ImageDraw.ImageDraw, xy: Any, t: str, *args: Any, **kw: Any) -> None:
            spy.texts.append((tuple(xy), t))
            text(self, xy, t, *args, **kw)

        monkeypatch.setattr(ImageDraw.ImageDraw, "rectangle", rectangle)
        monkeypatch.setattr(ImageDraw.ImageDraw, "text", draw_text)

    def tile_frames(self) -> list[tuple[tuple[float, float, float, float], Any]]:
        """Frames drawn around tiles (as large as a tile), left to right."""
        return sorted(((b, c) for b, c in self.rects if b[2] - b[0] >= THUMB and c is not None), key=lambda r: r[0][0])

    def swatch_colour(self, label: str) -> Any:
        """The colour of the small framed swatch drawn just left of the legend label ``label`` (the legend is the top
        line; the reference tile has a caption of the same word further down)."""
        tx, ty = min((xy for xy, t in self.texts if t == label), key=lambda xy: xy[1])
        small = [(b, c) for b, c in self.rects if b[2] - b[0] < THUMB // 2 and b[2] <= tx and b[1] <= ty + 20
                 and b[3] >= ty - 20]
        return max(small, key=lambda r: r[0][2])[1]


def tile(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (40, 30), colour)


def sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: list[SheetRow]) -> DrawSpy:
    spy = DrawSpy(monkeypatch)
    out = contact_sheet(rows, tmp_path / "sheet.png", thumb=THUMB, text_width=120)
    with Image.open(out) as im:
        assert im.size[0] > THUMB
    return spy


@pytest.mark.parametrize("is_hit,label,other", [(True, "correct", "wrong"), (False, "wrong", "correct")])
def test_contact_sheet_legend_names_each_frame_colour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      is_hit: bool, label: str, other: str) -> None:
    spy = sheet(tmp_path, monkeypatch, [SheetRow(tile((9, 9, 9)), "make it red", [(tile((200, 0, 0)), "a", is_hit)])])
    drawn = [t for _, t in spy.texts]
    assert "reference" in drawn and label in drawn and other not in drawn
    (_, ref_frame), (_, hit_frame) = spy.tile_frames()  # reference tile, then the hit tile to its right
    assert ref_frame != hit_frame
    assert spy.swatch_colour("reference") == ref_frame
    assert spy.swatch_colour(label) == hit_frame


def test_contact_sheet_legend_tells_correct_from_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [SheetRow(tile((9, 9, 9)), "in blue", [(tile((0, 0, 200)), "x", True), (tile((0, 200, 0)), "y", False)])]
    spy = sheet(tmp_path, monkeypatch, rows)
    _, right, wrong = (c for _, c in spy.tile_frames())
    assert spy.swatch_colour("correct") == right != wrong == spy.swatch_colour("wrong")


def test_contact_sheet_without_frames_has_no_legend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = sheet(tmp_path, monkeypatch, [SheetRow(None, "a red star", [(tile((1, 2, 3)), "a", None)])])
    drawn = [t for _, t in spy.texts]
    assert not {"reference", "correct", "wrong"} & set(drawn)
    assert spy.tile_frames() == []


# -- the alpha plot ------------------------------------------------------------------------------------------------

SWEEPS = {"slerp": {0.5: {"R@1": 40.0, "R@10": 80.0}, 0.6: {"R@1": 55.0, "R@10": 90.0}, 0.7: {"R@1": 50.0, "R@10": 95.0}},
          "combined": {0.5: {"R@1": 30.0, "R@10": 70.0}, 0.6: {"R@1": 45.0, "R@10": 85.0},
                       0.7: {"R@1": 52.0, "R@10": 88.0}}}
BASELINES = {"image": {"R@1": 3.0, "R@10": 9.0}, "lincir": {"R@1": 34.0}}


@pytest.fixture
def axes() -> Any:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def lines_by_label(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_alpha_plot_legend_matches_its_lines(axes: Any) -> None:
    from cir_milvus.viz import draw_recall_vs_alpha

    draw_recall_vs_alpha(axes, SWEEPS, metrics=("R@1", "R@10"), baselines=BASELINES, tuned={"slerp": 0.6})
    legend = axes.get_legend()
    lines = lines_by_label(axes)
    labels = [t.get_text() for t in legend.get_texts()]
    assert set(labels) == set(lines)
    for handle, label in zip(legend.legend_handles, labels, strict=True):
        drawn = lines[label]
        assert (handle.get_linestyle(), handle.get_marker(), handle.get_color()) == \
            (drawn.get_linestyle(), drawn.get_marker(), drawn.get_color()), label
    # dashed means "composer without alpha", and only that: every dashed line is a horizontal baseline
    dashed = {label for label, line in lines.items() if line.get_linestyle() == "--"}
    assert dashed == {label for label in labels if label.startswith(("image ", "lincir "))}
    for label in dashed:
        assert len(set(lines[label].get_ydata())) == 1
    # the swept metrics of one composer differ in style, and each composer keeps one colour
    assert lines["slerp R@1"].get_linestyle() != lines["slerp R@10"].get_linestyle()
    assert lines["slerp R@1"].get_color() == lines["slerp R@10"].get_color() != lines["combined R@1"].get_color()


def test_alpha_plot_marks_the_tuned_alpha(axes: Any) -> None:
    from cir_milvus.viz import draw_recall_vs_alpha

    draw_recall_vs_alpha(axes, SWEEPS, metrics=("R@1", "R@10"), tuned={"slerp": 0.6, "combined": 0.7, "nope": 0.5})
    lines = lines_by_label(axes)
    marks = {label: line for label, line in lines.items() if "tuned" in label}
    assert set(marks) == {"slerp tuned alpha 0.6", "combined tuned alpha 0.7"}
    star = marks["slerp tuned alpha 0.6"]
    assert list(star.get_xdata()) == [0.6] and list(star.get_ydata()) == [SWEEPS["slerp"][0.6]["R@1"]]
    assert star.get_color() == lines["slerp R@1"].get_color()
    assert star.get_marker() not in (lines["slerp R@1"].get_marker(), "", "None")


def test_alpha_plot_without_tuned_alpha_marks_nothing(axes: Any) -> None:
    from cir_milvus.viz import draw_recall_vs_alpha

    draw_recall_vs_alpha(axes, SWEEPS, metrics=("R@1",))
    assert not [label for label in lines_by_label(axes) if "tuned" in label]


def test_plot_recall_vs_alpha_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from cir_milvus.viz import plot_recall_vs_alpha

    out = plot_recall_vs_alpha(SWEEPS, tmp_path / "plots" / "alpha.png", metrics=("R@1",), baselines=BASELINES,
                               tuned={"slerp": 0.6}, title="a title")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 400
