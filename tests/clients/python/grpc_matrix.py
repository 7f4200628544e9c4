"""One client of the gRPC matrix (tests/tests/grpc_clients.rs): Python's grpcio
in its DEFAULT configuration (no authority override, no channel options)
against signer-daemon on its Unix socket.

It learns the contract from the daemon's server reflection alone (no .proto,
no generated code), so the same script runs on Debian's grpcio 1.51 and on
the newest grpcio from the Python package index:

  python3 grpc_matrix.py TARGET DIGEST_HEX

TARGET is a grpcio target exactly as a user writes it (`unix:/abs/path` or
`unix:///abs/path`). Prints one JSON object; every RPC failure is reported
in it (code name and details) rather than raised, so the Rust test can say
which step failed and how.
"""

import json
import sys

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

try:  # protobuf >= 4.21
    from google.protobuf.message_factory import GetMessageClass as _message_class
except ImportError:  # Debian's protobuf 3
    from google.protobuf import message_factory as _mf

    _factory = _mf.MessageFactory()

    def _message_class(descriptor):
        return _factory.GetPrototype(descriptor)


target, digest_hex = sys.argv[1], sys.argv[2]
digest = bytes.fromhex(digest_hex)
out = {"grpcio": grpc.__version__, "target": target, "steps": []}


def fail(step, e):
    out["failed_step"] = step
    if isinstance(e, grpc.RpcError):
        out["code"] = e.code().name
        out["details"] = e.details()
    else:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))
    sys.exit(0)


channel = grpc.insecure_channel(target)  # the default configuration
db = ProtoReflectionDescriptorDatabase(channel)
pool = descriptor_pool.DescriptorPool(db)

try:
    out["services"] = sorted(db.get_services())
    out["steps"].append("reflection")
except Exception as e:  # noqa: BLE001 - reported to the test
    fail("reflection", e)


def cls(full_name):
    return _message_class(pool.FindMessageTypeByName(full_name))


def enum(name, value):
    return pool.FindEnumTypeByName(name).values_by_name[value].number


def method(service, name, streaming=False):
    m = pool.FindServiceByName(service).FindMethodByName(name)
    make = channel.unary_stream if streaming else channel.unary_unary
    return make(
        "/%s/%s" % (service, name),
        request_serializer=lambda r: r.SerializeToString(),
        response_deserializer=cls(m.output_type.full_name).FromString,
    ), cls(m.input_type.full_name)


try:
    check, Req = method("grpc.health.v1.Health", "Check")
    status = check(Req(service="signer.v1.Signer"), timeout=30).status
    out["health"] = (
        pool.FindEnumTypeByName("grpc.health.v1.HealthCheckResponse.ServingStatus")
        .values_by_number[status]
        .name
    )
    out["steps"].append("health")
except Exception as e:  # noqa: BLE001
    fail("health", e)

try:
    list_keys, Req = method("signer.v1.Signer", "ListKeys")
    keys = list_keys(Req(), timeout=30).keys
    key = [k for k in keys if k.slot == "9c"][0]
    out["key_id"] = key.key_id
    out["public_key_der"] = key.public_key_der.hex()
    out["steps"].append("list_keys")
except Exception as e:  # noqa: BLE001
    fail("list_keys", e)

KeyRef = cls("signer.v1.KeyRef")
SHA256 = enum("signer.v1.HashAlgorithm", "HASH_ALGORITHM_SHA256")
DER = enum("signer.v1.SignatureFormat", "SIGNATURE_FORMAT_DER")

try:
    # SignWithEvents: the TouchRequired event comes before the signature.
    sign_events, Req = method("signer.v1.Signer", "SignWithEvents", streaming=True)
    events = []
    signature = None
    for ev in sign_events(
        Req(key=KeyRef(key_id=key.key_id), digest=digest, hash=SHA256, format=DER),
        timeout=60,
    ):
        kind = ev.WhichOneof("event")
        events.append(kind)
        if kind == "signature":
            signature = ev.signature.signature
            out["signed_digest"] = ev.signature.digest.hex()
    out["events"] = events
    out["signature"] = signature.hex() if signature is not None else None
    out["steps"].append("sign")
except Exception as e:  # noqa: BLE001
    fail("sign", e)

# The independent verifier: pyca/cryptography over the SPKI the daemon listed.
public_key = serialization.load_der_public_key(key.public_key_der)
try:
    public_key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    out["verified_by_cryptography"] = True
except (InvalidSignature, TypeError):
    out["verified_by_cryptography"] = False

try:
    sign, Req = method("signer.v1.Signer", "Sign")
    sign(Req(key=KeyRef(key_id=key.key_id), digest=digest[:31], hash=SHA256, format=DER), timeout=30)
    out["bad_digest"] = "OK"
except grpc.RpcError as e:
    out["bad_digest"] = e.code().name
    out["bad_digest_message"] = e.details()
out["steps"].append("bad_digest")

try:
    # An enum value the contract does not define: never defaulted.
    sign(Req(key=KeyRef(key_id=key.key_id), digest=digest, hash=99, format=DER), timeout=30)
    out["bad_hash"] = "OK"
except grpc.RpcError as e:
    out["bad_hash"] = e.code().name
    out["bad_hash_message"] = e.details()
out["steps"].append("bad_hash")

print(json.dumps(out))
