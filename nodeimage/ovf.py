"""The OVF 1.x descriptor and `.mf` manifest of an OVA, as pure functions.

Kept apart from the packing (``nodeimage.ova``) so that the XML can be
checked without a disk. The descriptor follows DMTF DSP0243 1.1 and
validates against the DSP8023 1.1.1 envelope schema: every ``rasd:`` and
``vssd:`` child is written in the schema's (alphabetical) sequence order, and
VMware's ``vmw:osType`` is added as a lax extension attribute.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodeimage import __version__, distros
from nodeimage.log import die

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW_NS = "http://www.vmware.com/schema/ovf"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
VMDK_STREAM_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

# The VMware hardware version is the oldest one that knows every guest type
# below (ESXi 6.5+); VirtualBox ignores the value.
VIRTUAL_SYSTEM_TYPE = "vmx-13"
NETWORK_NAME = "VM Network"


@dataclass(frozen=True)
class GuestOs:
    """A guest OS as OVF names it: CIM OSType id plus VMware's guest id."""

    cim_id: int
    vmw_id: str
    description: str


def guest_os_of(distro: str) -> GuestOs:
    """How OVF names a distribution's 64-bit guest: its CIM_OperatingSystem.OSType (DSP0243 refers to that
    enumeration) and VMware guest id, from the distribution's unit (nodeimage.distros)."""
    if distro not in distros.names():
        die(f"unknown guest OS {distro!r}", hint=f"use one of: {', '.join(distros.names())}")
    d = distros.get(distro)
    return GuestOs(d.ovf_cim_id, d.ovf_vmware_id, d.ovf_description)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class OvfDisk:
    """The one disk of the appliance, as the descriptor describes it."""

    href: str  # file name inside the OVA
    file_size: int  # bytes of the VMDK file
    capacity: int  # virtual size in bytes
    populated_size: int  # bytes of allocated data


