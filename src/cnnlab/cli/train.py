"""``cnnlab train``: train a model from the zoo (or a named recipe) and write a run directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cnnlab.cli._args import (
    NO_PROGRESS_HELP,
    OVERWRITE_HELP,
    HelpFormatter,
    add_config_flags,
    check_out_dir,
    config_flag_values,
    positive_int,
)
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab train lenet5 --data fashion-mnist --epochs 8 --seed 0 --out runs/lenet
  cnnlab train --recipe fmnist-fast --out runs/fast          # one epoch: ~91.5% in ~65 s on 2 cores
  cnnlab train --recipe fmnist-best --show                   # print the resolved config
  cnnlab train resnet20 --config my.yaml --set augment.flip=0.5 --out runs/r20
  cnnlab train --resume runs/r20                             # continue a killed run
  cnnlab train lenet5_modern --nproc 2 --out runs/ddp         # 2 processes (torchrun, gloo)

precedence: defaults < --recipe < --config file < flags < --set"""


# Flags for the most used config keys; every other key is a --set (their help: _config_keys()).
FLAGS = {"--data": "data.name", "--data-dir": "data.data_dir",
         "--labels-per-class": "data.labels_per_class", "--epochs": "train.epochs",
         "--batch-size": "train.batch_size", "--optimizer": "train.optimizer", "--lr": "train.lr",
         "--schedule": "train.schedule", "--seed": "train.seed", "--device": "train.device",
         "--precision": "train.precision", "--channels-last": "train.channels_last",
         "--compile": "train.compile", "--deterministic": "train.deterministic",
         "--checkpoint-every": "train.checkpoint_every"}


def _config_keys() -> str:
    """Every config key with its default and its one-line comment, read from the dataclasses."""
    from cnnlab.train.config import RunConfig, field_comments, flatten

    lines = ["config keys (--set section.key=value, or a --config YAML/JSON file):"]
    for key, default in flatten(RunConfig()).items():
        section, name = key.split(".")
        lines.append(f"  {key}={default!r}  {field_comments(section).get(name, '')}".rstrip())
    return "\n".join(lines)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cnnlab.data.datasets import DATASET_NAMES
    from cnnlab.train.recipes import RECIPES

    parser = subparsers.add_parser(
        "train", help="train a model and write a run directory",
        description="Train a model on a data set; writes config.json, metrics.csv, curves.png, "
        "model.safetensors and state.pt to --out after every epoch.",
        epilog=EXAMPLE + "\n\n" + _config_keys(), formatter_class=HelpFormatter)
    parser.add_argument("model", nargs="?", default=None,
                        help="model name (see `cnnlab models`); optional with --recipe or --resume")
    parser.add_argument("--recipe", default=None, choices=list(RECIPES),
                        help="a named recipe: " + "; ".join(
                            f"{r.name}: {r.goal}" for r in RECIPES.values()).replace("%", "%%"))
    parser.add_argument("--show", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--config", default=None, help="YAML or JSON file with config sections")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run in DIR with its saved config")
    add_config_flags(parser, FLAGS, choices={"data.name": DATASET_NAMES})
    parser.add_argument("--nproc", type=positive_int, default=1,
                        help="data-parallel processes on this machine, through torchrun (1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set train.weight_decay=1e-4")
    parser.add_argument("--out", default=None, help="run directory to write")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    return parser


def _resolve(args: argparse.Namespace):
    """defaults < recipe < --config file < flags < --set."""
    from cnnlab.models import model_info
    from cnnlab.train import RunConfig, apply_overrides, load_run_config
    from cnnlab.train.recipes import recipe_config

    if args.resume:
        refuse_beside_resume(args, "train", {"model": "a MODEL", "recipe": "--recipe",
                                             "config": "--config", "out": "--out",
                                             "overwrite": "--overwrite"})
        config = load_run_config(args.resume)
    else:
        config = recipe_config(args.recipe) if args.recipe else RunConfig()
        if args.config:
            config = RunConfig.from_file(args.config, base=config)
        if args.model:
            config.model.name = args.model
        elif not (args.recipe or args.config):
            raise ConfigError("name a MODEL (see `cnnlab models`), or give --recipe, --config or --resume")
    apply_overrides(config, config_flag_values(args, FLAGS))  # typed values, no strings
    apply_overrides(config, args.overrides)
    model_info(config.model.name)  # unknown names fail here, with close matches
    return config.validate()


