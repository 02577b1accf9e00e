"""Measurement side: targets, environments, the campaign engine and `invoke measure`."""
