"""Settings for `make bench`: Clarion's own, plus the peers it is measured against."""

from config.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "post_office", "bench"]  # noqa: F405
ROOT_URLCONF = "bench.urls"
# Every email path, Clarion's and the peers', hands its MIME bytes to one counting sink.
EMAIL_BACKEND = "bench.null_email.EmailBackend"
POST_OFFICE = {"BACKENDS": {"default": "bench.null_email.EmailBackend"}, "BATCH_SIZE": 1000}
DEBUG = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}

import warnings  # noqa: E402

# The bench serves no static files; whitenoise would warn in every gunicorn worker.
warnings.filterwarnings("ignore", message="No directory at")
