"""Batch prediction output: CSV (one row per image) or JSON (a list of objects), chosen by extension."""
from __future__ import annotations

import csv
import io
import json
import sys

from .atomic import atomic_write
from .predict import ImageResult


def results_csv(results: list[ImageResult], top: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["path"]
    for r in range(1, top + 1):
        header += [f"top{r}_index", f"top{r}_name", f"top{r}_prob"]
    w.writerow(header + ["error"])
    for res in results:
        row = [res.path]
        for r in range(top):
            if r < len(res.predictions):
                p = res.predictions[r]
                row += [p.index, p.name, f"{p.prob:.6f}"]
            else:
                row += ["", "", ""]
        w.writerow(row + [res.error or ""])
    return buf.getvalue()


def results_json(results: list[ImageResult]) -> str:
    rows = [{"path": r.path,
             "predictions": [{"index": p.index, "name": p.name, "prob": p.prob} for p in r.predictions],
             "error": r.error} for r in results]
    return json.dumps(rows, indent=1) + "\n"


def write_results(results: list[ImageResult], out: str, top: int) -> None:
    """``out`` = '-' (CSV on stdout), ``*.json`` or anything else (CSV). Files are written atomically."""
    text = results_json(results) if out.lower().endswith(".json") else results_csv(results, top)
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(out, text.encode())
