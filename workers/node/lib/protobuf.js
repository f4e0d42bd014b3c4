'use strict';
// A small protobuf (proto3) codec driven by message tables (see messages.js).
//
// Decoded messages are plain objects shaped as @grpc/proto-loader shaped them
// with {keepCase: false, longs: Number, enums: String, defaults: true,
// oneofs: true}: camelCase names; enums by their .proto names (a number the
// table does not know stays a number); 64-bit integers as numbers; bytes as
// Buffers; absent scalars read as their defaults, absent maps as {}, absent
// lists as [], absent messages as null; unset oneof members are absent and
// the oneof's own name holds the member that is set. Unknown fields are
// skipped.
//
// Encoding takes the same shapes: enums by name or number, bytes as Buffer,
// Uint8Array, number array or base64 string, strings converted with String()
// (as protobufjs's fromObject does). Fields that are null or undefined, and
// scalars at their proto3 default, are left out, except oneof members, which
// are written whenever they are set (their presence is the information).

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

class DecodeError extends Error {}

// ---- schema --------------------------------------------------------------

const SCALARS = {
    string: { wire: WIRE_LEN, zero: () => '' },
    bytes: { wire: WIRE_LEN, zero: () => Buffer.alloc(0) },
    bool: { wire: WIRE_VARINT, zero: () => false },
    int32: { wire: WIRE_VARINT, zero: () => 0 },
    int64: { wire: WIRE_VARINT, zero: () => 0 },
    sint64: { wire: WIRE_VARINT, zero: () => 0 },
    double: { wire: WIRE_I64, zero: () => 0 },
};

/**
 * Builds the codec's view of a set of message tables.
 * `messages`: name -> list of fields, each
 *   {no, name, type, repeated?, map?: keyType, oneof?}
 * where `type` is a scalar (string, bytes, bool, int32, int64, sint64,
 * double), `enum:Name` or a message name. `enums`: name -> [names by number].
 */
function compile(messages, enums) {
    const types = {};
    for (const name of Object.keys(messages)) {
        types[name] = { name, fields: [], byNumber: [], oneofs: [] };
    }
    for (const [name, fields] of Object.entries(messages)) {
        const type = types[name];
        for (const spec of fields) {
            const field = { ...spec, kind: 'scalar', scalar: undefined, message: undefined, enumNames: undefined };
            if (spec.type.startsWith('enum:')) {
                const names = enums[spec.type.slice(5)];
                if (!names) throw new Error(`${name}.${spec.name}: unknown enum ${spec.type}`);
                field.kind = 'enum';
                field.enumNames = names;
                field.enumNumbers = Object.fromEntries(names.map((n, i) => [n, i]).filter(([n]) => n !== undefined));
            } else if (SCALARS[spec.type]) {
                field.scalar = spec.type;
            } else if (types[spec.type]) {
                field.kind = 'message';
                field.message = types[spec.type];
            } else {
                throw new Error(`${name}.${spec.name}: unknown type ${spec.type}`);
            }
            if (spec.map && !SCALARS[spec.map]) {
                throw new Error(`${name}.${spec.name}: map keys must be scalars`);
            }
            field.path = `${name}.${spec.name}`;
            // A map's values: the same type, as field 2 of an entry.
            field.mapValue = spec.map ? { ...field, no: 2, map: undefined, repeated: false } : undefined;
            type.fields.push(field);
            type.byNumber[spec.no] = field;
            if (spec.oneof && !type.oneofs.includes(spec.oneof)) type.oneofs.push(spec.oneof);
        }
        type.defaults = type.fields.filter((f) => !f.oneof);
        type.byName = new Map(type.fields.map((f) => [f.name, f]));
        type.create = defaultsMaker(type.defaults);
    }
    return types;
}

/**
 * A function returning a new object with the defaults of `fields`. It is
 * generated so that every object of a type has one shape (an object
 * literal), which keeps decoding fast; names and values come from the
 * message tables only.
 */
function defaultsMaker(fields) {
    const parts = fields.map((field) => {
        let value;
        if (field.map) value = '{}';
        else if (field.repeated) value = '[]';
        else if (field.scalar === 'bytes') value = 'Buffer.alloc(0)';
        else value = JSON.stringify(defaultValue(field));
        return `${JSON.stringify(field.name)}: ${value}`;
    });
    return new Function('Buffer', `return function () { return { ${parts.join(', ')} }; };`)(Buffer);
}

