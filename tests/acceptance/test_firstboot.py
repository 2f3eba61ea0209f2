"""First-boot layer: what cloud-init and nodeimage-bootstrap did on a node booted with a nodeimage seed.

Runs per host (testinfra ``--hosts``), on booted nodes only. The role comes
from the node itself (/etc/nodeimage/bootstrap.json, written by the seed).
With ``--standins`` the kubeadm/kubectl stand-ins recorded what they were
asked (/var/log/nodeimage-standins/), and those records are checked; with the
real binaries, the files and objects kubeadm and kubectl made are checked.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.booted_only

STANDIN_LOGS = "/var/log/nodeimage-standins"
BOOTSTRAP_LOG = "/var/log/nodeimage-bootstrap.log"
SUCCESS = "/run/nodeimage/bootstrap-success.complete"
FAILURE = "/run/nodeimage/bootstrap-failure"
DONE = "/var/lib/nodeimage/bootstrap.done"
KATA_RESULT = "/var/lib/nodeimage/kata-capable"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
KATA_LABEL = "katacontainers.io/kata-runtime"
TOKEN_RE = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")


@pytest.fixture(scope="module")
def params(host: Any) -> dict:
    f = host.file("/etc/nodeimage/bootstrap.json")
    if not f.exists:
        pytest.skip("not booted with a nodeimage seed (no /etc/nodeimage/bootstrap.json)")
    return json.loads(f.content_string)


@pytest.fixture(scope="module")
def standins(pytestconfig: pytest.Config) -> bool:
    return bool(pytestconfig.getoption("standins", default=False))


def _docs(text: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def _kata_capable(host: Any) -> bool:
    return host.file(KATA_RESULT).content_string.strip() == "true"


def _used_config(host: Any, params: dict) -> str:
    return params["kubeadm_config_kata"] if _kata_capable(host) else params["kubeadm_config"]


def _standin_calls(host: Any, tool: str) -> list[list[str]]:
    f = host.file(f"{STANDIN_LOGS}/{tool}.log")
    return [json.loads(line) for line in f.content_string.splitlines()] if f.exists else []


def _standin_applied(host: Any) -> list[dict]:
    out = host.check_output(f"ls {STANDIN_LOGS} | grep '^kubectl-apply-' || true")
    return [yaml.safe_load(host.file(f"{STANDIN_LOGS}/{name}").content_string) for name in sorted(out.split())]


def _extra_args(registration: dict) -> dict[str, str]:
    """kubeletExtraArgs as a mapping: v1beta2/v1beta3 write one, v1beta4 a list of name/value pairs (kubeadm
    v1beta4 types.go Arg)."""
    args = registration.get("kubeletExtraArgs") or {}
    return {a["name"]: a["value"] for a in args} if isinstance(args, list) else dict(args)


def _image_stack(host: Any) -> dict:
    """The image's own description of its stack (what first boot reads)."""
    return json.loads(host.file("/usr/local/share/nodeimage/stack.json").content_string)


def _kubectl_json(host: Any, *args: str) -> dict:
    placeholders = " ".join(["%s"] * len(args))
    return json.loads(host.check_output(f"kubectl --kubeconfig %s {placeholders} -o json", ADMIN_CONF, *args))


# --- cloud-init and the bootstrap's own record -------------------------------------------------


def test_cloud_init_finished_without_errors(host: Any, params: dict) -> None:
    status = host.run("cloud-init status --long")
    assert "status: done" in status.stdout, status.stdout + status.stderr
    result = json.loads(host.file("/var/lib/cloud/data/result.json").content_string)
    assert result["v1"]["errors"] == []


def test_bootstrap_succeeded(host: Any, params: dict) -> None:
    assert not host.file(FAILURE).exists, host.file(FAILURE).content_string
    assert host.file(SUCCESS).exists
    assert host.file(DONE).exists
    assert host.file(SUCCESS).content_string.split()[0] == params["role"]


def test_bootstrap_log_is_private_and_has_no_token(host: Any, params: dict) -> None:
    log = host.file(BOOTSTRAP_LOG)
    assert log.exists and log.mode == 0o600
    text = log.content_string
    assert "succeeded" in text
    assert not TOKEN_RE.search(text), "a bootstrap token is in the bootstrap log"


def test_kubeadm_configs_are_private(host: Any, params: dict) -> None:
    for path in (params["kubeadm_config"], params["kubeadm_config_kata"]):
        f = host.file(path)
        if not f.exists:
            pytest.skip(f"{path} is gone (/run is emptied at reboot): checked on first boot only")
        assert f.mode == 0o600, path


