#!/usr/bin/env python3
"""Writes the Grafana dashboards of deploy/grafana/dashboards/ from the panel
lists below, so that ids, grid positions and data sources stay consistent.

    python3 deploy/grafana/dashboards.py          # rewrite the JSON files
    python3 deploy/grafana/dashboards.py --check  # fail if they are stale

Edit the lists here, not the JSON. Queries lean on the recording rules of
deploy/prometheus/recording.yml; `job` is the component (lb, gateway, calc,
stats, static). The upstream metrics' own `instance` label (the endpoint)
arrives as `endpoint`, since Prometheus keeps `instance` for the
scraped process.
"""

import json
import pathlib
import sys

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
WIDTH = 24


def q(expr, legend):
    """One query of a panel."""
    return {"expr": expr, "legendFormat": legend}


def panel(title, unit, queries, description="", width=12, kind="timeseries"):
    """A panel; ids, refIds and positions are filled in by `layout`."""
    return {
        "title": title,
        "unit": unit,
        "queries": queries,
        "description": description,
        "width": width,
        "kind": kind,
    }


def row(title):
    return {"row": title}


def render_panel(spec, pid, x, y, height):
    targets = []
    for i, query in enumerate(spec["queries"]):
        targets.append(
            {
                "datasource": DATASOURCE,
                "refId": chr(ord("A") + i),
                "expr": query["expr"],
                "legendFormat": query["legendFormat"],
                "range": True,
            }
        )
    defaults = {"unit": spec["unit"]}
    if spec["kind"] == "timeseries":
        defaults["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    if spec["kind"] == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    if spec["kind"] == "table":
        options = {"showHeader": True}
        for target in targets:
            target["format"] = "table"
            target["instant"] = True
            target["range"] = False
    return {
        "id": pid,
        "type": spec["kind"],
        "title": spec["title"],
        "description": spec["description"],
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": spec["width"], "h": height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def layout(items, height=8):
    """Places panels left to right, wrapping at the grid width."""
    panels, x, y, pid = [], 0, 0, 1
    for item in items:
        if "row" in item:
            if x:
                x, y = 0, y + height
            panels.append({"id": pid, "type": "row", "title": item["row"], "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": WIDTH, "h": 1}, "panels": []})
            pid, y = pid + 1, y + 1
            continue
        if x + item["width"] > WIDTH:
            x, y = 0, y + height
        panels.append(render_panel(item, pid, x, y, height))
        pid, x = pid + 1, x + item["width"]
    return panels


def variable(name, label, query):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard(uid, title, description, items, variables=()):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["switchboard"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["switchboard"], "asDropdown": True,
                   "title": "switchboard"}],
        "templating": {"list": list(variables)},
        "panels": layout(items),
    }


def quantiles(prefix, legend):
    return [q(f"{prefix}:p{n}_1m", f"p{n} {legend}") for n in (50, 95, 99)]


OVERVIEW = dashboard(
    "switchboard-overview",
    "switchboard / Overview",
    "Calls, errors, latency and in-flight requests of the services, gateways and "
    "load balancer.",
    [
        row("Services (calc, stats)"),
        panel("Requests per second by method", "reqps",
              [q("job_method:switchboard_rpc_requests:rate1m", "{{job}} {{method}}")],
              "Calls handled by the services, all outcomes."),
        panel("Error ratio by method", "percentunit",
              [q("job_method:switchboard_rpc_error_ratio:rate1m", "{{job}} {{method}}")],
              "Share of calls answered with an error, client errors included."),
        panel("Latency p50 / p95 / p99 by method", "s",
              quantiles("job_method:switchboard_rpc_request_duration_seconds",
                        "{{job}} {{method}}"),
              "Time to handle one call inside the service.", width=12),
        panel("Errors per second by code", "reqps",
              [q("job_code:switchboard_rpc_errors:rate1m", "{{job}} {{code}}")],
              "Error answers by stable code; `overloaded` is shedding.", width=6),
        panel("In-flight requests", "short",
              [q("sum by (job, instance) (switchboard_rpc_in_flight_requests)",
                 "{{job}} {{instance}}")],
              "HTTP requests being handled by each service instance.", width=6),
        row("Gateways"),
        panel("Gateway requests per second by method", "reqps",
              [q("service_method:switchboard_gateway_requests:rate1m",
                 "{{service}} {{method}}")],
              "Calls routed by all gateways."),
        panel("Gateway failure ratio by method", "percentunit",
              [q("service_method:switchboard_gateway_failure_ratio:rate1m",
                 "{{service}} {{method}}")],
              "Share of calls that ended in server_error, unavailable, timeout or failed."),
        panel("Gateway latency p50 / p95 / p99 by method", "s",
              quantiles("service_method:switchboard_gateway_request_duration_seconds",
                        "{{service}} {{method}}"),
              "From reading a call to the instance's response headers, retries included."),
        panel("Gateway in-flight requests", "short",
              [q("sum by (instance) (switchboard_gateway_in_flight_requests)",
                 "{{instance}}")],
              "Requests on /rpc being handled by each gateway."),
        row("Load balancer"),
        panel("LB requests per second by route and status", "reqps",
              [q("route_class:switchboard_lb_requests:rate1m", "{{route}} {{class}}")],
              "Requests answered by the load balancers.", width=8),
        panel("LB latency p99 by route", "s",
              [q("route:switchboard_lb_request_duration_seconds:p99_1m", "p99 {{route}}")],
              "From request headers to the end of the response body.", width=8),
        panel("LB in flight and shed", "short",
              [q("sum by (instance) (switchboard_lb_in_flight)", "in flight {{instance}}"),
               q("sum by (instance) (rate(switchboard_lb_shed_total[$__rate_interval]))",
                 "shed/s {{instance}}")],
              "Requests being handled, and requests shed with 503 overloaded.", width=8),
    ],
)

