"""The campaign engine: run a plan's cells, store each as soon as it exists."""

import time
import traceback

from edgeio import store
from edgeio.errors import UserError
from measure.environments.base import CellFailed


def run(campaign: store.Campaign, plan: list[dict], environments: dict, cell_timeout: float | None = None,
        on_cell=None) -> dict:
    """Run every cell of `plan` not yet recorded in `campaign`.

    environments maps (env name, target name) to a prepared Environment.
    on_cell(cell, record) is called after each cell is stored (progress display).
    Returns counts: {"ok": n, "failed": n, "skipped": n}.
    """
    done = campaign.records()
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for cell in plan:
        if cell["cell_id"] in done:
            counts["skipped"] += 1
            continue
        env = environments[(cell["env"], cell["target"])]
        started = store.now_iso()
        t0 = time.monotonic()
        try:
            result = env.run(cell, timeout=cell_timeout)
            record = campaign.record_cell(cell, "ok", result.probe, result.metadata, log=result.log,
                                          started=started, wall_seconds=time.monotonic() - t0)
            counts["ok"] += 1
        except (CellFailed, TimeoutError) as e:
            record = campaign.record_cell(cell, "failed", None, {}, log=getattr(e, "log", ""),
                                          error=str(e), started=started,
                                          wall_seconds=time.monotonic() - t0)
            counts["failed"] += 1
        except UserError:
            raise
        except Exception as e:  # a bug in an environment must not lose the campaign
            record = campaign.record_cell(cell, "failed", None, {}, log=traceback.format_exc(),
                                          error=f"internal error: {e}", started=started)
            counts["failed"] += 1
        if on_cell:
            on_cell(cell, record)
    return counts
