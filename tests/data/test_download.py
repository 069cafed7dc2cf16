"""The verified download layer, served from a local http.server thread (never the network)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

from losslab.data.download import RemoteFile, cache_dir, ensure_file, fetch, sha256_file, sidecar

PAYLOAD = bytes(range(256)) * 400  # 100 KiB: several read chunks would be needed at a smaller chunk size
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves ``files`` on 127.0.0.1; ``fail_first[path] = n`` answers the first n requests badly."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail_first: dict[str, int] = {}
        self.failure = "503"  # "503" | "truncate" | "slow"
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if server.fail_first.get(self.path, 0) > 0:
                    server.fail_first[self.path] -= 1
                    if server.failure == "503":
                        self.send_error(503)
                        return
                    if server.failure == "truncate":  # announce the full length, send half, hang up
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body[: len(body) // 2])
                        self.close_connection = True
                        return
                    time.sleep(1.0)  # "slow": longer than the client's timeout, which has hung up by now
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    s.files["/data.bin"] = PAYLOAD
    yield s
    s.close()


def _refused_url() -> str:
    """A localhost port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.bin"


def _fetch(url, dest, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.0)
    return fetch(url, dest, **kw)


def test_good_download_is_verified_and_placed(server, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    out = _fetch(server.url("/data.bin"), dest, sha256=DIGEST)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]  # no .part, no sidecar
    assert server.requests == ["/data.bin"]


def test_checksum_mismatch_deletes_the_file_and_names_both_digests(server, tmp_path):
    dest = tmp_path / "data.bin"
    wrong = "0" * 64
    with pytest.raises(ValueError) as info:
        _fetch(server.url("/data.bin"), dest, sha256=wrong)
    msg = str(info.value)
    assert "data.bin" in msg and wrong in msg and DIGEST in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # neither dest nor the .part file is left


@pytest.mark.parametrize("failure", ["503", "truncate"])
def test_retry_after_a_transient_failure(server, tmp_path, failure):
    server.failure = failure
    server.fail_first["/data.bin"] = 1
    sleeps = []
    out = _fetch(server.url("/data.bin"), tmp_path / "data.bin", sha256=DIGEST, backoff=0.5, sleep=sleeps.append)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == ["/data.bin", "/data.bin"] and sleeps == [0.5]


def test_timeout_counts_as_a_transient_failure(server, tmp_path):
    server.failure = "slow"
    server.fail_first["/data.bin"] = 1
    out = _fetch(server.url("/data.bin"), tmp_path / "data.bin", sha256=DIGEST, timeout=0.2)
    assert out.read_bytes() == PAYLOAD and len(server.requests) == 2


def test_mirrors_are_tried_in_order(server, tmp_path):
    urls = [server.url("/missing.bin"), server.url("/data.bin")]
    _fetch(urls, tmp_path / "data.bin", sha256=DIGEST)
    assert server.requests == ["/missing.bin", "/data.bin"]


def test_backoff_is_exponential_between_attempts(tmp_path):
    sleeps = []
    with pytest.raises(ValueError):
        _fetch(_refused_url(), tmp_path / "data.bin", sha256=DIGEST, retries=4, backoff=0.25, sleep=sleeps.append)
    assert sleeps == [0.25, 0.5, 1.0]


def test_offline_gives_one_line_error_with_url_and_manual_path(tmp_path):
    url = _refused_url()
    dest = tmp_path / "data.bin"
    with pytest.raises(ValueError) as info:
        _fetch([url, url.replace("data", "other")], dest, sha256=DIGEST, retries=2)
    msg = str(info.value)
    assert "\n" not in msg
    assert "data.bin" in msg and url in msg and "2 attempt(s)" in msg
    assert "offline" in msg and str(dest) in msg and "refused" in msg.lower()
    assert list(tmp_path.iterdir()) == []


def test_cached_hit_makes_no_request(server, tmp_path):
    dest = tmp_path / "data.bin"
    _fetch(server.url("/data.bin"), dest, sha256=DIGEST)
    assert len(server.requests) == 1
    assert _fetch(server.url("/data.bin"), dest, sha256=DIGEST) == dest
    assert _fetch(_refused_url(), dest, sha256=DIGEST) == dest  # would fail if it touched the network
    assert len(server.requests) == 1


def test_corrupt_cached_file_is_replaced_with_a_warning(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="deleting it and downloading again"):
        _fetch(server.url("/data.bin"), dest, sha256=DIGEST)
    assert dest.read_bytes() == PAYLOAD and server.requests == ["/data.bin"]


