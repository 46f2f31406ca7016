"""Project configuration: ``settings`` (from the environment), ``urls``, ``storage``, WSGI/ASGI,
and the Celery application (``celery``), loaded with Django so tasks can be sent from anywhere."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
