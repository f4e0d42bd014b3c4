'use strict';
// Conversions between the message objects of the gRPC stream (camelCase,
// enums by their .proto names) and the shapes of the `@azure/functions-core`
// API (camelCase, enums as lower-camel-case strings). Most fields are the same
// on both sides; only enums and the containers that hold them are rebuilt.

function mapEnum(table, value, what) {
    if (value === undefined || value === null) {
        return value;
    }
    const mapped = table[value];
    if (mapped === undefined) {
        throw new RangeError(`unexpected ${what} "${value}"`);
    }
    return mapped;
}

function invert(table) {
    return Object.fromEntries(Object.entries(table).map(([k, v]) => [v, k]));
}

const SAME_SITE_TO_CORE = { None: 'none', Lax: 'lax', Strict: 'strict', ExplicitNone: 'explicitNone' };
const SAME_SITE_FROM_CORE = invert(SAME_SITE_TO_CORE);
const STATUS_TO_CORE = { Failure: 'failure', Success: 'success', Cancelled: 'cancelled' };
const STATUS_FROM_CORE = invert(STATUS_TO_CORE);
const RETRY_TO_CORE = { exponential_backoff: 'exponentialBackoff', fixed_delay: 'fixedDelay' };
const RETRY_FROM_CORE = invert(RETRY_TO_CORE);
// Binding directions and data types have the same names on both sides.
const DIRECTIONS = { in: 'in', out: 'out', inout: 'inout' };
const DATA_TYPES = { undefined: 'undefined', string: 'string', binary: 'binary', stream: 'stream' };

function mapValues(obj, f) {
    if (!obj) {
        return obj;
    }
    const out = {};
    for (const [k, v] of Object.entries(obj)) {
        out[k] = f(v);
    }
    return out;
}

// ---- host -> core --------------------------------------------------------

function toCoreCookie(cookie) {
    return { ...cookie, sameSite: mapEnum(SAME_SITE_TO_CORE, cookie.sameSite, 'cookie SameSite') };
}

// These copy an object only when something in it changes (most requests
// have nothing to convert: no cookies, no nested HTTP data).

function toCoreHttp(http) {
    if (!http) {
        return http;
    }
    const body = toCoreTypedData(http.body);
    const rawBody = toCoreTypedData(http.rawBody);
    const cookies = http.cookies && http.cookies.length > 0 ? http.cookies.map(toCoreCookie) : http.cookies;
    if (body === http.body && rawBody === http.rawBody && cookies === http.cookies) {
        return http;
    }
    return { ...http, body, rawBody, cookies };
}

function toCoreTypedData(data) {
    if (!data || !data.http) {
        return data;
    }
    const http = toCoreHttp(data.http);
    return http === data.http ? data : { ...data, http };
}

function toCoreBindingData(binding) {
    const data = toCoreTypedData(binding.data);
    return data === binding.data ? binding : { ...binding, data };
}

function toCoreInvocationRequest(req) {
    const inputData = req.inputData ? req.inputData.map(toCoreBindingData) : req.inputData;
    const metadata = req.triggerMetadata;
    const hasMetadata = metadata && Object.keys(metadata).length > 0;
    return {
        ...req,
        inputData,
        triggerMetadata: hasMetadata ? mapValues(metadata, toCoreTypedData) : metadata,
    };
}

function toCoreBinding(binding) {
    if (!binding) {
        return binding;
    }
    return {
        ...binding,
        direction: mapEnum(DIRECTIONS, binding.direction, 'binding direction'),
        dataType: mapEnum(DATA_TYPES, binding.dataType, 'binding data type'),
    };
}

/** A converter of StatusResult objects whose `status` maps through `table`. */
function statusResultConverter(table, what) {
    return (result) => (result ? { ...result, status: mapEnum(table, result.status, what) } : result);
}

const toCoreStatusResult = statusResultConverter(STATUS_TO_CORE, 'status');

