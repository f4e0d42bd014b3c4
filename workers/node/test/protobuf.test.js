'use strict';
// The protobuf codec and the message tables: round trips, proto3 defaults,
// oneofs, unknown fields, packed lists, 64-bit integers, long fields, and the
// tables' field numbers against fnhost's function_rpc.proto.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { WORKER_DIR, workerRequire } = require('./host');

const { encode, decode, DecodeError } = workerRequire('./lib/protobuf');
const { types, MESSAGES, ENUMS } = workerRequire('./lib/messages');
const { encodeFrame, FrameReader } = workerRequire('./lib/rpc');

const SM = types.StreamingMessage;
const roundTrip = (type, obj) => decode(type, encode(type, obj));

test('an InvocationRequest reads back with defaults filled in as proto-loader did', () => {
    const msg = roundTrip(SM, {
        requestId: 'r',
        invocationRequest: {
            invocationId: 'i',
            functionId: 'f',
            inputData: [{ name: 'req', data: { http: { method: 'GET', url: 'http://h/a?b=1', nullableQuery: { b: { value: '1' } } } } }],
        },
    });
    assert.strictEqual(msg.content, 'invocationRequest');
    const req = msg.invocationRequest;
    assert.deepStrictEqual(req.triggerMetadata, {});
    assert.strictEqual(req.traceContext, null);
    assert.strictEqual(req.retryContext, null);
    const binding = req.inputData[0];
    assert.strictEqual(binding.rpcData, 'data');
    assert.ok(!('rpcSharedMemory' in binding));
    const data = binding.data;
    assert.strictEqual(data.data, 'http');
    assert.ok(!('string' in data) && !('bytes' in data), 'unset oneof members are absent');
    const http = data.http;
    assert.strictEqual(http.method, 'GET');
    assert.strictEqual(http.statusCode, '');
    assert.strictEqual(http.body, null);
    assert.deepStrictEqual(http.headers, {});
    assert.deepStrictEqual(http.cookies, []);
    assert.strictEqual(http.enableContentNegotiation, false);
    assert.deepStrictEqual(http.nullableQuery, { b: { value: '1', string: 'value' } });
});

test('oneof members are written even at their default value', () => {
    const out = roundTrip(types.TypedData, { string: '' });
    assert.strictEqual(out.data, 'string');
    assert.strictEqual(out.string, '');
    const empty = roundTrip(types.TypedData, { bytes: new Uint8Array(0) });
    assert.strictEqual(empty.data, 'bytes');
    assert.ok(Buffer.isBuffer(empty.bytes) && empty.bytes.length === 0);
    assert.strictEqual(roundTrip(types.TypedData, { int: 0 }).int, 0);
    assert.strictEqual(roundTrip(types.TypedData, {}).data, undefined);
});

test('enums travel by name, numbers and 64-bit integers keep their values', () => {
    const log = roundTrip(types.RpcLog, { level: 'Warning', logCategory: 'System', message: 'm' });
    assert.strictEqual(log.level, 'Warning');
    assert.strictEqual(log.logCategory, 'System');
    assert.strictEqual(roundTrip(types.RpcLog, { level: 4 }).level, 'Error');
    assert.strictEqual(roundTrip(types.RpcLog, {}).level, 'Trace');
    for (const n of [1, -1, 63, -64, 2 ** 31, -(2 ** 31) - 1, 2 ** 40 + 3, -(2 ** 52), Number.MAX_SAFE_INTEGER]) {
        assert.strictEqual(roundTrip(types.TypedData, { int: n }).int, n, `sint64 ${n}`);
    }
    assert.strictEqual(roundTrip(types.Duration, { seconds: 2 ** 33, nanos: -5 }).seconds, 2 ** 33);
    assert.strictEqual(roundTrip(types.Duration, { seconds: 1, nanos: -5 }).nanos, -5);
    assert.strictEqual(roundTrip(types.RetryContext, { retryCount: -1 }).retryCount, -1);
    assert.strictEqual(roundTrip(types.TypedData, { double: -1.25 }).double, -1.25);
    const lists = roundTrip(types.TypedData, { collectionSint64: { sint64: [1, -2, 300, -(2 ** 40)] } });
    assert.deepStrictEqual(lists.collectionSint64.sint64, [1, -2, 300, -(2 ** 40)]);
    assert.deepStrictEqual(roundTrip(types.CollectionDouble, { double: [0.5, -3] }).double, [0.5, -3]);
});

test('packed and unpacked lists of numbers both read', () => {
    // field 1, wire type 0, three times: 1, 2, 3 zigzagged (2, 4, 6).
    const unpacked = Buffer.from([0x08, 2, 0x08, 4, 0x08, 6]);
    assert.deepStrictEqual(decode(types.CollectionSInt64, unpacked).sint64, [1, 2, 3]);
    const packed = Buffer.from([0x0a, 3, 2, 4, 6]);
    assert.deepStrictEqual(decode(types.CollectionSInt64, packed).sint64, [1, 2, 3]);
});

test('unknown fields of every wire type are skipped', () => {
    const known = encode(types.StartStream, { workerId: 'w' });
    const unknown = Buffer.from([
        0x08, 0x96, 0x01, // field 1 varint
        0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3 fixed64
        0x22, 2, 0x61, 0x62, // field 4 bytes
        0x2d, 1, 2, 3, 4, // field 5 fixed32
    ]);
    assert.deepStrictEqual(decode(types.StartStream, Buffer.concat([unknown, known, unknown])), { workerId: 'w' });
    // A StreamingMessage member the worker does not look into still names itself.
    const heartbeat = Buffer.from([0x7a, 2, 0x08, 0x01]);
    assert.strictEqual(decode(SM, heartbeat).content, 'workerHeartbeat');
});

