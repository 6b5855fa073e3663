"""darknet's ``classifier valid`` family (``examples/classifier.c`` validate_classifier_*), batched, with
reports darknet never had.

Modes, each a function from the decoded image to the network inputs whose probabilities are summed:
  valid       center_crop_image to the network size (prints darknet's per-image line and running line)
  valid10     the image squashed to (w+32)x(h+32); crops at (-32,-32), (32,-32), (0,0), (-32,32), (32,32),
              then the same on the mirrored image (crop_image repeats the border outside the image)
  validmulti  resize_min to 224, 288, 320, 352, 384, each also mirrored (the network resized per input)
  validfull   resize_min to the network width, the whole image (the network resized per image)
  validcrop   the image squashed to the network size (darknet's OLD_CLASSIFICATION_DATA loading)

An image's label is, by default, darknet's rule: the first entry of the ``labels`` list (in list order) that
occurs anywhere in its path (strstr); -1 when none does (counted as wrong, as darknet does). Alternatives:
the image's directory name (``labels_from="folder"``) or a ground-truth file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from .datacfg import read_label_list
from .errors import DarknetError
from .model import Preprocessing
from .predict import top_k
from .preprocess import center_crop_image, crop_image, flip_image, float_chw, image_hw, resize_image, resize_min

F32 = np.float32
MULTI_SCALES = (224, 288, 320, 352, 384)
VALID10_SHIFT = 32


def _squash(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """load_image_color(path, w, h): resize_image only when the size differs. ``im``: the decoded (H, W, 3)
    uint8 image (only what the resize reads is converted) or a (C, H, W) float one; the views below take
    either."""
    return float_chw(im) if tuple(image_hw(im)) == (h, w) else resize_image(im, w, h)


def views_valid(im, w, h):
    return [center_crop_image(im, w, h)]


def views_valid10(im, w, h):
    s = VALID10_SHIFT
    big = _squash(im, w + s, h + s)
    offsets = ((-s, -s), (s, -s), (0, 0), (-s, s), (s, s))
    crops = [crop_image(big, dx, dy, w, h) for dx, dy in offsets]
    flipped = flip_image(big)
    return crops + [crop_image(flipped, dx, dy, w, h) for dx, dy in offsets]


def views_validmulti(im, w, h):
    out = []
    for scale in MULTI_SCALES:
        r = resize_min(im, scale)
        out += [r, flip_image(r)]
    return out


def views_validfull(im, w, h):
    return [resize_min(im, w)]


def views_validcrop(im, w, h):
    return [_squash(im, w, h)]


MODES = {"valid": views_valid, "valid10": views_valid10, "validmulti": views_validmulti,
         "validfull": views_validfull, "validcrop": views_validcrop}
RESIZES_NETWORK = {"validmulti", "validfull"}


# -- labels -------------------------------------------------------------------------------------------


class SubstringLabeler:
    """darknet's rule: the lowest-index label that occurs in the path.

    Near-linear in the number of labels and in the path's length: the labels are keyed by their first two
    characters (one for a one-character label), each key holding the distinct lengths of its labels, so a
    path costs two dictionary look-ups per position plus one set look-up per candidate length (a regex
    alternation of 22k ImageNet labels tried every alternative at every position)."""

    def __init__(self, labels: list[str]):
        self.labels = labels
        self._index: dict[str, int] = {}
        for i, lab in enumerate(labels):
            if lab and lab not in self._index:
                self._index[lab] = i
        by_prefix: dict[str, set[int]] = {}
        for lab in self._index:
            by_prefix.setdefault(lab[:2], set()).add(len(lab))
        self._by_prefix = {key: tuple(sorted(lens)) for key, lens in by_prefix.items()}

    def found(self, path: str) -> set[int]:
        """The indices of every label that occurs in ``path``."""
        index, by_prefix = self._index, self._by_prefix
        if not by_prefix:
            return set()
        hits = set()
        size = len(path)
        for i in range(size):
            for key in ((path[i],) if i + 1 == size else (path[i], path[i:i + 2])):
                for n in by_prefix.get(key, ()):
                    if i + n > size:
                        break
                    j = index.get(path[i:i + n])
                    if j is not None:
                        hits.add(j)
        return hits

    def __call__(self, path: str) -> int:
        hits = self.found(path)
        return min(hits) if hits else -1


def ambiguity_warnings(labels: list[str], paths: list[str], labeler: SubstringLabeler, limit: int = 3) -> list[str]:
    """The traps of darknet's substring rule: a label inside another label, a label inside a directory that
    every image shares, and paths in which several labels occur. Near-linear: one ``labeler.found`` per
    label and per path."""
    warnings = []
    inside = []
    for b in dict.fromkeys(lab for lab in labels if lab):
        for j in sorted(labeler.found(b)):
            a = labels[j]
            if a != b:
                inside.append((a, b))
    if inside:
        ex = ", ".join(f"'{a}' in '{b}'" for a, b in inside[:limit])
        warnings.append(f"{len(inside)} label(s) occur inside another label ({ex}): darknet gives such images "
                        "the label listed first")
    if paths:
        common = os.path.dirname(os.path.commonprefix(paths))
        shared = sorted(labeler.found(common))
        if shared:
            warnings.append(f"label '{labels[shared[0]]}' occurs in the directory '{common}' that every image "
                            "shares: darknet's substring rule gives every image that label")
            return warnings
    multi = 0
    example = None
    for p in paths:
        if len(labeler.found(p)) > 1:
            multi += 1
            example = example or p
    if multi:
        warnings.append(f"{multi} image path(s) contain more than one label (e.g. {example}); darknet takes "
                        "the label listed first")
    return warnings


def folder_labeler(labels: list[str]):
    """ImageFolder-style: the image's parent directory name is its label (exact match)."""
    index = {lab: i for i, lab in reversed(list(enumerate(labels)))}
    return lambda path: index.get(os.path.basename(os.path.dirname(os.path.abspath(path))), -1)


