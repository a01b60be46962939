"""Renders every generated part of the docs from the code and from committed result files.

Nothing measured is typed into the Markdown. Each figure comes from one of:

- the model registry and the weights metadata (``cnnzoo/models/pretrained/*.json``, written by ``cnnzoo publish``
  and re-measured by ``benchmarks/evaluate_weights.py``);
- ``benchmarks/results/*.json``, written by the benchmark that measured it (``recipes.py``,
  ``transfer_mnist1k.py``, ``train_throughput.py``).

``docs/pretrained.md`` is generated whole. Other pages keep their prose, and the generator fills the blocks between
``<!-- generated: NAME -->`` and ``<!-- end generated -->``. ``tests/test_docs.py`` fails when a page is stale.

    python docs/generate.py           # rewrite the pages
    python docs/generate.py --check   # exit 1, naming the stale pages
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import cnnzoo
from cnnzoo.cli import recipe_summary
from cnnzoo.cli.trainer import DEFAULT_SEED
from cnnzoo.models.commands import model_summary_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
NOT_MEASURED = "not measured here"
TRANSFER_RECIPES = ("pretrain_resnet18_cifar10_folder", "transfer_resnet18_mnist1k")


def results(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _machine(entry: dict[str, Any]) -> str:
    hw = entry.get("hardware", {})
    return _core_cpu(hw) if hw.get("accelerator") == "CPUAccelerator" else "GPU"


MACHINE_KEYS = ("cpu_count", "cpu_capability", "processor", "threads")


def _same_machine(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...] = MACHINE_KEYS) -> bool:
    """Whether two result files say that one kind of machine measured them (a file that does not say: no)."""
    return all(a.get(k) is not None and a.get(k) == b.get(k) for k in keys)


def _core_cpu(r: dict[str, Any], threads: bool = False) -> str:
    """'2-core CPU', with the vector instructions torch used (where the result file recorded them) and the threads."""
    notes = [r["cpu_capability"]] if r.get("cpu_capability") else []
    notes += [f"{r['threads']} threads"] if threads else []
    return f"{r.get('cpu_count', '?')}-core CPU" + (f" ({', '.join(notes)})" if notes else "")


# --- README and index: the quick start -------------------------------------------------------------------------------
def quickstart_line() -> str:
    r = results("recipes").get("lenet5_digits")
    when = f"{r['fit']['process_wall_s']:.0f} s on a {_machine(r)}" if r else "time not measured"
    return (
        f"Train LeNet-5 on real handwritten digits (offline; {when}, measured by `benchmarks/recipes.py`), "
        "from a clone of this repository:\n"
    )


def quickstart_figures() -> str:
    r = results("recipes").get("lenet5_digits")
    if not r:
        return f"Timing and accuracy: {NOT_MEASURED}.\n"
    fit, ev = r["fit"], r["eval"]
    m = ev["metrics"]
    return (
        f"Measured by `benchmarks/recipes.py` on a {_machine(r)}: the run stopped after {fit['epochs']} epochs "
        f"({fit['stop_reason'] or 'epoch budget'}) in {fit['process_wall_s']:.0f} s. Best `val_acc` "
        f"{fit['best']['score']:.3f} at epoch {fit['best']['epoch']}; on the {ev['num_examples']} test images "
        f"`test_acc` {m['test_acc']:.3f}, `test_f1` {m['test_f1']:.3f}.\n"
    )


def models_table() -> str:
    lines = [
        "| name | parameters | multiply-adds | input (C, H, W) | receptive field | what it is |",
        "| --- | ---: | ---: | --- | ---: | --- |",
    ]
    for name, n_params, size, doc in model_summary_rows():
        s = cnnzoo.summary(name)
        spatial = [r for r in s.rows if r.receptive_field and not r.receptive_field.startswith("n/a")]
        rf = f"{spatial[-1].receptive_field} px" if spatial else "-"
        lines.append(f"| `{name}` | {n_params:,} | {s.mult_adds:,} | {'x'.join(map(str, size))} | {rf} | {doc} |")
    return "\n".join(lines) + "\n"


def receptive_fields() -> str:
    lines = [
        "| model | input | last spatial layer | its output | receptive field | jump | multiply-adds |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for name, size in (("lenet5", None), ("vgg16_bn", (3, 32, 32)), ("vgg16_bn", (3, 224, 224)),
                       ("resnet18", (3, 224, 224))):  # fmt: skip
        s = cnnzoo.summary(name, input_size=size)
        last = [r for r in s.rows if r.receptive_field and not r.receptive_field.startswith("n/a")][-1]
        lines.append(
            f"| `{name}` | {'x'.join(map(str, s.input_size))} | `{last.name}` ({last.type}) | "
            f"{'x'.join(map(str, last.output_shape[1:]))} | {last.receptive_field} px | {last.jump} px | "
            f"{s.mult_adds:,} |"
        )
    return "\n".join(lines) + "\n"


REPORT_DIR = ROOT / "docs" / "images" / "report_lenet5_mnist"
REPORT_FIGURES = (
    ("confusion.png", "Confusion matrix, counts and row-normalised"),
    ("mistakes.png", "The most confident mistakes"),
    ("filters.png", "First-layer filters"),
    ("feature_maps.png", "Feature maps of one test image"),
    ("grad_cam.png", "Grad-CAM on the last convolution, four right and four wrong"),
)


def lenet5_report() -> str:
    path = REPORT_DIR / "report.json"
    if not path.is_file():
        return "Not made yet: run the command below.\n"
    r = json.loads(path.read_text())
    lines = [
        f"Made by `{r['command']}` in {r['seconds']:g} s on the CPU: {r['num_examples']:,} test images, accuracy "
        f"{r['accuracy']:.4f}. Grad-CAM looks at `{r['grad_cam_layer']}`.",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, c in r["per_class"].items():
        lines.append(f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']:,} |")
    lines.append("")
    for file, caption in REPORT_FIGURES:
        if (REPORT_DIR / file).is_file():
            lines += [f"![{caption}](images/report_lenet5_mnist/{file})", ""]
    return "\n".join(lines)


def predict_throughput() -> str:
    r = results("predict_throughput")
    if not r:
        return "Not measured yet: run `python benchmarks/predict_throughput.py`.\n"
    p = r["predict"]
    med, ips = p["median_wall_s"], p["images_per_s"]
    ways = {
        "cnnzoo_predict": "`cnnzoo predict --weights lenet5.mnist` (no Trainer)",
        "cnnzoo_predict_trainer": "the same through the Trainer (`--trainer.accelerator=cpu`)",
        "bare_loop": "bare loop: ImageFolder, DataLoader, `inference_mode`",
    }
    lines = [
        f"Measured with `{r['command'].strip()}` on a {_core_cpu(r, threads=True)} with torch {r['torch']}, "
        f"whole processes timed, imports included, {p['rounds']} interleaved rounds:",
        "",
        "| {:,} MNIST test PNGs, batch {}, {} workers | median seconds | images/s |".format(
            p["images"], r["batch_size"], r["workers"]
        ),
        "| --- | ---: | ---: |",
        *(f"| {label} | {med[k]:.1f} | {ips[k]:,.0f} |" for k, label in ways.items()),
        "",
        f"Ratio cnnzoo / bare loop, images per second: {p['ratio']:.2f} (through the Trainer: "
        f"{p['ratio_trainer_path']:.2f}).",
        "",
        "Images per second, median of timed iterations after a warm-up:",
        "",
        "| model | batch | eager | TorchScript | ONNX Runtime |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for model, rows in r.get("backends", {}).items():
        for batch, v in rows.items():
            lines.append(
                f"| `{model}` | {batch.split()[-1]} | {v['eager']:,.0f} | {v['torchscript']:,.0f} | "
                f"{v['onnxruntime']:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def export_matrix() -> str:
    r = results("export_matrix")
    if not r:
        return "Not measured yet: run `python benchmarks/export_matrix.py`.\n"
    formats = ["onnx", "torchscript", "pt2"]
    lines = [
        f"Made by `{r['command'].strip()}` (torch {r['torch']}"
        + (f", on a {_core_cpu(r)}" if r.get("cpu_capability") else "")
        + "): each cell is the exporter and the largest "
        f"|exported - eager| on the check batch (tolerance {r['tolerance']:g}), or why it failed.",
        "",
        "| model | ONNX | TorchScript | torch.export |",
        "| --- | --- | --- | --- |",
    ]
    for model, cells in r["models"].items():
        shown = []
        for fmt in formats:
            c = cells[fmt]
            shown.append(f"{c['exporter']}, {c['max_abs_diff']:.1e}" if c["ok"] else f"fails: {c['reason']}")
        lines.append(f"| `{model}` | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def _bf16_instructions(r: dict[str, Any]) -> tuple[str | None, str]:
    """Whether a result file's CPU had bfloat16 instructions, and the words that say so after the CPU.

    ``("with", " with bfloat16 instructions (avx512_bf16)")``, ``("without", ...)``, or ``(None, "")`` for a file
    that did not record them.
    """
    bf16 = r.get("bf16_instructions")  # bf16-mixed's speed depends on them; older files did not record them
    has = None if bf16 is None else "with" if bf16 else "without"
    return has, "" if has is None else f" {has} bfloat16 instructions" + (f" ({', '.join(bf16)})" if bf16 else "")


# The same benchmark on two CPUs: whether bf16-mixed pays depends on the CPU's bfloat16 instructions.
SPEED_SWITCH_FILES = ("speed_switches", "speed_switches_bf16_cpu")


def speed_switches() -> str:
    measured = [r for r in map(results, SPEED_SWITCH_FILES) if r]
    if not measured:
        return "Not measured yet: run `python benchmarks/speed_switches.py`.\n"
    lines = [
        f"Measured with `python benchmarks/speed_switches.py`, with torch {measured[0]['torch']}: images/s, median "
        "after a warm-up; training at batch 128 (SGD), inference at batch 64. `bf16-mixed` is the eager network "
        "under `--trainer.precision bf16-mixed` (what `16-mixed` becomes on a CPU).",
    ]
    ratios = []
    for r in measured:
        has, named = _bf16_instructions(r)
        lines += [
            "",
            f"On a {_core_cpu(r, threads=True)}{named}, by `{r['command'].strip()}`:",
            "",
            "| model | switch | training | inference | first training step |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for model, rows in r["models"].items():
            for name, v in rows.items():
                lines.append(
                    f"| `{model}` | {name} | {v['train_images_per_s']:,.0f} | {v['inference_images_per_s']:,.0f} | "
                    f"{v['first_train_step_s']:.2f} s |"
                )
        each = " and ".join(
            f"`{model}` {rows['bf16-mixed']['train_images_per_s'] / rows['eager']['train_images_per_s']:.2f}x"
            for model, rows in r["models"].items()
            if "bf16-mixed" in rows
        )
        if each:
            cpu = f"the {_core_cpu(r)}" if has is None else f"the CPU {has} bfloat16 instructions"
            ratios.append(f"on {cpu}, {each}")
    if ratios:
        lines += ["", "`bf16-mixed` against eager float32, training images/s: " + "; ".join(ratios) + "."]
    return "\n".join(lines) + "\n"


def lenet5_summary() -> str:
    # Markdown as the summary writes it, so the site and GitHub show a table rather than its source.
    return cnnzoo.summary("lenet5").to_markdown()


def vgg_fast_summary() -> str:
    return cnnzoo.summary("vgg_cifar_fast").to_markdown()


# The zoo's own subcommands; fit/validate/test/predict are LightningCLI's, whose --help lists every option.
CLI_COMMANDS = ("recipes", "models", "summary", "report", "export", "weights", "publish", "show-augment")


def cli_help() -> str:
    """``cnnzoo --help`` and each zoo subcommand's, at a fixed width so the page does not depend on the terminal."""
    import contextlib
    import io
    import os

    from cnnzoo.cli import main as cli_main

    os.environ["COLUMNS"] = "100"
    parts = []
    for args in ([], *([c] for c in CLI_COMMANDS)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), contextlib.suppress(SystemExit):
            cli_main([*args, "--help"])
        title = f"cnnzoo {' '.join(args)} --help".replace("  ", " ")
        parts.append(f"## `{title}`\n\n```text\n{out.getvalue().rstrip()}\n```\n")
    return "\n".join(parts)


