"""The HTTP API: serializers, views, routes and the error handler."""