def _is_index(text: str, count: int) -> bool:
    """``text`` is an index into a list of ``count``: ASCII digits only (``str.isdigit`` also takes '²' and
    other digits ``int`` refuses), a value below ``count`` (checked on the digits' length first, so a
    5,000-digit number is not converted)."""
    digits = text.lstrip("0") or "0"
    return text.isascii() and text.isdigit() and len(digits) <= len(str(count)) and int(digits) < count


def ground_truth_labeler(path: str, labels: list[str]):
    """A file of ``IMAGE LABEL`` lines (whitespace or comma separated; LABEL a label string of the list or an
    index into it). IMAGE matches an image's full path or its file name."""
    index = {lab: i for i, lab in reversed(list(enumerate(labels)))}
    truth: dict[str, int] = {}
    text = read_label_list(path)
    for n, line in enumerate(text, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"[,\s]+", line)
        if len(parts) < 2:
            raise DarknetError(f"expected 'IMAGE LABEL', got {line!r}", path, line=n)
        name, lab = parts[0], parts[-1]
        if lab in index:
            truth[name] = index[lab]
        elif _is_index(lab, len(labels)):
            truth[name] = int(lab)
        else:
            raise DarknetError(f"label {lab!r} is neither in the labels list nor an index into it", path, line=n)
    return lambda p: truth.get(p, truth.get(os.path.basename(p), -1))


# -- running metrics ------------------------------------------------------------------------------------