function defaultValue(field) {
    if (field.map) return {};
    if (field.repeated) return [];
    if (field.kind === 'message') return null;
    if (field.kind === 'enum') return field.enumNames[0] !== undefined ? field.enumNames[0] : 0;
    return SCALARS[field.scalar].zero();
}

// ---- decoding ------------------------------------------------------------

class Reader {
    constructor(buf, pos, end) {
        this.buf = buf;
        this.pos = pos;
        this.end = end;
    }

    /** A varint of up to 32 bits (higher bits are read and dropped). */
    uint32() {
        const buf = this.buf;
        let pos = this.pos;
        let value = 0;
        let shift = 0;
        for (;;) {
            if (pos >= this.end) throw new DecodeError('truncated varint');
            const b = buf[pos++];
            if (shift < 32) value |= (b & 0x7f) << shift;
            if (b < 0x80) break;
            shift += 7;
            if (shift > 63) throw new DecodeError('varint longer than 10 bytes');
        }
        this.pos = pos;
        return value >>> 0;
    }

    /** A 64-bit varint as [lo, hi] 32-bit halves. */
    uint64() {
        const buf = this.buf;
        let pos = this.pos;
        let lo = 0;
        let hi = 0;
        let shift = 0;
        for (;;) {
            if (pos >= this.end) throw new DecodeError('truncated varint');
            const b = buf[pos++];
            const bits = b & 0x7f;
            if (shift < 28) {
                lo |= bits << shift;
            } else if (shift === 28) {
                lo |= bits << 28;
                hi |= bits >>> 4;
            } else if (shift < 64) {
                hi |= bits << (shift - 32);
            }
            if (b < 0x80) break;
            shift += 7;
            if (shift > 63) throw new DecodeError('varint longer than 10 bytes');
        }
        this.pos = pos;
        return [lo >>> 0, hi | 0];
    }

    length() {
        const n = this.uint32();
        if (n > this.end - this.pos) throw new DecodeError('length beyond the end of the message');
        return n;
    }

    skip(wire) {
        switch (wire) {
            case WIRE_VARINT:
                this.uint64();
                return;
            case WIRE_I64:
                this.advance(8);
                return;
            case WIRE_LEN: {
                const n = this.length();
                this.pos += n;
                return;
            }
            case WIRE_I32:
                this.advance(4);
                return;
            case 3: {
                // A group: skip to its end tag.
                for (;;) {
                    const tag = this.uint32();
                    if ((tag & 7) === 4) return;
                    this.skip(tag & 7);
                }
            }
            default:
                throw new DecodeError(`unsupported wire type ${wire}`);
        }
    }

    advance(n) {
        if (n > this.end - this.pos) throw new DecodeError('truncated field');
        this.pos += n;
    }
}

function readScalar(reader, scalar) {
    switch (scalar) {
        case 'string': {
            const n = reader.length();
            const start = reader.pos;
            reader.pos += n;
            return reader.buf.utf8Slice(start, start + n);
        }
        case 'bytes': {
            const n = reader.length();
            const start = reader.pos;
            reader.pos += n;
            // A copy: the frame's buffer is not kept alive by the message.
            return Buffer.from(reader.buf.subarray(start, start + n));
        }
        case 'bool': {
            const [lo, hi] = reader.uint64();
            return lo !== 0 || hi !== 0;
        }
        case 'int32':
            return reader.uint32() | 0;
        case 'int64': {
            const [lo, hi] = reader.uint64();
            return hi * 4294967296 + lo;
        }
        case 'sint64': {
            let [lo, hi] = reader.uint64();
            const mask = -(lo & 1);
            lo = (((lo >>> 1) | (hi << 31)) ^ mask) >>> 0;
            hi = ((hi >>> 1) ^ mask) | 0;
            return hi * 4294967296 + lo;
        }
        case 'double': {
            reader.advance(8);
            return reader.buf.readDoubleLE(reader.pos - 8);
        }
        default:
            throw new Error(`unknown scalar ${scalar}`);
    }
}

