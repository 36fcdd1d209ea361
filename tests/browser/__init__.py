"""Tests that open the reports in a real (headless) browser."""
