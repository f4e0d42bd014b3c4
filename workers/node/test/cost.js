'use strict';
// Where the Node worker's processor time goes, per invocation of a no-op v4
// HTTP function (`app.http('noop', { handler: async () => ({ body: 'ok' }) })`),
// beside a plain `http` server answering the same request (what an Azure
// custom handler in Node.js spends). Not a test: `cargo bench -p
// fnhost-benches --bench worker` runs it after its own figures, and it runs
// alone as `node workers/node/test/cost.js` (after `npm ci` in
// workers/node).
//
// Processor time is read from /proc/PID/task/*/schedstat (every thread of
// the measured process, system time included), so a busy machine does not
// blur it as it blurs latencies. Each figure is at concurrency 1 (one
// request at a time) and 16 (sixteen in flight, as the worker benchmark's
// throughput run):
//
// 1. the worker process, driven over FunctionRpc by the stand-in host of
//    the worker's tests (./host.js): everything the worker does;
// 2. a plain node `http` server (a child process) driven over keep-alive
//    HTTP/1.1 from this process: the custom handler's own part;
// 3. in this process, the worker's invocation step alone (Dispatcher
//    `invoke`: @azure/functions' invocation model, the function, and the
//    worker's glue around them), with no transport and no protobuf;
// 4. in this process, the protobuf work of one invocation (decoding the
//    InvocationRequest, encoding the InvocationResponse).
//
// 1 - 3 is what the worker costs besides the programming model: its gRPC
// transport and codec, to compare with 2.

const fs = require('fs');
const http = require('http');
const { spawn } = require('child_process');
const { FakeHost, httpRequest, writeApp, workerRequire } = require('./host');

const QUICK = process.env.FNHOST_BENCH_QUICK !== undefined;
const N = QUICK ? 500 : 20000;
const WARM = QUICK ? 200 : 3000;
const CONCURRENCY = [1, 16];

const APP = {
    'host.json': '{"version": "2.0"}',
    'package.json': '{"name": "noop", "version": "1.0.0", "main": "index.js"}',
    'index.js':
        "const { app } = require('@azure/functions');\n" +
        "app.http('noop', { methods: ['GET'], authLevel: 'anonymous', handler: async () => ({ body: 'ok' }) });\n",
};

/** Nanoseconds of processor time of every thread of `pid` so far. */
function cpuNs(pid) {
    let total = 0;
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
        try {
            total += Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
        } catch {
            // a thread that ended meanwhile
        }
    }
    return total;
}

/** This process's processor time in nanoseconds. */
function ownNs() {
    const { user, system } = process.cpuUsage();
    return (user + system) * 1000;
}

/**
 * Runs `n` calls of `start(i, done)` with `concurrency` in flight, each
 * calling `done()` when it has finished; resolves when all have.
 */
function drive(n, concurrency, start) {
    return new Promise((resolve, reject) => {
        let started = 0;
        let finished = 0;
        const done = (err) => {
            if (err) return reject(err);
            finished++;
            if (finished === n) resolve();
            else if (started < n) start(started++, done);
        };
        for (let i = 0; i < Math.min(concurrency, n); i++) start(started++, done);
    });
}

