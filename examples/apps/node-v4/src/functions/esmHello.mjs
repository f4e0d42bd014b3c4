import { app } from '@azure/functions';

// GET /api/esm/hello?name=Ada -> "Hello from an ES module, Ada!"
app.http('esmHello', {
    methods: ['GET'],
    authLevel: 'anonymous',
    route: 'esm/hello',
    handler: async (request) => {
        const name = request.query.get('name') || 'world';
        return { body: `Hello from an ES module, ${name}!` };
    },
});
