"""The Prolific console pages, mounted at ``/console/prolific/`` (see ``ProlificConfig``)."""

from django.urls import path

from annotate.prolific import console

app_name = "prolific"

urlpatterns = [
    path("studies/<str:name>/", console.study_prolific, name="study"),
    path("studies/<str:name>/<str:action>/", console.study_prolific_action, name="study-action"),
]
