'use strict';
// Handles the host's messages on the EventStream and answers them.

const path = require('path');
const core = require('./core');
const convert = require('./convert');
const loader = require('./loader');
const fasthttp = require('./fasthttp');

/** FNHOST_NODE_HTTP_FAST_PATH=0 sends every HTTP invocation through the library's own objects. */
const FAST_PATH_ENABLED = process.env.FNHOST_NODE_HTTP_FAST_PATH !== '0';

const { state, executeHooks, readonly } = core;

/** Capabilities the worker always declares (values as Azure's Node worker sends them). */
const WORKER_CAPABILITIES = Object.freeze({
    RawHttpBodyBytes: 'true',
    RpcHttpBodyOnly: 'true',
    RpcHttpTriggerMetadataRemoved: 'true',
    UseNullableValueDictionaryForHttp: 'true',
    IgnoreEmptyValuedRpcHttpHeaders: 'true',
    TypedDataCollection: 'true',
    WorkerStatus: 'true',
    HandlesWorkerTerminateMessage: 'true',
});

class Dispatcher {
    /**
     * @param write function(StreamingMessage) sending one message to the host
     * @param exit function(code) ending the process (after the stream is closed)
     */
    constructor(write, exit) {
        this.write = write;
        this.exit = exit;
        this.initError = undefined;
        this.initialized = false;
        this.terminating = false;
        /** Invocations running. */
        this.active = 0;
        /** Whether the programming model asked for HTTP streaming (it declared HttpUri). */
        this.httpStream = false;
    }

    /** One message from the host. Never throws; failures become failure results. */
    handle(message) {
        const kind = message.content;
        const body = kind ? message[kind] : undefined;
        const reply = (content, payload, batch) =>
            this.write({ requestId: message.requestId || '', [content]: payload }, batch);
        switch (kind) {
            case 'workerInitRequest':
                return this.track(this.workerInit(body, reply));
            case 'functionsMetadataRequest':
                return this.track(this.functionsMetadata(body, reply));
            case 'functionLoadRequest':
                return this.track(
                    this.functionLoad(body).then((r) => reply('functionLoadResponse', r))
                );
            case 'functionLoadRequestCollection':
                return this.track(
                    Promise.all((body.functionLoadRequests || []).map((r) => this.functionLoad(r))).then((rs) =>
                        reply('functionLoadResponseCollection', { functionLoadResponses: rs })
                    )
                );
            case 'invocationRequest':
                this.active++;
                return this.track(
                    this.invoke(body).then((r) => {
                        this.active--;
                        // With other invocations running, answers are batched.
                        reply('invocationResponse', r, this.active > 0);
                    })
                );
            case 'workerStatusRequest':
                return reply('workerStatusResponse', {});
            case 'workerTerminate':
                return this.track(this.terminate(body));
            case 'functionEnvironmentReloadRequest':
                return this.track(this.environmentReload(body, reply));
            default:
                // Unknown or optional messages (invocationCancel, warmup,
                // shared memory, file change, ...) are ignored: the worker
                // declares no capability that would make the host send them.
                return undefined;
        }
    }

    track(promise) {
        return promise.catch((err) => {
            core.emitLog('error', 'system', `Worker failed to handle a message: ${err && err.stack ? err.stack : err}`);
        });
    }

    // ---- start-up --------------------------------------------------------

    async workerInit(req, reply) {
        state.hostVersion = req.hostVersion || '';
        const appDir = req.functionAppDirectory || process.env.FUNCTIONS_APPLICATION_DIRECTORY || process.cwd();
        let result = convert.SUCCESS;
        try {
            await this.startApp(appDir);
        } catch (err) {
            this.initError = err;
            result = convert.failure(err);
            core.emitLog('error', 'system', err && err.message ? err.message : String(err));
        }
        const capabilities = await this.capabilities();
        this.initialized = true;
        reply('workerInitResponse', {
            workerVersion: core.WORKER_VERSION,
            capabilities,
            result,
            workerMetadata: this.workerMetadata(),
        });
    }

    /** Loads package.json "main" from `appDir` and runs the appStart hooks. */
    async startApp(appDir) {
        state.appDirectory = appDir;
        state.registrationOpen = true;
        await loader.loadEntryPoint(appDir);
        const context = readonly(
            { functionAppDirectory: appDir },
            { hookData: state.appLevelHookData, appHookData: state.appHookData }
        );
        await executeHooks('appStart', context);
    }

