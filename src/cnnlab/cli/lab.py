"""``cnnlab lab``: run one of the experiments that test the notes' claims, or list them."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cnnlab.cli._args import (
    NO_PROGRESS_HELP,
    OVERWRITE_HELP,
    HelpFormatter,
    check_out_dir,
    shared_help,
)
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab lab list
  cnnlab lab equivariance --show                    # its settings (--set keys) and defaults
  cnnlab lab equivariance --out lab/equivariance
  cnnlab lab depth --quick --out /tmp/depth         # seconds, tiny subsets: a smoke test
  cnnlab lab depth --full --device cuda --out lab/depth-full
  cnnlab lab data-scaling --set sizes=100,1000,10000 --seed 1 --out lab/scaling
  cnnlab report lab/equivariance                    # then look at it"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cnnlab.lab import list_experiments

    parser = subparsers.add_parser(
        "lab", help="run an experiment that tests a claim of the notes",
        description="Run one experiment on Fashion-MNIST (and the 8x8 digits where a second "
        "domain is needed); write results.json, PNG plots and the trained runs to --out, and print "
        "the result in one sentence. Experiments: " + ", ".join(list_experiments()) + ". "
        "`cnnlab lab NAME --show` prints an experiment's settings: the keys --set takes, with "
        "their values at the chosen scale.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("experiment", metavar="NAME", choices=["list", *list_experiments()],
                        help="an experiment name, or `list` to show them with their claims")
    parser.add_argument("--out", default=None, help="run directory to write (required to run)")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="seconds: tiny subsets (smoke test)")
    scale.add_argument("--full", action="store_true", help="GPU scale: whole data sets, long runs")
    parser.add_argument("--seed", type=int, default=0, help=shared_help("--seed", "0"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set epochs=2 (lists: --set depths=20,56)")
    parser.add_argument("--data-dir", default=None, help=shared_help("--data-dir", "none"))
    parser.add_argument("--device", default="auto", help=shared_help("--device", "auto"))
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    parser.add_argument("--show", action="store_true",
                        help="print the experiment's settings (its --set keys) at the chosen scale, "
                        "with --set applied, and exit")
    return parser


def _overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like key=value (e.g. --set epochs=2)")
        overrides[key.strip()] = value.strip()
    return overrides


def run(args: argparse.Namespace) -> int:
    from cnnlab.lab import RESULTS_FILE, get_experiment, list_experiments, run_experiment

    if args.experiment == "list":
        for name in list_experiments():
            experiment = get_experiment(name)
            print(f"{name:<13} {experiment.claim}")
        return 0
    overrides = _overrides(args.overrides)
    experiment = get_experiment(args.experiment)
    scale = "quick" if args.quick else "full" if args.full else "default"
    if args.show:
        import yaml

        settings = experiment.resolve(scale, overrides)
        print(f"# cnnlab lab {args.experiment}, {scale} scale: change any key with --set KEY=VALUE "
              f"(lists: a,b,c)")
        print(yaml.safe_dump(settings, sort_keys=False, default_flow_style=None).rstrip())
        return 0
    if not args.out:
        raise ConfigError(f"say where to write the results: cnnlab lab {args.experiment} --out DIR")
    out = Path(args.out)
    check_out_dir(out)
    if (out / RESULTS_FILE).exists():
        if not args.overwrite:
            raise ConfigError(f"{out} already holds a lab result; choose another --out or add "
                              f"--overwrite")
        shutil.rmtree(out)
    record = run_experiment(experiment, out, scale, args.seed, overrides,
                            args.data_dir, args.device, progress=not args.no_progress)
    print(f"results, plots and runs in {out} ({record['elapsed_s']:.0f}s); "
          f"view them with: cnnlab report {out}")
    print(record["sentence"])
    return 0
