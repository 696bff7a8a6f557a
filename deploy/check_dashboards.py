#!/usr/bin/env python3
"""Checks the structure of the Grafana dashboards (run by deploy/check.sh with
the venv's Python, which has PyYAML):

- each file is a dashboard with a unique uid, a title and a schemaVersion;
- panel ids are unique, every panel has a type, title and gridPos inside the
  24-column grid;
- every non-row panel has targets, each with a refId and a non-empty expr;
- every data source named (panel, target, variable) is the uid provisioned in
  deploy/grafana/provisioning/datasources;
- the provisioning provider's path is where docker-compose.yml mounts the
  dashboards.
"""

import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent
GRAFANA = ROOT / "grafana"


def provisioned_uids():
    uids = set()
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            uids.add(source["uid"])
    return uids


def check_datasource(where, ds, uids, errors):
    if isinstance(ds, dict) and ds.get("uid") not in uids:
        errors.append(f"{where}: data source uid {ds.get('uid')!r} is not provisioned {uids}")
    elif isinstance(ds, str):
        errors.append(f"{where}: data source by name {ds!r}; use {{type, uid}}")


def check_panel(where, panel, uids, ids, errors):
    for key in ("id", "type", "title", "gridPos"):
        if key not in panel:
            errors.append(f"{where}: no {key}")
    pid = panel.get("id")
    if pid in ids:
        errors.append(f"{where}: duplicate panel id {pid}")
    ids.add(pid)
    pos = panel.get("gridPos", {})
    if pos.get("x", 0) + pos.get("w", 0) > 24 or pos.get("w", 0) <= 0 or pos.get("h", 0) <= 0:
        errors.append(f"{where}: gridPos {pos} outside the 24-column grid")
    if panel.get("type") == "row":
        for inner in panel.get("panels", []):
            check_panel(f"{where}/{inner.get('title')}", inner, uids, ids, errors)
        return
    check_datasource(where, panel.get("datasource"), uids, errors)
    targets = panel.get("targets") or []
    if not targets:
        errors.append(f"{where}: no targets")
    refs = set()
    for target in targets:
        if not str(target.get("expr", "")).strip():
            errors.append(f"{where}: a target without expr")
        if target.get("refId") in refs or not target.get("refId"):
            errors.append(f"{where}: missing or duplicate refId {target.get('refId')}")
        refs.add(target.get("refId"))
        check_datasource(f"{where} target {target.get('refId')}", target.get("datasource"),
                         uids, errors)


def check_dashboard(path, uids, seen_uids, errors):
    board = json.loads(path.read_text())
    for key in ("uid", "title", "schemaVersion", "panels"):
        if key not in board:
            errors.append(f"{path.name}: no {key}")
    if board.get("uid") in seen_uids:
        errors.append(f"{path.name}: duplicate dashboard uid {board.get('uid')}")
    seen_uids.add(board.get("uid"))
    ids = set()
    for panel in board.get("panels", []):
        check_panel(f"{path.name}/{panel.get('title')}", panel, uids, ids, errors)
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            check_datasource(f"{path.name} variable {var.get('name')}", var.get("datasource"),
                             uids, errors)


def check_provider(errors):
    compose = yaml.safe_load((ROOT.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    for path in (GRAFANA / "provisioning" / "dashboards").glob("*.yml"):
        for provider in yaml.safe_load(path.read_text())["providers"]:
            want = f"./deploy/grafana/dashboards:{provider['options']['path']}:ro"
            if want not in mounts:
                errors.append(f"{path.name}: {provider['options']['path']} is not mounted")


def main():
    errors, seen = [], set()
    uids = provisioned_uids()
    boards = sorted((GRAFANA / "dashboards").glob("*.json"))
    for path in boards:
        check_dashboard(path, uids, seen, errors)
    check_provider(errors)
    for error in errors:
        print("dashboard check:", error)
    if not errors:
        print(f"dashboards: {len(boards)} checked, data source uids {sorted(uids)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
