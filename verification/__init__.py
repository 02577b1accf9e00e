"""Verification: a scenario's fix predicted before it is built and measured, then judged.

The domain of `invoke verify` (edgeio/commands/verify.py runs it, report/verified.py shows it):

  plan         the fix as environment parameters (build, check_buildable), the interleaved
               baseline and fix cells (cells), the calibration campaign's plan (source_plan)
  predictions  predictions.csv: the model asked once (predict_cells), each cell written
               down with its configuration (prediction_table), read back only if its digest
               holds (load), a plan checked against it (check_plan)
  compare      comparison.csv from predictions and the cells' batches (compare): absolute
               error, the speed-up with intervals and direction, the drift check
  summary      the figures a verify is judged by (summarize, the JSON summary; drift_line)
  campaign     a verify campaign read back with its comparison recomputed (load, find)

Below the commands and the report, beside model/ and calibration/: nothing here imports
edgeio.commands or report.
"""
