"""Track 1 predictors: an exported dual-branch ensemble scores (audio, prompt) pairs as the sweep did."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmmos.app.cli import main
from mmmos.app.demos.track1 import AUDIO_ENCODER, TEXT_ENCODER, demo_configs, _sweep
from mmmos.app.demos.track1_corpus import make_track1_corpus
from mmmos.app.predict import export_predictor
from mmmos.app.predict.track1 import PromptedItem, Track1Predictor, expand_prompted_inputs, prompted_table
from mmmos.core.tasks import get_task
from mmmos.extract.runner import ExtractConfig, run_extract

RUNS = ["t1-gauss-s1984", "t1-coral-s1510"]
AXES = get_task("track1").axes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("t1pred")
    info = make_track1_corpus(root / "corpus", n_train=40, n_dev=16, n_pam=6, seed=3)
    sets = {s: info[s] for s in ("train", "dev", "pam_dev")}
    store = str(root / "cache.zarr")
    run_extract(ExtractConfig(manifests=list(sets.values()), store=store, encoders=[AUDIO_ENCODER, TEXT_ENCODER],
                              task="track1", progress=False))
    res = _sweep(demo_configs(2, 1e-3, RUNS), store, root / "run", sets, ["pam_dev"], 1, False)
    assert not any(r and "error" in r for r in res.values())
    return root, info


def _dev(root, name):
    return pl.read_parquet(root / "run" / "configs" / name / "predictions" / "dev.parquet")


def _predict(model, items, distribution=False):
    p = Track1Predictor.load(model, device="cpu")
    return prompted_table(list(p.predict_items(items)), p.axes, distribution)


def test_single_member_reproduces_the_sweep_dev_predictions(trained, tmp_path):
    root, info = trained
    model = export_predictor(root / "run", [RUNS[0]], tmp_path / "m")
    items = expand_prompted_inputs([info["dev"]], get_task("track1"))
    assert all(it.prompt for it in items) and len(items) == 16
    got = _predict(model, items, distribution=True).join(_dev(root, RUNS[0]), on="clip_id", suffix="_ref")
    assert got.height == 16 and got["error"].null_count() == 16
    for c in [*AXES, *(f"{a}_p{b:02d}" for a in AXES for b in (0, 7, 19))]:
        np.testing.assert_allclose(got[c].to_numpy(), got[c + "_ref"].to_numpy(), atol=1e-5)


def test_ensemble_is_the_member_mean_and_batch_invariant(trained, tmp_path):
    root, info = trained
    model = export_predictor(root / "run", RUNS, tmp_path / "m2")
    items = expand_prompted_inputs([info["dev"]], get_task("track1"))
    full = _predict(model, items)
    ref = _dev(root, RUNS[0]).join(_dev(root, RUNS[1]), on="clip_id", suffix="_b")
    j = full.join(ref, on="clip_id", suffix="_a")
    for a in AXES:
        np.testing.assert_allclose(j[a].to_numpy(), (j[a + "_a"].to_numpy() + j[a + "_b"].to_numpy()) / 2, atol=1e-5)
    alone = _predict(model, items[3:4])  # the same clip scored on its own
    row = full.filter(pl.col("clip_id") == items[3].clip_id)
    for a in AXES:
        assert alone[a][0] == row[a][0]
    # CORAL members save no distribution; the ensemble's distribution comes from the others
    dist = _predict(model, items[:2], distribution=True)
    p = dist.select([f"{AXES[0]}_p{b:02d}" for b in range(20)]).to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)


def test_prompt_changes_alignment_not_audio_only(trained, tmp_path):
    root, info = trained
    model = export_predictor(root / "run", [RUNS[0]], tmp_path / "m3")
    wav = expand_prompted_inputs([info["dev"]], get_task("track1"))[0].path
    t = _predict(model, [PromptedItem("a", wav, "A slow warm flute melody"), PromptedItem("b", wav, "x"),
                         PromptedItem("c", wav, None), PromptedItem("d", wav, "  ")])
    assert t["error"][0] is None and t["error"][1] is None
    assert t[AXES[1]][0] != t[AXES[1]][1]
    assert "no prompt" in t["error"][2] and "no prompt" in t["error"][3] and t[AXES[0]][2] is None


def test_cli_prompt_manifest_csv_and_missing_prompt(trained, tmp_path, capsys):
    root, info = trained
    model = export_predictor(root / "run", [RUNS[0]], tmp_path / "m4")
    items = expand_prompted_inputs([info["dev"]], get_task("track1"))[:3]
    out = tmp_path / "a.csv"
    # files with --prompt
    assert main(["predict", items[0].path, items[1].path, "--prompt", items[0].prompt, "--model", str(model),
                 "--out", str(out), "--no-progress"]) == 0
    a = pl.read_csv(out)
    assert a["prompt"].to_list() == [items[0].prompt] * 2
    # a MusicEval list with the prompt tables (found beside the lists), with --distribution
    assert main(["predict", info["dev"], "--model", str(model), "--out", str(out), "--distribution",
                 "--no-progress"]) == 0
    b = pl.read_csv(out)
    assert b.height == 16 and f"{AXES[1]}_p19" in b.columns
    assert b.filter(pl.col("clip_id") == items[0].clip_id)[AXES[0]][0] == pytest.approx(
        a[AXES[0]][0], abs=1e-9)
    # CSV path,prompt with one row lacking a prompt -> an error row, exit 3
    csv = tmp_path / "pairs.csv"
    pl.DataFrame({"path": [it.path for it in items], "prompt": [items[0].prompt, None, "A fast bright piano piece"]}
                 ).write_csv(csv)
    assert main(["predict", str(csv), "--model", str(model), "--out", str(out), "--no-progress"]) == 3
    c = pl.read_csv(out)
    assert c.height == 3 and c["error"].null_count() == 2 and f"empty prompt in {csv}" in c["error"][1]
    assert c[AXES[0]][1] is None and c[AXES[0]][0] is not None
    # a plain audio file without --prompt -> error row, exit 3
    assert main(["predict", items[0].path, "--model", str(model), "--out", str(out), "--no-progress"]) == 3
    # audio-only options are refused for a Track 1 model (exit 2)
    assert main(["predict", items[0].path, "--prompt", "x", "--window", "4", "--model", str(model)]) == 2


def test_stacked_predictor_reproduces_the_stack_with_member_distributions(trained, tmp_path):
    root, info = trained
    model = tmp_path / "stacked"
    assert main(["ensemble", str(root / "run"), "--strategies", "all,stack", "--stack-features", "bins",
                 "--export", str(model), "--export-strategy", "stack"]) == 0
    items = expand_prompted_inputs([info["pam_dev"]], get_task("track1"))
    got = _predict(model, items).join(
        pl.read_parquet(root / "run" / "ensembles" / "predictions" / "stack" / "pam_dev.parquet"),
        on="clip_id", suffix="_ref")
    assert got.height == len(items) == 6
    for a in AXES:
        np.testing.assert_allclose(got[a].to_numpy(), got[a + "_ref"].to_numpy(), atol=1e-5)


def test_cache_gives_the_audio_scores_and_reads_what_it_holds(trained, tmp_path, capsys, monkeypatch):
    """--cache for a Track 1 model: the same scores as from audio, every dev clip's frames and prompt tokens read
    from the cache (no encoder run: both are made to fail if called), a clip whose file changed computed fresh."""
    root, info = trained
    model = export_predictor(root / "run", [RUNS[0]], tmp_path / "mc")
    items = expand_prompted_inputs([info["dev"]], get_task("track1"))
    plain = _predict(model, items).sort("clip_id")
    cached = Track1Predictor.load(model, device="cpu", cache=root / "cache.zarr")

    def boom(*a, **k):
        raise AssertionError("an encoder ran although the cache holds the clip")

    monkeypatch.setattr(cached.audio, "frames", boom)
    got = prompted_table(list(cached.predict_items(items)), cached.axes).sort("clip_id")
    assert got["error"].null_count() == got.height == 16
    for a in AXES:
        np.testing.assert_allclose(got[a].to_numpy(), plain[a].to_numpy(), atol=1e-6)
    assert not cached.text  # the prompts' tokens came from the cache: no text encoder was loaded
    monkeypatch.undo()
    # through the CLI: the log counts the cached clips; a changed file is computed fresh from its audio
    import soundfile as sf

    w, sr = sf.read(items[0].path)
    sf.write(items[0].path, w * 0.5, sr)
    out = tmp_path / "c.csv"
    capsys.readouterr()
    assert main(["predict", info["dev"], "--model", str(model), "--cache", str(root / "cache.zarr"), "--out", str(out),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "(15 from the cache)" in err and "15 clips reused" in err and "1 computed fresh" in err
    c = pl.read_csv(out).sort("clip_id")
    changed = c.filter(pl.col("clip_id") == items[0].clip_id)
    fresh = _predict(model, items[:1])
    assert changed[AXES[0]][0] == pytest.approx(fresh[AXES[0]][0], abs=1e-6)
    sf.write(items[0].path, w, sr)  # the module's corpus is shared by later tests


def test_load_predictor_gives_the_prompted_predictor_and_the_heads_scores(trained, tmp_path):
    """The one loader on a Track 1 folder: the prompted predictor, whose scores and distributions equal the
    member's head rebuilt here by hand from ``predictor.json`` and the member file, applied to the clip's cached
    audio frames and prompt tokens (a clip within the crop: one window)."""
    import json

    import torch

    from mmmos.app.predict import load_predictor
    from mmmos.cache_store import open_store
    from mmmos.core.prompts import prompt_key
    from mmmos.heads import build_head_from_config

    root, info = trained
    model = export_predictor(root / "run", [RUNS[0]], tmp_path / "m5")
    item = expand_prompted_inputs([info["dev"]], get_task("track1"))[0]
    pred = load_predictor(model, device="cpu", cache=str(root / "cache.zarr"))
    assert type(pred) is Track1Predictor
    got = prompted_table(list(pred.predict_items([item])), pred.axes, distribution=True)
    assert got["error"][0] is None and got["n_windows"][0] == 1
    spec = json.loads((model / "predictor.json").read_text())
    m = spec["members"][0]
    head = build_head_from_config(m["head_config"])
    head.load_state_dict(torch.load(model / m["file"], map_location="cpu", weights_only=True), strict=True)
    head.eval()
    store = open_store(str(root / "cache.zarr"))
    audio = store.group(m["encoder_keys"][0]).read(item.clip_id).astype(np.float32)
    tokens = store.group(m["encoder_keys"][1]).read(prompt_key(item.prompt)).astype(np.float32)
    with torch.no_grad():
        z = head(torch.from_numpy(audio)[None], torch.tensor([len(audio)]), torch.from_numpy(tokens)[None],
                 torch.ones(1, len(tokens))).double().numpy()[0]  # (2, K) bin logits
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    lo, hi = get_task("track1").score_range
    want = p @ np.linspace(lo, hi, p.shape[-1])  # the expected score over the bins' centres
    np.testing.assert_allclose(got.select(AXES).to_numpy()[0], want, atol=1e-5)
    bins = [f"{a}_p{b:02d}" for a in AXES for b in range(p.shape[-1])]
    np.testing.assert_allclose(got.select(bins).to_numpy()[0], p.reshape(-1), atol=1e-6)


def test_a_row_whose_prompt_is_not_in_the_table_says_which_and_where(trained, tmp_path, capsys):
    """A list row whose prompt id is missing from prompt_info.txt got the generic 'no prompt (give --prompt
    TEXT ...)', which hid the cause and steered to one text for every clip; its error row now names the id and
    the table.  A --prompts folder without the tables is one line (it was an error row per clip)."""
    import shutil

    root, info = trained
    model = export_predictor(root / "run", [RUNS[0]], tmp_path / "m5")
    corpus = tmp_path / "corpus"
    shutil.copytree(Path(info["dev"]).parent.parent, corpus, ignore=shutil.ignore_patterns("wav"))
    shutil.copytree(Path(info["dev"]).parent.parent / "wav", corpus / "wav")
    table = corpus / "prompt_info.txt"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:1]) + "\n")  # the header only: no prompt id resolves
    out = tmp_path / "p.csv"
    dev_list = str(corpus / "sets" / "dev_mos_list.txt")
    capsys.readouterr()
    assert main(["predict", dev_list, "--model", str(model), "--out", str(out), "--no-progress"]) == 3
    t = pl.read_csv(out)
    bad = t.filter(pl.col("error").is_not_null())
    assert bad.height > 0 and all(f"not found in {table}" in e and "prompt 'P" in e for e in bad["error"])
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main(["predict", dev_list, "--prompts", str(tmp_path / "empty"), "--model", str(model),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no prompt_info.txt" in err[0]