test('long strings, bytes and nested messages get multi-byte lengths', () => {
    for (const n of [42, 43, 127, 128, 300, 16383, 16384, 70000]) {
        const text = 'é'.repeat(n);
        const bytes = Buffer.alloc(n * 2, 7);
        const msg = roundTrip(SM, {
            requestId: text,
            invocationResponse: { invocationId: 'x', returnValue: { http: { statusCode: '200', body: { bytes } } } },
        });
        assert.strictEqual(msg.requestId, text);
        assert.ok(msg.invocationResponse.returnValue.http.body.bytes.equals(bytes), `body of ${n * 2} bytes`);
    }
});

test('map keys, including __proto__, are kept as data', () => {
    const out = roundTrip(types.RpcHttp, { nullableQuery: { __proto__x: { value: 'a' } } });
    assert.strictEqual(out.nullableQuery.__proto__x.value, 'a');
    const evil = Object.create(null);
    evil.__proto__ = { value: 'b' };
    const decoded = roundTrip(types.RpcHttp, { nullableQuery: evil });
    assert.strictEqual(Object.getPrototypeOf(decoded.nullableQuery), Object.prototype);
    assert.strictEqual(Object.getOwnPropertyDescriptor(decoded.nullableQuery, '__proto__').value.value, 'b');
});

test('malformed input is an error, not a crash or a silent default', () => {
    assert.throws(() => decode(types.StartStream, Buffer.from([0x12, 10, 0x61])), DecodeError);
    assert.throws(() => decode(types.StartStream, Buffer.from([0x08, 0xff])), DecodeError);
    assert.throws(() => encode(types.InvocationResponse, { returnValue: 'text' }), /InvocationResponse\.returnValue/);
});

test('gRPC frames split and joined anywhere come out whole', () => {
    const a = encodeFrame({ requestId: '1', workerStatusResponse: {} });
    const b = encodeFrame({ requestId: '2'.repeat(200), rpcLog: { message: 'hi' } });
    const all = Buffer.concat([a, b]);
    for (let cut = 0; cut <= all.length; cut++) {
        const reader = new FrameReader(0);
        const bodies = [...reader.push(all.subarray(0, cut)), ...reader.push(all.subarray(cut))];
        assert.deepStrictEqual(
            bodies.map((body) => decode(SM, body).requestId),
            ['1', '2'.repeat(200)],
            `cut at ${cut}`
        );
    }
    assert.throws(() => new FrameReader(10).push(b), /over the limit of 10 bytes/);
    assert.throws(() => new FrameReader(0).push(Buffer.from([1, 0, 0, 0, 0])), /compressed/);
});

/** Message and enum declarations of a .proto file: {Message: {field: {no, type, repeated, map}}}. */
function parseProto(text) {
    const messages = {};
    const enums = {};
    const stack = [];
    for (const raw of text.split('\n')) {
        const line = raw.replace(/\/\/.*$/, '').trim();
        let m;
        if ((m = /^(message|enum|oneof)\s+(\w+)\s*\{/.exec(line))) {
            stack.push({ kind: m[1], name: m[2] });
            const scope = stack.filter((s) => s.kind !== 'oneof').map((s) => s.name).join('_');
            if (m[1] === 'message') messages[scope] = {};
            if (m[1] === 'enum') enums[scope] = [];
            if (line.endsWith('}')) stack.pop(); // an empty message on one line
        } else if (line.startsWith('}')) {
            stack.pop();
        } else if (stack.length > 0) {
            const top = stack.filter((s) => s.kind !== 'oneof');
            const scope = top.map((s) => s.name).join('_');
            if (top[top.length - 1].kind === 'enum' && (m = /^(\w+)\s*=\s*(\d+)/.exec(line))) {
                enums[scope][Number(m[2])] = m[1];
            } else if ((m = /^(repeated\s+)?(map<\s*(\w+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)/.exec(line))) {
                const type = (m[4] || m[2]).split('.').pop();
                const name = m[5].replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
                messages[scope][name] = { no: Number(m[6]), type, repeated: !!m[1], map: m[3] };
            }
        }
    }
    return { messages, enums };
}

test("the message tables match function_rpc.proto's names, numbers and types", () => {
    const candidates = [
        path.join(WORKER_DIR, 'function_rpc.proto'),
        path.join(__dirname, '..', '..', '..', 'fnhost-core', 'proto', 'function_rpc.proto'),
    ];
    const file = candidates.find((f) => fs.existsSync(f));
    assert.ok(file, `function_rpc.proto not found at ${candidates.join(' or ')}`);
    const proto = parseProto(fs.readFileSync(file, 'utf8'));
    let checked = 0;
    for (const [name, fields] of Object.entries(MESSAGES)) {
        if (['Empty', 'Duration', 'Timestamp'].includes(name)) continue;
        const declared = proto.messages[name];
        assert.ok(declared, `message ${name} is not in ${file}`);
        // Every field of a message the worker reads or writes is in its table.
        assert.deepStrictEqual(fields.map((f) => f.name).sort(), Object.keys(declared).sort(), `fields of ${name}`);
        for (const f of fields) {
            const d = declared[f.name];
            const type = f.type.startsWith('enum:') ? f.type.slice(5).split('_').pop() : f.type;
            assert.deepStrictEqual(
                { no: f.no, type: type === 'Empty' ? d.type : type, repeated: !!f.repeated, map: f.map },
                { no: d.no, type: d.type, repeated: d.repeated, map: d.map },
                `${name}.${f.name}`
            );
            checked++;
        }
    }
    for (const [name, values] of Object.entries(ENUMS)) {
        assert.deepStrictEqual(values, proto.enums[name], `enum ${name}`);
    }
    assert.ok(checked > 150, `only ${checked} fields checked`);
});
