FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 COO_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY graph ./graph
COPY memory ./memory
COPY connectors ./connectors
COPY prompts ./prompts
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 coo \
    && mkdir -p /data && chown coo:coo /data
USER coo
VOLUME ["/data"]
EXPOSE 8443 3000
ENTRYPOINT ["coo"]
CMD ["run"]
