"""The documentation site: its Python runs, it builds strictly, and every page loads cleanly in a real browser."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO
from .test_report import CHECK

PAGES = sorted([*(REPO / "docs").rglob("*.md"), REPO / "README.md"])
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


WITH_PYTHON = [p for p in PAGES if python_blocks(p)]


def test_the_guides_and_the_reference_are_all_in_the_site() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    for page in PAGES:
        if page.name != "README.md":
            assert f": {page.relative_to(REPO / 'docs').as_posix()}" in nav, f"{page} is missing from mkdocs.yml's nav"


@pytest.mark.parametrize("page", WITH_PYTHON, ids=[str(p.relative_to(REPO)) for p in WITH_PYTHON])
def test_python_in_the_docs_runs(page: Path, tmp_path: Path) -> None:
    """Each page's Python blocks run in order, in one fresh interpreter, from an empty directory."""
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(python_blocks(page)))
    env = {**os.environ, "CNNZOO_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, f"{page.name}:\n{run.stderr[-3000:]}"


def build_site(out: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    build_site(out)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined, method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    return subprocess.run(["chromium", *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it",
)
def test_every_page_loads_without_console_errors_or_broken_images(site: tuple[Path, str], tmp_path: Path) -> None:
    out, url = site
    pages = sorted(out.rglob("index.html"))
    assert len(pages) == len(PAGES) - 1, pages  # every Markdown page of docs/, README.md aside
    for page in pages:
        # The check script is added to the built copy only: it records images and broken ones on <body>.
        page.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    problems = []
    for page in pages:
        rel = page.parent.relative_to(out).as_posix()
        run = chromium("--virtual-time-budget=5000", "--dump-dom", f"{url}/{rel}/" if rel != "." else f"{url}/")
        body = re.search(r"<body([^>]*)>", run.stdout)
        attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1))) if body else {}
        console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln and "ERROR" in ln.upper()]
        if not attrs or attrs.get("broken") != "0" or console:
            problems.append(f"{rel}: {attrs} {console}")
    assert not problems, "\n".join(problems)
    shots = Path(os.environ.get("CNNZOO_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    for name, path in (("home", ""), ("api-tasks", "api/tasks/")):
        shot = shots / f"site-{name}.png"
        chromium("--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}", f"{url}/{path}")
        assert shot.stat().st_size > 30_000, shot
