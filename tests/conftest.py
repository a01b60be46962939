from __future__ import annotations

import http.server
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# pytest-xdist runs one worker per core: each worker (and the processes it starts, through the environment) gets
# its share of the cores, so that the workers do not spin on each other's threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, os.cpu_count() or 1) // _WORKERS)
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)

import lightning.pytorch  # noqa: E402, F401  (see below)
import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SHARED_DATA = REPO.parent / "shared" / "data"

# Lightning gives its logger a handler on the sys.stderr of the moment it is first imported. Imported here, that is
# pytest's session-wide capture; imported inside a test, it was that test's capsys stream, closed when the test
# ended, and every later Lightning log line in the process printed "--- Logging error ---" with a traceback.

# Two cores: keep intra-op threads fixed so timings and results do not depend on the machine's core count.
torch.set_num_threads(_THREADS)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (see the README of ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar10_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CIFAR-10 training split from ../shared/data, extracted once per session."""
    import tarfile

    archive = SHARED_DATA / "cifar10-train.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found (see the README of ../shared/data)")
    out = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    return out / "train"


class LocalServer:
    """An http.server on 127.0.0.1 serving files from a dict; can cut a response short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.cut_after: int | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[: server.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # drop the connection halfway
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    yield s
    s.httpd.shutdown()


@pytest.fixture
def registered() -> Iterator[Callable[[Any], Any]]:
    """``registered(weights)`` adds a weights entry through the public API, removed again after the test."""
    from cnnzoo.models import register_weights, unregister_weights

    names: list[str] = []

    def add(weights: Any) -> Any:
        names.append(weights.name)
        return register_weights(weights)

    yield add
    for name in names:
        unregister_weights(name)


@pytest.fixture
def cnnzoo_said() -> Iterator[list[str]]:
    """The messages of the ``cnnzoo`` logger during the test (its ``[cnnzoo]`` lines, which capsys does not see)."""
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("cnnzoo").addHandler(handler)
    yield said
    logging.getLogger("cnnzoo").removeHandler(handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytest-xdist hands out the tests in this order. The wheel loop (minutes of pip installs into a new venv)
    # starts first, so that the other worker runs the rest of `-m slow` beside it instead of waiting at the end.
    items.sort(key=lambda item: item.path.name != "test_wheel_loop.py")
