"""datasets: registry, data root, errors, run selectors, and what each source loads as."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from computealloc.data import datasets
from computealloc.data.datasets import DataSourceNotFoundError
from conftest import needs_data

NAMES = ["mot_cascade", "qwen25math_rm_maj", "routellm", "routerdc", "zeroeval_gsm8k",
         "zeroeval_math_l5"]  # fmt: skip


def test_registry_documents_every_source():
    assert [s.name for s in datasets.sources()] == NAMES
    for src in datasets.sources():
        assert src.repo.startswith("https://github.com/")
        assert re.fullmatch(r"[0-9a-f]{40}", src.commit)
        assert src.title and src.obtain and src.paths and src.files
        assert {"query_id", "sample_idx", "model", "answer", "correct"} <= set(src.fields)
        assert src.runs_by in ("model", "dataset")
        assert src.bundle_ok == (src.license == "Apache-2.0")
    assert [s.name for s in datasets.sources() if s.bundle_ok] == [
        "routellm", "zeroeval_gsm8k", "zeroeval_math_l5"
    ]  # fmt: skip


@needs_data
def test_registry_agrees_with_each_folder_readme(shared_data):
    for src in datasets.sources():
        readme = (shared_data / src.name / "README.md").read_text(encoding="utf-8")
        assert src.repo in readme and src.commit in readme, src.name
        license_line = next(ln for ln in readme.splitlines() if "License" in ln)
        assert src.license in license_line, src.name


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPUTEALLOC_DATA", str(tmp_path))
    assert datasets.data_root() == tmp_path


def test_data_root_default_is_shared_data_beside_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv("COMPUTEALLOC_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert datasets.data_root() == (tmp_path / "shared" / "data").resolve()


def test_data_root_falls_back_to_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("COMPUTEALLOC_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    repo_data = Path(datasets.__file__).resolve().parents[3].parent / "shared" / "data"
    beside_cwd = tmp_path.parent / "shared" / "data"
    if beside_cwd.is_dir() or not repo_data.is_dir():
        pytest.skip("needs ../shared/data beside the repository and not beside tmp_path")
    assert datasets.data_root() == repo_data.resolve()


def test_missing_source_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPUTEALLOC_DATA", str(tmp_path))
    msg = (
        r"Data source 'mot_cascade' not found under .* \(missing samples.csv.gz; set "
        r"COMPUTEALLOC_DATA to the folder holding the public sources; see "
        r"computealloc.data.datasets.sources\(\) for how to obtain each\)"
    )
    with pytest.raises(DataSourceNotFoundError, match=msg):
        datasets.load("mot_cascade")
    with pytest.raises(FileNotFoundError, match="COMPUTEALLOC_DATA"):
        datasets.runs("routerdc")
    assert not datasets.is_available("routellm")


def test_unknown_source_lists_known_names():
    with pytest.raises(
        ValueError, match=r"Unknown data source 'mot'. Known sources: mot_cascade, "
    ):
        datasets.load("mot:gsm")


def test_name_must_be_text():
    with pytest.raises(TypeError, match=r"The 'name' parameter of load must be a str .* Got 3"):
        datasets.load(3)  # type: ignore[arg-type]


def test_empty_selector_is_an_error():
    with pytest.raises(ValueError, match=r"The run selector after ':' in 'routerdc:' is empty"):
        datasets.load("routerdc:")


@needs_data
def test_unknown_run_lists_close_matches(shared_data):
    msg = r"no run matching 'llama-2-13b/gsm/pot3'. Close matches: llama-2-13b/gsm/pot\d"
    with pytest.raises(ValueError, match=msg):
        datasets.load("mot_cascade:llama-2-13b/gsm/pot3", root=shared_data)
    with pytest.raises(ValueError, match=r"no run matching 'gsn'. Close matches: gsm"):
        datasets.runs("mot_cascade:gsn", root=shared_data)
    with pytest.raises(ValueError, match=r"runs\('mot_cascade'\) lists all 69 runs"):
        datasets.load("mot_cascade:gpt", root=shared_data)  # segments match whole


@needs_data
def test_selectors_match_whole_segments(shared_data):
    every = datasets.runs("mot_cascade", root=shared_data)
    assert len(every) == 69
    assert datasets.runs("mot_cascade:gsm", root=shared_data) == [
        r for r in every if r.split("/")[1] == "gsm"
    ]
    assert datasets.runs("mot_cascade:llama-2-13b/gsm", root=shared_data) == [
        "llama-2-13b/gsm/pot1", "llama-2-13b/gsm/pot2"
    ]  # fmt: skip
    assert datasets.runs("mot_cascade:cot1", root=shared_data) == [
        r for r in every if r.endswith("/cot1")
    ]
    log = datasets.load("mot_cascade:llama-2-13b/gsm", root=shared_data, repeats="keep")
    assert log.models == ["llama-2-13b/gsm/pot1", "llama-2-13b/gsm/pot2"]
    assert log.source == "mot_cascade:llama-2-13b/gsm"
    assert len(log.samples) == 2 * 400 * 24


@needs_data
def test_runs_of_each_source(shared_data):
    assert datasets.runs("routellm", root=shared_data) == ["gsm8k", "mmlu"]
    assert datasets.runs("qwen25math_rm_maj", root=shared_data) == ["math"]
    routerdc = datasets.runs("routerdc", root=shared_data)
    assert routerdc == sorted(p.stem for p in (shared_data / "routerdc/split2_model7").iterdir())
    assert len(datasets.runs("zeroeval_gsm8k", root=shared_data)) == 42
    assert len(datasets.runs("zeroeval_math_l5", root=shared_data)) == 40
    assert all(datasets.is_available(name, root=shared_data) for name in NAMES)


@needs_data
def test_mot_cascade_one_run_per_file_and_shared_query_ids(shared_data):
    samples = datasets.load("mot_cascade", root=shared_data, repeats="keep").samples
    assert len(samples) == 260_751
    assert (samples.groupby("model")["source_file"].nunique() == 1).all()
    assert samples["source_file"].nunique() == 69
    assert not samples.duplicated(["model", "query_id", "sample_idx"]).any()
    labels = {"gpt-3.5-turbo/date/cot1-t0.4", "gpt-3.5-turbo/date/cot1-40",
              "gpt-4/gsm/cot1-greedy", "llama-2-13b/crepe/pot2-v2"}  # fmt: skip
    assert labels <= set(samples["model"])
    llama = set(samples.loc[samples["model"] == "llama-2-13b/date/cot1", "query_id"])
    gpt4 = set(samples.loc[samples["model"] == "gpt-4/date/cot1", "query_id"])
    assert llama == gpt4 and len(llama) == 369
    date = samples.loc[samples["query_id"] == "date-0000", "answer"].dropna()
    assert "05/01/2021" in set(date)  # answers stay text: the leading zero survives


@needs_data
def test_routellm_models_contamination_and_answers(shared_data):
    log = datasets.load("routellm", root=shared_data)
    samples = log.to_frame()
    assert log.models == ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert len(samples) == 2 * (1319 + 14042)
    assert (samples["sample_idx"] == 0).all()
    queries = log.queries.set_index("query_id")
    assert queries.loc["gsm8k-0000", "contaminated"]
    assert queries["contaminated"].sum() == 12 + 5
    assert queries.loc["mmlu-abstract_algebra-0000", "subject"] == "abstract_algebra"
    gsm = samples[samples["dataset"] == "gsm8k"]
    assert gsm["answer"].notna().all()
    assert gsm.loc[gsm["query_id"] == "gsm8k-0000", "answer"].tolist() == ["18", "18"]
    assert samples.loc[samples["dataset"] == "mmlu", "answer"].isna().all()


@needs_data
def test_routerdc_rates_expand_to_ten_samples(shared_data):
    samples = datasets.load("routerdc:gsm8k-test", root=shared_data).samples
    raw = json.loads((shared_data / "routerdc/split2_model7/gsm8k-test.json").read_text())
    want = pd.DataFrame([r["scores"] for r in raw]).stack()
    assert (samples.groupby(["query_id", "model"]).size() == 10).all()
    got = samples.groupby(["query_id", "model"])["correct"].mean()
    ids = [f"gsm8k-test-{i:04d}" for i in want.index.get_level_values(0)]
    want.index = pd.MultiIndex.from_arrays([ids, want.index.get_level_values(1)])
    np.testing.assert_allclose(got.sort_index(), want.sort_index(), atol=1e-12)
    first_k = samples.groupby(["query_id", "model"])["correct"].apply(
        lambda c: list(c) == sorted(c, reverse=True)
    )
    assert first_k.all()
    assert samples["answer"].isna().all()


@needs_data
def test_routerdc_soft_and_binary_files(shared_data):
    soft = datasets.load("routerdc:mmlu_train", root=shared_data)
    assert soft.samples["correct"].isna().all()
    assert soft.samples["score"].between(0, 1).all()
    assert soft.queries["cluster_id"].notna().all()
    binary = datasets.load("routerdc:MATH_prealgebra", root=shared_data).samples
    assert binary["correct"].notna().all() and binary["score"].isna().all()
    assert len(binary) == 871 * 7


@needs_data
def test_zeroeval_gsm8k_prompts_and_numeric_answers(shared_data):
    log = datasets.load("zeroeval_gsm8k", root=shared_data)
    assert log.queries["prompt"].notna().all()
    assert len(log.queries) == 1319
    first = log.samples[log.samples["query_id"] == "gsm8k-main-test-#0"]
    assert set(first["answer"].dropna()) == {"18"}
    assert log.queries.set_index("query_id").loc["gsm8k-main-test-#0", "gold"] == "18"


@needs_data
def test_load_is_cached_and_returns_independent_logs(shared_data):
    first = datasets.load("qwen25math_rm_maj", root=shared_data)
    first.samples.loc[:, "answer"] = "tampered"
    second = datasets.load("qwen25math_rm_maj", root=shared_data)
    assert (second.samples["answer"] != "tampered").all()
    hits = datasets._cached_frame.cache_info().hits
    datasets.load("qwen25math_rm_maj", root=shared_data)
    assert datasets._cached_frame.cache_info().hits == hits + 1


def test_missing_file_inside_a_source_is_reported(tmp_path: Path):
    (tmp_path / "routellm").mkdir()
    (tmp_path / "routellm" / "gsm8k_responses.csv").write_text("prompt\n")
    with pytest.raises(DataSourceNotFoundError, match=r"missing mmlu_responses, gsm8k_contam"):
        datasets.load("routellm", root=tmp_path)


@needs_data
@pytest.mark.parametrize(
    ("raw", "cycles"),
    [("gsm_pot2", (10, 9, 5)), ("date_cot1", (10, 10)), ("crepe_pot1_V2", (4, 2))],
)
def test_llama_generations_repeat_in_cycles(shared_data, raw, cycles):
    path = shared_data / "mot_cascade/raw" / f"llama2_13B_result__{raw}.jsonl.gz"
    with gzip.open(path, "rt") as fh:
        generated = [json.loads(line)["generated"] for line in fh]
    starts = np.cumsum((0, *cycles[:-1]))
    for gen in generated:
        assert len(gen) == sum(cycles)
        for start, length in zip(starts, cycles, strict=True):
            assert gen[start : start + length] == gen[:length]


@needs_data
def test_load_keeps_each_llama_generation_once(shared_data):
    kept = datasets.load("mot_cascade:llama-2-13b/gsm/pot2", root=shared_data, repeats="keep")
    distinct = datasets.load("mot_cascade:llama-2-13b/gsm/pot2", root=shared_data)
    assert (distinct.samples_per_query == 10).all()
    # queries whose results are aligned with the generations keep exactly their first 10 rows
    full = kept.samples.groupby("query_id")["answer"].count() == 24
    first = kept.samples[kept.samples["sample_idx"] < 10].set_index(["query_id", "sample_idx"])
    ours = distinct.samples.set_index(["query_id", "sample_idx"])
    aligned = first.index.get_level_values(0).isin(full[full].index)
    assert ours.loc[first.index[aligned], "answer"].equals(first.loc[aligned, "answer"])
    # other runs are untouched
    gpt = datasets.load("mot_cascade:gpt-3.5-turbo/date/cot1", root=shared_data)
    assert (gpt.samples_per_query == 20).all()


def test_distinct_count_recovers_failed_programs():
    # generations 0-3 with 1 failed (dropped): results cycle (4, 2) -> [a, b, c] + [a, b]
    assert datasets._distinct_count(["a", "b", "c", "a", "b"], (4, 2)) == 3
    # generation 1 failed: first cycle a, c, d; second cycle (0-1) only a
    assert datasets._distinct_count(["a", "c", "d", "a"], (4, 2)) == 3
    assert datasets._distinct_count(["a", "b", "c", "d", "a", "b"], (4, 2)) == 4
    assert datasets._distinct_count(["a", "b", "x"], (2, 2)) is None


def test_repeats_option_is_validated():
    with pytest.raises(
        ValueError, match="The 'repeats' parameter of load must be 'drop' or 'keep'"
    ):
        datasets.load("mot_cascade", repeats="sometimes")  # type: ignore[arg-type]


def test_bundled_example_loads_without_a_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPUTEALLOC_DATA", str(tmp_path / "absent"))
    log = datasets.load("example")
    assert log.source == "example"
    assert log.models == ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert log.n_queries == 1319
    # the RouteLLM README's figures: Mixtral 0.6384, GPT-4 0.8567, either correct 0.9287
    acc = log.samples.groupby("model")["correct"].mean()
    assert acc["mistralai/Mixtral-8x7B-Instruct-v0.1"] == pytest.approx(0.6384, abs=5e-5)
    assert acc["gpt-4-1106-preview"] == pytest.approx(0.8567, abs=5e-5)
    either = log.samples.groupby("query_id")["correct"].any().mean()
    assert either == pytest.approx(0.9287, abs=5e-5)