def test_ca_key_only_on_the_control_plane(host: Any, params: dict) -> None:
    key = host.file("/etc/kubernetes/pki/ca.key")
    if params["role"] == "control-plane":
        assert key.exists and key.mode == 0o600
        assert host.file("/etc/kubernetes/pki/ca.crt").exists
    else:
        assert not key.exists, "the CA key must never be on a worker"


# --- kubeadm was run with the rendered configuration --------------------------------------------


def test_kubeadm_invoked_with_the_rendered_config(host: Any, params: dict, standins: bool, expected: Any) -> None:
    verb = "init" if params["role"] == "control-plane" else "join"
    config = _used_config(host, params)
    if standins:
        calls = [c for c in _standin_calls(host, "kubeadm") if verb in c]
        assert calls, f"kubeadm {verb} was never called"
        assert calls[-1][1:] == [verb, "--config", config]
        seen = host.file(f"{STANDIN_LOGS}/kubeadm-{verb}-config.yaml").content_string
        if host.file(config).exists:
            assert seen == host.file(config).content_string
        docs = _docs(seen)
    else:
        if params["role"] == "control-plane":
            assert host.file(ADMIN_CONF).exists
        assert host.file("/etc/kubernetes/kubelet.conf").exists
        assert host.file("/var/lib/kubelet/config.yaml").exists
        if not host.file(config).exists:
            pytest.skip(f"{config} is gone (/run is emptied at reboot)")
        docs = _docs(host.file(config).content_string)
    kind = "InitConfiguration" if verb == "init" else "JoinConfiguration"
    registration = docs[kind]["nodeRegistration"]
    assert registration["name"] == params["node_name"]
    assert registration["criSocket"] == expected.unit.cri_socket  # a path (1.17) or the unix:// URL (1.36)
    assert registration["criSocket"].removeprefix("unix://") == "/var/run/crio/crio.sock"
    assert _extra_args(registration)["node-ip"] == params["node_ip"]
    assert docs[kind]["apiVersion"] == expected.unit.kubeadm_api
    if verb == "join":
        bt = docs[kind]["discovery"]["bootstrapToken"]
        assert bt["apiServerEndpoint"] == params["api_endpoint"]
        assert bt["caCertHashes"] and all(h.startswith("sha256:") for h in bt["caCertHashes"])
        assert not bt.get("unsafeSkipCAVerification")
    else:
        assert docs["ClusterConfiguration"]["networking"]["podSubnet"] == params["pod_cidr"]
        assert docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"
        if expected.kubernetes_minor >= 27:  # no --container-runtime-endpoint flag: the configuration carries it
            assert docs["KubeletConfiguration"]["containerRuntimeEndpoint"] == "unix:///var/run/crio/crio.sock"


def test_kata_label_decided_by_the_check(host: Any, params: dict, standins: bool) -> None:
    """The node is labelled Kata-capable exactly when the image's Kata check (stack.json: `kata-runtime kata-check`
    for Kata 1.x, `kata-runtime check` for Kata 3) passes here."""
    command = _image_stack(host).get("kata_check") or ["kata-runtime", "kata-check", "--no-network-checks"]
    check = host.run(" ".join(command))
    capable = _kata_capable(host)
    assert capable == (check.rc == 0), check.stdout + check.stderr
    if standins:
        seen = host.file(
            f"{STANDIN_LOGS}/kubeadm-{'init' if params['role'] == 'control-plane' else 'join'}-config.yaml"
        )
        docs = _docs(seen.content_string)
        registration = next(d for d in docs.values() if "nodeRegistration" in d)["nodeRegistration"]
        labels = _extra_args(registration).get("node-labels", "")
        assert (f"{KATA_LABEL}=true" in labels) == capable
    else:
        node = _kubectl_json(host, "get", "node", params["node_name"]) if params["role"] == "control-plane" else None
        if node is not None:
            assert (node["metadata"]["labels"].get(KATA_LABEL) == "true") == capable


# --- air gap: every image was there, none was pulled -------------------------------------------------


def test_first_boot_pulled_no_image(host: Any, params: dict, standins: bool, expected: Any) -> None:
    """kubeadm's images were in CRI-O's store when its preflight looked (kubeadm 1.17 checks.go ImagePull:
    `crictl inspecti`, then `crictl pull` only for a missing one), and CRI-O pulled nothing."""
    if standins:
        pulls = host.file(f"{STANDIN_LOGS}/crio-pulls.log")
        assert not pulls.exists or pulls.content_string.strip() == "", f"CRI-O pulled: {pulls.content_string}"
        if params["role"] == "control-plane":
            seen = host.file(f"{STANDIN_LOGS}/kubeadm-images.log").content_string.split("\n")
            lines = [line.split(" ", 1) for line in seen if line]
            assert lines and all(state == "present" for state, _ in lines), lines
            assert {ref for _, ref in lines} <= {ref for ref, _ in expected.images}
    else:
        journal = host.run("journalctl -u crio --no-pager -o cat")
        assert journal.rc == 0 and "Pulling image" not in journal.stdout


