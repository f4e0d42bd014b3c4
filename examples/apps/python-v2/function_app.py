"""A small Azure Functions app in the Python v2 programming model.

It runs unchanged on Azure (Core Tools or a Function App) and on fnhost.
"""

import asyncio
import json
import logging
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# GET /api/hello?name=Ada -> "Hello, Ada!" (sync; logs with logging.info)
@app.route(route="hello", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    name = req.params.get("name", "world")
    logging.info("hello called for %s", name)
    return func.HttpResponse(f"Hello, {name}!")


# POST /api/echo with a JSON body -> the same JSON back (async)
@app.route(route="echo", methods=["POST"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = req.get_json()
    except ValueError:
        return func.HttpResponse("expected a JSON body", status_code=400)
    await asyncio.sleep(0)
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


# GET /api/items/42 -> {"id": 42} (route parameter with a constraint)
@app.route(route="items/{id:int}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    item_id = int(req.route_params["id"])
    return func.HttpResponse(json.dumps({"id": item_id}), mimetype="application/json")


# POST /api/items -> 201 with a Location and a custom header
@app.route(route="items", methods=["POST"])
def create_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        "created",
        status_code=201,
        headers={"x-fnhost-test": "created", "Location": "/api/items/7"},
    )


# POST /api/binary -> the request body, byte for byte
@app.route(route="binary", methods=["POST"])
def binary(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="application/octet-stream")


# GET /api/out -> the response goes through an http output binding (func.Out)
@app.route(route="out", methods=["GET"], binding_arg_name="res")
def out_binding(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
    res.set(func.HttpResponse("set through func.Out", status_code=202))


# GET /api/fail -> the function raises; the host answers 500
@app.route(route="fail", methods=["GET"])
def fail(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("this function always fails")


# GET /api/sleep?seconds=N -> sleeps N seconds (for timeout tests)
@app.route(route="sleep", methods=["GET"])
def sleep(req: func.HttpRequest) -> func.HttpResponse:
    seconds = float(req.params.get("seconds", "1"))
    time.sleep(seconds)
    return func.HttpResponse(f"slept {seconds:g}s")


# Every 5 seconds.
@app.timer_trigger(schedule="*/5 * * * * *", arg_name="timer", run_on_startup=False,
                   use_monitor=False)
def tick(timer: func.TimerRequest) -> None:
    logging.info("timer fired past_due=%s", timer.past_due)