def check_name(name: str) -> str:
    """Return ``name`` if it is usable as an OVA member stem and VM name, else die."""
    if not _NAME_RE.match(name):
        die(
            f"invalid OVA name {name!r}",
            hint="use 1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit, e.g. 'k8s-1.17'",
        )
    return name


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _sub(parent: ET.Element, ns: str, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, _q(ns, tag), {_attr(k): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _attr(key: str) -> str:
    """``ovf_id`` -> ``{ovf}id``; ``vmw__osType`` -> ``{vmw}osType``; plain keys stay plain."""
    if key.startswith("vmw__"):
        return _q(VMW_NS, key[5:])
    if key.startswith("ovf_"):
        return _q(OVF_NS, key[4:])
    return key


def _item(hw: ET.Element, fields: Iterable[tuple[str, str]]) -> None:
    """One ``Item``; ``fields`` must already be in the schema's sequence order."""
    item = _sub(hw, OVF_NS, "Item")
    for tag, text in fields:
        _sub(item, RASD_NS, tag, text)


def render_ovf(
    *,
    name: str,
    cpus: int,
    memory_mib: int,
    disk: OvfDisk,
    product: Mapping[str, str],
    guest_os: str = "ubuntu",
) -> bytes:
    """Return the OVF descriptor (UTF-8 XML) for a one-disk, one-NIC virtual system.

    ``product`` carries ``profile`` and optionally ``description``; every
    other key is a component name whose value is its version, written as a
    ProductSection property ``component.<name>``.
    """
    check_name(name)
    if cpus < 1:
        die(f"invalid CPU count {cpus}", hint="give at least 1 CPU")
    if memory_mib < 64:
        die(f"invalid memory size {memory_mib} MiB", hint="give at least 64 MiB, e.g. 2048")
    for key in ("profile",):
        if not product.get(key):
            die(f"OVA product information lacks {key!r}", hint="pass the profile name as product['profile']")
    os_info = guest_os_of(guest_os)

    for prefix, uri in (("ovf", OVF_NS), ("rasd", RASD_NS), ("vssd", VSSD_NS), ("vmw", VMW_NS)):
        ET.register_namespace(prefix, uri)
    env = ET.Element(_q(OVF_NS, "Envelope"), {_q(OVF_NS, "version"): "1.0"})
    # ElementTree declares only the namespaces it uses; vmw is used below.

    refs = _sub(env, OVF_NS, "References")
    _sub(refs, OVF_NS, "File", ovf_href=disk.href, ovf_id="file1", ovf_size=str(disk.file_size))

    disks = _sub(env, OVF_NS, "DiskSection")
    _sub(disks, OVF_NS, "Info", "Virtual disk information")
    _sub(
        disks,
        OVF_NS,
        "Disk",
        ovf_capacity=str(disk.capacity),
        ovf_capacityAllocationUnits="byte",
        ovf_diskId="vmdisk1",
        ovf_fileRef="file1",
        ovf_format=VMDK_STREAM_FORMAT,
        ovf_populatedSize=str(disk.populated_size),
    )

    nets = _sub(env, OVF_NS, "NetworkSection")
    _sub(nets, OVF_NS, "Info", "The list of logical networks")
    net = _sub(nets, OVF_NS, "Network", ovf_name=NETWORK_NAME)
    _sub(net, OVF_NS, "Description", "The network the node's NIC connects to")

    vs = _sub(env, OVF_NS, "VirtualSystem", ovf_id=name)
    _sub(vs, OVF_NS, "Info", "A Kubernetes node built by nodeimage")
    _sub(vs, OVF_NS, "Name", name)

    os_section = _sub(vs, OVF_NS, "OperatingSystemSection", ovf_id=str(os_info.cim_id), vmw__osType=os_info.vmw_id)
    _sub(os_section, OVF_NS, "Info", "The guest operating system")
    _sub(os_section, OVF_NS, "Description", os_info.description)

    hw = _sub(vs, OVF_NS, "VirtualHardwareSection")
    _sub(hw, OVF_NS, "Info", f"{cpus} CPU, {memory_mib} MiB memory, one SCSI disk, one NIC")
    system = _sub(hw, OVF_NS, "System")
    for tag, text in (
        ("ElementName", "Virtual Hardware Family"),
        ("InstanceID", "0"),
        ("VirtualSystemIdentifier", name),
        ("VirtualSystemType", VIRTUAL_SYSTEM_TYPE),
    ):
        _sub(system, VSSD_NS, tag, text)
    # rasd children in the schema's sequence order (alphabetical).
    _item(
        hw,
        [
            ("AllocationUnits", "hertz * 10^6"),
            ("Description", "Number of virtual CPUs"),
            ("ElementName", f"{cpus} virtual CPU(s)"),
            ("InstanceID", "1"),
            ("ResourceType", "3"),
            ("VirtualQuantity", str(cpus)),
        ],
    )
    _item(
        hw,
        [
            ("AllocationUnits", "byte * 2^20"),
            ("Description", "Memory size"),
            ("ElementName", f"{memory_mib} MB of memory"),
            ("InstanceID", "2"),
            ("ResourceType", "4"),
            ("VirtualQuantity", str(memory_mib)),
        ],
    )
    _item(
        hw,
        [
            ("Address", "0"),
            ("Description", "SCSI Controller"),
            ("ElementName", "SCSI Controller 0"),
            ("InstanceID", "3"),
            ("ResourceSubType", "lsilogic"),
            ("ResourceType", "6"),
        ],
    )
    _item(
        hw,
        [
            ("AddressOnParent", "0"),
            ("Description", "Root disk"),
            ("ElementName", "Hard Disk 1"),
            ("HostResource", "ovf:/disk/vmdisk1"),
            ("InstanceID", "4"),
            ("Parent", "3"),
            ("ResourceType", "17"),
        ],
    )
    _item(
        hw,
        [
            ("AddressOnParent", "7"),
            ("AutomaticAllocation", "true"),
            ("Connection", NETWORK_NAME),
            ("Description", f"E1000 ethernet adapter on {NETWORK_NAME}"),
            ("ElementName", "Ethernet 1"),
            ("InstanceID", "5"),
            ("ResourceSubType", "E1000"),
            ("ResourceType", "10"),
        ],
    )

    # VMware's own order: OS, hardware, then product.
    product_section = _sub(vs, OVF_NS, "ProductSection")
    _sub(product_section, OVF_NS, "Info", "The profile and component versions this image was built from")
    _sub(product_section, OVF_NS, "Product", product.get("description") or f"nodeimage {product['profile']}")
    _sub(product_section, OVF_NS, "Vendor", "nodeimage")
    _sub(product_section, OVF_NS, "Version", product["profile"])
    _sub(product_section, OVF_NS, "FullVersion", f"profile {product['profile']}, nodeimage {__version__}")
    _sub(product_section, OVF_NS, "Category", "Build")
    _property(product_section, "nodeimage.profile", product["profile"], "Profile")
    _property(product_section, "nodeimage.version", __version__, "nodeimage version")
    components = sorted(k for k in product if k not in ("profile", "description"))
    if components:
        _sub(product_section, OVF_NS, "Category", "Components")
    for comp in components:
        _property(product_section, f"component.{comp}", product[comp], comp)

    ET.indent(env, space="  ")
    body = ET.tostring(env, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode()


def _property(section: ET.Element, key: str, value: str, label: str) -> None:
    prop = _sub(section, OVF_NS, "Property", ovf_key=key, ovf_type="string", ovf_value=value)
    _sub(prop, OVF_NS, "Label", label)


def render_manifest(digests: Iterable[tuple[str, str]]) -> bytes:
    """The `.mf` text: one ``SHA256(<file>)= <hex>`` line per (file, sha256) pair, in the given order."""
    lines = []
    for fname, hexdigest in digests:
        if not _HEX64_RE.match(hexdigest):
            die(f"not a SHA-256 hex digest for {fname}: {hexdigest!r}", hint="64 lowercase hex characters")
        lines.append(f"SHA256({fname})= {hexdigest}\n")
    return "".join(lines).encode()


_MF_LINE_RE = re.compile(r"^SHA256\((?P<name>[^)]+)\)= (?P<hex>[0-9a-f]{64})$")


def parse_manifest(text: str) -> dict[str, str]:
    """Parse `.mf` text into {file: sha256 hex}; die on a line that is not ``SHA256(f)= hex``."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MF_LINE_RE.match(line)
        if not m:
            die(f"manifest line {lineno} is not 'SHA256(<file>)= <hex>': {line!r}")
        out[m["name"]] = m["hex"]
    return out
