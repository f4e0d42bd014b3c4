#!/usr/bin/env python3
"""fnhost's Python language worker.

A small process that speaks the Azure Functions language worker protocol
(FunctionRpc: one bidirectional gRPC stream of StreamingMessage) with the host,
and leaves the programming model to Microsoft's published libraries:

* ``azure_functions_runtime`` (PyPI ``azure-functions-runtime``) for the v2
  model, an app with ``function_app.py`` (or ``$PYTHON_SCRIPT_FILE_NAME``);
* ``azure_functions_runtime_v1`` (PyPI ``azure-functions-runtime-v1``) for the
  v1 model, an app with one ``function.json`` + ``__init__.py`` per function.

The host (the gRPC server) starts this file as Azure's host starts a language
worker::

    python3 worker.py --host 127.0.0.1 --port N --workerId W --requestId R
        --grpcMaxMessageLength 2147483647 --functions-uri http://127.0.0.1:N/
        --functions-worker-id W --functions-request-id R
        --functions-grpc-max-message-length 2147483647

with the app root as working directory. Either family of flags alone is
enough. The worker dials the host, sends StartStream first and then answers
the host's requests until the stream ends or the host sends WorkerTerminate.

Its dependencies live in ``deps/`` beside this file, put there by install.py
(which also generates the protocol classes from function_rpc.proto).
"""

import argparse
import asyncio
import contextvars
import importlib
import logging
import os
import sys
import threading
import traceback
import urllib.parse

WORKER_DIR = os.path.dirname(os.path.abspath(__file__))
DEPS_DIR = os.path.join(WORKER_DIR, "deps")

V2_LIBRARY = "azure_functions_runtime"
V1_LIBRARY = "azure_functions_runtime_v1"
DEFAULT_SCRIPT_FILE = "function_app.py"

# Seconds to wait for the first connection to the host.
DEFAULT_CONNECT_TIMEOUT = 10.0
# Seconds granted to in-flight invocations on WorkerTerminate when the host
# gives no grace period.
DEFAULT_TERMINATE_GRACE = 5.0

# Capabilities this worker adds to (or removes from) what the library
# declares. Shared memory needs transport support that this worker does not
# have, so it is never declared.
ADDED_CAPABILITIES = {
    "WorkerStatus": "true",
    "HandlesWorkerTerminateMessage": "true",
}
REMOVED_CAPABILITIES = ("SharedMemoryDataTransfer",)

# Loggers whose records are the worker's own (RpcLog.log_category System);
# every other logger is the app's (User).
SYSTEM_LOGGER_PREFIXES = (
    "azure.functions",
    "azure_functions_runtime",
    "azurefunctions",
    "fnhost.worker",
)
# Records from these never go over the stream they describe (they go to
# stderr), so that logging a transport problem cannot feed on itself.
STDERR_ONLY_LOGGER_PREFIXES = ("grpc", "asyncio")

log = logging.getLogger("fnhost.worker")


def stderr(message):
    try:
        print("fnhost python worker: " + message, file=sys.stderr, flush=True)
    except Exception:
        pass


def die(message, status=1):
    stderr("error: " + message)
    sys.exit(status)


# --- command line -----------------------------------------------------------


class Settings:
    def __init__(self, host, port, worker_id, request_id, max_message_length):
        self.host = host
        self.port = port
        self.worker_id = worker_id
        self.request_id = request_id
        self.max_message_length = max_message_length

    @property
    def target(self):
        host = self.host
        if ":" in host and not host.startswith("["):
            host = "[" + host + "]"
        return "%s:%d" % (host, self.port)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="worker.py",
        description="fnhost's Python language worker (FunctionRpc client).",
        allow_abbrev=False)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workerId")
    parser.add_argument("--requestId")
    parser.add_argument("--grpcMaxMessageLength", type=int)
    parser.add_argument("--functions-uri", dest="functions_uri")
    parser.add_argument("--functions-worker-id", dest="functions_worker_id")
    parser.add_argument("--functions-request-id", dest="functions_request_id")
    parser.add_argument("--functions-grpc-max-message-length", type=int,
                        dest="functions_grpc_max_message_length")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        stderr("ignoring unknown arguments: " + " ".join(unknown))

    host, port = args.host, args.port
    if (host is None or port is None) and args.functions_uri:
        uri = urllib.parse.urlsplit(args.functions_uri)
        try:
            uri_port = uri.port
        except ValueError:
            uri_port = None
        if not uri.hostname or uri_port is None:
            parser.error("--functions-uri %r has no host and port" % args.functions_uri)
        host = host if host is not None else uri.hostname
        port = port if port is not None else uri_port
    if host is None or port is None:
        parser.error("the host's address is missing: pass --host and --port, "
                     "or --functions-uri")
    if not 0 < port < 65536:
        parser.error("port %d is out of range" % port)

    worker_id = args.workerId or args.functions_worker_id
    if not worker_id:
        parser.error("the worker id is missing: pass --workerId or --functions-worker-id")
    request_id = args.requestId or args.functions_request_id or ""

    max_length = args.grpcMaxMessageLength
    if max_length is None:
        max_length = args.functions_grpc_max_message_length
    if max_length is None or max_length <= 0 or max_length > 2147483647:
        max_length = 2147483647
    return Settings(host, port, worker_id, request_id, max_length)


