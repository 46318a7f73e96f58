"""How fast ``cnnlab.summary`` is: against torchinfo, against a real forward, and as inputs grow.

1. **Meta trace vs torchinfo** (baseline: ``torchinfo.summary``, which runs the model for real on
   the CPU). ResNet-50, VGG-16, AlexNet, GoogLeNet and ConvNeXt-T built on the CPU; at batch 1 and
   224 px, and at batch 8 and 448 px; the two alternate round by round (benchmarks/_harness.py);
   the figure is the geometric mean over the models of the per-round ratio. Goals: >= 5x and
   >= 20x.
2. **Real-forward path** (``device="cpu"``, which measures memory by running the model) against a
   plain forward + backward of the same model at batch 1 and 224 px. Goal: within 2x.
3. **Cost against input size and batch**: ResNet-50's meta summary and a plain forward
   (``torch.no_grad()``) at 224/448/896 px and batch 1/16: the trace's cost stays flat, the real
   forward's grows with the pixels. One warm-up of each at the smallest input, then
   ``--scaling-rounds`` (default 2) alternating rounds per size, no per-size warm-up: the
   16 x 896 forward alone costs ~80 CPU seconds (~40 s a round on 2 idle cores), so the part
   takes about 2 minutes idle; ``--sizes``/``--batches`` trim it.

    .venv/bin/python benchmarks/bench_summary.py [--rounds 5] [--skip-scaling]
    .venv/bin/python benchmarks/bench_summary.py --only scaling --sizes 224 448 896 --batches 1 16

torchinfo is a dev dependency (``pip install -e .[dev]``); without it part 1 is skipped with a
note.
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torchvision
from _harness import Bench, Sample, add_arguments, geometric_mean, ratio, seconds, times

import cnnlab

warnings.filterwarnings("ignore")
M = torchvision.models
MODELS = {
    "resnet50": M.resnet50, "vgg16": M.vgg16, "alexnet": M.alexnet,
    "googlenet": lambda: M.googlenet(aux_logits=False, init_weights=False),
    "convnext_tiny": M.convnext_tiny,
}


def _torchinfo():
    try:
        import torchinfo
    except ImportError:
        print("note: torchinfo is not installed (a dev dependency: pip install -e .[dev]); "
              "part 1 skipped")
        return None
    return torchinfo


def versus_torchinfo(bench: Bench, models: dict, batch: int, size: int, rounds: int) -> None:
    torchinfo = _torchinfo()
    if torchinfo is None:
        return
    table = bench.table("model", "cnnlab.summary (meta)", "torchinfo.summary", "speed-up",
                        title=f"1. cnnlab.summary (meta) vs torchinfo, batch {batch}, {size} px")
    speedups = []
    shape = (3, size, size)
    for name, model in models.items():
        samples = bench.alternate({
            "cnnlab": lambda m=model: cnnlab.summary(m, shape, batch_size=batch),
            "torchinfo": lambda m=model: torchinfo.summary(m, input_size=(batch, *shape),
                                                           verbose=0),
        }, rounds=rounds, warmup=1)
        speedups.append(ratio(samples["torchinfo"], samples["cnnlab"]))
        table.row(name, seconds(samples["cnnlab"]), seconds(samples["torchinfo"]),
                  times(speedups[-1], ".1f"))
    table.row("geometric mean", "", "", times(geometric_mean(speedups), ".1f"))


def real_forward_path(bench: Bench, models: dict, rounds: int) -> None:
    table = bench.table("model", "cnnlab.summary(device='cpu')", "forward + backward",
                        "cnnlab / plain", title="2. real-forward summary vs a plain forward + "
                                                "backward, batch 1, 224 px")
    for name, model in models.items():
        x = torch.randn(1, 3, 224, 224)

        def plain(m=model, x=x):
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()

        samples = bench.alternate({
            "cnnlab": lambda m=model: cnnlab.summary(m, (3, 224, 224), device="cpu"),
            "plain": plain}, rounds=rounds, warmup=1)
        table.row(name, seconds(samples["cnnlab"]), seconds(samples["plain"]),
                  times(ratio(samples["cnnlab"], samples["plain"])))
        model.zero_grad(set_to_none=True)


def scaling(bench: Bench, sizes: list[int], batches: list[int], rounds: int) -> None:
    model = M.resnet50().eval()
    table = bench.table("input (batch x px)", "cnnlab.summary (meta)", "forward, no_grad",
                        "forward / summary",
                        title="3. ResNet-50: summary time vs a real forward as the input grows")
    with torch.no_grad():  # one warm-up of each, at the smallest input (see the docstring)
        model(torch.randn(min(batches), 3, min(sizes), min(sizes)))
    cnnlab.summary(model, (3, min(sizes), min(sizes)), batch_size=min(batches))
    for batch in batches:
        for size in sizes:
            x = torch.randn(batch, 3, size, size)

            def forward(x=x):
                with torch.no_grad():
                    model(x)

            samples: dict[str, Sample] = bench.alternate({
                "meta": lambda b=batch, s=size: cnnlab.summary(model, (3, s, s), batch_size=b),
                "forward": forward}, rounds=rounds, warmup=0)
            table.row(f"{batch} x {size}", seconds(samples["meta"]), seconds(samples["forward"]),
                      times(ratio(samples["forward"], samples["meta"]), ".1f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per figure")
    parser.add_argument("--only", choices=["torchinfo", "cpu", "scaling"], default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--scaling-rounds", type=int, default=2,
                        help="alternating rounds per size in part 3 (its cost: see the docstring)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench.from_args(args)
    bench.note(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median (IQR) "
               f"over {args.rounds} alternating rounds ({args.scaling_rounds} for part 3)")
    torch.manual_seed(0)
    if args.only in (None, "torchinfo", "cpu"):
        models = {name: build().eval() for name, build in MODELS.items()}
        if args.only in (None, "torchinfo"):
            versus_torchinfo(bench, models, 1, 224, args.rounds)
            versus_torchinfo(bench, models, 8, 448, args.rounds)
        if args.only in (None, "cpu"):
            real_forward_path(bench, models, args.rounds)
        del models
    if args.only == "scaling" or (args.only is None and not args.skip_scaling):
        scaling(bench, args.sizes, args.batches, args.scaling_rounds)
    bench.finish()


if __name__ == "__main__":
    main()
