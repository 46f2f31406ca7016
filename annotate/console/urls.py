"""Routes of the staff console, mounted at ``/console/`` (providers add theirs under it)."""

from django.urls import path

from annotate.console import job_views as jobs
from annotate.console import views as console

app_name = "console"

urlpatterns = [
    path("", console.home, name="home"),
    path("progress.json", console.live_progress, name="progress"),
    path("stimuli/new/", console.stimuli_new, name="stimuli-new"),
    path("jobs/", jobs.jobs_list, name="jobs"),
    path("jobs.json", jobs.jobs_json, name="jobs-json"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job"),
    path("jobs/<int:pk>.json", jobs.job_json, name="job-json"),
    path("jobs/<int:pk>/cancel/", jobs.job_cancel_view, name="job-cancel"),
    path("jobs/<int:pk>/retry/", jobs.job_retry_view, name="job-retry"),
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