# --- module search path ------------------------------------------------------


def app_root_from_env():
    for name in ("FUNCTIONS_APPLICATION_DIRECTORY", "AzureWebJobsScriptRoot"):
        value = os.environ.get(name)
        if value and os.path.isdir(value):
            return os.path.abspath(value)
    return os.getcwd()


def app_package_dirs(app_root):
    """The app's own installed packages, Azure's convention."""
    base = os.path.join(app_root, ".python_packages", "lib")
    candidates = [
        os.path.join(base, "site-packages"),
        os.path.join(base, "python%d.%d" % sys.version_info[:2], "site-packages"),
    ]
    return [path for path in candidates if os.path.isdir(path)]


def set_up_sys_path(app_root):
    """App root first (app modules win), then the worker's deps (its gRPC and
    protobuf must be the ones its generated classes were made for), then the
    app's .python_packages, then the interpreter's own path."""
    here = os.path.normcase(WORKER_DIR)
    rest = [p for p in sys.path
            if os.path.normcase(os.path.abspath(p) if p else os.getcwd()) != here]
    front = [app_root, DEPS_DIR] + app_package_dirs(app_root)
    sys.path[:] = front + [p for p in rest if p not in front]


def enter_app(request):
    """The app folder of an init or reload request, put first on the import
    path."""
    app_dir = request.function_app_directory or app_root_from_env()
    put_app_first(app_dir)
    return app_dir


def put_app_first(app_dir):
    """Called on init and reload with the host's function_app_directory."""
    app_dir = os.path.abspath(app_dir)
    if sys.path and sys.path[0] == app_dir:
        return
    if app_dir in sys.path:
        sys.path.remove(app_dir)
    sys.path.insert(0, app_dir)
    for path in app_package_dirs(app_dir):
        if path not in sys.path:
            index = sys.path.index(DEPS_DIR) + 1 if DEPS_DIR in sys.path else 1
            sys.path.insert(index, path)


def import_transport():
    try:
        import grpc
        import grpc.aio  # noqa: F401  (imported for grpc.aio below)
        import function_rpc_pb2
        import function_rpc_pb2_grpc
    except ImportError as error:
        die("cannot import the worker's dependencies (%s); run `%s install.py` in %s"
            % (error, os.path.basename(sys.executable) or "python3", WORKER_DIR))
    return grpc, function_rpc_pb2, function_rpc_pb2_grpc


# --- the library's request object -------------------------------------------


class LibraryRequest:
    """What the runtime libraries' handlers take: a name, the incoming
    StreamingMessage and a few properties (the message classes and the host)."""

    __slots__ = ("name", "request", "properties")

    def __init__(self, name, request, properties):
        self.name = name
        self.request = request
        self.properties = properties


# --- logging -----------------------------------------------------------------

_invocation_id = contextvars.ContextVar("fnhost_invocation_id", default=None)


def is_system_logger(name):
    return name.startswith(SYSTEM_LOGGER_PREFIXES)


