"""``classifier train``: darknet's training semantics from the cfg's [net] (``examples/classifier.c``
train_classifier, ``src/network.c`` get_current_rate / update_network, ``src/convolutional_layer.c``
update_convolutional_layer), on PyTorch, crash-safe, on one CPU or many GPUs (torch.distributed).

darknet's update, per full batch of B = batch images (``batch/subdivisions`` per forward pass):
    updates = momentum*updates - sum_of_gradients - decay*B*weights;  weights += rate/B * updates
which is SGD on the mean loss with ``momentum`` and ``weight_decay=decay``, decay on weights only (biases and
batchnorm scales are not decayed), each layer's rate scaled by its ``learning_rate=`` option. The loss is
darknet's softmax cross-entropy against a multi-hot truth (every label found in the path: fill_truth).
"""
from __future__ import annotations

import csv
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import DarknetError, DarknetWarning
from .model import cfg_path, facts_for, write_sidecar
from .specs import NetOptions


def learning_rate(net: NetOptions, batch_num: int, rng: random.Random | None = None) -> float:
    """get_current_rate (src/network.c) as a pure function of the batch number.

    NOTE: matches darknet, including its float32 arithmetic: burn-in ``rate*(batch/burn_in)^power`` first;
    then the policy. ``random`` draws from ``rng``."""
    f = np.float32
    lr = f(net.learning_rate)

    def out(x) -> float:
        return float(f(x))

    if batch_num < net.burn_in:
        return out(lr * math.pow(f(batch_num) / f(net.burn_in), f(net.power)))
    policy = net.policy
    if policy == "constant":
        return out(lr)
    if policy == "step":
        return out(lr * math.pow(f(net.scale), batch_num // net.step))
    if policy == "steps":
        rate = lr
        for step, scale in zip(net.steps, net.scales):
            if step > batch_num:
                return out(rate)
            rate = f(rate * f(scale))
        return out(rate)
    if policy == "exp":
        return out(lr * math.pow(f(net.gamma), batch_num))
    if policy == "poly":
        if not net.max_batches:
            return out(lr)
        try:  # past max_batches the base is negative, as in darknet (C's pow gives NaN for a fractional power)
            return out(lr * math.pow(f(1) - f(batch_num) / f(net.max_batches), f(net.power)))
        except ValueError:
            return math.nan
    if policy == "random":
        return out(lr * math.pow((rng or random).uniform(0, 1), f(net.power)))
    if policy == "sigmoid":
        # NOTE: darknet subtracts in size_t, so before ``step`` the difference wraps to about 2^64: the rate is
        # then 0 for gamma > 0 and the full rate for gamma < 0. We keep that.
        diff = batch_num - net.step
        if diff < 0:
            diff += 2 ** 64
        z = float(f(net.gamma) * f(diff))
        return out(lr * (0.0 if z > 700 else 1.0 / (1.0 + math.exp(z))))
    raise ValueError(policy)


# -- data ---------------------------------------------------------------------------------------------------


def _train_item(path: str, target: np.ndarray, size: int, aug: dict, rng: np.random.Generator):
    from .augment import augment
    from .image import decode_rgb8

    return augment(decode_rgb8(path), rng, size=size, **aug), target


#: a worker that draws this many unreadable images in a row stops the training (with an error)
MAX_CONSECUTIVE_FAILURES = 100


class TrainImages:
    """An endless stream of (image, multi-hot target, failures, stop) drawn at random with replacement, as
    darknet's get_random_paths; each DataLoader worker (and each distributed rank) draws from its own generator.

    An unreadable image is skipped; its message travels with the next item (``failures``: one message per
    line) so the main process warns once per path, even from worker processes. After
    ``MAX_CONSECUTIVE_FAILURES`` failures in a row the stream yields one item with ``stop`` set."""

    def __init__(self, paths: list[str], targets: np.ndarray, size: int, aug: dict, seed: int):
        self.paths, self.targets, self.size, self.aug, self.seed = paths, targets, size, aug, seed

    def __iter__(self):
        import torch
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, wid])
        n = len(self.paths)
        failed: list[str] = []
        run = 0
        while True:
            i = int(rng.integers(n))
            try:
                x, t = _train_item(self.paths[i], self.targets[i], self.size, self.aug, rng)
            except DarknetError as e:
                failed.append(str(e))
                run += 1
                if run >= MAX_CONSECUTIVE_FAILURES:
                    yield (torch.zeros(3, self.size, self.size), torch.from_numpy(np.zeros_like(self.targets[0])),
                           "\n".join(failed), True)
                    return
                continue
            run = 0
            yield torch.from_numpy(x), torch.from_numpy(t), "\n".join(failed), False
            failed = []