# --- the fast CIFAR recipe -------------------------------------------------------------------------------------------
def _val_acc_by_epoch(per_epoch: list[dict[str, Any]]) -> list[str]:
    """A run's validation accuracy as a one-row table, one column per epoch (counted from 1)."""
    return [
        "| epoch | " + " | ".join(str(e["epoch"] + 1) for e in per_epoch) + " |",
        "| --- | " + " | ".join("---:" for _ in per_epoch) + " |",
        "| val_acc | " + " | ".join(f"{e['val_acc']:.4f}" for e in per_epoch) + " |",
    ]


def fast_cifar() -> str:
    r = results("fast_cifar")
    if not r:
        return f"Sample efficiency: {NOT_MEASURED} (run `python benchmarks/fast_cifar.py`).\n"
    first = r["first_epoch_at_target_without_tta"]
    target = f"{r['target']:.0%}"
    reached = (
        f"Validation accuracy without test-time augmentation first reached {target} after epoch {first}."
        if first
        else f"Validation accuracy without test-time augmentation did not reach {target} in any epoch."
    )
    lines = [
        f"Measured by `{r['command'].strip()}` on a {_core_cpu(r['hardware'])}: "
        f"`{r['fit']['command']}` ran {r['fit']['epochs']} epochs ({r['fit']['global_step']} steps) in "
        f"{r['fit']['wall_s'] / 60:.0f} minutes. Validation is the {r['split']}. {reached}",
        "",
        *_val_acc_by_epoch(r["per_epoch"]),
        "",
        "The last checkpoint (the lookahead average) evaluated with each test-time augmentation:",
        "",
        "| tta | val_acc | val_loss | images | wall time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for level, t in r["tta"].items():
        lines.append(
            f"| `{level}` | {t['val_acc']:.4f} | {t['val_loss']:.4f} | {t['num_examples']:,} | "
            f"{t['process_wall_s']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def fast_cifar_ab() -> str:
    """The recipe against airbench's own code on the same split, from the runs on a lent GPU (results/gpu/)."""
    gpu = RESULTS / "gpu"
    ours = [json.loads(p.read_text()) for p in sorted(gpu.glob("fast_cifar_seed*.json"))]
    wide = [json.loads(p.read_text()) for p in sorted(gpu.glob("fast_cifar_wide_seed*.json"))]
    theirs = {n: results(f"gpu/airbench{n}_ab") for n in ("", "94")}
    if not ours or not all(theirs.values()):
        return f"The comparison with airbench's own code: {NOT_MEASURED} (run `python benchmarks/airbench_ab.py`).\n"

    def mean(values: list[float]) -> str:
        return f"{sum(values) / len(values):.4f}"

    def row(name: str, runs: list[dict[str, Any]], epochs: Any, final: list[float], tta: list[float]) -> str:
        return f"| {name} | {epochs:g} | {len(runs)} | {mean(final)} | {mean(tta)} | {min(tta):.4f}-{max(tta):.4f} |"

    def cnnzoo_row(name: str, runs: list[dict[str, Any]]) -> str:
        final = [r["per_epoch"][-1]["val_acc"] for r in runs]
        tta = [r["tta"]["mirror_translate"]["val_acc"] for r in runs]
        return row(name, runs, runs[0]["fit"]["epochs"], final, tta)

    def airbench_row(name: str, r: dict[str, Any]) -> str:
        final = [run["per_epoch"][-1]["val_acc"] for run in r["runs"]]
        return row(name, r["runs"], r["epochs"], final, [run["tta_val_acc"] for run in r["runs"]])

    fit_walls = [r["fit"]["wall_s"] for r in ours]
    train_walls = [run["train_seconds"] for run in theirs[""]["runs"]]
    lines = [
        f"Is the gap to 93% the method or the data? `python benchmarks/airbench_ab.py` ran airbench's own, unmodified "
        f"training code on this recipe's split (its 45,000 training and 5,000 validation images, in airbench's "
        f"layout), and `python benchmarks/fast_cifar.py --seed_everything N` ran the recipe, on a lent "
        f"{theirs['']['hardware']['gpu']} (`{ours[0]['hardware']['precision']}`; airbench trains in fp16). "
        "Accuracy per epoch does not depend on the hardware.",
        "",
        "| code, net | epochs | runs | mean val_acc | mean val_acc, `mirror_translate` | range, `mirror_translate` |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        cnnzoo_row("cnnzoo recipe, `vgg_cifar_fast`", ours),
        airbench_row("airbench93 (its own code)", theirs[""]),
    ]
    if wide:
        lines.append(cnnzoo_row("cnnzoo recipe, `vgg_cifar_fast_wide`, `--trainer.max_epochs 10`", wide))
    ours_tta = sum(r["tta"]["mirror_translate"]["val_acc"] for r in ours) / len(ours)
    gap = ours_tta - theirs[""]["mean_tta_val_acc"]
    verdict = (
        "The recipe matches airbench's own code on the same images (within the spread of the seeds): the method is "
        "reproduced, and these JPEG-compressed images (with 5,000 held out) cap both below the 93% and 94% that "
        "airbench reports on the lossless CIFAR-10 test set."
        if abs(gap) < 0.005
        else "The recipe does not match airbench's own code on the same images."
    )
    lines += [
        airbench_row("airbench94 (its own code)", theirs["94"]),
        "",
        f"cnnzoo minus airbench93, mean with `mirror_translate`: {gap:+.4f}. {verdict} "
        f"On the GPU one `cnnzoo fit` of the recipe took {min(fit_walls):.1f}-{max(fit_walls):.1f} s "
        f"(12 epochs, validating every epoch); airbench's timed training took {min(train_walls):.1f}-"
        f"{max(train_walls):.1f} s.",
    ]
    return "\n".join(lines) + "\n"


def cifar_throughput() -> str:
    r = results("cifar_throughput")
    if not r:
        return f"Throughput: {NOT_MEASURED} (run `python benchmarks/cifar_throughput.py`).\n"
    ways, over = r["ways"], r["per_epoch_overhead_s"]

    def way_row(label: str, w: dict[str, Any]) -> str:
        (q1, q3), (lo, hi) = w["ratio_quartiles"], w["ratio_interval_95"]
        return (
            f"| {label} | {w['images_per_s']:.1f} | {w['plain_images_per_s']:.1f} | **{w['ratio_to_plain']:.3f}** "
            f"({lo:.2f}-{hi:.2f}) | {q1:.3f}-{q3:.3f} | {w['pairs']} |"
        )

    s = r["settings"]
    lines = [
        f"Measured by `{r['command'].strip()}` on a {_core_cpu(r, threads=True)}, batch "
        f"{r['batch_size']}, `{r['model']}`. Each way ran paired with the plain PyTorch loop in the same process: "
        f"{s['segment']} training steps of the way, then {s['segment']} of the plain loop, and so on. A ratio is "
        "the plain step / the way's step over one pair, so the machine's drift cancels.",
        "",
        "| how it trains | images/s | plain loop, same pairs | plain step / its step, median (95% interval) | "
        "quartiles | pairs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        way_row("`cnnzoo fit` with the CLI's defaults", ways["cnnzoo_fit"]),
        way_row("bare Lightning `Trainer`", ways["bare_trainer"]),
        "",
        "The interval is a bootstrap over the pairs: the uncertainty of the median, which the quartiles are not "
        f"(they are the spread of single pairs, segments of {s['segment']} steps of about "
        f"{r['batch_size'] / ways['cnnzoo_fit']['plain_images_per_s']:.1f} s on this shared machine).",
        "",
        f"A step is timed whole, batch fetch and augmentation included. Per epoch, validating the 5,000 held-out "
        f"images took {over['validation']:.1f} s, and validation plus checkpoint saving and logging "
        f"{over['validation_checkpoint_logging']:.1f} s. The in-memory cache of the "
        f"{r['folder_cache']['images']:,} training JPEGs took {r['folder_cache']['first_load_s']:.0f} s to build "
        f"(decode and write) and {r['folder_cache']['second_load_s']:.0f} s to load on the next run.",
    ]
    apart = results("step_overhead")
    overhead = apart.get("ways", {}).get("cli")
    # A ratio of figures from two result files means something only if one machine measured both.
    if overhead and _same_machine(apart, r):
        step = r["batch_size"] / ways["cnnzoo_fit"]["plain_images_per_s"]
        lines += [
            "",
            f"Measured apart (`benchmarks/step_overhead.py`, on [the data page](data.md)), `cnnzoo fit` adds "
            f"{overhead['overhead_ms']:.1f} ms of work to a step, {100 * overhead['overhead_ms'] / 1e3 / step:.2f}% "
            f"of this net's plain step of {step:.1f} s.",
        ]
    return "\n".join(lines) + "\n"


def cifar_cpu_cost() -> str:
    r = results("cifar_cpu_cost")
    if not r:
        return f"CPU cost: {NOT_MEASURED} (run `python benchmarks/cifar_cpu_cost.py`).\n"
    nets, n = r["nets"], r["train_images_per_epoch"]
    labels = {"channels_last": "channels_last", "nchw": "NCHW", "compile": "channels_last, `torch.compile`"}

    def row(net: str, key: str) -> str:
        cost = nets[net]["settings"].get(key, {})
        if not cost.get("images_per_s"):
            return f"| `{net}` | {labels[key]} | did not run here: {cost.get('error') or 'not measured'} | | |"
        return (
            f"| `{net}` | {labels[key]} | {cost['images_per_s']:.1f} | {cost['s_per_epoch']:.0f} s | "
            f"{cost['first_step_s']:.1f} s |"
        )

    def interval(x: dict[str, Any]) -> str:
        return f"**{x['median']:.2f}x** (95% interval {x['interval_95'][0]:.2f}-{x['interval_95'][1]:.2f})"

    wide = r["wide_over_fast_step"]
    lines = [
        f"What the recipe costs on this machine: `{r['command'].strip()}` timed the plain PyTorch loop of the "
        f"recipe alone on a {_core_cpu(r, threads=True)}, batch {r['batch_size']}, for the 93% "
        "and the 94% width, each in three settings, all interleaved one step each so that every one meets the same "
        f"machine (median of {r['settings']['steps'] - 1} steps after the first):",
        "",
        f"| net | plain loop | images/s | one epoch of {n:,} | first step |",
        "| --- | --- | ---: | ---: | ---: |",
        *(row(net, key) for net in nets for key in labels),
        "",
        "Step by step, channels_last over NCHW: "
        + "; ".join(f"`{net}` {interval(v['speedup']['channels_last'])}" for net, v in nets.items())
        + ". `torch.compile` over channels_last alone: "
        + "; ".join(
            f"`{net}` {interval(v['speedup']['compile'])}" if "compile" in v["speedup"] else f"`{net}` not measured"
            for net, v in nets.items()
        )
        + f". A step of `vgg_cifar_fast_wide` costs {interval(wide)} one of `vgg_cifar_fast`. The first step "
        "under `torch.compile` includes the compilation (less of it when torch's on-disk compile cache is warm).",
        "",
        f"Validating the {r['validation_images']:,} held-out images (channels_last, no test-time augmentation) "
        "took "
        + ", ".join(f"{v['validation_s']:.1f} s with `{net}`" for net, v in nets.items())
        + ". So a run of the recipe, training and validation, comes to about "
        + " and ".join(
            f"{v['projected_run_s'] / 60:.0f} minutes for `{net}` ({v['epochs']} epochs)" for net, v in nets.items()
        )
        + " here: a projection from the steps above, not a timed run.",
    ]
    published, fast = results("fast_cifar"), nets.get("vgg_cifar_fast")
    if published and fast:
        times = published["fit"]["wall_s"] / fast["projected_run_s"]
        # The run and the projection are compared as measured together only where both files say one machine.
        why = (
            "start-up, the data cache, checkpoints and logging are in the run, not in the projection"
            if _same_machine(published.get("hardware", {}), r, keys=("cpu_count", "cpu_capability", "processor"))
            else "the run's result file does not record the machine the way this one does, and this shared 2-core "
            "VM's speed varies from day to day, so the two compare loosely"
        )
        lines[-1] += (
            f" The published {published['fit']['epochs']}-epoch run of `vgg_cifar_fast` (above) took "
            f"{published['fit']['wall_s'] / 60:.0f} minutes, {times:.2f}x the projection: {why}."
        )
    return "\n".join(lines) + "\n"


def fast_cifar_precision() -> str:
    """The recipe run twice on one CPU with bfloat16 instructions: in 32-true and in bf16-mixed."""
    runs = {p: results(f"fast_cifar_cpu_{p.replace('-', '_')}") for p in ("32-true", "bf16-mixed")}
    if not all(runs.values()):
        return f"The recipe in bf16-mixed on a CPU: {NOT_MEASURED} (see `benchmarks/fast_cifar.py`).\n"
    single, mixed = runs.values()
    hw = mixed["hardware"]
    if not _same_machine(single["hardware"], hw, keys=("cpu_count", "cpu_capability", "processor")):
        raise SystemExit("fast_cifar_cpu_*.json: the two precisions were measured on different machines")
    lines = [
        f"On a {_core_cpu(hw)}{_bf16_instructions(hw)[1]}, on {mixed['measured_on']}, the recipe ran in each "
        "precision: "
        + " and ".join(f"`{shlex.join(_without_root(r['fit']['command']))}`" for r in runs.values())
        + ". The whole fit is timed (start-up, loading the data cache, validation and checkpoints included), and its "
        "last checkpoint was validated with `mirror_translate` in the same precision:",
        "",
        "| | " + " | ".join(f"`{p}`" for p in runs) + " |",
        "| --- | " + " | ".join("---:" for _ in runs) + " |",
        "| whole fit | " + " | ".join(f"{r['fit']['wall_s'] / 60:.1f} min" for r in runs.values()) + " |",
    ]
    for i, e in enumerate(single["per_epoch"]):
        lines.append(
            f"| val_acc after epoch {e['epoch'] + 1} | "
            + " | ".join(f"{r['per_epoch'][i]['val_acc']:.4f}" for r in runs.values())
            + " |"
        )
    lines.append(
        "| last checkpoint, `mirror_translate` | "
        + " | ".join(f"{r['tta']['mirror_translate']['val_acc']:.4f}" for r in runs.values())
        + " |"
    )
    speedup = single["fit"]["wall_s"] / mixed["fit"]["wall_s"]
    lines += [
        "",
        f"`bf16-mixed` ran the whole fit {speedup:.2f}x as fast. On a CPU without these instructions it is the other "
        "way round (the speed-switch tables of the [export guide](export.md)), and the CLI says so when it is asked "
        "for there. Unset, `trainer.precision` stays `32-true` on every CPU. Measured by "
        + " and ".join(f"`{r['command'].strip()}`" for r in runs.values())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def fast_cifar_wide() -> str:
    r = results("fast_cifar_wide_cpu")
    if not r:
        return f"The 94% width on this CPU: {NOT_MEASURED} (see `benchmarks/fast_cifar.py`).\n"
    per_epoch, tta = r["per_epoch"], r["tta"]
    passed = {t: next((e["epoch"] + 1 for e in per_epoch if e["val_acc"] >= t), None) for t in (0.93, 0.94)}
    reached = (
        "no epoch reached " + " or ".join(f"{t:.0%}" for t in passed)
        if not any(passed.values())
        else "; ".join(f"{t:.0%} first after epoch {e}" if e else f"{t:.0%} in no epoch" for t, e in passed.items())
    )
    lines = [
        f"The 94% width, run to completion on a CPU (`{r['command'].strip()}`): `{r['fit']['command']}` took "
        f"{r['fit']['wall_s'] / 60:.0f} minutes on a {_machine(r)} for {r['fit']['epochs']} epochs "
        f"({r['fit']['global_step']} steps), start-up, validation and checkpoints included. Without test-time "
        f"augmentation, {reached}.",
        "",
        *_val_acc_by_epoch(per_epoch),
        "",
        "The last checkpoint with each test-time augmentation: "
        + ", ".join(f"`{level}` {t['val_acc']:.4f}" for level, t in tta.items())
        + f" ({next(iter(tta.values()))['num_examples']:,} images).",
    ]
    published = [n for n in cnnzoo.list_pretrained() if _same_fit(cnnzoo.get_weights(n).command, r["fit"]["command"])]
    cost = results("cifar_cpu_cost")
    projected = cost.get("nets", {}).get("vgg_cifar_fast_wide")
    # A projection from one kind of CPU says little about a run on another (AVX512 and AVX2 differ severalfold).
    if projected and _same_machine(r.get("hardware", {}), cost, keys=("cpu_count", "cpu_capability", "processor")):
        lines[0] += (
            f" The projection above, from the plain loop's steps, said {projected['projected_run_s'] / 60:.0f} minutes."
        )
    elif projected:
        lines[0] += (
            f" The projection above ({projected['projected_run_s'] / 60:.0f} minutes) was measured on a "
            f"{_core_cpu(cost)}, so it does not apply to this run."
        )
    gpu = sorted((RESULTS / "gpu").glob("fast_cifar_wide_seed*.json"))
    if gpu:
        g = json.loads(gpu[0].read_text())
        seeded = any("--seed_everything" in c for c in (g["fit"]["command"], r["fit"]["command"]))
        lines[-1] += (
            f" The same command on the lent GPU on {g['measured_on']} (`{g['hardware']['precision']}`"
            f"{'' if seeded else ', the same default seed'}): "
            f"{g['per_epoch'][-1]['val_acc']:.4f}, and {g['tta']['mirror_translate']['val_acc']:.4f} with "
            "`mirror_translate`."
        )
    if published:
        w = cnnzoo.get_weights(published[0])
        lines[-1] += (
            f" This CPU run's last checkpoint is published as `{w.name}` ({w.dtype}, {w.num_bytes / 2**20:.1f} MiB; "
            f"val_acc {w.metric('val_acc'):.4f} with `{w.tta}`, measured on that file)."
        )
    return "\n".join(lines) + "\n"


def lenet_fit_wall() -> str:
    r = results("lenet_fit_wall")
    if not r:
        return f"The whole `cnnzoo fit`: {NOT_MEASURED} (run `python benchmarks/lenet_fit_wall.py`).\n"
    med, b = r["median_wall_s"], r["cnnzoo_fit_breakdown_s"]
    hidden, without = " and ".join(r["hidden_packages"]), "_without_scipy_matplotlib"
    # (what runs, the table and key of its median, and whether it was also run with the packages hidden: key + without)
    rows = [
        (
            f"`cnnzoo fit -c lenet5_mnist --data.augment none --trainer.max_epochs {r['epochs']}`",
            med,
            "cnnzoo_fit",
            True,
        ),
        ("a plain script doing the same work (validation and `torch.save` each epoch)", med, "plain_script", False),
        ("of the `cnnzoo fit` process: the `fit` call itself", b, "fit_call", True),
        ("of the `cnnzoo fit` process: start-up and exit around it", b, "outside_fit_call", True),
        ("`python -c 'import lightning.pytorch'` alone", b, "import_lightning_pytorch", True),
        ("`python -c 'import torch, torchvision'` alone", b, "import_torch_torchvision", False),
    ]
    lines = [
        f"Measured with `{r['command'].strip()}` on a {_core_cpu(r)}, whole processes, "
        f"{r['rounds']} interleaved rounds, {r['epochs']} epochs each. Lightning imports torchmetrics, which imports "
        f"{hidden} at its own import whenever they are installed "
        "([torchmetrics#3457](https://github.com/Lightning-AI/torchmetrics/issues/3457)); cnnzoo needs them only for "
        "its `digits` and `report` extras, and LeNet-5's `fit` uses neither. The last column hides the two from the "
        "process, as in an install without those extras:",
        "",
        f"| what runs | median seconds | without {hidden} |",
        "| --- | ---: | ---: |",
        *(
            f"| {what} | {table[key]:.1f} | {f'{table[key + without]:.1f}' if both else '—'} |"
            for what, table, key, both in rows
        ),
        "",
        f"`cnnzoo fit` / plain script, wall time: {r['ratio_fit_to_plain']:.2f} "
        f"({r[f'ratio_fit{without}_to_plain']:.2f} without {hidden}).",
    ]
    return "\n".join(lines) + "\n"


# --- recipes -----------------------------------------------------------------------------------------------------
def _init(node: Any) -> dict[str, Any]:
    return (node or {}).get("init_args", {}) if isinstance(node, dict) else {}


def _short(class_path: str | None) -> str:
    return (class_path or "").rsplit(".", 1)[-1]


def _recipe_columns(path: Path) -> tuple[str, str, str, str]:
    cfg = yaml.safe_load(path.read_text())
    model = cfg.get("model", {})
    args = _init(model)
    arch = args.get("model") or (f"timm {args['backbone']}" if "backbone" in args else "lenet5")
    data = _short(cfg.get("data", {}).get("class_path"))
    opt = args.get("optimizer", {})
    opt_text = f"{_short(opt.get('class_path'))} {_init(opt).get('lr', '')}".strip()
    sched = args.get("lr_scheduler")
    if sched:
        opt_text += f", {_short(sched.get('class_path'))}"
    budget = f"{cfg.get('trainer', {}).get('max_epochs', '?')} epochs"
    patience = (cfg.get("early_stopping") or {}).get("patience")
    if patience is not None:
        budget += f", patience {patience}"
    return arch, data, opt_text, budget


def _without_root(command: str) -> list[str]:
    """A fit command's words without ``--trainer.default_root_dir DIR`` (where a benchmark put its run)."""
    words = shlex.split(command)
    drop = {i for i, w in enumerate(words) if w == "--trainer.default_root_dir"}
    return [w for i, w in enumerate(words) if i not in drop and i - 1 not in drop and "default_root_dir=" not in w]


def _same_fit(weights_command: str | None, fit_command: str) -> bool:
    """Whether weights trained by ``weights_command`` came from the fit a result file ran as ``fit_command``."""
    return bool(weights_command) and _without_root(fit_command) == _without_root(weights_command or "")


def _run_that_made(w: Any) -> tuple[str, dict[str, Any]] | None:
    """The committed result file whose fit is the one that trained these weights, and its contents."""
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        fit = r.get("fit") if isinstance(r, dict) else None
        if isinstance(fit, dict) and _same_fit(w.command, fit.get("command", "")):
            return path.name, r
    return None


def _measured(entry: dict[str, Any] | None) -> str:
    if not entry:
        return NOT_MEASURED
    fit, ev = entry["fit"], entry["eval"]
    metric = f"{ev['split']}_acc"
    return (
        f"{fit['process_wall_s']:.0f} s on a {_machine(entry)}, {fit['epochs']} epochs; "
        f"{metric} {ev['metrics'][metric]:.4f} (n={ev['num_examples']:,})"
    )


def recipes_table() -> str:
    measured = results("recipes")
    lines = [
        # Four columns, what it trains on lines of one cell: seven columns made the page scroll sideways past
        # "measured here" and squeezed "what it is" to a few words a line.
        "| recipe | what it is | trains | measured here |",
        "| --- | --- | --- | --- |",
    ]
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        first = recipe_summary(path)
        arch, data, opt, budget = _recipe_columns(path)
        shown = _measured(measured.get(path.stem))
        if shown == NOT_MEASURED and path.stem in TRANSFER_RECIPES:
            shown = "measured in [transfer_learning.md](transfer_learning.md)"
        fast = results("fast_cifar")
        if shown == NOT_MEASURED and fast and fast["recipe"] == f"recipes/{path.name}":
            best = fast["tta"]["mirror_translate"]
            shown = (
                f"{fast['fit']['wall_s'] / 60:.0f} min of `fit` on a {_machine(fast)}, "
                f"{fast['fit']['epochs']} epochs; val_acc {best['val_acc']:.4f} with `tta: mirror_translate` "
                f"(n={best['num_examples']:,}; [below](#the-fast-cifar-recipe))"
            )
        lines.append(f"| `{path.stem}` | {first} | {arch} on {data}<br>{opt}<br>{budget} | {shown} |")
    return "\n".join(lines) + "\n"


def mnist_recipe_row() -> str:
    lines = ["| recipe | command | measured |", "| --- | --- | --- |"]
    for key in ("lenet5_mnist", "simple_cnn_mnist"):
        entry = results("recipes").get(key)
        command = entry["fit"]["command"] if entry else f"cnnzoo fit --config recipes/{key}.yaml"
        lines.append(f"| `{key}.yaml` | `{command}` | {_measured(entry)} |")
    return "\n".join(lines) + "\n"


def throughput_table() -> str:
    r = results("train_throughput")
    if not r:
        return "Not measured yet: run `python benchmarks/train_throughput.py`.\n"
    rates = r["images_per_s"]
    plain = rates["plain_loop"]
    rows = [
        ("(a) cnnzoo, fast path (Lightning Trainer)", rates["cnnzoo_fast"]),
        (f"(b) cnnzoo, per-sample PIL path, {r['settings']['workers']} workers", rates["cnnzoo_per_sample"]),
        ("(c) hand-written PyTorch loop over pre-normalised tensors", plain),
    ]
    if "cnnzoo_fit_cli" in rates:
        rows.append(("(d) `cnnzoo fit` with the CLI's defaults (training steps)", rates["cnnzoo_fit_cli"]))
    lines = [
        f"Measured with `{r['command'].strip()}` (torch {r['torch']}, a {_core_cpu(r)}, batch "
        f"{r['settings']['batch_size']}, median of {r['settings']['repeats']} interleaved rounds):",
        "",
        "| path | images/s | vs plain loop |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {name} | {rate:,.0f} | {rate / plain:.2f} |" for name, rate in rows]
    runs = r.get("runs") or {}
    if runs.get("c"):
        spread = "; ".join(f"({k}) {min(v):,.0f}-{max(v):,.0f}" for k, v in sorted(runs.items()))
        lines += [
            "",
            f"Per round, images/s ranged {spread}: whole runs drift by more than the gaps between the ways, which is "
            "why the per-step overhead below is measured in pairs within one process instead.",
        ]
    return "\n".join(lines) + "\n"


def _way_label(way: str, callbacks: list[str]) -> str:
    fixed = {
        "lightning": "a minimal LightningModule under a bare `Trainer` (Lightning's floor)",
        "task": "cnnzoo's `ImageClassifier` + `MNISTDataModule` under a bare `Trainer`",
        "cli": "`cnnzoo fit` with the CLI's defaults",
        "cli-no-callbacks": f"the same without {', '.join(f'`{c}`' for c in callbacks)}",
        "cli-no-logger": "the same without the logger",
        "cli-no-reseed": "the same without the per-step reseed (`--seed_everything false`)",
        "cli-lightning-profiler": "the same with Lightning's `PassThroughProfiler` instead of cnnzoo's `NoProfiler`",
    }
    if way in fixed:
        return fixed[way]
    return "the same without " + ", ".join(f"`{c}`" for c in way.removeprefix("cli-no-").split("+"))


def step_overhead() -> str:
    r = results("step_overhead")
    if not r:
        return f"Per-step overhead: {NOT_MEASURED} (run `python benchmarks/step_overhead.py`).\n"
    settings = r["settings"]
    lines = [
        f"Measured with `{r['command'].strip()}` (torch {r['torch']}, a {_core_cpu(r)}, batch "
        f"{settings['batch_size']}, {settings['rounds']} rounds of {settings['epochs']} epochs per way, segments of "
        f"{settings['segment']} steps). A plain loop over the same tensors makes {r['plain_calls_per_step']:,} "
        "calls per step.",
        "",
        "| each step, with a network that costs almost nothing | calls per step | over the plain loop, ms: "
        "median (95% interval) | quartiles | LeNet-5 / plain loop it implies |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for way, row in r["ways"].items():
        (q1, q3), (lo, hi) = row["overhead_quartiles_ms"], row["overhead_interval_95_ms"]
        lines.append(
            f"| {_way_label(way, r['default_callbacks'])} | {row['calls_per_step']:,} | "
            f"{row['overhead_ms']:.2f} ({lo:.2f}-{hi:.2f}) | {q1:.2f}-{q3:.2f} | {row['lenet_ratio']:.2f} |"
        )
    lines += [
        "",
        f"A plain LeNet-5 step takes {r['lenet_plain_step_ms']:.1f} ms here (wall time, median); the last column is "
        "that step over that step plus the way's overhead. The calls are counted over "
        "steps of the warm-up and are the same on every run; the times are CPU time of the main thread, over pairs of "
        "segments. Between runs the times move by as much as the gaps between the rows that leave one default out, "
        "so compare those rows by their calls.",
    ]
    paired = r.get("lenet5_paired") or {}
    if paired:
        lines += [
            "",
            "The same pairs with LeNet-5 itself (wall time): the plain loop's step over the way's step, which is the "
            "framework tax as a user meets it.",
            "",
            "| LeNet-5 on MNIST, batch 128 | plain step / its step, median (95% interval) | quartiles | pairs |",
            "| --- | ---: | ---: | ---: |",
        ]
        for way, row in paired.items():
            (q1, q3), (lo, hi) = row["quartiles"], row["interval_95"]
            lines.append(
                f"| {_way_label(way, r['default_callbacks'])} | **{row['plain_over_way']:.2f}** ({lo:.2f}-{hi:.2f}) | "
                f"{q1:.2f}-{q3:.2f} | {row['pairs']} |"
            )
    return "\n".join(lines) + "\n"


def step_micro() -> str:
    r = results("step_micro")
    if not r:
        return f"Per-step costs outside the network: {NOT_MEASURED} (run `python benchmarks/step_micro.py`).\n"
    adam = r["adam_step"]
    lines = [
        f"Measured with `{r['command']}` (torch {r['torch']}, a {_core_cpu(r)}). The gathers: the best of "
        f"{r['settings']['repeats']} timings of {r['settings']['number']:,} calls each. The Adam step: a plain loop "
        f"with a network that costs almost nothing, the median of {adam['rounds']} alternated rounds of "
        f"{adam['steps']} steps each way, CPU time per step. The profiler and the hook name: the best of "
        f"{r['settings']['repeats']} timings of {r['profiler']['number']:,} calls each, times the "
        "calls counted per step.",
        "",
        "| per step | before | now |",
        "| --- | ---: | ---: |",
    ]
    notes = []
    for name, g in r["gather"].items():
        lines.append(
            f"| gathering a batch of {g['batch_size']:,} uint8 images of {name} ({'x'.join(map(str, g['shape']))}) "
            f"from {g['images']:,}: `images[idx]`, now `images.index_select(0, idx)` | {g['indexing_us']:,.1f} µs | "
            f"{g['index_select_us']:,.1f} µs |"
        )
    mnist = [g for g in r["gather"].values() if g["batch_size"] == 128]
    saved_ms = sum(g["indexing_us"] - g["index_select_us"] for g in mnist) / 1000
    if adam["nvml_loads"]:
        notes += ["", "NVML loads on this machine, so Lightning's setting stays, and an Adam step costs what it did."]
    else:
        lines.append(
            f"| an Adam step: with Lightning's `PYTORCH_NVML_BASED_CUDA_CHECK=1`, now without it (no NVIDIA driver "
            f"here) | {adam['with_nvml_setting_ms']:.3f} ms | {adam['without_ms']:.3f} ms |"
        )
        saved_ms += adam["with_nvml_setting_ms"] - adam["without_ms"]
    # Costs per call, times the calls counted per step: (result key, row label, before, now).
    per_call = (
        (
            "profiler",
            "the profiler's context manager around each hook call, {n} a step of `cnnzoo fit` (piped): Lightning's "
            "`PassThroughProfiler`, now `cnnzoo.callbacks.NoProfiler`",
            "pass_through_us",
            "no_profiler_us",
        ),
        (
            "hook_name",
            "setting Lightning's hook name on the task, {n} times a step: through `nn.Module.__setattr__`, now "
            "directly",
            "module_setattr_us",
            "task_setattr_us",
        ),
    )
    for key, label, before, now in per_call:
        c = r[key]
        n = c["calls_per_step"]
        lines.append(f"| {label.format(n=f'{n:.0f}')} | {n * c[before]:,.1f} µs | {n * c[now]:,.1f} µs |")
        saved_ms += n * (c[before] - c[now]) / 1000
    lines += notes
    apart = results("step_overhead")
    if apart and _same_machine(r, apart) and mnist:
        plain = apart["lenet_plain_step_ms"]
        lines += [
            "",
            f"For `cnnzoo fit` of LeNet-5 on MNIST with Adam that is {saved_ms:.2f} ms of a {plain:.1f} ms plain step "
            f"({saved_ms / plain:.0%}; the plain step from `step_overhead.json`).",
        ]
    lines += [
        "",
        "The plain loops in the tables above gather with `index_select` too and run in a process that imports "
        "cnnzoo, so that their ratios measure the framework; neither of the first two savings shows in them.",
    ]
    return "\n".join(lines) + "\n"


# --- transfer learning -------------------------------------------------------------------------------------------
TRANSFER_ORDER = ("scratch", "feature_extraction", "finetune_0.1x", "finetune_1x", "freeze_unfreeze_0.1x")


def _acc(entry: dict[str, Any]) -> float:
    return float(entry["eval"]["metrics"]["test_acc"])


def transfer_table() -> str:
    r = results("transfer_mnist1k")
    if not all(k in r for k in ("pretrain", *TRANSFER_ORDER)):
        return "Not measured yet: run `python benchmarks/transfer_mnist1k.py`.\n"
    pre = r["pretrain"]
    lines = [
        f"Step 1 took {pre['fit']['process_wall_s']:,.0f} s on a {_machine(pre)} and reached "
        f"`{pre['eval']['split']}_acc` {pre['eval']['metrics']['val_acc']:.4f} on the "
        f"{pre['eval']['num_examples']:,} held-out CIFAR-10 images (best of {pre['fit']['epochs']} epochs, at epoch "
        f"{pre['fit']['best']['epoch']}): a weak backbone on purpose. Its command:",
        "",
        f"    {pre['fit']['command']}",
        "",
        "| run | MNIST test_acc | images tested | fit wall time | fit command |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for key in TRANSFER_ORDER:
        e = r[key]
        lines.append(
            f"| {e['description']} | {_acc(e):.4f} | {e['eval']['num_examples']:,} | "
            f"{e['fit']['process_wall_s']:,.0f} s | `{e['fit']['command']}` |"
        )
    lines += [
        "",
        "Each row's figure is `test_acc` from the `test_report.json` of `cnnzoo test` on that run's best checkpoint",
        "(the `eval.command` in `benchmarks/results/transfer_mnist1k.json`). The load average at each start is",
        "recorded there too: wall times on this shared machine are rough.",
    ]
    # What every row shares, from the recipe they ran and the runs themselves, not typed beside the table.
    runs = [r[k] for k in TRANSFER_ORDER]
    recipes = {e["recipe"] for e in runs}
    epochs = {e["fit"]["epochs"] for e in runs}
    default_seed = all("--seed_everything" not in e["fit"]["command"] for e in runs)
    if len(recipes) == 1 and len(epochs) == 1 and default_seed:
        data = yaml.safe_load((ROOT / recipes.pop()).read_text())["data"]["init_args"]
        lines += [
            "",
            f"All runs: seed {DEFAULT_SEED}, {epochs.pop()} epochs, batch {data['batch_size']}, augment "
            f"`{data['augment']}`; the best checkpoint on val_acc ({data['val_size']:,} MNIST training images the "
            f"{data['train_subset']:,} were not drawn from) is tested.",
        ]
    return "\n".join(lines) + "\n"


ONE_POINT = 0.01  # of accuracy: what the transfer page says a second seed could change


def transfer_findings() -> str:
    r = results("transfer_mnist1k")
    if not all(k in r for k in ("pretrain", *TRANSFER_ORDER)):
        return ""
    acc = {k: _acc(r[k]) for k in TRANSFER_ORDER}
    updating = [k for k in TRANSFER_ORDER if k not in ("scratch", "feature_extraction")]
    scratch = acc["scratch"]

    def named(keys: list[str]) -> str:
        label = {"finetune_": "fine-tune at ", "freeze_unfreeze_": "freeze/unfreeze at "}
        return ", ".join(
            f"{next(v + k[len(p) :] for p, v in label.items() if k.startswith(p))} {acc[k]:.4f}" for k in keys
        )

    # One seed each: a difference within a point is what another seed could change, so it is not called a win.
    above = [k for k in updating if acc[k] - scratch > ONE_POINT]
    near = [k for k in updating if abs(acc[k] - scratch) <= ONE_POINT]
    below = [k for k in updating if scratch - acc[k] > ONE_POINT]
    parts = [
        f"{len(above)} beat it by more than a point ({named(above)}), although the pretraining was short and on "
        "very different images"
        if above
        else "none beat it by more than a point"
    ]
    parts += [f"{len(near)} came within a point of it ({named(near)})"] if near else []
    parts += [f"{len(below)} fell more than a point short ({named(below)})"] if below else []
    small, large = acc["finetune_0.1x"], acc["finetune_1x"]
    lines = [
        f"- **Pretrained features against training from scratch.** From random init the network reached "
        f"{scratch:.4f}. Of the {len(updating)} strategies that update the backbone, " + "; ".join(parts) + ".",
        f"- **Backbone learning rate.** Fine-tuning with the backbone at 1x the head's rate reached {large:.4f}; at "
        f"0.1x, {small:.4f}. "
        + (
            "The two are within a point: one seed cannot tell them apart."
            if abs(large - small) <= ONE_POINT
            else "The small rate did not win here, against the textbook advice: the backbone is weak and its features "
            "come from colour photographs, so MNIST gains from moving them far."
            if large > small
            else "The small rate won, as the textbook advice says."
        )
        + " With strong ImageNet features and data close to ImageNet, 0.1x or lower is the safer start.",
        f"- **Feature extraction** reached {acc['feature_extraction']:.4f}. Frozen CIFAR-10 features, BatchNorm "
        "statistics included, separate handwritten digits far worse than features that may move; with a domain this "
        "far from the pretraining data, let the backbone (or at least its BatchNorm layers, `train_bn: true`) train.",
        "- Each row is one seed: differences under about one point are within what a second seed could change.",
    ]
    return "\n".join(lines) + "\n"


def finetune_digits() -> str:
    r = results("recipes")
    rows = [("from scratch", "lenet5_digits"), ("fine-tuned from `lenet5.mnist`", "finetune_lenet5_mnist_digits")]
    if not all(key in r for _, key in rows):
        return "Not measured yet: run `python benchmarks/recipes.py lenet5_digits finetune_lenet5_mnist_digits`.\n"
    lines = [
        "| start | recipe | best epoch | best val_acc | test_acc (n) | epochs run | fit wall time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in rows:
        e = r[key]
        fit, ev = e["fit"], e["eval"]
        lines.append(
            f"| {label} | `{key}` | {fit['best']['epoch']} | {fit['best']['score']:.4f} | "
            f"{ev['metrics']['test_acc']:.4f} ({ev['num_examples']}) | {fit['epochs']} | "
            f"{fit['process_wall_s']:.0f} s |"
        )
    a, b = (r[key]["eval"]["metrics"]["test_acc"] * r[key]["eval"]["num_examples"] for _, key in rows)
    lines += [
        "",
        f"On these {r['lenet5_digits']['eval']['num_examples']} test images the two differ by {abs(round(b - a))} "
        "image(s): within what another seed could change. The checkpoint is chosen on val_acc; early stopping "
        "watches val_loss.",
    ]
    return "\n".join(lines) + "\n"


# --- published weights (a whole page) ----------------------------------------------------------------------------
def pretrained_page() -> str:
    recipes = results("recipes")
    lines: list[str | None] = [
        "# Published weights",
        "",
        "Generated by `python docs/generate.py` from the registry (`cnnzoo/models/pretrained/*.json`). Each figure",
        "is what the evaluation command shown under it measured on the published file;",
        "`benchmarks/evaluate_weights.py` re-runs those commands and refuses a figure that moved. They ran on a",
        "CPU, where the CLI evaluates in float32; on a GPU it picks bf16-mixed (its `[cnnzoo] precision:` line says",
        "so), which can move a figure in its last digits. Add `--trainer.precision 32-true` to evaluate in float32.",
        "",
        "```python",
        # Written as `ruff format` would leave it, so formatting the docs never makes this page "stale".
        "from PIL import Image",
        "",
        "import cnnzoo",
        "",
        'model = cnnzoo.load_pretrained("lenet5.mnist")  # verified sha256, eval mode',
        "cfg = model.pretrained_cfg  # classes, mean/std, metrics, recipe, command",
        'pil_image = Image.new("L", (40, 40))  # any image: the transform resizes and converts it',
        "x = cfg.transforms()(pil_image).unsqueeze(0)",
        "print(cfg.class_names[model(x).argmax(1).item()])",
        "```",
        "",
        "`cnnzoo weights` prints the same registry as a table. A figure measured with test-time augmentation",
        "(the table's TTA column) averages the logits of flipped and shifted copies, while `model(x)` is one plain",
        "forward; in any loop, `cnnzoo.tta_logits` gives the figure's setting:",
        "",
        "```python",
        'model = cnnzoo.load_pretrained("vgg_cifar_fast.cifar10")',
        'x = model.pretrained_cfg.transforms()(Image.new("RGB", (32, 32))).unsqueeze(0)',
        f"# its tta is {cnnzoo.get_weights('vgg_cifar_fast.cifar10').tta}: the figure's setting",
        "logits = cnnzoo.tta_logits(model, x, model.pretrained_cfg.tta)",
        "```",
        "",
        "Code written for torchvision's or timm's weights reads these too: a builder takes the weights object, and",
        "one imported by name takes `pretrained=` and `weights=` (`from cnnzoo.models import lenet5;",
        "lenet5(pretrained=True)`),",
        "`meta` has torchvision's keys, `transforms()` takes what torchvision's does (a PIL image, a uint8 tensor,",
        "or floats in [0, 1] from `ToTensor`), `pretrained_cfg` answers timm's dict keys, `list_models` takes timm's",
        '`pretrained=True`, and `create_model("hf-hub:org/repo")` loads a Hub repository\'s weights:',
        "",
        "```python",
        'weights = cnnzoo.get_weights("lenet5.mnist")',
        "# the weights, with a new 3-class head",
        'model = cnnzoo.create_model("lenet5", pretrained=weights, num_classes=3)',
        'print(weights.meta["categories"], model.pretrained_cfg["mean"])',
        'print(cnnzoo.list_models("lenet5*", pretrained=True))  # arch.tag names',
        "```",
        "",
        "Through `torch.hub`, as torchvision and timm offer it, with torch, torchvision and safetensors but no",
        "cnnzoo installed (`hubconf.py` has one entry point per registered model; `weights=True` is the default",
        "weights, a name picks others, and the sha256 is checked on every route):",
        "",
        "```py",  # not "python": the docs test runs those, and this one needs GitHub
        'model = torch.hub.load("cnnzoo/cnnzoo", "lenet5", weights="lenet5.mnist")',
        "```",
        "",
        # "TTA", explained above, and the defaults in a sentence below: a long header and a "default" column
        # pushed the last columns out of sight behind a sideways scroll.
        "| name | params | input | test_acc | val_acc | TTA | size |",
        "| --- | ---: | --- | --- | --- | --- | ---: |",
    ]
    for name in cnnzoo.list_pretrained():
        w = cnnzoo.get_weights(name)
        lines.append(
            f"| `{name}` | {w.num_params:,} | {'x'.join(map(str, w.input_size))} | "
            f"{w.measured('test_acc')} | {w.measured('val_acc')} | {w.tta} | {w.size_text()} |"
        )
    others = [cnnzoo.get_weights(n) for n in cnnzoo.list_pretrained()]
    others = [w for w in others if not w.default]
    lines += [
        "",
        'An architecture\'s name alone (`load_pretrained("lenet5")`, or `weights=True` through torch.hub) '
        "picks its default weights: every one above"
        + "".join(
            f"{' but' if i == 0 else ','} `{w.name}` (`{w.arch}` picks `{cnnzoo.get_weights(w.arch).name}`)"
            for i, w in enumerate(others)
        )
        + ".",
    ]
    lines += ["", "## How each was made", ""]
    for name in cnnzoo.list_pretrained():
        w = cnnzoo.get_weights(name)
        stem = Path(w.recipe or "").stem
        lines += [
            f"### {name}",
            "",
            f"- recipe: `{w.recipe}`; classes: {', '.join(w.class_names)}",
            f"- training: `{w.command}`",
        ]
        made = _run_that_made(w)
        if made:
            file, run = made
            lines.append(
                f"- the run that made it: {run['fit']['epochs']} epochs, {run['fit']['wall_s'] / 60:.0f} minutes of "
                f"`fit` on a {_machine(run)} (`benchmarks/results/{file}`, by `{run['command'].split(' --')[0]}`)"
            )
        else:
            lines.append(f"- the recipe re-run by `benchmarks/recipes.py`: {_measured(recipes.get(stem))}")
        for e in w.evaluations:
            lines.append(f"- {e['split']} ({e['dataset']}, {e['num_examples']:,} images): `{e['command']}`")
        lines += [
            f"- {w.notes}" if w.notes else None,
            f"- file: `{w.file}` (sha256 `{w.sha256}`{', stored as float16' if w.dtype == 'float16' else ''}), "
            f"trained with torch {w.versions.get('torch')}, lightning {w.versions.get('lightning')}",
            "",
        ]
    lines += [
        "## Publishing your own, and loading it back",
        "",
        "```bash",
        "cnnzoo test --config <run>/config.yaml --ckpt_path <best.ckpt>  # test_report.json",
        "cnnzoo publish <best.ckpt> --name lenet5.mine --out published \\",
        "  --report <test_report.json>",
        "cnnzoo weights published  # its row, as the registry shows it",
        "cnnzoo predict --weights published --data.predict_dir my_pngs/  # no training data",
        "```",
        "",
        "`cnnzoo.load_pretrained` (and `pretrained:` of both tasks, and `--weights`) takes a weights name, that",
        "folder, its `.json` or `.safetensors`, an `https://...#sha256=<hex>` URL of either, or",
        "`hf-hub:org/repo[@revision]` after `cnnzoo publish ... --push-to-hub org/repo`. Every route checks the",
        "file's sha256 and never unpickles. `TimmClassifier` checkpoints publish too (`builder: timm`).",
        "The folder's `README.md` is its model card. Its YAML header is the Hugging Face Hub's metadata: the",
        "license, the task, and `model-index` with each measured metric, which the Hub shows as the model's results.",
        "A folder holds one release: `publish` refuses a folder with another release or a `README.md` of its own,",
        "and `--push-to-hub` uploads the release's three files, whatever else the folder holds.",
        "`cnnzoo test` (and `validate`) of a checkpoint prints this `publish` command, with its report, as its",
        "`next:` line, unless `--trainer.limit_test_batches` measured only part of the split: `publish` takes",
        "reports of a whole split. Published without `--report`, the model card says its metrics were not measured,",
        "and `publish` prints the command that measures the published file. Every command that takes a checkpoint or",
        "weights, handed the run folder that `cnnzoo fit` printed, names the run's best checkpoint in its error.",
        "The weights record the evaluation transform that measured their figures: the reports' test-time augmentation",
        "and center-crop ratio (`crop_pct`, which `--data.data_config resnet18` sets from timm). So",
        "`model.pretrained_cfg.transforms()` preprocesses an image as the reported evaluation did, and so does",
        "`cnnzoo predict --weights <best.ckpt>`, as the checkpoint records the crop of the data that trained it.",
        "So does `transforms()` of the task restored from it in Python",
        "(`ImageClassifier.load_from_checkpoint(path, weights_only=True)`), before any publishing.",
        "",
        "`cnnzoo publish --dtype float16` stores the floating-point tensors at half the size, and loading casts them",
        "back to float32. Rounding changes the logits a little, so the figures must be measured on that file, not",
        "on the checkpoint: publish without `--report`, run `cnnzoo validate`/`test` with",
        "`--model.init_args.pretrained <out>`, then publish again with that report (the same checkpoint gives the",
        "same bytes). The weights bundled in the package stay under 20 MiB of wheel this way (the wheel test checks",
        "it); a larger file would be served by URL with its sha256.",
        "",
        "Not published: a larger VGG-BN (vgg11_bn/vgg16_bn) on CIFAR-10. No GPU was available when these",
        "weights were trained, and a CPU budget would not train it to a useful accuracy; the registry does not",
        "promise it.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


# --- driver ------------------------------------------------------------------------------------------------------
BLOCKS: dict[str, Callable[[], str]] = {
    "quickstart-line": quickstart_line,
    "quickstart-figures": quickstart_figures,
    "models-table": models_table,
    "lenet5-summary": lenet5_summary,
    "receptive-fields": receptive_fields,
    "lenet5-report": lenet5_report,
    "predict-throughput": predict_throughput,
    "speed-switches": speed_switches,
    "export-matrix": export_matrix,
    "recipes-table": recipes_table,
    "mnist-recipes": mnist_recipe_row,
    "train-throughput": throughput_table,
    "lenet-fit-wall": lenet_fit_wall,
    "step-overhead": step_overhead,
    "step-micro": step_micro,
    "transfer-table": transfer_table,
    "transfer-findings": transfer_findings,
    "finetune-digits": finetune_digits,
    "vgg-fast-summary": vgg_fast_summary,
    "cli-help": cli_help,
    "fast-cifar": fast_cifar,
    "fast-cifar-ab": fast_cifar_ab,
    "cifar-throughput": cifar_throughput,
    "cifar-cpu-cost": cifar_cpu_cost,
    "fast-cifar-wide": fast_cifar_wide,
    "fast-cifar-precision": fast_cifar_precision,
}
PAGES = (
    "README.md",
    "docs/index.md",
    "docs/recipes.md",
    "docs/data.md",
    "docs/transfer_learning.md",
    "docs/looking_inside.md",
    "docs/export.md",
    "docs/quickstart.md",
    "docs/convolution_arithmetic.md",
    "docs/api/cli.md",
)


def fill(text: str, where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in BLOCKS:
            raise SystemExit(f"{where}: unknown generated block {name!r}; known: {', '.join(BLOCKS)}")
        return match.group(1) + BLOCKS[name]() + match.group(4)

    return BLOCK.sub(one, text)


def render_all() -> dict[Path, str]:
    """Every generated page, as it should read now."""
    pages = {ROOT / "docs" / "pretrained.md": pretrained_page()}
    for rel in PAGES:
        path = ROOT / rel
        pages[path] = fill(path.read_text(), rel)
    return pages


# The augmentation grids of docs/data.md: (file, data module class, its options), drawn by the code that trains.
GRIDS = (
    ("augment_mnist_standard.png", "MNISTDataModule", {"data_dir": "../shared/data/mnist", "augment": "standard"}),
    ("augment_cifar10_standard.png", "ImageFolderDataModule", {"augment": "standard"}),
    ("augment_cifar10_translate.png", "ImageFolderDataModule", {"augment": "translate"}),
    ("augment_cifar10_jitter.png", "ImageFolderDataModule", {"augment": "jitter"}),
    ("augment_cifar10_autoaugment.png", "ImageFolderDataModule", {"augment": "autoaugment"}),
)


def write_grids() -> None:
    """Draw every augmentation grid again (seeded): MNIST from ../shared/data, CIFAR-10 from its JPEG folders."""
    from torchvision.utils import save_image

    import cnnzoo.data as data
    from cnnzoo.data.preview import augmentation_grid

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _runs import CIFAR_ROOT, ensure_cifar

    for name, cls, options in GRIDS:
        if cls == "ImageFolderDataModule":
            ensure_cifar()
            options = {"root": str(ROOT / CIFAR_ROOT), "img_size": 32, "check_images": False, **options}
        dm = getattr(data, cls)(**options)
        save_image(augmentation_grid(dm, n_images=8, n_augment=7, seed=0), ROOT / "docs" / "images" / name)
        print(f"wrote docs/images/{name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale pages (exit 1)")
    parser.add_argument("--images", action="store_true", help="also draw the augmentation grids again (needs data)")
    args = parser.parse_args()
    if args.images and not args.check:
        write_grids()
    stale = [path for path, text in render_all().items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run python docs/generate.py)")
        return 1 if stale else 0
    for path, text in render_all().items():
        if path in stale:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
