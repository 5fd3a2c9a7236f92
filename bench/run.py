"""`make bench`: run every benchmark and write bench_out/*.json + *.md and bench_out/README.md.

    python -m bench.run [--out bench_out] [--only extract,sweep,ensemble,predict] [--scale 0.25]
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

BENCHES = {  # name -> (module, function taking (out, args) and returning the markdown file)
    "extract": "bench.extract_bench",
    "sweep": "bench.sweep_bench",
    "ensemble": "bench.ensemble_bench",
    "predict": "bench.predict_bench",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    ap.add_argument("--scale", type=float, default=0.25, help="sweep benchmark size as a fraction of the challenge data")
    ap.add_argument("--seconds", type=float, default=180.0, help="audio seconds for the extraction benchmark")
    ap.add_argument("--predict-seconds", type=float, default=90.0, help="audio seconds for the predict benchmark")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    out = Path(a.out)
    names = a.only.split(",") if a.only else list(BENCHES)
    mds = []
    for name in names:
        mod = importlib.import_module(BENCHES[name])
        print(f"== {name} benchmark", flush=True)
        if name == "extract":
            mod.run(out, a.seconds)
            mds.append(out / "extract.md")
        elif name == "predict":
            mds.append(mod.run(out, a.predict_seconds))
        elif name == "sweep":
            mod.run(out, a.scale, a.jobs)
            mds.append(out / f"sweep_scale{a.scale:g}.md")
        else:
            mds.append(mod.run(out))
        print(Path(mds[-1]).read_text(), flush=True)
    # the index lists every report in the folder, also those of earlier runs with other --only
    index = ["# Benchmarks", ""] + [f"* [{p.name}]({p.name})" for p in sorted(out.glob("*.md")) if p.name != "README.md"]
    (out / "README.md").write_text("\n".join(index) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
