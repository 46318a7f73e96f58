"""``cnnlab models``: the zoo as a table (name, paper, year, parameters)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models", help="list the registered models",
        description="List the registered models with paper, year and parameter count.",
        epilog="Example: cnnlab models 'resnet*'",
    )
    parser.add_argument("pattern", nargs="?", help="glob filter on the name, e.g. 'vgg*'")
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.models import list_models, model_info

    names = list_models(args.pattern)
    rows = [("name", "family", "year", "params", "input", "paper")]
    for name in names:
        info = model_info(name)
        params = f"{info.params:,}" if info.params is not None else "-"
        rows.append((name, info.family, str(info.year), params,
                     "x".join(map(str, info.input_size)), info.paper))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells + [row[-1]]))
    print(f"{len(names)} models")
    return 0