def test_cni_images_present(host: Any, params: dict, expected: Any) -> None:
    """The CNI's pods start on every node without a pull: their images answer `crictl inspecti`."""
    assert expected.cni_images
    for ref in expected.cni_images:
        out = host.run("crictl inspecti %s", ref)
        assert out.rc == 0, f"{ref} is not in CRI-O's store: {out.stderr}"


# --- control plane: admin kubeconfig, Weave, RuntimeClass ---------------------------------------


def _control_plane(params: dict) -> None:
    if params["role"] != "control-plane":
        pytest.skip("control-plane check")


def test_admin_kubeconfig_for_root(host: Any, params: dict) -> None:
    _control_plane(params)
    f = host.file("/root/.kube/config")
    assert f.exists and f.mode == 0o600
    assert f.content_string == host.file(ADMIN_CONF).content_string


def _weave_daemonset(host: Any, standins: bool) -> dict:
    if standins:
        for doc in _standin_applied(host):
            for item in doc.get("items", [doc]) if doc.get("kind") == "List" else [doc]:
                if item.get("kind") == "DaemonSet" and item["metadata"]["name"] == "weave-net":
                    return item
        pytest.fail("no Weave DaemonSet among the manifests kubectl applied")
    return _kubectl_json(host, "-n", "kube-system", "get", "daemonset", "weave-net")


def test_weave_applied_with_ipalloc_range(host: Any, params: dict, standins: bool, expected: Any) -> None:
    _control_plane(params)
    if expected.cni not in ("weave", "weave-rajch"):
        pytest.skip(f"the image's CNI is {expected.cni} (test_cni_applied_with_the_pod_cidr checks it)")
    ds = _weave_daemonset(host, standins)
    weave = next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "weave")
    env = {e["name"]: e.get("value") for e in weave.get("env", [])}
    assert env.get("IPALLOC_RANGE") == params["pod_cidr"]


def _standin_applied_object(host: Any, kind: str, name: str) -> dict:
    for doc in _standin_applied(host):
        for item in doc.get("items", [doc]) if doc.get("kind") == "List" else [doc]:
            if item.get("kind") == kind and item.get("metadata", {}).get("name") == name:
                return item
    pytest.fail(f"no {kind} {name} among the manifests kubectl applied")


def test_cni_applied_with_the_pod_cidr(host: Any, params: dict, standins: bool) -> None:
    """The CNI's manifest was applied with the cluster's pod CIDR where stack.json says it goes (the image's
    data: Weave's IPALLOC_RANGE env, Flannel's net-conf.json Network)."""
    _control_plane(params)
    stack = _image_stack(host)
    patch = stack["cni"]["pod_cidr"]
    if standins:
        obj = _standin_applied_object(host, patch["kind"], patch["object"])
    else:  # the object as the API server has it, in the namespace the baked manifest gives it
        baked = json.loads(host.file(stack["cni"]["manifest"]).content_string)
        items = baked["items"] if baked.get("kind") == "List" else [baked]
        item = next(i for i in items if i["kind"] == patch["kind"] and i["metadata"]["name"] == patch["object"])
        namespace = item["metadata"].get("namespace", "default")
        obj = _kubectl_json(host, "-n", namespace, "get", patch["kind"].lower(), patch["object"])
    if patch["method"] == "container-env":
        container = next(c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == patch["container"])
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get(patch["name"]) == params["pod_cidr"]
    else:
        assert json.loads(obj["data"][patch["container"]])[patch["name"]] == params["pod_cidr"]


def test_runtimeclass_kata_applied(host: Any, params: dict, standins: bool, expected: Any) -> None:
    _control_plane(params)
    if standins:
        classes = [d for d in _standin_applied(host) if d.get("kind") == "RuntimeClass"]
        assert classes, "no RuntimeClass among the manifests kubectl applied"
        rc = classes[-1]
    else:
        rc = _kubectl_json(host, "get", "runtimeclass", "kata")
    assert rc["metadata"]["name"] == "kata"
    assert rc["apiVersion"].startswith("node.k8s.io/")
    assert rc["handler"] == _image_stack(host)["runtime_class"]["handler"] == expected.kata_handler
    assert rc["apiVersion"] == expected.unit.runtime_class_api
    assert rc["scheduling"]["nodeSelector"] == {KATA_LABEL: "true"}
