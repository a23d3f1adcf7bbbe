"""Two lossless JPEG encoders for greyscale frames of unsigned integers.

- `encode_process14`: ITU-T T.81 lossless, Huffman coded, selection value 1
  (predict from the left neighbour), point transform 0, with a Huffman table
  built for the frame (Annex K.2). DICOM transfer syntax 1.2.840.10008.1.2.4.70.
- `encode_jpegls`: ITU-T T.87 (JPEG-LS) lossless, NEAR = 0, default thresholds
  and RESET, single component. DICOM transfer syntax 1.2.840.10008.1.2.4.80.

Signed data must be passed as its two's complement bit pattern (DICOM PS3.5 8.2.1).
"""
from __future__ import annotations

import struct

import numpy as np


def _marker(code: int, payload: bytes = b"") -> bytes:
    if not payload:
        return struct.pack(">BB", 0xFF, code)
    return struct.pack(">BBH", 0xFF, code, len(payload) + 2) + payload


# --- T.81 process 14 ---------------------------------------------------------------

def _optimal_code_lengths(freq: np.ndarray) -> list[int]:
    """Code length per symbol (0 for unused), at most 16 bits, the all-ones code
    reserved (T.81 Annex K.2, as in libjpeg's jpeg_gen_optimal_table)."""
    f = [int(x) for x in freq] + [1]  # the reserved symbol
    n = len(f)
    size = [0] * n
    others = [-1] * n
    while True:
        c1 = c2 = -1
        v1 = v2 = None
        for i in range(n):
            if f[i] and (v1 is None or f[i] <= v1):
                v1, c1 = f[i], i
        for i in range(n):
            if f[i] and i != c1 and (v2 is None or f[i] <= v2):
                v2, c2 = f[i], i
        if c2 < 0:
            break
        f[c1] += f[c2]
        f[c2] = 0
        size[c1] += 1
        while others[c1] >= 0:
            c1 = others[c1]
            size[c1] += 1
        others[c1] = c2
        size[c2] += 1
        while others[c2] >= 0:
            c2 = others[c2]
            size[c2] += 1
    bits = [0] * 33
    for s in size:
        if s:
            bits[s] += 1
    for i in range(32, 16, -1):
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1  # drop the reserved code
    # Hand lengths back to the symbols, shortest to the most frequent.
    order = sorted(range(n - 1), key=lambda s: (size[s] == 0, size[s], s))
    lengths = [0] * (n - 1)
    k = 0
    for length in range(1, 17):
        for _ in range(bits[length]):
            lengths[order[k]] = length
            k += 1
    return lengths


def _canonical(lengths: list[int]) -> tuple[list[int], list[int], bytes]:
    """Canonical codes per symbol and the DHT payload (counts then symbols)."""
    symbols = sorted((l, s) for s, l in enumerate(lengths) if l)
    codes = [0] * len(lengths)
    code, prev = 0, 0
    counts = [0] * 16
    for l, s in symbols:
        code <<= (l - prev)
        prev = l
        codes[s] = code
        code += 1
        counts[l - 1] += 1
    payload = bytes([0x00]) + bytes(counts) + bytes(s for _, s in symbols)
    return codes, lengths, payload


