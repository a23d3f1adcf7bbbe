"""Burned-in text in an image's corners, from pixels alone (no Spark).

Scanners and workstations burn patient names, dates, window settings
("W:80 L:40"), kV/mAs and the like into the corners of an image. Such text is
a row of small, high-contrast marks of equal height standing on the same
baseline; anatomy, collimator edges, skull outlines and noise are not.

The check runs on the image the other measures use: windowed to [0, 1] and
box-downscaled to at most 256 px (udfs.pixel_stats), so its cost is bounded
(four corner bands of about 64 x 128 px; a band with more than MAX_GLYPHS
glyph-like marks is texture and is not searched for rows). Text is recognised
only when its glyphs are at least 3 px tall there, i.e. about 1.2 % of the
longest side; smaller text is missed.

scipy comes with scikit-learn, a dependency of the project.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
BAND_HEIGHT = 0.25        # corner band: this share of the rows ...
BAND_WIDTH = 0.5          # ... and of the columns
STROKE_CONTRAST = 0.35    # a stroke stands this far (window units) above / below its surroundings,
SATURATED_CONTRAST = 0.2  # or this far when near white / black (text is drawn at the extremes)
NEAR_EXTREME = 0.3        # "near": within this of 0 or 1
CLUTTER_CONTRAST = 0.1    # fainter marks than strokes: noise, texture
MAX_CLUTTER = 0.1         # text row background: at most this share of faint marks
TOPHAT_PX = 5             # structures thinner than this are strokes (morphological top-hat)
GLYPH_PX = (3, 24)        # glyph height range in the downscaled image
MIN_ROW_GLYPHS = 4        # a text row has at least this many glyphs
FULL_SCORE_GLYPHS = 8     # glyphs in text rows for score 1
MAX_GLYPHS = 80           # more glyph-like marks in a band: texture, not lines of text


def corner_bands(img: np.ndarray) -> dict[str, np.ndarray]:
    """The four corner bands of a 2-D image (views, no copies)."""
    h, w = img.shape
    bh, bw = max(1, round(h * BAND_HEIGHT)), max(1, round(w * BAND_WIDTH))
    return {"top-left": img[:bh, :bw], "top-right": img[:bh, w - bw:],
            "bottom-left": img[h - bh:, :bw], "bottom-right": img[h - bh:, w - bw:]}


def stroke_masks(band: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(strokes, faint marks) for bright and for dark marks.

    Strokes: white / black top-hat above STROKE_CONTRAST, or above
    SATURATED_CONTRAST where the mark is near white / black. Faint marks: top-hat
    above CLUTTER_CONTRAST (noise and texture; text stands on a flat background).
    The top-hat keeps what is thinner than TOPHAT_PX, so flat background,
    large organs and step edges (collimator shutters) drop out."""
    size = (TOPHAT_PX, TOPHAT_PX)
    bright = band - ndimage.grey_opening(band, size=size, mode="nearest")
    dark = ndimage.grey_closing(band, size=size, mode="nearest") - band
    return [((bright > STROKE_CONTRAST) | ((bright > SATURATED_CONTRAST) & (band >= 1 - NEAR_EXTREME)),
             bright > CLUTTER_CONTRAST),
            ((dark > STROKE_CONTRAST) | ((dark > SATURATED_CONTRAST) & (band <= NEAR_EXTREME)),
             dark > CLUTTER_CONTRAST)]


def text_glyphs(mask: np.ndarray, faint: np.ndarray | None = None) -> int:
    """Number of glyph-sized components of `mask` that sit in text rows.

    Glyph: a component GLYPH_PX[0]..GLYPH_PX[1] tall, at most 1.5 x that wide,
    filling 10-80 % of its box, not touching the band's edges. Text row: at
    least MIN_ROW_GLYPHS glyphs whose tops and bottoms agree within a quarter
    of their height and whose gaps are at most two glyph heights, on a flat
    background: in the row's box (plus half its height above and below), at
    most MAX_CLUTTER of the pixels away from the strokes are `faint` marks.
    Long edges (skull, shutters) are too big; noise specks are too small, do
    not line up, or stand among fainter specks."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count < MIN_ROW_GLYPHS:
        return 0
    boxes = []
    for i, found in enumerate(ndimage.find_objects(labels)):
        top, bottom = found[0].start, found[0].stop
        left, right = found[1].start, found[1].stop
        h, w = bottom - top, right - left
        if not GLYPH_PX[0] <= h <= GLYPH_PX[1] or w > 1.5 * h:
            continue
        if top == 0 or left == 0 or bottom == mask.shape[0] or right == mask.shape[1]:
            continue     # cut by the band's edge: part of something larger
        fill = np.count_nonzero(labels[found] == i + 1) / (h * w)
        if 0.1 <= fill <= 0.8:
            boxes.append((top, bottom, left, right))
    if len(boxes) > MAX_GLYPHS:
        return 0
    boxes.sort(key=lambda b: (b[0], b[2]))
    near_strokes = ndimage.binary_dilation(mask, structure=np.ones((3, 3)))

    def counted(run: list[int]) -> int:
        if len(run) < MIN_ROW_GLYPHS:
            return 0
        top = min(boxes[j][0] for j in run)
        bottom = max(boxes[j][1] for j in run)
        pad = (bottom - top) // 2    # the row's box and half a line above and below
        box = np.s_[max(0, top - pad):bottom + pad, boxes[run[0]][2]:boxes[run[-1]][3]]
        background = ~near_strokes[box]
        if faint is not None and background.any() and faint[box][background].mean() > MAX_CLUTTER:
            return 0
        return len(run)

    used: set[int] = set()
    in_rows = 0
    for i, (top, bottom, _, _) in enumerate(boxes):
        if i in used:
            continue
        height = bottom - top
        tol = max(1.0, height / 4)
        row = [j for j, b in enumerate(boxes) if j not in used
               and abs(b[0] - top) <= tol and abs(b[1] - bottom) <= tol]
        row.sort(key=lambda j: boxes[j][2])
        # split the row where the gap between neighbours is too wide for a line of text
        run = [row[0]]
        for j in row[1:]:
            if boxes[j][2] - boxes[run[-1]][3] <= 2 * height:
                run.append(j)
                continue
            in_rows += counted(run)
            run = [j]
        in_rows += counted(run)
        used.update(row)
    return in_rows


def burned_in_text(img01: np.ndarray) -> tuple[float, str | None]:
    """(score, corner) of the corner that looks most like burned-in text.

    `img01`: a grey image windowed to [0, 1] (downscaled, e.g. at most 256 px).
    score = min(1, glyphs in text rows / FULL_SCORE_GLYPHS), over the four
    corner bands and both polarities (bright or dark text), the best one:
    0 when no row of MIN_ROW_GLYPHS glyph-sized high-contrast marks on a flat
    background is found, 0.5 for one such row of four glyphs, 1 for eight or
    more glyphs ("W:80 L:40" counts 5-7, "PORTABLE AP" 9-10). corner is one
    of CORNERS, None when the score is 0."""
    if min(img01.shape) < 2 * GLYPH_PX[0]:
        return 0.0, None
    best, where = 0, None
    for corner, band in corner_bands(np.asarray(img01, dtype=np.float32)).items():
        for mask, faint in stroke_masks(band):
            glyphs = text_glyphs(mask, faint)
            if glyphs > best:
                best, where = glyphs, corner
    return min(1.0, best / FULL_SCORE_GLYPHS), where
