"""One self-contained HTML report of a training run or a lab experiment.

Everything is inside the file: images are PNGs embedded as ``data:image/png;base64`` URIs, the
style sheet and the script are inline, and nothing refers to an outside URL — the file can be
mailed or opened offline. What goes in depends on the directory:

* a **training run** (``config.json`` + ``metrics.csv``, from ``cnnlab train`` or
  ``cnnlab transfer``): the configuration, the loss and accuracy curves, an evaluation on the
  test split (top-1, confusion matrix, per-class accuracy, the most confident mistakes shown with
  their images) and the model summary (``cnnlab.summary``);
* a **lab experiment** (``results.json`` from ``cnnlab lab``): the claim, the one-sentence
  result with the verdicts it rests on (each comparison conclusive, or inconclusive at this scale
  with its numbers, flagged at the top), the plots, the settings and environment, the final
  metrics of every network it trained and all the numbers.

A small inline script marks the page when it has loaded: ``data-report-status="ok"`` on the
``<html>`` element when every ``<img>`` decoded (naturalWidth > 0) and no error event fired,
with ``data-images-loaded`` / ``data-images-total`` and ``data-js-errors`` counts (what the
headless-browser test reads back).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import torch

from cnnlab.errors import ConfigError
from cnnlab.text import plural

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid #d8dce3;
padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 16px}.sentence{background:#fff;border-left:5px solid #2f6fdb;padding:14px 18px;
font-size:17px;line-height:1.45;border-radius:4px;box-shadow:0 1px 3px #0001}
.sentence.unsure{border-left-color:#d48a00}.verdict{color:#8a5a00}
figure{background:#fff;margin:12px 0;padding:12px;border-radius:6px;box-shadow:0 1px 3px #0001}
figure img{max-width:100%}figcaption{color:#5b6475;font-size:13px;margin-top:6px}
table{border-collapse:collapse;background:#fff;font-size:13px;box-shadow:0 1px 3px #0001}
td,th{border:1px solid #e1e4ea;padding:4px 9px;text-align:left}th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;padding:12px;overflow-x:auto;font-size:12px;border-radius:6px;box-shadow:0 1px 3px #0001}
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{margin:0;padding:6px;text-align:center;width:112px}
.grid figcaption{font-size:11px}.cols{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
"""

# Marks <html> once loaded: every image decoded and no error event (see the module docstring).
SCRIPT = """
window.__reportErrors = [];
window.addEventListener('error', function (e) {
  window.__reportErrors.push(String(e.message || (e.target && e.target.alt) || 'error'));
}, true);
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0, bad = [];
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } else { bad.push(imgs[i].alt); }
  }
  var root = document.documentElement, errs = window.__reportErrors;
  root.setAttribute('data-images-total', imgs.length);
  root.setAttribute('data-images-loaded', ok);
  root.setAttribute('data-js-errors', errs.length);
  root.setAttribute('data-report-status', bad.length || errs.length ?
    'broken: ' + bad.concat(errs).join('; ') : 'ok');
});
"""


def esc(value) -> str:
    return html.escape(str(value))


def img_tag(png: bytes, alt: str, width: int | None = None) -> str:
    """An <img> with the PNG inline as a base64 data URI."""
    size = f' width="{width}"' if width else ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}"{size} src="data:image/png;base64,{data}">'


