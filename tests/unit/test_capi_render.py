"""tests/capi: Cluster API v1.14's user-data and kubeadm documents, rendered the way Cluster API renders them.

The expected strings marked "upstream" are copied from Cluster API's own tests at v1.14.0 (file and lines
beside each), so these tests hold the renderer to what upstream asserts of itself; the templates are compared
with the tag's source where the fetched mirror is on this machine.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.capi import kubeadm, render
from tests.capi.crio import crio_user_data, make_ca
from tests.capi.gotemplate import GoTemplateError, Ptr, TemplateSet, go_quote
from tests.capi.kubeadm import CRIO_SOCKET, CrioNode, NodeRegistration, TokenDiscovery
from tests.capi.render import NTP, File, User

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path("/work/.mirror/kubernetes-sigs+cluster-api/repo")
TEMPLATES = sorted(p.stem for p in render.TEMPLATES.glob("*.tmpl"))
V = "v1.36.4"
TOKEN = "abcdef.0123456789abcdef"
ENDPOINT = "192.168.100.10:6443"
HASH = "sha256:" + "ab" * 32


# --- the templates are upstream's text -------------------------------------------------------------


def _git_show(rev_path: str) -> str:
    proc = subprocess.run(["git", "-C", str(MIRROR), "show", rev_path], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot read {rev_path} from {MIRROR}: {proc.stderr.strip()}")
    return proc.stdout


@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"the cluster-api mirror is not on this machine ({MIRROR})")
@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_is_the_tags_raw_string_verbatim(name: str) -> None:
    header = (render.TEMPLATES / f"{name}.tmpl").read_text()
    m = re.search(r"constant (\w+) in\n#\| kubernetes-sigs/cluster-api@(\S+) \(\w+\): (\S+):(\d+)-(\d+)\n", header)
    assert m, f"{name}.tmpl lacks its citation header"
    const, tag, path, start, end = m.groups()
    source = _git_show(f"{tag}:{path}")
    found = re.search(r"\b" + const + r"\s*=\s*`([^`]*)`", source)
    assert found, f"{const} not in {path}@{tag}"
    assert render.template_text(name) == found.group(1)
    assert source[: found.start(1)].count("\n") + 1 == int(start)
    assert int(start) + found.group(1).count("\n") == int(end)


def test_all_templates_generate_parses_are_here() -> None:
    # cloudinit.go:66-100 parses these eight sub-templates, then the main one
    assert set(TEMPLATES) == {*render.SUB_TEMPLATES, "controlplane_init", "controlplane_join", "node"}


# --- the Go template subset ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("i", "text", "expected"),
    [
        (2, "hello\n  world", "  hello\n    world"),  # upstream: controlplane_test.go:32-37
        (4, "  some extra:\n    indenting\n", "      some extra:\n        indenting\n    "),  # :38-43
    ],
)
def test_indent_is_template_yaml_indent(i: int, text: str, expected: str) -> None:
    assert render.indent(i, text) == expected


@pytest.mark.parametrize(
    ("s", "quoted"),
    [
        # upstream: cloudinit_test.go:99 (input) and :128 (its %q in the output)
        ("\"echo $(date) ': hello PreKubeadmCommands!'\"", '"\\"echo $(date) \': hello PreKubeadmCommands!\'\\""'),
        ("echo $(date)", '"echo $(date)"'),  # :98 and :122
        ("a\tb\nc\\", '"a\\tb\\nc\\\\"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("café\u00a0\u200b", '"café\\u00a0\\u200b"'),  # printable runes kept; U+00A0, U+200B are not printable
    ],
)
def test_go_quote_is_strconv_quote(s: str, quoted: str) -> None:
    assert go_quote(s) == quoted


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("a {{- \n  .X -}}  \n b", {"X": "x"}, "axb"),
        ("{{ if .P }}yes{{ else }}no{{ end }}", {"P": Ptr(False)}, "yes"),  # a non-nil pointer is true
        ("{{ if .P }}yes{{ else }}no{{ end }}", {"P": None}, "no"),
        ("{{ if .L }}yes{{ else }}no{{ end }}", {"L": []}, "no"),
        ("[{{ .P }}]", {"P": Ptr(False)}, "[false]"),
        ("{{ range . }}<{{ . }}>{{ end }}", ["a", "b"], "<a><b>"),
        ('{{ define "t" }}({{ . }}){{ end }}{{ template "t" .X }}', {"X": 1}, "(1)"),
        ('{{ printf "%q" .X | printf "%s!" }}', {"X": 'a"b'}, '"a\\"b"!'),
        ('{{ if ne .E "" }}set{{ end }}', {"E": ""}, ""),
    ],
)
def test_template_subset_follows_go_rules(source: str, data: object, expected: str) -> None:
    assert TemplateSet([source]).execute(data) == expected


@pytest.mark.parametrize("source", ["{{ .Missing }}", "{{ with .X }}{{ end }}", "{{ nofunc .X }}", "{{ if .X }}"])
def test_template_subset_refuses_what_it_does_not_support(source: str) -> None:
    with pytest.raises(GoTemplateError):
        TemplateSet([source]).execute({"X": "x"})


# --- user-data: upstream's own expectations --------------------------------------------------------

COMMANDS = {
    "boot_commands": ["echo $(date)", "echo 'hello BootCommands!'"],
    "pre_kubeadm_commands": ["\"echo $(date) ': hello PreKubeadmCommands!'\""],
    "post_kubeadm_commands": ["echo $(date) ': hello PostKubeadmCommands!'"],
}
BOOTCMD = """bootcmd:
  - "echo $(date)"
  - "echo 'hello BootCommands!'\""""  # upstream: cloudinit_test.go:121-123


