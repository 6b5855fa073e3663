"""int8 (``pydarknet quantize``) against fp32: accuracy on Fashion-MNIST, speed on ImageNet-size models.

    python benchmarks/quantize.py accuracy            # fashion: every calibration method, 10,000 test images
    python benchmarks/quantize.py speed               # extraction, darknet19, resnet50, densenet201
    python benchmarks/quantize.py speed --models tiny --threads 1 --variants qdq-u8

accuracy: the bundled ``fashion`` model, calibrated by ``quantize_model`` on 256 of the first 2,000 Fashion-MNIST
training images (Debian's dataset-fashion-mnist, written as PNGs to a scratch directory), then fp32 and int8
(ONNX Runtime) and pydarknet's torch engine on the 10,000 test images: top-1 of each, top-1 agreement,
identical top-5 sets, max |prob diff|.

speed: per model, weights from darknet's random init (``common.make_weights``: seed 0, the last layer scaled
so the softmax is neither flat nor one-hot), calibrated on the photos in /usr/share/darknet/data and
scikit-image's sample images (prepared as ``classifier valid`` does) by ``quantize_onnx`` in each variant
(qdq-u8: QDQ, uint8 activations, the default; qdq-s8: int8 activations; qop-u8: QOperator; a -nopre suffix:
without quant_pre_process), then batch-1 medians of pydarknet's torch engine (``open_engine``), ONNX Runtime
fp32 on the same export, and each int8 variant, at 1 and 2 threads (``torch.set_num_threads``;
``intra_op_num_threads``, ``inter_op_num_threads=1``; these sessions spin), the default variant also without
spinning (``session_options``' default) and at ORT_ENABLE_EXTENDED. Agreement: top-1 of int8 against fp32
over the calibration photos (the same images, random weights: a sanity check, not an accuracy).
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (puts the repository root on sys.path)
import numpy as np  # noqa: E402

SKIMAGE_GLOBS = ("*.png", "*.jpg")


def photos() -> list[str]:
    found = sorted(glob.glob(os.path.join(common.PHOTOS, "*.jpg")))
    try:
        import skimage

        data = os.path.join(os.path.dirname(skimage.__file__), "data")
        found += sorted(p for g in SKIMAGE_GLOBS for p in glob.glob(os.path.join(data, g)))
    except ImportError:
        pass
    return found


def timed(fn, budget: float = 3.0, most: int = 40) -> float:
    """Median milliseconds of ``fn()`` after two warm-up calls; as many calls as ``budget`` allows."""
    fn()
    fn()
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    samples = []
    for _ in range(int(min(most, max(5, budget / max(first, 1e-9))))):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def accuracy(args) -> dict:
    sys.path.insert(0, os.path.join(common.ROOT, "scripts"))
    from fashion_mnist import LABELS, read_idx
    from PIL import Image

    import pydarknet
    from pydarknet.datacfg import read_data_cfg
    from pydarknet.model import resolve_model
    from pydarknet.pipeline import prepared_images
    from pydarknet.quantize import _views, ort_session, plan_quantization, quantize_model
    from pydarknet.specs import load_specs

    with common.scratch_dir(args.keep) as tmp:
        lists = {}
        for split, idx, n in (("train", "train", 2000), ("test", "t10k", 10000)):
            pixels, labels = read_idx(idx, n)
            os.makedirs(os.path.join(tmp, split))
            paths = []
            for i, (p, lab) in enumerate(zip(pixels, labels)):
                paths.append(os.path.join(tmp, split, f"{i:05d}_{LABELS[lab]}.png"))
                Image.fromarray(p).save(paths[-1])
            lists[split] = os.path.join(tmp, f"{split}.list")
            with open(lists[split], "w") as f:
                f.write("\n".join(paths) + "\n")
        common.log("wrote the PNGs")
        weights = os.path.join(tmp, "fashion.weights")
        from pydarknet import zoo

        with open(zoo.fetch_weights("fashion", offline=True), "rb") as src, open(weights, "wb") as dst:
            dst.write(src.read())
        model = resolve_model("fashion", weights)
        spec = load_specs(model.cfg)
        data = read_data_cfg("fashion")
        test = plan_quantization(model, spec, data, lists["test"])
        views = _views(spec, test.resolved)
        x = np.stack([a[0] for _, _, a, _ in prepared_images(test.paths, views)])
        truth = np.array([test.label_of(p) for p in test.paths])
        engine = pydarknet.open_engine(model.cfg, weights)
        ours = np.concatenate([engine.infer(x[i:i + 500]) for i in range(0, len(x), 500)])
        common.log("torch fp32 on the test images")
        rows = {"torch fp32": {"top1": float(np.mean(ours.argmax(1) == truth))}}
        fp32 = None
        for method in args.methods.split(","):
            plan = plan_quantization(model, spec, data, lists["train"])
            out = os.path.join(tmp, f"fashion.{method}.int8.onnx")
            r = quantize_model(model, plan, images=256, out=out, method=method, progress=False)
            if fp32 is None:
                from pydarknet.engines.network import load_network
                from pydarknet.onnx import export_onnx

                export_onnx(load_network(model.cfg, weights), os.path.join(tmp, "fp32.onnx"), batch="dynamic")
                s = ort_session(os.path.join(tmp, "fp32.onnx"))
                fp32 = np.concatenate([s.run(None, {"input": x[i:i + 500]})[0] for i in range(0, len(x), 500)])
                rows["onnxruntime fp32"] = {"top1": float(np.mean(fp32.argmax(1) == truth))}
            s = ort_session(out)
            y = np.concatenate([s.run(None, {"input": x[i:i + 500]})[0] for i in range(0, len(x), 500)])
            top5 = lambda a: np.sort(np.argsort(-a, axis=1, kind="stable")[:, :5], axis=1)  # noqa: E731
            rows[f"int8 {method}"] = {"top1": float(np.mean(y.argmax(1) == truth)),
                                      "top1_agreement": float(np.mean(y.argmax(1) == fp32.argmax(1))),
                                      "top5_agreement": float(np.mean((top5(y) == top5(fp32)).all(1))),
                                      "max_prob_diff": float(np.abs(y - fp32).max()),
                                      "report_holdout_top1_agreement": r.top1_agreement}
            common.log(f"{method}: {rows[f'int8 {method}']}")
    print("| model | top-1 (10k test) | top-1 agreement | top-5 sets identical | max abs prob diff |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        cells = [f"{100 * row['top1']:.2f}%"]
        cells += [f"{100 * row[k]:.2f}%" if k in row else "-" for k in ("top1_agreement", "top5_agreement")]
        cells.append(f"{row['max_prob_diff']:.4f}" if "max_prob_diff" in row else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return {"fashion": rows}


def speed(args) -> dict:
    import onnxruntime as ort
    import torch

    from pydarknet import open_engine, zoo_cfg
    from pydarknet.engines.network import load_network
    from pydarknet.onnx import export_onnx
    from pydarknet.pipeline import prepared_images
    from pydarknet.quantize import calibration_chunk, float_tail, quantize_onnx, session_options
    from pydarknet.tuning import tune_process
    from pydarknet.validate import Views

    tune_process()
    pics = photos()
    threads = common.int_list(args.threads)
    variants = args.variants.split(",")
    doc: dict = {"photos": len(pics), "threads": threads, "models": {}}

    def session(data, t, spin=True, level=None):
        o = session_options(t, spinning=spin)
        if level is not None:
            o.graph_optimization_level = level
        return ort.InferenceSession(data, o, providers=["CPUExecutionProvider"])

    with common.scratch_dir(args.keep) as tmp:
        for name in common.zoo_models(args.models):
            cfg = zoo_cfg(name)
            weights = os.path.join(tmp, f"{name}.weights")
            common.make_weights(cfg, weights, 0, pics[:4])
            net = load_network(cfg, weights)
            c, h, w = net.spec.input_shape
            path = os.path.join(tmp, f"{name}.onnx")
            export_onnx(net, path, batch="dynamic")
            with open(path, "rb") as f:
                fp32 = f.read()
            cal = np.stack([a[0] for _, _, a, e in prepared_images(pics, Views("valid", w, h, None)) if a is not None])
            x = np.ascontiguousarray(cal[:1])
            engine = open_engine(cfg, weights)
            ref = session(fp32, 2).run(None, {"input": cal})[0]
            row: dict = {}
            int8 = {}
            for v in variants:
                fmt, act, *more = v.split("-")
                t = time.perf_counter()
                int8[v] = quantize_onnx(fp32, cal, chunk=calibration_chunk(net.spec, 8), batch=8,
                                        activations="uint8" if act == "u8" else "int8",
                                        quant_format="qdq" if fmt == "qdq" else "qoperator",
                                        exclude=float_tail(fp32, net.spec), pre_process="nopre" not in more,
                                        progress=False)
                row[f"{v} quantize s"] = time.perf_counter() - t
                y = session(int8[v], 2).run(None, {"input": cal})[0]
                row[f"{v} agreement"] = float(np.mean(y.argmax(1) == ref.argmax(1)))
            for t in threads:
                common.wait_quiet(args.quiet_wait)
                torch.set_num_threads(t)
                row[f"torch {t}"] = timed(lambda: engine.infer(x))
                row[f"ort fp32 {t}"] = timed(lambda s=session(fp32, t): s.run(None, {"input": x}))
                for v in variants:
                    row[f"{v} {t}"] = timed(lambda s=session(int8[v], t): s.run(None, {"input": x}))
                if "qdq-u8" in variants:
                    row[f"qdq-u8 nospin {t}"] = timed(lambda s=session(int8["qdq-u8"], t, spin=False):
                                                      s.run(None, {"input": x}))
                    row[f"qdq-u8 extended {t}"] = timed(lambda s=session(
                        int8["qdq-u8"], t, level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED):
                        s.run(None, {"input": x}))
            doc["models"][name] = row
            common.log(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()))
            del net, engine
    cols = ["torch", "ort fp32"] + variants + (["qdq-u8 nospin", "qdq-u8 extended"] if "qdq-u8" in variants else [])
    print("| model | threads | " + " | ".join(f"{c} ms" for c in cols) + " | int8 vs torch | int8 vs ort fp32 |")
    print("|---|---:|" + "---:|" * (len(cols) + 2))
    for name, row in doc["models"].items():
        best = variants[0]
        for t in threads:
            ratios = [row[f"{ref} {t}"] / row[f"{best} {t}"] for ref in ("torch", "ort fp32")]
            print(f"| {name} | {t} | " + " | ".join(f"{row[f'{c} {t}']:.2f}" for c in cols)
                  + "".join(f" | {r:.2f}x" for r in ratios) + " |")
    print("\nagreement (top-1, int8 vs fp32, calibration photos): " + "; ".join(
        f"{n} " + ", ".join(f"{v} {row[f'{v} agreement']:.2f}" for v in variants) for n, row in doc["models"].items()))
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("accuracy", "speed"))
    ap.add_argument("--models", default="extraction,darknet19,resnet50,densenet201")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default="qdq-u8,qdq-s8,qop-u8")
    ap.add_argument("--methods", default="minmax,entropy,percentile")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    common.add_quiet_wait(ap)
    common.add_json(ap, "quantize")
    args = ap.parse_args()
    doc = {"machine": common.machine_info(), **(accuracy(args) if args.what == "accuracy" else speed(args))}
    path = args.json if args.json != os.path.join(common.RESULTS, "quantize.json") else os.path.join(
        common.RESULTS, f"quantize_{args.what}.json")
    common.write_json(doc, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