/** The InvocationRequest fnhost sends for GET /api/noop. */
function invocationRequest(functionId, bindingName, i) {
    return {
        functionId,
        invocationId: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`,
        inputData: [
            {
                name: bindingName,
                data: {
                    http: httpRequest({
                        url: 'http://127.0.0.1:7071/api/noop',
                        headers: { host: '127.0.0.1:7071', 'user-agent': 'bench', accept: '*/*' },
                    }),
                },
            },
        ],
        triggerMetadata: {},
    };
}

/** (1) The worker process over FunctionRpc: µs of its processor time per invocation. */
async function workerProcess(appDir) {
    const host = await FakeHost.start(appDir);
    try {
        const { functions } = await host.initialise(appDir);
        const fn = functions[0];
        const bindingName = Object.keys(fn.bindings).find((k) => k !== '$return');
        const pending = new Map();
        const deliver = host.deliver.bind(host);
        host.deliver = (message) => {
            if (message.content !== 'invocationResponse') return deliver(message);
            const answer = message.invocationResponse;
            const done = pending.get(answer.invocationId);
            pending.delete(answer.invocationId);
            done(answer.result.status === 'Success' ? undefined : new Error(answer.result.result));
        };
        const start = (i, done) => {
            const req = invocationRequest(fn.functionId, bindingName, i);
            pending.set(req.invocationId, done);
            host.send({ requestId: 'inv', invocationRequest: req });
        };
        const out = {};
        for (const c of CONCURRENCY) {
            await drive(WARM, c, start);
            const before = cpuNs(host.child.pid);
            await drive(N, c, start);
            out[c] = (cpuNs(host.child.pid) - before) / 1000 / N;
        }
        host.deliver = deliver;
        return out;
    } finally {
        await host.stop();
    }
}

/** (2) A plain node http server: µs of its processor time per request. */
async function httpServer() {
    const script =
        "const http = require('http');\n" +
        'const server = http.createServer((req, res) => {\n' +
        "  req.resume();\n  req.on('end', () => { res.writeHead(200, { 'Content-Type': 'text/plain' }); res.end('ok'); });\n" +
        "}).listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));\n";
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
        const port = await new Promise((resolve, reject) => {
            child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
            child.once('exit', (code) => reject(new Error(`the http server exited (${code})`)));
        });
        const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
        const start = (_i, done) => {
            http.get({ host: '127.0.0.1', port, path: '/api/noop', agent }, (res) => {
                res.resume();
                res.on('end', () => done(res.statusCode === 200 ? undefined : new Error(`status ${res.statusCode}`)));
            }).on('error', done);
        };
        const out = {};
        for (const c of CONCURRENCY) {
            await drive(WARM, c, start);
            const before = cpuNs(child.pid);
            await drive(N, c, start);
            out[c] = (cpuNs(child.pid) - before) / 1000 / N;
        }
        agent.destroy();
        return out;
    } finally {
        child.kill();
    }
}

/** (3) and (4), in this process: the invocation step and the protobuf work. */
async function inProcess(appDir) {
    const core = workerRequire('./lib/core');
    core.installModuleHooks();
    core.installDefaultModel();
    const { Dispatcher } = workerRequire('./lib/dispatcher');
    const { types } = workerRequire('./lib/messages');
    const { encode, decode } = workerRequire('./lib/protobuf');
    const replies = [];
    const dispatcher = new Dispatcher(
        (message) => replies.push(message),
        (code, reason) => {
            throw new Error(`the dispatcher asked to exit (${code}): ${reason}`);
        }
    );
    process.chdir(appDir);
    const next = async (kind) => {
        for (let i = 0; i < 1000; i++) {
            const found = replies.findIndex((m) => m[kind]);
            if (found >= 0) return replies.splice(found, 1)[0][kind];
            await new Promise((r) => setImmediate(r));
        }
        throw new Error(`no ${kind}`);
    };
    // Messages pass through the codec as they would on the wire.
    const wire = (message) => decode(types.StreamingMessage, encode(types.StreamingMessage, message, 0));
    dispatcher.handle(wire({ requestId: 'i', workerInitRequest: { hostVersion: '4.0.0', functionAppDirectory: appDir } }));
    await next('workerInitResponse');
    dispatcher.handle(wire({ requestId: 'm', functionsMetadataRequest: { functionAppDirectory: appDir } }));
    const fn = (await next('functionMetadataResponse')).functionMetadataResults[0];
    dispatcher.handle(wire({ requestId: 'l', functionLoadRequest: { functionId: fn.functionId, metadata: fn } }));
    await next('functionLoadResponse');
    const bindingName = Object.keys(fn.bindings).find((k) => k !== '$return');

    const decoded = (i) => wire({ requestId: 'inv', invocationRequest: invocationRequest(fn.functionId, bindingName, i) });
    const invoke = (i, done) => {
        dispatcher
            .invoke(decoded(i).invocationRequest)
            .then((r) => done(r.result.status === 'Success' ? undefined : new Error(r.result.result)), done);
    };
    const bytes = encode(types.StreamingMessage, decoded(0), 0);
    const answer = { requestId: 'inv', invocationResponse: await dispatcher.invoke(decoded(0).invocationRequest) };
    const codec = () => {
        decode(types.StreamingMessage, bytes);
        encode(types.StreamingMessage, answer, 5);
    };
    const measure = async (start, c) => {
        await drive(WARM, c, start);
        const before = ownNs();
        await drive(N, c, start);
        return (ownNs() - before) / 1000 / N;
    };
    /** µs per call of a synchronous `f(i)`. */
    const measureSync = (f) => {
        for (let i = 0; i < WARM; i++) f(i);
        const before = ownNs();
        for (let i = 0; i < N; i++) f(i);
        return (ownNs() - before) / 1000 / N;
    };
    // Making the decoded request (a decode of the same bytes, which the
    // invocation step does not do on the wire) is measured on its own and
    // taken off; the codec's work does not depend on concurrency.
    const making = measureSync(decoded);
    const protobuf = {};
    const invocation = {};
    for (const c of CONCURRENCY) {
        invocation[c] = Math.max(0, (await measure(invoke, c)) - making);
        protobuf[c] = measureSync(codec);
    }
    return { invocation, protobuf };
}

function row(label, figures) {
    const cells = CONCURRENCY.map((c) => `${figures[c].toFixed(1).padStart(7)}`).join(' ');
    console.log(`${label.padEnd(72)} ${cells}`);
}

async function main() {
    const appDir = writeApp(APP);
    try {
        const worker = await workerProcess(appDir);
        const server = await httpServer();
        const { invocation, protobuf } = await inProcess(appDir);
        const transport = {};
        for (const c of CONCURRENCY) transport[c] = worker[c] - invocation[c];
        console.log(
            `== the Node worker's processor time per invocation of a no-op v4 HTTP function (µs; ${N} invocations; columns: concurrency ${CONCURRENCY.join(', ')})`
        );
        row('(1) worker process, over FunctionRpc (all it does)', worker);
        row('(2) plain node http server, per request (a custom handler\'s part)', server);
        row('(3) of (1): the invocation step (@azure/functions + the function + glue)', invocation);
        row('(4) of (1): protobuf decode + encode', protobuf);
        row('(1) - (3): the worker besides the programming model (transport + codec)', transport);
        const ratio = {};
        for (const c of CONCURRENCY) ratio[c] = transport[c] / server[c];
        row('((1) - (3)) / (2)', ratio);
    } finally {
        fs.rmSync(appDir, { recursive: true, force: true });
    }
    // The in-process dispatcher keeps the app's timers and handles.
    process.exit(0);
}

main().catch((err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
});

