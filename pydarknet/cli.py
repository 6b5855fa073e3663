"""The ``pydarknet`` command: darknet's verbs and argument order; thin handlers over the library.

Every error is one line on stderr, ``pydarknet: error: FILE[:LINE | layer N]: problem``, exit status 2,
nothing on stdout and no traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .errors import DarknetError

EXIT_ERROR = 2


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"pydarknet: warning: {message}", file=sys.stderr)


def cmd_ops(args: argparse.Namespace) -> int:
    """Print the layer table as darknet prints it on load, then totals."""
    from .specs import load_specs

    spec = load_specs(_cfg_path(args.cfg), width=args.width, height=args.height)
    sys.stdout.write(spec.layer_table())
    print(spec.summary_line())
    return 0


def _cfg_path(name: str) -> str:
    """A cfg path, or the name of one of the project's zoo cfgs."""
    import os

    from . import zoo_cfg

    if os.path.exists(name) or name.endswith(".cfg") or os.sep in name:
        return name
    return zoo_cfg(name)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pydarknet",
                                description="Darknet image classification on PyTorch, with darknet's numbers.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ops = sub.add_parser("ops", help="print a cfg's layer table, BFLOPs, parameters and weights size")
    ops.add_argument("cfg", help="a .cfg file or a zoo model name (e.g. tiny)")
    ops.add_argument("--width", type=int, help="override [net] width")
    ops.add_argument("--height", type=int, help="override [net] height")
    ops.set_defaults(func=cmd_ops)
    return p


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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


if __name__ == "__main__":
    sys.exit(main())
