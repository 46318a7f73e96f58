"""``cnnlab report``: one self-contained HTML page of a training run or a lab experiment."""

from __future__ import annotations

import argparse

from cnnlab.cli._args import HelpFormatter, check_out_file, positive_int, shared_help

EXAMPLE = """examples:
  cnnlab report runs/lenet                       # writes runs/lenet/report.html
  cnnlab report lab/equivariance --out equivariance.html"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run or a lab experiment",
        description="Write one HTML file (images embedded, no outside links) for a directory "
        "written by `cnnlab train`, `cnnlab transfer` or `cnnlab lab`: configuration, curves, "
        "confusion matrix, misclassified examples with their images, model summary, or the "
        "experiment's plots and sentence.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("run", metavar="DIR", help="a run directory or a lab --out directory")
    parser.add_argument("--out", default=None, metavar="FILE", help="HTML file (DIR/report.html)")
    parser.add_argument("--data-dir", default=None, help=shared_help("--data-dir", "the run's"))
    parser.add_argument("--device", default=None,
                        help=shared_help("--device", "the run's train.device"))
    parser.add_argument("--mistakes", type=positive_int, default=24,
                        help="misclassified test images to show (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.report.html import write_report

    if args.out:
        check_out_file(args.out, "report.html")
    path = write_report(args.run, args.out, args.data_dir, args.mistakes, args.device)
    print(f"report written to {path} ({path.stat().st_size / 1e3:,.0f} kB, self-contained)")
    return 0
