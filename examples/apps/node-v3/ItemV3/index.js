// GET /api/v3/items/42 -> {"id":42}: a synchronous function that calls context.done.
module.exports = function (context, req) {
    context.done(null, {
        res: {
            headers: { 'content-type': 'application/json' },
            body: { id: Number(context.bindingData.id) },
        },
    });
};