def encode_process14(frame: np.ndarray, precision: int) -> bytes:
    """T.81 lossless (SV1) codestream of a 2-D array of values in [0, 2**precision)."""
    x = frame.astype(np.int64)
    rows, cols = x.shape
    pred = np.empty_like(x)
    pred[:, 1:] = x[:, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[0, 0] = 1 << (precision - 1)
    diff = (x - pred) % 65536
    diff = np.where(diff >= 32768, diff - 65536, diff).ravel()
    mag = np.abs(diff)
    cat = np.minimum(np.frexp(mag.astype(np.float64))[1].astype(np.int64), 16)  # bit length
    extra = np.where(diff >= 0, diff, diff + (1 << cat) - 1) & ((1 << cat) - 1)
    extra = np.where(cat == 16, 0, extra)
    nbits_extra = np.where(cat == 16, 0, cat)
    lengths = _optimal_code_lengths(np.bincount(cat, minlength=17))
    codes, lens, dht = _canonical(lengths)
    code_arr = np.array(codes, np.uint64)[cat]
    len_arr = np.array(lens, np.int64)[cat]
    total = len_arr + nbits_extra
    value = (code_arr << nbits_extra.astype(np.uint64)) | extra.astype(np.uint64)
    stream = _bits_to_bytes(value, total)
    stuffed = _stuff_ff(stream)
    sof = struct.pack(">BHHB", precision, rows, cols, 1) + bytes([1, 0x11, 0])
    sos = bytes([1, 1, 0x00, 1, 0, 0])
    return (_marker(0xD8) + _marker(0xC3, sof) + _marker(0xC4, dht) + _marker(0xDA, sos)
            + stuffed + _marker(0xD9))


def _bits_to_bytes(value: np.ndarray, nbits: np.ndarray) -> np.ndarray:
    """Concatenate variable-length codes (MSB first, at most 32 bits each) into
    32-bit words, pad the last byte with ones. Codes occupy disjoint bits, so a
    word is the sum of its parts (exact in float64 below 2**53)."""
    value = value.astype(np.uint64)
    nbits = nbits.astype(np.int64)
    offset = np.cumsum(nbits) - nbits
    total = int(offset[-1] + nbits[-1]) if nbits.size else 0
    word = offset // 32
    shift = offset % 32
    room = 32 - shift
    fits = nbits <= room
    over = np.where(fits, 0, nbits - room)
    first = np.where(fits, value << (room - nbits).clip(0).astype(np.uint64),
                     value >> over.astype(np.uint64))
    second = np.where(fits, 0, (value & ((np.uint64(1) << over.astype(np.uint64)) - np.uint64(1)))
                      << (32 - over).astype(np.uint64))
    n_words = (total + 31) // 32 + 1
    words = (np.bincount(word, weights=first.astype(np.float64), minlength=n_words)
             + np.bincount(word + 1, weights=second.astype(np.float64), minlength=n_words))
    out = words.astype(np.uint64).astype(">u4").view(np.uint8)
    n_bytes = (total + 7) // 8
    out = out[:n_bytes].copy()
    pad = n_bytes * 8 - total
    if pad:
        out[-1] |= (1 << pad) - 1
    return out


def _stuff_ff(stream: np.ndarray) -> bytes:
    ff = np.flatnonzero(stream == 0xFF)
    if ff.size:
        stream = np.insert(stream, ff + 1, 0)
    return stream.tobytes()


# --- T.87 JPEG-LS lossless ------------------------------------------------------------

_J = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7,
      8, 9, 10, 11, 12, 13, 14, 15]


