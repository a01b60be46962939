from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

import cnnzoo
from cnnzoo._provenance import source_commit
from cnnzoo.models import _pretrained
from cnnzoo.models._pretrained import IntegrityError, Weights, download, load_state_dict_file
from cnnzoo.tasks import ImageClassifier

from .conftest import REPO, LocalServer
from .helpers import PicklePayload, write_malicious_pickle

GOLDEN = Path(__file__).parent / "golden"
ALL_WEIGHTS = cnnzoo.list_pretrained()


def fixed_input(w: Weights) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, *w.input_size, generator=g)


# --- registry and metadata -------------------------------------------------------------------------------------------
def test_registry_api_and_default() -> None:
    assert {"lenet5.mnist", "lenet5.digits"} <= set(ALL_WEIGHTS)
    assert cnnzoo.get_weights("lenet5").name == "lenet5.mnist"
    assert cnnzoo.get_weights("lenet5.DEFAULT").name == "lenet5.mnist"
    assert cnnzoo.list_pretrained("*.digits") == [n for n in ALL_WEIGHTS if n.endswith(".digits")]
    with pytest.raises(ValueError, match=r"lenet5\.mnist"):
        cnnzoo.get_weights("lenet5.mnsit")


@pytest.mark.parametrize("name", ALL_WEIGHTS)
def test_metadata_matches_reality(name: str) -> None:
    w = cnnzoo.get_weights(name)
    path = w.local_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == w.sha256
    assert path.stat().st_size == w.num_bytes
    assert path.name.startswith(f"{name}-{w.sha256[:8]}")
    model = cnnzoo.load_pretrained(name)
    assert not model.training
    assert model.pretrained_cfg is w
    assert sum(p.numel() for p in model.parameters()) == w.num_params
    assert model.get_classifier().out_features == w.num_classes == len(w.class_names)
    assert tuple(model.input_size) == w.input_size and len(w.mean) == len(w.std) == w.in_chans
    with safe_open(str(path), "pt") as f:
        # Leaving out BatchNorm's num_batches_tracked and the whitening stem's flag.
        stored = {f.get_slice(k).get_dtype() for k in f.keys()} - {"I64", "BOOL"}  # noqa: SIM118 (not a dict)
    assert stored == {{"float32": "F32", "float16": "F16"}[w.dtype]}
    assert ("(float16)" in w.size_text()) == (w.dtype == "float16"), "the tables say when a file is half-size"
    assert w.evaluations, "published weights must carry measured metrics"
    for e in w.evaluations:
        assert set(e) == {"dataset", "split", "num_examples", "command", "metrics"} and e["num_examples"] > 0
        assert e["command"].startswith(f"cnnzoo {'test' if e['split'] == 'test' else 'validate'} --config {w.recipe}")
        tta = f" --model.init_args.tta {w.tta}" if w.tta != "none" else ""
        assert e["command"].endswith(f"--model.init_args.pretrained {name}{tta}"), "the published file, its TTA"
        assert all(k.startswith(e["split"] + "_") for k in e["metrics"])
    assert len({e["command"] for e in w.evaluations}) == len(w.evaluations), "one command per evaluation"
    assert w.recipe and (Path(__file__).parents[1] / w.recipe).is_file()
    assert w.command and w.command.startswith("cnnzoo fit --config " + w.recipe)
    assert w.command == " ".join(w.command.split()), "the training command as the card shows it, copyable"
    assert {"cnnzoo", "torch", "lightning"} <= set(w.versions) and w.license
    x = w.transforms()(torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8))
    assert x.shape == w.input_size


@pytest.mark.parametrize("name", ALL_WEIGHTS)
def test_the_weights_repr_is_one_short_line_with_what_a_user_looks_for(name: str) -> None:
    # A notebook shows `model.pretrained_cfg` as its repr; the dataclass's printed every field, commands included.
    w = cnnzoo.get_weights(name)
    shown = repr(w)
    assert shown.startswith(f"Weights({name!r}, arch={w.arch!r}, input_size={w.input_size!r}") and "\n" not in shown
    assert not any(f"{key}=" in shown for key in ("sha256", "evaluations", "command", "versions", "notes")), shown
    assert f"num_classes={w.num_classes}" in shown and f"file={w.file!r}" in shown
    measured = [k for k in ("test_acc", "val_acc") if w.metric(k) is not None]
    assert measured and all(f"{k}={round(w.metric(k) or 0, 4)!r}" in shown for k in measured)
    assert ("tta=" in shown) == (w.tta != "none")


