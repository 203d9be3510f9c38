"""Header blocks of the endpoint calls, checked once rather than on every call.

Twisted's ``Headers`` canonicalises each name and scans each value for line breaks whenever
one is added, and again for every header when treq's content-decoding layer copies the
request's block: about 5 % of a processed job's CPU. Here the names are canonicalised once
(by Twisted's own rule, through its public API) and cached, and a value costs one scan for
``\\r``/``\\n``, which becomes a space, as Twisted does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from twisted.web.http_headers import Headers

# Response header names are the endpoint's to choose: past this many the cache starts again.
MAX_CACHED_NAMES = 1024
_canonical: dict[bytes, bytes] = {}


def canonical_name(name: bytes) -> bytes:
    """``name`` as Twisted's ``Headers`` stores it (``content-type`` → ``Content-Type``);
    raises ``InvalidHeaderName`` when it is not an HTTP token."""
    found = _canonical.get(name)
    if found is None:
        probe = Headers()
        probe.addRawHeader(name, b"")
        ((found, _),) = probe.getAllRawHeaders()
        if len(_canonical) >= MAX_CACHED_NAMES:
            _canonical.clear()
        _canonical[name] = found
    return found


def single_line(value: bytes) -> bytes:
    """A value with each line break a space: no header can be smuggled in through it."""
    if b"\n" in value or b"\r" in value:
        return b" ".join(value.splitlines())
    return value


class CheckedHeaders(Headers):
    """``Headers`` built from a block whose names are canonical and values single-line.

    ``copy()`` builds the class of the copied block from its raw mapping, so a copy is not
    checked again; every other method is Twisted's and checks what it is given."""

    __slots__ = ()

    def __init__(self, rawHeaders: Mapping[bytes, Sequence[bytes]] | None = None) -> None:
        self._rawHeaders = ({name: list(values) for name, values in rawHeaders.items()}
                            if rawHeaders else {})

    @classmethod
    def owning(cls, block: dict[bytes, list[bytes]]) -> CheckedHeaders:
        """Headers holding ``block`` itself, which the caller built for them alone."""
        headers = cls()
        headers._rawHeaders = block
        return headers

    @classmethod
    def of_pairs(cls, pairs: Iterable[tuple[bytes, bytes]]) -> CheckedHeaders:
        """From (name, value) pairs as they came, e.g. from a response parser."""
        block: dict[bytes, list[bytes]] = {}
        for name, value in pairs:
            # single_line's test inline: most values have no break, and a call per value
            # was most of this loop's cost.
            if b"\n" in value or b"\r" in value:
                value = single_line(value)
            block.setdefault(canonical_name(name), []).append(value)
        return cls.owning(block)


def block_of(headers: Mapping[str, str]) -> dict[bytes, list[bytes]]:
    """A request's fixed headers as a block; a later name replaces an earlier one that
    differs only in case."""
    block: dict[bytes, list[bytes]] = {}
    for name, value in headers.items():
        block[canonical_name(name.encode("latin-1"))] = [single_line(value.encode("utf-8"))]
    return block


class FirstValues(Mapping[str, str]):
    """A response's headers as the verdict reads them: lower-case names, the first value of
    each, decoded as Latin-1. Looked up on use: a verdict reads one or two of them."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        values = self._headers.getRawHeaders(name.encode("latin-1"))
        if not values:
            raise KeyError(name)
        return values[0].decode("latin-1")

    def __iter__(self) -> Iterator[str]:
        return (name.decode("latin-1").lower()
                for name, values in self._headers.getAllRawHeaders() if values)

    def __len__(self) -> int:
        return sum(1 for _ in self)