class _BitWriter:
    """MSB-first bit output with JPEG-LS marker stuffing (a 0 bit after 0xFF)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, nbits: int) -> None:
        self.acc = (self.acc << nbits) | value
        self.n += nbits
        out = self.out
        while True:
            room = 7 if (out and out[-1] == 0xFF) else 8
            if self.n < room:
                return
            self.n -= room
            out.append((self.acc >> self.n) & ((1 << room) - 1))
            self.acc &= (1 << self.n) - 1

    def flush(self) -> bytes:
        room = 7 if (self.out and self.out[-1] == 0xFF) else 8
        if self.n:
            self.out.append((self.acc << (room - self.n)) & 0xFF)
            self.n = 0
        if self.out and self.out[-1] == 0xFF:
            self.out.append(0)
        return bytes(self.out)


def _thresholds(maxval: int) -> tuple[int, int, int]:
    if maxval >= 128:
        factor = (min(maxval, 4095) + 128) // 256
        t1 = min(max(factor * (3 - 2) + 2, 1), maxval)
        t2 = min(max(factor * (7 - 3) + 3, t1), maxval)
        t3 = min(max(factor * (21 - 4) + 4, t2), maxval)
        return t1, t2, t3
    factor = 256 // (maxval + 1)
    t1 = min(max(3 // factor, 2), maxval)
    t2 = min(max(7 // factor, t1), maxval)
    t3 = min(max(21 // factor, t2), maxval)
    return t1, t2, t3


def encode_jpegls(frame: np.ndarray, precision: int) -> bytes:
    """T.87 lossless codestream of a 2-D array of values in [0, 2**precision)."""
    rows, cols = frame.shape
    maxval = (1 << precision) - 1
    rng = maxval + 1
    qbpp = max(1, (rng - 1).bit_length())
    bpp = max(2, (maxval).bit_length())
    limit = 2 * (bpp + max(8, bpp))
    t1, t2, t3 = _thresholds(maxval)
    reset = 64
    a_init = max(2, (rng + 32) // 64)
    A = [a_init] * 367
    B = [0] * 367
    C = [0] * 367
    N = [1] * 367
    Nn = [0, 0]
    half = (rng + 1) // 2

    def quant(d: int) -> int:
        if d <= -t3:
            return -4
        if d <= -t2:
            return -3
        if d <= -t1:
            return -2
        if d < 0:
            return -1
        if d == 0:
            return 0
        if d < t1:
            return 1
        if d < t2:
            return 2
        if d < t3:
            return 3
        return 4

    w = _BitWriter()
    put = w.put

    def golomb(mapped: int, k: int, lim: int) -> None:
        high = mapped >> k
        if high < lim - qbpp - 1:
            put(1, high + 1)
            if k:
                put(mapped & ((1 << k) - 1), k)
        else:
            put(1, lim - qbpp)
            put((mapped - 1) & ((1 << qbpp) - 1), qbpp)

    contexts: dict[tuple[int, int, int], int] = {}
    run_index = 0
    data = frame.astype(np.int64).tolist()
    prev = [0] * (cols + 2)  # index 0 is position -1, cols + 1 is position cols
    for r in range(rows):
        cur = [0] * (cols + 2)
        cur[1:cols + 1] = data[r]
        prev[cols + 1] = prev[cols]
        cur[0] = prev[1]
        i = 1
        while i <= cols:
            ra, rb, rc, rd = cur[i - 1], prev[i], prev[i - 1], prev[i + 1]
            d1, d2, d3 = rd - rb, rb - rc, rc - ra
            if d1 == 0 and d2 == 0 and d3 == 0:
                # run mode
                run = 0
                while i + run <= cols and cur[i + run] == ra:
                    run += 1
                end_of_line = i + run > cols
                count = run
                while count >= (1 << _J[run_index]):
                    put(1, 1)
                    count -= 1 << _J[run_index]
                    if run_index < 31:
                        run_index += 1
                if end_of_line:
                    if count:
                        put(1, 1)
                    i += run
                    continue
                put(count, _J[run_index] + 1)
                i += run
                x = cur[i]
                rb = prev[i]
                ri_type = 1 if ra == rb else 0
                if ri_type:
                    err = x - ra
                else:
                    err = (x - rb) * (-1 if rb < ra else 1)
                if err < 0:
                    err += rng
                if err >= half:
                    err -= rng
                q = 365 + ri_type
                temp = A[q] + (N[q] >> 1) * ri_type
                k = 0
                nt = N[q]
                while nt < temp:
                    nt <<= 1
                    k += 1
                nn = Nn[ri_type]
                if k == 0 and err > 0 and 2 * nn < N[q]:
                    mapbit = 1
                elif err < 0 and 2 * nn >= N[q]:
                    mapbit = 1
                elif err < 0 and k != 0:
                    mapbit = 1
                else:
                    mapbit = 0
                em = 2 * abs(err) - ri_type - mapbit
                golomb(em, k, limit - _J[run_index] - 1)
                if err < 0:
                    Nn[ri_type] += 1
                A[q] += (em + 1 - ri_type) >> 1
                if N[q] == reset:
                    A[q] >>= 1
                    N[q] >>= 1
                    Nn[ri_type] >>= 1
                N[q] += 1
                if run_index > 0:
                    run_index -= 1
                i += 1
                continue
            # regular mode
            q1, q2, q3 = quant(d1), quant(d2), quant(d3)
            sign = 1
            if q1 < 0 or (q1 == 0 and (q2 < 0 or (q2 == 0 and q3 < 0))):
                q1, q2, q3, sign = -q1, -q2, -q3, -1
            key = (q1, q2, q3)
            q = contexts.get(key)
            if q is None:
                q = contexts[key] = len(contexts)
            if rc >= (ra if ra > rb else rb):
                px = ra if ra < rb else rb
            elif rc <= (ra if ra < rb else rb):
                px = ra if ra > rb else rb
            else:
                px = ra + rb - rc
            px += C[q] if sign > 0 else -C[q]
            if px > maxval:
                px = maxval
            elif px < 0:
                px = 0
            err = cur[i] - px
            if sign < 0:
                err = -err
            if err < 0:
                err += rng
            if err >= half:
                err -= rng
            nq, aq = N[q], A[q]
            k = 0
            nt = nq
            while nt < aq:
                nt <<= 1
                k += 1
            e = err
            if k == 0 and 2 * B[q] <= -nq:
                e = -e - 1
            mapped = 2 * e if e >= 0 else -2 * e - 1
            golomb(mapped, k, limit)
            b = B[q] + err
            aq += abs(err)
            if nq == reset:
                aq >>= 1
                b >>= 1
                nq >>= 1
            nq += 1
            c = C[q]
            if b <= -nq:
                b += nq
                if c > -128:
                    c -= 1
                if b <= -nq:
                    b = -nq + 1
            elif b > 0:
                b -= nq
                if c < 127:
                    c += 1
                if b > 0:
                    b = 0
            A[q], B[q], C[q], N[q] = aq, b, c, nq
            i += 1
        prev = cur
    scan = w.flush()
    sof = struct.pack(">BHHB", precision, rows, cols, 1) + bytes([1, 0x11, 0])
    sos = bytes([1, 1, 0, 0, 0, 0])  # Ns, C1, Tm1, NEAR, ILV, point transform
    return _marker(0xD8) + _marker(0xF7, sof) + _marker(0xDA, sos) + scan + _marker(0xD9)
