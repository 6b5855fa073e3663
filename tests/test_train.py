"""Training: darknet's learning-rate policies (against libdarknet's get_current_rate), its SGD update,
checkpoints that survive SIGKILL, resume, partial, fine-tuning a new head, and torch.distributed (gloo)."""
from __future__ import annotations

import ctypes
import os
import random
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
from cdarknet import find_binary, find_library
from pydarknet.cfg import parse_cfg
from pydarknet.errors import DarknetError
from pydarknet.specs import build_specs, load_specs
from pydarknet.train import learning_rate
from pydarknet.weights import read_weights

NET = "[net]\nbatch={batch}\nsubdivisions={subdivisions}\nwidth=8\nheight=8\nchannels=3\nlearning_rate=0.1\n{policy}\n" \
      "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n[avgpool]\n[softmax]\n"
POLICIES = {
    "constant": "policy=constant",
    "step": "policy=step\nstep=7\nscale=0.5",
    "steps": "policy=steps\nsteps=3,10,25\nscales=0.1,.5,3",
    "exp": "policy=exp\ngamma=0.93",
    "poly": "policy=poly\npower=4\nmax_batches=40",
    "sigmoid": "policy=sigmoid\ngamma=0.3\nstep=12",
    "burn_in_poly": "policy=poly\npower=2\nmax_batches=50\nburn_in=8",
    "burn_in_steps": "policy=steps\nsteps=20\nscales=.1\nburn_in=10\npower=4",
}


@pytest.mark.skipif(find_library() is None, reason="C darknet (libdarknet.so) not installed")
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_learning_rate_is_darknets_get_current_rate(name, tmp_path):
    cfg = tmp_path / "p.cfg"
    cfg.write_text(NET.format(batch=8, subdivisions=2, policy=POLICIES[name]))
    lib = ctypes.CDLL(find_library())
    lib.load_network.restype = ctypes.c_void_p
    lib.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.get_current_rate.restype = ctypes.c_float
    lib.get_current_rate.argtypes = [ctypes.c_void_p]
    net = lib.load_network(str(cfg).encode(), None, 0)
    seen = ctypes.cast(net + 8, ctypes.POINTER(ctypes.POINTER(ctypes.c_size_t))).contents  # network.seen
    opts = load_specs(cfg).net
    for batch_num in range(0, 60):
        seen[0] = batch_num * 8  # get_current_batch = seen / (batch/subdivisions * subdivisions)
        want = lib.get_current_rate(net)
        assert learning_rate(opts, batch_num) == pytest.approx(want, rel=2e-6, abs=1e-12), batch_num


def test_random_policy_draws_from_the_generator():
    opts = build_specs(parse_cfg(NET.format(batch=1, subdivisions=1, policy="policy=random\npower=2"), "r")).net
    rates = [learning_rate(opts, 5, random.Random(3)) for _ in range(2)]
    assert rates[0] == rates[1] and 0 <= rates[0] <= 0.1


SGD_CFG = """[net]
batch=4
subdivisions=2
width=6
height=6
channels=3
learning_rate=0.05
momentum=0.8
decay=0.01
policy=constant
max_batches=2
[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky
learning_rate=0.5
[avgpool]
[connected]
output=3
activation=linear
[softmax]
"""


def test_sgd_update_is_darknets(tmp_path):
    """Two batches by hand with darknet's update (update_convolutional_layer / update_connected_layer):
    updates += -grad_sum; updates -= decay*B*w (weights only); w += rate*scale/B*updates; updates *= momentum."""
    from pydarknet.engines.network import Network
    from pydarknet.train import _param_groups
    import torch.nn.functional as F

    torch.manual_seed(0)
    spec = build_specs(parse_cfg(SGD_CFG, "s.cfg"))
    net = Network(spec).train()
    ref = {n: p.detach().clone().double() for n, p in net.named_parameters()}
    moment = {n: torch.zeros_like(v) for n, v in ref.items()}
    opt = torch.optim.SGD(_param_groups(net, spec.net.decay), lr=0.05, momentum=0.8)
    x = torch.rand(2, 4, 3, 6, 6)
    t = F.one_hot(torch.tensor([[0, 2, 1, 1], [2, 2, 0, 1]]), 3).float()
    B = 4
    for step in range(2):
        grads = {n: torch.zeros_like(v) for n, v in ref.items()}
        for sub in range(2):
            xs, ts = x[step][sub * 2:(sub + 1) * 2], t[step][sub * 2:(sub + 1) * 2]
            logp = F.log_softmax(net.forward_logits(xs), dim=1)
            loss = -(ts * logp).sum(1).mean()
            (loss / 2).backward()
            # darknet's summed gradient over the batch, from the same backward pass
        for n, p in net.named_parameters():
            grads[n] = p.grad.double() * B  # grad of the summed loss
        for n in ref:
            lr_scale = 0.5 if n.startswith("layers.0_") else 1.0
            moment[n] = moment[n] - grads[n]
            if n.endswith(".weights"):
                moment[n] = moment[n] - spec.net.decay * B * ref[n]
            ref[n] = ref[n] + 0.05 * lr_scale / B * moment[n]
            moment[n] = moment[n] * 0.8
        for g in opt.param_groups:
            g["lr"] = 0.05 * g["lr_scale"]
        opt.step()
        opt.zero_grad()
        for n, p in net.named_parameters():
            assert torch.allclose(p.double(), ref[n], atol=1e-6), (step, n)


