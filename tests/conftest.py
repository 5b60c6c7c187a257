"""Shared fixtures: tiny causal LMs built, saved and loaded back the normal way."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import pytest

from gdig.modeling import build_tiny_model

TEXTS = [
    "the cat sat on the mat", "der Hund lief schnell nach Hause", "a small test sentence",
    "ein kleiner Satz zum Testen", "Translate the following German text into English.",
    "German: English: Aldric: Borish:", "das Haus ist rot und gross", "the house is red and big",
] * 10


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Directory of a tiny Llama-style model + tokenizer WITHOUT a pad token."""
    return build_tiny_model(TEXTS, tmp_path_factory.mktemp("tiny-llama"), arch="llama", pad_token=False)


@pytest.fixture(scope="session")
def tiny_bloom_dir(tmp_path_factory):
    return build_tiny_model(TEXTS, tmp_path_factory.mktemp("tiny-bloom"), arch="bloom")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    return build_tiny_model(TEXTS, tmp_path_factory.mktemp("tiny-gpt2"), arch="gpt2")


@pytest.fixture(scope="session")
def prefect_harness():
    """ONE temporary Prefect server + DB for the whole session (starting one takes ~25 s).
    Tests that run flows are marked @pytest.mark.prefect and use this fixture."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture()
def store(tmp_path):
    from gdig.store import Store

    with Store(tmp_path / "test.duckdb") as s:
        yield s


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (the full fault-injection harness, concurrency on many workspaces)")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only with --runslow (or GDIG_SLOW=1): CI runs their short versions."""
    if config.getoption("--runslow") or os.environ.get("GDIG_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
