"""``python -m sim.scenario``: print docs/parameters.md; ``--update-model-doc`` rewrites the
parameter tables in docs/model.md."""

import sys

from sim.scenario.paramdocs import MODEL_DOC, parameters_markdown, with_model_doc_parameters

if sys.argv[1:] == ["--update-model-doc"]:
    MODEL_DOC.write_text(with_model_doc_parameters(MODEL_DOC.read_text()))
else:
    print(parameters_markdown(), end="")
