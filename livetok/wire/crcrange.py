"""CRC-32 of any byte range of a buffer, in time independent of the range's length.

A ``.ltk`` reader that resynchronises after damage must check, for every sync marker it meets,
the CRC of the record that marker announces, and a crafted file can make every record claim to
run to the end of the file: checked byte by byte, that is quadratic. :class:`CrcIndex` scans the
buffer once, keeping zlib's CRC-32 of every prefix ending at a multiple of ``stride`` bytes
(``C(x) = crc32(buf[:x])``), and derives the CRC of ``buf[a:b]`` from two prefixes:

    crc32(buf[a:b]) = C(b) XOR shift(C(a), b - a)

where ``shift(c, n)`` multiplies ``c`` by ``x^(8n)`` modulo the CRC polynomial — the algebra of
zlib's ``crc32_combine``. A shift is at most eight table lookups (one per hex digit of ``n``), so a
range check costs at most ``2 * stride`` bytes of CRC plus a few microseconds, whatever its length,
and no byte is scanned twice to build the prefixes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

POLY = 0xEDB88320  # CRC-32/ISO-HDLC, reflected (zlib, gzip, PNG)


def multmodp(a: int, b: int) -> int:
    """``a * b`` modulo the CRC polynomial, both in zlib's reflected bit order (zlib's ``multmodp``)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    """``x^(2^k)`` modulo the polynomial, k = 0..31."""
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = multmodp(p, p)
    return table


_X2N = _x2n_table()


def xpow8n(n: int) -> int:
    """``x^(8n)`` modulo the polynomial (zlib's ``x2nmodp(n, 3)``)."""
    p, k = 1 << 31, 3  # x^0
    while n:
        if n & 1:
            p = multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


class _Shifter:
    """``shift(c, n) = c * x^(8n)``: one byte-sliced table (4 x 256 entries) per hex digit value and
    position of ``n``, built when first needed (at most 8 x 15), in a flat list indexed by
    ``16 * position + digit``."""

    def __init__(self) -> None:
        self._tables: list[list[int] | None] = [None] * (16 * 16)

    def _build(self, key: int) -> list[int]:
        factor = xpow8n((key & 15) << (4 * (key >> 4)))
        table = [0] * 1024
        for byte in range(4):
            base = 256 * byte
            for bit in range(8):
                image = multmodp(factor, 1 << (8 * byte + bit))
                step = 1 << bit
                for v in range(step):
                    table[base + step + v] = table[base + v] ^ image
        self._tables[key] = table
        return table

    def shift(self, c: int, n: int) -> int:
        tables = self._tables
        key = 0
        while n:
            if n & 15:
                t = tables[key | (n & 15)] or self._build(key | (n & 15))
                c = t[c & 255] ^ t[256 | (c >> 8 & 255)] ^ t[512 | (c >> 16 & 255)] ^ t[768 | c >> 24]
            n >>= 4
            key += 16
        return c


_SHIFTER = _Shifter()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's ``crc32_combine``)."""
    return _SHIFTER.shift(crc1, len2) ^ crc2


class CrcIndex:
    """CRC-32 of ranges of ``buf`` (bytes, or an mmap); see the module doc.

    ``crc_bytes`` counts the bytes fed to CRC-32 so far, for tests that bound the work done.
    """

    def __init__(self, buf: bytes | bytearray | memoryview | object, size: int, stride: int = 1024) -> None:
        self._buf = buf
        self._size = size
        self._stride = stride
        self._crc: Callable[..., int] = zlib.crc32
        self._prefix = [0]  # _prefix[i] = crc32(buf[: i * stride])
        self._near = (0, 0)  # the last (x, crc32(buf[:x])) computed between strides
        self._memo: dict[int, int] = {}  # a few recent ones, by x (a record end is asked for again and again)
        self.crc_bytes = 0

    def _chunk_crc(self, lo: int, hi: int, start: int) -> int:
        self.crc_bytes += hi - lo
        return self._crc(self._buf[lo:hi], start)  # type: ignore[index]

    def prefix(self, x: int) -> int:
        """``crc32(buf[:x])`` for ``0 <= x <= size``."""
        stride = self._stride
        i = x // stride
        prefix = self._prefix
        while len(prefix) <= i:  # extend the index: every byte is scanned once
            k = len(prefix)
            prefix.append(self._chunk_crc((k - 1) * stride, k * stride, prefix[-1]))
        base_x, base = i * stride, prefix[i]
        if base_x == x:
            return base
        known = self._memo.get(x)
        if known is not None:
            return known
        near_x, near = self._near  # successive sync markers are close: start from the last one
        if base_x < near_x < x:
            base_x, base = near_x, near
        base = self._chunk_crc(base_x, x, base)
        self._near = (x, base)
        if len(self._memo) >= 64:
            self._memo.clear()
        self._memo[x] = base
        return base

    def range_crc(self, start: int, end: int) -> int:
        """``crc32(buf[start:end])`` for ``0 <= start <= end <= size``."""
        if end - start <= 2 * self._stride:
            return self._chunk_crc(start, end, 0)
        return self.prefix(end) ^ _SHIFTER.shift(self.prefix(start), end - start)
