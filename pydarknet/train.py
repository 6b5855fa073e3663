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
    from .image import load_image
    from .augment import augment

    return augment(load_image(path), rng, size=size, **aug), target


class TrainImages:
    """An endless stream of (image, multi-hot target) drawn at random with replacement, as darknet's
    get_random_paths; each DataLoader worker (and each distributed rank) draws from its own generator."""

    def __init__(self, paths: list[str], targets: np.ndarray, size: int, aug: dict, seed: int):
        self.paths, self.targets, self.size, self.aug, self.seed = paths, targets, size, aug, seed

    def __iter__(self):
        import torch
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, wid])
        n = len(self.paths)
        while True:
            i = int(rng.integers(n))
            try:
                x, t = _train_item(self.paths[i], self.targets[i], self.size, self.aug, rng)
            except DarknetError as e:
                print(f"pydarknet: error: {e} (skipped)", file=sys.stderr)
                continue
            yield torch.from_numpy(x), torch.from_numpy(t)


def make_loader(dataset, batch: int, workers: int):
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    class _Iterable(IterableDataset):
        def __iter__(self):
            return iter(dataset)

    return iter(DataLoader(_Iterable(), batch_size=batch, num_workers=workers, pin_memory=torch.cuda.is_available(),
                           persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None))


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
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()


def read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("batch")]


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


def train(s: TrainSettings, out=sys.stdout) -> str:
    """Train per the cfg's [net]; returns the final weights path. Checkpoints: <backup>/<cfg>_<epoch>.weights
    each epoch, <cfg>.backup every ``backup_every`` batches, <cfg>.weights at the end (all atomic)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from .datacfg import read_data_cfg
    from .engines.network import Network
    from .model import Model, resolve
    from .specs import load_specs
    from .validate import make_labeler, read_image_list
    from .weights import read_weights_new_head

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
    backup = data.backup or "/backup/"
    if rank == 0:
        try:
            os.makedirs(backup, exist_ok=True)
        except OSError as e:
            raise DarknetError(f"cannot create the backup directory: {e.strerror}", backup) from None
        if not os.access(backup, os.W_OK):
            raise DarknetError("the backup directory is not writable", backup)
        _remove_stale_temps(backup, base)
    weights = s.weights
    if s.resume and not weights:
        candidate = os.path.join(backup, f"{base}.backup")
        weights = candidate if os.path.exists(candidate) else None
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
    net.to(s.device).train()
    # the data file defines the classes the network learns (a weights file's own class order is retrained)
    resolved = resolve(Model(cfg=s.cfg, weights=weights), spec, data, need_labels=True)
    classes = resolved.classes
    if not data.train:
        raise DarknetError("has no 'train=' image list", data.path)
    paths, problems = read_image_list(data.train)
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
    history = read_csv(csv_path) if rank == 0 and seen else []
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
    try:
        while batch_num < max_batches:
            if opts.random and resizable and count % 40 == 0:
                size = (rate_rng.randrange(11) + 4) * 32
                batches = loader_for(size)
            count += 1
            start = time.perf_counter()
            total = 0.0
            for sub in range(opts.subdivisions):
                x, t = next(batches)
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
