// An HTTP function for the process executor: answers with the route value,
// a query parameter and the body it was given.
let text = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { text += chunk; });
process.stdin.on('end', () => {
  const { Data, Metadata } = JSON.parse(text);
  const req = Data.req;
  console.error('handling ' + req.Method + ' ' + req.Url);
  process.stdout.write(JSON.stringify({
    Outputs: {
      res: {
        statusCode: '201',
        headers: { 'X-Handler': 'node' },
        body: `id=${req.Params.id} q=${req.Query.q} body=${req.Body} method=${Metadata.sys.MethodName}`,
      },
    },
    Logs: ['node says hi'],
  }));
});
