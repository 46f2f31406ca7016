"""Routes of the staff console, mounted at ``/console/`` (providers add theirs under it)."""

from django.urls import path

from annotate.console import views as console

app_name = "console"

urlpatterns = [
    path("", console.home, name="home"),
    path("progress.json", console.live_progress, name="progress"),
    path("stimuli/new/", console.stimuli_new, name="stimuli-new"),
    path("sets/<str:name>/log.txt", console.set_log, name="set-log"),
    path("studies/new/", console.study_new, name="study-new"),
    path("studies/<str:name>/", console.study_detail, name="study"),
    path("studies/<str:name>/open/", console.study_open_view, name="study-open"),
    path("studies/<str:name>/close/", console.study_close_view, name="study-close"),
    path(
        "studies/<str:name>/responses.<str:fmt>",
        console.study_export,
        name="study-export",
    ),
    path("stimuli/<int:pk>/<str:which>.png", console.stimulus_image, name="stimulus-image"),
    path("models/<str:name>/", console.model_detail, name="model"),
]
