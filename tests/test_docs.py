"""The docs' generated parts are current, and each one says where its figures come from."""

from __future__ import annotations

import importlib.util
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
