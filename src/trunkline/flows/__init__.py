"""The flow lens: flow telemetry in, enriched and classified flows and a report out.

Public API (imported lazily, so ``import trunkline.flows`` stays cheap)::

    from trunkline.flows import FlowStore, FlowDecoder, Enricher, Quarter, write_report
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "FLOW_SCHEMA": ".schema",
    "FlowStore": ".store",
    "FlowDecoder": ".decode.decoder",
    "Enricher": ".enrich",
    "Taxonomy": ".enrich.taxonomy",
    "Quarter": ".stats",
    "ElephantThresholds": (".elephants", "Thresholds"),
    "find_elephants": (".elephants", "find"),
    "write_report": ".report",
    "simulate": ".simulate",
    "send_ipfix": "trunkline.telemetry.ipfix_export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    spec = _EXPORTS.get(name)
    if spec is None:
        raise AttributeError(f"module 'trunkline.flows' has no attribute {name!r}")
    mod, attr = spec if isinstance(spec, tuple) else (spec, name)
    return getattr(import_module(mod, __name__), attr)
