"""Submissions that try to forge results gain nothing and disturb no one else.

Each attacker's answer cells are WRONG and try to look right: monkeypatching torch and pytest,
returning always-equal objects, writing fake result files, reading the hidden tests, exiting at
import, hanging. An honest submission is graded beside them and must keep its full score.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _submissions import build_submission

from autograder.job import GradeJob, grade_job
from autograder.settings import GradingSettings

pytestmark = pytest.mark.slow

FORGE = r'''
import builtins, glob, json, os, sys
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.Tensor.__eq__ = lambda self, other: True
try:
    import pytest
    pytest.fail = lambda *a, **k: None
except Exception:
    pass
class AlwaysEqual(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __le__(self, other): return True
    def __ge__(self, other): return True
    def __gt__(self, other): return True
fake = {"outcomes": {}, "score": 100}
for d in [".", "/scratch", "..", "/tmp"] + glob.glob("/work/*") + glob.glob("/tmp/*"):
    for name in ("outcomes.json", "results.json"):
        try:
            with open(os.path.join(d, name), "w") as f:
                json.dump(fake, f)
        except OSError:
            pass
for p in glob.glob("/work/*/autograder/assignments/*/hidden_tests/*.py"):
    print("READ HIDDEN", open(p).read()[:50])
print('{"tests": [{"name": "test_fcn32s_same_weights", "score": 3, "status": "passed"}]}')
'''

FORGED_FCN = FORGE + r'''
class FCN32s(torch.nn.Module):
    def __init__(self, n_classes=12):
        super().__init__()
        self.forged = torch.nn.Conv2d(3, n_classes, 1)
    def forward(self, x):
        return AlwaysEqual(0.0)
'''

FORGED_FUNCS = FORGE + r'''
def transposed_conv_padding(kernel_size, stride=2):
    return AlwaysEqual(1), AlwaysEqual(0)

def soft_iou_loss(logits, target, smooth=1e-6, ignore_index=None):
    return AlwaysEqual(0.0)
'''

EXIT_AT_IMPORT = "import os\nos._exit(0)\n"
SYS_EXIT = "import sys\nsys.exit(0)\n"
HANG = "import time\nwhile True:\n    time.sleep(1)\n"
FAST_WRONG_FCN8S = ("class FCN8s(nn.Module):\n    def __init__(self, n_classes=12):\n"
                    "        super().__init__()\n        self.wrong = nn.Conv2d(3, n_classes, 1)\n"
                    "    def forward(self, x):\n        return self.wrong(x)[:, :, 1:, 1:]\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = Path(tmp_path_factory.getbasetemp())
    settings = GradingSettings(scratch_root=str(root / "grading"), threads=2, request_timeout=30,
                               submission_budget=300)
    subs = {
        "forger": {"fcn32s": FORGED_FCN, "fcn8s": FAST_WRONG_FCN8S,
                   "transposed_conv_padding": FORGED_FUNCS, "soft_iou_loss": FORGED_FUNCS},
        "exiter": {"fcn32s": EXIT_AT_IMPORT, "fcn8s": FAST_WRONG_FCN8S,
                   "transposed_conv_padding": SYS_EXIT},
        "sleeper": {"fcn32s": FAST_WRONG_FCN8S.replace("FCN8s", "FCN32s"), "fcn8s": FAST_WRONG_FCN8S,
                    "soft_iou_loss": HANG},
        "honest": {},
    }
    def grade(student):
        nbs = build_submission(root / "subs" / student, subs[student])
        job = GradeJob(student, {n: p.read_bytes() for n, p in nbs.items()}, settings)
        return student, grade_job(job)

    # two at a time (each job takes its own sandbox slot): the honest submission is graded while
    # attackers run
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(grade, subs))


def _score(result, part):
    return sum(t.score for t in result.tests if t.part == part)


def test_forger_gains_nothing(graded):
    r = graded["forger"]
    for part in ("fcn32s", "fcn8s", "transposed_conv_padding", "soft_iou_loss"):
        assert _score(r, part) == 0, [(t.name, t.score, t.output) for t in r.tests if t.part == part]


def test_exit_at_import_costs_only_its_cells(graded):
    r = graded["exiter"]
    assert _score(r, "fcn32s") == 0 and _score(r, "transposed_conv_padding") == 0
    assert any("fcn32s" in p and "skipped" in p for p in r.problems), r.problems
    # the untouched soft_iou_loss is still graded in full after the restarts
    assert _score(r, "soft_iou_loss") == sum(t.max_score for t in r.tests if t.part == "soft_iou_loss")


def test_hang_at_import_is_skipped_and_the_rest_graded(graded):
    r = graded["sleeper"]
    assert _score(r, "soft_iou_loss") == 0
    assert _score(r, "transposed_conv_padding") == 5
    assert any("time limit" in p for p in r.problems), r.problems


def test_honest_submission_beside_them_keeps_full_marks(graded):
    r = graded["honest"]
    assert r.score == r.max_score > 0, [(t.name, t.output) for t in r.tests if t.score < t.max_score]
    assert r.problems == []