function readValue(reader, field) {
    if (field.kind === 'message') {
        const n = reader.length();
        const end = reader.pos + n;
        const outer = reader.end;
        reader.end = end;
        const value = decodeFields(field.message, reader);
        reader.end = outer;
        return value;
    }
    if (field.kind === 'enum') {
        const n = reader.uint32() | 0;
        const name = field.enumNames[n];
        return name === undefined ? n : name;
    }
    return readScalar(reader, field.scalar);
}

function setKey(obj, key, value) {
    if (key === '__proto__') {
        Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
    } else {
        obj[key] = value;
    }
}

function readMapEntry(reader, field, target) {
    const n = reader.length();
    const end = reader.pos + n;
    const outer = reader.end;
    reader.end = end;
    const entry = reader;
    let key = SCALARS[field.map].zero();
    let value;
    while (entry.pos < end) {
        const tag = entry.uint32();
        const no = tag >>> 3;
        if (no === 1 && (tag & 7) === SCALARS[field.map].wire) {
            key = readScalar(entry, field.map);
        } else if (no === 2 && (tag & 7) === wireOf(field)) {
            value = readValue(entry, field.mapValue);
        } else {
            entry.skip(tag & 7);
        }
    }
    reader.end = outer;
    if (value === undefined) value = defaultValue(field.mapValue);
    setKey(target, String(key), value);
}

function wireOf(field) {
    if (field.kind === 'message') return WIRE_LEN;
    if (field.kind === 'enum') return WIRE_VARINT;
    return SCALARS[field.scalar].wire;
}

function decodeFields(type, reader) {
    const obj = type.create();
    while (reader.pos < reader.end) {
        const tag = reader.uint32();
        const wire = tag & 7;
        const field = type.byNumber[tag >>> 3];
        if (field === undefined) {
            reader.skip(wire);
            continue;
        }
        const expected = field.map ? WIRE_LEN : wireOf(field);
        if (field.map) {
            if (wire !== WIRE_LEN) {
                reader.skip(wire);
                continue;
            }
            readMapEntry(reader, field, obj[field.name]);
        } else if (field.repeated) {
            const list = obj[field.name];
            if (wire === WIRE_LEN && expected !== WIRE_LEN) {
                // A packed list of numbers.
                const n = reader.length();
                const end = reader.pos + n;
                const outer = reader.end;
                reader.end = end;
                while (reader.pos < end) list.push(readValue(reader, field));
                reader.end = outer;
            } else if (wire === expected) {
                list.push(readValue(reader, field));
            } else {
                reader.skip(wire);
            }
        } else if (wire === expected) {
            obj[field.name] = readValue(reader, field);
            if (field.oneof) {
                const previous = obj[field.oneof];
                if (previous !== undefined && previous !== field.name) {
                    // The last member read wins, as in protobuf.
                    delete obj[previous];
                }
                obj[field.oneof] = field.name;
            }
        } else {
            reader.skip(wire);
        }
    }
    return obj;
}

/** Decodes one message of `type` from buf[start, end). Throws DecodeError on malformed input. */
function decode(type, buf, start = 0, end = buf.length) {
    return decodeFields(type, new Reader(buf, start, end));
}

// ---- encoding ------------------------------------------------------------

const TWO_32 = 4294967296;

class Writer {
    constructor(reserve = 0, size = 256) {
        this.buf = Buffer.allocUnsafe(Math.max(size, reserve + 16));
        this.pos = reserve;
    }