# -- end to end on a tiny labelled set ------------------------------------------------------------------------

TRAIN_CFG = """[net]
batch=16
subdivisions=2
width=16
height=16
channels=3
learning_rate=0.05
momentum=0.9
decay=0.0005
policy=poly
power=2
max_batches={max_batches}
min_crop=16
max_crop=20
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[connected]
output={hidden}
activation=leaky
[connected]
output=3
activation=linear
[softmax]
"""
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def make_set(root: Path, per_class: int = 12, max_batches: int = 30, hidden: int = 32) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    paths = []
    for name, rgb in COLOURS.items():
        for i in range(per_class):
            a = np.clip(rng.normal(rgb, 40, (18, 18, 3)), 0, 255).astype(np.uint8)
            p = root / "img" / f"{i}_{name}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(p)
            paths.append(str(p))
    (root / "train.list").write_text("\n".join(paths) + "\n")
    (root / "labels").write_text("\n".join(COLOURS) + "\n")
    data = root / "c.data"
    data.write_text(f"classes=3\ntrain={root / 'train.list'}\nvalid={root / 'train.list'}\nlabels={root / 'labels'}\n"
                    f"names={root / 'labels'}\ntop=1\nbackup={root / 'backup'}\n")
    cfg = root / "c.cfg"
    cfg.write_text(TRAIN_CFG.format(max_batches=max_batches, hidden=hidden))
    return data, cfg


def run_train(*args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "pydarknet", "classifier", "train", *map(str, args), "-q",
                           "--workers", "1", "--threads", "1", "--seed", "1"],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_train_end_to_end(tmp_path):
    data, cfg = make_set(tmp_path)
    r = run_train(data, cfg, "--valid-every", "10", "--chart-every", "10", "--backup-every", "10")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if " avg, " in l]
    assert len(lines) == 30 and lines[-1].startswith("30, ")
    assert lines[0].endswith(", 16 images")
    backup = tmp_path / "backup"
    checkpoints = ["c.backup", "c.weights"] + [f"c_{e}.weights" for e in range(1, 14)]
    assert sorted(p.name for p in backup.iterdir()) == sorted(  # each checkpoint with the model's facts beside it
        [".pydarknet-train.lock", "c.chart.png", "c.log.csv"] + checkpoints + [f"{c}.json" for c in checkpoints])
    header, _ = read_weights(backup / "c.weights", load_specs(cfg))
    assert header.seen == 30 * 16
    rows = (backup / "c.log.csv").read_text().splitlines()
    assert len(rows) == 31 and rows[0].startswith("batch,epoch,loss")
    assert (backup / "c.chart.png").read_bytes()[:4] == b"\x89PNG"
    clf = pydarknet.load(cfg, backup / "c.weights", names=str(tmp_path / "labels"))
    img = tmp_path / "img" / "3_green.png"
    assert clf.predict(str(img), top=1)[0].name == "green"
    from pydarknet.model import read_sidecar
    facts = read_sidecar(backup / "c.weights")
    assert facts.classes.names == ("red", "green", "blue") and facts.provenance["seen"] == str(30 * 16)
    assert pydarknet.load(cfg, backup / "c.weights").predict(str(img), top=1)[0].name == "green"  # from the facts
    # validation during training reached top-1 = 1 on this easy set
    assert float(rows[-1].split(",")[7]) == 1.0


