"""The stream lines check_streams_data.py draws (dashboard.py) fit text as check-streams' bash does."""

import subprocess

import pytest

from tests.runtime.runtime_import import dashboard
from tests.support.project import RUNTIME

CASES = [
    ("Stream-A", "0", 20), ("Stream-A  a long name that goes on", "0", 20), ("名前名前名前", "0,1,2,3,4,5", 8),
    ("ab名前cd", "2,3", 5), ("x", "0", 0), ("xyz", "0", 2), ("名", "0", 1), ("a名b名c", "1,3", 6),
]


@pytest.mark.parametrize("ascii_only", [False, True])
def test_fit_is_bashs_cs_fit(ascii_only):
    ellipsis = "..." if ascii_only else "…"
    script = (f'. "{RUNTIME}/check-streams"; CS_ELLIPSIS="{ellipsis}"; CS_ELLIPSIS_WIDTH=${{#CS_ELLIPSIS}}; '
              'while IFS=$\'\\t\' read -r text wide room; do cs_fit "$text" "$wide" "$room"; '
              'printf "%s\\n" "$CS_FIT"; done')
    given = "".join(f"{text}\t{wide}\t{room}\n" for text, wide, room in CASES)
    bash = subprocess.run(["bash", "-c", script], input=given, capture_output=True, text=True, check=True,
                          env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    ours = [dashboard.fit(text, [] if wide == "0" else [int(i) for i in wide.split(",")], room, ellipsis)
            for text, wide, room in CASES]
    assert bash.stdout.splitlines() == ours
