"""int8 post-training static quantization of a darknet classifier, calibrated on the user's own images
(``pydarknet quantize DATA CFG WEIGHTS --calibrate LIST``), with an fp32-versus-int8 report on held-out images.

darknet has no int8 mode; this is ONNX Runtime's static quantization of pydarknet's own export::

    cfg + weights --engines.network.load_network--> Network --onnx.export_onnx (dynamic batch, checked)-->
    fp32 ONNX --quant_pre_process (shape inference, basic fusions)--> --quantize_static: QDQ, int8 weights
    per output channel, uint8 activations, calibrated (MinMax) on N images prepared as `classifier valid`
    prepares them--> int8 ONNX + the model's facts + a fingerprint of the weights --atomic_write-->
    <weights>.int8.onnx; then fp32 and int8 on the held-out images -> QuantizeReport (+ .report.json)

Choices, measured with onnxruntime 1.32 on a 2-core AVX-512 VNNI CPU (``benchmarks/quantize.py``): QDQ with
uint8 activations (batch 1, 1 thread: extraction 22 ms, darknet19 22, resnet50 30, densenet201 34, against
89, 67, 101 and 127 ms for pydarknet's fp32 engine; int8 activations: the same results on ``fashion``, as
fast on extraction and darknet19 but 2-3x slower on resnet50 and densenet201; QOperator: no faster, and on
``fashion`` 13x slower with int8 activations), MinMax calibration (on ``fashion``'s
10,000 test images it keeps fp32's 87.77% top-1; Entropy gave MinMax's ranges; Percentile 99.999: 87.70%),
``quant_pre_process`` first (ONNX Runtime asks for it; no measurable change), and the head over the logits
left in float (``float_tail``). The held-out report runs both models in ONNX Runtime, so the comparison is
about quantization only (the fp32 export agrees with pydarknet within 1e-5, checked when it is made).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .atomic import atomic_write, check_regular, open_regular, read_bytes
from .errors import DarknetError

INT8_SUFFIX = ".int8.onnx"
REPORT_SUFFIX = ".report.json"
PRECISION_KEY = "pydarknet_precision"
DEFAULT_IMAGES = 256
DEFAULT_HOLDOUT = 1000  # at most: the rest of the list, up to this many
MIN_TOP1_AGREEMENT = 0.97  # below: the int8 model is poor (the report says so and suggests bf16)
METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"
PERCENTILE = 99.999  # the percentile method's cut
TOPK = 5
SPLIT_SEED = 0
BATCH = 16
#: unreadable images tolerated (reported and skipped): this many, or this share of the images if more
UNREADABLE_MIN, UNREADABLE_SHARE = 10, 0.05
ARTIFACT_MAX_BYTES = 2 << 30


def int8_artifact_path(weights: str | os.PathLike) -> str:
    """Where ``quantize`` writes the int8 model of ``weights`` (and ``--precision int8`` finds it): beside them,
    ``<weights>.int8.onnx``; for the weights bundled in the package (the zoo's ``fashion``), whose folder is not
    the user's, in the cache instead (``$PYDARKNET_CACHE/int8/<name>.int8.onnx``)."""
    path = os.fspath(weights)
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
    if os.path.dirname(os.path.abspath(path)) == bundled:
        from .download import cache_dir

        return os.path.join(os.fspath(cache_dir()), "int8", os.path.basename(path) + INT8_SUFFIX)
    return path + INT8_SUFFIX


def report_path(artifact: str | os.PathLike) -> str:
    """The fp32-versus-int8 report beside an artifact: ``<artifact>.report.json``."""
    return os.fspath(artifact) + REPORT_SUFFIX


# ---------------------------------------------------------------------------------------------------------
# the weights' fingerprint and the artifact's check


def weights_fingerprint(weights: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a weights file: what an artifact records of the weights it was made
    from."""
    f, size = open_regular(os.fspath(weights), "weights")
    h = hashlib.sha256()
    with f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return size, h.hexdigest()


def _onnx_modules():
    try:
        import onnx
        import onnxruntime
        import onnxruntime.quantization  # noqa: F401
    except ImportError as e:
        raise DarknetError(f"int8 quantization needs the 'onnx' and 'onnxruntime' packages ({e.name} is "
                           "missing): pip install 'pydarknet[onnx]'") from None
    return onnx, onnxruntime


def int8_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file (a DarknetError naming the file when it is not ONNX)."""
    onnx, _ = _onnx_modules()
    path = os.fspath(path)
    data = read_bytes(path, "int8 model", max_bytes=ARTIFACT_MAX_BYTES)
    try:
        model = onnx.load_from_string(data)
    except Exception:  # noqa: BLE001 - protobuf's decode errors are of several types
        raise DarknetError("not an ONNX model", path) from None
    return {p.key: p.value for p in model.metadata_props}


def check_int8_artifact(path: str | os.PathLike, weights: str | os.PathLike) -> None:
    """Refuse (one DarknetError line) a ``path`` that is not a pydarknet int8 model, or one made from other
    weights than ``weights`` (their size and sha256 against the ones it records)."""
    path = os.fspath(path)
    meta = int8_metadata(path)
    if meta.get(PRECISION_KEY) != "int8":
        raise DarknetError(f"not a pydarknet int8 model (no {PRECISION_KEY}=int8 in its metadata); make one with "
                           "pydarknet quantize", path)
    size, digest = meta.get("pydarknet_weights_bytes"), meta.get("pydarknet_weights_sha256")
    if not size or not digest:
        raise DarknetError("records no weights fingerprint (pydarknet_weights_bytes, pydarknet_weights_sha256)",
                           path)
    weights = os.fspath(weights)
    st = check_regular(weights, "weights")
    if str(st.st_size) != size:
        raise DarknetError(f"was made from other weights: it records a {size}-byte weights file, {weights} has "
                           f"{st.st_size} bytes; run pydarknet quantize again", path)
    found = weights_fingerprint(weights)[1]
    if found != digest:
        raise DarknetError(f"was made from other weights: it records sha256 {digest[:16]}..., {weights} has "
                           f"{found[:16]}...; run pydarknet quantize again", path)


# ---------------------------------------------------------------------------------------------------------
# the list and its split


@dataclass(frozen=True)
class Split:
    """The calibration and held-out images (paths, each part in list order; disjoint positions of the list)
    and how many the list had."""
    calibration: list[str]
    holdout: list[str]
    listed: int


def split_list(paths: list[str], images: int, holdout: int | None, *, seed: int = SPLIT_SEED,
               where: str = "image list") -> Split:
    """A seeded shuffle of the list's positions (NumPy ``default_rng(seed).permutation``): the first
    ``images`` are the calibration images, the next ``holdout`` (None: the rest, up to ``DEFAULT_HOLDOUT``)
    the held-out ones; each part is kept in list order. Too few images is one DarknetError saying how many
    were found."""
    n = len(paths)
    if images < 1:
        raise DarknetError(f"--images {images}: at least one calibration image is needed")
    if holdout is not None and holdout < 0:
        raise DarknetError(f"--holdout {holdout}: must be 0 or more")
    if n < images:
        raise DarknetError(f"{n} images found, {images} needed for calibration (--images {images}); lower --images "
                           "or give a longer list", where)
    rest = n - images
    if holdout is None:
        holdout = min(DEFAULT_HOLDOUT, rest)
        if holdout == 0:
            raise DarknetError(f"{n} images found, all {images} taken for calibration: none is left to hold out for "
                               "the fp32-versus-int8 report (give a longer list, lower --images, or --holdout 0)",
                               where)
    elif holdout > rest:
        raise DarknetError(f"{n} images found, {images} for calibration leave {rest} to hold out, not --holdout "
                           f"{holdout}", where)
    order = np.random.default_rng(seed).permutation(n)
    cal = sorted(order[:images].tolist())
    held = sorted(order[images:images + holdout].tolist())
    return Split([paths[i] for i in cal], [paths[i] for i in held], n)


def unreadable_limit(images: int) -> int:
    return max(UNREADABLE_MIN, math.ceil(UNREADABLE_SHARE * images))


class _Unreadable:
    """Counts the images that could not be read; past ``unreadable_limit`` of the job's images, one error."""

    def __init__(self, total: int, where: str):
        self.errors: list[str] = []
        self.limit = unreadable_limit(total)
        self.total = total
        self.where = where

    def add(self, error: str) -> None:
        self.errors.append(error)
        if len(self.errors) > self.limit:
            raise DarknetError(f"over {self.limit} of its {self.total} images could not be read (the first: "
                               f"{self.errors[0]})", self.where)


# ---------------------------------------------------------------------------------------------------------
# the plan: what the images are, how they are prepared and labelled


def plan_quantization(model, spec, data, calibrate: str, *, names=None, labels_from: str = "substring",
                      ground_truth: str | None = None):
    """``validate.ValidationPlan`` for ``calibrate``: the model's names, class order and preprocessing
    (``model.resolve``), the list (``validate.read_image_list``), and the labeler where labels are known
    (the data file's or the model's own; None when neither has any: the report then has no accuracy)."""
    from .model import resolve
    from .validate import ValidationPlan, make_labeler, read_image_list

    resolved = resolve(model, spec, data, names=names)
    paths, problems = read_image_list(calibrate)
    label_of, notes = None, []
    if resolved.labels is not None or ground_truth:
        labels = resolved.labels or [str(i) for i in range(resolved.classes)]
        label_of, notes = make_labeler(labels, resolved.classes, paths, labels_from=labels_from,
                                       ground_truth=ground_truth)
    where = resolved.sources.get("labels", "labels")
    return ValidationPlan(resolved, calibrate, paths, problems, label_of, [f"{where}: {n}" for n in notes])


def _views(spec, resolved):
    """How `classifier valid` prepares an image for this model: center_crop_image to the network's size,
    then the model's normalisation (its mean/std), if any."""
    from .validate import Views

    c, h, w = spec.input_shape
    norm = resolved.preprocess if resolved.preprocess.mean is not None else None
    return Views("valid", w, h, norm)


# ---------------------------------------------------------------------------------------------------------
# ONNX Runtime


def session_options(threads: int | None = None, *, spinning: bool = False):
    """``engines.ort_infer.session_options`` as quantize's sessions use it: ``threads`` (default: the cores
    this process may use) and no spinning by default (see there)."""
    from .engines.ort_infer import session_options as options
    from .pipeline import cpu_count

    _onnx_modules()
    return options(threads or cpu_count(), spinning=spinning)


def ort_session(model: bytes | str, threads: int | None = None):
    """An ONNX Runtime CPU session on a model (bytes or a path) with ``session_options(threads)``."""
    _, ort = _onnx_modules()
    return ort.InferenceSession(model, session_options(threads), providers=["CPUExecutionProvider"])


def _calibration_reader(inputs: np.ndarray, batch: int, chunk: int, bar):
    """ONNX Runtime's CalibrationDataReader over the prepared calibration inputs: ``len`` chunks of ``chunk``
    images, one per ``set_range`` (ONNX Runtime's strided calibration, stride 1: the activations of one chunk
    are held at a time), each handed out ``batch`` images at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    from .onnx import INPUT_NAME

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.chunks = max(1, math.ceil(len(inputs) / chunk))
            self.pos, self.end = 0, min(chunk, len(inputs))

        def __len__(self):
            return self.chunks

        def set_range(self, start_index: int, end_index: int):
            self.pos, self.end = start_index * chunk, min(end_index * chunk, len(inputs))

        def get_next(self):
            if self.pos >= self.end:
                return None
            x = inputs[self.pos: min(self.pos + batch, self.end)]
            self.pos += len(x)
            bar.update(len(x))
            return {INPUT_NAME: x}

    return Reader()


#: the share of the memory budget the calibration's activations may take at a time (ONNX Runtime keeps every
#: intermediate tensor of a chunk of images before it reduces them to ranges or histograms)
CALIBRATION_MEMORY_SHARE = 0.25


def calibration_chunk(spec, batch: int) -> int:
    """Images whose every intermediate tensor fits in ``CALIBRATION_MEMORY_SHARE`` of the memory budget
    (twice the layer outputs: a convolution's output and its activation are separate tensors in ONNX), a
    whole number of batches when more than one fits."""
    from . import budget

    per_image = 2 * 4 * sum(s.outputs for s in spec.layers)
    fit = int(budget.max_memory() * CALIBRATION_MEMORY_SHARE) // max(1, per_image)
    return max(1, fit if fit < batch else fit - fit % batch)


#: the exporter names each node after its darknet layer: ``/<index>_<kind>/<op>``
_LAYER_OF_NODE = re.compile(r"^/(\d+)_")


def float_tail(fp32: bytes, spec) -> list[str]:
    """The nodes left in float: every layer after the last one with weights (the pooling and softmax over
    the logits), and that layer too when its output is the logits themselves (a 1x1 map: a [connected] or a
    convolution after the global pooling). Quantized logits tie in steps of their scale (on ``fashion``,
    int8 logits gave identical top-5 sets on 27% of the images; float ones on 94%, and top-1 agreement
    went from 98.87% to 99.12%), for a few MFLOPs in float."""
    onnx, _ = _onnx_modules()
    if spec.last_weighted_index is None:
        return []
    last = spec.layers[spec.last_weighted_index]
    first = last.index if last.out[1] * last.out[2] <= 1 else last.index + 1
    names = []
    for n in onnx.load_from_string(fp32).graph.node:
        m = _LAYER_OF_NODE.match(n.name)
        if m and int(m.group(1)) >= first:
            names.append(n.name)
    return names


def quantize_onnx(fp32: bytes, inputs: np.ndarray, *, method: str = DEFAULT_METHOD, chunk: int | None = None,
                  batch: int = BATCH, activations: str = "uint8", quant_format: str = "qdq",
                  exclude: list[str] = (), pre_process: bool = True, progress: bool = True) -> bytes:
    """ONNX Runtime's ``quantize_static`` of the fp32 model ``fp32`` calibrated on ``inputs`` ((N, C, H, W)
    float32, prepared as the model takes them): int8 weights per output channel (symmetric), ``activations``
    uint8 (asymmetric) or int8, ``quant_format`` "qdq" or "qoperator", ``method`` minmax, entropy or
    percentile (``PERCENTILE``); the nodes named in ``exclude`` stay in float (``float_tail``). Returns the
    int8 model's bytes; ONNX Runtime's own chatter (its histogram
    messages on stdout, its log) is kept off the console."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tqdm import tqdm

    if method not in METHODS:
        raise DarknetError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    if activations not in ("uint8", "int8") or quant_format not in ("qdq", "qoperator"):
        raise DarknetError(f"activations {activations!r} / format {quant_format!r}: expected uint8|int8, qdq|qoperator")
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    extra = {"CalibStridedMinMax": 1}  # the reader's chunks: one chunk's activations at a time
    if method == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    quiet = logging.getLogger()
    level = quiet.level
    with tempfile.TemporaryDirectory(prefix="pydarknet-quantize.") as tmp, \
            tqdm(total=len(inputs), unit="img", desc="calibrating", disable=None if progress else True) as bar:
        src = os.path.join(tmp, "fp32.onnx")
        with open(src, "wb") as f:
            f.write(fp32)
        quiet.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                if pre_process:
                    pre = os.path.join(tmp, "pre.onnx")
                    quant_pre_process(src, pre)
                    src = pre
                out = os.path.join(tmp, "int8.onnx")
                reader = _calibration_reader(inputs, batch, chunk or len(inputs), bar)
                quantize_static(src, out, reader,
                                quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                                activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                                weight_type=QuantType.QInt8, per_channel=True, calibrate_method=calib,
                                nodes_to_exclude=list(exclude), extra_options=extra)
        except DarknetError:
            raise
        except Exception as e:  # ONNX Runtime's tools raise many types; name the step
            raise DarknetError(f"onnxruntime's quantize_static failed ({type(e).__name__}: {e})") from e
        finally:
            quiet.setLevel(level)
        with open(out, "rb") as f:
            return f.read()


# ---------------------------------------------------------------------------------------------------------
# the report


@dataclass
class QuantizeReport:
    """What ``quantize_model`` did and how int8 compares with fp32 on the held-out images. Agreements and
    accuracies are fractions; accuracies are None when no held-out image's label is known (`classifier
    valid`'s counts otherwise: an unlabelled image is wrong); ``k`` is the top-k compared (5, or the class
    count if fewer)."""
    artifact: str
    report: str
    weights: str
    calibration_list: str
    images_listed: int
    calibration_images: int
    holdout_images: int
    method: str
    quantization: str
    k: int = TOPK
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    max_prob_diff: float | None = None
    fp32_top1: float | None = None
    fp32_top5: float | None = None
    int8_top1: float | None = None
    int8_top5: float | None = None
    unlabelled: int = 0
    fp32_images_per_second: float | None = None
    int8_images_per_second: float | None = None
    threads: int = 1
    batch: int = BATCH
    seconds: float = 0.0
    unreadable: list[str] = field(default_factory=list)
    min_top1_agreement: float = MIN_TOP1_AGREEMENT

    @property
    def poor(self) -> bool:
        """The int8 model's top-1 agrees with fp32's on fewer than ``MIN_TOP1_AGREEMENT`` of the images."""
        return self.top1_agreement is not None and self.top1_agreement < self.min_top1_agreement

    def to_json(self) -> dict:
        return {**asdict(self), "poor": self.poor}

    def lines(self) -> list[str]:
        """The report as darknet-like plain lines (``name: value``), one figure a line."""
        out = [f"int8 model: {self.artifact}",
               f"calibration: {self.calibration_images} images of {self.calibration_list}, {self.method}",
               f"held-out images: {self.holdout_images}"]
        if self.holdout_images == 0 or self.top1_agreement is None:
            return out
        k = self.k
        out += [f"top 1 agreement: {self.top1_agreement:f}", f"top {k} agreement: {self.top5_agreement:f}",
                f"max |prob diff|: {self.max_prob_diff:f}"]
        if self.fp32_top1 is not None:
            out += [f"fp32 top 1: {self.fp32_top1:f}", f"int8 top 1: {self.int8_top1:f}",
                    f"fp32 top {k}: {self.fp32_top5:f}", f"int8 top {k}: {self.int8_top5:f}"]
            if self.unlabelled:
                out.append(f"unlabelled images: {self.unlabelled} (counted wrong, as classifier valid counts them)")
        out += [f"fp32 images/s: {self.fp32_images_per_second:.1f}",
                f"int8 images/s: {self.int8_images_per_second:.1f}"]
        return out

    def warning(self) -> str | None:
        """The line saying the int8 model is poor, or None."""
        if not self.poor:
            return None
        return (f"int8 top-1 agrees with fp32 on only {100 * self.top1_agreement:.2f}% of the held-out images "
                f"(under {100 * self.min_top1_agreement:.0f}%): the int8 model is poor; try --precision bf16")


def _compare(fp32, int8, items, resolved, label_of, k: int, batch: int, unreadable: _Unreadable, bar):
    """Both sessions on the prepared held-out images, batch by batch: agreement, accuracy (validate.Metrics:
    `classifier valid`'s counts), and the seconds each session took."""
    from .onnx import INPUT_NAME
    from .pipeline import batches
    from .predict import top_k
    from .validate import Metrics

    classes = resolved.classes
    m32, m8 = Metrics(classes=classes, k=k), Metrics(classes=classes, k=k)
    same1 = same5 = n = 0
    worst = 0.0
    t32 = t8 = 0.0
    for group in batches(items, batch):
        good = [(path, arrs[0]) for _, path, arrs, err in group if arrs is not None]
        for _, _, arrs, err in group:
            if err is not None:
                unreadable.add(err)
        bar.update(len(group))
        if not good:
            continue
        x = np.stack([a for _, a in good])
        t = time.perf_counter()
        y32 = fp32.run(None, {INPUT_NAME: x})[0]
        t32 += time.perf_counter() - t
        t = time.perf_counter()
        y8 = int8.run(None, {INPUT_NAME: x})[0]
        t8 += time.perf_counter() - t
        worst = max(worst, float(np.abs(y32.astype(np.float64) - y8).max()))
        p32, p8 = resolved.reorder(y32)[:, :classes], resolved.reorder(y8)[:, :classes]
        for (path, _), a, b in zip(good, p32, p8):
            r32, r8 = top_k(a, k), top_k(b, k)
            same1 += r32[0] == r8[0]
            same5 += set(r32) == set(r8)
            n += 1
            if label_of is not None:
                label = label_of(path)
                m32.add(label, r32)
                m8.add(label, r8)
    return n, same1, same5, worst, m32, m8, t32, t8


def _check_writable(path: str) -> None:
    """The artifact (and its report beside it) can be written: its directory exists and takes a new file;
    checked before the long work."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DarknetError("is a directory: give the int8 model's file name (--out FILE.onnx)", path)
    if not os.path.isdir(directory):
        raise DarknetError("cannot write: the directory does not exist (--out elsewhere)", path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".pydarknet-probe.", dir=directory)
    except OSError as e:
        raise DarknetError(f"cannot write in {directory}: {e.strerror or e} (--out elsewhere)", path) from None
    os.close(fd)
    os.unlink(probe)


# ---------------------------------------------------------------------------------------------------------
# the library call behind `pydarknet quantize`


def quantize_model(model, plan, *, images: int = DEFAULT_IMAGES, holdout: int | None = None, out: str | None = None,
                   method: str = DEFAULT_METHOD, seed: int = SPLIT_SEED, batch: int = BATCH,
                   threads: int | None = None, workers: int = 0, progress: bool = True) -> QuantizeReport:
    """Quantize ``model`` (``model.Model`` with weights) to int8, calibrated on ``images`` images of ``plan``
    (``plan_quantization``), and compare it with fp32 on ``holdout`` others (None: the rest of the list, up to
    ``DEFAULT_HOLDOUT``; 0: no report). The int8 model goes to ``out`` (default ``int8_artifact_path(weights)``),
    written atomically with the fp32 export's metadata (cfg text, the model's facts) plus its own
    (``pydarknet_precision=int8``, the calibration, the weights' fingerprint); the report to
    ``report_path(out)``. ``threads``: ONNX Runtime's threads for the comparison (default: every core);
    ``workers``: decoding processes (``pipeline.prepared_images``)."""
    from tqdm import tqdm

    from . import __version__, budget
    from .engines.network import load_network
    from .engines.ort_infer import export_bytes
    from .pipeline import cpu_count, prepared_images

    onnx, ort = _onnx_modules()
    t0 = time.perf_counter()
    if not model.weights:
        raise DarknetError("quantize needs trained weights: give WEIGHTS", model.cfg)
    if out:
        out = os.fspath(out)
    else:
        out = int8_artifact_path(model.weights)
        if out != os.fspath(model.weights) + INT8_SUFFIX:  # the cache's int8 folder, made on first use
            try:
                os.makedirs(os.path.dirname(out), exist_ok=True)
            except OSError as e:
                raise DarknetError(f"cannot make the cache's int8 folder: {e.strerror or e} (set PYDARKNET_CACHE "
                                   "or --out)", os.path.dirname(out)) from None
    _check_writable(out)
    split = split_list(plan.paths, images, holdout, seed=seed, where=plan.list_path)
    size, digest = weights_fingerprint(model.weights)
    net = load_network(model.cfg, model.weights)
    spec, resolved = net.spec, plan.resolved
    views = _views(spec, resolved)
    disable = None if progress else True

    c, h, w = spec.input_shape
    need = 4 * c * h * w * len(split.calibration)
    if need > budget.max_memory() // 2:
        raise DarknetError(f"--images {len(split.calibration)} needs {budget.human(need)} for the prepared calibration "
                           f"inputs, over half the memory budget of {budget.human(budget.max_memory())}; lower "
                           "--images or raise --max-memory")
    unreadable = _Unreadable(len(split.calibration), plan.list_path)
    inputs = np.empty((len(split.calibration), c, h, w), np.float32)
    got = 0
    with tqdm(total=len(split.calibration), unit="img", desc="preparing", disable=disable) as bar:
        items = prepared_images(split.calibration, views, workers)
        try:
            for _, path, arrs, err in items:
                if err is not None:
                    unreadable.add(err)
                else:
                    inputs[got] = arrs[0]
                    got += 1
                bar.update(1)
        finally:
            items.close()
    if not got:
        raise DarknetError(f"none of the {len(split.calibration)} calibration images could be read",
                           plan.list_path)
    inputs = inputs[:got]

    fp32, _ = export_bytes(net, metadata=model.facts.metadata())
    del net
    int8 = quantize_onnx(fp32, inputs, method=method, chunk=calibration_chunk(spec, batch), batch=batch,
                         exclude=float_tail(fp32, spec), progress=progress)
    del inputs
    quantization = (f"onnxruntime {ort.__version__} quantize_static: QDQ, activations uint8 (asymmetric), weights "
                    "int8 per output channel (symmetric); the head over the logits in float")
    meta = {p.key: p.value for p in onnx.load_from_string(fp32).metadata_props}
    meta.update({PRECISION_KEY: "int8", "pydarknet_weights_bytes": str(size), "pydarknet_weights_sha256": digest,
                 "pydarknet_weights_file": os.path.basename(model.weights),
                 "pydarknet_calibration_list": os.path.abspath(plan.list_path),
                 "pydarknet_calibration_images": str(got), "pydarknet_calibration_method": method,
                 "pydarknet_calibration_preprocess": f"{views.mode}: center_crop_image to {w}x{h}"
                                                     + (", then (x - mean) / std" if views.preprocess else ""),
                 "pydarknet_quantization": quantization})
    proto = onnx.load_from_string(int8)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "pydarknet", __version__
    proto.doc_string = (f"{os.path.basename(spec.path)} quantized to int8 by pydarknet {__version__}: input float32 "
                        f"(N, {c}, {h}, {w}) as the fp32 export; output (N, {spec.outputs})")
    int8 = proto.SerializeToString()
    del proto
    atomic_write(out, int8)

    threads = threads or cpu_count()
    k = min(TOPK, resolved.classes)
    report = QuantizeReport(artifact=out, report=report_path(out), weights=model.weights,
                            calibration_list=plan.list_path, images_listed=split.listed, calibration_images=got,
                            holdout_images=0, method=method, quantization=quantization, k=k, threads=threads,
                            batch=batch)
    if split.holdout:
        held = _Unreadable(len(split.holdout), plan.list_path)
        s32, s8 = ort_session(fp32, threads), ort_session(int8, threads)
        with tqdm(total=len(split.holdout), unit="img", desc="comparing", disable=disable) as bar:
            items = prepared_images(split.holdout, views, workers)
            try:
                n, same1, same5, worst, m32, m8, t32, t8 = _compare(s32, s8, items, resolved, plan.label_of, k,
                                                                   batch, held, bar)
            finally:
                items.close()
        unreadable.errors += held.errors
        if n:
            report.holdout_images = n
            report.top1_agreement, report.top5_agreement, report.max_prob_diff = same1 / n, same5 / n, worst
            report.fp32_images_per_second, report.int8_images_per_second = n / t32, n / t8
            if plan.label_of is not None and m32.unlabelled < m32.read:  # some image has a label
                report.fp32_top1, report.fp32_top5 = m32.top1_acc, m32.topk_acc
                report.int8_top1, report.int8_top5 = m8.top1_acc, m8.topk_acc
                report.unlabelled = m32.unlabelled
    report.unreadable = unreadable.errors
    report.seconds = time.perf_counter() - t0
    atomic_write(report.report, (json.dumps(report.to_json(), indent=1) + "\n").encode("utf-8"))
    return report


__all__ = ["DEFAULT_HOLDOUT", "DEFAULT_IMAGES", "DEFAULT_METHOD", "METHODS", "MIN_TOP1_AGREEMENT", "QuantizeReport",
           "check_int8_artifact", "int8_artifact_path", "int8_metadata", "ort_session", "plan_quantization",
           "quantize_model", "quantize_onnx", "report_path", "session_options", "split_list", "weights_fingerprint"]
