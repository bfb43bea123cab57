"""The settings (``config/np6.yaml``): how NP6 is reached."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from sync.config.files import Model, format_validation_error, read_yaml
from sync.errors import ConfigError


class Timeouts(Model):
    connect: Annotated[float, Field(gt=0)] = 5.0
    read: Annotated[float, Field(gt=0)] = 60.0
    # Until a request of the run is answered, NP6 is given up on after this many seconds
    # (a wrong base_url, DNS, a firewall); once it has answered, retries go on as set.
    first_contact: Annotated[float, Field(gt=0)] = 10.0


class RetryConfig(Model):
    max_attempts: Annotated[int, Field(ge=1)] = 8
    initial_wait: Annotated[float, Field(ge=0)] = 0.5
    max_wait: Annotated[float, Field(ge=0)] = 60.0
    max_retry_after: Annotated[float, Field(ge=0)] = 300.0
    # No retry sleeps past this many seconds after the run started.
    deadline: Annotated[float, Field(gt=0)] = 3600.0


class Settings(Model):
    # The key would travel in clear over plain http: only to loopback, unless this says so.
    # (Declared before base_url, whose check reads it.)
    allow_plain_http: bool = False
    base_url: str = "https://api-cm.np6.com"
    api_key_env: str = "NP6_API_KEY"
    timeouts: Timeouts = Timeouts()
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    max_requests_per_second: Annotated[float, Field(gt=0)] = 10.0
    retry: RetryConfig = RetryConfig()
    # Accept header sent with unicity values; older NP6 docs use
    # application/vnd.mperf.v8.unicity. None sends application/json.
    unicity_media_type: str | None = None
    # Whether the account matches unicity values whatever their case (not documented;
    # e-mail matching commonly does). True is the safe assumption: a leaving key equal
    # to a kept one but for case keeps their contact. `np6-sync check` tells which.
    unicity_folds_case: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL, for example https://api-cm.np6.com")
        url = urlsplit(value)
        plain = url.scheme.lower() == "http"
        if plain and not info.data.get("allow_plain_http") and not _loopback(url):
            raise ValueError(
                f"plain http to {url.hostname} would send the API key in clear: "
                "use https, or set allow_plain_http: true"
            )
        return value.rstrip("/")


def _loopback(url: SplitResult) -> bool:
    host = (url.hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(path: str | Path | None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from the YAML file (or defaults), then NP6_BASE_URL from the environment."""
    environ = dict(os.environ) if environ is None else environ
    data = read_yaml(Path(path)) if path is not None else {}
    if environ.get("NP6_BASE_URL"):
        data = {**data, "base_url": environ["NP6_BASE_URL"]}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        if environ.get("NP6_BASE_URL"):  # the value came from the environment, not the file
            problems = [
                p.replace("base_url:", "base_url (from NP6_BASE_URL):", 1) for p in problems
            ]
        raise ConfigError(str(path or "settings"), problems) from None
