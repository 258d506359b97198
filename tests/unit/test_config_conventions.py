"""The AWS conventions live once (config.py) and the mover's endpoint and the flow lake
both follow them: env keys outrank a profile, a named endpoint's env vars must both be
set, the region's order, path style for custom endpoints, profiles through botocore."""

from __future__ import annotations

import pytest

from trunkline.config import EndpointConfig, addressing_style, endpoint_region, env_keys
from trunkline.errors import StoreError
from trunkline.flows.lake import Lake
from trunkline.storage.s3 import S3Endpoint


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("TRUNKLINE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata: loopback only
    return tmp_path


def test_env_keys_and_their_order(no_aws, monkeypatch):
    cfg = EndpointConfig("s3")
    assert env_keys(cfg) is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    assert env_keys(cfg) == ("AK", "SK", None)
    assert env_keys(EndpointConfig("s3", profile="p")) is None  # a named profile: the chain
    named = EndpointConfig("b2", access_key_id_env="B2_ID", secret_access_key_env="B2_KEY")
    with pytest.raises(StoreError, match="B2_ID/B2_KEY are not set"):
        env_keys(named)
    monkeypatch.setenv("B2_ID", "x")
    monkeypatch.setenv("B2_KEY", "y")
    assert env_keys(named) == ("x", "y", None)


def test_region_and_addressing(no_aws, monkeypatch):
    asked = []
    assert endpoint_region(EndpointConfig("s3"), lambda: asked.append(1)) == "us-east-1"
    assert asked == [1]
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert endpoint_region(EndpointConfig("s3"), lambda: "ap-south-1") == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    assert endpoint_region(EndpointConfig("s3"), lambda: None) == "eu-north-1"
    assert endpoint_region(EndpointConfig("s3", region="us-west-004"), lambda: None) == \
        "us-west-004"
    assert addressing_style(EndpointConfig("s3", url="http://127.0.0.1:1")) == "path"
    assert addressing_style(EndpointConfig("s3")) == "virtual"
    assert addressing_style(EndpointConfig("s3", addressing_style="path")) == "path"


def test_a_profile_reaches_both_through_botocore(no_aws, monkeypatch):
    (no_aws / "credentials").write_text("[lake]\naws_access_key_id = PK\n"
                                        "aws_secret_access_key = PS\n")
    (no_aws / "config").write_text("[profile lake]\nregion = ca-central-1\n")
    monkeypatch.setenv("AWS_PROFILE", "lake")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    lake = Lake("s3://bucket/prefix")
    assert lake._current_keys() == ("PK", "PS", None)
    assert lake._region == "ca-central-1" and lake.base == "bucket/prefix"
    assert "PS" not in repr(lake)
    ep = S3Endpoint(lake.cfg)
    f = ep._creds.get_frozen_credentials()
    assert (f.access_key, f.secret_key, ep.region) == ("PK", "PS", "ca-central-1")
    monkeypatch.delenv("AWS_PROFILE")
    with pytest.raises(StoreError, match="no credentials"):
        Lake("s3://bucket/prefix")._current_keys()


@pytest.mark.parametrize("body,says", [
    ('url = "ftp://h"', "not an endpoint URL (http[s]://HOST[:PORT])"),
    ('url = 5', "url must be a string, not int"),
    ('url = "http://127.0.0.1:99999"', "Port out of range"),
    ('url = "http://127.0.0.1:9/bucket"', "no path, query or credentials"),
    ('url = "http://me:hunter2@127.0.0.1:9"', "no path, query or credentials"),
    ('url = "http://127.0.0.1:9"\naddressing_style = "odd"', 'must be "path" or "virtual"'),
    ('region = ["a"]', "region must be a string, not list"),
])
def test_a_wrong_endpoint_in_the_config_is_one_line_naming_it(no_aws, monkeypatch, body, says):
    """A wrong URL or value of a named endpoint was a traceback (a port past 65535, a
    number) or a lookup of a host it never named (ftp://h); a password in the URL is never
    printed."""
    from trunkline.config import resolve_endpoint
    from trunkline.url import LocationError

    cfg = no_aws / "t.toml"
    cfg.write_text(f"[endpoints.x]\n{body}\n")
    monkeypatch.setenv("TRUNKLINE_CONFIG", str(cfg))
    with pytest.raises(LocationError) as e:
        resolve_endpoint("x")
    assert says in str(e.value) and "[endpoints.x]" in str(e.value)
    assert "hunter2" not in str(e.value)


def test_a_wrong_aws_endpoint_url_is_one_line(no_aws, monkeypatch):
    from trunkline.config import resolve_endpoint
    from trunkline.url import LocationError

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:70000")
    with pytest.raises(LocationError, match="AWS_ENDPOINT_URL: .*Port out of range"):
        resolve_endpoint("s3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.example.com/")
    assert resolve_endpoint("s3").url == "https://s3.example.com/"
