#!/usr/bin/env python3
"""Side-by-side load benchmarks of switchboard and its peers, on loopback.

Every system under test runs pinned to core 0 (`taskset -c 0`); wrk and the
fixed-answer backend run on core 1. The headline figure is CPU microseconds per
request of the system under test: utime + stime of all its processes (and their
threads and children) read from /proc/PID/stat before and after a fixed wrk
load, divided by the requests wrk completed. Each figure is the median of
--runs runs; within a run, every system of the scenario is measured in turn
while the others idle, so ours and the peers share the machine's conditions.

    bench/setup.sh                      # tools, venv, release build
    bench/bench.py lb                   # scenario 1: LB vs NGINX vs HAProxy
    bench/bench.py gateway              # scenario 2: gateway + calc vs calc alone
    bench/bench.py chain                # scenario 3: LB -> 2 gateways -> 3 calc
    bench/bench.py args|instances|conns|memory   # scenario 4: growth
    bench/bench.py flask                # scenario 5: the chain vs Python/Flask
    bench/bench.py all

Options: --runs N (3), --duration S (5), --conns C (64), --access on|off.
"""

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# $SWITCHBOARD_BIN measures another build, e.g. a copy made before a change.
BIN = Path(os.environ.get("SWITCHBOARD_BIN", ROOT / "target" / "release" / "switchboard"))
VENV = ROOT / "target" / "bench-venv"
LUA = ROOT / "bench" / "wrk" / "post.lua"
TICK = os.sysconf("SC_CLK_TCK")
LOAD_CPU = "1"
# Cores of the systems under test; --sut-cpus changes it (e.g. "0,1").
SUT_CPUS = ["0"]
NOFILE = 20000
SEED = {
    "method": "calc.summ",
    "data": {"args": [1, 5, -8, 156, -24]},
    "requestId": "5545abec-aab1-4efa-80ef-b3491cb4b6c5",
}
FIXED_ANSWER = '{"requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5","result":130}'


def raise_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


# ---------------------------------------------------------------- processes


