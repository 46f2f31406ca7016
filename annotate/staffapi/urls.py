"""Staff API routes under ``/api/``: the viewsets, the OpenAPI schema and its Swagger UI."""

from django.urls import path
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

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="staff-api:schema"), name="docs"),
    *router.urls,
]