def _worker_init(_worker_id: int) -> None:
    """Ctrl-C is the main process's to handle: a worker ignores SIGINT (no traceback from each worker)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset, batch: int, workers: int):
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    class _Iterable(IterableDataset):
        def __iter__(self):
            return iter(dataset)

    return iter(DataLoader(_Iterable(), batch_size=batch, num_workers=workers, pin_memory=torch.cuda.is_available(),
                           persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                           worker_init_fn=_worker_init if workers > 0 else None))


class Unreadable:
    """The main process's record of unreadable training images: each reported once, counted at the end."""

    def __init__(self, out=None):
        self.seen: set[str] = set()
        self.total = 0
        self.out = out

    def report(self, messages: list[str]) -> None:
        for m in messages:
            for line in m.split("\n"):
                if not line:
                    continue
                self.total += 1
                if line not in self.seen:
                    self.seen.add(line)
                    print(f"pydarknet: warning: {line} (skipped)", file=self.out or sys.stderr, flush=True)

    def summary(self) -> None:
        if self.seen:
            print(f"pydarknet: warning: {len(self.seen)} training image(s) could not be read "
                  f"({self.total} draw(s) skipped)", file=self.out or sys.stderr, flush=True)


def read_train_list(path: str) -> list[str]:
    """The ``train=`` list: one path per line, blank lines ignored (bounded read: a regular file only)."""
    from .atomic import read_text, split_lines

    return [p for p in (line.strip() for line in split_lines(read_text(path, "image list"))) if p]


def multi_hot(paths: list[str], classes: int, label_of=None, labels: list[str] | None = None) -> np.ndarray:
    """Targets: darknet's fill_truth (every label occurring in the path gets a 1) or one given label per path."""
    from .validate import SubstringLabeler

    t = np.zeros((len(paths), classes), np.float32)
    bad = 0
    if label_of is None:
        lab = SubstringLabeler(labels[:classes])
        for i, p in enumerate(paths):
            hits = lab.found(p)
            for j in hits:
                t[i, j] = 1
            bad += len(hits) != 1
    else:
        for i, p in enumerate(paths):
            j = label_of(p)
            if 0 <= j < classes:
                t[i, j] = 1
            else:
                bad += 1
    if bad:
        import warnings

        warnings.warn(DarknetWarning(f"{bad} training image(s) match no label or several (darknet: 'Too many or "
                                     "too few labels')"))
    return t


# -- checkpoints, logs, chart ----------------------------------------------------------------------------------


@dataclass
class History:
    """What the CSV log and the chart show."""
    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)


CSV_FIELDS = ["batch", "epoch", "loss", "avg_loss", "rate", "seconds", "images", "top1", "topk"]


def append_csv(path: str, row: dict) -> None:
    """One row appended to the training log; a failure (a full disk) is a DarknetError naming the log."""
    try:
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
            f.flush()
    except OSError as e:
        raise DarknetError(f"cannot append to the training log: {e.strerror or e}", path) from None


def read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    from .atomic import read_text

    text = read_text(path, "training log")
    return [r for r in csv.DictReader(text.splitlines()) if r.get("batch")]


def cut_csv(path: str, batch: int) -> list[dict]:
    """The log without the rows after ``batch`` (a resumed run goes on from its checkpoint), rewritten
    atomically; returns the rows kept."""
    import io

    from .atomic import atomic_write

    rows = read_csv(path)
    kept = [r for r in rows if _int(r.get("batch")) <= batch]
    if len(kept) != len(rows):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
        atomic_write(path, buf.getvalue().encode())
    return kept


def _int(v) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return 0


