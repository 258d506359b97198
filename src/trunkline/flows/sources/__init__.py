"""Flow sources: UDP collector, pcap/pcapng captures, CSV/Parquet flow logs, nfdump CSV."""
