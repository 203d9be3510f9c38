from twisted.application.service import ServiceMaker

bullmqProxy = ServiceMaker(
    "bullmq-proxy",
    "bullmq_proxy.tap",
    "HTTP and WebSocket proxy for BullMQ job queues",
    "bullmq-proxy",
)
