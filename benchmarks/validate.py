"""Validation benchmark: ``pydarknet classifier valid`` vs ``darknet classifier valid``, same list, same weights.

    python benchmarks/validate.py                         # ~12 minutes on 2 cores
    python benchmarks/validate.py --workloads photos,fashion  # the issue's two whole-process lists, ~3 minutes
    python benchmarks/validate.py --workloads pngs --models tiny --images 200 --batch 32 --workers 0,2

Per model (``--models tiny,darknet19`` by default), the ``pngs`` workload:

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

Whole-process workloads (``--workloads``; default ``pngs,photos,fashion``; ``pngs`` is steps 1-5 above):

* ``photos``: darknet's 7 sample photos (``/usr/share/darknet/data/*.jpg``, 352x448 to 1352x900 JPEGs) x 100,
  each copy a symlink under an ImageNet synset directory, with ``--photos-model`` (tiny) and weights made as in
  step 1; labels from pydarknet's ranking of each photo as in step 2 (copy i of a photo gets the class ranked
  ``RANK_CYCLE[i % 4]``: top-1 25 %, top-5 75 %).
* ``fashion``: the first ``--fashion-images`` (1000) Fashion-MNIST test images as 28x28 PNGs in darknet's list
  layout (``scripts/fashion_mnist.py write``: the label in the file name) with the bundled ``fashion`` model
  (trained weights, real labels).

Each is run whole-process by both programs on the whole list, ``classifier valid DATA CFG WEIGHTS``:
pydarknet with its defaults (and each ``--whole-workers`` value), ``--whole-repeat`` runs each (median wall
time); darknet once (single-threaded, steadier; ``--whole-darknet-repeat``). The ratio is darknet's wall time
over pydarknet's (start-up, model loading and all). Every running line, the final line and the per-image lines
(path and label; probabilities within 1e-5) must equal darknet's.

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


def photo_list(tmp: str, copies: int) -> list[str]:
    """darknet's sample photos x ``copies``, as symlinks (synset directories come later)."""
    import glob

    photos = sorted(glob.glob(os.path.join(C.PHOTOS, "*.jpg")))
    if not photos:
        raise SystemExit(f"no sample photos in {C.PHOTOS} (Debian's darknet package)")
    return [photos[i % len(photos)] for i in range(copies * len(photos))]


def compare_outputs(ours: dict, theirs: dict) -> dict:
    """Running lines, final line and per-image lines of two ``classifier valid`` outputs."""
    per_py, running_py = split_valid_output(ours["stdout"])
    per_dk, running_dk = split_valid_output(theirs["stdout"])
    return {"final_line": running_py[-1] if running_py else None,
            "darknet_final_line": running_dk[-1] if running_dk else None,
            "final_line_identical": bool(running_py) and running_py[-1:] == running_dk[-1:],
            "running_lines_identical": sum(a == b for a, b in zip(running_py, running_dk)),
            "running_lines": len(running_dk), "per_image": compare_per_image(per_py, per_dk)}


def whole_process(label: str, data: str, cfg: str, weights: str, n: int, args, env, quiet, tmp) -> dict:
    """Both programs' ``classifier valid`` on the whole list, whole process: wall times, ratio, same lines."""
    py = C.pydarknet_exe() + ["classifier", "valid", data, cfg, weights, "-q"]
    dk = C.darknet_exe()
    res: dict = {"workload": label, "images": n, "cfg": cfg, "pydarknet": []}
    C.run_proc(py, env=env, cwd=tmp)  # warm-up: page cache, bytecode cache
    for workers in [None] + args.whole_workers:
        cmd = py + ([] if workers is None else ["--workers", str(workers)])
        runs = []
        for i in range(max(1, args.whole_repeat)):
            quiet(f"pydarknet valid {label} workers={workers} run {i + 1}")
            runs.append(C.run_proc(cmd, env=env, cwd=tmp))
        walls = [r["wall"] for r in runs]
        med = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
        res["pydarknet"].append({"workers": "default" if workers is None else workers, "wall_s": C.median(walls),
                                 "walls_s": walls, "cpu_s": med["cpu"], "printed_img_s": printed_rate(med["stderr"]),
                                 "run": med})
        log(f"pydarknet valid {label} (workers {workers or 'default'}): {C.median(walls):.2f} s "
            f"(runs {', '.join(f'{w:.2f}' for w in walls)})")
    if dk:
        walls, last = [], None
        for i in range(max(1, args.whole_darknet_repeat)):
            quiet(f"darknet valid {label} run {i + 1}")
            last = C.run_proc([dk, "classifier", "valid", data, cfg, weights], env=env, cwd=tmp)
            walls.append(last["wall"])
        res["darknet"] = {"wall_s": C.median(walls), "walls_s": walls, "cpu_s": last["cpu"]}
        log(f"darknet valid {label}: {C.median(walls):.2f} s")
        for row in res["pydarknet"]:
            row["vs_darknet"] = res["darknet"]["wall_s"] / row["wall_s"]
            row.update(compare_outputs(row["run"], last))
            log(f"  {label} workers {row['workers']}: {row['vs_darknet']:.1f}x darknet; final line "
                f"{row['final_line']!r}, identical: {row['final_line_identical']}")
    for row in res["pydarknet"]:
        del row["run"]
    return res


