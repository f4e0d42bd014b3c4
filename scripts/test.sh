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
# The cluster tests with workers in network namespaces (fnhost-cli
# tests/cluster_netns.rs, as root) make them with iproute2's `ip`.
need ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || apt_install iproute2
need hg || apt_install mercurial
need pkg-config || apt_install pkg-config
# The ssh:// source test runs an OpenSSH server on 127.0.0.1.
[ -x /usr/sbin/sshd ] || apt_install openssh-server
# The portal's browser test drives Debian's Chromium (never a downloaded one).
need chromium || apt_install chromium chromium-driver
# git2's https support links the system OpenSSL.
if need dpkg && ! dpkg -s libssl-dev >/dev/null 2>&1; then apt_install libssl-dev; fi

# The cluster's state store tests (fnhost-cluster, fnhost-cli tests/cluster.rs)
# run against a PostgreSQL on 127.0.0.1:5432 (FNHOST_TEST_POSTGRES). When
# none is given, Debian's postgresql is installed and started if needed, and
# the tests get a role of their own with a password (CREATEDB: each test
# makes and drops its own database); pg_hba.conf is left as it is.
if [ -z "${FNHOST_TEST_POSTGRES:-}" ]; then
    if ! need pg_lsclusters; then apt_install postgresql postgresql-client; fi
    if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
        cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
        if [ -z "$cluster" ]; then
            pg_createcluster --start "$(ls /usr/lib/postgresql | sort -n | tail -1)" main >/dev/null
        else
            # shellcheck disable=SC2086
            pg_ctlcluster $cluster start
        fi
    fi
    pg_url="postgres://fnhost_test:fnhost-test@127.0.0.1:5432/postgres"
    if ! psql "$pg_url" -qAtc 'select 1' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then as_pg="runuser -u postgres --"; else as_pg="sudo -u postgres"; fi
        $as_pg psql -qAt -c "DO \$\$ BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fnhost_test') THEN
                ALTER ROLE fnhost_test LOGIN CREATEDB PASSWORD 'fnhost-test';
            ELSE
                CREATE ROLE fnhost_test LOGIN CREATEDB PASSWORD 'fnhost-test';
            END IF; END \$\$;" >/dev/null
    fi
    export FNHOST_TEST_POSTGRES="$pg_url"
fi

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
# Installs npm packages into the folder $1 (no scripts run), through
# $1.installing so that an interrupted install leaves no half-made folder.
npm_install_into() {
    local dir=$1
    shift
    rm -rf "$dir.installing"
    mkdir -p "$dir.installing"
    npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
        --prefix "$dir.installing" "$@" >/dev/null
    rm -rf "$dir"
    mv "$dir.installing" "$dir"
}
# The queue trigger tests run a real Azurite (pinned: 3.35.0 is the newest
# that runs on Node.js 20). The tests install it themselves when missing;
# doing it here keeps npm's output out of the test run.
azurite_version=3.35.0
azurite_dir="$PWD/target/fnhost-test-cache/azurite-$azurite_version"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-queue" ]; then
    echo "test.sh: installing azurite@$azurite_version into $azurite_dir" >&2
    npm_install_into "$azurite_dir" "azurite@$azurite_version"
fi
export FNHOST_AZURITE_DIR="$azurite_dir"
# The Kubernetes manifest tests validate offline (no cluster runs here):
# Kubernetes' own JSON schemas from kubernetes-validate (PyPI), KEDA's
# ScaledObject schema from @kubernetes-models/keda (npm), both pinned.
kube_dir="$PWD/target/fnhost-test-cache/kube-validate-1.37.0"
if [ ! -f "$kube_dir/installed" ]; then
    echo "test.sh: installing kubernetes-validate 1.37.0 into $kube_dir" >&2
    rm -rf "$kube_dir.installing"
    mkdir -p "$kube_dir.installing"
    python3 -m venv "$kube_dir.installing/venv" 2>/dev/null || {
        apt_install python3-venv
        python3 -m venv "$kube_dir.installing/venv"
    }
    "$kube_dir.installing/venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
    touch "$kube_dir.installing/installed"
    rm -rf "$kube_dir"
    # The tests run venv/bin/python3, which works from the final folder.
    mv "$kube_dir.installing" "$kube_dir"
fi
keda_dir="$PWD/target/fnhost-test-cache/keda-models-2.0.0"
if [ ! -f "$keda_dir/node_modules/@kubernetes-models/keda/package.json" ]; then
    echo "test.sh: installing @kubernetes-models/keda@2.0.0 into $keda_dir" >&2
    npm_install_into "$keda_dir" "@kubernetes-models/keda@2.0.0"
fi
export FNHOST_KUBE_VALIDATE_DIR="$kube_dir" FNHOST_KEDA_MODELS_DIR="$keda_dir"
# The RabbitMQ tests need a broker on 127.0.0.1:5672 (guest/guest, which
# RabbitMQ allows from loopback only): Debian's rabbitmq-server, installed
# and started here when nothing listens there. FNHOST_RABBITMQ_URI points
# the tests elsewhere.
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if [ -z "${FNHOST_RABBITMQ_URI:-}" ] && ! rabbit_up; then
    [ -x /usr/sbin/rabbitmq-server ] || apt_install rabbitmq-server
    echo "test.sh: starting rabbitmq-server on 127.0.0.1:5672" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=5672 \
        RABBITMQ_DIST_PORT=25672 ERL_EPMD_ADDRESS=127.0.0.1 \
        /usr/sbin/rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 120); do rabbit_up && break; sleep 0.5; done
    rabbit_up || { echo "test.sh: rabbitmq-server did not listen on 127.0.0.1:5672" >&2; exit 2; }
fi
# The portal's browser test: playwright-core (drives the system Chromium
# through executablePath; --ignore-scripts: no download of any kind) and
# axe-core, pinned.
portal_e2e_dir="$PWD/target/fnhost-test-cache/portal-e2e-pw1.65.2-axe4.14.1"
if [ ! -f "$portal_e2e_dir/node_modules/axe-core/axe.min.js" ] || [ ! -f "$portal_e2e_dir/node_modules/playwright-core/package.json" ]; then
    echo "test.sh: installing playwright-core and axe-core into $portal_e2e_dir" >&2
    npm_install_into "$portal_e2e_dir" playwright-core@1.65.2 axe-core@4.14.1
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
echo "== benchmarks, quick smoke run (dev profile)"
# Every benchmark runs once, small, with the test build's profile and
# features: it reuses what `cargo test` compiled (an optimised build of the
# workspace would take longer than the tests). Unoptimised figures mean
# nothing, so only the section headers and any error are shown; the
# figures come from `cargo bench` (release), docs/status.md has them.
FNHOST_BENCH_QUICK=1 cargo bench --workspace --all-features --profile dev --quiet 2>&1 | grep -E "^==|error|warning|panicked"