def refuse_beside_resume(args: argparse.Namespace, command: str, ignored: dict[str, str]) -> None:
    """Refuse the options ``--resume`` would ignore (``ignored``: dest -> how the user wrote it):
    a resumed run keeps its saved config, source and folder."""
    defaults = getattr(args, "_resume_defaults", {})
    given = [flag for dest, flag in ignored.items()
             if getattr(args, dest, None) not in (None, False, defaults.get(dest))]
    if given:
        raise ConfigError(f"{', '.join(given)} cannot be given with --resume, which would ignore "
                          f"{'them' if len(given) > 1 else 'it'}: the run in {args.resume} continues "
                          f"with its own saved config, in its own folder; run `cnnlab {command} "
                          f"--resume {args.resume}` alone, or with --epochs, --lr or --set to "
                          f"change those")


def run(args: argparse.Namespace) -> int:
    from cnnlab.train import Trainer
    from cnnlab.train.checkpoint import RunFinished, run_entries
    from cnnlab.train.distributed import cleanup, launch
    from cnnlab.train.trainer import TrainingInterrupted

    config = _resolve(args)
    if args.show:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False).rstrip())
        return 0
    out = Path(args.resume or args.out or "")
    if not (args.resume or args.out):
        raise ConfigError("--out DIR is required (where the run is written)")
    child = "WORLD_SIZE" in os.environ  # a process started by torchrun
    overwrite = False
    if not args.resume:
        check_out_dir(out)
    if args.nproc > 1 and not child:  # before torchrun starts, not in each of its processes
        from cnnlab.device import resolve_device
        from cnnlab.train.distributed import check_world

        check_world(config.train.batch_size, args.nproc, resolve_device(config.train.device).type)
    if not args.resume and not child and (out / "config.json").exists():
        if not args.overwrite:
            raise ConfigError(f"{out} already holds a run; choose another --out, add --overwrite, "
                              f"or continue it with --resume {out}")
        run_entries(out)  # refuses a folder that holds more than a run, before any work
        overwrite = True  # the Trainer clears it once the new run's inputs are validated
    if args.nproc > 1 and not child:
        return _launch(args, config, out, launch)
    try:
        trainer = Trainer(config, out, progress=not args.no_progress, resume=bool(args.resume),
                          overwrite=overwrite or (child and args.overwrite))
    except RunFinished as done:
        print(done)
        return 0
    try:
        history = trainer.fit()
    except TrainingInterrupted as stop:
        print(f"cnnlab train: {stop}", file=sys.stderr)
        return 128 + stop.signal
    finally:
        cleanup(trainer.dist)
    if trainer.dist.is_main and history:
        print(f"test accuracy: {history[-1]['test_acc'] * 100:.2f}%  (run saved in {out})")
    return 0


def _launch(args: argparse.Namespace, config, out: Path, launch) -> int:
    """Re-run this command in ``--nproc`` processes with the resolved config."""
    import tempfile

    extra = ["--no-progress"] if args.no_progress else []
    if args.resume:
        return launch(args.nproc, ["train", "--resume", str(out), *extra])
    fd, path = tempfile.mkstemp(suffix=".json", prefix="cnnlab-config-")
    with os.fdopen(fd, "w") as f:
        f.write(config.to_json())
    try:
        if args.overwrite:  # checked here; rank 0 clears the old run once its inputs load
            extra.append("--overwrite")
        return launch(args.nproc, ["train", "--config", path, "--out", str(out), *extra])
    finally:
        os.unlink(path)
