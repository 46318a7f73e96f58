"""``cnnlab predict``: the top-k classes of image files, with their probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli._args import HelpFormatter, positive_int, shared_help
from cnnlab.errors import ConfigError

EXAMPLE = """examples:
  cnnlab predict runs/lenet shirt.png boot.jpg
  cnnlab predict runs/lenet photo.png --top-k 3
  cnnlab predict efficientnet_lite0 --weights imagenet cat.jpg cup.png

A run's images are converted like its training data: to the model's channels (grey or RGB),
shorter side resized to the model's input size, centre-cropped. Fashion-MNIST items are light on
a black background: a photo on a white background should be inverted first. Pretrained weights
use their own preprocessing (see `cnnlab models --pretrained`)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict", help="classify image files with a trained run or pretrained weights",
        description="Print the top-k classes and their probabilities for each image file.",
        epilog=EXAMPLE, formatter_class=HelpFormatter)
    parser.add_argument("run", metavar="RUN_OR_MODEL",
                        help="run directory written by `cnnlab train` or `cnnlab transfer`, or a "
                        "model name with --weights")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, GIF, WEBP, BMP)")
    parser.add_argument("--weights", default=None, metavar="TAG",
                        help="pretrained weights of the model named first, e.g. imagenet")
    parser.add_argument("--top-k", type=positive_int, default=5,
                        help="classes to show (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help=shared_help("--data-dir", "the run's")
                        + "; a run's class names and normalisation come from its data set")
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.evaluate.predict import load_image, predict_top_k

    if args.weights:
        from cnnlab.models import create_model, weights_info

        if Path(args.run).is_dir():
            raise ConfigError(f"--weights picks pretrained weights for a model name, but "
                              f"{args.run!r} is a run directory; drop --weights")
        info = weights_info(args.run, args.weights)
        pre = info.preprocessing
        images = torch.stack([load_image(p, 3, pre.crop, pre.resize, pre.interpolation)
                              for p in args.images])
        model = create_model(args.run, weights=args.weights)
        mean, std, classes = pre.mean, pre.std, info.classes
    else:
        from cnnlab.models import list_models
        from cnnlab.train import load_run_model
        from cnnlab.transfer import run_test_spec

        if not Path(args.run).is_dir() and args.run in list_models():
            raise ConfigError(f"{args.run!r} is a model name: say which weights with --weights TAG "
                              f"(see `cnnlab models --pretrained`), or give a run directory")
        config, model = load_run_model(args.run)
        m = config.model
        images = torch.stack([load_image(p, m.in_chans, m.input_size) for p in args.images])
        spec = run_test_spec(args.run, config, args.data_dir)
        classes, mean, std = spec.reference("test", config.data.download)
    probs, indices = predict_top_k(model, images, mean, std, args.top_k)
    for path, p_row, i_row in zip(args.images, probs.tolist(), indices.tolist()):
        print(path)
        for p, i in zip(p_row, i_row):
            print(f"  {p * 100:6.2f}%  {classes[i]}")
    return 0
