FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PARALLEL_GATEWAY_CONFIG=/etc/parallel-gateway/config.toml

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY migrations ./migrations
RUN pip install --no-cache-dir . && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /data gateway \
    && mkdir -p /data /etc/parallel-gateway \
    && chown gateway /data \
    && printf '[server]\nhost = "0.0.0.0"\nport = 8080\n\n[storage]\ndatabase = "/data/gateway.db"\n' \
       > /etc/parallel-gateway/config.toml

USER gateway
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

ENTRYPOINT ["parallel-gateway"]
CMD ["serve"]