    async capabilities() {
        let capabilities = { ...WORKER_CAPABILITIES };
        const model = state.programmingModel;
        if (model && typeof model.getCapabilities === 'function') {
            try {
                capabilities = (await model.getCapabilities(capabilities)) || capabilities;
            } catch (err) {
                core.emitLog('error', 'system', `The programming model's getCapabilities failed: ${err}`);
            }
        }
        this.httpStream = capabilities.HttpUri !== undefined;
        // Values are strings on the wire.
        return Object.fromEntries(Object.entries(capabilities).map(([k, v]) => [k, String(v)]));
    }

    workerMetadata() {
        const model = state.programmingModel;
        const customProperties = {};
        if (model) {
            customProperties.modelName = String(model.name || '');
            customProperties.modelVersion = String(model.version || '');
        }
        return {
            runtimeName: 'node',
            runtimeVersion: process.versions.node,
            workerVersion: core.WORKER_VERSION,
            workerBitness: process.arch,
            customProperties,
        };
    }

    async functionsMetadata(req, reply) {
        // After this, the host knows the function list: no more registrations.
        state.registrationOpen = false;
        if (this.initError) {
            return reply('functionMetadataResponse', {
                functionMetadataResults: [],
                result: convert.failure(this.initError),
                useDefaultMetadataIndexing: false,
            });
        }
        const indexed = [...state.functions.values()].filter((f) => f.workerIndexed);
        if (indexed.length === 0) {
            // A v3-model app: the host reads function.json itself.
            return reply('functionMetadataResponse', {
                functionMetadataResults: [],
                result: convert.SUCCESS,
                useDefaultMetadataIndexing: true,
            });
        }
        let results;
        try {
            results = indexed.map((f) => convert.fromCoreFunctionMetadata(f.metadata));
        } catch (err) {
            return reply('functionMetadataResponse', {
                functionMetadataResults: [],
                result: convert.failure(err, 'Worker failed to describe its functions'),
                useDefaultMetadataIndexing: false,
            });
        }
        reply('functionMetadataResponse', {
            functionMetadataResults: results,
            result: convert.SUCCESS,
            useDefaultMetadataIndexing: false,
        });
    }

    /** Returns the FunctionLoadResponse for one FunctionLoadRequest. */
    async functionLoad(req) {
        const functionId = req.functionId || (req.metadata && req.metadata.functionId) || '';
        try {
            const existing = state.functions.get(functionId);
            if (existing && existing.workerIndexed) {
                // Registered by the app while it started (v4): nothing to load.
                return { functionId, result: convert.SUCCESS };
            }
            if (!req.metadata) {
                throw new Error(`Function id "${functionId}" was not registered by the app and came without metadata`);
            }
            const metadata = convert.toCoreFunctionMetadata(req.metadata);
            metadata.functionId = functionId;
            if (!metadata.name) metadata.name = functionId;
            const callback = await loader.loadLegacyFunction(metadata);
            state.functions.set(functionId, { metadata, callback, workerIndexed: false });
            return { functionId, result: convert.SUCCESS };
        } catch (err) {
            const name = (req.metadata && req.metadata.name) || functionId;
            return { functionId, result: convert.failure(err, `Worker was unable to load function ${name}`) };
        }
    }

    // ---- invocations -----------------------------------------------------

