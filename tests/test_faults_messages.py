"""Messages (issue 20, item 6): counts in logs agree, no raw warnings, and each cause its own one line.

* ``predict --cache`` over a damaged cached clip used to log "0 from the cache" beside "1 clips reused, 0 computed
  fresh", plus a raw ``RuntimeWarning``;
* a training list with no labels, no CU column or only a header, or whose ids are all absent from the cache, all
  ended in "0 labelled training clips" with a traceback;
* ``mmmos score`` took predictions of 50 on a 0-10 task without a word; an answer file whose first line has a
  non-numeric value was reported as having "no clip id column".
"""
from __future__ import annotations

import polars as pl
import pytest

from mmmos.cache_store import open_store
from synthetic_cache import make_synthetic
from test_faults_damaged_use import _flip_first_chunk
from test_faults_predict import _predictor, _write_cache, files  # noqa: F401 - module fixture reused

AXES = ["PQ", "PC", "CE", "CU"]


def test_predict_cache_counts_a_damaged_clip_as_computed_fresh(tmp_path, files, run_cli):  # noqa: F811
    model = _predictor(tmp_path)
    store = _write_cache(tmp_path / "cache.zarr", {"a": files["short3"], "b": files["other5"]})
    g = open_store(store).group(next(iter(open_store(store).encoders())).key)
    _flip_first_chunk(g, "a")
    rc, out, err = run_cli(["predict", files["short3"], files["other5"], "--model", model, "--cache", store,
                            "--device", "cpu", "--no-progress", "--out", tmp_path / "s.csv"])
    assert rc == 0, err
    assert "Warning" not in err and "warnings.warn" not in err
    assert "2 of 2 clips scored" in err and "(1 from the cache)" in err
    assert "cache: 1 clips reused (same audio bytes), 1 computed fresh (1 damaged in the cache)" in err
    assert "damaged cache entry" in err and "'a'" in err and "computed fresh from the audio instead" in err


# -- training lists: one cause, one line ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("msg_synth")
    store, sets = make_synthetic(d, n_train=12, n_dev=6, n_pam=2)
    return d, store, sets


def _list(synth, tmp_path, how):
    _, _, sets = synth
    df = pl.read_csv(sets["train"])
    f = tmp_path / "train.csv"
    if how == "no_labels":
        df = df.with_columns([pl.lit(None, pl.Float64).alias(a) for a in AXES])
    elif how == "no_cu_column":
        df = df.drop("CU")
    elif how == "header_only":
        df = df.head(0)
    elif how == "ids_not_cached":
        df = df.with_columns(pl.concat_str([pl.lit("gone/"), pl.col("clip_id")]).alias("clip_id"))
    df.write_csv(f)
    return f


@pytest.mark.parametrize("how,says", [
    ("no_labels", "no labels"),
    ("no_cu_column", "CU"),
    ("header_only", "no clips"),
    ("ids_not_cached", "missing from or damaged in the"),
])
def test_each_unusable_training_list_gets_its_own_line(synth, tmp_path, run_cli, how, says):
    _, store, sets = synth
    train = _list(synth, tmp_path, how)
    rc, out, err = run_cli(["sweep", "--store", store, "--run", tmp_path / "run", "--train", train, "--dev",
                            sets["dev"], "--sets", "bienc=encA,trienc=encA+encB", "--only", "bienc-mlp-utmos",
                            "--epochs", "1", "--no-progress"])
    assert rc in (2, 3), err
    assert "Traceback" not in err and "0 labelled training clips" not in err
    lines = [x for x in err.splitlines() if "error" in x or "failed" in x]
    assert len(lines) == 1 and says in lines[0] and str(train) in lines[0] or how == "ids_not_cached" \
        and "'gone/train/clip0000.wav'" in lines[0], err


# -- mmmos score ------------------------------------------------------------------------------------------------
def _truth(tmp_path):
    rows = [{"clip_id": f"c{i}", "system": f"s{i % 2}", "PQ": 5.0 + i, "PC": 4.0 + i, "CE": 3.0 + i, "CU": 2.0 + i}
            for i in range(4)]
    pl.DataFrame(rows).write_csv(tmp_path / "truth.csv")
    return tmp_path / "truth.csv"


def test_score_warns_on_predictions_outside_the_range_and_refuses_them_under_strict(tmp_path, run_cli):
    truth = _truth(tmp_path)
    ans = tmp_path / "answer.txt"
    ans.write_text("c0,5,4,3,2\nc1,50,5,4,3\nc2,7,6,5,4\nc3,8,7,6,5\n")
    rc, out, err = run_cli(["score", "--pred", ans, "--truth", truth])
    assert rc == 0 and err.count("\n") == 1
    assert "warning" in err and "1 of 4 clips" in err and "0-10" in err and "'c1' PQ=50" in err
    rc, out, err = run_cli(["score", "--pred", ans, "--truth", truth, "--strict"])
    assert rc == 2 and err.count("\n") == 1 and "'c1' PQ=50" in err and "--strict" in err
    ans.write_text("c0,5,4,3,2\nc1,10,5,4,3\nc2,7,6,5,4\nc3,8,7,6,5\n")  # in range: nothing said
    rc, _, err = run_cli(["score", "--pred", ans, "--truth", truth, "--strict"])
    assert rc == 0 and "warning" not in err


def test_an_answer_file_with_a_bad_value_in_line_1_is_named_as_such(tmp_path, run_cli):
    truth = _truth(tmp_path)
    ans = tmp_path / "answer.txt"
    ans.write_text("c0,5,four,3,2\nc1,6,5,4,3\nc2,7,6,5,4\nc3,8,7,6,5\n")
    rc, _, err = run_cli(["score", "--pred", ans, "--truth", truth])
    assert rc == 2 and err.count("\n") == 1 and "no clip id column" not in err
    assert "line 1" in err and "'four' is not a number" in err
    ans.write_text("wavID,PQ,PC,CE,CU\nc0,5,4,3,2\nc1,6,5,4,3\n")  # a real header still reads as one
    rc, _, err = run_cli(["score", "--pred", ans, "--truth", truth])
    assert rc == 0, err
