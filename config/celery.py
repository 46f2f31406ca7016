"""The Celery application: ``celery -A config worker -Q gpu,cpu`` runs Blindspot's jobs.

Settings come from Django's (the ``CELERY_`` names); tasks are found in the installed apps'
``tasks`` modules. Messages carry a job id only: everything else is in the database and the
shared storages, so any worker on any host can take any job.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("blindspot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
