"""Benchmarks: scripts that measure side by side in one run and write their results with versions and settings.

Run one as ``python benchmarks/<name>.py`` or ``python -m benchmarks.<name>``; the shared parts are in
`benchmarks.harness`.
"""
