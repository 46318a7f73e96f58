"""``cnnlab ensemble``: combine several trained runs and compare with each member."""

from __future__ import annotations

import argparse

from cnnlab.cli._args import NO_PROGRESS_HELP, HelpFormatter, positive_int, shared_help

EXAMPLE = """examples:
  cnnlab ensemble runs/lenet-s0 runs/lenet-s1 runs/lenet-s2
  cnnlab ensemble runs/lenet runs/resnet20 --tta 10crop --combine logit"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cnnlab.evaluate.ensemble import COMBINE_MODES
    from cnnlab.evaluate.tta import TTA_MODES

    parser = subparsers.add_parser(
        "ensemble", help="evaluate an ensemble of run directories",
        description="Average the predictions of several runs (different seeds or architectures) "
        "on their common test split; report each member, the ensemble and the gain.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (two or more)")
    parser.add_argument("--combine", choices=COMBINE_MODES, default="prob",
                        help="average probabilities (prob) or logits (default: %(default)s)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help=shared_help("--tta", "none") + ", for every member")
    parser.add_argument("--batch-size", type=positive_int, default=500,
                        help="images per forward pass (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help=shared_help("--data-dir", "the runs'"))
    parser.add_argument("--device", default="auto", help=shared_help("--device", "auto"))
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.device import resolve_device, resolve_precision
    from cnnlab.errors import ConfigError
    from cnnlab.evaluate import ensemble_evaluate, summary_lines
    from cnnlab.train import load_run_model
    from cnnlab.transfer import run_test_spec

    if len(args.runs) < 2:
        raise ConfigError("an ensemble needs at least two run directories")
    device = str(resolve_device(args.device))
    models, datasets, crops, loaded = [], [], [], {}
    for run_dir in args.runs:
        config, model = load_run_model(run_dir, map_location=device)
        spec = run_test_spec(run_dir, config, args.data_dir)
        key = repr(spec)
        if key not in loaded:  # members sharing a data spec share one loaded test set
            loaded[key] = spec.load("test", config.data.download)
        models.append(model)
        datasets.append(loaded[key])
        crops.append(config.model.input_size or loaded[key].image_shape[-1])
    precision = resolve_precision(device, "fp32")
    result = ensemble_evaluate(models, datasets, args.runs, args.combine, args.tta, crops,
                               args.batch_size, precision, progress=not args.no_progress)
    views = "" if args.tta == "none" else f", TTA {args.tta}"
    print(f"ensemble of {len(models)} runs on {spec.name} test ({len(datasets[0]):,} images{views})")
    print(result.format())
    print("\n".join(summary_lines(result.ensemble)))
    return 0
