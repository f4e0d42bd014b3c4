import asyncio

import azure.functions as func


async def main(req: func.HttpRequest) -> func.HttpResponse:
    seconds = float(req.params.get("seconds", "1"))
    await asyncio.sleep(seconds)
    return func.HttpResponse(f"slept {seconds:g}s")
