"""Turning the command's arguments into what the report shows, with one-line errors."""

from dataclasses import dataclass, field
import sys
from pathlib import Path

from edgeio.errors import UserError
from report import data


@dataclass
class Inputs:
    sources: list
    calibration: object = None
    scenarios: dict = field(default_factory=dict)
    comparison: tuple | None = None       # ("env" | "source", a, b)
    verified: list = field(default_factory=list)   # report.verified.Verified, one per verify campaign


def gather(campaigns=None, reference: bool = False, calibration=None, compare=None,
           verify=None) -> Inputs:
    campaigns = list(campaigns or [])
    if not campaigns and not reference:
        campaigns = [data.newest_campaign()]
    sources = []
    seen = set()
    for c in campaigns:
        path = Path(c).resolve() if Path(c).exists() else Path(c)
        if path in seen:
            continue
        seen.add(path)
        sources.append(data.load_campaign(path))
    if len({s.name for s in sources}) < len(sources):
        for i, s in enumerate(sources):        # same directory names: tell them apart
            s.name = f"{s.name}#{i + 1}"
            s.summary = s.summary.assign(source=s.name)
            s.samples = s.samples.assign(source=s.name)
    if reference:
        sources.append(data.load_reference())
    comparison = resolve_compare(compare, sources) if compare else None
    # No --calibration: the newest one `invoke calibrate` saved, so the main job's report
    # shows the model without being told where it is.
    calibration = calibration or data.newest_calibration()
    cal = data.load_calibration(calibration) if calibration else None
    scenarios = data.scenarios() if cal is not None else {}
    return Inputs(sources, cal, scenarios, comparison, verified_inputs(verify, sources, calibration))


def verified_inputs(verify, sources, calibration) -> list:
    """Verify campaigns to show: those given (--verify, or given as --campaign); else those
    under results/verify whose predictions came from the report's calibration."""
    from report import verified
    from verification.campaign import Unfinished
    given = [Path(v) for v in verify or []]
    given += [s.path for s in sources if s.kind == "campaign" and "verify" in s.metadata]
    if given:
        return [verified.load(p) for p in dict.fromkeys(given)]
    out = []
    want = str(Path(calibration).resolve()) if calibration else None
    for p in verified.find():
        try:
            v = verified.load(p)
        except Unfinished:
            continue          # an unfinished verify: --verify DIR names the reason
        except UserError as e:
            # found, not asked for: say why it is left out (a comparison.csv that the cell
            # records contradict is never shown) and report the rest
            print(f"warning: verify campaign left out: {e}", file=sys.stderr)
            continue
        if want is None or str(Path(v.verify.get("calibration", "")).resolve()) == want:
            out.append(v)
    return out


def resolve_compare(items, sources) -> tuple:
    """Two environments present in the report, or two sources (campaign dirs, names, 'study')."""
    items = [str(i) for i in items]
    if len(items) != 2:
        raise UserError(f"--compare takes exactly two campaigns or two environments, got {len(items)}")
    a, b = items
    if a == b:
        raise UserError(f"--compare needs two different things, got {a!r} twice")
    envs = set()
    for s in sources:
        envs |= set(s.summary["env"]) if len(s.summary) else set()
    if a in envs and b in envs:
        return ("env", a, b)
    names = [find_source(i, sources) for i in items]
    return ("source", names[0], names[1])


def find_source(item: str, sources) -> str:
    for s in sources:
        if item == s.name or (s.path is not None and Path(item).exists()
                              and Path(item).resolve() == s.path.resolve()):
            return s.name
    if item == data.REFERENCE_NAME:
        ref = data.load_reference()
        sources.append(ref)
        return ref.name
    if Path(item).is_dir():
        src = data.load_campaign(item)
        if src.name in {s.name for s in sources}:
            src.name = f"{src.name}#{len(sources) + 1}"
            src.summary = src.summary.assign(source=src.name)
            src.samples = src.samples.assign(source=src.name)
        sources.append(src)
        return src.name
    raise UserError(f"--compare {item}: neither an environment in the report nor a campaign directory "
                    f"(nor '{data.REFERENCE_NAME}')")
