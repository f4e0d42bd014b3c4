// POST /api/v3/echo/json: the JSON body back, through the $return binding.
module.exports = async function (context, req) {
    return {
        headers: { 'content-type': 'application/json' },
        body: { received: req.body },
    };
};
