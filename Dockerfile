# Paperboy in a container: the same install `make` performs (a venv in the project, pip install of
# the project with its extras), then `paperboy run`. Needs SLACK_*/DISCORD_* settings: without
# tokens `paperboy run` starts the interactive console, which a container has no terminal for.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 paperboy

WORKDIR /app
COPY --chown=paperboy:paperboy . /app
USER paperboy
RUN make install PYTHON=python3.11 && mkdir -p data

ENV PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD .venv/bin/python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3000\")}/healthz', timeout=4)"

# SIGTERM stops `paperboy run` within 10 s (a running delivery pass finishes or hands its claims back).
STOPSIGNAL SIGTERM
CMD [".venv/bin/paperboy", "run"]
