import json
import threading
import uuid
from urllib.parse import quote, quote_plus

import pytest

from shared.redaction import (
    REDACTED,
    SecretRegistry,
    redact,
    redact_bytes,
    redact_text,
    register_environment,
    register_secret,
)


def canary() -> str:
    return f"canary{uuid.uuid4().hex}"


def test_secret_fields_are_masked_recursively() -> None:
    value = {"api_key": "abc", "nested": [{"password": "p", "name": "ok"}], "connection_string": "x"}
    assert redact(value) == {"api_key": REDACTED, "nested": [{"password": REDACTED, "name": "ok"}],
                             "connection_string": REDACTED}


def test_by_name_off_keeps_fields_and_still_masks_text() -> None:
    assert redact({"idempotency_key": "abc", "note": "Bearer abcdefgh123"}, by_name=False) == {
        "idempotency_key": "abc", "note": f"Bearer {REDACTED}"}


def test_inline_credentials_in_text_are_masked() -> None:
    text = "Endpoint=sb://x;SharedAccessKeyName=root;SharedAccessKey=s3cr3t;AccountKey=abc==;sig=zzz"
    masked = redact_text(text)
    assert "s3cr3t" not in masked
    assert "abc==" not in masked
    assert "zzz" not in masked
    assert "SharedAccessKeyName=root" in masked


@pytest.mark.parametrize(("text", "secret", "kept"), [
    ("Authorization: Bearer eyJhbGciOi.payload-part.sig_part", "eyJhbGciOi", "Authorization: Bearer"),
    ("Incorrect API key provided: sk-proj-AbC123dEf456GhI789jkl0. See docs", "AbC123dEf456", "Incorrect API key"),
    ("headers={'api-key': 'f00dfeedcafe', 'User-Agent': 'x'}", "f00dfeedcafe", "'api-key': '"),
    ('{"api_key": "0123abcd4567", "model": "gpt"}', "0123abcd4567", '"model": "gpt"'),
    ("api-key: 0f0f0f0f0f0f\r\nHost: x", "0f0f0f0f0f0f", "Host: x"),
    ("https://acct.blob.core.windows.net/c/b?sv=2024&se=2026&sp=r&sig=AbC%2Bdef%3D", "AbC%2Bdef", "sp=r"),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=QmFzZTY0S2V5PT0=;EndpointSuffix=x",
     "QmFzZTY0S2V5PT0=", "AccountName=acct"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "dozjgNryP4J3", "token "),
    ("password=hunter2hunter2&user=bob", "hunter2", "user=bob"),
])
def test_credential_shapes_are_masked(text: str, secret: str, kept: str) -> None:
    masked = redact_text(text)
    assert secret not in masked
    assert REDACTED in masked
    assert kept in masked


