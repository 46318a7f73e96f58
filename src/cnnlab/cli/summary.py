"""``cnnlab summary``: the per-layer table of a zoo model or of a saved run's model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnnlab.cli._args import HelpFormatter, positive_int, shared_help
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab summary vgg16 --input 3x224x224 --depth 2
  cnnlab summary resnet50 --format json > resnet50.json
  cnnlab summary runs/lenet --plot runs/lenet/layers.png"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cnnlab.analysis.memory import OPTIMIZER_STATES

    parser = subparsers.add_parser(
        "summary", help="shapes, parameters, multiply-adds, memory, receptive fields per layer",
        description="Trace one forward pass (on the meta device: no arithmetic, no memory) and "
        "print each layer's output shape, parameters, multiply-adds, activations saved for "
        "backward and receptive field, with totals and the conv / fc split.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("model", help="a model name (`cnnlab models`) or a run directory")
    parser.add_argument("--input", default=None, metavar="CxHxW",
                        help="input size without batch, e.g. 3x224x224 (the model's default)")
    parser.add_argument("--depth", type=positive_int, default=None,
                        help="show module calls down to this nesting depth (all)")
    parser.add_argument("--format", default="table", choices=("table", "json", "csv"),
                        help="table, or every row as json or csv (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="traced batch (default: %(default)s)")
    parser.add_argument("--train", action="store_true",
                        help="trace in training mode (dropout, batch statistics, aux heads)")
    parser.add_argument("--optimizer", default="sgd_momentum", choices=list(OPTIMIZER_STATES),
                        help="optimizer state in the memory estimate (default: %(default)s)")
    parser.add_argument("--device", default=None,
                        help=shared_help("--device", "meta: shapes only, nothing computed") +
                        "; a device runs the forward for real")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="also save a bar chart of parameters and MACs per layer")
    return parser


def _parse_input(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input must look like 3x224x224 (C x H x W), got {text!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ConfigError(f"--input must be C x H x W (or C x L) of positive sizes, got {text!r}")
    return shape


def _check_dims(shape: tuple[int, ...] | None, info, name: str) -> None:
    """``--input`` has as many sizes as the model's inputs (C x H x W for images, C x L for 1-D)."""
    if shape is not None and len(shape) != len(info.input_size):
        example = "x".join(map(str, info.input_size))
        raise ConfigError(f"{name} takes inputs of {len(info.input_size)} sizes (e.g. --input "
                          f"{example}), got --input {'x'.join(map(str, shape))}")


def _load(args) -> tuple[object, tuple[int, ...], str]:
    """The model, its input size and a label, from a run directory or a registry name."""
    import torch

    from cnnlab.models import create_model, model_info

    shape = _parse_input(args.input) if args.input else None
    if Path(args.model, "config.json").is_file():  # a saved run: its config and weights
        from cnnlab.train import load_run_model
        from cnnlab.transfer import freeze_as_trained, read_transfer

        config, model = load_run_model(args.model)
        frozen = freeze_as_trained(args.model, model)  # a transfer run: frozen as it trained
        if frozen:
            source = read_transfer(args.model)["source"]
            print(f"transfer run from {source}: frozen as it trained: {', '.join(frozen)}",
                  file=sys.stdout if args.format == "table" else sys.stderr)
        info = model_info(config.model.name)
        _check_dims(shape, info, config.model.name)
        if shape is None:
            chans = config.model.in_chans or info.input_size[0]
            size = config.model.input_size
            shape = (chans, *([size] * (len(info.input_size) - 1))) if size else info.input_size
        return model, shape, f"{config.model.name} ({args.model})"
    if Path(args.model).is_dir():
        raise ConfigError(f"{args.model!r} is a directory without config.json; pass a run "
                          f"directory written by `cnnlab train` or a model name")
    info = model_info(args.model)
    _check_dims(shape, info, args.model)
    options = {}
    if shape is not None:
        options = dict(in_chans=shape[0], input_size=shape[-1] if len(set(shape[1:])) == 1
                       else tuple(shape[1:]))
    if args.device is None:  # meta: no weights drawn, even ConvNeXt-L builds instantly
        with torch.device("meta"):
            model = create_model(args.model, **options)
    else:
        model = create_model(args.model, **options)
    return model, shape or info.input_size, args.model


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis import summary
    from cnnlab.device import resolve_device

    if args.device is not None:
        args.device = str(resolve_device(args.device))  # auto: cuda where there is one
    model, shape, label = _load(args)
    s = summary(model, shape, depth=args.depth, batch_size=args.batch_size, device=args.device,
                train=args.train, optimizer=args.optimizer)
    if args.format == "json":
        print(json.dumps(s.to_dict(), indent=1))
    elif args.format == "csv":
        print(s.to_csv(), end="")
    else:
        print(s)
    if args.plot:
        from cnnlab.report import plot_layer_costs

        written = plot_layer_costs(s, args.plot)
        # json/csv stay machine-readable on stdout; the note goes to stderr
        print(f"layer plot: {written}", file=sys.stdout if args.format == "table" else sys.stderr)
    return 0
