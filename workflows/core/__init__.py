"""The pure core: workflow specs, templates, retry policy, limits and the scheduling decisions
(no Django, no I/O)."""
