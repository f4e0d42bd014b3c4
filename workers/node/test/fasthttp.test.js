'use strict';
// The HTTP fast path gives what @azure/functions itself gives: the same
// invocations run once through the fast path and once through the library's
// own Request/Response objects, and the InvocationResponses (as the host
// would read them) and logs must be equal.

const test = require('node:test');
const assert = require('node:assert');
const { workerRequire, writeApp, httpRequest } = require('./host');

const core = workerRequire('./lib/core');
core.installModuleHooks();
const { Dispatcher } = workerRequire('./lib/dispatcher');
const fasthttp = workerRequire('./lib/fasthttp');
const { types } = workerRequire('./lib/messages');
const { encode, decode } = workerRequire('./lib/protobuf');

const APP = {
    'package.json': JSON.stringify({ name: 'app', main: 'index.js' }),
    'index.js': `
const { app, HttpResponse } = require('@azure/functions');
globalThis.HttpResponse = HttpResponse;
app.http('respond', { methods: ['GET'], authLevel: 'anonymous', handler: async () => globalThis.nextResult() });
app.http('echo', {
    methods: ['GET', 'POST', 'HEAD', 'PATCH'],
    authLevel: 'anonymous',
    route: 'echo/{id?}',
    handler: async (request) => {
        const copy = request.clone();
        const seen = {
            method: request.method,
            url: request.url,
            headers: [...request.headers.entries()],
            query: [...request.query.entries()],
            params: request.params,
            user: request.user,
            bodyUsed: request.bodyUsed,
        };
        seen.text = await request.text();
        seen.bodyUsedAfter = request.bodyUsed;
        seen.copy = await copy.arrayBuffer().then((b) => Buffer.from(b).toString('hex'));
        return { jsonBody: seen };
    },
});
app.http('untouched', { methods: ['POST'], authLevel: 'anonymous', handler: async () => ({ body: 'fine' }) });
`,
};

const logs = [];
core.state.sendLog = (log) => logs.push(log);
const dispatcher = new Dispatcher(() => {}, () => {});
const dir = writeApp(APP);

const ready = (async () => {
    await dispatcher.workerInit({ functionAppDirectory: dir }, () => {});
    await dispatcher.functionsMetadata({}, () => {});
})();

const triggerOf = (name) => {
    const bindings = core.state.functions.get(name).metadata.bindings;
    return Object.keys(bindings).find((b) => bindings[b].type === 'httpTrigger');
};

/** Invokes `name` through the fast path (fast = true) or the library's objects; the response as the host reads it, and the logs. */
async function invoke(name, http, fast) {
    await ready;
    const fn = core.state.functions.get(name);
    fn.fastHttp = fast ? undefined : null;
    logs.length = 0;
    const res = await dispatcher.invoke({
        invocationId: 'inv',
        functionId: name,
        inputData: [{ name: triggerOf(name), data: { http } }],
        triggerMetadata: {},
    });
    if (fast) assert.strictEqual(fn.fastHttp, triggerOf(name), `${name} takes the fast path`);
    const wire = decode(types.InvocationResponse, encode(types.InvocationResponse, res));
    if (wire.result.exception) wire.result.exception.stackTrace = '(stack)';
    return { wire, logs: logs.map((l) => `${l.level} ${l.logCategory} ${l.message}`) };
}

async function same(name, makeHttp, what) {
    const fast = await invoke(name, makeHttp(), true);
    const slow = await invoke(name, makeHttp(), false);
    assert.deepStrictEqual(fast, slow, what);
    return fast;
}

const get = () => httpRequest({ url: 'http://127.0.0.1:7071/api/respond' });

const RESULTS = {
    'a string body': () => ({ body: 'ok' }),
    'nothing': () => ({}),
    'status, headers in any case with spaces, a content type': () => ({
        status: 201,
        headers: { 'X-B': ' v \t', 'a-h': '1', 'Content-Type': 'text/html' },
        body: '<b>hi</b>',
    }),
    'jsonBody': () => ({ jsonBody: { a: 1, b: ['x', null] } }),
    'jsonBody with its own content type': () => ({ jsonBody: 'text', headers: { 'content-type': 'application/x+json' } }),
    'jsonBody beside body': () => ({ jsonBody: [1], body: 'ignored' }),
    'jsonBody that is null': () => ({ jsonBody: null, body: 'used' }),
    '204 with a body': () => ({ status: 204, body: 'dropped' }),
    '304 with jsonBody': () => ({ status: 304, jsonBody: { x: 1 } }),
    'a Buffer': () => ({ body: Buffer.from([0, 1, 255]) }),
    'a Uint8Array': () => ({ body: new Uint8Array([5, 6]) }),
    'unicode and a lone surrogate': () => ({ body: 'é ☃ \uD800 end' }),
    'a null body': () => ({ body: null, status: 404 }),
    'content negotiation': () => ({ enableContentNegotiation: true, body: 'x' }),
    'no cookies': () => ({ cookies: [], body: 'x' }),
    'a number status as text (library)': () => ({ status: '202', body: 'x' }),
    'a status out of range (library)': () => ({ status: 99 }),
    'cookies (library)': () => ({ cookies: [{ name: 'a', value: 'b', maxAge: 5, sameSite: 'Lax' }], body: 'x' }),
    'search params (library)': () => ({ body: new URLSearchParams('a=1&b=2') }),
    'a Headers object (library)': () => ({ headers: new Headers({ A: 'b' }), body: 'x' }),
    'a header given twice (library)': () => ({ headers: { a: '1', A: '2' }, body: 'x' }),
    'set-cookie header (library)': () => ({ headers: { 'Set-Cookie': 'a=b' }, body: 'x' }),
    'a number header value (library)': () => ({ headers: { 'x-n': 5 }, body: 'x' }),
    'an object body (library)': () => ({ body: { a: 1 } }),
    'an HttpResponse (library)': () => new globalThis.HttpResponse({ status: 202, jsonBody: { r: 1 } }),
    'a string (library)': () => 'just text',
    'undefined (library)': () => undefined,
    'a jsonBody that cannot be written (library)': () => ({ jsonBody: { big: 1n } }),
};

