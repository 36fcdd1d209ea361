"""OpenAI-compatible LLM endpoints on loopback: a scripted one for deterministic tests and benchmarks, and
the real small local model for the demo (see localstack/llm/local_model.py)."""
