'use strict';
// The worker end to end against a stand-in host: the gRPC stream over
// node:http2, the handshake, indexing, an HTTP invocation, logs, errors and
// termination.

const test = require('node:test');
const assert = require('node:assert');
const { FakeHost, writeApp, httpRequest } = require('./host');

const APP = {
    'package.json': JSON.stringify({ name: 'app', main: 'src/index.js' }),
    'src/index.js': `
const { app } = require('@azure/functions');
app.http('hello', {
    methods: ['GET', 'POST'],
    authLevel: 'anonymous',
    handler: async (request, context) => {
        context.log('saying hello to', request.query.get('name'));
        if (request.query.get('fail')) throw new Error('asked to fail');
        const text = request.method === 'POST' ? await request.text() : '';
        return { status: 201, headers: { 'X-Answer': ' 42 ' }, body: 'hello ' + request.query.get('name') + text };
    },
});
`,
};

test('the worker dials in, indexes a v4 app, answers invocations and exits when told', async () => {
    const dir = writeApp(APP);
    const host = await FakeHost.start(dir);
    try {
        assert.strictEqual(host.headers['content-type'], 'application/grpc');
        assert.strictEqual(host.headers.te, 'trailers');
        const start = await host.next('startStream');
        assert.strictEqual(start.requestId, 'start-1');
        assert.strictEqual(start.startStream.workerId, 'worker-1');

        const { init, functions } = await host.initialise(dir);
        assert.strictEqual(init.result.status, 'Success');
        assert.strictEqual(init.capabilities.RpcHttpBodyOnly, 'true');
        assert.strictEqual(init.workerMetadata.runtimeName, 'node');
        assert.deepStrictEqual(
            functions.map((f) => f.name),
            ['hello']
        );
        // The library names the trigger binding itself ('httpTrigger' and a random suffix).
        const bindings = functions[0].bindings;
        const trigger = Object.keys(bindings).find((name) => bindings[name].type === 'httpTrigger');
        assert.strictEqual(bindings[trigger].direction, 'in');
        assert.strictEqual(bindings.$return.direction, 'out');

        const res = await host.invoke({
            invocationId: 'inv-1',
            functionId: 'hello',
            inputData: [
                {
                    name: trigger,
                    data: {
                        http: httpRequest({
                            method: 'POST',
                            url: 'http://127.0.0.1:7071/api/hello?name=ann',
                            headers: { 'content-type': 'text/plain' },
                            query: { name: 'ann' },
                            body: '!',
                        }),
                    },
                },
            ],
        });
        assert.strictEqual(res.invocationId, 'inv-1');
        assert.strictEqual(res.result.status, 'Success');
        const http = res.returnValue.http;
        assert.strictEqual(http.statusCode, '201');
        assert.strictEqual(http.headers['x-answer'], '42');
        assert.strictEqual(http.headers['content-type'], 'text/plain;charset=UTF-8');
        assert.strictEqual(Buffer.from(http.body.bytes).toString(), 'hello ann!');

        const log = await host.next('rpcLog');
        assert.strictEqual(log.rpcLog.invocationId, 'inv-1');
        assert.strictEqual(log.rpcLog.category, 'hello.Invocation');
        assert.strictEqual(log.rpcLog.message, 'saying hello to ann');
        assert.strictEqual(log.rpcLog.logCategory, 'User');

        const failed = await host.invoke({
            invocationId: 'inv-2',
            functionId: 'hello',
            inputData: [
                {
                    name: trigger,
                    data: { http: httpRequest({ url: 'http://127.0.0.1/api/hello?fail=1', query: { fail: '1' } }) },
                },
            ],
        });
        assert.strictEqual(failed.result.status, 'Failure');
        assert.match(failed.result.exception.message, /asked to fail/);
    } finally {
        assert.strictEqual(await host.stop(), 0, host.stderr);
    }
});

test('the worker exits with code 1 and says why when the host is not there', async () => {
    const { spawnSync } = require('child_process');
    const path = require('path');
    const { WORKER_DIR } = require('./host');
    const net = require('net');
    // A port nobody listens on: bind one, close it.
    const port = await new Promise((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
            const p = s.address().port;
            s.close(() => resolve(p));
        });
    });
    const out = spawnSync(
        process.execPath,
        [path.join(WORKER_DIR, 'worker.js'), '--host', '127.0.0.1', '--port', String(port), '--workerId', 'w', '--requestId', 'r'],
        { env: { ...process.env, FNHOST_WORKER_CONNECT_TIMEOUT_MS: '300' }, encoding: 'utf8', timeout: 10000 }
    );
    assert.strictEqual(out.status, 1);
    assert.match(out.stderr, new RegExp(`cannot connect to the host at 127\\.0\\.0\\.1:${port} within 300 ms`));
});

test('the worker exits with code 0 when the host ends the stream', async () => {
    const dir = writeApp(APP);
    const host = await FakeHost.start(dir);
    await host.next('startStream');
    host.stream.end();
    const code = await host.exited;
    await new Promise((resolve) => host.server.close(resolve));
    assert.strictEqual(code, 0, host.stderr);
    assert.match(host.stderr, /the host closed the event stream/);
});

test('invocation hooks see and change the inputs, the handler and the result, and log into the invocation', async () => {
    const dir = writeApp({
        'package.json': JSON.stringify({ name: 'app', main: 'index.js' }),
        'index.js': `
const { app } = require('@azure/functions');
app.hook.preInvocation((context) => {
    context.hookData.seen = 'pre';
    context.invocationContext.log('before', context.invocationContext.functionName);
    if (context.invocationContext.functionName === 'swapped') {
        context.functionHandler = async () => ({ body: 'from the hook' });
    }
});
app.hook.postInvocation((context) => {
    if (context.error) {
        context.error = null;
        context.result = { status: 418, body: 'recovered: ' + context.hookData.seen };
    }
});
app.http('plain', { authLevel: 'anonymous', handler: async () => ({ body: 'plain' }) });
app.http('swapped', { authLevel: 'anonymous', handler: async () => ({ body: 'never' }) });
app.http('failing', { authLevel: 'anonymous', handler: async () => { throw new Error('boom'); } });
`,
    });
    const host = await FakeHost.start(dir);
    try {
        const { functions } = await host.initialise(dir);
        const call = async (name, invocationId) => {
            const fn = functions.find((f) => f.name === name);
            const trigger = Object.keys(fn.bindings).find((b) => fn.bindings[b].type === 'httpTrigger');
            const res = await host.invoke({
                invocationId,
                functionId: fn.functionId,
                inputData: [{ name: trigger, data: { http: httpRequest({ url: `http://127.0.0.1/api/${name}` }) } }],
            });
            assert.strictEqual(res.result.status, 'Success', JSON.stringify(res.result));
            const http = res.returnValue.http;
            return [http.statusCode, Buffer.from(http.body.bytes).toString()];
        };
        assert.deepStrictEqual(await call('plain', 'inv-p'), ['200', 'plain']);
        const log = await host.next('rpcLog');
        assert.strictEqual(log.rpcLog.invocationId, 'inv-p');
        assert.strictEqual(log.rpcLog.message, 'before plain');
        assert.strictEqual(log.rpcLog.category, 'plain.Invocation');
        assert.deepStrictEqual(await call('swapped', 'inv-s'), ['200', 'from the hook']);
        assert.deepStrictEqual(await call('failing', 'inv-f'), ['418', 'recovered: pre']);
    } finally {
        assert.strictEqual(await host.stop(), 0, host.stderr);
    }
});
