"""Endpoints: local filesystem and S3-compatible stores."""
