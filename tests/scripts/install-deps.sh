#!/usr/bin/env bash
# Install the Debian packages the main job and the test suite need.
# Idempotent: installs only what is missing. Needs root (apt-get) when
# something is missing; without root it fails naming the missing packages.
set -euo pipefail

# package -> a file it provides (checked instead of dpkg, so a hand-built
# tool on PATH also counts)
declare -A NEED=(
  [pcscd]=/usr/sbin/pcscd
  [vsmartcard-vpcd]=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
  [gcc]=/usr/bin/gcc
  [libpcsclite-dev]=/usr/include/PCSC/winscard.h
  [libssl-dev]=/usr/include/openssl/ssl.h
  [pkg-config]=/usr/bin/pkg-config
  [protobuf-compiler]=/usr/bin/protoc
  [yubico-piv-tool]=/usr/bin/yubico-piv-tool
  [ykcs11]=/usr/lib/x86_64-linux-gnu/libykcs11.so.2
  [yubikey-manager]=/usr/bin/ykman
  [opensc]=/usr/bin/pkcs11-tool
  [openssl]=/usr/bin/openssl
  [util-linux]=/usr/bin/unshare
  [mount]=/bin/mount
  [pcsc-tools]=/usr/bin/pcsc_scan
  [procps]=/usr/bin/pkill
  [python3-grpcio]=/usr/lib/python3/dist-packages/grpc/__init__.py
  [python3-grpc-tools]=/usr/lib/python3/dist-packages/grpc_tools/__init__.py
  [systemd]=/usr/bin/systemd-analyze
  [udev]=/bin/udevadm
  [nodejs]=/usr/bin/node
  [python3-pip]=/usr/lib/python3/dist-packages/pip/__init__.py
  [python3-venv]=/usr/share/doc/python3-venv
  [patch]=/usr/bin/patch   # signer-daemon/vendor/h2.sh (the vendored h2 check)
  # the benchmark's peers (tests/scripts/bench.sh)
  [openssh-client]=/usr/bin/ssh-agent
  [notary]=/usr/bin/notary-signer
  [softhsm2]=/usr/lib/softhsm/libsofthsm2.so
  # the PKCS#11 module's tool tests (signer-daemon/pkcs11/tests/tools.rs;
  # ssh-keygen is openssh-client's, above)
  [libengine-pkcs11-openssl]=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
  [p11-kit]=/usr/bin/p11-kit
  [p11-kit-modules]=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
  # the reliability suite's unwritable audit log (chattr +i; tests/tests/reliability_durability.rs)
  [e2fsprogs]=/usr/bin/chattr
)

missing=()
for pkg in "${!NEED[@]}"; do
  [ -e "${NEED[$pkg]}" ] || missing+=("$pkg")
