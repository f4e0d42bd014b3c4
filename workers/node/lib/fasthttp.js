'use strict';
// The HTTP fast path for v4 apps (@azure/functions 4.16 or later, without
// HTTP streaming). The library wraps every request in a web `Request` and
// every returned `HttpResponseInit` in a web `Response` (undici's, with web
// streams for the bodies), which costs more than the rest of an invocation.
// Two shortcuts, each giving what the library would have given:
//
// - the request: the library's `HttpRequest` accepts a ready-made native
//   request (its `nativeRequest`); it gets a `LazyRequest`, which builds the
//   library's own request from the same data the first time the function
//   touches its url, method, headers or body. A function that never reads
//   them never pays for them.
// - the response: when the function returns a plain `HttpResponseInit` with
//   a string, Buffer/Uint8Array, `jsonBody` or no body, simple headers and
//   no cookies, its RpcHttp is built directly, as the library's `toRpcHttp`
//   builds it from a `Response` (status, headers lower-cased, trimmed and
//   sorted, `text/plain;charset=UTF-8` or `application/json` by default,
//   the body as bytes). Anything else goes through the library.

const MIN_VERSION = [4, 16];
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header values the fast path takes: Latin-1 without NUL, CR or LF. */
const SIMPLE_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const EMPTY = new Uint8Array(0);
const MATERIALIZE = Symbol('materialize');

/** Whether `model` (a programming model) is @azure/functions 4.16 or later. */
function supportsFastPath(model) {
    if (!model || model.name !== '@azure/functions' || typeof model.version !== 'string') return false;
    const [major, minor] = model.version.split('.').map(Number);
    return major > MIN_VERSION[0] || (major === MIN_VERSION[0] && minor >= MIN_VERSION[1]);
}

/**
 * For a function's metadata (core shape): the name of its HTTP trigger
 * binding when the function is an HTTP trigger whose only output is an
 * HTTP `$return`, else undefined.
 */
function httpShape(metadata) {
    const bindings = metadata && metadata.bindings;
    if (!bindings) return undefined;
    let trigger;
    let outputs = 0;
    let httpReturn = false;
    for (const [name, binding] of Object.entries(bindings)) {
        const type = String(binding.type || '').toLowerCase();
        if (binding.direction === 'out' || binding.direction === 'inout') {
            outputs++;
            if (name === '$return' && type === 'http' && binding.direction === 'out') httpReturn = true;
        } else if (type === 'httptrigger') {
            trigger = name;
        }
    }
    return trigger && outputs === 1 && httpReturn ? trigger : undefined;
}

/**
 * The native request the library's HttpRequest wraps, made only when used:
 * it is the library's own HttpRequest for the same data (which builds the
 * web Request exactly as the library does), created on first use.
 */
class LazyRequest {
    #init;
    #real;
    #ctor;

    constructor(init) {
        this.#init = init;
    }

