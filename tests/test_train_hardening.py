"""Training hardening (issue 10, item 10): unreadable images, numeric flags, WEIGHTS, a full disk, the backup
directory's lock and default, --resume, fine-tuning, nothing left to train, console output, zoo names, Ctrl-C."""
from __future__ import annotations

import builtins
import fcntl
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import pydarknet
import pydarknet.train as T
from pydarknet.cli import main
from pydarknet.errors import DarknetError
from pydarknet.specs import load_specs
from pydarknet.weights import read_weights
from test_train import TRAIN_CFG, make_set

FLAGS = ["-q", "--workers", "0", "--threads", "1", "--seed", "1", "--chart-every", "0"]


def cli(capsys, *args):
    rc = main(["classifier", "train", *map(str, args), *FLAGS])
    out, err = capsys.readouterr()
    return rc, out, err


def batch_lines(out: str) -> list[str]:
    return [line.split(",")[0] for line in out.splitlines() if " avg, " in line]


def test_no_image_decodes_fails_before_batch_1(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=3)
    bad = [tmp_path / f"{i}_red.png" for i in range(3)]
    for p in bad:
        p.write_bytes(b"not an image")
    (tmp_path / "train.list").write_text("".join(f"{p}\n" for p in bad))
    rc, out, err = cli(capsys, data, cfg)
    assert rc == 2 and "none of the listed images could be read (3 tried)" in err
    assert batch_lines(out) == [] and not (tmp_path / "backup" / "c.weights").exists()
    for p in bad:  # each reported once, though drawn about 100 times
        assert err.count(f"{p}: ") == 1


def test_many_consecutive_failures_stop_the_training(tmp_path, capsys, monkeypatch):
    data, cfg = make_set(tmp_path, max_batches=50)
    real, calls = T._train_item, {"n": 0}

    def flaky(path, *a):
        calls["n"] += 1
        if calls["n"] > 80:  # the disk holding the images went away after 5 batches of 16
            raise DarknetError("cannot read image: Input/output error", f"{path}#{calls['n']}")
        return real(path, *a)

    monkeypatch.setattr(T, "_train_item", flaky)
    rc, out, err = cli(capsys, data, cfg)
    assert rc == 2 and f"{T.MAX_CONSECUTIVE_FAILURES} images in a row could not be read: stopping" in err
    assert batch_lines(out) == ["1", "2", "3", "4", "5"]


def test_an_unreadable_image_is_warned_once_and_counted(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=12)
    missing = tmp_path / "img" / "gone_red.png"
    with open(tmp_path / "train.list", "a") as f:
        f.write(f"{missing}\n")
    rc, out, err = cli(capsys, data, cfg)
    assert rc == 0, err
    warned = [line for line in err.splitlines() if str(missing) in line]
    assert warned == [f"pydarknet: warning: {missing}: no such image file (skipped)"]
    summary = [line for line in err.splitlines() if "could not be read" in line]
    assert len(summary) == 1 and summary[0].startswith("pydarknet: warning: 1 training image(s) could not be read (")
    assert int(re.search(r"\((\d+) draw", summary[0]).group(1)) >= 2  # drawn more than once, reported once


@pytest.mark.parametrize("flag", [["--backup-every", "0"], ["--workers", "-1"], ["--batch", "-3"],
                                  ["--max-batches", "0"], ["--threads", "0"], ["--valid-every", "-1"],
                                  ["--chart-every", "x"], ["--seed", "-1"], ["--valid-images", "-2"]])
def test_numeric_flags_are_clean_errors(tmp_path, capsys, flag):
    data, cfg = make_set(tmp_path, max_batches=2)
    with pytest.raises(SystemExit) as e:
        main(["classifier", "train", str(data), str(cfg), *flag])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("pydarknet classifier train: error: ")
    assert not (tmp_path / "backup").exists()


