"""End to end on the demo corpus: audio -> extract (built-in encoders) -> sweep -> ensemble -> answer file
-> `mmmos score`; the best configuration must clearly beat a shuffled-label control on dev SRCC."""
import polars as pl
import pytest

from mmmos import ensemble as select_ensemble  # noqa: E402
from mmmos import sweep  # noqa: E402
from mmmos.extract.runner import ExtractConfig, run_extract  # noqa: E402
from mmmos.app.demos.track2_corpus import make_demo_corpus  # noqa: E402
from mmmos.app.scoring import score  # noqa: E402
from mmmos.core.tasks import get_task  # noqa: E402

SETS = {"bienc": ("logmel",), "trienc": ("logmel", "logmel_slow")}
NAMES = ["trienc-mlp-utmos", "trienc-blstm_h-contrastive", "trienc-blstm_t-dcq", "bienc-mlp-ccc"]


def _cfgs(names):
    cfgs = [c for c in sweep.paper_configs(SETS) if c.name in names]
    for c in cfgs:
        c.lr, c.epochs, c.patience = 1e-3, 12, 3
    return cfgs


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    info = make_demo_corpus(d / "corpus", n_train=120, n_dev=40, n_pam=24, seed=3)
    rep = run_extract(ExtractConfig(manifests=[info["train"], info["dev"], info["pam_dev"]], store=str(d / "cache"),
                                    encoders=["logmel", "logmel_slow"], progress=False))
    assert not rep.failures
    return d, info


def test_demo_corpus_is_learned_and_shuffled_labels_are_not(demo):
    d, info = demo
    tr, dv = sweep.load_labels("train", info["train"]), sweep.load_labels("dev", info["dev"])
    pam = sweep.load_labels("pam_dev", info["pam_dev"])
    res = sweep.run_sweep(_cfgs(NAMES), str(d / "cache"), d / "run", tr, dv, [pam], progress=False)
    assert all("error" not in r for r in res.values()), res
    summary = pl.read_parquet(d / "run" / "summary.parquet").sort("dev/utt_SRCC", descending=True)
    best = summary.row(0, named=True)
    shuf = tr.table.with_columns(pl.struct(list(get_task().axes)).shuffle(seed=7).struct.unnest())
    shuf.write_csv(d / "train_shuffled.csv")
    sweep.run_sweep(_cfgs([best["config"]]), str(d / "cache"), d / "control", sweep.load_labels("train", d / "train_shuffled.csv"),
                    dv, [pam], progress=False)
    ctrl = pl.read_parquet(d / "control" / "summary.parquet")["dev/utt_SRCC"][0]
    print(f"\ndemo corpus: best {best['config']} dev composite SRCC {best['dev/utt_SRCC']:.3f}; "
          f"shuffled-label control {ctrl:.3f}")
    assert best["dev/utt_SRCC"] > 0.5 and best["dev/utt_SRCC"] - ctrl > 0.3

    # ensembles from the saved predictions, and the answer file scores the same through `mmmos score`
    table = select_ensemble.run_ensembles(d / "run", answer=str(d / "answer.txt"), answer_strategy="all",
                                          answer_set="pam_dev")
    ev = score(d / "answer.txt", info["pam_dev"])
    got = ev.table.filter((pl.col("level") == "utterance") & (pl.col("axis") == "composite")
                          & (pl.col("metric") == "SRCC"))["value"][0]
    row = table.filter(pl.col("strategy") == "all").row(0, named=True)
    assert got == pytest.approx(row["pam_dev/utt_SRCC"], abs=1e-6)
