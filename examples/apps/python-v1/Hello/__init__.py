import logging

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    name = req.params.get("name", "world")
    logging.info("hello called for %s", name)
    return func.HttpResponse(f"Hello, {name}!")
