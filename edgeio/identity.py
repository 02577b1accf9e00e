"""Whether two sets of machine facts describe one machine (docs/formats.md, "Machine facts").

A calibration is only used for the machine it was fitted on, and a campaign is only resumed
on the machine it began on: samples of two machines mixed in one campaign, or a prediction
made from another machine's fit, would be wrong without anyone seeing it.
"""

# Facts that identify a machine; memory with a tolerance (what the kernel reports moves a
# little between boots and kernels). A fact one side does not know is not a difference.
IDENTITY = ("host", "arch", "cpu_model", "cpus", "kvm")
MEMORY_TOLERANCE = 0.05


def differences(a: dict, b: dict) -> list[str]:
    """['host pi vs laptop', 'memory 3.7 GiB vs 15.5 GiB', ...]: a's value first."""
    a, b = a or {}, b or {}
    out = []
    for k in IDENTITY:
        x, y = a.get(k), b.get(k)
        if x not in (None, "") and y not in (None, "") and str(x) != str(y):
            out.append(f"{k} {x} vs {y}")
    ma, mb = a.get("memory_bytes"), b.get("memory_bytes")
    if _positive(ma) and _positive(mb) and abs(ma / mb - 1) > MEMORY_TOLERANCE:
        out.append(f"memory {ma / 2 ** 30:.1f} GiB vs {mb / 2 ** 30:.1f} GiB")
    return out


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
