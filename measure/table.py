"""The study's Tables 2 and 3 layout: for each size, ops down, environments across."""

import json

import pandas as pd

from edgeio.records import PRIMITIVES
from edgeio.units import format_size, format_time
from measure.plan import OPS


def study_table(summary: pd.DataFrame) -> str:
    """Mean time per op ± 95% CI half-width, one block per (target, size)."""
    if summary.empty:
        return "(no successful cells)"
    lines = []
    summary = summary.assign(env=[env_label(e, c) for e, c in zip(summary["env"], summary["config"])])
    for (target, size), block in summary.groupby(["target", "size_bytes"], sort=True):
        envs = list(dict.fromkeys(block["env"]))
        header = [f"{format_size(int(size))} [{target}]"] + envs
        rows = []
        for op in [o for o in OPS + PRIMITIVES if o in set(block["op"])]:
            row = [op]
            for env in envs:
                cell = block[(block["env"] == env) & (block["op"] == op)]
                if cell.empty:
                    row.append("-")
                    continue
                c = cell.iloc[0]
                half = (c["ci95_high_s"] - c["ci95_low_s"]) / 2
                text = format_time(c["mean_per_op_s"])
                row.append(text + (f" ±{format_time(half, 2)}" if half == half else ""))
            rows.append(row)
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        fmt = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                                  for i, (v, w) in enumerate(zip(r, widths)))
        lines += [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows] + [""]
    return "\n".join(lines).rstrip()


def env_label(env: str, config: str) -> str:
    """'hvt' or, with --param values, 'hvt[blocks_per_call=8]'."""
    params = json.loads(config) if isinstance(config, str) and config else {}
    return env + (f"[{','.join(f'{k}={v}' for k, v in sorted(params.items()))}]" if params else "")