@pytest.mark.parametrize("name", ALL_WEIGHTS)
def test_golden_logits(name: str) -> None:
    golden = GOLDEN / f"{name}.json"
    w = cnnzoo.get_weights(name)
    with torch.no_grad():
        logits = cnnzoo.load_pretrained(name)(fixed_input(w))
    if not golden.exists():  # a new weight: record its golden output once, then it is checked forever
        golden.write_text(json.dumps({"sha256": w.sha256, "logits": logits.tolist()}))
        pytest.fail(f"recorded {golden}; commit it and rerun")
    stored = json.loads(golden.read_text())
    assert stored["sha256"] == w.sha256, "the weights changed: delete the golden file to record the new outputs"
    torch.testing.assert_close(logits, torch.tensor(stored["logits"]), rtol=1e-4, atol=1e-5)


def test_digits_weights_on_real_scans() -> None:
    from cnnzoo.data import DigitsDataModule

    dm = DigitsDataModule()
    dm.setup()
    x, y = dm.splits["test"]
    model = cnnzoo.load_pretrained("lenet5.digits")
    w = model.pretrained_cfg
    batch = torch.stack([w.transforms()(img) for img in x[:16]])
    assert torch.equal(model(batch).argmax(1), y[:16])
    assert [w.class_names[i] for i in y[:16].tolist()] == [str(i) for i in y[:16].tolist()]


def test_mnist_weights_on_real_mnist_images(shared_data: Path) -> None:
    from torchvision.datasets import MNIST

    ds = MNIST(str(shared_data / "mnist"), train=False, download=False)
    model = cnnzoo.load_pretrained("lenet5.mnist")
    tf = model.pretrained_cfg.transforms()
    x = torch.stack([tf(ds[i][0]) for i in range(8)])  # PIL images, as a user would have them
    assert model(x).argmax(1).tolist() == [7, 2, 1, 0, 4, 1, 4, 9]  # the first eight test labels
    # The dataset's own (H, W) uint8 tensors are single gray images too, as torchvision's tv_tensors.Image reads them.
    assert torch.equal(torch.stack([tf(ds.data[i]) for i in range(8)]), x)
    with pytest.raises(
        ValueError, match=r"^expected an image \(C, H, W\) or \(H, W\), or a batch .* shape \(1, 2, 1, 28, 28\)"
    ):
        tf(torch.zeros(1, 2, 1, 28, 28, dtype=torch.uint8))


def test_new_num_classes_resets_only_the_classifier_and_says_so() -> None:
    base = cnnzoo.load_pretrained("lenet5.mnist")
    with pytest.warns(UserWarning, match="classifier was reset to 3 outputs"):
        model = cnnzoo.load_pretrained("lenet5.mnist", num_classes=3)
    assert model.get_classifier().out_features == 3
    for k, v in base.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(v, model.state_dict()[k]), k
    rgb = cnnzoo.load_pretrained("lenet5.mnist", in_chans=3)
    gray = torch.rand(1, 1, 28, 28)
    torch.testing.assert_close(rgb(gray.expand(1, 3, 28, 28)), base(gray), rtol=1e-4, atol=1e-5)
    # 0 is not "not given": it was, and the weights' one channel was built without a word.
    with pytest.raises(ValueError, match=r"^in_chans must be >= 1 \(leave it unset for the weights' own\), got 0$"):
        cnnzoo.load_pretrained("lenet5.mnist", in_chans=0)


def test_key_mismatch_is_an_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from cnnzoo.models._pretrained import load_strict

    state = cnnzoo.create_model("lenet5").state_dict()
    state.pop("features.0.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['features.0.bias'\].*unexpected \['extra.weight'\]"):
        load_strict(cnnzoo.create_model("lenet5"), state, "test")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    assert set(load_state_dict_file(tmp_path / "x.safetensors")) == {"w"}


def test_from_pretrained_task() -> None:
    task = ImageClassifier.from_pretrained("lenet5.digits")
    assert task.class_names == [str(i) for i in range(10)] and task.mean == [0.3058]
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(task.eval()(x), cnnzoo.load_pretrained("lenet5.digits")(x))
    with pytest.raises(ValueError, match="class_names has 2 names but the model has 3 classes"):
        ImageClassifier.from_pretrained("lenet5.digits", num_classes=3, class_names=["a", "b"])
    with pytest.warns(UserWarning, match="classifier starts from a fresh initialisation"):
        ft = ImageClassifier.from_pretrained("lenet5.digits", num_classes=3, class_names=["a", "b", "c"])
    assert ft.class_names == ["a", "b", "c"]
    # As many classes, other names: a new label set, so the classifier starts fresh too, as the docstring says.
    letters = [chr(ord("a") + i) for i in range(10)]
    relabelled = ImageClassifier.from_pretrained("lenet5.digits", class_names=letters)
    assert relabelled.hparams["new_head"] and relabelled.pretrained_class_names() is None
    published = cnnzoo.load_pretrained("lenet5.digits")
    assert not torch.equal(relabelled.net.get_classifier().weight, published.get_classifier().weight)
    assert torch.equal(relabelled.net.features[0].weight, published.features[0].weight)


