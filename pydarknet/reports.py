"""Validation reports: JSON summary, per-image predictions, per-class accuracy, confusion matrix (CSV, and a
PNG heat map drawn with Pillow for up to ``HEATMAP_MAX`` classes; the most confused pairs as text beyond)."""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from .atomic import atomic_write
from .errors import DarknetError

#: above this many classes no heat map is drawn (a line in the summary and on the console says so)
HEATMAP_MAX = 1000
#: class names on both axes up to this many classes; counts in the cells up to COUNTS_MAX
NAMES_MAX = 100
COUNTS_MAX = 30


def _csv(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _colour(frac: np.ndarray) -> np.ndarray:
    """white (0) -> dark blue (1), as uint8 RGB."""
    frac = np.asarray(frac, float)
    r = 255 - frac * 225
    g = 255 - frac * 190
    b = 255 - frac * 100
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened with '...' to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _wrap(draw, text: str, font, width: int, lines: int = 2) -> list[str]:
    words, out, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            out.append(line)
            line = word
    out.append(line)
    if len(out) > lines:
        out = out[: lines - 1] + [_fit(draw, " ".join(out[lines - 1:]), font, width)]
    return [_fit(draw, x, font, width) for x in out]


def heatmap_png(matrix: np.ndarray, names: list[str], path: str, title: str | None = None) -> None:
    """The confusion matrix (true class down, predicted across) as a PNG: each row normalised to the true
    class's images (colour scale on the right); class names on both axes up to NAMES_MAX classes (index
    ticks beyond), the count in each cell up to COUNTS_MAX classes."""
    from PIL import Image, ImageDraw

    n = matrix.shape[0]
    named = n <= NAMES_MAX
    counts = n <= COUNTS_MAX
    cell = 34 if counts else (max(12, min(24, 1200 // max(n, 1))) if named else max(2, 1000 // max(n, 1)))
    font = _font(12 if cell >= 14 or not named else 10)
    small = _font(10 if cell >= 28 else 9)
    label = [str(names[i]) if i < len(names) and names[i] else str(i) for i in range(n)]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    name_w = min(160, max(probe.textlength(x, font=font) for x in label) + 8) if named else 40
    grid = n * cell
    left, top = int(name_w) + 24, int(name_w) + 64
    bar_w = 90
    width = max(left + grid + bar_w + 20, 420)
    height = top + grid + 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    rows = matrix.sum(axis=1, keepdims=True)
    frac = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    block = np.repeat(np.repeat(_colour(frac), cell, axis=0), cell, axis=1)
    img.paste(Image.fromarray(block), (left, top))
    draw.rectangle([left - 1, top - 1, left + grid, top + grid], outline="gray")
    heading = title or f"Confusion matrix, {n} classes"
    for j, line in enumerate(_wrap(draw, heading, _font(14), width - 20)):
        draw.text((10, 6 + j * 18), line, fill="black", font=_font(14))
    draw.text((left, top + grid + 8), "predicted class", fill="black", font=font)
    side = Image.new("RGB", (80, 16), "white")
    ImageDraw.Draw(side).text((0, 0), "true class", fill="black", font=font)
    img.paste(side.rotate(90, expand=True), (4, top + max(0, (grid - 70) // 2)))
    if named:
        column = Image.new("RGB", (int(name_w), grid), "white")  # drawn across, then turned to run upwards
        cdraw = ImageDraw.Draw(column)
        for i, text in enumerate(label):
            text = _fit(draw, text, font, int(name_w) - 8)
            y = i * cell + (cell - 12) // 2
            draw.text((left - 4 - draw.textlength(text, font=font), top + y), text, fill="black", font=font)
            cdraw.text((4, y), text, fill="black", font=font)
        img.paste(column.rotate(90, expand=True), (left, top - int(name_w)))
    else:
        step = next(s for s in (10, 20, 50, 100, 200, 500, 1000) if n / s <= 12)
        for i in range(0, n, step):
            pos = i * cell + cell // 2
            draw.text((left - 6, top + pos), str(i), fill="black", font=font, anchor="rm")
            draw.text((left + pos, top - 6), str(i), fill="black", font=font, anchor="mb")
    if counts:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    colour = "white" if frac[i, j] > 0.55 else "black"
                    draw.text((left + j * cell + cell // 2, top + i * cell + cell // 2), str(int(matrix[i, j])),
                              fill=colour, font=small, anchor="mm")
    # colour scale
    bx, bh = left + grid + 20, min(max(grid, 120), 300)
    scale = _colour(np.linspace(1, 0, bh))[:, None, :].repeat(16, axis=1)
    img.paste(Image.fromarray(scale), (bx, top))
    draw.rectangle([bx - 1, top - 1, bx + 16, top + bh], outline="gray")
    for v in (0.0, 0.5, 1.0):
        draw.text((bx + 20, top + int((1 - v) * (bh - 1))), f"{v:.1f}", fill="black", font=small, anchor="lm")
    draw.text((bx, top + bh + 6), "share of the", fill="black", font=small)
    draw.text((bx, top + bh + 18), "true class", fill="black", font=small)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def prepare_out_dir(out_dir: str) -> None:
    """Before the first image: the report directory exists (made if need be) and can be written."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DarknetError("cannot write reports: not a directory", out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(out_dir) and not os.path.isdir(parent):
        raise DarknetError("cannot create the report directory: its parent does not exist", out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise DarknetError(f"cannot create the report directory: {e.strerror}", out_dir) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DarknetError("cannot write reports: permission denied", out_dir)
    try:  # the real test (a read-only filesystem, an ACL)
        import tempfile

        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise DarknetError(f"cannot write reports: {e.strerror or e}", out_dir) from None


def prediction_header(k: int) -> list[str]:
    return (["path", "label", "label_name"] + [f"top{r}_index" for r in range(1, k + 1)]
            + [f"top{r}_prob" for r in range(1, k + 1)] + ["top1_correct", "topk_correct", "error"])


def prediction_row(o, k: int, names: list[str]) -> list:
    from .output import safe_text

    name = names[o.label] if 0 <= o.label < len(names) else ""
    ranked = list(o.ranked) + [""] * (k - len(o.ranked))
    probs = [f"{p:.6f}" for p in o.probs] + [""] * (k - len(o.probs))
    ok = o.error is None
    return ([safe_text(o.path), o.label, safe_text(name)] + ranked + probs
            + [int(bool(o.ranked) and o.ranked[0] == o.label) if ok else "",
               int(o.label in o.ranked) if ok else "", safe_text(o.error or "")])


class PredictionStream:
    """``predictions.csv`` in the report directory, one row per image written and flushed as it is done (an
    interrupted run leaves the rows so far)."""

    def __init__(self, out_dir: str, k: int, names: list[str], *, resume: bool = False):
        prepare_out_dir(out_dir)
        self.path, self.k, self.names, self.rows = os.path.join(out_dir, "predictions.csv"), k, names, 0
        self.previous: list = []  # resume: the outcomes already in the file, in its order
        try:
            if resume and os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
                self._resume()
            else:
                self._f = open(self.path, "w", encoding="utf-8", newline="")
                csv.writer(self._f, lineterminator="\n").writerow(prediction_header(k))
                self._f.flush()
        except OSError as e:
            raise DarknetError(f"cannot write: {e.strerror}", self.path) from None
        self._w = csv.writer(self._f, lineterminator="\n")

    def _resume(self) -> None:
        """Keep the rows of an earlier (interrupted) run: their outcomes, rebuilt from the columns."""
        from .output import read_csv_rows
        from .validate import ImageOutcome

        with open(self.path, "rb") as f:
            data = f.read()
        keep = data[: data.rfind(b"\n") + 1]  # a partial last line (a hard kill mid-row) is dropped
        rows = read_csv_rows(keep.decode("utf-8", "replace"), self.path)
        k = self.k
        header = prediction_header(k)
        if not rows or rows[0] != header:
            raise DarknetError(f"--skip-existing: the file's header is not this run's (-t {k}); give the same -t "
                               "or another --out", self.path)
        for n, r in enumerate(rows[1:], start=2):
            try:
                if len(r) != len(header):  # its error column would be another one
                    raise ValueError(r)
                ranked = tuple(int(v) for v in r[3:3 + k] if v != "")
                probs = tuple(float(v) for v in r[3 + k:3 + 2 * k] if v != "")
                self.previous.append(ImageOutcome(r[0], int(r[1]), ranked, probs, error=r[-1] or None))
            except (ValueError, IndexError):
                raise DarknetError("--skip-existing: not a predictions.csv row", self.path, line=n) from None
        self._f = open(self.path, "r+", encoding="utf-8", newline="")
        self._f.truncate(len(keep))
        self._f.seek(len(keep))

    def write(self, outcome) -> None:
        self._w.writerow(prediction_row(outcome, self.k, self.names))
        self._f.flush()
        self.rows += 1

    def close(self) -> None:
        self._f.close()


def write_reports(out_dir: str, metrics, outcomes: list, names: list[str], summary: dict, *,
                  streamed: str | None = None, notes: list[str] | None = None) -> list[str]:
    """Write the report files into ``out_dir`` (created if needed). Returns the paths written. ``streamed``:
    predictions.csv was already written (by a PredictionStream; its path). ``notes`` collects lines for the
    console (a heat map left out)."""
    prepare_out_dir(out_dir)
    written = []

    def put(name: str, data: bytes) -> None:
        path = os.path.join(out_dir, name)
        atomic_write(path, data)
        written.append(path)

    k = metrics.k
    name = lambda i: names[i] if 0 <= i < len(names) else ""  # noqa: E731
    if streamed:
        written.append(streamed)
    else:
        put("predictions.csv", _csv([prediction_header(k)] + [prediction_row(o, k, names) for o in outcomes]))

    present = np.nonzero(metrics.per_class_n)[0]
    per_class = [["class", "name", "images", "top1", f"top{k}"]]
    for i in present:
        n = metrics.per_class_n[i]
        per_class.append([int(i), name(i), int(n), f"{metrics.per_class_top1[i] / n:.6f}",
                          f"{metrics.per_class_topk[i] / n:.6f}"])
    put("per_class.csv", _csv(per_class))

    classes = metrics.classes
    pairs = sorted(metrics.confusion.items(), key=lambda kv: (-kv[1], kv[0]))
    summary = dict(summary)
    if classes <= HEATMAP_MAX:
        matrix = np.zeros((classes, classes), np.int64)
        for (t, p), c in metrics.confusion.items():
            matrix[t, p] = c
        put("confusion.csv", _csv([["true\\predicted"] + [name(i) or str(i) for i in range(classes)]]
                                  + [[name(i) or str(i)] + list(map(int, matrix[i])) for i in range(classes)]))
        title = (f"Confusion matrix, {classes} classes, {metrics.read} images"
                 + (" (partial run)" if summary.get("partial") else ""))
        heatmap_png(matrix, names, os.path.join(out_dir, "confusion.png"), title=title)
        written.append(os.path.join(out_dir, "confusion.png"))
    else:
        note = (f"no confusion heat map: {classes} classes is over {HEATMAP_MAX}; confusion.csv lists the "
                "(true, predicted, count) triples and confused_pairs.txt the most confused pairs")
        summary["heatmap"] = note
        if notes is not None:
            notes.append(note)
        put("confusion.csv", _csv([["true", "predicted", "count"]]
                                  + [[t, p, c] for (t, p), c in sorted(metrics.confusion.items())]))
    confused = [(t, p, c) for (t, p), c in pairs if t != p][:50]
    put("confused_pairs.txt", "".join(f"{c:6d}  {name(t)} ({t}) -> {name(p)} ({p})\n"
                                      for t, p, c in confused).encode())
    put("summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    return written
