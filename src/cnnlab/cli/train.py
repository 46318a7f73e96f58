"""``cnnlab train``: train a model from the zoo and write a run directory."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cnnlab.cli._args import positive_float, positive_int
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab train lenet5 --data fashion-mnist --epochs 8 --seed 0 --out runs/lenet
  cnnlab train lenet5_modern --epochs 3 --optimizer adamw --lr 2e-3 --out runs/modern
  cnnlab train resnet20 --set train.weight_decay=1e-4 --out runs/r20"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model and write a run directory",
        description="Train a model on a data set; writes config.json, metrics.csv and "
        "model.safetensors to --out after every epoch.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model name (see `cnnlab models`)")
    parser.add_argument("--data", default=None, help="data set: fashion-mnist (default), mnist, digits")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files (else CNNLAB_DATA, "
                        "~/.cache/cnnlab, /usr/share/datasets)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="passes over the data (8)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="batch size (128)")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default=None, help="optimizer (sgd)")
    parser.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (0.05)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (0)")
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
                        help="numeric precision; auto picks the fastest correct one")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set train.weight_decay=1e-4")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.models import model_info
    from cnnlab.train import RunConfig, Trainer, apply_overrides

    model_info(args.model)  # unknown names fail here, with close matches
    config = RunConfig()
    config.model.name = args.model
    flags = {"data.name": args.data, "data.data_dir": args.data_dir, "train.epochs": args.epochs,
             "train.batch_size": args.batch_size, "train.optimizer": args.optimizer,
             "train.lr": args.lr, "train.seed": args.seed, "train.device": args.device,
             "train.precision": args.precision}
    apply_overrides(config, [f"{k}={v}" for k, v in flags.items() if v is not None])
    apply_overrides(config, args.overrides)
    out = Path(args.out)
    if (out / "config.json").exists():
        if not args.overwrite:
            raise ConfigError(f"{out} already holds a run; choose another --out or add --overwrite")
        shutil.rmtree(out)
    trainer = Trainer(config, out, progress=not args.no_progress)
    history = trainer.fit()
    print(f"test accuracy: {history[-1]['test_acc'] * 100:.2f}%  (run saved in {out})")
    return 0