# --- downloads ---------------------------------------------------------------------------------------------------
def test_download_fills_cache_then_makes_no_request(server: LocalServer, tmp_path: Path) -> None:
    body = os.urandom(100_000)
    server.files["/w.bin"] = body
    sha = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "cache" / "w.bin"
    assert download(server.url("/w.bin"), dest, sha, len(body)).read_bytes() == body
    assert len(server.requests) == 1
    download(server.url("/w.bin"), dest, sha, len(body))
    assert len(server.requests) == 1  # cache hit, re-verified, no request
    assert [p.name for p in dest.parent.iterdir()] == ["w.bin"]


def test_flipped_byte_is_rejected_and_leaves_nothing(server: LocalServer, tmp_path: Path) -> None:
    body = bytearray(os.urandom(50_000))
    sha = hashlib.sha256(body).hexdigest()
    body[1234] ^= 0xFF
    server.files["/w.bin"] = bytes(body)
    with pytest.raises(IntegrityError) as err:
        download(server.url("/w.bin"), tmp_path / "w.bin", sha, len(body))
    assert sha in str(err.value) and hashlib.sha256(body).hexdigest() in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_leaves_no_partial_file_and_retry_succeeds(server: LocalServer, tmp_path: Path) -> None:
    body = os.urandom(200_000)
    server.files["/w.bin"] = body
    sha = hashlib.sha256(body).hexdigest()
    server.cut_after = 70_000
    # Where the dropped connection reads as an early end of file (Linux), the size check names the cause; elsewhere
    # urllib may raise its own connection error first.
    with pytest.raises((IntegrityError, OSError)) as err:
        download(server.url("/w.bin"), tmp_path / "w.bin", sha, len(body))
    if isinstance(err.value, IntegrityError):
        assert "is 70000 bytes, expected 200000 (connection cut short?)" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    server.cut_after = None
    assert download(server.url("/w.bin"), tmp_path / "w.bin", sha, len(body)).read_bytes() == body


def test_corrupted_cache_file_is_replaced(server: LocalServer, tmp_path: Path) -> None:
    body = os.urandom(10_000)
    server.files["/w.bin"] = body
    sha = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "w.bin"
    dest.write_bytes(body[:-1] + bytes([body[-1] ^ 0xFF]))  # b"x" in its place was the same file one run in 256
    with pytest.warns(UserWarning, match="failed verification"):
        download(server.url("/w.bin"), dest, sha, len(body))
    assert dest.read_bytes() == body


def test_registry_entry_with_url_loads_through_the_cache(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registered: Any
) -> None:
    local = cnnzoo.get_weights("lenet5.digits")
    server.files["/lenet5.safetensors"] = local.local_path().read_bytes()
    remote = Weights(**{**local.to_dict(), "name": "lenet5.remote", "url": server.url("/lenet5.safetensors")})
    registered(remote)
    monkeypatch.setenv("CNNZOO_HOME", str(tmp_path / "home"))
    model = cnnzoo.load_pretrained("lenet5.remote")
    assert (tmp_path / "home" / local.file).is_file()
    x = torch.randn(1, 1, 28, 28)
    torch.testing.assert_close(model(x), cnnzoo.load_pretrained("lenet5.digits")(x))
    cnnzoo.load_pretrained("lenet5.remote")
    assert len(server.requests) == 1


# --- unsafe pickles ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickle_payload_is_refused_on_path_and_url(
    suffix: str, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registered: Any
) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / f"evil{suffix}"
    write_malicious_pickle(evil, {"state_dict": {"w": PicklePayload(sentinel)}})
    with pytest.raises(pickle.UnpicklingError, match="refused to load: the file needs a full unpickle"):
        load_state_dict_file(evil)
    with pytest.raises(pickle.UnpicklingError, match="refused to load: the file needs a full unpickle"):
        ImageClassifier.load_from_checkpoint(evil, weights_only=True)

    body = evil.read_bytes()
    server.files[f"/evil{suffix}"] = body
    url_entry = Weights(
        **{
            **cnnzoo.get_weights("lenet5.digits").to_dict(),
            "name": "lenet5.evil",
            "file": f"evil{suffix}",
            "url": server.url(f"/evil{suffix}"),
            "sha256": hashlib.sha256(body).hexdigest(),
            "num_bytes": len(body),
        }
    )
    registered(url_entry)
    monkeypatch.setenv("CNNZOO_HOME", str(tmp_path / "home"))
    with pytest.raises(pickle.UnpicklingError, match="refused to load: the file needs a full unpickle"):
        cnnzoo.load_pretrained("lenet5.evil")
    assert not sentinel.exists()