def test_validation_every_n_batches_and_on_the_final_weights(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=6)
    assert run_train(data, cfg, "--valid-every", "4", "--chart-every", "0").returncode == 0
    import csv

    with open(tmp_path / "backup" / "c.log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["batch"] for r in rows if r["top1"]] == ["4", "6"]  # every 4th batch, and the last one


@pytest.mark.parametrize("how", ["folder", "ground-truth"])
def test_validation_during_training_finds_labels_as_training_does(tmp_path, how):
    """--labels-from folder and --ground-truth decide the labels of the validation images too (the first
    version validated with darknet's substring rule whatever was asked: top-1 0 on these paths)."""
    data, cfg = make_set(tmp_path, max_batches=30)
    short = {"red": "r", "green": "g", "blue": "b"}  # 'r' is in /tmp/pytest-of-root: the substring rule fails
    lines, truth = [], []
    for i, p in enumerate(Path(l) for l in (tmp_path / "train.list").read_text().split()):
        colour = p.stem.split("_")[1]
        new = tmp_path / "set" / (short[colour] if how == "folder" else "x") / f"{i}.png"
        new.parent.mkdir(parents=True, exist_ok=True)
        p.rename(new)
        lines.append(str(new))
        truth.append(f"{new} {short[colour]}")
    (tmp_path / "train.list").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels").write_text("r\ng\nb\n")
    (tmp_path / "truth.txt").write_text("\n".join(truth) + "\n")
    flag = ["--labels-from", "folder"] if how == "folder" else ["--ground-truth", tmp_path / "truth.txt"]
    r = run_train(data, cfg, "--valid-every", "30", "--chart-every", "0", *flag)
    assert r.returncode == 0, r.stderr
    import csv
    with open(tmp_path / "backup" / "c.log.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["top1"]) == 1.0  # the validation's labels are the training's


LOCAL_TRAIN_CFG = TRAIN_CFG.replace("""[maxpool]
size=2
stride=2
""", """[maxpool]
size=2
stride=2
[local]
filters=4
size=3
stride=1
pad=1
activation=leaky
""")


def test_a_local_layer_trains(tmp_path):
    """darknet's [local] layer (locally connected: a kernel per position) learns the colours set, its weights
    decayed as update_local_layer does (weights only)."""
    from pydarknet.train import _param_groups

    data, cfg = make_set(tmp_path, max_batches=40)
    cfg.write_text(LOCAL_TRAIN_CFG.format(max_batches=40, hidden=32))
    spec = load_specs(cfg)
    assert spec.layers[2].kind == "local"
    r = run_train(data, cfg, "--valid-every", "40", "--chart-every", "0")
    assert r.returncode == 0, r.stderr
    import csv
    with open(tmp_path / "backup" / "c.log.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["top1"]) == 1.0
    trained = pydarknet.load_network(cfg, tmp_path / "backup" / "c.weights").layers["2_local"]
    assert float(trained.weights.detach()[1:].abs().sum()) > 0  # the positions darknet's init leaves at 0 learned too
    net = pydarknet.Network(spec)
    groups = _param_groups(net, spec.net.decay)
    kinds = {("weights" if p is net.layers["2_local"].weights else "biases" if p is net.layers["2_local"].biases
              else None): g["weight_decay"] for g in groups for p in g["params"]}
    assert kinds["weights"] == spec.net.decay and kinds["biases"] == 0.0


@pytest.mark.skipif(find_binary() is None, reason="C darknet not installed")
def test_darknet_reads_our_trained_weights(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=10)
    assert run_train(data, cfg).returncode == 0
    weights = tmp_path / "backup" / "c.weights"
    theirs = subprocess.run([find_binary(), "classifier", "valid", str(data), str(cfg), str(weights)],
                            capture_output=True, text=True, timeout=120)
    ours = subprocess.run([sys.executable, "-m", "pydarknet", "classifier", "valid", str(data), str(cfg), str(weights),
                           "-q"], capture_output=True, text=True, timeout=120)
    assert ours.stdout.splitlines()[-1] == theirs.stdout.splitlines()[-1]


def test_resume_and_clear(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=6)
    assert run_train(data, cfg, "--backup-every", "3").returncode == 0
    cfg.write_text(TRAIN_CFG.format(max_batches=9, hidden=32))
    r = run_train(data, cfg, "--resume")
    lines = [l for l in r.stdout.splitlines() if " avg, " in l]
    assert lines[0].startswith("7, ") and lines[-1].startswith("9, ")  # continued from the .backup (seen=96)
    r = run_train(data, cfg, tmp_path / "backup" / "c.weights", "-clear", "--max-batches", "2")
    lines = [l for l in r.stdout.splitlines() if " avg, " in l]
    assert [l.split(",")[0] for l in lines] == ["1", "2"]


def test_backup_directory_problems(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    data.write_text(data.read_text().replace(f"backup={tmp_path / 'backup'}", f"backup={blocker}/sub"))
    r = run_train(data, cfg)
    assert r.returncode == 2 and "cannot create the backup directory" in r.stderr
    assert r.stderr.startswith("pydarknet: error: ")


def test_sigkill_never_leaves_a_broken_checkpoint(tmp_path):
    """Kill the trainer at random moments, many inside checkpoint writes (8 MB written and fsynced every
    batch): every checkpoint left behind loads, and --resume loses at most one checkpoint interval."""
    data, cfg = make_set(tmp_path, max_batches=400, hidden=2048)
    spec = load_specs(cfg)
    backup = tmp_path / "backup"
    rng = random.Random(7)
    last_seen = 0
    for attempt in range(8):
        resume = ["--resume"] if attempt else []  # --resume with nothing to resume is an error
        proc = subprocess.Popen([sys.executable, "-m", "pydarknet", "classifier", "train", str(data), str(cfg),
                                 *resume, "--backup-every", "1", "--chart-every", "0", "-q", "--workers", "0",
                                 "--threads", "1", "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        # let it pass start-up, then kill at a random moment
        deadline = time.time() + 60
        while time.time() < deadline and not (backup / "c.backup").exists():
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for f in backup.iterdir():
            if f.suffix in (".weights", ".backup"):
                header, _ = read_weights(f, spec)  # raises if torn
                if f.name == "c.backup":
                    assert header.seen >= last_seen  # never goes back
                    last_seen = header.seen
        assert last_seen > 0
    r = run_train(data, cfg, "--resume", "--max-batches", str(last_seen // 16 + 1), "--backup-every", "1")
    assert r.returncode == 0, r.stderr
    first = [l for l in r.stdout.splitlines() if " avg, " in l][0]
    assert int(first.split(",")[0]) == last_seen // 16 + 1  # resumed right after the last checkpoint
    assert not [f for f in backup.iterdir() if f.name.endswith(".tmp")]


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from pydarknet import atomic

    data, cfg = make_set(tmp_path, max_batches=4)
    assert run_train(data, cfg, "--backup-every", "2").returncode == 0
    before = (tmp_path / "backup" / "c.backup").read_bytes()
    real_write = os.write

    from pydarknet.train import TrainSettings, train
    calls = {"n": 0}
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, b):
            raise OSError(28, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(DarknetError, match="No space left on device"):
        train(TrainSettings(data=str(data), cfg=str(cfg), resume=True, max_batches=6, backup_every=1, workers=0,
                            quiet=True, chart_every=0, seed=1))
    assert (tmp_path / "backup" / "c.backup").read_bytes() == before
    assert not [f for f in (tmp_path / "backup").iterdir() if f.name.endswith(".tmp")]
    del real_write, calls


def test_partial_matches_darknet(tmp_path):
    torch.manual_seed(0)
    cfg = pydarknet.zoo_cfg("tiny")
    full = tmp_path / "tiny.weights"
    pydarknet.load_network(cfg).save_weights(full, seen=12345)
    out = tmp_path / "tiny.conv.8"
    from pydarknet.cli import main
    assert main(["partial", cfg, str(full), str(out), "8"]) == 0
    spec = load_specs(cfg)
    n = 20 + 4 * sum(s.num_params for s in spec.layers[:8])
    data = out.read_bytes()
    assert len(data) == n and data[20:] == full.read_bytes()[20:n] and data[12:20] == b"\0" * 8
    if find_binary():
        theirs = tmp_path / "dk.conv.8"
        subprocess.run([find_binary(), "partial", cfg, str(full), str(theirs), "8"], capture_output=True, timeout=60)
        assert theirs.read_bytes() == data


def test_new_head_is_reinitialised_with_a_warning(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=2)
    # weights of the same network with 5 classes
    other = tmp_path / "five.cfg"
    other.write_text(cfg.read_text().replace("output=3\nactivation=linear", "output=5\nactivation=linear"))
    torch.manual_seed(0)
    src = pydarknet.load_network(other)
    five = tmp_path / "five.weights"
    src.save_weights(five)
    r = run_train(data, cfg, five)
    assert r.returncode == 0, r.stderr
    assert "layer 3: the file's connected layer has 5 outputs, the cfg's 3" in r.stderr


@pytest.mark.slow
def test_distributed_gloo_two_processes(tmp_path):
    data, cfg = make_set(tmp_path, max_batches=6)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        str(29500 + os.getpid() % 1000), "-m", "pydarknet", "classifier", "train", str(data), str(cfg),
                        "-q", "--workers", "0", "--threads", "1", "--seed", "1", "--backup-every", "3"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if " avg, " in l]
    assert len(lines) == 6  # only rank 0 logs
    assert lines[-1].endswith(f", {6 * 16 * 2} images")  # both ranks' images counted
    header, _ = read_weights(tmp_path / "backup" / "c.weights", load_specs(cfg))
    assert header.seen == 6 * 16 * 2
