'use strict';
// The in-memory module `@azure/functions-core`: the API that Microsoft's
// programming-model libraries (@azure/functions v3 and v4) call. Its contract
// is the `types-core` typings of Azure's Node worker; this is fnhost's own
// implementation of it.
//
// `require('@azure/functions-core')` from anywhere in the process returns the
// object built here. `require('@azure/functions')` from an app that has no
// copy of its own resolves to the worker's copy (4.x).

const Module = require('module');
const path = require('path');

const CORE_MODULE = '@azure/functions-core';
const FUNCTIONS_PACKAGE = '@azure/functions';
const WORKER_DIR = path.join(__dirname, '..');
const WORKER_VERSION = require('../package.json').version;

class Disposable {
    static from(...disposableLikes) {
        return new Disposable(() => {
            for (const d of disposableLikes) {
                d.dispose();
            }
        });
    }

    #callOnDispose;

    constructor(callOnDispose) {
        this.#callOnDispose = callOnDispose;
    }

    dispose() {
        if (this.#callOnDispose) {
            const f = this.#callOnDispose;
            this.#callOnDispose = undefined;
            f();
        }
    }
}

const HOOK_NAMES = ['preInvocation', 'postInvocation', 'appStart', 'appTerminate', 'log'];

/**
 * The worker's state that the core API reads and writes. One per process.
 * `sendLog(rpcLog)` is set by the worker once the stream is open.
 */
class CoreState {
    constructor() {
        this.hostVersion = '';
        /** functionId -> {metadata: core RpcFunctionMetadata, callback} */
        this.functions = new Map();
        this.registrationOpen = true;
        /** The file being loaded by the app loader (registerFunction records it as scriptFile). */
        this.currentFile = undefined;
        this.appDirectory = process.cwd();
        this.hooks = new Map(HOOK_NAMES.map((n) => [n, []]));
        this.programmingModel = undefined;
        this.defaultModel = undefined;
        /** Shared by every hook. */
        this.appHookData = {};
        /** Shared by appStart and appTerminate hooks only. */
        this.appLevelHookData = {};
        this.sendLog = undefined;
    }
}

const state = new CoreState();

function toRpcLogLevel(level) {
    // Core levels are the proto names in lower camel case.
    switch (level) {
        case 'trace':
            return 'Trace';
        case 'debug':
            return 'Debug';
        case 'information':
            return 'Information';
        case 'warning':
            return 'Warning';
        case 'error':
            return 'Error';
        case 'critical':
            return 'Critical';
        case 'none':
            return 'None';
        default:
            return 'Information';
    }
}

function toRpcLogCategory(category) {
    switch (category) {
        case 'system':
            return 'System';
        case 'customMetric':
            return 'CustomMetric';
        default:
            return 'User';
    }
}

let inLogHook = false;

/**
 * Runs the 'log' hooks (synchronous) on one log. They may change the level
 * and message of user logs. Returns {level, message}.
 */
function runLogHooks(level, category, message, invocationContext) {
    const hooks = state.hooks.get('log');
    if (hooks.length === 0 || inLogHook) {
        return { level, message };
    }
    const context = { level, message, category, invocationContext, hookData: {}, appHookData: state.appHookData };
    inLogHook = true;
    try {
        for (const hook of [...hooks]) {
            try {
                hook(context);
            } catch (err) {
                process.stderr.write(`[fnhost node worker] a log hook failed: ${err && err.stack ? err.stack : err}\n`);
            }
        }
    } finally {
        inLogHook = false;
    }
    return category === 'user' ? { level: context.level, message: context.message } : { level, message };
}

/**
 * Sends one RpcLog (or writes it to stderr while there is no stream), after
 * the log hooks. `invocationContext` is the context object of the invocation
 * the log belongs to, if any.
 */
function emitLog(level, category, message, invocationId, logCategory, invocationContext) {
    ({ level, message } = runLogHooks(level, category, String(message), invocationContext));
    const rpcLog = {
        invocationId: invocationId || '',
        category: logCategory || '',
        level: toRpcLogLevel(level),
        message: String(message),
        logCategory: toRpcLogCategory(category),
    };
    if (state.sendLog) {
        state.sendLog(rpcLog);
    } else {
        process.stderr.write(`[fnhost node worker] ${level}: ${rpcLog.message}\n`);
    }
}

