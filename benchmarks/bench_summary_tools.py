"""cnnlab.summary against torchinfo, fvcore, ptflops and torchscan: totals, disagreements, time.

Truth for each figure is independent of every tool: torchvision's weight metadata (params and
"GFLOPS" = GMACs), the ConvTranspose2d formula (C_in x C_out/g x k x k per *input* position), the
receptive field of ResNet-50's layer4 (427, checked by autograd in tests/analysis), and a real
CPU forward with saved_tensors_hooks for the activations kept for backward.

The timing baseline is torchinfo, measured in the same run: the tools alternate round by round on
the same CPU model (benchmarks/_harness.py), median and IQR of each (cnnlab traces on meta by
default; its real-CPU mode is listed too).
Tools that are not installed are skipped with a note (they are dev-only: `pip install torchinfo
fvcore ptflops torchscan`).

    .venv/bin/python benchmarks/bench_summary_tools.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings

import torch
import torchvision
from _harness import Bench, Sample, add_arguments, geometric_mean, ratio, seconds, times
from torch import nn

import cnnlab

warnings.filterwarnings("ignore")
M = torchvision.models


def _decoder() -> nn.Module:  # a DCGAN-style upsampling layer
    return nn.Sequential(nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, bias=False))


# name -> (constructor, input (C, H, W), true params, true MACs)
CASES = {
    "resnet50": (lambda: M.resnet50(), (3, 224, 224), 25_557_032, 4_089_184_256),
    "vgg16": (lambda: M.vgg16(), (3, 224, 224), 138_357_544, 15_470_264_320),
    "alexnet": (lambda: M.alexnet(), (3, 224, 224), M.AlexNet_Weights.IMAGENET1K_V1.meta[
        "num_params"], M.AlexNet_Weights.IMAGENET1K_V1.meta["_ops"]),
    "googlenet": (lambda: M.googlenet(aux_logits=False, init_weights=False), (3, 224, 224),
                  M.GoogLeNet_Weights.IMAGENET1K_V1.meta["num_params"],
                  M.GoogLeNet_Weights.IMAGENET1K_V1.meta["_ops"]),
    "convnext_tiny": (lambda: M.convnext_tiny(), (3, 224, 224),
                      M.ConvNeXt_Tiny_Weights.IMAGENET1K_V1.meta["num_params"],
                      M.ConvNeXt_Tiny_Weights.IMAGENET1K_V1.meta["_ops"]),
    "conv_transpose": (_decoder, (64, 16, 16), 64 * 32 * 16, 16 * 16 * 64 * 32 * 16),
}


def _quiet(fn, *args, **kw):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kw)


def tool_cnnlab(model, shape, device=None):
    s = cnnlab.summary(model, shape, device=device)
    rf = {r.name: r.receptive_field.size for r in s.rows if r.receptive_field is not None}
    return dict(params=s.total_params, macs=s.total_macs, saved_mb=s.saved_bytes / 1e6,
                rf_layer4=rf.get("layer4"))


def tool_torchinfo(model, shape):
    import torchinfo

    s = torchinfo.summary(model, input_size=(1, *shape), verbose=0)
    return dict(params=s.total_params, macs=s.total_mult_adds, saved_mb=s.total_output_bytes / 1e6)


def tool_fvcore(model, shape):
    from fvcore.nn import FlopCountAnalysis, parameter_count

    flops = FlopCountAnalysis(model, torch.randn(1, *shape))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return dict(params=parameter_count(model)[""], macs=int(flops.total()))  # fvcore: 1 per MAC


def tool_ptflops(model, shape):
    from ptflops import get_model_complexity_info

    macs, params = _quiet(get_model_complexity_info, model, shape, as_strings=False,
                          print_per_layer_stat=False)
    return dict(params=params, macs=int(macs))


def tool_torchscan(model, shape):
    from torchscan import crawl_module

    info = _quiet(crawl_module, model, shape)  # 0.2.0 reports per-layer, not cumulative, fields
    return dict(params=info["totals"]["parameters"]["value"],
                macs=info["totals"]["macs"]["value"])


TOOLS = {"cnnlab (meta)": tool_cnnlab, "cnnlab (cpu)": lambda m, s: tool_cnnlab(m, s, "cpu"),
         "torchinfo": tool_torchinfo, "fvcore": tool_fvcore, "ptflops": tool_ptflops,
         "torchscan": tool_torchscan}


def _available(name: str) -> bool:
    module = {"torchinfo": "torchinfo", "fvcore": "fvcore", "ptflops": "ptflops",
              "torchscan": "torchscan"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        print(f"note: {name} is not installed; skipped (pip install {module})")
        return False


def _saved_oracle(model, shape) -> float:
    """MB of distinct non-parameter storages saved for backward in a real CPU forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(1, *shape))
    return sum(seen.values()) / 1e6