def test_no_torch_load_without_weights_only_in_the_package() -> None:
    import re

    root = Path(cnnzoo.__file__).parent
    for path in root.rglob("*.py"):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path}: {call}"


# --- publish -------------------------------------------------------------------------------------------------------
def test_publish_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registered: Any) -> None:
    from cnnzoo.cli import CnnzooCLI
    from cnnzoo.publish import publish

    from .conftest import RECIPES

    recipe = str(RECIPES / "lenet5_digits.yaml")
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    fit = CnnzooCLI(
        args=["fit", "--config", recipe, "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}", *quiet]
    )
    ckpt = Path(fit.trainer.checkpoint_callback.best_model_path)
    test = CnnzooCLI(
        args=["test", "--config", recipe, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}", *quiet]
    )
    report = Path(next(cb for cb in test.trainer.callbacks if type(cb).__name__ == "EvalReport").written_to)
    w = publish(ckpt, "lenet5.roundtrip", tmp_path / "out", [report], "recipes/lenet5_digits.yaml", "cnnzoo fit ...")
    assert (tmp_path / "out" / f"lenet5.roundtrip-{w.sha256[:8]}.safetensors").is_file()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "test_acc" in card and "load_pretrained" in card and "limitations" in card.lower()
    # The Hub reads the card's metadata (license, task, library) and its results panel from model-index.
    from huggingface_hub import ModelCard

    hub = ModelCard(card).data
    assert (hub.license, hub.library_name, hub.pipeline_tag) == ("mit", "cnnzoo", "image-classification")
    shown = [(r.dataset_name, r.dataset_split, r.metric_name, r.metric_value) for r in hub.eval_results or []]
    assert shown == [(m["dataset"], m["split"], m["metric"], m["value"]) for m in w.metrics]
    assert {r.metric_type for r in hub.eval_results or []} >= {"accuracy", "f1", "loss"}
    assert w.metrics[0]["value"] == pytest.approx(float(test.trainer.callback_metrics[w.metrics[0]["metric"]]))

    loaded_w = Weights.from_json(tmp_path / "out" / "lenet5.roundtrip.json")
    monkeypatch.setattr(_pretrained, "PRETRAINED_DIR", tmp_path / "out")
    registered(loaded_w)
    model = cnnzoo.load_pretrained("lenet5.roundtrip")
    trained = ImageClassifier.load_from_checkpoint(ckpt, weights_only=True, map_location="cpu").eval()
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), trained(x))
    assert list(model.pretrained_cfg.class_names) == trained.class_names

    other_report = json.loads(report.read_text()) | {"checkpoint_sha256": "0" * 64}
    (tmp_path / "other.json").write_text(json.dumps(other_report))
    with pytest.raises(ValueError, match="measured on another file"):
        publish(ckpt, "lenet5.x", tmp_path / "o2", [tmp_path / "other.json"])
    with pytest.raises(ValueError, match="holds a 'lenet5' model"):
        publish(ckpt, "vgg11_bn.x", tmp_path / "o3")