@pytest.mark.parametrize("text", [
    "task-0123456789abcdef0123 finished", "risk-assessment-report-2026-v1", "Bearer of bad news",
    "accuracy 0.93 on math_train", "connection 'aoai' has no api_base",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_a_registered_value_is_masked_whatever_surrounds_it() -> None:
    secret = canary()
    register_secret(secret)
    for text in (f"Incorrect API key provided: {secret}.", f"x{secret}y", f"key is {secret} and again {secret}"):
        masked = redact_text(text)
        assert secret not in masked
        assert masked.count(REDACTED) == text.count(secret)
    assert redact({"answer": [f"echo {secret}"]}, by_name=False) == {"answer": [f"echo {REDACTED}"]}


def test_registered_values_are_masked_url_encoded_and_json_escaped_and_in_bytes() -> None:
    secret = f"a/b+c\"d{uuid.uuid4().hex}"
    register_secret(secret)
    for encoded in (quote(secret), quote(secret, safe=""), quote_plus(secret)):
        assert redact_text(f"?key={encoded}&x=1") == f"?key={REDACTED}&x=1"
    assert json.dumps(secret) not in redact_text(json.dumps({"v": secret}))
    document = json.dumps({"v": secret}, ensure_ascii=False).encode()
    assert json.dumps(secret)[1:-1].encode() not in redact_bytes(document)
    assert json.loads(redact_bytes(document)) == {"v": REDACTED}


def test_a_connection_string_registers_the_keys_inside_it_and_a_header_its_token() -> None:
    key, token = canary(), canary()
    register_secret(f"Endpoint=sb://ns/;SharedAccessKeyName=root;SharedAccessKey={key}")
    register_secret(f"Bearer {token}")
    assert redact_text(f"the broker refused {key} and {token}") == f"the broker refused {REDACTED} and {REDACTED}"


def test_secret_settings_are_registered_by_name_or_by_a_key_inside() -> None:
    api_key, account_key, hook, harmless = canary(), canary(), f"https://x.example/hooks/{canary()}", canary()
    register_environment({"AOAI_API_KEY": api_key, "GenAIOpsStorage": f"AccountName=a;AccountKey={account_key}",
                          "APPROVAL_WEBHOOK_URL": hook, "GENAIOPS_ENV": harmless})
    masked = redact_text(f"{api_key} {account_key} {hook} {harmless}")
    assert masked == f"{REDACTED} {REDACTED} {REDACTED} {harmless}"


def test_the_shells_working_directory_is_not_a_password() -> None:
    directory, password = f"/work/{canary()}", canary()
    register_environment({"PWD": directory, "OLDPWD": f"{directory}/old", "DB_PWD": password})
    assert redact_text(f"{directory}/.localstack/telemetry.jsonl {password}") == (
        f"{directory}/.localstack/telemetry.jsonl {REDACTED}")


def test_short_values_are_not_registered() -> None:
    register_secret("true")
    assert redact_text("true story") == "true story"


def test_the_registry_only_grows_and_concurrent_adds_all_land() -> None:
    registry = SecretRegistry()
    values = [[canary() for _ in range(20)] for _ in range(8)]
    threads = [threading.Thread(target=lambda batch=batch: [registry.add([v]) for v in batch]) for batch in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = " ".join(v for batch in values for v in batch)
    assert registry.mask(everything) == " ".join([REDACTED] * 160)
    assert all(v in registry for batch in values for v in batch)


def test_the_longest_secret_wins_when_one_contains_another() -> None:
    registry = SecretRegistry()
    short = canary()
    registry.add([short, f"{short}-and-more"])
    assert registry.mask(f"<{short}-and-more>") == f"<{REDACTED}>"


def test_event_payloads_are_masked_on_the_bus_and_in_the_journal() -> None:
    from shared.events.catalogue import ExperimentFailed
    from shared.events.codec import decode, encode

    secret = canary()
    register_secret(secret)
    event = ExperimentFailed.create({"use_case": "math_coding", "experiment_id": "e1",
                                     "reasons": [f"401 Incorrect API key provided: {secret}", "Bearer abcdefgh1234"]},
                                    correlation_id="c1")
    for document in (encode(event).body.decode(), event.model_dump_json(indent=2)):
        assert secret not in document
        assert "abcdefgh1234" not in document
    assert decode(encode(event).body).payload.reasons == [f"401 Incorrect API key provided: {REDACTED}",
                                                          f"Bearer {REDACTED}"]


def test_a_known_secret_anywhere_in_a_result_is_masked_in_all_four_reports() -> None:
    from shared.blob_layout import REPORTS
    from shared.reports import write_experiment_reports
    from tests.fakes.memory import MemoryBlobStore
    from tests.unit.test_reports import build_result

    secret = canary()
    register_secret(secret)
    result = build_result(lines=3)
    first = result.standard_runs[0]
    line = first.lines[0].model_copy(update={"outputs": {"answer": f"my key is {secret}"}})
    run = first.model_copy(update={"variant": {"summarize": secret}, "lines": [line, *first.lines[1:]],
                                   "error": f"Incorrect API key provided: {secret}"})
    result = result.model_copy(update={"standard_runs": [run, *result.standard_runs[1:]]})
    blobs = MemoryBlobStore()
    where = write_experiment_reports(result, blobs, {"note": secret})
    for name in (where.experiment_json, where.results_csv, where.metrics_csv, where.summary_html):
        assert secret not in blobs.text(REPORTS, name), name
    assert f"Incorrect API key provided: {REDACTED}" in blobs.text(REPORTS, where.experiment_json)
