"""The gateway tier of the Flask baseline: routes a call by its method prefix
to the pool of that service, round robin, with `requests`.

Pools come from $POOLS, e.g. `calc=127.0.0.1:9101,127.0.0.1:9102`.
"""

import itertools
import os

import requests
from flask import Flask, Response, request

app = Flask(__name__)
session = requests.Session()
pools = {}
for spec in os.environ["POOLS"].split(";"):
    name, addrs = spec.split("=")
    pools[name] = itertools.cycle(f"http://{a}/rpc" for a in addrs.split(","))


@app.post("/rpc")
def rpc():
    call = request.get_json()
    service = call.get("method", "").split(".")[0]
    pool = pools.get(service)
    if pool is None:
        return {"requestId": call.get("requestId"), "error": {"code": "method_not_found"}}, 404
    upstream = session.post(next(pool), data=request.get_data(),
                            headers={"Content-Type": "application/json"}, timeout=5)
    return Response(upstream.content, upstream.status_code, content_type="application/json")


@app.get("/health")
def health():
    return "ok\n"
