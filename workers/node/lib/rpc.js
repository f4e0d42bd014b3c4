'use strict';
// The FunctionRpc client: loads fnhost's function_rpc.proto with
// @grpc/proto-loader and opens the one bidirectional EventStream.
//
// Message objects are plain JS objects with camelCase field names, enums as
// their names in the .proto (e.g. 'Success', 'Information', 'in'), 64-bit
// integers as numbers, bytes as Buffers; absent scalars, maps and lists read
// as their defaults, absent messages as null, and unset oneof members are
// absent (a oneof's name holds the member that is set).

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_FILE = 'function_rpc.proto';

/** Where the protocol file is: $FNHOST_FUNCTION_RPC_PROTO, the worker's folder, or (in a checkout) fnhost-core/proto. */
function findProtoFile() {
    const candidates = [];
    if (process.env.FNHOST_FUNCTION_RPC_PROTO) {
        candidates.push(process.env.FNHOST_FUNCTION_RPC_PROTO);
    }
    const workerDir = path.join(__dirname, '..');
    candidates.push(path.join(workerDir, PROTO_FILE));
    candidates.push(path.join(workerDir, '..', '..', 'fnhost-core', 'proto', PROTO_FILE));
    for (const candidate of candidates) {
        if (fs.existsSync(candidate)) {
            return candidate;
        }
    }
    throw new Error(`cannot find ${PROTO_FILE}; looked at ${candidates.join(', ')}`);
}

const LOADER_OPTIONS = {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
};

function loadService(protoFile) {
    const definition = protoLoader.loadSync(protoFile, LOADER_OPTIONS);
    const service = definition['AzureFunctionsRpcMessages.FunctionRpc'];
    if (!service) {
        throw new Error(`${protoFile} has no service AzureFunctionsRpcMessages.FunctionRpc`);
    }
    return grpc.makeClientConstructor(service, 'FunctionRpc');
}

/**
 * Connects to the host. Resolves to {client, stream} once the channel is
 * ready; rejects when it is not ready within `timeoutMs`.
 */
function connect(address, maxMessageLength, timeoutMs) {
    const FunctionRpc = loadService(findProtoFile());
    const options = {
        // Azure passes int.MaxValue; grpc-js takes -1 for "no limit".
        'grpc.max_send_message_length': maxMessageLength || -1,
        'grpc.max_receive_message_length': maxMessageLength || -1,
    };
    const client = new FunctionRpc(address, grpc.credentials.createInsecure(), options);
    return new Promise((resolve, reject) => {
        client.waitForReady(Date.now() + timeoutMs, (err) => {
            if (err) {
                client.close();
                reject(err);
            } else {
                resolve({ client, stream: client.eventStream() });
            }
        });
    });
}

module.exports = { connect, findProtoFile, LOADER_OPTIONS };
