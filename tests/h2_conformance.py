#!/usr/bin/env python3
"""HTTP/2 conformance and attack suite against a running Gantry h2c listener.

Usage: tests/h2_conformance.py HOST:PORT [--verbose]

Frames are built by hand (the `h2` package's own state machine refuses to send broken frames);
header blocks are encoded with `hpack`, which ships with `h2` (`pip install h2`). Cases follow
what h2spec checks for RFC 9113 and RFC 7541, plus the known h2 attacks (rapid reset, CONTINUATION
flood, SETTINGS/PING floods, oversized HPACK tables, too many streams).

Each case expects one of:
  goaway(CODE)        the connection ends with GOAWAY CODE (a bare close counts when allowed)
  reset(CODE)         the stream ends with RST_STREAM CODE (GOAWAY CODE is accepted too: a
                      connection error is a stronger answer to a stream error, RFC 9113 §5.4)
  malformed           RST_STREAM PROTOCOL_ERROR, or a 4xx response, and never a 2xx from upstream
  ok                  a normal response
After every case a fresh connection must still get a 200: the gateway neither crashed nor hung.

Cases where the h2 crate (inside hyper) answers differently from the RFC are marked KNOWN with
the crate's behaviour; they are reported but do not fail the run (SECURITY.md lists them). A
KNOWN case that starts answering correctly is reported as FIXED so the table can shrink.
Exit status: 0 when every case passed or is KNOWN, 1 otherwise.
"""

import socket
import struct
import sys
import time

try:
    import hpack
except ImportError:  # pragma: no cover
    print("h2_conformance: the Python packages h2/hpack are missing: pip install h2", file=sys.stderr)
    sys.exit(2)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)
CODE_NAMES = {
    0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
    8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
}
# How long to wait for the gateway's answer: a safety net, not a timing assertion.
SAFETY_NET = 5.0

ADDR = None
VERBOSE = False


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def request_headers(path="/echo", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", "a.example"), (":path", path), *extra]


def block(headers, huffman=True):
    return hpack.Encoder().encode(headers, huffman=huffman)


def headers_frame(stream, headers, end_stream=True, end_headers=True):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, stream, block(headers) if isinstance(headers, list) else headers)


class Conn:
    """One client connection that has sent the preface and an empty SETTINGS frame."""

    def __init__(self, preface=True):
        self.sock = socket.create_connection(ADDR, timeout=SAFETY_NET)
        self.buf = b""
        self.closed = False
        self.decoder = hpack.Decoder()
        if preface:
            self.send(PREFACE + settings())

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def frames(self, deadline=None):
        """Yields (type, flags, stream, payload) until the peer closes or the safety net ends."""
        deadline = deadline or time.monotonic() + SAFETY_NET
        while True:
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9:9 + length]
                self.buf = self.buf[9 + length:]
                if ftype == SETTINGS and not flags & ACK:
                    self.send(settings(ack=True))
                yield ftype, flags, stream, payload
            if self.closed or not self._fill(deadline):
                return

    def outcome(self, stream=None):
        """The first decisive answer: ('goaway', code), ('reset', code), ('status', n), ('closed',),
        or ('timeout',)."""
        # One HPACK decoder per connection: a later answer may index fields an earlier one added.
        decoder = self.decoder
        for ftype, flags, sid, payload in self.frames():
            if ftype == GOAWAY:
                return ("goaway", int.from_bytes(payload[4:8], "big"))
            if ftype == RST_STREAM and (stream is None or sid == stream):
                return ("reset", int.from_bytes(payload[:4], "big"))
            if ftype == HEADERS and (stream is None or sid == stream):
                fields = dict(decoder.decode(payload if not flags & PADDED else payload[1:len(payload) - payload[0]]))
                status = fields.get(":status") or fields.get(b":status")
                if status is not None:
                    return ("status", int(status))
        return ("closed",) if self.closed else ("timeout",)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def describe(outcome):
    if outcome[0] in ("goaway", "reset"):
        return f"{outcome[0]}({CODE_NAMES.get(outcome[1], outcome[1])})"
    return "(".join(map(str, outcome)) + (")" if len(outcome) > 1 else "")