def draw_chart(rows: list[dict], path: str, title: str, k: int) -> None:
    """Loss (and its darknet running average), learning rate and validation top-1/top-K by batch, as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_write

    def col(name):
        xs, ys = [], []
        for r in rows:
            v = r.get(name)
            if v not in (None, ""):
                xs.append(float(r["batch"]))
                ys.append(float(v))
        return xs, ys

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    x, y = col("loss")
    ax1.plot(x, y, lw=0.6, alpha=0.5, label="loss")
    x, y = col("avg_loss")
    ax1.plot(x, y, lw=1.5, label="avg loss (darknet's .9/.1)")
    ax1.set_ylabel("cross-entropy")
    ax1.legend(loc="upper right")
    ax1.grid(alpha=0.3)
    ax1.set_title(title)
    x, y = col("rate")
    ax2.plot(x, y, color="tab:green")
    ax2.set_ylabel("learning rate")
    ax2.grid(alpha=0.3)
    x1, y1 = col("top1")
    xk, yk = col("topk")
    if x1:
        ax3.plot(x1, y1, marker="o", label="top-1")
        ax3.plot(xk, yk, marker="s", label=f"top-{k}")
        ax3.legend(loc="lower right")
    else:
        ax3.text(0.5, 0.5, "no validation run yet (--valid-every N and a valid= list)", ha="center", va="center",
                 transform=ax3.transAxes)
    ax3.set_ylabel("validation accuracy")
    ax3.set_xlabel("batch")
    ax3.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


# -- the loop ---------------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    data: str
    cfg: str
    weights: str | None = None
    clear: bool = False
    resume: bool = False
    device: str = "cpu"
    workers: int = 2
    backup_every: int = 1000
    valid_every: int = 0
    valid_images: int = 0
    chart_every: int = 20
    max_batches: int | None = None
    labels_from: str = "substring"
    ground_truth: str | None = None
    amp: bool = True
    seed: int | None = None
    quiet: bool = False
    threads: int | None = None


_COUNTS = {  # TrainSettings field -> (least value, flag)
    "workers": (0, "--workers"), "backup_every": (1, "--backup-every"), "valid_every": (0, "--valid-every"),
    "valid_images": (0, "--valid-images"), "chart_every": (0, "--chart-every"), "max_batches": (1, "--max-batches"),
    "threads": (1, "--threads"), "seed": (0, "--seed"),
}


def check_settings(s: TrainSettings) -> None:
    """Every count is a whole number in its range (None: the default), else one DarknetError naming the flag."""
    for name, (least, flag) in _COUNTS.items():
        v = getattr(s, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise DarknetError(f"{flag} must be a whole number of at least {least}, not {v!r}")


LOCK_NAME = ".pydarknet-train.lock"


def lock_backup(backup: str) -> int:
    """An exclusive lock on the backup directory for this run (a second trainer on it is refused instead of
    overwriting the first one's checkpoints): the open descriptor, to close when the run ends."""
    import fcntl

    path = os.path.join(backup, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        raise DarknetError(f"cannot open the training lock: {e.strerror or e}", path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        except OSError:
            pid = "unknown"
        os.close(fd)
        raise DarknetError(f"the backup directory is in use by another training (pid {pid})", backup) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def checkpoint_seen(path: str) -> int:
    """The ``seen`` in a weights file's header."""
    from .atomic import read_bytes
    from .weights import parse_header

    return parse_header(read_bytes(path, "weights", limit=20), path).seen


def newest_checkpoint(backup: str, base: str) -> tuple[str, int] | None:
    """The checkpoint in ``backup`` with the most images seen: <cfg>.backup, <cfg>_N.weights, <cfg>_final.weights
    or <cfg>.weights; (path, seen), or None when there is none. A file that cannot be read is passed over."""
    import re

    pattern = re.compile(rf"{re.escape(base)}(\.backup|_\d+\.weights|_final\.weights|\.weights)")
    best = None
    for name in sorted(os.listdir(backup)):
        if not pattern.fullmatch(name):
            continue
        path = os.path.join(backup, name)
        try:
            seen = checkpoint_seen(path)
        except DarknetError:
            continue
        if best is None or seen > best[1] or (seen == best[1] and os.path.getmtime(path) > os.path.getmtime(best[0])):
            best = (path, seen)
    return best


def _dist():
    """(rank, world size, local rank) when launched by torchrun, else (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _param_groups(net, decay: float):
    """Weights with decay; biases and batchnorm scales without (update_convolutional_layer); each layer's
    ``learning_rate=`` scale kept with its group."""
    groups = []
    for layer in net.layers.values():
        scale = layer.spec.common.lr_scale
        params = dict(layer.named_parameters(recurse=False))
        if "weights" in params:
            groups.append({"params": [params["weights"]], "weight_decay": decay, "lr_scale": scale})
        rest = [p for n, p in params.items() if n != "weights"]
        if rest:
            groups.append({"params": rest, "weight_decay": 0.0, "lr_scale": scale})
    return groups


def train(s: TrainSettings, out=None) -> str:
    """Train per the cfg's [net]; returns the final weights path. Checkpoints: <backup>/<cfg>_<epoch>.weights
    each epoch, <cfg>.backup every ``backup_every`` batches, <cfg>.weights at the end (all atomic)."""
    out = out or sys.stdout  # the stdout of the moment (not of import time)
    import torch

    from .atomic import check_regular
    from .datacfg import read_data_cfg
    from .specs import load_specs

    check_settings(s)
    rank, world, local_rank = _dist()
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if s.device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if s.device.startswith("cuda"):
            s.device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
    if s.threads:
        torch.set_num_threads(s.threads)
    data = read_data_cfg(s.data)
    s.cfg = cfg_path(s.cfg)  # a zoo name trains its cfg
    spec = load_specs(s.cfg)
    opts = spec.net
    base = os.path.splitext(os.path.basename(s.cfg))[0]
    if s.weights:
        check_regular(s.weights, "weights")  # missing, a directory, a FIFO: one line, before anything is made
    backup = data.backup
    if not backup:
        backup = "backup"
        if rank == 0:
            print(f"pydarknet: notice: {data.path} gives no backup=: checkpoints go to ./backup", file=sys.stderr)
    lock_fd = None
    if rank == 0:
        try:
            os.makedirs(backup, exist_ok=True)
        except OSError as e:
            raise DarknetError(f"cannot create the backup directory: {e.strerror}", backup) from None
        if not os.access(backup, os.W_OK):
            raise DarknetError("the backup directory is not writable", backup)
        lock_fd = lock_backup(backup)
    try:
        return _train(s, data, spec, opts, base, backup, rank, world, local_rank, out)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _train(s, data, spec, opts, base, backup, rank, world, local_rank, out) -> str:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from .engines.network import Network
    from .model import Model, resolve
    from .validate import make_labeler, read_image_list
    from .weights import read_weights_new_head

    if rank == 0:
        _remove_stale_temps(backup, base)
    weights = s.weights
    resumed = None
    if s.resume and not weights:
        resumed = newest_checkpoint(backup, base)
        if resumed is None:
            raise DarknetError(f"--resume: nothing to resume (no {base}.backup, {base}_N.weights or {base}.weights "
                               "here); leave out --resume to start afresh", backup)
        weights = resumed[0]
    seed = s.seed if s.seed is not None else int(time.time())
    torch.manual_seed(seed)  # the same initial weights on every rank
    net = Network(spec)
    seen = 0
    if weights:
        header, params, note = read_weights_new_head(weights, spec)
        net.load_params(params)
        seen = 0 if s.clear else header.seen
        if note and rank == 0:
            import warnings

            warnings.warn(DarknetWarning(note))
        if note and seen:  # a new head is fine-tuning, not a continuation: its batch count starts at 0
            if rank == 0:
                print(f"pydarknet: notice: the head is re-initialised, so the batch count starts at 0 (the file's "
                      f"{seen} images seen are not carried over)", file=sys.stderr)
            seen = 0
    net.to(s.device).train()
    # the data file defines the classes the network learns (a weights file's own class order is retrained)
    resolved = resolve(Model(cfg=s.cfg, weights=weights), spec, data, need_labels=True)
    classes = resolved.classes
    if not data.train:
        raise DarknetError("has no 'train=' image list", data.path)
    paths = read_train_list(data.train)
    if not paths:
        raise DarknetError("the training list is empty", data.train)
    label_of, _ = make_labeler(resolved.labels, classes, paths, labels_from=s.labels_from,
                               ground_truth=s.ground_truth)
    chosen = s.ground_truth or s.labels_from != "substring"
    targets = multi_hot(paths, classes, label_of=label_of if chosen else None, labels=resolved.labels)
    if spec.outputs > classes:
        targets = np.pad(targets, ((0, 0), (0, spec.outputs - classes)))
    N = len(paths)

    batch_images = opts.batch  # a full batch, as in the cfg
    mini = max(1, opts.batch // opts.subdivisions)
    max_batches = s.max_batches if s.max_batches is not None else opts.max_batches
    if not max_batches:
        raise DarknetError("[net] max_batches is 0: give max_batches= or --max-batches", s.cfg)
    start_batch = seen // (batch_images * world)
    if start_batch >= max_batches:
        raise DarknetError(f"nothing left to train: the weights are at batch {start_batch} and training stops at "
                           f"batch {max_batches} (-clear to start the count again, or a larger --max-batches)",
                           weights)
    aug = dict(min_crop=opts.min_crop, max_crop=opts.max_crop, angle=opts.angle, aspect=opts.aspect, hue=opts.hue,
               saturation=opts.saturation, exposure=opts.exposure, center=opts.center)
    resizable = not spec.fixed_input
    size = opts.width

    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, device_ids=[local_rank] if s.device.startswith("cuda") else None)
    groups = _param_groups(net, opts.decay)
    optimizer = torch.optim.SGD(groups, lr=opts.learning_rate, momentum=opts.momentum)
    use_amp = s.amp and s.device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def loader_for(sz):
        ds = TrainImages(paths, targets, sz, aug, seed * 1000 + rank * 7919 + sz)
        return make_loader(ds, mini, s.workers)

    batches = loader_for(size)
    csv_path = os.path.join(backup, f"{base}.log.csv")
    chart_path = os.path.join(backup, f"{base}.chart.png")
    history = []
    if rank == 0 and seen:
        history = cut_csv(csv_path, seen // (batch_images * world))
        if resumed and os.path.exists(chart_path):
            draw_chart(history, chart_path, f"{base}: {seen // (batch_images * world)} batches", data.top or 1)
    elif rank == 0 and os.path.exists(csv_path):  # a fresh start: a fresh log
        history = cut_csv(csv_path, 0)
    if rank == 0:
        if resumed:
            print(f"pydarknet: resuming from {resumed[0]} at batch {seen // (batch_images * world)} "
                  f"({seen} images seen)", file=sys.stderr)
        print(f"pydarknet: training log {csv_path}, chart {chart_path}", file=sys.stderr)
    k = data.top or 1
    valid_paths, valid_label_of = [], None
    if s.valid_every and data.valid and rank == 0:
        valid_paths, _ = read_image_list(data.valid)
        if s.valid_images:
            valid_paths = valid_paths[: s.valid_images]
        valid_label_of, _ = make_labeler(resolved.labels, classes, valid_paths, labels_from=s.labels_from,
                                         ground_truth=s.ground_truth)
    facts = facts_for(spec, resolved, provenance={"trained_by": "pydarknet classifier train", "data": s.data,
                                                  "cfg": s.cfg})

    def save(path: str) -> None:
        """A checkpoint as darknet writes it, with the model's facts beside it."""
        if os.path.exists(path):
            try:
                theirs = checkpoint_seen(path)
            except DarknetError:
                theirs = -1
            if theirs > seen:
                import warnings

                warnings.warn(DarknetWarning(f"{path}: overwriting weights that have seen more images ({theirs}) "
                                             f"than this training ({seen})"))
        net.save_weights(path, seen=seen)
        write_sidecar(path, replace(facts, provenance={**facts.provenance, "seen": str(seen)}))
    batch_num = seen // (batch_images * world)
    epoch = seen // N
    avg_loss = -1.0
    rate_rng = random.Random(seed)
    if rank == 0:
        print(f"Learning Rate: {opts.learning_rate:g}, Momentum: {opts.momentum:g}, Decay: {opts.decay:g}", file=out)
    bar = tqdm(total=max_batches, initial=min(batch_num, max_batches), unit="batch", file=sys.stderr,
               disable=s.quiet or rank != 0 or None, dynamic_ncols=True)
    count = 0
    final = os.path.join(backup, f"{base}.weights")
    unreadable = Unreadable()
    succeeded = 0
    try:
        while batch_num < max_batches:
            if opts.random and resizable and count % 40 == 0:
                size = (rate_rng.randrange(11) + 4) * 32
                batches = loader_for(size)
            count += 1
            start = time.perf_counter()
            total = 0.0
            for sub in range(opts.subdivisions):
                x, t, failures, stop = next(batches)
                unreadable.report(failures)
                if bool(stop.any()):
                    if not succeeded and not bool((~stop).any()):
                        raise DarknetError(f"none of the listed images could be read ({len(unreadable.seen)} "
                                           "tried)", data.train)
                    raise DarknetError(f"{MAX_CONSECUTIVE_FAILURES} images in a row could not be read: stopping",
                                       data.train)
                succeeded += x.shape[0]
                x, t = x.to(s.device, non_blocking=True), t.to(s.device, non_blocking=True)
                sync = world == 1 or sub == opts.subdivisions - 1
                ctx = model.no_sync() if not sync else _null()
                with ctx:
                    with torch.autocast("cuda", dtype=amp_dtype, enabled=use_amp):
                        logits = net.forward_logits(x) if model is net else _ddp_logits(model, x)
                    sm = net.spec.layers[net.spec.softmax_index]
                    logp = F.log_softmax(logits.float().reshape(logits.shape[0], sm.groups, -1) / sm.temperature,
                                         dim=-1).reshape(logits.shape[0], -1)
                    loss = -(t * logp).sum(dim=1).mean()
                    scaler.scale(loss / opts.subdivisions).backward()
                total += float(loss.detach())
            seen += batch_images * world
            batch_num = seen // (batch_images * world)
            rate = learning_rate(opts, batch_num, rate_rng) * world
            for g in optimizer.param_groups:
                g["lr"] = rate * g["lr_scale"]
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            loss_value = total / opts.subdivisions
            avg_loss = loss_value if avg_loss < 0 else avg_loss * 0.9 + loss_value * 0.1
            seconds = time.perf_counter() - start
            if rank != 0:
                continue
            print(f"{batch_num}, {seen / N:.3f}: {loss_value:f}, {avg_loss:f} avg, {rate:f} rate, {seconds:f} seconds, "
                  f"{seen} images", file=out, flush=True)
            row = dict(batch=batch_num, epoch=f"{seen / N:.4f}", loss=f"{loss_value:.6f}", avg_loss=f"{avg_loss:.6f}",
                       rate=f"{rate:.8g}", seconds=f"{seconds:.4f}", images=seen)
            if valid_paths and (batch_num % s.valid_every == 0 or batch_num >= max_batches):  # and the final weights
                top1, topk = _validate(net, valid_paths, valid_label_of, resolved, k, s.device)
                row.update(top1=f"{top1:.6f}", topk=f"{topk:.6f}")
                print(f"validation at batch {batch_num}: top-1 {top1:.6f}, top-{k} {topk:.6f} "
                      f"({len(valid_paths)} images)", file=out, flush=True)
            append_csv(csv_path, row)
            history.append(row)
            bar.update(1)
            bar.set_postfix_str(f"loss {avg_loss:.4f} lr {rate:.3g}", refresh=False)
            if seen // N > epoch:
                epoch = seen // N
                save(os.path.join(backup, f"{base}_{epoch}.weights"))
            if batch_num % s.backup_every == 0:
                save(os.path.join(backup, f"{base}.backup"))
            if s.chart_every and batch_num % s.chart_every == 0:
                draw_chart(history, chart_path, f"{base}: {batch_num} batches", k)
        if rank == 0:
            save(final)
            draw_chart(history, chart_path, f"{base}: {batch_num} batches", k)
    finally:
        bar.close()
        if rank == 0:
            unreadable.summary()
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return final


def _remove_stale_temps(backup: str, base: str) -> None:
    """Temp files of checkpoint writes that a killed run left behind (never a checkpoint itself)."""
    for f in os.listdir(backup):
        if f.startswith(f".{base}") and f.endswith(".tmp"):
            try:
                os.unlink(os.path.join(backup, f))
            except OSError:
                pass


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _ddp_logits(model, x):
    """DDP runs forward(); route it to forward_logits for the loss."""
    return model(x, logits=True)


def _validate(net, paths, label_of, resolved, k, device):
    """darknet's ``valid`` on ``paths`` with the network as it is now (an engine built from its parameters:
    the training network itself is left as it is), labels as the training targets were found."""
    from .engines.torch_infer import TorchEngine
    from .validate import run_validation

    engine = TorchEngine.from_network(net, device=device)
    try:
        m = run_validation(engine, paths, mode="valid", label_of=label_of, classes=resolved.classes, k=k, batch=64,
                           workers=0, reorder=resolved.reorder, preprocess=resolved.preprocess)
    finally:
        engine.close()
    return m.top1_acc, m.topk_acc
