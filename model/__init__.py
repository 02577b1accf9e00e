"""SimPy model of the storage I/O path of lightweight execution environments.

  SCENARIOS                       what-if scenarios (name -> Scenario)
  predict(calibration, scenario, params) -> DataFrame
  simulate(params, env, workload) -> CellResult   one cell (time per op, cost ledger)
  predict_cells(calibration, cells, draws) -> DataFrame   cells as run (INTERFACES.md)
  config_for(env, config, machine) -> EnvConfig   a cell's environment, as it ran
  study() -> {env: EnvConfig}      the study's environments on its Pi 4 (machine profile)
"""

from model.environments import ENVS, EnvConfig, config_for, study
from model.params import SPECS, Params
from model.predict import predict, predict_cells
from model.scenarios import SCENARIOS, Scenario
from model.simulate import CellResult, Simulator, Workload, simulate

__all__ = ["SCENARIOS", "Scenario", "predict", "predict_cells", "simulate", "Simulator", "Workload",
           "CellResult", "ENVS", "study", "config_for", "EnvConfig", "SPECS", "Params"]
