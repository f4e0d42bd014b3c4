import asyncio
import json

import azure.functions as func


async def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = req.get_json()
    except ValueError:
        return func.HttpResponse("expected a JSON body", status_code=400)
    await asyncio.sleep(0)
    return func.HttpResponse(json.dumps(body), mimetype="application/json")
