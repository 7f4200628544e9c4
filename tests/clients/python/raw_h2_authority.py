"""A raw HTTP/2 client (the `h2` package, hyper-h2, with outbound header
validation off) that sends gRPC health checks with absurd `:authority`
values, for tests/tests/grpc_clients.rs and signer-daemon's TCP test.

  python3 raw_h2_authority.py unix:/abs/path   (or tcp:127.0.0.1:PORT)

For each case it opens a fresh connection, sends one
`grpc.health.v1.Health/Check` request with that `:authority` and, when the
stream was served, a second request on the same connection with
`:authority: localhost` (the connection must still work). It prints one
JSON object: case name -> outcome. An outcome is
  {"served": true, "http_status": 200, "grpc_status": "0", "message": HEX, "second": {...}}
or {"reset": ERROR_CODE} (RST_STREAM), {"goaway": ERROR_CODE}, {"closed": true}
(the server closed the socket), {"timeout": true}; with the response's
`:status` and `grpc-status` when the server answered with headers.
"""

import json
import socket
import sys
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions

# HealthCheckRequest { service: "" } is the empty message: a gRPC frame of
# 5 bytes (not compressed, length 0).
GRPC_EMPTY = b"\x00\x00\x00\x00\x00"

CASES = {
    "absent": None,
    "empty": b"",
    "localhost": b"localhost",
    # gRPC's C core (grpcio >= 1.57): the percent-encoded socket path.
    "percent_encoded_path": b"%2Frun%2Fsigner%2Fsigner.sock",
    # grpc-java: the socket path as is.
    "raw_path": b"/run/signer/signer.sock",
    "long_valid_8k": b"a" * 8000,
    "long_malformed_8k": b"%2F" * 2700,
    # Over the daemon's 16 KiB header list limit (a stream error), and far
    # over it (h2's abuse limit: the connection is closed).
    "over_limit_20k": b"a" * 20000,
    "too_long_64k": b"%2F" * 22000,
    "non_ascii_utf8": "/run/ключ/сокет.sock".encode("utf-8"),
    "control_bytes": b"host\r\nx-injected: 1\x00\x7f",
    # Not UTF-8 at all: h2 refuses it while decoding HPACK.
    "invalid_utf8": b"\xff\xfe\x80/sock",
}


def connect(target):
    if target.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target[len("unix:"):])
    elif target.startswith("tcp:"):
        host, port = target[len("tcp:"):].rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    else:
        raise SystemExit("target must be unix:/path or tcp:host:port")
    s.settimeout(10)
    return s


def headers(authority):
    h = [(b":method", b"POST"), (b":scheme", b"http")]
    if authority is not None:
        h.append((b":authority", authority))
    h += [
        (b":path", b"/grpc.health.v1.Health/Check"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    return h


def send(sock, data):
    """Send what h2 has queued; a server that already closed is no error
    here (its GOAWAY, if any, is still to be read)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def exchange(sock, conn, stream_id, authority):
    """Send one health check on `stream_id`; return its outcome."""
    conn.send_headers(stream_id, headers(authority))
    conn.send_data(stream_id, GRPC_EMPTY, end_stream=True)
    send(sock, conn.data_to_send())
    out = {}
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            out["timeout"] = True
            return out
        except ConnectionResetError:
            out["closed"] = True
            return out
        if not chunk:
            out["closed"] = True
            return out
        try:
            events = conn.receive_data(chunk)
        except h2.exceptions.ProtocolError as e:
            out["client_protocol_error"] = str(e)
            return out
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == stream_id:
                for k, v in ev.headers:
                    if k == b":status":
                        out["http_status"] = int(v)
                    elif k == b"grpc-status":
                        out["grpc_status"] = v.decode()
                    elif k == b"grpc-message":
                        out["grpc_message"] = unquote(v.decode("ascii", "replace"))
            elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == stream_id:
                for k, v in ev.headers:
                    if k == b"grpc-status":
                        out["grpc_status"] = v.decode()
                    elif k == b"grpc-message":
                        out["grpc_message"] = unquote(v.decode("ascii", "replace"))
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == stream_id:
                data += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == stream_id:
                out["served"] = out.get("http_status") == 200 and out.get("grpc_status") == "0"
                out["message"] = data[5:].hex()
                send(sock, conn.data_to_send())
                return out
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == stream_id:
                out["reset"] = int(ev.error_code)
                return out
            elif isinstance(ev, h2.events.ConnectionTerminated):
                out["goaway"] = int(ev.error_code)
                return out
        pending = conn.data_to_send()
        if pending:
            send(sock, pending)


def run_case(target, authority):
    sock = connect(target)
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out = exchange(sock, conn, 1, authority)
    if "http_status" in out or "reset" in out:
        # The connection survived this stream: it serves another request.
        out["second"] = exchange(sock, conn, 3, b"localhost")
    sock.close()
    return out


target = sys.argv[1]
only = sys.argv[2:]  # optional case names
result = {}
for name, authority in CASES.items():
    if only and name not in only:
        continue
    result[name] = run_case(target, authority)
print(json.dumps(result))
