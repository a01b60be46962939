"""Published weights load back from wherever they were published: folder, JSON, safetensors, URL and the Hub."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

import cnnzoo
from cnnzoo.errors import ConfigError, WeightsUnavailableError
from cnnzoo.models import IntegrityError
from cnnzoo.tasks import ImageClassifier

from .conftest import LocalServer

NAME = "lenet5.digits"


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A folder laid out as ``cnnzoo publish`` writes it, holding a copy of bundled weights."""
    w = cnnzoo.get_weights(NAME)
    out = tmp_path / "published"
    out.mkdir()
    shutil.copy(w.local_path(), out / w.file)
    (out / f"{NAME}.json").write_text(json.dumps(w.to_dict(), indent=2))
    (out / "README.md").write_text("# model card\n")
    return out


def same_as_bundled(model: torch.nn.Module, metadata: bool = True) -> None:
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), cnnzoo.load_pretrained(NAME)(x), rtol=0, atol=0)
    assert not model.training and (not metadata or model.pretrained_cfg.name == NAME)


@pytest.mark.parametrize("form", ["folder", "json", "safetensors"])
def test_load_pretrained_from_a_published_folder(published: Path, form: str) -> None:
    w = cnnzoo.get_weights(NAME)
    source = {"folder": published, "json": published / f"{NAME}.json", "safetensors": published / w.file}[form]
    same_as_bundled(cnnzoo.load_pretrained(str(source)))
    # create_model and torch.hub take the same sources as timm-style `pretrained` and `weights`.
    same_as_bundled(cnnzoo.create_model("lenet5", pretrained=str(source)).eval())
    hub = torch.hub.load(str(Path(__file__).parents[1]), "lenet5", source="local", weights=str(source), verbose=False)
    same_as_bundled(hub)
    with pytest.raises(ValueError, match=r"^weights lenet5\.digits are for lenet5, not simple_cnn$"):
        cnnzoo.create_model("simple_cnn", pretrained=str(source))


def test_a_tampered_published_file_is_refused(published: Path) -> None:
    w = cnnzoo.get_weights(NAME)
    data = bytearray((published / w.file).read_bytes())
    data[-1] ^= 0xFF
    (published / w.file).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        cnnzoo.load_pretrained(str(published))