function registerFunction(metadata, callback) {
    if (!state.registrationOpen) {
        throw new Error(
            'A function can only be registered while the app starts (when package.json "main" is loaded), ' +
                'not after the worker has reported its functions to the host.'
        );
    }
    if (!metadata || typeof metadata !== 'object') {
        throw new TypeError('registerFunction: metadata must be an object');
    }
    if (typeof callback !== 'function') {
        throw new TypeError('registerFunction: callback must be a function');
    }
    const name = metadata.name;
    if (!name || typeof name !== 'string') {
        throw new TypeError('registerFunction: metadata.name must be a non-empty string');
    }
    const bindings = metadata.bindings;
    if (!bindings || typeof bindings !== 'object') {
        throw new TypeError(`registerFunction: function "${name}" has no bindings`);
    }
    const functionId = metadata.functionId || name;
    for (const existing of state.functions.values()) {
        if (existing.metadata.name.toLowerCase() === name.toLowerCase()) {
            throw new Error(`A function named "${name}" is already registered; function names must be unique.`);
        }
    }
    if (state.functions.has(functionId)) {
        throw new Error(`A function with id "${functionId}" is already registered; function ids must be unique.`);
    }

    const rawBindings = Object.entries(bindings).map(([bindingName, info]) =>
        JSON.stringify({ ...info, name: bindingName })
    );
    const entry = {
        metadata: {
            name,
            functionId,
            directory: state.appDirectory,
            scriptFile: state.currentFile ? path.basename(state.currentFile) : '',
            entryPoint: '',
            language: 'node',
            bindings,
            rawBindings,
            retryOptions: metadata.retryOptions,
            isProxy: false,
        },
        callback,
        workerIndexed: true,
    };
    state.functions.set(functionId, entry);
    return new Disposable(() => {
        if (state.functions.get(functionId) === entry && state.registrationOpen) {
            state.functions.delete(functionId);
        }
    });
}

function registerHook(hookName, callback) {
    const list = state.hooks.get(hookName);
    if (!list) {
        throw new RangeError(`Unknown hook "${hookName}"; expected one of ${HOOK_NAMES.join(', ')}`);
    }
    if (typeof callback !== 'function') {
        throw new TypeError(`registerHook: the "${hookName}" callback must be a function`);
    }
    list.push(callback);
    return new Disposable(() => {
        const i = list.indexOf(callback);
        if (i >= 0) {
            list.splice(i, 1);
        }
    });
}

function setProgrammingModel(model) {
    if (!model || typeof model.getInvocationModel !== 'function') {
        throw new TypeError('setProgrammingModel: a programming model needs getInvocationModel()');
    }
    const previous = state.programmingModel;
    if (previous && previous !== state.defaultModel && previous !== model) {
        emitLog(
            'warning',
            'system',
            `Programming model "${previous.name}@${previous.version}" is replaced by "${model.name}@${model.version}".`
        );
    }
    state.programmingModel = model;
}

function getProgrammingModel() {
    return state.programmingModel;
}

/** Runs the hooks of one kind in order; a throwing hook stops the rest and the error propagates. */
async function executeHooks(hookName, context) {
    // Copied so that a hook disposing itself does not skip the next one.
    for (const hook of [...state.hooks.get(hookName)]) {
        await hook(context);
    }
}

function hookCount(hookName) {
    return state.hooks.get(hookName).length;
}

/** Defines read-only properties (a hook may change their contents, not replace them). */
function readonly(target, props) {
    for (const [key, value] of Object.entries(props)) {
        Object.defineProperty(target, key, { value, enumerable: true, writable: false });
    }
    return target;
}

const coreApi = Object.freeze({
    version: WORKER_VERSION,
    get hostVersion() {
        return state.hostVersion;
    },
    registerFunction,
    registerHook,
    setProgrammingModel,
    getProgrammingModel,
    log: (level, category, message) => emitLog(level, category, message),
    Disposable,
});

let installed = false;

/**
 * Makes `@azure/functions-core` resolvable and gives apps without their own
 * `@azure/functions` the worker's copy. Idempotent.
 */
function installModuleHooks() {
    if (installed) {
        return;
    }
    installed = true;

    const originalLoad = Module._load;
    Module._load = function (request, ...rest) {
        if (request === CORE_MODULE) {
            return coreApi;
        }
        return originalLoad.call(this, request, ...rest);
    };

    const originalResolve = Module._resolveFilename;
    Module._resolveFilename = function (request, parent, isMain, ...rest) {
        try {
            return originalResolve.call(this, request, parent, isMain, ...rest);
        } catch (err) {
            if (
                err &&
                err.code === 'MODULE_NOT_FOUND' &&
                (request === FUNCTIONS_PACKAGE || request.startsWith(FUNCTIONS_PACKAGE + '/'))
            ) {
                return originalResolve.call(this, request, parent, isMain, { paths: [WORKER_DIR] });
            }
            throw err;
        }
    };
}

/** Installs the worker's bundled v3 library as the default programming model. */
function installDefaultModel() {
    // The v3 library calls setProgrammingModel from setup().
    const v3 = require('azure-functions-v3');
    v3.setup();
    state.defaultModel = state.programmingModel;
}

module.exports = {
    state,
    coreApi,
    Disposable,
    emitLog,
    executeHooks,
    hookCount,
    readonly,
    installModuleHooks,
    installDefaultModel,
    WORKER_DIR,
    WORKER_VERSION,
    FUNCTIONS_PACKAGE,
};
