'use strict';
// The FunctionRpc client: one bidirectional gRPC stream,
// /AzureFunctionsRpcMessages.FunctionRpc/EventStream, over Node's own
// HTTP/2 (node:http2), with the messages encoded by ./protobuf.js.
//
// gRPC framing: each message is a 5-byte prefix (a compression flag, 0 here,
// and the length as a big-endian uint32) and the protobuf bytes. The call's
// status comes in the trailers (grpc-status, grpc-message).

const http2 = require('http2');
const net = require('net');
const { EventEmitter } = require('events');
const { types } = require('./messages');
const { decode, encode } = require('./protobuf');

const EVENT_STREAM_PATH = '/AzureFunctionsRpcMessages.FunctionRpc/EventStream';
const PREFIX_LENGTH = 5;
const RETRY_DELAY_MS = 100;
/** The flow-control window the worker offers the host (per stream and per connection). */
const WINDOW = 16 * 1024 * 1024;

const StreamingMessage = types.StreamingMessage;

/** One gRPC frame (prefix + message) for a StreamingMessage object. */
function encodeFrame(message) {
    const frame = encode(StreamingMessage, message, PREFIX_LENGTH);
    frame[0] = 0;
    frame.writeUInt32BE(frame.length - PREFIX_LENGTH, 1);
    return frame;
}

/**
 * Splits a byte stream into gRPC messages. `push(chunk)` returns the
 * message bodies (Buffers) completed by the chunk. Throws on a compressed
 * message or one longer than `maxLength`.
 */
class FrameReader {
    constructor(maxLength) {
        this.maxLength = maxLength > 0 ? maxLength : Infinity;
        this.pending = [];
        this.pendingLength = 0;
    }

    push(chunk) {
        let buf = chunk;
        if (this.pendingLength > 0) {
            this.pending.push(chunk);
            buf = Buffer.concat(this.pending, this.pendingLength + chunk.length);
            this.pending = [];
            this.pendingLength = 0;
        }
        const out = [];
        let pos = 0;
        while (buf.length - pos >= PREFIX_LENGTH) {
            const flag = buf[pos];
            const length = buf.readUInt32BE(pos + 1);
            if (flag !== 0) {
                throw new Error('the host sent a compressed message; the worker accepts identity encoding only');
            }
            if (length > this.maxLength) {
                throw new Error(`a message of ${length} bytes is over the limit of ${this.maxLength} bytes`);
            }
            if (buf.length - pos - PREFIX_LENGTH < length) break;
            out.push(buf.subarray(pos + PREFIX_LENGTH, pos + PREFIX_LENGTH + length));
            pos += PREFIX_LENGTH + length;
        }
        if (pos < buf.length) {
            this.pending.push(buf.subarray(pos));
            this.pendingLength = buf.length - pos;
        }
        return out;
    }
}

/**
 * The event stream: emits 'data' (a decoded StreamingMessage), 'end' (the
 * host ended the call) and 'error'; `write(message)` sends one, `end()`
 * half-closes.
 */
class EventStream extends EventEmitter {
    constructor(stream, maxLength) {
        super();
        this.stream = stream;
        this.maxSendLength = maxLength > 0 ? maxLength : Infinity;
        this.failed = false;
        const frames = new FrameReader(maxLength);
        stream.on('response', (headers) => {
            // A trailers-only answer carries the status in the headers.
            if (headers['grpc-status'] !== undefined) this.status(headers);
        });
        stream.on('data', (chunk) => {
            if (this.failed) return;
            let bodies;
            try {
                bodies = frames.push(chunk);
            } catch (err) {
                return this.fail(err);
            }
            for (const body of bodies) {
                let message;
                try {
                    message = decode(StreamingMessage, body);
                } catch (err) {
                    return this.fail(new Error(`cannot decode a message from the host: ${err.message}`));
                }
                this.emit('data', message);
            }
        });
        stream.on('trailers', (trailers) => this.status(trailers));
        this.ended = false;
        stream.on('end', () => {
            this.ended = true;
            if (!this.failed) this.emit('end');
        });
        stream.on('error', (err) => this.fail(err));
        stream.on('close', () => {
            if (this.failed || this.ended) return;
            const code = stream.rstCode;
            this.fail(
                new Error(
                    code && code !== http2.constants.NGHTTP2_NO_ERROR
                        ? `the host reset the event stream (HTTP/2 error code ${code})`
                        : 'the connection to the host closed'
                )
            );
        });
    }

