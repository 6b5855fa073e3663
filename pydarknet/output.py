"""Batch prediction output, streamed: every row is written and flushed as soon as its image is done, so an
interrupt or a crash leaves a file holding the rows so far, and ``--skip-existing`` continues from it.

Formats, by the name's extension: ``-`` CSV on stdout; ``.jsonl`` JSON Lines (one object per line: a file
cut anywhere is whole lines plus at most one partial last line, which a resume drops); ``.json`` one JSON
array, written element by element and closed when the run ends, however it ends (Ctrl-C, an error); after a
hard kill its closing ``]`` is missing, which a resume repairs; anything else CSV.

File names that are not valid UTF-8 (os.walk gives their bad bytes as surrogate escapes) are written with
those bytes as ``\\xNN``, in every format and on stdout, so one odd name never stops a batch.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys

from .errors import DarknetError
from .predict import ImageResult


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8: bytes that were not UTF-8 (surrogate escapes) become ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def output_kind(out: str) -> str:
    low = out.lower()
    return "jsonl" if low.endswith(".jsonl") else "json" if low.endswith(".json") else "csv"


def check_output_file(out: str) -> None:
    """Before the first image: can ``out`` be written? One DarknetError naming it if not."""
    if out == "-":
        return
    path = os.path.abspath(out)
    directory = os.path.dirname(path)
    if os.path.isdir(path):
        raise DarknetError("cannot write: is a directory", out)
    if not os.path.isdir(directory):
        raise DarknetError("cannot write: the directory does not exist", out)
    eff = os.access in os.supports_effective_ids  # the user the writes will run as (setuid, seteuid)
    if os.path.exists(path) and not os.access(path, os.W_OK, effective_ids=eff):
        raise DarknetError("cannot write: permission denied", out)
    if not os.path.exists(path) and not os.access(directory, os.W_OK | os.X_OK, effective_ids=eff):
        raise DarknetError("cannot write: permission denied (the directory is not writable)", out)
    existed = os.path.exists(path)
    try:  # the real test (a read-only filesystem, an ACL): open it for appending, change nothing
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o666))
    except OSError as e:
        raise DarknetError(f"cannot write: {e.strerror or e}", out) from None
    if not existed:
        os.unlink(path)


def csv_header(top: int) -> list[str]:
    header = ["path"]
    for r in range(1, top + 1):
        header += [f"top{r}_index", f"top{r}_name", f"top{r}_prob"]
    return header + ["error"]


def csv_row(res: ImageResult, top: int) -> list:
    row = [safe_text(res.path)]
    for r in range(top):
        if r < len(res.predictions):
            p = res.predictions[r]
            row += [p.index, safe_text(p.name), f"{p.prob:.6f}"]
        else:
            row += ["", "", ""]
    return row + [safe_text(res.error or "")]


def json_row(res: ImageResult) -> dict:
    return {"path": safe_text(res.path),
            "predictions": [{"index": p.index, "name": safe_text(p.name), "prob": p.prob} for p in res.predictions],
            "error": None if res.error is None else safe_text(res.error)}


def results_csv(results: list[ImageResult], top: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(top))
    w.writerows(csv_row(r, top) for r in results)
    return buf.getvalue()


def results_json(results: list[ImageResult]) -> str:
    return json.dumps([json_row(r) for r in results], indent=1) + "\n"


def read_csv_rows(text: str, path: str) -> list[list[str]]:
    """The rows of an earlier run's CSV file (``--skip-existing``); a field over the csv module's limit
    (128 KiB: no row we write) or any other malformed CSV is one DarknetError naming the file and line."""
    reader = csv.reader(io.StringIO(text))
    try:
        return list(reader)
    except csv.Error as e:
        raise DarknetError(f"--skip-existing: not a CSV file of results ({e})", path, line=reader.line_num) from None


class ResultWriter:
    """Streams ImageResults to ``out`` (see the module's formats). With ``skip_existing`` an existing file is
    kept and continued: ``done`` holds the paths (as written) already in it, which the caller skips. Rows
    with an error are kept as they are (delete them from the file to try those images again)."""

    def __init__(self, out: str, top: int, *, skip_existing: bool = False):
        self.out, self.top, self.kind = out, top, output_kind(out) if out != "-" else "csv"
        self.done: set[str] = set()
        self.written = 0  # rows written by this run
        self._first = True
        check_output_file(out)
        if out == "-":
            if skip_existing:
                raise DarknetError("--skip-existing needs --out FILE (nothing to continue on stdout)")
            self._f = sys.stdout
            self._csv = csv.writer(self._f, lineterminator="\n")
            self._csv.writerow(csv_header(top))
            return
        resume = skip_existing and os.path.isfile(out) and os.path.getsize(out) > 0
        try:
            if resume:
                self._resume()
            else:
                self._f = open(out, "w", encoding="utf-8", newline="")
                if self.kind == "csv":
                    csv.writer(self._f, lineterminator="\n").writerow(csv_header(top))
                elif self.kind == "json":
                    self._f.write("[")
                self._f.flush()
        except OSError as e:
            raise DarknetError(f"cannot write: {e.strerror or e}", out) from None
        if self.kind == "csv":
            self._csv = csv.writer(self._f, lineterminator="\n")

    def _resume(self) -> None:
        with open(self.out, "rb") as f:
            data = f.read()
        if self.kind == "json":
            rows = self._repair_json(data)
            self.done = {r["path"] for r in rows if isinstance(r, dict) and isinstance(r.get("path"), str)}
            self._f = open(self.out, "w", encoding="utf-8", newline="")
            self._f.write("[")
            for r in rows:  # rewritten as the stream writes them, then continued
                self._put_json(r)
            self._f.flush()
            return
        keep = data[: data.rfind(b"\n") + 1]  # a partial last line (a hard kill mid-row) is dropped
        text = keep.decode("utf-8", "replace")
        if self.kind == "jsonl":
            for n, line in enumerate(text.splitlines(), start=1):
                try:
                    self.done.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deeply
                    raise DarknetError("--skip-existing: not a JSON Lines row", self.out, line=n) from None
        else:
            rows = read_csv_rows(text, self.out)
            if not rows or rows[0] != csv_header(self.top):
                raise DarknetError(f"--skip-existing: the file's header is not this run's (-t {self.top}); "
                                   "give the same -t or another --out", self.out)
            self.done = {r[0] for r in rows[1:] if r}
        self._f = open(self.out, "r+", encoding="utf-8", newline="")
        self._f.truncate(len(keep))
        self._f.seek(len(keep))

    def _repair_json(self, data: bytes) -> list:
        text = data.decode("utf-8", "replace").strip()
        if not text.endswith("]"):  # cut by a hard kill: drop a partial last element, close the array
            cut = text.rfind("}\n")
            text = (text[: cut + 1] if cut >= 0 else "[") + "]"
        try:
            rows = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            raise DarknetError("--skip-existing: not a JSON array of results", self.out) from None
        if not isinstance(rows, list):
            raise DarknetError("--skip-existing: not a JSON array of results", self.out)
        return rows

    def _put_json(self, row: dict) -> None:
        self._f.write(("\n" if self._first else ",\n") + json.dumps(row) + "\n")
        self._first = False

    def write(self, res: ImageResult) -> None:
        if self.kind == "csv":
            self._csv.writerow(csv_row(res, self.top))
        elif self.kind == "jsonl":
            self._f.write(json.dumps(json_row(res)) + "\n")
        else:
            self._put_json(json_row(res))
        self._f.flush()
        self.written += 1

    def close(self) -> None:
        if self._f is sys.stdout:
            self._f.flush()
            return
        if self._f.closed:
            return
        if self.kind == "json":
            self._f.write("]\n")
        self._f.close()


def write_results(results: list[ImageResult], out: str, top: int) -> None:
    """All of ``results`` to ``out`` at once (see ``ResultWriter``)."""
    w = ResultWriter(out, top)
    try:
        for r in results:
            w.write(r)
    finally:
        w.close()
