# The GPU worker: CUDA runtime image, the project with CUDA-enabled torch, `python -m worker`
# (one Celery child per visible GPU, each pinned to its own device).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
RUN useradd --create-home --uid 1000 leap && mkdir -p /runs /data && chown leap /runs
COPY pyproject.toml README.md alembic.ini ./
COPY leap_core ./leap_core
COPY leap_cli ./leap_cli
COPY jobs ./jobs
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
RUN pip install .
USER leap
CMD ["python", "-m", "worker"]