@dataclass
class Metrics:
    """Counts as darknet keeps them (avg_acc, avg_topk over images read), plus per-class and confusion."""
    classes: int
    k: int
    read: int = 0
    top1: int = 0
    topk: int = 0
    skipped: int = 0
    unlabelled: int = 0
    per_class_n: np.ndarray = field(default=None)  # type: ignore[assignment]
    per_class_top1: np.ndarray = field(default=None)  # type: ignore[assignment]
    per_class_topk: np.ndarray = field(default=None)  # type: ignore[assignment]
    confusion: dict = field(default_factory=dict)  # (true, predicted) -> count

    def __post_init__(self):
        self.per_class_n = np.zeros(self.classes, np.int64)
        self.per_class_top1 = np.zeros(self.classes, np.int64)
        self.per_class_topk = np.zeros(self.classes, np.int64)

    def add(self, label: int, ranked: list[int]) -> None:
        self.read += 1
        hit1 = bool(ranked) and ranked[0] == label
        hitk = label in ranked
        self.top1 += hit1
        self.topk += hitk
        if label < 0 or label >= self.classes:
            self.unlabelled += 1
            return
        self.per_class_n[label] += 1
        self.per_class_top1[label] += hit1
        self.per_class_topk[label] += hitk
        key = (label, ranked[0])
        self.confusion[key] = self.confusion.get(key, 0) + 1

    def running_line(self) -> str:
        """``%d: top 1: %f, top %d: %f`` with darknet's float arithmetic (float sum / int)."""
        n = F32(self.read)
        return (f"{self.read - 1}: top 1: {float(F32(self.top1) / n):f}, "
                f"top {self.k}: {float(F32(self.topk) / n):f}")

    @property
    def top1_acc(self) -> float:
        return self.top1 / self.read if self.read else float("nan")

    @property
    def topk_acc(self) -> float:
        return self.topk / self.read if self.read else float("nan")


def summed_probabilities(probs: np.ndarray, classes: int) -> np.ndarray:
    """axpy_cpu over the views in order, in float32, first ``classes`` entries (darknet's pred buffer)."""
    pred = np.zeros(classes, F32)
    for p in probs:
        pred += p[:classes].astype(F32)
    return pred


def rank_classes(pred: np.ndarray, k: int) -> list[int]:
    return top_k(pred, k)


# -- the run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageOutcome:
    """One image's result: its label, ranked classes and their summed probabilities (or why it was skipped)."""
    path: str
    label: int
    ranked: tuple[int, ...] = ()
    probs: tuple[float, ...] = ()  # of the ranked classes
    first_two: tuple[float, float] = (0.0, 0.0)  # pred[0], pred[1]: what darknet's valid line prints
    error: str | None = None

    def darknet_line(self) -> str:
        """validate_classifier_single's per-image line."""
        return f"{self.path}, {self.label}, {self.first_two[0]:f}, {self.first_two[1]:f}, "


def read_image_list(path: str) -> tuple[list[str], list[str]]:
    """The ``valid`` list: paths, and one problem line for each empty line (skipped). CRLF is fine. A
    directory stands for every file under it (hidden ones left out), in sorted order."""
    from .atomic import read_text, split_lines

    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
        return found, []

    lines = split_lines(read_text(path, "image list"))
    paths, problems = [], []
    for n, line in enumerate(lines, start=1):
        if line.strip():
            paths.append(line.strip())
        elif n < len(lines):  # a blank last line is just the file's end
            problems.append(f"{path}:{n}: empty line, skipped")
    return paths, problems


@dataclass(frozen=True)
class Views:
    """A validation mode bound to the network's input size and the model's normalisation: a picklable
    callable from a decoded image to the list of network inputs whose probabilities are summed."""
    mode: str
    width: int
    height: int
    preprocess: Preprocessing | None = None

    def __call__(self, im: np.ndarray) -> list[np.ndarray]:
        views = MODES[self.mode](im, self.width, self.height)
        return views if self.preprocess is None else [self.preprocess.normalize(v) for v in views]