def _close(key: str, value, truth) -> bool:
    """Exact for counts; torchvision's GMACs to its 3 decimals; saved MB within 0.5%."""
    if value is None or truth is None:
        return value == truth
    if key == "macs" and isinstance(truth, float):
        return round(value / 1e9, 3) == truth
    return abs(value - truth) <= 0.005 * abs(truth) if isinstance(truth, float) else value == truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per case")
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(2)
    bench = Bench.from_args(args)
    tools = {n: f for n, f in TOOLS.items() if _available(n)}
    times_: dict[str, dict[str, Sample]] = {n: {} for n in tools}
    disagreements = []
    for case, (build, shape, true_params, true_macs) in CASES.items():
        model = build().eval()
        truths = dict(params=true_params, macs=true_macs, saved_mb=_saved_oracle(model, shape),
                      rf_layer4=427 if case == "resnet50" else None)
        table = bench.table("tool", "s / summary", "figures", "wrong", title=(
            f"{case} at {'x'.join(map(str, shape))}: true params {true_params:,}, MACs "
            f"{true_macs if isinstance(true_macs, int) else str(true_macs) + 'G'}, saved "
            f"{truths['saved_mb']:.1f} MB" + (", RF layer4 427" if case == "resnet50" else "")))
        results, working = {}, {}
        for name, fn in tools.items():
            try:
                results[name] = fn(model, shape)  # also the warm-up
                working[name] = lambda fn=fn, m=model, sh=shape: fn(m, sh)
            except Exception as err:  # a tool that cannot handle the model is a finding too
                table.row(name, "failed", f"{type(err).__name__}: "
                          f"{str(err).splitlines()[0][:90]}", "")
        samples = bench.alternate(working, rounds=args.repeats, warmup=0)
        for name, result in results.items():
            times_[name][case] = samples[name]
            wrong = [k for k, v in result.items() if v is not None and not _close(k, v, truths[k])]
            cells = ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}"
                              for k, v in result.items() if v is not None)
            table.row(name, seconds(samples[name]), cells, ", ".join(wrong))
            disagreements += [(case, name, k, result[k], truths[k]) for k in wrong]
    table = bench.table("tool", "s / summary (geometric mean)", "vs torchinfo", title=(
        "time per summary, geometric mean over the cases each tool handled; the ratio over the "
        "cases it shares with torchinfo, per round"))
    base = times_.get("torchinfo", {})
    for name, per_case in times_.items():
        if not per_case:
            continue
        shared = [c for c in per_case if c in base]
        speedup = times(geometric_mean([ratio(base[c], per_case[c]) for c in shared]), ".1f") \
            if shared else ""
        table.row(name, seconds(geometric_mean(list(per_case.values()))), speedup)
    convnext_large_time(bench)
    bench.note("disagreements with the truth (tool, figure, tool's value, truth):")
    for case, name, key, value, truth in disagreements:
        bench.note(f"  {case:14s} {name:14s} {key:9s} {value} vs {truth}")
    bench.finish()


def convnext_large_time(bench: Bench, repeats: int = 5) -> None:
    """The issue's target: ConvNeXt-L at 224x224 "well under a second" (model built on CPU)."""
    model = M.convnext_large().eval()
    sample = bench.alternate({"summary": lambda: cnnlab.summary(model, (3, 224, 224))},
                             rounds=repeats, warmup=1)["summary"]
    bench.note("cnnlab.summary(convnext_large, 3x224x224) on meta: ", seconds(sample))


if __name__ == "__main__":
    main()
