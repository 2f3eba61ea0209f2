"""The two-node cluster that the classic and the current stack's e2e boot, and the first-boot suite they run on it.

One place for both, so the stacks' e2e tests differ only in what they pass: the image, the profile, the
memory a control plane needs and the lock the suite reads.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nodeimage import acceptance, cluster, clusterwait
from nodeimage.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]
TwoNodes = tuple[cluster.ClusterState, Path]  # the running cluster and its state directory


@contextmanager
def two_nodes(name: str, image: Path, profile: str, state_dir: Path, *, memory_mib: int) -> Iterator[TwoNodes]:
    """A control plane and a worker from ``image``, with no route out, both through their first boot; stopped after."""
    prof = load_profile(profile)
    state = cluster.start(
        cluster=name,
        image=image,
        workers=1,
        kubernetes_version=prof.kubernetes.version,
        pod_cidr=prof.kubernetes.pod_cidr,
        service_cidr=prof.kubernetes.service_cidr,
        state_dir=state_dir,
        cpus=2,
        memory_mib=memory_mib,
        outbound=False,
        image_repository=prof.kubernetes.image_repository,
    )
    try:
        clusterwait.wait_ready(state, ssh_timeout=1500, bootstrap_timeout=1200)  # as `invoke up` waits
        yield state, state_dir
    finally:
        cluster.stop_all(state)


def run_firstboot_suite(nodes: TwoNodes, *, profile: str, lock: Path, report: Path) -> None:
    """Run tests/acceptance/test_firstboot.py on both nodes, as `invoke acceptance` does; assert that it passed."""
    state, state_dir = nodes
    cmd, env = acceptance.acceptance_command(
        hosts=[],
        cluster=state.cluster,
        state_dir=state_dir,
        standins=True,
        python=sys.executable,
        paths=[REPO / "tests" / "acceptance" / "test_firstboot.py"],
        extra=[f"--junitxml={report}", "-p", "no:cacheprovider", f"--nodeimage-profile={profile}",
               f"--nodeimage-lock={lock}"],  # fmt: skip
    )
    env.pop("NODEIMAGE_KUBECONFIG", None)  # stand-ins: no API server to ask
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    assert int(suite.get("failures", 0)) == 0 and int(suite.get("errors", 0)) == 0
    # Both nodes ran it: at least the common checks passed twice.
    assert tests - skipped >= 12, proc.stdout[-4000:]
