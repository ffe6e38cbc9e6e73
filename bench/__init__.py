"""pgvs benchmarks: ``python -m bench <name> [args]`` from the repository root.

Each benchmark is a module ``bench/<name>.py`` with ``main(argv: list[str]) -> int``; it prints
progress to stderr and one JSON object on the last line of stdout. Not installed with the library.
"""
