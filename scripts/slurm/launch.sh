#!/usr/bin/env bash
# rlscale on a SLURM allocation: a Ray head on the first node, a Ray worker on every other
# node, then the run as a Ray job. These are the README's cluster commands ("Cluster"),
# with the nodes, CPUs and GPUs taken from the allocation:
#
#   sbatch --nodes=2 scripts/slurm/launch.sh configs/quickstart.yaml [OVERRIDES ...]
#
# Run from the checkout; every node sees it, and its .venv, at the same path (a shared
# filesystem). The run directory is $RLSCALE_RUNS/<config name>-<job id> (default
# RLSCALE_RUNS: runs/ in the checkout), and the zoo's cache must be shared too
# (pretrain.cache_dir). The Ray processes are this allocation's own: each node's
# `ray start --block` runs as a job step, and the steps end with the allocation (never
# `ray stop`, which would stop other users' Ray on a shared node).
# RLSCALE_LAUNCH_DRY_RUN=1 prints the commands instead of running them.
#SBATCH --job-name=rlscale
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --output=rlscale-%j.out
set -euo pipefail

config=${1:?usage: sbatch [--nodes=N] scripts/slurm/launch.sh CONFIG [OVERRIDES ...]}
shift
cd "${SLURM_SUBMIT_DIR:-$PWD}"
runs=$(realpath -m "${RLSCALE_RUNS:-runs}")
port=${RAY_PORT:-6379}
dashboard_port=${RAY_DASHBOARD_PORT:-8265}
dry_run=${RLSCALE_LAUNCH_DRY_RUN:-}

run() {  # a command, or with RLSCALE_LAUNCH_DRY_RUN its words on one line
    if [[ -n $dry_run ]]; then echo "${*@Q}"; else "$@"; fi
}

. .venv/bin/activate    # ray and rlscale on PATH, for the nodes and the job's entrypoint
export RAY_AUTH_MODE=token
# One token for this allocation's cluster: every node's step and the submission inherit it.
RAY_AUTH_TOKEN=${RAY_AUTH_TOKEN:-$(python -c 'import secrets; print(secrets.token_hex(32))')}
export RAY_AUTH_TOKEN

mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
# The batch script runs on the allocation's first node: the head.
head_ip=${RLSCALE_HEAD_IP:-$(hostname --ip-address | awk '{print $1}')}
resources=(--num-cpus="${SLURM_CPUS_ON_NODE:-1}")
[[ -n ${SLURM_GPUS_ON_NODE:-} ]] && resources+=(--num-gpus="$SLURM_GPUS_ON_NODE")
step=(srun --nodes=1 --ntasks=1 --overlap)

wait_for_nodes() {  # until the cluster has $1 live nodes (5 minutes at most)
    [[ -n $dry_run ]] && return 0
    local deadline=$((SECONDS + 300)) alive
    while ((SECONDS < deadline)); do
        alive=$(ray list nodes --address="http://$head_ip:$dashboard_port" --filter state=ALIVE --format=json \
                2>/dev/null | python -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
        ((alive >= $1)) && return 0
        sleep 2
    done
    echo "launch.sh: the Ray cluster has $alive of $1 nodes after 5 minutes; see the node steps' output" >&2
    return 1
}

steps=()  # the srun processes of the node steps
start_step() {  # a node's `ray start --block`, as a background job step
    if [[ -n $dry_run ]]; then run "$@"; else "$@" & steps+=($!); fi
}
stop_steps() {  # SIGTERM reaches each step's ray start --block, which stops its own node
    local rc=$?
    ((${#steps[@]} == 0)) || { kill "${steps[@]}" 2>/dev/null; wait; }
    exit "$rc"
}
trap stop_steps EXIT

start_step "${step[@]}" -w "${nodes[0]}" ray start --head --node-ip-address="$head_ip" --port="$port" \
    --dashboard-port="$dashboard_port" "${resources[@]}" --block
wait_for_nodes 1
for node in "${nodes[@]:1}"; do
    start_step "${step[@]}" -w "$node" ray start --address="$head_ip:$port" "${resources[@]}" --block
done
wait_for_nodes "${#nodes[@]}"

name=$(basename "$config" .yaml)
run ray job submit --address="http://$head_ip:$dashboard_port" --working-dir=. \
    --runtime-env=scripts/cluster/runtime_env.yaml -- \
    rlscale run "$config" ray.address=auto run_dir="$runs/$name-${SLURM_JOB_ID:-0}" "$@"
