"""``cnnlab`` — one entry point, one module per subcommand.

Each module in ``COMMANDS`` defines ``add_parser(subparsers)`` (which registers the subcommand,
with a help text that shows an example) and ``run(args) -> int``. The CLI holds no logic: it
parses, builds a config, calls the library, prints.

:func:`main` is the one error boundary: any :class:`~cnnlab.errors.CnnlabError` becomes one line on
stderr and exit status 2; so do argparse's usage errors, a ``--device`` this machine does not have
(checked before the subcommand runs), and the file system's refusals (a file where a folder should
be, a read-only folder, no permission, a full disk: :func:`file_system_error`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError

# Subcommand modules, in the order ``cnnlab --help`` lists them.
COMMANDS = ["models", "summary", "train", "evaluate", "transfer", "predict", "ensemble",
            "export", "report", "lab"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line and status 2, never a traceback
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnnlab",
        description="The classic convolutional networks made real: build, inspect, train, "
        "transfer and evaluate them.",
        epilog="Example: cnnlab train lenet5 --data fashion-mnist --epochs 8 --out runs/lenet",
    )
    from cnnlab import __version__

    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"cnnlab.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


# What to do about each refusal of the file system (OSError.errno -> the problem and its fix).
_FS_ERRORS = {
    errno.EEXIST: "a file of that name is in the way, not a folder; choose another path",
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; give a file name inside it",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you can write, or change its permissions",
    errno.EPERM: "operation not permitted; choose a folder you can write",
    errno.ENOSPC: "no space left on the device; free some space (or choose another disk) and run "
                  "again",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run again",
    errno.ENOENT: "no such file or folder (missing, or a folder that cannot be created there); "
                  "check the path",
}


def file_system_error(err: OSError) -> str | None:
    """One line for an ``OSError`` of the file system (the path, the problem, the fix), or None
    for any other error (which stays a bug to see)."""
    problem = _FS_ERRORS.get(err.errno)
    if problem is None:
        return None
    name = err.filename
    if name is not None:
        path = Path(os.fsdecode(name))
        if path.name.startswith(".") and path.name.endswith(".tmp"):  # an atomic write's temp file
            path = path.parent
        return f"cannot use {str(path)!r}: {problem}"
    return f"cannot write a file: {problem}"


def check_devices(args: argparse.Namespace) -> None:
    """Every ``--device`` given resolves on this machine (one resolver,
    :func:`cnnlab.device.resolve_device`), before a subcommand loads data or writes a file."""
    from cnnlab.device import resolve_device

    for dest in ("device", "train__device"):
        value = getattr(args, dest, None)
        if value is not None and value != "meta":  # summary's meta: a trace, nothing runs
            resolve_device(value)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        check_devices(args)
        return int(args._run(args) or 0)
    except CnnlabError as err:
        print(f"cnnlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system refused a write: --out is a file, read-only, full
        line = file_system_error(err)
        if line is None:
            raise
        print(f"cnnlab {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`cnnlab models | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
