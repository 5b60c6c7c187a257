"""The offline demo: a corpus in an invented language pair (Aldric xa -> Borish xb) with
injected noise, a tiny model built from scratch, and the workspace `gdig demo` runs on.

corpus: the invented pair and the demo's data files; settings: the demo config and its sizes
(config.yaml, the one source of both); prepare: the demo workspace (data, tiny model, short
pretraining, config).  The Prefect entry is gdig_flows/flows/demo.py.
"""

from gdig.demo.corpus import SRC_LANG, TGT_LANG, generate_pairs, write_demo_data
from gdig.demo.prepare import prepare_demo
from gdig.demo.settings import CONFIG_PATH, demo_config_template, demo_defaults, demo_settings, split_demo_overrides

__all__ = ["CONFIG_PATH", "SRC_LANG", "TGT_LANG", "demo_config_template", "demo_defaults", "demo_settings",
           "generate_pairs", "prepare_demo", "split_demo_overrides", "write_demo_data"]
