// GET /api/v3/sleep?seconds=N: answers after N seconds (for timeout tests).
module.exports = async function (context, req) {
    const seconds = Number(req.query.seconds || '1');
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    context.res = { body: `slept ${seconds}s` };
};