class RpcLogHandler(logging.Handler):
    """Turns Python logging records into RpcLog messages on the stream, or
    into stderr lines while there is no stream."""

    def __init__(self, worker):
        super().__init__(logging.NOTSET)
        self.worker = worker
        self.setFormatter(logging.Formatter("%(message)s"))
        self.stderr_formatter = logging.Formatter(
            "fnhost python worker: %(levelname)s %(name)s: %(message)s")

    def emit(self, record):
        try:
            worker = self.worker
            if (not worker.stream_up
                    or record.name.startswith(STDERR_ONLY_LOGGER_PREFIXES)):
                sys.stderr.write(self.stderr_formatter.format(record) + "\n")
                sys.stderr.flush()
                return
            worker.send_log(record, self.format(record))
        except Exception:
            self.handleError(record)


def rpc_level(protos, levelno):
    level = protos.RpcLog
    if levelno >= logging.CRITICAL:
        return level.Critical
    if levelno >= logging.ERROR:
        return level.Error
    if levelno >= logging.WARNING:
        return level.Warning
    if levelno >= logging.INFO:
        return level.Information
    if levelno >= logging.DEBUG:
        return level.Debug
    return level.Trace


def rpc_exception(protos, error):
    try:
        message = "%s: %s" % (type(error).__name__, error)
    except Exception:
        message = type(error).__name__
    try:
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        trace = ""
    return protos.RpcException(message=message, stack_trace=trace, type=type(error).__name__)