class Bench:
    """Starts processes, remembers them, and stops them all at the end."""

    def __init__(self, access):
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
        self.procs = []
        self.access = access
        self.used = set()

    def port(self):
        """A port free right now (the kernel's pick), kept from reuse by this run."""
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in self.used:
                self.used.add(port)
                return port

    def spawn(self, argv, cpu=None, env=None, cwd=None, name="proc"):
        cpu = cpu or SUT_CPUS[0]
        log_path = self.dir / f"{name}-{len(self.procs)}.err"
        log = open(log_path, "wb")
        full_env = dict(os.environ, **(env or {}))
        full_env.pop("RUST_LOG", None)
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *map(str, argv)],
            stdout=log,
            stderr=log,
            env=full_env,
            cwd=cwd or self.dir,
            preexec_fn=raise_nofile,
            start_new_session=True,
        )
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- ours

    def config(self, name, extra=""):
        access = "true" if self.access == "on" else "false"
        path = self.dir / f"{name}.toml"
        path.write_text(
            f'[log]\nlevel = "info"\naccess = {access}\ndir = "{self.dir}/logs"\nfile = "{name}"\n'
            "[lb]\nmax_connections = 19000\n" + extra
        )
        return path

    def calc(self, n=1):
        ports = []
        for _ in range(n):
            port = self.port()
            cfg = self.config(f"calc{port}")
            self.spawn([BIN, "calc", "--config", cfg, "--listen", f"127.0.0.1:{port}"], name="calc")
            ports.append(port)
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/ready")
        return ports

    def gateway(self, calc_ports):
        port = self.port()
        addrs = ",".join(f"127.0.0.1:{p}" for p in calc_ports)
        cfg = self.config(f"gw{port}")
        self.spawn(
            [BIN, "gateway", "--config", cfg, "--listen", f"127.0.0.1:{port}", "--service", f"calc={addrs}"],
            name="gateway",
        )
        wait_post(port, "/rpc")
        return port

    def lb(self, upstream_ports, binary=BIN):
        port, admin = self.port(), self.port()
        addrs = ",".join(f"127.0.0.1:{p}" for p in upstream_ports)
        cfg = self.config(f"lb{port}", f'[lb.static]\nendpoints = ["127.0.0.1:{self.port()}"]\n')
        self.spawn(
            [binary, "lb", "--config", cfg, "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
             "--rpc", addrs],
            name="lb",
        )
        wait_post(port, "/rpc", self.procs[-1])
        return port

    # -- peers

    def backend(self, n=3):
        """NGINX answering every request with a fixed JSON body, on core 1."""
        ports = [self.port() for _ in range(n)]
        listens = "".join(f"listen 127.0.0.1:{p} reuseport;\n" for p in ports)
        conf = nginx_conf(f"""
        server {{
            {listens}
            access_log off;
            location / {{ default_type application/json; return 200 '{FIXED_ANSWER}'; }}
        }}""")
        self.nginx(conf, "backend", cpu=LOAD_CPU)
        for p in ports:
            wait_port(p)
        return ports

    def nginx(self, conf, name, cpu=None):
        prefix = self.dir / f"nginx-{name}"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        (prefix / "nginx.conf").write_text(conf)
        return self.spawn(["nginx", "-p", prefix, "-c", prefix / "nginx.conf", "-e", prefix / "logs/error.log"],
                          cpu=cpu, name=f"nginx-{name}")

    def nginx_proxy(self, backend_ports):
        port = self.port()
        servers = "".join(f"server 127.0.0.1:{p};\n" for p in backend_ports)
        conf = nginx_conf(f"""
        upstream rpc {{ {servers} keepalive 64; keepalive_requests 1000000; }}
        server {{
            listen 127.0.0.1:{port};
            access_log logs/access.log;
            location /rpc {{
                proxy_pass http://rpc;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_set_header X-Forwarded-For $remote_addr;
                proxy_set_header X-Forwarded-Proto $scheme;
                proxy_set_header X-Request-Id $request_id;
            }}
        }}""")
        self.nginx(conf, f"proxy{port}")
        wait_post(port, "/rpc")
        return port

    def haproxy(self, backend_ports):
        port = self.port()
        servers = "".join(f"  server s{i} 127.0.0.1:{p}\n" for i, p in enumerate(backend_ports))
        cfg = self.dir / f"haproxy{port}.cfg"
        cfg.write_text(f"""
global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 5s
  timeout http-keep-alive 60s
  option forwardfor
frontend entry
  bind 127.0.0.1:{port}
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Request-Id %[uuid()]
  default_backend rpc
backend rpc
  balance roundrobin
  http-reuse always
{servers}""")
        self.spawn(["haproxy", "-f", cfg], name="haproxy")
        wait_post(port, "/rpc")
        return port

    # -- the Flask baseline

    def gunicorn(self, module, env):
        port = self.port()
        self.spawn(
            [VENV / "bin" / "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", ROOT / "bench" / "flask",
             f"{module}:app"],
            env=env,
            name=f"flask-{module}",
        )
        wait_port(port)
        return port


def nginx_conf(http_body):
    return f"""
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {NOFILE};
pid nginx.pid;
events {{ worker_connections {NOFILE // 2}; }}
http {{
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path tmp;
    proxy_temp_path tmp;
    {http_body}
}}
"""


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} never answered 200")


def wait_post(port, path, proc=None, timeout=20):
    """Waits until the seed request through `port` answers 200."""
    body = json.dumps(SEED).encode()
    deadline = time.time() + timeout
    while time.time() < deadline:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body,
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = proc.log_path.read_text()[-2000:] if proc is not None else ""
    raise RuntimeError(f"POST {path} on port {port} never answered 200\n{tail}")


# ---------------------------------------------------------------- measuring


