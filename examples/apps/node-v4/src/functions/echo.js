const { app } = require('@azure/functions');

// POST /api/echo/json: the JSON body back, as application/json.
app.http('echoJson', {
    methods: ['POST'],
    authLevel: 'anonymous',
    route: 'echo/json',
    handler: async (request) => {
        const body = await request.json();
        return { jsonBody: { received: body } };
    },
});

// POST /api/echo/binary: the body back byte for byte.
app.http('echoBinary', {
    methods: ['POST'],
    authLevel: 'anonymous',
    route: 'echo/binary',
    handler: async (request) => {
        const bytes = Buffer.from(await request.arrayBuffer());
        return {
            body: bytes,
            headers: { 'content-type': 'application/octet-stream' },
        };
    },
});
