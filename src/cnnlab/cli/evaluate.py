"""``cnnlab evaluate``: accuracy and confusion matrix of a trained run on its test split."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a run directory on the test split",
        description="Load a run directory's model and report test accuracy and the confusion matrix.",
        epilog="Example: cnnlab evaluate runs/lenet")
    parser.add_argument("run", help="run directory written by `cnnlab train`")
    parser.add_argument("--data-dir", default=None, help="where to find the data set's files")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.data import load_dataset
    from cnnlab.device import resolve_precision
    from cnnlab.evaluate import evaluate_model
    from cnnlab.train import load_run_model

    config, model = load_run_model(args.run, map_location=args.device)
    data = config.data
    test_set = load_dataset(data.name, "test", args.data_dir or data.data_dir, data.download)
    precision = resolve_precision(args.device, "fp32")
    result = evaluate_model(model, test_set, precision=precision)
    print(f"{config.model.name} on {data.name} test ({len(test_set):,} images)")
    print(result.format_confusion())
    print(f"test loss: {result.loss:.4f}")
    print(f"test accuracy: {result.accuracy * 100:.2f}%")
    return 0
