"""Endpoints and credentials: AWS conventions first, then named endpoints from a TOML file.

``s3://`` uses the AWS chain (AWS_ENDPOINT_URL[_S3], AWS_PROFILE, ~/.aws/config and
credentials, env keys) through botocore. ``NAME:bucket/key`` uses ``[endpoints.NAME]``
from ``$TRUNKLINE_CONFIG`` or ``~/.config/trunkline/config.toml``::

    [endpoints.b2]
    url = "https://s3.us-west-004.backblazeb2.com"
    region = "us-west-004"
    profile = "b2"                 # credentials from an AWS profile, or:
    access_key_id_env = "B2_KEY_ID"
    secret_access_key_env = "B2_APP_KEY"
    addressing_style = "path"      # or "virtual"

Secrets never appear in reprs, logs or errors: ``EndpointConfig`` keeps only the profile
or env var *names*; botocore resolves the values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .url import LocationError


@dataclass(frozen=True)
class EndpointConfig:
    name: str
    url: str | None = None            # None: AWS's regional endpoint
    region: str | None = None
    profile: str | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    addressing_style: str | None = None   # path | virtual | None (auto)
    ca_bundle: str | None = None          # PEM file of a private CA (else AWS_CA_BUNDLE)


def config_path() -> Path:
    env = os.environ.get("TRUNKLINE_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "trunkline" / "config.toml"


def load_named_endpoints(path: Path | None = None) -> dict[str, EndpointConfig]:
    path = path or config_path()
    if not path.is_file():
        return {}
    import tomllib  # only where a config file exists (start-up of a short copy)

    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise LocationError(f"{path}: invalid TOML: {e}") from None
    out: dict[str, EndpointConfig] = {}
    for name, sect in (data.get("endpoints") or {}).items():
        if not isinstance(sect, dict):
            raise LocationError(f"{path}: [endpoints.{name}] must be a table")
        allowed = set(EndpointConfig.__dataclass_fields__) - {"name"}
        unknown = set(sect) - allowed
        if unknown:
            raise LocationError(f"{path}: [endpoints.{name}] unknown keys {sorted(unknown)}")
        out[name] = EndpointConfig(name=name, **sect)
    return out


def resolve_endpoint(name: str) -> EndpointConfig:
    """The endpoint config for a location's endpoint name ("s3" = AWS conventions)."""
    named = load_named_endpoints()
    if name in named:
        return named[name]
    if name == "s3":
        url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # AWS_PROFILE is left to botocore, so that env keys outrank it as in the AWS CLI
        return EndpointConfig(name="s3", url=url or None)
    raise LocationError(
        f"unknown endpoint {name!r}: define [endpoints.{name}] in {config_path()} "
        f"or use s3://bucket/key"
    )