def figure(png: bytes, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{img_tag(png, alt)}{cap}</figure>"


def table(rows: list[list], header: list[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(
        f'<td class="num">{esc(c)}</td>' if isinstance(c, (int, float)) else f"<td>{esc(c)}</td>"
        for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def flatten(data: dict, prefix: str = "") -> list[list]:
    """{"train": {"lr": 0.05}} -> [["train.lr", 0.05]] (lists joined with commas)."""
    rows = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flatten(value, name + ".")
        else:
            rows.append([name, ", ".join(map(str, value)) if isinstance(value, list) else value])
    return rows


def fig_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def page(title: str, subtitle: str, sections: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>"
            f"<body><main><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
            + "\n".join(sections) + "</main></body></html>\n")


def section(heading: str, body: str) -> str:
    return f"<section><h2>{esc(heading)}</h2>{body}</section>"


def lab_report(run_dir: Path) -> str:
    """The report of a ``cnnlab lab`` directory (``results.json`` and its PNGs)."""
    from cnnlab.lab import read_results

    r = read_results(run_dir)
    verdicts = r.get("verdicts", [])
    unsure = [v for v in verdicts if not v["conclusive"]]
    evidence = table([[v["claim"], "conclusive" if v["conclusive"] else "inconclusive at this scale",
                       v["detail"]] for v in verdicts], ["what was compared", "verdict", "the numbers"])
    sections = [section("Result", f'<p class="sentence{" unsure" if unsure else ""}">'
                        f'{esc(r["sentence"])}</p>'
                        + (f'<p class="verdict"><strong>Inconclusive at this scale</strong>: '
                           f"{len(unsure)} of {len(verdicts)} comparisons are within noise or rest "
                           f"on a network near chance.</p>" if unsure else "")
                        + f"<p>Claim tested: {esc(r['claim'])}.</p>"
                        + (f"<h3>Evidence</h3>{evidence}" if verdicts else ""))]
    plots = []
    for plot in r.get("plots", []):
        path = run_dir / plot["file"]
        if not path.is_file():
            raise ConfigError(f"{path} is listed in results.json but missing; re-run the experiment")
        plots.append(figure(path.read_bytes(), plot["file"], plot.get("caption", "")))
    if plots:
        sections.append(section("Plots", "".join(plots)))
    runs = _lab_runs(run_dir)
    if runs:
        sections.append(section("Networks trained", table(runs, [
            "run", "epochs", "train loss", "train acc %", "test loss", "test acc %", "seconds"])))
    settings = [["scale", r["scale"]], ["seed", r["seed"]], *flatten(r["settings"])]
    sections.append(section("Configuration", '<div class="cols">' + table(settings, ["setting", "value"])
                            + table(flatten(r["environment"]), ["environment", "value"]) + "</div>"))
    numbers = json.dumps(r["numbers"], indent=1)
    sections.append(section("All numbers", f"<details><summary>results.json numbers "
                            f"({len(numbers):,} characters)</summary><pre>{esc(numbers)}</pre>"
                            f"</details>"))
    sub = (f"cnnlab lab {r['experiment']} · {r['scale']} · seed {r['seed']} · "
           f"{r['elapsed_s']:.0f} s · {r['started']}")
    return page(f"Lab: {r['experiment']}", sub, sections)


def _lab_runs(run_dir: Path) -> list[list]:
    from cnnlab.train import read_metrics

    rows = []
    for metrics in sorted((run_dir / "runs").glob("*/metrics.csv")):
        last = read_metrics(metrics)[-1]
        rows.append([metrics.parent.name, int(last["epoch"]), round(last["train_loss"], 4),
                     round(100 * last["train_acc"], 2), round(last["test_loss"], 4),
                     round(100 * last["test_acc"], 2), round(last["elapsed_s"], 1)])
    return rows


def write_report(run_dir: str | Path, out: str | Path | None = None, data_dir: str | None = None,
                 max_mistakes: int = 24, device: str | None = None) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``run_dir/report.html``); a run
    is evaluated on ``device`` (default: the run's own)."""
    from cnnlab.lab import RESULTS_FILE

    run_dir = Path(run_dir)
    if (run_dir / RESULTS_FILE).is_file():
        text = lab_report(run_dir)
    elif (run_dir / "config.json").is_file():
        text = run_report(run_dir, data_dir, max_mistakes, device)
    else:
        raise ConfigError(f"{str(run_dir)!r} is neither a training run (config.json) nor a lab "
                          f"experiment (results.json); pass the --out of `cnnlab train` or `cnnlab lab`")
    out = Path(out) if out else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def image_png(image: torch.Tensor, scale: int = 3) -> bytes:
    """A uint8 (C, H, W) image (C = 1 or 3) as PNG bytes, enlarged ``scale`` times (nearest)."""
    from torchvision.io import encode_png

    big = image.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    return bytes(encode_png(big.contiguous().cpu()).numpy())


def _transfer_table(record: dict) -> str:
    """Where a transfer run came from: source, what was frozen, the feature cache."""
    rows = [["source", record.get("source") or record["source_model"]["name"]],
            ["source model", record["source_model"]["name"]],
            ["freeze policy", record["freeze"]],
            ["frozen stages", ", ".join(record.get("frozen_stages") or []) or "none"],
            ["target", record["target"]["name"] + (f" classes {record['target']['classes']}"
                                                   if record["target"].get("classes") else "")]]
    if record.get("cache_features"):
        precision = record.get("cache_precision") or {}
        layout = ", channels_last" if precision.get("channels_last") else ""
        rows += [["feature cache", f"the output of {record.get('cache_point', '?')}, computed once "
                  f"({precision.get('name', '?')}{layout}); the head trained on it"],
                 *[["cache file", path] for path in record.get("cache_files", [])],
                 ["cached views", record.get("cache_views", "none")]]
    else:
        rows.append(["backbone learning rate", f"lr x {record['backbone_lr_scale']}"])
    return table(rows)


def run_report(run_dir: Path, data_dir: str | None = None, max_mistakes: int = 24,
               device: str | None = None) -> str:
    """The report of a training (or transfer) run: config, curves, evaluation, model summary."""
    from cnnlab.analysis import summary
    from cnnlab.report.confusion import plot_confusion
    from cnnlab.runs import evaluate_run
    from cnnlab.train import read_metrics
    from cnnlab.train.runlog import draw_curves

    found = evaluate_run(run_dir, data_dir=data_dir, device=device)  # the run's own settings
    config, model, test_set, result = found.config, found.model, found.test_set, found.result
    history = read_metrics(run_dir / "metrics.csv")
    sections = [section("Training curves", figure(fig_png(draw_curves(history)), "training curves",
                        "Cross-entropy and accuracy after each epoch (train: running mean over "
                        "the epoch; test: the whole test split)."))]
    confusion = run_dir / ".report_confusion.png"
    plot_confusion(result.confusion, test_set.classes, confusion,
                   f"confusion matrix · top-1 {result.accuracy:.2%}")
    per_class = [[i, name, int(result.confusion[i].sum()), round(100 * acc, 2)]
                 for i, (name, acc) in enumerate(zip(test_set.classes,
                                                     result.per_class_accuracy.tolist()))]
    metrics = [["test images", len(test_set)], ["evaluated with", found.settings.describe()],
               ["top-1 accuracy %", round(100 * result.accuracy, 2)],
               ["test loss", round(result.loss, 4)]]
    if result.top5 is not None:
        metrics.append(["top-5 accuracy %", round(100 * result.top5, 2)])
    if result.ece is not None:
        metrics.append(["expected calibration error % (15 bins)", round(100 * result.ece, 2)])
    body = ('<div class="cols">' + table(metrics, ["metric", "value"])
            + table(per_class, ["label", "class", "images", "accuracy %"]) + "</div>"
            + figure(confusion.read_bytes(), "confusion matrix",
                     "Rows: true class; columns: predicted; colour: fraction of the row."))
    confusion.unlink()
    sections.append(section("Evaluation on the test split", body))
    sections.append(section(f"Most confident mistakes (up to {max_mistakes})",
                            _mistakes(result.probs, test_set, max_mistakes)))
    sections.append(section("Configuration", table(flatten(config.to_dict()), ["key", "value"])))
    from cnnlab.transfer import freeze_as_trained, read_transfer

    record = read_transfer(run_dir)
    if record:
        sections.insert(0, section("Transfer", _transfer_table(record)))
    freeze_as_trained(run_dir, model)  # the summary counts what the run froze
    shape = (config.model.in_chans, config.model.input_size, config.model.input_size)
    sections.append(section(f"Model summary at {'x'.join(map(str, shape))}",
                            f"<pre>{esc(summary(model, shape, depth=2))}</pre>"))
    last = history[-1]
    origin = f" · transferred from {record.get('source') or 'weights'}" if record else ""
    sub = (f"{config.model.name} on {config.data.name}{origin} · {plural(int(last['epoch']), 'epoch')} · "
           f"final test accuracy {last['test_acc']:.2%} · {run_dir}")
    return page(f"Run: {run_dir.name}", sub, sections)


def _mistakes(probs: torch.Tensor, test_set, limit: int) -> str:
    """A grid of the misclassified test images the model was most sure about."""
    pred = probs.argmax(1)
    wrong = (pred != test_set.labels).nonzero().flatten()
    if not len(wrong):
        return "<p>No test image was misclassified.</p>"
    order = wrong[probs[wrong, pred[wrong]].argsort(descending=True)][:limit]
    cells = []
    for i in order.tolist():
        true, guess = test_set.classes[test_set.labels[i]], test_set.classes[pred[i]]
        caption = f"#{i}: {true} → {guess} ({probs[i, pred[i]]:.0%})"
        cells.append(f"<figure>{img_tag(image_png(test_set.images[i]), f'test image {i}')}"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    return (f"<p>{len(wrong):,} of {len(test_set):,} test images misclassified; shown: true class → "
            f"predicted (its probability).</p><div class=\"grid\">{''.join(cells)}</div>")
