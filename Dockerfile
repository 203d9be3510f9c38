# bullmq-proxy: the HTTP and WebSocket proxy for BullMQ, as a small non-root image.
# Configure it with the same env vars as everywhere else (REDIS_URL, AUTH_TOKENS, PORT...);
# see docs/operations.md. The image has no redis-server: point REDIS_URL or REDIS_HOST at one.

# An exact tag, so that a rebuild of the same commit starts from the same Python.
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /src
# The dependencies first, at the versions constraints.txt pins, in a layer of their own:
# it is rebuilt only when setup.cfg or constraints.txt change, not for every code change.
COPY setup.cfg constraints.txt ./
RUN python -m venv /opt/bullmq-proxy \
    && python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(c['options']['install_requires'])" > requirements.txt \
    && /opt/bullmq-proxy/bin/pip install --no-cache-dir -c constraints.txt -r requirements.txt
COPY pyproject.toml README.md ./
COPY bullmq_proxy ./bullmq_proxy
COPY plugins ./plugins
COPY twisted ./twisted
COPY docs ./docs
RUN /opt/bullmq-proxy/bin/pip install --no-cache-dir --no-deps . \
    && /opt/bullmq-proxy/bin/pip check \
    && /opt/bullmq-proxy/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

FROM python:3.11.13-slim-bookworm
COPY --from=build /opt/bullmq-proxy /opt/bullmq-proxy
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/bullmq-proxy bullmq-proxy
ENV PATH=/opt/bullmq-proxy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PORT=8080 \
    DATA_DIR=/var/lib/bullmq-proxy
USER bullmq-proxy
WORKDIR /var/lib/bullmq-proxy
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=2)"]
# --pidfile= : a twistd.pid left in a volume would otherwise block the next start.
CMD ["twistd", "--nodaemon", "--pidfile=", "bullmq-proxy"]

LABEL org.opencontainers.image.description="BullMQ Proxy for Python - BullMQ queues over HTTP and WebSockets"
