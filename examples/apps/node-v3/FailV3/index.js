// GET /api/v3/fail -> 500: the function throws.
module.exports = async function (context, req) {
    throw new Error('FailV3: this function always throws');
};
