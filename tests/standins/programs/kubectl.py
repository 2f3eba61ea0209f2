# --- nodeimage stand-in: kubectl (tests/standins/programs/kubectl.py) --------------------------
# `kubectl apply -f` as first boot uses it: the kubeconfig must be one, and every object must be of
# a kind and API version the cluster's Kubernetes serves (the real kubectl learns that from the API
# server's discovery; this stand-in knows the versions the pinned release serves, from
# kubernetes/api at kubernetes-1.17.17 and v0.36.3). Applied manifests are kept for the tests.

# The program is common.py followed by this file, without the import from common (make_standins.py).
import os
import sys

from common import LOG_DIR, VERSION, fail, last, load_yaml_docs, minor, p, parse_flags, read, vee, write

COMMANDS = {
    "apply", "label", "get", "wait", "version", "create", "delete", "taint", "annotate", "patch", "rollout",
    "describe", "cluster-info", "config", "drain", "cordon", "uncordon", "logs", "exec", "scale", "replace",
}  # fmt: skip
# group/version -> kinds used by nodeimage's first boot and the CNIs it bakes
SERVED_17 = {
    "v1": {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "List"},
    "apps/v1": {"DaemonSet", "Deployment"},
    "rbac.authorization.k8s.io/v1": {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"},
    "rbac.authorization.k8s.io/v1beta1": {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"},
    "node.k8s.io/v1beta1": {"RuntimeClass"},  # node.k8s.io/v1 arrived in 1.20
    "policy/v1beta1": {"PodSecurityPolicy"},
}
SERVED_36 = {
    "v1": {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "List"},
    "apps/v1": {"DaemonSet", "Deployment"},
    "rbac.authorization.k8s.io/v1": {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"},
    "node.k8s.io/v1": {"RuntimeClass"},  # v1beta1 was removed in 1.25, policy/v1beta1 PSPs in 1.25
}


def _objects(doc):
    if isinstance(doc, dict) and doc.get("kind") == "List":
        return [doc, *doc.get("items", [])]
    return [doc]


def check_kubeconfig(path):
    text = read(p(path))
    if text is None:
        fail(f"error: stat {path}: no such file or directory")
    try:
        conf = (load_yaml_docs(text) or [None])[0]
    except Exception as exc:  # noqa: BLE001
        fail(f'error: error loading config file "{path}": {exc}')
    if not isinstance(conf, dict) or conf.get("kind") != "Config" or not conf.get("clusters"):
        fail(f'error: error loading config file "{path}": not a kubeconfig (kind: Config with clusters)')


def main(args):
    flags, positionals, _ = parse_flags(args, {"kubeconfig", "filename", "namespace", "output"},
                                        booleans={"client", "short", "overwrite", "help"},
                                        aliases={"f": "filename", "n": "namespace", "o": "output"})  # fmt: skip
    sub = positionals[0] if positionals else None
    if sub == "version":
        if "short" in flags and minor() >= 28:
            fail("error: unknown flag: --short")  # removed in 1.28
        print("Client Version: " + (vee(VERSION) if "short" in flags or minor() >= 28 else
                                    f'version.Info{{GitVersion:"{vee(VERSION)}"}}'))  # fmt: skip
        if minor() >= 36:  # kubernetes/kubectl@v0.36.3 pkg/cmd/version/version.go:39, 144-149
            print("Kustomize Version: v5.8.1")
        if "client" in flags:
            return 0
        fail("The connection to the server localhost:8080 was refused (nodeimage stand-in has no server)")
    if sub not in COMMANDS:
        fail(f'error: unknown command "{sub}" for "kubectl"')
    kubeconfig = last(flags, "kubeconfig", os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config")))
    check_kubeconfig(kubeconfig)
    if sub != "apply":
        return 0
    src = last(flags, "filename")
    text = sys.stdin.read() if src == "-" else read(p(src or ""))
    if text is None:
        fail(f'error: the path "{src}" does not exist')
    try:
        docs = load_yaml_docs(text)
    except Exception as exc:  # noqa: BLE001
        fail(f"error: error parsing {src}: {exc}")
    served = SERVED_17 if minor() < 20 else SERVED_36
    for doc in docs:
        for obj in _objects(doc):
            version, kind = obj.get("apiVersion"), obj.get("kind")
            if kind not in served.get(version, set()):
                fail(f'error: unable to recognize "{src}": no matches for kind "{kind}" in version "{version}"')
    n = 1
    while os.path.exists(os.path.join(LOG_DIR, f"kubectl-apply-{n}.yaml")):
        n += 1
    write(os.path.join(LOG_DIR, f"kubectl-apply-{n}.yaml"), text)
    for doc in docs:
        for obj in _objects(doc)[1 if doc.get("kind") == "List" else 0 :]:
            print(f"{obj['kind'].lower()}/{obj.get('metadata', {}).get('name', '?')} created")
    return 0
