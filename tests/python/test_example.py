"""examples/serve_tiny.py end to end on the CPU: continuous batching over
state pools (packed prefills into freed slots, pooled decode steps) must
reproduce every request's greedy generation alone, which the example checks
itself and reports."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="torch is not installed: the serving example needs it")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_serve_tiny_small_on_the_cpu():
    script = os.path.join(ROOT, "examples", "serve_tiny.py")
    # The same environment (the library and package paths), from the repository root as the suite runs.
    r = subprocess.run([sys.executable, script, "--device", "cpu", "--small"], env=dict(os.environ), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "check passed: every request's greedy generation equals its generation alone" in r.stdout, out
    assert "tokens/s" in r.stdout and "a step on average" in r.stdout, out
