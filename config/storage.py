"""Where files live: the ``STORAGES`` setting built from environment variables.

``BLINDSPOT_STORAGE=filesystem`` (the default) keeps stimuli and checkpoints under ``var/``;
``BLINDSPOT_STORAGE=s3`` puts stimulus images (and, if asked, checkpoints) in a private S3 bucket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

S3_BACKEND = "storages.backends.s3.S3Storage"
BACKENDS = ("filesystem", "s3")
DEFAULT_PREFIX = "blindspot"
# Presigned URLs are a staff convenience (workers get data: URIs); five minutes is plenty.
URL_EXPIRE_SECONDS = 300
_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def _value(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _prefix(env: Mapping[str, str], name: str, default: str) -> str:
    """A key prefix without surrounding slashes; blank means ``default``."""
    prefix = _value(env, name).strip("/") or default
    if not _PREFIX.fullmatch(prefix) or ".." in prefix.split("/"):
        raise ImproperlyConfigured(
            f"{name}={prefix!r} is not a key prefix (letters, digits, '.', '_', '-' and '/')"
        )
    return prefix


def s3_storage_options(env: Mapping[str, str], *, location: str | None = None) -> dict[str, Any]:
    """``S3Storage`` OPTIONS from ``BLINDSPOT_S3_*`` variables (``location`` replaces the prefix).

    No credentials here: boto3's standard chain (environment, profile, role) supplies them.
    """
    bucket = _value(env, "BLINDSPOT_S3_BUCKET")
    if not bucket:
        raise ImproperlyConfigured("BLINDSPOT_S3_BUCKET must be set when BLINDSPOT_STORAGE=s3")
    region = _value(env, "BLINDSPOT_S3_REGION") or _value(env, "AWS_DEFAULT_REGION")
    return {
        "bucket_name": bucket,
        "location": location or _prefix(env, "BLINDSPOT_S3_PREFIX", DEFAULT_PREFIX),
        "region_name": region or None,
        "endpoint_url": _value(env, "BLINDSPOT_S3_ENDPOINT_URL") or None,
        # No ACL header: objects stay private to the bucket owner, and buckets with ACLs
        # disabled (the AWS default since 2023) accept the upload.
        "default_acl": None,
        "file_overwrite": False,
        "querystring_auth": True,
        "querystring_expire": URL_EXPIRE_SECONDS,
        "signature_version": "s3v4",  # botocore may still presign with SigV2 otherwise
        "object_parameters": {"CacheControl": "private"},
    }


def storages_from_env(
    env: Mapping[str, str], *, var_dir: Path, s3_artifacts: bool = False
) -> dict[str, dict[str, Any]]:
    """The whole ``STORAGES`` dict: the chosen backend, then the ``BLINDSPOT_STORAGES`` override.

    ``s3_artifacts`` (``BLINDSPOT_S3_ARTIFACTS=1``) also puts checkpoints in the bucket, under
    ``BLINDSPOT_S3_ARTIFACTS_PREFIX`` (default: the stimulus prefix + ``-artifacts``).
    """
    backend = _value(env, "BLINDSPOT_STORAGE").lower() or "filesystem"
    if backend not in BACKENDS:
        raise ImproperlyConfigured(
            f"BLINDSPOT_STORAGE={backend!r} is not supported (use {' or '.join(BACKENDS)})"
        )
    if s3_artifacts and backend != "s3":
        raise ImproperlyConfigured("BLINDSPOT_S3_ARTIFACTS=1 needs BLINDSPOT_STORAGE=s3")
    storages: dict[str, dict[str, Any]] = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(var_dir / "artifacts"), "base_url": None},
        },
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    }
    if backend == "s3":
        stimuli = s3_storage_options(env)
        storages["default"] = {"BACKEND": S3_BACKEND, "OPTIONS": stimuli}
        if s3_artifacts:
            name = "BLINDSPOT_S3_ARTIFACTS_PREFIX"
            location = _prefix(env, name, f"{stimuli['location']}-artifacts")
            if location == stimuli["location"]:
                raise ImproperlyConfigured(f"{name} must differ from BLINDSPOT_S3_PREFIX")
            storages["artifacts"] = {
                "BACKEND": S3_BACKEND,
                "OPTIONS": s3_storage_options(env, location=location),
            }
    try:
        storages.update(json.loads(env.get("BLINDSPOT_STORAGES", "") or "{}"))
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"BLINDSPOT_STORAGES is not valid JSON: {exc}") from exc
    return storages
