"""``cnnlab predict``: the top-k classes of image files, with their probabilities."""

from __future__ import annotations

import argparse

from cnnlab.cli._args import positive_int

EXAMPLE = """examples:
  cnnlab predict runs/lenet shirt.png boot.jpg
  cnnlab predict runs/lenet photo.png --top-k 3

Images are converted like the training data: to the model's channels (grey or RGB), shorter side
resized to the model's input size, centre-cropped. Fashion-MNIST items are light on a black
background: a photo on a white background should be inverted first."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict", help="classify image files with a trained run",
        description="Print the top-k classes and their probabilities for each image file.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory written by `cnnlab train` or `cnnlab transfer`")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, GIF, WEBP)")
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes to show (5)")
    parser.add_argument("--data-dir", default=None, help="where to find the data set's files "
                        "(for class names and normalisation)")
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.evaluate.predict import load_image, predict_top_k
    from cnnlab.train import load_run_model
    from cnnlab.transfer import run_test_spec

    config, model = load_run_model(args.run)
    m = config.model
    images = torch.stack([load_image(p, m.in_chans, m.input_size) for p in args.images])
    reference = run_test_spec(args.run, config, args.data_dir).load("test", config.data.download)
    probs, indices = predict_top_k(model, images, reference.mean, reference.std, args.top_k)
    for path, p_row, i_row in zip(args.images, probs.tolist(), indices.tolist()):
        print(path)
        for p, i in zip(p_row, i_row):
            print(f"  {p * 100:6.2f}%  {reference.classes[i]}")
    return 0
