"""A structure-aware fuzzer of flow export datagrams, and its live campaign driver.

Random bytes are rejected by the first length check; what finds bugs is input that is
*almost* right. So the mutators know the formats: they rewrite IPFIX / NetFlow v9 set ids
and lengths, template field counts, lengths and enterprise bits, header lengths,
observation domains and export times, sFlow sample and record counts and lengths, NetFlow
v5 counts; they cut datagrams at structure boundaries and splice sets between datagrams.
Crafted sequences add what mutation rarely reaches: a template defined and withdrawn in
one set, data before its template, withdraw-all, 512-field templates, floods of empty
domains, time values at the ends of their ranges.

The seeds are the real captures under ``shared/data/flows``. Everything is driven by one
``random.Random(seed)``, so a failing campaign is replayed exactly.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path

from ..flows.sources.pcap import read_udp
from .flowcraft import (
    FLOW_FIELDS,
    flow_record,
    ipfix_msg,
    ipfix_set,
    template_record,
    template_set,
    withdrawal,
)

INTERESTING_16 = (0, 1, 2, 3, 4, 255, 256, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
INTERESTING_32 = (0, 1, 0x3FFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 16)


def load_seeds(flows_dir: Path) -> list[bytes]:
    """Every UDP payload of every capture under ``flows_dir`` (netflow/ and sflow/)."""
    seeds = []
    for p in sorted(Path(flows_dir).glob("*/*.pcap")):
        seeds.extend(d.payload for d in read_udp(p))
    return seeds


def _sets(msg: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each set of a v9/IPFIX message, as far as it parses."""
    if len(msg) < 16:
        return []
    off = 20 if msg[1] == 9 else 16
    out = []
    while off + 4 <= len(msg):
        ln = struct.unpack_from(">H", msg, off + 2)[0]
        if ln < 4 or off + ln > len(msg):
            break
        out.append((off, ln))
        off += ln
    return out


