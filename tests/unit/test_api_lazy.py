"""The API package imports its operations on first use, and still exports what it
advertises: the operations, never the submodules that share their names."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_importing_the_package_loads_no_operation():
    out = _run("""
        import sys
        import trunkline.api
        print(sorted(m for m in sys.modules if m.startswith("trunkline.api.")),
              "trunkline.reports" in sys.modules)
    """)
    assert out == "[] False"   # nor what sync, verify and gc return


def test_each_name_is_the_operation_whatever_was_imported_first():
    out = _run("""
        import types
        import trunkline.api.copy, trunkline.api.sync   # the submodules, first and directly
        import trunkline.api as api
        from trunkline.api import copy, verify
        names = ["copy", "copy_async", "gc", "plan", "probe", "sync", "verify"]
        bad = [n for n in names if isinstance(getattr(api, n), types.ModuleType)
               or not callable(getattr(api, n))]
        assert copy is api.copy and verify is api.verify
        assert api.ProbeResult.__name__ == "ProbeResult"
        reports = {"GcReport", "Mismatch", "SyncResult", "VerifyReport"}   # also lazy
        assert {getattr(api, n).__module__ for n in reports} == {"trunkline.reports"}
        print(bad, sorted(set(api.__all__) - set(dir(api)) - set(names) - {"ProbeResult"}
                          - reports))
    """)
    assert out == "[] []"


def test_the_top_level_api_still_resolves():
    out = _run("""
        import trunkline
        from trunkline import copy, sync, verify, TransferOptions
        print(copy.__module__, sync.__module__, verify.__module__, TransferOptions.__name__)
    """)
    assert out == "trunkline.api.copy trunkline.api.sync trunkline.api.verify TransferOptions"
