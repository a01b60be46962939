"""The docs' generated parts are current, and each one says where its figures come from."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

import cnnzoo

ROOT = Path(__file__).parents[1]


def generator() -> ModuleType:
    path = ROOT / "docs" / "generate.py"
    spec = importlib.util.spec_from_file_location("docs_generate", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_docs_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p, text in generator().render_all().items() if p.read_text() != text]
    assert not stale, f"stale generated docs {stale}: run python docs/generate.py"


@pytest.mark.parametrize("page", generator().PAGES)
def test_every_generated_block_is_known_and_closed(page: str) -> None:
    text = (ROOT / page).read_text()
    opened = re.findall(r"<!-- generated: ([\w-]+) -->", text)
    assert opened, f"{page} has no generated block"
    assert len(opened) == text.count("<!-- end generated -->")
    assert set(opened) <= set(generator().BLOCKS)


def test_pretrained_page_lists_every_weight_with_its_evaluation_commands() -> None:
    page = (ROOT / "docs" / "pretrained.md").read_text()
    for name in cnnzoo.list_pretrained():
        w = cnnzoo.get_weights(name)
        assert f"`{name}`" in page
        for e in w.evaluations:
            assert e["command"] in page


def test_quick_start_time_is_one_figure_everywhere() -> None:
    recipes = json.loads((ROOT / "benchmarks" / "results" / "recipes.json").read_text())
    wall = f"{recipes['lenet5_digits']['fit']['process_wall_s']:.0f} s"
    for page in ("README.md", "docs/index.md"):
        text = (ROOT / page).read_text()
        assert wall in text, f"{page} does not show the measured quick-start time {wall}"
    for page in ("README.md", "docs/index.md", "recipes/lenet5_digits.yaml"):
        assert not re.search(r"about (a minute|\d+ s)", (ROOT / page).read_text()), f"{page} types a time by hand"


def test_recipe_results_were_measured_with_the_recipe_they_name() -> None:
    for name, entry in json.loads((ROOT / "benchmarks" / "results" / "recipes.json").read_text()).items():
        assert entry["recipe"] == f"recipes/{name}.yaml" and (ROOT / entry["recipe"]).is_file()
        assert entry["fit"]["command"].startswith(f"cnnzoo fit --config recipes/{name}.yaml")
        assert entry["eval"]["command"].split()[1] in ("test", "validate")
        assert entry["eval"]["metrics"] and entry["eval"]["num_examples"] > 0


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_every_image_a_page_shows_exists(page: str) -> None:
    text = (ROOT / "docs" / page).read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (ROOT / "docs" / target).is_file(), f"docs/{page} shows {target}, which does not exist"


def test_the_docs_report_agrees_with_the_published_metric() -> None:
    report = json.loads((ROOT / "docs" / "images" / "report_lenet5_mnist" / "report.json").read_text())
    assert report["accuracy"] == pytest.approx(cnnzoo.get_weights("lenet5.mnist").metric("test_acc"), abs=1e-6)
    assert report["num_examples"] == 10_000 and "--model.init_args.pretrained lenet5.mnist" in report["command"]


@pytest.mark.parametrize("page", [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"], ids=lambda p: p.name)
def test_no_placeholder_is_taken_for_html(page: Path) -> None:
    # Markdown passes `<root>` through as an HTML tag, which the browser drops: the recipes table showed a fine-tune
    # recipe's folder layout `<root>/<class>/<images>` as "(//)". Outside code, only real HTML may use angle brackets.
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    text = re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)  # inline code spans
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    html = {
        "a",
        "br",
        "img",
        "div",
        "span",
        "p",
        "sup",
        "sub",
        "details",
        "summary",
        "table",
        "tr",
        "td",
        "th",
        "b",
        "i",
    }
    tags = {m.group(1).lower() for m in re.finditer(r"</?([A-Za-z][\w.-]*)[^>\n]*>", text)}
    assert tags <= html, f"{page.name}: {sorted(tags - html)} would vanish as HTML tags; put them in backticks"


def trainer_commands() -> list[tuple[str, str]]:
    """Each ``cnnzoo fit|validate|test|predict`` line that the docs and the README show, in code blocks or inline."""
    found: dict[str, str] = {}
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        text = page.read_text()
        lines = [
            ln.strip().removeprefix("$ ")
            for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
            for ln in block.replace("\\\n", " ").splitlines()
        ]
        for line in [*lines, *re.findall(r"`(cnnzoo [^`]+)`", text)]:
            words = line.split("  #")[0].split()
            if len(words) > 2 and words[0] == "cnnzoo" and words[1] in ("fit", "validate", "test", "predict"):
                found.setdefault(" ".join(words), page.name)
    return sorted((page, line) for line, page in found.items())


def _stands_in_for_something(words: list[str]) -> str | None:
    """Why a docs command cannot be parsed here: a placeholder, a run's file, or a module the page defines."""
    if any("<" in w or "..." in w for w in words):
        return "a placeholder"
    for flag, value in itertools.pairwise(words):
        if (
            flag in ("--config", "-c")
            and not (ROOT / value).is_file()
            and not (ROOT / "recipes" / f"{value}.yaml").is_file()
        ):
            return f"{value}, a run's file"
        if (
            flag in ("--model", "--data", "--model.help", "--data.help")
            and "." in value
            and importlib.util.find_spec(value.split(".")[0]) is None
        ):
            return f"{value}, a class the page writes"
        if flag == "--weights" and value not in cnnzoo.list_pretrained():
            return f"{value}, a file the page makes"
        if flag == "--backend":
            return "the ONNX Runtime path parses no Trainer options (tests/test_export.py runs it)"
    return None


@pytest.mark.parametrize(("page", "line"), trainer_commands())
def test_every_trainer_command_in_the_docs_parses(
    page: str, line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnzoo.cli import main

    words = [w for w in line.split()[1:] if w != "--help"]
    why = _stands_in_for_something(words)
    if why is not None:
        pytest.skip(f"{page}: {why}")
    monkeypatch.chdir(ROOT)  # the docs' commands run from the repository root
    with pytest.raises(SystemExit) as done:  # --print_config exits once the command line has parsed
        main([*words, "--print_config"])
    assert done.value.code in (0, None), f"{page}: {line}\n{capsys.readouterr().err}"
    assert "trainer:" in capsys.readouterr().out
