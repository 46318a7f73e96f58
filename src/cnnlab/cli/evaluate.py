"""``cnnlab evaluate``: top-1/top-5, per-class accuracy, confusion matrix, ECE — as training did."""

from __future__ import annotations

import argparse

from cnnlab.cli._args import NO_PROGRESS_HELP, HelpFormatter, positive_int, shared_help

EXAMPLE = """examples:
  cnnlab evaluate runs/lenet                       # the run's own settings: its last test accuracy
  cnnlab evaluate runs/lenet --tta 10crop --plot runs/lenet/confusion.png

By default a run is evaluated with its own settings — the device, precision and memory format it
trained with, train.eval_batch_size, and flip views when train.tta_flip is on (flip_shift with
train.tta_shift) — so the accuracy is the last one in its metrics.csv. Each option given
replaces one of them; the output says which."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cnnlab.evaluate.tta import TTA_MODES
    from cnnlab.train.config import PRECISIONS

    parser = subparsers.add_parser(
        "evaluate", help="evaluate a run directory on the test split",
        description="Load a run directory's model and report test loss, top-1 and top-5 accuracy, "
        "per-class accuracy, the confusion matrix and the expected calibration error.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("run", help="run directory written by `cnnlab train` or `cnnlab transfer`")
    parser.add_argument("--tta", default=None, choices=TTA_MODES,
                        help=shared_help("--tta", "the run's: flip with train.tta_flip (flip_shift "
                                                 "with train.tta_shift too), else none"))
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help=shared_help("--precision", "the run's"))
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="also save the confusion matrix as an image (png, pdf, svg)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="images per forward pass (default: the run's train.eval_batch_size)")
    parser.add_argument("--data-dir", default=None, help=shared_help("--data-dir", "the run's"))
    parser.add_argument("--device", default=None,
                        help=shared_help("--device", "the run's train.device"))
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.evaluate import summary_lines
    from cnnlab.runs import evaluate_run

    found = evaluate_run(args.run, args.tta, args.precision, args.device, args.batch_size,
                         args.data_dir, progress=None if args.no_progress else "evaluate")
    result, name, tta = found.result, found.config.model.name, found.settings.tta
    views = "" if tta == "none" else f", TTA {tta}"
    print(f"{name} on {found.spec.name} test ({len(found.test_set):,} images{views})")
    whose = "the run's own" if found.own_settings else "given options over the run's"
    print(f"evaluated with: {found.settings.describe()} ({whose} settings)")
    print(result.format_confusion())
    if args.plot:
        from cnnlab.report.confusion import plot_confusion

        written = plot_confusion(result.confusion, result.classes, args.plot,
                                 title=f"{name} on {found.spec.name}{views}")
        print(f"confusion matrix plot: {written}")
    print("\n".join(summary_lines(result)))
    return 0