for (const [what, make] of Object.entries(RESULTS)) {
    test(`response: ${what}`, async () => {
        globalThis.nextResult = make;
        const out = await same('respond', get, what);
        const library = what.endsWith('(library)');
        const taken = fasthttp.fastResponse('inv', make()) !== undefined;
        assert.strictEqual(taken, !library, `the fast path ${library ? 'leaves' : 'takes'} it`);
        if (!library) assert.strictEqual(out.wire.result.status, 'Success');
    });
}

const REQUESTS = {
    'GET with a query and headers': () =>
        httpRequest({
            url: 'http://127.0.0.1:7071/api/echo/7?a=1&a=2&b=%20x',
            headers: { 'x-one': '1', accept: 'text/plain' },
            query: { a: '1,2', b: ' x' },
            params: { id: '7' },
        }),
    'POST with JSON': () =>
        httpRequest({
            method: 'POST',
            url: 'http://127.0.0.1:7071/api/echo',
            headers: { 'content-type': 'application/json' },
            body: '{"a":[1,2]}',
        }),
    'GET with a body (dropped, with a warning)': () =>
        httpRequest({ url: 'http://127.0.0.1:7071/api/echo', body: 'not allowed' }),
    'a lower-case method': () => httpRequest({ method: 'patch', url: 'http://127.0.0.1:7071/api/echo', body: 'p' }),
    'a client principal header': () =>
        httpRequest({
            url: 'http://127.0.0.1:7071/api/echo',
            headers: {
                'x-ms-client-principal': Buffer.from(JSON.stringify({ identityProvider: 'aad', userId: 'u', userDetails: 'd', userRoles: [] })).toString('base64'),
            },
        }),
};

for (const [what, make] of Object.entries(REQUESTS)) {
    test(`request: ${what}`, async () => {
        const out = await same('echo', make, what);
        assert.strictEqual(out.wire.result.status, 'Success', JSON.stringify(out.wire.result));
    });
}

test('a function that never reads its request does not build one', async () => {
    await ready;
    const OriginalRequest = globalThis.Request;
    let built = 0;
    globalThis.Request = class extends OriginalRequest {
        constructor(...args) {
            super(...args);
            built++;
        }
    };
    try {
        const post = () => httpRequest({ method: 'POST', url: 'http://127.0.0.1:7071/api/untouched', body: 'x' });
        const fast = await invoke('untouched', post(), true);
        assert.strictEqual(built, 0, 'no web Request on the fast path');
        const slow = await invoke('untouched', post(), false);
        assert.strictEqual(built, 1, 'the library builds one');
        assert.deepStrictEqual(fast, slow);
    } finally {
        globalThis.Request = OriginalRequest;
    }
});

test('the fast path is for @azure/functions 4.16 and later, HTTP functions returning through $return only', () => {
    assert.ok(fasthttp.supportsFastPath({ name: '@azure/functions', version: '4.16.0' }));
    assert.ok(fasthttp.supportsFastPath({ name: '@azure/functions', version: '5.0.0' }));
    assert.ok(!fasthttp.supportsFastPath({ name: '@azure/functions', version: '4.15.9' }));
    assert.ok(!fasthttp.supportsFastPath({ name: '@azure/functions', version: '3.5.1' }));
    assert.ok(!fasthttp.supportsFastPath({ name: 'other', version: '9.0.0' }));
    const http = { req: { type: 'httpTrigger', direction: 'in' }, $return: { type: 'http', direction: 'out' } };
    assert.strictEqual(fasthttp.httpShape({ bindings: http }), 'req');
    assert.strictEqual(fasthttp.httpShape({ bindings: { ...http, q: { type: 'queue', direction: 'out' } } }), undefined);
    assert.strictEqual(
        fasthttp.httpShape({ bindings: { req: http.req, res: { type: 'http', direction: 'out' } } }),
        undefined
    );
    assert.strictEqual(fasthttp.httpShape({ bindings: { t: { type: 'timerTrigger', direction: 'in' } } }), undefined);
});
