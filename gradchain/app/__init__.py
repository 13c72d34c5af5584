"""The application layer: the `gradchain` command, the digits demo and examples, the benchmark harness.

It sits above the library (it may import anything in gradchain; nothing in the
library imports it) and stays in the package so that `gradchain demo` and
`gradchain bench` work from any installation.
"""
