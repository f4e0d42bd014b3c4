// A custom handler for the executor tests (Node's http module only).
//
// Payload mode: POST /{Function} with {Data, Metadata}; the manual function
// acts on Data.input.mode: echo (default), crash, status500, garbage, hang,
// retry. Forwarding mode: anything under /api/ is answered as is.
// NEVER_READY_MARKER: when that file does not exist, create it and never
// listen. SIGTERM_MARKER: on SIGTERM, write that file and exit.
const http = require('http');
const fs = require('fs');

const port = process.env.FUNCTIONS_CUSTOMHANDLER_PORT;
const marker = process.env.NEVER_READY_MARKER;
if (marker && !fs.existsSync(marker)) {
  fs.writeFileSync(marker, 'started once');
  console.error('not listening this time');
  setInterval(() => {}, 1000);
  return;
}
if (process.env.SIGTERM_MARKER) {
  process.on('SIGTERM', () => {
    fs.writeFileSync(process.env.SIGTERM_MARKER, 'bye');
    process.exit(0);
  });
}

function json(res, status, value) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value));
}

function forwarded(req, res, body) {
  if (req.url.startsWith('/api/redirect')) {
    res.writeHead(302, { Location: '/api/elsewhere' });
    return res.end();
  }
  res.writeHead(202, { 'Content-Type': 'application/json', 'X-Forwarded-By': 'handler' });
  res.end(JSON.stringify({
    method: req.method,
    url: req.url,
    test: req.headers['x-test'],
    body,
    invocationId: req.headers['x-azure-functions-invocationid'],
  }));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    if (req.method === 'GET' && req.url === '/') return res.end('ready');
    if (req.url.startsWith('/api/')) return forwarded(req, res, body);
    const fn = req.url.slice(1);
    const { Data, Metadata } = JSON.parse(body);
    const headers = {
      invocationId: req.headers['x-azure-functions-invocationid'],
      hostVersion: req.headers['x-azure-functions-hostversion'],
      userAgent: req.headers['user-agent'],
    };
    if (fn === 'Items') {
      const r = Data.req;
      return json(res, 200, {
        Outputs: {
          res: {
            statusCode: '201',
            headers: { 'X-Fn': fn },
            body: `id=${r.Params.id} q=${r.Query.q} body=${r.Body}`,
          },
        },
        Logs: ['items called'],
        ReturnValue: { headers, metadata: Metadata },
      });
    }
    const input = Data.input || {};
    switch (input.mode) {
      case 'crash':
        console.error('crashing on purpose');
        process.exit(7);
        return;
      case 'status500':
        return json(res, 500, { error: 'it broke', Logs: ['about to fail'] });
      case 'garbage':
        res.writeHead(200, { 'Content-Type': 'text/html' });
        return res.end('<html>not json</html>');
      case 'hang':
        return;
      case 'retry': {
        const rc = Metadata.RetryContext;
        return json(res, rc.RetryCount < rc.MaxRetryCount ? 500 : 200, { ReturnValue: rc });
      }
      default:
        console.log('echo ' + fn);
        console.error('stderr says hello');
        return json(res, 200, {
          outputs: { out: input },
          logs: ['echo log'],
          returnvalue: {
            data: Data,
            metadata: Metadata,
            headers,
            argv: process.argv.slice(2),
            cwd: process.cwd(),
            env: {
              port: process.env.FUNCTIONS_CUSTOMHANDLER_PORT,
              httpPort: process.env.FUNCTIONS_HTTPWORKER_PORT,
              workerId: process.env.FUNCTIONS_CUSTOMHANDLER_WORKER_ID,
              httpWorkerId: process.env.FUNCTIONS_HTTPWORKER_ID,
              root: process.env.FUNCTIONS_APP_ROOT_PATH,
              setting: process.env.MY_SETTING,
            },
            pid: process.pid,
          },
        });
    }
  });
});
server.listen(port, '127.0.0.1', () => console.log('listening on ' + port));
