"""The service's name and version, as /health reports them."""

SERVICE_NAME = "workflow-engine"
VERSION = "0.1.0"