def tree(pid):
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def cpu_seconds(root_pids):
    ticks = 0
    for root in root_pids:
        for p in tree(root):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICK


def rss_kib(root_pids):
    total = 0
    for root in root_pids:
        for p in tree(root):
            try:
                status = Path(f"/proc/{p}/status").read_text()
            except OSError:
                continue
            m = re.search(r"VmRSS:\s+(\d+)", status)
            total += int(m.group(1)) if m else 0
    return total


def to_ms(text):
    value, unit = float(re.match(r"[\d.]+", text).group()), re.search(r"[a-z]+$", text).group()
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(port, body_file, conns, duration, path="/rpc"):
    threads = 1
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
         "--timeout", "10s", "-s", LUA, f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, env=dict(os.environ, BODY_FILE=str(body_file)),
        preexec_fn=raise_nofile, check=True,
    ).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": reqs,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "errors": (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0),
    }


def measure_once(system, body_file, conns, duration):
    """One wrk run against `system`; CPU per request of each of its tiers."""
    before = {tier: cpu_seconds(pids) for tier, pids in system["tiers"].items()}
    result = wrk(system["port"], body_file, conns, duration)
    after = {tier: cpu_seconds(pids) for tier, pids in system["tiers"].items()}
    n = max(result["requests"], 1)
    result["cpu_us"] = {tier: (after[tier] - before[tier]) * 1e6 / n for tier in before}
    result["cpu_us"]["total"] = sum(result["cpu_us"].values())
    return result


def compare(systems, body_file, conns, runs, duration):
    """Medians over `runs` rounds; each round measures every system in turn."""
    for system in systems:
        wrk(system["port"], body_file, conns, 1)  # warm up connections and caches
    samples = {s["name"]: [] for s in systems}
    for _ in range(runs):
        for system in systems:
            samples[system["name"]].append(measure_once(system, body_file, conns, duration))
    return {name: median_of(results) for name, results in samples.items()}


def median_of(results):
    med = {k: statistics.median(r[k] for r in results) for k in ("requests", "rps", "p50", "p99")}
    med["errors"] = sum(r["errors"] for r in results)
    med["cpu_us"] = {t: statistics.median(r["cpu_us"][t] for r in results) for t in results[0]["cpu_us"]}
    med["cpu_runs"] = [round(r["cpu_us"]["total"], 1) for r in results]
    return med


def table(title, rows, tiers=False):
    print(f"\n### {title}\n")
    head = "| system | CPU µs/req | req/s | p50 ms | p99 ms | errors | runs (µs/req) |"
    if tiers:
        head += " per tier (µs/req) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, r in rows.items():
        line = (f"| {name} | {r['cpu_us']['total']:.1f} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
                f"| {r['errors']} | {r['cpu_runs']} |")
        if tiers:
            line += " " + ", ".join(f"{t} {v:.1f}" for t, v in r["cpu_us"].items() if t != "total") + " |"
        print(line)
    sys.stdout.flush()


def body_file(bench, n_args):
    path = bench.dir / f"body{n_args}.json"
    if not path.exists():
        rng = random.Random(n_args)
        call = dict(SEED, data={"args": [rng.randint(-999, 999) for _ in range(n_args)]})
        path.write_text(json.dumps(call, separators=(",", ":")))
    return path


def seed_file(bench):
    path = bench.dir / "seed.json"
    path.write_text(json.dumps(SEED))
    return path


def system(name, port, **tiers):
    return {"name": name, "port": port, "tiers": {t: [p.pid for p in procs] for t, procs in tiers.items()}}


def procs_since(bench, start):
    return bench.procs[start:]


# ---------------------------------------------------------------- scenarios


