"""The transfer engine: plan objects into parts, run them, resume them, verify them.

Integrity (checksums, ETags) and the resume journal are self-contained modules here so
that the scheduler, ``verify`` and ``sync`` share one implementation of each.
"""