def test_init_commands_as_upstream_expects() -> None:
    out = render.init_control_plane("my-cluster-config", "my-init-config", **COMMANDS)  # type: ignore[arg-type]
    assert BOOTCMD in out
    # upstream: cloudinit_test.go:127-130
    assert (
        """runcmd:
  - "\\"echo $(date) ': hello PreKubeadmCommands!'\\""
  - 'kubeadm init --config /run/kubeadm/kubeadm.yaml  && echo success > /run/cluster-api/bootstrap-success.complete'
  - "echo $(date) ': hello PostKubeadmCommands!'\""""
        in out
    )


@pytest.mark.parametrize("kind", ["control-plane", "worker"])
def test_join_commands_as_upstream_expects(kind: str) -> None:
    fn = render.join_control_plane if kind == "control-plane" else render.join_node
    out = fn("my-join-config", **COMMANDS)  # type: ignore[arg-type]
    assert BOOTCMD in out
    # upstream: cloudinit_test.go:379-382 (control plane) and :413-416 (worker)
    expected = (
        "runcmd:\n"
        '  - "\\"echo $(date) \': hello PreKubeadmCommands!\'\\""\n'
        "  - kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml "
        " && echo success > /run/cluster-api/bootstrap-success.complete\n"
        "  - \"echo $(date) ': hello PostKubeadmCommands!'\""
    )
    assert expected in out


def test_verbosity_goes_between_the_command_and_the_sentinel() -> None:
    assert "kubeadm.yaml --v 5 && echo success" in render.init_control_plane("c", "i", verbosity=5)
    assert "kubeadm-join-config.yaml --v 5 && echo success" in render.join_node("j", verbosity=5)


def test_file_encodings_as_upstream_expects() -> None:
    files = [File("/tmp/my-path", "aGk=", encoding="base64"), File("/tmp/my-other-path", "hi"),
             File("/tmp/existing-path", "hi", append=True)]  # fmt: skip
    out = render.init_control_plane("my-cluster-config", "my-init-config", files=files)
    # upstream: cloudinit_test.go:74-86
    for expected in ('-   path: /tmp/my-path\n    encoding: "base64"\n    content: |\n      aGk=',
                     "-   path: /tmp/my-other-path\n    content: |\n      hi",
                     "-   path: /tmp/existing-path\n    append: true\n    content: |\n      hi"):  # fmt: skip
        assert expected in out


def _disk(partitions: list[dict[str, object]], filesystems: list[dict[str, object]] | None = None) -> dict:
    return {"Partitions": partitions, "Filesystems": filesystems or []}


