#!/usr/bin/env bash
# Wheels the GPU machine lacks (its image: torch 2.11, transformers 5, no muq/polars/zarr/soundfile), for
# bench/device_check.sh.  Run here, in the repository root; the folder .whl/ must be ignored by git
# (echo /.whl/ >> .git/info/exclude) and travels with the working tree (64 MiB in all: polars 2.x and zarr
# together do not fit, so the GPU runs use polars 1.2x and --backend hdf5).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl
plat=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
$PY -m pip download -q --no-deps --only-binary=:all: "${plat[@]}" -d .whl \
  "transformers==4.57.6" "tokenizers==0.22.2" "huggingface_hub==0.36.2" "x-clip==0.14.4" beartype ftfy wcwidth \
  "easydict==1.14" "librosa==0.11.0" audioread soxr "soundfile==0.14.0" cffi pycparser "nnaudio==0.3.4" \
  "polars==1.29.0"
$PY -m pip wheel -q --no-deps -w .whl "muq==0.1.0"  # an sdist: built into a wheel here
du -sh .whl