def test_publish_float16_halves_the_file_and_takes_figures_of_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cnnzoo_said: list[str]
) -> None:
    from cnnzoo.cli import main
    from cnnzoo.publish import publish

    monkeypatch.chdir(tmp_path)
    fit = ["fit", "-c", "lenet5_digits", "--trainer.max_epochs=1", "--trainer.limit_train_batches=4"]
    assert main([*fit, "--trainer.enable_model_summary=false", "--trainer.enable_progress_bar=false"]) == 0
    ckpt = next(tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt"))
    full = publish(ckpt, "lenet5.full", tmp_path / "full")
    half = publish(ckpt, "lenet5.half", tmp_path / "half", dtype="float16")
    assert half.dtype == "float16" and full.dtype == "float32"
    assert "dtype" not in json.loads((tmp_path / "full" / "lenet5.full.json").read_text()), "old files unchanged"
    assert half.num_bytes < 0.55 * full.num_bytes
    assert "stored as float16: loading casts it to float32" in (tmp_path / "half" / "README.md").read_text()
    model = cnnzoo.load_pretrained(str(tmp_path / "half"))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    x = torch.randn(8, 1, 28, 28)
    reference = cnnzoo.load_pretrained(str(tmp_path / "full"))(x)
    assert torch.allclose(model(x), reference, atol=2e-2) and not torch.equal(model(x), reference)

    # The checkpoint's figures are not the rounded file's: refused, with the way to measure the file.
    test = ["test", "-c", "lenet5_digits", "--trainer.enable_progress_bar=false"]
    assert main([*test, f"--ckpt_path={ckpt}", "--trainer.default_root_dir=of_ckpt"]) == 0
    of_ckpt = next(tmp_path.glob("of_ckpt/**/test_report.json"))
    with pytest.raises(ValueError, match="measured on the float32 checkpoint, and a --dtype float16 file rounds"):
        publish(ckpt, "lenet5.half", tmp_path / "refused", [of_ckpt], dtype="float16")
    assert not (tmp_path / "refused").exists()
    assert main([*test, "--model.init_args.pretrained=half", "--trainer.default_root_dir=of_file"]) == 0
    of_file = next(tmp_path.glob("of_file/**/test_report.json"))
    again = publish(ckpt, "lenet5.half", tmp_path / "half", [of_file], dtype="float16")
    assert again.sha256 == half.sha256 and again.evaluations[0]["metrics"]["test_acc"] == pytest.approx(
        json.loads(of_file.read_text())["metrics"]["test_acc"]
    )
    with pytest.raises(ValueError, match="measured on another file"):  # the float16 file's figures, for float32
        publish(ckpt, "lenet5.full", tmp_path / "full", [of_file])
    # A value beyond float16's range would be stored as inf, and every prediction would be NaN: refused.
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"]["net.classifier.bias"][0] = 1e6
    torch.save(state, tmp_path / "huge.ckpt")
    with pytest.raises(ValueError, match=r"classifier\.bias hold values beyond float16's range \(largest 65504\)"):
        publish(tmp_path / "huge.ckpt", "lenet5.huge", tmp_path / "huge", dtype="float16")
    assert not (tmp_path / "huge").exists()
    # Publishing a name again replaces its file: the folder (a Hub upload) held both before.
    again = publish(ckpt, "lenet5.full", tmp_path / "full", dtype="float16")
    assert [p.name for p in (tmp_path / "full").glob("*.safetensors")] == [again.file] != [full.file]
    assert f"full/{full.file}, the earlier file of lenet5.full, is replaced" in "\n".join(cnnzoo_said)
    # Another name into that folder would overwrite the card of the release there and leave two for load_pretrained.
    card = (tmp_path / "full" / "README.md").read_text()
    with pytest.raises(ValueError, match=r"full already holds the release lenet5\.full; a folder holds one release"):
        publish(ckpt, "lenet5.other", tmp_path / "full")
    assert (tmp_path / "full" / "README.md").read_text() == card and not list((tmp_path / "full").glob("*other*"))
    # A folder's own README.md (--out . in a project) was replaced by the card without a word.
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "README.md").write_text("# My project\n")
    with pytest.raises(ValueError, match=r"project/README\.md is not a model card that cnnzoo publish wrote"):
        publish(ckpt, "lenet5.mine", tmp_path / "project")
    assert [p.name for p in (tmp_path / "project").iterdir()] == ["README.md"]
    assert (tmp_path / "project" / "README.md").read_text() == "# My project\n"


def test_a_run_records_the_commit_it_started_from_not_the_tree_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Editing the checkout while a long fit trains must not mark the run's report ``+dirty``."""
    from cnnzoo import _provenance
    from cnnzoo.cli import main

    edited: list[bool] = []
    monkeypatch.setattr(_provenance, "commit_of", lambda package: "0123abc" + "+dirty" * bool(edited))
    source_commit.cache_clear()
    request.addfinalizer(source_commit.cache_clear)  # the other tests read the real checkout's commit
    monkeypatch.setattr(ImageClassifier, "on_train_end", lambda self: edited.append(True))  # an edit during the run
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "-c", "lenet5_digits", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    assert main([*fit, "--trainer.limit_val_batches=1", "--trainer.enable_model_summary=false"]) == 0
    report = json.loads(next(tmp_path.glob("lightning_logs/version_0/fit_report.json")).read_text())
    assert edited and report["versions"]["cnnzoo_commit"] == "0123abc"


