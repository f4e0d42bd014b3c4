import json

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    item_id = int(req.route_params["id"])
    body = json.dumps({"id": item_id})
    if req.method == "PUT":
        # A custom status code and a custom header.
        return func.HttpResponse(body, status_code=201, mimetype="application/json",
                                 headers={"x-fnhost-test": "created"})
    return func.HttpResponse(body, mimetype="application/json")
