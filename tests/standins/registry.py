"""A real container registry on the loopback for the tests: Debian's docker-registry (the CNCF distribution
registry 2.8), started and stopped by the tests, serving the stand-in images under their real names.

Images are pushed with skopeo from the OCI layouts make_standins.py writes (``<dir>/<registry>/<path>``),
as ``127.0.0.1:PORT/<registry>/<path>:<tag>``: the registry-mirror layout nodeimage reads
(``--registry-mirror http://127.0.0.1:PORT``), so a build reaches it through the option users use.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_registry(workdir: Path) -> Iterator[str]:
    """Run a registry until the block ends; yield its base URL (http://127.0.0.1:PORT)."""
    program = shutil.which("docker-registry")
    if program is None:
        raise RuntimeError("docker-registry is not installed (Debian package docker-registry; `make deps`)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = (workdir / "registry.log").open("wb")
    proc = subprocess.Popen([program, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the registry did not start; see {workdir / 'registry.log'}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def push_images(images: Path, url: str) -> list[str]:
    """Push every tag of every OCI layout under ``images`` (``<registry>/<path>``) to the registry at ``url``."""
    host = url.removeprefix("http://")
    pushed = []
    for index in sorted(images.rglob("index.json")):
        layout = index.parent
        name = layout.relative_to(images).as_posix()
        for entry in json.loads(index.read_text())["manifests"]:
            tag = entry["annotations"]["org.opencontainers.image.ref.name"]
            subprocess.run(
                ["skopeo", "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
                 f"oci:{layout}:{tag}", f"docker://{host}/{name}:{tag}"],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            pushed.append(f"{name}:{tag}")
    return pushed
