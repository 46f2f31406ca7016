"""Top-level URL configuration."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("annotate.staff_urls")),  # staff API, schema and docs
    path("console/", include("annotate.console_urls")),
    path("", include("annotate.urls")),
]
