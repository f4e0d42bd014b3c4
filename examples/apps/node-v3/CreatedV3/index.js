// POST /api/v3/items -> 201 with a custom header.
module.exports = async function (context, req) {
    context.res = {
        status: 201,
        headers: { 'x-fnhost-test': 'created', 'content-type': 'application/json' },
        body: { id: 1, ...(req.body || {}) },
    };
};
