import logging

import azure.functions as func


def main(timer: func.TimerRequest) -> None:
    logging.info("timer fired past_due=%s", timer.past_due)
