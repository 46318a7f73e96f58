"""``cnnlab lab``: run one of the experiments that test the notes' claims, or list them."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cnnlab.cli._args import check_out_dir
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab lab list
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
        "the result in one sentence. Experiments: " + ", ".join(list_experiments()) + ".",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", metavar="NAME", choices=["list", *list_experiments()],
                        help="an experiment name, or `list` to show them with their claims")
    parser.add_argument("--out", default=None, help="run directory to write (required to run)")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="seconds: tiny subsets (smoke test)")
    scale.add_argument("--full", action="store_true", help="GPU scale: whole data sets, long runs")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed: same seed, same numbers (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set epochs=2 (lists: --set depths=20,56)")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing result in --out")
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.lab import RESULTS_FILE, get_experiment, list_experiments, run_experiment

    if args.experiment == "list":
        for name in list_experiments():
            experiment = get_experiment(name)
            print(f"{name:<13} {experiment.claim}")
        return 0
    if not args.out:
        raise ConfigError(f"say where to write the results: cnnlab lab {args.experiment} --out DIR")
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like key=value (e.g. --set epochs=2)")
        overrides[key.strip()] = value.strip()
    out = Path(args.out)
    check_out_dir(out)
    if (out / RESULTS_FILE).exists():
        if not args.overwrite:
            raise ConfigError(f"{out} already holds a lab result; choose another --out or add "
                              f"--overwrite")
        shutil.rmtree(out)
    scale = "quick" if args.quick else "full" if args.full else "default"
    record = run_experiment(get_experiment(args.experiment), out, scale, args.seed, overrides,
                            args.data_dir, args.device)
    print(f"results, plots and runs in {out} ({record['elapsed_s']:.0f}s); "
          f"view them with: cnnlab report {out}")
    print(record["sentence"])
    return 0
