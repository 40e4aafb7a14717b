"""The slow table of tests/conftest.py names real tests, and the default run keeps every test file."""

from __future__ import annotations

from tests.conftest import COLLECTED, SLOW

# files whose every test needs ComfyUI or is a whole CLI run: in the default run only as skips
# (ComfyUI) or not at all; their code is reached by quicker in-process tests of the same modules
ALL_SLOW = {e for entries in SLOW.values() for e in entries if "::" not in e}


def _collected(request):
    return request.config.stash[COLLECTED]


def test_every_slow_entry_names_a_collected_test(request):
    collected = _collected(request)
    files = {n.split("::")[0] for n, _ in collected}
    for kind, entries in SLOW.items():
        for entry in entries:
            path, _, name = entry.partition("::")
            if path not in files:  # a run of some files only, or a file that skipped at import
                continue
            hits = [n for n, _ in collected if n == entry or n.startswith(entry + "[") or (not name and
                                                                                              n.startswith(path + "::"))]
            assert hits, f"{kind}: {entry} matches no test (renamed?)"


def test_the_default_run_keeps_a_test_of_every_other_file(request):
    collected = _collected(request)
    by_file: dict = {}
    for nodeid, slow in collected:
        by_file.setdefault(nodeid.split("::")[0], []).append(slow)
    lost = [f for f, slows in by_file.items() if all(slows) and f not in ALL_SLOW]
    assert not lost, f"every test of these files is marked slow: {lost}"
