"""Real services for tests: SMTP listener, HTTP recorders, Redis servers, Celery workers."""
