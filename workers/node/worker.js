#!/usr/bin/env node
'use strict';
// fnhost's Node.js language worker.
//
// Launched by the host as
//   node <worker dir>/worker.js --host 127.0.0.1 --port N --workerId W --requestId R
//        --grpcMaxMessageLength L --functions-uri http://127.0.0.1:N/
//        --functions-worker-id W --functions-request-id R --functions-grpc-max-message-length L
// with the app's root as working directory. It dials the host's FunctionRpc
// server, sends StartStream, then answers the host's messages. The
// programming model (how an app declares and runs functions) is Microsoft's
// published @azure/functions library: the app's own 4.x, or the worker's
// copies (4.x for apps without node_modules, 3.x as the default model).

const { parseArgs, ArgumentError } = require('./lib/args');

const PREFIX = '[fnhost node worker]';
const CONNECT_TIMEOUT_MS = Number(process.env.FNHOST_WORKER_CONNECT_TIMEOUT_MS) || 15000;

function fatal(message, code = 1) {
    process.stderr.write(`${PREFIX} error: ${message}\n`);
    process.exit(code);
}

function checkNodeVersion() {
    const major = Number(process.versions.node.split('.')[0]);
    if (major < 20) {
        fatal(`Node.js ${process.versions.node} is too old; the worker needs Node.js 20 or later`);
    }
}

async function main() {
    checkNodeVersion();
    let args;
    try {
        args = parseArgs(process.argv.slice(2));
    } catch (err) {
        if (err instanceof ArgumentError) fatal(err.message, 2);
        throw err;
    }

    // The core API and the default (v3) model are in place before any app code loads.
    const core = require('./lib/core');
    core.installModuleHooks();
    core.installDefaultModel();
    const { Dispatcher } = require('./lib/dispatcher');
    const { connect } = require('./lib/rpc');

    let connection;
    try {
        connection = await connect(args.address, args.grpcMaxMessageLength, CONNECT_TIMEOUT_MS);
    } catch (err) {
        fatal(
            `cannot connect to the host at ${args.address} within ${CONNECT_TIMEOUT_MS} ms: ${err && err.message ? err.message : err}`
        );
    }
    const { client, stream } = connection;

    let exiting = false;
    const exit = (code, reason) => {
        if (exiting) return;
        exiting = true;
        process.exitCode = code;
        process.stderr.write(`${PREFIX} exiting: ${reason}\n`);
        core.state.sendLog = undefined;
        try {
            stream.end();
        } catch {
            // the stream may already be gone
        }
        client.close();
        // Give the end-of-stream frame a moment to leave.
        setTimeout(() => process.exit(code), 50).unref();
    };

    const write = (message, batch) => {
        if (!exiting) stream.write(message, batch);
    };
    core.state.sendLog = (rpcLog) => write({ requestId: args.requestId, rpcLog });
    const dispatcher = new Dispatcher(write, exit);

    stream.on('data', (message) => dispatcher.handle(message));
    stream.on('end', () => exit(0, 'the host closed the event stream'));
    stream.on('error', (err) => {
        if (exiting) return;
        exit(1, `the event stream failed: ${err && err.message ? err.message : err}`);
    });

    process.on('uncaughtException', (err) => {
        const text = err && err.stack ? err.stack : String(err);
        process.stderr.write(`${PREFIX} error: uncaught exception: ${text}\n`);
        core.emitLog('critical', 'system', `Worker uncaught exception (the worker exits): ${text}`);
        exit(1, 'uncaught exception');
    });
    process.on('unhandledRejection', (reason) => {
        const text = reason && reason.stack ? reason.stack : String(reason);
        core.emitLog('error', 'system', `Unhandled promise rejection (the worker goes on): ${text}`);
    });

    write({ requestId: args.requestId, startStream: { workerId: args.workerId } });
}

main().catch((err) => fatal(err && err.stack ? err.stack : String(err)));
