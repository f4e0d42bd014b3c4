#!/usr/bin/env bash
# The test command (README.md): formatting, lints, docs and every test of the
# workspace. Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
    if need apt-get; then
        echo "test.sh: installing $*" >&2
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
    else
        echo "test.sh: $* missing and no apt-get to install it" >&2
        exit 2
    fi
}
need git || apt_install git
need node || apt_install nodejs
# The language worker tests install fnhost's workers: npm ci and pip.
need npm || apt_install npm
need python3 || apt_install python3
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
need curl || apt_install curl
need hg || apt_install mercurial
need pkg-config || apt_install pkg-config
# The ssh:// source test runs an OpenSSH server on 127.0.0.1.
[ -x /usr/sbin/sshd ] || apt_install openssh-server
# The portal's browser test drives Debian's Chromium (never a downloaded one).
need chromium || apt_install chromium chromium-driver
# git2's https support links the system OpenSSL.
if need dpkg && ! dpkg -s libssl-dev >/dev/null 2>&1; then apt_install libssl-dev; fi

export CARGO_TERM_COLOR=never
# A fresh clone gains nothing from incremental compilation and it doubles the
# build folder; CI machines share their disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, all features)"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
echo "== cargo clippy (no features)"
cargo clippy --workspace --quiet -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
echo "== lint the JavaScript and Python fnhost ships"
js_files=$(find workers/node examples/apps fnhost-core/src fnhost-deploy/src/manage/portal/static fnhost-cli/tests/portal_e2e -name node_modules -prune -o \( -name '*.js' -o -name '*.mjs' -o -name '*.cjs' \) -print)
for f in $js_files; do node --check "$f"; done
lint_venv=target/lint-venv
if [ ! -x "$lint_venv/bin/pyflakes" ]; then
    python3 -m venv "$lint_venv" >/dev/null 2>&1 || rm -rf "$lint_venv"
    if [ -x "$lint_venv/bin/pip" ]; then
        "$lint_venv/bin/pip" install -q --disable-pip-version-check pyflakes==3.4.0
    fi
fi
py_files=$(find workers/python examples/apps -name deps -prune -o -name '*.py' -print)
if [ -x "$lint_venv/bin/pyflakes" ]; then
    "$lint_venv/bin/pyflakes" $py_files
else
    echo "test.sh: NOTE: no venv for pyflakes; checking Python syntax only" >&2
    python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' $py_files
fi
echo "== cargo test"
# The protocol test compares fnhost's FunctionRpc file with the descriptor
# Microsoft publishes in this wheel.
wheel_dir=target/fnhost-test-cache
wheel="$wheel_dir/azure_functions_runtime_v1-1.2.0-py3-none-any.whl"
if [ ! -f "$wheel" ]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --ignore-requires-python azure-functions-runtime-v1==1.2.0 -d "$wheel_dir"
fi
export FNHOST_PROTO_WHEEL="$PWD/$wheel"
# The queue trigger tests run a real Azurite (pinned: 3.35.0 is the newest
# that runs on Node.js 20). The tests install it themselves when missing;
# doing it here keeps npm's output out of the test run.
azurite_version=3.35.0
azurite_dir="$PWD/target/fnhost-test-cache/azurite-$azurite_version"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-queue" ]; then
    echo "test.sh: installing azurite@$azurite_version into $azurite_dir" >&2
    rm -rf "$azurite_dir.installing"
    mkdir -p "$azurite_dir.installing"
    npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
        --prefix "$azurite_dir.installing" "azurite@$azurite_version" >/dev/null
    rm -rf "$azurite_dir"
    mv "$azurite_dir.installing" "$azurite_dir"
fi
export FNHOST_AZURITE_DIR="$azurite_dir"
# The portal's browser test: playwright-core (drives the system Chromium
# through executablePath; --ignore-scripts: no download of any kind) and
# axe-core, pinned.
portal_e2e_dir="$PWD/target/fnhost-test-cache/portal-e2e-pw1.65.2-axe4.14.1"
if [ ! -f "$portal_e2e_dir/node_modules/axe-core/axe.min.js" ] || [ ! -f "$portal_e2e_dir/node_modules/playwright-core/package.json" ]; then
    echo "test.sh: installing playwright-core and axe-core into $portal_e2e_dir" >&2
    rm -rf "$portal_e2e_dir.installing"
    mkdir -p "$portal_e2e_dir.installing"
    npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
        --prefix "$portal_e2e_dir.installing" playwright-core@1.65.2 axe-core@4.14.1 >/dev/null
    rm -rf "$portal_e2e_dir"
    mv "$portal_e2e_dir.installing" "$portal_e2e_dir"
fi
export FNHOST_PORTAL_E2E_DIR="$portal_e2e_dir"
corpus="${FNHOST_CORPUS:-../shared/corpus}"
if [ ! -f "$corpus/expected.json" ]; then
    echo "test.sh: NOTE: no corpus at $corpus: the corpus tests skip (they fail under CI=true)" >&2
fi
cargo test --workspace --all-features
echo "== examples"
for example in $(ls examples/examples | sed 's/\.rs$//'); do
    echo "-- example $example"
    cargo run --quiet -p fnhost-examples --example "$example"
done
echo "== benchmarks, quick smoke run"
# Keep cargo's own errors visible: only the figures are filtered.
FNHOST_BENCH_QUICK=1 cargo bench --workspace --quiet 2>&1 | grep -E "^==|ratio|target|overhead|req/s|error|warning|panicked"
