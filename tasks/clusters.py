"""The cluster tasks: seeds for nodes, local clusters of VMs booted from an image, and the acceptance suite."""

from __future__ import annotations

from invoke import Context, Exit

from nodeimage.cli import int_option, task
from nodeimage.log import result

from .images import build, lock


@task(
    help={
        "cluster": "cluster name; its secrets live in <state-dir>/<cluster>/ (created by the control-plane seed)",
        "role": "control-plane (creates the cluster's CA and token) or worker",
        "name": "node name: hostname and Kubernetes node name (a DNS label)",
        "ip": "the node's private address, e.g. 192.168.100.10 or 192.168.100.10/24",
        "control_plane_ip": "the control plane's private address (default: --ip for a control plane; "
        "a worker takes it from the cluster)",
        "endpoint": "API server endpoint HOST:PORT (default <control-plane-ip>:6443)",
        "profile": "profile giving the Kubernetes version, pod and service CIDRs (default k8s-1.17); a worker's "
        "profile must have the Kubernetes version recorded in the cluster's cluster.yaml",
        "pod_cidr": "override the profile's pod CIDR (becomes Weave's IPALLOC_RANGE); control plane only: a worker "
        "takes the cluster's, and another value is an error",
        "out": "put the seed in a new 0700 directory DIR/<cluster>-<name>/ (DIR is created 0700 if missing, and "
        "otherwise never changed); default <state-dir>/<cluster>/nodes/<name>/",
        "state_dir": "where cluster directories live (default build/clusters)",
        "ssh_key": "OpenSSH public key file (.pub) authorised for the 'nodeimage' admin user: ssh-ed25519, "
        "ecdsa-sha2-nistp256/384/521, ssh-rsa, sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com",
        "nat_nic": "first NIC (DHCP, outbound): interface name or MAC (default ens3)",
        "private_nic": "second NIC (static --ip): interface name or MAC (default ens4)",
        "token_file": "file holding a bootstrap token to use instead of a random one (never pass it as an argument)",
    }
)
def seed(
    c: Context,
    cluster: str,
    role: str,
    name: str,
    ip: str,
    control_plane_ip: str = "",
    endpoint: str = "",
    profile: str = "k8s-1.17",
    pod_cidr: str = "",
    out: str = "",
    state_dir: str = "",
    ssh_key: str = "",
    nat_nic: str = "ens3",
    private_nic: str = "ens4",
    token_file: str = "",
) -> None:
    """Render a node's cloud-init seed (user-data, meta-data, network-config, seed ISO) for a cluster.

    Refused, with nothing written: a name or address another node of the cluster has, a second control
    plane, and worker options the cluster decides (--pod-cidr, a profile of another Kubernetes version).
    """
    from pathlib import Path

    from nodeimage.nodespec import read_ssh_public_key, read_token_file
    from nodeimage.profiles import load_profile
    from nodeimage.seed import NodeSpec, seed_node

    prof = load_profile(profile)
    iso = seed_node(
        cluster=cluster,
        node=NodeSpec(
            role=role,
            name=name,
            ip=ip,
            nat_nic=nat_nic,
            private_nic=private_nic,
            ssh_public_key=read_ssh_public_key(Path(ssh_key)) if ssh_key else None,
        ),
        kubernetes_version=prof.kubernetes.version,
        pod_cidr=pod_cidr or prof.kubernetes.pod_cidr,
        pod_cidr_given=bool(pod_cidr),
        service_cidr=prof.kubernetes.service_cidr,
        control_plane_ip=control_plane_ip or None,
        endpoint=endpoint or None,
        state_dir=Path(state_dir) if state_dir else None,
        out_dir=Path(out) if out else None,
        token=read_token_file(Path(token_file)) if token_file else None,
        image_repository=prof.kubernetes.image_repository,
        profile=prof.name,
    )
    result(str(iso), path=str(iso))