    /** Returns the InvocationResponse for one InvocationRequest. */
    async invoke(req) {
        const invocationId = req.invocationId;
        const fn = state.functions.get(req.functionId);
        if (!fn) {
            return {
                invocationId,
                result: convert.failure(new Error(`Function id "${req.functionId}" is not loaded`)),
            };
        }
        const functionName = fn.metadata.name;
        const logCategory = `${functionName}.Invocation`;
        let invocationContext;
        const request = convert.toCoreInvocationRequest(req);
        const fastTrigger = this.fastHttpTrigger(fn);
        const lazyRequest = fastTrigger ? fasthttp.deferRequest(request, fastTrigger) : undefined;
        const coreCtx = {
            invocationId,
            request,
            metadata: fn.metadata,
            state: undefined,
            log: (level, category, message) =>
                core.emitLog(level, category, message, invocationId, logCategory, invocationContext),
        };
        try {
            const model = state.programmingModel;
            if (!model) {
                throw new Error('No programming model is set');
            }
            let invocationModel = model.getInvocationModel(coreCtx);
            if (invocationModel && typeof invocationModel.then === 'function') {
                invocationModel = await invocationModel;
            }
            const { context, inputs } = await invocationModel.getArguments();
            invocationContext = context;
            if (lazyRequest) {
                // The trigger's HttpRequest (the only trigger input) knows its own class.
                lazyRequest.bind(inputs[0].constructor);
            }
            // Hook contexts are built only when there are hooks to see them.
            const hookData = {};
            const runHooks = async (name, writable) => {
                const hookContext = readonly(writable, {
                    hookData,
                    appHookData: state.appHookData,
                    invocationContext: context,
                });
                coreCtx.state = `${name}Hooks`;
                try {
                    await executeHooks(name, hookContext);
                } finally {
                    coreCtx.state = undefined;
                }
                return hookContext;
            };
            let callInputs = inputs;
            let callback = fn.callback;
            if (core.hookCount('preInvocation') > 0) {
                const pre = await runHooks('preInvocation', { inputs, functionCallback: fn.callback });
                callInputs = pre.inputs;
                callback = pre.functionCallback;
            }

            let result = null;
            let error = null;
            coreCtx.state = 'invocation';
            try {
                result = await invocationModel.invokeFunction(context, callInputs, callback);
            } catch (err) {
                error = err;
            } finally {
                coreCtx.state = undefined;
            }

            if (core.hookCount('postInvocation') > 0) {
                const post = await runHooks('postInvocation', { inputs: callInputs, result, error });
                result = post.result;
                error = post.error;
            }
            if (error !== null && error !== undefined) {
                throw error;
            }

            // The fast path's response has nothing to convert (no enums, no cookies).
            const response =
                (fastTrigger && fasthttp.fastResponse(invocationId, result)) ||
                convert.fromCoreInvocationResponse(await invocationModel.getResponse(context, result));
            response.invocationId = invocationId;
            response.result = convert.SUCCESS;
            return response;
        } catch (err) {
            const result = convert.failure(err);
            return { invocationId, result };
        }
    }

    /**
     * The name of `fn`'s HTTP trigger binding when its invocations can take
     * the HTTP fast path (./fasthttp.js), else undefined. Decided once per
     * function.
     */
    fastHttpTrigger(fn) {
        if (fn.fastHttp === undefined) {
            fn.fastHttp =
                (FAST_PATH_ENABLED &&
                    fn.workerIndexed &&
                    !this.httpStream &&
                    fasthttp.supportsFastPath(state.programmingModel) &&
                    fasthttp.httpShape(fn.metadata)) ||
                null;
        }
        return fn.fastHttp || undefined;
    }

    // ---- shutdown and reload ---------------------------------------------

    async terminate(req) {
        if (this.terminating) return;
        this.terminating = true;
        const grace = req && req.gracePeriod ? Number(req.gracePeriod.seconds || 0) * 1000 + Math.floor(Number(req.gracePeriod.nanos || 0) / 1e6) : 0;
        // Leave a little of the grace period for the exit itself.
        const budget = grace > 0 ? Math.max(grace - 250, 100) : 5000;
        const context = readonly({}, { hookData: state.appLevelHookData, appHookData: state.appHookData });
        let timer;
        try {
            await Promise.race([
                executeHooks('appTerminate', context),
                new Promise((resolve) => {
                    timer = setTimeout(() => {
                        core.emitLog('warning', 'system', `appTerminate hooks did not finish within ${budget} ms`);
                        resolve();
                    }, budget);
                }),
            ]);
        } catch (err) {
            core.emitLog('error', 'system', `An appTerminate hook failed: ${err && err.stack ? err.stack : err}`);
        } finally {
            clearTimeout(timer);
        }
        this.exit(0, 'the host asked the worker to terminate');
    }

    async environmentReload(req, reply) {
        let result = convert.SUCCESS;
        try {
            for (const [key, value] of Object.entries(req.environmentVariables || {})) {
                process.env[key] = value;
            }
            const appDir = req.functionAppDirectory;
            if (appDir && path.resolve(appDir) !== path.resolve(state.appDirectory)) {
                process.chdir(appDir);
                this.initError = undefined;
                await this.startApp(appDir);
            }
        } catch (err) {
            this.initError = err;
            result = convert.failure(err);
        }
        reply('functionEnvironmentReloadResponse', {
            capabilities: await this.capabilities(),
            workerMetadata: this.workerMetadata(),
            result,
        });
    }
}

module.exports = { Dispatcher, WORKER_CAPABILITIES };
