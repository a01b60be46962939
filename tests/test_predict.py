from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from cnnzoo.cli import CnnzooCLI
from cnnzoo.data import ImageFolderDataModule
from cnnzoo.tasks import ImageClassifier

from .datagen import write_folder

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_folder_fit_then_cli_predict_writes_csv_with_class_names(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs", {"circle": 8, "square": 8, "star": 8}, size=28)
    pred_dir = tmp_path / "new"
    pred_dir.mkdir()
    for i, src in enumerate(sorted((root / "square").iterdir())[:3]):
        shutil.copy(src, pred_dir / f"img{i}.png")
    (pred_dir / "readme.txt").write_text("ignored")
    # Images in sub-folders are predicted too (they were skipped without a word); hidden folders are not.
    (pred_dir / "later").mkdir()
    (pred_dir / "img2.png").rename(pred_dir / "later" / "img2.png")
    (pred_dir / ".thumbs").mkdir()
    shutil.copy(pred_dir / "img0.png", pred_dir / ".thumbs" / "img0.png")
    data = [
        "--data=cnnzoo.data.ImageFolderDataModule",
        f"--data.root={root}",
        "--data.img_size=28",
        "--data.in_chans=1",
        "--data.num_workers=0",
        "--data.batch_size=8",
    ]
    model = ["--model=cnnzoo.tasks.ImageClassifier", "--model.model=lenet5"]
    fit = CnnzooCLI(
        args=["fit", *model, *data, "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}", *QUIET]
    )
    best = fit.trainer.checkpoint_callback.best_model_path
    loaded = ImageClassifier.load_from_checkpoint(best, weights_only=True)
    assert loaded.class_names == ["circle", "square", "star"]  # from the folder names, through the checkpoint

    out = tmp_path / "out" / "preds.csv"
    CnnzooCLI(
        args=[
            "predict",
            *model,
            *data,
            f"--data.predict_dir={pred_dir}",
            f"--ckpt_path={best}",
            f"--prediction_writer.output={out}",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        ]
    )
    rows = list(csv.DictReader(out.open()))
    assert [str(Path(r["file"]).relative_to(pred_dir)) for r in rows] == ["img0.png", "img1.png", "later/img2.png"]
    for r in rows:
        assert r["pred_class"] in loaded.class_names
        assert loaded.class_names[int(r["pred_index"])] == r["pred_class"]
        assert 0.0 < float(r["prob"]) <= 1.0


def test_predict_on_in_memory_test_split_defaults_to_log_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .conftest import RECIPES

    recipe = str(RECIPES / "lenet5_digits.yaml")
    trained = CnnzooCLI(
        args=["fit", "--config", recipe, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}", *QUIET]
    )
    cli_args = [
        "predict",
        "--config",
        recipe,
        f"--ckpt_path={trained.trainer.checkpoint_callback.best_model_path}",
        f"--trainer.default_root_dir={tmp_path}",
        *QUIET,
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = CnnzooCLI(args=cli_args)
    # Lightning looked for batch indices that an in-memory loader has none of, and said so from inside itself.
    assert not [w for w in caught if "batch indices" in str(w.message)], [str(w.message) for w in caught]
    writer = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "PredictionWriter")
    assert writer.written_to is not None and writer.written_to.startswith(str(tmp_path))
    assert capsys.readouterr().out.splitlines()[-1] == f"predictions: {writer.written_to} (270 rows)"
    with open(writer.written_to) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 270 and rows[0]["file"] == "#0" and rows[-1]["file"] == "#269"
    preds = torch.cat([b["preds"] for b in cli.trainer.predict_loop.predictions])
    assert [int(r["pred_index"]) for r in rows] == preds.tolist()
    CnnzooCLI(args=cli_args)
    assert capsys.readouterr().out.splitlines()[-1].endswith("(270 rows; replaced the earlier file)")


def test_predict_with_weights_reads_sub_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnzoo.cli import main

    write_folder(tmp_path / "new", {"day1": 2, "day2": 2}, size=28, mode="L")
    out = tmp_path / "preds.csv"
    args = ["predict", "--weights", "lenet5.mnist", f"--data.predict_dir={tmp_path / 'new'}"]
    assert main([*args, f"--prediction_writer.output={out}"]) == 0
    files = [str(Path(r["file"]).relative_to(tmp_path / "new").parent) for r in csv.DictReader(out.open())]
    assert files == ["day1", "day1", "day2", "day2"]
    assert "replaced" not in capsys.readouterr().out
    # A second run into the same file says that it replaced the first one's CSV (it did so silently).
    assert main([*args, f"--prediction_writer.output={out}"]) == 0
    assert capsys.readouterr().out.strip() == f"predictions: {out} (4 rows; PyTorch; replaced the earlier file)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "preds.csv"]  # no temporary file left behind


def test_a_prediction_csv_that_fails_to_write_leaves_the_earlier_one_whole(tmp_path: Path) -> None:
    from cnnzoo.deploy import write_predictions

    out = tmp_path / "preds.csv"
    assert write_predictions(out, [("a.png", 1, 0.9)], ["cat", "dog"]) == ""
    before = out.read_text()
    with pytest.raises(IndexError):  # a class index the names do not cover, found halfway through the rows
        write_predictions(out, [("a.png", 0, 0.9), ("b.png", 5, 0.8)], ["cat", "dog"])
    assert out.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["preds.csv"]


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("new.zip", "is an archive, not a folder. Fix: unpack it (unzip "),
        ("a.png", "is a file; give the folder that holds the images"),
        ("missing", ": no such folder"),
    ],
)
def test_a_predict_dir_that_is_no_folder_is_refused_alike_by_weights_and_by_a_checkpoint(
    name: str, said: str, tmp_path: Path
) -> None:
    # The folder module said "does not exist" of an archive or a file, where the --weights path named each.
    from cnnzoo.deploy import ExportError, predict_dir
    from cnnzoo.errors import DataNotFoundError

    (tmp_path / "new.zip").write_bytes(b"PK")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ExportError) as by_weights:
        predict_dir(tmp_path / name)
    module = ImageFolderDataModule(predict_dir=str(tmp_path / name), class_names=["a", "b"], num_workers=0)
    with pytest.raises(DataNotFoundError) as by_checkpoint:
        module.setup("predict")
    assert str(by_checkpoint.value) == str(by_weights.value)
    assert str(by_weights.value).startswith(f"--data.predict_dir {tmp_path / name}") and said in str(by_weights.value)
