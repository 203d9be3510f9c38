"""The REST API: a Twisted Web resource tree."""
