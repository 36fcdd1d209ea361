import pytest

from shared.experiments.mappings import (
    MappingError,
    Reference,
    default_mapping,
    parse_reference,
    resolve_inputs,
)


def test_references_and_literals_are_told_apart() -> None:
    assert parse_reference("${data.question}") == Reference("data", "question")
    assert parse_reference("${run.outputs.answer}") == Reference("run.outputs", "answer")
    assert parse_reference("${run.inputs.question}") == Reference("run.inputs", "question")
    assert parse_reference("${data.first name}") == Reference("data", "first name")
    assert parse_reference("plain text") is None
    assert parse_reference(3) is None
    assert str(Reference("run.outputs", "answer")) == "${run.outputs.answer}"


@pytest.mark.parametrize("value", ["Q: ${data.question}", "${inputs.question}", "${data.}", "${run.outputs}"])
def test_partial_or_unknown_references_are_errors_not_literals(value: str) -> None:
    with pytest.raises(MappingError, match="not a reference"):
        parse_reference(value)


def test_resolve_inputs_reads_data_run_outputs_run_inputs_and_literals() -> None:
    mapping = {
        "groundtruth": "${data.answer}",
        "prediction": "${run.outputs.answer}",
        "question": "${run.inputs.question}",
        "mode": "strict",
        "limit": 3,
    }
    inputs = resolve_inputs(
        mapping,
        data={"answer": "22", "extra": "ignored"},
        run_outputs={"answer": "21"},
        run_inputs={"question": "What is 43 - 21?"},
    )
    assert inputs == {
        "groundtruth": "22",
        "prediction": "21",
        "question": "What is 43 - 21?",
        "mode": "strict",
        "limit": 3,
    }


def test_values_keep_their_json_type() -> None:
    assert resolve_inputs({"items": "${data.items}"}, {"items": [1, {"a": None}]}) == {"items": [1, {"a": None}]}


def test_a_missing_column_names_it_and_the_available_ones() -> None:
    with pytest.raises(MappingError) as error:
        resolve_inputs({"question": "${data.questoin}"}, {"question": "q", "answer": "a"})
    message = str(error.value)
    assert "'questoin'" in message
    assert "available: answer, question" in message


def test_a_missing_run_output_names_it() -> None:
    with pytest.raises(MappingError, match=r"run output 'category' is missing.*available: answer"):
        resolve_inputs({"prediction": "${run.outputs.category}"}, {}, run_outputs={"answer": "x"})


def test_run_references_without_a_run_say_so() -> None:
    with pytest.raises(MappingError, match="only evaluator datasets can refer to a run"):
        resolve_inputs({"prediction": "${run.outputs.answer}"}, {"answer": "x"})


def test_default_mapping_maps_inputs_to_same_named_columns() -> None:
    mapping = default_mapping(["question", "chat_history", "context"], ["context", "question", "answer"])
    assert mapping == {"question": "${data.question}", "context": "${data.context}"}
    row = {"question": "q", "context": "c", "answer": "a"}
    assert resolve_inputs(mapping, row) == {"question": "q", "context": "c"}
