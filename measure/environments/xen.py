"""xen: detected, not yet driven. There is no Xen hypervisor on the machines we test on."""

from measure.environments.base import Environment, Unavailable


class XenEnvironment(Environment):
    name = "xen"
    description = "Xen guest"
    params_spec = {}

    def check(self):
        caps = self.target.read_text("/proc/xen/capabilities")
        if caps is None:
            raise Unavailable("xen: no Xen hypervisor on this target (/proc/xen/capabilities absent)")
        raise Unavailable("xen: Xen detected, but driving Xen guests is not implemented in this version")
