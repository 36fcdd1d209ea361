"""Trigger adapters, one blueprint per trigger family: parse the trigger payload, call one entry point of
shared.bootstrap.Application, map its errors to what the trigger expects."""
