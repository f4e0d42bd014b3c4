"""A one-shot function for the process executor tests.

Reads {Data, Metadata} on stdin and acts on Data.input.mode:
echo (default), fail, garbage, hang, big, retry.
"""
import json
import os
import subprocess
import sys
import time

payload = json.load(sys.stdin)
data = payload["Data"]
meta = payload["Metadata"]
inp = data.get("input")
mode = inp.get("mode", "echo") if isinstance(inp, dict) else "echo"

if mode == "fail":
    print("about to fail", file=sys.stderr)
    print("oops: the widget is broken", file=sys.stderr)
    sys.exit(3)
elif mode == "garbage":
    print("this is not JSON at all")
elif mode == "hang":
    # Leave a grandchild behind in the same process group, say who we are,
    # and never finish.
    child = subprocess.Popen(["sleep", "300"])
    with open(inp["pidfile"], "w") as f:
        f.write("%d %d" % (os.getpid(), child.pid))
    time.sleep(300)
elif mode == "big":
    sys.stdout.write("x" * inp["bytes"])
elif mode == "retry":
    retry = meta["RetryContext"]
    if retry["RetryCount"] < retry["MaxRetryCount"]:
        print("asking for a retry", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"ReturnValue": retry}))
else:
    print("a line on stderr", file=sys.stderr)
    print(json.dumps({
        "outputs": {"out": {"echo": data}},
        "logs": ["log from python"],
        "returnValue": {
            "data": data,
            "metadata": meta,
            "cwd": os.getcwd(),
            "setting": os.environ.get("MY_SETTING"),
        },
    }))