done
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if [ ${#missing[@]} -ne 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  for pkg in "${missing[@]}"; do
    if [ ! -e "${NEED[$pkg]}" ]; then
      echo "install-deps: $pkg installed but ${NEED[$pkg]} is still missing" >&2
      exit 1
    fi
  done
fi

# Python packages Debian does not ship, for the test that drives the daemon
# from Python through server reflection (grpcio-reflection must match Debian's
# python3-grpcio 1.51). Installed outside the system site-packages.
PYDEPS=/usr/local/lib/signer-e2e-python
if [ ! -e "$PYDEPS/grpc_reflection/__init__.py" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing $PYDEPS/grpc_reflection; run as root, or:" >&2
    echo "  /usr/bin/python3 -m pip install --no-deps --target $PYDEPS grpcio-reflection==1.51.1" >&2
    exit 1
  fi
  echo "install-deps: installing grpcio-reflection into $PYDEPS" >&2
  /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$PYDEPS" grpcio-reflection==1.51.1 </dev/null
  if [ ! -e "$PYDEPS/grpc_reflection/__init__.py" ]; then
    echo "install-deps: grpcio-reflection did not install into $PYDEPS" >&2
    exit 1
  fi
fi

# ykman from PyPI (5.x), next to Debian's 4.0.9, for the conformance test of
# the emulated card (tests/tests/emulated_card_conformance.rs). In its own venv.
YKMAN_VENV="${SIGNER_YKMAN_VENV:-/usr/local/lib/signer-e2e-ykman}"
if [ ! -x "$YKMAN_VENV/bin/ykman" ]; then
  if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$YKMAN_VENV")" ]; then
    echo "install-deps: missing $YKMAN_VENV/bin/ykman; run as root, or:" >&2
    echo "  /usr/bin/python3 -m venv $YKMAN_VENV && $YKMAN_VENV/bin/pip install yubikey-manager" >&2
    exit 1
  fi
  # The issue asks for the newer ykman "if it installs": a failure here is
  # recorded (the conformance test reports it loudly) instead of failing
  # the whole run; Debian's ykman 4.0.9 stays mandatory.
  echo "install-deps: installing yubikey-manager from PyPI into $YKMAN_VENV" >&2
  rm -f "$YKMAN_VENV.unavailable"
  if ! { /usr/bin/python3 -m venv "$YKMAN_VENV" </dev/null &&
    "$YKMAN_VENV/bin/pip" install --quiet --disable-pip-version-check yubikey-manager </dev/null &&
    "$YKMAN_VENV/bin/ykman" --version >/dev/null 2>&1; }; then
    echo "install-deps: WARNING: yubikey-manager from PyPI could not be installed into $YKMAN_VENV" \
      "(no PyPI access?); the ykman 5 conformance test will say so" >&2
    rm -rf "$YKMAN_VENV"
    echo "pip install yubikey-manager into a venv failed on $(date -u +%FT%TZ)" >"$YKMAN_VENV.unavailable"
  fi
fi

# Current Python clients from the Python package index (newest releases:
# grpcio, python-tuf, securesystemslib, python-pkcs11, ...), in one venv the
# tests share: tests/clients/python/requirements.txt. Reinstalled when that
# file changes. Mandatory: a failure here fails the run, naming the package.
VENV="${SIGNER_E2E_VENV:-/usr/local/lib/signer-e2e-venv}"
REQS=tests/clients/python/requirements.txt
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$VENV")" ]; then
    echo "install-deps: missing $VENV; run as root, or:" >&2
    echo "  /usr/bin/python3 -m venv $VENV && $VENV/bin/pip install -r $REQS" >&2
    exit 1
  fi
  echo "install-deps: installing the Python clients of $REQS into $VENV" >&2
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV" </dev/null
  while read -r pkg; do
    case "$pkg" in '' | '#'*) continue ;; esac
    if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "$pkg" </dev/null; then
      echo "install-deps: cannot install the Python package '$pkg' from the Python package index into $VENV" >&2
      exit 1
    fi
  done <"$REQS"
  echo "$want" >"$STAMP"
fi

