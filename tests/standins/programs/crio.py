# --- nodeimage stand-in: crio (tests/standins/programs/crio.py) --------------------------------
# What CRI-O checks when it starts, read in cri-o/cri-o at the pinned tags (C17 = v1.17.2,
# C36 = v1.36.3), applied to the node's real configuration. Stricter than upstream in one way:
# a key CRI-O does not know is an error (upstream's TOML decode ignores it, so a misspelt key
# silently does nothing: C17 pkg/config/config.go:428, C36 pkg/config/config.go:940).

# The program is common.py followed by this file, without the import from common (make_standins.py).
import json
import os
import re
import sys

from common import (
    CRIO_SOCKET,
    ROOT,
    VERSION,
    bare,
    fail,
    last,
    minor,
    note,
    p,
    parse_flags,
    q,
    read,
    sd_notify,
    wait_for_sigterm,
    which,
    write,
)

try:
    import tomllib
except ImportError:  # Python < 3.11: the stand-ins run on the e2e's Debian 12 nodes (3.11)
    tomllib = None

# Keys per table, from the toml tags of the config structs (C17 pkg/config/config.go:122-382;
# C36 pkg/config/config.go:180-836 and internal/config/nri/nri.go:15-34).
KEYS_17 = {
    "crio": "root runroot storage_driver storage_option log_dir version_file",
    "crio.api": "grpc_max_send_msg_size grpc_max_recv_msg_size listen stream_address stream_port stream_enable_tls "
    "stream_tls_cert stream_tls_key stream_tls_ca",
    "crio.runtime": "conmon_env hooks_dir default_mounts default_capabilities default_sysctls default_ulimits "
    "additional_devices default_runtime decryption_keys_path conmon conmon_cgroup seccomp_profile apparmor_profile "
    "cgroup_manager default_mounts_file container_exits_dir container_attach_socket_dir bind_mount_prefix "
    "uid_mappings gid_mappings log_level log_filter namespaces_dir pinns_path runtimes pids_limit log_size_max "
    "ctr_stop_timeout no_pivot selinux log_to_journald manage_network_ns_lifecycle manage_ns_lifecycle read_only",
    "crio.runtime.runtimes.*": "runtime_path runtime_type runtime_root privileged_without_host_devices",
    "crio.image": "default_transport global_auth_file pause_image pause_image_auth_file pause_command "
    "signature_policy insecure_registries image_volumes registries",
    "crio.network": "network_dir plugin_dir plugin_dirs",
    "crio.metrics": "enable_metrics metrics_port",
}
KEYS_36 = {
    "crio": "root runroot imagestore storage_driver storage_option log_dir version_file version_file_persist "
    "clean_shutdown_file internal_wipe internal_repair",
    "crio.api": "grpc_max_send_msg_size grpc_max_recv_msg_size listen stream_address stream_port stream_enable_tls "
    "stream_tls_cert stream_tls_key stream_tls_ca stream_idle_timeout tls_min_version tls_cipher_suites",
    "crio.runtime": "no_pivot selinux log_to_journald drop_infra_ctr read_only conmon_env hooks_dir "
    "default_capabilities add_inheritable_capabilities default_env min_injected_gomaxprocs default_sysctls "
    "default_ulimits allowed_devices additional_devices cdi_spec_dirs device_ownership_from_security_context "
    "default_runtime decryption_keys_path additional_artifact_stores conmon conmon_cgroup seccomp_profile "
    "privileged_seccomp_profile apparmor_profile blockio_config_file blockio_reload irqbalance_config_file "
    "rdt_config_file cgroup_manager default_mounts_file container_exits_dir container_attach_socket_dir "
    "bind_mount_prefix uid_mappings minimum_mappable_uid gid_mappings minimum_mappable_gid log_level log_filter "
    "namespaces_dir pinns_path enable_criu_support runtimes workloads pids_limit log_size_max ctr_stop_timeout "
    "separate_pull_cgroup infra_ctr_cpuset shared_cpuset absent_mount_sources_to_reject enable_pod_events "
    "irqbalance_config_restore_file hostnetwork_disable_selinux disable_hostport_mapping timezone",
    "crio.runtime.runtimes.*": "runtime_config_path runtime_path runtime_type runtime_root "
    "privileged_without_host_devices allowed_annotations monitor_path monitor_cgroup monitor_env "
    "monitor_exec_cgroup platform_runtime_paths runtime_pull_image container_min_memory no_sync_log "
    "inherit_default_runtime default_annotations stream_websockets exec_cpu_affinity seccomp_profile "
    "container_create_timeout",
    "crio.image": "default_transport global_auth_file namespaced_auth_dir pause_image pause_image_auth_file "
    "pause_command pinned_images signature_policy signature_policy_dir insecure_registries image_volumes "
    "big_files_temporary_dir auto_reload_registries pull_progress_timeout oci_artifact_mount_support "
    "short_name_mode",
    "crio.network": "cni_default_network network_dir plugin_dir plugin_dirs cni_status_grace_period",
    "crio.metrics": "enable_metrics metrics_collectors metrics_host metrics_port metrics_socket metrics_cert "
    "metrics_key",
    "crio.tracing": "enable_tracing tracing_endpoint tracing_sampling_rate_per_million",
    "crio.stats": "stats_collection_period collection_period included_pod_metrics",
    "crio.nri": "enable_nri nri_listen nri_plugin_dir nri_plugin_config_dir nri_plugin_registration_timeout "
    "nri_plugin_request_timeout nri_disable_connections default_validator",
}
TABLES = ("crio.api", "crio.runtime", "crio.image", "crio.network", "crio.metrics", "crio.tracing", "crio.stats",
          "crio.nri")  # fmt: skip


