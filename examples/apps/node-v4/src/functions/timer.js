const { app } = require('@azure/functions');

// Every 5 seconds.
app.timer('tick', {
    schedule: '*/5 * * * * *',
    handler: (myTimer, context) => {
        context.log(`timer fired past_due=${myTimer.isPastDue}`);
    },
});
