"""Top-level routes: the API, the admin, the OpenAPI schema, its Swagger UI and the Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from workflows.api.views import MetricsView

urlpatterns = [
    path("", include("workflows.api.urls")),
    path("admin/", admin.site.urls),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]

# Errors Django answers itself are JSON too (workflows/api/errors_views.py).
handler400 = "workflows.api.errors_views.bad_request"
handler403 = "workflows.api.errors_views.permission_denied"
handler404 = "workflows.api.errors_views.not_found"
handler500 = "workflows.api.errors_views.server_error"
