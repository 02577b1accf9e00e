"""The guest builder: Debian packages, module dependencies, initramfs, disk image, cache keys.

These use the real packages (apt-get download, cached in the repo's .cache) and the
real tools (cpio, debugfs), but boot nothing. The guest is the host's arch (x86_64 or
aarch64: both kernels carry the same modules for the three transports).
"""

import gzip
import shutil
import subprocess

import pytest

from edgeio.errors import UserError
from measure.guest import build_guest, disk_image, min_image_bytes
from measure.guest.initramfs import FS_MODULES, TRANSPORT_MODULES, module_order
from measure.guest.packages import check_available, fetch_kernel
from tests.conftest import DEB_ARCH, FOREIGN_ARCH, HOST_ARCH, needs_host_arch

MiB = 1 << 20


@pytest.fixture(scope="module")
def guest():
    return build_guest(HOST_ARCH)


@pytest.fixture(scope="module")
def kernel():
    return fetch_kernel(HOST_ARCH)


def _cpio_list(initrd) -> list[str]:
    raw = gzip.decompress(initrd.read_bytes())
    proc = subprocess.run(["cpio", "-t", "-v", "--quiet"], input=raw, capture_output=True, check=True)
    return proc.stdout.decode().splitlines()


def test_module_order_puts_dependencies_first(kernel):
    order = [name for name, _ in module_order(kernel.modules, FS_MODULES + TRANSPORT_MODULES["ahci"])]
    # ext4 needs jbd2 and mbcache; ahci needs libahci, libata and scsi_mod: all before their users
    for dep, user in (("jbd2", "ext4"), ("mbcache", "ext4"), ("libata", "ahci"),
                      ("libahci", "ahci"), ("scsi_mod", "libata"), ("scsi_mod", "sd_mod")):
        assert order.index(dep) < order.index(user), order
    assert len(order) == len(set(order))


def test_module_order_names_a_missing_module(kernel):
    with pytest.raises(UserError, match="no module no_such_driver"):
        module_order(kernel.modules, ["no_such_driver"])


def test_initramfs_holds_init_busybox_probe_console_and_modules(guest):
    listing = _cpio_list(guest.initrd)
    names = {line.split()[-1] for line in listing}
    assert {"init", "bin/busybox", "probe", "dev/console"} <= names
    console = next(line for line in listing if line.endswith(" dev/console")).split()
    assert console[0].startswith("c") and console[4:6] == ["5,", "1"]   # char device 5,1
    for module in ("virtio_blk", "virtio_pci", "ext4", "crc32c_generic", "ahci", "ata_piix", "sd_mod"):
        assert f"modules/{module}.ko" in names
    assert set(guest.transports) == {"virtio", "ide", "ahci"}


def test_init_loads_modules_in_dependency_order(guest):
    raw = gzip.decompress(guest.initrd.read_bytes())
    init = subprocess.run(["cpio", "-i", "--to-stdout", "--quiet", "init"], input=raw,
                          capture_output=True, check=True).stdout.decode()
    assert "@@MODULES" not in init
    virtio = init.split('virtio) modules="', 1)[1].split('"', 1)[0].split()
    if HOST_ARCH == "x86_64":       # a module there; built into Debian's arm64 kernel
        assert virtio.index("virtio_blk") > virtio.index("virtio_ring")
    assert virtio.index("ext4") > virtio.index("jbd2")
    assert "crc32c_generic" in virtio


@needs_host_arch("x86_64", "the PVH entry point exists only in x86_64 kernels")
def test_x86_kernel_is_the_uncompressed_pvh_elf(guest):
    assert guest.boot == "pvh"
    assert guest.kernel.read_bytes()[:4] == b"\x7fELF"


def test_guest_is_cached_and_rebuilt_when_the_probe_changes(guest, tmp_path):
    from measure.probe_build import probe_binary
    again = build_guest(HOST_ARCH)
    assert again.initrd == guest.initrd
    changed = tmp_path / "probe"
    changed.write_bytes(probe_binary(HOST_ARCH).read_bytes() + b"\0")
    other = build_guest(HOST_ARCH, probe=changed)
    try:
        assert other.initrd != guest.initrd
        assert other.kernel.read_bytes() == guest.kernel.read_bytes()
    finally:
        shutil.rmtree(other.initrd.parent)


def test_disk_image_holds_the_file_as_real_blocks():
    image = disk_image(64 * 1024)
    assert image == disk_image(64 * 1024)          # cached
    stat = subprocess.run(["debugfs", "-R", "stat /data", str(image)], capture_output=True, text=True)
    assert "Size: 65536" in stat.stdout
    dump = subprocess.run(["debugfs", "-R", "cat /data", str(image)], capture_output=True)
    assert len(dump.stdout) == 65536 and b"\0" not in dump.stdout   # no holes: reads hit the device
    block = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True).stdout
    assert "Block size:               4096" in block


def test_disk_image_too_small_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        disk_image(16 * MiB, image_bytes=8 * MiB)
    assert min_image_bytes(16 * MiB) > 16 * MiB


def test_missing_kernel_package_names_the_command(tmp_path, monkeypatch):
    # A machine where apt knows no packages (like one that never ran dpkg --add-architecture arm64):
    # a foreign arch's fix adds the arch, the host's own is an apt-get update.
    lists = tmp_path / "lists"
    (lists / "partial").mkdir(parents=True)
    (tmp_path / "status").touch()
    conf = tmp_path / "apt.conf"
    conf.write_text(f'Dir::State::Lists "{lists}";\nDir::Cache "{tmp_path}/cache";\n'
                    f'Dir::State::status "{tmp_path}/status";\n')
    monkeypatch.setenv("APT_CONFIG", str(conf))
    monkeypatch.setenv("EDGEIO_CACHE", str(tmp_path / "cache-edgeio"))
    with pytest.raises(UserError) as e:
        check_available(FOREIGN_ARCH)
    foreign = DEB_ARCH[FOREIGN_ARCH]
    assert f"linux-image-{foreign}:{foreign}" in str(e.value)
    assert f"dpkg --add-architecture {foreign} && apt-get update" in str(e.value)
    with pytest.raises(UserError, match="run `apt-get update`"):
        fetch_kernel(HOST_ARCH)


def test_unknown_kernel_package_is_a_user_error():
    with pytest.raises(UserError, match=f"linux-image-edgeio-nonexistent:{DEB_ARCH[HOST_ARCH]}"):
        fetch_kernel(HOST_ARCH, package="linux-image-edgeio-nonexistent")
