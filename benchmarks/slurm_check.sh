#!/usr/bin/env bash
# `lmbudget sweep --launcher slurm` against a real Slurm, on this machine alone.
#
# Installs slurm-wlm and munge if missing (apt-get; needs root), starts munged (as the munge user),
# slurmctld and slurmd for one node named by `hostname -s` with its real CPUs and memory (config,
# state, spool, logs and munge key under a temporary folder; ports chosen free), then submits a
# small sweep (bert-micro, 2 runs, one job array + the report job) with time=1 (minute) and
# signal_delay_s=45: a job still running 15 s after its start gets USR2 at slurmctld's next
# time-limit check (every 30 s), as before a real time limit: in training, lmbudget saves a
# checkpoint at the next step, then submitit requeues (a signal before training just requeues);
# max_num_timeout=20 lets a run on a loaded machine take as many one-minute jobs as it needs.
# On a fast machine the runs can end before that check reaches them, so the check also sends a job
# mid-run the same USR2 itself (`scancel --signal=USR2`), once: the summary says which signal did it.
# One job is also requeued from outside mid-run (`scontrol requeue`: SIGTERM, then SIGKILL; it
# resumes from its last periodic checkpoint). Slurm holds a requeued job for 120 s (BeginTime);
# the check releases it after 3 s (`scontrol update StartTime=now`) to stay short.
# Checks: every run completed once (each step logged once), at least one requeue of each kind,
# `lmbudget status` showing the live jobs' Slurm states (squeue: this Slurm keeps no accounting),
# and the report job's report equal to a single local worker's (wall-clock lines aside).
# Stops every daemon it started; the last line is a one-line summary.
#
#   sudo benchmarks/slurm_check.sh            # PYTHON=... to choose the interpreter
# Exit: 0 pass, 1 fail, 77 skipped (with the reason: not root, no apt-get, daemons would not start).
set -uo pipefail
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
skip() { echo "slurm_check: SKIP: $*"; exit 77; }
fail() { echo "slurm_check: FAIL: $* (logs in $T)"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (apt-get, munged as the munge user, slurmd)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || skip "slurmctld/slurmd/munged missing and no apt-get to install them"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
        || skip "apt-get install slurm-wlm munge failed (no network or package index?)"
fi
id munge >/dev/null 2>&1 || skip "no munge user (the munge package creates it)"

T=$(mktemp -d /tmp/lmbudget-slurm.XXXXXX)
chmod 755 "$T"
KEEP=1  # the logs stay unless the check passes
export SLURM_CONF=$T/slurm.conf LMBUDGET_HOME=${LMBUDGET_HOME:-$T/home}
stop() {
    if [ -f "$T/slurm.conf" ] && [ -s "$T/slurmctld.pid" ]; then  # no job of ours left running
        scancel --full --quiet --user=root 2>/dev/null
        for _ in $(seq 20); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for p in "$T/slurmd.pid" "$T/slurmctld.pid" "$T/munge/munged.pid"; do
        [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
    done
    [ "$KEEP" = 1 ] || rm -rf "$T"
}
trap stop EXIT

# --- munge: its own key and socket (munged refuses a socket folder others cannot enter)
mkdir -p "$T/munge" "$T/state" "$T/spool"
chown munge:munge "$T/munge" && chmod 755 "$T/munge"
runuser -u munge -- mungekey --create --keyfile="$T/munge/munge.key" >/dev/null 2>&1 || skip "mungekey failed"
runuser -u munge -- munged --socket="$T/munge/munge.socket" --pid-file="$T/munge/munged.pid" \
    --log-file="$T/munge/munged.log" --seed-file="$T/munge/seed" --key-file="$T/munge/munge.key" \
    || skip "munged would not start: $(tail -1 "$T/munge/munged.log" 2>/dev/null)"

# --- slurm.conf for this one node
read -r PORT1 PORT2 < <($PY -c "
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(('', 0))
print(*[s.getsockname()[1] for s in ss])")
NODE=$(hostname -s)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat > "$SLURM_CONF" <<EOF
ClusterName=lmbudget-check
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge/munge.socket
SlurmctldPort=$PORT1
SlurmdPort=$PORT2
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
KillWait=3
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$NODE CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=check Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld || skip "slurmctld would not start: $(tail -1 "$T/slurmctld.log" 2>/dev/null)"
slurmd || skip "slurmd would not start: $(tail -1 "$T/slurmd.log" 2>/dev/null)"
for _ in $(seq 30); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && break
    sleep 0.5
done
sinfo -h -o %T 2>/dev/null | grep -q idle || skip "the node never became idle: $(sinfo -h 2>&1 | head -1)"

# --- a tiny corpus and sweep; the data is prepared here by `lmbudget sweep` before any job starts
$PY - "$T" <<'EOF' || fail "could not write the corpus"
import sys
from pathlib import Path
from lmbudget.data import bbc_articles
root = Path(sys.argv[1]) / "corpus"
root.mkdir()
for a in bbc_articles()[:400]:
    (root / f"{a['id'].replace('/', '_')}.txt").write_text(a["headline"] + "\n\n" + a["body"])
(Path(sys.argv[1]) / "spec.yaml").write_text(f"""name: slurm-check
models: [bert-micro]
budgets: ["120 steps"]
seeds: [0]
configurations: [baseline, layer-dropping]
overrides: ["data.corpus={root}", "train.threads=1", "train.checkpoint_every=0.25", "train.eval_every=0.5"]
""")
EOF
$PY -m lmbudget sweep "$T/spec.yaml" --launcher slurm --out "$T/out" \
    --slurm "time=1;signal_delay_s=45;max_num_timeout=20;cpus_per_task=1;mem=2GB" > "$T/submit.log" 2>&1 || fail "submission: $(tail -1 "$T/submit.log")"

# --- the reference meanwhile: the same sweep by one local worker (its data is prepared: no race)
$PY -m lmbudget sweep "$T/spec.yaml" --out "$T/ref" --quiet > "$T/ref.log" 2>&1 &
REF=$!

# --- watch: one outside requeue mid-run; requeued jobs released at once; until the queue is empty
$PY - "$T" > "$T/watch.log" 2>&1 <<'EOF' || fail "watch: $(tail -1 "$T/watch.log")"
import json, subprocess, sys, time
from pathlib import Path
T = Path(sys.argv[1])
jobs = json.loads((T / "out" / "submitit-jobs.json").read_text())["jobs"]
forced, signalled, status_line, deadline, held = None, None, None, time.time() + 240, {}
while time.time() < deadline:
    queue = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True, text=True).stdout.split("\n")
    queue = [q.split() for q in queue if q.strip()]
    if not queue:
        break
    for job_id, state, reason in queue:
        if state == "PENDING" and reason == "BeginTime":  # a requeued job: Slurm waits 120 s
            # ... we wait 3 s: a job started again within a second or two of its kill is refused by slurmd
            # ("already killed, do not launch") and ends FAILED
            if time.time() - held.setdefault(job_id, time.time()) >= 3:
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)
                held.pop(job_id)
    just_forced = None
    if forced is None:
        for name, job_id in jobs.items():
            run = T / "out" / "runs" / name
            running = any(q[0] == job_id and q[1] == "RUNNING" for q in queue)
            if running and (run / "checkpoints" / "latest.json").exists() and not (run / "summary.json").exists():
                subprocess.run(["scontrol", "requeue", job_id], check=True)
                forced = just_forced = name
                print(f"forced requeue of {job_id} ({name})", flush=True)
                break
    if forced is not None and signalled is None:
        # USR2, as Slurm sends it signal_delay_s before the time limit, to a job mid-run (any run may end
        # before slurmctld's 30-second time-limit check reaches it on a fast machine)
        for name, job_id in jobs.items():
            run = T / "out" / "runs" / name
            running = any(q[0] == job_id and q[1] == "RUNNING" for q in queue)
            if name != just_forced and running and (run / "checkpoints" / "latest.json").exists() \
                    and not (run / "summary.json").exists() \
                    and subprocess.run(["scancel", "--signal=USR2", job_id]).returncode == 0:
                signalled = name
                print(f"USR2 sent to {job_id} ({name})", flush=True)
                break
    if signalled is not None and status_line is None:   # `lmbudget status` while jobs are live: their Slurm states
        out = subprocess.run([sys.executable, "-m", "lmbudget", "status", str(T / "out")], capture_output=True, text=True).stdout
        status_line = next((line for line in out.splitlines() if "[slurm: job " in line), "")
        print(f"STATUS {status_line}", flush=True)
    time.sleep(0.5)
else:
    sys.exit("the jobs did not end within 240 s")
print(f"FORCED {forced}")
EOF
grep -q "^FORCED [^N]" "$T/watch.log" || fail "no job could be requeued mid-run (all runs ended first)"

wait "$REF" || fail "local sweep: $(tail -1 "$T/ref.log")"

LINE=$($PY - "$T" <<'EOF'
import json, re, sys
from pathlib import Path
from lmbudget.runlog import MetricsLog
T = Path(sys.argv[1])
logs = "".join(p.read_text(errors="replace") for p in (T / "out" / "submitit").rglob("*.out"))
logs += "".join(p.read_text(errors="replace") for p in (T / "out" / "submitit").rglob("*.err"))
runs = sorted((T / "ref" / "runs").iterdir())
once = 0
for ref in runs:
    run = T / "out" / "runs" / ref.name
    steps = [x["step"] for x in MetricsLog(run / "metrics.jsonl").read() if "train_loss" in x]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    once += summary.get("status") == "completed" and steps == list(range(1, summary.get("steps", 0) + 1))
strip = lambda md: "\n".join(l for l in md.splitlines() if "wall" not in l.lower())
same = all((T / d / "report.md").exists() for d in ("out", "ref")) and \
    strip((T / "out" / "report.md").read_text()) == strip((T / "ref" / "report.md").read_text())
signalled = logs.count("as a signal asked: checkpoint saved")
requeues = len(re.findall(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+ DUE TO JOB REQUEUE", logs))
forced = (T / "watch.log").read_text().count("forced requeue of")
jobs = len(json.loads((T / "out" / "submitit-jobs.json").read_text())["jobs"]) + 1
status_shown = "STATUS " in (T / "watch.log").read_text() and "[slurm: job " in (T / "watch.log").read_text()
ok = once == len(runs) and same and signalled >= 1 and forced >= 1 and status_shown and "TypeError" not in logs
sent = (T / "watch.log").read_text().count("USR2 sent to")
print(f"{'PASS' if ok else 'FAIL'}: {jobs} jobs submitted ({jobs - 1} runs + report), {requeues} requeues ({forced} "
      f"forced by scontrol mid-run, {signalled} on USR2 with a checkpoint at the next step: {sent} sent as before "
      f"a time limit, {max(0, signalled - sent)} by the time limit itself), "
      f"{once}/{len(runs)} runs completed once, `status` {'showed' if status_shown else 'did NOT show'} the jobs' Slurm "
      f"states, "
      f"report {'equal to' if same else 'DIFFERENT from'} a single worker's")
sys.exit(0 if ok else 1)
EOF
)
RC=$?
[ $RC = 0 ] && [ -z "${KEEP_LOGS:-}" ] && KEEP=0
echo "slurm_check: ${LINE:-FAIL: the final check did not run} in $(( $(date +%s) - START )) s$( [ $RC = 0 ] || echo " (logs in $T)")"
exit $RC
