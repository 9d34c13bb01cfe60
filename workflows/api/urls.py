"""Routes of the API; the paths of the original engine, with or without a trailing slash."""

from django.urls import re_path

from workflows.api import views

ID = r"(?P<execution_id>[^/]+)"

urlpatterns = [
    re_path(r"^workflows/?$", views.WorkflowListCreateView.as_view(), name="workflow-list"),
    re_path(rf"^workflows/{ID}/trigger/?$", views.WorkflowTriggerView.as_view(), name="workflow-trigger"),
    re_path(
        rf"^workflow/trigger/{ID}/?$", views.WorkflowTriggerView.as_view(), name="workflow-trigger-legacy"
    ),
    re_path(rf"^workflows/{ID}/cancel/?$", views.WorkflowCancelView.as_view(), name="workflow-cancel"),
    re_path(rf"^workflows/{ID}/retry/?$", views.WorkflowRetryView.as_view(), name="workflow-retry"),
    re_path(rf"^workflows/{ID}/events/?$", views.WorkflowEventsView.as_view(), name="workflow-events"),
    re_path(rf"^workflows/{ID}/results/?$", views.WorkflowResultsView.as_view(), name="workflow-results"),
    re_path(rf"^workflows/{ID}/?$", views.WorkflowStatusView.as_view(), name="workflow-status"),
    re_path(r"^health/?$", views.HealthView.as_view(), name="health"),
]
