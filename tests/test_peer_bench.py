"""The peer benchmark's arithmetic and report (bench/peer_bench.py) on a hand-worked example, and its skip
path; neither needs audiobox-aesthetics nor the network."""
from __future__ import annotations

from pathlib import Path

from bench import peer_bench


def _runs(mmmos_walls, audiobox_walls):
    return {"mmmos": [{"wall": w, "rss_mib": 1000.0 + i, "scoring": w - 5} for i, w in enumerate(mmmos_walls)],
            "audiobox": [{"wall": w, "rss_mib": 1500.0 - i} for i, w in enumerate(audiobox_walls)]}


def test_summary_is_median_ratio_against_goal():
    runs = {"wavlm_24x10": _runs([30.0, 10.0, 20.0], [40.0, 60.0, 50.0]),  # medians 20 / 50 = 0.40: goal 0.4 met
            "trienc_4x60": _runs([66.0, 60.0, 63.0], [50.0, 50.0, 60.0])}  # 63 / 50 = 1.26: goal 1.0 missed
    s = peer_bench.summarize(runs, {"wavlm_24x10": 0.4, "trienc_4x60": 1.0})
    w, t = s["wavlm_24x10"], s["trienc_4x60"]
    assert w["median_wall_seconds"] == {"mmmos": 20.0, "audiobox": 50.0}
    assert abs(w["ratio"] - 0.4) < 1e-12 and w["met"]
    assert w["peak_rss_mib"] == {"mmmos": 1002.0, "audiobox": 1500.0}  # the largest of the repetitions
    assert w["mmmos_scoring_seconds"] == 15.0
    assert abs(t["ratio"] - 1.26) < 1e-12 and not t["met"]


def test_report_names_cpu_command_and_ratios():
    cases = peer_bench.select_cases("wavlm_24x10,trienc_4x60", None, None)
    assert cases == {"wavlm_24x10": ("wavlm", 24, 10.0, 0.4), "trienc_4x60": ("trienc", 4, 60.0, 1.0)}
    assert peer_bench.select_cases("wavlm_1x10", 2, 3.0) == {"wavlm_1x10": ("wavlm", 2, 3.0, 1.0)}
    runs = {"wavlm_24x10": _runs([20.0], [50.0]), "trienc_4x60": _runs([63.0], [50.0])}
    rep = {"reps": 1, "threads": 2, "cases": cases, "peer_torch": "2.9.1", "mmmos_precision": "wavlm fp32",
           "machine": {"cpu_model": "Test CPU", "cpus": 2, "torch": "2.9.1", "cpu_flags": ["amx_bf16", "avx2"]},
           "command": "python -m bench.peer_bench --out x",
           "summary": peer_bench.summarize(runs, {c: v[3] for c, v in cases.items()})}
    md = peer_bench.report_md(rep)
    assert "Test CPU, 2 cores, amx_bf16" in md and "avx2" not in md
    assert "`python -m bench.peer_bench --out x`" in md
    assert "| wavlm_24x10 | 24 × 10 s | 20.0 | 50.0 | **0.40×** | ≤ 0.4× met | 1000 | 1500 | 15.0 |" in md
    assert "| trienc_4x60 | 4 × 60 s | 63.0 | 50.0 | **1.26×** | ≤ 1× missed |" in md


def test_missing_peer_is_one_line_and_no_files(tmp_path: Path, capsys):
    assert peer_bench.run(tmp_path / "out", peer_python=str(tmp_path / "no-python")) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("peer benchmark skipped:")
    assert not (tmp_path / "out").exists()
