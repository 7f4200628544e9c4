//! A client nobody here wrote: Python's grpcio, which learns the contract
//! from the daemon's server reflection alone (no .proto, no generated code),
//! checks health, lists keys, signs through the daemon binary on an emulated
//! token, and gets INVALID_ARGUMENT for an unknown enum value. Proves the
//! contract is usable from other languages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::process::Command;

use daemon_support::{Daemon, DaemonSetup, verify};
use sha2::Digest;

/// Where tests/scripts/install-deps.sh puts grpcio-reflection (Debian ships
/// python3-grpcio but not its reflection client).
const PYDEPS: &str = "/usr/local/lib/signer-e2e-python";

const CLIENT: &str = r#"
import json, sys
import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

sock, digest_hex = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel("unix:" + sock)
db = ProtoReflectionDescriptorDatabase(channel)
pool = descriptor_pool.DescriptorPool(db)
factory = message_factory.MessageFactory(pool)

def cls(full_name):
    return factory.GetPrototype(pool.FindMessageTypeByName(full_name))

def call(service, method, fields):
    svc = pool.FindServiceByName(service)
    m = svc.FindMethodByName(method)
    req = cls(m.input_type.full_name)(**fields)
    stub = channel.unary_unary(
        "/%s/%s" % (service, method),
        request_serializer=lambda r: r.SerializeToString(),
        response_deserializer=cls(m.output_type.full_name).FromString,
    )
    return stub(req, timeout=30)

def enum(name, value):
    return pool.FindEnumTypeByName(name).values_by_name[value].number

out = {"services": sorted(db.get_services())}
health = call("grpc.health.v1.Health", "Check", {"service": "signer.v1.Signer"})
out["health"] = pool.FindEnumTypeByName(
    "grpc.health.v1.HealthCheckResponse.ServingStatus").values_by_number[health.status].name
keys = call("signer.v1.Signer", "ListKeys", {}).keys
key = [k for k in keys if k.slot == "9c"][0]
out["key_id"] = key.key_id
out["public_key_der"] = key.public_key_der.hex()
KeyRef, SlotRef = cls("signer.v1.KeyRef"), cls("signer.v1.SlotRef")
resp = call("signer.v1.Signer", "Sign", {
    "key": KeyRef(key_id=key.key_id),
    "digest": bytes.fromhex(digest_hex),
    "hash": enum("signer.v1.HashAlgorithm", "HASH_ALGORITHM_SHA256"),
    "format": enum("signer.v1.SignatureFormat", "SIGNATURE_FORMAT_DER"),
})
out["signature"] = resp.signature.hex()
out["signed_digest"] = resp.digest.hex()
try:
    call("signer.v1.Signer", "Sign", {
        "key": KeyRef(slot=SlotRef(slot="9c")),
        "digest": bytes.fromhex(digest_hex),
        "hash": 99,
        "format": enum("signer.v1.SignatureFormat", "SIGNATURE_FORMAT_DER"),
    })
    out["bad_hash"] = "OK"
except grpc.RpcError as e:
    out["bad_hash"] = e.code().name
    out["bad_hash_message"] = e.details()
print(json.dumps(out))
"#;

#[test]
fn python_grpcio_through_reflection_signs_and_gets_documented_errors() {
    assert!(
        std::path::Path::new(PYDEPS)
            .join("grpc_reflection")
            .exists(),
        "grpcio-reflection is missing: run tests/scripts/install-deps.sh"
    );
    let mut d = Daemon::start(DaemonSetup::default());
    let key = d.keys[0].clone();
    let script = d.dir.path().join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let digest = sha2::Sha256::digest(b"from python").to_vec();
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&d.socket)
        .arg(hex::encode(&digest))
        .env("PYTHONPATH", PYDEPS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in ["signer.v1.Signer", "grpc.health.v1.Health"] {
        assert!(services.contains(&s), "{services:?}");
    }
    assert_eq!(v["health"], "SERVING");
    assert_eq!(v["key_id"], key.key_id.as_str());
    assert_eq!(v["signed_digest"], hex::encode(&digest));
    let spki = hex::decode(v["public_key_der"].as_str().unwrap()).unwrap();
    assert_eq!(spki, key.public_key.spki_der);
    let signature = hex::decode(v["signature"].as_str().unwrap()).unwrap();
    assert!(verify(&key, &digest, &signature));
    assert_eq!(v["bad_hash"], "INVALID_ARGUMENT");
    assert!(
        v["bad_hash_message"]
            .as_str()
            .unwrap()
            .contains("unknown hash value 99")
    );
    assert!(d.terminate().success());
}