@task(
    help={
        "workers": "number of worker VMs besides the control plane: a whole number 0-8 (default 1)",
        "image": "node image to boot (never modified: each VM runs on an overlay); default build/<profile>/node.qcow2",
        "cluster": "cluster name (its secrets, seeds and state live in <state-dir>/<cluster>/)",
        "profile": "profile giving the Kubernetes version and CIDRs (default k8s-1.17)",
        "network": "private network of the nodes (default 192.168.100.0/24; control plane .10, workers .11…)",
        "state_dir": "where cluster directories live (default build/clusters)",
        "accel": "kvm or tcg (default: probe whether KVM really runs a guest)",
        "no_wait": "return once the VMs are started, without waiting for SSH and first boot",
        "air_gapped": "cut the nodes off from everything but their private network (first boot pulls nothing)",
    }
)
def up(
    c: Context,
    workers: str = "1",
    image: str = "",
    cluster: str = "local",
    profile: str = "k8s-1.17",
    network: str = "192.168.100.0/24",
    state_dir: str = "",
    accel: str = "",
    no_wait: bool = False,
    air_gapped: bool = False,
) -> None:
    """Boot a local cluster (1 control plane + N workers) from a node image under qemu."""
    from pathlib import Path

    from nodeimage.cluster import up as cluster_up
    from nodeimage.profiles import load_profile

    prof = load_profile(profile)
    cluster_up(
        wait=not no_wait,
        cluster=cluster,
        image=Path(image) if image else Path("build") / prof.name / "node.qcow2",
        workers=int_option("workers", workers, default=1),
        kubernetes_version=prof.kubernetes.version,
        pod_cidr=prof.kubernetes.pod_cidr,
        service_cidr=prof.kubernetes.service_cidr,
        network=network,
        state_dir=Path(state_dir) if state_dir else None,
        accel=accel or None,
        cpus=prof.vm.cpus,
        memory_mib=prof.vm.memory_mib,
        outbound=not air_gapped,
        image_repository=prof.kubernetes.image_repository,
    )


@task(
    help={
        "cluster": "cluster name (default local)",
        "state_dir": "where cluster directories live (default build/clusters)",
        "purge": "delete the cluster's directory (CA key, token, seeds, kubeconfig) instead of stopping it; "
        "refused while any of its VMs runs: `invoke down` first",
    }
)
def down(c: Context, cluster: str = "local", state_dir: str = "", purge: bool = False) -> None:
    """Stop a local cluster's VMs and private network, and free their ports and overlays.

    Even without its state.json: by the VMs' pid files, signalling only the qemu each names.
    """
    from pathlib import Path

    from nodeimage.cluster import down as cluster_down

    cluster_down(cluster=cluster, state_dir=Path(state_dir) if state_dir else None, purge=purge)


@task(
    help={
        "hosts": "comma-separated testinfra hosts, e.g. ssh://ubuntu@10.0.0.5,ssh://ubuntu@10.0.0.6",
        "cluster": "take hosts, SSH key and kubeconfig from a cluster started with `invoke up`",
        "kubeconfig": "admin kubeconfig: enables the cluster layer (nodes Ready, Weave, runc and kata pods)",
        "ssh_key": "private key for the SSH hosts",
        "ssh_config": "ssh_config file for the SSH hosts",
        "standins": "the image was built from test stand-ins: skip checks that need real upstream binaries",
        "state_dir": "where cluster directories live (default build/clusters)",
        "pytest_args": "extra pytest arguments, e.g. '-k firstboot -x'",
        "no_sudo": "do not run the checks through sudo (when connecting as root on a node without sudo)",
    }
)
def acceptance(
    c: Context,
    hosts: str = "",
    cluster: str = "",
    kubeconfig: str = "",
    ssh_key: str = "",
    ssh_config: str = "",
    standins: bool = False,
    state_dir: str = "",
    pytest_args: str = "",
    no_sudo: bool = False,
) -> None:
    """Run the acceptance suite (image, first-boot and cluster layers) against booted nodes."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from nodeimage.acceptance import acceptance_command

    cmd, env = acceptance_command(
        hosts=[h for h in hosts.split(",") if h],
        cluster=cluster or None,
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        ssh_key=Path(ssh_key) if ssh_key else None,
        ssh_config=Path(ssh_config) if ssh_config else None,
        standins=standins,
        state_dir=Path(state_dir) if state_dir else None,
        extra=shlex.split(pytest_args),
        python=sys.executable,
        sudo=not no_sudo,
    )
    print("+ " + shlex.join(cmd), file=sys.stderr)
    rc = subprocess.run(cmd, env=env, check=False).returncode
    if rc != 0:
        raise Exit(f"acceptance suite failed (pytest exit code {rc})", code=rc)


@task(
    help={
        "profile": "profile to build from upstream (default k8s-1.17)",
        "cluster": "name of the cluster it boots (default real; its secrets stay in build/clusters/<name>/)",
        "keep": "leave the cluster running after the suite (default: `invoke down` it, keeping its secrets)",
    }
)
def test_real(c: Context, profile: str = "k8s-1.17", cluster: str = "real", keep: bool = False) -> None:
    """Lock, build from upstream, boot a control plane and a worker, and run every acceptance layer.

    The real path in one command (image, first-boot and cluster layers of the suite, against the real
    binaries). Needs the upstream hosts (internet) and, for a usable speed, KVM.
    """
    from nodeimage.log import info, step

    with step(f"test-real: {profile} from upstream"):
        lock(c, profile=profile)
        build(c, profile=profile)
        up(c, profile=profile, cluster=cluster)
        try:
            acceptance(c, cluster=cluster)
        finally:
            if keep:
                info(f"cluster {cluster} is left running: `invoke down --cluster {cluster}`")
            else:
                down(c, cluster=cluster)
