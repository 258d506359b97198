"""The thin command layer: parse flags, call the Python API, print. No logic lives here."""