# Node.js gRPC clients from the npm registry (tests/clients/node/package.json),
# into a local folder outside the clone, reinstalled when that file changes.
NODE_DIR="${SIGNER_E2E_NODE:-/usr/local/lib/signer-e2e-node}"
PKG=tests/clients/node/package.json
want="$(sha256sum "$PKG" | cut -d' ' -f1)"
if [ ! -d "$NODE_DIR/node_modules/@grpc/grpc-js" ] || [ "$(cat "$NODE_DIR/.package.sha256" 2>/dev/null)" != "$want" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: npm not found (needed for the Node.js gRPC client test): apt-get install npm" >&2
    exit 1
  fi
  echo "install-deps: installing the Node.js clients of $PKG into $NODE_DIR" >&2
  rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
  cp "$PKG" "$NODE_DIR/package.json"
  if ! (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund </dev/null >/dev/null); then
    echo "install-deps: cannot install @grpc/grpc-js and @grpc/proto-loader from the npm registry into $NODE_DIR" >&2
    exit 1
  fi
  echo "$want" >"$NODE_DIR/.package.sha256"
fi

# vpcd with one slot per reader.conf entry (Debian's has two, and ykman
# counts the empty second reader named "Yubico YubiKey ..." as a second
# YubiKey), built from the Debian source of the installed vsmartcard-vpcd:
# the pcscd sandbox's default driver (tests/src/pcsc_sandbox.rs). Mandatory.
if ! tests/scripts/vpcd-one-slot.sh >/dev/null; then
  echo "install-deps: cannot build the one-slot vpcd driver (tests/scripts/vpcd-one-slot.sh)" >&2
  exit 1
fi

# Yubico's PIV device test suite against the emulated card
# (tests/tests/ykman_test_piv.rs): yubikey-manager 5.9.2's source
# distribution from the Python package index (its tests/ are only in the
# sdist; sha256 pinned here), unpacked into $YKT_VENV/src/, and the pinned
# packages of tests/clients/python/requirements-ykman-test-piv.txt (ykman,
# pytest, makefun, ...) in their own venv. Reinstalled when that file or
# the pinned sdist changes. Mandatory: a failure fails the run, naming it.
YKT_VENV="${SIGNER_YKMAN_TESTS_VENV:-/usr/local/lib/signer-e2e-ykman-tests}"
YKT_REQS=tests/clients/python/requirements-ykman-test-piv.txt
YKT_SDIST=yubikey_manager-5.9.2
YKT_SDIST_SHA256=9584c7377449e6487140da6c3f13a289e618b0023c8414be91c1c212fce3c473
YKT_STAMP="$YKT_VENV/.requirements.sha256"
want="$(cat "$YKT_REQS" <(echo "$YKT_SDIST $YKT_SDIST_SHA256") | sha256sum | cut -d' ' -f1)"
if [ ! -e "$YKT_VENV/src/$YKT_SDIST/tests/device/test_piv.py" ] || [ ! -x "$YKT_VENV/bin/pytest" ] ||
  [ "$(cat "$YKT_STAMP" 2>/dev/null)" != "$want" ]; then
  if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$YKT_VENV")" ]; then
    echo "install-deps: missing $YKT_VENV (Yubico's test_piv.py and pytest); run as root" >&2
    exit 1
  fi
  echo "install-deps: installing $YKT_SDIST's device tests and $YKT_REQS into $YKT_VENV" >&2
  rm -rf "$YKT_VENV"
  /usr/bin/python3 -m venv "$YKT_VENV" </dev/null
  if ! "$YKT_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$YKT_REQS" </dev/null; then
    echo "install-deps: cannot install the pinned packages of $YKT_REQS (versions and sha256 hashes) from the Python package index into $YKT_VENV" >&2
    exit 1
  fi
  if ! "$YKT_VENV/bin/pip" check; then
    echo "install-deps: $YKT_REQS is incomplete: a dependency above is missing from it" >&2
    exit 1
  fi
  mkdir -p "$YKT_VENV/src"
  if ! "$YKT_VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$YKT_VENV/src" "yubikey-manager==5.9.2" </dev/null; then
    echo "install-deps: cannot download the yubikey-manager 5.9.2 source distribution (its tests/) from the Python package index" >&2
    exit 1
  fi
  if [ "$(sha256sum "$YKT_VENV/src/$YKT_SDIST.tar.gz" | cut -d' ' -f1)" != "$YKT_SDIST_SHA256" ]; then
    echo "install-deps: $YKT_VENV/src/$YKT_SDIST.tar.gz does not have the pinned sha256 $YKT_SDIST_SHA256" >&2
    exit 1
  fi
  tar -xzf "$YKT_VENV/src/$YKT_SDIST.tar.gz" -C "$YKT_VENV/src"
  if [ ! -e "$YKT_VENV/src/$YKT_SDIST/tests/device/test_piv.py" ]; then
    echo "install-deps: $YKT_SDIST.tar.gz has no tests/device/test_piv.py" >&2
    exit 1
  fi
  echo "$want" >"$YKT_STAMP"
fi
