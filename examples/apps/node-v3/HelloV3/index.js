// GET /api/v3/hello?name=Ada -> "Hello, Ada!" (async; sets context.res; logs).
module.exports = async function (context, req) {
    context.log('JavaScript HTTP trigger function processed a request.');
    const name = req.query.name || (req.body && req.body.name) || 'world';
    context.res = {
        body: `Hello, ${name}!`,
    };
};
