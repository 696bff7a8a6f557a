"""The calc tier of the Flask baseline: the four operations over `data.args`."""

import functools
import operator

from flask import Flask, jsonify, request

app = Flask(__name__)

OPS = {
    "calc.summ": lambda args: sum(args),
    "calc.sub": lambda args: functools.reduce(operator.sub, args),
    "calc.mult": lambda args: functools.reduce(operator.mul, args, 1),
    "calc.div": lambda args: functools.reduce(operator.truediv, args),
}


@app.post("/rpc")
def rpc():
    call = request.get_json()
    op = OPS.get(call.get("method"))
    request_id = call.get("requestId")
    if op is None:
        return jsonify(requestId=request_id, error={"code": "method_not_found"}), 404
    try:
        return jsonify(requestId=request_id, result=op(call["data"]["args"]))
    except (KeyError, TypeError, ZeroDivisionError) as e:
        return jsonify(requestId=request_id, error={"code": "invalid_params", "message": str(e)}), 400


@app.get("/health")
def health():
    return "ok\n"
