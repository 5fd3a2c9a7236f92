#!/usr/bin/env bash
# Every GPU measurement of the extraction stage in one run, each step with its own time budget; run on the
# device machine from the repository root (wheels in .whl/, made by bench/device_wheels.sh):
#
#   bash bench/device_check.sh                 # results under $OUT (default bench_out/device)
#   DEVICE=cpu CLIPS=4 bash bench/device_check.sh   # the CPU smoke test of the same script
#
# Steps: (1) extraction benchmark, pipeline vs the encoders alone on the mixed 16/44.1 kHz set, precision auto;
# (2) each encoder alone in fp32, bf16 and fp16 (what `auto` on CUDA should pick); (3) `mmmos extract` of the
# band-limited 16-kHz clips with --precision auto and fp16: every clip must be written; (4) the sweep of the 16
# configurations on a small synthetic cache with the frames' crops and pooling on the device and on the host
# (--device-bank both; SWEEP_SCALE, default 0.02: 70 train + 9 dev clips); (5) Track 1's head epochs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out/device}
DEVICE=${DEVICE:-cuda}
CLIPS=${CLIPS:-384}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
PY=${PY:-python3}
# The project as an importable tree (the stage folders are sub-packages of mmmos when installed).
PKG=/tmp/mmmos_pkg
rm -rf $PKG && mkdir -p $PKG && cp -r mmmos bench $PKG/
for d in extract cache_store heads losses; do cp -r $d $PKG/mmmos/$d; done
export PYTHONPATH=$PKG${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
cd $PKG
(nvidia-smi; $PY -c "import torch, transformers, polars; print(torch.__version__, transformers.__version__, polars.__version__)") \
  > "$OUT/machine.txt" 2>&1

# The whole script stays inside BUDGET seconds (a device session has 15 minutes in all, start-up included, and
# one command at most 10): each step's limit is cut to what is left, and a step with under 15 s left is skipped.
BUDGET=${BUDGET:-540}
step() {  # step NAME SECONDS CMD...: run with a time limit, log to $OUT/NAME.log, say how it ended
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "$name: skipped ($left s of the $BUDGET-s budget left)" | tee -a "$OUT/steps.txt"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

step extract 210 $PY -m bench.extract_bench --device "$DEVICE" --clips "$CLIPS" --repeats 1 --backend hdf5 \
  --out "$OUT/extract"
cp "$OUT"/extract/extract.md "$OUT"/extract/extract.json "$OUT"/ 2>/dev/null
W=$OUT/extract/extract_work
for p in fp32 bf16 fp16; do
  step "encoders_$p" 50 $PY -m bench.extract_bench --child encoders --device "$DEVICE" --precision $p \
    --manifest "$W/manifest.csv" --weights "$($PY -c "import json,bench.extract_bench as b,pathlib;print(json.dumps(b.make_weights(pathlib.Path('$W/weights'))))")"
done
grep -h RESULT "$OUT"/encoders_*.log > "$OUT/encoders_by_precision.jsonl" 2>/dev/null
# band-limited clips only (every 4th clip of the set is 16 kHz mono)
$PY -c "import polars as pl; d=pl.read_csv('$W/manifest.csv'); d.filter(pl.int_range(pl.len()) % 4 == 3).write_csv('$W/band_limited.csv')"
for p in auto fp16; do
  step "band_limited_$p" 45 $PY -m mmmos extract --manifest "$W/band_limited.csv" --store "$W/bl_$p.h5" \
    --backend hdf5 --encoders wavlm,muq,m2d --device "$DEVICE" --precision $p --no-progress \
    --weights "wavlm=$W/weights/wavlm" --weights "muq=$W/weights/muq" --weights "m2d=$(ls -d $W/weights/m2d/*80x1001*)"
done
SWEEP_SCALE=${SWEEP_SCALE:-0.02}
step sweep 90 $PY -m bench.sweep_bench --device "$DEVICE" --device-bank both --scale "$SWEEP_SCALE" --jobs 1 \
  --schedules early --no-encoder-cost --out "$OUT/sweep"
cp "$OUT"/sweep/sweep_scale*.md "$OUT"/sweep/sweep_scale*.json "$OUT"/ 2>/dev/null
# (5) Track 1's full-size dual-branch head: seconds per clip of a training step and of dev prediction on the
# device, extrapolated to an epoch of 2,500 + 250 clips and to the 8-run recipe
step track1 60 $PY -m bench.track1_bench --device "$DEVICE" --sample 32 --timing-batch 32 --reps 3 --no-encoder-cost \
  --out "$OUT/track1"
cp "$OUT"/track1/track1.md "$OUT"/track1/track1.json "$OUT"/ 2>/dev/null
cat "$OUT/steps.txt"
