"""Tests of :mod:`cdvae_core.data.download` against local HTTP servers on the loopback interface.

The servers serve the local copy of the upstream benchmark files (``/work/shared/data`` or
``$CDVAE_DATA_DIR``); no test touches the internet. Each server runs in a background thread and
is shut down by its fixture. Server behaviours exercised: Range support (206), Range ignored
(200), 416 on an exhausted range, HTML instead of CSV, and a body cut short mid-transfer.
"""

from __future__ import annotations

import functools
import hashlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cdvae_core.data.download import (
    DownloadError,
    download_dataset,
    download_file,
    looks_like_benchmark_csv,
)

from helpers import DATA_DIR

SOURCE = DATA_DIR / "perov_5" / "val.csv"

pytestmark = pytest.mark.skipif(
    not SOURCE.is_file(), reason=f"benchmark data not found at {DATA_DIR}"
)

TIMEOUT = 5.0


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RecordingServer(ThreadingHTTPServer):
    """A threading HTTP server that remembers the (path, Range header) of every request."""

    # The client may abandon a response (e.g. after a bad 206); don't wait for its threads.
    daemon_threads = True

    def __init__(self, handler: Callable[..., SimpleHTTPRequestHandler], mode: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.mode = mode
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def record(self, path: str, range_header: str | None) -> None:
        """Log one request; handlers run in several threads, hence the lock."""
        with self._lock:
            self.requests.append((path, range_header))

    @property
    def ranges(self) -> list[str | None]:
        """The Range headers received, in order (``None`` for requests without one)."""
        return [range_header for _, range_header in self.requests]


class Handler(SimpleHTTPRequestHandler):
    """Serves DATA_DIR; behaviour depends on ``server.mode``.

    ``range``: honours ``Range: bytes=N-[M]`` (206, or 416 past the end), which the stdlib
    handler does not; ``ignore``: stdlib behaviour, always the whole file with 200; ``html``:
    answers every GET with an HTML page and status 200; ``truncate``: announces the full length
    but sends only half of the body before closing.
    """

    server: RecordingServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        """Keep test output quiet."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """Dispatch on the server's mode."""
        range_header = self.headers.get("Range")
        self.server.record(self.path, range_header)
        mode = self.server.mode
        if mode == "ignore":
            super().do_GET()
            return
        if mode == "html":
            self._send(
                200,
                b"<!DOCTYPE html><html><body>Sign in to continue</body></html>",
                {"Content-Type": "text/html"},
            )
            return
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "File not found")
            return
        data = path.read_bytes()
        if mode == "truncate":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            return  # HTTP/1.0: returning closes the connection, cutting the body short
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", (range_header or "").strip())
        if match is None:
            self._send(200, data, {"Content-Type": "text/csv"})
            return
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
        if start >= len(data):
            self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            return
        self._send(
            206,
            data[start : end + 1],
            {
                "Content-Type": "text/csv",
                "Content-Range": f"bytes {start}-{end}/{len(data)}",
            },
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """Write a complete response with a Content-Length."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[Callable[[str], tuple[RecordingServer, str]]]:
    """Factory: ``serve(mode)`` starts a server and returns it with its base URL."""
    started: list[tuple[RecordingServer, threading.Thread]] = []

    def start(mode: str = "range") -> tuple[RecordingServer, str]:
        handler = functools.partial(Handler, directory=str(DATA_DIR))
        server = RecordingServer(handler, mode)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        started.append((server, thread))
        host, port = server.server_address[:2]
        return server, f"http://{host}:{port}"

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (bound to get a free number, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_full_download_matches_source(serve, tmp_path):
    server, base = serve("range")
    dest = tmp_path / "perov_5" / "val.csv"
    out = download_file(f"{base}/perov_5/val.csv", dest, timeout=TIMEOUT, progress=True)
    assert out == dest
    assert sha256(dest) == sha256(SOURCE)
    assert not dest.with_suffix(".csv.part").exists()
    assert server.ranges == [None]


def test_resume_from_part_file_sends_range(serve, tmp_path):
    server, base = serve("range")
    dest = tmp_path / "val.csv"
    data = SOURCE.read_bytes()
    cut = len(data) // 3
    dest.with_suffix(".csv.part").write_bytes(data[:cut])
    download_file(f"{base}/perov_5/val.csv", dest, timeout=TIMEOUT, progress=False)
    assert sha256(dest) == sha256(SOURCE)
    assert server.ranges == [f"bytes={cut}-"]
    assert not dest.with_suffix(".csv.part").exists()


def test_server_ignoring_range_restarts_from_zero(serve, tmp_path):
    server, base = serve("ignore")
    dest = tmp_path / "val.csv"
    # Garbage in the part file: appending the full body to it would corrupt the result.
    stale = b"stale bytes from an older attempt"
    dest.with_suffix(".csv.part").write_bytes(stale)
    download_file(f"{base}/perov_5/val.csv", dest, timeout=TIMEOUT, progress=False)
    assert sha256(dest) == sha256(SOURCE)
    assert server.ranges == [f"bytes={len(stale)}-"]


def test_complete_part_file_416_restarts(serve, tmp_path):
    server, base = serve("range")
    dest = tmp_path / "val.csv"
    dest.with_suffix(".csv.part").write_bytes(SOURCE.read_bytes() + b"extra")
    download_file(f"{base}/perov_5/val.csv", dest, timeout=TIMEOUT, progress=False)
    assert sha256(dest) == sha256(SOURCE)
    assert server.ranges[0] is not None and server.ranges[1:] == [None]


def test_interrupted_download_keeps_part_then_resumes(serve, tmp_path):
    _, broken = serve("truncate")
    dest = tmp_path / "val.csv"
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(f"{broken}/perov_5/val.csv", dest, timeout=TIMEOUT, progress=False)
    part = dest.with_suffix(".csv.part")
    assert not dest.exists()
    assert part.stat().st_size == SOURCE.stat().st_size // 2

    server, base = serve("range")
    download_file(f"{base}/perov_5/val.csv", dest, timeout=TIMEOUT, progress=False)
    assert sha256(dest) == sha256(SOURCE)
    assert server.ranges == [f"bytes={SOURCE.stat().st_size // 2}-"]


def test_404_raises_naming_url(serve, tmp_path):
    _, base = serve("range")
    url = f"{base}/perov_5/nope.csv"
    with pytest.raises(DownloadError, match="404") as info:
        download_file(url, tmp_path / "nope.csv", timeout=TIMEOUT, progress=False)
    assert url in str(info.value)
    assert info.value.url == url
    assert not (tmp_path / "nope.csv").exists()
    assert not (tmp_path / "nope.csv.part").exists()


def test_unreachable_server_hints_manual_placement(closed_port, tmp_path):
    url = f"http://127.0.0.1:{closed_port}/perov_5/val.csv"
    with pytest.raises(DownloadError) as info:
        download_file(url, tmp_path / "val.csv", timeout=TIMEOUT, progress=False)
    message = str(info.value)
    assert url in message
    assert "place the CSV files by hand" in message
    assert str(tmp_path) in message
    assert isinstance(info.value, RuntimeError)


def test_failed_download_leaves_existing_file(serve, closed_port, tmp_path):
    _, base = serve("html")
    dest = tmp_path / "val.csv"
    dest.write_bytes(b"precious")
    url = f"http://127.0.0.1:{closed_port}/perov_5/val.csv"
    for failing in (url, f"{base}/perov_5/val.csv", f"{base}/missing.csv"):
        with pytest.raises(DownloadError):
            download_file(failing, dest, overwrite=True, timeout=TIMEOUT, progress=False)
        assert dest.read_bytes() == b"precious"


def test_existing_file_is_skipped_without_request(serve, tmp_path):
    server, base = serve("range")
    dest = tmp_path / "val.csv"
    dest.write_bytes(b"already here")
    assert download_file(f"{base}/perov_5/val.csv", dest, progress=False) == dest
    assert dest.read_bytes() == b"already here"
    assert server.requests == []


def test_html_response_rejected(serve, tmp_path):
    _, base = serve("html")
    dest = tmp_path / "val.csv"
    with pytest.raises(DownloadError, match="not a benchmark CSV"):
        download_file(f"{base}/perov_5/val.csv", dest, timeout=TIMEOUT, progress=False)
    assert not dest.exists()
    assert not dest.with_suffix(".csv.part").exists()


def test_download_dataset_layout(serve, tmp_path):
    server, base = serve("range")
    template = base + "/{name}/{split}.csv"
    paths = download_dataset(
        "Perov-5",
        tmp_path,
        splits=("val", "test"),
        base_url=template,
        progress=False,
        timeout=TIMEOUT,
    )
    assert set(paths) == {"val", "test"}
    for split, path in paths.items():
        assert path == tmp_path / "perov_5" / f"{split}.csv"
        assert sha256(path) == sha256(DATA_DIR / "perov_5" / f"{split}.csv")
    # A second call finds the files and sends nothing.
    before = len(server.requests)
    download_dataset("perov_5", tmp_path, splits=("val", "test"), base_url=template, progress=False)
    assert len(server.requests) == before


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset"):
        download_dataset("no_such_set", tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown split"):
        download_dataset("perov_5", tmp_path, splits=("dev",), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_csv_check(tmp_path):
    assert looks_like_benchmark_csv(SOURCE)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    assert not looks_like_benchmark_csv(bad)
    assert not looks_like_benchmark_csv(tmp_path / "missing.csv")
