#!/usr/bin/env python3
"""bench/run.sh §4: the daemon against the same terraform commands typed by hand.

Deploys (and then destroys) storage-bucket on moto N times through the daemon and N times by
hand with the bare command sequence on the same backend (PostgreSQL) and the same generated
provider file, interleaved, and prints the medians side by side with per-step timings.

Daemon times are its own record: a deploy is created_at (the row committed, before the 202) to
completed_at (the result committed); a destroy is the instant before DELETE to completed_at. A
plan-gated deploy (`auto_apply: false`, then `POST .../apply` as soon as it is planned) is its two
phases without the client's reaction time: created_at to the plan's end (the run's "run ended
planned" line), plus approved_at to completed_at.
Steps come from the run's log: each `$ terraform ...` line (and the initialised template being
linked) starts a step, the next marker ends it; "queue" is acceptance to the first log line.

usage: overhead.py PORT MOTO_URL DB_URL TERRAFORMRC WORK_DIR TEMPLATES_DIR DAEMON_DATA_DIR [N]
"""

import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

PORT, MOTO, DB_URL, TFRC, WORK, TEMPLATES, DATA = sys.argv[1:8]
N = int(sys.argv[8]) if len(sys.argv) > 8 else 5


def call(method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)["data"]


def ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait(did):
    # A poll every 0.5 s: the time measured is the daemon's own record, not this loop's.
    while True:
        st = call("GET", f"/deployments/{did}/status")
        if st["status"] not in ("pending", "running"):
            return st
        time.sleep(0.5)


def step_name(line):
    if line.startswith("$ terraform "):
        words = line.split()
        name = words[2]
        if name == "apply" and "-destroy" in words:
            return "apply -destroy"
        if name == "apply" and "-auto-approve" in words:
            return "apply -auto-approve"
        return name
    if line.startswith("using the initialised template"):
        return "link init"
    return None


def daemon_steps(did, since_line, accepted):
    """{step: seconds} from the log lines after `since_line` (a run's first line marker)."""
    lines = call("GET", f"/deployments/{did}/logs?limit=5000")["lines"]
    start = next(i for i, l in enumerate(lines) if since_line in l["line"])
    run = lines[start:]
    steps = {"queue": ts(run[0]["at"]) - accepted}
    marks = [(step_name(l["line"]), ts(l["at"])) for l in run]
    end = next(ts(l["at"]) for l in run if l["line"].startswith("run ended"))
    timed = [(n, t) for n, t in marks if n] + [("end", end)]
    for (name, t0), (_, t1) in zip(timed, timed[1:]):
        steps[name] = steps.get(name, 0.0) + (t1 - t0)
    return steps


