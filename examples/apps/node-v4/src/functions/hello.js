const { app } = require('@azure/functions');

// GET /api/hello?name=Ada -> "Hello, Ada!" (POST: the name may be the body).
app.http('hello', {
    methods: ['GET', 'POST'],
    authLevel: 'anonymous',
    handler: async (request, context) => {
        context.log(`Http function processed request for url "${request.url}"`);
        const name = request.query.get('name') || (await request.text()) || 'world';
        return { body: `Hello, ${name}!` };
    },
});