def test_the_library_checks_the_counts_too(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=2)
    with pytest.raises(DarknetError, match="--backup-every must be a whole number of at least 1, not 0"):
        T.train(T.TrainSettings(data=str(data), cfg=str(cfg), backup_every=0))
    with pytest.raises(DarknetError, match="--workers must be a whole number of at least 0, not -1"):
        T.train(T.TrainSettings(data=str(data), cfg=str(cfg), workers=-1))


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_missing_or_directory_weights_is_a_clean_error(tmp_path, capsys, kind):
    data, cfg = make_set(tmp_path, max_batches=2)
    weights = tmp_path / "w.weights"
    if kind == "directory":
        weights.mkdir()
    rc, out, err = cli(capsys, data, cfg, weights)
    assert rc == 2 and out == ""
    assert err == (f"pydarknet: error: {weights}: no such weights file\n" if kind == "missing" else
                   f"pydarknet: error: {weights}: is a directory, not a weights file\n")


def test_full_disk_while_appending_the_log(tmp_path, capsys, monkeypatch):
    data, cfg = make_set(tmp_path, max_batches=2)
    assert cli(capsys, data, cfg, "--backup-every", "1")[0] == 0
    backup = tmp_path / "backup"
    before = {f: (backup / f).read_bytes() for f in ("c.backup", "c.weights")}
    cfg.write_text(TRAIN_CFG.format(max_batches=4, hidden=32))
    # the log's appends land on /dev/full: every write fails with ENOSPC
    monkeypatch.setattr(T, "open", lambda p, *a, **k: builtins.open("/dev/full", *a, **k), raising=False)
    rc, out, err = cli(capsys, data, cfg, "--resume", "--backup-every", "1")
    assert rc == 2
    assert err.splitlines()[-1] == (f"pydarknet: error: {backup / 'c.log.csv'}: cannot append to the training log: "
                                    "No space left on device")
    assert {f: (backup / f).read_bytes() for f in before} == before  # the checkpoints are intact
    read_weights(backup / "c.backup", load_specs(cfg))
    assert not [f for f in backup.iterdir() if f.name.endswith(".tmp")]


def test_a_second_trainer_on_the_backup_directory_is_refused(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=2)
    backup = tmp_path / "backup"
    backup.mkdir()
    fd = os.open(backup / ".pydarknet-train.lock", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first trainer
        rc, out, err = cli(capsys, data, cfg)
        assert rc == 2 and err == (f"pydarknet: error: {backup}: the backup directory is in use by another "
                                   "training (pid 4242)\n")
        assert not (backup / "c.weights").exists()
    finally:
        os.close(fd)
    rc, out, err = cli(capsys, data, cfg)  # once the first is done
    assert rc == 0, err
    assert (backup / ".pydarknet-train.lock").read_text() == f"{os.getpid()}\n"


def test_no_backup_means_dot_backup_with_a_notice(tmp_path, capsys, monkeypatch):
    data, cfg = make_set(tmp_path, max_batches=1)
    data.write_text("".join(line + "\n" for line in data.read_text().splitlines() if not line.startswith("backup=")))
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, data, cfg)
    assert rc == 0, err
    assert f"pydarknet: notice: {data} gives no backup=: checkpoints go to ./backup" in err
    assert (tmp_path / "backup" / "c.weights").is_file()


def test_resume_takes_the_newest_checkpoint_by_seen(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=4)  # 36 images, 16 a batch: c_1.weights at batch 3
    assert cli(capsys, data, cfg, "--backup-every", "2")[0] == 0
    backup = tmp_path / "backup"
    os.replace(backup / "c.weights", backup / "c_final.weights")  # seen 64
    (backup / "c.backup").write_bytes((backup / "c_1.weights").read_bytes())  # seen 48, the newest file
    os.utime(backup / "c_final.weights", (1, 1))
    cfg.write_text(TRAIN_CFG.format(max_batches=6, hidden=32))
    rc, out, err = cli(capsys, data, cfg, "--resume")
    assert rc == 0, err
    assert f"pydarknet: resuming from {backup / 'c_final.weights'} at batch 4 (64 images seen)" in err
    assert batch_lines(out) == ["5", "6"]


def test_resume_cuts_the_log_back_to_the_checkpoint(tmp_path, capsys):
    import csv

    data, cfg = make_set(tmp_path, max_batches=5)
    assert cli(capsys, data, cfg, "--backup-every", "2")[0] == 0
    backup = tmp_path / "backup"
    for f in ("c.weights", "c_2.weights"):  # left: c.backup at batch 4, c_1.weights at batch 3
        os.unlink(backup / f)
    rc, out, err = cli(capsys, data, cfg, "--resume")
    assert rc == 0, err
    assert "at batch 4 (64 images seen)" in err and batch_lines(out) == ["5"]
    with open(backup / "c.log.csv") as f:
        assert [r["batch"] for r in csv.DictReader(f)] == ["1", "2", "3", "4", "5"]  # batch 5 once, not twice


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=2)
    rc, out, err = cli(capsys, data, cfg, "--resume")
    assert rc == 2 and "--resume: nothing to resume" in err and out == ""