def test_cnnzoo_weights_shows_a_published_folder_as_it_shows_the_registry(
    published: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `cnnzoo weights published` said "'published' matches no published weights" right after a publish.
    from cnnzoo.cli import main

    assert main(["weights", NAME]) == 0
    registry = capsys.readouterr().out
    for source in (published, published / f"{NAME}.json"):
        assert main(["weights", str(source)]) == 0
        assert capsys.readouterr().out == registry, "the same weights, the same row"
    (tmp_path / "empty").mkdir()
    assert main(["weights", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"cnnzoo: error: {tmp_path / 'empty'}: no weights JSON in the folder") and "Traceback" not in err
    )


def test_cnnzoo_summary_reads_a_published_folder_as_it_reads_the_registry(
    published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `cnnzoo summary published` was "unknown model 'published'", where `cnnzoo weights published` shows its row.
    from cnnzoo.cli import main

    assert main(["summary", NAME, "--format", "json"]) == 0
    registry = capsys.readouterr().out
    for source in (published, published / f"{NAME}.json"):
        assert main(["summary", str(source), "--format", "json"]) == 0
        assert capsys.readouterr().out == registry, "the same architecture, at the input it was trained at"


def test_sources_without_metadata_say_what_is_missing(published: Path, tmp_path: Path) -> None:
    w = cnnzoo.get_weights(NAME)
    (published / f"{NAME}.json").unlink()
    with pytest.raises(ValueError, match="no weights JSON beside it"):
        cnnzoo.load_pretrained(str(published / w.file))
    with pytest.raises(ValueError, match="no weights JSON in the folder"):
        cnnzoo.load_pretrained(str(published))
    with pytest.raises(FileNotFoundError, match="hf-hub:org/repo"):
        cnnzoo.load_pretrained(str(tmp_path / "nothing.json"))
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="not a cnnzoo weights entry"):
        cnnzoo.load_pretrained(str(tmp_path / "bad.json"))
    # Files that exist but are not published weights are named for what they are, not "no such weights".
    torch.save({"state_dict": {}}, tmp_path / "run.ckpt")
    with pytest.raises(ConfigError, match=r"run\.ckpt is a training checkpoint, not published weights: publish it"):
        cnnzoo.load_pretrained(str(tmp_path / "run.ckpt"))
    torch.save(cnnzoo.create_model("lenet5").state_dict(), tmp_path / "bare.pt")  # cannot be published either
    with pytest.raises(ConfigError, match=r"bare\.pt holds a bare state dict .*: load it into the model it came from"):
        cnnzoo.load_pretrained(str(tmp_path / "bare.pt"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"notes\.txt: not published weights; give a weights name"):
        cnnzoo.load_pretrained(str(tmp_path / "notes.txt"))
    with pytest.raises(ConfigError, match=r"hf-hub:: name the Hub repository"):
        cnnzoo.load_pretrained("hf-hub:")
    for empty in ("", " "):  # not the current directory searched for a weights JSON
        with pytest.raises(ValueError, match=r"^the weights name is empty; give a weights name"):
            cnnzoo.load_pretrained(empty)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_load_pretrained_from_urls_checks_every_file(published: Path, server: LocalServer, tmp_path: Path) -> None:
    os.environ["CNNZOO_HOME"] = str(tmp_path / "cache")
    try:
        w = cnnzoo.get_weights(NAME)
        meta = (published / f"{NAME}.json").read_bytes()
        server.files = {f"/w/{NAME}.json": meta, f"/w/{w.file}": (published / w.file).read_bytes()}
        json_url = server.url(f"/w/{NAME}.json") + "#sha256=" + hashlib.sha256(meta).hexdigest()
        same_as_bundled(cnnzoo.load_pretrained(json_url))
        same_as_bundled(cnnzoo.load_pretrained(server.url(f"/w/{w.file}") + f"#sha256={w.sha256}"))
        with pytest.raises(IntegrityError, match="describes"):
            cnnzoo.load_pretrained(server.url(f"/w/{w.file}") + "#sha256=" + "0" * 64)
        with pytest.raises(ValueError, match="must state its sha256"):
            cnnzoo.load_pretrained(server.url(f"/w/{NAME}.json"))
        # A URL that fails names itself and the fix; urllib's own error said "Not Found" or "Connection refused".
        missing = server.url("/w/gone.json")
        with pytest.raises(WeightsUnavailableError, match=f"cannot download {re.escape(missing)}: HTTP 404"):
            cnnzoo.load_pretrained(f"{missing}#sha256={'1' * 64}")
        closed = f"http://127.0.0.1:{free_port()}/w/{NAME}.json"
        with pytest.raises(WeightsUnavailableError, match=f"cannot download {re.escape(closed)}: .*Check the address"):
            cnnzoo.load_pretrained(f"{closed}#sha256={'1' * 64}")
        assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "gone" in p.name]
    finally:
        del os.environ["CNNZOO_HOME"]


def test_image_classifier_fine_tunes_a_published_folder(published: Path) -> None:
    task = ImageClassifier(model="lenet5", pretrained=str(published))
    assert task.class_names == [str(i) for i in range(10)] and task.pretrained_cfg.name == NAME
    same_as_bundled(task.net.eval(), metadata=False)
    with pytest.warns(UserWarning, match="classifier starts from a fresh initialisation"):
        new = ImageClassifier(model="lenet5", pretrained=str(published), num_classes=3, class_names=list("abc"))
    assert new.class_names == ["a", "b", "c"]
    with pytest.raises(ValueError, match="holds lenet5 weights, but model is 'simple_cnn'"):
        ImageClassifier(model="simple_cnn", pretrained=str(published))


def test_another_networks_weights_raise_without_first_saying_they_loaded(tmp_path: Path) -> None:
    # The classifier's "everything else is loaded" warning came before the error that nothing was.
    torch.save(cnnzoo.create_model("lenet5").state_dict(), tmp_path / "w.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"w\.pt does not fit VGG: missing"):
            ImageClassifier(model="vgg11_bn", pretrained=str(tmp_path / "w.pt"))


def test_create_model_pretrained_as_timm_users_type_it() -> None:
    default = cnnzoo.create_model("lenet5", pretrained=True)
    assert default.training and default.pretrained_cfg.name == cnnzoo.get_weights("lenet5").name
    tagged = cnnzoo.create_model("lenet5", pretrained="digits", num_classes=4)
    assert tagged.pretrained_cfg.name == NAME and tagged.get_classifier().out_features == 4
    assert cnnzoo.create_model("lenet5.digits").pretrained_cfg.name == NAME
    with pytest.raises(ValueError, match="unknown pretrained weights"):
        cnnzoo.create_model("lenet5", pretrained="nope")
    with pytest.raises(ValueError, match="cannot be built with"):
        cnnzoo.create_model("lenet5", pretrained="digits", img_size=32)
    # The full name, as list_pretrained() prints it; another architecture's, or none at all, is named as such.
    assert cnnzoo.create_model("lenet5", pretrained=NAME).pretrained_cfg.name == NAME
    with pytest.raises(ValueError, match=r"^weights vgg_cifar_fast\.cifar10 are for vgg_cifar_fast, not lenet5$"):
        cnnzoo.create_model("lenet5", pretrained="vgg_cifar_fast.cifar10")
    with pytest.raises(ValueError, match=r"^vgg11_bn has no published weights: build it without them"):
        cnnzoo.create_model("vgg11_bn", pretrained=True)


def test_a_weights_name_reads_the_same_in_create_model_and_the_tasks() -> None:
    # ImageClassifier(model="lenet5.digits") loaded the weights but recorded pretrained=False and no pretrained_cfg;
    # its pretrained="digits" (a tag) was looked for as a file; create_model("lenet5.digits", pretrained=False)
    # loaded the weights regardless.
    named = ImageClassifier(model=NAME)
    assert named.hparams["model"] == "lenet5" and named.hparams["pretrained"] == NAME
    assert named.pretrained_cfg is not None and named.pretrained_cfg.name == NAME
    assert named.class_names == list(cnnzoo.get_weights(NAME).class_names)
    tagged = ImageClassifier(model="lenet5", pretrained="digits")
    assert tagged.pretrained_cfg is not None and tagged.pretrained_cfg.name == NAME
    reference = cnnzoo.load_pretrained(NAME).state_dict()
    for task in (named, tagged):
        assert all(torch.equal(v, reference[k]) for k, v in task.net.state_dict().items())
    # A mistyped name gets the close matches, from the tasks as from create_model; a missing file stays a file.
    with pytest.raises(ValueError, match=r"^unknown pretrained weights 'lenet5\.digts'\. Did you mean: lenet5\.digits"):
        ImageClassifier(model="lenet5", pretrained="digts")
    with pytest.raises(ValueError, match=r"^unknown pretrained weights 'lenet5\.mnsit'\. Did you mean: lenet5\.mnist"):
        cnnzoo.create_model("lenet5.mnsit")
    with pytest.raises(FileNotFoundError, match=r"^model\.pt: no such weights file$"):
        ImageClassifier(model="lenet5", pretrained="model.pt")
    with pytest.raises(ValueError, match=r"^vgg11_bn has no published weights"):
        ImageClassifier(model="vgg11_bn", pretrained=True)
    # A name and a pretrained that contradict it are refused, never one of them quietly.
    with pytest.raises(ValueError, match=r"^'lenet5\.digits' names published weights, and pretrained=False asks"):
        cnnzoo.create_model(NAME, pretrained=False)
    with pytest.raises(ValueError, match=r"^'lenet5\.digits' names weights, and pretrained='mnist' names others"):
        ImageClassifier(model=NAME, pretrained="mnist")
    assert cnnzoo.create_model(NAME, pretrained="digits").pretrained_cfg.name == NAME
    with pytest.raises(ValueError, match=r"^'hf-hub:org/repo' names published weights, and pretrained=False asks"):
        cnnzoo.create_model("hf-hub:org/repo", pretrained=False)  # refused before any request
    assert getattr(cnnzoo.create_model("lenet5", pretrained=None), "pretrained_cfg", None) is None


def test_weights_read_as_torchvisions_do() -> None:
    # torchvision users pass the weights object to the builder and read weights.meta["categories"]; the first
    # failed with "File name too long" (its repr taken for a path), the second with AttributeError.
    w = cnnzoo.get_weights(NAME)
    model = cnnzoo.create_model("lenet5", pretrained=w, num_classes=3)
    assert model.pretrained_cfg == w and model.get_classifier().out_features == 3
    with pytest.raises(ValueError, match=r"^weights vgg_cifar_fast\.cifar10 are for vgg_cifar_fast, not lenet5$"):
        cnnzoo.create_model("lenet5", pretrained=cnnzoo.get_weights("vgg_cifar_fast.cifar10"))


@pytest.mark.parametrize("name", cnnzoo.list_pretrained())
def test_weights_meta_holds_torchvisions_keys(name: str) -> None:
    w = cnnzoo.get_weights(name)
    meta = w.meta
    assert meta["categories"] == list(w.class_names) and meta["num_params"] == w.num_params
    assert meta["recipe"] == w.recipe and meta["_file_size"] == w.num_bytes / 2**20
    for e in w.evaluations:
        assert meta["_metrics"][f"{e['dataset']} {e['split']}"] == e["metrics"]
    assert meta["_metrics"] and len(meta["_metrics"]) == len({(e["dataset"], e["split"]) for e in w.evaluations})


class HubStandIn:
    """The three Hugging Face Hub endpoints ``snapshot_download`` calls: revision info, tree, resolve."""

    def __init__(self, repo: str, files: dict[str, bytes]) -> None:
        self.repo, self.files, self.commit = repo, files, "c" * 40
        self.requests: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def route(self, head: bool) -> None:
                path = urlparse(self.path).path
                hub.requests.append(f"{self.command} {path}")
                api = f"/api/models/{hub.repo}/"
                if path.startswith(api + "revision/"):
                    siblings = [{"rfilename": f} for f in hub.files]
                    return self.send(json.dumps({"id": hub.repo, "sha": hub.commit, "siblings": siblings}), head)
                if path.startswith(api + "tree/"):
                    tree = [
                        {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                        for f, b in hub.files.items()
                    ]
                    return self.send(json.dumps(tree), head)
                name = path.removeprefix(f"/{hub.repo}/resolve/").partition("/")[2]
                if path.startswith(f"/{hub.repo}/resolve/") and name in hub.files:
                    body = hub.files[name]
                    etag = f'"{hashlib.sha1(body).hexdigest()}"'
                    return self.send(body, head, {"X-Repo-Commit": hub.commit, "ETag": etag})
                self.send_error(404)

            def send(self, body: str | bytes, head: bool, headers: dict[str, str] | None = None) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(200)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self.route(head=False)

            def do_HEAD(self) -> None:
                self.route(head=True)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def hub(published: Path) -> Iterator[HubStandIn]:
    pytest.importorskip("huggingface_hub")
    stand_in = HubStandIn("org/lenet5-digits", {p.name: p.read_bytes() for p in published.iterdir()})
    yield stand_in
    stand_in.httpd.shutdown()


def test_load_pretrained_from_the_hub_uses_its_download_and_cache(hub: HubStandIn, tmp_path: Path) -> None:
    # An earlier release's file that an older cnnzoo pushed too: as large as the weights, and never needed.
    released = set(hub.files)
    hub.files["lenet5.digits-00000000.safetensors"] = b"an earlier release" * 1000
    # huggingface_hub reads its endpoint when it is imported, so the loads run in a fresh interpreter.
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    code = (
        "import cnnzoo, torch; torch.manual_seed(0); x = torch.randn(2, 1, 28, 28)\n"
        "m = cnnzoo.load_pretrained('hf-hub:org/lenet5-digits')\n"
        f"ref = cnnzoo.load_pretrained('{NAME}')\n"
        "assert torch.equal(m(x), ref(x)) and m.pretrained_cfg.name == ref.pretrained_cfg.name\n"
        "m = cnnzoo.load_pretrained('hf-hub:org/lenet5-digits@main')\n"
        # timm's way in: create_model of the Hub name, in training mode, with a head of another size if asked.
        "c = cnnzoo.create_model('hf-hub:org/lenet5-digits').eval()\n"
        "assert torch.equal(c(x), ref(x)) and c.pretrained_cfg.name == ref.pretrained_cfg.name\n"
        "assert cnnzoo.create_model('hf-hub:org/lenet5-digits', num_classes=3).get_classifier().out_features == 3\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-2000:]
    downloads = [r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]
    assert sorted(downloads) == sorted(f"GET /org/lenet5-digits/resolve/{hub.commit}/{f}" for f in released)
    # Offline, from the cache alone: both steps (the JSON, then the file it names) find their copies there.
    asked = len(hub.requests)
    offline = "import cnnzoo; print(cnnzoo.load_pretrained('hf-hub:org/lenet5-digits').pretrained_cfg.name)"
    run = subprocess.run(
        [sys.executable, "-c", offline], env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == NAME, run.stderr[-2000:]
    assert len(hub.requests) == asked


def test_an_unreachable_hub_is_one_line_that_names_the_repository(tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_CACHE": str(tmp_path / "hf")}
    code = "import cnnzoo.cli, sys; sys.exit(cnnzoo.cli.main(['export', 'hf-hub:org/none', '--format', 'pt2']))"
    run = subprocess.run([sys.executable, "-c", code], env={**env, "HF_HUB_OFFLINE": "0"}, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    # huggingface_hub's own error started "Got: ConnectError: ..." and named no repository.
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr[-2000:]
    assert run.stderr.startswith("cnnzoo: error: hf-hub:org/none: the Hub could not be reached and its local cache")
    assert "Connect once to fill the cache" in run.stderr


def test_a_timm_classifier_checkpoint_publishes_and_loads_back(tmp_path: Path) -> None:
    import timm.data
    from lightning.pytorch import Trainer

    from cnnzoo.publish import publish
    from cnnzoo.tasks import TimmClassifier

    task = TimmClassifier(
        "resnet18", num_classes=3, img_size=32, class_names=["a", "b", "c"], mean=[0.5] * 3, std=[0.25] * 3
    )
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "t.ckpt")
    with pytest.raises(ValueError, match=r"use --name resnet18\.tiny"):
        publish(tmp_path / "t.ckpt", "lenet5.tiny", tmp_path / "refused")
    w = publish(tmp_path / "t.ckpt", "resnet18.tiny", tmp_path / "out")
    assert w.builder == "timm" and w.input_size == (3, 32, 32) and w.class_names == ("a", "b", "c")

    model = cnnzoo.load_pretrained(str(tmp_path / "out"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), task.net.eval()(x), rtol=0, atol=0)
    assert timm.data.resolve_data_config({}, model=model)["input_size"] == (3, 32, 32)
    again = TimmClassifier("resnet18", pretrained=str(tmp_path / "out"), num_classes=3)
    torch.testing.assert_close(again.net.eval()(x), model(x), rtol=0, atol=0)


def test_pretrained_cfg_is_what_timm_expects() -> None:
    import timm.data

    model = cnnzoo.load_pretrained("lenet5.mnist")
    cfg = timm.data.resolve_data_config({}, model=model)
    w = model.pretrained_cfg
    assert cfg["input_size"] == w.input_size and cfg["mean"] == w.mean and cfg["std"] == w.std
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 1.0
    assert w["num_classes"] == 10 and "mean" in w and w.get("missing", 7) == 7
    # A mapping all the way: iterating, len, dict(), items() give the same keys and values.
    assert list(w) == list(w.keys()) and len(w) == len(list(w)) and dict(w.items()) == dict(w) == {**w}
    assert dict(w)["input_size"] == w.input_size