def bare(ws, workspace, commands):
    env = dict(
        os.environ,
        TF_CLI_CONFIG_FILE=TFRC,
        TF_IN_AUTOMATION="1",
        PG_CONN_STR=f"{DB_URL}&sslmode=disable",
        AWS_ENDPOINT_URL=MOTO,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        HOME=ws,
        TF_PLUGIN_CACHE_DIR=f"{WORK}/cache",
    )
    os.makedirs(f"{WORK}/cache", exist_ok=True)
    steps = {}
    for name, args in commands:
        t0 = time.monotonic()
        subprocess.run(["terraform", *args], cwd=ws, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        steps[name] = time.monotonic() - t0
    return steps


def bare_deploy(ws, workspace):
    return bare(ws, workspace, [
        ("init", ["init", "-input=false", "-no-color"]),
        ("workspace", ["workspace", "select", "-or-create=true", workspace]),
        ("plan", ["plan", "-input=false", "-json", "-lock-timeout=300s", "-out=tfplan"]),
        ("apply", ["apply", "-input=false", "-json", "-lock-timeout=300s", "tfplan"]),
        ("output", ["output", "-json"]),
    ])


def bare_destroy(ws, workspace):
    return bare(ws, workspace, [
        ("init", ["init", "-input=false", "-no-color"]),
        ("workspace", ["workspace", "select", "-or-create=true", workspace]),
        ("apply -destroy", ["apply", "-destroy", "-auto-approve", "-input=false", "-json",
                            "-lock-timeout=300s"]),
    ])


def gated_steps(did, run_id):
    """{step: seconds} of a gated run: its plan phase and its apply phase."""
    lines = call("GET", f"/runs/{run_id}/logs?limit=5000")["lines"]
    marks = [(step_name(l["line"]), ts(l["at"])) for l in lines]
    ends = [ts(l["at"]) for l in lines if l["line"].startswith("run ended")]
    timed = [(n, t) for n, t in marks if n]
    steps = {}
    for phase_end in ends:
        phase = [(n, t) for n, t in timed if t <= phase_end]
        timed = [(n, t) for n, t in timed if t > phase_end]
        phase.append(("end", phase_end))
        for (name, t0), (_, t1) in zip(phase, phase[1:]):
            steps[name] = steps.get(name, 0.0) + (t1 - t0)
    return steps


def gated_deploy(i):
    """A plan-gated deploy applied as soon as it is planned: (seconds, steps)."""
    d = call("POST", "/deploy", {"template_name": "storage-bucket", "provider_type": "aws",
                                 "auto_apply": False,
                                 "parameters": {"bucket_name": f"ovh-g-{i}-{tag}"}})
    did = d["deployment_id"]
    while call("GET", f"/deployments/{did}/status")["status"] in ("pending", "running"):
        time.sleep(0.05)
    call("POST", f"/deployments/{did}/apply", {})
    st = wait(did)
    assert st["status"] == "completed", st
    run = call("GET", f"/deployments/{did}/runs?limit=1")["runs"][0]
    lines = call("GET", f"/runs/{run['run_id']}/logs?limit=5000")["lines"]
    planned = next(ts(l["at"]) for l in lines if l["line"].startswith("run ended planned"))
    rec = call("GET", f"/deployments/{did}")
    seconds = (planned - ts(rec["created_at"])) + (ts(rec["completed_at"]) - ts(run["approved_at"]))
    call("DELETE", f"/deployments/{did}")
    assert wait(did)["status"] == "destroyed"
    return seconds, gated_steps(did, run["run_id"])


results = {k: [] for k in ("daemon deploy", "bare deploy", "daemon destroy", "bare destroy",
                           "daemon gated")}
steps = {k: [] for k in results}
tag = os.getpid()
for i in range(N):
    # Daemon: deploy, then destroy.
    d = call("POST", "/deploy", {"template_name": "storage-bucket", "provider_type": "aws",
                                 "parameters": {"bucket_name": f"ovh-d-{i}-{tag}"}})
    did = d["deployment_id"]
    st = wait(did)
    assert st["status"] == "completed", st
    rec = call("GET", f"/deployments/{did}")
    results["daemon deploy"].append(ts(rec["completed_at"]) - ts(rec["created_at"]))
    steps["daemon deploy"].append(daemon_steps(did, "operation deploy", ts(rec["created_at"])))
    t0 = time.time()
    call("DELETE", f"/deployments/{did}")
    st = wait(did)
    assert st["status"] == "destroyed", st
    rec = call("GET", f"/deployments/{did}")
    results["daemon destroy"].append(ts(rec["completed_at"]) - t0)
    steps["daemon destroy"].append(daemon_steps(did, "operation destroy", t0))

    # Plan-gated: plan, then apply the saved plan at once.
    seconds, s = gated_deploy(i)
    results["daemon gated"].append(seconds)
    steps["daemon gated"].append(s)

    # By hand: the same template, provider file and backend.
    ws = f"{WORK}/bare-{i}"
    os.makedirs(ws, exist_ok=True)
    with open(f"{TEMPLATES}/terraform/aws/storage-bucket.tf") as f, open(f"{ws}/main.tf", "w") as g:
        g.write(f.read())
    with open(f"{ws}/terraform.tfvars.json", "w") as g:
        json.dump({"bucket_name": f"ovh-b-{i}-{tag}"}, g)
    with open(f"{DATA}/workspaces/{did}/multicloud_providers.tf.json") as f, \
            open(f"{ws}/multicloud_providers.tf.json", "w") as g:
        g.write(f.read())
    t0 = time.monotonic()
    s = bare_deploy(ws, f"bare-{i}")
    results["bare deploy"].append(time.monotonic() - t0)
    steps["bare deploy"].append(s)
    t0 = time.monotonic()
    s = bare_destroy(ws, f"bare-{i}")
    results["bare destroy"].append(time.monotonic() - t0)
    steps["bare destroy"].append(s)
    print(f"  run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()),
          flush=True)


def med(xs):
    return statistics.median(xs)


def step_table(kind):
    names = []
    for s in steps[kind]:
        names += [n for n in s if n not in names]
    return ", ".join(f"{n} {med([s.get(n, 0.0) for s in steps[kind]]):.2f}" for n in names)


out = {}
for op in ("deploy", "destroy"):
    dm, bm = med(results[f"daemon {op}"]), med(results[f"bare {op}"])
    out[op] = (dm, bm, dm / bm)
    print(f"  {op}: daemon {dm:.2f} s [{step_table('daemon ' + op)}]")
    print(f"  {op}: bare   {bm:.2f} s [{step_table('bare ' + op)}]")
    print(f"  {op}: ratio {dm / bm:.3f}")
gm, bm = med(results["daemon gated"]), med(results["bare deploy"])
out["gated"] = (gm, bm, gm / bm)
print(f"  gated: daemon {gm:.2f} s [{step_table('daemon gated')}]")
print(f"  gated: ratio {gm / bm:.3f}")
with open(f"{WORK}/overhead.txt", "w") as f:
    for op, (dm, bm, r) in out.items():
        kind = "deploy" if op == "gated" else op
        f.write(f"{op}\tdaemon {dm:.2f} s, bare {bm:.2f} s, ratio {r:.3f} "
                f"(daemon: {step_table('daemon ' + op)}; bare: {step_table('bare ' + kind)})\n")