    status(headers) {
        const code = Number(headers['grpc-status']);
        if (code !== 0) {
            let text = headers['grpc-message'] || '';
            try {
                text = decodeURIComponent(text);
            } catch {
                // keep it as sent
            }
            this.fail(new Error(`the host ended the event stream with gRPC status ${code}${text ? `: ${text}` : ''}`));
        }
    }

    fail(err) {
        if (this.failed) return;
        this.failed = true;
        this.emit('error', err);
    }

    /**
     * Sends one message. With `batch`, more are expected at once (other
     * invocations are in flight): the messages written in this tick leave
     * together.
     */
    write(message, batch = false) {
        const frame = encodeFrame(message);
        if (frame.length - PREFIX_LENGTH > this.maxSendLength) {
            throw new Error(
                `a message of ${frame.length - PREFIX_LENGTH} bytes is over the limit of ${this.maxSendLength} bytes`
            );
        }
        if (batch && !this.corked) {
            this.corked = true;
            this.stream.cork();
            process.nextTick(() => {
                this.corked = false;
                this.stream.uncork();
            });
        }
        return this.stream.write(frame);
    }

    end() {
        this.stream.end();
    }
}

/** Splits "host:port" or "[v6]:port". */
function splitAddress(address) {
    const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
    if (!m) throw new Error(`not a host:port address: "${address}"`);
    return { host: m[1], port: Number(m[2]) };
}

/** One attempt to open the HTTP/2 session; resolves once it is connected. */
function openSession(host, port) {
    return new Promise((resolve, reject) => {
        const authority = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
        const session = http2.connect(authority, {
            createConnection: () => net.connect({ host, port, noDelay: true }),
            settings: { initialWindowSize: WINDOW, enablePush: false },
            maxSessionMemory: 256,
        });
        const onError = (err) => {
            session.destroy();
            reject(err);
        };
        session.once('error', onError);
        session.once('connect', () => {
            session.off('error', onError);
            session.setLocalWindowSize(WINDOW);
            resolve(session);
        });
    });
}

/**
 * Connects to the host at `address` ("host:port"), trying again until
 * `timeoutMs` has passed. Resolves to {client, stream}: `client.close()`
 * closes the connection, `stream` is the EventStream.
 */
async function connect(address, maxMessageLength, timeoutMs) {
    const { host, port } = splitAddress(address);
    const deadline = Date.now() + timeoutMs;
    let session;
    for (;;) {
        try {
            session = await openSession(host, port);
            break;
        } catch (err) {
            if (Date.now() + RETRY_DELAY_MS >= deadline) throw err;
            await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
        }
    }
    const request = session.request(
        {
            ':method': 'POST',
            ':path': EVENT_STREAM_PATH,
            'content-type': 'application/grpc',
            te: 'trailers',
        },
        { endStream: false }
    );
    const stream = new EventStream(request, maxMessageLength);
    // A failure of the connection itself ends the stream too.
    session.on('error', (err) => stream.fail(err));
    session.on('goaway', (code) => {
        if (code !== http2.constants.NGHTTP2_NO_ERROR) {
            stream.fail(new Error(`the host closed the connection (HTTP/2 GOAWAY, error code ${code})`));
        }
    });
    const client = {
        close() {
            session.close();
        },
    };
    return { client, stream };
}

module.exports = { connect, encodeFrame, FrameReader, EVENT_STREAM_PATH };
