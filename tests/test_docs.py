"""Generated documentation stays true to the code."""

from sim.scenario.paramdocs import MODEL_DOC, with_model_doc_parameters


def test_model_doc_parameter_tables_are_current():
    text = MODEL_DOC.read_text()
    assert with_model_doc_parameters(text) == text, (
        "docs/model.md's parameter tables are stale: run "
        "`.venv/bin/python -m sim.scenario --update-model-doc`"
    )