    /** The library's HttpRequest class (learned from the request it made around this one). */
    bind(ctor) {
        this.#ctor = ctor;
        const method = String(this.#init.method || '').toLowerCase();
        const body = this.#init.body;
        if ((method === 'get' || method === 'head') && body && ((body.bytes && body.bytes.length) || body.string)) {
            // The library logs a warning when it drops such a body: at once, as it would.
            this[MATERIALIZE]();
        }
    }

    [MATERIALIZE]() {
        if (!this.#real) {
            if (!this.#ctor) {
                throw new Error('fnhost node worker: the request was used before the programming model built it');
            }
            const { nativeRequest: _self, ...init } = this.#init;
            this.#real = new this.#ctor(init);
        }
        return this.#real;
    }
}

// What the library's HttpRequest reads from its native request: each one
// builds the real request first.
for (const name of ['url', 'method', 'headers', 'body', 'bodyUsed']) {
    Object.defineProperty(LazyRequest.prototype, name, {
        get() {
            return this[MATERIALIZE]()[name];
        },
    });
}
for (const name of ['arrayBuffer', 'blob', 'formData', 'json', 'text', 'clone']) {
    LazyRequest.prototype[name] = function () {
        return this[MATERIALIZE]()[name]();
    };
}

/**
 * Puts a LazyRequest into the HTTP trigger's data of a core invocation
 * request. Returns it (to `bind` once the library has made its request), or
 * undefined when the trigger's data is not HTTP.
 */
function deferRequest(coreRequest, triggerName) {
    const inputs = coreRequest.inputData;
    if (!inputs) return undefined;
    for (const binding of inputs) {
        if (binding.name === triggerName && binding.data && binding.data.http) {
            const http = binding.data.http;
            const lazy = new LazyRequest(http);
            http.nativeRequest = lazy;
            return lazy;
        }
    }
    return undefined;
}

/**
 * Header entries as the web Headers class would hold them: [lower-case
 * name, trimmed value] pairs; undefined when they are not simple (not a
 * plain object of strings, a name that is not a token, a value with NUL, CR,
 * LF or beyond Latin-1, a name given twice, set-cookie).
 */
function simpleHeaders(headers) {
    if (headers === undefined) return [];
    if (headers === null || typeof headers !== 'object' || Object.getPrototypeOf(headers) !== Object.prototype) {
        return undefined;
    }
    const entries = [];
    const seen = new Set();
    for (const key of Object.keys(headers)) {
        const value = headers[key];
        if (typeof value !== 'string' || !TOKEN.test(key) || !SIMPLE_VALUE.test(value)) return undefined;
        const name = key.toLowerCase();
        if (seen.has(name) || name === 'set-cookie') return undefined;
        seen.add(name);
        entries.push([name, value.replace(/^[\t ]+|[\t ]+$/g, '')]);
    }
    return entries;
}

/** {name: value} in name order, as Headers lists them. */
function sortedHeaders(entries) {
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const out = {};
    for (const [name, value] of entries) out[name] = value;
    return out;
}

/**
 * The core InvocationResponse the library would return for `result`, the
 * return value of an HTTP function of the shape `httpShape` accepts; or
 * undefined when the result is not one the fast path takes.
 */
function fastResponse(invocationId, result) {
    if (result === null || typeof result !== 'object' || Object.getPrototypeOf(result) !== Object.prototype) {
        return undefined;
    }
    const status = result.status;
    if (status !== undefined && !(Number.isInteger(status) && status >= 200 && status <= 599)) return undefined;
    const cookies = result.cookies;
    if (cookies !== undefined && cookies !== null && !(Array.isArray(cookies) && cookies.length === 0)) return undefined;
    const headers = simpleHeaders(result.headers);
    if (!headers) return undefined;

    const nullBody = status !== undefined && NULL_BODY_STATUSES.has(status);
    const jsonBody = result.jsonBody;
    let bytes = EMPTY;
    let defaultType;
    if (!nullBody && jsonBody !== undefined && jsonBody !== null) {
        let text;
        try {
            text = JSON.stringify(jsonBody);
        } catch {
            return undefined; // the library reports it
        }
        if (typeof text !== 'string') return undefined;
        bytes = Buffer.from(text, 'utf8');
        defaultType = 'application/json';
    } else if (!nullBody) {
        const body = result.body;
        if (typeof body === 'string') {
            bytes = Buffer.from(body, 'utf8');
            defaultType = 'text/plain;charset=UTF-8';
        } else if (Buffer.isBuffer(body) || (body instanceof Uint8Array && Object.getPrototypeOf(body) === Uint8Array.prototype)) {
            // A copy, as Response.arrayBuffer() gives.
            bytes = new Uint8Array(body);
        } else if (body !== undefined && body !== null) {
            return undefined;
        }
    }
    if (defaultType && !headers.some(([name]) => name === 'content-type')) headers.push(['content-type', defaultType]);
    return {
        invocationId,
        outputData: [],
        returnValue: {
            http: {
                statusCode: String(status === undefined ? 200 : status),
                headers: sortedHeaders(headers),
                cookies: [],
                enableContentNegotiation: !!result.enableContentNegotiation,
                body: { bytes },
            },
        },
    };
}

module.exports = { supportsFastPath, httpShape, deferRequest, fastResponse, LazyRequest };
