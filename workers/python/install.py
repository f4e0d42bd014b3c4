#!/usr/bin/env python3
"""Install fnhost's Python language worker in the folder that holds this file.

Run as `python3 install.py` inside an installed worker folder, which holds
worker.py, requirements.txt, install.py, worker.config.json and
function_rpc.proto. It:

1. pip-installs requirements.txt into a fresh `deps.new/` (pip's --target),
2. generates `function_rpc_pb2.py` and `function_rpc_pb2_grpc.py` there from
   function_rpc.proto with grpc_tools.protoc,
3. checks that the result imports, then swaps it in as `deps/`.

A stamp in deps/ records what was installed (the requirements, the .proto and
the Python version); a second run with the same inputs does nothing. Use
`--force` to reinstall anyway. A failed run leaves any previous deps/ as it
was. Exit status is 0 on success and 1 on failure, with the reason on stderr.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
PROTO = os.path.join(HERE, "function_rpc.proto")
DEPS = os.path.join(HERE, "deps")
STAGING = os.path.join(HERE, "deps.new")
RETIRED = os.path.join(HERE, "deps.old")
STAMP_NAME = ".fnhost-worker-stamp"

# Imported in a child process once everything is installed: the worker's own
# imports, so a broken install is found now rather than at the first launch.
SMOKE_TEST = (
    "import grpc, google.protobuf, function_rpc_pb2, function_rpc_pb2_grpc\n"
    "import azure.functions, azure_functions_runtime, azure_functions_runtime_v1\n"
    "assert hasattr(function_rpc_pb2_grpc, 'FunctionRpcStub')\n"
)


class InstallError(Exception):
    pass


def say(message):
    print("fnhost python worker install: " + message, flush=True)


def stamp_text():
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, PROTO):
        with open(path, "rb") as f:
            digest.update(f.read())
        digest.update(b"\0")
    version = "%d.%d" % sys.version_info[:2]
    return "python=%s\ninputs=%s\n" % (version, digest.hexdigest())


def up_to_date(stamp):
    try:
        with open(os.path.join(DEPS, STAMP_NAME), encoding="utf-8") as f:
            return f.read() == stamp
    except OSError:
        return False


def run(command, what, env=None, show=None):
    say("running: " + (show or " ".join(command)))
    try:
        status = subprocess.call(command, cwd=HERE, env=env)
    except OSError as error:
        raise InstallError("%s: cannot run %s: %s" % (what, command[0], error))
    if status != 0:
        raise InstallError("%s failed (exit status %d)" % (what, status))


def env_with_path(folder):
    env = dict(os.environ)
    env["PYTHONPATH"] = folder
    # The install must not pick up a user's site-packages or pip settings
    # that redirect the target.
    env.pop("PIP_TARGET", None)
    env.pop("PIP_PREFIX", None)
    env.pop("PIP_USER", None)
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("PIP_ROOT_USER_ACTION", "ignore")
    return env


def remove_tree(path):
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def check_inputs():
    for path in (REQUIREMENTS, PROTO):
        if not os.path.isfile(path):
            raise InstallError("missing %s (the worker folder is incomplete)" % path)


def install():
    check = subprocess.call(
        [sys.executable, "-m", "pip", "--version"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if check != 0:
        raise InstallError(
            "pip is not available for %s; install it (on Debian: apt-get install "
            "python3-pip) and run install.py again" % sys.executable)

    remove_tree(STAGING)
    os.makedirs(STAGING)
    env = env_with_path(STAGING)

    run([sys.executable, "-m", "pip", "install",
         "--target", STAGING,
         "--ignore-requires-python",
         "--no-input",
         "--disable-pip-version-check",
         "--no-warn-script-location",
         "--progress-bar", "on",
         "-r", REQUIREMENTS],
        "pip install", env=env)

    # grpc_tools.protoc run as a module adds its bundled google/protobuf
    # include folder (duration.proto, timestamp.proto) by itself.
    run([sys.executable, "-m", "grpc_tools.protoc",
         "-I", HERE,
         "--python_out", STAGING,
         "--grpc_python_out", STAGING,
         PROTO],
        "generating the message classes from function_rpc.proto", env=env)
    for name in ("function_rpc_pb2.py", "function_rpc_pb2_grpc.py"):
        if not os.path.isfile(os.path.join(STAGING, name)):
            raise InstallError("protoc did not write %s" % name)

    run([sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, %r)\n" % STAGING + SMOKE_TEST],
        "checking the installed worker dependencies import",
        show="a check that grpc, the protocol classes and the runtime libraries import")

    with open(os.path.join(STAGING, STAMP_NAME), "w", encoding="utf-8") as f:
        f.write(stamp_text())

    # Swap the new folder in; the old one is removed only once the new one is
    # in place.
    remove_tree(RETIRED)
    if os.path.lexists(DEPS):
        os.rename(DEPS, RETIRED)
    os.rename(STAGING, DEPS)
    remove_tree(RETIRED)


def main():
    parser = argparse.ArgumentParser(
        description="Install the dependencies of fnhost's Python language worker "
                    "into ./deps and generate its protocol classes.")
    parser.add_argument("--force", action="store_true",
                        help="reinstall even when deps/ is up to date")
    args = parser.parse_args()

    if sys.version_info < (3, 10):
        print("fnhost python worker install: error: Python 3.10 or newer is needed, "
              "this is %s" % sys.version.split()[0], file=sys.stderr)
        return 1

    try:
        check_inputs()
        if not args.force and up_to_date(stamp_text()):
            say("deps/ is up to date (use --force to reinstall)")
            return 0
        say("installing into %s with %s" % (DEPS, sys.executable))
        install()
    except InstallError as error:
        print("fnhost python worker install: error: %s" % error, file=sys.stderr)
        remove_tree(STAGING)
        return 1
    except OSError as error:
        print("fnhost python worker install: error: %s" % error, file=sys.stderr)
        return 1
    say("done: dependencies and protocol classes are in %s" % DEPS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
