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

HEATMAP_MAX = 300


def _csv(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def heatmap_png(matrix: np.ndarray, names: list[str], path: str) -> None:
    """Row-normalised confusion matrix (true class down, predicted class across) as a PNG."""
    from PIL import Image, ImageDraw

    n = matrix.shape[0]
    cell = max(2, min(24, 900 // max(n, 1)))
    rows = matrix.sum(axis=1, keepdims=True)
    frac = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    label_w = 140 if n <= 40 else 0
    top = 30
    img = Image.new("RGB", (label_w + n * cell + 10, top + n * cell + 10), "white")
    # white (0) -> dark blue (1)
    shade = (255 - frac * np.array([[215]]))
    rgb = np.stack([shade, shade + frac * 20, np.full_like(shade, 255) - frac * 90], axis=-1).clip(0, 255)
    block = np.repeat(np.repeat(rgb.astype(np.uint8), cell, axis=0), cell, axis=1)
    img.paste(Image.fromarray(block), (label_w, top))
    draw = ImageDraw.Draw(img)
    draw.text((label_w, 8), f"confusion (rows: true class, columns: predicted), {n} classes", fill="black")
    if label_w:
        for i, name in enumerate(names[:n]):
            draw.text((4, top + i * cell + max(0, cell // 2 - 6)), name[:20], fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def write_reports(out_dir: str, metrics, outcomes: list, names: list[str], summary: dict) -> list[str]:
    """Write the report files into ``out_dir`` (created if needed). Returns the paths written."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise DarknetError(f"cannot create the report directory: {e.strerror}", out_dir) from None
    written = []

    def put(name: str, data: bytes) -> None:
        path = os.path.join(out_dir, name)
        atomic_write(path, data)
        written.append(path)

    k = metrics.k
    name = lambda i: names[i] if 0 <= i < len(names) else ""  # noqa: E731
    rows = [["path", "label", "label_name"] + [f"top{r}_index" for r in range(1, k + 1)]
            + [f"top{r}_prob" for r in range(1, k + 1)] + ["top1_correct", "topk_correct", "error"]]
    for o in outcomes:
        ranked = list(o.ranked) + [""] * (k - len(o.ranked))
        probs = [f"{p:.6f}" for p in o.probs] + [""] * (k - len(o.probs))
        ok = o.error is None
        rows.append([o.path, o.label, name(o.label)] + ranked + probs
                    + [int(ok and bool(o.ranked) and o.ranked[0] == o.label) if ok else "",
                       int(ok and o.label in o.ranked) if ok else "", o.error or ""])
    put("predictions.csv", _csv(rows))

    present = np.nonzero(metrics.per_class_n)[0]
    per_class = [["class", "name", "images", "top1", f"top{k}"]]
    for i in present:
        n = metrics.per_class_n[i]
        per_class.append([int(i), name(i), int(n), f"{metrics.per_class_top1[i] / n:.6f}",
                          f"{metrics.per_class_topk[i] / n:.6f}"])
    put("per_class.csv", _csv(per_class))

    classes = metrics.classes
    pairs = sorted(metrics.confusion.items(), key=lambda kv: (-kv[1], kv[0]))
    if classes <= HEATMAP_MAX:
        matrix = np.zeros((classes, classes), np.int64)
        for (t, p), c in metrics.confusion.items():
            matrix[t, p] = c
        put("confusion.csv", _csv([["true\\predicted"] + [name(i) or str(i) for i in range(classes)]]
                                  + [[name(i) or str(i)] + list(map(int, matrix[i])) for i in range(classes)]))
        heatmap_png(matrix, names, os.path.join(out_dir, "confusion.png"))
        written.append(os.path.join(out_dir, "confusion.png"))
    else:
        put("confusion.csv", _csv([["true", "predicted", "count"]]
                                  + [[t, p, c] for (t, p), c in sorted(metrics.confusion.items())]))
    confused = [(t, p, c) for (t, p), c in pairs if t != p][:50]
    put("confused_pairs.txt", "".join(f"{c:6d}  {name(t)} ({t}) -> {name(p)} ({p})\n"
                                      for t, p, c in confused).encode())
    put("summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    return written
