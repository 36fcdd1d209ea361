from shared.redaction import REDACTED, redact, redact_text


def test_secret_fields_are_masked_recursively() -> None:
    value = {"api_key": "abc", "nested": [{"password": "p", "name": "ok"}], "connection_string": "x"}
    assert redact(value) == {"api_key": REDACTED, "nested": [{"password": REDACTED, "name": "ok"}],
                             "connection_string": REDACTED}


def test_inline_credentials_in_text_are_masked() -> None:
    text = "Endpoint=sb://x;SharedAccessKeyName=root;SharedAccessKey=s3cr3t;AccountKey=abc==;sig=zzz"
    masked = redact_text(text)
    assert "s3cr3t" not in masked
    assert "abc==" not in masked
    assert "zzz" not in masked
    assert "SharedAccessKeyName=root" in masked
