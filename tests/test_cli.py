"""The command line: `pydarknet ops`, and the error contract (one line, exit 2, nothing on stdout)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import GOLDEN, REFERENCE_CFG, need_reference


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pydarknet", *args], capture_output=True, text=True,
                          input=stdin, timeout=120)


@need_reference
@pytest.mark.parametrize("model", ["tiny", "resnet50", "densenet201", "alexnet"])
def test_ops_prints_darknets_table_then_totals(model, manifest):
    log = (GOLDEN / "darknet_logs" / f"{model}.stderr.txt").read_text()
    table = log[: log.index("Loading weights")]
    r = run("ops", str(REFERENCE_CFG / f"{model}.cfg"))
    assert r.returncode == 0, r.stderr
    info = manifest["models"][model]
    assert r.stdout == table + (f"total  {info['mkweights_bflops_incl_connected']:.3f} BFLOPs  {info['params']} "
                                f"params  {info['weights_size']} bytes\n")


def test_ops_accepts_a_zoo_name_and_size_override():
    r = run("ops", "darknet19", "--width", "224", "--height", "224")
    assert r.returncode == 0
    assert r.stdout.splitlines()[-1].startswith("total  5.58")


@pytest.mark.parametrize("content,where", [
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nstride=0\n", ":6: "),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=4\n", ":6: "),
    ("[yolo]\n", ":1: "),
])
def test_errors_are_one_line_exit_2(tmp_path, content, where):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(content)
    r = run("ops", str(cfg))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pydarknet: error: {cfg}{where}")
    assert "Traceback" not in r.stderr


def test_missing_cfg_and_unknown_zoo_name(tmp_path):
    r = run("ops", str(tmp_path / "none.cfg"))
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"pydarknet: error: {tmp_path / 'none.cfg'}: no such cfg file\n"
    r = run("ops", "nosuchmodel")
    assert r.returncode == 2 and "no zoo model named 'nosuchmodel'" in r.stderr


def test_warnings_are_one_line_each(tmp_path):
    cfg = tmp_path / "w.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[avgpool]\nsize=3\n")
    r = run("ops", str(cfg))
    assert r.returncode == 0
    assert r.stderr == f"pydarknet: warning: {cfg}:6: unused key 'size=3' in [avgpool]\n"


def test_version():
    import pydarknet

    r = run("--version")
    assert r.returncode == 0 and r.stdout == f"pydarknet {pydarknet.__version__}\n"
