# The base image is pinned by version tag. Pin it by digest too (python:3.11.14-slim-bookworm@sha256:...)
# when you build: our build machine has no registry access to read the digest.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COO_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY graph ./graph
COPY memory ./memory
COPY connectors ./connectors
COPY prompts ./prompts
RUN pip install . \
    && useradd --create-home --uid 10001 coo \
    && mkdir -p /data && chown coo:coo /data && chmod 700 /data
USER coo
VOLUME ["/data"]
# Telegram webhook mode (COO_TELEGRAM__WEBHOOK_LISTEN) and Slack HTTP mode (COO_SLACK__HTTP_LISTEN);
# long polling and Socket Mode need no port.
EXPOSE 8443 3000
# Config parsed and /data writable; no network (a chat platform being down must not restart the bot).
HEALTHCHECK --interval=60s --timeout=15s --start-period=30s --retries=3 CMD ["coo", "doctor", "--quick"]
ENTRYPOINT ["coo"]
CMD ["run"]
