# The REST API (and the one-shot migration job): a slim Python image. The API never imports
# torch, but the project depends on it, so the small CPU-only wheels are installed.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN useradd --create-home --uid 1000 leap
COPY pyproject.toml README.md alembic.ini ./
COPY leap_core ./leap_core
COPY leap_cli ./leap_cli
COPY jobs ./jobs
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
RUN pip install .
USER leap
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
