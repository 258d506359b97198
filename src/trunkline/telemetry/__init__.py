"""Transfer and connection records, the progress display, and flow export."""
