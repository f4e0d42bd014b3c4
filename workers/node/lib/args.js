'use strict';
// Command-line arguments as Azure's host passes them. Two families carry the
// same facts; either one alone is enough, and the --functions-* one wins when
// both are given (it is the one Azure's own Node worker reads).
//
//   --host H --port N --workerId W --requestId R --grpcMaxMessageLength L
//   --functions-uri http://H:N/ --functions-worker-id W
//   --functions-request-id R --functions-grpc-max-message-length L

const USAGE =
    'usage: node worker.js (--host H --port N --workerId W --requestId R [--grpcMaxMessageLength L] | ' +
    '--functions-uri http://H:N/ --functions-worker-id W --functions-request-id R ' +
    '[--functions-grpc-max-message-length L])';

class ArgumentError extends Error {}

/** Reads `--key value` and `--key=value` pairs; anything else is ignored. */
function readFlags(argv) {
    const flags = new Map();
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (!arg.startsWith('--')) {
            continue;
        }
        const eq = arg.indexOf('=');
        if (eq > 2) {
            flags.set(arg.slice(2, eq), arg.slice(eq + 1));
        } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
            flags.set(arg.slice(2), argv[i + 1]);
            i++;
        } else {
            flags.set(arg.slice(2), '');
        }
    }
    return flags;
}

function parseMaxLength(value, name) {
    if (value === undefined || value === '') {
        return undefined;
    }
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) {
        throw new ArgumentError(`--${name} must be a positive integer, not "${value}"`);
    }
    return n;
}

/**
 * Returns {address: "host:port", workerId, requestId, grpcMaxMessageLength}.
 * Throws ArgumentError (its message says what is missing) when neither family is complete.
 */
function parseArgs(argv) {
    const flags = readFlags(argv);
    const get = (name) => {
        const v = flags.get(name);
        return v === undefined || v === '' ? undefined : v;
    };

    let address;
    const uri = get('functions-uri');
    if (uri) {
        let url;
        try {
            url = new URL(uri);
        } catch {
            throw new ArgumentError(`--functions-uri is not a URL: "${uri}"`);
        }
        if (!url.port) {
            throw new ArgumentError(`--functions-uri has no port: "${uri}"`);
        }
        address = url.host;
    } else if (get('host') && get('port')) {
        const port = Number(get('port'));
        if (!Number.isInteger(port) || port <= 0 || port > 65535) {
            throw new ArgumentError(`--port must be a TCP port, not "${get('port')}"`);
        }
        const host = get('host');
        address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
    }

    const workerId = get('functions-worker-id') || get('workerId');
    const requestId = get('functions-request-id') || get('requestId');
    const grpcMaxMessageLength =
        parseMaxLength(get('functions-grpc-max-message-length'), 'functions-grpc-max-message-length') ||
        parseMaxLength(get('grpcMaxMessageLength'), 'grpcMaxMessageLength');

    const missing = [];
    if (!address) missing.push('the host address (--functions-uri, or --host and --port)');
    if (!workerId) missing.push('the worker id (--functions-worker-id or --workerId)');
    if (!requestId) missing.push('the request id (--functions-request-id or --requestId)');
    if (missing.length > 0) {
        throw new ArgumentError(`missing ${missing.join(', ')}\n${USAGE}`);
    }
    return { address, workerId, requestId, grpcMaxMessageLength };
}

module.exports = { parseArgs, ArgumentError, USAGE };
