"""bullmq-proxy's own extension plugins, installed as the ``bullmq_proxy_plugins`` package."""
