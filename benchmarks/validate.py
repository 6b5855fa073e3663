"""Validation benchmark: ``pydarknet classifier valid`` vs ``darknet classifier valid``, same list, same weights.

Per model (``--models tiny,darknet19`` by default)::

    python benchmarks/validate.py                         # ~8 minutes on 2 cores
    python benchmarks/validate.py --models tiny --images 200 --batch 32 --workers 0,2

1. Images and weights as in ``benchmarks/predict.py`` (``common.make_images`` / ``make_weights``: PNG images
   made from darknet's sample photos and Fashion-MNIST; darknet's random init with the last layer scaled so
   the logits' std is about 3).
2. Labels: C darknet takes an image's class from the first ImageNet synset (of ``imagenet.labels.list``'s
   first ``classes``) that occurs in its path, so each image is linked (symlink) into a directory named by a
   synset. Random weights would score 0 % against any real labels, which would make the "same top-1/top-5"
   check vacuous, so the labels are chosen from pydarknet's own ranking (``run_validation`` in this process,
   the code path of ``classifier valid``): image i gets the class pydarknet ranks at position
   ``RANK_CYCLE[i % 4]`` = 1st, 2nd, 4th or 8th. The expected score is then top-1 25 %, top-5 75 %, and C
   darknet reproduces it only if it ranks every image's classes the same way.
3. C darknet runs ``classifier valid`` on the first ``--darknet-images`` images (default: about
   ``--darknet-seconds`` of its work, 10..100 images), under ``stdbuf -oL`` so its per-image lines arrive as
   they are printed: its steady rate is ``(n - 1) / (t[last line] - t[first line])`` (model loading
   excluded), its start-up is the time to the first line minus one image.
4. pydarknet runs ``classifier valid`` on the same list (default ``--batch``/``--workers``): every
   ``N: top 1: ..., top 5: ...`` line and the final one must equal darknet's; the per-image lines
   (``path, label, p0, p1``) must have the same path and label and probabilities within 1e-5.
5. pydarknet runs ``classifier valid --list`` on ``--images`` images (a superset) for each ``--batch`` x
   ``--workers`` setting; its rate is the one it prints (``N images/s``, from the start of the validation
   loop to its end, model loading excluded: comparable to darknet's steady rate); end-to-end is
   ``N / wall``.

Children get ``OMP_NUM_THREADS`` etc. = ``--threads`` (2); Debian's darknet is single-threaded anyway.
Before each measurement the script waits (``--quiet-wait``) for an idle machine and flags the ones that
started busy. Prints markdown tables and writes ``benchmarks/results/validate.json`` (git-ignored).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
import common as C  # noqa: E402

log = C.log

RANK_CYCLE = (0, 1, 3, 7)  # label = the class pydarknet ranks 1st, 2nd, 4th, 8th


def rankings(cfg: str, weights: str, paths: list[str], threads: int) -> list[list[int]]:
    """pydarknet's top-8 classes per image, through ``classifier valid``'s own code (mode 'valid')."""
    import torch

    from pydarknet import open_engine
    from pydarknet.validate import run_validation

    torch.set_num_threads(threads)
    net = open_engine(cfg, weights)
    out: list[list[int]] = []
    run_validation(net, paths, mode="valid", label_of=lambda p: -1, classes=net.spec.outputs,
                   k=max(RANK_CYCLE) + 1, batch=32, workers=0, on_image=lambda o, m: out.append(list(o.ranked)))
    return out


def labelled_tree(root: str, pool: list[str], ranked: list[list[int]], labels: list[str]) -> list[str]:
    """Symlink each image under root/<synset>/; the first len(ranked) get labels from the ranking."""
    paths = []
    for i, src in enumerate(pool):
        if i < len(ranked):
            cls = ranked[i][RANK_CYCLE[i % len(RANK_CYCLE)]]
        else:
            cls = (7 * i) % 1000
        d = os.path.join(root, labels[cls])
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, os.path.basename(src))
        if not os.path.lexists(dst):
            os.symlink(src, dst)
        paths.append(dst)
    return paths


def split_valid_output(stdout: str) -> tuple[list[str], list[str]]:
    """(per-image lines 'path, label, p0, p1, ', running lines 'N: top 1: x, top K: y')."""
    per, running = [], []
    for line in stdout.splitlines():
        if C.RUNNING_LINE.match(line.strip()):
            running.append(line.strip())
        elif line.count(", ") >= 3:
            per.append(line)
    return per, running


def compare_per_image(a: list[str], b: list[str], tol: float = 1e-5) -> dict:
    same_key, max_diff = 0, 0.0
    for x, y in zip(a, b):
        xs = [s.strip() for s in x.rstrip().rstrip(",").rsplit(", ", 3)]
        ys = [s.strip() for s in y.rstrip().rstrip(",").rsplit(", ", 3)]
        if xs[:2] == ys[:2]:
            same_key += 1
        try:
            max_diff = max(max_diff, *(abs(float(p) - float(q)) for p, q in zip(xs[2:], ys[2:])))
        except ValueError:
            max_diff = float("inf")
    return {"n": min(len(a), len(b)), "same_path_and_label": same_key, "max_prob_diff": max_diff,
            "ok": len(a) == len(b) and same_key == len(a) and max_diff <= tol}


def write_data(path: str, valid: str) -> None:
    with open(path, "w") as f:
        f.write(f"classes=1000\nlabels={C.LABELS}\nnames={C.SHORTNAMES}\nvalid={valid}\ntop=5\n")


def printed_rate(stderr: str) -> float | None:
    m = re.findall(r"([0-9.]+) images/s", stderr)
    return float(m[-1]) if m else None


def bench_model(name, pool, args, env, quiet, tmp) -> dict:
    import pydarknet

    cfg = pydarknet.zoo_cfg(name)
    weights = os.path.join(tmp, f"{name}.weights")
    k = C.make_weights(cfg, weights, args.seed, pool[:4])
    py = C.pydarknet_exe()
    dk = C.darknet_exe()
    res: dict = {"model": name, "logit_scale": k}

    # how many images C darknet gets
    n_dk = args.darknet_images
    if not n_dk:
        est = None
        if dk:
            r = C.run_proc([dk, "classify", cfg, weights, pool[0]], env=env, cwd=tmp)
            est = (C.median(C.predicted_in(r["stderr"])) or 0.2) + 0.03
        n_dk = int(max(10, min(100, args.darknet_seconds / est))) if est else 50
    n_dk = min(n_dk, len(pool))
    n_ours = min(max(args.images, n_dk), len(pool))
    log(f"{name}: labelling {n_dk} images from pydarknet's ranking")
    ranked = rankings(cfg, weights, pool[:n_dk], args.threads)
    with open(C.LABELS) as f:
        labels = [ln.rstrip("\n") for ln in f][:1000]
    paths = labelled_tree(os.path.join(tmp, f"labelled_{name}"), pool[:n_ours], ranked, labels)
    lists = {}
    for key, sel in (("darknet", paths[:n_dk]), ("ours", paths), ("one", paths[:1])):
        lists[key] = os.path.join(tmp, f"{name}_{key}.list")
        with open(lists[key], "w") as f:
            f.write("\n".join(sel) + "\n")
    data = os.path.join(tmp, f"{name}.data")
    write_data(data, lists["darknet"])
    res.update(darknet_images=n_dk, pydarknet_images=n_ours)

    # C darknet
    per_dk = running_dk = None
    if dk:
        cmd = C.line_buffered() + [dk, "classifier", "valid", data, cfg, weights]
        write_data(os.path.join(tmp, f"{name}_one.data"), lists["one"])
        one = cmd[:-3] + [os.path.join(tmp, f"{name}_one.data")] + cmd[-2:]
        C.run_proc(one, env=env, cwd=tmp)  # warm-up
        one = C.run_proc(one, env=env, cwd=tmp)  # CPU time of one image
        quiet(f"darknet valid {name}")
        r = C.run_proc(cmd, env=env, marker=b": top 1: ", cwd=tmp)
        marks = r["marks"]
        per_dk, running_dk = split_valid_output(r["stdout"])
        timed = len(marks) == n_dk and n_dk > 1 and marks[-1] > marks[0]
        steady = (n_dk - 1) / (marks[-1] - marks[0]) if timed else n_dk / r["wall"]
        res["darknet"] = {"images": n_dk, "wall_s": r["wall"], "steady_img_s": steady,
                          "steady_from_line_times": timed,
                          "startup_s": max(0.0, marks[0] - 1 / steady) if marks else None,
                          "end_to_end_img_s": n_dk / r["wall"], "final_line": running_dk[-1] if running_dk else None,
                          "cpu_per_image_s": (r["cpu"] - one["cpu"]) / max(n_dk - 1, 1)}
        log(f"darknet valid {name}: {n_dk} images in {r['wall']:.1f} s, {steady:.2f} img/s steady; "
            f"{res['darknet']['final_line']}")

    # pydarknet on the same list: the same lines?
    base = py + ["classifier", "valid", data, cfg, weights, "-q"]
    C.run_proc(base + ["--list", lists["one"]], env=env, cwd=tmp)  # warm-up (page and bytecode caches)
    one = C.run_proc(base + ["--list", lists["one"]], env=env, cwd=tmp)  # CPU time of one image
    quiet(f"pydarknet valid {name} (same list)")
    r = C.run_proc(base, env=env, cwd=tmp)
    per_py, running_py = split_valid_output(r["stdout"])
    same = {"images": n_dk, "wall_s": r["wall"], "printed_img_s": printed_rate(r["stderr"]),
            "final_line": running_py[-1] if running_py else None}
    if running_dk is not None:
        same["final_line_identical"] = same["final_line"] == res["darknet"]["final_line"]
        same["running_lines_identical"] = sum(a == b for a, b in zip(running_py, running_dk))
        same["running_lines"] = len(running_dk)
        same["per_image"] = compare_per_image(per_py, per_dk)
    res["same_list"] = same
    log(f"pydarknet valid {name} (same {n_dk} images): {same['final_line']}"
        + (f"; identical to darknet's: {same['final_line_identical']}" if "final_line_identical" in same else ""))

    # pydarknet throughput on the bigger list, per setting
    res["settings"] = []
    dk_rate = res.get("darknet", {}).get("steady_img_s")
    for workers in args.workers:
        for batch in args.batch:
            cmd = base + ["--list", lists["ours"], "--batch", str(batch), "--workers", str(workers)]
            quiet(f"pydarknet valid {name} b={batch} w={workers}")
            runs = sorted((C.run_proc(cmd, env=env, cwd=tmp) for _ in range(max(1, args.repeat))),
                          key=lambda x: printed_rate(x["stderr"]) or 0)
            r = runs[len(runs) // 2]  # the median run by printed rate
            _, running = split_valid_output(r["stdout"])
            rate = printed_rate(r["stderr"])
            row = {"batch": batch, "workers": workers, "images": n_ours, "wall_s": r["wall"],
                   "printed_img_s": rate, "end_to_end_img_s": n_ours / r["wall"],
                   "runs_printed_img_s": [printed_rate(x["stderr"]) for x in runs],
                   "cpu_per_image_s": (r["cpu"] - one["cpu"]) / max(n_ours - 1, 1),
                   "startup_s": r["wall"] - n_ours / rate if rate else None,
                   "final_line": running[-1] if running else None,
                   "vs_darknet": rate / dk_rate if rate and dk_rate else None,
                   "end_to_end_vs_darknet_end_to_end":
                       (n_ours / r["wall"]) / res["darknet"]["end_to_end_img_s"] if dk_rate else None}
            res["settings"].append(row)
            log(f"pydarknet valid {name} b={batch} w={workers}: {n_ours} images in {r['wall']:.1f} s, "
                f"{rate} img/s" + (f" = {row['vs_darknet']:.1f}x darknet" if row["vs_darknet"] else ""))
    return res


def report(doc: dict) -> str:
    L = ["### `classifier valid`: same list, same weights (top-1/top-5 lines vs C darknet)", "",
         "| model | images | darknet final line | pydarknet final line | identical | running lines identical "
         "| per-image lines (path, label; max prob diff) |",
         "|---|---:|---|---|:---:|---:|---|"]
    for m in doc["models"]:
        s, d = m["same_list"], m.get("darknet") or {}
        pi = s.get("per_image")
        L.append(f"| {m['model']} | {s['images']} | `{d.get('final_line', '-')}` | `{s['final_line']}` | "
                 f"{'**yes**' if s.get('final_line_identical') else ('-' if not d else '**NO**')} | "
                 f"{s.get('running_lines_identical', '-')}/{s.get('running_lines', '-')} | "
                 + (f"{pi['same_path_and_label']}/{pi['n']}; {pi['max_prob_diff']:.1e}" if pi else "-") + " |")
    L += ["", f"### `classifier valid` throughput ({doc['args']['threads']} threads; images/s as pydarknet prints "
          "it, model loading excluded; darknet: steady rate from its line times)", "",
          "| model | program | images | batch | workers | wall s | start-up s | images/s | end-to-end images/s "
          "| vs darknet | CPU ms / image |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in doc["models"]:
        d = m.get("darknet")
        if d:
            L.append(f"| {m['model']} | darknet | {d['images']} | - | - | {d['wall_s']:.1f} | "
                     f"{d['startup_s']:.2f} | {d['steady_img_s']:.2f} | {d['end_to_end_img_s']:.2f} | 1.0x | "
                     f"{1e3 * d['cpu_per_image_s']:.1f} |")
        s = m["same_list"]
        L.append(f"| {m['model']} | pydarknet (same list, defaults) | {s['images']} | 32 | default | "
                 f"{s['wall_s']:.1f} | - | {s['printed_img_s'] or 0:.1f} | {s['images'] / s['wall_s']:.1f} | "
                 + (f"{s['printed_img_s'] / d['steady_img_s']:.1f}x" if d and s["printed_img_s"] else "-") + " | - |")
        for r in m["settings"]:
            L.append(f"| {m['model']} | pydarknet | {r['images']} | {r['batch']} | {r['workers']} | {r['wall_s']:.1f} "
                     f"| {r['startup_s'] or 0:.2f} | {r['printed_img_s'] or 0:.1f} | {r['end_to_end_img_s']:.1f} | "
                     + ("-" if r["vs_darknet"] is None else f"**{r['vs_darknet']:.1f}x**")
                     + f" | {1e3 * r['cpu_per_image_s']:.1f} |")
    L.append("")
    L += C.report_tail(doc)
    return "\n".join(L)


def goals(doc: dict) -> list[str]:
    out = []
    for m in doc["models"]:
        rs = [r for r in m["settings"] if r["vs_darknet"]]
        if rs:
            best = max(rs, key=lambda r: r["vs_darknet"])
            out.append(f"valid {m['model']} >= 8x darknet: best {best['vs_darknet']:.1f}x (batch {best['batch']}, "
                       f"workers {best['workers']}) -> {'met' if best['vs_darknet'] >= 8 else 'NOT met'}")
        if "final_line_identical" in m["same_list"]:
            out.append(f"valid {m['model']} final top-1/top-5 line identical to darknet's: "
                       f"{'yes' if m['same_list']['final_line_identical'] else 'NO'}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    C.add_process_options(ap, "validate")
    ap.add_argument("--images", type=int, default=300, help="images in pydarknet's throughput list (default 300)")
    ap.add_argument("--darknet-images", type=int, default=0,
                    help="images for C darknet (default: about --darknet-seconds of its work, 10..100)")
    ap.add_argument("--darknet-seconds", type=float, default=45.0,
                    help="seconds of C darknet work aimed at per model (default 45)")
    ap.add_argument("--batch", default="16,32", help="pydarknet --batch values (default 16,32)")
    ap.add_argument("--workers", default="0,1,2", help="pydarknet --workers values (default 0,1,2)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per pydarknet setting (the median run by images/s is reported; default 1)")
    args = ap.parse_args(argv)
    args.batch = C.int_list(args.batch)
    args.workers = C.int_list(args.workers)
    models = C.zoo_models(args.models)

    import pydarknet

    if C.darknet_exe() is None:
        log("note: no darknet command on PATH: the C darknet rows and the line check are skipped")
    quiet = C.Quiet(args.quiet_wait)
    with C.scratch_dir(args.keep) as tmp:
        env = C.child_env(args.threads, os.path.join(tmp, "pycache"))
        n_pool = max(args.images, args.darknet_images or 100)
        log(f"making {n_pool} PNG images in {tmp}")
        pool = C.make_images(os.path.join(tmp, "images"), n_pool)
        doc: dict = {"args": vars(args), "machine": C.machine_info(),
                     "versions": {"pydarknet": pydarknet.__version__, "numpy": np.__version__},
                     "darknet": C.darknet_exe(), "loadavg_start": C.loadavg(), "models": []}
        for name in models:
            doc["models"].append(bench_model(name, pool, args, env, quiet, tmp))
        C.finish(doc, quiet, report, goals, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
