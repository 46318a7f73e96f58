"""``cnnlab`` — one entry point, one module per subcommand.

Each module in ``COMMANDS`` defines ``add_parser(subparsers)`` (which registers the subcommand,
with a help text that shows an example) and ``run(args) -> int``. The CLI holds no logic: it
parses, builds a config, calls the library, prints. Any :class:`~cnnlab.errors.CnnlabError`
becomes one line on stderr and exit status 2; so do argparse's usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CnnlabError as err:
        print(f"cnnlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`cnnlab models | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
