"""Request and response shapes, declared once: the validators check them (``check``), the
OpenAPI document describes them, and the tests use both."""
