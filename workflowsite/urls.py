"""Top-level routes: the API and its log-in pages, the admin, the OpenAPI schema, Swagger UI, the metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from workflows.api.views import MetricsView

urlpatterns = [
    path("", include("workflows.api.urls")),
    path("admin/", admin.site.urls),
    # The browsable API's log in and log out, for users who are not staff (the admin admits only staff).
    path("api-auth/", include("rest_framework.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]

# Errors Django answers itself are JSON too (workflows/api/errors.py).
handler400 = "workflows.api.errors.bad_request"
handler403 = "workflows.api.errors.permission_denied"
handler404 = "workflows.api.errors.not_found"
handler500 = "workflows.api.errors.server_error"