def bench_photos(args, env, quiet, tmp) -> dict:
    import pydarknet

    name = args.photos_model
    cfg = str(pydarknet.zoo_cfg(name))
    pool = photo_list(tmp, args.photo_copies)
    weights = os.path.join(tmp, f"photos_{name}.weights")
    C.make_weights(cfg, weights, args.seed, sorted(set(pool))[:4])
    unique = sorted(set(pool))
    ranked_one = dict(zip(unique, rankings(cfg, weights, unique, args.threads)))
    ranked = [ranked_one[p] for p in pool]
    with open(C.LABELS) as f:
        labels = [ln.rstrip("\n") for ln in f][:1000]
    root = os.path.join(tmp, f"photos_{name}")
    paths = []
    for i, src in enumerate(pool):  # copy i of a photo: the class ranked RANK_CYCLE[(i // 7) % 4]
        cls = ranked[i][RANK_CYCLE[(i // len(unique)) % len(RANK_CYCLE)]]
        d = os.path.join(root, labels[cls])
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, f"{i:04d}_{os.path.basename(src)}")
        if not os.path.lexists(dst):
            os.symlink(src, dst)
        paths.append(dst)
    lst = os.path.join(tmp, "photos.list")
    with open(lst, "w") as f:
        f.write("\n".join(paths) + "\n")
    data = os.path.join(tmp, "photos.data")
    write_data(data, lst)
    return whole_process(f"{len(paths)} photos ({name})", data, cfg, weights, len(paths), args, env, quiet, tmp)


def bench_fashion(args, env, quiet, tmp) -> dict:
    import importlib.util
    from pathlib import Path

    import pydarknet

    spec = importlib.util.spec_from_file_location("fashion_mnist", os.path.join(C.ROOT, "scripts", "fashion_mnist.py"))
    fm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fm)
    if not fm.SOURCE.is_dir():
        log(f"{fm.SOURCE} not found: the fashion workload is skipped")
        return {}
    out = Path(tmp) / "fashion"
    data = fm.write(out, limit=args.fashion_images)
    cfg = str(pydarknet.zoo_cfg("fashion"))
    weights = os.path.join(os.path.dirname(pydarknet.__file__), "models", "fashion.weights")  # bundled
    n = sum(1 for _ in open(out / "test.list"))
    return whole_process(f"{n} Fashion-MNIST PNGs (fashion)", str(data), cfg, weights, n, args, env, quiet, tmp)


def report_whole(doc: dict) -> list[str]:
    rows = [w for w in doc.get("whole", []) if w]
    if not rows:
        return []
    L = ["### `classifier valid`, whole process, the whole list (wall time; start-up and loading included)", "",
         "| workload | images | pydarknet workers | pydarknet s (runs) | darknet s | darknet / pydarknet "
         "| final line | identical to darknet's | running lines | per-image lines (path, label; max prob diff) |",
         "|---|---:|---|---:|---:|---:|---|:---:|---:|---|"]
    for w in rows:
        d = w.get("darknet")
        for r in w["pydarknet"]:
            pi = r.get("per_image")
            L.append(f"| {w['workload']} | {w['images']} | {r['workers']} | {r['wall_s']:.2f} "
                     f"({', '.join(f'{x:.2f}' for x in r['walls_s'])}) | {d['wall_s']:.2f} | "
                     f"**{r['vs_darknet']:.1f}x** | `{r.get('final_line')}` | "
                     f"{'**yes**' if r.get('final_line_identical') else '**NO**'} | "
                     f"{r.get('running_lines_identical')}/{r.get('running_lines')} | "
                     + (f"{pi['same_path_and_label']}/{pi['n']}; {pi['max_prob_diff']:.1e}" if pi else "-") + " |"
                     if d else f"| {w['workload']} | {w['images']} | {r['workers']} | {r['wall_s']:.2f} | - | - "
                     "| - | - | - | - |")
    return L + [""]


def report(doc: dict) -> str:
    L = report_whole(doc)
    if not doc["models"]:
        return "\n".join(L + C.report_tail(doc))
    L += ["### `classifier valid`: same list, same weights (top-1/top-5 lines vs C darknet)", "",
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


#: the issue's goals for the whole-process workloads: darknet's wall time over pydarknet's at least this
WHOLE_GOALS = {"photos": 10.0, "fashion": 1.0}


def goals(doc: dict) -> list[str]:
    out = []
    for w in doc.get("whole", []):
        if not w or "darknet" not in w:
            continue
        best = max(w["pydarknet"], key=lambda r: r["vs_darknet"])
        default = w["pydarknet"][0]
        goal = WHOLE_GOALS["fashion" if "Fashion" in w["workload"] else "photos"]
        out.append(f"valid {w['workload']}, whole process, >= {goal:g}x darknet: defaults {default['vs_darknet']:.2f}x"
                   + (f", best {best['vs_darknet']:.2f}x (workers {best['workers']})" if best is not default else "")
                   + f" -> {'met' if default['vs_darknet'] >= goal else 'NOT met'}; final line identical: "
                   f"{'yes' if all(r.get('final_line_identical') for r in w['pydarknet']) else 'NO'}")
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
    ap.add_argument("--workloads", default="pngs,photos,fashion",
                    help="pngs (per --models: same list, then throughput), photos (the 7 sample photos x "
                         "--photo-copies, whole process), fashion (--fashion-images Fashion-MNIST PNGs, whole "
                         "process); default all three")
    ap.add_argument("--photos-model", default="tiny", help="zoo model of the photos workload (default tiny)")
    ap.add_argument("--photo-copies", type=int, default=100, help="copies of each sample photo (default 100)")
    ap.add_argument("--fashion-images", type=int, default=1000, help="Fashion-MNIST test images (default 1000)")
    ap.add_argument("--whole-workers", default="",
                    help="pydarknet --workers values run besides its defaults in the whole-process workloads")
    ap.add_argument("--whole-repeat", type=int, default=3, help="pydarknet runs per whole-process setting (median)")
    ap.add_argument("--whole-darknet-repeat", type=int, default=1, help="darknet runs per whole-process workload")
    args = ap.parse_args(argv)
    args.batch = C.int_list(args.batch)
    args.workers = C.int_list(args.workers)
    args.whole_workers = C.int_list(args.whole_workers) if args.whole_workers else []
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(workloads) - {"pngs", "photos", "fashion"}
    if unknown:
        ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    models = C.zoo_models(args.models) if "pngs" in workloads else []

    import pydarknet

    if C.darknet_exe() is None:
        log("note: no darknet command on PATH: the C darknet rows and the line check are skipped")
    quiet = C.Quiet(args.quiet_wait)
    with C.scratch_dir(args.keep) as tmp:
        env = C.child_env(args.threads, os.path.join(tmp, "pycache"))
        doc: dict = {"args": vars(args), "machine": C.machine_info(),
                     "versions": {"pydarknet": pydarknet.__version__, "numpy": np.__version__},
                     "darknet": C.darknet_exe(), "loadavg_start": C.loadavg(), "models": [], "whole": []}
        if "photos" in workloads:
            doc["whole"].append(bench_photos(args, env, quiet, tmp))
        if "fashion" in workloads:
            doc["whole"].append(bench_fashion(args, env, quiet, tmp))
        if models:
            n_pool = max(args.images, args.darknet_images or 100)
            log(f"making {n_pool} PNG images in {tmp}")
            pool = C.make_images(os.path.join(tmp, "images"), n_pool)
            for name in models:
                doc["models"].append(bench_model(name, pool, args, env, quiet, tmp))
        C.finish(doc, quiet, report, goals, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
