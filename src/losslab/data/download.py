"""Verified downloads into a local cache: mirrors, retries, SHA-256, atomic placement.

Every benchmark file losslab fetches goes through :func:`fetch`:

1. a cached ``dest`` whose SHA-256 matches is returned without touching the network;
2. otherwise the file is streamed with :mod:`urllib.request` into ``<name>.<pid>.part``
   in the same folder (one per process, so parallel workers never write the same file), hashing while it writes, trying each mirror in order and
   repeating the whole mirror list up to ``retries`` times with exponential backoff;
3. a digest mismatch deletes the partial file and raises ``ValueError``;
4. only a verified file is moved into place with :func:`os.replace` (atomic on
   one filesystem), so ``dest`` is either absent or complete and verified.

Trust on first use (TOFU). Some files have no published digest (the CIFAR-N
label files). For those ``sha256=None``: the digest of the first successful
download (or of a file the user placed by hand) is written to the sidecar
``dest.name + ".sha256"`` and every later use is verified against it. This
detects later corruption or a silently changed upstream file, but it does
*not* prove the first copy was authentic; callers add structural checks.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from losslab.core.validation import check_number, fail

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_SCHEMES = ("http://", "https://", "file://")
# Transient failures worth another attempt; a digest mismatch or a disk error is not one.
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException)


@dataclass(frozen=True)
class RemoteFile:
    """A file a dataset needs: its cache name, mirror URLs in order and its SHA-256 (``None``: TOFU)."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder downloads are cached in, created on demand.

    Resolution order: ``root`` if given, else the ``LOSSLAB_DATA`` environment
    variable, else ``~/.cache/losslab``.

    Args:
        root: an explicit cache folder (``~`` is expanded).

    Returns:
        The existing folder as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if ``root`` is not a path, or names an existing non-folder.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> cache_dir(d) == Path(d)
        True
    """
    if (root is not None and not isinstance(root, (str, os.PathLike))) or root == "":
        fail("root", "a folder path or None", repr(root))
    chosen = root if root is not None else os.environ.get("LOSSLAB_DATA") or Path.home() / ".cache" / "losslab"
    path = Path(chosen).expanduser()
    if path.exists() and not path.is_dir():
        fail("root", "a folder (it exists and is not one)", str(path))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "f"
        >>> _ = p.write_bytes(b"abc")
        >>> sha256_file(p)[:16]
        'ba7816bf8f01cfea'
    """
    path = Path(path)
    if not path.is_file():
        fail("path", "an existing file", str(path))
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar(dest: Path) -> Path:
    """Where the trust-on-first-use digest of ``dest`` is kept."""
    return dest.with_name(dest.name + ".sha256")


