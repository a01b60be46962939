"""`cnnzoo report`: a real tiny run, every section, the numbers checked, and the page opened in Chromium."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cnnzoo
from cnnzoo.analysis.report import SECTIONS, ReportError, report
from cnnzoo.cli import main

pytest.importorskip("matplotlib")
pytest.importorskip("torchcam")

QUIET = ["--trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits recipe for a few epochs: its best checkpoint, with metrics.csv in its run folder."""
    root = tmp_path_factory.mktemp("run")
    assert (
        main(["fit", "-c", "lenet5_digits", "--trainer.max_epochs=3", f"--trainer.default_root_dir={root}", *QUIET])
        == 0
    )
    fit = json.loads(next(root.glob("lightning_logs/version_0/fit_report.json")).read_text())
    return Path(fit["best"]["path"])


@pytest.fixture(scope="module")
def made(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # As the quick start says: the config.yaml that the fit saved (it also holds fit's own ckpt_path and
    # weights_only), not the recipe.
    out = tmp_path_factory.mktemp("report")
    config = str(run.parent.parent / "config.yaml")
    assert main(["report", "-c", config, "--ckpt_path", str(run), "--out", str(out), "--max-images", "64"]) == 0
    return out


def test_summary_and_show_augment_take_the_config_a_fit_saved(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(run.parent.parent / "config.yaml")
    assert "ckpt_path: null" in Path(config).read_text()
    assert main(["summary", "-c", config, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == [1, 28, 28]
    grid = tmp_path / "grid.png"
    assert main(["show-augment", "-c", config, "--images", "2", "--draws", "1", "--out", str(grid)]) == 0
    assert grid.stat().st_size > 0


def test_the_report_has_every_section_with_its_figure(made: Path) -> None:
    page = (made / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    pngs = {p.name for p in made.glob("*.png")}
    assert pngs == {"curves.png", "confusion.png", "mistakes.png", "filters.png", "feature_maps.png", "grad_cam.png"}
    assert page.count('src="data:image/png;base64,') == len(pngs), "every figure is embedded"
    assert "http://" not in page and "https://" not in page, "the page needs no network"


def test_the_reported_numbers_are_the_validation_run(
    run: Path, made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = json.loads((made / "report.json").read_text())
    argv = ["validate", "-c", "lenet5_digits", f"--ckpt_path={run}", f"--trainer.default_root_dir={tmp_path}"]
    assert main([*argv, *QUIET]) == 0
    measured = json.loads(next(tmp_path.glob("lightning_logs/*/validate_report.json")).read_text())
    assert summary["num_examples"] == measured["num_examples"] == sum(map(sum, summary["confusion"]))
    assert summary["accuracy"] == pytest.approx(measured["metrics"]["val_acc"], abs=1e-6)
    f1 = sum(c["f1"] for c in summary["per_class"].values()) / len(summary["per_class"])
    assert f1 == pytest.approx(measured["metrics"]["val_f1"], abs=1e-4)


def test_a_checkpoint_without_logged_metrics_still_renders(run: Path, tmp_path: Path) -> None:
    lone = tmp_path / "else where" / "checkpoints" / "best.ckpt"
    lone.parent.mkdir(parents=True)
    shutil.copy(run, lone)
    argv = ["report", "-c", "lenet5_digits", "--ckpt_path", str(lone), "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    # The recorded command runs as written, quoted for a shell, with the recipe named as it was typed.
    assert shlex.split(json.loads((tmp_path / "r" / "report.json").read_text())["command"]) == ["cnnzoo", *argv]
    page = (tmp_path / "r" / "report.html").read_text()
    assert "No learning curves: no logged metrics were found" in page and not (tmp_path / "r" / "curves.png").exists()


def test_a_report_on_another_carve_of_the_data_says_so_on_the_page(
    run: Path, made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The terminal warns; the page and its JSON are read without it, and showed the high accuracy alone.
    assert '<p class="warning">' not in (made / "report.html").read_text()
    assert "held_out_by_run" not in json.loads((made / "report.json").read_text())
    config = str(run.parent.parent / "config.yaml")
    argv = ["report", "-c", config, "--ckpt_path", str(run), "--out", str(tmp_path / "r"), "--max-images", "16"]
    assert main([*argv, "--data.init_args.seed", "7"]) == 0
    assert "this checkpoint's run held out another val split" in capsys.readouterr().err
    page = (tmp_path / "r" / "report.html").read_text()
    assert """<p class="warning">This val split is not the one that the checkpoint's run held out""" in page
    assert json.loads((tmp_path / "r" / "report.json").read_text())["held_out_by_run"] is False


def test_piped_output_is_the_report_line(run: Path, tmp_path: Path) -> None:
    # Off a terminal, rich's progress bar printed a blank line into stdout before it.
    config, out = str(run.parent.parent / "config.yaml"), tmp_path / "r"
    argv = [
        sys.executable,
        "-m",
        "cnnzoo",
        "report",
        "-c",
        config,
        f"--ckpt_path={run}",
        f"--out={out}",
        "--max-images=8",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout == f"report: {out / 'report.html'}\n"


def test_bad_input_gets_one_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cnnzoo_said: list[str]
) -> None:
    argv = ["report", "-c", "lenet5_digits", "--ckpt_path", str(run), "--out", str(tmp_path / "r")]
    # The checkpoint given as `cnnzoo export` takes it, and no data: each named with its fix.
    assert main(["report", str(run)]) == 2
    assert f"cnnzoo report takes the checkpoint as an option: --ckpt_path {run}" in capsys.readouterr().err
    assert main(["report", "--ckpt_path", str(run)]) == 2
    run_config = run.parent.parent / "config.yaml"
    assert f"the checkpoint's run saved its config; add --config {run_config}" in capsys.readouterr().err
    assert main([*argv, "--data.img_size=32"]) == 2
    assert "LeNet5 was built for (C, H, W) = (1, 28, 28) but received (1, 32, 32)" in capsys.readouterr().err
    assert main([*argv, "--target_layer", "nope"]) == 2
    assert "--target_layer 'nope' is not a layer of LeNet5" in capsys.readouterr().err
    assert main(["report", "-c", "lenet5_digits", "--out", str(tmp_path / "r")]) == 2
    assert "needs trained weights" in capsys.readouterr().err
    assert main(["report", "--weights", "lenet5.mnist"]) == 2
    assert "cnnzoo report --weights also needs the data: add --config <recipe>" in capsys.readouterr().err
    # The command line's evaluation settings reach a checkpoint's task, as with `cnnzoo validate`, and are checked.
    assert main([*argv, "--model.init_args.tta=mirror"]) == 2
    assert "tta=mirror mirrors the images, and DigitsDataModule holds digits" in capsys.readouterr().err

    from cnnzoo.data import DigitsDataModule
    from cnnzoo.tasks import ImageClassifier

    task = ImageClassifier.load_from_checkpoint(run)
    task.class_names = [f"c{i}" for i in range(10)]
    with pytest.raises(ReportError, match="trained on classes"):
        report(task, DigitsDataModule(), tmp_path / "x")
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    mlp.class_names = [str(i) for i in range(10)]  # type: ignore[assignment]
    with pytest.raises(ReportError, match="has no Conv2d layer"):
        report(mlp, DigitsDataModule(), tmp_path / "y")
    # Published weights (load_pretrained) carry their classes and normalisation in pretrained_cfg: a report on data
    # normalised otherwise scored other inputs, and a model of another class count crashed in the confusion matrix.
    weights = cnnzoo.load_pretrained("lenet5.mnist")
    note = "the model was trained on inputs normalised with mean [0.1307], std [0.3081]; this data is normalised"
    for data, said in ((DigitsDataModule(), True), (DigitsDataModule(mean=[0.1307], std=[0.3081]), False)):
        cnnzoo_said.clear()
        assert (report(weights, data, str(tmp_path / "w"), max_images=2, progress=False)).is_file()  # out: a str
        assert any(line.startswith(note) for line in cnnzoo_said) == said, cnnzoo_said
    with pytest.raises(ReportError, match=r"the model has 3 outputs, but the data has 10 classes"):
        report(cnnzoo.create_model("lenet5", num_classes=3), DigitsDataModule(), tmp_path / "z")


def test_a_classifier_kept_from_other_classes_is_refused_as_validate_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The report ran the task's other evaluation checks but not this one: lenet5.mnist's digit classifier, given ten
    # letter folders, got a page of the digits scored against the letters without a word.
    from .datagen import write_folder

    def report_on(root: Path, *extra: str, flag: str = "--model.init_args.pretrained") -> int:
        data = ["--data", "ImageFolderDataModule", f"--data.root={root}", "--data.img_size=28", "--data.in_chans=1"]
        weights = [f"{flag}=lenet5.mnist", *extra]
        return main(
            ["report", "-c", "lenet5_mnist", *data, *weights, f"--out={tmp_path / 'out' / root.name}", "--max-images=4"]
        )

    letters = write_folder(tmp_path / "letters", {c: 2 for c in "abcdefghij"}, size=28, mode="L")
    assert report_on(letters) == 2
    assert not (tmp_path / "out" / "letters").exists()
    err = capsys.readouterr().err
    assert "lenet5.mnist's classifier was trained on classes ['0', '1', '2'" in err
    assert "the figures would score one label set against the other" in err
    digits = write_folder(tmp_path / "digits", {str(i): 2 for i in range(10)}, size=28, mode="L")
    # --weights, as test and validate take it; it was read as an abbreviation of --weights_only ("expected bool").
    assert report_on(digits, flag="--weights") == 0 and (tmp_path / "out" / "digits" / "report.html").is_file()


def test_the_report_scores_what_the_tasks_test_time_augmentation_predicts() -> None:
    from cnnzoo.analysis.report import evaluate
    from cnnzoo.data import DigitsDataModule

    class Voted(torch.nn.Module):
        """One plain forward says class 0; the augmented prediction says class 3."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 10)

        def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 10).index_fill(1, torch.tensor([3]), 5.0)

    ev = evaluate(Voted(), DigitsDataModule(), "val", 8, progress=False)
    assert ev.probs.argmax(1).eq(3).all()


def test_a_timm_classifier_reports_with_grad_cam_on_its_last_stage(tmp_path: Path) -> None:
    from cnnzoo.data import DigitsDataModule
    from cnnzoo.tasks import TimmClassifier

    dm = DigitsDataModule(img_size=32)
    task = TimmClassifier("resnet18", num_classes=10, in_chans=1, img_size=32, class_names=list(dm.class_names))
    path = report(task, dm, tmp_path / "timm", max_images=16, progress=False, command="python make_report.py")
    record = json.loads((path.parent / "report.json").read_text())
    assert record["grad_cam_layer"] == "layer4.1.conv2" and record["command"] == "python make_report.py"


CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.dataset.sections = [...document.querySelectorAll('section')].map(s => s.id).join(',');
});
</script>"""


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """The body's data attributes after load (set by CHECK) and the console messages, from headless Chromium."""
    copy = tmp_path / f"checked-{page.name}"
    copy.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    run = subprocess.run(
        ["chromium", *flags, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    body = re.search(r"<body([^>]*)>", run.stdout)
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1))) if body else {}
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    return attrs, console


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it",
)
def test_the_page_in_a_real_browser(made: Path, tmp_path: Path) -> None:
    attrs, console = open_in_chromium(made / "report.html", tmp_path)
    assert attrs.get("sections") == ",".join(SECTIONS)
    assert int(attrs["images"]) == 6 and attrs["broken"] == "0", attrs
    assert console == [], console
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,3600",
         f"--screenshot={shot}", (made / "report.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 50_000
    # The check itself can fail: a broken image and a script error are seen.
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="data:image/png;base64,AAAA"><script>throw new Error("boom")</script></body></html>'
    )
    attrs, console = open_in_chromium(bad, tmp_path)
    assert attrs["broken"] == "1" and any("boom" in line for line in console)


def test_the_curves_of_a_resumed_fit_take_in_every_run_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cnnzoo_said: list[str]
) -> None:
    from cnnzoo.analysis.report import curves_figure, run_metrics_csvs

    # A resumed fit logs in a version folder of its own: the report of its checkpoint drew the first run's epochs.
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "-c", "lenet5_digits", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", *QUIET]
    logs = tmp_path / "lightning_logs"
    assert main([*fit, "--trainer.max_epochs=2"]) == 0
    assert main([*fit, "--trainer.max_epochs=3", "--ckpt_path=last"]) == 0  # version_1, checkpoints in version_0's
    last = logs / "version_0" / "checkpoints" / "last.ckpt"
    assert main(["test", "-c", str(logs / "version_0" / "config.yaml"), f"--ckpt_path={last}", *QUIET]) == 0
    # From a best checkpoint's path, relative as typed: a new branch, whose checkpoints go to version_3's folder.
    best = next(logs.glob("version_0/checkpoints/best-*.ckpt")).relative_to(tmp_path)
    assert main([*fit, "--trainer.max_epochs=4", f"--ckpt_path={best}"]) == 0
    assert any(line.startswith(f"resuming from {best} (epoch ") for line in cnnzoo_said)
    assert any(line.endswith("): a new branch, whose checkpoints start afresh") for line in cnnzoo_said)
    assert main(["fit", "-c", "lenet5_digits", "--trainer.max_epochs=1", *QUIET]) == 0  # another fit: not this one

    def epochs(ckpt: Path) -> list[float]:
        fig = curves_figure(run_metrics_csvs(str(ckpt)))
        return list(next(ax for ax in fig.axes if ax.get_title() == "accuracy").get_lines()[0].get_xdata())

    assert [p.parent.name for p in run_metrics_csvs(str(last))] == ["version_0", "version_1", "version_3"]
    assert epochs(last) == [0, 1, 2, 3]  # the test run (version_2) logged no training: not a part
    assert epochs(logs / "version_3" / "checkpoints" / "last.ckpt") == [0, 1, 2, 3]
    assert [p.parent.name for p in run_metrics_csvs(str(logs / "version_4" / "checkpoints" / "last.ckpt"))] == [
        "version_4"
    ]


@pytest.mark.parametrize(("scales", "axis"), [((1.0,), "linear"), ((64.0, 1.0), "log")])
def test_learning_rates_of_scaled_groups_share_a_log_axis(tmp_path: Path, scales: tuple[float, ...], axis: str) -> None:
    from cnnzoo.analysis.report import curves_figure

    # As LearningRateMonitor writes them: one column per parameter group, by step, without an epoch.
    names = [f"lr-SGD/group{i}" for i in range(len(scales))]
    lines = [",".join(["epoch", "step", "val_loss", *names])]
    for epoch in range(3):
        rates = [f"{scale * 1.5 * (1 - epoch / 4):g}" for scale in scales]
        lines += [",".join(["", str(10 * epoch + 5), "", *rates]), f"{epoch},{10 * epoch + 9},{1 / (epoch + 1)}"]
    csv_file = tmp_path / "metrics.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    fig = curves_figure(csv_file)
    lr_axis = next(ax for ax in fig.axes if ax.get_title() == "learning rate")
    assert lr_axis.get_yscale() == axis
    assert len(lr_axis.get_lines()) == len(scales)


@pytest.mark.parametrize("epochs", [1, 3])
def test_curves_tick_whole_epochs(tmp_path: Path, epochs: int) -> None:
    from cnnzoo.analysis.report import curves_figure

    # A one-epoch run's curves were ticked -0.04, -0.02, ... 0.04 around its single point.
    rows = [f"{e},{10 * e + 9},{1 / (e + 1)},{0.5 + e / 10}" for e in range(epochs)]
    csv_file = tmp_path / "metrics.csv"
    csv_file.write_text("\n".join(["epoch,step,val_loss,val_acc", *rows]) + "\n")
    fig = curves_figure(csv_file)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
        assert {0, epochs - 1} <= set(ticks)


def test_confusion_matrix_logger_writes_one_table_per_epoch(tmp_path: Path) -> None:
    argv = ["fit", "-c", "lenet5_digits", "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}"]
    assert main([*argv, "--trainer.callbacks+=cnnzoo.callbacks.ConfusionMatrixLogger", *QUIET]) == 0
    tables = sorted(tmp_path.glob("lightning_logs/version_0/confusion/epoch=*.csv"))
    assert [t.name for t in tables] == ["epoch=0.csv", "epoch=1.csv"]
    rows = [line.split(",") for line in tables[-1].read_text().splitlines()]
    assert rows[0][1:] == [str(i) for i in range(10)] and len(rows) == 11
    assert sum(int(v) for r in rows[1:] for v in r[1:]) == 270, "every validation image counted once"


def test_a_missing_extra_says_which_install_fixes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from cnnzoo.analysis import report as module

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'cnnzoo\[report\]'"):
        module._plt()


@pytest.mark.parametrize("names", [["horizontal", "vertical"], [f"class {i}" for i in range(10)]], ids=["2", "10"])
def test_the_confusion_panels_do_not_overlap(names: list[str]) -> None:
    # Without a layout pass, the right panel's "true" label and class names were drawn over the left panel.
    from cnnzoo.analysis.report import confusion_figure

    fig = confusion_figure(torch.eye(len(names), dtype=torch.long) * 5, names)
    renderer = fig.canvas.get_renderer()
    left, right = (ax.get_tightbbox(renderer) for ax in fig.axes[:2])
    assert left.x1 <= right.x0, (left, right)


@pytest.mark.parametrize(
    "names",
    [
        [str(i) for i in range(10)],
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        [f"class number {i}" for i in range(15)],
    ],
    ids=["digits", "cifar10", "15-long"],
)
def test_the_confusion_axis_names_do_not_overlap(names: list[str]) -> None:
    from cnnzoo.analysis.report import confusion_figure

    fig = confusion_figure(torch.eye(len(names), dtype=torch.long) * 5, names)
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        labels = [(label.get_text(), label.get_window_extent(renderer)) for label in ax.get_xticklabels()]
        clashes = [(a, b) for (a, box_a), (b, box_b) in itertools.pairwise(labels) if box_a.overlaps(box_b)]
        assert not clashes, clashes


def test_class_names_with_dollar_signs_are_drawn_as_written(tmp_path: Path) -> None:
    # matplotlib reads text between two "$" as math: "$x^$" stopped the report with a parse error.
    from cnnzoo.data import ImageFolderDataModule
    from cnnzoo.tasks import ImageClassifier

    from .datagen import write_folder

    root = write_folder(tmp_path / "money", {"$1 and $2": 6, "$x^$": 6}, size=28, mode="L")
    dm = ImageFolderDataModule(root=str(root), img_size=28, in_chans=1, val_fraction=0.5, num_workers=0)
    torch.manual_seed(0)  # an untrained network whose mistakes the mistakes figure draws
    task = ImageClassifier(model="lenet5", num_classes=2, class_names=list(dm.class_names))
    path = report(task, dm, tmp_path / "r", max_images=12, progress=False)
    assert "$x^$" in path.read_text() and (path.parent / "confusion.png").is_file()
    assert (path.parent / "mistakes.png").is_file() and (path.parent / "grad_cam.png").is_file()