POOLS = dashboard(
    "switchboard-pools",
    "switchboard / Pools",
    "Health of the upstream pools of the gateways (one per service) and of the load "
    "balancer: healthy instances, ejections, retries, outcomes.",
    [
        row("Instances"),
        panel("Processes up by component", "short",
              [q('sum by (job) (up{job=~"lb|gateway|calc|stats|static"})', "{{job}}")],
              "Targets Prometheus scrapes successfully.", width=8),
        panel("Healthy endpoints per pool", "short",
              [q("min by (job, pool) (switchboard_upstream_healthy_endpoints)",
                 "{{job}} {{pool}}")],
              "Endpoints taking new requests, as the worst-off gateway or LB sees them.",
              width=8),
        panel("Endpoint health", "short",
              [q("min by (pool, endpoint) (switchboard_upstream_endpoint_healthy)",
                 "{{pool}} {{endpoint}}")],
              "1 when every caller sends to the endpoint, 0 when one has stopped.", width=8),
        row("Ejections and retries"),
        panel("Ejections by endpoint", "short",
              [q("sum by (job, pool, endpoint) "
                 "(increase(switchboard_upstream_ejections_total[$__rate_interval]))",
                 "{{job}} {{pool}} {{endpoint}}")],
              "Endpoints ejected by passive health checks.", width=8),
        panel("Retries per second by reason", "reqps",
              [q("job_pool_reason:switchboard_upstream_retries:rate1m",
                 "{{job}} {{pool}} {{reason}}")],
              "Tries repeated on another endpoint.", width=8),
        panel("Retry budget exhausted per second", "reqps",
              [q("sum by (job, pool) "
                 "(rate(switchboard_upstream_retry_budget_exhausted_total[$__rate_interval]))",
                 "{{job}} {{pool}}")],
              "Retries refused because the budget was empty.", width=8),
        row("Traffic to endpoints"),
        panel("Tries per second by outcome", "reqps",
              [q("job_pool_outcome:switchboard_upstream_requests:rate1m",
                 "{{job}} {{pool}} {{outcome}}")],
              "success, server_error, timeout, connect_error, closed, error.", width=8),
        panel("Upstream latency p99 by pool", "s",
              [q("job_pool:switchboard_upstream_request_duration_seconds:p99_1m",
                 "{{job}} {{pool}}")],
              "From sending a try to its response headers.", width=8),
        panel("In-flight tries by endpoint", "short",
              [q("sum by (pool, endpoint) (switchboard_upstream_in_flight)",
                 "{{pool}} {{endpoint}}")],
              "Tries waiting for response headers.", width=8),
    ],
)

SEL = 'job=~"$job",instance=~"$instance"'

INSTANCES = dashboard(
    "switchboard-instances",
    "switchboard / Instances",
    "CPU, memory, file descriptors and connections of each process, from the "
    "standard process_* metrics.",
    [
        row("Resources"),
        panel("CPU (cores)", "short",
              [q(f"job_instance:process_cpu_seconds:rate1m{{{SEL}}}", "{{job}} {{instance}}")],
              "CPU seconds used per second, user and system.", width=8),
        panel("Resident memory", "bytes",
              [q(f"process_resident_memory_bytes{{{SEL}}}", "{{job}} {{instance}}")],
              width=8),
        panel("Virtual memory", "bytes",
              [q(f"process_virtual_memory_bytes{{{SEL}}}", "{{job}} {{instance}}")],
              width=8),
        row("Connections and threads"),
        panel("Open file descriptors", "short",
              [q(f"process_open_fds{{{SEL}}}", "{{job}} {{instance}}")],
              "Sockets and files; each client or upstream connection holds one.", width=8),
        panel("File descriptors used of the limit", "percentunit",
              [q(f"job_instance:process_open_fds:ratio{{{SEL}}}", "{{job}} {{instance}}")],
              width=8),
        panel("Threads", "short",
              [q(f"process_threads{{{SEL}}}", "{{job}} {{instance}}")], width=8),
        panel("LB client connections", "short",
              [q(f"switchboard_lb_open_connections{{{SEL}}}", "{{instance}}")],
              "Client connections open on each load balancer.", width=8),
        panel("Uptime", "s",
              [q(f"time() - process_start_time_seconds{{{SEL}}}", "{{job}} {{instance}}")],
              width=8, kind="stat"),
        panel("Log lines dropped per second", "short",
              [q(f"rate(switchboard_log_dropped_lines_total{{{SEL}}}[$__rate_interval])",
                 "{{job}} {{instance}}")],
              "JSON log lines lost because the writer fell behind.", width=8),
        panel("Builds", "short",
              [q(f"switchboard_build_info{{{SEL}}}", "")],
              "Version and component of every process.", width=24, kind="table"),
    ],
    variables=[
        variable("job", "component", "label_values(switchboard_build_info, job)"),
        variable("instance", "instance",
                 'label_values(switchboard_build_info{job=~"$job"}, instance)'),
    ],
)

DASHBOARDS = {"overview": OVERVIEW, "pools": POOLS, "instances": INSTANCES}


def main(argv):
    check = "--check" in argv
    stale = []
    for name, board in DASHBOARDS.items():
        path = OUT / f"{name}.json"
        text = json.dumps(board, indent=2) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run python3 deploy/grafana/dashboards.py):", *stale)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
