"""Stimulus images on S3 (``BLINDSPOT_STORAGE=s3``), against moto's in-process S3.

STORAGES comes from ``config.storage.storages_from_env``, the function settings.py calls, so
these tests run the configuration a deployment gets; only the environment is fake.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.test import Client, override_settings
from django.urls import reverse
from moto import mock_aws

from annotate.models import Item
from annotate.stimuli.imaging import canonical_png
from config.storage import S3_BACKEND, s3_storage_options, storages_from_env
from tests.annotate.factories import make_model_row, make_set, make_study, png_bytes

REPO = Path(__file__).resolve().parents[3]
BUCKET = "blindspot-moto-bucket"
REGION = "eu-west-1"
ENV = {"BLINDSPOT_STORAGE": "s3", "BLINDSPOT_S3_BUCKET": BUCKET, "BLINDSPOT_S3_REGION": REGION}
KEY = re.compile(r"blindspot/stimuli/[A-Za-z0-9_-]{22}\.png")  # prefix / upload_to / opaque key


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials in the environment; no shared AWS config or credentials file is read."""
    for name in ("AWS_PROFILE", "AWS_S3_ACCESS_KEY_ID", "AWS_S3_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


@pytest.fixture
def s3(aws_env, tmp_path):
    """A moto bucket, and STORAGES exactly as settings.py builds it for ``ENV``."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        with override_settings(STORAGES=storages_from_env(ENV, var_dir=tmp_path)):
            yield client


def bucket_keys(client) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def s3_body(client, image) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=f"blindspot/{image.name}")["Body"].read()


@pytest.mark.django_db
def test_stimulus_pngs_land_in_the_bucket_under_the_prefix_with_random_names(s3):
    model = make_model_row(name="secret-model")
    stimuli = list(make_set(6, name="secret-set", model=model).stimuli.order_by("source_index"))
    keys = bucket_keys(s3)
    assert sorted(keys) == sorted(f"blindspot/{s.image.name}" for s in stimuli)
    assert len(set(keys)) == 6 and all(KEY.fullmatch(k) for k in keys), keys
    for stim in stimuli:
        head = s3.get_object(Bucket=BUCKET, Key=f"blindspot/{stim.image.name}")
        assert head["Body"].read() == png_bytes(stim.source_index)
        assert head["CacheControl"] == "private"
        grants = s3.get_object_acl(Bucket=BUCKET, Key=f"blindspot/{stim.image.name}")["Grants"]
        assert all(g["Grantee"]["Type"] == "CanonicalUser" for g in grants)  # no public group
    assert not Path(django_settings.MEDIA_ROOT).exists()  # nothing went to the local disk


@pytest.mark.django_db
def test_worker_payload_inlines_the_s3_objects_and_names_no_storage(s3):
    study = make_study(n_assignments=2, size=5)
    client = Client(enforce_csrf_checks=True)
    r = client.post(
        f"/api/work/studies/{study.key}/lease",
        data=json.dumps({"worker_id": "w-s3"}),
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    token = r.json()["token"]
    response = client.get(f"/api/work/{token}")
    assert response.status_code == 200, response.content
    items = response.json()["items"]
    assert len(items) == 5
    for entry in items:
        image = Item.objects.get(key=entry["key"]).stimulus.image
        assert entry["image"].startswith("data:image/png;base64,")
        inline = base64.b64decode(entry["image"].removeprefix("data:image/png;base64,"))
        assert inline == canonical_png(s3_body(s3, image))
    raw = response.content.decode()
    for leak in (BUCKET, "blindspot/", "stimuli/", "amazonaws", "X-Amz", "http", REGION):
        assert leak not in raw
    gone = Item.objects.get(key=items[0]["key"]).stimulus.image
    s3.delete_object(Bucket=BUCKET, Key=f"blindspot/{gone.name}")  # read at request time
    assert client.get(f"/api/work/{token}").status_code == 503


@pytest.mark.django_db
def test_console_image_view_returns_the_png_from_s3(s3, client):
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    stimulus = make_set(2).stimuli.order_by("source_index").first()
    url = reverse("console:stimulus-image", args=[stimulus.pk, "shown"])
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    body = b"".join(response.streaming_content)
    assert body == s3_body(s3, stimulus.image) == png_bytes(0)
    s3.delete_object(Bucket=BUCKET, Key=f"blindspot/{stimulus.image.name}")
    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_presigned_url_is_opaque_and_expires_after_five_minutes(s3):
    assert default_storage.__class__.__name__ == "S3Storage"
    model = make_model_row(name="named-model")
    stimulus = make_set(1, name="named-set", model=model).stimuli.get()
    url = default_storage.url(stimulus.image.name)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Signature"][0]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    signed = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert abs(dt.datetime.now(dt.UTC) - signed) < dt.timedelta(minutes=1)  # valid until +300 s
    assert KEY.fullmatch(parts.path.removeprefix(f"/{BUCKET}").lstrip("/")), parts.path
    for name in ("named-model", "named-set", "label", "target", "clean", "adversarial"):
        assert name not in url
    assert requests.get(url, timeout=5).content == png_bytes(0)  # a working URL (moto serves it)


# --- configuration ---------------------------------------------------------------------------


def test_default_stays_on_the_filesystem(tmp_path):
    storages = storages_from_env({}, var_dir=tmp_path)
    assert storages["default"] == {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    assert storages["artifacts"]["OPTIONS"]["location"] == str(tmp_path / "artifacts")
    assert storages_from_env({"BLINDSPOT_STORAGE": "filesystem"}, var_dir=tmp_path) == storages


def test_s3_options_are_private_presigned_and_from_the_environment(tmp_path):
    env = {
        **ENV,
        "BLINDSPOT_S3_PREFIX": "/study-7/",
        "BLINDSPOT_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    storages = storages_from_env(env, var_dir=tmp_path)
    assert storages["default"] == {
        "BACKEND": S3_BACKEND,
        "OPTIONS": {
            "bucket_name": BUCKET,
            "location": "study-7",
            "region_name": REGION,
            "endpoint_url": "http://127.0.0.1:9000",
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
            "querystring_expire": 300,
            "signature_version": "s3v4",
            "object_parameters": {"CacheControl": "private"},
        },
    }
    assert storages["artifacts"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    options = s3_storage_options({"BLINDSPOT_S3_BUCKET": "b", "AWS_DEFAULT_REGION": "us-west-2"})
    assert options["region_name"] == "us-west-2" and options["location"] == "blindspot"
    assert not {"access_key", "secret_key", "security_token"} & set(options)


def test_s3_artifacts_get_their_own_prefix(tmp_path):
    storages = storages_from_env(ENV, var_dir=tmp_path, s3_artifacts=True)
    assert storages["artifacts"]["BACKEND"] == S3_BACKEND
    assert storages["artifacts"]["OPTIONS"]["location"] == "blindspot-artifacts"
    named = {**ENV, "BLINDSPOT_S3_ARTIFACTS_PREFIX": "models"}
    storages = storages_from_env(named, var_dir=tmp_path, s3_artifacts=True)
    assert storages["artifacts"]["OPTIONS"]["location"] == "models"


@pytest.mark.parametrize(
    ("env", "artifacts", "message"),
    [
        ({"BLINDSPOT_STORAGE": "s3"}, False, "BLINDSPOT_S3_BUCKET must be set"),
        ({**ENV, "BLINDSPOT_S3_BUCKET": "  "}, False, "BLINDSPOT_S3_BUCKET must be set"),
        ({"BLINDSPOT_STORAGE": "gcs"}, False, "BLINDSPOT_STORAGE='gcs' is not supported"),
        ({**ENV, "BLINDSPOT_S3_PREFIX": "a/../b"}, False, "BLINDSPOT_S3_PREFIX='a/../b'"),
        ({**ENV, "BLINDSPOT_S3_PREFIX": "a b"}, False, "is not a key prefix"),
        ({}, True, "BLINDSPOT_S3_ARTIFACTS=1 needs BLINDSPOT_STORAGE=s3"),
        (
            {**ENV, "BLINDSPOT_S3_ARTIFACTS_PREFIX": "blindspot"},
            True,
            "BLINDSPOT_S3_ARTIFACTS_PREFIX must differ from BLINDSPOT_S3_PREFIX",
        ),
    ],
)
def test_bad_storage_configuration_is_refused_with_the_variable_named(
    tmp_path, env, artifacts, message
):
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        storages_from_env(env, var_dir=tmp_path, s3_artifacts=artifacts)


def settings_storages(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Import config.settings in a fresh interpreter and print its STORAGES backends."""
    code = (
        "import json; from config import settings as s; "
        "print(json.dumps({k: v['BACKEND'] for k, v in s.STORAGES.items()}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("BLINDSPOT_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**base, "BLINDSPOT_VAR_DIR": str(tmp_path), **env},
        timeout=60,
    )


def test_settings_module_reads_blindspot_storage(tmp_path):
    out = settings_storages(tmp_path, **ENV, BLINDSPOT_S3_ARTIFACTS="1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "default": S3_BACKEND,
        "artifacts": S3_BACKEND,
        "staticfiles": "whitenoise.storage.CompressedStaticFilesStorage",
    }
    refused = settings_storages(tmp_path, BLINDSPOT_STORAGE="s3")
    assert refused.returncode != 0
    assert "BLINDSPOT_S3_BUCKET must be set when BLINDSPOT_STORAGE=s3" in refused.stderr
