"""Download the benchmark CSV files (Perov-5, Carbon-24, MP-20) from the upstream repository.

Only the standard library (``urllib.request``) is used for HTTP, so that fetching the data needs
no extra dependency; ``tqdm`` (already a dependency) draws the progress bar.

Guarantees of :func:`download_file`:

* **atomic**: bytes go to ``<dest>.part`` and are renamed onto ``dest`` with :func:`os.replace`
  only once complete and validated, so ``dest`` is either absent, the old file, or the full new
  file; a failed download never touches an existing ``dest``;
* **resumable**: an interrupted download leaves its ``.part`` file behind; the next call asks the
  server for the rest with ``Range: bytes=N-`` and appends when the server answers ``206``, or
  starts over when it answers ``200`` (server without range support);
* **validated**: a file whose header lacks the ``material_id`` and ``cif`` columns (an HTML error
  page from a proxy or a captive portal, say) is deleted instead of being renamed into place;
* **clear failures**: every network or HTTP problem becomes a :class:`DownloadError` naming the
  URL and the reason, and explaining how to place the files by hand on an offline machine.

The files are laid out as upstream does: ``<dest_dir>/<name>/<split>.csv``.
"""

from __future__ import annotations

import csv
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm.auto import tqdm

from cdvae_core.data.registry import UPSTREAM_URL, get_dataset_info

__all__ = [
    "DownloadError",
    "download_dataset",
    "download_file",
    "looks_like_benchmark_csv",
    "SPLITS",
]

#: The splits the upstream repository ships for every dataset.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Columns every benchmark CSV has; their absence means we fetched something else.
_REQUIRED_COLUMNS = ("material_id", "cif")

# 64 KiB: large enough that Python overhead per chunk is negligible, small enough that the
# progress bar moves smoothly on slow links.
_CHUNK_SIZE = 1 << 16

# Some CDNs refuse requests that carry urllib's default "Python-urllib/x.y" agent.
_USER_AGENT = "cdvae-core-downloader/1.0"

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class DownloadError(RuntimeError):
    """A benchmark file could not be downloaded.

    Attributes:
        url: the URL that was requested.
        reason: a short human-readable reason (HTTP status, network error, bad content).
        dest: where the file should have been written (``None`` when unknown).
    """

    def __init__(self, url: str, reason: str, dest: Path | None = None) -> None:
        self.url = url
        self.reason = reason
        self.dest = dest
        where = f"{dest.parent}" if dest is not None else "the data directory"
        name = f" (as {dest.name})" if dest is not None else ""
        super().__init__(
            f"could not download {url}: {reason}. If this machine is offline or cannot reach "
            f"the server, download the files on another machine and place the CSV files by "
            f"hand in {where}{name}; files already present are used as they are."
        )


def _part_path(dest: Path) -> Path:
    """The temporary file a download of ``dest`` is written to before the final rename."""
    return dest.with_suffix(dest.suffix + ".part")


def looks_like_benchmark_csv(path: str | os.PathLike[str]) -> bool:
    """Whether the first line of ``path`` is a CSV header with ``material_id`` and ``cif``.

    Only the header is read, so the check is cheap even on the ~100 MB MP-20 training split.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_CHUNK_SIZE)
    except OSError:
        return False
    # Decode leniently: a binary or oddly encoded response must fail the check, not crash it.
    first_line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        columns = {column.strip() for column in next(csv.reader([first_line]), [])}
    except csv.Error:
        return False
    return all(column in columns for column in _REQUIRED_COLUMNS)


def _open(url: str, offset: int, timeout: float, dest: Path) -> http.client.HTTPResponse | None:
    """Send the GET request (with a ``Range`` header when resuming at ``offset`` > 0).

    Returns ``None`` when the server answers 416 (range not satisfiable) to a resume request:
    the ``.part`` file is then useless (already complete, or longer than the remote file) and
    the caller starts over.
    """
    headers = {"User-Agent": _USER_AGENT}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
    except ValueError as exc:  # malformed URL (no scheme, ...)
        raise DownloadError(url, f"invalid URL ({exc})", dest) from exc
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URL is ours
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset > 0:
            return None
        raise DownloadError(url, f"HTTP error {exc.code} {exc.reason}", dest) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(url, f"server unreachable ({exc.reason})", dest) from exc
    except (http.client.HTTPException, OSError) as exc:
        # getresponse() errors (timeouts, dropped connections) are not wrapped by urllib.
        raise DownloadError(url, f"network error ({exc!r})", dest) from exc


def _resume_offset(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The offset the response body starts at, or ``None`` when it does not fit the part file.

    A 206 whose ``Content-Range`` starts elsewhere than the requested offset would corrupt the
    file if appended, so it is treated like a mismatch; any other success status (200, or a
    ``file://`` URL with no status) carries the whole file from byte zero.
    """
    status = getattr(response, "status", None) or 200
    if status != 206:
        return 0
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if match is None or int(match.group(1)) != offset:
        return None
    return offset


