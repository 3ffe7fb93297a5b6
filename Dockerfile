# One image for every Clarion process; the command picks the role:
#   web:            gunicorn config.wsgi --bind 0.0.0.0:8000 --workers 4
#   transactional:  celery -A config worker -Q route.transactional,send.transactional.email,...
#   marketing:      nice -n 10 celery -A config worker -Q route.marketing,...,maintenance
#                   (on a shared host, nice lets transactional work take the CPU first)
#   beat:           celery -A config beat
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN DATABASE_URL=sqlite:////tmp/build.sqlite3 SECRET_KEY=image-build-only \
    python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 clarion \
    && chown clarion /app/var  # trial mode (no DATABASE_URL) keeps its files there
USER clarion

EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4"]