def test_a_newer_weights_file_is_not_overwritten_silently(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=1)
    backup = tmp_path / "backup"
    backup.mkdir()
    pydarknet.load_network(cfg).save_weights(backup / "c.weights", seen=10 ** 6)
    rc, out, err = cli(capsys, data, cfg)
    assert rc == 0, err
    assert (f"pydarknet: warning: {backup / 'c.weights'}: overwriting weights that have seen more images (1000000) "
            "than this training (16)") in err


def test_fine_tuning_a_new_head_resets_the_batch_count(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=2)
    other = tmp_path / "five.cfg"
    other.write_text(cfg.read_text().replace("output=3\nactivation=linear", "output=5\nactivation=linear"))
    five = tmp_path / "five.weights"
    pydarknet.load_network(other).save_weights(five, seen=16 * 500)  # far past this cfg's max_batches
    rc, out, err = cli(capsys, data, cfg, five)
    assert rc == 0, err
    assert "the batch count starts at 0 (the file's 8000 images seen are not carried over)" in err
    assert batch_lines(out) == ["1", "2"]


def test_nothing_left_to_train_is_an_error(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=2)
    assert cli(capsys, data, cfg)[0] == 0
    weights = tmp_path / "backup" / "c.weights"
    before = weights.read_bytes()
    rc, out, err = cli(capsys, data, cfg, weights)
    assert rc == 2 and batch_lines(out) == []
    assert err == (f"pydarknet: error: {weights}: nothing left to train: the weights are at batch 2 and training "
                   "stops at batch 2 (-clear to start the count again, or a larger --max-batches)\n")
    assert weights.read_bytes() == before


def test_validation_on_the_console_and_the_paths_printed_once(tmp_path, capsys):
    data, cfg = make_set(tmp_path, max_batches=4)
    rc, out, err = cli(capsys, data, cfg, "--valid-every", "2")
    assert rc == 0, err
    valid = [line for line in out.splitlines() if line.startswith("validation at batch")]
    assert [line.split(":")[0] for line in valid] == ["validation at batch 2", "validation at batch 4"]
    assert valid[0].endswith("(36 images)") and "top-1 " in valid[0]
    backup = tmp_path / "backup"
    assert err.count(f"pydarknet: training log {backup / 'c.log.csv'}, chart {backup / 'c.chart.png'}\n") == 1
    assert err.count("c.log.csv") == 1


def test_a_zoo_name_trains_its_cfg(tmp_path, capsys, monkeypatch):
    data, cfg = make_set(tmp_path, max_batches=1)
    seen = {}

    def stop(s, data_, spec, *a):  # the zoo cfg's network, then stop before the (ImageNet-sized) training
        seen["cfg"], seen["layers"] = s.cfg, len(spec.layers)
        raise DarknetError("stopped by the test")

    monkeypatch.setattr(T, "_train", stop)
    rc, out, err = cli(capsys, data, "tiny")
    assert rc == 2 and err.endswith("stopped by the test\n"), err
    assert seen["cfg"] == pydarknet.zoo_cfg("tiny") and seen["layers"] == len(load_specs(seen["cfg"]).layers)


def test_ctrl_c_exits_130_with_one_line_and_keeps_the_checkpoint(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=100000)
    backup = tmp_path / "backup"
    proc = subprocess.Popen([sys.executable, "-m", "pydarknet", "classifier", "train", str(data), str(cfg), "-q",
                             "--workers", "2", "--threads", "1", "--seed", "1", "--backup-every", "1",
                             "--chart-every", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (backup / "c.backup").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the trainer hung after Ctrl-C")
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == "pydarknet: interrupted" and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    header, _ = read_weights(backup / "c.backup", load_specs(cfg))
    assert header.seen >= 16
    assert not [f for f in backup.iterdir() if f.name.endswith(".tmp")]
