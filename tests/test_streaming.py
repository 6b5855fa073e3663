"""Issue 10 hardening of batch predict and valid: streamed output that survives Ctrl-C and crashes and
continues with --skip-existing, Ctrl-C with worker processes, odd file names, the output checked first,
no quadratic paths, valid on a folder, the heat map, help texts."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pydarknet
from conftest import ROOT, ZOO_CFG
from pydarknet.cli import build_parser, main

SMALL_CFG = """[net]
width=28
height=28
channels=3
[convolutional]
filters=8
size=3
stride=2
pad=1
activation=leaky
[convolutional]
filters=10
size=1
stride=1
activation=linear
[avgpool]
[softmax]
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def small(tmp_path):
    cfg = tmp_path / "s.cfg"
    cfg.write_text(SMALL_CFG)
    torch.manual_seed(0)
    weights = tmp_path / "s.weights"
    pydarknet.load_network(cfg).save_weights(weights)
    return cfg, weights


def images(folder: Path, n: int, size: int = 32, names=None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    first = folder / "img0000.png"
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(first)
    paths = [str(first)]
    for i in range(1, n):
        p = folder / f"img{i:04d}.png"
        os.link(first, p)  # the same bytes under another name: cheap
        paths.append(str(p))
    return paths


def subprocess_env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def wait_for_rows(path: Path, rows: int, proc, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and path.read_bytes().count(b"\n") > rows:
            return
        if proc.poll() is not None:
            pytest.fail(f"finished before {rows} rows: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no rows appeared")


def after_load(err: str) -> list[str]:
    """stderr lines after darknet's load-time output (the layer table and 'Loading weights')."""
    lines = err.splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith("Loading weights from")]
    tail = lines[marks[-1] + 1:] if marks else lines  # -q: no load-time output at all
    return [line for line in tail if not line.startswith("pydarknet: warning:")]


# -- item 8: streaming, interrupt, resume ------------------------------------------------------------------


def test_ctrl_c_leaves_first_csv_rows_and_skip_existing_completes(tmp_path):
    torch.manual_seed(1)
    weights = tmp_path / "t.weights"
    pydarknet.load_network(ZOO_CFG / "tiny.cfg").save_weights(weights)
    paths = images(tmp_path / "imgs", 150)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    out = tmp_path / "out.csv"
    cmd = [sys.executable, "-m", "pydarknet", "classify", str(ZOO_CFG / "tiny.cfg"), str(weights), "--list",
           str(listing), "--out", str(out), "--batch", "1", "--workers", "0", "--threads", "1", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    wait_for_rows(out, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    tail = after_load(err)
    assert len(tail) == 1 and "interrupted: partial output" in tail[0] and "--skip-existing" in tail[0], err
    rows = list(csv.DictReader(out.open()))
    assert 3 <= len(rows) < len(paths)
    assert [r["path"] for r in rows] == paths[: len(rows)]  # the first rows, whole, in order
    assert all(r["top1_name"] and r["top1_prob"] for r in rows)
    done = len(rows)
    proc = subprocess.run(cmd + ["--skip-existing"], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{done} images already in" in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == paths  # complete, no duplicates


@pytest.mark.parametrize("ext", [".json", ".jsonl"])
def test_crash_leaves_valid_json_and_resume_completes(tmp_path, small, capsys, monkeypatch, ext):
    cfg, weights = small
    paths = images(tmp_path / "imgs", 12)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    out = tmp_path / f"out{ext}"
    import pydarknet.predict as P

    real_rank, calls = P.rank, [0]

    def crashing_rank(*a, **kw):  # a crash after five images
        calls[0] += 1
        if calls[0] > 5:
            raise KeyboardInterrupt
        return real_rank(*a, **kw)

    monkeypatch.setattr(P, "rank", crashing_rank)
    argv = ["classify", cfg, weights, "--list", listing, "--out", out, "--batch", "1", "--workers", "0", "-q"]
    code, _, err = run(capsys, *argv)
    assert code == 130 and "partial output, 5 of 12" in err
    text = out.read_text()
    rows = json.loads(text) if ext == ".json" else [json.loads(line) for line in text.splitlines()]
    assert [r["path"] for r in rows] == paths[:5]
    # a hard kill mid-row: the file is cut in the middle of the sixth row, the JSON array left unclosed
    monkeypatch.setattr(P, "rank", real_rank)
    sixth = json.dumps({"path": paths[5], "predictions": [], "error": None})
    if ext == ".json":
        out.write_text(text.rstrip().rstrip("]") + ",\n" + sixth[:20])
    else:
        out.write_text(text + sixth[:20])
    code, _, err = run(capsys, *argv, "--skip-existing")
    assert code == 0, err
    text = out.read_text()
    rows = json.loads(text) if ext == ".json" else [json.loads(line) for line in text.splitlines()]
    assert [r["path"] for r in rows] == paths


def test_valid_out_streams_predictions_and_marks_partial_summary(tmp_path, small, capsys, monkeypatch):
    cfg, weights = small
    paths = images(tmp_path / "imgs" / "cat", 10)
    listing = tmp_path / "v.list"
    listing.write_text("\n".join(paths) + "\n")
    labels = tmp_path / "labels.list"
    labels.write_text("".join(f"{n}\n" for n in ["cat"] + [f"c{i}" for i in range(1, 10)]))
    data = tmp_path / "v.data"
    data.write_text(f"classes=10\nvalid={listing}\nlabels={labels}\ntop=2\n")
    import pydarknet.validate as V

    real, calls = V.summed_probabilities, [0]

    def crashing(*a, **kw):
        calls[0] += 1
        if calls[0] > 4:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(V, "summed_probabilities", crashing)
    code, _, err = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--batch", "1", "--out",
                       tmp_path / "r")
    assert code == 130
    tail = after_load(err)
    assert len(tail) == 1 and "interrupted: partial run, 4 of 10" in tail[0], err
    rows = list(csv.DictReader((tmp_path / "r" / "predictions.csv").open()))
    assert [r["path"] for r in rows] == paths[:4]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["partial"] is True and summary["images_done"] == 4 and summary["images_read"] == 4
    assert (tmp_path / "r" / "confusion.png").is_file()
    monkeypatch.setattr(V, "summed_probabilities", real)
    code, out, err = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--batch", "1", "--out",
                         tmp_path / "r", "--skip-existing")
    assert code == 0, err
    assert "4 images already in" in err and out.splitlines()[-1].startswith("9: top 1: ")  # counts go on
    rows = list(csv.DictReader((tmp_path / "r" / "predictions.csv").open()))
    assert [r["path"] for r in rows] == paths
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert "partial" not in summary and summary["images_read"] == 10 and summary["resumed_from"] == 4


# -- item 9: Ctrl-C with worker processes ---------------------------------------------------------------


def test_ctrl_c_with_workers_exits_130_at_once_one_line(tmp_path):
    torch.manual_seed(1)
    weights = tmp_path / "t.weights"
    pydarknet.load_network(ZOO_CFG / "tiny.cfg").save_weights(weights)
    paths = images(tmp_path / "imgs", 400, size=64)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    out = tmp_path / "out.csv"
    proc = subprocess.Popen([sys.executable, "-m", "pydarknet", "classify", str(ZOO_CFG / "tiny.cfg"), str(weights),
                             "--list", str(listing), "--out", str(out), "--batch", "2", "--workers", "2", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                            start_new_session=True)
    wait_for_rows(out, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the parent and its workers
    start = time.time()
    _, err = proc.communicate(timeout=30)
    assert time.time() - start < 5, "slow to stop"
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert len(after_load(err)) == 1, err
    with pytest.raises(ProcessLookupError):  # no worker left behind in the group
        time.sleep(0.5)
        os.killpg(proc.pid, 0)


# -- item 8: odd names, the output location -------------------------------------------------------------


def test_names_not_utf8_are_escaped_in_csv_json_and_stdout(tmp_path, small, capsys):
    cfg, weights = small
    folder = tmp_path / "imgs"
    images(folder, 2)
    odd = os.path.join(os.fsencode(folder), b"odd\xff.png")
    os.link(os.fsencode(folder / "img0000.png"), odd)
    for out in ("-", tmp_path / "o.csv", tmp_path / "o.json"):
        code, stdout, err = run(capsys, "classify", cfg, weights, folder, "--out", out, "-q")
        assert code == 0, err
        text = stdout if out == "-" else Path(out).read_text(encoding="utf-8")  # valid UTF-8
        rows = (json.loads(text) if str(out).endswith(".json") else list(csv.DictReader(text.splitlines())))
        assert len(rows) == 3 and all(r["top1_name" if "top1_name" in r else "predictions"] for r in rows)
        assert os.path.join(str(folder), "odd\\xff.png") in [r["path"] for r in rows]


@pytest.mark.parametrize("where", ["missing", "a file", "a directory"])
def test_bad_output_location_is_one_error_before_anything(tmp_path, small, capsys, where):
    cfg, weights = small
    paths = images(tmp_path / "imgs", 2)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    (tmp_path / "plain").write_text("x")
    out = {"missing": tmp_path / "no" / "such" / "o.csv", "a file": tmp_path / "plain" / "o.csv",
           "a directory": tmp_path / "imgs"}[where]
    code, stdout, err = run(capsys, "classify", cfg, weights, "--list", listing, "--out", out)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith(f"pydarknet: error: {out}: cannot write"), err
    data = tmp_path / "v.data"
    data.write_text(f"classes=10\nvalid={listing}\n")
    rep = {"missing": tmp_path / "no" / "such", "a file": tmp_path / "plain", "a directory": tmp_path / "plain"}
    code, stdout, err = run(capsys, "classifier", "valid", data, cfg, weights, "--out", rep[where])
    assert code == 2 and stdout == "" and err.count("\n") == 1 and "report" in err, err


def test_read_only_output_directory_is_refused(tmp_path, small, capsys, unprivileged):
    cfg, weights = small
    paths = images(tmp_path / "imgs", 1)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        listing = tmp_path / "list.txt"
        listing.write_text(paths[0] + "\n")
        with unprivileged():
            code, _, err = run(capsys, "classify", cfg, weights, "--list", listing, "--out", ro / "o.csv")
        assert code == 2 and "permission denied" in err and err.count("\n") == 1
    finally:
        ro.chmod(0o700)


# -- item 4: no quadratic paths --------------------------------------------------------------------------


def test_100k_missing_images_take_seconds(tmp_path, small, capsys):
    cfg, weights = small
    listing = tmp_path / "missing.list"
    listing.write_text("".join(f"/nonexistent/dir{i % 100}/img{i}.png\n" for i in range(100_000)))
    start = time.perf_counter()
    code, _, err = run(capsys, "classify", cfg, weights, "--list", listing, "--out", tmp_path / "o.csv", "-q")
    took = time.perf_counter() - start
    assert code == 3 and "100000 of 100000 images could not be read" in err
    assert "Traceback" not in err and err.count("\n") < 300  # the first errors in full, then a count
    assert sum(1 for _ in open(tmp_path / "o.csv")) == 100_001
    assert took < 30, f"{took:.1f} s"
    labels = tmp_path / "labels.list"
    labels.write_text("".join(f"c{i}\n" for i in range(10)))
    data = tmp_path / "v.data"
    data.write_text(f"classes=10\nvalid={listing}\nlabels={labels}\n")
    start = time.perf_counter()
    code, _, err = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--out", tmp_path / "r")
    took = time.perf_counter() - start
    assert code == 3 and "0 images read, 100000 skipped" in err and err.count("\n") < 300
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["skipped"] == 100_000
    assert took < 30, f"{took:.1f} s"


def test_ambiguity_check_22k_labels_50k_paths_is_near_linear():
    from pydarknet.validate import SubstringLabeler, ambiguity_warnings

    rng = np.random.default_rng(0)
    labels = [f"n{v:08d}" for v in rng.choice(10**8, 22_000, replace=False)]
    labels[5] = labels[7][:5]  # one label inside another
    paths = [f"/data/imagenet22k/train/{labels[i % 22_000]}/{labels[i % 22_000]}_{i}.JPEG" for i in range(50_000)]
    start = time.perf_counter()
    labeler = SubstringLabeler(labels)
    warns = ambiguity_warnings(labels, paths, labeler)
    took = time.perf_counter() - start
    assert any(f"'{labels[5]}' in '{labels[7]}'" in w for w in warns)
    assert any("more than one label" in w for w in warns)  # the images of labels[7] contain labels[5]
    assert labeler(paths[7]) == 5 and labeler(paths[8]) == 8
    assert took < 5, f"{took:.1f} s"


# -- item 13: valid on a folder, help texts ------------------------------------------------------------


def test_valid_takes_a_folder_labelled_by_folder_name(tmp_path, small, capsys):
    cfg, weights = small
    names = [f"c{i}" for i in range(10)]
    for c in ("c3", "c7"):
        images(tmp_path / "set" / c, 3)
    labels = tmp_path / "labels.list"
    labels.write_text("\n".join(names) + "\n")
    data = tmp_path / "v.data"
    data.write_text(f"classes=10\nlabels={labels}\n")
    code, _, err = run(capsys, "classifier", "valid", data, cfg, weights, "--list", tmp_path / "set", "-q",
                       "--out", tmp_path / "r")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "r" / "predictions.csv").open()))
    assert [r["label"] for r in rows] == ["3"] * 3 + ["7"] * 3


def test_valid_and_predict_flags_say_their_defaults():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    leaves = {"predict": sub["classifier"]._subparsers._group_actions[0].choices["predict"],
              "valid": sub["classifier"]._subparsers._group_actions[0].choices["valid"]}
    want = {"predict": ["-t", "--out", "--batch", "--workers", "--skip-existing", "--threads", "--preprocess"],
            "valid": ["-t", "--list", "--labels-from", "--batch", "--workers", "--out", "--threads",
                      "--skip-existing"]}
    for name, leaf in leaves.items():
        helps = {opt: a.help or "" for a in leaf._actions for opt in a.option_strings}
        for opt in want[name]:
            assert "default" in helps[opt], (name, opt, helps[opt])


# -- item 15: the heat map ----------------------------------------------------------------------------------


def _metrics(n: int):
    from pydarknet.validate import Metrics

    m = Metrics(classes=n, k=1)
    rng = np.random.default_rng(0)
    for i in range(n):
        for _ in range(3):
            m.add(i, [int(rng.integers(0, n)) if rng.random() < 0.3 else i])
    return m


def test_heatmap_has_names_counts_and_scale_and_says_when_too_many(tmp_path, capsys):
    from pydarknet.reports import HEATMAP_MAX, write_reports

    for n in (10, 200):
        m = _metrics(n)
        names = [f"class{i}" for i in range(n)]
        write_reports(str(tmp_path / str(n)), m, [], names, {"x": 1})
        img = np.asarray(Image.open(tmp_path / str(n) / "confusion.png").convert("L"))
        assert img.shape[0] > 300 and img.shape[1] > 300
    img10 = np.asarray(Image.open(tmp_path / "10" / "confusion.png").convert("RGB")).astype(int)
    # names to the left of the grid and above it, and the colour scale's dark end on the right
    assert (img10[200:, 20:80] < 128).any() and (img10[60:150, 200:] < 128).any()
    assert ((img10[:, -150:, 2] - img10[:, -150:, 0]) > 100).any()
    notes: list[str] = []
    n = HEATMAP_MAX + 1
    write_reports(str(tmp_path / "big"), _metrics(n), [], [str(i) for i in range(n)], {}, notes=notes)
    assert not (tmp_path / "big" / "confusion.png").exists()
    assert len(notes) == 1 and "no confusion heat map" in notes[0]
    assert "no confusion heat map" in json.loads((tmp_path / "big" / "summary.json").read_text())["heatmap"]
