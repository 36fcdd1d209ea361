"""The scripted LLM answers the Azure OpenAI route for any deployment name, as the openai SDK's AzureOpenAI client
calls it (real HTTP on loopback)."""

from __future__ import annotations

import requests
from openai import AzureOpenAI

from localstack.llm.scripted import scripted_llm

QUESTION = [{"role": "user", "content": "What is 6 * 7?"}]


def test_any_deployment_is_answered_on_the_azure_route() -> None:
    with scripted_llm() as llm:
        client = AzureOpenAI(azure_endpoint=llm.azure_endpoint, api_key="local", api_version="2023-07-01-preview")
        for deployment in ("gpt-35-turbo", "my-gpt-4o"):
            answer = client.chat.completions.create(model=deployment, messages=QUESTION)
            assert answer.choices[0].message.content == "42"
        streamed = client.chat.completions.create(model="gpt-35-turbo", messages=QUESTION, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == "42"
    assert llm.azure_calls == {("gpt-35-turbo", "2023-07-01-preview"), ("my-gpt-4o", "2023-07-01-preview")}
    assert llm.credentials == {"api-key"}


def test_the_azure_route_needs_an_api_version() -> None:
    with scripted_llm() as llm:
        url = f"{llm.azure_endpoint}/openai/deployments/gpt-35-turbo/chat/completions"
        refused = requests.post(url, json={"messages": QUESTION}, timeout=10)
        assert refused.status_code == 400
        assert "api-version" in refused.json()["error"]["message"]
        assert requests.post(f"{url}?api-version=2024-02-01", json={"messages": QUESTION}, timeout=10).ok
        assert llm.calls == 1
