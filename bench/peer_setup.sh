#!/usr/bin/env bash
# Installs the peer of the peer benchmark (bench/peer_bench.py): Meta's audiobox-aesthetics (`audio-aes`, the
# AudioMOS challenge baseline) in its own virtualenv, so that its pins never touch mmmos's .venv.
# Documentation for users: neither CI nor `make test` runs it.  Safe to run again (each step is skipped or a
# no-op when done).
#
#   bash bench/peer_setup.sh                      # -> .peer-venv (found by `make bench` by default)
#   PEER_VENV=/work/peer-venv bash bench/peer_setup.sh
#   make bench BENCH_ARGS="--only peer --peer-python /work/peer-venv/bin/python"   # or MMMOS_PEER_PYTHON=...
#
# What worked (Debian 12, Python 3.11, 2-core x86-64, no GPU):
# * torch 2.9.1 from PyPI (the CUDA 12.8 build PyPI serves for Linux, as in mmmos's .venv; it runs on the CPU;
#   the CPU-only index may be unreachable, PyPI is enough), torchaudio 2.9.1 with it;
# * torchcodec 0.8.1: torchaudio 2.9's `load` decodes through torchcodec, and torchcodec 0.8 is the release
#   built for torch 2.9 (torchcodec's compatibility table); it needs the FFmpeg 4-7 shared libraries
#   (Debian 12's ffmpeg package brings 5.1: libavcodec59, libavformat59, libavutil57, ...);
# * audiobox_aesthetics 0.0.4 (its dependencies: submitit, huggingface_hub, rich, safetensors, tqdm) and
#   requests, which its utils module imports but its metadata does not list.
set -euo pipefail
cd "$(dirname "$0")/.."
PEER_VENV=${PEER_VENV:-.peer-venv}
PYTHON=${PYTHON:-python3}

# FFmpeg shared libraries for torchcodec (root + apt only; install them yourself elsewhere)
if ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so\.'; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg
  else
    echo "peer_setup: install FFmpeg 4-7 shared libraries (e.g. 'apt-get install ffmpeg') and run again" >&2
    exit 1
  fi
fi

test -x "$PEER_VENV/bin/python" || "$PYTHON" -m venv "$PEER_VENV"
"$PEER_VENV/bin/python" -m pip install -q torch==2.9.1 torchaudio==2.9.1
"$PEER_VENV/bin/python" -m pip install -q audiobox_aesthetics==0.0.4 torchcodec==0.8.1 requests
"$PEER_VENV/bin/python" -c "import audiobox_aesthetics.infer, torchcodec.decoders, torch; print('peer ready:', torch.__version__)"
echo "peer python: $PEER_VENV/bin/python"
