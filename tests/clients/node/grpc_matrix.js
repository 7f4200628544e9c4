// One client of the gRPC matrix (tests/tests/grpc_clients.rs): Node's
// @grpc/grpc-js with @grpc/proto-loader in its DEFAULT configuration (no
// authority override, no channel options) against signer-daemon on its Unix
// socket, with the contract from proto/signer/v1/signer.proto.
//
//   NODE_PATH=/usr/local/lib/signer-e2e-node/node_modules \
//     node grpc_matrix.js unix:/abs/path MESSAGE PROTO_ROOT
//
// PROTO_ROOT is the repository's proto/ directory. The message is hashed
// here (SHA-256), signed by the daemon, and the signature verified with
// node:crypto. Prints one JSON object; a failed step is reported in it.

"use strict";

const path = require("node:path");
const crypto = require("node:crypto");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, message, protoRoot] = process.argv.slice(2);
const out = {
  grpc_js: require("@grpc/grpc-js/package.json").version,
  target,
  steps: [],
};

function load(file, includeDirs) {
  return grpc.loadPackageDefinition(
    protoLoader.loadSync(file, {
      keepCase: true,
      enums: String,
      longs: Number,
      defaults: true,
      oneofs: true,
      includeDirs,
    }),
  );
}

const here = path.join(__dirname, "protos");
const signer = load("signer/v1/signer.proto", [protoRoot]).signer.v1;
const health = load("health.proto", [here]).grpc.health.v1;
const reflection = load("reflection.proto", [here]).grpc.reflection.v1;

const credentials = grpc.credentials.createInsecure();
const client = new signer.Signer(target, credentials);
const healthClient = new health.Health(target, credentials);
const reflectionClient = new reflection.ServerReflection(target, credentials);

const deadline = (s) => ({ deadline: Date.now() + s * 1000 });
const codeName = (code) => Object.keys(grpc.status).find((k) => grpc.status[k] === code);
const unary = (c, m, req) =>
  new Promise((resolve, reject) =>
    c[m](req, deadline(30), (err, res) => (err ? reject(err) : resolve(res))),
  );

function listServices() {
  return new Promise((resolve, reject) => {
    const call = reflectionClient.ServerReflectionInfo(deadline(30));
    call.on("data", (res) => {
      if (res.message_response === "list_services_response") {
        resolve(res.list_services_response.service.map((s) => s.name).sort());
      } else {
        reject(new Error("reflection answered " + JSON.stringify(res)));
      }
      call.end();
    });
    call.on("error", reject);
    call.write({ list_services: "" });
  });
}

function signWithEvents(req) {
  return new Promise((resolve, reject) => {
    const events = [];
    let signed = null;
    const call = client.SignWithEvents(req, deadline(60));
    call.on("data", (ev) => {
      events.push(ev.event);
      if (ev.event === "signature") signed = ev.signature;
    });
    call.on("error", reject);
    call.on("end", () => resolve({ events, signed }));
  });
}

function fail(step, e) {
  out.failed_step = step;
  if (e && e.code !== undefined) {
    out.code = codeName(e.code);
    out.details = e.details;
  } else {
    out.error = String(e && e.stack ? e.stack : e);
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

async function main() {
  let step = "reflection";
  try {
    out.services = await listServices();
    out.steps.push(step);

    step = "health";
    out.health = (await unary(healthClient, "Check", { service: "signer.v1.Signer" })).status;
    out.steps.push(step);

    step = "list_keys";
    const keys = (await unary(client, "ListKeys", {})).keys;
    const key = keys.find((k) => k.slot === "9c");
    if (!key) throw new Error("no key in slot 9c: " + JSON.stringify(keys));
    out.key_id = key.key_id;
    out.public_key_der = Buffer.from(key.public_key_der).toString("hex");
    out.steps.push(step);

    step = "sign";
    const digest = crypto.createHash("sha256").update(message).digest();
    out.digest = digest.toString("hex");
    const { events, signed } = await signWithEvents({
      key: { key_id: key.key_id },
      digest,
      hash: "HASH_ALGORITHM_SHA256",
      format: "SIGNATURE_FORMAT_DER",
    });
    out.events = events;
    out.signature = signed ? Buffer.from(signed.signature).toString("hex") : null;
    out.signed_digest = signed ? Buffer.from(signed.digest).toString("hex") : null;
    out.steps.push(step);

    // The independent verifier: node:crypto hashes the message itself.
    const publicKey = crypto.createPublicKey({
      key: Buffer.from(key.public_key_der),
      format: "der",
      type: "spki",
    });
    out.verified_by_node_crypto =
      signed !== null &&
      crypto.verify("sha256", Buffer.from(message), publicKey, Buffer.from(signed.signature));

    step = "bad_digest";
    try {
      await unary(client, "Sign", {
        key: { key_id: key.key_id },
        digest: digest.subarray(0, 31),
        hash: "HASH_ALGORITHM_SHA256",
        format: "SIGNATURE_FORMAT_DER",
      });
      out.bad_digest = "OK";
    } catch (e) {
      if (e.code === undefined) throw e;
      out.bad_digest = codeName(e.code);
      out.bad_digest_message = e.details;
    }
    out.steps.push(step);
  } catch (e) {
    fail(step, e);
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

main();
