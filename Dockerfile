# nba-copilot: installed the way the Makefile installs it (a venv + pip install of this project), run as a
# non-root user, started with `nba run` like `make run`. compose.yaml runs this one image as the service replicas,
# the one-shot demo build, the shadow worker and the MLflow tracking server.
FROM python:3.11-slim AS build
WORKDIR /src
# gcc: builds the two C parts, the scoring path's (training/_trees.c) and the online store's decode
# (features/_decode.c). Both are optional extensions, so a build without them would succeed and serve slower:
# the check after the install fails the build instead.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY features ./features
COPY training ./training
COPY service ./service
# [postgres]: the driver the MLflow server needs for its PostgreSQL backend store (compose.yaml's mlflow service).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --quiet --no-cache-dir --disable-pip-version-check '.[postgres]'
# Run from / so the installed package is imported, not the sources in /src (which hold no built C part).
RUN cd / && /opt/venv/bin/python -c "import features.fast_decode as d, training.fast_trees as t; \
assert t.AVAILABLE, 'training/_trees.c was not built'; assert d.AVAILABLE, 'features/_decode.c was not built'"

FROM python:3.11-slim
# libgomp: LightGBM's OpenMP runtime, which the slim image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 nba && mkdir -p /data && chown nba /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    NBA_HOST=0.0.0.0 \
    NBA_PORT=8000 \
    NBA_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER nba
WORKDIR /data
EXPOSE 8000
# /health answers 200 while the process serves, degraded or not (/ready says whether Redis and the models are up):
# restarting a replica because Redis is down would not bring Redis back.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"NBA_PORT\"]}/health', timeout=2)"
CMD ["nba", "run"]
