"""Node handlers: the registry both the API and the workers read, and the built-in mock handlers."""
