"""cnnlab.summary against torchinfo, fvcore, ptflops and torchscan: totals, disagreements, time.

Truth for each figure is independent of every tool: torchvision's weight metadata (params and
"GFLOPS" = GMACs), the ConvTranspose2d formula (C_in x C_out/g x k x k per *input* position), the
receptive field of ResNet-50's layer4 (427, checked by autograd in tests/analysis), and a real
CPU forward with saved_tensors_hooks for the activations kept for backward.

The timing baseline is torchinfo, measured in the same run: each tool's median seconds per summary
of the same CPU model (cnnlab traces on meta by default; its real-CPU mode is listed too).
Tools that are not installed are skipped with a note (they are dev-only: `pip install torchinfo
fvcore ptflops torchscan`).

    .venv/bin/python benchmarks/bench_summary_tools.py
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
import warnings

import torch
import torchvision
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


def main(repeats: int = 3) -> None:
    torch.set_num_threads(2)
    tools = {n: f for n, f in TOOLS.items() if _available(n)}
    times: dict[str, list[float]] = {n: [] for n in tools}
    disagreements = []
    for case, (build, shape, true_params, true_macs) in CASES.items():
        model = build().eval()
        truths = dict(params=true_params, macs=true_macs, saved_mb=_saved_oracle(model, shape),
                      rf_layer4=427 if case == "resnet50" else None)
        print(f"\n== {case} at {'x'.join(map(str, shape))}: true params {true_params:,}, MACs "
              f"{true_macs if isinstance(true_macs, int) else str(true_macs) + 'G'}, saved "
              f"{truths['saved_mb']:.1f} MB" + (", RF layer4 427" if case == "resnet50" else ""))
        for name, fn in tools.items():
            try:
                fn(model, shape)  # warm-up
                elapsed = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    result = fn(model, shape)
                    elapsed.append(time.perf_counter() - start)
            except Exception as err:  # a tool that cannot handle the model is a finding too
                print(f"  {name:14s} failed: {type(err).__name__}: {str(err).splitlines()[0][:90]}")
                continue
            t = statistics.median(elapsed)
            times[name].append(t)
            wrong = [k for k, v in result.items() if v is not None and not _close(k, v, truths[k])]
            cells = ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}"
                              for k, v in result.items() if v is not None)
            print(f"  {name:14s} {t:7.3f} s  {cells}" + (f"   WRONG: {', '.join(wrong)}"
                                                          if wrong else ""))
            disagreements += [(case, name, k, result[k], truths[k]) for k in wrong]
    print("\n== time per summary, geometric mean over the cases, relative to torchinfo")
    base = times.get("torchinfo")
    for name, ts in times.items():
        if ts:
            gm = statistics.geometric_mean(ts)
            ratio = f"{statistics.geometric_mean(base) / gm:5.1f}x faster" if base else ""
            print(f"  {name:14s} {gm:7.3f} s  {ratio}")
    print("\n== disagreements with the truth (tool, figure, tool's value, truth)")
    for case, name, key, value, truth in disagreements:
        print(f"  {case:14s} {name:14s} {key:9s} {value} vs {truth}")


def convnext_large_time(repeats: int = 5) -> None:
    """The issue's target: ConvNeXt-L at 224x224 "well under a second" (model built on CPU)."""
    model = M.convnext_large().eval()
    cnnlab.summary(model, (3, 224, 224))
    elapsed = []
    for _ in range(repeats):
        start = time.perf_counter()
        cnnlab.summary(model, (3, 224, 224))
        elapsed.append(time.perf_counter() - start)
    print(f"\n== cnnlab.summary(convnext_large, 3x224x224) on meta: median "
          f"{statistics.median(elapsed):.3f} s, min {min(elapsed):.3f} s over {repeats}")


if __name__ == "__main__":
    main()
    convnext_large_time()