def run_validation(engine, paths: list[str], *, mode: str, label_of, classes: int, k: int, batch: int = 32,
                   workers: int = 0, on_image=None, reorder=None, preprocess: Preprocessing | None = None,
                   metrics: Metrics | None = None):
    """Validate on ``paths`` with ``engine`` (any engine: ``spec``, ``infer``); call ``on_image(outcome,
    metrics)`` after each image, in list order.

    Views of fixed size are batched across images (``batch`` network inputs per forward pass); modes that
    resize the network run each view at its own size. ``reorder`` maps the (N, outputs) probabilities to the
    data file's class order (``Resolved.reorder``); ``preprocess`` normalises the views where the model needs
    it (its mean/std; the resize is the mode's own)."""
    from .pipeline import prepared_images

    if mode not in MODES:
        raise DarknetError(f"unknown validation mode {mode!r}")
    spec = engine.spec
    c, h, w = spec.input_shape
    fixing = spec.fixing_layer
    if mode in RESIZES_NETWORK and fixing is not None:
        raise DarknetError(f"{mode} resizes the network per image, which needs a fully convolutional network "
                           f"(layer {fixing.index} is a {fixing.kind} layer)", spec.path)
    reorder = reorder or (lambda probs: probs)
    metrics = metrics if metrics is not None else Metrics(classes=classes, k=k)  # given: counts to go on from
    pending: list = []  # prepared images waiting for a batched forward pass
    pending_views = [0]  # their network inputs

    def flush():
        views = [v for _, _, arrs, _ in pending if arrs is not None for v in arrs]
        out = reorder(engine.infer(np.stack(views))) if views else np.zeros((0, 0), F32)
        pos = 0
        for _, path, arrs, err in pending:
            label = label_of(path)
            if err is not None:
                metrics.skipped += 1
                outcome = ImageOutcome(path, label, error=err)
            else:
                probs = out[pos: pos + len(arrs)]
                pos += len(arrs)
                outcome = _outcome(path, label, probs)
            if on_image:
                on_image(outcome, metrics)
        pending.clear()
        pending_views[0] = 0

    def _outcome(path, label, probs):
        pred = summed_probabilities(probs, classes)
        ranked = rank_classes(pred, k)
        metrics.add(label, ranked)
        return ImageOutcome(path, label, tuple(ranked), tuple(float(pred[i]) for i in ranked),
                            (float(pred[0]), float(pred[1]) if classes > 1 else 0.0))

    norm = preprocess if preprocess is not None and preprocess.mean is not None else None
    items = prepared_images(paths, Views(mode, w, h, norm), workers)
    try:
        for _, path, arrs, err in items:
            if mode in RESIZES_NETWORK and arrs is not None:
                flush()
                probs = reorder(np.concatenate([engine.infer(v[None]) for v in arrs]))
                outcome = _outcome(path, label_of(path), probs)
                if on_image:
                    on_image(outcome, metrics)
                continue
            pending.append((_, path, arrs, err))
            pending_views[0] += len(arrs) if arrs is not None else 0  # a running count, not a sum per image
            if pending_views[0] >= batch or len(pending) >= max(batch, 256):
                flush()
        flush()
    finally:
        items.close()  # on an interrupt: the decoding workers are terminated now, not when collected
    return metrics


# -- the library call behind `classifier valid` and training's validation ----------------------------------


LABEL_RULES = ("substring", "folder")


def make_labeler(labels: list[str], classes: int, paths: list[str], *, labels_from: str = "substring",
                 ground_truth: str | None = None):
    """How an image's class is found, and the warnings about it: a ground-truth file (``IMAGE LABEL``
    lines), the image's directory name (``labels_from="folder"``), or darknet's substring rule (the default;
    with warnings where it is ambiguous for these paths). Returns (label_of, warnings)."""
    if ground_truth:
        return ground_truth_labeler(ground_truth, labels), []
    if labels_from == "folder":
        return folder_labeler(labels), []
    if labels_from != "substring":
        raise DarknetError(f"labels from {labels_from!r}: expected one of {', '.join(LABEL_RULES)}")
    labeler = SubstringLabeler(labels[:classes])
    return labeler, ambiguity_warnings(labels[:classes], paths, labeler)


@dataclass
class ValidationPlan:
    """What a validation run needs before the first image: the resolved names/labels/class order, the image
    list (and the problems found in it), how a path's label is found, and the warnings to show."""
    resolved: object
    list_path: str
    paths: list[str]
    problems: list[str]
    label_of: object
    warnings: list[str]


