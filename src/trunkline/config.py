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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import StoreError
from .url import LocationError


@dataclass(frozen=True)
class EndpointConfig:
    """One named endpoint of the config file: where it is and where its keys come from."""

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


def default_state_dir() -> Path:
    """TRUNKLINE_STATE_DIR, else $XDG_STATE_HOME/trunkline, else ~/.local/state/trunkline."""
    env = os.environ.get("TRUNKLINE_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "trunkline"
    return Path.home() / ".local" / "state" / "trunkline"


_parsed: dict[tuple, dict[str, EndpointConfig]] = {}
"""Parsed config files by (path, inode, size, mtime): the CLI's early connection and the
run's endpoints both resolve names, and a file read once stays read until it changes."""


def load_named_endpoints(path: Path | None = None) -> dict[str, EndpointConfig]:
    path = path or config_path()
    try:
        st = path.stat()
    except OSError:
        return {}
    if not path.is_file():
        return {}
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _parsed:
        if len(_parsed) >= 8:   # files that keep changing: keep the memory bounded
            _parsed.clear()
        _parsed[key] = _parse_endpoints(path)
    return dict(_parsed[key])


def _parse_endpoints(path: Path) -> dict[str, EndpointConfig]:
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
        where = f"{path}: [endpoints.{name}]"
        for k, v in sect.items():
            if not isinstance(v, str):
                raise LocationError(f"{where} {k} must be a string, not {type(v).__name__}")
        if sect.get("addressing_style") not in (None, "path", "virtual"):
            raise LocationError(f"{where} addressing_style must be \"path\" or \"virtual\"")
        if "url" in sect:
            check_endpoint_url(sect["url"], f"{where} url")
        out[name] = EndpointConfig(name=name, **sect)
    return out


def check_endpoint_url(url: str, where: str) -> str:
    """``url`` if it can name an S3 endpoint: http or https, a host, a port that is one,
    no path, query or credentials (a request is signed for host and path; a user:password
    would be printed in messages). ``LocationError`` naming ``where`` otherwise: a wrong
    URL was a traceback (a port past 65535) or a lookup of a host it never named."""
    u = urlsplit(url)
    shown = repr(url) if "@" not in u.netloc else \
        repr(u._replace(netloc="***@" + u.netloc.rsplit("@", 1)[1]).geturl())
    try:
        u.port   # noqa: B018 - the property checks the port
    except ValueError as e:
        raise LocationError(f"{where}: {shown} is not an endpoint URL ({e})") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise LocationError(f"{where}: {shown} is not an endpoint URL (http[s]://HOST[:PORT])")
    if u.path not in ("", "/") or u.query or u.fragment or "@" in u.netloc:
        raise LocationError(f"{where}: {shown}: an endpoint URL is http[s]://HOST[:PORT] "
                            "only (no path, query or credentials)")
    return url


def resolve_endpoint(name: str) -> EndpointConfig:
    """The endpoint config for a location's endpoint name ("s3" = AWS conventions)."""
    named = load_named_endpoints()
    if name in named:
        return named[name]
    if name == "s3":
        var = "AWS_ENDPOINT_URL_S3" if os.environ.get("AWS_ENDPOINT_URL_S3") else \
            "AWS_ENDPOINT_URL"
        url = os.environ.get(var)
        if url:
            check_endpoint_url(url, var)
        # AWS_PROFILE is left to botocore, so that env keys outrank it as in the AWS CLI
        return EndpointConfig(name="s3", url=url or None)
    raise LocationError(
        f"unknown endpoint {name!r}: define [endpoints.{name}] in {config_path()} "
        f"or use s3://bucket/key"
    )


# --- the AWS conventions every S3 client of trunkline follows (the mover's endpoint and
# --- the flow lake's filesystem): one place for each rule -------------------------------

def endpoint_address(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an endpoint URL: the port its scheme implies when the URL
    names none. Shared by the endpoint and the CLI's early connection, which must agree."""
    u = urlsplit(url)
    return u.scheme, u.hostname or "localhost", u.port or (443 if u.scheme == "https" else 80)


def ca_bundle(cfg: EndpointConfig) -> str | None:
    """The PEM file of the CAs to trust for ``cfg`` (a private CA), None for the system's:
    the endpoint's ``ca_bundle``, else ``AWS_CA_BUNDLE`` (botocore's convention)."""
    return cfg.ca_bundle or os.environ.get("AWS_CA_BUNDLE") or None


def env_keys(cfg: EndpointConfig) -> tuple[str, str, str | None] | None:
    """(access key, secret, session token) named without botocore, or None: ask the chain.

    A named endpoint's ``access_key_id_env``/``secret_access_key_env`` (both must be set);
    else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` unless the endpoint names a
    profile (env keys are the first link of the AWS chain and outrank ``AWS_PROFILE``, as
    in the AWS CLI). Anything else (profiles, SSO, instance roles) is botocore's chain.
    """
    if cfg.access_key_id_env or cfg.secret_access_key_env:
        access = os.environ.get(cfg.access_key_id_env or "")
        secret = os.environ.get(cfg.secret_access_key_env or "")
        if not access or not secret:
            raise StoreError(0, "NoCredentials",
                             f"endpoint {cfg.name!r}: env vars {cfg.access_key_id_env}/"
                             f"{cfg.secret_access_key_env} are not set")
        return access, secret, None
    if not cfg.profile and os.environ.get("AWS_ACCESS_KEY_ID") and \
            os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                os.environ.get("AWS_SESSION_TOKEN") or None)
    return None


def endpoint_region(cfg: EndpointConfig, profile_region: Callable[[], str | None]) -> str:
    """The signing region: the endpoint's, AWS_REGION, AWS_DEFAULT_REGION, the profile's
    (``profile_region``, called only when needed: it loads botocore), else us-east-1."""
    return (cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            or profile_region() or "us-east-1")


def addressing_style(cfg: EndpointConfig) -> str:
    """``path`` for a custom endpoint URL (most S3-compatible stores need it), else AWS's
    ``virtual``; a named endpoint's ``addressing_style`` overrides both."""
    return cfg.addressing_style or ("path" if cfg.url else "virtual")


def no_credentials(cfg: EndpointConfig) -> StoreError:
    return StoreError(0, "NoCredentials", f"no credentials found for endpoint {cfg.name!r}")