    ensure(n) {
        if (this.pos + n > this.buf.length) {
            const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n + 64));
            this.buf.copy(grown, 0, 0, this.pos);
            this.buf = grown;
        }
    }

    uint32(value) {
        this.ensure(5);
        const buf = this.buf;
        let pos = this.pos;
        value >>>= 0;
        while (value > 127) {
            buf[pos++] = (value & 0x7f) | 0x80;
            value >>>= 7;
        }
        buf[pos++] = value;
        this.pos = pos;
    }

    /** A 64-bit varint from two 32-bit halves. */
    uint64(lo, hi) {
        this.ensure(10);
        const buf = this.buf;
        let pos = this.pos;
        lo >>>= 0;
        hi >>>= 0;
        while (hi > 0 || lo > 127) {
            buf[pos++] = (lo & 0x7f) | 0x80;
            lo = ((lo >>> 7) | (hi << 25)) >>> 0;
            hi >>>= 7;
        }
        buf[pos++] = lo;
        this.pos = pos;
    }

    tag(no, wire) {
        this.uint32((no << 3) | wire);
    }

    /** Starts a length-delimited part; returns the mark to give `end`. */
    begin() {
        this.ensure(1);
        this.pos += 1;
        return this.pos - 1;
    }

    /** Ends the part started at `lenPos`, moving it if its length needs more than one byte. */
    end(lenPos) {
        const len = this.pos - lenPos - 1;
        if (len < 128) {
            this.buf[lenPos] = len;
            return;
        }
        let extra = 0;
        for (let v = len >>> 7; v > 0; v >>>= 7) extra++;
        this.ensure(extra);
        this.buf.copy(this.buf, lenPos + 1 + extra, lenPos + 1, this.pos);
        const end = this.pos + extra;
        this.pos = lenPos;
        this.uint32(len);
        this.pos = end;
    }

    string(value) {
        if (value.length < 43) {
            // At most 126 bytes of UTF-8: a one-byte length.
            this.ensure(1 + value.length * 3);
            const n = this.buf.utf8Write(value, this.pos + 1);
            this.buf[this.pos] = n;
            this.pos += 1 + n;
            return;
        }
        const n = Buffer.byteLength(value);
        this.uint32(n);
        this.ensure(n);
        this.buf.utf8Write(value, this.pos, n);
        this.pos += n;
    }

    bytes(value) {
        this.uint32(value.length);
        this.ensure(value.length);
        if (value instanceof Uint8Array) {
            this.buf.set(value, this.pos);
        } else {
            for (let i = 0; i < value.length; i++) this.buf[this.pos + i] = value[i];
        }
        this.pos += value.length;
    }

    double(value) {
        this.ensure(8);
        this.buf.writeDoubleLE(value, this.pos);
        this.pos += 8;
    }

    /** The bytes written, from `start`. */
    finish(start = 0) {
        return this.buf.subarray(start, this.pos);
    }
}

function toBytes(value, where) {
    if (typeof value === 'string') return Buffer.from(value, 'base64');
    if (value instanceof Uint8Array) return value;
    if (value instanceof ArrayBuffer) return new Uint8Array(value);
    if (Array.isArray(value)) return value;
    throw new TypeError(`${where}: bytes expected (a Buffer, Uint8Array or base64 string), got ${typeof value}`);
}

/** Splits an integral number into 64-bit two's complement halves (wrapping like protobufjs's Long). */
function toHalves(value) {
    const n = Math.trunc(Number(value));
    if (!Number.isFinite(n)) return [0, 0];
    if (Number.isSafeInteger(n)) {
        const lo = n >>> 0;
        const hi = Math.floor(n / TWO_32) >>> 0;
        return [lo, hi];
    }
    const big = BigInt.asUintN(64, BigInt(n));
    return [Number(big & 0xffffffffn), Number(big >> 32n)];
}

function isDefault(field, value) {
    if (field.kind === 'message') return false;
    if (field.kind === 'enum') return value === 0 || value === field.enumNames[0];
    switch (field.scalar) {
        case 'string':
            return value === '';
        case 'bytes':
            return value.length === 0;
        case 'bool':
            return !value;
        default:
            return Number(value) === 0 && !Object.is(Number(value), -0);
    }
}

function writeValue(w, field, value) {
    if (field.kind === 'message') {
        if (typeof value !== 'object') {
            throw new TypeError(`${field.path}: an object expected for ${field.message.name}, got ${typeof value}`);
        }
        w.tag(field.no, WIRE_LEN);
        const mark = w.begin();
        encodeFields(w, field.message, value);
        w.end(mark);
        return;
    }
    if (field.kind === 'enum') {
        let n = typeof value === 'number' ? value : field.enumNumbers[value];
        if (n === undefined) n = 0;
        w.tag(field.no, WIRE_VARINT);
        if (n < 0) w.uint64(n, -1);
        else w.uint32(n);
        return;
    }
    writeScalar(w, field.no, field.scalar, value, field.path);
}

