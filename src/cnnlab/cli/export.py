"""``cnnlab export``: write a run's model as ONNX or TorchScript, and check the written file."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli._args import HelpFormatter, check_out_file, non_negative_float

EXAMPLE = """examples:
  cnnlab export runs/lenet --format onnx
  cnnlab export runs/lenet --format torchscript --out lenet.pt"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cnnlab.evaluate.export import EXPORT_FORMATS

    parser = subparsers.add_parser(
        "export", help="export a run's model to ONNX or TorchScript",
        description="Export a run directory's model (fp32, dynamic batch for ONNX), then run the "
        "exported file on a random batch and print its largest difference from PyTorch.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("run", help="run directory written by `cnnlab train` or `cnnlab transfer`")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                        help="onnx (needs onnx, onnxscript, onnxruntime) or torchscript "
                        "(default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="file to write (default RUN/model.onnx or RUN/model.pt)")
    parser.add_argument("--tolerance", type=non_negative_float, default=1e-4,
                        help="largest accepted max abs difference of the logits "
                        "(default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.evaluate.export import SUFFIX, check_export, export_model, onnx_data_file
    from cnnlab.train import load_run_model

    out = Path(args.out) if args.out else Path(args.run) / f"model{SUFFIX[args.format]}"
    check_out_file(out, f"model{SUFFIX[args.format]}")
    config, model = load_run_model(args.run)
    m = config.model
    shape = (m.in_chans, m.input_size, m.input_size)
    export_model(model, shape, out, args.format)
    diff = check_export(model, out, args.format, shape)
    print(f"exported {m.name} ({args.format}, input (batch, {', '.join(map(str, shape))})) to {out}")
    if args.format == "onnx" and onnx_data_file(out).is_file():
        print(f"the weights (over 2 GB) are in {onnx_data_file(out)}: keep it beside {out.name} "
              f"when you copy or move it")
    print(f"check: max abs difference from PyTorch on 5 random images: {diff:.3g}")
    if not diff <= args.tolerance:
        raise CnnlabError(f"the exported model differs from PyTorch by {diff:.3g} "
                          f"(> --tolerance {args.tolerance}); do not use {out}")
    return 0
