//! The module under the tools that speak PKCS#11, against the real daemon
//! on an emulated token: OpenSC's pkcs11-tool, securesystemslib's HSMSigner
//! with python-tuf, OpenSSH's ssh-keygen, OpenSSL's pkcs11 engine (libp11)
//! and p11-kit. Every signature is verified by another program (openssl,
//! python-tuf) against the public key keygen printed. A missing tool fails
//! the test naming the package that provides it
//! (tests/scripts/install-deps.sh installs them all).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Fixture, P256_9C, P384_9A, bin, module_path};

/// A program the test needs, or a loud failure naming its package.
fn need(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: install the Debian package {package} (tests/scripts/install-deps.sh)"
    );
    p
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl dgst -<hash> -verify key.pem -signature sig data`.
fn openssl_verify(dir: &Path, pem: &str, hash: &str, sig: &Path, data: &Path) {
    let key = dir.join(format!("verify-{hash}.pem"));
    std::fs::write(&key, pem).unwrap();
    let out = Command::new(need("/usr/bin/openssl", "openssl"))
        .args(["dgst", &format!("-{hash}"), "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(sig)
        .arg(data)
        .output()
        .unwrap();
    assert_eq!(
        ok("openssl dgst -verify", &out).trim(),
        "Verified OK",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pkcs11_tool_lists_slots_and_objects_and_signs_ecdsa_and_ecdsa_sha256() {
    let tool = need("/usr/bin/pkcs11-tool", "opensc");
    let f = Fixture::start(32_000_001, &[P256_9C, P384_9A], "");
    let d = f.dir.path();
    let run = |args: &[&str]| {
        let out = f
            .command(&tool)
            .arg("--module")
            .arg(module_path())
            .args(args)
            .output()
            .unwrap();
        ok(&format!("pkcs11-tool {args:?}"), &out)
    };
    let slots = run(&["--list-slots"]);
    assert!(slots.contains("YubiKey PIV #32000001"), "{slots}");
    assert!(slots.contains("serial num         : 32000001"), "{slots}");
    let objects = run(&["--list-objects"]);
    for want in [
        "Private key for Digital Signature",
        "Public key for Digital Signature",
        "X.509 Certificate for Digital Signature",
        "Private key for PIV Authentication",
        "EC_PARAMS:  06082a8648ce3d030107",
        "EC_PARAMS:  06052b81040022",
        "ID:         02",
        "ID:         01",
    ] {
        assert!(objects.contains(want), "{want} not in:\n{objects}");
    }
    let data = d.join("data");
    std::fs::write(&data, b"signed by pkcs11-tool through signer-daemon\n").unwrap();

    // ECDSA-SHA256: the module hashes; DER output for openssl.
    let sig = d.join("sig-sha256.der");
    run(&[
        "--sign",
        "--id",
        "02",
        "-m",
        "ECDSA-SHA256",
        "--signature-format",
        "openssl",
        "-i",
        data.to_str().unwrap(),
        "-o",
        sig.to_str().unwrap(),
    ]);
    openssl_verify(d, f.pem("9c"), "sha256", &sig, &data);

    // ECDSA: the caller hashed (SHA-384 with the P-384 key in 9a).
    let digest = d.join("digest");
    let out = Command::new("openssl")
        .args(["dgst", "-sha384", "-binary", "-out"])
        .arg(&digest)
        .arg(&data)
        .output()
        .unwrap();
    ok("openssl dgst", &out);
    let sig = d.join("sig-ecdsa.der");
    run(&[
        "--sign",
        "--id",
        "01",
        "-m",
        "ECDSA",
        "--signature-format",
        "openssl",
        "-i",
        digest.to_str().unwrap(),
        "-o",
        sig.to_str().unwrap(),
    ]);
    openssl_verify(d, f.pem("9a"), "sha384", &sig, &data);
    // One audit line per signature.
    assert_eq!(f.sign_lines().len(), 2, "{:#?}", f.sign_lines());
}

#[test]
fn hsm_signer_signs_a_tuf_root_that_python_tuf_verifies_p256_and_p384() {
    let venv = std::env::var("SIGNER_E2E_VENV")
        .unwrap_or_else(|_| "/usr/local/lib/signer-e2e-venv".into());
    let python = format!("{venv}/bin/python");
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: run tests/scripts/install-deps.sh (the venv with securesystemslib, tuf and python-pkcs11)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients/python/pkcs11_hsm_signer.py");
    let f = Fixture::start(32_000_002, &[P256_9C, P384_9A], "");
    for (keyid, slot, scheme) in [
        ("2", "9c", "ecdsa-sha2-nistp256"),
        ("1", "9a", "ecdsa-sha2-nistp384"),
    ] {
        let before = f.sign_lines().len();
        let root = f.dir.path().join(format!("root-{slot}.json"));
        let out = f
            .command(&python)
            .arg(&script)
            .arg(keyid)
            .arg(&root)
            .env("PYKCS11LIB", module_path())
            .output()
            .unwrap();
        let stdout = ok("pkcs11_hsm_signer.py", &out);
        let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(r["verified"], true);
        assert_eq!(r["scheme"], scheme);
        assert_eq!(
            r["uri"],
            format!("hsm:{keyid}?label=YubiKey+PIV+%2332000002"),
            "the URI names ykcs11's key id and token label"
        );
        // The key HSMSigner imported through the module is keygen's.
        assert_eq!(
            r["public"].as_str().unwrap().trim(),
            f.pem(slot).trim(),
            "HSMSigner's public key"
        );
        // The signed root is on disk with the signature python-tuf checked.
        let md: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&root).unwrap()).unwrap();
        assert_eq!(md["signatures"][0]["sig"], r["signature"]);
        // securesystemslib logs in with a PIN and python-pkcs11 asks the
        // length first: still one daemon signature.
        let lines = f.sign_lines();
        assert_eq!(lines.len(), before + 1, "{lines:#?}");
        assert_eq!(lines[before]["slot"], slot);
        assert_eq!(lines[before]["outcome"], "ok");
    }
}

/// `ssh-keygen -i -m PKCS8`: a PEM public key in OpenSSH's format.
fn ssh_public_key(dir: &Path, pem: &str) -> String {
    let file = dir.join("pub-for-ssh.pem");
    std::fs::write(&file, pem).unwrap();
    let out = Command::new(need("/usr/bin/ssh-keygen", "openssh-client"))
        .args(["-i", "-m", "PKCS8", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    ok("ssh-keygen -i", &out).trim().to_string()
}

#[test]
fn ssh_keygen_d_prints_the_public_keys_signerctl_pubkey_prints() {
    let keygen = need("/usr/bin/ssh-keygen", "openssh-client");
    let f = Fixture::start(32_000_003, &[P256_9C, P384_9A], "");
    let out = f
        .command(&keygen)
        .arg("-D")
        .arg(module_path())
        .output()
        .unwrap();
    let listed = ok("ssh-keygen -D", &out);
    for (slot, label) in [
        ("9c", "Public key for Digital Signature"),
        ("9a", "Public key for PIV Authentication"),
    ] {
        let out = f
            .command(bin("signerctl"))
            .args(["pubkey", "--key", slot])
            .output()
            .unwrap();
        let pem = ok("signerctl pubkey", &out);
        assert_eq!(pem.trim(), f.pem(slot).trim());
        let want = ssh_public_key(f.dir.path(), &pem);
        let line = listed
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("{want} not in ssh-keygen -D:\n{listed}"));
        assert!(line.ends_with(label), "{line}");
    }
}

#[test]
fn openssl_pkcs11_engine_signs_with_pkcs11_uris() {
    let engine = need(
        "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so",
        "libengine-pkcs11-openssl",
    );
    let f = Fixture::start(32_000_004, &[P256_9C, P384_9A], "");
    let d = f.dir.path();
    let conf = d.join("openssl.cnf");
    std::fs::write(
        &conf,
        format!(
            "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n\
             [engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n\
             dynamic_path = {}\nMODULE_PATH = {}\ninit = 0\n",
            engine.display(),
            module_path().display()
        ),
    )
    .unwrap();
    let data = d.join("data");
    std::fs::write(&data, b"signed by openssl through the pkcs11 engine\n").unwrap();
    let openssl = |args: &[&str]| {
        let out = f
            .command("openssl")
            .args(args)
            .env("OPENSSL_CONF", &conf)
            .output()
            .unwrap();
        ok(&format!("openssl {args:?}"), &out);
    };
    // By id, as scripts written for ykcs11 name slot 9c.
    let sig = d.join("sig-9c.der");
    openssl(&[
        "dgst",
        "-sha256",
        "-engine",
        "pkcs11",
        "-keyform",
        "engine",
        "-sign",
        "pkcs11:id=%02;type=private",
        "-out",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    openssl_verify(d, f.pem("9c"), "sha256", &sig, &data);
    // By token and object label, P-384.
    let sig = d.join("sig-9a.der");
    openssl(&[
        "dgst",
        "-sha384",
        "-engine",
        "pkcs11",
        "-keyform",
        "engine",
        "-sign",
        "pkcs11:token=YubiKey%20PIV%20%2332000004;object=Private%20key%20for%20PIV%20Authentication;type=private",
        "-out",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    openssl_verify(d, f.pem("9a"), "sha384", &sig, &data);
    assert_eq!(f.sign_lines().len(), 2);
}

const NOBODY: u32 = 65534;

#[test]
fn p11_kit_finds_the_module_through_its_module_file() {
    use std::os::unix::fs::PermissionsExt;
    let p11kit = need("/usr/bin/p11-kit", "p11-kit");
    let proxy = need(
        "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
        "p11-kit-modules",
    );
    // p11-kit reads a user's module files (~/.config/pkcs11/modules) for
    // users other than root only; so the tools run as uid 65534, which the
    // policy lets list.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs p11-kit as uid {NOBODY} with setpriv and needs root"
    );
    let f = Fixture::start(
        32_000_005,
        &[P256_9C],
        &format!(
            "[[rule]]\nname = \"nobody-lists\"\nusers = [{NOBODY}]\noperations = [\"list\"]\nkeys = [\"*\"]\n"
        ),
    );
    let d = f.dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(f.socket.parent().unwrap(), None, Some(NOBODY)).unwrap();
    std::os::unix::fs::chown(&f.socket, None, Some(NOBODY)).unwrap();
    // The shipped module file, pointed at this build's library.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("signer-pkcs11.module"))
            .unwrap();
    assert!(shipped.contains("\nmodule: /usr/lib/x86_64-linux-gnu/pkcs11/libsigner_pkcs11.so\n"));
    let home = d.join("home");
    let modules = home.join(".config/pkcs11/modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(
        modules.join("signer-pkcs11.module"),
        shipped.replace(
            "/usr/lib/x86_64-linux-gnu/pkcs11/libsigner_pkcs11.so",
            module_path().to_str().unwrap(),
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    let as_nobody = |program: &Path, args: &[&str]| {
        let out = f
            .command("setpriv")
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg(program)
            .args(args)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .expect("setpriv (util-linux) is needed");
        ok(&format!("{} {args:?}", program.display()), &out)
    };
    let listed = as_nobody(&p11kit, &["list-modules"]);
    let ours = listed
        .split("\n")
        .skip_while(|l| !l.starts_with("signer-pkcs11:"))
        .take(12)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(ours.contains("token: YubiKey PIV #32000005"), "{listed}");
    assert!(
        ours.contains("library-description: signer-daemon PKCS#11 client"),
        "{listed}"
    );
    // A program that loads p11-kit's proxy sees the token among the others.
    let tool = need("/usr/bin/pkcs11-tool", "opensc");
    let slots = as_nobody(
        &tool,
        &["--module", proxy.to_str().unwrap(), "--list-slots"],
    );
    assert!(slots.contains("YubiKey PIV #32000005"), "{slots}");
}

/// Kills the process when dropped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ssh_agent_loads_the_module_and_ssh_keygen_signs_a_file_it_verifies() {
    let agent = need("/usr/bin/ssh-agent", "openssh-client");
    let add = need("/usr/bin/ssh-add", "openssh-client");
    let keygen = need("/usr/bin/ssh-keygen", "openssh-client");
    let f = Fixture::start(32_000_006, &[P256_9C], "");
    let d = f.dir.path();
    let sock = d.join("agent.sock");
    // -P: the agent loads only modules on its allow-list.
    let _agent = Reap(
        f.command(&agent)
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .arg("-P")
            .arg(module_path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < until,
            "ssh-agent did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // ssh-add asks for the token's PIN; the module ignores what it is.
    let askpass = d.join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho not-used\n").unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let ssh = |program: &Path, args: &[&str]| {
        f.command(program)
            .args(args)
            .env("SSH_AUTH_SOCK", &sock)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .current_dir(d)
            .output()
            .unwrap()
    };
    ok(
        "ssh-add -s",
        &ssh(&add, &["-s", module_path().to_str().unwrap()]),
    );
    let keys = ok("ssh-add -L", &ssh(&add, &["-L"]));
    let want = ssh_public_key(d, f.pem("9c"));
    let line = keys
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("{want} not in the agent:\n{keys}"));
    std::fs::write(d.join("key.pub"), format!("{line}\n")).unwrap();
    std::fs::write(
        d.join("msg"),
        b"signed by ssh-agent through signer-daemon\n",
    )
    .unwrap();
    let before = f.sign_lines().len();
    ok(
        "ssh-keygen -Y sign",
        &ssh(
            &keygen,
            &["-Y", "sign", "-f", "key.pub", "-n", "test", "msg"],
        ),
    );
    assert_eq!(f.sign_lines().len(), before + 1, "one daemon signature");
    // OpenSSH verifies it against the key.
    std::fs::write(d.join("allowed"), format!("me {line}\n")).unwrap();
    let out = f
        .command(&keygen)
        .args([
            "-Y", "verify", "-f", "allowed", "-I", "me", "-n", "test", "-s", "msg.sig",
        ])
        .current_dir(d)
        .stdin(std::fs::File::open(d.join("msg")).unwrap())
        .output()
        .unwrap();
    let said = ok("ssh-keygen -Y verify", &out);
    assert!(said.contains("Good \"test\" signature for me"), "{said}");
}