def _partition(**kw: object) -> dict[str, object]:
    return {"Device": "test-device", "TableType": "gpt", "Layout": None, "Overwrite": None, "DiskLayout": [], **kw}


@pytest.mark.parametrize(
    ("disk_setup", "mounts", "expected"),
    [
        (  # upstream: cloudinit_test.go:144-183
            _disk(
                [_partition(Layout=Ptr(True), Overwrite=Ptr(False))],
                [
                    {
                        "Device": "test-device",
                        "Filesystem": "ext4",
                        "Label": "test_disk",
                        "Partition": "",
                        "Overwrite": None,
                        "ReplaceFS": "",
                        "ExtraOpts": ["-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"],
                    }
                ],  # fmt: skip
            ),
            [["test_disk", "/var/lib/testdir"]],
            [
                "disk_setup:\n  test-device:\n    table_type: gpt\n    layout: true\n    overwrite: false",
                "fs_setup:\n  - label: test_disk\n    filesystem: ext4\n    device: test-device\n    extra_opts:\n"
                "      - -F\n      - -E\n      - lazy_itable_init=1,lazy_journal_init=1",
                "mounts:\n  - - test_disk\n    - /var/lib/testdir",
            ],
        ),
        (  # upstream: cloudinit_test.go:184-213
            _disk(
                [
                    _partition(
                        DiskLayout=[
                            {"Percentage": 30, "PartitionType": "Linux"},
                            {"Percentage": 20, "PartitionType": ""},
                            {"Percentage": 50, "PartitionType": "LinuxRAID"},
                        ]
                    )
                ]
            ),  # fmt: skip
            [],
            [
                "disk_setup:\n  test-device:\n    table_type: gpt\n    layout:\n      - [30, 83]\n      - 20\n"
                "      - [50, fd]"
            ],  # fmt: skip
        ),
        (  # upstream: cloudinit_test.go:237-257
            _disk(
                [_partition(DiskLayout=[{"Percentage": 100, "PartitionType": "0fc63daf-8483-4772-8e79-3d69d8477de4"}])]
            ),  # fmt: skip
            [],
            [
                "disk_setup:\n  test-device:\n    table_type: gpt\n    layout:\n"
                "      - [100, 0fc63daf-8483-4772-8e79-3d69d8477de4]"
            ],  # fmt: skip
        ),
    ],
)
def test_disk_setup_as_upstream_expects(disk_setup: dict, mounts: list, expected: list[str]) -> None:
    out = render.init_control_plane("my-cluster-config", "my-init-config", disk_setup=disk_setup, mounts=mounts)
    for fragment in expected:
        assert fragment in out


@pytest.mark.parametrize(
    ("a", "b"),
    [  # upstream: cloudinit_test.go:421-558 (TestOmittableFields): empty and unset give the same user-data
        ({"files": []}, {}),
        ({"boot_commands": []}, {}),
        ({"pre_kubeadm_commands": []}, {}),
        ({"users": [User("u", ssh_authorized_keys=())]}, {"users": [User("u")]}),
        ({"ntp": NTP(servers=())}, {"ntp": NTP()}),
        ({"disk_setup": _disk([])}, {"disk_setup": {"Partitions": None, "Filesystems": None}}),
    ],
)
def test_empty_and_unset_fields_render_alike(a: dict, b: dict) -> None:
    assert render.init_control_plane("c", "i", **a) == render.init_control_plane("c", "i", **b)
    assert render.join_control_plane("j", **a) == render.join_control_plane("j", **b)


@pytest.mark.parametrize(
    ("files", "paths"),
    [  # upstream: node_test.go:28-58
        (
            [File("/etc/foo.conf", "bar", owner="root", permissions="0644")],
            ["/etc/foo.conf", "/run/kubeadm/kubeadm-join-config.yaml", "/run/cluster-api/placeholder"],
        ),
        ([], ["/run/kubeadm/kubeadm-join-config.yaml", "/run/cluster-api/placeholder"]),
    ],  # fmt: skip
)
def test_node_write_files_as_upstream_expects(files: list[File], paths: list[str]) -> None:
    data = yaml.safe_load(render.join_node("", files=files))
    assert [f["path"] for f in data["write_files"]] == paths


