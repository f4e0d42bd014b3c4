const { app } = require('@azure/functions');

// GET /api/fail -> 500: the function throws.
app.http('fail', {
    methods: ['GET'],
    authLevel: 'anonymous',
    handler: async (request, context) => {
        context.log('about to throw');
        throw new Error('fail: this function always throws');
    },
});

// GET /api/sleep?seconds=N: answers after N seconds (for timeout tests).
app.http('sleep', {
    methods: ['GET'],
    authLevel: 'anonymous',
    handler: async (request) => {
        const seconds = Number(request.query.get('seconds') || '1');
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
        return { body: `slept ${seconds}s` };
    },
});
