"""Prolific's public URLs, mounted at ``/hooks/prolific/`` (see ``ProlificConfig.public_urls``)."""

from django.urls import path

from annotate.prolific import hooks

app_name = "prolific-hooks"

urlpatterns = [path("", hooks.hook, name="hook")]
