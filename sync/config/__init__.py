"""Job and settings models, with their YAML files.

``load_job`` and ``load_settings`` validate a YAML file once, at load, and report every
problem at once with its YAML path (``targets.columns[1]: ...``): the job file's models in
``job``, the settings in ``settings``, reading the files and naming problems in ``files``.
"""

from __future__ import annotations

from sync.config.files import format_validation_error, job_identity, read_yaml
from sync.config.job import (
    SOURCE_SCHEMES,
    STATE_SCHEMES,
    Job,
    NormalizationConfig,
    RejectsConfig,
    SourceConfig,
    StateConfig,
    SyncConfig,
    TargetsConfig,
    Transform,
    infer_format,
    load_job,
)
from sync.config.settings import RetryConfig, Settings, Timeouts, load_settings

__all__ = [
    "SOURCE_SCHEMES",
    "STATE_SCHEMES",
    "Job",
    "NormalizationConfig",
    "RejectsConfig",
    "RetryConfig",
    "Settings",
    "SourceConfig",
    "StateConfig",
    "SyncConfig",
    "TargetsConfig",
    "Timeouts",
    "Transform",
    "format_validation_error",
    "infer_format",
    "job_identity",
    "load_job",
    "load_settings",
    "read_yaml",
]
