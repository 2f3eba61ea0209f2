"""fetch: the content-addressed cache, mirrors, resume, retries and digest recording.

Every network test talks to a local HTTP server on 127.0.0.1 (a random port)
that can misbehave on purpose: answer 500, drop the connection mid-file,
ignore Range requests or serve the wrong bytes. Upstream URLs in the test
locks are https:// and reach the server through the mirror mapping
``<mirror>/<host>/<path>``, as a user's mirror would.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nodeimage import fetch as fetchmod
from nodeimage import transfer
from nodeimage.fetch import cache_dir, fetch, fetch_profile, lock, mirror_url, parse_checksums
from nodeimage.lock import Lock, LockEntry, load_lock, save_lock
from nodeimage.log import NodeimageError

HOST = "downloads.example.org"
PAYLOAD = bytes(range(256)) * 2048  # 512 KiB, not compressible into something trivially equal
OTHER = b"not the pinned file " * 1000


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- a misbehaving HTTP server -------------------------------------------------------------------


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    fail_500: dict[str, int] = field(default_factory=dict)  # path -> how many 500s before serving
    drop: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (body bytes sent, times)
    stall: dict[str, tuple[float, int]] = field(default_factory=dict)  # path -> (seconds silent mid-body, times)
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    url: str = ""

    def mirror_path(self, upstream: str) -> str:
        """The server path at which the mirror serves ``upstream``."""
        return "/mirror/" + upstream.removeprefix("https://")

    def publish(self, upstream: str, data: bytes) -> None:
        self.files[self.mirror_path(upstream)] = data

    @property
    def mirror(self) -> str:
        return f"{self.url}/mirror"

    def ranges(self) -> list[str | None]:
        return [r for _, r in self.requests]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        st: ServerState = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        st.requests.append((self.path, rng))
        if st.fail_500.get(self.path, 0) > 0:
            st.fail_500[self.path] -= 1
            self._reply(500, b"oops")
            return
        data = st.files.get(self.path)
        if data is None:
            self._reply(404, b"not found")
            return
        start, status, headers = 0, 200, {}
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not st.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        pause, stalls = st.stall.get(self.path, (0.0, 0))
        if stalls > 0:
            st.stall[self.path] = (pause, stalls - 1)
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[:1000])
            self.wfile.flush()
            time.sleep(pause)
            self.close_connection = True
            return
        sent, times = st.drop.get(self.path, (0, 0))
        if times > 0:
            st.drop[self.path] = (sent, times - 1)
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[:sent])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._reply(status, body, headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {**(headers or {}), "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[ServerState]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True  # a handler still sleeping in a stall must not hold up teardown
    httpd.block_on_close = False
    state = ServerState(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache in tmp, no mirror from the environment, and quick retries."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NODEIMAGE_CACHE", str(cache))
    monkeypatch.delenv("NODEIMAGE_MIRROR", raising=False)
    monkeypatch.setattr(transfer, "BACKOFF", 0.01)
    return cache


def entry(name: str = "tool", data: bytes = PAYLOAD, **kw: object) -> LockEntry:
    fields: dict[str, object] = {
        "name": name,
        "version": "1.0",
        "arch": "amd64",
        "url": f"https://{HOST}/releases/1.0/{name}.tar.gz",
        "checksum": sha256(data),
        "checksum_source": "upstream",
        "size": len(data),
    }
    fields.update(kw)
    return LockEntry(**fields)  # type: ignore[arg-type]


def lock_file(tmp_path: Path, *entries: LockEntry) -> Path:
    path = tmp_path / "artifacts.lock.yaml"
    save_lock(Lock(path, tuple(entries)), path)
    return path


def cached_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("sha*/*") if not p.name.endswith(".name"))


# --- pure functions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mirror", "expected"),
    [
        ("http://m.local:8080", f"http://m.local:8080/{HOST}/a/b%20c.tgz"),
        ("https://m.local/prefix/", f"https://m.local/prefix/{HOST}/a/b%20c.tgz"),
        ("/srv/mirror", f"/srv/mirror/{HOST}/a/b c.tgz"),
        ("file:///srv/mirror/", f"/srv/mirror/{HOST}/a/b c.tgz"),
    ],
)
def test_mirror_url_layout(mirror: str, expected: str) -> None:
    assert mirror_url(f"https://{HOST}/a/b%20c.tgz", mirror) == expected


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODEIMAGE_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("NODEIMAGE_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "nodeimage"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "nodeimage"


def test_parse_checksums_forms() -> None:
    a, b = "a" * 64, "b" * 128
    text = f"{'c' * 64} *other.img\n{a} *disk.img\n{b}  ./big.tar\n\n# comment\n"
    assert parse_checksums(text, "disk.img") == f"sha256:{a}"
    assert parse_checksums(text, "big.tar") == f"sha512:{b}"
    assert parse_checksums(text, "missing.img") is None
    with pytest.raises(NodeimageError, match="different digests"):
        parse_checksums(f"{a}  disk.img\n{'d' * 64}  disk.img\n", "disk.img")


# --- download, verify, reuse ---------------------------------------------------------------------


def test_download_verify_then_reuse(server: ServerState, isolated: Path) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    first = fetch([e], mirror=server.mirror)
    path = first["tool"]
    assert path == isolated / "sha256" / hashlib.sha256(PAYLOAD).hexdigest()
    assert path.read_bytes() == PAYLOAD
    assert path.with_name(path.name + ".name").read_text().strip() == e.url
    assert first.stats.bytes_downloaded == len(PAYLOAD) and first.stats.files_downloaded == 1
    assert not list((isolated / "partial").glob("*.part"))

    seen = len(server.requests)
    second = fetch([e], mirror=server.mirror)
    assert second["tool"] == path
    assert second.stats.bytes_downloaded == 0 and second.stats.files_reused == 1
    assert len(server.requests) == seen  # not even a HEAD


def test_sha512_entries_are_cached_under_sha512(server: ServerState, isolated: Path) -> None:
    e = entry(checksum="sha512:" + hashlib.sha512(PAYLOAD).hexdigest())
    server.publish(e.url, PAYLOAD)
    assert fetch([e], mirror=server.mirror)["tool"].parent == isolated / "sha512"


def test_damaged_cache_file_is_downloaded_again(server: ServerState, isolated: Path) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    path = fetch([e], mirror=server.mirror)["tool"]
    path.write_bytes(b"x" * len(PAYLOAD))
    again = fetch([e], mirror=server.mirror)
    assert again.stats.files_downloaded == 1 and path.read_bytes() == PAYLOAD


# --- resume, retries -----------------------------------------------------------------------------


def test_resume_after_dropped_connection(server: ServerState, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "ATTEMPTS", 2)
    e = entry()
    server.publish(e.url, PAYLOAD)
    quarter = len(PAYLOAD) // 4
    server.drop[server.mirror_path(e.url)] = (quarter, 2)  # both attempts of the first run break off
    with pytest.raises(NodeimageError, match="gave up after 2 attempts"):
        fetch([e], mirror=server.mirror)
    parts = list((isolated / "partial").glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 2 * quarter
    assert cached_files(isolated) == []
    assert server.ranges() == [None, f"bytes={quarter}-"]

    second = fetch([e], mirror=server.mirror)
    assert second["tool"].read_bytes() == PAYLOAD
    assert server.ranges()[-1] == f"bytes={2 * quarter}-"
    assert second.stats.bytes_downloaded == len(PAYLOAD) - 2 * quarter < len(PAYLOAD)


def test_drop_once_is_resumed_within_the_run(server: ServerState) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    server.drop[server.mirror_path(e.url)] = (1000, 1)
    result = fetch([e], mirror=server.mirror)
    assert result["tool"].read_bytes() == PAYLOAD
    assert result.stats.bytes_downloaded == len(PAYLOAD)  # resumed, nothing fetched twice
    assert server.ranges() == [None, "bytes=1000-"]


def test_server_ignoring_range_gives_a_full_download(server: ServerState, isolated: Path) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    server.drop[server.mirror_path(e.url)] = (1000, 1)
    server.ignore_range = True
    result = fetch([e], mirror=server.mirror)
    assert result["tool"].read_bytes() == PAYLOAD
    assert result.stats.bytes_downloaded == 1000 + len(PAYLOAD)


def test_stalled_transfer_hits_the_read_timeout_and_resumes(
    server: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "READ_TIMEOUT", 0.3)
    e = entry()
    server.publish(e.url, PAYLOAD)
    server.stall[server.mirror_path(e.url)] = (1.5, 1)
    started = time.monotonic()
    result = fetch([e], mirror=server.mirror)
    assert time.monotonic() - started < 1.4  # gave up on the silent server, did not wait it out
    assert result["tool"].read_bytes() == PAYLOAD
    assert server.ranges() == [None, "bytes=1000-"]


def test_complete_part_is_finished_without_downloading(server: ServerState, isolated: Path) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    part = fetchmod.part_path(isolated, e)
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)  # as if interrupted between the last byte and the rename
    result = fetch([e], mirror=server.mirror)
    assert result["tool"].read_bytes() == PAYLOAD and result.stats.bytes_downloaded == 0
    assert server.ranges() == [f"bytes={len(PAYLOAD)}-"] and not part.exists()


def test_progress_is_a_line_per_tenth_not_per_chunk(capsys: pytest.CaptureFixture[str]) -> None:
    total = 100 << 20
    progress = fetchmod._Progress("big", total)
    for _ in range(100):
        progress.update(1 << 20)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert re.search(r"big: 100\.0 MiB / 100\.0 MiB \(100 %\) at [\d.]+ \w+/s", lines[-1])


def test_500_once_is_retried(server: ServerState, capsys: pytest.CaptureFixture[str]) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    server.fail_500[server.mirror_path(e.url)] = 1
    assert fetch([e], mirror=server.mirror)["tool"].read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert "HTTP 500" in capsys.readouterr().err


def test_500_forever_gives_up_with_the_url(server: ServerState, isolated: Path) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    server.fail_500[server.mirror_path(e.url)] = 99
    with pytest.raises(NodeimageError) as err:
        fetch([e], mirror=server.mirror)
    assert "HTTP 500" in str(err.value) and server.mirror_path(e.url) in str(err.value)
    assert len(server.requests) == fetchmod.ATTEMPTS and cached_files(isolated) == []


def test_404_on_the_mirror_is_not_retried(server: ServerState) -> None:
    e = entry()
    with pytest.raises(NodeimageError) as err:
        fetch([e], mirror=server.mirror)
    assert "HTTP 404" in str(err.value) and "<mirror>/<host>/<path>" in str(err.value)
    assert len(server.requests) == 1


def test_ctrl_c_leaves_only_a_resumable_part(
    server: ServerState, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = entry()
    server.publish(e.url, PAYLOAD)
    monkeypatch.setattr(transfer, "CHUNK", 64 << 10)
    real_update = fetchmod._Progress.update

    def interrupt(self: fetchmod._Progress, n: int) -> None:
        real_update(self, n)
        raise KeyboardInterrupt

    monkeypatch.setattr(fetchmod._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch([e], mirror=server.mirror)
    assert cached_files(isolated) == []
    (part,) = (isolated / "partial").glob("*.part")
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD)

    monkeypatch.setattr(fetchmod._Progress, "update", real_update)
    result = fetch([e], mirror=server.mirror)
    assert result["tool"].read_bytes() == PAYLOAD
    assert server.ranges()[-1] == f"bytes={kept}-"
    assert result.stats.bytes_downloaded == len(PAYLOAD) - kept


# --- wrong bytes ---------------------------------------------------------------------------------


def test_wrong_bytes_die_naming_expected_and_actual(server: ServerState, isolated: Path) -> None:
    e = entry(size=None)
    server.publish(e.url, OTHER)
    with pytest.raises(NodeimageError) as err:
        fetch([e], mirror=server.mirror)
    text = str(err.value)
    assert f"checksum mismatch for tool 1.0 ({e.url}): expected {sha256(PAYLOAD)}, got {sha256(OTHER)}" in text
    assert "hint:" in text
    assert cached_files(isolated) == [] and not list((isolated / "partial").glob("*.part"))


def test_wrong_size_is_refused_before_downloading(server: ServerState, isolated: Path) -> None:
    e = entry()
    server.publish(e.url, OTHER)
    with pytest.raises(NodeimageError, match=f"size mismatch .* {len(PAYLOAD)} bytes, the server offers {len(OTHER)}"):
        fetch([e], mirror=server.mirror)
    assert cached_files(isolated) == []


# --- directory mirror ----------------------------------------------------------------------------


def test_directory_mirror(tmp_path: Path, isolated: Path) -> None:
    e = entry()
    mirror = tmp_path / "mirror"
    target = mirror / HOST / "releases" / "1.0" / "tool.tar.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    result = fetch([e], mirror=str(mirror))
    assert result["tool"].read_bytes() == PAYLOAD and result.stats.bytes_downloaded == len(PAYLOAD)
    assert fetch([e], mirror=f"file://{mirror}").stats.bytes_downloaded == 0


def test_directory_mirror_missing_file_names_the_path(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with pytest.raises(NodeimageError) as err:
        fetch([entry()], mirror=str(mirror))
    assert str(mirror / HOST / "releases/1.0/tool.tar.gz") in str(err.value)


def test_mirror_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEIMAGE_MIRROR", str(tmp_path / "does-not-exist"))
    with pytest.raises(NodeimageError, match="mirror directory does not exist"):
        fetch([entry()])


# --- digests learned on the way ------------------------------------------------------------------


def test_trust_on_first_use_is_recorded(
    server: ServerState, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    e = entry("cri-o", checksum=None, checksum_source="trust-on-first-use", size=None)
    pinned = entry("other")
    path = lock_file(tmp_path, e, pinned)
    server.publish(e.url, OTHER)
    server.publish(pinned.url, PAYLOAD)
    result = fetch(load_lock(path).entries, mirror=server.mirror, lock_path=path)
    assert result["cri-o"].read_bytes() == OTHER and result.stats.recorded == ["cri-o"]
    recorded = load_lock(path).entry("cri-o", "amd64")
    assert recorded.checksum == sha256(OTHER) and recorded.size == len(OTHER)
    assert recorded.checksum_source == "trust-on-first-use"
    assert load_lock(path).entry("other", "amd64") == pinned
    assert "trusted on first use" in capsys.readouterr().err

    again = fetch(load_lock(path).entries, mirror=server.mirror, lock_path=path)
    assert again.stats.bytes_downloaded == 0 and again.stats.recorded == []


def test_trust_on_first_use_needs_a_lock_file_to_record_in(server: ServerState) -> None:
    with pytest.raises(NodeimageError, match="invoke lock"):
        fetch([entry(checksum=None, checksum_source="trust-on-first-use")], mirror=server.mirror)
    assert server.requests == []


def _image_entry() -> LockEntry:
    base = f"https://{HOST}/releases/focal/release-20230117"
    return entry(
        "cloudimg",
        url=f"{base}/ubuntu-20.04-server-cloudimg-amd64.img",
        checksum=None,
        checksum_url=f"{base}/SHA256SUMS",
        size=None,
    )


def test_checksum_url_digest_is_recorded_as_upstream(server: ServerState, tmp_path: Path) -> None:
    e = _image_entry()
    path = lock_file(tmp_path, e)
    server.publish(e.url, PAYLOAD)
    sums = f"{'0' * 64} *ubuntu-20.04-server-cloudimg-arm64.img\n{hashlib.sha256(PAYLOAD).hexdigest()} *{e.filename}\n"
    server.publish(e.checksum_url or "", sums.encode())
    assert fetch([e], mirror=server.mirror, lock_path=path)["cloudimg"].read_bytes() == PAYLOAD
    recorded = load_lock(path).entry("cloudimg", "amd64")
    assert recorded.checksum == sha256(PAYLOAD) and recorded.size == len(PAYLOAD)
    assert recorded.checksum_source == "upstream"


def test_checksum_url_with_a_different_digest_is_a_mismatch(server: ServerState, tmp_path: Path) -> None:
    e = _image_entry()
    server.publish(e.url, OTHER)
    server.publish(e.checksum_url or "", f"{hashlib.sha256(PAYLOAD).hexdigest()}  {e.filename}\n".encode())
    with pytest.raises(NodeimageError, match=f"expected {sha256(PAYLOAD)}, got {sha256(OTHER)}"):
        fetch([e], mirror=server.mirror, lock_path=lock_file(tmp_path, e))


def test_checksum_url_without_the_file_is_an_error(server: ServerState, tmp_path: Path) -> None:
    e = _image_entry()
    server.publish(e.checksum_url or "", f"{'1' * 64}  something-else.img\n".encode())
    with pytest.raises(NodeimageError, match=f"no line for {e.filename}"):
        fetch([e], mirror=server.mirror, lock_path=lock_file(tmp_path, e))


def test_lock_fills_sizes_and_refresh_checks_digests(server: ServerState, tmp_path: Path) -> None:
    pinned = entry("pinned", size=None)
    tofu = entry("tofu", data=OTHER, checksum_source="trust-on-first-use")
    path = lock_file(tmp_path, pinned, tofu)
    server.publish(pinned.url, PAYLOAD)
    server.publish(tofu.url, OTHER)
    stats = lock(path, mirror=server.mirror)
    assert load_lock(path).entry("pinned", "amd64").size == len(PAYLOAD) and stats.files_downloaded == 1
    assert lock(path, mirror=server.mirror).files_downloaded == 0  # complete: nothing to do

    changed = OTHER + b"!"
    server.publish(tofu.url, changed)
    lock(path, names=["tofu"], mirror=server.mirror, refresh=True)
    assert load_lock(path).entry("tofu", "amd64").checksum == sha256(changed)

    server.publish(pinned.url, PAYLOAD[::-1])  # same size, other bytes
    before = path.read_bytes()
    with pytest.raises(NodeimageError, match="checksum mismatch for pinned"):
        lock(path, names=["pinned"], mirror=server.mirror, refresh=True)
    assert path.read_bytes() == before


def test_lock_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(NodeimageError, match="no artifact named nope"):
        lock(lock_file(tmp_path, entry()), names=["nope"])


# --- unreachable hosts fail fast -----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "url",
    [f"https://127.0.0.1:{_closed_port()}/x/tool.tar.gz", "https://nodeimage-nonexistent.invalid/x/tool.tar.gz"],
    ids=["refused", "does-not-resolve"],  # stable ids: the port differs between collections
)
def test_unreachable_upstream_fails_fast_with_mirror_hint(url: str, isolated: Path) -> None:
    started = time.monotonic()
    with pytest.raises(NodeimageError) as err:
        fetch([entry(url=url)])
    assert time.monotonic() - started < 5
    text = str(err.value)
    assert url in text and "unreachable" in text and "--mirror" in text and "NODEIMAGE_MIRROR" in text
    assert cached_files(isolated) == []


def test_connect_timeout_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # fills the accept queue: later SYNs are dropped
            url = f"https://127.0.0.1:{port}/x/tool.tar.gz"
            started = time.monotonic()
            with pytest.raises(NodeimageError, match=r"(?s)no connection within 1s.*--mirror"):
                fetch([entry(url=url)])
            assert time.monotonic() - started < 4


def test_unreachable_mirror_says_mirror() -> None:
    mirror = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(NodeimageError, match=r"(?s)from the mirror.*Connection refused.*check that the mirror"):
        fetch([entry()], mirror=mirror)


# --- profiles ------------------------------------------------------------------------------------


PROFILE = """\
name: tiny
arch: amd64
stack: k8s-1.17
base: {{source: cloud-image, artifact: cloudimg, distro: ubuntu, release: "20.04"}}
kubernetes: {{version: v1.17.17, pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12}}
cni: {{name: weave}}
components: {{{components}}}
vm: {{cpus: 1, memory_mib: 1024, disk_gib: 4}}
"""
CLASSIC = ("kubernetes-node", "cri-o", "conmon", "kata-static", "cni-plugins", "crictl", "weave-manifest")


def test_fetch_profile_takes_components_and_base_image(server: ServerState, tmp_path: Path) -> None:
    """The profile's components at the versions it names, for its arch, and its base image: nothing else."""
    parts = [entry(name) for name in CLASSIC]
    other_arch = entry("crictl", data=OTHER, arch="arm64", url=f"https://{HOST}/arm64/crictl.tar.gz")
    image = entry("cloudimg", data=OTHER, url=f"https://{HOST}/img/disk.img")
    unused = entry("unused", url=f"https://{HOST}/unused.tgz")
    path = lock_file(tmp_path, *parts, other_arch, image, unused)
    for part in parts:
        server.publish(part.url, PAYLOAD)
    server.publish(image.url, OTHER)
    profile = tmp_path / "tiny.yaml"
    profile.write_text(PROFILE.format(components=", ".join(f'{n}: "1.0"' for n in CLASSIC)))
    result = fetch_profile(str(profile), lock_path=path, mirror=server.mirror)
    assert sorted(result) == sorted([*CLASSIC, "cloudimg"]) and result["crictl"].read_bytes() == PAYLOAD

    versions = {n: "2.0" if n == "crictl" else "1.0" for n in CLASSIC}
    profile.write_text(PROFILE.format(components=", ".join(f'{n}: "{v}"' for n, v in versions.items())))
    with pytest.raises(NodeimageError, match="crictl is locked at version '1.0' but '2.0' is expected"):
        fetch_profile(str(profile), lock_path=path, mirror=server.mirror)


def test_a_file_holding_the_bare_digest_is_read_as_the_files_checksum() -> None:
    """dl.k8s.io's <binary>.sha256 and cri-tools' .tar.gz.sha256 hold only the hex digest (no file name)."""
    assert parse_checksums("AB" * 32 + "\n", "kubelet") == "sha256:" + "ab" * 32
    assert parse_checksums("cd" * 64, "x") == "sha512:" + "cd" * 64
    assert parse_checksums("ab" * 32 + "  kubelet\n" + "cd" * 32 + "  kubeadm\n", "kubeadm") == "sha256:" + "cd" * 32
    assert parse_checksums("ab" * 31, "kubelet") is None