def goaway(code, close_ok=False):
    def check(o):
        return o == ("goaway", code) or (close_ok and o == ("closed",))
    check.text = f"goaway({CODE_NAMES[code]})" + (" or close" if close_ok else "")
    return check


def reset(code):
    def check(o):
        return o in (("reset", code), ("goaway", code))
    check.text = f"reset({CODE_NAMES[code]})"
    return check


def malformed():
    def check(o):
        return o in (("reset", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)) or (o[0] == "status" and 400 <= o[1] < 500)
    check.text = "malformed: reset(PROTOCOL_ERROR) or 4xx"
    return check


def ok():
    def check(o):
        return o[0] == "status" and o[1] == 200
    check.text = "200"
    return check


CASES = []


def case(section, name, expect, known=None):
    """Registers a case. `known` describes the h2 crate's differing answer, when it has one."""
    def register(fn):
        CASES.append((section, name, expect, known, fn))
        return fn
    return register


def exchange(data, stream=None, preface=True):
    conn = Conn(preface=preface)
    conn.send(data)
    result = conn.outcome(stream)
    conn.close()
    return result


FIXED_SIZE = "h2 answers a fixed-size frame with the wrong length with GOAWAY PROTOCOL_ERROR, not FRAME_SIZE_ERROR; the connection still ends"
HPACK = "h2 answers every HPACK decoding error with GOAWAY PROTOCOL_ERROR, not COMPRESSION_ERROR; the connection still ends"


# ---- 3.4 / 3.5 connection preface ------------------------------------------------------------

@case("preface", "invalid connection preface", goaway(PROTOCOL_ERROR, close_ok=True))
def _():
    return exchange(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings(), preface=False)


@case("preface", "first frame is not SETTINGS", goaway(PROTOCOL_ERROR, close_ok=True),
      known="h2 does not insist that the first frame is SETTINGS: it keeps the connection open (idle_timeout closes it)")
def _():
    return exchange(PREFACE + frame(PING, 0, 0, b"\0" * 8), preface=False)


# ---- 4.2 frame size --------------------------------------------------------------------------

@case("frame size", "DATA over SETTINGS_MAX_FRAME_SIZE", goaway(FRAME_SIZE_ERROR))
def _():
    return exchange(headers_frame(1, request_headers(method="POST"), end_stream=False) + frame(DATA, END_STREAM, 1, b"x" * 16385))


@case("frame size", "HEADERS over SETTINGS_MAX_FRAME_SIZE", goaway(FRAME_SIZE_ERROR))
def _():
    return exchange(headers_frame(1, block(request_headers(extra=[("x-big", "a" * 17000)]), huffman=False)))


@case("frame size", "PING with 7 bytes", goaway(FRAME_SIZE_ERROR), known=FIXED_SIZE)
def _():
    return exchange(frame(PING, 0, 0, b"\0" * 7))


@case("frame size", "SETTINGS with 5 bytes", goaway(FRAME_SIZE_ERROR), known=FIXED_SIZE)
def _():
    return exchange(frame(SETTINGS, 0, 0, b"\0" * 5))


@case("frame size", "SETTINGS ACK with a payload", goaway(FRAME_SIZE_ERROR), known=FIXED_SIZE)
def _():
    return exchange(frame(SETTINGS, ACK, 0, b"\0" * 6))


@case("frame size", "WINDOW_UPDATE with 3 bytes", goaway(FRAME_SIZE_ERROR), known=FIXED_SIZE)
def _():
    return exchange(frame(WINDOW_UPDATE, 0, 0, b"\0\0\1"))


@case("frame size", "RST_STREAM with 3 bytes", goaway(FRAME_SIZE_ERROR), known=FIXED_SIZE)
def _():
    return exchange(headers_frame(1, request_headers(method="POST"), end_stream=False) + frame(RST_STREAM, 0, 1, b"\0\0\0"))


@case("frame size", "PRIORITY with 4 bytes", reset(FRAME_SIZE_ERROR), known=FIXED_SIZE)
def _():
    return exchange(frame(PRIORITY, 0, 1, b"\0\0\0\0"), stream=1)


# ---- 6.1 / 6.2 padding -----------------------------------------------------------------------

