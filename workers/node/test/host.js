'use strict';
// Helpers for the worker's tests: where the worker is, and a stand-in for
// fnhost's FunctionRpc server (an HTTP/2 gRPC server on loopback) that
// launches worker.js as fnhost does and exchanges messages with it.

const fs = require('fs');
const http2 = require('http2');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

/** The worker under test: $FNHOST_NODE_WORKER_DIR (an installed copy), else this checkout's. */
const WORKER_DIR = process.env.FNHOST_NODE_WORKER_DIR || path.join(__dirname, '..');

/** require() of a module of the worker under test (its lib/ or its dependencies). */
function workerRequire(name) {
    const { createRequire } = require('module');
    const req = createRequire(path.join(WORKER_DIR, 'worker.js'));
    try {
        return req(name);
    } catch (err) {
        if (err && err.code === 'MODULE_NOT_FOUND' && !name.startsWith('./')) {
            throw new Error(
                `${name} is not installed in ${WORKER_DIR}: run \`npm ci\` there, or set FNHOST_NODE_WORKER_DIR to an installed worker (${err.message})`
            );
        }
        throw err;
    }
}

const { encodeFrame, FrameReader, EVENT_STREAM_PATH } = workerRequire('./lib/rpc');
const { types } = workerRequire('./lib/messages');
const { decode } = workerRequire('./lib/protobuf');

/** A temporary folder with the given files ({relative path: content}). */
function writeApp(files) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fnhost-node-worker-test-'));
    for (const [rel, content] of Object.entries(files)) {
        const file = path.join(dir, rel);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, content);
    }
    return dir;
}

/**
 * A FunctionRpc server with one worker connected to it. `next(kind)` waits
 * for the worker's next message of that kind; `send(message)` writes one.
 */
class FakeHost {
    static async start(appDir, { extraArgs = [], env = {} } = {}) {
        const host = new FakeHost();
        await host.listen();
        host.launch(appDir, extraArgs, env);
        await host.connected;
        return host;
    }

    constructor() {
        this.received = [];
        this.waiters = [];
        this.stderr = '';
        this.server = http2.createServer();
        this.connected = new Promise((resolve) => {
            this.server.on('stream', (stream, headers) => {
                this.headers = headers;
                if (headers[':path'] !== EVENT_STREAM_PATH) {
                    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
                    return;
                }
                this.stream = stream;
                stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
                stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
                const frames = new FrameReader(0);
                stream.on('data', (chunk) => {
                    for (const body of frames.push(chunk)) this.deliver(decode(types.StreamingMessage, body));
                });
                resolve();
            });
        });
    }

    listen() {
        return new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    }

    get port() {
        return this.server.address().port;
    }

    launch(appDir, extraArgs, env) {
        const args = [
            path.join(WORKER_DIR, 'worker.js'),
            '--host',
            '127.0.0.1',
            '--port',
            String(this.port),
            '--workerId',
            'worker-1',
            '--requestId',
            'start-1',
            ...extraArgs,
        ];
        this.child = spawn(process.execPath, args, {
            cwd: appDir,
            env: { ...process.env, FUNCTIONS_WORKER_RUNTIME: 'node', ...env },
            stdio: ['ignore', 'ignore', 'pipe'],
        });
        this.child.stderr.on('data', (d) => (this.stderr += d));
        this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    }

    deliver(message) {
        const i = this.waiters.findIndex((w) => w.kind === message.content);
        if (i >= 0) {
            const [w] = this.waiters.splice(i, 1);
            clearTimeout(w.timer);
            w.resolve(message);
        } else {
            this.received.push(message);
        }
    }

    /** The worker's next message whose content is `kind` (within 10 s). */
    next(kind, timeoutMs = 10000) {
        const i = this.received.findIndex((m) => m.content === kind);
        if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0]);
        return new Promise((resolve, reject) => {
            const waiter = { kind, resolve };
            waiter.timer = setTimeout(() => {
                this.waiters.splice(this.waiters.indexOf(waiter), 1);
                reject(new Error(`no ${kind} from the worker within ${timeoutMs} ms; its stderr:\n${this.stderr}`));
            }, timeoutMs);
            this.waiters.push(waiter);
        });
    }

    send(message) {
        this.stream.write(encodeFrame(message));
    }

    /** Initialises the worker for `appDir` and loads every function it indexes; returns their metadata. */
    async initialise(appDir) {
        this.send({ requestId: 'init', workerInitRequest: { hostVersion: '4.0.0', functionAppDirectory: appDir } });
        const init = await this.next('workerInitResponse');
        this.send({ requestId: 'meta', functionsMetadataRequest: { functionAppDirectory: appDir } });
        const meta = await this.next('functionMetadataResponse');
        for (const fn of meta.functionMetadataResponse.functionMetadataResults) {
            this.send({ requestId: 'load', functionLoadRequest: { functionId: fn.functionId, metadata: fn } });
            await this.next('functionLoadResponse');
        }
        return { init: init.workerInitResponse, functions: meta.functionMetadataResponse.functionMetadataResults };
    }

    /** Sends one InvocationRequest and returns the InvocationResponse. */
    async invoke(invocationRequest) {
        this.send({ requestId: 'inv', invocationRequest });
        const res = await this.next('invocationResponse');
        return res.invocationResponse;
    }

    /** Asks the worker to terminate and returns its exit code. */
    async stop() {
        if (this.child.exitCode === null) {
            this.send({ requestId: 'bye', workerTerminate: { gracePeriod: { seconds: 2 } } });
        }
        const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
        const code = await this.exited;
        clearTimeout(timer);
        await new Promise((resolve) => this.server.close(resolve));
        return code;
    }
}

/** An RpcHttp request as fnhost sends it (nullable maps, body as bytes). */
function httpRequest({ method = 'GET', url, headers = {}, query = {}, params = {}, body }) {
    const nullable = (obj) => Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, { value: v }]));
    return {
        method,
        url,
        nullableHeaders: nullable(headers),
        nullableQuery: nullable(query),
        nullableParams: nullable(params),
        body: { bytes: Buffer.from(body || '') },
    };
}

module.exports = { WORKER_DIR, workerRequire, writeApp, FakeHost, httpRequest };
