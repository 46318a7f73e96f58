"""``cnnlab evaluate``: top-1/top-5, per-class accuracy, confusion matrix, ECE — with optional TTA."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  cnnlab evaluate runs/lenet
  cnnlab evaluate runs/lenet --tta 10crop --plot runs/lenet/confusion.png"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a run directory on the test split",
        description="Load a run directory's model and report test loss, top-1 and top-5 accuracy, "
        "per-class accuracy, the confusion matrix and the expected calibration error.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory written by `cnnlab train` or `cnnlab transfer`")
    parser.add_argument("--tta", default="none", choices=("none", "flip", "center", "5crop", "10crop"),
                        help="test-time augmentation; crops are the model's input size (none)")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="also save the confusion matrix as an image (png, pdf, svg)")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass (500)")
    parser.add_argument("--data-dir", default=None, help="where to find the data set's files")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.device import resolve_precision
    from cnnlab.evaluate import evaluate_model, summary_lines
    from cnnlab.train import load_run_model
    from cnnlab.transfer import run_test_spec

    config, model = load_run_model(args.run, map_location=args.device)
    spec = run_test_spec(args.run, config, args.data_dir)
    test_set = spec.load("test", config.data.download)
    precision = resolve_precision(args.device, "fp32")
    crop = config.model.input_size or test_set.image_shape[-1]
    result = evaluate_model(model, test_set, args.batch_size, precision, args.tta, crop)
    views = "" if args.tta == "none" else f", TTA {args.tta}"
    print(f"{config.model.name} on {spec.name} test ({len(test_set):,} images{views})")
    print(result.format_confusion())
    if args.plot:
        from cnnlab.report.confusion import plot_confusion

        plot_confusion(result.confusion, result.classes, args.plot,
                       title=f"{config.model.name} on {spec.name}{views}")
        print(f"confusion matrix plot: {args.plot}")
    print("\n".join(summary_lines(result)))
    return 0
