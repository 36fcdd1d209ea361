"""GenAIOps domain and adapters. Importable without azure.functions, promptflow or azure-ai-ml."""
