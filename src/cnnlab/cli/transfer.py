"""``cnnlab transfer``: start from a trained network, new head, freeze, fine-tune or cache features."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnlab.cli._args import (
    NO_PROGRESS_HELP,
    OVERWRITE_HELP,
    HelpFormatter,
    add_config_flags,
    check_out_dir,
    config_flag_values,
    non_negative_float,
    positive_int,
    shared_help,
)
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab transfer --from efficientnet_lite0 --weights imagenet --data fashion-mnist \\
      --labels-per-class 10 --cache-features --epochs 30 --out runs/lite0-k10
  cnnlab transfer --resume runs/lite0-k10                     # continue a killed run
  cnnlab transfer --from runs/lenet --data digits --freeze features --cache-features --out runs/digits
  cnnlab transfer --from runs/src --data fashion-mnist --classes 5-9 --freeze stage1 \\
      --backbone-lr-scale 0.1 --epochs 3 --out runs/fm59
  cnnlab transfer --from resnet18.pth --model resnet18 --input-size 224 --data mnist --out runs/r18"""


# Flags for config keys (type, help and default from the config); every other key is a --set.
FLAGS = {"--labels-per-class": "data.labels_per_class", "--epochs": "train.epochs",
         "--batch-size": "train.batch_size", "--optimizer": "train.optimizer", "--lr": "train.lr",
         "--seed": "train.seed", "--device": "train.device"}


