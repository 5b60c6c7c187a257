"""The offline demo: a corpus in an invented language pair (Aldric xa -> Borish xb) with
injected noise, a tiny model built from scratch, and the workspace `gdig demo` runs on.

corpus: the invented pair and the demo's data files; prepare: the demo workspace (data,
tiny model, short pretraining, config).  The Prefect entry is flows/demo.py.
"""

from gdig.demo.corpus import SRC_LANG, TGT_LANG, generate_pairs, write_demo_data
from gdig.demo.prepare import DEMO_DEFAULTS, demo_config_template, prepare_demo

__all__ = ["DEMO_DEFAULTS", "SRC_LANG", "TGT_LANG", "demo_config_template", "generate_pairs", "prepare_demo",
           "write_demo_data"]
