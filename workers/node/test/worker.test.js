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