# --- kubeadm documents: upstream's own expectations ------------------------------------------------


def test_cluster_configuration_is_upstreams_v1beta4_example() -> None:
    got = kubeadm.cluster_configuration(kubernetes_version="v1.31.0", cluster_name="mycluster",
                                        control_plane_endpoint="myControlPlaneEndpoint:6443", pod_subnet="myPodSubnet",
                                        service_subnet="myServiceSubnet", dns_domain="myDNSDomain")  # fmt: skip
    # upstream: bootstrap/kubeadm/pkg/types/utils_test.go:177-191
    assert got == (
        "apiServer: {}\n"
        "apiVersion: kubeadm.k8s.io/v1beta4\n"
        "clusterName: mycluster\n"
        "controlPlaneEndpoint: myControlPlaneEndpoint:6443\n"
        "controllerManager: {}\n"
        "dns: {}\n"
        "etcd: {}\n"
        "kind: ClusterConfiguration\n"
        "kubernetesVersion: v1.31.0\n"
        "networking:\n"
        "  dnsDomain: myDNSDomain\n"
        "  podSubnet: myPodSubnet\n"
        "  serviceSubnet: myServiceSubnet\n"
        "proxy: {}\n"
        "scheduler: {}\n"
    )


def test_init_and_join_configuration_are_upstreams_v1beta4_examples() -> None:
    reg = NodeRegistration(cri_socket="", ignore_preflight_errors=("some-preflight-check",))
    init = kubeadm.init_configuration(reg, kubernetes_version="v1.31.0",
                                      timeouts={"controlPlaneComponentHealthCheck": 50})  # fmt: skip
    # upstream: utils_test.go:254-262
    assert init == (
        "apiVersion: kubeadm.k8s.io/v1beta4\n"
        "kind: InitConfiguration\n"
        "localAPIEndpoint: {}\n"
        "nodeRegistration:\n"
        "  ignorePreflightErrors:\n"
        "  - some-preflight-check\n"
        "  taints: null\n"
        "timeouts:\n"
        "  controlPlaneComponentHealthCheck: 50s\n"
    )
    # upstream: utils_test.go:324-332 marshals a JoinConfiguration with an empty discovery; the controller
    # always fills discovery first, so the comparison is of everything else
    join = yaml.safe_load(kubeadm.join_configuration(reg, TokenDiscovery(TOKEN, ENDPOINT, (HASH,)),
                                                     kubernetes_version="v1.31.0", control_plane=True,
                                                     timeouts={"controlPlaneComponentHealthCheck": 50}))  # fmt: skip
    expected = yaml.safe_load(
        "apiVersion: kubeadm.k8s.io/v1beta4\n"
        "discovery: {}\n"
        "kind: JoinConfiguration\n"
        "nodeRegistration:\n"
        "  ignorePreflightErrors:\n"
        "  - some-preflight-check\n"
        "  taints: null\n"
        "timeouts:\n"
        "  controlPlaneComponentHealthCheck: 50s\n"
    )
    assert {k: v for k, v in join.items() if k not in ("discovery", "controlPlane")} == {
        k: v for k, v in expected.items() if k != "discovery"
    }


@pytest.mark.parametrize(
    ("version", "ok"), [("v1.36.4", True), ("v1.31.0", True), ("v99.99.99", True), ("v1.30.9", False)]
)
def test_v1beta4_from_1_31(version: str, ok: bool) -> None:  # upstream: utils.go:57-71, utils_test.go:100-106
    if ok:
        assert kubeadm.api_version_for(version) == "kubeadm.k8s.io/v1beta4"
    else:
        with pytest.raises(ValueError, match="v1beta3"):
            kubeadm.api_version_for(version)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (50, "50s"), (90, "1m30s"), (3600, "1h0m0s"), (3725, "1h2m5s")]
)
def test_durations_are_written_as_go_writes_them(seconds: int, text: str) -> None:
    assert kubeadm.go_duration(seconds) == text


# --- a CRI-O node's user-data ----------------------------------------------------------------------


CA = make_ca()