function toCoreFunctionMetadata(metadata) {
    return {
        ...metadata,
        bindings: mapValues(metadata.bindings, toCoreBinding),
        status: toCoreStatusResult(metadata.status),
        retryOptions: metadata.retryOptions
            ? {
                  ...metadata.retryOptions,
                  retryStrategy: mapEnum(RETRY_TO_CORE, metadata.retryOptions.retryStrategy, 'retry strategy'),
              }
            : metadata.retryOptions,
    };
}

// ---- core -> host --------------------------------------------------------

function fromCoreCookie(cookie) {
    return { ...cookie, sameSite: mapEnum(SAME_SITE_FROM_CORE, cookie.sameSite, 'cookie sameSite') };
}

function fromCoreHttp(http) {
    if (!http) {
        return http;
    }
    return {
        ...http,
        body: fromCoreTypedData(http.body),
        rawBody: fromCoreTypedData(http.rawBody),
        cookies: http.cookies ? http.cookies.map(fromCoreCookie) : http.cookies,
    };
}

function fromCoreTypedData(data) {
    if (!data || !data.http) {
        return data;
    }
    return { ...data, http: fromCoreHttp(data.http) };
}

const fromCoreStatusResult = statusResultConverter(STATUS_FROM_CORE, 'core status');

function fromCoreInvocationResponse(res) {
    return {
        ...res,
        outputData: res.outputData
            ? res.outputData.map((b) => ({ ...b, data: fromCoreTypedData(b.data) }))
            : res.outputData,
        returnValue: fromCoreTypedData(res.returnValue),
        result: fromCoreStatusResult(res.result),
    };
}

function fromCoreBinding(binding) {
    // Lenient: the full binding (whatever the library put in it) is in rawBindings anyway.
    return {
        type: binding.type || '',
        direction: DIRECTIONS[binding.direction] || 'in',
        dataType: DATA_TYPES[binding.dataType] || 'undefined',
    };
}

/** The RpcFunctionMetadata message for a function registered through the core API. */
function fromCoreFunctionMetadata(metadata) {
    const retry = metadata.retryOptions;
    return {
        name: metadata.name,
        functionId: metadata.functionId,
        directory: metadata.directory,
        scriptFile: metadata.scriptFile,
        entryPoint: metadata.entryPoint,
        language: metadata.language,
        isProxy: false,
        bindings: mapValues(metadata.bindings, fromCoreBinding),
        rawBindings: metadata.rawBindings,
        retryOptions: retry
            ? { ...retry, retryStrategy: mapEnum(RETRY_FROM_CORE, retry.retryStrategy, 'core retry strategy') }
            : undefined,
        properties: { worker_indexed: 'True' },
    };
}

// ---- errors --------------------------------------------------------------

/** An RpcException for anything thrown. */
function toRpcException(err) {
    if (err instanceof Error || (err && typeof err === 'object' && 'message' in err)) {
        const message = typeof err.message === 'string' ? err.message : String(err.message);
        const name = typeof err.name === 'string' ? err.name : '';
        return {
            message: name && name !== 'Error' && !message.startsWith(name) ? `${name}: ${message}` : message,
            stackTrace: typeof err.stack === 'string' ? err.stack : '',
            source: '',
            type: name,
            isUserException: false,
        };
    }
    let message;
    try {
        message = typeof err === 'string' ? err : JSON.stringify(err);
    } catch {
        message = String(err);
    }
    return { message: String(message), stackTrace: '', source: '', type: '', isUserException: false };
}

function failure(err, prefix) {
    const exception = toRpcException(err);
    if (prefix) {
        exception.message = `${prefix}: ${exception.message}`;
    }
    return { status: 'Failure', result: exception.message, exception };
}

const SUCCESS = Object.freeze({ status: 'Success' });

module.exports = {
    toCoreInvocationRequest,
    toCoreFunctionMetadata,
    fromCoreInvocationResponse,
    fromCoreFunctionMetadata,
    toRpcException,
    failure,
    SUCCESS,
};
