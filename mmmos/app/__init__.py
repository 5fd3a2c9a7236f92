"""Application layer: the CLI, report, predictor, scoring command and demo. Nothing below imports it."""