def crio(role: str, **kw: object) -> str:
    return crio_user_data(role, kubernetes_version=V, endpoint=ENDPOINT, token=TOKEN, ca=CA, ca_cert_hashes=(HASH,),
                          pod_subnet="10.244.0.0/16", service_subnet="10.96.0.0/12", **kw)  # type: ignore[arg-type]  # fmt: skip


def crio_init() -> str:
    return crio("init")


def crio_worker() -> str:
    return crio("worker")


def crio_cp_join() -> str:
    return crio("control-plane-join")


KINDS = {"init": crio_init, "control-plane-join": crio_cp_join, "worker": crio_worker}
NODE = CrioNode()


def _kubeadm_docs(user_data: str, path: str) -> list[dict]:
    (item,) = [f for f in yaml.safe_load(user_data)["write_files"] if f["path"] == path]
    assert (item["owner"], item["permissions"]) == ("root:root", "0640")
    return [d for d in yaml.safe_load_all(item["content"]) if d is not None]


@pytest.mark.parametrize("kind", KINDS)
def test_user_data_starts_with_the_jinja_header_and_parses_as_yaml(kind: str) -> None:
    out = KINDS[kind]()
    assert out.startswith("## template: jinja\n#cloud-config\n")  # cloudinit.go:35-37
    data = yaml.safe_load(render.strip_header(out))
    assert list(data) == ["write_files", "runcmd"]  # the template's order; no bootcmd, ntp, users, disks here
    paths = [f["path"] for f in data["write_files"]]
    assert paths[-1] == render.PLACEHOLDER_PATH
    assert kubeadm.KUBELET_PATCH_PATH in paths
    (last,) = [c for c in data["runcmd"] if "kubeadm" in c]
    verb, config = ("init", render.INIT_CONFIG_PATH) if kind == "init" else ("join", render.JOIN_CONFIG_PATH)
    assert last == f"kubeadm {verb} --config {config}  && echo success > {render.SENTINEL_FILE}"


def test_init_user_data_holds_certificates_first_and_both_documents() -> None:
    out = crio_init()
    paths = [f["path"] for f in yaml.safe_load(out)["write_files"]]
    assert paths == ["/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key", kubeadm.KUBELET_PATCH_PATH,
                     render.INIT_CONFIG_PATH, render.PLACEHOLDER_PATH]  # fmt: skip
    perms = {f["path"]: f["permissions"] for f in yaml.safe_load(out)["write_files"]}
    assert (perms["/etc/kubernetes/pki/ca.crt"], perms["/etc/kubernetes/pki/ca.key"]) == ("0640", "0600")
    cluster, init = _kubeadm_docs(out, render.INIT_CONFIG_PATH)
    assert (cluster["kind"], init["kind"]) == ("ClusterConfiguration", "InitConfiguration")
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}
    assert init["nodeRegistration"] == {"criSocket": CRIO_SOCKET, "taints": None}
    assert init["patches"] == {"directory": "/etc/kubernetes/patches"}


@pytest.mark.parametrize("kind", ["worker", "control-plane-join"])
def test_join_documents_for_cri_o(kind: str) -> None:
    (join,) = _kubeadm_docs(KINDS[kind](), render.JOIN_CONFIG_PATH)
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert join["nodeRegistration"]["criSocket"] == CRIO_SOCKET
    assert join["discovery"] == {"bootstrapToken": {"token": TOKEN, "apiServerEndpoint": ENDPOINT,
                                                    "caCertHashes": [HASH]}}  # fmt: skip
    if kind == "worker":  # kubeadmconfig_controller.go:704-711
        assert join["nodeRegistration"]["taints"] == [kubeadm.UNINITIALIZED_TAINT]
        assert "controlPlane" not in join
    else:
        assert join["nodeRegistration"]["taints"] is None
        assert join["controlPlane"] == {"localAPIEndpoint": {}}


def test_worker_join_content_starts_with_a_document_marker_and_control_plane_join_does_not() -> None:
    # node.go:25-27 has "      ---" before the document; controlplane_join.go:31-32 does not
    assert "    content: |\n      ---\n      apiVersion: kubeadm.k8s.io/v1beta4" in crio_worker()
    assert "    content: |\n      apiVersion: kubeadm.k8s.io/v1beta4" in crio_cp_join()


