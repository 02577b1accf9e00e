"""SimPy model of the storage I/O path of lightweight execution environments.

  SCENARIOS                       what-if scenarios (name -> Scenario)
  predict(calibration, scenario, params) -> DataFrame
  simulate(params, env, workload) -> CellResult   one cell (time per op, cost ledger)
  STUDY                           the study's environments as compositions of stages
"""

from model.environments import STUDY, EnvConfig
from model.params import SPECS, Params
from model.predict import predict
from model.scenarios import SCENARIOS, Scenario
from model.simulate import CellResult, Simulator, Workload, simulate

__all__ = ["SCENARIOS", "Scenario", "predict", "simulate", "Simulator", "Workload", "CellResult",
           "STUDY", "EnvConfig", "SPECS", "Params"]
