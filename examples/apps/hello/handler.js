// A custom handler for the sample app, written for the Azure Functions
// custom handler protocol: the host starts `node handler.js` with the port in
// FUNCTIONS_CUSTOMHANDLER_PORT and POSTs each invocation to /{FunctionName}
// as {Data, Metadata}; the handler answers {Outputs, Logs, ReturnValue}.
// No dependencies: only Node's http module.
'use strict';
const http = require('http');

const functions = {
  // GET /api/hello/{name?}?name=... (anonymous)
  Hello(data) {
    const req = data.req || {};
    const name = (req.Params && req.Params.name) || (req.Query && req.Query.name) || 'world';
    return {
      Outputs: { res: { statusCode: 200, headers: { 'Content-Type': 'text/plain' }, body: `Hello, ${name}!` } },
      Logs: [`said hello to ${name}`],
    };
  },
  // POST /api/add/{a:int}/{b:int} (function key): the answer is $return
  Add(data) {
    const params = (data.req && data.req.Params) || {};
    const sum = Number(params.a) + Number(params.b);
    return {
      ReturnValue: { statusCode: 200, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sum }) },
      Logs: [`${params.a} + ${params.b} = ${sum}`],
    };
  },
  // Every five minutes.
  Tick(data, metadata) {
    return { Logs: [`tick at ${metadata && metadata.sys ? metadata.sys.UtcNow : new Date().toISOString()}`] };
  },
};

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    const name = decodeURIComponent(req.url.slice(1).split('?')[0]);
    const fn = functions[name];
    if (req.method !== 'POST' || !fn) {
      res.writeHead(req.url === '/' ? 200 : 404, { 'Content-Type': 'text/plain' });
      res.end(req.url === '/' ? 'ready' : `no function ${name}`);
      return;
    }
    let payload;
    try {
      payload = JSON.parse(body || '{}');
    } catch (e) {
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end(`bad JSON: ${e.message}`);
      return;
    }
    const result = fn(payload.Data || {}, payload.Metadata || {});
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(result));
  });
});

const port = Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT || 7072);
server.listen(port, '127.0.0.1', () => console.log(`handler listening on 127.0.0.1:${port}`));