def test_the_cgroup_driver_patch_is_a_kubelet_configuration() -> None:
    f = kubeadm.kubelet_patch_file()
    assert f.path == "/etc/kubernetes/patches/kubeletconfiguration0+strategic.json"
    assert yaml.safe_load(f.content) == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                                         "cgroupDriver": "systemd"}  # fmt: skip


def test_discovery_without_ca_hashes_skips_verification_as_the_controller_does() -> None:
    doc = yaml.safe_load(kubeadm.join_configuration(NODE.registration(), TokenDiscovery(TOKEN, ENDPOINT),
                                                    kubernetes_version=V))  # fmt: skip
    assert doc["discovery"]["bootstrapToken"]["unsafeSkipCAVerification"] is True


def test_ca_cert_hash_is_the_spki_sha256() -> None:
    cert, _ = CA
    spki = (
        x509.load_pem_x509_certificate(cert.encode())
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    import hashlib

    assert kubeadm.ca_cert_hash(cert) == "sha256:" + hashlib.sha256(spki).hexdigest()


def _standin_schema() -> dict:
    """The v1beta4 schema the stand-in kubeadm enforces in the e2e (tests/standins/programs/kubeadm.py)."""
    programs = REPO / "tests" / "standins" / "programs"
    sys.path.insert(0, str(programs))
    try:
        spec = importlib.util.spec_from_file_location("standin_kubeadm", programs / "kubeadm.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(programs))
    return module.schema(True), module.unknown_fields  # type: ignore[return-value]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kubeadm_field_is_a_v1beta4_field(kind: str) -> None:
    schema, unknown_fields = _standin_schema()  # type: ignore[misc]
    path = render.INIT_CONFIG_PATH if kind == "init" else render.JOIN_CONFIG_PATH
    docs = _kubeadm_docs(KINDS[kind](), path)
    assert docs
    for doc in docs:
        assert unknown_fields(doc, schema[doc["kind"]]) == [], doc["kind"]


def test_the_field_check_can_fail() -> None:
    schema, unknown_fields = _standin_schema()  # type: ignore[misc]
    doc = yaml.safe_load(kubeadm.init_configuration(NODE.registration(), kubernetes_version=V))
    doc["nodeRegistration"]["kubeletExtraArgs"] = {"cgroup-driver": "systemd"}  # the v1beta3 map form
    doc["apiServer"] = {}
    assert unknown_fields(doc, schema["InitConfiguration"]) != []


@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"the cluster-api mirror is not on this machine ({MIRROR})")
def test_every_emitted_key_is_a_json_tag_of_upstreams_v1beta4_types() -> None:
    types = _git_show(f"{render.TAG}:bootstrap/kubeadm/pkg/types/upstreamv1beta4/types.go")
    tags = set(re.findall(r'json:"([A-Za-z]+)[,"]', types)) | {"apiVersion", "kind"}  # TypeMeta
    tags |= {"key", "value", "effect"}  # corev1.Taint
    keys: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            keys.update(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for kind, path in (("init", render.INIT_CONFIG_PATH), ("worker", render.JOIN_CONFIG_PATH),
                       ("control-plane-join", render.JOIN_CONFIG_PATH)):  # fmt: skip
        for doc in _kubeadm_docs(KINDS[kind](), path):
            walk(doc)
    assert keys - tags == set()


def test_a_worker_without_given_hashes_gets_the_cas_hash() -> None:
    out = crio_user_data("worker", kubernetes_version=V, endpoint=ENDPOINT, token=TOKEN, ca=CA)
    (join,) = _kubeadm_docs(out, render.JOIN_CONFIG_PATH)
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == [kubeadm.ca_cert_hash(CA[0])]
    assert "/etc/kubernetes/pki/ca.key" not in out  # a worker gets no CA key (node.go has no certificates)


@pytest.mark.parametrize(("role", "kw"), [("master", {}), ("init", {"ca": None})])
def test_crio_user_data_refuses_what_cluster_api_would_not_write(role: str, kw: dict) -> None:
    with pytest.raises(ValueError):
        crio_user_data(role, kubernetes_version=V, endpoint=ENDPOINT, **kw)