def keys_for_version():
    return {k: set(v.split()) for k, v in (KEYS_17 if minor() < 18 else KEYS_36).items()}


def defaults():
    """The defaults the checks below depend on (C17 pkg/config/config.go:484-560; C36 config.go:1083-1152,
    config_linux.go:17-24)."""
    old = minor() < 18
    return {
        "root": "/var/lib/containers/storage",
        "runroot": "/var/run/containers/storage",
        "storage_driver": "",
        "log_dir": "/var/log/crio/pods",
        "version_file": "/var/run/crio/version",
        "listen": CRIO_SOCKET,
        "default_runtime": "runc" if old else "crun",
        "conmon": "",
        "conmon_cgroup": "system.slice" if old else "",
        "cgroup_manager": "cgroupfs" if old else "systemd",
        "hooks_dir": ["/usr/share/containers/oci/hooks.d"],
        "namespaces_dir": "/var/run/crio/ns" if old else "/var/run",
        "pinns_path": "",
        "log_size_max": -1,
        "apparmor_profile": ("crio-default-" + bare(VERSION)) if old else "crio-default",
        "uid_mappings": "",
        "gid_mappings": "",
        "manage_ns_lifecycle": False,
        "manage_network_ns_lifecycle": False,
        "image_volumes": "mkdir",
        "network_dir": "/etc/cni/net.d/",
        "plugin_dirs": ["/opt/cni/bin/"],
        "pause_image": "k8s.gcr.io/pause:3.1" if old else "registry.k8s.io/pause:3.10.1",
        "runtimes": {
            ("runc" if old else "crun"): {"runtime_path": "", "runtime_type": "oci",
                                          "runtime_root": "/run/runc" if old else "/run/crun"},
        },
    }  # fmt: skip


class ConfigError(Exception):
    pass


def _check_keys(data, source, known):
    """Stricter than upstream: every key must be one the pinned CRI-O has."""
    unknown = []
    for table, value in data.items():
        if table != "crio":
            unknown.append(table)
            continue
        for key, val in value.items():
            section = "crio." + key
            if isinstance(val, dict) and section in TABLES:
                for k2, v2 in val.items():
                    if section == "crio.runtime" and k2 in ("runtimes", "workloads") and isinstance(v2, dict):
                        for name, handler in v2.items():
                            allowed = known.get("crio.runtime.runtimes.*", set()) if k2 == "runtimes" else None
                            if allowed is not None:
                                unknown += [f"crio.runtime.runtimes.{name}.{k}" for k in handler if k not in allowed]
                    elif k2 not in known.get(section, set()):
                        unknown.append(f"{section}.{k2}")
            elif key not in known["crio"]:
                unknown.append(f"crio.{key}")
    if unknown:
        raise ConfigError(
            f"{source}: keys CRI-O {bare(VERSION)} does not know: {', '.join(sorted(unknown))} (upstream would ignore "
            "them silently; this stand-in refuses them)"
        )