function writeScalar(w, no, scalar, value, where) {
    switch (scalar) {
        case 'string':
            w.tag(no, WIRE_LEN);
            w.string(typeof value === 'string' ? value : String(value));
            return;
        case 'bytes':
            w.tag(no, WIRE_LEN);
            w.bytes(toBytes(value, where));
            return;
        case 'bool':
            w.tag(no, WIRE_VARINT);
            w.uint32(value ? 1 : 0);
            return;
        case 'int32': {
            const n = Number(value) | 0;
            w.tag(no, WIRE_VARINT);
            if (n < 0) w.uint64(n, -1);
            else w.uint32(n);
            return;
        }
        case 'int64': {
            const [lo, hi] = toHalves(value);
            w.tag(no, WIRE_VARINT);
            w.uint64(lo, hi);
            return;
        }
        case 'sint64': {
            const [lo, hi] = toHalves(value);
            // Zigzag: (n << 1) ^ (n >> 63).
            const mask = (hi | 0) < 0 ? 0xffffffff : 0;
            const zlo = ((lo << 1) ^ mask) >>> 0;
            const zhi = (((hi << 1) | (lo >>> 31)) ^ mask) >>> 0;
            w.tag(no, WIRE_VARINT);
            w.uint64(zlo, zhi);
            return;
        }
        case 'double':
            w.tag(no, WIRE_I64);
            w.double(Number(value));
            return;
        default:
            throw new Error(`unknown scalar ${scalar}`);
    }
}

function encodeFields(w, type, obj) {
    // The object's own keys, not the type's fields: objects set few of them.
    const byName = type.byName;
    for (const key of Object.keys(obj)) {
        const field = byName.get(key);
        if (field === undefined) continue;
        const value = obj[key];
        if (value === undefined || value === null) continue;
        if (field.map) {
            if (typeof value !== 'object') {
                throw new TypeError(`${field.path}: an object expected for a map, got ${typeof value}`);
            }
            for (const k of Object.keys(value)) {
                const v = value[k];
                if (field.kind === 'message' && (v === undefined || v === null)) continue;
                w.tag(field.no, WIRE_LEN);
                const mark = w.begin();
                writeScalar(w, 1, field.map, k, field.path);
                writeValue(w, field.mapValue, v);
                w.end(mark);
            }
        } else if (field.repeated) {
            if (!Array.isArray(value)) throw new TypeError(`${field.path}: an array expected, got ${typeof value}`);
            if (field.kind !== 'message' && field.scalar !== 'string' && field.scalar !== 'bytes') {
                if (value.length === 0) continue;
                // Packed, as proto3 writes lists of numbers.
                w.tag(field.no, WIRE_LEN);
                const mark = w.begin();
                for (const item of value) writeValue(w, field, item);
                stripTags(w, mark + 1, field);
                w.end(mark);
            } else {
                for (const item of value) {
                    if (item === undefined || item === null) continue;
                    writeValue(w, field, item);
                }
            }
        } else if (field.oneof || !isDefault(field, value)) {
            writeValue(w, field, value);
        }
    }
}

/** Removes the per-item tags written between `mark` and the end (packed lists are written item by item). */
function stripTags(w, mark, field) {
    const tagLen = varintLength((field.no << 3) | wireOf(field));
    const r = new Reader(w.buf, mark, w.pos);
    let out = mark;
    while (r.pos < r.end) {
        r.pos += tagLen;
        const start = r.pos;
        if (wireOf(field) === WIRE_I64) r.pos += 8;
        else r.uint64();
        w.buf.copy(w.buf, out, start, r.pos);
        out += r.pos - start;
    }
    w.pos = out;
}

function varintLength(v) {
    let n = 1;
    for (v >>>= 7; v > 0; v >>>= 7) n++;
    return n;
}

/**
 * Encodes `obj` as a message of `type`. With `reserve`, that many bytes are
 * left free at the start of the returned Buffer (for a frame header).
 */
function encode(type, obj, reserve = 0) {
    const w = new Writer(reserve);
    encodeFields(w, type, obj);
    return w.finish(0);
}

module.exports = { compile, decode, encode, DecodeError, Writer, Reader };