@case("padding", "DATA pad length past the payload", goaway(PROTOCOL_ERROR))
def _():
    return exchange(headers_frame(1, request_headers(method="POST"), end_stream=False) + frame(DATA, PADDED | END_STREAM, 1, b"\x09abc"))


@case("padding", "HEADERS pad length past the payload", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1, b"\xff" + block(request_headers())))


# ---- 5.1 stream states and identifiers -------------------------------------------------------

@case("streams", "HEADERS on an even stream id", goaway(PROTOCOL_ERROR))
def _():
    return exchange(headers_frame(2, request_headers()))


@case("streams", "HEADERS with a decreasing stream id", goaway(PROTOCOL_ERROR))
def _():
    return exchange(headers_frame(5, request_headers(method="POST"), end_stream=False) + headers_frame(3, request_headers()))


@case("streams", "HEADERS on stream 0", goaway(PROTOCOL_ERROR))
def _():
    return exchange(headers_frame(0, request_headers()))


@case("streams", "DATA on stream 0", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(DATA, 0, 0, b"abc"))


@case("streams", "DATA on an idle stream", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(DATA, 0, 1, b"abc"))


@case("streams", "RST_STREAM on an idle stream", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))


@case("streams", "WINDOW_UPDATE on an idle stream", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)))


@case("streams", "RST_STREAM on stream 0", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL)))


@case("streams", "SETTINGS on stream 1", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(SETTINGS, 0, 1, b""))


@case("streams", "PING on stream 1", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(PING, 0, 1, b"\0" * 8))


@case("streams", "GOAWAY on stream 1", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)))


@case("streams", "PUSH_PROMISE from a client", goaway(PROTOCOL_ERROR))
def _():
    return exchange(headers_frame(1, request_headers(method="POST"), end_stream=False) + frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + block(request_headers())))


@case("streams", "CONTINUATION without HEADERS", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(CONTINUATION, END_HEADERS, 1, block(request_headers())))


@case("streams", "DATA between HEADERS and its CONTINUATION", goaway(PROTOCOL_ERROR))
def _():
    return exchange(headers_frame(1, request_headers(), end_headers=False) + frame(DATA, 0, 1, b"abc"))


@case("streams", "DATA after END_STREAM (half-closed remote)", reset(STREAM_CLOSED),
      known="h2 ends the whole connection with GOAWAY PROTOCOL_ERROR instead of resetting the stream with STREAM_CLOSED")
def _():
    return exchange(headers_frame(1, request_headers(method="POST", path="/hang"), end_stream=True) + frame(DATA, 0, 1, b"abc"), stream=1)


@case("streams", "unknown frame type is ignored", ok())
def _():
    return exchange(frame(0xEE, 0, 0, b"whatever") + headers_frame(1, request_headers()), stream=1)


@case("streams", "streams past max_concurrent_streams are refused", reset(REFUSED_STREAM))
def _():
    conn = Conn()
    # Wait for the server's SETTINGS so the limit (h2_max_concurrent_streams: 5 in the test) applies.
    for ftype, flags, _, _ in conn.frames():
        if ftype == SETTINGS and not flags & ACK:
            break
    data = b"".join(headers_frame(s, request_headers(method="POST", path="/hang"), end_stream=False) for s in range(1, 12, 2))
    conn.send(data)
    result = conn.outcome(stream=11)
    conn.close()
    return result


# ---- 6.9 flow control --------------------------------------------------------------------------

@case("flow control", "WINDOW_UPDATE of 0 on the connection", goaway(PROTOCOL_ERROR))
def _():
    return exchange(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))


@case("flow control", "WINDOW_UPDATE of 0 on a stream", reset(PROTOCOL_ERROR))
def _():
    return exchange(headers_frame(1, request_headers(method="POST", path="/hang"), end_stream=False) + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)), stream=1)


@case("flow control", "connection window over 2^31-1", goaway(FLOW_CONTROL_ERROR))
def _():
    return exchange(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)) * 2)


@case("flow control", "stream window over 2^31-1", reset(FLOW_CONTROL_ERROR))
def _():
    return exchange(headers_frame(1, request_headers(method="POST", path="/hang"), end_stream=False) + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)) * 2, stream=1)