def merge_file(conf, path, known):
    """One file onto the configuration, as UpdateFromFile does (C17 config.go:419-435): keys overwrite,
    arrays replace, a [crio.runtime.runtimes.X] table replaces the whole handler X."""
    if tomllib is None:
        raise ConfigError("the crio stand-in needs Python 3.11 (tomllib) to read " + path)
    try:
        with open(p(path), "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"unable to decode configuration {path}: {exc}") from None
    _check_keys(data, path, known)
    crio = data.get("crio", {})
    for key, value in crio.items():
        if isinstance(value, dict) and "crio." + key in TABLES:
            for k2, v2 in value.items():
                if key == "runtime" and k2 == "runtimes":
                    for name, handler in v2.items():
                        conf["runtimes"][name] = dict(handler)
                else:
                    conf[k2] = v2
        else:
            conf[key] = value


def load_config(args):
    """mergeConfig (C17 internal/pkg/criocli/criocli.go:37-61; C36 internal/criocli/criocli.go:71-99): the
    main file (a missing default is ignored, a missing explicit one is fatal), then every regular file of the
    drop-in directory in lexical order, recursively, later files winning (C17 config.go:439-453)."""
    flags, _, _ = parse_flags(args, {"config", "config-dir", "log-level"}, aliases={"c": "config", "d": "config-dir"})
    conf = defaults()
    known = keys_for_version()
    main = last(flags, "config", os.environ.get("CONTAINER_CONFIG", "/etc/crio/crio.conf"))
    explicit = "config" in flags or "CONTAINER_CONFIG" in os.environ
    if main:
        if os.path.isfile(p(main)):
            merge_file(conf, main, known)
        elif explicit:
            raise ConfigError(f"open {main}: no such file or directory")
    dropins = last(flags, "config-dir", os.environ.get("CONTAINER_CONFIG_DIR", "/etc/crio/crio.conf.d"))
    if os.path.isdir(p(dropins)):
        for dirpath, dirnames, filenames in os.walk(p(dropins)):
            dirnames.sort()
            for name in sorted(filenames):
                merge_file(conf, os.path.join(dirpath, name)[len(ROOT) :], known)
    return conf


def _exists(path):
    return os.path.exists(p(path))


def _lookpath(name):
    return which(name)


def validate(conf):
    """The checks of Config.Validate(onExecution=true) and server.New that a node's files decide, in
    upstream's order, with upstream's messages. Returns a list of warnings; raises on the first error."""
    if minor() >= 18:
        return validate_36(conf)
    old = True
    warnings = []
    if conf.get("image_volumes") not in ("mkdir", "ignore", "bind"):
        raise ConfigError("unrecognized image volume type specified")  # C17 config.go:572
    if not str(conf["log_dir"]).startswith("/"):
        raise ConfigError("root config: log_dir is not an absolute path")  # C17 config.go:632-634
    runtimes = conf["runtimes"]
    default = conf.get("default_runtime") or "runc"
    if default not in runtimes:  # C17 config.go:689-707
        raise ConfigError(f"runtime config: default_runtime set to {q(default)}, but no runtime entry was found for it")
    cgroup = conf.get("conmon_cgroup", "")
    if not (cgroup == "pod" or cgroup.endswith(".slice")):  # C17 config.go:709-711 (any cgroup_manager)
        raise ConfigError("runtime config: conmon cgroup should be 'pod' or a systemd slice")
    manage = conf.get("manage_ns_lifecycle") or conf.get("manage_network_ns_lifecycle")
    if manage and (conf.get("uid_mappings") or conf.get("gid_mappings")):  # C17 config.go:717-722
        raise ConfigError("runtime config: cannot use UIDMappings with ManageNSLifecycle")
    size = conf.get("log_size_max", -1)
    if not (size < 0 or size >= 8192):  # C17 config.go:724-726
        raise ConfigError("runtime config: log size max should be negative or >= 8192")
    for name in sorted(runtimes):
        try:
            _validate_handler(name, runtimes[name], old)
        except ConfigError as exc:
            raise ConfigError(f"runtime config: runtime validation: {exc}") from None
    for d in conf.get("hooks_dir", []):  # C17 config.go:739-743: a missing hooks directory is fatal
        if not os.path.isdir(p(d)):
            raise ConfigError(f"runtime config: invalid hooks_dir: stat {d}: no such file or directory: stat {d}: "
                              "no such file or directory")  # fmt: skip
    _validate_program("conmon", conf.get("conmon", ""), "runtime config: ")  # C17 config.go:746-748, 777-805
    _validate_program("pinns", conf.get("pinns_path", ""), "runtime config: ")  # C17 config.go:751-753
    os.makedirs(p(conf["namespaces_dir"]), exist_ok=True)  # C17 config.go:755-757
    os.makedirs(p(conf["network_dir"]), exist_ok=True)  # C17 config.go:811-846
    for d in conf.get("plugin_dirs", []):
        os.makedirs(p(d), exist_ok=True)
    if not _lookpath("nsenter"):  # ocicni util_linux.go:12-22 (C17 server.go:363-366)
        raise ConfigError('exec: "nsenter": executable file not found in $PATH')
    _apparmor(conf, old)
    return warnings


def validate_36(conf):
    """C36 pkg/config/config.go Config.Validate(onExecution=true), in its order (1175-1232): image volumes, root,
    runtime (1358-1537: default runtime, log size, cgroup manager, ValidateRuntimes, hooks, pinns, namespaces,
    AppArmor, TranslateMonitorFields), image, network, API. Errors are wrapped as upstream wraps them."""
    warnings = []
    if conf.get("image_volumes") not in ("mkdir", "ignore", "bind"):
        raise ConfigError("unrecognized image volume type specified")  # C36 config.go:1175-1182
    if not str(conf["log_dir"]).startswith("/"):  # C36 config.go:1322-1327
        raise ConfigError("validating root config: log_dir is not an absolute path")
    rt = "validating runtime config: "
    runtimes = conf["runtimes"]
    default = conf.get("default_runtime")
    if default and default not in runtimes:  # C36 config.go:1540-1562 ValidateDefaultRuntime
        raise ConfigError(f"{rt}default_runtime set to {q(default)}, but no runtime entry table "
                          f"[crio.runtime.runtimes.{default}] was found")  # fmt: skip
    if not default:  # an empty default_runtime means crun, whose built-in handler is added when missing
        default = "crun"
        runtimes.setdefault("crun", {"runtime_path": "", "runtime_type": "oci", "runtime_root": "/run/crun"})
        conf["default_runtime"] = default
    size = conf.get("log_size_max", -1)
    if not (size < 0 or size >= 8192):
        raise ConfigError(f"{rt}log size max should be negative or >= 8192")
    manager = conf.get("cgroup_manager")
    if manager not in ("systemd", "cgroupfs"):  # C36 internal/config/cgmgr/cgmgr_linux.go:113-134
        raise ConfigError(f"{rt}unable to update cgroup manager: invalid cgroup manager: {manager}")
    for name in sorted(runtimes):  # C36 config.go:1595-1641 ValidateRuntimes
        try:
            _validate_handler(name, runtimes[name], False)
        except ConfigError as exc:
            if name == default:
                raise ConfigError(f"{rt}runtime validation: {exc}") from None
            # C36 config.go:1623-1636: a broken handler other than the default is dropped with a warning
            warnings.append(f'Runtime handler "{name}" is being ignored due to: {exc}')
            del runtimes[name]
    for d in conf.get("hooks_dir", []):  # C36 config.go:1445-1472: a missing hooks directory is created
        if not os.path.isdir(p(d)):
            os.makedirs(p(d), exist_ok=True)
    _validate_program("pinns", conf.get("pinns_path", ""), rt)  # C36 config.go:1479-1481, 1830-1849
    os.makedirs(p(conf["namespaces_dir"]), exist_ok=True)  # C36 internal/config/nsmgr/nsmgr_linux.go:37-67
    _apparmor(conf, False)  # C36 config.go:1517-1519
    for name in sorted(runtimes):  # C36 config.go:1696-1755 TranslateMonitorFields: oci handlers only
        handler = runtimes[name]
        if handler.get("runtime_type", "") in ("", "oci"):
            try:
                _translate_monitor_fields(conf, handler)
            except ConfigError as exc:
                raise ConfigError(f"{rt}monitor fields translation: failed to translate monitor fields for runtime "
                                  f"{name}: {exc}") from None  # fmt: skip
    pause = conf.get("pause_image", "")  # C36 config.go:1853-1880 ImageConfig.Validate
    if not re.match(r"^[a-z0-9.:/_-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$", pause):
        raise ConfigError(f"validating image config: invalid pause image {q(pause)}")
    policy_dir = conf.get("signature_policy_dir", "/etc/crio/policies")
    if not str(policy_dir).startswith("/"):
        raise ConfigError(f'validating image config: signature policy dir {q(policy_dir)} is not absolute')
    os.makedirs(p(policy_dir), exist_ok=True)
    os.makedirs(p(conf["network_dir"]), exist_ok=True)  # C36 config.go:1891-1941
    for d in conf.get("plugin_dirs", []):
        os.makedirs(p(d), exist_ok=True)
    sock = p(conf["listen"])  # C36 config.go:1299-1316 RemoveUnusedSocket
    if os.path.exists(sock):
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(sock)
            except OSError:
                pass
            else:
                raise ConfigError(f"validating api config: already existing connection on {conf['listen']}")
    return warnings


def _translate_monitor_fields(conf, handler):
    """C36 config.go:1709-1771: the global conmon/conmon_cgroup override the handler's monitor fields; with the
    systemd manager an empty monitor cgroup is system.slice; conmon must exist (LookPath when unset) and answer
    `conmon --version` with a version in its third field (internal/config/conmonmgr/conmonmgr.go:27-51); the
    monitor cgroup must be "pod" or a *.slice (systemd) or "pod"/empty (cgroupfs)."""
    import subprocess

    cgroup = conf.get("conmon_cgroup") or handler.get("monitor_cgroup", "")
    path = conf.get("conmon") or handler.get("monitor_path", "")
    systemd = conf.get("cgroup_manager") == "systemd"
    if systemd and not cgroup:
        cgroup = "system.slice"
    if not path:
        path = program = _lookpath("conmon")  # a path on this machine's PATH, not under NODEIMAGE_STANDIN_ROOT
        if not path:
            raise ConfigError('exec: "conmon": executable file not found in $PATH')
    elif not _exists(path):
        raise ConfigError(f"invalid conmon path: stat {path}: no such file or directory")
    else:
        program = p(path)
    if not path.startswith("/"):
        raise ConfigError(f"conmon path is not absolute: {path}")
    try:
        command = [sys.executable, program] if _is_python(program) else [program]
        out = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError as exc:
        raise ConfigError(f"get conmon version: {exc}") from None
    fields = out.split()
    if len(fields) < 3:
        raise ConfigError(f"conmon version output too short: expected three fields, got {len(fields)} in {out}")
    if not re.fullmatch(r"\d+\.\d+\.\d+([-+].*)?", fields[2]):
        raise ConfigError(f"parse conmon version: {fields[2]} is not in dotted-tri format")
    if not systemd:
        cgroup = "" if cgroup == "system.slice" else cgroup
        if cgroup not in ("pod", ""):
            raise ConfigError(f"cgroupfs manager conmon cgroup should be 'pod' or empty, but got: '{cgroup}'")
    elif not (cgroup == "pod" or cgroup.endswith(".slice")):
        raise ConfigError("conmon cgroup should be 'pod' or a systemd slice")


def _is_python(path):
    """The stand-in programs are Python scripts; under NODEIMAGE_STANDIN_ROOT they run through this interpreter."""
    try:
        with open(path, "rb") as fh:
            return fh.read(20).startswith(b"#!/usr/bin/python3")
    except OSError:
        return False


def _validate_handler(name, handler, old):
    """RuntimeHandler validation (C17 config.go:859-883; C36 config.go:1944-2055, in C36's order: type, path and
    the vm naming pattern, runtime_config_path). Messages without the callers' prefixes."""
    rtype = handler.get("runtime_type", "")
    if rtype not in (("", "oci", "vm") if old else ("", "oci", "vm", "pod")):
        raise ConfigError(f"invalid `runtime_type` {q(rtype)} for runtime {q(name)}")
    path = handler.get("runtime_path", "")
    if not path:  # LookPath(<handler name>)
        if not _lookpath(name):
            raise ConfigError(f'"{name}" not found in $PATH: exec: "{name}": executable file not found in $PATH')
    elif not _exists(path):  # os.Stat, ENOENT only (the mode is not checked)
        if old:
            raise ConfigError(f"invalid runtime_path for runtime '{name}': \"stat {path}: no such file or directory\"")
        raise ConfigError(f"invalid runtime_path for runtime '{name}': stat {path}: no such file or directory")
    if not old and rtype == "vm":
        base = os.path.basename(path)
        if not re.fullmatch(r"containerd-shim-([a-zA-Z0-9\-\+])+-v2", base):  # C36 config.go:73, 1986-2028
            raise ConfigError(f"invalid runtime_path for runtime '{name}': containerd binary naming pattern is not "
                              "followed")  # fmt: skip
    cfg = handler.get("runtime_config_path", "")
    if not old and cfg:  # C36 config.go:2041-2055
        if rtype != "vm":
            raise ConfigError("runtime_config_path can only be used with the 'vm' runtime type")
        if not _exists(cfg):
            raise ConfigError(f"invalid runtime_config_path for runtime '{name}': stat {cfg}: no such file or "
                              "directory")  # fmt: skip


def _validate_program(what, path, prefix):
    """validateExecutablePath (C17 config.go:777-805; C36 config.go:1830-1849): empty → LookPath (must be
    executable in $PATH), else os.Stat only."""
    if not path:
        if not _lookpath(what):
            raise ConfigError(f'{prefix}{what} validation: exec: "{what}": executable file not found in $PATH')
    elif not _exists(path):
        raise ConfigError(f"{prefix}{what} validation: invalid {what} path: stat {path}: no such file or directory")


def _apparmor(conf, old):
    """server.go:413-445 (C17) / apparmor_linux.go:33-95 (C36): with AppArmor on, the default profile is installed
    with apparmor_parser; any other profile must already be loaded."""
    enabled = (read(p("/sys/module/apparmor/parameters/enabled"), "") or "").startswith("Y")
    if not enabled or not os.path.exists(p("/sbin/apparmor_parser")):
        return
    profile = conf.get("apparmor_profile", "")
    installable = {"crio-default-" + bare(VERSION)} if old else {"", "crio-default", "unconfined"}
    if profile in installable:
        return
    loaded = read(p("/sys/kernel/security/apparmor/profiles"), "") or ""
    if not any(line.startswith(profile + " ") for line in loaded.splitlines()):
        raise ConfigError(f"config provided AppArmor profile {q(profile)} not loaded")


# --- the daemon ----------------------------------------------------------------------------------


def _storage_images(conf):
    """The images in CRI-O's containers-storage (what the real CRI-O lists), read from the store's files."""
    driver = conf.get("storage_driver") or "overlay"
    data = read(p(os.path.join(conf["root"], f"{driver}-images", "images.json")), "[]") or "[]"
    try:
        return json.loads(data)
    except ValueError:
        return []


def _normalise(ref):
    """docker's normalisation: a name without a registry is docker.io/library/NAME (C17 image.go:512-525)."""
    name = ref
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + ("library/" + name if "/" not in name else name)
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def _find_image(conf, ref):
    want = _normalise(ref)
    for image in _storage_images(conf):
        names = image.get("names") or []
        digests = {n.split("@", 1)[1] for n in names if "@" in n} | {image.get("digest", "")}
        if want in names or ("@" in want and want.split("@", 1)[1] in digests):
            return {"id": image.get("id"), "repoTags": [n for n in names if "@" not in n],
                    "repoDigests": [n for n in names if "@" in n]}  # fmt: skip
    return None


def _answer(conf, line):
    verb, _, arg = line.strip().partition(" ")
    if verb == "INFO":
        return {"status": {"conditions": [{"type": "RuntimeReady", "status": True},
                                          {"type": "NetworkReady", "status": False}]},
                "config": {"cgroup_manager": conf.get("cgroup_manager"), "default_runtime": conf.get("default_runtime"),
                           "runtimes": sorted(conf["runtimes"])}}  # fmt: skip
    if verb == "VERSION":
        return {"version": "0.1.0", "runtimeName": "cri-o", "runtimeVersion": bare(VERSION), "runtimeApiVersion": "v1"}
    if verb == "IMAGE":
        found = _find_image(conf, arg)
        return {"image": found} if found else {"error": f"no such image {arg}"}
    if verb == "IMAGES":
        return {"images": [{"id": i.get("id"), "names": i.get("names", [])} for i in _storage_images(conf)]}
    if verb == "PULL":
        note("crio-pulls.log", arg)
        return {"error": f"pulling image {arg}: the nodeimage stand-in CRI-O has no network (the real one would "
                         "pull from the registry)"}  # fmt: skip
    return {"error": f"unknown request {q(verb)}"}


def serve(conf):
    import socketserver
    import threading

    sock_path = p(conf["listen"])
    os.makedirs(os.path.dirname(sock_path), exist_ok=True)
    if os.path.exists(sock_path):
        os.unlink(sock_path)  # C17 config.go:610-620: an existing socket file is removed

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                line = self.rfile.readline().decode()
            except OSError:
                return
            if not line:
                return
            self.wfile.write((json.dumps(_answer(conf, line)) + "\n").encode())

    server = socketserver.ThreadingUnixStreamServer(sock_path, Handler)
    server.daemon_threads = True
    # a short poll: shutdown() waits for the loop to notice (0.5 s by default, which every test stopping crio paid)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        write(p(conf["version_file"]), json.dumps(bare(VERSION)) + "\n")  # C17 main.go:249-251
        wait_for_sigterm(ready=lambda: sd_notify("READY=1"))  # C17 main.go:257: after the socket listens
    finally:
        server.shutdown()
        server.server_close()
        if os.path.exists(sock_path):
            os.unlink(sock_path)


def crio_config_text(conf):
    lines = ["# nodeimage stand-in: the merged configuration (not upstream's template)", "[crio]"]
    for key in ("root", "runroot", "storage_driver", "log_dir", "version_file"):
        lines.append(f"{key} = {json.dumps(conf.get(key, ''))}")
    lines += ["[crio.runtime]", f"cgroup_manager = {json.dumps(conf.get('cgroup_manager'))}",
              f"default_runtime = {json.dumps(conf.get('default_runtime'))}"]  # fmt: skip
    for name, handler in sorted(conf["runtimes"].items()):
        lines.append(f"[crio.runtime.runtimes.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in sorted(handler.items())]
    return "\n".join(lines) + "\n"


def main(args):
    if "--version" in args or "-v" in args:
        print("crio version " + bare(VERSION))  # C17 cmd/crio/main.go:120-130 (static bundle: no commit line)
        return 0
    try:
        conf = load_config(args)
        _, positionals, _ = parse_flags(args, {"config", "config-dir", "log-level"}, booleans={"default", "force"},
                                        aliases={"c": "config", "d": "config-dir", "f": "force"})  # fmt: skip
        command = positionals[0] if positionals else None
        if command == "config":  # C17 cmd/crio/config.go: validated with onExecution=false
            print(crio_config_text(conf), end="")
            return 0
        if command == "wipe":  # C17 cmd/crio/wipe.go:17-129: config merged first, then the version file
            if read(p(conf["version_file"])) is None:
                print(f"version file {conf['version_file']} not found: open {conf['version_file']}: no such file or "
                      "directory. Triggering wipe", file=sys.stderr)  # fmt: skip
            else:
                print("major and minor version unchanged; no wipe needed")
            return 0
        if command is not None:
            raise ConfigError(f"command {q(command)} not supported")  # C17 main.go:211-214
        for warning in validate(conf):
            print(f'level=warning msg="{warning}"', file=sys.stderr)
    except ConfigError as exc:
        fail(f'level=fatal msg="{exc}"')  # logrus.Fatal: exit status 1 (C17 main.go:339-341)
    serve(conf)
    return 0