def test_a_published_run_records_its_command_and_its_card_loads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from cnnzoo.cli import main

    monkeypatch.chdir(tmp_path)
    fit = ["fit", "-c", "lenet5_digits", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2"]
    assert main([*fit, "--trainer.enable_model_summary=false"]) == 0
    run = tmp_path / "lightning_logs" / "version_0"
    report = json.loads((run / "fit_report.json").read_text())
    best = report["best"]["path"]
    assert report["versions"].get("cnnzoo_commit") == source_commit(), "the commit, when run from a checkout"
    assert report["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # Published later, maybe from another commit: the weights record the one that trained them.
    report["versions"]["cnnzoo_commit"] = "0123abc"
    (run / "fit_report.json").write_text(json.dumps(report))
    assert main(["publish", best, "--name", "lenet5.mine", "--out", "released"]) == 0
    meta = json.loads((tmp_path / "released" / "lenet5.mine.json").read_text())
    assert meta["command"] == json.loads((run / "fit_report.json").read_text())["command"]
    # As typed: the shipped recipe by its name, which runs on any install, not this install's path to its copy.
    assert meta["command"].startswith("cnnzoo fit -c lenet5_digits --trainer") and meta["recipe"] == "lenet5_digits"
    assert meta["versions"] == report["versions"]
    card = (tmp_path / "released" / "README.md").read_text()
    assert "None" not in card and f"Recipe: `{meta['recipe']}`" in card and meta["command"] in card
    assert "trained by cnnzoo 0.1.0 at commit `0123abc`" in card
    # The card's own snippet runs as written, where publish ran: it named the weights ("lenet5.mine"), which only
    # the zoo's own weights resolve.
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'load_pretrained("released")' in snippet
    scope: dict[str, Any] = {"image": Image.new("L", (28, 28))}
    exec(snippet, scope)
    assert scope["label"] in meta["class_names"]
    # Without a report the card says so, and publish prints the command that measures the file: it runs as printed,
    # and its report, given back to publish, fills the card.
    assert "## Measured metrics\n\nNot measured: " in card
    measure = capsys.readouterr().out.rsplit("next: ", 1)[1].splitlines()[1].split()
    assert measure[:2] == ["cnnzoo", "test"] and measure[-2:] == ["--model.init_args.pretrained", "released"]
    assert main([*measure[1:], "--trainer.enable_model_summary=false"]) == 0
    measured = next(tmp_path.glob("lightning_logs/*/test_report.json"))
    assert main(["publish", best, "--name", "lenet5.mine", "--out", "released", "--report", str(measured)]) == 0
    card = (tmp_path / "released" / "README.md").read_text()
    assert "| test | test_acc |" in card and "Not measured" not in card and "next: " not in capsys.readouterr().out


def test_the_card_of_a_hub_upload_loads_from_the_hub(tmp_path: Path) -> None:
    from cnnzoo.publish import publish

    task = ImageClassifier(model="lenet5", class_names=[str(i) for i in range(10)], mean=(0.5,), std=(0.5,))
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, tmp_path / "m.ckpt")
    publish(tmp_path / "m.ckpt", "lenet5.hub", tmp_path / "out", hub_repo="me/lenet5-hub")
    assert 'load_pretrained("hf-hub:me/lenet5-hub")' in (tmp_path / "out" / "README.md").read_text()
    # Without measured metrics there is no model-index (the Hub refuses one without results); a license that is not
    # an id is "other" there, and the card's text names it.
    from huggingface_hub import ModelCard

    card = (tmp_path / "out" / "README.md").read_text()
    assert ModelCard(card).data.eval_results is None and "model-index" not in card
    publish(tmp_path / "m.ckpt", "lenet5.hub", tmp_path / "own", license="Research use only")
    card = (tmp_path / "own" / "README.md").read_text()
    assert ModelCard(card).data.license == "other" and "License: Research use only." in card


# --- honest metrics ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "index"),
    [
        (n, i)
        for n in ALL_WEIGHTS
        if n.endswith((".mnist", ".digits"))
        for i in range(len(cnnzoo.get_weights(n).evaluations))
    ],
)
def test_stored_evaluation_commands_reproduce_the_published_metrics(
    name: str, index: int, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each evaluation command in the metadata runs as written, from the repository root, and gives its figures."""
    import shlex

    from cnnzoo.cli import CnnzooCLI

    evaluation = cnnzoo.get_weights(name).evaluations[index]
    args = shlex.split(evaluation["command"])
    assert args[0] == "cnnzoo" and "--ckpt_path" not in args and "../runs" not in evaluation["command"]
    monkeypatch.chdir(Path(__file__).parents[1])
    output = [f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"]
    cli = CnnzooCLI(args=[*args[1:], *output])
    for metric, value in evaluation["metrics"].items():
        assert float(cli.trainer.callback_metrics[metric]) == pytest.approx(value, abs=1e-6), metric


@pytest.mark.slow  # unpacks the whole CIFAR-10 training split
@pytest.mark.parametrize("name", [n for n in ALL_WEIGHTS if n.endswith(".cifar10")])
def test_cifar_weights_on_real_cifar_images(name: str, cifar10_train: Path) -> None:
    from cnnzoo.data import ImageFolderDataModule

    model = cnnzoo.load_pretrained(name)
    w = model.pretrained_cfg
    dm = ImageFolderDataModule(root=str(cifar10_train), img_size=32, val_fraction=0.1, check_images=False)
    assert dm.class_names == w.class_names
    dm.setup()
    from PIL import Image

    samples = dm.samples["val"][:300]  # the held-out split the published val_acc was measured on
    x = torch.stack([w.transforms()(Image.open(p)) for p, _ in samples])
    with torch.no_grad():  # with the test-time augmentation the published figure was measured with
        logits = cnnzoo.tta_logits(model, x, w.tta)  # in a plain loop, as the pretrained page shows
        acc = (logits.argmax(1) == torch.tensor([y for _, y in samples])).float().mean().item()
    published = w.metric("val_acc")
    assert acc == pytest.approx(published, abs=0.08)  # 300 of the 5,000 images: within sampling error


def test_publish_push_to_hub_uploads_the_release_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from lightning.pytorch import Trainer

    from cnnzoo.publish import main as publish_main

    calls: list[dict[str, str]] = []
    made: list[tuple[str, dict[str, Any]]] = []

    class FakeApi:
        def create_repo(self, repo_id: str, **kw: Any) -> None:
            made.append((repo_id, kw))

        def upload_folder(self, **kw: str) -> None:
            calls.append(kw)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi))
    monkeypatch.setitem(sys.modules, "huggingface_hub.errors", types.SimpleNamespace(HfHubHTTPError=RuntimeError))
    task = ImageClassifier.from_pretrained("lenet5.digits")
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    out = tmp_path / "release"
    out.mkdir()
    (out / ".env").write_text("HF_TOKEN=secret\n")  # the whole folder went up, whatever else it held
    (out / "notes.txt").write_text("draft\n")
    assert (
        publish_main(
            [str(tmp_path / "m.ckpt"), "--name", "lenet5.hub", "--out", str(out), "--push-to-hub", "me/lenet5-hub"]
        )
        == 0
    )
    (call,) = calls
    # A repository that does not exist yet is made first: upload_folder alone answered 404.
    assert made == [("me/lenet5-hub", {"repo_type": "model", "exist_ok": True})]
    assert {k: call[k] for k in ("folder_path", "repo_id", "repo_type")} == {
        "folder_path": str(out), "repo_id": "me/lenet5-hub", "repo_type": "model"
    }  # fmt: skip
    uploaded = {p.name for p in out.iterdir() if any(fnmatch.fnmatch(p.name, pat) for pat in call["allow_patterns"])}
    w = cnnzoo.load_pretrained(str(out)).pretrained_cfg
    assert uploaded == {w.file, "lenet5.hub.json", "README.md"}
    # An earlier file of the name goes from the repository too (its history keeps it), as from the folder.
    assert [fnmatch.fnmatch(f, *call["delete_patterns"]) for f in ("lenet5.hub-0123abcd.safetensors", "x.json")] == [
        True, False
    ]  # fmt: skip

    def offline(self: FakeApi, **kw: str) -> None:
        raise OSError("Connection refused")

    monkeypatch.setattr(FakeApi, "upload_folder", offline)  # no network, or no login: one line, and the release stays
    with pytest.raises(ValueError, match=r"^--push-to-hub me/lenet5-hub: Connection refused\. The release is written"):
        publish_main(
            [str(tmp_path / "m.ckpt"), "--name", "lenet5.hub", "--out", str(out), "--push-to-hub", "me/lenet5-hub"]
        )
    assert cnnzoo.load_pretrained(str(out)).pretrained_cfg.name == "lenet5.hub"


def test_versions_name_the_commit_of_a_checkout_only(tmp_path: Path) -> None:
    # "cnnzoo 0.1.0" covers every state of the code between releases; reports and published weights record the
    # commit when cnnzoo runs from a git checkout.
    import subprocess

    from cnnzoo._provenance import commit_of

    def git(*args: str, cwd: Path = tmp_path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()

    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    assert commit_of(package) is None, "no repository"
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "empty")
    assert commit_of(package) is None, "inside a repository, but not tracked (a virtualenv in a project)"
    git("add", "src")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "pkg")
    head = git("rev-parse", "HEAD")
    assert commit_of(package) == head
    (package / "new.py").write_text("")
    assert commit_of(package) == head, "an untracked file changes nothing that ran"
    (package / "__init__.py").write_text("x = 2\n")
    assert commit_of(package) == head + "+dirty"


@pytest.mark.parametrize("arch", cnnzoo.list_models())
def test_every_model_has_a_torch_hub_entry_point(arch: str) -> None:
    hub = torch.hub.load(str(REPO), arch, source="local", verbose=False)
    assert type(hub) is type(cnnzoo.create_model(arch))
    assert not hasattr(hub, "pretrained_cfg") or not isinstance(hub.pretrained_cfg, Weights)  # random initialisation
    if not any(cnnzoo.get_weights(name).arch == arch for name in ALL_WEIGHTS):
        with pytest.raises(ValueError, match=f"{arch} has no published weights: build it without them"):
            torch.hub.load(str(REPO), arch, source="local", weights=True, verbose=False)


@pytest.mark.parametrize("name", ALL_WEIGHTS)
def test_torch_hub_loads_every_published_weights(name: str) -> None:
    w = cnnzoo.get_weights(name)
    hub = torch.hub.load(str(REPO), w.arch, source="local", weights=name, verbose=False)
    assert hub.pretrained_cfg.name == name and not hub.training
    alias = torch.hub.load(str(REPO), w.arch, source="local", pretrained=name, verbose=False)  # timm's keyword
    assert alias.pretrained_cfg.name == name and not alias.training
    tag = name.partition(".")[2]  # the tag alone, as create_model(arch, pretrained=tag) takes it
    assert torch.hub.load(str(REPO), w.arch, source="local", weights=tag, verbose=False).pretrained_cfg.name == name
    expected = cnnzoo.load_pretrained(name).state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in hub.state_dict().items())
    if w.default:
        assert (
            torch.hub.load(str(REPO), w.arch, source="local", weights=True, verbose=False).pretrained_cfg.name == name
        )
    other = next(a for a in cnnzoo.list_models() if a != w.arch)
    with pytest.raises(ValueError, match=f"weights {name} are for {w.arch}, not {other}"):
        torch.hub.load(str(REPO), other, source="local", weights=name, verbose=False)


@pytest.mark.parametrize("name", ALL_WEIGHTS)
def test_a_builder_imported_by_name_takes_pretrained_and_weights(name: str) -> None:
    # `from timm.models import resnet18; resnet18(pretrained=True)`, torchvision's `resnet18(weights=...)`: here
    # both were "got an unexpected keyword argument".
    import importlib

    w = cnnzoo.get_weights(name)
    module = importlib.import_module(cnnzoo.models._registry._model_to_module[w.arch])
    builder = getattr(module, w.arch)
    expected = cnnzoo.load_pretrained(name).state_dict()
    for model in (builder(pretrained=name), builder(weights=name), builder(pretrained=name.partition(".")[2])):
        assert model.pretrained_cfg.name == name and model.training  # as create_model gives it
        assert all(torch.equal(t, expected[k]) for k, t in model.state_dict().items())
    if w.default:
        assert builder(pretrained=True).pretrained_cfg.name == name
    assert type(builder()) is type(builder(pretrained=False)) is type(cnnzoo.create_model(w.arch))
    with pytest.raises(ValueError, match="give one of them"):
        builder(pretrained=True, weights=name)


def test_torch_hub_needs_only_the_dependencies_it_names() -> None:
    # hubconf.py's `dependencies` is what torch.hub checks before it imports the repository; everything else that
    # loading a model imports must be the standard library, those packages (and what they import), or cnnzoo's own
    # plain-PyTorch models: no Lightning, timm or CLI packages.
    tree = ast.parse((REPO / "hubconf.py").read_text())
    deps = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "dependencies" for t in node.targets)
    )
    script = f"""
import importlib.abc, sys
from PIL import Image  # the user's image, as the docs show it
for name in {deps!r}:
    __import__(name)
loaded = {{m.split(".")[0] for m in sys.modules}} | {{"cnnzoo", "hubconf"}}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top not in loaded and top not in sys.stdlib_module_names:
            raise ImportError(f"loading a hub model imported {{name}}, which hubconf.dependencies does not name")

sys.meta_path.insert(0, Refuse())
import torch
model = torch.hub.load({str(REPO)!r}, "lenet5", source="local", weights="lenet5.mnist", verbose=False)
x = model.pretrained_cfg.transforms()(Image.new("L", (40, 40))).unsqueeze(0)
print(model(x).shape)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "torch.Size([1, 10])"