@case("flow control", "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1", goaway(FLOW_CONTROL_ERROR),
      known="h2 answers GOAWAY PROTOCOL_ERROR, not FLOW_CONTROL_ERROR; the connection still ends")
def _():
    return exchange(settings((0x4, 0x80000000)))


# ---- 6.5 SETTINGS --------------------------------------------------------------------------------

@case("settings", "SETTINGS_ENABLE_PUSH = 2", goaway(PROTOCOL_ERROR))
def _():
    return exchange(settings((0x2, 2)))


@case("settings", "SETTINGS_MAX_FRAME_SIZE below 16384", goaway(PROTOCOL_ERROR))
def _():
    return exchange(settings((0x5, 16383)))


@case("settings", "SETTINGS_MAX_FRAME_SIZE over 2^24-1", goaway(PROTOCOL_ERROR))
def _():
    return exchange(settings((0x5, 1 << 24)))


@case("settings", "unknown setting is ignored", ok())
def _():
    return exchange(settings((0xFF, 1)) + headers_frame(1, request_headers()), stream=1)


@case("settings", "our SETTINGS are acknowledged", ok())
def _():
    conn = Conn()
    for ftype, flags, _, _ in conn.frames():
        if ftype == SETTINGS and flags & ACK:
            conn.close()
            return ("status", 200)
    conn.close()
    return ("timeout",)


# ---- RFC 7541 HPACK ----------------------------------------------------------------------------

@case("hpack", "indexed field 0", goaway(COMPRESSION_ERROR), known=HPACK)
def _():
    return exchange(headers_frame(1, b"\x80"))


@case("hpack", "index past the dynamic table", goaway(COMPRESSION_ERROR), known=HPACK)
def _():
    return exchange(headers_frame(1, b"\xff\x80\x01"))


@case("hpack", "table size update above SETTINGS_HEADER_TABLE_SIZE", goaway(COMPRESSION_ERROR), known=HPACK)
def _():
    # 0x3f e1 1f = size update to 4096 + 31 + ... (well past the default 4096).
    return exchange(headers_frame(1, b"\x3f\xe1\xff\x03" + block(request_headers())))


@case("hpack", "table size update after a field", goaway(COMPRESSION_ERROR), known=HPACK)
def _():
    return exchange(headers_frame(1, block(request_headers()) + b"\x20"))


@case("hpack", "Huffman string with EOS padding longer than 7 bits", goaway(COMPRESSION_ERROR), known=HPACK)
def _():
    # Literal without indexing, new name "x", Huffman value of two 0xff bytes (padding > 7 bits).
    return exchange(headers_frame(1, block(request_headers()) + b"\x00\x01x\x82\xff\xff"))


@case("hpack", "truncated header block", goaway(COMPRESSION_ERROR), known=HPACK)
def _():
    return exchange(headers_frame(1, block(request_headers()) + b"\x00\x05abc"))


# ---- 8.1 / 8.3 HTTP semantics and pseudo-headers -------------------------------------------------

def malformed_request(headers):
    return exchange(headers_frame(1, headers), stream=1)


@case("pseudo-headers", "uppercase header name", malformed())
def _():
    return malformed_request(request_headers(extra=[("X-Upper", "1")]))


@case("pseudo-headers", "unknown pseudo-header", malformed())
def _():
    return malformed_request(request_headers(extra=[(":foo", "1")]))


@case("pseudo-headers", "response pseudo-header in a request", malformed())
def _():
    return malformed_request(request_headers(extra=[(":status", "200")]))