def transfer_defaults():
    """The run config a transfer starts from: the defaults, with fewer epochs (5)."""
    from cnnlab.train import RunConfig, apply_overrides

    return apply_overrides(RunConfig(), {"train.epochs": 5})


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cnnlab.data.datasets import DATASET_NAMES
    from cnnlab.evaluate.tta import TTA_MODES
    from cnnlab.transfer.freeze import FREEZE_POLICIES

    parser = subparsers.add_parser(
        "transfer", help="transfer a trained network to new classes",
        description="Replace the classifier of a trained network for a new task, freeze part of "
        "it, and fine-tune it — or train only the head on backbone features cached on disk.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("--from", dest="source", default=None,
                        help="run directory of `cnnlab train`, a weights file (.safetensors, "
                        ".pth torchvision state dict) with --model, or a model name with --weights")
    parser.add_argument("--weights", default=None, metavar="TAG",
                        help="pretrained weights of the --from model, e.g. imagenet (see `cnnlab "
                        "models --pretrained`): images get their size and normalisation")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the transfer run in DIR from its last checkpoint")
    parser.add_argument("--model", default=None, help="architecture of a bare weights file")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="input size the weights file's model was built for")
    parser.add_argument("--data", default="digits", choices=DATASET_NAMES, metavar="NAME",
                        help=f"target data set, one of: {', '.join(DATASET_NAMES)} (imagefolder: "
                        f"--data-dir is its root); images are resized to the model's input size "
                        f"(default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help=shared_help("--data-dir", "none"))
    parser.add_argument("--classes", default=None,
                        help="keep only these labels, renumbered 0..k-1: e.g. 5-9 or 0,2,4")
    parser.add_argument("--freeze", default="features",
                        help=f"{', '.join(FREEZE_POLICIES)} (all but the head) or a stage name, "
                        f"e.g. stage2 (default: %(default)s)")
    parser.add_argument("--freeze-bn-stats", action="store_true",
                        help="keep every BatchNorm on its running statistics while fine-tuning "
                        "(few labels: a handful of images' batch statistics mislead)")
    parser.add_argument("--backbone-lr-scale", type=non_negative_float, default=0.1,
                        help="backbone learning rate = lr x this (fine-tuning; default: %(default)s)")
    parser.add_argument("--cache-features", action="store_true",
                        help="compute the frozen backbone once, train the head on the cache")
    parser.add_argument("--cache-dir", default=None,
                        help="where cached features live (default ~/.cache/cnnlab/features)")
    parser.add_argument("--cache-views", default="none", choices=TTA_MODES,
                        help="cache these fixed views of each training image "
                        "(cnnlab.evaluate.tta; default: %(default)s)")
    add_config_flags(parser, FLAGS, base=transfer_defaults(),
                     helps={"train.lr": "learning rate of the new head"})
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set train.weight_decay=0")
    parser.add_argument("--out", default=None, help="run directory to write")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    parser.set_defaults(_resume_defaults={dest: parser.get_default(dest) for dest in RESUME_IGNORES})
    return parser


# What a transfer --resume takes from its run directory (transfer.json, config.json), so refuses.
RESUME_IGNORES = {"source": "--from", "weights": "--weights", "model": "--model",
                  "input_size": "--input-size", "data": "--data", "data_dir": "--data-dir",
                  "classes": "--classes", "freeze": "--freeze", "freeze_bn_stats": "--freeze-bn-stats",
                  "backbone_lr_scale": "--backbone-lr-scale", "cache_features": "--cache-features",
                  "cache_dir": "--cache-dir", "cache_views": "--cache-views", "out": "--out",
                  "overwrite": "--overwrite"}


def run(args: argparse.Namespace) -> int:
    from cnnlab.train.checkpoint import RunFinished
    from cnnlab.train.trainer import TrainingInterrupted

    try:
        return _run(args)
    except RunFinished as done:
        print(done)
        return 0
    except TrainingInterrupted as stop:
        print(f"cnnlab transfer: {stop}", file=sys.stderr)
        return 128 + stop.signal


def _run(args: argparse.Namespace) -> int:
    from cnnlab.cli.train import refuse_beside_resume
    from cnnlab.train import apply_overrides
    from cnnlab.train.checkpoint import run_entries
    from cnnlab.transfer import (
        TargetSpec,
        load_source,
        parse_classes,
        pretrained_source,
        resume_transfer,
        transfer,
    )

    if args.resume:
        refuse_beside_resume(args, "transfer", RESUME_IGNORES)
        history = resume_transfer(args.resume, progress=not args.no_progress,
                                  overrides=[config_flag_values(args, FLAGS), args.overrides])
        print(f"test accuracy: {history[-1]['test_acc'] * 100:.2f}%  (run saved in {args.resume})")
        return 0
    if not (args.source and args.out):
        raise ConfigError("--from SOURCE and --out DIR are required (or --resume DIR)")
    out = Path(args.out)
    if Path(args.source).exists() and Path(args.source).resolve() == out.resolve():
        raise ConfigError(f"{out} already holds a run, the --from run itself: choose another "
                          f"--out (--overwrite cannot replace the run a transfer starts from)")
    overwrite = False
    check_out_dir(out)
    if (out / "config.json").exists():
        if not args.overwrite:
            raise ConfigError(f"{out} already holds a run; choose another --out, add --overwrite, "
                              f"or continue it with --resume {out}")
        run_entries(out)  # refuses a folder that holds more than a run, before any work
        overwrite = True  # cleared once the transfer's inputs are loaded and its model built
    target = TargetSpec(args.data, parse_classes(args.classes), data_dir=args.data_dir)
    if args.weights:
        source, model, pre = pretrained_source(args.source, args.weights)
        target.use_preprocessing(pre)
        source_name = f"{args.source} ({args.weights} weights)"
    else:
        source, model = load_source(args.source, args.model, args.input_size)
        source_name = str(args.source)
    config = apply_overrides(transfer_defaults(), config_flag_values(args, FLAGS))
    apply_overrides(config, args.overrides)
    history = transfer(model, source, target, config, out, args.freeze, args.backbone_lr_scale,
                       args.cache_features, args.cache_dir, args.cache_views,
                       source_name=source_name, progress=not args.no_progress,
                       bn_stats_frozen=args.freeze_bn_stats, overwrite=overwrite)
    print(f"test accuracy: {history[-1]['test_acc'] * 100:.2f}%  (run saved in {out})")
    return 0
