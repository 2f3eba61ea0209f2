"""The OVF descriptor and .mf manifest, without a disk."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nodeimage.log import NodeimageError
from nodeimage.ovf import OVF_NS, RASD_NS, VMW_NS, OvfDisk, parse_manifest, render_manifest, render_ovf

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "ovf-schema" / "dsp8023_1.1.1.xsd"
DISK = OvfDisk(href="n-disk1.vmdk", file_size=123456, capacity=10 * 1024**3, populated_size=2 * 1024**3)
PRODUCT = {"profile": "k8s-1.17", "description": "Ubuntu 20.04 node <&>", "cri-o": "v1.17.2", "crictl": "v1.17.0"}
NS = {"ovf": OVF_NS, "rasd": RASD_NS}


def _ovf(**kw: object) -> bytes:
    args: dict[str, object] = dict(name="n", cpus=4, memory_mib=3072, disk=DISK, product=PRODUCT)
    args.update(kw)
    return render_ovf(**args)  # type: ignore[arg-type]


def _items(root: ET.Element) -> dict[str, ET.Element]:
    items = root.findall(".//ovf:VirtualHardwareSection/ovf:Item", NS)
    return {i.findtext("rasd:ResourceType", namespaces=NS) or "": i for i in items}


def test_describes_hardware_disk_network_and_os() -> None:
    root = ET.fromstring(_ovf())
    f = root.find("ovf:References/ovf:File", NS)
    assert f is not None and f.get(f"{{{OVF_NS}}}href") == "n-disk1.vmdk"
    assert f.get(f"{{{OVF_NS}}}size") == "123456"
    disk = root.find("ovf:DiskSection/ovf:Disk", NS)
    assert disk is not None
    assert disk.get(f"{{{OVF_NS}}}capacity") == str(10 * 1024**3)
    assert disk.get(f"{{{OVF_NS}}}populatedSize") == str(2 * 1024**3)
    assert disk.get(f"{{{OVF_NS}}}fileRef") == "file1"
    assert [n.get(f"{{{OVF_NS}}}name") for n in root.findall("ovf:NetworkSection/ovf:Network", NS)] == ["VM Network"]
    os_section = root.find(".//ovf:OperatingSystemSection", NS)
    assert os_section is not None
    assert os_section.get(f"{{{OVF_NS}}}id") == "94"
    assert os_section.get(f"{{{VMW_NS}}}osType") == "ubuntu64Guest"
    items = _items(root)
    assert items["3"].findtext("rasd:VirtualQuantity", namespaces=NS) == "4"
    assert items["4"].findtext("rasd:VirtualQuantity", namespaces=NS) == "3072"
    assert items["4"].findtext("rasd:AllocationUnits", namespaces=NS) == "byte * 2^20"
    assert items["6"].findtext("rasd:ResourceSubType", namespaces=NS) == "lsilogic"
    assert items["17"].findtext("rasd:HostResource", namespaces=NS) == "ovf:/disk/vmdisk1"
    assert items["17"].findtext("rasd:Parent", namespaces=NS) == items["6"].findtext("rasd:InstanceID", namespaces=NS)
    assert items["10"].findtext("rasd:ResourceSubType", namespaces=NS) == "E1000"
    assert items["10"].findtext("rasd:Connection", namespaces=NS) == "VM Network"


def test_rasd_children_in_schema_order() -> None:
    """DSP8023 requires the rasd elements in (alphabetical) sequence order."""
    for item in _items(ET.fromstring(_ovf())).values():
        tags = [child.tag.split("}")[1] for child in item]
        assert tags == sorted(tags)


def test_product_section_names_profile_and_components() -> None:
    root = ET.fromstring(_ovf())
    section = root.find(".//ovf:ProductSection", NS)
    assert section is not None
    assert section.findtext("ovf:Product", namespaces=NS) == "Ubuntu 20.04 node <&>"
    assert section.findtext("ovf:Version", namespaces=NS) == "k8s-1.17"
    props = {p.get(f"{{{OVF_NS}}}key"): p.get(f"{{{OVF_NS}}}value") for p in section.findall("ovf:Property", NS)}
    assert props["nodeimage.profile"] == "k8s-1.17"
    assert props["component.cri-o"] == "v1.17.2"
    assert props["component.crictl"] == "v1.17.0"


def test_debian_guest() -> None:
    os_section = ET.fromstring(_ovf(guest_os="debian")).find(".//ovf:OperatingSystemSection", NS)
    assert os_section is not None and os_section.get(f"{{{OVF_NS}}}id") == "96"


def test_same_input_same_bytes() -> None:
    assert _ovf() == _ovf()
    assert _ovf().startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ovf:Envelope ')


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "bad name"}, "invalid OVA name 'bad name'"),
        ({"name": "../x"}, "invalid OVA name"),
        ({"cpus": 0}, "invalid CPU count 0"),
        ({"memory_mib": 16}, "invalid memory size 16 MiB"),
        ({"guest_os": "windows"}, "unknown guest OS 'windows'"),
        ({"product": {"cri-o": "v1"}}, "lacks 'profile'"),
    ],
)
def test_rejects_bad_input(kw: dict[str, object], message: str) -> None:
    with pytest.raises(NodeimageError, match=message):
        _ovf(**kw)


def test_validates_against_dmtf_schema(tmp_path: Path) -> None:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint not installed (Debian: libxml2-utils)")
    path = tmp_path / "n.ovf"
    path.write_bytes(_ovf())
    proc = subprocess.run(
        ["xmllint", "--noout", "--nonet", "--schema", str(SCHEMA), str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_schema_rejects_a_broken_descriptor(tmp_path: Path) -> None:
    """The schema check above can fail: swap two rasd elements out of sequence order."""
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint not installed (Debian: libxml2-utils)")
    text = _ovf().decode()
    text = text.replace(
        "<rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>\n        <rasd:Description>Number of virtual CPUs"
        "</rasd:Description>",
        "<rasd:Description>Number of virtual CPUs</rasd:Description>\n        <rasd:AllocationUnits>hertz * 10^6"
        "</rasd:AllocationUnits>",
    )
    assert "<rasd:Description>Number of virtual CPUs</rasd:Description>\n        <rasd:AllocationUnits>" in text
    path = tmp_path / "bad.ovf"
    path.write_text(text)
    proc = subprocess.run(
        ["xmllint", "--noout", "--nonet", "--schema", str(SCHEMA), str(path)], capture_output=True, text=True
    )
    assert proc.returncode != 0


def test_manifest_round_trip() -> None:
    pairs = [("n.ovf", "a" * 64), ("n-disk1.vmdk", "0123456789abcdef" * 4)]
    text = render_manifest(pairs)
    assert text == f"SHA256(n.ovf)= {'a' * 64}\nSHA256(n-disk1.vmdk)= {'0123456789abcdef' * 4}\n".encode()
    assert parse_manifest(text.decode()) == dict(pairs)


@pytest.mark.parametrize("line", ["SHA1(n.ovf)= " + "a" * 40, "SHA256(n.ovf) = " + "a" * 64, "garbage"])
def test_manifest_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(NodeimageError, match="manifest line 1"):
        parse_manifest(line + "\n")


def test_manifest_rejects_bad_digest() -> None:
    with pytest.raises(NodeimageError, match="not a SHA-256 hex digest for n.ovf"):
        render_manifest([("n.ovf", "XYZ")])