class Mutator:
    def __init__(self, seeds: list[bytes], rng: random.Random):
        self.seeds = [s for s in seeds if len(s) >= 4]
        self.templated = [s for s in self.seeds if s[1] in (9, 10) and s[0] == 0]
        self.sflow = [s for s in self.seeds if s[:4] == b"\0\0\0\x05"]
        self.rng = rng

    # -- generic -----------------------------------------------------------------------
    def flip(self, b: bytearray) -> None:
        for _ in range(self.rng.randint(1, 4)):
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)

    def put16(self, b: bytearray, off: int, v: int | None = None) -> None:
        if off + 2 <= len(b):
            struct.pack_into(">H", b, off, self.rng.choice(INTERESTING_16) if v is None else v)

    def put32(self, b: bytearray, off: int) -> None:
        if off + 4 <= len(b):
            struct.pack_into(">I", b, off, self.rng.choice(INTERESTING_32))

    # -- structure-aware ---------------------------------------------------------------
    def templated_msg(self) -> bytes:
        r = self.rng
        b = bytearray(r.choice(self.templated))
        sets = _sets(bytes(b))
        op = r.randrange(10)
        if op == 0 or not sets:  # header: length / domain / export time
            self.put16(b, 2)
            if r.random() < 0.5:
                struct.pack_into(">I", b, 12 if b[1] == 10 else 16, r.randrange(1 << 32))
            if r.random() < 0.5:
                self.put32(b, 4 if b[1] == 10 else 8)
        elif op == 1:  # a set's id
            off, _ = r.choice(sets)
            self.put16(b, off, r.choice((0, 1, 2, 3, 4, 255, 256, 257, 300, 65535)))
        elif op == 2:  # a set's length
            off, ln = r.choice(sets)
            self.put16(b, off + 2, r.choice((0, 3, 4, ln - 1, ln + 1, ln + 4, 65535)))
        elif op == 3:  # inside a set: template field counts, ids, lengths
            off, ln = r.choice(sets)
            for _ in range(r.randint(1, 3)):
                self.put16(b, off + 4 + 2 * r.randrange(max(1, (ln - 4) // 2)))
        elif op == 4:  # enterprise bit on a field id
            off, ln = r.choice(sets)
            i = off + 8 + 4 * r.randrange(max(1, (ln - 8) // 4))
            if i + 2 <= len(b):
                b[i] |= 0x80
        elif op == 5:  # cut at a set boundary or inside one
            off, ln = r.choice(sets)
            b = b[: off + r.randrange(ln + 1)]
        elif op == 6:  # splice a set of another datagram in
            other = r.choice(self.templated)
            osets = _sets(other)
            if osets:
                o, ln = r.choice(osets)
                at = r.choice([s[0] for s in sets] + [len(b)])
                b[at:at] = other[o : o + ln]
                struct.pack_into(">H", b, 2, len(b) if b[1] == 10 else b[3])
        elif op == 7:  # duplicate or drop a set
            off, ln = r.choice(sets)
            if r.random() < 0.5:
                b[off:off] = b[off : off + ln]
            else:
                del b[off : off + ln]
            if b[1] == 10:
                struct.pack_into(">H", b, 2, len(b) & 0xFFFF)
        else:
            self.flip(b)
        return bytes(b)

    def sflow_msg(self) -> bytes:
        r = self.rng
        b = bytearray(r.choice(self.sflow))
        op = r.randrange(5)
        if op == 0:  # a u32 at a 4-byte boundary: counts, lengths, formats, interfaces
            for _ in range(r.randint(1, 3)):
                self.put32(b, 4 * r.randrange(len(b) // 4))
        elif op == 1:
            b = b[: r.randrange(len(b))]
        elif op == 2:  # the sample count
            self.put32(b, 24 if b[7] == 1 else 36)
        else:
            self.flip(b)
        return bytes(b)

    def mutated(self) -> bytes:
        r = self.rng.random()
        if r < 0.6 and self.templated:
            return self.templated_msg()
        if r < 0.85 and self.sflow:
            return self.sflow_msg()
        b = bytearray(self.rng.choice(self.seeds))
        self.flip(b)
        if self.rng.random() < 0.3:
            b = b[: self.rng.randrange(len(b))]
        return bytes(b)

    # -- crafted sequences -------------------------------------------------------------
    def crafted(self) -> list[bytes]:
        r = self.rng
        tid = r.randrange(256, 1024)
        domain = r.randrange(1 << 32) if r.random() < 0.3 else 1
        export = r.choice((1_700_000_000, 0, 0xFFFFFFFF, r.randrange(1 << 32)))
        data = ipfix_set(tid, flow_record(1, 2, 3, export) * r.randint(1, 20))
        kind = r.randrange(8)
        if kind == 0:  # data, then define and withdraw in one set
            return [ipfix_msg(data, template_set(template_record(tid, FLOW_FIELDS),
                                                 withdrawal(tid)), domain=domain,
                              export=export)]
        if kind == 1:  # data before its template, in order and not
            t = ipfix_msg(template_set(template_record(tid, FLOW_FIELDS)), domain=domain)
            d = ipfix_msg(data, domain=domain, export=export)
            return [d, t, d] if r.random() < 0.5 else [t, d]
        if kind == 2:  # withdraw all (templates and options templates)
            return [ipfix_msg(ipfix_set(2, withdrawal(2)), ipfix_set(3, withdrawal(3)),
                              domain=domain)]
        if kind == 3:  # a wide template
            n = r.choice((64, 256, 512))
            return [ipfix_msg(template_set(template_record(
                tid, [(r.randrange(1, 400), r.choice((1, 2, 4, 8))) for _ in range(n)])),
                domain=domain)]
        if kind == 4:  # a flood of empty domains
            return [struct.pack(">HHIII", 10, 16, export, 0, r.randrange(1 << 32))
                    for _ in range(r.randint(1, 50))]
        if kind == 5:  # times at the ends of their ranges
            fields = [(8, 4), (12, 4), (1, 4), (152, 8), (153, 8)]
            v = r.choice((0, (1 << 63) - 1, (1 << 64) - 1, 1 << 62))
            rec = struct.pack(">IIIQQ", 1, 2, 3, v, v)
            return [ipfix_msg(template_set(template_record(tid, fields)),
                              ipfix_set(tid, rec * r.randint(1, 30)), domain=domain,
                              export=export)]
        if kind == 6:  # redefinition churn of one id
            a = template_record(tid, FLOW_FIELDS)
            b = template_record(tid, list(reversed(FLOW_FIELDS)))
            return [ipfix_msg(template_set(a if i % 2 else b), domain=domain)
                    for i in range(r.randint(2, 20))]
        # an options template with an odd scope count, then options data
        scope = r.choice((0, 1, 5, 0xFFFF))
        body = struct.pack(">HHH", tid, 2, scope) + struct.pack(">HHHH", 48, 1, 34, 4)
        return [ipfix_msg(ipfix_set(3, body), ipfix_set(tid, b"\x01\0\0\0\x64" * 3),
                          domain=domain)]

    def stream(self) -> Iterator[bytes]:
        """Endless hostile datagrams: 80 % mutated seeds, 20 % crafted sequences."""
        while True:
            if self.rng.random() < 0.8:
                yield self.mutated()
            else:
                yield from self.crafted()


# -- the live campaign ---------------------------------------------------------------------


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """A process's resident (VmRSS) or peak resident (VmHWM) memory, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def live_campaign(port: int, hostile: Iterator[bytes], n_hostile: int, legit: list[bytes],
                  *, legit_every: int = 50, rate_pps: int = 5000, attackers: int = 100,
                  pid: int | None = None, max_seconds: float = 600) -> dict:
    """Send ``n_hostile`` datagrams from ``attackers`` loopback addresses (127.0.1.x) to
    ``port``, with the legitimate exporter (127.0.0.1) sending the next of ``legit``
    (cycling) after every ``legit_every`` of them, paced at ``rate_pps`` in all.

    Returns what was sent (the legitimate datagrams in order, to compute what must be
    stored) and, given the collector's ``pid``, the largest RSS sampled.
    """
    import socket
    import time

    socks = []
    for i in range(attackers):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.1.{1 + i % 250}", 0))
        socks.append(s)
    good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    good.bind(("127.0.0.1", 0))
    dest = ("127.0.0.1", port)
    sent_legit: list[bytes] = []
    peak = rss0 = rss_kib(pid) if pid else 0
    t0 = time.monotonic()
    sent = n_sent_hostile = 0
    try:
        for i, p in enumerate(hostile):
            if i >= n_hostile or time.monotonic() - t0 > max_seconds:
                break
            n_sent_hostile += 1
            try:
                socks[i % attackers].sendto(p, dest)
            except OSError:
                pass  # e.g. EMSGSIZE: a datagram the kernel would not send is not sent
            sent += 1
            if i % legit_every == legit_every - 1:
                q = legit[len(sent_legit) % len(legit)]
                good.sendto(q, dest)
                sent_legit.append(q)
                sent += 1
            if i % 100 == 99:
                if pid:
                    peak = max(peak, rss_kib(pid))
                delay = t0 + sent / rate_pps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    finally:
        for s in socks:
            s.close()
        good.close()
    wall = time.monotonic() - t0
    return {"hostile_sent": n_sent_hostile,
            "legit_sent": len(sent_legit), "legit_datagrams": sent_legit,
            "datagrams_sent": sent, "seconds": round(wall, 2),
            "achieved_pps": round(sent / wall) if wall else 0,
            "rss_start_kib": rss0, "rss_peak_sampled_kib": peak}