def env_true(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


# --- the worker ----------------------------------------------------------------


class Worker:
    def __init__(self, settings, grpc, protos, services):
        self.settings = settings
        self.grpc = grpc
        self.protos = protos
        self.services = services
        self.loop = None
        self.loop_thread = None
        self.outbound = None
        self.stream_up = False
        self.library = None
        self.library_name = None
        self.function_names = {}   # function_id -> function name
        self.in_flight = {}        # invocation_id -> function name
        self.tasks = set()
        self.control_lock = None
        self.call = None
        self.terminating = False

    # -- sending -----------------------------------------------------------

    def message(self, **content):
        return self.protos.StreamingMessage(request_id=self.settings.request_id, **content)

    def send(self, message):
        """Queue a message for the host; callable from any thread."""
        loop = self.loop
        if loop is None or self.outbound is None:
            return
        if threading.current_thread() is self.loop_thread:
            self.outbound.put_nowait(message)
        else:
            try:
                loop.call_soon_threadsafe(self.outbound.put_nowait, message)
            except RuntimeError:
                pass  # the loop is closed: the worker is exiting

    async def outbound_messages(self):
        yield self.message(start_stream=self.protos.StartStream(
            worker_id=self.settings.worker_id))
        while True:
            message = await self.outbound.get()
            if message is None:
                return
            yield message

    # -- logs ----------------------------------------------------------------

    def current_invocation_id(self):
        invocation_id = _invocation_id.get()
        if invocation_id:
            return invocation_id
        library = self.library
        if library is None:
            return None
        # The library sets its own context variable in the thread that runs a
        # sync function.
        library_cv = getattr(library, "invocation_id_cv", None)
        if library_cv is not None:
            invocation_id = library_cv.get()
            if invocation_id:
                return invocation_id
        # Threads the app starts itself can name their invocation with
        # context.thread_local_storage.invocation_id, as on Azure. The loop
        # thread's value is meaningless (many invocations share it).
        if threading.current_thread() is not self.loop_thread:
            context_module = sys.modules.get(self.library_name + ".bindings.context")
            local = getattr(context_module, "_invocation_id_local", None)
            invocation_id = getattr(local, "invocation_id", None)
            if invocation_id:
                return invocation_id
        return None

    def send_log(self, record, text):
        protos = self.protos
        invocation_id = self.current_invocation_id()
        system = is_system_logger(record.name)
        function_name = self.in_flight.get(invocation_id) if invocation_id else None
        if function_name:
            category = "Function.%s" % function_name if system else \
                "Function.%s.User" % function_name
        else:
            category = record.name
        rpc_log = protos.RpcLog(
            invocation_id=invocation_id or "",
            category=category,
            level=rpc_level(protos, record.levelno),
            message=text,
            log_category=protos.RpcLog.System if system else protos.RpcLog.User,
        )
        if record.exc_info and record.exc_info[1] is not None:
            rpc_log.exception.CopyFrom(rpc_exception(protos, record.exc_info[1]))
        self.send(self.message(rpc_log=rpc_log))

    # -- the stream ------------------------------------------------------------

    async def run(self):
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.current_thread()
        self.outbound = asyncio.Queue()
        self.control_lock = asyncio.Lock()
        grpc = self.grpc
        settings = self.settings

        options = [
            ("grpc.max_send_message_length", settings.max_message_length),
            ("grpc.max_receive_message_length", settings.max_message_length),
        ]
        channel = grpc.aio.insecure_channel(settings.target, options=options)
        timeout = DEFAULT_CONNECT_TIMEOUT
        try:
            timeout = float(os.environ.get("FNHOST_WORKER_CONNECT_TIMEOUT", timeout))
        except ValueError:
            pass
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            stderr("error: cannot connect to the host at %s (nothing answered within %gs)"
                   % (settings.target, timeout))
            await channel.close(grace=None)
            return 1

        stub = self.services.FunctionRpcStub(channel)
        self.call = stub.EventStream(self.outbound_messages())
        self.stream_up = True
        status = 0
        try:
            async for message in self.call:
                self.dispatch(message)
            if not self.terminating:
                stderr("the host closed the stream; exiting")
        except asyncio.CancelledError:
            if not self.terminating:
                raise
        except grpc.aio.AioRpcError as error:
            if not self.terminating:
                stderr("error: the stream to the host at %s ended: %s %s"
                       % (settings.target, error.code().name, error.details()))
                status = 1
        finally:
            self.stream_up = False
        try:
            await channel.close(grace=None)
        except Exception:
            pass
        return status

    def spawn(self, coroutine):
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.task_done)
        return task

    def task_done(self, task):
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("internal error in the worker: %s", error,
                      exc_info=(type(error), error, error.__traceback__))

    def dispatch(self, message):
        kind = message.WhichOneof("content")
        if kind == "invocation_request":
            self.spawn(self.on_invocation(message))
        elif kind == "worker_status_request":
            self.send(self.message(worker_status_response=self.protos.WorkerStatusResponse()))
        elif kind == "worker_init_request":
            self.spawn(self.control(self.on_worker_init, message))
        elif kind == "functions_metadata_request":
            self.spawn(self.control(self.on_functions_metadata, message))
        elif kind == "function_load_request":
            self.spawn(self.control(self.on_function_load, message))
        elif kind == "function_environment_reload_request":
            self.spawn(self.control(self.on_environment_reload, message))
        elif kind == "worker_terminate":
            self.spawn(self.on_terminate(message))
        else:
            log.warning("ignoring a %s message (not supported by this worker)", kind)

    async def control(self, handler, message):
        # Start-up messages are handled one at a time, in arrival order.
        async with self.control_lock:
            await handler(message)

    def library_properties(self):
        return {"protos": self.protos, "host": self.settings.host}

    def library_request(self, name, message):
        return LibraryRequest(name, message, self.library_properties())

    def failure(self, error=None, message=None):
        protos = self.protos
        if error is None:
            error = RuntimeError(message)
        return protos.StatusResult(status=protos.StatusResult.Failure,
                                   exception=rpc_exception(protos, error))

    def adjust_capabilities(self, capabilities):
        for name in REMOVED_CAPABILITIES:
            if name in capabilities:
                del capabilities[name]
        for name, value in ADDED_CAPABILITIES.items():
            capabilities[name] = value

    # -- start-up ------------------------------------------------------------

    def choose_library(self, app_dir):
        script = os.environ.get("PYTHON_SCRIPT_FILE_NAME") or DEFAULT_SCRIPT_FILE
        if os.path.isfile(os.path.join(app_dir, script)):
            return V2_LIBRARY
        return V1_LIBRARY

    def load_library(self, app_dir):
        if self.library is not None:
            return self.library
        name = self.choose_library(app_dir)
        library = importlib.import_module(name)
        library.start_threadpool_executor()
        self.library, self.library_name = library, name
        log.info("using %s for the app in %s", name, app_dir)
        return library

    async def start_library(self, app_dir, request_name, message):
        """Init and environment reload alike: loads the library for the app
        in app_dir (once), passes it the request and, when it succeeds,
        adjusts the capabilities the library announces."""
        library = self.load_library(app_dir)
        handler = getattr(library, request_name)
        response = await handler(self.library_request(request_name, message))
        if response.result.status == self.protos.StatusResult.Success:
            self.adjust_capabilities(response.capabilities)
        return response

    async def ask_library(self, request_name, message, kind, failed):
        """Passes a request of this kind to the library; before init, or
        when the library raises, the failed response failed(status) makes."""
        if self.library is None:
            return failed(self.failure(message=f"{kind} before WorkerInitRequest"))
        try:
            handler = getattr(self.library, request_name)
            return await handler(self.library_request(request_name, message))
        except Exception as error:
            return failed(self.failure(error))

    async def on_worker_init(self, message):
        protos = self.protos
        app_dir = enter_app(message.worker_init_request)
        try:
            response = await self.start_library(app_dir, "worker_init_request", message)
        except Exception as error:
            log.error("worker init failed: %s", error)
            response = protos.WorkerInitResponse(result=self.failure(error))
        response.worker_metadata.custom_properties["fnhost.worker"] = "python"
        if self.library_name:
            response.worker_metadata.custom_properties["fnhost.library"] = self.library_name
        self.send(self.message(worker_init_response=response))

    async def on_functions_metadata(self, message):
        response = await self.ask_library(
            "functions_metadata_request", message, "FunctionsMetadataRequest",
            lambda status: self.protos.FunctionMetadataResponse(result=status))
        for metadata in response.function_metadata_results:
            if metadata.function_id:
                self.function_names[metadata.function_id] = metadata.name
        self.send(self.message(function_metadata_response=response))

    async def on_function_load(self, message):
        request = message.function_load_request
        if request.metadata.name:
            self.function_names[request.function_id] = request.metadata.name
        response = await self.ask_library(
            "function_load_request", message, "FunctionLoadRequest",
            lambda status: self.protos.FunctionLoadResponse(
                function_id=request.function_id, result=status))
        self.send(self.message(function_load_response=response))

    async def on_environment_reload(self, message):
        protos = self.protos
        app_dir = enter_app(message.function_environment_reload_request)
        try:
            response = await self.start_library(
                app_dir, "function_environment_reload_request", message)
        except Exception as error:
            response = protos.FunctionEnvironmentReloadResponse(result=self.failure(error))
        self.send(self.message(function_environment_reload_response=response))

    # -- invocations -----------------------------------------------------------

    async def on_invocation(self, message):
        protos = self.protos
        request = message.invocation_request
        invocation_id = request.invocation_id
        _invocation_id.set(invocation_id)  # this task's context only
        self.in_flight[invocation_id] = self.function_names.get(request.function_id, "")
        try:
            # Wait for start-up messages that arrived before this one.
            async with self.control_lock:
                pass
            if self.library is None:
                raise RuntimeError("InvocationRequest before WorkerInitRequest")
            response = await self.library.invocation_request(
                self.library_request("invocation_request", message))
        except Exception as error:
            response = protos.InvocationResponse(
                invocation_id=invocation_id, result=self.failure(error))
        finally:
            self.in_flight.pop(invocation_id, None)
        self.send(self.message(invocation_response=response))

    # -- shutdown --------------------------------------------------------------

    async def on_terminate(self, message):
        grace = message.worker_terminate.grace_period
        seconds = grace.seconds + grace.nanos / 1e9 if message.worker_terminate.HasField(
            "grace_period") else DEFAULT_TERMINATE_GRACE
        log.info("the host asked the worker to terminate (grace %gs, %d invocations in flight)",
                 seconds, len(self.in_flight))
        current = asyncio.current_task()
        pending = [t for t in self.tasks if t is not current]
        if pending:
            # Leave a little of the grace period for the responses to go out.
            await asyncio.wait(pending, timeout=max(seconds * 0.9, 0))
        self.terminating = True
        self.outbound.put_nowait(None)  # half-close after what is queued
        await asyncio.sleep(0.05)
        if self.call is not None:
            self.call.cancel()


def configure_logging(worker):
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(RpcLogHandler(worker))
    root.setLevel(logging.DEBUG if env_true("PYTHON_ENABLE_DEBUG_LOGGING") else logging.INFO)
    logging.captureWarnings(True)


def main(argv=None):
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    app_root = app_root_from_env()
    set_up_sys_path(app_root)
    grpc, protos, services = import_transport()

    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass

    worker = Worker(settings, grpc, protos, services)
    configure_logging(worker)
    try:
        status = asyncio.run(worker.run())
    except KeyboardInterrupt:
        status = 130
    # Threads of sync functions still running (a function that sleeps) must
    # not keep the process alive once the host is gone: leave at once.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


if __name__ == "__main__":
    main()
