"""The local Functions host: loads function_app.py, reads each function's trigger binding from the app itself
and feeds it real events — blobs from Azurite, messages from the local Service Bus-compatible broker,
HTTP requests on 127.0.0.1, timer ticks — building trigger objects with azure.functions' own converters.

It exists because Azure Functions Core Tools cannot be installed here (its installer downloads the host).
"""