def _expected_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The full size of the remote file, from ``Content-Range`` or ``Content-Length``."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if match is not None and match.group(3) != "*":
        return int(match.group(3))
    length = response.headers.get("Content-Length")
    if length is not None and length.strip().isdigit():
        return offset + int(length)
    return None


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    timeout: float = 30.0,
    progress: bool = True,
    validate: Callable[[Path], bool] | None = looks_like_benchmark_csv,
) -> Path:
    """Download ``url`` to ``dest`` atomically, resuming an earlier interrupted attempt.

    Args:
        url: the file to fetch (``http``, ``https`` or ``file`` URL).
        dest: the final path; its parent directories are created.
        overwrite: download even when ``dest`` already exists (it is replaced only on success).
        timeout: seconds allowed for connecting and for each read from the socket.
        progress: draw a tqdm progress bar (sized from ``Content-Length`` when the server
            sends it).
        validate: a check run on the complete ``.part`` file before the rename; when it fails
            the part file is deleted and :class:`DownloadError` is raised. ``None`` disables it.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: on any HTTP or network failure, a truncated body, or content failing
            ``validate``. A truncated body keeps its ``.part`` file so the next call resumes.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    offset = part.stat().st_size if part.is_file() else 0

    # At most two attempts: the second one, from byte zero, only after the server refused or
    # mangled the resume request (416, or a 206 starting at the wrong byte).
    response = _open(url, offset, timeout, dest)
    start = _resume_offset(response, offset) if response is not None else None
    if start is None:
        if response is not None:
            response.close()
        part.unlink(missing_ok=True)
        offset = 0
        response = _open(url, 0, timeout, dest)
        assert response is not None  # 416 is only swallowed for offset > 0
        start = _resume_offset(response, 0) or 0

    with response:
        total = _expected_total(response, start)
        written = start
        # "ab" keeps the bytes already on disk on a 206; "wb" restarts when the server sent
        # the whole file (200), e.g. because it ignores Range headers.
        mode = "ab" if start > 0 else "wb"
        bar = tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
        )
        try:
            with open(part, mode) as handle:
                while True:
                    try:
                        chunk = response.read(_CHUNK_SIZE)
                    except (http.client.HTTPException, OSError) as exc:
                        raise DownloadError(
                            url,
                            f"connection lost after {written} bytes ({exc!r}); run again to resume",
                            dest,
                        ) from exc
                    if not chunk:
                        break
                    handle.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
                # Make the bytes durable before the rename, so a crash cannot leave a
                # complete-looking but empty ``dest``.
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            bar.close()

    # http.client's read(amt) returns b"" on a connection closed early instead of raising, so
    # the length check has to be ours. The part file is kept: the next call resumes from it.
    if total is not None and written != total:
        raise DownloadError(
            url, f"incomplete download ({written} of {total} bytes); run again to resume", dest
        )
    if validate is not None and not validate(part):
        part.unlink(missing_ok=True)
        raise DownloadError(
            url,
            "the response is not a benchmark CSV file (its header lacks the "
            f"{' and '.join(_REQUIRED_COLUMNS)} columns; maybe an HTML error page)",
            dest,
        )
    os.replace(part, dest)
    return dest


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike[str],
    splits: Iterable[str] = SPLITS,
    base_url: str = UPSTREAM_URL,
    overwrite: bool = False,
    timeout: float = 30.0,
    progress: bool = True,
) -> dict[str, Path]:
    """Download the CSV splits of a benchmark dataset to ``<dest_dir>/<name>/<split>.csv``.

    Args:
        name: dataset name (``perov_5``, ``carbon_24``, ``mp_20``; ``Perov-5`` also works).
        dest_dir: the data root; the dataset gets its own sub-folder, as upstream.
        splits: which of ``train``, ``val``, ``test`` to fetch.
        base_url: URL template with ``{name}`` and ``{split}`` fields (a mirror, or a local
            server in tests).
        overwrite: fetch again files that already exist.
        timeout: seconds allowed for connecting and for each socket read.
        progress: draw a progress bar per file.

    Returns:
        ``{split: path}`` for every requested split.

    Raises:
        KeyError: unknown dataset name (from :func:`get_dataset_info`).
        ValueError: unknown split name.
        DownloadError: a file could not be fetched; splits fetched before it stay on disk.
    """
    info = get_dataset_info(name)
    splits = tuple(splits)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; expected some of {', '.join(SPLITS)}")
    folder = Path(dest_dir) / info.name
    paths: dict[str, Path] = {}
    for split in splits:
        url = base_url.format(name=info.name, split=split)
        paths[split] = download_file(
            url,
            folder / f"{split}.csv",
            overwrite=overwrite,
            timeout=timeout,
            progress=progress,
        )
    return paths
