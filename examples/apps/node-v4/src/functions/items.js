const { app } = require('@azure/functions');

// GET /api/items/42 -> {"id":42}; a synchronous handler with a route parameter.
app.http('getItem', {
    methods: ['GET'],
    authLevel: 'anonymous',
    route: 'items/{id:int}',
    handler: (request) => {
        return { jsonBody: { id: Number(request.params.id) } };
    },
});

// POST /api/items -> 201 with a custom header.
app.http('createItem', {
    methods: ['POST'],
    authLevel: 'anonymous',
    route: 'items',
    handler: async (request, context) => {
        const item = await request.json();
        context.log(`creating item ${JSON.stringify(item)}`);
        return {
            status: 201,
            headers: { 'x-fnhost-test': 'created', location: '/api/items/1' },
            jsonBody: { id: 1, ...item },
        };
    },
});
