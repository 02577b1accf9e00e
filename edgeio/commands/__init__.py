"""One module per command (measure, calibrate, predict, report); tasks.py wires them to invoke."""
