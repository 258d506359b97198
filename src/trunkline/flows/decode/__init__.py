"""Sans-I/O flow decoders: NetFlow v5/v9, IPFIX, sFlow v5 -> FLOW_SCHEMA Arrow tables."""

from .counters import Counters, DecodeError
from .decoder import FlowDecoder, decode_packets
from .template import TemplateCache

__all__ = ["Counters", "DecodeError", "FlowDecoder", "TemplateCache", "decode_packets"]