def test_corrupt_cached_file_while_offline_says_it_was_deleted(tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="wrong SHA-256 and was deleted") as info:
        _fetch(_refused_url(), dest, sha256=DIGEST, retries=1)
    assert "\n" not in str(info.value) and not dest.exists()


def test_trust_on_first_use_records_and_then_enforces_the_digest(server, tmp_path):
    dest = tmp_path / "data.bin"
    _fetch(server.url("/data.bin"), dest, sha256=None)
    assert sidecar(dest).read_text().strip() == DIGEST
    dest.write_bytes(b"tampered")  # a later corruption is caught against the recorded digest
    with pytest.warns(UserWarning, match=DIGEST):
        _fetch(server.url("/data.bin"), dest, sha256=None)
    assert dest.read_bytes() == PAYLOAD
    server.files["/data.bin"] = b"changed upstream"
    dest.unlink()
    with pytest.raises(ValueError, match=DIGEST):
        _fetch(server.url("/data.bin"), dest, sha256=None)
    assert not dest.exists()


def test_file_urls_work(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    out = _fetch(src.as_uri(), tmp_path / "out" / "copy.bin", sha256=DIGEST.upper())
    assert out.read_bytes() == PAYLOAD


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(PAYLOAD * 30)  # several 1 MiB chunks
    assert sha256_file(p) == hashlib.sha256(PAYLOAD * 30).hexdigest()


@pytest.mark.parametrize("kwargs, arg", [
    ({"url_or_urls": "ftp://x/y"}, "url_or_urls"),
    ({"url_or_urls": []}, "url_or_urls"),
    ({"sha256": "abc"}, "sha256"),
    ({"sha256": "g" * 64}, "sha256"),
    ({"retries": 0}, "retries"),
    ({"timeout": 0}, "timeout"),
    ({"backoff": -1}, "backoff"),
    ({"progress": 1}, "progress"),
    ({"dest": ""}, "dest"),
])
def test_invalid_arguments(tmp_path, kwargs, arg):
    call = {"url_or_urls": "http://127.0.0.1:1/x", "dest": tmp_path / "x", "sha256": DIGEST}
    call.update(kwargs)
    with pytest.raises(ValueError, match=f"`{arg}`"):
        fetch(call.pop("url_or_urls"), call.pop("dest"), **call)


def test_cache_dir_resolution(tmp_path, monkeypatch):
    assert cache_dir(tmp_path / "a") == tmp_path / "a" and (tmp_path / "a").is_dir()
    monkeypatch.setenv("LOSSLAB_DATA", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env" and (tmp_path / "env").is_dir()
    monkeypatch.delenv("LOSSLAB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "losslab"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="`root`"):
        cache_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="`root`"):
        cache_dir(3)


def test_ensure_file_without_download(tmp_path):
    remote = RemoteFile("data.bin", ("https://example.invalid/data.bin",), DIGEST)
    with pytest.raises(ValueError) as info:
        ensure_file(remote, tmp_path / "ds", download=False)
    msg = str(info.value)
    assert "\n" not in msg and "download=False" in msg and str(tmp_path / "ds" / "data.bin") in msg
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "data.bin").write_bytes(b"bad")
    with pytest.raises(ValueError, match=DIGEST):
        ensure_file(remote, tmp_path / "ds", download=False)
    (tmp_path / "ds" / "data.bin").write_bytes(PAYLOAD)
    assert ensure_file(remote, tmp_path / "ds", download=False) == tmp_path / "ds" / "data.bin"


def test_ensure_file_trusts_a_hand_placed_file_once(tmp_path):
    remote = RemoteFile("labels.pt", ("https://example.invalid/labels.pt",), None)
    path = tmp_path / "labels.pt"
    path.write_bytes(PAYLOAD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ensure_file(remote, tmp_path, download=False)
    assert sidecar(path).read_text().strip() == DIGEST
    path.write_bytes(b"changed")
    with pytest.raises(ValueError, match=DIGEST):
        ensure_file(remote, tmp_path, download=False)


def test_ensure_file_downloads(server, tmp_path):
    remote = RemoteFile("data.bin", (server.url("/data.bin"),), DIGEST)
    out = ensure_file(remote, tmp_path, download=True, progress=False)
    assert Path(out).read_bytes() == PAYLOAD


def test_progress_bar_draws_on_a_terminal_only(tmp_path, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    for stream, drawn in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        dest = tmp_path / f"out-{drawn}.bin"
        fetch(src.as_uri(), dest, sha256=DIGEST, progress=True)
        monkeypatch.undo()
        assert dest.read_bytes() == PAYLOAD
        assert ("102.4/102.4 kB" in stream.getvalue()) is drawn  # bytes done / total
