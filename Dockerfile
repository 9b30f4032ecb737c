# nba-copilot: installed the way the Makefile installs it (a venv + pip install of this project),
# run as a non-root user, started with `nba run` like `make run`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY features ./features
COPY training ./training
COPY service ./service
# gcc: builds the fast scoring path's C part (training/_trees.c); without it the models score with LightGBM alone.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv && /opt/venv/bin/python -m pip install --quiet --disable-pip-version-check .

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
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"NBA_PORT\"]}/health', timeout=2)"
CMD ["nba", "run"]
