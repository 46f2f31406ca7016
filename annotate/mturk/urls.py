"""The MTurk console pages, mounted at ``/console/mturk/`` (see ``MTurkConfig.console_urls``)."""

from django.urls import path

from annotate.mturk import console

app_name = "mturk"

urlpatterns = [
    path("studies/<str:name>/", console.study_mturk, name="study"),
    path("studies/<str:name>/<str:action>/", console.study_mturk_action, name="study-action"),
]
