"""Staff API routes under ``/api/``: the viewsets, the OpenAPI schema and its Swagger UI."""

from django.urls import path
from django.views.decorators.http import require_http_methods
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from annotate.staffapi import views as staff_api

app_name = "staff-api"

router = DefaultRouter()
router.include_format_suffixes = False  # names may contain dots
router.register("models", staff_api.TrainedModelViewSet, basename="model")
router.register("stimulus-sets", staff_api.StimulusSetViewSet, basename="stimulus-set")
# The first name of the same collection, kept for one release (clients move to stimulus-sets).
router.register("sets", staff_api.StimulusSetViewSet, basename="set")
router.register("stimuli", staff_api.StimulusViewSet, basename="stimulus")
router.register("studies", staff_api.StudyViewSet, basename="study")
router.register("jobs", staff_api.JobViewSet, basename="job")

# The schema and its UI answer GET and HEAD only, refused before DRF renders anything (its
# HTML renderer would otherwise read the body of a forged POST while drawing the 405 page).
read_only = require_http_methods(["GET", "HEAD"])

urlpatterns = [
    path("schema/", read_only(SpectacularAPIView.as_view()), name="schema"),
    path(
        "docs/",
        read_only(SpectacularSwaggerView.as_view(url_name="staff-api:schema")),
        name="docs",
    ),
    *router.urls,
]
