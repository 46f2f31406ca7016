"""Top-level URL configuration.

An installed app with a ``console_urls`` module (a recruitment provider's console pages) is
mounted at ``/console/<its label>/``, and one with ``public_urls`` (a provider's webhook) at
``/hooks/<its label>/``, so no app is named here that may be left out.
"""

from django.apps import apps
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("annotate.staffapi.urls")),  # staff API, schema and docs
    path("console/", include("annotate.console.urls")),
    *(
        path(f"console/{config.label}/", include(config.console_urls))
        for config in apps.get_app_configs()
        if getattr(config, "console_urls", None)
    ),
    *(
        path(f"hooks/{config.label}/", include(config.public_urls))
        for config in apps.get_app_configs()
        if getattr(config, "public_urls", None)
    ),
    path("", include("annotate.work.urls")),
]