def plan_validation(model, spec, data, *, list_path: str | None = None, labels_from: str = "substring",
                    ground_truth: str | None = None, names=None) -> ValidationPlan:
    """The list (``list_path``, else the data file's ``valid``, else darknet's data/train.list), the labels by
    ``model.resolve`` (the data file's, else the model's own), and the label rule (``make_labeler``)."""
    from .model import resolve

    resolved = resolve(model, spec, data, names=names, need_labels=not ground_truth)
    list_path = list_path or data.valid or "data/train.list"
    paths, problems = read_image_list(list_path)
    labels = resolved.labels or [str(i) for i in range(resolved.classes)]  # a ground truth may give indices
    label_of, notes = make_labeler(labels, resolved.classes, paths, labels_from=labels_from,
                                   ground_truth=ground_truth)
    where = resolved.sources.get("labels", "labels")
    return ValidationPlan(resolved, list_path, paths, problems, label_of, [f"{where}: {n}" for n in notes])


@dataclass
class Validation:
    """The result of ``validate_data``: the metrics, every image's outcome (in list order), the run's summary
    (what ``summary.json`` holds) and the problems found in the list."""
    metrics: Metrics
    outcomes: list
    summary: dict
    problems: list[str]
    partial: bool = False  # interrupted: the first images only

    @property
    def skipped(self) -> int:
        return self.metrics.skipped + len(self.problems)


def validate_data(engine, plan: ValidationPlan, *, mode: str = "valid", k: int, batch: int = 32, workers: int = 0,
                  threads: int | None = None, on_image=None, describe: dict | None = None,
                  partial_on_interrupt: bool = False, done=()) -> Validation:
    """darknet's ``classifier valid`` family with ``engine`` on ``plan`` (``plan_validation``: the images, their
    labels, the class order and normalisation). ``on_image(outcome, metrics)`` is called after each image.
    ``describe`` adds entries to the summary (cfg, weights, ...). ``partial_on_interrupt``: Ctrl-C ends the run
    with what was done so far, its summary saying ``"partial": true`` (else KeyboardInterrupt propagates). ``done``: ImageOutcomes of an earlier run of the same list (its
    predictions.csv); their images are not run again but counted, as if this run had done them."""
    import time

    from .pipeline import inference_threads

    resolved, paths, label_of, problems = plan.resolved, plan.paths, plan.label_of, plan.problems

    from .output import safe_text

    seeded = Metrics(classes=resolved.classes, k=k)
    outcomes: list = list(done)
    for o in outcomes:
        if o.error is not None:
            seeded.skipped += 1
        else:
            seeded.add(o.label, list(o.ranked))
    listed = len(paths)
    if outcomes:
        seen = {o.path for o in outcomes}
        paths = [p for p in paths if safe_text(p) not in seen]
    latest = [seeded]

    def each(outcome, metrics):
        outcomes.append(outcome)
        latest[0] = metrics
        if on_image:
            on_image(outcome, metrics)

    start = time.perf_counter()
    partial = False
    try:
        with inference_threads(engine, workers, threads):
            metrics = run_validation(engine, paths, mode=mode, label_of=label_of, classes=resolved.classes, k=k,
                                     batch=batch, workers=workers, on_image=each, reorder=resolved.reorder,
                                     preprocess=resolved.preprocess, metrics=seeded)
    except KeyboardInterrupt:
        if not partial_on_interrupt:
            raise
        partial, metrics = True, latest[0]
    seconds = time.perf_counter() - start
    summary = {"mode": mode, **(describe or {}), "list": plan.list_path, "images_listed": listed,
               **({"partial": True, "images_done": len(outcomes)} if partial else {}),
               **({"resumed_from": len(done)} if done else {}),
               "images_read": metrics.read,
               "skipped": metrics.skipped + len(problems), "unlabelled": metrics.unlabelled,
               "top1": metrics.top1_acc, f"top{k}": metrics.topk_acc, "k": k, "classes": resolved.classes,
               "seconds": seconds, "images_per_second": metrics.read / seconds if seconds else None,
               "batch": batch, "workers": workers}
    return Validation(metrics, outcomes, summary, list(problems), partial)
