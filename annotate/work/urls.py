"""Worker-facing routes: study entry, the labeling page and the worker API.

Everything here is reachable without a login; a lease is named only by its signed token.
"""

from django.urls import path

from annotate.work import api, views

app_name = "annotate"

urlpatterns = [
    # Pages (work/views.py)
    path("s/<str:study_key>/", views.study_entry, name="study-entry"),
    path("s/<str:study_key>/start", views.study_start, name="study-start"),
    path("w/<str:token>/", views.work_page, name="work"),
    path("w/<str:token>/done", views.work_done, name="work-done"),
    # Worker API (work/api.py), used by the page's script
    path("api/work/studies/<str:study_key>/lease", api.LeaseView.as_view(), name="api-lease"),
    path("api/work/<str:token>", api.WorkView.as_view(), name="api-work"),
    path("api/work/<str:token>/answers", api.AnswersView.as_view(), name="api-answers"),
    path("api/work/<str:token>/submit", api.SubmitView.as_view(), name="api-submit"),
]
