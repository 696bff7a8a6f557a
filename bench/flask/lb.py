"""The load balancer tier of the Flask baseline: forwards POST /rpc round robin
to the gateways listed in $UPSTREAMS (`127.0.0.1:9000,127.0.0.1:9001`)."""

import itertools
import os

import requests
from flask import Flask, Response, request

app = Flask(__name__)
session = requests.Session()
upstreams = itertools.cycle(f"http://{a}/rpc" for a in os.environ["UPSTREAMS"].split(","))


@app.post("/rpc")
def rpc():
    upstream = session.post(next(upstreams), data=request.get_data(),
                            headers={"Content-Type": "application/json"}, timeout=5)
    return Response(upstream.content, upstream.status_code, content_type="application/json")
