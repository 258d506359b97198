"""The flow lens: flow telemetry in, enriched and classified flows and a report out."""