def fetch(
    url_or_urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``dest`` from the first mirror that works and verify its SHA-256.

    Use it for every file a dataset needs: a verified cached copy costs one
    local hash and no request. Attempt ``a`` (0-based) tries every mirror in
    order; after a failed attempt it sleeps ``backoff * 2**a`` seconds.

    Args:
        url_or_urls: one URL or mirror URLs in order (``http``, ``https`` or ``file``).
        dest: the final path; its folder is created on demand.
        sha256: the published hex digest, or ``None`` for trust on first use
            (the digest is recorded in ``dest.sha256`` and checked afterwards).
        retries: attempts over the whole mirror list, ``>= 1``.
        progress: show a Rich progress bar (bytes, speed, ETA) when stderr is a terminal.
        timeout: socket timeout per request, seconds.
        backoff: base of the exponential backoff, seconds (``0`` in tests).
        sleep: the sleep function (injectable for tests).

    Returns:
        ``dest`` as a :class:`~pathlib.Path`, complete and verified.

    Raises:
        ValueError: on bad arguments; when the downloaded bytes do not match the
            digest (the partial file is deleted first); when every attempt fails
            with a network error (one line naming the file, the URLs, the last
            error and where to place the file by hand).

    Example:
        >>> import tempfile
        >>> src = Path(tempfile.mkdtemp()) / "hello.txt"
        >>> _ = src.write_bytes(b"hello")
        >>> out = fetch(src.as_uri(), src.parent / "copy" / "hello.txt", sha256=sha256_file(src), progress=False)
        >>> out.read_bytes()
        b'hello'
    """
    urls = _check_urls(url_or_urls)
    dest = _check_dest(dest)
    expected = _check_digest(sha256)
    retries = check_number(retries, "retries", low=1, integer=True)
    timeout = check_number(timeout, "timeout", low=0, low_open=True)
    backoff = check_number(backoff, "backoff", low=0)
    if not isinstance(progress, bool):
        fail("progress", "true or false", repr(progress))
    if expected is None and sidecar(dest).is_file():
        expected = _read_sidecar(dest)
    replaced = dest.exists()
    if replaced and _cached_ok(dest, expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    error = _download(urls, dest, expected, retries=retries, timeout=timeout, progress=progress,
                      backoff=backoff, sleep=sleep)
    if error is None:
        return dest
    reason = " ".join(str(getattr(error, "reason", error)).split())
    raise ValueError(
        f"Could not download {dest.name} from {', '.join(urls)} after {retries} attempt(s): "
        f"{type(error).__name__}: {reason}. "
        + ("The cached copy had a wrong SHA-256 and was deleted. " if replaced else "")
        + f"You may be offline or the server unreachable; place the file manually at {dest}."
    ) from error


def _download(urls: tuple[str, ...], dest: Path, expected: str | None, *, retries: int, timeout: float,
              progress: bool, backoff: float, sleep: Callable[[float], None]) -> BaseException | None:
    """Try every mirror ``retries`` times; place a verified file and return None, or return the last network error."""
    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")  # per process: parallel runs never share one
    last_error: BaseException | None = None
    for attempt in range(retries):
        for url in urls:
            try:
                actual = _stream(url, part, timeout=timeout, progress=progress)
            except _NETWORK_ERRORS as err:
                last_error = err
                continue
            _verify_part(part, dest, url, expected, actual)
            os.replace(part, dest)  # atomic: dest is either absent or complete and verified
            if expected is None:
                sidecar(dest).write_text(actual + "\n")
            return None
        if attempt + 1 < retries:
            sleep(backoff * 2**attempt)
    return last_error


def ensure_file(
    remote: RemoteFile, folder: str | os.PathLike[str], *, download: bool, progress: bool = True, **fetch_kw
) -> Path:
    """``folder / remote.name``, fetched when ``download`` is true, else verified in place.

    With ``download=False`` nothing touches the network: a missing file raises
    a one-line error saying where to put it; a present file is checked against
    the published digest (or its TOFU sidecar, recording one if absent).

    Args:
        remote: the file's name, mirrors and digest.
        folder: the dataset's cache folder.
        download: fetch missing or corrupt files.
        progress: forwarded to :func:`fetch`.
        **fetch_kw: ``retries``, ``timeout``, ``backoff``, ``sleep`` for :func:`fetch`.

    Returns:
        The verified local path.

    Raises:
        ValueError: when the file is missing with ``download=False``, has the
            wrong digest with ``download=False``, or :func:`fetch` fails.
    """
    if not isinstance(remote, RemoteFile):
        fail("remote", "a RemoteFile", type(remote).__name__)
    if not isinstance(download, bool):
        fail("download", "true or false", repr(download))
    dest = Path(folder) / remote.name
    if download:
        return fetch(remote.urls, dest, sha256=remote.sha256, progress=progress, **fetch_kw)
    if not dest.is_file():
        raise ValueError(
            f"{remote.name} is not in the cache and download=False; place the file at {dest} "
            f"(from {remote.urls[0]}) or pass download=True."
        )
    expected = _check_digest(remote.sha256)
    if expected is None and sidecar(dest).is_file():
        expected = _read_sidecar(dest)
    actual = sha256_file(dest)
    if expected is None:
        sidecar(dest).write_text(actual + "\n")
    elif actual != expected:
        raise ValueError(
            f"Cached file {dest} has SHA-256 {actual}, expected {expected}; "
            f"replace it with a good copy or pass download=True to fetch it again."
        )
    return dest


def _check_urls(url_or_urls: object) -> tuple[str, ...]:
    urls = (url_or_urls,) if isinstance(url_or_urls, str) else url_or_urls
    if not isinstance(urls, (list, tuple)) or not urls or not all(
        isinstance(u, str) and u.startswith(_SCHEMES) for u in urls
    ):
        fail("url_or_urls", "a URL or a non-empty list of URLs starting with http://, https:// or file://",
             repr(url_or_urls))
    return tuple(urls)


def _check_dest(dest: object) -> Path:
    if not isinstance(dest, (str, os.PathLike)) or str(dest) == "" or Path(dest).name in ("", ".", ".."):
        fail("dest", "a file path", repr(dest))
    dest = Path(dest)
    if dest.is_dir():
        fail("dest", "a file path, not a folder", str(dest))
    return dest


def _check_digest(sha256: object) -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256.lower()):
        fail("sha256", "a 64-character hex SHA-256 digest or None", repr(sha256))
    return sha256.lower()


def _read_sidecar(dest: Path) -> str:
    recorded = sidecar(dest).read_text().strip().lower()
    if not _HEX64.fullmatch(recorded):
        fail(str(sidecar(dest)), "a 64-character hex SHA-256 digest (delete it to re-record)", repr(recorded[:80]))
    return recorded


def _cached_ok(dest: Path, expected: str | None) -> bool:
    """True if ``dest`` can be used as is; a corrupt copy is deleted with a warning."""
    actual = sha256_file(dest)
    if expected is None:  # trust on first use: a file placed by hand becomes the reference
        sidecar(dest).write_text(actual + "\n")
        return True
    if actual == expected:
        return True
    warnings.warn(
        f"Cached file {dest} has SHA-256 {actual}, expected {expected}; deleting it and downloading again.",
        stacklevel=3,
    )
    dest.unlink()
    return False


def _stream(url: str, part: Path, *, timeout: float, progress: bool) -> str:
    """Write ``url`` to ``part`` and return its hex SHA-256; a short read counts as a network error."""
    request = urllib.request.Request(url, headers={"User-Agent": "losslab (python urllib)"})
    digest = hashlib.sha256()
    try:
        got, total = _copy(request, part, digest, timeout=timeout, progress=progress)
    except BaseException:
        part.unlink(missing_ok=True)  # never leave a half-written file behind
        raise
    if total is not None and got != total:
        part.unlink(missing_ok=True)
        raise http.client.IncompleteRead(b"", total - got)
    return digest.hexdigest()


def _copy(request: urllib.request.Request, part: Path, digest, *, timeout: float, progress: bool
          ) -> tuple[int, int | None]:
    with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with _Bar(progress, part.name[: -len(".part")], total) as bar:
            got = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                bar.advance(len(chunk))
    return got, total


def _verify_part(part: Path, dest: Path, url: str, expected: str | None, actual: str) -> None:
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise ValueError(
            f"Downloaded {dest.name} from {url} has SHA-256 {actual}, expected {expected}; "
            f"the file was deleted (corrupted transfer or changed upstream file)."
        )


class _Bar:
    """A Rich download bar, or nothing when disabled or stderr is not a terminal."""

    def __init__(self, enabled: bool, label: str, total: int | None) -> None:
        self._progress = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                                      console=Console(stderr=True))
            self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> "_Bar":
        if self._progress is not None:
            self._progress.start()
        return self

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
