# The MLflow tracking server with the PostgreSQL driver its backend store needs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN pip install "mlflow==3.17.2" "psycopg[binary]==3.3.9" \
    && useradd --create-home --uid 1000 mlflow && mkdir -p /mlflow && chown mlflow /mlflow
USER mlflow
EXPOSE 5000