def scenario_lb(bench, a, conns_list=None, instances=3):
    backends = bench.backend(instances)
    systems = []
    contenders = [("switchboard lb", bench.lb), ("nginx", bench.nginx_proxy), ("haproxy", bench.haproxy)]
    if a.ab:
        contenders.append((f"switchboard lb ({a.ab})", lambda ports: bench.lb(ports, Path(a.ab))))
    for name, start in contenders:
        mark = len(bench.procs)
        port = start(backends)
        systems.append(system(name, port, proxy=procs_since(bench, mark)))
    seed = seed_file(bench)
    for conns in conns_list or [a.conns]:
        rows = compare(systems, seed, conns, a.runs, a.duration)
        table(f"Scenario 1: load balancer, {instances} fixed-answer backends, {conns} connections", rows)
        best_peer = min(rows["nginx"]["cpu_us"]["total"], rows["haproxy"]["cpu_us"]["total"])
        ratio = rows["switchboard lb"]["cpu_us"]["total"] / best_peer
        print(f"\nswitchboard lb / best peer CPU per request: {ratio:.2f} (target <= 0.80)")
    return systems


def scenario_gateway(bench, a, n_args_list=(5,), instances=1):
    calc_mark = len(bench.procs)
    calcs = bench.calc(instances)
    calc_procs = procs_since(bench, calc_mark)
    gw_mark = len(bench.procs)
    gw = bench.gateway(calcs)
    gw_procs = procs_since(bench, gw_mark)
    via_gw = system("gateway -> calc", gw, gateway=gw_procs, calc=calc_procs)
    direct = system("calc direct", calcs[0], calc=calc_procs)
    for n_args in n_args_list:
        body = seed_file(bench) if n_args == 5 else body_file(bench, n_args)
        rows = compare([via_gw, direct], body, a.conns, a.runs, a.duration)
        table(f"Scenario 2: gateway in front of {instances} calc, {n_args} args, {a.conns} connections",
              rows, tiers=True)
        extra = rows["gateway -> calc"]["cpu_us"]["gateway"]
        print(f"\ngateway CPU per request: {extra:.1f} µs")


def start_chain(bench, n_gw=2, n_calc=3):
    mark = len(bench.procs)
    calcs = bench.calc(n_calc)
    calc_procs = procs_since(bench, mark)
    mark = len(bench.procs)
    gws = [bench.gateway(calcs) for _ in range(n_gw)]
    gw_procs = procs_since(bench, mark)
    mark = len(bench.procs)
    lb = bench.lb(gws)
    return system("switchboard chain", lb, lb=procs_since(bench, mark), gateway=gw_procs, calc=calc_procs)


def start_flask_chain(bench, n_gw=2, n_calc=3):
    mark = len(bench.procs)
    calcs = [bench.gunicorn("calc", {}) for _ in range(n_calc)]
    calc_procs = procs_since(bench, mark)
    pools = "calc=" + ",".join(f"127.0.0.1:{p}" for p in calcs)
    mark = len(bench.procs)
    gws = [bench.gunicorn("gateway", {"POOLS": pools}) for _ in range(n_gw)]
    gw_procs = procs_since(bench, mark)
    mark = len(bench.procs)
    lb = bench.gunicorn("lb", {"UPSTREAMS": ",".join(f"127.0.0.1:{p}" for p in gws)})
    wait_post(lb, "/rpc")
    return system("flask chain", lb, lb=procs_since(bench, mark), gateway=gw_procs, calc=calc_procs)


def scenario_chain(bench, a):
    chain = start_chain(bench)
    rows = compare([chain], seed_file(bench), a.conns, a.runs, a.duration)
    table(f"Scenario 3: LB -> 2 gateways -> 3 calc, seed request, {a.conns} connections", rows, tiers=True)
    return chain


def scenario_flask(bench, a):
    chain = start_chain(bench)
    flask = start_flask_chain(bench)
    rows = compare([chain, flask], seed_file(bench), a.conns, a.runs, a.duration)
    table(f"Scenario 5: the chain vs the Flask baseline, {a.conns} connections", rows, tiers=True)
    ratio = rows["switchboard chain"]["rps"] / max(rows["flask chain"]["rps"], 1e-9)
    cpu = rows["flask chain"]["cpu_us"]["total"] / rows["switchboard chain"]["cpu_us"]["total"]
    print(f"\nthroughput ratio: {ratio:.0f}x (target >= 100x); CPU per request ratio: {cpu:.0f}x")


