"""Registry of environments: name -> 'module:Class', imported only when used."""

import importlib

from edgeio.errors import UserError

ENVIRONMENTS = {
    "linux": "measure.environments.linux:LinuxEnvironment",
    "docker": "measure.environments.docker:DockerEnvironment",
    "qemu": "measure.environments.qemu:QemuEnvironment",
    "hvt": "measure.environments.hvt:HvtEnvironment",
    "xen": "measure.environments.xen:XenEnvironment",
}


def environment_class(name: str):
    if name not in ENVIRONMENTS:
        raise UserError(f"unknown env {name!r}: choose from {', '.join(ENVIRONMENTS)} or all")
    module, cls = ENVIRONMENTS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise UserError(f"env {name}: not implemented in this version") from None
        raise