@case("pseudo-headers", "pseudo-header after a regular header", malformed())
def _():
    return malformed_request([(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/echo"), (":authority", "a.example")])


@case("pseudo-headers", "duplicate :method", malformed())
def _():
    return malformed_request(request_headers(extra=[(":method", "POST")]))


@case("pseudo-headers", "missing :method", malformed())
def _():
    return malformed_request([(":scheme", "http"), (":path", "/echo"), (":authority", "a.example")])


@case("pseudo-headers", "missing :scheme", malformed())
def _():
    return malformed_request([(":method", "GET"), (":path", "/echo"), (":authority", "a.example")])


@case("pseudo-headers", "missing :path", malformed())
def _():
    return malformed_request([(":method", "GET"), (":scheme", "http"), (":authority", "a.example")])


@case("pseudo-headers", "empty :path", malformed())
def _():
    return malformed_request([(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "a.example")])


@case("pseudo-headers", "connection-specific header", malformed())
def _():
    return malformed_request(request_headers(extra=[("connection", "keep-alive")]))


@case("pseudo-headers", "TE other than trailers", malformed())
def _():
    return malformed_request(request_headers(extra=[("te", "gzip")]))


@case("pseudo-headers", "CR LF in a header value", malformed())
def _():
    return malformed_request(request_headers(extra=[("x-a", "1\r\nx-injected: yes")]))


@case("pseudo-headers", "NUL in a header value", malformed())
def _():
    return malformed_request(request_headers(extra=[("x-a", "1\x002")]))


@case("pseudo-headers", "pseudo-header in trailers", malformed(),
      known="h2 drops pseudo-header fields found in trailers and serves the request; they never reach the upstream")
def _():
    return exchange(headers_frame(1, request_headers(method="POST"), end_stream=False) + frame(DATA, 0, 1, b"abc") + headers_frame(2 - 1, [(":method", "GET")]), stream=1)


@case("pseudo-headers", "content-length disagreeing with DATA", malformed())
def _():
    return exchange(headers_frame(1, request_headers(method="POST", extra=[("content-length", "10")]), end_stream=False) + frame(DATA, END_STREAM, 1, b"abc"), stream=1)


@case("downgrade", "transfer-encoding in an h2 request (h2→h1 smuggling)", malformed())
def _():
    return exchange(headers_frame(1, request_headers(method="POST", extra=[("transfer-encoding", "chunked")]), end_stream=False) + frame(DATA, END_STREAM, 1, b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n"), stream=1)


@case("downgrade", "DATA longer than content-length (h2→h1 smuggling)", malformed())
def _():
    return exchange(headers_frame(1, request_headers(method="POST", extra=[("content-length", "3")]), end_stream=False) + frame(DATA, END_STREAM, 1, b"abcGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n"), stream=1)


@case("downgrade", "CR LF in :path", malformed())
def _():
    return malformed_request(request_headers(path="/echo HTTP/1.1\r\nhost: a\r\n\r\nGET /smuggled"))


@case("downgrade", "space in :method", malformed())
def _():
    return malformed_request([(":method", "GET /smuggled HTTP/1.1"), (":scheme", "http"), (":path", "/echo"), (":authority", "a.example")])


# ---- attacks ----------------------------------------------------------------------------------

@case("attacks", "rapid reset (CVE-2023-44487)", goaway(ENHANCE_YOUR_CALM))
def _():
    conn = Conn()
    data = b"".join(
        headers_frame(s, request_headers(path="/hang"), end_stream=True) + frame(RST_STREAM, 0, s, struct.pack(">I", CANCEL))
        for s in range(1, 4000, 2)
    )
    conn.send(data)
    result = conn.outcome()
    conn.close()
    return result


@case("attacks", "CONTINUATION flood", goaway(ENHANCE_YOUR_CALM, close_ok=True))
def _():
    conn = Conn()
    conn.send(headers_frame(1, request_headers(), end_headers=False))
    junk = block([("x-flood", "a" * 1000)])
    result = ("timeout",)
    for _ in range(20000):
        if not conn.send(frame(CONTINUATION, 0, 1, junk)):
            break
    result = conn.outcome()
    conn.close()
    return result


# Gantry's flood guard (src/server/flood.rs) closes a connection past
# server.limits.h2_max_control_frames_per_second; the h2 crate alone would only apply backpressure.
@case("attacks", "SETTINGS flood without reading", goaway(ENHANCE_YOUR_CALM, close_ok=True))
def _():
    return flood(settings((0x3, 100)))


@case("attacks", "PING flood without reading", goaway(ENHANCE_YOUR_CALM, close_ok=True))
def _():
    return flood(frame(PING, 0, 0, b"\0" * 8))


@case("attacks", "PING flood that reads its PONGs", goaway(ENHANCE_YOUR_CALM, close_ok=True))
def _():
    conn = Conn()
    ping = frame(PING, 0, 0, b"\0" * 8)
    for _ in range(200):
        if not conn.send(ping * 100):
            break
        # Drain whatever arrived so the server is never held back by its send buffer.
        for ftype, _, _, payload in conn.frames(deadline=time.monotonic() + 0.01):
            if ftype == GOAWAY:
                result = ("goaway", int.from_bytes(payload[4:8], "big"))
                conn.close()
                return result
        if conn.closed:
            break
    result = conn.outcome()
    conn.close()
    return result


@case("attacks", "a few PINGs and SETTINGS are not a flood", ok())
def _():
    conn = Conn()
    conn.send(b"".join(frame(PING, 0, 0, bytes([i]) * 8) + settings((0x3, 100)) for i in range(20))
              + headers_frame(1, request_headers()))
    result = conn.outcome(stream=1)
    conn.close()
    return result


def flood(unit):
    conn = Conn()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = unit * 10000
    sent = 0
    conn.sock.settimeout(2.0)
    # Keep writing without reading; a well-defended server stops reading or closes.
    for _ in range(50):
        try:
            conn.sock.sendall(payload)
            sent += 1
        except (socket.timeout, OSError):
            break
    conn.sock.settimeout(SAFETY_NET)
    # Now read: either a GOAWAY/close already sent, or ACKs/PONGs (the crate's answer).
    result = ("timeout",)
    for ftype, _, _, payload in conn.frames(deadline=time.monotonic() + 2.0):
        if ftype == GOAWAY:
            result = ("goaway", int.from_bytes(payload[4:8], "big"))
            break
    else:
        result = ("closed",) if conn.closed else ("answered-with-backpressure",)
    conn.close()
    return result


def status_431():
    def check(o):
        return o == ("status", 431)
    check.text = "431"
    return check


# RFC 9113 §10.5.1 lets a server answer a header list over its advertised limit with a 431.
@case("attacks", "oversized header list", status_431())
def _():
    headers = request_headers(extra=[(f"x-{i}", "a" * 4000) for i in range(40)])
    enc = block(headers)
    # Split into frames under the default max frame size.
    first, rest = enc[:16000], enc[16000:]
    data = frame(HEADERS, END_STREAM, 1, first)
    while rest:
        piece, rest = rest[:16000], rest[16000:]
        data += frame(CONTINUATION, 0 if rest else END_HEADERS, 1, piece)
    return exchange(data, stream=1)


@case("attacks", "client SETTINGS_HEADER_TABLE_SIZE of 4GiB", ok())
def _():
    return exchange(settings((0x1, 0xFFFFFFFF)) + headers_frame(1, request_headers()), stream=1)


# ---- runner -------------------------------------------------------------------------------------

def still_serves():
    try:
        return exchange(headers_frame(1, request_headers()), stream=1) == ("status", 200)
    except OSError:
        return False


def main():
    global ADDR, VERBOSE
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    ADDR = (host, int(port))
    VERBOSE = "--verbose" in sys.argv
    only = [a for a in sys.argv[2:] if not a.startswith("--")]
    failures, known_count, fixed = 0, 0, []
    for section, name, expect, known, fn in CASES:
        if only and not any(o in name for o in only):
            continue
        try:
            got = fn()
        except OSError as err:
            got = ("error", str(err))
        passed = expect(got)
        alive = still_serves()
        if passed and alive:
            if known:
                fixed.append(name)
                print(f"FIXED  [{section}] {name}: {describe(got)} (remove its KNOWN note)")
            elif VERBOSE:
                print(f"ok     [{section}] {name}: {describe(got)}")
        elif known and alive:
            known_count += 1
            print(f"KNOWN  [{section}] {name}: got {describe(got)}, RFC wants {expect.text}; {known}")
        else:
            failures += 1
            extra = "" if alive else "; AND THE GATEWAY STOPPED SERVING OTHER CLIENTS"
            print(f"FAIL   [{section}] {name}: got {describe(got)}, want {expect.text}{extra}")
    total = len(CASES) if not only else sum(1 for c in CASES if any(o in c[1] for o in only))
    print(f"h2_conformance: {total} cases, {failures} failed, {known_count} known h2-crate deviations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