def scenario_args(bench, a):
    scenario_gateway(bench, a, n_args_list=(10, 1000, 100000))


def scenario_instances(bench, a):
    for n in (1, 3, 30):
        sub = Bench(bench.access)
        try:
            scenario_gateway(sub, a, instances=n)
            scenario_lb(sub, a, instances=n)
        finally:
            sub.close()


def scenario_conns(bench, a):
    scenario_lb(bench, a, conns_list=[64, 512, 4096])


def open_idle(port, n):
    """`n` keep-alive connections, each after one answered request."""
    body = json.dumps(SEED).encode()
    req = (f"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        socks.append(s)
    for s in socks:
        s.settimeout(5)
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
    return socks


def scenario_memory(bench, a, n=2000):
    raise_nofile()
    print("\n### Scenario 4d: memory\n")
    backends = bench.backend(3)
    rows = []
    for name, start in (("switchboard lb", bench.lb), ("nginx", bench.nginx_proxy), ("haproxy", bench.haproxy)):
        mark = len(bench.procs)
        port = start(backends)
        pids = [p.pid for p in procs_since(bench, mark)]
        time.sleep(0.5)
        idle = rss_kib(pids)
        socks = open_idle(port, n)
        time.sleep(1)
        busy = rss_kib(pids)
        rows.append((name, idle, busy, (busy - idle) / n))
        for s in socks:
            s.close()
    print(f"| system | RSS idle MiB | RSS with {n} idle keep-alive clients MiB | KiB per idle connection |")
    print("|---|---|---|---|")
    for name, idle, busy, per in rows:
        print(f"| {name} | {idle / 1024:.1f} | {busy / 1024:.1f} | {per:.1f} |")
    chain = start_chain(bench)
    print("\n| component (idle, before any load) | RSS MiB |\n|---|---|")
    for tier, pids in chain["tiers"].items():
        for pid in pids:
            print(f"| {tier} (pid {pid}) | {rss_kib([pid]) / 1024:.1f} |")
    wrk(chain["port"], seed_file(bench), 64, a.duration)
    time.sleep(1)
    print("\n| component (idle, after a load run) | RSS MiB |\n|---|---|")
    for tier, pids in chain["tiers"].items():
        for pid in pids:
            print(f"| {tier} (pid {pid}) | {rss_kib([pid]) / 1024:.1f} |")
    sys.stdout.flush()


SCENARIOS = {
    "lb": scenario_lb,
    "gateway": scenario_gateway,
    "chain": scenario_chain,
    "args": scenario_args,
    "instances": scenario_instances,
    "conns": scenario_conns,
    "memory": scenario_memory,
    "flask": scenario_flask,
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=[*SCENARIOS, "all"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--ab", metavar="BINARY", help="also measure this switchboard build's lb (scenario lb)")
    p.add_argument("--access", choices=["on", "off"], default="on",
                   help="switchboard's per-request access lines (the `switchboard::access` target)")
    p.add_argument("--sut-cpus", default="0",
                   help="cores of the systems under test (taskset list); wrk stays on core 1")
    a = p.parse_args()
    SUT_CPUS[0] = a.sut_cpus
    if not BIN.exists():
        sys.exit(f"{BIN} is missing: run bench/setup.sh")
    print(f"<!-- {time.strftime('%Y-%m-%d %H:%M:%S')}; load: {os.getloadavg()}; access lines {a.access} -->")
    names = list(SCENARIOS) if a.scenario == "all" else [a.scenario]
    for name in names:
        bench = Bench(a.access)
        try:
            SCENARIOS[name](bench, a)
        finally:
            bench.close()


if __name__ == "__main__":
    main()
